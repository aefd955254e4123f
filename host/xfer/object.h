/*
 * Private layout of kvbm_xfer_t and kvbm_xfer_req_t, and what the files that
 * implement them share: xfer.c (objects, requests), memory.c (this rank's
 * block geometry and the checks of a peer's), bootstrap.c (rendezvous and
 * mesh), client.c (one worker thread per peer: the requests this rank
 * starts), acceptor.c (the mesh listener: handshakes of incoming
 * connections), server.c (one service thread per incoming connection: the
 * requests peers start), and the transports, which reach their state
 * through kvbm_xfer_t.
 *
 * Threads of one object: the acceptor; per peer at most one worker (started
 * at the first request to that peer) and one service thread (per connection
 * the peer opened; a new connection from the same peer replaces the old one,
 * whose thread is joined by its successor). A slow or hostile peer holds
 * only its own threads.
 */
#ifndef KVBM_XFER_OBJECT_H
#define KVBM_XFER_OBJECT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth.h"
#include "counters.h"
#include "core/error.h"
#include "kvbm/xfer.h"
#include "mem/copy_plan.h"
#include "mem/geometry.h"
#include "socket_io.h"
#include "transport.h"
#include "wire.h"

/* Regions finer than this are refused, locally and from peers: a plan has
 * one piece per region at worst, so the bytes a transfer moves bound the
 * memory its plan takes (24-byte pieces over >= 64-byte units). */
#define KVBM__XFER_MIN_REGION_BYTES 64u
/* A transfer's data may take one timeout per this many bytes (plus one):
 * a peer must keep an average of at least this much per timeout, so one
 * that drips a byte now and then is cut at its deadline. */
#define KVBM__XFER_DEADLINE_BYTES ((uint64_t)64 << 20)

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

    /* Guards done, status, reason, result_ids, n_result, claimed. Leaf lock. */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
    kvbm_status_t status;
    char reason[KVBM__ERROR_MAX]; /* why it failed ("" if not known), for kvbm_xfer_req_wait */
    uint32_t *result_ids;         /* push: remote ids; pull: local ids */
    size_t n_result;
    bool claimed; /* pull: the caller took the references (req_blocks) */

    struct kvbm_xfer_req *next; /* queue link, under kvbm_xfer.lock */
};

/* A rendezvous listener opened before the ranks exist (bootstrap.c). */
struct kvbm_xfer_rendezvous {
    int fd;
    uint16_t port;
    kvbm__addr_t addr; /* with the port bound */
};

/* One incoming connection and its service thread (server.c). */
typedef struct kvbm__xfer_conn {
    kvbm_xfer_t *xfer;
    int peer;
    /* Shut down by the acceptor (replaced) or destroy, closed by its own
     * thread; all three under kvbm_xfer.lock. */
    int fd;
    /* The service thread this one replaced; joined before serving. */
    pthread_t prev;
    bool has_prev;
    /* Raw messages land here, chunk by chunk (service thread only). */
    void *scratch;
} kvbm__xfer_conn_t;

/* What a rank keeps per peer. */
typedef struct kvbm__xfer_peer {
    /* Immutable after create. */
    kvbm_xfer_t *xfer;
    int index;         /* the peer's rank */
    kvbm__addr_t addr; /* the peer's mesh listener */

    /* Under kvbm_xfer.lock: requests to this peer and their worker. */
    kvbm_xfer_req_t *head;
    kvbm_xfer_req_t *tail;
    pthread_cond_t cond; /* a request queued, or stopping */
    pthread_t worker;
    bool worker_started;

    /* The client connection (requests this rank starts): opened at create,
     * reopened by the worker after a failure left it out of step. The
     * worker reads it freely; it replaces or closes it under kvbm_xfer.lock,
     * under which destroy shuts it down. */
    int client_fd;
    bool client_broken; /* worker only: out of step, reconnect before use */

    /* Under kvbm_xfer.lock: the connection this peer opened to us and the
     * latest service thread (joined by its successor, or by destroy). */
    kvbm__xfer_conn_t *server;
    pthread_t server_thread;
    bool server_started;
} kvbm__xfer_peer_t;

