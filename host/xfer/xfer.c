/*
 * Transfer objects: creation and requests, and the helpers the worker
 * (client.c: requests this rank starts) and the service thread
 * (server.c: requests peers start) share. The protocol is
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

#include "core/check.h"
#include "core/config.h"
#include "object.h"
#include "socket_io.h"

/* ------------------------------------------------------------ helpers */

/* The transport's ops table, checked as it is installed: KVBM_ERR_UNSUPPORTED
 * when it is not built in, KVBM_ERR_VERSION when its table is not this
 * library's version. Sets *ops_out only on success. */
static kvbm_status_t ops_for(kvbm_xfer_transport_t transport, const kvbm__xfer_ops_t **ops_out)
{
    static const struct {
        kvbm_xfer_transport_t transport;
        const kvbm__xfer_ops_t *ops;
    } transports[] = {
#define KVBM__TRANSPORT_ROW(row_transport, row_ops) {(row_transport), (row_ops)},
        KVBM__TRANSPORT_LIST(KVBM__TRANSPORT_ROW)
#undef KVBM__TRANSPORT_ROW
    };
    for (size_t i = 0; i < sizeof(transports) / sizeof(transports[0]); i++) {
        if (transports[i].transport != transport)
            continue;
        if (transports[i].ops->version != KVBM__XFER_OPS_VERSION)
            return KVBM_ERR_VERSION;
        *ops_out = transports[i].ops;
        return KVBM_OK;
    }
    return KVBM_ERR_UNSUPPORTED;
}

kvbm_status_t kvbm_xfer_transport_probe(kvbm_xfer_transport_t transport)
{
    if (transport != KVBM_XFER_SOCKET && transport != KVBM_XFER_NCCL)
        return KVBM_ERR_INVALID_ARG;
    const kvbm__xfer_ops_t *ops = NULL;
    kvbm_status_t status = ops_for(transport, &ops);
    if (status != KVBM_OK)
        return status;
    return ops->probe();
}

kvbm_status_t kvbm__xfer_plan_send(const kvbm_xfer_t *xfer, int peer, const uint32_t *local_ids,
                                   const uint32_t *remote_ids, size_t n, kvbm__copy_plan_t *plan)
{
    return kvbm__copy_plan_build(&xfer->geom, local_ids, &xfer->peer_geom[peer], remote_ids, n,
                                 xfer->ops->message_based, plan);
}

kvbm_status_t kvbm__xfer_plan_recv(const kvbm_xfer_t *xfer, int peer, const uint32_t *local_ids,
                                   const uint32_t *remote_ids, size_t n, kvbm__copy_plan_t *plan)
{
    return kvbm__copy_plan_build(&xfer->peer_geom[peer], remote_ids, &xfer->geom, local_ids, n,
                                 xfer->ops->message_based, plan);
}

bool kvbm__xfer_ids_below(const uint32_t *ids, size_t n, uint32_t bound)
{
    for (size_t i = 0; i < n; i++)
        if (ids[i] >= bound)
            return false;
    return true;
}

/* Releases in reverse order, so the head of a sequence is the most recent. */
void kvbm__xfer_release_reverse(kvbm_manager_t *manager, const uint32_t *ids, size_t n)
{
    for (size_t i = n; i-- > 0;) {
        kvbm_status_t status = kvbm_manager_release(manager, &ids[i], 1);
        (void)status;
        /* Only this layer holds these references; failure is a bug. */
    }
}

/* ------------------------------------------------------------ create/destroy */

/* sizeof(kvbm_xfer_config_t) at each published version (core/config.h). */
static const size_t xfer_config_sizes[] = {sizeof(kvbm_xfer_config_t)};

/* Imports the caller's config into @p config and checks it. */
static kvbm_status_t import_config(const kvbm_xfer_config_t *caller, kvbm_xfer_config_t *config,
                                   const kvbm__xfer_ops_t **ops_out)
{
    if (caller == NULL)
        return KVBM_ERR_INVALID_ARG;
    const kvbm_xfer_config_t defaults = KVBM_XFER_CONFIG_INIT;
    kvbm_status_t import = KVBM__CONFIG_IMPORT(caller, xfer_config_sizes, &defaults, config);
    if (import != KVBM_OK)
        return import;
    if (config->transport != KVBM_XFER_SOCKET && config->transport != KVBM_XFER_NCCL)
        return KVBM_ERR_INVALID_ARG;
    const kvbm__xfer_ops_t *ops = NULL;
    kvbm_status_t installed = ops_for(config->transport, &ops);
    if (installed != KVBM_OK)
        return installed;
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
        kvbm_status_t status =
            kvbm__xfer_memory_check(&config->memory, ops->mem_kind, config->manager);
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
    free((void *)xfer->geom.region_base);
    free(xfer->peer_geom);
    free(xfer->descs);
    free(xfer->client_fd);
    free(xfer->server_fd);
    free(xfer->boot_fds);
    free(xfer->client_broken);
    free(xfer->server_dead);
}

