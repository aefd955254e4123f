/*
 * slru: segmented LRU (Karedla, Love and Wherry, "Caching strategies to
 * improve disk system performance", IEEE Computer 1994) with access counts
 * kept by hash across evictions, and partial-tail blocks evicted first.
 *
 * Every block carries the number of times its hash has been used: one at its
 * registration, one more per touch of the same hash on the same block (a
 * match or scan hit, or a dedup acquire). An inactive block sits in one of
 * three LRU lists, chosen at insert and evicted in this order:
 *
 *   1. tail:      used once, and the deepest block of the run just released;
 *   2. probation: used once;
 *   3. protected: used at least twice.
 *
 * The victim is the front (oldest release) of the first non-empty list. A
 * block used twice is therefore only evicted once no block used once is left:
 * the protected segment may fill the whole pool (a 100% cap), so the policy
 * is LRU over reused blocks with a probation LRU in front of it.
 *
 * Counts survive eviction. An evicted block's hash and count go into a ghost
 * FIFO of SLRU_GHOST_FACTOR x capacity hashes; when that hash is registered
 * again its count resumes from the ghost, so the second arrival of a block
 * the pool could not keep is seen as a reuse. Without this memory a prefix
 * cache rarely sees a second use at all: its reuse distances are mostly
 * longer than the pool, so a block is usually evicted before it is used
 * again (docs/POLICIES.md gives the measurements and the sensitivity to the
 * ghost size).
 *
 * Tail: the manager releases a sequence last block first, so the first of a
 * run of inserts where each block is the parent of the one inserted before
 * it is the sequence's deepest block. That block is usually a partial block
 * whose tokens a longer continuation of the same prompt would not share (a
 * different hash), so it is rarely reused. A once-used tail goes to the tail
 * list; any other policy call ends the run. If blocks are released in some
 * other order, more blocks count as tails; that only changes the order among
 * once-used blocks.
 *
 * Cost: insert, remove and pop O(1); touch O(1) expected (one ghost lookup on
 * registration). Memory: per block 8 + 8 + 8 + 3 bytes; the ghost holds at
 * most 4 x capacity hashes in a ring (8 bytes each) and a map sized for them.
 * Nothing is allocated after create.
 */
#include <stdlib.h>

#include "batch_loops.h"
#include "core/alloc.h"
#include "block_list.h"
#include "kvbm/policy.h"
#include "ghost.h"

enum { SEG_NONE = 0, SEG_TAIL = 1, SEG_PROBATION = 2, SEG_PROTECTED = 3 };
#define SEG_COUNT 3 /* lists: tail, probation, protected */

/* Ghost size in multiples of the capacity. See the header comment. */
#define SLRU_GHOST_FACTOR 4u
#define COUNT_MAX         255u

typedef struct slru_policy {
    kvbm__block_links_t links;
    kvbm__block_list_t lists[SEG_COUNT]; /* indexed by SEG_* - 1; front = oldest */
    uint8_t *seg;                        /* capacity; SEG_* */
    uint8_t *count;                      /* capacity; uses of hash[] so far, saturating */
    uint8_t *known;                      /* capacity; 1 when hash[] holds the block's hash */
    uint64_t *hash;                      /* capacity */
    /* The current run of inserts: the parent of the block inserted last. */
    bool run_open;
    bool run_has_parent;
    uint64_t run_parent;
    /* Evicted hashes with their counts, taken back on registration. */
    kvbm__ghost_t ghost;
} slru_policy_t;

static void slru_destroy(void *state)
{
    slru_policy_t *p = state;
    if (p == NULL)
        return;
    kvbm__ghost_fini(&p->ghost);
    kvbm__free(p->hash);
    kvbm__free(p->known);
    kvbm__free(p->count);
    kvbm__free(p->seg);
    kvbm__free(p->links.at);
    kvbm__free(p);
}

static kvbm_status_t slru_create(const kvbm_policy_config_t *config, uint32_t capacity,
                                 void **state_out)
{
    (void)config;
    kvbm_status_t status = KVBM_ERR_NO_MEMORY;
    slru_policy_t *p = kvbm__calloc(1, sizeof(*p));
    if (p == NULL)
        return KVBM_ERR_NO_MEMORY;
    size_t n = capacity != 0 ? capacity : 1;
    p->links.at = kvbm__alloc(n, sizeof(kvbm__block_link_t));
    p->seg = kvbm__calloc(n, 1);
    p->count = kvbm__calloc(n, 1);
    p->known = kvbm__calloc(n, 1);
    p->hash = kvbm__alloc(n, sizeof(uint64_t));
    if (p->links.at == NULL || p->seg == NULL || p->count == NULL || p->known == NULL ||
        p->hash == NULL)
        goto err_destroy;
    status = kvbm__ghost_init(&p->ghost, n * SLRU_GHOST_FACTOR);
    if (status != KVBM_OK)
        goto err_destroy;
    for (int i = 0; i < SEG_COUNT; i++)
        kvbm__block_list_init(&p->lists[i]);
    *state_out = p;
    return KVBM_OK;

err_destroy:
    slru_destroy(p);
    return status;
}

