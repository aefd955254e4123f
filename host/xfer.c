/*
 * Transfer objects: creation, requests, the worker thread (requests this rank
 * starts) and the service thread (requests peers start). The protocol is
 * described in docs/TRANSFER.md; in short, for a push:
 *
 *   client                         server (peer)
 *   PUSH hashes, src ids   ---->   allocate count blocks
 *                          <----   ACCEPT status, dst ids
 *   block bytes            ---->   receive all of them
 *                          <----   DONE status, final ids (registered)
 *
 * and for a pull: PULL hashes ->, <- OFFER n, src ids (matched prefix),
 * GO dst ids -> (allocated), <- block bytes; the client registers.
 *
 * A block is registered only after every byte of the transfer arrived. Any
 * failure before that gives the allocated blocks back to the reset pool. A
 * failure in the middle of a message leaves the connection out of step, so
 * it is shut down: later requests to that peer fail with KVBM_ERR_PEER.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "xfer_internal.h"

/* Largest raw message (sanity bound for a peer's RAW header). */
#define RAW_MAX_BYTES ((uint64_t)1 << 36)

/* ------------------------------------------------------------ helpers */

static const kvbm__xfer_ops_t *ops_for(kvbm_xfer_transport_t transport)
{
    switch (transport) {
    case KVBM_XFER_SOCKET:
        return &kvbm__xfer_socket_ops;
    case KVBM_XFER_NCCL:
#if defined(KVBM_HAVE_NCCL) && KVBM_HAVE_NCCL
        return &kvbm__xfer_nccl_ops;
#else
        return NULL;
#endif
    }
    return NULL;
}

kvbm_status_t kvbm_xfer_transport_probe(kvbm_xfer_transport_t transport)
{
    if (transport != KVBM_XFER_SOCKET && transport != KVBM_XFER_NCCL)
        return KVBM_ERR_INVALID_ARG;
    const kvbm__xfer_ops_t *ops = ops_for(transport);
    if (ops == NULL)
        return KVBM_ERR_UNSUPPORTED;
    return ops->probe();
}

static kvbm__xfer_geom_t local_geom(const kvbm_xfer_t *xfer)
{
    return (kvbm__xfer_geom_t){
        .region_base = xfer->region_base,
        .region_count = xfer->memory.region_count,
        .num_blocks = xfer->memory.num_blocks,
        .region_bytes = xfer->memory.region_bytes,
        .block_stride = xfer->memory.block_stride,
    };
}

static kvbm__xfer_geom_t remote_geom(const kvbm_xfer_t *xfer, int peer)
{
    const kvbm__wire_desc_t *d = &xfer->descs[peer];
    return (kvbm__xfer_geom_t){
        .region_base = NULL,
        .region_count = d->region_count,
        .num_blocks = d->num_blocks,
        .region_bytes = (size_t)d->region_bytes,
        .block_stride = (size_t)d->block_stride,
    };
}

/* Plan of this side of a block transfer with @p peer. */
static kvbm_status_t plan_blocks(const kvbm_xfer_t *xfer, int peer, const uint32_t *local_ids,
                                 const uint32_t *remote_ids, size_t n, kvbm__xfer_plan_t *plan)
{
    kvbm__xfer_geom_t local = local_geom(xfer);
    kvbm__xfer_geom_t remote = remote_geom(xfer, peer);
    return kvbm__xfer_plan_build(&local, local_ids, &remote, remote_ids, n,
                                 xfer->ops->message_based, plan);
}

static bool ids_below(const uint32_t *ids, size_t n, uint32_t bound)
{
    for (size_t i = 0; i < n; i++)
        if (ids[i] >= bound)
            return false;
    return true;
}

/* Releases in reverse order, so the head of a sequence is the most recent. */
static void release_reverse(kvbm_manager_t *manager, const uint32_t *ids, size_t n)
{
    for (size_t i = n; i-- > 0;) {
        kvbm_status_t status = kvbm_manager_release(manager, &ids[i], 1);
        (void)status;
        /* Only this layer holds these references; failure is a bug. */
    }
}

/* ------------------------------------------------------------ client side */

