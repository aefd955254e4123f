/*
 * End-to-end tour of the logical manager: two requests sharing a prompt
 * prefix, the second reusing the first's cached blocks, then pressure that
 * evicts them. Prints what happened at each step.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "kvbm/kvbm.h"

#define BLOCK_TOKENS 4
#define CHECK(call)                                                                                \
    do {                                                                                           \
        kvbm_status_t s_ = (call);                                                                 \
        if (s_ != KVBM_OK) {                                                                       \
            fprintf(stderr, "%s failed: %s\n", #call, kvbm_status_str(s_));                        \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

/* What a router would hear (kvbm/events.h publishes the same records in
 * vLLM's wire format). */
static void log_events(void *ctx, const kvbm_event_record_t *records, size_t count)
{
    for (size_t r = 0; r < count; r++)
        for (size_t i = 0; i < records[r].count; i++)
            printf("    event: %s(%s) hash %016" PRIx64 " on block %u\n",
                   records[r].kind == KVBM_EVENT_STORED ? "stored" : "removed",
                   kvbm_medium_name(records[r].medium), records[r].hashes[i], records[r].blocks[i]);
}

static void show_pools(kvbm_manager_t *manager)
{
    kvbm_pool_counts_t counts;
    kvbm_manager_counts(manager, &counts);
    printf("    pools: reset %zu, active %zu, inactive %zu (total %zu)\n", counts.reset,
           counts.active, counts.inactive, counts.total);
}

/* Serves one request: reuse the cached prefix, allocate and register the rest. */
static void serve(kvbm_manager_t *manager, const char *name, const uint32_t *tokens,
                  size_t n_tokens)
{
    uint64_t hashes[16];
    uint32_t ids[16];
    size_t n_blocks, matched;
    CHECK(kvbm_hash_tokens(tokens, n_tokens, BLOCK_TOKENS, 0, hashes, &n_blocks));
    CHECK(kvbm_manager_match(manager, hashes, n_blocks, ids, &matched));
    printf("%s: %zu blocks, %zu reused from the cache\n", name, n_blocks, matched);
    size_t fresh = n_blocks - matched;
    kvbm_evicted_t evicted[16];
    size_t n_evicted = 0;
    CHECK(kvbm_manager_allocate(manager, fresh, ids + matched, evicted, &n_evicted));
    printf("    allocated %zu blocks, evicting %zu\n", fresh, n_evicted);
    kvbm_register_opts_t opts = {.has_parent = matched > 0,
                                 .parent_hash = matched > 0 ? hashes[matched - 1] : 0,
                                 .priority = 50};
    CHECK(kvbm_manager_register(manager, ids + matched, hashes + matched, fresh, &opts,
                                ids + matched));
    show_pools(manager);
    uint32_t reversed[16];
    for (size_t i = 0; i < n_blocks; i++)
        reversed[i] = ids[n_blocks - 1 - i];
    CHECK(kvbm_manager_release(manager, reversed, n_blocks));
    printf("    released; ");
    show_pools(manager);
}

int main(void)
{
    printf("kvbm %s: prefix reuse with %d-token blocks\n", kvbm_version(), BLOCK_TOKENS);
    kvbm_manager_config_t config = KVBM_MANAGER_CONFIG_INIT;
    config.num_blocks = 6;
    config.on_events = log_events;
    kvbm_manager_t *manager = NULL;
    CHECK(kvbm_manager_create(&config, &manager));

    const uint32_t first[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    const uint32_t second[16] = {1, 2, 3, 4, 5, 6, 7, 8, 20, 21, 22, 23, 24, 25, 26, 27};
    const uint32_t other[16] = {90, 91, 92,  93,  94,  95,  96,  97,
                                98, 99, 100, 101, 102, 103, 104, 105};
    serve(manager, "request A", first, 12);
    serve(manager, "request B (shares A's first two blocks)", second, 16);
    serve(manager, "request C (unrelated, forces evictions)", other, 16);

    kvbm_manager_metrics_t metrics;
    kvbm_manager_metrics(manager, &metrics);
    printf("metrics: %" PRIu64 " allocations, %" PRIu64 " evictions, %" PRIu64
           " match blocks of %" PRIu64 " asked\n",
           metrics.allocations, metrics.evictions, metrics.match_blocks, metrics.match_hashes);
    CHECK(kvbm_manager_metrics_prometheus(manager, stdout));
    kvbm_manager_destroy(manager);
    return 0;
}
