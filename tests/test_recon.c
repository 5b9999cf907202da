/*
 * test_recon.c: end-to-end runs of `mrpipe recon --method zf` and `mrpipe simulate` against
 * independent oracles (BART's fft + rss on its analytic phantom; numpy on ISMRMRD and simulated
 * files), and every bad-input path: message, exit code 1, and no output (final or temporary) left.
 */
#include "mr_io.h"
#include "mr_recon.h"
#include "mr_validation.h"
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Read a .cfl as magnitude floats; returns numel (0 on failure). */
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

/* mrpipe zf on BART's analytic phantom k-space equals `bart fft -i -u 3` + `bart rss 8`. */
static void test_zf_matches_bart(void)
{
    float *ours = NULL, *ref = NULL;
    size_t n1, n2;
    CU_ASSERT_FATAL(mr_test_sh("cd %s && bart phantom -x 256 -k -s 8 ph && bart fft -i -u 3 ph "
                               "coil && bart rss 8 coil ref",
                               mr_test_tmpdir()) == 0);
    CU_ASSERT_FATAL(mr_test_sh("%s recon --input %s --output %s --method zf", mr_test_bin(),
                               mr_test_path("ph.cfl"), mr_test_path("zf.cfl")) == 0);
    n1 = read_cfl_mag(&ours, mr_test_path("zf"));
    n2 = read_cfl_mag(&ref, mr_test_path("ref"));
    CU_ASSERT_FATAL(n1 == 256 * 256 && n2 == n1);
    double e = mr_metric_nrmse(ref, ours, n1);
    fprintf(stderr, "  NRMSE(mrpipe zf, bart fft -i -u 3 + rss 8) = %.3g\n", e);
    CU_ASSERT(e < 1e-5);
    /* BART's own nrmse agrees that the files match (dims line up: d0 = H, d1 = W). */
    CU_ASSERT(mr_test_sh("cd %s && bart nrmse -t 0.00001 ref zf", mr_test_tmpdir()) == 0);
    free(ours);
    free(ref);
}

/* ISMRMRD Shepp-Logan (2x readout oversampling): the output is reconSpace-sized and equals numpy's
 * RSS of the centred IFFT of the acquisitions placed by encode step, cropped. */
static void test_zf_ismrmrd(void)
{
    const char *in = mr_test_path("sl.h5"), *out = mr_test_path("sl_zf.h5");
    CU_ASSERT_FATAL(mr_test_sh("ismrmrd_generate_cartesian_shepp_logan -m 64 -c 4 -n 0.01 -o %s",
                               in) == 0);
    CU_ASSERT_FATAL(mr_test_sh("%s recon --input %s --output %s", mr_test_bin(), in, out) == 0);
    int rc = mr_test_sh(
        "%s - <<'EOF'\n"
        "import h5py, numpy as np\n"
        "f = h5py.File('%s', 'r'); d = f['dataset/data'][:]\n"
        "k = np.zeros((4, 128, 64), np.complex64)\n"
        "for a in d:\n"
        "    h = a['head']\n"
        "    if int(h['flags']) & (1 << 18): continue\n"
        "    y = h['idx']['kspace_encode_step_1']\n"
        "    k[:, :, y] = a['data'].view(np.complex64).reshape(4, 128)\n"
        "img = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(k, axes=(-2, -1)), norm='ortho'), axes=(-2, -1))\n"
        "rss = np.sqrt((abs(img) ** 2).sum(0))[32:96, :]\n"
        "r = h5py.File('%s', 'r')['reconstruction'][:]\n"
        "assert r.shape == (1, 64, 64), r.shape\n"
        "e = np.linalg.norm(r[0] - rss) / np.linalg.norm(rss)\n"
        "print('nrmse', e); assert e < 1e-5\n"
        "EOF",
        mr_test_python(), in, out);
    if (rc) fprintf(stderr, "%s\n", mr_test_output());
    CU_ASSERT(rc == 0);
}

/* simulate -> recon: fully sampled zf equals the file's reconstruction_rss; an equispaced 4x mask
 * degrades it the way zero filling does; the output reads back in h5py with the fastMRI layout. */
