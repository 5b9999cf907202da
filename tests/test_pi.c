/*
 * test_pi.c: parallel imaging (issue 4, part 1): the adjoint identity for every operator, CG
 * against a direct solve, ESPIRiT maps against `bart ecalib -m1` and against an independent numpy
 * eigen-decomposition, BART's data scaling against `bart pics`' own figure, SENSE against
 * `bart pics -l2` on BART's phantom (1-D equispaced + centre and 2-D Poisson masks), noise
 * pre-whitening on ISMRMRD data with injected correlated noise, and every bad input (message, exit
 * code, no output left).
 */
#include "mr_io.h"
#include "mr_recon.h"
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Python helpers shared by the oracle snippets: cfl I/O and magnitude PSNR vs a reference. */
static const char *PY_CFL =
    "import numpy as np, sys\n"
    "def readcfl(name):\n"
    "    dims = [int(x) for x in open(name + '.hdr').read().split('\\n')[1].split()]\n"
    "    n = max([i for i, d in enumerate(dims) if d > 1] + [1]) + 1  # trailing singleton dims off\n"
    "    return np.fromfile(name + '.cfl', np.complex64).reshape(dims[:n], order='F')\n"
    "def writecfl(name, a):\n"
    "    a = np.asarray(a, np.complex64)\n"
    "    with open(name + '.hdr', 'w') as f:\n"
    "        f.write('# Dimensions\\n' + ' '.join(str(d) for d in a.shape) + ' 1' * (16 - a.ndim) + '\\n')\n"
    "    a.ravel(order='F').tofile(name + '.cfl')\n"
    "def psnr(ref, x):\n"
    "    ref = abs(ref.squeeze()); x = abs(x.squeeze())\n"
    "    return 10 * np.log10(ref.max() ** 2 / ((x - ref) ** 2).mean())\n";

static int py(const char *body)
{
    int rc = mr_test_sh("cd %s && %s - <<'EOF'\n%s%s\nEOF", mr_test_tmpdir(), mr_test_python(), PY_CFL,
                        body);
    if (rc) fprintf(stderr, "python failed:\n%s\n", mr_test_output());
    return rc;
}

/* BART's phantom, its fully sampled RSS, and the two undersampled versions (made once):
 *  us1d: every 4th phase-encode column (d1) + the 24 centre columns (fastMRI equispaced R = 4);
 *  uspo: `bart poisson -y 2 -z 2 -C 24` (2-D Poisson disc, 24 x 24 centre, R ~ 3.9). */
static int phantom_ready;
static void make_phantom(void)
{
    if (phantom_ready) return;
    CU_ASSERT_FATAL(mr_test_sh("cd %s && bart phantom -x 256 -k -s 8 ph && bart fft -i -u 3 ph coil "
                               "&& bart rss 8 coil ref && bart poisson -Y 256 -Z 256 -y 2 -z 2 -C 24 "
                               "-s 7 pois && bart transpose 0 2 pois pois2 && bart fmac ph pois2 uspo",
                               mr_test_tmpdir()) == 0);
    CU_ASSERT_FATAL(py("m = np.zeros(256); m[0::4] = 1; m[128 - 12:128 + 12] = 1\n"
                       "k = readcfl('ph') * m[None, :, None, None]\n"
                       "writecfl('us1d', k)\n") == 0);
    phantom_ready = 1;
}

/* ---------------------------------------------------------------- adjoint tests */

