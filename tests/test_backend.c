/*
 * Backend copies and fences, run against every backend available here: the
 * CPU backend with worker-thread streams, the CPU backend in synchronous
 * mode, and CUDA when a device is present (skipped with a message otherwise).
 * Tests that need to stall a stream use kvbm_stream_hold(), which only the
 * asynchronous CPU backend supports; they skip elsewhere.
 *
 * Built a second time as test_backend_standin (tests/cuda, KVBM_TEST_STANDIN):
 * one group, "cuda-standin", runs the CUDA backend's code over the CUDA
 * runtime stand-in, whose streams the stand-in itself can hold. That is a
 * test of kvbm's host logic, not of real CUDA.
 */
#ifndef _GNU_SOURCE
#define _POSIX_C_SOURCE 200809L /* setenv */
#endif
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/alloc.h"
#include "kvbm/backend.h"
#include "kvbm_test.h"
#if defined(KVBM_TEST_STANDIN)
#include "standin.h"
#endif

static kvbm_backend_config_t g_cfg; /* backend of the running group */
static const char *g_group;
static bool g_available;

static kvbm_backend_t *open_backend(void)
{
    if (!g_available) {
        printf("[  SKIP    ] %s: backend not available here\n", g_group);
        skip();
    }
    kvbm_backend_t *b = NULL;
    assert_int_equal(kvbm_backend_create(&g_cfg, &b), KVBM_OK);
    return b;
}

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static kvbm_layout_t *make_layout(int arrangement, uint32_t blocks)
{
    kvbm_layout_config_t c = KVBM_LAYOUT_CONFIG_INIT;
    c.num_blocks = blocks;
    c.num_layers = 4;
    c.outer_dim = 2;
    c.tokens_per_block = 4;
    c.inner_dim = 8;
    c.elem_size = 2;
    c.alignment = 128;
    c.kind = arrangement == 0 ? KVBM_LAYOUT_FULLY_CONTIGUOUS : KVBM_LAYOUT_LAYER_SEPARATE;
    c.outer_contiguous = arrangement != 2;
    kvbm_layout_t *l = NULL;
    assert_int_equal(kvbm_layout_create(&c, &l), KVBM_OK);
    return l;
}

/* n distinct ids out of 0..blocks-1 in random order. */
static void random_ids(uint64_t *rng, uint32_t blocks, uint32_t *ids, size_t n)
{
    uint32_t *all = malloc(blocks * sizeof(uint32_t));
    assert_non_null(all);
    for (uint32_t i = 0; i < blocks; i++)
        all[i] = i;
    for (uint32_t i = blocks - 1; i > 0; i--) {
        uint32_t j = (uint32_t)(rng_next(rng) % (i + 1));
        uint32_t t = all[i];
        all[i] = all[j];
        all[j] = t;
    }
    memcpy(ids, all, n * sizeof(uint32_t));
    free(all);
}

static void fill_random(void *p, size_t bytes, uint64_t seed)
{
    unsigned char *c = p;
    uint64_t s = seed | 1;
    for (size_t i = 0; i < bytes; i++)
        c[i] = (unsigned char)rng_next(&s);
}

static void assert_chunks_equal(const kvbm_layout_t *la, const void *a, uint32_t ida,
                                const kvbm_layout_t *lb, const void *b, uint32_t idb)
{
    const kvbm_layout_config_t *c = kvbm_layout_config(la);
    size_t chunk = kvbm_layout_chunk_bytes(la);
    for (uint32_t l = 0; l < c->num_layers; l++) {
        for (uint32_t o = 0; o < c->outer_dim; o++) {
            size_t oa, ob;
            assert_int_equal(kvbm_layout_offset(la, ida, l, o, &oa), KVBM_OK);
            assert_int_equal(kvbm_layout_offset(lb, idb, l, o, &ob), KVBM_OK);
            assert_memory_equal((const char *)a + oa, (const char *)b + ob, chunk);
        }
    }
}

/* host A -> device (dst ids) -> host B (other ids); checks every chunk and
 * that blocks not named keep their old bytes. */
