/* Fault injection for tests (fault.h), called by every transport. */
#include <signal.h>
#include <stdatomic.h>
#include <unistd.h>

#include "fault.h"

/* Written before any thread exists (tests), read by the worker threads. */
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
        pause(); /* KVBM__FAULT_HANG: the peer sees silence, then its deadline */
}

/* Set before the service threads start; taken by any of them, so atomic
 * (relaxed: a count, nothing else is ordered by it). */
static atomic_uint fault_busy_left = 0;

void kvbm__xfer_fault_busy(uint32_t count)
{
    atomic_store_explicit(&fault_busy_left, count, memory_order_relaxed);
}

/* Takes one occasion off @p left; false when none is left. */
static bool take_one(atomic_uint *left)
{
    unsigned n = atomic_load_explicit(left, memory_order_relaxed);
    while (n > 0)
        if (atomic_compare_exchange_weak_explicit(left, &n, n - 1, memory_order_relaxed,
                                                  memory_order_relaxed))
            return true;
    return false;
}

bool kvbm__xfer_fault_take_busy(void)
{
    return take_one(&fault_busy_left);
}

static atomic_uint drip_interval_ms = 0;

void kvbm__xfer_fault_drip(uint32_t interval_ms)
{
    atomic_store_explicit(&drip_interval_ms, interval_ms, memory_order_relaxed);
}

uint32_t kvbm__xfer_fault_take_drip(void)
{
    return atomic_exchange_explicit(&drip_interval_ms, 0, memory_order_relaxed);
}

/* Values are written before any thread exists, counts taken by any. */
static int64_t lie_value[KVBM__LIE_COUNT];
static atomic_uint lie_left[KVBM__LIE_COUNT];

void kvbm__xfer_fault_lie(kvbm__xfer_lie_t lie, int64_t value, uint32_t count)
{
    lie_value[lie] = value;
    atomic_store_explicit(&lie_left[lie], count, memory_order_relaxed);
}

bool kvbm__xfer_fault_lie_take(kvbm__xfer_lie_t lie, int64_t *value_out)
{
    if (!take_one(&lie_left[lie]))
        return false;
    *value_out = lie_value[lie];
    return true;
}
