/*
 * The CUDA backend's pure decisions (cuda/mem/decide.h, ranges.h), on the
 * CPU: when AUTO may fall back, which method a batch gets (pageable or
 * unknown memory never gets the kernel, the legacy stream never the batch
 * API), how pinned pools are chunked, and the range set the kernel's
 * reachability and the chunk cuts come from.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "cuda_kernel/copy_region.h"
#include "cuda_mem/decide.h"
#include "cuda_mem/ranges.h"
#include "kvbm_test.h"

static kvbm__cuda_probe_t probe(cudaError_t driver_err, int driver, cudaError_t count_err,
                                int count, int device)
{
    return (kvbm__cuda_probe_t){driver_err, driver, count_err, count, device};
}

static void only_no_device_at_all_allows_the_fallback(void **state)
{
    (void)state;
    kvbm__cuda_probe_t p;
    p = probe(cudaSuccess, 0, cudaSuccess, 0, 0); /* no driver installed */
    assert_kvbm_status(kvbm__cuda_open_verdict(&p), KVBM_ERR_NO_DEVICE);
    p = probe(cudaErrorStubLibrary, 0, cudaSuccess, 0, 0);
    assert_kvbm_status(kvbm__cuda_open_verdict(&p), KVBM_ERR_NO_DEVICE);
    p = probe(cudaSuccess, 13000, cudaErrorNoDevice, 0, 0);
    assert_kvbm_status(kvbm__cuda_open_verdict(&p), KVBM_ERR_NO_DEVICE);
    p = probe(cudaSuccess, 13000, cudaSuccess, 0, 0);
    assert_kvbm_status(kvbm__cuda_open_verdict(&p), KVBM_ERR_NO_DEVICE);
    /* A driver that is there but cannot run this runtime is an error. */
    p = probe(cudaSuccess, 12040, cudaErrorInsufficientDriver, 0, 0);
    assert_kvbm_status(kvbm__cuda_open_verdict(&p), KVBM_ERR_DEVICE);
    p = probe(cudaSuccess, 13000, cudaErrorDevicesUnavailable, 0, 0);
    assert_kvbm_status(kvbm__cuda_open_verdict(&p), KVBM_ERR_DEVICE);
    p = probe(cudaSuccess, 13000, cudaErrorSystemDriverMismatch, 0, 0);
    assert_kvbm_status(kvbm__cuda_open_verdict(&p), KVBM_ERR_DEVICE);
    p = probe(cudaErrorUnknown, 0, cudaSuccess, 0, 0);
    assert_kvbm_status(kvbm__cuda_open_verdict(&p), KVBM_ERR_DEVICE);
    /* An ordinal beyond the devices present is the caller's mistake. */
    p = probe(cudaSuccess, 13000, cudaSuccess, 2, 2);
    assert_kvbm_status(kvbm__cuda_open_verdict(&p), KVBM_ERR_INVALID_ARG);
    p = probe(cudaSuccess, 13000, cudaSuccess, 2, -1);
    assert_kvbm_status(kvbm__cuda_open_verdict(&p), KVBM_ERR_INVALID_ARG);
    p = probe(cudaSuccess, 13000, cudaSuccess, 2, 1);
    assert_kvbm_ok(kvbm__cuda_open_verdict(&p));
}

static void cuda_errors_map_to_statuses(void **state)
{
    (void)state;
    assert_kvbm_status(kvbm__cuda_status(cudaErrorMemoryAllocation), KVBM_ERR_NO_MEMORY);
    assert_kvbm_status(kvbm__cuda_status(cudaErrorNotReady), KVBM_ERR_BUSY);
    assert_kvbm_status(kvbm__cuda_status(cudaErrorNoDevice), KVBM_ERR_NO_DEVICE);
    /* Not NO_DEVICE: an insufficient driver must not look like "no GPU". */
    assert_kvbm_status(kvbm__cuda_status(cudaErrorInsufficientDriver), KVBM_ERR_DEVICE);
    assert_kvbm_status(kvbm__cuda_status(cudaErrorIllegalAddress), KVBM_ERR_DEVICE);
    assert_kvbm_status(kvbm__cuda_status(cudaErrorInvalidValue), KVBM_ERR_DEVICE);
}

