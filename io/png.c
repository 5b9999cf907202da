/*
 * png.c: 8-bit PNG previews (libpng): grayscale images, RGB images, and a montage of a volume's
 * slices; percentile windowing.
 *
 * Windowing follows numpy.percentile's default ("linear" interpolation between the two nearest
 * order statistics, position p/100 * (n - 1)); the order statistics come from an in-place
 * selection (quickselect with a three-way partition, so the large runs of equal background values
 * in MR images cost nothing), O(n) instead of a sort.
 *
 * libpng reports errors by longjmp; the handlers here keep libpng's message for mr_error_set and
 * print nothing. Outputs are written under a temporary name and renamed when complete.
 */
#include "mr_io.h"

#include <errno.h>
#include <math.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PNG_MAX_SIDE 1000000 /* libpng's default user limit on width and height */

/* ---------------------------------------------------------------- percentiles */

static void swapf(float *a, float *b)
{
    float t = *a;
    *a = *b;
    *b = t;
}

static int cmpf(const void *pa, const void *pb)
{
    float a = *(const float *)pa, b = *(const float *)pb;
    return (a > b) - (a < b);
}

/* The k-th smallest of v[0..n) (0-based); reorders v. */
static float select_kth(float *v, size_t n, size_t k)
{
    size_t lo = 0, hi = n; /* the answer lies in v[lo..hi) */
    int rounds = 0;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2, lt = lo, i = lo, gt = hi;
        float a = v[lo], b = v[mid], c = v[hi - 1], p;
        if (++rounds > 64) { /* pathological pivots: finish with a sort */
            qsort(v + lo, hi - lo, sizeof *v, cmpf);
            return v[k];
        }
        p = a < b ? (b < c ? b : (a < c ? c : a)) : (a < c ? a : (b < c ? c : b));
        /* three-way partition: [lo, lt) < p, [lt, gt) == p, [gt, hi) > p */
        while (i < gt) {
            if (v[i] < p)
                swapf(&v[lt++], &v[i++]);
            else if (v[i] > p)
                swapf(&v[i], &v[--gt]);
            else
                i++;
        }
        if (k < lt)
            hi = lt;
        else if (k >= gt)
            lo = gt;
        else
            return p;
    }
    return v[k];
}

/* numpy-style percentile p of v[0..n), n >= 1; reorders v. */
static float percentile_of(float *v, size_t n, double p)
{
    double pos;
    size_t k;
    float a, b;
    if (p <= 0 || n == 1) {
        float m = v[0];
        if (p > 0) return m;
        for (size_t i = 1; i < n; i++) m = v[i] < m ? v[i] : m;
        return m;
    }
    if (p >= 100) {
        float m = v[0];
        for (size_t i = 1; i < n; i++) m = v[i] > m ? v[i] : m;
        return m;
    }
    pos = p / 100.0 * (double)(n - 1);
    k = (size_t)pos;
    if (k >= n - 1) return select_kth(v, n, n - 1);
    a = select_kth(v, n, k);
    /* after selection everything right of k is >= v[k]: the next order statistic is their min */
    b = v[k + 1];
    for (size_t i = k + 2; i < n; i++) b = v[i] < b ? v[i] : b;
    return (float)(a + (pos - (double)k) * ((double)b - (double)a));
}

void mr_window_percentile(float *lo, float *hi, const float *img, size_t n, double plo, double phi)
{
    float *v;
    size_t m = 0;
    *lo = *hi = 0;
    if (!img || n == 0) return;
    v = malloc(n * sizeof *v);
    if (!v) {
        /* no scratch memory: fall back to the exact range */
        int first = 1;
        for (size_t i = 0; i < n; i++)
            if (!isnan(img[i])) {
                if (first || img[i] < *lo) *lo = img[i];
                if (first || img[i] > *hi) *hi = img[i];
                first = 0;
            }
        return;
    }
    for (size_t i = 0; i < n; i++)
        if (!isnan(img[i])) v[m++] = img[i];
    if (m > 0) {
        *lo = percentile_of(v, m, plo);
        *hi = percentile_of(v, m, phi);
    }
    free(v);
}

/* ---------------------------------------------------------------- libpng writer */

typedef struct {
    char msg[256];
} png_ctx;

static void png_on_error(png_structp png, png_const_charp msg)
{
    png_ctx *ctx = png_get_error_ptr(png);
    snprintf(ctx->msg, sizeof ctx->msg, "%s", msg ? msg : "libpng error");
    png_longjmp(png, 1);
}

static void png_on_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg; /* the library never prints */
}

/* Write pix (h rows of w * channels bytes) as an 8-bit gray (1) or RGB (3) PNG at tmp. */
static mr_status png_write_file(const char *tmp, const char *final, const unsigned char *pix,
                                size_t h, size_t w, int channels)
{
    png_ctx ctx;
    png_structp png = NULL;
    png_infop info = NULL;
    FILE *volatile f = NULL;
    mr_status volatile st = MR_OK;

    ctx.msg[0] = '\0';
    f = fopen(tmp, "wb");
    if (!f) {
        int e = errno;
        return mr_error_set(MR_ERR_IO, "%s: cannot create: %s", final, strerror(e));
    }
    png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &ctx, png_on_error, png_on_warning);
    if (png) info = png_create_info_struct(png);
    if (!png || !info) {
        png_destroy_write_struct(&png, NULL);
        fclose(f);
        return mr_error_set(MR_ERR_NOMEM, "%s: cannot create the PNG writer (out of memory)",
                            final);
    }
    if (setjmp(png_jmpbuf(png))) {
        st = mr_error_set(MR_ERR_IO, "%s: PNG write failed: %s", final, ctx.msg);
        goto done;
    }
    png_init_io(png, f);
    png_set_compression_level(png, 6);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8,
                 channels == 3 ? PNG_COLOR_TYPE_RGB : PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (size_t r = 0; r < h; r++) png_write_row(png, (png_const_bytep)(pix + r * w * channels));
    png_write_end(png, info);
