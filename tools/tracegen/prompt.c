/* Prompts and their prefix-chained block ids; see prompt.h. */
#include "prompt.h"

#include <stdlib.h>
#include <string.h>

#include <uthash.h>
#include <xxhash.h>

int tracegen_prompt_append(tracegen_prompt_t *prompt, uint64_t content, uint32_t tokens)
{
    if (tokens == 0)
        return 0;
    if (prompt->count == prompt->capacity) {
        size_t capacity = prompt->capacity < 8 ? 8 : prompt->capacity * 2;
        tracegen_segment_t *grown = realloc(prompt->segments, capacity * sizeof(*grown));
        if (grown == NULL)
            return -1;
        prompt->segments = grown;
        prompt->capacity = capacity;
    }
    prompt->segments[prompt->count++] = (tracegen_segment_t){.content = content, .tokens = tokens};
    prompt->tokens += tokens;
    return 0;
}

void tracegen_prompt_clear(tracegen_prompt_t *prompt)
{
    prompt->count = 0;
    prompt->tokens = 0;
}

void tracegen_prompt_free(tracegen_prompt_t *prompt)
{
    free(prompt->segments);
    memset(prompt, 0, sizeof(*prompt));
}

/* One chain value seen so far and the dense id it was given. */
typedef struct dense_id {
    uint64_t chain;
    uint64_t id;
    struct dense_id *older; /* every entry, newest first, for freeing */
    UT_hash_handle hh;
} dense_id_t;

struct tracegen_namer {
    uint32_t block_tokens;
    XXH3_state_t *hasher;
    dense_id_t *ids;    /* uthash head */
    dense_id_t *newest; /* the same entries as a list, to free them */
    uint64_t next_id;
    uint64_t *out; /* the last call's ids */
    size_t out_capacity;
};

int tracegen_namer_create(uint32_t block_tokens, tracegen_namer_t **namer_out)
{
    if (block_tokens == 0)
        return -1;
    tracegen_namer_t *namer = calloc(1, sizeof(*namer));
    if (namer == NULL)
        return -1;
    namer->hasher = XXH3_createState();
    if (namer->hasher == NULL) {
        free(namer);
        return -1;
    }
    namer->block_tokens = block_tokens;
    *namer_out = namer;
    return 0;
}

void tracegen_namer_destroy(tracegen_namer_t *namer)
{
    if (namer == NULL)
        return;
    HASH_CLEAR(hh, namer->ids);
    while (namer->newest != NULL) {
        dense_id_t *older = namer->newest->older;
        free(namer->newest);
        namer->newest = older;
    }
    XXH3_freeState(namer->hasher);
    free(namer->out);
    free(namer);
}

/* The dense id of a chain value, given the next free one if it is new. */
static int dense_of(tracegen_namer_t *namer, uint64_t chain, uint64_t *id_out)
{
    dense_id_t *entry = NULL;
    HASH_FIND(hh, namer->ids, &chain, sizeof(chain), entry);
    if (entry == NULL) {
        entry = malloc(sizeof(*entry));
        if (entry == NULL)
            return -1;
        entry->chain = chain;
        entry->id = namer->next_id++;
        entry->older = namer->newest;
        namer->newest = entry;
        HASH_ADD(hh, namer->ids, chain, sizeof(entry->chain), entry);
    }
    *id_out = entry->id;
    return 0;
}

static void hash_words(XXH3_state_t *hasher, uint64_t a, uint64_t b, uint64_t c)
{
    uint64_t words[3] = {a, b, c};
    XXH3_64bits_update(hasher, words, sizeof(words));
}

int tracegen_namer_name(tracegen_namer_t *namer, const tracegen_prompt_t *prompt,
                        const uint64_t **ids_out, size_t *count_out)
{
    size_t count = (size_t)((prompt->tokens + namer->block_tokens - 1) / namer->block_tokens);
    if (count > namer->out_capacity) {
        size_t capacity = count * 2;
        uint64_t *grown = realloc(namer->out, capacity * sizeof(uint64_t));
        if (grown == NULL)
            return -1;
        namer->out = grown;
        namer->out_capacity = capacity;
    }
    /* Walk the segments block by block: each block hashes its parent's chain
     * value and the (content, first token, last token) ranges it covers. */
    uint64_t chain = 0x6b76626d2d74726bULL; /* the root's value, before block 0 */
    size_t segment = 0;
    uint32_t offset = 0; /* tokens of the current segment already placed */
    for (size_t block = 0; block < count; block++) {
        XXH3_64bits_reset(namer->hasher);
        XXH3_64bits_update(namer->hasher, &chain, sizeof(chain));
        uint32_t room = namer->block_tokens;
        while (room > 0 && segment < prompt->count) {
            const tracegen_segment_t *s = &prompt->segments[segment];
            uint32_t take = s->tokens - offset < room ? s->tokens - offset : room;
            hash_words(namer->hasher, s->content, offset, offset + take);
            offset += take;
            room -= take;
            if (offset == s->tokens) {
                segment++;
                offset = 0;
            }
        }
        chain = XXH3_64bits_digest(namer->hasher);
        if (dense_of(namer, chain, &namer->out[block]) != 0)
            return -1;
    }
    *ids_out = namer->out;
    *count_out = count;
    return 0;
}
