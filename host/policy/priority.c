/*
 * priority: the block with the lowest retention priority (0..100, given at
 * registration and carried in the policy entry) is evicted first; blocks of
 * equal priority go in LRU order, and a touch of an inactive block moves it
 * to the back of its priority's list.
 *
 * 101 intrusive lists share one pair of link arrays, and a 128-bit bitmap
 * marks the non-empty ones, so pop finds the lowest non-empty priority with
 * two count-trailing-zeros: every operation is O(1).
 */
#include <stdlib.h>

#include "batch_loops.h"
#include "core/alloc.h"
#include "block_list.h"
#include "kvbm/policy.h"

#define PRIORITY_LEVELS 101
/* priority_of holds the priority + 1; 0 (calloc) = not in the policy, so
 * creating the policy touches none of its pages. */
#define PRIORITY_NONE 0u

typedef struct priority_policy {
    kvbm__block_links_t links;
    kvbm__block_list_t lists[PRIORITY_LEVELS]; /* front = least recent */
    uint64_t nonempty[2];                      /* bit p set iff lists[p] has blocks */
    uint8_t *priority_of; /* capacity; priority + 1, PRIORITY_NONE when absent */
    size_t size;
} priority_policy_t;

static void priority_destroy(void *state)
{
    priority_policy_t *p = state;
    if (p == NULL)
        return;
    kvbm__free(p->priority_of);
    kvbm__free(p->links.at);
    kvbm__free(p);
}

static kvbm_status_t priority_create(const kvbm_policy_config_t *config, uint32_t capacity,
                                     void **state_out)
{
    priority_policy_t *p = kvbm__calloc(1, sizeof(*p));
    if (p == NULL)
        return KVBM_ERR_NO_MEMORY;
    size_t n = capacity != 0 ? capacity : 1;
    p->links.at = kvbm__alloc(n, sizeof(kvbm__block_link_t));
    p->priority_of = kvbm__calloc(n, 1);
    if (p->links.at == NULL || p->priority_of == NULL)
        goto err_destroy;
    for (int l = 0; l < PRIORITY_LEVELS; l++)
        kvbm__block_list_init(&p->lists[l]);
    *state_out = p;
    return KVBM_OK;

err_destroy:
    priority_destroy(p);
    return KVBM_ERR_NO_MEMORY;
}

static void push(priority_policy_t *p, uint8_t prio, uint32_t id)
{
    kvbm__block_list_push_back(&p->lists[prio], &p->links, id);
    p->nonempty[prio / 64] |= 1ull << (prio % 64);
    p->priority_of[id] = (uint8_t)(prio + 1);
}

static void unlink_block(priority_policy_t *p, uint32_t id)
{
    assert(p->priority_of[id] != PRIORITY_NONE);
    uint8_t prio = (uint8_t)(p->priority_of[id] - 1);
    assert(prio < PRIORITY_LEVELS);
    kvbm__block_list_unlink(&p->lists[prio], &p->links, id);
    if (p->lists[prio].size == 0)
        p->nonempty[prio / 64] &= ~(1ull << (prio % 64));
    p->priority_of[id] = PRIORITY_NONE;
}

static void priority_insert(void *state, const kvbm_policy_entry_t *entry)
{
    priority_policy_t *p = state;
    assert(p->priority_of[entry->block_id] == PRIORITY_NONE);
    /* The manager checks the range; clamp anyway so a bad value cannot index out. */
    uint8_t prio = entry->priority < PRIORITY_LEVELS ? entry->priority : PRIORITY_LEVELS - 1;
    push(p, prio, entry->block_id);
    p->size++;
}

static void priority_remove(void *state, uint32_t block_id)
{
    priority_policy_t *p = state;
    unlink_block(p, block_id);
    p->size--;
}

static bool priority_pop_victim(void *state, uint32_t *block_id_out)
{
    priority_policy_t *p = state;
    for (int w = 0; w < 2; w++) {
        if (p->nonempty[w] == 0)
            continue;
        unsigned prio = (unsigned)(64 * w + __builtin_ctzll(p->nonempty[w]));
        uint32_t id = p->lists[prio].head;
        unlink_block(p, id);
        p->size--;
        *block_id_out = id;
        return true;
    }
    return false;
}

static void priority_touch(void *state, const kvbm_policy_entry_t *entry, bool inactive)
{
    priority_policy_t *p = state;
    if (!inactive)
        return;
    /* The priority stays the one the block was inserted with. */
    uint8_t prio = (uint8_t)(p->priority_of[entry->block_id] - 1);
    unlink_block(p, entry->block_id);
    push(p, prio, entry->block_id);
}

static size_t priority_size(const void *state)
{
    const priority_policy_t *p = state;
    return p->size;
}

KVBM__POLICY_BATCH_LOOPS(priority)

static const kvbm_policy_ops_t priority_ops = {
    .version = KVBM_POLICY_OPS_VERSION,
    .name = "priority",
    .create = priority_create,
    .destroy = priority_destroy,
    .insert = priority_insert,
    .remove = priority_remove,
    .pop_victim = priority_pop_victim,
    .touch = priority_touch,
    .size = priority_size,
    KVBM__POLICY_BATCH_SLOTS(priority),
    .hint = kvbm_policy_ignore_hint,
};

const kvbm_policy_ops_t *kvbm_policy_priority(void)
{
    return &priority_ops;
}