static void roundtrip(kvbm_backend_t *b, const kvbm_layout_t *hl, const kvbm_layout_t *dl,
                      uint64_t seed, size_t n)
{
    uint32_t hblocks = kvbm_layout_config(hl)->num_blocks;
    uint32_t dblocks = kvbm_layout_config(dl)->num_blocks;
    kvbm_pool_t *ha = NULL, *hb = NULL, *dev = NULL;
    assert_int_equal(kvbm_pool_create(b, KVBM_MEM_HOST, kvbm_layout_total_bytes(hl), &ha), KVBM_OK);
    assert_int_equal(kvbm_pool_create(b, KVBM_MEM_HOST, kvbm_layout_total_bytes(hl), &hb), KVBM_OK);
    assert_int_equal(kvbm_pool_create(b, KVBM_MEM_DEVICE, kvbm_layout_total_bytes(dl), &dev),
                     KVBM_OK);
    fill_random(kvbm_pool_ptr(ha), kvbm_pool_bytes(ha), seed);
    memset(kvbm_pool_ptr(hb), 0xEE, kvbm_pool_bytes(hb));
    kvbm_stream_t *s = NULL;
    kvbm_fence_t *f = NULL;
    assert_int_equal(kvbm_stream_create(b, &s), KVBM_OK);
    assert_int_equal(kvbm_fence_create(b, &f), KVBM_OK);

    uint64_t rng = seed * 7 + 3;
    uint32_t *src = malloc(n * sizeof(uint32_t)), *mid = malloc(n * sizeof(uint32_t)),
             *dst = malloc(n * sizeof(uint32_t));
    assert_true(src && mid && dst);
    random_ids(&rng, hblocks, src, n);
    random_ids(&rng, dblocks, mid, n);
    random_ids(&rng, hblocks, dst, n);
    if (seed % 2 == 0) {
        /* Consecutive runs on every side, so adjacent regions get merged. */
        for (size_t i = 0; i < n; i++) {
            src[i] = (uint32_t)i;
            mid[i] = (uint32_t)(dblocks - n + i);
            dst[i] = (uint32_t)(hblocks - n + i);
        }
    }
    assert_int_equal(
        kvbm_backend_copy_blocks_between(b, s, hl, ha, src, dl, dev, mid, n, KVBM_COPY_H2D, NULL),
        KVBM_OK);
    assert_int_equal(
        kvbm_backend_copy_blocks_between(b, s, dl, dev, mid, hl, hb, dst, n, KVBM_COPY_D2H, f),
        KVBM_OK);
    assert_int_equal(kvbm_fence_wait(f), KVBM_OK);
    assert_int_equal(kvbm_fence_query(f), KVBM_OK);

    char *written = calloc(hblocks, 1);
    assert_non_null(written);
    for (size_t i = 0; i < n; i++) {
        assert_chunks_equal(hl, kvbm_pool_ptr(ha), src[i], hl, kvbm_pool_ptr(hb), dst[i]);
        written[dst[i]] = 1;
    }
    const kvbm_layout_config_t *hc = kvbm_layout_config(hl);
    size_t chunk = kvbm_layout_chunk_bytes(hl);
    char *ee = malloc(chunk);
    assert_non_null(ee);
    memset(ee, 0xEE, chunk);
    for (uint32_t id = 0; id < hblocks; id++) {
        if (written[id])
            continue;
        for (uint32_t l = 0; l < hc->num_layers; l++)
            for (uint32_t o = 0; o < hc->outer_dim; o++) {
                size_t off;
                assert_int_equal(kvbm_layout_offset(hl, id, l, o, &off), KVBM_OK);
                assert_memory_equal((char *)kvbm_pool_ptr(hb) + off, ee, chunk);
            }
    }
    free(ee);
    free(written);
    free(src);
    free(mid);
    free(dst);
    kvbm_fence_destroy(f);
    kvbm_stream_destroy(s);
    kvbm_pool_destroy(dev);
    kvbm_pool_destroy(hb);
    kvbm_pool_destroy(ha);
}

static void test_copy_random_blocks_same_layout(void **state)
{
    kvbm_backend_t *b = open_backend();
    for (int arr = 0; arr < 3; arr++) {
        kvbm_layout_t *l = make_layout(arr, 64);
        roundtrip(b, l, l, 11 + (uint64_t)arr, 1);
        roundtrip(b, l, l, 21 + (uint64_t)arr, 17);
        roundtrip(b, l, l, 31 + (uint64_t)arr, 64);
        kvbm_layout_destroy(l);
    }
    kvbm_backend_destroy(b);
}

static void test_copy_between_arrangements(void **state)
{
    kvbm_backend_t *b = open_backend();
    for (int ha = 0; ha < 3; ha++) {
        for (int da = 0; da < 3; da++) {
            kvbm_layout_t *hl = make_layout(ha, 48);
            kvbm_layout_t *dl = make_layout(da, 20);
            roundtrip(b, hl, dl, 100 + (uint64_t)(ha * 3 + da), 20);
            kvbm_layout_destroy(dl);
            kvbm_layout_destroy(hl);
        }
    }
    kvbm_backend_destroy(b);
}

