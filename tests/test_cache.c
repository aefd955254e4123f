/*
 * The tiered cache on the asynchronous CPU backend: offload on eviction,
 * onboarding on match, write-through, inclusive G2, failed copies, shared
 * onboarding, and the three ordering rules, each shown both kept (data
 * intact) and broken through a test-only switch (corruption detected).
 * Built a second time as test_cache_standin (tests/cuda): the same tests on
 * the CUDA backend's code over the CUDA runtime stand-in.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <math.h>
#include <pthread.h>
#include <time.h>

#include <cmocka.h>

#include "cache/internal.h"
#include "cache_test_util.h"
#include "kvbm_test.h"

typedef struct fixture {
    kvbm_backend_t *backend;
    test_engine_t engine;
    kvbm_cache_t *cache;
    kvbm_event_batcher_t *events; /* the cache's, when a test follows its events */
} fixture_t;

static void fixture_open(fixture_t *f, uint32_t g1, uint32_t g2, kvbm_offload_mode_t mode,
                         bool with_engine_stream)
{
    memset(f, 0, sizeof(*f));
    kvbm_backend_config_t bc = KVBM_BACKEND_CONFIG_INIT;
    bc.kind = TEST_BACKEND_KIND;
    assert_kvbm_ok(kvbm_backend_create(&bc, &f->backend));
    f->engine.backend = f->backend;
    assert_kvbm_ok(kvbm_stream_create(f->backend, &f->engine.stream));
    assert_kvbm_ok(kvbm_fence_create(f->backend, &f->engine.done));
    kvbm_cache_config_t cc = KVBM_CACHE_CONFIG_INIT;
    cc.backend = f->backend;
    cc.layout.num_blocks = g1;
    cc.layout.num_layers = 2;
    cc.layout.tokens_per_block = 4;
    cc.layout.inner_dim = 64;
    cc.g2_blocks = g2;
    cc.offload_mode = mode;
    cc.engine_stream = with_engine_stream ? f->engine.stream : NULL;
    assert_kvbm_ok(kvbm_cache_create(&cc, &f->cache));
}

static void fixture_close(fixture_t *f)
{
    kvbm_cache_destroy(f->cache);
    kvbm_event_batcher_destroy(f->events);
    kvbm_fence_destroy(f->engine.done);
    kvbm_stream_destroy(f->engine.stream);
    kvbm_backend_destroy(f->backend);
}

/* Computes one block for hash: allocate, engine write, register, release.
 * The engine orders its write after the ready fence itself, as an engine
 * that gave the cache no stream must. */
static uint32_t compute_block(fixture_t *f, uint64_t hash)
{
    uint32_t id, out;
    kvbm_fence_t *ready;
    assert_kvbm_ok(kvbm_fence_create(f->backend, &ready));
    assert_kvbm_ok(kvbm_cache_allocate(f->cache, 1, &id, ready));
    assert_kvbm_ok(kvbm_stream_wait_fence(f->engine.stream, ready));
    assert_kvbm_ok(engine_write(&f->engine, f->cache, id, hash));
    assert_kvbm_ok(kvbm_cache_register(f->cache, &id, &hash, 1, NULL, &out));
    assert_kvbm_ok(engine_finish(&f->engine));
    kvbm_fence_destroy(ready);
    assert_kvbm_ok(kvbm_cache_release(f->cache, &out, 1));
    return out;
}

/* Fills G1 with fresh blocks, evicting (and so offloading) what was there. */
static void evict_everything(fixture_t *f, uint32_t g1, uint64_t first_filler)
{
    for (uint32_t i = 0; i < g1; i++)
        compute_block(f, first_filler + i);
    assert_kvbm_ok(kvbm_cache_sync(f->cache));
}

/* Matches one hash and reports whether the cache served it with the right bytes. */
static bool onboard_serves_right_bytes(fixture_t *f, uint64_t hash, size_t *onboarded)
{
    uint32_t id;
    kvbm_cache_match_result_t r;
    kvbm_fence_t *ready;
    assert_kvbm_ok(kvbm_fence_create(f->backend, &ready));
    assert_kvbm_ok(kvbm_cache_match(f->cache, &hash, 1, &id, &r, ready));
    assert_kvbm_ok(kvbm_fence_wait(ready));
    kvbm_fence_destroy(ready);
    *onboarded = r.onboarded;
    bool served = r.g1 + r.onboarded == 1 && kvbm_cache_check(f->cache, &id, 1) == KVBM_OK;
    bool right = served && block_holds(f->cache, KVBM_TIER_G1, id, hash);
    if (r.g1 + r.onboarded == 1)
        assert_kvbm_ok(kvbm_cache_release(f->cache, &id, 1));
    return right;
}

static void eviction_offloads_and_match_onboards(void **state)
{
    fixture_t f;
    fixture_open(&f, 4, 8, KVBM_OFFLOAD_WRITE_BACK, true);
    uint32_t id = compute_block(&f, 1000);
    assert_true(block_holds(f.cache, KVBM_TIER_G1, id, 1000));
    evict_everything(&f, 4, 1);
    kvbm_manager_t *g2 = kvbm_cache_manager(f.cache, KVBM_TIER_G2);
    assert_true(kvbm_manager_contains(g2, 1000));
    assert_false(kvbm_manager_contains(kvbm_cache_manager(f.cache, KVBM_TIER_G1), 1000));
    uint32_t g2_id;
    size_t found;
    assert_kvbm_ok(kvbm_manager_scan(g2, (const uint64_t[]){1000}, 1, false, &g2_id, &found));
    assert_true(block_holds(f.cache, KVBM_TIER_G2, g2_id, 1000));
    assert_kvbm_ok(kvbm_manager_release(g2, &g2_id, 1));

    size_t onboarded = 0;
    assert_true(onboard_serves_right_bytes(&f, 1000, &onboarded));
    assert_int_equal(onboarded, 1);
    kvbm_cache_metrics_t m;
    assert_kvbm_ok(kvbm_cache_sync(f.cache));
    kvbm_cache_metrics(f.cache, &m);
    assert_int_equal(m.onboards, 1);
    assert_int_equal(m.g2_hits, 1);
    assert_int_equal(m.offloads, 2); /* 1000, then filler 1 evicted to make room for it */
    assert_int_equal(m.onboard_bytes, m.onboards * 2 * 2 * 4 * 64 * 2);
    assert_int_equal(m.copies_in_flight, 0);
    fixture_close(&f);
}

