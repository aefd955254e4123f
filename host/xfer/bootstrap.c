/*
 * Rendezvous and mesh of a transfer object.
 *
 *  1. Every rank listens on an ephemeral loopback port for the mesh.
 *  2. Ranks 1..N-1 connect to rank 0's rendezvous address and send HELLO
 *     with their description (rank, size, transport, memory geometry, mesh
 *     port). Rank 0 waits for all of them (one overall timeout), checks that
 *     every description is compatible with its own, asks the transport for
 *     its bootstrap blob (the NCCL unique id), and sends everyone TABLE:
 *     a status, every description, the blob. A refused rank makes the status
 *     KVBM_ERR_INCOMPATIBLE for all, so every rank fails creation alike.
 *  3. Every rank connects to every other rank's mesh port (these become its
 *     client connections, one per peer, for the requests it starts) and then
 *     accepts N-1 connections (server connections, for the requests peers
 *     start). Connects complete in the listen backlog before the accept, so
 *     the order cannot deadlock.
 *  4. The transport's init runs on every rank (NCCL: ncclCommInitRank).
 *
 * The rendezvous connections stay open for kvbm_xfer_barrier.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/log.h"
#include "object.h"
#include "socket_io.h"

struct kvbm_xfer_rendezvous {
    int fd;
    uint16_t port;
};

kvbm_status_t kvbm_xfer_rendezvous_create(const char *host, uint16_t port,
                                          kvbm_xfer_rendezvous_t **rendezvous_out)
{
    uint32_t addr;
    if (rendezvous_out == NULL)
        return KVBM_ERR_INVALID_ARG;
    kvbm_status_t status = kvbm__sock_parse_loopback(host, &addr);
    if (status != KVBM_OK)
        return status;
    kvbm_xfer_rendezvous_t *rv = calloc(1, sizeof(*rv));
    if (rv == NULL)
        return KVBM_ERR_NO_MEMORY;
    status = kvbm__sock_listen(addr, port, KVBM_XFER_MAX_RANKS, &rv->fd, &rv->port);
    if (status != KVBM_OK) {
        free(rv);
        return status;
    }
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
    free(rendezvous);
}

static uint32_t remaining_ms(uint64_t deadline)
{
    uint64_t now = kvbm__now_us() / 1000u;
    return now >= deadline ? 0 : (uint32_t)(deadline - now);
}

/*
 * Whether ranks @p a and @p b may exchange blocks: same size and transport,
 * same geometry key, same bytes per block, and region sizes that divide one
 * another (so the finer one is a whole unit of the coarser). Logs why not.
 */
static bool desc_compatible(const kvbm__wire_desc_t *a, const kvbm__wire_desc_t *b)
{
    if (a->size != b->size || a->transport != b->transport || a->mem_kind != b->mem_kind) {
        kvbm__log(KVBM_LOG_ERROR, "ranks %d and %d refused: size %d/%d, transport %u/%u", a->rank,
                  b->rank, a->size, b->size, a->transport, b->transport);
        return false;
    }
    uint64_t lo = a->region_bytes < b->region_bytes ? a->region_bytes : b->region_bytes;
    uint64_t hi = a->region_bytes < b->region_bytes ? b->region_bytes : a->region_bytes;
    if (a->layout_key != b->layout_key ||
        a->region_count * a->region_bytes != b->region_count * b->region_bytes || lo == 0 ||
        hi % lo != 0) {
        kvbm__log(KVBM_LOG_ERROR,
                  "ranks %d and %d refused: incompatible block layouts (%u x %llu B, key "
                  "%llx) and (%u x %llu B, key %llx)",
                  a->rank, b->rank, a->region_count, (unsigned long long)a->region_bytes,
                  (unsigned long long)a->layout_key, b->region_count,
                  (unsigned long long)b->region_bytes, (unsigned long long)b->layout_key);
        return false;
    }
    return true;
}

