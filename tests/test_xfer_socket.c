/*
 * The transfer layer on the CPU (socket) transport, with 2 and 4 processes
 * meeting on 127.0.0.1 at an ephemeral port: push and pull with content
 * checks, layouts refused at creation, peers killed or frozen in the middle
 * of a transfer (errors within the timeout, nothing registered, no block
 * lost), unknown hashes, no room on the receiver, argument checks.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "kvbm/backend.h"
#include "kvbm/layout.h"
#include "kvbm_test.h"
#include "xfer/fault.h"
#include "xfer_ranks.h"

#define LIMIT_S 25.0
#define KEY     0x6b76626d2d746573ull

static const xr_shape_t LAYER_SEPARATE = {.blocks = 64,
                                          .regions = 4,
                                          .region_bytes = 256,
                                          .layer_separate = true,
                                          .layout_key = KEY,
                                          .timeout_ms = 5000};
static const xr_shape_t CONTIGUOUS = {.blocks = 48,
                                      .regions = 1,
                                      .region_bytes = 1024,
                                      .layer_separate = false,
                                      .layout_key = KEY,
                                      .timeout_ms = 5000};

/* Per-test arguments shared by all ranks (copied into each child by fork). */
typedef struct scenario {
    xr_shape_t shape[XR_MAX_RANKS];
    size_t count;
    kvbm__xfer_fault_t fault; /* applied on rank 1 (dedup tests: rank 0) */
    size_t fault_after;
} scenario_t;

static void scenario_same(scenario_t *s, const xr_shape_t *shape)
{
    memset(s, 0, sizeof(*s));
    for (int r = 0; r < XR_MAX_RANKS; r++)
        s->shape[r] = *shape;
}

/* ------------------------------------------------------------ push */

static int rank_push_pair(int rank, int size, uint16_t port, kvbm_xfer_rendezvous_t *rv, void *arg)
{
    scenario_t *s = arg;
    xr_env_t env;
    XR_CHECK_OK(xr_env_open(&env, &s->shape[rank], rank, size, port, rv));
    enum { N = 10 };
    uint64_t mine[N], theirs[N];
    uint32_t ids[N], got[N];
    xr_hashes(100 + (uint32_t)rank, N, mine);
    xr_hashes(100 + (uint32_t)(1 - rank), N, theirs);

    /* Take 2N blocks and use a mix of runs and gaps, so the plan has both
     * coalesced and separate pieces; give the rest back. */
    uint32_t all[(size_t)2 * N];
    XR_CHECK_OK(kvbm_manager_allocate(env.manager, (size_t)2 * N, all, NULL, NULL));
    static const size_t pick[N] = {0, 1, 2, 3, 4, 6, 8, 11, 12, 13};
    uint32_t unused[(size_t)2 * N];
    size_t n_unused = 0;
    for (size_t i = 0, k = 0; i < (size_t)2 * N; i++) {
        if (k < N && pick[k] == i)
            ids[k++] = all[i];
        else
            unused[n_unused++] = all[i];
    }
    XR_CHECK_OK(kvbm_manager_release(env.manager, unused, n_unused));
    for (size_t i = 0; i < N; i++)
        xr_fill(&env, ids[i], mine[i]);
    XR_CHECK_OK(kvbm_manager_register(env.manager, ids, mine, N, NULL, ids));

    /* Both ranks push at once: each rank's worker sends while its service
     * thread receives. */
    kvbm_xfer_req_t *req;
    XR_CHECK_OK(kvbm_xfer_push(env.xfer, 1 - rank, ids, mine, N, NULL, &req));
    XR_CHECK_OK(kvbm_xfer_req_wait(req));
    size_t n = 0;
    XR_CHECK_OK(kvbm_xfer_req_blocks(req, got, N, &n));
    XR_CHECK(n == N);
    kvbm_xfer_req_free(req);
    XR_CHECK_OK(kvbm_xfer_barrier(env.xfer));

    /* The peer's blocks wait in the inactive pool; match finds them all. */
    XR_CHECK(atomic_load(&env.arrivals_ok) == 1);
    XR_CHECK_OK(kvbm_manager_match(env.manager, theirs, N, got, &n));
    XR_CHECK(n == N);
    XR_CHECK(xr_verify_all(&env, got, theirs, N));
    XR_CHECK(xr_pools(&env, s->shape[rank].blocks - (size_t)2 * N, (size_t)2 * N, 0));
    XR_CHECK_OK(kvbm_manager_release(env.manager, got, N));
    XR_CHECK_OK(kvbm_manager_release(env.manager, ids, N));
    XR_CHECK(xr_pools(&env, s->shape[rank].blocks - (size_t)2 * N, 0, (size_t)2 * N));
    XR_CHECK_OK(kvbm_xfer_barrier(env.xfer));
    xr_env_close(&env);
    return 0;
}

static void push_two_ranks_layer_separate_content_arrives(void **state)
{
    scenario_t s;
    scenario_same(&s, &LAYER_SEPARATE);
    assert_int_equal(xr_run(2, rank_push_pair, &s, 0, LIMIT_S), 0);
}

static void push_two_ranks_contiguous_content_arrives(void **state)
{
    scenario_t s;
    scenario_same(&s, &CONTIGUOUS);
    assert_int_equal(xr_run(2, rank_push_pair, &s, 0, LIMIT_S), 0);
}

/* A layer-separate rank (4 x 256 B) and a contiguous one (1 x 1024 B) of the
 * same geometry exchange blocks both ways. */
static void push_across_arrangements_content_arrives(void **state)
{
    scenario_t s;
    scenario_same(&s, &LAYER_SEPARATE);
    s.shape[1] = CONTIGUOUS;
    assert_int_equal(xr_run(2, rank_push_pair, &s, 0, LIMIT_S), 0);
}

