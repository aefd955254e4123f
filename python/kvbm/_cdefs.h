/*
 * The C interface the Python binding calls, as cffi reads it (ABI mode: no
 * compiler at install time). This is the one place the binding declares C:
 * every type, constant and function below is copied from include/kvbm/, and
 * python/tests/test_cdefs.py compiles a probe against those headers that
 * checks each function's prototype, each struct's size and field offsets and
 * kinds, each enum value and each constant, and that the config defaults the
 * binding writes are the bytes the C init functions write.
 *
 * Not declared: the transfers (kvbm/xfer.h), the policy ops table's slots
 * (a policy is passed around as an opaque table pointer) and the static
 * inline config init functions (compiled into C callers; the binding fills
 * the same defaults, see kvbm/_structs.py).
 */

/* ---------------------------------------------------------------- status.h */
typedef enum kvbm_status {
    KVBM_OK = 0,
    KVBM_ERR_INVALID_ARG = -1,
    KVBM_ERR_NO_MEMORY = -2,
    KVBM_ERR_NO_BLOCKS = -3,
    KVBM_ERR_OUT_OF_RANGE = -4,
    KVBM_ERR_BAD_STATE = -5,
    KVBM_ERR_NOT_HELD = -6,
    KVBM_ERR_BUSY = -7,
    KVBM_ERR_UNSUPPORTED = -8,
    KVBM_ERR_NO_DEVICE = -9,
    KVBM_ERR_DEVICE = -10,
    KVBM_ERR_COPY_FAILED = -11,
    KVBM_ERR_TIMEOUT = -12,
    KVBM_ERR_IO = -13,
    KVBM_ERR_PARSE = -14,
    KVBM_ERR_VERSION = -15,
    KVBM_ERR_OVERFLOW = -16,
    KVBM_ERR_INCOMPATIBLE = -17,
    KVBM_ERR_PEER = -18,
    KVBM_ERR_NOT_FOUND = -19,
    KVBM_ERR_NCCL = -20,
    KVBM_ERR_INTERNAL = -21,
    KVBM_ERR_AUTH = -22
} kvbm_status_t;

const char *kvbm_status_str(kvbm_status_t status);
const char *kvbm_status_name(kvbm_status_t status);
const char *kvbm_last_error(void);

/* --------------------------------------------------------------- version.h */
#define KVBM_VERSION_MAJOR 0
#define KVBM_VERSION_MINOR 1
#define KVBM_VERSION_PATCH 0
const char *kvbm_version(void);
int kvbm_version_code(void);

/* ------------------------------------------------------------------- log.h */
typedef enum kvbm_log_level {
    KVBM_LOG_ERROR = 1,
    KVBM_LOG_WARN = 2,
    KVBM_LOG_INFO = 3
} kvbm_log_level_t;
typedef void (*kvbm_log_fn)(void *user, kvbm_log_level_t level, const char *message);
void kvbm_log_set(kvbm_log_fn fn, void *user);

/* ------------------------------------------------------------------ hash.h */
uint64_t kvbm_hash_block(const uint32_t *tokens, size_t count, uint64_t seed);
uint64_t kvbm_hash_sequence(uint64_t parent, uint64_t block_hash, uint64_t seed);
kvbm_status_t kvbm_hash_tokens(const uint32_t *tokens, size_t count, uint32_t block_tokens,
                               uint64_t seed, uint64_t *hashes, size_t *n_hashes_out);

/* ---------------------------------------------------------------- policy.h */
#define KVBM_POLICY_OPS_VERSION    4
#define KVBM_POLICY_CONFIG_VERSION 1
#define KVBM_BLOCK_NONE            4294967295

typedef uint64_t (*kvbm_next_use_fn)(void *ctx, uint64_t seq_hash);

typedef struct kvbm_policy_config {
    uint32_t struct_size;
    uint32_t version;
    uint8_t multi_lru_thresholds[3];
    uint32_t sketch_width;
    kvbm_next_use_fn next_use;
    void *next_use_ctx;
} kvbm_policy_config_t;

/* Opaque here: the binding passes tables kvbm gives it, never fills one. */
typedef struct kvbm_policy_ops kvbm_policy_ops_t;