static void test_adjoint(void)
{
    const size_t C = 4, H = 24, W = 20, hw = H * W;
    mr_cfloat *maps = malloc(C * hw * sizeof *maps);
    float *mask = malloc(hw * sizeof *mask);
    mr_test_rng r;
    mr_linop *ops[5] = {NULL};
    const char *names[5] = {"fft2c", "mask", "sens", "E = M F S", "compose(fft2c, sens)"};
    mr_test_rng_init(&r, 5);
    for (size_t i = 0; i < C * hw; i++)
        maps[i] = (float)mr_test_randn(&r) + I * (float)mr_test_randn(&r);
    for (size_t i = 0; i < hw; i++) mask[i] = mr_test_randu(&r) < 0.4 ? 1.0f : 0.0f;
    CU_ASSERT_FATAL(mr_linop_fft2c(&ops[0], C, H, W) == MR_OK);
    CU_ASSERT_FATAL(mr_linop_mask(&ops[1], mask, C, H, W) == MR_OK);
    CU_ASSERT_FATAL(mr_linop_sens(&ops[2], maps, C, H, W) == MR_OK);
    CU_ASSERT_FATAL(mr_linop_sense(&ops[3], maps, mask, C, H, W) == MR_OK);
    {
        mr_linop *F = NULL, *S = NULL;
        CU_ASSERT_FATAL(mr_linop_fft2c(&F, C, H, W) == MR_OK);
        CU_ASSERT_FATAL(mr_linop_sens(&S, maps, C, H, W) == MR_OK);
        CU_ASSERT_FATAL(mr_linop_compose(&ops[4], F, S) == MR_OK);
    }
    for (int i = 0; i < 5; i++) {
        double e = mr_linop_adjoint_error(ops[i], 11u + (uint32_t)i);
        fprintf(stderr, "  adjoint error %-22s %.2e\n", names[i], e);
        CU_ASSERT(e >= 0 && e < 1e-5);
    }
    /* E's normal equals E^H E applied explicitly */
    {
        mr_cfloat *x = malloc(hw * sizeof *x), *y = malloc(C * hw * sizeof *y);
        mr_cfloat *n1 = malloc(hw * sizeof *n1), *n2 = malloc(hw * sizeof *n2);
        mr_vec_randn(x, hw, 3);
        CU_ASSERT(mr_linop_normal(ops[3], n1, x) == MR_OK);
        CU_ASSERT(mr_linop_forward(ops[3], y, x) == MR_OK);
        CU_ASSERT(mr_linop_adjoint(ops[3], n2, y) == MR_OK);
        mr_vec_axpy(n2, -1.0f, n1, hw);
        CU_ASSERT(sqrt(mr_vec_norm2(n2, hw) / mr_vec_norm2(n1, hw)) < 1e-5);
        free(x);
        free(y);
        free(n1);
        free(n2);
    }
    for (int i = 0; i < 5; i++) mr_linop_destroy(ops[i]);
    free(maps);
    free(mask);
}

/* ---------------------------------------------------------------- CG */

/* A dense m x n operator (row-major) for the CG test. */
typedef struct {
    size_t m, n;
    double complex *a;
} dense_op;

static mr_status dense_forward(void *d, mr_cfloat *out, const mr_cfloat *in)
{
    dense_op *o = d;
    for (size_t i = 0; i < o->m; i++) {
        double complex acc = 0;
        for (size_t j = 0; j < o->n; j++) acc += o->a[i * o->n + j] * in[j];
        out[i] = (mr_cfloat)acc;
    }
    return MR_OK;
}

static mr_status dense_adjoint(void *d, mr_cfloat *out, const mr_cfloat *in)
{
    dense_op *o = d;
    for (size_t j = 0; j < o->n; j++) {
        double complex acc = 0;
        for (size_t i = 0; i < o->m; i++) acc += conj(o->a[i * o->n + j]) * in[i];
        out[j] = (mr_cfloat)acc;
    }
    return MR_OK;
}

static void dense_destroy(void *d)
{
    dense_op *o = d;
    free(o->a);
    free(o);
}

/* Solve the n x n system M x = b (complex, Gaussian elimination with partial pivoting). */
static void direct_solve(double complex *x, double complex *mat, double complex *b, size_t n)
{
    for (size_t c = 0; c < n; c++) {
        size_t piv = c;
        for (size_t r = c + 1; r < n; r++)
            if (cabs(mat[r * n + c]) > cabs(mat[piv * n + c])) piv = r;
        for (size_t k = 0; k < n; k++) {
            double complex t = mat[c * n + k];
            mat[c * n + k] = mat[piv * n + k];
            mat[piv * n + k] = t;
        }
        double complex t = b[c];
        b[c] = b[piv];
        b[piv] = t;
        for (size_t r = c + 1; r < n; r++) {
            double complex f = mat[r * n + c] / mat[c * n + c];
            for (size_t k = c; k < n; k++) mat[r * n + k] -= f * mat[c * n + k];
            b[r] -= f * b[c];
        }
    }
    for (size_t c = n; c-- > 0;) {
        double complex acc = b[c];
        for (size_t k = c + 1; k < n; k++) acc -= mat[c * n + k] * x[k];
        x[c] = acc / mat[c * n + c];
    }
}

