/*
 * train_sigma.c: model uncertainty for mrpipe's CNNs (docs/uncertainty.md, "Model uncertainty"):
 * a small variance network ("variance head", Nix & Weigend 1994; Kendall & Gal 2017's
 * heteroscedastic output) that looks at a model's input x and output y (both divided by the model's
 * robust level) and predicts the log-variance s of the output's error y - truth, trained with the
 * Gaussian negative log-likelihood 0.5 (s + e^2 exp(-s)) on the same degradations as the model.
 * Its standard deviation exp(s / 2) x level is then scaled by one split-conformal factor fitted on
 * a calibration set that is neither training nor validation data, recorded in the variance
 * network's file; the base model itself is untouched.
 *
 * A "base" of none makes the variance network judge the input itself (y = x): the uncertainty of a
 * reconstruction such as cs-l1 without any CNN after it.
 */
#include "mr_nn.h"
#include "mr_train.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The base model's output for n patches (Pb, Pb) -> the centre (P, P) crops of x, y and clean
 * as the variance network's batch: input (n, 2, P, P) = (x, y), target (n, 1, P, P) = y - clean. */
mr_status mr_sigma_batch(float *input, float *target, const float *noisy_big, const float *clean_big,
                         const float *aux_big, int aux_third, int n, int Pb, int P,
                         mr_nn_plan *base_plan, float *ybuf)
{
    int off = (Pb - P) / 2, nc = aux_third ? 3 : 2;
    size_t per = (size_t)P * P, perb = (size_t)Pb * Pb;
    for (int b = 0; b < n; b++) {
        const float *xb = noisy_big + b * perb, *cb = clean_big + b * perb;
        if (base_plan) {
            mr_status st = mr_nn_plan_run(base_plan, ybuf, xb);
            if (st != MR_OK) return st;
        } else
            memcpy(ybuf, xb, perb * sizeof *ybuf);
        float *ix = input + (size_t)b * nc * per, *iy = ix + per, *ig = iy + per,
              *t = target + b * per;
        const float *ab = aux_big ? aux_big + b * perb : NULL;
        for (int i = 0; i < P; i++)
            for (int j = 0; j < P; j++) {
                size_t o = (size_t)(i + off) * Pb + j + off, d = (size_t)i * P + j;
                ix[d] = xb[o];
                iy[d] = ab && !aux_third ? ab[o] : ybuf[o];
                if (aux_third) ig[d] = ab ? ab[o] : 0;
                t[d] = ybuf[o] - cb[o]; /* the error of the image judged (y; x when no base) */
            }
    }
    return MR_OK;
}

/* ---------------------------------------------------------------- image features */

/* One pass of a Gaussian of sigma 1.5 px (9 taps, edges clamped) along nlines lines of len
 * values: element i of line l at in[l * line_step + i * elem_step]. */
static void blur15_pass(float *out, const float *in, size_t nlines, size_t len, size_t line_step,
                        size_t elem_step)
{
    static const float k[5] = {0.26596152f, 0.21345468f, 0.10934005f, 0.03572445f, 0.00743197f};
    float norm = k[0];
    for (int d = 1; d < 5; d++) norm += 2 * k[d];
    for (size_t l = 0; l < nlines; l++) {
        const float *a = in + l * line_step;
        float *o = out + l * line_step;
        for (size_t i = 0; i < len; i++) {
            float acc = k[0] * a[i * elem_step];
            for (int d = 1; d < 5; d++) {
                size_t lo = i >= (size_t)d ? i - d : 0, hi = i + d < len ? i + d : len - 1;
                acc += k[d] * (a[lo * elem_step] + a[hi * elem_step]);
            }
            o[i * elem_step] = acc / norm;
        }
    }
}

/* Separable Gaussian blur, sigma 1.5 px, of an (H, W) image; tmp: H W floats. */
static void blur15(float *out, const float *in, size_t H, size_t W, float *tmp)
{
    blur15_pass(tmp, in, H, W, W, 1); /* along the rows */
    blur15_pass(out, tmp, W, H, 1, W); /* along the columns */
}

