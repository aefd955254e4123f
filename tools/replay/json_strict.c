/* Strict JSON checks json-c does not make; see json_strict.h. */
#include "json_strict.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Deeper than json-c's default depth (32), which refuses such text anyway. */
#define MAX_DEPTH 64

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Whether the digits [digits, digits + n) (no leading zero) stay within
 * @p limit, itself a string of digits. */
static bool digits_within(const char *digits, size_t n, const char *limit)
{
    size_t limit_n = strlen(limit);
    return n < limit_n || (n == limit_n && memcmp(digits, limit, n) <= 0);
}

/* One JSON number starting at text[*at]; advances *at past it. */
static const char *scan_number(const char *text, size_t length, size_t *at)
{
    size_t i = *at;
    bool negative = text[i] == '-';
    if (negative)
        i++;
    if (i == length || !is_digit(text[i]))
        return "a number needs a digit after '-'";
    size_t int_start = i;
    if (text[i] == '0' && i + 1 < length && is_digit(text[i + 1]))
        return "a number has a leading zero";
    while (i < length && is_digit(text[i]))
        i++;
    size_t int_digits = i - int_start;
    bool integer = true;
    if (i < length && text[i] == '.') {
        integer = false;
        i++;
        if (i == length || !is_digit(text[i]))
            return "a number needs a digit after '.'";
        while (i < length && is_digit(text[i]))
            i++;
    }
    if (i < length && (text[i] == 'e' || text[i] == 'E')) {
        integer = false;
        i++;
        if (i < length && (text[i] == '+' || text[i] == '-'))
            i++;
        if (i == length || !is_digit(text[i]))
            return "a number needs a digit in its exponent";
        while (i < length && is_digit(text[i]))
            i++;
    }
    /* json-c clamps integers it cannot hold, silently: refuse them instead. */
    if (integer && !digits_within(text + int_start, int_digits,
                                  negative ? "9223372036854775808" : "18446744073709551615"))
        return "an integer is outside [-2^63, 2^64)";
    *at = i;
    return NULL;
}

/* One string starting at the quote text[*at]; advances *at past its end. */
static const char *scan_string(const char *text, size_t length, size_t *at)
{
    size_t i = *at + 1;
    while (i < length && text[i] != '"') {
        if ((unsigned char)text[i] < 0x20)
            return "a string holds a raw control character";
        i += text[i] == '\\' ? 2 : 1; /* json-c checks the escape itself */
    }
    *at = i < length ? i + 1 : length;
    return NULL;
}

/* A bare word. json-c takes NaN and Infinity (in any case) as numbers; any
 * other word but true, false and null it refuses itself, with its reason. */
static const char *scan_word(const char *text, size_t length, size_t *at)
{
    size_t i = *at;
    while (i < length && ((text[i] >= 'a' && text[i] <= 'z') || (text[i] >= 'A' && text[i] <= 'Z')))
        i++;
    size_t n = i - *at;
    const char *word = text + *at;
    if ((n == 3 && strncasecmp(word, "nan", 3) == 0) ||
        (n == 8 && strncasecmp(word, "infinity", 8) == 0))
        return "NaN and Infinity are not JSON";
    *at = i;
    return NULL;
}

static kvbm_status_t add_object(json_strict_t *strict, size_t *index_out)
{
    if (strict->n_objects == strict->capacity) {
        size_t capacity = strict->capacity < 16 ? 16 : strict->capacity * 2;
        size_t *grown = realloc(strict->members, capacity * sizeof(size_t));
        if (grown == NULL)
            return KVBM_ERR_NO_MEMORY;
        strict->members = grown;
        strict->capacity = capacity;
    }
    strict->members[strict->n_objects] = 0;
    *index_out = strict->n_objects++;
    return KVBM_OK;
}

