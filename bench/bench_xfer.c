/*
 * Transfer benchmark: push bandwidth by region size and block count, next to
 * the raw bandwidth of the same transport moving the same bytes as one
 * contiguous message (kvbm_xfer_send_raw), measured in the same run, and
 * their ratio (runs alternate, so drift hits both alike). Two processes,
 * socket (CPU) transport, a layer-separate slab of 4 layers. "runs" pushes
 * consecutive block ids (one piece per layer), "scattered" every other id
 * (one piece per block and layer). Then the cost of a connection's
 * handshake (connect + challenge-response + CONNECT) against a bare connect
 * on the same path. Prints numbers only; it never passes or fails.
 *
 *   bench_xfer [--quick] [--min-seconds S] [--netns]
 *
 * --netns runs the two processes on two "hosts": network namespaces joined
 * by veth pairs on a bridge (tests/xfer_hosts.h; needs root), with a shared
 * secret; otherwise they meet on 127.0.0.1 (the handshake then uses a
 * secret too).
 */
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>

#include "xfer/handshake.h"
#include "xfer_hosts.h"
#include "xfer_ranks.h"

#define LAYERS 4
#define KEY    0x62656e6368ull

typedef struct bench_args {
    double min_seconds;
    bool quick;
    const char *where; /* for the headers */
    /* Handshake phase, shared between the two processes (MAP_SHARED). */
    atomic_int hs_ports_ready;
    uint16_t hs_port;    /* rank 0's handshake listener */
    uint16_t plain_port; /* rank 0's accept-and-close listener */
    atomic_int hs_done;
} bench_args_t;

static const char SECRET[] = "bench_xfer shared secret, 32 b.";
static char rank0_host[64] = "127.0.0.1";

/* Ratios of the rows, for the summary line (rank 0 only). */
static double ratios[64];
static size_t n_ratios;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/*
 * Times a and b alternately (one run of each per round) until min_seconds of
 * rounds passed and at least 3 rounds ran, so drift in the machine's state
 * hits both alike. Writes GB/s of each; false on a transfer error.
 */
typedef kvbm_status_t (*op_fn)(void *ctx);

static bool measure_pair(op_fn a, op_fn b, void *ctx, size_t bytes, double min_seconds,
                         double *a_gbs, double *b_gbs)
{
    if (a(ctx) != KVBM_OK || b(ctx) != KVBM_OK) /* warm-up: page faults, scratch */
        return false;
    double ta = 0, tb = 0, start = xr_now();
    int rounds = 0;
    do {
        double t0 = xr_now();
        if (a(ctx) != KVBM_OK)
            return false;
        double t1 = xr_now();
        if (b(ctx) != KVBM_OK)
            return false;
        double t2 = xr_now();
        ta += t1 - t0;
        tb += t2 - t1;
        rounds++;
    } while (xr_now() - start < min_seconds || rounds < 3);
    *a_gbs = (double)bytes * rounds / ta / 1e9;
    *b_gbs = (double)bytes * rounds / tb / 1e9;
    return true;
}

typedef struct push_ctx {
    xr_env_t *env;
    const uint32_t *ids;
    uint64_t *hashes;
    size_t n;
    const void *raw;
    size_t raw_bytes;
} push_ctx_t;

static kvbm_status_t do_push(void *arg)
{
    push_ctx_t *c = arg;
    /* New hashes every time: the receiver would otherwise hold them already
     * and (rightly) not receive their bytes again. */
    for (size_t i = 0; i < c->n; i++)
        c->hashes[i] += 0x9e3779b97f4a7c15ull;
    kvbm_xfer_req_t *req;
    kvbm_status_t status = kvbm_xfer_push(c->env->xfer, 1, c->ids, c->hashes, c->n, NULL, &req);
    if (status != KVBM_OK)
        return status;
    status = kvbm_xfer_req_wait(req);
    kvbm_xfer_req_free(req);
    return status;
}

