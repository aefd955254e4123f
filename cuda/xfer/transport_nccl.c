/*
 * The NCCL transport: block bytes move with ncclSend/ncclRecv, every chunk of
 * a transfer inside one ncclGroupStart/ncclGroupEnd, on the object's own CUDA
 * stream. Control messages stay on the loopback sockets (host/xfer/). Both
 * sides cut the bytes at the same places (message_based: the plan ends a
 * chunk wherever either side's run ends), so every ncclSend meets an ncclRecv
 * of the same size. The receiver enqueues its group right after answering,
 * the sender right after reading the answer; NCCL pairs them whichever
 * comes first.
 *
 * The communicator is non-blocking (ncclConfig_t.blocking = 0): init and
 * group launches are polled with a deadline, so a peer that never shows up
 * becomes KVBM_ERR_TIMEOUT and the communicator is aborted, never a hang.
 * After an abort every later transfer fails with KVBM_ERR_PEER.
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

#include "core/check.h"
#include "core/clock.h"
#include "core/log.h"
#include "cuda_mem/check.h"
#include "nccl_api.h"
#include "xfer/fault.h"
#include "xfer/object.h"

typedef struct nccl_state {
    int device;
    ncclComm_t comm;
    bool owns_comm;
    cudaStream_t stream;
    /* The data path (data_begin/data_end): held by the worker or the service
     * thread for a whole request, so one group at a time is in flight on the
     * communicator; guards comm launches and waits, and dead. Leaf lock. */
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
 * KVBM_CUDA_CHECK of cuda/mem/check.h): maps to a status and logs the first
 * failure of each call site. ncclInProgress is not a failure (non-blocking
 * communicator); comm_settle waits it out.
 */
