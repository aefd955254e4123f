/* The error mappings behind core/check.h. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "error.h"
#include "log.h"

kvbm_status_t kvbm__pthread_error(int rc, const char *expr, const char *file, int line,
                                  atomic_int *logged)
{
    if (atomic_exchange_explicit(logged, 1, memory_order_relaxed) == 0)
        kvbm__log(KVBM_LOG_ERROR, "%s failed: %s (%s:%d)", expr, strerror(rc), file, line);
    return kvbm__fail(rc == ENOMEM || rc == EAGAIN ? KVBM_ERR_NO_MEMORY : KVBM_ERR_INTERNAL,
                      "%s failed: %s", expr, strerror(rc));
}

_Noreturn void kvbm__pthread_fatal(int rc, const char *expr, const char *file, int line)
{
    kvbm__log(KVBM_LOG_ERROR, "%s failed: %s (%s:%d); a lock or thread is corrupted, aborting",
              expr, strerror(rc), file, line);
    abort();
}

kvbm_status_t kvbm__sys_error(const char *what, int err, const char *file, int line)
{
    kvbm_status_t status;
    switch (err) {
    case ECONNRESET:
    case ECONNREFUSED:
    case ECONNABORTED:
    case EPIPE:
    case ENOTCONN:
    case ESHUTDOWN:
        status = KVBM_ERR_PEER;
        break;
    case ENOMEM:
    case ENOBUFS:
        status = KVBM_ERR_NO_MEMORY;
        break;
    case ETIMEDOUT:
        status = KVBM_ERR_TIMEOUT;
        break;
    default:
        status = KVBM_ERR_IO;
        break;
    }
    kvbm__log(KVBM_LOG_ERROR, "%s: %s (%s:%d)", what, strerror(err), file, line);
    return kvbm__fail(status, "%s: %s", what, strerror(err));
}
