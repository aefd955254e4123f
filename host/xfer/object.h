/*
 * Private layout of kvbm_xfer_t and kvbm_xfer_req_t, and what the files that
 * implement them share: xfer.c (objects, requests), memory.c (this rank's
 * block geometry), bootstrap.c (rendezvous and mesh), client.c (the worker
 * thread), server.c (the service thread), and the transports, which reach
 * their state through kvbm_xfer_t.
 */
#ifndef KVBM_XFER_OBJECT_H
#define KVBM_XFER_OBJECT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kvbm/xfer.h"
#include "mem/copy_plan.h"
#include "mem/geometry.h"
#include "transport.h"
#include "wire.h"

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
    kvbm_xfer_mem_kind_t mem_kind;
    uint64_t layout_key;      /* compatibility key of the block geometry */
    kvbm__geom_t geom;        /* this rank's blocks; region_base is owned */
    kvbm__geom_t *peer_geom;  /* size entries, from descs (no addresses) */
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

/* Checks a caller's explicit memory description against the transport's
 * memory kind and the manager (memory.c). */
kvbm_status_t kvbm__xfer_memory_check(const kvbm_xfer_memory_t *mem, kvbm_xfer_mem_kind_t kind,
                                      kvbm_manager_t *manager);
/* This rank's memory (memory.c): the config's layout over layout_base, or
 * its explicit memory description (already checked), as xfer->geom
 * (region_base allocated), mem_kind and layout_key. On error nothing is
 * allocated. */
kvbm_status_t kvbm__xfer_memory_init(kvbm_xfer_t *xfer, const kvbm_xfer_config_t *config);
/* A peer's geometry, from its description. */
kvbm__geom_t kvbm__xfer_peer_geom(const kvbm__wire_desc_t *desc);

/* Rendezvous and mesh (bootstrap.c). Fills descs, fds; runs ops->init. */
kvbm_status_t kvbm__xfer_bootstrap(kvbm_xfer_t *xfer, const kvbm_xfer_config_t *config);

/* Shared by the client and server sides (xfer.c). */
/* Plans of this side of a block transfer with @p peer (mem/copy_plan.h):
 * sending local blocks to the peer's, or receiving the peer's into local
 * ones. Set *plan only on success. */
kvbm_status_t kvbm__xfer_plan_send(const kvbm_xfer_t *xfer, int peer, const uint32_t *local_ids,
                                   const uint32_t *remote_ids, size_t n, kvbm__copy_plan_t *plan);
kvbm_status_t kvbm__xfer_plan_recv(const kvbm_xfer_t *xfer, int peer, const uint32_t *local_ids,
                                   const uint32_t *remote_ids, size_t n, kvbm__copy_plan_t *plan);
bool kvbm__xfer_ids_below(const uint32_t *ids, size_t n, uint32_t bound);
void kvbm__xfer_release_reverse(kvbm_manager_t *manager, const uint32_t *ids, size_t n);

/* The worker thread: runs the requests this rank starts (client.c). */
void *kvbm__xfer_worker_main(void *arg);
/* The service thread: answers the requests peers start (server.c). */
void *kvbm__xfer_service_main(void *arg);

#endif /* KVBM_XFER_OBJECT_H */
