/*
 * report.c: validation reports (docs/reports.md): fastMRI metrics of one or more reconstructions
 * (and of a zero-filled baseline) against a reference, written as report.json (every number, the
 * inputs with their SHA-256, the configuration, the versions), report.csv (one row per slice per
 * method) and report.html (html.c).
 *
 * The numbers come from mr_metrics_volume, the same function `mrpipe metrics` uses, so a report and
 * `mrpipe metrics` never disagree. Everything is checked and computed, and all three files are
 * rendered in memory, before the first byte is written; the files are then written under temporary
 * names and renamed together, so a failure leaves no report file behind.
 *
 * Privacy: patient-identifying fields reach the report only through spec->patient and only when
 * spec->include_patient_info is set; nothing else read from the inputs is copied into a report.
 */
#include "mr_io.h"
#include "report_priv.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ================================================================ checks */

static const char *role_name(const mr_report_spec *sp, const mr_report_volume *v)
{
    if (v == &sp->reference) return "reference";
    if (v == sp->zero_filled) return "zero-filled input";
    if (v == sp->uncertainty) return "uncertainty";
    return "input";
}

/* A volume must be float32 (S, H, W) of the reference's shape. */
static mr_status check_volume(const mr_report_spec *sp, const mr_report_volume *v)
{
    const mr_array *a = v->image, *r = sp->reference.image;
    char s1[128], s2[128];
    const char *src = v->source ? v->source : "(unnamed)";
    if (!a || !a->data)
        return mr_error_set(MR_ERR_USAGE, "report: %s %s: no image", role_name(sp, v), src);
    if (a->dtype != MR_FLOAT32 || a->ndim != 3)
        return mr_error_set(MR_ERR_INPUT,
                            "%s: %s: expected a float32 (S, H, W) volume, found %s "
                            "dims %s",
                            src, role_name(sp, v), a->dtype == MR_FLOAT32 ? "float32" : "complex64",
                            mr_dims_format(s1, sizeof s1, a->ndim, a->dims));
    if (v == &sp->reference) return MR_OK;
    if (a->dims[0] != r->dims[0])
        return mr_error_set(MR_ERR_INPUT,
                            "%s: %s has %zu slices, the reference %s has %zu (shapes "
                            "%s and %s): expected the same slice count",
                            src, role_name(sp, v), a->dims[0], sp->reference.source, r->dims[0],
                            mr_dims_format(s1, sizeof s1, 3, a->dims),
                            mr_dims_format(s2, sizeof s2, 3, r->dims));
    if (a->dims[1] != r->dims[1] || a->dims[2] != r->dims[2])
        return mr_error_set(MR_ERR_INPUT,
                            "%s: %s of shape %s: expected the reference's shape %s "
                            "(%s) after the centre crop",
                            src, role_name(sp, v), mr_dims_format(s1, sizeof s1, 3, a->dims),
                            mr_dims_format(s2, sizeof s2, 3, r->dims), sp->reference.source);
    return MR_OK;
}

/* NaN/Inf in a volume the metrics do not check (the uncertainty map); negative SDs are errors too.
 */
static mr_status check_finite_sd(const mr_report_volume *v)
{
    const mr_array *a = v->image;
    const float *x = mr_array_f32(a);
    size_t hw = a->dims[1] * a->dims[2], n = mr_array_numel(a);
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i]) || x[i] < 0)
            return mr_error_set(MR_ERR_INPUT,
                                "%s: uncertainty (SD): expected finite values >= 0, "
                                "found %g at slice %zu, pixel (%zu, %zu)",
                                v->source, (double)x[i], i / hw, i % hw / a->dims[2],
                                i % a->dims[2]);
    return MR_OK;
}

/* ================================================================ derived numbers */

/* The label of method i: as given, else the source's base name without the extension (and with
 * ":dataset" when one was named). */
static void default_label(char *buf, size_t size, const mr_report_volume *v)
{
    const char *src = v->source ? v->source : "input";
    const char *base = strrchr(src, '/');
    static const char *const exts[] = {".nii.gz", ".nii", ".h5", ".hdf5", ".cfl", ".hdr"};
    char *dot;
    snprintf(buf, size, "%s", base ? base + 1 : src);
    for (size_t k = 0; k < sizeof exts / sizeof exts[0]; k++) {
        dot = strstr(buf, exts[k]);
        if (dot && (dot[strlen(exts[k])] == '\0' || dot[strlen(exts[k])] == ':')) {
            memmove(dot, dot + strlen(exts[k]), strlen(dot + strlen(exts[k])) + 1);
            break;
        }
    }
}

