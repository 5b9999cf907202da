/*
 * mt19937.c: a numpy.random.RandomState-compatible Mersenne Twister, so that masks drawn in C equal
 * fastMRI's (which draw from numpy's legacy RandomState) bit for bit.
 *
 * Follows Matsumoto & Nishimura, "Mersenne Twister: a 623-dimensionally equidistributed uniform
 * pseudo-random number generator", ACM TOMACS 8(1), 1998 (init_genrand, init_by_array, the tempered
 * 32-bit output), and numpy's legacy conventions on top of it:
 *  - RandomState(int) seeds with init_genrand; a tuple/array seed goes through init_by_array;
 *  - random_sample() = (a >> 5, b >> 6) of two 32-bit draws joined into a 53-bit fraction;
 *  - randint(low, high) draws an offset in [0, high - low - 1] by masked rejection: 32-bit draws
 *    when the range fits in 32 bits, 64-bit draws (two 32-bit words, first one high) otherwise; a
 *    range of one value consumes no draw at all (checked against numpy 1.24 in tests/test_mask.c).
 */
#include "mr_recon.h"

#define MT_N 624
#define MT_M 397
#define MT_UPPER 0x80000000u
#define MT_LOWER 0x7fffffffu
#define MT_MATRIX_A 0x9908b0dfu

void mr_mt_seed(mr_mt19937 *rng, uint32_t seed)
{
    rng->mt[0] = seed;
    for (int i = 1; i < MT_N; i++) {
        uint32_t prev = rng->mt[i - 1];
        rng->mt[i] = 1812433253u * (prev ^ (prev >> 30)) + (uint32_t)i;
    }
    rng->mti = MT_N;
}

void mr_mt_seed_array(mr_mt19937 *rng, const uint32_t *key, size_t len)
{
    size_t i = 1, j = 0, k;
    mr_mt_seed(rng, 19650218u);
    if (len == 0) return; /* numpy refuses an empty seed; keep the base state rather than read key */
    /* Mix the key into the state (first pass), then diffuse (second pass). */
    for (k = (MT_N > len ? MT_N : len); k > 0; k--) {
        uint32_t prev = rng->mt[i - 1];
        rng->mt[i] = (rng->mt[i] ^ ((prev ^ (prev >> 30)) * 1664525u)) + key[j] + (uint32_t)j;
        i++;
        j++;
        if (i >= MT_N) {
            rng->mt[0] = rng->mt[MT_N - 1];
            i = 1;
        }
        if (j >= len) j = 0;
    }
    for (k = MT_N - 1; k > 0; k--) {
        uint32_t prev = rng->mt[i - 1];
        rng->mt[i] = (rng->mt[i] ^ ((prev ^ (prev >> 30)) * 1566083941u)) - (uint32_t)i;
        i++;
        if (i >= MT_N) {
            rng->mt[0] = rng->mt[MT_N - 1];
            i = 1;
        }
    }
    rng->mt[0] = 0x80000000u; /* guarantees a non-zero state */
    rng->mti = MT_N;
}

/* Regenerate all 624 words (the "twist"). */
static void mt_twist(mr_mt19937 *rng)
{
    uint32_t *mt = rng->mt;
    int i;
    for (i = 0; i < MT_N; i++) {
        uint32_t y = (mt[i] & MT_UPPER) | (mt[(i + 1) % MT_N] & MT_LOWER);
        mt[i] = mt[(i + MT_M) % MT_N] ^ (y >> 1) ^ ((y & 1u) ? MT_MATRIX_A : 0u);
    }
    rng->mti = 0;
}

uint32_t mr_mt_next32(mr_mt19937 *rng)
{
    uint32_t y;
    if (rng->mti >= MT_N) mt_twist(rng);
    y = rng->mt[rng->mti++];
    /* Tempering. */
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= y >> 18;
    return y;
}

double mr_mt_random_sample(mr_mt19937 *rng)
{
    uint32_t a = mr_mt_next32(rng) >> 5; /* 27 bits */
    uint32_t b = mr_mt_next32(rng) >> 6; /* 26 bits */
    return ((double)a * 67108864.0 + (double)b) / 9007199254740992.0;
}

/* Smallest all-ones mask covering v. */
static uint64_t mt_mask(uint64_t v)
{
    v |= v >> 1;
    v |= v >> 2;
    v |= v >> 4;
    v |= v >> 8;
    v |= v >> 16;
    v |= v >> 32;
    return v;
}

long mr_mt_randint(mr_mt19937 *rng, long low, long high)
{
    uint64_t range, mask, v;
    if (high <= low) return low; /* numpy raises; callers validate, so this is a programmer bug */
    range = (uint64_t)high - (uint64_t)low - 1u; /* largest offset */
    if (range == 0) return low;                  /* numpy draws nothing for a single value */
    if (range <= 0xffffffffu) {
        if (range == 0xffffffffu) return (long)((uint64_t)low + mr_mt_next32(rng));
        mask = mt_mask(range);
        do {
            v = mr_mt_next32(rng) & mask;
        } while (v > range);
        return (long)((uint64_t)low + v);
    }
    mask = mt_mask(range);
    do {
        uint64_t hi = mr_mt_next32(rng);
        v = ((hi << 32) | mr_mt_next32(rng)) & mask;
    } while (v > range);
    return (long)((uint64_t)low + v);
}