static void test_copy_blocks_rejects_bad_ids_and_pools(void **state)
{
    kvbm_backend_t *b = open_backend();
    kvbm_layout_t *l = make_layout(1, 8);
    kvbm_pool_t *h = NULL, *d = NULL, *small = NULL;
    size_t total = kvbm_layout_total_bytes(l);
    assert_int_equal(kvbm_pool_create(b, KVBM_MEM_HOST, total, &h), KVBM_OK);
    assert_int_equal(kvbm_pool_create(b, KVBM_MEM_DEVICE, total, &d), KVBM_OK);
    assert_int_equal(kvbm_pool_create(b, KVBM_MEM_DEVICE, total - 1, &small), KVBM_OK);
    kvbm_stream_t *s = NULL;
    assert_int_equal(kvbm_stream_create(b, &s), KVBM_OK);
    uint32_t ok[2] = {0, 7}, bad[2] = {0, 8};
    assert_int_equal(kvbm_backend_copy_blocks(b, s, l, h, bad, d, ok, 2, KVBM_COPY_H2D, NULL),
                     KVBM_ERR_OUT_OF_RANGE);
    assert_int_equal(kvbm_backend_copy_blocks(b, s, l, h, ok, d, bad, 2, KVBM_COPY_H2D, NULL),
                     KVBM_ERR_OUT_OF_RANGE);
    /* direction must match the pools */
    assert_int_equal(kvbm_backend_copy_blocks(b, s, l, h, ok, d, ok, 2, KVBM_COPY_D2H, NULL),
                     KVBM_ERR_INVALID_ARG);
    assert_int_equal(kvbm_backend_copy_blocks(b, s, l, h, ok, d, ok, 2, (kvbm_copy_dir_t)9, NULL),
                     KVBM_ERR_INVALID_ARG);
    assert_int_equal(kvbm_backend_copy_blocks(b, s, l, h, ok, small, ok, 2, KVBM_COPY_H2D, NULL),
                     KVBM_ERR_INVALID_ARG);
    assert_int_equal(kvbm_backend_copy_blocks(b, s, l, h, NULL, d, ok, 2, KVBM_COPY_H2D, NULL),
                     KVBM_ERR_INVALID_ARG);
    kvbm_copy_t nul = {NULL, kvbm_pool_ptr(h), 8};
    assert_int_equal(kvbm_backend_copy(b, s, &nul, 1, KVBM_COPY_H2H, NULL), KVBM_ERR_INVALID_ARG);
    assert_int_equal(kvbm_pool_create(b, KVBM_MEM_HOST, 0, &small), KVBM_ERR_INVALID_ARG);
    kvbm_stream_destroy(s);
    kvbm_pool_destroy(small);
    kvbm_pool_destroy(d);
    kvbm_pool_destroy(h);
    kvbm_layout_destroy(l);
    kvbm_backend_destroy(b);
}

static void test_unrecorded_fence_is_complete(void **state)
{
    kvbm_backend_t *b = open_backend();
    kvbm_fence_t *f = NULL;
    assert_int_equal(kvbm_fence_create(b, &f), KVBM_OK);
    assert_int_equal(kvbm_fence_query(f), KVBM_OK);
    assert_int_equal(kvbm_fence_wait(f), KVBM_OK);
    kvbm_fence_destroy(f);
    kvbm_fence_destroy(NULL);
    kvbm_stream_destroy(NULL);
    kvbm_pool_destroy(NULL);
    kvbm_backend_destroy(b);
}

/* ---- tests that stall a stream (asynchronous CPU backend only) ---- */

typedef struct waiter {
    kvbm_fence_t *fence;
    kvbm_status_t status;
    int *done;
    pthread_mutex_t *mu;
} waiter_t;

static void *waiter_main(void *arg)
{
    waiter_t *w = arg;
    w->status = kvbm_fence_wait(w->fence);
    pthread_mutex_lock(w->mu);
    (*w->done)++;
    pthread_mutex_unlock(w->mu);
    return NULL;
}

/* Holds or releases a stream: kvbm_stream_hold, or on the stand-in its own
 * hold of the native stream. */
static kvbm_status_t hold_stream(kvbm_stream_t *s, bool hold)
{
#if defined(KVBM_TEST_STANDIN)
    standin_stream_hold((cudaStream_t)kvbm_stream_native(s), hold);
    return KVBM_OK;
#else
    return kvbm_stream_hold(s, hold);
#endif
}

static kvbm_stream_t *held_stream_or_skip(kvbm_backend_t *b)
{
    kvbm_stream_t *s = NULL;
    assert_int_equal(kvbm_stream_create(b, &s), KVBM_OK);
    kvbm_status_t st = hold_stream(s, true);
    if (st == KVBM_ERR_UNSUPPORTED) {
        kvbm_stream_destroy(s);
        kvbm_backend_destroy(b);
        printf("[  SKIP    ] %s: streams cannot be held on this backend\n", g_group);
        skip();
    }
    assert_int_equal(st, KVBM_OK);
    return s;
}

