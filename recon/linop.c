/*
 * linop.c: linear operators with forward, adjoint and normal (A^H A), their composition, the
 * adjoint test, and the basic MRI operators: centred FFT over coils, sampling mask, coil
 * sensitivities. The SENSE/CS forward model is E = M F S: image (H, W) -> k-space (C, H, W).
 */
#include "mr_recon.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct mr_linop {
    size_t n_in, n_out;
    mr_linop_ops ops;
    void *data;
    mr_cfloat *tmp; /* n_out values for the default normal */
};

mr_status mr_linop_create(mr_linop **out, size_t n_in, size_t n_out, const mr_linop_ops *ops,
                          void *data)
{
    mr_linop *A;
    *out = NULL;
    A = mr_calloc(1, sizeof *A);
    if (!A) {
        if (ops->destroy) ops->destroy(data);
        return MR_ERR_NOMEM;
    }
    A->n_in = n_in;
    A->n_out = n_out;
    A->ops = *ops;
    A->data = data;
    if (!ops->normal) {
        A->tmp = mr_malloc_aligned(n_out * sizeof *A->tmp);
        if (!A->tmp) {
            mr_linop_destroy(A);
            return MR_ERR_NOMEM;
        }
    }
    *out = A;
    return MR_OK;
}

size_t mr_linop_n_in(const mr_linop *A) { return A->n_in; }
size_t mr_linop_n_out(const mr_linop *A) { return A->n_out; }

mr_status mr_linop_forward(const mr_linop *A, mr_cfloat *out, const mr_cfloat *in)
{
    return A->ops.forward(A->data, out, in);
}

mr_status mr_linop_adjoint(const mr_linop *A, mr_cfloat *out, const mr_cfloat *in)
{
    return A->ops.adjoint(A->data, out, in);
}

mr_status mr_linop_normal(const mr_linop *A, mr_cfloat *out, const mr_cfloat *in)
{
    mr_status st;
    if (A->ops.normal) return A->ops.normal(A->data, out, in);
    if ((st = A->ops.forward(A->data, A->tmp, in)) != MR_OK) return st;
    return A->ops.adjoint(A->data, out, A->tmp);
}

void mr_linop_destroy(mr_linop *A)
{
    if (!A) return;
    if (A->ops.destroy) A->ops.destroy(A->data);
    mr_free_aligned(A->tmp);
    free(A);
}

/* ---------------------------------------------------------------- composition */

typedef struct {
    mr_linop *a, *b;
    mr_cfloat *mid; /* B's output = A's input */
} compose_data;

static mr_status compose_forward(void *d, mr_cfloat *out, const mr_cfloat *in)
{
    compose_data *c = d;
    mr_status st = mr_linop_forward(c->b, c->mid, in);
    return st != MR_OK ? st : mr_linop_forward(c->a, out, c->mid);
}

static mr_status compose_adjoint(void *d, mr_cfloat *out, const mr_cfloat *in)
{
    compose_data *c = d;
    mr_status st = mr_linop_adjoint(c->a, c->mid, in);
    return st != MR_OK ? st : mr_linop_adjoint(c->b, out, c->mid);
}

/* (AB)^H (AB) = B^H (A^H A) B, so A's own normal (e.g. a diagonal) is used. */
static mr_status compose_normal(void *d, mr_cfloat *out, const mr_cfloat *in)
{
    compose_data *c = d;
    mr_status st = mr_linop_forward(c->b, c->mid, in);
    if (st == MR_OK) st = mr_linop_normal(c->a, c->mid, c->mid);
    return st != MR_OK ? st : mr_linop_adjoint(c->b, out, c->mid);
}

static void compose_destroy(void *d)
{
    compose_data *c = d;
    mr_linop_destroy(c->a);
    mr_linop_destroy(c->b);
    mr_free_aligned(c->mid);
    free(c);
}

