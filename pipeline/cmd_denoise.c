/*
 * cmd_denoise.c: `mrpipe denoise --input IN --output OUT [--model M]`: the learned residual-CNN
 * denoiser (DnCNN family; docs/models.md) on a magnitude volume, whole slices, slice by slice, one
 * inference plan (BN folded, workspace sized once).
 *
 * Inputs: NIfTI, fastMRI-layout .h5 (the `reconstruction` dataset first, then
 * reconstruction_rss/_esc; FILE.h5:NAME picks one), BART .cfl (magnitude), or a DICOM series (a
 * file or folder). Outputs by extension (.nii/.nii.gz, .h5 with `reconstruction`, .cfl, .png) or a
 * folder (a derived DICOM series "... mrpipe denoise"). The output keeps the input's shape, its
 * NIfTI affine or DICOM geometry, and its intensity units (the model's percentile normalisation is
 * undone). Without --model: the shipped models/denoiser_blind.h5 from mrpipe's data root (never the
 * current directory). Every check (model file, image size, NaN pixels) happens before anything is
 * written; on error nothing is written.
 */
#include "mr_io.h"
#include "mr_nn.h"
#include "mr_output.h"
#include "mr_pipeline.h"
#include "mr_train.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *USAGE =
    "usage: mrpipe denoise --input IN --output OUT [--model M.h5]\n"
    "                      [--uncertainty none|model|replica|both|bootstrap]\n"
    "                      [--uncertainty-model S.h5]\n"
    "                      [--replicas N] [--uncertainty-output PATH] [--seed S]\n"
    "                      [--series UID[:echoN]] [--accel R]\n"
    "\n"
    "  --input IN    NIfTI (.nii/.nii.gz), fastMRI .h5 (reconstruction, else reconstruction_rss,\n"
    "                else reconstruction_esc; IN.h5:NAME picks a dataset), BART .cfl, or DICOM\n"
    "                (a file or a folder holding one series)\n"
    "  --output OUT  .nii/.nii.gz, .h5 (dataset `reconstruction`), .cfl, .png, or a folder (a\n"
    "                derived DICOM series, description \"<source> mrpipe denoise\")\n"
    "  --model M.h5  a model written by `mrpipe train` [the shipped models/denoiser_blind.h5]\n"
    "  --uncertainty U  the per-pixel SD map written with the image (docs/uncertainty.md)  [model]\n"
    "                model: the model's calibrated variance network (one extra small pass);\n"
    "                replica: noise re-injected at the estimated level, N denoisings;\n"
    "                both: sqrt(var_model + var_replica); none: no map;\n"
    "                bootstrap (models that clean a reconstruction: an mrpipe .h5 input with its\n"
    "                mask and method): model, combined with the model's parametric bootstrap\n"
    "                (its output's k-space re-run through the input's method and the model:\n"
    "                one more reconstruction and model pass per slice); .h5 outputs also hold\n"
    "                the bootstrap map as `bootstrap_sd`\n"
    "  --uncertainty-model S.h5  the variance network [M's NAME_sigma.h5 beside M]\n"
    "  --replicas N  replicas for replica/both (N >= 2)  [8]\n"
    "  --uncertainty-output PATH  the SD map, any output format [OUT with _sd before the\n"
    "                extension; a DICOM folder gets its own linked series; .h5 outputs also\n"
    "                hold it as `uncertainty`]\n"
    "  --seed S      seed of the replica noise  [0]\n"
    "  --series UID  the DICOM series (or volume, UID:echo2) when the input holds several\n"
    "  --accel R     the input is a reconstruction of R-fold undersampled k-space: the SD scale\n"
    "                calibrated for R (variance networks calibrated per acceleration)\n"
    "\n"
    "Slice by slice over the last two axes (whole slices, no tiles). The input is divided by the\n"
    "model's percentile level of the whole volume and the output multiplied back: the output has\n"
    "the input's shape, geometry and intensity units.\n";

