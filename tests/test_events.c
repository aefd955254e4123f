/*
 * KV events: the msgpack encoding byte for byte against hand-computed
 * batches, vLLM's endpoint conventions, and the publisher's sockets,
 * sequence numbers, drops and replay through a C subscriber.
 * (tests/events_wire.py checks the same wire with Python's msgpack and zmq.)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <zmq.h>

#include "events/encode.h"
#include "events/endpoint.h"
#include "events/publisher_internal.h"
#include "kvbm_test.h"

/* ------------------------------------------------------------------ encoding */

static void assert_bytes(const kvbm__payload_t *payload, const unsigned char *expected, size_t size)
{
    if (payload->size != size)
        fail_msg("encoded %zu bytes, expected %zu", payload->size, size);
    for (size_t i = 0; i < size; i++)
        if ((unsigned char)payload->data[i] != expected[i])
            fail_msg("byte %zu is 0x%02x, expected 0x%02x", i, (unsigned char)payload->data[i],
                     expected[i]);
}

static void encode(const kvbm_event_record_t *records, size_t count, double ts, int32_t rank,
                   kvbm__payload_t *out)
{
    kvbm__events_size_t size;
    assert_kvbm_ok(kvbm__events_check(records, count, &size));
    size_t before = out->size;
    assert_kvbm_ok(kvbm__events_encode(out, ts, records, count, &size, rank));
    assert_true(out->size - before <= size.bound);
}

static void stored_run_without_rank_is_byte_exact(void **state)
{
    const uint64_t hashes[] = {1, 300};
    const uint32_t tokens[] = {7, 70000};
    kvbm_event_record_t record = {.kind = KVBM_EVENT_STORED,
                                  .medium = KVBM_MEDIUM_GPU,
                                  .count = 2,
                                  .hashes = hashes,
                                  .n_tokens = 2,
                                  .tokens = tokens,
                                  .block_size = 16};
    /* [1.5, [["BlockStored", [1, 300], nil, [7, 70000], 16, nil, "GPU", nil]]] */
    const unsigned char expected[] = {
        0x92,                                                 /* batch: 2 fields, no rank */
        0xcb, 0x3f, 0xf8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* ts 1.5 as float64 */
        0x91,                                                 /* one event */
        0x98,                                                 /* tag + 7 fields */
        0xab, 'B',  'l',  'o',  'c',  'k',  'S',  't',  'o',  'r', 'e', 'd', /* fixstr 11 */
        0x92, 0x01, 0xcd, 0x01, 0x2c,             /* [1, 300]: fixint, uint16 */
        0xc0,                                     /* no parent: nil */
        0x92, 0x07, 0xce, 0x00, 0x01, 0x11, 0x70, /* [7, 70000]: uint32 */
        0x10,                                     /* block_size 16 */
        0xc0,                                     /* lora_id nil */
        0xa3, 'G',  'P',  'U',                    /* medium */
        0xc0,                                     /* lora_name nil */
    };
    kvbm__payload_t out = {0};
    encode(&record, 1, 1.5, KVBM_PUBLISHER_NO_RANK, &out);
    assert_bytes(&out, expected, sizeof(expected));
    kvbm__payload_free(&out);
}

