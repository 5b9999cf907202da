/*
 * train.c: training of the residual CNN: forward with training-mode batch norm, loss, backward
 * through every layer, and the optimizer.
 *
 * Optimizer: Adam (Kingma & Ba 2015, "Adam: a method for stochastic optimization", ICLR,
 * Algorithm 1) with decoupled weight decay (Loshchilov & Hutter 2019, "Decoupled weight decay
 * regularization", ICLR, Algorithm 2 "AdamW"), in the exact order of PyTorch's torch.optim.AdamW
 * (1.13): p *= 1 - lr wd; m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
 * p -= (lr / (1 - b1^t)) m / (sqrt(v) / sqrt(1 - b2^t) + eps). The decay applies to conv weights
 * only. Learning-rate schedules: constant, step (x gamma every step_size steps), cosine
 * (Loshchilov & Hutter 2017, SGDR, without restarts), each after an optional linear warm-up.
 *
 * Buffers (all padded, allocated at creation):
 *   x      (N, Cin, H, W)  the input batch          target (N, Cout, H, W)
 *   y[l]   (N, Cout_l, H, W) conv output of layer l (with the ReLU fused when there is no BN)
 *   a[l]   (N, C, H, W)    BN+ReLU output of a BN layer (otherwise a[l] is y[l])
 *   out    (N, Cout, H, W) x - y[last] (residual, Cout = Cin) or y[last]
 *   g[3]   (N, C, H, W)    rotating gradient buffers; gl (N, Cout, H, W) for the last layer and
 *                          gx (N, Cin, H, W) for the input
 *
 * Losses: MSE and L1 run over whole padded buffers (zero borders in output and target add 0 to the
 * loss and to the gradient); the Gaussian NLL's gradient at a zero (s, t) pair is not 0, so it is
 * evaluated on interior rows only.
 */
#include "mr_nn.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct mr_nn_trainer {
    mr_nn_model *m;
    mr_nn_train_cfg cfg;
    int n, h, w;
    mr_nn_tensor *x, *target, *out, *gl, *gx;
    mr_nn_tensor *y[MR_NN_MAX_DEPTH], *a[MR_NN_MAX_DEPTH];
    mr_nn_tensor *g[3];
    float *bn_mean, *bn_invstd;   /* (depth, C) batch statistics of the last forward */
    float *grads;                 /* (nparams) */
    float *adam_m, *adam_v;       /* (nparams) each */
    unsigned char *decay;         /* (nparams) 1 where weight decay applies */
    float *scratch;
    long steps;
    double last_loss;
};

mr_nn_train_cfg mr_nn_train_cfg_default(void)
{
    mr_nn_train_cfg c;
    memset(&c, 0, sizeof c);
    c.loss = MR_NN_LOSS_MSE;
    c.lr = 1e-3f;
    c.beta1 = 0.9f;
    c.beta2 = 0.999f;
    c.eps = 1e-8f;
    c.weight_decay = 0.0f;
    c.sched = MR_NN_SCHED_CONST;
    c.lr_min = 0.0f;
    c.gamma = 0.1f;
    c.bn.eps = 1e-5f;
    c.bn.momentum = 0.1f;
    return c;
}

float mr_nn_lr_at(const mr_nn_train_cfg *c, long step)
{
    long s = step;
    if (c->warmup_steps > 0) {
        if (step < c->warmup_steps) return c->lr * (float)(step + 1) / (float)c->warmup_steps;
        s = step - c->warmup_steps;
    }
    switch (c->sched) {
    case MR_NN_SCHED_STEP:
        if (c->step_size > 0) return c->lr * powf(c->gamma, (float)(s / c->step_size));
        return c->lr;
    case MR_NN_SCHED_COSINE: {
        long total = c->total_steps - c->warmup_steps;
        double t;
        if (total <= 0) return c->lr;
        t = s >= total ? 1.0 : (double)s / (double)total;
        return (float)(c->lr_min + (c->lr - c->lr_min) * 0.5 * (1.0 + cos(M_PI * t)));
    }
    default: return c->lr;
    }
}

void mr_nn_trainer_destroy(mr_nn_trainer *t)
{
    if (!t) return;
    mr_nn_tensor_destroy(t->x);
    mr_nn_tensor_destroy(t->target);
    mr_nn_tensor_destroy(t->out);
    mr_nn_tensor_destroy(t->gl);
    mr_nn_tensor_destroy(t->gx);
    for (int l = 0; l < MR_NN_MAX_DEPTH; l++) {
        if (t->a[l] != t->y[l]) mr_nn_tensor_destroy(t->a[l]);
        mr_nn_tensor_destroy(t->y[l]);
    }
    for (int i = 0; i < 3; i++) mr_nn_tensor_destroy(t->g[i]);
    mr_free_aligned(t->bn_mean);
    mr_free_aligned(t->bn_invstd);
    mr_free_aligned(t->grads);
    mr_free_aligned(t->adam_m);
    mr_free_aligned(t->adam_v);
    mr_free_aligned(t->scratch);
    free(t->decay);
    free(t);
}

