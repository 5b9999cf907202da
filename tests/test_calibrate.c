/*
 * test_calibrate.c: recalibration of a variance network through the deployment path
 * (`mrpipe calibrate`, mr_sigma_recalibrate; docs/uncertainty.md):
 *
 *  - the factors: ratios |e| / SD drawn as |N(0, a^2)| give a factor a (the SD was a times too
 *    small); per mask kind (random 1.3, equispaced 0.9 at 4x) mr_sigma_scale_full then returns the
 *    old scale times the kind's factor, the pooled scale moves by the pooled factor, and an
 *    acceleration without images keeps its scales exactly;
 *  - per input method (the artefact network, zf 1.2 and cs-l1 0.8): method and kind compose;
 *  - errors: a network without scales per acceleration, an unknown mask kind, R < 1, too few pixels;
 *  - the CLI on real reconstructions (cs-l1 4x of ch2, random and equispaced masks): the network
 *    it writes gives SD maps whose 90 % intervals cover 90 % of the calibration images' foreground
 *    (+-1.5 points, per mask kind), the input network untouched; bad lists name the file, line and
 *    field, and nothing is written.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mr_nn.h"
#include "mr_recon.h"
#include "mr_train.h"
#include "testutil.h"

#define TEMPLATES "/usr/share/mricron/templates"
#define Z90 1.6448536269514722 /* the 90 % two-sided normal quantile */

static int have_data(void)
{
    return mr_path_is_file(TEMPLATES "/ch2.nii.gz");
}

/* n ratios |N(0, a^2)| */
static double *ratios(size_t n, double a, unsigned long long seed)
{
    double *r = malloc(n * sizeof *r);
    mr_test_rng g;
    mr_test_rng_init(&g, seed);
    for (size_t i = 0; i < n; i++) r[i] = fabs(a * mr_test_randn(&g));
    return r;
}

static void mask_cols(float *cols, size_t w, mr_mask_type t, double accel)
{
    uint32_t seed = 7;
    mr_mask_params p = {t, accel, 0.08, &seed, 1};
    CU_ASSERT_EQUAL_FATAL(mr_mask_create_1d(cols, w, &p, NULL), MR_OK);
}

static void test_factors_per_kind(void)
{
    mr_nn_model *m = NULL;
    CU_ASSERT_EQUAL_FATAL(mr_nn_model_load(&m, mr_test_src("models/cs-l1_sigma.h5"), NULL), MR_OK);
    CU_ASSERT_EQUAL_FATAL(m->meta.n_calibration_accel, 2);
    float rnd[256], eq[256];
    mask_cols(rnd, 256, MR_MASK_RANDOM, 4);
    mask_cols(eq, 256, MR_MASK_EQUISPACED, 4);
    CU_ASSERT_EQUAL(mr_mask_is_equispaced(rnd, 256), 0);
    CU_ASSERT_EQUAL(mr_mask_is_equispaced(eq, 256), 1);
    /* the scales the SD maps were made with (the network may have per-kind scales already) */
    double s4 = mr_sigma_scale_accel(m, 4), s8 = mr_sigma_scale_accel(m, 8),
           r4 = mr_sigma_scale_full(m, NULL, rnd, 256, 4), e4 = mr_sigma_scale_full(m, NULL, eq, 256, 4),
           e8 = mr_sigma_scale_full(m, NULL, eq, 256, 8);
    const size_t n = 200000;
    double *a = ratios(n, 1.3, 1), *b = ratios(n, 0.9, 2);
    mr_recal_image im[2] = {{a, n, 4, "random", "cs-l1", 0, 0, NULL, 0, 0, 0, NULL, NULL, NULL}, {b, n, 4.2, "equispaced", NULL, 0, 0, NULL, 0, 0, 0, NULL, NULL, NULL}};
    char text[2048];
    CU_ASSERT_EQUAL_FATAL(mr_sigma_recalibrate(m, im, 2, 1000, "synthetic", text, sizeof text),
                          MR_OK);
    fprintf(stderr, "%s\n", text);
    CU_ASSERT_EQUAL(m->meta.n_calibration_masks, 2);
    double fr = mr_sigma_scale_full(m, NULL, rnd, 256, 4) / r4,
           fe = mr_sigma_scale_full(m, NULL, eq, 256, 4) / e4,
           fp = mr_sigma_scale_accel(m, 4) / s4;
    fprintf(stderr, "factors: random %.4f (1.3), equispaced %.4f (0.9), pooled %.4f\n", fr, fe, fp);
    CU_ASSERT(fabs(fr - 1.3) < 0.02);
    CU_ASSERT(fabs(fe - 0.9) < 0.015);
    CU_ASSERT(fp > 0.95 && fp < 1.25); /* between the two */
    /* 8x had no images: kept exactly, whatever the mask */
    CU_ASSERT_DOUBLE_EQUAL(mr_sigma_scale_accel(m, 8), s8, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(mr_sigma_scale_full(m, NULL, eq, 256, 8), e8, 1e-9);
    CU_ASSERT_PTR_NOT_NULL(strstr(m->meta.calibration, "recalibrated by mrpipe calibrate on 2 "
                                                       "image(s) of synthetic"));
    /* written and read back */
    const char *p = mr_test_path("recal.h5");
    CU_ASSERT_EQUAL_FATAL(mr_nn_model_save(m, p), MR_OK);
    mr_nn_model *q = NULL;
    CU_ASSERT_EQUAL_FATAL(mr_nn_model_load(&q, p, NULL), MR_OK);
    CU_ASSERT_DOUBLE_EQUAL(mr_sigma_scale_full(q, NULL, rnd, 256, 4),
                           mr_sigma_scale_full(m, NULL, rnd, 256, 4), 1e-9);
    CU_ASSERT_STRING_EQUAL(q->meta.calibration_masks[0], "random");
    /* again on the recalibrated network: its SDs are a factor 1.3 larger now, so the same errors
     * ask for 1.0 (the kind's scale composes with what the SD was made with) */
    double *a2 = ratios(n, 1.0, 3);
    mr_recal_image im2[1] = {{a2, n, 4, "random", NULL, 0, 0, NULL, 0, 0, 0, NULL, NULL, NULL}};
    double before = mr_sigma_scale_full(q, NULL, rnd, 256, 4);
    CU_ASSERT_EQUAL(mr_sigma_recalibrate(q, im2, 1, 1000, NULL, text, sizeof text), MR_OK);
    CU_ASSERT(fabs(mr_sigma_scale_full(q, NULL, rnd, 256, 4) / before - 1) < 0.015);
    free(a), free(b), free(a2);
    mr_nn_model_destroy(m), mr_nn_model_destroy(q);
}

static void test_factors_per_method(void)
{
    mr_nn_model *m = NULL;
    CU_ASSERT_EQUAL_FATAL(mr_nn_model_load(&m, mr_test_src("models/artefact_sigma.h5"), NULL),
                          MR_OK);
    CU_ASSERT_EQUAL_FATAL(m->meta.n_calibration_methods, 2);
    float rnd[256];
    mask_cols(rnd, 256, MR_MASK_RANDOM, 4);
    /* the scales the SD maps were made with (method and, when the network has them, kind) */
    double z4 = mr_sigma_scale_full(m, "zf", rnd, 256, 4), c4 = mr_sigma_scale_full(m, "cs-l1", rnd, 256, 4);
    const size_t n = 200000;
    double *a = ratios(n, 1.2, 4), *b = ratios(n, 0.8, 5);
    mr_recal_image im[2] = {{a, n, 4, "random", "zf", 0, 0, NULL, 0, 0, 0, NULL, NULL, NULL}, {b, n, 4, "random", "cs-l1", 0, 0, NULL, 0, 0, 0, NULL, NULL, NULL}};
    char text[2048];
    CU_ASSERT_EQUAL_FATAL(mr_sigma_recalibrate(m, im, 2, 1000, NULL, text, sizeof text), MR_OK);
    fprintf(stderr, "%s\n", text);
    double fz = mr_sigma_scale_full(m, "zf", rnd, 256, 4) / z4,
           fc = mr_sigma_scale_full(m, "cs-l1", rnd, 256, 4) / c4;
    fprintf(stderr, "factors: zf %.4f (1.2), cs-l1 %.4f (0.8)\n", fz, fc);
    CU_ASSERT(fabs(fz - 1.2) < 0.02);
    CU_ASSERT(fabs(fc - 0.8) < 0.015);
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "input zf x"));
    free(a), free(b);
    mr_nn_model_destroy(m);
}