void mr_sigma_features(float *fc, float *fg, const float *x, const float *y, size_t H, size_t W,
                       float *tmp)
{
    float *t1 = tmp, *t2 = tmp + H * W;
    for (size_t i = 0; i < H * W; i++) t1[i] = fabsf(y[i] - x[i]);
    blur15(fc, t1, H, W, t2);
    for (size_t i = 0; i < H; i++)
        for (size_t j = 0; j < W; j++) { /* Sobel, edges clamped, / 8: the gradient per pixel */
            size_t u = i ? i - 1 : 0, b = i + 1 < H ? i + 1 : H - 1, l = j ? j - 1 : 0,
                   r = j + 1 < W ? j + 1 : W - 1;
            float gx = (y[u * W + r] + 2 * y[i * W + r] + y[b * W + r]) -
                       (y[u * W + l] + 2 * y[i * W + l] + y[b * W + l]);
            float gy = (y[b * W + l] + 2 * y[b * W + j] + y[b * W + r]) -
                       (y[u * W + l] + 2 * y[u * W + j] + y[u * W + r]);
            t1[i * W + j] = sqrtf(gx * gx + gy * gy) / 8;
        }
    blur15(fg, t1, H, W, t2);
}

/* Solve the 4 x 4 system A d = g by Gaussian elimination with partial pivoting (A, g destroyed). */
static int solve4(double A[4][4], double g[4], double d[4])
{
    for (int c = 0; c < 4; c++) {
        int p = c;
        for (int r = c + 1; r < 4; r++)
            if (fabs(A[r][c]) > fabs(A[p][c])) p = r;
        if (!(fabs(A[p][c]) > 1e-300)) return -1;
        for (int k = 0; k < 4; k++) {
            double t = A[c][k];
            A[c][k] = A[p][k], A[p][k] = t;
        }
        double t = g[c];
        g[c] = g[p], g[p] = t;
        for (int r = c + 1; r < 4; r++) {
            double f = A[r][c] / A[c][c];
            for (int k = c; k < 4; k++) A[r][k] -= f * A[c][k];
            g[r] -= f * g[c];
        }
    }
    for (int c = 3; c >= 0; c--) {
        double a = g[c];
        for (int k = c + 1; k < 4; k++) a -= A[c][k] * d[k];
        d[c] = a / A[c][c];
    }
    return 0;
}

static double feature_nll(const double *rows, size_t n, const double b[4])
{
    double s = 0;
    for (size_t i = 0; i < n; i++) {
        const double *q = rows + 5 * i;
        double ls = q[4] + b[0] + b[1] * q[1] + b[2] * q[2] + b[3] * q[3];
        s += ls + 0.5 * q[0] * q[0] * exp(-2 * ls);
    }
    return s / (double)n;
}

mr_status mr_sigma_fit_features(double w[4], double *nll, const double *rows, size_t n)
{
    /* Newton on the mean Gaussian NLL of e with log SD = L + b . (1, a1, a2, a3): rows hold
     * (e, a1, a2, a3, L) per pixel, a_k = log(f_k + eps) - L; a tiny ridge keeps a constant
     * feature (no base model: y = x) from making the Hessian singular. */
    if (n < 100) return mr_error_set(MR_ERR_INPUT, "feature fit: %zu calibration pixels, expected "
                                     "at least 100", n);
    double b[4] = {0, 1, 0, 0}, f = feature_nll(rows, n, b);
    for (int it = 0; it < 60; it++) {
        double g[4] = {0}, H[4][4] = {{0}}, d[4];
        for (size_t i = 0; i < n; i++) {
            const double *q = rows + 5 * i;
            double a[4] = {1, q[1], q[2], q[3]};
            double ls = q[4] + b[0] + b[1] * a[1] + b[2] * a[2] + b[3] * a[3];
            double r = q[0] * q[0] * exp(-2 * ls);
            for (int j = 0; j < 4; j++) {
                g[j] += (1 - r) * a[j];
                for (int k = 0; k < 4; k++) H[j][k] += 2 * r * a[j] * a[k];
            }
        }
        for (int j = 0; j < 4; j++) {
            g[j] /= (double)n;
            for (int k = 0; k < 4; k++) H[j][k] /= (double)n;
            H[j][j] += 1e-6;
        }
        double gd[4];
        memcpy(gd, g, sizeof gd);
        if (solve4(H, gd, d) != 0) break;
        double slope = 0, t = 1, nb[4], nf = f;
        for (int j = 0; j < 4; j++) slope += g[j] * d[j];
        int ok = 0;
        for (int ls = 0; ls < 40; ls++, t *= 0.5) {
            for (int j = 0; j < 4; j++) nb[j] = b[j] - t * d[j];
            nf = feature_nll(rows, n, nb);
            if (isfinite(nf) && nf <= f - 1e-4 * t * slope) {
                ok = 1;
                break;
            }
        }
        if (!ok) break;
        double step = 0;
        for (int j = 0; j < 4; j++) step += fabs(nb[j] - b[j]), b[j] = nb[j];
        f = nf;
        if (step < 1e-9) break;
    }
    memcpy(w, b, sizeof b);
    if (nll) *nll = f;
    for (int j = 0; j < 4; j++)
        if (!isfinite(w[j])) return mr_error_set(MR_ERR_INPUT, "feature fit: did not converge");
    return MR_OK;
}

