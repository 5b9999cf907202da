/*
 * test_bootstrap.c: the parametric bootstrap of a reconstruction (recon/bootstrap.c; Efron's
 * parametric bootstrap with the reconstruction's magnitude as the object) and its use as a feature
 * of the variance network's refit (`mrpipe recon --uncertainty bootstrap`, variance_head.bootstrap;
 * docs/uncertainty.md):
 *
 *  - mr_bootstrap_dev on a 4-coil 64 x 64 phantom with mr_sim_coil_maps: fully sampled SENSE
 *    reproduces |xhat| (only the Tikhonov shrinkage is left, which takes signal away and grows with
 *    lambda); 4x equispaced columns leave a deviation that is clearly larger and lies mostly in the
 *    object; xhat's phase is dropped; deterministic for a seed; bad input (no maps, a bad lambda);
 *  - mr_sigma_bootstrap_map = sqrt(G(dev^2)): a constant deviation c gives |c| everywhere (edges
 *    too), an impulse a symmetric map peaking on it whose energy is the impulse's, against the
 *    Gaussian of sigma 1.5 px it is documented to be;
 *  - the model file: calibration_feature_bootstrap written and read back; 0, NaN and 2 (refused,
 *    naming the attribute); the bootstrap map is the refit's w2 feature in image units, and a
 *    bootstrap network without a map is a usage error;
 *  - the CLI: zf refused, the network and the --uncertainty kind must agree (both ways, naming the
 *    file; denoise too), nothing written on error; a cs-l1 4x run writes a finite positive map of
 *    the image's shape, deterministic, tagged bootstrap;
 *  - `mrpipe train`: bootstrap's requirements and epochs: 0 as config errors naming the line, and a
 *    calibrate-only run (epochs 0, init) that keeps the weights and records the bootstrap feature.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mr_nn.h"
#include "mr_recon.h"
#include "mr_train.h"
#include "testutil.h"

#define TEMPLATES "/usr/share/mricron/templates"

static int have_data(void)
{
    return mr_path_is_file(TEMPLATES "/ch2.nii.gz");
}

/* ---------------------------------------------------------------- mr_bootstrap_dev */

enum { PC = 4, PH = 64, PW = 64, PHW = PH * PW };

/* A phantom (PH, PW): an ellipse of 1 with a dark (0.3) and a grey (0.6) ellipse and a bright bar
 * (1.5) inside, 0 outside; with a smooth phase ramp when `phase` (what a reconstruction has). */
static void make_phantom(mr_cfloat *x, int phase)
{
    for (size_t y = 0; y < PH; y++)
        for (size_t c = 0; c < PW; c++) {
            double u = ((double)y - 31.5) / 26, v = ((double)c - 31.5) / 20, m = 0;
            if (u * u + v * v < 1) m = 1;
            if (hypot(((double)y - 24) / 6, ((double)c - 26) / 4) < 1) m = 0.3;
            if (hypot(((double)y - 40) / 5, ((double)c - 37) / 5) < 1) m = 0.6;
            if (fabs((double)y - 31.5) < 1.5 && fabs((double)c - 31.5) < 10) m = 1.5;
            x[y * PW + c] =
                phase ? (float)m * cexpf(I * (float)(0.02 * y - 0.03 * c + 0.4)) : (float)m;
        }
}

/* Full sampling, or 4x equispaced columns plus the 7 centre columns (phase encodes along x). */
static void make_mask(float *mask, int accel4)
{
    for (size_t i = 0; i < PHW; i++) {
        size_t c = i % PW;
        mask[i] = !accel4 || c % 4 == 0 || (c >= 29 && c < 36) ? 1.0f : 0.0f;
    }
}

/* RMS of dev inside the object (|x| > 0.05) and outside; relative RMS inside (over |x|'s RMS). */
typedef struct {
    double in, out, rel, maxabs, maxpos;
} dev_stats;

static dev_stats stats_of(const float *dev, const mr_cfloat *x)
{
    dev_stats s = {0, 0, 0, 0, -INFINITY};
    double xin = 0;
    size_t nin = 0, nout = 0;
    for (size_t i = 0; i < PHW; i++) {
        double a = cabsf(x[i]), d = dev[i];
        s.maxabs = fmax(s.maxabs, fabs(d));
        s.maxpos = fmax(s.maxpos, d);
        if (a > 0.05)
            s.in += d * d, xin += a * a, nin++;
        else
            s.out += d * d, nout++;
    }
    s.rel = sqrt(s.in / xin);
    s.in = sqrt(s.in / (double)nin), s.out = sqrt(s.out / (double)nout);
    return s;
}

typedef struct {
    mr_cfloat *maps, *x, *xr; /* maps (PC, PH, PW); the phantom with and without its phase */
    float *full, *us, *dev, *dev2;
} phantom_case;

static void case_create(phantom_case *p)
{
    p->maps = malloc(PC * PHW * sizeof *p->maps);
    p->x = malloc(PHW * sizeof *p->x), p->xr = malloc(PHW * sizeof *p->xr);
    p->full = malloc(PHW * sizeof *p->full), p->us = malloc(PHW * sizeof *p->us);
    p->dev = malloc(PHW * sizeof *p->dev), p->dev2 = malloc(PHW * sizeof *p->dev2);
    CU_ASSERT_FATAL(p->maps && p->x && p->xr && p->full && p->us && p->dev && p->dev2);
    CU_ASSERT_EQUAL_FATAL(mr_sim_coil_maps(p->maps, PC, PH, PW), MR_OK);
    make_phantom(p->x, 1), make_phantom(p->xr, 0);
    make_mask(p->full, 0), make_mask(p->us, 1);
}