const kvbm_policy_ops_t *kvbm_policy_lru(void);
const kvbm_policy_ops_t *kvbm_policy_multi_lru(void);
const kvbm_policy_ops_t *kvbm_policy_multi_lru_follow(void);
const kvbm_policy_ops_t *kvbm_policy_lineage(void);
const kvbm_policy_ops_t *kvbm_policy_s3fifo(void);
const kvbm_policy_ops_t *kvbm_policy_priority(void);
const kvbm_policy_ops_t *kvbm_policy_slru(void);
const kvbm_policy_ops_t *kvbm_policy_adaptive(void);
const kvbm_policy_ops_t *kvbm_policy_belady(void);
const kvbm_policy_ops_t *kvbm_policy_find(const char *name);
const char *const *kvbm_policy_names(void);

/* --------------------------------------------------------------- metrics.h */
typedef struct kvbm_manager_metrics {
    uint64_t allocations;
    uint64_t allocations_from_reset;
    uint64_t evictions;
    uint64_t allocation_failures;
    uint64_t registrations;
    uint64_t duplicates;
    uint64_t dedups;
    uint64_t match_hashes;
    uint64_t match_blocks;
    uint64_t scan_hashes;
    uint64_t scan_blocks;
    uint64_t releases;
    uint64_t reset_blocks;
    uint64_t active_blocks;
    uint64_t inactive_blocks;
} kvbm_manager_metrics_t;

/* --------------------------------------------------------------- manager.h */
#define KVBM_MANAGER_CONFIG_VERSION 2
#define KVBM_MANAGER_MAX_BLOCKS     2147483647

typedef struct kvbm_manager kvbm_manager_t;

typedef enum kvbm_duplication {
    KVBM_DUPLICATION_ALLOW = 0,
    KVBM_DUPLICATION_REJECT = 1
} kvbm_duplication_t;

/* ------------------------------------------------------------ event_record.h */
typedef enum kvbm_event_kind {
    KVBM_EVENT_STORED = 1,
    KVBM_EVENT_REMOVED = 2,
    KVBM_EVENT_CLEARED = 3
} kvbm_event_kind_t;

typedef enum kvbm_medium {
    KVBM_MEDIUM_GPU = 0,
    KVBM_MEDIUM_CPU = 1,
    KVBM_MEDIUM_DISK = 2
} kvbm_medium_t;

typedef struct kvbm_event_record {
    kvbm_event_kind_t kind;
    kvbm_medium_t medium;
    size_t count;
    const uint64_t *hashes;
    const uint32_t *blocks;
    uint64_t parent_hash;
    bool has_parent;
    bool has_lora_id;
    uint32_t block_size;
    size_t n_tokens;
    const uint32_t *tokens;
    int64_t lora_id;
    const char *lora_name;
} kvbm_event_record_t;

typedef void (*kvbm_event_record_fn)(void *ctx, const kvbm_event_record_t *records, size_t count);

typedef struct kvbm_event_batcher kvbm_event_batcher_t;
kvbm_status_t kvbm_event_batcher_create(kvbm_event_record_fn sink, void *ctx,
                                        kvbm_event_batcher_t **batcher_out);
void kvbm_event_batcher_destroy(kvbm_event_batcher_t *batcher);
void kvbm_event_batcher_sink(void *batcher, const kvbm_event_record_t *records, size_t count);
void kvbm_event_batcher_flush(kvbm_event_batcher_t *batcher);
const char *kvbm_medium_name(kvbm_medium_t medium);

typedef struct kvbm_manager_config {
    uint32_t struct_size;
    uint32_t version;
    uint32_t num_blocks;
    kvbm_duplication_t duplication;
    const kvbm_policy_ops_t *policy;
    kvbm_policy_config_t policy_config;
    kvbm_event_record_fn on_events;
    void *events_ctx;
    const char *name;
    kvbm_medium_t medium;
} kvbm_manager_config_t;

typedef struct kvbm_evicted {
    uint64_t seq_hash;
    uint64_t parent_hash;
    uint32_t block_id;
    bool has_parent;
} kvbm_evicted_t;

typedef struct kvbm_register_opts {
    uint64_t parent_hash;
    bool has_parent;
    uint8_t priority;
    uint32_t request_blocks;
    uint32_t first_position;
    bool has_lora_id;
    uint32_t block_size;
    const uint32_t *tokens;
    size_t n_tokens;
    int64_t lora_id;
    const char *lora_name;
    bool parent_for_events_only;
} kvbm_register_opts_t;

