/* Layout addressing against a brute-force model, and rejection of bad input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kvbm/layout.h"

static size_t round_up(size_t v, size_t a)
{
    return (v + a - 1) / a * a;
}

/* The model places chunks one after another in the arrangement's nesting
 * order, aligning the start of each region, and records every offset. */
typedef struct model {
    size_t *off; /* [block][layer][outer] */
    size_t total;
} model_t;

static size_t midx(const kvbm_layout_config_t *c, uint32_t b, uint32_t l, uint32_t o)
{
    return ((size_t)b * c->num_layers + l) * c->outer_dim + o;
}

static model_t model_build(const kvbm_layout_config_t *c)
{
    model_t m;
    m.off = calloc((size_t)c->num_blocks * c->num_layers * c->outer_dim, sizeof(size_t));
    assert_non_null(m.off);
    size_t chunk = (size_t)c->tokens_per_block * c->inner_dim * c->elem_size;
    size_t cur = 0;
    if (c->kind == KVBM_LAYOUT_FULLY_CONTIGUOUS) {
        for (uint32_t b = 0; b < c->num_blocks; b++) {
            cur = round_up(cur, c->alignment);
            for (uint32_t l = 0; l < c->num_layers; l++)
                for (uint32_t o = 0; o < c->outer_dim; o++, cur += chunk)
                    m.off[midx(c, b, l, o)] = cur;
        }
    } else if (c->outer_contiguous) {
        for (uint32_t l = 0; l < c->num_layers; l++)
            for (uint32_t b = 0; b < c->num_blocks; b++) {
                cur = round_up(cur, c->alignment);
                for (uint32_t o = 0; o < c->outer_dim; o++, cur += chunk)
                    m.off[midx(c, b, l, o)] = cur;
            }
    } else {
        for (uint32_t l = 0; l < c->num_layers; l++)
            for (uint32_t o = 0; o < c->outer_dim; o++)
                for (uint32_t b = 0; b < c->num_blocks; b++) {
                    cur = round_up(cur, c->alignment);
                    m.off[midx(c, b, l, o)] = cur;
                    cur += chunk;
                }
    }
    m.total = round_up(cur, c->alignment);
    return m;
}

static int cmp_size(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return x < y ? -1 : x > y;
}

