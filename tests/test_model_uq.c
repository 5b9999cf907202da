/*
 * test_model_uq.c: model uncertainty (docs/uncertainty.md, "Model uncertainty"): the variance
 * network trained by `mrpipe train` with `variance_head`, its split-conformal calibration, and the
 * maps of `mrpipe denoise --uncertainty model|replica|both` and `mrpipe recon --uncertainty
 * model|both`.
 *
 *  - split-conformal scale on synthetic normalised errors: the scale of the true distribution and
 *    coverage at the nominal levels on the calibration pixels;
 *  - the MAD noise level of Gaussian noise on a smooth image;
 *  - a tiny variance network on the shipped denoiser: the file records calibration_scale,
 *    calibration and base_model; denoise with it writes a finite positive SD map of the image's
 *    shape (also inside an .h5 output); `both` = sqrt(model^2 + replica^2) pixel by pixel;
 *  - recon cs-l1 with --uncertainty model and both;
 *  - the undersampling degradation of the artefact model's data and a tiny artefact training run
 *    (bank, previews, the model's record) with its config errors;
 *  - bad input: replicas < 2, a model without its variance network, a plain model given as the
 *    variance network, a variance network whose calibration was removed, a base model of another
 *    normalisation: clear errors, exit 1, nothing written.
 * How honest the shipped maps are is measured by scripts/uncertainty_eval.py (docs), not here.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mr_io.h"
#include "mr_nn.h"
#include "mr_train.h"
#include "testutil.h"

#define TEMPLATES "/usr/share/mricron/templates"
/* the training configs' data section (7 lines): ch2 for training, validation z 20..40 mm,
 * calibration z -10..10 mm */
#define CH2_SPLIT MR_TEST_CH2_SPLIT

static int have_data(void) { return mr_path_is_file(TEMPLATES "/ch2.nii.gz"); }

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void test_conformal(void)
{
    /* |e| / sd with e ~ N(0, (2 sd)^2): the scale is 2 */
    const size_t n = 200000;
    double *r = malloc(n * sizeof *r), cov[3];
    mr_test_rng g;
    mr_test_rng_init(&g, 11);
    for (size_t i = 0; i < n; i++) r[i] = fabs(2.0 * mr_test_randn(&g));
    double c = mr_sigma_conformal_scale(r, n, cov);
    CU_ASSERT_DOUBLE_EQUAL(c, 2.0, 0.02);
    CU_ASSERT_DOUBLE_EQUAL(cov[0], 0.6827, 0.005);
    CU_ASSERT_DOUBLE_EQUAL(cov[1], 0.90, 0.003);
    CU_ASSERT_DOUBLE_EQUAL(cov[2], 0.95, 0.003);
    /* heavy tails (Laplace): one scale cannot hit both levels; the larger gap is minimised and
     * stays between the two single-level solutions */
    for (size_t i = 0; i < n; i++) {
        double u = mr_test_randu(&g) - 0.5;
        r[i] = fabs(-(u < 0 ? -1 : 1) * log(1 - 2 * fabs(u)));
    }
    c = mr_sigma_conformal_scale(r, n, cov);
    double g90 = fabs(cov[1] - 0.90), g95 = fabs(cov[2] - 0.95);
    CU_ASSERT(c > 0);
    CU_ASSERT(g90 < 0.02 && g95 < 0.02);
    CU_ASSERT_DOUBLE_EQUAL(mr_sigma_coverage(r, n, 1.959963984540054, c), cov[2], 1e-12);
    /* r comes back sorted ascending (radix sort of the bit patterns), the same values */
    int sorted = 1;
    for (size_t i = 1; i < n; i++) sorted &= r[i - 1] <= r[i];
    CU_ASSERT(sorted);
    /* the 90 % single-level solution is the ceil(0.9 (n + 1))-th smallest / z, as qsort gives it */
    double *q = malloc(n * sizeof *q);
    for (size_t i = 0; i < n; i++) q[i] = r[(i * 7919) % n]; /* a permutation (n, 7919 coprime) */
    qsort(q, n, sizeof *q, cmp_dbl);
    CU_ASSERT_EQUAL(memcmp(q, r, n * sizeof *r), 0);
    CU_ASSERT_DOUBLE_EQUAL(mr_sigma_conformal_scale(q, n, cov), c, 0);
    free(q);
    /* a negative value (not ratios) takes qsort: still sorted */
    double small[5000];
    for (int i = 0; i < 5000; i++) small[i] = (double)((i * 37) % 5000) - 10;
    mr_sigma_conformal_scale(small, 5000, cov);
    for (int i = 1; i < 5000; i++) CU_ASSERT_FATAL(small[i - 1] <= small[i]);
    free(r);
}

static void test_noise_mad(void)
{
    const size_t S = 2, H = 96, W = 80;
    float *x = malloc(S * H * W * sizeof *x);
    mr_test_rng g;
    mr_test_rng_init(&g, 3);
    for (size_t s = 0; s < S; s++)
        for (size_t y = 0; y < H; y++)
            for (size_t c = 0; c < W; c++)
                x[(s * H + y) * W + c] =
                    (float)(100 + 0.5 * y + 30 * sin(c / 9.0) + 3.0 * mr_test_randn(&g));
    double sigma = 0;
    CU_ASSERT_EQUAL(mr_noise_sigma_mad(&sigma, x, S, H, W), MR_OK);
    CU_ASSERT_DOUBLE_EQUAL(sigma, 3.0, 0.12);
    free(x);
}

/* A noisy held-out slab of ch2 (z 20..40 mm: k 95..98) as NIfTI, 5 % Rician noise. */
static const char *noisy_input(void)
{
    static char path[4096];
    if (path[0]) return path;
    snprintf(path, sizeof path, "%s", mr_test_path("noisy.nii.gz"));
    int rc = mr_test_sh("%s - <<'EOF'\n"
                        "import nibabel as nib, numpy as np\n"
                        "im = nib.load('" TEMPLATES "/ch2.nii.gz')\n"
                        "v = np.asarray(im.dataobj, dtype=np.float32)[:, :, 95:98]\n"
                        "rng = np.random.default_rng(4); s = 0.05 * v.max()\n"
                        "n = np.hypot(v + s * rng.standard_normal(v.shape), s * rng.standard_normal(v.shape))\n"
                        "nib.save(nib.Nifti1Image(n.astype(np.float32), im.affine), '%s')\n"
                        "EOF",
                        mr_test_python(), path);
    CU_ASSERT_FATAL(rc == 0);
    return path;
}

static char g_sigma[4096];

static void test_tiny_variance_network(void)
{
    if (!have_data()) return;
    char cfg[8192];
    snprintf(cfg, sizeof cfg,
             "seed: 3\n"
             "variance_head: {base: %s, calibration_sigma: [0.05], calibration_slices: 2}\n"
             "model: {depth: 3, channels: 4}\n"
             CH2_SPLIT
             "  validation_slices: 1\n"
             "training: {patch: 24, batch: 4, epochs: 2, steps_per_epoch: 15, lr: 0.003}\n",
             mr_test_src("models/denoiser_blind.h5"));
    mr_test_write_text(mr_test_path("sig.yaml"), cfg);
    const char *dir = mr_test_path("sig");
    int rc = mr_test_sh("%s train --config %s --output %s", mr_test_bin(), mr_test_path("sig.yaml"),
                        dir);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(mr_test_output(), "split-conformal"));
    snprintf(g_sigma, sizeof g_sigma, "%s/model.h5", dir);
    mr_nn_model *m = NULL;
    CU_ASSERT_EQUAL_FATAL(mr_nn_model_load(&m, g_sigma, NULL), MR_OK);
    CU_ASSERT_EQUAL(m->arch.in_channels, 2);
    CU_ASSERT_EQUAL(m->arch.out_channels, 1);
    CU_ASSERT_EQUAL(m->arch.residual, 0);
    CU_ASSERT(m->meta.calibration_scale > 0 && isfinite(m->meta.calibration_scale));
    CU_ASSERT_STRING_EQUAL(m->meta.base_model, "denoiser_blind.h5");
    CU_ASSERT_PTR_NOT_NULL(strstr(m->meta.calibration, "ch2.nii.gz z=[-10,10]mm"));
    mr_nn_model_destroy(m);
    /* the log names its columns */
    char log[4200];
    snprintf(log, sizeof log, "%s/train_log.csv", dir);
    CU_ASSERT_EQUAL(mr_test_sh("head -1 %s | grep -q train_nll,val_coverage90_raw_pct,val_nll", log),
                    0);
}

