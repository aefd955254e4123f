/*
 * Transfers, server side: one service thread per incoming connection
 * (acceptor.c starts them) answers the requests of that peer: it allocates
 * and receives for a push, offers its matched prefix for a pull, and
 * registers only what arrived whole. Protocol: docs/TRANSFER.md and xfer.c.
 *
 * Nothing a peer sends sizes memory beyond this rank's own configuration: a
 * push larger than the manager is refused before its arrays are allocated
 * (its payload is read through a small buffer and dropped), a pull reads
 * only as many hashes as the manager could ever match, raw bytes land in the
 * configured scratch chunk by chunk, and every plan is bounded by the blocks
 * this rank holds and the region sizes checked at creation.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/check.h"
#include "core/log.h"
#include "fault.h"
#include "object.h"

static void notify_arrival(kvbm_xfer_t *xfer, int peer, kvbm_status_t status, size_t count,
                           const uint64_t *hashes, const uint32_t *ids)
{
    if (xfer->on_arrival == NULL)
        return;
    kvbm_xfer_arrival_t arrival = {
        .peer = peer, .status = status, .count = count, .hashes = hashes, .ids = ids};
    kvbm__mutex_lock(&xfer->arrival_lock);
    xfer->on_arrival(xfer->arrival_ctx, &arrival);
    kvbm__mutex_unlock(&xfer->arrival_lock);
}

/* The status a reply carries: @p status, unless a test made this rank lie. */
static int32_t reply_status(kvbm_status_t status)
{
    int64_t lie = 0;
    return kvbm__xfer_fault_lie_take(KVBM__LIE_STATUS, &lie) ? (int32_t)lie : status;
}

/* Registers the blocks marked in @p need, run by run, so each run's first
 * hash gets its true parent (the hash before it, or the pusher's parent). */
static kvbm_status_t register_needed(kvbm_xfer_t *xfer, const kvbm__wire_hdr_t *hdr,
                                     const uint64_t *hashes, const uint8_t *need, size_t n,
                                     uint32_t *dst)
{
    kvbm_register_opts_t opts = {.parent_hash = hdr->arg,
                                 .has_parent = (hdr->flags & 1u) != 0,
                                 .priority = (uint8_t)((hdr->flags >> 8) & 0xffu)};
    for (size_t i = 0; i < n;) {
        if (!need[i]) {
            i++;
            continue;
        }
        size_t j = i;
        while (j < n && need[j])
            j++;
        if (i > 0) {
            opts.parent_hash = hashes[i - 1];
            opts.has_parent = true;
        }
        kvbm_status_t status =
            kvbm_manager_register(xfer->manager, dst + i, hashes + i, j - i, &opts, dst + i);
        if (status != KVBM_OK)
            return status;
        i = j;
    }
    return KVBM_OK;
}

/* A push this rank could never hold: drop its payload, refuse it. */
static kvbm_status_t refuse_oversized_push(kvbm_xfer_t *xfer, int peer, int fd, size_t n)
{
    kvbm_status_t status = kvbm__sock_discard(
        fd, (uint64_t)n * (sizeof(uint64_t) + sizeof(uint32_t)), kvbm__xfer_msg_deadline(xfer));
    if (status != KVBM_OK)
        return status;
    kvbm__wire_hdr_t reply;
    kvbm__wire_hdr_init(&reply, KVBM__MSG_ACCEPT, reply_status(KVBM_ERR_NO_BLOCKS), 0);
    notify_arrival(xfer, peer, KVBM_ERR_NO_BLOCKS, n, NULL, NULL);
    return kvbm__wire_send(fd, kvbm__xfer_msg_deadline(xfer), &reply, NULL, 0, NULL, 0);
}

