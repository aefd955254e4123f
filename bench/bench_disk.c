/*
 * The disk tier (G3) against the raw device, in the same run.
 *
 *   bench_disk [--dir DIR] [--mib N] [--sizes KiB,...] [--depths D,...]
 *              [--rounds N] [--rebuild BLOCKS] [--skip-io]
 *
 * 1. Bandwidth. For each block size and queue depth: G3 writes (header,
 *    XXH3 of the payload, O_DIRECT write of the slot, publication in the
 *    index) and G3 reads (O_DIRECT read, header and checksum verified) of
 *    N MiB of payload through the store's engine, against raw io_uring
 *    O_DIRECT writes and reads of the same payload bytes at the same depth
 *    on a file of the same size. Both sides use the same buffers (raw: the
 *    page-aligned payload part of each G3 slot buffer), because how
 *    contiguous a buffer's physical pages are changes how many requests the
 *    kernel splits a transfer into, and with it the bandwidth of a virtual
 *    disk (measured: up to a third). G3 and raw alternate, `rounds` times
 *    each, the one going first swapped every round; GB/s count payload bytes
 *    only (a G3 slot also carries one aligned header block). Printed: the
 *    median and the range of each side, and the ratio of the medians.
 * 2. Bookkeeping per block apart from the I/O: the tier's whole path for a
 *    16 KiB block (take a block, write batch, publish, register; match, read
 *    batch, verify, release) on the null engine, which completes requests
 *    without touching the file; the XXH3 of the payload (once written, once
 *    read) is reported apart, since it grows with the block.
 * 3. Index rebuild: BLOCKS header entries written into a sparse file, evicted
 *    from the page cache (fdatasync, POSIX_FADV_DONTNEED), then the tier
 *    opened warm: table read, entries verified, sorted, and every block
 *    registered in the tier's manager.
 *
 * Prints numbers only; nothing passes or fails on time.
 */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_util.h"
#include "disk/fingerprint.h"
#include "disk/store.h"
#include "disk/tier.h"

#define MAX_LIST 16

typedef struct options {
    const char *dir;
    uint64_t mib;
    uint32_t sizes_kib[MAX_LIST];
    size_t n_sizes;
    uint32_t depths[MAX_LIST];
    size_t n_depths;
    int rounds;
    uint64_t rebuild_blocks;
    int skip_io;
} options_t;

static void die(const char *what, kvbm_status_t status)
{
    fprintf(stderr, "bench_disk: %s: %s\n", what, kvbm_status_str(status));
    exit(1);
}

static size_t parse_list(const char *text, uint32_t *out)
{
    size_t n = 0;
    char *copy = strdup(text), *save = NULL;
    for (char *item = strtok_r(copy, ",", &save); item != NULL && n < MAX_LIST;
         item = strtok_r(NULL, ",", &save))
        out[n++] = (uint32_t)strtoul(item, NULL, 10);
    free(copy);
    return n;
}

/* ------------------------------------------------------------------ G3 side */

static kvbm__disk_store_t *open_store(const char *path, uint64_t payload, uint64_t slots,
                                      uint32_t depth, kvbm_disk_io_kind_t io)
{
    kvbm__disk_store_config_t config = {.path = path,
                                        .payload_bytes = payload,
                                        .slots = slots,
                                        .fingerprint = 1,
                                        .io = io,
                                        .direct = true,
                                        .queue_depth = depth,
                                        .io_threads = depth < 16 ? depth : 16,
                                        .durability = KVBM_DISK_DURABLE_PROCESS,
                                        .preallocate = true};
    kvbm__disk_store_t *store = NULL;
    kvbm_status_t status = kvbm__disk_store_open(&config, &store);
    if (status != KVBM_OK)
        die("open store", status);
    return store;
}

/* Batches of `depth` blocks kept submitted by a G3 pass: the engine runs at
 * most `depth` requests at a time, the others wait, checksummed, in its
 * queue, so that the disk never waits for the checksums of the next ones
 * (which a loaded CPU can make slower than one transfer at depth 1). */
#define G3_PASS_BATCHES 4

/* Moves every slot once, G3_PASS_BATCHES batches of `depth` in turn.
 * Returns seconds. */