/* Result of one request run by the worker thread. */
typedef struct client_result {
    kvbm_status_t status;
    uint32_t *ids;
    size_t n;
    bool in_sync; /* whether the connection is still at a message boundary */
} client_result_t;

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
    uint32_t *sub_src = malloc(n * sizeof(*sub_src));
    uint32_t *sub_dst = malloc(n * sizeof(*sub_dst));
    uint8_t *need = malloc(n);
    if (dst == NULL || sub_src == NULL || sub_dst == NULL || need == NULL) {
        free(sub_src);
        free(sub_dst);
        free(need);
        res->status = KVBM_ERR_NO_MEMORY;
        goto free_dst;
    }
    struct iovec iov[2] = {{.iov_base = dst, .iov_len = n * sizeof(*dst)},
                           {.iov_base = need, .iov_len = n}};
    res->status = kvbm__sock_readv(fd, iov, 2, timeout);
    if (res->status == KVBM_OK && !ids_below(dst, n, xfer->descs[req->peer].num_blocks))
        res->status = KVBM_ERR_PARSE;
    /* Only the blocks the peer does not hold yet travel. */
    size_t m = 0;
    for (size_t i = 0; res->status == KVBM_OK && i < n; i++) {
        if (need[i]) {
            sub_src[m] = req->src_ids[i];
            sub_dst[m++] = dst[i];
        }
    }
    if (res->status == KVBM_OK && m > 0) {
        kvbm__xfer_plan_t plan = {0};
        res->status = plan_blocks(xfer, req->peer, sub_src, sub_dst, m, &plan);
        if (res->status == KVBM_OK)
            res->status = xfer->ops->send(xfer, req->peer, fd, &plan);
        kvbm__xfer_plan_free(&plan);
    }
    free(sub_src);
    free(sub_dst);
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
    if (res->status == KVBM_OK && !ids_below(src, n, xfer->descs[req->peer].num_blocks))
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
    kvbm__xfer_plan_t plan = {0};
    res->status = plan_blocks(xfer, req->peer, dst, src, n, &plan);
    if (res->status == KVBM_OK)
        res->status = xfer->ops->recv(xfer, req->peer, fd, &plan);
    kvbm__xfer_plan_free(&plan);
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
        release_reverse(xfer->manager, dst, n);
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
    kvbm__xfer_chunk_t chunk = {.ptr = (void *)req->raw_buf, .len = req->raw_bytes};
    kvbm__xfer_plan_t plan = {.chunks = &chunk, .count = 1, .bytes = req->raw_bytes};
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
    pthread_mutex_lock(&req->lock);
    req->status = status;
    req->result_ids = ids;
    req->n_result = n;
    req->done = true;
    pthread_cond_broadcast(&req->cond);
    pthread_mutex_unlock(&req->lock);
}

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void worker_run(kvbm_xfer_t *xfer, kvbm_xfer_req_t *req)
{
    int peer = req->peer;
    client_result_t res = {.status = KVBM_OK};
    int fd = xfer->client_fd[peer];
    uint64_t deadline = now_us() + (uint64_t)xfer->timeout_ms * 1000u;
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
        if (res.status != KVBM_ERR_BUSY || !res.in_sync || now_us() + backoff_us > deadline)
            break;
        struct timespec ts = {.tv_sec = (time_t)(backoff_us / 1000000u),
                              .tv_nsec = (long)(backoff_us % 1000000u) * 1000L};
        nanosleep(&ts, NULL);
        backoff_us = backoff_us * 2 < 20000u ? backoff_us * 2 : 20000u;
    }
    req_complete(req, res.status, res.ids, res.n);
}

static void *worker_main(void *arg)
{
    kvbm_xfer_t *xfer = arg;
    for (;;) {
        pthread_mutex_lock(&xfer->lock);
        while (xfer->head == NULL && !xfer->stopping)
            pthread_cond_wait(&xfer->cond, &xfer->lock);
        kvbm_xfer_req_t *req = xfer->head;
        bool stopping = xfer->stopping;
        if (req != NULL) {
            xfer->head = req->next;
            if (xfer->head == NULL)
                xfer->tail = NULL;
        }
        pthread_mutex_unlock(&xfer->lock);
        if (req == NULL)
            return NULL; /* stopping and drained */
        if (stopping)
            req_complete(req, KVBM_ERR_PEER, NULL, 0);
        else
            worker_run(xfer, req);
    }
}

/* ------------------------------------------------------------ server side */

