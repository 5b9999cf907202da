/*
 * uncertainty.c: how honest a per-pixel uncertainty (standard-deviation) map is, judged against the
 * actual error of an estimate on data with a known reference (issue 6; ../shared/REFERENCE.md
 * "Uncertainty maps and how they are judged"; docs/validation.md "Uncertainty maps").
 *
 * Over the foreground F (reference > fg_fraction x the reference volume's max), with e = est - ref
 * and s the SD, N = |F|:
 *   coverage(z)   = #{p in F : |e_p| <= z s_p} / N, z = 1, 1.645, 1.96 (nominal erf(z / sqrt 2));
 *   local RMS     l_p = sqrt(mean of e_q^2 over the (2r+1)^2 window around p, truncated at the
 *                 slice border: only pixels inside the slice count, foreground or not);
 *   Spearman      rho(s, l) over F: Pearson of average ranks (scipy.stats.spearmanr);
 *   oracle        the same rho with e replaced by synthetic o_p = s_p g_p, g_p standard normal
 *                 from mr_rng(seed) drawn in C order over the whole volume: what a perfectly
 *                 calibrated map with this spatial pattern reaches (a single draw per pixel caps
 *                 any correlation with the local RMS below 1);
 *   UCE           (Laves et al. 2020) pixels sorted by s (ties by pixel order), B = min(n_bins, N)
 *                 equal-count bins [floor(bN/B), floor((b+1)N/B)), UCE = sum_b N_b/N
 *                 |MSE_b - meanVar_b|;
 *   AUSE          (Ilg et al. 2018) for f_k = k / K: drop the floor(f_k N) pixels of largest s
 *                 (ties: earlier pixel first), RMSE of the rest / RMSE of all; the oracle curve
 *                 drops the largest |e|; AUSE = trapezoid integral of (curve - oracle) over f.
 * Everything is sort-based, O(N log N) time and O(N) memory; sums in double.
 */
#include "report_priv.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const double Z_LEVELS[MR_UQ_N_LEVELS] = {1.0, 1.645, 1.96};

void mr_uq_params_default(mr_uq_params *p)
{
    memset(p, 0, sizeof *p);
    p->fg_fraction = 0.05;
    p->fg_threshold = NAN;
    p->radius = 2;
    p->n_bins = 20;
    p->n_fractions = 100;
    p->seed = 1;
}

void mr_uq_result_free(mr_uq_result *r)
{
    if (!r) return;
    free(r->bin_mean_var);
    free(r->bin_mse);
    free(r->bin_count);
    free(r->fraction);
    free(r->sparse_uncertainty);
    free(r->sparse_oracle);
    r->bin_mean_var = r->bin_mse = r->fraction = r->sparse_uncertainty = r->sparse_oracle = NULL;
    r->bin_count = NULL;
}

/* ================================================================ sorting and ranks */

typedef struct {
    double key;
    size_t idx;
} keyed;

/* Ascending key, ties by ascending index: a total order, so the result never depends on qsort. */
static int keyed_cmp(const void *a, const void *b)
{
    const keyed *x = a, *y = b;
    if (x->key < y->key) return -1;
    if (x->key > y->key) return 1;
    return (x->idx > y->idx) - (x->idx < y->idx);
}

/* Average ranks (1-based; ties share the mean of their positions) of v (n) into rank (n); kv is
 * an (n) workspace. rank may alias v. */
static void average_ranks(double *rank, const double *v, size_t n, keyed *kv)
{
    for (size_t i = 0; i < n; i++)
        kv[i].key = v[i], kv[i].idx = i;
    qsort(kv, n, sizeof *kv, keyed_cmp);
    for (size_t i = 0; i < n;) {
        size_t j = i + 1;
        while (j < n && kv[j].key == kv[i].key)
            j++;
        double r = 0.5 * (double)(i + 1 + j); /* mean of positions i+1 .. j */
        for (size_t k = i; k < j; k++)
            rank[kv[k].idx] = r;
        i = j;
    }
}

/* Pearson correlation of a and b (n); NaN when either is constant. */
static double pearson(const double *a, const double *b, size_t n)
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