/* The per-peer arrays, with every socket closed (-1). free_arrays frees
 * whatever was allocated. */
static kvbm_status_t alloc_peer_arrays(kvbm_xfer_t *xfer, size_t size)
{
    xfer->descs = calloc(size, sizeof(*xfer->descs));
    xfer->peer_geom = calloc(size, sizeof(*xfer->peer_geom));
    xfer->client_fd = malloc(size * sizeof(int));
    xfer->server_fd = malloc(size * sizeof(int));
    xfer->boot_fds = malloc(size * sizeof(int));
    xfer->client_broken = calloc(size, sizeof(bool));
    xfer->server_dead = calloc(size, sizeof(bool));
    if (xfer->descs == NULL || xfer->peer_geom == NULL || xfer->client_fd == NULL ||
        xfer->server_fd == NULL || xfer->boot_fds == NULL || xfer->client_broken == NULL ||
        xfer->server_dead == NULL)
        return KVBM_ERR_NO_MEMORY;
    for (size_t p = 0; p < size; p++)
        xfer->client_fd[p] = xfer->server_fd[p] = xfer->boot_fds[p] = -1;
    return KVBM_OK;
}

kvbm_status_t kvbm_xfer_create(const kvbm_xfer_config_t *caller_config, kvbm_xfer_t **xfer_out)
{
    const kvbm__xfer_ops_t *ops = NULL;
    if (xfer_out == NULL)
        return KVBM_ERR_INVALID_ARG;
    kvbm_xfer_config_t imported;
    kvbm_status_t status = import_config(caller_config, &imported, &ops);
    if (status != KVBM_OK)
        return status;
    const kvbm_xfer_config_t *config = &imported;

    kvbm_xfer_t *xfer = calloc(1, sizeof(*xfer));
    if (xfer == NULL)
        return KVBM_ERR_NO_MEMORY;
    size_t size = (size_t)config->size;
    xfer->rank = config->rank;
    xfer->size = config->size;
    xfer->timeout_ms = config->timeout_ms;
    xfer->ops = ops;
    xfer->manager = config->manager;
    xfer->on_arrival = config->on_arrival;
    xfer->arrival_ctx = config->arrival_ctx;
    xfer->nccl_comm_in = config->nccl_comm;
    xfer->cuda_device = config->cuda_device;
    xfer->boot_fd = -1;
    xfer->wake_fd[0] = xfer->wake_fd[1] = -1;
    status = kvbm__xfer_memory_init(xfer, config);
    if (status != KVBM_OK)
        goto err_free;
    status = alloc_peer_arrays(xfer, size);
    if (status != KVBM_OK)
        goto err_free;

    if (pipe2(xfer->wake_fd, O_CLOEXEC) != 0) {
        status = KVBM_SYS_ERROR("pipe2");
        goto err_free;
    }
    KVBM_PTHREAD_CHECK(pthread_mutex_init(&xfer->lock, NULL), status);
    if (status != KVBM_OK)
        goto err_pipe;
    KVBM_PTHREAD_CHECK(pthread_cond_init(&xfer->cond, NULL), status);
    if (status != KVBM_OK)
        goto err_mutex;

    status = kvbm__xfer_bootstrap(xfer, config);
    if (status != KVBM_OK)
        goto err_fds;
    for (size_t p = 0; p < size; p++)
        xfer->peer_geom[p] = kvbm__xfer_peer_geom(&xfer->descs[p]);

    KVBM_PTHREAD_CHECK(pthread_create(&xfer->worker, NULL, kvbm__xfer_worker_main, xfer), status);
    if (status != KVBM_OK)
        goto err_transport;
    KVBM_PTHREAD_CHECK(pthread_create(&xfer->service, NULL, kvbm__xfer_service_main, xfer), status);
    if (status != KVBM_OK)
        goto err_worker;
    xfer->threads_started = true;
    *xfer_out = xfer;
    return KVBM_OK;

err_worker:
    kvbm__mutex_lock(&xfer->lock);
    xfer->stopping = true;
    kvbm__cond_broadcast(&xfer->cond);
    kvbm__mutex_unlock(&xfer->lock);
    kvbm__thread_join(xfer->worker);
err_transport:
    xfer->ops->fini(xfer);
err_fds:
    close_fds(xfer);
    kvbm__cond_destroy(&xfer->cond);
err_mutex:
    kvbm__mutex_destroy(&xfer->lock);
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
    kvbm__mutex_lock(&xfer->lock);
    xfer->stopping = true;
    kvbm__cond_broadcast(&xfer->cond);
    kvbm__mutex_unlock(&xfer->lock);
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
    kvbm__thread_join(xfer->worker);
    kvbm__thread_join(xfer->service);
    if (xfer->scratch != NULL)
        xfer->ops->scratch_free(xfer, xfer->scratch);
    xfer->ops->fini(xfer);
    close_fds(xfer);
    close(xfer->wake_fd[0]);
    close(xfer->wake_fd[1]);
    kvbm__cond_destroy(&xfer->cond);
    kvbm__mutex_destroy(&xfer->lock);
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
    kvbm_status_t status = KVBM_OK;
    kvbm_xfer_req_t *req = calloc(1, sizeof(*req));
    if (req == NULL)
        return KVBM_ERR_NO_MEMORY;
    KVBM_PTHREAD_CHECK(pthread_mutex_init(&req->lock, NULL), status);
    if (status != KVBM_OK)
        goto err_free;
    KVBM_PTHREAD_CHECK(pthread_cond_init(&req->cond, NULL), status);
    if (status != KVBM_OK)
        goto err_mutex;
    req->kind = kind;
    req->peer = peer;
    req->manager = manager;
    *req_out = req;
    return KVBM_OK;
err_mutex:
    kvbm__mutex_destroy(&req->lock);
err_free:
    free(req);
    return status;
}