static void test_cg(void)
{
    static const mr_linop_ops ops = {dense_forward, dense_adjoint, NULL, dense_destroy};
    const size_t m = 40, n = 24;
    const double lambda = 0.05;
    dense_op *d = malloc(sizeof *d);
    mr_linop *A = NULL;
    mr_cg *cg = NULL;
    mr_recon_stats st;
    mr_test_rng r;
    mr_test_rng_init(&r, 9);
    d->m = m;
    d->n = n;
    d->a = malloc(m * n * sizeof *d->a);
    for (size_t i = 0; i < m * n; i++) d->a[i] = mr_test_randn(&r) + I * mr_test_randn(&r);
    double complex *a = malloc(m * n * sizeof *a);
    memcpy(a, d->a, m * n * sizeof *a);
    CU_ASSERT_FATAL(mr_linop_create(&A, n, m, &ops, d) == MR_OK);
    CU_ASSERT_FATAL(mr_cg_create(&cg, n) == MR_OK);
    mr_cfloat *b = malloc(n * sizeof *b), *x = calloc(n, sizeof *x);
    mr_vec_randn(b, n, 21);
    /* direct solution of (A^H A + lambda I) x = b in double */
    double complex *mat = malloc(n * n * sizeof *mat), *bd = malloc(n * sizeof *bd);
    double complex *xd = malloc(n * sizeof *xd);
    for (size_t i = 0; i < n; i++) {
        bd[i] = b[i];
        for (size_t j = 0; j < n; j++) {
            double complex acc = i == j ? lambda : 0;
            for (size_t k = 0; k < m; k++) acc += conj(a[k * n + i]) * a[k * n + j];
            mat[i * n + j] = acc;
        }
    }
    direct_solve(xd, mat, bd, n);
    CU_ASSERT(mr_cg_solve(cg, x, &st, A, lambda, b, 200, 1e-7, 1e-5) == MR_OK);
    double err = 0, nrm = 0;
    for (size_t i = 0; i < n; i++) {
        err += pow(cabs(x[i] - xd[i]), 2);
        nrm += pow(cabs(xd[i]), 2);
    }
    fprintf(stderr, "  CG: %ld iterations, residual %.2e, relative error vs direct %.2e\n",
            st.iterations, st.residual, sqrt(err / nrm));
    CU_ASSERT(st.converged == 1);
    CU_ASSERT(st.iterations <= (long)n + 5);
    CU_ASSERT(sqrt(err / nrm) < 1e-4);
    /* too few iterations: reported, not silent */
    mr_vec_zero(x, n);
    CU_ASSERT(mr_cg_solve(cg, x, &st, A, lambda, b, 3, 0.0, 1e-5) == MR_OK);
    CU_ASSERT(st.iterations == 3);
    CU_ASSERT(st.converged == 0);
    CU_ASSERT(st.residual > 1e-3);
    /* a singular system (lambda 0, A = 0) breaks down without NaN and says so */
    memset(d->a, 0, m * n * sizeof *d->a);
    mr_vec_zero(x, n);
    CU_ASSERT(mr_cg_solve(cg, x, &st, A, 0.0, b, 10, 0.0, 1e-5) == MR_OK);
    CU_ASSERT(st.converged == 0);
    for (size_t i = 0; i < n; i++) CU_ASSERT(isfinite(crealf(x[i])) && isfinite(cimagf(x[i])));
    /* b = 0: x = 0 at once */
    mr_vec_zero(b, n);
    CU_ASSERT(mr_cg_solve(cg, x, &st, A, 1.0, b, 10, 0.0, 1e-5) == MR_OK);
    CU_ASSERT(st.iterations == 0 && st.converged == 1);
    mr_cg_destroy(cg);
    mr_cg_destroy(NULL);
    mr_linop_destroy(A);
    free(a);
    free(b);
    free(x);
    free(mat);
    free(bd);
    free(xd);
}

/* ---------------------------------------------------------------- ESPIRiT and scaling */

/* Our maps of us1d, written as ours1d.cfl; returns seconds per call (best of 3). */
static double espirit_us1d(void)
{
    mr_array *k = NULL, *maps = NULL;
    mr_espirit_params p;
    double best = 1e9;
    CU_ASSERT_FATAL(mr_cfl_read(&k, mr_test_path("us1d")) == MR_OK);
    size_t C = k->dims[1], H = k->dims[2], W = k->dims[3];
    size_t dims[4] = {1, C, H, W};
    float *mask = malloc(H * W * sizeof *mask);
    mr_mask_infer(mask, mr_array_c64(k), C, H, W);
    CU_ASSERT_FATAL(mr_array_create(&maps, MR_COMPLEX64, 4, dims) == MR_OK);
    mr_espirit_params_default(&p);
    for (int rep = 0; rep < 3; rep++) {
        double t0 = now_s();
        mr_status st = mr_espirit_maps(mr_array_c64(maps), mr_array_c64(k), mask, C, H, W, &p);
        double t = now_s() - t0;
        if (st != MR_OK) fprintf(stderr, "%s\n", mr_error_message());
        CU_ASSERT_FATAL(st == MR_OK);
        if (t < best) best = t;
    }
    CU_ASSERT(mr_cfl_write(mr_test_path("ours1d"), maps) == MR_OK);
    mr_array_destroy(k);
    mr_array_destroy(maps);
    free(mask);
    return best;
}