mr_status mr_nn_trainer_create(mr_nn_trainer **out, mr_nn_model *m, int n, int h, int w,
                               const mr_nn_train_cfg *cfg)
{
    const mr_nn_arch *A = &m->arch;
    const int C = A->channels, Ci = A->in_channels, Co = A->out_channels;
    mr_nn_trainer *t;
    mr_status st = MR_OK;
    size_t scratch = 0;
    *out = NULL;
    if (n < 1 || h < 3 || w < 3)
        return mr_error_set(MR_ERR_USAGE, "training batch (%d, %d, %d, %d): need N >= 1 and "
                            "patches of at least 3 x 3", n, Ci, h, w);
    if (!(cfg->lr >= 0.0f) || !(cfg->beta1 >= 0.0f && cfg->beta1 < 1.0f) ||
        !(cfg->beta2 >= 0.0f && cfg->beta2 < 1.0f) || !(cfg->eps > 0.0f) ||
        !(cfg->weight_decay >= 0.0f))
        return mr_error_set(MR_ERR_USAGE, "optimizer settings out of range (lr %g, betas %g %g, "
                            "eps %g, weight decay %g)", (double)cfg->lr, (double)cfg->beta1,
                            (double)cfg->beta2, (double)cfg->eps, (double)cfg->weight_decay);
    if (cfg->loss != MR_NN_LOSS_MSE && cfg->loss != MR_NN_LOSS_L1 &&
        cfg->loss != MR_NN_LOSS_GAUSS_NLL)
        return mr_error_set(MR_ERR_USAGE, "training loss %d: expected MSE (0), L1 (1) or "
                            "Gaussian NLL (2)", (int)cfg->loss);
    if (cfg->loss == MR_NN_LOSS_GAUSS_NLL && A->residual)
        return mr_error_set(MR_ERR_USAGE, "the Gaussian NLL loss reads the raw network output as a "
                            "log-variance: it needs residual = 0, found residual = 1");
    t = mr_calloc(1, sizeof *t);
    if (!t) return MR_ERR_NOMEM;
    t->m = m;
    t->cfg = *cfg;
    t->n = n;
    t->h = h;
    t->w = w;
#define TRY(expr)                                                                                 \
    do {                                                                                          \
        if ((st = (expr)) != MR_OK) goto fail;                                                    \
    } while (0)
    TRY(mr_nn_tensor_create(&t->x, n, Ci, h, w, 1));
    TRY(mr_nn_tensor_create(&t->target, n, Co, h, w, 1));
    TRY(mr_nn_tensor_create(&t->out, n, Co, h, w, 1));
    TRY(mr_nn_tensor_create(&t->gl, n, Co, h, w, 1));
    TRY(mr_nn_tensor_create(&t->gx, n, Ci, h, w, 1));
    for (int i = 0; i < 3; i++) TRY(mr_nn_tensor_create(&t->g[i], n, C, h, w, 1));
    for (int l = 0; l < A->depth; l++) {
        const mr_nn_layer *L = &m->layers[l];
        size_t s = mr_nn_conv_scratch_floats(L->cin, L->cout);
        if (s > scratch) scratch = s;
        TRY(mr_nn_tensor_create(&t->y[l], n, L->cout, h, w, 1));
        if (L->bn)
            TRY(mr_nn_tensor_create(&t->a[l], n, L->cout, h, w, 1));
        else
            t->a[l] = t->y[l];
    }
#undef TRY
    t->bn_mean = mr_malloc_aligned((size_t)A->depth * C * sizeof(float));
    t->bn_invstd = mr_malloc_aligned((size_t)A->depth * C * sizeof(float));
    t->grads = mr_malloc_aligned(m->nparams * sizeof(float));
    t->adam_m = mr_malloc_aligned(m->nparams * sizeof(float));
    t->adam_v = mr_malloc_aligned(m->nparams * sizeof(float));
    t->scratch = mr_malloc_aligned(scratch * sizeof(float));
    t->decay = mr_calloc(m->nparams, 1);
    if (!t->bn_mean || !t->bn_invstd || !t->grads || !t->adam_m || !t->adam_v || !t->scratch ||
        !t->decay) {
        st = MR_ERR_NOMEM;
        goto fail;
    }
    memset(t->grads, 0, m->nparams * sizeof(float));
    memset(t->adam_m, 0, m->nparams * sizeof(float));
    memset(t->adam_v, 0, m->nparams * sizeof(float));
    for (int l = 0; l < A->depth; l++) {
        const mr_nn_layer *L = &m->layers[l];
        memset(t->decay + L->weight, 1, (size_t)L->cout * L->cin * 9);
    }
    *out = t;
    return MR_OK;
fail:
    mr_nn_trainer_destroy(t);
    return st;
}