static kvbm__copy_facts_t facts(kvbm_copy_method_t asked, size_t mean, bool reachable, bool batch,
                                bool legacy)
{
    return (kvbm__copy_facts_t){.asked = asked,
                                .kernel_threshold = 64 * 1024,
                                .mean_bytes = mean,
                                .kernel_reachable = reachable,
                                .batch_supported = batch,
                                .legacy_stream = legacy};
}

static void unreachable_memory_never_gets_the_kernel(void **state)
{
    (void)state;
    static const kvbm_copy_method_t asked[] = {KVBM_COPY_METHOD_AUTO, KVBM_COPY_METHOD_KERNEL,
                                               KVBM_COPY_METHOD_BATCH, KVBM_COPY_METHOD_PER_REGION};
    for (size_t a = 0; a < 4; a++)
        for (size_t mean = 0; mean <= 256 * 1024; mean += 4096)
            for (int batch = 0; batch < 2; batch++)
                for (int legacy = 0; legacy < 2; legacy++) {
                    kvbm__copy_facts_t f = facts(asked[a], mean, false, batch, legacy);
                    assert_int_not_equal(kvbm__cuda_pick_method(&f), KVBM_COPY_METHOD_KERNEL);
                }
}

static void auto_picks_by_size_and_reach(void **state)
{
    (void)state;
    kvbm__copy_facts_t f = facts(KVBM_COPY_METHOD_AUTO, 4096, true, true, false);
    assert_int_equal(kvbm__cuda_pick_method(&f), KVBM_COPY_METHOD_KERNEL);
    f = facts(KVBM_COPY_METHOD_AUTO, 64 * 1024 - 1, true, true, false);
    assert_int_equal(kvbm__cuda_pick_method(&f), KVBM_COPY_METHOD_KERNEL);
    f = facts(KVBM_COPY_METHOD_AUTO, 64 * 1024, true, true, false);
    assert_int_equal(kvbm__cuda_pick_method(&f), KVBM_COPY_METHOD_BATCH);
    f = facts(KVBM_COPY_METHOD_AUTO, 4096, false, true, false);
    assert_int_equal(kvbm__cuda_pick_method(&f), KVBM_COPY_METHOD_BATCH);
    f = facts(KVBM_COPY_METHOD_KERNEL, 1 << 20, true, true, false);
    assert_int_equal(kvbm__cuda_pick_method(&f), KVBM_COPY_METHOD_KERNEL);
    f = facts(KVBM_COPY_METHOD_PER_REGION, 4096, true, true, false);
    assert_int_equal(kvbm__cuda_pick_method(&f), KVBM_COPY_METHOD_PER_REGION);
}

static void legacy_stream_goes_per_region(void **state)
{
    (void)state;
    kvbm__copy_facts_t f = facts(KVBM_COPY_METHOD_BATCH, 1 << 20, true, true, true);
    assert_int_equal(kvbm__cuda_pick_method(&f), KVBM_COPY_METHOD_PER_REGION);
    f = facts(KVBM_COPY_METHOD_AUTO, 1 << 20, false, true, true);
    assert_int_equal(kvbm__cuda_pick_method(&f), KVBM_COPY_METHOD_PER_REGION);
    f = facts(KVBM_COPY_METHOD_AUTO, 1 << 20, false, false, false); /* no batch API */
    assert_int_equal(kvbm__cuda_pick_method(&f), KVBM_COPY_METHOD_PER_REGION);
    /* The kernel runs on any stream. */
    f = facts(KVBM_COPY_METHOD_AUTO, 4096, true, true, true);
    assert_int_equal(kvbm__cuda_pick_method(&f), KVBM_COPY_METHOD_KERNEL);
    assert_true(kvbm__cuda_stream_is_legacy(NULL));
    assert_true(kvbm__cuda_stream_is_legacy(cudaStreamLegacy));
    assert_false(kvbm__cuda_stream_is_legacy(cudaStreamPerThread));
    assert_false(kvbm__cuda_stream_is_legacy((cudaStream_t)(uintptr_t)0x7f00));
}

