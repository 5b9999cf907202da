/*
 * cs.c: compressed-sensing reconstruction methods of `mrpipe recon` (Lustig, Donoho, Pauly 2007,
 * "Sparse MRI", MRM 58:1182; with coil sensitivities as in BART's `pics`):
 *   cs-l1: min_x 1/2 ||E x - s y||^2 + lambda ||W x||_1   (FISTA, Daubechies-2 wavelets, random
 *          cycle spinning averaged over 4 shifts per prox; the last gradient point is returned,
 *          as bart pics does)
 *   cs-tv: min_x 1/2 ||E x - s y||^2 + lambda TV_iso(x)   (ADMM, CG x-update)
 * with E = M F S (sampling mask, centred orthonormal 2-D FFT per coil, coil maps; S = identity for
 * one coil), s BART's data scaling (so that lambda means `bart pics -r lambda`), and the result
 * divided by s (as `bart pics -S`), i.e. in the input's units. Coil maps: given (--sens) or
 * ESPIRiT. The forward model is one fused operator (maps multiply, FFT, mask and back), so the
 * normal operator costs two batched FFTs and no extra passes.
 */
#include "mr_recon.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define CS_DEFAULT_LAMBDA 0.01
#define CS_DEFAULT_ITERS 30
#define CS_WAVELET_MIN 16 /* BART pics: coarsest scale at least 16 (or the image size) */
#define CS_WAVELET_SHIFTS 4 /* random shifts averaged per prox (BART: 1) */
#define CS_FISTA_TOL 5e-2   /* relative change of the last iteration that counts as converged */
#define CS_ADMM_TOL 1e-2    /* relative primal residual that counts as converged */

/* ---------------------------------------------------------------- the forward model E = M F S */

typedef struct {
    size_t coils, h, w, hw;
    mr_fft_plan *plan;       /* (C, h, w) */
    mr_cfloat *coil;         /* (C, h, w) workspace */
    const mr_cfloat *maps;   /* (C, h, w), set per slice; NULL: identity (one coil) */
    const float *mask;       /* (h, w), set per slice */
} model_data;

/* coil[c] = maps[c] x (coil-major, contiguous; complex products written out in real arithmetic:
 * C's complex multiply checks for NaN/Inf and calls __mulsc3, which dominated the profile). */
static void model_expand(model_data *m, const mr_cfloat *x)
{
    size_t hw = m->hw, C = m->coils;
    const float *xf = (const float *)x;
    if (!m->maps) {
        memcpy(m->coil, x, hw * sizeof *x);
        return;
    }
#pragma omp parallel for schedule(static) collapse(2)
    for (long c = 0; c < (long)C; c++)
        for (long b = 0; b < (long)hw; b += 1024) {
            size_t e = (size_t)b + 1024 < hw ? (size_t)b + 1024 : hw;
            const float *s = (const float *)(m->maps + (size_t)c * hw);
            float *o = (float *)(m->coil + (size_t)c * hw);
            for (size_t p = (size_t)b; p < e; p++) {
                float sr = s[2 * p], si = s[2 * p + 1], xr = xf[2 * p], xi = xf[2 * p + 1];
                o[2 * p] = sr * xr - si * xi;
                o[2 * p + 1] = sr * xi + si * xr;
            }
        }
}

/* out = sum_c conj(maps[c]) coil[c] */
static void model_combine(model_data *m, mr_cfloat *out)
{
    size_t hw = m->hw, C = m->coils;
    float *of = (float *)out;
    if (!m->maps) {
        memcpy(out, m->coil, hw * sizeof *out);
        return;
    }
#pragma omp parallel for schedule(static)
    for (long b = 0; b < (long)hw; b += 1024) {
        size_t e = (size_t)b + 1024 < hw ? (size_t)b + 1024 : hw;
        for (size_t p = (size_t)b; p < e; p++) of[2 * p] = of[2 * p + 1] = 0;
        for (size_t c = 0; c < C; c++) {
            const float *s = (const float *)(m->maps + c * hw), *k = (const float *)(m->coil + c * hw);
            for (size_t p = (size_t)b; p < e; p++) {
                float sr = s[2 * p], si = s[2 * p + 1], kr = k[2 * p], ki = k[2 * p + 1];
                of[2 * p] += sr * kr + si * ki;
                of[2 * p + 1] += sr * ki - si * kr;
            }
        }
    }
}

static void model_mask(model_data *m, mr_cfloat *k)
{
    size_t hw = m->hw;
#pragma omp parallel for schedule(static)
    for (long c = 0; c < (long)m->coils; c++) {
        mr_cfloat *kc = k + (size_t)c * hw;
        for (size_t p = 0; p < hw; p++)
            if (m->mask[p] == 0.0f) kc[p] = 0;
    }
}

