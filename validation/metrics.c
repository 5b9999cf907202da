/*
 * metrics.c: NMSE, PSNR, NRMSE over whole volumes, and fastMRI's per-volume metrics with per-slice
 * values (fastmri/evaluate.py; ../shared/REFERENCE.md "fastMRI metrics"; sums in double):
 *   NMSE = ||gt - pred||^2 / ||gt||^2 over the volume,
 *   PSNR = 10 log10(maxval^2 / MSE), MSE over the volume, maxval = max of the reference VOLUME,
 *   SSIM = mean over slices of the 2-D SSIM (ssim.c) with data_range = maxval.
 * Per-slice values use the same volume maxval for PSNR and SSIM (not the slice's own max, the
 * mistake fixed in fastMRI PR 130); the per-slice NMSE uses the slice's own norm.
 */
#include "mr_validation.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void sums(double *err2, double *ref2, double *maxv, const float *gt, const float *pred,
                 size_t n)
{
    double e = 0, r = 0, m = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        double d = (double)gt[i] - (double)pred[i];
        e += d * d;
        r += (double)gt[i] * gt[i];
        if (gt[i] > m) m = gt[i];
    }
    *err2 = e;
    *ref2 = r;
    *maxv = m;
}

double mr_metric_nmse(const float *gt, const float *pred, size_t n)
{
    double e, r, m;
    sums(&e, &r, &m, gt, pred, n);
    return e / r;
}

double mr_metric_psnr(const float *gt, const float *pred, size_t n)
{
    double e, r, m;
    sums(&e, &r, &m, gt, pred, n);
    if (e == 0) return INFINITY;
    return 10.0 * log10(m * m / (e / (double)n));
}

double mr_metric_nrmse(const float *gt, const float *pred, size_t n)
{
    double e, r, m;
    sums(&e, &r, &m, gt, pred, n);
    return sqrt(e / r);
}

/* One parallel, vectorised pass over both volumes: is any value non-finite, and the reference's
 * maximum. */
static void volume_scan(int *bad_ref, int *bad_in, float *maxv, const float *gt, const float *pr,
                        size_t n)
{
    int br = 0, bi = 0;
    float m = -FLT_MAX;
#pragma omp parallel for simd num_threads(mr_threads()) schedule(static) reduction(|               \
                                                                                   : br, bi)       \
    reduction(max                                                                                  \
              : m)
    for (size_t i = 0; i < n; i++) {
        br |= !(fabsf(gt[i]) <= FLT_MAX);
        bi |= !(fabsf(pr[i]) <= FLT_MAX);
        m = gt[i] > m ? gt[i] : m;
    }
    *bad_ref = br;
    *bad_in = bi;
    *maxv = m;
}

/* First non-finite value of an (S, H, W) volume: slice, row, column (after volume_scan found one).
 */
static void volume_nonfinite(size_t *s, size_t *y, size_t *x, float *val, const float *v,
                             size_t slices, size_t h, size_t w)
{
    size_t hw = h * w;
    for (size_t i = 0; i < slices * hw; i++)
        if (!isfinite(v[i])) {
            *s = i / hw;
            *y = (i % hw) / w;
            *x = i % w;
            *val = v[i];
            return;
        }
}

/* (S, H, W) view of a float32 array of rank 2 or 3. */
static mr_status volume_shape(size_t *s, size_t *h, size_t *w, const mr_array *a, const char *what)
{
    char shape[128];
    if (!a || a->dtype != MR_FLOAT32 || (a->ndim != 2 && a->ndim != 3))
        return mr_error_set(MR_ERR_INPUT,
                            "metrics: %s: expected a float32 (S, H, W) or (H, W) "
                            "array, found %s%s",
                            what, a && a->dtype != MR_FLOAT32 ? "complex64 " : "",
                            a ? mr_dims_format(shape, sizeof shape, a->ndim, a->dims) : "nothing");
    *s = a->ndim == 3 ? a->dims[0] : 1;
    *h = a->dims[a->ndim - 2];
    *w = a->dims[a->ndim - 1];
    return MR_OK;
}

