/*
 * A bad peer harms no one else: regressions for what an adversarial pass
 * found, with forked ranks on loopback holding a shared secret.
 *
 *  - A 1 GiB raw send by one rank does not hold up another rank's pushes to
 *    the same receiver (requests from each peer are served apart).
 *  - A peer dripping one byte every 1.5 s holds only its own request: it
 *    fails at its deadline, the others go through meanwhile, and the
 *    dripping rank's next request works on a fresh connection.
 *  - A raw header asking for 64 GiB makes the receiver allocate nothing of
 *    that size (raw bytes land in a fixed 4 MiB scratch).
 *  - Ranks claiming 1-byte (or 4-byte) regions are refused at creation, on
 *    every rank.
 *  - Unknown status codes in replies fail that request with KVBM_ERR_PARSE;
 *    the next request works.
 *  - A push larger than the receiver's manager is refused before anything
 *    is allocated, and the connection stays usable.
 *  - A slow peer delays only the requests to it, not those to others.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <sys/mman.h>
#include <sys/resource.h>

#include "kvbm_test.h"
#include "xfer/fault.h"
#include "xfer/object.h"
#include "xfer_ranks.h"

#define LIMIT_S 60.0
#define KEY     0x706565722d746573ull

static const char SECRET[] = "peer tests share this secret.....";

static const xr_shape_t SHAPE = {.blocks = 64,
                                 .regions = 4,
                                 .region_bytes = 256,
                                 .layer_separate = true,
                                 .layout_key = KEY,
                                 .timeout_ms = 3000};

/* Shared by the test and its ranks (they are processes). */
typedef struct shared {
    xr_shape_t shape[XR_MAX_RANKS];
    atomic_int started; /* the bad peer's request is under way */
    atomic_int done;    /* and finished */
    atomic_int during;  /* requests another rank completed meanwhile */
    atomic_int bad_status;
    atomic_int finished; /* ranks done with their part */
    int64_t lie;
    uint32_t lie_count;
} shared_t;