static void req_delete(kvbm_xfer_req_t *req)
{
    free(req->src_ids);
    free(req->hashes);
    free(req->result_ids);
    kvbm__cond_destroy(&req->cond);
    kvbm__mutex_destroy(&req->lock);
    free(req);
}

static kvbm_status_t req_submit(kvbm_xfer_t *xfer, kvbm_xfer_req_t *req)
{
    kvbm__mutex_lock(&xfer->lock);
    if (xfer->stopping) {
        kvbm__mutex_unlock(&xfer->lock);
        return KVBM_ERR_BAD_STATE;
    }
    if (xfer->tail != NULL)
        xfer->tail->next = req;
    else
        xfer->head = req;
    xfer->tail = req;
    kvbm__cond_signal(&xfer->cond);
    kvbm__mutex_unlock(&xfer->lock);
    return KVBM_OK;
}

/* Queues a filled request; on failure deletes it. Sets *req_out only on
 * success. */
static kvbm_status_t req_start(kvbm_xfer_t *xfer, kvbm_xfer_req_t *req, kvbm_xfer_req_t **req_out)
{
    kvbm_status_t status = req_submit(xfer, req);
    if (status != KVBM_OK) {
        req_delete(req);
        return status;
    }
    *req_out = req;
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
        !kvbm__xfer_ids_below(block_ids, count, xfer->geom.num_blocks))
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
    return req_start(xfer, req, req_out);
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
    return req_start(xfer, req, req_out);
err_req:
    req_delete(req);
    return status;
}

kvbm_status_t kvbm_xfer_send_raw(kvbm_xfer_t *xfer, int peer, const void *buf, size_t bytes,
                                 kvbm_xfer_req_t **req_out)
{
    if (xfer == NULL || buf == NULL || req_out == NULL || !peer_ok(xfer, peer) || bytes == 0 ||
        bytes > KVBM__XFER_RAW_MAX_BYTES)
        return KVBM_ERR_INVALID_ARG;
    kvbm_xfer_req_t *req;
    kvbm_status_t status = req_new(KVBM__REQ_RAW, peer, xfer->manager, &req);
    if (status != KVBM_OK)
        return status;
    req->raw_buf = buf;
    req->raw_bytes = bytes;
    return req_start(xfer, req, req_out);
}

kvbm_status_t kvbm_xfer_req_wait(kvbm_xfer_req_t *req)
{
    if (req == NULL)
        return KVBM_ERR_INVALID_ARG;
    kvbm__mutex_lock(&req->lock);
    while (!req->done)
        kvbm__cond_wait(&req->cond, &req->lock);
    kvbm_status_t status = req->status;
    kvbm__mutex_unlock(&req->lock);
    return status;
}

bool kvbm_xfer_req_done(kvbm_xfer_req_t *req)
{
    if (req == NULL)
        return false;
    kvbm__mutex_lock(&req->lock);
    bool done = req->done;
    kvbm__mutex_unlock(&req->lock);
    return done;
}

kvbm_status_t kvbm_xfer_req_blocks(kvbm_xfer_req_t *req, uint32_t *ids_out, size_t capacity,
                                   size_t *count_out)
{
    if (req == NULL || count_out == NULL)
        return KVBM_ERR_INVALID_ARG;
    kvbm_status_t status = KVBM_OK;
    kvbm__mutex_lock(&req->lock);
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
    kvbm__mutex_unlock(&req->lock);
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
        kvbm__xfer_release_reverse(req->manager, req->result_ids, req->n_result);
    req_delete(req);
}