/* The bug this pins: reading a copy's destination without waiting on its
 * fence. With the stream held the copy cannot have run, so the read sees the
 * old bytes; after the wait it sees the new ones. */
static void test_reading_before_fence_sees_stale_data(void **state)
{
    kvbm_backend_t *b = open_backend();
    kvbm_stream_t *s = held_stream_or_skip(b);
    size_t bytes = 1 << 20;
    kvbm_pool_t *src = NULL, *dst = NULL;
    assert_int_equal(kvbm_pool_create(b, KVBM_MEM_HOST, bytes, &src), KVBM_OK);
    assert_int_equal(kvbm_pool_create(b, KVBM_MEM_DEVICE, bytes, &dst), KVBM_OK);
    memset(kvbm_pool_ptr(src), 0x5A, bytes);
    memset(kvbm_pool_ptr(dst), 0x00, bytes);
    kvbm_fence_t *f = NULL;
    assert_int_equal(kvbm_fence_create(b, &f), KVBM_OK);
    kvbm_copy_t c = {kvbm_pool_ptr(src), kvbm_pool_ptr(dst), bytes};
    assert_int_equal(kvbm_backend_copy(b, s, &c, 1, KVBM_COPY_H2D, f), KVBM_OK);

    assert_int_equal(kvbm_fence_query(f), KVBM_ERR_BUSY);
    const unsigned char *d = kvbm_pool_ptr(dst);
    assert_int_equal(d[0], 0x00);
    assert_int_equal(d[bytes - 1], 0x00);

    enum { N_WAITERS = 6 };
    pthread_t th[N_WAITERS];
    waiter_t w[N_WAITERS];
    int done = 0;
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    for (int i = 0; i < N_WAITERS; i++) {
        w[i] = (waiter_t){f, KVBM_ERR_INTERNAL, &done, &mu};
        assert_int_equal(pthread_create(&th[i], NULL, waiter_main, &w[i]), 0);
    }
    /* Nobody can have finished: the fence cannot complete while held. */
    pthread_mutex_lock(&mu);
    assert_int_equal(done, 0);
    pthread_mutex_unlock(&mu);
    assert_int_equal(kvbm_fence_query(f), KVBM_ERR_BUSY);

    assert_int_equal(hold_stream(s, false), KVBM_OK);
    for (int i = 0; i < N_WAITERS; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(w[i].status, KVBM_OK);
    }
    assert_int_equal(done, N_WAITERS);
    assert_int_equal(kvbm_fence_query(f), KVBM_OK);
    assert_int_equal(d[0], 0x5A);
    assert_int_equal(d[bytes - 1], 0x5A);
    kvbm_fence_destroy(f);
    kvbm_stream_destroy(s);
    kvbm_pool_destroy(dst);
    kvbm_pool_destroy(src);
    kvbm_backend_destroy(b);
}

/* Engine-stream ordering: stream B copies Y->Z only after stream A's copy
 * X->Y, because B waits on A's fence. Without the wait B would read old Y. */
static void test_stream_waits_on_other_streams_fence(void **state)
{
    kvbm_backend_t *b = open_backend();
    kvbm_stream_t *a = held_stream_or_skip(b);
    kvbm_stream_t *sb = NULL;
    assert_int_equal(kvbm_stream_create(b, &sb), KVBM_OK);
    size_t bytes = 64 * 1024;
    kvbm_pool_t *x = NULL, *y = NULL, *z = NULL;
    assert_int_equal(kvbm_pool_create(b, KVBM_MEM_HOST, bytes, &x), KVBM_OK);
    assert_int_equal(kvbm_pool_create(b, KVBM_MEM_DEVICE, bytes, &y), KVBM_OK);
    assert_int_equal(kvbm_pool_create(b, KVBM_MEM_HOST, bytes, &z), KVBM_OK);
    memset(kvbm_pool_ptr(x), 1, bytes);
    memset(kvbm_pool_ptr(y), 2, bytes);
    memset(kvbm_pool_ptr(z), 3, bytes);
    kvbm_fence_t *fa = NULL, *fb = NULL;
    assert_int_equal(kvbm_fence_create(b, &fa), KVBM_OK);
    assert_int_equal(kvbm_fence_create(b, &fb), KVBM_OK);
    kvbm_copy_t c1 = {kvbm_pool_ptr(x), kvbm_pool_ptr(y), bytes};
    kvbm_copy_t c2 = {kvbm_pool_ptr(y), kvbm_pool_ptr(z), bytes};
    assert_int_equal(kvbm_backend_copy(b, a, &c1, 1, KVBM_COPY_H2D, fa), KVBM_OK);
    assert_int_equal(kvbm_stream_wait_fence(sb, fa), KVBM_OK);
    assert_int_equal(kvbm_backend_copy(b, sb, &c2, 1, KVBM_COPY_D2H, fb), KVBM_OK);
    assert_int_equal(kvbm_fence_query(fb), KVBM_ERR_BUSY);
    assert_int_equal(((unsigned char *)kvbm_pool_ptr(z))[0], 3);
    assert_int_equal(hold_stream(a, false), KVBM_OK);
    assert_int_equal(kvbm_fence_wait(fb), KVBM_OK);
    assert_int_equal(kvbm_fence_query(fa), KVBM_OK);
    unsigned char *zp = kvbm_pool_ptr(z);
    assert_int_equal(zp[0], 1);
    assert_int_equal(zp[bytes - 1], 1);
    kvbm_fence_destroy(fb);
    kvbm_fence_destroy(fa);
    kvbm_stream_destroy(sb);
    kvbm_stream_destroy(a);
    kvbm_pool_destroy(z);
    kvbm_pool_destroy(y);
    kvbm_pool_destroy(x);
    kvbm_backend_destroy(b);
}

