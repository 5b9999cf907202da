/*
 * tv.c: 2-D finite differences and the prox of isotropic total variation, for TV-regularised
 * compressed sensing (Rudin, Osher, Fatemi 1992; Block, Uecker, Frahm 2007 for MRI; BART's
 * `pics -R T:3:0:L`).
 *
 * grad: (h, w) -> (2, h, w), periodic forward differences
 *   g0[y][x] = u[y+1][x] - u[y][x],  g1[y][x] = u[y][x+1] - u[y][x]  (indices mod h, w);
 * adjoint: (grad^H g)[y][x] = g0[y-1][x] - g0[y][x] + g1[y][x-1] - g1[y][x].
 * Isotropic TV(u) = sum_p sqrt(|g0_p|^2 + |g1_p|^2); its prox on the gradient is the joint
 * (group) soft threshold z_p = max(0, 1 - tau / |g_p|) g_p.
 */
#include "mr_recon.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    size_t h, w;
    mr_cfloat *tmp; /* (h, w): a copy of the input for in-place normal applications */
} grad_data;

static mr_status grad_forward(void *d, mr_cfloat *out, const mr_cfloat *in)
{
    grad_data *g = d;
    size_t h = g->h, w = g->w, hw = h * w;
#pragma omp parallel for schedule(static)
    for (long yl = 0; yl < (long)h; yl++) {
        size_t y = (size_t)yl, yn = y + 1 == h ? 0 : y + 1;
        const mr_cfloat *r = in + y * w, *rn = in + yn * w;
        mr_cfloat *g0 = out + y * w, *g1 = out + hw + y * w;
        for (size_t x = 0; x < w; x++) g0[x] = rn[x] - r[x];
        for (size_t x = 0; x + 1 < w; x++) g1[x] = r[x + 1] - r[x];
        g1[w - 1] = r[0] - r[w - 1];
    }
    return MR_OK;
}

static mr_status grad_adjoint(void *d, mr_cfloat *out, const mr_cfloat *in)
{
    grad_data *g = d;
    size_t h = g->h, w = g->w, hw = h * w;
#pragma omp parallel for schedule(static)
    for (long yl = 0; yl < (long)h; yl++) {
        size_t y = (size_t)yl, yp = y == 0 ? h - 1 : y - 1;
        const mr_cfloat *g0 = in + y * w, *g0p = in + yp * w, *g1 = in + hw + y * w;
        mr_cfloat *o = out + y * w;
        o[0] = g0p[0] - g0[0] + g1[w - 1] - g1[0];
        for (size_t x = 1; x < w; x++) o[x] = g0p[x] - g0[x] + g1[x - 1] - g1[x];
    }
    return MR_OK;
}

/* grad^H grad = the periodic 5-point negative Laplacian, in one pass. */
static mr_status grad_normal(void *d, mr_cfloat *out, const mr_cfloat *in)
{
    grad_data *g = d;
    size_t h = g->h, w = g->w;
    if (out == in) { /* compositions apply normals in place */
        memcpy(g->tmp, in, h * w * sizeof *in);
        in = g->tmp;
    }
#pragma omp parallel for schedule(static)
    for (long yl = 0; yl < (long)h; yl++) {
        size_t y = (size_t)yl, yp = y == 0 ? h - 1 : y - 1, yn = y + 1 == h ? 0 : y + 1;
        const mr_cfloat *r = in + y * w, *rp = in + yp * w, *rn = in + yn * w;
        mr_cfloat *o = out + y * w;
        for (size_t x = 0; x < w; x++) {
            size_t xp = x == 0 ? w - 1 : x - 1, xn = x + 1 == w ? 0 : x + 1;
            o[x] = 4.0f * r[x] - rp[x] - rn[x] - r[xp] - r[xn];
        }
    }
    return MR_OK;
}

static void grad_destroy(void *d)
{
    grad_data *g = d;
    mr_free_aligned(g->tmp);
    free(g);
}

mr_status mr_linop_grad2(mr_linop **out, size_t h, size_t w)
{
    static const mr_linop_ops ops = {grad_forward, grad_adjoint, grad_normal, grad_destroy};
    grad_data *g;
    *out = NULL;
    if (h == 0 || w == 0) return mr_error_set(MR_ERR_INPUT, "grad: empty image (%zu, %zu)", h, w);
    g = mr_calloc(1, sizeof *g);
    if (!g) return MR_ERR_NOMEM;
    g->h = h;
    g->w = w;
    g->tmp = mr_malloc_aligned(h * w * sizeof *g->tmp);
    if (!g->tmp) {
        free(g);
        return MR_ERR_NOMEM;
    }
    return mr_linop_create(out, h * w, 2 * h * w, &ops, g);
}

/* ---------------------------------------------------------------- prox of the l2,1 norm */

typedef struct {
    size_t hw;
    float lambda;
} l21_data;

static mr_status l21_apply(void *d, mr_cfloat *out, const mr_cfloat *in, float t)
{
    l21_data *p = d;
    size_t hw = p->hw;
    float tau = p->lambda * t;
#pragma omp parallel for schedule(static)
    for (long i = 0; i < (long)hw; i++) {
        mr_cfloat a = in[i], b = in[hw + (size_t)i];
        float m2 = crealf(a) * crealf(a) + cimagf(a) * cimagf(a) + crealf(b) * crealf(b) +
                   cimagf(b) * cimagf(b);
        float mag = sqrtf(m2);
        float s = mag > tau ? (mag - tau) / mag : 0.0f;
        out[i] = a * s;
        out[hw + (size_t)i] = b * s;
    }
    return MR_OK;
}

mr_status mr_prox_l21_create(mr_prox *out, size_t hw, float lambda)
{
    l21_data *p = mr_calloc(1, sizeof *p);
    memset(out, 0, sizeof *out);
    if (!p) return MR_ERR_NOMEM;
    p->hw = hw;
    p->lambda = lambda;
    out->apply = l21_apply;
    out->data = p;
    return MR_OK;
}

void mr_prox_l21_destroy(mr_prox *p)
{
    if (!p) return;
    free(p->data);
    p->data = NULL;
}
