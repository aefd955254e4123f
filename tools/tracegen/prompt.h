/*
 * Prompts as the generator builds them, and the block ids they hash to.
 *
 * A prompt is a list of segments: pieces of content (a system prompt, a
 * document, one chat message) named by a 64-bit content id and a length in
 * tokens. Two prompts that start with the same segments share those tokens.
 *
 * Block ids follow the Mooncake convention the replay contract reads: the
 * prompt is cut into blocks of `block_tokens` tokens and every block gets an
 * id that stands for its whole prefix, so equal ids mean equal prefixes. The
 * id of block k is chained from the id of block k-1 and the content of block
 * k (which segments, which token ranges; the last block may be partial, and a
 * partial block names a different prefix than the full block a longer prompt
 * has in its place). The chain value is an XXH3 hash; the ids written out are
 * dense (0, 1, 2, ... in order of first appearance), like Mooncake's.
 */
#ifndef KVBM_TRACEGEN_PROMPT_H
#define KVBM_TRACEGEN_PROMPT_H

#include <stddef.h>
#include <stdint.h>

typedef struct tracegen_segment {
    uint64_t content; /* names the content; equal ids are equal tokens */
    uint32_t tokens;  /* >= 1 */
} tracegen_segment_t;

typedef struct tracegen_prompt {
    tracegen_segment_t *segments; /* owned; grows with append */
    size_t count;
    size_t capacity;
    uint64_t tokens; /* sum of the segments' tokens */
} tracegen_prompt_t;

/* Appends a segment (tokens == 0 appends nothing). Returns 0, or -1 when out
 * of memory (the prompt is unchanged). */
int tracegen_prompt_append(tracegen_prompt_t *prompt, uint64_t content, uint32_t tokens);
/* Empties the prompt, keeping its storage. */
void tracegen_prompt_clear(tracegen_prompt_t *prompt);
void tracegen_prompt_free(tracegen_prompt_t *prompt);

typedef struct tracegen_namer tracegen_namer_t;

/* Returns 0, or -1 when out of memory. block_tokens >= 1. */
int tracegen_namer_create(uint32_t block_tokens, tracegen_namer_t **namer_out);
void tracegen_namer_destroy(tracegen_namer_t *namer);

/*
 * The block ids of @p prompt, ceil(tokens / block_tokens) of them, into a
 * buffer owned by the namer (valid until the next call). Returns 0, or -1
 * when out of memory.
 */
int tracegen_namer_name(tracegen_namer_t *namer, const tracegen_prompt_t *prompt,
                        const uint64_t **ids_out, size_t *count_out);

#endif /* KVBM_TRACEGEN_PROMPT_H */
