/*
 * cmd_report.c: `mrpipe report`: a validation report of one or more reconstructions against a
 * reference (docs/reports.md): DIR/report.json, DIR/report.csv, DIR/report.html.
 *
 * This file loads the volumes (mr_image_load, the loader `mrpipe metrics` uses), checks slice
 * counts, centre-crops every volume to the reference's in-plane size as fastMRI does
 * (transforms.center_crop, offset (n - crop) // 2; mr_crop_f32), collects the library versions and,
 * only with --include-patient-info, the patient fields of the inputs; the report itself (metrics
 * by mr_metrics_volume, rendering, atomic output) is library code, mr_report_write.
 */
#include "mr_io.h"
#include "mr_pipeline.h"
#include "mr_recon.h"
#include "mr_validation.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_INPUTS 16
#define MAX_SLICES 64
#define MAX_ARGS 256

static const char *USAGE =
    "usage: mrpipe report --reference REF --input REC [--input REC2 ...] [--label NAME ...]\n"
    "                     [--zero-filled ZF] [--uncertainty SD] [--slices LIST]\n"
    "                     [--ssim uniform|gaussian] [--include-patient-info] --output DIR\n"
    "\n"
    "  --reference REF     the ground truth: .h5 (reconstruction_rss, else reconstruction_esc,\n"
    "                      else reconstruction; FILE.h5:NAME picks a dataset), .nii/.nii.gz, .cfl\n"
    "  --input REC         a reconstruction to judge (repeat to compare up to 16 side by side;\n"
    "                      .h5 prefers reconstruction, then reconstruction_rss, then _esc)\n"
    "  --label NAME        a name for each --input, in order  [the file's base name]\n"
    "  --zero-filled ZF    the undersampled (zero-filled) input, shown and scored as a baseline\n"
    "  --uncertainty SD    a per-pixel standard-deviation map of the inputs' shape (cropped\n"
    "                      like them), shown beside them and judged against every --input:\n"
    "                      coverage of +-1/1.645/1.96 SD, Spearman with the 5x5 local RMS error\n"
    "                      and its oracle ceiling, UCE, AUSE, sparsification and reliability\n"
    "                      plots (docs/validation.md)\n"
    "  --slices LIST       slices shown as images, e.g. 0,5,9  [3 evenly spread]\n"
    "  --ssim W            uniform (fastMRI / skimage) or gaussian (Wang et al.)  [uniform]\n"
    "  --include-patient-info\n"
    "                      also record patient-identifying fields of the inputs (fastMRI\n"
    "                      patient_id, ISMRMRD patientID); without it no report holds any\n"
    "  --output DIR        the report directory (created if missing): report.json (every\n"
    "                      number, inputs with SHA-256, config, versions), report.csv (one row\n"
    "                      per slice per method), report.html (one self-contained page)\n"
    "\n"
    "Every volume is centre-cropped to the reference's in-plane size; the numbers are fastMRI's\n"
    "(the same as `mrpipe metrics`). On any error nothing is written to DIR.\n";

typedef struct {
    const char *reference, *zero_filled, *uncertainty, *slices, *output;
    const char *inputs[MAX_INPUTS], *labels[MAX_INPUTS];
    int n_inputs, n_labels, include_patient;
    mr_ssim_window window;
    size_t shown[MAX_SLICES];
    size_t n_shown;
} report_opts;

/* "0,5,9" -> slice indices (checked against the slice count later, by the library). */
static mr_status parse_slices(report_opts *o, const char *s)
{
    char buf[1024], *tok, *save = NULL;
    long v;
    mr_status st;
    if (strlen(s) >= sizeof buf) return mr_error_set(MR_ERR_USAGE, "--slices: list too long");
    strcpy(buf, s);
    for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (o->n_shown == MAX_SLICES)
            return mr_error_set(MR_ERR_USAGE, "--slices: expected at most %d slices, found more",
                                MAX_SLICES);
        if ((st = mr_parse_long(&v, "--slices", tok, 0, 1L << 30)) != MR_OK) return st;
        o->shown[o->n_shown++] = (size_t)v;
    }
    if (o->n_shown == 0)
        return mr_error_set(MR_ERR_USAGE, "--slices: expected a list like 0,5,9, found '%s'", s);
    return MR_OK;
}