static void g2_is_inclusive_and_onboarded_blocks_are_not_copied_again(void **state)
{
    fixture_t f;
    fixture_open(&f, 2, 8, KVBM_OFFLOAD_WRITE_BACK, true);
    compute_block(&f, 7);
    evict_everything(&f, 2, 100);
    size_t onboarded;
    assert_true(onboard_serves_right_bytes(&f, 7, &onboarded));
    kvbm_cache_metrics_t before, after;
    assert_kvbm_ok(kvbm_cache_sync(f.cache));
    kvbm_cache_metrics(f.cache, &before);
    evict_everything(&f, 2, 200); /* evicts 7 again: G2 still has it */
    kvbm_cache_metrics(f.cache, &after);
    assert_int_equal(after.offloads - before.offloads, 1); /* only filler 100 or 101 */
    assert_true(kvbm_manager_contains(kvbm_cache_manager(f.cache, KVBM_TIER_G2), 7));
    fixture_close(&f);
}

static void g2_smaller_than_one_allocation_offloads_in_parts(void **state)
{
    /* One allocation evicts four blocks into a G2 of two. One by one (the
     * contract), each offload takes a G2 block, evicting the one stored two
     * offloads before: four offloads, G2 ends with the last two, none
     * skipped. The cache issues the batch in parts of what G2 can hold. */
    fixture_t f;
    fixture_open(&f, 4, 2, KVBM_OFFLOAD_WRITE_BACK, true);
    evict_everything(&f, 4, 10); /* 10..13 inactive in G1, oldest first */
    uint32_t ids[4];
    assert_kvbm_ok(kvbm_cache_allocate(f.cache, 4, ids, NULL));
    assert_kvbm_ok(kvbm_cache_sync(f.cache));
    kvbm_cache_metrics_t m;
    kvbm_cache_metrics(f.cache, &m);
    assert_int_equal(m.offloads, 4);
    assert_int_equal(m.offload_skipped, 0);
    assert_int_equal(m.failed_copies, 0);
    kvbm_manager_t *g2 = kvbm_cache_manager(f.cache, KVBM_TIER_G2);
    assert_false(kvbm_manager_contains(g2, 10));
    assert_false(kvbm_manager_contains(g2, 11));
    assert_true(kvbm_manager_contains(g2, 12));
    assert_true(kvbm_manager_contains(g2, 13));
    kvbm_manager_metrics_t g2m;
    kvbm_manager_metrics(g2, &g2m);
    assert_int_equal(g2m.evictions, 2);
    assert_pools(g2, 0, 0, 2);
    /* The parts carried the right bytes. */
    for (uint64_t h = 12; h <= 13; h++) {
        uint32_t g2_id;
        size_t found;
        assert_kvbm_ok(kvbm_manager_scan(g2, &h, 1, false, &g2_id, &found));
        assert_true(block_holds(f.cache, KVBM_TIER_G2, g2_id, h));
        assert_kvbm_ok(kvbm_manager_release(g2, &g2_id, 1));
    }
    assert_kvbm_ok(kvbm_cache_release(f.cache, ids, 4));
    fixture_close(&f);
}

static void write_through_copies_at_registration(void **state)
{
    fixture_t f;
    fixture_open(&f, 2, 8, KVBM_OFFLOAD_WRITE_THROUGH, true);
    compute_block(&f, 42);
    assert_kvbm_ok(kvbm_cache_sync(f.cache));
    assert_true(kvbm_manager_contains(kvbm_cache_manager(f.cache, KVBM_TIER_G2), 42));
    kvbm_cache_metrics_t m;
    kvbm_cache_metrics(f.cache, &m);
    assert_int_equal(m.offloads, 1);
    evict_everything(&f, 2, 300);
    kvbm_cache_metrics(f.cache, &m);
    assert_int_equal(m.offloads, 3); /* the fillers at registration; evicting 42 copied nothing */
    size_t onboarded;
    assert_true(onboard_serves_right_bytes(&f, 42, &onboarded));
    assert_int_equal(onboarded, 1);
    fixture_close(&f);
}

static void failed_offload_caches_nothing_and_loses_no_block(void **state)
{
    fixture_t f;
    fixture_open(&f, 2, 4, KVBM_OFFLOAD_WRITE_BACK, true);
    compute_block(&f, 5);
    compute_block(&f, 6);
    /* The next copy call is the offload batch of the allocation below. */
    assert_kvbm_ok(kvbm_backend_fail_nth_copy(f.backend, 1));
    uint32_t ids[2];
    assert_kvbm_ok(kvbm_cache_allocate(f.cache, 2, ids, NULL));
    assert_kvbm_ok(kvbm_cache_sync(f.cache));
    kvbm_manager_t *g2 = kvbm_cache_manager(f.cache, KVBM_TIER_G2);
    assert_false(kvbm_manager_contains(g2, 5));
    assert_false(kvbm_manager_contains(g2, 6));
    kvbm_cache_metrics_t m;
    kvbm_cache_metrics(f.cache, &m);
    assert_int_equal(m.failed_copies, 2);
    assert_int_equal(m.offloads, 0);
    assert_pools(g2, 4, 0, 0);
    assert_kvbm_ok(kvbm_cache_release(f.cache, ids, 2));
    assert_pools(kvbm_cache_manager(f.cache, KVBM_TIER_G1), 2, 0, 0);
    fixture_close(&f);
}

