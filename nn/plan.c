/*
 * plan.c: whole-image inference (FFTW-style plan: create once for an image size, run per slice,
 * destroy). Batch norm is folded into the convolution before it (Ioffe & Szegedy 2015, section
 * 3.2: at inference BN is a fixed affine map per channel):
 *   s = gamma / sqrt(running_var + eps);  W'[co] = s[co] W[co];  b'[co] = s[co] (b[co] - rm[co]) + beta[co]
 * so a layer is one convolution with its ReLU fused. Two activation buffers alternate between
 * layers; the network sees the whole image (no tiles, so no seams).
 */
#include "mr_nn.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct mr_nn_plan {
    const mr_nn_model *m;
    int h, w;
    float *wfold;                     /* folded weights, the params layout of conv weights */
    float *bfold;                     /* (depth, C) folded biases */
    mr_nn_tensor *x, *noise, *act[2]; /* (1, Cin), (1, Cout), (1, C) x 2, padded */
    float *scratch;
};

void mr_nn_plan_destroy(mr_nn_plan *p)
{
    if (!p) return;
    mr_free_aligned(p->wfold);
    mr_free_aligned(p->bfold);
    mr_nn_tensor_destroy(p->x);
    mr_nn_tensor_destroy(p->noise);
    mr_nn_tensor_destroy(p->act[0]);
    mr_nn_tensor_destroy(p->act[1]);
    mr_free_aligned(p->scratch);
    free(p);
}

void mr_nn_plan_update(mr_nn_plan *p)
{
    const mr_nn_model *m = p->m;
    const int C = m->arch.channels;
    for (int l = 0; l < m->arch.depth; l++) {
        const mr_nn_layer *L = &m->layers[l];
        const size_t per = (size_t)L->cin * 9;
        float *bf = p->bfold + (size_t)l * C;
        for (int co = 0; co < L->cout; co++) {
            const float *w = m->params + L->weight + co * per;
            float *wf = p->wfold + L->weight + co * per;
            float b = L->bias != SIZE_MAX ? m->params[L->bias + co] : 0.0f;
            float s = 1.0f;
            if (L->bn) {
                s = (float)(m->params[L->bn_gamma + co] /
                            sqrt((double)m->buffers[L->bn_var + co] + m->arch.bn_eps));
                b = s * (b - m->buffers[L->bn_mean + co]) + m->params[L->bn_beta + co];
            }
            for (size_t i = 0; i < per; i++) wf[i] = s * w[i];
            bf[co] = b;
        }
    }
}

mr_status mr_nn_plan_create(mr_nn_plan **out, const mr_nn_model *m, int h, int w)
{
    const int C = m->arch.channels, Ci = m->arch.in_channels, Co = m->arch.out_channels;
    const int rf = mr_nn_receptive_field(&m->arch);
    size_t scratch = 0;
    mr_status st;
    mr_nn_plan *p;
    *out = NULL;
    if (h < rf || w < rf)
        return mr_error_set(MR_ERR_INPUT, "image %d x %d is smaller than the network's receptive "
                            "field %d x %d (depth %d)", h, w, rf, rf, m->arch.depth);
    p = mr_calloc(1, sizeof *p);
    if (!p) return MR_ERR_NOMEM;
    p->m = m;
    p->h = h;
    p->w = w;
    if ((st = mr_nn_tensor_create(&p->x, 1, Ci, h, w, 1)) != MR_OK ||
        (st = mr_nn_tensor_create(&p->noise, 1, Co, h, w, 1)) != MR_OK ||
        (st = mr_nn_tensor_create(&p->act[0], 1, C, h, w, 1)) != MR_OK ||
        (st = mr_nn_tensor_create(&p->act[1], 1, C, h, w, 1)) != MR_OK)
        goto fail;
    for (int l = 0; l < m->arch.depth; l++) {
        size_t s = mr_nn_conv_scratch_floats(m->layers[l].cin, m->layers[l].cout);
        if (s > scratch) scratch = s;
    }
    p->scratch = mr_malloc_aligned(scratch * sizeof(float));
    p->wfold = mr_malloc_aligned(m->nparams * sizeof(float));
    p->bfold = mr_malloc_aligned((size_t)m->arch.depth * C * sizeof(float));
    if (!p->scratch || !p->wfold || !p->bfold) {
        st = MR_ERR_NOMEM;
        goto fail;
    }
    mr_nn_plan_update(p);
    *out = p;
    return MR_OK;
fail:
    mr_nn_plan_destroy(p);
    return st;
}

mr_status mr_nn_plan_run(mr_nn_plan *p, float *out, const float *in)
{
    const mr_nn_model *m = p->m;
    const int C = m->arch.channels, Ci = m->arch.in_channels, last = m->arch.depth - 1;
    const size_t hw = (size_t)p->h * p->w;
    const mr_nn_tensor *src = p->x;
    for (size_t i = 0; i < (size_t)Ci * hw; i++)
        if (!isfinite(in[i]))
            return mr_error_set(MR_ERR_INPUT, "image pixel (channel %zu, y %zu, x %zu) is %g: "
                                "the network needs finite input", i / hw, (i % hw) / p->w,
                                i % p->w, (double)in[i]);
    mr_nn_tensor_pad(p->x, in);
    for (int l = 0; l <= last; l++) {
        const mr_nn_layer *L = &m->layers[l];
        mr_nn_tensor *dst = l == last ? p->noise : p->act[l % 2];
        mr_nn_conv_forward(dst, src, p->wfold + L->weight, p->bfold + (size_t)l * C, L->relu,
                           p->scratch);
        src = dst;
    }
    if (m->arch.residual) /* Cout = Cin: both tensors have the same layout */
        mr_nn_residual_forward(p->noise->data, p->x->data, p->noise->data, p->noise->size);
    mr_nn_tensor_unpad(out, p->noise);
    return MR_OK;
}
