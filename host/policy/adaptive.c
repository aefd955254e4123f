/*
 * adaptive: a segmented LRU that measures, online, which of a few victim
 * rules suits the workload, and follows the best; LRU is one of the rules,
 * and the policy falls back to it unless another rule is measurably better.
 *
 * Every inactive block is in one of four lists (segments.h), each in
 * release order: tail (used once, the deepest block of its release run, or
 * the request's last block by the hint), cold (used once, of a class
 * predicted not to come back), probation (used once), protected (used at
 * least twice). Counts are kept by hash across evictions in a ghost of
 * 4 x capacity hashes, as in slru. A rule is a bonus per list; the victim
 * is the head whose release stamp plus bonus is smallest:
 *
 *                     tail  probation  protected  cold
 *   lru               0     0          0          0     plain LRU
 *   lru_tails_first   -far  0          0          0     tails first, then LRU
 *   protect_1x        -far  0          +C         0     ... reused blocks kept
 *                                                       one capacity C longer
 *   slru              -far  +far       +2far      +far  (= slru)
 *   cold_first, cold_protect_1x, cold_slru: the three above with cold
 *   blocks evicted with the tails (-far).
 *
 * The reuse prediction (used only when registrations carry hints): a
 * once-used block's class is its request's length (log2 buckets) times its
 * distance from the request's end (0, 1, 2, 3+), as in the G2 admission
 * filter. Each class learns online how often its first uses are followed by
 * a second (while held, or back from the ghost); a class with at least 32
 * first uses of history and a rate below half the overall one is cold. The
 * counts are halved every 4 x capacity evictions. Without hints no block is
 * cold and the cold rules equal their hint-less twins.
 *
 * Which rule: set dueling by miniature simulation (Qureshi et al., "Adaptive
 * insertion policies for high performance caching", ISCA 2007; Waldspurger
 * et al., USENIX ATC 2017). A 1-in-R sample of hashes (R a power of two
 * making capacity / R about 256..511 entries) drives one small cache per
 * rule (mini_sim.h); their hit counts are halved every WINDOW sampled
 * accesses so the choice follows a changing workload, and every WINDOW / 16
 * sampled accesses the policy switches to the rule with the most hits, or
 * stays on (or returns to) lru when no rule beats it. All rules share the
 * lists, so a switch takes effect at the next victim with nothing to move.
 *
 * Cost: insert, remove, touch O(1) expected (one ghost lookup when a hash is
 * new to a block, and for a sampled hash one map operation per small
 * cache); pop O(1) (four list heads). Memory: per block 8 (links) + 8
 * (stamp) + 8 (hash) + 4 bytes, the ghost (4 x capacity hashes), and seven
 * small caches of capacity / R entries. Nothing is allocated after create.
 */
#include "batch_loops.h"
#include "adaptive.h"

#include <stdlib.h>
#include <xxhash.h>

#include "core/alloc.h"
#include "ghost.h"
#include "kvbm/policy.h"
#include "mini_sim.h"
#include "segments.h"

#define GHOST_FACTOR 4u /* as slru (docs/POLICIES.md, "slru") */
#define COUNT_MAX    255u
#define SIM_MIN      256u /* the small caches hold SIM_MIN..2*SIM_MIN-1 entries */
#define SAMPLE_MAX   1024u
#define WINDOW_MIN   1000u
#define SAMPLE_SEED  0x6b76626d2d616470ULL
#define FLAG_KNOWN   1u /* hash[] holds the block's hash */
#define FLAG_SAMPLED 2u /* and that hash is in the sample */
#define FLAG_HINTED  4u /* its registration carried hints */
#define FLAG_LAST    8u /* ... saying it is the last block of its request */

/* Reuse classes of once-used blocks, from the registration hints (as the G2
 * admission filter's): log2 of the request's length in blocks (1, 2-3, ...,
 * 128+) times the distance from the request's end (0, 1, 2, 3+). */
