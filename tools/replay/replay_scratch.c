/* The id arrays replay modes reuse from request to request (replay_mode.h). */
#include <stdlib.h>

#include "replay_mode.h"

kvbm_status_t replay_scratch_reserve(replay_scratch_t *scratch, size_t count)
{
    if (count <= scratch->capacity)
        return KVBM_OK;
    size_t capacity = count * 2;
    uint32_t *g1 = realloc(scratch->g1_ids, capacity * sizeof(uint32_t));
    if (g1 != NULL)
        scratch->g1_ids = g1;
    uint32_t *fresh = realloc(scratch->fresh_ids, capacity * sizeof(uint32_t));
    if (fresh != NULL)
        scratch->fresh_ids = fresh;
    uint32_t *g2 = realloc(scratch->g2_ids, capacity * sizeof(uint32_t));
    if (g2 != NULL)
        scratch->g2_ids = g2;
    uint32_t *g3 = realloc(scratch->g3_ids, capacity * sizeof(uint32_t));
    if (g3 != NULL)
        scratch->g3_ids = g3;
    uint32_t *rel = realloc(scratch->release_ids, capacity * sizeof(uint32_t));
    if (rel != NULL)
        scratch->release_ids = rel;
    kvbm_evicted_t *ev = realloc(scratch->evicted, capacity * sizeof(kvbm_evicted_t));
    if (ev != NULL)
        scratch->evicted = ev;
    if (g1 == NULL || fresh == NULL || g2 == NULL || g3 == NULL || rel == NULL || ev == NULL)
        return KVBM_ERR_NO_MEMORY;
    scratch->capacity = capacity;
    return KVBM_OK;
}

void replay_scratch_free(replay_scratch_t *scratch)
{
    free(scratch->g1_ids);
    free(scratch->fresh_ids);
    free(scratch->g2_ids);
    free(scratch->g3_ids);
    free(scratch->release_ids);
    free(scratch->evicted);
    *scratch = (replay_scratch_t){0};
}
