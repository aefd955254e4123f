/*
 * Internal to cuda/: the one entry into the copy kernel. Replaced in the
 * tests by the CUDA runtime stand-in (tests/cuda/standin), which runs the
 * same per-region code (copy_region.h) on its stream threads.
 */
#ifndef KVBM_CUDA_LAUNCH_H
#define KVBM_CUDA_LAUNCH_H

#include <cuda_runtime.h>

#include "copy_region.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Enqueues one launch copying the @p launch->n regions listed in @p launch
 * (host memory; the launch takes its own copy of the list, so it may be
 * reused when this returns). Returns this launch's own status, never an
 * earlier error of the calling thread: cudaSuccess when enqueued,
 * cudaErrorInvalidValue for n outside 1..KVBM__COPY_LAUNCH_MAX.
 */
cudaError_t kvbm__copy_kernel_launch(const kvbm__copy_launch_t *launch, cudaStream_t stream);

#ifdef __cplusplus
}
#endif
#endif /* KVBM_CUDA_LAUNCH_H */
