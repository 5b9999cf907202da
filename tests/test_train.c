/*
 * test_train.c: `mrpipe train` and `mrpipe denoise` (docs/models.md).
 *
 *  - a tiny config trains on Colin27 (ch2) and its loss decreases; the run writes the model, the
 *    checkpoint, the log CSV and the curve PNG;
 *  - resume: a run stopped after epoch 1 (--stop-after-epochs) and a run killed with SIGKILL in the
 *    middle, both resumed with --resume, end with weights bit-identical to an uninterrupted run;
 *  - config errors name the key and its line;
 *  - denoise with the shipped model on a held-out validation slab of ch2 (z 20-40 mm, never
 *    trained on) at 5 % Rician noise improves PSNR; shape, affine and units kept; .h5 output;
 *  - DICOM in (pydicom's MR_small.dcm), a derived DICOM series out;
 *  - bad inputs (missing / mis-shaped layer, NaN weights, a complex-input model, an image smaller
 *    than the receptive field, NaN pixels) fail with a clear message, exit 1, nothing written.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hdf5.h>

#include "mr_io.h"
#include "mr_nn.h"
#include "testutil.h"

#define TEMPLATES "/usr/share/mricron/templates"

static int have_data(void) { return mr_path_is_file(TEMPLATES "/ch2.nii.gz"); }

/* A tiny training config: depth 3, 8 channels, 24x24 patches, `epochs` x `steps` steps. */
static const char *tiny_config(const char *name, int epochs, int steps, int batch)
{
    static char text[2048];
    snprintf(text, sizeof text,
             "seed: 5\n"
             "model: {depth: 3, channels: 8}\n"
             "data:\n"
             "  dir: " TEMPLATES "\n"
             "  training: [ch2.nii.gz]\n"
             "  validation:\n"
             "    - {file: ch2.nii.gz, z_mm: [20, 40]}\n"
             "  calibration:\n"
             "    - {file: ch2.nii.gz, z_mm: [-10, 10]}\n"
             "  validation_slices: 2\n"
             "training: {patch: 24, batch: %d, epochs: %d, steps_per_epoch: %d, lr: 0.003,"
             " warmup_steps: 5}\n",
             batch, epochs, steps);
    const char *path = mr_test_path(name);
    mr_test_write_text(path, text);
    return path;
}

/* Rows of train_log.csv: the train_loss column into loss[]; returns the row count. */
static int read_losses(const char *path, double *loss, int max)
{
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    char line[512];
    int n = 0;
    if (!fgets(line, sizeof line, f)) n = 0;
    while (n < max && fgets(line, sizeof line, f)) {
        long e, s;
        if (sscanf(line, "%ld,%ld,%lf", &e, &s, &loss[n]) == 3) n++;
    }
    fclose(f);
    return n;
}

static int models_equal(const char *a, const char *b)
{
    mr_nn_model *ma = NULL, *mb = NULL;
    if (mr_nn_model_load(&ma, a, NULL) != MR_OK) return 0;
    if (mr_nn_model_load(&mb, b, NULL) != MR_OK) {
        mr_nn_model_destroy(ma);
        return 0;
    }
    int eq = ma->nparams == mb->nparams && ma->nbuffers == mb->nbuffers &&
             !memcmp(ma->params, mb->params, ma->nparams * sizeof(float)) &&
             !memcmp(ma->buffers, mb->buffers, ma->nbuffers * sizeof(float));
    mr_nn_model_destroy(ma);
    mr_nn_model_destroy(mb);
    return eq;
}

/* ---------------------------------------------------------------- training */

static char g_tiny_model[4096];

