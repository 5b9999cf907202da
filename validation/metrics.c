/*
 * metrics.c: NMSE, PSNR, NRMSE over whole volumes (fastMRI evaluate.py definitions; sums in double).
 */
#include "mr_validation.h"

#include <math.h>

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
