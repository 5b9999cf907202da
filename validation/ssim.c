/*
 * ssim.c: the structural similarity index (Wang, Bovik, Sheikh, Simoncelli, "Image quality
 * assessment: from error visibility to structural similarity", IEEE TIP 13(4), 2004), computed as
 * scikit-image 0.19's `structural_similarity` computes it on a 2-D image, which is what fastMRI's
 * evaluate.py calls for every slice:
 *
 *   ux, uy, uxx, uyy, uxy = window means of x, y, x*x, y*y, x*y
 *   vx  = k (uxx - ux ux),  vy = k (uyy - uy uy),  vxy = k (uxy - ux uy)
 *   S   = (2 ux uy + C1) (2 vxy + C2) / ((ux^2 + uy^2 + C1) (vx + vy + C2))
 *   C1  = (K1 R)^2, C2 = (K2 R)^2, K1 = 0.01, K2 = 0.03, R = data range
 *   SSIM = mean of S over the image cropped by the window radius r at every border
 *
 * Uniform window (skimage's default, fastMRI): 7 x 7 box, r = 3, k = 49/48 (sample covariance).
 * Gaussian window (Wang et al.'s MATLAB code; skimage gaussian_weights=True, sigma=1.5,
 * use_sample_covariance=False): separable weights exp(-t^2 / (2 sigma^2)) for t = -5..5
 * (radius int(3.5 sigma + 0.5) = 5, scipy's truncate 3.5), normalised to sum 1, r = 5, k = 1.
 *
 * Only the cropped pixels enter the mean, and their windows lie entirely inside the image, so the
 * border mode of skimage's filters ('reflect') never matters for the result and is not emulated.
 *
 * Speed: the uniform window uses separable running sums (vertical sums per column updated by one
 * row in and one row out, then a running sum along the row), O(1) work per pixel per statistic; the
 * Gaussian window is a separable 11-tap correlation. All statistics accumulate in double, where
 * the products of float32 values are exact, so the result agrees with skimage's float64 path to
 * about 1e-12 (skimage's float32 path itself differs from its float64 path by about 1e-7).
 */
#include "mr_validation.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define SSIM_K1 0.01
#define SSIM_K2 0.03
#define SSIM_GAUSS_SIGMA 1.5
#define SSIM_GAUSS_TRUNCATE 3.5
#define SSIM_MAX_TAPS 11

struct mr_ssim_plan {
    size_t h, w;
    mr_ssim_window window;
    int radius, taps;              /* r and 2r + 1 */
    double weights[SSIM_MAX_TAPS]; /* Gaussian taps (sum 1); unused for the uniform window */
    double cov_norm;               /* NP / (NP - 1) (uniform) or 1 (Gaussian) */
    double *vert[5];               /* (w) vertical window sums of x, y, xx, yy, xy */
    double *horz[5];               /* (w) full window sums (or weighted means) for one row */
};

int mr_ssim_window_size(mr_ssim_window window)
{
    if (window == MR_SSIM_GAUSSIAN)
        return 2 * (int)(SSIM_GAUSS_TRUNCATE * SSIM_GAUSS_SIGMA + 0.5) + 1;
    return 7;
}

const char *mr_ssim_window_name(mr_ssim_window window)
{
    return window == MR_SSIM_GAUSSIAN ? "gaussian" : "uniform";
}