/* ---- fault injection ---- */

static void test_nth_copy_failure_arrives_through_its_fence(void **state)
{
    kvbm_backend_t *b = open_backend();
    size_t bytes = 4096;
    kvbm_pool_t *h = NULL, *d = NULL;
    assert_int_equal(kvbm_pool_create(b, KVBM_MEM_HOST, 3 * bytes, &h), KVBM_OK);
    assert_int_equal(kvbm_pool_create(b, KVBM_MEM_DEVICE, 3 * bytes, &d), KVBM_OK);
    char *hp = kvbm_pool_ptr(h);
    for (int i = 0; i < 3; i++)
        memset(hp + i * bytes, 'a' + i, bytes);
    kvbm_stream_t *s = NULL;
    kvbm_fence_t *f[3];
    assert_int_equal(kvbm_stream_create(b, &s), KVBM_OK);
    for (int i = 0; i < 3; i++)
        assert_int_equal(kvbm_fence_create(b, &f[i]), KVBM_OK);
    /* Zero the device side through a copy so the check works on any backend. */
    char *zero = calloc(1, 3 * bytes);
    assert_non_null(zero);
    kvbm_copy_t z = {zero, kvbm_pool_ptr(d), 3 * bytes};
    assert_int_equal(kvbm_backend_copy(b, s, &z, 1, KVBM_COPY_H2D, f[0]), KVBM_OK);
    assert_int_equal(kvbm_fence_wait(f[0]), KVBM_OK);

    assert_int_equal(kvbm_backend_fail_nth_copy(b, 2), KVBM_OK);
    for (int i = 0; i < 3; i++) {
        kvbm_copy_t c = {hp + i * bytes, (char *)kvbm_pool_ptr(d) + i * bytes, bytes};
        assert_int_equal(kvbm_backend_copy(b, s, &c, 1, KVBM_COPY_H2D, f[i]), KVBM_OK);
    }
    assert_int_equal(kvbm_fence_wait(f[0]), KVBM_OK);
    assert_int_equal(kvbm_fence_wait(f[1]), KVBM_ERR_COPY_FAILED);
    assert_non_null(strstr(kvbm_last_error(), "a copy covered by the fence failed"));
    assert_int_equal(kvbm_fence_query(f[1]), KVBM_ERR_COPY_FAILED);
    assert_int_equal(kvbm_fence_wait(f[2]), KVBM_OK); /* the error is not sticky */

    /* Read back: block 1 was not written. */
    char *back = malloc(3 * bytes);
    assert_non_null(back);
    kvbm_copy_t r = {kvbm_pool_ptr(d), back, 3 * bytes};
    assert_int_equal(kvbm_backend_copy(b, s, &r, 1, KVBM_COPY_D2H, f[0]), KVBM_OK);
    assert_int_equal(kvbm_fence_wait(f[0]), KVBM_OK);
    assert_memory_equal(back, hp, bytes);
    assert_memory_equal(back + bytes, zero, bytes);
    assert_memory_equal(back + 2 * bytes, hp + 2 * bytes, bytes);

    /* A failure followed by a good copy before one record: the record carries it. */
    assert_int_equal(kvbm_backend_fail_nth_copy(b, 1), KVBM_OK);
    kvbm_copy_t c0 = {hp, kvbm_pool_ptr(d), bytes};
    assert_int_equal(kvbm_backend_copy(b, s, &c0, 1, KVBM_COPY_H2D, NULL), KVBM_OK);
    assert_int_equal(kvbm_backend_copy(b, s, &c0, 1, KVBM_COPY_H2D, f[1]), KVBM_OK);
    assert_int_equal(kvbm_fence_wait(f[1]), KVBM_ERR_COPY_FAILED);
    free(back);
    free(zero);
    for (int i = 0; i < 3; i++)
        kvbm_fence_destroy(f[i]);
    kvbm_stream_destroy(s);
    kvbm_pool_destroy(d);
    kvbm_pool_destroy(h);
    kvbm_backend_destroy(b);
}

