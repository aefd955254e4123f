/*
 * Transfers, client side: one worker thread per peer runs the requests this
 * rank starts towards it (push, pull, raw), in submission order, against
 * the peer's service thread, with retries on a busy peer until the timeout.
 * A slow peer delays only the requests queued for it. Protocol:
 * docs/TRANSFER.md and xfer.c.
 *
 * Every reply is checked before use: its status must be one of kvbm's (the
 * header check), a refusal carries no arrays, counts match the request, and
 * every block id lies in the peer's slab. A request that fails in the middle
 * of a message (deadline, malformed reply, dead peer) fails alone: its
 * connection is closed at once (the peer sees it and frees what it held)
 * and the next request opens a fresh one.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/check.h"
#include "core/clock.h"
#include "core/error.h"
#include "fault.h"
#include "object.h"

/* Result of one request run by a worker thread. */
typedef struct client_result {
    kvbm_status_t status;
    uint32_t *ids;
    size_t n;
    bool in_sync; /* whether the connection is still at a message boundary */
} client_result_t;

/* A refusal (a non-OK status in a reply) ends the request cleanly, unless
 * it came with arrays, which would leave the stream out of step. */
static void take_refusal(const kvbm__wire_hdr_t *hdr, client_result_t *res)
{
    res->status = hdr->count == 0 ? (kvbm_status_t)hdr->status : KVBM_ERR_PARSE;
    res->in_sync = hdr->count == 0;
}

/* Sends the bytes of the pushed blocks the peer marked in @p need (it holds
 * the others already) into its blocks @p dst. */
static kvbm_status_t push_send_needed(kvbm_xfer_t *xfer, const kvbm_xfer_req_t *req, int fd,
                                      const uint32_t *dst, const uint8_t *need)
{
    size_t n = req->count;
    uint32_t *sub_src = kvbm__alloc(n, sizeof(*sub_src));
    uint32_t *sub_dst = kvbm__alloc(n, sizeof(*sub_dst));
    kvbm_status_t status = KVBM_ERR_NO_MEMORY;
    if (sub_src == NULL || sub_dst == NULL)
        goto free_lists;
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (need[i]) {
            sub_src[m] = req->src_ids[i];
            sub_dst[m++] = dst[i];
        }
    }
    status = KVBM_OK;
    if (m > 0) {
        kvbm__copy_plan_t plan = {0};
        status = kvbm__xfer_plan_send(xfer, req->peer, sub_src, sub_dst, m, &plan);
        if (status == KVBM_OK)
            status = xfer->ops->send(xfer, req->peer, fd, &plan,
                                     kvbm__xfer_data_deadline(xfer, plan.bytes));
        kvbm__copy_plan_free(&plan);
    }
free_lists:
    kvbm__free(sub_src);
    kvbm__free(sub_dst);
    return status;
}

/* ACCEPT's arrays: the peer's block per pushed block (in its slab) and
 * whether it needs the bytes (0 or 1). */
static kvbm_status_t push_read_accept(kvbm_xfer_t *xfer, const kvbm_xfer_req_t *req, int fd,
                                      uint32_t *dst, uint8_t *need)
{
    size_t n = req->count;
    struct iovec iov[2] = {{.iov_base = dst, .iov_len = n * sizeof(*dst)},
                           {.iov_base = need, .iov_len = n}};
    kvbm_status_t status = kvbm__sock_readv(fd, iov, 2, kvbm__xfer_msg_deadline(xfer));
    if (status == KVBM_OK && !kvbm__xfer_ids_below(dst, n, xfer->descs[req->peer].num_blocks))
        status = KVBM_ERR_PARSE;
    for (size_t i = 0; status == KVBM_OK && i < n; i++)
        if (need[i] > 1)
            status = KVBM_ERR_PARSE;
    return status;
}

/* DONE: the peer registered; its final block ids land in @p dst. */
static void push_read_done(kvbm_xfer_t *xfer, const kvbm_xfer_req_t *req, int fd, uint32_t *dst,
                           client_result_t *res)
{
    size_t n = req->count;
    kvbm__wire_hdr_t hdr;
    res->status = kvbm__wire_recv_hdr(fd, kvbm__xfer_msg_deadline(xfer), KVBM__MSG_DONE, &hdr);
    if (res->status != KVBM_OK)
        return;
    if (hdr.status != KVBM_OK) {
        take_refusal(&hdr, res);
        return;
    }
    if (hdr.count != n) {
        res->status = KVBM_ERR_PARSE;
        return;
    }
    res->status = kvbm__sock_read(fd, dst, n * sizeof(*dst), kvbm__xfer_msg_deadline(xfer));
    if (res->status == KVBM_OK && !kvbm__xfer_ids_below(dst, n, xfer->descs[req->peer].num_blocks))
        res->status = KVBM_ERR_PARSE;
    res->in_sync = res->status == KVBM_OK;
}