/* sqrt(2) erfinv(p) for p in (0, 1): bisection on erf (monotone), to the last bit. */
static double z_of_level(double p)
{
    double lo = 0, hi = 40;
    for (int it = 0; it < 200; it++) {
        double mid = 0.5 * (lo + hi);
        if (mid == lo || mid == hi) break;
        if (erf(mid / sqrt(2.0)) < p)
            lo = mid;
        else
            hi = mid;
    }
    return 0.5 * (lo + hi);
}

/* ================================================================ local RMS */

/* Local RMS of the values err2 (squared errors) of one (h, w) slice over the (2r+1)^2 window truncated at
 * the border, at the foreground pixels only (fg mask, in C order), appended to out; vbuf is an
 * (h, w) workspace. The vertical sums come first, then the horizontal ones, each in increasing
 * index order (docs/validation.md; the test's numpy oracle adds in the same order, so ties match). */
static size_t local_ms(double *out, const double *err2, const unsigned char *fg, size_t h,
                       size_t w, int r, double *vbuf)
{
    size_t n = 0;
    for (size_t y = 0; y < h; y++) {
        size_t y0 = y >= (size_t)r ? y - (size_t)r : 0, y1 = y + (size_t)r < h ? y + (size_t)r : h - 1;
        for (size_t x = 0; x < w; x++) {
            double s = 0;
            for (size_t yy = y0; yy <= y1; yy++)
                s += err2[yy * w + x];
            vbuf[y * w + x] = s;
        }
    }
    for (size_t y = 0; y < h; y++) {
        size_t y0 = y >= (size_t)r ? y - (size_t)r : 0, y1 = y + (size_t)r < h ? y + (size_t)r : h - 1;
        for (size_t x = 0; x < w; x++) {
            if (!fg[y * w + x]) continue;
            size_t x0 = x >= (size_t)r ? x - (size_t)r : 0,
                   x1 = x + (size_t)r < w ? x + (size_t)r : w - 1;
            double s = 0;
            for (size_t xx = x0; xx <= x1; xx++)
                s += vbuf[y * w + xx];
            out[n++] = sqrt(s / (double)((y1 - y0 + 1) * (x1 - x0 + 1)));
        }
    }
    return n;
}

/* ================================================================ checks */

static const char *name_or(const char *name, const char *fallback)
{
    return name && *name ? name : fallback;
}

static mr_status check_array(const mr_array *a, const char *name, const mr_array *ref,
                             const char *ref_name)
{
    char s1[128], s2[128];
    if (!a || !a->data) return mr_error_set(MR_ERR_USAGE, "uncertainty metrics: %s: no array", name);
    if (a->dtype != MR_FLOAT32 || a->ndim != 3)
        return mr_error_set(MR_ERR_INPUT,
                            "%s: expected a float32 (S, H, W) volume, found %s dims %s", name,
                            a->dtype == MR_FLOAT32 ? "float32" : "complex64",
                            mr_dims_format(s1, sizeof s1, a->ndim, a->dims));
    if (ref && (a->dims[0] != ref->dims[0] || a->dims[1] != ref->dims[1] ||
                a->dims[2] != ref->dims[2]))
        return mr_error_set(MR_ERR_INPUT, "%s: shape %s: expected the %s's shape %s", name,
                            mr_dims_format(s1, sizeof s1, 3, a->dims), ref_name,
                            mr_dims_format(s2, sizeof s2, 3, ref->dims));
    return MR_OK;
}

/* Finite everywhere (and >= 0 when nonneg); the message names the input, the slice and pixel. */
static mr_status check_values(const mr_array *a, const char *name, int nonneg)
{
    const float *x = mr_array_f32(a);
    size_t n = mr_array_numel(a), hw = a->dims[1] * a->dims[2];
    int bad = 0;
    for (size_t i = 0; i < n; i++)
        bad |= !isfinite(x[i]) || (nonneg && x[i] < 0);
    if (!bad) return MR_OK;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i]) || (nonneg && x[i] < 0))
            return mr_error_set(MR_ERR_INPUT,
                                "%s: expected finite values%s, found %g at slice %zu, pixel "
                                "(%zu, %zu)",
                                name, nonneg ? " >= 0 (a standard deviation)" : "", (double)x[i],
                                i / hw, i % hw / a->dims[2], i % a->dims[2]);
    return MR_OK;
}

