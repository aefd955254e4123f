/* Internal to cuda/: the gather/scatter copy kernel's launcher. */
#ifndef KVBM_COPY_KERNEL_H
#define KVBM_COPY_KERNEL_H

#include <cuda_runtime.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* One region of a batch, as the kernel reads it from device memory. */
typedef struct kvbm__cuda_desc {
    const void *src;
    void *dst;
    size_t bytes;
} kvbm__cuda_desc_t;

/* One launch copies all @p n regions listed at @p dev_desc (device memory).
 * Returns the launch error (cudaSuccess when enqueued). */
cudaError_t kvbm__cuda_copy_kernel_launch(const kvbm__cuda_desc_t *dev_desc, size_t n,
                                          cudaStream_t stream);

#ifdef __cplusplus
}
#endif
#endif /* KVBM_COPY_KERNEL_H */