/* ------------------------------------------------------------ pull */

static int rank_pull(int rank, int size, uint16_t port, kvbm_xfer_rendezvous_t *rv, void *arg)
{
    scenario_t *s = arg;
    xr_env_t env;
    XR_CHECK_OK(xr_env_open(&env, &s->shape[rank], rank, size, port, rv));
    enum { N = 10, HELD = 6 };
    uint64_t hashes[N], unknown[5];
    uint32_t ids[N];
    xr_hashes(200, N, hashes);
    xr_hashes(999, 5, unknown);
    if (rank == 1)
        XR_CHECK_OK(xr_make_blocks(&env, hashes, HELD, ids));
    XR_CHECK_OK(kvbm_xfer_barrier(env.xfer));
    if (rank == 0) {
        kvbm_xfer_req_t *req;
        size_t n = 0;
        /* Unknown hashes: nothing arrives, nothing changes. */
        XR_CHECK_OK(kvbm_xfer_pull(env.xfer, 1, unknown, 5, &req));
        XR_CHECK_OK(kvbm_xfer_req_wait(req));
        XR_CHECK_OK(kvbm_xfer_req_blocks(req, ids, N, &n));
        XR_CHECK(n == 0);
        kvbm_xfer_req_free(req);
        XR_CHECK(xr_pools(&env, env.blocks, 0, 0));
        /* A prefix that starts with an unknown hash: also nothing. */
        uint64_t mixed[3] = {unknown[0], hashes[0], hashes[1]};
        XR_CHECK_OK(kvbm_xfer_pull(env.xfer, 1, mixed, 3, &req));
        XR_CHECK_OK(kvbm_xfer_req_wait(req));
        XR_CHECK_OK(kvbm_xfer_req_blocks(req, NULL, 0, &n));
        XR_CHECK(n == 0);
        kvbm_xfer_req_free(req);

        /* The peer holds the first 6 of 10: those arrive, registered here. */
        XR_CHECK_OK(kvbm_xfer_pull(env.xfer, 1, hashes, N, &req));
        XR_CHECK_OK(kvbm_xfer_req_wait(req));
        XR_CHECK_OK(kvbm_xfer_req_blocks(req, ids, N, &n));
        XR_CHECK(n == HELD);
        kvbm_xfer_req_free(req); /* the references were taken by req_blocks */
        XR_CHECK(xr_pools(&env, env.blocks - HELD, HELD, 0));
        for (size_t i = 0; i < HELD; i++) {
            XR_CHECK(xr_verify(&env, ids[i], hashes[i]));
            XR_CHECK(kvbm_manager_contains(env.manager, hashes[i]));
        }
        XR_CHECK(!kvbm_manager_contains(env.manager, hashes[HELD]));
        XR_CHECK_OK(kvbm_manager_release(env.manager, ids, HELD));

        /* Pulled again without taking the ids: req_free drops the references. */
        XR_CHECK_OK(kvbm_xfer_pull(env.xfer, 1, hashes, 2, &req));
        XR_CHECK_OK(kvbm_xfer_req_wait(req));
        kvbm_xfer_req_free(req);
        XR_CHECK(xr_pools(&env, env.blocks - HELD, 0, HELD));
    }
    XR_CHECK_OK(kvbm_xfer_barrier(env.xfer));
    if (rank == 1) {
        /* Serving pulls took and gave back references: the owner's remain. */
        XR_CHECK(xr_pools_settle(&env, env.blocks - HELD, HELD, 0, 5.0));
        XR_CHECK_OK(kvbm_manager_release(env.manager, ids, HELD));
    }
    xr_env_close(&env);
    return 0;
}

static void pull_prefix_arrives_unknown_hashes_give_zero(void **state)
{
    scenario_t s;
    scenario_same(&s, &LAYER_SEPARATE);
    assert_int_equal(xr_run(2, rank_pull, &s, 0, LIMIT_S), 0);
}

/* ------------------------------------------------------------ four ranks */

static int rank_ring(int rank, int size, uint16_t port, kvbm_xfer_rendezvous_t *rv, void *arg)
{
    scenario_t *s = arg;
    xr_env_t env;
    XR_CHECK_OK(xr_env_open(&env, &s->shape[rank], rank, size, port, rv));
    enum { N = 5 };
    uint64_t mine[N], from_prev[N], far[N];
    uint32_t ids[N], got[N];
    int next = (rank + 1) % size, prev = (rank + size - 1) % size, opposite = (rank + 2) % size;
    xr_hashes(300 + (uint32_t)rank, N, mine);
    xr_hashes(300 + (uint32_t)prev, N, from_prev);
    xr_hashes(300 + (uint32_t)opposite, N, far);
    XR_CHECK_OK(xr_make_blocks(&env, mine, N, ids));

    XR_CHECK_OK(xr_push_wait(&env, next, ids, mine, N));
    XR_CHECK_OK(kvbm_xfer_barrier(env.xfer));

    size_t n = 0;
    XR_CHECK(xr_holds(&env, from_prev, N));

    /* Every rank pulls from the one opposite while serving its own puller. */
    XR_CHECK_OK(xr_pull_wait(&env, opposite, far, N, got, &n));
    XR_CHECK(n == N);
    XR_CHECK(xr_verify_all(&env, got, far, N));
    XR_CHECK_OK(kvbm_manager_release(env.manager, got, N));
    XR_CHECK_OK(kvbm_xfer_barrier(env.xfer));
    XR_CHECK_OK(kvbm_manager_release(env.manager, ids, N));
    XR_CHECK(xr_pools_settle(&env, env.blocks - (size_t)3 * N, 0, (size_t)3 * N, 5.0));
    xr_env_close(&env);
    return 0;
}

