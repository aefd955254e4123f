/**
 * @file status.h
 * @brief The one status enum of kvbm and its string table.
 *
 * Every fallible kvbm call returns a kvbm_status_t. KVBM_OK is zero and every
 * error is negative. The list below is the single source of truth: the enum
 * and kvbm_status_str() are both generated from it. Values are never
 * renumbered; new statuses are appended with the next free number.
 */
#ifndef KVBM_STATUS_H
#define KVBM_STATUS_H

#include "kvbm/export.h"

#ifdef __cplusplus
extern "C" {
#endif

/* X(name, value, description) */
#define KVBM_STATUS_LIST(X)                                                                        \
    X(KVBM_OK, 0, "success")                                                                       \
    X(KVBM_ERR_INVALID_ARG, -1, "invalid argument")                                                \
    X(KVBM_ERR_NO_MEMORY, -2, "out of host memory")                                                \
    X(KVBM_ERR_NO_BLOCKS, -3, "not enough free or evictable blocks")                               \
    X(KVBM_ERR_OUT_OF_RANGE, -4, "block id out of range")                                          \
    X(KVBM_ERR_BAD_STATE, -5, "block is not in the state this call needs")                         \
    X(KVBM_ERR_NOT_HELD, -6, "block is not held by the caller")                                    \
    X(KVBM_ERR_BUSY, -7, "resource still in use")                                                  \
    X(KVBM_ERR_UNSUPPORTED, -8, "operation not supported by this backend")                         \
    X(KVBM_ERR_NO_DEVICE, -9, "no usable accelerator device")                                      \
    X(KVBM_ERR_DEVICE, -10, "accelerator runtime error")                                           \
    X(KVBM_ERR_COPY_FAILED, -11, "copy failed")                                                    \
    X(KVBM_ERR_TIMEOUT, -12, "timed out")                                                          \
    X(KVBM_ERR_IO, -13, "I/O or system call error")                                                \
    X(KVBM_ERR_PARSE, -14, "malformed input")                                                      \
    X(KVBM_ERR_VERSION, -15, "struct size or version not supported")                               \
    X(KVBM_ERR_OVERFLOW, -16, "size arithmetic overflow")                                          \
    X(KVBM_ERR_INCOMPATIBLE, -17, "peer or layout incompatible")                                   \
    X(KVBM_ERR_PEER, -18, "peer failed or disconnected")                                           \
    X(KVBM_ERR_NOT_FOUND, -19, "not found")                                                        \
    X(KVBM_ERR_NCCL, -20, "NCCL error")                                                            \
    X(KVBM_ERR_INTERNAL, -21, "internal error")                                                    \
    X(KVBM_ERR_AUTH, -22, "peer failed authentication")

typedef enum kvbm_status {
#define KVBM_STATUS_ENUM_ENTRY(name, value, text) name = (value),
    KVBM_STATUS_LIST(KVBM_STATUS_ENUM_ENTRY)
#undef KVBM_STATUS_ENUM_ENTRY
} kvbm_status_t;

/**
 * @brief Human readable text of a status. Never returns NULL; unknown values
 *        give "unknown status". Thread-safe; the string is static.
 */
KVBM_API const char *kvbm_status_str(kvbm_status_t status);

/** @brief The enumerator's name ("KVBM_ERR_NO_BLOCKS"), or "KVBM_UNKNOWN". */
KVBM_API const char *kvbm_status_name(kvbm_status_t status);

/**
 * @brief Why the latest failed kvbm call of the calling thread failed, in
 *        words: which argument was wrong and how, or which system, CUDA or
 *        NCCL call failed and what it reported.
 *
 * Recorded by every call that fails because of a bad argument
 * (KVBM_ERR_INVALID_ARG, KVBM_ERR_OUT_OF_RANGE, KVBM_ERR_VERSION, and
 * KVBM_ERR_OVERFLOW / KVBM_ERR_INCOMPATIBLE from sizes and layouts), the
 * operating system (a system or pthreads call, a pool's mmap), CUDA or NCCL,
 * and by the manager's refusals (KVBM_ERR_NO_BLOCKS, KVBM_ERR_BAD_STATE,
 * KVBM_ERR_NOT_HELD, KVBM_ERR_BUSY). Read it right after such a failure, as
 * errno: calls that succeed do not clear it, and a failure not listed here
 * (a host malloc returning NULL, KVBM_ERR_NO_MEMORY) may leave an older
 * reason in place. A transfer request that fails on kvbm's worker thread
 * hands its reason to the thread that waits for it
 * (kvbm_xfer_req_wait()), and a copy that fails while it runs is reported,
 * with its reason, to the thread that waits on or queries its fence.
 *
 * @return the reason, "" when no failure was recorded on this thread yet.
 *         Never NULL. The text belongs to the thread and stays valid until
 *         its next kvbm call.
 */
KVBM_API const char *kvbm_last_error(void);

#ifdef __cplusplus
}
#endif
#endif /* KVBM_STATUS_H */