static void test_tiny_training(void)
{
    if (!have_data()) return;
    const char *cfg = tiny_config("tiny.yaml", 4, 40, 4);
    const char *dir = mr_test_path("runA");
    int rc = mr_test_sh("%s train --config %s --output %s", mr_test_bin(), cfg, dir);
    CU_ASSERT_EQUAL(rc, 0);
    if (rc) fprintf(stderr, "%s\n", mr_test_output());
    char p[4200];
    const char *files[] = {"model.h5", "checkpoint.h5", "train_log.csv", "train_curve.png"};
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        CU_ASSERT(mr_path_is_file(p));
    }
    snprintf(p, sizeof p, "%s/train_log.csv", dir);
    double loss[8];
    int n = read_losses(p, loss, 8);
    CU_ASSERT_EQUAL(n, 4);
    if (n == 4) CU_ASSERT(loss[3] < 0.5 * loss[0]);
    /* progress output: epoch, step, loss, validation PSNR, ETA */
    CU_ASSERT_PTR_NOT_NULL(strstr(mr_test_output(), "ETA"));
    CU_ASSERT_PTR_NOT_NULL(strstr(mr_test_output(), "validation PSNR"));
    snprintf(g_tiny_model, sizeof g_tiny_model, "%s/model.h5", dir);
    /* the model file records the normalisation and the split */
    mr_nn_model *m = NULL;
    CU_ASSERT_EQUAL_FATAL(mr_nn_model_load(&m, g_tiny_model, "magnitude"), MR_OK);
    CU_ASSERT_STRING_EQUAL(m->meta.norm_method, "percentile");
    CU_ASSERT_EQUAL(m->meta.n_norm_params, 1);
    CU_ASSERT_DOUBLE_EQUAL(m->meta.norm_params[0], 99.5, 1e-12);
    CU_ASSERT_PTR_NOT_NULL(strstr(m->meta.split, "validation ch2.nii.gz z=[20,40]mm"));
    CU_ASSERT_EQUAL(m->meta.epochs, 4);
    mr_nn_model_destroy(m);
}

static void test_resume_stop(void)
{
    if (!have_data() || !g_tiny_model[0]) return;
    const char *cfg = mr_test_path("tiny.yaml");
    const char *dir = mr_test_path("runB");
    int rc = mr_test_sh("%s train --config %s --output %s --stop-after-epochs 1", mr_test_bin(),
                        cfg, dir);
    CU_ASSERT_EQUAL(rc, 0);
    char p[4200];
    snprintf(p, sizeof p, "%s/model.h5", dir);
    CU_ASSERT(!mr_path_is_file(p)); /* interrupted: no final model */
    rc = mr_test_sh("%s train --config %s --output %s --resume", mr_test_bin(), cfg, dir);
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(mr_test_output(), "resuming from"));
    CU_ASSERT(models_equal(p, g_tiny_model));
    double loss[8];
    snprintf(p, sizeof p, "%s/train_log.csv", dir);
    CU_ASSERT_EQUAL(read_losses(p, loss, 8), 4);
}

static void test_resume_kill(void)
{
    if (!have_data()) return;
    /* epochs long enough (a few tenths of a second) to be killed in the middle of the run */
    const char *cfg = tiny_config("kill.yaml", 4, 150, 8);
    const char *ref = mr_test_path("killRef"), *dir = mr_test_path("killRun");
    CU_ASSERT_EQUAL_FATAL(
        mr_test_sh("%s train --config %s --output %s", mr_test_bin(), cfg, ref), 0);
    /* SIGKILL once epoch 1's row is in the log (its checkpoint is written before it) */
    int rc = mr_test_sh("%s train --config %s --output %s >/dev/null 2>&1 & p=$!; "
                        "for i in $(seq 1 3000); do grep -q '^1,' %s/train_log.csv 2>/dev/null "
                        "&& break; sleep 0.01; done; kill -9 $p; wait $p; echo status=$?",
                        mr_test_bin(), cfg, dir, dir);
    CU_ASSERT_EQUAL(rc, 0);
    int killed = strstr(mr_test_output(), "status=137") != NULL;
    char p[4200], r[4200];
    snprintf(p, sizeof p, "%s/model.h5", dir);
    snprintf(r, sizeof r, "%s/model.h5", ref);
    CU_ASSERT(killed); /* the run was killed before its end */
    if (killed) CU_ASSERT(!mr_path_is_file(p));
    CU_ASSERT_EQUAL(mr_test_sh("%s train --config %s --output %s --resume", mr_test_bin(), cfg, dir),
                    0);
    CU_ASSERT(models_equal(p, r));
    CU_ASSERT_EQUAL(mr_test_count_files(dir, ".partial"), 0);
}