typedef struct kvbm_request_counts {
    size_t matched;
    size_t evicted;
    size_t deduplicated;
} kvbm_request_counts_t;

typedef struct kvbm_pool_counts {
    size_t total;
    size_t reset;
    size_t active;
    size_t inactive;
} kvbm_pool_counts_t;

kvbm_status_t kvbm_manager_create(const kvbm_manager_config_t *config,
                                  kvbm_manager_t **manager_out);
void kvbm_manager_destroy(kvbm_manager_t *manager);
kvbm_status_t kvbm_manager_allocate(kvbm_manager_t *manager, size_t count, uint32_t *ids_out,
                                    kvbm_evicted_t *evicted_out, size_t *n_evicted_out);
kvbm_status_t kvbm_manager_register(kvbm_manager_t *manager, const uint32_t *ids,
                                    const uint64_t *hashes, size_t count,
                                    const kvbm_register_opts_t *opts, uint32_t *ids_out);
kvbm_status_t kvbm_manager_acquire(kvbm_manager_t *manager, const uint32_t *ids, size_t count);
kvbm_status_t kvbm_manager_release(kvbm_manager_t *manager, const uint32_t *ids, size_t count);
kvbm_status_t kvbm_manager_match(kvbm_manager_t *manager, const uint64_t *hashes, size_t count,
                                 uint32_t *ids_out, size_t *n_matched_out);
kvbm_status_t kvbm_manager_match_allocate_register(kvbm_manager_t *manager, const uint64_t *hashes,
                                                   size_t count, const kvbm_register_opts_t *opts,
                                                   uint32_t *ids_out, kvbm_evicted_t *evicted_out,
                                                   kvbm_request_counts_t *counts_out);
kvbm_status_t kvbm_manager_match_length(kvbm_manager_t *manager, const uint64_t *hashes,
                                        size_t count, size_t *n_matched_out,
                                        size_t *n_inactive_out);
kvbm_status_t kvbm_manager_scan(kvbm_manager_t *manager, const uint64_t *hashes, size_t count,
                                bool touch, uint32_t *ids_out, size_t *n_found_out);
kvbm_status_t kvbm_manager_invalidate(kvbm_manager_t *manager, const uint32_t *ids, size_t count);
bool kvbm_manager_contains(kvbm_manager_t *manager, uint64_t hash);
kvbm_status_t kvbm_manager_reset_inactive(kvbm_manager_t *manager);
void kvbm_manager_counts(kvbm_manager_t *manager, kvbm_pool_counts_t *counts_out);
void kvbm_manager_metrics(kvbm_manager_t *manager, kvbm_manager_metrics_t *metrics_out);
kvbm_status_t kvbm_manager_metrics_prometheus(kvbm_manager_t *manager, FILE *out);
kvbm_status_t kvbm_manager_metrics_json(kvbm_manager_t *manager, FILE *out);
const char *kvbm_manager_policy_name(const kvbm_manager_t *manager);
kvbm_status_t kvbm_manager_announce(kvbm_manager_t *manager);
kvbm_status_t kvbm_manager_registered_hashes(kvbm_manager_t *manager, uint64_t *hashes_out,
                                             size_t capacity, size_t *n_hashes_out);

/* ---------------------------------------------------------------- layout.h */
#define KVBM_LAYOUT_CONFIG_VERSION 1

typedef enum kvbm_layout_kind {
    KVBM_LAYOUT_FULLY_CONTIGUOUS = 0,
    KVBM_LAYOUT_LAYER_SEPARATE = 1
} kvbm_layout_kind_t;

typedef struct kvbm_layout_config {
    uint32_t struct_size;
    uint32_t version;
    kvbm_layout_kind_t kind;
    uint32_t num_blocks;
    uint32_t num_layers;
    uint32_t outer_dim;
    uint32_t tokens_per_block;
    uint32_t inner_dim;
    uint32_t elem_size;
    size_t alignment;
    bool outer_contiguous;
} kvbm_layout_config_t;

typedef struct kvbm_region {
    size_t offset;
    size_t bytes;
} kvbm_region_t;

typedef struct kvbm_layout kvbm_layout_t;