static void client_push(kvbm_xfer_t *xfer, kvbm_xfer_req_t *req, int fd, client_result_t *res)
{
    size_t n = req->count;
    kvbm__wire_hdr_t hdr;
    kvbm__wire_hdr_init(&hdr, KVBM__MSG_PUSH, KVBM_OK, (uint32_t)n);
    if (req->has_opts) {
        hdr.arg = req->opts.parent_hash;
        hdr.flags = (req->opts.has_parent ? 1u : 0u) | ((uint32_t)req->opts.priority << 8);
    } else {
        hdr.flags = 50u << 8;
    }
    res->in_sync = false;
    res->status = kvbm__wire_send(fd, kvbm__xfer_msg_deadline(xfer), &hdr, req->hashes,
                                  n * sizeof(uint64_t), req->src_ids, n * sizeof(uint32_t));
    if (res->status != KVBM_OK)
        return;
    res->status = kvbm__wire_recv_hdr(fd, kvbm__xfer_msg_deadline(xfer), KVBM__MSG_ACCEPT, &hdr);
    if (res->status != KVBM_OK)
        return;
    if (hdr.status != KVBM_OK) {
        take_refusal(&hdr, res); /* refused before any data: e.g. no room */
        return;
    }
    if (hdr.count != n) {
        res->status = KVBM_ERR_PARSE;
        return;
    }
    uint32_t *dst = kvbm__alloc(n, sizeof(*dst));
    uint8_t *need = kvbm__alloc(n, 1);
    res->status = dst != NULL && need != NULL ? KVBM_OK : KVBM_ERR_NO_MEMORY;
    if (res->status == KVBM_OK)
        res->status = push_read_accept(xfer, req, fd, dst, need);
    /* Only the blocks the peer does not hold yet travel. */
    if (res->status == KVBM_OK)
        res->status = push_send_needed(xfer, req, fd, dst, need);
    kvbm__free(need);
    if (res->status == KVBM_OK)
        push_read_done(xfer, req, fd, dst, res);
    if (res->status != KVBM_OK) {
        kvbm__free(dst);
        return;
    }
    res->ids = dst;
    res->n = n;
}

static void client_pull(kvbm_xfer_t *xfer, kvbm_xfer_req_t *req, int fd, client_result_t *res)
{
    kvbm__wire_hdr_t hdr;
    kvbm__wire_hdr_init(&hdr, KVBM__MSG_PULL, KVBM_OK, (uint32_t)req->count);
    res->in_sync = false;
    res->status = kvbm__wire_send(fd, kvbm__xfer_msg_deadline(xfer), &hdr, req->hashes,
                                  req->count * sizeof(uint64_t), NULL, 0);
    if (res->status != KVBM_OK)
        return;
    res->status = kvbm__wire_recv_hdr(fd, kvbm__xfer_msg_deadline(xfer), KVBM__MSG_OFFER, &hdr);
    if (res->status != KVBM_OK)
        return;
    if (hdr.status != KVBM_OK) {
        take_refusal(&hdr, res);
        return;
    }
    size_t n = hdr.count;
    if (n > req->count) {
        res->status = KVBM_ERR_PARSE;
        return;
    }
    if (n == 0) {
        res->in_sync = true;
        return; /* the peer holds none of them */
    }
    uint32_t *src = kvbm__alloc(n, sizeof(*src));
    uint32_t *dst = kvbm__alloc(n, sizeof(*dst));
    kvbm_status_t alloc = KVBM_ERR_NO_MEMORY;
    if (src == NULL || dst == NULL) {
        res->status = KVBM_ERR_NO_MEMORY;
        goto free_arrays;
    }
    res->status = kvbm__sock_read(fd, src, n * sizeof(*src), kvbm__xfer_msg_deadline(xfer));
    if (res->status == KVBM_OK && !kvbm__xfer_ids_below(src, n, xfer->descs[req->peer].num_blocks))
        res->status = KVBM_ERR_PARSE;
    if (res->status != KVBM_OK)
        goto free_arrays;
    alloc = kvbm_manager_allocate(xfer->manager, n, dst, NULL, NULL);
    kvbm__wire_hdr_init(&hdr, KVBM__MSG_GO, alloc, (uint32_t)(alloc == KVBM_OK ? n : 0));
    res->status = kvbm__wire_send(fd, kvbm__xfer_msg_deadline(xfer), &hdr, dst,
                                  alloc == KVBM_OK ? n * sizeof(*dst) : 0, NULL, 0);
    if (res->status != KVBM_OK)
        goto release_dst;
    if (alloc != KVBM_OK) {
        res->in_sync = true;
        res->status = alloc;
        goto free_arrays;
    }
    kvbm__copy_plan_t plan = {0};
    res->status = kvbm__xfer_plan_recv(xfer, req->peer, dst, src, n, &plan);
    if (res->status == KVBM_OK)
        res->status =
            xfer->ops->recv(xfer, req->peer, fd, &plan, kvbm__xfer_data_deadline(xfer, plan.bytes));
    kvbm__copy_plan_free(&plan);
    if (res->status != KVBM_OK)
        goto release_dst;
    res->in_sync = true;
    /* Every byte is here: only now do the hashes become visible. */
    res->status = kvbm_manager_register(xfer->manager, dst, req->hashes, n, NULL, dst);
    if (res->status != KVBM_OK)
        goto release_dst;
    kvbm__free(src);
    res->ids = dst;
    res->n = n;
    return;
release_dst:
    if (alloc == KVBM_OK)
        kvbm__xfer_release_reverse(xfer->manager, dst, n);
free_arrays:
    kvbm__free(src);
    kvbm__free(dst);
}

