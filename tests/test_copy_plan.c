/*
 * The copy planner (host/mem/copy_plan.c) and the layout geometry it works
 * on (host/mem/geometry.h).
 *
 * Transfers, the part of the NCCL path that can be checked without a GPU:
 * for random pairs of compatible memory shapes and random block lists, the
 * sender's and the receiver's message-based plans must cut the stream at the
 * same places (every ncclSend meets an ncclRecv of its size), and moving the
 * bytes piece for piece (NCCL) or as one stream (sockets) must land every
 * canonical byte of every block where it belongs. Local copies (both sides
 * addressed, as kvbm_backend_copy_blocks_between plans them) must do the
 * same and merge only where both sides continue.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kvbm_test.h"
#include "mem/copy_plan.h"

#define BLOCK_BYTES 384u
#define MAX_REGIONS 12

typedef struct side {
    kvbm__geom_t geom;
    char *bases[MAX_REGIONS];
    unsigned char *buf;
} side_t;

/* The same shape without addresses: how a peer's side looks. */
static kvbm__geom_t shape_of(const side_t *s)
{
    kvbm__geom_t g = s->geom;
    g.region_base = NULL;
    return g;
}

static uint64_t rng_state = 0x1234567887654321ull;

static uint32_t rnd(uint32_t bound)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state % bound);
}

/* A slab of @p blocks blocks cut into @p regions regions, layer-separate
 * (stride = region bytes, or padded) or block-contiguous (stride >= block). */
static void side_init(side_t *s, uint32_t blocks, uint32_t regions, bool layer_separate, size_t pad)
{
    size_t rb = BLOCK_BYTES / regions;
    s->geom.region_count = regions;
    s->geom.region_bytes = rb;
    s->geom.num_blocks = blocks;
    s->geom.block_stride = layer_separate ? rb + pad : BLOCK_BYTES + pad;
    size_t plane = (size_t)blocks * s->geom.block_stride;
    s->buf = calloc(layer_separate ? regions * plane : plane, 1);
    assert_non_null(s->buf);
    for (uint32_t r = 0; r < regions; r++)
        s->bases[r] = (char *)s->buf + (layer_separate ? r * plane : r * rb);
    s->geom.region_base = s->bases;
}

static unsigned char *canonical(const side_t *s, uint32_t block, size_t k)
{
    size_t rb = s->geom.region_bytes;
    return (unsigned char *)s->bases[k / rb] + (size_t)block * s->geom.block_stride + k % rb;
}

static unsigned char pattern(size_t i, size_t k)
{
    return (unsigned char)(i * 37u + k * 11u + (k >> 8));
}

/* n distinct ids below @p blocks, mixing runs of consecutive ids and jumps. */
static void random_ids(uint32_t *ids, size_t n, uint32_t blocks)
{
    bool *used = calloc(blocks, sizeof(*used));
    uint32_t next = rnd(blocks);
    for (size_t i = 0; i < n; i++) {
        if (rnd(3) == 0 || next >= blocks || used[next])
            do
                next = rnd(blocks);
            while (used[next]);
        ids[i] = next;
        used[next] = true;
        next++;
    }
    free(used);
}

static const uint32_t REGION_CHOICES[] = {1, 2, 3, 4, 6, 8, 12};

