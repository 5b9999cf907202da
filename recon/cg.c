/*
 * cg.c: conjugate gradients on the regularised normal equations (A^H A + lambda I) x = b
 * (Hestenes & Stiefel 1952; Shewchuk, "An introduction to the conjugate gradient method without
 * the agonizing pain", 1994, B2), as BART's conjgrad with its l2lambda. The solver sees only the
 * operator (through mr_linop_normal) and vectors; its three work vectors are made once.
 */
#include "mr_recon.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct mr_cg {
    size_t n;
    mr_cfloat *r, *p, *q; /* residual, search direction, (A^H A + lambda I) p */
};

mr_status mr_cg_create(mr_cg **out, size_t n)
{
    mr_cg *cg = mr_calloc(1, sizeof *cg);
    *out = NULL;
    if (!cg) return MR_ERR_NOMEM;
    cg->n = n;
    cg->r = mr_malloc_aligned(n * sizeof *cg->r);
    cg->p = mr_malloc_aligned(n * sizeof *cg->p);
    cg->q = mr_malloc_aligned(n * sizeof *cg->q);
    if (!cg->r || !cg->p || !cg->q) {
        mr_cg_destroy(cg);
        return MR_ERR_NOMEM;
    }
    *out = cg;
    return MR_OK;
}

void mr_cg_destroy(mr_cg *cg)
{
    if (!cg) return;
    mr_free_aligned(cg->r);
    mr_free_aligned(cg->p);
    mr_free_aligned(cg->q);
    free(cg);
}

/* q = (A^H A + lambda I) p; returns Re <p, q> (fused: one pass, one parallel region) */
static mr_status apply(double *pq, const mr_linop *A, double lambda, mr_cfloat *q,
                       const mr_cfloat *p, size_t n)
{
    mr_status st = mr_linop_normal(A, q, p);
    double acc = 0;
    const float lam = (float)lambda;
    if (st != MR_OK) return st;
#pragma omp parallel for reduction(+ : acc) schedule(static)
    for (long i = 0; i < (long)n; i++) {
        q[i] += lam * p[i];
        acc += (double)crealf(p[i]) * crealf(q[i]) + (double)cimagf(p[i]) * cimagf(q[i]);
    }
    *pq = acc;
    return MR_OK;
}

/* x += alpha p; r -= alpha q; returns ||r||^2 */
static double update(mr_cfloat *x, mr_cfloat *r, const mr_cfloat *p, const mr_cfloat *q,
                     float alpha, size_t n)
{
    double acc = 0;
#pragma omp parallel for reduction(+ : acc) schedule(static)
    for (long i = 0; i < (long)n; i++) {
        x[i] += alpha * p[i];
        r[i] -= alpha * q[i];
        acc += (double)crealf(r[i]) * crealf(r[i]) + (double)cimagf(r[i]) * cimagf(r[i]);
    }
    return acc;
}

mr_status mr_cg_solve(mr_cg *cg, mr_cfloat *x, mr_recon_stats *stats, const mr_linop *A,
                      double lambda, const mr_cfloat *b, long max_iters, double tol,
                      double conv_tol)
{
    const size_t n = cg->n;
    mr_status st;
    double bnorm2, rr, rr_stop, pq;
    long it = 0;
    int broke = 0;
    if (mr_linop_n_in(A) != n)
        return mr_error_set(MR_ERR_INTERNAL, "CG workspace of %zu values for an operator on %zu", n,
                            mr_linop_n_in(A));
    bnorm2 = mr_vec_norm2(b, n);
    /* r = b - (A^H A + lambda I) x; p = r */
    if ((st = apply(&pq, A, lambda, cg->q, x, n)) != MR_OK) return st;
    for (size_t i = 0; i < n; i++) cg->r[i] = b[i] - cg->q[i];
    mr_vec_copy(cg->p, cg->r, n);
    rr = mr_vec_norm2(cg->r, n);
    rr_stop = tol * tol * bnorm2;
    while (it < max_iters && rr > rr_stop) {
        if ((st = apply(&pq, A, lambda, cg->q, cg->p, n)) != MR_OK) return st;
        if (!(pq > 0) || !isfinite(pq)) { /* breakdown: singular system or NaN */
            broke = 1;
            break;
        }
        const double rr_new = update(x, cg->r, cg->p, cg->q, (float)(rr / pq), n);
        it++;
        if (!isfinite(rr_new)) {
            broke = 1;
            rr = rr_new;
            break;
        }
        mr_vec_xpay(cg->p, (mr_cfloat)(rr_new / rr), cg->r, n); /* p = r + beta p */
        rr = rr_new;
    }
    if (stats) {
        stats->iterations = it;
        stats->residual = bnorm2 > 0 ? sqrt(rr / bnorm2) : sqrt(rr);
        stats->converged = !broke && isfinite(stats->residual) && stats->residual <= conv_tol;
    }
    return MR_OK;
}