/* The reference's noise in the SD (docs/uncertainty.md): variance of one pixel's error
 * a^2 sd^2 + b^2 s^2 + f^2 fl^2 for a row (e, sd, s, fl); theta = log(a, b, f). */
static double noise_term_nll(const double *rows, size_t n, const double th[3])
{
    double a2 = exp(2 * th[0]), b2 = exp(2 * th[1]), f2 = exp(2 * th[2]), acc = 0;
    for (size_t i = 0; i < n; i++) {
        const double *q = rows + 4 * i;
        double v = a2 * q[1] * q[1] + b2 * q[2] * q[2] + f2 * q[3] * q[3];
        if (!(v > 0)) return INFINITY;
        acc += 0.5 * (log(v) + q[0] * q[0] / v);
    }
    return acc / (double)n;
}

double mr_sigma_noise_floor(double y, double s, int coils)
{
    double a = fabs(y);
    return sqrt(a * a + 2.0 * (coils > 0 ? coils : 1) * s * s) - a;
}

mr_status mr_sigma_fit_noise_term(double bf[2], double *nll, double *nll0, const double *rows,
                                  size_t n)
{
    /* Fisher scoring on theta = log(a, b, f) (the Hessian's expectation, 2 w_j w_k / v^2, is
     * positive semi-definite where the Hessian far from the optimum is not) with a backtracking
     * line search; a gradient step if the system is singular. Starts from the network alone
     * (a = 1, b = f = 0.1). */
    if (n < 100) return mr_error_set(MR_ERR_INPUT, "noise term fit: %zu calibration pixels, "
                                     "expected at least 100", n);
    double th[3] = {0, log(0.1), log(0.1)}, f = noise_term_nll(rows, n, th);
    if (nll0) {
        double t0[3] = {0, -60, -60};
        *nll0 = noise_term_nll(rows, n, t0);
    }
    for (int it = 0; it < 100; it++) {
        double g[4] = {0}, H[4][4] = {{0}}, d[4];
        double w2[3] = {exp(2 * th[0]), exp(2 * th[1]), exp(2 * th[2])};
        for (size_t i = 0; i < n; i++) {
            const double *q = rows + 4 * i;
            double w[3] = {w2[0] * q[1] * q[1], w2[1] * q[2] * q[2], w2[2] * q[3] * q[3]};
            double v = w[0] + w[1] + w[2], e2 = q[0] * q[0];
            /* l = 0.5 (log v + e^2 / v); dv/dth_j = 2 w_j */
            double l1 = 0.5 * (1 / v - e2 / (v * v)), l2 = 0.5 / (v * v); /* E[e^2] = v */
            for (int j = 0; j < 3; j++) {
                g[j] += l1 * 2 * w[j];
                for (int k = 0; k < 3; k++) H[j][k] += l2 * 4 * w[j] * w[k];
            }
        }
        for (int j = 0; j < 3; j++) {
            g[j] /= (double)n;
            for (int k = 0; k < 3; k++) H[j][k] /= (double)n;
            H[j][j] += 1e-6;
        }
        H[3][3] = 1; /* solve4 on the 3 x 3 system */
        double gd[4] = {g[0], g[1], g[2], 0}, slope = 0;
        int newton = solve4(H, gd, d) == 0;
        if (newton) {
            for (int j = 0; j < 3; j++) slope += g[j] * d[j];
            newton = slope > 0;
        }
        if (!newton) {
            for (int j = 0; j < 3; j++) d[j] = g[j];
            slope = g[0] * g[0] + g[1] * g[1] + g[2] * g[2];
        }
        double t = 1, nt[3], nf = f;
        int ok = 0;
        for (int ls = 0; ls < 50; ls++, t *= 0.5) {
            for (int j = 0; j < 3; j++) {
                double st = t * d[j];
                nt[j] = th[j] - (st > 2 ? 2 : st < -2 ? -2 : st); /* at most e^2 per step */
            }
            if (nt[1] < -30) nt[1] = -30; /* a term may vanish: keep its weight finite */
            if (nt[2] < -30) nt[2] = -30;
            nf = noise_term_nll(rows, n, nt);
            if (isfinite(nf) && nf <= f - 1e-4 * t * slope) {
                ok = 1;
                break;
            }
        }
        if (!ok) break;
        double step = 0;
        for (int j = 0; j < 3; j++) step += fabs(nt[j] - th[j]), th[j] = nt[j];
        f = nf;
        if (step < 1e-9) break;
    }
    bf[0] = exp(th[1] - th[0]), bf[1] = exp(th[2] - th[0]);
    if (nll) *nll = f;
    if (!isfinite(bf[0]) || !isfinite(bf[1]))
        return mr_error_set(MR_ERR_INPUT, "noise term fit: did not converge");
    return MR_OK;
}

