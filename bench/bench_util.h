/* Small helpers shared by the benchmarks: a monotonic clock and a PRNG. */
#ifndef KVBM_BENCH_UTIL_H
#define KVBM_BENCH_UTIL_H

#include <stdint.h>
#include <time.h>

static inline double bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static inline uint64_t bench_rand(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    return x;
}

#endif /* KVBM_BENCH_UTIL_H */