static void case_destroy(phantom_case *p)
{
    free(p->maps), free(p->x), free(p->xr), free(p->full), free(p->us), free(p->dev), free(p->dev2);
}

static double max_abs_diff(const float *a, const float *b, size_t n)
{
    double d = 0;
    for (size_t i = 0; i < n; i++)
        d = fmax(d, fabs((double)a[i] - b[i]));
    return d;
}

/* Fully sampled SENSE with the maps that made the data: x_b = (S^H S + lambda)^-1 S^H S |xhat|,
 * i.e. |xhat| up to the Tikhonov shrinkage. lambda 1e-6: measured RMS 1.0e-6 of the object's,
 * max |dev| 1.9e-6 (image max 1.5); the default lambda 0.01: RMS 1.0e-2 of the object's, and the
 * deviation is <= 0 (shrinkage; largest 1.8e-7). */
static void test_dev_full_sense(void)
{
    phantom_case p;
    case_create(&p);
    const mr_recon_method *m = mr_recon_method_find("sense");
    CU_ASSERT_PTR_EQUAL_FATAL(m, &mr_method_sense);
    mr_recon_params rp;
    memset(&rp, 0, sizeof rp);
    rp.lambda = 1e-6, rp.has_lambda = 1;
    CU_ASSERT_EQUAL_FATAL(mr_bootstrap_dev(p.dev, m, &rp, p.x, p.full, p.maps, PC, PH, PW), MR_OK);
    dev_stats tiny = stats_of(p.dev, p.x);
    memset(&rp, 0, sizeof rp); /* the method's default lambda, as `mrpipe recon` */
    CU_ASSERT_EQUAL_FATAL(mr_bootstrap_dev(p.dev, m, &rp, p.x, p.full, p.maps, PC, PH, PW), MR_OK);
    dev_stats def = stats_of(p.dev, p.x);
    fprintf(stderr,
            "\n  full SENSE: lambda 1e-6: relative RMS %.3g, max |dev| %.3g; default "
            "lambda: relative RMS %.3g, largest dev %.3g\n",
            tiny.rel, tiny.maxabs, def.rel, def.maxpos);
    CU_ASSERT(tiny.rel < 1e-4);
    CU_ASSERT(tiny.maxabs < 1e-4 * 1.5);
    CU_ASSERT(def.rel < 0.03);
    CU_ASSERT(def.rel > 10 * tiny.rel); /* the shrinkage grows with lambda */
    CU_ASSERT(def.maxpos < 1e-5 * 1.5); /* ... and only takes signal away */
    /* the phase of xhat is dropped: the real phantom gives the same deviation */
    CU_ASSERT_EQUAL_FATAL(mr_bootstrap_dev(p.dev2, m, &rp, p.xr, p.full, p.maps, PC, PH, PW),
                          MR_OK);
    CU_ASSERT(max_abs_diff(p.dev, p.dev2, PHW) < 1e-5 * 1.5);
    case_destroy(&p);
}

/* 4x equispaced columns (+ 7 centre columns): what SENSE (4 coils: at its limit) and cs-l1 lose.
 * Measured (default parameters): SENSE RMS inside 0.085 vs outside 0.054 (relative 0.087, 8.5x the
 * full-sampling deviation), cs-l1 0.035 vs 0.018. Deterministic: bit-identical twice; another seed
 * (cs-l1's random wavelet shifts), another draw. */
static void test_dev_undersampled(void)
{
    phantom_case p;
    case_create(&p);
    mr_recon_params rp;
    memset(&rp, 0, sizeof rp);
    const mr_recon_method *sense = mr_recon_method_find("sense"),
                          *cs = mr_recon_method_find("cs-l1");
    CU_ASSERT_FATAL(sense && cs);
    CU_ASSERT_EQUAL_FATAL(mr_bootstrap_dev(p.dev, sense, &rp, p.x, p.full, p.maps, PC, PH, PW),
                          MR_OK);
    dev_stats full = stats_of(p.dev, p.x);
    CU_ASSERT_EQUAL_FATAL(mr_bootstrap_dev(p.dev, sense, &rp, p.x, p.us, p.maps, PC, PH, PW),
                          MR_OK);
    dev_stats s = stats_of(p.dev, p.x);
    CU_ASSERT_EQUAL_FATAL(mr_bootstrap_dev(p.dev2, sense, &rp, p.xr, p.us, p.maps, PC, PH, PW),
                          MR_OK);
    double dphase = max_abs_diff(p.dev, p.dev2, PHW);
    CU_ASSERT_EQUAL_FATAL(mr_bootstrap_dev(p.dev, cs, &rp, p.x, p.us, p.maps, PC, PH, PW), MR_OK);
    dev_stats c = stats_of(p.dev, p.x);
    fprintf(stderr,
            "\n  4x: SENSE RMS in %.3g out %.3g (relative %.3g; full %.3g), phase "
            "changes it by %.2g; cs-l1 RMS in %.3g out %.3g\n",
            s.in, s.out, s.rel, full.rel, dphase, c.in, c.out);
    CU_ASSERT(s.rel > 0.03);
    CU_ASSERT(s.rel > 4 * full.rel);
    CU_ASSERT(s.in > 1.3 * s.out);
    CU_ASSERT(c.rel > 0.01);
    CU_ASSERT(c.in > 1.3 * c.out);
    CU_ASSERT(dphase < 1e-3 * 1.5);
    /* determinism: a fresh state from rp each call */
    CU_ASSERT_EQUAL_FATAL(mr_bootstrap_dev(p.dev2, cs, &rp, p.x, p.us, p.maps, PC, PH, PW), MR_OK);
    CU_ASSERT(memcmp(p.dev, p.dev2, PHW * sizeof *p.dev) == 0);
    rp.seed = 5;
    CU_ASSERT_EQUAL_FATAL(mr_bootstrap_dev(p.dev2, cs, &rp, p.x, p.us, p.maps, PC, PH, PW), MR_OK);
    CU_ASSERT(memcmp(p.dev, p.dev2, PHW * sizeof *p.dev) != 0);
    memset(&rp, 0, sizeof rp);
    CU_ASSERT_EQUAL_FATAL(mr_bootstrap_dev(p.dev, sense, &rp, p.x, p.us, p.maps, PC, PH, PW),
                          MR_OK);
    CU_ASSERT_EQUAL_FATAL(mr_bootstrap_dev(p.dev2, sense, &rp, p.x, p.us, p.maps, PC, PH, PW),
                          MR_OK);
    CU_ASSERT(memcmp(p.dev, p.dev2, PHW * sizeof *p.dev) == 0);
    case_destroy(&p);
}