static void test_espirit_vs_bart(void)
{
    make_phantom();
    double t_ours = espirit_us1d();
    double t0 = now_s();
    CU_ASSERT_FATAL(mr_test_sh("cd %s && bart ecalib -m1 us1d bart1d ev1d", mr_test_tmpdir()) == 0);
    double t_bart = now_s() - t0;
    fprintf(stderr, "  ESPIRiT 256x256x8: mrpipe %.3f s, bart ecalib -m1 %.3f s (incl. process)\n",
            t_ours, t_bart);
    /* maps are defined up to a phase per pixel: compare |<s_ours, s_bart>| on the common support;
     * near-degenerate pixels (two eigenvalues close to 1 at the wrap-around rows) are where BART's
     * 30 orthogonal iterations have not converged (see the numpy check below) */
    CU_ASSERT(py("a = readcfl('ours1d').squeeze(); b = readcfl('bart1d').squeeze()\n"
                 "na = np.sqrt((abs(a) ** 2).sum(-1)); nb = np.sqrt((abs(b) ** 2).sum(-1))\n"
                 "sa, sb = na > 0.5, nb > 0.5\n"
                 "both = sa & sb\n"
                 "ip = abs((np.conj(a) * b).sum(-1))[both]\n"
                 "print('support', sa.sum(), sb.sum(), 'differ', (sa ^ sb).sum(), 'mean', ip.mean(),\n"
                 "      'median', np.median(ip), 'frac>0.98', (ip > 0.98).mean())\n"
                 "assert (sa ^ sb).sum() < 0.005 * sb.sum()\n"
                 "assert abs(na[sa] - 1).max() < 1e-3\n"
                 "assert np.median(ip) > 0.9999 and ip.mean() > 0.99 and (ip > 0.98).mean() > 0.98\n") ==
              0);
    fprintf(stderr, "%s", mr_test_output());
}

/* An independent oracle: numpy builds the calibration matrix, its SVD and the per-pixel ESPIRiT
 * matrix G(r) by direct summation over the kernels, and our map must be G's top eigenvector. */
static void test_espirit_vs_numpy(void)
{
    make_phantom();
    if (access(mr_test_path("ours1d.cfl"), F_OK) != 0) espirit_us1d();
    CU_ASSERT(py("k = readcfl('us1d').squeeze().transpose(2, 0, 1)\n"
                 "C, H, W = k.shape; ks = 6\n"
                 "cal = k[:, 116:140, 116:140]\n"
                 "A = np.array([cal[:, y:y + ks, x:x + ks].ravel() for y in range(19) for x in range(19)])\n"
                 "U, S, Vh = np.linalg.svd(A, full_matrices=False)\n"
                 "nk = (S / S[0] > np.sqrt(0.001)).sum()\n"
                 "kern = Vh[:nk].reshape(nk, C, ks, ks)  # conj of V's columns: the patch space\n"
                 "ours = readcfl('ours1d').squeeze()\n"
                 "sup = np.argwhere(np.sqrt((abs(ours) ** 2).sum(-1)) > 0.5)\n"
                 "rng = np.random.default_rng(1)\n"
                 "worst = 1\n"
                 "for ry, rx in sup[rng.choice(len(sup), 300, replace=False)]:\n"
                 "    ph = np.outer(np.exp(2j * np.pi * np.arange(ks) * (ry - H // 2) / H),\n"
                 "                  np.exp(2j * np.pi * np.arange(ks) * (rx - W // 2) / W))\n"
                 "    a = (kern * ph).reshape(nk, C, -1).sum(-1)\n"
                 "    G = (a[:, :, None] * np.conj(a)[:, None, :]).sum(0) / ks ** 2\n"
                 "    w, v = np.linalg.eigh(G)\n"
                 "    worst = min(worst, abs(np.vdot(v[:, -1], ours[ry, rx])))\n"
                 "print('nk', nk, 'worst |<s, s_numpy>| over 300 pixels', worst)\n"
                 "assert nk == 47 and worst > 0.999\n") == 0);
    fprintf(stderr, "  %s", mr_test_output());
}

/* mr_recon_bart_scale equals the scaling bart pics prints, on the 1-D and BART Poisson masks, on
 * mrpipe's own Poisson mask (a 21-row calibration block: BART's fftmod phase matters for odd
 * block sizes) and on an odd-sized phantom (181 x 181, 13 centre columns). */
