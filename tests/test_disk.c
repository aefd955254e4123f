/*
 * The disk store (G3): its format, the namespace fingerprint, writes and
 * reads on every engine, restarts warm and cold, every fault of the I/O
 * layer and corruption of the file itself with zero wrong bytes served, a
 * writer killed mid-write whose torn block is never served, the free-space
 * floor, and the tier's manager over the slots.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/wait.h>
#include <time.h>

#include <cmocka.h>

#include "disk_test_util.h"
#include "disk/fingerprint.h"
#include "kvbm_test.h"
#include "disk/tier.h"

#define PAYLOAD 8192u
#define FP      0x1234abcdull

/* ------------------------------------------------------------------ helpers */

static kvbm__disk_store_t *open_store(const kvbm__disk_store_config_t *config)
{
    kvbm__disk_store_t *store = NULL;
    assert_kvbm_ok(kvbm__disk_store_open(config, &store));
    return store;
}

/* Writes blocks with hashes first..first+n-1 into slots slot0..slot0+n-1;
 * returns how many were published. */
static size_t write_blocks(kvbm__disk_store_t *store, uint32_t slot0, uint64_t first, size_t n)
{
    size_t slot_bytes = kvbm__disk_store_geometry(store)->slot_bytes;
    uint8_t *bufs = disk_test_buffers(n, slot_bytes);
    assert_non_null(bufs);
    kvbm__disk_batch_t *batch = NULL;
    assert_kvbm_ok(kvbm__disk_batch_create(store, n, &batch));
    for (size_t i = 0; i < n; i++) {
        uint8_t *buf = bufs + i * slot_bytes;
        disk_test_fill(buf + KVBM__DISK_HEADER_BYTES, PAYLOAD, first + i);
        assert_kvbm_ok(kvbm__disk_batch_add(batch, slot0 + (uint32_t)i, first + i, buf));
    }
    assert_kvbm_ok(kvbm__disk_store_write(store, batch));
    kvbm__disk_batch_wait(batch);
    size_t done = 0;
    for (size_t i = 0; i < n; i++)
        done += kvbm__disk_batch_outcome(batch, i) == KVBM__DISK_DONE;
    kvbm__disk_batch_destroy(batch);
    free(bufs);
    return done;
}

typedef struct read_tally {
    size_t done, failed, corrupt, wrong; /* wrong: DONE with bytes not the ones written */
} read_tally_t;

/* Reads slots slot0.. expecting hashes first..; checks every DONE payload. */
static read_tally_t read_blocks(kvbm__disk_store_t *store, uint32_t slot0, uint64_t first, size_t n)
{
    size_t slot_bytes = kvbm__disk_store_geometry(store)->slot_bytes;
    uint8_t *bufs = disk_test_buffers(n, slot_bytes);
    assert_non_null(bufs);
    kvbm__disk_batch_t *batch = NULL;
    assert_kvbm_ok(kvbm__disk_batch_create(store, n, &batch));
    for (size_t i = 0; i < n; i++)
        assert_kvbm_ok(
            kvbm__disk_batch_add(batch, slot0 + (uint32_t)i, first + i, bufs + i * slot_bytes));
    assert_kvbm_ok(kvbm__disk_store_read(store, batch));
    kvbm__disk_batch_wait(batch);
    read_tally_t tally = {0};
    for (size_t i = 0; i < n; i++) {
        kvbm__disk_outcome_t outcome = kvbm__disk_batch_outcome(batch, i);
        tally.done += outcome == KVBM__DISK_DONE;
        tally.failed += outcome == KVBM__DISK_FAILED;
        tally.corrupt += outcome == KVBM__DISK_CORRUPT;
        if (outcome == KVBM__DISK_DONE &&
            !disk_test_payload_ok(bufs + i * slot_bytes + KVBM__DISK_HEADER_BYTES, PAYLOAD,
                                  first + i))
            tally.wrong++;
    }
    kvbm__disk_batch_destroy(batch);
    free(bufs);
    return tally;
}

/* ------------------------------------------------------------------ format */