static void kernel_launches_cover_every_region(void **state)
{
    (void)state;
    assert_int_equal(kvbm__cuda_kernel_launches(0), 0);
    assert_int_equal(kvbm__cuda_kernel_launches(1), 1);
    assert_int_equal(kvbm__cuda_kernel_launches(KVBM__COPY_LAUNCH_MAX), 1);
    assert_int_equal(kvbm__cuda_kernel_launches(KVBM__COPY_LAUNCH_MAX + 1), 2);
    assert_int_equal(kvbm__cuda_kernel_launches(4096), 4);
}

static void pinned_pools_are_planned_in_chunks(void **state)
{
    (void)state;
    const size_t GiB = (size_t)1 << 30, page = 4096;
    kvbm__pinned_plan_t p;
    /* 8 GiB, default chunk (1 GiB), 64 CPUs: 8 chunks, 8 threads. */
    assert_kvbm_ok(kvbm__pinned_plan(8 * GiB, page, 0, 0, 64, &p));
    assert_int_equal(p.mapped_bytes, 8 * GiB);
    assert_int_equal(p.chunk_bytes, GiB);
    assert_int_equal(p.chunks, 8);
    assert_int_equal(p.threads, 8);
    /* 512 GiB + 1 byte on 2 MiB pages: rounded up, last chunk short. */
    assert_kvbm_ok(kvbm__pinned_plan(512 * GiB + 1, (size_t)2 << 20, 0, 0, 96, &p));
    assert_int_equal(p.mapped_bytes, 512 * GiB + ((size_t)2 << 20));
    assert_int_equal(p.chunks, 513);
    assert_int_equal(p.threads, KVBM__PINNED_THREADS_MAX);
    size_t off, len;
    kvbm__pinned_chunk(&p, 512, &off, &len);
    assert_int_equal(off, 512 * GiB);
    assert_int_equal(len, (size_t)2 << 20);
    kvbm__pinned_chunk(&p, 3, &off, &len);
    assert_int_equal(off, 3 * GiB);
    assert_int_equal(len, GiB);
    /* A chunk that is not a page multiple is rounded up; a pool smaller than
     * a chunk is one chunk; threads asked for win over CPUs, at most one per
     * chunk. */
    assert_kvbm_ok(kvbm__pinned_plan(10 * page + 5, page, 3 * page + 1, 2, 64, &p));
    assert_int_equal(p.mapped_bytes, 11 * page);
    assert_int_equal(p.chunk_bytes, 4 * page);
    assert_int_equal(p.chunks, 3);
    assert_int_equal(p.threads, 2);
    kvbm__pinned_chunk(&p, 2, &off, &len);
    assert_int_equal(len, 3 * page);
    assert_kvbm_ok(kvbm__pinned_plan(page, page, 0, 16, 64, &p));
    assert_int_equal(p.chunks, 1);
    assert_int_equal(p.chunk_bytes, page);
    assert_int_equal(p.threads, 1);
    assert_kvbm_ok(kvbm__pinned_plan(8 * GiB, page, 0, 0, 0, &p)); /* CPUs unknown */
    assert_int_equal(p.threads, 1);
    /* Refusals. */
    kvbm__pinned_plan_t untouched = {.page = 77};
    p = untouched;
    assert_kvbm_status(kvbm__pinned_plan(0, page, 0, 0, 1, &p), KVBM_ERR_INVALID_ARG);
    assert_kvbm_status(kvbm__pinned_plan(page, 3000, 0, 0, 1, &p), KVBM_ERR_INVALID_ARG);
    assert_kvbm_status(kvbm__pinned_plan(SIZE_MAX - 10, page, 0, 0, 1, &p), KVBM_ERR_OVERFLOW);
    assert_int_equal(p.page, 77);
}

