/*
 * cmd_metrics.c: `mrpipe metrics`: fastMRI's NMSE, PSNR and SSIM of a reconstruction against a
 * reference (fastmri/evaluate.py; ../shared/REFERENCE.md; docs/validation.md), per volume and per
 * slice, printed and optionally written as JSON and CSV.
 *
 * Both volumes are centre-cropped to the reference's in-plane size with fastMRI's offset
 * (n - crop) // 2 (transforms.center_crop); an input smaller than the reference, or a different
 * slice count, is an error naming both shapes. The last line printed is
 * `NMSE=%.9g PSNR=%.9g SSIM=%.9g` (PSNR `inf` for identical images; `null` in JSON). Outputs are
 * written under temporary names and renamed only when both are complete.
 *
 * With --uncertainty SD (a per-pixel standard-deviation map of the input, cropped like it), the
 * uncertainty figures of validation/uncertainty.c (mr_uq_metrics: coverage, Spearman with the local
 * RMS error and its oracle ceiling, UCE, AUSE) follow on one more line, `UQ ...`, and go into the
 * JSON (`uncertainty`, and `uq` per slice) and the CSV (extra columns, MR_UQ_CSV_COLUMNS).
 */
#include "mr_io.h"
#include "mr_pipeline.h"
#include "mr_recon.h"
#include "mr_validation.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *USAGE =
    "usage: mrpipe metrics --reference REF --input REC [--json OUT.json] [--csv OUT.csv]\n"
    "                      [--ssim uniform|gaussian] [--uncertainty SD [--foreground F]]\n"
    "\n"
    "  --reference REF  the ground truth: .h5 (reconstruction_rss, else reconstruction_esc, else\n"
    "                   reconstruction; FILE.h5:NAME picks a dataset), .nii/.nii.gz, .cfl\n"
    "                   (magnitude) or DICOM (not available yet)\n"
    "  --input REC      the image to judge, same formats (.h5 prefers reconstruction, then\n"
    "                   reconstruction_rss, then reconstruction_esc)\n"
    "  --json OUT.json  write every number: volume and per-slice values, data range, shapes,\n"
    "                   the SSIM window and mrpipe's version (PSNR of identical images: null)\n"
    "  --csv OUT.csv    one row per slice: slice,nmse,psnr,ssim\n"
    "  --ssim W         uniform: fastMRI / skimage default, 7x7 box, sample covariance;\n"
    "                   gaussian: Wang et al.'s MATLAB SSIM, Gaussian sigma 1.5 (11x11),\n"
    "                   population covariance  [uniform]\n"
    "  --uncertainty SD the input's per-pixel standard-deviation map, any readable format (a .h5\n"
    "                   named without :NAME: its `uncertainty` dataset if any), cropped like the\n"
    "                   input:\n"
    "                   adds coverage of the +-1/1.645/1.96 SD intervals (68/90/95 %), Spearman of\n"
    "                   SD with the 5x5 local RMS error and the oracle ceiling, UCE, AUSE (docs/\n"
    "                   validation.md), as one more line `UQ ...` and in the JSON and CSV\n"
    "  --foreground F   those figures over reference > F x max(reference)  [0.05]\n"
    "\n"
    "fastMRI's definitions (fastmri/evaluate.py): both volumes centre-cropped to the reference's\n"
    "in-plane size (offset (n - crop) // 2); NMSE = ||ref - rec||^2 / ||ref||^2 and PSNR =\n"
    "10 log10(max^2 / MSE) over the volume; SSIM = mean over slices; max = the reference volume's\n"
    "maximum, used as the data range of every slice. Per-slice lines come first; the last line is\n"
    "NMSE=... PSNR=... SSIM=... (then the UQ line with --uncertainty)\n";

typedef struct {
    const char *reference, *input, *json, *csv, *uncertainty;
    mr_ssim_window window;
    double fg_fraction;
} metrics_opts;

