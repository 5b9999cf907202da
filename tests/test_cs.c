/*
 * test_cs.c: compressed sensing (issue 4, part 2): the wavelet and finite-difference operators
 * (adjoint identity, orthogonality, odd sizes), the solvers on problems with known solutions,
 * and `mrpipe recon --method cs-l1 / cs-tv` against BART's `pics` on its analytic phantom with a
 * 1-D equispaced + centre mask and a 2-D Poisson-disc mask (same maps, mask, lambda, iterations:
 * mrpipe's magnitude PSNR vs the fully sampled RSS must be at least BART's), single-coil data,
 * and bad inputs (lambda < 0, non-convergence reported, masks with no centre).
 */
#include "mr_io.h"
#include "mr_recon.h"
#include "mr_validation.h"
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- operators */

static const size_t SIZES[][2] = {{256, 256}, {17, 23}, {33, 16}, {9, 9}, {1, 5}, {5, 1},
                                  {64, 48}, {31, 31}, {2, 3}, {100, 37}};

static double rel_diff(const mr_cfloat *a, const mr_cfloat *b, size_t n)
{
    double d = 0, nb = 0;
    for (size_t i = 0; i < n; i++) {
        d += cabsf(a[i] - b[i]) * cabsf(a[i] - b[i]);
        nb += cabsf(b[i]) * cabsf(b[i]);
    }
    return sqrt(d / nb);
}

static void test_wavelet_adjoint_orthogonal(void)
{
    for (size_t k = 0; k < sizeof SIZES / sizeof SIZES[0]; k++) {
        size_t h = SIZES[k][0], w = SIZES[k][1], n = h * w;
        for (int sh = 0; sh < 3; sh++) {
            size_t dy = (size_t)sh * 5, dx = (size_t)sh * 3;
            mr_linop *W = NULL;
            CU_ASSERT_FATAL(mr_linop_wavelet(&W, h, w, 16, dy, dx) == MR_OK);
            double e = mr_linop_adjoint_error(W, 7 + (uint32_t)k);
            if (!(e >= 0 && e < 1e-5))
                fprintf(stderr, "wavelet (%zu, %zu) shift (%zu, %zu): adjoint error %g\n", h, w, dy,
                        dx, e);
            CU_ASSERT(e >= 0 && e < 1e-5);
            /* orthogonal: W^H W x = x and ||W x|| = ||x|| */
            mr_cfloat *x = malloc(n * sizeof *x), *c = malloc(n * sizeof *c),
                      *r = malloc(n * sizeof *r);
            mr_vec_randn(x, n, 3);
            CU_ASSERT(mr_linop_forward(W, c, x) == MR_OK);
            CU_ASSERT(mr_linop_adjoint(W, r, c) == MR_OK);
            double rt = rel_diff(r, x, n);
            double nr = fabs(sqrt(mr_vec_norm2(c, n) / mr_vec_norm2(x, n)) - 1);
            if (rt > 1e-5 || nr > 1e-5)
                fprintf(stderr, "wavelet (%zu, %zu): round trip %g, norm ratio - 1 %g\n", h, w, rt,
                        nr);
            CU_ASSERT(rt < 1e-5);
            CU_ASSERT(nr < 1e-5);
            free(x);
            free(c);
            free(r);
            mr_linop_destroy(W);
        }
    }
}

/* Levels as BART's pics (coarsest scale >= 16): 256 -> 5 splits, coarse 8; a smooth image is
 * sparse (its detail coefficients are small). */
