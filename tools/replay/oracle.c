/* Next-use oracle over a loaded trace; see oracle.h. */
#include "oracle.h"

#include <stdlib.h>

#include <uthash.h>

typedef struct hash_uses {
    uint64_t hash;
    size_t first; /* index into oracle->uses of this hash's first use */
    size_t count;
    size_t cursor; /* uses before it are in the past */
    UT_hash_handle hh;
} hash_uses_t;

struct next_use_oracle {
    hash_uses_t *entries; /* one per distinct hash */
    hash_uses_t *table;   /* uthash head over entries */
    size_t *uses;         /* request indices, grouped by hash, increasing */
    size_t now;
};

kvbm_status_t oracle_create(const trace_t *trace, next_use_oracle_t **oracle_out)
{
    next_use_oracle_t *oracle = calloc(1, sizeof(*oracle));
    if (oracle == NULL)
        return KVBM_ERR_NO_MEMORY;
    /* Pass 1: distinct hashes and their use counts (a hash repeated inside
     * one request is one use). */
    oracle->entries = calloc(trace->blocks > 0 ? trace->blocks : 1, sizeof(hash_uses_t));
    oracle->uses = malloc(sizeof(size_t) * (trace->blocks > 0 ? trace->blocks : 1));
    if (oracle->entries == NULL || oracle->uses == NULL)
        goto err_free;
    size_t distinct = 0;
    for (size_t r = 0; r < trace->requests; r++) {
        for (size_t i = trace->offsets[r]; i < trace->offsets[r + 1]; i++) {
            hash_uses_t *entry = NULL;
            HASH_FIND(hh, oracle->table, &trace->hashes[i], sizeof(uint64_t), entry);
            if (entry == NULL) {
                entry = &oracle->entries[distinct++];
                entry->hash = trace->hashes[i];
                entry->cursor = r; /* last request counted, reused below */
                entry->count = 1;
                HASH_ADD(hh, oracle->table, hash, sizeof(uint64_t), entry);
            } else if (entry->cursor != r) {
                entry->cursor = r;
                entry->count++;
            }
        }
    }
    /* Pass 2: lay out each hash's uses contiguously. */
    size_t next = 0;
    for (size_t e = 0; e < distinct; e++) {
        oracle->entries[e].first = next;
        next += oracle->entries[e].count;
        oracle->entries[e].count = 0;
        oracle->entries[e].cursor = SIZE_MAX;
    }
    for (size_t r = 0; r < trace->requests; r++) {
        for (size_t i = trace->offsets[r]; i < trace->offsets[r + 1]; i++) {
            hash_uses_t *entry = NULL;
            HASH_FIND(hh, oracle->table, &trace->hashes[i], sizeof(uint64_t), entry);
            if (entry == NULL || entry->cursor == r) /* pass 1 added every hash */
                continue;
            entry->cursor = r;
            oracle->uses[entry->first + entry->count++] = r;
        }
    }
    for (size_t e = 0; e < distinct; e++)
        oracle->entries[e].cursor = 0;
    *oracle_out = oracle;
    return KVBM_OK;

err_free:
    free(oracle->entries);
    free(oracle->uses);
    free(oracle);
    return KVBM_ERR_NO_MEMORY;
}

void oracle_destroy(next_use_oracle_t *oracle)
{
    if (oracle == NULL)
        return;
    HASH_CLEAR(hh, oracle->table);
    free(oracle->entries);
    free(oracle->uses);
    free(oracle);
}

void oracle_set_now(next_use_oracle_t *oracle, size_t request)
{
    oracle->now = request;
}

uint64_t oracle_next_use(void *ctx, uint64_t hash)
{
    next_use_oracle_t *oracle = ctx;
    hash_uses_t *entry = NULL;
    HASH_FIND(hh, oracle->table, &hash, sizeof(uint64_t), entry);
    if (entry == NULL)
        return UINT64_MAX;
    while (entry->cursor < entry->count &&
           oracle->uses[entry->first + entry->cursor] <= oracle->now)
        entry->cursor++;
    return entry->cursor < entry->count ? oracle->uses[entry->first + entry->cursor] : UINT64_MAX;
}