/* The arrays of one incoming push; n blocks, m of them to receive. */
typedef struct push_arrays {
    size_t n, m;
    uint64_t *hashes;
    uint32_t *src;       /* the pusher's blocks */
    uint32_t *dst;       /* this rank's block for each */
    uint32_t *fresh;     /* the blocks allocated here, in order */
    uint32_t *fresh_src; /* the pusher's blocks for them */
    uint8_t *need;       /* 1: allocated here, its bytes travel; 0: held already */
} push_arrays_t;

static void push_arrays_free(push_arrays_t *a)
{
    kvbm__free(a->hashes);
    kvbm__free(a->src);
    kvbm__free(a->dst);
    kvbm__free(a->fresh);
    kvbm__free(a->fresh_src);
    kvbm__free(a->need);
}

static kvbm_status_t push_arrays_alloc(push_arrays_t *a, size_t n)
{
    *a = (push_arrays_t){.n = n};
    a->hashes = kvbm__alloc(n, sizeof(*a->hashes));
    a->src = kvbm__alloc(n, sizeof(*a->src));
    a->dst = kvbm__alloc(n, sizeof(*a->dst));
    a->fresh = kvbm__alloc(n, sizeof(*a->fresh));
    a->fresh_src = kvbm__alloc(n, sizeof(*a->fresh_src));
    a->need = kvbm__alloc(n, 1);
    if (a->hashes != NULL && a->src != NULL && a->dst != NULL && a->fresh != NULL &&
        a->fresh_src != NULL && a->need != NULL)
        return KVBM_OK;
    push_arrays_free(a);
    return KVBM_ERR_NO_MEMORY;
}

/* Acquires the blocks whose hashes this rank holds, allocates the rest.
 * Returns the status ACCEPT carries; on failure nothing is held. */
static kvbm_status_t push_prepare(kvbm_xfer_t *xfer, kvbm_status_t gate, push_arrays_t *a)
{
    size_t found = 0, n = a->n;
    kvbm_status_t prep = gate;
    if (prep == KVBM_OK)
        prep = kvbm_manager_scan(xfer->manager, a->hashes, n, true, a->dst, &found);
    if (prep == KVBM_OK && found < n) {
        prep = kvbm_manager_allocate(xfer->manager, n - found, a->fresh, NULL, NULL);
        if (prep != KVBM_OK) {
            for (size_t i = n; i-- > 0;)
                if (a->dst[i] != KVBM_BLOCK_NONE)
                    (void)kvbm_manager_release(xfer->manager, &a->dst[i], 1);
        }
    }
    if (prep != KVBM_OK)
        return prep;
    for (size_t i = 0; i < n; i++) {
        a->need[i] = a->dst[i] == KVBM_BLOCK_NONE;
        if (a->need[i]) {
            a->fresh_src[a->m] = a->src[i];
            a->dst[i] = a->fresh[a->m++]; /* NOLINT(clang-analyzer-core.uninitialized.Assign):
                                             allocate filled n - found entries, one per miss */
        }
    }
    return KVBM_OK;
}

/* Every byte arrived: register, tell the application, drop this rank's
 * references so the blocks wait in the inactive pool for a match, and only
 * then tell the pusher (DONE), so its completion means all of that. */
static kvbm_status_t push_complete(kvbm__xfer_conn_t *conn, const kvbm__wire_hdr_t *hdr,
                                   push_arrays_t *a)
{
    kvbm_xfer_t *xfer = conn->xfer;
    size_t n = a->n;
    kvbm_status_t reg = register_needed(xfer, hdr, a->hashes, a->need, n, a->dst);
    notify_arrival(xfer, conn->peer, reg, n, reg == KVBM_OK ? a->hashes : NULL,
                   reg == KVBM_OK ? a->dst : NULL);
    kvbm__xfer_release_reverse(xfer->manager, a->dst, n);
    kvbm__wire_hdr_t reply;
    kvbm__wire_hdr_init(&reply, KVBM__MSG_DONE, reg, (uint32_t)(reg == KVBM_OK ? n : 0));
    return kvbm__wire_send(conn->fd, kvbm__xfer_msg_deadline(xfer), &reply, a->dst,
                           reg == KVBM_OK ? n * sizeof(*a->dst) : 0, NULL, 0);
}