static void test_fail_nth_copy_from_config(void **state)
{
    if (!g_available) {
        printf("[  SKIP    ] %s: backend not available here\n", g_group);
        skip();
    }
    kvbm_backend_config_t cfg = g_cfg;
    cfg.fail_nth_copy = 1;
    kvbm_backend_t *b = NULL;
    assert_int_equal(kvbm_backend_create(&cfg, &b), KVBM_OK);
    kvbm_pool_t *h = NULL;
    assert_int_equal(kvbm_pool_create(b, KVBM_MEM_HOST, 8192, &h), KVBM_OK);
    kvbm_stream_t *s = NULL;
    kvbm_fence_t *f = NULL;
    assert_int_equal(kvbm_stream_create(b, &s), KVBM_OK);
    assert_int_equal(kvbm_fence_create(b, &f), KVBM_OK);
    char *p = kvbm_pool_ptr(h);
    memset(p, 'x', 4096);
    memset(p + 4096, 'y', 4096);
    kvbm_copy_t c = {p, p + 4096, 4096};
    assert_int_equal(kvbm_backend_copy(b, s, &c, 1, KVBM_COPY_H2H, f), KVBM_OK);
    assert_int_equal(kvbm_fence_wait(f), KVBM_ERR_COPY_FAILED);
    assert_int_equal(p[4096], 'y');
    assert_int_equal(kvbm_backend_copy(b, s, &c, 1, KVBM_COPY_H2H, f), KVBM_OK);
    assert_int_equal(kvbm_fence_wait(f), KVBM_OK);
    assert_int_equal(p[4096], 'x');
    kvbm_fence_destroy(f);
    kvbm_stream_destroy(s);
    kvbm_pool_destroy(h);
    kvbm_backend_destroy(b);
}

/* ---- several threads enqueue on one stream ---- */

typedef struct enqueuer {
    kvbm_backend_t *b;
    kvbm_stream_t *s;
    char *src;
    char *dst;
    size_t bytes;
    kvbm_status_t status;
} enqueuer_t;

static void *enqueuer_main(void *arg)
{
    enqueuer_t *e = arg;
    kvbm_fence_t *f = NULL;
    e->status = kvbm_fence_create(e->b, &f);
    if (e->status != KVBM_OK)
        return NULL;
    for (int round = 0; round < 20 && e->status == KVBM_OK; round++) {
        kvbm_copy_t c = {e->src, e->dst, e->bytes};
        e->status = kvbm_backend_copy(e->b, e->s, &c, 1, KVBM_COPY_H2H, f);
        if (e->status == KVBM_OK)
            e->status = kvbm_fence_wait(f);
    }
    kvbm_fence_destroy(f);
    return NULL;
}

static void test_threads_share_one_stream(void **state)
{
    kvbm_backend_t *b = open_backend();
    enum { N = 4 };
    size_t bytes = 16 * 1024;
    kvbm_pool_t *h = NULL;
    assert_int_equal(kvbm_pool_create(b, KVBM_MEM_HOST, 2 * N * bytes, &h), KVBM_OK);
    char *p = kvbm_pool_ptr(h);
    kvbm_stream_t *s = NULL;
    assert_int_equal(kvbm_stream_create(b, &s), KVBM_OK);
    pthread_t th[N];
    enqueuer_t e[N];
    for (int i = 0; i < N; i++) {
        memset(p + i * bytes, 'A' + i, bytes);
        memset(p + (N + i) * bytes, 0, bytes);
        e[i] = (enqueuer_t){b, s, p + i * bytes, p + (N + i) * bytes, bytes, KVBM_ERR_INTERNAL};
        assert_int_equal(pthread_create(&th[i], NULL, enqueuer_main, &e[i]), 0);
    }
    for (int i = 0; i < N; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(e[i].status, KVBM_OK);
        assert_memory_equal(p + i * bytes, p + (N + i) * bytes, bytes);
    }
    kvbm_stream_destroy(s);
    kvbm_pool_destroy(h);
    kvbm_backend_destroy(b);
}