static void failed_onboard_is_reported_and_withdrawn(void **state)
{
    fixture_t f;
    fixture_open(&f, 2, 4, KVBM_OFFLOAD_WRITE_BACK, true);
    compute_block(&f, 9);
    evict_everything(&f, 2, 400);
    /* The match evicts filler 400 (copy 1, its offload), then onboards (copy 2). */
    assert_kvbm_ok(kvbm_backend_fail_nth_copy(f.backend, 2));
    uint32_t id;
    kvbm_cache_match_result_t r;
    assert_kvbm_ok(kvbm_cache_match(f.cache, (const uint64_t[]){9}, 1, &id, &r, NULL));
    assert_int_equal(r.onboarded, 1);
    assert_kvbm_status(kvbm_cache_check(f.cache, &id, 1), KVBM_ERR_COPY_FAILED);
    kvbm_manager_t *g1 = kvbm_cache_manager(f.cache, KVBM_TIER_G1);
    assert_false(kvbm_manager_contains(g1, 9)); /* nobody else will be served it */
    kvbm_cache_metrics_t m;
    kvbm_cache_metrics(f.cache, &m);
    assert_int_equal(m.onboards, 0);
    assert_int_equal(m.failed_copies, 1);
    assert_kvbm_ok(kvbm_cache_release(f.cache, &id, 1));
    assert_kvbm_ok(kvbm_cache_sync(f.cache));
    kvbm_pool_counts_t c;
    kvbm_manager_counts(g1, &c);
    assert_int_equal(c.active, 0);
    assert_int_equal(c.reset + c.inactive, 2);
    /* G2 still holds the good copy, and a second try succeeds. */
    size_t onboarded;
    assert_true(onboard_serves_right_bytes(&f, 9, &onboarded));
    fixture_close(&f);
}

static void concurrent_matches_share_one_onboarding(void **state)
{
    fixture_t f;
    fixture_open(&f, 4, 8, KVBM_OFFLOAD_WRITE_BACK, true);
    compute_block(&f, 11);
    evict_everything(&f, 4, 500);
    assert_kvbm_ok(test_stream_hold(f.cache->h2d, true)); /* keep the first onboarding in flight */
    uint32_t a, b;
    kvbm_cache_match_result_t ra, rb;
    assert_kvbm_ok(kvbm_cache_match(f.cache, (const uint64_t[]){11}, 1, &a, &ra, NULL));
    assert_kvbm_ok(kvbm_cache_match(f.cache, (const uint64_t[]){11}, 1, &b, &rb, NULL));
    assert_int_equal(ra.onboarded, 1);
    assert_int_equal(rb.g1, 1); /* found in G1: the onboarding in flight */
    assert_int_equal(a, b);
    assert_kvbm_ok(test_stream_hold(f.cache->h2d, false));
    assert_kvbm_ok(kvbm_cache_check(f.cache, &b, 1));
    assert_true(block_holds(f.cache, KVBM_TIER_G1, b, 11));
    kvbm_cache_metrics_t m;
    kvbm_cache_metrics(f.cache, &m);
    assert_int_equal(m.g2_hits, 1);
    assert_int_equal(m.onboards, 1);
    assert_kvbm_ok(kvbm_cache_release(f.cache, (const uint32_t[]){a, b}, 2));
    fixture_close(&f);
}

/* Rule 1: the engine's write of a block is still queued (its stream held)
 * when the block is evicted. Kept, the offload waits for it; broken, the
 * offload copies the slab's old bytes and G2 serves them later. */
static bool rule1_scenario(bool broken)
{
    fixture_t f;
    fixture_open(&f, 1, 4, KVBM_OFFLOAD_WRITE_BACK, true);
    if (broken)
        kvbm__cache_set_unsafe(f.cache, KVBM__CACHE_UNSAFE_NO_ENGINE_ORDER);
    uint32_t id, out, next;
    uint64_t h = 77;
    assert_kvbm_ok(test_stream_hold(f.engine.stream, true));
    assert_kvbm_ok(kvbm_cache_allocate(f.cache, 1, &id, NULL));
    assert_kvbm_ok(engine_write(&f.engine, f.cache, id, h));
    assert_kvbm_ok(kvbm_cache_register(f.cache, &id, &h, 1, NULL, &out));
    assert_kvbm_ok(kvbm_cache_release(f.cache, &out, 1));
    /* The engine moves on; the cache evicts the block for another request
     * without the engine's help. */
    assert_kvbm_ok(kvbm_cache_allocate(f.cache, 1, &next, NULL));
    if (broken)
        assert_kvbm_ok(kvbm_cache_sync(f.cache)); /* the offload did not wait */
    assert_kvbm_ok(test_stream_hold(f.engine.stream, false));
    assert_kvbm_ok(engine_finish(&f.engine));
    assert_kvbm_ok(kvbm_cache_sync(f.cache));
    assert_kvbm_ok(kvbm_cache_release(f.cache, &next, 1));
    size_t onboarded;
    bool right = onboard_serves_right_bytes(&f, h, &onboarded);
    assert_int_equal(onboarded, 1);
    fixture_close(&f);
    return right;
}

static void rule1_offload_waits_for_engine_writes(void **state)
{
    assert_true(rule1_scenario(false));
    assert_false(rule1_scenario(true)); /* the integrity check catches the broken rule */
}

/* Rule 2: the offload of an evicted slab is held back (its stream held) when
 * the new owner writes the slab. Kept, the engine's write waits for the
 * offload; broken, the new owner's bytes end up in G2 under the old hash. */
static bool rule2_scenario(bool broken)
{
    fixture_t f;
    fixture_open(&f, 1, 4, KVBM_OFFLOAD_WRITE_BACK, true);
    if (broken)
        kvbm__cache_set_unsafe(f.cache, KVBM__CACHE_UNSAFE_NO_REUSE_ORDER);
    compute_block(&f, 88);
    assert_kvbm_ok(test_stream_hold(f.cache->d2h, true));
    uint32_t id, out;
    uint64_t h = 99;
    assert_kvbm_ok(kvbm_cache_allocate(f.cache, 1, &id, NULL)); /* evicts 88: offload queued */
    assert_kvbm_ok(engine_write(&f.engine, f.cache, id, h));
    if (broken)
        assert_kvbm_ok(engine_finish(&f.engine)); /* nothing made the engine wait */
    assert_kvbm_ok(test_stream_hold(f.cache->d2h, false));
    assert_kvbm_ok(engine_finish(&f.engine));
    assert_kvbm_ok(kvbm_cache_register(f.cache, &id, &h, 1, NULL, &out));
    assert_kvbm_ok(kvbm_cache_release(f.cache, &out, 1));
    assert_kvbm_ok(kvbm_cache_sync(f.cache));
    size_t onboarded;
    bool right = onboard_serves_right_bytes(&f, 88, &onboarded);
    assert_int_equal(onboarded, 1);
    fixture_close(&f);
    return right;
}