static void test_denoise_maps(void)
{
    if (!g_sigma[0]) return;
    const char *in = noisy_input(), *model = mr_test_src("models/denoiser_blind.h5");
    const char *kinds[3] = {"model", "replica", "both"};
    for (int k = 0; k < 3; k++) {
        char out[4096];
        snprintf(out, sizeof out, "%s/den_%s.nii.gz", mr_test_tmpdir(), kinds[k]);
        int rc = mr_test_sh("%s denoise --input %s --output %s --model %s --uncertainty %s "
                            "--uncertainty-model %s --replicas 4 --seed 9",
                            mr_test_bin(), in, out, model, kinds[k], g_sigma);
        CU_ASSERT_EQUAL(rc, 0);
        if (rc) fprintf(stderr, "%s\n", mr_test_output());
    }
    /* maps: shape and affine of the input, finite, positive in the head; both = sqrt(m^2 + r^2) */
    int rc = mr_test_sh("cd %s && %s - <<'EOF'\n"
                        "import nibabel as nib, numpy as np\n"
                        "x = nib.load('%s')\n"
                        "m, r, b = [nib.load('den_%%s_sd.nii.gz' %% k) for k in ('model', 'replica', 'both')]\n"
                        "for a in (m, r, b):\n"
                        "    assert a.shape == x.shape, a.shape\n"
                        "    assert np.allclose(a.affine, x.affine)\n"
                        "    d = np.asarray(a.dataobj)\n"
                        "    assert np.isfinite(d).all() and (d >= 0).all()\n"
                        "m, r, b = [np.asarray(a.dataobj, dtype=np.float64) for a in (m, r, b)]\n"
                        "head = np.asarray(x.dataobj) > 0.2 * np.asarray(x.dataobj).max()\n"
                        "assert (m[head] > 0).all() and (r[head] > 0).mean() > 0.99\n"
                        "err = np.abs(b - np.sqrt(m * m + r * r)).max() / b.max()\n"
                        "assert err < 1e-5, err\n"
                        "d1 = np.asarray(nib.load('den_model.nii.gz').dataobj)\n"
                        "d2 = np.asarray(nib.load('den_both.nii.gz').dataobj)\n"
                        "assert np.array_equal(d1, d2)\n"
                        "EOF",
                        mr_test_tmpdir(), mr_test_python(), in);
    CU_ASSERT_EQUAL(rc, 0);
    if (rc) fprintf(stderr, "%s\n", mr_test_output());
    /* .h5 output: the map also goes in as `uncertainty` */
    char h5[4096];
    snprintf(h5, sizeof h5, "%s/den.h5", mr_test_tmpdir());
    rc = mr_test_sh("%s denoise --input %s --output %s --model %s --uncertainty-model %s && "
                    "%s -c \"import h5py; f = h5py.File('%s'); g = h5py.File('%s'.replace('.h5', "
                    "'_sd.h5')); assert f['uncertainty'].shape == f['reconstruction'].shape; "
                    "assert (f['uncertainty'][()] == g['uncertainty'][()]).all()\"",
                    mr_test_bin(), in, h5, model, g_sigma, mr_test_python(), h5, h5);
    CU_ASSERT_EQUAL(rc, 0);
    if (rc) fprintf(stderr, "%s\n", mr_test_output());
}

static void test_recon_model(void)
{
    if (!g_sigma[0]) return;
    const char *k = mr_test_path("k.h5");
    CU_ASSERT_FATAL(mr_test_sh("%s -q simulate --input " TEMPLATES "/ch2.nii.gz --output %s "
                               "--coils 4 --slices 96:98 --matrix 96,96 --seed 1",
                               mr_test_bin(), k) == 0);
    const char *kinds[2] = {"model", "both"};
    for (int i = 0; i < 2; i++) {
        char out[4096];
        snprintf(out, sizeof out, "%s/cs_%s.h5", mr_test_tmpdir(), kinds[i]);
        int rc = mr_test_sh("%s recon --input %s --output %s --method cs-l1 --mask equispaced "
                            "--accel 4 --uncertainty %s --uncertainty-model %s --replicas 3",
                            mr_test_bin(), k, out, kinds[i], g_sigma);
        CU_ASSERT_EQUAL(rc, 0);
        if (rc) fprintf(stderr, "%s\n", mr_test_output());
    }
    int rc = mr_test_sh("cd %s && %s -c \"import h5py, numpy as np\n"
                        "m = h5py.File('cs_model_sd.h5')['uncertainty'][()]\n"
                        "b = h5py.File('cs_both_sd.h5')['uncertainty'][()]\n"
                        "r = h5py.File('cs_model.h5')['reconstruction'][()]\n"
                        "assert m.shape == r.shape == b.shape and np.isfinite(m).all()\n"
                        "assert (b >= m - 1e-6 * m.max()).all() and (b > m).mean() > 0.5\n\"",
                        mr_test_tmpdir(), mr_test_python());
    CU_ASSERT_EQUAL(rc, 0);
    if (rc) fprintf(stderr, "%s\n", mr_test_output());
}

/* recon records each slice's coil noise SD (estimated from the outer k-space) and the coil count
 * in its .h5 output; denoise keeps them; the shipped cs-l1 variance network's noise term adds
 * scale^2 (b^2 s^2 + f^2 floor^2) to the SD^2 (against the same network without the term). */