kvbm_status_t kvbm_layout_create(const kvbm_layout_config_t *config, kvbm_layout_t **layout_out);
void kvbm_layout_destroy(kvbm_layout_t *layout);
const kvbm_layout_config_t *kvbm_layout_config(const kvbm_layout_t *layout);
size_t kvbm_layout_total_bytes(const kvbm_layout_t *layout);
size_t kvbm_layout_chunk_bytes(const kvbm_layout_t *layout);
size_t kvbm_layout_block_bytes(const kvbm_layout_t *layout);
size_t kvbm_layout_regions_per_block(const kvbm_layout_t *layout);
kvbm_status_t kvbm_layout_offset(const kvbm_layout_t *layout, uint32_t block, uint32_t layer,
                                 uint32_t outer, size_t *offset_out);
kvbm_status_t kvbm_layout_address(const kvbm_layout_t *layout, void *base, uint32_t block,
                                  uint32_t layer, uint32_t outer, void **addr_out);
kvbm_status_t kvbm_layout_block_regions(const kvbm_layout_t *layout, uint32_t block,
                                        kvbm_region_t *regions, size_t capacity, size_t *count_out);
kvbm_status_t kvbm_layout_compatible(const kvbm_layout_t *a, const kvbm_layout_t *b);

/* --------------------------------------------------------------- backend.h */
#define KVBM_BACKEND_CONFIG_VERSION 2

typedef enum kvbm_backend_kind {
    KVBM_BACKEND_AUTO = 0,
    KVBM_BACKEND_CPU = 1,
    KVBM_BACKEND_CUDA = 2
} kvbm_backend_kind_t;

typedef enum kvbm_mem_kind { KVBM_MEM_DEVICE = 0, KVBM_MEM_HOST = 1 } kvbm_mem_kind_t;

typedef enum kvbm_copy_dir {
    KVBM_COPY_D2H = 0,
    KVBM_COPY_H2D = 1,
    KVBM_COPY_D2D = 2,
    KVBM_COPY_H2H = 3
} kvbm_copy_dir_t;

typedef enum kvbm_pinned_method {
    KVBM_PINNED_DEFAULT = 0,
    KVBM_PINNED_HOST_ALLOC = 1,
    KVBM_PINNED_REGISTER = 2
} kvbm_pinned_method_t;

typedef enum kvbm_copy_method {
    KVBM_COPY_METHOD_AUTO = 0,
    KVBM_COPY_METHOD_BATCH = 1,
    KVBM_COPY_METHOD_KERNEL = 2,
    KVBM_COPY_METHOD_PER_REGION = 3
} kvbm_copy_method_t;

typedef struct kvbm_backend_config {
    uint32_t struct_size;
    uint32_t version;
    kvbm_backend_kind_t kind;
    int device;
    bool synchronous;
    uint64_t fail_nth_copy;
    kvbm_pinned_method_t pinned_method;
    uint32_t first_touch_threads;
    bool huge_pages;
    kvbm_copy_method_t copy_method;
    size_t kernel_threshold;
    size_t pinned_chunk_bytes;
} kvbm_backend_config_t;

typedef struct kvbm_copy {
    const void *src;
    void *dst;
    size_t bytes;
} kvbm_copy_t;

typedef struct kvbm_backend kvbm_backend_t;
typedef struct kvbm_pool kvbm_pool_t;
typedef struct kvbm_stream kvbm_stream_t;
typedef struct kvbm_fence kvbm_fence_t;

kvbm_status_t kvbm_backend_create(const kvbm_backend_config_t *config,
                                  kvbm_backend_t **backend_out);
void kvbm_backend_destroy(kvbm_backend_t *backend);
const char *kvbm_backend_name(const kvbm_backend_t *backend);
kvbm_backend_kind_t kvbm_backend_kind(const kvbm_backend_t *backend);
bool kvbm_backend_cuda_built(void);
kvbm_status_t kvbm_backend_fail_nth_copy(kvbm_backend_t *backend, uint64_t n);
kvbm_status_t kvbm_pool_create(kvbm_backend_t *backend, kvbm_mem_kind_t kind, size_t bytes,
                               kvbm_pool_t **pool_out);
kvbm_status_t kvbm_pool_wrap(kvbm_backend_t *backend, kvbm_mem_kind_t kind, void *ptr, size_t bytes,
                             kvbm_pool_t **pool_out);