mr_status mr_ssim_plan_create(mr_ssim_plan **out, size_t h, size_t w, mr_ssim_window window)
{
    mr_ssim_plan *p;
    int win = mr_ssim_window_size(window);
    *out = NULL;
    if (window != MR_SSIM_UNIFORM && window != MR_SSIM_GAUSSIAN)
        return mr_error_set(MR_ERR_USAGE, "SSIM window: expected uniform or gaussian, found %d",
                            (int)window);
    if (h < (size_t)win || w < (size_t)win)
        return mr_error_set(
            MR_ERR_INPUT,
            "SSIM: image of %zu x %zu pixels is smaller than the %s "
            "window (%d x %d); both sides must be at least %d (skimage refuses such "
            "images too)",
            h, w, mr_ssim_window_name(window), win, win, win);
    p = mr_calloc(1, sizeof *p);
    if (!p) return MR_ERR_NOMEM;
    p->h = h;
    p->w = w;
    p->window = window;
    p->taps = win;
    p->radius = (win - 1) / 2;
    if (window == MR_SSIM_GAUSSIAN) {
        /* scipy.ndimage._gaussian_kernel1d: exp(-0.5 t^2 / sigma^2), divided by its sum */
        double sum = 0;
        for (int t = -p->radius; t <= p->radius; t++) {
            double v = exp(-0.5 / (SSIM_GAUSS_SIGMA * SSIM_GAUSS_SIGMA) * (double)(t * t));
            p->weights[t + p->radius] = v;
            sum += v;
        }
        for (int t = 0; t < win; t++)
            p->weights[t] /= sum;
        p->cov_norm = 1.0;
    } else {
        double np_ = (double)(win * win);
        p->cov_norm = np_ / (np_ - 1.0);
    }
    for (int s = 0; s < 5; s++) {
        p->vert[s] = mr_malloc_aligned(w * sizeof(double));
        p->horz[s] = mr_malloc_aligned(w * sizeof(double));
        if (!p->vert[s] || !p->horz[s]) {
            mr_ssim_plan_destroy(p);
            return MR_ERR_NOMEM;
        }
    }
    *out = p;
    return MR_OK;
}

void mr_ssim_plan_destroy(mr_ssim_plan *p)
{
    if (!p) return;
    for (int s = 0; s < 5; s++) {
        mr_free_aligned(p->vert[s]);
        mr_free_aligned(p->horz[s]);
    }
    free(p);
}

/* The hot loops are compiled twice, for AVX2 and for the x86-64 baseline (SSE2), and chosen at load
 * time (GCC target_clones); `omp simd` makes GCC vectorise them at -O2. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) &&                             \
    !defined(__SANITIZE_ADDRESS__)
#define SSIM_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define SSIM_CLONES
#endif

/* Sum of S over one output row, from the window means in horz[] at columns [r, w - r). */
static inline __attribute__((always_inline)) double row_ssim_sum(const mr_ssim_plan *p,
                                                                 double scale, double c1, double c2)
{
    const double *restrict sx = p->horz[0], *restrict sy = p->horz[1], *restrict sxx = p->horz[2],
                           *restrict syy = p->horz[3], *restrict sxy = p->horz[4];
    const double k = p->cov_norm;
    double acc = 0;
#pragma omp simd reduction(+ : acc)
    for (size_t x = (size_t)p->radius; x < p->w - (size_t)p->radius; x++) {
        double ux = sx[x] * scale, uy = sy[x] * scale;
        double uxx = sxx[x] * scale, uyy = syy[x] * scale, uxy = sxy[x] * scale;
        double vx = k * (uxx - ux * ux), vy = k * (uyy - uy * uy), vxy = k * (uxy - ux * uy);
        double a1 = 2 * ux * uy + c1, a2 = 2 * vxy + c2;
        double b1 = ux * ux + uy * uy + c1, b2 = vx + vy + c2;
        acc += (a1 * a2) / (b1 * b2);
    }
    return acc;
}

/* Sum of S over one output row of the 7 x 7 box: window sums from the pair sums in horz[] and the
 * vertical sums in vert[] (see ssim_uniform), then S, in one vectorised pass. */
