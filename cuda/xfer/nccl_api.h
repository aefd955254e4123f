/*
 * Internal to cuda/xfer: NCCL, loaded at run time. kvbm is built against
 * nccl.h but never links libnccl, so a kvbm built with NCCL starts where
 * NCCL is not installed; there the NCCL transport's probe says
 * KVBM_ERR_UNSUPPORTED and the socket transport remains.
 */
#ifndef KVBM_CUDA_NCCL_API_H
#define KVBM_CUDA_NCCL_API_H

#include <nccl.h>

/* The NCCL calls the transport makes, resolved from libnccl.so.2. */
typedef struct kvbm__nccl_api {
    int version; /* ncclGetVersion of the library loaded */
    __typeof__(&ncclGetErrorString) get_error_string;
    __typeof__(&ncclGetUniqueId) get_unique_id;
    __typeof__(&ncclCommInitRankConfig) comm_init_rank_config;
    __typeof__(&ncclCommGetAsyncError) comm_get_async_error;
    __typeof__(&ncclCommAbort) comm_abort;
    __typeof__(&ncclCommFinalize) comm_finalize;
    __typeof__(&ncclCommSplit) comm_split;
    __typeof__(&ncclCommCuDevice) comm_cu_device;
    __typeof__(&ncclCommDestroy) comm_destroy;
    __typeof__(&ncclCommCount) comm_count;
    __typeof__(&ncclCommUserRank) comm_user_rank;
    __typeof__(&ncclGroupStart) group_start;
    __typeof__(&ncclGroupEnd) group_end;
    __typeof__(&ncclSend) send;
    __typeof__(&ncclRecv) recv;
} kvbm__nccl_api_t;

/* The library's calls, loaded on first use (thread-safe); NULL when
 * libnccl.so.2 is absent, lacks a call, or is not NCCL 2 (logged once). */
const kvbm__nccl_api_t *kvbm__nccl_api(void);

#endif /* KVBM_CUDA_NCCL_API_H */
