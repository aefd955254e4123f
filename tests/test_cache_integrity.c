/*
 * Data integrity of the tiered cache under a replay much larger than both
 * tiers, on the asynchronous CPU backend (and, as test_cache_integrity_standin,
 * on the CUDA backend's code over the CUDA runtime stand-in). Every block is
 * written by an "engine" stream with bytes derived from its hash; every
 * block the cache serves (cached in G1 or onboarded from G2) is compared
 * with those bytes.
 *
 * G1 (16 blocks) is much smaller than G2 (64), and G2 much smaller than the
 * working set (~300 blocks), so blocks go round G1 -> G2 -> G1 constantly.
 * The engine releases blocks before its writes have finished and the cache
 * evicts them meanwhile, so the ordering rules are exercised on every few
 * requests. test_cache.c shows, rule by rule, that breaking any of the
 * three makes exactly this kind of comparison fail.
 *
 * Variants: with random copy failures (nothing wrong is served, no block is
 * lost, failures are counted), four threads on one cache (under TSan in
 * `scripts/test.sh thread`), and the same with a disk tier below G2 (G3, 128
 * blocks, smaller than the working set too), with random disk faults (I/O
 * errors, short transfers, flipped bits) on top of the copy failures.
 *
 * Every variant also follows the cache's events as a router would: per tier
 * (GPU, CPU, DISK), a stored hash must be new to the tier and a removed one
 * held by it, and at the end the hashes each tier holds by the events equal
 * what the tier's manager holds.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <pthread.h>

#include <cmocka.h>

#include "cache/internal.h"
#include "cache_test_util.h"
#include "disk_test_util.h"
#include "kvbm_test.h"

#define G1_BLOCKS      16
#define G2_BLOCKS      64
#define DOCUMENTS      40
#define MAX_DOC_BLOCKS 8
#define G3_BLOCKS      128

#define MAX_HASH (DOCUMENTS * 100)

/* The state a router rebuilds from the events. Updated by the sink, which
 * the cache calls with its lock held, so calls never overlap. */
typedef struct router_view {
    bool held[3][MAX_HASH]; /* [GPU, CPU, DISK][hash] */
    uint64_t wrong;         /* a stored hash already held, a removed one not held */
    uint64_t stored, removed;
    uint64_t stored_disk, removed_disk;
} router_view_t;

static void follow_events(void *ctx, const kvbm_event_record_t *records, size_t count)
{
    router_view_t *view = ctx;
    for (size_t r = 0; r < count; r++) {
        const kvbm_event_record_t *rec = &records[r];
        if (rec->kind == KVBM_EVENT_CLEARED || rec->medium > KVBM_MEDIUM_DISK) {
            view->wrong++;
            continue;
        }
        for (size_t i = 0; i < rec->count; i++) {
            uint64_t h = rec->hashes[i];
            if (h >= MAX_HASH) {
                view->wrong++;
                continue;
            }
            bool stored = rec->kind == KVBM_EVENT_STORED;
            view->wrong += view->held[rec->medium][h] == stored;
            view->held[rec->medium][h] = stored;
            view->stored += stored;
            view->removed += !stored;
            view->stored_disk += stored && rec->medium == KVBM_MEDIUM_DISK;
            view->removed_disk += !stored && rec->medium == KVBM_MEDIUM_DISK;
        }
    }
}

/* What the events say each tier holds is what its manager holds. */
static void assert_events_match_tiers(kvbm_cache_t *cache, const router_view_t *view, bool g3)
{
    static const kvbm_medium_t medium_of[] = {[KVBM_TIER_G1] = KVBM_MEDIUM_GPU,
                                              [KVBM_TIER_G2] = KVBM_MEDIUM_CPU,
                                              [KVBM_TIER_G3] = KVBM_MEDIUM_DISK};
    assert_int_equal(view->wrong, 0);
    for (kvbm_tier_t tier = KVBM_TIER_G1; tier <= (g3 ? KVBM_TIER_G3 : KVBM_TIER_G2); tier++) {
        uint64_t hashes[G3_BLOCKS];
        size_t n = 0;
        assert_kvbm_ok(
            kvbm_manager_registered_hashes(kvbm_cache_manager(cache, tier), hashes, G3_BLOCKS, &n));
        const bool *held = view->held[medium_of[tier]];
        size_t n_held = 0;
        for (uint64_t h = 0; h < MAX_HASH; h++)
            n_held += held[h];
        assert_int_equal(n_held, n);
        for (size_t i = 0; i < n; i++)
            assert_true(held[hashes[i]]);
    }
}