static int parse(report_opts *o, int argc, char **argv)
{
    const char *v = NULL, *ssim = "uniform";
    mr_status st;
    for (int i = 1; i < argc; i++) {
        v = "";
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(USAGE, stdout);
            return -1;
        } else if (!strcmp(argv[i], "--include-patient-info")) {
            o->include_patient = 1;
        } else if (mr_opt_value(&v, "--reference", argc, argv, &i)) {
            o->reference = v;
        } else if (mr_opt_value(&v, "--input", argc, argv, &i)) {
            if (o->n_inputs == MAX_INPUTS)
                return mr_cli_usage_error("report", "expected at most %d --input, found more",
                                          MAX_INPUTS);
            o->inputs[o->n_inputs++] = v;
        } else if (mr_opt_value(&v, "--label", argc, argv, &i)) {
            if (o->n_labels == MAX_INPUTS)
                return mr_cli_usage_error("report", "expected at most %d --label, found more",
                                          MAX_INPUTS);
            o->labels[o->n_labels++] = v;
        } else if (mr_opt_value(&v, "--zero-filled", argc, argv, &i)) {
            o->zero_filled = v;
        } else if (mr_opt_value(&v, "--uncertainty", argc, argv, &i)) {
            o->uncertainty = v;
        } else if (mr_opt_value(&v, "--slices", argc, argv, &i)) {
            o->slices = v;
        } else if (mr_opt_value(&v, "--ssim", argc, argv, &i)) {
            ssim = v;
        } else if (mr_opt_value(&v, "--output", argc, argv, &i)) {
            o->output = v;
        } else {
            return mr_cli_usage_error("report", "unknown option '%s'", argv[i]);
        }
        if (!v || (!*v && strcmp(argv[i], "--include-patient-info")))
            return mr_cli_usage_error("report", "%s needs a value", argv[i]);
    }
    if (!o->reference) return mr_cli_usage_error("report", "--reference is required");
    if (o->n_inputs == 0) return mr_cli_usage_error("report", "at least one --input is required");
    if (!o->output) return mr_cli_usage_error("report", "--output DIR is required");
    if (o->n_labels > 0 && o->n_labels != o->n_inputs)
        return mr_cli_usage_error("report", "expected one --label per --input (%d), found %d",
                                  o->n_inputs, o->n_labels);
    if (!strcmp(ssim, "uniform"))
        o->window = MR_SSIM_UNIFORM;
    else if (!strcmp(ssim, "gaussian"))
        o->window = MR_SSIM_GAUSSIAN;
    else
        return mr_cli_usage_error("report", "--ssim: expected uniform or gaussian, found '%s'",
                                  ssim);
    if (o->slices && (st = parse_slices(o, o->slices)) != MR_OK)
        return mr_cli_usage_error("report", "%s", mr_error_message());
    return 0;
}

/* ---------------------------------------------------------------- loading */

/* A loaded volume and the strings the report records about it. */
typedef struct {
    mr_array *loaded, *cropped;
    char desc[4200]; /* what was read, e.g. "x.h5:reconstruction" */
    char file[4200]; /* the file hashed ("" when none: a directory) */
    const char *dataset;
} loaded_volume;

/* The file holding the bytes of `spec` ("x.h5:NAME" -> x.h5, BART "x" -> x.cfl), and the dataset.
 */
static void resolve_file(loaded_volume *lv, const char *spec)
{
    size_t n;
    lv->file[0] = '\0';
    lv->dataset = NULL;
    n = strlen(spec);
    if (mr_path_is_file(spec)) {
        snprintf(lv->file, sizeof lv->file, "%s", spec);
        if (mr_path_has_suffix(spec, ".hdr") && n >= 4) /* BART: the data is in the .cfl */
            snprintf(lv->file, sizeof lv->file, "%.*s.cfl", (int)(n - 4), spec);
    } else if (!mr_path_is_dir(spec)) {
        const char *colon = strrchr(lv->desc, ':');
        char cfl[4200];
        snprintf(cfl, sizeof cfl, "%s.cfl", spec);
        if (mr_path_is_file(cfl))
            snprintf(lv->file, sizeof lv->file, "%s", cfl);
        else if (colon && (size_t)(colon - lv->desc) < sizeof lv->file)
            snprintf(lv->file, sizeof lv->file, "%.*s", (int)(colon - lv->desc), lv->desc);
    }
    /* a dataset was read when desc is "FILE:NAME" for an HDF5 file */
    if ((mr_path_has_suffix(lv->file, ".h5") || mr_path_has_suffix(lv->file, ".hdf5")) &&
        !strncmp(lv->desc, lv->file, strlen(lv->file)) && lv->desc[strlen(lv->file)] == ':')
        lv->dataset = lv->desc + strlen(lv->file) + 1;
}

/* Load `spec`; for everything but the reference (ref != NULL) check the slice count and that the
 * in-plane size can be cropped to the reference's, then centre-crop. */
