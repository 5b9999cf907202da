/*
 * stage_validate.c: the validate and report stages.
 *  - validate: load the reference (the input's reconstruction_rss / _esc, or a file per scan named
 *    by a pattern), centre-crop each reconstruction to its in-plane size (as fastMRI's evaluation
 *    does), and compute fastMRI's NMSE / PSNR / SSIM per volume (mr_metrics_volume).
 *  - report: the validation module's report (report.html, report.json, report.csv; mr_report_write)
 *    over the reference and the reconstructions.
 */
#include "mr_pipeline.h"
#include "mr_recon.h"
#include "mr_stages.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ================================================================ validate */

typedef struct {
    char *reference;      /* "auto" or a pattern with {id}, {dir}, {name} */
    int ref_from_file;    /* relative patterns are relative to ref_base */
    char ref_base[4096];
    mr_ssim_window window;
    char (*images)[64];
    size_t n_images;
} validate_state;

static const mr_stage_key validate_keys[] = {
    {"reference", MR_KEY_STRING, "auto", 0,
     "auto (the input's reconstruction_rss/_esc) or a file per scan: a pattern with {id} (output "
     "name), {dir} (input's folder), {name} (input's file name); FILE.h5:DATASET picks a dataset"},
    {"window", MR_KEY_STRING, "uniform", 0, "SSIM window: uniform (fastMRI, 7x7) or gaussian"},
    {"images", MR_KEY_LIST, "[]", 0, "images to score (recon / denoise outputs, input); [] = all"},
    {NULL, 0, NULL, 0, NULL},
};

/* Expand the reference pattern for one input into out (the file part, without ":DATASET", goes to
 * file when not NULL). */
static void expand_ref(char *out, size_t size, char *file, size_t fsize, const validate_state *s,
                       const char *input, const char *id)
{
    char dir[4096], name[4096], tmp[8192];
    const char *slash = strrchr(input, '/');
    size_t o = 0;
    if (slash) {
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - input), input);
        snprintf(name, sizeof name, "%s", slash + 1);
    } else {
        snprintf(dir, sizeof dir, ".");
        snprintf(name, sizeof name, "%s", input);
    }
    for (const char *p = s->reference; *p && o + 1 < sizeof tmp;) {
        const char *rep = NULL;
        size_t skip = 0;
        if (!strncmp(p, "{id}", 4)) rep = id, skip = 4;
        else if (!strncmp(p, "{dir}", 5)) rep = dir, skip = 5;
        else if (!strncmp(p, "{name}", 6)) rep = name, skip = 6;
        if (rep) {
            o += (size_t)snprintf(tmp + o, sizeof tmp - o, "%s", rep);
            if (o >= sizeof tmp) o = sizeof tmp - 1;
            p += skip;
        } else {
            tmp[o++] = *p++;
        }
    }
    tmp[o] = '\0';
    int n = tmp[0] == '/' || !s->ref_from_file ? snprintf(out, size, "%s", tmp)
                                                : snprintf(out, size, "%s/%s", s->ref_base, tmp);
    if (n < 0 || (size_t)n >= size) out[size - 1] = '\0'; /* cut; the file check then fails */
    if (file) {
        snprintf(file, fsize, "%s", out);
        char *colon = strrchr(file, ':');
        if (colon && colon > file) {
            *colon = '\0';
            if (!mr_path_has_suffix(file, ".h5") && !mr_path_has_suffix(file, ".hdf5"))
                *colon = ':';
        }
    }
}

static void validate_destroy(void *state)
{
    validate_state *s = state;
    if (!s) return;
    free(s->reference);
    free(s->images);
    free(s);
}

