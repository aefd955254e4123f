/*
 * The disk store: fixed-size slots in one file, each holding one block
 * (a header and the payload), written and read in batches through an I/O
 * engine, every read verified against what was written. The store knows
 * slots, not hashes' owners: the G3 tier (tier.h) maps its manager's block
 * ids to slots and decides what to write where.
 *
 * Threads: a store may be used from any thread. Calls that change which
 * slots are written (write, read, forget) must not race on the same slot:
 * the tier serialises them (a slot being written or read is held in its
 * manager). Completions run on the engine's threads.
 */
#ifndef KVBM_HOST_DISK_STORE_H
#define KVBM_HOST_DISK_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/alloc.h"
#include "format.h"
#include "io.h"
#include "kvbm/disk.h"

/* Not a public kind: the null engine, for measuring bookkeeping only. */
#define KVBM__DISK_IO_NULL ((kvbm_disk_io_kind_t)100)

typedef struct kvbm__disk_store kvbm__disk_store_t;

typedef struct kvbm__disk_store_config {
    const char *path;
    uint64_t payload_bytes;
    uint64_t slots;      /* 0: as many as file_bytes allows */
    uint64_t file_bytes; /* used when slots is 0 */
    uint64_t min_free_bytes;
    uint64_t fingerprint;
    kvbm_disk_io_kind_t io; /* or KVBM__DISK_IO_NULL */
    bool direct;
    uint32_t queue_depth;
    uint32_t io_threads;
    kvbm_disk_durability_t durability;
    bool preallocate;
} kvbm__disk_store_config_t;

/* What open found at the path. */
typedef enum kvbm__disk_open_kind {
    KVBM__DISK_OPENED_NEW = 0,       /* no file, or an empty one: created */
    KVBM__DISK_OPENED_WARM = 1,      /* same namespace and geometry: index rebuilt */
    KVBM__DISK_OPENED_NAMESPACE = 2, /* another namespace: emptied */
    KVBM__DISK_OPENED_GEOMETRY = 3,  /* other slots, block size or alignment: emptied */
    KVBM__DISK_OPENED_INVALID = 4,   /* no valid superblock (torn, foreign, newer): emptied */
} kvbm__disk_open_kind_t;

/* A block found in the index at open. */
typedef struct kvbm__disk_entry {
    uint32_t slot;
    uint64_t seq_hash;
    uint64_t generation;
} kvbm__disk_entry_t;

/*
 * Opens (or creates) the file, decides warm or cold (open_kind), rebuilds
 * the index, and starts the I/O engine.
 * KVBM_ERR_INVALID_ARG; KVBM_ERR_BUSY (another process has the file open);
 * KVBM_ERR_UNSUPPORTED (io_uring asked for and unavailable); KVBM_ERR_IO;
 * KVBM_ERR_NO_MEMORY; KVBM_ERR_OVERFLOW.
 */
kvbm_status_t kvbm__disk_store_open(const kvbm__disk_store_config_t *config,
                                    kvbm__disk_store_t **store_out);

/* Waits for the I/O in flight (every batch must be done), then closes. NULL: no-op. */
void kvbm__disk_store_close(kvbm__disk_store_t *store);

const kvbm__disk_geometry_t *kvbm__disk_store_geometry(const kvbm__disk_store_t *store);
kvbm__disk_open_kind_t kvbm__disk_store_open_kind(const kvbm__disk_store_t *store);
/* "io_uring+direct", "threads+buffered", ...: the engine chosen at open. */
const char *kvbm__disk_store_engine(const kvbm__disk_store_t *store);
/* Alignment every buffer given to a batch must have. */
size_t kvbm__disk_store_buffer_align(const kvbm__disk_store_t *store);

/* The blocks found in the index at open, oldest write first; ownership
 * passes to the caller (kvbm__free()). Later calls return none. */
void kvbm__disk_store_take_recovered(kvbm__disk_store_t *store, kvbm__disk_entry_t **entries_out,
                                     size_t *n_out);

/* Removes a slot from the index (before it is rewritten, or when its block is
 * withdrawn), so that a restart does not find it. */
void kvbm__disk_store_forget(kvbm__disk_store_t *store, uint32_t slot);

/*
 * Whether @p blocks more writes keep the filesystem above the free-space
 * floor (statvfs). When not, they are counted as skipped and false is
 * returned: the caller does not write them.
 */
bool kvbm__disk_store_reserve_space(kvbm__disk_store_t *store, uint64_t blocks);

void kvbm__disk_store_metrics(kvbm__disk_store_t *store, kvbm_disk_metrics_t *metrics_out);

/* Test hook: the fault of every later request (NULL hook: none). */
void kvbm__disk_store_set_fault(kvbm__disk_store_t *store, kvbm__disk_fault_fn hook, void *ctx);

/* ------------------------------------------------------------------ batches */

typedef enum kvbm__disk_outcome {
    KVBM__DISK_PENDING = 0,
    KVBM__DISK_DONE = 1,    /* written and published, or read and verified */
    KVBM__DISK_FAILED = 2,  /* I/O error, short transfer, no space */
    KVBM__DISK_CORRUPT = 3, /* read: header or checksum did not match */
} kvbm__disk_outcome_t;

/* A set of writes or reads submitted together. One batch is used by one
 * thread at a time; it completes on the engine's threads. */
typedef struct kvbm__disk_batch kvbm__disk_batch_t;

kvbm_status_t kvbm__disk_batch_create(kvbm__disk_store_t *store, size_t capacity,
                                      kvbm__disk_batch_t **batch_out);
/* Waits for the batch if it was submitted, then frees it. NULL: no-op. */
void kvbm__disk_batch_destroy(kvbm__disk_batch_t *batch);
/* Empties a batch that is done (or was never submitted) for reuse. */
void kvbm__disk_batch_clear(kvbm__disk_batch_t *batch);

/*
 * Adds one block: its slot, its hash (written, or expected when read) and a
 * buffer of the geometry's slot_bytes, aligned to buffer_align, whose
 * payload starts at KVBM__DISK_HEADER_BYTES. A write's payload must be in
 * place; the store writes the header. KVBM_ERR_OUT_OF_RANGE (slot);
 * KVBM_ERR_INVALID_ARG (full, misaligned buffer, already submitted).
 */
kvbm_status_t kvbm__disk_batch_add(kvbm__disk_batch_t *batch, uint32_t slot, uint64_t seq_hash,
                                   void *buf);
size_t kvbm__disk_batch_count(const kvbm__disk_batch_t *batch);

/* Starts the batch's writes (each published once complete) or reads (each
 * verified once complete). Never waits for the disk (a write computes its
 * blocks' checksums first); requests beyond the engine's queue depth wait in
 * its queue. KVBM_ERR_INVALID_ARG: empty or already submitted. */
kvbm_status_t kvbm__disk_store_write(kvbm__disk_store_t *store, kvbm__disk_batch_t *batch);
kvbm_status_t kvbm__disk_store_read(kvbm__disk_store_t *store, kvbm__disk_batch_t *batch);

bool kvbm__disk_batch_done(kvbm__disk_batch_t *batch);
void kvbm__disk_batch_wait(kvbm__disk_batch_t *batch);
/* Outcome of entry i (in add order); PENDING until the batch is done. */
kvbm__disk_outcome_t kvbm__disk_batch_outcome(const kvbm__disk_batch_t *batch, size_t i);

#endif /* KVBM_HOST_DISK_STORE_H */
