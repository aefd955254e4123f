/*
 * multi-lru: frequency-tiered LRU, after the multi-level LRU of NVIDIA
 * Dynamo's kvbm-logical. A TinyLFU count-min sketch (freq_sketch.h) counts
 * accesses per sequence hash; an inactive block sits in one of four LRU levels
 * chosen by its estimated count against three thresholds (default 3, 8, 15).
 * Victims come from the front of the coldest non-empty level.
 *
 * What counts as an access: touch only. The manager touches a block when it
 * is registered, matched, or hit by a touching scan; release (insert) is the
 * end of a use already counted, so counting it too would double every use.
 *
 * A block's level is fixed when it enters the pool and refreshed when it is
 * touched while inactive; it is not revisited when the sketch ages, so a
 * block that sat untouched through a halving keeps its level until its next
 * touch or eviction (levels only order victims; they never lose a block).
 *
 * multi-lru-follow is the same policy with levels that follow the sketch
 * down as well as up: before each eviction, the oldest block of every upper
 * level is re-estimated, and while the sketch's aging has taken it below its
 * level's threshold it moves to the front (the oldest end) of the level its
 * count now gives. Only heads are checked, so the cost stays O(1) amortised
 * (a block is demoted at most three times per insert); the heads are the
 * blocks that waited longest since their last use, so they are the ones a
 * halving has most likely made stale. With the faithful policy a block that
 * was hot once holds an upper level until every lower level is empty, which
 * is what makes it lose to LRU on traces whose reuse moves on.
 */
#include <stdlib.h>

#include "batch_loops.h"
#include "core/alloc.h"
#include "core/error.h"
#include "block_list.h"
#include "freq_sketch.h"
#include "kvbm/policy.h"
#include "multi_lru.h"

#define MULTI_LRU_LEVELS 4
/* level_of holds the level + 1; 0 (calloc) = not in the policy, so creating
 * the policy touches none of its pages. */
#define LEVEL_NONE 0u

typedef struct multi_lru_policy {
    kvbm__block_links_t links;                   /* shared by all levels */
    kvbm__block_list_t levels[MULTI_LRU_LEVELS]; /* front = least recent */
    uint8_t *level_of;                           /* capacity; level + 1, LEVEL_NONE when absent */
    uint64_t *hash;                              /* capacity; for re-estimating */
    kvbm__freq_sketch_t sketch;
    uint8_t thresholds[MULTI_LRU_LEVELS - 1];
    bool follow; /* multi-lru-follow: stale heads are demoted before a pop */
    size_t size;
} multi_lru_policy_t;

static void multi_lru_destroy(void *state)
{
    multi_lru_policy_t *p = state;
    if (p == NULL)
        return;
    kvbm__freq_sketch_fini(&p->sketch);
    kvbm__free(p->level_of);
    kvbm__free(p->hash);
    kvbm__free(p->links.at);
    kvbm__free(p);
}

static kvbm_status_t create_levels(const kvbm_policy_config_t *config, uint32_t capacity,
                                   bool follow, void **state_out)
{
    const uint8_t *t = config->multi_lru_thresholds;
    if (t[0] > t[1] || t[1] > t[2])
        return kvbm__fail(KVBM_ERR_INVALID_ARG, "policy multi-lru: thresholds %u, %u, %u decrease",
                          t[0], t[1], t[2]);
    uint32_t width = config->sketch_width != 0 ? config->sketch_width : capacity;
    if (width > KVBM__FREQ_SKETCH_MAX_WIDTH)
        return kvbm__fail(KVBM_ERR_INVALID_ARG, "policy multi-lru: sketch width %u is above %u",
                          width, (unsigned)KVBM__FREQ_SKETCH_MAX_WIDTH);

    kvbm_status_t status = KVBM_ERR_NO_MEMORY;
    multi_lru_policy_t *p = kvbm__calloc(1, sizeof(*p));
    if (p == NULL)
        return KVBM_ERR_NO_MEMORY;
    size_t n = capacity != 0 ? capacity : 1;
    p->links.at = kvbm__alloc(n, sizeof(kvbm__block_link_t));
    p->level_of = kvbm__calloc(n, 1);
    p->hash = kvbm__alloc(n, sizeof(uint64_t));
    if (p->links.at == NULL || p->level_of == NULL || p->hash == NULL)
        goto err_destroy;
    status = kvbm__freq_sketch_init(&p->sketch, width);
    if (status != KVBM_OK)
        goto err_destroy;
    for (int l = 0; l < MULTI_LRU_LEVELS; l++)
        kvbm__block_list_init(&p->levels[l]);
    for (int l = 0; l < MULTI_LRU_LEVELS - 1; l++)
        p->thresholds[l] = t[l];
    p->follow = follow;
    *state_out = p;
    return KVBM_OK;

err_destroy:
    /* destroy frees whatever was allocated; the rest is NULL or zeroed. */
    multi_lru_destroy(p);
    return status;
}

kvbm__freq_sketch_t *kvbm__multi_lru_sketch(void *state)
{
    multi_lru_policy_t *p = state;
    return &p->sketch;
}