/*
 * Serves one PUSH whose header was read. Hashes this rank already holds are
 * acquired, not received again: ACCEPT says per block whether its bytes are
 * needed, and only those travel. Returns non-OK when the connection is lost
 * or out of step.
 */
static kvbm_status_t serve_push(kvbm__xfer_conn_t *conn, const kvbm__wire_hdr_t *hdr,
                                kvbm_status_t gate)
{
    kvbm_xfer_t *xfer = conn->xfer;
    int peer = conn->peer, fd = conn->fd;
    size_t n = hdr->count;
    if (n == 0) {
        notify_arrival(xfer, peer, KVBM_ERR_PARSE, 0, NULL, NULL);
        return KVBM_ERR_PARSE;
    }
    if (n > xfer->capacity)
        return refuse_oversized_push(xfer, peer, fd, n);
    push_arrays_t a;
    kvbm_status_t status = push_arrays_alloc(&a, n);
    if (status != KVBM_OK)
        return status;
    struct iovec iov[2] = {{.iov_base = a.hashes, .iov_len = n * sizeof(*a.hashes)},
                           {.iov_base = a.src, .iov_len = n * sizeof(*a.src)}};
    status = kvbm__sock_readv(fd, iov, 2, kvbm__xfer_msg_deadline(xfer));
    if (status == KVBM_OK && !kvbm__xfer_ids_below(a.src, n, xfer->descs[peer].num_blocks))
        status = KVBM_ERR_PARSE;
    if (status != KVBM_OK)
        goto free_arrays;

    kvbm_status_t prep = push_prepare(xfer, gate, &a);
    kvbm__wire_hdr_t reply;
    kvbm__wire_hdr_init(&reply, KVBM__MSG_ACCEPT, reply_status(prep),
                        (uint32_t)(prep == KVBM_OK ? n : 0));
    status =
        kvbm__wire_send(fd, kvbm__xfer_msg_deadline(xfer), &reply, a.dst,
                        prep == KVBM_OK ? n * sizeof(*a.dst) : 0, a.need, prep == KVBM_OK ? n : 0);
    if (prep != KVBM_OK) {
        /* Refused cleanly: nothing held, the connection stays usable. A busy
         * data path is retried by the pusher: not worth a notice. */
        if (prep != KVBM_ERR_BUSY)
            notify_arrival(xfer, peer, prep, n, NULL, NULL);
        goto free_arrays;
    }
    if (status == KVBM_OK && a.m > 0) {
        kvbm__copy_plan_t plan = {0};
        status = kvbm__xfer_plan_recv(xfer, peer, a.fresh, a.fresh_src, a.m, &plan);
        if (status == KVBM_OK)
            status =
                xfer->ops->recv(xfer, peer, fd, &plan, kvbm__xfer_data_deadline(xfer, plan.bytes));
        kvbm__copy_plan_free(&plan);
    }
    if (status == KVBM_OK) {
        status = push_complete(conn, hdr, &a);
    } else {
        /* Back to reset (fresh blocks) or to the cache (held ones) first, so
         * the application's notice means "nothing left over". */
        kvbm__xfer_release_reverse(xfer->manager, a.dst, n);
        notify_arrival(xfer, peer, status, n, NULL, NULL);
    }
free_arrays:
    push_arrays_free(&a);
    return status;
}

