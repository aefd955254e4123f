/* The communicator lifecycle rules of comm.h. */
#include <time.h>

#include "comm.h"
#include "core/clock.h"
#include "core/log.h"

static void nap(void)
{
    struct timespec ts = {.tv_sec = 0, .tv_nsec = 20000};
    nanosleep(&ts, NULL);
}

kvbm_status_t kvbm__comm_settle(const kvbm__comm_t *comm, uint64_t deadline_us)
{
    for (;;) {
        kvbm_status_t status = comm->ops->poll(comm->handle);
        if (status != KVBM_ERR_BUSY)
            return status;
        if (kvbm__now_us() >= deadline_us)
            return KVBM_ERR_TIMEOUT;
        nap();
    }
}

kvbm_status_t kvbm__comm_split(const kvbm__comm_ops_t *ops, void *parent, int rank,
                               uint64_t deadline_us, kvbm__comm_t *comm_out)
{
    kvbm__comm_t child = {.ops = ops, .handle = NULL, .owned = true};
    kvbm_status_t status = ops->split(parent, rank, &child.handle);
    if (status == KVBM_ERR_BUSY)
        status = KVBM_OK; /* non-blocking: settled below */
    if (status == KVBM_OK && child.handle == NULL)
        status = KVBM_ERR_INTERNAL;
    if (status == KVBM_OK)
        status = kvbm__comm_settle(&child, deadline_us);
    if (status != KVBM_OK) {
        if (child.handle != NULL)
            kvbm__comm_fail(&child);
        return status;
    }
    *comm_out = child;
    return KVBM_OK;
}

void kvbm__comm_fail(kvbm__comm_t *comm)
{
    if (comm->handle != NULL && comm->owned)
        (void)comm->ops->abort(comm->handle);
    comm->handle = NULL;
}

kvbm_status_t kvbm__comm_close(kvbm__comm_t *comm, uint64_t deadline_us)
{
    if (comm->handle == NULL || !comm->owned) {
        comm->handle = NULL;
        return KVBM_OK;
    }
    kvbm_status_t status = comm->ops->finalize(comm->handle);
    if (status == KVBM_OK || status == KVBM_ERR_BUSY)
        status = kvbm__comm_settle(comm, deadline_us);
    if (status == KVBM_OK) {
        (void)comm->ops->destroy(comm->handle);
        comm->handle = NULL;
        return KVBM_OK;
    }
    kvbm__log(KVBM_LOG_WARN, "communicator did not finalize (%s): aborting it",
              kvbm_status_str(status));
    kvbm__comm_fail(comm);
    return status;
}

int kvbm__comm_pick_device(bool borrowed, int parent_device, int configured, int current)
{
    if (borrowed)
        return parent_device;
    return configured >= 0 ? configured : current;
}
