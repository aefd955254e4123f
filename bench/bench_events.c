/*
 * KV events benchmark: what publishing costs the caller, measured side by
 * side with publishing off, alternating the configurations round by round.
 *
 * 1. The replay core (kvbm-replay's ns_per_block: time inside the replay's
 *    library calls) on the bundled Mooncake trace, G1 5859 + G2 23436 blocks
 *    (the contract's two-tier run), logical and data mode (CPU backend):
 *      off           no event sink
 *      publish-cold  a new publisher for the run (as kvbm-replay --publish):
 *                    its replay history fills up, every batch a new buffer
 *      publish-warm  a long-lived publisher whose history is already full
 *                    (an engine's steady state: buffers are reused)
 *      subscribed    publish-warm with a subscriber thread in this process
 *                    reading and discarding every batch (it competes for
 *                    the two CPUs)
 *    Per configuration: wall and CPU time of the replaying thread per block
 *    (medians, and the median and range of the per-round ratios to off),
 *    the times per run it was preempted (involuntary context switches) and
 *    its page faults, and its user-space instructions per block where the
 *    machine has a hardware counter (load-independent).
 * 2. Manager calls that publish while the subscriber is slow or the sender is
 *    stuck: allocate + register + release of 16 blocks per call, 10^5 blocks,
 *    every allocate evicting. ns per block, and the slowest call:
 *      off         no event sink
 *      publish     publisher, no subscriber
 *      stalled-sub a subscriber that never reads (high-water mark 1)
 *      stuck       the publisher's thread stopped (test hook): its queue fills
 *                  and every later batch is dropped and counted
 *    A manager call never waits for the network: the slowest call stays the
 *    same order as with events off.
 *
 *   bench_events [--quick] [TRACE]
 * Environment: BENCH_EVENTS_ONLY=replay|logical|data|manager runs one part;
 * BENCH_EVENTS_CONFIGS=name,name the replay configurations named (and off);
 * BENCH_EVENTS_ROUNDS=N (1-16) the replay rounds.
 * Prints numbers only; never passes or fails.
 */
#include <linux/perf_event.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "bench_util.h"
#include "events/publisher_internal.h"
#include "kvbm/kvbm.h"
#include "replay.h"
#include "trace.h"

