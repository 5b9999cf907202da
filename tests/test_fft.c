/*
 * test_fft.c: properties of mrpipe's centred orthonormal FFT (recon/fft.c): agreement with the
 * direct centred DFT out[k] = sum_n x[n] exp(-+2 pi i (k - N/2)(n - N/2) / N) / sqrt(N) (floor(N/2))
 * on even and odd sizes, round trip, Parseval, linearity, batched = per image, and agreement with
 * numpy's fftshift(ifft2(ifftshift(x), norm="ortho")) (fastMRI's ifft2c).
 */
#include "mr_recon.h"
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void fill_random(mr_cfloat *x, size_t n, unsigned long long seed)
{
    mr_test_rng r;
    mr_test_rng_init(&r, seed);
    for (size_t i = 0; i < n; i++) x[i] = (float)mr_test_randn(&r) + I * (float)mr_test_randn(&r);
}

/* Direct centred 2-D DFT in double precision. sign -1 forward, +1 inverse. */
static void direct_dft(double complex *out, const mr_cfloat *in, size_t h, size_t w, int sign)
{
    long fh = (long)h / 2, fw = (long)w / 2;
    for (size_t ky = 0; ky < h; ky++)
        for (size_t kx = 0; kx < w; kx++) {
            double complex acc = 0;
            for (size_t y = 0; y < h; y++)
                for (size_t x = 0; x < w; x++) {
                    double ph = 2 * M_PI *
                                ((double)(((long)ky - fh) * ((long)y - fh)) / (double)h +
                                 (double)(((long)kx - fw) * ((long)x - fw)) / (double)w);
                    acc += in[y * w + x] * cexp(sign * I * ph);
                }
            out[ky * w + kx] = acc / sqrt((double)(h * w));
        }
}

static double max_abs_diff_direct(size_t h, size_t w, int dir)
{
    size_t n = h * w;
    mr_cfloat *x = mr_malloc_aligned(n * sizeof *x);
    mr_cfloat *y = mr_malloc_aligned(n * sizeof *y);
    double complex *ref = malloc(n * sizeof *ref);
    mr_fft_plan *p = NULL;
    double worst = 0, scale = 0;
    fill_random(x, n, h * 1000 + w);
    memcpy(y, x, n * sizeof *x);
    CU_ASSERT_FATAL(mr_fft_plan_create(&p, 1, h, w) == MR_OK);
    CU_ASSERT(mr_fft_execute(p, dir, y) == MR_OK);
    direct_dft(ref, x, h, w, dir == MR_FFT_FORWARD ? -1 : +1);
    for (size_t i = 0; i < n; i++) {
        double d = cabs(ref[i] - y[i]);
        if (d > worst) worst = d;
        if (cabs(ref[i]) > scale) scale = cabs(ref[i]);
    }
    mr_fft_plan_destroy(p);
    mr_free_aligned(x);
    mr_free_aligned(y);
    free(ref);
    return worst / scale;
}

static void test_against_direct_dft(void)
{
    const size_t sizes[][2] = {{8, 8}, {6, 10}, {7, 9}, {5, 8}, {8, 5}, {1, 7}, {12, 3}, {16, 16}};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        double ef = max_abs_diff_direct(sizes[i][0], sizes[i][1], MR_FFT_FORWARD);
        double ei = max_abs_diff_direct(sizes[i][0], sizes[i][1], MR_FFT_INVERSE);
        if (ef > 1e-5 || ei > 1e-5)
            fprintf(stderr, "size %zux%zu: fwd %g inv %g\n", sizes[i][0], sizes[i][1], ef, ei);
        CU_ASSERT(ef < 1e-5);
        CU_ASSERT(ei < 1e-5);
    }
}

static void test_round_trip_and_parseval(void)
{
    const size_t sizes[][2] = {{64, 64}, {640, 368}, {217, 181}, {33, 64}};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        size_t h = sizes[s][0], w = sizes[s][1], n = h * w;
        mr_cfloat *x = mr_malloc_aligned(n * sizeof *x), *y = mr_malloc_aligned(n * sizeof *y);
        mr_fft_plan *p = NULL;
        double e_in = 0, e_mid = 0, err = 0;
        fill_random(x, n, 7 + s);
        memcpy(y, x, n * sizeof *x);
        CU_ASSERT_FATAL(mr_fft_plan_create(&p, 1, h, w) == MR_OK);
        mr_fft_execute(p, MR_FFT_FORWARD, y);
        for (size_t i = 0; i < n; i++) {
            e_in += crealf(x[i] * conjf(x[i]));
            e_mid += crealf(y[i] * conjf(y[i]));
        }
        mr_fft_execute(p, MR_FFT_INVERSE, y);
        for (size_t i = 0; i < n; i++) err += crealf((x[i] - y[i]) * conjf(x[i] - y[i]));
        CU_ASSERT(fabs(e_mid / e_in - 1) < 1e-5);   /* Parseval (orthonormal) */
        CU_ASSERT(sqrt(err / e_in) < 1e-6);          /* round trip */
        mr_fft_plan_destroy(p);
        mr_free_aligned(x);
        mr_free_aligned(y);
    }
}

