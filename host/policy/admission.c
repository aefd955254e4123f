/* G2 admission by learned return rates per block class; see kvbm/admission.h. */
#include "kvbm/admission.h"

#include <math.h>
#include <stdlib.h>

#include "core/alloc.h"
#include "core/config.h"
#include "core/error.h"
#include "ghost.h"

#define LENGTH_BUCKETS 8 /* log2 of the request length: 1, 2-3, ..., 128+ */
#define END_BUCKETS    4 /* distance from the request's end: 0, 1, 2, 3+ */
#define CLASS_REUSED   (LENGTH_BUCKETS * END_BUCKETS)
#define CLASS_UNKNOWN  (CLASS_REUSED + 1)
#define CLASS_COUNT    (CLASS_REUSED + 2)
#define COUNT_MAX      255u
#define GHOST_FACTOR   4u
#define NO_REQUEST     0u

/* What the filter knows about the block a G1 id holds. */
typedef struct held_block {
    uint32_t request_blocks; /* of the request that registered it; 0 unknown */
    uint32_t position;
    uint8_t count; /* uses of its hash, with those remembered across evictions */
    bool held;
} held_block_t;

struct kvbm_admission {
    held_block_t *blocks; /* g1_blocks */
    uint32_t g1_blocks;
    kvbm__ghost_t counts;  /* evicted hash -> its use count */
    kvbm__ghost_t returns; /* evicted hash -> its class, until it comes back */
    double evicted[CLASS_COUNT];
    double returned[CLASS_COUNT];
    double evicted_total;
    double returned_total;
    uint64_t evictions;
    uint64_t halve_every;
    uint64_t refused;
    double keep_ratio;
    uint32_t min_samples;
};

/* sizeof(kvbm_admission_config_t) at each published version (core/config.h). */
static const size_t admission_config_sizes[] = {sizeof(kvbm_admission_config_t)};

kvbm_status_t kvbm_admission_create(const kvbm_admission_config_t *caller_config,
                                    kvbm_admission_t **admission_out)
{
    KVBM_REQUIRE_ARG(caller_config != NULL);
    KVBM_REQUIRE_ARG(admission_out != NULL);
    const kvbm_admission_config_t defaults = KVBM_ADMISSION_CONFIG_INIT;
    kvbm_admission_config_t imported;
    kvbm_status_t status =
        KVBM__CONFIG_IMPORT(caller_config, admission_config_sizes, &defaults, &imported);
    if (status != KVBM_OK)
        return status;
    const kvbm_admission_config_t *config = &imported;
    if (config->g1_blocks == 0 || config->g2_blocks == 0)
        return kvbm__fail(KVBM_ERR_INVALID_ARG,
                          "admission config: g1_blocks %u and g2_blocks %u must both be >= 1",
                          config->g1_blocks, config->g2_blocks);
    if (!isfinite(config->keep_ratio) || config->keep_ratio < 0.0)
        return kvbm__fail(KVBM_ERR_INVALID_ARG,
                          "admission config: keep_ratio %g is not a finite number >= 0",
                          config->keep_ratio);
    kvbm_admission_t *a = kvbm__calloc(1, sizeof(*a));
    if (a == NULL)
        return KVBM_ERR_NO_MEMORY;
    status = KVBM_ERR_NO_MEMORY;
    a->blocks = kvbm__calloc(config->g1_blocks, sizeof(held_block_t));
    if (a->blocks == NULL)
        goto err_free;
    size_t both = (size_t)config->g1_blocks + config->g2_blocks;
    status = kvbm__ghost_init(&a->counts, GHOST_FACTOR * both);
    if (status != KVBM_OK)
        goto err_free;
    status = kvbm__ghost_init(&a->returns, GHOST_FACTOR * (size_t)config->g2_blocks);
    if (status != KVBM_OK)
        goto err_fini_counts;
    a->g1_blocks = config->g1_blocks;
    a->halve_every = GHOST_FACTOR * (uint64_t)config->g2_blocks;
    a->keep_ratio = config->keep_ratio;
    a->min_samples = config->min_samples;
    *admission_out = a;
    return KVBM_OK;

err_fini_counts:
    kvbm__ghost_fini(&a->counts);
err_free:
    kvbm__free(a->blocks);
    kvbm__free(a);
    return status;
}

