/* Layout arithmetic: every size is computed once, overflow-checked, at create. */
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/config.h"
#include "core/error.h"
#include "geometry.h"
#include "kvbm/layout.h"

struct kvbm_layout {
    kvbm_layout_config_t config;
    size_t chunk;        /* one (block, layer, outer) chunk */
    size_t region_bytes; /* bytes of each region of a block */
    size_t n_regions;    /* regions per block */
    /* Fully contiguous: offset = b*block_stride + (l*O + o)*chunk.
     * Layer separate, outer contiguous: l*layer_stride + b*block_stride + o*chunk.
     * Layer separate, outer apart: l*layer_stride + o*plane_stride + b*block_stride. */
    size_t block_stride;
    size_t layer_stride;
    size_t plane_stride;
    size_t total;
    /* The block geometry (mem/geometry.h): geom_regions regions of
     * geom_region_bytes, region r of block b at geom_offset[r] + b * geom_stride. */
    size_t geom_regions;
    size_t geom_region_bytes;
    size_t geom_stride;
    size_t geom_offset[]; /* geom_regions entries */
};

static void fill_geometry(kvbm_layout_t *l, size_t chunks);

static int mul_ok(size_t a, size_t b, size_t *out)
{
    return !__builtin_mul_overflow(a, b, out);
}

static int round_up_ok(size_t v, size_t align, size_t *out)
{
    size_t sum;
    if (__builtin_add_overflow(v, align - 1, &sum))
        return 0;
    *out = sum & ~(align - 1);
    return 1;
}

/* sizeof(kvbm_layout_config_t) at each published version (core/config.h). */
static const size_t layout_config_sizes[] = {sizeof(kvbm_layout_config_t)};

/* A geometry whose sizes do not fit in size_t, recorded. */
static kvbm_status_t layout_overflow(const kvbm_layout_config_t *c)
{
    return kvbm__fail(KVBM_ERR_OVERFLOW,
                      "layout config: %u blocks x %u layers x %u x %u tokens x %u x %u bytes "
                      "does not fit in size_t",
                      c->num_blocks, c->num_layers, c->outer_dim, c->tokens_per_block, c->inner_dim,
                      c->elem_size);
}

kvbm_status_t kvbm_layout_create(const kvbm_layout_config_t *config, kvbm_layout_t **layout_out)
{
    KVBM_REQUIRE_ARG(config != NULL && layout_out != NULL);
    const kvbm_layout_config_t defaults = KVBM_LAYOUT_CONFIG_INIT;
    kvbm_layout_config_t imported;
    kvbm_status_t status = KVBM__CONFIG_IMPORT(config, layout_config_sizes, &defaults, &imported);
    if (status != KVBM_OK)
        return status;
    const kvbm_layout_config_t *c = &imported;
    const struct {
        const char *name;
        uint32_t value;
    } counts[] = {{"num_blocks", c->num_blocks}, {"num_layers", c->num_layers},
                  {"outer_dim", c->outer_dim},   {"tokens_per_block", c->tokens_per_block},
                  {"inner_dim", c->inner_dim},   {"elem_size", c->elem_size}};
    for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++)
        if (counts[i].value == 0)
            return kvbm__fail(KVBM_ERR_INVALID_ARG, "layout config: %s is 0", counts[i].name);
    if (c->alignment == 0 || (c->alignment & (c->alignment - 1)) != 0)
        return kvbm__fail(KVBM_ERR_INVALID_ARG,
                          "layout config: alignment %zu is not a power of two", c->alignment);
    if (c->kind != KVBM_LAYOUT_FULLY_CONTIGUOUS && c->kind != KVBM_LAYOUT_LAYER_SEPARATE)
        return kvbm__fail(KVBM_ERR_INVALID_ARG, "layout config: unknown kind %d", (int)c->kind);

    kvbm_layout_t l;
    memset(&l, 0, sizeof(l));
    l.config = *c;
    size_t t;
    if (!mul_ok(c->tokens_per_block, c->inner_dim, &t) || !mul_ok(t, c->elem_size, &l.chunk))
        return layout_overflow(c);
    size_t lo; /* chunks per block */
    if (!mul_ok(c->num_layers, c->outer_dim, &lo))
        return layout_overflow(c);

    if (c->kind == KVBM_LAYOUT_FULLY_CONTIGUOUS) {
        l.n_regions = 1;
        if (!mul_ok(lo, l.chunk, &l.region_bytes) ||
            !round_up_ok(l.region_bytes, c->alignment, &l.block_stride) ||
            !mul_ok(l.block_stride, c->num_blocks, &l.total))
            return layout_overflow(c);
        l.layer_stride = l.chunk * c->outer_dim;
        l.plane_stride = l.chunk;
    } else if (c->outer_contiguous) {
        l.n_regions = c->num_layers;
        if (!mul_ok(l.chunk, c->outer_dim, &l.region_bytes) ||
            !round_up_ok(l.region_bytes, c->alignment, &l.block_stride) ||
            !mul_ok(l.block_stride, c->num_blocks, &l.layer_stride) ||
            !mul_ok(l.layer_stride, c->num_layers, &l.total))
            return layout_overflow(c);
        l.plane_stride = l.chunk;
    } else {
        l.n_regions = lo;
        l.region_bytes = l.chunk;
        if (!round_up_ok(l.chunk, c->alignment, &l.block_stride) ||
            !mul_ok(l.block_stride, c->num_blocks, &l.plane_stride) ||
            !mul_ok(l.plane_stride, c->outer_dim, &l.layer_stride) ||
            !mul_ok(l.layer_stride, c->num_layers, &l.total))
            return layout_overflow(c);
    }
    /* Data bytes of a block must fit too (used by callers to size buffers). */
    size_t block_bytes;
    if (!mul_ok(lo, l.chunk, &block_bytes))
        return layout_overflow(c);

    size_t geom_bytes;
    if (lo > UINT32_MAX || !mul_ok(lo, sizeof(size_t), &geom_bytes) ||
        geom_bytes > SIZE_MAX - sizeof(l))
        return layout_overflow(c);
    kvbm_layout_t *out = kvbm__alloc(1, sizeof(l) + geom_bytes);
    if (out == NULL)
        return KVBM_ERR_NO_MEMORY;
    *out = l;
    fill_geometry(out, lo);
    *layout_out = out;
    return KVBM_OK;
}

