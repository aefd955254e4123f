/* The replay floor; see replay_floor.h. */
#include "replay_floor.h"

#include <stdlib.h>

#define NONE UINT32_MAX

/* How many hashes ahead the lookups prefetch their table slot. */
#define PREFETCH_AHEAD 4

/* A table slot: the key inline, its block plus one (0: empty), and the low
 * bits of its spread hash so deletion never recomputes a home slot. */
typedef struct slot {
    uint64_t key;
    uint32_t block_plus_one;
    uint32_t spread;
} slot_t;

/* A block: the hash it carries, LRU links (free: next is the free stack),
 * and its references. Inactive = registered with refs == 0 = on the list. */
typedef struct block {
    uint64_t hash;
    uint32_t prev, next;
    uint32_t refs;
    uint32_t unused;
} block_t;

struct replay_floor {
    slot_t *slots;
    uint32_t mask;
    block_t *blocks;
    uint32_t capacity;
    uint32_t watermark; /* blocks at or above it were never used (free) */
    uint32_t free_top;  /* freed blocks, a stack through next */
    uint32_t lru_head;  /* oldest inactive */
    uint32_t lru_tail;  /* newest inactive */
    uint32_t *ids;      /* the request's blocks, capacity */
    uint32_t *fresh;    /* the request's new blocks, capacity */
    floor_counts_t counts;
};

/* One multiply: the replay's ids are small dense integers; Fibonacci
 * hashing spreads them (and any well-mixed hash) evenly. */
static inline uint32_t spread_of(uint64_t key)
{
    return (uint32_t)((key * 0x9E3779B97F4A7C15ULL) >> 32);
}

replay_floor_t *replay_floor_create(uint32_t g1_blocks)
{
    if (g1_blocks == 0)
        return NULL;
    replay_floor_t *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return NULL;
    uint32_t size = 1;
    while (size < 2 * (uint64_t)g1_blocks)
        size *= 2;
    f->slots = calloc(size, sizeof(slot_t));
    f->blocks = calloc(g1_blocks, sizeof(block_t));
    f->ids = malloc(sizeof(uint32_t) * g1_blocks);
    f->fresh = malloc(sizeof(uint32_t) * g1_blocks);
    if (f->slots == NULL || f->blocks == NULL || f->ids == NULL || f->fresh == NULL) {
        replay_floor_destroy(f);
        return NULL;
    }
    f->mask = size - 1;
    f->capacity = g1_blocks;
    f->free_top = NONE;
    f->lru_head = NONE;
    f->lru_tail = NONE;
    return f;
}

void replay_floor_destroy(replay_floor_t *f)
{
    if (f == NULL)
        return;
    free(f->slots);
    free(f->blocks);
    free(f->ids);
    free(f->fresh);
    free(f);
}

const floor_counts_t *replay_floor_counts(const replay_floor_t *f)
{
    return &f->counts;
}

static inline void prefetch_slot(const replay_floor_t *f, uint64_t key)
{
    __builtin_prefetch(&f->slots[spread_of(key) & f->mask]);
}

/* The slot holding @p key, or the empty slot where it would go. */
static inline slot_t *slot_probe(replay_floor_t *f, uint64_t key, uint32_t spread)
{
    uint32_t i = spread & f->mask;
    while (f->slots[i].block_plus_one != 0 && f->slots[i].key != key)
        i = (i + 1) & f->mask;
    return &f->slots[i];
}

/* Removes a present key; later slots of the run move back into the hole. */
static void slot_remove(replay_floor_t *f, uint64_t key)
{
    uint32_t hole = (uint32_t)(slot_probe(f, key, spread_of(key)) - f->slots);
    for (uint32_t j = (hole + 1) & f->mask; f->slots[j].block_plus_one != 0;
         j = (j + 1) & f->mask) {
        uint32_t home = f->slots[j].spread & f->mask;
        if (((j - home) & f->mask) >= ((j - hole) & f->mask)) {
            f->slots[hole] = f->slots[j];
            hole = j;
        }
    }
    f->slots[hole].block_plus_one = 0;
}

