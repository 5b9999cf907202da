/*
 * test_xxh.c: the batch runner's content hash (pipeline/batch.c): XXH64 with seed 0, one-shot and
 * streamed (the file is hashed through a buffer), against the reference value of the empty input
 * and against each other for every length from 0 to 300 bytes and split points across 32-byte
 * blocks, and on a 1 MB buffer fed in uneven pieces.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

typedef struct {
    uint64_t v1, v2, v3, v4, total;
    unsigned char buf[32];
    size_t nbuf;
} mr_xxh64_state; /* as in pipeline/batch.c */

uint64_t mr_batch_xxh64(const void *data, size_t n);
void mr_batch_xxh64_init(mr_xxh64_state *s);
void mr_batch_xxh64_update(mr_xxh64_state *s, const void *data, size_t n);
uint64_t mr_batch_xxh64_digest(const mr_xxh64_state *s);

static void test_reference(void)
{
    /* XXH64("", seed 0) = 0xEF46DB3751D8E999 (the xxHash specification's sanity value) */
    CU_ASSERT_EQUAL(mr_batch_xxh64("", 0), 0xEF46DB3751D8E999ULL);
    mr_xxh64_state s;
    mr_batch_xxh64_init(&s);
    CU_ASSERT_EQUAL(mr_batch_xxh64_digest(&s), 0xEF46DB3751D8E999ULL);
}

static void test_streamed_equals_one_shot(void)
{
    unsigned char d[300];
    for (size_t i = 0; i < sizeof d; i++) d[i] = (unsigned char)(i * 167 + 13);
    int bad = 0;
    for (size_t n = 0; n <= sizeof d; n++) {
        uint64_t want = mr_batch_xxh64(d, n);
        for (size_t cut = 0; cut <= n; cut += (n > 70 ? 7 : 1)) {
            mr_xxh64_state s;
            mr_batch_xxh64_init(&s);
            mr_batch_xxh64_update(&s, d, cut);
            mr_batch_xxh64_update(&s, d + cut, n - cut);
            if (mr_batch_xxh64_digest(&s) != want) bad++;
        }
    }
    CU_ASSERT_EQUAL(bad, 0);
    size_t n = 1 << 20;
    unsigned char *big = malloc(n);
    CU_ASSERT_PTR_NOT_NULL_FATAL(big);
    for (size_t i = 0; i < n; i++) big[i] = (unsigned char)((i * 2654435761u) >> 13);
    mr_xxh64_state s;
    mr_batch_xxh64_init(&s);
    size_t off = 0, step = 1;
    while (off < n) {
        size_t k = step < n - off ? step : n - off;
        mr_batch_xxh64_update(&s, big + off, k);
        off += k;
        step = step * 3 + 5;
    }
    CU_ASSERT_EQUAL(mr_batch_xxh64_digest(&s), mr_batch_xxh64(big, n));
    free(big);
}

int main(void)
{
    static const mr_test_case cases[] = {
        {"XXH64 of the empty input is the specification's value", test_reference},
        {"streamed XXH64 equals the one-shot value for every split", test_streamed_equals_one_shot},
        {NULL, NULL},
    };
    return mr_test_run("xxh", cases);
}