void mr_sigma_add_noise_term(float *sd, const float *y, size_t S, size_t hw, const void *sigma_model,
                             double scale, const double *noise_sd, int coils, const char *method)
{
    const mr_nn_model *sigma = sigma_model;
    if (!sigma || sigma->meta.n_noise_term != 2 || !noise_sd) return;
    double b = sigma->meta.noise_term[0], f = sigma->meta.noise_term[1];
    for (int i = 0; method && i < sigma->meta.n_noise_term_methods; i++)
        if (!strcmp(sigma->meta.calibration_methods[i], method))
            b = sigma->meta.noise_term_methods[i][0], f = sigma->meta.noise_term_methods[i][1];
    for (size_t s = 0; s < S; s++) {
        double ns = noise_sd[s];
        if (!(ns > 0) || !isfinite(ns)) continue;
        for (size_t i = 0; i < hw; i++) {
            double fl = mr_sigma_noise_floor(y[s * hw + i], ns, coils), v = sd[s * hw + i];
            sd[s * hw + i] = (float)sqrt(v * v + scale * scale * (b * b * ns * ns + f * f * fl * fl));
        }
    }
}

void mr_sigma_bootstrap_map(float *b, const float *dev, size_t H, size_t W, float *tmp)
{
    float *sq = tmp, *t2 = tmp + H * W; /* dev is read once, into sq: b may be dev */
    for (size_t i = 0; i < H * W; i++) sq[i] = dev[i] * dev[i];
    blur15(b, sq, H, W, t2);
    for (size_t i = 0; i < H * W; i++) b[i] = sqrtf(b[i] > 0 ? b[i] : 0);
}

int mr_sigma_wants_bootstrap(const void *sigma_model)
{
    const mr_nn_model *sigma = sigma_model;
    return sigma && sigma->meta.n_feature_weights == 4 && sigma->meta.feature_bootstrap;
}