static void test_batched_equals_single(void)
{
    size_t c = 5, h = 48, w = 30, n = h * w;
    mr_cfloat *x = mr_malloc_aligned(c * n * sizeof *x), *orig = mr_malloc_aligned(c * n * sizeof *x);
    mr_cfloat *y = mr_malloc_aligned(n * sizeof *y);
    mr_fft_plan *pb = NULL, *p1 = NULL;
    double worst = 0;
    fill_random(orig, c * n, 99);
    memcpy(x, orig, c * n * sizeof *x);
    CU_ASSERT_FATAL(mr_fft_plan_create(&pb, c, h, w) == MR_OK);
    CU_ASSERT_FATAL(mr_fft_plan_create(&p1, 1, h, w) == MR_OK);
    mr_fft_execute(pb, MR_FFT_INVERSE, x);
    for (size_t k = 0; k < c; k++) {
        memcpy(y, orig + k * n, n * sizeof *y);
        mr_fft_execute(p1, MR_FFT_INVERSE, y);
        for (size_t i = 0; i < n; i++)
            if (cabsf(y[i] - x[k * n + i]) > worst) worst = cabsf(y[i] - x[k * n + i]);
    }
    CU_ASSERT(worst < 1e-6);
    mr_fft_plan_destroy(pb);
    mr_fft_plan_destroy(p1);
    mr_free_aligned(x);
    mr_free_aligned(orig);
    mr_free_aligned(y);
}

static void test_linearity_and_impulse(void)
{
    size_t h = 32, w = 24, n = h * w;
    mr_cfloat *a = mr_malloc_aligned(n * sizeof *a), *b = mr_malloc_aligned(n * sizeof *b);
    mr_cfloat *s = mr_malloc_aligned(n * sizeof *s);
    mr_fft_plan *p = NULL;
    double worst = 0;
    mr_cfloat alpha = 0.7f - 1.3f * I;
    fill_random(a, n, 1);
    fill_random(b, n, 2);
    for (size_t i = 0; i < n; i++) s[i] = alpha * a[i] + b[i];
    CU_ASSERT_FATAL(mr_fft_plan_create(&p, 1, h, w) == MR_OK);
    mr_fft_execute(p, MR_FFT_FORWARD, a);
    mr_fft_execute(p, MR_FFT_FORWARD, b);
    mr_fft_execute(p, MR_FFT_FORWARD, s);
    for (size_t i = 0; i < n; i++) {
        double d = cabsf(s[i] - (alpha * a[i] + b[i]));
        if (d > worst) worst = d;
    }
    CU_ASSERT(worst < 1e-4);
    /* A centred impulse (at floor(N/2)) transforms to a constant 1/sqrt(N). */
    memset(a, 0, n * sizeof *a);
    a[(h / 2) * w + w / 2] = 1.0f;
    mr_fft_execute(p, MR_FFT_INVERSE, a);
    worst = 0;
    for (size_t i = 0; i < n; i++) {
        double d = cabsf(a[i] - (float)(1.0 / sqrt((double)n)));
        if (d > worst) worst = d;
    }
    CU_ASSERT(worst < 1e-6);
    mr_fft_plan_destroy(p);
    mr_free_aligned(a);
    mr_free_aligned(b);
    mr_free_aligned(s);
}

