/* Streaming JSON Lines trace reader on json-c; see trace.h. */
#include "trace.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "json_strict.h"

/* Bytes read from the stream at a time. */
#define READ_BLOCK ((size_t)64 << 10)

struct trace_reader {
    FILE *stream;
    int owns_stream;
    /* Read-ahead: bytes [read_start, read_end) of read_buffer are unread. */
    char *read_buffer;
    size_t read_start, read_end;
    /* The current line, NUL-terminated; capacity at most max_line + 1. */
    char *line;
    size_t line_capacity;
    size_t max_line;
    size_t line_number;
    uint64_t *hashes;
    size_t hash_capacity;
    json_tokener *tokener;
    json_strict_t strict;
    kvbm_status_t failed; /* sticky: the error every later call returns */
    char error[256];
    /* The block sizes every request so far allows, from input_length:
     * [tokens_lo, tokens_hi]; lo > hi once two requests disagree or one
     * lacks it (trace_t.block_tokens). */
    uint64_t tokens_lo, tokens_hi;
    size_t requests;
};

kvbm_status_t trace_reader_from_stream(FILE *stream, trace_reader_t **reader_out)
{
    if (stream == NULL || reader_out == NULL)
        return KVBM_ERR_INVALID_ARG;
    trace_reader_t *reader = calloc(1, sizeof(*reader));
    if (reader == NULL)
        return KVBM_ERR_NO_MEMORY;
    reader->read_buffer = malloc(READ_BLOCK);
    reader->tokener = json_tokener_new();
    if (reader->read_buffer == NULL || reader->tokener == NULL) {
        trace_reader_close(reader);
        return KVBM_ERR_NO_MEMORY;
    }
    /* Strict, UTF-8 checked; what follows the object is checked here, to
     * name it in the error. */
    json_tokener_set_flags(reader->tokener, JSON_TOKENER_STRICT |
                                                JSON_TOKENER_ALLOW_TRAILING_CHARS |
                                                JSON_TOKENER_VALIDATE_UTF8);
    reader->stream = stream;
    reader->max_line = TRACE_MAX_LINE_DEFAULT;
    reader->tokens_lo = 1;
    reader->tokens_hi = UINT32_MAX;
    *reader_out = reader;
    return KVBM_OK;
}

kvbm_status_t trace_reader_open(const char *path, trace_reader_t **reader_out)
{
    if (path == NULL || reader_out == NULL)
        return KVBM_ERR_INVALID_ARG;
    int is_stdin = strcmp(path, "-") == 0;
    FILE *stream = is_stdin ? stdin : fopen(path, "r");
    if (stream == NULL)
        return KVBM_ERR_IO;
    kvbm_status_t status = trace_reader_from_stream(stream, reader_out);
    if (status != KVBM_OK) {
        if (!is_stdin)
            fclose(stream);
        return status;
    }
    (*reader_out)->owns_stream = !is_stdin;
    return KVBM_OK;
}

kvbm_status_t trace_reader_set_max_line(trace_reader_t *reader, size_t bytes)
{
    if (reader == NULL || bytes == 0 || bytes > TRACE_MAX_LINE_LIMIT)
        return KVBM_ERR_INVALID_ARG;
    reader->max_line = bytes;
    return KVBM_OK;
}

void trace_reader_close(trace_reader_t *reader)
{
    if (reader == NULL)
        return;
    if (reader->owns_stream)
        fclose(reader->stream);
    if (reader->tokener != NULL)
        json_tokener_free(reader->tokener);
    json_strict_free(&reader->strict);
    free(reader->read_buffer);
    free(reader->line);
    free(reader->hashes);
    free(reader);
}

const char *trace_reader_error(const trace_reader_t *reader)
{
    return reader->error;
}

/* Records an error for line @p line and makes it sticky. */
static kvbm_status_t reader_fail_at(trace_reader_t *reader, kvbm_status_t status, size_t line,
                                    const char *reason)
{
    snprintf(reader->error, sizeof(reader->error), "line %zu: %s", line, reason);
    reader->failed = status;
    return status;
}