void kvbm_admission_destroy(kvbm_admission_t *admission)
{
    if (admission == NULL)
        return;
    kvbm__ghost_fini(&admission->returns);
    kvbm__ghost_fini(&admission->counts);
    kvbm__free(admission->blocks);
    kvbm__free(admission);
}

static uint8_t class_of(const held_block_t *b)
{
    if (b->count >= 2)
        return CLASS_REUSED;
    if (b->request_blocks == NO_REQUEST || b->position >= b->request_blocks)
        return CLASS_UNKNOWN;
    uint32_t length = 0;
    while (length + 1 < LENGTH_BUCKETS && (b->request_blocks >> (length + 1)) != 0)
        length++;
    uint32_t from_end = b->request_blocks - 1 - b->position;
    if (from_end >= END_BUCKETS)
        from_end = END_BUCKETS - 1;
    return (uint8_t)(length * END_BUCKETS + from_end);
}

void kvbm_admission_hit(kvbm_admission_t *admission, uint32_t g1_id)
{
    if (g1_id >= admission->g1_blocks || !admission->blocks[g1_id].held)
        return;
    held_block_t *b = &admission->blocks[g1_id];
    if (b->count < COUNT_MAX)
        b->count++;
}

void kvbm_admission_registered(kvbm_admission_t *admission, uint32_t g1_id, uint64_t hash,
                               uint32_t request_blocks, uint32_t position)
{
    if (g1_id >= admission->g1_blocks)
        return;
    /* A hash evicted recently enough is back: its class was worth keeping. */
    uint8_t evicted_class;
    if (kvbm__ghost_take(&admission->returns, hash, &evicted_class)) {
        admission->returned[evicted_class] += 1.0;
        admission->returned_total += 1.0;
    }
    uint8_t remembered = 0;
    kvbm__ghost_take(&admission->counts, hash, &remembered);
    admission->blocks[g1_id] = (held_block_t){
        .request_blocks = request_blocks,
        .position = position,
        .count = remembered < COUNT_MAX ? (uint8_t)(remembered + 1) : (uint8_t)COUNT_MAX,
        .held = true,
    };
}

bool kvbm_admission_evicted(kvbm_admission_t *admission, uint32_t g1_id, uint64_t hash, bool in_g2)
{
    held_block_t unknown = {.count = 1};
    held_block_t *b = g1_id < admission->g1_blocks && admission->blocks[g1_id].held
                          ? &admission->blocks[g1_id]
                          : &unknown;
    uint8_t c = class_of(b);
    kvbm__ghost_add(&admission->counts, hash, b->count);
    kvbm__ghost_add(&admission->returns, hash, c);
    b->held = false;
    admission->evicted[c] += 1.0;
    admission->evicted_total += 1.0;
    if (++admission->evictions % admission->halve_every == 0) {
        for (int i = 0; i < CLASS_COUNT; i++) {
            admission->evicted[i] /= 2.0;
            admission->returned[i] /= 2.0;
        }
        admission->evicted_total /= 2.0;
        admission->returned_total /= 2.0;
    }
    if (in_g2)
        return false;
    /* Offload unless the class has enough history and comes back less
     * often than keep_ratio times evicted blocks overall. */
    if (admission->evicted[c] < (double)admission->min_samples)
        return true;
    double overall = admission->returned_total / admission->evicted_total;
    if (admission->returned[c] >= admission->keep_ratio * overall * admission->evicted[c])
        return true;
    admission->refused++;
    return false;
}

uint64_t kvbm_admission_refused(const kvbm_admission_t *admission)
{
    return admission->refused;
}