typedef struct workload {
    router_view_t *view;
    kvbm_event_batcher_t *events; /* the cache's; its sink updates the view */
    kvbm_backend_t *backend;
    kvbm_stream_t *engine_stream;
    kvbm_cache_t *cache;
    bool faults;
    pthread_mutex_t fault_lock; /* serialises arming the fault hook */
    char g3_path[128];          /* empty without G3 */
    uint64_t disk_requests;     /* atomic: counts the disk fault hook's calls */
} workload_t;

typedef struct worker_result {
    uint64_t served, verified, wrong, refused, requests;
} worker_result_t;

typedef struct worker {
    workload_t *w;
    uint64_t rng;
    int requests;
    worker_result_t result;
} worker_t;

static uint32_t next_rand(uint64_t *s, uint32_t bound)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return (uint32_t)(*s % bound);
}

/* About one disk request in 13 fails, in turn with each fault a disk can
 * have (ENOSPC only for writes). */
static kvbm__disk_fault_t random_disk_fault(void *ctx, const kvbm__disk_req_t *req)
{
    workload_t *w = ctx;
    uint64_t n = __atomic_fetch_add(&w->disk_requests, 1, __ATOMIC_RELAXED);
    if (n % 13 != 5)
        return KVBM__DISK_FAULT_NONE;
    const kvbm__disk_fault_t kinds[] = {KVBM__DISK_FAULT_EIO, KVBM__DISK_FAULT_SHORT,
                                        KVBM__DISK_FAULT_FLIP, KVBM__DISK_FAULT_ENOSPC};
    kvbm__disk_fault_t fault = kinds[(n / 13) % 4];
    return fault == KVBM__DISK_FAULT_ENOSPC && req->op == KVBM__DISK_READ ? KVBM__DISK_FAULT_EIO
                                                                          : fault;
}

static void workload_open(workload_t *w, bool faults, kvbm_layout_kind_t kind, bool g3)
{
    memset(w, 0, sizeof(*w));
    kvbm_backend_config_t bc = KVBM_BACKEND_CONFIG_INIT;
    bc.kind = TEST_BACKEND_KIND;
    assert_kvbm_ok(kvbm_backend_create(&bc, &w->backend));
    assert_kvbm_ok(kvbm_stream_create(w->backend, &w->engine_stream));
    kvbm_cache_config_t cc = KVBM_CACHE_CONFIG_INIT;
    cc.backend = w->backend;
    cc.layout.kind = kind;
    cc.layout.num_blocks = G1_BLOCKS;
    cc.layout.num_layers = 3;
    cc.layout.tokens_per_block = 4;
    cc.layout.inner_dim = 32;
    cc.g2_blocks = G2_BLOCKS;
    cc.engine_stream = w->engine_stream;
    w->view = calloc(1, sizeof(*w->view));
    assert_non_null(w->view);
    assert_kvbm_ok(kvbm_event_batcher_create(follow_events, w->view, &w->events));
    cc.events_batcher = w->events;
    kvbm_disk_config_t disk = KVBM_DISK_CONFIG_INIT;
    if (g3) {
        snprintf(w->g3_path, sizeof(w->g3_path), "%s", disk_test_path());
        disk.path = w->g3_path;
        disk.capacity_blocks = G3_BLOCKS;
        disk.min_free_bytes = 0;
        disk.staging_blocks = 16;
        cc.g3 = &disk;
    }
    assert_kvbm_ok(kvbm_cache_create(&cc, &w->cache));
    w->faults = faults;
    pthread_mutex_init(&w->fault_lock, NULL);
    if (g3 && faults)
        kvbm__disk_store_set_fault(w->cache->g3_store, random_disk_fault, w);
}

/* Every hash G3 holds reads back with its own bytes, or fails verification
 * (a bit flipped on its way to disk): never anything else. */
