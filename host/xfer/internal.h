/*
 * Private layout of kvbm_xfer_t and the transport ops table. Shared by
 * host/xfer.c (objects, requests, protocol), host/xfer_bootstrap.c
 * (rendezvous and mesh), host/xfer_sock.c (socket helpers),
 * host/xfer_socket.c (the CPU transport) and cuda/nccl_xfer.c (NCCL).
 * No CUDA or NCCL type appears here.
 */
#ifndef KVBM_HOST_XFER_INTERNAL_H
#define KVBM_HOST_XFER_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "kvbm/xfer.h"

/* ------------------------------------------------------------ wire format */

#define KVBM__WIRE_MAGIC   0x5842564bu /* "KVBX" little endian */
#define KVBM__WIRE_VERSION 1u
#define KVBM__BLOB_MAX     256u /* transport bootstrap blob (NCCL unique id: 128) */

typedef enum kvbm__wire_type {
    KVBM__MSG_HELLO = 1,   /* rank -> rank 0: desc */
    KVBM__MSG_TABLE = 2,   /* rank 0 -> rank: status, descs[size], blob */
    KVBM__MSG_CONNECT = 3, /* client -> server: my rank (count) */
    KVBM__MSG_PUSH = 4,    /* hashes[count], src ids[count]; arg parent, flags */
    KVBM__MSG_ACCEPT = 5,  /* status, dst ids[count] */
    KVBM__MSG_DONE = 6,    /* status, final ids[count] */
    KVBM__MSG_PULL = 7,    /* hashes[count] */
    KVBM__MSG_OFFER = 8,   /* status, src ids[count] (matched prefix) */
    KVBM__MSG_GO = 9,      /* status, dst ids[count] */
    KVBM__MSG_RAW = 10,    /* arg bytes */
    KVBM__MSG_RAW_READY = 11,
    KVBM__MSG_RAW_DONE = 12,
    KVBM__MSG_BARRIER = 13,
} kvbm__wire_type_t;

/* Every control message starts with this 32-byte header. */
typedef struct kvbm__wire_hdr {
    uint32_t magic;
    uint16_t version;
    uint16_t type;
    int32_t status;
    uint32_t count;
    uint64_t arg;
    uint32_t flags; /* push: bit 0 has_parent, bits 8..15 priority */
    uint32_t reserved;
} kvbm__wire_hdr_t;

/* One rank's description, sent at the rendezvous. */
typedef struct kvbm__wire_desc {
    int32_t rank;
    int32_t size;
    uint32_t transport;
    uint32_t mem_kind;
    uint32_t num_blocks;
    uint32_t region_count;
    uint64_t region_bytes;
    uint64_t block_stride;
    uint64_t layout_key;
    uint16_t listen_port;
    uint16_t pad16;
    uint32_t pad32;
} kvbm__wire_desc_t;

/* ------------------------------------------------------------ plans */

/* The memory shape the planner needs from either side. */
typedef struct kvbm__xfer_geom {
    void *const *region_base; /* NULL for a remote side */
    uint32_t region_count;
    uint32_t num_blocks;
    size_t region_bytes;
    size_t block_stride;
} kvbm__xfer_geom_t;

/* One contiguous piece of a transfer on this side, in stream order. */
typedef struct kvbm__xfer_chunk {
    void *ptr;
    size_t len;
} kvbm__xfer_chunk_t;

typedef struct kvbm__xfer_plan {
    kvbm__xfer_chunk_t *chunks;
    size_t count;
    size_t bytes;
} kvbm__xfer_plan_t;

/*
 * Pieces of this side of a transfer of n blocks, in stream order (see
 * xfer_plan.c). @p remote is the other side's shape (no region_base needed).
 * With @p message_based, pieces end wherever either side's would, by a rule
 * both sides evaluate alike. Sets *plan_out only on success.
 */
kvbm_status_t kvbm__xfer_plan_build(const kvbm__xfer_geom_t *local, const uint32_t *local_ids,
                                    const kvbm__xfer_geom_t *remote, const uint32_t *remote_ids,
                                    size_t n, bool message_based, kvbm__xfer_plan_t *plan_out);
/* The stream unit between two sides: the smaller region size. */
size_t kvbm__xfer_unit_bytes(const kvbm__xfer_geom_t *a, const kvbm__xfer_geom_t *b);
void kvbm__xfer_plan_free(kvbm__xfer_plan_t *plan);

/* ------------------------------------------------------------ transports */

