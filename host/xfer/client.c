/*
 * Transfers, client side: the worker thread runs the requests this rank
 * starts (push, pull, raw) against a peer's service thread, with retries on
 * a busy peer until the timeout. Protocol: docs/TRANSFER.md and xfer.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/check.h"
#include "core/clock.h"
#include "object.h"
#include "socket_io.h"

/* ------------------------------------------------------------ client side */

/* Result of one request run by the worker thread. */
typedef struct client_result {
    kvbm_status_t status;
    uint32_t *ids;
    size_t n;
    bool in_sync; /* whether the connection is still at a message boundary */
} client_result_t;

/* Sends the bytes of the pushed blocks the peer marked in @p need (it holds
 * the others already) into its blocks @p dst. */
static kvbm_status_t push_send_needed(kvbm_xfer_t *xfer, const kvbm_xfer_req_t *req, int fd,
                                      const uint32_t *dst, const uint8_t *need)
{
    size_t n = req->count;
    uint32_t *sub_src = malloc(n * sizeof(*sub_src));
    uint32_t *sub_dst = malloc(n * sizeof(*sub_dst));
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
            status = xfer->ops->send(xfer, req->peer, fd, &plan);
        kvbm__copy_plan_free(&plan);
    }
free_lists:
    free(sub_src);
    free(sub_dst);
    return status;
}

static void client_push(kvbm_xfer_t *xfer, kvbm_xfer_req_t *req, int fd, client_result_t *res)
{
    uint32_t timeout = xfer->timeout_ms;
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
    res->status = kvbm__wire_send(fd, timeout, &hdr, req->hashes, n * sizeof(uint64_t),
                                  req->src_ids, n * sizeof(uint32_t));
    if (res->status != KVBM_OK)
        return;
    res->status = kvbm__wire_recv_hdr(fd, timeout, KVBM__MSG_ACCEPT, &hdr);
    if (res->status != KVBM_OK)
        return;
    if (hdr.status != KVBM_OK) {
        res->in_sync = true; /* refused before any data: e.g. no room */
        res->status = (kvbm_status_t)hdr.status;
        return;
    }
    if (hdr.count != n) {
        res->status = KVBM_ERR_PARSE;
        return;
    }
    uint32_t *dst = malloc(n * sizeof(*dst));
    uint8_t *need = malloc(n);
    if (dst == NULL || need == NULL) {
        free(need);
        res->status = KVBM_ERR_NO_MEMORY;
        goto free_dst;
    }
    struct iovec iov[2] = {{.iov_base = dst, .iov_len = n * sizeof(*dst)},
                           {.iov_base = need, .iov_len = n}};
    res->status = kvbm__sock_readv(fd, iov, 2, timeout);
    if (res->status == KVBM_OK && !kvbm__xfer_ids_below(dst, n, xfer->descs[req->peer].num_blocks))
        res->status = KVBM_ERR_PARSE;
    /* Only the blocks the peer does not hold yet travel. */
    if (res->status == KVBM_OK)
        res->status = push_send_needed(xfer, req, fd, dst, need);
    free(need);
    if (res->status == KVBM_OK)
        res->status = kvbm__wire_recv_hdr(fd, timeout, KVBM__MSG_DONE, &hdr);
    if (res->status != KVBM_OK)
        goto free_dst;
    if (hdr.status != KVBM_OK) {
        res->in_sync = true;
        res->status = (kvbm_status_t)hdr.status;
        goto free_dst;
    }
    if (hdr.count != n) {
        res->status = KVBM_ERR_PARSE;
        goto free_dst;
    }
    res->status = kvbm__sock_read(fd, dst, n * sizeof(*dst), timeout);
    if (res->status != KVBM_OK)
        goto free_dst;
    res->in_sync = true;
    res->ids = dst;
    res->n = n;
    return;
free_dst:
    free(dst);
}

