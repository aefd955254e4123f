/*
 * libFuzzer harness for the library's API: each input is a configuration
 * and a sequence of manager or tiered-cache calls with arguments drawn from
 * the input, hostile ones included (ids out of range, repeated, in the wrong
 * state; NULL arrays; counts far beyond the capacity; priorities out of
 * range), copy faults and allocation failures injected. After every call it
 * checks the invariants against a model kept here:
 *
 * - manager: the status each call must return, in the order the header
 *   documents its checks; every output (ids, matched lengths, evictions,
 *   dedups); each block's state, reference count and hash; the pools; that
 *   every hash the model holds is found and no other; and that a refused call
 *   changed no counter (refused allocations are themselves counted, so that
 *   one counter is left out).
 * - cache (CPU backend, synchronous): every byte served by a call whose
 *   check succeeds is the block's own; the G1 blocks held are exactly the
 *   ones the harness holds; both tiers' pools add up; a refused call changes
 *   neither tier nor the cache's counters; at the end nothing is held and
 *   every hash G2 holds carries its own bytes.
 *
 * Any violation aborts, which libFuzzer reports with the input. Build and run:
 *   cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DKVBM_BUILD_FUZZ=ON -DKVBM_WITH_CUDA=OFF
 *   cmake --build build-fuzz -j2 --target fuzz_api
 *   build-fuzz/fuzz_api -max_total_time=60 tests/fuzz/corpus/api
 * (scripts/fuzz.sh does this; CI runs it for a minute).
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache_test_util.h"
#include "core/alloc.h"
#include "kvbm/kvbm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

__attribute__((format(printf, 1, 2), noreturn)) static void violated(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "fuzz_api: invariant violated: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    abort();
}

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond))                                                                               \
            violated(__VA_ARGS__);                                                                 \
    } while (0)

/* ------------------------------------------------------------------ input */

typedef struct input {
    const uint8_t *data;
    size_t size, at;
} input_t;

static uint8_t take8(input_t *in)
{
    return in->at < in->size ? in->data[in->at++] : 0;
}

static uint64_t take64(input_t *in)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | take8(in);
    return v;
}

static bool more(const input_t *in)
{
    return in->at < in->size;
}

/* A hash: mostly from a small set (so that hashes repeat, collide and
 * deduplicate), sometimes any 64-bit value. */
static uint64_t take_hash(input_t *in)
{
    uint8_t b = take8(in);
    if (b >= 250)
        return take64(in);
    return (uint64_t)(b % 24) * 0x9e3779b97f4a7c15ULL;
}

static uint64_t next_use_by_hash(void *ctx, uint64_t hash)
{
    (void)ctx;
    return hash % 1009;
}

/* Allocation failure injection: pending while armed and not yet reached. */
static uint64_t alloc_target;

static void arm_alloc_failure(input_t *in)
{
    uint64_t n = 1 + take8(in) % 4;
    kvbm__alloc_fail_nth(n);
    alloc_target = kvbm__alloc_count() + n;
}

static void disarm_alloc_failure(void)
{
    kvbm__alloc_fail_nth(0);
    alloc_target = 0;
}

/* Whether a NO_MEMORY just seen can be the injected failure. */
static bool injected_now(void)
{
    return alloc_target != 0 && kvbm__alloc_count() >= alloc_target;
}

/* ------------------------------------------------------------------ manager model */

#define MAX_BLOCKS 48
#define MAX_ARGS   12

enum { M_FREE, M_MUTABLE, M_REGISTERED, M_WITHDRAWN };

typedef struct model_block {
    int state;
    uint32_t refs; /* all references are the harness's */
    uint64_t hash; /* M_REGISTERED */
} model_block_t;

typedef struct model {
    uint32_t n;
    bool reject; /* duplication policy */
    model_block_t b[MAX_BLOCKS];
    /* hash -> blocks, in registry order (the first is what lookups return) */
    uint64_t hashes[MAX_BLOCKS];
    uint32_t chain[MAX_BLOCKS][MAX_BLOCKS];
    uint32_t chain_len[MAX_BLOCKS];
    uint32_t n_hashes;
} model_t;

static int model_find(const model_t *m, uint64_t hash)
{
    for (uint32_t i = 0; i < m->n_hashes; i++)
        if (m->hashes[i] == hash)
            return (int)i;
    return -1;
}

static uint32_t model_lookup(const model_t *m, uint64_t hash)
{
    int e = model_find(m, hash);
    return e < 0 ? KVBM_BLOCK_NONE : m->chain[e][0];
}

/* Registers hash on a block: a new entry, or (allow policy) a duplicate
 * chained right after the first block, as the manager chains them. */
