/* Fault injection for tests (fault.h), called by every transport. */
#include <signal.h>
#include <unistd.h>

#include "fault.h"

/* Written before any thread exists (tests), read by the worker thread. */
static kvbm__xfer_fault_t fault_kind = KVBM__FAULT_NONE;
static size_t fault_after = 0;

void kvbm__xfer_fault_set(kvbm__xfer_fault_t fault, size_t after_bytes)
{
    fault_kind = fault;
    fault_after = after_bytes;
}

size_t kvbm__xfer_fault_clip(size_t len)
{
    if (fault_kind == KVBM__FAULT_NONE)
        return len;
    return len < fault_after ? len : fault_after;
}

void kvbm__xfer_fault_fire(void)
{
    if (fault_kind == KVBM__FAULT_DIE)
        raise(SIGKILL);
    for (;;)
        pause(); /* KVBM__FAULT_HANG: the peer sees silence, then its timeout */
}

/* Read and written by the service threads only, after being set before they
 * started. */
static uint32_t fault_busy_left = 0;

void kvbm__xfer_fault_busy(uint32_t count)
{
    fault_busy_left = count;
}

bool kvbm__xfer_fault_take_busy(void)
{
    if (fault_busy_left == 0)
        return false;
    fault_busy_left--;
    return true;
}