static void test_wavelet_levels_sparsity(void)
{
    mr_wavelet *wt = NULL;
    int ly, lx;
    size_t ch, cw, h = 64, w = 64;
    CU_ASSERT_FATAL(mr_wavelet_create(&wt, 256, 256, 16) == MR_OK);
    mr_wavelet_levels(wt, &ly, &lx);
    mr_wavelet_coarse_size(wt, &ch, &cw);
    CU_ASSERT(ly == 5 && lx == 5 && ch == 8 && cw == 8);
    mr_wavelet_destroy(wt);
    CU_ASSERT_FATAL(mr_wavelet_create(&wt, h, w, 16) == MR_OK);
    mr_cfloat *x = malloc(h * w * sizeof *x), *c = malloc(h * w * sizeof *c);
    for (size_t y = 0; y < h; y++)
        for (size_t xx = 0; xx < w; xx++) x[y * w + xx] = (float)(y + 2 * xx) + 0.5f * I;
    mr_wavelet_forward(wt, c, x);
    mr_wavelet_coarse_size(wt, &ch, &cw);
    double coarse = 0, all = mr_vec_norm2(c, h * w);
    for (size_t y = 0; y < ch; y++)
        for (size_t xx = 0; xx < cw; xx++) coarse += cabsf(c[y * w + xx]) * cabsf(c[y * w + xx]);
    /* a linear ramp is annihilated by D4's two vanishing moments away from the periodic seam */
    CU_ASSERT(coarse / all > 0.9);
    free(x);
    free(c);
    mr_wavelet_destroy(wt);
}

static void test_grad_adjoint(void)
{
    for (size_t k = 0; k < sizeof SIZES / sizeof SIZES[0]; k++) {
        mr_linop *G = NULL;
        size_t h = SIZES[k][0], w = SIZES[k][1], n = h * w;
        CU_ASSERT_FATAL(mr_linop_grad2(&G, h, w) == MR_OK);
        double e = mr_linop_adjoint_error(G, 11 + (uint32_t)k);
        if (!(e >= 0 && e < 1e-5)) fprintf(stderr, "grad (%zu, %zu): adjoint error %g\n", h, w, e);
        CU_ASSERT(e >= 0 && e < 1e-5);
        /* the fused normal equals G^H G, also in place */
        mr_cfloat *x = malloc(n * sizeof *x), *g = malloc(2 * n * sizeof *g),
                  *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
        mr_vec_randn(x, n, 5);
        CU_ASSERT(mr_linop_forward(G, g, x) == MR_OK);
        CU_ASSERT(mr_linop_adjoint(G, a, g) == MR_OK);
        CU_ASSERT(mr_linop_normal(G, b, x) == MR_OK);
        CU_ASSERT(n == 1 || rel_diff(b, a, n) < 1e-5);
        CU_ASSERT(mr_linop_normal(G, x, x) == MR_OK);
        CU_ASSERT(n == 1 || rel_diff(x, a, n) < 1e-5);
        free(x);
        free(g);
        free(a);
        free(b);
        mr_linop_destroy(G);
    }
}

static void test_prox_l21(void)
{
    mr_prox p;
    mr_cfloat v[4] = {3.0f, 0.1f * I, 4.0f * I, 0.0f}; /* two pixels: (3, 4i) and (0.1i, 0) */
    CU_ASSERT_FATAL(mr_prox_l21_create(&p, 2, 2.0f) == MR_OK);
    CU_ASSERT(p.apply(p.data, v, v, 0.5f) == MR_OK); /* tau = 1: |(3, 4i)| = 5 -> 4 */
    CU_ASSERT(cabsf(v[0] - 2.4f) < 1e-6 && cabsf(v[2] - 3.2f * I) < 1e-6);
    CU_ASSERT(cabsf(v[1]) == 0 && cabsf(v[3]) == 0);
    mr_prox_l21_destroy(&p);
}

/* FISTA on min 1/2 ||F x - y||^2 + lambda ||W x||_1 (F unitary, W orthogonal, no shifts): the
 * solution is W^H soft(W F^H y, lambda). */