static void client_raw(kvbm_xfer_t *xfer, kvbm_xfer_req_t *req, int fd, client_result_t *res)
{
    kvbm__wire_hdr_t hdr;
    kvbm__wire_hdr_init(&hdr, KVBM__MSG_RAW, KVBM_OK, 0);
    hdr.arg = req->raw_bytes;
    int64_t lie = 0;
    if (kvbm__xfer_fault_lie_take(KVBM__LIE_RAW_BYTES, &lie))
        hdr.arg = (uint64_t)lie; /* a test's hostile peer: announce more than it sends */
    res->in_sync = false;
    res->status = kvbm__wire_send(fd, kvbm__xfer_msg_deadline(xfer), &hdr, NULL, 0, NULL, 0);
    if (res->status == KVBM_OK)
        res->status =
            kvbm__wire_recv_hdr(fd, kvbm__xfer_msg_deadline(xfer), KVBM__MSG_RAW_READY, &hdr);
    if (res->status != KVBM_OK)
        return;
    if (hdr.status != KVBM_OK) {
        take_refusal(&hdr, res);
        return;
    }
    kvbm__copy_plan_t plan = {0};
    res->status = kvbm__xfer_plan_raw(req->raw_buf, NULL, 0, req->raw_bytes, &plan);
    if (res->status == KVBM_OK)
        res->status = xfer->ops->send(xfer, req->peer, fd, &plan,
                                      kvbm__xfer_data_deadline(xfer, req->raw_bytes));
    kvbm__copy_plan_free(&plan);
    if (res->status == KVBM_OK)
        res->status =
            kvbm__wire_recv_hdr(fd, kvbm__xfer_msg_deadline(xfer), KVBM__MSG_RAW_DONE, &hdr);
    if (res->status != KVBM_OK)
        return;
    res->in_sync = hdr.count == 0;
    res->status = res->in_sync ? (kvbm_status_t)hdr.status : KVBM_ERR_PARSE;
}

/* Completes a request; a failure keeps the reason the worker recorded for it
 * (kvbm__error_clear before each request), if any. */
static void req_complete(kvbm_xfer_req_t *req, kvbm_status_t status, uint32_t *ids, size_t n)
{
    kvbm__mutex_lock(&req->lock);
    req->status = status;
    if (status != KVBM_OK)
        snprintf(req->reason, sizeof(req->reason), "%s", kvbm_last_error());
    req->result_ids = ids;
    req->n_result = n;
    req->done = true;
    kvbm__cond_broadcast(&req->cond);
    kvbm__mutex_unlock(&req->lock);
}

/* Closes the client connection to @p p (the peer sees it at once). */
static void drop_connection(kvbm_xfer_t *xfer, kvbm__xfer_peer_t *p)
{
    kvbm__mutex_lock(&xfer->lock);
    if (p->client_fd >= 0)
        close(p->client_fd);
    p->client_fd = -1;
    kvbm__mutex_unlock(&xfer->lock);
}

/* Opens a fresh connection after a failure; KVBM_ERR_BAD_STATE once the
 * object is being destroyed. */
