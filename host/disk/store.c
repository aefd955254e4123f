/* The disk store's lifetime, accessors and metrics; see store.h. */
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/log.h"
#include "store_internal.h"

static kvbm_status_t check_config(const kvbm__disk_store_config_t *config)
{
    if (config == NULL || config->path == NULL || config->path[0] == '\0')
        return kvbm__fail(KVBM_ERR_INVALID_ARG, "g3 config: no path");
    if (config->payload_bytes == 0 || (config->slots == 0 && config->file_bytes == 0))
        return kvbm__fail(KVBM_ERR_INVALID_ARG,
                          "g3 config: needs a block size and a capacity (blocks or bytes)");
    if (config->durability != KVBM_DISK_DURABLE_PROCESS &&
        config->durability != KVBM_DISK_DURABLE_POWER)
        return kvbm__fail(KVBM_ERR_INVALID_ARG, "g3 config: unknown durability %d",
                          (int)config->durability);
    return KVBM_OK;
}

static kvbm_status_t init_locks(kvbm__disk_store_t *store)
{
    kvbm_status_t status = KVBM_OK;
    KVBM_PTHREAD_CHECK(pthread_mutex_init(&store->done_lock, NULL), status);
    if (status != KVBM_OK)
        return status;
    KVBM_PTHREAD_CHECK(pthread_cond_init(&store->done_cond, NULL), status);
    if (status != KVBM_OK)
        goto err_destroy_done_lock;
    KVBM_PTHREAD_CHECK(pthread_mutex_init(&store->fault_lock, NULL), status);
    if (status != KVBM_OK)
        goto err_destroy_done_cond;
    return KVBM_OK;

err_destroy_done_cond:
    kvbm__cond_destroy(&store->done_cond);
err_destroy_done_lock:
    kvbm__mutex_destroy(&store->done_lock);
    return status;
}

static void destroy_locks(kvbm__disk_store_t *store)
{
    kvbm__mutex_destroy(&store->fault_lock);
    kvbm__cond_destroy(&store->done_cond);
    kvbm__mutex_destroy(&store->done_lock);
}

static const char *open_kind_text(kvbm__disk_open_kind_t kind)
{
    switch (kind) {
    case KVBM__DISK_OPENED_NEW:
        return "created";
    case KVBM__DISK_OPENED_WARM:
        return "warm";
    case KVBM__DISK_OPENED_NAMESPACE:
        return "emptied (another namespace)";
    case KVBM__DISK_OPENED_GEOMETRY:
        return "emptied (another geometry)";
    default:
        return "emptied (no valid superblock)";
    }
}

/* Reports the engine chosen at run time and what the file held. */
static void log_opened(const kvbm__disk_store_t *store)
{
    kvbm__log(KVBM_LOG_INFO, "g3: %s: %s, %zu blocks recovered, %llu slots of %llu bytes, %s%s",
              store->path, open_kind_text(store->open_kind), store->n_recovered,
              (unsigned long long)store->geometry.slots,
              (unsigned long long)store->geometry.slot_bytes, store->engine_name,
              store->preallocated ? ", preallocated" : "");
}

kvbm_status_t kvbm__disk_store_open(const kvbm__disk_store_config_t *config,
                                    kvbm__disk_store_t **store_out)
{
    kvbm_status_t status = check_config(config);
    if (status != KVBM_OK)
        return status;
    KVBM_REQUIRE_ARG(store_out != NULL);
    kvbm__disk_store_t *store = kvbm__calloc(1, sizeof(*store));
    if (store == NULL)
        return KVBM_ERR_NO_MEMORY;
    store->fd = store->data_fd = -1;
    store->config = *config;
    store->path = kvbm__strdup(config->path);
    status = KVBM_ERR_NO_MEMORY;
    if (store->path == NULL)
        goto err_free_store;
    store->config.path = store->path;
    status = init_locks(store);
    if (status != KVBM_OK)
        goto err_free_path;
    status = kvbm__disk_file_open(store);
    if (status != KVBM_OK)
        goto err_destroy_locks;
    status = KVBM_ERR_NO_MEMORY;
    store->slot_generation = kvbm__calloc(store->geometry.slots, sizeof(uint64_t));
    if (store->slot_generation == NULL)
        goto err_close_file;
    status = kvbm__disk_rebuild(store);
    if (status != KVBM_OK)
        goto err_free_generations;
    status = kvbm__disk_engine_start(store);
    if (status != KVBM_OK)
        goto err_free_recovered;
    log_opened(store);
    *store_out = store;
    return KVBM_OK;

err_free_recovered:
    kvbm__free(store->recovered);
err_free_generations:
    kvbm__free(store->slot_generation);
err_close_file:
    kvbm__disk_file_close(store);
err_destroy_locks:
    destroy_locks(store);
err_free_path:
    kvbm__free(store->path);
err_free_store:
    kvbm__free(store);
    return status;
}

void kvbm__disk_store_close(kvbm__disk_store_t *store)
{
    if (store == NULL)
        return;
    kvbm__disk_engine_stop(store);
    kvbm__disk_file_close(store);
    destroy_locks(store);
    kvbm__free(store->recovered);
    kvbm__free(store->slot_generation);
    kvbm__free(store->path);
    kvbm__free(store);
}

const kvbm__disk_geometry_t *kvbm__disk_store_geometry(const kvbm__disk_store_t *store)
{
    return &store->geometry;
}

kvbm__disk_open_kind_t kvbm__disk_store_open_kind(const kvbm__disk_store_t *store)
{
    return store->open_kind;
}

const char *kvbm__disk_store_engine(const kvbm__disk_store_t *store)
{
    return store->engine_name;
}

size_t kvbm__disk_store_buffer_align(const kvbm__disk_store_t *store)
{
    (void)store;
    return KVBM__DISK_MIN_ALIGN;
}

void kvbm__disk_store_take_recovered(kvbm__disk_store_t *store, kvbm__disk_entry_t **entries_out,
                                     size_t *n_out)
{
    *entries_out = store->recovered;
    *n_out = store->n_recovered;
    store->recovered = NULL;
    store->n_recovered = 0;
}

void kvbm__disk_store_forget(kvbm__disk_store_t *store, uint32_t slot)
{
    memset(kvbm__disk_table_entry(store, slot), 0, KVBM__DISK_HEADER_BYTES);
}

void kvbm__disk_store_metrics(kvbm__disk_store_t *store, kvbm_disk_metrics_t *metrics_out)
{
    kvbm_disk_metrics_t m;
#define KVBM__DISK_READ_COUNTER(field, type, help)                                                 \
    m.field =                                                                                      \
        atomic_load_explicit(&store->counters[KVBM__DISK_COUNTER_##field], memory_order_relaxed);
    KVBM_DISK_METRICS_LIST(KVBM__DISK_READ_COUNTER)
#undef KVBM__DISK_READ_COUNTER
    m.queue_depth = store->engine->in_flight(store->engine_state);
    *metrics_out = m;
}

void kvbm__disk_store_set_fault(kvbm__disk_store_t *store, kvbm__disk_fault_fn hook, void *ctx)
{
    kvbm__mutex_lock(&store->fault_lock);
    store->fault = hook;
    store->fault_ctx = ctx;
    kvbm__mutex_unlock(&store->fault_lock);
}
