/*
 * rng.c: a small seeded pseudo-random generator for mrpipe's own sampling (network initialisation,
 * patch sampling, augmentation). Not numpy-compatible (recon/mt19937.c is, for masks); it only has
 * to be fast, portable and bit-reproducible from a 64-bit seed.
 *
 * Generator: xoshiro256** (Blackman & Vigna, "Scrambled linear pseudorandom number generators",
 * ACM TOMS 47(4), 2021), its 256-bit state filled from the seed by splitmix64 as the authors
 * recommend. Uniform doubles take the top 53 bits. Normal variates: Box-Muller (Box & Muller 1958)
 * with both outputs used, the second kept for the next call.
 */
#include "mr_core.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

void mr_rng_seed(mr_rng *rng, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) rng->s[i] = splitmix64(&x);
    rng->has_spare = 0;
    rng->spare = 0.0;
}

uint64_t mr_rng_next(mr_rng *rng)
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

double mr_rng_uniform(mr_rng *rng) { return (double)(mr_rng_next(rng) >> 11) * 0x1.0p-53; }

uint64_t mr_rng_below(mr_rng *rng, uint64_t n)
{
    /* Rejection from the largest multiple of n below 2^64: no modulo bias. */
    uint64_t limit, r;
    if (n <= 1) return 0;
    limit = UINT64_MAX - UINT64_MAX % n;
    do
        r = mr_rng_next(rng);
    while (r >= limit);
    return r % n;
}

double mr_rng_normal(mr_rng *rng)
{
    double u1, u2, r;
    if (rng->has_spare) {
        rng->has_spare = 0;
        return rng->spare;
    }
    do
        u1 = mr_rng_uniform(rng);
    while (u1 <= 0.0); /* log(0) */
    u2 = mr_rng_uniform(rng);
    r = sqrt(-2.0 * log(u1));
    rng->spare = r * sin(2.0 * M_PI * u2);
    rng->has_spare = 1;
    return r * cos(2.0 * M_PI * u2);
}