static void four_ranks_ring_push_and_cross_pull(void **state)
{
    scenario_t s;
    scenario_same(&s, &LAYER_SEPARATE);
    s.shape[2] = CONTIGUOUS; /* mixed arrangements in one mesh */
    assert_int_equal(xr_run(4, rank_ring, &s, 0, LIMIT_S), 0);
}

/* ------------------------------------------------------------ incompatible */

static int rank_refused(int rank, int size, uint16_t port, kvbm_xfer_rendezvous_t *rv, void *arg)
{
    scenario_t *s = arg;
    xr_env_t env;
    double t0 = xr_now();
    XR_CHECK_STATUS(xr_env_open(&env, &s->shape[rank], rank, size, port, rv),
                    KVBM_ERR_INCOMPATIBLE);
    XR_CHECK(xr_now() - t0 < 4.0); /* refused at once, not after a timeout */
    return 0;
}

static void incompatible_block_size_refused_on_both_ranks(void **state)
{
    scenario_t s;
    scenario_same(&s, &LAYER_SEPARATE);
    s.shape[1].region_bytes = 128; /* 512 B blocks against 1024 B */
    assert_int_equal(xr_run(2, rank_refused, &s, 0, LIMIT_S), 0);
}

static void incompatible_key_refused_on_all_four_ranks(void **state)
{
    scenario_t s;
    scenario_same(&s, &LAYER_SEPARATE);
    s.shape[3].layout_key = KEY + 1; /* same sizes, other geometry */
    assert_int_equal(xr_run(4, rank_refused, &s, 0, LIMIT_S), 0);
}

static void incompatible_region_split_refused(void **state)
{
    scenario_t s;
    scenario_same(&s, &LAYER_SEPARATE);
    /* Same 768 B blocks and key, cut as 3 x 256 and 2 x 384: neither region
     * size is a whole number of the other, so no common unit exists. */
    s.shape[0].regions = 3;
    s.shape[1].regions = 2;
    s.shape[1].region_bytes = 384;
    assert_int_equal(xr_run(2, rank_refused, &s, 0, LIMIT_S), 0);
}

/* ------------------------------------------------------------ busy */

/* Rank 1's data path reports busy for its first `count` requests (as an NCCL
 * rank does while its own transfer runs); rank 0's requests are retried with
 * back-off, and give up with KVBM_ERR_BUSY after the timeout. */
static int rank_busy(int rank, int size, uint16_t port, kvbm_xfer_rendezvous_t *rv, void *arg)
{
    scenario_t *s = arg;
    enum { N = 4 };
    xr_env_t env;
    if (rank == 1)
        kvbm__xfer_fault_busy((uint32_t)s->count);
    XR_CHECK_OK(xr_env_open(&env, &s->shape[rank], rank, size, port, rv));
    uint64_t hashes[N];
    uint32_t ids[N], got[N];
    xr_hashes(950, N, hashes);
    bool gives_up = s->count > 100;
    if (rank == 0) {
        XR_CHECK_OK(xr_make_blocks(&env, hashes, N, ids));
        kvbm_xfer_req_t *req;
        double t0 = xr_now();
        XR_CHECK_OK(kvbm_xfer_push(env.xfer, 1, ids, hashes, N, NULL, &req));
        XR_CHECK_STATUS(kvbm_xfer_req_wait(req), gives_up ? KVBM_ERR_BUSY : KVBM_OK);
        kvbm_xfer_req_free(req);
        double limit = 2.0 * s->shape[0].timeout_ms / 1000.0 + 0.5;
        XR_CHECK(xr_now() - t0 < limit);
        if (!gives_up) {
            /* A pull right after, refused once more, also goes through. */
            size_t n = 0;
            XR_CHECK_OK(kvbm_manager_release(env.manager, ids, N));
            XR_CHECK_OK(kvbm_manager_reset_inactive(env.manager));
            XR_CHECK_OK(xr_pull_wait(&env, 1, hashes, N, got, &n));
            XR_CHECK(n == N);
            XR_CHECK(xr_verify_all(&env, got, hashes, N));
            XR_CHECK_OK(kvbm_manager_release(env.manager, got, N));
        } else {
            XR_CHECK_OK(kvbm_manager_release(env.manager, ids, N));
        }
    }
    XR_CHECK_OK(kvbm_xfer_barrier(env.xfer));
    if (rank == 1) {
        /* Refusals are not arrivals; the one push that went through is. */
        XR_CHECK(atomic_load(&env.arrivals_failed) == 0);
        XR_CHECK(atomic_load(&env.arrivals_ok) == (gives_up ? 0 : 1));
        /* The pull's references are dropped right after its bytes left. */
        XR_CHECK(xr_pools_settle(&env, env.blocks - (gives_up ? 0 : N), 0, gives_up ? 0 : N, 5.0));
    }
    xr_env_close(&env);
    return 0;
}

static void busy_peer_retried_until_free(void **state)
{
    scenario_t s;
    scenario_same(&s, &LAYER_SEPARATE);
    s.count = 4; /* four refusals, then the push goes through; the pull at once */
    assert_int_equal(xr_run(2, rank_busy, &s, 0, LIMIT_S), 0);
}

static void busy_peer_gives_busy_after_timeout(void **state)
{
    scenario_t s;
    scenario_same(&s, &LAYER_SEPARATE);
    for (int r = 0; r < 2; r++)
        s.shape[r].timeout_ms = 300;
    s.count = 1000000;
    assert_int_equal(xr_run(2, rank_busy, &s, 0, LIMIT_S), 0);
}

/* ------------------------------------------------------------ dedup */

/* Rank 1 already holds the first `count` blocks of a sequence; rank 0 pushes
 * them (all of them, or the whole sequence). Held blocks keep their ids and
 * their bytes are not sent again: with `fault` set, rank 0 dies at its first
 * byte of block data, so a push of held blocks alone must not send any. */