static void rule2_new_owner_waits_for_offload(void **state)
{
    assert_true(rule2_scenario(false));
    assert_false(rule2_scenario(true));
}

/* Rule 3: an onboarding copy out of G2 block S is held back (stream held)
 * while an offload needs a G2 block and G2 is full. Kept, S is not
 * evictable; broken, S is reused and overwritten before it is read. */
static bool rule3_scenario(bool broken)
{
    fixture_t f;
    /* No engine stream: it would wait for the held onboarding and, through
     * rule 1, hold the offload back too, hiding what this test is about. */
    fixture_open(&f, 2, 1, KVBM_OFFLOAD_WRITE_BACK, false);
    if (broken)
        kvbm__cache_set_unsafe(f.cache, KVBM__CACHE_UNSAFE_EARLY_G2_RELEASE);
    compute_block(&f, 31); /* G1: 31 */
    compute_block(&f, 32); /* G1: 31, 32 */
    compute_block(&f, 33); /* evicts 31 -> G2 (its only block) */
    assert_kvbm_ok(kvbm_cache_sync(f.cache));
    assert_true(kvbm_manager_contains(kvbm_cache_manager(f.cache, KVBM_TIER_G2), 31));
    assert_kvbm_ok(test_stream_hold(f.cache->h2d, true));
    uint32_t id;
    kvbm_cache_match_result_t r;
    /* Onboarding 31 evicts 32, whose offload finds G2's only block held. */
    assert_kvbm_ok(kvbm_cache_match(f.cache, (const uint64_t[]){31}, 1, &id, &r, NULL));
    assert_int_equal(r.onboarded, 1);
    /* Another allocation evicts 33; its offload wants a G2 block. Kept, S is
     * held and the offload is skipped; broken, S is evicted and overwritten. */
    uint32_t extra;
    kvbm_fence_t *extra_ready; /* given, so the call does not wait for the held stream */
    assert_kvbm_ok(kvbm_fence_create(f.backend, &extra_ready));
    assert_kvbm_ok(kvbm_cache_allocate(f.cache, 1, &extra, extra_ready));
    if (broken)
        assert_kvbm_ok(kvbm_fence_wait(f.cache->tail->fence)); /* that offload's copy landed */
    assert_kvbm_ok(test_stream_hold(f.cache->h2d, false));
    bool right =
        kvbm_cache_check(f.cache, &id, 1) == KVBM_OK && block_holds(f.cache, KVBM_TIER_G1, id, 31);
    assert_kvbm_ok(kvbm_cache_release(f.cache, (const uint32_t[]){id, extra}, 2));
    assert_kvbm_ok(kvbm_cache_sync(f.cache));
    assert_kvbm_ok(kvbm_fence_wait(extra_ready));
    kvbm_fence_destroy(extra_ready);
    fixture_close(&f);
    return right;
}

static void rule3_g2_source_is_held_until_read(void **state)
{
    assert_true(rule3_scenario(false));
    assert_false(rule3_scenario(true));
}

typedef struct tier_events {
    size_t stored[3], removed[3], batches;
} tier_events_t;

static void count_tier_events(void *ctx, const kvbm_event_record_t *records, size_t count)
{
    tier_events_t *log = ctx;
    log->batches++;
    for (size_t i = 0; i < count; i++) {
        if (records[i].kind == KVBM_EVENT_STORED)
            log->stored[records[i].medium] += records[i].count;
        else
            log->removed[records[i].medium] += records[i].count;
    }
}

static void events_and_metrics_name_their_tier(void **state)
{
    fixture_t f;
    memset(&f, 0, sizeof(f));
    kvbm_backend_config_t bc = KVBM_BACKEND_CONFIG_INIT;
    bc.kind = TEST_BACKEND_KIND;
    assert_kvbm_ok(kvbm_backend_create(&bc, &f.backend));
    f.engine.backend = f.backend;
    assert_kvbm_ok(kvbm_stream_create(f.backend, &f.engine.stream));
    assert_kvbm_ok(kvbm_fence_create(f.backend, &f.engine.done));
    tier_events_t log = {0};
    kvbm_cache_config_t cc = KVBM_CACHE_CONFIG_INIT;
    cc.backend = f.backend;
    cc.layout.num_blocks = 1;
    cc.layout.num_layers = 1;
    cc.layout.tokens_per_block = 4;
    cc.layout.inner_dim = 16;
    cc.g2_blocks = 4;
    cc.engine_stream = f.engine.stream;
    assert_kvbm_ok(kvbm_event_batcher_create(count_tier_events, &log, &f.events));
    cc.events_batcher = f.events;
    assert_kvbm_ok(kvbm_cache_create(&cc, &f.cache));
    compute_block(&f, 1);
    compute_block(&f, 2); /* evicts 1 from G1 into G2 */
    assert_kvbm_ok(kvbm_cache_sync(f.cache));
    assert_int_equal(log.stored[KVBM_MEDIUM_GPU], 2);
    assert_int_equal(log.removed[KVBM_MEDIUM_GPU], 1);
    assert_int_equal(log.stored[KVBM_MEDIUM_CPU], 1);
    assert_int_equal(log.removed[KVBM_MEDIUM_CPU], 0);

    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&text, &size);
    assert_non_null(out);
    assert_kvbm_ok(kvbm_cache_metrics_prometheus(f.cache, out));
    fclose(out);
    assert_non_null(strstr(text, "kvbm_cache_offloads_total 1\n"));
    assert_non_null(strstr(text, "kvbm_cache_copies_in_flight 0\n"));
    assert_non_null(strstr(text, "kvbm_evictions_total{manager=\"g1\"} 1\n"));
    assert_non_null(strstr(text, "kvbm_inactive_blocks{manager=\"g2\"} 1\n"));
    free(text);
    fixture_close(&f);
}

/* Each sink call as one line: its records, "; " apart. */
typedef struct batch_log {
    char lines[16][160];
    size_t calls;
} batch_log_t;