static void plans_of_both_sides_agree_and_move_every_byte(void **state)
{
    enum { CASES = 400, BLOCKS = 48 };
    for (int c = 0; c < CASES; c++) {
        uint32_t ra, rb;
        do {
            ra = REGION_CHOICES[rnd(7)];
            rb = REGION_CHOICES[rnd(7)];
        } while ((ra > rb ? ra % rb : rb % ra) != 0); /* region sizes must divide */
        side_t a, b;
        side_init(&a, BLOCKS, ra, rnd(2), rnd(2) ? 0 : 64);
        side_init(&b, BLOCKS + 8, rb, rnd(2), rnd(2) ? 0 : 32);
        size_t n = 1 + rnd(BLOCKS);
        uint32_t src[BLOCKS], dst[BLOCKS];
        random_ids(src, n, BLOCKS);
        random_ids(dst, n, BLOCKS + 8);
        for (size_t i = 0; i < n; i++)
            for (size_t k = 0; k < BLOCK_BYTES; k++)
                *canonical(&a, src[i], k) = pattern(i, k);

        bool message_based = c % 2 == 0;
        kvbm__copy_plan_t ps, pr;
        kvbm__geom_t a_shape = shape_of(&a), b_shape = shape_of(&b);
        assert_kvbm_ok(kvbm__copy_plan_build(&a.geom, src, &b_shape, dst, n, message_based, &ps));
        assert_kvbm_ok(kvbm__copy_plan_build(&a_shape, src, &b.geom, dst, n, message_based, &pr));
        assert_int_equal(ps.bytes, n * BLOCK_BYTES);
        assert_int_equal(pr.bytes, n * BLOCK_BYTES);
        if (message_based) {
            /* NCCL: piece j of the sender is received by piece j. */
            assert_int_equal(ps.count, pr.count);
            for (size_t j = 0; j < ps.count; j++) {
                assert_int_equal(ps.pieces[j].bytes, pr.pieces[j].bytes);
                assert_null(ps.pieces[j].dst);
                assert_null(pr.pieces[j].src);
                memcpy(pr.pieces[j].dst, ps.pieces[j].src, ps.pieces[j].bytes);
            }
        } else {
            /* Sockets: one byte stream, cut differently on each side. */
            unsigned char *stream = malloc(ps.bytes), *p = stream;
            for (size_t j = 0; j < ps.count; j++, p += ps.pieces[j - 1].bytes)
                memcpy(p, ps.pieces[j].src, ps.pieces[j].bytes);
            p = stream;
            for (size_t j = 0; j < pr.count; j++, p += pr.pieces[j - 1].bytes)
                memcpy(pr.pieces[j].dst, p, pr.pieces[j].bytes);
            free(stream);
        }
        for (size_t i = 0; i < n; i++)
            for (size_t k = 0; k < BLOCK_BYTES; k++)
                if (*canonical(&b, dst[i], k) != pattern(i, k))
                    fail_msg("case %d: block %zu byte %zu wrong (regions %u -> %u, %s)", c, i, k,
                             ra, rb, message_based ? "messages" : "stream");
        kvbm__copy_plan_free(&ps);
        kvbm__copy_plan_free(&pr);
        free(a.buf);
        free(b.buf);
    }
}

/* Consecutive ids in layer-separate slabs on both sides: one piece per
 * region, whatever the number of blocks; scattered ids: one per block. */
static void consecutive_ids_coalesce_per_region(void **state)
{
    side_t a, b;
    side_init(&a, 32, 4, true, 0);
    side_init(&b, 32, 4, true, 0);
    uint32_t src[16], dst[16], gaps[16];
    for (uint32_t i = 0; i < 16; i++) {
        src[i] = 3 + i;
        dst[i] = 10 + i;
        gaps[i] = 2 * i;
    }
    kvbm__geom_t b_shape = shape_of(&b);
    for (int mb = 0; mb < 2; mb++) {
        kvbm__copy_plan_t p;
        assert_kvbm_ok(kvbm__copy_plan_build(&a.geom, src, &b_shape, dst, 16, mb, &p));
        assert_int_equal(p.count, 4);
        kvbm__copy_plan_free(&p);
        /* The peer's gaps cut NCCL messages too; a byte stream ignores them. */
        assert_kvbm_ok(kvbm__copy_plan_build(&a.geom, src, &b_shape, gaps, 16, mb, &p));
        assert_int_equal(p.count, mb ? 4 * 16 : 4);
        kvbm__copy_plan_free(&p);
    }
    /* A local copy (both sides addressed) merges only where both continue. */
    kvbm__copy_plan_t p;
    assert_kvbm_ok(kvbm__copy_plan_build(&a.geom, src, &b.geom, dst, 16, false, &p));
    assert_int_equal(p.count, 4);
    kvbm__copy_plan_free(&p);
    assert_kvbm_ok(kvbm__copy_plan_build(&a.geom, src, &b.geom, gaps, 16, false, &p));
    assert_int_equal(p.count, 4 * 16);
    kvbm__copy_plan_free(&p);
    free(a.buf);
    free(b.buf);
}

static void empty_plan_refused(void **state)
{
    side_t a;
    side_init(&a, 4, 1, true, 0);
    uint32_t id = 0;
    kvbm__copy_plan_t p = {0};
    assert_kvbm_status(kvbm__copy_plan_build(&a.geom, &id, &a.geom, &id, 0, true, &p),
                       KVBM_ERR_INVALID_ARG);
    assert_null(p.pieces);
    /* Sides of other bytes per block, or region sizes that do not divide. */
    side_t b, c;
    side_init(&b, 4, 2, true, 0);
    side_init(&c, 4, 3, true, 0);
    kvbm__geom_t half = b.geom;
    half.region_count = 1;
    assert_kvbm_status(kvbm__copy_plan_build(&a.geom, &id, &half, &id, 1, false, &p),
                       KVBM_ERR_INCOMPATIBLE);
    assert_kvbm_status(kvbm__copy_plan_build(&b.geom, &id, &c.geom, &id, 1, false, &p),
                       KVBM_ERR_INCOMPATIBLE);
    assert_null(p.pieces);
    free(a.buf);
    free(b.buf);
    free(c.buf);
}