/* No coil maps: MR_ERR_USAGE naming the method, dev untouched; the method's own errors come back
 * prefixed. */
static void test_dev_errors(void)
{
    phantom_case p;
    case_create(&p);
    mr_recon_params rp;
    memset(&rp, 0, sizeof rp);
    for (size_t i = 0; i < PHW; i++)
        p.dev[i] = 7.0f;
    CU_ASSERT_EQUAL(mr_bootstrap_dev(p.dev, &mr_method_sense, &rp, p.x, p.us, NULL, PC, PH, PW),
                    MR_ERR_USAGE);
    CU_ASSERT_PTR_NOT_NULL(strstr(mr_error_message(), "coil maps are needed"));
    CU_ASSERT_PTR_NOT_NULL(strstr(mr_error_message(), "sense"));
    int untouched = 1;
    for (size_t i = 0; i < PHW; i++)
        untouched &= p.dev[i] == 7.0f;
    CU_ASSERT(untouched);
    rp.lambda = -1, rp.has_lambda = 1;
    CU_ASSERT_EQUAL(mr_bootstrap_dev(p.dev, &mr_method_sense, &rp, p.x, p.us, p.maps, PC, PH, PW),
                    MR_ERR_USAGE);
    CU_ASSERT_PTR_NOT_NULL(strstr(mr_error_message(), "bootstrap: "));
    CU_ASSERT_PTR_NOT_NULL(strstr(mr_error_message(), "--lambda"));
    case_destroy(&p);
}

/* ---------------------------------------------------------------- mr_sigma_bootstrap_map */

/* A constant deviation c: G(c^2) = c^2 (a normalised kernel, edges clamped), the map |c|, edges and
 * corners included; a non-square image so that rows and columns cannot be swapped unseen. */
static void test_map_constant(void)
{
    enum { H = 24, W = 17 };
    float dev[H * W], b[H * W], tmp[2 * H * W];
    for (size_t i = 0; i < H * W; i++)
        dev[i] = -0.37f;
    mr_sigma_bootstrap_map(b, dev, H, W, tmp);
    double e = 0;
    for (size_t i = 0; i < H * W; i++)
        e = fmax(e, fabs(b[i] - 0.37));
    CU_ASSERT(e < 1e-6);
    for (size_t i = 0; i < H * W; i++)
        dev[i] = 0;
    mr_sigma_bootstrap_map(b, dev, H, W, tmp);
    e = 0;
    for (size_t i = 0; i < H * W; i++)
        e = fmax(e, fabs(b[i]));
    CU_ASSERT(e == 0);
}

/* An impulse v at the centre of a 21 x 21 image: b = |v| sqrt(g(dy) g(dx)), g the normalised
 * Gaussian of sigma 1.5 px on 9 taps (4 each side). Symmetric under both flips and the transpose,
 * peaking at the impulse; sum b^2 = v^2 (the kernel sums to 1); within 0.5 % of the peak of that
 * Gaussian everywhere (measured: 0.19 %, the code's taps 1, 3 and 4 are not exactly the sampled
 * Gaussian's: 0.21345 vs 0.21344, 0.035724 vs 0.036075, 0.0074320 vs 0.0076144 normalised). */
