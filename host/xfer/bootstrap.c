/*
 * Rendezvous and mesh of a transfer object.
 *
 *  1. Every rank listens for the mesh on its listen address (config, or
 *     rank 0's rendezvous address, or the local address of the connection
 *     to rank 0).
 *  2. Ranks 1..N-1 connect to rank 0's rendezvous address, run the
 *     handshake (auth.h) and send HELLO with their description (rank, size,
 *     transport, memory geometry, mesh address and port). Rank 0 serves the
 *     handshakes side by side (handshake.h: a silent or slow connection
 *     delays no one, one that fails authentication is refused, counted and
 *     does not count as joining), waits for all ranks (one overall
 *     timeout), checks every description, draws the mesh's session id, asks
 *     the transport for its bootstrap blob (the NCCL unique id), and sends
 *     everyone TABLE: a status, every description, the session, the blob.
 *     A refused rank makes the status KVBM_ERR_INCOMPATIBLE for all, so
 *     every rank fails creation alike. Every rank checks the table again
 *     against its own memory: it trusts no peer's geometry, rank 0's
 *     included.
 *  3. Every rank starts its acceptor (acceptor.c), connects to every other
 *     rank's mesh listener (handshake, then CONNECT with its rank and the
 *     session: these become its client connections), and waits until every
 *     peer's connection to it arrived.
 *  4. The transport's init runs on every rank (NCCL: communicator).
 *
 * The rendezvous connections stay open for kvbm_xfer_barrier.
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/check.h"
#include "core/clock.h"
#include "core/log.h"
#include "fault.h"
#include "handshake.h"
#include "object.h"

kvbm_status_t kvbm_xfer_rendezvous_create(const char *host, uint16_t port,
                                          kvbm_xfer_rendezvous_t **rendezvous_out)
{
    KVBM_REQUIRE_ARG(rendezvous_out != NULL);
    kvbm__addr_t addr;
    kvbm_status_t status = kvbm__addr_parse(host, port, &addr);
    if (status != KVBM_OK)
        return status;
    kvbm_xfer_rendezvous_t *rv = kvbm__calloc(1, sizeof(*rv));
    if (rv == NULL)
        return KVBM_ERR_NO_MEMORY;
    status = kvbm__sock_listen(&addr, KVBM_XFER_MAX_RANKS, &rv->fd, &rv->port);
    if (status != KVBM_OK) {
        kvbm__free(rv);
        return status;
    }
    rv->addr = addr;
    kvbm__addr_set_port(&rv->addr, rv->port);
    *rendezvous_out = rv;
    return KVBM_OK;
}

uint16_t kvbm_xfer_rendezvous_port(const kvbm_xfer_rendezvous_t *rendezvous)
{
    return rendezvous ? rendezvous->port : 0;
}

void kvbm_xfer_rendezvous_destroy(kvbm_xfer_rendezvous_t *rendezvous)
{
    if (rendezvous == NULL)
        return;
    close(rendezvous->fd);
    kvbm__free(rendezvous);
}

/* ------------------------------------------------------------ addresses */

static void desc_set_addr(kvbm__wire_desc_t *desc, const kvbm__addr_t *addr)
{
    memset(desc->addr, 0, sizeof(desc->addr));
    desc->scope_id = 0;
    desc->port = kvbm__addr_port(addr);
    if (kvbm__addr_is_wildcard(addr)) {
        desc->family = KVBM__WIRE_AF_RENDEZVOUS;
    } else if (addr->ss.ss_family == AF_INET) {
        desc->family = KVBM__WIRE_AF_INET;
        memcpy(desc->addr, &((const struct sockaddr_in *)&addr->ss)->sin_addr, 4);
    } else {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&addr->ss;
        desc->family = KVBM__WIRE_AF_INET6;
        memcpy(desc->addr, &in6->sin6_addr, 16);
        desc->scope_id = in6->sin6_scope_id;
    }
}

/* Where to reach rank @p p: its description's address, or the rendezvous
 * address (rank 0 listening on a wildcard). */