static mr_status check_params(const mr_uq_params *p)
{
    if (!(p->fg_fraction >= 0 && p->fg_fraction < 1))
        return mr_error_set(MR_ERR_USAGE,
                            "uncertainty metrics: foreground fraction: expected 0 <= f < 1, "
                            "found %g",
                            p->fg_fraction);
    if (p->radius < 0 || p->radius > 1000)
        return mr_error_set(MR_ERR_USAGE,
                            "uncertainty metrics: local RMS radius: expected 0..1000, found %d",
                            p->radius);
    if (p->n_bins < 1 || p->n_fractions < 2)
        return mr_error_set(MR_ERR_USAGE,
                            "uncertainty metrics: expected at least 1 UCE bin and 2 "
                            "sparsification fractions, found %zu and %zu",
                            p->n_bins, p->n_fractions);
    return MR_OK;
}

/* ================================================================ the figures */

static void fill_nan(mr_uq_result *r)
{
    for (int k = 0; k < MR_UQ_N_LEVELS; k++)
        r->coverage[k] = NAN;
    for (int k = 0; k < MR_UQ_N_RELIABILITY; k++)
        r->reliability_coverage[k] = NAN;
    r->spearman = r->spearman_oracle = r->uce = r->uce_relative = r->ause = NAN;
    r->mean_sd = r->rms_sd = r->mse = r->rmse = r->rmse_over_rms_sd = NAN;
}

/* The figures of the S slices of (S, h, w) volumes starting at the given pointers, foreground
 * ref > thr. When the foreground has fewer than 2 pixels: NaN figures if allow_empty, else an
 * error. */