static mr_status load_volume(loaded_volume *lv, const char *spec, const char *role,
                             const loaded_volume *ref)
{
    mr_status st;
    size_t S, H, W;
    char a[128], b[128];
    memset(lv, 0, sizeof *lv);
    if ((st = mr_image_load(&lv->loaded, lv->desc, sizeof lv->desc, spec, ref == NULL)) != MR_OK)
        return mr_error_prefix(st, "%s: ", role);
    resolve_file(lv, spec);
    if (!ref) { /* the reference sets the shape */
        lv->cropped = lv->loaded;
        return MR_OK;
    }
    S = ref->loaded->dims[0], H = ref->loaded->dims[1], W = ref->loaded->dims[2];
    mr_dims_format(a, sizeof a, 3, ref->loaded->dims);
    mr_dims_format(b, sizeof b, 3, lv->loaded->dims);
    if (lv->loaded->dims[0] != S)
        return mr_error_set(MR_ERR_INPUT,
                            "the reference %s has %zu slice(s) %s, the %s %s has %zu "
                            "%s; expected the same slice count",
                            ref->desc, S, a, role, lv->desc, lv->loaded->dims[0], b);
    if (lv->loaded->dims[1] < H || lv->loaded->dims[2] < W)
        return mr_error_set(MR_ERR_INPUT,
                            "the %s %s %s is smaller in-plane than the reference %s "
                            "%s; expected at least the reference's size (it is centre-cropped to "
                            "it)",
                            role, lv->desc, b, ref->desc, a);
    if (lv->loaded->dims[1] == H && lv->loaded->dims[2] == W) {
        lv->cropped = lv->loaded;
        return MR_OK;
    }
    MR_INFO("centre-cropping the %s %s %s to the reference's %zu x %zu", role, lv->desc, b, H, W);
    {
        size_t dims[3] = {S, H, W};
        if ((st = mr_array_create(&lv->cropped, MR_FLOAT32, 3, dims)) != MR_OK) return st;
        for (size_t s = 0; s < S; s++)
            mr_crop_f32(mr_array_f32(lv->cropped) + s * H * W, H, W,
                        mr_array_f32(lv->loaded) + s * lv->loaded->dims[1] * lv->loaded->dims[2],
                        lv->loaded->dims[1], lv->loaded->dims[2]);
    }
    return MR_OK;
}

static void loaded_free(loaded_volume *lv)
{
    if (lv->cropped != lv->loaded) mr_array_destroy(lv->cropped);
    mr_array_destroy(lv->loaded);
    lv->loaded = lv->cropped = NULL;
}

static void to_report_volume(mr_report_volume *rv, const loaded_volume *lv, const char *spec,
                             const char *label)
{
    memset(rv, 0, sizeof *rv);
    rv->label = label;
    rv->source = spec;
    rv->file = lv->file[0] ? lv->file : NULL;
    rv->dataset = lv->dataset;
    rv->image = lv->cropped;
    memcpy(rv->dims_loaded, lv->loaded->dims, sizeof rv->dims_loaded);
}

/* ---------------------------------------------------------------- patient fields */

#define MAX_PATIENT 2 * (MAX_INPUTS + 2)

/* The patient-identifying fields of an HDF5 input (fastMRI attribute patient_id, ISMRMRD header
 * subjectInformation/patientID), read only with --include-patient-info. */
static void collect_patient(mr_report_field *f, char (*keys)[160], char (*vals)[160], size_t *n,
                            const loaded_volume *lv, const char *role)
{
    mr_fastmri_file *h = NULL;
    const mr_fastmri_info *info;
    if (!(mr_path_has_suffix(lv->file, ".h5") || mr_path_has_suffix(lv->file, ".hdf5"))) return;
    if (mr_fastmri_open(&h, lv->file) != MR_OK) {
        mr_error_clear();
        return;
    }
    info = mr_fastmri_get_info(h);
    if (info->patient_id[0] && *n < MAX_PATIENT) {
        snprintf(keys[*n], 160, "%s patient_id", role);
        snprintf(vals[*n], 160, "%s", info->patient_id);
        f[*n].key = keys[*n], f[*n].value = vals[*n], (*n)++;
    }
    if (info->has_header && info->hdr.patient_id[0] && *n < MAX_PATIENT) {
        snprintf(keys[*n], 160, "%s ismrmrd patientID", role);
        snprintf(vals[*n], 160, "%s", info->hdr.patient_id);
        f[*n].key = keys[*n], f[*n].value = vals[*n], (*n)++;
    }
    mr_fastmri_close(h);
}

/* ---------------------------------------------------------------- command */