static inline void lru_unlink(replay_floor_t *f, uint32_t b)
{
    block_t *blk = &f->blocks[b];
    if (blk->prev != NONE)
        f->blocks[blk->prev].next = blk->next;
    else
        f->lru_head = blk->next;
    if (blk->next != NONE)
        f->blocks[blk->next].prev = blk->prev;
    else
        f->lru_tail = blk->prev;
}

static inline void lru_push_back(replay_floor_t *f, uint32_t b)
{
    block_t *blk = &f->blocks[b];
    blk->prev = f->lru_tail;
    blk->next = NONE;
    if (f->lru_tail != NONE)
        f->blocks[f->lru_tail].next = b;
    else
        f->lru_head = b;
    f->lru_tail = b;
}

/* A held reference on a registered block; an inactive one leaves the list. */
static inline void acquire(replay_floor_t *f, uint32_t b)
{
    if (f->blocks[b].refs++ == 0)
        lru_unlink(f, b);
}

/* Step 4: a free block (freed first, then never used), else the LRU victim,
 * which loses its hash. Always succeeds: n <= C1 and k1 blocks are held. */
static inline uint32_t take_block(replay_floor_t *f)
{
    uint32_t b = f->free_top;
    if (b != NONE) {
        f->free_top = f->blocks[b].next;
    } else if (f->watermark < f->capacity) {
        b = f->watermark++;
    } else {
        b = f->lru_head;
        lru_unlink(f, b);
        slot_remove(f, f->blocks[b].hash);
        f->counts.g1_evictions++;
    }
    f->blocks[b].refs = 1;
    return b;
}

void replay_floor_request(replay_floor_t *f, const uint64_t *h, size_t n)
{
    f->counts.requests++;
    f->counts.blocks += n;
    if (n > f->capacity) {
        f->counts.oversize++;
        f->counts.misses += n;
        return;
    }
    /* 2. Match the longest registered prefix. */
    size_t k1 = 0;
    for (size_t i = 0; i < n && i < PREFETCH_AHEAD; i++)
        prefetch_slot(f, h[i]);
    for (; k1 < n; k1++) {
        if (k1 + PREFETCH_AHEAD < n)
            prefetch_slot(f, h[k1 + PREFETCH_AHEAD]);
        const slot_t *s = slot_probe(f, h[k1], spread_of(h[k1]));
        if (s->block_plus_one == 0)
            break;
        f->ids[k1] = s->block_plus_one - 1;
        acquire(f, f->ids[k1]);
    }
    /* 4. Allocate the rest. */
    size_t need = n - k1;
    for (size_t j = 0; j < need; j++)
        f->fresh[j] = take_block(f);
    /* 5. Register; a hash already present is acquired and the new block freed. */
    for (size_t j = 0; j < need; j++) {
        if (j + PREFETCH_AHEAD < need)
            prefetch_slot(f, h[k1 + j + PREFETCH_AHEAD]);
        uint64_t key = h[k1 + j];
        uint32_t spread = spread_of(key);
        slot_t *s = slot_probe(f, key, spread);
        uint32_t b = f->fresh[j];
        if (s->block_plus_one != 0) {
            uint32_t existing = s->block_plus_one - 1;
            acquire(f, existing);
            f->blocks[b].refs = 0;
            f->blocks[b].next = f->free_top;
            f->free_top = b;
            f->ids[k1 + j] = existing;
            f->counts.dedup++;
        } else {
            *s = (slot_t){.key = key, .block_plus_one = b + 1, .spread = spread};
            f->blocks[b].hash = key;
            f->ids[k1 + j] = b;
        }
    }
    /* 7. Release, last block first: the head becomes the most recent. */
    for (size_t i = n; i-- > 0;) {
        uint32_t b = f->ids[i];
        if (--f->blocks[b].refs == 0)
            lru_push_back(f, b);
    }
    f->counts.g1_hits += k1;
    f->counts.misses += need;
}
