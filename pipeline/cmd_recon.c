/*
 * cmd_recon.c: `mrpipe recon`: reconstruct k-space (fastMRI .h5, ISMRMRD .h5, BART .cfl) slice by
 * slice. Methods: zf (zero-filled RSS). Optional retrospective undersampling with a fastMRI or
 * Poisson mask; columns outside the header's acquired phase-encode range are zeroed as fastMRI does.
 */
#include "mr_output.h"
#include "mr_pipeline.h"
#include "mr_recon.h"
#include "mr_train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *USAGE =
    "usage: mrpipe recon --input K --output OUT [--method M] [--lambda L] [--iters N]\n"
    "                    [--sens MAPS.cfl] [--mask TYPE --accel R --center-fraction CF [--seed S]]\n"
    "                    [--uncertainty none|replica|model|both|bootstrap [--replicas N]\n"
    "                     [--uncertainty-output PATH]]\n"
    "\n"
    "  --input K            k-space: fastMRI .h5 (kspace (S,C,H,W) or (S,H,W)), ISMRMRD .h5 or BART\n"
    "                       .cfl (d0=H readout, d1=W, d3=coils, d13=slices)\n"
    "  --output OUT         .h5 (dataset `reconstruction`, float32 (S,H,W) magnitude), .cfl\n"
    "                       (complex64; zf: the RSS with zero imaginary part), .nii/.nii.gz\n"
    "                       (magnitude) or .png (montage of the slices)\n"
    "  --method M           reconstruction method (see the list below)  [zf]\n"
    "  --lambda L           regularisation weight, as BART `pics -r L` (BART's data scaling)\n"
    "  --iters N            iterations  [the method's default]\n"
    "  --sens MAPS.cfl      coil sensitivities (d0=H, d1=W, d3=coils[, d13=slices]) instead of\n"
    "                       estimating them\n"
    "  --mask TYPE          undersample first: random | equispaced | equispaced-fraction | poisson\n"
    "  --accel R            acceleration for --mask  [4]\n"
    "  --center-fraction CF fully sampled centre fraction for --mask  [0.08]\n"
    "  --seed S             mask seed (same seed, same mask as fastMRI)  [0]\n"
    "  --no-prewhiten       do not whiten coil noise with the file's noise scan (ISMRMRD noise\n"
    "                       acquisitions; applied by default for methods other than zf)\n"
    "  --uncertainty U      none | replica | model | both: a per-pixel SD map of the magnitude image\n"
    "                       (docs/uncertainty.md). replica: pseudo-multiple replicas (cost: N extra\n"
    "                       reconstructions); model: the method's calibrated variance network\n"
    "                       (models/METHOD_sigma.h5; one small CNN pass); both: sqrt of the sum of\n"
    "                       the two variances; bootstrap (sense, cs-l1, cs-tv): the variance network\n"
    "                       refitted with a parametric bootstrap of the reconstruction (the method\n"
    "                       run once more on k-space re-simulated from its own image;\n"
    "                       models/METHOD_sigma_bootstrap.h5)  [none]\n"
    "  --uncertainty-model S.h5  the variance network for model/both/bootstrap\n"
    "                       [models/METHOD_sigma.h5, models/METHOD_sigma_bootstrap.h5]\n"
    "  --replicas N         replicas for --uncertainty replica (N >= 2)  [16]\n"
    "  --replica-threads T  replicas run at once, each in its own method state  [1]\n"
    "  --uncertainty-output PATH  the SD map (any output format; .png: inferno with a colour bar)\n"
    "                       [OUT with _sd before the extension]; .h5 outputs also get an\n"
    "                       `uncertainty` dataset\n"
    "\n"
    "Output size: the header's reconSpace, else the shape of reconstruction_rss/_esc, else the\n"
    "k-space's (readout oversampling is removed by the centre crop; iterative methods remove it in\n"
    "k-space first when the sampling pattern is constant along the readout). Without --mask, the\n"
    "sampling pattern is inferred from the k-space (zeros where nothing was acquired).\n";

typedef struct {
    const char *input, *output, *method, *mask_type, *sens;
    double accel, cf, lambda;
    long seed, iters;
    int has_lambda;
    int no_prewhiten;
    /* uncertainty (issue 6) */
    const char *uncertainty, *unc_output, *unc_model;
    int unc_net; /* model or both */
    long replicas, replica_threads;
    int unc_replica;
    int unc_boot; /* --uncertainty bootstrap: the variance network refitted with the bootstrap map */
} recon_opts;