int mr_cmd_report(int argc, char **argv)
{
    report_opts o;
    loaded_volume ref, in[MAX_INPUTS], zf, sd;
    mr_report_volume methods[MAX_INPUTS], zf_v, sd_v;
    mr_report_spec spec;
    mr_version_entry ver[MR_VERSIONS_MAX];
    mr_report_field versions[MR_VERSIONS_MAX], patient[MAX_PATIENT];
    char pkeys[MAX_PATIENT][160], pvals[MAX_PATIENT][160], role[64];
    const char *line[MAX_ARGS];
    size_t n_ver, n_patient = 0;
    mr_status st = MR_OK;
    int rc, n_loaded = 0, have_sd = 0;

    memset(&o, 0, sizeof o);
    memset(&ref, 0, sizeof ref);
    memset(&zf, 0, sizeof zf);
    memset(&sd, 0, sizeof sd);
    memset(&spec, 0, sizeof spec);
    if ((rc = parse(&o, argc, argv)) != 0) return rc < 0 ? 0 : rc;

    if ((st = load_volume(&ref, o.reference, "reference", NULL)) != MR_OK) goto done;
    for (; n_loaded < o.n_inputs; n_loaded++) {
        snprintf(role, sizeof role, "input %d", n_loaded + 1);
        if ((st = load_volume(&in[n_loaded], o.inputs[n_loaded], role, &ref)) != MR_OK) {
            n_loaded++; /* free what it loaded */
            goto done;
        }
    }
    if (o.zero_filled && (st = load_volume(&zf, o.zero_filled, "zero-filled input", &ref)) != MR_OK)
        goto done;
    if (o.uncertainty && !strchr(o.uncertainty, ':') &&
        (mr_path_has_suffix(o.uncertainty, ".h5") || mr_path_has_suffix(o.uncertainty, ".hdf5"))) {
        /* an HDF5 file named without a dataset: its `uncertainty` dataset when it has one (the
         * _sd.h5 files of recon and denoise), as mrpipe metrics does */
        char spec[4200];
        snprintf(spec, sizeof spec, "%s:uncertainty", o.uncertainty);
        if (load_volume(&sd, spec, "uncertainty map", &ref) == MR_OK) {
            have_sd = 1;
        } else {
            loaded_free(&sd);
            memset(&sd, 0, sizeof sd);
            mr_error_clear();
        }
    }
    if (o.uncertainty && !have_sd &&
        (st = load_volume(&sd, o.uncertainty, "uncertainty map", &ref)) != MR_OK)
        goto done;

    to_report_volume(&spec.reference, &ref, o.reference, NULL);
    for (int i = 0; i < o.n_inputs; i++)
        to_report_volume(&methods[i], &in[i], o.inputs[i], o.n_labels ? o.labels[i] : NULL);
    spec.methods = methods;
    spec.n_methods = (size_t)o.n_inputs;
    if (o.zero_filled) {
        to_report_volume(&zf_v, &zf, o.zero_filled, "zero-filled");
        spec.zero_filled = &zf_v;
    }
    if (o.uncertainty) {
        to_report_volume(&sd_v, &sd, o.uncertainty, "uncertainty");
        spec.uncertainty = &sd_v;
    }
    spec.slices = o.n_shown ? o.shown : NULL;
    spec.n_slices = o.n_shown;
    spec.window = o.window;
    /* the command line as typed: "mrpipe" + the subcommand's argv (global options are not seen) */
    line[0] = "mrpipe";
    spec.argc = argc + 1 < MAX_ARGS ? argc + 1 : MAX_ARGS;
    for (int i = 1; i < spec.argc; i++)
        line[i] = argv[i - 1];
    spec.argv = line;
    n_ver = mr_versions_collect(ver);
    for (size_t i = 0; i < n_ver; i++)
        versions[i].key = ver[i].name, versions[i].value = ver[i].value;
    spec.versions = versions;
    spec.n_versions = n_ver;
    spec.include_patient_info = o.include_patient;
    if (o.include_patient) {
        collect_patient(patient, pkeys, pvals, &n_patient, &ref, "reference");
        for (int i = 0; i < o.n_inputs; i++) {
            snprintf(role, sizeof role, "input %d", i + 1);
            collect_patient(patient, pkeys, pvals, &n_patient, &in[i], role);
        }
        if (o.zero_filled) collect_patient(patient, pkeys, pvals, &n_patient, &zf, "zero-filled");
        spec.patient = patient;
        spec.n_patient = n_patient;
    }
    MR_INFO("report: reference %s, %d reconstruction(s), %zu slice(s) of %zu x %zu", ref.desc,
            o.n_inputs, ref.loaded->dims[0], ref.loaded->dims[1], ref.loaded->dims[2]);
    if ((st = mr_report_write(o.output, &spec)) != MR_OK) goto done;
    printf("wrote %s/report.json, %s/report.csv, %s/report.html\n", o.output, o.output, o.output);
done:
    loaded_free(&ref);
    for (int i = 0; i < n_loaded; i++)
        loaded_free(&in[i]);
    if (zf.loaded) loaded_free(&zf);
    if (sd.loaded) loaded_free(&sd);
    return st == MR_OK ? 0 : mr_cli_fail("report", st);
}
