/*
 * The fault layer: sits in front of a real engine and, as a hook decides
 * request by request, fails it with EIO or ENOSPC without transferring
 * anything, transfers only its first half (a short read, or a torn write
 * left in the file), or flips bits (of the bytes a write stores, or of the
 * buffer a read filled). Everything else passes through unchanged.
 */
#include <errno.h>
#include <stdlib.h>

#include "core/alloc.h"
#include "io.h"

#define CHUNK       64
#define SHORT_ALIGN 4096u /* a short transfer stays valid for O_DIRECT */

typedef struct fault_engine {
    const kvbm__disk_io_ops_t *inner;
    void *inner_state;
    kvbm__disk_fault_fn hook;
    void *hook_ctx;
    kvbm__disk_complete_fn complete; /* the submitter's */
    void *complete_ctx;
} fault_engine_t;

/* One bit in every 512-byte sector (at byte 100 of each), so that however
 * little of the request is data, data is hit. */
static void flip_bit(kvbm__disk_req_t *req)
{
    unsigned char *bytes = req->buf;
    for (size_t at = 100; at < req->bytes; at += 512)
        bytes[at] ^= (unsigned char)(1u << ((req->offset / SHORT_ALIGN + at) % 8));
}

static void fault_complete(void *ctx, kvbm__disk_req_t *req)
{
    fault_engine_t *engine = ctx;
    if (req->fault == KVBM__DISK_FAULT_SHORT)
        req->bytes = req->fault_bytes;
    else if (req->fault == KVBM__DISK_FAULT_FLIP && req->op == KVBM__DISK_READ &&
             req->result == (int64_t)req->bytes)
        flip_bit(req);
    engine->complete(engine->complete_ctx, req);
}

/* Applies the hook's fault; true if the request still goes to the engine. */
static bool apply_fault(fault_engine_t *engine, kvbm__disk_req_t *req)
{
    req->fault = (uint32_t)engine->hook(engine->hook_ctx, req);
    switch (req->fault) {
    case KVBM__DISK_FAULT_EIO:
    case KVBM__DISK_FAULT_ENOSPC:
        req->result = req->fault == KVBM__DISK_FAULT_EIO ? -EIO : -ENOSPC;
        engine->complete(engine->complete_ctx, req);
        return false;
    case KVBM__DISK_FAULT_SHORT:
        req->fault_bytes = req->bytes;
        req->bytes = req->bytes / 2 / SHORT_ALIGN * SHORT_ALIGN;
        if (req->bytes > 0)
            return true;
        req->result = 0;
        fault_complete(engine, req);
        return false;
    case KVBM__DISK_FAULT_FLIP:
        if (req->op == KVBM__DISK_WRITE)
            flip_bit(req);
        return true;
    default:
        req->fault = KVBM__DISK_FAULT_NONE;
        return true;
    }
}

static void fault_submit(void *state, kvbm__disk_req_t *const *reqs, size_t n)
{
    fault_engine_t *engine = state;
    kvbm__disk_req_t *pass[CHUNK];
    size_t n_pass = 0;
    for (size_t i = 0; i < n; i++) {
        if (apply_fault(engine, reqs[i]))
            pass[n_pass++] = reqs[i];
        if (n_pass == CHUNK || (i + 1 == n && n_pass > 0)) {
            engine->inner->submit(engine->inner_state, pass, n_pass);
            n_pass = 0;
        }
    }
}

static void fault_close(void *state)
{
    fault_engine_t *engine = state;
    if (engine == NULL)
        return;
    engine->inner->close(engine->inner_state);
    kvbm__free(engine);
}

static uint64_t fault_in_flight(void *state)
{
    fault_engine_t *engine = state;
    return engine->inner->in_flight(engine->inner_state);
}

/* The layer is opened by kvbm__disk_io_fault_open(), which knows the inner
 * engine and the hook; the table's open cannot. */
static kvbm_status_t fault_open_unsupported(const kvbm__disk_io_config_t *config, void **state_out)
{
    (void)config;
    (void)state_out;
    return KVBM_ERR_UNSUPPORTED;
}

static const kvbm__disk_io_ops_t fault_ops = {
    .version = KVBM__DISK_IO_OPS_VERSION,
    .name = "fault",
    .open = fault_open_unsupported,
    .close = fault_close,
    .submit = fault_submit,
    .in_flight = fault_in_flight,
};

kvbm_status_t kvbm__disk_io_fault_open(const kvbm__disk_io_ops_t *inner,
                                       const kvbm__disk_io_config_t *config,
                                       kvbm__disk_fault_fn hook, void *hook_ctx,
                                       const kvbm__disk_io_ops_t **ops_out, void **state_out)
{
    fault_engine_t *engine = kvbm__calloc(1, sizeof(*engine));
    if (engine == NULL)
        return KVBM_ERR_NO_MEMORY;
    engine->inner = inner;
    engine->hook = hook;
    engine->hook_ctx = hook_ctx;
    engine->complete = config->complete;
    engine->complete_ctx = config->complete_ctx;
    kvbm__disk_io_config_t inner_config = *config;
    inner_config.complete = fault_complete;
    inner_config.complete_ctx = engine;
    kvbm_status_t status = inner->open(&inner_config, &engine->inner_state);
    if (status != KVBM_OK) {
        kvbm__free(engine);
        return status;
    }
    *ops_out = &fault_ops;
    *state_out = engine;
    return KVBM_OK;
}
