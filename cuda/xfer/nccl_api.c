/* NCCL loaded at run time; see nccl_api.h. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>

#include "core/log.h"
#include "nccl_api.h"

static kvbm__nccl_api_t nccl_api; /* written once under nccl_once */
static bool nccl_loaded;          /* written once under nccl_once */
static pthread_once_t nccl_once = PTHREAD_ONCE_INIT;

static void nccl_load(void)
{
    /* Never closed: the process keeps it, as it would a linked library. */
    void *lib = dlopen("libnccl.so.2", RTLD_NOW | RTLD_LOCAL);
    if (lib == NULL) {
        kvbm__log(KVBM_LOG_INFO, "NCCL not loaded: %s", dlerror());
        return;
    }
    kvbm__nccl_api_t api;
    memset(&api, 0, sizeof(api));
    bool complete = true;
    /* dlsym gives an object pointer; POSIX guarantees it converts to the
     * function pointer (memcpy avoids the cast ISO C does not define). */
#define NCCL_LOAD(field, symbol)                                                                   \
    do {                                                                                           \
        void *sym_ = dlsym(lib, symbol);                                                           \
        complete = complete && sym_ != NULL;                                                       \
        memcpy(&api.field, &sym_, sizeof(sym_));                                                   \
    } while (0)
    __typeof__(&ncclGetVersion) get_version;
    {
        void *sym = dlsym(lib, "ncclGetVersion");
        complete = sym != NULL;
        memcpy(&get_version, &sym, sizeof(sym));
    }
    NCCL_LOAD(get_error_string, "ncclGetErrorString");
    NCCL_LOAD(get_unique_id, "ncclGetUniqueId");
    NCCL_LOAD(comm_init_rank_config, "ncclCommInitRankConfig");
    NCCL_LOAD(comm_get_async_error, "ncclCommGetAsyncError");
    NCCL_LOAD(comm_abort, "ncclCommAbort");
    NCCL_LOAD(comm_finalize, "ncclCommFinalize");
    NCCL_LOAD(comm_split, "ncclCommSplit");
    NCCL_LOAD(comm_cu_device, "ncclCommCuDevice");
    NCCL_LOAD(comm_destroy, "ncclCommDestroy");
    NCCL_LOAD(comm_count, "ncclCommCount");
    NCCL_LOAD(comm_user_rank, "ncclCommUserRank");
    NCCL_LOAD(group_start, "ncclGroupStart");
    NCCL_LOAD(group_end, "ncclGroupEnd");
    NCCL_LOAD(send, "ncclSend");
    NCCL_LOAD(recv, "ncclRecv");
#undef NCCL_LOAD
    if (!complete) {
        kvbm__log(KVBM_LOG_WARN, "libnccl.so.2 lacks calls kvbm needs: NCCL transport disabled");
        return;
    }
    if (get_version(&api.version) != ncclSuccess || api.version / 10000 != NCCL_MAJOR) {
        kvbm__log(KVBM_LOG_WARN, "libnccl.so.2 is version %d, kvbm was built for NCCL %d",
                  api.version, NCCL_MAJOR);
        return;
    }
    nccl_api = api;
    nccl_loaded = true;
}

const kvbm__nccl_api_t *kvbm__nccl_api(void)
{
    (void)pthread_once(&nccl_once, nccl_load);
    return nccl_loaded ? &nccl_api : NULL;
}
