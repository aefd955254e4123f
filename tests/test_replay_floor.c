/*
 * The replay floor (bench/floor): the benchmark reference must give the
 * contract's counts, or its speed means nothing. Pinned on the self-check
 * table of shared/REPLAY.md and, count for count, against kvbm's own replay
 * core on random traces built to hit every rule (oversize requests, hashes
 * repeated within a request, registrations that deduplicate onto blocks the
 * prefix match stopped short of, evictions of hashes the request needs).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "floor/replay_floor.h"
#include "kvbm_test.h"
#include "replay.h"
#include "trace.h"

static void floor_gives_the_self_check_table_on_the_shared_trace(void **state)
{
    const char *source = getenv("KVBM_SOURCE_DIR");
    assert_non_null(source);
    char path[512], error[300];
    snprintf(path, sizeof(path), "%s/data/mooncake/synthetic_trace.jsonl", source);
    trace_t trace;
    assert_kvbm_ok(trace_load(path, 0, 0, &trace, error, sizeof(error)));
    /* shared/REPLAY.md, LRU, G1 only: C1, g1_hits, g1_evictions. */
    const struct {
        uint32_t c1;
        uint64_t g1_hits, g1_evictions;
    } rows[] = {{1000, 10252, 110625}, {5859, 37703, 78315}, {30000, 76077, 15800}};
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        replay_floor_t *floor = replay_floor_create(rows[i].c1);
        assert_non_null(floor);
        for (size_t r = 0; r < trace.requests; r++)
            replay_floor_request(floor, trace.hashes + trace.offsets[r],
                                 trace.offsets[r + 1] - trace.offsets[r]);
        const floor_counts_t *c = replay_floor_counts(floor);
        assert_int_equal(c->requests, 3993);
        assert_int_equal(c->blocks, 121877);
        assert_int_equal(c->g1_hits, rows[i].g1_hits);
        assert_int_equal(c->g1_evictions, rows[i].g1_evictions);
        assert_int_equal(c->misses, c->blocks - c->g1_hits);
        replay_floor_destroy(floor);
    }
    trace_free(&trace);
}

static uint64_t next_random(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

/* A request: a prefix of one of a few chains (so prefixes are shared), a
 * tail of ids drawn from a small pool (so later hashes are often registered
 * while an earlier one is not: deduplication), now and then a repeated id,
 * and now and then more blocks than G1 holds. */
static size_t random_request(uint64_t *rng, uint32_t g1, uint64_t *hashes, size_t room)
{
    size_t n = 1 + next_random(rng) % (g1 + g1 / 4 + 2);
    if (n > room)
        n = room;
    uint64_t chain = next_random(rng) % 4;
    size_t prefix = next_random(rng) % (n + 1);
    for (size_t i = 0; i < n; i++) {
        if (i < prefix)
            hashes[i] = chain * 1000 + i;
        else
            hashes[i] = 100000 + next_random(rng) % (2 * g1 + 1);
        if (i > 0 && next_random(rng) % 16 == 0)
            hashes[i] = hashes[next_random(rng) % i];
    }
    return n;
}

static void floor_counts_equal_kvbm_replay_on_random_traces(void **state)
{
    const uint32_t capacities[] = {1, 2, 3, 5, 8, 16, 64};
    uint64_t hashes[128];
    for (size_t t = 0; t < sizeof(capacities) / sizeof(capacities[0]); t++) {
        uint32_t g1 = capacities[t];
        replay_config_t config = {.g1_blocks = g1,
                                  .g1_policy = kvbm_policy_lru(),
                                  .g2_policy = kvbm_policy_lru(),
                                  .policy_config = KVBM_POLICY_CONFIG_INIT};
        replay_t *replay = NULL;
        assert_kvbm_ok(replay_create(&config, &replay));
        replay_floor_t *floor = replay_floor_create(g1);
        assert_non_null(floor);
        uint64_t rng = 0x9E3779B97F4A7C15ULL + t;
        for (int r = 0; r < 3000; r++) {
            size_t n = random_request(&rng, g1, hashes, sizeof(hashes) / sizeof(hashes[0]));
            assert_kvbm_ok(replay_request(replay, hashes, n));
            replay_floor_request(floor, hashes, n);
        }
        replay_counts_t k;
        replay_get_counts(replay, &k);
        const floor_counts_t *f = replay_floor_counts(floor);
        assert_int_equal(f->requests, k.requests);
        assert_int_equal(f->blocks, k.blocks);
        assert_int_equal(f->g1_hits, k.g1_hits);
        assert_int_equal(f->misses, k.misses);
        assert_int_equal(f->dedup, k.dedup);
        assert_int_equal(f->oversize, k.oversize);
        assert_int_equal(f->g1_evictions, k.g1_evictions);
        /* The traces reach every rule the floor implements (one block
         * cannot deduplicate: a request of one either hits or misses). */
        assert_true(k.g1_hits > 0 && k.g1_evictions > 0 && k.oversize > 0);
        assert_true(g1 < 2 || k.dedup > 0);
        replay_floor_destroy(floor);
        replay_destroy(replay);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(floor_gives_the_self_check_table_on_the_shared_trace),
        cmocka_unit_test(floor_counts_equal_kvbm_replay_on_random_traces),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