double mr_nn_trainer_forward(mr_nn_trainer *t, const float *input, const float *target)
{
    mr_nn_model *m = t->m;
    const mr_nn_arch *A = &m->arch;
    const int last = A->depth - 1;
    const mr_nn_tensor *in = t->x;
    const size_t count = (size_t)t->n * A->out_channels * t->h * t->w;
    mr_nn_bn_cfg bn = t->cfg.bn;
    bn.eps = A->bn_eps;
    mr_nn_tensor_pad(t->x, input);
    for (int l = 0; l <= last; l++) {
        const mr_nn_layer *L = &m->layers[l];
        const float *b = L->bias != SIZE_MAX ? m->params + L->bias : NULL;
        mr_nn_conv_forward(t->y[l], in, m->params + L->weight, b, L->relu && !L->bn, t->scratch);
        if (L->bn)
            mr_nn_bn_forward(t->a[l], t->bn_mean + (size_t)l * A->channels,
                             t->bn_invstd + (size_t)l * A->channels, t->y[l],
                             m->params + L->bn_gamma, m->params + L->bn_beta,
                             m->buffers + L->bn_mean, m->buffers + L->bn_var, &bn, 1);
        in = t->a[l];
    }
    if (A->residual)
        mr_nn_residual_forward(t->out->data, t->x->data, t->y[last]->data, t->out->size);
    else
        memcpy(t->out->data, t->y[last]->data, t->out->size * sizeof(float));
    if (!target) return NAN;
    mr_nn_tensor_pad(t->target, target);
    switch (t->cfg.loss) {
    case MR_NN_LOSS_L1:
        t->last_loss = mr_nn_l1_forward(t->out->data, t->target->data, t->out->size, count);
        break;
    case MR_NN_LOSS_GAUSS_NLL: /* zero borders add 0.5 (0 + 0 e^0) = 0 */
        t->last_loss = mr_nn_gauss_nll_forward(t->out->data, t->target->data, t->out->size, count);
        break;
    default:
        t->last_loss = mr_nn_mse_forward(t->out->data, t->target->data, t->out->size, count);
    }
    return t->last_loss;
}

/* ADD dL/dout of the last forward into d (padded, the shape of out). */
static void loss_backward(mr_nn_tensor *d, const mr_nn_trainer *t, size_t count)
{
    const mr_nn_tensor *o = t->out, *y = t->target;
    switch (t->cfg.loss) {
    case MR_NN_LOSS_L1: mr_nn_l1_backward(d->data, o->data, y->data, o->size, count, 1.0f); break;
    case MR_NN_LOSS_GAUSS_NLL:
        /* interior rows only: the gradient at a zero border pair is 0.5 / count, not 0 */
        for (int c = 0; c < o->c; c++)
            for (int n = 0; n < o->n; n++)
                for (int r = 0; r < o->h; r++)
                    mr_nn_gauss_nll_backward(mr_nn_at(d, n, c, r, 0), mr_nn_at(o, n, c, r, 0),
                                             mr_nn_at(y, n, c, r, 0), (size_t)o->w, count, 1.0f);
        break;
    default: mr_nn_mse_backward(d->data, o->data, y->data, o->size, count, 1.0f);
    }
}

/* g = g where y > 0, else 0 (the ReLU fused into a convolution), interior and borders alike
 * (borders of both are zero). */
static void relu_mask_inplace(mr_nn_tensor *g, const mr_nn_tensor *y)
{
    const size_t n = g->size;
    float *gd = g->data;
    const float *yd = y->data;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++)
        if (!(yd[i] > 0.0f)) gd[i] = 0.0f;
}

