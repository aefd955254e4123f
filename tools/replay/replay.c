/*
 * The contract's sequential model over two logical managers. G2 is a second
 * manager wired here: an offload is "take a G2 block, register the hash,
 * release it"; an onboard is a G2 match whose blocks are released once the
 * G1 blocks are registered. No bytes move in this mode.
 */
#include "replay.h"

#include <stdlib.h>
#include <string.h>

#include "replay_internal.h"

double replay__now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

#define now_ns replay__now_ns

static kvbm_status_t make_manager(replay_t *replay, const replay_config_t *replay_config,
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
    if (replay->events != NULL) {
        config.on_events = kvbm_event_batcher_sink;
        config.events_ctx = replay->events;
    }
    return kvbm_manager_create(&config, manager_out);
}

kvbm_status_t replay_create(const replay_config_t *config, replay_t **replay_out)
{
    if (config == NULL || replay_out == NULL || config->g1_blocks == 0)
        return KVBM_ERR_INVALID_ARG;
    replay_t *replay = calloc(1, sizeof(*replay));
    if (replay == NULL)
        return KVBM_ERR_NO_MEMORY;
    replay->g1_blocks = config->g1_blocks;
    if (config->data_mode && config->g2_blocks > 0) {
        kvbm_status_t data_status = replay__data_open(replay, config);
        if (data_status != KVBM_OK) {
            free(replay);
            return data_status;
        }
        *replay_out = replay;
        return KVBM_OK;
    }
    kvbm_status_t status = KVBM_OK;
    if (config->on_events != NULL) {
        status = kvbm_event_batcher_create(config->on_events, config->events_ctx, &replay->events);
        if (status != KVBM_OK)
            goto err_free_replay;
    }
    status = make_manager(replay, config, KVBM_MEDIUM_GPU, &replay->g1);
    if (status != KVBM_OK)
        goto err_destroy_events;
    if (config->g2_blocks > 0) {
        status = make_manager(replay, config, KVBM_MEDIUM_CPU, &replay->g2);
        if (status != KVBM_OK)
            goto err_destroy_g1;
    }
    *replay_out = replay;
    return KVBM_OK;

err_destroy_g1:
    kvbm_manager_destroy(replay->g1);
err_destroy_events:
    kvbm_event_batcher_destroy(replay->events);
err_free_replay:
    free(replay);
    return status;
}

void replay_destroy(replay_t *replay)
{
    if (replay == NULL)
        return;
    if (replay->cache != NULL) {
        replay__data_close(replay);
    } else {
        kvbm_manager_destroy(replay->g1);
        kvbm_manager_destroy(replay->g2);
        kvbm_event_batcher_destroy(replay->events);
    }
    free(replay->g1_ids);
    free(replay->fresh_ids);
    free(replay->g2_ids);
    free(replay->release_ids);
    free(replay->evicted);
    free(replay);
}

kvbm_status_t replay__ensure_scratch(replay_t *replay, size_t count)
{
    if (count <= replay->scratch_capacity)
        return KVBM_OK;
    size_t capacity = count * 2;
    uint32_t *g1 = realloc(replay->g1_ids, capacity * sizeof(uint32_t));
    if (g1 != NULL)
        replay->g1_ids = g1;
    uint32_t *fresh = realloc(replay->fresh_ids, capacity * sizeof(uint32_t));
    if (fresh != NULL)
        replay->fresh_ids = fresh;
    uint32_t *g2 = realloc(replay->g2_ids, capacity * sizeof(uint32_t));
    if (g2 != NULL)
        replay->g2_ids = g2;
    uint32_t *rel = realloc(replay->release_ids, capacity * sizeof(uint32_t));
    if (rel != NULL)
        replay->release_ids = rel;
    kvbm_evicted_t *ev = realloc(replay->evicted, capacity * sizeof(kvbm_evicted_t));
    if (ev != NULL)
        replay->evicted = ev;
    if (g1 == NULL || fresh == NULL || g2 == NULL || rel == NULL || ev == NULL)
        return KVBM_ERR_NO_MEMORY;
    replay->scratch_capacity = capacity;
    return KVBM_OK;
}

static kvbm_status_t release_reversed(replay_t *replay, kvbm_manager_t *manager,
                                      const uint32_t *ids, size_t count)
{
    for (size_t i = 0; i < count; i++)
        replay->release_ids[i] = ids[count - 1 - i];
    return kvbm_manager_release(manager, replay->release_ids, count);
}

/* Step 4's offload of one evicted G1 block into G2 (inclusive: skipped when
 * G2 has the hash already). */
