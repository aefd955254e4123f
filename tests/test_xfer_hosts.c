/*
 * Transfers between hosts: each rank in a network namespace of its own,
 * joined by veth pairs on a bridge (xfer_hosts.h), authenticated with a
 * shared secret. Two hosts over IPv6 and three over IPv4: push and pull
 * with every byte checked; a wrong secret refused (at the rendezvous and at
 * a mesh port) and counted while the real ranks carry on; a peer killed in
 * the middle of a push (the receiver registers nothing, loses no block, and
 * keeps serving the third host); the disaggregated example across two
 * namespaces. Needs root and `ip netns`: skips (ctest's skip code) without.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <sys/mman.h>
#include <sys/stat.h>

#include "kvbm_test.h"
#include "xfer/fault.h"
#include "xfer/handshake.h"
#include "xfer_hosts.h"
#include "xfer_ranks.h"

#define LIMIT_S   40.0
#define KEY       0x686f737473ull
#define RV_PORT   29500
#define MESH_PORT 29501

static xr_hosts_t hosts;
static const char SECRET[] = "kvbm host test secret, 32 bytes!";
static const char WRONG[] = "not the secret of these hosts....";

static const xr_shape_t SHAPE = {.blocks = 64,
                                 .regions = 4,
                                 .region_bytes = 1024,
                                 .layer_separate = true,
                                 .layout_key = KEY,
                                 .timeout_ms = 3000};

/* Shared by the test and its ranks (MAP_SHARED: they are processes). */
typedef struct shared {
    atomic_int impostor_done;
    atomic_int push_done;
} shared_t;