void mr_nn_trainer_backward(mr_nn_trainer *t, float *dinput)
{
    mr_nn_model *m = t->m;
    const mr_nn_arch *A = &m->arch;
    const int last = A->depth - 1;
    const size_t count = (size_t)t->n * A->out_channels * t->h * t->w;
    mr_nn_tensor *g = NULL; /* gradient w.r.t. the current layer's output a[l] */
    int gi = 0;
    /* loss -> output -> noise estimate y[last] */
    mr_nn_tensor_zero(t->gx);
    mr_nn_tensor_zero(t->gl);
    if (A->residual) {
        /* d out into gx (as scratch; Cout = Cin), then split: dx += dout, dy -= dout */
        loss_backward(t->gx, t, count);
        mr_nn_residual_backward(NULL, t->gl->data, t->gx->data, t->gl->size);
        if (!dinput) mr_nn_tensor_zero(t->gx);
    } else {
        loss_backward(t->gl, t, count);
    }
    g = t->gl;
    for (int l = last; l >= 0; l--) {
        const mr_nn_layer *L = &m->layers[l];
        const mr_nn_tensor *in = l > 0 ? t->a[l - 1] : t->x;
        mr_nn_tensor *gy = g, *gin = NULL;
        float *gp = t->grads;
        if (L->bn) {
            gy = t->g[gi];
            gi = (gi + 1) % 3;
            mr_nn_tensor_zero(gy);
            mr_nn_bn_backward(gy, gp + L->bn_gamma, gp + L->bn_beta, g, t->y[l], t->a[l],
                              t->bn_mean + (size_t)l * A->channels,
                              t->bn_invstd + (size_t)l * A->channels, m->params + L->bn_gamma, 1);
        } else if (L->relu) {
            relu_mask_inplace(g, t->y[l]);
        }
        if (l > 0) {
            gin = t->g[gi];
            gi = (gi + 1) % 3;
            mr_nn_tensor_zero(gin);
        } else if (dinput) {
            gin = t->gx; /* already holds the residual path's dout (or zero) */
        }
        mr_nn_conv_backward(gin, gp + L->weight, L->bias != SIZE_MAX ? gp + L->bias : NULL, gy,
                            in, m->params + L->weight, t->scratch);
        g = gin;
    }
    if (dinput) {
        /* add gx (dense) into dinput */
        const int Ci = A->in_channels;
        for (int n = 0; n < t->n; n++)
            for (int c = 0; c < Ci; c++)
                for (int y = 0; y < t->h; y++) {
                    const float *s = mr_nn_at(t->gx, n, c, y, 0);
                    float *d = dinput + (((size_t)n * Ci + c) * t->h + y) * t->w;
                    for (int x = 0; x < t->w; x++) d[x] += s[x];
                }
    }
}

void mr_nn_trainer_zero_grad(mr_nn_trainer *t)
{
    memset(t->grads, 0, t->m->nparams * sizeof(float));
}

void mr_nn_trainer_adam(mr_nn_trainer *t)
{
    const mr_nn_train_cfg *c = &t->cfg;
    const float lr = mr_nn_lr_at(c, t->steps);
    const long step = ++t->steps;
    const float b1 = c->beta1, b2 = c->beta2, eps = c->eps;
    const float bc1 = 1.0f - powf(b1, (float)step);
    const float bc2s = sqrtf(1.0f - powf(b2, (float)step));
    const float step_size = lr / bc1, decay = 1.0f - lr * c->weight_decay;
    float *p = t->m->params, *g = t->grads, *mm = t->adam_m, *vv = t->adam_v;
    const unsigned char *dm = t->decay;
    const size_t n = t->m->nparams;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        float pi = dm[i] ? p[i] * decay : p[i];
        mm[i] = b1 * mm[i] + (1.0f - b1) * g[i];
        vv[i] = b2 * vv[i] + (1.0f - b2) * g[i] * g[i];
        p[i] = pi - step_size * mm[i] / (sqrtf(vv[i]) / bc2s + eps);
    }
}

mr_status mr_nn_trainer_step(mr_nn_trainer *t, const float *input, const float *target,
                             double *loss)
{
    double L;
    mr_nn_trainer_zero_grad(t);
    L = mr_nn_trainer_forward(t, input, target);
    if (loss) *loss = L;
    if (!isfinite(L))
        return mr_error_set(MR_ERR_INPUT, "training step %ld: the loss is %g (NaN/Inf in the "
                            "batch, or the training diverged)", t->steps + 1, L);
    mr_nn_trainer_backward(t, NULL);
    mr_nn_trainer_adam(t);
    return MR_OK;
}

void mr_nn_trainer_output(const mr_nn_trainer *t, float *out) { mr_nn_tensor_unpad(out, t->out); }
float *mr_nn_trainer_grads(mr_nn_trainer *t) { return t->grads; }
float *mr_nn_trainer_adam_m(mr_nn_trainer *t) { return t->adam_m; }
float *mr_nn_trainer_adam_v(mr_nn_trainer *t) { return t->adam_v; }
long *mr_nn_trainer_steps(mr_nn_trainer *t) { return &t->steps; }
mr_nn_model *mr_nn_trainer_model(mr_nn_trainer *t) { return t->m; }