/* Mask difficulty: random-mask images whose errors grow as d^1 (d the volume's mask difficulty)
 * and equispaced ones whose errors do not: calibrate finds slope ~1 and ~0, each image's SD then
 * covers ~90 % of its own pixels (the spread over volumes gone), the factor clamps, is written and
 * read back, and an image without a difficulty keeps factor 1. */
static void test_difficulty_factors(void)
{
    mr_nn_model *m = NULL;
    CU_ASSERT_EQUAL_FATAL(mr_nn_model_load(&m, mr_test_src("models/cs-l1_sigma.h5"), NULL), MR_OK);
    m->meta.n_noise_factors = 0, m->meta.has_difficulty = 0;
    float rnd[256], eq[256];
    mask_cols(rnd, 256, MR_MASK_RANDOM, 4);
    mask_cols(eq, 256, MR_MASK_EQUISPACED, 4);
    enum { N = 12 };
    const size_t n = 40000;
    double *r[2 * N], d[N];
    mr_recal_image im[2 * N];
    for (int i = 0; i < N; i++) {
        d[i] = 0.8 * pow(1.45 / 0.8, i / (N - 1.0)); /* 0.8 .. 1.45 */
        r[i] = ratios(n, 1.1 * d[i], 100 + (unsigned)i);
        r[N + i] = ratios(n, 0.9, 200 + (unsigned)i);
        im[i] = (mr_recal_image){r[i], n, 4, "random", NULL, 0, d[i], NULL, 0, 0, 0, NULL, NULL, NULL};
        im[N + i] = (mr_recal_image){r[N + i], n, 4, "equispaced", NULL, 0, d[i], NULL, 0, 0, 0, NULL, NULL, NULL};
    }
    double r4 = mr_sigma_scale_full(m, NULL, rnd, 256, 4), e4 = mr_sigma_scale_full(m, NULL, eq, 256, 4);
    char text[2048];
    CU_ASSERT_EQUAL_FATAL(mr_sigma_recalibrate(m, im, 2 * N, 1000, NULL, text, sizeof text), MR_OK);
    fprintf(stderr, "%s\n", text);
    CU_ASSERT_EQUAL_FATAL(m->meta.has_difficulty, 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "mask difficulty R 4 random: slope"));
    /* each image's SD factor against what its errors ask for (1.1 d, 0.9) */
    double worst = 0;
    for (int i = 0; i < N; i++) {
        double fr = mr_sigma_scale_full(m, NULL, rnd, 256, 4) / r4 *
                    mr_sigma_difficulty_factor(m, rnd, 256, 4, d[i]),
               fe = mr_sigma_scale_full(m, NULL, eq, 256, 4) / e4 *
                    mr_sigma_difficulty_factor(m, eq, 256, 4, d[i]);
        double c90 = mr_sigma_coverage(r[i], n, Z90, fr);
        if (fabs(c90 - 0.9) > worst) worst = fabs(c90 - 0.9);
        CU_ASSERT(fabs(fr / (1.1 * d[i]) - 1) < 0.03);
        CU_ASSERT(fabs(fe / 0.9 - 1) < 0.03);
    }
    fprintf(stderr, "worst per-image coverage gap at 90 %%: %.2f points\n", 100 * worst);
    CU_ASSERT(worst < 0.015);
    /* slope ~1 about the random images' mean log d, ~0 for equispaced (b >= 0) */
    int kr = strcmp(m->meta.calibration_masks[0], "random") ? 1 : 0;
    CU_ASSERT(fabs(m->meta.difficulty[kr][0][1] - 1) < 0.05);
    CU_ASSERT(fabs(m->meta.difficulty[1 - kr][0][1]) < 0.05);
    /* clamped; unknown difficulty, no mask or an 8x network cell without images: 1 */
    CU_ASSERT_DOUBLE_EQUAL(mr_sigma_difficulty_factor(m, rnd, 256, 4, 50), MR_DIFFICULTY_MAX, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(mr_sigma_difficulty_factor(m, rnd, 256, 4, 1e-4), MR_DIFFICULTY_MIN, 1e-12);
    CU_ASSERT_EQUAL(mr_sigma_difficulty_factor(m, rnd, 256, 4, 0), 1);
    CU_ASSERT_EQUAL(mr_sigma_difficulty_factor(m, NULL, 0, 4, 1.2), 1);
    /* written and read back */
    const char *p = mr_test_path("recal_difficulty.h5");
    CU_ASSERT_EQUAL_FATAL(mr_nn_model_save(m, p), MR_OK);
    mr_nn_model *q = NULL;
    CU_ASSERT_EQUAL_FATAL(mr_nn_model_load(&q, p, NULL), MR_OK);
    CU_ASSERT_EQUAL(q->meta.has_difficulty, 1);
    CU_ASSERT_DOUBLE_EQUAL(mr_sigma_difficulty_factor(q, rnd, 256, 4, 1.3),
                           mr_sigma_difficulty_factor(m, rnd, 256, 4, 1.3), 1e-12);
    /* recalibrating the recalibrated network on the same errors: its SD maps carry the factors
     * already, so the errors now ask for factor 1 in every volume */
    double *r2[N];
    mr_recal_image im2[N];
    for (int i = 0; i < N; i++) {
        double f = mr_sigma_scale_full(q, NULL, rnd, 256, 4) / r4 *
                   mr_sigma_difficulty_factor(q, rnd, 256, 4, d[i]);
        r2[i] = ratios(n, 1.1 * d[i] / f, 300 + (unsigned)i);
        im2[i] = (mr_recal_image){r2[i], n, 4, "random", NULL, 0, d[i], NULL, 0, 0, 0, NULL, NULL, NULL};
    }
    double before[N];
    for (int i = 0; i < N; i++)
        before[i] = mr_sigma_scale_full(q, NULL, rnd, 256, 4) * mr_sigma_difficulty_factor(q, rnd, 256, 4, d[i]);
    CU_ASSERT_EQUAL(mr_sigma_recalibrate(q, im2, N, 1000, NULL, text, sizeof text), MR_OK);
    for (int i = 0; i < N; i++) {
        double after = mr_sigma_scale_full(q, NULL, rnd, 256, 4) * mr_sigma_difficulty_factor(q, rnd, 256, 4, d[i]);
        CU_ASSERT(fabs(after / before[i] - 1) < 0.03);
    }
    /* a corrupt attribute is refused, naming it */
    CU_ASSERT_EQUAL(mr_test_sh("%s -c \"import h5py; f = h5py.File('%s', 'a'); "
                               "f.attrs['calibration_mask_difficulty'] = [1.0, 2.0, 3.0]\"",
                               "/usr/bin/python3", p), 0);
    mr_nn_model *bad = NULL;
    CU_ASSERT_EQUAL(mr_nn_model_load(&bad, p, NULL), MR_ERR_INPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(mr_error_message(), "calibration_mask_difficulty"));
    mr_error_clear();
    for (int i = 0; i < N; i++) free(r[i]), free(r[N + i]), free(r2[i]);
    mr_nn_model_destroy(m), mr_nn_model_destroy(q);
}

/* Combination weights (input SD, bootstrap) written to `file` and read back the same for both
 * methods, kept by a second recalibration on the same images (its SD maps were made with them:
 * no "weights" in its text), and a corrupt attribute (`bad`) refused, naming it. */