static void test_fista_known_solution(void)
{
    size_t h = 32, w = 24, n = h * w;
    mr_linop *F = NULL, *W = NULL;
    mr_prox prox;
    mr_recon_stats st;
    float lambda = 0.3f;
    mr_cfloat *y = malloc(n * sizeof *y), *x = calloc(n, sizeof *x), *ref = malloc(n * sizeof *ref),
              *c = malloc(n * sizeof *c);
    CU_ASSERT_FATAL(mr_linop_fft2c(&F, 1, h, w) == MR_OK);
    CU_ASSERT_FATAL(mr_linop_wavelet(&W, h, w, 16, 0, 0) == MR_OK);
    CU_ASSERT_FATAL(mr_prox_wavelet_create(&prox, h, w, 16, lambda, 0, 1, 0, 1) == MR_OK);
    mr_vec_randn(y, n, 9);
    CU_ASSERT(mr_linop_adjoint(F, ref, y) == MR_OK);
    CU_ASSERT(mr_linop_forward(W, c, ref) == MR_OK);
    mr_soft_threshold(c, c, lambda, n);
    CU_ASSERT(mr_linop_adjoint(W, ref, c) == MR_OK);
    mr_fista_params fp = {.iters = 200, .step = 0, .tol = 1e-6, .early_stop = 1}; /* power it. */
    CU_ASSERT(mr_fista_solve(x, &st, F, y, &prox, &fp) == MR_OK);
    double e = rel_diff(x, ref, n);
    fprintf(stderr, "  FISTA: %ld iterations, change %.2g, error vs closed form %.2g\n",
            st.iterations, st.residual, e);
    CU_ASSERT(e < 1e-4);
    CU_ASSERT(st.converged == 1);
    /* one iteration from zero is far from converged and says so */
    memset(x, 0, n * sizeof *x);
    fp.iters = 1;
    CU_ASSERT(mr_fista_solve(x, &st, F, y, &prox, &fp) == MR_OK);
    CU_ASSERT(st.iterations == 1 && st.converged == 0 && st.residual > 0.1);
    double L = 0;
    CU_ASSERT(mr_linop_normal_norm(&L, F, 10, 1) == MR_OK);
    CU_ASSERT(fabs(L - 1) < 1e-4);
    mr_prox_wavelet_destroy(&prox);
    mr_linop_destroy(F);
    mr_linop_destroy(W);
    free(y);
    free(x);
    free(ref);
    free(c);
}

/* ADMM with A = F (unitary) and G = I-like check: TV denoising of a noisy piecewise-constant image
 * lowers the error, converges by Boyd's rule and agrees with a long FISTA-free reference run. */
static void test_admm_tv_denoise(void)
{
    size_t h = 48, w = 40, n = h * w;
    mr_linop *F = NULL, *G = NULL;
    mr_prox prox;
    mr_recon_stats st;
    mr_cfloat *truth = malloc(n * sizeof *truth), *noise = malloc(n * sizeof *noise);
    mr_cfloat *y = malloc(n * sizeof *y), *x = calloc(n, sizeof *x), *x2 = calloc(n, sizeof *x2);
    for (size_t i = 0; i < n; i++) {
        size_t r = i / w, c = i % w;
        truth[i] = (r > 10 && r < 30 && c > 8 && c < 25) ? 1.0f : 0.2f;
    }
    mr_vec_randn(noise, n, 4);
    for (size_t i = 0; i < n; i++) truth[i] += 0, noise[i] *= 0.1f;
    for (size_t i = 0; i < n; i++) x2[i] = truth[i] + noise[i];
    CU_ASSERT_FATAL(mr_linop_fft2c(&F, 1, h, w) == MR_OK);
    CU_ASSERT_FATAL(mr_linop_grad2(&G, h, w) == MR_OK);
    CU_ASSERT(mr_linop_forward(F, y, x2) == MR_OK);
    CU_ASSERT_FATAL(mr_prox_l21_create(&prox, n, 0.1f) == MR_OK);
    mr_admm_params ap = {.iters = 300, .cg_iters = 5, .rho = 1.0, .alpha = 1.6, .abstol = 1e-5,
                         .reltol = 1e-4, .adapt_rho = 1};
    CU_ASSERT(mr_admm_solve(x, &st, F, y, G, &prox, &ap) == MR_OK);
    double e_noisy = rel_diff(x2, truth, n), e_tv = rel_diff(x, truth, n);
    fprintf(stderr, "  ADMM TV denoise: %ld iterations, residual %.2g, error %.3f -> %.3f\n",
            st.iterations, st.residual, e_noisy, e_tv);
    CU_ASSERT(st.converged == 1);
    CU_ASSERT(e_tv < 0.5 * e_noisy);
    /* one iteration is reported as not converged */
    memset(x, 0, n * sizeof *x);
    ap.iters = 1;
    CU_ASSERT(mr_admm_solve(x, &st, F, y, G, &prox, &ap) == MR_OK);
    CU_ASSERT(st.iterations == 1 && st.converged == 0);
    mr_prox_l21_destroy(&prox);
    mr_linop_destroy(F);
    mr_linop_destroy(G);
    free(truth);
    free(noise);
    free(y);
    free(x);
    free(x2);
}