/* ---- selection ---- */

static void test_backend_selection(void **state)
{
    if (!g_available) {
        printf("[  SKIP    ] %s: backend not available here\n", g_group);
        skip();
    }
    kvbm_backend_t *b = NULL;
    kvbm_backend_config_t cfg = KVBM_BACKEND_CONFIG_INIT;
    cfg.kind = KVBM_BACKEND_CPU;
    assert_int_equal(kvbm_backend_create(&cfg, &b), KVBM_OK);
    assert_string_equal(kvbm_backend_name(b), "cpu");
    assert_int_equal(kvbm_backend_kind(b), KVBM_BACKEND_CPU);
    kvbm_stream_t *s = (kvbm_stream_t *)(uintptr_t)0x10;
    assert_int_equal(kvbm_stream_wrap(b, NULL, &s), KVBM_ERR_UNSUPPORTED);
    assert_ptr_equal(s, (kvbm_stream_t *)(uintptr_t)0x10);
    kvbm_backend_destroy(b);

    /* The environment picks the kind only for AUTO configs. */
    setenv("KVBM_BACKEND", "cpu", 1);
    cfg.kind = KVBM_BACKEND_AUTO;
    assert_int_equal(kvbm_backend_create(&cfg, &b), KVBM_OK);
    assert_int_equal(kvbm_backend_kind(b), KVBM_BACKEND_CPU);
    kvbm_backend_destroy(b);
    unsetenv("KVBM_BACKEND");

    b = (kvbm_backend_t *)(uintptr_t)0x20;
    cfg.kind = KVBM_BACKEND_CUDA;
    kvbm_status_t st = kvbm_backend_create(&cfg, &b);
    if (st == KVBM_OK) {
        assert_string_equal(kvbm_backend_name(b), "cuda");
        kvbm_backend_destroy(b);
    } else {
        assert_int_equal(st, KVBM_ERR_NO_DEVICE);
        assert_ptr_equal(b, (kvbm_backend_t *)(uintptr_t)0x20);
    }
    /* AUTO falls back to the CPU backend at run time when CUDA cannot be
     * used, even in a build with CUDA compiled in. */
    bool cuda_usable = st == KVBM_OK;
    cfg.kind = KVBM_BACKEND_AUTO;
    assert_int_equal(kvbm_backend_create(&cfg, &b), KVBM_OK);
    assert_int_equal(kvbm_backend_kind(b), cuda_usable ? KVBM_BACKEND_CUDA : KVBM_BACKEND_CPU);
    kvbm_backend_destroy(b);
    cfg.version = 77;
    assert_int_equal(kvbm_backend_create(&cfg, &b), KVBM_ERR_VERSION);
    kvbm_backend_destroy(NULL);
}

static void test_synchronous_mode_completes_at_enqueue(void **state)
{
    if (!g_available || !g_cfg.synchronous) {
        printf("[  SKIP    ] %s: only for the synchronous CPU backend\n", g_group);
        skip();
    }
    kvbm_backend_t *b = open_backend();
    kvbm_pool_t *h = NULL;
    assert_int_equal(kvbm_pool_create(b, KVBM_MEM_HOST, 8192, &h), KVBM_OK);
    char *p = kvbm_pool_ptr(h);
    memset(p, 'q', 4096);
    memset(p + 4096, 0, 4096);
    kvbm_stream_t *s = NULL;
    kvbm_fence_t *f = NULL;
    assert_int_equal(kvbm_stream_create(b, &s), KVBM_OK);
    assert_int_equal(kvbm_fence_create(b, &f), KVBM_OK);
    assert_int_equal(kvbm_stream_hold(s, true), KVBM_ERR_UNSUPPORTED);
    kvbm_copy_t c = {p, p + 4096, 4096};
    assert_int_equal(kvbm_backend_copy(b, s, &c, 1, KVBM_COPY_H2H, f), KVBM_OK);
    assert_int_equal(kvbm_fence_query(f), KVBM_OK);
    assert_int_equal(p[8191], 'q');
    kvbm_fence_destroy(f);
    kvbm_stream_destroy(s);
    kvbm_pool_destroy(h);
    kvbm_backend_destroy(b);
}

