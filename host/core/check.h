/*
 * The checking macros for the foreign error sources of host/ (CUDA and NCCL
 * keep theirs in cuda/). Each maps the source's error code to a kvbm status,
 * records the reason for kvbm_last_error() (core/error.h) and logs where the
 * error is first seen, so callers above only pass the status on.
 *
 * pthreads:
 *   KVBM_PTHREAD_CHECK(expr, status_var) for calls that can fail for reasons
 *   the caller reports (init, create): on a non-zero return it stores
 *   KVBM_ERR_NO_MEMORY (ENOMEM, EAGAIN) or KVBM_ERR_INTERNAL in status_var
 *   and logs the first failure of that call site.
 *   The kvbm__mutex_* / kvbm__cond_* / kvbm__thread_join helpers wrap the
 *   calls that cannot fail on valid objects (lock, unlock, wait, signal,
 *   destroy, join). A failure there means a corrupted or destroyed object,
 *   which no caller can recover from: they log it and abort.
 *
 * System calls (-1 and errno):
 *   KVBM_SYS_ERROR(what) is the status for errno right after a failed call,
 *   logged: connection errors map to KVBM_ERR_PEER, ENOMEM/ENOBUFS to
 *   KVBM_ERR_NO_MEMORY, ETIMEDOUT to KVBM_ERR_TIMEOUT, the rest to
 *   KVBM_ERR_IO.
 */
#ifndef KVBM_CORE_CHECK_H
#define KVBM_CORE_CHECK_H

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>

#include "kvbm/status.h"

/* Maps and logs a pthreads error; @p logged is the call site's once-flag. */
kvbm_status_t kvbm__pthread_error(int rc, const char *expr, const char *file, int line,
                                  atomic_int *logged);

#define KVBM_PTHREAD_CHECK(expr, status_var)                                                       \
    do {                                                                                           \
        int kvbm_pthread_rc_ = (expr);                                                             \
        if (__builtin_expect(kvbm_pthread_rc_ != 0, 0)) {                                          \
            static atomic_int kvbm_pthread_logged_;                                                \
            (status_var) = kvbm__pthread_error(kvbm_pthread_rc_, #expr, __FILE__, __LINE__,        \
                                               &kvbm_pthread_logged_);                             \
        }                                                                                          \
    } while (0)

/* Logs a pthreads call that must not fail and aborts. */
_Noreturn void kvbm__pthread_fatal(int rc, const char *expr, const char *file, int line);

#define KVBM__PTHREAD_MUST(expr)                                                                   \
    do {                                                                                           \
        int kvbm_pthread_rc_ = (expr);                                                             \
        if (__builtin_expect(kvbm_pthread_rc_ != 0, 0))                                            \
            kvbm__pthread_fatal(kvbm_pthread_rc_, #expr, __FILE__, __LINE__);                      \
    } while (0)

static inline void kvbm__mutex_lock(pthread_mutex_t *mutex)
{
    KVBM__PTHREAD_MUST(pthread_mutex_lock(mutex));
}

static inline void kvbm__mutex_unlock(pthread_mutex_t *mutex)
{
    KVBM__PTHREAD_MUST(pthread_mutex_unlock(mutex));
}

static inline void kvbm__mutex_destroy(pthread_mutex_t *mutex)
{
    KVBM__PTHREAD_MUST(pthread_mutex_destroy(mutex));
}

static inline void kvbm__cond_wait(pthread_cond_t *cond, pthread_mutex_t *mutex)
{
    KVBM__PTHREAD_MUST(pthread_cond_wait(cond, mutex));
}

static inline void kvbm__cond_signal(pthread_cond_t *cond)
{
    KVBM__PTHREAD_MUST(pthread_cond_signal(cond));
}

static inline void kvbm__cond_broadcast(pthread_cond_t *cond)
{
    KVBM__PTHREAD_MUST(pthread_cond_broadcast(cond));
}

static inline void kvbm__cond_destroy(pthread_cond_t *cond)
{
    KVBM__PTHREAD_MUST(pthread_cond_destroy(cond));
}

static inline void kvbm__thread_join(pthread_t thread)
{
    KVBM__PTHREAD_MUST(pthread_join(thread, NULL));
}

/* The status of a failed system call's errno, logged with what failed. */
kvbm_status_t kvbm__sys_error(const char *what, int err, const char *file, int line);
#define KVBM_SYS_ERROR(what) kvbm__sys_error((what), errno, __FILE__, __LINE__)

#endif /* KVBM_CORE_CHECK_H */