static void test_config_errors(void)
{
    const char *cfg = mr_test_path("bad1.yaml");
    mr_test_write_text(cfg, "seed: 1\n"
                    "data:\n"
                    "  training: [ch2.nii.gz]\n"
                    "  validation:\n"
                    "    - {file: inia19-t1-brain.nii.gz}\n"
                    "training:\n"
                    "  patch: 40\n"
                    "  bacth: 16\n");
    CU_ASSERT_EQUAL(mr_test_sh("%s train --config %s --output %s", mr_test_bin(), cfg,
                               mr_test_path("badrun")),
                    1);
    CU_ASSERT_PTR_NOT_NULL(strstr(mr_test_output(), "line 8"));
    CU_ASSERT_PTR_NOT_NULL(strstr(mr_test_output(), "training.bacth"));
    CU_ASSERT_PTR_NOT_NULL(strstr(mr_test_output(), "unknown key"));

    cfg = mr_test_path("bad2.yaml");
    mr_test_write_text(cfg, "data:\n"
                    "  training: [ch2.nii.gz]\n"
                    "  validation:\n"
                    "    - {file: inia19-t1-brain.nii.gz}\n"
                    "training:\n"
                    "  patch: -3\n");
    CU_ASSERT_EQUAL(mr_test_sh("%s train --config %s --output %s", mr_test_bin(), cfg,
                               mr_test_path("badrun")),
                    1);
    CU_ASSERT_PTR_NOT_NULL(strstr(mr_test_output(), "line 6"));
    CU_ASSERT_PTR_NOT_NULL(strstr(mr_test_output(), "training.patch"));

    /* a held-out whole volume that is also a training volume: one slice in two sets */
    cfg = mr_test_path("bad3.yaml");
    mr_test_write_text(cfg, "data:\n"
                    "  training: [ch2.nii.gz]\n"
                    "  validation:\n"
                    "    - {file: ch2.nii.gz}\n");
    CU_ASSERT_EQUAL(mr_test_sh("%s train --config %s --output %s", mr_test_bin(), cfg,
                               mr_test_path("badrun")),
                    1);
    CU_ASSERT_PTR_NOT_NULL(strstr(mr_test_output(), "line 3"));
    CU_ASSERT_PTR_NOT_NULL(strstr(mr_test_output(), "needs a z_mm slab"));

    /* patch smaller than the receptive field */
    cfg = mr_test_path("bad4.yaml");
    mr_test_write_text(cfg, "model: {depth: 10}\n"
                    "data:\n"
                    "  training: [ch2.nii.gz]\n"
                    "  validation:\n"
                    "    - {file: inia19-t1-brain.nii.gz}\n"
                    "training: {patch: 16}\n");
    CU_ASSERT_EQUAL(mr_test_sh("%s train --config %s --output %s", mr_test_bin(), cfg,
                               mr_test_path("badrun")),
                    1);
    CU_ASSERT_PTR_NOT_NULL(strstr(mr_test_output(), "receptive field 21"));
    CU_ASSERT(!mr_path_is_dir(mr_test_path("badrun")));
}

/* ---------------------------------------------------------------- denoise */

/* The shipped model (mr_data_path), or NULL before it exists. */
static const char *shipped_model(void)
{
    static char p[4096];
    if (mr_data_path(p, sizeof p, "models/denoiser_blind.h5") != MR_OK) return NULL;
    return p;
}

static double psnr(const float *ref, const float *x, size_t n, double maxval)
{
    double mse = 0;
    for (size_t i = 0; i < n; i++) mse += ((double)ref[i] - x[i]) * ((double)ref[i] - x[i]);
    return 10 * log10(maxval * maxval / (mse / (double)n));
}

/* Clean and noisy (5 % Rician of max) NIfTI slabs of ch2, z = 24..27 mm (in the validation slab
 * [20, 40] mm). */