static int rank_push_dedup(int rank, int size, uint16_t port, kvbm_xfer_rendezvous_t *rv, void *arg)
{
    scenario_t *s = arg;
    enum { N = 8 };
    size_t held = s->count, pushed = s->fault != KVBM__FAULT_NONE ? held : N;
    xr_env_t env;
    if (rank == 0 && s->fault != KVBM__FAULT_NONE)
        kvbm__xfer_fault_set(s->fault, 1);
    XR_CHECK_OK(xr_env_open(&env, &s->shape[rank], rank, size, port, rv));
    uint64_t hashes[N];
    uint32_t ids[N], own[N], got[N];
    xr_hashes(900, N, hashes);
    if (rank == 1)
        XR_CHECK_OK(xr_make_blocks(&env, hashes, held, own));
    XR_CHECK_OK(kvbm_xfer_barrier(env.xfer));
    if (rank == 0) {
        XR_CHECK_OK(xr_make_blocks(&env, hashes, N, ids));
        kvbm_xfer_req_t *req;
        size_t n = 0;
        XR_CHECK_OK(kvbm_xfer_push(env.xfer, 1, ids, hashes, pushed, NULL, &req));
        XR_CHECK_OK(kvbm_xfer_req_wait(req));
        XR_CHECK_OK(kvbm_xfer_req_blocks(req, got, N, &n));
        XR_CHECK(n == pushed);
        kvbm_xfer_req_free(req);
        XR_CHECK_OK(kvbm_manager_release(env.manager, ids, N));
    }
    XR_CHECK_OK(kvbm_xfer_barrier(env.xfer));
    if (rank == 1) {
        size_t n = 0;
        XR_CHECK(atomic_load(&env.arrivals_ok) == 1);
        XR_CHECK_OK(kvbm_manager_match(env.manager, hashes, N, got, &n));
        XR_CHECK(n == pushed);
        for (size_t i = 0; i < n; i++) {
            XR_CHECK(i >= held || got[i] == own[i]); /* held blocks were reused */
            XR_CHECK(xr_verify(&env, got[i], hashes[i]));
        }
        XR_CHECK(xr_pools(&env, env.blocks - pushed, pushed, 0));
        XR_CHECK_OK(kvbm_manager_release(env.manager, got, n));
        XR_CHECK_OK(kvbm_manager_release(env.manager, own, held));
    }
    xr_env_close(&env);
    return 0;
}

static void push_of_held_hashes_sends_no_bytes(void **state)
{
    scenario_t s;
    scenario_same(&s, &LAYER_SEPARATE);
    s.count = 5;
    s.fault = KVBM__FAULT_DIE; /* on rank 0, at its first byte of block data */
    assert_int_equal(xr_run(2, rank_push_dedup, &s, 0, LIMIT_S), 0);
}

static void push_of_partly_held_prefix_sends_the_rest(void **state)
{
    scenario_t s;
    scenario_same(&s, &LAYER_SEPARATE);
    s.count = 3;
    assert_int_equal(xr_run(2, rank_push_dedup, &s, 0, LIMIT_S), 0);
}

/* ------------------------------------------------------------ layouts */

/* Ranks describe their blocks with the memory layer's layouts over CPU
 * backend pools; geometry per rank comes from the scenario's layout table. */
typedef struct layout_scenario {
    kvbm_layout_kind_t kind[2];
    bool outer_contiguous[2];
    uint32_t inner_dim[2];
    kvbm_status_t expect_create;
} layout_scenario_t;

enum { LAYOUT_BLOCKS = 32, LAYOUT_LAYERS = 3, LAYOUT_OUTER = 2, LAYOUT_TOKENS = 4 };

static void layout_fill(const kvbm_layout_t *layout, void *base, uint32_t block, uint64_t hash,
                        bool check, bool *ok)
{
    size_t chunk = kvbm_layout_chunk_bytes(layout);
    for (uint32_t l = 0; l < LAYOUT_LAYERS; l++) {
        for (uint32_t o = 0; o < LAYOUT_OUTER; o++) {
            void *addr = NULL;
            if (kvbm_layout_address(layout, base, block, l, o, &addr) != KVBM_OK) {
                *ok = false;
                return;
            }
            unsigned char *p = addr;
            size_t k0 = ((size_t)l * LAYOUT_OUTER + o) * chunk;
            for (size_t j = 0; j < chunk; j++) {
                if (!check)
                    p[j] = xr_pattern(hash, k0 + j);
                else if (p[j] != xr_pattern(hash, k0 + j))
                    *ok = false;
            }
        }
    }
}