static void header_round_trips_and_any_flipped_bit_is_refused(void **state)
{
    kvbm__disk_header_t h = {.slot = 7,
                             .payload_bytes = 4096,
                             .seq_hash = 0xfeedull,
                             .fingerprint = FP,
                             .generation = 42,
                             .payload_checksum = 99};
    uint8_t raw[KVBM__DISK_HEADER_BYTES];
    kvbm__disk_header_encode(&h, raw);
    kvbm__disk_header_t back;
    assert_true(kvbm__disk_header_decode(raw, &back));
    assert_int_equal(back.slot, 7);
    assert_int_equal(back.seq_hash, 0xfeedull);
    assert_int_equal(back.generation, 42);
    assert_int_equal(back.payload_checksum, 99);
    for (size_t bit = 0; bit < KVBM__DISK_HEADER_BYTES * 8; bit++) {
        raw[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        assert_false(kvbm__disk_header_decode(raw, &back));
        raw[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    uint8_t zero[KVBM__DISK_HEADER_BYTES] = {0};
    assert_false(kvbm__disk_header_decode(zero, &back));
}

static void superblock_round_trips_and_refuses_other_versions(void **state)
{
    kvbm__disk_superblock_t sb = {.version = KVBM__DISK_FORMAT_VERSION,
                                  .fingerprint = FP,
                                  .slots = 10,
                                  .payload_bytes = PAYLOAD,
                                  .align = 4096};
    uint8_t raw[KVBM__DISK_SUPERBLOCK_BYTES];
    kvbm__disk_superblock_encode(&sb, raw);
    kvbm__disk_superblock_t back;
    assert_kvbm_ok(kvbm__disk_superblock_decode(raw, &back));
    assert_int_equal(back.slots, 10);
    assert_int_equal(back.fingerprint, FP);
    raw[20] ^= 1;
    assert_kvbm_status(kvbm__disk_superblock_decode(raw, &back), KVBM_ERR_PARSE);
    sb.version = KVBM__DISK_FORMAT_VERSION + 1;
    kvbm__disk_superblock_encode(&sb, raw);
    assert_kvbm_status(kvbm__disk_superblock_decode(raw, &back), KVBM_ERR_VERSION);
}

static void geometry_aligns_slots_and_refuses_overflow(void **state)
{
    kvbm__disk_geometry_t g;
    assert_kvbm_ok(kvbm__disk_geometry_init(16384, 4096, 100, &g));
    assert_int_equal(g.slot_bytes, 16384 + 4096); /* header + payload, rounded up */
    assert_int_equal(g.table_offset, 4096);
    assert_int_equal(g.table_bytes, 8192); /* 100 x 64 bytes, rounded up */
    assert_int_equal(g.data_offset, 4096 + 8192);
    assert_int_equal(g.file_bytes, g.data_offset + 100 * g.slot_bytes);
    assert_int_equal(kvbm__disk_geometry_slots_for_bytes(16384, 4096, g.file_bytes), 100);
    assert_int_equal(kvbm__disk_geometry_slots_for_bytes(16384, 4096, g.file_bytes - 1), 99);
    assert_kvbm_status(kvbm__disk_geometry_init(16384, 3000, 100, &g), KVBM_ERR_INVALID_ARG);
    assert_kvbm_status(kvbm__disk_geometry_init(UINT32_MAX, 4096, UINT32_MAX, &g),
                       KVBM_ERR_OVERFLOW);
}

static void fingerprint_changes_with_everything_that_changes_bytes(void **state)
{
    kvbm_layout_config_t base = KVBM_LAYOUT_CONFIG_INIT;
    base.num_blocks = 100;
    base.num_layers = 4;
    base.tokens_per_block = 16;
    base.inner_dim = 128;
    uint64_t fp = kvbm__disk_fingerprint(&base, "llama", 0, 2);
    assert_int_equal(fp, kvbm__disk_fingerprint(&base, "llama", 0, 2));
    kvbm_layout_config_t other = base;
    other.num_blocks = 5; /* where bytes live, not what they mean */
    other.alignment = 4096;
    assert_int_equal(fp, kvbm__disk_fingerprint(&other, "llama", 0, 2));
    uint32_t *fields[] = {&other.num_layers, &other.outer_dim, &other.tokens_per_block,
                          &other.inner_dim, &other.elem_size};
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        other = base;
        *(uint32_t *)((char *)&other + ((char *)fields[i] - (char *)&other)) += 1;
        assert_int_not_equal(fp, kvbm__disk_fingerprint(&other, "llama", 0, 2));
    }
    other = base;
    other.kind = KVBM_LAYOUT_LAYER_SEPARATE;
    assert_int_not_equal(fp, kvbm__disk_fingerprint(&other, "llama", 0, 2));
    assert_int_not_equal(fp, kvbm__disk_fingerprint(&base, "llama2", 0, 2));
    assert_int_not_equal(fp, kvbm__disk_fingerprint(&base, "llama", 1, 2));
    assert_int_not_equal(fp, kvbm__disk_fingerprint(&base, "llama", 0, 4));
    assert_int_equal(kvbm__disk_fingerprint(&base, NULL, 0, 0),
                     kvbm__disk_fingerprint(&base, "", 0, 1));
}

/* ------------------------------------------------------------------ engines */

static void round_trip_on(kvbm_disk_io_kind_t io, bool direct, const char *expect_engine)
{
    const char *path = disk_test_path();
    kvbm__disk_store_config_t config = disk_test_config(path, PAYLOAD, 64, FP);
    config.io = io;
    config.direct = direct;
    kvbm__disk_store_t *store = NULL;
    kvbm_status_t status = kvbm__disk_store_open(&config, &store);
    if (status == KVBM_ERR_UNSUPPORTED) {
        disk_test_remove(path);
        skip(); /* io_uring is not allowed here */
    }
    assert_kvbm_ok(status);
    if (expect_engine != NULL &&
        strncmp(kvbm__disk_store_engine(store), expect_engine, strlen(expect_engine)) != 0)
        fail_msg("engine %s, expected %s", kvbm__disk_store_engine(store), expect_engine);
    assert_int_equal(kvbm__disk_store_open_kind(store), KVBM__DISK_OPENED_NEW);
    assert_int_equal(write_blocks(store, 0, 1000, 64), 64);
    read_tally_t t = read_blocks(store, 0, 1000, 64);
    assert_int_equal(t.done, 64);
    assert_int_equal(t.wrong, 0);
    kvbm_disk_metrics_t m;
    kvbm__disk_store_metrics(store, &m);
    assert_int_equal(m.stores, 64);
    assert_int_equal(m.loads, 64);
    assert_int_equal(m.load_bytes, 64 * PAYLOAD);
    assert_int_equal(m.queue_depth, 0);
    kvbm__disk_store_close(store);
    disk_test_remove(path);
}

static void io_uring_direct_round_trip(void **state)
{
    round_trip_on(KVBM_DISK_IO_URING, true, "io_uring+");
}

static void threads_direct_round_trip(void **state)
{
    round_trip_on(KVBM_DISK_IO_THREADS, true, "threads+");
}

static void threads_buffered_round_trip(void **state)
{
    round_trip_on(KVBM_DISK_IO_THREADS, false, "threads+buffered");
}

static void auto_engine_round_trip(void **state)
{
    round_trip_on(KVBM_DISK_IO_AUTO, true, NULL);
}

/* Several threads each submit a batch many times the queue depth at once:
 * submit returns without waiting for room, the engine runs at most
 * queue_depth at a time, and every block is written, read back whole and
 * counted exactly once; nothing is left queued. */
typedef struct batch_thread {
    kvbm__disk_store_t *store;
    uint32_t slot0;
    size_t written;
    read_tally_t read;
} batch_thread_t;

#define BATCH_THREADS    4
#define BLOCKS_PER_BATCH 48

static void *write_then_read(void *arg)
{
    batch_thread_t *t = arg;
    t->written = write_blocks(t->store, t->slot0, 5000 + t->slot0, BLOCKS_PER_BATCH);
    t->read = read_blocks(t->store, t->slot0, 5000 + t->slot0, BLOCKS_PER_BATCH);
    return NULL;
}

static void batches_beyond_queue_depth_from_threads_on(kvbm_disk_io_kind_t io)
{
    const char *path = disk_test_path();
    kvbm__disk_store_config_t config =
        disk_test_config(path, PAYLOAD, BATCH_THREADS * BLOCKS_PER_BATCH, FP);
    config.io = io;
    config.queue_depth = 2;
    kvbm__disk_store_t *store = NULL;
    kvbm_status_t status = kvbm__disk_store_open(&config, &store);
    if (status == KVBM_ERR_UNSUPPORTED) {
        disk_test_remove(path);
        skip(); /* io_uring is not allowed here */
    }
    assert_kvbm_ok(status);
    batch_thread_t threads[BATCH_THREADS];
    pthread_t ids[BATCH_THREADS];
    for (uint32_t i = 0; i < BATCH_THREADS; i++) {
        threads[i] = (batch_thread_t){.store = store, .slot0 = i * BLOCKS_PER_BATCH};
        assert_int_equal(pthread_create(&ids[i], NULL, write_then_read, &threads[i]), 0);
    }
    for (uint32_t i = 0; i < BATCH_THREADS; i++) {
        assert_int_equal(pthread_join(ids[i], NULL), 0);
        assert_int_equal(threads[i].written, BLOCKS_PER_BATCH);
        assert_int_equal(threads[i].read.done, BLOCKS_PER_BATCH);
        assert_int_equal(threads[i].read.wrong, 0);
    }
    kvbm_disk_metrics_t m;
    kvbm__disk_store_metrics(store, &m);
    assert_int_equal(m.stores, BATCH_THREADS * BLOCKS_PER_BATCH);
    assert_int_equal(m.loads, BATCH_THREADS * BLOCKS_PER_BATCH);
    assert_int_equal(m.queue_depth, 0);
    kvbm__disk_store_close(store);
    disk_test_remove(path);
}

static void io_uring_batches_beyond_queue_depth_from_threads(void **state)
{
    batches_beyond_queue_depth_from_threads_on(KVBM_DISK_IO_URING);
}

static void threads_batches_beyond_queue_depth_from_threads(void **state)
{
    batches_beyond_queue_depth_from_threads_on(KVBM_DISK_IO_THREADS);
}

/* An engine closed right after a submit of many times its depth completes
 * every request, each once and whole, before close returns. */
typedef struct close_tally {
    size_t completed;
    size_t whole;
} close_tally_t;

static void count_completion(void *ctx, kvbm__disk_req_t *req)
{
    close_tally_t *tally = ctx; /* one reaper or worker thread at a time: see below */
    tally->completed++;
    tally->whole += req->result == (int64_t)req->bytes && ((uint8_t *)req->buf)[0] == req->index;
}

static void close_completes_queued_requests_on(const kvbm__disk_io_ops_t *ops)
{
    enum { N = 64, BYTES = 4096 };
    const char *path = disk_test_path();
    int fd = open(path, O_RDWR | O_CREAT, 0600);
    assert_true(fd >= 0);
    uint8_t *bufs = disk_test_buffers(N, BYTES);
    assert_non_null(bufs);
    for (uint32_t i = 0; i < N; i++)
        memset(bufs + (size_t)i * BYTES, (int)i, BYTES);
    assert_int_equal(pwrite(fd, bufs, (size_t)N * BYTES, 0), (ssize_t)N * BYTES);
    memset(bufs, 0xff, (size_t)N * BYTES);
    close_tally_t tally = {0};
    /* One worker thread: completions never race on the tally. */
    kvbm__disk_io_config_t config = {.fd = fd,
                                     .queue_depth = 1,
                                     .threads = 1,
                                     .complete = count_completion,
                                     .complete_ctx = &tally};
    void *engine = NULL;
    kvbm_status_t status = ops->open(&config, &engine);
    if (status == KVBM_ERR_UNSUPPORTED) {
        close(fd);
        free(bufs);
        disk_test_remove(path);
        skip(); /* io_uring is not allowed here */
    }
    assert_kvbm_ok(status);
    kvbm__disk_req_t reqs[N];
    kvbm__disk_req_t *ptrs[N];
    for (uint32_t i = 0; i < N; i++) {
        reqs[i] = (kvbm__disk_req_t){.op = KVBM__DISK_READ,
                                     .buf = bufs + (size_t)i * BYTES,
                                     .bytes = BYTES,
                                     .offset = (uint64_t)i * BYTES,
                                     .index = i};
        ptrs[i] = &reqs[i];
    }
    ops->submit(engine, ptrs, N);
    ops->close(engine);
    assert_int_equal(tally.completed, N);
    assert_int_equal(tally.whole, N);
    close(fd);
    free(bufs);
    disk_test_remove(path);
}

static void io_uring_close_completes_queued_requests(void **state)
{
    close_completes_queued_requests_on(kvbm__disk_io_uring_ops());
}

static void threads_close_completes_queued_requests(void **state)
{
    close_completes_queued_requests_on(kvbm__disk_io_threads_ops());
}

/* Power-loss durability: writes with RWF_DSYNC and the table page synced
 * before publication, on both engines; the blocks read back and come back
 * warm. (A power loss itself cannot be staged here.) */
static void durable_power_mode_writes_synced_and_comes_back_warm(void **state)
{
    const kvbm_disk_io_kind_t engines[] = {KVBM_DISK_IO_THREADS, KVBM_DISK_IO_AUTO};
    for (size_t e = 0; e < 2; e++) {
        const char *path = disk_test_path();
        kvbm__disk_store_config_t config = disk_test_config(path, PAYLOAD, 16, FP);
        config.io = engines[e];
        config.durability = KVBM_DISK_DURABLE_POWER;
        kvbm__disk_store_t *store = open_store(&config);
        assert_int_equal(write_blocks(store, 0, 40, 16), 16);
        kvbm__disk_store_close(store);
        store = open_store(&config);
        assert_int_equal(kvbm__disk_store_open_kind(store), KVBM__DISK_OPENED_WARM);
        read_tally_t t = read_blocks(store, 0, 40, 16);
        assert_int_equal(t.done, 16);
        assert_int_equal(t.wrong, 0);
        kvbm__disk_store_close(store);
        disk_test_remove(path);
    }
}

static void reading_a_slot_under_another_hash_is_corrupt(void **state)
{
    const char *path = disk_test_path();
    kvbm__disk_store_config_t config = disk_test_config(path, PAYLOAD, 8, FP);
    kvbm__disk_store_t *store = open_store(&config);
    assert_int_equal(write_blocks(store, 0, 1, 4), 4);
    read_tally_t t = read_blocks(store, 0, 2, 4); /* every slot read under its neighbour's hash */
    assert_int_equal(t.corrupt, 4);
    t = read_blocks(store, 4, 5, 4); /* never written */
    assert_int_equal(t.corrupt, 4);
    assert_int_equal(t.done, 0);
    kvbm__disk_store_close(store);
    disk_test_remove(path);
}

/* ------------------------------------------------------------------ restart */

static void reopened_with_the_same_namespace_it_comes_back_warm(void **state)
{
    const char *path = disk_test_path();
    kvbm__disk_store_config_t config = disk_test_config(path, PAYLOAD, 32, FP);
    kvbm__disk_store_t *store = open_store(&config);
    assert_int_equal(write_blocks(store, 0, 100, 20), 20);
    assert_int_equal(write_blocks(store, 5, 500, 3), 3); /* rewrites slots 5..7 */
    kvbm__disk_store_close(store);

    store = open_store(&config);
    assert_int_equal(kvbm__disk_store_open_kind(store), KVBM__DISK_OPENED_WARM);
    kvbm__disk_entry_t *entries = NULL;
    size_t n = 0;
    kvbm__disk_store_take_recovered(store, &entries, &n);
    assert_int_equal(n, 20);
    for (size_t i = 1; i < n; i++) /* oldest write first */
        assert_true(entries[i - 1].generation < entries[i].generation);
    for (size_t i = n - 3; i < n; i++) /* the rewrites are the newest */
        assert_int_equal(entries[i].seq_hash, 500 + entries[i].slot - 5);
    free(entries);
    read_tally_t t = read_blocks(store, 8, 108, 12);
    assert_int_equal(t.done, 12);
    assert_int_equal(t.wrong, 0);
    t = read_blocks(store, 5, 500, 3);
    assert_int_equal(t.done, 3);
    kvbm_disk_metrics_t m;
    kvbm__disk_store_metrics(store, &m);
    assert_int_equal(m.recovered, 20);
    kvbm__disk_store_close(store);
    disk_test_remove(path);
}

static void reopened_with_another_namespace_it_starts_empty(void **state)
{
    const char *path = disk_test_path();
    kvbm__disk_store_config_t config = disk_test_config(path, PAYLOAD, 16, FP);
    kvbm__disk_store_t *store = open_store(&config);
    assert_int_equal(write_blocks(store, 0, 1, 16), 16);
    kvbm__disk_store_close(store);

    config.fingerprint = FP + 1; /* say another TP rank */
    store = open_store(&config);
    assert_int_equal(kvbm__disk_store_open_kind(store), KVBM__DISK_OPENED_NAMESPACE);
    kvbm__disk_entry_t *entries = NULL;
    size_t n = 99;
    kvbm__disk_store_take_recovered(store, &entries, &n);
    free(entries);
    assert_int_equal(n, 0);
    read_tally_t t = read_blocks(store, 0, 1, 16); /* the old blocks are never served */
    assert_int_equal(t.done, 0);
    kvbm__disk_store_close(store);

    /* Back to the first namespace: the blocks are gone for good, not hidden. */
    config.fingerprint = FP;
    store = open_store(&config);
    assert_int_equal(kvbm__disk_store_open_kind(store), KVBM__DISK_OPENED_NAMESPACE);
    assert_int_equal(read_blocks(store, 0, 1, 16).done, 0);
    kvbm__disk_store_close(store);
    disk_test_remove(path);
}

static void reopened_with_another_geometry_it_starts_empty(void **state)
{
    const char *path = disk_test_path();
    kvbm__disk_store_config_t config = disk_test_config(path, PAYLOAD, 16, FP);
    kvbm__disk_store_t *store = open_store(&config);
    assert_int_equal(write_blocks(store, 0, 1, 4), 4);
    kvbm__disk_store_close(store);
    config.slots = 20;
    store = open_store(&config);
    assert_int_equal(kvbm__disk_store_open_kind(store), KVBM__DISK_OPENED_GEOMETRY);
    assert_int_equal(read_blocks(store, 0, 1, 4).done, 0);
    kvbm__disk_store_close(store);
    disk_test_remove(path);
}

static void a_file_that_is_not_a_g3_file_is_emptied(void **state)
{
    const char *path = disk_test_path();
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("not a kvbm file", f);
    fclose(f);
    kvbm__disk_store_config_t config = disk_test_config(path, PAYLOAD, 4, FP);
    kvbm__disk_store_t *store = open_store(&config);
    assert_int_equal(kvbm__disk_store_open_kind(store), KVBM__DISK_OPENED_INVALID);
    assert_int_equal(write_blocks(store, 0, 1, 4), 4);
    kvbm__disk_store_close(store);
    disk_test_remove(path);
}

static void a_second_opener_is_refused(void **state)
{
    const char *path = disk_test_path();
    kvbm__disk_store_config_t config = disk_test_config(path, PAYLOAD, 4, FP);
    kvbm__disk_store_t *store = open_store(&config);
    kvbm__disk_store_t *second = NULL;
    assert_kvbm_status(kvbm__disk_store_open(&config, &second), KVBM_ERR_BUSY);
    assert_null(second);
    kvbm__disk_store_close(store);
    disk_test_remove(path);
}

static void bad_configs_are_refused(void **state)
{
    kvbm__disk_store_t *store = NULL;
    kvbm__disk_store_config_t config =
        disk_test_config("/nonexistent-dir/x/g3.bin", PAYLOAD, 4, FP);
    assert_kvbm_status(kvbm__disk_store_open(&config, &store), KVBM_ERR_IO);
    config = disk_test_config("", PAYLOAD, 4, FP);
    assert_kvbm_status(kvbm__disk_store_open(&config, &store), KVBM_ERR_INVALID_ARG);
    const char *path = disk_test_path();
    config = disk_test_config(path, 0, 4, FP);
    assert_kvbm_status(kvbm__disk_store_open(&config, &store), KVBM_ERR_INVALID_ARG);
    config = disk_test_config(path, PAYLOAD, 0, FP);
    config.file_bytes = 100; /* not one block */
    assert_kvbm_status(kvbm__disk_store_open(&config, &store), KVBM_ERR_INVALID_ARG);
    assert_null(store);
    disk_test_remove(path);
}

/* ------------------------------------------------------------------ faults */

typedef struct fault_plan {
    kvbm__disk_fault_t fault;
    kvbm__disk_op_t op;
    uint64_t every; /* fault every n-th request of op (1: all) */
    uint64_t seen;
} fault_plan_t;

static kvbm__disk_fault_t planned_fault(void *ctx, const kvbm__disk_req_t *req)
{
    fault_plan_t *plan = ctx;
    if (req->op != plan->op)
        return KVBM__DISK_FAULT_NONE;
    return __atomic_fetch_add(&plan->seen, 1, __ATOMIC_RELAXED) % plan->every == 0
               ? plan->fault
               : KVBM__DISK_FAULT_NONE;
}

/* Writes 16 blocks under a write fault (every other one), reads them back
 * clean; then reads them under a read fault. Returns the tallies. */
static void run_fault(kvbm_disk_io_kind_t io, kvbm__disk_fault_t fault, kvbm__disk_op_t op,
                      size_t *published, read_tally_t *tally)
{
    const char *path = disk_test_path();
    kvbm__disk_store_config_t config = disk_test_config(path, PAYLOAD, 16, FP);
    config.io = io;
    kvbm__disk_store_t *store = open_store(&config);
    fault_plan_t plan = {.fault = fault, .op = op, .every = 2};
    if (op == KVBM__DISK_WRITE)
        kvbm__disk_store_set_fault(store, planned_fault, &plan);
    *published = write_blocks(store, 0, 1, 16);
    kvbm__disk_store_set_fault(store, op == KVBM__DISK_READ ? planned_fault : NULL, &plan);
    *tally = read_blocks(store, 0, 1, 16);
    kvbm__disk_store_set_fault(store, NULL, NULL);
    kvbm_disk_metrics_t m;
    kvbm__disk_store_metrics(store, &m);
    assert_int_equal(m.stores + m.stores_failed, 16);
    assert_int_equal(m.loads + m.loads_failed + m.loads_corrupt, 16);
    kvbm__disk_store_close(store);
    disk_test_remove(path);
}

static void every_fault_is_counted_and_no_wrong_byte_is_served(void **state)
{
    const kvbm_disk_io_kind_t engines[] = {KVBM_DISK_IO_THREADS, KVBM_DISK_IO_AUTO};
    for (size_t e = 0; e < 2; e++) {
        size_t published;
        read_tally_t t;
        /* Writes that fail are not published; a flipped bit written is caught on read. */
        const kvbm__disk_fault_t write_faults[] = {KVBM__DISK_FAULT_EIO, KVBM__DISK_FAULT_ENOSPC,
                                                   KVBM__DISK_FAULT_SHORT};
        for (size_t f = 0; f < 3; f++) {
            run_fault(engines[e], write_faults[f], KVBM__DISK_WRITE, &published, &t);
            assert_int_equal(published, 8);
            assert_int_equal(t.done, 8);
            assert_int_equal(t.done + t.corrupt, 16);
            assert_int_equal(t.wrong, 0);
        }
        run_fault(engines[e], KVBM__DISK_FAULT_FLIP, KVBM__DISK_WRITE, &published, &t);
        assert_int_equal(published, 16);
        assert_int_equal(t.done, 8);
        assert_int_equal(t.corrupt, 8);
        assert_int_equal(t.wrong, 0);
        /* Reads: I/O errors and short reads fail, flipped bits are corrupt. */
        const kvbm__disk_fault_t read_faults[] = {KVBM__DISK_FAULT_EIO, KVBM__DISK_FAULT_SHORT};
        for (size_t f = 0; f < 2; f++) {
            run_fault(engines[e], read_faults[f], KVBM__DISK_READ, &published, &t);
            assert_int_equal(published, 16);
            assert_int_equal(t.done, 8);
            assert_int_equal(t.failed, 8);
            assert_int_equal(t.wrong, 0);
        }
        run_fault(engines[e], KVBM__DISK_FAULT_FLIP, KVBM__DISK_READ, &published, &t);
        assert_int_equal(t.done, 8);
        assert_int_equal(t.corrupt, 8);
        assert_int_equal(t.wrong, 0);
    }
}

/* Flips one bit of the file at @p offset through a separate descriptor. */
static void flip_file_bit(const char *path, uint64_t offset)
{
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    uint8_t byte;
    assert_int_equal(pread(fd, &byte, 1, (off_t)offset), 1);
    byte ^= 0x10;
    assert_int_equal(pwrite(fd, &byte, 1, (off_t)offset), 1);
    assert_int_equal(fsync(fd), 0);
    close(fd);
}

static void bits_flipped_in_the_file_are_caught(void **state)
{
    const char *path = disk_test_path();
    kvbm__disk_store_config_t config = disk_test_config(path, PAYLOAD, 8, FP);
    kvbm__disk_store_t *store = open_store(&config);
    assert_int_equal(write_blocks(store, 0, 1, 8), 8);
    const kvbm__disk_geometry_t *g = kvbm__disk_store_geometry(store);
    /* Slot 1: a payload bit; slot 2: a header bit; slot 3: the last payload byte. */
    flip_file_bit(path, kvbm__disk_slot_offset(g, 1) + KVBM__DISK_HEADER_BYTES + 100);
    flip_file_bit(path, kvbm__disk_slot_offset(g, 2) + 20);
    flip_file_bit(path, kvbm__disk_slot_offset(g, 3) + KVBM__DISK_HEADER_BYTES + PAYLOAD - 1);
    read_tally_t t = read_blocks(store, 0, 1, 8);
    assert_int_equal(t.corrupt, 3);
    assert_int_equal(t.done, 5);
    assert_int_equal(t.wrong, 0);
    /* A flipped table entry is not recovered at the next open. */
    flip_file_bit(path, g->table_offset + 4 * KVBM__DISK_HEADER_BYTES + 17);
    kvbm__disk_store_close(store);
    store = open_store(&config);
    assert_int_equal(kvbm__disk_store_open_kind(store), KVBM__DISK_OPENED_WARM);
    kvbm__disk_entry_t *entries = NULL;
    size_t n = 0;
    kvbm__disk_store_take_recovered(store, &entries, &n);
    assert_int_equal(n, 7);
    for (size_t i = 0; i < n; i++)
        assert_int_not_equal(entries[i].slot, 4);
    free(entries);
    kvbm__disk_store_close(store);
    disk_test_remove(path);
}

/* ------------------------------------------------------------------ crashes */

/* The child: writes blocks into slots over and over until killed. Each
 * round writes hashes round*1000+slot, so a slot's content names its round. */
static void write_until_killed(const char *path, uint64_t slots)
{
    kvbm__disk_store_config_t config = disk_test_config(path, PAYLOAD, slots, FP);
    config.queue_depth = 32;
    kvbm__disk_store_t *store = NULL;
    if (kvbm__disk_store_open(&config, &store) != KVBM_OK)
        _exit(3);
    for (uint64_t round = 1;; round++)
        if (write_blocks(store, 0, round * 1000, slots) != slots)
            _exit(4);
}

/* Reads every recovered block under its recovered hash; all must verify. */
static read_tally_t read_recovered(kvbm__disk_store_t *store, size_t *n_out)
{
    kvbm__disk_entry_t *entries = NULL;
    size_t n = 0;
    kvbm__disk_store_take_recovered(store, &entries, &n);
    read_tally_t total = {0};
    for (size_t i = 0; i < n; i++) {
        read_tally_t t = read_blocks(store, entries[i].slot, entries[i].seq_hash, 1);
        total.done += t.done;
        total.failed += t.failed;
        total.corrupt += t.corrupt;
        total.wrong += t.wrong;
    }
    free(entries);
    *n_out = n;
    return total;
}

static void a_writer_killed_mid_write_never_leaves_a_servable_torn_block(void **state)
{
    const char *path = disk_test_path();
    const uint64_t slots = 64;
    for (int attempt = 0; attempt < 3; attempt++) {
        pid_t child = fork();
        assert_true(child >= 0);
        if (child == 0)
            write_until_killed(path, slots);
        struct timespec pause = {.tv_sec = 0, .tv_nsec = (50 + 40 * attempt) * 1000000L};
        nanosleep(&pause, NULL);
        kill(child, SIGKILL);
        int wstatus;
        waitpid(child, &wstatus, 0);
        assert_true(WIFSIGNALED(wstatus)); /* it was writing, not failed */
        kvbm__disk_store_config_t config = disk_test_config(path, PAYLOAD, slots, FP);
        kvbm__disk_store_t *store = open_store(&config);
        size_t n = 0;
        read_tally_t t = read_recovered(store, &n);
        /* Published only once complete: every indexed block reads back whole. */
        assert_int_equal(t.wrong, 0);
        assert_int_equal(t.done, n);
        kvbm__disk_store_close(store);
    }
    disk_test_remove(path);
}

/* A stalled write: the fault hook lets the request through halfway (a torn
 * slot: new header, half new payload) and the writer then dies. */
static void a_torn_slot_whose_index_entry_survived_is_a_miss(void **state)
{
    const char *path = disk_test_path();
    kvbm__disk_store_config_t config = disk_test_config(path, PAYLOAD, 4, FP);
    kvbm__disk_store_t *store = open_store(&config);
    assert_int_equal(write_blocks(store, 0, 10, 4), 4);
    const kvbm__disk_geometry_t *g = kvbm__disk_store_geometry(store);
    uint64_t entry_offset = g->table_offset + 2 * KVBM__DISK_HEADER_BYTES;
    kvbm__disk_store_close(store);
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    uint8_t old_entry[KVBM__DISK_HEADER_BYTES];
    assert_int_equal(pread(fd, old_entry, sizeof(old_entry), (off_t)entry_offset),
                     (ssize_t)sizeof(old_entry));

    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        kvbm__disk_store_t *writer = NULL;
        if (kvbm__disk_store_open(&config, &writer) != KVBM_OK)
            _exit(3);
        fault_plan_t plan = {.fault = KVBM__DISK_FAULT_SHORT, .op = KVBM__DISK_WRITE, .every = 1};
        kvbm__disk_store_set_fault(writer, planned_fault, &plan);
        write_blocks(writer, 2, 99, 1); /* slot 2 now torn */
        pause();
        _exit(0);
    }
    struct timespec wait = {.tv_sec = 0, .tv_nsec = 300 * 1000000L};
    nanosleep(&wait, NULL);
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    /* As if the index had outlived the data (power loss): restore slot 2's
     * old entry, naming hash 12, over a slot that now holds half of 99. */
    assert_int_equal(pwrite(fd, old_entry, sizeof(old_entry), (off_t)entry_offset),
                     (ssize_t)sizeof(old_entry));
    close(fd);
    store = open_store(&config);
    size_t n = 0;
    read_tally_t t = read_recovered(store, &n);
    assert_int_equal(n, 4);
    assert_int_equal(t.done, 3);
    assert_int_equal(t.corrupt, 1);
    assert_int_equal(t.wrong, 0);
    kvbm__disk_store_close(store);
    disk_test_remove(path);
}

/* ------------------------------------------------------------------ space */

static void below_the_free_space_floor_writes_are_skipped_and_counted(void **state)
{
    const char *path = disk_test_path();
    kvbm__disk_store_config_t config = disk_test_config(path, PAYLOAD, 8, FP);
    kvbm__disk_store_t *store = open_store(&config);
    assert_true(kvbm__disk_store_reserve_space(store, 8));
    kvbm__disk_store_close(store);
    config.min_free_bytes = UINT64_MAX / 2; /* more than any disk has */
    store = open_store(&config);
    assert_false(kvbm__disk_store_reserve_space(store, 3));
    assert_false(kvbm__disk_store_reserve_space(store, 2));
    kvbm_disk_metrics_t m;
    kvbm__disk_store_metrics(store, &m);
    assert_int_equal(m.stores_skipped_space, 5);
    kvbm__disk_store_close(store);
    disk_test_remove(path);
}

/* ------------------------------------------------------------------ rebuild */

static void duplicate_hashes_in_the_index_keep_the_newest(void **state)
{
    const char *path = disk_test_path();
    kvbm__disk_store_config_t config = disk_test_config(path, PAYLOAD, 8, FP);
    kvbm__disk_store_t *store = open_store(&config);
    assert_int_equal(write_blocks(store, 0, 7, 1), 1); /* hash 7 in slot 0 */
    assert_int_equal(write_blocks(store, 3, 7, 1), 1); /* and again in slot 3 */
    kvbm__disk_store_close(store);
    store = open_store(&config);
    kvbm__disk_entry_t *entries = NULL;
    size_t n = 0;
    kvbm__disk_store_take_recovered(store, &entries, &n);
    assert_int_equal(n, 1);
    assert_int_equal(entries[0].slot, 3);
    free(entries);
    kvbm__disk_store_close(store);
    store = open_store(&config); /* slot 0's entry was cleared for good */
    kvbm__disk_store_take_recovered(store, &entries, &n);
    assert_int_equal(n, 1);
    free(entries);
    kvbm__disk_store_close(store);
    disk_test_remove(path);
}

static void a_large_index_is_rebuilt(void **state)
{
    /* 200k table entries written straight into a sparse file (the slots are
     * never read): the open must find them all. bench_disk times a million. */
    const char *path = disk_test_path();
    const uint64_t slots = 200000;
    kvbm__disk_store_config_t config = disk_test_config(path, 4096, slots, FP);
    config.preallocate = false;
    kvbm__disk_store_t *store = open_store(&config);
    kvbm__disk_geometry_t g = *kvbm__disk_store_geometry(store);
    kvbm__disk_store_close(store);
    uint8_t *table = calloc(g.table_bytes, 1);
    assert_non_null(table);
    for (uint64_t slot = 0; slot < slots; slot++) {
        kvbm__disk_header_t h = {.slot = (uint32_t)slot,
                                 .payload_bytes = 4096,
                                 .seq_hash = slot * 31 + 5,
                                 .fingerprint = FP,
                                 .generation = slots - slot};
        kvbm__disk_header_encode(&h, table + slot * KVBM__DISK_HEADER_BYTES);
    }
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, table, g.table_bytes, (off_t)g.table_offset),
                     (ssize_t)g.table_bytes);
    close(fd);
    free(table);
    store = open_store(&config);
    kvbm__disk_entry_t *entries = NULL;
    size_t n = 0;
    kvbm__disk_store_take_recovered(store, &entries, &n);
    assert_int_equal(n, slots);
    assert_int_equal(entries[0].slot, slots - 1); /* oldest generation first */
    assert_int_equal(entries[n - 1].seq_hash, 5);
    free(entries);
    kvbm__disk_store_close(store);
    disk_test_remove(path);
}

