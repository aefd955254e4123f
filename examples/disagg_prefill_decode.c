/*
 * Disaggregated prefill -> decode over kvbm transfers.
 *
 * Two processes: rank 0 plays the prefill engine, rank 1 the decode engine.
 * Prefill hashes the prompt into blocks (kvbm_hash_tokens),
 * "computes" each block's KV bytes (here: bytes derived from the block's
 * sequence hash), registers them in its block manager and pushes them to the
 * decode rank. Decode receives them into blocks of its own manager; when the
 * same request arrives there, it hashes the prompt, matches the prefix and
 * checks every byte.
 *
 *   example_disagg_prefill_decode [--transport socket|nccl|auto] [--tokens N]
 *
 * runs both engines on this host (the program forks) over loopback. auto
 * (the default) uses NCCL when it is built and each rank has a GPU of its
 * own (two or more here: rank r uses device r; the KV pools are then CUDA
 * device pools), else the CPU (socket) transport with host pools of the CPU
 * backend.
 *
 *   example_disagg_prefill_decode --role prefill|decode --rendezvous ADDR
 *       --port PORT --secret-file FILE [--listen ADDR] [--transport socket|nccl]
 *       [--device D] [--tokens N]
 *
 * runs one engine in this process, for engines on different hosts: both
 * name the prefill host's address (IPv4 or IPv6) and port, and a file
 * holding the shared secret (mode 600; the secret itself never goes on a
 * command line). The socket transport unless --transport nccl (then this
 * host's GPU --device, default 0).
 *
 * Blocks are described by a layer-separate kvbm_layout_t. Exit status 0
 * when decode saw every byte.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kvbm/backend.h"
#include "kvbm/kvbm.h"
#include "kvbm/layout.h"
#include "kvbm/xfer.h"

/* A toy model: 4 layers x (K, V) x 16 tokens x 128 dims x 2 bytes. */
enum { LAYERS = 4, OUTER = 2, TOKENS_PER_BLOCK = 16, INNER = 128, ELEM = 2, POOL_BLOCKS = 256 };

