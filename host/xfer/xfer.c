/*
 * Transfer objects: creation and teardown, requests, counters, and the
 * helpers the workers (client.c: requests this rank starts) and the service
 * threads (server.c: requests peers start) share. The protocol is described
 * in docs/TRANSFER.md; in short, for a push:
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
 * it is closed and the next request to that peer opens a fresh one.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/check.h"
#include "core/clock.h"
#include "core/config.h"
#include "core/error.h"
#include "core/log.h"
#include "core/prometheus.h"
#include "fault.h"
#include "object.h"

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
        return kvbm__fail(KVBM_ERR_INVALID_ARG, "unknown transport %d", (int)transport);
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

kvbm_status_t kvbm__xfer_plan_raw(const void *src, void *scratch, size_t scratch_bytes,
                                  uint64_t bytes, kvbm__copy_plan_t *plan)
{
    if (bytes == 0 || bytes > KVBM__XFER_RAW_MAX_BYTES ||
        (scratch != NULL && (scratch_bytes == 0 || scratch_bytes % KVBM__XFER_RAW_CHUNK_BYTES)))
        return kvbm__fail(
            KVBM_ERR_INVALID_ARG, "raw message of %llu bytes (1..%llu) into a %zu-byte scratch",
            (unsigned long long)bytes, (unsigned long long)KVBM__XFER_RAW_MAX_BYTES, scratch_bytes);
    size_t count = (size_t)((bytes + KVBM__XFER_RAW_CHUNK_BYTES - 1) / KVBM__XFER_RAW_CHUNK_BYTES);
    kvbm_copy_t *pieces = kvbm__alloc(count, sizeof(*pieces));
    if (pieces == NULL)
        return KVBM_ERR_NO_MEMORY;
    uint64_t offset = 0;
    for (size_t i = 0; i < count; i++) {
        uint64_t left = bytes - offset;
        size_t len = left < KVBM__XFER_RAW_CHUNK_BYTES ? (size_t)left : KVBM__XFER_RAW_CHUNK_BYTES;
        pieces[i] = (kvbm_copy_t){
            .src = src != NULL ? (const char *)src + offset : NULL,
            .dst = scratch != NULL ? (char *)scratch + offset % scratch_bytes : NULL,
            .bytes = len,
        };
        offset += len;
    }
    plan->pieces = pieces;
    plan->count = count;
    plan->bytes = (size_t)bytes;
    return KVBM_OK;
}

uint64_t kvbm__xfer_msg_deadline(const kvbm_xfer_t *xfer)
{
    return kvbm__deadline_ms(xfer->timeout_ms);
}

uint64_t kvbm__xfer_data_deadline(const kvbm_xfer_t *xfer, uint64_t bytes)
{
    uint64_t timeouts = 1 + bytes / KVBM__XFER_DEADLINE_BYTES;
    return kvbm__now_us() + timeouts * (uint64_t)xfer->timeout_ms * 1000u;
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

void kvbm__xfer_count_failure(kvbm_xfer_t *xfer, kvbm_status_t status)
{
    if (status == KVBM_ERR_TIMEOUT)
        kvbm__count(&xfer->counters.requests_timed_out);
    else if (status == KVBM_ERR_PARSE)
        kvbm__count(&xfer->counters.protocol_errors);
}

/* ------------------------------------------------------------ create/destroy */

/* sizeof(kvbm_xfer_config_t) at each published version (core/config.h):
 * version 2 appended listen_host .. raw_scratch_bytes. */
static const size_t xfer_config_sizes[] = {160, sizeof(kvbm_xfer_config_t)};
_Static_assert(sizeof(void *) != 8 || offsetof(kvbm_xfer_config_t, listen_host) == 160,
               "version 1 of kvbm_xfer_config_t ended where listen_host starts");