static void assert_g3_holds_only_right_bytes(workload_t *w)
{
    kvbm_manager_t *g3 = kvbm_cache_manager(w->cache, KVBM_TIER_G3);
    kvbm__disk_store_t *store = w->cache->g3_store;
    kvbm__disk_store_set_fault(store, NULL, NULL);
    size_t slot_bytes = kvbm__disk_store_geometry(store)->slot_bytes;
    size_t block_bytes = kvbm_layout_block_bytes(kvbm_cache_layout(w->cache, KVBM_TIER_G1));
    uint8_t *buf = disk_test_buffers(1, slot_bytes);
    unsigned char *expected = malloc(block_bytes);
    assert_non_null(buf);
    assert_non_null(expected);
    for (uint64_t h = 0; h < DOCUMENTS * 100; h++) {
        uint32_t id;
        size_t found;
        assert_kvbm_ok(kvbm_manager_scan(g3, &h, 1, false, &id, &found));
        if (found == 0)
            continue;
        kvbm__disk_batch_t *batch = NULL;
        assert_kvbm_ok(kvbm__disk_batch_create(store, 1, &batch));
        assert_kvbm_ok(kvbm__disk_batch_add(batch, kvbm__disk_tier_slot(w->cache->g3, id), h, buf));
        assert_kvbm_ok(kvbm__disk_store_read(store, batch));
        kvbm__disk_batch_wait(batch);
        kvbm__disk_outcome_t outcome = kvbm__disk_batch_outcome(batch, 0);
        pattern_fill(expected, block_bytes, h);
        assert_true(outcome == KVBM__DISK_CORRUPT ||
                    (outcome == KVBM__DISK_DONE &&
                     memcmp(buf + KVBM__DISK_HEADER_BYTES, expected, block_bytes) == 0));
        assert_true(w->faults || outcome == KVBM__DISK_DONE);
        kvbm__disk_batch_destroy(batch);
        assert_kvbm_ok(kvbm_manager_release(g3, &id, 1));
    }
    free(expected);
    free(buf);
}

/* Every hash G2 holds must carry its own bytes: nothing wrong was cached. */
static void assert_g2_holds_only_right_bytes(workload_t *w)
{
    kvbm_manager_t *g2 = kvbm_cache_manager(w->cache, KVBM_TIER_G2);
    for (uint64_t doc = 0; doc < DOCUMENTS; doc++) {
        for (uint64_t i = 0; i < MAX_DOC_BLOCKS; i++) {
            uint64_t h = doc * 100 + i;
            uint32_t id;
            size_t found;
            assert_kvbm_ok(kvbm_manager_scan(g2, &h, 1, false, &id, &found));
            if (found == 0)
                continue;
            assert_true(block_holds(w->cache, KVBM_TIER_G2, id, h));
            assert_kvbm_ok(kvbm_manager_release(g2, &id, 1));
        }
    }
}

static void workload_close(workload_t *w)
{
    assert_kvbm_ok(kvbm_cache_sync(w->cache));
    assert_g2_holds_only_right_bytes(w);
    bool g3 = w->g3_path[0] != '\0';
    if (g3)
        assert_g3_holds_only_right_bytes(w);
    assert_events_match_tiers(w->cache, w->view, g3);
    assert_true(w->view->stored > 1000 && w->view->removed > 1000);
    if (g3)
        assert_true(w->view->stored_disk > 100 && w->view->removed_disk > 0);
    /* No block lost or still held: every pool adds up with nothing active. */
    for (kvbm_tier_t tier = KVBM_TIER_G1; tier <= (g3 ? KVBM_TIER_G3 : KVBM_TIER_G2); tier++) {
        kvbm_pool_counts_t c;
        kvbm_manager_counts(kvbm_cache_manager(w->cache, tier), &c);
        assert_int_equal(c.active, 0);
        assert_int_equal(c.reset + c.inactive, c.total);
    }
    kvbm_cache_destroy(w->cache);
    kvbm_event_batcher_destroy(w->events);
    free(w->view);
    kvbm_stream_destroy(w->engine_stream);
    kvbm_backend_destroy(w->backend);
    pthread_mutex_destroy(&w->fault_lock);
    if (w->g3_path[0] != '\0')
        disk_test_remove(w->g3_path);
}

