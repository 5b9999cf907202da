/*
 * model.c: the DnCNN-family network description (Zhang et al. 2017: conv+ReLU, (depth-2) x
 * conv+BN+ReLU, conv; residual output), its one-block parameter layout, and He initialisation
 * (He et al. 2015, "Delving deep into rectifiers", ICCV, eq. 10: std = sqrt(2 / fan_in)).
 *
 * Layout of `params`, layer by layer: conv weight (Cout, Cin, 3, 3), conv bias (Cout) when the
 * layer has one (not the middle layers with batch norm), BN gamma (Cout), BN beta (Cout). The
 * running statistics (mean, variance per BN layer) are in `buffers`, which the optimizer skips.
 */
#include "mr_nn.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

mr_nn_arch mr_nn_arch_default(int depth, int channels)
{
    mr_nn_arch a;
    memset(&a, 0, sizeof a);
    a.depth = depth;
    a.channels = channels;
    a.in_channels = 1;
    a.batch_norm = 1;
    a.residual = 1;
    a.bn_eps = 1e-5f;
    return a;
}

int mr_nn_receptive_field(const mr_nn_arch *arch) { return 2 * arch->depth + 1; }

/* out_channels 0 means "same as in_channels" in a caller's struct */
static int out_ch(const mr_nn_arch *a) { return a->out_channels ? a->out_channels : a->in_channels; }

void mr_nn_arch_describe(char *buf, size_t size, const mr_nn_arch *a)
{
    snprintf(buf, size,
             "dncnn depth=%d channels=%d kernel=3 in_channels=%d out_channels=%d bn=%d residual=%d",
             a->depth, a->channels, a->in_channels, out_ch(a), a->batch_norm ? 1 : 0,
             a->residual ? 1 : 0);
}

double mr_nn_flops_per_pixel(const mr_nn_arch *a)
{
    double c = a->channels, ci = a->in_channels, co = out_ch(a);
    return 2.0 * 9.0 * (ci * c + (a->depth - 2) * c * c + c * co);
}

mr_status mr_nn_model_create(mr_nn_model **out, const mr_nn_arch *arch)
{
    mr_nn_model *m;
    size_t np = 0, nb = 0;
    *out = NULL;
    if (arch->depth < 2 || arch->depth > MR_NN_MAX_DEPTH)
        return mr_error_set(MR_ERR_USAGE, "network depth %d outside 2..%d", arch->depth,
                            MR_NN_MAX_DEPTH);
    if (arch->channels < 1 || arch->channels > 4096)
        return mr_error_set(MR_ERR_USAGE, "network channels %d outside 1..4096", arch->channels);
    if (arch->in_channels < 1 || arch->in_channels > 16)
        return mr_error_set(MR_ERR_USAGE, "network input channels %d outside 1..16",
                            arch->in_channels);
    if (arch->out_channels < 0 || arch->out_channels > 16)
        return mr_error_set(MR_ERR_USAGE, "network out_channels %d outside 1..16 (0: same as "
                            "in_channels)", arch->out_channels);
    if (arch->residual && out_ch(arch) != arch->in_channels)
        return mr_error_set(MR_ERR_USAGE, "a residual network (output = input - net(input)) needs "
                            "out_channels = in_channels, found out_channels %d, in_channels %d "
                            "(set residual = 0)", out_ch(arch), arch->in_channels);
    if (arch->batch_norm && !(arch->bn_eps > 0.0f))
        return mr_error_set(MR_ERR_USAGE, "batch-norm epsilon must be positive, found %g",
                            (double)arch->bn_eps);
    m = mr_calloc(1, sizeof *m);
    if (!m) return MR_ERR_NOMEM;
    m->arch = *arch;
    m->arch.batch_norm = arch->batch_norm ? 1 : 0;
    m->arch.residual = arch->residual ? 1 : 0;
    m->arch.out_channels = out_ch(arch);
    snprintf(m->meta.input_type, sizeof m->meta.input_type, "%s",
             arch->in_channels == 2 ? "complex" : "magnitude");
    for (int l = 0; l < arch->depth; l++) {
        mr_nn_layer *L = &m->layers[l];
        const int first = l == 0, last = l == arch->depth - 1;
        L->cin = first ? arch->in_channels : arch->channels;
        L->cout = last ? m->arch.out_channels : arch->channels;
        L->bn = m->arch.batch_norm && !first && !last;
        L->relu = !last;
        L->weight = np;
        np += (size_t)L->cout * L->cin * 9;
        L->bias = L->bn_gamma = L->bn_beta = L->bn_mean = L->bn_var = SIZE_MAX;
        if (!L->bn) {
            L->bias = np;
            np += (size_t)L->cout;
        } else {
            L->bn_gamma = np;
            L->bn_beta = np + (size_t)L->cout;
            np += 2 * (size_t)L->cout;
            L->bn_mean = nb;
            L->bn_var = nb + (size_t)L->cout;
            nb += 2 * (size_t)L->cout;
        }
    }
    m->nparams = np;
    m->nbuffers = nb;
    m->params = mr_malloc_aligned(np * sizeof(float));
    m->buffers = mr_malloc_aligned((nb ? nb : 1) * sizeof(float));
    if (!m->params || !m->buffers) {
        mr_nn_model_destroy(m);
        return MR_ERR_NOMEM;
    }
    memset(m->params, 0, np * sizeof(float));
    memset(m->buffers, 0, (nb ? nb : 1) * sizeof(float));
    for (int l = 0; l < arch->depth; l++) {
        const mr_nn_layer *L = &m->layers[l];
        if (L->bn)
            for (int c = 0; c < L->cout; c++) {
                m->params[L->bn_gamma + c] = 1.0f;
                m->buffers[L->bn_var + c] = 1.0f;
            }
    }
    *out = m;
    return MR_OK;
}

void mr_nn_model_destroy(mr_nn_model *m)
{
    if (!m) return;
    mr_free_aligned(m->params);
    mr_free_aligned(m->buffers);
    free(m);
}

void mr_nn_model_init_he(mr_nn_model *m, uint64_t seed)
{
    mr_rng rng;
    mr_rng_seed(&rng, seed);
    for (int l = 0; l < m->arch.depth; l++) {
        const mr_nn_layer *L = &m->layers[l];
        const size_t nw = (size_t)L->cout * L->cin * 9;
        const double std = sqrt(2.0 / (9.0 * L->cin));
        for (size_t i = 0; i < nw; i++) m->params[L->weight + i] = (float)(std * mr_rng_normal(&rng));
        for (int c = 0; c < L->cout; c++) {
            if (L->bias != SIZE_MAX) m->params[L->bias + c] = 0.0f;
            if (L->bn) {
                m->params[L->bn_gamma + c] = 1.0f;
                m->params[L->bn_beta + c] = 0.0f;
                m->buffers[L->bn_mean + c] = 0.0f;
                m->buffers[L->bn_var + c] = 1.0f;
            }
        }
    }
}
