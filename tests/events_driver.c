/*
 * Drives a kvbm publisher for tests/events_wire.py: publishes a seeded,
 * random but plausible stream of KV events of a two-tier engine (runs
 * stored in GPU, evictions from GPU offloaded to CPU, removals from CPU,
 * rare clears), and reports the state a subscriber must rebuild.
 *
 *   events_driver [--endpoint E] [--replay E] [--topic T] [--hwm N]
 *                 [--buffer-steps N] [--queue-depth N] [--rank R] [--offset]
 *                 [--seed S]
 *
 * Protocol on stdin/stdout, one line each:
 *   out: {"endpoint": ..., "replay": ...}      once the sockets are open
 *   in:  "go N"                                publish N batches, then flush
 *   out: {"next_seq": ..., "GPU": [...], "CPU": [...], "metrics": {...}}
 *   in:  end of input                          destroy and exit 0
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvbm/events.h"

#define BLOCK_SIZE 16
#define MAX_RUN    8
#define MAX_EVICT  4

typedef struct tier {
    uint64_t *hashes;
    size_t count, capacity;
} tier_t;

static uint64_t rng_state;

/* splitmix64: a seeded stream, the same on every machine. */
static uint64_t next_random(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static size_t below(size_t n)
{
    return (size_t)(next_random() % n);
}

static void tier_add(tier_t *tier, uint64_t hash)
{
    if (tier->count == tier->capacity) {
        tier->capacity = tier->capacity ? tier->capacity * 2 : 1024;
        tier->hashes = realloc(tier->hashes, tier->capacity * sizeof(uint64_t));
        if (tier->hashes == NULL) {
            perror("events_driver");
            exit(1);
        }
    }
    tier->hashes[tier->count++] = hash;
}

static uint64_t tier_take(tier_t *tier, size_t index)
{
    uint64_t hash = tier->hashes[index];
    tier->hashes[index] = tier->hashes[--tier->count];
    return hash;
}

typedef struct batch {
    kvbm_event_record_t records[2 + 2 * MAX_EVICT];
    size_t count;
    uint64_t run[MAX_RUN], evicted[MAX_EVICT], dropped[MAX_EVICT];
    uint32_t tokens[MAX_RUN * BLOCK_SIZE];
} batch_t;

/* One batch of events, applied to the model as it is made. */
static void make_batch(batch_t *b, tier_t *gpu, tier_t *cpu)
{
    b->count = 0;
    if (below(500) == 0) {
        b->records[b->count++] = (kvbm_event_record_t){.kind = KVBM_EVENT_CLEARED};
        gpu->count = 0;
        cpu->count = 0;
        return;
    }
    /* A run of fresh blocks stored in GPU, continuing a cached prefix half the time. */
    size_t k = 1 + below(MAX_RUN);
    kvbm_event_record_t stored = {.kind = KVBM_EVENT_STORED,
                                  .medium = KVBM_MEDIUM_GPU,
                                  .count = k,
                                  .hashes = b->run,
                                  .block_size = BLOCK_SIZE};
    if (gpu->count > 0 && below(2) == 0) {
        stored.has_parent = true;
        stored.parent_hash = gpu->hashes[below(gpu->count)];
    }
    if (below(2) == 0) {
        stored.n_tokens = k * BLOCK_SIZE;
        stored.tokens = b->tokens;
        for (size_t i = 0; i < stored.n_tokens; i++)
            b->tokens[i] = (uint32_t)below(152000);
    }
    if (below(4) == 0) {
        stored.has_lora_id = true;
        stored.lora_id = (int64_t)below(8);
        stored.lora_name = below(2) ? "adapter" : NULL;
    }
    for (size_t i = 0; i < k; i++) {
        b->run[i] = next_random();
        tier_add(gpu, b->run[i]);
    }
    b->records[b->count++] = stored;
    /* Evictions from GPU; half of them offloaded: removed(GPU), then stored(CPU). */
    if (gpu->count > MAX_EVICT && below(2) == 0) {
        size_t m = 1 + below(MAX_EVICT);
        for (size_t i = 0; i < m; i++)
            b->evicted[i] = tier_take(gpu, below(gpu->count));
        b->records[b->count++] = (kvbm_event_record_t){.kind = KVBM_EVENT_REMOVED,
                                                       .medium = KVBM_MEDIUM_GPU,
                                                       .count = m,
                                                       .hashes = b->evicted};
        for (size_t i = 0; i < m; i++) {
            if (below(2) == 0)
                continue;
            tier_add(cpu, b->evicted[i]);
            b->records[b->count++] = (kvbm_event_record_t){.kind = KVBM_EVENT_STORED,
                                                           .medium = KVBM_MEDIUM_CPU,
                                                           .count = 1,
                                                           .hashes = &b->evicted[i],
                                                           .block_size = BLOCK_SIZE};
        }
    }
    /* Removals from CPU. */
    if (cpu->count > MAX_EVICT && below(5) == 0) {
        size_t m = 1 + below(MAX_EVICT);
        for (size_t i = 0; i < m; i++)
            b->dropped[i] = tier_take(cpu, below(cpu->count));
        b->records[b->count++] = (kvbm_event_record_t){.kind = KVBM_EVENT_REMOVED,
                                                       .medium = KVBM_MEDIUM_CPU,
                                                       .count = m,
                                                       .hashes = b->dropped};
    }
}

static void print_tier(const char *name, const tier_t *tier)
{
    printf("\"%s\": [", name);
    for (size_t i = 0; i < tier->count; i++)
        printf("%s%" PRIu64, i ? ", " : "", tier->hashes[i]);
    printf("]");
}

static void print_state(kvbm_publisher_t *publisher, const tier_t *gpu, const tier_t *cpu)
{
    kvbm_publisher_metrics_t m;
    kvbm_publisher_metrics(publisher, &m);
    printf("{\"next_seq\": %" PRIu64 ", ", m.next_seq);
    print_tier("GPU", gpu);
    printf(", ");
    print_tier("CPU", cpu);
    printf(", \"metrics\": {");
#define PRINT_METRIC(field, type, help) printf("\"" #field "\": %" PRIu64 ", ", m.field);
    KVBM_PUBLISHER_METRICS_LIST(PRINT_METRIC)
#undef PRINT_METRIC
    printf("\"end\": 0}}\n");
    fflush(stdout);
}

int main(int argc, char **argv)
{
    kvbm_publisher_config_t config = KVBM_PUBLISHER_CONFIG_INIT;
    config.endpoint = "tcp://127.0.0.1:*";
    config.linger_ms = 2000;
    rng_state = 1;
    static const struct option options[] = {
        {"endpoint", required_argument, NULL, 'e'},
        {"replay", required_argument, NULL, 'r'},
        {"topic", required_argument, NULL, 't'},
        {"hwm", required_argument, NULL, 'h'},
        {"buffer-steps", required_argument, NULL, 'b'},
        {"queue-depth", required_argument, NULL, 'q'},
        {"rank", required_argument, NULL, 'k'},
        {"offset", no_argument, NULL, 'o'},
        {"seed", required_argument, NULL, 's'},
        {NULL, 0, NULL, 0},
    };
    int opt;
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (opt) {
        case 'e':
            config.endpoint = optarg;
            break;
        case 'r':
            config.replay_endpoint = optarg;
            break;
        case 't':
            config.topic = optarg;
            break;
        case 'h':
            config.hwm = atoi(optarg);
            break;
        case 'b':
            config.buffer_steps = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 'q':
            config.queue_depth = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 'k':
            config.data_parallel_rank = atoi(optarg);
            break;
        case 'o':
            config.offset_ports_by_rank = true;
            break;
        case 's':
            rng_state = strtoull(optarg, NULL, 10);
            break;
        default:
            fprintf(stderr, "events_driver: bad option\n");
            return 2;
        }
    }
    kvbm_publisher_t *publisher = NULL;
    kvbm_status_t status = kvbm_publisher_create(&config, &publisher);
    if (status != KVBM_OK) {
        fprintf(stderr, "events_driver: %s\n", kvbm_status_str(status));
        return 1;
    }
    const char *replay = kvbm_publisher_replay_endpoint(publisher);
    printf("{\"endpoint\": \"%s\", \"replay\": \"%s\"}\n", kvbm_publisher_endpoint(publisher),
           replay != NULL ? replay : "");
    fflush(stdout);

    tier_t gpu = {0}, cpu = {0};
    batch_t batch;
    char line[64];
    int rc = 0;
    while (fgets(line, sizeof(line), stdin) != NULL) {
        unsigned long n = 0;
        if (sscanf(line, "go %lu", &n) != 1) {
            fprintf(stderr, "events_driver: unknown command %s", line);
            rc = 2;
            break;
        }
        for (unsigned long i = 0; i < n; i++) {
            make_batch(&batch, &gpu, &cpu);
            status = kvbm_publisher_publish(publisher, batch.records, batch.count);
            if (status != KVBM_OK && status != KVBM_ERR_BUSY) {
                fprintf(stderr, "events_driver: publish: %s\n", kvbm_status_str(status));
                rc = 1;
            }
        }
        status = kvbm_publisher_flush(publisher, 60000);
        if (status != KVBM_OK) {
            fprintf(stderr, "events_driver: flush: %s\n", kvbm_status_str(status));
            rc = 1;
        }
        print_state(publisher, &gpu, &cpu);
    }
    kvbm_publisher_destroy(publisher);
    free(gpu.hashes);
    free(cpu.hashes);
    return rc;
}