static void test_a_copy_that_cannot_record_its_fence_enqueues_nothing(void **state)
{
    /* The copy and the fence's record are made before either is queued: if
     * the record cannot be made (out of memory), no copy runs that no fence
     * covers. Seen on the synchronous CPU backend, where a queued copy runs
     * at once: before, the copy ran and the call still failed, so a caller
     * (the tiered cache) reused slabs an untracked copy was reading. */
    if (!g_available || !g_cfg.synchronous) {
        printf("[  SKIP    ] %s: only for the synchronous CPU backend\n", g_group);
        skip();
    }
    kvbm_backend_t *b = open_backend();
    kvbm_pool_t *h = NULL;
    assert_int_equal(kvbm_pool_create(b, KVBM_MEM_HOST, 8192, &h), KVBM_OK);
    char *p = kvbm_pool_ptr(h);
    memset(p, 'q', 4096);
    memset(p + 4096, 0, 4096);
    kvbm_stream_t *s = NULL;
    kvbm_fence_t *f = NULL;
    assert_int_equal(kvbm_stream_create(b, &s), KVBM_OK);
    assert_int_equal(kvbm_fence_create(b, &f), KVBM_OK);
    kvbm_copy_t c = {p, p + 4096, 4096};
    for (uint64_t nth = 1; nth <= 2; nth++) { /* the copy's item, then the record's */
        kvbm__alloc_fail_nth(nth);
        assert_int_equal(kvbm_backend_copy(b, s, &c, 1, KVBM_COPY_H2H, f), KVBM_ERR_NO_MEMORY);
        kvbm__alloc_fail_nth(0);
        assert_int_equal(p[8191], 0); /* nothing was copied */
    }
    assert_int_equal(kvbm_backend_copy(b, s, &c, 1, KVBM_COPY_H2H, f), KVBM_OK);
    assert_int_equal(p[8191], 'q');
    kvbm_fence_destroy(f);
    kvbm_stream_destroy(s);
    kvbm_pool_destroy(h);
    kvbm_backend_destroy(b);
}

#if !defined(KVBM_TEST_STANDIN)
static bool cuda_backend_usable(void)
{
    kvbm_backend_config_t cfg = KVBM_BACKEND_CONFIG_INIT;
    cfg.kind = KVBM_BACKEND_CUDA;
    kvbm_backend_t *probe = NULL;
    bool usable = kvbm_backend_create(&cfg, &probe) == KVBM_OK;
    kvbm_backend_destroy(probe);
    return usable;
}
#endif

static int run_group(const char *name, kvbm_backend_kind_t kind, bool synchronous)
{
    kvbm_backend_config_t cfg = KVBM_BACKEND_CONFIG_INIT;
    cfg.kind = kind;
    cfg.synchronous = synchronous;
    g_cfg = cfg;
    g_group = name;
    kvbm_backend_t *probe = NULL;
    g_available = kvbm_backend_create(&cfg, &probe) == KVBM_OK;
    kvbm_backend_destroy(probe);
    if (!g_available)
        printf("[  SKIP    ] group %s: %s backend not usable here (no device or not built)\n", name,
               kind == KVBM_BACKEND_CUDA ? "CUDA" : "CPU");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_copy_random_blocks_same_layout),
        cmocka_unit_test(test_copy_between_arrangements),
        cmocka_unit_test(test_copy_blocks_rejects_bad_ids_and_pools),
        cmocka_unit_test(test_unrecorded_fence_is_complete),
        cmocka_unit_test(test_reading_before_fence_sees_stale_data),
        cmocka_unit_test(test_stream_waits_on_other_streams_fence),
        cmocka_unit_test(test_nth_copy_failure_arrives_through_its_fence),
        cmocka_unit_test(test_fail_nth_copy_from_config),
        cmocka_unit_test(test_threads_share_one_stream),
        cmocka_unit_test(test_backend_selection),
        cmocka_unit_test(test_synchronous_mode_completes_at_enqueue),
        cmocka_unit_test(test_a_copy_that_cannot_record_its_fence_enqueues_nothing),
    };
    return _cmocka_run_group_tests(name, tests, sizeof(tests) / sizeof(tests[0]), NULL, NULL);
}

/* `test_backend` runs the CPU groups; `test_backend cuda` runs the CUDA group
 * and exits KVBM_TEST_SKIPPED where no CUDA backend can be made, so that ctest
 * reports it skipped rather than passed. */
int main(int argc, char **argv)
{
    int failed = 0;
#if defined(KVBM_TEST_STANDIN)
    (void)argc;
    (void)argv;
    failed += run_group("cuda-standin", KVBM_BACKEND_CUDA, false);
#else
    if (argc > 1 && strcmp(argv[1], "cuda") == 0) {
        if (!cuda_backend_usable()) {
            printf("skipped: no CUDA backend here (no device, no driver, or not built)\n");
            return KVBM_TEST_SKIPPED;
        }
        return run_group("cuda", KVBM_BACKEND_CUDA, false);
    }
    failed += run_group("cpu", KVBM_BACKEND_CPU, false);
    failed += run_group("cpu-synchronous", KVBM_BACKEND_CPU, true);
#endif
    return failed;
}