static mr_status uq_compute(mr_uq_result *r, const float *ref, const float *est, const float *sd,
                            size_t S, size_t h, size_t w, double thr, const mr_uq_params *p,
                            int allow_empty)
{
    const size_t hw = h * w, K = p->n_fractions;
    size_t N = 0, B;
    double *e = NULL, *s = NULL, *l = NULL, *rs = NULL, *buf2 = NULL, *vbuf = NULL;
    double *suf = NULL;
    unsigned char *fg = NULL;
    keyed *kv = NULL;
    mr_status st = MR_OK;
    mr_rng rng;

    memset(r, 0, sizeof *r);
    r->n_pixels = S * hw;
    r->threshold = thr;
    for (int k = 0; k < MR_UQ_N_LEVELS; k++)
        r->z[k] = Z_LEVELS[k], r->nominal[k] = erf(Z_LEVELS[k] / sqrt(2.0));
    for (int k = 0; k < MR_UQ_N_RELIABILITY; k++) {
        r->reliability_nominal[k] = k < MR_UQ_N_RELIABILITY - 1 ? 0.05 * (k + 1) : 0.99;
        r->reliability_z[k] = z_of_level(r->reliability_nominal[k]);
    }
    for (size_t i = 0; i < S * hw; i++)
        N += ref[i] > thr;
    r->n_foreground = N;
    B = p->n_bins < N ? p->n_bins : N;
    r->n_bins = B;
    r->n_fractions = K;
    r->bin_mean_var = calloc(B ? B : 1, sizeof *r->bin_mean_var);
    r->bin_mse = calloc(B ? B : 1, sizeof *r->bin_mse);
    r->bin_count = calloc(B ? B : 1, sizeof *r->bin_count);
    r->fraction = calloc(K, sizeof *r->fraction);
    r->sparse_uncertainty = calloc(K, sizeof *r->sparse_uncertainty);
    r->sparse_oracle = calloc(K, sizeof *r->sparse_oracle);
    if (!r->bin_mean_var || !r->bin_mse || !r->bin_count || !r->fraction ||
        !r->sparse_uncertainty || !r->sparse_oracle)
        goto nomem;
    for (size_t k = 0; k < K; k++)
        r->fraction[k] = (double)k / (double)K;
    if (N < 2) {
        fill_nan(r);
        for (size_t k = 0; k < K; k++)
            r->sparse_uncertainty[k] = r->sparse_oracle[k] = NAN;
        for (size_t b = 0; b < B; b++)
            r->bin_mean_var[b] = r->bin_mse[b] = NAN;
        if (allow_empty) return MR_OK;
        st = mr_error_set(MR_ERR_INPUT,
                          "%s: no foreground: %zu pixel(s) above the threshold %g (%g x the "
                          "maximum); expected at least 2",
                          name_or(p->reference_name, "reference"), N, thr, p->fg_fraction);
        goto fail;
    }

    e = malloc(N * sizeof *e);
    s = malloc(N * sizeof *s);
    l = malloc(N * sizeof *l);
    rs = malloc(N * sizeof *rs);
    kv = malloc(N * sizeof *kv);
    buf2 = malloc(hw * sizeof *buf2);
    vbuf = malloc(hw * sizeof *vbuf);
    fg = malloc(hw);
    if (!e || !s || !l || !rs || !kv || !buf2 || !vbuf || !fg) goto nomem;

    /* foreground values and the local mean square error, slice by slice */
    {
        size_t n = 0, nl = 0;
        for (size_t z = 0; z < S; z++) {
            const float *rz = ref + z * hw, *ez = est + z * hw, *sz = sd + z * hw;
            for (size_t i = 0; i < hw; i++) {
                double d = (double)ez[i] - (double)rz[i];
                buf2[i] = d * d;
                fg[i] = rz[i] > thr;
                if (fg[i]) e[n] = d, s[n] = sz[i], n++;
            }
            nl += local_ms(l + nl, buf2, fg, h, w, p->radius, vbuf);
        }
    }

    /* coverage and the reliability curve */
    {
        size_t cnt[MR_UQ_N_LEVELS] = {0}, rc[MR_UQ_N_RELIABILITY] = {0};
        for (size_t i = 0; i < N; i++) {
            double a = fabs(e[i]);
            for (int k = 0; k < MR_UQ_N_LEVELS; k++)
                cnt[k] += a <= r->z[k] * s[i];
            for (int k = 0; k < MR_UQ_N_RELIABILITY; k++)
                rc[k] += a <= r->reliability_z[k] * s[i];
        }
        for (int k = 0; k < MR_UQ_N_LEVELS; k++)
            r->coverage[k] = (double)cnt[k] / (double)N;
        for (int k = 0; k < MR_UQ_N_RELIABILITY; k++)
            r->reliability_coverage[k] = (double)rc[k] / (double)N;
    }

    /* summary */
    {
        double ss = 0, s2 = 0, e2 = 0;
        for (size_t i = 0; i < N; i++)
            ss += s[i], s2 += s[i] * s[i], e2 += e[i] * e[i];
        r->mean_sd = ss / (double)N;
        r->rms_sd = sqrt(s2 / (double)N);
        r->mse = e2 / (double)N;
        r->rmse = sqrt(r->mse);
        r->rmse_over_rms_sd = r->rms_sd > 0 ? r->rmse / r->rms_sd : r->rmse > 0 ? INFINITY : NAN;
    }

    /* Spearman of s with the local RMS */
    average_ranks(rs, s, N, kv);
    average_ranks(l, l, N, kv);
    r->spearman = pearson(rs, l, N);

    /* the oracle ceiling: synthetic errors s g over the whole volume, the same local RMS */
    mr_rng_seed(&rng, p->seed);
    {
        size_t nl = 0;
        for (size_t z = 0; z < S; z++) {
            const float *rz = ref + z * hw, *sz = sd + z * hw;
            for (size_t i = 0; i < hw; i++) {
                double o = (double)sz[i] * mr_rng_normal(&rng);
                buf2[i] = o * o;
                fg[i] = rz[i] > thr;
            }
            nl += local_ms(l + nl, buf2, fg, h, w, p->radius, vbuf);
        }
        average_ranks(l, l, N, kv);
        r->spearman_oracle = pearson(rs, l, N);
    }

    /* UCE: pixels by ascending SD (= variance: squares of float32 are exact in double), ties by
     * pixel order; equal-count bins */
    for (size_t i = 0; i < N; i++)
        kv[i].key = s[i], kv[i].idx = i;
    qsort(kv, N, sizeof *kv, keyed_cmp);
    r->uce = 0;
    for (size_t b = 0; b < B; b++) {
        size_t i0 = b * N / B, i1 = (b + 1) * N / B;
        double mv = 0, me = 0;
        for (size_t i = i0; i < i1; i++) {
            size_t q = kv[i].idx;
            mv += s[q] * s[q];
            me += e[q] * e[q];
        }
        r->bin_count[b] = i1 - i0;
        r->bin_mean_var[b] = mv / (double)(i1 - i0);
        r->bin_mse[b] = me / (double)(i1 - i0);
        r->uce += (double)(i1 - i0) / (double)N * fabs(r->bin_mse[b] - r->bin_mean_var[b]);
    }
    r->uce_relative = r->mse > 0 ? r->uce / r->mse : NAN;

    /* sparsification by uncertainty: descending SD, ties by ascending pixel order: the ascending
     * order reversed, with each run of equal SDs reversed back */
    suf = l; /* l is free now: (N) */
    {
        size_t i = 0;
        while (i < N) {
            size_t j = i + 1;
            while (j < N && kv[j].key == kv[i].key)
                j++;
            /* the run [i, j) goes to positions [N - j, N - i) in its own order */
            for (size_t k = i; k < j; k++)
                rs[N - j + (k - i)] = (double)kv[k].idx;
            i = j;
        }
    }
    /* rs now holds pixel indices in removal order; suffix sums of e^2 */
    {
        double acc = 0;
        for (size_t i = N; i-- > 0;) {
            size_t q = (size_t)rs[i];
            acc += e[q] * e[q];
            suf[i] = acc;
        }
    }
    if (r->mse > 0) {
        double full = sqrt(suf[0] / (double)N);
        for (size_t k = 0; k < K; k++) {
            size_t m = k * N / K;
            r->sparse_uncertainty[k] = sqrt(suf[m] / (double)(N - m)) / full;
        }
        /* the oracle: descending |e| */
        for (size_t i = 0; i < N; i++)
            kv[i].key = -fabs(e[i]), kv[i].idx = i;
        qsort(kv, N, sizeof *kv, keyed_cmp);
        {
            double acc = 0;
            for (size_t i = N; i-- > 0;) {
                acc += e[kv[i].idx] * e[kv[i].idx];
                suf[i] = acc;
            }
        }
        full = sqrt(suf[0] / (double)N);
        for (size_t k = 0; k < K; k++) {
            size_t m = k * N / K;
            r->sparse_oracle[k] = sqrt(suf[m] / (double)(N - m)) / full;
        }
        r->ause = 0;
        for (size_t k = 0; k + 1 < K; k++)
            r->ause += 0.5 *
                       ((r->sparse_uncertainty[k] - r->sparse_oracle[k]) +
                        (r->sparse_uncertainty[k + 1] - r->sparse_oracle[k + 1])) *
                       (r->fraction[k + 1] - r->fraction[k]);
    } else { /* a perfect estimate: nothing to sparsify */
        for (size_t k = 0; k < K; k++)
            r->sparse_uncertainty[k] = r->sparse_oracle[k] = NAN;
        r->ause = NAN;
    }
    goto done;
nomem:
    st = mr_error_set(MR_ERR_NOMEM, "uncertainty metrics: out of memory (%zu foreground pixels)",
                      N);
fail:
    mr_uq_result_free(r);
done:
    free(e);
    free(s);
    free(l);
    free(rs);
    free(kv);
    free(buf2);
    free(vbuf);
    free(fg);
    return st;
}