struct kvbm_xfer {
    /* Immutable after create. */
    int rank;
    int size;
    uint32_t timeout_ms;
    const kvbm__xfer_ops_t *ops;
    kvbm_manager_t *manager;
    uint32_t capacity; /* the manager's blocks: the most one request can hold */
    kvbm_xfer_mem_kind_t mem_kind;
    uint64_t layout_key;                  /* compatibility key of the block geometry */
    size_t grain;                         /* the layout's chunk bytes (0 without a layout) */
    kvbm__geom_t geom;                    /* this rank's blocks; region_base is owned */
    kvbm__geom_t *peer_geom;              /* size entries, from descs (no addresses) */
    kvbm__wire_desc_t *descs;             /* size entries, indexed by rank */
    uint8_t session[KVBM__SESSION_BYTES]; /* this mesh's id, drawn by rank 0 */
    kvbm__auth_t auth;                    /* wiped at destroy */
    kvbm__addr_t rendezvous_addr;
    kvbm_xfer_arrival_fn on_arrival;
    void *arrival_ctx;
    void *nccl_comm_in; /* borrowed communicator, or NULL */
    int cuda_device;
    kvbm_stream_t *engine_stream; /* borrowed, or NULL */
    size_t raw_scratch_bytes;     /* per connection; a multiple of KVBM__XFER_RAW_CHUNK_BYTES */
    void *transport_state;        /* owned by ops (init/fini) */

    kvbm__xfer_peer_t *peers; /* size entries */
    /* The mesh listener: bootstrap, then the acceptor thread only. */
    int mesh_fd;
    /* To rank 0 (others), or boot_fds[p] on rank 0, for the barrier; used
     * by the barrier's caller only. */
    int boot_fd;
    int *boot_fds;
    int wake_fd[2]; /* pipe: destroy -> acceptor */

    kvbm__xfer_counters_t counters;

    /* Serialises on_arrival calls from the service threads. Held only around
     * the callback, which may submit requests (taking kvbm_xfer.lock): so
     * order arrival_lock, then lock; never the other way. */
    pthread_mutex_t arrival_lock;

    /* Guards every peer's queue, worker and server fields, n_served and
     * stopping. Taken before a request's lock. */
    pthread_mutex_t lock;
    pthread_cond_t cond; /* n_served grew (CLOCK_MONOTONIC timed waits) */
    int n_served;        /* peers whose first connection to us arrived */
    bool stopping;

    pthread_t acceptor;
    bool acceptor_started;
};

/* Checks a caller's explicit memory description against the transport's
 * memory kind and the manager (memory.c). */
kvbm_status_t kvbm__xfer_memory_check(const kvbm_xfer_memory_t *mem, kvbm_xfer_mem_kind_t kind,
                                      kvbm_manager_t *manager);
/* This rank's memory (memory.c): the config's layout over layout_base, or
 * its explicit memory description (already checked), as xfer->geom
 * (region_base allocated), mem_kind, layout_key and grain. On error
 * nothing is allocated. */
kvbm_status_t kvbm__xfer_memory_init(kvbm_xfer_t *xfer, const kvbm_xfer_config_t *config);
/* A peer's geometry, from its description. */
kvbm__geom_t kvbm__xfer_peer_geom(const kvbm__wire_desc_t *desc);
/*
 * Whether a description read from the wire is well formed for rank @p rank
 * of @p size: its own rank and size, a known transport, and a geometry that
 * cannot overflow (1..KVBM_XFER_MAX_REGIONS regions of at least
 * KVBM__XFER_MIN_REGION_BYTES, a stride that holds a region, at least one
 * block). Logs why not.
 */
bool kvbm__xfer_desc_valid(const kvbm__wire_desc_t *desc, int rank, int size);
/*
 * Whether ranks @p a and @p b may exchange blocks: same size, transport and
 * memory kind, same geometry key, same bytes per block, region sizes one of
 * which divides the other. Logs why not.
 */
