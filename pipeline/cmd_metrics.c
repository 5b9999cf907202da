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
    "                      [--ssim uniform|gaussian]\n"
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
    "\n"
    "fastMRI's definitions (fastmri/evaluate.py): both volumes centre-cropped to the reference's\n"
    "in-plane size (offset (n - crop) // 2); NMSE = ||ref - rec||^2 / ||ref||^2 and PSNR =\n"
    "10 log10(max^2 / MSE) over the volume; SSIM = mean over slices; max = the reference volume's\n"
    "maximum, used as the data range of every slice. Per-slice lines come first; the last line is\n"
    "NMSE=... PSNR=... SSIM=...\n";

typedef struct {
    const char *reference, *input, *json, *csv;
    mr_ssim_window window;
} metrics_opts;

static int parse(metrics_opts *o, int argc, char **argv)
{
    const char *v = NULL, *ssim = "uniform";
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
        else
            return mr_cli_usage_error("metrics", "unknown option '%s'", argv[i]);
        if (!v) return mr_cli_usage_error("metrics", "%s needs a value", argv[i]);
    }
    if (!o->reference) return mr_cli_usage_error("metrics", "--reference is required");
    if (!o->input) return mr_cli_usage_error("metrics", "--input is required");
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
    fprintf(f, "  \"mrpipe_version\": \"%s\",\n  \"slices\": [", MR_VERSION_STRING);
    for (size_t s = 0; s < r->slices; s++) {
        const mr_metric_values *v = &r->per_slice[s];
        fprintf(f, "%s\n    {\"slice\": %zu, \"nmse\": ", s ? "," : "", s);
        json_number(f, v->nmse);
        fputs(", \"psnr\": ", f);
        json_number(f, v->psnr);
        fputs(", \"ssim\": ", f);
        json_number(f, v->ssim);
        fputc('}', f);
    }
    fputs("\n  ]\n}\n", f);
}

static void write_csv(FILE *f, const report_data *d)
{
    fputs("slice,nmse,psnr,ssim\n", f);
    for (size_t s = 0; s < d->r->slices; s++) {
        const mr_metric_values *v = &d->r->per_slice[s];
        fprintf(f, "%zu,%.17g,%.17g,%.17g\n", s, v->nmse, v->psnr, v->ssim);
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
    mr_array *ref = NULL, *in = NULL, *in_c = NULL;
    mr_metrics_result r;
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
    }
    if (st == MR_OK) {
        report_data d = {&o, ref_desc, in_desc, ref, in, ref, &r};
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
        rc = 0;
    } else {
        if (o.json) mr_atomic_abort(&af_json);
        if (o.csv) mr_atomic_abort(&af_csv);
        rc = mr_cli_fail("metrics", st);
    }
    if (have_result) mr_metrics_result_free(&r);
    mr_array_destroy(ref);
    mr_array_destroy(in);
    mr_array_destroy(in_c);
    return rc;
}
