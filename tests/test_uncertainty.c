/*
 * test_uncertainty.c: measurement-noise uncertainty (issue 6; recon/replica.c, recon/gfactor.c,
 * docs/uncertainty.md): pseudo-multiple replicas (Robson et al. 2008) against theory and against
 * the analytic SENSE g-factor (Pruessmann et al. 1999) on BART's phantom; determinism; bad input;
 * the `mrpipe recon --uncertainty replica` outputs and their use by `mrpipe report`.
 */
#include "testutil.h"

#include "mr_recon.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, size_t n)
{
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* BART's 8-coil phantom k-space (128 x 128), its ESPIRiT maps from the full data, and a noisy copy.
 */
static void make_phantom(void)
{
    static int done;
    if (done) return;
    CU_ASSERT_FATAL(mr_test_sh("cd %s && bart phantom -x 128 -k -s 8 ph && bart ecalib -m1 ph maps "
                               "&& bart noise -s 5 -n 1 ph phn",
                               mr_test_tmpdir()) == 0);
    done = 1;
}

/* zf of pure white noise: the RSS over C coils of CN(0, s^2) pixels is s/sqrt(2) chi_2C, whose
 * variance is s^2 (C - (Gamma(C + 1/2) / Gamma(C))^2). */
static void test_zf_theory(void)
{
    const size_t C = 4, H = 64, W = 64, hw = H * W;
    const double sigma = 0.7;
    const mr_recon_method *m = mr_recon_method_find("zf");
    mr_recon_params rp;
    void *state = NULL;
    mr_cfloat *k = calloc(C * hw, sizeof *k), chol[16] = {0};
    float *mask = malloc(hw * sizeof *mask), *sd = malloc(hw * sizeof *sd);
    CU_ASSERT_FATAL(m && k && mask && sd);
    for (size_t i = 0; i < hw; i++)
        mask[i] = 1;
    for (size_t c = 0; c < C; c++)
        chol[c * C + c] = (float)sigma;
    memset(&rp, 0, sizeof rp);
    CU_ASSERT_FATAL(m->create(&state, &rp, C, H, W) == MR_OK);
    mr_replica_params p = {.replicas = 32, .seed = 7};
    CU_ASSERT_FATAL(mr_replica_sd(sd, m, state, k, mask, NULL, chol, C, H, W, &p) == MR_OK);
    double v = 0;
    for (size_t i = 0; i < hw; i++)
        v += (double)sd[i] * sd[i];
    double r = exp(lgamma(C + 0.5) - lgamma((double)C));
    double theory = sigma * sqrt((double)C - r * r);
    fprintf(stderr, "  zf of white noise: replica SD %.4f, theory %.4f (%+.2f %%)\n", sqrt(v / hw),
            theory, 100.0 * (sqrt(v / hw) / theory - 1));
    CU_ASSERT(fabs(sqrt(v / hw) / theory - 1) < 0.03);
    /* complex SD of the (real) RSS is the same here */
    m->destroy(state);
    free(k);
    free(mask);
    free(sd);
}

/* Same seed, same map; another seed, another map. */
static void test_deterministic(void)
{
    const size_t C = 2, H = 16, W = 16, hw = H * W;
    const mr_recon_method *m = mr_recon_method_find("zf");
    mr_recon_params rp;
    void *state = NULL;
    mr_cfloat k[2 * 256], chol[4] = {1, 0, 0.3f, 0.8f};
    float mask[256], a[256], b[256], c[256];
    for (size_t i = 0; i < C * hw; i++)
        k[i] = (float)(i % 7) + I * (float)(i % 3);
    for (size_t i = 0; i < hw; i++)
        mask[i] = (i % W) % 2 == 0;
    for (size_t i = 0; i < C * hw; i++)
        if (!mask[i % hw]) k[i] = 0;
    memset(&rp, 0, sizeof rp);
    CU_ASSERT_FATAL(m->create(&state, &rp, C, H, W) == MR_OK);
    mr_replica_params p = {.replicas = 4, .seed = 11, .stream = 3};
    CU_ASSERT_FATAL(mr_replica_sd(a, m, state, k, mask, NULL, chol, C, H, W, &p) == MR_OK);
    CU_ASSERT_FATAL(mr_replica_sd(b, m, state, k, mask, NULL, chol, C, H, W, &p) == MR_OK);
    p.seed = 12;
    CU_ASSERT_FATAL(mr_replica_sd(c, m, state, k, mask, NULL, chol, C, H, W, &p) == MR_OK);
    CU_ASSERT(memcmp(a, b, sizeof a) == 0);
    CU_ASSERT(memcmp(a, c, sizeof a) != 0);
    /* fresh states from rp, one or three threads: the same map */
    p.seed = 11;
    p.rp = &rp;
    p.threads = 1;
    CU_ASSERT_FATAL(mr_replica_sd(b, m, NULL, k, mask, NULL, chol, C, H, W, &p) == MR_OK);
    p.threads = 3;
    CU_ASSERT_FATAL(mr_replica_sd(c, m, NULL, k, mask, NULL, chol, C, H, W, &p) == MR_OK);
    CU_ASSERT(memcmp(a, b, sizeof a) == 0);
    CU_ASSERT(memcmp(b, c, sizeof a) == 0);
    /* noise only at acquired samples */
    mr_mt19937 rng;
    mr_mt_seed(&rng, 1);
    mr_replica_add_noise(k, chol, mask, C, H, W, &rng);
    int ok = 1;
    for (size_t i = 0; i < C * hw; i++)
        if (!mask[i % hw] && k[i] != 0) ok = 0;
    CU_ASSERT(ok);
    m->destroy(state);
}

/* The acceptance test of issue 6: on BART's phantom with R = 2 equispaced (no centre lines) and
 * ESPIRiT maps from the full data, the replica g-factor of SENSE (SD_R / (SD_full sqrt(R))) agrees
 * with the analytic one within 5 % (median over the object). */
static void test_gfactor(void)
{
    const size_t R = 2;
    mr_array *k = NULL, *maps = NULL;
    make_phantom();
    CU_ASSERT_FATAL(mr_cfl_read(&k, mr_test_path("ph")) == MR_OK);
    CU_ASSERT_FATAL(mr_cfl_read(&maps, mr_test_path("maps")) == MR_OK);
    const size_t C = k->dims[1], H = k->dims[2], W = k->dims[3], hw = H * W;
    CU_ASSERT_FATAL(C == 8 && H == 128 && W == 128);
    const mr_recon_method *m = mr_recon_method_find("sense");
    mr_recon_params rp;
    void *state = NULL;
    mr_cfloat *ks = malloc(C * hw * sizeof *ks), *chol = calloc(C * C, sizeof *chol);
    mr_cfloat *img = malloc(hw * sizeof *img);
    float *full = malloc(hw * sizeof *full), *us = malloc(hw * sizeof *us);
    float *ga = malloc(hw * sizeof *ga);
    float *m1 = malloc(hw * sizeof *m1), *m2 = malloc(hw * sizeof *m2);
    double *ratio = malloc(hw * sizeof *ratio), *gmc = malloc(hw * sizeof *gmc);
    CU_ASSERT_FATAL(ks && chol && img && full && us && ga && m1 && m2 && ratio && gmc);
    double e = 0;
    for (size_t i = 0; i < C * hw; i++)
        e += (double)cabsf(mr_array_c64(k)[i]) * cabsf(mr_array_c64(k)[i]);
    const double sigma = 0.05 * sqrt(e / (double)(C * hw)); /* the SD scales out of g */
    for (size_t c = 0; c < C; c++)
        chol[c * C + c] = (float)sigma;
    for (size_t i = 0; i < hw; i++) {
        m1[i] = 1;
        m2[i] = (i % W) % R == 0;
    }
    memset(&rp, 0, sizeof rp);
    rp.lambda = 1e-6;
    rp.has_lambda = 1;
    rp.iters = 10; /* fully sampled: E^H E = S^H S is diagonal, CG is done in a step or two */
    void *state_full = NULL;
    CU_ASSERT_FATAL(m->create(&state_full, &rp, C, H, W) == MR_OK);
    rp.iters = 50;
    CU_ASSERT_FATAL(m->create(&state, &rp, C, H, W) == MR_OK);
    /* complex SD: the g-factor's definition */
    mr_replica_params p = {.replicas = 24, .seed = 1, .complex_sd = 1};
    CU_ASSERT_FATAL(mr_replica_sd(full, m, state_full, mr_array_c64(k), m1, mr_array_c64(maps),
                                  chol, C, H, W, &p) == MR_OK);
    for (size_t i = 0; i < C * hw; i++)
        ks[i] = m2[i % hw] != 0 ? mr_array_c64(k)[i] : 0;
    p.stream = 1;
    CU_ASSERT_FATAL(mr_replica_sd(us, m, state, ks, m2, mr_array_c64(maps), chol, C, H, W, &p) ==
                    MR_OK);
    CU_ASSERT_FATAL(mr_sense_gfactor(ga, mr_array_c64(maps), NULL, C, H, W, R) == MR_OK);
    /* support: the fully sampled SENSE image above 10 % of its maximum */
    mr_recon_stats stats;
    CU_ASSERT_FATAL(m->run(state_full, img, &stats, mr_array_c64(k), m1, mr_array_c64(maps)) ==
                    MR_OK);
    double mx = 0;
    for (size_t i = 0; i < hw; i++)
        mx = fmax(mx, cabsf(img[i]));
    size_t n = 0;
    double gmax = 0;
    for (size_t i = 0; i < hw; i++)
        if (cabsf(img[i]) > 0.1 * mx && ga[i] > 0 && full[i] > 0) {
            gmc[n] = us[i] / (full[i] * sqrt((double)R));
            ratio[n] = gmc[n] / ga[i];
            gmax = fmax(gmax, ga[i]);
            n++;
        }
    CU_ASSERT_FATAL(n > hw / 10);
    double med = median(ratio, n), medg = median(gmc, n);
    fprintf(stderr,
            "  g-factor R=2 on %zu object pixels: median replica/analytic %.4f (%+.2f %%), median "
            "replica g %.3f, max analytic g %.3f\n",
            n, med, 100 * (med - 1), medg, gmax);
    CU_ASSERT(fabs(med - 1) < 0.05);
    /* Psi given: a scaled identity changes nothing */
    mr_cfloat *psi = calloc(C * C, sizeof *psi);
    float *gb = malloc(hw * sizeof *gb);
    for (size_t c = 0; c < C; c++)
        psi[c * C + c] = 4.0f;
    CU_ASSERT(mr_sense_gfactor(gb, mr_array_c64(maps), psi, C, H, W, R) == MR_OK);
    double dmax = 0;
    for (size_t i = 0; i < hw; i++)
        dmax = fmax(dmax, fabs(gb[i] - ga[i]));
    CU_ASSERT(dmax < 1e-3);
    CU_ASSERT(mr_sense_gfactor(gb, mr_array_c64(maps), NULL, C, H, W, 3) == MR_ERR_INPUT);
    m->destroy(state);
    m->destroy(state_full);
    free(psi);
    free(gb);
    free(ks);
    free(chol);
    free(img);
    free(full);
    free(us);
    free(ga);
    free(m1);
    free(m2);
    free(ratio);
    free(gmc);
    mr_array_destroy(k);
    mr_array_destroy(maps);
}

/* Pseudo-replicas against true multiple replicas: an ISMRMRD Shepp-Logan (4 coils, 64 x 64,
 * readout oversampling) with correlated noise n = M z and a noise scan of the same kind; 12
 * independently noised copies reconstructed one by one give the true per-pixel SD; the replica map
 * of one copy (Psi from its noise scan) matches it (median ratio over the object within 10 %), for
 * zf (Psi as measured) and SENSE (pre-whitened data, Wt Psi Wt^H). */
static const char *PY_TRUE =
    "import h5py, numpy as np, shutil\n"
    "M = np.array([[1, 0, 0, 0], [0.8, 0.6, 0, 0], [0.3, 0.5j, 0.9, 0],\n"
    "              [0, 0.2, -0.7, 0.5]], np.complex64) * 0.05\n"
    "f = h5py.File('tr_base.h5', 'r'); d0 = f['dataset/data'][:]; f.close()\n"
    "extra = np.array([d0[0].copy() for _ in range(31)], d0.dtype)\n"
    "d0 = np.concatenate([d0[:1], extra, d0[1:]])\n"
    "for k in range(13):\n"
    "    rng = np.random.default_rng(100 + k)\n"
    "    d = d0.copy()\n"
    "    for a in d:\n"
    "        x = a['data'].view(np.complex64).reshape(4, -1)\n"
    "        z = (rng.standard_normal(x.shape) + 1j * rng.standard_normal(x.shape)) / np.sqrt(2)\n"
    "        a['data'] = (x + M @ z).astype(np.complex64).view(np.float32).ravel()\n"
    "    shutil.copy('tr_base.h5', 'tr_%d.h5' % k)\n"
    "    g = h5py.File('tr_%d.h5' % k, 'r+'); del g['dataset/data']\n"
    "    g['dataset'].create_dataset('data', data=d, maxshape=(None,), chunks=True); g.close()\n";

static const char *PY_CMP =
    "import h5py, numpy as np, sys\n"
    "m = sys.argv[1]\n"
    "x = np.stack([h5py.File('tr_%s_%d.h5' % (m, k))['reconstruction'][()] for k in range(1, "
    "13)])\n"
    "true = x.std(0, ddof=1)\n"
    "f = h5py.File('tr_%s_0.h5' % m); u = f['uncertainty'][()]; r = f['reconstruction'][()]\n"
    "obj = r > 0.1 * r.max()\n"
    "q = np.median(u[obj] / true[obj])\n"
    "print('%s: pixels %d, median replica SD / true SD %.3f, median true SD %.4g' % (m, obj.sum(), "
    "q,\n"
    "      np.median(true[obj])))\n"
    "sys.exit(0 if abs(q - 1) < 0.1 else 1)\n";

static void test_true_replicas(void)
{
    CU_ASSERT_FATAL(mr_test_sh("ismrmrd_generate_cartesian_shepp_logan -m 64 -c 4 -C -n 0 -o %s",
                               mr_test_path("tr_base.h5")) == 0);
    CU_ASSERT_FATAL(mr_test_sh("cd %s && %s - <<'EOF'\n%s\nEOF", mr_test_tmpdir(), mr_test_python(),
                               PY_TRUE) == 0);
    const char *methods[2] = {"zf", "sense"};
    for (int mi = 0; mi < 2; mi++) {
        for (int k = 1; k < 13; k++)
            CU_ASSERT_FATAL(mr_test_sh("cd %s && %s recon --input tr_%d.h5 --output tr_%s_%d.h5 "
                                       "--method %s",
                                       mr_test_tmpdir(), mr_test_bin(), k, methods[mi], k,
                                       methods[mi]) == 0);
        int rc = mr_test_sh("cd %s && %s recon --input tr_0.h5 --output tr_%s_0.h5 --method %s "
                            "--uncertainty replica --replicas 16",
                            mr_test_tmpdir(), mr_test_bin(), methods[mi], methods[mi]);
        CU_ASSERT_FATAL(rc == 0);
        CU_ASSERT(strstr(mr_test_output(), "noise covariance from the noise scan") != NULL);
        rc = mr_test_sh("cd %s && %s - %s <<'EOF'\n%s\nEOF", mr_test_tmpdir(), mr_test_python(),
                        methods[mi], PY_CMP);
        fprintf(stderr, "  %s", mr_test_output());
        CU_ASSERT(rc == 0);
    }
}

static void test_bad_input(void)
{
    const mr_recon_method *m = mr_recon_method_find("zf");
    mr_recon_params rp;
    void *state = NULL;
    mr_cfloat k[2 * 16] = {0}, chol[4] = {1, 0, 0, 1};
    float mask[16], sd[16];
    for (int i = 0; i < 16; i++)
        mask[i] = 1;
    memset(&rp, 0, sizeof rp);
    CU_ASSERT_FATAL(m->create(&state, &rp, 2, 4, 4) == MR_OK);
    mr_replica_params p = {.replicas = 1};
    CU_ASSERT(mr_replica_sd(sd, m, state, k, mask, NULL, chol, 2, 4, 4, &p) == MR_ERR_USAGE);
    CU_ASSERT(strstr(mr_error_message(), "at least 2") != NULL);
    m->destroy(state);
    /* a duplicated channel: rank-deficient covariance */
    mr_cfloat psi[4] = {1, 1, 1, 1}, out[4];
    CU_ASSERT(mr_noise_cov_cholesky(out, psi, 2) == MR_ERR_INPUT);
    CU_ASSERT(strstr(mr_error_message(), "not positive definite") != NULL);
    mr_cfloat neg[4] = {1, 0, 0, -1};
    CU_ASSERT(mr_noise_cov_cholesky(out, neg, 2) == MR_ERR_INPUT);
    mr_cfloat nonh[4] = {1, 0.5f, -0.5f, 1};
    CU_ASSERT(mr_noise_cov_cholesky(out, nonh, 2) == MR_ERR_INPUT);
    /* noise estimate: noise-free zeros */
    CU_ASSERT(mr_noise_cov_estimate(out, k, mask, 2, 4, 4) == MR_ERR_INPUT);
    /* CLI: N < 2, model for a method without a variance network, unknown kind; nothing written */
    make_phantom();
    int rc = mr_test_sh("%s recon --input %s --output %s --uncertainty replica --replicas 1",
                        mr_test_bin(), mr_test_path("phn.cfl"), mr_test_path("bad.h5"));
    CU_ASSERT(rc != 0 && strstr(mr_test_output(), "at least 2") != NULL);
    rc = mr_test_sh("%s recon --input %s --output %s --uncertainty model --uncertainty-model %s",
                    mr_test_bin(), mr_test_path("phn.cfl"), mr_test_path("bad.h5"),
                    mr_test_path("no_such_sigma.h5"));
    CU_ASSERT(rc != 0 && strstr(mr_test_output(), "no calibrated uncertainty model for method zf") != NULL);
    rc = mr_test_sh("%s recon --input %s --output %s --uncertainty maybe", mr_test_bin(),
                    mr_test_path("phn.cfl"), mr_test_path("bad.h5"));
    CU_ASSERT(rc != 0 && strstr(mr_test_output(), "expected none, replica") != NULL);
    /* a noise scan with a duplicated channel (the ISMRMRD file of test_true_replicas) */
    CU_ASSERT_FATAL(mr_test_sh("cd %s && %s - <<'EOF'\n"
                               "import h5py, numpy as np, shutil\n"
                               "shutil.copy('tr_1.h5', 'dup.h5')\n"
                               "f = h5py.File('dup.h5', 'r+'); d = f['dataset/data'][:]\n"
                               "for a in d:\n"
                               "    if int(a['head']['flags']) & (1 << 18):\n"
                               "        x = a['data'].view(np.complex64).reshape(4, -1)\n"
                               "        x[3] = x[2]\n"
                               "        a['data'] = x.view(np.float32).ravel()\n"
                               "f['dataset/data'][:] = d; f.close()\n"
                               "EOF",
                               mr_test_tmpdir(), mr_test_python()) == 0);
    rc = mr_test_sh("%s recon --input %s --output %s --uncertainty replica --replicas 3",
                    mr_test_bin(), mr_test_path("dup.h5"), mr_test_path("bad_dup.h5"));
    CU_ASSERT(rc != 0 && strstr(mr_test_output(), "not positive definite") != NULL &&
              strstr(mr_test_output(), "coil 3") != NULL);
    if (rc == 0 || !strstr(mr_test_output(), "not positive definite"))
        fprintf(stderr, "%s\n", mr_test_output());
    CU_ASSERT(mr_test_count_files(mr_test_tmpdir(), "bad") == 0);
}

/* Estimated noise on white noise k-space: within a few % of the truth. */
static void test_noise_estimate(void)
{
    const size_t C = 3, H = 64, W = 48, hw = H * W;
    mr_cfloat *k = malloc(C * hw * sizeof *k), psi[9];
    mr_test_rng rng;
    mr_test_rng_init(&rng, 3);
    for (size_t c = 0; c < C; c++)
        for (size_t i = 0; i < hw; i++)
            k[c * hw + i] = (float)((c + 1) * 0.5 * mr_test_randn(&rng)) +
                            I * (float)((c + 1) * 0.5 * mr_test_randn(&rng));
    CU_ASSERT_FATAL(mr_noise_cov_estimate(psi, k, NULL, C, H, W) == MR_OK);
    for (size_t c = 0; c < C; c++) {
        double truth = 2 * 0.25 * (double)((c + 1) * (c + 1));
        CU_ASSERT(fabs(crealf(psi[c * C + c]) / truth - 1) < 0.1);
    }
    CU_ASSERT(psi[1] == 0);
    free(k);
}

/* mrpipe recon --uncertainty replica: .h5 gets `uncertainty` of the image's shape, the _sd file is
 * written, PNG/NIfTI maps, and mrpipe report accepts the NIfTI map. */
static void test_cli_outputs(void)
{
    make_phantom();
    int rc =
        mr_test_sh("%s recon --input %s --output %s --method sense --mask equispaced --accel 2 "
                   "--uncertainty replica --replicas 4",
                   mr_test_bin(), mr_test_path("phn.cfl"), mr_test_path("rs.h5"));
    CU_ASSERT_FATAL(rc == 0);
    rc = mr_test_sh(
        "cd %s && %s -c \"import h5py; f = h5py.File('rs.h5'); g = h5py.File('rs_sd.h5'); "
        "r = f['reconstruction']; u = f['uncertainty']; "
        "assert r.shape == u.shape == g['uncertainty'].shape, (r.shape, u.shape); "
        "assert (u[()] >= 0).all() and u[()].max() > 0; "
        "assert g.attrs['mrpipe_uncertainty'] == 'replica'\"",
        mr_test_tmpdir(), mr_test_python());
    CU_ASSERT(rc == 0);
    if (rc) fprintf(stderr, "%s\n", mr_test_output());
    rc = mr_test_sh("%s recon --input %s --output %s --uncertainty replica --replicas 3 "
                    "--uncertainty-output %s",
                    mr_test_bin(), mr_test_path("phn.cfl"), mr_test_path("z.nii.gz"),
                    mr_test_path("z_map.png"));
    CU_ASSERT(rc == 0);
    CU_ASSERT(mr_test_count_files(mr_test_tmpdir(), "z_map.png") == 1);
    CU_ASSERT(mr_test_count_files(mr_test_tmpdir(), "z_sd") == 0);
    rc = mr_test_sh("%s recon --input %s --output %s --uncertainty replica --replicas 3",
                    mr_test_bin(), mr_test_path("phn.cfl"), mr_test_path("zz.nii.gz"));
    CU_ASSERT_FATAL(rc == 0);
    CU_ASSERT(mr_test_count_files(mr_test_tmpdir(), "zz_sd.nii.gz") == 1);
    rc = mr_test_sh("%s report --input %s --reference %s --uncertainty %s --output %s",
                    mr_test_bin(), mr_test_path("rs.h5"), mr_test_path("zz.nii.gz"),
                    mr_test_path("zz_sd.nii.gz"), mr_test_path("rep"));
    if (rc) fprintf(stderr, "%s\n", mr_test_output());
    CU_ASSERT(rc == 0);
}

int main(void)
{
    static const mr_test_case cases[] = {
        {"replica SD of zf on white noise equals the chi distribution's", test_zf_theory},
        {"replicas deterministic for a seed; noise only at acquired samples", test_deterministic},
        {"noise covariance estimated from white k-space", test_noise_estimate},
        {"replica g-factor of SENSE vs analytic within 5 % (phantom, R = 2)", test_gfactor},
        {"pseudo-replicas vs true replicas (ISMRMRD noise scan; zf and whitened SENSE)",
         test_true_replicas},
        {"bad input: N < 2, non-PD covariance (also a noise scan), no variance network",
         test_bad_input},
        {"CLI outputs: .h5 dataset, _sd file, PNG, report smoke", test_cli_outputs},
        {NULL, NULL},
    };
    return mr_test_run("uncertainty", cases);
}