static double g3_pass(kvbm__disk_store_t *store, uint8_t *buffers, uint32_t depth, int write)
{
    const kvbm__disk_geometry_t *g = kvbm__disk_store_geometry(store);
    kvbm__disk_batch_t *batch[G3_PASS_BATCHES];
    for (int b = 0; b < G3_PASS_BATCHES; b++)
        if (kvbm__disk_batch_create(store, depth, &batch[b]) != KVBM_OK)
            die("batch", KVBM_ERR_NO_MEMORY);
    double start = bench_now_ns();
    uint64_t slot = 0;
    for (int b = 0; slot < g->slots; b = (b + 1) % G3_PASS_BATCHES) {
        if (kvbm__disk_batch_count(batch[b]) > 0) {
            kvbm__disk_batch_wait(batch[b]);
            for (size_t i = 0; i < kvbm__disk_batch_count(batch[b]); i++)
                if (kvbm__disk_batch_outcome(batch[b], i) != KVBM__DISK_DONE)
                    die("a block failed", KVBM_ERR_IO);
            kvbm__disk_batch_clear(batch[b]);
        }
        for (uint32_t i = 0; i < depth && slot < g->slots; i++, slot++)
            kvbm__disk_batch_add(batch[b], (uint32_t)slot, slot + 1,
                                 buffers + ((size_t)b * depth + i) * g->slot_bytes);
        kvbm_status_t status = write ? kvbm__disk_store_write(store, batch[b])
                                     : kvbm__disk_store_read(store, batch[b]);
        if (status != KVBM_OK)
            die("submit", status);
    }
    for (int b = 0; b < G3_PASS_BATCHES; b++)
        kvbm__disk_batch_destroy(batch[b]);
    return (bench_now_ns() - start) * 1e-9;
}

/* ------------------------------------------------------------------ raw side */

/* Raw O_DIRECT transfers of `count` blocks of `bytes` at `depth` in flight,
 * refilled as each completes, cycling through `n_buffers` buffers
 * `buffer_stride` apart. Returns seconds. */
static double raw_pass(int fd, uint8_t *buffers, size_t buffer_stride, uint32_t n_buffers,
                       size_t bytes, uint64_t count, uint32_t depth, int write)
{
    struct io_uring ring;
    if (io_uring_queue_init(depth, &ring, 0) != 0)
        die("raw io_uring", KVBM_ERR_UNSUPPORTED);
    double start = bench_now_ns();
    uint64_t issued = 0, completed = 0;
    while (completed < count) {
        while (issued < count && issued - completed < depth) {
            struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
            uint8_t *buf = buffers + (issued % n_buffers) * buffer_stride;
            if (write)
                io_uring_prep_write(sqe, fd, buf, (unsigned)bytes, issued * bytes);
            else
                io_uring_prep_read(sqe, fd, buf, (unsigned)bytes, issued * bytes);
            issued++;
        }
        io_uring_submit(&ring);
        struct io_uring_cqe *cqe;
        if (io_uring_wait_cqe(&ring, &cqe) != 0 || cqe->res != (int)bytes)
            die("raw transfer", KVBM_ERR_IO);
        io_uring_cqe_seen(&ring, cqe);
        completed++;
        unsigned more = io_uring_cq_ready(&ring);
        for (unsigned i = 0; i < more; i++) {
            if (io_uring_peek_cqe(&ring, &cqe) != 0 || cqe->res != (int)bytes)
                die("raw transfer", KVBM_ERR_IO);
            io_uring_cqe_seen(&ring, cqe);
            completed++;
        }
    }
    io_uring_queue_exit(&ring);
    return (bench_now_ns() - start) * 1e-9;
}

static int open_raw(const char *path, uint64_t bytes)
{
    int fd = open(path, O_RDWR | O_CREAT | O_DIRECT, 0600);
    if (fd < 0 || fallocate(fd, 0, 0, (off_t)bytes) != 0)
        die("raw file", KVBM_ERR_IO);
    return fd;
}

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median, minimum and maximum of n values (sorted in place). */
typedef struct spread {
    double median, min, max;
} spread_t;

static spread_t spread_of(double *values, int n)
{
    qsort(values, (size_t)n, sizeof(double), compare_doubles);
    double median = n % 2 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
    return (spread_t){median, values[0], values[n - 1]};
}

