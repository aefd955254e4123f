/*
 * The next-use oracle behind the belady bound: for a loaded trace, the index
 * of the next request after "now" that uses a hash. Time only moves forward,
 * so each hash keeps a cursor into its sorted list of uses (amortised O(1)).
 */
#ifndef KVBM_REPLAY_ORACLE_H
#define KVBM_REPLAY_ORACLE_H

#include <stddef.h>
#include <stdint.h>

#include "kvbm/status.h"
#include "trace.h"

typedef struct next_use_oracle next_use_oracle_t;

kvbm_status_t oracle_create(const trace_t *trace, next_use_oracle_t **oracle_out);
void oracle_destroy(next_use_oracle_t *oracle);

/* Requests before and at @p request no longer count as future uses. */
void oracle_set_now(next_use_oracle_t *oracle, size_t request);

/* kvbm_next_use_fn: the next request index using @p hash, or UINT64_MAX. */
uint64_t oracle_next_use(void *oracle, uint64_t hash);

#endif /* KVBM_REPLAY_ORACLE_H */