static void test_noise_record(void)
{
    if (!have_data()) return;
    const char *levels[2] = {"0.004", "0.03"};
    for (int i = 0; i < 2; i++) {
        int rc = mr_test_sh("cd %s && %s -q simulate --input " TEMPLATES "/ch2.nii.gz --output "
                            "kn%d.h5 --coils 4 --slices 96:98 --matrix 96,96 --seed 3 --noise %s && "
                            "%s -q recon --input kn%d.h5 --output zfn%d.h5 && "
                            "%s -q denoise --input zfn%d.h5 --output dn%d.h5 --uncertainty none",
                            mr_test_tmpdir(), mr_test_bin(), i, levels[i], mr_test_bin(), i, i,
                            mr_test_bin(), i, i);
        CU_ASSERT_EQUAL(rc, 0);
        if (rc) fprintf(stderr, "%s\n", mr_test_output());
    }
    int rc = mr_test_sh("cd %s && %s -c \"import h5py, numpy as np, nibabel as nib, shutil\n"
                        "mx = float(np.asarray(nib.load('" TEMPLATES "/ch2.nii.gz').dataobj).max())\n"
                        "for i, lev in enumerate((0.004, 0.03)):\n"
                        "    z = h5py.File('zfn%%d.h5' %% i)\n"
                        "    ns = z.attrs['mrpipe_noise_sd']\n"
                        "    assert ns.shape == (2,) and int(z.attrs['mrpipe_coils']) == 4\n"
                        "    r = ns / (lev * mx)\n"
                        "    print('noise SD estimate / simulated', lev, r)\n"
                        "    assert (r > 0.9).all() and (r < 1.25).all(), r\n"
                        "    d = h5py.File('dn%%d.h5' %% i)\n"
                        "    assert np.array_equal(d.attrs['mrpipe_noise_sd'], ns) and int(d.attrs['mrpipe_coils']) == 4\n"
                        "shutil.copy('%s', 'nm.h5')\n"
                        "with h5py.File('nm.h5', 'a') as f:\n"
                        "    for k in ('calibration_masks', 'calibration_mask_scales',\n"
                        "              'calibration_noise_factor_levels', 'calibration_noise_factors',\n"
                        "              'calibration_mask_difficulty', 'calibration_mask_ghost_phase',\n"
                        "              'calibration_line_fill'):\n"
                        "        if k in f.attrs: del f.attrs[k]\n"
                        "shutil.copy('nm.h5', 'nt.h5')\n"
                        "with h5py.File('nt.h5', 'a') as f: del f.attrs['calibration_noise_term']\n\"",
                        mr_test_tmpdir(), mr_test_python(), mr_test_src("models/cs-l1_sigma.h5"));
    CU_ASSERT_EQUAL(rc, 0);
    if (rc) fprintf(stderr, "%s\n", mr_test_output());
    /* cs1: the noise term alone (the mrpipe calibrate factors removed: nm.h5); cs0 without it;
     * csf: the shipped network, its mask-kind scale, noise factors, mask difficulty x ghost
     * phase factor and each slice's line-fill factor on top */
    rc = mr_test_sh("cd %s && %s -q recon --input kn1.h5 --output cs1.h5 --method cs-l1 --mask "
                    "equispaced --accel 4 --uncertainty model --uncertainty-model nm.h5 && %s -q "
                    "recon --input kn1.h5 --output cs0.h5 --method cs-l1 --mask equispaced --accel 4 "
                    "--uncertainty model --uncertainty-model nt.h5 && %s -q recon --input kn1.h5 "
                    "--output csf.h5 --method cs-l1 --mask equispaced --accel 4 --uncertainty model",
                    mr_test_tmpdir(), mr_test_bin(), mr_test_bin(), mr_test_bin());
    CU_ASSERT_EQUAL(rc, 0);
    if (rc) fprintf(stderr, "%s\n", mr_test_output());
    rc = mr_test_sh("cd %s && %s -c \"import h5py, numpy as np\n"
                    "m = h5py.File('%s', 'r').attrs\n"
                    "b, f = m['calibration_noise_term']\n"
                    "c = dict(zip(m['calibration_accel'], m['calibration_accel_scales']))[4.0]\n"
                    "r = h5py.File('cs1.h5')\n"
                    "y, ns, C = r['reconstruction'][()], r.attrs['mrpipe_noise_sd'], int(r.attrs['mrpipe_coils'])\n"
                    "s1, s0 = r['uncertainty'][()].astype(float), h5py.File('cs0_sd.h5')['uncertainty'][()].astype(float)\n"
                    "s = ns[:, None, None]\n"
                    "fl = np.sqrt(y.astype(float) ** 2 + 2 * C * s ** 2) - y\n"
                    "want = np.sqrt(s0 ** 2 + c * c * (b * b * s * s + f * f * fl * fl))\n"
                    "print('noise term: b %%.4g f %%.4g; max relative deviation %%.2e' %% (b, f, np.abs(s1 / want - 1).max()))\n"
                    "assert f > 0.1 and np.abs(s1 / want - 1).max() < 1e-4\n"
                    "assert (s1 > s0).mean() > 0.99\n"
                    "sf = h5py.File('csf.h5')['uncertainty'][()].astype(float)\n"
                    "if 'calibration_masks' in m:\n"
                    "    v = m['calibration_masks']\n"
                    "    ks = (v.decode() if isinstance(v, bytes) else str(v)).split()\n"
                    "    ms = np.asarray(m['calibration_mask_scales']).reshape(len(ks), -1)\n"
                    "    k = ms[ks.index('equispaced'), list(m['calibration_accel']).index(4.0)] / c\n"
                    "    lv, fc = m['calibration_noise_factor_levels'], m['calibration_noise_factors']\n"
                    "    rel = ns / np.percentile(y, 99.5)\n"
                    "    nf = np.interp(np.log(rel), np.log(lv), fc)\n"
                    "    df = 1.0\n"
                    "    if 'calibration_mask_difficulty' in m:\n"
                    "        cb = np.asarray(m['calibration_mask_difficulty']).reshape(len(ks), -1, 2)\n"
                    "        cc, bb = cb[ks.index('equispaced'), list(m['calibration_accel']).index(4.0)]\n"
                    "        d = float(h5py.File('csf.h5').attrs['mrpipe_mask_difficulty'])\n"
                    "        e = bb * (np.log(d) - cc)\n"
                    "        if 'calibration_mask_ghost_phase' in m:\n"
                    "            cg = np.asarray(m['calibration_mask_ghost_phase']).reshape(len(ks), -1, 2)\n"
                    "            gc, gb = cg[ks.index('equispaced'), list(m['calibration_accel']).index(4.0)]\n"
                    "            mk = h5py.File('csf.h5')['mask'][()].ravel().astype(float)\n"
                    "            n = mk.size\n"
                    "            k_ = np.arange(n) - n // 2\n"
                    "            P = np.exp(2j * np.pi * np.outer(np.arange(1, n), k_) / n) @ mk\n"
                    "            rho = (P.real ** 2).sum() / (np.abs(P) ** 2).sum()\n"
                    "            print('ghost phase %%.4f' %% rho)\n"
                    "            e += gb * (np.log(max(rho, 1e-3)) - gc)\n"
                    "        df = min(max(np.exp(e), 0.5), 2.0)\n"
                    "    lf = np.ones(y.shape[0])\n"
                    "    if 'calibration_line_fill' in m:\n"
                    "        cl = np.asarray(m['calibration_line_fill']).reshape(len(ks), -1, 2)\n"
                    "        lc, lb = cl[ks.index('equispaced'), list(m['calibration_accel']).index(4.0)]\n"
                    "        for z in range(y.shape[0]):\n"
                    "            ch = (y[z] > np.float32(0.05) * y[z].max()).sum(axis=1).astype(float)\n"
                    "            l = (ch ** 2).sum() / (y.shape[2] * ch.sum())\n"
                    "            lf[z] = min(max(np.exp(lb * (np.log(l) - lc)), 0.5), 2.0)\n"
                    "        print('line fill factors', lf)\n"
                    "    dev = np.abs(sf / (s1 * k * nf[:, None, None] * df * lf[:, None, None]) - 1).max()\n"
                    "    print('calibrate factors: kind %%.4g, noise %%s, difficulty %%.4g; max relative deviation %%.2e' %% (k, nf, df, dev))\n"
                    "    assert dev < 1e-3\n\"",
                    mr_test_tmpdir(), mr_test_python(), mr_test_src("models/cs-l1_sigma.h5"));
    CU_ASSERT_EQUAL(rc, 0);
    if (rc) fprintf(stderr, "%s\n", mr_test_output());
}

static void expect_fail(const char *cmd, const char *needle)
{
    int rc = mr_test_sh("%s", cmd);
    CU_ASSERT_EQUAL(rc, 1);
    if (!strstr(mr_test_output(), needle)) fprintf(stderr, "'%s' lacks '%s'\n", mr_test_output(), needle);
    CU_ASSERT_PTR_NOT_NULL(strstr(mr_test_output(), needle));
}