int mr_cmd_denoise(int argc, char **argv)
{
    const char *in = NULL, *out = NULL, *model = NULL, *v = NULL, *uq = "model", *uq_model = NULL,
               *uq_out = NULL, *series = NULL;
    long replicas = 8, seed = 0;
    double accel = 0;
    int uq_explicit = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(USAGE, stdout);
            return 0;
        } else if (mr_opt_value(&v, "--input", argc, argv, &i))
            in = v;
        else if (mr_opt_value(&v, "--output", argc, argv, &i))
            out = v;
        else if (mr_opt_value(&v, "--model", argc, argv, &i))
            model = v;
        else if (mr_opt_value(&v, "--uncertainty", argc, argv, &i))
            uq = v, uq_explicit = 1;
        else if (mr_opt_value(&v, "--uncertainty-model", argc, argv, &i))
            uq_model = v;
        else if (mr_opt_value(&v, "--uncertainty-output", argc, argv, &i))
            uq_out = v;
        else if (mr_opt_value(&v, "--series", argc, argv, &i))
            series = v;
        else if (mr_opt_value(&v, "--accel", argc, argv, &i)) {
            mr_status pst = v ? mr_parse_double(&accel, "--accel", v, 1, 64) : MR_OK;
            if (pst != MR_OK) return mr_cli_fail("denoise", pst);
        }
        else if (mr_opt_value(&v, "--replicas", argc, argv, &i)) {
            mr_status pst = v ? mr_parse_long(&replicas, "--replicas", v, -1000000, 1000000) : MR_OK;
            if (pst != MR_OK) return mr_cli_fail("denoise", pst);
            if (v && replicas < 2)
                return mr_cli_usage_error("denoise", "--replicas: expected at least 2 (a standard "
                                          "deviation needs two replicas), found %ld", replicas);
        } else if (mr_opt_value(&v, "--seed", argc, argv, &i)) {
            mr_status pst = v ? mr_parse_long(&seed, "--seed", v, 0, 0x7fffffffL) : MR_OK;
            if (pst != MR_OK) return mr_cli_fail("denoise", pst);
        } else
            return mr_cli_usage_error("denoise", "unknown option '%s'", argv[i]);
        if (!v) return mr_cli_usage_error("denoise", "%s needs a value", argv[i]);
    }
    if (!in) return mr_cli_usage_error("denoise", "--input is required");
    if (!out) return mr_cli_usage_error("denoise", "--output is required");
    mr_uq_kind kind;
    int boot; /* the model path, with the model's bootstrap map */
    {
        mr_status pst = mr_uq_kind_parse_boot(&kind, &boot, uq, "--uncertainty");
        if (pst != MR_OK) return mr_cli_fail("denoise", pst);
    }
    if (kind == MR_UQ_NONE && (uq_out || uq_model))
        return mr_cli_usage_error("denoise", "%s needs --uncertainty model, replica or both",
                                  uq_out ? "--uncertainty-output" : "--uncertainty-model");

    char model_path[4096], desc[512] = "", derivation[600];
    mr_nn_model *m = NULL;
    void *sigma = NULL;
    mr_array *img = NULL, *sd = NULL, *in_sd = NULL; /* in_sd: the input's own SD map */
    mr_array *bmap = NULL; /* --uncertainty bootstrap: the model's bootstrap map */
    char sd_path[4096] = "";
    float *mask = NULL; /* the input's sampling mask (mrpipe .h5 reconstructions) */
    size_t mask_len = 0;
    char fi_method[64] = ""; /* the input's reconstruction method (mrpipe .h5: mrpipe_method) */
    double *fi_noise = NULL; /* per slice, its k-space noise SD (mrpipe .h5: mrpipe_noise_sd) */
    double fi_difficulty = 0; /* its mask difficulty (mrpipe .h5: mrpipe_mask_difficulty) */
    int fi_coils = 0;        /* its receive coils (mrpipe .h5: mrpipe_coils) */
    mr_dicom_set *set = NULL;
    mr_dicom_volume *dvol = NULL;
    mr_nifti_meta meta;
    mr_output_extra extra;
    mr_format ifmt = MR_FMT_UNKNOWN, ofmt;
    int have_meta = 0;
    memset(&meta, 0, sizeof meta);
    memset(&extra, 0, sizeof extra);
    mr_status st = mr_output_detect(&ofmt, out);
    if (st != MR_OK) goto fail;
    if (model)
        snprintf(model_path, sizeof model_path, "%s", model);
    else if ((st = mr_data_path(model_path, sizeof model_path, "models/denoiser_blind.h5")) !=
             MR_OK)
        goto fail;
    if ((st = mr_nn_model_load(&m, model_path, "magnitude")) != MR_OK) goto fail;
    if (kind == MR_UQ_MODEL || kind == MR_UQ_BOTH) {
        char sp[4096];
        if (uq_model)
            snprintf(sp, sizeof sp, "%s", uq_model);
        else if ((st = (boot ? mr_sigma_bootstrap_path_for : mr_sigma_path_for)(sp, sizeof sp,
                                                                              model_path)) != MR_OK)
            goto fail;
        if (!uq_explicit && !uq_model && !mr_path_is_file(sp)) {
            /* the default asks for a map only where the model ships its variance network */
            MR_WARN("%s has no calibrated uncertainty model (%s): no SD map written (train one, "
                    "docs/uncertainty.md, or pass --uncertainty replica)", model_path, sp);
            kind = MR_UQ_NONE;
        } else if ((st = mr_sigma_load(&sigma, sp, model_path)) != MR_OK)
            goto fail;
        else if (mr_sigma_wants_bootstrap(sigma)) {
            st = mr_error_set(MR_ERR_INPUT, "%s: calibrated with a reconstruction's parametric "
                              "bootstrap (`mrpipe recon --uncertainty bootstrap`), not for denoise",
                              sp);
            goto fail;
        } else if (!boot && mr_sigma_has_boot_sd(sigma)) {
            st = mr_error_set(MR_ERR_INPUT, "%s: calibrated with the model's parametric bootstrap "
                              "(attribute 'calibration_bootstrap_sd'): use it with --uncertainty "
                              "bootstrap", sp);
            goto fail;
        }
    }
    if (kind != MR_UQ_NONE) { /* where the map goes, checked before any work */
        mr_format sfmt;
        if (uq_out)
            snprintf(sd_path, sizeof sd_path, "%s", uq_out);
        else if (ofmt == MR_FMT_DICOM) /* a DICOM folder: the SD series beside the image series */
            snprintf(sd_path, sizeof sd_path, "%s", out);
        else if ((st = mr_output_sd_path(sd_path, sizeof sd_path, out)) != MR_OK)
            goto fail;
        if ((st = mr_output_detect(&sfmt, sd_path)) != MR_OK) goto fail;
    }

    /* the input ("FILE.h5:NAME" is not a path: only plain paths are detected) */
    if (!strstr(in, ".h5:") && (st = mr_io_detect_input(&ifmt, in)) != MR_OK) goto fail;
    if (ifmt == MR_FMT_DICOM) {
        size_t index;
        if ((st = mr_dicom_set_open(&set, in)) != MR_OK ||
            (st = mr_dicom_set_select(&index, set, series)) != MR_OK ||
            (st = mr_dicom_volume_read(&dvol, set, index, 1)) != MR_OK)
            goto fail;
        img = dvol->data;
        mr_dicom_geometry_nifti(&meta, &dvol->src.geom);
        have_meta = 1;
        snprintf(desc, sizeof desc, "%s%smrpipe denoise", dvol->src.series.description,
                 dvol->src.series.description[0] ? " " : "");
        extra.dicom = &dvol->src;
    } else if (ifmt == MR_FMT_NIFTI) {
        if ((st = mr_nifti_read(&img, &meta, in)) != MR_OK) goto fail;
        have_meta = 1;
    } else {
        char what[512];
        if ((st = mr_image_load(&img, what, sizeof what, in, 0)) != MR_OK) goto fail;
    }
    size_t S = img->ndim == 3 ? img->dims[0] : 1, H = img->dims[img->ndim - 2],
           W = img->dims[img->ndim - 1];
    if (img->ndim < 2 || img->ndim > 3) {
        st = mr_error_set(MR_ERR_INPUT, "%s: expected a 2-D image or a 3-D volume, found %d dims",
                          in, img->ndim);
        goto fail;
    }
    float *x = mr_array_f32(img);
    double noise_est = 0;
    /* an mrpipe (fastMRI-layout) .h5 reconstruction carries the sampling mask it was made with:
     * kept in the output, and read by variance networks that look for where aliasing lands */
    if (ifmt != MR_FMT_DICOM && ifmt != MR_FMT_NIFTI && strstr(in, ".h5")) {
        char h5[4096];
        const char *colon = strstr(in, ".h5:");
        snprintf(h5, sizeof h5, "%.*s", colon ? (int)(colon - in + 3) : (int)strlen(in), in);
        mr_fastmri_file *f = NULL;
        if (mr_fastmri_open(&f, h5) == MR_OK) {
            const mr_fastmri_info *fi = mr_fastmri_get_info(f);
            snprintf(fi_method, sizeof fi_method, "%s", fi->mrpipe_method);
            if (fi->has_mask && fi->mask_len >= W && (mask = malloc(fi->mask_len * sizeof *mask))) {
                if (mr_fastmri_read_mask(f, mask) == MR_OK)
                    mask_len = fi->mask_len;
                else
                    free(mask), mask = NULL;
            }
            size_t nn = 0;
            double cv = 0;
            if ((fi_noise = malloc(S * sizeof *fi_noise)) &&
                (mr_fastmri_read_attr_doubles(f, "mrpipe_noise_sd", fi_noise, S, &nn) != MR_OK ||
                 nn != S))
                free(fi_noise), fi_noise = NULL;
            if (mr_fastmri_read_attr_doubles(f, "mrpipe_coils", &cv, 1, &nn) == MR_OK && nn == 1 &&
                cv >= 1 && cv <= 1024)
                fi_coils = (int)cv;
            if (mr_fastmri_read_attr_doubles(f, "mrpipe_mask_difficulty", &cv, 1, &nn) == MR_OK &&
                nn == 1 && cv > 0 && cv < 100)
                fi_difficulty = cv;
            mr_fastmri_close(f);
            /* its own SD map (recon --uncertainty), for networks that combine with it */
            if (sigma && (kind == MR_UQ_MODEL || kind == MR_UQ_BOTH) &&
                mr_sigma_input_sd_weight(sigma, fi_method) > 0) {
                char spec[4200], what[512];
                snprintf(spec, sizeof spec, "%s:uncertainty", h5);
                if (mr_image_load(&in_sd, what, sizeof what, spec, 0) == MR_OK &&
                    mr_array_numel(in_sd) == S * H * W)
                    MR_INFO("%s: the input's SD map read (uncertainty)", in);
                else {
                    if (in_sd)
                        MR_WARN("%s: its `uncertainty` map has %zu pixels, the image %zu: not used",
                                in, mr_array_numel(in_sd), S * H * W);
                    mr_array_destroy(in_sd), in_sd = NULL;
                }
            }
        }
        mr_error_clear();
        if (mask) {
            double acq = 0;
            for (size_t k = 0; k < mask_len; k++) acq += mask[k] != 0;
            MR_INFO("%s: sampling mask of %zu columns (R = %.2f) read from the input", in, mask_len,
                    acq > 0 ? (double)mask_len / acq : 0);
            if (accel == 0 && acq > 0) accel = (double)mask_len / acq;
        }
    }
    if (kind != MR_UQ_NONE) {
        /* the map needs the input: denoise into a copy */
        size_t d3[3] = {S, H, W};
        if ((st = mr_array_create(&sd, MR_FLOAT32, 3, d3)) != MR_OK) goto fail;
        if (boot) {
            if (!mask || !fi_method[0]) {
                st = mr_error_set(MR_ERR_INPUT, "%s: --uncertainty bootstrap re-runs the input's "
                                  "reconstruction: expected an mrpipe .h5 reconstruction with its "
                                  "`mask` dataset and mrpipe_method attribute, found %s%s%s", in,
                                  mask ? "" : "no mask", !mask && !fi_method[0] ? " and " : "",
                                  fi_method[0] ? "" : "no method");
                goto fail;
            }
            if (mr_sigma_boot_sd_weight(sigma, fi_method) <= 0)
                MR_WARN("%s: the variance network has no bootstrap weight for input method %s "
                        "(mrpipe calibrate fits it from a list with a bootstrap column): the map "
                        "is the model SD alone; the bootstrap map is written beside it", in,
                        fi_method);
            if ((st = mr_array_create(&bmap, MR_FLOAT32, 3, d3)) != MR_OK) goto fail;
        }
        float *y = malloc(S * H * W * sizeof *y);
        if (!y) {
            st = mr_error_set(MR_ERR_NOMEM, "denoise: out of memory");
            goto fail;
        }
        mr_uq_input info = {accel, fi_method[0] ? fi_method : NULL, mask, mask_len, fi_noise,
                            fi_coils, fi_difficulty, in_sd ? mr_array_f32(in_sd) : NULL,
                            bmap ? mr_array_f32(bmap) : NULL};
        st = mr_denoise_uq(y, mr_array_f32(sd), x, S, H, W, m, sigma, kind, (int)replicas,
                           (uint64_t)seed, &info, &noise_est, in);
        if (st == MR_OK) memcpy(x, y, S * H * W * sizeof *y);
        free(y);
        if (st != MR_OK) goto fail;
    } else if ((st = mr_train_denoise_volume(x, x, S, H, W, m, in)) != MR_OK)
        goto fail;

    /* write: (S, H, W) as the writers expect; a 2-D input stays 2-D for NIfTI */
    mr_array view = *img;
    if (view.ndim == 2) {
        view.ndim = 3;
        view.dims[0] = 1, view.dims[1] = H, view.dims[2] = W;
    }
    snprintf(derivation, sizeof derivation, "mrpipe denoise (residual CNN %s, %s)",
             model ? model : "denoiser_blind.h5", m->meta.noise_model[0] ? "blind Rician" : "");
    extra.method = "denoise";
    extra.mask = mask, extra.mask_len = mask_len;
    extra.noise_sd = fi_noise, extra.n_noise_sd = fi_noise ? S : 0, extra.coils = fi_coils;
    extra.mask_difficulty = mask ? fi_difficulty : 0;
    extra.nifti = have_meta ? &meta : NULL;
    extra.description = desc[0] ? desc : "mrpipe denoise";
    extra.derivation = derivation;
    mr_dicom_written written;
    memset(&written, 0, sizeof written);
    if (sd && ofmt == MR_FMT_FASTMRI) extra.uncertainty = sd; /* .h5: the map goes in too */
    extra.bootstrap_map = bmap;
    if (sd && ofmt == MR_FMT_DICOM) extra.written = &written;
    st = ofmt == MR_FMT_NIFTI ? mr_nifti_write(out, img, have_meta ? &meta : NULL)
                              : mr_output_write_volume(out, &view, NULL, &extra);
    if (st != MR_OK) goto fail;
    if (sd) {
        char kd[64];
        snprintf(kd, sizeof kd, "%s", boot ? "bootstrap" : mr_uq_kind_name(kind));
        extra.uncertainty = NULL;
        extra.written = NULL;
        extra.linked = ofmt == MR_FMT_DICOM ? &written : NULL;
        if (ofmt == MR_FMT_DICOM) extra.series_number = written.series_number + 1;
        st = mr_output_write_uncertainty(sd_path, sd, kd, &extra);
        mr_dicom_written_free(&written);
        if (st != MR_OK) goto fail;
        if (kind == MR_UQ_MODEL || kind == MR_UQ_BOTH)
            fprintf(stderr, "mrpipe denoise: uncertainty (%s) -> %s; calibration: %s\n", kd,
                    sd_path, mr_sigma_calibration(sigma));
        else
            fprintf(stderr, "mrpipe denoise: uncertainty (%s, %ld replicas, noise level %.4g) -> "
                    "%s\n", kd, replicas, noise_est, sd_path);
    }
    fprintf(stderr, "mrpipe denoise: %s (%zu x %zu x %zu) -> %s\n", in, S, H, W, out);
    if (dvol)
        mr_dicom_volume_destroy(dvol);
    else
        mr_array_destroy(img);
    mr_dicom_set_close(set);
    mr_nn_model_destroy(m);
    mr_sigma_free(sigma);
    mr_array_destroy(sd), mr_array_destroy(in_sd), mr_array_destroy(bmap);
    free(mask), free(fi_noise);
    return 0;
fail:
    if (dvol)
        mr_dicom_volume_destroy(dvol);
    else
        mr_array_destroy(img);
    mr_dicom_set_close(set);
    mr_nn_model_destroy(m);
    mr_sigma_free(sigma);
    mr_array_destroy(sd), mr_array_destroy(in_sd), mr_array_destroy(bmap);
    free(mask), free(fi_noise);
    return mr_cli_fail("denoise", st);
}
