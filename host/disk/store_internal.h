/*
 * Private state of the disk store, shared by its files: store.c (open,
 * close, accessors, metrics), file.c (the file, its superblock and mapped
 * table), engine.c (choosing and starting the I/O engine), batch.c (writes,
 * reads, completion and verification), rebuild.c (the index at open) and
 * space.c (the free-space floor).
 */
#ifndef KVBM_HOST_DISK_STORE_INTERNAL_H
#define KVBM_HOST_DISK_STORE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "core/check.h"
#include "store.h"

/* One counter per metric, in list order; queue_depth is read from the engine. */
enum {
#define KVBM__DISK_COUNTER_ENUM(field, type, help) KVBM__DISK_COUNTER_##field,
    KVBM_DISK_METRICS_LIST(KVBM__DISK_COUNTER_ENUM)
#undef KVBM__DISK_COUNTER_ENUM
        KVBM__DISK_COUNTERS
};

struct kvbm__disk_store {
    /* Immutable after open. */
    kvbm__disk_store_config_t config; /* config.path points at path below */
    char *path;
    int fd;      /* buffered: superblock, table mapping, statvfs, flock */
    int data_fd; /* the slots: opened with O_DIRECT when direct, else fd */
    bool direct;
    bool preallocated; /* fallocate reserved the whole file */
    kvbm__disk_geometry_t geometry;
    kvbm__disk_open_kind_t open_kind;
    uint8_t *table; /* MAP_SHARED mapping of the table region */
    const kvbm__disk_io_ops_t *engine;
    void *engine_state;
    char engine_name[32];

    /* Per slot, the generation of the block last published there (0: none).
     * Written when a slot's write completes and read when its reads
     * complete; the tier never lets both happen at once for one slot, and
     * the batch's done_lock hand-off orders one after the other. */
    uint64_t *slot_generation;
    _Atomic uint64_t next_generation; /* relaxed: only uniqueness matters */

    /* Until taken by the tier; touched by open and take_recovered only. */
    kvbm__disk_entry_t *recovered;
    size_t n_recovered;

    /* Guards every batch's `pending`; done_cond signals a batch finished. */
    pthread_mutex_t done_lock;
    pthread_cond_t done_cond;

    /* Guards fault and fault_ctx (the test hook). */
    pthread_mutex_t fault_lock;
    kvbm__disk_fault_fn fault;
    void *fault_ctx;

    _Atomic uint64_t counters[KVBM__DISK_COUNTERS]; /* relaxed: statistics */
};

struct kvbm__disk_batch {
    kvbm__disk_store_t *store;
    kvbm__disk_op_t op;
    bool submitted;
    size_t n;
    size_t capacity;
    size_t pending; /* under store->done_lock */
    kvbm__disk_req_t *reqs;
    kvbm__disk_req_t **req_ptrs;
    uint64_t *hashes;
    uint64_t *generations; /* written: the generation given to each entry */
    uint32_t *slots;
    uint8_t *outcomes; /* written by completions, read after done (done_lock) */
};

static inline void kvbm__disk_count(kvbm__disk_store_t *store, int counter, uint64_t n)
{
    atomic_fetch_add_explicit(&store->counters[counter], n, memory_order_relaxed);
}

/* file.c */
kvbm_status_t kvbm__disk_file_open(kvbm__disk_store_t *store);
void kvbm__disk_file_close(kvbm__disk_store_t *store);
/* The table entry of a slot in the mapping. */
static inline uint8_t *kvbm__disk_table_entry(const kvbm__disk_store_t *store, uint64_t slot)
{
    return store->table + slot * KVBM__DISK_HEADER_BYTES;
}
/* Flushes the table page holding a slot's entry (durable-power mode). */
void kvbm__disk_table_sync(const kvbm__disk_store_t *store, uint64_t slot);

/* engine.c */
kvbm_status_t kvbm__disk_engine_start(kvbm__disk_store_t *store);
void kvbm__disk_engine_stop(kvbm__disk_store_t *store);

/* batch.c: the engines' completion callback. */
void kvbm__disk_store_complete(void *ctx, kvbm__disk_req_t *req);
/* The fault layer's hook: asks the store's current test hook. */
kvbm__disk_fault_t kvbm__disk_store_fault(void *ctx, const kvbm__disk_req_t *req);

/* rebuild.c */
kvbm_status_t kvbm__disk_rebuild(kvbm__disk_store_t *store);

#endif /* KVBM_HOST_DISK_STORE_INTERNAL_H */