static void check_scale(const char *us)
{
    mr_array *k = NULL;
    CU_ASSERT_FATAL(mr_test_sh("cd %s && bart pics -d5 -l2 -r 0.01 -i 1 %s bmaps_any tmp 2>&1 | "
                               "grep 'Inverse scaling' | sed 's/.*: //'",
                               mr_test_tmpdir(), us) == 0);
    double bart = atof(mr_test_output());
    CU_ASSERT_FATAL(mr_cfl_read(&k, mr_test_path(us)) == MR_OK);
    double ours = 1.0 / mr_recon_bart_scale(mr_array_c64(k), k->dims[1], k->dims[2], k->dims[3]);
    fprintf(stderr, "  data scaling %-6s: mrpipe %.4f, bart pics %.4f\n", us, ours, bart);
    CU_ASSERT(bart > 0 && fabs(ours - bart) < 1e-4 * bart);
    mr_array_destroy(k);
}

static void test_bart_scale(void)
{
    make_phantom();
    CU_ASSERT_FATAL(mr_test_sh("cd %s && bart phantom -x 256 -S 8 bmaps_any && %s mask --type "
                               "poisson --accel 4 --center-fraction 0.08 --shape 256,256 --output "
                               "m2d.cfl && bart fmac ph m2d usmp",
                               mr_test_tmpdir(), mr_test_bin()) == 0);
    CU_ASSERT_FATAL(mr_test_sh("cd %s && bart phantom -x 181 -k -s 8 ph181 && bart phantom -x 181 "
                               "-S 8 bmaps181", mr_test_tmpdir()) == 0);
    CU_ASSERT_FATAL(py("m = np.zeros(181); m[0::4] = 1; m[84:97] = 1\n"
                       "writecfl('us181', readcfl('ph181') * m[None, :, None, None])\n") == 0);
    check_scale("us1d");
    check_scale("uspo");
    check_scale("usmp");
    CU_ASSERT_FATAL(mr_test_sh("cd %s && cp bmaps181.cfl bmaps_any.cfl && cp bmaps181.hdr "
                               "bmaps_any.hdr", mr_test_tmpdir()) == 0);
    check_scale("us181");
}

/* ---------------------------------------------------------------- SENSE vs bart pics -l2 */

static void sense_vs_bart(const char *us, const char *label)
{
    char body[4096];
    make_phantom();
    CU_ASSERT_FATAL(mr_test_sh("cd %s && bart ecalib -m1 %s bmaps_%s", mr_test_tmpdir(), us, us) == 0);
    double t0 = now_s();
    CU_ASSERT_FATAL(mr_test_sh("cd %s && bart pics -S -l2 -r 0.01 -i 30 %s bmaps_%s pics_%s",
                               mr_test_tmpdir(), us, us, us) == 0);
    double t_bart = now_s() - t0;
    t0 = now_s();
    int rc = mr_test_sh("cd %s && %s recon --input %s.cfl --output sense_%s.cfl --method sense "
                        "--lambda 0.01 --iters 30",
                        mr_test_tmpdir(), mr_test_bin(), us, us);
    double t_ours = now_s() - t0;
    if (rc) fprintf(stderr, "%s\n", mr_test_output());
    CU_ASSERT_FATAL(rc == 0);
    rc = mr_test_sh("cd %s && %s recon --input %s.cfl --output senseb_%s.cfl --method sense "
                    "--lambda 0.01 --sens bmaps_%s.cfl",
                    mr_test_tmpdir(), mr_test_bin(), us, us, us);
    if (rc) fprintf(stderr, "%s\n", mr_test_output());
    CU_ASSERT_FATAL(rc == 0);
    snprintf(body, sizeof body,
             "ref = readcfl('ref')\n"
             "p_ours = psnr(ref, readcfl('sense_%s'))\n"
             "p_bmaps = psnr(ref, readcfl('senseb_%s'))\n"
             "p_pics = psnr(ref, readcfl('pics_%s'))\n"
             "print('%s: PSNR mrpipe sense %%.2f dB, with bart maps %%.2f dB, bart pics -l2 %%.2f dB'\n"
             "      %% (p_ours, p_bmaps, p_pics))\n"
             "assert p_ours >= p_bmaps - 0.2, 'our maps vs bart maps'\n"
             "assert p_bmaps >= p_pics - 0.01, 'same maps: as bart pics'\n"
             "assert p_ours >= p_pics, 'mrpipe sense vs bart pics'\n",
             us, us, us, label);
    CU_ASSERT(py(body) == 0);
    fprintf(stderr, "  %s  time: mrpipe recon (ESPIRiT + SENSE) %.2f s, bart pics alone %.2f s\n",
            strtok((char *)mr_test_output(), "\n"), t_ours, t_bart);
}