/* ---------------------------------------------------------------- end to end vs BART */

static size_t read_cfl_mag(float **out, const char *path)
{
    mr_array *a = NULL;
    if (mr_cfl_read(&a, path) != MR_OK) {
        fprintf(stderr, "%s\n", mr_error_message());
        return 0;
    }
    size_t n = mr_array_numel(a);
    *out = malloc(n * sizeof **out);
    for (size_t i = 0; i < n; i++) (*out)[i] = cabsf(mr_array_c64(a)[i]);
    mr_array_destroy(a);
    return n;
}

static double psnr_of(const char *ref, const char *img)
{
    float *r = NULL, *x = NULL;
    size_t n1 = read_cfl_mag(&r, mr_test_path(ref)), n2 = read_cfl_mag(&x, mr_test_path(img));
    double p = (n1 && n1 == n2) ? mr_metric_psnr(r, x, n1) : -1;
    free(r);
    free(x);
    return p;
}

/* BART's phantom, its RSS reference, the two masks, undersampled k-space and ecalib maps. */
static int phantom_ready;
static void phantom_setup(void)
{
    if (phantom_ready) return;
    int rc = mr_test_sh(
        "cd %s && bart phantom -x 256 -k -s 8 ph && bart fft -i -u 3 ph coil && bart rss 8 coil ref"
        " && %s - <<'EOF'\n"
        "import numpy as np\n"
        "m = np.zeros((256, 256), np.complex64); m[:, ::4] = 1; m[:, 116:140] = 1\n"
        "open('m1d.hdr', 'w').write('# Dimensions\\n256 256 1 1 1 1 1 1 1 1 1 1 1 1 1 1\\n')\n"
        "m.T.tofile('m1d.cfl')\n"
        "EOF\n"
        "%s mask --type poisson --accel 4 --center-fraction 0.08 --shape 256,256 --output m2d.cfl"
        " && bart fmac ph m1d us1 && bart fmac ph m2d us2"
        " && bart ecalib -m1 us1 sens1 && bart ecalib -m1 us2 sens2",
        mr_test_tmpdir(), mr_test_python(), mr_test_bin());
    if (rc) fprintf(stderr, "%s\n", mr_test_output());
    CU_ASSERT_FATAL(rc == 0);
    phantom_ready = 1;
}

