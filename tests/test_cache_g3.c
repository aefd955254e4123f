/*
 * The tiered cache with its disk tier (G3) on the asynchronous CPU backend:
 * G2 victims written to G3 and read back verified, restarts warm with the
 * same namespace and cold with another, blocks corrupted in the file and
 * every fault of the I/O layer never served (nor registered in G1) but
 * counted and reported by kvbm_cache_check(), the free-space floor, events
 * with the DISK tier, and the configuration errors.
 */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <cmocka.h>

#include "cache/internal.h"
#include "cache_test_util.h"
#include "disk_test_util.h"
#include "kvbm_test.h"

#define G1 4
#define G2 4
#define G3 64

/* Hashes stored and removed per medium (GPU, CPU, DISK), by the events. */
typedef struct tier_events {
    size_t stored[3], removed[3];
} tier_events_t;

typedef struct fixture {
    kvbm_backend_t *backend;
    test_engine_t engine;
    kvbm_cache_t *cache;
    char path[128];
    tier_events_t events;
    kvbm_event_batcher_t *batcher; /* the cache's; its sink counts into events */
} fixture_t;

static void count_events(void *ctx, const kvbm_event_record_t *records, size_t count)
{
    tier_events_t *t = ctx;
    for (size_t i = 0; i < count; i++) {
        if (records[i].kind == KVBM_EVENT_STORED)
            t->stored[records[i].medium] += records[i].count;
        else if (records[i].kind == KVBM_EVENT_REMOVED)
            t->removed[records[i].medium] += records[i].count;
    }
}

static kvbm_status_t cache_open(fixture_t *f, const char *model, uint64_t min_free)
{
    kvbm_disk_config_t disk = KVBM_DISK_CONFIG_INIT;
    disk.path = f->path;
    disk.capacity_blocks = G3;
    disk.min_free_bytes = min_free;
    disk.model_id = model;
    disk.staging_blocks = 8;
    kvbm_cache_config_t cc = KVBM_CACHE_CONFIG_INIT;
    cc.backend = f->backend;
    cc.layout.num_blocks = G1;
    cc.layout.num_layers = 2;
    cc.layout.tokens_per_block = 4;
    cc.layout.inner_dim = 64;
    cc.g2_blocks = G2;
    cc.g3 = &disk;
    cc.engine_stream = f->engine.stream;
    if (f->batcher == NULL) {
        kvbm_status_t status = kvbm_event_batcher_create(count_events, &f->events, &f->batcher);
        if (status != KVBM_OK)
            return status;
    }
    cc.events_batcher = f->batcher;
    return kvbm_cache_create(&cc, &f->cache);
}

static void fixture_open(fixture_t *f, const char *path, const char *model, uint64_t min_free)
{
    memset(f, 0, sizeof(*f));
    snprintf(f->path, sizeof(f->path), "%s", path != NULL ? path : disk_test_path());
    kvbm_backend_config_t bc = KVBM_BACKEND_CONFIG_INIT;
    bc.kind = KVBM_BACKEND_CPU;
    assert_kvbm_ok(kvbm_backend_create(&bc, &f->backend));
    f->engine.backend = f->backend;
    assert_kvbm_ok(kvbm_stream_create(f->backend, &f->engine.stream));
    assert_kvbm_ok(kvbm_fence_create(f->backend, &f->engine.done));
    assert_kvbm_ok(cache_open(f, model, min_free));
}

/* Every tier adds up with nothing held: no block lost or double-owned. */
static void assert_nothing_held(fixture_t *f)
{
    assert_kvbm_ok(kvbm_cache_sync(f->cache));
    for (kvbm_tier_t tier = KVBM_TIER_G1; tier <= KVBM_TIER_G3; tier++) {
        kvbm_pool_counts_t c;
        kvbm_manager_counts(kvbm_cache_manager(f->cache, tier), &c);
        assert_int_equal(c.active, 0);
        assert_int_equal(c.reset + c.inactive, c.total);
    }
}

static void fixture_close(fixture_t *f, bool remove_file)
{
    assert_nothing_held(f);
    kvbm_cache_destroy(f->cache);
    kvbm_event_batcher_destroy(f->batcher);
    kvbm_fence_destroy(f->engine.done);
    kvbm_stream_destroy(f->engine.stream);
    kvbm_backend_destroy(f->backend);
    if (remove_file)
        disk_test_remove(f->path);
}

/* Computes one block. Each step waits for its copies and writes (as the
 * replay's sequential model does), so which blocks are evictable, and so
 * where every hash ends up, does not depend on timing. */
