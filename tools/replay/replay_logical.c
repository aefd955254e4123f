/*
 * Logical mode: the contract's sequential model over logical managers. G2
 * (and G3 below it) are further managers wired here: an offload is "take a
 * block of the lower tier, register the hash, release it"; an onboard is a
 * match whose blocks are released once the G1 blocks are registered. No
 * bytes move in this mode.
 */
#include <stdlib.h>

#include "kvbm/admission.h"
#include "replay_mode.h"

typedef struct logical {
    /* Borrowed, optional: where the managers' records go, flushed once per
     * request (as the cache flushes once per call in data mode). */
    kvbm_event_batcher_t *events;
    kvbm_manager_t *g1;
    kvbm_manager_t *g2;          /* NULL without a host tier */
    kvbm_manager_t *g3;          /* NULL without a disk tier */
    kvbm_admission_t *admission; /* with G2 admission; else NULL */
    bool hints;                  /* registrations carry the request length and position */
    replay_scratch_t scratch;
} logical_t;

/* The manager of one tier (GPU: G1, CPU: G2, DISK: G3); G3's policy is
 * G2's unless one is given. */
static kvbm_status_t make_manager(const logical_t *l, const replay_config_t *replay_config,
                                  kvbm_medium_t medium, kvbm_manager_t **manager_out)
{
    static const char *const names[] = {
        [KVBM_MEDIUM_GPU] = "g1", [KVBM_MEDIUM_CPU] = "g2", [KVBM_MEDIUM_DISK] = "g3"};
    const uint32_t blocks[] = {[KVBM_MEDIUM_GPU] = replay_config->g1_blocks,
                               [KVBM_MEDIUM_CPU] = replay_config->g2_blocks,
                               [KVBM_MEDIUM_DISK] = replay_config->g3_blocks};
    const kvbm_policy_ops_t *g3_policy =
        replay_config->g3_policy != NULL ? replay_config->g3_policy : replay_config->g2_policy;
    const kvbm_policy_ops_t *policies[] = {[KVBM_MEDIUM_GPU] = replay_config->g1_policy,
                                           [KVBM_MEDIUM_CPU] = replay_config->g2_policy,
                                           [KVBM_MEDIUM_DISK] = g3_policy};
    kvbm_manager_config_t config = KVBM_MANAGER_CONFIG_INIT;
    config.num_blocks = blocks[medium];
    config.duplication = KVBM_DUPLICATION_REJECT;
    config.policy = policies[medium];
    config.policy_config = replay_config->policy_config;
    config.name = names[medium];
    config.medium = medium;
    if (l->events != NULL) {
        config.on_events = kvbm_event_batcher_sink;
        config.events_ctx = l->events;
    }
    return kvbm_manager_create(&config, manager_out);
}

/* The G2 admission filter when asked for (and there is a G2). */
static kvbm_status_t admission_open(logical_t *l, const replay_config_t *config)
{
    if (!config->g2_admission || config->g2_blocks == 0)
        return KVBM_OK;
    kvbm_admission_config_t ac = KVBM_ADMISSION_CONFIG_INIT;
    ac.g1_blocks = config->g1_blocks;
    ac.g2_blocks = config->g2_blocks;
    if (config->admission_keep_ratio != 0.0)
        ac.keep_ratio = config->admission_keep_ratio;
    return kvbm_admission_create(&ac, &l->admission);
}

static kvbm_status_t logical_open(const replay_config_t *config, void **state_out)
{
    logical_t *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return KVBM_ERR_NO_MEMORY;
    kvbm_status_t status = KVBM_OK;
    l->events = config->events;
    status = make_manager(l, config, KVBM_MEDIUM_GPU, &l->g1);
    if (status != KVBM_OK)
        goto err_free;
    if (config->g2_blocks > 0) {
        status = make_manager(l, config, KVBM_MEDIUM_CPU, &l->g2);
        if (status != KVBM_OK)
            goto err_destroy_g1;
    }
    if (config->g3_blocks > 0) {
        status = make_manager(l, config, KVBM_MEDIUM_DISK, &l->g3);
        if (status != KVBM_OK)
            goto err_destroy_g2;
    }
    status = admission_open(l, config);
    if (status != KVBM_OK)
        goto err_destroy_g3;
    l->hints = !config->no_hints;
    *state_out = l;
    return KVBM_OK;

err_destroy_g3:
    kvbm_manager_destroy(l->g3);
err_destroy_g2:
    kvbm_manager_destroy(l->g2);
err_destroy_g1:
    kvbm_manager_destroy(l->g1);
err_free:
    free(l);
    return status;
}