static void stored_with_parent_lora_and_rank_is_byte_exact(void **state)
{
    const uint64_t hashes[] = {UINT64_MAX};
    kvbm_event_record_t record = {.kind = KVBM_EVENT_STORED,
                                  .medium = KVBM_MEDIUM_DISK,
                                  .count = 1,
                                  .hashes = hashes,
                                  .parent_hash = 0x100000000ull,
                                  .has_parent = true,
                                  .block_size = 256,
                                  .lora_id = -1,
                                  .has_lora_id = true,
                                  .lora_name = "ad"};
    /* [-2.0, [["BlockStored", [2^64-1], 2^32, [], 256, -1, "DISK", "ad"]], 2] */
    const unsigned char expected[] = {
        0x93,                                                 /* batch with rank */
        0xcb, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* ts -2.0 */
        0x91, 0x98, 0xab, 'B',  'l',  'o',  'c',  'k',  'S',  't',  'o',  'r',
        'e',  'd',  0x91, 0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, /* uint64 */
        0xcf, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,                   /* parent 2^32 */
        0x90,                                                                   /* no tokens: [] */
        0xcd, 0x01, 0x00,                                                       /* block_size 256 */
        0xff,                                                                   /* lora_id -1 */
        0xa4, 'D',  'I',  'S',  'K',  0xa2, 'a',  'd', /* medium, lora_name */
        0x02,                                          /* rank 2 */
    };
    kvbm__payload_t out = {0};
    encode(&record, 1, -2.0, 2, &out);
    assert_bytes(&out, expected, sizeof(expected));
    kvbm__payload_free(&out);
}

static void removed_and_cleared_are_byte_exact(void **state)
{
    const uint64_t removed[] = {9, 128};
    kvbm_event_record_t records[] = {
        {.kind = KVBM_EVENT_REMOVED, .medium = KVBM_MEDIUM_CPU, .count = 2, .hashes = removed},
        {.kind = KVBM_EVENT_CLEARED},
    };
    /* [0.0, [["BlockRemoved", [9, 128], "CPU"], ["AllBlocksCleared"]], 0] */
    const unsigned char expected[] = {
        0x93, 0xcb, 0,   0,   0,    0,    0,   0,    0,   0,   0x92, 0x93, 0xac, 'B',  'l',
        'o',  'c',  'k', 'R', 'e',  'm',  'o', 'v',  'e', 'd', 0x92, 0x09, 0xcc, 0x80, /* 128 needs
                                                                                          uint8 */
        0xa3, 'C',  'P', 'U', 0x91, 0xb0, 'A', 'l',  'l', 'B', 'l',  'o',  'c',  'k',  's',
        'C',  'l',  'e', 'a', 'r',  'e',  'd', 0x00, /* rank 0 is sent: only "not set" is omitted */
    };
    kvbm__payload_t out = {0};
    encode(records, 2, 0.0, 0, &out);
    assert_bytes(&out, expected, sizeof(expected));
    kvbm__payload_free(&out);
}

static void records_without_hashes_are_not_events(void **state)
{
    const uint64_t one = 5;
    kvbm_event_record_t records[] = {
        {.kind = KVBM_EVENT_STORED, .medium = KVBM_MEDIUM_GPU, .count = 0},
        {.kind = KVBM_EVENT_REMOVED, .medium = KVBM_MEDIUM_GPU, .count = 1, .hashes = &one},
        {.kind = KVBM_EVENT_REMOVED, .medium = KVBM_MEDIUM_CPU, .count = 0},
    };
    kvbm__events_size_t size;
    assert_kvbm_ok(kvbm__events_check(records, 3, &size));
    assert_int_equal(size.n_events, 1);
    const unsigned char expected[] = {
        0x92, 0xcb, 0x40, 0x00, 0,    0,    0,    0,   0,   0, /* ts 2.0 */
        0x91, 0x93, 0xac, 'B',  'l',  'o',  'c',  'k', 'R', 'e', 'm',
        'o',  'v',  'e',  'd',  0x91, 0x05, 0xa3, 'G', 'P', 'U',
    };
    kvbm__payload_t out = {0};
    encode(records, 3, 2.0, KVBM_PUBLISHER_NO_RANK, &out);
    assert_bytes(&out, expected, sizeof(expected));
    kvbm__payload_free(&out);
}