/* 99.5th percentile of n values (the maximum when that is 0; `fallback` when all are 0). */
static float robust_max(const float *x, size_t n, float fallback)
{
    float lo, hi, m = 0;
    mr_window_percentile(&lo, &hi, x, n, 0.0, 99.5);
    if (hi > 0) return hi;
    for (size_t i = 0; i < n; i++)
        m = x[i] > m ? x[i] : m;
    return m > 0 ? m : fallback;
}

/* Pearson correlation of a and b over n values (NaN when either is constant). */
static double pearson(const float *a, const float *b, size_t n)
{
    double ma = 0, mb = 0, sab = 0, saa = 0, sbb = 0;
    for (size_t i = 0; i < n; i++)
        ma += a[i], mb += b[i];
    ma /= (double)n;
    mb /= (double)n;
    for (size_t i = 0; i < n; i++) {
        double da = a[i] - ma, db = b[i] - mb;
        sab += da * db, saa += da * da, sbb += db * db;
    }
    return saa > 0 && sbb > 0 ? sab / sqrt(saa * sbb) : NAN;
}

/* Fill d from the spec: checks, labels, metrics, hashes, windows. */
static mr_status report_compute(mr_report_data *d, const mr_report_spec *sp, char (*labels)[256])
{
    const mr_array *ref = sp->reference.image;
    size_t n;
    float *scratch = NULL;
    mr_status st;

    if (sp->n_methods == 0 || !sp->methods)
        return mr_error_set(MR_ERR_USAGE,
                            "report: expected at least one reconstruction to compare");
    if ((st = check_volume(sp, &sp->reference)) != MR_OK) return st;
    for (size_t i = 0; i < sp->n_methods; i++)
        if ((st = check_volume(sp, &sp->methods[i])) != MR_OK) return st;
    if (sp->zero_filled && (st = check_volume(sp, sp->zero_filled)) != MR_OK) return st;
    if (sp->uncertainty && ((st = check_volume(sp, sp->uncertainty)) != MR_OK ||
                            (st = check_finite_sd(sp->uncertainty)) != MR_OK))
        return st;
    d->S = ref->dims[0], d->H = ref->dims[1], d->W = ref->dims[2];
    n = d->S * d->H * d->W;

    /* labels: as given or from the source; a repeated label gets " (2)", " (3)" ... */
    for (size_t i = 0; i < sp->n_methods; i++) {
        if (sp->methods[i].label && sp->methods[i].label[0])
            snprintf(labels[i], 256, "%s", sp->methods[i].label);
        else
            default_label(labels[i], 256, &sp->methods[i]);
        for (size_t j = 0, k = 2; j < i; j++)
            if (!strcmp(labels[i], labels[j])) {
                size_t len = strlen(labels[i]);
                snprintf(labels[i] + (len > 240 ? 240 : len), 16, " (%zu)", k++);
                j = (size_t)-1; /* check again from the start */
            }
        d->labels[i] = labels[i];
    }

    /* metrics: the same call as `mrpipe metrics` */
    for (size_t i = 0; i < sp->n_methods; i++)
        if ((st = mr_metrics_volume(&d->metrics[i], ref, sp->methods[i].image, sp->window)) !=
            MR_OK)
            return mr_error_prefix(st,
                                   "comparing %s with the reference %s: ", sp->methods[i].source,
                                   sp->reference.source);
    if (sp->zero_filled) {
        if ((st = mr_metrics_volume(&d->zf_metrics, ref, sp->zero_filled->image, sp->window)) !=
            MR_OK)
            return mr_error_prefix(st, "comparing the zero-filled input %s with the reference %s: ",
                                   sp->zero_filled->source, sp->reference.source);
        d->has_zf = 1;
    }

    /* hashes of the files compared */
    if (sp->reference.file && (st = mr_sha256_file(d->ref_sha, sp->reference.file)) != MR_OK)
        return st;
    for (size_t i = 0; i < sp->n_methods; i++)
        if (sp->methods[i].file && (st = mr_sha256_file(d->method_sha[i], sp->methods[i].file)))
            return st;
    if (sp->zero_filled && sp->zero_filled->file &&
        (st = mr_sha256_file(d->zf_sha, sp->zero_filled->file)) != MR_OK)
        return st;
    if (sp->uncertainty && sp->uncertainty->file &&
        (st = mr_sha256_file(d->sd_sha, sp->uncertainty->file)) != MR_OK)
        return st;

    /* slices shown */
    if (sp->n_slices > 0) {
        for (size_t k = 0; k < sp->n_slices; k++) {
            if (sp->slices[k] >= d->S)
                return mr_error_set(MR_ERR_USAGE,
                                    "report: slice %zu to show: expected 0..%zu "
                                    "(the reference %s has %zu slices)",
                                    sp->slices[k], d->S - 1, sp->reference.source, d->S);
            d->shown[k] = sp->slices[k];
        }
        d->n_shown = sp->n_slices;
    } else if (d->S < 3) {
        for (size_t s = 0; s < d->S; s++)
            d->shown[s] = s;
        d->n_shown = d->S;
    } else {
        for (size_t k = 0; k < 3; k++)
            d->shown[k] = (2 * k + 1) * d->S / 6; /* centres of thirds */
        d->n_shown = 3;
    }

    /* display windows */
    d->mag_lo = 0;
    d->mag_hi = robust_max(mr_array_f32(ref), n, 1);
    scratch = mr_malloc(n * sizeof *scratch * sp->n_methods);
    if (!scratch) return MR_ERR_NOMEM;
    for (size_t i = 0; i < sp->n_methods; i++) {
        const float *r = mr_array_f32(ref), *x = mr_array_f32(sp->methods[i].image);
        for (size_t p = 0; p < n; p++)
            scratch[i * n + p] = fabsf(x[p] - r[p]);
    }
    d->err_hi = robust_max(scratch, n * sp->n_methods, (float)(d->metrics[0].data_range * 1e-3));
    if (sp->uncertainty) {
        const float *sd = mr_array_f32(sp->uncertainty->image);
        double sum = 0, mx = 0;
        for (size_t p = 0; p < n; p++) {
            sum += sd[p];
            mx = sd[p] > mx ? sd[p] : mx;
        }
        d->sd_mean = sum / (double)n;
        d->sd_max = mx;
        d->sd_hi = robust_max(sd, n, 1);
        for (size_t i = 0; i < sp->n_methods; i++)
            d->sd_corr[i] = pearson(sd, scratch + i * n, n);
    }
    free(scratch);

    /* uncertainty figures: each method with its own SD map, else the report's */
    {
        mr_uq_params up;
        float sd_hi_own = 0;
        if (sp->uq_params)
            up = *sp->uq_params;
        else
            mr_uq_params_default(&up);
        d->uq_fg_fraction = up.fg_fraction;
        up.reference_name = sp->reference.source;
        for (size_t i = 0; i < sp->n_methods; i++) {
            const mr_array *sdi = sp->methods[i].uncertainty;
            if (sdi) {
                mr_report_volume tmp = sp->methods[i];
                tmp.image = sdi;
                tmp.source = sp->methods[i].uncertainty_source ? sp->methods[i].uncertainty_source
                                                                : labels[i];
                if ((st = check_volume(sp, &tmp)) != MR_OK) return st;
                d->own_sd = 1;
                d->method_sd_src[i] = tmp.source;
                sd_hi_own = fmaxf(sd_hi_own, robust_max(mr_array_f32(sdi), n, 0));
            } else if (sp->uncertainty) {
                sdi = sp->uncertainty->image;
                d->method_sd_src[i] = sp->uncertainty->source;
            }
            d->method_sd[i] = sdi;
            if (!sdi) continue;
            up.estimate_name = sp->methods[i].source;
            up.sd_name = d->method_sd_src[i];
            if ((st = mr_uq_metrics(&d->uq[i], ref, sp->methods[i].image, sdi, &up)) != MR_OK)
                return st;
            st = mr_uq_metrics_slices(d->uq_slices + i * d->S, ref, sp->methods[i].image, sdi, &up);
            if (st != MR_OK) {
                mr_uq_result_free(&d->uq[i]);
                d->method_sd[i] = NULL;
                return st;
            }
            d->n_uq++;
        }
        if (d->own_sd) {
            if (sd_hi_own > d->sd_hi) d->sd_hi = sd_hi_own;
            if (!(d->sd_hi > 0)) d->sd_hi = 1;
        }
    }

    /* timestamp */
    if (sp->created) {
        snprintf(d->created, sizeof d->created, "%s", sp->created);
    } else {
        time_t now = time(NULL);
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(d->created, sizeof d->created, "%Y-%m-%dT%H:%M:%SZ", &tm);
    }
    d->ssim_desc = sp->window == MR_SSIM_GAUSSIAN
                       ? "Gaussian window (sigma 1.5, 11x11), K1 0.01, K2 0.03, population "
                         "covariance, 5-pixel border crop (Wang et al. / MATLAB)"
                       : "7x7 uniform window, K1 0.01, K2 0.03, sample covariance, 3-pixel border "
                         "crop (skimage defaults, as fastMRI)";
    return MR_OK;
}

