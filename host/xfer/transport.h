/*
 * The transport ops table: how a transport moves the bytes of a copy plan
 * between two ranks (the control messages always go over the sockets), and
 * the list of transports built in. Implemented by transport_socket.c (here)
 * and cuda/xfer/transport_nccl.c. No CUDA or NCCL type appears here.
 */
#ifndef KVBM_XFER_TRANSPORT_H
#define KVBM_XFER_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kvbm/xfer.h"
#include "mem/copy_plan.h"

/*
 * A transport moves the bytes of a plan between two ranks; the control
 * messages always go over the sockets. Filled with designated initializers;
 * no slot is NULL. @p fd is the socket of the request the data belongs to
 * (the socket transport sends the bytes on it; NCCL ignores it), and
 * @p deadline_us the moment the whole plan must have moved by
 * (kvbm__xfer_data_deadline): the request fails with KVBM_ERR_TIMEOUT then,
 * however slowly the bytes still trickle.
 */
#define KVBM__XFER_OPS_VERSION 2u

typedef struct kvbm__xfer_ops {
    uint32_t version; /* KVBM__XFER_OPS_VERSION; appended to, never reordered */
    const char *name;
    kvbm_xfer_transport_t transport;
    kvbm_xfer_mem_kind_t mem_kind;
    /* Whether chunk boundaries must match across the two sides. */
    bool message_based;
    kvbm_status_t (*probe)(void);
    /* Rank 0, before the table goes out: bytes every rank gets in init. */
    kvbm_status_t (*make_blob)(kvbm_xfer_t *xfer, uint8_t *blob, size_t capacity, size_t *len_out);
    /* Collective: every rank calls it after the mesh is connected. */
    kvbm_status_t (*init)(kvbm_xfer_t *xfer, const uint8_t *blob, size_t len);
    void (*fini)(kvbm_xfer_t *xfer);
    /* Sends the pieces' src bytes (a plan of kvbm__xfer_plan_send), or
     * receives into the pieces' dst (kvbm__xfer_plan_recv). */
    kvbm_status_t (*send)(kvbm_xfer_t *xfer, int peer, int fd, const kvbm__copy_plan_t *plan,
                          uint64_t deadline_us);
    kvbm_status_t (*recv)(kvbm_xfer_t *xfer, int peer, int fd, const kvbm__copy_plan_t *plan,
                          uint64_t deadline_us);
    /*
     * Exclusive use of the data path for one request. A worker thread waits
     * for it (@p wait true) before it sends a request and keeps it until the
     * request ends; a service thread only tries (@p wait false) and refuses
     * the request with KVBM_ERR_BUSY when it is taken, and the requester
     * retries with back-off. So two ranks that start transfers to each other
     * at the same moment never hold each other's data path (with NCCL, groups
     * of one communicator run in launch order: crossing groups would wait on
     * each other until the timeout). Returns KVBM_OK or KVBM_ERR_BUSY.
     */
    kvbm_status_t (*data_begin)(kvbm_xfer_t *xfer, bool wait);
    void (*data_end)(kvbm_xfer_t *xfer);
    /* Scratch for raw messages (the configured raw_scratch_bytes), in the
     * transport's memory kind. */
    kvbm_status_t (*scratch_alloc)(kvbm_xfer_t *xfer, size_t bytes, void **ptr_out);
    void (*scratch_free)(kvbm_xfer_t *xfer, void *ptr);
} kvbm__xfer_ops_t;

extern const kvbm__xfer_ops_t kvbm__xfer_socket_ops;
#if defined(KVBM_HAVE_NCCL) && KVBM_HAVE_NCCL
extern const kvbm__xfer_ops_t kvbm__xfer_nccl_ops;
#define KVBM__TRANSPORT_NCCL_ENTRY(X) X(KVBM_XFER_NCCL, &kvbm__xfer_nccl_ops)
#else
#define KVBM__TRANSPORT_NCCL_ENTRY(X)
#endif

/* The transports built in: X(kvbm_xfer_transport_t, ops table). Adding one is
 * an entry here (under its KVBM_HAVE_ macro when optional) and its file. */
#define KVBM__TRANSPORT_LIST(X)                                                                    \
    X(KVBM_XFER_SOCKET, &kvbm__xfer_socket_ops)                                                    \
    KVBM__TRANSPORT_NCCL_ENTRY(X)

#endif /* KVBM_XFER_TRANSPORT_H */