static void test_simulate_and_recon(void)
{
    const char *sim = mr_test_path("sim.h5"), *full = mr_test_path("full.h5");
    const char *us = mr_test_path("us.h5");
    CU_ASSERT_FATAL(mr_test_sh("%s simulate --input /usr/share/mricron/templates/ch2.nii.gz "
                               "--output %s --coils 6 --noise 0.01 --slices 88:92 --seed 3",
                               mr_test_bin(), sim) == 0);
    CU_ASSERT_FATAL(mr_test_sh("%s recon --input %s --output %s", mr_test_bin(), sim, full) == 0);
    CU_ASSERT_FATAL(mr_test_sh("%s recon --input %s --output %s --mask equispaced --accel 4 "
                               "--center-fraction 0.08 --seed 1",
                               mr_test_bin(), sim, us) == 0);
    int rc = mr_test_sh(
        "%s - <<'EOF'\n"
        "import h5py, numpy as np\n"
        "s = h5py.File('%s', 'r')\n"
        "assert s['kspace'].dtype == np.complex64 and s['kspace'].shape == (4, 6, 434, 181), s['kspace'].shape\n"
        "ref = s['reconstruction_rss'][:]\n"
        "assert ref.shape == (4, 217, 181) and ref.dtype == np.float32\n"
        "assert abs(s.attrs['max'] - ref.max()) < 1e-3 * ref.max()\n"
        "assert abs(s.attrs['norm'] - np.linalg.norm(ref)) < 1e-4 * np.linalg.norm(ref)\n"
        "hdr = s['ismrmrd_header'][()]\n"
        "assert b'<encodedSpace>' in hdr and b'<x>434</x>' in hdr, hdr[:200]\n"
        "# the fully sampled RSS of the centred IFFT, computed by numpy from the k-space\n"
        "k = s['kspace'][1]\n"
        "img = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(k, axes=(-2, -1)), norm='ortho'), axes=(-2, -1))\n"
        "rss = np.sqrt((abs(img) ** 2).sum(0))[108:325]\n"
        "assert np.linalg.norm(rss - ref[1]) / np.linalg.norm(ref[1]) < 1e-5\n"
        "full = h5py.File('%s', 'r')['reconstruction'][:]\n"
        "assert full.shape == ref.shape and full.dtype == np.float32\n"
        "assert np.linalg.norm(full - ref) / np.linalg.norm(ref) < 1e-6\n"
        "u = h5py.File('%s', 'r')\n"
        "m = u['mask'][:]\n"
        "assert m.dtype == bool and m.shape == (181,), (m.dtype, m.shape)\n"
        "zf = u['reconstruction'][:]\n"
        "psnr = 10 * np.log10(ref.max() ** 2 / ((zf - ref) ** 2).mean())\n"
        "print('zf 4x equispaced psnr', psnr, 'kept', m.sum())\n"
        "assert 18 < psnr < 40\n"
        "EOF",
        mr_test_python(), sim, full, us);
    if (rc) fprintf(stderr, "%s\n", mr_test_output());
    CU_ASSERT(rc == 0);
}

/* A run of mrpipe that must fail: exit 1, every word of `expect` in the message, no output file
 * and no temporary left in the output directory. */
static void expect_failure(const char *args, const char *out_name, const char *const *expect)
{
    const char *dir = mr_test_tmpdir();
    int rc = mr_test_sh("%s %s", mr_test_bin(), args);
    if (rc != 1) fprintf(stderr, "expected exit 1 from '%s', got %d: %s\n", args, rc, mr_test_output());
    CU_ASSERT(rc == 1);
    for (const char *const *e = expect; *e; e++) {
        if (!strstr(mr_test_output(), *e))
            fprintf(stderr, "message for '%s' lacks '%s': %s\n", args, *e, mr_test_output());
        CU_ASSERT(strstr(mr_test_output(), *e) != NULL);
    }
    if (out_name) CU_ASSERT(access(mr_test_path(out_name), F_OK) != 0);
    CU_ASSERT(mr_test_count_files(dir, ".partial") == 0);
}

static void make_h5(const char *name, const char *python_body)
{
    int rc = mr_test_sh("%s - <<'EOF'\nimport h5py, numpy as np\nf = h5py.File('%s', 'w')\n%s\n"
                        "f.close()\nEOF",
                        mr_test_python(), mr_test_path(name), python_body);
    if (rc) fprintf(stderr, "%s\n", mr_test_output());
    CU_ASSERT_FATAL(rc == 0);
}