static kvbm_status_t reader_fail(trace_reader_t *reader, const char *reason)
{
    return reader_fail_at(reader, KVBM_ERR_PARSE, reader->line_number, reason);
}

/*
 * What json-c stopped at, in plain words with the column, instead of its
 * own wording ("object value separator ',' expected").
 */
static void describe_json_error(enum json_tokener_error error, const char *line, size_t length,
                                size_t offset, char *out, size_t out_size)
{
    const char *what;
    switch (error) {
    case json_tokener_continue:
    case json_tokener_error_parse_eof:
        snprintf(out, out_size, "the JSON object is cut off: the line ends before it is closed");
        return;
    case json_tokener_error_depth:
        what = "values nested too deeply";
        break;
    case json_tokener_error_parse_null:
    case json_tokener_error_parse_boolean:
    case json_tokener_error_parse_unexpected:
        what = "a character that does not start or continue a JSON value";
        break;
    case json_tokener_error_parse_number:
        what = "a malformed number";
        break;
    case json_tokener_error_parse_array:
        what = "a list that goes on without a ',' between values or a closing ']'";
        break;
    case json_tokener_error_parse_object_key_name:
        what = "a field name that is not in double quotes";
        break;
    case json_tokener_error_parse_object_key_sep:
        what = "a field name without a ':' after it";
        break;
    case json_tokener_error_parse_object_value_sep:
        what = "fields without a ',' between them or a closing '}'";
        break;
    case json_tokener_error_parse_string:
        what = "a malformed string (a bad escape sequence)";
        break;
    case json_tokener_error_parse_comment:
        what = "a malformed comment";
        break;
    case json_tokener_error_parse_utf8_string:
        what = "text that is not valid UTF-8";
        break;
    default:
        what = "text that is not JSON";
        break;
    }
    if (offset < length && isprint((unsigned char)line[offset]))
        snprintf(out, out_size, "not valid JSON: %s (column %zu, at '%c')", what, offset + 1,
                 line[offset]);
    else
        snprintf(out, out_size, "not valid JSON: %s (column %zu)", what, offset + 1);
}

/* JSON whitespace only (RFC 8259: space, tab, line feed, carriage return). */
static bool is_blank(const char *text, size_t length)
{
    for (size_t i = 0; i < length; i++)
        if (text[i] != ' ' && text[i] != '\t' && text[i] != '\n' && text[i] != '\r')
            return false;
    return true;
}

/* Grows the line buffer to hold @p needed bytes and a NUL: doubling, so a
 * line costs at most twice its length, but never past max_line + 1. */
static kvbm_status_t grow_line(trace_reader_t *reader, size_t needed)
{
    if (needed + 1 <= reader->line_capacity)
        return KVBM_OK;
    size_t capacity = reader->line_capacity < 4096 ? 4096 : reader->line_capacity;
    while (capacity < needed + 1)
        capacity *= 2;
    if (capacity > reader->max_line + 1)
        capacity = reader->max_line + 1;
    char *grown = realloc(reader->line, capacity);
    if (grown == NULL)
        return KVBM_ERR_NO_MEMORY;
    reader->line = grown;
    reader->line_capacity = capacity;
    return KVBM_OK;
}

/* The next line (without its newline) in reader->line, *length_out bytes;
 * *has_line = 0 at the end of the input. Never takes a read or allocation
 * failure for the end. */