/* ================================================================ JSON */

static void json_shape(mr_strbuf *b, const size_t *dims)
{
    mr_strbuf_printf(b, "[%zu, %zu, %zu]", dims[0], dims[1], dims[2]);
}

static void json_values(mr_strbuf *b, const mr_metric_values *m)
{
    mr_strbuf_puts(b, "{\"nmse\": ");
    mr_strbuf_json_num(b, m->nmse);
    mr_strbuf_puts(b, ", \"psnr\": ");
    mr_strbuf_json_num(b, m->psnr);
    mr_strbuf_puts(b, ", \"ssim\": ");
    mr_strbuf_json_num(b, m->ssim);
    mr_strbuf_puts(b, "}");
}

/* The fields every input carries: source, file, dataset, sha256, shapes. */
static void json_input_fields(mr_strbuf *b, const mr_report_volume *v, const char *sha,
                              const mr_report_data *d, const char *indent)
{
    size_t shape[3] = {d->S, d->H, d->W};
    mr_strbuf_printf(b, "%s\"source\": ", indent);
    mr_strbuf_json_str(b, v->source);
    mr_strbuf_printf(b, ",\n%s\"file\": ", indent);
    mr_strbuf_json_str(b, v->file);
    mr_strbuf_printf(b, ",\n%s\"dataset\": ", indent);
    mr_strbuf_json_str(b, v->dataset);
    mr_strbuf_printf(b, ",\n%s\"sha256\": ", indent);
    mr_strbuf_json_str(b, sha[0] ? sha : NULL);
    mr_strbuf_printf(b, ",\n%s\"shape_loaded\": ", indent);
    json_shape(b, v->dims_loaded);
    mr_strbuf_printf(b, ",\n%s\"shape\": ", indent);
    json_shape(b, shape);
    mr_strbuf_printf(b, ",\n%s\"cropped\": %s", indent,
                     v->dims_loaded[1] != d->H || v->dims_loaded[2] != d->W ? "true" : "false");
}