static void model_add(model_t *m, uint32_t id, uint64_t hash)
{
    int e = model_find(m, hash);
    if (e < 0) {
        e = (int)m->n_hashes++;
        m->hashes[e] = hash;
        m->chain_len[e] = 0;
        m->chain[e][m->chain_len[e]++] = id;
    } else {
        memmove(&m->chain[e][2], &m->chain[e][1], (m->chain_len[e] - 1) * sizeof(uint32_t));
        m->chain[e][1] = id;
        m->chain_len[e]++;
    }
    m->b[id].state = M_REGISTERED;
    m->b[id].hash = hash;
}

/* Takes a block's hash away (eviction, invalidate, reset_inactive). */
static void model_unregister(model_t *m, uint32_t id)
{
    int e = model_find(m, m->b[id].hash);
    CHECK(e >= 0, "model: block %u registered without its hash", id);
    uint32_t at = 0;
    while (m->chain[e][at] != id)
        at++;
    memmove(&m->chain[e][at], &m->chain[e][at + 1], (m->chain_len[e] - at - 1) * sizeof(uint32_t));
    if (--m->chain_len[e] == 0) {
        m->n_hashes--;
        m->hashes[e] = m->hashes[m->n_hashes];
        memcpy(m->chain[e], m->chain[m->n_hashes], sizeof(m->chain[e]));
        m->chain_len[e] = m->chain_len[m->n_hashes];
    }
}

static void model_counts(const model_t *m, size_t *reset, size_t *active, size_t *inactive)
{
    *reset = *active = *inactive = 0;
    for (uint32_t i = 0; i < m->n; i++) {
        if (m->b[i].state == M_FREE)
            (*reset)++;
        else if (m->b[i].refs > 0)
            (*active)++;
        else
            (*inactive)++;
    }
}

/* The manager agrees with the model: pools, and every hash. */
static void check_manager(kvbm_manager_t *manager, const model_t *m, const char *after)
{
    kvbm_pool_counts_t c;
    kvbm_manager_counts(manager, &c);
    size_t reset, active, inactive;
    model_counts(m, &reset, &active, &inactive);
    CHECK(c.total == m->n && c.reset + c.active + c.inactive == c.total,
          "after %s: pools do not add up", after);
    CHECK(c.reset == reset && c.active == active && c.inactive == inactive,
          "after %s: pools %zu/%zu/%zu, model %zu/%zu/%zu", after, c.reset, c.active, c.inactive,
          reset, active, inactive);
    for (uint64_t h = 0; h < 24; h++)
        CHECK(kvbm_manager_contains(manager, h * 0x9e3779b97f4a7c15ULL) ==
                  (model_find(m, h * 0x9e3779b97f4a7c15ULL) >= 0),
              "after %s: hash %llu", after, (unsigned long long)h);
    for (uint32_t i = 0; i < m->n_hashes; i++)
        CHECK(kvbm_manager_contains(manager, m->hashes[i]), "after %s: a hash is lost", after);
}

typedef struct manager_snapshot {
    kvbm_manager_metrics_t metrics;
    kvbm_pool_counts_t counts;
} manager_snapshot_t;

static manager_snapshot_t manager_snapshot(kvbm_manager_t *manager)
{
    manager_snapshot_t s;
    memset(&s, 0, sizeof(s));
    kvbm_manager_metrics(manager, &s.metrics);
    kvbm_manager_counts(manager, &s.counts);
    s.metrics.allocation_failures = 0; /* a refusal is counted: the one change allowed */
    return s;
}

/* Picks a block id: mostly one the model says is in @p state (any state
 * for -1; held for -2), sometimes anything, out of range included. */
static uint32_t pick_id(input_t *in, const model_t *m, int state)
{
    uint8_t b = take8(in);
    if (b >= 224)
        return (uint32_t)(take8(in) % (m->n + 4));
    uint32_t candidates[MAX_BLOCKS], n = 0;
    for (uint32_t i = 0; i < m->n; i++)
        if (state == -1 || (state == -2 && m->b[i].refs > 0) || m->b[i].state == state)
            candidates[n++] = i;
    return n == 0 ? (uint32_t)(b % (m->n + 2)) : candidates[b % n];
}

/* The status register must return, in the manager's order of checks. */
static kvbm_status_t predict_register(const model_t *m, const uint32_t *ids, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        if (ids[i] >= m->n)
            return KVBM_ERR_OUT_OF_RANGE;
        if (m->b[ids[i]].state != M_MUTABLE)
            return KVBM_ERR_BAD_STATE;
        for (size_t j = 0; j < i; j++)
            if (ids[j] == ids[i])
                return KVBM_ERR_BAD_STATE;
    }
    return KVBM_OK;
}

static kvbm_status_t predict_release(const model_t *m, const uint32_t *ids, size_t count)
{
    uint32_t drops[MAX_BLOCKS] = {0};
    for (size_t i = 0; i < count; i++) {
        if (ids[i] >= m->n)
            return KVBM_ERR_OUT_OF_RANGE;
        const model_block_t *b = &m->b[ids[i]];
        if (b->state == M_FREE || b->refs <= drops[ids[i]])
            return KVBM_ERR_NOT_HELD;
        drops[ids[i]]++;
    }
    return KVBM_OK;
}