static void test_bad_input(void)
{
    if (!have_data()) return;
    const char *in = noisy_input(), *model = mr_test_src("models/denoiser_blind.h5");
    char cmd[16384], lone[4096], out[4096];
    snprintf(out, sizeof out, "%s", mr_test_path("bad_out.nii.gz"));
    snprintf(cmd, sizeof cmd, "%s denoise --input %s --output %s --uncertainty replica --replicas 1",
             mr_test_bin(), in, out);
    expect_fail(cmd, "at least 2");
    snprintf(cmd, sizeof cmd, "%s denoise --input %s --output %s --uncertainty sometimes",
             mr_test_bin(), in, out);
    expect_fail(cmd, "expected none, replica, model or both");
    /* a model without its variance network: asked for explicitly, a clear error */
    snprintf(lone, sizeof lone, "%s", mr_test_path("lone.h5"));
    CU_ASSERT_FATAL(mr_test_sh("cp %s %s", model, lone) == 0);
    snprintf(cmd, sizeof cmd, "%s denoise --input %s --output %s --model %s --uncertainty model",
             mr_test_bin(), in, out, lone);
    expect_fail(cmd, "no calibrated uncertainty model");
    /* a plain denoiser given as the variance network */
    snprintf(cmd, sizeof cmd, "%s denoise --input %s --output %s --uncertainty-model %s",
             mr_test_bin(), in, out, lone);
    expect_fail(cmd, "expected a variance network");
    if (g_sigma[0]) {
        /* a variance network without its calibration */
        char nocal[4096];
        snprintf(nocal, sizeof nocal, "%s", mr_test_path("nocal.h5"));
        CU_ASSERT_FATAL(mr_test_sh("cp %s %s && %s -c \"import h5py; f = h5py.File('%s', 'r+'); "
                                   "del f.attrs['calibration_scale']\"",
                                   g_sigma, nocal, mr_test_python(), nocal) == 0);
        snprintf(cmd, sizeof cmd, "%s denoise --input %s --output %s --uncertainty-model %s",
                 mr_test_bin(), in, out, nocal);
        expect_fail(cmd, "calibration_scale missing");
    }
    /* recon: a method without a shipped variance network */
    snprintf(cmd, sizeof cmd, "%s recon --input %s --output %s --method sense --uncertainty model "
             "--uncertainty-model %s", mr_test_bin(), mr_test_path("k.h5"),
             mr_test_path("bad_r.h5"), lone);
    if (mr_path_is_file(mr_test_path("k.h5"))) expect_fail(cmd, "expected a variance network");
    CU_ASSERT_EQUAL(mr_test_count_files(mr_test_tmpdir(), "bad_"), 0);
    /* a base model normalised otherwise than the config says */
    char cfg[4096];
    snprintf(cfg, sizeof cfg,
             "variance_head: {base: %s}\nnormalisation: {percentile: 99}\n"
             "data:\n  dir: " TEMPLATES "\n  training: [ch2.nii.gz]\n"
             "  validation:\n    - {file: ch2.nii.gz, z_mm: [20, 40]}\n"
             "  calibration:\n    - {file: ch2.nii.gz, z_mm: [-10, 10]}\n"
             "training: {patch: 24, epochs: 1, steps_per_epoch: 1}\n", model);
    mr_test_write_text(mr_test_path("badsig.yaml"), cfg);
    snprintf(cmd, sizeof cmd, "%s train --config %s --output %s", mr_test_bin(),
             mr_test_path("badsig.yaml"), mr_test_path("badsig"));
    expect_fail(cmd, "expected the config's percentile 99");
}

/* The undersampling degradation (train_artefact.c): the target is the RSS of the fully sampled
 * simulated coil images; a zero-filled reconstruction with every column sampled equals it; 4x loses
 * energy; cs-l1 is closer to the target than zero-filled. */
static void test_degrade(void)
{
    const size_t m = 96, hw = m * m;
    mr_train_us u = {1, {4}, {0.1}, 1, {MR_MASK_EQUISPACED}, 2, {"zf", "cs-l1"}, 4, 0.001, 0.001,
                     (int)m, 1, 0};
    mr_train_degrader *dg = NULL;
    CU_ASSERT_EQUAL_FATAL(mr_train_degrader_create(&dg, &u), MR_OK);
    float *img = malloc(hw * sizeof *img), *ref = malloc(hw * sizeof *ref),
          *deg = malloc(hw * sizeof *deg), *ref2 = malloc(hw * sizeof *ref2),
          *cs = malloc(hw * sizeof *cs);
    for (size_t y = 0; y < m; y++) /* a bright disc with a darker square inside */
        for (size_t x = 0; x < m; x++) {
            double r = hypot((double)y - 48, (double)x - 45);
            img[y * m + x] = r < 33 ? (fabs((double)y - 48) < 12 && fabs((double)x - 42) < 9 ? 0.4f : 1.0f) : 0;
        }
    mr_train_degradation g = {2, 0.999, MR_MASK_EQUISPACED, 0, 0.001, 42};
    /* a centre block of 0.999 of the columns: every column acquired */
    mr_status st = mr_train_degrade(dg, ref, deg, img, &g);
    CU_ASSERT_EQUAL(st, MR_OK);
    if (st != MR_OK) fprintf(stderr, "%s\n", mr_error_message());
    double d = 0, e = 0;
    for (size_t i = 0; i < hw; i++) d = fmax(d, fabs((double)ref[i] - deg[i]));
    CU_ASSERT(d < 1e-5);
    /* the target depends only on the image, the noise and the seed, not on the mask */
    g.accel = 4, g.center_fraction = 0.1;
    CU_ASSERT_EQUAL(mr_train_degrade(dg, ref2, deg, img, &g), MR_OK);
    for (size_t i = 0; i < hw; i++) e = fmax(e, fabs((double)ref[i] - ref2[i]));
    CU_ASSERT(e < 1e-6);
    double ezf = 0, ecs = 0;
    for (size_t i = 0; i < hw; i++) ezf += ((double)deg[i] - ref2[i]) * ((double)deg[i] - ref2[i]);
    g.method = 1; /* cs-l1 on the same k-space */
    st = mr_train_degrade(dg, ref2, cs, img, &g);
    CU_ASSERT_EQUAL(st, MR_OK);
    if (st != MR_OK) fprintf(stderr, "%s\n", mr_error_message());
    for (size_t i = 0; i < hw; i++) ecs += ((double)cs[i] - ref2[i]) * ((double)cs[i] - ref2[i]);
    CU_ASSERT(ezf > 1e-3 * hw * 0.01); /* 4x zero-filled is visibly wrong */
    CU_ASSERT(ecs < ezf);
    /* the target is the magnitude image (times the coils' RSS sensitivity, <= 1) */
    double mx = 0;
    for (size_t i = 0; i < hw; i++) mx = fmax(mx, ref[i]);
    CU_ASSERT(mx > 0.3 && mx < 1.1);
    mr_train_degrader_destroy(dg);
    free(img), free(ref), free(deg), free(ref2), free(cs);
}