static int parse(metrics_opts *o, int argc, char **argv)
{
    const char *v = NULL, *ssim = "uniform", *fg = NULL;
    o->fg_fraction = 0.05;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(USAGE, stdout);
            return -1;
        } else if (mr_opt_value(&v, "--reference", argc, argv, &i))
            o->reference = v;
        else if (mr_opt_value(&v, "--input", argc, argv, &i))
            o->input = v;
        else if (mr_opt_value(&v, "--json", argc, argv, &i))
            o->json = v;
        else if (mr_opt_value(&v, "--csv", argc, argv, &i))
            o->csv = v;
        else if (mr_opt_value(&v, "--ssim", argc, argv, &i))
            ssim = v;
        else if (mr_opt_value(&v, "--uncertainty", argc, argv, &i))
            o->uncertainty = v;
        else if (mr_opt_value(&v, "--foreground", argc, argv, &i))
            fg = v;
        else
            return mr_cli_usage_error("metrics", "unknown option '%s'", argv[i]);
        if (!v) return mr_cli_usage_error("metrics", "%s needs a value", argv[i]);
    }
    if (!o->reference) return mr_cli_usage_error("metrics", "--reference is required");
    if (!o->input) return mr_cli_usage_error("metrics", "--input is required");
    if (fg) {
        char *end;
        o->fg_fraction = strtod(fg, &end);
        if (*end || end == fg || !(o->fg_fraction >= 0 && o->fg_fraction < 1))
            return mr_cli_usage_error("metrics", "--foreground: expected a fraction 0 <= F < 1, "
                                      "found '%s'", fg);
        if (!o->uncertainty)
            return mr_cli_usage_error("metrics", "--foreground needs --uncertainty");
    }
    if (!strcmp(ssim, "uniform"))
        o->window = MR_SSIM_UNIFORM;
    else if (!strcmp(ssim, "gaussian"))
        o->window = MR_SSIM_GAUSSIAN;
    else
        return mr_cli_usage_error("metrics", "--ssim: expected uniform or gaussian, found '%s'",
                                  ssim);
    return 0;
}

/* Centre-crop `a` (S, H, W) into a new array (S, oh, ow), fastMRI's center_crop. */
static mr_status crop_volume(mr_array **out, const mr_array *a, size_t oh, size_t ow)
{
    size_t dims[3] = {a->dims[0], oh, ow};
    mr_status st = mr_array_create(out, MR_FLOAT32, 3, dims);
    if (st != MR_OK) return st;
    for (size_t s = 0; s < a->dims[0]; s++)
        mr_crop_f32(mr_array_f32(*out) + s * oh * ow, oh, ow,
                    mr_array_f32(a) + s * a->dims[1] * a->dims[2], a->dims[1], a->dims[2]);
    return MR_OK;
}

/* ---------------------------------------------------------------- JSON and CSV */

static void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p == '\n')
            fputs("\\n", f);
        else if (*p == '\t')
            fputs("\\t", f);
        else if (*p < 0x20)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

/* A JSON number, or null for inf / NaN (JSON has neither). */
static void json_number(FILE *f, double v)
{
    if (isfinite(v))
        fprintf(f, "%.17g", v);
    else
        fputs("null", f);
}

static void json_shape(FILE *f, const mr_array *a)
{
    fputc('[', f);
    for (int i = 0; i < a->ndim; i++)
        fprintf(f, "%s%zu", i ? ", " : "", a->dims[i]);
    fputc(']', f);
}

typedef struct {
    const metrics_opts *o;
    const char *ref_desc, *in_desc;
    const mr_array *ref, *in, *cropped;
    const mr_metrics_result *r;
    const char *sd_desc;
    const mr_array *sd;           /* as loaded, or NULL */
    const mr_uq_result *uq;       /* volume figures, or NULL */
    const mr_uq_result *uq_slice; /* (slices) */
    char *uq_json;                /* mr_uq_result_json of uq */
    char **uq_sjson, **uq_scsv;   /* (slices) per-slice JSON objects and CSV values */
} report_data;