static void logical_close(void *state)
{
    logical_t *l = state;
    kvbm_manager_destroy(l->g1);
    kvbm_manager_destroy(l->g2);
    kvbm_manager_destroy(l->g3);
    kvbm_admission_destroy(l->admission);
    replay_scratch_free(&l->scratch);
    free(l);
}

static kvbm_status_t release_reversed(logical_t *l, kvbm_manager_t *manager, const uint32_t *ids,
                                      size_t count)
{
    uint32_t *reversed = l->scratch.release_ids;
    const uint32_t *from = ids + count;
    for (uint32_t *to = reversed; to < reversed + count; to++)
        *to = *--from;
    return kvbm_manager_release(manager, reversed, count);
}

/* The G3 part of step 4: a G2 victim is copied to G3 unless G3 has its hash
 * (free G3 block first, else G3's victim, which is dropped), registered with
 * the parent it had in G2. */
static kvbm_status_t offload_to_g3(logical_t *l, const kvbm_evicted_t *from_g2,
                                   replay_counts_t *counts)
{
    uint64_t hash = from_g2->seq_hash;
    if (kvbm_manager_contains(l->g3, hash))
        return KVBM_OK;
    uint32_t block, registered;
    kvbm_evicted_t evicted;
    size_t n_evicted = 0;
    kvbm_status_t status = kvbm_manager_allocate(l->g3, 1, &block, &evicted, &n_evicted);
    if (status == KVBM_ERR_NO_BLOCKS) {
        counts->g3_offload_skipped++;
        return KVBM_OK;
    }
    if (status != KVBM_OK)
        return status;
    counts->g3_evictions += n_evicted;
    kvbm_register_opts_t opts = {.parent_for_events_only = true,
                                 .has_parent = from_g2->has_parent,
                                 .parent_hash = from_g2->parent_hash,
                                 .priority = 50,
                                 .block_size = REPLAY_BLOCK_TOKENS};
    status = kvbm_manager_register(l->g3, &block, &hash, 1, &opts, &registered);
    if (status != KVBM_OK)
        return status;
    counts->g3_offloads++;
    return kvbm_manager_release(l->g3, &registered, 1);
}

/* Step 4's offload of one evicted G1 block into G2 (inclusive: skipped when
 * G2 has the hash already), registered with the parent it had in G1. With a
 * G3, the G2 victim goes to G3 first. */
static kvbm_status_t offload_one(logical_t *l, const kvbm_evicted_t *from_g1,
                                 replay_counts_t *counts)
{
    uint64_t hash = from_g1->seq_hash;
    bool in_g2 = kvbm_manager_contains(l->g2, hash);
    /* With G2 admission the filter sees every eviction and may refuse it. */
    bool offload = true;
    if (l->admission != NULL)
        (void)kvbm_admission_evicted(l->admission, from_g1->block_id, hash, in_g2,
                                     &offload); /* cannot fail: both set */
    if (!offload && !in_g2) {
        counts->offload_refused++;
        return KVBM_OK;
    }
    if (in_g2)
        return KVBM_OK;
    uint32_t block, registered;
    kvbm_evicted_t evicted;
    size_t n_evicted = 0;
    kvbm_status_t status = kvbm_manager_allocate(l->g2, 1, &block, &evicted, &n_evicted);
    if (status == KVBM_ERR_NO_BLOCKS) {
        counts->offload_skipped++;
        return KVBM_OK;
    }
    if (status != KVBM_OK)
        return status;
    counts->g2_evictions += n_evicted;
    if (n_evicted > 0 && l->g3 != NULL) {
        status = offload_to_g3(l, &evicted, counts);
        if (status != KVBM_OK)
            return status;
    }
    kvbm_register_opts_t opts = {.parent_for_events_only = true, /* as the cache does */
                                 .has_parent = from_g1->has_parent,
                                 .parent_hash = from_g1->parent_hash,
                                 .priority = 50,
                                 .block_size = REPLAY_BLOCK_TOKENS};
    status = kvbm_manager_register(l->g2, &block, &hash, 1, &opts, &registered);
    if (status != KVBM_OK)
        return status;
    counts->offloads++;
    return kvbm_manager_release(l->g2, &registered, 1);
}