static void print_side(const char *what, double *g3, double *raw, int n)
{
    spread_t a = spread_of(g3, n), b = spread_of(raw, n);
    printf("  %s g3 %5.2f [%4.2f-%4.2f] raw %5.2f [%4.2f-%4.2f] %5.1f%%", what, a.median, a.min,
           a.max, b.median, b.min, b.max, 100.0 * a.median / b.median);
}

static void bandwidth_point(const options_t *o, uint32_t kib, uint32_t depth)
{
    char g3_path[512], raw_path[512];
    snprintf(g3_path, sizeof(g3_path), "%s/bench-g3.bin", o->dir);
    snprintf(raw_path, sizeof(raw_path), "%s/bench-raw.bin", o->dir);
    uint64_t payload = (uint64_t)kib * 1024;
    uint64_t slots = o->mib * 1024 * 1024 / payload;
    kvbm__disk_store_t *store = open_store(g3_path, payload, slots, depth, KVBM_DISK_IO_URING);
    const kvbm__disk_geometry_t *g = kvbm__disk_store_geometry(store);
    size_t align = kvbm__disk_store_buffer_align(store);
    uint8_t *buffers = NULL;
    size_t n_buffers = (size_t)G3_PASS_BATCHES * depth;
    if (posix_memalign((void **)&buffers, align, n_buffers * g->slot_bytes) != 0)
        die("buffers", KVBM_ERR_NO_MEMORY);
    memset(buffers, 0x5a, n_buffers * g->slot_bytes);
    int raw_fd = open_raw(raw_path, slots * payload);
    int n = o->rounds;
    double *bw = calloc(4 * (size_t)n, sizeof(double)); /* g3 w, raw w, g3 r, raw r */
    if (bw == NULL)
        die("results", KVBM_ERR_NO_MEMORY);
    double bytes = (double)slots * (double)payload;
    /* Each round swaps which side goes first, so that neither always reads
     * what a write just left in a cache below the guest. The raw side moves
     * the payload bytes only, from the part of each slot buffer past its
     * first aligned block (the header's), the buffers in the same order. */
    for (int r = 0; r < n; r++) {
        for (int write = 1; write >= 0; write--) {
            double *out = bw + (write ? 0 : 2) * (size_t)n;
            for (int k = 0; k < 2; k++) {
                if ((k == 0) == (r % 2 == 0))
                    out[r] = bytes / g3_pass(store, buffers, depth, write) * 1e-9;
                else
                    out[n + r] = bytes /
                                 raw_pass(raw_fd, buffers + align, g->slot_bytes,
                                          (uint32_t)n_buffers, payload, slots, depth, write) *
                                 1e-9;
            }
        }
    }
    printf("%8u %6u", kib, depth);
    print_side("write", bw, bw + n, n);
    print_side("  read", bw + 2 * (size_t)n, bw + 3 * (size_t)n, n);
    printf("\n");
    fflush(stdout);
    free(bw);
    close(raw_fd);
    kvbm__disk_store_close(store);
    unlink(raw_path);
    unlink(g3_path);
    free(buffers);
}

/* ------------------------------------------------------------------ bookkeeping */

static kvbm__disk_tier_t *open_tier(const char *path, uint64_t payload, uint32_t blocks,
                                    kvbm_disk_io_kind_t io)
{
    kvbm_layout_config_t layout = KVBM_LAYOUT_CONFIG_INIT;
    layout.num_blocks = 1;
    layout.num_layers = 1;
    layout.tokens_per_block = 1;
    layout.inner_dim = (uint32_t)(payload / 4);
    kvbm_disk_config_t disk = KVBM_DISK_CONFIG_INIT;
    disk.path = path;
    disk.capacity_blocks = blocks;
    disk.min_free_bytes = 0;
    disk.preallocate = false;
    kvbm__disk_tier_config_t config = {.disk = &disk,
                                       .layout = &layout,
                                       .payload_bytes = payload,
                                       .policy_config = KVBM_POLICY_CONFIG_INIT,
                                       .io = io};
    kvbm__disk_tier_t *tier = NULL;
    kvbm_status_t status = kvbm__disk_tier_open(&config, &tier);
    if (status != KVBM_OK)
        die("open tier", status);
    return tier;
}

