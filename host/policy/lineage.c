/*
 * lineage: only leaves of the inactive prefix tree are evicted. A block is a
 * leaf when no inactive block names its sequence hash as parent; an inactive
 * parent is kept while any inactive child remains, so a cached prefix is
 * never cut in the middle and evictions eat sequences from the tail. Leaves
 * go oldest first (the order they became leaves).
 *
 * Bookkeeping is by hash, not by block. A map keyed by sequence hash holds,
 * per hash, the number of inactive blocks naming it as parent and the chain
 * of inactive blocks carrying it (more than one under duplicate registration).
 * Counting children by hash means the order of release does not matter: a
 * request normally releases its tail first, so children are inactive before
 * their parent arrives, and the parent still sees them. A parent that is not
 * in the pool (active, or never cached) is simply a count on a hash with no
 * blocks; its inactive child is a leaf as far as eviction goes.
 *
 * When the last inactive child of a hash leaves:
 *  - by eviction, the parent's blocks go to the FRONT of the leaf list: a
 *    prefix whose tail was just evicted is the coldest thing in the pool, so
 *    a cold branch is evicted whole, tail to root, before anything else;
 *  - by reacquisition (remove), they go to the BACK: their subtree was just
 *    used, so they count as freshly used.
 * Keeping the parent's original release order instead would need a heap
 * (O(log n)); this keeps every operation O(1) expected.
 *
 * Parent links that form a cycle (only possible with a hash collision or bad
 * input) would leave no leaf; such blocks wait on an "interior" list, oldest
 * first, and pop falls back to it when there is no leaf, so pop still fails
 * only on an empty pool. A block naming itself as parent is taken as rootless.
 */
#include <stdlib.h>

#include "batch_loops.h"
#include "core/alloc.h"
#include "block_list.h"
#include "kvbm/policy.h"
#include "u64_map.h"

enum { WHERE_NONE = 0, WHERE_LEAF = 1, WHERE_INTERIOR = 2 };

/* A map value packs (inactive child count << 32 | first block carrying the hash). */
#define NODE(children, first) (((uint64_t)(children) << 32) | (uint32_t)(first))
#define NODE_CHILDREN(v)      ((uint32_t)((v) >> 32))
#define NODE_FIRST(v)         ((uint32_t)(v))

typedef struct lineage_policy {
    kvbm__block_links_t links;   /* leaf and interior lists */
    kvbm__block_list_t leaves;   /* front = next victim */
    kvbm__block_list_t interior; /* blocks with inactive children */
    kvbm__block_links_t same;    /* chains of blocks carrying one hash */
    uint8_t *where;              /* capacity; WHERE_* */
    uint64_t *seq_hash;          /* capacity */
    uint64_t *parent_hash;       /* capacity; valid when has_parent */
    uint8_t *has_parent;         /* capacity */
    kvbm__u64_map_t nodes;       /* seq hash -> NODE(...) */
} lineage_policy_t;

static void lineage_destroy(void *state)
{
    lineage_policy_t *p = state;
    if (p == NULL)
        return;
    kvbm__u64_map_fini(&p->nodes);
    kvbm__free(p->has_parent);
    kvbm__free(p->parent_hash);
    kvbm__free(p->seq_hash);
    kvbm__free(p->where);
    kvbm__free(p->same.at);
    kvbm__free(p->links.at);
    kvbm__free(p);
}

