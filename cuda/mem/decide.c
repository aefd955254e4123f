/* The CUDA backend's pure decisions; see decide.h. */
#include "decide.h"
#include "core/error.h"
#include "cuda_kernel/copy_region.h"

kvbm_status_t kvbm__cuda_open_verdict(const kvbm__cuda_probe_t *probe)
{
    /* No driver installed: cudart reports version 0 (or the stub library
     * the toolkit ships for linking, which is no driver either). */
    if (probe->driver_err == cudaErrorStubLibrary ||
        (probe->driver_err == cudaSuccess && probe->driver_version == 0))
        return KVBM_ERR_NO_DEVICE;
    if (probe->driver_err != cudaSuccess)
        return KVBM_ERR_DEVICE;
    if (probe->count_err == cudaErrorNoDevice || probe->count_err == cudaErrorStubLibrary)
        return KVBM_ERR_NO_DEVICE;
    if (probe->count_err != cudaSuccess)
        return KVBM_ERR_DEVICE;
    if (probe->count <= 0)
        return KVBM_ERR_NO_DEVICE;
    if (probe->device < 0 || probe->device >= probe->count)
        return KVBM_ERR_INVALID_ARG; /* reason: recorded by report() in backend.c */
    return KVBM_OK;
}

kvbm_status_t kvbm__cuda_status(cudaError_t err)
{
    switch (err) {
    case cudaSuccess:
        return KVBM_OK;
    case cudaErrorMemoryAllocation:
        return KVBM_ERR_NO_MEMORY;
    case cudaErrorNoDevice:
        return KVBM_ERR_NO_DEVICE;
    case cudaErrorNotReady:
        return KVBM_ERR_BUSY;
    default:
        return KVBM_ERR_DEVICE;
    }
}

kvbm_copy_method_t kvbm__cuda_pick_method(const kvbm__copy_facts_t *facts)
{
    kvbm_copy_method_t m = facts->asked;
    if (m == KVBM_COPY_METHOD_AUTO)
        m = facts->kernel_reachable && facts->mean_bytes < facts->kernel_threshold
                ? KVBM_COPY_METHOD_KERNEL
                : KVBM_COPY_METHOD_BATCH;
    if (m == KVBM_COPY_METHOD_KERNEL && !facts->kernel_reachable)
        m = KVBM_COPY_METHOD_BATCH;
    if (m == KVBM_COPY_METHOD_BATCH && (!facts->batch_supported || facts->legacy_stream))
        m = KVBM_COPY_METHOD_PER_REGION;
    return m;
}

bool kvbm__cuda_stream_is_legacy(cudaStream_t stream)
{
    return stream == NULL || stream == cudaStreamLegacy;
}

size_t kvbm__cuda_kernel_launches(size_t regions)
{
    return regions / KVBM__COPY_LAUNCH_MAX + (regions % KVBM__COPY_LAUNCH_MAX != 0);
}

kvbm_status_t kvbm__pinned_plan(size_t bytes, size_t page, size_t chunk_asked,
                                uint32_t threads_asked, uint32_t cpus,
                                kvbm__pinned_plan_t *plan_out)
{
    if (bytes == 0 || page == 0 || (page & (page - 1)) != 0)
        return kvbm__fail(KVBM_ERR_INVALID_ARG,
                          "pinned pool of %zu bytes with %zu-byte pages: needs bytes and a "
                          "power-of-two page",
                          bytes, page);
    if (bytes > SIZE_MAX - (page - 1))
        return KVBM_ERR_OVERFLOW;
    kvbm__pinned_plan_t plan = {.page = page};
    plan.mapped_bytes = (bytes + page - 1) & ~(page - 1);
    size_t chunk = chunk_asked != 0 ? chunk_asked : KVBM__PINNED_CHUNK_DEFAULT;
    if (chunk > SIZE_MAX - (page - 1))
        return KVBM_ERR_OVERFLOW;
    chunk = (chunk + page - 1) & ~(page - 1);
    plan.chunk_bytes = chunk < plan.mapped_bytes ? chunk : plan.mapped_bytes;
    plan.chunks =
        plan.mapped_bytes / plan.chunk_bytes + (plan.mapped_bytes % plan.chunk_bytes != 0);
    size_t threads = threads_asked != 0 ? threads_asked : (cpus != 0 ? cpus : 1);
    if (threads > plan.chunks)
        threads = plan.chunks;
    if (threads > KVBM__PINNED_THREADS_MAX)
        threads = KVBM__PINNED_THREADS_MAX;
    plan.threads = (uint32_t)threads;
    *plan_out = plan;
    return KVBM_OK;
}

void kvbm__pinned_chunk(const kvbm__pinned_plan_t *plan, size_t k, size_t *offset_out,
                        size_t *bytes_out)
{
    size_t offset = k * plan->chunk_bytes;
    size_t left = plan->mapped_bytes - offset;
    *offset_out = offset;
    *bytes_out = left < plan->chunk_bytes ? left : plan->chunk_bytes;
}
