/*
 * layers.c: the elementwise and per-channel layers over padded tensors (interior pixels only, so
 * borders stay zero): ReLU; batch norm (Ioffe & Szegedy 2015, "Batch normalization: accelerating
 * deep network training by reducing internal covariate shift", ICML, Algorithm 1 and its
 * backward), optionally fused with the ReLU that follows it; the MSE and L1 losses; the Gaussian
 * negative log-likelihood with a predicted log-variance (Nix & Weigend 1994, "Estimating the mean
 * and variance of the target probability distribution", ICNN; Kendall & Gal 2017, "What
 * uncertainties do we need in Bayesian deep learning for computer vision?", NeurIPS, eq. 8); the
 * residual output of DnCNN (Zhang et al. 2017, eq. 1: x = y - R(y)).
 *
 * Batch-norm backward, with xhat = (x - mean) invstd over M = N H W values per channel and g the
 * incoming gradient (masked by the ReLU when fused):
 *   dbeta = sum g;  dgamma = sum g xhat;
 *   dx = gamma invstd (g - dbeta / M - xhat dgamma / M).
 * Channel sums run in double, one thread per channel, in a fixed order.
 */
#include "mr_nn.h"

#include <math.h>
#include <string.h>

/* Apply `body` to every interior pixel of channel c of padded tensor t: i is the float index. */
#define FOR_CHANNEL_INTERIOR(t, c, i, body)                                                       \
    do {                                                                                          \
        const size_t pw_ = (size_t)(t)->w + 2;                                                    \
        for (int n_ = 0; n_ < (t)->n; n_++) {                                                     \
            const size_t base_ = ((size_t)(c) * (t)->n + n_) * (t)->plane;                        \
            for (int y_ = 1; y_ <= (t)->h; y_++) {                                                \
                const size_t row_ = base_ + (size_t)y_ * pw_ + 1;                                 \
                for (size_t i = row_; i < row_ + (size_t)(t)->w; i++) body;                       \
            }                                                                                     \
        }                                                                                         \
    } while (0)

void mr_nn_relu_forward(mr_nn_tensor *out, const mr_nn_tensor *in)
{
    const float *x = in->data;
    float *y = out->data;
#pragma omp parallel for schedule(static)
    for (int c = 0; c < in->c; c++) FOR_CHANNEL_INTERIOR(in, c, i, { y[i] = x[i] > 0.0f ? x[i] : 0.0f; });
}

void mr_nn_relu_backward(mr_nn_tensor *din, const mr_nn_tensor *dout, const mr_nn_tensor *out)
{
    const float *g = dout->data, *y = out->data;
    float *dx = din->data;
#pragma omp parallel for schedule(static)
    for (int c = 0; c < out->c; c++) FOR_CHANNEL_INTERIOR(out, c, i, { if (y[i] > 0.0f) dx[i] += g[i]; });
}

/* Row helpers for batch norm: 8-lane float partial sums in a fixed order (the lanes and the tail
 * are added in the same order on every run), returned per row and summed over rows in double. */
typedef float v4f __attribute__((vector_size(16)));
typedef float v4fu __attribute__((vector_size(16), aligned(4), may_alias));
typedef int v4i __attribute__((vector_size(16)));
/* Two 4-lane vectors (native SSE on every x86-64) make the 8 lanes. */
typedef struct {
    v4f lo, hi;
} v8f;

static inline float hsum8(v8f v)
{
    return ((v.lo[0] + v.lo[1]) + (v.lo[2] + v.lo[3])) + ((v.hi[0] + v.hi[1]) + (v.hi[2] + v.hi[3]));
}

static inline v4f ld4(const float *p) { return *(const v4fu *)p; }
static inline v4f relu_mask(v4f v, v4f y) { return (v4f)((v4i)v & (y > (v4f){0})); }

static float row_sum(const float *x, int w)
{
    v8f a = {{0}, {0}};
    float t;
    int j = 0;
    for (; j + 8 <= w; j += 8) {
        a.lo += ld4(x + j);
        a.hi += ld4(x + j + 4);
    }
    t = hsum8(a);
    for (; j < w; j++) t += x[j];
    return t;
}

static float row_sqdev(const float *x, int w, float m)
{
    v8f a = {{0}, {0}};
    float t;
    int j = 0;
    for (; j + 8 <= w; j += 8) {
        v4f d0 = ld4(x + j) - m, d1 = ld4(x + j + 4) - m;
        a.lo += d0 * d0;
        a.hi += d1 * d1;
    }
    t = hsum8(a);
    for (; j < w; j++) t += (x[j] - m) * (x[j] - m);
    return t;
}