static void long_runs_use_array16_and_payloads_append(void **state)
{
    uint64_t hashes[20];
    for (size_t i = 0; i < 20; i++)
        hashes[i] = i;
    kvbm_event_record_t record = {
        .kind = KVBM_EVENT_REMOVED, .medium = KVBM_MEDIUM_GPU, .count = 20, .hashes = hashes};
    kvbm__payload_t out = {0};
    encode(&record, 1, 0.0, KVBM_PUBLISHER_NO_RANK, &out);
    /* 0x92, ts (9), 0x91, 0x93, tag (13), then the hashes: array16 (0xdc 00 14). */
    assert_int_equal((unsigned char)out.data[25], 0xdc);
    assert_int_equal((unsigned char)out.data[26], 0x00);
    assert_int_equal((unsigned char)out.data[27], 20);
    for (size_t i = 0; i < 20; i++)
        assert_int_equal((unsigned char)out.data[28 + i], i);
    size_t first = out.size;
    encode(&record, 1, 0.0, KVBM_PUBLISHER_NO_RANK, &out);
    assert_int_equal(out.size, 2 * first);
    assert_memory_equal(out.data, out.data + first, first);
    kvbm__payload_free(&out);
}

static void every_medium_is_sent_as_its_name(void **state)
{
    const uint64_t one = 5;
    for (int m = KVBM_MEDIUM_GPU; m <= KVBM_MEDIUM_DISK; m++) {
        kvbm_event_record_t record = {
            .kind = KVBM_EVENT_REMOVED, .medium = (kvbm_medium_t)m, .count = 1, .hashes = &one};
        kvbm__payload_t out = {0};
        encode(&record, 1, 0.0, KVBM_PUBLISHER_NO_RANK, &out);
        /* A removal ends with its medium, a fixstr: 0xa0 | length, then the name. */
        const char *name = kvbm_medium_name((kvbm_medium_t)m);
        size_t len = strlen(name);
        assert_int_equal((unsigned char)out.data[out.size - len - 1], 0xa0 | len);
        assert_memory_equal(out.data + out.size - len, name, len);
        kvbm__payload_free(&out);
    }
}

static void malformed_records_are_refused(void **state)
{
    const uint64_t h = 1;
    kvbm_event_record_t bad_kind = {.kind = 7, .count = 1, .hashes = &h};
    kvbm_event_record_t bad_medium = {
        .kind = KVBM_EVENT_STORED, .medium = 9, .count = 1, .hashes = &h};
    kvbm_event_record_t no_hashes = {.kind = KVBM_EVENT_REMOVED, .count = 2};
    kvbm_event_record_t no_tokens = {
        .kind = KVBM_EVENT_STORED, .count = 1, .hashes = &h, .n_tokens = 4};
    kvbm_event_record_t clear_any_medium = {.kind = KVBM_EVENT_CLEARED, .medium = 9};
    kvbm__events_size_t size;
    assert_kvbm_status(kvbm__events_check(&bad_kind, 1, &size), KVBM_ERR_INVALID_ARG);
    assert_kvbm_status(kvbm__events_check(&bad_medium, 1, &size), KVBM_ERR_INVALID_ARG);
    assert_kvbm_status(kvbm__events_check(&no_hashes, 1, &size), KVBM_ERR_INVALID_ARG);
    assert_kvbm_status(kvbm__events_check(&no_tokens, 1, &size), KVBM_ERR_INVALID_ARG);
    assert_kvbm_status(kvbm__events_check(NULL, 1, &size), KVBM_ERR_INVALID_ARG);
    assert_kvbm_ok(kvbm__events_check(&clear_any_medium, 1, &size));
    assert_kvbm_ok(kvbm__events_check(NULL, 0, &size));
    assert_int_equal(size.n_events, 0);
    assert_string_equal(kvbm_medium_name(KVBM_MEDIUM_CPU), "CPU");
    assert_null(kvbm_medium_name((kvbm_medium_t)3));
}

/* ------------------------------------------------------------------ endpoints */

static void assert_for_rank(const char *endpoint, int32_t rank, const char *expected)
{
    char *out = NULL;
    assert_kvbm_ok(kvbm__endpoint_for_rank(endpoint, rank, &out));
    assert_string_equal(out, expected);
    free(out);
}

