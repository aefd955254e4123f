/*
 * Multi-process harness for the transfer tests and benchmark: runs one
 * function per rank in forked children that meet at a rendezvous (by
 * default an ephemeral loopback port; with xr_net set, each rank in a
 * network namespace of its own, see xfer_hosts.h), and a per-rank
 * environment (manager + host slab described for kvbm_xfer_memory_t,
 * filled with bytes derived from hashes).
 *
 * Children never use cmocka asserts (a failing assert would longjmp into the
 * parent's copy of the test runner); they print and return non-zero instead,
 * which becomes their exit status, checked by the parent.
 */
#ifndef KVBM_TESTS_XFER_RANKS_H
#define KVBM_TESTS_XFER_RANKS_H

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kvbm/kvbm.h"
#include "kvbm/xfer.h"

#define XR_MAX_RANKS   8
#define XR_MAX_REGIONS 8

static int xr_rank = -1; /* in a child: its rank, for messages */

/*
 * Where the ranks run and how they meet; all zero: loopback, no secret, an
 * ephemeral rendezvous port. Set before xr_run (children get a copy).
 */
typedef struct xr_net {
    const char *netns[XR_MAX_RANKS];  /* a rank's network namespace (/run/netns/NAME) */
    const char *listen[XR_MAX_RANKS]; /* a rank's listen address (NULL: the default) */
    const char *rendezvous_host;      /* NULL: 127.0.0.1 */
    uint16_t rendezvous_port;         /* 0: an ephemeral one opened before forking */
    uint16_t listen_port;             /* every rank's mesh port (0: any free one) */
    const void *secret;               /* NULL: none */
    size_t secret_len;
} xr_net_t;
static xr_net_t xr_net;

/* Moves this process into network namespace @p name; 0 on success. */
static inline int xr_enter_netns(const char *name)
{
    char path[128];
    snprintf(path, sizeof(path), "/run/netns/%s", name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = setns(fd, CLONE_NEWNET);
    close(fd);
    return rc;
}

#define XR_CHECK(cond)                                                                             \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "rank %d: %s:%d: check failed: %s\n", xr_rank, __FILE__, __LINE__,     \
                    #cond);                                                                        \
            return 1;                                                                              \
        }                                                                                          \
    } while (0)

#define XR_CHECK_STATUS(call, expected)                                                            \
    do {                                                                                           \
        kvbm_status_t xr_status_ = (call);                                                         \
        if (xr_status_ != (expected)) {                                                            \
            fprintf(stderr, "rank %d: %s:%d: %s returned %s, expected %s\n", xr_rank, __FILE__,    \
                    __LINE__, #call, kvbm_status_name(xr_status_), kvbm_status_name(expected));    \
            return 1;                                                                              \
        }                                                                                          \
    } while (0)

#define XR_CHECK_OK(call) XR_CHECK_STATUS(call, KVBM_OK)

static inline double xr_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

typedef int (*xr_rank_fn)(int rank, int size, uint16_t port, kvbm_xfer_rendezvous_t *rv, void *arg);

/*
 * Runs fn on ranks 0..size-1, each in a child. Ranks in @p expendable may die
 * or hang (fault tests): once every other rank exited they are killed. Returns
 * 0 when every other rank exited 0 within @p limit_s, else prints why and
 * returns -1.
 */
static inline int xr_run(int size, xr_rank_fn fn, void *arg, unsigned expendable, double limit_s)
{
    kvbm_xfer_rendezvous_t *rv = NULL;
    uint16_t port = xr_net.rendezvous_port;
    if (port == 0) {
        if (kvbm_xfer_rendezvous_create(xr_net.rendezvous_host, 0, &rv) != KVBM_OK) {
            fprintf(stderr, "rendezvous_create failed\n");
            return -1;
        }
        port = kvbm_xfer_rendezvous_port(rv);
    }
    pid_t pids[XR_MAX_RANKS];
    fflush(stdout);
    fflush(stderr);
    for (int r = 0; r < size; r++) {
        pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            for (int k = 0; k < r; k++)
                kill(pids[k], SIGKILL);
            kvbm_xfer_rendezvous_destroy(rv);
            return -1;
        }
        if (pid == 0) {
            xr_rank = r;
            if (xr_net.netns[r] != NULL && xr_enter_netns(xr_net.netns[r]) != 0) {
                perror("setns");
                exit(1);
            }
            if (r != 0) {
                kvbm_xfer_rendezvous_destroy(rv);
                rv = NULL;
            }
            int rc = fn(r, size, port, rv, arg);
            kvbm_xfer_rendezvous_destroy(rv);
            fflush(stdout);
            fflush(stderr);
            exit(rc); /* exit, not _exit: LeakSanitizer checks the child too */
        }
        pids[r] = pid;
    }
    kvbm_xfer_rendezvous_destroy(rv);

    int result = 0;
    bool exited[XR_MAX_RANKS] = {false};
    double deadline = xr_now() + limit_s;
    for (;;) {
        bool waiting = false;
        for (int r = 0; r < size; r++) {
            if (exited[r])
                continue;
            int wstatus;
            pid_t got = waitpid(pids[r], &wstatus, WNOHANG);
            if (got == pids[r]) {
                exited[r] = true;
                bool clean = WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0;
                if (!clean && !(expendable & (1u << r))) {
                    fprintf(stderr, "rank %d ended badly (status 0x%x)\n", r, wstatus);
                    result = -1;
                }
            } else if (!(expendable & (1u << r))) {
                waiting = true;
            }
        }
        if (!waiting)
            break;
        if (xr_now() > deadline) {
            fprintf(stderr, "ranks still running after %.0f s\n", limit_s);
            result = -1;
            break;
        }
        struct timespec ts = {.tv_sec = 0, .tv_nsec = 2000000};
        nanosleep(&ts, NULL);
    }
    for (int r = 0; r < size; r++) {
        if (!exited[r]) {
            kill(pids[r], SIGKILL);
            waitpid(pids[r], NULL, 0);
        }
    }
    return result;
}