void kvbm_pool_destroy(kvbm_pool_t *pool);
void *kvbm_pool_ptr(const kvbm_pool_t *pool);
size_t kvbm_pool_bytes(const kvbm_pool_t *pool);
kvbm_mem_kind_t kvbm_pool_kind(const kvbm_pool_t *pool);
kvbm_status_t kvbm_stream_create(kvbm_backend_t *backend, kvbm_stream_t **stream_out);
kvbm_status_t kvbm_stream_wrap(kvbm_backend_t *backend, void *native, kvbm_stream_t **stream_out);
void kvbm_stream_destroy(kvbm_stream_t *stream);
void *kvbm_stream_native(const kvbm_stream_t *stream);
kvbm_status_t kvbm_stream_hold(kvbm_stream_t *stream, bool hold);
kvbm_status_t kvbm_stream_wait_fence(kvbm_stream_t *stream, kvbm_fence_t *fence);
kvbm_status_t kvbm_fence_create(kvbm_backend_t *backend, kvbm_fence_t **fence_out);
void kvbm_fence_destroy(kvbm_fence_t *fence);
kvbm_status_t kvbm_fence_record(kvbm_fence_t *fence, kvbm_stream_t *stream);
kvbm_status_t kvbm_fence_query(kvbm_fence_t *fence);
kvbm_status_t kvbm_fence_wait(kvbm_fence_t *fence);
kvbm_status_t kvbm_backend_copy(kvbm_backend_t *backend, kvbm_stream_t *stream,
                                const kvbm_copy_t *copies, size_t n, kvbm_copy_dir_t dir,
                                kvbm_fence_t *fence);
kvbm_status_t kvbm_backend_copy_blocks(kvbm_backend_t *backend, kvbm_stream_t *stream,
                                       const kvbm_layout_t *layout, kvbm_pool_t *src_pool,
                                       const uint32_t *src_ids, kvbm_pool_t *dst_pool,
                                       const uint32_t *dst_ids, size_t n, kvbm_copy_dir_t dir,
                                       kvbm_fence_t *fence);
kvbm_status_t kvbm_backend_copy_blocks_between(kvbm_backend_t *backend, kvbm_stream_t *stream,
                                               const kvbm_layout_t *src_layout,
                                               kvbm_pool_t *src_pool, const uint32_t *src_ids,
                                               const kvbm_layout_t *dst_layout,
                                               kvbm_pool_t *dst_pool, const uint32_t *dst_ids,
                                               size_t n, kvbm_copy_dir_t dir, kvbm_fence_t *fence);

/* ------------------------------------------------------------------ disk.h */
#define KVBM_DISK_CONFIG_VERSION 1

typedef enum kvbm_disk_io_kind {
    KVBM_DISK_IO_AUTO = 0,
    KVBM_DISK_IO_URING = 1,
    KVBM_DISK_IO_THREADS = 2
} kvbm_disk_io_kind_t;

typedef enum kvbm_disk_durability {
    KVBM_DISK_DURABLE_PROCESS = 0,
    KVBM_DISK_DURABLE_POWER = 1
} kvbm_disk_durability_t;

typedef struct kvbm_disk_config {
    uint32_t struct_size;
    uint32_t version;
    const char *path;
    uint32_t capacity_blocks;
    uint64_t capacity_bytes;
    uint64_t min_free_bytes;
    const char *model_id;
    uint32_t tp_rank;
    uint32_t tp_size;
    kvbm_disk_io_kind_t io;
    bool direct;
    uint32_t queue_depth;
    uint32_t io_threads;
    kvbm_disk_durability_t durability;
    bool preallocate;
    uint32_t staging_blocks;
    const kvbm_policy_ops_t *policy;
} kvbm_disk_config_t;

typedef struct kvbm_disk_metrics {
    uint64_t stores;
    uint64_t store_bytes;
    uint64_t stores_failed;
    uint64_t stores_skipped_space;
    uint64_t loads;
    uint64_t load_bytes;
    uint64_t loads_failed;
    uint64_t loads_corrupt;
    uint64_t recovered;
    uint64_t queue_depth;
} kvbm_disk_metrics_t;

/* ----------------------------------------------------------------- cache.h */
#define KVBM_CACHE_CONFIG_VERSION 4

typedef struct kvbm_cache kvbm_cache_t;