/* Rank 0: gather HELLOs, check, send TABLE. */
static kvbm_status_t gather_root(kvbm_xfer_t *xfer, int rv_fd, uint8_t *blob, size_t *blob_len)
{
    uint64_t deadline = kvbm__now_us() / 1000u + xfer->timeout_ms;
    kvbm_status_t verdict = KVBM_OK;
    for (int joined = 1; joined < xfer->size; joined++) {
        int fd;
        kvbm_status_t status = kvbm__sock_accept(rv_fd, remaining_ms(deadline), &fd);
        if (status != KVBM_OK)
            return status;
        kvbm__wire_hdr_t hdr;
        kvbm__wire_desc_t desc;
        status = kvbm__wire_recv_hdr(fd, xfer->timeout_ms, KVBM__MSG_HELLO, &hdr);
        if (status == KVBM_OK)
            status = kvbm__sock_read(fd, &desc, sizeof(desc), xfer->timeout_ms);
        if (status == KVBM_OK &&
            (desc.rank <= 0 || desc.rank >= xfer->size || xfer->boot_fds[desc.rank] >= 0)) {
            kvbm__log(KVBM_LOG_ERROR, "rendezvous: bad or repeated rank %d", desc.rank);
            status = KVBM_ERR_PARSE;
        }
        if (status != KVBM_OK) {
            close(fd);
            return status;
        }
        xfer->boot_fds[desc.rank] = fd;
        xfer->descs[desc.rank] = desc;
    }
    /* Every pair, not only against rank 0: divisibility is not transitive. */
    for (int a = 0; a < xfer->size && verdict == KVBM_OK; a++)
        for (int b = a + 1; b < xfer->size && verdict == KVBM_OK; b++)
            if (!desc_compatible(&xfer->descs[a], &xfer->descs[b]))
                verdict = KVBM_ERR_INCOMPATIBLE;
    *blob_len = 0;
    if (verdict == KVBM_OK)
        verdict = xfer->ops->make_blob(xfer, blob, KVBM__BLOB_MAX, blob_len);
    kvbm__wire_hdr_t table;
    kvbm__wire_hdr_init(&table, KVBM__MSG_TABLE, verdict, (uint32_t)xfer->size);
    table.arg = *blob_len;
    for (int p = 1; p < xfer->size; p++) {
        kvbm_status_t status =
            kvbm__wire_send(xfer->boot_fds[p], xfer->timeout_ms, &table, xfer->descs,
                            (size_t)xfer->size * sizeof(*xfer->descs), blob, KVBM__BLOB_MAX);
        if (status != KVBM_OK)
            return status;
    }
    return verdict;
}

/* Ranks 1..N-1: HELLO, then wait for TABLE. */
static kvbm_status_t join_root(kvbm_xfer_t *xfer, uint32_t addr, uint16_t port, uint8_t *blob,
                               size_t *blob_len)
{
    kvbm_status_t status = kvbm__sock_connect(addr, port, xfer->timeout_ms, &xfer->boot_fd);
    if (status != KVBM_OK)
        return status;
    kvbm__wire_hdr_t hdr;
    kvbm__wire_hdr_init(&hdr, KVBM__MSG_HELLO, KVBM_OK, 0);
    status = kvbm__wire_send(xfer->boot_fd, xfer->timeout_ms, &hdr, &xfer->descs[xfer->rank],
                             sizeof(kvbm__wire_desc_t), NULL, 0);
    if (status != KVBM_OK)
        return status;
    /* Rank 0 answers once everyone joined, which itself takes up to one timeout. */
    status = kvbm__wire_recv_hdr(xfer->boot_fd, 2 * xfer->timeout_ms, KVBM__MSG_TABLE, &hdr);
    if (status != KVBM_OK)
        return status;
    if (hdr.count != (uint32_t)xfer->size || hdr.arg > KVBM__BLOB_MAX)
        return KVBM_ERR_INCOMPATIBLE;
    kvbm__wire_desc_t self = xfer->descs[xfer->rank];
    struct iovec iov[2] = {
        {.iov_base = xfer->descs, .iov_len = (size_t)xfer->size * sizeof(*xfer->descs)},
        {.iov_base = blob, .iov_len = KVBM__BLOB_MAX},
    };
    status = kvbm__sock_readv(xfer->boot_fd, iov, 2, xfer->timeout_ms);
    if (status != KVBM_OK)
        return status;
    if (hdr.status != KVBM_OK)
        return (kvbm_status_t)hdr.status;
    if (memcmp(&self, &xfer->descs[xfer->rank], sizeof(self)) != 0)
        return KVBM_ERR_PARSE;
    *blob_len = hdr.arg;
    return KVBM_OK;
}