static void make_validation_pair(const char *clean_path, const char *noisy_path, double *maxval)
{
    mr_array *vol = NULL, *slab = NULL;
    mr_nifti_meta meta;
    CU_ASSERT_EQUAL_FATAL(mr_nifti_read(&vol, &meta, TEMPLATES "/ch2.nii.gz"), MR_OK);
    size_t H = vol->dims[1], W = vol->dims[2], k0 = 95, S = 4; /* z = k - 71 mm */
    size_t dims[3] = {S, H, W};
    CU_ASSERT_EQUAL_FATAL(mr_array_create(&slab, MR_FLOAT32, 3, dims), MR_OK);
    memcpy(mr_array_f32(slab), mr_array_f32(vol) + k0 * H * W, S * H * W * sizeof(float));
    meta.affine[2][3] += (double)k0 * meta.affine[2][2];
    *maxval = 0;
    float *c = mr_array_f32(slab);
    for (size_t i = 0; i < S * H * W; i++)
        if (c[i] > *maxval) *maxval = c[i];
    CU_ASSERT_EQUAL_FATAL(mr_nifti_write(clean_path, slab, &meta), MR_OK);
    mr_test_rng r;
    mr_test_rng_init(&r, 77);
    double sigma = 0.05 * *maxval;
    for (size_t i = 0; i < S * H * W; i++) {
        double re = c[i] + sigma * mr_test_randn(&r), im = sigma * mr_test_randn(&r);
        c[i] = (float)sqrt(re * re + im * im);
    }
    CU_ASSERT_EQUAL_FATAL(mr_nifti_write(noisy_path, slab, &meta), MR_OK);
    mr_array_destroy(slab);
    mr_array_destroy(vol);
}

static void test_denoise_quality(void)
{
    const char *model = shipped_model();
    if (!have_data() || !model) {
        fprintf(stderr, "(shipped model not found: skipped) ");
        return;
    }
    const char *clean = mr_test_path("clean.nii.gz"), *noisy = mr_test_path("noisy.nii.gz"),
               *out = mr_test_path("den.nii.gz"), *outh5 = mr_test_path("den.h5");
    double maxval;
    make_validation_pair(clean, noisy, &maxval);
    /* no --model: the shipped model through the data root, whatever the current directory */
    int rc = mr_test_sh("cd / && %s denoise --input %s --output %s", mr_test_bin(), noisy, out);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    mr_array *a = NULL, *b = NULL, *d = NULL;
    mr_nifti_meta ma, md;
    CU_ASSERT_EQUAL_FATAL(mr_nifti_read(&a, NULL, clean), MR_OK);
    CU_ASSERT_EQUAL_FATAL(mr_nifti_read(&b, &ma, noisy), MR_OK);
    CU_ASSERT_EQUAL_FATAL(mr_nifti_read(&d, &md, out), MR_OK);
    CU_ASSERT_EQUAL(d->ndim, 3);
    for (int i = 0; i < 3; i++) CU_ASSERT_EQUAL(d->dims[i], b->dims[i]);
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) CU_ASSERT_DOUBLE_EQUAL(md.affine[i][j], ma.affine[i][j], 1e-6);
    size_t n = mr_array_numel(a);
    double pn = psnr(mr_array_f32(a), mr_array_f32(b), n, maxval),
           pd = psnr(mr_array_f32(a), mr_array_f32(d), n, maxval);
    fprintf(stderr, "(noisy %.2f dB, denoised %.2f dB) ", pn, pd);
    CU_ASSERT(pd > pn + 3.0);
    /* .h5 output: `reconstruction`, same shape, same values as the NIfTI output */
    CU_ASSERT_EQUAL(mr_test_sh("%s denoise --input %s --output %s", mr_test_bin(), noisy, outh5),
                    0);
    mr_array *h = NULL;
    CU_ASSERT_EQUAL_FATAL(mr_image_load(&h, NULL, 0, outh5, 0), MR_OK);
    CU_ASSERT_EQUAL(mr_array_numel(h), n);
    if (mr_array_numel(h) == n)
        CU_ASSERT(!memcmp(mr_array_f32(h), mr_array_f32(d), n * sizeof(float)));
    mr_array_destroy(h);
    mr_array_destroy(a);
    mr_array_destroy(b);
    mr_array_destroy(d);
}