static void weights_kept(const mr_nn_model *m, const mr_recal_image *im, int N,
                         const char *const meth[2], const char *file, const char *attr,
                         const char *bad_value, double (*weight)(const void *, const char *))
{
    const char *p = mr_test_path(file);
    CU_ASSERT_EQUAL_FATAL(mr_nn_model_save(m, p), MR_OK);
    mr_nn_model *q = NULL;
    CU_ASSERT_EQUAL_FATAL(mr_nn_model_load(&q, p, NULL), MR_OK);
    for (int k = 0; k < 2; k++)
        CU_ASSERT_DOUBLE_EQUAL(weight(q, meth[k]), weight(m, meth[k]), 1e-12);
    char text[4096];
    CU_ASSERT_EQUAL(mr_sigma_recalibrate(q, im, (size_t)N, 1000, NULL, text, sizeof text), MR_OK);
    CU_ASSERT_PTR_NULL(strstr(text, "weights"));
    for (int k = 0; k < 2; k++)
        CU_ASSERT_DOUBLE_EQUAL(weight(q, meth[k]), weight(m, meth[k]), 1e-12);
    CU_ASSERT_EQUAL(mr_test_sh("%s -c \"import h5py; f = h5py.File('%s', 'a'); "
                               "f.attrs['%s'] = %s\"", "/usr/bin/python3", p, attr, bad_value), 0);
    mr_nn_model *bad = NULL;
    CU_ASSERT_EQUAL(mr_nn_model_load(&bad, p, NULL), MR_ERR_INPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(mr_error_message(), attr));
    mr_error_clear();
    mr_nn_model_destroy(q);
}

/* Input SD maps: images of the artefact network (zf and cs-l1 inputs) whose errors have SD
 * a (v scale)^w* with v the input's own SD map (log-uniform over e^+-1.5) and the network's SD 1:
 * calibrate, given t = log(v / SD), recovers w* per input method (0.6, 0.3); the combined SD
 * (mr_sigma_apply_input_sd) then covers 90 % in each third of v (without it the low third
 * over-covers and the high third under-covers); the weights are written and read back, kept by
 * a second recalibration (the SD maps were made with them), and a corrupt attribute is refused. */
static void test_input_sd(void)
{
    mr_nn_model *m = NULL;
    CU_ASSERT_EQUAL_FATAL(mr_nn_model_load(&m, mr_test_src("models/artefact_sigma.h5"), NULL),
                          MR_OK);
    m->meta.n_input_sd = 0; /* a network that does not combine yet */
    float rnd[256];
    mask_cols(rnd, 256, MR_MASK_RANDOM, 4);
    enum { N = 8 };
    const size_t n = 60000;
    const char *meth[2] = {"zf", "cs-l1"};
    const double wt[2] = {0.6, 0.3};
    double *r[N], *t[N], old[2];
    float *v[N];
    mr_recal_image im[N];
    for (int k = 0; k < 2; k++) old[k] = mr_sigma_scale_full(m, meth[k], rnd, 256, 4);
    for (int i = 0; i < N; i++) {
        int k = i % 2;
        mr_test_rng g;
        mr_test_rng_init(&g, 500 + (unsigned)i);
        r[i] = malloc(n * sizeof *r[i]), t[i] = malloc(n * sizeof *t[i]), v[i] = malloc(n * sizeof *v[i]);
        for (size_t q = 0; q < n; q++) {
            double lv = 3 * mr_test_randu(&g) - 1.5;
            v[i][q] = (float)exp(lv);
            t[i][q] = mr_sigma_log_sd_ratio(v[i][q], 1);
            r[i][q] = fabs(1.1 * pow(v[i][q] * old[k], wt[k]) * mr_test_randn(&g));
        }
        im[i] = (mr_recal_image){r[i], n, 4, "random", meth[k], 0, 0, t[i], 0, 0, 0, NULL, NULL, NULL};
    }
    char text[2048];
    CU_ASSERT_EQUAL_FATAL(mr_sigma_recalibrate(m, im, N, 1000, NULL, text, sizeof text), MR_OK);
    fprintf(stderr, "%s\n", text);
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "input SD weights"));
    CU_ASSERT_EQUAL(m->meta.n_input_sd, 2);
    for (int k = 0; k < 2; k++) {
        double w = mr_sigma_input_sd_weight(m, meth[k]);
        fprintf(stderr, "input %s: w %.4f (%.1f), k %.4f\n", meth[k], w, wt[k], m->meta.input_sd[k][1]);
        CU_ASSERT(fabs(w - wt[k]) < 0.02);
    }
    CU_ASSERT_EQUAL(mr_sigma_input_sd_weight(m, "sense"), 0);
    CU_ASSERT_EQUAL(mr_sigma_input_sd_weight(m, NULL), 0);
    /* each third of v covered at 90 %, with and (as a contrast) without the combination */
    float *sd = malloc(n * sizeof *sd);
    for (int k = 0; k < 2; k++) {
        double sc = mr_sigma_scale_full(m, meth[k], rnd, 256, 4);
        size_t in[2][3] = {{0}}, tot[3] = {0};
        for (int i = k; i < N; i += 2) {
            for (size_t q = 0; q < n; q++) sd[q] = (float)(sc / old[k]); /* SD 1 as made, new scale */
            for (int with = 0; with < 2; with++) {
                if (with) mr_sigma_apply_input_sd(sd, v[i], n, m, meth[k], sc);
                for (size_t q = 0; q < n; q++) {
                    int b = t[i][q] < -0.5 ? 0 : t[i][q] < 0.5 ? 1 : 2;
                    in[with][b] += r[i][q] <= 1.6448536 * sd[q];
                    tot[b] += !with;
                }
            }
        }
        for (int b = 0; b < 3; b++) {
            double c0 = 100.0 * in[0][b] / tot[b], c1 = 100.0 * in[1][b] / tot[b];
            fprintf(stderr, "input %s, third %d of v: coverage at 90 %% %.2f (without %.2f)\n",
                    meth[k], b, c1, c0);
            CU_ASSERT(fabs(c1 - 90) < 1.5);
            if (b == 0) CU_ASSERT(c0 > 93);
            if (b == 2) CU_ASSERT(c0 < 87);
        }
    }
    free(sd);
    weights_kept(m, im, N, meth, "recal_input_sd.h5", "calibration_input_sd",
                 "[1.5, 1.0, 0.5, 1.0]", mr_sigma_input_sd_weight);
    for (int i = 0; i < N; i++) free(r[i]), free(t[i]), free(v[i]);
    mr_nn_model_destroy(m);
}

/* Bootstrap maps with input SD maps: artefact-network images whose errors have SD
 * 1.1 (v s)^a_v (b s)^a_b, v the input's SD map and b the model's bootstrap map correlated with it
 * (log b = 0.6 log v + U(-1, 1)), for the nested weights w_i 0.5, w_b 0.4 (a_v = (1 - w_b) w_i =
 * 0.3, a_b = 0.4; zf) and w_i 0.25, w_b 0.2 (cs-l1): calibrate fits both jointly and recovers them
 * (+-0.03; fitted one after the other, w_i would take up b's share through the correlation);
 * denoise's order (mr_sigma_apply_input_sd, then mr_sigma_apply_boot_sd) covers 90 % in each third
 * of b; written, read back, kept by a second recalibration; a corrupt attribute is refused. */