static kvbm_status_t peer_addr(const kvbm_xfer_t *xfer, const kvbm__wire_desc_t *desc,
                               kvbm__addr_t *addr_out)
{
    kvbm__addr_t addr;
    memset(&addr, 0, sizeof(addr));
    if (desc->family == KVBM__WIRE_AF_RENDEZVOUS) {
        if (desc->rank != 0)
            return KVBM_ERR_PARSE; /* rank 0 fills in every other rank's address */
        addr = xfer->rendezvous_addr;
    } else if (desc->family == KVBM__WIRE_AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)&addr.ss;
        in->sin_family = AF_INET;
        memcpy(&in->sin_addr, desc->addr, 4);
        addr.len = sizeof(*in);
    } else {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&addr.ss;
        in6->sin6_family = AF_INET6;
        memcpy(&in6->sin6_addr, desc->addr, 16);
        /* A link-local address needs this host's interface, not the peer's:
         * take the one of the rendezvous address (the same link). */
        if (IN6_IS_ADDR_LINKLOCAL(&in6->sin6_addr) &&
            xfer->rendezvous_addr.ss.ss_family == AF_INET6)
            in6->sin6_scope_id =
                ((const struct sockaddr_in6 *)&xfer->rendezvous_addr.ss)->sin6_scope_id;
        addr.len = sizeof(*in6);
    }
    kvbm__addr_set_port(&addr, desc->port);
    if (kvbm__addr_is_wildcard(&addr) || desc->port == 0)
        return KVBM_ERR_PARSE;
    if (!xfer->auth.keyed && !kvbm__addr_is_loopback(&addr)) {
        kvbm__log(KVBM_LOG_ERROR, "rank %d is not on loopback, and this rank has no secret",
                  desc->rank);
        return kvbm__fail(KVBM_ERR_INVALID_ARG,
                          "rank %d is not on loopback, and this rank has no secret", desc->rank);
    }
    *addr_out = addr;
    return KVBM_OK;
}

/* ------------------------------------------------------------ rendezvous */

/* Rank 0: gather HELLOs (authenticated), check, send TABLE. */
static kvbm_status_t gather_root(kvbm_xfer_t *xfer, int rv_fd, uint8_t *blob, size_t *blob_len)
{
    uint64_t deadline = kvbm__deadline_ms(xfer->timeout_ms);
    kvbm_status_t verdict = KVBM_OK, status = KVBM_OK;
    kvbm__hs_pool_t *pool = kvbm__alloc(1, sizeof(*pool));
    if (pool == NULL)
        return KVBM_ERR_NO_MEMORY;
    kvbm__hs_pool_init(pool, &xfer->auth, &xfer->counters, KVBM__PURPOSE_RENDEZVOUS,
                       KVBM__MSG_HELLO, sizeof(kvbm__wire_desc_t), xfer->timeout_ms, rv_fd, -1);
    for (int joined = 1; joined < xfer->size;) {
        kvbm__hs_t hs;
        status = kvbm__hs_pool_next(pool, deadline, &hs);
        if (status != KVBM_OK)
            break;
        kvbm__wire_desc_t desc;
        memcpy(&desc, hs.payload, sizeof(desc));
        if (desc.rank <= 0 || desc.rank >= xfer->size || xfer->boot_fds[desc.rank] >= 0) {
            /* Not a rank this mesh is waiting for: refuse it, keep waiting. */
            kvbm__log(KVBM_LOG_ERROR, "rendezvous: bad or repeated rank %d refused", desc.rank);
            kvbm__count(&xfer->counters.connections_refused);
            close(hs.fd);
            continue;
        }
        /* A rank that binds a wildcard is reached where rank 0 saw it. */
        if (desc.family == KVBM__WIRE_AF_RENDEZVOUS) {
            kvbm__addr_t seen = hs.peer;
            kvbm__addr_set_port(&seen, desc.port);
            desc_set_addr(&desc, &seen);
        }
        if (!kvbm__xfer_desc_valid(&desc, desc.rank, xfer->size))
            verdict = KVBM_ERR_INCOMPATIBLE; /* everyone hears it in the table */
        xfer->boot_fds[desc.rank] = hs.fd;
        xfer->descs[desc.rank] = desc;
        joined++;
    }
    kvbm__hs_pool_close(pool);
    kvbm__free(pool);
    if (status != KVBM_OK)
        return status;
    /* Every pair, not only against rank 0: divisibility is not transitive. */
    for (int a = 0; a < xfer->size && verdict == KVBM_OK; a++)
        for (int b = a + 1; b < xfer->size && verdict == KVBM_OK; b++)
            if (!kvbm__xfer_desc_compatible(&xfer->descs[a], &xfer->descs[b]) ||
                (a == 0 && !kvbm__xfer_desc_fits(xfer, &xfer->descs[b])))
                verdict = KVBM_ERR_INCOMPATIBLE;
    kvbm__auth_random(xfer->session, sizeof(xfer->session));
    *blob_len = 0;
    if (verdict == KVBM_OK)
        verdict = xfer->ops->make_blob(xfer, blob, KVBM__BLOB_MAX, blob_len);
    kvbm__wire_hdr_t table;
    kvbm__wire_hdr_init(&table, KVBM__MSG_TABLE, verdict, (uint32_t)xfer->size);
    table.arg = *blob_len;
    size_t descs_len = (size_t)xfer->size * sizeof(*xfer->descs);
    for (int p = 1; p < xfer->size; p++) {
        struct iovec iov[4] = {
            {.iov_base = &table, .iov_len = sizeof(table)},
            {.iov_base = xfer->descs, .iov_len = descs_len},
            {.iov_base = xfer->session, .iov_len = KVBM__SESSION_BYTES},
            {.iov_base = blob, .iov_len = KVBM__BLOB_MAX},
        };
        status = kvbm__sock_writev(xfer->boot_fds[p], iov, 4, kvbm__xfer_msg_deadline(xfer));
        if (status != KVBM_OK)
            return status;
    }
    return verdict;
}