#define CHECK(call)                                                                                \
    do {                                                                                           \
        kvbm_status_t s_ = (call);                                                                 \
        if (s_ != KVBM_OK) {                                                                       \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, kvbm_status_str(s_));    \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

enum { CFG_OFF, CFG_PUBLISH, CFG_STALLED, CFG_STUCK, CFG_COUNT };
static const char *const CFG_NAMES[CFG_COUNT] = {"off", "publish", "stalled-sub", "stuck"};

/* CPU time of the calling thread: unlike the wall clock, it does not count
 * the time other processes on this shared machine held the CPU. */
static double thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int compare_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* ------------------------------------------------------------------ subscribers */

typedef struct subscriber {
    void *ctx;
    void *socket;
    pthread_t thread;
    atomic_bool stop;
    bool reads; /* false: connects and never reads (a stalled router) */
    uint64_t batches;
} subscriber_t;

static void *subscriber_main(void *arg)
{
    subscriber_t *s = arg;
    char buffer[1 << 16];
    while (!atomic_load_explicit(&s->stop, memory_order_relaxed)) {
        zmq_pollitem_t item = {.socket = s->socket, .events = ZMQ_POLLIN};
        if (zmq_poll(&item, 1, 10) <= 0)
            continue;
        int more = 1;
        size_t len = sizeof(more);
        while (more) {
            if (zmq_recv(s->socket, buffer, sizeof(buffer), 0) < 0)
                break;
            zmq_getsockopt(s->socket, ZMQ_RCVMORE, &more, &len);
        }
        s->batches++;
    }
    return NULL;
}

static void subscriber_start(subscriber_t *s, const char *endpoint, bool reads)
{
    memset(s, 0, sizeof(*s));
    s->reads = reads;
    s->ctx = zmq_ctx_new();
    s->socket = zmq_socket(s->ctx, ZMQ_SUB);
    int one = 1, small = 4096;
    if (!reads) {
        zmq_setsockopt(s->socket, ZMQ_RCVHWM, &one, sizeof(one));
        zmq_setsockopt(s->socket, ZMQ_RCVBUF, &small, sizeof(small));
    }
    zmq_setsockopt(s->socket, ZMQ_SUBSCRIBE, "", 0);
    zmq_connect(s->socket, endpoint);
    if (reads)
        pthread_create(&s->thread, NULL, subscriber_main, s);
}

static void subscriber_stop(subscriber_t *s)
{
    if (s->reads) {
        atomic_store(&s->stop, true);
        pthread_join(s->thread, NULL);
    }
    int zero = 0;
    zmq_setsockopt(s->socket, ZMQ_LINGER, &zero, sizeof(zero));
    zmq_close(s->socket);
    zmq_ctx_term(s->ctx);
}

static kvbm_publisher_t *publisher_new(uint32_t queue_depth)
{
    kvbm_publisher_config_t config = KVBM_PUBLISHER_CONFIG_INIT;
    config.endpoint = "tcp://127.0.0.1:*";
    config.queue_depth = queue_depth;
    config.linger_ms = 0;
    kvbm_publisher_t *p = NULL;
    CHECK(kvbm_publisher_create(&config, &p));
    return p;
}

/* A publisher for @p cfg, with its subscriber; NULL for CFG_OFF. */
static kvbm_publisher_t *open_cfg(int cfg, subscriber_t *sub, bool *has_sub)
{
    *has_sub = false;
    if (cfg == CFG_OFF)
        return NULL;
    kvbm_publisher_t *p =
        publisher_new(cfg == CFG_STUCK ? 1024 : KVBM_PUBLISHER_DEFAULT_QUEUE_DEPTH);
    if (cfg == CFG_STALLED) {
        subscriber_start(sub, kvbm_publisher_endpoint(p), false);
        *has_sub = true;
        /* Let the subscription reach the publisher before timing. */
        struct timespec pause = {.tv_nsec = 100 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    if (cfg == CFG_STUCK)
        kvbm__publisher_set_paused(p, true);
    return p;
}

static void close_cfg(kvbm_publisher_t *p, subscriber_t *sub, bool has_sub,
                      kvbm_publisher_metrics_t *metrics_out)
{
    *metrics_out = (kvbm_publisher_metrics_t){0};
    if (p == NULL)
        return;
    kvbm__publisher_set_paused(p, false);
    kvbm_publisher_flush(p, 60000);
    kvbm_publisher_metrics(p, metrics_out);
    if (has_sub)
        subscriber_stop(sub);
    kvbm_publisher_destroy(p);
}

/* ------------------------------------------------------------------ 1. replay core */

enum { R_OFF, R_COLD, R_WARM, R_SUBSCRIBED, R_COUNT };
static const char *const R_NAMES[R_COUNT] = {"off", "publish-cold", "publish-warm", "subscribed"};

/* A long-lived publisher in steady state: its replay history already full,
 * so its buffers circulate instead of being allocated. */
static kvbm_publisher_t *warm_publisher(void)
{
    kvbm_publisher_t *p = publisher_new(KVBM_PUBLISHER_DEFAULT_QUEUE_DEPTH);
    uint64_t hashes[20];
    for (int i = 0; i < 20; i++)
        hashes[i] = (uint64_t)i;
    kvbm_event_record_t r = {
        .kind = KVBM_EVENT_REMOVED, .medium = KVBM_MEDIUM_GPU, .count = 20, .hashes = hashes};
    for (uint32_t i = 0; i < KVBM_PUBLISHER_DEFAULT_BUFFER_STEPS; i++) {
        while (kvbm_publisher_publish(p, &r, 1) == KVBM_ERR_BUSY)
            kvbm_publisher_flush(p, 1000);
    }
    CHECK(kvbm_publisher_flush(p, 60000));
    return p;
}

/* The calling thread's user-space instruction counter; -1 where the
 * machine has none (a VM without a PMU): the column then says so. */
static int instructions_open(void)
{
    struct perf_event_attr attr = {
        .type = PERF_TYPE_HARDWARE,
        .size = sizeof(attr),
        .config = PERF_COUNT_HW_INSTRUCTIONS,
        .exclude_kernel = 1,
        .exclude_hv = 1,
    };
    return (int)syscall(SYS_perf_event_open, &attr, 0, -1, -1, 0);
}

static double instructions_read(int fd)
{
    uint64_t count = 0;
    if (fd < 0 || read(fd, &count, sizeof(count)) != (ssize_t)sizeof(count))
        return -1;
    return (double)count;
}

/* What one replay cost the replaying thread, per block (per run: switches
 * and faults). */
typedef struct run_cost {
    double wall_ns, cpu_ns, instructions; /* instructions < 0: no counter */
    double preempted, faults;
} run_cost_t;

/* Replays the trace: wall ns per block inside the replay's calls
 * (kvbm-replay's ns_per_block), and this thread's CPU time, instructions,
 * involuntary context switches and page faults over the request loop. */
static run_cost_t replay_once(const trace_t *trace, bool data_mode, kvbm_publisher_t *p,
                              int instructions_fd)
{
    replay_config_t config = {
        .g1_blocks = 5859,
        .g2_blocks = 23436,
        .g1_policy = kvbm_policy_lru(),
        .g2_policy = kvbm_policy_lru(),
        .policy_config = KVBM_POLICY_CONFIG_INIT,
        .data_mode = data_mode,
        .backend_kind = KVBM_BACKEND_CPU,
        .block_kib = 16,
        .verify = false,
    };
    kvbm_event_batcher_t *events = NULL;
    if (p != NULL)
        CHECK(kvbm_publisher_batcher_create(p, &events));
    config.events = events;
    replay_t *replay = NULL;
    CHECK(replay_create(&config, &replay));
    struct rusage u0, u1;
    getrusage(RUSAGE_THREAD, &u0);
    double insn0 = instructions_read(instructions_fd);
    double cpu0 = thread_cpu_ns();
    for (size_t r = 0; r < trace->requests; r++)
        CHECK(replay_request(replay, trace->hashes + trace->offsets[r],
                             trace->offsets[r + 1] - trace->offsets[r]));
    double cpu = thread_cpu_ns() - cpu0;
    double insn = instructions_read(instructions_fd) - insn0;
    getrusage(RUSAGE_THREAD, &u1);
    replay_counts_t counts;
    replay_get_counts(replay, &counts);
    replay_destroy(replay);
    kvbm_event_batcher_destroy(events);
    if (p != NULL)
        CHECK(kvbm_publisher_flush(p, 60000));
    double blocks = (double)counts.blocks;
    return (run_cost_t){
        .wall_ns = counts.core_ns / blocks,
        .cpu_ns = cpu / blocks,
        .instructions = instructions_fd >= 0 ? insn / blocks : -1,
        .preempted = (double)(u1.ru_nivcsw - u0.ru_nivcsw),
        .faults = (double)(u1.ru_minflt - u0.ru_minflt + u1.ru_majflt - u0.ru_majflt),
    };
}

static double median(double *values, int n)
{
    qsort(values, (size_t)n, sizeof(double), compare_double);
    return n % 2 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

/* Whether configuration @p name runs: BENCH_EVENTS_CONFIGS (names separated
 * by commas) picks some, off always runs; unset, all run. */
static bool config_wanted(const char *name)
{
    const char *wanted = getenv("BENCH_EVENTS_CONFIGS");
    if (wanted == NULL || strcmp(name, "off") == 0)
        return true;
    size_t len = strlen(name);
    for (const char *at = wanted; (at = strstr(at, name)) != NULL; at += len)
        if ((at == wanted || at[-1] == ',') && (at[len] == '\0' || at[len] == ','))
            return true;
    return false;
}

#define MAX_ROUNDS 16

/* "median (min..max)" of @p n values (sorted in place). */
static void print_spread(double *values, int n)
{
    double mid = median(values, n);
    printf(" %6.3f (%5.2f..%5.2f)", mid, values[0], values[n - 1]);
}

static void bench_replay(const trace_t *trace, bool data_mode, int rounds)
{
    kvbm_publisher_t *warm = warm_publisher(), *subscribed = warm_publisher();
    subscriber_t sub;
    subscriber_start(&sub, kvbm_publisher_endpoint(subscribed), true);
    struct timespec pause = {.tv_nsec = 100 * 1000 * 1000};
    nanosleep(&pause, NULL);
    int instructions_fd = instructions_open();
    run_cost_t cost[R_COUNT][MAX_ROUNDS];
    double wall[R_COUNT][MAX_ROUNDS], cpu[R_COUNT][MAX_ROUNDS], insn[R_COUNT][MAX_ROUNDS];
    double wall_ratio[R_COUNT][MAX_ROUNDS], cpu_ratio[R_COUNT][MAX_ROUNDS];
    double preempted[R_COUNT][MAX_ROUNDS], faults[R_COUNT][MAX_ROUNDS];
    kvbm_publisher_metrics_t before[R_COUNT], after[R_COUNT];
    kvbm_publisher_metrics(warm, &before[R_WARM]);
    kvbm_publisher_metrics(subscribed, &before[R_SUBSCRIBED]);
    uint64_t cold_dropped = 0;
    for (int r = 0; r < rounds; r++) {
        for (int c = 0; c < R_COUNT; c++) {
            if (!config_wanted(R_NAMES[c]))
                continue;
            kvbm_publisher_t *p = c == R_OFF    ? NULL
                                  : c == R_COLD ? publisher_new(KVBM_PUBLISHER_DEFAULT_QUEUE_DEPTH)
                                  : c == R_WARM ? warm
                                                : subscribed;
            run_cost_t k = replay_once(trace, data_mode, p, instructions_fd);
            cost[c][r] = k;
            wall[c][r] = k.wall_ns;
            cpu[c][r] = k.cpu_ns;
            insn[c][r] = k.instructions;
            wall_ratio[c][r] = k.wall_ns / cost[R_OFF][r].wall_ns;
            cpu_ratio[c][r] = k.cpu_ns / cost[R_OFF][r].cpu_ns;
            preempted[c][r] = k.preempted;
            faults[c][r] = k.faults;
            if (c == R_COLD) {
                kvbm_publisher_metrics_t m;
                kvbm_publisher_metrics(p, &m);
                cold_dropped += m.batches_dropped;
                kvbm_publisher_destroy(p);
            }
        }
    }
    if (instructions_fd >= 0)
        close(instructions_fd);
    kvbm_publisher_metrics(warm, &after[R_WARM]);
    kvbm_publisher_metrics(subscribed, &after[R_SUBSCRIBED]);
    printf("replay core, %s mode, G1 5859 + G2 23436, %zu requests, %d rounds "
           "(configurations alternate within each round); medians, ratios to off per round:\n",
           data_mode ? "data (cpu)" : "logical", trace->requests, rounds);
    printf("  %-13s %8s %22s %8s %22s %10s %7s %9s\n", "config", "wall ns", "wall ratio (min..max)",
           "cpu ns", "cpu ratio (min..max)", "preempted", "faults", "insn/blk");
    for (int c = 0; c < R_COUNT; c++) {
        if (!config_wanted(R_NAMES[c]))
            continue;
        printf("  %-13s %8.1f", R_NAMES[c], median(wall[c], rounds));
        print_spread(wall_ratio[c], rounds);
        printf(" %8.1f", median(cpu[c], rounds));
        print_spread(cpu_ratio[c], rounds);
        printf(" %10.0f %7.0f", median(preempted[c], rounds), median(faults[c], rounds));
        if (instructions_fd >= 0)
            printf(" %9.1f\n", median(insn[c], rounds));
        else
            printf(" %9s\n", "n/a");
    }
    if (instructions_fd < 0)
        printf("  (insn/blk: no hardware instruction counter here; docs/BENCHMARKS.md has "
               "callgrind's counts)\n");
    uint64_t warm_batches = after[R_WARM].batches_published - before[R_WARM].batches_published;
    printf("  batches per run: %llu; dropped in all rounds: %llu; the subscriber read %llu\n",
           (unsigned long long)(warm_batches / (uint64_t)rounds),
           (unsigned long long)(cold_dropped + after[R_WARM].batches_dropped +
                                after[R_SUBSCRIBED].batches_dropped),
           (unsigned long long)sub.batches);
    subscriber_stop(&sub);
    kvbm_publisher_destroy(warm);
    kvbm_publisher_destroy(subscribed);
}

/* ------------------------------------------------------------------ 2. manager calls */

typedef struct range {
    double min, max, sum;
    int n;
} range_t;

static void range_add(range_t *r, double v)
{
    if (r->n == 0 || v < r->min)
        r->min = v;
    if (r->n == 0 || v > r->max)
        r->max = v;
    r->sum += v;
    r->n++;
}

#define M_BLOCKS 100000u
#define M_BATCH  16u

typedef struct call_stats {
    double ns_per_block, p999_ns, max_ns;
} call_stats_t;

static call_stats_t manager_once(int cfg, uint32_t calls, uint64_t *next_hash,
                                 kvbm_publisher_metrics_t *metrics_out)
{
    subscriber_t sub;
    bool has_sub;
    kvbm_publisher_t *p = open_cfg(cfg, &sub, &has_sub);
    kvbm_manager_config_t config = KVBM_MANAGER_CONFIG_INIT;
    config.num_blocks = M_BLOCKS;
    config.on_events = p != NULL ? kvbm_publisher_sink : NULL;
    config.events_ctx = p;
    kvbm_manager_t *m = NULL;
    CHECK(kvbm_manager_create(&config, &m));
    uint32_t ids[M_BATCH], out[M_BATCH];
    uint64_t hashes[M_BATCH];
    for (uint32_t done = 0; done < M_BLOCKS; done += M_BATCH) { /* full of cached blocks */
        CHECK(kvbm_manager_allocate(m, M_BATCH, ids, NULL, NULL));
        for (uint32_t i = 0; i < M_BATCH; i++)
            hashes[i] = (*next_hash)++;
        CHECK(kvbm_manager_register(m, ids, hashes, M_BATCH, NULL, out));
        CHECK(kvbm_manager_release(m, out, M_BATCH));
    }
    double *latency = malloc(sizeof(double) * calls * 2);
    double start = bench_now_ns();
    for (uint32_t c = 0; c < calls; c++) {
        for (uint32_t i = 0; i < M_BATCH; i++)
            hashes[i] = (*next_hash)++;
        double t0 = bench_now_ns();
        CHECK(kvbm_manager_allocate(m, M_BATCH, ids, NULL, NULL)); /* evicts: a removed batch */
        double t1 = bench_now_ns();
        CHECK(kvbm_manager_register(m, ids, hashes, M_BATCH, NULL, out)); /* a stored batch */
        double t2 = bench_now_ns();
        CHECK(kvbm_manager_release(m, out, M_BATCH));
        latency[2 * c] = t1 - t0;
        latency[2 * c + 1] = t2 - t1;
    }
    double total = bench_now_ns() - start;
    qsort(latency, (size_t)calls * 2, sizeof(double), compare_double);
    call_stats_t stats = {
        .ns_per_block = total / ((double)calls * M_BATCH),
        .p999_ns = latency[(size_t)((double)calls * 2 * 0.999)],
        .max_ns = latency[(size_t)calls * 2 - 1],
    };
    free(latency);
    kvbm_manager_destroy(m);
    close_cfg(p, &sub, has_sub, metrics_out);
    return stats;
}

static void bench_manager_calls(uint32_t calls, int rounds)
{
    const int cfgs[4] = {CFG_OFF, CFG_PUBLISH, CFG_STALLED, CFG_STUCK};
    range_t ns[4] = {{0}}, p999[4] = {{0}}, max[4] = {{0}};
    kvbm_publisher_metrics_t m[4];
    uint64_t next_hash = 1;
    for (int r = 0; r < rounds; r++) {
        for (int c = 0; c < 4; c++) {
            call_stats_t s = manager_once(cfgs[c], calls, &next_hash, &m[c]);
            range_add(&ns[c], s.ns_per_block);
            range_add(&p999[c], s.p999_ns);
            range_add(&max[c], s.max_ns);
        }
    }
    printf("manager calls, %u blocks, %u per call, %u calls x (allocate, register, release), "
           "%d rounds:\n",
           M_BLOCKS, M_BATCH, calls, rounds);
    printf("  %-11s %16s %20s %22s   %s\n", "config", "ns/block", "p99.9 call ns",
           "slowest call ns", "last round's publisher");
    for (int c = 0; c < 4; c++)
        printf("  %-11s %6.1f (%4.0f-%4.0f) %8.0f (%5.0f-%5.0f) %9.0f (%6.0f-%6.0f)   %llu "
               "published, %llu dropped\n",
               CFG_NAMES[cfgs[c]], ns[c].sum / ns[c].n, ns[c].min, ns[c].max,
               p999[c].sum / p999[c].n, p999[c].min, p999[c].max, max[c].sum / max[c].n, max[c].min,
               max[c].max, (unsigned long long)m[c].batches_published,
               (unsigned long long)m[c].batches_dropped);
}

int main(int argc, char **argv)
{
    /* Freed memory stays with the process: every configuration's managers
     * then reuse pages already touched, instead of some runs taking a few
     * hundred page faults on fresh ones depending on what was allocated
     * before them (glibc trims the heap and unmaps large chunks). */
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
    mallopt(M_MMAP_THRESHOLD, 1 << 30);
    bool quick = false;
    const char *trace_path = KVBM_SOURCE_DIR "/data/mooncake/synthetic_trace.jsonl";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0)
            quick = true;
        else
            trace_path = argv[i];
    }
    trace_t trace;
    char error[300];
    if (trace_load(trace_path, quick ? 500 : 0, 0, &trace, error, sizeof(error)) != KVBM_OK) {
        fprintf(stderr, "bench_events: %s: %s\n", trace_path, error);
        return 1;
    }
    int rounds = quick ? 1 : 9, data_rounds = quick ? 1 : 5;
    const char *rounds_env = getenv("BENCH_EVENTS_ROUNDS");
    if (rounds_env != NULL) {
        rounds = data_rounds = atoi(rounds_env);
        if (rounds < 1 || rounds > MAX_ROUNDS) {
            fprintf(stderr, "bench_events: BENCH_EVENTS_ROUNDS must be 1 to %d\n", MAX_ROUNDS);
            return 2;
        }
    }
    const char *only = getenv("BENCH_EVENTS_ONLY");
    bool all = only == NULL, replay = all || strcmp(only, "replay") == 0;
    if (replay || strcmp(only, "logical") == 0)
        bench_replay(&trace, false, rounds);
    if (replay || strcmp(only, "data") == 0)
        bench_replay(&trace, true, data_rounds);
    if (all || strcmp(only, "manager") == 0)
        bench_manager_calls(quick ? 2000 : 20000, quick ? 1 : 5);
    trace_free(&trace);
    return 0;
}
