/*
 * What json-c's strict mode (JSON_TOKENER_STRICT, json-c 0.16) lets through
 * and RFC 8259 does not, found in the text of one line before json-c parses
 * it, and the repeated-key check after.
 *
 * json-c in strict mode refuses comments, trailing commas, unquoted keys,
 * "01" and a leading '+', but accepts single-quoted strings, "00", NaN and
 * Infinity, a bare "1.", raw control characters inside strings, integers
 * beyond [-2^63, 2^64) (clamped, without an error), and repeated keys (the
 * last one wins). The scan refuses all of these but the last; for repeated
 * keys it counts the members of every object in the text, in document order,
 * and json_strict_check_members() compares them with the objects json-c built
 * (a repeated key leaves one member fewer). Checked in tests/test_replay.c,
 * case by case.
 */
#ifndef KVBM_REPLAY_JSON_STRICT_H
#define KVBM_REPLAY_JSON_STRICT_H

#include <stdbool.h>
#include <stddef.h>

#include <json-c/json.h>

#include "kvbm/status.h"

typedef struct json_strict {
    size_t *members;  /* members of each object, in document (pre-)order */
    size_t n_objects; /* objects in the last text scanned */
    size_t capacity;
    /* Where the first member "hash_ids" (spelt so, unescaped) of the
     * top-level object has its array, when that array holds no object or
     * array: text[ids_open] is its '[', text[ids_close] its ']'. */
    bool ids_found;
    size_t ids_open, ids_close;
} json_strict_t;

/*
 * Scans @p text (@p length bytes). KVBM_OK, or KVBM_ERR_PARSE with
 * *reason_out set to a static description, or KVBM_ERR_NO_MEMORY. Malformed
 * JSON the scan does not look for (a missing comma, say) passes here and is
 * left to json-c.
 */
kvbm_status_t json_strict_scan(json_strict_t *strict, const char *text, size_t length,
                               const char **reason_out);

/* After json-c parsed the scanned text into @p root: whether every object
 * kept all its members (0 when a key was repeated). */
int json_strict_check_members(const json_strict_t *strict, json_object *root);

void json_strict_free(json_strict_t *strict);

#endif /* KVBM_REPLAY_JSON_STRICT_H */
