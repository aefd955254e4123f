/* A manager's event records; see events.h. Everything under the manager lock. */
#include "events.h"

#include <stdlib.h>

kvbm_status_t kvbm__manager_events_create(const kvbm_manager_config_t *config,
                                          kvbm__manager_events_t **events_out)
{
    kvbm__manager_events_t *events = malloc(sizeof(*events));
    if (events == NULL)
        return KVBM_ERR_NO_MEMORY;
    events->sink = config->on_events;
    events->ctx = config->events_ctx;
    events->medium = config->medium;
    events->n_removed = 0;
    events->n_records = 0;
    events->removed_hashes = malloc(sizeof(uint64_t) * config->num_blocks);
    events->removed_blocks = malloc(sizeof(uint32_t) * config->num_blocks);
    if (events->removed_hashes == NULL || events->removed_blocks == NULL) {
        kvbm__manager_events_destroy(events);
        return KVBM_ERR_NO_MEMORY;
    }
    *events_out = events;
    return KVBM_OK;
}

void kvbm__manager_events_destroy(kvbm__manager_events_t *events)
{
    if (events == NULL)
        return;
    free(events->removed_hashes);
    free(events->removed_blocks);
    free(events);
}

static void deliver_records(kvbm__manager_events_t *events)
{
    if (events->n_records > 0)
        events->sink(events->ctx, events->records, events->n_records);
    events->n_records = 0;
}

void kvbm__manager_events_stored(kvbm__manager_events_t *events, const uint32_t *ids,
                                 const uint64_t *hashes, size_t first, size_t end,
                                 const kvbm_register_opts_t *opts)
{
    if (events->n_records == KVBM_MANAGER_EVENT_RECORDS)
        deliver_records(events);
    kvbm_event_record_t *record = &events->records[events->n_records++];
    *record = (kvbm_event_record_t){
        .kind = KVBM_EVENT_STORED,
        .medium = events->medium,
        .count = end - first,
        .hashes = hashes + first,
        .blocks = ids + first,
    };
    if (first > 0) {
        record->has_parent = true;
        record->parent_hash = hashes[first - 1];
    } else if (opts != NULL && opts->has_parent) {
        record->has_parent = true;
        record->parent_hash = opts->parent_hash;
    }
    if (opts != NULL) {
        record->block_size = opts->block_size;
        record->has_lora_id = opts->has_lora_id;
        record->lora_id = opts->lora_id;
        record->lora_name = opts->lora_name;
        if (opts->n_tokens > 0) {
            record->tokens = opts->tokens + first * opts->block_size;
            record->n_tokens = (end - first) * opts->block_size;
        }
    }
}

void kvbm__manager_events_deliver(kvbm__manager_events_t *events)
{
    if (events->n_removed > 0) {
        if (events->n_records == KVBM_MANAGER_EVENT_RECORDS)
            deliver_records(events);
        events->records[events->n_records++] = (kvbm_event_record_t){
            .kind = KVBM_EVENT_REMOVED,
            .medium = events->medium,
            .count = events->n_removed,
            .hashes = events->removed_hashes,
            .blocks = events->removed_blocks,
        };
    }
    deliver_records(events);
    events->n_removed = 0;
}
