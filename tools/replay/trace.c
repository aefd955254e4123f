/* Streaming JSON Lines trace reader on json-c; see trace.h. */
#include "trace.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

struct trace_reader {
    FILE *stream;
    int owns_stream;
    char *line;
    size_t line_capacity;
    size_t line_number;
    uint64_t *hashes;
    size_t hash_capacity;
    json_tokener *tokener;
    char error[256];
};

kvbm_status_t trace_reader_from_stream(FILE *stream, trace_reader_t **reader_out)
{
    if (stream == NULL || reader_out == NULL)
        return KVBM_ERR_INVALID_ARG;
    trace_reader_t *reader = calloc(1, sizeof(*reader));
    if (reader == NULL)
        return KVBM_ERR_NO_MEMORY;
    reader->tokener = json_tokener_new();
    if (reader->tokener == NULL) {
        free(reader);
        return KVBM_ERR_NO_MEMORY;
    }
    reader->stream = stream;
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

void trace_reader_close(trace_reader_t *reader)
{
    if (reader == NULL)
        return;
    if (reader->owns_stream)
        fclose(reader->stream);
    json_tokener_free(reader->tokener);
    free(reader->line);
    free(reader->hashes);
    free(reader);
}

const char *trace_reader_error(const trace_reader_t *reader)
{
    return reader->error;
}

static kvbm_status_t reader_fail(trace_reader_t *reader, const char *reason)
{
    snprintf(reader->error, sizeof(reader->error), "line %zu: %s", reader->line_number, reason);
    return KVBM_ERR_PARSE;
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

static int is_blank(const char *text, size_t length)
{
    for (size_t i = 0; i < length; i++)
        if (!isspace((unsigned char)text[i]))
            return 0;
    return 1;
}

/* Copies the ids of a parsed "hash_ids" array into reader->hashes. */
static kvbm_status_t take_hash_ids(trace_reader_t *reader, json_object *ids, size_t *count_out)
{
    if (!json_object_is_type(ids, json_type_array))
        return reader_fail(reader, "\"hash_ids\" is not an array");
    size_t count = json_object_array_length(ids);
    if (count > reader->hash_capacity) {
        size_t capacity = count < 64 ? 64 : count * 2;
        uint64_t *grown = realloc(reader->hashes, capacity * sizeof(uint64_t));
        if (grown == NULL)
            return KVBM_ERR_NO_MEMORY;
        reader->hashes = grown;
        reader->hash_capacity = capacity;
    }
    for (size_t i = 0; i < count; i++) {
        json_object *id = json_object_array_get_idx(ids, i);
        if (!json_object_is_type(id, json_type_int))
            return reader_fail(reader, "\"hash_ids\" holds a value that is not an integer");
        errno = 0;
        int64_t value = json_object_get_int64(id);
        if (value < 0 || errno != 0)
            return reader_fail(reader, "\"hash_ids\" holds a negative or out-of-range integer");
        reader->hashes[i] = (uint64_t)value;
    }
    *count_out = count;
    return KVBM_OK;
}

kvbm_status_t trace_reader_next(trace_reader_t *reader, trace_request_t *request_out,
                                int *has_request)
{
    for (;;) {
        errno = 0;
        ssize_t length = getline(&reader->line, &reader->line_capacity, reader->stream);
        if (length < 0) {
            if (ferror(reader->stream)) {
                snprintf(reader->error, sizeof(reader->error), "line %zu: read error: %s",
                         reader->line_number + 1, strerror(errno));
                return KVBM_ERR_IO;
            }
            *has_request = 0;
            return KVBM_OK;
        }
        reader->line_number++;
        if (is_blank(reader->line, (size_t)length))
            continue;

        json_tokener_reset(reader->tokener);
        json_object *root = json_tokener_parse_ex(reader->tokener, reader->line, (int)length);
        enum json_tokener_error parse_error = json_tokener_get_error(reader->tokener);
        if (root == NULL || parse_error != json_tokener_success) {
            json_object_put(root);
            char reason[160];
            describe_json_error(parse_error, reader->line, (size_t)length,
                                json_tokener_get_parse_end(reader->tokener), reason,
                                sizeof(reason));
            return reader_fail(reader, reason);
        }
        /* Anything after the object other than whitespace is an error too. */
        size_t used = json_tokener_get_parse_end(reader->tokener);
        kvbm_status_t status = KVBM_OK;
        json_object *ids = NULL, *input_length = NULL;
        size_t count = 0;
        if (!is_blank(reader->line + used, (size_t)length - used))
            status = reader_fail(reader, "trailing characters after the JSON object");
        else if (!json_object_is_type(root, json_type_object))
            status = reader_fail(reader, "not a JSON object");
        else if (!json_object_object_get_ex(root, "hash_ids", &ids))
            status = reader_fail(reader, "missing \"hash_ids\"");
        else
            status = take_hash_ids(reader, ids, &count);
        /* Optional; an input_length that is not a non-negative integer is
         * taken as absent (the replay does not need it). */
        int64_t tokens = -1;
        if (status == KVBM_OK && json_object_object_get_ex(root, "input_length", &input_length) &&
            json_object_is_type(input_length, json_type_int)) {
            errno = 0;
            int64_t value = json_object_get_int64(input_length);
            if (value >= 0 && errno == 0)
                tokens = value;
        }
        json_object_put(root);
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

kvbm_status_t trace_load(const char *path, size_t limit, trace_t *trace_out, char *error,
                         size_t error_size)
{
    trace_reader_t *reader = NULL;
    kvbm_status_t status = trace_reader_open(path, &reader);
    if (status != KVBM_OK) {
        snprintf(error, error_size, "cannot open %s: %s", path, strerror(errno));
        return status;
    }
    trace_t trace = {0};
    size_t hash_capacity = 0, offset_capacity = 0;
    /* The block sizes every request so far allows: [lo, hi]; lo > hi once
     * two requests disagree or a request lacks input_length. */
    uint64_t tokens_lo = 1, tokens_hi = UINT32_MAX;
    status = KVBM_ERR_NO_MEMORY;
    trace.offsets = malloc(sizeof(size_t) * 1);
    if (trace.offsets == NULL)
        goto err_close;
    offset_capacity = 1;
    trace.offsets[0] = 0;
    for (;;) {
        if (limit != 0 && trace.requests == limit)
            break;
        trace_request_t request;
        int has_request = 0;
        status = trace_reader_next(reader, &request, &has_request);
        if (status != KVBM_OK) {
            snprintf(error, error_size, "%s", trace_reader_error(reader));
            goto err_free;
        }
        if (!has_request)
            break;
        status = KVBM_ERR_NO_MEMORY;
        if (trace.blocks + request.count > hash_capacity) {
            size_t capacity = (trace.blocks + request.count) * 2;
            uint64_t *grown = realloc(trace.hashes, capacity * sizeof(uint64_t));
            if (grown == NULL)
                goto err_free;
            trace.hashes = grown;
            hash_capacity = capacity;
        }
        if (trace.requests + 2 > offset_capacity) {
            size_t capacity = offset_capacity * 2 + 2;
            size_t *grown = realloc(trace.offsets, capacity * sizeof(size_t));
            if (grown == NULL)
                goto err_free;
            trace.offsets = grown;
            offset_capacity = capacity;
        }
        if (request.count > 0)
            memcpy(trace.hashes + trace.blocks, request.hashes, request.count * sizeof(uint64_t));
        if (request.input_length < 0) {
            tokens_hi = 0;
        } else if (request.count > 0) {
            uint64_t length = (uint64_t)request.input_length, n = request.count;
            uint64_t lo = (length + n - 1) / n;
            uint64_t hi = n == 1 ? UINT32_MAX : length > 0 ? (length - 1) / (n - 1) : 0;
            tokens_lo = lo > tokens_lo ? lo : tokens_lo;
            tokens_hi = hi < tokens_hi ? hi : tokens_hi;
        }
        trace.blocks += request.count;
        trace.requests++;
        trace.offsets[trace.requests] = trace.blocks;
    }
    trace_reader_close(reader);
    if (trace.requests > 0 && tokens_lo == tokens_hi)
        trace.block_tokens = (uint32_t)tokens_lo;
    *trace_out = trace;
    return KVBM_OK;

err_free:
    trace_free(&trace);
err_close:
    trace_reader_close(reader);
    if (status == KVBM_ERR_NO_MEMORY)
        snprintf(error, error_size, "out of memory loading %s", path);
    return status;
}

void trace_free(trace_t *trace)
{
    if (trace == NULL)
        return;
    free(trace->hashes);
    free(trace->offsets);
    memset(trace, 0, sizeof(*trace));
}

long trace_reader_offset(const trace_reader_t *reader)
{
    return ftell(reader->stream);
}
