/* Batches of event records gathered from several calls; see kvbm/event_record.h. */
#include "kvbm/event_record.h"

#include <stdlib.h>

#include "error.h"
#include "event_batch.h"
#include "alloc.h"

kvbm_status_t kvbm__event_batcher_create_taking(kvbm_event_record_fn sink,
                                                kvbm__event_batch_take_fn take, void *ctx,
                                                kvbm_event_batcher_t **batcher_out)
{
    KVBM_REQUIRE_ARG(sink != NULL);
    KVBM_REQUIRE_ARG(batcher_out != NULL);
    kvbm_event_batcher_t *batcher = kvbm__calloc(1, sizeof(*batcher));
    if (batcher == NULL)
        return KVBM_ERR_NO_MEMORY;
    batcher->sink = sink;
    batcher->take = take;
    batcher->ctx = ctx;
    *batcher_out = batcher;
    return KVBM_OK;
}

kvbm_status_t kvbm_event_batcher_create(kvbm_event_record_fn sink, void *ctx,
                                        kvbm_event_batcher_t **batcher_out)
{
    return kvbm__event_batcher_create_taking(sink, NULL, ctx, batcher_out);
}

void kvbm_event_batcher_destroy(kvbm_event_batcher_t *batcher)
{
    if (batcher == NULL)
        return;
    kvbm__event_batch_free(&batcher->batch);
    kvbm__free(batcher);
}

void kvbm_event_batcher_sink(void *ctx, const kvbm_event_record_t *records, size_t count)
{
    kvbm_event_batcher_t *batcher = ctx;
    for (size_t i = 0; i < count; i++) {
        if (kvbm__event_batch_append(&batcher->batch, &records[i]) != KVBM_OK) {
            /* Out of memory, or a record the batch cannot keep: deliver
             * what is kept, then the rest of these records as they are
             * (still valid now), so nothing is lost and the order holds;
             * the sink judges them. */
            kvbm_event_batcher_flush(batcher);
            batcher->sink(batcher->ctx, records + i, count - i);
            return;
        }
    }
}

void kvbm_event_batcher_flush(kvbm_event_batcher_t *batcher)
{
    if (batcher->batch.n_records == 0)
        return;
    if (batcher->take != NULL) {
        batcher->take(batcher->ctx, &batcher->batch);
    } else {
        const kvbm_event_record_t *records = kvbm__event_batch_view(&batcher->batch);
        batcher->sink(batcher->ctx, records, batcher->batch.n_records);
    }
    kvbm__event_batch_clear(&batcher->batch);
}

void kvbm__event_batcher_discard(kvbm_event_batcher_t *batcher)
{
    kvbm__event_batch_clear(&batcher->batch);
}
