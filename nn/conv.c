/*
 * conv.c: 3x3 convolution, zero padding, stride 1, with bias (PyTorch Conv2d(k=3, padding=1)
 * semantics: cross-correlation), forward and backward, over the padded layout of mr_nn.h.
 *
 *   out[co](p) = b[co] + sum_ci sum_{ky,kx} W[co, ci, ky, kx] in[ci](p + (ky-1, kx-1))
 *   din[ci](p) = sum_co sum_{ky,kx} W[co, ci, ky, kx] dout[co](p - (ky-1, kx-1))
 *              = a convolution of dout with W transposed (ci <-> co) and flipped (k -> 8-k)
 *   dW[co, ci, ky, kx] = sum_p dout[co](p) in[ci](p + (ky-1, kx-1));  db[co] = sum_p dout[co](p)
 *
 * Forward and input gradient run the direct kernel (conv_kernel.inc; the default) or the baseline
 * im2col + OpenBLAS sgemm (chunks of positions copied to a (9 Cin, chunk) matrix). The padded
 * layout makes a tap a constant offset of the linear position, so the weight gradient is a
 * reduction over ONE range of positions per channel covering all images of the batch (border
 * positions of dout are zero, so they add nothing): dw_kernel.inc by default, or per tap one sgemm
 * (Cout x Q) x (Q x Cin)^T in the baseline. The direct path uses OpenMP only: OpenBLAS's own
 * threads and OpenMP's compete for the cores (see docs/nn.md).
 */
#include "mr_nn.h"

#include <cblas.h>
#include <omp.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK 2048   /* im2col positions per sgemm */
#define COB_MAX 8    /* the largest output-channel block of any kernel variant */
#define DW_CHUNK 2048 /* weight-gradient positions per pass (rows stay in L2) */

/* ---------------------------------------------------------------- kernel instances */

typedef float v4f __attribute__((vector_size(16)));
typedef float v4fu __attribute__((vector_size(16), aligned(4), may_alias));
typedef int v4i __attribute__((vector_size(16)));
typedef float v8f __attribute__((vector_size(32)));
typedef float v8fu __attribute__((vector_size(32), aligned(4), may_alias));
typedef int v8i __attribute__((vector_size(32)));
typedef float v16f __attribute__((vector_size(64)));
typedef float v16fu __attribute__((vector_size(64), aligned(4), may_alias));
typedef int v16i __attribute__((vector_size(64)));

typedef void (*conv_kernel_fn)(float *restrict, const float *restrict, const float *restrict,
                               const float *restrict, int, int, size_t, size_t, size_t, int, int);
typedef void (*dw_kernel_fn)(float *restrict, const float *restrict, const float *restrict, int,
                             int, size_t, size_t, size_t);

#define KTARGET __attribute__((target("avx512f,avx512dq,fma")))
#define VT v16f
#define VTU v16fu
#define VI v16i
#define VL 16
#define KNAME conv_avx512_main
#define COB 8
#define NV 3
#include "conv_kernel.inc"
#undef KNAME
#undef COB
#undef NV
#define KNAME conv_avx512_small
#define COB 2
#define NV 6
#include "conv_kernel.inc"
#undef KNAME
#undef COB
#undef NV
#define KNAME dw_avx512
#define DCO 4
#define DCI 2
#include "dw_kernel.inc"
#undef KNAME
#undef DCO
#undef DCI
#undef KTARGET
#undef VT
#undef VTU
#undef VI
#undef VL

#define KTARGET __attribute__((target("avx2,fma")))
#define VT v8f
#define VTU v8fu
#define VI v8i
#define VL 8
#define KNAME conv_avx2_main
#define COB 4
#define NV 3
#include "conv_kernel.inc"
#undef KNAME
#undef COB
#undef NV
#define KNAME conv_avx2_small
#define COB 2
#define NV 4
#include "conv_kernel.inc"
#undef KNAME
#undef COB
#undef NV
#define KNAME dw_avx2
#define DCO 2
#define DCI 2
#include "dw_kernel.inc"
#undef KNAME
#undef DCO
#undef DCI
#undef KTARGET
#undef VT
#undef VTU
#undef VI
#undef VL

#define KTARGET
#define VT v4f
#define VTU v4fu
#define VI v4i
#define VL 4
#define KNAME conv_sse_main
#define COB 4
#define NV 3
#include "conv_kernel.inc"
#undef KNAME
#undef COB
#undef NV
#define KNAME conv_sse_small
#define COB 2
#define NV 4
#include "conv_kernel.inc"
#undef KNAME
#undef COB
#undef NV
#define KNAME dw_sse
#define DCO 2
#define DCI 2
#include "dw_kernel.inc"
#undef KNAME
#undef DCO
#undef DCI
#undef KTARGET
#undef VT
#undef VTU
#undef VI
#undef VL

