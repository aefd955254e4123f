/*
 * The NCCL transport: block bytes move with ncclSend/ncclRecv, every chunk of
 * a transfer inside one ncclGroupStart/ncclGroupEnd, on the object's own CUDA
 * stream and a communicator kvbm owns. Control messages stay on the sockets
 * (host/xfer). Both sides cut the bytes at the same places (message_based:
 * the plan ends a chunk wherever either side's run ends), so every ncclSend
 * meets an ncclRecv of the same size. The receiver enqueues its group right
 * after answering, the sender right after reading the answer; NCCL pairs
 * them whichever comes first.
 *
 * The communicator (host/xfer/comm.h has the rules, tested on the CPU):
 *  - with the caller's communicator, kvbm splits a private one from it at
 *    create (ncclCommSplit) and runs on the caller's device
 *    (ncclCommCuDevice): kvbm's threads never issue work on a communicator
 *    the engine uses, and never abort or destroy it;
 *  - otherwise kvbm creates one from the unique id rank 0 published, on the
 *    configured device or the calling thread's current one.
 * Either way it is non-blocking (ncclConfig_t.blocking = 0): init, split,
 * group launches and finalize are polled with a deadline, so a peer that
 * never shows up becomes KVBM_ERR_TIMEOUT and the communicator is aborted,
 * never a hang. After an abort every later transfer fails with
 * KVBM_ERR_PEER. Teardown finalizes with a deadline, then destroys, and
 * aborts if finalizing does not finish (a dead peer).
 *
 * Ordering with the engine (config.engine_stream): before each group the
 * NCCL stream waits for everything enqueued on the engine stream so far,
 * and after it the engine stream waits for the group's fence.
 *
 * Compiled only when nccl.h is found; libnccl.so.2 is loaded at run time
 * (nccl_api.c), so the probe says KVBM_ERR_UNSUPPORTED where NCCL is not
 * installed. Not yet run on a GPU (see docs/TRANSFER.md).
 */
#include <cuda_runtime.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <stdatomic.h>
#include <time.h>

#include "core/alloc.h"
#include "core/check.h"
#include "core/clock.h"
#include "core/error.h"
#include "core/log.h"
#include "cuda_mem/check.h"
#include "kvbm/backend.h"
#include "nccl_api.h"
#include "xfer/comm.h"
#include "xfer/fault.h"
#include "xfer/object.h"

typedef struct nccl_state {
    int device;
    kvbm__comm_t comm;
    cudaStream_t stream;
    cudaStream_t engine;      /* the engine's stream, borrowed */
    bool has_engine;          /* ordering with the engine was asked for */
    cudaEvent_t engine_ready; /* recorded on the engine stream before a group */
    cudaEvent_t group_done;   /* recorded on our stream after a group */
    /* The data path (data_begin/data_end): held by a worker or a service
     * thread for a whole request, so one group at a time is in flight on the
     * communicator; guards comm launches and waits, the events and dead.
     * Leaf lock. */
    pthread_mutex_t lock;
    bool dead; /* aborted after a failure; under lock */
} nccl_state_t;

/* The loaded library. Every op but the probe runs after a probe that found
 * it (kvbm_xfer_create probes first), so this is never NULL there. */
static const kvbm__nccl_api_t *nccl(void)
{
    return kvbm__nccl_api();
}

/* ------------------------------------------------------------ checking */

/*
 * The one checking path for NCCL results (CUDA runtime results go through
 * KVBM_CUDA_CHECK of cuda/mem/check.h): maps to a status, records the reason
 * (core/error.h) and logs the first failure of each call site. ncclInProgress is not a failure
 * (non-blocking communicator); kvbm__comm_settle waits it out.
 */
static kvbm_status_t nccl_error(ncclResult_t rc, const char *expr, const char *file, int line,
                                atomic_int *logged)
{
    if (atomic_exchange_explicit(logged, 1, memory_order_relaxed) == 0)
        kvbm__log(KVBM_LOG_ERROR, "%s failed: %s (%s:%d)", expr, nccl()->get_error_string(rc), file,
                  line);
    kvbm_status_t status;
    switch (rc) {
    case ncclRemoteError:
        status = KVBM_ERR_PEER;
        break;
    case ncclInvalidArgument:
    case ncclInvalidUsage:
        status = KVBM_ERR_INVALID_ARG; /* reason: recorded below */
        break;
    default:
        status = KVBM_ERR_NCCL;
        break;
    }
    return kvbm__fail(status, "%s failed: %s", expr, nccl()->get_error_string(rc));
}