static void check_against_model(const kvbm_layout_config_t *c)
{
    kvbm_layout_t *layout = NULL;
    assert_int_equal(kvbm_layout_create(c, &layout), KVBM_OK);
    model_t m = model_build(c);
    size_t chunk = (size_t)c->tokens_per_block * c->inner_dim * c->elem_size;
    assert_int_equal(kvbm_layout_total_bytes(layout), m.total);
    assert_int_equal(kvbm_layout_chunk_bytes(layout), chunk);
    assert_int_equal(kvbm_layout_block_bytes(layout), chunk * c->num_layers * c->outer_dim);

    size_t per_block = (size_t)c->num_layers * c->outer_dim;
    size_t *sorted = malloc(per_block * sizeof(size_t));
    kvbm_region_t *regions = malloc(per_block * sizeof(kvbm_region_t));
    assert_non_null(sorted);
    assert_non_null(regions);
    char base[1];
    for (uint32_t b = 0; b < c->num_blocks; b++) {
        for (uint32_t l = 0; l < c->num_layers; l++) {
            for (uint32_t o = 0; o < c->outer_dim; o++) {
                size_t off = 0;
                void *addr = NULL;
                assert_int_equal(kvbm_layout_offset(layout, b, l, o, &off), KVBM_OK);
                assert_int_equal(off, m.off[midx(c, b, l, o)]);
                assert_true(off + chunk <= m.total);
                assert_true(off % (c->kind == KVBM_LAYOUT_LAYER_SEPARATE && !c->outer_contiguous
                                       ? c->alignment
                                       : 1) ==
                            0);
                assert_int_equal(kvbm_layout_address(layout, base, b, l, o, &addr), KVBM_OK);
                assert_ptr_equal(addr, base + off);
                sorted[(size_t)l * c->outer_dim + o] = off;
            }
        }
        /* The regions must be exactly the block's chunks, merged where adjacent. */
        qsort(sorted, per_block, sizeof(size_t), cmp_size);
        kvbm_region_t expect[4096];
        size_t n_expect = 0;
        for (size_t i = 0; i < per_block; i++) {
            if (n_expect > 0 &&
                expect[n_expect - 1].offset + expect[n_expect - 1].bytes == sorted[i])
                expect[n_expect - 1].bytes += chunk;
            else
                expect[n_expect++] = (kvbm_region_t){sorted[i], chunk};
        }
        size_t count = 0;
        assert_int_equal(kvbm_layout_block_regions(layout, b, regions, per_block, &count), KVBM_OK);
        assert_int_equal(count, kvbm_layout_regions_per_block(layout));
        /* A layout may split where the model merges only across an outer
         * boundary it chose to keep apart; compare merged forms. */
        size_t n_got = 0;
        for (size_t i = 0; i < count; i++) {
            if (n_got > 0 &&
                regions[n_got - 1].offset + regions[n_got - 1].bytes == regions[i].offset)
                regions[n_got - 1].bytes += regions[i].bytes;
            else
                regions[n_got++] = regions[i];
        }
        assert_int_equal(n_got, n_expect);
        for (size_t i = 0; i < n_got; i++) {
            assert_int_equal(regions[i].offset, expect[i].offset);
            assert_int_equal(regions[i].bytes, expect[i].bytes);
        }
    }
    free(regions);
    free(sorted);
    free(m.off);
    kvbm_layout_destroy(layout);
}

static void test_offsets_match_model_all_arrangements(void **state)
{
    static const uint32_t shapes[][6] = {
        /* blocks, layers, outer, tokens, inner, elem */
        {1, 1, 1, 1, 1, 1}, {7, 3, 2, 4, 3, 2},   {16, 4, 2, 16, 8, 2},
        {5, 2, 1, 3, 5, 1}, {33, 1, 2, 8, 64, 4}, {9, 6, 2, 2, 7, 1},
    };
    static const size_t aligns[] = {1, 16, 256, 4096};
    for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
        for (size_t a = 0; a < sizeof(aligns) / sizeof(aligns[0]); a++) {
            for (int arr = 0; arr < 3; arr++) {
                kvbm_layout_config_t c = KVBM_LAYOUT_CONFIG_INIT;
                c.num_blocks = shapes[s][0];
                c.num_layers = shapes[s][1];
                c.outer_dim = shapes[s][2];
                c.tokens_per_block = shapes[s][3];
                c.inner_dim = shapes[s][4];
                c.elem_size = shapes[s][5];
                c.alignment = aligns[a];
                c.kind = arr == 0 ? KVBM_LAYOUT_FULLY_CONTIGUOUS : KVBM_LAYOUT_LAYER_SEPARATE;
                c.outer_contiguous = arr != 2;
                check_against_model(&c);
            }
        }
    }
}

static void test_region_counts_per_arrangement(void **state)
{
    kvbm_layout_config_t c = KVBM_LAYOUT_CONFIG_INIT;
    c.num_blocks = 4;
    c.num_layers = 5;
    c.tokens_per_block = 16;
    c.inner_dim = 8;
    kvbm_layout_t *l = NULL;
    assert_int_equal(kvbm_layout_create(&c, &l), KVBM_OK);
    assert_int_equal(kvbm_layout_regions_per_block(l), 1);
    kvbm_layout_destroy(l);
    c.kind = KVBM_LAYOUT_LAYER_SEPARATE;
    assert_int_equal(kvbm_layout_create(&c, &l), KVBM_OK);
    assert_int_equal(kvbm_layout_regions_per_block(l), 5);
    kvbm_layout_destroy(l);
    c.outer_contiguous = false;
    assert_int_equal(kvbm_layout_create(&c, &l), KVBM_OK);
    assert_int_equal(kvbm_layout_regions_per_block(l), 10);
    /* Too small a region buffer is refused and nothing is written. */
    kvbm_region_t r[9];
    size_t count = 77;
    memset(r, 0xab, sizeof(r));
    assert_int_equal(kvbm_layout_block_regions(l, 0, r, 9, &count), KVBM_ERR_INVALID_ARG);
    assert_int_equal(count, 77);
    kvbm_layout_destroy(l);
}