static int parse(recon_opts *o, int argc, char **argv)
{
    const char *v;
    mr_status st;
    o->method = "zf";
    o->accel = 4;
    o->cf = 0.08;
    o->seed = 0;
    o->uncertainty = "none";
    o->replicas = 16;
    o->replica_threads = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(USAGE, stdout);
            printf("\nmethods:\n");
            for (const mr_recon_method *const *m = mr_recon_methods; *m; m++)
                printf("  %-8s %s\n", (*m)->name, (*m)->summary);
            return -1;
        } else if (mr_opt_value(&v, "--input", argc, argv, &i)) o->input = v;
        else if (mr_opt_value(&v, "--output", argc, argv, &i)) o->output = v;
        else if (mr_opt_value(&v, "--method", argc, argv, &i)) o->method = v;
        else if (mr_opt_value(&v, "--mask", argc, argv, &i)) o->mask_type = v;
        else if (mr_opt_value(&v, "--accel", argc, argv, &i)) {
            if ((st = mr_parse_double(&o->accel, "--accel", v, 1.0, 1e6)) != MR_OK)
                return mr_cli_fail("recon", st);
        } else if (mr_opt_value(&v, "--center-fraction", argc, argv, &i)) {
            if ((st = mr_parse_double(&o->cf, "--center-fraction", v, 0.0, 1.0)) != MR_OK)
                return mr_cli_fail("recon", st);
        } else if (mr_opt_value(&v, "--lambda", argc, argv, &i)) {
            if ((st = mr_parse_double(&o->lambda, "--lambda", v, 0.0, 1e12)) != MR_OK)
                return mr_cli_fail("recon", st);
            o->has_lambda = 1;
        } else if (mr_opt_value(&v, "--iters", argc, argv, &i)) {
            if ((st = mr_parse_long(&o->iters, "--iters", v, 1, 100000)) != MR_OK)
                return mr_cli_fail("recon", st);
        } else if (mr_opt_value(&v, "--sens", argc, argv, &i)) o->sens = v;
        else if (mr_opt_value(&v, "--uncertainty", argc, argv, &i)) o->uncertainty = v;
        else if (mr_opt_value(&v, "--uncertainty-output", argc, argv, &i)) o->unc_output = v;
        else if (mr_opt_value(&v, "--uncertainty-model", argc, argv, &i)) o->unc_model = v;
        else if (mr_opt_value(&v, "--replicas", argc, argv, &i)) {
            if ((st = mr_parse_long(&o->replicas, "--replicas", v, -1000000, 1000000)) != MR_OK)
                return mr_cli_fail("recon", st);
            if (o->replicas < 2)
                return mr_cli_usage_error("recon", "--replicas: expected at least 2 (a standard "
                                                   "deviation needs two replicas), found %ld",
                                          o->replicas);
        } else if (mr_opt_value(&v, "--replica-threads", argc, argv, &i)) {
            if ((st = mr_parse_long(&o->replica_threads, "--replica-threads", v, 1, 256)) != MR_OK)
                return mr_cli_fail("recon", st);
        } else if (!strcmp(argv[i], "--no-prewhiten")) {
            o->no_prewhiten = 1;
            v = argv[i];
        }
        else if (mr_opt_value(&v, "--seed", argc, argv, &i)) {
            if ((st = mr_parse_long(&o->seed, "--seed", v, 0, 4294967295L)) != MR_OK)
                return mr_cli_fail("recon", st);
        } else return mr_cli_usage_error("recon", "unknown option '%s'", argv[i]);
        if (!v) return mr_cli_usage_error("recon", "%s needs a value", argv[i]);
    }
    mr_uq_kind uk; /* bootstrap: the model path, with the bootstrap map as the refit's feature */
    if ((st = mr_uq_kind_parse_boot(&uk, &o->unc_boot, o->uncertainty, "--uncertainty")) != MR_OK)
        return mr_cli_fail("recon", st);
    o->unc_replica = uk == MR_UQ_REPLICA || uk == MR_UQ_BOTH;
    o->unc_net = uk == MR_UQ_MODEL || uk == MR_UQ_BOTH;
    if (o->unc_boot && o->method && !strcmp(o->method, "zf"))
        return mr_cli_usage_error("recon", "--uncertainty bootstrap: method zf has nothing to "
                                  "re-simulate (its image is the data itself); use sense, cs-l1 "
                                  "or cs-tv, or --uncertainty model");
    if ((o->unc_output || o->unc_model) && uk == MR_UQ_NONE)
        return mr_cli_usage_error("recon", "%s needs --uncertainty replica, model or both",
                                  o->unc_output ? "--uncertainty-output" : "--uncertainty-model");
    if (!o->input) return mr_cli_usage_error("recon", "--input is required");
    if (!o->output) return mr_cli_usage_error("recon", "--output is required");
    if (!mr_recon_method_find(o->method)) {
        char names[512] = "";
        for (const mr_recon_method *const *m = mr_recon_methods; *m; m++) {
            strncat(names, names[0] ? ", " : "", sizeof names - strlen(names) - 1);
            strncat(names, (*m)->name, sizeof names - strlen(names) - 1);
        }
        return mr_cli_usage_error("recon", "--method: expected one of %s, found '%s'", names,
                                  o->method);
    }
    return 0;
}