typedef struct {
    const char *name;
    conv_kernel_fn main_fn, small_fn;
    int main_cob, small_cob;
    dw_kernel_fn dw_fn;
} conv_isa;

static const conv_isa g_isas[3] = {
    {"sse", conv_sse_main, conv_sse_small, 4, 2, dw_sse},
    {"avx2", conv_avx2_main, conv_avx2_small, 4, 2, dw_avx2},
    {"avx512", conv_avx512_main, conv_avx512_small, 8, 2, dw_avx512},
};

static atomic_int g_isa = -1;
static atomic_int g_algo = MR_NN_CONV_DIRECT;

static const conv_isa *isa(void)
{
    int i = atomic_load(&g_isa);
    if (i < 0) {
        const char *env = getenv("MRPIPE_NN_ISA");
        __builtin_cpu_init();
        i = 0;
        if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) i = 1;
        if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq")) i = 2;
        if (env && !strcmp(env, "avx2") && i > 1) i = 1;
        if (env && !strcmp(env, "sse")) i = 0;
        atomic_store(&g_isa, i);
    }
    return &g_isas[i];
}

const char *mr_nn_conv_isa(void) { return isa()->name; }
void mr_nn_conv_set_algo(mr_nn_conv_algo algo) { atomic_store(&g_algo, (int)algo); }
mr_nn_conv_algo mr_nn_conv_get_algo(void) { return (mr_nn_conv_algo)atomic_load(&g_algo); }

size_t mr_nn_conv_scratch_floats(int cin, int cout)
{
    size_t a = (size_t)cin, b = (size_t)cout;
    size_t pack = 9 * (a + COB_MAX) * (b + COB_MAX); /* packed weights or dW per tap */
    size_t col = 9 * (a > b ? a : b) * CHUNK;         /* im2col matrix */
    return pack + col + 64;
}

/* ---------------------------------------------------------------- helpers */

/* Zero the border pixels (top and bottom rows, left and right columns) of every (c, n) image. */
static void zero_borders(mr_nn_tensor *t)
{
    const size_t pw = (size_t)t->w + 2, ph = (size_t)t->h + 2;
    const long planes = (long)t->c * t->n;
#pragma omp parallel for schedule(static)
    for (long i = 0; i < planes; i++) {
        float *p = t->data + (size_t)i * t->plane;
        memset(p, 0, pw * sizeof(float));
        for (size_t y = 1; y + 1 < ph; y++) {
            p[y * pw] = 0.0f;
            p[y * pw + pw - 1] = 0.0f;
        }
        memset(p + (ph - 1) * pw, 0, pw * sizeof(float));
    }
}

/* Pack weights for a kernel with blocks of `cob` output channels: wp[cb][ci][k][c].
 * transpose: the input-gradient weights W'[ci][co][k] = W[co][ci][8 - k] (so "cout" is cin). */
static void pack_weights(float *wp, const float *w, int cin, int cout, int cob, int transpose)
{
    const int kout = transpose ? cin : cout, kin = transpose ? cout : cin;
    const int ncob = (kout + cob - 1) / cob;
    memset(wp, 0, (size_t)ncob * kin * 9 * cob * sizeof(float));
    for (int o = 0; o < kout; o++)
        for (int i = 0; i < kin; i++)
            for (int k = 0; k < 9; k++) {
                float v = transpose ? w[((size_t)i * cin + o) * 9 + (8 - k)]
                                    : w[((size_t)o * cin + i) * 9 + k];
                wp[(((size_t)(o / cob) * kin + i) * 9 + k) * cob + o % cob] = v;
            }
}

/* im2col + sgemm baseline. out[o] (+)= bias + sum_i wm[o][i*9+k] in[i](q + off_k), with wm a
 * row-major (kout, kin*9) matrix. */
static void conv_im2col(float *out, const float *in, const float *wm, const float *bias, int kin,
                        int kout, size_t R, size_t pw, size_t Q, int accumulate, int relu,
                        float *col)
{
    const size_t offs[9] = {0, 1, 2, pw, pw + 1, pw + 2, 2 * pw, 2 * pw + 1, 2 * pw + 2};
    for (size_t q0 = 0; q0 < Q; q0 += CHUNK) {
        const size_t m = Q - q0 < CHUNK ? Q - q0 : CHUNK;
#pragma omp parallel for schedule(static)
        for (int i = 0; i < kin; i++)
            for (int k = 0; k < 9; k++)
                memcpy(col + ((size_t)i * 9 + k) * m, in + (size_t)i * R + q0 + offs[k],
                       m * sizeof(float));
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, kout, (int)m, kin * 9, 1.0f, wm,
                    kin * 9, col, (int)m, accumulate ? 1.0f : 0.0f, out + q0 + pw + 1, (int)R);
        if (bias || relu) {
#pragma omp parallel for schedule(static)
            for (int o = 0; o < kout; o++) {
                float *op = out + (size_t)o * R + q0 + pw + 1;
                const float b = bias ? bias[o] : 0.0f;
                for (size_t j = 0; j < m; j++) {
                    float v = op[j] + b;
                    op[j] = relu && !(v > 0.0f) ? 0.0f : v;
                }
            }
        }
    }
}