static kvbm_status_t reconnect(kvbm_xfer_t *xfer, int peer)
{
    kvbm__xfer_peer_t *p = &xfer->peers[peer];
    drop_connection(xfer, p);
    int fd;
    kvbm_status_t status = kvbm__xfer_dial(xfer, peer, false, &fd);
    if (status != KVBM_OK)
        return status;
    kvbm__mutex_lock(&xfer->lock);
    if (xfer->stopping) {
        close(fd);
        status = KVBM_ERR_PEER;
    } else {
        p->client_fd = fd;
        p->client_broken = false;
    }
    kvbm__mutex_unlock(&xfer->lock);
    if (status == KVBM_OK)
        kvbm__count(&xfer->counters.reconnects);
    return status;
}

static void worker_run(kvbm_xfer_t *xfer, kvbm_xfer_req_t *req)
{
    int peer = req->peer;
    kvbm__xfer_peer_t *p = &xfer->peers[peer];
    client_result_t res = {.status = KVBM_OK};
    uint64_t deadline = kvbm__deadline_ms(xfer->timeout_ms);
    /* Back-off grows from 100 us; ranks start apart so two of them refused
     * by each other do not retry in lock step. */
    uint64_t backoff_us = 100u + 37u * (uint64_t)xfer->rank;
    for (;;) {
        if (p->client_broken || p->client_fd < 0) {
            kvbm_status_t status = reconnect(xfer, peer);
            if (status != KVBM_OK) {
                kvbm__xfer_count_failure(xfer, status);
                req_complete(req, status, NULL, 0);
                return;
            }
        }
        int fd = p->client_fd;
        res = (client_result_t){.status = KVBM_OK};
        kvbm_status_t gate = xfer->ops->data_begin(xfer, true);
        if (gate != KVBM_OK) {
            req_complete(req, gate, NULL, 0);
            return;
        }
        switch (req->kind) {
        case KVBM__REQ_PUSH:
            client_push(xfer, req, fd, &res);
            break;
        case KVBM__REQ_PULL:
            client_pull(xfer, req, fd, &res);
            break;
        case KVBM__REQ_RAW:
            client_raw(xfer, req, fd, &res);
            break;
        }
        xfer->ops->data_end(xfer);
        if (!res.in_sync) {
            /* Out of step with the peer: this request fails, the connection
             * goes (the peer sees it at once and frees what it held), and the
             * next request opens a fresh one. */
            p->client_broken = true;
            drop_connection(xfer, p);
        }
        /* The peer's data path was taken: nothing happened there, retry. */
        if (res.status != KVBM_ERR_BUSY || !res.in_sync || kvbm__now_us() + backoff_us > deadline)
            break;
        struct timespec ts = {.tv_sec = (time_t)(backoff_us / 1000000u),
                              .tv_nsec = (long)(backoff_us % 1000000u) * 1000L};
        nanosleep(&ts, NULL);
        backoff_us = backoff_us * 2 < 20000u ? backoff_us * 2 : 20000u;
    }
    if (res.status != KVBM_OK && !res.in_sync)
        kvbm__xfer_count_failure(xfer, res.status);
    req_complete(req, res.status, res.ids, res.n);
}

void kvbm__xfer_fail_queue_locked(kvbm_xfer_t *xfer, int peer)
{
    kvbm__xfer_peer_t *p = &xfer->peers[peer];
    while (p->head != NULL) {
        kvbm_xfer_req_t *req = p->head;
        p->head = req->next;
        req_complete(req, KVBM_ERR_PEER, NULL, 0);
    }
    p->tail = NULL;
}

/* The worker's argument: its object and peer. */
void *kvbm__xfer_worker_main(void *arg)
{
    kvbm__xfer_peer_t *p = arg;
    kvbm_xfer_t *xfer = p->xfer;
    kvbm__mutex_lock(&xfer->lock);
    for (;;) {
        while (p->head == NULL && !xfer->stopping)
            kvbm__cond_wait(&p->cond, &xfer->lock);
        if (xfer->stopping) {
            kvbm__xfer_fail_queue_locked(xfer, p->index);
            break;
        }
        kvbm_xfer_req_t *req = p->head;
        p->head = req->next;
        if (p->head == NULL)
            p->tail = NULL;
        kvbm__mutex_unlock(&xfer->lock);
        kvbm__error_clear();
        worker_run(xfer, req);
        kvbm__mutex_lock(&xfer->lock);
    }
    kvbm__mutex_unlock(&xfer->lock);
    return NULL;
}