static void compare_with_bart(const char *us, const char *sens, const char *method,
                              const char *bart_reg, const char *label)
{
    char ours[64], theirs[64];
    snprintf(ours, sizeof ours, "%s_%s", method, us);
    snprintf(theirs, sizeof theirs, "bart_%s_%s", method, us);
    int rc = mr_test_sh("cd %s && bart pics -S %s -r 0.01 -i 30 %s %s %s", mr_test_tmpdir(),
                        bart_reg, us, sens, theirs);
    CU_ASSERT_FATAL(rc == 0);
    rc = mr_test_sh("cd %s && %s recon --input %s.cfl --sens %s.cfl --method %s --lambda 0.01 "
                    "--iters 30 --output %s.cfl",
                    mr_test_tmpdir(), mr_test_bin(), us, sens, method, ours);
    if (rc) fprintf(stderr, "%s\n", mr_test_output());
    CU_ASSERT_FATAL(rc == 0);
    CU_ASSERT(strstr(mr_test_output(), "did not converge") == NULL);
    char zf[64];
    snprintf(zf, sizeof zf, "zf_%s", us);
    CU_ASSERT_FATAL(mr_test_sh("cd %s && %s recon --input %s.cfl --output %s.cfl",
                               mr_test_tmpdir(), mr_test_bin(), us, zf) == 0);
    /* and with mrpipe's own ESPIRiT maps (no --sens) */
    char own[80];
    snprintf(own, sizeof own, "%s_own", ours);
    rc = mr_test_sh("cd %s && %s recon --input %s.cfl --method %s --lambda 0.01 --iters 30 "
                    "--output %s.cfl",
                    mr_test_tmpdir(), mr_test_bin(), us, method, own);
    if (rc) fprintf(stderr, "%s\n", mr_test_output());
    CU_ASSERT_FATAL(rc == 0);
    double p_ours = psnr_of("ref", ours), p_bart = psnr_of("ref", theirs), p_zf = psnr_of("ref", zf);
    double p_own = psnr_of("ref", own);
    fprintf(stderr,
            "  %s: PSNR mrpipe %s %.2f dB (BART's maps), %.2f dB (its ESPIRiT); bart pics %s "
            "%.2f dB (zero-filled %.2f dB)\n",
            label, method, p_ours, p_own, bart_reg, p_bart, p_zf);
    CU_ASSERT(p_bart > p_zf + 5);
    CU_ASSERT(p_ours >= p_bart);
    CU_ASSERT(p_own >= p_bart);
}

static void test_cs_l1_vs_bart_1d(void)
{
    phantom_setup();
    compare_with_bart("us1", "sens1", "cs-l1", "-l1", "1-D equispaced + 24 lines");
}

static void test_cs_l1_vs_bart_poisson(void)
{
    phantom_setup();
    compare_with_bart("us2", "sens2", "cs-l1", "-l1", "2-D Poisson disc");
}

static void test_cs_tv_vs_bart_1d(void)
{
    phantom_setup();
    compare_with_bart("us1", "sens1", "cs-tv", "-R T:3:0:0.01", "1-D equispaced + 24 lines");
}

static void test_cs_tv_vs_bart_poisson(void)
{
    phantom_setup();
    compare_with_bart("us2", "sens2", "cs-tv", "-R T:3:0:0.01", "2-D Poisson disc");
}

/* One coil, no maps (S = identity): better than zero filling. */
static void test_single_coil(void)
{
    phantom_setup();
    int rc = mr_test_sh("cd %s && bart phantom -x 128 -k sc && bart fft -i -u 3 sc scimg && "
                        "bart rss 8 scimg scref && bart resize -c 0 128 1 128 m2d m2d128 && "
                        "bart fmac sc m2d128 scus && "
                        "%s recon --input scus.cfl --method cs-l1 --output sc_l1.cfl && "
                        "%s recon --input scus.cfl --method cs-tv --output sc_tv.cfl && "
                        "%s recon --input scus.cfl --output sc_zf.cfl",
                        mr_test_tmpdir(), mr_test_bin(), mr_test_bin(), mr_test_bin());
    if (rc) fprintf(stderr, "%s\n", mr_test_output());
    CU_ASSERT_FATAL(rc == 0);
    double l1 = psnr_of("scref", "sc_l1"), tv = psnr_of("scref", "sc_tv"),
           zf = psnr_of("scref", "sc_zf");
    fprintf(stderr, "  single coil 128: PSNR cs-l1 %.2f, cs-tv %.2f, zero-filled %.2f dB\n", l1, tv,
            zf);
    CU_ASSERT(l1 > zf + 3);
    CU_ASSERT(tv > zf + 3);
}

/* ---------------------------------------------------------------- bad inputs */