static void endpoints_follow_vllm_conventions(void **state)
{
    assert_true(kvbm__endpoint_binds("tcp://*:5557"));
    assert_true(kvbm__endpoint_binds("tcp://[::]:5557"));
    assert_true(kvbm__endpoint_binds("ipc:///tmp/kv"));
    assert_true(kvbm__endpoint_binds("inproc://kv"));
    assert_false(kvbm__endpoint_binds("tcp://router:5557"));
    assert_false(kvbm__endpoint_binds("tcp://10.0.0.1:5557"));

    assert_for_rank("tcp://*:5557", 0, "tcp://*:5557");
    assert_for_rank("tcp://*:5557", -1, "tcp://*:5557");
    assert_for_rank("tcp://*:5557", 2, "tcp://*:5559");
    assert_for_rank("tcp://router:5557", 1, "tcp://router:5558");
    assert_for_rank("tcp://[::1]:5557", 3, "tcp://[::1]:5560");
    assert_for_rank("tcp://*:*", 2, "tcp://*:*");
    assert_for_rank("inproc://kv", 3, "inproc://kv_dp3");
    assert_for_rank("ipc:///tmp/kv", 1, "ipc:///tmp/kv_dp1");

    char *out = NULL;
    assert_kvbm_status(kvbm__endpoint_for_rank("tcp://h:65535", 1, &out), KVBM_ERR_INVALID_ARG);
    assert_kvbm_status(kvbm__endpoint_for_rank("tcp://h:port", 1, &out), KVBM_ERR_INVALID_ARG);
    assert_kvbm_status(kvbm__endpoint_for_rank("tcp://h:-5", 1, &out), KVBM_ERR_INVALID_ARG);
    assert_kvbm_status(kvbm__endpoint_for_rank("tcp://h", 1, &out), KVBM_ERR_INVALID_ARG);
    assert_kvbm_status(kvbm__endpoint_for_rank("udp://h:1", 1, &out), KVBM_ERR_INVALID_ARG);
    assert_null(out);
}

/* ------------------------------------------------------------------ publisher */

static kvbm_publisher_t *publisher_new(uint32_t queue_depth, uint32_t buffer_steps, int32_t rank)
{
    kvbm_publisher_config_t config = KVBM_PUBLISHER_CONFIG_INIT;
    config.endpoint = "tcp://127.0.0.1:*";
    config.replay_endpoint = "tcp://127.0.0.1:*";
    config.topic = "kv";
    config.queue_depth = queue_depth;
    config.buffer_steps = buffer_steps;
    config.data_parallel_rank = rank;
    config.linger_ms = 0;
    kvbm_publisher_t *p = NULL;
    assert_kvbm_ok(kvbm_publisher_create(&config, &p));
    return p;
}

static kvbm_status_t publish_removed(kvbm_publisher_t *p, uint64_t hash)
{
    kvbm_event_record_t r = {
        .kind = KVBM_EVENT_REMOVED, .medium = KVBM_MEDIUM_GPU, .count = 1, .hashes = &hash};
    return kvbm_publisher_publish(p, &r, 1);
}

static uint64_t be64(const unsigned char *bytes)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | bytes[i];
    return v;
}

/* The hash (< 128, one fixint byte) of a batch holding one removal: the
 * byte before its medium, "GPU" (the rank, if any, follows the medium). */
static uint64_t removed_hash(const unsigned char *payload, size_t size)
{
    static const unsigned char medium[] = {0xa3, 'G', 'P', 'U'};
    for (size_t i = size - sizeof(medium); i > 0; i--)
        if (memcmp(payload + i, medium, sizeof(medium)) == 0)
            return payload[i - 1];
    fail_msg("no GPU removal in the payload");
    return 0;
}

typedef struct replayed {
    uint64_t seqs[64];
    uint64_t hashes[64];
    size_t count;
} replayed_t;

