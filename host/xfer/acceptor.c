/*
 * The acceptor thread: every connection to this rank's mesh listener goes
 * through the handshake pool (handshake.h: authenticated side by side, each
 * with its own deadline), then must send CONNECT with a peer's rank and
 * this mesh's session id. It is then handed to a service thread of its own
 * (server.c). A peer that connects again (after a failure left its last
 * connection out of step) replaces its previous connection: the old one is
 * shut down, and the new thread joins the old one before serving, so the
 * peer's requests never run two at a time.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/check.h"
#include "core/log.h"
#include "handshake.h"
#include "object.h"

kvbm_status_t kvbm__xfer_serve_locked(kvbm_xfer_t *xfer, int peer, int fd)
{
    kvbm__xfer_peer_t *p = &xfer->peers[peer];
    kvbm__xfer_conn_t *conn = kvbm__calloc(1, sizeof(*conn));
    if (conn == NULL) {
        close(fd);
        return KVBM_ERR_NO_MEMORY;
    }
    conn->xfer = xfer;
    conn->peer = peer;
    conn->fd = fd;
    conn->has_prev = p->server_started;
    if (p->server_started)
        conn->prev = p->server_thread;
    pthread_t thread;
    kvbm_status_t status = KVBM_OK;
    KVBM_PTHREAD_CHECK(pthread_create(&thread, NULL, kvbm__xfer_service_main, conn), status);
    if (status != KVBM_OK) {
        close(fd);
        kvbm__free(conn);
        return status;
    }
    if (p->server != NULL)
        shutdown(p->server->fd, SHUT_RDWR); /* its thread closes it and exits */
    else if (!p->server_started) {
        xfer->n_served++;
        kvbm__cond_broadcast(&xfer->cond);
    }
    p->server = conn;
    p->server_thread = thread;
    p->server_started = true;
    return KVBM_OK;
}

/* A handshake completed: check who it claims to be, hand it over. */
static void adopt(kvbm_xfer_t *xfer, const kvbm__hs_t *hs)
{
    uint32_t peer = hs->first.count;
    if (peer >= (uint32_t)xfer->size || peer == (uint32_t)xfer->rank ||
        memcmp(hs->payload, xfer->session, KVBM__SESSION_BYTES) != 0) {
        char where[80];
        kvbm__addr_str(&hs->peer, where, sizeof(where));
        kvbm__log(KVBM_LOG_WARN, "connection from %s refused: not a rank of this mesh", where);
        kvbm__count(&xfer->counters.connections_refused);
        close(hs->fd);
        return;
    }
    kvbm__mutex_lock(&xfer->lock);
    if (xfer->stopping)
        close(hs->fd);
    else
        (void)kvbm__xfer_serve_locked(xfer, (int)peer, hs->fd);
    kvbm__mutex_unlock(&xfer->lock);
}

void *kvbm__xfer_acceptor_main(void *arg)
{
    kvbm_xfer_t *xfer = arg;
    kvbm__hs_pool_t *pool = kvbm__alloc(1, sizeof(*pool));
    if (pool == NULL) {
        kvbm__log(KVBM_LOG_ERROR, "acceptor: out of memory; rank %d accepts no connections",
                  xfer->rank);
        return NULL;
    }
    kvbm__hs_pool_init(pool, &xfer->auth, &xfer->counters, KVBM__PURPOSE_MESH, KVBM__MSG_CONNECT,
                       KVBM__SESSION_BYTES, xfer->timeout_ms, xfer->mesh_fd, xfer->wake_fd[0]);
    for (;;) {
        kvbm__hs_t hs;
        kvbm_status_t status = kvbm__hs_pool_next(pool, KVBM__NO_DEADLINE, &hs);
        if (status == KVBM_ERR_BAD_STATE)
            break; /* destroy */
        if (status != KVBM_OK) {
            /* Out of descriptors or memory, for now: the connection waits in
             * the backlog; try again shortly rather than spin or give up. */
            struct timespec ts = {.tv_sec = 0, .tv_nsec = 10 * 1000000L};
            nanosleep(&ts, NULL);
            continue;
        }
        adopt(xfer, &hs);
    }
    kvbm__hs_pool_close(pool);
    kvbm__free(pool);
    return NULL;
}