static int rank_layout_push(int rank, int size, uint16_t port, kvbm_xfer_rendezvous_t *rv,
                            void *arg)
{
    layout_scenario_t *s = arg;
    kvbm_layout_config_t lc = KVBM_LAYOUT_CONFIG_INIT;
    lc.kind = s->kind[rank];
    lc.outer_contiguous = s->outer_contiguous[rank];
    lc.num_blocks = LAYOUT_BLOCKS;
    lc.num_layers = LAYOUT_LAYERS;
    lc.outer_dim = LAYOUT_OUTER;
    lc.tokens_per_block = LAYOUT_TOKENS;
    lc.inner_dim = s->inner_dim[rank];
    lc.elem_size = 2;
    lc.alignment = 64;
    kvbm_layout_t *layout;
    XR_CHECK_OK(kvbm_layout_create(&lc, &layout));
    kvbm_backend_config_t bc = KVBM_BACKEND_CONFIG_INIT;
    bc.kind = KVBM_BACKEND_CPU;
    kvbm_backend_t *backend;
    XR_CHECK_OK(kvbm_backend_create(&bc, &backend));
    kvbm_pool_t *pool;
    XR_CHECK_OK(kvbm_pool_create(backend, KVBM_MEM_HOST, kvbm_layout_total_bytes(layout), &pool));
    void *base = kvbm_pool_ptr(pool);
    kvbm_manager_t *manager = test_manager_new(LAYOUT_BLOCKS, KVBM_DUPLICATION_REJECT, NULL);

    kvbm_xfer_config_t config = KVBM_XFER_CONFIG_INIT;
    config.rank = rank;
    config.size = size;
    config.rendezvous = rv;
    config.rendezvous_port = port;
    config.timeout_ms = 5000;
    config.manager = manager;
    config.layout = layout;
    config.layout_base = base;
    kvbm_xfer_t *xfer = NULL;
    XR_CHECK_STATUS(kvbm_xfer_create(&config, &xfer), s->expect_create);
    if (xfer != NULL) {
        enum { N = 7 };
        uint64_t hashes[N];
        uint32_t ids[N];
        size_t n = 0;
        bool ok = true;
        xr_hashes(700, N, hashes);
        if (rank == 0) {
            XR_CHECK_OK(kvbm_manager_allocate(manager, N, ids, NULL, NULL));
            for (size_t i = 0; i < N; i++)
                layout_fill(layout, base, ids[i], hashes[i], false, &ok);
            XR_CHECK_OK(kvbm_manager_register(manager, ids, hashes, N, NULL, ids));
            kvbm_xfer_req_t *req;
            XR_CHECK_OK(kvbm_xfer_push(xfer, 1, ids, hashes, N, NULL, &req));
            XR_CHECK_OK(kvbm_xfer_req_wait(req));
            kvbm_xfer_req_free(req);
            XR_CHECK_OK(kvbm_manager_release(manager, ids, N));
        }
        XR_CHECK_OK(kvbm_xfer_barrier(xfer));
        if (rank == 1) {
            XR_CHECK_OK(kvbm_manager_match(manager, hashes, N, ids, &n));
            XR_CHECK(n == N);
            for (size_t i = 0; i < N; i++)
                layout_fill(layout, base, ids[i], hashes[i], true, &ok);
            XR_CHECK_OK(kvbm_manager_release(manager, ids, N));
        }
        XR_CHECK(ok);
        kvbm_xfer_destroy(xfer);
    }
    kvbm_manager_destroy(manager);
    kvbm_pool_destroy(pool);
    kvbm_backend_destroy(backend);
    kvbm_layout_destroy(layout);
    return 0;
}

/* Fully contiguous (one region per block, padded) to layer-separate with K
 * and V planes apart (6 regions of one chunk): chunk for chunk. */
static void layouts_of_other_arrangements_interoperate(void **state)
{
    layout_scenario_t s = {
        .kind = {KVBM_LAYOUT_FULLY_CONTIGUOUS, KVBM_LAYOUT_LAYER_SEPARATE},
        .outer_contiguous = {true, false},
        .inner_dim = {24, 24},
        .expect_create = KVBM_OK,
    };
    assert_int_equal(xr_run(2, rank_layout_push, &s, 0, LIMIT_S), 0);
    s.kind[0] = KVBM_LAYOUT_LAYER_SEPARATE; /* K and V adjacent: 3 regions */
    assert_int_equal(xr_run(2, rank_layout_push, &s, 0, LIMIT_S), 0);
}

static void layouts_of_other_geometry_refused(void **state)
{
    layout_scenario_t s = {
        .kind = {KVBM_LAYOUT_FULLY_CONTIGUOUS, KVBM_LAYOUT_FULLY_CONTIGUOUS},
        .outer_contiguous = {true, true},
        .inner_dim = {24, 12}, /* half the head size */
        .expect_create = KVBM_ERR_INCOMPATIBLE,
    };
    assert_int_equal(xr_run(2, rank_layout_push, &s, 0, LIMIT_S), 0);
}

/* ------------------------------------------------------------ faults */

enum { FAULT_BLOCKS = 32, FAULT_TIMEOUT_MS = 1000 };

/* Rank 1 pushes 32 blocks and dies (or freezes) after some of the bytes;
 * rank 0 must report the failure within the timeout, register nothing and
 * lose no block. */
static int rank_push_fault(int rank, int size, uint16_t port, kvbm_xfer_rendezvous_t *rv, void *arg)
{
    scenario_t *s = arg;
    xr_env_t env;
    if (rank == 1)
        kvbm__xfer_fault_set(s->fault, s->fault_after); /* before any thread */
    XR_CHECK_OK(xr_env_open(&env, &s->shape[rank], rank, size, port, rv));
    uint64_t hashes[FAULT_BLOCKS];
    uint32_t ids[FAULT_BLOCKS];
    xr_hashes(400, FAULT_BLOCKS, hashes);
    if (rank == 1) {
        XR_CHECK_OK(xr_make_blocks(&env, hashes, FAULT_BLOCKS, ids));
        kvbm_xfer_req_t *req;
        XR_CHECK_OK(kvbm_xfer_push(env.xfer, 0, ids, hashes, FAULT_BLOCKS, NULL, &req));
        (void)kvbm_xfer_req_wait(req); /* never returns: the fault fires first */
        fprintf(stderr, "rank 1: the fault did not fire\n");
        return 1;
    }
    double t0 = xr_now();
    double limit = 3.0 * FAULT_TIMEOUT_MS / 1000.0;
    while (atomic_load(&env.arrivals_failed) == 0 && xr_now() - t0 < limit) {
        struct timespec ts = {.tv_sec = 0, .tv_nsec = 1000000};
        nanosleep(&ts, NULL);
    }
    double elapsed = xr_now() - t0;
    XR_CHECK(atomic_load(&env.arrivals_failed) == 1);
    XR_CHECK(atomic_load(&env.arrivals_ok) == 0);
    kvbm_status_t expected = s->fault == KVBM__FAULT_DIE ? KVBM_ERR_PEER : KVBM_ERR_TIMEOUT;
    XR_CHECK(atomic_load(&env.last_failure) == (int)expected);
    XR_CHECK(elapsed < 2.0 * FAULT_TIMEOUT_MS / 1000.0 + 1.0);
    /* Nothing registered, every allocated block back in the reset pool. */
    XR_CHECK(xr_pools(&env, env.blocks, 0, 0));
    for (size_t i = 0; i < FAULT_BLOCKS; i++)
        XR_CHECK(!kvbm_manager_contains(env.manager, hashes[i]));
    if (s->fault == KVBM__FAULT_DIE) {
        /* Later requests to the dead rank fail fast instead of hanging. */
        uint32_t one;
        XR_CHECK_OK(xr_make_blocks(&env, hashes, 1, &one));
        kvbm_xfer_req_t *req;
        XR_CHECK_OK(kvbm_xfer_push(env.xfer, 1, &one, hashes, 1, NULL, &req));
        XR_CHECK_STATUS(kvbm_xfer_req_wait(req), KVBM_ERR_PEER);
        /* The worker's reason reaches the waiting thread. */
        XR_CHECK(strstr(kvbm_last_error(), "transfer with rank 1: ") == kvbm_last_error());
        kvbm_xfer_req_free(req);
        XR_CHECK_OK(kvbm_manager_release(env.manager, &one, 1));
    }
    xr_env_close(&env);
    return 0;
}

