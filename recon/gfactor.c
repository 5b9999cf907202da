/*
 * gfactor.c: the analytic SENSE g-factor (Pruessmann KP, Weiger M, Scheidegger MB, Boesiger P.
 * SENSE: sensitivity encoding for fast MRI. Magn Reson Med 42:952-962 (1999), eq. 23):
 *
 *     g_p = sqrt( [(S^H Psi^-1 S)^-1]_pp [S^H Psi^-1 S]_pp ),
 *
 * S (C x m) the coil sensitivities of the m pixels that alias onto each other under R-fold
 * equispaced Cartesian undersampling of the columns (pixel x with x + k W / R, k = 0..R-1; pixels
 * whose maps are all zero are known to be zero and leave the set). Used to cross-check the
 * pseudo-multiple-replica g-factor (replica.c) of `mrpipe recon --method sense`.
 */
#include "mr_recon.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* In-place inverse of an (m, m) complex matrix by Gauss-Jordan with partial pivoting; returns 0
 * when singular. work: m * m values. */
static int invert(double complex *a, double complex *work, size_t m)
{
    double complex *inv = work;
    for (size_t i = 0; i < m * m; i++)
        inv[i] = (i / m == i % m) ? 1.0 : 0.0;
    double scale = 0;
    for (size_t i = 0; i < m; i++)
        scale = fmax(scale, cabs(a[i * m + i]));
    for (size_t c = 0; c < m; c++) {
        size_t piv = c;
        for (size_t r = c + 1; r < m; r++)
            if (cabs(a[r * m + c]) > cabs(a[piv * m + c])) piv = r;
        if (!(cabs(a[piv * m + c]) > 1e-12 * scale)) return 0;
        if (piv != c)
            for (size_t j = 0; j < m; j++) {
                double complex t = a[c * m + j];
                a[c * m + j] = a[piv * m + j];
                a[piv * m + j] = t;
                t = inv[c * m + j];
                inv[c * m + j] = inv[piv * m + j];
                inv[piv * m + j] = t;
            }
        double complex d = a[c * m + c];
        for (size_t j = 0; j < m; j++) {
            a[c * m + j] /= d;
            inv[c * m + j] /= d;
        }
        for (size_t r = 0; r < m; r++) {
            if (r == c) continue;
            double complex f = a[r * m + c];
            if (f == 0) continue;
            for (size_t j = 0; j < m; j++) {
                a[r * m + j] -= f * a[c * m + j];
                inv[r * m + j] -= f * inv[c * m + j];
            }
        }
    }
    memcpy(a, inv, m * m * sizeof *a);
    return 1;
}

mr_status mr_sense_gfactor(float *g, const mr_cfloat *maps, const mr_cfloat *psi, size_t coils,
                           size_t h, size_t w, size_t accel)
{
    const size_t C = coils, hw = h * w, R = accel;
    mr_cfloat *chol = NULL;
    double complex *linv = NULL, *ws = NULL, *a = NULL, *work = NULL;
    size_t *pix = NULL;
    mr_status st = MR_OK;
    if (R < 1 || w % R != 0)
        return mr_error_set(MR_ERR_INPUT,
                            "g-factor: the width %zu is not a multiple of the acceleration %zu", w,
                            R);
    chol = mr_malloc(C * C * sizeof *chol);
    linv = mr_calloc(C * C, sizeof *linv);
    ws = mr_malloc(C * R * sizeof *ws); /* whitened maps L^-1 S of one aliased set (C, m) */
    a = mr_malloc(R * R * sizeof *a);
    work = mr_malloc(R * R * sizeof *work);
    pix = mr_malloc(R * sizeof *pix);
    if (!chol || !linv || !ws || !a || !work || !pix) {
        st = MR_ERR_NOMEM;
        goto done;
    }
    /* Psi^-1 = L^-H L^-1, so S^H Psi^-1 S = (L^-1 S)^H (L^-1 S) */
    if (psi) {
        if ((st = mr_noise_cov_cholesky(chol, psi, C)) != MR_OK) goto done;
        for (size_t j = 0; j < C; j++)
            for (size_t i = j; i < C; i++) {
                double complex acc = i == j ? 1.0 : 0.0;
                for (size_t k = j; k < i; k++)
                    acc -= (double complex)chol[i * C + k] * linv[k * C + j];
                linv[i * C + j] = acc / (double complex)chol[i * C + i];
            }
    } else
        for (size_t i = 0; i < C; i++)
            linv[i * C + i] = 1.0;
    memset(g, 0, hw * sizeof *g);
    const size_t step = w / R;
    for (size_t y = 0; y < h; y++)
        for (size_t x0 = 0; x0 < step; x0++) {
            size_t m = 0;
            for (size_t k = 0; k < R; k++) {
                size_t p = y * w + x0 + k * step;
                double e = 0;
                for (size_t c = 0; c < C; c++) {
                    mr_cfloat s = maps[c * hw + p];
                    e += (double)crealf(s) * crealf(s) + (double)cimagf(s) * cimagf(s);
                }
                if (e > 0) pix[m++] = p;
            }
            if (m == 0) continue;
            for (size_t i = 0; i < C; i++)
                for (size_t j = 0; j < m; j++) {
                    double complex acc = 0;
                    for (size_t k = 0; k <= i; k++)
                        acc += linv[i * C + k] * maps[k * hw + pix[j]];
                    ws[i * m + j] = acc;
                }
            for (size_t i = 0; i < m; i++)
                for (size_t j = 0; j < m; j++) {
                    double complex acc = 0;
                    for (size_t c = 0; c < C; c++)
                        acc += conj(ws[c * m + i]) * ws[c * m + j];
                    a[i * m + j] = acc;
                }
            double diag[64];
            for (size_t i = 0; i < m && i < 64; i++)
                diag[i] = creal(a[i * m + i]);
            if (m > 64 || !invert(a, work, m)) {
                st = mr_error_set(MR_ERR_INPUT,
                                  "g-factor: the aliasing set of pixel (%zu, %zu) is singular "
                                  "(coil maps linearly dependent there)",
                                  y, x0);
                goto done;
            }
            for (size_t i = 0; i < m; i++)
                g[pix[i]] = (float)sqrt(fmax(0.0, creal(a[i * m + i]) * diag[i]));
        }
done:
    free(chol);
    free(linv);
    free(ws);
    free(a);
    free(work);
    free(pix);
    return st;
}
