/*
 * admm.c: the alternating direction method of multipliers (Boyd, Parikh, Chu, Peleato, Eckstein
 * 2011, "Distributed optimization and statistical learning via ADMM", Found. Trends Mach. Learn.
 * 3:1; scaled form, section 3.1.1, over-relaxation 3.4.3, stopping rule 3.3.1, residual balancing
 * 3.4.1) for min_x 1/2 ||A x - y||^2 + g(G x), split as z = G x:
 *   x <- argmin 1/2 ||A x - y||^2 + rho/2 ||G x - z + u||^2   (CG on the normal equations,
 *        warm-started: (A^H A + rho G^H G) x = A^H y + rho G^H (z - u))
 *   h <- alpha G x + (1 - alpha) z
 *   z <- prox_{g/rho}(h + u)
 *   u <- u + h - z
 * This is what BART's pics uses for TV (`-R T`), with rho 0.5, alpha 1.6 and 10 CG steps per
 * x-update. The solver sees only operators, vectors and a prox.
 */
#include "mr_recon.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const mr_linop *A, *G;
    double rho;
    mr_cfloat *tmp; /* n */
} xsys;

/* out = (A^H A + rho G^H G) in */
static mr_status xsys_apply(const xsys *s, mr_cfloat *out, const mr_cfloat *in, size_t n)
{
    mr_status st = mr_linop_normal(s->A, out, in);
    if (st == MR_OK) st = mr_linop_normal(s->G, s->tmp, in);
    if (st != MR_OK) return st;
    mr_vec_axpy(out, (float)s->rho, s->tmp, n);
    return MR_OK;
}

/* Conjugate gradients (Hestenes & Stiefel 1952) for the x-update, warm-started at x. */
static mr_status cg_solve(const xsys *s, mr_cfloat *x, const mr_cfloat *b, long iters, size_t n,
                          mr_cfloat *r, mr_cfloat *p, mr_cfloat *ap)
{
    mr_status st = xsys_apply(s, ap, x, n);
    double rs, bn = mr_vec_norm2(b, n);
    if (st != MR_OK) return st;
#pragma omp parallel for schedule(static)
    for (long i = 0; i < (long)n; i++) r[i] = b[i] - ap[i];
    mr_vec_copy(p, r, n);
    rs = mr_vec_norm2(r, n);
    for (long k = 0; k < iters && rs > 1e-12 * bn; k++) {
        if ((st = xsys_apply(s, ap, p, n)) != MR_OK) return st;
        double pap = creal(mr_vec_dot(p, ap, n));
        if (!(pap > 0)) break;
        float a = (float)(rs / pap);
        mr_vec_axpy(x, a, p, n);
        mr_vec_axpy(r, -a, ap, n);
        double rsn = mr_vec_norm2(r, n);
        mr_vec_xpay(p, (float)(rsn / rs), r, n); /* p = r + beta p */
        rs = rsn;
    }
    return MR_OK;
}

