/**
 * @file disk.h
 * @brief The disk tier (G3): configuration, I/O engine choice, durability
 *        promise and metrics of a block store kept in one preallocated file.
 *
 * A G3 tier stores whole KV blocks in one file on a local filesystem
 * (format: docs/DISK_FORMAT.md). Every stored block carries a header with its
 * sequence hash, the namespace fingerprint, a generation and an XXH3
 * checksum of its payload; a read whose header or checksum does not match is
 * a miss, never data. The namespace fingerprint covers the layout (layers,
 * heads x head size, element size, tokens per block, arrangement), the model
 * identifier and the tensor-parallel rank and size: a file opened with
 * another namespace starts empty and its old blocks are never served.
 *
 * Reopened on the same path with the same namespace and geometry, the tier
 * comes back warm: its index is rebuilt from the header table in the file.
 *
 * I/O goes through io_uring with O_DIRECT and aligned buffers where the
 * kernel and the filesystem allow it, else through a pool of threads doing
 * pread/pwrite (with or without O_DIRECT); the choice is made at open time
 * and reported by the tier. KVBM_DISK_IO=uring|threads|auto in the
 * environment replaces a config that asks for KVBM_DISK_IO_AUTO.
 */
#ifndef KVBM_DISK_H
#define KVBM_DISK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kvbm/config_init.h"
#include "kvbm/export.h"
#include "kvbm/policy.h"
#include "kvbm/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KVBM_DISK_CONFIG_VERSION 1u

/** Which I/O engine moves blocks between staging buffers and the file. */
typedef enum kvbm_disk_io_kind {
    KVBM_DISK_IO_AUTO = 0,    /**< io_uring when the kernel allows it, else threads */
    KVBM_DISK_IO_URING = 1,   /**< io_uring only (open fails where it is unavailable) */
    KVBM_DISK_IO_THREADS = 2, /**< a pool of threads doing pread/pwrite */
} kvbm_disk_io_kind_t;

/**
 * When a written block is published (findable, and listed in the file's
 * index). Whatever the mode, a block whose bytes did not all reach the file
 * is never served: its checksum fails and the read is a miss.
 */
typedef enum kvbm_disk_durability {
    /**
     * Published once the kernel has completed the write (device cache or
     * page cache). Survives a crash of the process; after a power loss or an
     * operating-system crash recent blocks may be missing (misses, counted
     * as corrupt loads when the index outlived the data).
     */
    KVBM_DISK_DURABLE_PROCESS = 0,
    /**
     * Written with RWF_DSYNC and the index entry flushed (msync) before the
     * block is published: published blocks survive a power loss. Slower.
     */
    KVBM_DISK_DURABLE_POWER = 1,
} kvbm_disk_durability_t;

/** Configuration of a G3 tier. Strings are copied at open. */
typedef struct kvbm_disk_config {
    uint32_t struct_size; /**< sizeof(kvbm_disk_config_t) */
    uint32_t version;     /**< KVBM_DISK_CONFIG_VERSION */
    /** The file; created (0600) if missing. One process at a time (flock). */
    const char *path;
    /** Capacity in blocks; 0 means derive it from capacity_bytes. */
    uint32_t capacity_blocks;
    /** Capacity as the whole file's size in bytes, used when capacity_blocks is 0. */
    uint64_t capacity_bytes;
    /**
     * Free-space floor of the filesystem (statvfs, bytes available to the
     * process): a write that would leave less is not attempted, and counted.
     */
    uint64_t min_free_bytes;
    /** Model identifier, part of the namespace (NULL means ""). */
    const char *model_id;
    uint32_t tp_rank; /**< tensor-parallel rank, part of the namespace */
    uint32_t tp_size; /**< tensor-parallel size (0 is taken as 1), part of the namespace */
    kvbm_disk_io_kind_t io;
    /** Try O_DIRECT (falls back to buffered I/O where the filesystem refuses it). */
    bool direct;
    /** io_uring: requests in the kernel at once; more wait in the engine's queue
     *  (the thread pool runs io_threads at once). */
    uint32_t queue_depth;
    /** Threads of the pread/pwrite engine. */
    uint32_t io_threads;
    kvbm_disk_durability_t durability;
    /** Preallocate the file (fallocate) at creation, so writes never find the disk full. */
    bool preallocate;
    /** Pinned staging buffers, in blocks, for reads into and writes out of the tier. */
    uint32_t staging_blocks;
    /** Eviction policy of the tier; NULL means LRU. */
    const kvbm_policy_ops_t *policy;
} kvbm_disk_config_t;

/** The defaults: X(P, field, value) entries (kvbm/config_init.h). */
#define KVBM_DISK_CONFIG_DEFAULTS(X, P)                                                            \
    X(P, struct_size, sizeof(kvbm_disk_config_t))                                                  \
    X(P, version, KVBM_DISK_CONFIG_VERSION)                                                        \
    X(P, min_free_bytes, 1ull << 30)                                                               \
    X(P, tp_size, 1)                                                                               \
    X(P, direct, true)                                                                             \
    X(P, queue_depth, 64)                                                                          \
    X(P, io_threads, 4)                                                                            \
    X(P, preallocate, true)                                                                        \
    X(P, staging_blocks, 256)

#ifdef __cplusplus
#define KVBM_DISK_CONFIG_INIT KVBM_CONFIG_INIT_CXX(kvbm_disk_config_t, kvbm_disk_config_init)
#else
#define KVBM_DISK_CONFIG_INIT                                                                      \
    {                                                                                              \
        KVBM_DISK_CONFIG_DEFAULTS(KVBM_CONFIG_DESIGNATE, )                                         \
    }
#endif

/**
 * @brief Set @p config to the defaults, as KVBM_DISK_CONFIG_INIT does; for
 *        C and C++ alike. Compiled into the caller (static inline).
 */
static inline void kvbm_disk_config_init(kvbm_disk_config_t *config)
{
    memset(config, 0, sizeof(*config));
    KVBM_DISK_CONFIG_DEFAULTS(KVBM_CONFIG_ASSIGN, )
}

/* X(field, prometheus type, help) */
#define KVBM_DISK_METRICS_LIST(X)                                                                  \
    X(stores, counter, "blocks written to disk and published")                                     \
    X(store_bytes, counter, "payload bytes of published blocks")                                   \
    X(stores_failed, counter, "block writes that failed: I/O error, short write, no space")        \
    X(stores_skipped_space, counter, "block writes not attempted: filesystem at its floor")        \
    X(loads, counter, "blocks read from disk whose header and checksum matched")                   \
    X(load_bytes, counter, "payload bytes of verified loads")                                      \
    X(loads_failed, counter, "block reads that failed: I/O error or short read")                   \
    X(loads_corrupt, counter, "block reads whose header or checksum did not match (misses)")       \
    X(recovered, counter, "blocks found in the file's index when it was opened")                   \
    X(queue_depth, gauge, "disk requests in flight")

typedef struct kvbm_disk_metrics {
#define KVBM_DISK_METRICS_FIELD(field, type, help) uint64_t field;
    KVBM_DISK_METRICS_LIST(KVBM_DISK_METRICS_FIELD)
#undef KVBM_DISK_METRICS_FIELD
} kvbm_disk_metrics_t;

#ifdef __cplusplus
}
#endif
#endif /* KVBM_DISK_H */