static void compute_block(fixture_t *f, uint64_t hash)
{
    uint32_t id, out;
    assert_kvbm_ok(kvbm_cache_allocate(f->cache, 1, &id, NULL));
    assert_kvbm_ok(engine_write(&f->engine, f->cache, id, hash));
    assert_kvbm_ok(kvbm_cache_register(f->cache, &id, &hash, 1, NULL, &out));
    assert_kvbm_ok(engine_finish(&f->engine));
    assert_kvbm_ok(kvbm_cache_release(f->cache, &out, 1));
    assert_kvbm_ok(kvbm_cache_sync(f->cache));
}

/* Computes @p hash, then enough fillers that it leaves G1 and G2 for G3. */
static void push_to_g3(fixture_t *f, uint64_t hash, uint64_t fillers_from)
{
    compute_block(f, hash);
    for (uint64_t i = 0; i < G1 + G2; i++)
        compute_block(f, fillers_from + i);
    assert_kvbm_ok(kvbm_cache_sync(f->cache));
}

typedef struct served {
    kvbm_cache_match_result_t r;
    kvbm_status_t check;
    bool right; /* the block holds the hash's bytes */
} served_t;

/* Matches one hash; says where it came from and whether the data is right. */
static served_t match_one(fixture_t *f, uint64_t hash)
{
    served_t s = {.check = KVBM_ERR_NOT_FOUND};
    uint32_t id;
    kvbm_fence_t *ready;
    assert_kvbm_ok(kvbm_fence_create(f->backend, &ready));
    assert_kvbm_ok(kvbm_cache_match(f->cache, &hash, 1, &id, &s.r, ready));
    assert_kvbm_ok(kvbm_fence_wait(ready));
    kvbm_fence_destroy(ready);
    if (s.r.g1 + s.r.onboarded == 1) {
        s.check = kvbm_cache_check(f->cache, &id, 1);
        s.right = block_holds(f->cache, KVBM_TIER_G1, id, hash);
        assert_kvbm_ok(kvbm_cache_release(f->cache, &id, 1));
    }
    return s;
}

static bool in_tier(fixture_t *f, kvbm_tier_t tier, uint64_t hash)
{
    return kvbm_manager_contains(kvbm_cache_manager(f->cache, tier), hash);
}

/* ------------------------------------------------------------------ data */

static void g2_victims_go_to_g3_and_come_back_verified(void **state)
{
    fixture_t f;
    fixture_open(&f, NULL, "m", 0);
    push_to_g3(&f, 7, 100);
    assert_false(in_tier(&f, KVBM_TIER_G1, 7));
    assert_false(in_tier(&f, KVBM_TIER_G2, 7));
    assert_true(in_tier(&f, KVBM_TIER_G3, 7));
    served_t s = match_one(&f, 7);
    assert_int_equal(s.r.g1, 0);
    assert_int_equal(s.r.onboarded, 1);
    assert_int_equal(s.r.g3, 1);
    assert_kvbm_ok(s.check);
    assert_true(s.right);
    assert_true(in_tier(&f, KVBM_TIER_G1, 7));
    assert_true(in_tier(&f, KVBM_TIER_G3, 7)); /* inclusive: still on disk */
    kvbm_cache_metrics_t m;
    kvbm_cache_metrics(f.cache, &m);
    assert_true(m.g3_offloads >= 1);
    assert_int_equal(m.g3_hits, 1);
    assert_int_equal(m.g3_onboards, 1);
    assert_int_equal(m.g3_failed_loads, 0);
    assert_non_null(kvbm_cache_g3_engine(f.cache));
    fixture_close(&f, true);
}

static void a_request_continues_from_g2_into_g3(void **state)
{
    fixture_t f;
    fixture_open(&f, NULL, "m", 0);
    /* 1, 2 end up in G3; 3 (computed later) in G2. */
    push_to_g3(&f, 1, 100);
    push_to_g3(&f, 2, 200);
    compute_block(&f, 3);
    for (uint64_t i = 0; i < G1; i++)
        compute_block(&f, 300 + i);
    assert_kvbm_ok(kvbm_cache_sync(f.cache));
    assert_true(in_tier(&f, KVBM_TIER_G2, 3));
    /* [3, 1, 2]: G2 serves 3, then G3 the rest, registered in that order. */
    const uint64_t hashes[] = {3, 1, 2};
    uint32_t ids[3];
    kvbm_cache_match_result_t r;
    kvbm_fence_t *ready;
    assert_kvbm_ok(kvbm_fence_create(f.backend, &ready));
    assert_kvbm_ok(kvbm_cache_acquire(f.cache, hashes, 3, ids, &r, ready));
    assert_kvbm_ok(kvbm_fence_wait(ready));
    kvbm_fence_destroy(ready);
    assert_int_equal(r.onboarded, 3);
    assert_int_equal(r.g3, 2);
    assert_kvbm_ok(kvbm_cache_check(f.cache, ids, 3));
    for (int i = 0; i < 3; i++)
        assert_true(block_holds(f.cache, KVBM_TIER_G1, ids[i], hashes[i]));
    assert_kvbm_ok(kvbm_cache_release(f.cache, ids, 3));
    fixture_close(&f, true);
}

