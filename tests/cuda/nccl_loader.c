/*
 * Prints what kvbm's run-time NCCL loader finds here: "nccl loaded VERSION"
 * or "nccl absent". Used by check_runs_without_cuda.sh, which runs it with
 * and without /usr/local/cuda visible.
 */
#include <stdio.h>

#include "cuda_xfer/nccl_api.h"

int main(void)
{
    const kvbm__nccl_api_t *api = kvbm__nccl_api();
    if (api == NULL)
        printf("nccl absent\n");
    else
        printf("nccl loaded %d\n", api->version);
    return 0;
}