/* numpy oracle: fastMRI's ifft2c = fftshift(ifft2(ifftshift(x), norm="ortho")). */
static void test_against_numpy(void)
{
    const size_t sizes[][2] = {{20, 14}, {15, 9}, {16, 11}};
    for (size_t s = 0; s < 3; s++) {
        size_t h = sizes[s][0], w = sizes[s][1], n = h * w;
        mr_cfloat *x = mr_malloc_aligned(n * sizeof *x);
        mr_fft_plan *p = NULL;
        FILE *f;
        const char *in = mr_test_path("fft_in.bin"), *out = mr_test_path("fft_out.bin");
        fill_random(x, n, 1234 + s);
        f = fopen(in, "wb");
        fwrite(x, sizeof *x, n, f);
        fclose(f);
        CU_ASSERT_FATAL(mr_test_sh("%s -c \"import numpy as np; x=np.fromfile('%s',np.complex64)"
                                   ".reshape(%zu,%zu); y=np.fft.fftshift(np.fft.ifft2(np.fft."
                                   "ifftshift(x,axes=(-2,-1)),norm='ortho'),axes=(-2,-1)); "
                                   "y.astype(np.complex64).tofile('%s')\"",
                                   mr_test_python(), in, h, w, out) == 0);
        mr_cfloat *ref = malloc(n * sizeof *ref);
        f = fopen(out, "rb");
        CU_ASSERT_FATAL(f != NULL);
        CU_ASSERT(fread(ref, sizeof *ref, n, f) == n);
        fclose(f);
        CU_ASSERT_FATAL(mr_fft_plan_create(&p, 1, h, w) == MR_OK);
        mr_fft_execute(p, MR_FFT_INVERSE, x);
        double worst = 0;
        for (size_t i = 0; i < n; i++)
            if (cabsf(x[i] - ref[i]) > worst) worst = cabsf(x[i] - ref[i]);
        CU_ASSERT(worst < 1e-5);
        mr_fft_plan_destroy(p);
        mr_free_aligned(x);
        free(ref);
    }
}

/* Oversampling removal in k-space, then zf, equals zf with the image-domain crop; for an odd crop
 * too. The result also keeps the energy of the kept rows' image (Parseval on the smaller grid). */
static void test_oversampling_removal(void)
{
    const size_t cases[][4] = {{3, 64, 20, 32}, {2, 50, 18, 25}, {2, 41, 12, 20}};
    for (size_t t = 0; t < 3; t++) {
        size_t c = cases[t][0], h = cases[t][1], w = cases[t][2], oh = cases[t][3];
        mr_cfloat *k = mr_malloc_aligned(c * h * w * sizeof *k);
        mr_cfloat *ko = mr_malloc_aligned(c * oh * w * sizeof *k);
        float *a = malloc(oh * w * sizeof *a), *b = malloc(oh * w * sizeof *b);
        mr_os_plan *os = NULL;
        mr_zf_plan *z1 = NULL, *z2 = NULL;
        fill_random(k, c * h * w, 31 + t);
        CU_ASSERT_FATAL(mr_os_plan_create(&os, c, h, w, oh) == MR_OK);
        CU_ASSERT_FATAL(mr_zf_plan_create(&z1, c, h, w, oh, w) == MR_OK);
        CU_ASSERT_FATAL(mr_zf_plan_create(&z2, c, oh, w, oh, w) == MR_OK);
        CU_ASSERT(mr_os_execute(os, ko, k) == MR_OK);
        CU_ASSERT(mr_zf_execute(z1, a, NULL, k, NULL) == MR_OK);
        CU_ASSERT(mr_zf_execute(z2, b, NULL, ko, NULL) == MR_OK);
        double e = 0, r = 0;
        for (size_t i = 0; i < oh * w; i++) {
            e += (a[i] - b[i]) * (double)(a[i] - b[i]);
            r += a[i] * (double)a[i];
        }
        CU_ASSERT(sqrt(e / r) < 1e-6);
        mr_os_plan_destroy(os);
        mr_zf_plan_destroy(z1);
        mr_zf_plan_destroy(z2);
        mr_free_aligned(k);
        mr_free_aligned(ko);
        free(a);
        free(b);
    }
    mr_os_plan *bad = NULL;
    CU_ASSERT(mr_os_plan_create(&bad, 1, 8, 8, 16) == MR_ERR_INPUT);
    CU_ASSERT(bad == NULL);
}

/* The unsampled part |F^-1[(1 - M) F(y)]|: nothing left under a full mask, the whole image under an
 * empty one; a mask and its complement split the energy (Parseval); a cosine along the columns at
 * frequency f lies on lines W/2 +- f: sampled -> 0, not sampled -> |y|; the column-mask version
 * pads narrower images to the mask's width and refuses wider ones. */