kvbm_status_t json_strict_scan(json_strict_t *strict, const char *text, size_t length,
                               const char **reason_out)
{
    /* Open containers: the object's index in members, or SIZE_MAX for an array. */
    size_t open[MAX_DEPTH];
    size_t depth = 0;
    strict->n_objects = 0;
    strict->ids_found = false;
    /* Finding the top-level "hash_ids": its key just seen (at depth 1), its
     * ':' just seen, then its array open at depth 2 (flat while it holds no
     * container). */
    enum { IDS_NONE, IDS_KEY, IDS_COLON, IDS_IN_ARRAY, IDS_DONE } ids = IDS_NONE;
    bool ids_flat = true;
    const char *reason = NULL;
    size_t i = 0;
    while (i < length && reason == NULL) {
        char c = text[i];
        if (ids == IDS_KEY && c != ':' && c != ' ' && c != '\t' && c != '\n' && c != '\r')
            ids = IDS_NONE;
        if (ids == IDS_COLON && c != '[' && c != ' ' && c != '\t' && c != '\n' && c != '\r')
            ids = IDS_NONE;
        if (c == '"') {
            size_t start = i;
            reason = scan_string(text, length, &i);
            if (ids == IDS_NONE && depth == 1 && open[0] != SIZE_MAX && i - start == 10 &&
                memcmp(text + start, "\"hash_ids\"", 10) == 0)
                ids = IDS_KEY;
        } else if (c == '-' || is_digit(c)) {
            reason = scan_number(text, length, &i);
        } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
            reason = scan_word(text, length, &i);
        } else if (c == '\'') {
            reason = "a single-quoted string";
        } else if (c == '/') {
            reason = "a comment";
        } else if (c == '{' || c == '[') {
            if (depth == MAX_DEPTH) {
                reason = "nested too deep";
                break;
            }
            size_t index = SIZE_MAX;
            if (c == '{' && add_object(strict, &index) != KVBM_OK)
                return KVBM_ERR_NO_MEMORY;
            if (ids == IDS_COLON && c == '[' && depth == 1) {
                ids = IDS_IN_ARRAY;
                strict->ids_open = i;
            } else if (ids == IDS_IN_ARRAY) {
                ids_flat = false;
            }
            open[depth++] = index;
            i++;
        } else if (c == '}' || c == ']') {
            if (depth > 0)
                depth--;
            if (ids == IDS_IN_ARRAY && depth == 1) {
                ids = IDS_DONE;
                strict->ids_found = ids_flat && c == ']';
                strict->ids_close = i;
            }
            i++;
        } else if (c == ':') {
            if (ids == IDS_KEY)
                ids = IDS_COLON;
            /* A member: json-c checks that a key precedes it. */
            if (depth > 0 && open[depth - 1] != SIZE_MAX)
                strict->members[open[depth - 1]]++;
            i++;
        } else {
            i++; /* whitespace, commas, and what json-c refuses itself */
        }
    }
    if (reason == NULL)
        return KVBM_OK;
    *reason_out = reason;
    return KVBM_ERR_PARSE;
}

/* Pre-order walk, in the order json-c keeps members (insertion order; a
 * repeated key keeps its first place), matching the scan's order. */
static int check_walk(const json_strict_t *strict, json_object *value, size_t *next)
{
    if (json_object_is_type(value, json_type_object)) {
        if (*next >= strict->n_objects ||
            (size_t)json_object_object_length(value) != strict->members[(*next)++])
            return 0;
        json_object_object_foreach(value, key, member)
        {
            (void)key;
            if (!check_walk(strict, member, next))
                return 0;
        }
    } else if (json_object_is_type(value, json_type_array)) {
        size_t n = json_object_array_length(value);
        for (size_t i = 0; i < n; i++)
            if (!check_walk(strict, json_object_array_get_idx(value, i), next))
                return 0;
    }
    return 1;
}

int json_strict_check_members(const json_strict_t *strict, json_object *root)
{
    size_t next = 0;
    return check_walk(strict, root, &next) && next == strict->n_objects;
}

void json_strict_free(json_strict_t *strict)
{
    free(strict->members);
    memset(strict, 0, sizeof(*strict));
}