/* A method's block (also the zero-filled baseline's): inputs, volume numbers, per-slice numbers. */
static void json_method(mr_strbuf *b, const char *label, const mr_report_volume *v, const char *sha,
                        const mr_metrics_result *m, const mr_report_data *d, long i)
{
    const int has_uq = i >= 0 && d->method_sd[i];
    mr_strbuf_puts(b, "{\n      \"label\": ");
    mr_strbuf_json_str(b, label);
    mr_strbuf_puts(b, ",\n");
    json_input_fields(b, v, sha, d, "      ");
    mr_strbuf_puts(b, ",\n      \"volume\": ");
    json_values(b, &m->volume);
    mr_strbuf_puts(b, ",\n      \"slices\": [");
    for (size_t s = 0; s < m->slices; s++) {
        mr_strbuf_printf(b, "%s\n        {\"slice\": %zu, \"nmse\": ", s ? "," : "", s);
        mr_strbuf_json_num(b, m->per_slice[s].nmse);
        mr_strbuf_puts(b, ", \"psnr\": ");
        mr_strbuf_json_num(b, m->per_slice[s].psnr);
        mr_strbuf_puts(b, ", \"ssim\": ");
        mr_strbuf_json_num(b, m->per_slice[s].ssim);
        if (has_uq) {
            char *u = mr_uq_result_json(&d->uq_slices[(size_t)i * d->S + s], 0, "        ");
            if (!u) b->failed = 1;
            mr_strbuf_printf(b, ", \"uq\": %s", u ? u : "null");
            free(u);
        }
        mr_strbuf_puts(b, "}");
    }
    mr_strbuf_puts(b, "\n      ]");
    if (i >= 0) {
        mr_strbuf_puts(b, ",\n      \"uncertainty_source\": ");
        mr_strbuf_json_str(b, has_uq ? d->method_sd_src[i] : NULL);
        mr_strbuf_puts(b, ",\n      \"uncertainty_metrics\": ");
        if (has_uq) {
            char *u = mr_uq_result_json(&d->uq[i], 1, "      ");
            if (!u) b->failed = 1;
            mr_strbuf_puts(b, u ? u : "null");
            free(u);
        } else {
            mr_strbuf_puts(b, "null");
        }
    }
    mr_strbuf_puts(b, "\n    }");
}

