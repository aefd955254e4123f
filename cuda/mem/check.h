/*
 * Internal to cuda/: the one checking macro for the CUDA runtime. It maps a
 * cudaError_t to a kvbm status (decide.h), records the reason for
 * kvbm_last_error() (core/error.h), logs the failing call (core/log.h) the
 * first time that call site fails (not at every level above it), and takes
 * its own error out of the runtime's last-error slot, so the host
 * application never sees kvbm's error as one of its own. It never clears an
 * error it did not cause (cudaErrorNotReady is not an error and is never
 * passed here).
 */
#ifndef KVBM_CUDA_CHECK_H
#define KVBM_CUDA_CHECK_H

#include <cuda_runtime.h>
#include <stdatomic.h>

#include "kvbm/status.h"

/* Maps and logs; @p logged is the call site's once-flag. */
kvbm_status_t kvbm__cuda_error(cudaError_t err, const char *expr, const char *file, int line,
                               atomic_int *logged);

/* Evaluates @p expr; on failure stores the mapped status in @p status_var. */
#define KVBM_CUDA_CHECK(expr, status_var)                                                          \
    do {                                                                                           \
        cudaError_t kvbm_cuda_err_ = (expr);                                                       \
        if (kvbm_cuda_err_ != cudaSuccess) {                                                       \
            static atomic_int kvbm_cuda_logged_;                                                   \
            (status_var) =                                                                         \
                kvbm__cuda_error(kvbm_cuda_err_, #expr, __FILE__, __LINE__, &kvbm_cuda_logged_);   \
        }                                                                                          \
    } while (0)

#endif /* KVBM_CUDA_CHECK_H */