/* ------------------------------------------------------------ rank environment */

typedef struct xr_env {
    kvbm_manager_t *manager;
    unsigned char *slab;
    void *bases[XR_MAX_REGIONS];
    uint32_t blocks;
    uint32_t regions;
    size_t region_bytes;
    size_t stride;
    kvbm_xfer_t *xfer;
    /* Pushes received, counted on the service thread. */
    atomic_int arrivals_ok;
    atomic_int arrivals_failed;
    atomic_int last_failure;
    /* Milliseconds each arrival notice takes (a slow application). */
    atomic_int arrival_delay_ms;
} xr_env_t;

/* Shape of one rank's slab. layer_separate: region r of every block is in
 * plane r (stride = region_bytes); otherwise blocks are contiguous and
 * described region by region (stride = regions x region_bytes). */
typedef struct xr_shape {
    uint32_t blocks;
    uint32_t regions;
    size_t region_bytes;
    bool layer_separate;
    uint64_t layout_key;
    uint32_t timeout_ms;
    size_t raw_scratch_bytes; /* 0: the default */
} xr_shape_t;

static void xr_on_arrival(void *ctx, const kvbm_xfer_arrival_t *arrival)
{
    xr_env_t *env = ctx;
    int delay_ms = atomic_load_explicit(&env->arrival_delay_ms, memory_order_relaxed);
    if (delay_ms > 0) {
        struct timespec ts = {.tv_sec = delay_ms / 1000, .tv_nsec = (delay_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    if (arrival->status == KVBM_OK) {
        atomic_fetch_add_explicit(&env->arrivals_ok, 1, memory_order_release);
    } else {
        atomic_store_explicit(&env->last_failure, arrival->status, memory_order_relaxed);
        atomic_fetch_add_explicit(&env->arrivals_failed, 1, memory_order_release);
    }
}

/* Builds the manager and slab, then joins the other ranks. */
static inline kvbm_status_t xr_env_open(xr_env_t *env, const xr_shape_t *shape, int rank, int size,
                                        uint16_t port, kvbm_xfer_rendezvous_t *rv)
{
    memset(env, 0, sizeof(*env));
    env->blocks = shape->blocks;
    env->regions = shape->regions;
    env->region_bytes = shape->region_bytes;
    size_t block_bytes = shape->regions * shape->region_bytes;
    env->slab = calloc(shape->blocks, block_bytes);
    if (env->slab == NULL)
        return KVBM_ERR_NO_MEMORY;
    for (uint32_t r = 0; r < shape->regions; r++)
        env->bases[r] = shape->layer_separate
                            ? env->slab + (size_t)r * shape->blocks * shape->region_bytes
                            : env->slab + (size_t)r * shape->region_bytes;
    env->stride = shape->layer_separate ? shape->region_bytes : block_bytes;

    kvbm_manager_config_t mc = KVBM_MANAGER_CONFIG_INIT;
    mc.num_blocks = shape->blocks;
    kvbm_status_t status = kvbm_manager_create(&mc, &env->manager);
    if (status != KVBM_OK)
        goto free_slab;

    kvbm_xfer_config_t config = KVBM_XFER_CONFIG_INIT;
    config.rank = rank;
    config.size = size;
    config.rendezvous_port = port;
    config.rendezvous = rv;
    config.rendezvous_host = xr_net.rendezvous_host;
    config.listen_host = xr_net.listen[rank];
    config.listen_port = xr_net.listen_port;
    config.secret = xr_net.secret;
    config.secret_len = xr_net.secret_len;
    config.timeout_ms = shape->timeout_ms;
    config.raw_scratch_bytes = shape->raw_scratch_bytes;
    config.manager = env->manager;
    config.memory.kind = KVBM_XFER_MEM_HOST;
    config.memory.num_blocks = shape->blocks;
    config.memory.region_count = shape->regions;
    config.memory.region_bytes = shape->region_bytes;
    config.memory.block_stride = env->stride;
    config.memory.region_base = env->bases;
    config.memory.layout_key = shape->layout_key;
    config.on_arrival = xr_on_arrival;
    config.arrival_ctx = env;
    status = kvbm_xfer_create(&config, &env->xfer);
    if (status != KVBM_OK)
        goto destroy_manager;
    return KVBM_OK;
destroy_manager:
    kvbm_manager_destroy(env->manager);
free_slab:
    free(env->slab);
    env->slab = NULL;
    env->manager = NULL;
    return status;
}

static inline void xr_env_close(xr_env_t *env)
{
    kvbm_xfer_destroy(env->xfer);
    kvbm_manager_destroy(env->manager);
    free(env->slab);
    memset(env, 0, sizeof(*env));
}

/* Byte @p k of the canonical bytes of the block carrying @p hash. */
static inline unsigned char xr_pattern(uint64_t hash, size_t k)
{
    return (unsigned char)((hash >> ((k & 7u) * 8u)) ^ (k * 131u) ^ (k >> 8));
}

static inline unsigned char *xr_region(const xr_env_t *env, uint32_t block, uint32_t region)
{
    return (unsigned char *)env->bases[region] + (size_t)block * env->stride;
}

static inline void xr_fill(xr_env_t *env, uint32_t block, uint64_t hash)
{
    for (uint32_t r = 0; r < env->regions; r++) {
        unsigned char *p = xr_region(env, block, r);
        for (size_t j = 0; j < env->region_bytes; j++)
            p[j] = xr_pattern(hash, r * env->region_bytes + j);
    }
}

/* Whether the block holds the bytes of @p hash (whatever the sender's
 * arrangement: the pattern is over canonical bytes). */
static inline bool xr_verify(const xr_env_t *env, uint32_t block, uint64_t hash)
{
    for (uint32_t r = 0; r < env->regions; r++) {
        const unsigned char *p = xr_region(env, block, r);
        for (size_t j = 0; j < env->region_bytes; j++)
            if (p[j] != xr_pattern(hash, r * env->region_bytes + j))
                return false;
    }
    return true;
}

/* Sequence hashes of @p n blocks of a prompt unique to @p salt. */
static inline void xr_hashes(uint32_t salt, size_t n, uint64_t *hashes)
{
    enum { TOKENS = 16 };
    uint32_t *tokens = malloc(n * TOKENS * sizeof(*tokens));
    for (size_t i = 0; i < n * TOKENS; i++)
        tokens[i] = salt * 100003u + (uint32_t)i;
    size_t got = 0;
    (void)kvbm_hash_tokens(tokens, n * TOKENS, TOKENS, 0, hashes, &got);
    free(tokens);
}

/* Allocates, fills and registers n blocks under hashes; the caller keeps the
 * references. */
static inline kvbm_status_t xr_make_blocks(xr_env_t *env, const uint64_t *hashes, size_t n,
                                           uint32_t *ids)
{
    kvbm_status_t status = kvbm_manager_allocate(env->manager, n, ids, NULL, NULL);
    if (status != KVBM_OK)
        return status;
    for (size_t i = 0; i < n; i++)
        xr_fill(env, ids[i], hashes[i]);
    return kvbm_manager_register(env->manager, ids, hashes, n, NULL, ids);
}

/* Whether blocks @p ids[0..n) hold the bytes of @p hashes[0..n). */
static inline bool xr_verify_all(const xr_env_t *env, const uint32_t *ids, const uint64_t *hashes,
                                 size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!xr_verify(env, ids[i], hashes[i])) {
            fprintf(stderr, "rank %d: block %u does not hold the bytes of hash %zu\n", xr_rank,
                    ids[i], i);
            return false;
        }
    return true;
}

/* Pushes n blocks to @p peer and waits: the transfer's status (the request
 * is freed either way; the caller keeps its references to @p ids). */
static inline kvbm_status_t xr_push_wait(xr_env_t *env, int peer, const uint32_t *ids,
                                         const uint64_t *hashes, size_t n)
{
    kvbm_xfer_req_t *req;
    kvbm_status_t status = kvbm_xfer_push(env->xfer, peer, ids, hashes, n, NULL, &req);
    if (status != KVBM_OK)
        return status;
    status = kvbm_xfer_req_wait(req);
    kvbm_xfer_req_free(req);
    return status;
}

/* Pulls @p hashes from @p peer and waits; on success the blocks that arrived
 * are the caller's (references taken into @p ids, room for n) and
 * @p arrived says how many. */
static inline kvbm_status_t xr_pull_wait(xr_env_t *env, int peer, const uint64_t *hashes, size_t n,
                                         uint32_t *ids, size_t *arrived)
{
    kvbm_xfer_req_t *req;
    kvbm_status_t status = kvbm_xfer_pull(env->xfer, peer, hashes, n, &req);
    if (status != KVBM_OK)
        return status;
    status = kvbm_xfer_req_wait(req);
    if (status == KVBM_OK)
        status = kvbm_xfer_req_blocks(req, ids, n, arrived);
    kvbm_xfer_req_free(req);
    return status;
}

/* Whether every one of @p hashes is held here with its bytes: matched,
 * checked, and released again. */
static inline bool xr_holds(xr_env_t *env, const uint64_t *hashes, size_t n)
{
    uint32_t *ids = malloc(n * sizeof(*ids));
    size_t matched = 0;
    bool held =
        ids != NULL && kvbm_manager_match(env->manager, hashes, n, ids, &matched) == KVBM_OK;
    if (held) {
        held = matched == n && xr_verify_all(env, ids, hashes, n);
        held = kvbm_manager_release(env->manager, ids, matched) == KVBM_OK && held;
    }
    if (!held)
        fprintf(stderr, "rank %d: %zu of %zu blocks held\n", xr_rank, matched, n);
    free(ids);
    return held;
}

static inline bool xr_pools(xr_env_t *env, size_t reset, size_t active, size_t inactive)
{
    kvbm_pool_counts_t c;
    kvbm_manager_counts(env->manager, &c);
    if (c.reset == reset && c.active == active && c.inactive == inactive)
        return true;
    fprintf(stderr, "rank %d: pools reset %zu active %zu inactive %zu, expected %zu %zu %zu\n",
            xr_rank, c.reset, c.active, c.inactive, reset, active, inactive);
    return false;
}

/* As xr_pools, but gives a peer's service thread up to @p seconds to drop
 * the references it held while serving a pull: a pull completes when its
 * bytes arrived, and the server releases right after they left. */
static inline bool xr_pools_settle(xr_env_t *env, size_t reset, size_t active, size_t inactive,
                                   double seconds)
{
    double deadline = xr_now() + seconds;
    for (;;) {
        kvbm_pool_counts_t c;
        kvbm_manager_counts(env->manager, &c);
        if ((c.reset == reset && c.active == active && c.inactive == inactive) ||
            xr_now() > deadline)
            return xr_pools(env, reset, active, inactive);
        struct timespec ts = {.tv_sec = 0, .tv_nsec = 1000000};
        nanosleep(&ts, NULL);
    }
}

#endif /* KVBM_TESTS_XFER_RANKS_H */