static kvbm_status_t read_line(trace_reader_t *reader, size_t *length_out, int *has_line)
{
    size_t length = 0;
    size_t number = reader->line_number + 1;
    for (;;) {
        if (reader->read_start == reader->read_end) {
            errno = 0;
            size_t n = fread(reader->read_buffer, 1, READ_BLOCK, reader->stream);
            if (n == 0) {
                if (ferror(reader->stream)) {
                    char reason[160];
                    snprintf(reason, sizeof(reason), "read error: %s",
                             strerror(errno != 0 ? errno : EIO));
                    return reader_fail_at(reader, KVBM_ERR_IO, number, reason);
                }
                *has_line = length > 0; /* a last line without a newline counts */
                break;
            }
            reader->read_start = 0;
            reader->read_end = n;
        }
        const char *start = reader->read_buffer + reader->read_start;
        size_t available = reader->read_end - reader->read_start;
        const char *newline = memchr(start, '\n', available);
        size_t take = newline != NULL ? (size_t)(newline - start) : available;
        if (take > reader->max_line - length) {
            char reason[160];
            snprintf(reason, sizeof(reason),
                     "longer than %zu bytes (raise the limit with --max-line-bytes)",
                     reader->max_line);
            return reader_fail_at(reader, KVBM_ERR_PARSE, number, reason);
        }
        if (grow_line(reader, length + take) != KVBM_OK) {
            char reason[160];
            snprintf(reason, sizeof(reason), "out of memory reading a line of over %zu bytes",
                     length + take);
            return reader_fail_at(reader, KVBM_ERR_NO_MEMORY, number, reason);
        }
        memcpy(reader->line + length, start, take);
        length += take;
        reader->read_start += take;
        if (newline != NULL) {
            reader->read_start++;
            *has_line = 1;
            break;
        }
    }
    if (*has_line) {
        reader->line[length] = '\0';
        reader->line_number = number;
        *length_out = length;
    }
    return KVBM_OK;
}

static kvbm_status_t reserve_ids(trace_reader_t *reader, size_t count);

/* Copies the ids of a parsed "hash_ids" array into reader->hashes. */
static kvbm_status_t take_hash_ids(trace_reader_t *reader, json_object *ids, size_t *count_out)
{
    if (!json_object_is_type(ids, json_type_array))
        return reader_fail(reader, "\"hash_ids\" is not an array");
    size_t count = json_object_array_length(ids);
    kvbm_status_t status = reserve_ids(reader, count);
    if (status != KVBM_OK)
        return status;
    for (size_t i = 0; i < count; i++) {
        json_object *id = json_object_array_get_idx(ids, i);
        if (!json_object_is_type(id, json_type_int))
            return reader_fail(reader, "\"hash_ids\" holds a value that is not an integer");
        /* The scan refused integers outside [-2^63, 2^64), so json-c holds
         * each one exactly: negative ones as int64, the rest as uint64. */
        if (json_object_get_int64(id) < 0)
            return reader_fail(reader, "\"hash_ids\" holds a negative integer");
        reader->hashes[i] = json_object_get_uint64(id);
    }
    *count_out = count;
    return KVBM_OK;
}

/* Room for @p count ids in reader->hashes (exactly: a line's ids cost 8
 * bytes each, not more). */