mr_status mr_linop_compose(mr_linop **out, mr_linop *A, mr_linop *B)
{
    static const mr_linop_ops ops = {compose_forward, compose_adjoint, compose_normal,
                                     compose_destroy};
    compose_data *c;
    *out = NULL;
    if (A->n_in != B->n_out) {
        size_t ai = A->n_in, bo = B->n_out;
        mr_linop_destroy(A);
        mr_linop_destroy(B);
        return mr_error_set(MR_ERR_INTERNAL, "composing operators of mismatched sizes (%zu vs %zu)",
                            ai, bo);
    }
    c = mr_calloc(1, sizeof *c);
    if (c) c->mid = mr_malloc_aligned(A->n_in * sizeof *c->mid);
    if (!c || !c->mid) {
        free(c);
        mr_linop_destroy(A);
        mr_linop_destroy(B);
        return MR_ERR_NOMEM;
    }
    c->a = A;
    c->b = B;
    return mr_linop_create(out, B->n_in, A->n_out, &ops, c);
}

double mr_linop_adjoint_error(const mr_linop *A, uint32_t seed)
{
    mr_cfloat *x = mr_malloc_aligned(A->n_in * sizeof *x);
    mr_cfloat *y = mr_malloc_aligned(A->n_out * sizeof *y);
    mr_cfloat *ax = mr_malloc_aligned(A->n_out * sizeof *ax);
    mr_cfloat *ahy = mr_malloc_aligned(A->n_in * sizeof *ahy);
    double err = -1;
    if (x && y && ax && ahy) {
        mr_vec_randn(x, A->n_in, seed);
        mr_vec_randn(y, A->n_out, seed + 1);
        if (mr_linop_forward(A, ax, x) == MR_OK && mr_linop_adjoint(A, ahy, y) == MR_OK) {
            double complex a = mr_vec_dot(ax, y, A->n_out), b = mr_vec_dot(x, ahy, A->n_in);
            err = cabs(a - b) / sqrt(mr_vec_norm2(ax, A->n_out) * mr_vec_norm2(y, A->n_out));
        }
    }
    mr_free_aligned(x);
    mr_free_aligned(y);
    mr_free_aligned(ax);
    mr_free_aligned(ahy);
    return err;
}

/* ---------------------------------------------------------------- FFT over coils */

typedef struct {
    mr_fft_plan *plan;
    size_t n;
} fft_data;

static mr_status fft_forward(void *d, mr_cfloat *out, const mr_cfloat *in)
{
    fft_data *f = d;
    if (out != in) memcpy(out, in, f->n * sizeof *out);
    return mr_fft_execute(f->plan, MR_FFT_FORWARD, out);
}

static mr_status fft_adjoint(void *d, mr_cfloat *out, const mr_cfloat *in)
{
    fft_data *f = d;
    if (out != in) memcpy(out, in, f->n * sizeof *out);
    return mr_fft_execute(f->plan, MR_FFT_INVERSE, out);
}

static mr_status fft_normal(void *d, mr_cfloat *out, const mr_cfloat *in)
{
    fft_data *f = d; /* unitary */
    if (out != in) memcpy(out, in, f->n * sizeof *out);
    return MR_OK;
}

static void fft_destroy(void *d)
{
    fft_data *f = d;
    mr_fft_plan_destroy(f->plan);
    free(f);
}

mr_status mr_linop_fft2c(mr_linop **out, size_t coils, size_t h, size_t w)
{
    static const mr_linop_ops ops = {fft_forward, fft_adjoint, fft_normal, fft_destroy};
    fft_data *f = mr_calloc(1, sizeof *f);
    mr_status st;
    *out = NULL;
    if (!f) return MR_ERR_NOMEM;
    f->n = coils * h * w;
    if ((st = mr_fft_plan_create(&f->plan, coils, h, w)) != MR_OK) {
        free(f);
        return st;
    }
    return mr_linop_create(out, f->n, f->n, &ops, f);
}

/* ---------------------------------------------------------------- sampling mask */

typedef struct {
    float *mask; /* (H, W) */
    size_t coils, hw;
} mask_data;