/* Asks the replay socket for every batch from @p start, as a DEALER. */
static void replay_from(void *ctx, const char *endpoint, uint64_t start, replayed_t *out)
{
    void *dealer = zmq_socket(ctx, ZMQ_DEALER);
    assert_non_null(dealer);
    int timeout = 10000;
    assert_int_equal(zmq_setsockopt(dealer, ZMQ_RCVTIMEO, &timeout, sizeof(timeout)), 0);
    assert_int_equal(zmq_connect(dealer, endpoint), 0);
    unsigned char start_bytes[8];
    for (int i = 7; i >= 0; i--, start >>= 8)
        start_bytes[i] = (unsigned char)(start & 0xff);
    assert_true(zmq_send(dealer, "", 0, ZMQ_SNDMORE) == 0);
    assert_true(zmq_send(dealer, start_bytes, 8, 0) == 8);
    out->count = 0;
    for (;;) {
        unsigned char empty[4], seq[8], payload[256];
        assert_int_equal(zmq_recv(dealer, empty, sizeof(empty), 0), 0);
        assert_int_equal(zmq_recv(dealer, seq, sizeof(seq), 0), 8);
        int size = zmq_recv(dealer, payload, sizeof(payload), 0);
        assert_true(size >= 0);
        if (be64(seq) == UINT64_MAX) { /* -1: the end marker, with an empty payload */
            assert_int_equal(size, 0);
            break;
        }
        assert_true(out->count < 64);
        out->seqs[out->count] = be64(seq);
        out->hashes[out->count] = removed_hash(payload, (size_t)size);
        out->count++;
    }
    zmq_close(dealer);
}

static void full_queue_drops_and_skips_the_sequence_number(void **state)
{
    kvbm_publisher_t *p = publisher_new(4, 100, KVBM_PUBLISHER_NO_RANK);
    kvbm__publisher_set_paused(p, true);
    for (uint64_t i = 0; i < 4; i++)
        assert_kvbm_ok(publish_removed(p, 10 + i));
    assert_kvbm_status(publish_removed(p, 14), KVBM_ERR_BUSY); /* seq 4 dropped */
    assert_kvbm_status(publish_removed(p, 15), KVBM_ERR_BUSY); /* seq 5 dropped */
    kvbm_publisher_metrics_t m;
    kvbm_publisher_metrics(p, &m);
    assert_int_equal(m.batches_dropped, 2);
    assert_int_equal(m.events_dropped, 2);
    assert_int_equal(m.queued_batches, 4);
    assert_int_equal(m.next_seq, 6);
    assert_kvbm_status(kvbm_publisher_flush(p, 50), KVBM_ERR_TIMEOUT); /* paused */
    kvbm__publisher_set_paused(p, false);
    assert_kvbm_ok(kvbm_publisher_flush(p, 10000));
    assert_kvbm_ok(publish_removed(p, 16)); /* seq 6: the subscribers see 4 and 5 missing */
    assert_kvbm_ok(kvbm_publisher_flush(p, 10000));
    kvbm_publisher_metrics(p, &m);
    assert_int_equal(m.queued_batches, 0);
    assert_int_equal(m.next_seq, 7);

    /* The replay history shows the gap where the dropped batches were. */
    void *ctx = zmq_ctx_new();
    replayed_t got;
    replay_from(ctx, kvbm_publisher_replay_endpoint(p), 0, &got);
    zmq_ctx_term(ctx);
    kvbm_publisher_metrics(p, &m);
    assert_int_equal(m.batches_published + m.batches_dropped, 7);
    assert_int_equal(got.count, m.batches_published);
    const uint64_t expected_seqs[] = {0, 1, 2, 3, 6};
    const uint64_t expected_hashes[] = {10, 11, 12, 13, 16};
    assert_int_equal(got.count, 5);
    for (size_t i = 0; i < 5; i++) {
        assert_int_equal(got.seqs[i], expected_seqs[i]);
        assert_int_equal(got.hashes[i], expected_hashes[i]);
    }
    kvbm_publisher_destroy(p);
}

