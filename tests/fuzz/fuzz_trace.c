/*
 * libFuzzer harness for the trace reader: arbitrary bytes as a JSON Lines
 * trace must give requests or a clean error (parse, line too long), never a
 * crash, a leak or an out-of-bounds access. It also reads the input a second
 * time with every "hash_ids" key spelt with an escape ("hash\u005fids"),
 * which sends the ids through json-c's own array instead of the reader's
 * flat-array fast path: both readings must agree on every request and on
 * whether (and on which line) reading stops. Built and run by scripts/fuzz.sh:
 *   cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DKVBM_BUILD_FUZZ=ON -DKVBM_WITH_CUDA=OFF
 *   cmake --build build-fuzz --target fuzz_trace && build-fuzz/fuzz_trace -max_total_time=60
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "trace.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define KEY     "\"hash_ids\""
#define ESCAPED "\"hash\\u005fids\""

typedef struct reading {
    uint64_t *ids; /* every id of every request, in order */
    size_t n_ids;
    size_t requests;
    kvbm_status_t status; /* KVBM_OK at the end, or the error that stopped it */
    size_t error_line;
} reading_t;

static void read_all(const char *text, size_t size, size_t max_line, reading_t *r)
{
    memset(r, 0, sizeof(*r));
    FILE *stream = fmemopen((void *)text, size, "r");
    if (stream == NULL)
        abort();
    trace_reader_t *reader = NULL;
    if (trace_reader_from_stream(stream, &reader) != KVBM_OK ||
        trace_reader_set_max_line(reader, max_line) != KVBM_OK)
        abort();
    trace_t chunk = {0};
    int end = 0;
    while (!end) {
        r->status = trace_reader_fill(reader, &chunk, 3, 64, &end);
        if (r->status != KVBM_OK) {
            r->error_line = strtoul(trace_reader_error(reader) + 5, NULL, 10); /* "line N: ..." */
            break;
        }
        uint64_t *grown = realloc(r->ids, (r->n_ids + chunk.blocks + 1) * sizeof(uint64_t));
        if (grown == NULL)
            abort();
        r->ids = grown;
        if (chunk.blocks > 0)
            memcpy(r->ids + r->n_ids, chunk.hashes, chunk.blocks * sizeof(uint64_t));
        r->n_ids += chunk.blocks;
        r->requests += chunk.requests;
    }
    trace_free(&chunk);
    trace_reader_close(reader);
    fclose(stream);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    /* The first byte picks the line limit: from 64 bytes (to meet it often)
     * to 1 MiB. */
    size_t max_line = (size_t)64 << (data[0] % 15);
    const char *text = (const char *)data + 1;
    size_t length = size - 1;
    reading_t fast;
    read_all(text, length, max_line, &fast);

    /* The same trace with the key escaped; a limit large enough for the
     * longer spelling, for both readings. */
    size_t keys = 0;
    for (const char *at = text;
         (at = memmem(at, length - (size_t)(at - text), KEY, sizeof(KEY) - 1)) != NULL;
         at += sizeof(KEY) - 1)
        keys++;
    if (keys > 0) {
        size_t escaped_length = length + keys * (sizeof(ESCAPED) - sizeof(KEY));
        char *escaped = malloc(escaped_length + 1);
        if (escaped == NULL)
            abort();
        size_t o = 0;
        for (size_t i = 0; i < length;) {
            if (length - i >= sizeof(KEY) - 1 && memcmp(text + i, KEY, sizeof(KEY) - 1) == 0) {
                memcpy(escaped + o, ESCAPED, sizeof(ESCAPED) - 1);
                o += sizeof(ESCAPED) - 1;
                i += sizeof(KEY) - 1;
            } else {
                escaped[o++] = text[i++];
            }
        }
        reading_t plain, slow;
        read_all(text, length, (size_t)1 << 22, &plain);
        read_all(escaped, escaped_length, (size_t)1 << 22, &slow);
        if (plain.status != slow.status || plain.error_line != slow.error_line ||
            plain.requests != slow.requests || plain.n_ids != slow.n_ids ||
            (plain.n_ids > 0 && memcmp(plain.ids, slow.ids, plain.n_ids * sizeof(uint64_t)) != 0))
            abort(); /* the fast path and json-c disagree */
        free(plain.ids);
        free(slow.ids);
        free(escaped);
    }
    free(fast.ids);
    return 0;
}