static shared_t *shared_new(void)
{
    shared_t *s = mmap(NULL, sizeof(*s), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(s != MAP_FAILED);
    memset(s, 0, sizeof(*s));
    return s;
}

/* Every rank in host i's namespace, meeting at host 0 over @p ipv6 or
 * IPv4, listening on its own address (or, with @p default_listen, on the
 * one it reached host 0 from). */
static void net_over(int n, bool ipv6, bool default_listen)
{
    memset(&xr_net, 0, sizeof(xr_net));
    for (int i = 0; i < n; i++) {
        xr_net.netns[i] = hosts.ns[i];
        xr_net.listen[i] = default_listen ? NULL : ipv6 ? hosts.v6[i] : hosts.v4[i];
    }
    xr_net.rendezvous_host = ipv6 ? hosts.v6[0] : hosts.v4[0];
    xr_net.rendezvous_port = RV_PORT;
    xr_net.secret = SECRET;
    xr_net.secret_len = strlen(SECRET);
}

static void pause_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ------------------------------------------------------------ push and pull */

/* Every rank pushes N blocks to the next and checks what it got from the
 * previous; then drops its own and pulls them back from the next. */
static int rank_ring(int rank, int size, uint16_t port, kvbm_xfer_rendezvous_t *rv, void *arg)
{
    xr_env_t env;
    XR_CHECK_OK(xr_env_open(&env, &SHAPE, rank, size, port, rv));
    enum { N = 12 };
    uint64_t mine[N], from_prev[N];
    uint32_t ids[N];
    int next = (rank + 1) % size, prev = (rank + size - 1) % size;
    xr_hashes(700 + (uint32_t)rank, N, mine);
    xr_hashes(700 + (uint32_t)prev, N, from_prev);
    XR_CHECK_OK(xr_make_blocks(&env, mine, N, ids));

    XR_CHECK_OK(xr_push_wait(&env, next, ids, mine, N));
    XR_CHECK_OK(kvbm_xfer_barrier(env.xfer));
    size_t n = 0;
    XR_CHECK(xr_holds(&env, from_prev, N));

    /* Drop this rank's own copies (the next rank keeps its), then pull them
     * back. */
    XR_CHECK_OK(kvbm_manager_invalidate(env.manager, ids, N));
    XR_CHECK_OK(kvbm_manager_release(env.manager, ids, N));
    XR_CHECK(!kvbm_manager_contains(env.manager, mine[0]));
    XR_CHECK_OK(xr_pull_wait(&env, next, mine, N, ids, &n));
    XR_CHECK(n == N);
    XR_CHECK(xr_verify_all(&env, ids, mine, N));
    XR_CHECK_OK(kvbm_xfer_barrier(env.xfer));
    XR_CHECK_OK(kvbm_manager_release(env.manager, ids, N));
    kvbm_xfer_stats_t stats;
    XR_CHECK_OK(kvbm_xfer_stats(env.xfer, &stats));
    XR_CHECK(stats.auth_failures == 0 && stats.protocol_errors == 0);
    xr_env_close(&env);
    return 0;
}

static void two_hosts_over_ipv6_push_and_pull_every_byte(void **state)
{
    net_over(2, true, false);
    assert_int_equal(xr_run(2, rank_ring, NULL, 0, LIMIT_S), 0);
}

static void three_hosts_over_ipv4_ring_push_and_cross_pull(void **state)
{
    net_over(3, false, true); /* each listens where it reached host 0 from */
    assert_int_equal(xr_run(3, rank_ring, NULL, 0, LIMIT_S), 0);
}

/* ------------------------------------------------------------ wrong secret */

/* Ranks 0 and 1 form a mesh of two; "rank" 2 is an impostor on a third host
 * that first tries to join as rank 1 with a wrong secret, then knocks at
 * rank 0's mesh port with a wrong secret and with none. */
static int rank_against_impostor(int rank, int size, uint16_t port, kvbm_xfer_rendezvous_t *rv,
                                 void *arg)
{
    shared_t *sh = arg;
    enum { N = 6 };
    if (rank == 2) {
        xr_shape_t shape = SHAPE;
        shape.timeout_ms = 1500;
        xr_net.secret = WRONG;
        xr_net.secret_len = strlen(WRONG);
        xr_net.listen[1] = hosts.v4[2]; /* this host's own address */
        xr_env_t env;
        double t0 = xr_now();
        XR_CHECK_STATUS(xr_env_open(&env, &shape, 1, 2, port, NULL), KVBM_ERR_AUTH);
        XR_CHECK(xr_now() - t0 < 1.4); /* refused by the handshake, not a timeout */
        atomic_store(&sh->impostor_done, 1);
        while (atomic_load(&sh->push_done) == 0)
            pause_ms(5);
        kvbm__addr_t mesh;
        XR_CHECK_OK(kvbm__addr_parse(hosts.v4[0], MESH_PORT, &mesh));
        kvbm__auth_t wrong, none;
        XR_CHECK_OK(kvbm__auth_init(WRONG, strlen(WRONG), NULL, &wrong));
        XR_CHECK_OK(kvbm__auth_init(NULL, 0, NULL, &none));
        const kvbm__auth_t *tries[2] = {&wrong, &none};
        for (int i = 0; i < 2; i++) {
            int fd;
            uint64_t deadline = kvbm__deadline_ms(2000);
            XR_CHECK_OK(kvbm__sock_connect(&mesh, deadline, false, &fd));
            XR_CHECK_STATUS(kvbm__hs_client(fd, tries[i], KVBM__PURPOSE_MESH, deadline),
                            KVBM_ERR_AUTH);
            close(fd);
        }
        atomic_store(&sh->impostor_done, 2);
        return 0;
    }
    if (rank == 1)
        while (atomic_load(&sh->impostor_done) == 0)
            pause_ms(5);
    xr_env_t env;
    XR_CHECK_OK(xr_env_open(&env, &SHAPE, rank, 2, port, rv));
    uint64_t hashes[N];
    uint32_t ids[N];
    xr_hashes(810, N, hashes);
    if (rank == 1) {
        XR_CHECK_OK(xr_make_blocks(&env, hashes, N, ids));
        XR_CHECK_OK(xr_push_wait(&env, 0, ids, hashes, N));
        XR_CHECK_OK(kvbm_manager_release(env.manager, ids, N));
        atomic_store(&sh->push_done, 1);
    } else {
        while (atomic_load(&sh->impostor_done) < 2)
            pause_ms(5);
        /* Refused and counted: once at the rendezvous, twice at the mesh. */
        kvbm_xfer_stats_t stats;
        double t0 = xr_now();
        do {
            XR_CHECK_OK(kvbm_xfer_stats(env.xfer, &stats));
        } while (stats.auth_failures < 3 && xr_now() - t0 < 2.0);
        XR_CHECK(stats.auth_failures == 3);
        XR_CHECK(xr_holds(&env, hashes, N));
    }
    XR_CHECK_OK(kvbm_xfer_barrier(env.xfer));
    xr_env_close(&env);
    return 0;
}

static void wrong_secret_refused_counted_and_harmless(void **state)
{
    net_over(3, false, false);
    xr_net.listen_port = MESH_PORT;
    xr_net.rendezvous_host = hosts.v4[0];
    shared_t *sh = shared_new();
    assert_int_equal(xr_run(3, rank_against_impostor, sh, 0, LIMIT_S), 0);
    munmap(sh, sizeof(*sh));
}

/* ------------------------------------------------------------ killed peer */

enum { FAULT_BLOCKS = 32 };

/* Rank 1 dies in the middle of its push to rank 0; rank 0 registers
 * nothing, loses no block, refuses nothing to rank 2, and a push to the
 * dead rank fails at once. */
static int rank_killed_mid_push(int rank, int size, uint16_t port, kvbm_xfer_rendezvous_t *rv,
                                void *arg)
{
    shared_t *sh = arg;
    xr_env_t env;
    if (rank == 1)
        kvbm__xfer_fault_set(KVBM__FAULT_DIE, 40000); /* of 128 KiB */
    XR_CHECK_OK(xr_env_open(&env, &SHAPE, rank, size, port, rv));
    uint64_t hashes[FAULT_BLOCKS];
    uint32_t ids[FAULT_BLOCKS];
    xr_hashes(820 + (uint32_t)rank, FAULT_BLOCKS, hashes);
    kvbm_xfer_req_t *req;
    if (rank == 1) {
        XR_CHECK_OK(xr_make_blocks(&env, hashes, FAULT_BLOCKS, ids));
        XR_CHECK_OK(kvbm_xfer_push(env.xfer, 0, ids, hashes, FAULT_BLOCKS, NULL, &req));
        (void)kvbm_xfer_req_wait(req); /* never returns: the fault fires first */
        fprintf(stderr, "rank 1: the fault did not fire\n");
        return 1;
    }
    if (rank == 2) {
        while (atomic_load(&sh->push_done) == 0)
            pause_ms(5);
        XR_CHECK_OK(xr_make_blocks(&env, hashes, 8, ids));
        XR_CHECK_OK(xr_push_wait(&env, 0, ids, hashes, 8));
        XR_CHECK_OK(kvbm_manager_release(env.manager, ids, 8));
        atomic_store(&sh->push_done, 2);
        xr_env_close(&env);
        return 0;
    }
    double t0 = xr_now();
    while (atomic_load(&env.arrivals_failed) == 0 && xr_now() - t0 < 8.0)
        pause_ms(1);
    XR_CHECK(atomic_load(&env.arrivals_failed) == 1);
    XR_CHECK(atomic_load(&env.last_failure) == KVBM_ERR_PEER);
    XR_CHECK(xr_pools(&env, env.blocks, 0, 0));
    uint64_t dead_hashes[FAULT_BLOCKS];
    xr_hashes(821, FAULT_BLOCKS, dead_hashes);
    for (size_t i = 0; i < FAULT_BLOCKS; i++)
        XR_CHECK(!kvbm_manager_contains(env.manager, dead_hashes[i]));
    /* The third host is served as before. */
    atomic_store(&sh->push_done, 1);
    while (atomic_load(&sh->push_done) != 2 && xr_now() - t0 < 15.0)
        pause_ms(2);
    uint64_t from2[8];
    xr_hashes(822, 8, from2);
    XR_CHECK(xr_holds(&env, from2, 8));
    /* The dead host's process is gone: a push there fails at once. */
    uint32_t one;
    XR_CHECK_OK(xr_make_blocks(&env, hashes, 1, &one));
    double t1 = xr_now();
    XR_CHECK_OK(kvbm_xfer_push(env.xfer, 1, &one, hashes, 1, NULL, &req));
    XR_CHECK_STATUS(kvbm_xfer_req_wait(req), KVBM_ERR_PEER);
    kvbm_xfer_req_free(req);
    XR_CHECK(xr_now() - t1 < 1.0);
    XR_CHECK_OK(kvbm_manager_release(env.manager, &one, 1));
    xr_env_close(&env);
    return 0;
}

static void peer_killed_mid_push_across_hosts(void **state)
{
    net_over(3, false, false);
    shared_t *sh = shared_new();
    assert_int_equal(xr_run(3, rank_killed_mid_push, sh, 1u << 1, LIMIT_S), 0);
    munmap(sh, sizeof(*sh));
}

/* ------------------------------------------------------------ example */

/* Runs @p argv in namespace @p ns; returns the child's pid. */
static pid_t spawn_in(const char *ns, char *const argv[])
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        if (xr_enter_netns(ns) != 0)
            _exit(126);
        execv(argv[0], argv);
        _exit(127);
    }
    return pid;
}