static void restart_comes_back_warm_and_another_model_starts_cold(void **state)
{
    fixture_t f;
    fixture_open(&f, NULL, "model-a", 0);
    for (uint64_t h = 1; h <= 3; h++)
        push_to_g3(&f, h, 100 * h);
    char path[128];
    snprintf(path, sizeof(path), "%s", f.path);
    fixture_close(&f, false);

    fixture_open(&f, path, "model-a", 0);
    assert_int_equal(f.events.stored[KVBM_MEDIUM_DISK] >= 3, 1); /* recovered blocks announced */
    for (uint64_t h = 1; h <= 3; h++) {
        assert_true(in_tier(&f, KVBM_TIER_G3, h));
        served_t s = match_one(&f, h);
        assert_int_equal(s.r.g3, 1);
        assert_kvbm_ok(s.check);
        assert_true(s.right);
    }
    kvbm_cache_metrics_t m;
    kvbm_cache_metrics(f.cache, &m);
    assert_int_equal(m.g3_hits_from_file, 3);
    fixture_close(&f, false);

    fixture_open(&f, path, "model-b", 0); /* another namespace: nothing served */
    for (uint64_t h = 1; h <= 3; h++) {
        assert_false(in_tier(&f, KVBM_TIER_G3, h));
        assert_int_equal(match_one(&f, h).r.onboarded, 0);
    }
    fixture_close(&f, true);
}

/* ------------------------------------------------------------------ faults */

/* The file offset of a hash's G3 block (it must be in G3). */
static uint64_t slot_offset(fixture_t *f, uint64_t hash)
{
    kvbm_manager_t *g3 = kvbm_cache_manager(f->cache, KVBM_TIER_G3);
    uint32_t id;
    size_t found = 0;
    assert_kvbm_ok(kvbm_manager_scan(g3, &hash, 1, false, &id, &found));
    assert_int_equal(found, 1);
    assert_kvbm_ok(kvbm_manager_release(g3, &id, 1));
    const kvbm__disk_geometry_t *g = kvbm__disk_store_geometry(f->cache->g3_store);
    return kvbm__disk_slot_offset(g, kvbm__disk_tier_slot(f->cache->g3, id));
}

/* A failed G3 load: reported by check, never registered in G1, withdrawn
 * from G3, counted; the next match misses. */
static void assert_failed_load(fixture_t *f, uint64_t hash, uint64_t failed_before)
{
    served_t s = match_one(f, hash);
    assert_int_equal(s.r.g3, 1);
    assert_kvbm_status(s.check, KVBM_ERR_COPY_FAILED);
    assert_false(in_tier(f, KVBM_TIER_G1, hash));
    assert_false(in_tier(f, KVBM_TIER_G3, hash));
    kvbm_cache_metrics_t m;
    kvbm_cache_metrics(f->cache, &m);
    assert_int_equal(m.g3_failed_loads, failed_before + 1);
    assert_int_equal(match_one(f, hash).r.onboarded, 0);
}

static void blocks_corrupted_in_the_file_are_never_served(void **state)
{
    fixture_t f;
    fixture_open(&f, NULL, "m", 0);
    push_to_g3(&f, 11, 100);
    push_to_g3(&f, 12, 200);
    push_to_g3(&f, 13, 300);
    int fd = open(f.path, O_RDWR);
    assert_true(fd >= 0);
    /* A payload bit of 11, a header byte of 12, while the cache runs. */
    const uint64_t offsets[] = {slot_offset(&f, 11) + KVBM__DISK_HEADER_BYTES + 77,
                                slot_offset(&f, 12) + 9};
    for (int i = 0; i < 2; i++) {
        uint8_t byte;
        assert_int_equal(pread(fd, &byte, 1, (off_t)offsets[i]), 1);
        byte ^= 0x04;
        assert_int_equal(pwrite(fd, &byte, 1, (off_t)offsets[i]), 1);
    }
    assert_int_equal(fsync(fd), 0);
    close(fd);
    assert_failed_load(&f, 11, 0);
    assert_failed_load(&f, 12, 1);
    served_t s = match_one(&f, 13); /* untouched */
    assert_kvbm_ok(s.check);
    assert_true(s.right);
    kvbm_disk_metrics_t d;
    assert_kvbm_ok(kvbm_cache_disk_metrics(f.cache, &d));
    assert_int_equal(d.loads_corrupt, 2);
    assert_int_equal(d.loads, 1);
    fixture_close(&f, true);
}