static kvbm_status_t reserve_ids(trace_reader_t *reader, size_t count)
{
    if (count <= reader->hash_capacity)
        return KVBM_OK;
    size_t capacity = count < 64 ? 64 : count;
    uint64_t *grown = realloc(reader->hashes, capacity * sizeof(uint64_t));
    if (grown == NULL)
        return reader_fail_at(reader, KVBM_ERR_NO_MEMORY, reader->line_number,
                              "out of memory holding the ids");
    reader->hashes = grown;
    reader->hash_capacity = capacity;
    return KVBM_OK;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/*
 * The ids of a flat "hash_ids" array, read from the text between its
 * brackets (text[0, length)). json-c would build an object of about 80 bytes
 * per element (forty times the text of a one-digit id); this keeps 8. The
 * strict scan has already checked every number's syntax and range, so an
 * element is a plain integer token, and what remains to check here is the
 * array's own grammar (values separated by single commas) and that each
 * value is a non-negative integer.
 */
static kvbm_status_t take_flat_ids(trace_reader_t *reader, const char *text, size_t length,
                                   size_t *count_out)
{
    size_t count = 0;
    for (size_t i = 0; i < length; i++)
        count += text[i] == ',';
    kvbm_status_t status = reserve_ids(reader, count + 1);
    if (status != KVBM_OK)
        return status;
    size_t n = 0, i = 0;
    bool want_value = true, any = false;
    while (i < length) {
        char c = text[i];
        if (is_space(c)) {
            i++;
        } else if (c == ',' && !want_value) {
            want_value = true;
            i++;
        } else if (want_value && c >= '0' && c <= '9') {
            uint64_t value = 0;
            for (; i < length && text[i] >= '0' && text[i] <= '9'; i++)
                value = value * 10 + (uint64_t)(text[i] - '0'); /* range checked by the scan */
            if (i < length && (text[i] == '.' || text[i] == 'e' || text[i] == 'E'))
                return reader_fail(reader, "\"hash_ids\" holds a value that is not an integer");
            reader->hashes[n++] = value;
            want_value = false;
            any = true;
        } else if (want_value && c == '-') {
            /* "-0" is a JSON spelling of 0 (json-c reads it so); any other
             * negative number is refused. */
            size_t j = i + 1;
            while (j < length && text[j] == '0')
                j++;
            if (j - i != 2 || (j < length && text[j] >= '1' && text[j] <= '9'))
                return reader_fail(reader, "\"hash_ids\" holds a negative integer");
            if (j < length && (text[j] == '.' || text[j] == 'e' || text[j] == 'E'))
                return reader_fail(reader, "\"hash_ids\" holds a value that is not an integer");
            reader->hashes[n++] = 0;
            i = j;
            want_value = false;
            any = true;
        } else if (want_value) {
            return reader_fail(reader, c == ','
                                           ? "\"hash_ids\" is not a well-formed array"
                                           : "\"hash_ids\" holds a value that is not an integer");
        } else {
            return reader_fail(reader, "\"hash_ids\" is not a well-formed array: a list that goes "
                                       "on without a ',' between values or a closing ']'");
        }
    }
    if (want_value && any)
        return reader_fail(reader, "\"hash_ids\" is not a well-formed array (trailing comma)");
    *count_out = n;
    return KVBM_OK;
}

/* json-c's parse of @p n bytes at @p text, continuing the line's parse. */
static json_object *parse_piece(trace_reader_t *reader, const char *text, size_t n)
{
    return json_tokener_parse_ex(reader->tokener, text, (int)n);
}

/* Narrows the block sizes the trace allows by one request of @p count
 * blocks and @p tokens input tokens (-1: none given). */
static void note_block_tokens(trace_reader_t *reader, size_t count, int64_t tokens)
{
    reader->requests++;
    if (tokens < 0) {
        reader->tokens_hi = 0;
    } else if (count > 0) {
        uint64_t length = (uint64_t)tokens, n = count;
        uint64_t lo = (length + n - 1) / n;
        uint64_t hi = n == 1 ? UINT32_MAX : length > 0 ? (length - 1) / (n - 1) : 0;
        reader->tokens_lo = lo > reader->tokens_lo ? lo : reader->tokens_lo;
        reader->tokens_hi = hi < reader->tokens_hi ? hi : reader->tokens_hi;
    }
}

/* The optional input_length of @p root; -1 when absent or not an integer
 * >= 0 (the replay does not need it). */
static int64_t input_length_of(json_object *root)
{
    json_object *value = NULL;
    if (!json_object_object_get_ex(root, "input_length", &value) ||
        !json_object_is_type(value, json_type_int))
        return -1;
    errno = 0;
    int64_t tokens = json_object_get_int64(value);
    return tokens >= 0 && errno == 0 ? tokens : -1;
}

/* Parses reader->line (@p length bytes) into one request. */
static kvbm_status_t parse_line(trace_reader_t *reader, size_t length, size_t *count_out,
                                int64_t *tokens_out)
{
    const char *reason = NULL;
    kvbm_status_t status = json_strict_scan(&reader->strict, reader->line, length, &reason);
    if (status == KVBM_ERR_NO_MEMORY)
        return reader_fail_at(reader, status, reader->line_number, "out of memory checking JSON");
    if (status != KVBM_OK)
        return reader_fail(reader, reason);
    /* A flat hash_ids array is read here, and json-c parses the line around
     * it (as if it were empty), in two pieces of one parse. */
    const json_strict_t *strict = &reader->strict;
    bool flat = strict->ids_found;
    size_t count = 0;
    if (flat) {
        status = take_flat_ids(reader, reader->line + strict->ids_open + 1,
                               strict->ids_close - strict->ids_open - 1, &count);
        if (status != KVBM_OK)
            return status;
    }
    json_tokener_reset(reader->tokener);
    size_t rest = flat ? strict->ids_close : 0;
    json_object *root = NULL;
    if (flat)
        root = parse_piece(reader, reader->line, strict->ids_open + 1);
    size_t piece = 0; /* where the piece json-c parsed last starts */
    if (!flat || json_tokener_get_error(reader->tokener) == json_tokener_continue) {
        piece = rest;
        root = parse_piece(reader, reader->line + rest, length - rest);
    }
    enum json_tokener_error parse_error = json_tokener_get_error(reader->tokener);
    if (root == NULL || parse_error != json_tokener_success) {
        json_object_put(root);
        char described[160];
        describe_json_error(parse_error, reader->line, length,
                            piece + json_tokener_get_parse_end(reader->tokener), described,
                            sizeof(described));
        return reader_fail(reader, described);
    }
    /* Anything after the object other than whitespace is an error too. */
    size_t used = rest + json_tokener_get_parse_end(reader->tokener);
    json_object *ids = NULL;
    if (!is_blank(reader->line + used, length - used))
        status = reader_fail(reader, "trailing characters after the JSON object");
    else if (!json_object_is_type(root, json_type_object))
        status = reader_fail(reader, "not a JSON object");
    else if (!json_strict_check_members(strict, root))
        status = reader_fail(reader, "a key is repeated in an object");
    else if (!json_object_object_get_ex(root, "hash_ids", &ids))
        status = reader_fail(reader, "missing \"hash_ids\"");
    else if (!flat)
        status = take_hash_ids(reader, ids, &count);
    int64_t tokens = status == KVBM_OK ? input_length_of(root) : -1;
    json_object_put(root);
    if (status == KVBM_OK) {
        note_block_tokens(reader, count, tokens);
        *count_out = count;
        *tokens_out = tokens;
    }
    return status;
}

kvbm_status_t trace_reader_next(trace_reader_t *reader, trace_request_t *request_out,
                                int *has_request)
{
    if (reader->failed != KVBM_OK)
        return reader->failed;
    for (;;) {
        size_t length = 0;
        int has_line = 0;
        kvbm_status_t status = read_line(reader, &length, &has_line);
        if (status != KVBM_OK)
            return status;
        if (!has_line) {
            *has_request = 0;
            return KVBM_OK;
        }
        if (is_blank(reader->line, length))
            continue;
        size_t count = 0;
        int64_t tokens = -1;
        status = parse_line(reader, length, &count, &tokens);
        if (status != KVBM_OK)
            return status;
        request_out->hashes = reader->hashes;
        request_out->count = count;
        request_out->line = reader->line_number;
        request_out->input_length = tokens;
        *has_request = 1;
        return KVBM_OK;
    }
}

/* Makes room in @p trace for one more request of @p count hashes. */
static kvbm_status_t trace_reserve(trace_t *trace, size_t count)
{
    if (count > trace->hash_capacity - trace->blocks) {
        /* Half again: amortised for a whole trace, and a chunk holding one
         * long request costs little more than its ids. */
        size_t needed = trace->blocks + count;
        size_t capacity = needed + needed / 2;
        uint64_t *grown = realloc(trace->hashes, capacity * sizeof(uint64_t));
        if (grown == NULL)
            return KVBM_ERR_NO_MEMORY;
        trace->hashes = grown;
        trace->hash_capacity = capacity;
    }
    if (trace->requests + 2 > trace->request_capacity) {
        size_t capacity = trace->request_capacity * 2 + 2;
        size_t *offsets = realloc(trace->offsets, capacity * sizeof(size_t));
        if (offsets != NULL)
            trace->offsets = offsets;
        size_t *lines = realloc(trace->lines, capacity * sizeof(size_t));
        if (lines != NULL)
            trace->lines = lines;
        if (offsets == NULL || lines == NULL)
            return KVBM_ERR_NO_MEMORY;
        trace->request_capacity = capacity;
    }
    return KVBM_OK;
}

kvbm_status_t trace_reader_fill(trace_reader_t *reader, trace_t *trace, size_t max_requests,
                                size_t max_blocks, int *end_out)
{
    trace->requests = 0;
    trace->blocks = 0;
    *end_out = 0;
    kvbm_status_t status = trace_reserve(trace, 0);
    if (status != KVBM_OK)
        return reader_fail_at(reader, status, reader->line_number + 1,
                              "out of memory holding requests");
    trace->offsets[0] = 0;
    while (max_requests == 0 || trace->requests < max_requests) {
        trace_request_t request;
        int has_request = 0;
        status = trace_reader_next(reader, &request, &has_request);
        if (status != KVBM_OK)
            return status;
        if (!has_request) {
            *end_out = 1;
            break;
        }
        if (trace_reserve(trace, request.count) != KVBM_OK)
            return reader_fail_at(reader, KVBM_ERR_NO_MEMORY, request.line,
                                  "out of memory holding requests");
        if (request.count > 0)
            memcpy(trace->hashes + trace->blocks, request.hashes, request.count * sizeof(uint64_t));
        trace->lines[trace->requests] = request.line;
        trace->blocks += request.count;
        trace->requests++;
        trace->offsets[trace->requests] = trace->blocks;
        if (max_blocks != 0 && trace->blocks >= max_blocks)
            break;
    }
    return KVBM_OK;
}

kvbm_status_t trace_load(const char *path, size_t limit, size_t max_line, trace_t *trace_out,
                         char *error, size_t error_size)
{
    trace_reader_t *reader = NULL;
    kvbm_status_t status = trace_reader_open(path, &reader);
    if (status != KVBM_OK) {
        snprintf(error, error_size, "cannot open %s: %s", path,
                 status == KVBM_ERR_IO ? strerror(errno) : kvbm_status_str(status));
        return status;
    }
    if (max_line != 0 && trace_reader_set_max_line(reader, max_line) != KVBM_OK) {
        trace_reader_close(reader);
        snprintf(error, error_size, "a line limit of %zu bytes is not accepted", max_line);
        return KVBM_ERR_INVALID_ARG;
    }
    trace_t trace = {0};
    int end = 0;
    status = trace_reader_fill(reader, &trace, limit, 0, &end);
    if (status != KVBM_OK) {
        snprintf(error, error_size, "%s", trace_reader_error(reader));
        trace_free(&trace);
    } else {
        trace.block_tokens = reader->requests > 0 && reader->tokens_lo == reader->tokens_hi
                                 ? (uint32_t)reader->tokens_lo
                                 : 0;
        *trace_out = trace;
    }
    trace_reader_close(reader);
    return status;
}

void trace_free(trace_t *trace)
{
    if (trace == NULL)
        return;
    free(trace->hashes);
    free(trace->offsets);
    free(trace->lines);
    memset(trace, 0, sizeof(*trace));
}

long trace_reader_offset(const trace_reader_t *reader)
{
    long position = ftell(reader->stream);
    return position < 0 ? -1 : position - (long)(reader->read_end - reader->read_start);
}
