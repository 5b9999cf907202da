/*
 * layers.c: the elementwise and per-channel layers over padded tensors (interior pixels only, so
 * borders stay zero): ReLU; batch norm (Ioffe & Szegedy 2015, "Batch normalization: accelerating
 * deep network training by reducing internal covariate shift", ICML, Algorithm 1 and its
 * backward), optionally fused with the ReLU that follows it; the MSE and L1 losses; the residual
 * output of DnCNN (Zhang et al. 2017, eq. 1: x = y - R(y)).
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

void mr_nn_bn_forward(mr_nn_tensor *out, float *mean, float *invstd, const mr_nn_tensor *in,
                      const float *gamma, const float *beta, float *running_mean,
                      float *running_var, const mr_nn_bn_cfg *cfg, int relu)
{
    const double M = (double)in->n * in->h * in->w;
    const float *x = in->data;
    float *y = out->data;
#pragma omp parallel for schedule(static)
    for (int c = 0; c < in->c; c++) {
        double s = 0.0, ss = 0.0, mu, var;
        float m, is, a, b;
        FOR_CHANNEL_INTERIOR(in, c, i, { s += x[i]; });
        mu = s / M;
        FOR_CHANNEL_INTERIOR(in, c, i, {
            double d = x[i] - mu;
            ss += d * d;
        });
        var = ss / M;
        m = (float)mu;
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
        if (relu)
            FOR_CHANNEL_INTERIOR(in, c, i, {
                float v = a * (x[i] - m) + b;
                y[i] = v > 0.0f ? v : 0.0f;
            });
        else
            FOR_CHANNEL_INTERIOR(in, c, i, { y[i] = a * (x[i] - m) + b; });
    }
}

void mr_nn_bn_backward(mr_nn_tensor *din, float *dgamma, float *dbeta, const mr_nn_tensor *dout,
                       const mr_nn_tensor *in, const mr_nn_tensor *out, const float *mean,
                       const float *invstd, const float *gamma, int relu)
{
    const double M = (double)in->n * in->h * in->w;
    const float *x = in->data, *g = dout->data, *y = relu ? out->data : NULL;
    float *dx = din->data;
#pragma omp parallel for schedule(static)
    for (int c = 0; c < in->c; c++) {
        const float m = mean[c], is = invstd[c];
        double sg = 0.0, sgx = 0.0;
        float k0, k1, k2;
        if (relu)
            FOR_CHANNEL_INTERIOR(in, c, i, {
                if (y[i] > 0.0f) {
                    sg += g[i];
                    sgx += (double)g[i] * ((x[i] - m) * is);
                }
            });
        else
            FOR_CHANNEL_INTERIOR(in, c, i, {
                sg += g[i];
                sgx += (double)g[i] * ((x[i] - m) * is);
            });
        dbeta[c] += (float)sg;
        dgamma[c] += (float)sgx;
        /* dx = gamma is (g - sg/M - xhat sgx/M) = k0 g + k1 + k2 (x - m) */
        k0 = gamma[c] * is;
        k1 = (float)(-gamma[c] * is * sg / M);
        k2 = (float)(-gamma[c] * is * is * sgx / M);
        if (relu)
            FOR_CHANNEL_INTERIOR(in, c, i, {
                float gi = y[i] > 0.0f ? g[i] : 0.0f;
                dx[i] += k0 * gi + k1 + k2 * (x[i] - m);
            });
        else
            FOR_CHANNEL_INTERIOR(in, c, i, { dx[i] += k0 * g[i] + k1 + k2 * (x[i] - m); });
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
