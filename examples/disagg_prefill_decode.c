/*
 * Disaggregated prefill -> decode over kvbm transfers.
 *
 * Two processes (this program forks): rank 0 plays the prefill engine, rank 1
 * the decode engine. Prefill hashes the prompt into blocks (kvbm_hash_tokens),
 * "computes" each block's KV bytes (here: bytes derived from the block's
 * sequence hash), registers them in its block manager and pushes them to the
 * decode rank. Decode receives them into blocks of its own manager; when the
 * same request arrives there, it hashes the prompt, matches the prefix and
 * checks every byte.
 *
 *   example_disagg_prefill_decode [--transport socket|nccl|auto] [--tokens N]
 *
 * auto (the default) uses NCCL when it is built and a GPU is present, else
 * the CPU (socket) transport. Exit status 0 when decode saw every byte.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kvbm/kvbm.h"
#include "kvbm/xfer.h"

/* A toy model: 4 layers x (K, V) x 16 tokens x 128 dims x 2 bytes. */
enum { LAYERS = 4, OUTER = 2, TOKENS_PER_BLOCK = 16, INNER = 128, ELEM = 2, POOL_BLOCKS = 256 };
#define CHUNK_BYTES ((size_t)TOKENS_PER_BLOCK * INNER * ELEM)
#define REGION_BYTES (OUTER * CHUNK_BYTES)          /* one layer of one block: K then V */
#define GEOMETRY_KEY 0x0004000200100080ull          /* layers, outer, tokens, inner */

#define CHECK(call)                                                                         \
    do {                                                                                    \
        kvbm_status_t check_status_ = (call);                                               \
        if (check_status_ != KVBM_OK) {                                                     \
            fprintf(stderr, "%s: %s failed: %s\n", role, #call,                             \
                    kvbm_status_str(check_status_));                                        \
            return 1;                                                                       \
        }                                                                                   \
    } while (0)

static const char *role = "main";

typedef struct engine {
    kvbm_manager_t *manager;
    unsigned char *kv;          /* layer-separate KV pool: [layer][block][K|V] */
    void *layer_base[LAYERS];
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

static unsigned char *block_layer(engine_t *e, uint32_t block, uint32_t layer)
{
    return (unsigned char *)e->layer_base[layer] + (size_t)block * REGION_BYTES;
}

/* Stand-in for the prefill forward pass writing a block's KV. */
static void compute_kv(engine_t *e, uint32_t block, uint64_t hash)
{
    for (uint32_t l = 0; l < LAYERS; l++)
        for (size_t j = 0; j < REGION_BYTES; j++)
            block_layer(e, block, l)[j] = kv_byte(hash, l * REGION_BYTES + j);
}

static int check_kv(engine_t *e, uint32_t block, uint64_t hash)
{
    for (uint32_t l = 0; l < LAYERS; l++)
        for (size_t j = 0; j < REGION_BYTES; j++)
            if (block_layer(e, block, l)[j] != kv_byte(hash, l * REGION_BYTES + j))
                return 0;
    return 1;
}

static int engine_open(engine_t *e, kvbm_xfer_transport_t transport, int rank, uint16_t port,
                       kvbm_xfer_rendezvous_t *rv)
{
    memset(e, 0, sizeof(*e));
    kvbm_manager_config_t mc = KVBM_MANAGER_CONFIG_INIT;
    mc.num_blocks = POOL_BLOCKS;
    CHECK(kvbm_manager_create(&mc, &e->manager));
    e->kv = calloc((size_t)LAYERS * POOL_BLOCKS, REGION_BYTES);
    if (e->kv == NULL)
        return 1;
    for (uint32_t l = 0; l < LAYERS; l++)
        e->layer_base[l] = e->kv + (size_t)l * POOL_BLOCKS * REGION_BYTES;

    kvbm_xfer_config_t config = KVBM_XFER_CONFIG_INIT;
    config.transport = transport;
    config.rank = rank;
    config.size = 2;
    config.rendezvous = rv;
    config.rendezvous_port = port;
    config.timeout_ms = 10000;
    config.manager = e->manager;
    config.memory.kind = KVBM_XFER_MEM_HOST;
    config.memory.num_blocks = POOL_BLOCKS;
    config.memory.region_count = LAYERS;
    config.memory.region_bytes = REGION_BYTES;
    config.memory.block_stride = REGION_BYTES;
    config.memory.region_base = e->layer_base;
    config.memory.layout_key = GEOMETRY_KEY;
    CHECK(kvbm_xfer_create(&config, &e->xfer));
    return 0;
}

static void engine_close(engine_t *e)
{
    kvbm_xfer_destroy(e->xfer);
    kvbm_manager_destroy(e->manager);
    free(e->kv);
}

/* The request both engines see: a prompt of n_tokens tokens. */
static uint32_t *make_prompt(size_t n_tokens)
{
    uint32_t *tokens = malloc(n_tokens * sizeof(*tokens));
    for (size_t i = 0; i < n_tokens; i++)
        tokens[i] = (uint32_t)((i * 2654435761u) % 32000u);
    return tokens;
}

static int run_prefill(kvbm_xfer_transport_t transport, uint16_t port, kvbm_xfer_rendezvous_t *rv,
                       size_t n_tokens)
{
    role = "prefill";
    engine_t e;
    if (engine_open(&e, transport, 0, port, rv) != 0)
        return 1;
    uint32_t *tokens = make_prompt(n_tokens);
    size_t n = 0;
    uint64_t hashes[POOL_BLOCKS];
    uint32_t ids[POOL_BLOCKS], remote[POOL_BLOCKS];
    CHECK(kvbm_hash_tokens(tokens, n_tokens, TOKENS_PER_BLOCK, 0, hashes, &n));
    printf("prefill: prompt of %zu tokens -> %zu full blocks of %d tokens (%zu bytes each)\n",
           n_tokens, n, TOKENS_PER_BLOCK, (size_t)LAYERS * REGION_BYTES);
    CHECK(kvbm_manager_allocate(e.manager, n, ids, NULL, NULL));
    for (size_t i = 0; i < n; i++)
        compute_kv(&e, ids[i], hashes[i]);
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
           got, (double)got * LAYERS * REGION_BYTES / 1024.0, dt * 1e3, remote[0],
           remote[got - 1]);
    CHECK(kvbm_xfer_barrier(e.xfer)); /* decode may look now */
    CHECK(kvbm_xfer_barrier(e.xfer)); /* decode is done */
    CHECK(kvbm_manager_release(e.manager, ids, n));
    free(tokens);
    engine_close(&e);
    return 0;
}