static void peer_killed_mid_push_receiver_registers_nothing(void **state)
{
    scenario_t s;
    scenario_same(&s, &LAYER_SEPARATE);
    for (int r = 0; r < 2; r++)
        s.shape[r].timeout_ms = FAULT_TIMEOUT_MS;
    s.fault = KVBM__FAULT_DIE;
    s.fault_after = 5000; /* of 32 KiB */
    assert_int_equal(xr_run(2, rank_push_fault, &s, 1u << 1, LIMIT_S), 0);
}

static void peer_frozen_mid_push_receiver_times_out(void **state)
{
    scenario_t s;
    scenario_same(&s, &LAYER_SEPARATE);
    for (int r = 0; r < 2; r++)
        s.shape[r].timeout_ms = FAULT_TIMEOUT_MS;
    s.fault = KVBM__FAULT_HANG;
    s.fault_after = 5000;
    assert_int_equal(xr_run(2, rank_push_fault, &s, 1u << 1, LIMIT_S), 0);
}

/* Rank 0 pulls 32 blocks from rank 1, which dies (or freezes) while sending. */
static int rank_pull_fault(int rank, int size, uint16_t port, kvbm_xfer_rendezvous_t *rv, void *arg)
{
    scenario_t *s = arg;
    xr_env_t env;
    if (rank == 1)
        kvbm__xfer_fault_set(s->fault, s->fault_after);
    XR_CHECK_OK(xr_env_open(&env, &s->shape[rank], rank, size, port, rv));
    uint64_t hashes[FAULT_BLOCKS];
    uint32_t ids[FAULT_BLOCKS];
    xr_hashes(500, FAULT_BLOCKS, hashes);
    if (rank == 1) {
        XR_CHECK_OK(xr_make_blocks(&env, hashes, FAULT_BLOCKS, ids));
        (void)kvbm_xfer_barrier(env.xfer);
        /* Serve until the fault ends this process (or rank 0 is done and the
         * harness kills it). */
        for (;;)
            pause();
    }
    XR_CHECK_OK(kvbm_xfer_barrier(env.xfer));
    kvbm_xfer_req_t *req;
    double t0 = xr_now();
    XR_CHECK_OK(kvbm_xfer_pull(env.xfer, 1, hashes, FAULT_BLOCKS, &req));
    kvbm_status_t expected = s->fault == KVBM__FAULT_DIE ? KVBM_ERR_PEER : KVBM_ERR_TIMEOUT;
    XR_CHECK_STATUS(kvbm_xfer_req_wait(req), expected);
    double elapsed = xr_now() - t0;
    size_t n;
    XR_CHECK_STATUS(kvbm_xfer_req_blocks(req, ids, FAULT_BLOCKS, &n), KVBM_ERR_BAD_STATE);
    kvbm_xfer_req_free(req);
    XR_CHECK(elapsed < 2.0 * FAULT_TIMEOUT_MS / 1000.0 + 1.0);
    if (s->fault == KVBM__FAULT_HANG)
        XR_CHECK(elapsed >= 0.8 * FAULT_TIMEOUT_MS / 1000.0);
    XR_CHECK(xr_pools(&env, env.blocks, 0, 0));
    for (size_t i = 0; i < FAULT_BLOCKS; i++)
        XR_CHECK(!kvbm_manager_contains(env.manager, hashes[i]));
    xr_env_close(&env);
    return 0;
}

static void peer_killed_mid_pull_caller_gets_peer_error(void **state)
{
    scenario_t s;
    scenario_same(&s, &LAYER_SEPARATE);
    for (int r = 0; r < 2; r++)
        s.shape[r].timeout_ms = FAULT_TIMEOUT_MS;
    s.fault = KVBM__FAULT_DIE;
    s.fault_after = 7000;
    assert_int_equal(xr_run(2, rank_pull_fault, &s, 1u << 1, LIMIT_S), 0);
}

static void peer_frozen_mid_pull_caller_times_out(void **state)
{
    scenario_t s;
    scenario_same(&s, &LAYER_SEPARATE);
    for (int r = 0; r < 2; r++)
        s.shape[r].timeout_ms = FAULT_TIMEOUT_MS;
    s.fault = KVBM__FAULT_HANG;
    s.fault_after = 7000;
    assert_int_equal(xr_run(2, rank_pull_fault, &s, 1u << 1, LIMIT_S), 0);
}