static kvbm_status_t multi_lru_create(const kvbm_policy_config_t *config, uint32_t capacity,
                                      void **state_out)
{
    return create_levels(config, capacity, false, state_out);
}

static kvbm_status_t multi_lru_follow_create(const kvbm_policy_config_t *config, uint32_t capacity,
                                             void **state_out)
{
    return create_levels(config, capacity, true, state_out);
}

static uint8_t level_for(const multi_lru_policy_t *p, uint64_t seq_hash)
{
    uint32_t count = kvbm__freq_sketch_estimate(&p->sketch, seq_hash);
    uint8_t level = 0;
    while (level < MULTI_LRU_LEVELS - 1 && count >= p->thresholds[level])
        level++;
    return level;
}

static void multi_lru_insert(void *state, const kvbm_policy_entry_t *entry)
{
    multi_lru_policy_t *p = state;
    uint32_t id = entry->block_id;
    assert(p->level_of[id] == LEVEL_NONE);
    uint8_t level = level_for(p, entry->seq_hash);
    kvbm__block_list_push_back(&p->levels[level], &p->links, id);
    p->level_of[id] = (uint8_t)(level + 1);
    p->hash[id] = entry->seq_hash;
    p->size++;
}

static void multi_lru_remove(void *state, uint32_t block_id)
{
    multi_lru_policy_t *p = state;
    assert(p->level_of[block_id] != LEVEL_NONE);
    uint8_t level = (uint8_t)(p->level_of[block_id] - 1);
    kvbm__block_list_unlink(&p->levels[level], &p->links, block_id);
    p->level_of[block_id] = LEVEL_NONE;
    p->size--;
}

/* multi-lru-follow: moves the head of each upper level down while its count
 * has aged below its level. */
static void demote_stale_heads(multi_lru_policy_t *p)
{
    for (uint8_t l = 1; l < MULTI_LRU_LEVELS; l++) {
        while (p->levels[l].head != KVBM_BLOCK_NONE) {
            uint32_t id = p->levels[l].head;
            uint8_t level = level_for(p, p->hash[id]);
            if (level >= l)
                break;
            kvbm__block_list_unlink(&p->levels[l], &p->links, id);
            kvbm__block_list_push_front(&p->levels[level], &p->links, id);
            p->level_of[id] = (uint8_t)(level + 1);
        }
    }
}

static bool multi_lru_pop_victim(void *state, uint32_t *block_id_out)
{
    multi_lru_policy_t *p = state;
    if (p->follow)
        demote_stale_heads(p);
    for (int l = 0; l < MULTI_LRU_LEVELS; l++) {
        uint32_t id;
        if (kvbm__block_list_pop_front(&p->levels[l], &p->links, &id)) {
            p->level_of[id] = LEVEL_NONE;
            p->size--;
            *block_id_out = id;
            return true;
        }
    }
    return false;
}

static void multi_lru_touch(void *state, const kvbm_policy_entry_t *entry, bool inactive)
{
    multi_lru_policy_t *p = state;
    kvbm__freq_sketch_increment(&p->sketch, entry->seq_hash);
    if (!inactive)
        return;
    /* A touch of an inactive block is a fresh use: back of its (new) level. */
    uint32_t id = entry->block_id;
    assert(p->level_of[id] != LEVEL_NONE);
    kvbm__block_list_unlink(&p->levels[p->level_of[id] - 1], &p->links, id);
    uint8_t level = level_for(p, entry->seq_hash);
    kvbm__block_list_push_back(&p->levels[level], &p->links, id);
    p->level_of[id] = (uint8_t)(level + 1);
}

static size_t multi_lru_size(const void *state)
{
    const multi_lru_policy_t *p = state;
    return p->size;
}

KVBM__POLICY_BATCH_LOOPS(multi_lru)

static const kvbm_policy_ops_t multi_lru_ops = {
    .version = KVBM_POLICY_OPS_VERSION,
    .name = "multi-lru",
    .create = multi_lru_create,
    .destroy = multi_lru_destroy,
    .insert = multi_lru_insert,
    .remove = multi_lru_remove,
    .pop_victim = multi_lru_pop_victim,
    .touch = multi_lru_touch,
    .size = multi_lru_size,
    KVBM__POLICY_BATCH_SLOTS(multi_lru),
    .hint = kvbm_policy_ignore_hint,
};

const kvbm_policy_ops_t *kvbm_policy_multi_lru(void)
{
    return &multi_lru_ops;
}

static const kvbm_policy_ops_t multi_lru_follow_ops = {
    .version = KVBM_POLICY_OPS_VERSION,
    .name = "multi-lru-follow",
    .create = multi_lru_follow_create,
    .destroy = multi_lru_destroy,
    .insert = multi_lru_insert,
    .remove = multi_lru_remove,
    .pop_victim = multi_lru_pop_victim,
    .touch = multi_lru_touch,
    .size = multi_lru_size,
    .hint = kvbm_policy_ignore_hint,
    KVBM__POLICY_BATCH_SLOTS(multi_lru),
};

const kvbm_policy_ops_t *kvbm_policy_multi_lru_follow(void)
{
    return &multi_lru_follow_ops;
}