/* Steps 3 and 3b: the longest run of @p rest registered in G2, then of what
 * follows in G3, each acquired in its tier. */
static kvbm_status_t match_lower(logical_t *l, const uint64_t *rest, size_t count, size_t *k2,
                                 size_t *k3)
{
    replay_scratch_t *s = &l->scratch;
    kvbm_status_t status = KVBM_OK;
    if (l->g2 != NULL)
        status = kvbm_manager_match(l->g2, rest, count, s->g2_ids, k2);
    if (status == KVBM_OK && l->g3 != NULL)
        status = kvbm_manager_match(l->g3, rest + *k2, count - *k2, s->g3_ids, k3);
    return status;
}

/* Step 5 with a G2 admission filter: registers H[k1:] on the fresh blocks
 * (onboarded ones first), with the request's length and position as hints,
 * and tells the filter of each new use. */
static kvbm_status_t register_rest(logical_t *l, const uint64_t *hashes, size_t count, size_t k1,
                                   replay_counts_t *counts)
{
    replay_scratch_t *s = &l->scratch;
    size_t need = count - k1;
    kvbm_register_opts_t opts = {.has_parent = k1 > 0,
                                 .parent_hash = k1 > 0 ? hashes[k1 - 1] : 0,
                                 .priority = 50,
                                 .block_size = REPLAY_BLOCK_TOKENS,
                                 .request_blocks = l->hints ? (uint32_t)count : 0,
                                 .first_position = l->hints ? (uint32_t)k1 : 0};
    kvbm_status_t status =
        kvbm_manager_register(l->g1, s->fresh_ids, hashes + k1, need, &opts, s->g1_ids + k1);
    if (status != KVBM_OK)
        return status;
    /* A dedup hands back the existing block in place of the new one. */
    for (size_t i = 0; i < need; i++) {
        bool dedup = s->g1_ids[k1 + i] != s->fresh_ids[i];
        counts->dedup += dedup;
        if (dedup)
            (void)kvbm_admission_hit(l->admission, s->g1_ids[k1 + i]);
        else
            (void)kvbm_admission_registered(l->admission, s->fresh_ids[i], hashes[k1 + i],
                                            opts.request_blocks, (uint32_t)(k1 + i));
    }
    return KVBM_OK;
}
static kvbm_status_t logical_steps(logical_t *l, const uint64_t *hashes, size_t count,
                                   replay_counts_t *counts);

/* Steps 2, 4 and 5 of G1 as one call (kvbm_manager_match_allocate_register)
 * when no admission filter has to hear which registrations deduplicated:
 * G1's match, allocation and registration leave G2 and G3 alone, so their
 * match (steps 3, 3b) and step 4's offloads, made after, see what they see
 * in the contract's order. Sets *k1_out and the evictions in s->evicted. */
static kvbm_status_t g1_fused(logical_t *l, const uint64_t *hashes, size_t count, size_t *k1_out,
                              size_t *n_evicted_out, replay_counts_t *counts)
{
    replay_scratch_t *s = &l->scratch;
    kvbm_register_opts_t opts = {.priority = 50, .request_blocks = l->hints ? (uint32_t)count : 0};
    kvbm_request_counts_t g1;
    kvbm_status_t status = kvbm_manager_match_allocate_register(l->g1, hashes, count, &opts,
                                                                s->g1_ids, s->evicted, &g1);
    if (status != KVBM_OK)
        return status;
    counts->dedup += g1.deduplicated;
    *k1_out = g1.matched;
    *n_evicted_out = g1.evicted;
    return KVBM_OK;
}

static kvbm_status_t logical_request(void *state, const uint64_t *hashes, size_t count,
                                     replay_counts_t *counts)
{
    logical_t *l = state;
    kvbm_status_t status = logical_steps(l, hashes, count, counts);
    if (l->events != NULL)
        kvbm_event_batcher_flush(l->events); /* the request's events, one batch */
    return status;
}