/* Ranks 1..N-1: HELLO, then wait for TABLE and check it. */
static kvbm_status_t join_root(kvbm_xfer_t *xfer, uint8_t *blob, size_t *blob_len)
{
    kvbm__wire_hdr_t hdr;
    kvbm__wire_hdr_init(&hdr, KVBM__MSG_HELLO, KVBM_OK, 0);
    kvbm_status_t status =
        kvbm__wire_send(xfer->boot_fd, kvbm__xfer_msg_deadline(xfer), &hdr,
                        &xfer->descs[xfer->rank], sizeof(kvbm__wire_desc_t), NULL, 0);
    if (status != KVBM_OK)
        return status;
    /* Rank 0 answers once everyone joined, which itself takes up to one timeout. */
    status = kvbm__wire_recv_hdr(xfer->boot_fd, kvbm__deadline_ms(2 * xfer->timeout_ms),
                                 KVBM__MSG_TABLE, &hdr);
    if (status != KVBM_OK)
        return status;
    if (hdr.count != (uint32_t)xfer->size || hdr.arg > KVBM__BLOB_MAX)
        return KVBM_ERR_INCOMPATIBLE;
    kvbm__wire_desc_t self = xfer->descs[xfer->rank];
    struct iovec iov[3] = {
        {.iov_base = xfer->descs, .iov_len = (size_t)xfer->size * sizeof(*xfer->descs)},
        {.iov_base = xfer->session, .iov_len = KVBM__SESSION_BYTES},
        {.iov_base = blob, .iov_len = KVBM__BLOB_MAX},
    };
    status = kvbm__sock_readv(xfer->boot_fd, iov, 3, kvbm__xfer_msg_deadline(xfer));
    if (status != KVBM_OK)
        return status;
    if (hdr.status != KVBM_OK)
        return (kvbm_status_t)hdr.status; /* a known status: checked with the header */
    /* Rank 0 may fill in this rank's address; the rest must be as sent. */
    if (memcmp(&self, &xfer->descs[xfer->rank], offsetof(kvbm__wire_desc_t, addr)) != 0 ||
        self.port != xfer->descs[xfer->rank].port)
        return KVBM_ERR_PARSE;
    xfer->descs[xfer->rank] = self;
    for (int p = 0; p < xfer->size; p++) {
        if (p == xfer->rank)
            continue;
        if (!kvbm__xfer_desc_valid(&xfer->descs[p], p, xfer->size) ||
            !kvbm__xfer_desc_fits(xfer, &xfer->descs[p]))
            return KVBM_ERR_INCOMPATIBLE;
    }
    *blob_len = (size_t)hdr.arg;
    return KVBM_OK;
}

