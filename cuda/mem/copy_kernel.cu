/*
 * Gather/scatter copy kernel: one launch copies many small regions, which
 * the copy engines handle poorly (per-copy overhead dominates below tens of
 * KiB). Each thread block takes regions in a grid-stride loop and copies a
 * region with 16-byte accesses when both ends are 16-byte aligned, bytes
 * otherwise.
 */
#include <stdint.h>

#include "copy_kernel.h"

__global__ void kvbm_copy_regions_kernel(const kvbm__cuda_desc_t *desc, size_t n)
{
    for (size_t r = blockIdx.x; r < n; r += gridDim.x) {
        const char *src = (const char *)desc[r].src;
        char *dst = (char *)desc[r].dst;
        size_t bytes = desc[r].bytes;
        size_t done = 0;
        if ((((uintptr_t)src | (uintptr_t)dst) & 15u) == 0) {
            size_t n16 = bytes / 16;
            const uint4 *s4 = (const uint4 *)src;
            uint4 *d4 = (uint4 *)dst;
            for (size_t i = threadIdx.x; i < n16; i += blockDim.x)
                d4[i] = s4[i];
            done = n16 * 16;
        }
        for (size_t i = done + threadIdx.x; i < bytes; i += blockDim.x)
            dst[i] = src[i];
    }
}

extern "C" cudaError_t kvbm__cuda_copy_kernel_launch(const kvbm__cuda_desc_t *dev_desc, size_t n,
                                                     cudaStream_t stream)
{
    if (n == 0)
        return cudaSuccess;
    unsigned grid = n < 65535 ? (unsigned)n : 65535u;
    kvbm_copy_regions_kernel<<<grid, 256, 0, stream>>>(dev_desc, n);
    return cudaGetLastError();
}