static shared_t *shared_new(void)
{
    shared_t *s = mmap(NULL, sizeof(*s), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(s != MAP_FAILED);
    memset(s, 0, sizeof(*s));
    for (int r = 0; r < XR_MAX_RANKS; r++)
        s->shape[r] = SHAPE;
    memset(&xr_net, 0, sizeof(xr_net));
    xr_net.secret = SECRET;
    xr_net.secret_len = strlen(SECRET);
    return s;
}

static void pause_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Marks this rank's part done and waits for @p parts in all, so no rank
 * waits in a barrier longer than its timeout while a bad request runs. */
static void finish_part(shared_t *sh, int parts)
{
    atomic_fetch_add(&sh->finished, 1);
    while (atomic_load(&sh->finished) < parts)
        pause_ms(2);
}

/* Pushes n fresh blocks of @p salt to @p peer and waits. */
static kvbm_status_t push_fresh(xr_env_t *env, int peer, uint32_t salt, size_t n,
                                uint64_t *hashes_out)
{
    uint32_t ids[16];
    xr_hashes(salt, n, hashes_out);
    kvbm_status_t status = xr_make_blocks(env, hashes_out, n, ids);
    if (status != KVBM_OK)
        return status;
    kvbm_xfer_req_t *req;
    status = kvbm_xfer_push(env->xfer, peer, ids, hashes_out, n, NULL, &req);
    if (status == KVBM_OK) {
        status = kvbm_xfer_req_wait(req);
        kvbm_xfer_req_free(req);
    }
    (void)kvbm_manager_release(env->manager, ids, n);
    (void)kvbm_manager_invalidate(env->manager, ids, n); /* keep the pool free for the next */
    return status;
}

/* Rank 2's part in the first tests: push to rank 0 while rank 1's bad
 * request runs, counting the pushes that completed before it ended. */
static int keep_pushing(xr_env_t *env, shared_t *sh, double max_latency)
{
    while (atomic_load(&sh->started) == 0)
        pause_ms(1);
    pause_ms(20);
    uint64_t hashes[4];
    for (uint32_t i = 0; i < 400 && atomic_load(&sh->done) == 0; i++) {
        double t0 = xr_now();
        XR_CHECK_OK(push_fresh(env, 0, 5000 + i, 4, hashes));
        XR_CHECK(xr_now() - t0 < max_latency);
        if (atomic_load(&sh->done) == 0)
            atomic_fetch_add(&sh->during, 1);
    }
    return 0;
}

/* ------------------------------------------------------------ 1 GiB raw */

static int rank_raw_gigabyte(int rank, int size, uint16_t port, kvbm_xfer_rendezvous_t *rv,
                             void *arg)
{
    shared_t *sh = arg;
    xr_env_t env;
    XR_CHECK_OK(xr_env_open(&env, &sh->shape[rank], rank, size, port, rv));
    if (rank == 1) {
        /* Untouched anonymous memory reads as zeros and takes no RAM. */
        size_t bytes = (size_t)1 << 30;
        void *buf = mmap(NULL, bytes, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        XR_CHECK(buf != MAP_FAILED);
        kvbm_xfer_req_t *req;
        XR_CHECK_OK(kvbm_xfer_send_raw(env.xfer, 0, buf, bytes, &req));
        atomic_store(&sh->started, 1);
        kvbm_status_t status = kvbm_xfer_req_wait(req);
        atomic_store(&sh->done, 1);
        kvbm_xfer_req_free(req);
        munmap(buf, bytes);
        XR_CHECK_OK(status);
    } else if (rank == 2) {
        if (keep_pushing(&env, sh, 2.0) != 0)
            return 1;
    }
    finish_part(sh, 3);
    XR_CHECK_OK(kvbm_xfer_barrier(env.xfer));
    if (rank == 0) {
        XR_CHECK(atomic_load(&env.arrivals_failed) == 0);
        XR_CHECK(atomic_load(&env.arrivals_ok) >= atomic_load(&sh->during));
    }
    xr_env_close(&env);
    return 0;
}

static void raw_gigabyte_from_one_rank_does_not_hold_up_anothers_pushes(void **state)
{
    shared_t *sh = shared_new();
    assert_int_equal(xr_run(3, rank_raw_gigabyte, sh, 0, LIMIT_S), 0);
    print_message("pushes completed during the 1 GiB raw send: %d\n", atomic_load(&sh->during));
    /* One service thread for all would have made every push wait for the
     * whole gigabyte (at most one could slip in before it ended). */
    assert_true(atomic_load(&sh->during) >= 3);
    munmap(sh, sizeof(*sh));
}

/* ------------------------------------------------------------ drip */

static int rank_drip(int rank, int size, uint16_t port, kvbm_xfer_rendezvous_t *rv, void *arg)
{
    shared_t *sh = arg;
    xr_env_t env;
    if (rank == 1)
        kvbm__xfer_fault_drip(1500); /* its next data send: a byte every 1.5 s */
    XR_CHECK_OK(xr_env_open(&env, &sh->shape[rank], rank, size, port, rv));
    enum { N = 4 };
    uint64_t hashes[N];
    uint32_t ids[N];
    xr_hashes(900, N, hashes);
    if (rank == 1) {
        XR_CHECK_OK(xr_make_blocks(&env, hashes, N, ids));
        kvbm_xfer_req_t *req;
        double t0 = xr_now();
        XR_CHECK_OK(kvbm_xfer_push(env.xfer, 0, ids, hashes, N, NULL, &req));
        atomic_store(&sh->started, 1);
        kvbm_status_t status = kvbm_xfer_req_wait(req);
        atomic_store(&sh->done, 1);
        atomic_store(&sh->bad_status, status);
        kvbm_xfer_req_free(req);
        double took = xr_now() - t0;
        /* Cut at the receiver's deadline (one timeout for 4 KiB), not after
         * 4096 drips. */
        XR_CHECK(status == KVBM_ERR_PEER || status == KVBM_ERR_TIMEOUT);
        XR_CHECK(took < 3.0 * sh->shape[1].timeout_ms / 1000.0);
        /* The same push again, on a fresh connection: it lands. */
        XR_CHECK_OK(xr_push_wait(&env, 0, ids, hashes, N));
        kvbm_xfer_stats_t stats;
        XR_CHECK_OK(kvbm_xfer_stats(env.xfer, &stats));
        XR_CHECK(stats.reconnects == 1);
        XR_CHECK_OK(kvbm_manager_release(env.manager, ids, N));
    } else if (rank == 2) {
        if (keep_pushing(&env, sh, 1.5) != 0)
            return 1;
    }
    finish_part(sh, 3);
    XR_CHECK_OK(kvbm_xfer_barrier(env.xfer));
    if (rank == 0) {
        /* The drip failed alone, at this rank's deadline; nothing of it was
         * kept; the retry landed whole. */
        XR_CHECK(atomic_load(&env.arrivals_failed) == 1);
        XR_CHECK(atomic_load(&env.last_failure) == KVBM_ERR_TIMEOUT);
        kvbm_xfer_stats_t stats;
        XR_CHECK_OK(kvbm_xfer_stats(env.xfer, &stats));
        XR_CHECK(stats.requests_timed_out == 1);
        XR_CHECK(xr_holds(&env, hashes, N));
        kvbm_pool_counts_t c;
        kvbm_manager_counts(env.manager, &c);
        XR_CHECK(c.active == 0);
    }
    xr_env_close(&env);
    return 0;
}

static void dripping_peer_holds_only_its_own_request(void **state)
{
    shared_t *sh = shared_new();
    for (int r = 0; r < 3; r++)
        sh->shape[r].timeout_ms = 2000; /* shorter than the drip's 1.5 s x 4096 bytes */
    assert_int_equal(xr_run(3, rank_drip, sh, 0, LIMIT_S), 0);
    print_message("pushes by another rank during the drip: %d\n", atomic_load(&sh->during));
    assert_true(atomic_load(&sh->during) >= 3);
    munmap(sh, sizeof(*sh));
}

/* ------------------------------------------------------------ 64 GiB header */

static long peak_rss_kib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

static int rank_raw_liar(int rank, int size, uint16_t port, kvbm_xfer_rendezvous_t *rv, void *arg)
{
    shared_t *sh = arg;
    if (rank == 1)
        kvbm__xfer_fault_lie(KVBM__LIE_RAW_BYTES, (int64_t)64 << 30, 1);
    xr_env_t env;
    XR_CHECK_OK(xr_env_open(&env, &sh->shape[rank], rank, size, port, rv));
    long rss_before = peak_rss_kib();
    XR_CHECK_OK(kvbm_xfer_barrier(env.xfer));
    if (rank == 1) {
        size_t bytes = (size_t)8 << 20;
        void *buf = calloc(1, bytes);
        XR_CHECK(buf != NULL);
        kvbm_xfer_req_t *req;
        XR_CHECK_OK(kvbm_xfer_send_raw(env.xfer, 0, buf, bytes, &req));
        atomic_store(&sh->started, 1);
        /* Announced 64 GiB, sent 8 MiB: no RAW_DONE comes. */
        XR_CHECK_STATUS(kvbm_xfer_req_wait(req), KVBM_ERR_TIMEOUT);
        atomic_store(&sh->done, 1);
        kvbm_xfer_req_free(req);
        free(buf);
        uint64_t hashes[4];
        XR_CHECK_OK(push_fresh(&env, 0, 4100, 4, hashes)); /* a fresh connection */
    } else if (rank == 2) {
        if (keep_pushing(&env, sh, 2.0) != 0)
            return 1;
    }
    finish_part(sh, 3);
    XR_CHECK_OK(kvbm_xfer_barrier(env.xfer));
    if (rank == 0) {
        long grown = peak_rss_kib() - rss_before;
        fprintf(stderr, "rank 0: peak RSS grew by %ld KiB\n", grown);
        XR_CHECK(grown < 48 * 1024); /* the 4 MiB scratch, not 64 GiB */
    }
    xr_env_close(&env);
    return 0;
}

static void raw_header_asking_for_64_gib_allocates_nothing_of_it(void **state)
{
    shared_t *sh = shared_new();
    for (int r = 0; r < 3; r++)
        sh->shape[r].timeout_ms = 1000;
    assert_int_equal(xr_run(3, rank_raw_liar, sh, 0, LIMIT_S), 0);
    assert_true(atomic_load(&sh->during) >= 1);
    munmap(sh, sizeof(*sh));
}

/* ------------------------------------------------------------ regions */

static int rank_regions_liar(int rank, int size, uint16_t port, kvbm_xfer_rendezvous_t *rv,
                             void *arg)
{
    shared_t *sh = arg;
    if (rank == size - 1)
        kvbm__xfer_fault_lie(KVBM__LIE_REGIONS, sh->lie, 1);
    xr_env_t env;
    double t0 = xr_now();
    XR_CHECK_STATUS(xr_env_open(&env, &sh->shape[rank], rank, size, port, rv),
                    KVBM_ERR_INCOMPATIBLE);
    XR_CHECK(xr_now() - t0 < 2.0); /* refused at once, not after a timeout */
    return 0;
}

static void ranks_claiming_tiny_regions_are_refused_at_creation(void **state)
{
    shared_t *sh = shared_new();
    sh->lie = 1; /* 1-byte regions: 1024 of them per 1 KiB block */
    assert_int_equal(xr_run(2, rank_regions_liar, sh, 0, LIMIT_S), 0);
    sh->lie = 4; /* 256 regions of 4 bytes, within the region count */
    assert_int_equal(xr_run(3, rank_regions_liar, sh, 0, LIMIT_S), 0);

    /* What each rank checks, directly: 1-byte regions never pass, whatever
     * the totals say. */
    kvbm__wire_desc_t d = {.rank = 1,
                           .size = 2,
                           .transport = KVBM_XFER_SOCKET,
                           .mem_kind = KVBM_XFER_MEM_HOST,
                           .num_blocks = 60000,
                           .region_count = 4096,
                           .region_bytes = 1,
                           .block_stride = 4096,
                           .family = KVBM__WIRE_AF_INET};
    assert_false(kvbm__xfer_desc_valid(&d, 1, 2));
    d.region_count = 1024;
    d.region_bytes = 4;
    assert_false(kvbm__xfer_desc_valid(&d, 1, 2));
    d.region_count = 16;
    d.region_bytes = 256;
    assert_true(kvbm__xfer_desc_valid(&d, 1, 2));
    d.block_stride = UINT64_MAX / 2; /* a slab no host has */
    assert_false(kvbm__xfer_desc_valid(&d, 1, 2));
    munmap(sh, sizeof(*sh));
}

/* ------------------------------------------------------------ statuses */

static int rank_status_liar(int rank, int size, uint16_t port, kvbm_xfer_rendezvous_t *rv,
                            void *arg)
{
    shared_t *sh = arg;
    if (rank == 1)
        kvbm__xfer_fault_lie(KVBM__LIE_STATUS, sh->lie, 2); /* its next ACCEPT and OFFER */
    xr_env_t env;
    XR_CHECK_OK(xr_env_open(&env, &sh->shape[rank], rank, size, port, rv));
    enum { N = 5 };
    uint64_t hashes[N];
    uint32_t ids[N], got[N];
    xr_hashes(950, N, hashes);
    if (rank == 1)
        XR_CHECK_OK(xr_make_blocks(&env, hashes, N, ids));
    XR_CHECK_OK(kvbm_xfer_barrier(env.xfer));
    if (rank == 0) {
        uint64_t pushed[N];
        kvbm_xfer_req_t *req;
        XR_CHECK_STATUS(push_fresh(&env, 1, 960, N, pushed), KVBM_ERR_PARSE);
        XR_CHECK_OK(kvbm_xfer_pull(env.xfer, 1, hashes, N, &req));
        XR_CHECK_STATUS(kvbm_xfer_req_wait(req), KVBM_ERR_PARSE);
        kvbm_xfer_req_free(req);
        XR_CHECK(xr_pools(&env, env.blocks, 0, 0)); /* nothing allocated, nothing kept */
        /* The lies are spent: both work on fresh connections. */
        XR_CHECK_OK(push_fresh(&env, 1, 960, N, pushed));
        size_t n = 0;
        XR_CHECK_OK(xr_pull_wait(&env, 1, hashes, N, got, &n));
        XR_CHECK(n == N);
        XR_CHECK(xr_verify_all(&env, got, hashes, N));
        XR_CHECK_OK(kvbm_manager_release(env.manager, got, N));
        kvbm_xfer_stats_t stats;
        XR_CHECK_OK(kvbm_xfer_stats(env.xfer, &stats));
        XR_CHECK(stats.protocol_errors == 2);
        XR_CHECK(stats.reconnects == 2);
    }
    XR_CHECK_OK(kvbm_xfer_barrier(env.xfer));
    if (rank == 1) {
        /* The lied-about push left nothing behind; the honest one landed. */
        XR_CHECK(atomic_load(&env.arrivals_ok) == 1);
        XR_CHECK(xr_pools_settle(&env, env.blocks - 2 * N, N, N, 2.0));
        XR_CHECK_OK(kvbm_manager_release(env.manager, ids, N));
    }
    xr_env_close(&env);
    return 0;
}

static void unknown_status_codes_fail_one_request_each(void **state)
{
    shared_t *sh = shared_new();
    sh->lie = 12345;
    assert_int_equal(xr_run(2, rank_status_liar, sh, 0, LIMIT_S), 0);
    sh->lie = -999; /* negative, but no kvbm status */
    assert_int_equal(xr_run(2, rank_status_liar, sh, 0, LIMIT_S), 0);
    munmap(sh, sizeof(*sh));
}

/* ------------------------------------------------------------ oversized push */

static int rank_oversized(int rank, int size, uint16_t port, kvbm_xfer_rendezvous_t *rv, void *arg)
{
    shared_t *sh = arg;
    xr_env_t env;
    XR_CHECK_OK(xr_env_open(&env, &sh->shape[rank], rank, size, port, rv));
    enum { N = 20 };
    uint64_t hashes[N];
    uint32_t ids[N];
    xr_hashes(970, N, hashes);
    if (rank == 0) {
        XR_CHECK_OK(xr_make_blocks(&env, hashes, N, ids));
        kvbm_xfer_req_t *req;
        XR_CHECK_OK(kvbm_xfer_push(env.xfer, 1, ids, hashes, N, NULL, &req));
        XR_CHECK_STATUS(kvbm_xfer_req_wait(req), KVBM_ERR_NO_BLOCKS);
        kvbm_xfer_req_free(req);
        XR_CHECK_OK(xr_push_wait(&env, 1, ids, hashes, 3));
        kvbm_xfer_stats_t stats;
        XR_CHECK_OK(kvbm_xfer_stats(env.xfer, &stats));
        XR_CHECK(stats.reconnects == 0); /* a clean refusal keeps the connection */
        XR_CHECK_OK(kvbm_manager_release(env.manager, ids, N));
    }
    XR_CHECK_OK(kvbm_xfer_barrier(env.xfer));
    if (rank == 1) {
        XR_CHECK(atomic_load(&env.last_failure) == KVBM_ERR_NO_BLOCKS);
        XR_CHECK(xr_pools(&env, env.blocks - 3, 0, 3));
    }
    xr_env_close(&env);
    return 0;
}

static void push_larger_than_the_receiver_refused_before_allocating(void **state)
{
    shared_t *sh = shared_new();
    sh->shape[1].blocks = 8; /* 20 blocks can never fit */
    assert_int_equal(xr_run(2, rank_oversized, sh, 0, LIMIT_S), 0);
    munmap(sh, sizeof(*sh));
}

/* ------------------------------------------------------------ slow peer */

/* Rank 1 takes 2 s to acknowledge a push (a slow application callback);
 * rank 0's pushes to rank 2 meanwhile are not queued behind it. */
static int rank_slow_peer(int rank, int size, uint16_t port, kvbm_xfer_rendezvous_t *rv, void *arg)
{
    shared_t *sh = arg;
    xr_env_t env;
    XR_CHECK_OK(xr_env_open(&env, &sh->shape[rank], rank, size, port, rv));
    if (rank == 1)
        atomic_store(&env.arrival_delay_ms, 2000);
    XR_CHECK_OK(kvbm_xfer_barrier(env.xfer));
    if (rank == 0) {
        enum { N = 4 };
        uint64_t slow_hashes[N], hashes[N];
        uint32_t ids[N];
        xr_hashes(980, N, slow_hashes);
        XR_CHECK_OK(xr_make_blocks(&env, slow_hashes, N, ids));
        kvbm_xfer_req_t *slow;
        XR_CHECK_OK(kvbm_xfer_push(env.xfer, 1, ids, slow_hashes, N, NULL, &slow));
        pause_ms(50);
        for (uint32_t i = 0; i < 5; i++)
            XR_CHECK_OK(push_fresh(&env, 2, 990 + i, N, hashes));
        XR_CHECK(!kvbm_xfer_req_done(slow)); /* still in rank 1's callback */
        XR_CHECK_OK(kvbm_xfer_req_wait(slow));
        kvbm_xfer_req_free(slow);
        XR_CHECK_OK(kvbm_manager_release(env.manager, ids, N));
    }
    XR_CHECK_OK(kvbm_xfer_barrier(env.xfer));
    xr_env_close(&env);
    return 0;
}

static void slow_peer_delays_only_the_requests_to_it(void **state)
{
    shared_t *sh = shared_new();
    assert_int_equal(xr_run(3, rank_slow_peer, sh, 0, LIMIT_S), 0);
    munmap(sh, sizeof(*sh));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(raw_gigabyte_from_one_rank_does_not_hold_up_anothers_pushes),
        cmocka_unit_test(dripping_peer_holds_only_its_own_request),
        cmocka_unit_test(raw_header_asking_for_64_gib_allocates_nothing_of_it),
        cmocka_unit_test(ranks_claiming_tiny_regions_are_refused_at_creation),
        cmocka_unit_test(unknown_status_codes_fail_one_request_each),
        cmocka_unit_test(push_larger_than_the_receiver_refused_before_allocating),
        cmocka_unit_test(slow_peer_delays_only_the_requests_to_it),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
