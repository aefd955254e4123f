/*
 * The reason for the last failure on each thread, behind kvbm_last_error()
 * (kvbm/status.h). There is one way to fail with a reason: kvbm__fail
 * records it on the calling thread and returns the status, so a check reads
 *
 *     if (config->num_blocks == 0)
 *         return kvbm__fail(KVBM_ERR_INVALID_ARG, "num_blocks is 0");
 *
 * Whoever decides that a call fails because of a bad argument, the OS, CUDA
 * or NCCL records the reason where the failure is first seen (the checking
 * macros of core/check.h and cuda/ do it for their sources), in words a
 * caller can act on: what was wrong, with the value. Callers above only pass
 * the status on; a later kvbm__fail on the same thread replaces the text.
 * KVBM_REQUIRE_ARG is the short form for a function's argument checks.
 * Recording does not log: the checking macros log their sources once per
 * call site, bad arguments are not logged at all (the caller has the status
 * and the reason and decides).
 */
#ifndef KVBM_CORE_ERROR_H
#define KVBM_CORE_ERROR_H

#include "kvbm/status.h"

/* Longest reason kept, including the terminating NUL; longer ones are cut. */
#define KVBM__ERROR_MAX 512

/* Records the reason (printf format) on the calling thread. */
void kvbm__error_record(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * Records the reason and evaluates to @p status. A macro rather than a
 * function, so the compiler and the static analyzer see which status a
 * `return kvbm__fail(...)` returns (a function's result would be opaque to
 * them, and every caller's "status != KVBM_OK" branch a guess).
 */
#define kvbm__fail(status, ...) (kvbm__error_record(__VA_ARGS__), (kvbm_status_t)(status))

/*
 * For kvbm's own threads, which fail on behalf of a caller on another
 * thread: clear the reason before a piece of work, read it after, and hand
 * it to the caller's thread with kvbm__fail(status, "%s", reason) there.
 */
void kvbm__error_clear(void);

/*
 * The argument checks a public function makes before it takes anything
 * (a lock, memory): returns KVBM_ERR_INVALID_ARG from the calling function
 * unless @p cond holds, recording "<function>: bad argument: needs <cond>".
 * A reason that needs a value ("num_blocks 0 is not in 1..N") is written
 * with kvbm__fail instead.
 */
#define KVBM_REQUIRE_ARG(cond)                                                                     \
    do {                                                                                           \
        if (__builtin_expect(!(cond), 0))                                                          \
            return kvbm__fail(KVBM_ERR_INVALID_ARG, "%s: bad argument: needs %s", __func__,        \
                              #cond);                                                              \
    } while (0)

#endif /* KVBM_CORE_ERROR_H */
