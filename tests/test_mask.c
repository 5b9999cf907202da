/*
 * test_mask.c: the numpy-compatible MT19937 and the sampling masks (recon/mt19937.c, recon/mask.c)
 * and the `mrpipe mask` command.
 *
 * Oracle: tests/data/golden_masks.txt, written by scripts/gen_golden_masks.py from numpy's legacy
 * RandomState and a transcription of fastMRI's subsample.py; when /usr/bin/python3 has numpy the
 * goldens are regenerated on the fly and must equal the committed file (so they are current), and
 * the C code is checked against the fresh copy too. Properties: mean acceleration of random masks,
 * fastMRI's equispaced column count, per-mask acceleration of equispaced-fraction and Poisson masks,
 * centre lines, +0.0 zeros, determinism, parameter errors with messages.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mr_recon.h"
#include "testutil.h"

/* ---------------------------------------------------------------- golden file */

typedef struct {
    int lines, rng_checks, masks, failures;
} golden_stats;

static int parse_seed(uint32_t *words, size_t *len, char **save)
{
    char *tok = strtok_r(NULL, " \n", save);
    long n = tok ? strtol(tok, NULL, 10) : -1;
    if (n < 1 || n > 256) return -1;
    for (long i = 0; i < n; i++) {
        tok = strtok_r(NULL, " \n", save);
        if (!tok) return -1;
        words[i] = (uint32_t)strtoul(tok, NULL, 10);
    }
    *len = (size_t)n;
    return 0;
}

