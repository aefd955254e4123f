/*
 * The generator's random numbers: xoshiro256** (Blackman and Vigna,
 * "Scrambled linear pseudorandom number generators", ACM TOMS 2021) seeded
 * through splitmix64, as its authors recommend. Written here from the
 * published recurrences: it is a few lines, no listed dependency offers a
 * seeded generator, and the output must be the same bytes on every platform
 * for a given seed (the C library's rand() makes no such promise).
 *
 * The distributions take only this generator and libm's log/exp/sqrt/cos,
 * so a trace depends only on the seed and the options.
 */
#ifndef KVBM_TRACEGEN_RNG_H
#define KVBM_TRACEGEN_RNG_H

#include <stddef.h>
#include <stdint.h>

typedef struct tracegen_rng {
    uint64_t s[4];
} tracegen_rng_t;

/* Seeds all four words from @p seed with splitmix64 (never all zero). */
void tracegen_rng_seed(tracegen_rng_t *rng, uint64_t seed);

/* The next 64 random bits. */
uint64_t tracegen_rng_next(tracegen_rng_t *rng);

/* Uniform in [0, 1), 53 bits of precision. */
double tracegen_rng_uniform(tracegen_rng_t *rng);

/* Uniform integer in [0, n) for 1 <= n <= 2^32 (Lemire's multiply-shift;
 * the bias is below n / 2^32, negligible for the small n used here). */
uint64_t tracegen_rng_below(tracegen_rng_t *rng, uint64_t n);

/* Exponential with the given mean. */
double tracegen_rng_exponential(tracegen_rng_t *rng, double mean);

/* Log-normal with the given median and log-space standard deviation. */
double tracegen_rng_lognormal(tracegen_rng_t *rng, double median, double sigma);

/* Geometric number of trials >= 1 with the given mean (>= 1). */
uint32_t tracegen_rng_geometric(tracegen_rng_t *rng, double mean);

/* Zipf over ranks 0..n-1 with exponent s: a table of cumulative weights. */
typedef struct tracegen_zipf {
    double *cdf; /* n entries, the last one 1.0 */
    size_t n;
} tracegen_zipf_t;

/* Builds the table; returns 0, or -1 when out of memory (nothing to free). */
int tracegen_zipf_init(tracegen_zipf_t *zipf, size_t n, double exponent);
void tracegen_zipf_fini(tracegen_zipf_t *zipf);
/* A rank in [0, n), rank 0 the most popular. */
size_t tracegen_zipf_draw(const tracegen_zipf_t *zipf, tracegen_rng_t *rng);

#endif /* KVBM_TRACEGEN_RNG_H */