static void expect_create_fails(const kvbm_layout_config_t *c, kvbm_status_t want)
{
    kvbm_layout_t *sentinel = (kvbm_layout_t *)(uintptr_t)0x1234;
    kvbm_layout_t *l = sentinel;
    assert_int_equal(kvbm_layout_create(c, &l), want);
    assert_ptr_equal(l, sentinel);
}

static void test_invalid_layouts_rejected(void **state)
{
    kvbm_layout_config_t good = KVBM_LAYOUT_CONFIG_INIT;
    good.num_blocks = 8;
    good.num_layers = 2;
    good.tokens_per_block = 4;
    good.inner_dim = 4;
    kvbm_layout_t *l = NULL;
    assert_int_equal(kvbm_layout_create(&good, &l), KVBM_OK);
    kvbm_layout_destroy(l);

    kvbm_layout_config_t c;
    c = good;
    c.num_blocks = 0;
    expect_create_fails(&c, KVBM_ERR_INVALID_ARG);
    c = good;
    c.num_layers = 0;
    expect_create_fails(&c, KVBM_ERR_INVALID_ARG);
    c = good;
    c.outer_dim = 0;
    expect_create_fails(&c, KVBM_ERR_INVALID_ARG);
    c = good;
    c.tokens_per_block = 0;
    expect_create_fails(&c, KVBM_ERR_INVALID_ARG);
    c = good;
    c.inner_dim = 0;
    expect_create_fails(&c, KVBM_ERR_INVALID_ARG);
    c = good;
    c.elem_size = 0;
    expect_create_fails(&c, KVBM_ERR_INVALID_ARG);
    c = good;
    c.alignment = 0;
    expect_create_fails(&c, KVBM_ERR_INVALID_ARG);
    c = good;
    c.alignment = 48;
    expect_create_fails(&c, KVBM_ERR_INVALID_ARG);
    c = good;
    c.kind = (kvbm_layout_kind_t)7;
    expect_create_fails(&c, KVBM_ERR_INVALID_ARG);
    c = good;
    c.version = 99;
    expect_create_fails(&c, KVBM_ERR_VERSION);
    c = good;
    c.struct_size = 3;
    expect_create_fails(&c, KVBM_ERR_VERSION);
    /* chunk = 2^32 * 2^32 * 2^32 overflows */
    c = good;
    c.tokens_per_block = UINT32_MAX;
    c.inner_dim = UINT32_MAX;
    c.elem_size = UINT32_MAX;
    expect_create_fails(&c, KVBM_ERR_OVERFLOW);
    /* chunk 2^56 fits, 1024 blocks of 2^57 bytes do not, in every arrangement */
    for (int arr = 0; arr < 3; arr++) {
        c = good;
        c.tokens_per_block = 1u << 20;
        c.inner_dim = 1u << 20;
        c.elem_size = 1u << 16;
        c.num_layers = 1;
        c.num_blocks = 1024;
        c.kind = arr == 0 ? KVBM_LAYOUT_FULLY_CONTIGUOUS : KVBM_LAYOUT_LAYER_SEPARATE;
        c.outer_contiguous = arr != 2;
        expect_create_fails(&c, KVBM_ERR_OVERFLOW);
    }
    /* rounding up to the alignment overflows */
    c = good;
    c.tokens_per_block = 1u << 31;
    c.inner_dim = 1u << 31;
    c.elem_size = 3;
    c.outer_dim = 1;
    c.num_layers = 1;
    c.num_blocks = 1;
    c.alignment = (size_t)1 << 63;
    expect_create_fails(&c, KVBM_ERR_OVERFLOW);
    assert_int_equal(kvbm_layout_create(NULL, &l), KVBM_ERR_INVALID_ARG);
    assert_int_equal(kvbm_layout_create(&good, NULL), KVBM_ERR_INVALID_ARG);
}

