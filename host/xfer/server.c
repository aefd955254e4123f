/*
 * Transfers, server side: the service thread answers the requests peers
 * start: it allocates and receives for a push, offers its matched prefix for
 * a pull, and registers only what arrived whole. Protocol: docs/TRANSFER.md
 * and xfer.c.
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
#include "core/log.h"
#include "object.h"
#include "socket_io.h"

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
 * The blocks a push lands in: hashes this rank holds are acquired (and count
 * as a use), the others get freshly allocated blocks. dst[i] is the block of
 * hash i, need[i] whether its bytes must travel; fresh[0..m) are the new
 * blocks in order and fresh_src the pusher's blocks for them. On error
 * nothing is held.
 */
static kvbm_status_t push_take_blocks(kvbm_xfer_t *xfer, const uint64_t *hashes,
                                      const uint32_t *src, size_t n, uint32_t *dst, uint8_t *need,
                                      uint32_t *fresh, uint32_t *fresh_src, size_t *m_out)
{
    size_t found = 0, m = 0;
    kvbm_status_t status = kvbm_manager_scan(xfer->manager, hashes, n, true, dst, &found);
    if (status == KVBM_OK && found < n) {
        status = kvbm_manager_allocate(xfer->manager, n - found, fresh, NULL, NULL);
        if (status != KVBM_OK) {
            for (size_t i = n; i-- > 0;)
                if (dst[i] != KVBM_BLOCK_NONE)
                    (void)kvbm_manager_release(xfer->manager, &dst[i], 1);
        }
    }
    if (status != KVBM_OK)
        return status;
    for (size_t i = 0; i < n; i++) {
        need[i] = dst[i] == KVBM_BLOCK_NONE;
        if (need[i]) {
            fresh_src[m] = src[i];
            dst[i] = fresh[m++]; /* NOLINT(clang-analyzer-core.uninitialized.Assign): allocate
                                    filled n - found entries, one per miss */
        }
    }
    *m_out = m;
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
    if (status == KVBM_OK && !kvbm__xfer_ids_below(src, n, xfer->descs[peer].num_blocks))
        status = KVBM_ERR_PARSE;
    if (status != KVBM_OK)
        goto free_arrays;

    size_t m = 0;
    kvbm_status_t prep = gate;
    if (prep == KVBM_OK)
        prep = push_take_blocks(xfer, hashes, src, n, dst, need, fresh, fresh_src, &m);
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
        kvbm__copy_plan_t plan = {0};
        status = kvbm__xfer_plan_recv(xfer, peer, fresh, fresh_src, m, &plan);
        if (status == KVBM_OK)
            status = xfer->ops->recv(xfer, peer, fd, &plan);
        kvbm__copy_plan_free(&plan);
    }
    if (status != KVBM_OK)
        goto release_dst;

    /* Every byte arrived: register, tell the application, drop our
     * references so the blocks wait in the inactive pool for a match, and
     * only then tell the pusher, so its completion means all of that. */
    kvbm_status_t reg = register_needed(xfer, hdr, hashes, need, n, dst);
    notify_arrival(xfer, peer, reg, n, reg == KVBM_OK ? hashes : NULL, reg == KVBM_OK ? dst : NULL);
    kvbm__xfer_release_reverse(xfer->manager, dst, n);
    kvbm__wire_hdr_init(&reply, KVBM__MSG_DONE, reg, (uint32_t)(reg == KVBM_OK ? n : 0));
    status =
        kvbm__wire_send(fd, timeout, &reply, dst, reg == KVBM_OK ? n * sizeof(*dst) : 0, NULL, 0);
    goto free_arrays;

release_dst:
    /* Back to reset (fresh blocks) or to the cache (held ones) first, so the
     * application's notice means "nothing left over". */
    kvbm__xfer_release_reverse(xfer->manager, dst, n);
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
    if (status == KVBM_OK && !kvbm__xfer_ids_below(dst, n, xfer->descs[peer].num_blocks))
        status = KVBM_ERR_PARSE;
    kvbm__copy_plan_t plan = {0};
    if (status == KVBM_OK)
        status = kvbm__xfer_plan_send(xfer, peer, src, dst, n, &plan);
    if (status == KVBM_OK)
        status = xfer->ops->send(xfer, peer, fd, &plan);
    kvbm__copy_plan_free(&plan);
release_src:
    kvbm__xfer_release_reverse(xfer->manager, src, n);
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
    } else if (hdr->arg > KVBM__XFER_RAW_MAX_BYTES) {
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
    kvbm_copy_t piece = {.dst = xfer->scratch, .bytes = (size_t)hdr->arg};
    kvbm__copy_plan_t plan = {.pieces = &piece, .count = 1, .bytes = (size_t)hdr->arg};
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
        kvbm__log(KVBM_LOG_ERROR, "rank %d sent unexpected message type %u", peer, hdr.type);
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

void *kvbm__xfer_service_main(void *arg)
{
    kvbm_xfer_t *xfer = arg;
    struct pollfd *pfds = calloc((size_t)xfer->size + 1, sizeof(*pfds));
    int *peers = calloc((size_t)xfer->size + 1, sizeof(*peers));
    if (pfds == NULL || peers == NULL) {
        kvbm__log(KVBM_LOG_ERROR, "service thread: out of memory; rank %d serves no requests",
                  xfer->rank);
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
            (void)KVBM_SYS_ERROR("poll");
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