typedef struct fault_plan {
    kvbm__disk_fault_t fault;
    kvbm__disk_op_t op;
} fault_plan_t;

static kvbm__disk_fault_t planned_fault(void *ctx, const kvbm__disk_req_t *req)
{
    const fault_plan_t *plan = ctx;
    return req->op == plan->op ? plan->fault : KVBM__DISK_FAULT_NONE;
}

static void write_faults_skip_the_store_and_lose_nothing(void **state)
{
    const kvbm__disk_fault_t faults[] = {KVBM__DISK_FAULT_EIO, KVBM__DISK_FAULT_ENOSPC,
                                         KVBM__DISK_FAULT_SHORT};
    for (size_t i = 0; i < 3; i++) {
        fixture_t f;
        fixture_open(&f, NULL, "m", 0);
        fault_plan_t plan = {.fault = faults[i], .op = KVBM__DISK_WRITE};
        kvbm__disk_store_set_fault(f.cache->g3_store, planned_fault, &plan);
        push_to_g3(&f, 21, 100);
        kvbm__disk_store_set_fault(f.cache->g3_store, NULL, NULL);
        assert_false(in_tier(&f, KVBM_TIER_G3, 21)); /* never published */
        assert_int_equal(match_one(&f, 21).r.onboarded, 0);
        kvbm_cache_metrics_t m;
        kvbm_cache_metrics(f.cache, &m);
        assert_int_equal(m.g3_offloads, 0);
        kvbm_disk_metrics_t d;
        assert_kvbm_ok(kvbm_cache_disk_metrics(f.cache, &d));
        assert_true(d.stores_failed >= 1);
        assert_int_equal(d.stores, 0);
        fixture_close(&f, true); /* every G3 block back in the pools */
    }
}

static void a_bit_flipped_on_its_way_to_disk_is_caught_on_read(void **state)
{
    fixture_t f;
    fixture_open(&f, NULL, "m", 0);
    fault_plan_t plan = {.fault = KVBM__DISK_FAULT_FLIP, .op = KVBM__DISK_WRITE};
    kvbm__disk_store_set_fault(f.cache->g3_store, planned_fault, &plan);
    push_to_g3(&f, 31, 100);
    kvbm__disk_store_set_fault(f.cache->g3_store, NULL, NULL);
    assert_true(in_tier(&f, KVBM_TIER_G3, 31)); /* the write itself succeeded */
    assert_failed_load(&f, 31, 0);
    fixture_close(&f, true);
}

static void read_faults_are_failed_loads_never_data(void **state)
{
    const kvbm__disk_fault_t faults[] = {KVBM__DISK_FAULT_EIO, KVBM__DISK_FAULT_SHORT,
                                         KVBM__DISK_FAULT_FLIP};
    fixture_t f;
    fixture_open(&f, NULL, "m", 0);
    for (size_t i = 0; i < 3; i++) {
        uint64_t hash = 41 + i;
        push_to_g3(&f, hash, 100 * (i + 1));
        fault_plan_t plan = {.fault = faults[i], .op = KVBM__DISK_READ};
        kvbm__disk_store_set_fault(f.cache->g3_store, planned_fault, &plan);
        assert_failed_load(&f, hash, i);
        kvbm__disk_store_set_fault(f.cache->g3_store, NULL, NULL);
    }
    kvbm_disk_metrics_t d;
    assert_kvbm_ok(kvbm_cache_disk_metrics(f.cache, &d));
    assert_int_equal(d.loads_failed, 2);
    assert_int_equal(d.loads_corrupt, 1);
    fixture_close(&f, true);
}

static void at_the_free_space_floor_g3_stops_writing(void **state)
{
    fixture_t f;
    fixture_open(&f, NULL, "m", UINT64_MAX / 2);
    push_to_g3(&f, 51, 100);
    assert_false(in_tier(&f, KVBM_TIER_G3, 51));
    kvbm_disk_metrics_t d;
    assert_kvbm_ok(kvbm_cache_disk_metrics(f.cache, &d));
    assert_true(d.stores_skipped_space >= 1);
    assert_int_equal(d.stores, 0);
    fixture_close(&f, true);
}

