/* The CUDA checking macro's function; see check.h. */
#include "check.h"
#include "core/error.h"
#include "core/log.h"
#include "decide.h"

kvbm_status_t kvbm__cuda_error(cudaError_t err, const char *expr, const char *file, int line,
                               atomic_int *logged)
{
    /* The failed call left err in this thread's last-error slot (replacing
     * whatever was there): take it out again, but only if it is still ours.
     * A sticky error stays whatever is done here. */
    if (cudaPeekAtLastError() == err)
        (void)cudaGetLastError();
    if (atomic_exchange_explicit(logged, 1, memory_order_relaxed) == 0)
        kvbm__log(KVBM_LOG_ERROR, "%s failed: %s (%s) at %s:%d", expr, cudaGetErrorName(err),
                  cudaGetErrorString(err), file, line);
    return kvbm__fail(kvbm__cuda_status(err), "%s failed: %s (%s)", expr, cudaGetErrorName(err),
                      cudaGetErrorString(err));
}