/* ------------------------------------------------------------ no room */

static int rank_no_room(int rank, int size, uint16_t port, kvbm_xfer_rendezvous_t *rv, void *arg)
{
    scenario_t *s = arg;
    xr_env_t env;
    XR_CHECK_OK(xr_env_open(&env, &s->shape[rank], rank, size, port, rv));
    uint64_t hashes[8];
    uint32_t ids[8];
    xr_hashes(600, 8, hashes);
    if (rank == 0) {
        XR_CHECK_OK(xr_make_blocks(&env, hashes, 8, ids));
        kvbm_xfer_req_t *req;
        XR_CHECK_OK(kvbm_xfer_push(env.xfer, 1, ids, hashes, 8, NULL, &req));
        XR_CHECK_STATUS(kvbm_xfer_req_wait(req), KVBM_ERR_NO_BLOCKS);
        XR_CHECK(strstr(kvbm_last_error(), "transfer with rank 1: ") == kvbm_last_error());
        kvbm_xfer_req_free(req);
        /* The connection is still good for a push that fits. */
        XR_CHECK_OK(xr_push_wait(&env, 1, ids, hashes, 3));
        XR_CHECK_OK(kvbm_manager_release(env.manager, ids, 8));
    }
    XR_CHECK_OK(kvbm_xfer_barrier(env.xfer));
    if (rank == 1) {
        XR_CHECK(atomic_load(&env.arrivals_failed) == 1);
        XR_CHECK(atomic_load(&env.last_failure) == KVBM_ERR_NO_BLOCKS);
        XR_CHECK(atomic_load(&env.arrivals_ok) == 1);
        XR_CHECK(xr_pools(&env, 1, 0, 3));
        size_t n;
        XR_CHECK_OK(kvbm_manager_match(env.manager, hashes, 8, ids, &n));
        XR_CHECK(n == 3);
        XR_CHECK(xr_verify_all(&env, ids, hashes, n));
        XR_CHECK_OK(kvbm_manager_release(env.manager, ids, n));
    }
    xr_env_close(&env);
    return 0;
}

static void push_without_room_refused_cleanly(void **state)
{
    scenario_t s;
    scenario_same(&s, &LAYER_SEPARATE);
    s.shape[1].blocks = 4;
    assert_int_equal(xr_run(2, rank_no_room, &s, 0, LIMIT_S), 0);
}

/* ------------------------------------------------------------ arguments */

static void arguments_checked(void **state)
{
    kvbm_manager_t *manager = test_manager_new(8, KVBM_DUPLICATION_REJECT, NULL);
    static unsigned char slab[8 * 64];
    void *bases[1] = {slab};
    kvbm_xfer_config_t config = KVBM_XFER_CONFIG_INIT;
    config.manager = manager;
    config.memory.num_blocks = 8;
    config.memory.region_count = 1;
    config.memory.region_bytes = 64;
    config.memory.block_stride = 64;
    config.memory.region_base = bases;
    kvbm_xfer_t *xfer = NULL;

    assert_kvbm_status(kvbm_xfer_transport_probe(KVBM_XFER_SOCKET), KVBM_OK);
    assert_kvbm_status(kvbm_xfer_transport_probe((kvbm_xfer_transport_t)7), KVBM_ERR_INVALID_ARG);
    kvbm_xfer_config_t bad = config;
    bad.struct_size = 8;
    assert_kvbm_status(kvbm_xfer_create(&bad, &xfer), KVBM_ERR_VERSION);
    bad = config;
    bad.manager = NULL;
    assert_kvbm_status(kvbm_xfer_create(&bad, &xfer), KVBM_ERR_INVALID_ARG);
    bad = config;
    bad.rendezvous_host = "10.1.2.3"; /* loopback only, without a secret */
    assert_kvbm_status(kvbm_xfer_create(&bad, &xfer), KVBM_ERR_INVALID_ARG);
    bad = config;
    bad.listen_host = "0.0.0.0"; /* a wildcard is not loopback either */
    assert_kvbm_status(kvbm_xfer_create(&bad, &xfer), KVBM_ERR_INVALID_ARG);
    bad = config;
    bad.rendezvous_host = "localhost"; /* names are not resolved */
    assert_kvbm_status(kvbm_xfer_create(&bad, &xfer), KVBM_ERR_INVALID_ARG);
    bad = config;
    bad.secret = "too short";
    bad.secret_len = 9;
    assert_kvbm_status(kvbm_xfer_create(&bad, &xfer), KVBM_ERR_INVALID_ARG);
    bad.secret = "long enough to be a secret";
    bad.secret_len = 26;
    bad.secret_file = "/etc/hostname"; /* and a file: one or the other */
    assert_kvbm_status(kvbm_xfer_create(&bad, &xfer), KVBM_ERR_INVALID_ARG);
    bad = config;
    bad.secret_file = "/etc/passwd"; /* readable by others */
    assert_kvbm_status(kvbm_xfer_create(&bad, &xfer), KVBM_ERR_INVALID_ARG);
    bad = config;
    bad.memory.region_bytes = 32; /* below KVBM_XFER_MIN_REGION_BYTES */
    bad.memory.block_stride = 32;
    assert_kvbm_status(kvbm_xfer_create(&bad, &xfer), KVBM_ERR_INVALID_ARG);
    bad = config;
    bad.engine_stream = (kvbm_stream_t *)&bad; /* NCCL only */
    assert_kvbm_status(kvbm_xfer_create(&bad, &xfer), KVBM_ERR_INVALID_ARG);
    bad = config;
    bad.memory.kind = KVBM_XFER_MEM_DEVICE; /* the socket transport moves host memory */
    assert_kvbm_status(kvbm_xfer_create(&bad, &xfer), KVBM_ERR_INVALID_ARG);
    bad = config;
    bad.memory.num_blocks = 4; /* fewer than the manager's 8 */
    assert_kvbm_status(kvbm_xfer_create(&bad, &xfer), KVBM_ERR_INVALID_ARG);
    bad = config;
    bad.memory.block_stride = 32;
    assert_kvbm_status(kvbm_xfer_create(&bad, &xfer), KVBM_ERR_INVALID_ARG);
    bad = config;
    bad.rank = 1; /* of size 1 */
    assert_kvbm_status(kvbm_xfer_create(&bad, &xfer), KVBM_ERR_INVALID_ARG);
    assert_null(xfer);
    kvbm_xfer_rendezvous_t *rv = NULL;
    assert_kvbm_status(kvbm_xfer_rendezvous_create("192.168.0.300", 0, &rv), KVBM_ERR_INVALID_ARG);
    assert_kvbm_status(kvbm_xfer_rendezvous_create("kvbm.example", 0, &rv), KVBM_ERR_INVALID_ARG);
    assert_null(rv);
    /* Version 1 of the config (before addresses and secrets) still works. */
    kvbm_xfer_config_t v1 = config;
    v1.struct_size = 160;
    v1.version = 1;
    assert_kvbm_ok(kvbm_xfer_create(&v1, &xfer));
    kvbm_xfer_destroy(xfer);
    xfer = NULL;

    /* A world of one: valid, but it has no peer to talk to. */
    assert_kvbm_ok(kvbm_xfer_create(&config, &xfer));
    assert_int_equal(kvbm_xfer_rank(xfer), 0);
    assert_int_equal(kvbm_xfer_size(xfer), 1);
    assert_kvbm_ok(kvbm_xfer_barrier(xfer));
    uint32_t id = 0;
    uint64_t hash = 1;
    kvbm_xfer_req_t *req = NULL;
    assert_kvbm_status(kvbm_xfer_push(xfer, 0, &id, &hash, 1, NULL, &req), KVBM_ERR_INVALID_ARG);
    assert_kvbm_status(kvbm_xfer_pull(xfer, 1, &hash, 1, &req), KVBM_ERR_INVALID_ARG);
    assert_null(req);
    kvbm_xfer_destroy(xfer);
    kvbm_xfer_destroy(NULL);
    kvbm_xfer_req_free(NULL);
    kvbm_xfer_rendezvous_destroy(NULL);
    kvbm_manager_destroy(manager);
}