/* One request: take what is cached, check it, write the rest, register, release. */
static void run_request(worker_t *me, test_engine_t *engine)
{
    workload_t *w = me->w;
    uint64_t doc = next_rand(&me->rng, DOCUMENTS);
    size_t n = 1 + next_rand(&me->rng, MAX_DOC_BLOCKS);
    uint64_t hashes[MAX_DOC_BLOCKS];
    uint32_t ids[MAX_DOC_BLOCKS], registered[MAX_DOC_BLOCKS];
    for (size_t i = 0; i < n; i++)
        hashes[i] = doc * 100 + i;
    kvbm_fence_t *ready;
    assert_kvbm_ok(kvbm_fence_create(w->backend, &ready));
    kvbm_cache_match_result_t r;
    /* Faults are aimed at the cache's copies (the offload and onboard
     * batches this call issues), not at the engine's own writes: the hook is
     * armed and disarmed around the call, under a lock the engine's writes
     * take too. */
    bool arm = w->faults && next_rand(&me->rng, 3) == 0;
    if (w->faults)
        pthread_mutex_lock(&w->fault_lock);
    if (arm)
        assert_kvbm_ok(kvbm_backend_fail_nth_copy(w->backend, 1 + next_rand(&me->rng, 2)));
    kvbm_status_t status = kvbm_cache_acquire(w->cache, hashes, n, ids, &r, ready);
    if (arm)
        assert_kvbm_ok(kvbm_backend_fail_nth_copy(w->backend, 0));
    if (w->faults)
        pthread_mutex_unlock(&w->fault_lock);
    if (status == KVBM_ERR_NO_BLOCKS) { /* other threads hold G1 right now */
        kvbm_fence_destroy(ready);
        me->result.refused++;
        return;
    }
    assert_kvbm_ok(status);
    me->result.requests++;
    kvbm_status_t waited = kvbm_fence_wait(ready);
    kvbm_fence_destroy(ready);
    assert_true(waited == KVBM_OK || (w->faults && waited == KVBM_ERR_COPY_FAILED));
    /* Reads from the host need the engine's earlier writes to have landed. */
    assert_kvbm_ok(engine_finish(engine));
    size_t served = r.g1 + r.onboarded;
    if (served > 0) {
        kvbm_status_t check = kvbm_cache_check(w->cache, ids, served);
        assert_true(check == KVBM_OK || (w->faults && check == KVBM_ERR_COPY_FAILED));
        if (check == KVBM_OK) {
            me->result.served += served;
            for (size_t i = 0; i < served; i++) {
                bool right = block_holds(w->cache, KVBM_TIER_G1, ids[i], hashes[i]);
                me->result.verified += right;
                me->result.wrong += !right;
            }
        }
    }
    /* The engine computes the rest; its writes may still be queued when the
     * blocks are registered and released. */
    if (w->faults)
        pthread_mutex_lock(&w->fault_lock);
    for (size_t i = served; i < n; i++)
        assert_kvbm_ok(engine_write(engine, w->cache, ids[i], hashes[i]));
    if (w->faults)
        pthread_mutex_unlock(&w->fault_lock);
    memcpy(registered, ids, sizeof(ids));
    if (n > served) {
        kvbm_register_opts_t opts = {.has_parent = served > 0,
                                     .parent_hash = served > 0 ? hashes[served - 1] : 0,
                                     .priority = 50};
        assert_kvbm_ok(kvbm_cache_register(w->cache, ids + served, hashes + served, n - served,
                                           &opts, registered + served));
        /* A dedup swapped a block: keep the reference on the one returned. */
    }
    uint32_t reversed[MAX_DOC_BLOCKS];
    for (size_t i = 0; i < n; i++)
        reversed[i] = registered[n - 1 - i];
    assert_kvbm_ok(kvbm_cache_release(w->cache, reversed, n));
}

static void *worker_main(void *arg)
{
    worker_t *me = arg;
    test_engine_t engine = {.backend = me->w->backend, .stream = me->w->engine_stream};
    if (kvbm_fence_create(me->w->backend, &engine.done) != KVBM_OK)
        return NULL;
    for (int i = 0; i < me->requests; i++)
        run_request(me, &engine);
    engine_finish(&engine);
    kvbm_fence_destroy(engine.done);
    return NULL;
}

static worker_result_t run_workers(workload_t *w, int threads, int requests_each)
{
    pthread_t tid[4];
    worker_t workers[4];
    for (int t = 0; t < threads; t++) {
        workers[t] = (worker_t){
            .w = w, .rng = 0x9e3779b97f4a7c15ULL * (uint64_t)(t + 1), .requests = requests_each};
        assert_int_equal(pthread_create(&tid[t], NULL, worker_main, &workers[t]), 0);
    }
    worker_result_t total = {0};
    for (int t = 0; t < threads; t++) {
        assert_int_equal(pthread_join(tid[t], NULL), 0);
        total.served += workers[t].result.served;
        total.verified += workers[t].result.verified;
        total.wrong += workers[t].result.wrong;
        total.refused += workers[t].result.refused;
        total.requests += workers[t].result.requests;
    }
    return total;
}