static void model_take_ref(model_t *m, uint32_t id)
{
    m->b[id].refs++;
}

static void model_drop_ref(model_t *m, uint32_t id)
{
    model_block_t *b = &m->b[id];
    if (--b->refs > 0)
        return;
    if (b->state == M_MUTABLE || b->state == M_WITHDRAWN)
        b->state = M_FREE;
}

static void fuzz_manager(input_t *in)
{
    model_t *m = calloc(1, sizeof(*m));
    CHECK(m != NULL, "out of memory in the harness");
    m->n = 1 + take8(in) % MAX_BLOCKS;
    m->reject = take8(in) & 1;
    const char *const *names = kvbm_policy_names();
    size_t n_policies = 0;
    while (names[n_policies] != NULL)
        n_policies++;
    kvbm_manager_config_t config = KVBM_MANAGER_CONFIG_INIT;
    config.num_blocks = m->n;
    config.duplication = m->reject ? KVBM_DUPLICATION_REJECT : KVBM_DUPLICATION_ALLOW;
    config.policy = kvbm_policy_find(names[take8(in) % n_policies]);
    config.policy_config.next_use = next_use_by_hash;
    kvbm_manager_t *manager = NULL;
    CHECK(kvbm_manager_create(&config, &manager) == KVBM_OK, "create");

    uint32_t ids[MAX_ARGS], out[MAX_BLOCKS + 4];
    uint64_t hashes[MAX_ARGS];
    kvbm_evicted_t evicted[MAX_BLOCKS + 4];
    for (int steps = 0; more(in) && steps < 400; steps++) {
        uint8_t op = take8(in) % 12;
        size_t count = take8(in) % MAX_ARGS;
        manager_snapshot_t before = manager_snapshot(manager);
        kvbm_status_t status = KVBM_OK, expected = KVBM_OK;
        const char *name = "?";
        switch (op) {
        case 0: { /* allocate, sometimes far beyond the capacity */
            name = "allocate";
            uint8_t how = take8(in);
            size_t want = how >= 240 ? SIZE_MAX - how % 3 : take8(in) % (m->n + 3);
            size_t reset, active, inactive, n_evicted = 99;
            model_counts(m, &reset, &active, &inactive);
            expected = want > reset + inactive ? KVBM_ERR_NO_BLOCKS : KVBM_OK;
            bool report = how & 1;
            status = kvbm_manager_allocate(manager, want, out, report ? evicted : NULL, &n_evicted);
            if (status != KVBM_OK)
                break;
            size_t from_reset = 0, from_inactive = 0;
            for (size_t i = 0; i < want; i++) {
                CHECK(out[i] < m->n, "allocate: id %u out of range", out[i]);
                model_block_t *b = &m->b[out[i]];
                if (b->state == M_FREE) {
                    from_reset++;
                } else {
                    CHECK(b->state == M_REGISTERED && b->refs == 0,
                          "allocate handed out block %u, which was in use", out[i]);
                    if (report)
                        CHECK(evicted[from_inactive].block_id == out[i] &&
                                  evicted[from_inactive].seq_hash == b->hash,
                              "allocate: eviction report");
                    from_inactive++;
                    model_unregister(m, out[i]);
                }
                b->state = M_MUTABLE;
                b->refs = 1;
            }
            CHECK(from_reset == (want < reset ? want : reset), "allocate evicted with free blocks");
            CHECK(n_evicted == (report ? from_inactive : 0), "allocate: eviction count");
            break;
        }
        case 1: { /* register */
            name = "register";
            for (size_t i = 0; i < count; i++) {
                ids[i] = pick_id(in, m, M_MUTABLE);
                hashes[i] = take_hash(in);
            }
            uint8_t prio = take8(in);
            uint8_t hint = take8(in);
            kvbm_register_opts_t opts = {.parent_hash = take_hash(in),
                                         .has_parent = prio & 1,
                                         .priority = (uint8_t)(prio % 110),
                                         .request_blocks = hint % 16u,
                                         .first_position = hint / 16u};
            bool with_opts = prio & 2;
            expected = with_opts && opts.priority > 100 ? KVBM_ERR_INVALID_ARG
                                                        : predict_register(m, ids, count);
            uint32_t *ids_out = (prio & 4) ? ids : out; /* in place, as the README does */
            uint32_t in_ids[MAX_ARGS];
            memcpy(in_ids, ids, sizeof(ids));
            status = kvbm_manager_register(manager, ids, hashes, count, with_opts ? &opts : NULL,
                                           ids_out);
            if (status != KVBM_OK)
                break;
            for (size_t i = 0; i < count; i++) {
                uint32_t id = in_ids[i], existing = model_lookup(m, hashes[i]);
                if (m->reject && existing != KVBM_BLOCK_NONE) {
                    CHECK(ids_out[i] == existing, "register: dedup to %u, not %u", existing,
                          ids_out[i]);
                    model_take_ref(m, existing);
                    m->b[id].refs = 0;
                    m->b[id].state = M_FREE;
                } else {
                    CHECK(ids_out[i] == id, "register: block %u became %u", id, ids_out[i]);
                    model_add(m, id, hashes[i]);
                }
            }
            break;
        }
        case 2: { /* acquire */
            name = "acquire";
            for (size_t i = 0; i < count; i++)
                ids[i] = pick_id(in, m, M_REGISTERED);
            expected = KVBM_OK;
            for (size_t i = 0; i < count && expected == KVBM_OK; i++)
                if (ids[i] >= m->n)
                    expected = KVBM_ERR_OUT_OF_RANGE;
            for (size_t i = 0; i < count && expected == KVBM_OK; i++)
                if (m->b[ids[i]].state != M_REGISTERED)
                    expected = KVBM_ERR_BAD_STATE;
            status = kvbm_manager_acquire(manager, ids, count);
            if (status == KVBM_OK)
                for (size_t i = 0; i < count; i++)
                    model_take_ref(m, ids[i]);
            break;
        }
        case 3: { /* release, repeats included */
            name = "release";
            for (size_t i = 0; i < count; i++)
                ids[i] = pick_id(in, m, -2);
            expected = predict_release(m, ids, count);
            status = kvbm_manager_release(manager, ids, count);
            if (status == KVBM_OK)
                for (size_t i = 0; i < count; i++)
                    model_drop_ref(m, ids[i]);
            break;
        }
        case 4:   /* match */
        case 5: { /* scan */
            bool match = op == 4;
            name = match ? "match" : "scan";
            for (size_t i = 0; i < count; i++)
                hashes[i] = take_hash(in);
            size_t found = 99;
            status = match ? kvbm_manager_match(manager, hashes, count, out, &found)
                           : kvbm_manager_scan(manager, hashes, count, take8(in) & 1, out, &found);
            if (status != KVBM_OK)
                break;
            size_t predicted = 0;
            for (size_t i = 0; i < count; i++) {
                uint32_t id = model_lookup(m, hashes[i]);
                if (match && id == KVBM_BLOCK_NONE)
                    break;
                CHECK(out[i] == id, "%s: hash %zu gave block %u, model %u", name, i, out[i], id);
                if (id != KVBM_BLOCK_NONE) {
                    model_take_ref(m, id);
                    predicted++;
                }
            }
            CHECK(found == predicted, "%s: %zu found, model %zu", name, found, predicted);
            break;
        }
        case 6: { /* match_length: distinct inactive blocks */
            name = "match_length";
            for (size_t i = 0; i < count; i++)
                hashes[i] = take_hash(in);
            size_t n = 99, inactive = 99, p = 0, p_inactive = 0;
            status = kvbm_manager_match_length(manager, hashes, count, &n, &inactive);
            bool seen[MAX_BLOCKS] = {false};
            for (; p < count; p++) {
                uint32_t id = model_lookup(m, hashes[p]);
                if (id == KVBM_BLOCK_NONE)
                    break;
                p_inactive += m->b[id].refs == 0 && !seen[id];
                seen[id] = true;
            }
            CHECK(status == KVBM_OK && n == p && inactive == p_inactive, "match_length");
            break;
        }
        case 7: { /* invalidate */
            name = "invalidate";
            for (size_t i = 0; i < count; i++)
                ids[i] = pick_id(in, m, -1);
            expected = KVBM_OK;
            for (size_t i = 0; i < count; i++)
                if (ids[i] >= m->n)
                    expected = KVBM_ERR_OUT_OF_RANGE;
            status = kvbm_manager_invalidate(manager, ids, count);
            if (status != KVBM_OK)
                break;
            for (size_t i = 0; i < count; i++) {
                model_block_t *b = &m->b[ids[i]];
                if (b->state != M_REGISTERED)
                    continue;
                model_unregister(m, ids[i]);
                b->state = b->refs == 0 ? M_FREE : M_WITHDRAWN;
            }
            break;
        }
        case 8: { /* reset_inactive */
            name = "reset_inactive";
            size_t reset, active, inactive;
            model_counts(m, &reset, &active, &inactive);
            expected = active > 0 ? KVBM_ERR_BUSY : KVBM_OK;
            status = kvbm_manager_reset_inactive(manager);
            if (status == KVBM_OK) {
                for (uint32_t i = 0; i < m->n; i++) {
                    if (m->b[i].state == M_REGISTERED) {
                        model_unregister(m, i);
                        m->b[i].state = M_FREE;
                    }
                }
            }
            break;
        }
        case 9: { /* NULL arrays and outputs where the header says they are refused */
            name = "NULL arguments";
            size_t found;
            uint8_t which = take8(in) % 6;
            size_t c = 1 + count;
            expected = KVBM_ERR_INVALID_ARG;
            if (which == 0)
                status = kvbm_manager_allocate(manager, c, NULL, NULL, NULL);
            else if (which == 1)
                status = kvbm_manager_release(manager, NULL, c);
            else if (which == 2)
                status = kvbm_manager_match(manager, hashes, c, out, NULL);
            else if (which == 3)
                status = kvbm_manager_scan(manager, NULL, c, true, out, &found);
            else if (which == 4)
                status = kvbm_manager_register(manager, ids, NULL, c, NULL, out);
            else
                status = kvbm_manager_acquire(NULL, ids, c);
            break;
        }
        case 10: /* an allocation failure in one of the next calls */
            name = "arm";
            arm_alloc_failure(in);
            break;
        default: { /* nothing asked: zero counts always succeed */
            name = "empty";
            size_t found = 99;
            status = kvbm_manager_match(manager, NULL, 0, NULL, &found);
            CHECK(found == 0, "empty match");
            break;
        }
        }
        if (status == KVBM_ERR_NO_MEMORY && injected_now()) {
            disarm_alloc_failure(); /* refused: checked unchanged below */
        } else {
            CHECK(status == expected, "%s returned %s, expected %s", name, kvbm_status_name(status),
                  kvbm_status_name(expected));
        }
        if (status != KVBM_OK) {
            manager_snapshot_t after = manager_snapshot(manager);
            CHECK(memcmp(&after, &before, sizeof(after)) == 0, "refused %s changed the manager",
                  name);
        }
        check_manager(manager, m, name);
    }
    disarm_alloc_failure();
    kvbm_manager_destroy(manager);
    free(m);
}