static void test_map_impulse(void)
{
    enum { N = 21, C0 = 10 };
    const double v = -2.0;
    float dev[N * N] = {0}, b[N * N], tmp[2 * N * N];
    dev[C0 * N + C0] = (float)v;
    mr_sigma_bootstrap_map(b, dev, N, N, tmp);
    double g[N], gs = 0;
    for (int d = -4; d <= 4; d++)
        gs += exp(-d * d / (2 * 1.5 * 1.5));
    for (int i = 0; i < N; i++) {
        int d = i - C0;
        g[i] = abs(d) <= 4 ? exp(-d * d / (2 * 1.5 * 1.5)) / gs : 0;
    }
    double sym = 0, energy = 0, oracle = 0, peak = b[C0 * N + C0];
    size_t argmax = 0;
    for (size_t y = 0; y < N; y++)
        for (size_t x = 0; x < N; x++) {
            float q = b[y * N + x];
            sym = fmax(sym, fabs(q - b[(N - 1 - y) * N + x]));
            sym = fmax(sym, fabs(q - b[y * N + (N - 1 - x)]));
            sym = fmax(sym, fabs(q - b[x * N + y]));
            energy += (double)q * q;
            oracle = fmax(oracle, fabs(q - fabs(v) * sqrt(g[y] * g[x])));
            if (q > b[argmax]) argmax = y * N + x;
        }
    fprintf(stderr,
            "\n  impulse %.1f: peak %.5f (Gaussian %.5f), asymmetry %.2g, sum b^2 / v^2 "
            "%.7f, largest difference from the Gaussian %.2g of the peak\n",
            v, peak, fabs(v) * g[C0], sym, energy / (v * v), oracle / peak);
    CU_ASSERT_EQUAL(argmax, (size_t)(C0 * N + C0));
    CU_ASSERT(sym < 1e-7);
    CU_ASSERT(fabs(energy / (v * v) - 1) < 1e-5);
    CU_ASSERT(fabs(peak / (fabs(v) * g[C0]) - 1) < 5e-3);
    CU_ASSERT(oracle < 5e-3 * peak);
    /* the map is a local RMS: it grows as |v| */
    dev[C0 * N + C0] = (float)(3 * v);
    float b3[N * N];
    mr_sigma_bootstrap_map(b3, dev, N, N, tmp);
    double r = 0;
    for (size_t i = 0; i < N * N; i++)
        r = fmax(r, fabs(b3[i] - 3 * b[i]));
    CU_ASSERT(r < 1e-6 * peak * 3);
}

/* ---------------------------------------------------------------- the model file */

/* A tiny calibrated variance network (2 -> 1, depth 3, 4 channels), features (w0..w3) with the
 * bootstrap flag, saved to path. */
static void save_variance_network(const char *path, const double w[4], int bootstrap)
{
    mr_nn_arch a = mr_nn_arch_default(3, 4);
    a.in_channels = 2, a.out_channels = 1, a.residual = 0;
    mr_nn_model *m = NULL;
    CU_ASSERT_EQUAL_FATAL(mr_nn_model_create(&m, &a), MR_OK);
    mr_nn_model_init_he(m, 5);
    snprintf(m->meta.input_type, sizeof m->meta.input_type, "magnitude");
    snprintf(m->meta.norm_method, sizeof m->meta.norm_method, "percentile");
    m->meta.norm_params[0] = 99.5, m->meta.n_norm_params = 1;
    m->meta.calibration_scale = 0.8;
    snprintf(m->meta.calibration, sizeof m->meta.calibration, "test_bootstrap");
    snprintf(m->meta.base_model, sizeof m->meta.base_model, "none");
    m->meta.n_feature_weights = 4;
    memcpy(m->meta.feature_weights, w, 4 * sizeof *w);
    m->meta.feature_bootstrap = bootstrap;
    CU_ASSERT_EQUAL_FATAL(mr_nn_model_save(m, path), MR_OK);
    mr_nn_model_destroy(m);
}

/* Set the attribute calibration_feature_bootstrap of a copy of src to a Python expression. */
static void tamper(const char *dst, const char *src, const char *value)
{
    int rc = mr_test_sh("cp %s %s && %s -c \"import h5py, numpy as np\n"
                        "with h5py.File('%s', 'r+') as f: "
                        "f.attrs['calibration_feature_bootstrap'] = %s\n\"",
                        src, dst, mr_test_python(), dst, value);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
}