bool kvbm__xfer_desc_compatible(const kvbm__wire_desc_t *a, const kvbm__wire_desc_t *b);
/*
 * Whether this rank can exchange blocks with @p peer: compatible with its
 * own description and, with a layout, every region of the peer a whole
 * number of this layout's chunks (the geometry of each region, not only the
 * totals). Logs why not.
 */
bool kvbm__xfer_desc_fits(const kvbm_xfer_t *xfer, const kvbm__wire_desc_t *peer);

/* Rendezvous and mesh (bootstrap.c): fills descs, session and the peers'
 * client connections, starts the acceptor, waits for every peer's
 * connection, runs ops->init. */
kvbm_status_t kvbm__xfer_bootstrap(kvbm_xfer_t *xfer, const kvbm_xfer_config_t *config);
/* Opens (or reopens) the client connection to @p peer: connect, handshake,
 * CONNECT. Sets *fd_out only on success. */
kvbm_status_t kvbm__xfer_dial(kvbm_xfer_t *xfer, int peer, bool at_create, int *fd_out);

/* The acceptor thread (acceptor.c): handshakes of incoming mesh
 * connections, each handed to a service thread. */
void *kvbm__xfer_acceptor_main(void *arg);
/* Starts a service thread for an authenticated connection from @p peer,
 * replacing the peer's previous one. Called with kvbm_xfer.lock held;
 * takes ownership of @p fd (closed on failure). */
kvbm_status_t kvbm__xfer_serve_locked(kvbm_xfer_t *xfer, int peer, int fd);
/* A service thread (server.c): answers the requests of one connection. */
void *kvbm__xfer_service_main(void *arg);
/* A worker thread (client.c): runs the requests to one peer. */
void *kvbm__xfer_worker_main(void *arg);
/* Fails every queued request of @p peer (destroy, under kvbm_xfer.lock). */
void kvbm__xfer_fail_queue_locked(kvbm_xfer_t *xfer, int peer);

/* Shared by the client and server sides (xfer.c). */
/* Plans of this side of a block transfer with @p peer (mem/copy_plan.h):
 * sending local blocks to the peer's, or receiving the peer's into local
 * ones. Set *plan only on success. */
kvbm_status_t kvbm__xfer_plan_send(const kvbm_xfer_t *xfer, int peer, const uint32_t *local_ids,
                                   const uint32_t *remote_ids, size_t n, kvbm__copy_plan_t *plan);
kvbm_status_t kvbm__xfer_plan_recv(const kvbm_xfer_t *xfer, int peer, const uint32_t *local_ids,
                                   const uint32_t *remote_ids, size_t n, kvbm__copy_plan_t *plan);
/* The plan of a raw message: pieces of KVBM__XFER_RAW_CHUNK_BYTES (cut
 * alike on both sides), from @p src (sending) or into @p scratch
 * (receiving: round and round its @p scratch_bytes, a multiple of the
 * chunk). */
kvbm_status_t kvbm__xfer_plan_raw(const void *src, void *scratch, size_t scratch_bytes,
                                  uint64_t bytes, kvbm__copy_plan_t *plan);
/* The deadline of a control message (one timeout) and of @p bytes of data
 * (one timeout, plus one per KVBM__XFER_DEADLINE_BYTES). */
uint64_t kvbm__xfer_msg_deadline(const kvbm_xfer_t *xfer);
uint64_t kvbm__xfer_data_deadline(const kvbm_xfer_t *xfer, uint64_t bytes);
bool kvbm__xfer_ids_below(const uint32_t *ids, size_t n, uint32_t bound);
void kvbm__xfer_release_reverse(kvbm_manager_t *manager, const uint32_t *ids, size_t n);
/* Counts a failed request by its status (timeouts, protocol errors). */
void kvbm__xfer_count_failure(kvbm_xfer_t *xfer, kvbm_status_t status);

#endif /* KVBM_XFER_OBJECT_H */