void kvbm_layout_destroy(kvbm_layout_t *layout)
{
    kvbm__free(layout);
}

const kvbm_layout_config_t *kvbm_layout_config(const kvbm_layout_t *layout)
{
    return &layout->config;
}

size_t kvbm_layout_total_bytes(const kvbm_layout_t *layout)
{
    return layout->total;
}

size_t kvbm_layout_chunk_bytes(const kvbm_layout_t *layout)
{
    return layout->chunk;
}

size_t kvbm_layout_block_bytes(const kvbm_layout_t *layout)
{
    return layout->region_bytes * layout->n_regions;
}

size_t kvbm_layout_regions_per_block(const kvbm_layout_t *layout)
{
    return layout->n_regions;
}

/* Offset of a chunk whose indices are already checked. */
static size_t chunk_offset(const kvbm_layout_t *l, uint32_t b, uint32_t layer, uint32_t o)
{
    const kvbm_layout_config_t *c = &l->config;
    if (c->kind == KVBM_LAYOUT_FULLY_CONTIGUOUS)
        return (size_t)b * l->block_stride + ((size_t)layer * c->outer_dim + o) * l->chunk;
    if (c->outer_contiguous)
        return (size_t)layer * l->layer_stride + (size_t)b * l->block_stride + (size_t)o * l->chunk;
    return (size_t)layer * l->layer_stride + (size_t)o * l->plane_stride +
           (size_t)b * l->block_stride;
}

/*
 * The block geometry (mem/geometry.h): the canonical chunks of a block
 * grouped into the largest equal groups that are contiguous in memory. Every
 * chunk moves by block_stride from one block to the next in every
 * arrangement; a one-block layout takes the whole slab as its stride.
 */
static void fill_geometry(kvbm_layout_t *l, size_t chunks)
{
    const kvbm_layout_config_t *c = &l->config;
    size_t *offset = l->geom_offset; /* first every chunk of block 0, then one per region */
    for (uint32_t layer = 0; layer < c->num_layers; layer++)
        for (uint32_t o = 0; o < c->outer_dim; o++)
            offset[(size_t)layer * c->outer_dim + o] = chunk_offset(l, 0, layer, o);
    size_t group = 1;
    for (size_t g = chunks; g > 1; g--) {
        if (chunks % g != 0)
            continue;
        bool contiguous = true;
        for (size_t k = 0; k + 1 < chunks && contiguous; k++)
            if ((k + 1) % g != 0 && offset[k + 1] != offset[k] + l->chunk)
                contiguous = false;
        if (contiguous) {
            group = g;
            break;
        }
    }
    l->geom_regions = chunks / group;
    for (size_t r = 0; r < l->geom_regions; r++)
        offset[r] = offset[r * group];
    l->geom_region_bytes = group * l->chunk;
    l->geom_stride = c->num_blocks > 1 ? l->block_stride : l->total;
}