static void bookkeeping(const options_t *o)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/bench-null.bin", o->dir);
    const uint64_t payload = 16384;
    const uint32_t blocks = 4096, batch_size = 64, rounds = 64;
    kvbm__disk_tier_t *tier = open_tier(path, payload, blocks, KVBM__DISK_IO_NULL);
    kvbm__disk_store_t *store = kvbm__disk_tier_store(tier);
    kvbm_manager_t *manager = kvbm__disk_tier_manager(tier);
    size_t slot_bytes = kvbm__disk_store_geometry(store)->slot_bytes;
    uint8_t *bufs = NULL;
    if (posix_memalign((void **)&bufs, 4096, batch_size * slot_bytes) != 0)
        die("buffers", KVBM_ERR_NO_MEMORY);
    memset(bufs, 0x33, batch_size * slot_bytes);
    kvbm__disk_batch_t *batch = NULL;
    kvbm__disk_batch_create(store, batch_size, &batch);
    uint32_t ids[64];
    uint64_t hashes[64], parents[64] = {0}, next_hash = 1;
    uint8_t has_parent[64] = {0};
    double write_ns = 0, read_ns = 0;
    for (uint32_t r = 0; r < rounds * (blocks / batch_size); r++) {
        double t0 = bench_now_ns();
        for (uint32_t i = 0; i < batch_size; i++) {
            bool evicted;
            kvbm__disk_tier_take(tier, &ids[i], &evicted);
            hashes[i] = next_hash++;
            kvbm__disk_batch_add(batch, kvbm__disk_tier_slot(tier, ids[i]), hashes[i],
                                 bufs + i * slot_bytes);
        }
        kvbm__disk_store_write(store, batch);
        kvbm__disk_batch_wait(batch);
        kvbm__disk_tier_finish_writes(tier, ids, hashes, parents, has_parent, batch);
        kvbm__disk_batch_clear(batch);
        double t1 = bench_now_ns();
        size_t matched = 0;
        kvbm_manager_match(manager, hashes, batch_size, ids, &matched);
        for (uint32_t i = 0; i < matched; i++)
            kvbm__disk_batch_add(batch, kvbm__disk_tier_slot(tier, ids[i]), hashes[i],
                                 bufs + i * slot_bytes);
        kvbm__disk_store_read(store, batch); /* the null engine leaves the written slot bytes */
        kvbm__disk_batch_wait(batch);
        kvbm_manager_release(manager, ids, matched);
        kvbm__disk_batch_clear(batch);
        write_ns += t1 - t0;
        read_ns += bench_now_ns() - t1;
    }
    double per = (double)rounds * blocks;
    double t0 = bench_now_ns();
    uint64_t sink = 0;
    for (uint32_t i = 0; i < 4096; i++)
        sink += kvbm__disk_payload_checksum(bufs + KVBM__DISK_HEADER_BYTES, payload);
    double xxh = (bench_now_ns() - t0) / 4096;
    kvbm_disk_metrics_t m;
    kvbm__disk_store_metrics(store, &m);
    printf("bookkeeping per 16 KiB block (null engine, %.0f blocks): write path %.0f ns, read "
           "path %.0f ns; of which XXH3 of the payload %.0f ns each way; without it %.0f + %.0f "
           "ns (loads verified %llu, corrupt %llu, sink %llu)\n",
           per, write_ns / per, read_ns / per, xxh, write_ns / per - xxh, read_ns / per - xxh,
           (unsigned long long)m.loads, (unsigned long long)m.loads_corrupt,
           (unsigned long long)(sink & 1));
    kvbm__disk_batch_destroy(batch);
    kvbm__disk_tier_close(tier);
    unlink(path);
    free(bufs);
}

/* ------------------------------------------------------------------ rebuild */