static void test_model_attribute(void)
{
    const double w[4] = {0.25, 0.5, 0.3, -0.1};
    char yes[4096], no[4096], bad[4096];
    snprintf(yes, sizeof yes, "%s", mr_test_path("vnet_boot.h5"));
    snprintf(no, sizeof no, "%s", mr_test_path("vnet_plain.h5"));
    save_variance_network(yes, w, 1);
    save_variance_network(no, w, 0);
    mr_nn_model *m = NULL;
    CU_ASSERT_EQUAL_FATAL(mr_nn_model_load(&m, yes, NULL), MR_OK);
    CU_ASSERT_EQUAL(m->meta.feature_bootstrap, 1);
    CU_ASSERT_EQUAL(m->meta.n_feature_weights, 4);
    for (int j = 0; j < 4; j++)
        CU_ASSERT_DOUBLE_EQUAL(m->meta.feature_weights[j], w[j], 1e-12);
    CU_ASSERT_EQUAL(mr_sigma_wants_bootstrap(m), 1);
    mr_nn_model_destroy(m);
    CU_ASSERT_EQUAL_FATAL(mr_nn_model_load(&m, no, NULL), MR_OK);
    CU_ASSERT_EQUAL(m->meta.feature_bootstrap, 0);
    CU_ASSERT_EQUAL(mr_sigma_wants_bootstrap(m), 0);
    mr_nn_model_destroy(m);
    CU_ASSERT_EQUAL(mr_sigma_wants_bootstrap(NULL), 0);
    /* the shipped networks: cs-l1's bootstrap network is one, its plain one is not */
    void *sig = NULL;
    CU_ASSERT_EQUAL_FATAL(mr_sigma_load(&sig, mr_test_src("models/cs-l1_sigma_bootstrap.h5"), "t"),
                          MR_OK);
    CU_ASSERT_EQUAL(mr_sigma_wants_bootstrap(sig), 1);
    mr_sigma_free(sig);
    CU_ASSERT_EQUAL_FATAL(mr_sigma_load(&sig, mr_test_src("models/cs-l1_sigma.h5"), "t"), MR_OK);
    CU_ASSERT_EQUAL(mr_sigma_wants_bootstrap(sig), 0);
    mr_sigma_free(sig);
    /* written by another tool: 0 and an integer 1 are read, anything else is refused by name */
    snprintf(bad, sizeof bad, "%s", mr_test_path("vnet_t.h5"));
    tamper(bad, yes, "0.0");
    CU_ASSERT_EQUAL_FATAL(mr_nn_model_load(&m, bad, NULL), MR_OK);
    CU_ASSERT_EQUAL(m->meta.feature_bootstrap, 0);
    mr_nn_model_destroy(m);
    tamper(bad, no, "np.int32(1)");
    CU_ASSERT_EQUAL_FATAL(mr_nn_model_load(&m, bad, NULL), MR_OK);
    CU_ASSERT_EQUAL(m->meta.feature_bootstrap, 1);
    mr_nn_model_destroy(m);
    const char *refused[][2] = {{"2.0", "found 2"}, {"float('nan')", "found nan"}};
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++) {
        tamper(bad, yes, refused[i][0]);
        m = NULL;
        CU_ASSERT_EQUAL(mr_nn_model_load(&m, bad, NULL), MR_ERR_INPUT);
        CU_ASSERT_PTR_NULL(m);
        const char *msg = mr_error_message();
        if (!strstr(msg, "'calibration_feature_bootstrap'") || !strstr(msg, refused[i][1]))
            fprintf(stderr, "'%s' lacks the attribute or '%s'\n", msg, refused[i][1]);
        CU_ASSERT_PTR_NOT_NULL(strstr(msg, "'calibration_feature_bootstrap'"));
        CU_ASSERT_PTR_NOT_NULL(strstr(msg, "expected 0 or 1"));
        CU_ASSERT_PTR_NOT_NULL(strstr(msg, refused[i][1]));
        CU_ASSERT_PTR_NOT_NULL(strstr(msg, bad));
    }
    /* the flag without the feature weights it qualifies: refused, not read as a plain network */
    int rc = mr_test_sh("cp %s %s && %s -c \"import h5py\n"
                        "with h5py.File('%s', 'r+') as f: del f.attrs['calibration_feature_weights']\n\"",
                        yes, bad, mr_test_python(), bad);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    m = NULL;
    CU_ASSERT_EQUAL(mr_nn_model_load(&m, bad, NULL), MR_ERR_INPUT);
    CU_ASSERT_PTR_NULL(m);
    CU_ASSERT_PTR_NOT_NULL(strstr(mr_error_message(), "'calibration_feature_weights' is missing"));
}

/* The bootstrap map is the refit's w2 feature, in image units: with w = (0, 0, 1, 0),
 * log SD = log(b + e) (e = 1e-3 level, level the 99.5th percentile of x), SD = scale (b + e); the
 * same network without the flag reads G|y - x| there (0 for y = x: SD = scale e). A bootstrap
 * network without a map: MR_ERR_USAGE naming `--uncertainty bootstrap` and the input. */
static void test_map_is_the_feature(void)
{
    enum { S = 2, H = 32, W = 32, N = S * H * W };
    const double w[4] = {0, 0, 1, 0}, scale = 1.7;
    char yes[4096], no[4096];
    snprintf(yes, sizeof yes, "%s", mr_test_path("vnet_feat_boot.h5"));
    snprintf(no, sizeof no, "%s", mr_test_path("vnet_feat_plain.h5"));
    save_variance_network(yes, w, 1);
    save_variance_network(no, w, 0);
    static float x[N], boot[N], sd[N];
    for (size_t i = 0; i < N; i++) {
        size_t r = i / W % H, c = i % W;
        x[i] = (float)(50 + 40 * sin(r / 5.0) * cos(c / 7.0) + (i / (H * W)) * 10);
        boot[i] = (float)(0.5 + (i * 7919 % 13));
    }
    double level = 0;
    CU_ASSERT_EQUAL_FATAL(mr_train_percentile(&level, x, N, 99.5), MR_OK);
    const double e = 1e-3 * level;
    void *sb = NULL, *sp = NULL;
    CU_ASSERT_EQUAL_FATAL(mr_sigma_load(&sb, yes, "test"), MR_OK);
    CU_ASSERT_EQUAL_FATAL(mr_sigma_load(&sp, no, "test"), MR_OK);
    CU_ASSERT_EQUAL_FATAL(mr_sigma_volume(sd, x, x, NULL, boot, S, H, W, sb, scale, "img"),
                          MR_OK);
    double err = 0;
    for (size_t i = 0; i < N; i++)
        err = fmax(err, fabs(sd[i] / (scale * (boot[i] + e)) - 1));
    CU_ASSERT(err < 1e-5);
    CU_ASSERT_EQUAL_FATAL(mr_sigma_volume(sd, x, x, NULL, boot, S, H, W, sp, scale, "img"),
                          MR_OK);
    double err0 = 0;
    for (size_t i = 0; i < N; i++)
        err0 = fmax(err0, fabs(sd[i] / (scale * e) - 1));
    CU_ASSERT(err0 < 1e-5);
    fprintf(stderr,
            "\n  w2 feature: SD / scale (b + e) - 1 at most %.2g; without the flag SD / "
            "scale e - 1 at most %.2g\n",
            err, err0);
    /* without a map */
    for (size_t i = 0; i < N; i++)
        sd[i] = -1;
    CU_ASSERT_EQUAL(mr_sigma_volume(sd, x, x, NULL, NULL, S, H, W, sb, scale, "img.h5"),
                    MR_ERR_USAGE);
    CU_ASSERT_PTR_NOT_NULL(strstr(mr_error_message(), "--uncertainty bootstrap"));
    CU_ASSERT_PTR_NOT_NULL(strstr(mr_error_message(), "img.h5"));
    CU_ASSERT_EQUAL(mr_sigma_volume_masked(sd, x, x, NULL, S, H, W, sb, scale, NULL, 0, "img.h5"),
                    MR_ERR_USAGE);
    CU_ASSERT(sd[0] == -1 && sd[N - 1] == -1);
    mr_sigma_free(sb);
    mr_sigma_free(sp);
}