/* ------------------------------------------------------------------ tier */

static kvbm__disk_tier_t *open_tier(const char *path, const char *model, uint32_t blocks)
{
    kvbm_layout_config_t layout = KVBM_LAYOUT_CONFIG_INIT;
    layout.num_blocks = 16;
    layout.num_layers = 2;
    layout.tokens_per_block = 16;
    layout.inner_dim = 128;
    kvbm_disk_config_t disk = KVBM_DISK_CONFIG_INIT;
    disk.path = path;
    disk.capacity_blocks = blocks;
    disk.min_free_bytes = 0;
    disk.model_id = model;
    kvbm__disk_tier_config_t config = {.disk = &disk,
                                       .layout = &layout,
                                       .payload_bytes = PAYLOAD,
                                       .policy_config = KVBM_POLICY_CONFIG_INIT};
    kvbm__disk_tier_t *tier = NULL;
    assert_kvbm_ok(kvbm__disk_tier_open(&config, &tier));
    return tier;
}

/* Takes a block, writes hash into it, publishes it. */
static void tier_store(kvbm__disk_tier_t *tier, uint64_t hash)
{
    uint32_t id;
    bool evicted;
    assert_kvbm_ok(kvbm__disk_tier_take(tier, &id, &evicted));
    kvbm__disk_store_t *store = kvbm__disk_tier_store(tier);
    size_t slot_bytes = kvbm__disk_store_geometry(store)->slot_bytes;
    uint8_t *buf = disk_test_buffers(1, slot_bytes);
    disk_test_fill(buf + KVBM__DISK_HEADER_BYTES, PAYLOAD, hash);
    kvbm__disk_batch_t *batch = NULL;
    assert_kvbm_ok(kvbm__disk_batch_create(store, 1, &batch));
    assert_kvbm_ok(kvbm__disk_batch_add(batch, kvbm__disk_tier_slot(tier, id), hash, buf));
    assert_kvbm_ok(kvbm__disk_store_write(store, batch));
    kvbm__disk_batch_wait(batch);
    const uint64_t parent = 0;
    const uint8_t has_parent = 0;
    assert_int_equal(kvbm__disk_tier_finish_writes(tier, &id, &hash, &parent, &has_parent, batch),
                     1);
    kvbm__disk_batch_destroy(batch);
    free(buf);
}