static void write_json(FILE *f, const report_data *d)
{
    const mr_metrics_result *r = d->r;
    int win = mr_ssim_window_size(d->o->window);
    fputs("{\n  \"nmse\": ", f);
    json_number(f, r->volume.nmse);
    fputs(",\n  \"psnr\": ", f);
    json_number(f, r->volume.psnr);
    fputs(",\n  \"ssim\": ", f);
    json_number(f, r->volume.ssim);
    fputs(",\n  \"data_range\": ", f);
    json_number(f, r->data_range);
    fputs(",\n  \"reference\": {\"path\": ", f);
    json_string(f, d->o->reference);
    fputs(", \"source\": ", f);
    json_string(f, d->ref_desc);
    fputs(", \"shape\": ", f);
    json_shape(f, d->ref);
    fputs("},\n  \"input\": {\"path\": ", f);
    json_string(f, d->o->input);
    fputs(", \"source\": ", f);
    json_string(f, d->in_desc);
    fputs(", \"shape\": ", f);
    json_shape(f, d->in);
    fputs("},\n  \"compared_shape\": ", f);
    json_shape(f, d->cropped);
    fprintf(f, ",\n  \"ssim_window\": {\"type\": \"%s\", \"size\": %d, \"sigma\": ",
            mr_ssim_window_name(d->o->window), win);
    if (d->o->window == MR_SSIM_GAUSSIAN)
        fputs("1.5", f);
    else
        fputs("null", f);
    fprintf(f, ", \"K1\": 0.01, \"K2\": 0.03, \"covariance\": \"%s\", \"border_crop\": %d},\n",
            d->o->window == MR_SSIM_GAUSSIAN ? "population" : "sample", (win - 1) / 2);
    fputs("  \"definitions\": \"fastmri/evaluate.py: NMSE and PSNR over the volume, SSIM mean over "
          "slices, data_range = reference volume max (also for per-slice values)\",\n",
          f);
    fprintf(f, "  \"mrpipe_version\": \"%s\",\n", MR_VERSION_STRING);
    if (d->uq) {
        fputs("  \"uncertainty\": {\"path\": ", f);
        json_string(f, d->o->uncertainty);
        fputs(", \"source\": ", f);
        json_string(f, d->sd_desc);
        fputs(", \"shape\": ", f);
        json_shape(f, d->sd);
        fprintf(f, ", \"foreground_fraction\": %.17g, \"local_window\": 5, \"uce_bins\": 20, "
                   "\"sparsification_steps\": 100, \"oracle_seed\": 1,\n    \"figures\": %s},\n",
                d->o->fg_fraction, d->uq_json);
    }
    fputs("  \"slices\": [", f);
    for (size_t s = 0; s < r->slices; s++) {
        const mr_metric_values *v = &r->per_slice[s];
        fprintf(f, "%s\n    {\"slice\": %zu, \"nmse\": ", s ? "," : "", s);
        json_number(f, v->nmse);
        fputs(", \"psnr\": ", f);
        json_number(f, v->psnr);
        fputs(", \"ssim\": ", f);
        json_number(f, v->ssim);
        if (d->uq) fprintf(f, ", \"uq\": %s", d->uq_sjson[s]);
        fputc('}', f);
    }
    fputs("\n  ]\n}\n", f);
}

static void write_csv(FILE *f, const report_data *d)
{
    fputs(d->uq ? "slice,nmse,psnr,ssim," MR_UQ_CSV_COLUMNS "\n" : "slice,nmse,psnr,ssim\n", f);
    for (size_t s = 0; s < d->r->slices; s++) {
        const mr_metric_values *v = &d->r->per_slice[s];
        fprintf(f, "%zu,%.17g,%.17g,%.17g", s, v->nmse, v->psnr, v->ssim);
        if (d->uq) fprintf(f, ",%s", d->uq_scsv[s]);
        fputc('\n', f);
    }
}

/* Write one output under its temporary name (committed by the caller). */
static mr_status write_temp(mr_atomic_file *af, void (*fn)(FILE *, const report_data *),
                            const report_data *d)
{
    FILE *f = fopen(af->tmp_path, "w");
    int bad;
    if (!f)
        return mr_error_set(MR_ERR_IO, "%s: cannot create (temporary %s)", af->final_path,
                            af->tmp_path);
    fn(f, d);
    bad = ferror(f);
    bad |= fclose(f) != 0;
    if (bad) {
        mr_atomic_abort(af);
        return mr_error_set(MR_ERR_IO, "%s: write failed (disk full?)", af->final_path);
    }
    return MR_OK;
}

/* ---------------------------------------------------------------- command */

static double ms_between(const struct timespec *a, const struct timespec *b)
{
    return (double)(b->tv_sec - a->tv_sec) * 1e3 + (double)(b->tv_nsec - a->tv_nsec) * 1e-6;
}