#define CHECK(call)                                                                                \
    do {                                                                                           \
        kvbm_status_t check_status_ = (call);                                                      \
        if (check_status_ != KVBM_OK) {                                                            \
            fprintf(stderr, "%s: %s failed: %s\n", role, #call, kvbm_status_str(check_status_));   \
            return 1;                                                                              \
        }                                                                                          \
    } while (0)

static const char *role = "main";

/* How this run's engines meet. */
typedef struct options {
    kvbm_xfer_transport_t transport;
    size_t n_tokens;
    const char *rendezvous_host; /* NULL: 127.0.0.1 */
    uint16_t port;
    const char *listen_host;
    const char *secret_file;
    int device; /* NCCL: this rank's GPU */
} options_t;

/*
 * One engine's KV cache: a layer-separate pool (device memory on the NCCL
 * transport, host memory on the socket one) and, on NCCL, a host staging
 * pool of the same layout where the "model" writes and checks bytes.
 */
typedef struct engine {
    kvbm_layout_t *layout;
    kvbm_backend_t *backend;
    kvbm_stream_t *stream;
    kvbm_fence_t *fence;
    kvbm_pool_t *kv;      /* the blocks the transfer moves */
    kvbm_pool_t *staging; /* host view: kv itself on the socket transport */
    kvbm_manager_t *manager;
    kvbm_xfer_t *xfer;
} engine_t;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static unsigned char kv_byte(uint64_t hash, size_t k)
{
    return (unsigned char)((hash >> ((k & 7u) * 8u)) ^ (k * 131u));
}

/* Walks a block's canonical bytes in the staging pool: writes them (the
 * stand-in for the prefill forward pass) or checks them. */
static int block_bytes(engine_t *e, uint32_t block, uint64_t hash, int write)
{
    size_t chunk = kvbm_layout_chunk_bytes(e->layout);
    for (uint32_t l = 0; l < LAYERS; l++) {
        for (uint32_t o = 0; o < OUTER; o++) {
            void *addr;
            if (kvbm_layout_address(e->layout, kvbm_pool_ptr(e->staging), block, l, o, &addr) !=
                KVBM_OK)
                return 0;
            unsigned char *p = addr;
            size_t k0 = ((size_t)l * OUTER + o) * chunk;
            for (size_t j = 0; j < chunk; j++) {
                if (write)
                    p[j] = kv_byte(hash, k0 + j);
                else if (p[j] != kv_byte(hash, k0 + j))
                    return 0;
            }
        }
    }
    return 1;
}

/* Staging -> KV pool (to_kv) or back, for the listed blocks; NCCL only. */
static kvbm_status_t stage(engine_t *e, const uint32_t *ids, size_t n, int to_kv)
{
    if (e->staging == e->kv)
        return KVBM_OK;
    kvbm_status_t status = kvbm_backend_copy_blocks(
        e->backend, e->stream, e->layout, to_kv ? e->staging : e->kv, ids,
        to_kv ? e->kv : e->staging, ids, n, to_kv ? KVBM_COPY_H2D : KVBM_COPY_D2H, e->fence);
    return status == KVBM_OK ? kvbm_fence_wait(e->fence) : status;
}

static int engine_open(engine_t *e, const options_t *o, int rank, kvbm_xfer_rendezvous_t *rv)
{
    memset(e, 0, sizeof(*e));
    int nccl = o->transport == KVBM_XFER_NCCL;
    kvbm_layout_config_t lc = KVBM_LAYOUT_CONFIG_INIT;
    lc.kind = KVBM_LAYOUT_LAYER_SEPARATE;
    lc.num_blocks = POOL_BLOCKS;
    lc.num_layers = LAYERS;
    lc.outer_dim = OUTER;
    lc.tokens_per_block = TOKENS_PER_BLOCK;
    lc.inner_dim = INNER;
    lc.elem_size = ELEM;
    CHECK(kvbm_layout_create(&lc, &e->layout));
    kvbm_backend_config_t bc = KVBM_BACKEND_CONFIG_INIT;
    bc.kind = nccl ? KVBM_BACKEND_CUDA : KVBM_BACKEND_CPU;
    bc.device = o->device;
    CHECK(kvbm_backend_create(&bc, &e->backend));
    CHECK(kvbm_stream_create(e->backend, &e->stream));
    CHECK(kvbm_fence_create(e->backend, &e->fence));
    size_t total = kvbm_layout_total_bytes(e->layout);
    CHECK(kvbm_pool_create(e->backend, nccl ? KVBM_MEM_DEVICE : KVBM_MEM_HOST, total, &e->kv));
    e->staging = e->kv;
    if (nccl)
        CHECK(kvbm_pool_create(e->backend, KVBM_MEM_HOST, total, &e->staging));

    kvbm_manager_config_t mc = KVBM_MANAGER_CONFIG_INIT;
    mc.num_blocks = POOL_BLOCKS;
    CHECK(kvbm_manager_create(&mc, &e->manager));

    kvbm_xfer_config_t config = KVBM_XFER_CONFIG_INIT;
    config.transport = o->transport;
    config.rank = rank;
    config.size = 2;
    config.rendezvous = rv;
    config.rendezvous_host = o->rendezvous_host;
    config.rendezvous_port = o->port;
    config.listen_host = o->listen_host;
    config.secret_file = o->secret_file;
    config.timeout_ms = 10000;
    config.manager = e->manager;
    config.layout = e->layout;
    config.layout_base = kvbm_pool_ptr(e->kv);
    config.cuda_device = o->device;
    CHECK(kvbm_xfer_create(&config, &e->xfer));
    return 0;
}

static void engine_close(engine_t *e)
{
    kvbm_xfer_destroy(e->xfer);
    kvbm_manager_destroy(e->manager);
    if (e->staging != e->kv)
        kvbm_pool_destroy(e->staging);
    kvbm_pool_destroy(e->kv);
    kvbm_fence_destroy(e->fence);
    kvbm_stream_destroy(e->stream);
    kvbm_backend_destroy(e->backend);
    kvbm_layout_destroy(e->layout);
}

/* The request both engines see: a prompt of n_tokens tokens. */
static uint32_t *make_prompt(size_t n_tokens)
{
    uint32_t *tokens = malloc(n_tokens * sizeof(*tokens));
    for (size_t i = 0; i < n_tokens; i++)
        tokens[i] = (uint32_t)((i * 2654435761u) % 32000u);
    return tokens;
}

static int run_prefill(const options_t *o, kvbm_xfer_rendezvous_t *rv)
{
    role = "prefill";
    size_t n_tokens = o->n_tokens;
    engine_t e;
    if (engine_open(&e, o, 0, rv) != 0)
        return 1;
    uint32_t *tokens = make_prompt(n_tokens);
    size_t n = 0;
    uint64_t hashes[POOL_BLOCKS];
    uint32_t ids[POOL_BLOCKS], remote[POOL_BLOCKS];
    CHECK(kvbm_hash_tokens(tokens, n_tokens, TOKENS_PER_BLOCK, 0, hashes, &n));
    size_t bytes_per_block = kvbm_layout_block_bytes(e.layout);
    printf("prefill: prompt of %zu tokens -> %zu full blocks of %d tokens (%zu bytes each)\n",
           n_tokens, n, TOKENS_PER_BLOCK, bytes_per_block);
    CHECK(kvbm_manager_allocate(e.manager, n, ids, NULL, NULL));
    for (size_t i = 0; i < n; i++)
        block_bytes(&e, ids[i], hashes[i], 1);
    CHECK(stage(&e, ids, n, 1));
    CHECK(kvbm_manager_register(e.manager, ids, hashes, n, NULL, ids));

    double t0 = now_s();
    kvbm_xfer_req_t *req;
    CHECK(kvbm_xfer_push(e.xfer, 1, ids, hashes, n, NULL, &req));
    CHECK(kvbm_xfer_req_wait(req));
    double dt = now_s() - t0;
    size_t got = 0;
    CHECK(kvbm_xfer_req_blocks(req, remote, POOL_BLOCKS, &got));
    kvbm_xfer_req_free(req);
    printf("prefill: pushed %zu blocks (%.1f KiB) to decode in %.2f ms; decode holds them in "
           "blocks %u..%u\n",
           got, (double)(got * bytes_per_block) / 1024.0, dt * 1e3, remote[0], remote[got - 1]);
    CHECK(kvbm_xfer_barrier(e.xfer)); /* decode may look now */
    CHECK(kvbm_xfer_barrier(e.xfer)); /* decode is done */
    CHECK(kvbm_manager_release(e.manager, ids, n));
    free(tokens);
    engine_close(&e);
    return 0;
}

static int run_decode(const options_t *o)
{
    role = "decode";
    size_t n_tokens = o->n_tokens;
    engine_t e;
    if (engine_open(&e, o, 1, NULL) != 0)
        return 1;
    CHECK(kvbm_xfer_barrier(e.xfer));
    /* The request reaches decode: same prompt, plus one generated token. */
    uint32_t *tokens = make_prompt(n_tokens);
    size_t n = 0, matched = 0;
    uint64_t hashes[POOL_BLOCKS];
    uint32_t ids[POOL_BLOCKS];
    CHECK(kvbm_hash_tokens(tokens, n_tokens, TOKENS_PER_BLOCK, 0, hashes, &n));
    CHECK(kvbm_manager_match(e.manager, hashes, n, ids, &matched));
    int ok = matched == n && stage(&e, ids, matched, 0) == KVBM_OK;
    for (size_t i = 0; i < matched; i++)
        ok = ok && block_bytes(&e, ids[i], hashes[i], 0);
    printf("decode: prefix match %zu/%zu blocks, KV bytes %s; %zu prompt tokens left to "
           "prefill locally\n",
           matched, n, ok ? "verified" : "WRONG", n_tokens - matched * TOKENS_PER_BLOCK);
    CHECK(kvbm_manager_release(e.manager, ids, matched));
    CHECK(kvbm_xfer_barrier(e.xfer));
    free(tokens);
    engine_close(&e);
    return ok ? 0 : 1;
}

static int usage(const char *argv0)
{
    fprintf(stderr,
            "usage: %s [--transport socket|nccl|auto] [--tokens N]\n"
            "       %s --role prefill|decode --rendezvous ADDR --port PORT --secret-file FILE\n"
            "          [--listen ADDR] [--transport socket|nccl] [--device D] [--tokens N]\n",
            argv0, argv0);
    return 2;
}

/* NCCL here, for ranks on this host: built, a GPU present, and a second
 * one so each rank has its own. Probed in a child: CUDA must not be
 * initialised before fork. */
static kvbm_status_t nccl_for_two_local_ranks(void)
{
    fflush(stdout);
    pid_t prober = fork();
    if (prober == 0) {
        kvbm_status_t status = kvbm_xfer_transport_probe(KVBM_XFER_NCCL);
        if (status == KVBM_OK) {
            kvbm_backend_config_t bc = KVBM_BACKEND_CONFIG_INIT;
            bc.kind = KVBM_BACKEND_CUDA;
            bc.device = 1;
            kvbm_backend_t *second = NULL;
            status = kvbm_backend_create(&bc, &second) == KVBM_OK ? KVBM_OK : KVBM_ERR_NO_DEVICE;
            kvbm_backend_destroy(second);
        }
        _exit(-status);
    }
    int pstatus = 0;
    if (prober > 0 && waitpid(prober, &pstatus, 0) == prober && WIFEXITED(pstatus))
        return (kvbm_status_t)-WEXITSTATUS(pstatus);
    return KVBM_ERR_UNSUPPORTED;
}

/* Both engines on this host, over loopback. */
static int run_both(options_t *o, const char *which)
{
    kvbm_status_t nccl = KVBM_ERR_UNSUPPORTED;
    if (strcmp(which, "socket") != 0)
        nccl = nccl_for_two_local_ranks();
    o->transport = KVBM_XFER_SOCKET;
    if (strcmp(which, "nccl") == 0 || (strcmp(which, "auto") == 0 && nccl == KVBM_OK))
        o->transport = KVBM_XFER_NCCL;
    printf("transport: %s (NCCL with a GPU per rank: %s)\n",
           o->transport == KVBM_XFER_NCCL ? "nccl, one GPU per rank" : "socket on 127.0.0.1",
           kvbm_status_str(nccl));
    kvbm_xfer_rendezvous_t *rv = NULL;
    kvbm_status_t status = kvbm_xfer_rendezvous_create("127.0.0.1", 0, &rv);
    if (status != KVBM_OK) {
        fprintf(stderr, "rendezvous: %s\n", kvbm_status_str(status));
        return 1;
    }
    o->port = kvbm_xfer_rendezvous_port(rv);
    fflush(stdout);
    pid_t child = fork();
    if (child < 0) {
        perror("fork");
        return 1;
    }
    if (child == 0) {
        kvbm_xfer_rendezvous_destroy(rv);
        o->device = 1;
        int rc = run_decode(o);
        fflush(stdout);
        _exit(rc);
    }
    o->device = 0;
    int rc = run_prefill(o, rv);
    kvbm_xfer_rendezvous_destroy(rv);
    if (rc != 0)
        kill(child, SIGTERM);
    int wstatus = 0;
    waitpid(child, &wstatus, 0);
    int decode_ok = WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0;
    printf("%s\n", rc == 0 && decode_ok ? "disaggregated prefill -> decode: OK" : "FAILED");
    return rc == 0 && decode_ok ? 0 : 1;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0); /* two processes share the terminal */
    const char *which = "auto", *role_name = NULL;
    options_t o = {.transport = KVBM_XFER_SOCKET, .n_tokens = 16 * 40 + 7, .device = 0};
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i], *value = i + 1 < argc ? argv[i + 1] : NULL;
        if (value == NULL)
            return usage(argv[0]);
        if (strcmp(arg, "--transport") == 0)
            which = value;
        else if (strcmp(arg, "--tokens") == 0)
            o.n_tokens = strtoul(value, NULL, 10);
        else if (strcmp(arg, "--role") == 0)
            role_name = value;
        else if (strcmp(arg, "--rendezvous") == 0)
            o.rendezvous_host = value;
        else if (strcmp(arg, "--port") == 0)
            o.port = (uint16_t)strtoul(value, NULL, 10);
        else if (strcmp(arg, "--listen") == 0)
            o.listen_host = value;
        else if (strcmp(arg, "--secret-file") == 0)
            o.secret_file = value;
        else if (strcmp(arg, "--device") == 0)
            o.device = atoi(value);
        else
            return usage(argv[0]);
        i++;
    }
    if (o.n_tokens < TOKENS_PER_BLOCK || o.n_tokens / TOKENS_PER_BLOCK > POOL_BLOCKS) {
        fprintf(stderr, "--tokens must give 1..%d full blocks\n", POOL_BLOCKS);
        return 2;
    }
    if (strcmp(which, "socket") != 0 && strcmp(which, "nccl") != 0 && strcmp(which, "auto") != 0) {
        fprintf(stderr, "unknown transport %s\n", which);
        return 2;
    }
    if (role_name == NULL)
        return run_both(&o, which);

    /* One engine per process, on hosts of their own. */
    if (o.rendezvous_host == NULL || o.port == 0 || o.secret_file == NULL)
        return usage(argv[0]);
    o.transport = strcmp(which, "nccl") == 0 ? KVBM_XFER_NCCL : KVBM_XFER_SOCKET;
    if (strcmp(role_name, "prefill") == 0)
        return run_prefill(&o, NULL);
    if (strcmp(role_name, "decode") == 0)
        return run_decode(&o);
    return usage(argv[0]);
}