static void log_batches(void *ctx, const kvbm_event_record_t *records, size_t count)
{
    batch_log_t *log = ctx;
    assert_true(log->calls < 16);
    char *line = log->lines[log->calls++];
    size_t used = 0;
    for (size_t r = 0; r < count; r++) {
        const kvbm_event_record_t *rec = &records[r];
        const char *kind = rec->kind == KVBM_EVENT_STORED    ? "stored"
                           : rec->kind == KVBM_EVENT_REMOVED ? "removed"
                                                             : "cleared";
        used += (size_t)snprintf(line + used, 160 - used, "%s%s", r ? "; " : "", kind);
        if (rec->kind == KVBM_EVENT_CLEARED)
            continue;
        used += (size_t)snprintf(line + used, 160 - used, " %s", kvbm_medium_name(rec->medium));
        for (size_t i = 0; i < rec->count; i++)
            used += (size_t)snprintf(line + used, 160 - used, " %llu",
                                     (unsigned long long)rec->hashes[i]);
        if (rec->kind == KVBM_EVENT_STORED && rec->has_parent)
            used += (size_t)snprintf(line + used, 160 - used, " parent %llu",
                                     (unsigned long long)rec->parent_hash);
        if (rec->n_tokens > 0)
            used += (size_t)snprintf(line + used, 160 - used, " tokens %zu", rec->n_tokens);
    }
}