static void test_sense_1d(void) { sense_vs_bart("us1d", "1-D equispaced R=4 + 24 centre lines"); }
static void test_sense_poisson(void) { sense_vs_bart("uspo", "2-D Poisson disc R=3.9, 24x24 centre"); }

/* ---------------------------------------------------------------- bad input */

static void expect_failure(const char *args, const char *out_name, const char *const *expect)
{
    int rc = mr_test_sh("cd %s && %s %s", mr_test_tmpdir(), mr_test_bin(), args);
    if (rc != 1) fprintf(stderr, "expected exit 1 from '%s', got %d: %s\n", args, rc, mr_test_output());
    CU_ASSERT(rc == 1);
    for (const char *const *e = expect; *e; e++) {
        if (!strstr(mr_test_output(), *e))
            fprintf(stderr, "message for '%s' lacks '%s': %s\n", args, *e, mr_test_output());
        CU_ASSERT(strstr(mr_test_output(), *e) != NULL);
    }
    if (out_name) CU_ASSERT(access(mr_test_path(out_name), F_OK) != 0);
    CU_ASSERT(mr_test_count_files(mr_test_tmpdir(), ".partial") == 0);
}

static void test_bad_inputs(void)
{
    make_phantom();
    /* one coil */
    CU_ASSERT_FATAL(mr_test_sh("cd %s && bart phantom -x 64 -k one", mr_test_tmpdir()) == 0);
    expect_failure("recon --input one.cfl --output bad1.cfl --method sense", "bad1.cfl",
                   (const char *const[]){"sense", "2 coils", "1 coil", NULL});
    /* calibration region (4 centre lines) smaller than the 6 x 6 kernel */
    CU_ASSERT_FATAL(py("m = np.zeros(256); m[0::4] = 1; m[126:130] = 1\n"
                       "writecfl('smallcal', readcfl('ph') * m[None, :, None, None])\n") == 0);
    expect_failure("recon --input smallcal.cfl --output bad2.cfl --method sense", "bad2.cfl",
                   (const char *const[]){"calibration region", "24 x 4", "6 x 6 kernel", "slice 0",
                                         NULL});
    /* a mask with no fully sampled centre at all */
    CU_ASSERT_FATAL(py("m = np.zeros(256); m[1::4] = 1\n"
                       "writecfl('nocentre', readcfl('ph') * m[None, :, None, None])\n") == 0);
    expect_failure("recon --input nocentre.cfl --output bad3.cfl --method sense", "bad3.cfl",
                   (const char *const[]){"calibration region", "0 x 0", "--sens", NULL});
    /* a calibration region just big enough for the kernel but too thin to estimate maps (7 centre
     * lines, as fastMRI's 8x / 0.04 on a narrow image): an error, never a near-zero image */
    CU_ASSERT_FATAL(py("m = np.zeros(256); m[0::8] = 1; m[125:132] = 1\n"
                       "writecfl('thincal', readcfl('ph') * m[None, :, None, None])\n") == 0);
    expect_failure("recon --input thincal.cfl --output bad6.cfl --method sense", "bad6.cfl",
                   (const char *const[]){"coil maps vanish", "calibration region", "--sens", NULL});
    expect_failure("recon --input thincal.cfl --output bad7.cfl --method cs-l1", "bad7.cfl",
                   (const char *const[]){"coil maps vanish", NULL});
    /* negative lambda (both spellings) */
    expect_failure("recon --input us1d.cfl --output bad4.cfl --method sense --lambda -1", "bad4.cfl",
                   (const char *const[]){"--lambda", "-1", NULL});
    expect_failure("recon --input us1d.cfl --output bad4.cfl --method sense --lambda=-0.5",
                   "bad4.cfl", (const char *const[]){"--lambda", "-0.5", NULL});
    /* maps of the wrong coil count */
    CU_ASSERT_FATAL(mr_test_sh("cd %s && bart phantom -x 256 -S 4 maps4", mr_test_tmpdir()) == 0);
    expect_failure("recon --input us1d.cfl --output bad5.cfl --method sense --sens maps4.cfl",
                   "bad5.cfl", (const char *const[]){"maps4.cfl", "coil maps", NULL});
    /* too few iterations: the image is written, and the non-convergence is reported */
    int rc = mr_test_sh("cd %s && %s recon --input us1d.cfl --output few.cfl --method sense "
                        "--iters 2",
                        mr_test_tmpdir(), mr_test_bin());
    CU_ASSERT(rc == 0);
    CU_ASSERT(strstr(mr_test_output(), "did not converge") != NULL);
    CU_ASSERT(strstr(mr_test_output(), "2 iterations") != NULL);
    CU_ASSERT(strstr(mr_test_output(), "residual") != NULL);
    if (!strstr(mr_test_output(), "did not converge")) fprintf(stderr, "%s\n", mr_test_output());
    CU_ASSERT(access(mr_test_path("few.cfl"), F_OK) == 0);
}