typedef enum kvbm_offload_mode {
    KVBM_OFFLOAD_WRITE_BACK = 0,
    KVBM_OFFLOAD_WRITE_THROUGH = 1
} kvbm_offload_mode_t;

typedef enum kvbm_tier { KVBM_TIER_G1 = 1, KVBM_TIER_G2 = 2, KVBM_TIER_G3 = 3 } kvbm_tier_t;

typedef struct kvbm_cache_config {
    uint32_t struct_size;
    uint32_t version;
    kvbm_backend_t *backend;
    kvbm_layout_config_t layout;
    uint32_t g2_blocks;
    const kvbm_policy_ops_t *g1_policy;
    const kvbm_policy_ops_t *g2_policy;
    kvbm_policy_config_t policy_config;
    kvbm_offload_mode_t offload_mode;
    kvbm_stream_t *engine_stream;
    void *retired_on_events;
    void *retired_events_ctx;
    void *g1_memory;
    size_t g1_memory_bytes;
    const kvbm_disk_config_t *g3;
    bool offload_admission;
    double admission_keep_ratio;
    kvbm_event_batcher_t *events_batcher;
} kvbm_cache_config_t;

typedef struct kvbm_cache_metrics {
    uint64_t offloads;
    uint64_t offload_bytes;
    uint64_t offload_skipped;
    uint64_t offload_refused;
    uint64_t onboards;
    uint64_t onboard_bytes;
    uint64_t g2_hits;
    uint64_t failed_copies;
    uint64_t copy_batches;
    uint64_t copies_in_flight;
    uint64_t g3_offloads;
    uint64_t g3_offload_bytes;
    uint64_t g3_offload_skipped;
    uint64_t g3_hits;
    uint64_t g3_hits_from_file;
    uint64_t g3_onboards;
    uint64_t g3_onboard_bytes;
    uint64_t g3_failed_loads;
} kvbm_cache_metrics_t;

typedef struct kvbm_cache_match_result {
    size_t g1;
    size_t onboarded;
    size_t g3;
} kvbm_cache_match_result_t;

kvbm_status_t kvbm_cache_create(const kvbm_cache_config_t *config, kvbm_cache_t **cache_out);
void kvbm_cache_destroy(kvbm_cache_t *cache);
kvbm_status_t kvbm_cache_allocate(kvbm_cache_t *cache, size_t count, uint32_t *ids_out,
                                  kvbm_fence_t *ready);
kvbm_status_t kvbm_cache_match(kvbm_cache_t *cache, const uint64_t *hashes, size_t count,
                               uint32_t *ids_out, kvbm_cache_match_result_t *result_out,
                               kvbm_fence_t *ready);
kvbm_status_t kvbm_cache_acquire(kvbm_cache_t *cache, const uint64_t *hashes, size_t count,
                                 uint32_t *ids_out, kvbm_cache_match_result_t *result_out,
                                 kvbm_fence_t *ready);
kvbm_status_t kvbm_cache_register(kvbm_cache_t *cache, const uint32_t *ids, const uint64_t *hashes,
                                  size_t count, const kvbm_register_opts_t *opts,
                                  uint32_t *ids_out);
kvbm_status_t kvbm_cache_release(kvbm_cache_t *cache, const uint32_t *ids, size_t count);
kvbm_status_t kvbm_cache_scan(kvbm_cache_t *cache, const uint64_t *hashes, size_t count, bool touch,
                              uint32_t *ids_out, size_t *n_found_out);
kvbm_status_t kvbm_cache_check(kvbm_cache_t *cache, const uint32_t *ids, size_t count);
kvbm_status_t kvbm_cache_progress(kvbm_cache_t *cache);
kvbm_status_t kvbm_cache_sync(kvbm_cache_t *cache);
kvbm_status_t kvbm_cache_block_address(kvbm_cache_t *cache, uint32_t id, uint32_t layer,
                                       uint32_t outer, void **addr_out);