/* A tiny artefact-model run: the bank, preview PNGs, training, the model's record; config errors. */
static void test_tiny_artefact_training(void)
{
    if (!have_data()) return;
    char cfg[4096];
    const char *base =
        "seed: 2\n"
        "model: {depth: 3, channels: 4}\n"
        CH2_SPLIT
        "  validation_slices: 2\n"
        "training: {patch: 24, batch: 2, epochs: 1, steps_per_epoch: 3, lr: 0.001}\n";
    snprintf(cfg, sizeof cfg,
             "%sdegradation: {type: undersampling, accel: [4, 8], center_fraction: [0.08, 0.08], "
             "masks: [random, equispaced], methods: [zf, cs-l1], coils: 4, matrix: 128, "
             "bank_slices: 4}\n",
             base);
    mr_test_write_text(mr_test_path("art.yaml"), cfg);
    const char *dir = mr_test_path("art"), *pv = mr_test_path("artpv");
    CU_ASSERT_FATAL(mr_test_sh("mkdir -p %s", pv) == 0);
    int rc = mr_test_sh("MRPIPE_TRAIN_PREVIEW=%s %s train --config %s --output %s", pv,
                        mr_test_bin(), mr_test_path("art.yaml"), dir);
    CU_ASSERT_EQUAL(rc, 0);
    if (rc) fprintf(stderr, "%s\n", mr_test_output());
    CU_ASSERT_PTR_NOT_NULL(strstr(mr_test_output(), "artefact bank 4/4"));
    CU_ASSERT_EQUAL(mr_test_count_files(pv, "bank_0"), 4);
    char mp[4200];
    snprintf(mp, sizeof mp, "%s/model.h5", dir);
    mr_nn_model *m = NULL;
    CU_ASSERT_EQUAL_FATAL(mr_nn_model_load(&m, mp, "magnitude"), MR_OK);
    CU_ASSERT_PTR_NOT_NULL(strstr(m->meta.noise_model, "undersampling artefacts: 4-coil"));
    CU_ASSERT_PTR_NOT_NULL(strstr(m->meta.noise_model, "methods zf cs-l1"));
    CU_ASSERT_PTR_NOT_NULL(strstr(m->meta.validation, "undersampled"));
    mr_nn_model_destroy(m);
    /* config errors name the key and line */
    const char *bad[][2] = {
        {"degradation: {type: undersampling, accel: [4]}\n", "accel needs center_fraction"},
        {"degradation: {type: undersampling, masks: [poisson]}\n", "expected a 1-D fastMRI mask"},
        {"degradation: {type: undersampling, methods: [magic]}\n", "unknown reconstruction method"},
        {"degradation: {type: blur}\n", "expected rician or undersampling"},
        {"degradation: {type: undersampling, matrix: 16}\n", "matrix"},
        {"variance_head: {base: none, second_input: zero_filled}\n",
         "zero_filled needs degradation"},
        {"variance_head: {base: none, second_input: sideways}\n",
         "expected output or zero_filled"},
        {"variance_head: {base: none, unsampled_part: true}\n",
         "unsampled_part needs degradation"},
        {"variance_head: {base: none, noise_term: true}\n", "noise_term needs degradation"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        snprintf(cfg, sizeof cfg, "%s%s", base, bad[i][0]);
        mr_test_write_text(mr_test_path("artbad.yaml"), cfg);
        rc = mr_test_sh("%s train --config %s --output %s", mr_test_bin(),
                        mr_test_path("artbad.yaml"), mr_test_path("artbad"));
        CU_ASSERT_EQUAL(rc, 1);
        if (!strstr(mr_test_output(), bad[i][1]) || !strstr(mr_test_output(), "line 12"))
            fprintf(stderr, "'%s' lacks '%s' or 'line 12'\n", mr_test_output(), bad[i][1]);
        CU_ASSERT_PTR_NOT_NULL(strstr(mr_test_output(), bad[i][1]));
        CU_ASSERT_PTR_NOT_NULL(strstr(mr_test_output(), "line 12"));
    }
}

/* A variance network with the unsampled-part channel (variance_head.unsampled_part): 3 input
 * channels; `mrpipe denoise` on an mrpipe reconstruction reads the input's mask (and keeps it in
 * the output), and without a mask warns and gives another, still finite, map. */
static void test_unsampled_variance(void)
{
    if (!have_data()) return;
    char cfg[4096];
    snprintf(cfg, sizeof cfg,
             "seed: 5\n"
             "variance_head: {base: %s, unsampled_part: true, feature_fit: true, "
             "calibration_slices: 8}\n"
             "model: {depth: 3, channels: 4}\n"
             "normalisation: {percentile: 99.5}\n"
             CH2_SPLIT
             "  validation_slices: 1\n"
             "degradation: {type: undersampling, accel: [4, 8], center_fraction: [0.08, 0.08], "
             "masks: [equispaced], methods: [zf, cs-l1], coils: 4, matrix: 96, bank_slices: 4}\n"
             "training: {patch: 24, batch: 2, epochs: 1, steps_per_epoch: 4, lr: 0.001}\n",
             mr_test_src("models/artefact.h5"));
    mr_test_write_text(mr_test_path("usig.yaml"), cfg);
    const char *dir = mr_test_path("usig");
    int rc = mr_test_sh("%s train --config %s --output %s", mr_test_bin(), mr_test_path("usig.yaml"),
                        dir);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    char sp[4200];
    snprintf(sp, sizeof sp, "%s/model.h5", dir);
    mr_nn_model *m = NULL;
    CU_ASSERT_EQUAL_FATAL(mr_nn_model_load(&m, sp, NULL), MR_OK);
    CU_ASSERT_EQUAL(m->arch.in_channels, 3);
    CU_ASSERT(m->meta.calibration_scale > 0);
    /* refitted on features, and scales per (input method, acceleration) */
    CU_ASSERT_EQUAL(m->meta.n_feature_weights, 4);
    CU_ASSERT_PTR_NOT_NULL(strstr(m->meta.calibration, "features refitted on"));
    CU_ASSERT_EQUAL(m->meta.n_calibration_accel, 2);
    CU_ASSERT_EQUAL(m->meta.n_calibration_methods, 2);
    CU_ASSERT_STRING_EQUAL(m->meta.calibration_methods[0], "zf");
    CU_ASSERT_STRING_EQUAL(m->meta.calibration_methods[1], "cs-l1");
    CU_ASSERT_DOUBLE_EQUAL(mr_sigma_scale_method(m, "cs-l1", 8), m->meta.calibration_method_scales[1][1],
                           1e-12);
    CU_ASSERT_DOUBLE_EQUAL(mr_sigma_scale_method(m, "zf", 4), m->meta.calibration_method_scales[0][0],
                           1e-12);
    CU_ASSERT_DOUBLE_EQUAL(mr_sigma_scale_method(m, "sense", 4), mr_sigma_scale_accel(m, 4), 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(mr_sigma_scale_method(m, NULL, 8), mr_sigma_scale_accel(m, 8), 1e-12);
    mr_nn_model_destroy(m);
    const char *k = mr_test_path("uk.h5"), *zf = mr_test_path("uzf.h5");
    CU_ASSERT_FATAL(mr_test_sh("%s -q simulate --input " TEMPLATES "/ch2.nii.gz --output %s "
                               "--coils 4 --slices 96:98 --matrix 96,80 --seed 1 && %s -q recon "
                               "--input %s --output %s --method zf --mask equispaced --accel 4",
                               mr_test_bin(), k, mr_test_bin(), k, zf) == 0);
    rc = mr_test_sh("cd %s && %s denoise --input uzf.h5 --output uden.h5 --model %s "
                    "--uncertainty-model %s", mr_test_tmpdir(), mr_test_bin(),
                    mr_test_src("models/artefact.h5"), sp);
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(mr_test_output(), "sampling mask of 80 columns"));
    CU_ASSERT_PTR_NOT_NULL(strstr(mr_test_output(), "per input method: zf"));
    CU_ASSERT_PTR_NULL(strstr(mr_test_output(), "no sampling mask"));
    /* the same image without its mask */
    rc = mr_test_sh("cd %s && %s -c \"import h5py\n"
                    "r = h5py.File('uzf.h5')['reconstruction'][()]\n"
                    "h5py.File('unomask.h5', 'w').create_dataset('reconstruction', data=r)\n\" && "
                    "%s denoise --input unomask.h5 --output uden2.h5 --model %s "
                    "--uncertainty-model %s", mr_test_tmpdir(), mr_test_python(), mr_test_bin(),
                    mr_test_src("models/artefact.h5"), sp);
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(mr_test_output(), "no sampling mask"));
    rc = mr_test_sh("cd %s && %s -c \"import h5py, numpy as np\n"
                    "a, b, z = h5py.File('uden.h5'), h5py.File('uden2.h5'), h5py.File('uzf.h5')\n"
                    "assert (a['mask'][()] == z['mask'][()]).all() and 'mask' not in b\n"
                    "sa, sb = a['uncertainty'][()], b['uncertainty'][()]\n"
                    "assert np.isfinite(sa).all() and np.isfinite(sb).all() and sa.min() > 0\n"
                    "assert np.array_equal(a['reconstruction'][()], b['reconstruction'][()])\n"
                    "assert np.abs(sa - sb).max() > 1e-3 * sa.max()\n\"",
                    mr_test_tmpdir(), mr_test_python());
    CU_ASSERT_EQUAL(rc, 0);
    if (rc) fprintf(stderr, "%s\n", mr_test_output());
}

/* A variance network with input-SD weights (mrpipe calibrate) on a zf reconstruction made with its
 * own SD map (recon --uncertainty model): denoise reads the input's `uncertainty` and multiplies
 * the network's SD by k (v scale / SD)^w, so that log(SD_with / SD_without) - w log v +
 * w log SD_without is the same in every pixel of a slice; the same input without its map gets the
 * network's SD alone and a warning naming the method; the image itself does not change. */