/* A drop asks the owner for a resync (replay cannot give that batch back);
 * the request stands, through batches without a clear and a clear that is
 * itself dropped, until a batch holding AllBlocksCleared is queued. */
static void a_drop_asks_for_a_resync_until_a_clear_is_queued(void **state)
{
    kvbm_publisher_t *p = publisher_new(2, 100, KVBM_PUBLISHER_NO_RANK);
    const kvbm_event_record_t cleared = {.kind = KVBM_EVENT_CLEARED};
    assert_false(kvbm_publisher_resync_needed(p));
    assert_false(kvbm_publisher_resync_needed(NULL));
    kvbm__publisher_set_paused(p, true);
    assert_kvbm_ok(publish_removed(p, 1));
    assert_kvbm_ok(publish_removed(p, 2));
    assert_false(kvbm_publisher_resync_needed(p));
    assert_kvbm_status(publish_removed(p, 3), KVBM_ERR_BUSY);
    assert_true(kvbm_publisher_resync_needed(p));
    assert_kvbm_status(kvbm_publisher_publish(p, &cleared, 1), KVBM_ERR_BUSY); /* dropped too */
    assert_true(kvbm_publisher_resync_needed(p));
    kvbm__publisher_set_paused(p, false);
    assert_kvbm_ok(kvbm_publisher_flush(p, 10000));
    assert_kvbm_ok(publish_removed(p, 4));
    assert_true(kvbm_publisher_resync_needed(p));
    const kvbm_event_record_t clear_then_store[] = {
        cleared,
        {.kind = KVBM_EVENT_STORED,
         .medium = KVBM_MEDIUM_CPU,
         .count = 1,
         .hashes = &(uint64_t){5}},
    };
    assert_kvbm_ok(kvbm_publisher_publish(p, clear_then_store, 2));
    assert_false(kvbm_publisher_resync_needed(p));
    kvbm_publisher_metrics_t m;
    kvbm_publisher_metrics(p, &m);
    assert_int_equal(m.batches_dropped, 2);
    assert_int_equal(m.resyncs, 1);
    kvbm_publisher_destroy(p);
}

/* A SUB socket receives from its first batch on (it may miss the first few
 * while its subscription travels); the rest come from the replay socket. */
static void subscriber_gets_three_frames_and_replay_fills_the_start(void **state)
{
    kvbm_publisher_t *p = publisher_new(64, 1000, 5);
    void *ctx = zmq_ctx_new();
    void *sub = zmq_socket(ctx, ZMQ_SUB);
    assert_int_equal(zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "kv", 2), 0);
    assert_int_equal(zmq_connect(sub, kvbm_publisher_endpoint(p)), 0);

    /* Publish until the subscriber sees a batch; it knows the first number
     * it got, so everything before comes from replay. */
    uint64_t hash = 0, first_seq = 0;
    unsigned char topic[8], seq[8], payload[256];
    for (;;) {
        assert_true(hash < 5000);
        assert_kvbm_ok(publish_removed(p, hash++ % 100));
        zmq_pollitem_t item = {.socket = sub, .events = ZMQ_POLLIN};
        if (zmq_poll(&item, 1, 20) == 1)
            break;
    }
    assert_int_equal(zmq_recv(sub, topic, sizeof(topic), 0), 2);
    assert_memory_equal(topic, "kv", 2);
    assert_int_equal(zmq_recv(sub, seq, sizeof(seq), 0), 8);
    first_seq = be64(seq);
    int size = zmq_recv(sub, payload, sizeof(payload), 0);
    assert_true(size > 0);
    int more = 0;
    size_t len = sizeof(more);
    zmq_getsockopt(sub, ZMQ_RCVMORE, &more, &len);
    assert_false(more);                     /* exactly three frames */
    assert_int_equal(payload[0], 0x93);     /* rank set: three fields */
    assert_int_equal(payload[size - 1], 5); /* the rank */
    assert_int_equal(removed_hash(payload, (size_t)size), first_seq % 100);

    replayed_t got;
    replay_from(ctx, kvbm_publisher_replay_endpoint(p), 0, &got);
    assert_true(got.count >= first_seq + 1);
    for (size_t i = 0; i < got.count; i++) {
        assert_int_equal(got.seqs[i], i); /* contiguous from 0 */
        assert_int_equal(got.hashes[i], i % 100);
    }
    kvbm_publisher_metrics_t m;
    kvbm_publisher_metrics(p, &m);
    assert_int_equal(m.replay_requests, 1);
    assert_int_equal(m.replay_batches, got.count);
    zmq_close(sub);
    zmq_ctx_term(ctx);
    kvbm_publisher_destroy(p);
}