static void report_json(mr_strbuf *b, const mr_report_data *d)
{
    const mr_report_spec *sp = d->spec;
    const int gauss = sp->window == MR_SSIM_GAUSSIAN;
    mr_strbuf_puts(b, "{\n  \"format\": \"mrpipe-report\",\n  \"format_version\": 1,\n"
                      "  \"created\": ");
    mr_strbuf_json_str(b, d->created);
    mr_strbuf_puts(b, ",\n  \"mrpipe_version\": \"" MR_VERSION_STRING "\",\n  \"libraries\": {");
    for (size_t i = 0; i < sp->n_versions; i++) {
        mr_strbuf_puts(b, i ? ", " : "");
        mr_strbuf_json_str(b, sp->versions[i].key);
        mr_strbuf_puts(b, ": ");
        mr_strbuf_json_str(b, sp->versions[i].value);
    }
    mr_strbuf_puts(b, "},\n  \"command_line\": [");
    for (int i = 0; i < sp->argc; i++) {
        mr_strbuf_puts(b, i ? ", " : "");
        mr_strbuf_json_str(b, sp->argv[i]);
    }
    /* config: what was asked */
    mr_strbuf_puts(b, "],\n  \"config\": {\n    \"reference\": ");
    mr_strbuf_json_str(b, sp->reference.source);
    mr_strbuf_puts(b, ",\n    \"inputs\": [");
    for (size_t i = 0; i < sp->n_methods; i++) {
        mr_strbuf_puts(b, i ? ", " : "");
        mr_strbuf_json_str(b, sp->methods[i].source);
    }
    mr_strbuf_puts(b, "],\n    \"labels\": [");
    for (size_t i = 0; i < sp->n_methods; i++) {
        mr_strbuf_puts(b, i ? ", " : "");
        mr_strbuf_json_str(b, d->labels[i]);
    }
    mr_strbuf_puts(b, "],\n    \"zero_filled\": ");
    mr_strbuf_json_str(b, sp->zero_filled ? sp->zero_filled->source : NULL);
    mr_strbuf_puts(b, ",\n    \"uncertainty\": ");
    mr_strbuf_json_str(b, sp->uncertainty ? sp->uncertainty->source : NULL);
    mr_strbuf_puts(b, ",\n    \"slices_shown\": [");
    for (size_t k = 0; k < d->n_shown; k++)
        mr_strbuf_printf(b, "%s%zu", k ? ", " : "", d->shown[k]);
    mr_strbuf_printf(b,
                     "],\n    \"slices_shown_default\": %s,\n    \"ssim_window\": \"%s\",\n"
                     "    \"include_patient_info\": %s\n  },\n",
                     sp->n_slices ? "false" : "true", gauss ? "gaussian" : "uniform",
                     sp->include_patient_info ? "true" : "false");
    /* how the numbers are defined */
    mr_strbuf_printf(b,
                     "  \"metrics\": {\n    \"definition\": \"fastMRI (fastmri/evaluate.py): NMSE "
                     "and PSNR over the volume, SSIM the mean over slices\",\n"
                     "    \"data_range\": ");
    mr_strbuf_json_num(b, d->metrics[0].data_range);
    mr_strbuf_printf(
        b,
        ",\n    \"data_range_source\": \"maximum of the reference volume (also for "
        "per-slice PSNR and SSIM)\",\n"
        "    \"ssim\": {\"window\": \"%s\", \"size\": %d, \"sigma\": %s, \"k1\": 0.01, "
        "\"k2\": 0.03, \"sample_covariance\": %s, \"border_crop\": %d},\n",
        gauss ? "gaussian" : "uniform", gauss ? 11 : 7, gauss ? "1.5" : "null",
        gauss ? "false" : "true", gauss ? 5 : 3);
    {
        mr_uq_params up;
        if (sp->uq_params)
            up = *sp->uq_params;
        else
            mr_uq_params_default(&up);
        mr_strbuf_printf(b,
                         "    \"uncertainty\": {\"definition\": \"docs/validation.md: over the "
                         "foreground (reference > foreground_fraction x max): coverage of +-z SD, "
                         "Spearman of SD with the local RMS error and the oracle ceiling (errors "
                         "drawn from N(0, SD^2)), UCE, AUSE\", \"foreground_fraction\": %.17g, "
                         "\"local_window\": %d, \"uce_bins\": %zu, \"sparsification_steps\": "
                         "%zu, \"oracle_seed\": %llu}\n  },\n",
                         up.fg_fraction, 2 * up.radius + 1, up.n_bins, up.n_fractions,
                         (unsigned long long)up.seed);
    }
    mr_strbuf_printf(b, "  \"shape\": [%zu, %zu, %zu],\n  \"reference\": {\n", d->S, d->H, d->W);
    json_input_fields(b, &sp->reference, d->ref_sha, d, "    ");
    mr_strbuf_puts(b, "\n  },\n  \"methods\": [");
    for (size_t i = 0; i < sp->n_methods; i++) {
        mr_strbuf_puts(b, i ? ", " : "\n    ");
        json_method(b, d->labels[i], &sp->methods[i], d->method_sha[i], &d->metrics[i], d,
                    (long)i);
    }
    mr_strbuf_puts(b, "\n  ],\n  \"zero_filled\": ");
    if (d->has_zf)
        json_method(b, "zero-filled", sp->zero_filled, d->zf_sha, &d->zf_metrics, d, -1);
    else
        mr_strbuf_puts(b, "null");
    mr_strbuf_puts(b, ",\n  \"uncertainty\": ");
    if (sp->uncertainty) {
        mr_strbuf_puts(b, "{\n");
        json_input_fields(b, sp->uncertainty, d->sd_sha, d, "    ");
        mr_strbuf_puts(b, ",\n    \"mean\": ");
        mr_strbuf_json_num(b, d->sd_mean);
        mr_strbuf_puts(b, ",\n    \"max\": ");
        mr_strbuf_json_num(b, d->sd_max);
        mr_strbuf_puts(b, ",\n    \"abs_error_correlation\": [");
        for (size_t i = 0; i < sp->n_methods; i++) {
            mr_strbuf_puts(b, i ? ", " : "");
            mr_strbuf_puts(b, "{\"label\": ");
            mr_strbuf_json_str(b, d->labels[i]);
            mr_strbuf_puts(b, ", \"pearson_r\": ");
            mr_strbuf_json_num(b, d->sd_corr[i]);
            mr_strbuf_puts(b, "}");
        }
        mr_strbuf_puts(b, "]\n  }");
    } else {
        mr_strbuf_puts(b, "null");
    }
    mr_strbuf_puts(b, ",\n  \"display\": {\"magnitude_window\": [");
    mr_strbuf_json_num(b, d->mag_lo);
    mr_strbuf_puts(b, ", ");
    mr_strbuf_json_num(b, d->mag_hi);
    mr_strbuf_puts(b, "], \"error_window\": [0, ");
    mr_strbuf_json_num(b, d->err_hi);
    mr_strbuf_puts(b, "], \"uncertainty_window\": ");
    if (sp->uncertainty) {
        mr_strbuf_puts(b, "[0, ");
        mr_strbuf_json_num(b, d->sd_hi);
        mr_strbuf_puts(b, "]");
    } else {
        mr_strbuf_puts(b, "null");
    }
    mr_strbuf_puts(b, ", \"error_colormap\": \"inferno\", \"uncertainty_colormap\": \"viridis\"}");
    if (sp->include_patient_info) {
        mr_strbuf_puts(b, ",\n  \"patient\": {");
        for (size_t i = 0; i < sp->n_patient; i++) {
            mr_strbuf_puts(b, i ? ", " : "");
            mr_strbuf_json_str(b, sp->patient[i].key);
            mr_strbuf_puts(b, ": ");
            mr_strbuf_json_str(b, sp->patient[i].value);
        }
        mr_strbuf_puts(b, "}");
    }
    mr_strbuf_puts(b, "\n}\n");
}

