/* Seeded random numbers and distributions; see rng.h. */
#include "rng.h"

#include <math.h>
#include <stdlib.h>

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

void tracegen_rng_seed(tracegen_rng_t *rng, uint64_t seed)
{
    uint64_t state = seed;
    for (int i = 0; i < 4; i++)
        rng->s[i] = splitmix64(&state);
}

uint64_t tracegen_rng_next(tracegen_rng_t *rng)
{
    uint64_t *s = rng->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double tracegen_rng_uniform(tracegen_rng_t *rng)
{
    return (double)(tracegen_rng_next(rng) >> 11) * 0x1.0p-53;
}

uint64_t tracegen_rng_below(tracegen_rng_t *rng, uint64_t n)
{
    /* 32 random bits times n < 2^32 fits in 64 bits. */
    return ((tracegen_rng_next(rng) >> 32) * n) >> 32;
}

double tracegen_rng_exponential(tracegen_rng_t *rng, double mean)
{
    /* 1 - u is in (0, 1], so the logarithm is finite. */
    return -mean * log(1.0 - tracegen_rng_uniform(rng));
}

double tracegen_rng_lognormal(tracegen_rng_t *rng, double median, double sigma)
{
    /* Box-Muller: one standard normal from two uniforms. */
    double u1 = 1.0 - tracegen_rng_uniform(rng);
    double u2 = tracegen_rng_uniform(rng);
    double normal = sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
    return median * exp(sigma * normal);
}

uint32_t tracegen_rng_geometric(tracegen_rng_t *rng, double mean)
{
    if (mean <= 1.0)
        return 1;
    double p = 1.0 / mean; /* success probability per trial */
    double u = 1.0 - tracegen_rng_uniform(rng);
    double trials = ceil(log(u) / log(1.0 - p));
    if (trials < 1.0)
        return 1;
    return trials > 1e6 ? 1000000u : (uint32_t)trials;
}

int tracegen_zipf_init(tracegen_zipf_t *zipf, size_t n, double exponent)
{
    zipf->cdf = malloc((n > 0 ? n : 1) * sizeof(double));
    if (zipf->cdf == NULL)
        return -1;
    zipf->n = n > 0 ? n : 1;
    double total = 0.0;
    for (size_t i = 0; i < zipf->n; i++) {
        total += 1.0 / pow((double)(i + 1), exponent);
        zipf->cdf[i] = total;
    }
    for (size_t i = 0; i < zipf->n; i++)
        zipf->cdf[i] /= total;
    zipf->cdf[zipf->n - 1] = 1.0;
    return 0;
}

void tracegen_zipf_fini(tracegen_zipf_t *zipf)
{
    free(zipf->cdf);
    zipf->cdf = NULL;
    zipf->n = 0;
}

size_t tracegen_zipf_draw(const tracegen_zipf_t *zipf, tracegen_rng_t *rng)
{
    double u = tracegen_rng_uniform(rng);
    size_t lo = 0, hi = zipf->n - 1; /* the first rank whose cdf exceeds u */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (zipf->cdf[mid] > u)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}