static void test_boot_sd(void)
{
    mr_nn_model *m = NULL;
    CU_ASSERT_EQUAL_FATAL(mr_nn_model_load(&m, mr_test_src("models/artefact_sigma.h5"), NULL),
                          MR_OK);
    m->meta.n_input_sd = m->meta.n_boot_sd = 0; /* a network that combines with neither yet */
    float rnd[256];
    mask_cols(rnd, 256, MR_MASK_RANDOM, 4);
    enum { N = 8 };
    const size_t n = 60000;
    const char *meth[2] = {"zf", "cs-l1"};
    const double wi[2] = {0.5, 0.25}, wb[2] = {0.4, 0.2};
    double *r[N], *t[N], *tb[N], old[2];
    float *v[N], *b[N];
    mr_recal_image im[N];
    for (int k = 0; k < 2; k++) old[k] = mr_sigma_scale_full(m, meth[k], rnd, 256, 4);
    for (int i = 0; i < N; i++) {
        int k = i % 2;
        mr_test_rng g;
        mr_test_rng_init(&g, 700 + (unsigned)i);
        r[i] = malloc(n * sizeof *r[i]), t[i] = malloc(n * sizeof *t[i]);
        tb[i] = malloc(n * sizeof *tb[i]);
        v[i] = malloc(n * sizeof *v[i]), b[i] = malloc(n * sizeof *b[i]);
        for (size_t q = 0; q < n; q++) {
            double lv = 3 * mr_test_randu(&g) - 1.5, lb = 0.6 * lv + 2 * mr_test_randu(&g) - 1;
            v[i][q] = (float)exp(lv), b[i][q] = (float)exp(lb);
            t[i][q] = mr_sigma_log_sd_ratio(v[i][q], 1);
            tb[i][q] = mr_sigma_log_sd_ratio(b[i][q], 1);
            r[i][q] = fabs(1.1 * pow(v[i][q] * old[k], (1 - wb[k]) * wi[k]) *
                           pow(b[i][q] * old[k], wb[k]) * mr_test_randn(&g));
        }
        im[i] = (mr_recal_image){r[i], n, 4, "random", meth[k], 0, 0, t[i], 0, 0, 0, NULL, NULL, tb[i]};
    }
    char text[2048];
    CU_ASSERT_EQUAL_FATAL(mr_sigma_recalibrate(m, im, N, 1000, NULL, text, sizeof text), MR_OK);
    fprintf(stderr, "%s\n", text);
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "input SD and bootstrap weights"));
    CU_ASSERT_EQUAL(m->meta.n_input_sd, 2);
    CU_ASSERT_EQUAL(m->meta.n_boot_sd, 2);
    for (int k = 0; k < 2; k++) {
        double a = mr_sigma_input_sd_weight(m, meth[k]), c = mr_sigma_boot_sd_weight(m, meth[k]);
        fprintf(stderr, "%s: input SD w %.4f (%.2f), bootstrap w %.4f (%.2f)\n", meth[k], a, wi[k],
                c, wb[k]);
        CU_ASSERT(fabs(a - wi[k]) < 0.03);
        CU_ASSERT(fabs(c - wb[k]) < 0.03);
    }
    CU_ASSERT_EQUAL(mr_sigma_boot_sd_weight(m, "sense"), 0);
    CU_ASSERT_EQUAL(mr_sigma_boot_sd_weight(m, NULL), 0);
    /* each third of b covered at 90 %, with both combinations as denoise applies them and (as a
     * contrast) with the input SD's alone */
    float *sd = malloc(n * sizeof *sd);
    for (int k = 0; k < 2; k++) {
        double sc = mr_sigma_scale_full(m, meth[k], rnd, 256, 4);
        size_t in[2][3] = {{0}}, tot[3] = {0};
        for (int i = k; i < N; i += 2)
            for (int with = 0; with < 2; with++) {
                for (size_t q = 0; q < n; q++) sd[q] = (float)(sc / old[k]);
                mr_sigma_apply_input_sd(sd, v[i], n, m, meth[k], sc);
                if (with) mr_sigma_apply_boot_sd(sd, b[i], n, m, meth[k], sc);
                for (size_t q = 0; q < n; q++) {
                    int c = tb[i][q] < -0.5 ? 0 : tb[i][q] < 0.5 ? 1 : 2;
                    in[with][c] += r[i][q] <= Z90 * sd[q];
                    tot[c] += !with;
                }
            }
        for (int c = 0; c < 3; c++) {
            double c0 = 100.0 * in[0][c] / tot[c], c1 = 100.0 * in[1][c] / tot[c];
            fprintf(stderr, "%s, third %d of b: coverage at 90 %% %.2f (input SD alone %.2f)\n",
                    meth[k], c, c1, c0);
            CU_ASSERT(fabs(c1 - 90) < 1.5);
        }
        CU_ASSERT(100.0 * in[0][0] / tot[0] > 92); /* without the bootstrap: low b over-covered */
    }
    free(sd);
    weights_kept(m, im, N, meth, "recal_boot_sd.h5", "calibration_bootstrap_sd",
                 "[0.5, -1.0, 0.5, 1.0]", mr_sigma_boot_sd_weight);
    for (int i = 0; i < N; i++) free(r[i]), free(t[i]), free(tb[i]), free(v[i]), free(b[i]);
    mr_nn_model_destroy(m);
}

/* Ghost phase: equispaced-mask images (fastMRI masks, 256 columns, 16 draws) whose errors grow as
 * rho^0.5 (rho the mask's in-phase aliasing share, mr_mask_ghost_phase: two groups by offset) and
 * whose difficulty varies without effect: calibrate finds ghost slope ~0.5 and difficulty slope ~0,
 * each image's SD then covers ~90 % of its pixels (without the ghost factor the two groups miss by
 * several points each way); written and read back. */
static void test_ghost_factors(void)
{
    mr_nn_model *m = NULL;
    CU_ASSERT_EQUAL_FATAL(mr_nn_model_load(&m, mr_test_src("models/cs-l1_sigma.h5"), NULL), MR_OK);
    m->meta.has_difficulty = m->meta.has_ghost = 0; /* SD maps made without either factor */
    enum { N = 16 };
    const size_t n = 100000;
    float mk[N][256];
    double *r[N], d[N], rho[N], old[N];
    mr_recal_image im[N];
    for (int i = 0; i < N; i++) {
        uint32_t seed = 40 + (uint32_t)i;
        mr_mask_params p = {MR_MASK_EQUISPACED, 4, 0.08, &seed, 1};
        CU_ASSERT_EQUAL_FATAL(mr_mask_create_1d(mk[i], 256, &p, NULL), MR_OK);
        CU_ASSERT_EQUAL_FATAL(mr_mask_ghost_phase(&rho[i], mk[i], 256), MR_OK);
        d[i] = 0.95 + 0.1 * ((i * 7) % N) / (N - 1.0); /* 0.95 .. 1.05, unrelated to rho */
        old[i] = mr_sigma_scale_full(m, NULL, mk[i], 256, 4);
        r[i] = ratios(n, 1.1 * sqrt(rho[i] / 0.7), 700 + (unsigned)i);
        im[i] = (mr_recal_image){r[i], n, 4, "equispaced", NULL, 0, d[i], NULL, 1, log(rho[i]), 0, NULL, NULL, NULL};
    }
    char text[2048];
    CU_ASSERT_EQUAL_FATAL(mr_sigma_recalibrate(m, im, N, 1000, NULL, text, sizeof text), MR_OK);
    fprintf(stderr, "%s\n", text);
    CU_ASSERT_EQUAL(m->meta.has_ghost, 1);
    int k = !strcmp(m->meta.calibration_masks[0], "equispaced") ? 0 : 1;
    double bg = m->meta.ghost[k][0][1], bd = m->meta.difficulty[k][0][1];
    fprintf(stderr, "ghost slope %.4f (0.5), difficulty slope %.4f (0)\n", bg, bd);
    CU_ASSERT(fabs(bg - 0.5) < 0.06);
    CU_ASSERT(bd < 0.3);
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "ghost phase slope"));
    const char *p = mr_test_path("recal_ghost.h5");
    CU_ASSERT_EQUAL_FATAL(mr_nn_model_save(m, p), MR_OK);
    mr_nn_model *q = NULL;
    CU_ASSERT_EQUAL_FATAL(mr_nn_model_load(&q, p, NULL), MR_OK);
    CU_ASSERT_EQUAL(q->meta.has_ghost, 1);
    double worst = 0, worst0 = 0;
    for (int i = 0; i < N; i++) {
        double f = mr_sigma_scale_full(q, NULL, mk[i], 256, 4) / old[i] *
                   mr_sigma_difficulty_factor(q, mk[i], 256, 4, d[i]);
        CU_ASSERT_DOUBLE_EQUAL(f, mr_sigma_scale_full(m, NULL, mk[i], 256, 4) / old[i] *
                               mr_sigma_difficulty_factor(m, mk[i], 256, 4, d[i]), 1e-9);
        double f0 = mr_sigma_scale_full(q, NULL, mk[i], 256, 4) / old[i]; /* without the factor */
        double c = 100 * mr_sigma_coverage(r[i], n, Z90, f), c0 = 100 * mr_sigma_coverage(r[i], n, Z90, f0);
        worst = fabs(c - 90) > worst ? fabs(c - 90) : worst;
        worst0 = fabs(c0 - 90) > worst0 ? fabs(c0 - 90) : worst0;
    }
    fprintf(stderr, "per-image coverage at 90 %%: worst gap %.2f points (without the ghost factor "
            "%.2f)\n", worst, worst0);
    CU_ASSERT(worst < 1.5);
    CU_ASSERT(worst0 > 3);
    for (int i = 0; i < N; i++) free(r[i]);
    mr_nn_model_destroy(m), mr_nn_model_destroy(q);
}