static kvbm_status_t lineage_create(const kvbm_policy_config_t *config, uint32_t capacity,
                                    void **state_out)
{
    kvbm_status_t status = KVBM_ERR_NO_MEMORY;
    lineage_policy_t *p = kvbm__calloc(1, sizeof(*p));
    if (p == NULL)
        return KVBM_ERR_NO_MEMORY;
    size_t n = capacity != 0 ? capacity : 1;
    p->links.at = kvbm__alloc(n, sizeof(kvbm__block_link_t));
    p->same.at = kvbm__alloc(n, sizeof(kvbm__block_link_t));
    p->where = kvbm__calloc(n, 1);
    p->seq_hash = kvbm__alloc(n, sizeof(uint64_t));
    p->parent_hash = kvbm__alloc(n, sizeof(uint64_t));
    p->has_parent = kvbm__calloc(n, 1);
    if (p->links.at == NULL || p->same.at == NULL || p->where == NULL || p->seq_hash == NULL ||
        p->parent_hash == NULL || p->has_parent == NULL)
        goto err_destroy;
    /* Each inactive block brings at most two hashes: its own and its parent's. */
    status = kvbm__u64_map_init(&p->nodes, 2 * n);
    if (status != KVBM_OK)
        goto err_destroy;
    kvbm__block_list_init(&p->leaves);
    kvbm__block_list_init(&p->interior);
    *state_out = p;
    return KVBM_OK;

err_destroy:
    lineage_destroy(p);
    return status;
}

static kvbm__block_list_t *list_of(lineage_policy_t *p, uint32_t id)
{
    assert(p->where[id] != WHERE_NONE);
    return p->where[id] == WHERE_LEAF ? &p->leaves : &p->interior;
}

/* Move every block carrying the hash whose chain starts at @p first. */
static void move_chain_to_interior(lineage_policy_t *p, uint32_t first)
{
    for (uint32_t b = first; b != KVBM_BLOCK_NONE; b = p->same.at[b].next) {
        assert(p->where[b] == WHERE_LEAF);
        kvbm__block_list_unlink(&p->leaves, &p->links, b);
        kvbm__block_list_push_back(&p->interior, &p->links, b);
        p->where[b] = WHERE_INTERIOR;
    }
}

static void push_front(kvbm__block_list_t *list, kvbm__block_links_t *links, uint32_t id)
{
    links->at[id].prev = KVBM_BLOCK_NONE;
    links->at[id].next = list->head;
    if (list->head != KVBM_BLOCK_NONE)
        links->at[list->head].prev = id;
    else
        list->tail = id;
    list->head = id;
    list->size++;
}

static void move_chain_to_leaves(lineage_policy_t *p, uint32_t first, bool to_front)
{
    for (uint32_t b = first; b != KVBM_BLOCK_NONE; b = p->same.at[b].next) {
        assert(p->where[b] == WHERE_INTERIOR);
        kvbm__block_list_unlink(&p->interior, &p->links, b);
        if (to_front)
            push_front(&p->leaves, &p->links, b);
        else
            kvbm__block_list_push_back(&p->leaves, &p->links, b);
        p->where[b] = WHERE_LEAF;
    }
}

static void lineage_insert(void *state, const kvbm_policy_entry_t *entry)
{
    lineage_policy_t *p = state;
    uint32_t id = entry->block_id;
    assert(p->where[id] == WHERE_NONE);
    uint64_t hash = entry->seq_hash;
    bool has_parent = entry->has_parent && entry->parent_hash != hash;
    p->seq_hash[id] = hash;
    p->parent_hash[id] = entry->parent_hash;
    p->has_parent[id] = has_parent;

    /* Join the chain of blocks carrying this hash. */
    uint64_t *node = kvbm__u64_map_upsert(&p->nodes, hash, NODE(0, KVBM_BLOCK_NONE));
    uint32_t first = NODE_FIRST(*node);
    p->same.at[id].prev = KVBM_BLOCK_NONE;
    p->same.at[id].next = first;
    if (first != KVBM_BLOCK_NONE)
        p->same.at[first].prev = id;
    *node = NODE(NODE_CHILDREN(*node), id);
    if (NODE_CHILDREN(*node) > 0) {
        kvbm__block_list_push_back(&p->interior, &p->links, id);
        p->where[id] = WHERE_INTERIOR;
    } else {
        kvbm__block_list_push_back(&p->leaves, &p->links, id);
        p->where[id] = WHERE_LEAF;
    }

    if (has_parent) {
        /* Upsert never moves existing entries, so this cannot disturb node. */
        uint64_t *pnode =
            kvbm__u64_map_upsert(&p->nodes, entry->parent_hash, NODE(0, KVBM_BLOCK_NONE));
        uint32_t children = NODE_CHILDREN(*pnode) + 1;
        *pnode = NODE(children, NODE_FIRST(*pnode));
        if (children == 1)
            move_chain_to_interior(p, NODE_FIRST(*pnode));
    }
}