/* A clear drops G3 too, in the file as well: a restart does not bring back
 * what routers were told is gone. An announce includes DISK. */
static void clear_drops_g3_and_its_file_and_announce_names_disk(void **state)
{
    fixture_t f;
    fixture_open(&f, NULL, "model-c", 0);
    for (uint64_t h = 71; h <= 73; h++)
        push_to_g3(&f, h, 100 * (h - 70));
    assert_kvbm_ok(kvbm_cache_sync(f.cache));
    size_t disk_before = f.events.stored[KVBM_MEDIUM_DISK];
    assert_kvbm_ok(kvbm_cache_announce(f.cache));
    assert_true(f.events.stored[KVBM_MEDIUM_DISK] >= disk_before + 3);
    assert_kvbm_ok(kvbm_cache_clear(f.cache));
    for (uint64_t h = 71; h <= 73; h++)
        assert_false(in_tier(&f, KVBM_TIER_G3, h));
    char path[128];
    snprintf(path, sizeof(path), "%s", f.path);
    fixture_close(&f, false);

    fixture_open(&f, path, "model-c", 0);
    assert_int_equal(f.events.stored[KVBM_MEDIUM_DISK], 0); /* nothing came back */
    for (uint64_t h = 71; h <= 73; h++)
        assert_false(in_tier(&f, KVBM_TIER_G3, h));
    fixture_close(&f, true);
}

/* ------------------------------------------------------------------ interface */

static void events_and_metrics_name_the_disk_tier(void **state)
{
    fixture_t f;
    fixture_open(&f, NULL, "m", 0);
    push_to_g3(&f, 61, 100);
    assert_true(f.events.stored[KVBM_MEDIUM_DISK] >= 1);
    char *text = NULL;
    size_t length = 0;
    FILE *out = open_memstream(&text, &length);
    assert_non_null(out);
    assert_kvbm_ok(kvbm_cache_metrics_prometheus(f.cache, out));
    fclose(out);
    assert_non_null(strstr(text, "kvbm_cache_g3_offloads_total"));
    assert_non_null(strstr(text, "manager=\"g3\""));
    assert_non_null(strstr(text, "kvbm_disk_loads_corrupt_total{tier=\"g3\"}"));
    free(text);
    fixture_close(&f, true);
}

static void bad_g3_configurations_are_refused(void **state)
{
    fixture_t f;
    fixture_open(&f, NULL, "m", 0);
    /* The file is in use by the first cache. */
    kvbm_cache_t *first = f.cache;
    assert_kvbm_status(cache_open(&f, "m", 0), KVBM_ERR_BUSY);
    f.cache = first;
    /* A G3 needs a G2. */
    kvbm_disk_config_t disk = KVBM_DISK_CONFIG_INIT;
    disk.path = "/tmp/unused-g3.bin";
    disk.capacity_blocks = 4;
    kvbm_cache_config_t cc = KVBM_CACHE_CONFIG_INIT;
    cc.backend = f.backend;
    cc.layout.num_blocks = 4;
    cc.layout.num_layers = 1;
    cc.layout.tokens_per_block = 1;
    cc.layout.inner_dim = 64;
    cc.g3 = &disk;
    kvbm_cache_t *cache = NULL;
    assert_kvbm_status(kvbm_cache_create(&cc, &cache), KVBM_ERR_INVALID_ARG);
    assert_null(cache);
    kvbm_disk_metrics_t d;
    assert_kvbm_status(kvbm_cache_disk_metrics(NULL, &d), KVBM_ERR_INVALID_ARG);
    fixture_close(&f, true);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(g2_victims_go_to_g3_and_come_back_verified),
        cmocka_unit_test(a_request_continues_from_g2_into_g3),
        cmocka_unit_test(restart_comes_back_warm_and_another_model_starts_cold),
        cmocka_unit_test(blocks_corrupted_in_the_file_are_never_served),
        cmocka_unit_test(write_faults_skip_the_store_and_lose_nothing),
        cmocka_unit_test(a_bit_flipped_on_its_way_to_disk_is_caught_on_read),
        cmocka_unit_test(read_faults_are_failed_loads_never_data),
        cmocka_unit_test(at_the_free_space_floor_g3_stops_writing),
        cmocka_unit_test(events_and_metrics_name_the_disk_tier),
        cmocka_unit_test(clear_drops_g3_and_its_file_and_announce_names_disk),
        cmocka_unit_test(bad_g3_configurations_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
