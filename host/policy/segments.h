/*
 * Segmented release order, shared by the adaptive policy and its miniature
 * simulations: every inactive block sits in one of four lists by what its
 * history says, each list in release order (front = oldest), and every
 * block carries its release stamp. A victim rule is a bonus per segment: the
 * victim is the list head with the smallest stamp + bonus. All bonuses 0 is
 * LRU over all blocks; a bonus of KVBM__SEG_FAR on a segment spares it while
 * another segment has blocks.
 *
 * Not thread-safe: the owning policy is serialised by its manager's lock.
 */
#ifndef KVBM_HOST_POLICY_SEGMENTS_H
#define KVBM_HOST_POLICY_SEGMENTS_H

#include <stdint.h>

#include <stdbool.h>
#include <stddef.h>

#include "block_list.h"
#include "kvbm/status.h"

enum {
    KVBM__SEG_TAIL = 0,      /* used once, the deepest block of its release run */
    KVBM__SEG_PROBATION = 1, /* used once */
    KVBM__SEG_PROTECTED = 2, /* used at least twice */
    KVBM__SEG_COLD = 3,      /* used once, of a class predicted not to come back */
    KVBM__SEG_COUNT = 4,
    KVBM__SEG_NONE = 0xff, /* not in any list */
};

/* A bonus beyond any stamp difference: "never before the other segments". */
#define KVBM__SEG_FAR ((int64_t)1 << 56)

typedef struct kvbm__segments {
    kvbm__block_links_t links;                 /* capacity entries */
    kvbm__block_list_t lists[KVBM__SEG_COUNT]; /* front = oldest release */
    uint64_t *stamp;                           /* capacity; release stamp */
    uint8_t *seg_plus_one; /* capacity; KVBM__SEG_* + 1, 0 (calloc) when in no list, so
                            * init touches none of its pages (kvbm__segments_of) */
    uint64_t clock;        /* the last stamp given */
} kvbm__segments_t;

/* Allocates for ids 0..capacity-1 (capacity >= 1), all outside the lists.
 * Returns KVBM_OK or KVBM_ERR_NO_MEMORY (nothing to free). */
kvbm_status_t kvbm__segments_init(kvbm__segments_t *s, uint32_t capacity);
/* Frees what init allocated; safe on a zeroed or failed one. */
void kvbm__segments_fini(kvbm__segments_t *s);
/* Puts @p id (in no list) at the back of @p seg with a new stamp. */
void kvbm__segments_push(kvbm__segments_t *s, uint32_t id, uint8_t seg);
/* Takes @p id out of its list (it must be in one). */
void kvbm__segments_unlink(kvbm__segments_t *s, uint32_t id);
/* The segment @p id is in, KVBM__SEG_NONE if none. */
static inline uint8_t kvbm__segments_of(const kvbm__segments_t *s, uint32_t id)
{
    return s->seg_plus_one[id] == 0 ? (uint8_t)KVBM__SEG_NONE : (uint8_t)(s->seg_plus_one[id] - 1);
}
/* Total number of ids in the lists. */
size_t kvbm__segments_size(const kvbm__segments_t *s);
/*
 * Takes out and returns, in *id_out, the head with the smallest stamp +
 * bonus[seg] (ties: the lower segment). @p bonus is in stamps. Returns false
 * only when every list is empty.
 */
bool kvbm__segments_pop(kvbm__segments_t *s, const int64_t bonus[KVBM__SEG_COUNT],
                        uint32_t *id_out);

#endif /* KVBM_HOST_POLICY_SEGMENTS_H */