done:
    png_destroy_write_struct(&png, &info);
    if (fclose(f) != 0 && st == MR_OK) {
        int e = errno;
        st = mr_error_set(MR_ERR_IO, "%s: write failed: %s", final, strerror(e));
    }
    return st;
}

/* Atomic PNG output of an 8-bit buffer. */
static mr_status png_write_atomic(const char *path, const unsigned char *pix, size_t h, size_t w,
                                  int channels)
{
    mr_atomic_file af;
    mr_status st;
    if (h == 0 || w == 0 || h > PNG_MAX_SIDE || w > PNG_MAX_SIDE)
        return mr_error_set(MR_ERR_INPUT, "%s: PNG image of %zu x %zu: expected sides 1..%d", path,
                            h, w, PNG_MAX_SIDE);
    if ((st = mr_atomic_begin(&af, path)) != MR_OK) return st;
    if ((st = png_write_file(af.tmp_path, path, pix, h, w, channels)) != MR_OK) {
        mr_atomic_abort(&af);
        return st;
    }
    return mr_atomic_commit(&af);
}

/* ---------------------------------------------------------------- public writers */

/* [lo, hi] -> [0, 255], clamped, rounded; NaN -> 0. A flat window maps > lo to 255. */
static void map_u8(unsigned char *dst, const float *src, size_t n, float lo, float hi)
{
    double scale = hi > lo ? 255.0 / ((double)hi - (double)lo) : 0;
    for (size_t i = 0; i < n; i++) {
        float x = src[i];
        double v;
        if (!(x > lo)) {
            dst[i] = 0;
            continue;
        }
        if (scale == 0 || x >= hi) {
            dst[i] = 255;
            continue;
        }
        v = ((double)x - (double)lo) * scale + 0.5;
        dst[i] = v >= 255 ? 255 : (unsigned char)v;
    }
}

mr_status mr_png_write_gray(const char *path, const float *img, size_t h, size_t w, float lo,
                            float hi)
{
    unsigned char *pix;
    mr_status st;
    if (!img) return mr_error_set(MR_ERR_USAGE, "%s: no image to write", path);
    if (h == 0 || w == 0 || h > PNG_MAX_SIDE || w > PNG_MAX_SIDE)
        return mr_error_set(MR_ERR_INPUT, "%s: PNG image of %zu x %zu: expected sides 1..%d", path,
                            h, w, PNG_MAX_SIDE);
    pix = mr_malloc(h * w);
    if (!pix) return MR_ERR_NOMEM;
    map_u8(pix, img, h * w, lo, hi);
    st = png_write_atomic(path, pix, h, w, 1);
    free(pix);
    return st;
}

mr_status mr_png_write_rgb(const char *path, const unsigned char *rgb, size_t h, size_t w)
{
    if (!rgb) return mr_error_set(MR_ERR_USAGE, "%s: no image to write", path);
    return png_write_atomic(path, rgb, h, w, 3);
}

mr_status mr_png_write_volume(const char *path, const mr_array *a)
{
    size_t S, H, W, n, cols, rows, mh, mw;
    float *mag = NULL, lo, hi;
    const float *vol;
    unsigned char *pix = NULL;
    mr_status st;
    char shape[256];

    if (!a || !a->data) return mr_error_set(MR_ERR_USAGE, "%s: no volume to write", path);
    if (a->ndim != 2 && a->ndim != 3)
        return mr_error_set(MR_ERR_INPUT,
                            "%s: PNG preview expects an (S, H, W) or (H, W) image, found shape %s",
                            path, mr_dims_format(shape, sizeof shape, a->ndim, a->dims));
    S = a->ndim == 3 ? a->dims[0] : 1;
    H = a->dims[a->ndim - 2];
    W = a->dims[a->ndim - 1];
    n = S * H * W;
    /* montage: about square, cols >= rows */
    cols = (size_t)ceil(sqrt((double)S));
    if (cols == 0) cols = 1;
    rows = (S + cols - 1) / cols;
    if (H > PNG_MAX_SIDE / rows || W > PNG_MAX_SIDE / cols)
        return mr_error_set(MR_ERR_INPUT,
                            "%s: montage of %zu x %zu slices of %zu x %zu exceeds the PNG limit "
                            "of %d pixels per side",
                            path, rows, cols, H, W, PNG_MAX_SIDE);
    mh = rows * H;
    mw = cols * W;

    if (a->dtype == MR_COMPLEX64) { /* previews of complex data show the magnitude */
        mag = mr_malloc(n * sizeof *mag);
        if (!mag) return MR_ERR_NOMEM;
        for (size_t i = 0; i < n; i++) mag[i] = cabsf(mr_array_c64(a)[i]);
        vol = mag;
    } else {
        vol = mr_array_f32(a);
    }
    mr_window_percentile(&lo, &hi, vol, n, 0.0, 99.5);
    if (lo > 0) lo = 0;
    pix = mr_calloc(mh * mw, 1);
    if (!pix) {
        free(mag);
        return MR_ERR_NOMEM;
    }
    for (size_t s = 0; s < S; s++) {
        size_t r0 = (s / cols) * H, c0 = (s % cols) * W;
        for (size_t y = 0; y < H; y++) map_u8(pix + (r0 + y) * mw + c0, vol + (s * H + y) * W, W, lo, hi);
    }
    st = png_write_atomic(path, pix, mh, mw, 1);
    free(pix);
    free(mag);
    return st;
}
