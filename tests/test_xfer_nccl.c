/*
 * The NCCL transport. Without NCCL built in, or without a GPU, it must say so
 * (KVBM_ERR_UNSUPPORTED / KVBM_ERR_NO_DEVICE) from the probe and from create,
 * at once and without contacting any peer; the end-to-end test then skips
 * with a message. With two GPUs, two forked ranks push and pull blocks
 * between CUDA device pools and check every byte through host staging pools.
 *
 * CUDA must not be initialised in a process that forks ranks afterwards, so
 * every probe runs in a short-lived child.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "kvbm/backend.h"
#include "kvbm/layout.h"
#include "kvbm_test.h"
#include "xfer_ranks.h"

#if defined(__has_include)
#if __has_include(<cuda_runtime.h>)
#include <cuda_runtime.h>
#define HAVE_CUDA_HEADER 1
#endif
#endif
#include <sys/mman.h>
#if defined(KVBM_TEST_NCCL_API) && defined(HAVE_CUDA_HEADER)
#include "cuda_xfer/nccl_api.h" /* kvbm's run-time NCCL loader: the test's own communicator */
#define HAVE_NCCL_API 1
#endif

typedef struct probe_result {
    kvbm_status_t status;
    int devices;
} probe_result_t;

/* Probes in a child so this process never initialises CUDA. */
static probe_result_t probe_in_child(void)
{
    int fds[2];
    probe_result_t r = {.status = KVBM_ERR_INTERNAL, .devices = 0};
    if (pipe(fds) != 0)
        return r;
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        probe_result_t c = {.status = kvbm_xfer_transport_probe(KVBM_XFER_NCCL), .devices = 0};
#ifdef HAVE_CUDA_HEADER
        if (c.status == KVBM_OK && cudaGetDeviceCount(&c.devices) != cudaSuccess)
            c.devices = 0;
#endif
        ssize_t w = write(fds[1], &c, sizeof(c));
        _exit(w == (ssize_t)sizeof(c) ? 0 : 1);
    }
    close(fds[1]);
    if (pid > 0) {
        if (read(fds[0], &r, sizeof(r)) != (ssize_t)sizeof(r))
            r.status = KVBM_ERR_INTERNAL;
        waitpid(pid, NULL, 0);
    }
    close(fds[0]);
    return r;
}

static void probe_answers_and_create_agrees(void **state)
{
    probe_result_t probe = probe_in_child();
    assert_true(probe.status == KVBM_OK || probe.status == KVBM_ERR_UNSUPPORTED ||
                probe.status == KVBM_ERR_NO_DEVICE);
    print_message("NCCL transport: %s (%s), %d device(s)\n", kvbm_status_name(probe.status),
                  kvbm_status_str(probe.status), probe.devices);
    if (probe.status == KVBM_OK)
        return; /* covered by the end-to-end test; CUDA stays out of this process */

    kvbm_manager_t *manager = test_manager_new(4, KVBM_DUPLICATION_REJECT, NULL);
    static unsigned char slab[4 * 64];
    void *bases[1] = {slab};
    kvbm_xfer_config_t config = KVBM_XFER_CONFIG_INIT;
    config.transport = KVBM_XFER_NCCL;
    config.rank = 1;
    config.size = 2;
    config.rendezvous_port = 9; /* nobody listens: create must fail before trying */
    config.timeout_ms = 60000;
    config.manager = manager;
    config.memory.kind = KVBM_XFER_MEM_DEVICE;
    config.memory.num_blocks = 4;
    config.memory.region_count = 1;
    config.memory.region_bytes = 64;
    config.memory.block_stride = 64;
    config.memory.region_base = bases;
    kvbm_xfer_t *xfer = NULL;
    double t0 = xr_now();
    assert_kvbm_status(kvbm_xfer_create(&config, &xfer), probe.status);
    assert_true(xr_now() - t0 < 5.0);
    assert_null(xfer);
    kvbm_manager_destroy(manager);
}

/* ------------------------------------------------------------ on GPUs */