/* ------------------------------------------------------------------ cache */

#define CACHE_MAX_G1 16

typedef struct cache_harness {
    kvbm_backend_t *backend;
    kvbm_cache_t *cache;
    uint32_t g1_blocks;
    uint32_t held[CACHE_MAX_G1];   /* the harness's references per G1 block */
    bool is_mutable[CACHE_MAX_G1]; /* held mutable blocks, written for intended[] */
    uint64_t intended[CACHE_MAX_G1];
    uint64_t served;
} cache_harness_t;

static void host_fill(kvbm_cache_t *cache, uint32_t id, uint64_t hash)
{
    const kvbm_layout_t *layout = kvbm_cache_layout(cache, KVBM_TIER_G1);
    unsigned char *base = kvbm_pool_ptr(kvbm_cache_pool(cache, KVBM_TIER_G1));
    size_t block_bytes = kvbm_layout_block_bytes(layout);
    unsigned char *bytes = malloc(block_bytes);
    CHECK(bytes != NULL, "out of memory in the harness");
    pattern_fill(bytes, block_bytes, hash);
    kvbm_region_t regions[8];
    size_t n = 0, done = 0;
    CHECK(kvbm_layout_block_regions(layout, id, regions, 8, &n) == KVBM_OK, "regions");
    for (size_t r = 0; r < n; r++) {
        memcpy(base + regions[r].offset, bytes + done, regions[r].bytes);
        done += regions[r].bytes;
    }
    free(bytes);
}