static mr_status validate_create(void **state, const mr_stage_ctx *x)
{
    validate_state *s = mr_calloc(1, sizeof *s);
    const mr_cfg_node *r = mr_cfg_child(x->node, "reference"), *w = mr_cfg_child(x->node, "window");
    mr_status st = MR_OK;
    if (!s) return MR_ERR_NOMEM;
    if (!(s->reference = strdup(r->value))) st = MR_ERR_NOMEM;
    s->ref_from_file = r->line != 0 && strcmp(x->config->dir, ".") != 0;
    snprintf(s->ref_base, sizeof s->ref_base, "%s", x->config->dir);
    if (st == MR_OK) {
        if (!strcmp(w->value, "uniform")) s->window = MR_SSIM_UNIFORM;
        else if (!strcmp(w->value, "gaussian")) s->window = MR_SSIM_GAUSSIAN;
        else st = mr_config_error(x->config, w, MR_ERR_USAGE, "expected uniform or gaussian, found "
                                  "'%s'", w->value);
    }
    if (st == MR_OK && !r->value[0])
        st = mr_config_error(x->config, r, MR_ERR_USAGE, "expected auto or a file pattern, found "
                             "nothing");
    /* a reference file must exist for every input, before any work */
    if (st == MR_OK && strcmp(s->reference, "auto") != 0)
        for (size_t i = 0; i < x->pipeline->n_inputs && st == MR_OK; i++) {
            char spec[8192], file[8192];
            expand_ref(spec, sizeof spec, file, sizeof file, s, x->pipeline->inputs[i],
                       x->pipeline->ids[i]);
            if (access(file, R_OK) != 0)
                st = mr_config_error(x->config, r, MR_ERR_INPUT, "reference file %s (for input %s) "
                                     "not found", file, x->pipeline->inputs[i]);
        }
    if (st == MR_OK)
        st = mr_stage_check_images(&s->images, &s->n_images, x, mr_cfg_child(x->node, "images"));
    if (st != MR_OK) {
        validate_destroy(s);
        return st;
    }
    *state = s;
    return MR_OK;
}

/* Centre crop (S, h, w) float32 to (S, oh, ow) into a new array (offset (n - crop) / 2). */
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

static mr_status load_reference(validate_state *s, mr_scan *scan)
{
    mr_array *ref = NULL;
    mr_status st;
    char spec[8192];
    if (!strcmp(s->reference, "auto")) {
        st = mr_image_load(&ref, scan->reference_desc, sizeof scan->reference_desc,
                           scan->kspace_path, 1);
        if (st != MR_OK)
            return mr_error_prefix(st, "reference (auto: the input's reconstruction_rss/_esc): ");
        /* the input's reference covers all its slices; keep the ones reconstructed */
        size_t total = scan->src ? mr_kspace_get_info(scan->src)->slices : ref->dims[0];
        size_t S = scan->slice_b - scan->slice_a;
        if (scan->src && ref->dims[0] == total && S != total) {
            size_t dims[3] = {S, ref->dims[1], ref->dims[2]}, hw = ref->dims[1] * ref->dims[2];
            mr_array *sub = NULL;
            if ((st = mr_array_create(&sub, MR_FLOAT32, 3, dims)) != MR_OK) {
                mr_array_destroy(ref);
                return st;
            }
            memcpy(mr_array_f32(sub), mr_array_f32(ref) + scan->slice_a * hw, S * hw * sizeof(float));
            mr_array_destroy(ref);
            ref = sub;
        }
    } else {
        expand_ref(spec, sizeof spec, NULL, 0, s, scan->input, scan->id);
        if ((st = mr_image_load(&ref, scan->reference_desc, sizeof scan->reference_desc, spec, 1)) !=
            MR_OK)
            return mr_error_prefix(st, "reference: ");
    }
    /* name a reference inside the scan's own outputs by its final name (kspace.h5:...), not the
     * temporary directory: metrics.json must not depend on the run */
    size_t wl = strlen(scan->work_dir);
    if (!strncmp(scan->reference_desc, scan->work_dir, wl) && scan->reference_desc[wl] == '/')
        memmove(scan->reference_desc, scan->reference_desc + wl + 1,
                strlen(scan->reference_desc + wl + 1) + 1);
    mr_array_destroy(scan->reference);
    scan->reference = ref;
    return MR_OK;
}