static kvbm_status_t offload_one(replay_t *replay, const kvbm_evicted_t *from_g1)
{
    uint64_t hash = from_g1->seq_hash;
    if (kvbm_manager_contains(replay->g2, hash))
        return KVBM_OK;
    uint32_t block, registered;
    kvbm_evicted_t evicted;
    size_t n_evicted = 0;
    kvbm_status_t status = kvbm_manager_allocate(replay->g2, 1, &block, &evicted, &n_evicted);
    if (status == KVBM_ERR_NO_BLOCKS) {
        replay->counts.offload_skipped++;
        return KVBM_OK;
    }
    if (status != KVBM_OK)
        return status;
    replay->counts.g2_evictions += n_evicted;
    kvbm_register_opts_t opts = {.has_parent = from_g1->has_parent,
                                 .parent_hash = from_g1->parent_hash,
                                 .priority = 50,
                                 .block_size = REPLAY_BLOCK_TOKENS};
    status = kvbm_manager_register(replay->g2, &block, &hash, 1, &opts, &registered);
    if (status != KVBM_OK)
        return status;
    replay->counts.offloads++;
    return kvbm_manager_release(replay->g2, &registered, 1);
}

static kvbm_status_t logical_request(replay_t *replay, const uint64_t *hashes, size_t count);

kvbm_status_t replay_request(replay_t *replay, const uint64_t *hashes, size_t count)
{
    if (replay == NULL || (count > 0 && hashes == NULL))
        return KVBM_ERR_INVALID_ARG;
    if (replay->cache != NULL)
        return replay__data_request(replay, hashes, count);
    kvbm_status_t status = logical_request(replay, hashes, count);
    if (replay->events != NULL) {
        double start = now_ns();
        kvbm_event_batcher_flush(replay->events); /* the request's events, one batch */
        replay->counts.core_ns += now_ns() - start;
    }
    return status;
}

/* The contract's steps 1-7 on two plain managers. */
static kvbm_status_t logical_request(replay_t *replay, const uint64_t *hashes, size_t count)
{
    kvbm_status_t status = replay__ensure_scratch(replay, count);
    if (status != KVBM_OK)
        return status;
    double start = now_ns();
    replay->counts.requests++;
    replay->counts.blocks += count;

    /* 1. Oversize: all misses, nothing allocated or cached. */
    if (count > replay->g1_blocks) {
        replay->counts.oversize++;
        replay->counts.misses += count;
        replay->counts.core_ns += now_ns() - start;
        return KVBM_OK;
    }

    /* 2. G1 prefix match. */
    size_t k1 = 0;
    status = kvbm_manager_match(replay->g1, hashes, count, replay->g1_ids, &k1);
    if (status != KVBM_OK)
        return status;

    /* 3. G2 continues the prefix. */
    size_t k2 = 0;
    if (replay->g2 != NULL) {
        status = kvbm_manager_match(replay->g2, hashes + k1, count - k1, replay->g2_ids, &k2);
        if (status != KVBM_OK)
            return status;
    }

    /* 4. Allocate the rest of G1 in one call; offload what it evicted. */
    size_t need = count - k1;
    size_t n_evicted = 0;
    status =
        kvbm_manager_allocate(replay->g1, need, replay->fresh_ids, replay->evicted, &n_evicted);
    if (status != KVBM_OK)
        return status;
    replay->counts.g1_evictions += n_evicted;
    if (replay->g2 != NULL) {
        for (size_t i = 0; i < n_evicted; i++) {
            status = offload_one(replay, &replay->evicted[i]);
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
        status = kvbm_manager_register(replay->g1, replay->fresh_ids, hashes + k1, need, &opts,
                                       replay->g1_ids + k1);
        if (status != KVBM_OK)
            return status;
        /* A dedup hands back the existing block in place of the new one. */
        for (size_t i = 0; i < need; i++)
            replay->counts.dedup += replay->g1_ids[k1 + i] != replay->fresh_ids[i];
    }

    /* 6. Release the onboarded G2 blocks, last first. */
    if (k2 > 0) {
        status = release_reversed(replay, replay->g2, replay->g2_ids, k2);
        if (status != KVBM_OK)
            return status;
    }

    /* 7. Release all n G1 blocks, last first: the head is the most recent. */
    status = release_reversed(replay, replay->g1, replay->g1_ids, count);
    if (status != KVBM_OK)
        return status;

    replay->counts.g1_hits += k1;
    replay->counts.g2_hits += k2;
    replay->counts.onboards += k2;
    replay->counts.misses += count - k1 - k2;
    replay->counts.core_ns += now_ns() - start;
    return KVBM_OK;
}

void replay_get_counts(const replay_t *replay, replay_counts_t *counts_out)
{
    *counts_out = replay->counts;
    if (replay->cache != NULL)
        replay__data_counts(replay, counts_out);
}

kvbm_manager_t *replay_manager(const replay_t *replay, kvbm_medium_t medium)
{
    return medium == KVBM_MEDIUM_GPU ? replay->g1 : medium == KVBM_MEDIUM_CPU ? replay->g2 : NULL;
}

const char *replay_backend_name(const replay_t *replay)
{
    return replay->cache != NULL ? kvbm_backend_name(replay->backend) : "logical";
}

double replay_hit_rate(const replay_counts_t *counts)
{
    return counts->blocks == 0
               ? 0.0
               : (double)(counts->g1_hits + counts->g2_hits) / (double)counts->blocks;
}