static void range_set_answers_reach_and_chunk_ends(void **state)
{
    (void)state;
    kvbm__range_set_t set = {0};
    char *base = (char *)(uintptr_t)0x100000;
    assert_kvbm_ok(kvbm__range_set_add(&set, base, 4096, 0));
    assert_kvbm_ok(kvbm__range_set_add(&set, base + 8192, 4 * 1024, 1024)); /* chunked */
    assert_kvbm_ok(kvbm__range_set_add(&set, base - 4096, 4096, 0));        /* adjacent */
    assert_kvbm_status(kvbm__range_set_add(&set, base + 4000, 200, 0), KVBM_ERR_INVALID_ARG);
    assert_kvbm_status(kvbm__range_set_add(&set, base + 8192 + 4095, 1, 0), KVBM_ERR_INVALID_ARG);
    assert_kvbm_status(kvbm__range_set_add(&set, base + 4096, 0, 0), KVBM_ERR_INVALID_ARG);
    assert_kvbm_status(kvbm__range_set_add(&set, (void *)(UINTPTR_MAX - 10), 100, 0),
                       KVBM_ERR_INVALID_ARG);
    assert_int_equal(set.count, 3);

    assert_true(kvbm__range_set_covers(&set, base, 4096));
    assert_true(kvbm__range_set_covers(&set, base + 100, 0));
    assert_false(kvbm__range_set_covers(&set, base + 100, 4000)); /* runs past the end */
    assert_false(kvbm__range_set_covers(&set, base + 4096, 1));   /* the gap */
    assert_false(kvbm__range_set_covers(&set, base - 4097, 2));
    /* Two adjacent ranges are two allocations: not one covered region. */
    assert_false(kvbm__range_set_covers(&set, base - 10, 20));
    assert_null(kvbm__range_set_find(&set, base + 5000));
    assert_ptr_equal(kvbm__range_set_find(&set, base + 9000)->base, (uintptr_t)(base + 8192));

    /* Runs stop at chunk ends of chunked ranges only. */
    assert_int_equal(kvbm__range_set_run(&set, base + 8192, 4096), 1024);
    assert_int_equal(kvbm__range_set_run(&set, base + 8192 + 1000, 100), 24);
    assert_int_equal(kvbm__range_set_run(&set, base + 8192 + 1024, 1024), 1024);
    assert_int_equal(kvbm__range_set_run(&set, base + 8192 + 1024, 10), 10);
    assert_int_equal(kvbm__range_set_run(&set, base + 10, 5000), 5000); /* unchunked */
    assert_int_equal(kvbm__range_set_run(&set, base + 5000, 777), 777); /* unknown */

    assert_true(kvbm__range_set_remove(&set, base + 8192));
    assert_false(kvbm__range_set_remove(&set, base + 8192));
    assert_false(kvbm__range_set_remove(&set, base + 1)); /* not a base */
    assert_null(kvbm__range_set_find(&set, base + 9000));
    assert_int_equal(set.count, 2);
    /* Many ranges, added out of order, stay sorted and findable. */
    for (uintptr_t i = 0; i < 100; i++) {
        uintptr_t k = (i * 37) % 100;
        assert_kvbm_ok(kvbm__range_set_add(&set, (void *)(0x10000000 + k * 0x1000), 0x800, 0));
    }
    for (uintptr_t k = 0; k < 100; k++) {
        assert_true(kvbm__range_set_covers(&set, (void *)(0x10000000 + k * 0x1000 + 0x10), 0x7f0));
        assert_false(kvbm__range_set_covers(&set, (void *)(0x10000000 + k * 0x1000 + 0x800), 1));
    }
    kvbm__range_set_free(&set);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(only_no_device_at_all_allows_the_fallback),
        cmocka_unit_test(cuda_errors_map_to_statuses),
        cmocka_unit_test(unreachable_memory_never_gets_the_kernel),
        cmocka_unit_test(auto_picks_by_size_and_reach),
        cmocka_unit_test(legacy_stream_goes_per_region),
        cmocka_unit_test(kernel_launches_cover_every_region),
        cmocka_unit_test(pinned_pools_are_planned_in_chunks),
        cmocka_unit_test(range_set_answers_reach_and_chunk_ends),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