static kvbm_status_t serve_pull(kvbm__xfer_conn_t *conn, const kvbm__wire_hdr_t *hdr,
                                kvbm_status_t gate)
{
    kvbm_xfer_t *xfer = conn->xfer;
    int peer = conn->peer, fd = conn->fd;
    /* No prefix longer than the manager can match: read that many hashes,
     * drop the rest. */
    size_t count = hdr->count;
    size_t kept = count < xfer->capacity ? count : xfer->capacity;
    kvbm_status_t status;
    uint64_t *hashes = kvbm__alloc(kept, sizeof(*hashes));
    uint32_t *src = kvbm__alloc(kept, sizeof(*src));
    uint32_t *dst = kvbm__alloc(kept, sizeof(*dst));
    size_t n = 0;
    if (hashes == NULL || src == NULL || dst == NULL) {
        status = KVBM_ERR_NO_MEMORY;
        goto free_arrays;
    }
    status = kvbm__sock_read(fd, hashes, kept * sizeof(*hashes), kvbm__xfer_msg_deadline(xfer));
    if (status == KVBM_OK)
        status = kvbm__sock_discard(fd, (uint64_t)(count - kept) * sizeof(*hashes),
                                    kvbm__xfer_msg_deadline(xfer));
    if (status != KVBM_OK)
        goto free_arrays;
    kvbm_status_t match = gate;
    if (match == KVBM_OK && kept > 0)
        match = kvbm_manager_match(xfer->manager, hashes, kept, src, &n);
    kvbm__wire_hdr_t reply;
    kvbm__wire_hdr_init(&reply, KVBM__MSG_OFFER, reply_status(match), (uint32_t)n);
    status =
        kvbm__wire_send(fd, kvbm__xfer_msg_deadline(xfer), &reply, src, n * sizeof(*src), NULL, 0);
    if (status != KVBM_OK || n == 0)
        goto release_src;
    kvbm__wire_hdr_t go;
    status = kvbm__wire_recv_hdr(fd, kvbm__xfer_msg_deadline(xfer), KVBM__MSG_GO, &go);
    if (status != KVBM_OK || go.status != KVBM_OK) {
        if (status == KVBM_OK && go.count != 0)
            status = KVBM_ERR_PARSE; /* a refusal carries no ids */
        goto release_src;            /* the puller had no room: nothing to send */
    }
    if (go.count != n) {
        status = KVBM_ERR_PARSE;
        goto release_src;
    }
    status = kvbm__sock_read(fd, dst, n * sizeof(*dst), kvbm__xfer_msg_deadline(xfer));
    if (status == KVBM_OK && !kvbm__xfer_ids_below(dst, n, xfer->descs[peer].num_blocks))
        status = KVBM_ERR_PARSE;
    kvbm__copy_plan_t plan = {0};
    if (status == KVBM_OK)
        status = kvbm__xfer_plan_send(xfer, peer, src, dst, n, &plan);
    if (status == KVBM_OK)
        status = xfer->ops->send(xfer, peer, fd, &plan, kvbm__xfer_data_deadline(xfer, plan.bytes));
    kvbm__copy_plan_free(&plan);
release_src:
    kvbm__xfer_release_reverse(xfer->manager, src, n);
free_arrays:
    kvbm__free(hashes);
    kvbm__free(src);
    kvbm__free(dst);
    return status;
}