mr_status mr_sigma_volume(float *sd, const float *x, const float *y, const float *g,
                          const float *boot, size_t S, size_t H, size_t W, const void *sigma_model,
                          double scale, const char *what)
{
    const mr_nn_model *sigma = sigma_model;
    if (mr_sigma_wants_bootstrap(sigma) && !boot)
        return mr_error_set(MR_ERR_USAGE, "%s: this variance network was calibrated with the "
                            "reconstruction's parametric bootstrap: use it with `mrpipe recon "
                            "--uncertainty bootstrap`", what);
    size_t n = S * H * W, hw = H * W, bad = mr_train_first_nonfinite(x, n);
    if (bad < n)
        return mr_error_set(MR_ERR_INPUT, "%s: pixel (slice %zu, row %zu, column %zu) is not finite",
                            what, bad / hw, bad / W % H, bad % W);
    int nc = sigma->arch.in_channels;
    if ((nc != 2 && nc != 3) || sigma->arch.out_channels != 1 ||
        strcmp(sigma->meta.norm_method, "percentile") || sigma->meta.n_norm_params < 1)
        return mr_error_set(MR_ERR_INPUT,
                            "uncertainty model: expected a variance network (2 or 3 input "
                            "channels, 1 output, percentile normalisation), found %d -> %d "
                            "channels, '%s'",
                            sigma->arch.in_channels, sigma->arch.out_channels,
                            sigma->meta.norm_method);
    if (!(scale > 0) || !isfinite(scale))
        return mr_error_set(MR_ERR_INPUT, "uncertainty model: calibration scale %g: expected a "
                            "positive number", scale);
    double level = 0;
    mr_status st = mr_train_percentile(&level, x, n, sigma->meta.norm_params[0]);
    if (st != MR_OK) return st;
    if (!(level > 0))
        for (size_t i = 0; i < n; i++)
            if (x[i] > level) level = x[i];
    if (!(level > 0)) {
        memset(sd, 0, n * sizeof *sd);
        return MR_OK;
    }
    mr_nn_plan *plan = NULL;
    if ((st = mr_nn_plan_create(&plan, sigma, (int)H, (int)W)) != MR_OK)
        return mr_error_prefix(st, "%s: slices %zu x %zu: ", what, H, W);
    int feat = sigma->meta.n_feature_weights == 4;
    const double *w = sigma->meta.feature_weights;
    float *buf = malloc((size_t)(nc > 4 ? nc : 4) * hw * sizeof *buf);
    if (!buf) {
        mr_nn_plan_destroy(plan);
        return mr_error_set(MR_ERR_NOMEM, "uncertainty: out of memory");
    }
    float inv = (float)(1.0 / level);
    for (size_t s = 0; s < S && st == MR_OK; s++) {
        for (size_t i = 0; i < hw; i++) {
            buf[i] = x[s * hw + i] * inv;
            buf[hw + i] = y[s * hw + i] * inv;
            if (nc == 3) buf[2 * hw + i] = g ? g[s * hw + i] * inv : 0;
        }
        if ((st = mr_nn_plan_run(plan, buf, buf)) != MR_OK) break;
        for (size_t i = 0; i < hw; i++) {
            double lv = buf[i] < -30 ? -30 : buf[i] > 30 ? 30 : buf[i];
            sd[s * hw + i] = (float)(scale * level * exp(0.5 * lv));
        }
        if (feat) { /* refitted on image features (mr_sigma_fit_features) */
            float *fc = buf, *fg = buf + hw;
            mr_sigma_features(fc, fg, x + s * hw, y + s * hw, H, W, buf + 2 * hw);
            if (sigma->meta.feature_bootstrap) memcpy(fc, boot + s * hw, hw * sizeof *fc);
            double eps = 1e-3 * level, L = log(level);
            for (size_t i = 0; i < hw; i++) {
                double raw = sd[s * hw + i] / scale;
                double ls = w[0] + w[1] * log(raw + eps) + w[2] * log(fc[i] + eps) +
                            w[3] * log(fg[i] + eps) + (1 - w[1] - w[2] - w[3]) * L;
                ls = ls < L - 30 ? L - 30 : ls > L + 30 ? L + 30 : ls;
                sd[s * hw + i] = (float)(scale * exp(ls));
            }
        }
    }
    free(buf);
    mr_nn_plan_destroy(plan);
    return st;
}

/* ---------------------------------------------------------------- calibration */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

