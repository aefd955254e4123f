/* The disk store's lifetime, accessors and metrics; see store.h. */
#include <stdlib.h>
#include <string.h>

#include "store_internal.h"

static kvbm_status_t check_config(const kvbm__disk_store_config_t *config)
{
    if (config == NULL || config->path == NULL || config->path[0] == '\0' ||
        config->payload_bytes == 0 || (config->slots == 0 && config->file_bytes == 0) ||
        (config->durability != KVBM_DISK_DURABLE_PROCESS &&
         config->durability != KVBM_DISK_DURABLE_POWER))
        return KVBM_ERR_INVALID_ARG;
    return KVBM_OK;
}

static kvbm_status_t init_locks(kvbm__disk_store_t *store)
{
    if (pthread_mutex_init(&store->done_lock, NULL) != 0)
        return KVBM_ERR_NO_MEMORY;
    if (pthread_cond_init(&store->done_cond, NULL) != 0)
        goto err_destroy_done_lock;
    if (pthread_mutex_init(&store->fault_lock, NULL) != 0)
        goto err_destroy_done_cond;
    return KVBM_OK;

err_destroy_done_cond:
    pthread_cond_destroy(&store->done_cond);
err_destroy_done_lock:
    pthread_mutex_destroy(&store->done_lock);
    return KVBM_ERR_NO_MEMORY;
}

static void destroy_locks(kvbm__disk_store_t *store)
{
    pthread_mutex_destroy(&store->fault_lock);
    pthread_cond_destroy(&store->done_cond);
    pthread_mutex_destroy(&store->done_lock);
}

kvbm_status_t kvbm__disk_store_open(const kvbm__disk_store_config_t *config,
                                    kvbm__disk_store_t **store_out)
{
    kvbm_status_t status = check_config(config);
    if (status != KVBM_OK || store_out == NULL)
        return KVBM_ERR_INVALID_ARG;
    kvbm__disk_store_t *store = calloc(1, sizeof(*store));
    if (store == NULL)
        return KVBM_ERR_NO_MEMORY;
    store->fd = store->data_fd = -1;
    store->config = *config;
    store->path = strdup(config->path);
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
    store->slot_generation = calloc(store->geometry.slots, sizeof(uint64_t));
    if (store->slot_generation == NULL)
        goto err_close_file;
    status = kvbm__disk_rebuild(store);
    if (status != KVBM_OK)
        goto err_free_generations;
    status = kvbm__disk_engine_start(store);
    if (status != KVBM_OK)
        goto err_free_recovered;
    *store_out = store;
    return KVBM_OK;

err_free_recovered:
    free(store->recovered);
err_free_generations:
    free(store->slot_generation);
err_close_file:
    kvbm__disk_file_close(store);
err_destroy_locks:
    destroy_locks(store);
err_free_path:
    free(store->path);
err_free_store:
    free(store);
    return status;
}

void kvbm__disk_store_close(kvbm__disk_store_t *store)
{
    if (store == NULL)
        return;
    kvbm__disk_engine_stop(store);
    kvbm__disk_file_close(store);
    destroy_locks(store);
    free(store->recovered);
    free(store->slot_generation);
    free(store->path);
    free(store);
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
    pthread_mutex_lock(&store->fault_lock);
    store->fault = hook;
    store->fault_ctx = ctx;
    pthread_mutex_unlock(&store->fault_lock);
}