static void replay_keeps_only_buffer_steps_and_ignores_malformed_requests(void **state)
{
    kvbm_publisher_t *p = publisher_new(64, 3, KVBM_PUBLISHER_NO_RANK);
    for (uint64_t i = 0; i < 10; i++)
        assert_kvbm_ok(publish_removed(p, i));
    assert_kvbm_ok(kvbm_publisher_flush(p, 10000));
    void *ctx = zmq_ctx_new();

    /* Malformed: a 4-byte start and a missing delimiter. Ignored, counted. */
    void *dealer = zmq_socket(ctx, ZMQ_DEALER);
    assert_int_equal(zmq_connect(dealer, kvbm_publisher_replay_endpoint(p)), 0);
    assert_true(zmq_send(dealer, "", 0, ZMQ_SNDMORE) == 0);
    assert_true(zmq_send(dealer, "abcd", 4, 0) == 4);
    assert_true(zmq_send(dealer, "abcdefgh", 8, 0) == 8);

    replayed_t got;
    replay_from(ctx, kvbm_publisher_replay_endpoint(p), 0, &got);
    assert_int_equal(got.count, 3); /* only the newest three are kept */
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(got.seqs[i], 7 + i);
    replay_from(ctx, kvbm_publisher_replay_endpoint(p), 9, &got);
    assert_int_equal(got.count, 1);
    replay_from(ctx, kvbm_publisher_replay_endpoint(p), 100, &got);
    assert_int_equal(got.count, 0); /* only the end marker */

    kvbm_publisher_metrics_t m;
    kvbm_publisher_metrics(p, &m);
    assert_int_equal(m.replay_requests, 3);
    /* The malformed requests were sent before the valid ones on another
     * connection, so they may or may not have been read yet; those read
     * were counted and not answered. */
    assert_true(m.replay_invalid <= 2);
    zmq_close(dealer);
    zmq_ctx_term(ctx);
    kvbm_publisher_destroy(p);
}

static void create_refuses_bad_config_and_busy_ports(void **state)
{
    kvbm_publisher_t *p = NULL;
    kvbm_publisher_config_t config = KVBM_PUBLISHER_CONFIG_INIT;
    config.endpoint = NULL;
    assert_kvbm_status(kvbm_publisher_create(&config, &p), KVBM_ERR_INVALID_ARG);
    config = (kvbm_publisher_config_t)KVBM_PUBLISHER_CONFIG_INIT;
    config.queue_depth = 0;
    assert_kvbm_status(kvbm_publisher_create(&config, &p), KVBM_ERR_INVALID_ARG);
    config = (kvbm_publisher_config_t)KVBM_PUBLISHER_CONFIG_INIT;
    config.version = 99;
    assert_kvbm_status(kvbm_publisher_create(&config, &p), KVBM_ERR_VERSION);
    config = (kvbm_publisher_config_t)KVBM_PUBLISHER_CONFIG_INIT;
    config.endpoint = "bogus://x";
    assert_kvbm_status(kvbm_publisher_create(&config, &p), KVBM_ERR_INVALID_ARG);
    config = (kvbm_publisher_config_t)KVBM_PUBLISHER_CONFIG_INIT;
    config.endpoint = "tcp://*:5557";
    config.data_parallel_rank = 1;
    config.offset_ports_by_rank = true;
    config.replay_endpoint = "tcp://*:x";
    assert_kvbm_status(kvbm_publisher_create(&config, &p), KVBM_ERR_INVALID_ARG);
    assert_null(p);

    kvbm_publisher_t *first = publisher_new(4, 4, KVBM_PUBLISHER_NO_RANK);
    config = (kvbm_publisher_config_t)KVBM_PUBLISHER_CONFIG_INIT;
    config.endpoint = "tcp://127.0.0.1:*";
    config.replay_endpoint = kvbm_publisher_endpoint(first); /* bound by the first */
    assert_kvbm_status(kvbm_publisher_create(&config, &p), KVBM_ERR_IO);
    assert_null(p);
    kvbm_publisher_destroy(first);
    kvbm_publisher_destroy(NULL);
}

