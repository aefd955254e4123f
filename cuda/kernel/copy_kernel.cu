/*
 * Gather/scatter copy kernel: one launch copies up to KVBM__COPY_LAUNCH_MAX
 * regions, which the copy engines handle poorly when they are small (the
 * per-copy cost dominates below tens of KiB). Block b copies regions b,
 * b + grid, ...; the threads of a block share a region (copy_region.h).
 *
 * The region list is the by-value __grid_constant__ parameter, so there is no
 * descriptor memory to manage and nothing to wait for before reusing it.
 * The launch goes through cudaLaunchKernel, whose return value is this
 * launch's status (a <<<>>> launch followed by cudaGetLastError would report,
 * and clear, an earlier error of the host application).
 */
#include "launch.h"

__global__ void __launch_bounds__(KVBM__COPY_THREADS)
    kvbm_copy_regions_kernel(const __grid_constant__ kvbm__copy_launch_t launch)
{
    kvbm__copy_regions_part(launch.desc, launch.n, blockIdx.x, gridDim.x, threadIdx.x, blockDim.x);
}

extern "C" cudaError_t kvbm__copy_kernel_launch(const kvbm__copy_launch_t *launch,
                                                cudaStream_t stream)
{
    if (launch->n == 0 || launch->n > KVBM__COPY_LAUNCH_MAX)
        return cudaErrorInvalidValue;
    void *args[] = {const_cast<kvbm__copy_launch_t *>(launch)};
    return cudaLaunchKernel(reinterpret_cast<const void *>(kvbm_copy_regions_kernel),
                            dim3(launch->n), dim3(KVBM__COPY_THREADS), args, 0, stream);
}