kvbm_pool_t *kvbm_cache_pool(kvbm_cache_t *cache, kvbm_tier_t tier);
const kvbm_layout_t *kvbm_cache_layout(kvbm_cache_t *cache, kvbm_tier_t tier);
kvbm_manager_t *kvbm_cache_manager(kvbm_cache_t *cache, kvbm_tier_t tier);
void kvbm_cache_metrics(kvbm_cache_t *cache, kvbm_cache_metrics_t *metrics_out);
kvbm_status_t kvbm_cache_disk_metrics(kvbm_cache_t *cache, kvbm_disk_metrics_t *metrics_out);
const char *kvbm_cache_g3_engine(const kvbm_cache_t *cache);
kvbm_status_t kvbm_cache_metrics_prometheus(kvbm_cache_t *cache, FILE *out);
kvbm_status_t kvbm_cache_clear(kvbm_cache_t *cache);
kvbm_status_t kvbm_cache_announce(kvbm_cache_t *cache);

/* ------------------------------------------------------------- admission.h */
#define KVBM_ADMISSION_CONFIG_VERSION 1

typedef struct kvbm_admission kvbm_admission_t;

typedef struct kvbm_admission_config {
    uint32_t struct_size;
    uint32_t version;
    uint32_t g1_blocks;
    uint32_t g2_blocks;
    double keep_ratio;
    uint32_t min_samples;
} kvbm_admission_config_t;

kvbm_status_t kvbm_admission_create(const kvbm_admission_config_t *config,
                                    kvbm_admission_t **admission_out);
void kvbm_admission_destroy(kvbm_admission_t *admission);
kvbm_status_t kvbm_admission_hit(kvbm_admission_t *admission, uint32_t g1_id);
kvbm_status_t kvbm_admission_registered(kvbm_admission_t *admission, uint32_t g1_id, uint64_t hash,
                                        uint32_t request_blocks, uint32_t position);
kvbm_status_t kvbm_admission_evicted(kvbm_admission_t *admission, uint32_t g1_id, uint64_t hash,
                                     bool in_g2, bool *offload_out);
kvbm_status_t kvbm_admission_refused(const kvbm_admission_t *admission, uint64_t *refused_out);

/* ---------------------------------------------------------------- events.h */
#define KVBM_PUBLISHER_CONFIG_VERSION       1
#define KVBM_PUBLISHER_DEFAULT_BUFFER_STEPS 10000
#define KVBM_PUBLISHER_DEFAULT_HWM          100000
#define KVBM_PUBLISHER_DEFAULT_QUEUE_DEPTH  100000

typedef struct kvbm_publisher kvbm_publisher_t;

typedef struct kvbm_publisher_config {
    uint32_t struct_size;
    uint32_t version;
    const char *endpoint;
    const char *replay_endpoint;
    const char *topic;
    uint32_t buffer_steps;
    int hwm;
    uint32_t queue_depth;
    int32_t data_parallel_rank;
    bool offset_ports_by_rank;
    int linger_ms;
    uint32_t max_delay_ms;
} kvbm_publisher_config_t;

typedef struct kvbm_publisher_metrics {
    uint64_t batches_published;
    uint64_t events_published;
    uint64_t batches_dropped;
    uint64_t events_dropped;
    uint64_t resyncs;
    uint64_t send_errors;
    uint64_t replay_requests;
    uint64_t replay_batches;
    uint64_t replay_invalid;
    uint64_t history_lost;
    uint64_t queued_batches;
    uint64_t next_seq;
} kvbm_publisher_metrics_t;

kvbm_status_t kvbm_publisher_create(const kvbm_publisher_config_t *config,
                                    kvbm_publisher_t **publisher_out);
void kvbm_publisher_destroy(kvbm_publisher_t *publisher);
kvbm_status_t kvbm_publisher_publish(kvbm_publisher_t *publisher,
                                     const kvbm_event_record_t *records, size_t count);
void kvbm_publisher_sink(void *publisher, const kvbm_event_record_t *records, size_t count);
kvbm_status_t kvbm_publisher_batcher_create(kvbm_publisher_t *publisher,
                                            kvbm_event_batcher_t **batcher_out);
kvbm_status_t kvbm_publisher_flush(kvbm_publisher_t *publisher, uint32_t timeout_ms);
bool kvbm_publisher_resync_needed(const kvbm_publisher_t *publisher);
void kvbm_publisher_metrics(kvbm_publisher_t *publisher, kvbm_publisher_metrics_t *metrics_out);
kvbm_status_t kvbm_publisher_metrics_prometheus(kvbm_publisher_t *publisher, FILE *out);
const char *kvbm_publisher_endpoint(const kvbm_publisher_t *publisher);
const char *kvbm_publisher_replay_endpoint(const kvbm_publisher_t *publisher);