/*
 * A transport moves the bytes of a plan between two ranks; the control
 * messages always go over the sockets. Filled with designated initializers;
 * no slot is NULL. @p fd is the socket of the request the data belongs to
 * (the socket transport sends the bytes on it; NCCL ignores it).
 */
typedef struct kvbm__xfer_ops {
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
    kvbm_status_t (*send)(kvbm_xfer_t *xfer, int peer, int fd, const kvbm__xfer_plan_t *plan);
    kvbm_status_t (*recv)(kvbm_xfer_t *xfer, int peer, int fd, const kvbm__xfer_plan_t *plan);
    /*
     * Exclusive use of the data path for one request. The worker thread waits
     * for it (@p wait true) before it sends a request and keeps it until the
     * request ends; the service thread only tries (@p wait false) and refuses
     * the request with KVBM_ERR_BUSY when it is taken, and the requester
     * retries with back-off. So two ranks that start transfers to each other
     * at the same moment never hold each other's data path (with NCCL, groups
     * of one communicator run in launch order: crossing groups would wait on
     * each other until the timeout). Returns KVBM_OK or KVBM_ERR_BUSY.
     */
    kvbm_status_t (*data_begin)(kvbm_xfer_t *xfer, bool wait);
    void (*data_end)(kvbm_xfer_t *xfer);
    /* Scratch for raw messages, in the transport's memory kind. */
    kvbm_status_t (*scratch_alloc)(kvbm_xfer_t *xfer, size_t bytes, void **ptr_out);
    void (*scratch_free)(kvbm_xfer_t *xfer, void *ptr);
} kvbm__xfer_ops_t;

extern const kvbm__xfer_ops_t kvbm__xfer_socket_ops;
#if defined(KVBM_HAVE_NCCL) && KVBM_HAVE_NCCL
extern const kvbm__xfer_ops_t kvbm__xfer_nccl_ops;
#endif

/* ------------------------------------------------------------ objects */

typedef enum kvbm__req_kind {
    KVBM__REQ_PUSH = 1,
    KVBM__REQ_PULL = 2,
    KVBM__REQ_RAW = 3,
} kvbm__req_kind_t;

struct kvbm_xfer_req {
    /* Immutable after submission. */
    kvbm__req_kind_t kind;
    int peer;
    kvbm_manager_t *manager; /* for releasing an unclaimed pull's references */
    uint32_t *src_ids;       /* push: count local ids */
    uint64_t *hashes;        /* push/pull: count hashes */
    size_t count;
    kvbm_register_opts_t opts;
    bool has_opts;
    const void *raw_buf;
    size_t raw_bytes;

    /* Guards done, status, result_ids, n_result, claimed. Leaf lock. */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
    kvbm_status_t status;
    uint32_t *result_ids; /* push: remote ids; pull: local ids */
    size_t n_result;
    bool claimed; /* pull: the caller took the references (req_blocks) */

    struct kvbm_xfer_req *next; /* queue link, under kvbm_xfer.lock */
};

struct kvbm_xfer {
    /* Immutable after create. */
    int rank;
    int size;
    uint32_t timeout_ms;
    const kvbm__xfer_ops_t *ops;
    kvbm_manager_t *manager;
    kvbm_xfer_memory_t memory;
    void **region_base;       /* copy of memory.region_base */
    kvbm__wire_desc_t *descs; /* size entries, indexed by rank */
    kvbm_xfer_arrival_fn on_arrival;
    void *arrival_ctx;
    void *nccl_comm_in; /* borrowed communicator, or NULL */
    int cuda_device;
    void *transport_state; /* owned by ops (init/fini) */

    /* Sockets. client_fd[p]: requests this rank starts towards p, used by the
     * worker thread only. server_fd[p]: requests p starts towards this rank,
     * used by the service thread only. boot_fd: to rank 0 (others), or
     * boot_fds[p] on rank 0, for the barrier; used by the barrier caller only.
     * All are closed by destroy after the threads are joined. */
    int *client_fd;
    int *server_fd;
    int boot_fd;
    int *boot_fds;
    int wake_fd[2]; /* pipe: destroy -> service thread */

    /* Worker-thread only. */
    bool *client_broken;

    /* Service-thread only. */
    bool *server_dead;
    void *scratch;
    size_t scratch_bytes;

    /* Guards head, tail, stopping. Taken before a request's lock. */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    kvbm_xfer_req_t *head;
    kvbm_xfer_req_t *tail;
    bool stopping;

    pthread_t worker;
    pthread_t service;
    bool threads_started;
};

/* ------------------------------------------------------------ helpers */