/* Connect to every peer's mesh port, then accept every peer. */
static kvbm_status_t connect_mesh(kvbm_xfer_t *xfer, uint32_t addr, int mesh_fd)
{
    for (int p = 0; p < xfer->size; p++) {
        if (p == xfer->rank)
            continue;
        kvbm_status_t status = kvbm__sock_connect(addr, xfer->descs[p].listen_port,
                                                  xfer->timeout_ms, &xfer->client_fd[p]);
        if (status != KVBM_OK)
            return status;
        kvbm__wire_hdr_t hdr;
        kvbm__wire_hdr_init(&hdr, KVBM__MSG_CONNECT, KVBM_OK, (uint32_t)xfer->rank);
        status = kvbm__wire_send(xfer->client_fd[p], xfer->timeout_ms, &hdr, NULL, 0, NULL, 0);
        if (status != KVBM_OK)
            return status;
    }
    for (int joined = 1; joined < xfer->size; joined++) {
        int fd;
        kvbm_status_t status = kvbm__sock_accept(mesh_fd, xfer->timeout_ms, &fd);
        if (status != KVBM_OK)
            return status;
        kvbm__wire_hdr_t hdr;
        status = kvbm__wire_recv_hdr(fd, xfer->timeout_ms, KVBM__MSG_CONNECT, &hdr);
        if (status == KVBM_OK && (hdr.count >= (uint32_t)xfer->size ||
                                  (int)hdr.count == xfer->rank || xfer->server_fd[hdr.count] >= 0))
            status = KVBM_ERR_PARSE;
        if (status != KVBM_OK) {
            close(fd);
            return status;
        }
        xfer->server_fd[hdr.count] = fd;
    }
    return KVBM_OK;
}

kvbm_status_t kvbm__xfer_bootstrap(kvbm_xfer_t *xfer, const kvbm_xfer_config_t *config)
{
    uint32_t addr, loopback;
    kvbm_status_t status = kvbm__sock_parse_loopback(config->rendezvous_host, &addr);
    if (status != KVBM_OK)
        return status;
    (void)kvbm__sock_parse_loopback("127.0.0.1", &loopback);

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

    uint8_t blob[KVBM__BLOB_MAX] = {0};
    size_t blob_len = 0;
    if (xfer->size == 1) {
        status = xfer->ops->make_blob(xfer, blob, sizeof(blob), &blob_len);
        return status == KVBM_OK ? xfer->ops->init(xfer, blob, blob_len) : status;
    }

    int mesh_fd;
    status = kvbm__sock_listen(loopback, 0, KVBM_XFER_MAX_RANKS, &mesh_fd, &self->listen_port);
    if (status != KVBM_OK)
        return status;

    if (xfer->rank == 0) {
        int rv_fd;
        bool own_rv = config->rendezvous == NULL;
        if (own_rv) {
            uint16_t port;
            status = kvbm__sock_listen(addr, config->rendezvous_port, KVBM_XFER_MAX_RANKS, &rv_fd,
                                       &port);
            if (status != KVBM_OK)
                goto close_mesh;
        } else {
            rv_fd = config->rendezvous->fd;
        }
        status = gather_root(xfer, rv_fd, blob, &blob_len);
        if (own_rv)
            close(rv_fd);
    } else {
        status = join_root(xfer, addr, config->rendezvous_port, blob, &blob_len);
    }
    if (status != KVBM_OK)
        goto close_mesh;

    status = connect_mesh(xfer, loopback, mesh_fd);
    if (status != KVBM_OK)
        goto close_mesh;
    close(mesh_fd);
    return xfer->ops->init(xfer, blob, blob_len);

close_mesh:
    close(mesh_fd);
    return status;
}