/* Imports the caller's config into @p config and checks what needs no peer. */
static kvbm_status_t import_config(const kvbm_xfer_config_t *caller, kvbm_xfer_config_t *config,
                                   const kvbm__xfer_ops_t **ops_out)
{
    if (caller == NULL)
        return kvbm__fail(KVBM_ERR_INVALID_ARG, "kvbm_xfer_create: config is NULL");
    const kvbm_xfer_config_t defaults = KVBM_XFER_CONFIG_INIT;
    kvbm_status_t import = KVBM__CONFIG_IMPORT(caller, xfer_config_sizes, &defaults, config);
    if (import != KVBM_OK)
        return import;
    if (config->transport != KVBM_XFER_SOCKET && config->transport != KVBM_XFER_NCCL)
        return kvbm__fail(KVBM_ERR_INVALID_ARG, "xfer config: unknown transport %d",
                          (int)config->transport);
    const kvbm__xfer_ops_t *ops = NULL;
    kvbm_status_t installed = ops_for(config->transport, &ops);
    if (installed != KVBM_OK)
        return installed;
    if (config->size < 1 || config->size > KVBM_XFER_MAX_RANKS || config->rank < 0 ||
        config->rank >= config->size)
        return kvbm__fail(KVBM_ERR_INVALID_ARG,
                          "xfer config: rank %d of size %d (size 1..%d, rank 0..size-1)",
                          config->rank, config->size, KVBM_XFER_MAX_RANKS);
    if (config->timeout_ms == 0 || config->manager == NULL)
        return kvbm__fail(KVBM_ERR_INVALID_ARG, "xfer config: %s",
                          config->manager == NULL ? "manager is NULL" : "timeout_ms is 0");
    if ((config->nccl_comm != NULL || config->engine_stream != NULL) &&
        config->transport != KVBM_XFER_NCCL)
        return kvbm__fail(KVBM_ERR_INVALID_ARG,
                          "xfer config: nccl_comm or engine_stream set for a transport other "
                          "than NCCL");
    if (config->rank != 0 && config->rendezvous != NULL)
        return kvbm__fail(KVBM_ERR_INVALID_ARG,
                          "xfer config: rendezvous is set on rank %d (rank 0 only)", config->rank);
    if (config->size > 1 && config->rank != 0 && config->rendezvous_port == 0)
        return kvbm__fail(KVBM_ERR_INVALID_ARG,
                          "xfer config: rank %d needs rendezvous_port (rank 0's)", config->rank);
    if (config->layout != NULL && config->layout_base == NULL)
        return kvbm__fail(KVBM_ERR_INVALID_ARG, "xfer config: layout is set, layout_base is NULL");
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

/* The rendezvous address, and the rule that without a secret every address
 * this rank binds or dials is loopback. */
static kvbm_status_t check_addresses(kvbm_xfer_t *xfer, const kvbm_xfer_config_t *config)
{
    kvbm_status_t status = KVBM_OK;
    if (config->rendezvous != NULL)
        xfer->rendezvous_addr = config->rendezvous->addr;
    else
        status = kvbm__addr_parse(config->rendezvous_host, config->rendezvous_port,
                                  &xfer->rendezvous_addr);
    kvbm__addr_t listen;
    if (status == KVBM_OK && config->listen_host != NULL)
        status = kvbm__addr_parse(config->listen_host, config->listen_port, &listen);
    if (status != KVBM_OK || xfer->auth.keyed)
        return status;
    if (!kvbm__addr_is_loopback(&xfer->rendezvous_addr) ||
        (config->listen_host != NULL && !kvbm__addr_is_loopback(&listen))) {
        kvbm__log(KVBM_LOG_ERROR, "transfers beyond loopback need a secret (config.secret or "
                                  "config.secret_file)");
        return kvbm__fail(KVBM_ERR_INVALID_ARG, "xfer config: transfers beyond loopback need a "
                                                "secret (config.secret or config.secret_file)");
    }
    return KVBM_OK;
}

static void shutdown_fd(int fd)
{
    if (fd >= 0)
        shutdown(fd, SHUT_RDWR);
}

/* Stops and joins every thread of the object (any of them may not have
 * started): queued requests fail with KVBM_ERR_PEER, connections in use are
 * shut down so nothing waits for a deadline. */
static void stop_threads(kvbm_xfer_t *xfer)
{
    kvbm__mutex_lock(&xfer->lock);
    xfer->stopping = true;
    for (int p = 0; p < xfer->size; p++) {
        kvbm__xfer_peer_t *peer = &xfer->peers[p];
        kvbm__cond_broadcast(&peer->cond);
        shutdown_fd(peer->client_fd);
        if (peer->server != NULL)
            shutdown_fd(peer->server->fd);
    }
    kvbm__mutex_unlock(&xfer->lock);
    char byte = 1;
    ssize_t written = write(xfer->wake_fd[1], &byte, 1);
    (void)written; /* a full pipe wakes the acceptor just as well */
    if (xfer->acceptor_started)
        kvbm__thread_join(xfer->acceptor);
    for (int p = 0; p < xfer->size; p++) {
        kvbm__mutex_lock(&xfer->lock);
        kvbm__xfer_peer_t *peer = &xfer->peers[p];
        bool worker = peer->worker_started, server = peer->server_started;
        pthread_t worker_thread = peer->worker, server_thread = peer->server_thread;
        kvbm__mutex_unlock(&xfer->lock);
        if (worker)
            kvbm__thread_join(worker_thread);
        if (server)
            kvbm__thread_join(server_thread);
    }
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

/* Frees what create allocated and initialised; every field may be absent. */
static void release(kvbm_xfer_t *xfer, int n_conds)
{
    for (int p = 0; p < xfer->size; p++) {
        close_fd(&xfer->peers[p].client_fd);
        close_fd(&xfer->boot_fds[p]);
    }
    for (int p = 0; p < n_conds; p++)
        kvbm__cond_destroy(&xfer->peers[p].cond);
    close_fd(&xfer->boot_fd);
    close_fd(&xfer->mesh_fd);
    close_fd(&xfer->wake_fd[0]);
    close_fd(&xfer->wake_fd[1]);
    kvbm__auth_wipe(&xfer->auth);
    kvbm__free((void *)xfer->geom.region_base);
    kvbm__free(xfer->peer_geom);
    kvbm__free(xfer->descs);
    kvbm__free(xfer->peers);
    kvbm__free(xfer->boot_fds);
    kvbm__free(xfer);
}

static kvbm_status_t init_sync(kvbm_xfer_t *xfer, int *n_conds)
{
    kvbm_status_t status = KVBM_OK;
    KVBM_PTHREAD_CHECK(pthread_mutex_init(&xfer->lock, NULL), status);
    if (status != KVBM_OK)
        return status;
    KVBM_PTHREAD_CHECK(pthread_mutex_init(&xfer->arrival_lock, NULL), status);
    if (status != KVBM_OK)
        goto err_lock;
    pthread_condattr_t attr;
    KVBM_PTHREAD_CHECK(pthread_condattr_init(&attr), status);
    if (status != KVBM_OK)
        goto err_arrival;
    KVBM_PTHREAD_CHECK(pthread_condattr_setclock(&attr, CLOCK_MONOTONIC), status);
    if (status == KVBM_OK)
        KVBM_PTHREAD_CHECK(pthread_cond_init(&xfer->cond, &attr), status);
    pthread_condattr_destroy(&attr);
    if (status != KVBM_OK)
        goto err_arrival;
    for (*n_conds = 0; *n_conds < xfer->size; (*n_conds)++) {
        KVBM_PTHREAD_CHECK(pthread_cond_init(&xfer->peers[*n_conds].cond, NULL), status);
        if (status != KVBM_OK)
            goto err_conds;
    }
    return KVBM_OK;
err_conds:
    while (*n_conds > 0)
        kvbm__cond_destroy(&xfer->peers[--(*n_conds)].cond);
    kvbm__cond_destroy(&xfer->cond);
err_arrival:
    kvbm__mutex_destroy(&xfer->arrival_lock);
err_lock:
    kvbm__mutex_destroy(&xfer->lock);
    return status;
}

static void destroy_sync(kvbm_xfer_t *xfer)
{
    kvbm__cond_destroy(&xfer->cond);
    kvbm__mutex_destroy(&xfer->arrival_lock);
    kvbm__mutex_destroy(&xfer->lock);
}

kvbm_status_t kvbm_xfer_create(const kvbm_xfer_config_t *caller_config, kvbm_xfer_t **xfer_out)
{
    const kvbm__xfer_ops_t *ops = NULL;
    KVBM_REQUIRE_ARG(xfer_out != NULL);
    kvbm_xfer_config_t imported;
    kvbm_status_t status = import_config(caller_config, &imported, &ops);
    if (status != KVBM_OK)
        return status;
    const kvbm_xfer_config_t *config = &imported;

    kvbm_xfer_t *xfer = kvbm__calloc(1, sizeof(*xfer));
    if (xfer == NULL)
        return KVBM_ERR_NO_MEMORY;
    size_t size = (size_t)config->size;
    int n_conds = 0;
    xfer->rank = config->rank;
    xfer->size = config->size;
    xfer->timeout_ms = config->timeout_ms;
    xfer->ops = ops;
    xfer->manager = config->manager;
    xfer->on_arrival = config->on_arrival;
    xfer->arrival_ctx = config->arrival_ctx;
    xfer->nccl_comm_in = config->nccl_comm;
    xfer->cuda_device = config->cuda_device;
    xfer->engine_stream = config->engine_stream;
    xfer->raw_scratch_bytes =
        config->raw_scratch_bytes / KVBM__XFER_RAW_CHUNK_BYTES * KVBM__XFER_RAW_CHUNK_BYTES;
    if (xfer->raw_scratch_bytes == 0)
        xfer->raw_scratch_bytes = KVBM__XFER_RAW_CHUNK_BYTES;
    xfer->boot_fd = xfer->mesh_fd = -1;
    xfer->wake_fd[0] = xfer->wake_fd[1] = -1;
    xfer->descs = kvbm__calloc(size, sizeof(*xfer->descs));
    xfer->peer_geom = kvbm__calloc(size, sizeof(*xfer->peer_geom));
    xfer->peers = kvbm__calloc(size, sizeof(*xfer->peers));
    xfer->boot_fds = kvbm__alloc(size, sizeof(int));
    if (xfer->descs == NULL || xfer->peer_geom == NULL || xfer->peers == NULL ||
        xfer->boot_fds == NULL) {
        status = KVBM_ERR_NO_MEMORY;
        goto err_release;
    }
    for (size_t p = 0; p < size; p++) {
        xfer->peers[p].xfer = xfer;
        xfer->peers[p].index = (int)p;
        xfer->peers[p].client_fd = xfer->boot_fds[p] = -1;
    }
    status = kvbm__auth_init(config->secret, config->secret_len, config->secret_file, &xfer->auth);
    if (status == KVBM_OK)
        status = check_addresses(xfer, config);
    if (status == KVBM_OK)
        status = kvbm__xfer_memory_init(xfer, config);
    if (status != KVBM_OK)
        goto err_release;
    if (pipe2(xfer->wake_fd, O_CLOEXEC) != 0) {
        status = KVBM_SYS_ERROR("pipe2");
        goto err_release;
    }
    status = init_sync(xfer, &n_conds);
    if (status != KVBM_OK)
        goto err_release;

    status = kvbm__xfer_bootstrap(xfer, config);
    if (status != KVBM_OK)
        goto err_stop;
    *xfer_out = xfer;
    return KVBM_OK;

err_stop:
    stop_threads(xfer);
    xfer->ops->fini(xfer);
    destroy_sync(xfer);
err_release:
    release(xfer, n_conds);
    return status;
}

void kvbm_xfer_destroy(kvbm_xfer_t *xfer)
{
    if (xfer == NULL)
        return;
    stop_threads(xfer);
    xfer->ops->fini(xfer);
    destroy_sync(xfer);
    release(xfer, xfer->size);
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
    KVBM_REQUIRE_ARG(xfer != NULL);
    kvbm__wire_hdr_t hdr;
    kvbm__wire_hdr_init(&hdr, KVBM__MSG_BARRIER, KVBM_OK, 0);
    /* Ranks reach the barrier at different times; allow one timeout per rank. */
    kvbm_status_t status = KVBM_OK;
    if (xfer->rank == 0) {
        for (int p = 1; p < xfer->size && status == KVBM_OK; p++) {
            kvbm__wire_hdr_t in;
            status = kvbm__wire_recv_hdr(xfer->boot_fds[p], kvbm__xfer_msg_deadline(xfer),
                                         KVBM__MSG_BARRIER, &in);
        }
        for (int p = 1; p < xfer->size && status == KVBM_OK; p++)
            status = kvbm__wire_send(xfer->boot_fds[p], kvbm__xfer_msg_deadline(xfer), &hdr, NULL,
                                     0, NULL, 0);
    } else if (xfer->size > 1) {
        status =
            kvbm__wire_send(xfer->boot_fd, kvbm__xfer_msg_deadline(xfer), &hdr, NULL, 0, NULL, 0);
        if (status == KVBM_OK)
            status = kvbm__wire_recv_hdr(xfer->boot_fd, kvbm__deadline_ms(2 * xfer->timeout_ms),
                                         KVBM__MSG_BARRIER, &hdr);
    }
    return status;
}

/* ------------------------------------------------------------ counters */

kvbm_status_t kvbm_xfer_stats(const kvbm_xfer_t *xfer, kvbm_xfer_stats_t *stats_out)
{
    KVBM_REQUIRE_ARG(xfer != NULL && stats_out != NULL);
    kvbm_xfer_stats_t stats;
#define KVBM__STATS_READ(field, type, help)                                                        \
    stats.field = atomic_load_explicit(&xfer->counters.field, memory_order_relaxed);
    KVBM_XFER_STATS_LIST(KVBM__STATS_READ)
#undef KVBM__STATS_READ
    *stats_out = stats;
    return KVBM_OK;
}

kvbm_status_t kvbm_xfer_stats_prometheus(const kvbm_xfer_t *xfer, FILE *out)
{
    kvbm_xfer_stats_t s;
    KVBM_REQUIRE_ARG(out != NULL && kvbm_xfer_stats(xfer, &s) == KVBM_OK);
    char labels[32];
    snprintf(labels, sizeof(labels), "rank=\"%d\"", xfer->rank);
    int rc = 0;
#define KVBM__STATS_PROM(field, type, help)                                                        \
    if (rc >= 0)                                                                                   \
        rc = kvbm__prometheus_write(out, "xfer_" #field, #type, help, labels, s.field);
    KVBM_XFER_STATS_LIST(KVBM__STATS_PROM)
#undef KVBM__STATS_PROM
    return rc < 0 ? KVBM_ERR_IO : KVBM_OK;
}

kvbm_status_t kvbm_xfer_stats_json(const kvbm_xfer_t *xfer, FILE *out)
{
    kvbm_xfer_stats_t s;
    KVBM_REQUIRE_ARG(out != NULL && kvbm_xfer_stats(xfer, &s) == KVBM_OK);
    int rc = fprintf(out, "{\"rank\": %d", xfer->rank);
#define KVBM__STATS_JSON(field, type, help)                                                        \
    if (rc >= 0)                                                                                   \
        rc = fprintf(out, ", \"" #field "\": %" PRIu64, s.field);
    KVBM_XFER_STATS_LIST(KVBM__STATS_JSON)
#undef KVBM__STATS_JSON
    if (rc >= 0)
        rc = fprintf(out, "}\n");
    return rc < 0 ? KVBM_ERR_IO : KVBM_OK;
}

/* ------------------------------------------------------------ requests */

static kvbm_status_t req_new(kvbm__req_kind_t kind, int peer, kvbm_manager_t *manager,
                             kvbm_xfer_req_t **req_out)
{
    kvbm_status_t status = KVBM_OK;
    kvbm_xfer_req_t *req = kvbm__calloc(1, sizeof(*req));
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
    kvbm__free(req);
    return status;
}

static void req_delete(kvbm_xfer_req_t *req)
{
    kvbm__free(req->src_ids);
    kvbm__free(req->hashes);
    kvbm__free(req->result_ids);
    kvbm__cond_destroy(&req->cond);
    kvbm__mutex_destroy(&req->lock);
    kvbm__free(req);
}

/* Queues a request for its peer's worker, starting the worker at the first
 * request to that peer. */
static kvbm_status_t req_submit(kvbm_xfer_t *xfer, kvbm_xfer_req_t *req)
{
    kvbm_status_t status = KVBM_OK;
    kvbm__xfer_peer_t *p = &xfer->peers[req->peer];
    kvbm__mutex_lock(&xfer->lock);
    if (xfer->stopping)
        status = KVBM_ERR_BAD_STATE;
    if (status == KVBM_OK && !p->worker_started) {
        KVBM_PTHREAD_CHECK(pthread_create(&p->worker, NULL, kvbm__xfer_worker_main, p), status);
        p->worker_started = status == KVBM_OK;
    }
    if (status == KVBM_OK) {
        if (p->tail != NULL)
            p->tail->next = req;
        else
            p->head = req;
        p->tail = req;
        kvbm__cond_signal(&p->cond);
    }
    kvbm__mutex_unlock(&xfer->lock);
    return status;
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

/* KVBM_ERR_INVALID_ARG, recorded, unless @p peer is another rank. */
static kvbm_status_t check_peer(const char *call, const kvbm_xfer_t *xfer, int peer)
{
    if (peer >= 0 && peer < xfer->size && peer != xfer->rank)
        return KVBM_OK;
    return kvbm__fail(KVBM_ERR_INVALID_ARG, "%s: peer %d is not another rank of 0..%d (this is %d)",
                      call, peer, xfer->size - 1, xfer->rank);
}

kvbm_status_t kvbm_xfer_push(kvbm_xfer_t *xfer, int peer, const uint32_t *block_ids,
                             const uint64_t *hashes, size_t count, const kvbm_register_opts_t *opts,
                             kvbm_xfer_req_t **req_out)
{
    KVBM_REQUIRE_ARG(xfer != NULL && block_ids != NULL && hashes != NULL && req_out != NULL);
    kvbm_status_t peer_status = check_peer("kvbm_xfer_push", xfer, peer);
    if (peer_status != KVBM_OK)
        return peer_status;
    KVBM_REQUIRE_ARG(count > 0 && count <= KVBM_XFER_MAX_BLOCKS);
    if (!kvbm__xfer_ids_below(block_ids, count, xfer->geom.num_blocks))
        return kvbm__fail(KVBM_ERR_INVALID_ARG, "kvbm_xfer_push: a block id is not below %u",
                          xfer->geom.num_blocks);
    kvbm_xfer_req_t *req;
    kvbm_status_t status = req_new(KVBM__REQ_PUSH, peer, xfer->manager, &req);
    if (status != KVBM_OK)
        return status;
    req->src_ids = kvbm__alloc(count, sizeof(*req->src_ids));
    req->hashes = kvbm__alloc(count, sizeof(*req->hashes));
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
    KVBM_REQUIRE_ARG(xfer != NULL && hashes != NULL && req_out != NULL);
    kvbm_status_t peer_status = check_peer("kvbm_xfer_pull", xfer, peer);
    if (peer_status != KVBM_OK)
        return peer_status;
    KVBM_REQUIRE_ARG(count > 0 && count <= KVBM_XFER_MAX_BLOCKS);
    kvbm_xfer_req_t *req;
    kvbm_status_t status = req_new(KVBM__REQ_PULL, peer, xfer->manager, &req);
    if (status != KVBM_OK)
        return status;
    req->hashes = kvbm__alloc(count, sizeof(*req->hashes));
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
    KVBM_REQUIRE_ARG(xfer != NULL && buf != NULL && req_out != NULL);
    kvbm_status_t peer_status = check_peer("kvbm_xfer_send_raw", xfer, peer);
    if (peer_status != KVBM_OK)
        return peer_status;
    KVBM_REQUIRE_ARG(bytes > 0 && bytes <= KVBM__XFER_RAW_MAX_BYTES);
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
    KVBM_REQUIRE_ARG(req != NULL);
    char reason[KVBM__ERROR_MAX];
    kvbm__mutex_lock(&req->lock);
    while (!req->done)
        kvbm__cond_wait(&req->cond, &req->lock);
    kvbm_status_t status = req->status;
    memcpy(reason, req->reason, sizeof(reason));
    kvbm__mutex_unlock(&req->lock);
    if (status != KVBM_OK)
        return kvbm__fail(status, "transfer with rank %d: %s", req->peer,
                          reason[0] != '\0' ? reason : kvbm_status_str(status));
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
    KVBM_REQUIRE_ARG(req != NULL && count_out != NULL);
    kvbm_status_t status = KVBM_OK;
    kvbm__mutex_lock(&req->lock);
    if (!req->done || req->status != KVBM_OK) {
        status = KVBM_ERR_BAD_STATE;
    } else if (ids_out != NULL) {
        if (capacity < req->n_result) {
            status = kvbm__fail(KVBM_ERR_INVALID_ARG,
                                "kvbm_xfer_req_blocks: capacity %zu, the request has %zu blocks",
                                capacity, req->n_result);
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