static void events_come_one_batch_per_call_and_follow_offloads(void **state)
{
    fixture_t f;
    memset(&f, 0, sizeof(f));
    kvbm_backend_config_t bc = KVBM_BACKEND_CONFIG_INIT;
    bc.kind = KVBM_BACKEND_CPU;
    assert_kvbm_ok(kvbm_backend_create(&bc, &f.backend));
    f.engine.backend = f.backend;
    assert_kvbm_ok(kvbm_stream_create(f.backend, &f.engine.stream));
    assert_kvbm_ok(kvbm_fence_create(f.backend, &f.engine.done));
    batch_log_t log = {0};
    kvbm_cache_config_t cc = KVBM_CACHE_CONFIG_INIT;
    cc.backend = f.backend;
    cc.layout.num_blocks = 2;
    cc.layout.num_layers = 1;
    cc.layout.tokens_per_block = 4;
    cc.layout.inner_dim = 16;
    cc.g2_blocks = 4;
    cc.engine_stream = f.engine.stream;
    assert_kvbm_ok(kvbm_event_batcher_create(log_batches, &log, &f.events));
    cc.events_batcher = f.events;
    assert_kvbm_ok(kvbm_cache_create(&cc, &f.cache));

    /* A request of two blocks, registered with its tokens. */
    const uint64_t first[2] = {10, 11};
    const uint32_t tokens[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    uint32_t ids[2], out[2];
    kvbm_cache_match_result_t r;
    assert_kvbm_ok(kvbm_cache_acquire(f.cache, first, 2, ids, &r, NULL));
    assert_int_equal(log.calls, 0); /* fresh blocks: the tiers hold nothing new yet */
    kvbm_register_opts_t opts = {.priority = 50, .block_size = 4, .tokens = tokens, .n_tokens = 8};
    assert_kvbm_ok(kvbm_cache_register(f.cache, ids, first, 2, &opts, out));
    assert_string_equal(log.lines[0], "stored GPU 10 11 tokens 8");
    assert_kvbm_ok(kvbm_cache_release(f.cache, (const uint32_t[]){out[1], out[0]}, 2));
    assert_int_equal(log.calls, 1);

    /* The next request evicts 11 (released first): removed from GPU now,
     * stored in CPU, with its parent, by the call that processes the copy. */
    uint32_t id;
    const uint64_t second = 20;
    assert_kvbm_ok(kvbm_cache_acquire(f.cache, &second, 1, &id, &r, NULL));
    assert_string_equal(log.lines[1], "removed GPU 11");
    assert_kvbm_ok(kvbm_cache_sync(f.cache));
    assert_string_equal(log.lines[2], "stored CPU 11 parent 10");
    assert_kvbm_ok(kvbm_cache_register(f.cache, &id, &second, 1, NULL, &id));
    assert_string_equal(log.lines[3], "stored GPU 20");
    assert_int_equal(log.calls, 4);

    /* A resync is one batch: cleared, then every hash of both tiers (the
     * G1 blocks' order is their ids'), changing nothing. An offload's parent
     * was for its event only: the G2 block has none to announce. */
    assert_kvbm_ok(kvbm_cache_announce(f.cache));
    assert_int_equal(log.calls, 5);
    assert_true(strncmp(log.lines[4], "cleared; stored GPU ", 20) == 0);
    assert_true(strcmp(log.lines[4], "cleared; stored GPU 10; stored GPU 20; stored CPU 11") == 0 ||
                strcmp(log.lines[4], "cleared; stored GPU 20; stored GPU 10; stored CPU 11") == 0);
    assert_true(kvbm_manager_contains(kvbm_cache_manager(f.cache, KVBM_TIER_G2), 11));

    /* A clear waits while a block is held, then says AllBlocksCleared, once. */
    assert_kvbm_status(kvbm_cache_clear(f.cache), KVBM_ERR_BUSY);
    assert_int_equal(log.calls, 5);
    assert_true(kvbm_manager_contains(kvbm_cache_manager(f.cache, KVBM_TIER_G1), 10));
    assert_kvbm_ok(kvbm_cache_release(f.cache, &id, 1));
    assert_kvbm_ok(kvbm_cache_clear(f.cache));
    assert_int_equal(log.calls, 6);
    assert_string_equal(log.lines[5], "cleared");
    uint64_t left[4];
    size_t n = 1;
    assert_kvbm_ok(
        kvbm_manager_registered_hashes(kvbm_cache_manager(f.cache, KVBM_TIER_G1), left, 4, &n));
    assert_int_equal(n, 0);
    assert_kvbm_ok(
        kvbm_manager_registered_hashes(kvbm_cache_manager(f.cache, KVBM_TIER_G2), left, 4, &n));
    assert_int_equal(n, 0);
    fixture_close(&f);
}

static void g1_can_bind_the_engines_own_memory(void **state)
{
    kvbm_backend_t *backend;
    kvbm_backend_config_t bc = KVBM_BACKEND_CONFIG_INIT;
    bc.kind = TEST_BACKEND_KIND;
    assert_kvbm_ok(kvbm_backend_create(&bc, &backend));
    kvbm_cache_config_t cc = KVBM_CACHE_CONFIG_INIT;
    cc.backend = backend;
    cc.layout.num_blocks = 2;
    cc.layout.num_layers = 2;
    cc.layout.tokens_per_block = 4;
    cc.layout.inner_dim = 16;
    cc.g2_blocks = 4;
    size_t bytes = 64 * 1024;
    unsigned char *tensor = aligned_alloc(4096, bytes);
    assert_non_null(tensor);
    kvbm_cache_t *cache = NULL;
    cc.g1_memory = tensor + 8; /* misaligned for the layout's 256 bytes */
    cc.g1_memory_bytes = bytes - 8;
    assert_kvbm_status(kvbm_cache_create(&cc, &cache), KVBM_ERR_INVALID_ARG);
    cc.g1_memory = tensor;
    cc.g1_memory_bytes = 16; /* too small */
    assert_kvbm_status(kvbm_cache_create(&cc, &cache), KVBM_ERR_INVALID_ARG);
    assert_null(cache);
    cc.g1_memory_bytes = bytes;
    assert_kvbm_ok(kvbm_cache_create(&cc, &cache));
    assert_ptr_equal(kvbm_pool_ptr(kvbm_cache_pool(cache, KVBM_TIER_G1)), tensor);
    void *addr;
    assert_kvbm_ok(kvbm_cache_block_address(cache, 1, 1, 1, &addr));
    assert_true((unsigned char *)addr > tensor && (unsigned char *)addr < tensor + bytes);
    /* Blocks written in the engine's tensor are offloaded from it. */
    uint32_t id, out;
    uint64_t h = 5;
    assert_kvbm_ok(kvbm_cache_allocate(cache, 1, &id, NULL));
    size_t block_bytes = kvbm_layout_block_bytes(kvbm_cache_layout(cache, KVBM_TIER_G1));
    unsigned char *pattern = malloc(block_bytes);
    pattern_fill(pattern, block_bytes, h);
    kvbm_region_t regions[8];
    size_t n, done = 0;
    assert_kvbm_ok(
        kvbm_layout_block_regions(kvbm_cache_layout(cache, KVBM_TIER_G1), id, regions, 8, &n));
    for (size_t r = 0; r < n; r++) {
        memcpy(tensor + regions[r].offset, pattern + done, regions[r].bytes);
        done += regions[r].bytes;
    }
    free(pattern);
    assert_kvbm_ok(kvbm_cache_register(cache, &id, &h, 1, NULL, &out));
    assert_kvbm_ok(kvbm_cache_release(cache, &out, 1));
    uint32_t two[2];
    assert_kvbm_ok(kvbm_cache_allocate(cache, 2, two, NULL)); /* evicts block 5 */
    assert_kvbm_ok(kvbm_cache_sync(cache));
    uint32_t g2_id;
    size_t found;
    kvbm_manager_t *g2 = kvbm_cache_manager(cache, KVBM_TIER_G2);
    assert_kvbm_ok(kvbm_manager_scan(g2, &h, 1, false, &g2_id, &found));
    assert_int_equal(found, 1);
    assert_true(block_holds(cache, KVBM_TIER_G2, g2_id, h));
    assert_kvbm_ok(kvbm_manager_release(g2, &g2_id, 1));
    assert_kvbm_ok(kvbm_cache_release(cache, two, 2));
    kvbm_cache_destroy(cache);
    free(tensor); /* still ours: the cache did not free it */
    kvbm_backend_destroy(backend);
}

typedef struct allocate_call {
    fixture_t *f;
    uint32_t id;
    bool offload_done_on_return;
} allocate_call_t;

static void *allocate_without_ordering(void *arg)
{
    allocate_call_t *call = arg;
    if (kvbm_cache_allocate(call->f->cache, 1, &call->id, NULL) == KVBM_OK)
        call->offload_done_on_return =
            kvbm_manager_contains(kvbm_cache_manager(call->f->cache, KVBM_TIER_G2), 88);
    return NULL;
}

static void without_engine_stream_or_fence_allocate_waits_for_offloads(void **state)
{
    /* Rule 2 when the caller gives the cache no way to order its writes: the
     * allocation itself returns only once the evicted slab has been read. */
    fixture_t f;
    fixture_open(&f, 1, 4, KVBM_OFFLOAD_WRITE_BACK, false);
    compute_block(&f, 88);
    assert_kvbm_ok(test_stream_hold(f.cache->d2h, true));
    allocate_call_t call = {.f = &f};
    pthread_t thread;
    assert_int_equal(pthread_create(&thread, NULL, allocate_without_ordering, &call), 0);
    /* Give a wrongly non-waiting allocate time to return early; the check
     * below does not depend on how long this is. */
    struct timespec pause = {0, 50 * 1000 * 1000};
    nanosleep(&pause, NULL);
    assert_kvbm_ok(test_stream_hold(f.cache->d2h, false));
    assert_int_equal(pthread_join(thread, NULL), 0);
    assert_true(call.offload_done_on_return);
    assert_kvbm_ok(kvbm_cache_release(f.cache, &call.id, 1));
    fixture_close(&f);
}

static void refused_request_leaves_eviction_order_untouched(void **state)
{
    fixture_t f;
    fixture_open(&f, 3, 4, KVBM_OFFLOAD_WRITE_BACK, true);
    compute_block(&f, 101);
    compute_block(&f, 102);
    compute_block(&f, 103); /* inactive, oldest first: 101, 102, 103 */
    const uint64_t request[4] = {102, 900, 901, 902};
    uint32_t ids[4];
    kvbm_cache_match_result_t r;
    /* 102 hits, but G1 cannot also take three new blocks. */
    assert_kvbm_status(kvbm_cache_acquire(f.cache, request, 4, ids, &r, NULL), KVBM_ERR_NO_BLOCKS);
    kvbm_manager_t *g1 = kvbm_cache_manager(f.cache, KVBM_TIER_G1);
    assert_pools(g1, 0, 0, 3);
    /* Had 102 been taken and given back, it would now be evicted last. */
    uint32_t id;
    assert_kvbm_ok(kvbm_cache_allocate(f.cache, 1, &id, NULL));
    assert_false(kvbm_manager_contains(g1, 101));
    assert_kvbm_ok(kvbm_cache_release(f.cache, &id, 1));
    assert_kvbm_ok(kvbm_cache_allocate(f.cache, 2, ids, NULL));
    assert_false(kvbm_manager_contains(g1, 102));
    assert_true(kvbm_manager_contains(g1, 103));
    assert_kvbm_ok(kvbm_cache_release(f.cache, ids, 2));
    fixture_close(&f);
}

static void repeated_hash_fits_and_a_refused_acquire_changes_nothing(void **state)
{
    fixture_t f;
    fixture_open(&f, 2, 4, KVBM_OFFLOAD_WRITE_BACK, true);
    kvbm_manager_t *g1 = kvbm_cache_manager(f.cache, KVBM_TIER_G1);
    compute_block(&f, 7); /* h */
    compute_block(&f, 8); /* y: both inactive */
    const uint64_t request[3] = {7, 7, 9};
    uint32_t ids[3];
    kvbm_cache_match_result_t r;
    /* [h, h, x] takes one inactive block (h, twice) and needs one more: y's. */
    assert_kvbm_ok(kvbm_cache_acquire(f.cache, request, 3, ids, &r, NULL));
    assert_int_equal(r.g1, 2);
    assert_int_equal(ids[0], ids[1]);
    assert_kvbm_ok(kvbm_cache_release(f.cache, ids, 3));
    assert_kvbm_ok(kvbm_cache_sync(f.cache));
    assert_pools(g1, 1, 0, 1); /* h cached; x's block was never registered */

    /* Now only h is evictable and the caller holds the other block: the
     * request does not fit, and the refusal must change nothing, counters
     * and h's place included. */
    uint32_t held;
    assert_kvbm_ok(kvbm_cache_allocate(f.cache, 1, &held, NULL));
    kvbm_manager_metrics_t before, after;
    kvbm_manager_metrics(g1, &before);
    assert_kvbm_status(kvbm_cache_acquire(f.cache, request, 3, ids, &r, NULL), KVBM_ERR_NO_BLOCKS);
    kvbm_manager_metrics(g1, &after);
    assert_memory_equal(&before, &after, sizeof(before));
    assert_pools(g1, 0, 1, 1);
    assert_kvbm_ok(kvbm_cache_release(f.cache, &held, 1));
    fixture_close(&f);
}

static void huge_counts_are_refused_before_any_size_is_computed(void **state)
{
    fixture_t f;
    fixture_open(&f, 4, 4, KVBM_OFFLOAD_WRITE_BACK, true);
    uint32_t ids[4];
    const size_t counts[] = {SIZE_MAX, ((size_t)1 << 62) + 1, SIZE_MAX / sizeof(uint32_t) + 1, 5};
    for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++)
        assert_kvbm_status(kvbm_cache_allocate(f.cache, counts[i], ids, NULL), KVBM_ERR_NO_BLOCKS);
    assert_pools(kvbm_cache_manager(f.cache, KVBM_TIER_G1), 4, 0, 0);
    assert_kvbm_ok(kvbm_cache_allocate(f.cache, 4, ids, NULL));
    assert_kvbm_ok(kvbm_cache_release(f.cache, ids, 4));
    fixture_close(&f);
}