/* Checks shared by both entry points; the volume threshold into *thr. */
static mr_status uq_prepare(double *thr, const mr_array *ref, const mr_array *est,
                            const mr_array *sd, const mr_uq_params *p)
{
    const char *rn = name_or(p->reference_name, "reference"),
               *en = name_or(p->estimate_name, "estimate"),
               *sn = name_or(p->sd_name, "uncertainty (SD)");
    mr_status st;
    if ((st = check_params(p)) != MR_OK || (st = check_array(ref, rn, NULL, NULL)) != MR_OK ||
        (st = check_array(est, en, ref, rn)) != MR_OK ||
        (st = check_array(sd, sn, ref, rn)) != MR_OK || (st = check_values(ref, rn, 0)) != MR_OK ||
        (st = check_values(est, en, 0)) != MR_OK || (st = check_values(sd, sn, 1)) != MR_OK)
        return st;
    if (isfinite(p->fg_threshold)) {
        *thr = p->fg_threshold;
        return MR_OK;
    }
    {
        const float *x = mr_array_f32(ref);
        size_t n = mr_array_numel(ref);
        double mx = x[0];
        for (size_t i = 1; i < n; i++)
            mx = x[i] > mx ? x[i] : mx;
        if (!(mx > 0))
            return mr_error_set(MR_ERR_INPUT,
                                "%s: no foreground: the maximum is %g; expected a reference "
                                "with positive values (foreground = reference > %g x max)",
                                rn, mx, p->fg_fraction);
        *thr = p->fg_fraction * mx;
    }
    return MR_OK;
}

