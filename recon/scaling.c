/*
 * scaling.c: BART's data scaling for `pics` (src/misc/mri.c estimate_scaling, BART 0.8), so that
 * `mrpipe recon --lambda L` means what `bart pics -r L` means on the same k-space.
 *
 * BART finds the calibration region as for ESPIRiT but at most 32 x 32 (the largest fully sampled
 * block around the centre, grown one row/column at a time, then moved along the readout to the
 * position of maximum energy, any position, even one that includes unacquired samples), takes the
 * unitary inverse DFT of that block per coil, combines coils by root sum of squares, divides by
 * sqrt(H / ch) sqrt(W / cw) (so that the low-resolution image has the full-resolution image's
 * intensity) and sorts the magnitudes. With median m, 90th percentile p90 (element trunc(0.9 n) of
 * the sorted n values) and maximum M:
 *     s = p90 if (M - p90) < 2 (p90 - m), else M;
 * k-space is divided by s before the reconstruction and the image multiplied by s after it
 * (`pics -S`). The sampling pattern is the k-space's non-zero support (any coil), as BART's, and
 * the block is taken from k-space multiplied by BART's fftmod phase (pics applies it first), which
 * matters for blocks of odd size.
 */
#include "mr_recon.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define SCALE_CAL_MAX 32

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* Centred-or-not does not matter here: only the multiset of magnitudes is used, which a circular
 * shift or a phase ramp leaves unchanged. Unitary 1-D inverse DFT of n values with stride. */
static void idft_strided(mr_cfloat *x, size_t n, size_t stride, const double complex *tw,
                         double complex *tmp)
{
    for (size_t r = 0; r < n; r++) {
        double complex acc = 0;
        for (size_t k = 0; k < n; k++) acc += x[k * stride] * tw[(r * k) % n];
        tmp[r] = acc / sqrt((double)n);
    }
    for (size_t r = 0; r < n; r++) x[r * stride] = (mr_cfloat)tmp[r];
}

/* BART's fftmod factor for index j of an axis of n samples (num/fft.c):
 * exp(2 pi i (j - c/2) c / n), c = n / 2 (integer). BART's pics multiplies k-space by it (its
 * centring of the FFT) before it estimates the scaling; on a calibration block of odd length this
 * phase ramp moves the block's image by a non-integer shift and so changes the magnitudes that are
 * sorted. */
static double complex fftmod(size_t n, size_t j)
{
    const double c = (double)(n / 2);
    const double ph = ((double)j - c / 2.0) * c / (double)n;
    return cexp(2.0 * M_PI * I * (ph - floor(ph)));
}

double mr_recon_bart_scale(const mr_cfloat *kspace, size_t coils, size_t h, size_t w)
{
    size_t y0, x0, ch, cw, n;
    float *pattern = NULL, *mag = NULL;
    mr_cfloat *blk = NULL;
    double scale = 0;
    double complex tw_y[SCALE_CAL_MAX], tw_x[SCALE_CAL_MAX], tmp[SCALE_CAL_MAX];
    pattern = malloc(h * w * sizeof *pattern);
    if (!pattern) return 1.0;
    mr_mask_infer(pattern, kspace, coils, h, w);
    mr_calib_region_find(&y0, &x0, &ch, &cw, pattern, kspace, coils, h, w, SCALE_CAL_MAX,
                         SCALE_CAL_MAX, 0);
    free(pattern);
    if (ch == 0 || cw == 0) { /* BART would use the (zero) centre sample: scale 0 -> 1 */
        return 1.0;
    }
    n = ch * cw;
    mag = calloc(n, sizeof *mag);
    blk = malloc(n * sizeof *blk);
    if (!mag || !blk) goto done;
    for (size_t i = 0; i < ch; i++) tw_y[i] = cexp(2.0 * M_PI * I * (double)i / (double)ch);
    for (size_t i = 0; i < cw; i++) tw_x[i] = cexp(2.0 * M_PI * I * (double)i / (double)cw);
    for (size_t c = 0; c < coils; c++) {
        for (size_t y = 0; y < ch; y++)
            for (size_t x = 0; x < cw; x++)
                blk[y * cw + x] = kspace[(c * h + y0 + y) * w + x0 + x] *
                                  (mr_cfloat)(fftmod(h, y0 + y) * fftmod(w, x0 + x));
        for (size_t y = 0; y < ch; y++) idft_strided(blk + y * cw, cw, 1, tw_x, tmp);
        for (size_t x = 0; x < cw; x++) idft_strided(blk + x, ch, cw, tw_y, tmp);
        for (size_t i = 0; i < n; i++) mag[i] += crealf(blk[i] * conjf(blk[i]));
    }
    for (size_t i = 0; i < n; i++) mag[i] = sqrtf(mag[i]);
    qsort(mag, n, sizeof *mag, cmp_float);
    {
        double rescale = sqrt((double)h / (double)ch) * sqrt((double)w / (double)cw);
        double med = mag[n / 2] / rescale, p90 = mag[(size_t)trunc((double)n * 0.9)] / rescale;
        double mx = mag[n - 1] / rescale;
        scale = (mx - p90) < 2 * (p90 - med) ? p90 : mx;
        MR_DEBUG("data scaling: calibration block %zu x %zu, max %g, p90 %g, median %g -> %g", ch,
                 cw, mx, p90, med, scale);
    }
done:
    free(mag);
    free(blk);
    return scale > 0 && isfinite(scale) ? 1.0 / scale : 1.0;
}
