/*
 * s3-fifo: S3-FIFO (Yang, Zhang, Qiu, Yue and Vinayak, "FIFO queues are all
 * you need for cache eviction", SOSP 2023) adapted to the inactive pool.
 *
 * Three FIFO queues: a small queue that new inactive blocks enter, a main
 * queue for blocks that have proved themselves, and a ghost queue of hashes
 * recently evicted from the small queue (hashes only; sized to the main
 * queue's target, 90% of capacity). Each block carries a 2-bit access count.
 * Eviction (pop_victim) runs the S3-FIFO loop: while the small queue holds at
 * least 10% of the pool (or main is empty), take its oldest block, which
 * moves to main if it was accessed since it came in and is otherwise evicted
 * and remembered in the ghost; otherwise take main's oldest block, which goes
 * back to main's tail with its count decremented if the count is positive
 * and is otherwise evicted. A block is never moved on access, only counted.
 *
 * The adaptation: in a prefix cache a hit takes the block out of the pool
 * (match acquires it: touch with inactive=true, then remove) and it comes back
 * on release. A naive port would reset its count at that second insert and
 * put it back in the small queue, so a reused block would be treated like a
 * one-hit wonder forever and the policy would degrade to FIFO. Here a block's
 * count survives while it is active: it is kept per block id together with
 * the hash it belongs to, counted on every touch (active or not), and only
 * forgotten when the block is evicted or gets a different hash. At insert, a
 * block whose hash is in the ghost, or whose count is positive (it was used
 * again since it was last released), enters the main queue directly; the
 * rest enter the small queue with a count of zero. The registration touch of
 * a freshly allocated block (new hash on that id) sets the count to zero
 * rather than one, so first use alone is not reuse.
 *
 * Cost: insert, remove and touch O(1) expected (ghost lookup is a hash map);
 * pop amortised O(1): every extra step of its loop consumes one count unit or
 * one promotion, each paid for by an earlier touch or insert.
 */
#include <stdlib.h>

#include "batch_loops.h"
#include "core/alloc.h"
#include "block_list.h"
#include "kvbm/policy.h"
#include "ghost.h"

enum { QUEUE_NONE = 0, QUEUE_SMALL = 1, QUEUE_MAIN = 2 };
#define FREQ_MAX 3u

typedef struct s3fifo_policy {
    kvbm__block_links_t links; /* small and main queues */
    kvbm__block_list_t small;  /* front = oldest */
    kvbm__block_list_t main;   /* front = oldest */
    uint8_t *queue;            /* capacity; QUEUE_* */
    uint8_t *freq;             /* capacity; 0..FREQ_MAX */
    uint8_t *known;            /* capacity; 1 when hash[] holds the block's hash */
    uint64_t *hash;            /* capacity */
    /* Hashes recently evicted from the small queue. */
    kvbm__ghost_t ghost;
} s3fifo_policy_t;

static void s3fifo_destroy(void *state)
{
    s3fifo_policy_t *p = state;
    if (p == NULL)
        return;
    kvbm__ghost_fini(&p->ghost);
    kvbm__free(p->hash);
    kvbm__free(p->known);
    kvbm__free(p->freq);
    kvbm__free(p->queue);
    kvbm__free(p->links.at);
    kvbm__free(p);
}

static kvbm_status_t s3fifo_create(const kvbm_policy_config_t *config, uint32_t capacity,
                                   void **state_out)
{
    kvbm_status_t status = KVBM_ERR_NO_MEMORY;
    s3fifo_policy_t *p = kvbm__calloc(1, sizeof(*p));
    if (p == NULL)
        return KVBM_ERR_NO_MEMORY;
    size_t n = capacity != 0 ? capacity : 1;
    p->links.at = kvbm__alloc(n, sizeof(kvbm__block_link_t));
    p->queue = kvbm__calloc(n, 1);
    p->freq = kvbm__calloc(n, 1);
    p->known = kvbm__calloc(n, 1);
    p->hash = kvbm__alloc(n, sizeof(uint64_t));
    if (p->links.at == NULL || p->queue == NULL || p->freq == NULL || p->known == NULL ||
        p->hash == NULL)
        goto err_destroy;
    /* The ghost holds as many hashes as the main queue's share (90%). */
    status = kvbm__ghost_init(&p->ghost, capacity - capacity / 10);
    if (status != KVBM_OK)
        goto err_destroy;
    kvbm__block_list_init(&p->small);
    kvbm__block_list_init(&p->main);
    *state_out = p;
    return KVBM_OK;

err_destroy:
    s3fifo_destroy(p);
    return status;
}

