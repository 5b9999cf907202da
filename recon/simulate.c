/*
 * simulate.c: multi-coil k-space from real magnitude images (../shared/DATA.md, "Realistic inputs"):
 * smooth coil sensitivities, a smooth background phase, 2x readout oversampling (the object fills
 * the central half of the readout field of view, as on scanners), a centred orthonormal FFT, and
 * complex Gaussian noise. The fully sampled RSS of the result is fastMRI's reconstruction_rss.
 */
#include "mr_recon.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

double mr_mt_randn(mr_mt19937 *rng)
{
    double u1 = mr_mt_random_sample(rng), u2 = mr_mt_random_sample(rng);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

mr_status mr_sim_coil_maps(mr_cfloat *maps, size_t coils, size_t h, size_t w)
{
    double sigma = 0.5 * (double)(h > w ? h : w);
    double cy = 0.5 * (double)h, cx = 0.5 * (double)w;
    double ry = 0.55 * (double)h, rx = 0.55 * (double)w;
    double peak = 0;
    size_t n = h * w;
    if (!coils || !h || !w) return mr_error_set(MR_ERR_INPUT, "coil maps: empty size");
    for (size_t c = 0; c < coils; c++) {
        double th = 2.0 * M_PI * (double)c / (double)coils;
        double py = cy + ry * sin(th), px = cx + rx * cos(th);
        double ph0 = 0.7 * th; /* distinct, smooth phase per coil */
        for (size_t y = 0; y < h; y++)
            for (size_t x = 0; x < w; x++) {
                double dy = (double)y - py, dx = (double)x - px;
                double mag = exp(-(dy * dy + dx * dx) / (2 * sigma * sigma));
                double ph = ph0 + 0.8 * M_PI * (dx * cos(th) + dy * sin(th)) / (2 * sigma);
                maps[c * n + y * w + x] = (float)(mag * cos(ph)) + I * (float)(mag * sin(ph));
            }
    }
    for (size_t p = 0; p < n; p++) {
        double s = 0;
        for (size_t c = 0; c < coils; c++) s += crealf(maps[c * n + p] * conjf(maps[c * n + p]));
        if (s > peak) peak = s;
    }
    peak = 1.0 / sqrt(peak);
    for (size_t i = 0; i < coils * n; i++) maps[i] *= (float)peak;
    return MR_OK;
}

void mr_sim_background_phase(float *phase, size_t h, size_t w, uint32_t seed)
{
    mr_mt19937 rng;
    uint32_t key[2] = {seed, 0x70686173u}; /* a stream distinct from the noise streams */
    double a[6];
    mr_mt_seed_array(&rng, key, 2);
    for (int i = 0; i < 6; i++) a[i] = (mr_mt_random_sample(&rng) - 0.5);
    for (size_t y = 0; y < h; y++)
        for (size_t x = 0; x < w; x++) {
            double v = 2.0 * (double)y / (double)h - 1.0, u = 2.0 * (double)x / (double)w - 1.0;
            phase[y * w + x] = (float)(M_PI * (0.3 * a[0] + 0.8 * a[1] * v + 0.8 * a[2] * u +
                                               0.6 * a[3] * v * v + 0.6 * a[4] * u * u +
                                               0.6 * a[5] * u * v));
        }
}

mr_status mr_sim_slice_kspace(mr_cfloat *kspace, const float *img, size_t h, size_t w,
                              size_t oversample, const mr_cfloat *maps, const float *phase,
                              size_t coils, double sigma, uint32_t seed, uint32_t slice,
                              const mr_fft_plan *plan)
{
    size_t he = oversample * h, n = he * w;
    size_t y0 = (he - h) / 2;
    mr_status st;
    if (oversample < 1) return mr_error_set(MR_ERR_INPUT, "oversampling factor must be >= 1");
#pragma omp parallel for schedule(static)
    for (long c = 0; c < (long)coils; c++) {
        mr_cfloat *k = kspace + (size_t)c * n;
        const mr_cfloat *s = maps + (size_t)c * n;
        memset(k, 0, n * sizeof *k);
        for (size_t y = 0; y < h; y++)
            for (size_t x = 0; x < w; x++) {
                size_t p = (y + y0) * w + x;
                float ph = phase[p];
                k[p] = img[y * w + x] * s[p] * (cosf(ph) + I * sinf(ph));
            }
    }
    if ((st = mr_fft_execute(plan, MR_FFT_FORWARD, kspace)) != MR_OK) return st;
    if (sigma > 0) {
#pragma omp parallel for schedule(static)
        for (long c = 0; c < (long)coils; c++) {
            mr_mt19937 rng;
            uint32_t key[3] = {seed, slice, (uint32_t)c};
            mr_cfloat *k = kspace + (size_t)c * n;
            mr_mt_seed_array(&rng, key, 3);
            for (size_t p = 0; p < n; p++) {
                float re = (float)(sigma * mr_mt_randn(&rng));
                float im = (float)(sigma * mr_mt_randn(&rng));
                k[p] += re + I * im;
            }
        }
    }
    return MR_OK;
}