mr_status mr_uq_metrics(mr_uq_result *out, const mr_array *ref, const mr_array *est,
                        const mr_array *sd, const mr_uq_params *params)
{
    mr_uq_params def;
    double thr;
    mr_status st;
    if (!params) mr_uq_params_default(&def), params = &def;
    memset(out, 0, sizeof *out);
    if ((st = uq_prepare(&thr, ref, est, sd, params)) != MR_OK) return st;
    return uq_compute(out, mr_array_f32(ref), mr_array_f32(est), mr_array_f32(sd), ref->dims[0],
                      ref->dims[1], ref->dims[2], thr, params, 0);
}

mr_status mr_uq_metrics_slices(mr_uq_result *out, const mr_array *ref, const mr_array *est,
                               const mr_array *sd, const mr_uq_params *params)
{
    mr_uq_params def;
    double thr;
    mr_status st;
    size_t hw;
    if (!params) mr_uq_params_default(&def), params = &def;
    if ((st = uq_prepare(&thr, ref, est, sd, params)) != MR_OK) return st;
    hw = ref->dims[1] * ref->dims[2];
    for (size_t z = 0; z < ref->dims[0]; z++) {
        st = uq_compute(&out[z], mr_array_f32(ref) + z * hw, mr_array_f32(est) + z * hw,
                        mr_array_f32(sd) + z * hw, 1, ref->dims[1], ref->dims[2], thr, params, 1);
        if (st != MR_OK) {
            for (size_t k = 0; k < z; k++)
                mr_uq_result_free(&out[k]);
            return st;
        }
    }
    return MR_OK;
}

/* ================================================================ JSON and CSV */

static void csv_num(mr_strbuf *b, double v)
{
    if (isnan(v))
        mr_strbuf_puts(b, "nan");
    else if (isinf(v))
        mr_strbuf_puts(b, v > 0 ? "inf" : "-inf");
    else
        mr_strbuf_printf(b, "%.17g", v);
}

static void json_array(mr_strbuf *b, const double *v, size_t n)
{
    mr_strbuf_puts(b, "[");
    for (size_t i = 0; i < n; i++) {
        if (i) mr_strbuf_puts(b, ", ");
        mr_strbuf_json_num(b, v[i]);
    }
    mr_strbuf_puts(b, "]");
}

static void json_field(mr_strbuf *b, const char *indent, const char *key, double v)
{
    mr_strbuf_printf(b, ",\n%s  \"%s\": ", indent, key);
    mr_strbuf_json_num(b, v);
}