static mr_status validate_run(void *state, mr_scan *scan)
{
    validate_state *s = state;
    mr_status st;
    if ((st = load_reference(s, scan)) != MR_OK) return st;
    const mr_array *ref = scan->reference;
    for (size_t i = 0; i < scan->n_images; i++) {
        mr_scan_image *im = &scan->images[i];
        mr_array *cropped = NULL;
        int want = !s->n_images;
        for (size_t j = 0; j < s->n_images; j++)
            if (!strcmp(s->images[j], im->label)) want = 1;
        if (!want) continue;
        if (im->image->dims[0] != ref->dims[0])
            return mr_error_set(MR_ERR_INPUT, "%s: %zu slice(s) reconstructed, the reference %s has "
                                "%zu", im->label, im->image->dims[0], scan->reference_desc,
                                ref->dims[0]);
        if (im->image->dims[1] < ref->dims[1] || im->image->dims[2] < ref->dims[2])
            return mr_error_set(MR_ERR_INPUT, "%s: images of %zu x %zu are smaller than the "
                                "reference %s (%zu x %zu)", im->label, im->image->dims[1],
                                im->image->dims[2], scan->reference_desc, ref->dims[1],
                                ref->dims[2]);
        if ((st = crop_volume(&cropped, im->image, ref->dims[1], ref->dims[2])) != MR_OK) return st;
        if (im->has_metrics) mr_metrics_result_free(&im->metrics);
        im->has_metrics = 0;
        st = mr_metrics_volume(&im->metrics, ref, cropped, s->window);
        mr_array_destroy(cropped);
        if (st != MR_OK) return mr_error_prefix(st, "%s vs %s: ", im->label, scan->reference_desc);
        im->has_metrics = 1;
        MR_INFO("%s: %s: NMSE %.4g  PSNR %.2f dB  SSIM %.4f", scan->id, im->label,
                im->metrics.volume.nmse, im->metrics.volume.psnr, im->metrics.volume.ssim);
    }
    return MR_OK;
}

const mr_stage mr_stage_validate = {
    "validate", "fastMRI NMSE / PSNR / SSIM of each reconstruction against a reference",
    validate_keys, validate_create, validate_run, validate_destroy,
};

/* ================================================================ report */

typedef struct {
    size_t *slices;
    size_t n_slices;
    mr_ssim_window window;
    char zero_filled[64];
    int patient_info;
} report_state;

static const mr_stage_key report_keys[] = {
    {"slices", MR_KEY_LIST, "[]", 0, "slices shown (0-based); [] = 3 evenly spread"},
    {"window", MR_KEY_STRING, "uniform", 0, "SSIM window: uniform or gaussian"},
    {"zero_filled", MR_KEY_STRING, "none", 0,
     "image (recon stage name) shown as the zero-filled baseline, or none"},
    {"patient_info", MR_KEY_BOOL, "false", 0, "include patient-identifying fields"},
    {NULL, 0, NULL, 0, NULL},
};

static void report_destroy(void *state)
{
    report_state *s = state;
    if (!s) return;
    free(s->slices);
    free(s);
}

static mr_status report_create(void **state, const mr_stage_ctx *x)
{
    report_state *s = mr_calloc(1, sizeof *s);
    const mr_cfg_node *sl = mr_cfg_child(x->node, "slices"), *w = mr_cfg_child(x->node, "window");
    const mr_cfg_node *zf = mr_cfg_child(x->node, "zero_filled");
    mr_status st = MR_OK;
    if (!s) return MR_ERR_NOMEM;
    if (sl->n && !(s->slices = mr_calloc(sl->n, sizeof *s->slices))) st = MR_ERR_NOMEM;
    for (size_t i = 0; i < sl->n && st == MR_OK; i++) {
        long v;
        if ((st = mr_cfg_as_long(&v, x->config, sl->items[i], 0, 1L << 30)) == MR_OK)
            s->slices[s->n_slices++] = (size_t)v;
    }
    if (st == MR_OK) {
        if (!strcmp(w->value, "uniform")) s->window = MR_SSIM_UNIFORM;
        else if (!strcmp(w->value, "gaussian")) s->window = MR_SSIM_GAUSSIAN;
        else st = mr_config_error(x->config, w, MR_ERR_USAGE, "expected uniform or gaussian, found "
                                  "'%s'", w->value);
    }
    if (st == MR_OK && strcmp(zf->value, "none") != 0) {
        if (!mr_pipeline_image_known(x->pipeline, mr_stage_ctx_index(x), zf->value))
            st = mr_config_error(x->config, zf, MR_ERR_USAGE, "no recon stage (or image) named "
                                 "'%s'", zf->value);
        snprintf(s->zero_filled, sizeof s->zero_filled, "%s", zf->value);
    }
    if (st == MR_OK)
        st = mr_cfg_as_bool(&s->patient_info, x->config, mr_cfg_child(x->node, "patient_info"));
    if (st != MR_OK) {
        report_destroy(s);
        return st;
    }
    *state = s;
    return MR_OK;
}