/* ------------------------------------------------------------ mesh */

kvbm_status_t kvbm__xfer_dial(kvbm_xfer_t *xfer, int peer, bool at_create, int *fd_out)
{
    uint64_t deadline = kvbm__deadline_ms(xfer->timeout_ms);
    int fd;
    kvbm_status_t status = kvbm__sock_connect(&xfer->peers[peer].addr, deadline, at_create, &fd);
    if (status != KVBM_OK)
        return status;
    status = kvbm__hs_client(fd, &xfer->auth, KVBM__PURPOSE_MESH, deadline);
    if (status == KVBM_OK) {
        kvbm__wire_hdr_t hdr;
        kvbm__wire_hdr_init(&hdr, KVBM__MSG_CONNECT, KVBM_OK, (uint32_t)xfer->rank);
        status = kvbm__wire_send(fd, deadline, &hdr, xfer->session, KVBM__SESSION_BYTES, NULL, 0);
    }
    if (status != KVBM_OK) {
        close(fd);
        return status;
    }
    *fd_out = fd;
    return KVBM_OK;
}

/* pthread_cond_timedwait on CLOCK_MONOTONIC until @p deadline_us. */
static int cond_wait_until(pthread_cond_t *cond, pthread_mutex_t *mutex, uint64_t deadline_us)
{
    struct timespec ts = {.tv_sec = (time_t)(deadline_us / 1000000u),
                          .tv_nsec = (long)(deadline_us % 1000000u) * 1000L};
    return pthread_cond_timedwait(cond, mutex, &ts);
}

/* Connect to every peer, then wait until every peer connected to us. */
static kvbm_status_t connect_mesh(kvbm_xfer_t *xfer)
{
    /* Everything the service threads read is in place before the first one
     * can start: peers may push as soon as their own create returns. */
    for (int p = 0; p < xfer->size; p++) {
        xfer->peer_geom[p] = kvbm__xfer_peer_geom(&xfer->descs[p]);
        if (p == xfer->rank)
            continue;
        kvbm_status_t status = peer_addr(xfer, &xfer->descs[p], &xfer->peers[p].addr);
        if (status != KVBM_OK)
            return status;
    }
    kvbm_status_t status = KVBM_OK;
    KVBM_PTHREAD_CHECK(pthread_create(&xfer->acceptor, NULL, kvbm__xfer_acceptor_main, xfer),
                       status);
    if (status != KVBM_OK)
        return status;
    xfer->acceptor_started = true;
    for (int p = 0; p < xfer->size && status == KVBM_OK; p++) {
        if (p == xfer->rank)
            continue;
        int fd;
        status = kvbm__xfer_dial(xfer, p, true, &fd);
        if (status == KVBM_OK) {
            kvbm__mutex_lock(&xfer->lock);
            xfer->peers[p].client_fd = fd;
            kvbm__mutex_unlock(&xfer->lock);
        }
    }
    if (status != KVBM_OK)
        return status;
    uint64_t deadline = kvbm__deadline_ms(xfer->timeout_ms);
    kvbm__mutex_lock(&xfer->lock);
    while (xfer->n_served < xfer->size - 1 && status == KVBM_OK) {
        int rc = cond_wait_until(&xfer->cond, &xfer->lock, deadline);
        if (rc == ETIMEDOUT && xfer->n_served < xfer->size - 1)
            status = KVBM_ERR_TIMEOUT;
    }
    kvbm__mutex_unlock(&xfer->lock);
    return status;
}

