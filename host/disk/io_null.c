/*
 * The null engine: completes every request at once, in submit(), as if all
 * its bytes had been transferred, without touching the file. It exists to
 * measure the store's bookkeeping apart from the I/O (bench_disk) and is
 * never chosen by KVBM_DISK_IO_AUTO.
 */
#include <stdlib.h>

#include "core/alloc.h"
#include "io.h"

typedef struct null_engine {
    kvbm__disk_io_config_t config;
} null_engine_t;

static kvbm_status_t null_open(const kvbm__disk_io_config_t *config, void **state_out)
{
    null_engine_t *engine = kvbm__alloc(1, sizeof(*engine));
    if (engine == NULL)
        return KVBM_ERR_NO_MEMORY;
    engine->config = *config;
    *state_out = engine;
    return KVBM_OK;
}

static void null_close(void *state)
{
    kvbm__free(state);
}

static void null_submit(void *state, kvbm__disk_req_t *const *reqs, size_t n)
{
    null_engine_t *engine = state;
    for (size_t i = 0; i < n; i++) {
        reqs[i]->result = (int64_t)reqs[i]->bytes;
        engine->config.complete(engine->config.complete_ctx, reqs[i]);
    }
}

static uint64_t null_in_flight(void *state)
{
    (void)state;
    return 0;
}

static const kvbm__disk_io_ops_t null_ops = {
    .version = KVBM__DISK_IO_OPS_VERSION,
    .name = "null",
    .open = null_open,
    .close = null_close,
    .submit = null_submit,
    .in_flight = null_in_flight,
};

const kvbm__disk_io_ops_t *kvbm__disk_io_null_ops(void)
{
    return &null_ops;
}