/* Build the (H, W) mask: the pattern, then columns outside [pad_left, pad_right) zeroed. */
static mr_status build_mask(float *mask2d, float *mask1d, const recon_opts *o,
                            const mr_kspace_info *in)
{
    mr_mask_params mp;
    mr_status st;
    uint32_t seed = (uint32_t)o->seed;
    memset(&mp, 0, sizeof mp);
    if ((st = mr_mask_type_parse(&mp.type, o->mask_type)) != MR_OK) return st;
    mp.accel = o->accel;
    mp.center_fraction = o->cf;
    mp.seed = &seed;
    mp.seed_len = 1;
    if ((st = mr_mask_create_2d(mask2d, in->height, in->width, &mp)) != MR_OK) return st;
    for (size_t y = 0; y < in->height; y++)
        for (size_t x = 0; x < in->width; x++)
            if ((long)x < in->pad_left || (long)x >= in->pad_right) mask2d[y * in->width + x] = 0;
    if (mask1d) memcpy(mask1d, mask2d, in->width * sizeof *mask1d); /* row 0 = column pattern */
    return MR_OK;
}

/* Is the (H, W) pattern the same on every row (a 1-D phase-encode mask)? */
static int row_constant(const float *mask, size_t h, size_t w)
{
    for (size_t y = 1; y < h; y++)
        if (memcmp(mask + y * w, mask, w * sizeof *mask) != 0) return 0;
    return 1;
}

/* Noise pre-whitening (recon/noise.c) from the file's noise scan: *wt (C, C) or NULL when the
 * file has none, the method is zf, or --no-prewhiten. */
static mr_status prewhiten_setup(mr_cfloat **wt, mr_kspace_source *src, const recon_opts *o,
                                 const char *method)
{
    const mr_kspace_info *in = mr_kspace_get_info(src);
    mr_array *noise = NULL;
    mr_status st;
    double s2, rmax = 0;
    size_t C = in->coils;
    *wt = NULL;
    if (!in->has_noise) return MR_OK;
    if (o->no_prewhiten || !strcmp(method, "zf")) {
        MR_INFO("noise scan present; pre-whitening off (%s)",
                o->no_prewhiten ? "--no-prewhiten" : "method zf combines by RSS");
        return MR_OK;
    }
    mr_cfloat *psi = mr_malloc(C * C * sizeof *psi);
    *wt = mr_malloc(C * C * sizeof **wt);
    if (!psi || !*wt) st = MR_ERR_NOMEM;
    else st = mr_kspace_read_noise(src, &noise);
    if (st == MR_OK) st = mr_noise_whitener(*wt, psi, &s2, mr_array_c64(noise), noise->dims[0], C);
    if (st == MR_OK) {
        for (size_t a = 0; a < C; a++)
            for (size_t b = 0; b < a; b++) {
                double r = cabsf(psi[a * C + b]) /
                           sqrt((double)crealf(psi[a * C + a]) * crealf(psi[b * C + b]));
                if (r > rmax) rmax = r;
            }
        MR_INFO("noise pre-whitening: %zu noise samples x %zu coils, mean noise std %.3g, largest "
                "coil noise correlation %.2f",
                noise->dims[0], C, sqrt(s2), rmax);
    } else {
        mr_error_prefix(st, "%s: ", o->input);
        free(*wt);
        *wt = NULL;
    }
    free(psi);
    mr_array_destroy(noise);
    return st;
}

/* Noise for --uncertainty replica: *chol (C, C), the Cholesky factor of the coil noise covariance
 * of the data the method sees (the noise scan's Psi, or Wt Psi Wt^H after pre-whitening), or NULL
 * when the file has no noise scan (then estimated per slice from the k-space). */
