/*
 * Logical mode: the contract's sequential model over two logical managers.
 * G2 is a second manager wired here: an offload is "take a G2 block,
 * register the hash, release it"; an onboard is a G2 match whose blocks are
 * released once the G1 blocks are registered. No bytes move in this mode.
 */
#include <stdlib.h>

#include "replay_mode.h"

typedef struct logical {
    /* Borrowed, optional: where the managers' records go, flushed once per
     * request (as the cache flushes once per call in data mode). */
    kvbm_event_batcher_t *events;
    kvbm_manager_t *g1;
    kvbm_manager_t *g2; /* NULL without a host tier */
    replay_scratch_t scratch;
} logical_t;

static kvbm_status_t make_manager(const logical_t *l, const replay_config_t *replay_config,
                                  kvbm_medium_t medium, kvbm_manager_t **manager_out)
{
    bool g1 = medium == KVBM_MEDIUM_GPU;
    kvbm_manager_config_t config = KVBM_MANAGER_CONFIG_INIT;
    config.num_blocks = g1 ? replay_config->g1_blocks : replay_config->g2_blocks;
    config.duplication = KVBM_DUPLICATION_REJECT;
    config.policy = g1 ? replay_config->g1_policy : replay_config->g2_policy;
    config.policy_config = replay_config->policy_config;
    config.name = g1 ? "g1" : "g2";
    config.medium = medium;
    if (l->events != NULL) {
        config.on_events = kvbm_event_batcher_sink;
        config.events_ctx = l->events;
    }
    return kvbm_manager_create(&config, manager_out);
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
    *state_out = l;
    return KVBM_OK;

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
    replay_scratch_free(&l->scratch);
    free(l);
}

static kvbm_status_t release_reversed(logical_t *l, kvbm_manager_t *manager, const uint32_t *ids,
                                      size_t count)
{
    for (size_t i = 0; i < count; i++)
        l->scratch.release_ids[i] = ids[count - 1 - i];
    return kvbm_manager_release(manager, l->scratch.release_ids, count);
}

/* Step 4's offload of one evicted G1 block into G2 (inclusive: skipped when
 * G2 has the hash already), registered with the parent it had in G1. */
static kvbm_status_t offload_one(logical_t *l, const kvbm_evicted_t *from_g1,
                                 replay_counts_t *counts)
{
    uint64_t hash = from_g1->seq_hash;
    if (kvbm_manager_contains(l->g2, hash))
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
    kvbm_register_opts_t opts = {.has_parent = from_g1->has_parent,
                                 .parent_hash = from_g1->parent_hash,
                                 .priority = 50,
                                 .block_size = REPLAY_BLOCK_TOKENS};
    status = kvbm_manager_register(l->g2, &block, &hash, 1, &opts, &registered);
    if (status != KVBM_OK)
        return status;
    counts->offloads++;
    return kvbm_manager_release(l->g2, &registered, 1);
}

static kvbm_status_t logical_steps(logical_t *l, const uint64_t *hashes, size_t count,
                                   replay_counts_t *counts);

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

    /* 2. G1 prefix match. */
    size_t k1 = 0;
    status = kvbm_manager_match(l->g1, hashes, count, s->g1_ids, &k1);
    if (status != KVBM_OK)
        return status;

    /* 3. G2 continues the prefix. */
    size_t k2 = 0;
    if (l->g2 != NULL) {
        status = kvbm_manager_match(l->g2, hashes + k1, count - k1, s->g2_ids, &k2);
        if (status != KVBM_OK)
            return status;
    }

    /* 4. Allocate the rest of G1 in one call; offload what it evicted. */
    size_t need = count - k1;
    size_t n_evicted = 0;
    status = kvbm_manager_allocate(l->g1, need, s->fresh_ids, s->evicted, &n_evicted);
    if (status != KVBM_OK)
        return status;
    counts->g1_evictions += n_evicted;
    if (l->g2 != NULL) {
        for (size_t i = 0; i < n_evicted; i++) {
            status = offload_one(l, &s->evicted[i], counts);
            if (status != KVBM_OK)
                return status;
        }
    }

    /* 5. Register the new blocks (onboarded ones first: they lead H[k1:]). */
    if (need > 0) {
        kvbm_register_opts_t opts = {.has_parent = k1 > 0,
                                     .parent_hash = k1 > 0 ? hashes[k1 - 1] : 0,
                                     .priority = 50,
                                     .block_size = REPLAY_BLOCK_TOKENS};
        status =
            kvbm_manager_register(l->g1, s->fresh_ids, hashes + k1, need, &opts, s->g1_ids + k1);
        if (status != KVBM_OK)
            return status;
        /* A dedup hands back the existing block in place of the new one. */
        for (size_t i = 0; i < need; i++)
            counts->dedup += s->g1_ids[k1 + i] != s->fresh_ids[i];
    }

    /* 6. Release the onboarded G2 blocks, last first. */
    if (k2 > 0) {
        status = release_reversed(l, l->g2, s->g2_ids, k2);
        if (status != KVBM_OK)
            return status;
    }

    /* 7. Release all n G1 blocks, last first: the head is the most recent. */
    status = release_reversed(l, l->g1, s->g1_ids, count);
    if (status != KVBM_OK)
        return status;

    counts->g1_hits += k1;
    counts->g2_hits += k2;
    counts->onboards += k2;
    counts->misses += count - k1 - k2;
    return KVBM_OK;
}

static void logical_counts(const void *state, replay_counts_t *counts)
{
    (void)state;
    (void)counts; /* every count is kept as the requests run */
}

static kvbm_manager_t *logical_manager(const void *state, kvbm_medium_t medium)
{
    const logical_t *l = state;
    return medium == KVBM_MEDIUM_GPU ? l->g1 : medium == KVBM_MEDIUM_CPU ? l->g2 : NULL;
}

static const char *logical_backend_name(const void *state)
{
    (void)state;
    return "logical";
}

const replay_mode_ops_t replay_logical_mode = {
    .open = logical_open,
    .close = logical_close,
    .request = logical_request,
    .counts = logical_counts,
    .backend_name = logical_backend_name,
    .manager = logical_manager,
};
