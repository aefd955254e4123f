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
            return reader_fail(reader, parse_error == json_tokener_continue
                                           ? "truncated JSON"
                                           : json_tokener_error_desc(parse_error));
        }
        /* Anything after the object other than whitespace is an error too. */
        size_t used = json_tokener_get_parse_end(reader->tokener);
        kvbm_status_t status = KVBM_OK;
        json_object *ids = NULL;
        size_t count = 0;
        if (!is_blank(reader->line + used, (size_t)length - used))
            status = reader_fail(reader, "trailing characters after the JSON object");
        else if (!json_object_is_type(root, json_type_object))
            status = reader_fail(reader, "not a JSON object");
        else if (!json_object_object_get_ex(root, "hash_ids", &ids))
            status = reader_fail(reader, "missing \"hash_ids\"");
        else
            status = take_hash_ids(reader, ids, &count);
        json_object_put(root);
        if (status != KVBM_OK)
            return status;
        request_out->hashes = reader->hashes;
        request_out->count = count;
        request_out->line = reader->line_number;
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
        trace.blocks += request.count;
        trace.requests++;
        trace.offsets[trace.requests] = trace.blocks;
    }
    trace_reader_close(reader);
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