enum { GPU_BLOCKS = 64, GPU_N = 12 };

typedef struct gpu_rank {
    kvbm_layout_t *layout;
    kvbm_backend_t *backend;
    kvbm_stream_t *stream;
    kvbm_fence_t *fence;
    kvbm_pool_t *device; /* the blocks NCCL moves */
    kvbm_pool_t *host;   /* staging, same layout */
    kvbm_manager_t *manager;
    kvbm_xfer_t *xfer;
} gpu_rank_t;

static bool staged_check(gpu_rank_t *g, const uint32_t *ids, const uint64_t *hashes, size_t n,
                         bool fill)
{
    size_t block_bytes = kvbm_layout_block_bytes(g->layout);
    size_t regions = kvbm_layout_regions_per_block(g->layout);
    kvbm_region_t reg[64];
    if (!fill) {
        if (kvbm_backend_copy_blocks(g->backend, g->stream, g->layout, g->device, ids, g->host, ids,
                                     n, KVBM_COPY_D2H, g->fence) != KVBM_OK ||
            kvbm_fence_wait(g->fence) != KVBM_OK)
            return false;
    }
    for (size_t i = 0; i < n; i++) {
        size_t count = 0, k = 0;
        if (regions > 64 ||
            kvbm_layout_block_regions(g->layout, ids[i], reg, 64, &count) != KVBM_OK)
            return false;
        for (size_t r = 0; r < count; r++) {
            unsigned char *p = (unsigned char *)kvbm_pool_ptr(g->host) + reg[r].offset;
            for (size_t j = 0; j < reg[r].bytes; j++, k++) {
                if (fill)
                    p[j] = xr_pattern(hashes[i], k);
                else if (p[j] != xr_pattern(hashes[i], k))
                    return false;
            }
        }
        if (k != block_bytes)
            return false;
    }
    if (fill)
        return kvbm_backend_copy_blocks(g->backend, g->stream, g->layout, g->host, ids, g->device,
                                        ids, n, KVBM_COPY_H2D, g->fence) == KVBM_OK &&
               kvbm_fence_wait(g->fence) == KVBM_OK;
    return true;
}

/* How a GPU run joins: kvbm's own communicator, or the caller's (borrowed,
 * with the engine's stream), whose unique id rank 0 shares here. */
typedef struct gpu_run {
    bool borrowed;
#ifdef HAVE_NCCL_API
    ncclUniqueId id;
#endif
    atomic_int id_ready;
} gpu_run_t;

#ifdef HAVE_NCCL_API
/* The caller's communicator, as an engine would have made it. */
static int make_engine_comm(int rank, gpu_run_t *run, ncclComm_t *comm_out)
{
    const kvbm__nccl_api_t *api = kvbm__nccl_api();
    XR_CHECK(api != NULL);
    if (rank == 0) {
        XR_CHECK(api->get_unique_id(&run->id) == ncclSuccess);
        atomic_store(&run->id_ready, 1);
    }
    double t0 = xr_now();
    while (atomic_load(&run->id_ready) == 0 && xr_now() - t0 < 30.0)
        usleep(1000);
    XR_CHECK(atomic_load(&run->id_ready) == 1);
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    XR_CHECK(api->comm_init_rank_config(comm_out, 2, run->id, rank, &config) == ncclSuccess);
    return 0;
}

/* kvbm left the caller's communicator alone: it still answers, then the
 * caller ends it. */
static int end_engine_comm(ncclComm_t comm)
{
    const kvbm__nccl_api_t *api = kvbm__nccl_api();
    int count = 0;
    ncclResult_t async = ncclInternalError;
    XR_CHECK(api->comm_count(comm, &count) == ncclSuccess && count == 2);
    XR_CHECK(api->comm_get_async_error(comm, &async) == ncclSuccess && async == ncclSuccess);
    XR_CHECK(api->comm_destroy(comm) == ncclSuccess);
    return 0;
}
#endif

