/*
 * The copy kernel's per-region code (cuda/kernel/copy_region.h), compiled for
 * the host and run with every thread and block index a launch would have, in
 * turn: the bytes must equal memcpy's, every byte is written exactly once,
 * nothing outside a region changes. Sources and destinations at every
 * offset pair 0..16, sizes 0..33 and large ones, and more regions than the
 * grid has blocks. On the device the same loops run with typed 16/8/4/2-byte
 * accesses instead of memcpy (scripts/gpu-check.sh runs them there).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cuda_kernel/copy_region.h"

#define GUARD 64

static unsigned char pattern(size_t i)
{
    return (unsigned char)(i * 131u + 7u) | 1u; /* never 0 */
}

/* Runs the regions' copy as a grid of @p grid blocks of @p threads threads. */
static void run_grid(const kvbm__copy_desc_t *desc, size_t n, size_t grid, size_t threads)
{
    for (size_t b = 0; b < grid; b++)
        for (size_t t = 0; t < threads; t++)
            kvbm__copy_regions_part(desc, n, b, grid, t, threads);
}

/* One region at (src_off, dst_off) of @p bytes: result, guards, and each
 * byte written by exactly one thread. */
static void check_region(size_t src_off, size_t dst_off, size_t bytes, size_t threads)
{
    size_t span = (bytes + 2 * GUARD + 32 + 63) / 64 * 64; /* aligned_alloc: a multiple */
    unsigned char *src = aligned_alloc(64, span), *dst = aligned_alloc(64, span);
    assert_non_null(src);
    assert_non_null(dst);
    for (size_t i = 0; i < span; i++)
        src[i] = pattern(i);
    memset(dst, 0, span);
    kvbm__copy_desc_t d = {src + GUARD + src_off, dst + GUARD + dst_off, bytes};
    run_grid(&d, 1, 1, threads);
    if (memcmp(dst + GUARD + dst_off, src + GUARD + src_off, bytes) != 0)
        fail_msg("wrong bytes: src +%zu dst +%zu, %zu bytes, %zu threads", src_off, dst_off, bytes,
                 threads);
    for (size_t i = 0; i < span; i++) {
        if (i < GUARD + dst_off || i >= GUARD + dst_off + bytes)
            assert_int_equal(dst[i], 0);
    }
    /* Exactly once: each thread alone writes its share into a zeroed copy;
     * the shares add up to the region (the sources are never 0). Skipped for
     * the 2 MiB region (threads x span bytes to scan). */
    if (bytes > (1u << 20)) {
        free(dst);
        free(src);
        return;
    }
    size_t written = 0;
    for (size_t t = 0; t < threads; t++) {
        memset(dst, 0, span);
        kvbm__copy_region_part(&d, t, threads);
        for (size_t i = 0; i < span; i++)
            written += dst[i] != 0;
    }
    assert_int_equal(written, bytes);
    free(dst);
    free(src);
}

static void every_offset_pair_and_size_0_to_33(void **state)
{
    (void)state;
    for (size_t so = 0; so <= 16; so++)
        for (size_t dofs = 0; dofs <= 16; dofs++)
            for (size_t bytes = 0; bytes <= 33; bytes++)
                check_region(so, dofs, bytes, 5);
}

static void large_regions_at_every_alignment_class(void **state)
{
    (void)state;
    static const size_t sizes[] = {4096, 4099, 32768 + 5, 65536 + 13, (2u << 20) + 3};
    static const size_t offsets[][2] = {{0, 0}, {3, 3}, {0, 8}, {4, 12}, {2, 6}, {1, 2}, {7, 0}};
    for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++)
        for (size_t o = 0; o < sizeof(offsets) / sizeof(offsets[0]); o++)
            check_region(offsets[o][0], offsets[o][1], sizes[s], s < 2 ? 256 : 64);
}

static void widest_shared_unit_is_chosen(void **state)
{
    (void)state;
    char *base = (char *)(uintptr_t)0x1000;
    assert_int_equal(kvbm__copy_unit(base, base + 32), 16);
    assert_int_equal(kvbm__copy_unit(base + 3, base + 19), 16); /* same offset mod 16 */
    assert_int_equal(kvbm__copy_unit(base, base + 8), 8);
    assert_int_equal(kvbm__copy_unit(base + 4, base + 8), 4);
    assert_int_equal(kvbm__copy_unit(base + 2, base + 4), 2);
    assert_int_equal(kvbm__copy_unit(base + 1, base + 4), 1);
}

/* More regions than blocks: the grid-stride loop reaches all of them, each
 * once, and the gaps between regions are untouched. */
static void more_regions_than_the_grid_has_blocks(void **state)
{
    (void)state;
    enum { REGIONS = 53, SLOT = 512 };
    unsigned char *src = malloc((size_t)REGIONS * SLOT), *dst = malloc((size_t)REGIONS * SLOT);
    assert_non_null(src);
    assert_non_null(dst);
    for (size_t i = 0; i < (size_t)REGIONS * SLOT; i++)
        src[i] = pattern(i);
    memset(dst, 0, (size_t)REGIONS * SLOT);
    kvbm__copy_desc_t desc[REGIONS];
    uint64_t rng = 99;
    for (size_t r = 0; r < REGIONS; r++) {
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        size_t so = (rng >> 33) % 17, dofs = (rng >> 45) % 17, bytes = (rng >> 20) % 400;
        desc[r] = (kvbm__copy_desc_t){src + r * SLOT + so, dst + r * SLOT + dofs, bytes};
    }
    run_grid(desc, REGIONS, 4, 8);
    for (size_t r = 0; r < REGIONS; r++) {
        unsigned char *slot = dst + r * SLOT;
        size_t start = (size_t)((unsigned char *)desc[r].dst - slot);
        assert_memory_equal(desc[r].dst, desc[r].src, desc[r].bytes);
        for (size_t i = 0; i < SLOT; i++) {
            if (i < start || i >= start + desc[r].bytes)
                assert_int_equal(slot[i], 0);
        }
    }
    free(dst);
    free(src);
}

static void launch_block_fits_the_parameter_limit(void **state)
{
    (void)state;
    /* CUDA 12.1+ on Volta and later: 32764 bytes of kernel parameters. */
    assert_true(sizeof(kvbm__copy_launch_t) <= 32764);
    assert_true(KVBM__COPY_LAUNCH_MAX >= 1000); /* a 1000-block batch is one launch */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_offset_pair_and_size_0_to_33),
        cmocka_unit_test(large_regions_at_every_alignment_class),
        cmocka_unit_test(widest_shared_unit_is_chosen),
        cmocka_unit_test(more_regions_than_the_grid_has_blocks),
        cmocka_unit_test(launch_block_fits_the_parameter_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