/* ---------------------------------------------------------------- the CLI */

/* 2 slices of ch2 (z 25..26 mm), 4 coils, 96 x 96, as test_model_uq's recon tests. */
static const char *kspace(void)
{
    static char path[4096];
    if (path[0]) return path;
    snprintf(path, sizeof path, "%s", mr_test_path("k.h5"));
    CU_ASSERT_FATAL(mr_test_sh("%s -q simulate --input " TEMPLATES "/ch2.nii.gz --output %s "
                               "--coils 4 --slices 96:98 --matrix 96,96 --seed 1",
                               mr_test_bin(), path) == 0);
    return path;
}

static void expect_fail(const char *needle1, const char *needle2, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Run a command that must fail with exit 1 and a message holding needle1 and needle2 (or NULL). */
static void expect_fail(const char *needle1, const char *needle2, const char *fmt, ...)
{
    char cmd[16384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int rc = mr_test_sh("%s", cmd);
    const char *out = mr_test_output();
    int ok = rc == 1 && strstr(out, needle1) && (!needle2 || strstr(out, needle2));
    if (!ok)
        fprintf(stderr, "$ %s\nexit %d: '%s' lacks '%s' or '%s'\n", cmd, rc, out, needle1,
                needle2 ? needle2 : "");
    CU_ASSERT_EQUAL(rc, 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, needle1));
    if (needle2) CU_ASSERT_PTR_NOT_NULL(strstr(out, needle2));
}

static void test_cli_errors(void)
{
    if (!have_data()) return;
    const char *k = kspace();
    char plain[4096], boot[4096];
    snprintf(plain, sizeof plain, "%s", mr_test_src("models/cs-l1_sigma.h5"));
    snprintf(boot, sizeof boot, "%s", mr_test_src("models/cs-l1_sigma_bootstrap.h5"));
    const char *bin = mr_test_bin(), *dir = mr_test_tmpdir();
    expect_fail("zf has nothing to re-simulate", "usage error",
                "%s recon --input %s --output %s/bad_zf.h5 --method zf --uncertainty bootstrap",
                bin, k, dir);
    expect_fail(plain, "not calibrated with the parametric bootstrap",
                "%s recon --input %s --output %s/bad_plain.h5 --method cs-l1 --mask equispaced "
                "--accel 4 --uncertainty bootstrap --uncertainty-model %s",
                bin, k, dir, plain);
    expect_fail(boot, "use it with --uncertainty bootstrap",
                "%s recon --input %s --output %s/bad_boot.h5 --method cs-l1 --mask equispaced "
                "--accel 4 --uncertainty model --uncertainty-model %s",
                bin, k, dir, boot);
    expect_fail(boot, "use it with --uncertainty bootstrap",
                "%s recon --input %s --output %s/bad_both.h5 --method cs-l1 --mask equispaced "
                "--accel 4 --uncertainty both --replicas 2 --uncertainty-model %s",
                bin, k, dir, boot);
    /* denoise has no reconstruction to re-simulate */
    CU_ASSERT_EQUAL_FATAL(mr_test_sh("%s -q recon --input %s --output %s/zf_in.h5", bin, k, dir),
                          0);
    expect_fail("--uncertainty bootstrap", NULL,
                "%s denoise --input %s/zf_in.h5 --output %s/bad_den.h5 --uncertainty model "
                "--uncertainty-model %s",
                bin, dir, dir, boot);
    CU_ASSERT_EQUAL(mr_test_count_files(dir, "bad_"), 0);
}

/* cs-l1 4x with the shipped bootstrap network: `uncertainty` of the reconstruction's shape, finite,
 * positive in the object (measured median 32.7 there, the image's maximum 1171), not the model
 * map, bit-identical on a second run; the _sd file says bootstrap. */
static void test_cli_run(void)
{
    if (!have_data()) return;
    const char *k = kspace(), *bin = mr_test_bin(), *dir = mr_test_tmpdir();
    for (int i = 0; i < 2; i++) {
        int rc = mr_test_sh("%s recon --input %s --output %s/bs%d.h5 --method cs-l1 --mask "
                            "equispaced --accel 4 --uncertainty bootstrap",
                            bin, k, dir, i);
        CU_ASSERT_EQUAL(rc, 0);
        if (rc) fprintf(stderr, "%s\n", mr_test_output());
    }
    CU_ASSERT_PTR_NOT_NULL(strstr(mr_test_output(), "--uncertainty bootstrap"));
    int rc = mr_test_sh("%s -q recon --input %s --output %s/mo.h5 --method cs-l1 --mask "
                        "equispaced --accel 4 --uncertainty model",
                        bin, k, dir);
    CU_ASSERT_EQUAL(rc, 0);
    rc = mr_test_sh(
        "cd %s && %s - <<'EOF'\n"
        "import h5py, numpy as np\n"
        "f = h5py.File('bs0.h5', 'r'); r = f['reconstruction'][()]; u = f['uncertainty'][()]\n"
        "assert u.shape == r.shape == (2, 96, 96), (u.shape, r.shape)\n"
        "assert np.isfinite(u).all() and (u >= 0).all()\n"
        "obj = r > 0.1 * r.max()\n"
        "assert obj.sum() > 1000 and (u[obj] > 0).all()\n"
        "g = h5py.File('bs0_sd.h5', 'r')\n"
        "assert g.attrs['mrpipe_uncertainty'] == 'bootstrap', g.attrs['mrpipe_uncertainty']\n"
        "assert np.array_equal(g['uncertainty'][()], u)\n"
        "assert np.array_equal(h5py.File('bs1.h5', 'r')['uncertainty'][()], u)\n"
        "m = h5py.File('mo.h5', 'r')\n"
        "mr = m['reconstruction'][()]\n"
        "# slice 0 is identical; with the bootstrap every slice runs in a fresh state, so slice 1\n"
        "# follows another sequence of cs-l1's random shifts than model's continued state\n"
        "assert np.array_equal(mr[0], r[0])\n"
        "d1 = np.sqrt(np.mean((mr[1] - r[1]) ** 2)) / np.sqrt(np.mean(r[1] ** 2))\n"
        "assert 0 < d1 < 0.05, d1\n"
        "mu = m['uncertainty'][()]\n"
        "q = np.median(u[obj]) / np.median(mu[obj])\n"
        "print('bootstrap map: median %%.4g in the object (model map %%.4g), largest "
        "difference %%.4g, image max %%.4g' %% (np.median(u[obj]), np.median(mu[obj]), "
        "np.abs(u - mu).max(), r.max()))\n"
        "assert not np.array_equal(u, mu) and 0.5 < q < 2, q\n"
        "EOF",
        dir, mr_test_python());
    fprintf(stderr, "\n  %s", mr_test_output());
    CU_ASSERT_EQUAL(rc, 0);
}

/* ---------------------------------------------------------------- mrpipe train */

/* Lines 1-9 of the configs below (the degradation, when there is one, is line 10). */
#define TRAIN_HEAD                                                                                 \
    "seed: 7\n"                                                                                    \
    "model: {depth: 8, channels: 16}\n" MR_TEST_CH2_SPLIT

#define DEGRADE(methods)                                                                           \
    "degradation: {type: undersampling, accel: [4], center_fraction: [0.16], masks: "              \
    "[equispaced], methods: " methods ", coils: 4, matrix: 96, bank_slices: 2}\n"

static void expect_config_error(const char *cfg, const char *needle, int line)
{
    char want[32];
    snprintf(want, sizeof want, "line %d:", line);
    mr_test_write_text(mr_test_path("bad.yaml"), cfg);
    int rc = mr_test_sh("%s train --config %s --output %s", mr_test_bin(), mr_test_path("bad.yaml"),
                        mr_test_path("badrun"));
    const char *out = mr_test_output();
    if (rc != 1 || !strstr(out, needle) || !strstr(out, want))
        fprintf(stderr, "exit %d: '%s' lacks '%s' or '%s'\n", rc, out, needle, want);
    CU_ASSERT_EQUAL(rc, 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, needle));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, want));
    CU_ASSERT(!mr_path_is_dir(mr_test_path("badrun")));
}