/* Expect `mrpipe denoise` to fail with exit 1, a message containing `needle`, no output. */
static void expect_fail(const char *input, const char *model, const char *needle)
{
    const char *out = mr_test_path("fail_out.nii.gz");
    remove(out);
    int rc = model ? mr_test_sh("%s denoise --input %s --output %s --model %s", mr_test_bin(),
                                input, out, model)
                   : mr_test_sh("%s denoise --input %s --output %s", mr_test_bin(), input, out);
    CU_ASSERT_EQUAL(rc, 1);
    if (!strstr(mr_test_output(), needle))
        fprintf(stderr, "\nexpected '%s' in: %s\n", needle, mr_test_output());
    CU_ASSERT_PTR_NOT_NULL(strstr(mr_test_output(), needle));
    CU_ASSERT(!mr_path_is_file(out));
    CU_ASSERT_EQUAL(mr_test_count_files(mr_test_tmpdir(), ".partial"), 0);
}

static void write_image(const char *path, size_t s, size_t h, size_t w, float nan_at)
{
    size_t dims[3] = {s, h, w};
    mr_array *a = NULL;
    CU_ASSERT_EQUAL_FATAL(mr_array_create(&a, MR_FLOAT32, 3, dims), MR_OK);
    float *x = mr_array_f32(a);
    for (size_t i = 0; i < s * h * w; i++) x[i] = (float)(i % 17);
    if (nan_at >= 0) x[(size_t)nan_at] = NAN;
    CU_ASSERT_EQUAL_FATAL(mr_nifti_write(path, a, NULL), MR_OK);
    mr_array_destroy(a);
}

static void test_denoise_bad_input(void)
{
    if (!g_tiny_model[0]) return;
    const char *img = mr_test_path("ok.nii.gz"), *small = mr_test_path("small.nii.gz"),
               *nanimg = mr_test_path("nan.nii.gz");
    write_image(img, 2, 40, 36, -1);
    write_image(small, 1, 5, 40, -1);
    write_image(nanimg, 2, 40, 36, 40 * 36 + 3 * 36 + 5);
    /* the tiny model works on the good image */
    CU_ASSERT_EQUAL(mr_test_sh("%s denoise --input %s --output %s --model %s", mr_test_bin(), img,
                               mr_test_path("ok_out.nii.gz"), g_tiny_model),
                    0);
    expect_fail(small, g_tiny_model, "receptive field");
    expect_fail(nanimg, g_tiny_model, "slice 1, row 3, column 5");
    expect_fail(img, mr_test_path("missing.h5"), "missing.h5");
    expect_fail(mr_test_path("nothere.nii"), g_tiny_model, "nothere.nii");

    /* a model with a missing layer dataset */
    const char *m1 = mr_test_path("m_missing.h5");
    CU_ASSERT_EQUAL(mr_test_sh("cp %s %s", g_tiny_model, m1), 0);
    hid_t f = H5Fopen(m1, H5F_ACC_RDWR, H5P_DEFAULT);
    CU_ASSERT(f >= 0);
    CU_ASSERT(H5Ldelete(f, "layer01/bn_weight", H5P_DEFAULT) >= 0);
    H5Fclose(f);
    expect_fail(img, m1, "layer01/bn_weight");

    /* mis-shaped layer, NaN weights, a complex-input model: written through the engine */
    mr_nn_model *m = NULL;
    CU_ASSERT_EQUAL_FATAL(mr_nn_model_load(&m, g_tiny_model, "magnitude"), MR_OK);
    m->params[m->layers[1].weight + 3] = NAN;
    const char *m2 = mr_test_path("m_nan.h5");
    if (mr_nn_model_save(m, m2) == MR_OK) expect_fail(img, m2, "m_nan.h5");
    mr_nn_model_destroy(m);

    mr_nn_arch arch = mr_nn_arch_default(3, 8);
    arch.in_channels = 2;
    CU_ASSERT_EQUAL_FATAL(mr_nn_model_create(&m, &arch), MR_OK);
    mr_nn_model_init_he(m, 1);
    snprintf(m->meta.input_type, sizeof m->meta.input_type, "complex");
    const char *m3 = mr_test_path("m_complex.h5");
    CU_ASSERT_EQUAL(mr_nn_model_save(m, m3), MR_OK);
    mr_nn_model_destroy(m);
    expect_fail(img, m3, "complex");

    arch = mr_nn_arch_default(4, 8); /* another depth saved, then layer03 reshaped */
    CU_ASSERT_EQUAL_FATAL(mr_nn_model_create(&m, &arch), MR_OK);
    mr_nn_model_init_he(m, 1);
    const char *m4 = mr_test_path("m_shape.h5");
    CU_ASSERT_EQUAL(mr_nn_model_save(m, m4), MR_OK);
    mr_nn_model_destroy(m);
    f = H5Fopen(m4, H5F_ACC_RDWR, H5P_DEFAULT);
    CU_ASSERT(f >= 0);
    CU_ASSERT(H5Ldelete(f, "layer01/conv_weight", H5P_DEFAULT) >= 0);
    hsize_t dims[4] = {8, 4, 3, 3};
    hid_t sp = H5Screate_simple(4, dims, NULL);
    hid_t ds = H5Dcreate2(f, "layer01/conv_weight", H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT,
                          H5P_DEFAULT);
    float zeros[8 * 4 * 9] = {0};
    H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, zeros);
    H5Dclose(ds);
    H5Sclose(sp);
    H5Fclose(f);
    expect_fail(img, m4, "layer01/conv_weight");
}

