/*
 * LRU: inactive blocks are evicted in the order they became inactive, oldest
 * release first. A touching scan of an inactive block moves it to the back,
 * as a fresh use. This is the reference policy of the replay contract.
 */
#include <stdlib.h>

#include "core/alloc.h"
#include "block_list.h"
#include "kvbm/policy.h"

typedef struct lru_policy {
    kvbm__block_links_t links;
    kvbm__block_list_t order; /* front = least recently released */
    uint32_t capacity;
} lru_policy_t;

static kvbm_status_t lru_create(const kvbm_policy_config_t *config, uint32_t capacity,
                                void **state_out)
{
    lru_policy_t *lru = kvbm__calloc(1, sizeof(*lru));
    if (lru == NULL)
        goto err;
    lru->links.at = kvbm__alloc(capacity, sizeof(kvbm__block_link_t));
    if (lru->links.at == NULL)
        goto err_free_lru;
    lru->capacity = capacity;
    kvbm__block_list_init(&lru->order);
    *state_out = lru;
    return KVBM_OK;

err_free_lru:
    kvbm__free(lru);
err:
    return KVBM_ERR_NO_MEMORY;
}

static void lru_destroy(void *state)
{
    lru_policy_t *lru = state;
    if (lru == NULL)
        return;
    kvbm__free(lru->links.at);
    kvbm__free(lru);
}

static void lru_insert(void *state, const kvbm_policy_entry_t *entry)
{
    lru_policy_t *lru = state;
    kvbm__block_list_push_back(&lru->order, &lru->links, entry->block_id);
}

static void lru_remove(void *state, uint32_t block_id)
{
    lru_policy_t *lru = state;
    kvbm__block_list_unlink(&lru->order, &lru->links, block_id);
}

static bool lru_pop_victim(void *state, uint32_t *block_id_out)
{
    lru_policy_t *lru = state;
    return kvbm__block_list_pop_front(&lru->order, &lru->links, block_id_out);
}

static void lru_touch(void *state, const kvbm_policy_entry_t *entry, bool inactive)
{
    lru_policy_t *lru = state;
    if (!inactive)
        return;
    kvbm__block_list_unlink(&lru->order, &lru->links, entry->block_id);
    kvbm__block_list_push_back(&lru->order, &lru->links, entry->block_id);
}

/* The batches, as the single operations would leave the list: an acquire
 * (touch, which moves the block to the back, then remove) is one unlink, and
 * a touch of an active block does nothing (kvbm_policy_ignore_touches).
 * LRU reads nothing of an entry but its block id, so the manager hands it
 * ids (version 4); the entry batches serve older callers of the table. */
static void lru_insert_ids(void *state, const uint32_t *block_ids, size_t count)
{
    lru_policy_t *lru = state;
    /* Local copies: the compiler then knows a link store never changes the
     * list's ends, and keeps them in registers across the loop. */
    kvbm__block_list_t order = lru->order;
    kvbm__block_links_t links = lru->links;
    for (size_t i = 0; i < count; i++)
        kvbm__block_list_push_back(&order, &links, block_ids[i]);
    lru->order = order;
}

static void lru_acquire_ids(void *state, const uint32_t *block_ids, size_t count)
{
    lru_policy_t *lru = state;
    kvbm__block_list_t order = lru->order; /* in registers, as in lru_insert_ids */
    kvbm__block_links_t links = lru->links;
    for (size_t i = 0; i < count; i++)
        kvbm__block_list_unlink(&order, &links, block_ids[i]);
    lru->order = order;
}

static void lru_insert_batch(void *state, const kvbm_policy_entry_t *entries, size_t count)
{
    lru_policy_t *lru = state;
    for (size_t i = 0; i < count; i++)
        kvbm__block_list_push_back(&lru->order, &lru->links, entries[i].block_id);
}

static void lru_acquire_batch(void *state, const kvbm_policy_entry_t *entries, size_t count)
{
    lru_policy_t *lru = state;
    for (size_t i = 0; i < count; i++)
        kvbm__block_list_unlink(&lru->order, &lru->links, entries[i].block_id);
}

static size_t lru_pop_victims(void *state, uint32_t *block_ids_out, size_t count)
{
    lru_policy_t *lru = state;
    kvbm__block_list_t order = lru->order; /* in registers, as in lru_insert_ids */
    kvbm__block_links_t links = lru->links;
    size_t popped = 0;
    while (popped < count && kvbm__block_list_pop_front(&order, &links, &block_ids_out[popped]))
        popped++;
    lru->order = order;
    return popped;
}

static size_t lru_size(const void *state)
{
    const lru_policy_t *lru = state;
    return lru->order.size;
}

static const kvbm_policy_ops_t lru_ops = {
    .version = KVBM_POLICY_OPS_VERSION,
    .name = "lru",
    .create = lru_create,
    .destroy = lru_destroy,
    .insert = lru_insert,
    .remove = lru_remove,
    .pop_victim = lru_pop_victim,
    .touch = lru_touch,
    .size = lru_size,
    .insert_batch = lru_insert_batch,
    .acquire_batch = lru_acquire_batch,
    .touch_batch = kvbm_policy_ignore_touches,
    .pop_victims = lru_pop_victims,
    .insert_ids = lru_insert_ids,
    .acquire_ids = lru_acquire_ids,
    .hint = kvbm_policy_ignore_hint,
};

const kvbm_policy_ops_t *kvbm_policy_lru(void)
{
    return &lru_ops;
}