static kvbm_status_t nccl_error(ncclResult_t rc, const char *expr, const char *file, int line,
                                atomic_int *logged)
{
    if (atomic_exchange_explicit(logged, 1, memory_order_relaxed) == 0)
        kvbm__log(KVBM_LOG_ERROR, "%s failed: %s (%s:%d)", expr, nccl()->get_error_string(rc), file,
                  line);
    switch (rc) {
    case ncclRemoteError:
        return KVBM_ERR_PEER;
    case ncclInvalidArgument:
    case ncclInvalidUsage:
        return KVBM_ERR_INVALID_ARG;
    default:
        return KVBM_ERR_NCCL;
    }
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

static void nap(void)
{
    struct timespec ts = {.tv_sec = 0, .tv_nsec = 20000};
    nanosleep(&ts, NULL);
}

/* Polls a non-blocking communicator until its last call left ncclInProgress. */
static kvbm_status_t comm_settle(ncclComm_t comm, uint64_t deadline)
{
    for (;;) {
        kvbm_status_t status = KVBM_OK;
        ncclResult_t async = ncclSuccess;
        KVBM_NCCL_CHECK(nccl()->comm_get_async_error(comm, &async), status);
        if (status != KVBM_OK)
            return status;
        if (async != ncclInProgress) {
            KVBM_NCCL_CHECK(async, status);
            return status;
        }
        if (kvbm__now_us() / 1000u >= deadline)
            return KVBM_ERR_TIMEOUT;
        nap();
    }
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

static kvbm_status_t nccl_init(kvbm_xfer_t *xfer, const uint8_t *blob, size_t len)
{
    int count = 0;
    kvbm_status_t status = KVBM_OK;
    KVBM_CUDA_CHECK(cudaGetDeviceCount(&count), status);
    if (status != KVBM_OK)
        return status;
    nccl_state_t *st = calloc(1, sizeof(*st));
    if (st == NULL)
        return KVBM_ERR_NO_MEMORY;
    st->device = xfer->cuda_device >= 0 ? xfer->cuda_device : xfer->rank % count;
    KVBM_PTHREAD_CHECK(pthread_mutex_init(&st->lock, NULL), status);
    if (status != KVBM_OK)
        goto err_free;
    KVBM_CUDA_CHECK(cudaSetDevice(st->device), status);
    if (status != KVBM_OK)
        goto err_mutex;

    if (xfer->nccl_comm_in != NULL) {
        int nranks = 0, rank = -1;
        st->comm = (ncclComm_t)xfer->nccl_comm_in;
        KVBM_NCCL_CHECK(nccl()->comm_count(st->comm, &nranks), status);
        if (status == KVBM_OK)
            KVBM_NCCL_CHECK(nccl()->comm_user_rank(st->comm, &rank), status);
        if (status == KVBM_OK && (nranks != xfer->size || rank != xfer->rank)) {
            kvbm__log(KVBM_LOG_ERROR, "communicator is rank %d of %d, config says %d of %d", rank,
                      nranks, xfer->rank, xfer->size);
            status = KVBM_ERR_INVALID_ARG;
        }
        if (status != KVBM_OK)
            goto err_mutex;
    } else {
        ncclUniqueId id;
        if (len != sizeof(id)) {
            status = KVBM_ERR_PARSE;
            goto err_mutex;
        }
        memcpy(&id, blob, sizeof(id));
        ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
        config.blocking = 0;
        KVBM_NCCL_CHECK(
            nccl()->comm_init_rank_config(&st->comm, xfer->size, id, xfer->rank, &config), status);
        if (status == KVBM_OK)
            status = comm_settle(st->comm, kvbm__now_us() / 1000u + xfer->timeout_ms);
        if (status != KVBM_OK) {
            if (st->comm != NULL)
                (void)nccl()->comm_abort(st->comm);
            goto err_mutex;
        }
        st->owns_comm = true;
    }
    KVBM_CUDA_CHECK(cudaStreamCreateWithFlags(&st->stream, cudaStreamNonBlocking), status);
    if (status != KVBM_OK)
        goto err_comm;
    xfer->transport_state = st;
    return KVBM_OK;

err_comm:
    if (st->owns_comm)
        (void)nccl()->comm_destroy(st->comm);
err_mutex:
    kvbm__mutex_destroy(&st->lock);
err_free:
    free(st);
    return status;
}

static void nccl_fini(kvbm_xfer_t *xfer)
{
    nccl_state_t *st = xfer->transport_state;
    if (st == NULL)
        return;
    kvbm_status_t status = KVBM_OK;
    KVBM_CUDA_CHECK(cudaSetDevice(st->device), status);
    KVBM_CUDA_CHECK(cudaStreamDestroy(st->stream), status);
    if (st->owns_comm)
        KVBM_NCCL_CHECK(nccl()->comm_destroy(st->comm), status);
    (void)status; /* teardown goes on regardless; failures were logged */
    kvbm__mutex_destroy(&st->lock);
    free(st);
    xfer->transport_state = NULL;
}

/* One group of sends or receives for a plan, then wait for the stream. */
static kvbm_status_t nccl_move(kvbm_xfer_t *xfer, int peer, const kvbm__copy_plan_t *plan,
                               bool send)
{
    nccl_state_t *st = xfer->transport_state;
    kvbm_status_t status = KVBM_OK;
    /* The caller holds st->lock (data_begin). */
    if (st->dead)
        return KVBM_ERR_PEER;
    uint64_t deadline = kvbm__now_us() / 1000u + xfer->timeout_ms;
    KVBM_CUDA_CHECK(cudaSetDevice(st->device), status);
    if (status != KVBM_OK)
        return status;
    KVBM_NCCL_CHECK(nccl()->group_start(), status);
    if (status != KVBM_OK)
        return status;
    for (size_t i = 0; i < plan->count && status == KVBM_OK; i++) {
        const kvbm_copy_t *piece = &plan->pieces[i];
        if (send)
            KVBM_NCCL_CHECK(
                nccl()->send(piece->src, piece->bytes, ncclUint8, peer, st->comm, st->stream),
                status);
        else
            KVBM_NCCL_CHECK(
                nccl()->recv(piece->dst, piece->bytes, ncclUint8, peer, st->comm, st->stream),
                status);
    }
    /* The group must be closed even after a failed enqueue. */
    kvbm_status_t end = KVBM_OK;
    KVBM_NCCL_CHECK(nccl()->group_end(), end);
    if (status == KVBM_OK)
        status = end;
    if (status == KVBM_OK)
        status = comm_settle(st->comm, deadline);
    while (status == KVBM_OK) {
        cudaError_t q = cudaStreamQuery(st->stream);
        if (q == cudaSuccess)
            break;
        if (q != cudaErrorNotReady) {
            KVBM_CUDA_CHECK(q, status);
            break;
        }
        ncclResult_t async = ncclSuccess;
        KVBM_NCCL_CHECK(nccl()->comm_get_async_error(st->comm, &async), status);
        if (status == KVBM_OK)
            KVBM_NCCL_CHECK(async, status);
        if (status == KVBM_OK && kvbm__now_us() / 1000u >= deadline) {
            kvbm__log(KVBM_LOG_ERROR, "NCCL %s with rank %d timed out after %u ms",
                      send ? "send" : "recv", peer, xfer->timeout_ms);
            status = KVBM_ERR_TIMEOUT;
        }
        if (status == KVBM_OK)
            nap();
    }
    if (status != KVBM_OK) {
        /* A half-done group cannot be cancelled: abort the communicator so
         * the stream drains, and fail every later transfer. */
        (void)nccl()->comm_abort(st->comm);
        st->dead = true;
        st->owns_comm = false; /* aborted: nothing left to destroy */
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

static kvbm_status_t nccl_send(kvbm_xfer_t *xfer, int peer, int fd, const kvbm__copy_plan_t *plan)
{
    size_t allowed = kvbm__xfer_fault_clip(plan->bytes);
    if (allowed == plan->bytes)
        return nccl_move(xfer, peer, plan, true);
    /* Fault injection: the whole pieces that fit in the allowed bytes go
     * out (a cut piece would not match its receive), then the fault fires. */
    kvbm__copy_plan_t prefix = {.pieces = plan->pieces};
    while (prefix.count < plan->count && prefix.bytes + plan->pieces[prefix.count].bytes <= allowed)
        prefix.bytes += plan->pieces[prefix.count++].bytes;
    kvbm_status_t status = prefix.count > 0 ? nccl_move(xfer, peer, &prefix, true) : KVBM_OK;
    if (status == KVBM_OK)
        kvbm__xfer_fault_fire();
    return status;
}

static kvbm_status_t nccl_recv(kvbm_xfer_t *xfer, int peer, int fd, const kvbm__copy_plan_t *plan)
{
    return nccl_move(xfer, peer, plan, false);
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
