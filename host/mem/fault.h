/*
 * Copy-fault injection for soak tests (internal; tests include it as
 * "mem/fault.h"). kvbm_backend_fail_nth_copy() fails one chosen call; this
 * fails a steady share of them, so that a long multi-threaded run keeps
 * meeting failed copies, while sparing one stream (an engine's own writes,
 * whose failure the engine would see itself).
 */
#ifndef KVBM_MEM_FAULT_H
#define KVBM_MEM_FAULT_H

#include <stdint.h>

#include "kvbm/backend.h"

/*
 * Every copy call on a stream other than @p spared (NULL: none is spared)
 * fails when it runs with probability 1 / @p one_in, chosen by a hash of the
 * call's number; @p one_in 0 disarms.
 * @return KVBM_OK; KVBM_ERR_INVALID_ARG.
 */
kvbm_status_t kvbm__backend_fail_copies(kvbm_backend_t *backend, uint64_t one_in,
                                        kvbm_stream_t *spared);

/* Copy calls made to fail so far, by either hook. */
uint64_t kvbm__backend_faults_injected(kvbm_backend_t *backend);

#endif /* KVBM_MEM_FAULT_H */