static void test_bad_inputs(void)
{
    char args[8192];
    const char *o = "bad_out.h5";
    char out[4096];
    snprintf(out, sizeof out, "%s", mr_test_path(o)); /* mr_test_path's buffers rotate */
    /* missing file */
    snprintf(args, sizeof args, "recon --input %s --output %s", mr_test_path("nope.h5"), out);
    expect_failure(args, o, (const char *const[]){"nope.h5", "No such file", NULL});
    /* truncated HDF5 */
    make_h5("good.h5", "f['kspace'] = (np.ones((2, 3, 16, 12)) + 1j).astype(np.complex64)");
    CU_ASSERT_FATAL(mr_test_sh("head -c 1500 %s > %s", mr_test_path("good.h5"),
                               mr_test_path("trunc.h5")) == 0);
    snprintf(args, sizeof args, "recon --input %s --output %s", mr_test_path("trunc.h5"), out);
    expect_failure(args, o, (const char *const[]){"trunc.h5", "HDF5", NULL});
    /* no kspace */
    make_h5("nok.h5", "f['reconstruction_rss'] = np.ones((2, 8, 8), np.float32)");
    snprintf(args, sizeof args, "recon --input %s --output %s", mr_test_path("nok.h5"), out);
    expect_failure(args, o, (const char *const[]){"nok.h5", "kspace", NULL});
    /* wrong rank */
    make_h5("rank.h5", "f['kspace'] = np.ones((16, 12), np.complex64)");
    snprintf(args, sizeof args, "recon --input %s --output %s", mr_test_path("rank.h5"), out);
    expect_failure(args, o, (const char *const[]){"rank.h5", "kspace", "rank", NULL});
    /* non-complex dtype */
    make_h5("real.h5", "f['kspace'] = np.ones((2, 3, 16, 12), np.float32)");
    snprintf(args, sizeof args, "recon --input %s --output %s", mr_test_path("real.h5"), out);
    expect_failure(args, o, (const char *const[]){"real.h5", "kspace", "complex", NULL});
    /* NaN in k-space */
    make_h5("nan.h5", "k = np.ones((2, 3, 16, 12), np.complex64); k[1, 2, 3, 4] = np.nan\n"
                      "f['kspace'] = k");
    snprintf(args, sizeof args, "recon --input %s --output %s", mr_test_path("nan.h5"), out);
    expect_failure(args, o, (const char *const[]){"nan.h5", "NaN", "slice 1", NULL});
    /* Inf in k-space */
    make_h5("inf.h5", "k = np.ones((2, 3, 16, 12), np.complex64); k[0, 0, 0, 0] = np.inf\n"
                      "f['kspace'] = k");
    snprintf(args, sizeof args, "recon --input %s --output %s", mr_test_path("inf.h5"), out);
    expect_failure(args, o, (const char *const[]){"inf.h5", "Inf", NULL});
    /* mask of the wrong length */
    make_h5("mask.h5", "f['kspace'] = np.ones((2, 3, 16, 12), np.complex64)\n"
                       "f['mask'] = np.ones(10, bool)");
    snprintf(args, sizeof args, "recon --input %s --output %s", mr_test_path("mask.h5"), out);
    expect_failure(args, o, (const char *const[]){"mask.h5", "mask", "10", "12", NULL});
    /* .hdr dims that overflow */
    CU_ASSERT_FATAL(mr_test_sh("cd %s && printf '# Dimensions\\n4294967296 4294967296 4294967296 1\\n' "
                               "> big.hdr && head -c 64 /dev/zero > big.cfl",
                               mr_test_tmpdir()) == 0);
    snprintf(args, sizeof args, "recon --input %s --output %s", mr_test_path("big.cfl"), out);
    expect_failure(args, o, (const char *const[]){"big", NULL});
    /* .hdr dims that disagree with the .cfl size */
    CU_ASSERT_FATAL(mr_test_sh("cd %s && printf '# Dimensions\\n8 8 1 2\\n' > small.hdr && "
                               "head -c 100 /dev/zero > small.cfl",
                               mr_test_tmpdir()) == 0);
    snprintf(args, sizeof args, "recon --input %s --output %s", mr_test_path("small.cfl"), out);
    expect_failure(args, o, (const char *const[]){"small", "1024", "100", NULL});
    /* empty volume for simulate */
    make_h5("dummy.h5", "f['x'] = np.ones(1)");
    CU_ASSERT_FATAL(mr_test_sh("%s -c \"import nibabel as nb, numpy as np; nb.save(nb.Nifti1Image("
                               "np.zeros((8, 8, 4), np.float32), np.eye(4)), '%s')\"",
                               mr_test_python(), mr_test_path("zeros.nii.gz")) == 0);
    snprintf(args, sizeof args, "simulate --input %s --output %s", mr_test_path("zeros.nii.gz"),
             out);
    expect_failure(args, o, (const char *const[]){"zeros.nii.gz", "empty", NULL});
    /* unknown output format, bad option values */
    snprintf(args, sizeof args, "recon --input %s --output %s", mr_test_path("good.h5"),
             mr_test_path("x.txt"));
    expect_failure(args, "x.txt", (const char *const[]){"x.txt", ".h5", NULL});
    snprintf(args, sizeof args, "recon --input %s --output %s --mask equispaced --accel abc",
             mr_test_path("good.h5"), out);
    expect_failure(args, o, (const char *const[]){"--accel", "abc", NULL});
    /* inputs are never modified */
    CU_ASSERT(mr_test_sh("cd %s && sha256sum good.h5 > g.sha && %s recon --input good.h5 "
                         "--output ok.h5 && sha256sum -c g.sha",
                         mr_test_tmpdir(), mr_test_bin()) == 0);
}

int main(void)
{
    const mr_test_case cases[] = {
        {"zf on BART phantom equals bart fft -i -u 3 + rss 8", test_zf_matches_bart},
        {"zf on ISMRMRD Shepp-Logan (oversampled readout) equals numpy", test_zf_ismrmrd},
        {"simulate from ch2 and recon zf, fully and 4x undersampled", test_simulate_and_recon},
        {"bad inputs: message, exit 1, nothing written", test_bad_inputs},
        {NULL, NULL},
    };
    return mr_test_run("recon", cases);
}