kvbm_status_t kvbm__sock_parse_loopback(const char *host, uint32_t *addr_out);
kvbm_status_t kvbm__sock_listen(uint32_t addr, uint16_t port, int backlog, int *fd_out,
                                uint16_t *port_out);
kvbm_status_t kvbm__sock_connect(uint32_t addr, uint16_t port, uint32_t timeout_ms, int *fd_out);
kvbm_status_t kvbm__sock_accept(int listen_fd, uint32_t timeout_ms, int *fd_out);
/* Non-blocking sockets; each step waits at most timeout_ms for progress. */
kvbm_status_t kvbm__sock_writev(int fd, struct iovec *iov, size_t iovcnt, uint32_t timeout_ms);
kvbm_status_t kvbm__sock_readv(int fd, struct iovec *iov, size_t iovcnt, uint32_t timeout_ms);
kvbm_status_t kvbm__sock_write(int fd, const void *buf, size_t len, uint32_t timeout_ms);
kvbm_status_t kvbm__sock_read(int fd, void *buf, size_t len, uint32_t timeout_ms);

/* Header helpers: send a header plus up to two payload arrays in one writev. */
kvbm_status_t kvbm__wire_send(int fd, uint32_t timeout_ms, const kvbm__wire_hdr_t *hdr,
                              const void *a, size_t a_len, const void *b, size_t b_len);
/* Reads a header and checks magic, version and (unless 0) the type. */
kvbm_status_t kvbm__wire_recv_hdr(int fd, uint32_t timeout_ms, uint16_t type,
                                  kvbm__wire_hdr_t *hdr_out);
void kvbm__wire_hdr_init(kvbm__wire_hdr_t *hdr, uint16_t type, int32_t status, uint32_t count);

/* Transfer memory of a layout over a pool at @p base (xfer_layout.c).
 * *bases_out is malloc'd and becomes memory_out->region_base. */
kvbm_status_t kvbm__xfer_memory_from_layout(const kvbm_layout_t *layout, void *base,
                                            kvbm_xfer_mem_kind_t kind, void ***bases_out,
                                            kvbm_xfer_memory_t *memory_out);
uint64_t kvbm__xfer_layout_key(const kvbm_layout_t *layout);

/* Rendezvous and mesh (xfer_bootstrap.c). Fills descs, fds; runs ops->init. */
kvbm_status_t kvbm__xfer_bootstrap(kvbm_xfer_t *xfer, const kvbm_xfer_config_t *config);

/* Fault injection for tests: after this many bytes of block data sent by
 * this process, the sender kills itself (KVBM__FAULT_DIE) or stops forever
 * (KVBM__FAULT_HANG). Process-wide; set before creating threads. */
typedef enum kvbm__xfer_fault {
    KVBM__FAULT_NONE = 0,
    KVBM__FAULT_DIE = 1,
    KVBM__FAULT_HANG = 2,
} kvbm__xfer_fault_t;
void kvbm__xfer_fault_set(kvbm__xfer_fault_t fault, size_t after_bytes);
/* Fault injection for tests: the next @p count non-waiting data_begin calls
 * of the socket transport in this process report KVBM_ERR_BUSY, as a busy
 * NCCL data path would. Process-wide; set before creating threads. */
void kvbm__xfer_fault_busy(uint32_t count);
/* Called by transports with the bytes they are about to send; may not return. */
size_t kvbm__xfer_fault_clip(size_t len);
void kvbm__xfer_fault_fire(void);

/* Largest raw message (sanity bound for a peer's RAW header). */
#define KVBM__XFER_RAW_MAX_BYTES ((uint64_t)1 << 36)

/* Shared by the client and server sides (xfer.c). */
kvbm_status_t kvbm__xfer_plan_blocks(const kvbm_xfer_t *xfer, int peer, const uint32_t *local_ids,
                                     const uint32_t *remote_ids, size_t n, kvbm__xfer_plan_t *plan);
bool kvbm__xfer_ids_below(const uint32_t *ids, size_t n, uint32_t bound);
void kvbm__xfer_release_reverse(kvbm_manager_t *manager, const uint32_t *ids, size_t n);

/* The worker thread: runs the requests this rank starts (xfer_client.c). */
void *kvbm__xfer_worker_main(void *arg);
uint64_t kvbm__xfer_now_us(void);
/* The service thread: answers the requests peers start (xfer_server.c). */
void *kvbm__xfer_service_main(void *arg);

#endif /* KVBM_HOST_XFER_INTERNAL_H */