mr_status mr_admm_solve(mr_cfloat *x, mr_recon_stats *stats, const mr_linop *A, const mr_cfloat *y,
                        const mr_linop *G, const mr_prox *prox, const mr_admm_params *p)
{
    size_t n = mr_linop_n_in(A), m = mr_linop_n_out(G);
    mr_cfloat *ehy = NULL, *rhs = NULL, *r = NULL, *pp = NULL, *ap = NULL, *tmp = NULL;
    mr_cfloat *z = NULL, *u = NULL, *zold = NULL, *gx = NULL;
    mr_status st = MR_OK;
    double rho = p->rho, alpha = p->alpha, rel = INFINITY;
    int converged = 0;
    long k = 0;
    xsys sys;
    if (stats) memset(stats, 0, sizeof *stats);
    if (mr_linop_n_in(G) != n)
        return mr_error_set(MR_ERR_INTERNAL, "ADMM: G takes %zu values, A takes %zu",
                            mr_linop_n_in(G), n);
    if (p->iters < 1 || !(rho > 0))
        return mr_error_set(MR_ERR_USAGE, "ADMM: iterations (%ld) must be >= 1 and rho (%g) > 0",
                            p->iters, rho);
    ehy = mr_malloc_aligned(n * sizeof *ehy);
    rhs = mr_malloc_aligned(n * sizeof *rhs);
    r = mr_malloc_aligned(n * sizeof *r);
    pp = mr_malloc_aligned(n * sizeof *pp);
    ap = mr_malloc_aligned(n * sizeof *ap);
    tmp = mr_malloc_aligned(n * sizeof *tmp);
    z = mr_malloc_aligned(m * sizeof *z);
    u = mr_malloc_aligned(m * sizeof *u);
    zold = mr_malloc_aligned(m * sizeof *zold);
    gx = mr_malloc_aligned(m * sizeof *gx);
    if (!ehy || !rhs || !r || !pp || !ap || !tmp || !z || !u || !zold || !gx) {
        st = MR_ERR_NOMEM;
        goto done;
    }
    sys.A = A;
    sys.G = G;
    sys.tmp = tmp;
    if ((st = mr_linop_adjoint(A, ehy, y)) != MR_OK) goto done;
    /* z, u from the start x: z = G x, u = 0 */
    if ((st = mr_linop_forward(G, z, x)) != MR_OK) goto done;
    mr_vec_zero(u, m);
    for (k = 0; k < p->iters; k++) {
        double rn = 0, gn = 0, zn = 0;
        /* x-update */
#pragma omp parallel for schedule(static)
        for (long i = 0; i < (long)m; i++) zold[i] = z[i] - u[i];
        if ((st = mr_linop_adjoint(G, rhs, zold)) != MR_OK) goto done;
        mr_vec_xpay(rhs, (float)rho, ehy, n); /* rhs = A^H y + rho G^H (z - u) */
        sys.rho = rho;
        if ((st = cg_solve(&sys, x, rhs, p->cg_iters, n, r, pp, ap)) != MR_OK) goto done;
        /* z-update with over-relaxation, u-update */
        if ((st = mr_linop_forward(G, gx, x)) != MR_OK) goto done;
        mr_vec_copy(zold, z, m);
        float fa = (float)alpha;
#pragma omp parallel for schedule(static)
        for (long i = 0; i < (long)m; i++) z[i] = fa * gx[i] + (1 - fa) * zold[i] + u[i];
        /* z currently holds h + u; keep h + u in u's place after the prox: u_new = (h + u) - z */
        mr_vec_copy(u, z, m);
        if ((st = prox->apply(prox->data, z, z, (float)(1.0 / rho))) != MR_OK) goto done;
#pragma omp parallel for schedule(static) reduction(+ : rn, gn, zn)
        for (long i = 0; i < (long)m; i++) {
            u[i] -= z[i];
            mr_cfloat d = gx[i] - z[i];
            rn += (double)crealf(d) * crealf(d) + (double)cimagf(d) * cimagf(d);
            gn += (double)crealf(gx[i]) * crealf(gx[i]) + (double)cimagf(gx[i]) * cimagf(gx[i]);
            zn += (double)crealf(z[i]) * crealf(z[i]) + (double)cimagf(z[i]) * cimagf(z[i]);
            zold[i] = z[i] - zold[i];
        }
        if (!isfinite(rn) || !isfinite(zn)) {
            st = mr_error_set(MR_ERR_INPUT, "ADMM: non-finite values at iteration %ld", k + 1);
            k++;
            goto done;
        }
        /* dual residual s = rho ||G^H (z - z_old)||; eps_dual uses ||rho G^H u|| */
        if ((st = mr_linop_adjoint(G, tmp, zold)) != MR_OK) goto done;
        double sn = rho * sqrt(mr_vec_norm2(tmp, n));
        if ((st = mr_linop_adjoint(G, tmp, u)) != MR_OK) goto done;
        double un = rho * sqrt(mr_vec_norm2(tmp, n));
        double rnorm = sqrt(rn), big = fmax(sqrt(gn), sqrt(zn));
        double eps_pri = sqrt((double)m) * p->abstol + p->reltol * big;
        double eps_dual = sqrt((double)n) * p->abstol + p->reltol * un;
        rel = big > 0 ? rnorm / big : rnorm;
        if (rnorm <= eps_pri && sn <= eps_dual) {
            converged = 1;
            k++;
            break;
        }
        if (p->adapt_rho) {
            if (rnorm > 10 * sn) {
                rho *= 2;
                mr_vec_scale(u, 0.5f, m);
            } else if (sn > 10 * rnorm) {
                rho /= 2;
                mr_vec_scale(u, 2.0f, m);
            }
        }
    }
done:
    if (stats) {
        stats->iterations = k;
        stats->residual = rel;
        stats->converged = st == MR_OK && (converged || rel <= p->tol);
        stats->scale = 1;
    }
    mr_free_aligned(ehy);
    mr_free_aligned(rhs);
    mr_free_aligned(r);
    mr_free_aligned(pp);
    mr_free_aligned(ap);
    mr_free_aligned(tmp);
    mr_free_aligned(z);
    mr_free_aligned(u);
    mr_free_aligned(zold);
    mr_free_aligned(gx);
    return st;
}