static mr_status replica_noise_setup(mr_cfloat **chol, mr_kspace_source *src, const recon_opts *o,
                                     const mr_cfloat *wt)
{
    const mr_kspace_info *in = mr_kspace_get_info(src);
    const size_t C = in->coils;
    mr_array *noise = NULL;
    mr_cfloat *psi = NULL, *tmp = NULL;
    mr_status st;
    *chol = NULL;
    if (!in->has_noise) {
        MR_INFO("--uncertainty replica: no noise scan; coil noise estimated per slice from the "
                "outer k-space (docs/uncertainty.md)");
        return MR_OK;
    }
    psi = mr_calloc(C * C, sizeof *psi);
    tmp = mr_calloc(C * C, sizeof *tmp);
    *chol = mr_malloc(C * C * sizeof **chol);
    if (!psi || !tmp || !*chol) st = MR_ERR_NOMEM;
    else st = mr_kspace_read_noise(src, &noise);
    if (st == MR_OK) {
        const mr_cfloat *x = mr_array_c64(noise);
        const size_t n = noise->dims[0];
        for (size_t a = 0; a < C; a++) /* Psi[a][b] = sum_n x_na conj(x_nb) / N, as noise.c */
            for (size_t b = 0; b < C; b++) {
                double complex acc = 0;
                for (size_t s = 0; s < n; s++)
                    acc += (double complex)x[s * C + a] * conj((double complex)x[s * C + b]);
                psi[a * C + b] = (mr_cfloat)(acc / (double)(n ? n : 1));
            }
        if (wt) { /* the whitened data's noise: Wt Psi Wt^H */
            for (size_t a = 0; a < C; a++)
                for (size_t b = 0; b < C; b++) {
                    double complex acc = 0;
                    for (size_t k = 0; k < C; k++) acc += (double complex)wt[a * C + k] * psi[k * C + b];
                    tmp[a * C + b] = (mr_cfloat)acc;
                }
            for (size_t a = 0; a < C; a++)
                for (size_t b = 0; b < C; b++) {
                    double complex acc = 0;
                    for (size_t k = 0; k < C; k++) acc += (double complex)tmp[a * C + k] * conjf(wt[b * C + k]);
                    psi[a * C + b] = (mr_cfloat)acc;
                }
        }
        st = mr_noise_cov_cholesky(*chol, psi, C);
    }
    if (st != MR_OK) {
        mr_error_prefix(st, "%s: --uncertainty replica: ", o->input);
        free(*chol);
        *chol = NULL;
    } else
        MR_INFO("--uncertainty replica: noise covariance from the noise scan (%zu samples)%s",
                noise->dims[0], wt ? ", whitened" : "");
    mr_array_destroy(noise);
    free(psi);
    free(tmp);
    return st;
}

/* Load --sens maps: (S or 1, C, gh, W) complex64 on the reconstruction grid. */
static mr_status load_sens(mr_array **out, const char *path, const mr_kspace_info *in, size_t gh)
{
    mr_status st = mr_cfl_read(out, path);
    const mr_array *a;
    if (st != MR_OK) return st;
    a = *out;
    if (a->dims[1] != in->coils || a->dims[2] != gh || a->dims[3] != in->width ||
        (a->dims[0] != 1 && a->dims[0] != in->slices)) {
        st = mr_error_set(MR_ERR_INPUT,
                          "%s: coil maps of (S, C, H, W) = (%zu, %zu, %zu, %zu); expected (1 or %zu, "
                          "%zu, %zu, %zu) for this k-space",
                          path, a->dims[0], a->dims[1], a->dims[2], a->dims[3], in->slices,
                          in->coils, gh, in->width);
        mr_array_destroy(*out);
        *out = NULL;
    }
    return st;
}