static void test_input_sd_denoise(void)
{
    if (!have_data()) return;
    mr_nn_model *m = NULL;
    CU_ASSERT_EQUAL_FATAL(mr_nn_model_load(&m, mr_test_src("models/artefact_sigma.h5"), NULL),
                          MR_OK);
    CU_ASSERT_EQUAL_FATAL(m->meta.n_calibration_methods, 2);
    m->meta.n_input_sd = 2;
    m->meta.input_sd[0][0] = 0.5, m->meta.input_sd[0][1] = 1.1; /* zf */
    m->meta.input_sd[1][0] = 0.3, m->meta.input_sd[1][1] = 0.9; /* cs-l1 */
    char sp[4200];
    snprintf(sp, sizeof sp, "%s", mr_test_path("isd_sigma.h5"));
    CU_ASSERT_EQUAL_FATAL(mr_nn_model_save(m, sp), MR_OK);
    mr_nn_model_destroy(m);
    const char *k = mr_test_path("isd_k.h5"), *zf = mr_test_path("isd_zf.h5");
    CU_ASSERT_FATAL(mr_test_sh("%s -q simulate --input " TEMPLATES "/ch2.nii.gz --output %s "
                               "--coils 4 --slices 96:98 --matrix 96,80 --seed 1 --noise 0.005 && "
                               "%s -q recon --input %s --output %s --method zf --mask random "
                               "--accel 4 --uncertainty model", mr_test_bin(), k, mr_test_bin(), k,
                               zf) == 0);
    int rc = mr_test_sh("cd %s && %s denoise --input isd_zf.h5 --output isd_a.h5 --model %s "
                        "--uncertainty-model %s --accel 4", mr_test_tmpdir(), mr_test_bin(),
                        mr_test_src("models/artefact.h5"), sp);
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(mr_test_output(), "the input's SD map read"));
    CU_ASSERT_PTR_NULL(strstr(mr_test_output(), "carries none"));
    /* the same file without its SD map */
    rc = mr_test_sh("cd %s && cp isd_zf.h5 isd_zf2.h5 && %s -c \"import h5py\n"
                    "del h5py.File('isd_zf2.h5', 'a')['uncertainty']\n\" && "
                    "%s denoise --input isd_zf2.h5 --output isd_b.h5 --model %s "
                    "--uncertainty-model %s --accel 4", mr_test_tmpdir(), mr_test_python(),
                    mr_test_bin(), mr_test_src("models/artefact.h5"), sp);
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(mr_test_output(), "carries none"));
    CU_ASSERT_PTR_NOT_NULL(strstr(mr_test_output(), "(zf;"));
    rc = mr_test_sh("cd %s && %s -c \"import h5py, numpy as np\n"
                    "a, b, z = h5py.File('isd_a.h5'), h5py.File('isd_b.h5'), h5py.File('isd_zf.h5')\n"
                    "assert np.array_equal(a['reconstruction'][()], b['reconstruction'][()])\n"
                    "sa, sb, v = a['uncertainty'][()], b['uncertainty'][()], z['uncertainty'][()]\n"
                    "assert np.isfinite(sa).all() and sa.min() > 0 and v.min() > 0\n"
                    "assert np.abs(np.log(sa / sb)).max() > 0.05\n"
                    "for s in range(sa.shape[0]):\n"
                    "    c = np.log(sa[s] / sb[s]) - 0.5 * np.log(v[s]) + 0.5 * np.log(sb[s])\n"
                    "    print('slice', s, 'spread', np.ptp(c))\n"
                    "    assert np.ptp(c) < 2e-3, np.ptp(c)\n\"",
                    mr_test_tmpdir(), mr_test_python());
    CU_ASSERT_EQUAL(rc, 0);
    if (rc) fprintf(stderr, "%s\n", mr_test_output());
}

/* The artefact model's parametric bootstrap (denoise --uncertainty bootstrap, uq_bootstrap.c) on a
 * zf reconstruction: the map written as `bootstrap_sd` (in the image's .h5 and the SD map's) is
 * what an independent NumPy re-simulation gives (|F^-1 M F |y||, the model run on it by mrpipe,
 * sqrt(G((y_b - y)^2)) with G the Gaussian of 1.5 px); with bootstrap weights (zf: w 0.4, k 1.2)
 * the SD is the model SD times k (b scale / SD)^w, i.e. log(SD_b / SD_m) - 0.4 log b + 0.4 log SD_m
 * is constant over each slice; an input without its mask is refused, naming it, and nothing is
 * written. */
static void test_bootstrap_denoise(void)
{
    if (!have_data()) return;
    mr_nn_model *m = NULL;
    CU_ASSERT_EQUAL_FATAL(mr_nn_model_load(&m, mr_test_src("models/artefact_sigma.h5"), NULL),
                          MR_OK);
    CU_ASSERT_EQUAL_FATAL(m->meta.n_calibration_methods, 2);
    m->meta.n_input_sd = 0;
    m->meta.n_boot_sd = 2;
    m->meta.boot_sd[0][0] = 0.4, m->meta.boot_sd[0][1] = 1.2; /* zf */
    m->meta.boot_sd[1][0] = 0.2, m->meta.boot_sd[1][1] = 0.9; /* cs-l1 */
    char sp[4200], spm[4200];
    snprintf(sp, sizeof sp, "%s", mr_test_path("bsd_sigma.h5"));
    CU_ASSERT_EQUAL_FATAL(mr_nn_model_save(m, sp), MR_OK);
    m->meta.n_boot_sd = 0; /* the same network without them, for --uncertainty model */
    snprintf(spm, sizeof spm, "%s", mr_test_path("bsd_sigma_m.h5"));
    CU_ASSERT_EQUAL_FATAL(mr_nn_model_save(m, spm), MR_OK);
    mr_nn_model_destroy(m);
    const char *k = mr_test_path("bsd_k.h5"), *zf = mr_test_path("bsd_zf.h5");
    CU_ASSERT_FATAL(mr_test_sh("%s -q simulate --input " TEMPLATES "/ch2.nii.gz --output %s "
                               "--coils 4 --slices 96:98 --matrix 96,80 --seed 1 --noise 0.005 && "
                               "%s -q recon --input %s --output %s --method zf --mask equispaced "
                               "--accel 4", mr_test_bin(), k, mr_test_bin(), k, zf) == 0);
    int rc = mr_test_sh("cd %s && %s denoise --input bsd_zf.h5 --output bsd_b.h5 --model %s "
                        "--uncertainty-model %s --accel 4 --uncertainty bootstrap && "
                        "%s denoise --input bsd_zf.h5 --output bsd_m.h5 --model %s "
                        "--uncertainty-model %s --accel 4 --uncertainty model",
                        mr_test_tmpdir(), mr_test_bin(), mr_test_src("models/artefact.h5"), sp,
                        mr_test_bin(), mr_test_src("models/artefact.h5"), spm);
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(mr_test_output(), "uncertainty (bootstrap)"));
    /* a network with bootstrap weights is for --uncertainty bootstrap only */
    rc = mr_test_sh("cd %s && %s denoise --input bsd_zf.h5 --output bsd_x.h5 --model %s "
                    "--uncertainty-model %s --uncertainty model", mr_test_tmpdir(), mr_test_bin(),
                    mr_test_src("models/artefact.h5"), sp);
    CU_ASSERT_NOT_EQUAL(rc, 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(mr_test_output(), "calibration_bootstrap_sd"));
    CU_ASSERT_FALSE(mr_path_is_file(mr_test_path("bsd_x.h5")));
    /* the re-simulation, independently */
    rc = mr_test_sh("cd %s && %s -c \"import h5py, numpy as np\n"
                    "a, z = h5py.File('bsd_b.h5'), h5py.File('bsd_zf.h5')\n"
                    "y, M = a['reconstruction'][()], z['mask'][()].ravel() != 0\n"
                    "c = lambda f, x: np.fft.fftshift(f(np.fft.ifftshift(x, axes=2), axis=2, norm='ortho'), axes=2)\n"
                    "k = c(np.fft.fft, np.abs(y).astype(np.float64)); k[..., ~M] = 0\n"
                    "h5py.File('bsd_xb.h5', 'w').create_dataset('reconstruction', data=np.abs(c(np.fft.ifft, k)).astype(np.float32))\n\" && "
                    "%s -q denoise --input bsd_xb.h5 --output bsd_yb.h5 --model %s --uncertainty none && "
                    "%s -c \"import h5py, numpy as np\n"
                    "from scipy.ndimage import gaussian_filter\n"
                    "a, s, m = h5py.File('bsd_b.h5'), h5py.File('bsd_b_sd.h5'), h5py.File('bsd_m_sd.h5')\n"
                    "y, yb = a['reconstruction'][()], h5py.File('bsd_yb.h5')['reconstruction'][()]\n"
                    "b = s['bootstrap_sd'][()]\n"
                    "assert np.array_equal(b, a['bootstrap_sd'][()])\n"
                    "bp = np.sqrt(gaussian_filter((yb.astype(np.float64) - y) ** 2, (0, 1.5, 1.5), mode='nearest', truncate=4 / 1.5))\n"
                    "d = np.abs(bp - b).max() / b.max()\n"
                    "print('bootstrap map: max |numpy - mrpipe| / max', d, 'mean', b.mean())\n"
                    "assert d < 1e-2 and b.mean() > 0\n"
                    "sb, sm = s['uncertainty'][()], m['uncertainty'][()]\n"
                    "for i in range(sb.shape[0]):\n"
                    "    t = np.log(sb[i] / sm[i]) - 0.4 * np.log(b[i]) + 0.4 * np.log(sm[i])\n"
                    "    print('slice', i, 'spread', np.ptp(t))\n"
                    "    assert np.ptp(t) < 2e-3, np.ptp(t)\n\"",
                    mr_test_tmpdir(), mr_test_python(), mr_test_bin(),
                    mr_test_src("models/artefact.h5"), mr_test_python());
    CU_ASSERT_EQUAL(rc, 0);
    fprintf(stderr, "%s\n", mr_test_output());
    /* without its mask: refused, nothing written */
    rc = mr_test_sh("cd %s && %s -c \"import h5py\n"
                    "r = h5py.File('bsd_zf.h5')['reconstruction'][()]\n"
                    "h5py.File('bsd_nomask.h5', 'w').create_dataset('reconstruction', data=r)\n\" && "
                    "%s denoise --input bsd_nomask.h5 --output bsd_c.h5 --model %s "
                    "--uncertainty-model %s --uncertainty bootstrap", mr_test_tmpdir(),
                    mr_test_python(), mr_test_bin(), mr_test_src("models/artefact.h5"), sp);
    CU_ASSERT_NOT_EQUAL(rc, 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(mr_test_output(), "bsd_nomask.h5"));
    CU_ASSERT_PTR_NOT_NULL(strstr(mr_test_output(), "no mask"));
    CU_ASSERT_FALSE(mr_path_is_file(mr_test_path("bsd_c.h5")));
    CU_ASSERT_FALSE(mr_path_is_file(mr_test_path("bsd_c_sd.h5")));
}