void mr_sigma_collect(double *r, size_t *count, const float *truth, const float *est,
                      const float *sd, size_t S, size_t hw, double fg_fraction)
{
    /* |error| / sd over the foreground (truth > fg_fraction x the volume's maximum) */
    double mx = 0;
    for (size_t i = 0; i < S * hw; i++)
        if (truth[i] > mx) mx = truth[i];
    size_t k = *count;
    for (size_t i = 0; i < S * hw; i++)
        if (truth[i] > fg_fraction * mx && sd[i] > 0)
            r[k++] = fabs((double)est[i] - truth[i]) / sd[i];
    *count = k;
}

double mr_sigma_coverage(const double *r, size_t n, double z, double c)
{
    size_t in = 0;
    for (size_t i = 0; i < n; i++)
        if (r[i] <= z * c) in++;
    return n ? (double)in / (double)n : NAN;
}

/* Sort n doubles ascending: an LSD radix sort on the bit patterns (4 passes of 16 bits) when all
 * are >= +0 and not NaN (their patterns then order as the values: the same result as qsort), else
 * qsort. The ratios of a calibration are millions of such values; the radix sort takes a fraction
 * of qsort's time. */
static void sort_ratios(double *r, size_t n)
{
    int radix = n >= 4096;
    for (size_t i = 0; radix && i < n; i++) radix = !signbit(r[i]) && !isnan(r[i]);
    uint64_t *a = radix ? malloc(n * sizeof *a) : NULL, *b = radix ? malloc(n * sizeof *b) : NULL;
    size_t *cnt = radix ? malloc(65536 * sizeof *cnt) : NULL;
    if (!a || !b || !cnt) {
        free(a), free(b), free(cnt);
        qsort(r, n, sizeof *r, cmp_double);
        return;
    }
    memcpy(a, r, n * sizeof *a);
    for (int pass = 0; pass < 4; pass++) {
        int sh = 16 * pass;
        memset(cnt, 0, 65536 * sizeof *cnt);
        for (size_t i = 0; i < n; i++) cnt[(a[i] >> sh) & 0xffff]++;
        size_t sum = 0;
        for (size_t d = 0; d < 65536; d++) {
            size_t c = cnt[d];
            cnt[d] = sum, sum += c;
        }
        for (size_t i = 0; i < n; i++) b[cnt[(a[i] >> sh) & 0xffff]++] = a[i];
        uint64_t *t = a;
        a = b, b = t;
    }
    memcpy(r, a, n * sizeof *r);
    free(a), free(b), free(cnt);
}

/* mr_sigma_coverage of ascending r: the count of r <= z c by binary search (the same count) */
static double sorted_coverage(const double *r, size_t n, double z, double c)
{
    size_t lo = 0, hi = n; /* the first index with r > z c */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (r[mid] <= z * c) lo = mid + 1;
        else hi = mid;
    }
    return n ? (double)lo / (double)n : NAN;
}

double mr_sigma_conformal_scale(double *r, size_t n, double cov[3])
{
    /* split-conformal: the scale c at which the interval +-z c sd covers the level on the
     * calibration pixels is q / z, q the ceil((n + 1) level) / n empirical quantile of |e| / sd.
     * One scale serves all levels: the value between the 90 % and 95 % solutions that minimises the
     * larger of the two coverage gaps (checked on the same pixels). */
    sort_ratios(r, n);
    const double lv[2] = {0.90, 0.95}, z[2] = {1.6448536269514722, 1.959963984540054};
    double c[2];
    for (int i = 0; i < 2; i++) {
        size_t k = (size_t)ceil(((double)n + 1) * lv[i]);
        if (k < 1) k = 1;
        if (k > n) k = n;
        c[i] = r[k - 1] / z[i];
    }
    double best = c[0], gap = INFINITY;
    for (int g = 0; g <= 40; g++) {
        double cc = c[0] + (c[1] - c[0]) * g / 40.0;
        double a = fabs(sorted_coverage(r, n, z[0], cc) - 0.90),
               b = fabs(sorted_coverage(r, n, z[1], cc) - 0.95);
        double m = a > b ? a : b;
        if (m < gap) gap = m, best = cc;
    }
    cov[0] = sorted_coverage(r, n, 1.0, best);
    cov[1] = sorted_coverage(r, n, z[0], best);
    cov[2] = sorted_coverage(r, n, z[1], best);
    return best;
}