/* Point block @p id at @p hash, forgetting its count if the hash is new to it. */
static void identify(s3fifo_policy_t *p, uint32_t id, uint64_t hash)
{
    if (p->known[id] && p->hash[id] == hash)
        return;
    p->known[id] = 1;
    p->hash[id] = hash;
    p->freq[id] = 0;
}

static void s3fifo_insert(void *state, const kvbm_policy_entry_t *entry)
{
    s3fifo_policy_t *p = state;
    uint32_t id = entry->block_id;
    assert(p->queue[id] == QUEUE_NONE);
    identify(p, id, entry->seq_hash);
    bool ghost_hit = kvbm__ghost_take(&p->ghost, entry->seq_hash, NULL);
    if (ghost_hit || p->freq[id] > 0) {
        kvbm__block_list_push_back(&p->main, &p->links, id);
        p->queue[id] = QUEUE_MAIN;
    } else {
        kvbm__block_list_push_back(&p->small, &p->links, id);
        p->queue[id] = QUEUE_SMALL;
    }
}

static void s3fifo_remove(void *state, uint32_t block_id)
{
    s3fifo_policy_t *p = state;
    assert(p->queue[block_id] != QUEUE_NONE);
    kvbm__block_list_unlink(p->queue[block_id] == QUEUE_SMALL ? &p->small : &p->main, &p->links,
                            block_id);
    p->queue[block_id] = QUEUE_NONE;
    /* The count and hash stay: the block is in use and may come back. */
}

static void evict(s3fifo_policy_t *p, uint32_t id, uint32_t *block_id_out)
{
    p->queue[id] = QUEUE_NONE;
    p->known[id] = 0; /* the block loses its hash; its next one starts at zero */
    p->freq[id] = 0;
    *block_id_out = id;
}

static bool s3fifo_pop_victim(void *state, uint32_t *block_id_out)
{
    s3fifo_policy_t *p = state;
    for (;;) {
        size_t total = p->small.size + p->main.size;
        if (total == 0)
            return false;
        uint32_t id = KVBM_BLOCK_NONE;
        if (p->small.size > 0 && (p->main.size == 0 || p->small.size * 10 >= total)) {
            kvbm__block_list_pop_front(&p->small, &p->links, &id);
            if (p->freq[id] > 0) {
                /* Accessed while in small: promote, keeping its count. */
                kvbm__block_list_push_back(&p->main, &p->links, id);
                p->queue[id] = QUEUE_MAIN;
                continue;
            }
            kvbm__ghost_add(&p->ghost, p->hash[id], 0);
            evict(p, id, block_id_out);
            return true;
        }
        kvbm__block_list_pop_front(&p->main, &p->links, &id);
        if (p->freq[id] > 0) {
            p->freq[id]--;
            kvbm__block_list_push_back(&p->main, &p->links, id);
            continue;
        }
        evict(p, id, block_id_out);
        return true;
    }
}

static void s3fifo_touch(void *state, const kvbm_policy_entry_t *entry, bool inactive)
{
    s3fifo_policy_t *p = state;
    uint32_t id = entry->block_id;
    if (!p->known[id] || p->hash[id] != entry->seq_hash) {
        /* First sight of this hash on this block: its registration, not a reuse. */
        identify(p, id, entry->seq_hash);
        if (!inactive)
            return;
    }
    if (p->freq[id] < FREQ_MAX)
        p->freq[id]++;
}

static size_t s3fifo_size(const void *state)
{
    const s3fifo_policy_t *p = state;
    return p->small.size + p->main.size;
}

KVBM__POLICY_BATCH_LOOPS(s3fifo)

static const kvbm_policy_ops_t s3fifo_ops = {
    .version = KVBM_POLICY_OPS_VERSION,
    .name = "s3-fifo",
    .create = s3fifo_create,
    .destroy = s3fifo_destroy,
    .insert = s3fifo_insert,
    .remove = s3fifo_remove,
    .pop_victim = s3fifo_pop_victim,
    .touch = s3fifo_touch,
    .size = s3fifo_size,
    KVBM__POLICY_BATCH_SLOTS(s3fifo),
    .hint = kvbm_policy_ignore_hint,
};

const kvbm_policy_ops_t *kvbm_policy_s3fifo(void)
{
    return &s3fifo_ops;
}