/* ================================================================ CSV */

/* A CSV field (RFC 4180): quoted when it holds a comma, quote or line break. */
static void csv_field(mr_strbuf *b, const char *s)
{
    if (!strpbrk(s, ",\"\r\n")) {
        mr_strbuf_puts(b, s);
        return;
    }
    mr_strbuf_puts(b, "\"");
    for (; *s; s++)
        mr_strbuf_put(b, *s == '"' ? "\"\"" : s, *s == '"' ? 2 : 1);
    mr_strbuf_puts(b, "\"");
}

static void csv_number(mr_strbuf *b, double v)
{
    if (isinf(v))
        mr_strbuf_puts(b, v > 0 ? "inf" : "-inf");
    else if (isnan(v))
        mr_strbuf_puts(b, "nan");
    else
        mr_strbuf_printf(b, "%.17g", v);
}

static void csv_rows(mr_strbuf *b, const char *label, const mr_metrics_result *m,
                     const mr_report_data *d, long i)
{
    for (size_t s = 0; s < m->slices; s++) {
        csv_field(b, label);
        mr_strbuf_printf(b, ",%zu,", s);
        csv_number(b, m->per_slice[s].nmse);
        mr_strbuf_puts(b, ",");
        csv_number(b, m->per_slice[s].psnr);
        mr_strbuf_puts(b, ",");
        csv_number(b, m->per_slice[s].ssim);
        if (d->n_uq > 0) {
            if (i >= 0 && d->method_sd[i]) {
                char *u = mr_uq_result_csv(&d->uq_slices[(size_t)i * d->S + s]);
                if (!u) b->failed = 1;
                mr_strbuf_printf(b, ",%s", u ? u : "");
                free(u);
            } else {
                mr_strbuf_puts(b, ",,,,,,,,,,"); /* the 10 MR_UQ_CSV_COLUMNS, empty */
            }
        }
        mr_strbuf_puts(b, "\n");
    }
}