static void tier_comes_back_warm_in_write_order_and_cold_for_another_model(void **state)
{
    const char *path = disk_test_path();
    kvbm__disk_tier_t *tier = open_tier(path, "model-a", 4);
    for (uint64_t h = 1; h <= 4; h++)
        tier_store(tier, h);
    tier_store(tier, 5); /* evicts 1, the oldest */
    kvbm_manager_t *m = kvbm__disk_tier_manager(tier);
    assert_false(kvbm_manager_contains(m, 1));
    kvbm__disk_tier_close(tier);

    tier = open_tier(path, "model-a", 4);
    m = kvbm__disk_tier_manager(tier);
    for (uint64_t h = 2; h <= 5; h++)
        assert_true(kvbm_manager_contains(m, h));
    assert_pools(m, 0, 0, 4);
    uint32_t id;
    size_t k = 0;
    const uint64_t want[] = {3};
    assert_kvbm_ok(kvbm_manager_match(m, want, 1, &id, &k));
    assert_int_equal(k, 1);
    assert_true(kvbm__disk_tier_from_file(tier, id));
    read_tally_t t = read_blocks(kvbm__disk_tier_store(tier), kvbm__disk_tier_slot(tier, id), 3, 1);
    assert_int_equal(t.done, 1);
    assert_int_equal(t.wrong, 0);
    assert_kvbm_ok(kvbm_manager_release(m, &id, 1));
    tier_store(tier, 6); /* evicts 2: recovered blocks keep their write order */
    assert_false(kvbm_manager_contains(m, 2));
    assert_true(kvbm_manager_contains(m, 4));
    kvbm__disk_tier_close(tier);

    tier = open_tier(path, "model-b", 4);
    m = kvbm__disk_tier_manager(tier);
    assert_pools(m, 4, 0, 0);
    for (uint64_t h = 1; h <= 6; h++)
        assert_false(kvbm_manager_contains(m, h));
    kvbm__disk_tier_close(tier);
    disk_test_remove(path);
}