/* sums of g and g (x - m) over a row, g masked by y > 0 when y != NULL */
static void row_bwd_sums(const float *g, const float *y, const float *x, int w, float m, float *sg,
                         float *sgx)
{
    v8f a = {{0}, {0}}, b = {{0}, {0}};
    float ta, tb;
    int j = 0;
    for (; j + 8 <= w; j += 8) {
        v4f g0 = ld4(g + j), g1 = ld4(g + j + 4);
        if (y) {
            g0 = relu_mask(g0, ld4(y + j));
            g1 = relu_mask(g1, ld4(y + j + 4));
        }
        a.lo += g0;
        a.hi += g1;
        b.lo += g0 * (ld4(x + j) - m);
        b.hi += g1 * (ld4(x + j + 4) - m);
    }
    ta = hsum8(a);
    tb = hsum8(b);
    for (; j < w; j++) {
        float gj = (!y || y[j] > 0.0f) ? g[j] : 0.0f;
        ta += gj;
        tb += gj * (x[j] - m);
    }
    *sg = ta;
    *sgx = tb;
}

/* y = a (x - m) + b, then max(., 0) when relu: vector code without branches (a branch per
 * pixel on the sign mispredicts half the time). */
static void row_affine(float *y, const float *x, int w, float a, float m, float b, int relu)
{
    int j = 0;
    for (; j + 4 <= w; j += 4) {
        v4f v = a * (ld4(x + j) - m) + b;
        if (relu) v = relu_mask(v, v);
        *(v4fu *)(y + j) = v;
    }
    for (; j < w; j++) {
        float v = a * (x[j] - m) + b;
        y[j] = relu && !(v > 0.0f) ? 0.0f : v;
    }
}

/* dx += k0 g + k1 + k2 (x - m), g masked by y > 0 when y != NULL */
static void row_bwd_apply(float *dx, const float *g, const float *y, const float *x, int w,
                          float k0, float k1, float k2, float m)
{
    int j = 0;
    for (; j + 4 <= w; j += 4) {
        v4f gv = ld4(g + j);
        if (y) gv = relu_mask(gv, ld4(y + j));
        *(v4fu *)(dx + j) += k0 * gv + k1 + k2 * (ld4(x + j) - m);
    }
    for (; j < w; j++) {
        float gj = (!y || y[j] > 0.0f) ? g[j] : 0.0f;
        dx[j] += k0 * gj + k1 + k2 * (x[j] - m);
    }
}

/* Apply `body` to every interior row of channel c of padded tensor t: r is the float index of the
 * row's first interior pixel. */
#define FOR_CHANNEL_ROWS(t, c, r, ...)                                                           \
    do {                                                                                          \
        const size_t pw_ = (size_t)(t)->w + 2;                                                    \
        for (int n_ = 0; n_ < (t)->n; n_++) {                                                     \
            const size_t base_ = ((size_t)(c) * (t)->n + n_) * (t)->plane;                        \
            for (int y_ = 1; y_ <= (t)->h; y_++) {                                                \
                const size_t r = base_ + (size_t)y_ * pw_ + 1;                                    \
                __VA_ARGS__;                                                                      \
            }                                                                                     \
        }                                                                                         \
    } while (0)

void mr_nn_bn_forward(mr_nn_tensor *out, float *mean, float *invstd, const mr_nn_tensor *in,
                      const float *gamma, const float *beta, float *running_mean,
                      float *running_var, const mr_nn_bn_cfg *cfg, int relu)
{
    const double M = (double)in->n * in->h * in->w;
    const int w = in->w;
    const float *x = in->data;
    float *y = out->data;
#pragma omp parallel for schedule(static)
    for (int c = 0; c < in->c; c++) {
        double s = 0.0, ss = 0.0, var;
        float m, is, a, b;
        FOR_CHANNEL_ROWS(in, c, r, { s += row_sum(x + r, w); });
        m = (float)(s / M);
        FOR_CHANNEL_ROWS(in, c, r, { ss += row_sqdev(x + r, w, m); });
        var = ss / M;
        is = (float)(1.0 / sqrt(var + cfg->eps));
        mean[c] = m;
        invstd[c] = is;
        if (running_mean)
            running_mean[c] = (1.0f - cfg->momentum) * running_mean[c] + cfg->momentum * m;
        if (running_var)
            running_var[c] = (1.0f - cfg->momentum) * running_var[c] +
                             cfg->momentum * (float)(M > 1 ? ss / (M - 1) : var);
        a = gamma[c] * is; /* y = a (x - m) + b */
        b = beta[c];
        FOR_CHANNEL_ROWS(in, c, r, row_affine(y + r, x + r, w, a, m, b, relu));
    }
}

