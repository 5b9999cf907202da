/*
 * fista.c: FISTA, the fast iterative shrinkage-thresholding algorithm (Beck & Teboulle 2009,
 * "A fast iterative shrinkage-thresholding algorithm for linear inverse problems", SIAM J. Imaging
 * Sci. 2:183, algorithm 2 with constant step), for min_x 1/2 ||A x - y||^2 + g(x):
 *   x_k     = prox_{s g}(z_k - s A^H (A z_k - y))
 *   t_{k+1} = (1 + sqrt(1 + 4 t_k^2)) / 2
 *   z_{k+1} = x_k + (t_k - 1) / t_{k+1} (x_k - x_{k-1}),
 * with step s <= 1 / ||A^H A||; and the power iteration that estimates ||A^H A||.
 * The solver sees only the operator (its normal A^H A) and the prox.
 */
#include "mr_recon.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

mr_status mr_linop_normal_norm(double *out, const mr_linop *A, long iters, uint32_t seed)
{
    size_t n = mr_linop_n_in(A);
    mr_cfloat *u = mr_malloc_aligned(n * sizeof *u), *v = mr_malloc_aligned(n * sizeof *v);
    mr_status st = MR_OK;
    double s = 0;
    *out = 0;
    if (!u || !v) {
        st = MR_ERR_NOMEM;
        goto done;
    }
    mr_vec_randn(u, n, seed);
    s = sqrt(mr_vec_norm2(u, n));
    mr_vec_scale(u, (float)(1.0 / s), n);
    for (long i = 0; i < iters; i++) {
        if ((st = mr_linop_normal(A, v, u)) != MR_OK) goto done;
        s = sqrt(mr_vec_norm2(v, n)); /* ||A^H A u|| with ||u|| = 1 */
        if (!(s > 0) || !isfinite(s)) break;
        mr_vec_scale(v, (float)(1.0 / s), n);
        mr_cfloat *t = u;
        u = v;
        v = t;
    }
    *out = isfinite(s) ? s : 0;
done:
    mr_free_aligned(u);
    mr_free_aligned(v);
    return st;
}

mr_status mr_fista_solve(mr_cfloat *x, mr_recon_stats *stats, const mr_linop *A, const mr_cfloat *y,
                         const mr_prox *prox, const mr_fista_params *p)
{
    size_t n = mr_linop_n_in(A);
    mr_cfloat *ehy = mr_malloc_aligned(n * sizeof *ehy), *z = mr_malloc_aligned(n * sizeof *z);
    mr_cfloat *g = mr_malloc_aligned(n * sizeof *g), *xn = mr_malloc_aligned(n * sizeof *xn);
    mr_cfloat *xk = x, *xbuf = xn; /* xk and xn swap roles; xbuf is ours to free */
    mr_status st = MR_OK;
    double step = p->step, t = 1, change = INFINITY;
    long k = 0;
    if (stats) memset(stats, 0, sizeof *stats);
    if (!ehy || !z || !g || !xn) {
        st = MR_ERR_NOMEM;
        goto done;
    }
    if (p->iters < 1) {
        st = mr_error_set(MR_ERR_USAGE, "FISTA: iterations must be >= 1, found %ld", p->iters);
        goto done;
    }
    if (!(step > 0)) {
        double L;
        if ((st = mr_linop_normal_norm(&L, A, 20, 12345)) != MR_OK) goto done;
        if (!(L > 0)) {
            st = mr_error_set(MR_ERR_INPUT, "FISTA: the operator is zero (no data to fit)");
            goto done;
        }
        step = 0.95 / L;
    }
    if ((st = mr_linop_adjoint(A, ehy, y)) != MR_OK) goto done;
    mr_vec_copy(z, xk, n);
    for (k = 0; k < p->iters; k++) {
        double dn = 0, xnn = 0;
        float fs = (float)step;
        if ((st = mr_linop_normal(A, g, z)) != MR_OK) goto done;
#pragma omp parallel for schedule(static)
        for (long i = 0; i < (long)n; i++) g[i] = z[i] - fs * (g[i] - ehy[i]);
        if ((st = prox->apply(prox->data, xn, g, fs)) != MR_OK) goto done;
        double tn = (1 + sqrt(1 + 4 * t * t)) / 2;
        float beta = (float)((t - 1) / tn);
        t = tn;
#pragma omp parallel for schedule(static) reduction(+ : dn, xnn)
        for (long i = 0; i < (long)n; i++) {
            mr_cfloat d = xn[i] - xk[i];
            dn += (double)crealf(d) * crealf(d) + (double)cimagf(d) * cimagf(d);
            xnn += (double)crealf(xn[i]) * crealf(xn[i]) + (double)cimagf(xn[i]) * cimagf(xn[i]);
            z[i] = xn[i] + beta * d;
        }
        mr_cfloat *tmp = xk;
        xk = xn;
        xn = tmp;
        change = xnn > 0 ? sqrt(dn / xnn) : (dn > 0 ? INFINITY : 0);
        if (!isfinite(dn) || !isfinite(xnn)) {
            st = mr_error_set(MR_ERR_INPUT,
                              "FISTA: non-finite values at iteration %ld (step %.3g too large, or "
                              "non-finite input)",
                              k + 1, step);
            k++;
            goto done;
        }
        if (p->early_stop && change <= p->tol) {
            k++;
            break;
        }
    }
done:
    /* BART's pics ends on the gradient (data-consistency) step: g holds the last z - s grad */
    if (st == MR_OK && k > 0 && p->output_gradient_point) xk = g;
    if (xk != x) mr_vec_copy(x, xk, n);
    if (stats) {
        stats->iterations = k;
        stats->residual = change;
        stats->converged = st == MR_OK && change <= p->tol;
        stats->scale = 1;
    }
    mr_free_aligned(ehy);
    mr_free_aligned(z);
    mr_free_aligned(g);
    mr_free_aligned(xbuf);
    return st;
}