static kvbm_status_t serve_raw(kvbm__xfer_conn_t *conn, const kvbm__wire_hdr_t *hdr,
                               kvbm_status_t gate)
{
    kvbm_xfer_t *xfer = conn->xfer;
    uint64_t bytes = hdr->arg;
    kvbm_status_t ready = gate;
    if (ready == KVBM_OK && (bytes == 0 || bytes > KVBM__XFER_RAW_MAX_BYTES))
        ready = KVBM_ERR_INVALID_ARG; /* reason: answered to the peer, not this thread's caller */
    /* This rank's configured scratch, whatever the message's size. */
    if (ready == KVBM_OK && conn->scratch == NULL)
        ready = xfer->ops->scratch_alloc(xfer, xfer->raw_scratch_bytes, &conn->scratch);
    kvbm__wire_hdr_t reply;
    kvbm__wire_hdr_init(&reply, KVBM__MSG_RAW_READY, reply_status(ready), 0);
    kvbm_status_t status =
        kvbm__wire_send(conn->fd, kvbm__xfer_msg_deadline(xfer), &reply, NULL, 0, NULL, 0);
    if (status != KVBM_OK || ready != KVBM_OK)
        return status;
    kvbm__copy_plan_t plan = {0};
    status = kvbm__xfer_plan_raw(NULL, conn->scratch, xfer->raw_scratch_bytes, bytes, &plan);
    if (status == KVBM_OK)
        status = xfer->ops->recv(xfer, conn->peer, conn->fd, &plan,
                                 kvbm__xfer_data_deadline(xfer, bytes));
    kvbm__copy_plan_free(&plan);
    if (status != KVBM_OK)
        return status;
    kvbm__wire_hdr_init(&reply, KVBM__MSG_RAW_DONE, KVBM_OK, 0);
    return kvbm__wire_send(conn->fd, kvbm__xfer_msg_deadline(xfer), &reply, NULL, 0, NULL, 0);
}

/* Serves one request. Returns false when the connection is closed (cleanly
 * or not) or out of step. */
static bool serve_one(kvbm__xfer_conn_t *conn)
{
    kvbm_xfer_t *xfer = conn->xfer;
    kvbm__wire_hdr_t hdr;
    kvbm_status_t status = kvbm__wire_recv_hdr(conn->fd, kvbm__xfer_msg_deadline(xfer), 0, &hdr);
    if (status != KVBM_OK) {
        if (status != KVBM_ERR_PEER) /* a close between requests is not an error */
            kvbm__xfer_count_failure(xfer, status);
        return false;
    }
    if ((hdr.type != KVBM__MSG_PUSH && hdr.type != KVBM__MSG_PULL && hdr.type != KVBM__MSG_RAW) ||
        hdr.status != KVBM_OK) {
        kvbm__log(KVBM_LOG_ERROR, "rank %d sent unexpected message type %u (status %d)", conn->peer,
                  hdr.type, hdr.status);
        kvbm__xfer_count_failure(xfer, KVBM_ERR_PARSE);
        return false;
    }
    /* Only try for the data path: if it is held, refuse (KVBM_ERR_BUSY) and
     * let the requester retry, rather than wait. */
    kvbm_status_t gate = xfer->ops->data_begin(xfer, false);
    switch (hdr.type) {
    case KVBM__MSG_PUSH:
        status = serve_push(conn, &hdr, gate);
        break;
    case KVBM__MSG_PULL:
        status = serve_pull(conn, &hdr, gate);
        break;
    default:
        status = serve_raw(conn, &hdr, gate);
        break;
    }
    if (gate == KVBM_OK)
        xfer->ops->data_end(xfer);
    if (status != KVBM_OK)
        kvbm__xfer_count_failure(xfer, status);
    return status == KVBM_OK;
}

void *kvbm__xfer_service_main(void *arg)
{
    kvbm__xfer_conn_t *conn = arg;
    kvbm_xfer_t *xfer = conn->xfer;
    /* The connection this one replaced finishes first (it was shut down). */
    if (conn->has_prev)
        kvbm__thread_join(conn->prev);
    /* Idle between requests is not a failure: wait for the next one, or for
     * destroy or a replacement to shut the socket down. */
    while (kvbm__sock_wait(conn->fd, POLLIN, KVBM__NO_DEADLINE) == KVBM_OK && serve_one(conn)) {
    }
    kvbm__mutex_lock(&xfer->lock);
    if (xfer->peers[conn->peer].server == conn)
        xfer->peers[conn->peer].server = NULL;
    close(conn->fd);
    kvbm__mutex_unlock(&xfer->lock);
    if (conn->scratch != NULL)
        xfer->ops->scratch_free(xfer, conn->scratch);
    kvbm__free(conn);
    return NULL;
}