static kvbm_status_t do_raw(void *arg)
{
    push_ctx_t *c = arg;
    kvbm_xfer_req_t *req;
    kvbm_status_t status = kvbm_xfer_send_raw(c->env->xfer, 1, c->raw, c->raw_bytes, &req);
    if (status != KVBM_OK)
        return status;
    status = kvbm_xfer_req_wait(req);
    kvbm_xfer_req_free(req);
    return status;
}

/* ------------------------------------------------------------ handshakes */

/* Rank 0: accepts and closes at once, until the client is done. */
static void *plain_server(void *arg)
{
    int *fds = arg; /* listener, stop pipe */
    for (;;) {
        struct pollfd pfd[2] = {{.fd = fds[0], .events = POLLIN}, {.fd = fds[1], .events = POLLIN}};
        if (poll(pfd, 2, -1) < 0 || pfd[1].revents != 0)
            return NULL;
        int fd;
        if (kvbm__sock_accept_now(fds[0], &fd) == KVBM_OK)
            close(fd);
    }
}

/* Rank 1: connects (and shakes hands), then waits for the server to close. */
static kvbm_status_t one_connection(const kvbm__addr_t *addr, const kvbm__auth_t *auth)
{
    uint64_t deadline = kvbm__deadline_ms(5000);
    int fd;
    kvbm_status_t status = kvbm__sock_connect(addr, deadline, false, &fd);
    if (status != KVBM_OK)
        return status;
    if (auth != NULL) {
        status = kvbm__hs_client(fd, auth, KVBM__PURPOSE_MESH, deadline);
        kvbm__wire_hdr_t hdr;
        kvbm__wire_hdr_init(&hdr, KVBM__MSG_CONNECT, KVBM_OK, 1);
        uint8_t session[KVBM__SESSION_BYTES] = {0};
        if (status == KVBM_OK)
            status = kvbm__wire_send(fd, deadline, &hdr, session, sizeof(session), NULL, 0);
    }
    char byte;
    if (status == KVBM_OK)
        status = kvbm__sock_read(fd, &byte, 1, deadline) == KVBM_ERR_PEER ? KVBM_OK : KVBM_ERR_IO;
    close(fd);
    return status;
}

static int handshake_rank(int rank, bench_args_t *a)
{
    enum { ROUNDS = 200 };
    kvbm__auth_t auth;
    XR_CHECK_OK(kvbm__auth_init(SECRET, strlen(SECRET), NULL, &auth));
    kvbm__addr_t addr;
    XR_CHECK_OK(kvbm__addr_parse(rank0_host, 0, &addr));
    if (rank == 0) {
        int hs_fd, plain_fd, stop[2];
        XR_CHECK_OK(kvbm__sock_listen(&addr, 128, &hs_fd, &a->hs_port));
        XR_CHECK_OK(kvbm__sock_listen(&addr, 128, &plain_fd, &a->plain_port));
        XR_CHECK(pipe(stop) == 0);
        int fds[2] = {plain_fd, stop[0]};
        pthread_t plain;
        XR_CHECK(pthread_create(&plain, NULL, plain_server, fds) == 0);
        atomic_store(&a->hs_ports_ready, 1);
        kvbm__xfer_counters_t counters = {0};
        kvbm__hs_pool_t *pool = malloc(sizeof(*pool));
        XR_CHECK(pool != NULL);
        kvbm__hs_pool_init(pool, &auth, &counters, KVBM__PURPOSE_MESH, KVBM__MSG_CONNECT,
                           KVBM__SESSION_BYTES, 5000, hs_fd, -1);
        while (atomic_load(&a->hs_done) == 0) {
            kvbm__hs_t done;
            if (kvbm__hs_pool_next(pool, kvbm__deadline_ms(50), &done) == KVBM_OK)
                close(done.fd);
        }
        kvbm__hs_pool_close(pool);
        free(pool);
        XR_CHECK(write(stop[1], "x", 1) == 1);
        pthread_join(plain, NULL);
        close(stop[0]);
        close(stop[1]);
        close(hs_fd);
        close(plain_fd);
        printf("# connection handshake (connect + challenge-response + CONNECT) against a bare "
               "connect, %d each, alternating\n",
               ROUNDS);
        return 0;
    }
    while (atomic_load(&a->hs_ports_ready) == 0)
        usleep(1000);
    kvbm__addr_t hs_addr = addr, plain_addr = addr;
    kvbm__addr_set_port(&hs_addr, a->hs_port);
    kvbm__addr_set_port(&plain_addr, a->plain_port);
    double t_hs = 0, t_plain = 0;
    for (int i = 0; i < ROUNDS + 10; i++) {
        double t0 = xr_now();
        XR_CHECK_OK(one_connection(&hs_addr, &auth));
        double t1 = xr_now();
        XR_CHECK_OK(one_connection(&plain_addr, NULL));
        double t2 = xr_now();
        if (i >= 10) { /* warm-up */
            t_hs += t1 - t0;
            t_plain += t2 - t1;
        }
    }
    /* The tags alone, in this process. */
    uint8_t nc[KVBM__NONCE_BYTES] = {1}, ns[KVBM__NONCE_BYTES] = {2}, tag[KVBM__TAG_BYTES];
    enum { TAGS = 20000 };
    double t3 = xr_now();
    for (int i = 0; i < TAGS; i++) {
        nc[0] = (uint8_t)i;
        kvbm__auth_tag(&auth, 'c', KVBM__PURPOSE_MESH, nc, ns, tag);
        XR_CHECK(kvbm__auth_check(&auth, 'c', KVBM__PURPOSE_MESH, nc, ns, tag));
    }
    double per_tag_pair = (xr_now() - t3) / TAGS;
    atomic_store(&a->hs_done, 1);
    usleep(100000); /* rank 0 prints the header first */
    printf("%14s %12s %10s %22s\n", "handshake_us", "connect_us", "extra_us",
           "tag+check_us (1 side)");
    printf("%14.1f %12.1f %10.1f %22.2f\n", 1e6 * t_hs / ROUNDS, 1e6 * t_plain / ROUNDS,
           1e6 * (t_hs - t_plain) / ROUNDS, 1e6 * per_tag_pair);
    return 0;
}