static void notify_arrival(kvbm_xfer_t *xfer, int peer, kvbm_status_t status, size_t count,
                           const uint64_t *hashes, const uint32_t *ids)
{
    if (xfer->on_arrival == NULL)
        return;
    kvbm_xfer_arrival_t arrival = {
        .peer = peer, .status = status, .count = count, .hashes = hashes, .ids = ids};
    xfer->on_arrival(xfer->arrival_ctx, &arrival);
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

/*
 * Serves one PUSH whose header was read. Hashes this rank already holds are
 * acquired, not received again: ACCEPT says per block whether its bytes are
 * needed, and only those travel. Returns non-OK when the connection is lost
 * or out of step.
 */
static kvbm_status_t serve_push(kvbm_xfer_t *xfer, int peer, int fd, const kvbm__wire_hdr_t *hdr,
                                kvbm_status_t gate)
{
    uint32_t timeout = xfer->timeout_ms;
    size_t n = hdr->count;
    kvbm_status_t status;
    if (n == 0) {
        notify_arrival(xfer, peer, KVBM_ERR_PARSE, 0, NULL, NULL);
        return KVBM_ERR_PARSE;
    }
    uint64_t *hashes = malloc(n * sizeof(*hashes));
    uint32_t *src = malloc(n * sizeof(*src));
    uint32_t *dst = malloc(n * sizeof(*dst));
    uint32_t *fresh = malloc(n * sizeof(*fresh));   /* allocated blocks, in order */
    uint32_t *fresh_src = malloc(n * sizeof(*src)); /* the pusher's blocks for them */
    uint8_t *need = malloc(n);
    if (hashes == NULL || src == NULL || dst == NULL || fresh == NULL || fresh_src == NULL ||
        need == NULL) {
        status = KVBM_ERR_NO_MEMORY;
        goto free_arrays;
    }
    struct iovec iov[2] = {{.iov_base = hashes, .iov_len = n * sizeof(*hashes)},
                           {.iov_base = src, .iov_len = n * sizeof(*src)}};
    status = kvbm__sock_readv(fd, iov, 2, timeout);
    if (status == KVBM_OK && !ids_below(src, n, xfer->descs[peer].num_blocks))
        status = KVBM_ERR_PARSE;
    if (status != KVBM_OK)
        goto free_arrays;

    /* Held hashes are acquired (and count as a use); the rest get blocks. */
    size_t found = 0, m = 0;
    kvbm_status_t prep = gate;
    if (prep == KVBM_OK)
        prep = kvbm_manager_scan(xfer->manager, hashes, n, true, dst, &found);
    if (prep == KVBM_OK && found < n) {
        prep = kvbm_manager_allocate(xfer->manager, n - found, fresh, NULL, NULL);
        if (prep != KVBM_OK) {
            for (size_t i = n; i-- > 0;)
                if (dst[i] != KVBM_BLOCK_NONE)
                    (void)kvbm_manager_release(xfer->manager, &dst[i], 1);
        }
    }
    if (prep == KVBM_OK) {
        for (size_t i = 0; i < n; i++) {
            need[i] = dst[i] == KVBM_BLOCK_NONE;
            if (need[i]) {
                fresh_src[m] = src[i];
                dst[i] = fresh[m++]; /* NOLINT(clang-analyzer-core.uninitialized.Assign): allocate filled n - found entries, one per miss */
            }
        }
    }
    kvbm__wire_hdr_t reply;
    kvbm__wire_hdr_init(&reply, KVBM__MSG_ACCEPT, prep, (uint32_t)(prep == KVBM_OK ? n : 0));
    status = kvbm__wire_send(fd, timeout, &reply, dst, prep == KVBM_OK ? n * sizeof(*dst) : 0, need,
                             prep == KVBM_OK ? n : 0);
    if (prep != KVBM_OK) {
        /* Refused cleanly: nothing held, the connection stays usable. A busy
         * data path is retried by the pusher: not worth a notice. */
        if (prep != KVBM_ERR_BUSY)
            notify_arrival(xfer, peer, prep, n, NULL, NULL);
        goto free_arrays;
    }
    if (status == KVBM_OK && m > 0) {
        kvbm__xfer_plan_t plan = {0};
        status = plan_blocks(xfer, peer, fresh, fresh_src, m, &plan);
        if (status == KVBM_OK)
            status = xfer->ops->recv(xfer, peer, fd, &plan);
        kvbm__xfer_plan_free(&plan);
    }
    if (status != KVBM_OK)
        goto release_dst;

    /* Every byte arrived: register, tell the application, drop our
     * references so the blocks wait in the inactive pool for a match, and
     * only then tell the pusher, so its completion means all of that. */
    kvbm_status_t reg = register_needed(xfer, hdr, hashes, need, n, dst);
    notify_arrival(xfer, peer, reg, n, reg == KVBM_OK ? hashes : NULL, reg == KVBM_OK ? dst : NULL);
    release_reverse(xfer->manager, dst, n);
    kvbm__wire_hdr_init(&reply, KVBM__MSG_DONE, reg, (uint32_t)(reg == KVBM_OK ? n : 0));
    status =
        kvbm__wire_send(fd, timeout, &reply, dst, reg == KVBM_OK ? n * sizeof(*dst) : 0, NULL, 0);
    goto free_arrays;

release_dst:
    /* Back to reset (fresh blocks) or to the cache (held ones) first, so the
     * application's notice means "nothing left over". */
    release_reverse(xfer->manager, dst, n);
    notify_arrival(xfer, peer, status, n, NULL, NULL);
free_arrays:
    free(hashes);
    free(src);
    free(dst);
    free(fresh);
    free(fresh_src);
    free(need);
    return status;
}

static kvbm_status_t serve_pull(kvbm_xfer_t *xfer, int peer, int fd, const kvbm__wire_hdr_t *hdr,
                                kvbm_status_t gate)
{
    uint32_t timeout = xfer->timeout_ms;
    size_t count = hdr->count;
    kvbm_status_t status;
    uint64_t *hashes = malloc((count ? count : 1) * sizeof(*hashes));
    uint32_t *src = malloc((count ? count : 1) * sizeof(*src));
    uint32_t *dst = malloc((count ? count : 1) * sizeof(*dst));
    if (hashes == NULL || src == NULL || dst == NULL) {
        status = KVBM_ERR_NO_MEMORY;
        goto free_arrays;
    }
    status = kvbm__sock_read(fd, hashes, count * sizeof(*hashes), timeout);
    if (status != KVBM_OK)
        goto free_arrays;
    size_t n = 0;
    kvbm_status_t match = gate;
    if (match == KVBM_OK && count > 0)
        match = kvbm_manager_match(xfer->manager, hashes, count, src, &n);
    kvbm__wire_hdr_t reply;
    kvbm__wire_hdr_init(&reply, KVBM__MSG_OFFER, match, (uint32_t)n);
    status = kvbm__wire_send(fd, timeout, &reply, src, n * sizeof(*src), NULL, 0);
    if (status != KVBM_OK || n == 0)
        goto release_src;
    kvbm__wire_hdr_t go;
    status = kvbm__wire_recv_hdr(fd, timeout, KVBM__MSG_GO, &go);
    if (status != KVBM_OK || go.status != KVBM_OK)
        goto release_src; /* the puller had no room: nothing to send */
    if (go.count != n) {
        status = KVBM_ERR_PARSE;
        goto release_src;
    }
    status = kvbm__sock_read(fd, dst, n * sizeof(*dst), timeout);
    if (status == KVBM_OK && !ids_below(dst, n, xfer->descs[peer].num_blocks))
        status = KVBM_ERR_PARSE;
    kvbm__xfer_plan_t plan = {0};
    if (status == KVBM_OK)
        status = plan_blocks(xfer, peer, src, dst, n, &plan);
    if (status == KVBM_OK)
        status = xfer->ops->send(xfer, peer, fd, &plan);
    kvbm__xfer_plan_free(&plan);
release_src:
    release_reverse(xfer->manager, src, n);
free_arrays:
    free(hashes);
    free(src);
    free(dst);
    return status;
}

static kvbm_status_t serve_raw(kvbm_xfer_t *xfer, int peer, int fd, const kvbm__wire_hdr_t *hdr,
                               kvbm_status_t gate)
{
    uint32_t timeout = xfer->timeout_ms;
    kvbm_status_t ready = gate;
    if (ready != KVBM_OK) {
        /* refused below */
    } else if (hdr->arg > RAW_MAX_BYTES) {
        ready = KVBM_ERR_INVALID_ARG;
    } else if (hdr->arg > xfer->scratch_bytes) {
        if (xfer->scratch != NULL)
            xfer->ops->scratch_free(xfer, xfer->scratch);
        xfer->scratch = NULL;
        xfer->scratch_bytes = 0;
        ready = xfer->ops->scratch_alloc(xfer, (size_t)hdr->arg, &xfer->scratch);
        if (ready == KVBM_OK)
            xfer->scratch_bytes = (size_t)hdr->arg;
    }
    kvbm__wire_hdr_t reply;
    kvbm__wire_hdr_init(&reply, KVBM__MSG_RAW_READY, ready, 0);
    kvbm_status_t status = kvbm__wire_send(fd, timeout, &reply, NULL, 0, NULL, 0);
    if (status != KVBM_OK || ready != KVBM_OK)
        return status;
    kvbm__xfer_chunk_t chunk = {.ptr = xfer->scratch, .len = (size_t)hdr->arg};
    kvbm__xfer_plan_t plan = {.chunks = &chunk, .count = 1, .bytes = (size_t)hdr->arg};
    status = xfer->ops->recv(xfer, peer, fd, &plan);
    if (status != KVBM_OK)
        return status;
    kvbm__wire_hdr_init(&reply, KVBM__MSG_RAW_DONE, KVBM_OK, 0);
    return kvbm__wire_send(fd, timeout, &reply, NULL, 0, NULL, 0);
}

/* Serves one request from @p peer. Returns false when the connection is
 * closed (cleanly or not) or out of step. */
static bool serve_one(kvbm_xfer_t *xfer, int peer)
{
    int fd = xfer->server_fd[peer];
    kvbm__wire_hdr_t hdr;
    kvbm_status_t status = kvbm__wire_recv_hdr(fd, xfer->timeout_ms, 0, &hdr);
    if (status != KVBM_OK)
        return false; /* a closed connection between requests is not an error */
    if (hdr.type != KVBM__MSG_PUSH && hdr.type != KVBM__MSG_PULL && hdr.type != KVBM__MSG_RAW) {
        kvbm__xfer_log("rank %d sent unexpected message type %u", peer, hdr.type);
        return false;
    }
    /* Only try for the data path: if this rank's worker holds it, refuse
     * (KVBM_ERR_BUSY) and let the requester retry, rather than wait. */
    kvbm_status_t gate = xfer->ops->data_begin(xfer, false);
    switch (hdr.type) {
    case KVBM__MSG_PUSH:
        status = serve_push(xfer, peer, fd, &hdr, gate);
        break;
    case KVBM__MSG_PULL:
        status = serve_pull(xfer, peer, fd, &hdr, gate);
        break;
    default:
        status = serve_raw(xfer, peer, fd, &hdr, gate);
        break;
    }
    if (gate == KVBM_OK)
        xfer->ops->data_end(xfer);
    return status == KVBM_OK;
}

static void *service_main(void *arg)
{
    kvbm_xfer_t *xfer = arg;
    struct pollfd *pfds = calloc((size_t)xfer->size + 1, sizeof(*pfds));
    int *peers = calloc((size_t)xfer->size + 1, sizeof(*peers));
    if (pfds == NULL || peers == NULL) {
        kvbm__xfer_log("service thread: out of memory; rank %d serves no requests", xfer->rank);
        goto free_arrays;
    }
    for (;;) {
        nfds_t n = 0;
        pfds[n++] = (struct pollfd){.fd = xfer->wake_fd[0], .events = POLLIN};
        for (int p = 0; p < xfer->size; p++) {
            if (p == xfer->rank || xfer->server_dead[p])
                continue;
            peers[n] = p;
            pfds[n++] = (struct pollfd){.fd = xfer->server_fd[p], .events = POLLIN};
        }
        int rc = poll(pfds, n, -1); /* idle is not a failure: wait for work or destroy */
        if (rc < 0) {
            if (errno == EINTR)
                continue;
            (void)KVBM__SYS_ERROR("poll");
            break;
        }
        if (pfds[0].revents != 0)
            break;
        for (nfds_t i = 1; i < n; i++) {
            if (pfds[i].revents == 0)
                continue;
            int peer = peers[i];
            if (!serve_one(xfer, peer)) {
                xfer->server_dead[peer] = true;
                shutdown(xfer->server_fd[peer], SHUT_RDWR);
            }
        }
    }
free_arrays:
    free(pfds);
    free(peers);
    return NULL;
}

/* ------------------------------------------------------------ create/destroy */

static kvbm_status_t check_memory(const kvbm_xfer_memory_t *mem, const kvbm__xfer_ops_t *ops,
                                  kvbm_manager_t *manager)
{
    if (mem->kind != ops->mem_kind || mem->num_blocks == 0 || mem->region_count == 0 ||
        mem->region_count > KVBM_XFER_MAX_REGIONS || mem->region_bytes == 0 ||
        mem->block_stride < mem->region_bytes || mem->region_base == NULL)
        return KVBM_ERR_INVALID_ARG;
    for (uint32_t r = 0; r < mem->region_count; r++)
        if (mem->region_base[r] == NULL)
            return KVBM_ERR_INVALID_ARG;
    if ((size_t)mem->num_blocks > SIZE_MAX / mem->block_stride)
        return KVBM_ERR_OVERFLOW;
    kvbm_pool_counts_t counts;
    kvbm_manager_counts(manager, &counts);
    if (counts.total > mem->num_blocks)
        return KVBM_ERR_INVALID_ARG; /* the manager's ids must index the slab */
    return KVBM_OK;
}

static kvbm_status_t check_config(const kvbm_xfer_config_t *config,
                                  const kvbm__xfer_ops_t **ops_out)
{
    if (config == NULL)
        return KVBM_ERR_INVALID_ARG;
    if (config->struct_size != sizeof(kvbm_xfer_config_t) ||
        config->version != KVBM_XFER_CONFIG_VERSION)
        return KVBM_ERR_VERSION;
    if (config->transport != KVBM_XFER_SOCKET && config->transport != KVBM_XFER_NCCL)
        return KVBM_ERR_INVALID_ARG;
    const kvbm__xfer_ops_t *ops = ops_for(config->transport);
    if (ops == NULL)
        return KVBM_ERR_UNSUPPORTED;
    if (config->size < 1 || config->size > KVBM_XFER_MAX_RANKS || config->rank < 0 ||
        config->rank >= config->size || config->timeout_ms == 0 || config->manager == NULL)
        return KVBM_ERR_INVALID_ARG;
    if (config->nccl_comm != NULL && config->transport != KVBM_XFER_NCCL)
        return KVBM_ERR_INVALID_ARG;
    uint32_t addr;
    if (kvbm__sock_parse_loopback(config->rendezvous_host, &addr) != KVBM_OK)
        return KVBM_ERR_INVALID_ARG;
    if (config->rank != 0 && config->rendezvous != NULL)
        return KVBM_ERR_INVALID_ARG;
    if (config->size > 1 && config->rank != 0 && config->rendezvous_port == 0)
        return KVBM_ERR_INVALID_ARG;
    if (config->layout != NULL && config->layout_base == NULL)
        return KVBM_ERR_INVALID_ARG;
    if (config->layout == NULL) {
        kvbm_status_t status = check_memory(&config->memory, ops, config->manager);
        if (status != KVBM_OK)
            return status;
    }
    kvbm_status_t status = ops->probe();
    if (status != KVBM_OK)
        return status;
    *ops_out = ops;
    return KVBM_OK;
}

static void close_fds(kvbm_xfer_t *xfer)
{
    for (int p = 0; p < xfer->size; p++) {
        if (xfer->client_fd[p] >= 0)
            close(xfer->client_fd[p]);
        if (xfer->server_fd[p] >= 0)
            close(xfer->server_fd[p]);
        if (xfer->boot_fds[p] >= 0)
            close(xfer->boot_fds[p]);
        xfer->client_fd[p] = xfer->server_fd[p] = xfer->boot_fds[p] = -1;
    }
    if (xfer->boot_fd >= 0)
        close(xfer->boot_fd);
    xfer->boot_fd = -1;
}

static void free_arrays(kvbm_xfer_t *xfer)
{
    free(xfer->region_base);
    free(xfer->descs);
    free(xfer->client_fd);
    free(xfer->server_fd);
    free(xfer->boot_fds);
    free(xfer->client_broken);
    free(xfer->server_dead);
}

kvbm_status_t kvbm_xfer_create(const kvbm_xfer_config_t *config, kvbm_xfer_t **xfer_out)
{
    const kvbm__xfer_ops_t *ops = NULL;
    if (xfer_out == NULL)
        return KVBM_ERR_INVALID_ARG;
    kvbm_status_t status = check_config(config, &ops);
    if (status != KVBM_OK)
        return status;

    kvbm_xfer_t *xfer = calloc(1, sizeof(*xfer));
    if (xfer == NULL)
        return KVBM_ERR_NO_MEMORY;
    size_t size = (size_t)config->size;
    xfer->rank = config->rank;
    xfer->size = config->size;
    xfer->timeout_ms = config->timeout_ms;
    xfer->ops = ops;
    xfer->manager = config->manager;
    xfer->memory = config->memory;
    xfer->on_arrival = config->on_arrival;
    xfer->arrival_ctx = config->arrival_ctx;
    xfer->nccl_comm_in = config->nccl_comm;
    xfer->cuda_device = config->cuda_device;
    xfer->boot_fd = -1;
    xfer->wake_fd[0] = xfer->wake_fd[1] = -1;
    if (config->layout != NULL) {
        status = kvbm__xfer_memory_from_layout(config->layout, config->layout_base, ops->mem_kind,
                                               &xfer->region_base, &xfer->memory);
        if (status == KVBM_OK)
            status = check_memory(&xfer->memory, ops, config->manager);
    } else {
        xfer->region_base = malloc(config->memory.region_count * sizeof(void *));
        if (xfer->region_base != NULL)
            memcpy(xfer->region_base, config->memory.region_base,
                   config->memory.region_count * sizeof(void *));
    }
    if (status != KVBM_OK)
        goto err_free;
    xfer->memory.region_base = xfer->region_base;
    xfer->descs = calloc(size, sizeof(*xfer->descs));
    xfer->client_fd = malloc(size * sizeof(int));
    xfer->server_fd = malloc(size * sizeof(int));
    xfer->boot_fds = malloc(size * sizeof(int));
    xfer->client_broken = calloc(size, sizeof(bool));
    xfer->server_dead = calloc(size, sizeof(bool));
    if (xfer->region_base == NULL || xfer->descs == NULL || xfer->client_fd == NULL ||
        xfer->server_fd == NULL || xfer->boot_fds == NULL || xfer->client_broken == NULL ||
        xfer->server_dead == NULL) {
        status = KVBM_ERR_NO_MEMORY;
        goto err_free;
    }
    for (size_t p = 0; p < size; p++)
        xfer->client_fd[p] = xfer->server_fd[p] = xfer->boot_fds[p] = -1;

    if (pipe2(xfer->wake_fd, O_CLOEXEC) != 0) {
        status = KVBM__SYS_ERROR("pipe2");
        goto err_free;
    }
    if (pthread_mutex_init(&xfer->lock, NULL) != 0) {
        status = KVBM_ERR_NO_MEMORY;
        goto err_pipe;
    }
    if (pthread_cond_init(&xfer->cond, NULL) != 0) {
        status = KVBM_ERR_NO_MEMORY;
        goto err_mutex;
    }

    status = kvbm__xfer_bootstrap(xfer, config);
    if (status != KVBM_OK)
        goto err_fds;

    if (pthread_create(&xfer->worker, NULL, worker_main, xfer) != 0) {
        status = KVBM_ERR_NO_MEMORY;
        goto err_transport;
    }
    if (pthread_create(&xfer->service, NULL, service_main, xfer) != 0) {
        status = KVBM_ERR_NO_MEMORY;
        goto err_worker;
    }
    xfer->threads_started = true;
    *xfer_out = xfer;
    return KVBM_OK;

err_worker:
    pthread_mutex_lock(&xfer->lock);
    xfer->stopping = true;
    pthread_cond_broadcast(&xfer->cond);
    pthread_mutex_unlock(&xfer->lock);
    pthread_join(xfer->worker, NULL);
err_transport:
    xfer->ops->fini(xfer);
err_fds:
    close_fds(xfer);
    pthread_cond_destroy(&xfer->cond);
err_mutex:
    pthread_mutex_destroy(&xfer->lock);
err_pipe:
    close(xfer->wake_fd[0]);
    close(xfer->wake_fd[1]);
err_free:
    free_arrays(xfer);
    free(xfer);
    return status;
}

void kvbm_xfer_destroy(kvbm_xfer_t *xfer)
{
    if (xfer == NULL)
        return;
    pthread_mutex_lock(&xfer->lock);
    xfer->stopping = true;
    pthread_cond_broadcast(&xfer->cond);
    pthread_mutex_unlock(&xfer->lock);
    /* Abort what is in flight: both threads see their sockets fail at once
     * instead of waiting for a timeout. */
    for (int p = 0; p < xfer->size; p++) {
        if (xfer->client_fd[p] >= 0)
            shutdown(xfer->client_fd[p], SHUT_RDWR);
        if (xfer->server_fd[p] >= 0)
            shutdown(xfer->server_fd[p], SHUT_RDWR);
    }
    char byte = 1;
    ssize_t written = write(xfer->wake_fd[1], &byte, 1);
    (void)written; /* a full pipe wakes the thread just as well */
    pthread_join(xfer->worker, NULL);
    pthread_join(xfer->service, NULL);
    if (xfer->scratch != NULL)
        xfer->ops->scratch_free(xfer, xfer->scratch);
    xfer->ops->fini(xfer);
    close_fds(xfer);
    close(xfer->wake_fd[0]);
    close(xfer->wake_fd[1]);
    pthread_cond_destroy(&xfer->cond);
    pthread_mutex_destroy(&xfer->lock);
    free_arrays(xfer);
    free(xfer);
}

int kvbm_xfer_rank(const kvbm_xfer_t *xfer)
{
    return xfer ? xfer->rank : -1;
}

int kvbm_xfer_size(const kvbm_xfer_t *xfer)
{
    return xfer ? xfer->size : 0;
}

kvbm_status_t kvbm_xfer_barrier(kvbm_xfer_t *xfer)
{
    if (xfer == NULL)
        return KVBM_ERR_INVALID_ARG;
    kvbm__wire_hdr_t hdr;
    kvbm__wire_hdr_init(&hdr, KVBM__MSG_BARRIER, KVBM_OK, 0);
    /* Ranks reach the barrier at different times; allow one timeout per rank. */
    uint32_t wait = xfer->timeout_ms;
    kvbm_status_t status = KVBM_OK;
    if (xfer->rank == 0) {
        for (int p = 1; p < xfer->size && status == KVBM_OK; p++) {
            kvbm__wire_hdr_t in;
            status = kvbm__wire_recv_hdr(xfer->boot_fds[p], wait, KVBM__MSG_BARRIER, &in);
        }
        for (int p = 1; p < xfer->size && status == KVBM_OK; p++)
            status = kvbm__wire_send(xfer->boot_fds[p], wait, &hdr, NULL, 0, NULL, 0);
    } else if (xfer->size > 1) {
        status = kvbm__wire_send(xfer->boot_fd, wait, &hdr, NULL, 0, NULL, 0);
        if (status == KVBM_OK)
            status = kvbm__wire_recv_hdr(xfer->boot_fd, 2 * wait, KVBM__MSG_BARRIER, &hdr);
    }
    return status;
}

/* ------------------------------------------------------------ requests */

static kvbm_status_t req_new(kvbm__req_kind_t kind, int peer, kvbm_manager_t *manager,
                             kvbm_xfer_req_t **req_out)
{
    kvbm_xfer_req_t *req = calloc(1, sizeof(*req));
    if (req == NULL)
        return KVBM_ERR_NO_MEMORY;
    if (pthread_mutex_init(&req->lock, NULL) != 0)
        goto err_free;
    if (pthread_cond_init(&req->cond, NULL) != 0)
        goto err_mutex;
    req->kind = kind;
    req->peer = peer;
    req->manager = manager;
    *req_out = req;
    return KVBM_OK;
err_mutex:
    pthread_mutex_destroy(&req->lock);
err_free:
    free(req);
    return KVBM_ERR_NO_MEMORY;
}

static void req_delete(kvbm_xfer_req_t *req)
{
    free(req->src_ids);
    free(req->hashes);
    free(req->result_ids);
    pthread_cond_destroy(&req->cond);
    pthread_mutex_destroy(&req->lock);
    free(req);
}

static kvbm_status_t req_submit(kvbm_xfer_t *xfer, kvbm_xfer_req_t *req)
{
    pthread_mutex_lock(&xfer->lock);
    if (xfer->stopping) {
        pthread_mutex_unlock(&xfer->lock);
        return KVBM_ERR_BAD_STATE;
    }
    if (xfer->tail != NULL)
        xfer->tail->next = req;
    else
        xfer->head = req;
    xfer->tail = req;
    pthread_cond_signal(&xfer->cond);
    pthread_mutex_unlock(&xfer->lock);
    return KVBM_OK;
}

static bool peer_ok(const kvbm_xfer_t *xfer, int peer)
{
    return peer >= 0 && peer < xfer->size && peer != xfer->rank;
}

kvbm_status_t kvbm_xfer_push(kvbm_xfer_t *xfer, int peer, const uint32_t *block_ids,
                             const uint64_t *hashes, size_t count, const kvbm_register_opts_t *opts,
                             kvbm_xfer_req_t **req_out)
{
    if (xfer == NULL || block_ids == NULL || hashes == NULL || req_out == NULL ||
        !peer_ok(xfer, peer) || count == 0 || count > KVBM_XFER_MAX_BLOCKS ||
        !ids_below(block_ids, count, xfer->memory.num_blocks))
        return KVBM_ERR_INVALID_ARG;
    kvbm_xfer_req_t *req;
    kvbm_status_t status = req_new(KVBM__REQ_PUSH, peer, xfer->manager, &req);
    if (status != KVBM_OK)
        return status;
    req->src_ids = malloc(count * sizeof(*req->src_ids));
    req->hashes = malloc(count * sizeof(*req->hashes));
    if (req->src_ids == NULL || req->hashes == NULL) {
        status = KVBM_ERR_NO_MEMORY;
        goto err_req;
    }
    memcpy(req->src_ids, block_ids, count * sizeof(*block_ids));
    memcpy(req->hashes, hashes, count * sizeof(*hashes));
    req->count = count;
    if (opts != NULL) {
        req->opts = *opts;
        req->has_opts = true;
    }
    status = req_submit(xfer, req);
    if (status != KVBM_OK)
        goto err_req;
    *req_out = req;
    return KVBM_OK;
err_req:
    req_delete(req);
    return status;
}

kvbm_status_t kvbm_xfer_pull(kvbm_xfer_t *xfer, int peer, const uint64_t *hashes, size_t count,
                             kvbm_xfer_req_t **req_out)
{
    if (xfer == NULL || hashes == NULL || req_out == NULL || !peer_ok(xfer, peer) || count == 0 ||
        count > KVBM_XFER_MAX_BLOCKS)
        return KVBM_ERR_INVALID_ARG;
    kvbm_xfer_req_t *req;
    kvbm_status_t status = req_new(KVBM__REQ_PULL, peer, xfer->manager, &req);
    if (status != KVBM_OK)
        return status;
    req->hashes = malloc(count * sizeof(*req->hashes));
    if (req->hashes == NULL) {
        status = KVBM_ERR_NO_MEMORY;
        goto err_req;
    }
    memcpy(req->hashes, hashes, count * sizeof(*hashes));
    req->count = count;
    status = req_submit(xfer, req);
    if (status != KVBM_OK)
        goto err_req;
    *req_out = req;
    return KVBM_OK;
err_req:
    req_delete(req);
    return status;
}

kvbm_status_t kvbm_xfer_send_raw(kvbm_xfer_t *xfer, int peer, const void *buf, size_t bytes,
                                 kvbm_xfer_req_t **req_out)
{
    if (xfer == NULL || buf == NULL || req_out == NULL || !peer_ok(xfer, peer) || bytes == 0 ||
        bytes > RAW_MAX_BYTES)
        return KVBM_ERR_INVALID_ARG;
    kvbm_xfer_req_t *req;
    kvbm_status_t status = req_new(KVBM__REQ_RAW, peer, xfer->manager, &req);
    if (status != KVBM_OK)
        return status;
    req->raw_buf = buf;
    req->raw_bytes = bytes;
    status = req_submit(xfer, req);
    if (status != KVBM_OK) {
        req_delete(req);
        return status;
    }
    *req_out = req;
    return KVBM_OK;
}

kvbm_status_t kvbm_xfer_req_wait(kvbm_xfer_req_t *req)
{
    if (req == NULL)
        return KVBM_ERR_INVALID_ARG;
    pthread_mutex_lock(&req->lock);
    while (!req->done)
        pthread_cond_wait(&req->cond, &req->lock);
    kvbm_status_t status = req->status;
    pthread_mutex_unlock(&req->lock);
    return status;
}

bool kvbm_xfer_req_done(kvbm_xfer_req_t *req)
{
    if (req == NULL)
        return false;
    pthread_mutex_lock(&req->lock);
    bool done = req->done;
    pthread_mutex_unlock(&req->lock);
    return done;
}

kvbm_status_t kvbm_xfer_req_blocks(kvbm_xfer_req_t *req, uint32_t *ids_out, size_t capacity,
                                   size_t *count_out)
{
    if (req == NULL || count_out == NULL)
        return KVBM_ERR_INVALID_ARG;
    kvbm_status_t status = KVBM_OK;
    pthread_mutex_lock(&req->lock);
    if (!req->done || req->status != KVBM_OK) {
        status = KVBM_ERR_BAD_STATE;
    } else if (ids_out != NULL) {
        if (capacity < req->n_result) {
            status = KVBM_ERR_INVALID_ARG;
        } else {
            if (req->n_result > 0)
                memcpy(ids_out, req->result_ids, req->n_result * sizeof(*ids_out));
            req->claimed = true;
        }
    }
    size_t n = req->n_result;
    pthread_mutex_unlock(&req->lock);
    if (status == KVBM_OK)
        *count_out = n;
    return status;
}

void kvbm_xfer_req_free(kvbm_xfer_req_t *req)
{
    if (req == NULL)
        return;
    (void)kvbm_xfer_req_wait(req);
    if (req->kind == KVBM__REQ_PULL && req->status == KVBM_OK && !req->claimed && req->n_result > 0)
        release_reverse(req->manager, req->result_ids, req->n_result);
    req_delete(req);
}