/* Line fill: mr_sigma_line_fill of rectangles is their width share (a short row counts by its
 * pixels), 0 for an empty slice; random-mask images of 10 slices each whose errors grow as
 * fill^0.5 (the slices' fill 0.40 .. 0.90): calibrate finds slope ~0.5, each slice's SD then
 * covers ~90 % of its pixels (without the factor the thin and full slices miss by several points);
 * written and read back; mr_sigma_apply_calibrate_factors multiplies each slice by
 * exp(b (log l - c)) of its own fill. */
static void fill_rect(float *y, size_t H, size_t W, size_t rows, size_t cols)
{
    memset(y, 0, H * W * sizeof *y);
    for (size_t h = 0; h < rows; h++)
        for (size_t w = 0; w < cols; w++) y[(h + 4) * W + w + 3] = 1.0f + 0.01f * (float)w;
}

static void test_line_fill(void)
{
    enum { H = 32, W = 100 };
    float y[2 * H * W];
    fill_rect(y, H, W, 20, 60);
    CU_ASSERT_DOUBLE_EQUAL(mr_sigma_line_fill(y, H, W), 0.6, 1e-12);
    for (size_t w = 0; w < 20; w++) y[30 * W + w] = 1; /* one row of 20 */
    CU_ASSERT_DOUBLE_EQUAL(mr_sigma_line_fill(y, H, W), (20 * 3600.0 + 400) / (100.0 * 1220), 1e-12);
    memset(y, 0, sizeof y);
    CU_ASSERT_EQUAL(mr_sigma_line_fill(y, H, W), 0);

    mr_nn_model *m = NULL;
    CU_ASSERT_EQUAL_FATAL(mr_nn_model_load(&m, mr_test_src("models/cs-l1_sigma.h5"), NULL), MR_OK);
    m->meta.has_fill = 0; /* SD maps made without it */
    float mk[W];
    mask_cols(mk, W, MR_MASK_RANDOM, 4);
    const double old = mr_sigma_scale_full(m, NULL, mk, W, 4);
    enum { N = 8, NS = 10 };
    const size_t ns = 20000;
    double *r[N], fl[N][NS];
    size_t sn[N][NS];
    mr_recal_image im[N];
    for (int i = 0; i < N; i++) {
        r[i] = malloc(NS * ns * sizeof *r[i]);
        for (int z = 0; z < NS; z++) {
            double l = 0.4 + 0.5 * ((z * 3 + i) % NS) / (NS - 1.0);
            fl[i][z] = log(l), sn[i][z] = ns;
            double *q = ratios(ns, 1.1 * sqrt(l / 0.65), 900 + (unsigned)(i * NS + z));
            memcpy(r[i] + (size_t)z * ns, q, ns * sizeof *q);
            free(q);
        }
        im[i] = (mr_recal_image){r[i], NS * ns, 4, "random", NULL, 0, 0, NULL, 0, 0, NS, sn[i], fl[i], NULL};
    }
    char text[2048];
    CU_ASSERT_EQUAL_FATAL(mr_sigma_recalibrate(m, im, N, 1000, NULL, text, sizeof text), MR_OK);
    fprintf(stderr, "%s\n", text);
    CU_ASSERT_EQUAL(m->meta.has_fill, 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "line fill R 4 random: slope"));
    int k = !strcmp(m->meta.calibration_masks[0], "random") ? 0 : 1;
    double b = m->meta.fill[k][0][1], c = m->meta.fill[k][0][0];
    fprintf(stderr, "line fill slope %.4f (0.5) about %.4f\n", b, exp(c));
    CU_ASSERT(fabs(b - 0.5) < 0.06);
    const char *p = mr_test_path("recal_fill.h5");
    CU_ASSERT_EQUAL_FATAL(mr_nn_model_save(m, p), MR_OK);
    mr_nn_model *q = NULL;
    CU_ASSERT_EQUAL_FATAL(mr_nn_model_load(&q, p, NULL), MR_OK);
    CU_ASSERT_EQUAL(q->meta.has_fill, 1);
    CU_ASSERT_DOUBLE_EQUAL(q->meta.fill[k][0][1], b, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(q->meta.fill[k][0][0], c, 1e-12);
    /* each slice's coverage at 90 % with the new scale times its fill factor, and without it */
    double g = mr_sigma_scale_full(q, NULL, mk, W, 4) / old, worst = 0, worst0 = 0;
    for (int i = 0; i < N; i++)
        for (int z = 0; z < NS; z++) {
            double f = g * exp(b * (fl[i][z] - c));
            const double *rz = r[i] + (size_t)z * ns;
            double cv = 100 * mr_sigma_coverage(rz, ns, Z90, f), c0 = 100 * mr_sigma_coverage(rz, ns, Z90, g);
            worst = fabs(cv - 90) > worst ? fabs(cv - 90) : worst;
            worst0 = fabs(c0 - 90) > worst0 ? fabs(c0 - 90) : worst0;
        }
    fprintf(stderr, "per-slice coverage at 90 %%: worst gap %.2f points (without the fill factor "
            "%.2f)\n", worst, worst0);
    CU_ASSERT(worst < 1.5);
    CU_ASSERT(worst0 > 3);
    /* applied per slice: two slices of fill 0.4 and 0.9, SD 1 */
    fill_rect(y, H, W, 20, 40);
    fill_rect(y + H * W, H, W, 20, 90);
    float sd[2 * H * W];
    for (size_t i = 0; i < 2 * H * W; i++) sd[i] = 1;
    CU_ASSERT_EQUAL(mr_sigma_apply_calibrate_factors(sd, y, 2, H * W, W, q, NULL, NULL, mk, W, 4, 0, NULL),
                    MR_OK);
    CU_ASSERT_DOUBLE_EQUAL(sd[5], exp(b * (log(0.4) - c)), 1e-5);
    CU_ASSERT_DOUBLE_EQUAL(sd[H * W + 5], exp(b * (log(0.9) - c)), 1e-5);
    CU_ASSERT_DOUBLE_EQUAL(mr_sigma_fill_factor(q, NULL, mk, W, 4, y + H * W, H, W),
                           exp(b * (log(0.9) - c)), 1e-12);
    CU_ASSERT_EQUAL(mr_sigma_fill_factor(q, NULL, NULL, 0, 4, y, H, W), 1); /* no mask: kind unknown */
    CU_ASSERT_EQUAL(mr_sigma_fill_factor(m, NULL, mk, W, 4, y, H, W) == 1, 0);
    q->meta.has_fill = 0;
    CU_ASSERT_EQUAL(mr_sigma_fill_factor(q, NULL, mk, W, 4, y, H, W), 1);
    for (int i = 0; i < N; i++) free(r[i]);
    mr_nn_model_destroy(m), mr_nn_model_destroy(q);
}

/* Line fill per input method (the artefact network): zf images whose errors grow as fill^0.8 and
 * cs-l1 images whose errors shrink as fill^-0.4, on the same slices' fill: calibrate fits a
 * slope per method (~0.8, ~-0.4) besides the pooled one; each slice's SD with its method's factor
 * covers ~90 %, with the pooled factor it does not; written and read back
 * (calibration_line_fill_zf, _cs-l1); mr_sigma_fill_factor takes the method's slope, and the
 * pooled one for an unknown method. */