static void disaggregated_example_across_two_hosts(void **state)
{
    const char *bin = getenv("KVBM_BINARY_DIR");
    char exe[512], secret_path[] = "/tmp/kvbm-hosts-secret-XXXXXX";
    snprintf(exe, sizeof(exe), "%s/example_disagg_prefill_decode", bin ? bin : ".");
    if (access(exe, X_OK) != 0) {
        print_message("skipped: %s not built\n", exe);
        skip();
    }
    int fd = mkstemp(secret_path); /* mode 600 */
    assert_true(fd >= 0);
    assert_int_equal(write(fd, SECRET, strlen(SECRET)), (ssize_t)strlen(SECRET));
    close(fd);
    char port[8];
    snprintf(port, sizeof(port), "%d", RV_PORT);
    char *prefill[] = {exe,      "--role", "prefill",       "--rendezvous", hosts.v6[0],
                       "--port", port,     "--secret-file", secret_path,    NULL};
    char *decode[] = {exe,  "--role",        "decode",    "--rendezvous", hosts.v6[0], "--port",
                      port, "--secret-file", secret_path, "--listen",     hosts.v6[1], NULL};
    pid_t p = spawn_in(hosts.ns[0], prefill);
    pid_t d = spawn_in(hosts.ns[1], decode);
    int ps = -1, ds = -1;
    assert_int_equal(waitpid(p, &ps, 0), p);
    assert_int_equal(waitpid(d, &ds, 0), d);
    unlink(secret_path);
    assert_true(WIFEXITED(ps) && WEXITSTATUS(ps) == 0);
    assert_true(WIFEXITED(ds) && WEXITSTATUS(ds) == 0); /* decode verified every byte */
}

int main(void)
{
    int up = xr_hosts_up(&hosts, 3);
    if (up == XR_HOSTS_SKIP) {
        printf("skipped: %s\n", hosts.why_skipped);
        return XR_HOSTS_SKIP;
    }
    if (up != 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(two_hosts_over_ipv6_push_and_pull_every_byte),
        cmocka_unit_test(three_hosts_over_ipv4_ring_push_and_cross_pull),
        cmocka_unit_test(wrong_secret_refused_counted_and_harmless),
        cmocka_unit_test(peer_killed_mid_push_across_hosts),
        cmocka_unit_test(disaggregated_example_across_two_hosts),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    xr_hosts_down(&hosts);
    return failed;
}