/* mr_sigma_fit_noise_term recovers (b, f) relative to a from draws e ~ N(0, a^2 sd^2 + b^2 s^2 +
 * f^2 fl^2); the floor is sqrt(y^2 + 2 C s^2) - |y|; mr_sigma_add_noise_term adds the term at the
 * given scale and leaves slices without a noise estimate (and networks without a term) alone. */
static void test_noise_term(void)
{
    const size_t n = 200000;
    double *rows = malloc(n * 4 * sizeof *rows), bf[2], nll, nll0;
    const double a = 0.9, b = 0.8, f = 1.1;
    mr_rng rng;
    mr_rng_seed(&rng, 12);
    for (size_t i = 0; i < n; i++) {
        double *q = rows + 4 * i;
        q[1] = exp(3 * mr_rng_uniform(&rng)), q[2] = exp(2 * mr_rng_uniform(&rng));
        q[3] = mr_sigma_noise_floor(200 * mr_rng_uniform(&rng), q[2], 8);
        double v = a * a * q[1] * q[1] + b * b * q[2] * q[2] + f * f * q[3] * q[3];
        double u1 = mr_rng_uniform(&rng), u2 = mr_rng_uniform(&rng);
        q[0] = sqrt(v) * sqrt(-2 * log(u1 > 1e-300 ? u1 : 1e-300)) * cos(2 * M_PI * u2);
    }
    CU_ASSERT_EQUAL_FATAL(mr_sigma_fit_noise_term(bf, &nll, &nll0, rows, n), MR_OK);
    fprintf(stderr, "noise term fit: b/a %.4f (expected %.4f), f/a %.4f (expected %.4f), NLL %.4f "
            "(network alone %.4f)\n", bf[0], b / a, bf[1], f / a, nll, nll0);
    CU_ASSERT(fabs(bf[0] / (b / a) - 1) < 0.05);
    CU_ASSERT(fabs(bf[1] / (f / a) - 1) < 0.05);
    CU_ASSERT(nll < nll0);
    CU_ASSERT_EQUAL(mr_sigma_fit_noise_term(bf, NULL, NULL, rows, 10), MR_ERR_INPUT);
    free(rows);
    /* the floor: 0 noise, none; on a zero image sqrt(2 C) s; far above the noise ~ C s^2 / y */
    CU_ASSERT_DOUBLE_EQUAL(mr_sigma_noise_floor(5, 0, 8), 0, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(mr_sigma_noise_floor(0, 2, 8), 8, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(mr_sigma_noise_floor(1000, 1, 8), 8.0 / 1000, 1e-4);
    /* adding the term: SD^2 = sd^2 + scale^2 (b^2 s^2 + f^2 fl^2) per slice */
    mr_nn_model m;
    memset(&m, 0, sizeof m);
    float sd[4] = {1, 2, 3, 4}, y[4] = {0, 10, 0, 10};
    double ns[2] = {0.5, 0};
    mr_sigma_add_noise_term(sd, y, 2, 2, &m, 2.0, ns, 4, NULL); /* no term: unchanged */
    CU_ASSERT(sd[0] == 1 && sd[3] == 4);
    m.meta.n_noise_term = 2, m.meta.noise_term[0] = 1.5, m.meta.noise_term[1] = 0.5;
    mr_sigma_add_noise_term(sd, y, 2, 2, &m, 2.0, ns, 4, "zf"); /* no per-method terms: pooled */
    double fl0 = sqrt(8 * 0.25), fl1 = sqrt(100 + 8 * 0.25) - 10;
    CU_ASSERT_DOUBLE_EQUAL(sd[0], sqrt(1 + 4 * (2.25 * 0.25 + 0.25 * fl0 * fl0)), 1e-5);
    CU_ASSERT_DOUBLE_EQUAL(sd[1], sqrt(4 + 4 * (2.25 * 0.25 + 0.25 * fl1 * fl1)), 1e-5);
    CU_ASSERT(sd[2] == 3 && sd[3] == 4); /* slice 1: no noise estimate */
    /* per input method: zf's (0, 0) leaves the SD alone, cs-l1's is the pooled term above */
    m.meta.n_calibration_methods = m.meta.n_noise_term_methods = 2;
    snprintf(m.meta.calibration_methods[0], sizeof m.meta.calibration_methods[0], "zf");
    snprintf(m.meta.calibration_methods[1], sizeof m.meta.calibration_methods[1], "cs-l1");
    m.meta.noise_term_methods[0][0] = m.meta.noise_term_methods[0][1] = 0;
    m.meta.noise_term_methods[1][0] = 1.5, m.meta.noise_term_methods[1][1] = 0.5;
    float sz[2] = {1, 2}, c[2] = {1, 2};
    mr_sigma_add_noise_term(sz, y, 1, 2, &m, 2.0, ns, 4, "zf");
    CU_ASSERT(sz[0] == 1 && sz[1] == 2);
    mr_sigma_add_noise_term(c, y, 1, 2, &m, 2.0, ns, 4, "cs-l1");
    CU_ASSERT_DOUBLE_EQUAL(c[0], sqrt(1 + 4 * (2.25 * 0.25 + 0.25 * fl0 * fl0)), 1e-5);
}

/* mr_sigma_fit_features recovers the weights of a known log-SD model from its draws: e ~ N(0, s^2)
 * with log s = L + w0 + w1 a1 + w2 a2 + w3 a3; and features of a step edge: G|grad y| peaks on it,
 * G|y - x| is 0 where the model changed nothing. */
static void test_feature_fit(void)
{
    const size_t n = 200000;
    double *rows = malloc(n * 5 * sizeof *rows), w[4], nll;
    const double wt[4] = {0.3, 0.6, 0.25, -0.15};
    mr_rng rng;
    mr_rng_seed(&rng, 11);
    for (size_t i = 0; i < n; i++) {
        double *q = rows + 5 * i;
        q[1] = 2 * mr_rng_uniform(&rng) - 1, q[2] = 2 * mr_rng_uniform(&rng) - 1;
        q[3] = 2 * mr_rng_uniform(&rng) - 1, q[4] = 3 * mr_rng_uniform(&rng);
        double ls = q[4] + wt[0] + wt[1] * q[1] + wt[2] * q[2] + wt[3] * q[3];
        double u1 = mr_rng_uniform(&rng), u2 = mr_rng_uniform(&rng);
        q[0] = exp(ls) * sqrt(-2 * log(u1 > 1e-300 ? u1 : 1e-300)) * cos(2 * M_PI * u2);
    }
    CU_ASSERT_EQUAL_FATAL(mr_sigma_fit_features(w, &nll, rows, n), MR_OK);
    for (int j = 0; j < 4; j++) {
        if (fabs(w[j] - wt[j]) > 0.02) fprintf(stderr, "w[%d] = %g, expected %g\n", j, w[j], wt[j]);
        CU_ASSERT(fabs(w[j] - wt[j]) < 0.02);
    }
    CU_ASSERT(isfinite(nll));
    CU_ASSERT_EQUAL(mr_sigma_fit_features(w, NULL, rows, 10), MR_ERR_INPUT);
    free(rows);
    const size_t H = 16, W = 16;
    float x[256], y[256], fc[256], fg[256], tmp[512];
    for (size_t i = 0; i < H * W; i++) y[i] = x[i] = (i % W) < 8 ? 1.0f : 3.0f;
    mr_sigma_features(fc, fg, x, y, H, W, tmp);
    float mx = 0;
    for (size_t i = 0; i < H * W; i++) mx = fc[i] > mx ? fc[i] : mx;
    CU_ASSERT(mx == 0);
    CU_ASSERT(fg[8 * W + 7] > 0.4f && fg[8 * W + 8] > 0.4f); /* the edge: Sobel / 8 = 1, blurred */
    CU_ASSERT(fg[8 * W + 0] < 1e-3f && fg[8 * W + 15] < 1e-3f);
}

/* Synthetic training volumes from label atlases: zero outside the labels (up to the blur), the
 * percentile level 1 after normalisation, another seed another contrast; config errors. */
static void test_synthetic_volumes(void)
{
    if (!have_data()) return;
    mr_train_volume a, b;
    CU_ASSERT_EQUAL_FATAL(mr_train_synth_volume(&a, TEMPLATES "/natbrainlab.nii.gz", 1, 99.5), MR_OK);
    CU_ASSERT_EQUAL_FATAL(mr_train_synth_volume(&b, TEMPLATES "/natbrainlab.nii.gz", 2, 99.5), MR_OK);
    size_t n = mr_array_numel(a.vol);
    const float *x = mr_array_f32(a.vol), *y = mr_array_f32(b.vol);
    CU_ASSERT_EQUAL(a.vol->ndim, 3);
    CU_ASSERT_EQUAL(a.nblocks, 1);
    CU_ASSERT_EQUAL(a.k1[0], (int)a.vol->dims[0]);
    double p = 0, diff = 0;
    size_t zero = 0;
    CU_ASSERT_EQUAL(mr_train_percentile(&p, x, n, 99.5), MR_OK);
    CU_ASSERT_DOUBLE_EQUAL(p, 1.0, 1e-4);
    for (size_t i = 0; i < n; i++) {
        zero += x[i] == 0;
        diff += fabs((double)x[i] - y[i]);
        CU_ASSERT_FATAL(isfinite(x[i]) && x[i] >= 0);
    }
    CU_ASSERT(zero > n / 4);      /* the background stays empty */
    CU_ASSERT(diff / n > 0.02);    /* another seed, another contrast */
    CU_ASSERT_PTR_NOT_NULL(strstr(a.name, "natbrainlab.nii.gz"));
    mr_array_destroy(a.vol), mr_array_destroy(b.vol);
    /* an image that is not a label atlas (no voxel > 0.5 ...) is refused by name */
    const char *empty = mr_test_path("empty_labels.nii.gz");
    CU_ASSERT_FATAL(mr_test_sh("%s -c \"import nibabel as nib, numpy as np\n"
                               "nib.save(nib.Nifti1Image(np.zeros((8, 8, 8), np.uint8), np.eye(4)), "
                               "'%s')\n\"", mr_test_python(), empty) == 0);
    CU_ASSERT_EQUAL(mr_train_synth_volume(&a, empty, 1, 99.5), MR_ERR_INPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(mr_error_message(), "label atlas"));
    /* config: atlases required, volumes bounded by the free training slots */
    const char *base =
        "model: {depth: 3, channels: 4}\n"
        "training: {patch: 24, batch: 2, epochs: 1, steps_per_epoch: 2}\n"
        "data:\n"
        "  dir: " TEMPLATES "\n"
        "  training: [ch2.nii.gz]\n"
        "  validation:\n"
        "    - {file: ch2.nii.gz, z_mm: [20, 40]}\n";
    const char *bad[][2] = {{"  synthetic: {volumes: 2}\n", "atlases"},
                            {"  synthetic: {atlases: [jhu189.nii.gz], volumes: 9}\n", "volumes"},
                            {"  synthetic: {atlases: [nothere.nii.gz]}\n", "nothere.nii.gz"}};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char cfg[2048];
        snprintf(cfg, sizeof cfg, "%s%s", base, bad[i][0]);
        mr_test_write_text(mr_test_path("synbad.yaml"), cfg);
        int rc = mr_test_sh("%s train --config %s --output %s", mr_test_bin(),
                            mr_test_path("synbad.yaml"), mr_test_path("synbad"));
        CU_ASSERT_EQUAL(rc, 1);
        if (!strstr(mr_test_output(), bad[i][1])) fprintf(stderr, "'%s' lacks '%s'\n", mr_test_output(), bad[i][1]);
        CU_ASSERT_PTR_NOT_NULL(strstr(mr_test_output(), bad[i][1]));
    }
}

int main(void)
{
    static const mr_test_case cases[] = {
        {"split-conformal scale and coverage on synthetic errors", test_conformal},
        {"MAD noise level of Gaussian noise", test_noise_mad},
        {"a tiny variance network: trained, calibrated, recorded", test_tiny_variance_network},
        {"denoise --uncertainty model / replica / both maps; .h5 holds the map", test_denoise_maps},
        {"recon cs-l1 --uncertainty model / both", test_recon_model},
        {"bad input: replicas, missing network or calibration, wrong base", test_bad_input},
        {"undersampling degradation: target, full sampling, zf vs cs-l1", test_degrade},
        {"feature refit of the SD: known weights recovered; edge and change features", test_feature_fit},
        {"noise term of the SD: known weights recovered; floor; added per slice", test_noise_term},
        {"recon records the coil noise SD; denoise keeps it; cs-l1's noise term follows it",
         test_noise_record},
        {"a 3-channel variance network reads the input's sampling mask; per-method scales",
         test_unsampled_variance},
        {"synthetic training volumes from label atlases", test_synthetic_volumes},
        {"input-SD weights: denoise combines with the input's SD map, warns without it",
         test_input_sd_denoise},
        {"the artefact model's bootstrap: the map as NumPy re-simulates it, the weights, no mask",
         test_bootstrap_denoise},
        {"a tiny artefact-model run (bank, preview, record); degradation config errors",
         test_tiny_artefact_training},
        {NULL, NULL},
    };
    return mr_test_run("model_uq", cases);
}