static mr_status mask_apply(void *d, mr_cfloat *out, const mr_cfloat *in)
{
    mask_data *m = d;
    long n = (long)(m->coils * m->hw);
#pragma omp parallel for schedule(static)
    for (long i = 0; i < n; i++) out[i] = m->mask[(size_t)i % m->hw] != 0.0f ? in[i] : 0.0f;
    return MR_OK;
}

static void mask_destroy(void *d)
{
    mask_data *m = d;
    free(m->mask);
    free(m);
}

mr_status mr_linop_mask(mr_linop **out, const float *mask, size_t coils, size_t h, size_t w)
{
    static const mr_linop_ops ops = {mask_apply, mask_apply, mask_apply, mask_destroy};
    mask_data *m = mr_calloc(1, sizeof *m);
    *out = NULL;
    if (!m) return MR_ERR_NOMEM;
    m->coils = coils;
    m->hw = h * w;
    m->mask = mr_malloc(m->hw * sizeof *m->mask);
    if (!m->mask) {
        free(m);
        return MR_ERR_NOMEM;
    }
    memcpy(m->mask, mask, m->hw * sizeof *m->mask);
    return mr_linop_create(out, coils * m->hw, coils * m->hw, &ops, m);
}

/* ---------------------------------------------------------------- coil sensitivities */

typedef struct {
    mr_cfloat *maps; /* (C, H, W) */
    float *norm2;    /* (H, W): sum_c |s_c|^2 */
    size_t coils, hw;
} sens_data;

static mr_status sens_forward(void *d, mr_cfloat *out, const mr_cfloat *in)
{
    sens_data *s = d;
#pragma omp parallel for schedule(static)
    for (long p = 0; p < (long)s->hw; p++)
        for (size_t c = 0; c < s->coils; c++)
            out[c * s->hw + (size_t)p] = s->maps[c * s->hw + (size_t)p] * in[p];
    return MR_OK;
}

static mr_status sens_adjoint(void *d, mr_cfloat *out, const mr_cfloat *in)
{
    sens_data *s = d;
#pragma omp parallel for schedule(static)
    for (long p = 0; p < (long)s->hw; p++) {
        mr_cfloat acc = 0;
        for (size_t c = 0; c < s->coils; c++)
            acc += conjf(s->maps[c * s->hw + (size_t)p]) * in[c * s->hw + (size_t)p];
        out[p] = acc;
    }
    return MR_OK;
}

static mr_status sens_normal(void *d, mr_cfloat *out, const mr_cfloat *in)
{
    sens_data *s = d;
#pragma omp parallel for schedule(static)
    for (long p = 0; p < (long)s->hw; p++) out[p] = s->norm2[p] * in[p];
    return MR_OK;
}

static void sens_destroy(void *d)
{
    sens_data *s = d;
    mr_free_aligned(s->maps);
    free(s->norm2);
    free(s);
}

mr_status mr_linop_sens(mr_linop **out, const mr_cfloat *maps, size_t coils, size_t h, size_t w)
{
    static const mr_linop_ops ops = {sens_forward, sens_adjoint, sens_normal, sens_destroy};
    sens_data *s = mr_calloc(1, sizeof *s);
    *out = NULL;
    if (!s) return MR_ERR_NOMEM;
    s->coils = coils;
    s->hw = h * w;
    s->maps = mr_malloc_aligned(coils * s->hw * sizeof *s->maps);
    s->norm2 = mr_malloc(s->hw * sizeof *s->norm2);
    if (!s->maps || !s->norm2) {
        sens_destroy(s);
        return MR_ERR_NOMEM;
    }
    memcpy(s->maps, maps, coils * s->hw * sizeof *maps);
    for (size_t p = 0; p < s->hw; p++) {
        double acc = 0;
        for (size_t c = 0; c < coils; c++)
            acc += crealf(maps[c * s->hw + p] * conjf(maps[c * s->hw + p]));
        s->norm2[p] = (float)acc;
    }
    return mr_linop_create(out, s->hw, coils * s->hw, &ops, s);
}