/* Whether block @p id already holds @p hash; if not, it takes it, with the
 * count its hash had when it was last evicted plus this first use. */
static bool identify(slru_policy_t *p, uint32_t id, uint64_t hash)
{
    if (p->known[id] && p->hash[id] == hash)
        return true;
    uint8_t remembered = 0;
    kvbm__ghost_take(&p->ghost, hash, &remembered);
    p->known[id] = 1;
    p->hash[id] = hash;
    p->count[id] = remembered < COUNT_MAX ? (uint8_t)(remembered + 1) : (uint8_t)COUNT_MAX;
    return false;
}

static kvbm__block_list_t *list_of(slru_policy_t *p, uint8_t seg)
{
    assert(seg != SEG_NONE);
    return &p->lists[seg - 1];
}

static void slru_insert(void *state, const kvbm_policy_entry_t *entry)
{
    slru_policy_t *p = state;
    uint32_t id = entry->block_id;
    assert(p->seg[id] == SEG_NONE);
    identify(p, id, entry->seq_hash);
    bool continues_run = p->run_open && p->run_has_parent && p->run_parent == entry->seq_hash;
    uint8_t seg = p->count[id] >= 2 ? SEG_PROTECTED : continues_run ? SEG_PROBATION : SEG_TAIL;
    kvbm__block_list_push_back(list_of(p, seg), &p->links, id);
    p->seg[id] = seg;
    p->run_open = true;
    p->run_has_parent = entry->has_parent;
    p->run_parent = entry->parent_hash;
}

static void slru_remove(void *state, uint32_t block_id)
{
    slru_policy_t *p = state;
    assert(p->seg[block_id] != SEG_NONE);
    kvbm__block_list_unlink(list_of(p, p->seg[block_id]), &p->links, block_id);
    p->seg[block_id] = SEG_NONE;
    p->run_open = false;
    /* The count and hash stay: the block is in use and comes back on release. */
}

static bool slru_pop_victim(void *state, uint32_t *block_id_out)
{
    slru_policy_t *p = state;
    p->run_open = false;
    for (int i = 0; i < SEG_COUNT; i++) {
        uint32_t id;
        if (kvbm__block_list_pop_front(&p->lists[i], &p->links, &id)) {
            assert(p->known[id]);
            kvbm__ghost_add(&p->ghost, p->hash[id], p->count[id]);
            p->seg[id] = SEG_NONE;
            p->known[id] = 0; /* the block loses its hash */
            p->count[id] = 0;
            *block_id_out = id;
            return true;
        }
    }
    return false;
}

static void slru_touch(void *state, const kvbm_policy_entry_t *entry, bool inactive)
{
    slru_policy_t *p = state;
    uint32_t id = entry->block_id;
    p->run_open = false;
    /* A hash new to this block is its registration: identify counts that use.
     * Otherwise this is another use of the same block. */
    if (identify(p, id, entry->seq_hash) && p->count[id] < COUNT_MAX)
        p->count[id]++;
    /* The manager removes an inactive block right after touching it; a touch
     * that leaves it in the pool refreshes it, into protected once reused. */
    if (inactive && p->seg[id] != SEG_NONE) {
        uint8_t seg = p->count[id] >= 2 ? SEG_PROTECTED : p->seg[id];
        kvbm__block_list_unlink(list_of(p, p->seg[id]), &p->links, id);
        kvbm__block_list_push_back(list_of(p, seg), &p->links, id);
        p->seg[id] = seg;
    }
}

static size_t slru_size(const void *state)
{
    const slru_policy_t *p = state;
    return p->lists[0].size + p->lists[1].size + p->lists[2].size;
}

KVBM__POLICY_BATCH_LOOPS(slru)

static const kvbm_policy_ops_t slru_ops = {
    .version = KVBM_POLICY_OPS_VERSION,
    .name = "slru",
    .create = slru_create,
    .destroy = slru_destroy,
    .insert = slru_insert,
    .remove = slru_remove,
    .pop_victim = slru_pop_victim,
    .touch = slru_touch,
    .size = slru_size,
    KVBM__POLICY_BATCH_SLOTS(slru),
    .hint = kvbm_policy_ignore_hint,
};

const kvbm_policy_ops_t *kvbm_policy_slru(void)
{
    return &slru_ops;
}
