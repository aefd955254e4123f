/*
 * A transfer object's counters (kvbm_xfer_stats_t), as relaxed atomics bumped
 * by whichever thread sees the event: the acceptor (refused connections,
 * failed authentications), service and worker threads (timeouts, protocol
 * errors, reconnects). Generated from KVBM_XFER_STATS_LIST like the public
 * struct, so a counter added there exists here too.
 */
#ifndef KVBM_XFER_COUNTERS_H
#define KVBM_XFER_COUNTERS_H

#include <stdatomic.h>
#include <stdint.h>

#include "kvbm/xfer.h"

typedef struct kvbm__xfer_counters {
#define KVBM__COUNTER_FIELD(field, type, help) _Atomic uint64_t field;
    KVBM_XFER_STATS_LIST(KVBM__COUNTER_FIELD)
#undef KVBM__COUNTER_FIELD
} kvbm__xfer_counters_t;

static inline void kvbm__count(_Atomic uint64_t *counter)
{
    /* Statistics only: nothing is ordered by them. */
    atomic_fetch_add_explicit(counter, 1, memory_order_relaxed);
}

#endif /* KVBM_XFER_COUNTERS_H */