mr_status mr_metrics_volume(mr_metrics_result *out, const mr_array *ref, const mr_array *img,
                            mr_ssim_window window)
{
    size_t S, H, W, s2, h2, w2, bs = 0, by = 0, bx = 0, hw;
    float bad = 0;
    char a[128], b[128];
    mr_status st;
    const float *gt, *pr;
    double maxv = -INFINITY, err2 = 0, ref2 = 0, ssim_sum = 0, *sums;
    int failed = 0;
    mr_status fail_st = MR_OK;
    char fail_msg[1024] = "";

    memset(out, 0, sizeof *out);
    if ((st = volume_shape(&S, &H, &W, ref, "reference")) != MR_OK) return st;
    if ((st = volume_shape(&s2, &h2, &w2, img, "input")) != MR_OK) return st;
    if (S != s2 || H != h2 || W != w2)
        return mr_error_set(MR_ERR_INPUT,
                            "metrics: the reference %s and the input %s differ in "
                            "shape; expected the same (S, H, W) (centre-crop first)",
                            mr_dims_format(a, sizeof a, ref->ndim, ref->dims),
                            mr_dims_format(b, sizeof b, img->ndim, img->dims));
    gt = mr_array_f32(ref);
    pr = mr_array_f32(img);
    hw = H * W;
    {
        int bad_ref, bad_in;
        float m;
        volume_scan(&bad_ref, &bad_in, &m, gt, pr, S * hw);
        if (bad_ref) {
            volume_nonfinite(&bs, &by, &bx, &bad, gt, S, H, W);
            return mr_error_set(MR_ERR_INPUT,
                                "metrics: reference: expected finite values, found "
                                "%g at slice %zu, pixel (row %zu, column %zu)",
                                (double)bad, bs, by, bx);
        }
        if (bad_in) {
            volume_nonfinite(&bs, &by, &bx, &bad, pr, S, H, W);
            return mr_error_set(MR_ERR_INPUT,
                                "metrics: input: expected finite values, found %g at "
                                "slice %zu, pixel (row %zu, column %zu)",
                                (double)bad, bs, by, bx);
        }
        maxv = m;
    }
    {
        int win = mr_ssim_window_size(window);
        if (H < (size_t)win || W < (size_t)win)
            return mr_error_set(MR_ERR_INPUT,
                                "metrics: slices of %zu x %zu pixels are smaller than "
                                "the %s SSIM window (%d x %d); both sides must be at least %d "
                                "(skimage refuses such images too)",
                                H, W, mr_ssim_window_name(window), win, win, win);
    }
    if (!(maxv > 0))
        return mr_error_set(MR_ERR_INPUT,
                            "metrics: PSNR undefined: the reference's maximum is %g; "
                            "fastMRI's PSNR and SSIM use it as the data range, which must be > 0 "
                            "(an all-zero or non-positive reference volume?)",
                            maxv);
    out->per_slice = mr_calloc(S, sizeof *out->per_slice);
    sums = mr_calloc(2 * S, sizeof *sums); /* (S, 2): ||gt - pred||^2 and ||gt||^2 per slice */
    if (!out->per_slice || !sums) {
        free(sums);
        mr_metrics_result_free(out);
        return MR_ERR_NOMEM;
    }
    out->slices = S;
    out->data_range = maxv;

#pragma omp parallel num_threads(mr_threads()) reduction(+ : failed)
    {
        mr_ssim_plan *plan = NULL;
        mr_status pst = mr_ssim_plan_create(&plan, H, W, window);
        if (pst != MR_OK) {
            failed = 1;
#pragma omp critical(mr_metrics_fail)
            if (fail_st == MR_OK) {
                fail_st = pst;
                snprintf(fail_msg, sizeof fail_msg, "%s", mr_error_message());
            }
        }
#pragma omp for schedule(dynamic)
        for (size_t s = 0; s < S; s++) {
            const float *g = gt + s * hw, *p = pr + s * hw;
            double e = 0, r = 0;
            mr_metric_values *v = &out->per_slice[s];
            if (!plan) continue;
#pragma omp simd reduction(+ : e, r)
            for (size_t i = 0; i < hw; i++) {
                double d = (double)g[i] - (double)p[i];
                e += d * d;
                r += (double)g[i] * (double)g[i];
            }
            sums[2 * s] = e;
            sums[2 * s + 1] = r;
            /* an all-zero reference slice has no NMSE of its own: +inf, or NaN when also exact */
            v->nmse = r > 0 ? e / r : (e > 0 ? INFINITY : NAN);
            v->psnr = e == 0 ? INFINITY : 10.0 * log10(maxv * maxv / (e / (double)hw));
            v->ssim = mr_ssim_plan_execute(plan, g, p, maxv);
        }
        mr_ssim_plan_destroy(plan);
    }
    if (failed) {
        free(sums);
        mr_metrics_result_free(out);
        return mr_error_set(fail_st == MR_OK ? MR_ERR_INTERNAL : fail_st, "%s", fail_msg);
    }
    /* Volume values from the slice sums in slice order: the same whatever the thread count. */
    for (size_t s = 0; s < S; s++) {
        err2 += sums[2 * s];
        ref2 += sums[2 * s + 1];
        ssim_sum += out->per_slice[s].ssim;
    }
    free(sums);
    out->volume.nmse = err2 / ref2;
    out->volume.psnr =
        err2 == 0 ? INFINITY : 10.0 * log10(maxv * maxv / (err2 / ((double)S * (double)hw)));
    out->volume.ssim = ssim_sum / (double)S;
    return MR_OK;
}

void mr_metrics_result_free(mr_metrics_result *r)
{
    if (!r) return;
    free(r->per_slice);
    r->per_slice = NULL;
    r->slices = 0;
}