static void test_unsampled_part(void)
{
    const size_t S = 2, H = 12, W = 20, hw = H * W;
    float *y = malloc(S * hw * sizeof *y), *u = malloc(S * hw * sizeof *u),
          *v = malloc(S * hw * sizeof *v), *m = malloc(hw * sizeof *m), *mc = malloc(hw * sizeof *mc);
    uint32_t st = 7;
    for (size_t i = 0; i < S * hw; i++) {
        st = st * 1664525u + 1013904223u;
        y[i] = (float)(st >> 8) / 16777216.0f;
    }
    for (size_t i = 0; i < hw; i++) m[i] = 1;
    CU_ASSERT_EQUAL_FATAL(mr_unsampled_part(u, y, m, S, H, W), MR_OK);
    double mx = 0;
    for (size_t i = 0; i < S * hw; i++) mx = fmax(mx, u[i]);
    CU_ASSERT(mx < 1e-5);
    for (size_t i = 0; i < hw; i++) m[i] = 0;
    CU_ASSERT_EQUAL_FATAL(mr_unsampled_part(u, y, m, S, H, W), MR_OK);
    mx = 0;
    for (size_t i = 0; i < S * hw; i++) mx = fmax(mx, fabs(u[i] - y[i]));
    CU_ASSERT(mx < 1e-5);
    /* random column mask and its complement */
    for (size_t j = 0; j < W; j++) {
        st = st * 1664525u + 1013904223u;
        for (size_t i = 0; i < H; i++) m[i * W + j] = (float)((st >> 16) & 1), mc[i * W + j] = 1 - m[i * W + j];
    }
    CU_ASSERT_EQUAL_FATAL(mr_unsampled_part(u, y, m, S, H, W), MR_OK);
    CU_ASSERT_EQUAL_FATAL(mr_unsampled_part(v, y, mc, S, H, W), MR_OK);
    for (size_t s = 0; s < S; s++) {
        double ey = 0, eu = 0;
        for (size_t i = 0; i < hw; i++)
            ey += (double)y[s * hw + i] * y[s * hw + i],
                eu += (double)u[s * hw + i] * u[s * hw + i] + (double)v[s * hw + i] * v[s * hw + i];
        CU_ASSERT(fabs(eu - ey) < 1e-5 * ey);
    }
    /* a cosine at 3 cycles over the columns: k-space lines W/2 - 3 and W/2 + 3 */
    for (size_t i = 0; i < H; i++)
        for (size_t j = 0; j < W; j++) y[i * W + j] = (float)cos(2 * M_PI * 3 * (double)j / W);
    float cols[24];
    for (size_t j = 0; j < W; j++) cols[j] = (j == W / 2 - 3 || j == W / 2 + 3);
    CU_ASSERT_EQUAL_FATAL(mr_unsampled_part_cols(u, y, 1, H, W, cols, W), MR_OK);
    mx = 0;
    for (size_t i = 0; i < hw; i++) mx = fmax(mx, u[i]);
    CU_ASSERT(mx < 1e-5);
    for (size_t j = 0; j < W; j++) cols[j] = !cols[j];
    CU_ASSERT_EQUAL_FATAL(mr_unsampled_part_cols(u, y, 1, H, W, cols, W), MR_OK);
    mx = 0;
    for (size_t i = 0; i < hw; i++) mx = fmax(mx, fabs(u[i] - fabs(y[i])));
    CU_ASSERT(mx < 1e-5);
    /* narrower image than the mask: padded (centred) to 24 columns; a full mask still gives 0 */
    for (size_t j = 0; j < 24; j++) cols[j] = 1;
    CU_ASSERT_EQUAL_FATAL(mr_unsampled_part_cols(u, y, 1, H, W, cols, 24), MR_OK);
    mx = 0;
    for (size_t i = 0; i < hw; i++) mx = fmax(mx, u[i]);
    CU_ASSERT(mx < 1e-5);
    CU_ASSERT_EQUAL(mr_unsampled_part_cols(u, y, 1, H, W, cols, W - 2), MR_ERR_INPUT);
    CU_ASSERT(strstr(mr_error_message(), "columns") != NULL);
    free(y), free(u), free(v), free(m), free(mc);
}

int main(void)
{
    const mr_test_case cases[] = {
        {"matches the direct centred DFT (even and odd sizes)", test_against_direct_dft},
        {"round trip and Parseval", test_round_trip_and_parseval},
        {"batched over coils equals one image at a time", test_batched_equals_single},
        {"linearity and centred impulse", test_linearity_and_impulse},
        {"matches numpy fftshift(ifft2(ifftshift), ortho)", test_against_numpy},
        {"readout oversampling removal in k-space = image crop", test_oversampling_removal},
        {"unsampled part of an image under a sampling mask", test_unsampled_part},
        {NULL, NULL},
    };
    return mr_test_run("fft", cases);
}