typedef struct cache_snapshot {
    kvbm_cache_metrics_t metrics;
    kvbm_pool_counts_t g1, g2;
    kvbm_manager_metrics_t g1_metrics, g2_metrics;
} cache_snapshot_t;

static cache_snapshot_t cache_snapshot(kvbm_cache_t *cache)
{
    cache_snapshot_t s;
    memset(&s, 0, sizeof(s));
    kvbm_cache_metrics(cache, &s.metrics);
    kvbm_manager_t *g1 = kvbm_cache_manager(cache, KVBM_TIER_G1);
    kvbm_manager_t *g2 = kvbm_cache_manager(cache, KVBM_TIER_G2);
    kvbm_manager_counts(g1, &s.g1);
    kvbm_manager_metrics(g1, &s.g1_metrics);
    s.g1_metrics.allocation_failures = 0;
    if (g2 != NULL) {
        kvbm_manager_counts(g2, &s.g2);
        kvbm_manager_metrics(g2, &s.g2_metrics);
    }
    return s;
}

static void check_cache(cache_harness_t *h, const char *after)
{
    kvbm_manager_t *g1 = kvbm_cache_manager(h->cache, KVBM_TIER_G1);
    kvbm_manager_t *g2 = kvbm_cache_manager(h->cache, KVBM_TIER_G2);
    kvbm_pool_counts_t c;
    kvbm_manager_counts(g1, &c);
    size_t held = 0;
    for (uint32_t i = 0; i < h->g1_blocks; i++)
        held += h->held[i] > 0;
    CHECK(c.reset + c.active + c.inactive == c.total, "after %s: G1 pools do not add up", after);
    CHECK(c.active == held, "after %s: G1 has %zu blocks in use, the harness holds %zu", after,
          c.active, held);
    if (g2 != NULL) {
        kvbm_manager_counts(g2, &c);
        CHECK(c.reset + c.active + c.inactive == c.total, "after %s: G2 pools do not add up",
              after);
    }
}