size_t kvbm__layout_geom_regions(const kvbm_layout_t *layout)
{
    return layout->geom_regions;
}

void kvbm__layout_geom(const kvbm_layout_t *layout, void *base, char **bases,
                       kvbm__geom_t *geom_out)
{
    for (size_t r = 0; r < layout->geom_regions; r++)
        bases[r] = (char *)base + layout->geom_offset[r];
    *geom_out = (kvbm__geom_t){
        .num_blocks = layout->config.num_blocks,
        .region_count = (uint32_t)layout->geom_regions,
        .region_bytes = layout->geom_region_bytes,
        .block_stride = layout->geom_stride,
        .region_base = bases,
    };
}

kvbm_status_t kvbm_layout_offset(const kvbm_layout_t *layout, uint32_t block, uint32_t layer,
                                 uint32_t outer, size_t *offset_out)
{
    KVBM_REQUIRE_ARG(layout != NULL && offset_out != NULL);
    const kvbm_layout_config_t *c = &layout->config;
    if (block >= c->num_blocks || layer >= c->num_layers || outer >= c->outer_dim)
        return kvbm__fail(KVBM_ERR_OUT_OF_RANGE,
                          "chunk (block %u, layer %u, outer %u) is outside a layout of %u blocks, "
                          "%u layers, outer dim %u",
                          block, layer, outer, c->num_blocks, c->num_layers, c->outer_dim);
    *offset_out = chunk_offset(layout, block, layer, outer);
    return KVBM_OK;
}

kvbm_status_t kvbm_layout_address(const kvbm_layout_t *layout, void *base, uint32_t block,
                                  uint32_t layer, uint32_t outer, void **addr_out)
{
    KVBM_REQUIRE_ARG(base != NULL && addr_out != NULL);
    size_t off;
    kvbm_status_t st = kvbm_layout_offset(layout, block, layer, outer, &off);
    if (st != KVBM_OK)
        return st;
    *addr_out = (char *)base + off;
    return KVBM_OK;
}

kvbm_status_t kvbm_layout_block_regions(const kvbm_layout_t *layout, uint32_t block,
                                        kvbm_region_t *regions, size_t capacity, size_t *count_out)
{
    KVBM_REQUIRE_ARG(layout != NULL && regions != NULL && count_out != NULL);
    const kvbm_layout_config_t *c = &layout->config;
    if (block >= c->num_blocks)
        return kvbm__fail(KVBM_ERR_OUT_OF_RANGE, "block id %u is not below %u", block,
                          c->num_blocks);
    if (capacity < layout->n_regions)
        return kvbm__fail(KVBM_ERR_INVALID_ARG,
                          "kvbm_layout_block_regions: capacity %zu, a block has %zu regions",
                          capacity, layout->n_regions);
    if (c->kind == KVBM_LAYOUT_FULLY_CONTIGUOUS) {
        regions[0].offset = chunk_offset(layout, block, 0, 0);
        regions[0].bytes = layout->region_bytes;
    } else if (c->outer_contiguous) {
        for (uint32_t l = 0; l < c->num_layers; l++) {
            regions[l].offset = chunk_offset(layout, block, l, 0);
            regions[l].bytes = layout->region_bytes;
        }
    } else {
        size_t i = 0;
        for (uint32_t l = 0; l < c->num_layers; l++) {
            for (uint32_t o = 0; o < c->outer_dim; o++, i++) {
                regions[i].offset = chunk_offset(layout, block, l, o);
                regions[i].bytes = layout->region_bytes;
            }
        }
    }
    *count_out = layout->n_regions;
    return KVBM_OK;
}

kvbm_status_t kvbm_layout_compatible(const kvbm_layout_t *a, const kvbm_layout_t *b)
{
    KVBM_REQUIRE_ARG(a != NULL && b != NULL);
    const kvbm_layout_config_t *x = &a->config, *y = &b->config;
    if (x->num_layers != y->num_layers || x->outer_dim != y->outer_dim ||
        x->tokens_per_block != y->tokens_per_block || x->inner_dim != y->inner_dim ||
        x->elem_size != y->elem_size)
        return kvbm__fail(KVBM_ERR_INCOMPATIBLE,
                          "layouts differ: %u/%u layers, outer dim %u/%u, %u/%u tokens per block, "
                          "inner dim %u/%u, element %u/%u bytes",
                          x->num_layers, y->num_layers, x->outer_dim, y->outer_dim,
                          x->tokens_per_block, y->tokens_per_block, x->inner_dim, y->inner_dim,
                          x->elem_size, y->elem_size);
    return KVBM_OK;
}