int mr_cmd_recon(int argc, char **argv)
{
    recon_opts o;
    mr_kspace_source *src = NULL;
    const mr_recon_method *method;
    void *state = NULL;
    mr_os_plan *os = NULL;
    mr_array *mag = NULL, *cplx = NULL, *sens = NULL;
    mr_cfloat *wt = NULL; /* (C, C) noise whitening, or NULL */
    mr_cfloat *slice = NULL, *grid = NULL, *image = NULL;
    float *mask2d = NULL, *mask1d = NULL, *pattern = NULL;
    /* --uncertainty replica: SD volume, per-slice SD on the grid, noise Cholesky factor, maps */
    mr_array *unc = NULL;
    void *sigma = NULL; /* --uncertainty model|both: the method's variance network */
    double acq_frac0 = 0; /* sampled fraction of slice 0 (inferred pattern) */
    float *zfvol = NULL;  /* variance networks reading the zero-filled image: (S, h, w) */
    float *gvol = NULL, *gbuf = NULL; /* ... or the unsampled part: (S, h, w), one grid slice */
    mr_zf_plan *zfp = NULL;
    float *sd_grid = NULL;
    float *bvol = NULL, *bgrid = NULL; /* --uncertainty bootstrap: the map (S, h, w); a grid slice */
    mr_cfloat *chol = NULL, *slice_chol = NULL, *psi_est = NULL, *umaps = NULL;
    /* per slice, the coil noise SD estimated from the k-space (image units: orthonormal FFTs):
     * written with .h5 outputs (mrpipe_noise_sd) and used by variance networks' noise term */
    double *nsd = NULL;
    size_t n_nsd_fail = 0;
    /* the column energies of the acquired k-space less its noise, summed over slices: the mask
     * difficulty (mr_mask_difficulty; .h5 attribute mrpipe_mask_difficulty) */
    double *colE = NULL, difficulty = 0;
    mr_status st;
    mr_format ofmt;
    int rc;
    memset(&o, 0, sizeof o);
    if ((rc = parse(&o, argc, argv)) != 0) return rc < 0 ? 0 : rc;
    method = mr_recon_method_find(o.method);
    /* Check the output name before any work. */
    if ((st = mr_output_detect(&ofmt, o.output)) != MR_OK) return mr_cli_fail("recon", st);
    if ((st = mr_kspace_open(&src, o.input)) != MR_OK) return mr_cli_fail("recon", st);
    const mr_kspace_info *in = mr_kspace_get_info(src);
    size_t C = in->coils, H = in->height, W = in->width, chw = C * H * W;
    size_t dims[3] = {in->slices, in->recon_h, in->recon_w};
    size_t hw_out = in->recon_h * in->recon_w;
    MR_INFO("%s: %s k-space, %zu slice(s) x %zu coil(s) x %zu x %zu -> %zu x %zu, method %s",
            o.input, mr_format_name(in->format), in->slices, C, H, W, in->recon_h, in->recon_w,
            method->name);
    st = mr_array_create(&mag, MR_FLOAT32, 3, dims);
    if (st == MR_OK && ofmt == MR_FMT_CFL) st = mr_array_create(&cplx, MR_COMPLEX64, 3, dims);
    if (st == MR_OK && o.unc_net) { /* the variance network, checked before any work */
        char sp[4096], name[64];
        snprintf(name, sizeof name, "models/%s_sigma%s.h5", method->name,
                 o.unc_boot ? "_bootstrap" : "");
        if (o.unc_model) snprintf(sp, sizeof sp, "%s", o.unc_model);
        else if (mr_data_path(sp, sizeof sp, name) != MR_OK) /* not shipped: say which file */
            snprintf(sp, sizeof sp, "%s (in mrpipe's data root)", name);
        if (st == MR_OK) {
            char what[96];
            snprintf(what, sizeof what, "method %s", method->name);
            st = mr_sigma_load(&sigma, sp, what);
        }
        if (st == MR_OK && o.unc_boot != mr_sigma_wants_bootstrap(sigma))
            st = mr_error_set(MR_ERR_INPUT, o.unc_boot ? "%s: not calibrated with the parametric "
                              "bootstrap (no attribute 'calibration_feature_bootstrap'): use it "
                              "with --uncertainty model" : "%s: calibrated with the parametric "
                              "bootstrap: use it with --uncertainty bootstrap", sp);
        if (st == MR_OK && !strcmp(mr_sigma_base(sigma), "zero-filled")) {
            zfvol = malloc(in->slices * hw_out * sizeof *zfvol);
            if (!zfvol) st = mr_error_set(MR_ERR_NOMEM, "recon: out of memory");
        }
        if (st == MR_OK && mr_sigma_wants_mask(sigma)) {
            gvol = malloc(in->slices * hw_out * sizeof *gvol);
            gbuf = malloc(H * W * sizeof *gbuf);
            if (!gvol || !gbuf) st = mr_error_set(MR_ERR_NOMEM, "recon: out of memory");
        }
    }
    if (st == MR_OK && o.unc_boot) { /* bootstrap deviations (S, h, w), a grid slice, maps */
        bvol = malloc(in->slices * hw_out * sizeof *bvol);
        bgrid = malloc((H * W > 2 * hw_out ? H * W : 2 * hw_out) * sizeof *bgrid);
        umaps = mr_malloc_aligned(chw * sizeof *umaps);
        if (!bvol || !bgrid || !umaps) st = mr_error_set(MR_ERR_NOMEM, "recon: out of memory");
    }
    if (st == MR_OK && !o.unc_replica && o.unc_net) {
        mr_format ufmt;
        char upath[4096];
        if (o.unc_output) st = mr_output_detect(&ufmt, o.unc_output);
        else if ((st = mr_output_sd_path(upath, sizeof upath, o.output)) == MR_OK)
            st = mr_output_detect(&ufmt, upath);
        if (st == MR_OK) st = mr_array_create(&unc, MR_FLOAT32, 3, dims);
    }
    if (st == MR_OK && o.unc_replica) {
        mr_format ufmt;
        char upath[4096];
        if (o.unc_output) st = mr_output_detect(&ufmt, o.unc_output);
        else if ((st = mr_output_sd_path(upath, sizeof upath, o.output)) == MR_OK)
            st = mr_output_detect(&ufmt, upath);
        if (st == MR_OK) st = mr_array_create(&unc, MR_FLOAT32, 3, dims);
        if (st == MR_OK) {
            sd_grid = mr_malloc(H * W * sizeof *sd_grid);
            slice_chol = mr_malloc(C * C * sizeof *slice_chol);
            psi_est = mr_malloc(C * C * sizeof *psi_est);
            umaps = strcmp(method->name, "zf") != 0 ? mr_malloc_aligned(chw * sizeof *umaps) : NULL;
            if (!sd_grid || !slice_chol || !psi_est ||
                (!umaps && strcmp(method->name, "zf") != 0))
                st = MR_ERR_NOMEM;
        }
    }
    if (st == MR_OK) {
        slice = mr_malloc_aligned(chw * sizeof *slice);
        grid = mr_malloc_aligned(chw * sizeof *grid);
        image = mr_malloc_aligned(H * W * sizeof *image);
        pattern = mr_malloc(H * W * sizeof *pattern);
        nsd = calloc(in->slices ? in->slices : 1, sizeof *nsd);
        colE = calloc(W ? W : 1, sizeof *colE);
        if (!slice || !grid || !image || !pattern || !nsd || !colE) st = MR_ERR_NOMEM;
    }
    if (st == MR_OK && o.mask_type) {
        mask2d = mr_malloc(H * W * sizeof *mask2d);
        mask1d = mr_malloc(W * sizeof *mask1d);
        if (!mask2d || !mask1d) st = MR_ERR_NOMEM;
        else st = build_mask(mask2d, mask1d, &o, in);
    }
    /* Iterative methods work on the recon readout size when the pattern allows it. */
    size_t gh = H;
    int use_os = strcmp(method->name, "zf") != 0 && in->recon_h < H &&
                 (!mask2d || row_constant(mask2d, H, W));
    if (st == MR_OK && use_os) {
        gh = in->recon_h;
        st = mr_os_plan_create(&os, C, H, W, gh);
    }
    if (st == MR_OK && o.sens) st = load_sens(&sens, o.sens, in, gh);
    if (st == MR_OK) st = prewhiten_setup(&wt, src, &o, method->name);
    if (st == MR_OK && o.unc_replica) st = replica_noise_setup(&chol, src, &o, wt);
    if (st == MR_OK && wt && sens) { /* the model's maps must see the same coil mixing */
        for (size_t s = 0; s < sens->dims[0]; s++)
            mr_noise_whiten(mr_array_c64(sens) + s * C * gh * W, wt, C, gh * W);
        MR_INFO("--sens maps whitened with the noise scan's whitening matrix");
    }
    mr_recon_params rp;
    memset(&rp, 0, sizeof rp);
    if (st == MR_OK) {
        rp.lambda = o.lambda;
        rp.has_lambda = o.has_lambda;
        rp.iters = o.iters;
        rp.seed = (uint32_t)o.seed;
        st = method->create(&state, &rp, C, gh, W);
    }
    for (size_t s = 0; st == MR_OK && s < in->slices; s++) {
        mr_recon_stats stats;
        float *out = mr_array_f32(mag) + s * hw_out;
        const mr_cfloat *k = slice;
        double frac;
        st = mr_kspace_read_slice(src, s, slice);
        if (st != MR_OK) break;
        if (wt) mr_noise_whiten(slice, wt, C, H * W);
        if (mask2d)
            for (size_t i = 0; i < chw; i++)
                if (mask2d[i % (H * W)] == 0.0f) slice[i] = 0.0f; /* +0.0, never -0.0 */
        if (os) {
            if ((st = mr_os_execute(os, grid, slice)) != MR_OK) break;
            k = grid;
        }
        if (mask2d && !os) memcpy(pattern, mask2d, H * W * sizeof *pattern);
        else if (mask2d) memcpy(pattern, mask2d, gh * W * sizeof *pattern); /* row-constant */
        /* zf ignores the pattern: infer it once, for the log */
        int need_pattern = !mask2d && (s == 0 || strcmp(method->name, "zf") != 0 || o.unc_replica ||
                                       o.unc_boot ||
                                       gvol);
        frac = need_pattern ? mr_mask_infer(pattern, k, C, gh, W) : 0;
        if (s == 0) acq_frac0 = frac;
        if (!mask2d && s == 0) MR_INFO("sampling pattern inferred from the k-space: %.1f %% acquired",
                                       100.0 * frac);
        /* the noise SD of the data the method sees (after pre-whitening), as variance networks'
         * calibration measured it (mr_train_degrader_noise_sd); 0 where it cannot be estimated */
        if (mr_noise_sd_estimate(nsd + s, k, (mask2d || need_pattern) ? pattern : NULL, C, gh, W) !=
            MR_OK)
            n_nsd_fail++, mr_error_clear();
        mr_kspace_column_energy_add(colE, k, C, gh, W, nsd[s]);
        const mr_cfloat *maps =
            sens ? mr_array_c64(sens) + (sens->dims[0] == 1 ? 0 : s) * C * gh * W : NULL;
        if ((o.unc_replica || o.unc_boot) && !maps && umaps) {
            /* maps estimated once from the original data and given to every replica, so that
             * replicas differ by noise only (the methods' own ESPIRiT defaults) */
            mr_espirit_params ep;
            mr_espirit_params_default(&ep);
            if ((st = mr_espirit_maps(umaps, k, pattern, C, gh, W, &ep)) != MR_OK) {
                mr_error_prefix(st, "slice %zu: ", s);
                break;
            }
            maps = umaps;
        }
        if (o.unc_boot) { /* each slice in a fresh state, as its bootstrap run: cs-l1's random
                           * wavelet shifts then follow the same sequence in both, so the
                           * deviation is the re-simulation's alone (and a slice's image does not
                           * depend on the slices before it) */
            if ((st = mr_recon_state_renew(method, &state, &rp, C, gh, W)) != MR_OK) break;
        }
        if ((st = method->run(state, image, &stats, k, pattern, maps)) != MR_OK) {
            mr_error_prefix(st, "slice %zu: ", s);
            break;
        }
        if (zfvol && !zfp) st = mr_zf_plan_create(&zfp, C, gh, W, in->recon_h, in->recon_w);
        if (zfvol && st == MR_OK) st = mr_zf_execute(zfp, zfvol + s * hw_out, NULL, k, NULL);
        if (gvol && st == MR_OK) { /* the magnitude's unsampled part, on the grid, then cropped */
            for (size_t p = 0; p < gh * W; p++) gbuf[p] = cabsf(image[p]);
            if ((st = mr_unsampled_part(gbuf, gbuf, pattern, 1, gh, W)) == MR_OK)
                mr_crop_f32(gvol + s * hw_out, in->recon_h, in->recon_w, gbuf, gh, W);
        }
        if (st != MR_OK) break;
        if (!stats.converged)
            MR_WARN("slice %zu: %s did not converge: %ld iterations, residual %.3g", s,
                    method->name, stats.iterations, stats.residual);
        else if (stats.iterations)
            MR_DEBUG("slice %zu: %ld iterations, residual %.3g", s, stats.iterations,
                     stats.residual);
        if (o.unc_replica) { /* pseudo-multiple replicas (recon/replica.c) */
            mr_replica_params rpp = {.replicas = o.replicas, .seed = (uint32_t)o.seed,
                                     .stream = (uint32_t)s, .threads = (int)o.replica_threads,
                                     .rp = &rp};
            const mr_cfloat *ch = chol;
            if (!ch) {
                st = mr_noise_cov_estimate(psi_est, k, pattern, C, gh, W);
                if (st == MR_OK) st = mr_noise_cov_cholesky(slice_chol, psi_est, C);
                ch = slice_chol;
            }
            if (st == MR_OK)
                st = mr_replica_sd(sd_grid, method, state, k, pattern, maps, ch, C, gh, W, &rpp);
            if (st != MR_OK) {
                mr_error_prefix(st, "slice %zu: --uncertainty replica: ", s);
                break;
            }
            mr_crop_f32(mr_array_f32(unc) + s * hw_out, in->recon_h, in->recon_w, sd_grid, gh, W);
        }
        if (o.unc_boot) { /* parametric bootstrap (recon/bootstrap.c): one more run */
            if ((st = mr_bootstrap_dev(bgrid, method, &rp, image, pattern, maps, C, gh, W)) !=
                MR_OK) {
                mr_error_prefix(st, "slice %zu: --uncertainty bootstrap: ", s);
                break;
            }
            float *b = bvol + s * hw_out; /* cropped, then its local RMS in place */
            mr_crop_f32(b, in->recon_h, in->recon_w, bgrid, gh, W);
            mr_sigma_bootstrap_map(b, b, in->recon_h, in->recon_w, bgrid);
        }
        if (cplx) mr_crop_c64(mr_array_c64(cplx) + s * hw_out, in->recon_h, in->recon_w, image, gh, W);
        /* magnitude of the cropped complex image */
        {
            mr_cfloat *tmp = cplx ? mr_array_c64(cplx) + s * hw_out : NULL;
            if (!tmp) {
                mr_crop_c64(slice, in->recon_h, in->recon_w, image, gh, W); /* slice is free now */
                tmp = slice;
            }
            for (size_t p = 0; p < hw_out; p++) out[p] = cabsf(tmp[p]);
        }
    }
    mr_fft_save_wisdom();
    if (st == MR_OK) {
        double m = 0;
        for (size_t s = 0; s < in->slices; s++) m += nsd[s];
        if (n_nsd_fail)
            MR_INFO("coil noise SD: no estimate on %zu of %zu slice(s) (noise-free outer k-space?)",
                    n_nsd_fail, in->slices);
        if (in->slices > n_nsd_fail)
            MR_INFO("coil noise SD estimated from the outer k-space: %.4g (mean over slices)",
                    m / (double)(in->slices - n_nsd_fail));
    }
    /* the mask difficulty, for 1-D phase-encode patterns (given or inferred) */
    if (st == MR_OK && ((mask1d && row_constant(mask2d, H, W)) ||
                        (!mask1d && acq_frac0 > 0 && row_constant(pattern, gh, W)))) {
        if (mr_mask_difficulty(&difficulty, colE, mask1d ? mask1d : pattern, W,
                               o.mask_type ? o.accel : 0) == MR_OK)
            MR_INFO("mask difficulty %.3f: the unacquired columns hold %.3f x the signal energy a "
                    "mask of this acceleration misses on average", difficulty, difficulty);
        else
            MR_WARN("%s", mr_error_message()), mr_error_clear(), difficulty = 0;
    }
    if (st == MR_OK && o.unc_net) { /* model SD of the magnitude volume; both: variances added */
        size_t nv = in->slices * hw_out;
        float *sdm = malloc(nv * sizeof *sdm), *u = mr_array_f32(unc);
        /* the scale at this R and mask kind (networks calibrated per kind; an inferred pattern's
         * first row is its column pattern) */
        const float *cols = mask1d ? mask1d : acq_frac0 > 0 ? pattern : NULL;
        double R = o.mask_type ? o.accel : acq_frac0 > 0 ? 1 / acq_frac0 : 0, df = 1;
        double scale = mr_sigma_scale_full(sigma, NULL, cols, cols ? W : 0, R);
        if (!sdm) st = mr_error_set(MR_ERR_NOMEM, "recon: out of memory");
        if (st == MR_OK)
            st = mr_sigma_volume(sdm, mr_array_f32(mag), zfvol ? zfvol : mr_array_f32(mag), gvol,
                                 bvol, in->slices, in->recon_h, in->recon_w, sigma, scale, o.input);
        if (st == MR_OK) /* the reference's noise (networks with a noise term) */
            mr_sigma_add_noise_term(sdm, mr_array_f32(mag), in->slices, hw_out, sigma, scale, nsd,
                                    (int)C, method->name);
        if (st == MR_OK) /* mrpipe calibrate's factors per relative noise level and difficulty */
            st = mr_sigma_apply_calibrate_factors(sdm, mr_array_f32(mag), in->slices, hw_out,
                                                  in->recon_w, sigma, method->name,
                                                  nsd, cols, cols ? W : 0, R, difficulty, &df);
        if (st == MR_OK && df != 1)
            MR_INFO("--uncertainty %s: mask difficulty factor %.3f", o.uncertainty, df);
        if (st == MR_OK)
            for (size_t i = 0; i < nv; i++)
                u[i] = o.unc_replica ? sqrtf(u[i] * u[i] + sdm[i] * sdm[i]) : sdm[i];
        free(sdm);
        if (st == MR_OK) MR_INFO("--uncertainty %s: model SD calibration: %s", o.uncertainty,
                                 mr_sigma_calibration(sigma));
    }
    if (st == MR_OK) {
        mr_output_extra extra;
        mr_fastmri_file *fm = mr_kspace_fastmri(src);
        memset(&extra, 0, sizeof extra);
        extra.method = o.method;
        extra.header_xml = in->header_xml;
        if (fm) extra.acquisition = mr_fastmri_get_info(fm)->acquisition;
        if (mask1d && o.mask_type && strcmp(o.mask_type, "poisson") != 0) {
            extra.mask = mask1d;
            extra.mask_len = in->width;
        }
        extra.uncertainty = unc;
        if (in->slices > n_nsd_fail) extra.noise_sd = nsd, extra.n_noise_sd = in->slices;
        extra.coils = (int)C;
        extra.mask_difficulty = difficulty;
        st = mr_output_write_volume(o.output, mag, cplx, &extra);
        if (st == MR_OK && unc) {
            char upath[4096];
            const char *up = o.unc_output;
            if (!up && (st = mr_output_sd_path(upath, sizeof upath, o.output)) == MR_OK) up = upath;
            extra.uncertainty = NULL;
            if (st == MR_OK) st = mr_output_write_uncertainty(up, unc, o.uncertainty, &extra);
            if (st == MR_OK && o.unc_replica)
                MR_INFO("wrote %s (%s SD, %ld replicas)", up, o.uncertainty, o.replicas);
            else if (st == MR_OK)
                MR_INFO("wrote %s (%s SD)", up, o.unc_boot ? "bootstrap" : "model");
        }
    }
    rc = st == MR_OK ? 0 : mr_cli_fail("recon", st);
    if (st == MR_OK) MR_INFO("wrote %s", o.output);
    if (state) method->destroy(state);
    mr_os_plan_destroy(os);
    mr_kspace_close(src);
    mr_array_destroy(mag);
    mr_array_destroy(cplx);
    mr_array_destroy(sens);
    mr_array_destroy(unc);
    mr_sigma_free(sigma);
    free(zfvol), free(gvol), free(gbuf);
    mr_zf_plan_destroy(zfp);
    free(sd_grid);
    free(bvol), free(bgrid);
    free(chol);
    free(slice_chol);
    free(psi_est);
    free(nsd);
    free(colE);
    mr_free_aligned(umaps);
    free(wt);
    mr_free_aligned(slice);
    mr_free_aligned(grid);
    mr_free_aligned(image);
    free(pattern);
    free(mask2d);
    free(mask1d);
    return rc;
}