/* Take @p id out of the policy; @p evicted says whether it is being evicted. */
static void detach(lineage_policy_t *p, uint32_t id, bool evicted)
{
    kvbm__block_list_unlink(list_of(p, id), &p->links, id);
    p->where[id] = WHERE_NONE;

    uint64_t *node = kvbm__u64_map_find(&p->nodes, p->seq_hash[id]);
    assert(node != NULL);
    uint32_t prev = p->same.at[id].prev;
    uint32_t next = p->same.at[id].next;
    if (next != KVBM_BLOCK_NONE)
        p->same.at[next].prev = prev;
    if (prev != KVBM_BLOCK_NONE)
        p->same.at[prev].next = next;
    else
        *node = NODE(NODE_CHILDREN(*node), next);
    if (*node == NODE(0, KVBM_BLOCK_NONE))
        kvbm__u64_map_erase(&p->nodes, p->seq_hash[id]);

    if (!p->has_parent[id])
        return;
    uint64_t *pnode = kvbm__u64_map_find(&p->nodes, p->parent_hash[id]);
    assert(pnode != NULL && NODE_CHILDREN(*pnode) > 0);
    uint32_t children = NODE_CHILDREN(*pnode) - 1;
    uint32_t first = NODE_FIRST(*pnode);
    *pnode = NODE(children, first);
    if (children > 0)
        return;
    move_chain_to_leaves(p, first, evicted);
    if (first == KVBM_BLOCK_NONE)
        kvbm__u64_map_erase(&p->nodes, p->parent_hash[id]);
}

static void lineage_remove(void *state, uint32_t block_id)
{
    detach(state, block_id, false);
}

static bool lineage_pop_victim(void *state, uint32_t *block_id_out)
{
    lineage_policy_t *p = state;
    uint32_t id = p->leaves.head;
    if (id == KVBM_BLOCK_NONE)
        id = p->interior.head; /* only when parent links form a cycle */
    if (id == KVBM_BLOCK_NONE)
        return false;
    detach(p, id, true);
    *block_id_out = id;
    return true;
}

static void lineage_touch(void *state, const kvbm_policy_entry_t *entry, bool inactive)
{
    lineage_policy_t *p = state;
    if (!inactive)
        return;
    /* A use refreshes recency within the block's list; leafness is unchanged. */
    uint32_t id = entry->block_id;
    kvbm__block_list_t *list = list_of(p, id);
    kvbm__block_list_unlink(list, &p->links, id);
    kvbm__block_list_push_back(list, &p->links, id);
}

static size_t lineage_size(const void *state)
{
    const lineage_policy_t *p = state;
    return p->leaves.size + p->interior.size;
}

KVBM__POLICY_BATCH_LOOPS(lineage)

static const kvbm_policy_ops_t lineage_ops = {
    .version = KVBM_POLICY_OPS_VERSION,
    .name = "lineage",
    .create = lineage_create,
    .destroy = lineage_destroy,
    .insert = lineage_insert,
    .remove = lineage_remove,
    .pop_victim = lineage_pop_victim,
    .touch = lineage_touch,
    .size = lineage_size,
    KVBM__POLICY_BATCH_SLOTS(lineage),
    .hint = kvbm_policy_ignore_hint,
};

const kvbm_policy_ops_t *kvbm_policy_lineage(void)
{
    return &lineage_ops;
}