void mr_nn_bn_backward(mr_nn_tensor *din, float *dgamma, float *dbeta, const mr_nn_tensor *dout,
                       const mr_nn_tensor *in, const mr_nn_tensor *out, const float *mean,
                       const float *invstd, const float *gamma, int relu)
{
    const double M = (double)in->n * in->h * in->w;
    const int w = in->w;
    const float *x = in->data, *g = dout->data, *y = relu ? out->data : NULL;
    float *dx = din->data;
#pragma omp parallel for schedule(static)
    for (int c = 0; c < in->c; c++) {
        const float m = mean[c], is = invstd[c];
        double sg = 0.0, sgx = 0.0;
        float k0, k1, k2;
        FOR_CHANNEL_ROWS(in, c, r, {
            float a, b;
            row_bwd_sums(g + r, y ? y + r : NULL, x + r, w, m, &a, &b);
            sg += a;
            sgx += b;
        });
        sgx *= is; /* sum g xhat */
        dbeta[c] += (float)sg;
        dgamma[c] += (float)sgx;
        /* dx = gamma is (g - sg/M - xhat sgx/M) = k0 g + k1 + k2 (x - m) */
        k0 = gamma[c] * is;
        k1 = (float)(-gamma[c] * is * sg / M);
        k2 = (float)(-gamma[c] * is * is * sgx / M);
        FOR_CHANNEL_ROWS(in, c, r, row_bwd_apply(dx + r, g + r, y ? y + r : NULL, x + r, w, k0, k1, k2, m));
    }
}

void mr_nn_bn_eval_forward(mr_nn_tensor *out, const mr_nn_tensor *in, const float *gamma,
                           const float *beta, const float *running_mean, const float *running_var,
                           float eps, int relu)
{
    const float *x = in->data;
    float *y = out->data;
#pragma omp parallel for schedule(static)
    for (int c = 0; c < in->c; c++) {
        const float is = (float)(1.0 / sqrt((double)running_var[c] + eps));
        const float m = running_mean[c], a = gamma[c] * is, b = beta[c];
        FOR_CHANNEL_INTERIOR(in, c, i, {
            float v = a * (x[i] - m) + b;
            y[i] = relu && !(v > 0.0f) ? 0.0f : v;
        });
    }
}

double mr_nn_mse_forward(const float *pred, const float *target, size_t n, size_t count)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)pred[i] - target[i];
        s += d * d;
    }
    return s / (double)count;
}

void mr_nn_mse_backward(float *dpred, const float *pred, const float *target, size_t n,
                        size_t count, float scale)
{
    const float k = (float)(2.0 * scale / (double)count);
    for (size_t i = 0; i < n; i++) dpred[i] += k * (pred[i] - target[i]);
}

double mr_nn_l1_forward(const float *pred, const float *target, size_t n, size_t count)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += fabs((double)pred[i] - target[i]);
    return s / (double)count;
}

void mr_nn_l1_backward(float *dpred, const float *pred, const float *target, size_t n,
                       size_t count, float scale)
{
    const float k = (float)(scale / (double)count);
    for (size_t i = 0; i < n; i++) {
        float d = pred[i] - target[i];
        dpred[i] += d > 0.0f ? k : (d < 0.0f ? -k : 0.0f);
    }
}

/* Gaussian NLL with predicted log-variance s and observed error t, constant dropped:
 * 0.5 (s + t^2 e^-s); d/ds = 0.5 (1 - t^2 e^-s). s is clamped to +-MR_NN_GAUSS_NLL_CLAMP (no
 * gradient outside), in double, so e^-s and t^2 e^-s stay finite for any finite float t. */
double mr_nn_gauss_nll_forward(const float *pred, const float *target, size_t n, size_t count)
{
    double sum = 0.0;
    for (size_t i = 0; i < n; i++) {
        const double t = target[i];
        double s = pred[i]; /* comparisons, not fmin/fmax: a NaN must reach the sum */
        if (s < -MR_NN_GAUSS_NLL_CLAMP) s = -MR_NN_GAUSS_NLL_CLAMP;
        if (s > MR_NN_GAUSS_NLL_CLAMP) s = MR_NN_GAUSS_NLL_CLAMP;
        sum += 0.5 * (s + t * t * exp(-s));
    }
    return sum / (double)count;
}

void mr_nn_gauss_nll_backward(float *dpred, const float *pred, const float *target, size_t n,
                              size_t count, float scale)
{
    const double k = 0.5 * scale / (double)count;
    for (size_t i = 0; i < n; i++) {
        const double s = pred[i], t = target[i];
        if (!(s >= -MR_NN_GAUSS_NLL_CLAMP && s <= MR_NN_GAUSS_NLL_CLAMP)) continue; /* clamped */
        dpred[i] += (float)(k * (1.0 - t * t * exp(-s)));
    }
}

void mr_nn_residual_forward(float *out, const float *in, const float *noise, size_t n)
{
    for (size_t i = 0; i < n; i++) out[i] = in[i] - noise[i];
}

void mr_nn_residual_backward(float *din, float *dnoise, const float *dout, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (din) din[i] += dout[i];
        if (dnoise) dnoise[i] -= dout[i];
    }
}