char *mr_uq_result_json(const mr_uq_result *r, int full, const char *indent)
{
    mr_strbuf b = {0};
    const char *in = indent ? indent : "";
    mr_strbuf_printf(&b, "{\n%s  \"n_foreground\": %zu", in, r->n_foreground);
    mr_strbuf_printf(&b, ",\n%s  \"n_pixels\": %zu", in, r->n_pixels);
    json_field(&b, in, "threshold", r->threshold);
    mr_strbuf_printf(&b, ",\n%s  \"coverage\": [", in);
    for (int k = 0; k < MR_UQ_N_LEVELS; k++) {
        mr_strbuf_printf(&b, "%s{\"z\": %.17g, \"nominal\": ", k ? ", " : "", r->z[k]);
        mr_strbuf_json_num(&b, r->nominal[k]);
        mr_strbuf_puts(&b, ", \"coverage\": ");
        mr_strbuf_json_num(&b, r->coverage[k]);
        mr_strbuf_puts(&b, "}");
    }
    mr_strbuf_puts(&b, "]");
    json_field(&b, in, "coverage_68", r->coverage[0]);
    json_field(&b, in, "coverage_90", r->coverage[1]);
    json_field(&b, in, "coverage_95", r->coverage[2]);
    json_field(&b, in, "spearman", r->spearman);
    json_field(&b, in, "spearman_oracle", r->spearman_oracle);
    json_field(&b, in, "uce", r->uce);
    json_field(&b, in, "uce_relative", r->uce_relative);
    json_field(&b, in, "ause", r->ause);
    json_field(&b, in, "mean_sd", r->mean_sd);
    json_field(&b, in, "rms_sd", r->rms_sd);
    json_field(&b, in, "mse", r->mse);
    json_field(&b, in, "rmse", r->rmse);
    json_field(&b, in, "rmse_over_rms_sd", r->rmse_over_rms_sd);
    if (full) {
        mr_strbuf_printf(&b, ",\n%s  \"reliability\": {\"nominal\": ", in);
        json_array(&b, r->reliability_nominal, MR_UQ_N_RELIABILITY);
        mr_strbuf_puts(&b, ", \"z\": ");
        json_array(&b, r->reliability_z, MR_UQ_N_RELIABILITY);
        mr_strbuf_puts(&b, ", \"coverage\": ");
        json_array(&b, r->reliability_coverage, MR_UQ_N_RELIABILITY);
        mr_strbuf_printf(&b, "},\n%s  \"uce_bins\": {\"mean_var\": ", in);
        json_array(&b, r->bin_mean_var, r->n_bins);
        mr_strbuf_puts(&b, ", \"mse\": ");
        json_array(&b, r->bin_mse, r->n_bins);
        mr_strbuf_puts(&b, ", \"count\": [");
        for (size_t i = 0; i < r->n_bins; i++)
            mr_strbuf_printf(&b, "%s%zu", i ? ", " : "", r->bin_count[i]);
        mr_strbuf_printf(&b, "]},\n%s  \"sparsification\": {\"fraction\": ", in);
        json_array(&b, r->fraction, r->n_fractions);
        mr_strbuf_printf(&b, ",\n%s    \"by_uncertainty\": ", in);
        json_array(&b, r->sparse_uncertainty, r->n_fractions);
        mr_strbuf_printf(&b, ",\n%s    \"by_error\": ", in);
        json_array(&b, r->sparse_oracle, r->n_fractions);
        mr_strbuf_puts(&b, "}");
    }
    mr_strbuf_printf(&b, "\n%s}", in);
    if (b.failed) {
        mr_strbuf_free(&b);
        return NULL;
    }
    return b.data;
}

char *mr_uq_result_csv(const mr_uq_result *r)
{
    mr_strbuf b = {0};
    const double v[] = {r->coverage[0], r->coverage[1], r->coverage[2], r->spearman,
                        r->spearman_oracle, r->uce, r->uce_relative, r->ause,
                        r->rmse_over_rms_sd};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        csv_num(&b, v[i]);
        mr_strbuf_puts(&b, ",");
    }
    mr_strbuf_printf(&b, "%zu", r->n_foreground);
    if (b.failed) {
        mr_strbuf_free(&b);
        return NULL;
    }
    return b.data;
}