static int bench_rank(int rank, int size, uint16_t port, kvbm_xfer_rendezvous_t *rv, void *arg)
{
    bench_args_t *a = arg;
    static const size_t region_sizes[] = {4096, 16384, 65536, 262144};
    static const size_t counts[] = {16, 64, 256};
    size_t n_sizes = a->quick ? 2 : 4;
    if (rank == 0) {
        printf("# socket transport, 2 processes %s, %d layers, layer-separate\n", a->where, LAYERS);
        printf("%10s %7s %10s %7s %9s %10s %10s %7s\n", "region_KiB", "blocks", "ids", "pieces",
               "MiB", "push_GB/s", "raw_GB/s", "ratio");
    }
    for (size_t si = 0; si < n_sizes; si++) {
        size_t region = region_sizes[si];
        size_t block_bytes = LAYERS * region;
        uint32_t pool = (uint32_t)((128u << 20) / block_bytes);
        if (pool > 512)
            pool = 512;
        xr_shape_t shape = {.blocks = pool,
                            .regions = LAYERS,
                            .region_bytes = region,
                            .layer_separate = true,
                            .layout_key = KEY,
                            .timeout_ms = 10000,
                            /* Raw bytes land in as much memory as the
                             * pushes do, not in a cache-resident 4 MiB. */
                            .raw_scratch_bytes = (size_t)pool * block_bytes};
        xr_env_t env;
        XR_CHECK_OK(xr_env_open(&env, &shape, rank, size, port, rv));
        /* Fault the slab in, as an engine's KV pool would be: otherwise the
         * first pushes pay the receiver's page faults, not the transfer. */
        memset(env.slab, 0, (size_t)pool * block_bytes);
        if (rank == 0) {
            uint32_t *all = malloc(pool * sizeof(*all));
            uint32_t *ids = malloc(pool * sizeof(*ids));
            uint64_t *hashes = malloc(pool * sizeof(*hashes));
            XR_CHECK(all != NULL && ids != NULL && hashes != NULL);
            XR_CHECK_OK(kvbm_manager_allocate(env.manager, pool, all, NULL, NULL));
            xr_hashes((uint32_t)si, pool, hashes);
            for (size_t ci = 0; ci < sizeof(counts) / sizeof(counts[0]); ci++) {
                size_t n = counts[ci];
                if (2 * n > pool)
                    continue;
                void *raw = malloc(n * block_bytes);
                XR_CHECK(raw != NULL);
                memset(raw, 0x5a, n * block_bytes);
                for (int pattern = 0; pattern < 2; pattern++) {
                    for (size_t i = 0; i < n; i++)
                        ids[i] = pattern == 0 ? all[i] : all[2 * i];
                    size_t pieces = pattern == 0 ? LAYERS : n * LAYERS;
                    push_ctx_t ctx = {.env = &env,
                                      .ids = ids,
                                      .hashes = hashes,
                                      .n = n,
                                      .raw = raw,
                                      .raw_bytes = n * block_bytes};
                    double push = 0, rawbw = 0;
                    XR_CHECK(measure_pair(do_push, do_raw, &ctx, n * block_bytes, a->min_seconds,
                                          &push, &rawbw));
                    printf("%10zu %7zu %10s %7zu %9.1f %10.2f %10.2f %6.0f%%\n", region / 1024, n,
                           pattern == 0 ? "runs" : "scattered", pieces,
                           (double)(n * block_bytes) / (1 << 20), push, rawbw,
                           100.0 * push / rawbw);
                    if (n_ratios < 64)
                        ratios[n_ratios++] = push / rawbw;
                }
                free(raw);
            }
            XR_CHECK_OK(kvbm_manager_release(env.manager, all, pool));
            free(all);
            free(ids);
            free(hashes);
        }
        XR_CHECK_OK(kvbm_xfer_barrier(env.xfer));
        xr_env_close(&env);
    }
    if (rank == 0 && n_ratios > 0) {
        qsort(ratios, n_ratios, sizeof(ratios[0]), cmp_double);
        printf("# push/raw over %zu rows: min %.0f%%, median %.0f%%, max %.0f%% (target 90%%)\n",
               n_ratios, 100 * ratios[0], 100 * ratios[n_ratios / 2], 100 * ratios[n_ratios - 1]);
    }
    return handshake_rank(rank, a);
}