static void test_bad_inputs(void)
{
    phantom_setup();
    const char *dir = mr_test_tmpdir();
    /* lambda < 0: usage error, nothing written */
    int rc = mr_test_sh("cd %s && %s recon --input us1.cfl --sens sens1.cfl --method cs-l1 "
                        "--lambda -0.5 --output neg.cfl",
                        dir, mr_test_bin());
    CU_ASSERT(rc == 1);
    CU_ASSERT(strstr(mr_test_output(), "--lambda") != NULL);
    CU_ASSERT(mr_test_sh("test ! -e %s/neg.cfl && test ! -e %s/neg.hdr", dir, dir) == 0);
    /* one iteration: a warning with the iteration count and the residual, output still written */
    rc = mr_test_sh("cd %s && %s recon --input us1.cfl --sens sens1.cfl --method cs-l1 --iters 1 "
                    "--output it1.cfl",
                    dir, mr_test_bin());
    CU_ASSERT(rc == 0);
    if (!strstr(mr_test_output(), "did not converge")) fprintf(stderr, "%s\n", mr_test_output());
    CU_ASSERT(strstr(mr_test_output(), "did not converge") != NULL);
    CU_ASSERT(strstr(mr_test_output(), "1 iterations") != NULL);
    CU_ASSERT(strstr(mr_test_output(), "residual") != NULL);
    rc = mr_test_sh("cd %s && %s recon --input us1.cfl --sens sens1.cfl --method cs-tv --iters 1 "
                    "--output tv1.cfl",
                    dir, mr_test_bin());
    CU_ASSERT(rc == 0);
    CU_ASSERT(strstr(mr_test_output(), "did not converge") != NULL);
    /* a mask without a centre: warned */
    rc = mr_test_sh("cd %s && %s - <<'EOF'\n"
                    "import numpy as np\n"
                    "m = np.zeros((256, 256), np.complex64); m[:, 1::4] = 1\n"
                    "open('mnc.hdr', 'w').write('# Dimensions\\n256 256 1 1 1 1 1 1 1 1 1 1 1 1 1 "
                    "1\\n')\n"
                    "m.T.tofile('mnc.cfl')\n"
                    "EOF\n"
                    "bart fmac ph mnc usnc && %s recon --input usnc.cfl --sens sens1.cfl "
                    "--method cs-l1 --output nc.cfl",
                    dir, mr_test_python(), mr_test_bin());
    if (rc) fprintf(stderr, "%s\n", mr_test_output());
    CU_ASSERT(rc == 0);
    CU_ASSERT(strstr(mr_test_output(), "no fully sampled centre") != NULL);
    /* coil maps of the wrong size: error naming both shapes */
    rc = mr_test_sh("cd %s && bart resize -c 0 128 sens1 small && %s recon --input us1.cfl "
                    "--sens small.cfl --method cs-l1 --output bad.cfl",
                    dir, mr_test_bin());
    CU_ASSERT(rc == 1);
    CU_ASSERT(strstr(mr_test_output(), "coil maps") != NULL);
    CU_ASSERT(mr_test_count_files(dir, ".partial") == 0);
}

int main(void)
{
    const mr_test_case cases[] = {
        {"wavelet: adjoint, orthogonal, odd sizes, shifts", test_wavelet_adjoint_orthogonal},
        {"wavelet: levels as BART, sparsity of a ramp", test_wavelet_levels_sparsity},
        {"finite differences: adjoint, fused normal, odd sizes", test_grad_adjoint},
        {"prox of the l2,1 norm (isotropic TV)", test_prox_l21},
        {"FISTA reaches the closed-form solution", test_fista_known_solution},
        {"ADMM TV denoising converges", test_admm_tv_denoise},
        {"cs-l1 >= bart pics -l1, 1-D mask", test_cs_l1_vs_bart_1d},
        {"cs-l1 >= bart pics -l1, Poisson mask", test_cs_l1_vs_bart_poisson},
        {"cs-tv >= bart pics -R T, 1-D mask", test_cs_tv_vs_bart_1d},
        {"cs-tv >= bart pics -R T, Poisson mask", test_cs_tv_vs_bart_poisson},
        {"single coil without maps", test_single_coil},
        {"bad inputs: lambda < 0, non-convergence, no centre, wrong maps", test_bad_inputs},
        {NULL, NULL},
    };
    return mr_test_run("cs", cases);
}