#define LENGTH_BUCKETS  8
#define END_BUCKETS     4
#define CLASS_UNKNOWN   (LENGTH_BUCKETS * END_BUCKETS) /* no hints */
#define CLASS_COUNT     (CLASS_UNKNOWN + 1)
#define COLD_MIN_TRIALS 32.0 /* history a class needs before it can be cold */
#define COLD_RATIO      0.5  /* cold: reuse rate below this times the overall one */
#define COLD_REFRESH    256u /* learning events between two refreshes of the cold set */
/* A ghost value: the evicted block was reused, or its class + 1. */
#define GHOST_REUSED 255u

typedef struct rule {
    const char *name;
    int64_t bonus[KVBM__SEG_COUNT]; /* in capacities, or +-KVBM__SEG_FAR multiples */
} rule_t;

static const rule_t rules[] = {
#define RULE_ROW(name, tail, probation, protected, cold)                                           \
    {#name, {tail, probation, protected, cold}},
    KVBM__ADAPTIVE_RULES_LIST(RULE_ROW)
#undef RULE_ROW
};
#define RULE_COUNT (sizeof(rules) / sizeof(rules[0]))

typedef struct adaptive_policy {
    kvbm__segments_t order;
    uint8_t *count; /* capacity; uses of hash[] so far, saturating */
    uint8_t *flags; /* capacity; FLAG_* */
    uint64_t *hash; /* capacity */
    /* The current run of inserts: the parent of the block inserted last. */
    bool run_open;
    bool run_has_parent;
    uint64_t run_parent;
    kvbm__ghost_t ghost; /* evicted hashes: GHOST_REUSED or class + 1 */
    /* Reuse prediction: of the once-used blocks of each class whose first
     * use ended (reused while held, or evicted), how many were used again
     * (while held, or back from the ghost). Halved every halve_every
     * evictions so the rates follow the workload. */
    uint8_t *klass;             /* capacity; CLASS_* of the block's first use */
    double trials[CLASS_COUNT]; /* first uses that ended */
    double reuses[CLASS_COUNT]; /* ... that were followed by a second use */
    double trials_total, reuses_total;
    uint64_t evictions;
    uint64_t halve_every;
    uint32_t events_to_refresh;
    uint64_t cold_classes; /* bit c: class c is predicted not to come back */
    /* Set dueling. */
    kvbm__mini_sim_t sims[RULE_COUNT];
    uint64_t sample_mask; /* R - 1 */
    uint64_t sampled;     /* sampled accesses so far */
    uint64_t window;      /* sampled accesses between two halvings of the hits */
    uint64_t choose_every;
    uint32_t rule;                  /* the rule followed now */
    int64_t bonus[KVBM__SEG_COUNT]; /* its bonuses in stamps of this cache */
    int64_t rule_bonus[RULE_COUNT][KVBM__SEG_COUNT];
} adaptive_policy_t;

/* The class of a block registered at @p position of a request of
 * @p request_blocks blocks (0: no hints). */
static uint8_t class_of(uint32_t request_blocks, uint32_t position)
{
    if (request_blocks == 0 || position >= request_blocks)
        return CLASS_UNKNOWN;
    uint32_t length = 0;
    while (length + 1 < LENGTH_BUCKETS && (request_blocks >> (length + 1)) != 0)
        length++;
    uint32_t from_end = request_blocks - 1 - position;
    if (from_end >= END_BUCKETS)
        from_end = END_BUCKETS - 1;
    return (uint8_t)(length * END_BUCKETS + from_end);
}

uint32_t kvbm__adaptive_rule(const void *state)
{
    const adaptive_policy_t *p = state;
    return p->rule;
}

uint8_t kvbm__adaptive_segment(const void *state, uint32_t id)
{
    const adaptive_policy_t *p = state;
    return kvbm__segments_of(&p->order, id);
}

bool kvbm__adaptive_class_cold(const void *state, uint32_t request_blocks, uint32_t position)
{
    const adaptive_policy_t *p = state;
    return (p->cold_classes >> class_of(request_blocks, position)) & 1u;
}

const char *kvbm__adaptive_rule_name(uint32_t rule)
{
    return rule < RULE_COUNT ? rules[rule].name : "?";
}

static void adaptive_destroy(void *state)
{
    adaptive_policy_t *p = state;
    if (p == NULL)
        return;
    for (size_t r = 0; r < RULE_COUNT; r++)
        kvbm__mini_sim_fini(&p->sims[r]);
    kvbm__ghost_fini(&p->ghost);
    kvbm__segments_fini(&p->order);
    kvbm__free(p->hash);
    kvbm__free(p->klass);
    kvbm__free(p->flags);
    kvbm__free(p->count);
    kvbm__free(p);
}

static kvbm_status_t adaptive_create(const kvbm_policy_config_t *config, uint32_t capacity,
                                     void **state_out)
{
    (void)config;
    kvbm_status_t status = KVBM_ERR_NO_MEMORY;
    adaptive_policy_t *p = kvbm__calloc(1, sizeof(*p));
    if (p == NULL)
        return KVBM_ERR_NO_MEMORY;
    size_t n = capacity != 0 ? capacity : 1;
    p->count = kvbm__calloc(n, 1);
    p->flags = kvbm__calloc(n, 1);
    p->hash = kvbm__alloc(n, sizeof(uint64_t));
    p->klass = kvbm__alloc(n, 1);
    if (p->count == NULL || p->flags == NULL || p->hash == NULL || p->klass == NULL)
        goto err_destroy;
    status = kvbm__segments_init(&p->order, (uint32_t)n);
    if (status != KVBM_OK)
        goto err_destroy;
    status = kvbm__ghost_init(&p->ghost, n * GHOST_FACTOR);
    if (status != KVBM_OK)
        goto err_destroy;

    /* Sample 1 in R hashes, R the largest power of two (at most SAMPLE_MAX)
     * leaving the small caches at least SIM_MIN entries; small pools are
     * simulated whole. */
    uint64_t r = 1;
    while (r < SAMPLE_MAX && n / (r * 2) >= SIM_MIN)
        r *= 2;
    p->sample_mask = r - 1;
    uint32_t sim_capacity = (uint32_t)(n / r);
    for (size_t i = 0; i < RULE_COUNT; i++) {
        status = kvbm__mini_sim_init(&p->sims[i], sim_capacity, rules[i].bonus);
        if (status != KVBM_OK)
            goto err_destroy;
        for (int s = 0; s < KVBM__SEG_COUNT; s++)
            p->rule_bonus[i][s] = kvbm__segment_bonus_stamps(rules[i].bonus[s], (uint32_t)n);
    }
    p->window = 4ull * sim_capacity > WINDOW_MIN ? 4ull * sim_capacity : WINDOW_MIN;
    p->choose_every = p->window / 16;
    p->rule = 0;
    for (int s = 0; s < KVBM__SEG_COUNT; s++)
        p->bonus[s] = p->rule_bonus[0][s];
    p->halve_every = (uint64_t)n * GHOST_FACTOR;
    p->events_to_refresh = COLD_REFRESH;
    *state_out = p;
    return KVBM_OK;

err_destroy:
    adaptive_destroy(p);
    return status;
}

/* Switches to the rule whose small cache has the most recent hits, or to
 * lru when none has more than lru's. */
static void choose_rule(adaptive_policy_t *p)
{
    uint32_t best = 0;
    for (uint32_t r = 1; r < RULE_COUNT; r++)
        if (p->sims[r].hits > p->sims[best].hits)
            best = r;
    p->rule = best;
    for (int s = 0; s < KVBM__SEG_COUNT; s++)
        p->bonus[s] = p->rule_bonus[best][s];
}

static void count_sampled_access(adaptive_policy_t *p, uint64_t hash)
{
    for (size_t r = 0; r < RULE_COUNT; r++)
        kvbm__mini_sim_access(&p->sims[r], hash);
    p->sampled++;
    if (p->sampled % p->choose_every == 0)
        choose_rule(p);
    if (p->sampled % p->window == 0)
        for (size_t r = 0; r < RULE_COUNT; r++)
            p->sims[r].hits /= 2;
}

/* Recomputes which classes are cold: those with enough history whose
 * reuse rate is below COLD_RATIO times the rate over all classes. */
static void refresh_cold_classes(adaptive_policy_t *p)
{
    p->events_to_refresh = COLD_REFRESH;
    uint64_t cold = 0;
    if (p->trials_total > 0.0) {
        double overall = p->reuses_total / p->trials_total;
        for (int c = 0; c < CLASS_UNKNOWN; c++)
            if (p->trials[c] >= COLD_MIN_TRIALS &&
                p->reuses[c] < COLD_RATIO * overall * p->trials[c])
                cold |= 1ull << c;
    }
    p->cold_classes = cold;
}

static void count_learning_event(adaptive_policy_t *p)
{
    if (--p->events_to_refresh == 0)
        refresh_cold_classes(p);
}

/* The first use of a block of class @p c ended: by a second use while the
 * block was held (@p reused), or by its eviction. */
static void learn_trial(adaptive_policy_t *p, uint8_t c, bool reused)
{
    if (c >= CLASS_UNKNOWN)
        return;
    double r = reused ? 1.0 : 0.0;
    p->trials[c] += 1.0;
    p->trials_total += 1.0;
    p->reuses[c] += r;
    p->reuses_total += r;
    count_learning_event(p);
}

/* A block of class @p c evicted after its first use came back. */
static void learn_return(adaptive_policy_t *p, uint8_t c)
{
    if (c >= CLASS_UNKNOWN)
        return;
    p->reuses[c] += 1.0;
    p->reuses_total += 1.0;
    count_learning_event(p);
}

/* Halves the learned counts every halve_every evictions. */
static void age_learning(adaptive_policy_t *p)
{
    if (++p->evictions % p->halve_every != 0)
        return;
    for (int c = 0; c < CLASS_COUNT; c++) {
        p->trials[c] /= 2.0;
        p->reuses[c] /= 2.0;
    }
    p->trials_total /= 2.0;
    p->reuses_total /= 2.0;
}

/* Whether block @p id already holds @p hash; if not, it takes it, with the
 * count its hash had when it was last evicted plus this first use. */
static bool identify(adaptive_policy_t *p, uint32_t id, uint64_t hash)
{
    if ((p->flags[id] & FLAG_KNOWN) && p->hash[id] == hash)
        return true;
    uint8_t remembered = 0;
    p->count[id] = 1;
    if (kvbm__ghost_take(&p->ghost, hash, &remembered)) {
        /* Back after an eviction: a second use at least. A block evicted
         * after one use is a reuse of the class it had then (its trial was
         * counted at the eviction). */
        p->count[id] = remembered == GHOST_REUSED ? 3 : 2;
        if (remembered != GHOST_REUSED)
            learn_return(p, (uint8_t)(remembered - 1));
    }
    p->hash[id] = hash;
    p->klass[id] = CLASS_UNKNOWN;
    uint64_t mixed = XXH3_64bits_withSeed(&hash, sizeof(hash), SAMPLE_SEED);
    p->flags[id] = FLAG_KNOWN | ((mixed & p->sample_mask) == 0 ? FLAG_SAMPLED : 0u);
    return false;
}

static void adaptive_insert(void *state, const kvbm_policy_entry_t *entry)
{
    adaptive_policy_t *p = state;
    uint32_t id = entry->block_id;
    identify(p, id, entry->seq_hash);
    /* A tail is the request's last block: the hint says so exactly; without
     * it, the first insert of a release run stands for it (see slru). */
    bool continues_run = p->run_open && p->run_has_parent && p->run_parent == entry->seq_hash;
    bool tail = (p->flags[id] & FLAG_HINTED) ? (p->flags[id] & FLAG_LAST) != 0 : !continues_run;
    bool cold = (p->cold_classes >> p->klass[id]) & 1u;
    uint8_t seg = p->count[id] >= 2 ? KVBM__SEG_PROTECTED
                  : tail            ? KVBM__SEG_TAIL
                  : cold            ? KVBM__SEG_COLD
                                    : KVBM__SEG_PROBATION;
    kvbm__segments_push(&p->order, id, seg);
    if (p->flags[id] & FLAG_SAMPLED)
        for (size_t r = 0; r < RULE_COUNT; r++)
            kvbm__mini_sim_release(&p->sims[r], entry->seq_hash, seg);
    p->run_open = true;
    p->run_has_parent = entry->has_parent;
    p->run_parent = entry->parent_hash;
}

static void adaptive_remove(void *state, uint32_t block_id)
{
    adaptive_policy_t *p = state;
    kvbm__segments_unlink(&p->order, block_id);
    p->run_open = false;
    /* The count and hash stay: the block is in use and comes back on release. */
}

static bool adaptive_pop_victim(void *state, uint32_t *block_id_out)
{
    adaptive_policy_t *p = state;
    p->run_open = false;
    uint32_t id;
    if (!kvbm__segments_pop(&p->order, p->bonus, &id))
        return false;
    assert(p->flags[id] & FLAG_KNOWN);
    if (p->count[id] >= 2) {
        kvbm__ghost_add(&p->ghost, p->hash[id], GHOST_REUSED);
    } else {
        learn_trial(p, p->klass[id], false);
        kvbm__ghost_add(&p->ghost, p->hash[id], (uint8_t)(p->klass[id] + 1));
    }
    age_learning(p);
    p->flags[id] = 0; /* the block loses its hash */
    p->count[id] = 0;
    *block_id_out = id;
    return true;
}

static void adaptive_touch(void *state, const kvbm_policy_entry_t *entry, bool inactive)
{
    adaptive_policy_t *p = state;
    uint32_t id = entry->block_id;
    p->run_open = false;
    /* A hash new to this block is its registration: identify counts that
     * use. Otherwise this is another use of the same block. */
    if (identify(p, id, entry->seq_hash) && p->count[id] < COUNT_MAX) {
        if (p->count[id] == 1)
            learn_trial(p, p->klass[id], true);
        p->count[id]++;
    }
    if (p->flags[id] & FLAG_SAMPLED)
        count_sampled_access(p, entry->seq_hash);
    /* The manager removes an inactive block right after touching it; a touch
     * that leaves it in the pool refreshes it, into protected once reused. */
    uint8_t current = kvbm__segments_of(&p->order, id);
    if (inactive && current != KVBM__SEG_NONE) {
        uint8_t seg = p->count[id] >= 2 ? KVBM__SEG_PROTECTED : current;
        kvbm__segments_unlink(&p->order, id);
        kvbm__segments_push(&p->order, id, seg);
    }
}

static void adaptive_hint(void *state, const kvbm_policy_entry_t *entry,
                          const kvbm_policy_hint_t *hint)
{
    adaptive_policy_t *p = state;
    uint32_t id = entry->block_id;
    /* The registration touch just gave the block its hash; the flags last
     * until it takes another. */
    if (!(p->flags[id] & FLAG_KNOWN) || p->hash[id] != entry->seq_hash)
        return;
    p->flags[id] |= FLAG_HINTED;
    if (hint->last)
        p->flags[id] |= FLAG_LAST;
    if (p->count[id] == 1)
        p->klass[id] = class_of(hint->request_blocks, hint->position);
}

static size_t adaptive_size(const void *state)
{
    const adaptive_policy_t *p = state;
    return kvbm__segments_size(&p->order);
}

KVBM__POLICY_BATCH_LOOPS(adaptive)

static const kvbm_policy_ops_t adaptive_ops = {
    .version = KVBM_POLICY_OPS_VERSION,
    .name = "adaptive",
    .create = adaptive_create,
    .destroy = adaptive_destroy,
    .insert = adaptive_insert,
    .remove = adaptive_remove,
    .pop_victim = adaptive_pop_victim,
    .touch = adaptive_touch,
    .size = adaptive_size,
    .hint = adaptive_hint,
    KVBM__POLICY_BATCH_SLOTS(adaptive),
};

const kvbm_policy_ops_t *kvbm_policy_adaptive(void)
{
    return &adaptive_ops;
}