static void write_through_copies_a_repeated_hash_once_when_ids_out_is_ids(void **state)
{
    /* The README's pattern registers in place (ids_out == ids). Registering
     * [h, h] keeps one block for h: one copy to G2, not two. */
    fixture_t f;
    fixture_open(&f, 4, 4, KVBM_OFFLOAD_WRITE_THROUGH, true);
    uint32_t ids[2];
    const uint64_t hashes[2] = {55, 55};
    assert_kvbm_ok(kvbm_cache_allocate(f.cache, 2, ids, NULL));
    uint32_t first = ids[0];
    assert_kvbm_ok(engine_write(&f.engine, f.cache, ids[0], 55));
    assert_kvbm_ok(engine_write(&f.engine, f.cache, ids[1], 55));
    assert_kvbm_ok(kvbm_cache_register(f.cache, ids, hashes, 2, NULL, ids));
    assert_int_equal(ids[0], first);
    assert_int_equal(ids[1], first);
    assert_kvbm_ok(engine_finish(&f.engine));
    assert_kvbm_ok(kvbm_cache_sync(f.cache));
    kvbm_cache_metrics_t m;
    kvbm_cache_metrics(f.cache, &m);
    assert_int_equal(m.offloads, 1);
    assert_int_equal(m.copy_batches, 1);
    kvbm_manager_t *g2 = kvbm_cache_manager(f.cache, KVBM_TIER_G2);
    assert_pools(g2, 3, 0, 1);
    kvbm_manager_metrics_t g2m;
    kvbm_manager_metrics(g2, &g2m);
    assert_int_equal(g2m.dedups, 0);
    assert_kvbm_ok(kvbm_cache_release(f.cache, ids, 2));
    fixture_close(&f);
}

/* Runs a workload of one-block requests, half of them for 16 hot hashes
 * and half for hashes seen once, on a cache with G2 admission, registering
 * in place (ids_out == ids) or into a separate array; returns the cache's
 * counters and how many registrations were deduplicated. */
static kvbm_cache_metrics_t admission_workload(bool in_place, uint64_t *dedups_out)
{
    kvbm_backend_config_t bc = KVBM_BACKEND_CONFIG_INIT;
    bc.kind = TEST_BACKEND_KIND;
    kvbm_backend_t *backend;
    assert_kvbm_ok(kvbm_backend_create(&bc, &backend));
    kvbm_cache_config_t cc = KVBM_CACHE_CONFIG_INIT;
    cc.backend = backend;
    cc.layout.num_blocks = 8;
    cc.layout.num_layers = 1;
    cc.layout.tokens_per_block = 1;
    cc.layout.inner_dim = 8;
    cc.g2_blocks = 64;
    cc.offload_admission = true;
    kvbm_cache_t *cache;
    assert_kvbm_ok(kvbm_cache_create(&cc, &cache));
    uint64_t dedups = 0, state = 12345;
    const kvbm_register_opts_t opts = {.request_blocks = 1, .first_position = 0};
    for (uint64_t round = 0; round < 4000; round++) {
        state = state * 6364136223846793005u + 1442695040888963407u;
        const uint64_t hash = (state >> 63) != 0 ? 1 + (state >> 40) % 16 : 1000 + round;
        uint32_t id, separate;
        uint32_t *out = in_place ? &id : &separate;
        assert_kvbm_ok(kvbm_cache_allocate(cache, 1, &id, NULL));
        const uint32_t allocated = id;
        assert_kvbm_ok(kvbm_cache_register(cache, &id, &hash, 1, &opts, out));
        dedups += *out != allocated;
        assert_kvbm_ok(kvbm_cache_release(cache, out, 1));
    }
    assert_kvbm_ok(kvbm_cache_sync(cache));
    kvbm_cache_metrics_t m;
    kvbm_cache_metrics(cache, &m);
    kvbm_cache_destroy(cache);
    kvbm_backend_destroy(backend);
    *dedups_out = dedups;
    return m;
}

