/*
 * msgpack-c's packing functions, instantiated once more from msgpack-c's own
 * template (msgpack/pack_template.h, written to be instantiated for any
 * output) over a cursor into a buffer sized beforehand: each value is
 * stored straight into the buffer. msgpack_packer would call its write
 * callback, through a pointer, for every value (every hash of a batch);
 * here the store is inlined into each packing function and the cursor
 * stays in registers. The bytes are msgpack-c's: the same template picks
 * the smallest integer form, str8..32 and array16/32.
 *
 * Functions: cursor_pack_uint64(c, v), cursor_pack_array(c, n),
 * cursor_pack_str(c, len), cursor_pack_nil(c), ... (msgpack_pack_X with
 * cursor_pack_ for msgpack_pack_ and a cursor for the packer); each
 * returns 0, or -1 (writing nothing) when the value does not fit.
 */
#ifndef KVBM_HOST_EVENTS_PACK_H
#define KVBM_HOST_EVENTS_PACK_H

#include <msgpack.h>
#include <string.h>

/* Where the next value goes, and the end of the room. */
typedef struct pack_cursor {
    char *at;
    char *end;
} pack_cursor_t;

static inline int pack_cursor_append(pack_cursor_t *cursor, const void *bytes, size_t len)
{
    if (__builtin_expect(len > (size_t)(cursor->end - cursor->at), 0))
        return -1;
    memcpy(cursor->at, bytes, len);
    cursor->at += len;
    return 0;
}

#define msgpack_pack_inline_func(name)             static inline int cursor_pack##name
#define msgpack_pack_user                          pack_cursor_t *
#define msgpack_pack_append_buffer(user, buf, len) return pack_cursor_append((user), (buf), (len))
#include <msgpack/pack_template.h>

#endif /* KVBM_HOST_EVENTS_PACK_H */
