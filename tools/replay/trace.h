/*
 * Mooncake-format request traces (JSON Lines), read one request at a time so
 * memory stays bounded however large the trace, or loaded whole for sweeps
 * and the offline bound.
 *
 * Each line is one JSON object; only "hash_ids" (an array of non-negative
 * integers) is required. Lines holding only whitespace are skipped. Anything
 * else malformed stops reading with the line number and the reason.
 */
#ifndef KVBM_REPLAY_TRACE_H
#define KVBM_REPLAY_TRACE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "kvbm/status.h"

typedef struct trace_reader trace_reader_t;

/* One request: its block hashes, valid until the next call on the reader. */
typedef struct trace_request {
    const uint64_t *hashes;
    size_t count;
    size_t line;          /* 1-based line number in the file */
    int64_t input_length; /* "input_length" in tokens, -1 when the line has none */
} trace_request_t;

/* Opens @p path ("-" for standard input). The reader owns the stream. */
kvbm_status_t trace_reader_open(const char *path, trace_reader_t **reader_out);

/* Reads from an already open stream; the caller keeps ownership of it. */
kvbm_status_t trace_reader_from_stream(FILE *stream, trace_reader_t **reader_out);

/*
 * Next request. Returns KVBM_OK with *has_request = 1, or KVBM_OK with
 * *has_request = 0 at the end, or KVBM_ERR_PARSE / KVBM_ERR_IO with
 * trace_reader_error() describing the line and the reason.
 */
kvbm_status_t trace_reader_next(trace_reader_t *reader, trace_request_t *request_out,
                                int *has_request);

/* "line N: reason" for the last error; empty if none. */
const char *trace_reader_error(const trace_reader_t *reader);

void trace_reader_close(trace_reader_t *reader);

/* A whole trace in memory: request r has hashes[offsets[r] .. offsets[r+1]). */
typedef struct trace {
    uint64_t *hashes;
    size_t *offsets;
    size_t requests;
    size_t blocks;
    /* Tokens a block holds, when the lines' input_length pins it down (every
     * request of n blocks holding (n - 1) * B < input_length <= n * B for one
     * B, as in Mooncake traces: 512); 0 when unknown. */
    uint32_t block_tokens;
} trace_t;

/* Loads the whole trace; on error *error_out holds the reader's message
 * (static storage of the call, copied into @p error, @p error_size bytes). */
kvbm_status_t trace_load(const char *path, size_t limit, trace_t *trace_out, char *error,
                         size_t error_size);
void trace_free(trace_t *trace);

/* Bytes consumed so far (for progress), or -1 if the stream cannot tell. */
long trace_reader_offset(const trace_reader_t *reader);
#endif /* KVBM_REPLAY_TRACE_H */