static void test_denoise_dicom(void)
{
    const char *src = "/usr/lib/python3/dist-packages/pydicom/data/test_files/MR_small.dcm";
    if (!g_tiny_model[0] || !mr_path_is_file(src)) return;
    const char *dir = mr_test_path("dcm_out");
    CU_ASSERT_EQUAL(mr_test_sh("%s denoise --input %s --output %s/ --model %s", mr_test_bin(), src,
                               dir, g_tiny_model),
                    0);
    mr_dicom_set *in = NULL, *out = NULL;
    mr_dicom_volume *vi = NULL, *vo = NULL;
    size_t k;
    CU_ASSERT_EQUAL_FATAL(mr_dicom_set_open(&in, src), MR_OK);
    CU_ASSERT_EQUAL_FATAL(mr_dicom_set_open(&out, dir), MR_OK);
    CU_ASSERT_EQUAL_FATAL(mr_dicom_set_select(&k, out, NULL), MR_OK);
    CU_ASSERT_EQUAL_FATAL(mr_dicom_volume_read(&vo, out, k, 1), MR_OK);
    CU_ASSERT_EQUAL_FATAL(mr_dicom_volume_read(&vi, in, 0, 1), MR_OK);
    CU_ASSERT_PTR_NOT_NULL(strstr(vo->src.series.description, "mrpipe denoise"));
    for (int i = 0; i < 3; i++) CU_ASSERT_EQUAL(vo->data->dims[i], vi->data->dims[i]);
    for (int i = 0; i < 3; i++)
        CU_ASSERT_DOUBLE_EQUAL(vo->src.geom.origin[i], vi->src.geom.origin[i], 1e-3);
    mr_dicom_volume_destroy(vi);
    mr_dicom_volume_destroy(vo);
    mr_dicom_set_close(in);
    mr_dicom_set_close(out);
}

int main(void)
{
    static const mr_test_case cases[] = {
        {"tiny training: loss decreases, files written", test_tiny_training},
        {"resume after --stop-after-epochs = uninterrupted", test_resume_stop},
        {"resume after SIGKILL = uninterrupted", test_resume_kill},
        {"config errors name key and line", test_config_errors},
        {"denoise: shipped model improves PSNR on held-out ch2, geometry kept",
         test_denoise_quality},
        {"denoise: bad inputs", test_denoise_bad_input},
        {"denoise: DICOM in, derived DICOM series out", test_denoise_dicom},
        {NULL, NULL},
    };
    return mr_test_run("train", cases);
}
