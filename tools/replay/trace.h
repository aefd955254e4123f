/*
 * Mooncake-format request traces (JSON Lines): read one request at a time,
 * a chunk of requests at a time (the replay parses a chunk, then replays
 * it, so parsing does not interleave with the timed steps and memory stays
 * bounded), or loaded whole for sweeps and the offline bound.
 *
 * Each line is one JSON object, parsed strictly (json_strict.h); only
 * "hash_ids" is required: an array of integers in [0, 2^64), each kept
 * exactly. Lines holding only JSON whitespace are skipped. A line is at most
 * max_line bytes (TRACE_MAX_LINE_DEFAULT unless raised): the memory for a
 * line is a small multiple of its length. Anything malformed, an overlong
 * line, a read error and running out of memory all stop reading with the
 * line number and the reason; the end of the input is only ever the end.
 */
#ifndef KVBM_REPLAY_TRACE_H
#define KVBM_REPLAY_TRACE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "kvbm/status.h"

/* 16 MiB: Mooncake lines are a few KiB (a 128k-token context is 256 ids). */
#define TRACE_MAX_LINE_DEFAULT ((size_t)16 << 20)
/* The most --max-line-bytes may ask for (json-c takes an int length). */
#define TRACE_MAX_LINE_LIMIT ((size_t)1 << 30)

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

/* Longest line accepted, in bytes (1..TRACE_MAX_LINE_LIMIT). */
kvbm_status_t trace_reader_set_max_line(trace_reader_t *reader, size_t bytes);

/*
 * Next request. Returns KVBM_OK with *has_request = 1, or KVBM_OK with
 * *has_request = 0 at the end, or KVBM_ERR_PARSE / KVBM_ERR_IO /
 * KVBM_ERR_NO_MEMORY with trace_reader_error() describing the line and the
 * reason. After an error the reader keeps returning it.
 */
kvbm_status_t trace_reader_next(trace_reader_t *reader, trace_request_t *request_out,
                                int *has_request);

/* "line N: reason" for the last error; empty if none. */
const char *trace_reader_error(const trace_reader_t *reader);

void trace_reader_close(trace_reader_t *reader);

/* Requests in memory: request r has hashes[offsets[r] .. offsets[r+1]) and
 * came from line lines[r]. The capacities belong to the trace functions. */
typedef struct trace {
    uint64_t *hashes;
    size_t *offsets;
    size_t *lines;
    size_t requests;
    size_t blocks;
    size_t hash_capacity;
    size_t request_capacity;
    /* Tokens a block holds, when the lines' input_length pins it down (every
     * request of n blocks holding (n - 1) * B < input_length <= n * B for one
     * B, as in Mooncake traces: 512); 0 when unknown. */
    uint32_t block_tokens;
} trace_t;

/*
 * Empties @p trace (keeping its memory), then reads requests into it until
 * the end, until it holds @p max_requests requests, or until it holds
 * @p max_blocks hashes (0: no limit; a request longer than that comes alone).
 * *end_out is 1 once the input is exhausted. Errors as trace_reader_next().
 */
kvbm_status_t trace_reader_fill(trace_reader_t *reader, trace_t *trace, size_t max_requests,
                                size_t max_blocks, int *end_out);

/* Loads the first @p limit requests (0: all) whole; on error @p error holds
 * the reason (@p error_size bytes). */
kvbm_status_t trace_load(const char *path, size_t limit, size_t max_line, trace_t *trace_out,
                         char *error, size_t error_size);
void trace_free(trace_t *trace);

/* Bytes consumed so far (for progress), or -1 if the stream cannot tell. */
long trace_reader_offset(const trace_reader_t *reader);
#endif /* KVBM_REPLAY_TRACE_H */