static void test_invalid_ids_out_of_range(void **state)
{
    kvbm_layout_config_t c = KVBM_LAYOUT_CONFIG_INIT;
    c.num_blocks = 8;
    c.num_layers = 3;
    c.tokens_per_block = 4;
    c.inner_dim = 4;
    for (int arr = 0; arr < 2; arr++) {
        c.kind = arr == 0 ? KVBM_LAYOUT_FULLY_CONTIGUOUS : KVBM_LAYOUT_LAYER_SEPARATE;
        kvbm_layout_t *l = NULL;
        assert_int_equal(kvbm_layout_create(&c, &l), KVBM_OK);
        size_t off = 4242;
        assert_int_equal(kvbm_layout_offset(l, 8, 0, 0, &off), KVBM_ERR_OUT_OF_RANGE);
        assert_int_equal(kvbm_layout_offset(l, 0, 3, 0, &off), KVBM_ERR_OUT_OF_RANGE);
        assert_int_equal(kvbm_layout_offset(l, 0, 0, 2, &off), KVBM_ERR_OUT_OF_RANGE);
        assert_int_equal(kvbm_layout_offset(l, UINT32_MAX, 0, 0, &off), KVBM_ERR_OUT_OF_RANGE);
        assert_int_equal(off, 4242);
        kvbm_region_t r[3];
        size_t n = 99;
        assert_int_equal(kvbm_layout_block_regions(l, 8, r, 3, &n), KVBM_ERR_OUT_OF_RANGE);
        assert_int_equal(n, 99);
        assert_int_equal(kvbm_layout_offset(l, 7, 2, 1, &off), KVBM_OK);
        kvbm_layout_destroy(l);
    }
}

static void test_compatibility_is_geometry_only(void **state)
{
    kvbm_layout_config_t c = KVBM_LAYOUT_CONFIG_INIT;
    c.num_blocks = 8;
    c.num_layers = 3;
    c.tokens_per_block = 4;
    c.inner_dim = 4;
    kvbm_layout_t *a = NULL, *b = NULL, *d = NULL;
    assert_int_equal(kvbm_layout_create(&c, &a), KVBM_OK);
    kvbm_layout_config_t c2 = c;
    c2.num_blocks = 100;
    c2.kind = KVBM_LAYOUT_LAYER_SEPARATE;
    c2.alignment = 4096;
    assert_int_equal(kvbm_layout_create(&c2, &b), KVBM_OK);
    assert_int_equal(kvbm_layout_compatible(a, b), KVBM_OK);
    kvbm_layout_config_t c3 = c;
    c3.inner_dim = 8;
    assert_int_equal(kvbm_layout_create(&c3, &d), KVBM_OK);
    assert_int_equal(kvbm_layout_compatible(a, d), KVBM_ERR_INCOMPATIBLE);
    assert_int_equal(kvbm_layout_compatible(a, NULL), KVBM_ERR_INVALID_ARG);
    assert_int_equal(kvbm_layout_config(b)->num_blocks, 100);
    kvbm_layout_destroy(a);
    kvbm_layout_destroy(b);
    kvbm_layout_destroy(d);
    kvbm_layout_destroy(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_offsets_match_model_all_arrangements),
        cmocka_unit_test(test_region_counts_per_arrangement),
        cmocka_unit_test(test_invalid_layouts_rejected),
        cmocka_unit_test(test_invalid_ids_out_of_range),
        cmocka_unit_test(test_compatibility_is_geometry_only),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