/* This rank's mesh listener address: the config's, or the one given. */
static kvbm_status_t listen_addr(const kvbm_xfer_config_t *config, const kvbm__addr_t *fallback,
                                 kvbm__addr_t *addr_out)
{
    if (config->listen_host != NULL)
        return kvbm__addr_parse(config->listen_host, config->listen_port, addr_out);
    *addr_out = *fallback;
    kvbm__addr_set_port(addr_out, config->listen_port);
    return KVBM_OK;
}

static kvbm_status_t open_mesh(kvbm_xfer_t *xfer, const kvbm_xfer_config_t *config,
                               const kvbm__addr_t *fallback)
{
    kvbm__addr_t addr;
    kvbm_status_t status = listen_addr(config, fallback, &addr);
    if (status != KVBM_OK)
        return status;
    uint16_t port;
    status = kvbm__sock_listen(&addr, KVBM_XFER_MAX_RANKS, &xfer->mesh_fd, &port);
    if (status != KVBM_OK)
        return status;
    kvbm__addr_set_port(&addr, port);
    desc_set_addr(&xfer->descs[xfer->rank], &addr);
    return KVBM_OK;
}

kvbm_status_t kvbm__xfer_bootstrap(kvbm_xfer_t *xfer, const kvbm_xfer_config_t *config)
{
    kvbm__wire_desc_t *self = &xfer->descs[xfer->rank];
    memset(self, 0, sizeof(*self));
    self->rank = xfer->rank;
    self->size = xfer->size;
    self->transport = (uint32_t)xfer->ops->transport;
    self->mem_kind = (uint32_t)xfer->mem_kind;
    self->num_blocks = xfer->geom.num_blocks;
    self->region_count = xfer->geom.region_count;
    self->region_bytes = xfer->geom.region_bytes;
    self->block_stride = xfer->geom.block_stride;
    self->layout_key = xfer->layout_key;
    int64_t lie = 0;
    if (xfer->size > 1 && kvbm__xfer_fault_lie_take(KVBM__LIE_REGIONS, &lie) && lie > 0) {
        /* A test's hostile rank: regions of another size, same block bytes. */
        uint64_t block_bytes = self->region_bytes * self->region_count;
        self->region_bytes = (uint64_t)lie;
        self->region_count = (uint32_t)(block_bytes / (uint64_t)lie);
    }

    uint8_t blob[KVBM__BLOB_MAX] = {0};
    size_t blob_len = 0;
    kvbm_status_t status;
    if (xfer->size == 1) {
        status = xfer->ops->make_blob(xfer, blob, sizeof(blob), &blob_len);
        return status == KVBM_OK ? xfer->ops->init(xfer, blob, blob_len) : status;
    }

    if (xfer->rank == 0) {
        int rv_fd = config->rendezvous != NULL ? config->rendezvous->fd : -1;
        uint16_t port = 0;
        if (rv_fd < 0) {
            status = kvbm__sock_listen(&xfer->rendezvous_addr, KVBM_XFER_MAX_RANKS, &rv_fd, &port);
            if (status != KVBM_OK)
                return status;
        }
        status = open_mesh(xfer, config, &xfer->rendezvous_addr);
        if (status == KVBM_OK)
            status = gather_root(xfer, rv_fd, blob, &blob_len);
        if (config->rendezvous == NULL)
            close(rv_fd);
    } else {
        status = kvbm__sock_connect(&xfer->rendezvous_addr, kvbm__deadline_ms(xfer->timeout_ms),
                                    true, &xfer->boot_fd);
        if (status == KVBM_OK)
            status = kvbm__hs_client(xfer->boot_fd, &xfer->auth, KVBM__PURPOSE_RENDEZVOUS,
                                     kvbm__deadline_ms(xfer->timeout_ms));
        kvbm__addr_t local;
        if (status == KVBM_OK)
            status = kvbm__sock_local_addr(xfer->boot_fd, &local);
        if (status == KVBM_OK)
            status = open_mesh(xfer, config, &local);
        if (status == KVBM_OK)
            status = join_root(xfer, blob, &blob_len);
    }
    if (status == KVBM_OK)
        status = connect_mesh(xfer);
    if (status == KVBM_OK)
        status = xfer->ops->init(xfer, blob, blob_len);
    return status;
}