static inline __attribute__((always_inline)) double
row_ssim_sum_box7(const mr_ssim_plan *p, double scale, double c1, double c2)
{
    const double *restrict t0 = p->horz[0], *restrict t1 = p->horz[1], *restrict t2 = p->horz[2],
                           *restrict t3 = p->horz[3], *restrict t4 = p->horz[4];
    const double *restrict v0 = p->vert[0], *restrict v1 = p->vert[1], *restrict v2 = p->vert[2],
                           *restrict v3 = p->vert[3], *restrict v4 = p->vert[4];
    const double k = p->cov_norm;
    double acc = 0;
#pragma omp simd reduction(+ : acc)
    for (size_t x = 3; x < p->w - 3; x++) {
        double ux = (t0[x - 3] + t0[x - 1] + t0[x + 1] + v0[x + 3]) * scale;
        double uy = (t1[x - 3] + t1[x - 1] + t1[x + 1] + v1[x + 3]) * scale;
        double uxx = (t2[x - 3] + t2[x - 1] + t2[x + 1] + v2[x + 3]) * scale;
        double uyy = (t3[x - 3] + t3[x - 1] + t3[x + 1] + v3[x + 3]) * scale;
        double uxy = (t4[x - 3] + t4[x - 1] + t4[x + 1] + v4[x + 3]) * scale;
        double vx = k * (uxx - ux * ux), vy = k * (uyy - uy * uy), vxy = k * (uxy - ux * uy);
        double a1 = 2 * ux * uy + c1, a2 = 2 * vxy + c2;
        double b1 = ux * ux + uy * uy + c1, b2 = vx + vy + c2;
        acc += (a1 * a2) / (b1 * b2);
    }
    return acc;
}

/* Uniform window: separable box sums. vert[] holds, for every column, the sums over rows
 * [y - 3, y + 3]; each output row moves it down by one row (add the entering row, subtract the
 * leaving one: O(1) per pixel whatever the window). Along the row, pair sums give each 7-sum in 4
 * additions (row_ssim_sum_box7). */
SSIM_CLONES static double ssim_uniform(const mr_ssim_plan *p, const float *ref, const float *img,
                                       double c1, double c2)
{
    const size_t h = p->h, w = p->w, r = (size_t)p->radius, n = (size_t)p->taps;
    double *restrict v0 = p->vert[0], *restrict v1 = p->vert[1], *restrict v2 = p->vert[2],
                     *restrict v3 = p->vert[3], *restrict v4 = p->vert[4];
    double *restrict o0 = p->horz[0], *restrict o1 = p->horz[1], *restrict o2 = p->horz[2],
                     *restrict o3 = p->horz[3], *restrict o4 = p->horz[4];
    const double scale = 1.0 / (double)(n * n);
    double total = 0;

#pragma omp simd
    for (size_t x = 0; x < w; x++)
        v0[x] = v1[x] = v2[x] = v3[x] = v4[x] = 0;
    for (size_t y = 0; y < n; y++) {
        const float *restrict a = ref + y * w, *restrict b = img + y * w;
#pragma omp simd
        for (size_t x = 0; x < w; x++) {
            double xa = a[x], yb = b[x];
            v0[x] += xa;
            v1[x] += yb;
            v2[x] += xa * xa;
            v3[x] += yb * yb;
            v4[x] += xa * yb;
        }
    }
    for (size_t yo = r; yo < h - r; yo++) {
        if (yo > r) {
            const float *restrict a = ref + (yo + r) * w, *restrict b = img + (yo + r) * w;
            const float *restrict c = ref + (yo - r - 1) * w, *restrict d = img + (yo - r - 1) * w;
#pragma omp simd
            for (size_t x = 0; x < w; x++) {
                double xa = a[x], yb = b[x], xc = c[x], yd = d[x];
                v0[x] += xa - xc;
                v1[x] += yb - yd;
                v2[x] += xa * xa - xc * xc;
                v3[x] += yb * yb - yd * yd;
                v4[x] += xa * yb - xc * yd;
            }
        }
        /* along the row: pair sums t[x] = v[x] + v[x + 1], then the 7-sum over [x - 3, x + 3] is
         * t[x - 3] + t[x - 1] + t[x + 1] + v[x + 3]: 4 additions per pixel, no carried
         * dependency (a running sum is one long chain of additions and cannot be vectorised) */
#pragma omp simd
        for (size_t x = 0; x < w - 1; x++) {
            o0[x] = v0[x] + v0[x + 1];
            o1[x] = v1[x] + v1[x + 1];
            o2[x] = v2[x] + v2[x + 1];
            o3[x] = v3[x] + v3[x + 1];
            o4[x] = v4[x] + v4[x + 1];
        }
        total += row_ssim_sum_box7(p, scale, c1, c2);
    }
    return total;
}