/* Rank 0 pushes GPU_N blocks to rank 1, which checks them; rank 0 drops its
 * copies and pulls them back, checked too. */
static int gpu_push_and_pull(gpu_rank_t *g, int rank)
{
    uint64_t hashes[GPU_N];
    uint32_t ids[GPU_N];
    size_t n = 0;
    xr_hashes(800, GPU_N, hashes);
    if (rank == 0) {
        XR_CHECK_OK(kvbm_manager_allocate(g->manager, GPU_N, ids, NULL, NULL));
        XR_CHECK(staged_check(g, ids, hashes, GPU_N, true));
        XR_CHECK_OK(kvbm_manager_register(g->manager, ids, hashes, GPU_N, NULL, ids));
        kvbm_xfer_req_t *req;
        XR_CHECK_OK(kvbm_xfer_push(g->xfer, 1, ids, hashes, GPU_N, NULL, &req));
        XR_CHECK_OK(kvbm_xfer_req_wait(req));
        kvbm_xfer_req_free(req);
        XR_CHECK_OK(kvbm_manager_release(g->manager, ids, GPU_N));
    }
    XR_CHECK_OK(kvbm_xfer_barrier(g->xfer));
    if (rank == 1) {
        XR_CHECK_OK(kvbm_manager_match(g->manager, hashes, GPU_N, ids, &n));
        XR_CHECK(n == GPU_N);
        XR_CHECK(staged_check(g, ids, hashes, GPU_N, false));
        XR_CHECK_OK(kvbm_manager_release(g->manager, ids, GPU_N));
    } else {
        /* Drop the local copies, then pull them back from rank 1. */
        XR_CHECK_OK(kvbm_manager_reset_inactive(g->manager));
        kvbm_xfer_req_t *req;
        XR_CHECK_OK(kvbm_xfer_pull(g->xfer, 1, hashes, GPU_N, &req));
        XR_CHECK_OK(kvbm_xfer_req_wait(req));
        XR_CHECK_OK(kvbm_xfer_req_blocks(req, ids, GPU_N, &n));
        kvbm_xfer_req_free(req);
        XR_CHECK(n == GPU_N);
        XR_CHECK(staged_check(g, ids, hashes, GPU_N, false));
        XR_CHECK_OK(kvbm_manager_release(g->manager, ids, GPU_N));
    }
    XR_CHECK_OK(kvbm_xfer_barrier(g->xfer));
    return 0;
}

