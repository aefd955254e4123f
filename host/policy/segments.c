/* Segmented release order with per-segment bonuses; see segments.h. */
#include "segments.h"

#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"

kvbm_status_t kvbm__segments_init(kvbm__segments_t *s, uint32_t capacity)
{
    memset(s, 0, sizeof(*s));
    size_t n = capacity != 0 ? capacity : 1;
    s->links.at = kvbm__alloc(n, sizeof(kvbm__block_link_t));
    s->stamp = kvbm__alloc(n, sizeof(uint64_t));
    s->seg_plus_one = kvbm__calloc(n, 1);
    if (s->links.at == NULL || s->stamp == NULL || s->seg_plus_one == NULL) {
        kvbm__segments_fini(s);
        return KVBM_ERR_NO_MEMORY;
    }
    for (int i = 0; i < KVBM__SEG_COUNT; i++)
        kvbm__block_list_init(&s->lists[i]);
    return KVBM_OK;
}

void kvbm__segments_fini(kvbm__segments_t *s)
{
    kvbm__free(s->links.at);
    kvbm__free(s->stamp);
    kvbm__free(s->seg_plus_one);
    memset(s, 0, sizeof(*s));
}

void kvbm__segments_push(kvbm__segments_t *s, uint32_t id, uint8_t seg)
{
    assert(seg < KVBM__SEG_COUNT && kvbm__segments_of(s, id) == KVBM__SEG_NONE);
    kvbm__block_list_push_back(&s->lists[seg], &s->links, id);
    s->seg_plus_one[id] = (uint8_t)(seg + 1);
    s->stamp[id] = ++s->clock;
}

void kvbm__segments_unlink(kvbm__segments_t *s, uint32_t id)
{
    uint8_t seg = kvbm__segments_of(s, id);
    assert(seg < KVBM__SEG_COUNT);
    kvbm__block_list_unlink(&s->lists[seg], &s->links, id);
    s->seg_plus_one[id] = 0;
}

size_t kvbm__segments_size(const kvbm__segments_t *s)
{
    size_t n = 0;
    for (int i = 0; i < KVBM__SEG_COUNT; i++)
        n += s->lists[i].size;
    return n;
}

bool kvbm__segments_pop(kvbm__segments_t *s, const int64_t bonus[KVBM__SEG_COUNT], uint32_t *id_out)
{
    int best = -1;
    int64_t best_key = 0;
    for (int i = 0; i < KVBM__SEG_COUNT; i++) {
        uint32_t head = s->lists[i].head;
        if (head == KVBM_BLOCK_NONE)
            continue;
        /* Stamps stay far below 2^62 and |bonus| is at most 2^57, so the
         * sum cannot overflow. */
        int64_t key = (int64_t)s->stamp[head] + bonus[i];
        if (best < 0 || key < best_key) {
            best = i;
            best_key = key;
        }
    }
    if (best < 0)
        return false;
    uint32_t id = s->lists[best].head;
    kvbm__segments_unlink(s, id);
    *id_out = id;
    return true;
}