/* Local copies between random compatible sides: executing the pieces lands
 * every byte, and no two pieces overlap on either side. */
static void local_copies_move_every_byte(void **state)
{
    enum { CASES = 300, BLOCKS = 40 };
    for (int c = 0; c < CASES; c++) {
        uint32_t ra, rb;
        do {
            ra = REGION_CHOICES[rnd(7)];
            rb = REGION_CHOICES[rnd(7)];
        } while ((ra > rb ? ra % rb : rb % ra) != 0);
        side_t a, b;
        side_init(&a, BLOCKS, ra, rnd(2), rnd(2) ? 0 : 64);
        side_init(&b, BLOCKS, rb, rnd(2), rnd(2) ? 0 : 32);
        size_t n = 1 + rnd(BLOCKS);
        uint32_t src[BLOCKS], dst[BLOCKS];
        random_ids(src, n, BLOCKS);
        random_ids(dst, n, BLOCKS);
        for (size_t i = 0; i < n; i++)
            for (size_t k = 0; k < BLOCK_BYTES; k++)
                *canonical(&a, src[i], k) = pattern(i, k);
        kvbm__copy_plan_t p;
        assert_kvbm_ok(kvbm__copy_plan_build(&a.geom, src, &b.geom, dst, n, false, &p));
        assert_int_equal(p.bytes, n * BLOCK_BYTES);
        size_t total = 0;
        for (size_t j = 0; j < p.count; j++) {
            memcpy(p.pieces[j].dst, p.pieces[j].src, p.pieces[j].bytes);
            total += p.pieces[j].bytes;
        }
        assert_int_equal(total, p.bytes);
        for (size_t i = 0; i < n; i++)
            for (size_t k = 0; k < BLOCK_BYTES; k++)
                if (*canonical(&b, dst[i], k) != pattern(i, k))
                    fail_msg("case %d: block %zu byte %zu wrong (regions %u -> %u)", c, i, k, ra,
                             rb);
        kvbm__copy_plan_free(&p);
        free(a.buf);
        free(b.buf);
    }
}

/* The geometry of every arrangement, with and without padding, one or many
 * blocks, addresses every chunk where kvbm_layout_offset says it is. */
static void layout_geometry_addresses_every_chunk(void **state)
{
    for (int kind = 0; kind < 3; kind++) {
        for (uint32_t blocks = 1; blocks <= 3; blocks++) {
            for (size_t align = 1; align <= 256; align *= 256) {
                kvbm_layout_config_t lc = KVBM_LAYOUT_CONFIG_INIT;
                lc.kind = kind == 0 ? KVBM_LAYOUT_FULLY_CONTIGUOUS : KVBM_LAYOUT_LAYER_SEPARATE;
                lc.outer_contiguous = kind == 1;
                lc.num_blocks = blocks;
                lc.num_layers = 3;
                lc.outer_dim = 2;
                lc.tokens_per_block = 4;
                lc.inner_dim = 5;
                lc.elem_size = 2;
                lc.alignment = align;
                kvbm_layout_t *layout;
                assert_kvbm_ok(kvbm_layout_create(&lc, &layout));
                size_t regions = kvbm__layout_geom_regions(layout);
                assert_true(regions >= 1 && regions <= 6 && 6 % regions == 0);
                char *base = malloc(kvbm_layout_total_bytes(layout));
                assert_non_null(base);
                char *bases[6];
                kvbm__geom_t g;
                kvbm__layout_geom(layout, base, bases, &g);
                assert_int_equal(g.region_count * g.region_bytes, kvbm_layout_block_bytes(layout));
                size_t chunk = kvbm_layout_chunk_bytes(layout);
                for (uint32_t b = 0; b < blocks; b++) {
                    for (uint32_t k = 0; k < 6; k++) {
                        size_t at = (size_t)k * chunk, off;
                        assert_kvbm_ok(kvbm_layout_offset(layout, b, k / 2, k % 2, &off));
                        char *expect = base + off;
                        char *got = g.region_base[at / g.region_bytes] +
                                    (size_t)b * g.block_stride + at % g.region_bytes;
                        assert_ptr_equal(got, expect);
                    }
                }
                free(base);
                kvbm_layout_destroy(layout);
            }
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(plans_of_both_sides_agree_and_move_every_byte),
        cmocka_unit_test(local_copies_move_every_byte),
        cmocka_unit_test(layout_geometry_addresses_every_chunk),
        cmocka_unit_test(consecutive_ids_coalesce_per_region),
        cmocka_unit_test(empty_plan_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