static void test_line_fill_methods(void)
{
    enum { H = 32, W = 100 };
    mr_nn_model *m = NULL;
    CU_ASSERT_EQUAL_FATAL(mr_nn_model_load(&m, mr_test_src("models/artefact_sigma.h5"), NULL),
                          MR_OK);
    CU_ASSERT_EQUAL_FATAL(m->meta.n_calibration_methods, 2);
    m->meta.has_fill = m->meta.has_fill_m = 0;
    float mk[W];
    mask_cols(mk, W, MR_MASK_RANDOM, 4);
    const char *meth[2] = {"zf", "cs-l1"};
    const double slope[2] = {0.8, -0.4};
    double old[2];
    for (int k = 0; k < 2; k++) old[k] = mr_sigma_scale_full(m, meth[k], mk, W, 4);
    enum { N = 8, NS = 10 };
    const size_t ns = 20000;
    double *r[N], fl[N][NS];
    size_t sn[N][NS];
    mr_recal_image im[N];
    for (int i = 0; i < N; i++) {
        int k = i % 2;
        r[i] = malloc(NS * ns * sizeof *r[i]);
        for (int z = 0; z < NS; z++) {
            double l = 0.4 + 0.5 * ((z * 3 + i / 2) % NS) / (NS - 1.0);
            fl[i][z] = log(l), sn[i][z] = ns;
            double *q = ratios(ns, 1.1 * pow(l / 0.65, slope[k]), 950 + (unsigned)(i * NS + z));
            memcpy(r[i] + (size_t)z * ns, q, ns * sizeof *q);
            free(q);
        }
        im[i] = (mr_recal_image){r[i], NS * ns, 4, "random", meth[k], 0, 0, NULL, 0, 0, NS, sn[i], fl[i], NULL};
    }
    char text[4096];
    CU_ASSERT_EQUAL_FATAL(mr_sigma_recalibrate(m, im, N, 1000, NULL, text, sizeof text), MR_OK);
    fprintf(stderr, "%s\n", text);
    CU_ASSERT_EQUAL(m->meta.has_fill, 1);
    CU_ASSERT_EQUAL(m->meta.has_fill_m, 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "line fill R 4 random, input zf: slope"));
    int kr = !strcmp(m->meta.calibration_masks[0], "random") ? 0 : 1;
    double bp = m->meta.fill[kr][0][1];
    for (int k = 0; k < 2; k++) {
        double b = m->meta.fill_m[k][kr][0][1];
        fprintf(stderr, "line fill, input %s: slope %.4f (%.1f); pooled %.4f\n", meth[k], b, slope[k], bp);
        CU_ASSERT(fabs(b - slope[k]) < 0.08);
    }
    CU_ASSERT(fabs(bp - 0.2) < 0.2); /* between the two */
    const char *p = mr_test_path("recal_fill_m.h5");
    CU_ASSERT_EQUAL_FATAL(mr_nn_model_save(m, p), MR_OK);
    mr_nn_model *q = NULL;
    CU_ASSERT_EQUAL_FATAL(mr_nn_model_load(&q, p, NULL), MR_OK);
    CU_ASSERT_EQUAL(q->meta.has_fill_m, 1);
    for (int k = 0; k < 2; k++)
        for (int e = 0; e < 2; e++)
            CU_ASSERT_DOUBLE_EQUAL(q->meta.fill_m[k][kr][0][e], m->meta.fill_m[k][kr][0][e], 1e-12);
    /* each slice's coverage at 90 % with its method's factor, and with the pooled one */
    double worst = 0, worst0 = 0;
    float y[H * W];
    for (int i = 0; i < N; i++) {
        int k = i % 2;
        double g = mr_sigma_scale_full(q, meth[k], mk, W, 4) / old[k];
        double b = q->meta.fill_m[k][kr][0][1], c = q->meta.fill_m[k][kr][0][0], c0 = q->meta.fill[kr][0][0];
        for (int z = 0; z < NS; z++) {
            const double *rz = r[i] + (size_t)z * ns;
            double cv = 100 * mr_sigma_coverage(rz, ns, Z90, g * exp(b * (fl[i][z] - c))),
                   cp = 100 * mr_sigma_coverage(rz, ns, Z90, g * exp(bp * (fl[i][z] - c0)));
            worst = fabs(cv - 90) > worst ? fabs(cv - 90) : worst;
            worst0 = fabs(cp - 90) > worst0 ? fabs(cp - 90) : worst0;
        }
        /* the library's factor for a slice of fill 0.6 */
        fill_rect(y, H, W, 20, 60);
        CU_ASSERT_DOUBLE_EQUAL(mr_sigma_fill_factor(q, meth[k], mk, W, 4, y, H, W),
                               exp(b * (log(0.6) - c)), 1e-9);
    }
    fprintf(stderr, "per-slice coverage at 90 %%: worst gap %.2f points with the method's slope "
            "(pooled slope %.2f)\n", worst, worst0);
    CU_ASSERT(worst < 1.5);
    CU_ASSERT(worst0 > 3);
    CU_ASSERT_DOUBLE_EQUAL(mr_sigma_fill_factor(q, NULL, mk, W, 4, y, H, W),
                           exp(bp * (log(0.6) - q->meta.fill[kr][0][0])), 1e-9);
    for (int i = 0; i < N; i++) free(r[i]);
    mr_nn_model_destroy(m), mr_nn_model_destroy(q);
}

/* Two relative noise levels, errors 0.9 and 1.2 times the SD: factors per level, composed with the
 * kind's scale, interpolated in log between and constant outside; written and read back; applied
 * per slice by mr_sigma_apply_noise_factors (a slice without a noise estimate left alone). */
