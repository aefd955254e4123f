/**
 * @file log.h
 * @brief Where kvbm's messages go.
 *
 * kvbm logs rarely: an error the first time a call site sees it (a failed
 * system, pthreads, CUDA or NCCL call), a peer refused at a rendezvous. By
 * default each message is one line on stderr, "kvbm: <message>". An engine
 * routes them into its own logs with kvbm_log_set().
 */
#ifndef KVBM_LOG_H
#define KVBM_LOG_H

#include "kvbm/export.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Severity of a message. */
typedef enum kvbm_log_level {
    KVBM_LOG_ERROR = 1, /**< a call failed because of this */
    KVBM_LOG_WARN = 2,  /**< something is off, the call went on */
    KVBM_LOG_INFO = 3,  /**< worth knowing, nothing wrong */
} kvbm_log_level_t;

/**
 * @brief Receives one message.
 * @param[in] user    the pointer given to kvbm_log_set().
 * @param[in] level   its severity.
 * @param[in] message one line without the trailing newline or the "kvbm: "
 *                    prefix; valid only during the call.
 *
 * Called from whichever kvbm thread logs, possibly several at once, sometimes
 * with kvbm locks held: it must not call back into kvbm.
 */
typedef void (*kvbm_log_fn)(void *user, kvbm_log_level_t level, const char *message);

/**
 * @brief Sends kvbm's messages to @p fn (with @p user) from now on; NULL
 *        restores the default (stderr).
 *
 * Thread-safe. A message being delivered in another thread when this returns
 * may still reach the previous callback, so set it before creating kvbm
 * objects and keep the previous target valid until they are destroyed.
 */
KVBM_API void kvbm_log_set(kvbm_log_fn fn, void *user);

#ifdef __cplusplus
}
#endif
#endif /* KVBM_LOG_H */