/* ---------------------------------------------------------------- noise pre-whitening */

/* ISMRMRD Shepp-Logan with 4 coils, no noise from the generator; then correlated noise
 * n = M z (z white, std 0.02) is added to every acquisition, and 31 more noise acquisitions of
 * the same kind are appended (32 x 128 samples per coil). */
static void make_noisy_ismrmrd(void)
{
    CU_ASSERT_FATAL(mr_test_sh("ismrmrd_generate_cartesian_shepp_logan -m 64 -c 4 -C -n 0 -o %s",
                               mr_test_path("nz.h5")) == 0);
    CU_ASSERT_FATAL(py("import h5py\n"
                       "f = h5py.File('nz.h5', 'r+')\n"
                       "d = f['dataset/data'][:]\n"
                       "rng = np.random.default_rng(4)\n"
                       "M = np.array([[1, 0, 0, 0], [0.8, 0.6, 0, 0], [0.3, 0.5j, 0.9, 0],\n"
                       "              [0, 0.2, -0.7, 0.5]], np.complex64) * 0.02\n"
                       "np.save('mix.npy', M)\n"
                       "def noisy(a):\n"
                       "    x = a['data'].view(np.complex64).reshape(4, -1)\n"
                       "    z = (rng.standard_normal(x.shape) + 1j * rng.standard_normal(x.shape)) / np.sqrt(2)\n"
                       "    a['data'] = (x + M @ z).astype(np.complex64).view(np.float32).ravel()\n"
                       "noise = [i for i, a in enumerate(d) if int(a['head']['flags']) & (1 << 18)]\n"
                       "assert noise == [0], noise\n"
                       "extra = np.array([d[0].copy() for _ in range(31)], d.dtype)\n"
                       "d = np.concatenate([d[:1], extra, d[1:]])\n"
                       "for a in d: noisy(a)\n"
                       "del f['dataset/data']\n"
                       "f['dataset'].create_dataset('data', data=d, maxshape=(None,), chunks=True)\n"
                       "f.close()\n") == 0);
}