/* The contract's steps 2-7 on the two managers. */
static kvbm_status_t logical_steps(logical_t *l, const uint64_t *hashes, size_t count,
                                   replay_counts_t *counts)
{
    replay_scratch_t *s = &l->scratch;
    kvbm_status_t status = replay_scratch_reserve(s, count);
    if (status != KVBM_OK)
        return status;
    bool fused = l->admission == NULL;

    /* 2. G1 prefix match (with 4 and 5 when fused). */
    size_t k1 = 0, n_evicted = 0;
    if (fused)
        status = g1_fused(l, hashes, count, &k1, &n_evicted, counts);
    else
        status = kvbm_manager_match(l->g1, hashes, count, s->g1_ids, &k1);
    if (status != KVBM_OK)
        return status;

    /* 3, 3b. G2 continues the prefix, then G3. */
    size_t k2 = 0, k3 = 0;
    status = match_lower(l, hashes + k1, count - k1, &k2, &k3);
    if (status != KVBM_OK)
        return status;

    /* 4. Allocate the rest of G1 in one call (done when fused); offload
     * what it evicted. */
    size_t need = count - k1;
    if (!fused) {
        status = kvbm_manager_allocate(l->g1, need, s->fresh_ids, s->evicted, &n_evicted);
        if (status != KVBM_OK)
            return status;
    }
    counts->g1_evictions += n_evicted;
    if (l->g2 != NULL) {
        for (size_t i = 0; i < n_evicted; i++) {
            status = offload_one(l, &s->evicted[i], counts);
            if (status != KVBM_OK)
                return status;
        }
    }

    /* 5. Register the new blocks (onboarded ones first, G2's then G3's:
     * they lead H[k1:]); done when fused. */
    if (!fused && need > 0 && (status = register_rest(l, hashes, count, k1, counts)) != KVBM_OK)
        return status;
    if (l->admission != NULL)
        for (size_t i = 0; i < k1; i++)
            (void)kvbm_admission_hit(l->admission, s->g1_ids[i]);

    /* Before 6: the onboarded G3 blocks, then 6: the G2 ones, last first. */
    if (k3 > 0 && (status = release_reversed(l, l->g3, s->g3_ids, k3)) != KVBM_OK)
        return status;
    if (k2 > 0 && (status = release_reversed(l, l->g2, s->g2_ids, k2)) != KVBM_OK)
        return status;

    /* 7. Release all n G1 blocks, last first: the head is the most recent. */
    status = release_reversed(l, l->g1, s->g1_ids, count);
    if (status != KVBM_OK)
        return status;

    counts->g1_hits += k1;
    counts->g2_hits += k2;
    counts->g3_hits += k3;
    counts->onboards += k2 + k3;
    counts->misses += count - k1 - k2 - k3;
    return KVBM_OK;
}

static void logical_counts(const void *state, replay_counts_t *counts)
{
    (void)state;
    (void)counts; /* every count is kept as the requests run */
}

static kvbm_status_t logical_announce(void *state)
{
    logical_t *l = state;
    if (l->events == NULL)
        return KVBM_OK;
    const kvbm_event_record_t cleared = {.kind = KVBM_EVENT_CLEARED};
    kvbm_event_batcher_sink(l->events, &cleared, 1);
    kvbm_manager_t *tiers[] = {l->g1, l->g2, l->g3};
    kvbm_status_t status = KVBM_OK;
    for (size_t i = 0; i < sizeof(tiers) / sizeof(tiers[0]) && status == KVBM_OK; i++)
        if (tiers[i] != NULL)
            status = kvbm_manager_announce(tiers[i]);
    if (status == KVBM_OK)
        kvbm_event_batcher_flush(l->events);
    return status;
}

static kvbm_manager_t *logical_manager(const void *state, kvbm_medium_t medium)
{
    const logical_t *l = state;
    switch (medium) {
    case KVBM_MEDIUM_GPU:
        return l->g1;
    case KVBM_MEDIUM_CPU:
        return l->g2;
    case KVBM_MEDIUM_DISK:
        return l->g3;
    }
    return NULL;
}

static const char *logical_backend_name(const void *state)
{
    (void)state;
    return "logical";
}

static const char *logical_g3_engine(const void *state)
{
    (void)state;
    return NULL; /* no file: the tiers are counts only */
}

const replay_mode_ops_t replay_logical_mode = {
    .open = logical_open,
    .close = logical_close,
    .request = logical_request,
    .counts = logical_counts,
    .backend_name = logical_backend_name,
    .manager = logical_manager,
    .announce = logical_announce,
    .g3_engine = logical_g3_engine,
};