/* Checks, then verifies, what a call served. */
static void verify_served(cache_harness_t *h, const uint32_t *ids, const uint64_t *hashes, size_t n)
{
    if (n == 0)
        return;
    kvbm_status_t check = kvbm_cache_check(h->cache, ids, n);
    CHECK(check == KVBM_OK || check == KVBM_ERR_COPY_FAILED, "check returned %s",
          kvbm_status_name(check));
    if (check != KVBM_OK)
        return;
    for (size_t i = 0; i < n; i++) {
        CHECK(block_holds(h->cache, KVBM_TIER_G1, ids[i], hashes[i]),
              "block %u served for hash %llx holds other bytes", ids[i],
              (unsigned long long)hashes[i]);
        h->served++;
    }
}

static uint32_t pick_g1(input_t *in, const cache_harness_t *h, bool want_mutable)
{
    uint8_t b = take8(in);
    if (b >= 232)
        return (uint32_t)(take8(in) % (h->g1_blocks + 3));
    uint32_t candidates[CACHE_MAX_G1], n = 0;
    for (uint32_t i = 0; i < h->g1_blocks; i++)
        if (h->held[i] > 0 && (!want_mutable || h->is_mutable[i]))
            candidates[n++] = i;
    return n == 0 ? (uint32_t)(b % (h->g1_blocks + 1)) : candidates[b % n];
}

