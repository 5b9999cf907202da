/*
 * zf.c: zero-filled reconstruction: mask, centred orthonormal inverse FFT per coil, root-sum-of-
 * squares coil combination, centre crop to the output size (fastMRI's transforms.center_crop:
 * offset (n - crop) // 2). When the header's encoded readout is twice the recon size, the crop is
 * the readout-oversampling removal.
 */
#include "mr_recon.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct mr_zf_plan {
    size_t coils, h, w, out_h, out_w;
    mr_fft_plan *fft;
    mr_cfloat *work; /* (C, H, W) */
};

/* floor((n - crop) / 2) for signed values */
static long crop_offset(size_t n, size_t crop)
{
    long d = (long)n - (long)crop;
    return d >= 0 ? d / 2 : -((-d + 1) / 2);
}

void mr_crop_c64(mr_cfloat *dst, size_t oh, size_t ow, const mr_cfloat *src, size_t h, size_t w)
{
    long oy = crop_offset(h, oh), ox = crop_offset(w, ow);
    for (size_t y = 0; y < oh; y++) {
        long sy = (long)y + oy;
        mr_cfloat *d = dst + y * ow;
        if (sy < 0 || sy >= (long)h) {
            memset(d, 0, ow * sizeof *d);
            continue;
        }
        for (size_t x = 0; x < ow; x++) {
            long sx = (long)x + ox;
            d[x] = (sx < 0 || sx >= (long)w) ? 0 : src[(size_t)sy * w + (size_t)sx];
        }
    }
}

void mr_crop_f32(float *dst, size_t oh, size_t ow, const float *src, size_t h, size_t w)
{
    long oy = crop_offset(h, oh), ox = crop_offset(w, ow);
    for (size_t y = 0; y < oh; y++) {
        long sy = (long)y + oy;
        float *d = dst + y * ow;
        for (size_t x = 0; x < ow; x++) {
            long sx = (long)x + ox;
            d[x] = (sy < 0 || sy >= (long)h || sx < 0 || sx >= (long)w)
                       ? 0.0f
                       : src[(size_t)sy * w + (size_t)sx];
        }
    }
}

void mr_rss(float *out, const mr_cfloat *img, size_t coils, size_t n)
{
#pragma omp parallel for schedule(static)
    for (long p = 0; p < (long)n; p++) {
        double acc = 0;
        for (size_t c = 0; c < coils; c++) {
            mr_cfloat v = img[c * n + (size_t)p];
            acc += (double)crealf(v) * crealf(v) + (double)cimagf(v) * cimagf(v);
        }
        out[p] = (float)sqrt(acc);
    }
}

mr_status mr_zf_plan_create(mr_zf_plan **out, size_t coils, size_t h, size_t w, size_t out_h,
                            size_t out_w)
{
    mr_zf_plan *p;
    mr_status st;
    *out = NULL;
    if (!coils || !h || !w || !out_h || !out_w)
        return mr_error_set(MR_ERR_INPUT, "zero-filled recon: empty size (coils %zu, %zu x %zu -> "
                                          "%zu x %zu)", coils, h, w, out_h, out_w);
    p = mr_calloc(1, sizeof *p);
    if (!p) return MR_ERR_NOMEM;
    p->coils = coils;
    p->h = h;
    p->w = w;
    p->out_h = out_h;
    p->out_w = out_w;
    p->work = mr_malloc_aligned(coils * h * w * sizeof *p->work);
    if (!p->work) {
        free(p);
        return MR_ERR_NOMEM;
    }
    if ((st = mr_fft_plan_create(&p->fft, coils, h, w)) != MR_OK) {
        mr_zf_plan_destroy(p);
        return st;
    }
    *out = p;
    return MR_OK;
}

void mr_zf_plan_destroy(mr_zf_plan *p)
{
    if (!p) return;
    mr_fft_plan_destroy(p->fft);
    mr_free_aligned(p->work);
    free(p);
}

mr_status mr_zf_execute(mr_zf_plan *p, float *out, mr_cfloat *coil_images, const mr_cfloat *kspace,
                        const float *mask)
{
    size_t hw = p->h * p->w, ohw = p->out_h * p->out_w;
    long oy = crop_offset(p->h, p->out_h), ox = crop_offset(p->w, p->out_w);
    mr_status st;
    if (mask) {
        long n = (long)(p->coils * hw);
#pragma omp parallel for schedule(static)
        for (long i = 0; i < n; i++)
            p->work[i] = mask[(size_t)i % hw] != 0.0f ? kspace[i] : 0.0f; /* +0.0, never -0.0 */
    } else {
        memcpy(p->work, kspace, p->coils * hw * sizeof *kspace);
    }
    if ((st = mr_fft_execute(p->fft, MR_FFT_INVERSE, p->work)) != MR_OK) return st;
    /* RSS over coils, reading only the cropped region. */
#pragma omp parallel for schedule(static)
    for (long y = 0; y < (long)p->out_h; y++) {
        long sy = y + oy;
        for (size_t x = 0; x < p->out_w; x++) {
            long sx = (long)x + ox;
            double acc = 0;
            if (sy >= 0 && sy < (long)p->h && sx >= 0 && sx < (long)p->w) {
                const mr_cfloat *v = p->work + (size_t)sy * p->w + (size_t)sx;
                for (size_t c = 0; c < p->coils; c++, v += hw)
                    acc += (double)crealf(*v) * crealf(*v) + (double)cimagf(*v) * cimagf(*v);
            }
            out[(size_t)y * p->out_w + x] = (float)sqrt(acc);
        }
    }
    if (coil_images)
        for (size_t c = 0; c < p->coils; c++)
            mr_crop_c64(coil_images + c * ohw, p->out_h, p->out_w, p->work + c * hw, p->h, p->w);
    return MR_OK;
}