static void test_train_config_errors(void)
{
    const char *need = "bootstrap needs degradation";
    char cfg[4096];
    /* line 11 variance_head, 12 base, 13 feature_fit, 14 bootstrap, 15 training */
    const char *vh[][2] = {
        {DEGRADE("[cs-l1]"), "  base: none\n  feature_fit: false\n"},    /* no feature fit */
        {DEGRADE("[cs-l1]"), "  base: none\n  unsampled_part: true\n"},  /* feature_fit missing */
        {DEGRADE("[zf, cs-l1]"), "  base: none\n  feature_fit: true\n"}, /* zf: nothing to redo */
        {DEGRADE("[sense]"), "  base: %s\n  feature_fit: true\n"},       /* judges another model */
        {"noise: {sigma: [0.01, 0.1]}\n", "  base: none\n  feature_fit: true\n"}, /* Rician */
    };
    for (size_t i = 0; i < sizeof vh / sizeof *vh; i++) {
        char v[512];
        snprintf(v, sizeof v, vh[i][1], mr_test_src("models/denoiser_blind.h5"));
        snprintf(cfg, sizeof cfg,
                 TRAIN_HEAD "%svariance_head:\n%s  bootstrap: true\n"
                            "training: {patch: 40, batch: 2, epochs: 1, steps_per_epoch: 1}\n",
                 vh[i][0], v);
        expect_config_error(cfg, need, 14);
    }
    CU_ASSERT_PTR_NOT_NULL(strstr(mr_test_output(), "variance_head.bootstrap"));
    /* epochs 0 without init, or without a variance head: at the training section (line 15/11) */
    snprintf(cfg, sizeof cfg,
             TRAIN_HEAD DEGRADE("[cs-l1]") "variance_head:\n  base: none\n  feature_fit: true\n"
                                           "  bootstrap: false\ntraining: {patch: 40, batch: 2, "
                                           "epochs: 0, steps_per_epoch: 1}\n");
    expect_config_error(cfg, "epochs 0 (calibrate only) needs a variance_head and init", 15);
    snprintf(cfg, sizeof cfg,
             TRAIN_HEAD
             "init: %s\ntraining: {patch: 40, batch: 2, epochs: 0, steps_per_epoch: 1}\n",
             mr_test_src("models/denoiser_blind.h5"));
    expect_config_error(cfg, "epochs 0 (calibrate only) needs a variance_head and init", 11);
}

