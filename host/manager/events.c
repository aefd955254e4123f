/* A manager's event records; see events.h. Everything under the manager lock. */
#include "events.h"
#include "core/alloc.h"

#include <stdlib.h>

kvbm_status_t kvbm__manager_events_create(const kvbm_manager_config_t *config,
                                          kvbm__manager_events_t **events_out)
{
    kvbm__manager_events_t *events = kvbm__calloc(1, sizeof(*events));
    if (events == NULL)
        return KVBM_ERR_NO_MEMORY;
    events->medium = config->medium;
    if (config->on_events == kvbm_event_batcher_sink) {
        events->batcher = config->events_ctx;
    } else {
        events->sink = config->on_events;
        events->ctx = config->events_ctx;
    }
    events->removed_hashes = kvbm__alloc(config->num_blocks, sizeof(uint64_t));
    events->removed_blocks = kvbm__alloc(config->num_blocks, sizeof(uint32_t));
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
    kvbm__free(events->removed_hashes);
    kvbm__free(events->removed_blocks);
    kvbm__free(events);
}

void kvbm__manager_events_deliver_records(kvbm__manager_events_t *events)
{
    if (events->n_records > 0)
        events->sink(events->ctx, events->records, events->n_records);
    events->n_records = 0;
}

void kvbm__manager_events_stored_other(kvbm__manager_events_t *events, const uint32_t *ids,
                                       const uint64_t *hashes, size_t first, size_t end,
                                       const kvbm_register_opts_t *opts)
{
    if (events->batcher != NULL) {
        kvbm_event_record_t record;
        kvbm__manager_events_fill_stored(&record, events->medium, ids, hashes, first, end, opts);
        kvbm__event_batcher_add(events->batcher, &record);
        return;
    }
    if (events->n_records == KVBM_MANAGER_EVENT_RECORDS)
        kvbm__manager_events_deliver_records(events);
    kvbm__manager_events_fill_stored(&events->records[events->n_records++], events->medium, ids,
                                     hashes, first, end, opts);
}

void kvbm__manager_events_announce(kvbm__manager_events_t *events, const uint64_t *hash,
                                   bool has_parent, uint64_t parent_hash)
{
    if (events->batcher != NULL) {
        kvbm__event_batcher_stored_plain(events->batcher, events->medium, hash, 1, has_parent,
                                         parent_hash, 0);
        return;
    }
    if (events->n_records == KVBM_MANAGER_EVENT_RECORDS)
        kvbm__manager_events_deliver_records(events);
    events->records[events->n_records++] = (kvbm_event_record_t){.kind = KVBM_EVENT_STORED,
                                                                 .medium = events->medium,
                                                                 .count = 1,
                                                                 .hashes = hash,
                                                                 .has_parent = has_parent,
                                                                 .parent_hash = parent_hash};
}

void kvbm__manager_events_deliver_any(kvbm__manager_events_t *events)
{
    if (events->batcher != NULL) { /* the stored runs are in it already */
        if (events->n_removed > 0)
            kvbm__event_batcher_removed(events->batcher, events->medium, events->removed_hashes,
                                        events->n_removed);
        events->n_removed = 0;
        return;
    }
    if (events->n_removed > 0) {
        if (events->n_records == KVBM_MANAGER_EVENT_RECORDS)
            kvbm__manager_events_deliver_records(events);
        events->records[events->n_records++] = (kvbm_event_record_t){
            .kind = KVBM_EVENT_REMOVED,
            .medium = events->medium,
            .count = events->n_removed,
            .hashes = events->removed_hashes,
            .blocks = events->removed_blocks,
        };
    }
    kvbm__manager_events_deliver_records(events);
    events->n_removed = 0;
}
