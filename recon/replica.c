/*
 * replica.c: measurement-noise uncertainty by pseudo-multiple replicas (Robson PM, Grant AK,
 * Madhuranthakam AJ, Lattanzi R, Sodickson DK, McKenzie CA. Comprehensive quantification of
 * signal-to-noise ratio and g-factor for image-based and k-space-based parallel imaging
 * reconstructions. Magn Reson Med 60:895-907 (2008)).
 *
 * Complex Gaussian noise with the coil noise covariance Psi = L L^H (Cholesky) is added to the
 * measured k-space at the acquired samples, the same reconstruction is run N times, and the
 * per-pixel standard deviation over the replicas is the map. The method is treated as a black box,
 * so this holds for linear (zf, SENSE) and non-linear (CS, learned) reconstructions alike; its cost
 * is N reconstructions. Psi comes from a noise scan (recon/noise.c) or, without one, from a robust
 * estimate on the outer k-space (mr_noise_cov_estimate).
 */
#include "mr_recon.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

mr_status mr_noise_cov_cholesky(mr_cfloat *chol, const mr_cfloat *psi, size_t coils)
{
    const size_t C = coils;
    double complex *l = mr_calloc(C * C, sizeof *l);
    double tr = 0;
    mr_status st = MR_OK;
    if (!l) return MR_ERR_NOMEM;
    for (size_t i = 0; i < C * C; i++)
        if (!isfinite(crealf(psi[i])) || !isfinite(cimagf(psi[i]))) {
            st = mr_error_set(MR_ERR_INPUT, "noise covariance: entry (%zu, %zu) is NaN or Inf",
                              i / C, i % C);
            goto done;
        }
    for (size_t a = 0; a < C; a++)
        tr += crealf(psi[a * C + a]);
    for (size_t a = 0; a < C && st == MR_OK; a++)
        for (size_t b = 0; b < a; b++) {
            mr_cfloat d = psi[a * C + b] - conjf(psi[b * C + a]);
            if (cabsf(d) > 1e-4f * (float)(tr / (double)C) + 1e-30f) {
                st = mr_error_set(MR_ERR_INPUT, "noise covariance: not Hermitian at (%zu, %zu)", a,
                                  b);
                break;
            }
        }
    /* Psi = L L^H, row-major lower L, in double */
    for (size_t j = 0; j < C && st == MR_OK; j++) {
        double d = crealf(psi[j * C + j]);
        for (size_t k = 0; k < j; k++)
            d -= creal(l[j * C + k] * conj(l[j * C + k]));
        if (!(d > 1e-12 * fabs(tr) / (double)C) || !(tr > 0)) {
            st = mr_error_set(MR_ERR_INPUT,
                              "noise covariance is not positive definite at coil %zu (variance "
                              "%.3g left after removing its correlation with the previous coils; "
                              "mean variance %.3g)",
                              j, d, tr / (double)C);
            break;
        }
        l[j * C + j] = sqrt(d);
        for (size_t i = j + 1; i < C; i++) {
            double complex acc = psi[i * C + j];
            for (size_t k = 0; k < j; k++)
                acc -= l[i * C + k] * conj(l[j * C + k]);
            l[i * C + j] = acc / creal(l[j * C + j]);
        }
    }
    if (st == MR_OK)
        for (size_t i = 0; i < C * C; i++)
            chol[i] = (mr_cfloat)l[i];
done:
    free(l);
    return st;
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* Median of n values (reordered in place). */
static double median_f(float *v, size_t n)
{
    qsort(v, n, sizeof *v, cmp_float);
    return n % 2 ? v[n / 2] : 0.5 * ((double)v[n / 2 - 1] + v[n / 2]);
}

/* Robust std of n values: 1.4826 MAD (consistent for a Gaussian). buf: n floats of workspace. */
static double mad_sigma(const float *x, float *buf, size_t n)
{
    memcpy(buf, x, n * sizeof *buf);
    double med = median_f(buf, n);
    for (size_t i = 0; i < n; i++)
        buf[i] = fabsf(x[i] - (float)med);
    return 1.4826 * median_f(buf, n);
}

mr_status mr_noise_cov_estimate(mr_cfloat *psi, const mr_cfloat *kspace, const float *mask,
                                size_t coils, size_t h, size_t w)
{
    const size_t C = coils, hw = h * w;
    const double thresholds[3] = {0.75, 0.5, -1.0};
    unsigned char *use = mr_malloc(hw);
    float *re = mr_malloc(hw * sizeof *re), *im = mr_malloc(hw * sizeof *im);
    float *buf = mr_malloc(hw * sizeof *buf);
    mr_status st = MR_OK;
    size_t n = 0;
    if (!use || !re || !im || !buf) {
        st = MR_ERR_NOMEM;
        goto done;
    }
    for (int t = 0; t < 3 && n < 64; t++) {
        n = 0;
        for (size_t y = 0; y < h; y++)
            for (size_t x = 0; x < w; x++) {
                size_t p = y * w + x;
                double ry = fabs((double)y - (double)(h / 2)) / (0.5 * (double)h);
                double rx = fabs((double)x - (double)(w / 2)) / (0.5 * (double)w);
                int any = 0;
                for (size_t c = 0; c < C && !any; c++)
                    any = kspace[c * hw + p] != 0.0f;
                use[p] = (!mask || mask[p] != 0.0f) && any && (ry > rx ? ry : rx) >= thresholds[t];
                n += use[p];
            }
    }
    if (n < 2) {
        st = mr_error_set(MR_ERR_INPUT,
                          "noise estimate from k-space: %zu acquired sample(s); "
                          "need a noise scan or acquired k-space",
                          n);
        goto done;
    }
    memset(psi, 0, C * C * sizeof *psi);
    for (size_t c = 0; c < C; c++) {
        size_t m = 0;
        for (size_t p = 0; p < hw; p++)
            if (use[p]) {
                re[m] = crealf(kspace[c * hw + p]);
                im[m] = cimagf(kspace[c * hw + p]);
                m++;
            }
        double sr = mad_sigma(re, buf, m), si = mad_sigma(im, buf, m);
        double v = sr * sr + si * si;
        if (!(v > 0) || !isfinite(v)) {
            st =
                mr_error_set(MR_ERR_INPUT,
                             "noise estimate from k-space: coil %zu has zero noise variance on "
                             "the outer k-space (noise-free or synthetic data?); give a noise scan",
                             c);
            goto done;
        }
        psi[c * C + c] = (float)v;
    }
done:
    free(use);
    free(re);
    free(im);
    free(buf);
    return st;
}

double mr_noise_sd_of_cov(const mr_cfloat *psi, size_t coils)
{
    double acc = 0;
    for (size_t c = 0; c < coils; c++) acc += crealf(psi[c * coils + c]);
    return coils ? sqrt(acc / (2.0 * (double)coils)) : 0;
}

mr_status mr_noise_sd_estimate(double *sd, const mr_cfloat *kspace, const float *mask, size_t coils,
                               size_t h, size_t w)
{
    mr_cfloat *psi = malloc(coils * coils * sizeof *psi);
    *sd = 0;
    if (!psi) return mr_error_set(MR_ERR_NOMEM, "noise estimate: out of memory");
    mr_status st = mr_noise_cov_estimate(psi, kspace, mask, coils, h, w);
    if (st == MR_OK) *sd = mr_noise_sd_of_cov(psi, coils);
    free(psi);
    return st;
}

void mr_replica_add_noise(mr_cfloat *kspace, const mr_cfloat *chol, const float *mask, size_t coils,
                          size_t h, size_t w, mr_mt19937 *rng)
{
    const size_t C = coils, hw = h * w;
    mr_cfloat zb[256];
    mr_cfloat *z = C <= 256 ? zb : malloc(C * sizeof *z);
    const double s = sqrt(0.5); /* E|z|^2 = 1 */
    if (!z) return;
    for (size_t p = 0; p < hw; p++) {
        if (mask && mask[p] == 0.0f) continue;
        for (size_t c = 0; c < C; c++) {
            double a = mr_mt_randn(rng), b = mr_mt_randn(rng);
            z[c] = (mr_cfloat)(s * a + I * s * b);
        }
        for (size_t i = 0; i < C; i++) { /* L is lower triangular */
            mr_cfloat acc = 0;
            for (size_t k = 0; k <= i; k++)
                acc += chol[i * C + k] * z[k];
            kspace[i * hw + p] += acc;
        }
    }
    if (z != zb) free(z);
}

/* Welford's running mean and sum of squared deviations, per pixel, adding replica r's image. */
static void accumulate(double *mean, double *m2, const mr_cfloat *img, size_t hw, long r,
                       int complex_sd)
{
    const double inv = 1.0 / (double)(r + 1);
    for (size_t q = 0; q < hw; q++) {
        if (complex_sd) {
            double xr = crealf(img[q]), xi = cimagf(img[q]);
            double dr = xr - mean[2 * q], di = xi - mean[2 * q + 1];
            mean[2 * q] += dr * inv;
            mean[2 * q + 1] += di * inv;
            m2[q] += dr * (xr - mean[2 * q]) + di * (xi - mean[2 * q + 1]);
        } else {
            double x = cabsf(img[q]), d = x - mean[2 * q];
            mean[2 * q] += d * inv;
            m2[q] += d * (x - mean[2 * q]);
        }
    }
}

/* One replica: k = kspace + noise of stream (seed, stream, r); img = method(k). */
static mr_status run_replica(mr_cfloat *img, mr_cfloat *k, const mr_recon_method *method,
                             void *state, const mr_cfloat *kspace, const float *mask,
                             const mr_cfloat *sens, const mr_cfloat *chol, size_t coils, size_t h,
                             size_t w, const mr_replica_params *p, long r)
{
    mr_mt19937 rng;
    mr_recon_stats stats;
    uint32_t key[3] = {p->seed, p->stream, (uint32_t)r};
    mr_status st = MR_OK;
    void *fresh = NULL;
    mr_mt_seed_array(&rng, key, 3);
    memcpy(k, kspace, coils * h * w * sizeof *k);
    mr_replica_add_noise(k, chol, mask, coils, h, w, &rng);
    /* a fresh state per replica when rp is given: stateful methods (cs-l1's random wavelet
     * shifts) then see the same sequence in every replica, whatever the thread count */
    if (p->rp) st = method->create(&fresh, p->rp, coils, h, w);
    if (st == MR_OK) st = method->run(fresh ? fresh : state, img, &stats, k, mask, sens);
    if (fresh) method->destroy(fresh);
    if (st != MR_OK) mr_error_prefix(st, "replica %ld: ", r);
    return st;
}

mr_status mr_replica_sd(float *sd, const mr_recon_method *method, void *state,
                        const mr_cfloat *kspace, const float *mask, const mr_cfloat *sens,
                        const mr_cfloat *chol, size_t coils, size_t h, size_t w,
                        const mr_replica_params *p)
{
    const size_t hw = h * w, n = coils * hw;
    size_t T = p->threads > 1 && p->rp ? (size_t)p->threads : 1;
    mr_cfloat **k = NULL, **img = NULL;
    mr_status *sts = NULL;
    char(*msgs)[512] = NULL;
    double *mean = NULL, *m2 = NULL;
    mr_status st = MR_OK;
    if (p->replicas < 2)
        return mr_error_set(MR_ERR_USAGE, "--replicas: expected at least 2, found %ld",
                            p->replicas);
    if ((long)T > p->replicas) T = (size_t)p->replicas;
    k = mr_calloc(T, sizeof *k);
    img = mr_calloc(T, sizeof *img);
    sts = mr_calloc(T, sizeof *sts);
    msgs = mr_calloc(T, sizeof *msgs);
    mean = mr_calloc(2 * hw, sizeof *mean); /* (re, im) or (|x|, unused) */
    m2 = mr_calloc(hw, sizeof *m2);
    if (!k || !img || !sts || !msgs || !mean || !m2) {
        st = MR_ERR_NOMEM;
        goto done;
    }
    for (size_t t = 0; t < T; t++) {
        k[t] = mr_malloc_aligned(n * sizeof **k);
        img[t] = mr_malloc_aligned(hw * sizeof **img);
        if (!k[t] || !img[t]) {
            st = MR_ERR_NOMEM;
            goto done;
        }
    }
    for (long b0 = 0; b0 < p->replicas; b0 += (long)T) {
        const long nb = p->replicas - b0 < (long)T ? p->replicas - b0 : (long)T;
        if (T == 1)
            sts[0] = run_replica(img[0], k[0], method, state, kspace, mask, sens, chol, coils, h, w,
                                 p, b0);
        else {
#pragma omp parallel for num_threads((int)T) schedule(static, 1)
            for (long j = 0; j < nb; j++) {
                sts[j] = run_replica(img[j], k[j], method, NULL, kspace, mask, sens, chol, coils, h,
                                     w, p, b0 + j);
                if (sts[j] != MR_OK) /* messages are thread-local: carry them over */
                    snprintf(msgs[j], sizeof msgs[j], "%s", mr_error_message());
            }
        }
        for (long j = 0; j < nb; j++) {
            if (sts[j] != MR_OK) {
                st = T == 1 ? sts[j] : mr_error_set(sts[j], "%s", msgs[j]);
                goto done;
            }
            accumulate(mean, m2, img[j], hw, b0 + j, p->complex_sd);
        }
    }
    for (size_t q = 0; q < hw; q++)
        sd[q] = (float)sqrt(m2[q] / (double)(p->replicas - 1));
done:
    for (size_t t = 0; t < T; t++) {
        if (k) mr_free_aligned(k[t]);
        if (img) mr_free_aligned(img[t]);
    }
    free(k);
    free(img);
    free(sts);
    free(msgs);
    free(mean);
    free(m2);
    return st;
}