/* A calibrate-only run (epochs: 0, init: the shipped cs-l1 network, 2 calibration slices at 96 x
 * 96): the weights are init's, the refit reads the bootstrap map (no edge feature: w3 = 0), the
 * file says so, and recon takes it for --uncertainty bootstrap only. */
static void test_train_calibrate_only(void)
{
    if (!have_data()) return;
    char cfg[4096], out[4096], mp[4200];
    const char *init = mr_test_src("models/cs-l1_sigma.h5");
    snprintf(cfg, sizeof cfg,
             TRAIN_HEAD "  validation_slices: 1\n" DEGRADE(
                 "[cs-l1]") "variance_head:\n  base: none\n  unsampled_part: true\n  "
                            "calibration_slices: 2\n"
                            "  feature_fit: true\n  bootstrap: true\n"
                            "init: %s\n"
                            "training: {patch: 40, batch: 2, epochs: 0, steps_per_epoch: 1}\n",
             init);
    mr_test_write_text(mr_test_path("cal.yaml"), cfg);
    snprintf(out, sizeof out, "%s", mr_test_path("cal"));
    int rc = mr_test_sh("%s train --config %s --output %s", mr_test_bin(), mr_test_path("cal.yaml"),
                        out);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(mr_test_output(), "log(bootstrap)"));
    snprintf(mp, sizeof mp, "%s/model.h5", out);
    mr_nn_model *m = NULL, *im = NULL;
    CU_ASSERT_EQUAL_FATAL(mr_nn_model_load(&m, mp, NULL), MR_OK);
    CU_ASSERT_EQUAL_FATAL(mr_nn_model_load(&im, init, NULL), MR_OK);
    CU_ASSERT_EQUAL(m->meta.feature_bootstrap, 1);
    CU_ASSERT_EQUAL(m->meta.n_feature_weights, 4);
    CU_ASSERT(m->meta.feature_weights[3] == 0);
    CU_ASSERT(m->meta.calibration_scale > 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(m->meta.calibration, "log(bootstrap)"));
    CU_ASSERT_EQUAL_FATAL(m->nparams, im->nparams);
    CU_ASSERT(memcmp(m->params, im->params, m->nparams * sizeof *m->params) == 0);
    CU_ASSERT(memcmp(m->buffers, im->buffers, m->nbuffers * sizeof *m->buffers) == 0);
    fprintf(stderr, "\n  calibrate-only: w = %.4g %.4g %.4g %.4g, scale %.4g\n",
            m->meta.feature_weights[0], m->meta.feature_weights[1], m->meta.feature_weights[2],
            m->meta.feature_weights[3], m->meta.calibration_scale);
    mr_nn_model_destroy(m);
    mr_nn_model_destroy(im);
    const char *k = kspace(), *dir = mr_test_tmpdir();
    rc = mr_test_sh("%s -q recon --input %s --output %s/own.h5 --method cs-l1 --mask equispaced "
                    "--accel 4 --uncertainty bootstrap --uncertainty-model %s && %s -c \"import "
                    "h5py, numpy as np; u = h5py.File('%s/own.h5')['uncertainty'][()]; "
                    "assert np.isfinite(u).all() and u.max() > 0\"",
                    mr_test_bin(), k, dir, mp, mr_test_python(), dir);
    CU_ASSERT_EQUAL(rc, 0);
    if (rc) fprintf(stderr, "%s\n", mr_test_output());
    expect_fail(mp, "use it with --uncertainty bootstrap",
                "%s recon --input %s --output %s/bad_own.h5 --method cs-l1 --mask equispaced "
                "--accel 4 --uncertainty model --uncertainty-model %s",
                mr_test_bin(), k, dir, mp);
}

int main(void)
{
    static const mr_test_case cases[] = {
        {"bootstrap of fully sampled SENSE reproduces |xhat| (Tikhonov shrinkage only)",
         test_dev_full_sense},
        {"bootstrap at 4x: a deviation in the object; phase dropped; deterministic",
         test_dev_undersampled},
        {"bootstrap without coil maps, or a bad method parameter: errors", test_dev_errors},
        {"bootstrap map of a constant deviation is its magnitude", test_map_constant},
        {"bootstrap map of an impulse: symmetric, peaked, energy kept, the Gaussian",
         test_map_impulse},
        {"calibration_feature_bootstrap: written, read, 2 and NaN refused", test_model_attribute},
        {"the bootstrap map is the refit's feature; a network without its map refused",
         test_map_is_the_feature},
        {"recon --uncertainty bootstrap: zf, network and kind disagreeing, denoise: errors",
         test_cli_errors},
        {"recon cs-l1 4x --uncertainty bootstrap: the map", test_cli_run},
        {"train: bootstrap's requirements and epochs 0 are config errors naming the line",
         test_train_config_errors},
        {"train: calibrate-only with the bootstrap feature keeps the weights",
         test_train_calibrate_only},
        {NULL, NULL},
    };
    return mr_test_run("bootstrap", cases);
}
