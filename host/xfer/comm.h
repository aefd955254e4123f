/*
 * The lifecycle rules of a transport's communicator (the NCCL transport's,
 * cuda/xfer/transport_nccl.c), written against a small ops table instead of
 * NCCL itself (comm.c), so the tests check them on the CPU with a fake:
 *
 *  - kvbm only ever aborts, finalizes or destroys a communicator it owns:
 *    one it created, or the private one it split from the caller's. The
 *    caller's own communicator is borrowed: kvbm splits from it once, at
 *    create, and never touches it again.
 *  - The device is the borrowed communicator's (ncclCommCuDevice), or the
 *    configured one, or the calling thread's current device; never a guess
 *    from the rank.
 *  - Teardown finalizes (non-blocking), waits for that with a deadline, and
 *    destroys; if finalizing fails or a dead peer keeps it from finishing,
 *    it aborts instead, so destroy never hangs.
 *  - After a failed transfer the owned communicator is aborted (a half-done
 *    group cannot be cancelled) and later transfers fail at once.
 */
#ifndef KVBM_XFER_COMM_H
#define KVBM_XFER_COMM_H

#include <stdbool.h>
#include <stdint.h>

#include "kvbm/status.h"

/* Every call returns KVBM_OK, KVBM_ERR_BUSY for "still in progress" (a
 * non-blocking communicator), or an error. */
typedef struct kvbm__comm_ops {
    kvbm_status_t (*split)(void *parent, int key, void **child_out);
    kvbm_status_t (*poll)(void *comm); /* state of the last call: OK, BUSY or its error */
    kvbm_status_t (*finalize)(void *comm);
    kvbm_status_t (*destroy)(void *comm);
    kvbm_status_t (*abort)(void *comm);
    kvbm_status_t (*device)(void *comm, int *device_out);
} kvbm__comm_ops_t;

typedef struct kvbm__comm {
    const kvbm__comm_ops_t *ops;
    void *handle; /* NULL once aborted or destroyed */
    bool owned;   /* kvbm created or split it: it alone may end it */
} kvbm__comm_t;

/* Waits until the last non-blocking call on @p comm finished: KVBM_OK, its
 * error, or KVBM_ERR_TIMEOUT at @p deadline_us. */
kvbm_status_t kvbm__comm_settle(const kvbm__comm_t *comm, uint64_t deadline_us);

/* A private communicator split from the caller's @p parent (collective over
 * the parent: every rank calls it), owned by kvbm, settled by the deadline.
 * On failure the child, if any, is aborted; the parent never is. Sets
 * *comm_out only on success. */
kvbm_status_t kvbm__comm_split(const kvbm__comm_ops_t *ops, void *parent, int rank,
                               uint64_t deadline_us, kvbm__comm_t *comm_out);

/* After a failure: aborts @p comm if kvbm owns it; a borrowed one is left
 * alone. Either way the handle is dropped. */
void kvbm__comm_fail(kvbm__comm_t *comm);

/* Teardown (see above). Returns KVBM_OK, or the reason it had to abort
 * (KVBM_ERR_TIMEOUT, or finalize's error). Nothing for a borrowed or
 * already aborted communicator. */
kvbm_status_t kvbm__comm_close(kvbm__comm_t *comm, uint64_t deadline_us);

/* The device a transfer object runs on: the parent communicator's when one
 * was borrowed, else the configured one (>= 0), else the current one. */
int kvbm__comm_pick_device(bool borrowed, int parent_device, int configured, int current);

#endif /* KVBM_XFER_COMM_H */