/* Gaussian window: separable weighted sums, the vertical taps first for every column, then the
 * horizontal taps. The weights sum to 1, so horz[] holds the weighted means directly. */
SSIM_CLONES static double ssim_gaussian(const mr_ssim_plan *p, const float *ref, const float *img,
                                        double c1, double c2)
{
    const size_t h = p->h, w = p->w, r = (size_t)p->radius, n = (size_t)p->taps;
    double *v0 = p->vert[0], *v1 = p->vert[1], *v2 = p->vert[2], *v3 = p->vert[3], *v4 = p->vert[4];
    const double *g = p->weights;
    double total = 0;

    for (size_t yo = r; yo < h - r; yo++) {
        for (size_t x = 0; x < w; x++)
            v0[x] = v1[x] = v2[x] = v3[x] = v4[x] = 0;
        for (size_t t = 0; t < n; t++) {
            const float *a = ref + (yo - r + t) * w, *b = img + (yo - r + t) * w;
            const double gt = g[t];
            for (size_t x = 0; x < w; x++) {
                double xa = a[x], yb = b[x];
                v0[x] += gt * xa;
                v1[x] += gt * yb;
                v2[x] += gt * (xa * xa);
                v3[x] += gt * (yb * yb);
                v4[x] += gt * (xa * yb);
            }
        }
        for (int s = 0; s < 5; s++) {
            const double *v = p->vert[s];
            double *o = p->horz[s];
            for (size_t x = r; x < w - r; x++) {
                double acc = 0;
                for (size_t t = 0; t < n; t++)
                    acc += g[t] * v[x - r + t];
                o[x] = acc;
            }
        }
        total += row_ssim_sum(p, 1.0, c1, c2);
    }
    return total;
}

/* First non-finite value of an (h, w) image, or 0 when all are finite. */
static int find_nonfinite(size_t *y, size_t *x, const float *img, size_t h, size_t w)
{
    for (size_t i = 0; i < h * w; i++)
        if (!isfinite(img[i])) {
            *y = i / w;
            *x = i % w;
            return 1;
        }
    return 0;
}

double mr_ssim_plan_execute(const mr_ssim_plan *p, const float *ref, const float *img,
                            double data_range)
{
    const double c1 = (SSIM_K1 * data_range) * (SSIM_K1 * data_range);
    const double c2 = (SSIM_K2 * data_range) * (SSIM_K2 * data_range);
    const size_t r = (size_t)p->radius;
    double total = p->window == MR_SSIM_GAUSSIAN ? ssim_gaussian(p, ref, img, c1, c2)
                                                 : ssim_uniform(p, ref, img, c1, c2);
    return total / ((double)(p->h - 2 * r) * (double)(p->w - 2 * r));
}

mr_status mr_ssim_slice(double *out, const float *ref, const float *img, size_t h, size_t w,
                        double data_range, mr_ssim_window window)
{
    mr_ssim_plan *p;
    mr_status st;
    size_t y, x;
    if (!isfinite(data_range) || data_range <= 0)
        return mr_error_set(MR_ERR_INPUT,
                            "SSIM: data range must be a positive finite number, "
                            "found %g",
                            data_range);
    if ((st = mr_ssim_plan_create(&p, h, w, window)) != MR_OK) return st;
    if (find_nonfinite(&y, &x, ref, h, w)) {
        mr_ssim_plan_destroy(p);
        return mr_error_set(MR_ERR_INPUT,
                            "SSIM: reference image: expected finite values, found "
                            "%g at pixel (row %zu, column %zu)",
                            (double)ref[y * w + x], y, x);
    }
    if (find_nonfinite(&y, &x, img, h, w)) {
        mr_ssim_plan_destroy(p);
        return mr_error_set(MR_ERR_INPUT,
                            "SSIM: input image: expected finite values, found %g "
                            "at pixel (row %zu, column %zu)",
                            (double)img[y * w + x], y, x);
    }
    *out = mr_ssim_plan_execute(p, ref, img, data_range);
    mr_ssim_plan_destroy(p);
    return MR_OK;
}