static void admission_learns_alike_when_ids_out_is_ids(void **state)
{
    /* A deduplicated block is one more use of the block that holds the hash,
     * not a new registration on it: registering in place must not make the
     * filter forget that the hot hashes come back. */
    uint64_t dedups_apart = 0, dedups_in_place = 0;
    kvbm_cache_metrics_t apart = admission_workload(false, &dedups_apart);
    kvbm_cache_metrics_t in_place = admission_workload(true, &dedups_in_place);
    assert_true(dedups_apart > 100);
    assert_int_equal(dedups_in_place, dedups_apart);
    assert_true(apart.offload_refused > 0); /* the filter refuses something */
    assert_int_equal(in_place.offload_refused, apart.offload_refused);
    assert_int_equal(in_place.offloads, apart.offloads);
}

static void bad_arguments_are_refused(void **state)
{
    fixture_t f;
    fixture_open(&f, 2, 2, KVBM_OFFLOAD_WRITE_BACK, false);
    kvbm_cache_t *none = NULL;
    kvbm_cache_config_t cc = KVBM_CACHE_CONFIG_INIT;
    assert_kvbm_status(kvbm_cache_create(&cc, &none), KVBM_ERR_INVALID_ARG); /* no backend */
    cc.backend = f.backend;
    cc.layout.num_blocks = 0;
    assert_kvbm_status(kvbm_cache_create(&cc, &none), KVBM_ERR_INVALID_ARG);
    assert_null(none);
    /* G2 admission filters write-back offloads; with write-through it would
     * silently do nothing, so the combination is refused. */
    kvbm_cache_config_t through = KVBM_CACHE_CONFIG_INIT;
    through.backend = f.backend;
    through.layout.num_blocks = 4;
    through.layout.num_layers = 2;
    through.layout.tokens_per_block = 4;
    through.layout.inner_dim = 64;
    through.g2_blocks = 4;
    through.offload_mode = KVBM_OFFLOAD_WRITE_THROUGH;
    through.offload_admission = true;
    assert_kvbm_status(kvbm_cache_create(&through, &none), KVBM_ERR_INVALID_ARG);
    assert_null(none);
    /* With no G2 it would do nothing either, and a keep ratio without it
     * would be ignored: both were accepted without a word. */
    through.offload_mode = KVBM_OFFLOAD_WRITE_BACK;
    through.g2_blocks = 0;
    assert_kvbm_status(kvbm_cache_create(&through, &none), KVBM_ERR_INVALID_ARG);
    through.g2_blocks = 4;
    through.offload_admission = false;
    through.admission_keep_ratio = 0.5;
    assert_kvbm_status(kvbm_cache_create(&through, &none), KVBM_ERR_INVALID_ARG);
    assert_null(none);
    through.offload_admission = true; /* the same config is fine otherwise */
    assert_kvbm_ok(kvbm_cache_create(&through, &none));
    kvbm_cache_destroy(none);
    none = NULL;
    through.admission_keep_ratio = NAN; /* refused by the filter, cleanly */
    assert_kvbm_status(kvbm_cache_create(&through, &none), KVBM_ERR_INVALID_ARG);
    assert_null(none);
    uint32_t ids[3];
    assert_kvbm_status(kvbm_cache_allocate(f.cache, 3, ids, NULL), KVBM_ERR_NO_BLOCKS);
    assert_kvbm_status(kvbm_cache_check(f.cache, (const uint32_t[]){5}, 1), KVBM_ERR_OUT_OF_RANGE);
    void *addr;
    assert_kvbm_status(kvbm_cache_block_address(f.cache, 2, 0, 0, &addr), KVBM_ERR_OUT_OF_RANGE);
    assert_kvbm_ok(kvbm_cache_block_address(f.cache, 1, 1, 1, &addr));
    assert_pools(kvbm_cache_manager(f.cache, KVBM_TIER_G1), 2, 0, 0);
    kvbm_cache_destroy(NULL);
    fixture_close(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(eviction_offloads_and_match_onboards),
        cmocka_unit_test(g2_is_inclusive_and_onboarded_blocks_are_not_copied_again),
        cmocka_unit_test(g2_smaller_than_one_allocation_offloads_in_parts),
        cmocka_unit_test(write_through_copies_at_registration),
        cmocka_unit_test(failed_offload_caches_nothing_and_loses_no_block),
        cmocka_unit_test(failed_onboard_is_reported_and_withdrawn),
        cmocka_unit_test(concurrent_matches_share_one_onboarding),
        cmocka_unit_test(rule1_offload_waits_for_engine_writes),
        cmocka_unit_test(rule2_new_owner_waits_for_offload),
        cmocka_unit_test(rule3_g2_source_is_held_until_read),
        cmocka_unit_test(events_and_metrics_name_their_tier),
        cmocka_unit_test(events_come_one_batch_per_call_and_follow_offloads),
        cmocka_unit_test(g1_can_bind_the_engines_own_memory),
        cmocka_unit_test(without_engine_stream_or_fence_allocate_waits_for_offloads),
        cmocka_unit_test(refused_request_leaves_eviction_order_untouched),
        cmocka_unit_test(repeated_hash_fits_and_a_refused_acquire_changes_nothing),
        cmocka_unit_test(huge_counts_are_refused_before_any_size_is_computed),
        cmocka_unit_test(write_through_copies_a_repeated_hash_once_when_ids_out_is_ids),
        cmocka_unit_test(admission_learns_alike_when_ids_out_is_ids),
        cmocka_unit_test(bad_arguments_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