static void report_csv(mr_strbuf *b, const mr_report_data *d)
{
    mr_strbuf_puts(b, d->n_uq ? "method,slice,nmse,psnr,ssim," MR_UQ_CSV_COLUMNS "\n"
                              : "method,slice,nmse,psnr,ssim\n");
    for (size_t i = 0; i < d->spec->n_methods; i++)
        csv_rows(b, d->labels[i], &d->metrics[i], d, (long)i);
    if (d->has_zf) csv_rows(b, "zero-filled", &d->zf_metrics, d, -1);
}

/* ================================================================ output */

/* mkdir -p; *created receives 1 when the last component was created here. */
static mr_status make_dirs(const char *dir, int *created)
{
    char path[4096];
    size_t len = strlen(dir);
    *created = 0;
    if (mr_path_is_dir(dir)) return MR_OK;
    if (len == 0 || len >= sizeof path)
        return mr_error_set(MR_ERR_USAGE, "report: output directory '%s': bad path", dir);
    memcpy(path, dir, len + 1);
    for (char *p = path + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (!mr_path_is_dir(path) && mkdir(path, 0777) != 0 && errno != EEXIST) {
            int e = errno;
            return mr_error_set(MR_ERR_IO, "%s: cannot create the report directory (at %s): %s",
                                dir, path, strerror(e));
        }
        *p = '/';
    }
    if (mkdir(path, 0777) != 0 && errno != EEXIST) {
        int e = errno;
        return mr_error_set(MR_ERR_IO, "%s: cannot create the report directory: %s", dir,
                            strerror(e));
    }
    if (!mr_path_is_dir(path))
        return mr_error_set(MR_ERR_IO, "%s: expected a directory for the report, found a file",
                            dir);
    *created = 1;
    return MR_OK;
}

static mr_status write_all(const char *path, const mr_strbuf *b)
{
    FILE *f = fopen(path, "wb");
    int e;
    if (!f) {
        e = errno;
        return mr_error_set(MR_ERR_IO, "%s: cannot create: %s", path, strerror(e));
    }
    if (fwrite(b->data, 1, b->len, f) != b->len) {
        e = errno;
        fclose(f);
        return mr_error_set(MR_ERR_IO, "%s: write failed: %s", path, strerror(e));
    }
    if (fclose(f) != 0) {
        e = errno;
        return mr_error_set(MR_ERR_IO, "%s: write failed: %s", path, strerror(e));
    }
    return MR_OK;
}

#define N_FILES 3

/* Write the three files as a set: all temporaries first, then the renames; on failure nothing new
 * remains (renamed files are removed again, a directory made here is removed when empty). */