static void publish_refuses_bad_records_without_using_a_number(void **state)
{
    kvbm_publisher_t *p = publisher_new(4, 4, KVBM_PUBLISHER_NO_RANK);
    kvbm_event_record_t bad = {.kind = KVBM_EVENT_REMOVED, .count = 1};
    kvbm_event_record_t empty = {.kind = KVBM_EVENT_STORED, .count = 0};
    assert_kvbm_status(kvbm_publisher_publish(p, &bad, 1), KVBM_ERR_INVALID_ARG);
    assert_kvbm_status(kvbm_publisher_publish(NULL, &empty, 1), KVBM_ERR_INVALID_ARG);
    assert_kvbm_ok(kvbm_publisher_publish(p, &empty, 1)); /* nothing to send */
    assert_kvbm_ok(kvbm_publisher_publish(p, NULL, 0));
    kvbm_publisher_metrics_t m;
    kvbm_publisher_metrics(p, &m);
    assert_int_equal(m.next_seq, 0);
    assert_int_equal(m.batches_dropped, 0);
    kvbm_publisher_destroy(p);
}

static void metrics_export_as_prometheus_text(void **state)
{
    kvbm_publisher_t *p = publisher_new(4, 4, KVBM_PUBLISHER_NO_RANK);
    assert_kvbm_ok(publish_removed(p, 1));
    assert_kvbm_ok(kvbm_publisher_flush(p, 10000));
    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&text, &size);
    assert_non_null(out);
    assert_kvbm_ok(kvbm_publisher_metrics_prometheus(p, out));
    fclose(out);
    assert_non_null(strstr(text, "# TYPE kvbm_events_batches_published_total counter\n"));
    assert_non_null(strstr(text, "kvbm_events_batches_published_total 1\n"));
    assert_non_null(strstr(text, "kvbm_events_events_published_total 1\n"));
    assert_non_null(strstr(text, "kvbm_events_next_seq 1\n"));
    free(text);
    kvbm_publisher_destroy(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(stored_run_without_rank_is_byte_exact),
        cmocka_unit_test(stored_with_parent_lora_and_rank_is_byte_exact),
        cmocka_unit_test(removed_and_cleared_are_byte_exact),
        cmocka_unit_test(records_without_hashes_are_not_events),
        cmocka_unit_test(long_runs_use_array16_and_payloads_append),
        cmocka_unit_test(every_medium_is_sent_as_its_name),
        cmocka_unit_test(malformed_records_are_refused),
        cmocka_unit_test(endpoints_follow_vllm_conventions),
        cmocka_unit_test(full_queue_drops_and_skips_the_sequence_number),
        cmocka_unit_test(a_drop_asks_for_a_resync_until_a_clear_is_queued),
        cmocka_unit_test(subscriber_gets_three_frames_and_replay_fills_the_start),
        cmocka_unit_test(replay_keeps_only_buffer_steps_and_ignores_malformed_requests),
        cmocka_unit_test(create_refuses_bad_config_and_busy_ports),
        cmocka_unit_test(publish_refuses_bad_records_without_using_a_number),
        cmocka_unit_test(metrics_export_as_prometheus_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
