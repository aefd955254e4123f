/*
 * The CPU transport: block bytes travel on the request's own TCP connection,
 * right after the control message that announced them. Both sides turn their
 * plan into iovecs and move them with sendmsg/recvmsg, up to 1024 pieces per
 * system call, so a transfer costs a handful of calls, not one per region.
 * Chunk boundaries need not match: TCP is a byte stream.
 */
#include <signal.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "fault.h"
#include "object.h"
#include "socket_io.h"

/* ------------------------------------------------------------ ops */

static kvbm_status_t socket_data_begin(kvbm_xfer_t *xfer, bool wait)
{
    /* Each request has its own connection and thread on both sides: the
     * data path is never shared, so it is always free (but for tests). */
    if (!wait && kvbm__xfer_fault_take_busy())
        return KVBM_ERR_BUSY;
    return KVBM_OK;
}

static void socket_data_end(kvbm_xfer_t *xfer)
{
}

static kvbm_status_t socket_probe(void)
{
    return KVBM_OK;
}

static kvbm_status_t socket_make_blob(kvbm_xfer_t *xfer, uint8_t *blob, size_t capacity,
                                      size_t *len_out)
{
    *len_out = 0; /* the socket mesh is all the socket transport needs */
    return KVBM_OK;
}

static kvbm_status_t socket_init(kvbm_xfer_t *xfer, const uint8_t *blob, size_t len)
{
    return KVBM_OK;
}

static void socket_fini(kvbm_xfer_t *xfer)
{
}

/* iovecs of the first @p limit bytes of a plan: its sources when sending,
 * its destinations when receiving. */
static kvbm_status_t plan_iov(const kvbm__copy_plan_t *plan, bool send, size_t limit,
                              struct iovec **iov_out, size_t *n_out)
{
    struct iovec *iov = kvbm__alloc(plan->count, sizeof(*iov));
    if (iov == NULL)
        return KVBM_ERR_NO_MEMORY;
    size_t n = 0;
    for (size_t i = 0; i < plan->count && limit > 0; i++) {
        const kvbm_copy_t *piece = &plan->pieces[i];
        size_t len = piece->bytes < limit ? piece->bytes : limit;
        iov[n].iov_base = send ? (void *)piece->src : piece->dst;
        iov[n].iov_len = len;
        n++;
        limit -= len;
    }
    *iov_out = iov;
    *n_out = n;
    return KVBM_OK;
}

/* Fault injection: one byte every @p interval_ms, until the peer gives up. */
static kvbm_status_t socket_drip(int fd, const struct iovec *iov, size_t n, uint32_t interval_ms,
                                 uint64_t deadline_us)
{
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < iov[i].iov_len; j++) {
            kvbm_status_t status =
                kvbm__sock_write(fd, (const char *)iov[i].iov_base + j, 1, deadline_us);
            if (status != KVBM_OK)
                return status;
            struct timespec ts = {.tv_sec = (time_t)(interval_ms / 1000u),
                                  .tv_nsec = (long)(interval_ms % 1000u) * 1000000L};
            nanosleep(&ts, NULL);
            if (kvbm__ms_left(deadline_us) == 0)
                return KVBM_ERR_TIMEOUT;
        }
    }
    return KVBM_OK;
}

static kvbm_status_t socket_send(kvbm_xfer_t *xfer, int peer, int fd, const kvbm__copy_plan_t *plan,
                                 uint64_t deadline_us)
{
    size_t allowed = kvbm__xfer_fault_clip(plan->bytes);
    struct iovec *iov;
    size_t n;
    kvbm_status_t status = plan_iov(plan, true, allowed, &iov, &n);
    if (status != KVBM_OK)
        return status;
    uint32_t drip_ms = kvbm__xfer_fault_take_drip();
    if (drip_ms != 0)
        status = socket_drip(fd, iov, n, drip_ms, deadline_us);
    else
        status = kvbm__sock_writev(fd, iov, n, deadline_us);
    kvbm__free(iov);
    if (status == KVBM_OK && allowed < plan->bytes)
        kvbm__xfer_fault_fire();
    return status;
}

static kvbm_status_t socket_recv(kvbm_xfer_t *xfer, int peer, int fd, const kvbm__copy_plan_t *plan,
                                 uint64_t deadline_us)
{
    struct iovec *iov;
    size_t n;
    kvbm_status_t status = plan_iov(plan, false, plan->bytes, &iov, &n);
    if (status != KVBM_OK)
        return status;
    status = kvbm__sock_readv(fd, iov, n, deadline_us);
    kvbm__free(iov);
    return status;
}

static kvbm_status_t socket_scratch_alloc(kvbm_xfer_t *xfer, size_t bytes, void **ptr_out)
{
    void *ptr = kvbm__alloc(bytes, 1);
    if (ptr == NULL)
        return KVBM_ERR_NO_MEMORY;
    *ptr_out = ptr;
    return KVBM_OK;
}

static void socket_scratch_free(kvbm_xfer_t *xfer, void *ptr)
{
    kvbm__free(ptr);
}

const kvbm__xfer_ops_t kvbm__xfer_socket_ops = {
    .version = KVBM__XFER_OPS_VERSION,
    .name = "socket",
    .transport = KVBM_XFER_SOCKET,
    .mem_kind = KVBM_XFER_MEM_HOST,
    .message_based = false,
    .probe = socket_probe,
    .make_blob = socket_make_blob,
    .init = socket_init,
    .fini = socket_fini,
    .send = socket_send,
    .recv = socket_recv,
    .data_begin = socket_data_begin,
    .data_end = socket_data_end,
    .scratch_alloc = socket_scratch_alloc,
    .scratch_free = socket_scratch_free,
};
