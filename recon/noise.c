/*
 * noise.c: coil noise pre-whitening from a noise scan (Pruessmann KP, Weiger M, Scheidegger MB,
 * Boesiger P. SENSE: sensitivity encoding for fast MRI. Magn Reson Med 42:952-962 (1999), eq. 9-10;
 * the ISMRMRD/Gadgetron practice of a noise acquisition before the scan).
 *
 * With X (N, C) the noise samples, Psi[a][b] = sum_n x_na conj(x_nb) / N (C x C, the covariance
 * E[x x^H] of a coil column vector x), Psi = L L^H (Cholesky), every
 * k-space point's coil vector y is replaced by Wt y with Wt = sqrt(sigma2) L^-1: the noise of
 * Wt y has covariance sigma2 I, sigma2 = trace(Psi) / C, so the data keep their units (and
 * BART's data scaling, lambda and the output image stay comparable with and without whitening).
 */
#include "mr_recon.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

mr_status mr_noise_whitener(mr_cfloat *wt, mr_cfloat *psi, double *sigma2, const mr_cfloat *noise,
                            size_t n, size_t coils)
{
    const size_t C = coils;
    double complex *cov = NULL, *l = NULL, *linv = NULL;
    mr_status st = MR_OK;
    double s2 = 0;
    if (n == 0 || C == 0)
        return mr_error_set(MR_ERR_INPUT, "noise pre-whitening: no noise samples (%zu x %zu)", n,
                            C);
    for (size_t i = 0; i < n * C; i++)
        if (!isfinite(crealf(noise[i])) || !isfinite(cimagf(noise[i])))
            return mr_error_set(MR_ERR_INPUT,
                                "noise pre-whitening: noise sample %zu of coil %zu is NaN or Inf",
                                i / C, i % C);
    cov = mr_calloc(C * C, sizeof *cov);
    l = mr_calloc(C * C, sizeof *l);
    linv = mr_calloc(C * C, sizeof *linv);
    if (!cov || !l || !linv) {
        st = MR_ERR_NOMEM;
        goto done;
    }
    /* Psi[a][b] = (1/N) sum_n x_na conj(x_nb): the covariance of the coil vector x_n */
    for (size_t a = 0; a < C; a++)
        for (size_t b = 0; b <= a; b++) {
            double re = 0, im = 0;
            for (size_t s = 0; s < n; s++) {
                mr_cfloat xa = noise[s * C + a], xb = noise[s * C + b];
                re += (double)crealf(xa) * crealf(xb) + (double)cimagf(xa) * cimagf(xb);
                im += (double)cimagf(xa) * crealf(xb) - (double)crealf(xa) * cimagf(xb);
            }
            cov[a * C + b] = (re + I * im) / (double)n;
            cov[b * C + a] = conj(cov[a * C + b]);
        }
    for (size_t a = 0; a < C; a++) s2 += creal(cov[a * C + a]);
    s2 /= (double)C;
    /* Cholesky Psi = L L^H (row-major lower L) */
    for (size_t j = 0; j < C; j++) {
        double d = creal(cov[j * C + j]);
        for (size_t k = 0; k < j; k++) d -= creal(l[j * C + k] * conj(l[j * C + k]));
        if (!(d > 1e-12 * s2)) {
            st = mr_error_set(MR_ERR_INPUT,
                              "noise pre-whitening: the noise covariance is not positive "
                              "definite at coil %zu (variance %.3g left after removing its "
                              "correlation with the previous coils; mean variance %.3g): a dead "
                              "or duplicated channel? Use --no-prewhiten",
                              j, d, s2);
            goto done;
        }
        l[j * C + j] = sqrt(d);
        for (size_t i = j + 1; i < C; i++) {
            double complex acc = cov[i * C + j];
            for (size_t k = 0; k < j; k++) acc -= l[i * C + k] * conj(l[j * C + k]);
            l[i * C + j] = acc / creal(l[j * C + j]);
        }
    }
    /* L^-1 by forward substitution, column by column */
    for (size_t j = 0; j < C; j++)
        for (size_t i = j; i < C; i++) {
            double complex acc = i == j ? 1.0 : 0.0;
            for (size_t k = j; k < i; k++) acc -= l[i * C + k] * linv[k * C + j];
            linv[i * C + j] = acc / l[i * C + i];
        }
    for (size_t i = 0; i < C * C; i++) {
        wt[i] = (mr_cfloat)(sqrt(s2) * linv[i]);
        if (psi) psi[i] = (mr_cfloat)cov[i];
    }
    if (sigma2) *sigma2 = s2;
done:
    free(cov);
    free(l);
    free(linv);
    return st;
}

void mr_noise_whiten(mr_cfloat *data, const mr_cfloat *wt, size_t coils, size_t n)
{
    const size_t C = coils;
#pragma omp parallel
    {
        mr_cfloat v[256];
        mr_cfloat *buf = C <= 256 ? v : malloc(C * sizeof *buf);
#pragma omp for schedule(static)
        for (long p = 0; p < (long)n; p++) {
            if (!buf) continue;
            for (size_t c = 0; c < C; c++) buf[c] = data[c * n + (size_t)p];
            for (size_t i = 0; i < C; i++) { /* wt is lower triangular */
                float re = 0, im = 0;
                for (size_t k = 0; k <= i; k++) {
                    mr_cfloat a = wt[i * C + k], b = buf[k];
                    re += crealf(a) * crealf(b) - cimagf(a) * cimagf(b);
                    im += crealf(a) * cimagf(b) + cimagf(a) * crealf(b);
                }
                data[i * n + (size_t)p] = CMPLXF(re, im);
            }
        }
        if (buf != v) free(buf);
    }
}