static void replay_serves_only_right_bytes(void **state)
{
    const kvbm_layout_kind_t kinds[2] = {KVBM_LAYOUT_FULLY_CONTIGUOUS, KVBM_LAYOUT_LAYER_SEPARATE};
    for (int k = 0; k < 2; k++) {
        workload_t w;
        workload_open(&w, false, kinds[k], false);
        worker_result_t r = run_workers(&w, 1, 3000);
        kvbm_cache_metrics_t m;
        assert_kvbm_ok(kvbm_cache_sync(w.cache));
        kvbm_cache_metrics(w.cache, &m);
        assert_int_equal(r.wrong, 0);
        assert_int_equal(r.requests, 3000);
        assert_true(r.verified > 1000);
        assert_true(m.onboards > 500); /* the data really went round through G2 */
        assert_true(m.offloads > 500);
        assert_int_equal(m.failed_copies, 0);
        workload_close(&w);
    }
}

static void random_copy_failures_never_serve_wrong_bytes(void **state)
{
    workload_t w;
    workload_open(&w, true, KVBM_LAYOUT_LAYER_SEPARATE, false);
    worker_result_t r = run_workers(&w, 1, 3000);
    assert_kvbm_ok(kvbm_cache_sync(w.cache));
    kvbm_cache_metrics_t m;
    kvbm_cache_metrics(w.cache, &m);
    assert_int_equal(r.wrong, 0);
    assert_true(r.verified > 1000);
    assert_true(m.failed_copies > 0); /* failures happened and were counted */
    assert_true(m.onboards > 0);
    workload_close(&w);
}

static void four_threads_on_one_cache(void **state)
{
    workload_t w;
    workload_open(&w, true, KVBM_LAYOUT_FULLY_CONTIGUOUS, false);
    worker_result_t r = run_workers(&w, 4, 600);
    assert_int_equal(r.wrong, 0);
    assert_true(r.verified > 0);
    workload_close(&w);
}

static void three_tiers_serve_only_right_bytes(void **state)
{
    workload_t w;
    workload_open(&w, false, KVBM_LAYOUT_LAYER_SEPARATE, true);
    worker_result_t r = run_workers(&w, 1, 1500);
    assert_kvbm_ok(kvbm_cache_sync(w.cache));
    kvbm_cache_metrics_t m;
    kvbm_cache_metrics(w.cache, &m);
    assert_int_equal(r.wrong, 0);
    assert_int_equal(r.requests, 1500);
    assert_true(m.g3_offloads > 100); /* the data really went round through G3 */
    assert_true(m.g3_onboards > 100);
    assert_int_equal(m.g3_failed_loads, 0);
    assert_int_equal(m.failed_copies, 0);
    workload_close(&w);
}

static void three_tiers_with_copy_and_disk_faults_never_serve_wrong_bytes(void **state)
{
    workload_t w;
    workload_open(&w, true, KVBM_LAYOUT_FULLY_CONTIGUOUS, true);
    worker_result_t r = run_workers(&w, 1, 1500);
    assert_kvbm_ok(kvbm_cache_sync(w.cache));
    kvbm_cache_metrics_t m;
    kvbm_cache_metrics(w.cache, &m);
    kvbm_disk_metrics_t d;
    assert_kvbm_ok(kvbm_cache_disk_metrics(w.cache, &d));
    assert_int_equal(r.wrong, 0);
    assert_true(r.verified > 500);
    assert_true(m.g3_onboards > 0);
    assert_true(m.g3_failed_loads > 0); /* disk faults happened and were counted */
    assert_true(d.stores_failed > 0);
    assert_true(d.loads_corrupt > 0);
    workload_close(&w);
}

static void four_threads_on_three_tiers(void **state)
{
    workload_t w;
    workload_open(&w, true, KVBM_LAYOUT_LAYER_SEPARATE, true);
    worker_result_t r = run_workers(&w, 4, 300);
    assert_int_equal(r.wrong, 0);
    assert_true(r.verified > 0);
    workload_close(&w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(replay_serves_only_right_bytes),
        cmocka_unit_test(random_copy_failures_never_serve_wrong_bytes),
        cmocka_unit_test(four_threads_on_one_cache),
        cmocka_unit_test(three_tiers_serve_only_right_bytes),
        cmocka_unit_test(three_tiers_with_copy_and_disk_faults_never_serve_wrong_bytes),
        cmocka_unit_test(four_threads_on_three_tiers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