static void test_noise_factors(void)
{
    mr_nn_model *m = NULL;
    CU_ASSERT_EQUAL_FATAL(mr_nn_model_load(&m, mr_test_src("models/cs-l1_sigma.h5"), NULL), MR_OK);
    m->meta.n_noise_factors = 0;
    float rnd[256];
    mask_cols(rnd, 256, MR_MASK_RANDOM, 4);
    double r4 = mr_sigma_scale_full(m, NULL, rnd, 256, 4);
    const size_t n = 200000;
    double *a = ratios(n, 0.9, 7), *b = ratios(n, 1.2, 8), *c = ratios(n, 1.2, 9);
    /* the 0.04 level in two images 5 % apart: one bin */
    mr_recal_image im[3] = {{a, n, 4, "random", NULL, 0.01, 0, NULL, 0, 0, 0, NULL, NULL, NULL}, {b, n, 4, "random", NULL, 0.04, 0, NULL, 0, 0, 0, NULL, NULL, NULL},
                            {c, n, 4, "random", NULL, 0.042, 0, NULL, 0, 0, 0, NULL, NULL, NULL}};
    char text[2048];
    CU_ASSERT_EQUAL_FATAL(mr_sigma_recalibrate(m, im, 3, 1000, NULL, text, sizeof text), MR_OK);
    fprintf(stderr, "%s\n", text);
    CU_ASSERT_EQUAL_FATAL(m->meta.n_noise_factors, 2);
    double s4 = mr_sigma_scale_full(m, NULL, rnd, 256, 4) / r4;
    double lo = s4 * mr_sigma_noise_factor(m, 0.01), hi = s4 * mr_sigma_noise_factor(m, 0.041);
    fprintf(stderr, "at 0.01: %.4f (0.9), at 0.041: %.4f (1.2)\n", lo, hi);
    CU_ASSERT(fabs(lo - 0.9) < 0.02);
    CU_ASSERT(fabs(hi - 1.2) < 0.025);
    double mid = mr_sigma_noise_factor(m, 0.02);
    CU_ASSERT(mid > mr_sigma_noise_factor(m, 0.01) && mid < mr_sigma_noise_factor(m, 0.041));
    CU_ASSERT_DOUBLE_EQUAL(mr_sigma_noise_factor(m, 0.001), mr_sigma_noise_factor(m, 0.01), 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(mr_sigma_noise_factor(m, 1.0), m->meta.noise_factors[1], 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(mr_sigma_noise_factor(m, 0), 1, 0);
    const char *p = mr_test_path("recal_noise.h5");
    CU_ASSERT_EQUAL_FATAL(mr_nn_model_save(m, p), MR_OK);
    mr_nn_model *q = NULL;
    CU_ASSERT_EQUAL_FATAL(mr_nn_model_load(&q, p, NULL), MR_OK);
    CU_ASSERT_EQUAL(q->meta.n_noise_factors, 2);
    CU_ASSERT_DOUBLE_EQUAL(mr_sigma_noise_factor(q, 0.03), mr_sigma_noise_factor(m, 0.03), 1e-12);
    /* applied per slice: y of 2 slices (percentile level 100), noise SD 1 and 0 */
    float y[2 * 400], sd[2 * 400];
    for (int i = 0; i < 800; i++) y[i] = 100, sd[i] = 2;
    double ns[2] = {1, 0};
    CU_ASSERT_EQUAL(mr_sigma_apply_noise_factors(sd, y, 2, 400, q, ns), MR_OK);
    CU_ASSERT_DOUBLE_EQUAL(sd[5], 2 * mr_sigma_noise_factor(q, 0.01), 1e-5);
    CU_ASSERT_DOUBLE_EQUAL(sd[405], 2, 0);
    CU_ASSERT_EQUAL(mr_sigma_apply_noise_factors(sd, y, 2, 400, q, NULL), MR_OK);
    CU_ASSERT_DOUBLE_EQUAL(sd[5], 2 * mr_sigma_noise_factor(q, 0.01), 1e-5);
    free(a), free(b), free(c);
    mr_nn_model_destroy(m), mr_nn_model_destroy(q);
    /* three levels (0.01, 0.02, 0.04; equal pixels), errors 0.9, 1.3 and 1.0 times the SD: the
     * factors are smoothed to the line in log level through the three bins' factors (by least
     * squares: slope log(1.0 / 0.9) / (2 log 2) = 0.076, the middle bin pulled from 1.3 to their
     * geometric mean) */
    CU_ASSERT_EQUAL_FATAL(mr_nn_model_load(&m, mr_test_src("models/cs-l1_sigma.h5"), NULL), MR_OK);
    m->meta.n_noise_factors = 0;
    r4 = mr_sigma_scale_full(m, NULL, rnd, 256, 4);
    a = ratios(n, 0.9, 17), b = ratios(n, 1.3, 18), c = ratios(n, 1.0, 19);
    mr_recal_image im3[3] = {{a, n, 4, "random", NULL, 0.01, 0, NULL, 0, 0, 0, NULL, NULL, NULL},
                             {b, n, 4, "random", NULL, 0.02, 0, NULL, 0, 0, 0, NULL, NULL, NULL},
                             {c, n, 4, "random", NULL, 0.04, 0, NULL, 0, 0, 0, NULL, NULL, NULL}};
    CU_ASSERT_EQUAL_FATAL(mr_sigma_recalibrate(m, im3, 3, 1000, NULL, text, sizeof text), MR_OK);
    fprintf(stderr, "%s\n", text);
    CU_ASSERT_EQUAL_FATAL(m->meta.n_noise_factors, 3);
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "smoothed to"));
    double f1 = mr_sigma_noise_factor(m, 0.01), f2 = mr_sigma_noise_factor(m, 0.02),
           f3 = mr_sigma_noise_factor(m, 0.04);
    fprintf(stderr, "smoothed noise factors %.4f %.4f %.4f\n", f1, f2, f3);
    /* on a line in log: equal ratios between the three, the slope of the bins' factors */
    CU_ASSERT_DOUBLE_EQUAL(log(f2 / f1), log(f3 / f2), 1e-9);
    CU_ASSERT(fabs(log(f3 / f1) / (2 * log(2.0)) - log(1.0 / 0.9) / (2 * log(2.0))) < 0.03);
    s4 = mr_sigma_scale_full(m, NULL, rnd, 256, 4) / r4;
    fprintf(stderr, "at 0.02: %.4f (geometric mean %.4f)\n", s4 * f2, cbrt(0.9 * 1.3 * 1.0));
    CU_ASSERT(fabs(s4 * f2 - cbrt(0.9 * 1.3 * 1.0)) < 0.03);
    free(a), free(b), free(c);
    mr_nn_model_destroy(m);
}

static void test_errors(void)
{
    mr_nn_model *m = NULL;
    const size_t n = 5000;
    double *a = ratios(n, 1, 6);
    char text[2048];
    CU_ASSERT_EQUAL_FATAL(mr_nn_model_load(&m, mr_test_src("models/denoiser_blind_sigma.h5"), NULL),
                          MR_OK);
    mr_recal_image im = {a, n, 4, "random", NULL, 0, 0, NULL, 0, 0, 0, NULL, NULL, NULL};
    CU_ASSERT_EQUAL(mr_sigma_recalibrate(m, &im, 1, 100, NULL, text, sizeof text), MR_ERR_INPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(mr_error_message(), "no scales per acceleration"));
    mr_nn_model_destroy(m);
    CU_ASSERT_EQUAL_FATAL(mr_nn_model_load(&m, mr_test_src("models/cs-l1_sigma.h5"), NULL), MR_OK);
    im.mask_kind = "poisson";
    CU_ASSERT_EQUAL(mr_sigma_recalibrate(m, &im, 1, 100, NULL, text, sizeof text), MR_ERR_INPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(mr_error_message(), "mask kind 'poisson'"));
    im.mask_kind = "random", im.accel = 0.5;
    CU_ASSERT_EQUAL(mr_sigma_recalibrate(m, &im, 1, 100, NULL, text, sizeof text), MR_ERR_INPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(mr_error_message(), "expected R >= 1"));
    im.accel = 4;
    CU_ASSERT_EQUAL(mr_sigma_recalibrate(m, &im, 1, 10000, NULL, text, sizeof text), MR_ERR_INPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(mr_error_message(), "10000 foreground pixels"));
    mr_nn_model_destroy(m);
    free(a);
}

/* coverage (%) at +-1.645 SD over the foreground of each listed image, per mask kind, by Python */
static int coverage_ok(const char *list_dir, const char *suffix, double lo, double hi)
{
    return mr_test_sh("cd %s && %s -c \"import h5py, numpy as np\n"
                      "ref = h5py.File('k.h5')['reconstruction_rss'][()]\n"
                      "fg = ref > 0.05 * ref.max()\n"
                      "for mk in ('random', 'equispaced'):\n"
                      "    f = h5py.File('c_%%s%s.h5' %% mk)\n"
                      "    x, sd = f['reconstruction'][()], f['uncertainty'][()]\n"
                      "    c = 100 * (np.abs(x - ref)[fg] <= 1.6448536 * sd[fg]).mean()\n"
                      "    print(mk, 'coverage at 90 %%%%: %%.2f' %% c)\n"
                      "    assert %g <= c <= %g, c\n\"",
                      list_dir, mr_test_python(), suffix, lo, hi);
}