int mr_cmd_metrics(int argc, char **argv)
{
    metrics_opts o;
    mr_array *ref = NULL, *in = NULL, *in_c = NULL, *sd = NULL, *sd_c = NULL;
    mr_metrics_result r;
    mr_uq_result uq, *uq_slice = NULL;
    mr_uq_params up;
    char *uq_json = NULL, **uq_sjson = NULL, **uq_scsv = NULL, sd_desc[4200] = "";
    int have_uq = 0;
    mr_atomic_file af_json, af_csv;
    char ref_desc[4200], in_desc[4200], a[128], b[128];
    mr_status st;
    int rc, have_result = 0;

    memset(&o, 0, sizeof o);
    memset(&r, 0, sizeof r);
    memset(&af_json, 0, sizeof af_json);
    memset(&af_csv, 0, sizeof af_csv);
    if ((rc = parse(&o, argc, argv)) != 0) return rc < 0 ? 0 : rc;
    /* Check the output names before any work. */
    if (o.json && (st = mr_atomic_begin(&af_json, o.json)) != MR_OK)
        return mr_cli_fail("metrics", st);
    if (o.csv && (st = mr_atomic_begin(&af_csv, o.csv)) != MR_OK) return mr_cli_fail("metrics", st);

    st = mr_image_load(&ref, ref_desc, sizeof ref_desc, o.reference, 1);
    if (st == MR_OK) st = mr_image_load(&in, in_desc, sizeof in_desc, o.input, 0);
    if (st == MR_OK && o.uncertainty) {
        /* an HDF5 file named without a dataset: its `uncertainty` dataset when it has one (mrpipe
         * recon's outputs), never silently its reconstruction */
        st = MR_ERR_INPUT;
        if (!strchr(o.uncertainty, ':') && (mr_path_has_suffix(o.uncertainty, ".h5") ||
                                            mr_path_has_suffix(o.uncertainty, ".hdf5"))) {
            char spec[4200];
            snprintf(spec, sizeof spec, "%s:uncertainty", o.uncertainty);
            st = mr_image_load(&sd, sd_desc, sizeof sd_desc, spec, 0);
            if (st != MR_OK) mr_error_clear();
        }
        if (st != MR_OK) st = mr_image_load(&sd, sd_desc, sizeof sd_desc, o.uncertainty, 0);
        if (st != MR_OK) st = mr_error_prefix(st, "--uncertainty: ");
    }
    if (st == MR_OK) {
        size_t S = ref->dims[0], H = ref->dims[1], W = ref->dims[2];
        mr_dims_format(a, sizeof a, 3, ref->dims);
        mr_dims_format(b, sizeof b, 3, in->dims);
        if (in->dims[0] != S)
            st = mr_error_set(MR_ERR_INPUT,
                              "the reference %s has %zu slice(s) %s, the input %s "
                              "has %zu %s; expected the same slice count",
                              ref_desc, S, a, in_desc, in->dims[0], b);
        else if (in->dims[1] < H || in->dims[2] < W)
            st = mr_error_set(MR_ERR_INPUT,
                              "the input %s %s is smaller in-plane than the "
                              "reference %s %s; expected an input at least as large as the "
                              "reference (it is centre-cropped to the reference's size)",
                              in_desc, b, ref_desc, a);
        else if (in->dims[1] != H || in->dims[2] != W) {
            MR_INFO("centre-cropping the input %s to the reference's %zu x %zu", b, H, W);
            st = crop_volume(&in_c, in, H, W);
        }
        if (st == MR_OK && sd) {
            mr_dims_format(b, sizeof b, 3, sd->dims);
            if (sd->dims[0] != in->dims[0] || sd->dims[1] != in->dims[1] ||
                sd->dims[2] != in->dims[2]) {
                char c[128];
                mr_dims_format(c, sizeof c, 3, in->dims);
                st = mr_error_set(MR_ERR_INPUT,
                                  "the uncertainty map %s has shape %s; expected the input's "
                                  "shape %s (%s)",
                                  sd_desc, b, c, in_desc);
            } else if (sd->dims[1] != H || sd->dims[2] != W) {
                st = crop_volume(&sd_c, sd, H, W);
            }
        }
        /* the reference is at its own in-plane size already: its crop is the identity */
    }
    if (st == MR_OK) {
        const mr_array *cmp_in = in_c ? in_c : in;
        struct timespec t0, t1, c0, c1;
        MR_INFO("reference %s, input %s: %zu slice(s) of %zu x %zu, SSIM window %s", ref_desc,
                in_desc, ref->dims[0], ref->dims[1], ref->dims[2], mr_ssim_window_name(o.window));
        clock_gettime(CLOCK_MONOTONIC, &t0);
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
        st = mr_metrics_volume(&r, ref, cmp_in, o.window);
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        have_result = st == MR_OK;
        if (have_result)
            MR_DEBUG("metrics of %zu slice(s) computed in %.3f ms (cpu %.3f ms, %d thread(s))",
                     r.slices, ms_between(&t0, &t1), ms_between(&c0, &c1), mr_threads());
        if (st == MR_OK && sd) {
            const mr_array *cmp_sd = sd_c ? sd_c : sd;
            mr_uq_params_default(&up);
            up.fg_fraction = o.fg_fraction;
            up.reference_name = ref_desc;
            up.estimate_name = in_desc;
            up.sd_name = sd_desc;
            uq_slice = calloc(ref->dims[0], sizeof *uq_slice);
            uq_sjson = calloc(ref->dims[0], sizeof *uq_sjson);
            uq_scsv = calloc(ref->dims[0], sizeof *uq_scsv);
            if (!uq_slice || !uq_sjson || !uq_scsv)
                st = mr_error_set(MR_ERR_NOMEM, "metrics: out of memory");
            if (st == MR_OK) st = mr_uq_metrics(&uq, ref, cmp_in, cmp_sd, &up);
            if (st == MR_OK) {
                have_uq = 1;
                st = mr_uq_metrics_slices(uq_slice, ref, cmp_in, cmp_sd, &up);
                if (st != MR_OK) {
                    mr_uq_result_free(&uq);
                    have_uq = 0;
                }
            }
            if (st == MR_OK) {
                uq_json = mr_uq_result_json(&uq, 1, "    ");
                for (size_t s = 0; s < ref->dims[0]; s++) {
                    uq_sjson[s] = mr_uq_result_json(&uq_slice[s], 0, "    ");
                    uq_scsv[s] = mr_uq_result_csv(&uq_slice[s]);
                    if (!uq_sjson[s] || !uq_scsv[s]) st = MR_ERR_NOMEM;
                }
                if (!uq_json) st = MR_ERR_NOMEM;
                if (st == MR_ERR_NOMEM)
                    st = mr_error_set(MR_ERR_NOMEM, "metrics: out of memory formatting the "
                                                    "uncertainty figures");
            }
        }
    }
    if (st == MR_OK) {
        report_data d = {&o, ref_desc, in_desc, ref, in, ref, &r, sd_desc, sd,
                         have_uq ? &uq : NULL, uq_slice, uq_json, uq_sjson, uq_scsv};
        if (o.json) st = write_temp(&af_json, write_json, &d);
        if (st == MR_OK && o.csv) st = write_temp(&af_csv, write_csv, &d);
        if (st == MR_OK && o.json) st = mr_atomic_commit(&af_json);
        if (st == MR_OK && o.csv) st = mr_atomic_commit(&af_csv);
    }
    if (st == MR_OK) {
        for (size_t s = 0; s < r.slices; s++)
            printf("slice %zu: NMSE=%.9g PSNR=%.9g SSIM=%.9g\n", s, r.per_slice[s].nmse,
                   r.per_slice[s].psnr, r.per_slice[s].ssim);
        printf("NMSE=%.9g PSNR=%.9g SSIM=%.9g\n", r.volume.nmse, r.volume.psnr, r.volume.ssim);
        if (have_uq)
            printf("UQ COVERAGE68=%.6f COVERAGE90=%.6f COVERAGE95=%.6f SPEARMAN=%.6f "
                   "SPEARMAN_ORACLE=%.6f UCE=%.9g UCE_REL=%.6f AUSE=%.6f MEAN_SD=%.9g RMSE=%.9g "
                   "RMSE_OVER_RMS_SD=%.6f FOREGROUND=%zu\n",
                   uq.coverage[0], uq.coverage[1], uq.coverage[2], uq.spearman,
                   uq.spearman_oracle, uq.uce, uq.uce_relative, uq.ause, uq.mean_sd, uq.rmse,
                   uq.rmse_over_rms_sd, uq.n_foreground);
        rc = 0;
    } else {
        if (o.json) mr_atomic_abort(&af_json);
        if (o.csv) mr_atomic_abort(&af_csv);
        rc = mr_cli_fail("metrics", st);
    }
    if (have_result) mr_metrics_result_free(&r);
    if (have_uq) {
        mr_uq_result_free(&uq);
        for (size_t s = 0; s < ref->dims[0]; s++)
            mr_uq_result_free(&uq_slice[s]);
    }
    for (size_t s = 0; uq_sjson && s < ref->dims[0]; s++)
        free(uq_sjson[s]), free(uq_scsv ? uq_scsv[s] : NULL);
    free(uq_slice);
    free(uq_sjson);
    free(uq_scsv);
    free(uq_json);
    mr_array_destroy(sd);
    mr_array_destroy(sd_c);
    mr_array_destroy(ref);
    mr_array_destroy(in);
    mr_array_destroy(in_c);
    return rc;
}
