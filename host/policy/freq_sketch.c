/* TinyLFU count-min sketch; see freq_sketch.h. */
#include "freq_sketch.h"

#include <stdbool.h>
#include <stdlib.h>
#include <xxhash.h>

#include "core/alloc.h"
#include "core/error.h"

#define COUNTERS_PER_WORD 16u

/*
 * One XXH3 of the key gives two 32-bit halves; row r uses h1 + r * h2
 * (Kirsch and Mitzenmacher's double hashing), which is as good as four
 * independent hashes for a count-min sketch at a quarter of the cost. h2 is
 * forced odd so the rows never collapse onto one index.
 */
static void row_indexes(const kvbm__freq_sketch_t *sketch, uint64_t key,
                        uint32_t index_out[KVBM__FREQ_SKETCH_ROWS])
{
    uint64_t h = XXH3_64bits_withSeed(&key, sizeof(key), 0x6b76626d736b6368ULL);
    uint32_t h1 = (uint32_t)h;
    uint32_t h2 = (uint32_t)(h >> 32) | 1u;
    for (uint32_t r = 0; r < KVBM__FREQ_SKETCH_ROWS; r++)
        index_out[r] = (h1 + r * h2) & (sketch->width - 1);
}

static uint32_t counter_get(const kvbm__freq_sketch_t *sketch, uint32_t row, uint32_t index)
{
    size_t words_per_row = sketch->width / COUNTERS_PER_WORD;
    uint64_t word = sketch->words[row * words_per_row + index / COUNTERS_PER_WORD];
    return (uint32_t)(word >> (4 * (index % COUNTERS_PER_WORD))) & 0xfu;
}

kvbm_status_t kvbm__freq_sketch_init(kvbm__freq_sketch_t *sketch, uint32_t width)
{
    if (width > KVBM__FREQ_SKETCH_MAX_WIDTH)
        return kvbm__fail(KVBM_ERR_INVALID_ARG, "frequency sketch width %u is above %u", width,
                          (unsigned)KVBM__FREQ_SKETCH_MAX_WIDTH);
    uint32_t w = COUNTERS_PER_WORD;
    while (w < width)
        w *= 2;
    size_t n_words = (size_t)KVBM__FREQ_SKETCH_ROWS * (w / COUNTERS_PER_WORD);
    uint64_t *words = kvbm__calloc(n_words, sizeof(uint64_t));
    if (words == NULL)
        return KVBM_ERR_NO_MEMORY;
    sketch->words = words;
    sketch->width = w;
    sketch->sample_size = 10ull * w;
    sketch->additions = 0;
    return KVBM_OK;
}

void kvbm__freq_sketch_fini(kvbm__freq_sketch_t *sketch)
{
    kvbm__free(sketch->words);
    sketch->words = NULL;
    sketch->width = 0;
}

void kvbm__freq_sketch_increment(kvbm__freq_sketch_t *sketch, uint64_t key)
{
    uint32_t index[KVBM__FREQ_SKETCH_ROWS];
    row_indexes(sketch, key, index);
    size_t words_per_row = sketch->width / COUNTERS_PER_WORD;
    bool added = false;
    for (uint32_t r = 0; r < KVBM__FREQ_SKETCH_ROWS; r++) {
        if (counter_get(sketch, r, index[r]) == KVBM__FREQ_SKETCH_MAX)
            continue;
        sketch->words[r * words_per_row + index[r] / COUNTERS_PER_WORD] +=
            1ull << (4 * (index[r] % COUNTERS_PER_WORD));
        added = true;
    }
    /* As in TinyLFU, only increments that changed a counter move the clock. */
    if (added && ++sketch->additions >= sketch->sample_size)
        kvbm__freq_sketch_age(sketch);
}

uint32_t kvbm__freq_sketch_estimate(const kvbm__freq_sketch_t *sketch, uint64_t key)
{
    uint32_t index[KVBM__FREQ_SKETCH_ROWS];
    row_indexes(sketch, key, index);
    uint32_t best = KVBM__FREQ_SKETCH_MAX;
    for (uint32_t r = 0; r < KVBM__FREQ_SKETCH_ROWS; r++) {
        uint32_t c = counter_get(sketch, r, index[r]);
        if (c < best)
            best = c;
    }
    return best;
}

void kvbm__freq_sketch_age(kvbm__freq_sketch_t *sketch)
{
    /* Shifting a word right by one halves all 16 nibbles once the bit that
     * crossed from each nibble into its lower neighbour is masked away. */
    size_t n_words = (size_t)KVBM__FREQ_SKETCH_ROWS * (sketch->width / COUNTERS_PER_WORD);
    for (size_t i = 0; i < n_words; i++)
        sketch->words[i] = (sketch->words[i] >> 1) & 0x7777777777777777ULL;
    sketch->additions /= 2;
}