int main(int argc, char **argv)
{
    bench_args_t *args =
        mmap(NULL, sizeof(*args), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (args == MAP_FAILED)
        return 1;
    memset(args, 0, sizeof(*args));
    args->min_seconds = 0.15;
    args->where = "on 127.0.0.1";
    bool netns = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) {
            args->quick = true;
            args->min_seconds = 0.05;
        } else if (strcmp(argv[i], "--min-seconds") == 0 && i + 1 < argc) {
            args->min_seconds = atof(argv[++i]);
        } else if (strcmp(argv[i], "--netns") == 0) {
            netns = true;
        } else {
            fprintf(stderr, "usage: %s [--quick] [--min-seconds S] [--netns]\n", argv[0]);
            return 2;
        }
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    xr_hosts_t hosts;
    if (netns) {
        int up = xr_hosts_up(&hosts, 2);
        if (up != 0) {
            fprintf(stderr, "--netns: %s\n", up == XR_HOSTS_SKIP ? hosts.why_skipped : "failed");
            return 1;
        }
        for (int r = 0; r < 2; r++) {
            xr_net.netns[r] = hosts.ns[r];
            xr_net.listen[r] = hosts.v4[r];
        }
        xr_net.rendezvous_host = hosts.v4[0];
        xr_net.rendezvous_port = 29500;
        xr_net.secret = SECRET;
        xr_net.secret_len = strlen(SECRET);
        snprintf(rank0_host, sizeof(rank0_host), "%s", hosts.v4[0]);
        args->where = "in two network namespaces over veth + bridge (10.88.0.1 -> 10.88.0.2)";
    }
    double t0 = xr_now();
    int rc = xr_run(2, bench_rank, args, 0, 600.0);
    printf("# total %.1f s\n", xr_now() - t0);
    if (netns)
        xr_hosts_down(&hosts);
    munmap(args, sizeof(*args));
    return rc == 0 ? 0 : 1;
}