static void tier_withdraws_blocks_and_forgets_their_slots(void **state)
{
    const char *path = disk_test_path();
    kvbm__disk_tier_t *tier = open_tier(path, "m", 4);
    tier_store(tier, 1);
    tier_store(tier, 2);
    kvbm_manager_t *m = kvbm__disk_tier_manager(tier);
    uint32_t id;
    size_t k = 0;
    const uint64_t want[] = {1};
    assert_kvbm_ok(kvbm_manager_match(m, want, 1, &id, &k));
    kvbm__disk_tier_withdraw(tier, &id, 1);
    assert_false(kvbm_manager_contains(m, 1));
    assert_kvbm_ok(kvbm_manager_release(m, &id, 1));
    assert_pools(m, 3, 0, 1);
    kvbm__disk_tier_close(tier);
    tier = open_tier(path, "m", 4);
    m = kvbm__disk_tier_manager(tier);
    assert_false(kvbm_manager_contains(m, 1));
    assert_true(kvbm_manager_contains(m, 2));
    kvbm__disk_tier_close(tier);
    disk_test_remove(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(header_round_trips_and_any_flipped_bit_is_refused),
        cmocka_unit_test(superblock_round_trips_and_refuses_other_versions),
        cmocka_unit_test(geometry_aligns_slots_and_refuses_overflow),
        cmocka_unit_test(fingerprint_changes_with_everything_that_changes_bytes),
        cmocka_unit_test(io_uring_direct_round_trip),
        cmocka_unit_test(threads_direct_round_trip),
        cmocka_unit_test(threads_buffered_round_trip),
        cmocka_unit_test(auto_engine_round_trip),
        cmocka_unit_test(io_uring_batches_beyond_queue_depth_from_threads),
        cmocka_unit_test(threads_batches_beyond_queue_depth_from_threads),
        cmocka_unit_test(io_uring_close_completes_queued_requests),
        cmocka_unit_test(threads_close_completes_queued_requests),
        cmocka_unit_test(durable_power_mode_writes_synced_and_comes_back_warm),
        cmocka_unit_test(reading_a_slot_under_another_hash_is_corrupt),
        cmocka_unit_test(reopened_with_the_same_namespace_it_comes_back_warm),
        cmocka_unit_test(reopened_with_another_namespace_it_starts_empty),
        cmocka_unit_test(reopened_with_another_geometry_it_starts_empty),
        cmocka_unit_test(a_file_that_is_not_a_g3_file_is_emptied),
        cmocka_unit_test(a_second_opener_is_refused),
        cmocka_unit_test(bad_configs_are_refused),
        cmocka_unit_test(every_fault_is_counted_and_no_wrong_byte_is_served),
        cmocka_unit_test(bits_flipped_in_the_file_are_caught),
        cmocka_unit_test(a_writer_killed_mid_write_never_leaves_a_servable_torn_block),
        cmocka_unit_test(a_torn_slot_whose_index_entry_survived_is_a_miss),
        cmocka_unit_test(below_the_free_space_floor_writes_are_skipped_and_counted),
        cmocka_unit_test(duplicate_hashes_in_the_index_keep_the_newest),
        cmocka_unit_test(a_large_index_is_rebuilt),
        cmocka_unit_test(tier_comes_back_warm_in_write_order_and_cold_for_another_model),
        cmocka_unit_test(tier_withdraws_blocks_and_forgets_their_slots),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