static void test_prewhitening(void)
{
    mr_kspace_source *src = NULL;
    mr_array *noise = NULL;
    make_noisy_ismrmrd();
    mr_status st = mr_kspace_open(&src, mr_test_path("nz.h5"));
    if (st != MR_OK) fprintf(stderr, "%s\n", mr_error_message());
    CU_ASSERT_FATAL(st == MR_OK);
    CU_ASSERT_FATAL(mr_kspace_get_info(src)->has_noise);
    CU_ASSERT_FATAL(mr_kspace_read_noise(src, &noise) == MR_OK);
    const size_t N = noise->dims[0], C = noise->dims[1], half = N / 2;
    CU_ASSERT(N == 32 * 128 && C == 4);
    mr_cfloat wt[16], psi[16];
    double s2;
    /* whitener from the first half, checked on the second half (independent samples) */
    CU_ASSERT_FATAL(mr_noise_whitener(wt, psi, &s2, mr_array_c64(noise), half, C) == MR_OK);
    mr_cfloat *second = malloc(C * (N - half) * sizeof *second); /* (C, n) layout for whitening */
    for (size_t s = half; s < N; s++)
        for (size_t c = 0; c < C; c++) second[c * (N - half) + s - half] = mr_array_c64(noise)[s * C + c];
    mr_noise_whiten(second, wt, C, N - half);
    double worst_off = 0, worst_diag = 0;
    for (size_t a = 0; a < C; a++)
        for (size_t b = 0; b < C; b++) {
            double complex acc = 0;
            for (size_t s = 0; s < N - half; s++)
                acc += second[a * (N - half) + s] * conjf(second[b * (N - half) + s]);
            acc /= (double)(N - half) * s2; /* should be the identity */
            if (a == b) worst_diag = fmax(worst_diag, fabs(creal(acc) - 1));
            else worst_off = fmax(worst_off, cabs(acc));
        }
    fprintf(stderr, "  whitened noise covariance / sigma^2: max |diag - 1| %.3f, max |offdiag| %.3f\n",
            worst_diag, worst_off);
    CU_ASSERT(worst_diag < 0.1 && worst_off < 0.1);
    /* the estimated covariance is the injected M M^H (std 0.02 per unit) */
    FILE *f = NULL;
    CU_ASSERT(py("M = np.load('mix.npy'); P = M @ M.conj().T\n"
                 "np.savetxt('psi_true.txt', np.concatenate([P.real.ravel(), P.imag.ravel()]))\n") ==
              0);
    f = fopen(mr_test_path("psi_true.txt"), "r");
    CU_ASSERT_FATAL(f != NULL);
    double pr[16], pi[16], worst = 0, scale = 0;
    for (int i = 0; i < 16; i++) CU_ASSERT(fscanf(f, "%lf", &pr[i]) == 1);
    for (int i = 0; i < 16; i++) CU_ASSERT(fscanf(f, "%lf", &pi[i]) == 1);
    fclose(f);
    for (int i = 0; i < 16; i++) {
        worst = fmax(worst, cabs(psi[i] - (pr[i] + I * pi[i])));
        scale = fmax(scale, cabs(pr[i] + I * pi[i]));
    }
    fprintf(stderr, "  noise covariance vs injected: max error %.3g of max %.3g\n", worst, scale);
    CU_ASSERT(worst < 0.1 * scale);
    free(second);
    mr_array_destroy(noise);
    mr_kspace_close(src);

    /* a singular covariance (a duplicated channel) is refused, naming the coil */
    {
        mr_cfloat dup[64 * 2];
        mr_test_rng r;
        mr_test_rng_init(&r, 3);
        for (int s = 0; s < 64; s++) {
            dup[s * 2] = (float)mr_test_randn(&r) + I * (float)mr_test_randn(&r);
            dup[s * 2 + 1] = dup[s * 2];
        }
        CU_ASSERT(mr_noise_whitener(wt, NULL, NULL, dup, 64, 2) == MR_ERR_INPUT);
        CU_ASSERT(strstr(mr_error_message(), "coil 1") != NULL);
    }

    /* the CLI whitens for sense and says so; --no-prewhiten and zf do not */
    int rc = mr_test_sh("%s recon --input %s --output %s --method sense", mr_test_bin(),
                        mr_test_path("nz.h5"), mr_test_path("nz_sense.h5"));
    CU_ASSERT(rc == 0);
    CU_ASSERT(strstr(mr_test_output(), "noise pre-whitening: 4096 noise samples x 4 coils") != NULL);
    if (rc || !strstr(mr_test_output(), "pre-whitening:")) fprintf(stderr, "%s\n", mr_test_output());
    rc = mr_test_sh("%s recon --input %s --output %s --method sense --no-prewhiten", mr_test_bin(),
                    mr_test_path("nz.h5"), mr_test_path("nz_sense_nw.h5"));
    CU_ASSERT(rc == 0);
    CU_ASSERT(strstr(mr_test_output(), "pre-whitening off (--no-prewhiten)") != NULL);
    rc = mr_test_sh("%s recon --input %s --output %s", mr_test_bin(), mr_test_path("nz.h5"),
                    mr_test_path("nz_zf.h5"));
    CU_ASSERT(rc == 0);
    CU_ASSERT(strstr(mr_test_output(), "noise pre-whitening:") == NULL);
    /* no noise scan: asking for the samples is an error naming the file */
    make_phantom();
    CU_ASSERT_FATAL(mr_kspace_open(&src, mr_test_path("us1d.cfl")) == MR_OK);
    CU_ASSERT(mr_kspace_read_noise(src, &noise) == MR_ERR_INPUT);
    CU_ASSERT(noise == NULL);
    CU_ASSERT(strstr(mr_error_message(), "us1d") != NULL);
    mr_kspace_close(src);
}

int main(void)
{
    static const mr_test_case cases[] = {
        {"adjoint identity for fft2c, mask, sens, E = M F S, compositions", test_adjoint},
        {"CG vs direct solve; non-convergence and breakdown reported", test_cg},
        {"ESPIRiT maps vs bart ecalib -m1", test_espirit_vs_bart},
        {"ESPIRiT maps vs a numpy eigen-decomposition", test_espirit_vs_numpy},
        {"data scaling equals bart pics'", test_bart_scale},
        {"SENSE vs bart pics -l2, 1-D equispaced + centre", test_sense_1d},
        {"SENSE vs bart pics -l2, 2-D Poisson", test_sense_poisson},
        {"bad input: 1 coil, small/no calibration region, lambda < 0, maps, few iterations",
         test_bad_inputs},
        {"noise pre-whitening (ISMRMRD noise scan, correlated noise)", test_prewhitening},
        {NULL, NULL},
    };
    return mr_test_run("pi", cases);
}