static int run_decode(kvbm_xfer_transport_t transport, uint16_t port, size_t n_tokens)
{
    role = "decode";
    engine_t e;
    if (engine_open(&e, transport, 1, port, NULL) != 0)
        return 1;
    CHECK(kvbm_xfer_barrier(e.xfer));
    /* The request reaches decode: same prompt, plus one generated token. */
    uint32_t *tokens = make_prompt(n_tokens);
    size_t n = 0, matched = 0;
    uint64_t hashes[POOL_BLOCKS];
    uint32_t ids[POOL_BLOCKS];
    CHECK(kvbm_hash_tokens(tokens, n_tokens, TOKENS_PER_BLOCK, 0, hashes, &n));
    CHECK(kvbm_manager_match(e.manager, hashes, n, ids, &matched));
    int ok = matched == n;
    for (size_t i = 0; i < matched; i++)
        ok = ok && check_kv(&e, ids[i], hashes[i]);
    printf("decode: prefix match %zu/%zu blocks, KV bytes %s; %zu prompt tokens left to "
           "prefill locally\n",
           matched, n, ok ? "verified" : "WRONG", n_tokens - matched * TOKENS_PER_BLOCK);
    CHECK(kvbm_manager_release(e.manager, ids, matched));
    CHECK(kvbm_xfer_barrier(e.xfer));
    free(tokens);
    engine_close(&e);
    return ok ? 0 : 1;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0); /* two processes share the terminal */
    const char *which = "auto";
    size_t n_tokens = 16 * 40 + 7; /* 40 full blocks and a partial one */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--transport") == 0 && i + 1 < argc)
            which = argv[++i];
        else if (strcmp(argv[i], "--tokens") == 0 && i + 1 < argc)
            n_tokens = strtoul(argv[++i], NULL, 10);
        else {
            fprintf(stderr, "usage: %s [--transport socket|nccl|auto] [--tokens N]\n", argv[0]);
            return 2;
        }
    }
    if (n_tokens < TOKENS_PER_BLOCK || n_tokens / TOKENS_PER_BLOCK > POOL_BLOCKS) {
        fprintf(stderr, "--tokens must give 1..%d full blocks\n", POOL_BLOCKS);
        return 2;
    }
    kvbm_xfer_transport_t transport = KVBM_XFER_SOCKET;
    kvbm_status_t nccl = kvbm_xfer_transport_probe(KVBM_XFER_NCCL);
    if (strcmp(which, "nccl") == 0 || (strcmp(which, "auto") == 0 && nccl == KVBM_OK)) {
        /* This example keeps its KV pool in host memory; the NCCL transport
         * moves device memory, which needs the backend's device pools. */
        fprintf(stderr, "NCCL transport: %s; this example's pool is host memory, so it uses "
                        "the socket transport\n",
                nccl == KVBM_OK ? "available" : kvbm_status_str(nccl));
        if (strcmp(which, "nccl") == 0)
            return 2;
    }
    printf("transport: socket (NCCL: %s)\n", kvbm_status_str(nccl));

    kvbm_xfer_rendezvous_t *rv = NULL;
    kvbm_status_t status = kvbm_xfer_rendezvous_create("127.0.0.1", 0, &rv);
    if (status != KVBM_OK) {
        fprintf(stderr, "rendezvous: %s\n", kvbm_status_str(status));
        return 1;
    }
    uint16_t port = kvbm_xfer_rendezvous_port(rv);
    fflush(stdout);
    pid_t child = fork();
    if (child < 0) {
        perror("fork");
        return 1;
    }
    if (child == 0) {
        kvbm_xfer_rendezvous_destroy(rv);
        int rc = run_decode(transport, port, n_tokens);
        fflush(stdout);
        _exit(rc);
    }
    int rc = run_prefill(transport, port, rv, n_tokens);
    kvbm_xfer_rendezvous_destroy(rv);
    if (rc != 0)
        kill(child, SIGTERM);
    int wstatus = 0;
    waitpid(child, &wstatus, 0);
    int decode_ok = WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0;
    printf("%s\n", rc == 0 && decode_ok ? "disaggregated prefill -> decode: OK" : "FAILED");
    return rc == 0 && decode_ok ? 0 : 1;
}