/* Check every record of a golden file against the C implementation. */
static golden_stats check_golden_file(const char *path)
{
    golden_stats gs = {0, 0, 0, 0};
    FILE *f = fopen(path, "r");
    char *line = NULL, *save, *tok;
    size_t cap = 0;
    mr_mt19937 rng;
    uint32_t words[256];
    size_t nwords = 0;
    mr_mt_seed(&rng, 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    while (getline(&line, &cap, f) > 0) {
        if (line[0] == '#' || line[0] == '\n') continue;
        gs.lines++;
        tok = strtok_r(line, " \n", &save);
        if (!tok) continue;
        if (!strcmp(tok, "rng_seed")) {
            CU_ASSERT_FATAL(parse_seed(words, &nwords, &save) == 0);
            if (nwords == 1) mr_mt_seed(&rng, words[0]);
            else mr_mt_seed_array(&rng, words, nwords);
        } else if (!strcmp(tok, "next32")) {
            long k = strtol(strtok_r(NULL, " \n", &save), NULL, 10);
            for (long i = 0; i < k; i++) {
                unsigned long want = strtoul(strtok_r(NULL, " \n", &save), NULL, 10);
                uint32_t got = mr_mt_next32(&rng);
                gs.rng_checks++;
                if (got != want) {
                    gs.failures++;
                    fprintf(stderr, "next32: got %u want %lu\n", got, want);
                }
            }
        } else if (!strcmp(tok, "random_sample")) {
            long k = strtol(strtok_r(NULL, " \n", &save), NULL, 10);
            for (long i = 0; i < k; i++) {
                double want = strtod(strtok_r(NULL, " \n", &save), NULL);
                double got = mr_mt_random_sample(&rng);
                gs.rng_checks++;
                if (got != want) {
                    gs.failures++;
                    fprintf(stderr, "random_sample: got %.17g want %.17g\n", got, want);
                }
            }
        } else if (!strcmp(tok, "random_sample_skip")) {
            long k = strtol(strtok_r(NULL, " \n", &save), NULL, 10);
            double want = strtod(strtok_r(NULL, " \n", &save), NULL), got;
            for (long i = 0; i < k; i++) (void)mr_mt_random_sample(&rng);
            got = mr_mt_random_sample(&rng);
            gs.rng_checks++;
            if (got != want) {
                gs.failures++;
                fprintf(stderr, "random_sample after %ld: got %.17g want %.17g\n", k, got, want);
            }
        } else if (!strcmp(tok, "randint")) {
            long low = strtol(strtok_r(NULL, " \n", &save), NULL, 10);
            long high = strtol(strtok_r(NULL, " \n", &save), NULL, 10);
            long k = strtol(strtok_r(NULL, " \n", &save), NULL, 10);
            for (long i = 0; i < k; i++) {
                long want = strtol(strtok_r(NULL, " \n", &save), NULL, 10);
                long got = mr_mt_randint(&rng, low, high);
                gs.rng_checks++;
                if (got != want) {
                    gs.failures++;
                    fprintf(stderr, "randint(%ld, %ld): got %ld want %ld\n", low, high, got, want);
                }
            }
        } else if (!strcmp(tok, "mask")) {
            mr_mask_params p;
            const char *type = strtok_r(NULL, " \n", &save);
            size_t w = strtoul(strtok_r(NULL, " \n", &save), NULL, 10), nl = 0, want_nl;
            const char *bits;
            float *m;
            mr_status st;
            int bad = 0;
            memset(&p, 0, sizeof p);
            CU_ASSERT_FATAL(mr_mask_type_parse(&p.type, type) == MR_OK);
            p.center_fraction = strtod(strtok_r(NULL, " \n", &save), NULL);
            p.accel = strtod(strtok_r(NULL, " \n", &save), NULL);
            CU_ASSERT_FATAL(parse_seed(words, &nwords, &save) == 0);
            p.seed = words;
            p.seed_len = nwords;
            want_nl = strtoul(strtok_r(NULL, " \n", &save), NULL, 10);
            bits = strtok_r(NULL, " \n", &save);
            CU_ASSERT_FATAL(bits && strlen(bits) == w);
            m = malloc(w * sizeof *m);
            st = mr_mask_create_1d(m, w, &p, &nl);
            gs.masks++;
            if (st != MR_OK) {
                fprintf(stderr, "mask %s W=%zu: %s\n", type, w, mr_error_message());
                bad = 1;
            } else {
                for (size_t i = 0; i < w; i++)
                    if ((m[i] != 0.0f) != (bits[i] == '1') || (m[i] != 0.0f && m[i] != 1.0f)) bad = 1;
                if (nl != want_nl) bad = 1;
            }
            if (bad) {
                gs.failures++;
                fprintf(stderr, "mask %s W=%zu cf=%g R=%g seed[0]=%u: differs from fastMRI\n  want %s\n  got  ",
                        type, w, p.center_fraction, p.accel, words[0], bits);
                for (size_t i = 0; st == MR_OK && i < w; i++) fputc(m[i] != 0.0f ? '1' : '0', stderr);
                fputc('\n', stderr);
            }
            free(m);
        } else {
            gs.failures++;
            fprintf(stderr, "%s: unknown record '%s'\n", path, tok);
        }
    }
    free(line);
    fclose(f);
    return gs;
}

static void test_rng_and_masks_match_golden(void)
{
    golden_stats gs = check_golden_file(mr_test_src("tests/data/golden_masks.txt"));
    fprintf(stderr, "\n  golden: %d RNG values, %d fastMRI masks, %d mismatches\n", gs.rng_checks,
            gs.masks, gs.failures);
    CU_ASSERT(gs.rng_checks >= 300);
    CU_ASSERT(gs.masks >= 25);
    CU_ASSERT_EQUAL(gs.failures, 0);
}

/* Compare two text files ignoring '#' comment lines (the header names numpy's version). */
static int files_equal_ignoring_comments(const char *a, const char *b)
{
    FILE *fa = fopen(a, "r"), *fb = fopen(b, "r");
    char *la = NULL, *lb = NULL;
    size_t ca = 0, cb = 0;
    int equal = fa && fb;
    while (equal) {
        ssize_t na, nb;
        do na = getline(&la, &ca, fa);
        while (na > 0 && la[0] == '#');
        do nb = getline(&lb, &cb, fb);
        while (nb > 0 && lb[0] == '#');
        if (na <= 0 || nb <= 0) {
            equal = na <= 0 && nb <= 0;
            break;
        }
        if (strcmp(la, lb)) {
            fprintf(stderr, "golden differs:\n  committed: %.120s\n  fresh:     %.120s\n", la, lb);
            equal = 0;
        }
    }
    free(la);
    free(lb);
    if (fa) fclose(fa);
    if (fb) fclose(fb);
    return equal;
}

static void test_golden_is_current(void)
{
    const char *fresh = mr_test_path("golden_fresh.txt");
    golden_stats gs;
    if (mr_test_sh("%s -c 'import numpy'", mr_test_python()) != 0) {
        fprintf(stderr, "\n  (skipped: %s has no numpy)\n", mr_test_python());
        return;
    }
    CU_ASSERT_EQUAL_FATAL(mr_test_sh("%s %s %s", mr_test_python(),
                                     mr_test_src("scripts/gen_golden_masks.py"), fresh),
                          0);
    CU_ASSERT(files_equal_ignoring_comments(mr_test_src("tests/data/golden_masks.txt"), fresh));
    gs = check_golden_file(fresh);
    CU_ASSERT(gs.masks >= 25);
    CU_ASSERT_EQUAL(gs.failures, 0);
}

/* ---------------------------------------------------------------- properties */

static size_t count_ones(const float *m, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += m[i] != 0.0f;
    return k;
}

static mr_mask_params params(mr_mask_type type, double accel, double cf, const uint32_t *seed)
{
    mr_mask_params p;
    memset(&p, 0, sizeof p);
    p.type = type;
    p.accel = accel;
    p.center_fraction = cf;
    p.seed = seed;
    p.seed_len = seed ? 1 : 0;
    return p;
}

/* Random masks: fastMRI's probability makes the EXPECTED number of kept columns W/R, so the
 * acceleration checked here is W / (mean kept columns over the seeds), the ratio of expectations.
 * (The mean of per-mask W/kept is larger by Jensen's inequality and is not what fastMRI targets.) */
static void test_random_mean_acceleration(void)
{
    static const struct { size_t w; double cf, r; } cases[] = {{368, 0.08, 4}, {368, 0.04, 8},
                                                               {640, 0.08, 4}, {320, 0.04, 8}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        size_t w = cases[c].w, total = 0;
        float *m = malloc(w * sizeof *m);
        double accel;
        for (uint32_t s = 0; s < 1000; s++) {
            mr_mask_params p = params(MR_MASK_RANDOM, cases[c].r, cases[c].cf, &s);
            CU_ASSERT_EQUAL_FATAL(mr_mask_create_1d(m, w, &p, NULL), MR_OK);
            total += count_ones(m, w);
        }
        accel = (double)w / ((double)total / 1000.0);
        fprintf(stderr, "\n  random W=%zu cf=%g R=%g: acceleration W/mean(kept) over 1000 seeds = %.4f",
                w, cases[c].cf, cases[c].r, accel);
        CU_ASSERT(fabs(accel / cases[c].r - 1.0) < 0.02);
        free(m);
    }
}

/* Equispaced: fastMRI keeps the centre block plus every R-th column from the offset, so the count
 * is num_low + #{i = offset (mod R) outside the block}: for R 4, cf 0.08, W 368 that is 114 for
 * three of the four offsets and 113 for the fourth (the one whose lattice hits 8 centre columns). */
static void test_equispaced_fastmri_count(void)
{
    float m[368];
    int n114 = 0;
    for (uint32_t s = 0; s < 50; s++) {
        size_t nl, pad, offset = 368, want;
        mr_mask_params p = params(MR_MASK_EQUISPACED, 4, 0.08, &s);
        CU_ASSERT_EQUAL_FATAL(mr_mask_create_1d(m, 368, &p, &nl), MR_OK);
        CU_ASSERT_EQUAL(nl, 29);
        pad = (368 - nl + 1) / 2;
        for (size_t i = 0; i < 368 && offset == 368; i++)
            if (m[i] != 0.0f && (i < pad || i >= pad + nl)) offset = i % 4;
        want = nl;
        for (size_t i = offset; i < 368; i += 4) want += i < pad || i >= pad + nl;
        CU_ASSERT_EQUAL(count_ones(m, 368), want);
        CU_ASSERT(want == 113 || want == 114);
        n114 += want == 114;
    }
    CU_ASSERT(n114 > 25);
}

/* Equispaced-fraction: fastMRI rounds an arange of the adjusted step, so a mask keeps W/R columns
 * only to within about one column (numpy's own masks, e.g. W 368 R 8 -> 45..47 of 46, W 396 R 8 ->
 * 48..50 of 49.5; see scripts/gen_golden_masks.py). Checked: |kept - W/R| <= 1.5 always, and the
 * acceleration within 2 % of R whenever one column is < 2 % of W/R (W/R > 50). */
static void test_equispaced_fraction_acceleration(void)
{
    static const struct { size_t w; double cf, r; } cases[] = {
        {368, 0.08, 4}, {368, 0.04, 8}, {372, 0.08, 4}, {640, 0.04, 8}, {320, 0.08, 4}, {396, 0.04, 8},
        {640, 0.08, 4}, {768, 0.04, 8}, {1000, 0.05, 6}};
    float m[1024];
    double worst = 0.0, worst_large = 0.0;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        for (uint32_t s = 0; s < 100; s++) {
            mr_mask_params p = params(MR_MASK_EQUISPACED_FRACTION, cases[c].r, cases[c].cf, &s);
            double nominal = (double)cases[c].w / cases[c].r, kept, err;
            CU_ASSERT_EQUAL_FATAL(mr_mask_create_1d(m, cases[c].w, &p, NULL), MR_OK);
            kept = (double)count_ones(m, cases[c].w);
            err = fabs(((double)cases[c].w / kept) / cases[c].r - 1.0);
            if (err > worst) worst = err;
            CU_ASSERT(fabs(kept - nominal) <= 1.5 + 1e-9);
            if (nominal > 50.0) {
                if (err > worst_large) worst_large = err;
                CU_ASSERT(err < 0.02);
            }
        }
    fprintf(stderr, "\n  equispaced-fraction: worst relative acceleration error %.4f (W/R > 50: %.4f)",
            worst, worst_large);
}

/* Every type keeps its centre lines (the 1-D block, or the 2-D Poisson block). */
static void test_centre_present_and_positive_zeros(void)
{
    static const mr_mask_type types[] = {MR_MASK_RANDOM, MR_MASK_EQUISPACED,
                                         MR_MASK_EQUISPACED_FRACTION, MR_MASK_POISSON};
    const size_t h = 64, w = 96;
    float *m = malloc(h * w * sizeof *m);
    for (size_t t = 0; t < 4; t++)
        for (uint32_t s = 0; s < 20; s++) {
            mr_mask_params p = params(types[t], 4, 0.08, &s);
            size_t nl = (size_t)rint(w * 0.08), pad = (w - nl + 1) / 2;
            size_t nh = (size_t)rint(h * 0.08), pad_h = (h - nh + 1) / 2;
            int centre_ok = 1, zeros_ok = 1, values_ok = 1;
            for (size_t i = 0; i < h * w; i++) m[i] = -1.0f;
            CU_ASSERT_EQUAL_FATAL(mr_mask_create_2d(m, h, w, &p), MR_OK);
            for (size_t y = 0; y < h; y++)
                for (size_t x = pad; x < pad + nl; x++)
                    if ((types[t] != MR_MASK_POISSON || (y >= pad_h && y < pad_h + nh)) &&
                        m[y * w + x] != 1.0f)
                        centre_ok = 0;
            for (size_t i = 0; i < h * w; i++) {
                if (m[i] == 0.0f && signbit(m[i])) zeros_ok = 0;
                if (m[i] != 0.0f && m[i] != 1.0f) values_ok = 0;
            }
            /* 1-D types: every row is the same column pattern. */
            if (types[t] != MR_MASK_POISSON)
                for (size_t y = 1; y < h; y++)
                    if (memcmp(m + y * w, m, w * sizeof *m)) values_ok = 0;
            CU_ASSERT(centre_ok);
            CU_ASSERT(zeros_ok);
            CU_ASSERT(values_ok);
        }
    free(m);
}

static void test_poisson_acceleration_density_speed(void)
{
    static const struct { size_t h, w; double r, cf; } cases[] = {
        {256, 256, 4, 0.08}, {256, 256, 8, 0.04}, {128, 96, 6, 0.1}, {320, 320, 10, 0.05},
        {64, 64, 2, 0.1}, {256, 256, 3, 0.0}};
    float *m = malloc(320 * 320 * sizeof *m), *m2 = malloc(320 * 320 * sizeof *m2);
    double worst_time = 0.0;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        for (uint32_t s = 0; s < 4; s++) {
            size_t h = cases[c].h, w = cases[c].w, n = h * w, kept, inner = 0, inner_n = 0,
                   outer = 0, outer_n = 0;
            mr_mask_params p = params(MR_MASK_POISSON, cases[c].r, cases[c].cf, &s);
            struct timespec t0, t1;
            double secs, accel;
            clock_gettime(CLOCK_MONOTONIC, &t0);
            CU_ASSERT_EQUAL_FATAL(mr_mask_create_2d(m, h, w, &p), MR_OK);
            clock_gettime(CLOCK_MONOTONIC, &t1);
            secs = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
            if (h * w == 256 * 256 && secs > worst_time) worst_time = secs;
            kept = count_ones(m, n);
            accel = (double)n / (double)kept;
            CU_ASSERT(fabs(accel / cases[c].r - 1.0) < 0.02);
            /* Variable density: the inner half-radius ring (outside the centre block) is denser than
             * the outer ring. */
            for (size_t y = 0; y < h; y++)
                for (size_t x = 0; x < w; x++) {
                    double dy = ((double)y - h / 2) / (h / 2.0), dx = ((double)x - w / 2) / (w / 2.0);
                    double d = sqrt(dy * dy + dx * dx);
                    if (d > 0.25 && d < 0.5) {
                        inner += m[y * w + x] != 0.0f;
                        inner_n++;
                    } else if (d > 0.75 && d < 1.0) {
                        outer += m[y * w + x] != 0.0f;
                        outer_n++;
                    }
                }
            CU_ASSERT((double)inner / inner_n > 1.3 * (double)outer / outer_n);
            if (s == 0)
                fprintf(stderr, "\n  poisson %zux%zu R=%g cf=%g: kept %zu, acceleration %.4f, %.3f s, "
                        "density inner %.3f outer %.3f",
                        h, w, cases[c].r, cases[c].cf, kept, accel, secs, (double)inner / inner_n,
                        (double)outer / outer_n);
            /* Deterministic for a seed; another seed gives another mask. */
            if (s == 1) {
                uint32_t s2 = s + 100;
                CU_ASSERT_EQUAL(mr_mask_create_2d(m2, h, w, &p), MR_OK);
                CU_ASSERT(memcmp(m, m2, n * sizeof *m) == 0);
                p.seed = &s2;
                CU_ASSERT_EQUAL(mr_mask_create_2d(m2, h, w, &p), MR_OK);
                CU_ASSERT(memcmp(m, m2, n * sizeof *m) != 0);
            }
        }
    fprintf(stderr, "\n  poisson 256x256: slowest %.3f s", worst_time); /* reported, not asserted */
    free(m);
    free(m2);
}

static void test_array_seed_differs_from_int_seed(void)
{
    /* fastMRI per-file seed: tuple(map(ord, "file1000001.h5")) goes through init_by_array. */
    static const char *name = "file1000001.h5";
    uint32_t words[32];
    size_t n = strlen(name);
    float a[368], b[368];
    mr_mask_params p = params(MR_MASK_RANDOM, 4, 0.08, NULL);
    for (size_t i = 0; i < n; i++) words[i] = (unsigned char)name[i];
    p.seed = words;
    p.seed_len = n;
    CU_ASSERT_EQUAL(mr_mask_create_1d(a, 368, &p, NULL), MR_OK);
    p.seed_len = 1;
    CU_ASSERT_EQUAL(mr_mask_create_1d(b, 368, &p, NULL), MR_OK);
    CU_ASSERT(memcmp(a, b, sizeof a) != 0);
}

static void expect_usage(mr_status st, const char *needle)
{
    CU_ASSERT_EQUAL(st, MR_ERR_USAGE);
    if (!strstr(mr_error_message(), needle)) {
        fprintf(stderr, "\n  message '%s' lacks '%s'", mr_error_message(), needle);
        CU_FAIL("error message does not name the parameter");
    }
}

static void test_bad_parameters(void)
{
    float m[64 * 64];
    mr_mask_type t;
    mr_mask_params p;
    uint32_t s = 1;

    expect_usage(mr_mask_type_parse(&t, "gaussian"), "gaussian");
    CU_ASSERT_EQUAL(mr_mask_type_parse(&t, "equispaced-fraction"), MR_OK);
    CU_ASSERT_EQUAL(t, MR_MASK_EQUISPACED_FRACTION);
    CU_ASSERT_STRING_EQUAL(mr_mask_type_name(MR_MASK_POISSON), "poisson");

    p = params(MR_MASK_RANDOM, 1.0, 0.08, &s);
    expect_usage(mr_mask_create_1d(m, 64, &p, NULL), "acceleration");
    p.accel = NAN;
    expect_usage(mr_mask_create_1d(m, 64, &p, NULL), "acceleration");
    p = params(MR_MASK_RANDOM, 4, -0.1, &s);
    expect_usage(mr_mask_create_1d(m, 64, &p, NULL), "center fraction");
    p.center_fraction = 1.0;
    expect_usage(mr_mask_create_2d(m, 8, 8, &p), "center fraction");
    p = params(MR_MASK_RANDOM, 4, 0.08, &s);
    expect_usage(mr_mask_create_1d(m, 0, &p, NULL), "shape");
    expect_usage(mr_mask_create_2d(m, 0, 8, &p), "shape");
    p = params(MR_MASK_RANDOM, 4, 0.5, &s); /* num_low 32 > W/R = 16: probability < 0 */
    expect_usage(mr_mask_create_1d(m, 64, &p, NULL), "probability");
    p = params(MR_MASK_EQUISPACED, 2.5, 0.08, &s);
    expect_usage(mr_mask_create_1d(m, 64, &p, NULL), "integer");
    p = params(MR_MASK_EQUISPACED_FRACTION, 4, 0.3, &s);
    expect_usage(mr_mask_create_1d(m, 64, &p, NULL), "num_low * R");
    p = params(MR_MASK_POISSON, 4, 0.08, &s);
    expect_usage(mr_mask_create_1d(m, 64, &p, NULL), "poisson");
    p = params(MR_MASK_POISSON, 8, 0.5, &s); /* centre 32x32 = 1024 > 4096/8 */
    expect_usage(mr_mask_create_2d(m, 64, 64, &p), "centre block");
}

static void test_infer(void)
{
    const size_t c = 2, h = 4, w = 5;
    mr_cfloat k[2 * 4 * 5];
    float m[4 * 5];
    double frac;
    memset(k, 0, sizeof k);
    k[0 * h * w + 1 * w + 2] = 1.0f;
    k[1 * h * w + 3 * w + 4] = 0.5f * I;
    k[1 * h * w + 1 * w + 2] = -2.0f;
    frac = mr_mask_infer(m, k, c, h, w);
    CU_ASSERT_DOUBLE_EQUAL(frac, 2.0 / 20.0, 1e-12);
    for (size_t i = 0; i < h * w; i++) {
        float want = (i == 1 * w + 2 || i == 3 * w + 4) ? 1.0f : 0.0f;
        CU_ASSERT_EQUAL(m[i], want);
        CU_ASSERT(!signbit(m[i]));
    }
}

/* ---------------------------------------------------------------- the CLI */

static int have_cli(void)
{
    if (mr_path_is_file(mr_test_bin())) return 1;
    fprintf(stderr, "\n  (skipped: %s not built)", mr_test_bin());
    return 0;
}

static void test_cli_outputs(void)
{
    const char *py = mr_test_python();
    if (!have_cli()) return;
    /* .h5 with fastMRI's per-file seed: the 1-D mask equals the golden fastMRI mask for
     * "file1000001.h5" (random, W 368, cf 0.08, R 4), and mask2d repeats it. */
    CU_ASSERT_EQUAL(mr_test_sh("%s mask --type random --accel 4 --center-fraction 0.08 --shape 640,368 "
                               "--seed-file /data/knee/file1000001.h5 --output %s",
                               mr_test_bin(), mr_test_path("m.h5")),
                    0);
    CU_ASSERT(strstr(mr_test_output(), "acceleration") != NULL);
    if (mr_test_sh("%s -c 'import h5py'", py) == 0) {
        CU_ASSERT_EQUAL(
            mr_test_sh("%s -c \"import h5py, numpy as np\n"
                       "f = h5py.File('%s', 'r'); m = f['mask'][()]; m2 = f['mask2d'][()]\n"
                       "g = [l.split() for l in open('%s') if l.startswith('mask random 368 0.08 4.0 14 ')][0]\n"
                       "want = np.array([c == '1' for c in g[-1]])\n"
                       "assert m.shape == (368,) and m2.shape == (640, 368), (m.shape, m2.shape)\n"
                       "assert (m.astype(bool) == want).all() and (m2 == want[None, :]).all()\n"
                       "assert f.attrs['acceleration'] == 4 and f.attrs['num_low_frequency'] == int(g[-2])\n"
                       "print('h5 ok')\"",
                       py, mr_test_path("m.h5"), mr_test_src("tests/data/golden_masks.txt")),
            0);
    }
    /* A non-ASCII name: the seed words are its Unicode code points, as Python's ord() gives. */
    CU_ASSERT_EQUAL(mr_test_sh("%s mask --type equispaced-fraction --accel 4 --center-fraction 0.08 "
                               "--shape 16,368 --seed-file 'knee_\xc3\xa9\xe2\x82\xac.h5' --output %s",
                               mr_test_bin(), mr_test_path("u.h5")),
                    0);
    if (mr_test_sh("%s -c 'import h5py'", py) == 0) {
        CU_ASSERT_EQUAL(
            mr_test_sh("%s -c \"import h5py, numpy as np\n"
                       "m = h5py.File('%s', 'r')['mask'][()]\n"
                       "g = [l.split() for l in open('%s') if l.startswith('mask equispaced-fraction 368 0.08 4.0 10 ')][0]\n"
                       "assert [int(x) for x in g[6:16]] == [ord(c) for c in 'knee_\\u00e9\\u20ac.h5']\n"
                       "assert (m.astype(bool) == np.array([c == '1' for c in g[-1]])).all()\n"
                       "print('utf-8 seed ok')\"",
                       py, mr_test_path("u.h5"), mr_test_src("tests/data/golden_masks.txt")),
            0);
    }
    CU_ASSERT_EQUAL(mr_test_sh("%s mask --type poisson --accel 6 --center-fraction 0.06 --shape 128,96 "
                               "--seed 3 --output %s",
                               mr_test_bin(), mr_test_path("p.png")),
                    0);
    CU_ASSERT(mr_path_is_file(mr_test_path("p.png")));
    CU_ASSERT_EQUAL(mr_test_sh("%s mask --type equispaced --accel 4 --center-fraction 0.08 --shape 32,368 "
                               "--output %s",
                               mr_test_bin(), mr_test_path("e.cfl")),
                    0);
    CU_ASSERT(strstr(mr_test_output(), "114") != NULL);
    CU_ASSERT(mr_path_is_file(mr_test_path("e.cfl")) && mr_path_is_file(mr_test_path("e.hdr")));
    CU_ASSERT_EQUAL(mr_test_sh("%s mask --help", mr_test_bin()), 0);
    CU_ASSERT(strstr(mr_test_output(), "--center-fraction") != NULL);
}

static void test_cli_errors(void)
{
    const char *out = mr_test_path("bad.png");
    if (!have_cli()) return;
    CU_ASSERT_EQUAL(mr_test_sh("%s mask --type random --accel 0.5 --center-fraction 0.08 --shape 64,64 "
                               "--output %s",
                               mr_test_bin(), out),
                    1);
    CU_ASSERT(strstr(mr_test_output(), "--accel") != NULL);
    CU_ASSERT_EQUAL(mr_test_sh("%s mask --type spiral --accel 4 --center-fraction 0.08 --shape 64,64 "
                               "--output %s",
                               mr_test_bin(), out),
                    1);
    CU_ASSERT(strstr(mr_test_output(), "spiral") != NULL);
    CU_ASSERT_EQUAL(mr_test_sh("%s mask --type random --accel 4 --center-fraction 0.08 --shape 64x64 "
                               "--output %s",
                               mr_test_bin(), out),
                    1);
    CU_ASSERT(strstr(mr_test_output(), "--shape") != NULL);
    CU_ASSERT_EQUAL(mr_test_sh("%s mask --type random --accel 4 --center-fraction 0.08 --shape 64,64 "
                               "--output %s",
                               mr_test_bin(), mr_test_path("bad.nii")),
                    1);
    CU_ASSERT(strstr(mr_test_output(), "--output") != NULL);
    CU_ASSERT_EQUAL(mr_test_sh("%s mask --type random --accel 4 --center-fraction 0.6 --shape 64,64 "
                               "--output %s",
                               mr_test_bin(), out),
                    1);
    CU_ASSERT(strstr(mr_test_output(), "probability") != NULL);
    CU_ASSERT_EQUAL(mr_test_sh("%s mask --type random --accel 4 --center-fraction 0.08 --shape 64,64 "
                               "--seed 1 --seed-file a.h5 --output %s",
                               mr_test_bin(), out),
                    1);
    CU_ASSERT_EQUAL(mr_test_sh("%s mask --accel 4 --center-fraction 0.08 --shape 64,64 --output %s",
                               mr_test_bin(), out),
                    1);
    CU_ASSERT(strstr(mr_test_output(), "--type") != NULL);
    CU_ASSERT(!mr_path_is_file(out));
    CU_ASSERT_EQUAL(mr_test_count_files(mr_test_tmpdir(), ".partial"), 0);
}

/* Equispaced or random, read off a column mask: every fastMRI equispaced / equispaced-fraction mask
 * is called equispaced and every random one random, over sizes, accelerations, centres and seeds;
 * a mask without a sampled centre cannot be told. */
static void test_kind_from_mask(void)
{
    const size_t widths[4] = {181, 256, 320, 368};
    const double acc[2] = {4, 8}, cf[2] = {0.08, 0.04};
    float m[400];
    int wrong = 0, total = 0;
    for (int wi = 0; wi < 4; wi++)
        for (int a = 0; a < 2; a++)
            for (uint32_t seed = 1; seed <= 20; seed++)
                for (int t = 0; t < 3; t++) {
                    mr_mask_type ty = t == 0 ? MR_MASK_RANDOM : t == 1 ? MR_MASK_EQUISPACED
                                                                       : MR_MASK_EQUISPACED_FRACTION;
                    mr_mask_params p = {ty, acc[a], cf[a], &seed, 1};
                    CU_ASSERT_EQUAL_FATAL(mr_mask_create_1d(m, widths[wi], &p, NULL), MR_OK);
                    int eq = mr_mask_is_equispaced(m, widths[wi]);
                    total++;
                    if (eq != (ty != MR_MASK_RANDOM)) {
                        wrong++;
                        fprintf(stderr, "width %zu R %g seed %u %s: %d\n", widths[wi], acc[a],
                                seed, mr_mask_type_name(ty), eq);
                    }
                }
    CU_ASSERT_EQUAL(wrong, 0);
    CU_ASSERT_EQUAL(total, 480);
    for (size_t j = 0; j < 64; j++) m[j] = j % 4 == 0; /* no centre */
    m[32] = 0;
    CU_ASSERT_EQUAL(mr_mask_is_equispaced(m, 64), -1);
}

/* The mask difficulty (mr_mask_difficulty): exact on a spectrum that is log-linear between the
 * acquired columns; 1 on average over fastMRI random draws whatever the spectrum's width; above 1
 * for a draw that misses the columns beside the centre; the noise taken off per column; errors. */
static void test_difficulty(void)
{
    enum { W = 201 };
    double E[W], acc[W];
    float m[W];
    /* E = exp(-|x - 100| / 12): log-linear on each side of the centre (acquired) */
    for (int x = 0; x < W; x++) E[x] = exp(-fabs(x - 100.0) / 12.0);
    for (int x = 0; x < W; x++) m[x] = (x >= 92 && x <= 108) || x % 4 == 0 || x == W - 1;
    double miss = 0, outer = 0, nc = 17, nacq = 0;
    for (int x = 0; x < W; x++) {
        nacq += m[x] != 0;
        if (!m[x]) miss += E[x];
        if (x < 92 || x > 108) outer += E[x];
        acc[x] = m[x] ? E[x] : 12345.0; /* unacquired columns' values are never read */
    }
    double p4 = (W / 4.0 - nc) / (W - nc), d = 0;
    CU_ASSERT_EQUAL_FATAL(mr_mask_difficulty(&d, acc, m, W, 4), MR_OK);
    CU_ASSERT_DOUBLE_EQUAL(d, miss / ((1 - p4) * outer), 1e-9 * d);
    /* R <= 1: the mask's own outer fraction */
    double pown = (nacq - nc) / (W - nc);
    CU_ASSERT_EQUAL(mr_mask_difficulty(&d, acc, m, W, 0), MR_OK);
    CU_ASSERT_DOUBLE_EQUAL(d, miss / ((1 - pown) * outer), 1e-9 * d);

    /* over fastMRI random draws at 4x: about 1 on average, for a narrow and a wide spectrum */
    const double widths[2] = {4, 30};
    for (int wi = 0; wi < 2; wi++) {
        for (int x = 0; x < W; x++) E[x] = pow(1 + fabs(x - 100.0) / widths[wi], -2.5);
        double sum = 0, lo = 1e9, hi = 0;
        for (uint32_t seed = 1; seed <= 300; seed++) {
            mr_mask_params p = {MR_MASK_RANDOM, 4, 0.08, &seed, 1};
            CU_ASSERT_EQUAL_FATAL(mr_mask_create_1d(m, W, &p, NULL), MR_OK);
            CU_ASSERT_EQUAL_FATAL(mr_mask_difficulty(&d, E, m, W, 4), MR_OK);
            sum += d;
            if (d < lo) lo = d;
            if (d > hi) hi = d;
        }
        fprintf(stderr, "spectrum width %g: mean difficulty over 300 draws %.3f (%.3f-%.3f)\n",
                widths[wi], sum / 300, lo, hi);
        CU_ASSERT(fabs(sum / 300 - 1) < 0.1);
        CU_ASSERT(lo < 0.95 && hi > 1.05); /* the draws differ */
    }
    /* missing the columns beside the centre is hard, missing only the edge is easy */
    /* (the same number of outer lines, 16 a side: near the centre or at the edge) */
    double hard = 0, easy = 0;
    for (int x = 0; x < W; x++) {
        int dx = abs(x - 100);
        m[x] = dx <= 8 || (dx >= 70 && dx % 2 == 0 && dx <= 100);
    }
    CU_ASSERT_EQUAL(mr_mask_difficulty(&hard, E, m, W, 4), MR_OK);
    for (int x = 0; x < W; x++) {
        int dx = abs(x - 100);
        m[x] = dx <= 8 || (dx >= 10 && dx % 2 == 0 && dx <= 40) || x == 0 || x == W - 1;
    }
    CU_ASSERT_EQUAL(mr_mask_difficulty(&easy, E, m, W, 4), MR_OK);
    fprintf(stderr, "hard %.3f, easy %.3f\n", hard, easy);
    CU_ASSERT(hard > 1.1 && easy < 0.9);

    /* the noise energy per column: 2 sd^2 H C */
    mr_cfloat k[2 * 3 * 4];
    for (int i = 0; i < 24; i++) k[i] = 1.0f + 0.0f * I;
    double a4[4] = {0, 0, 0, 0};
    mr_kspace_column_energy_add(a4, k, 2, 3, 4, 0.5);
    for (int x = 0; x < 4; x++) CU_ASSERT_DOUBLE_EQUAL(a4[x], 6.0 - 2 * 0.25 * 3 * 2, 1e-12);

    /* fully sampled: nothing missing; one column or no centre: errors */
    for (int x = 0; x < W; x++) m[x] = 1;
    CU_ASSERT_EQUAL(mr_mask_difficulty(&d, E, m, W, 4), MR_OK);
    CU_ASSERT_EQUAL(d, 0);
    for (int x = 0; x < W; x++) m[x] = x == 100;
    CU_ASSERT_EQUAL(mr_mask_difficulty(&d, E, m, W, 4), MR_ERR_INPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(mr_error_message(), "1 of 201 columns acquired"));
    for (int x = 0; x < W; x++) m[x] = x % 4 == 1;
    CU_ASSERT_EQUAL(mr_mask_difficulty(&d, E, m, W, 4), MR_ERR_INPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(mr_error_message(), "the centre column not"));
    for (int x = 0; x < W; x++) m[x] = x % 4 == 0 || x == 100, acc[x] = -1;
    CU_ASSERT_EQUAL(mr_mask_difficulty(&d, acc, m, W, 4), MR_ERR_INPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(mr_error_message(), "no signal energy"));
    mr_error_clear();
}

/* The ghost phase (mr_mask_ghost_phase): a comb of spacing 4 about the centre column n / 2 has
 * ghosts at n / 4 multiples with phases 2 pi o j / 4 (o its offset): all real for o = 0, 2
 * (rho = 1), the first and third in quadrature for o = 1, 3 (rho = 1/3); fastMRI equispaced masks
 * fall in two groups by offset, random masks in between; errors. */
static void test_ghost_phase(void)
{
    enum { N = 256 };
    float m[N];
    double rho;
    for (int o = 0; o < 4; o++) {
        for (int k = 0; k < N; k++) m[k] = ((k - N / 2 - o) % 4 + 4) % 4 == 0;
        CU_ASSERT_EQUAL_FATAL(mr_mask_ghost_phase(&rho, m, N), MR_OK);
        fprintf(stderr, "comb offset %d: rho %.6f\n", o, rho);
        CU_ASSERT_DOUBLE_EQUAL(rho, o % 2 ? 1.0 / 3 : 1.0, 1e-9);
    }
    /* fastMRI equispaced 4x, 181 columns: two groups (in phase ~0.98, mixed ~0.47-0.5) */
    int hi = 0, lo = 0;
    double rmin = 1, rmax = 0;
    for (uint32_t seed = 1; seed <= 40; seed++) {
        uint32_t sd = seed;
        mr_mask_params p = {MR_MASK_EQUISPACED, 4, 0.08, &sd, 1};
        CU_ASSERT_EQUAL_FATAL(mr_mask_create_1d(m, 181, &p, NULL), MR_OK);
        CU_ASSERT_EQUAL_FATAL(mr_mask_ghost_phase(&rho, m, 181), MR_OK);
        hi += rho > 0.9, lo += rho < 0.6;
        sd = seed;
        p.type = MR_MASK_RANDOM;
        CU_ASSERT_EQUAL_FATAL(mr_mask_create_1d(m, 181, &p, NULL), MR_OK);
        CU_ASSERT_EQUAL_FATAL(mr_mask_ghost_phase(&rho, m, 181), MR_OK);
        rmin = rho < rmin ? rho : rmin, rmax = rho > rmax ? rho : rmax;
    }
    fprintf(stderr, "equispaced 4x: %d draws in phase, %d mixed; random: rho %.3f..%.3f\n", hi, lo,
            rmin, rmax);
    CU_ASSERT_EQUAL(hi + lo, 40);
    CU_ASSERT(hi >= 8 && lo >= 8);
    CU_ASSERT(rmin > 0.4 && rmax < 0.9);
    for (int k = 0; k < N; k++) m[k] = 1;
    CU_ASSERT_EQUAL(mr_mask_ghost_phase(&rho, m, N), MR_ERR_INPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(mr_error_message(), "no aliasing"));
    mr_error_clear();
    CU_ASSERT_EQUAL(mr_mask_ghost_phase(&rho, m, 1), MR_ERR_INPUT);
    mr_error_clear();
}

int main(void)
{
    static const mr_test_case cases[] = {
        {"RNG draws and fastMRI masks equal the numpy goldens", test_rng_and_masks_match_golden},
        {"goldens regenerate identically with numpy", test_golden_is_current},
        {"random: mean acceleration over 1000 seeds", test_random_mean_acceleration},
        {"equispaced: fastMRI column count", test_equispaced_fastmri_count},
        {"equispaced-fraction: per-mask acceleration", test_equispaced_fraction_acceleration},
        {"centre present, +0.0 zeros, rows repeat", test_centre_present_and_positive_zeros},
        {"poisson: acceleration, density, determinism, speed", test_poisson_acceleration_density_speed},
        {"tuple seed differs from int seed", test_array_seed_differs_from_int_seed},
        {"bad parameters are usage errors with messages", test_bad_parameters},
        {"mask inference from k-space", test_infer},
        {"equispaced or random, read off the mask", test_kind_from_mask},
        {"mask difficulty: exact, 1 on average over draws, hard and easy draws, noise, errors",
         test_difficulty},
        {"ghost phase: combs exact, fastMRI equispaced in two groups, random between, errors",
         test_ghost_phase},
        {"mrpipe mask writes h5/png/cfl", test_cli_outputs},
        {"mrpipe mask errors", test_cli_errors},
        {NULL, NULL},
    };
    return mr_test_run("mask", cases);
}