static void fuzz_cache(input_t *in)
{
    cache_harness_t *h = calloc(1, sizeof(*h));
    CHECK(h != NULL, "out of memory in the harness");
    kvbm_backend_config_t bc = KVBM_BACKEND_CONFIG_INIT;
    bc.kind = KVBM_BACKEND_CPU;
    bc.synchronous = true; /* deterministic: copies run in the calling thread */
    CHECK(kvbm_backend_create(&bc, &h->backend) == KVBM_OK, "backend");
    const char *const *names = kvbm_policy_names();
    size_t n_policies = 0;
    while (names[n_policies] != NULL)
        n_policies++;
    kvbm_cache_config_t cc = KVBM_CACHE_CONFIG_INIT;
    cc.backend = h->backend;
    h->g1_blocks = 2 + take8(in) % (CACHE_MAX_G1 - 1);
    cc.layout.num_blocks = h->g1_blocks;
    cc.layout.kind = take8(in) & 1 ? KVBM_LAYOUT_LAYER_SEPARATE : KVBM_LAYOUT_FULLY_CONTIGUOUS;
    cc.layout.num_layers = 1 + take8(in) % 2;
    cc.layout.tokens_per_block = 1;
    cc.layout.inner_dim = 8;
    cc.layout.alignment = 8;
    cc.g2_blocks = take8(in) % 24; /* 0: no host tier */
    cc.offload_mode = take8(in) & 1 ? KVBM_OFFLOAD_WRITE_THROUGH : KVBM_OFFLOAD_WRITE_BACK;
    uint8_t admission = take8(in);
    cc.offload_admission =
        cc.offload_mode == KVBM_OFFLOAD_WRITE_BACK && cc.g2_blocks > 0 && (admission & 1);
    if (cc.offload_admission)
        cc.admission_keep_ratio = (double)(admission >> 1) / 32.0; /* 0: the default */
    cc.g1_policy = kvbm_policy_find(names[take8(in) % n_policies]);
    cc.g2_policy = kvbm_policy_find(names[take8(in) % n_policies]);
    cc.policy_config.next_use = next_use_by_hash;
    CHECK(kvbm_cache_create(&cc, &h->cache) == KVBM_OK, "cache create");

    uint32_t ids[CACHE_MAX_G1 + 4], out[CACHE_MAX_G1 + 4];
    uint64_t hashes[CACHE_MAX_G1 + 4];
    for (int steps = 0; more(in) && steps < 300; steps++) {
        uint8_t op = take8(in) % 10;
        /* Completed copies are processed first, so that a refused call can
         * be compared with the state just before it. */
        CHECK(kvbm_cache_progress(h->cache) == KVBM_OK, "progress");
        cache_snapshot_t before = cache_snapshot(h->cache);
        kvbm_status_t status = KVBM_OK;
        bool refusable = false; /* a refusal the arguments allow (checked unchanged) */
        const char *name = "?";
        switch (op) {
        case 0:   /* acquire a document */
        case 1: { /* match */
            bool acquire = op == 0;
            name = acquire ? "acquire" : "match";
            size_t n = take8(in) % (h->g1_blocks + 3);
            uint64_t doc = take8(in) % 6;
            for (size_t i = 0; i < n; i++)
                hashes[i] = take8(in) >= 240 ? take_hash(in) : doc * 64 + i;
            kvbm_cache_match_result_t r = {0};
            status = acquire ? kvbm_cache_acquire(h->cache, hashes, n, out, &r, NULL)
                             : kvbm_cache_match(h->cache, hashes, n, out, &r, NULL);
            refusable = status == KVBM_ERR_NO_BLOCKS;
            if (status != KVBM_OK)
                break;
            size_t served = r.g1 + r.onboarded;
            size_t taken = acquire ? n : served;
            CHECK(served <= n, "%s served more than asked", name);
            for (size_t i = 0; i < taken; i++)
                CHECK(out[i] < h->g1_blocks, "%s: id out of range", name);
            verify_served(h, out, hashes, served);
            for (size_t i = 0; i < taken; i++) {
                h->held[out[i]]++;
                if (i >= served) { /* fresh: the harness computes it */
                    h->is_mutable[out[i]] = true;
                    h->intended[out[i]] = hashes[i];
                    host_fill(h->cache, out[i], hashes[i]);
                }
            }
            break;
        }
        case 2: { /* allocate, sometimes far beyond G1 */
            name = "allocate";
            uint8_t how = take8(in);
            size_t n = how >= 240 ? SIZE_MAX / (1 + how % 5) : take8(in) % (h->g1_blocks + 2);
            status = kvbm_cache_allocate(h->cache, n, out, NULL);
            refusable = status == KVBM_ERR_NO_BLOCKS;
            if (status != KVBM_OK)
                break;
            for (size_t i = 0; i < n; i++) {
                CHECK(out[i] < h->g1_blocks && h->held[out[i]] == 0,
                      "allocate handed out a block in use");
                h->held[out[i]] = 1;
                h->is_mutable[out[i]] = true;
                h->intended[out[i]] = take_hash(in);
                host_fill(h->cache, out[i], h->intended[out[i]]);
            }
            break;
        }
        case 3: { /* register mutable blocks under the hashes they were written for */
            name = "register";
            size_t n = take8(in) % 5;
            bool hostile = false;
            for (size_t i = 0; i < n; i++) {
                ids[i] = pick_g1(in, h, true);
                bool ok = ids[i] < h->g1_blocks && h->is_mutable[ids[i]];
                for (size_t j = 0; j < i; j++)
                    ok &= ids[j] != ids[i];
                hostile |= !ok;
                hashes[i] = ids[i] < h->g1_blocks ? h->intended[ids[i]] : take_hash(in);
            }
            uint32_t in_ids[CACHE_MAX_G1 + 4];
            memcpy(in_ids, ids, sizeof(uint32_t) * n);
            uint32_t *ids_out = take8(in) & 1 ? ids : out;
            /* Registration hints, any values (the admission filter and the
             * adaptive policy read them; none can be wrong). */
            uint8_t hint = take8(in);
            const kvbm_register_opts_t opts = {.request_blocks = hint % 16u,
                                               .first_position = hint / 32u};
            status =
                kvbm_cache_register(h->cache, ids, hashes, n, (hint & 1) ? &opts : NULL, ids_out);
            CHECK(hostile == (status != KVBM_OK) || status == KVBM_ERR_NO_MEMORY,
                  "register of %s blocks returned %s", hostile ? "wrong" : "good",
                  kvbm_status_name(status));
            refusable = hostile;
            if (status != KVBM_OK)
                break;
            for (size_t i = 0; i < n; i++) {
                h->is_mutable[in_ids[i]] = false;
                if (ids_out[i] != in_ids[i]) { /* deduplicated: the reference moved */
                    h->held[in_ids[i]]--;
                    h->held[ids_out[i]]++;
                }
            }
            break;
        }
        case 4: { /* release, hostile ones included */
            name = "release";
            size_t n = take8(in) % 6;
            uint32_t drops[CACHE_MAX_G1 + 4] = {0};
            bool hostile = false;
            for (size_t i = 0; i < n; i++) {
                ids[i] = pick_g1(in, h, false);
                hostile |= ids[i] >= h->g1_blocks || h->held[ids[i]] <= drops[ids[i]];
                if (ids[i] < h->g1_blocks)
                    drops[ids[i]]++;
            }
            status = kvbm_cache_release(h->cache, ids, n);
            CHECK(hostile == (status != KVBM_OK), "release of %s references returned %s",
                  hostile ? "missing" : "held", kvbm_status_name(status));
            refusable = hostile;
            if (status != KVBM_OK)
                break;
            for (size_t i = 0; i < n; i++)
                if (--h->held[ids[i]] == 0)
                    h->is_mutable[ids[i]] = false;
            break;
        }
        case 5: { /* scan: takes references; data good once check says so */
            name = "scan";
            size_t n = take8(in) % 6, found = 0;
            for (size_t i = 0; i < n; i++)
                hashes[i] = take8(in) % 6 * 64 + take8(in) % 8;
            status = kvbm_cache_scan(h->cache, hashes, n, take8(in) & 1, out, &found);
            if (status != KVBM_OK)
                break;
            for (size_t i = 0; i < n; i++) {
                if (out[i] == KVBM_BLOCK_NONE)
                    continue;
                CHECK(out[i] < h->g1_blocks, "scan: id out of range");
                h->held[out[i]]++;
                verify_served(h, &out[i], &hashes[i], 1);
            }
            break;
        }
        case 6: { /* check, ids out of range included */
            name = "check";
            size_t n = take8(in) % 4;
            bool out_of_range = false;
            for (size_t i = 0; i < n; i++) {
                ids[i] = take8(in) % (h->g1_blocks + 2);
                out_of_range |= ids[i] >= h->g1_blocks;
            }
            status = kvbm_cache_check(h->cache, ids, n);
            CHECK(out_of_range ? status == KVBM_ERR_OUT_OF_RANGE
                               : status == KVBM_OK || status == KVBM_ERR_COPY_FAILED,
                  "check returned %s", kvbm_status_name(status));
            refusable = status == KVBM_ERR_OUT_OF_RANGE;
            if (status == KVBM_ERR_COPY_FAILED)
                status = KVBM_OK; /* a report, not a refusal */
            break;
        }
        case 7: /* a copy fault, or an allocation failure, in a coming call */
            name = "arm";
            if (take8(in) & 1)
                kvbm_backend_fail_nth_copy(h->backend, 1 + take8(in) % 3);
            else
                arm_alloc_failure(in);
            break;
        case 8: /* wait for every copy */
            name = "sync";
            status = kvbm_cache_sync(h->cache);
            break;
        default: { /* NULL where the header refuses it */
            name = "NULL arguments";
            kvbm_cache_match_result_t r;
            uint8_t which = take8(in) % 3;
            status = which == 0   ? kvbm_cache_acquire(h->cache, NULL, 2, out, &r, NULL)
                     : which == 1 ? kvbm_cache_register(h->cache, NULL, hashes, 1, NULL, out)
                                  : kvbm_cache_check(h->cache, NULL, 1);
            CHECK(status == KVBM_ERR_INVALID_ARG, "NULL arguments returned %s",
                  kvbm_status_name(status));
            refusable = true;
            break;
        }
        }
        if (status == KVBM_ERR_NO_MEMORY) {
            CHECK(injected_now(), "%s: NO_MEMORY without an injected failure", name);
            disarm_alloc_failure();
            refusable = true;
        }
        CHECK(status == KVBM_OK || refusable, "%s returned %s", name, kvbm_status_name(status));
        if (status != KVBM_OK) {
            cache_snapshot_t after = cache_snapshot(h->cache);
            CHECK(memcmp(&after, &before, sizeof(after)) == 0, "refused %s changed the cache",
                  name);
        }
        check_cache(h, name);
    }
    /* The end: give everything back; nothing held, G2 holds right bytes. */
    disarm_alloc_failure();
    kvbm_backend_fail_nth_copy(h->backend, 0);
    for (uint32_t i = 0; i < h->g1_blocks; i++)
        while (h->held[i] > 0) {
            CHECK(kvbm_cache_release(h->cache, &i, 1) == KVBM_OK, "final release");
            h->held[i]--;
        }
    CHECK(kvbm_cache_sync(h->cache) == KVBM_OK, "sync");
    check_cache(h, "the end");
    kvbm_manager_t *g2 = kvbm_cache_manager(h->cache, KVBM_TIER_G2);
    if (g2 != NULL) {
        kvbm_pool_counts_t c;
        kvbm_manager_counts(g2, &c);
        CHECK(c.active == 0, "G2 blocks still held at the end");
        for (uint64_t doc = 0; doc < 6; doc++)
            for (uint64_t i = 0; i < CACHE_MAX_G1 + 3; i++) {
                uint64_t hash = doc * 64 + i;
                uint32_t id;
                size_t found;
                CHECK(kvbm_manager_scan(g2, &hash, 1, false, &id, &found) == KVBM_OK, "G2 scan");
                if (found == 0)
                    continue;
                CHECK(block_holds(h->cache, KVBM_TIER_G2, id, hash), "G2 holds wrong bytes");
                CHECK(kvbm_manager_release(g2, &id, 1) == KVBM_OK, "G2 release");
            }
    }
    kvbm_cache_destroy(h->cache);
    kvbm_backend_destroy(h->backend);
    free(h);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    input_t in = {.data = data, .size = size};
    if (take8(&in) & 1)
        fuzz_cache(&in);
    else
        fuzz_manager(&in);
    return 0;
}
