/*
 * vec.c: complex vector kernels for solvers and operators (double accumulation for reductions).
 */
#include "mr_recon.h"

#include <string.h>

double complex mr_vec_dot(const mr_cfloat *x, const mr_cfloat *y, size_t n)
{
    double re = 0, im = 0;
#pragma omp parallel for reduction(+ : re, im) schedule(static)
    for (long i = 0; i < (long)n; i++) {
        double xr = crealf(x[i]), xi = cimagf(x[i]), yr = crealf(y[i]), yi = cimagf(y[i]);
        re += xr * yr + xi * yi;
        im += xr * yi - xi * yr;
    }
    return re + I * im;
}

double mr_vec_norm2(const mr_cfloat *x, size_t n)
{
    double acc = 0;
#pragma omp parallel for reduction(+ : acc) schedule(static)
    for (long i = 0; i < (long)n; i++)
        acc += (double)crealf(x[i]) * crealf(x[i]) + (double)cimagf(x[i]) * cimagf(x[i]);
    return acc;
}

void mr_vec_axpy(mr_cfloat *y, mr_cfloat a, const mr_cfloat *x, size_t n)
{
#pragma omp parallel for schedule(static)
    for (long i = 0; i < (long)n; i++) y[i] += a * x[i];
}

void mr_vec_xpay(mr_cfloat *y, mr_cfloat a, const mr_cfloat *x, size_t n)
{
#pragma omp parallel for schedule(static)
    for (long i = 0; i < (long)n; i++) y[i] = x[i] + a * y[i];
}

void mr_vec_scale(mr_cfloat *x, float a, size_t n)
{
#pragma omp parallel for schedule(static)
    for (long i = 0; i < (long)n; i++) x[i] *= a;
}

void mr_vec_copy(mr_cfloat *dst, const mr_cfloat *src, size_t n)
{
    memmove(dst, src, n * sizeof *dst);
}

void mr_vec_zero(mr_cfloat *x, size_t n) { memset(x, 0, n * sizeof *x); }

void mr_vec_randn(mr_cfloat *x, size_t n, uint32_t seed)
{
    mr_mt19937 rng;
    mr_mt_seed(&rng, seed);
    for (size_t i = 0; i < n; i++) {
        float re = (float)mr_mt_randn(&rng);
        float im = (float)mr_mt_randn(&rng);
        x[i] = re + I * im;
    }
}
