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
    "\n"
    "  --input IN    NIfTI (.nii/.nii.gz), fastMRI .h5 (reconstruction, else reconstruction_rss,\n"
    "                else reconstruction_esc; IN.h5:NAME picks a dataset), BART .cfl, or DICOM\n"
    "                (a file or a folder holding one series)\n"
    "  --output OUT  .nii/.nii.gz, .h5 (dataset `reconstruction`), .cfl, .png, or a folder (a\n"
    "                derived DICOM series, description \"<source> mrpipe denoise\")\n"
    "  --model M.h5  a model written by `mrpipe train` [the shipped models/denoiser_blind.h5]\n"
    "\n"
    "Slice by slice over the last two axes (whole slices, no tiles). The input is divided by the\n"
    "model's percentile level of the whole volume and the output multiplied back: the output has\n"
    "the input's shape, geometry and intensity units.\n";

int mr_cmd_denoise(int argc, char **argv)
{
    const char *in = NULL, *out = NULL, *model = NULL, *v = NULL;
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
        else
            return mr_cli_usage_error("denoise", "unknown option '%s'", argv[i]);
        if (!v) return mr_cli_usage_error("denoise", "%s needs a value", argv[i]);
    }
    if (!in) return mr_cli_usage_error("denoise", "--input is required");
    if (!out) return mr_cli_usage_error("denoise", "--output is required");

    char model_path[4096], desc[512] = "", derivation[600];
    mr_nn_model *m = NULL;
    mr_array *img = NULL;
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

    /* the input ("FILE.h5:NAME" is not a path: only plain paths are detected) */
    if (!strstr(in, ".h5:") && (st = mr_io_detect_input(&ifmt, in)) != MR_OK) goto fail;
    if (ifmt == MR_FMT_DICOM) {
        size_t index;
        if ((st = mr_dicom_set_open(&set, in)) != MR_OK ||
            (st = mr_dicom_set_select(&index, set, NULL)) != MR_OK ||
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
    if ((st = mr_train_denoise_volume(x, x, S, H, W, m, in)) != MR_OK) goto fail;

    /* write: (S, H, W) as the writers expect; a 2-D input stays 2-D for NIfTI */
    mr_array view = *img;
    if (view.ndim == 2) {
        view.ndim = 3;
        view.dims[0] = 1, view.dims[1] = H, view.dims[2] = W;
    }
    snprintf(derivation, sizeof derivation, "mrpipe denoise (residual CNN %s, %s)",
             model ? model : "denoiser_blind.h5", m->meta.noise_model[0] ? "blind Rician" : "");
    extra.method = "denoise";
    extra.nifti = have_meta ? &meta : NULL;
    extra.description = desc[0] ? desc : "mrpipe denoise";
    extra.derivation = derivation;
    st = ofmt == MR_FMT_NIFTI ? mr_nifti_write(out, img, have_meta ? &meta : NULL)
                              : mr_output_write_volume(out, &view, NULL, &extra);
    if (st != MR_OK) goto fail;
    fprintf(stderr, "mrpipe denoise: %s (%zu x %zu x %zu) -> %s\n", in, S, H, W, out);
    if (dvol)
        mr_dicom_volume_destroy(dvol);
    else
        mr_array_destroy(img);
    mr_dicom_set_close(set);
    mr_nn_model_destroy(m);
    return 0;
fail:
    if (dvol)
        mr_dicom_volume_destroy(dvol);
    else
        mr_array_destroy(img);
    mr_dicom_set_close(set);
    mr_nn_model_destroy(m);
    return mr_cli_fail("denoise", st);
}