/* Evaluates @p expr; on failure stores the mapped status in @p status_var. */
#define KVBM_NCCL_CHECK(expr, status_var)                                                          \
    do {                                                                                           \
        ncclResult_t kvbm_nccl_rc_ = (expr);                                                       \
        if (kvbm_nccl_rc_ != ncclSuccess && kvbm_nccl_rc_ != ncclInProgress) {                     \
            static atomic_int kvbm_nccl_logged_;                                                   \
            (status_var) =                                                                         \
                nccl_error(kvbm_nccl_rc_, #expr, __FILE__, __LINE__, &kvbm_nccl_logged_);          \
        }                                                                                          \
    } while (0)

/* Returns from the function: ncclInProgress as KVBM_ERR_BUSY (comm.h's "in
 * progress"), anything else as KVBM_NCCL_CHECK maps it. */
#define KVBM_NCCL_PENDING(expr)                                                                    \
    do {                                                                                           \
        ncclResult_t kvbm_nccl_pending_rc_ = (expr);                                               \
        if (kvbm_nccl_pending_rc_ == ncclInProgress)                                               \
            return KVBM_ERR_BUSY;                                                                  \
        kvbm_status_t kvbm_nccl_pending_status_ = KVBM_OK;                                         \
        KVBM_NCCL_CHECK(kvbm_nccl_pending_rc_, kvbm_nccl_pending_status_);                         \
        return kvbm_nccl_pending_status_;                                                          \
    } while (0)

/* ------------------------------------------------------------ comm.h ops */

static kvbm_status_t nccl_comm_split(void *parent, int key, void **child_out)
{
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    ncclComm_t child = NULL;
    /* One color for every rank: the private twin of the caller's communicator. */
    ncclResult_t rc = nccl()->comm_split((ncclComm_t)parent, 0, key, &child, &config);
    *child_out = child;
    KVBM_NCCL_PENDING(rc);
}

static kvbm_status_t nccl_comm_poll(void *comm)
{
    ncclResult_t async = ncclSuccess;
    kvbm_status_t status = KVBM_OK;
    KVBM_NCCL_CHECK(nccl()->comm_get_async_error((ncclComm_t)comm, &async), status);
    if (status != KVBM_OK)
        return status;
    KVBM_NCCL_PENDING(async);
}

static kvbm_status_t nccl_comm_finalize(void *comm)
{
    KVBM_NCCL_PENDING(nccl()->comm_finalize((ncclComm_t)comm));
}

static kvbm_status_t nccl_comm_destroy(void *comm)
{
    KVBM_NCCL_PENDING(nccl()->comm_destroy((ncclComm_t)comm));
}

static kvbm_status_t nccl_comm_abort(void *comm)
{
    KVBM_NCCL_PENDING(nccl()->comm_abort((ncclComm_t)comm));
}

static kvbm_status_t nccl_comm_device(void *comm, int *device_out)
{
    KVBM_NCCL_PENDING(nccl()->comm_cu_device((ncclComm_t)comm, device_out));
}

static const kvbm__comm_ops_t nccl_comm_ops = {
    .split = nccl_comm_split,
    .poll = nccl_comm_poll,
    .finalize = nccl_comm_finalize,
    .destroy = nccl_comm_destroy,
    .abort = nccl_comm_abort,
    .device = nccl_comm_device,
};

static void nap(void)
{
    struct timespec ts = {.tv_sec = 0, .tv_nsec = 20000};
    nanosleep(&ts, NULL);
}

/* ------------------------------------------------------------ ops */

static kvbm_status_t nccl_probe(void)
{
    int count = 0;
    /* No logging here: "no GPU" is an answer, not an error. */
    if (cudaGetDeviceCount(&count) != cudaSuccess) {
        (void)cudaGetLastError();
        return KVBM_ERR_NO_DEVICE;
    }
    if (count <= 0)
        return KVBM_ERR_NO_DEVICE;
    return kvbm__nccl_api() != NULL ? KVBM_OK : KVBM_ERR_UNSUPPORTED;
}

static kvbm_status_t nccl_make_blob(kvbm_xfer_t *xfer, uint8_t *blob, size_t capacity,
                                    size_t *len_out)
{
    if (xfer->nccl_comm_in != NULL) {
        *len_out = 0; /* the caller's communicator already joins the ranks */
        return KVBM_OK;
    }
    ncclUniqueId id;
    if (capacity < sizeof(id))
        return KVBM_ERR_INTERNAL;
    kvbm_status_t status = KVBM_OK;
    KVBM_NCCL_CHECK(nccl()->get_unique_id(&id), status);
    if (status != KVBM_OK)
        return status;
    memcpy(blob, &id, sizeof(id));
    *len_out = sizeof(id);
    return KVBM_OK;
}

/* The private communicator: split from the caller's, on its device. */
static kvbm_status_t comm_from_borrowed(kvbm_xfer_t *xfer, nccl_state_t *st, uint64_t deadline)
{
    int nranks = 0, rank = -1, device = -1;
    kvbm_status_t status = KVBM_OK;
    ncclComm_t parent = (ncclComm_t)xfer->nccl_comm_in;
    KVBM_NCCL_CHECK(nccl()->comm_count(parent, &nranks), status);
    if (status == KVBM_OK)
        KVBM_NCCL_CHECK(nccl()->comm_user_rank(parent, &rank), status);
    if (status == KVBM_OK && (nranks != xfer->size || rank != xfer->rank)) {
        kvbm__log(KVBM_LOG_ERROR, "communicator is rank %d of %d, config says %d of %d", rank,
                  nranks, xfer->rank, xfer->size);
        status = kvbm__fail(KVBM_ERR_INVALID_ARG,
                            "xfer config: nccl_comm is rank %d of %d, the config says %d of %d",
                            rank, nranks, xfer->rank, xfer->size);
    }
    if (status == KVBM_OK)
        status = nccl_comm_device(parent, &device);
    if (status != KVBM_OK)
        return status;
    st->device = kvbm__comm_pick_device(true, device, xfer->cuda_device, -1);
    KVBM_CUDA_CHECK(cudaSetDevice(st->device), status);
    if (status == KVBM_OK)
        status = kvbm__comm_split(&nccl_comm_ops, parent, xfer->rank, deadline, &st->comm);
    return status;
}

/* A communicator of kvbm's own, from rank 0's unique id. */
static kvbm_status_t comm_from_id(kvbm_xfer_t *xfer, nccl_state_t *st, const uint8_t *blob,
                                  size_t len, uint64_t deadline)
{
    ncclUniqueId id;
    if (len != sizeof(id))
        return kvbm__fail(KVBM_ERR_PARSE, "NCCL unique id from rank 0 is %zu bytes, not %zu", len,
                          sizeof(id));
    memcpy(&id, blob, sizeof(id));
    int current = 0;
    kvbm_status_t status = KVBM_OK;
    KVBM_CUDA_CHECK(cudaGetDevice(&current), status);
    if (status != KVBM_OK)
        return status;
    st->device = kvbm__comm_pick_device(false, -1, xfer->cuda_device, current);
    KVBM_CUDA_CHECK(cudaSetDevice(st->device), status);
    if (status != KVBM_OK)
        return status;
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    ncclComm_t comm = NULL;
    KVBM_NCCL_CHECK(nccl()->comm_init_rank_config(&comm, xfer->size, id, xfer->rank, &config),
                    status);
    kvbm__comm_t owned = {.ops = &nccl_comm_ops, .handle = comm, .owned = true};
    if (status == KVBM_OK)
        status = kvbm__comm_settle(&owned, deadline);
    if (status != KVBM_OK) {
        kvbm__comm_fail(&owned);
        return status;
    }
    st->comm = owned;
    return KVBM_OK;
}

static kvbm_status_t nccl_init(kvbm_xfer_t *xfer, const uint8_t *blob, size_t len)
{
    kvbm_status_t status = KVBM_OK;
    uint64_t deadline = kvbm__deadline_ms(xfer->timeout_ms);
    nccl_state_t *st = kvbm__calloc(1, sizeof(*st));
    if (st == NULL)
        return KVBM_ERR_NO_MEMORY;
    KVBM_PTHREAD_CHECK(pthread_mutex_init(&st->lock, NULL), status);
    if (status != KVBM_OK)
        goto err_free;
    if (xfer->nccl_comm_in != NULL)
        status = comm_from_borrowed(xfer, st, deadline);
    else
        status = comm_from_id(xfer, st, blob, len, deadline);
    if (status != KVBM_OK)
        goto err_mutex;
    KVBM_CUDA_CHECK(cudaStreamCreateWithFlags(&st->stream, cudaStreamNonBlocking), status);
    if (status != KVBM_OK)
        goto err_comm;
    KVBM_CUDA_CHECK(cudaEventCreateWithFlags(&st->engine_ready, cudaEventDisableTiming), status);
    if (status != KVBM_OK)
        goto err_stream;
    KVBM_CUDA_CHECK(cudaEventCreateWithFlags(&st->group_done, cudaEventDisableTiming), status);
    if (status != KVBM_OK)
        goto err_ready;
    if (xfer->engine_stream != NULL) {
        st->has_engine = true;
        st->engine = (cudaStream_t)kvbm_stream_native(xfer->engine_stream);
    }
    xfer->transport_state = st;
    return KVBM_OK;

err_ready:
    (void)cudaEventDestroy(st->engine_ready);
err_stream:
    (void)cudaStreamDestroy(st->stream);
err_comm:
    kvbm__comm_fail(&st->comm);
err_mutex:
    kvbm__mutex_destroy(&st->lock);
err_free:
    kvbm__free(st);
    return status;
}

static void nccl_fini(kvbm_xfer_t *xfer)
{
    nccl_state_t *st = xfer->transport_state;
    if (st == NULL)
        return;
    kvbm_status_t status = KVBM_OK;
    KVBM_CUDA_CHECK(cudaSetDevice(st->device), status);
    /* Finalize with a deadline, then destroy; abort if a dead peer keeps it
     * from finishing. Only kvbm's own communicator. */
    (void)kvbm__comm_close(&st->comm, kvbm__deadline_ms(xfer->timeout_ms));
    KVBM_CUDA_CHECK(cudaEventDestroy(st->group_done), status);
    KVBM_CUDA_CHECK(cudaEventDestroy(st->engine_ready), status);
    KVBM_CUDA_CHECK(cudaStreamDestroy(st->stream), status);
    (void)status; /* teardown goes on regardless; failures were logged */
    kvbm__mutex_destroy(&st->lock);
    kvbm__free(st);
    xfer->transport_state = NULL;
}

/* Waits for the group's fence, watching the communicator and the deadline. */
static kvbm_status_t group_wait(nccl_state_t *st, uint64_t deadline)
{
    kvbm_status_t status = KVBM_OK;
    for (;;) {
        cudaError_t q = cudaEventQuery(st->group_done);
        if (q == cudaSuccess)
            return KVBM_OK;
        if (q != cudaErrorNotReady) {
            KVBM_CUDA_CHECK(q, status);
            return status;
        }
        status = nccl_comm_poll(st->comm.handle);
        if (status == KVBM_ERR_BUSY)
            status = KVBM_OK; /* a launch still in progress: not an error */
        if (status != KVBM_OK)
            return status;
        if (kvbm__now_us() >= deadline)
            return kvbm__fail(KVBM_ERR_TIMEOUT,
                              "NCCL transfer did not complete before its deadline");
        nap();
    }
}

/* One group of sends or receives for a plan, ordered after the engine's
 * work so far, with a fence after it; then wait for the fence. */
static kvbm_status_t nccl_move(kvbm_xfer_t *xfer, int peer, const kvbm__copy_plan_t *plan,
                               bool send, uint64_t deadline)
{
    nccl_state_t *st = xfer->transport_state;
    kvbm_status_t status = KVBM_OK;
    /* The caller holds st->lock (data_begin). */
    if (st->dead)
        return kvbm__fail(KVBM_ERR_PEER,
                          "NCCL communicator was aborted after an earlier failed transfer");
    ncclComm_t comm = (ncclComm_t)st->comm.handle;
    KVBM_CUDA_CHECK(cudaSetDevice(st->device), status);
    if (status == KVBM_OK && st->has_engine) {
        /* A push never reads KV the engine is still writing; a receive never
         * overwrites blocks the engine still reads. */
        KVBM_CUDA_CHECK(cudaEventRecord(st->engine_ready, st->engine), status);
        if (status == KVBM_OK)
            KVBM_CUDA_CHECK(cudaStreamWaitEvent(st->stream, st->engine_ready, 0), status);
    }
    if (status != KVBM_OK)
        return status;
    KVBM_NCCL_CHECK(nccl()->group_start(), status);
    if (status != KVBM_OK)
        return status;
    for (size_t i = 0; i < plan->count && status == KVBM_OK; i++) {
        const kvbm_copy_t *piece = &plan->pieces[i];
        if (send)
            KVBM_NCCL_CHECK(
                nccl()->send(piece->src, piece->bytes, ncclUint8, peer, comm, st->stream), status);
        else
            KVBM_NCCL_CHECK(
                nccl()->recv(piece->dst, piece->bytes, ncclUint8, peer, comm, st->stream), status);
    }
    /* The group must be closed even after a failed enqueue. */
    kvbm_status_t end = KVBM_OK;
    KVBM_NCCL_CHECK(nccl()->group_end(), end);
    if (status == KVBM_OK)
        status = end;
    if (status == KVBM_OK) {
        status = kvbm__comm_settle(&st->comm, deadline);
        if (status == KVBM_OK)
            KVBM_CUDA_CHECK(cudaEventRecord(st->group_done, st->stream), status);
        /* Later engine work sees the bytes that arrived. */
        if (status == KVBM_OK && st->has_engine)
            KVBM_CUDA_CHECK(cudaStreamWaitEvent(st->engine, st->group_done, 0), status);
        if (status == KVBM_OK)
            status = group_wait(st, deadline);
    }
    if (status != KVBM_OK) {
        if (status == KVBM_ERR_TIMEOUT)
            kvbm__log(KVBM_LOG_ERROR, "NCCL %s with rank %d missed its deadline",
                      send ? "send" : "recv", peer);
        /* A half-done group cannot be cancelled: abort kvbm's communicator so
         * the stream drains, and fail every later transfer. */
        kvbm__comm_fail(&st->comm);
        st->dead = true;
    }
    return status;
}

static kvbm_status_t nccl_data_begin(kvbm_xfer_t *xfer, bool wait)
{
    nccl_state_t *st = xfer->transport_state;
    if (!wait && kvbm__xfer_fault_take_busy())
        return KVBM_ERR_BUSY;
    if (wait) {
        kvbm__mutex_lock(&st->lock);
        return KVBM_OK;
    }
    return pthread_mutex_trylock(&st->lock) == 0 ? KVBM_OK : KVBM_ERR_BUSY;
}

static void nccl_data_end(kvbm_xfer_t *xfer)
{
    nccl_state_t *st = xfer->transport_state;
    kvbm__mutex_unlock(&st->lock);
}

static kvbm_status_t nccl_send(kvbm_xfer_t *xfer, int peer, int fd, const kvbm__copy_plan_t *plan,
                               uint64_t deadline_us)
{
    size_t allowed = kvbm__xfer_fault_clip(plan->bytes);
    if (allowed == plan->bytes)
        return nccl_move(xfer, peer, plan, true, deadline_us);
    /* Fault injection: the whole pieces that fit in the allowed bytes go
     * out (a cut piece would not match its receive), then the fault fires. */
    kvbm__copy_plan_t prefix = {.pieces = plan->pieces};
    while (prefix.count < plan->count && prefix.bytes + plan->pieces[prefix.count].bytes <= allowed)
        prefix.bytes += plan->pieces[prefix.count++].bytes;
    kvbm_status_t status =
        prefix.count > 0 ? nccl_move(xfer, peer, &prefix, true, deadline_us) : KVBM_OK;
    if (status == KVBM_OK)
        kvbm__xfer_fault_fire();
    return status;
}

static kvbm_status_t nccl_recv(kvbm_xfer_t *xfer, int peer, int fd, const kvbm__copy_plan_t *plan,
                               uint64_t deadline_us)
{
    return nccl_move(xfer, peer, plan, false, deadline_us);
}

static kvbm_status_t nccl_scratch_alloc(kvbm_xfer_t *xfer, size_t bytes, void **ptr_out)
{
    nccl_state_t *st = xfer->transport_state;
    void *ptr = NULL;
    kvbm_status_t status = KVBM_OK;
    KVBM_CUDA_CHECK(cudaSetDevice(st->device), status);
    if (status == KVBM_OK)
        KVBM_CUDA_CHECK(cudaMalloc(&ptr, bytes ? bytes : 1), status);
    if (status == KVBM_OK)
        *ptr_out = ptr;
    return status;
}

static void nccl_scratch_free(kvbm_xfer_t *xfer, void *ptr)
{
    nccl_state_t *st = xfer->transport_state;
    kvbm_status_t status = KVBM_OK;
    KVBM_CUDA_CHECK(cudaSetDevice(st->device), status);
    KVBM_CUDA_CHECK(cudaFree(ptr), status);
    (void)status;
}

const kvbm__xfer_ops_t kvbm__xfer_nccl_ops = {
    .version = KVBM__XFER_OPS_VERSION,
    .name = "nccl",
    .transport = KVBM_XFER_NCCL,
    .mem_kind = KVBM_XFER_MEM_DEVICE,
    .message_based = true,
    .probe = nccl_probe,
    .make_blob = nccl_make_blob,
    .init = nccl_init,
    .fini = nccl_fini,
    .send = nccl_send,
    .recv = nccl_recv,
    .data_begin = nccl_data_begin,
    .data_end = nccl_data_end,
    .scratch_alloc = nccl_scratch_alloc,
    .scratch_free = nccl_scratch_free,
};