static void test_cli(void)
{
    if (!have_data()) return;
    const char *d = mr_test_tmpdir(), *bin = mr_test_bin();
    char net[4096]; /* mr_test_src / mr_test_path return one static buffer */
    snprintf(net, sizeof net, "%s", mr_test_src("models/cs-l1_sigma.h5"));
    /* 4 slices of ch2 (held-out slab), cs-l1 4x, both mask kinds, the shipped network's maps */
    int rc = mr_test_sh("cd %s && %s -q simulate --input " TEMPLATES "/ch2.nii.gz --output k.h5 "
                        "--slices 96:100 --coils 8 --noise 0.005 --seed 3 && "
                        "for mk in random equispaced; do %s -q recon --input k.h5 --output "
                        "c_$mk.h5 --method cs-l1 --mask $mk --accel 4 --center-fraction 0.08 "
                        "--seed 5 --uncertainty model --uncertainty-model %s || exit 1; done",
                        d, bin, bin, net);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    mr_test_write_text(mr_test_path("cal.csv"),
                       "# two images\n"
                       "reference,image,uncertainty,accel,mask,method\n"
                       "k.h5:reconstruction_rss, c_random.h5, , 4, random, cs-l1\n"
                       "k.h5:reconstruction_rss,c_equispaced.h5,c_equispaced.h5:uncertainty,4,"
                       "equispaced\n");
    unsigned char before[64], after[64];
    FILE *f = fopen(net, "rb");
    CU_ASSERT_FATAL(f && fread(before, 1, 64, f) == 64);
    fclose(f);
    rc = mr_test_sh("cd %s && %s calibrate --model %s --list cal.csv --output new.h5", d, bin, net);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(mr_test_output(), "random x"));
    CU_ASSERT_PTR_NOT_NULL(strstr(mr_test_output(), "equispaced x"));
    f = fopen(net, "rb");
    CU_ASSERT_FATAL(f && fread(after, 1, 64, f) == 64);
    fclose(f);
    CU_ASSERT_EQUAL(memcmp(before, after, 64), 0);
    /* the same images with the recalibrated network: 90 % covered per kind (the calibration set
     * itself: split-conformal's promise, up to the one scale serving 90 and 95 %) */
    rc = mr_test_sh("cd %s && for mk in random equispaced; do %s -q recon --input k.h5 --output "
                    "c_${mk}_new.h5 --method cs-l1 --mask $mk --accel 4 --center-fraction 0.08 "
                    "--seed 5 --uncertainty model --uncertainty-model new.h5 || exit 1; done",
                    d, bin);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    rc = coverage_ok(d, "_new", 88.5, 91.5);
    CU_ASSERT_EQUAL(rc, 0);
    fprintf(stderr, "%s", mr_test_output());

    /* bad input: named file, line and field; nothing written */
    struct {
        const char *list, *needle;
    } bad[] = {
        {"k.h5,c_random.h5,,4,poisson\n", "cal_bad.csv:1: mask: expected random or equispaced"},
        {"k.h5,c_random.h5,,0.5,random\n", "cal_bad.csv:1: accel: expected an acceleration"},
        {"# x\nk.h5,missing.h5,,4,random\n", "missing.h5"},
        {"k.h5\n", "cal_bad.csv:1: expected reference,image,uncertainty,accel,mask"},
        {"# nothing\n", "no images listed"},
        {"k.h5:reconstruction_rss,c_random.h5,k.h5:kspace,4,random\n", "cal_bad.csv:1"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        mr_test_write_text(mr_test_path("cal_bad.csv"), bad[i].list);
        rc = mr_test_sh("cd %s && rm -f bad.h5 && %s calibrate --model %s --list cal_bad.csv "
                        "--output bad.h5", d, bin, net);
        CU_ASSERT_NOT_EQUAL(rc, 0);
        if (!strstr(mr_test_output(), bad[i].needle))
            fprintf(stderr, "'%s' lacks '%s'\n", mr_test_output(), bad[i].needle);
        CU_ASSERT_PTR_NOT_NULL(strstr(mr_test_output(), bad[i].needle));
        CU_ASSERT_EQUAL(mr_test_count_files(d, "bad.h5"), 0);
    }
    /* a long list (the arrays grow past their first 16 rows): the same images 12 times each give
     * the same factors as 6 times (12 rows; both enough slices for the line-fill fit, whose
     * least-squares slope duplicates do not move) */
    {
        char big[8192] = "", six[4096] = "";
        for (int i = 0; i < 12; i++) {
            const char *two = "k.h5:reconstruction_rss,c_random.h5,,4,random,cs-l1\n"
                              "k.h5:reconstruction_rss,c_equispaced.h5,,4,equispaced,cs-l1\n";
            strcat(big, two);
            if (i < 6) strcat(six, two);
        }
        mr_test_write_text(mr_test_path("cal_big.csv"), big);
        mr_test_write_text(mr_test_path("cal_six.csv"), six);
        static char once[65536];
        rc = mr_test_sh("cd %s && %s calibrate --model %s --list cal_six.csv --output n1.h5", d, bin,
                        net);
        snprintf(once, sizeof once, "%s", mr_test_output());
        CU_ASSERT_EQUAL(rc, 0);
        if (rc) fprintf(stderr, "%s\n", once);
        rc = mr_test_sh("cd %s && %s calibrate --model %s --list cal_big.csv --output n2.h5", d, bin,
                        net);
        CU_ASSERT_EQUAL(rc, 0);
        CU_ASSERT_PTR_NOT_NULL(strstr(once, "random x"));
        /* the pixel counts differ (12x), the factors do not (to the quantile's granularity) */
        double f1[2] = {0, 0}, f2[2] = {0, 0};
        const char *r1 = strstr(once, "random x"), *r2 = strstr(mr_test_output(), "random x");
        const char *e1 = strstr(once, "equispaced x"), *e2 = strstr(mr_test_output(), "equispaced x");
        CU_ASSERT_FATAL(r1 && r2 && e1 && e2);
        CU_ASSERT_EQUAL(sscanf(r1, "random x %lf", &f1[0]) + sscanf(e1, "equispaced x %lf", &f1[1]), 2);
        CU_ASSERT_EQUAL(sscanf(r2, "random x %lf", &f2[0]) + sscanf(e2, "equispaced x %lf", &f2[1]), 2);
        fprintf(stderr, "factors once %.4g %.4g, 12 times %.4g %.4g\n", f1[0], f1[1], f2[0], f2[1]);
        for (int k = 0; k < 2; k++) CU_ASSERT(f1[k] > 0 && fabs(f2[k] / f1[k] - 1) < 2e-3);
        /* --no-line-fill: the same list fits no line fill; the network's own slopes (its SD
         * maps were made with them) are kept as they were */
        CU_ASSERT_PTR_NOT_NULL(strstr(once, "line fill R 4"));
        rc = mr_test_sh("cd %s && %s calibrate --no-line-fill --model %s --list cal_six.csv "
                        "--output n3.h5", d, bin, net);
        CU_ASSERT_EQUAL(rc, 0);
        CU_ASSERT_PTR_NOT_NULL(strstr(mr_test_output(), "random x"));
        CU_ASSERT_PTR_NULL(strstr(mr_test_output(), "line fill R"));
        rc = mr_test_sh("cd %s && %s -c \"import h5py, numpy as np\n"
                        "a, b = h5py.File('n3.h5').attrs, h5py.File('%s').attrs\n"
                        "assert np.array_equal(a['calibration_line_fill'], b['calibration_line_fill'])\"",
                        d, mr_test_python(), net);
        CU_ASSERT_EQUAL(rc, 0);
        if (rc) fprintf(stderr, "%s\n", mr_test_output());
    }
    rc = mr_test_sh("cd %s && %s calibrate --model new.h5 --list cal.csv --output ./new.h5", d, bin);
    CU_ASSERT_NOT_EQUAL(rc, 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(mr_test_output(), "inputs are never modified"));
    rc = mr_test_sh("%s calibrate --model %s --list %s/cal.csv --output %s/d.h5",
                    bin, mr_test_src("models/denoiser_blind_sigma.h5"), d, d);
    CU_ASSERT_NOT_EQUAL(rc, 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(mr_test_output(), "no scales per acceleration"));
    rc = mr_test_sh("%s calibrate --model %s --list %s/cal.csv", bin, net, d);
    CU_ASSERT_EQUAL(rc, 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(mr_test_output(), "--output is required"));
}

int main(void)
{
    static const mr_test_case cases[] = {
        {"recalibration per mask kind: factors, pooled scale, untouched 8x, round trip",
         test_factors_per_kind},
        {"recalibration per input method: method and kind compose", test_factors_per_method},
        {"recalibration per relative noise level: factors, interpolation, file, per slice",
         test_noise_factors},
        {"recalibration per mask difficulty: slopes, per-volume coverage, clamps, file, again",
         test_difficulty_factors},
        {"input SD maps: weights per input method, coverage per third of v, file, kept, corrupt",
         test_input_sd},
        {"bootstrap maps: joint weights with the input SD's, coverage per third of b, file, kept, "
         "corrupt", test_boot_sd},
        {"ghost phase: slope per mask kind, per-image coverage, file", test_ghost_factors},
        {"line fill: per slice, slope, per-slice coverage, file, applied", test_line_fill},
        {"line fill per input method: slopes, per-slice coverage, file, pooled for unknown",
         test_line_fill_methods},
        {"recalibration errors: no per-R scales, unknown kind, R < 1, too few pixels", test_errors},
        {"mrpipe calibrate on cs-l1 reconstructions: 90 % covered after; bad lists", test_cli},
        {NULL, NULL},
    };
    return mr_test_run("calibrate", cases);
}