/* Run one convolution (forward, or the input gradient when transpose) with the current algorithm.
 * wsrc: weights (Cout, Cin, 3, 3) of the layer; kin/kout: the channels this pass reads/writes. */
static void conv_run(mr_nn_tensor *out, const mr_nn_tensor *in, const float *w, const float *bias,
                     int cin, int cout, int transpose, int accumulate, int relu, float *scratch)
{
    const int kin = transpose ? cout : cin, kout = transpose ? cin : cout;
    const size_t pw = (size_t)in->w + 2;
    const size_t R = (size_t)in->n * in->plane;
    const size_t Q = R - 2 * (pw + 1);
    if (mr_nn_conv_get_algo() == MR_NN_CONV_IM2COL) {
        const float *wm = w;
        float *col = scratch + 9 * (size_t)(cin + COB_MAX) * (cout + COB_MAX);
        if (transpose) {
            /* wm[ci][co*9 + k] = W[co][ci][8-k] */
            for (int ci = 0; ci < cin; ci++)
                for (int co = 0; co < cout; co++)
                    for (int k = 0; k < 9; k++)
                        scratch[((size_t)ci * cout + co) * 9 + k] = w[((size_t)co * cin + ci) * 9 + 8 - k];
            wm = scratch;
        }
        conv_im2col(out->data, in->data, wm, bias, kin, kout, R, pw, Q, accumulate, relu, col);
    } else {
        const conv_isa *is = isa();
        const int small = kout <= 2;
        const int cob = small ? is->small_cob : is->main_cob;
        pack_weights(scratch, w, cin, cout, cob, transpose);
        (small ? is->small_fn : is->main_fn)(out->data, in->data, scratch, bias, kin, kout, R, pw,
                                             Q, accumulate, relu);
    }
    zero_borders(out);
}

/* ---------------------------------------------------------------- public */

void mr_nn_conv_forward(mr_nn_tensor *out, const mr_nn_tensor *in, const float *weight,
                        const float *bias, int relu, float *scratch)
{
    conv_run(out, in, weight, bias, in->c, out->c, 0, 0, relu, scratch);
}

void mr_nn_conv_backward(mr_nn_tensor *din, float *dweight, float *dbias, const mr_nn_tensor *dout,
                         const mr_nn_tensor *in, const float *weight, float *scratch)
{
    const int cin = in->c, cout = dout->c;
    const size_t pw = (size_t)in->w + 2;
    const size_t R = (size_t)in->n * in->plane;
    const size_t Q = R - 2 * (pw + 1);
    const size_t offs[9] = {0, 1, 2, pw, pw + 1, pw + 2, 2 * pw, 2 * pw + 1, 2 * pw + 2};
    if (dbias) {
#pragma omp parallel for schedule(static)
        for (int co = 0; co < cout; co++) {
            const float *p = dout->data + (size_t)co * R;
            double s = 0.0;
            for (size_t i = 0; i < R; i++) s += p[i];
            dbias[co] += (float)s;
        }
    }
    if (dweight) {
        if (mr_nn_conv_get_algo() == MR_NN_CONV_IM2COL) {
            /* baseline: tmp[k] (Cout, Cin) = dout (Cout, Q) x in_k (Cin, Q)^T by sgemm */
            float *tmp = scratch;
            for (int k = 0; k < 9; k++)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, cout, cin, (int)Q, 1.0f,
                            dout->data + pw + 1, (int)R, in->data + offs[k], (int)R, 0.0f,
                            tmp + (size_t)k * cout * cin, cin);
            for (int co = 0; co < cout; co++)
                for (int ci = 0; ci < cin; ci++)
                    for (int k = 0; k < 9; k++)
                        dweight[((size_t)co * cin + ci) * 9 + k] +=
                            tmp[((size_t)k * cout + co) * cin + ci];
        } else {
            isa()->dw_fn(dweight, dout->data, in->data, cin, cout, R, pw, Q);
        }
    }
    if (din) conv_run(din, dout, weight, NULL, cin, cout, 1, 1, 0, scratch);
}