static mr_status model_forward(void *d, mr_cfloat *out, const mr_cfloat *in)
{
    model_data *m = d;
    mr_status st;
    model_expand(m, in);
    if ((st = mr_fft_execute(m->plan, MR_FFT_FORWARD, m->coil)) != MR_OK) return st;
    model_mask(m, m->coil);
    memcpy(out, m->coil, m->coils * m->hw * sizeof *out);
    return MR_OK;
}

static mr_status model_adjoint(void *d, mr_cfloat *out, const mr_cfloat *in)
{
    model_data *m = d;
    mr_status st;
    memcpy(m->coil, in, m->coils * m->hw * sizeof *in);
    model_mask(m, m->coil);
    if ((st = mr_fft_execute(m->plan, MR_FFT_INVERSE, m->coil)) != MR_OK) return st;
    model_combine(m, out);
    return MR_OK;
}

static mr_status model_normal(void *d, mr_cfloat *out, const mr_cfloat *in)
{
    model_data *m = d;
    mr_status st;
    model_expand(m, in);
    if ((st = mr_fft_execute(m->plan, MR_FFT_FORWARD, m->coil)) != MR_OK) return st;
    model_mask(m, m->coil);
    if ((st = mr_fft_execute(m->plan, MR_FFT_INVERSE, m->coil)) != MR_OK) return st;
    model_combine(m, out);
    return MR_OK;
}

static void model_destroy(void *d)
{
    model_data *m = d;
    mr_fft_plan_destroy(m->plan);
    mr_free_aligned(m->coil);
    free(m);
}

static mr_status model_create(mr_linop **out, model_data **md, size_t coils, size_t h, size_t w)
{
    static const mr_linop_ops ops = {model_forward, model_adjoint, model_normal, model_destroy};
    model_data *m = mr_calloc(1, sizeof *m);
    mr_status st;
    *out = NULL;
    if (!m) return MR_ERR_NOMEM;
    m->coils = coils;
    m->h = h;
    m->w = w;
    m->hw = h * w;
    m->coil = mr_malloc_aligned(coils * h * w * sizeof *m->coil);
    if (!m->coil) {
        free(m);
        return MR_ERR_NOMEM;
    }
    if ((st = mr_fft_plan_create(&m->plan, coils, h, w)) != MR_OK) {
        mr_free_aligned(m->coil);
        free(m);
        return st;
    }
    *md = m;
    return mr_linop_create(out, h * w, coils * h * w, &ops, m);
}

/* ---------------------------------------------------------------- shared method state */

typedef enum { CS_L1, CS_TV } cs_kind;

typedef struct {
    cs_kind kind;
    size_t coils, h, w, hw;
    double lambda;
    long iters;
    mr_linop *E;
    model_data *model;
    mr_linop *G;             /* cs-tv: gradient */
    mr_prox prox;
    mr_cfloat *y;            /* (C, h, w) scaled k-space */
    mr_cfloat *maps;         /* (C, h, w) estimated maps (when none are given) */
    mr_cfloat *x;            /* (h, w) */
    int warned_centre;
} cs_state;

static void cs_destroy(void *state)
{
    cs_state *s = state;
    if (!s) return;
    mr_linop_destroy(s->E);
    mr_linop_destroy(s->G);
    if (s->kind == CS_L1) mr_prox_wavelet_destroy(&s->prox);
    else mr_prox_l21_destroy(&s->prox);
    mr_free_aligned(s->y);
    mr_free_aligned(s->maps);
    mr_free_aligned(s->x);
    free(s);
}

static mr_status cs_create(void **state, const mr_recon_params *p, size_t coils, size_t h,
                           size_t w, cs_kind kind)
{
    cs_state *s;
    mr_status st;
    *state = NULL;
    if (p->has_lambda && !(p->lambda >= 0))
        return mr_error_set(MR_ERR_USAGE, "--lambda: expected a value >= 0, found %g", p->lambda);
    if (p->iters < 0)
        return mr_error_set(MR_ERR_USAGE, "--iters: expected a value >= 1, found %ld", p->iters);
    s = mr_calloc(1, sizeof *s);
    if (!s) return MR_ERR_NOMEM;
    s->kind = kind;
    s->coils = coils;
    s->h = h;
    s->w = w;
    s->hw = h * w;
    s->lambda = p->has_lambda ? p->lambda : CS_DEFAULT_LAMBDA;
    s->iters = p->iters ? p->iters : CS_DEFAULT_ITERS;
    s->y = mr_malloc_aligned(coils * s->hw * sizeof *s->y);
    s->x = mr_malloc_aligned(s->hw * sizeof *s->x);
    if (coils > 1) s->maps = mr_malloc_aligned(coils * s->hw * sizeof *s->maps);
    if (!s->y || !s->x || (coils > 1 && !s->maps)) {
        st = MR_ERR_NOMEM;
        goto fail;
    }
    if ((st = model_create(&s->E, &s->model, coils, h, w)) != MR_OK) goto fail;
    if (kind == CS_L1)
        st = mr_prox_wavelet_create(&s->prox, h, w, CS_WAVELET_MIN, (float)s->lambda, 1,
                                    CS_WAVELET_SHIFTS, 0, p->seed ? p->seed : 1);
    else {
        st = mr_linop_grad2(&s->G, h, w);
        if (st == MR_OK) st = mr_prox_l21_create(&s->prox, s->hw, (float)s->lambda);
    }
    if (st != MR_OK) goto fail;
    *state = s;
    return MR_OK;
fail:
    cs_destroy(s);
    return st;
}