static mr_status report_run(void *state, mr_scan *scan)
{
    report_state *s = state;
    mr_report_volume methods[MR_SCAN_MAX_IMAGES], zf;
    mr_array *cropped[MR_SCAN_MAX_IMAGES] = {0}, *unc_cropped[MR_SCAN_MAX_IMAGES] = {0};
    mr_version_entry ver[MR_VERSIONS_MAX];
    mr_report_field fields[MR_VERSIONS_MAX];
    mr_report_spec spec;
    size_t n = 0, nv = mr_versions_collect(ver);
    int has_zf = 0;
    char unc_label[MR_SCAN_MAX_IMAGES][128];
    mr_status st = MR_OK;
    const mr_array *ref = scan->reference;
    if (!ref) return mr_error_set(MR_ERR_INPUT, "no reference (the validate stage loads it)");
    memset(&spec, 0, sizeof spec);
    memset(&zf, 0, sizeof zf);
    for (size_t i = 0; i < nv; i++) fields[i] = (mr_report_field){ver[i].name, ver[i].value};
    for (size_t i = 0; i < scan->n_images && st == MR_OK; i++) {
        const mr_scan_image *im = &scan->images[i];
        if (im->image->dims[0] != ref->dims[0] || im->image->dims[1] < ref->dims[1] ||
            im->image->dims[2] < ref->dims[2])
            continue; /* validate has said why */
        if ((st = crop_volume(&cropped[i], im->image, ref->dims[1], ref->dims[2])) != MR_OK) break;
        mr_report_volume v;
        memset(&v, 0, sizeof v);
        v.label = im->label;
        v.source = im->label;
        v.image = cropped[i];
        memcpy(v.dims_loaded, im->image->dims, sizeof v.dims_loaded);
        /* an image's own SD map goes with it (judged against its own error only) */
        if (im->uncertainty &&
            (st = crop_volume(&unc_cropped[i], im->uncertainty, ref->dims[1], ref->dims[2])) == MR_OK) {
            snprintf(unc_label[i], sizeof unc_label[i], "%s SD (%s)", im->label,
                     im->uncertainty_kind[0] ? im->uncertainty_kind : "uncertainty");
            v.uncertainty = unc_cropped[i];
            v.uncertainty_source = unc_label[i];
        }
        if (st != MR_OK) break;
        if (!strcmp(im->label, s->zero_filled)) {
            zf = v;
            has_zf = 1;
        } else {
            methods[n++] = v;
        }
    }
    if (st == MR_OK && n == 0)
        st = mr_error_set(MR_ERR_INPUT, "no reconstruction to report (besides the zero-filled one)");
    if (st == MR_OK) {
        spec.reference.label = "reference";
        spec.reference.source = scan->reference_desc;
        spec.reference.image = ref;
        memcpy(spec.reference.dims_loaded, ref->dims, sizeof spec.reference.dims_loaded);
        spec.methods = methods;
        spec.n_methods = n;
        spec.zero_filled = has_zf ? &zf : NULL;
        spec.uncertainty = NULL; /* each method carries its own map (a map judges its image only) */
        spec.slices = s->slices;
        spec.n_slices = s->n_slices;
        spec.window = s->window;
        spec.versions = fields;
        spec.n_versions = nv;
        spec.include_patient_info = s->patient_info;
        st = mr_report_write(scan->work_dir, &spec);
    }
    for (size_t i = 0; i < scan->n_images; i++) {
        mr_array_destroy(cropped[i]);
        mr_array_destroy(unc_cropped[i]);
    }
    return st;
}

const mr_stage mr_stage_report = {
    "report", "report.html / .json / .csv: metrics, images, |error| maps (validation module)",
    report_keys, report_create, report_run, report_destroy,
};
