/*
 * The replay front: picks the mode (replay_mode.h) and does what every mode
 * shares: the request and block counts, step 1 (a request larger than G1 is
 * all misses and touches nothing), and the time spent in the steps.
 */
#include "replay.h"

#include <stdlib.h>
#include <time.h>

#include "replay_mode.h"

struct replay {
    const replay_mode_ops_t *mode; /* immutable after create */
    void *state;                   /* the mode's */
    uint32_t g1_blocks;
    kvbm_publisher_t *publisher; /* borrowed, optional: config.publisher */
    replay_counts_t counts;
};

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

kvbm_status_t replay_create(const replay_config_t *config, replay_t **replay_out)
{
    if (config == NULL || replay_out == NULL || config->g1_blocks == 0 ||
        (config->g3_blocks > 0 && config->g2_blocks == 0))
        return KVBM_ERR_INVALID_ARG;
    replay_t *replay = calloc(1, sizeof(*replay));
    if (replay == NULL)
        return KVBM_ERR_NO_MEMORY;
    replay->mode =
        config->data_mode && config->g2_blocks > 0 ? &replay_data_mode : &replay_logical_mode;
    replay->g1_blocks = config->g1_blocks;
    replay->publisher = config->publisher;
    kvbm_status_t status = replay->mode->open(config, &replay->state);
    if (status != KVBM_OK) {
        free(replay);
        return status;
    }
    *replay_out = replay;
    return KVBM_OK;
}

void replay_destroy(replay_t *replay)
{
    if (replay == NULL)
        return;
    replay->mode->close(replay->state);
    free(replay);
}

kvbm_status_t replay_request(replay_t *replay, const uint64_t *hashes, size_t count)
{
    if (replay == NULL || (count > 0 && hashes == NULL))
        return KVBM_ERR_INVALID_ARG;
    double start = now_ns();
    replay->counts.requests++;
    replay->counts.blocks += count;
    kvbm_status_t status = KVBM_OK;
    if (count > replay->g1_blocks) {
        /* 1. Oversize: all misses, nothing allocated or cached. */
        replay->counts.oversize++;
        replay->counts.misses += count;
    } else {
        status = replay->mode->request(replay->state, hashes, count, &replay->counts);
    }
    /* Events lost at the publisher's full queue: routers start over from
     * what the tiers hold now (the cost is publishing's, so it is timed). */
    if (status == KVBM_OK && kvbm_publisher_resync_needed(replay->publisher))
        status = replay_announce(replay);
    if (status == KVBM_OK)
        replay->counts.core_ns += now_ns() - start;
    return status;
}

kvbm_status_t replay_announce(replay_t *replay)
{
    if (replay == NULL)
        return KVBM_ERR_INVALID_ARG;
    return replay->mode->announce(replay->state);
}

void replay_get_counts(const replay_t *replay, replay_counts_t *counts_out)
{
    *counts_out = replay->counts;
    replay->mode->counts(replay->state, counts_out);
}

kvbm_manager_t *replay_manager(const replay_t *replay, kvbm_medium_t medium)
{
    return replay->mode->manager(replay->state, medium);
}

const char *replay_backend_name(const replay_t *replay)
{
    return replay->mode->backend_name(replay->state);
}

const char *replay_g3_engine(const replay_t *replay)
{
    return replay->mode->g3_engine(replay->state);
}

double replay_hit_rate(const replay_counts_t *counts)
{
    return counts->blocks == 0 ? 0.0
                               : (double)(counts->g1_hits + counts->g2_hits + counts->g3_hits) /
                                     (double)counts->blocks;
}

double replay_offloads_per_g2_hit(const replay_counts_t *counts)
{
    return counts->g2_hits == 0 ? 0.0 : (double)counts->offloads / (double)counts->g2_hits;
}
