/*
 * The gather/scatter kernel's copy of one region, written once for the device
 * and the host: the kernel (copy_kernel.cu) runs it with its block and thread
 * indices, and the host tests (tests/cuda/test_copy_region.c) and the CUDA
 * runtime stand-in run the very same loops with indices they enumerate, so the
 * head/body/tail split and the grid-stride loop are checked without a GPU.
 * Only the one-unit load/store differs: typed 16/8/4/2-byte accesses on the
 * device, memcpy of that many bytes on the host.
 *
 * Alignment: the widest unit u in 16, 8, 4, 2, 1 for which source and
 * destination sit at the same offset modulo u is used for the body; the head
 * (up to the destination's next u-byte boundary, so both ends are aligned)
 * and the tail (what is left after the last whole unit) go byte by byte,
 * at most 2 x 15 bytes per region. Regions whose ends differ in alignment
 * still get 8-, 4- or 2-byte accesses instead of a byte loop.
 *
 * Valid C11 and CUDA C++; no CUDA header is needed on the host.
 */
#ifndef KVBM_CUDA_COPY_REGION_H
#define KVBM_CUDA_COPY_REGION_H

#include <stddef.h>
#include <stdint.h>

#if defined(__CUDACC__)
#define KVBM_HD __host__ __device__
#else
#include <string.h>
#define KVBM_HD
#endif

#if defined(__cplusplus)
#define KVBM__STATIC_ASSERT(cond, msg) static_assert(cond, msg)
#else
#define KVBM__STATIC_ASSERT(cond, msg) _Static_assert(cond, msg)
#endif

/* One region of a batch. */
typedef struct kvbm__copy_desc {
    const void *src;
    void *dst;
    size_t bytes;
} kvbm__copy_desc_t;

/*
 * Regions per launch. The list travels as the kernel's by-value parameter
 * (a __grid_constant__ struct), which CUDA 12.1+ allows up to 32764 bytes on
 * Volta and later: no descriptor buffer to allocate, upload or recycle, and
 * the launch copies it, so the caller's copy may be reused at once.
 */
#define KVBM__COPY_LAUNCH_MAX 1360u

/* What one launch copies. */
typedef struct kvbm__copy_launch {
    uint32_t n; /* 1..KVBM__COPY_LAUNCH_MAX */
    uint32_t reserved;
    kvbm__copy_desc_t desc[KVBM__COPY_LAUNCH_MAX];
} kvbm__copy_launch_t;

KVBM__STATIC_ASSERT(sizeof(kvbm__copy_launch_t) <= 32764, "kernel parameter limit");

/* Threads per block of the kernel. */
#define KVBM__COPY_THREADS 256u

/* The widest access unit both ends of a region can share. */
KVBM_HD static inline unsigned kvbm__copy_unit(const void *src, const void *dst)
{
    uintptr_t diff = (uintptr_t)src ^ (uintptr_t)dst;
    if ((diff & 15u) == 0)
        return 16;
    if ((diff & 7u) == 0)
        return 8;
    if ((diff & 3u) == 0)
        return 4;
    if ((diff & 1u) == 0)
        return 2;
    return 1;
}

#if defined(__CUDA_ARCH__)
#define KVBM__COPY_AS(type, d, s) (*(type *)(d) = *(const type *)(s))
#define KVBM__COPY16(d, s)        KVBM__COPY_AS(uint4, d, s)
#define KVBM__COPY8(d, s)         KVBM__COPY_AS(unsigned long long, d, s)
#define KVBM__COPY4(d, s)         KVBM__COPY_AS(unsigned int, d, s)
#define KVBM__COPY2(d, s)         KVBM__COPY_AS(unsigned short, d, s)
#else
#define KVBM__COPY16(d, s) memcpy((d), (s), 16)
#define KVBM__COPY8(d, s)  memcpy((d), (s), 8)
#define KVBM__COPY4(d, s)  memcpy((d), (s), 4)
#define KVBM__COPY2(d, s)  memcpy((d), (s), 2)
#endif

/*
 * The part of region @p d that thread @p tid of @p nthreads copies. All
 * threads together copy every byte exactly once; each touches only bytes of
 * the region.
 */
KVBM_HD static inline void kvbm__copy_region_part(const kvbm__copy_desc_t *d, size_t tid,
                                                  size_t nthreads)
{
    const unsigned char *src = (const unsigned char *)d->src;
    unsigned char *dst = (unsigned char *)d->dst;
    size_t bytes = d->bytes;
    size_t unit = kvbm__copy_unit(src, dst);
    size_t head = (unit - ((uintptr_t)dst & (unit - 1))) & (unit - 1);
    if (head > bytes)
        head = bytes;
    size_t units = (bytes - head) / unit;
    size_t body_end = head + units * unit;
    for (size_t i = tid; i < head; i += nthreads)
        dst[i] = src[i];
    for (size_t i = body_end + tid; i < bytes; i += nthreads)
        dst[i] = src[i];
    const unsigned char *s = src + head;
    unsigned char *t = dst + head;
    switch (unit) {
    case 16:
        for (size_t i = tid; i < units; i += nthreads)
            KVBM__COPY16(t + 16 * i, s + 16 * i);
        break;
    case 8:
        for (size_t i = tid; i < units; i += nthreads)
            KVBM__COPY8(t + 8 * i, s + 8 * i);
        break;
    case 4:
        for (size_t i = tid; i < units; i += nthreads)
            KVBM__COPY4(t + 4 * i, s + 4 * i);
        break;
    case 2:
        for (size_t i = tid; i < units; i += nthreads)
            KVBM__COPY2(t + 2 * i, s + 2 * i);
        break;
    default:
        for (size_t i = tid; i < units; i += nthreads)
            t[i] = s[i];
        break;
    }
}

/*
 * The share of thread @p tid in block @p block of a grid of @p grid blocks
 * of @p nthreads threads: regions block, block + grid, ... (a grid-stride
 * loop, so any grid covers any number of regions).
 */
KVBM_HD static inline void kvbm__copy_regions_part(const kvbm__copy_desc_t *desc, size_t n,
                                                   size_t block, size_t grid, size_t tid,
                                                   size_t nthreads)
{
    for (size_t r = block; r < n; r += grid)
        kvbm__copy_region_part(&desc[r], tid, nthreads);
}

#endif /* KVBM_CUDA_COPY_REGION_H */