/* Rank 0 of two waits for a rank that never comes: a timeout, not a hang. */
static void missing_rank_times_out_at_creation(void **state)
{
    kvbm_manager_t *manager = test_manager_new(8, KVBM_DUPLICATION_REJECT, NULL);
    static unsigned char slab[8 * 64];
    void *bases[1] = {slab};
    kvbm_xfer_rendezvous_t *rv = NULL;
    assert_kvbm_ok(kvbm_xfer_rendezvous_create(NULL, 0, &rv));
    assert_int_not_equal(kvbm_xfer_rendezvous_port(rv), 0);
    kvbm_xfer_config_t config = KVBM_XFER_CONFIG_INIT;
    config.size = 2;
    config.rendezvous = rv;
    config.timeout_ms = 300;
    config.manager = manager;
    config.memory.num_blocks = 8;
    config.memory.region_count = 1;
    config.memory.region_bytes = 64;
    config.memory.block_stride = 64;
    config.memory.region_base = bases;
    kvbm_xfer_t *xfer = NULL;
    double t0 = xr_now();
    assert_kvbm_status(kvbm_xfer_create(&config, &xfer), KVBM_ERR_TIMEOUT);
    assert_true(xr_now() - t0 < 3.0);
    assert_null(xfer);
    /* A non-root rank whose rank 0 never comes times out too. */
    config.rank = 1;
    config.rendezvous = NULL;
    config.rendezvous_port = kvbm_xfer_rendezvous_port(rv);
    kvbm_xfer_rendezvous_destroy(rv); /* nobody listens any more */
    assert_kvbm_status(kvbm_xfer_create(&config, &xfer), KVBM_ERR_TIMEOUT);
    assert_null(xfer);
    kvbm_manager_destroy(manager);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(arguments_checked),
        cmocka_unit_test(missing_rank_times_out_at_creation),
        cmocka_unit_test(push_two_ranks_layer_separate_content_arrives),
        cmocka_unit_test(push_two_ranks_contiguous_content_arrives),
        cmocka_unit_test(push_across_arrangements_content_arrives),
        cmocka_unit_test(pull_prefix_arrives_unknown_hashes_give_zero),
        cmocka_unit_test(four_ranks_ring_push_and_cross_pull),
        cmocka_unit_test(incompatible_block_size_refused_on_both_ranks),
        cmocka_unit_test(incompatible_key_refused_on_all_four_ranks),
        cmocka_unit_test(incompatible_region_split_refused),
        cmocka_unit_test(push_without_room_refused_cleanly),
        cmocka_unit_test(busy_peer_retried_until_free),
        cmocka_unit_test(busy_peer_gives_busy_after_timeout),
        cmocka_unit_test(push_of_held_hashes_sends_no_bytes),
        cmocka_unit_test(push_of_partly_held_prefix_sends_the_rest),
        cmocka_unit_test(layouts_of_other_arrangements_interoperate),
        cmocka_unit_test(layouts_of_other_geometry_refused),
        cmocka_unit_test(peer_killed_mid_push_receiver_registers_nothing),
        cmocka_unit_test(peer_frozen_mid_push_receiver_times_out),
        cmocka_unit_test(peer_killed_mid_pull_caller_gets_peer_error),
        cmocka_unit_test(peer_frozen_mid_pull_caller_times_out),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