static int gpu_rank_main(int rank, int size, uint16_t port, kvbm_xfer_rendezvous_t *rv, void *arg)
{
    gpu_run_t *run = arg;
    (void)run; /* read only where the test can make its own communicator */
    gpu_rank_t g = {0};
    kvbm_layout_config_t lc = KVBM_LAYOUT_CONFIG_INIT;
    lc.kind = rank == 0 ? KVBM_LAYOUT_LAYER_SEPARATE : KVBM_LAYOUT_FULLY_CONTIGUOUS;
    lc.num_blocks = GPU_BLOCKS;
    lc.num_layers = 4;
    lc.tokens_per_block = 16;
    lc.inner_dim = 128;
    XR_CHECK_OK(kvbm_layout_create(&lc, &g.layout));
    kvbm_backend_config_t bc = KVBM_BACKEND_CONFIG_INIT;
    bc.kind = KVBM_BACKEND_CUDA;
    bc.device = rank;
    XR_CHECK_OK(kvbm_backend_create(&bc, &g.backend));
    XR_CHECK_OK(kvbm_stream_create(g.backend, &g.stream));
    XR_CHECK_OK(kvbm_fence_create(g.backend, &g.fence));
    size_t total = kvbm_layout_total_bytes(g.layout);
    XR_CHECK_OK(kvbm_pool_create(g.backend, KVBM_MEM_DEVICE, total, &g.device));
    XR_CHECK_OK(kvbm_pool_create(g.backend, KVBM_MEM_HOST, total, &g.host));
    kvbm_manager_config_t mc = KVBM_MANAGER_CONFIG_INIT;
    mc.num_blocks = GPU_BLOCKS;
    XR_CHECK_OK(kvbm_manager_create(&mc, &g.manager));

    kvbm_xfer_config_t config = KVBM_XFER_CONFIG_INIT;
    config.transport = KVBM_XFER_NCCL;
    config.rank = rank;
    config.size = size;
    config.rendezvous = rv;
    config.rendezvous_port = port;
    config.timeout_ms = 20000;
    config.manager = g.manager;
    config.layout = g.layout;
    config.layout_base = kvbm_pool_ptr(g.device);
    config.cuda_device = rank;
#ifdef HAVE_NCCL_API
    ncclComm_t engine_comm = NULL;
    kvbm_stream_t *engine_stream = NULL;
    if (run->borrowed) {
        XR_CHECK(cudaSetDevice(rank) == cudaSuccess);
        if (make_engine_comm(rank, run, &engine_comm) != 0)
            return 1;
        XR_CHECK_OK(kvbm_stream_create(g.backend, &engine_stream));
        config.nccl_comm = engine_comm;
        config.engine_stream = engine_stream;
        config.cuda_device = -1; /* taken from the communicator */
    }
#endif
    XR_CHECK_OK(kvbm_xfer_create(&config, &g.xfer));
    int rc = gpu_push_and_pull(&g, rank);
    kvbm_xfer_destroy(g.xfer);
#ifdef HAVE_NCCL_API
    if (rc == 0 && engine_comm != NULL)
        rc = end_engine_comm(engine_comm);
    kvbm_stream_destroy(engine_stream);
#endif
    kvbm_manager_destroy(g.manager);
    kvbm_pool_destroy(g.host);
    kvbm_pool_destroy(g.device);
    kvbm_fence_destroy(g.fence);
    kvbm_stream_destroy(g.stream);
    kvbm_backend_destroy(g.backend);
    kvbm_layout_destroy(g.layout);
    return rc;
}

static gpu_run_t *gpu_run_new(bool borrowed)
{
    gpu_run_t *run =
        mmap(NULL, sizeof(*run), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(run != MAP_FAILED);
    memset(run, 0, sizeof(*run));
    run->borrowed = borrowed;
    return run;
}

static void push_and_pull_on_gpus(void **state)
{
    gpu_run_t *run = gpu_run_new(false);
    assert_int_equal(xr_run(2, gpu_rank_main, run, 0, 120.0), 0);
    munmap(run, sizeof(*run));
}

/* The caller's communicator and engine stream: kvbm splits a private
 * communicator, orders its groups with the engine stream, and leaves the
 * caller's communicator working after destroy. */
#ifdef HAVE_NCCL_API
static void push_and_pull_on_a_borrowed_communicator(void **state)
{
    gpu_run_t *run = gpu_run_new(true);
    assert_int_equal(xr_run(2, gpu_rank_main, run, 0, 120.0), 0);
    munmap(run, sizeof(*run));
}
#endif

/* `test_xfer_nccl` checks the probe and create everywhere; `test_xfer_nccl
 * gpus` runs the two-rank transfers and exits KVBM_TEST_SKIPPED where NCCL or
 * two GPUs are missing, so that ctest reports it skipped rather than passed. */
int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "gpus") == 0) {
        probe_result_t probe = probe_in_child();
        if (probe.status != KVBM_OK || probe.devices < 2) {
            printf("skipped: NCCL transfers need NCCL and two GPUs here (%s, %d found)\n",
                   kvbm_status_str(probe.status), probe.devices);
            return KVBM_TEST_SKIPPED;
        }
        const struct CMUnitTest gpu_tests[] = {
            cmocka_unit_test(push_and_pull_on_gpus),
#ifdef HAVE_NCCL_API
            cmocka_unit_test(push_and_pull_on_a_borrowed_communicator),
#endif
        };
        return cmocka_run_group_tests(gpu_tests, NULL, NULL);
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(probe_answers_and_create_agrees),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
