/*
 * The I/O engines of the disk tier behind one versioned ops table (appended
 * to, never reordered; every slot filled). An engine moves whole requests
 * between caller buffers and one file descriptor, several in flight, and
 * reports each completion through a callback from one of its own threads
 * (or from submit itself, for requests it refuses at once).
 *
 * Engines: io_uring (io_uring_engine.c), a pread/pwrite thread pool
 * (io_threads.c), a null engine that completes without touching the file
 * (io_null.c, for measuring bookkeeping), and a fault layer wrapping any of
 * them (io_fault.c, for tests).
 */
#ifndef KVBM_HOST_DISK_IO_H
#define KVBM_HOST_DISK_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kvbm/disk.h"
#include "kvbm/status.h"

#define KVBM__DISK_IO_OPS_VERSION 1u

typedef enum kvbm__disk_op {
    KVBM__DISK_READ = 0,
    KVBM__DISK_WRITE = 1,
} kvbm__disk_op_t;

/* One request. The submitter owns it and its buffer until complete() has
 * been called for it; the engine writes only `result` and `link`. */
typedef struct kvbm__disk_req {
    struct kvbm__disk_req *link; /* engine-private queue link */
    kvbm__disk_op_t op;
    bool dsync; /* write: RWF_DSYNC (durable before completion) */
    void *buf;  /* aligned as the engine's open reported */
    size_t bytes;
    uint64_t offset;
    int64_t result;     /* bytes transferred, or -errno; set before complete() */
    uint32_t fault;     /* fault layer only: the fault applied (kvbm__disk_fault_t) */
    size_t fault_bytes; /* fault layer only: bytes asked for, while a short one runs */
    void *owner;        /* the submitter's context */
    uint32_t index;     /* the submitter's index */
} kvbm__disk_req_t;

/* Called once per request, from an engine thread or from submit(). It may
 * take the submitter's locks, so submit() is never called with them held. */
typedef void (*kvbm__disk_complete_fn)(void *ctx, kvbm__disk_req_t *req);

typedef struct kvbm__disk_io_config {
    int fd;
    uint32_t queue_depth; /* io_uring: requests in the kernel at most, >= 1 */
    uint32_t threads;     /* thread-pool engine, >= 1 */
    kvbm__disk_complete_fn complete;
    void *complete_ctx;
} kvbm__disk_io_config_t;

typedef struct kvbm__disk_io_ops {
    uint32_t version; /* KVBM__DISK_IO_OPS_VERSION */
    const char *name;
    /* KVBM_ERR_UNSUPPORTED when the engine cannot run here (no io_uring). */
    kvbm_status_t (*open)(const kvbm__disk_io_config_t *config, void **state_out);
    /* Waits for every request in flight to complete, then frees the state. */
    void (*close)(void *state);
    /*
     * Starts n requests, in order. Thread-safe, and never waits for room:
     * requests beyond what the engine runs at once wait in its FIFO (linked
     * through `link`) and start as others complete. Every request given is
     * completed exactly once, also when the engine cannot start it (result
     * -EIO or the errno).
     */
    void (*submit)(void *state, kvbm__disk_req_t *const *reqs, size_t n);
    /* Requests submitted and not yet taken out for completion (queued or running). */
    uint64_t (*in_flight)(void *state);
} kvbm__disk_io_ops_t;

const kvbm__disk_io_ops_t *kvbm__disk_io_uring_ops(void);
const kvbm__disk_io_ops_t *kvbm__disk_io_threads_ops(void);
const kvbm__disk_io_ops_t *kvbm__disk_io_null_ops(void);

/* ------------------------------------------------------------ fault layer */

typedef enum kvbm__disk_fault {
    KVBM__DISK_FAULT_NONE = 0,
    KVBM__DISK_FAULT_EIO = 1,    /* completes with -EIO, nothing transferred */
    KVBM__DISK_FAULT_ENOSPC = 2, /* completes with -ENOSPC, nothing transferred */
    KVBM__DISK_FAULT_SHORT = 3,  /* transfers only the first half (aligned down) */
    KVBM__DISK_FAULT_FLIP = 4,   /* flips a bit in each 512-byte sector: of the buffer read, or of
                                    the bytes written */
} kvbm__disk_fault_t;

/* Decides the fault of each request (called under no lock, from submit). */
typedef kvbm__disk_fault_t (*kvbm__disk_fault_fn)(void *ctx, const kvbm__disk_req_t *req);

/* Opens the fault layer over an engine: requests go to @p inner unless the
 * hook says otherwise. The layer's state is freed by its close. */
kvbm_status_t kvbm__disk_io_fault_open(const kvbm__disk_io_ops_t *inner,
                                       const kvbm__disk_io_config_t *config,
                                       kvbm__disk_fault_fn hook, void *hook_ctx,
                                       const kvbm__disk_io_ops_t **ops_out, void **state_out);

#endif /* KVBM_HOST_DISK_IO_H */
