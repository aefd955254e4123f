/*
 * belady: the offline optimum (Belady, "A study of replacement algorithms for
 * a virtual-storage computer", IBM Systems Journal 1966) used as a bound in
 * trace replays. The victim is the inactive block whose next use, asked of
 * the caller's oracle (config.next_use), lies farthest in the future; blocks
 * never used again (UINT64_MAX) go first. Equal next uses go oldest insert
 * first, so the order is deterministic.
 *
 * The next use is asked at insert and again when an inactive block is
 * touched (a use moves it); in a sequential replay it does not change while
 * the block sits untouched. A binary max-heap over block ids with a position
 * index gives O(log n) insert, remove, touch and pop.
 */
#include <assert.h>
#include <stdlib.h>

#include "batch_loops.h"
#include "core/alloc.h"
#include "core/error.h"
#include "kvbm/policy.h"

#define POS_NONE UINT32_MAX

typedef struct belady_policy {
    uint32_t *heap;     /* block ids; heap[0] is the next victim */
    uint32_t *pos;      /* capacity; index in heap, POS_NONE when absent */
    uint64_t *next_use; /* capacity; key of each present block */
    uint64_t *stamp;    /* capacity; insert order, for the tie-break */
    uint32_t size;
    uint64_t clock;
    kvbm_next_use_fn oracle;
    void *oracle_ctx;
} belady_policy_t;

static void belady_destroy(void *state)
{
    belady_policy_t *p = state;
    if (p == NULL)
        return;
    kvbm__free(p->stamp);
    kvbm__free(p->next_use);
    kvbm__free(p->pos);
    kvbm__free(p->heap);
    kvbm__free(p);
}

static kvbm_status_t belady_create(const kvbm_policy_config_t *config, uint32_t capacity,
                                   void **state_out)
{
    if (config->next_use == NULL)
        return kvbm__fail(KVBM_ERR_INVALID_ARG,
                          "policy belady: policy_config.next_use is NULL (it needs the oracle)");
    belady_policy_t *p = kvbm__calloc(1, sizeof(*p));
    if (p == NULL)
        return KVBM_ERR_NO_MEMORY;
    size_t n = capacity != 0 ? capacity : 1;
    p->heap = kvbm__alloc(n, sizeof(uint32_t));
    p->pos = kvbm__alloc(n, sizeof(uint32_t));
    p->next_use = kvbm__alloc(n, sizeof(uint64_t));
    p->stamp = kvbm__alloc(n, sizeof(uint64_t));
    if (p->heap == NULL || p->pos == NULL || p->next_use == NULL || p->stamp == NULL)
        goto err_destroy;
    for (size_t i = 0; i < n; i++)
        p->pos[i] = POS_NONE;
    p->oracle = config->next_use;
    p->oracle_ctx = config->next_use_ctx;
    *state_out = p;
    return KVBM_OK;

err_destroy:
    belady_destroy(p);
    return KVBM_ERR_NO_MEMORY;
}

/* Whether block a should be evicted before block b. */
static bool before(const belady_policy_t *p, uint32_t a, uint32_t b)
{
    if (p->next_use[a] != p->next_use[b])
        return p->next_use[a] > p->next_use[b];
    return p->stamp[a] < p->stamp[b];
}

static void place(belady_policy_t *p, uint32_t index, uint32_t id)
{
    p->heap[index] = id;
    p->pos[id] = index;
}

static void sift_up(belady_policy_t *p, uint32_t index)
{
    uint32_t id = p->heap[index];
    while (index > 0) {
        uint32_t parent = (index - 1) / 2;
        if (!before(p, id, p->heap[parent]))
            break;
        place(p, index, p->heap[parent]);
        index = parent;
    }
    place(p, index, id);
}

static void sift_down(belady_policy_t *p, uint32_t index)
{
    uint32_t id = p->heap[index];
    for (;;) {
        uint32_t child = 2 * index + 1;
        if (child >= p->size)
            break;
        if (child + 1 < p->size && before(p, p->heap[child + 1], p->heap[child]))
            child++;
        if (!before(p, p->heap[child], id))
            break;
        place(p, index, p->heap[child]);
        index = child;
    }
    place(p, index, id);
}

static void heap_delete(belady_policy_t *p, uint32_t id)
{
    uint32_t index = p->pos[id];
    assert(index != POS_NONE && index < p->size);
    p->pos[id] = POS_NONE;
    uint32_t last = p->heap[--p->size];
    if (index == p->size)
        return;
    place(p, index, last);
    sift_up(p, index);
    sift_down(p, p->pos[last]);
}

static void belady_insert(void *state, const kvbm_policy_entry_t *entry)
{
    belady_policy_t *p = state;
    uint32_t id = entry->block_id;
    assert(p->pos[id] == POS_NONE);
    p->next_use[id] = p->oracle(p->oracle_ctx, entry->seq_hash);
    p->stamp[id] = p->clock++;
    place(p, p->size++, id);
    sift_up(p, p->pos[id]);
}

static void belady_remove(void *state, uint32_t block_id)
{
    heap_delete(state, block_id);
}

static bool belady_pop_victim(void *state, uint32_t *block_id_out)
{
    belady_policy_t *p = state;
    if (p->size == 0)
        return false;
    uint32_t id = p->heap[0];
    heap_delete(p, id);
    *block_id_out = id;
    return true;
}

static void belady_touch(void *state, const kvbm_policy_entry_t *entry, bool inactive)
{
    belady_policy_t *p = state;
    if (!inactive)
        return;
    uint32_t id = entry->block_id;
    p->next_use[id] = p->oracle(p->oracle_ctx, entry->seq_hash);
    sift_up(p, p->pos[id]);
    sift_down(p, p->pos[id]);
}

static size_t belady_size(const void *state)
{
    const belady_policy_t *p = state;
    return p->size;
}

KVBM__POLICY_BATCH_LOOPS(belady)

static const kvbm_policy_ops_t belady_ops = {
    .version = KVBM_POLICY_OPS_VERSION,
    .name = "belady",
    .create = belady_create,
    .destroy = belady_destroy,
    .insert = belady_insert,
    .remove = belady_remove,
    .pop_victim = belady_pop_victim,
    .touch = belady_touch,
    .size = belady_size,
    KVBM__POLICY_BATCH_SLOTS(belady),
    .hint = kvbm_policy_ignore_hint,
};

const kvbm_policy_ops_t *kvbm_policy_belady(void)
{
    return &belady_ops;
}