static void client_pull(kvbm_xfer_t *xfer, kvbm_xfer_req_t *req, int fd, client_result_t *res)
{
    uint32_t timeout = xfer->timeout_ms;
    kvbm__wire_hdr_t hdr;
    kvbm__wire_hdr_init(&hdr, KVBM__MSG_PULL, KVBM_OK, (uint32_t)req->count);
    res->in_sync = false;
    res->status =
        kvbm__wire_send(fd, timeout, &hdr, req->hashes, req->count * sizeof(uint64_t), NULL, 0);
    if (res->status != KVBM_OK)
        return;
    res->status = kvbm__wire_recv_hdr(fd, timeout, KVBM__MSG_OFFER, &hdr);
    if (res->status != KVBM_OK)
        return;
    if (hdr.status != KVBM_OK) {
        res->in_sync = true;
        res->status = (kvbm_status_t)hdr.status;
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
    uint32_t *src = malloc(n * sizeof(*src));
    uint32_t *dst = malloc(n * sizeof(*dst));
    if (src == NULL || dst == NULL) {
        res->status = KVBM_ERR_NO_MEMORY;
        goto free_arrays;
    }
    res->status = kvbm__sock_read(fd, src, n * sizeof(*src), timeout);
    if (res->status == KVBM_OK && !kvbm__xfer_ids_below(src, n, xfer->descs[req->peer].num_blocks))
        res->status = KVBM_ERR_PARSE;
    if (res->status != KVBM_OK)
        goto free_arrays;
    kvbm_status_t alloc = kvbm_manager_allocate(xfer->manager, n, dst, NULL, NULL);
    kvbm__wire_hdr_init(&hdr, KVBM__MSG_GO, alloc, (uint32_t)(alloc == KVBM_OK ? n : 0));
    res->status =
        kvbm__wire_send(fd, timeout, &hdr, dst, alloc == KVBM_OK ? n * sizeof(*dst) : 0, NULL, 0);
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
        res->status = xfer->ops->recv(xfer, req->peer, fd, &plan);
    kvbm__copy_plan_free(&plan);
    if (res->status != KVBM_OK)
        goto release_dst;
    res->in_sync = true;
    /* Every byte is here: only now do the hashes become visible. */
    res->status = kvbm_manager_register(xfer->manager, dst, req->hashes, n, NULL, dst);
    if (res->status != KVBM_OK)
        goto release_dst;
    free(src);
    res->ids = dst;
    res->n = n;
    return;
release_dst:
    if (alloc == KVBM_OK)
        kvbm__xfer_release_reverse(xfer->manager, dst, n);
free_arrays:
    free(src);
    free(dst);
}

static void client_raw(kvbm_xfer_t *xfer, kvbm_xfer_req_t *req, int fd, client_result_t *res)
{
    uint32_t timeout = xfer->timeout_ms;
    kvbm__wire_hdr_t hdr;
    kvbm__wire_hdr_init(&hdr, KVBM__MSG_RAW, KVBM_OK, 0);
    hdr.arg = req->raw_bytes;
    res->in_sync = false;
    res->status = kvbm__wire_send(fd, timeout, &hdr, NULL, 0, NULL, 0);
    if (res->status == KVBM_OK)
        res->status = kvbm__wire_recv_hdr(fd, timeout, KVBM__MSG_RAW_READY, &hdr);
    if (res->status != KVBM_OK)
        return;
    if (hdr.status != KVBM_OK) {
        res->in_sync = true;
        res->status = (kvbm_status_t)hdr.status;
        return;
    }
    kvbm_copy_t piece = {.src = req->raw_buf, .bytes = req->raw_bytes};
    kvbm__copy_plan_t plan = {.pieces = &piece, .count = 1, .bytes = req->raw_bytes};
    res->status = xfer->ops->send(xfer, req->peer, fd, &plan);
    if (res->status == KVBM_OK)
        res->status = kvbm__wire_recv_hdr(fd, timeout, KVBM__MSG_RAW_DONE, &hdr);
    if (res->status != KVBM_OK)
        return;
    res->in_sync = true;
    res->status = (kvbm_status_t)hdr.status;
}

static void req_complete(kvbm_xfer_req_t *req, kvbm_status_t status, uint32_t *ids, size_t n)
{
    kvbm__mutex_lock(&req->lock);
    req->status = status;
    req->result_ids = ids;
    req->n_result = n;
    req->done = true;
    kvbm__cond_broadcast(&req->cond);
    kvbm__mutex_unlock(&req->lock);
}

static void worker_run(kvbm_xfer_t *xfer, kvbm_xfer_req_t *req)
{
    int peer = req->peer;
    client_result_t res = {.status = KVBM_OK};
    int fd = xfer->client_fd[peer];
    uint64_t deadline = kvbm__now_us() + (uint64_t)xfer->timeout_ms * 1000u;
    /* Back-off grows from 100 us; ranks start apart so two of them refused
     * by each other do not retry in lock step. */
    uint64_t backoff_us = 100u + 37u * (uint64_t)xfer->rank;
    for (;;) {
        if (xfer->client_broken[peer]) {
            req_complete(req, KVBM_ERR_PEER, NULL, 0);
            return;
        }
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
            /* Out of step with the peer: no later request can use this
             * connection. Shutting it down tells the peer at once. */
            xfer->client_broken[peer] = true;
            shutdown(fd, SHUT_RDWR);
        }
        /* The peer's data path was taken: nothing happened there, retry. */
        if (res.status != KVBM_ERR_BUSY || !res.in_sync || kvbm__now_us() + backoff_us > deadline)
            break;
        struct timespec ts = {.tv_sec = (time_t)(backoff_us / 1000000u),
                              .tv_nsec = (long)(backoff_us % 1000000u) * 1000L};
        nanosleep(&ts, NULL);
        backoff_us = backoff_us * 2 < 20000u ? backoff_us * 2 : 20000u;
    }
    req_complete(req, res.status, res.ids, res.n);
}

void *kvbm__xfer_worker_main(void *arg)
{
    kvbm_xfer_t *xfer = arg;
    for (;;) {
        kvbm__mutex_lock(&xfer->lock);
        while (xfer->head == NULL && !xfer->stopping)
            kvbm__cond_wait(&xfer->cond, &xfer->lock);
        kvbm_xfer_req_t *req = xfer->head;
        bool stopping = xfer->stopping;
        if (req != NULL) {
            xfer->head = req->next;
            if (xfer->head == NULL)
                xfer->tail = NULL;
        }
        kvbm__mutex_unlock(&xfer->lock);
        if (req == NULL)
            return NULL; /* stopping and drained */
        if (stopping)
            req_complete(req, KVBM_ERR_PEER, NULL, 0);
        else
            worker_run(xfer, req);
    }
}