static void rebuild(const options_t *o)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/bench-rebuild.bin", o->dir);
    uint64_t blocks = o->rebuild_blocks, payload = 4096;
    kvbm__disk_tier_t *tier = open_tier(path, payload, (uint32_t)blocks, KVBM_DISK_IO_AUTO);
    kvbm__disk_geometry_t g = *kvbm__disk_store_geometry(kvbm__disk_tier_store(tier));
    kvbm__disk_tier_close(tier);
    uint8_t *table = calloc(g.table_bytes, 1);
    kvbm_layout_config_t layout = KVBM_LAYOUT_CONFIG_INIT;
    layout.num_blocks = 1;
    layout.num_layers = 1;
    layout.tokens_per_block = 1;
    layout.inner_dim = (uint32_t)(payload / 4);
    uint64_t fp = kvbm__disk_fingerprint(&layout, NULL, 0, 1);
    for (uint64_t slot = 0; slot < blocks; slot++) {
        kvbm__disk_header_t h = {.slot = (uint32_t)slot,
                                 .payload_bytes = (uint32_t)payload,
                                 .seq_hash = slot * 0x9e3779b97f4a7c15ull + 1,
                                 .fingerprint = fp,
                                 .generation = slot + 1};
        kvbm__disk_header_encode(&h, table + slot * KVBM__DISK_HEADER_BYTES);
    }
    int fd = open(path, O_RDWR);
    if (fd < 0 || pwrite(fd, table, g.table_bytes, (off_t)g.table_offset) != (ssize_t)g.table_bytes)
        die("table", KVBM_ERR_IO);
    fdatasync(fd);
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    close(fd);
    free(table);
    double t0 = bench_now_ns();
    tier = open_tier(path, payload, (uint32_t)blocks, KVBM_DISK_IO_AUTO);
    double seconds = (bench_now_ns() - t0) * 1e-9;
    kvbm_pool_counts_t counts;
    kvbm_manager_counts(kvbm__disk_tier_manager(tier), &counts);
    printf("rebuild: %llu blocks indexed (%.1f MiB of table, page cache dropped) in %.3f s; "
           "%zu registered in the manager\n",
           (unsigned long long)blocks, (double)g.table_bytes / (1 << 20), seconds, counts.inactive);
    kvbm__disk_tier_close(tier);
    unlink(path);
}

static void parse_args(int argc, char **argv, options_t *o)
{
    for (int i = 1; i < argc; i++) {
        const char *next = i + 1 < argc ? argv[i + 1] : "";
        if (strcmp(argv[i], "--dir") == 0 && ++i)
            o->dir = next;
        else if (strcmp(argv[i], "--mib") == 0 && ++i)
            o->mib = strtoull(next, NULL, 10);
        else if (strcmp(argv[i], "--sizes") == 0 && ++i)
            o->n_sizes = parse_list(next, o->sizes_kib);
        else if (strcmp(argv[i], "--depths") == 0 && ++i)
            o->n_depths = parse_list(next, o->depths);
        else if (strcmp(argv[i], "--rounds") == 0 && ++i)
            o->rounds = atoi(next);
        else if (strcmp(argv[i], "--rebuild") == 0 && ++i)
            o->rebuild_blocks = strtoull(next, NULL, 10);
        else if (strcmp(argv[i], "--skip-io") == 0)
            o->skip_io = 1;
        else {
            fprintf(stderr, "usage: bench_disk [--dir DIR] [--mib N] [--sizes KiB,...] "
                            "[--depths D,...] [--rounds N] [--rebuild BLOCKS] [--skip-io]\n");
            exit(2);
        }
    }
}

int main(int argc, char **argv)
{
    options_t o = {.dir = "/var/tmp", .mib = 256, .rounds = 5, .rebuild_blocks = 1000000};
    o.n_sizes = parse_list("16,64,256,1024,2048", o.sizes_kib);
    o.n_depths = parse_list("1,8,32", o.depths);
    parse_args(argc, argv, &o);
    if (!o.skip_io) {
        printf("bandwidth, GB/s of payload: median [min-max] of %d rounds, G3 and raw "
               "alternating, %llu MiB per pass, in %s; %% = G3 median / raw median\n%8s %6s\n",
               o.rounds, (unsigned long long)o.mib, o.dir, "KiB", "depth");
        for (size_t s = 0; s < o.n_sizes; s++)
            for (size_t d = 0; d < o.n_depths; d++)
                bandwidth_point(&o, o.sizes_kib[s], o.depths[d]);
    }
    bookkeeping(&o);
    if (o.rebuild_blocks > 0)
        rebuild(&o);
    return 0;
}
