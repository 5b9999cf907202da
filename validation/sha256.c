/*
 * sha256.c: SHA-256 (FIPS 180-4, "Secure Hash Standard", sections 4.1.2, 4.2.2, 5.1.1, 5.3.3,
 * 6.2), streaming, so that reports can name the exact bytes of every input they compared.
 *
 * The message is processed in 512-bit blocks; padding appends a 1 bit, zeros to 448 mod 512 bits,
 * and the message length in bits as a 64-bit big-endian integer. Tested against `sha256sum`.
 */
#include "mr_validation.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* The first 32 bits of the fractional parts of the cube roots of the first 64 primes (4.2.2). */
static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static inline uint32_t rotr(uint32_t x, int n)
{
    return (x >> n) | (x << (32 - n));
}

/* One 64-byte block into the state (6.2.2). */
static void compress(uint32_t state[8], const unsigned char *p)
{
    uint32_t w[64], a, b, c, d, e, f, g, h;
    for (int t = 0; t < 16; t++)
        w[t] = (uint32_t)p[4 * t] << 24 | (uint32_t)p[4 * t + 1] << 16 |
               (uint32_t)p[4 * t + 2] << 8 | (uint32_t)p[4 * t + 3];
    for (int t = 16; t < 64; t++) {
        uint32_t s0 = rotr(w[t - 15], 7) ^ rotr(w[t - 15], 18) ^ (w[t - 15] >> 3);
        uint32_t s1 = rotr(w[t - 2], 17) ^ rotr(w[t - 2], 19) ^ (w[t - 2] >> 10);
        w[t] = w[t - 16] + s0 + w[t - 7] + s1;
    }
    a = state[0], b = state[1], c = state[2], d = state[3];
    e = state[4], f = state[5], g = state[6], h = state[7];
    for (int t = 0; t < 64; t++) {
        uint32_t S1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25);
        uint32_t ch = (e & f) ^ (~e & g);
        uint32_t t1 = h + S1 + ch + K[t] + w[t];
        uint32_t S0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22);
        uint32_t maj = (a & b) ^ (a & c) ^ (b & c);
        uint32_t t2 = S0 + maj;
        h = g, g = f, f = e, e = d + t1;
        d = c, c = b, b = a, a = t1 + t2;
    }
    state[0] += a, state[1] += b, state[2] += c, state[3] += d;
    state[4] += e, state[5] += f, state[6] += g, state[7] += h;
}

void mr_sha256_init(mr_sha256 *ctx)
{
    /* the first 32 bits of the fractional parts of the square roots of the first 8 primes (5.3.3)
     */
    static const uint32_t H0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(ctx->state, H0, sizeof H0);
    ctx->bytes = 0;
    ctx->fill = 0;
}

void mr_sha256_update(mr_sha256 *ctx, const void *data, size_t n)
{
    const unsigned char *p = data;
    ctx->bytes += n;
    if (ctx->fill) {
        size_t take = 64 - ctx->fill < n ? 64 - ctx->fill : n;
        memcpy(ctx->block + ctx->fill, p, take);
        ctx->fill += take;
        p += take;
        n -= take;
        if (ctx->fill < 64) return;
        compress(ctx->state, ctx->block);
        ctx->fill = 0;
    }
    for (; n >= 64; p += 64, n -= 64)
        compress(ctx->state, p);
    memcpy(ctx->block, p, n);
    ctx->fill = n;
}

void mr_sha256_final(mr_sha256 *ctx, unsigned char out[32], char hex[65])
{
    static const char digits[] = "0123456789abcdef";
    uint64_t bits = ctx->bytes * 8;
    unsigned char digest[32];
    /* padding (5.1.1): 0x80, zeros up to 56 mod 64, then the bit length big-endian */
    ctx->block[ctx->fill++] = 0x80;
    if (ctx->fill > 56) {
        memset(ctx->block + ctx->fill, 0, 64 - ctx->fill);
        compress(ctx->state, ctx->block);
        ctx->fill = 0;
    }
    memset(ctx->block + ctx->fill, 0, 56 - ctx->fill);
    for (int i = 0; i < 8; i++)
        ctx->block[56 + i] = (unsigned char)(bits >> (56 - 8 * i));
    compress(ctx->state, ctx->block);
    for (int i = 0; i < 8; i++)
        for (int j = 0; j < 4; j++)
            digest[4 * i + j] = (unsigned char)(ctx->state[i] >> (24 - 8 * j));
    if (out) memcpy(out, digest, 32);
    if (hex) {
        for (int i = 0; i < 32; i++) {
            hex[2 * i] = digits[digest[i] >> 4];
            hex[2 * i + 1] = digits[digest[i] & 15];
        }
        hex[64] = '\0';
    }
    mr_sha256_init(ctx); /* the context is spent; leave it reusable rather than half-padded */
}

mr_status mr_sha256_file(char hex[65], const char *path)
{
    unsigned char buf[1 << 16];
    mr_sha256 ctx;
    FILE *f;
    size_t n;
    int err;
    hex[0] = '\0';
    f = fopen(path, "rb");
    if (!f) {
        err = errno;
        return mr_error_set(MR_ERR_INPUT, "%s: cannot open for the SHA-256 digest: %s", path,
                            strerror(err));
    }
    mr_sha256_init(&ctx);
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        mr_sha256_update(&ctx, buf, n);
    err = ferror(f) ? errno : 0;
    fclose(f);
    if (err)
        return mr_error_set(MR_ERR_INPUT, "%s: read failed while computing the SHA-256 digest: %s",
                            path, strerror(err));
    mr_sha256_final(&ctx, NULL, hex);
    return MR_OK;
}