static mr_status cs_create_l1(void **state, const mr_recon_params *p, size_t coils, size_t h,
                              size_t w)
{
    return cs_create(state, p, coils, h, w, CS_L1);
}

static mr_status cs_create_tv(void **state, const mr_recon_params *p, size_t coils, size_t h,
                              size_t w)
{
    return cs_create(state, p, coils, h, w, CS_TV);
}

static mr_status cs_run(void *state, mr_cfloat *image, mr_recon_stats *stats,
                        const mr_cfloat *kspace, const float *mask, const mr_cfloat *sens)
{
    cs_state *s = state;
    size_t n = s->coils * s->hw, y0, x0, ch, cw;
    double factor, bound = 0;
    mr_status st;
    mr_recon_stats rs;
    memset(&rs, 0, sizeof rs);
    /* calibration region: no fully sampled centre means poor scaling (and no ESPIRiT) */
    mr_calib_region_find(&y0, &x0, &ch, &cw, mask, NULL, s->coils, s->h, s->w, 32, 32, 0);
    if ((ch < 2 || cw < 2) && !s->warned_centre) {
        MR_WARN("the sampling pattern has no fully sampled centre (calibration region %zu x %zu): "
                "data scaling and coil maps will be poor",
                ch, cw);
        s->warned_centre = 1;
    }
    /* coil maps */
    const mr_cfloat *maps = sens;
    if (!maps && s->coils > 1) {
        mr_espirit_params ep;
        mr_espirit_params_default(&ep);
        if ((st = mr_espirit_maps(s->maps, kspace, mask, s->coils, s->h, s->w, &ep)) != MR_OK)
            return mr_error_prefix(st, "%s: ESPIRiT coil maps: ",
                                   s->kind == CS_L1 ? "cs-l1" : "cs-tv");
        maps = s->maps;
    }
    s->model->maps = maps;
    s->model->mask = mask;
    /* step bound: ||E||^2 <= max_p sum_c |s_c(p)|^2 (M and F are contractions) */
    if (maps) {
        for (size_t p = 0; p < s->hw; p++) {
            double a = 0;
            for (size_t c = 0; c < s->coils; c++) {
                mr_cfloat v = maps[c * s->hw + p];
                a += (double)crealf(v) * crealf(v) + (double)cimagf(v) * cimagf(v);
            }
            if (a > bound) bound = a;
        }
    } else bound = 1;
    if (!(bound > 0)) return mr_error_set(MR_ERR_INPUT, "coil maps are zero everywhere");
    /* data scaling, as bart pics (recon/scaling.c) */
    factor = mr_recon_bart_scale(kspace, s->coils, s->h, s->w);
#pragma omp parallel for schedule(static)
    for (long i = 0; i < (long)n; i++) s->y[i] = kspace[i] * (float)factor;
    mr_vec_zero(s->x, s->hw);
    if (s->kind == CS_L1) {
        mr_fista_params fp = {.iters = s->iters, .step = 0.95 / bound, .tol = CS_FISTA_TOL,
                              .output_gradient_point = 1};
        st = mr_fista_solve(s->x, &rs, s->E, s->y, &s->prox, &fp);
    } else {
        mr_admm_params ap = {.iters = s->iters, .cg_iters = 5, .rho = 0.5, .alpha = 1.6,
                             .abstol = 1e-4, .reltol = 1e-3, .tol = CS_ADMM_TOL};
        st = mr_admm_solve(s->x, &rs, s->E, s->y, s->G, &s->prox, &ap);
    }
    if (st != MR_OK) return st;
    float inv = (float)(1.0 / factor);
#pragma omp parallel for schedule(static)
    for (long p = 0; p < (long)s->hw; p++) image[p] = s->x[p] * inv;
    rs.scale = factor;
    if (stats) *stats = rs;
    return MR_OK;
}

const mr_recon_method mr_method_cs_l1 = {
    "cs-l1",
    "L1-wavelet compressed sensing (FISTA, Daubechies-2, random shifts; as bart pics -l1)",
    cs_create_l1, cs_run, cs_destroy,
};

const mr_recon_method mr_method_cs_tv = {
    "cs-tv",
    "isotropic total-variation compressed sensing (ADMM; as bart pics -R T:3:0:L)",
    cs_create_tv, cs_run, cs_destroy,
};