static mr_status write_set(const char *dir, const char *const names[N_FILES],
                           mr_strbuf *const bufs[N_FILES])
{
    mr_atomic_file af[N_FILES];
    char path[4096];
    int created, begun = 0, committed = 0;
    mr_status st;

    if ((st = make_dirs(dir, &created)) != MR_OK) return st;
    for (; begun < N_FILES; begun++) {
        if (snprintf(path, sizeof path, "%s/%s", dir, names[begun]) >= (int)sizeof path) {
            st = mr_error_set(MR_ERR_USAGE, "%s: output path too long", dir);
            goto fail;
        }
        if ((st = mr_atomic_begin(&af[begun], path)) != MR_OK) goto fail;
        if ((st = write_all(af[begun].tmp_path, bufs[begun])) != MR_OK) {
            begun++; /* its temporary may exist */
            goto fail;
        }
    }
    for (; committed < N_FILES; committed++)
        if ((st = mr_atomic_commit(&af[committed])) != MR_OK) goto fail;
    return MR_OK;
fail:
    for (int i = 0; i < committed; i++)
        unlink(af[i].final_path);
    for (int i = committed; i < begun; i++)
        mr_atomic_abort(&af[i]);
    if (created) rmdir(dir); /* fails harmlessly when not empty */
    return st;
}

mr_status mr_report_write(const char *dir, const mr_report_spec *sp)
{
    static const char *const names[N_FILES] = {"report.json", "report.csv", "report.html"};
    mr_report_data d;
    mr_strbuf json = {0}, csv = {0}, html = {0};
    mr_strbuf *const bufs[N_FILES] = {&json, &csv, &html};
    char(*labels)[256] = NULL;
    mr_status st;
    size_t nm;

    if (!dir || !*dir) return mr_error_set(MR_ERR_USAGE, "report: no output directory");
    if (!sp) return mr_error_set(MR_ERR_USAGE, "report: no specification");
    nm = sp->n_methods ? sp->n_methods : 1;
    memset(&d, 0, sizeof d);
    d.spec = sp;
    d.labels = calloc(nm, sizeof *d.labels);
    d.metrics = calloc(nm, sizeof *d.metrics);
    d.method_sha = calloc(nm, sizeof *d.method_sha);
    d.sd_corr = calloc(nm, sizeof *d.sd_corr);
    d.method_sd = calloc(nm, sizeof *d.method_sd);
    d.method_sd_src = calloc(nm, sizeof *d.method_sd_src);
    d.uq = calloc(nm, sizeof *d.uq);
    d.uq_slices = calloc(nm * (sp->reference.image && sp->reference.image->ndim == 3
                                   ? sp->reference.image->dims[0]
                                   : 1),
                         sizeof *d.uq_slices);
    d.shown = calloc(sp->n_slices > 3 ? sp->n_slices : 3, sizeof *d.shown);
    labels = calloc(nm, sizeof *labels);
    if (!d.labels || !d.metrics || !d.method_sha || !d.sd_corr || !d.shown || !labels ||
        !d.method_sd || !d.method_sd_src || !d.uq || !d.uq_slices) {
        st = mr_error_set(MR_ERR_NOMEM, "report: out of memory");
        goto done;
    }
    if ((st = report_compute(&d, sp, labels)) != MR_OK) goto done;
    report_json(&json, &d);
    report_csv(&csv, &d);
    if ((st = mr_report_html_render(&html, &d)) != MR_OK) goto done;
    if (json.failed || csv.failed) {
        st = mr_error_set(MR_ERR_NOMEM, "report: out of memory building report.json/report.csv");
        goto done;
    }
    st = write_set(dir, names, bufs);
done:
    for (size_t i = 0; d.metrics && i < nm; i++)
        mr_metrics_result_free(&d.metrics[i]);
    if (d.has_zf) mr_metrics_result_free(&d.zf_metrics);
    for (size_t i = 0; d.method_sd && i < nm; i++)
        if (d.method_sd[i]) {
            mr_uq_result_free(&d.uq[i]);
            for (size_t s = 0; s < d.S; s++)
                mr_uq_result_free(&d.uq_slices[i * d.S + s]);
        }
    free(d.method_sd);
    free(d.method_sd_src);
    free(d.uq);
    free(d.uq_slices);
    free(d.labels);
    free(d.metrics);
    free(d.method_sha);
    free(d.sd_corr);
    free(d.shown);
    free(labels);
    mr_strbuf_free(&json);
    mr_strbuf_free(&csv);
    mr_strbuf_free(&html);
    return st;
}
