/*
 * espirit.c: ESPIRiT coil sensitivities, one set of maps as `bart ecalib -m1`.
 *
 * Uecker M, Lai P, Murphy MJ, Virtue P, Elad M, Pauly JM, Vasanawala SS, Lustig M. ESPIRiT - an
 * eigenvalue approach to autocalibrating parallel MRI: where SENSE meets GRAPPA. Magn Reson Med
 * 71:990-1001 (2014).
 *
 *  1. Calibration region: the largest fully sampled block around the k-space centre, grown one row
 *     or column at a time in turn (as BART's calib_geom) up to cal_size, then moved along the
 *     readout to the position of maximum energy among fully sampled positions.
 *  2. Calibration matrix A (section "Calibration matrix"): one row per k x k patch inside the
 *     region, columns (coil, ky, kx). The Gram matrix A^H A (cherk) and its eigen-decomposition
 *     (cheevd, single precision as BART) give the right singular vectors V and sigma_i^2.
 *     Vectors with sigma_i / sigma_1 > sqrt(threshold) span the signal subspace V_par (BART's
 *     rule).
 *  3. The k-space operator W = (1/k^2) sum_q R_q^H V_par V_par^H R_q (eq. 12) is a multi-coil
 *     convolution with the (2k-1)^2 kernel g_cc'[e] = (1/k^2) sum_u P[(c,u),(c',u+e)],
 *     P = conj(V_par V_par^H) (patches are rows of A, so as column vectors they lie in
 *     span(conj V_par)). In the image domain it is one C x C matrix per pixel (eq. 13),
 *         G(r) = sum_e g[e] exp(-2 pi i e.(r - N/2) / N)
 *     (centred transforms), a trigonometric polynomial of degree k-1 evaluated exactly and
 *     separably (all columns for each kernel row, then row by row): no zero-padded FFTs and no
 *     interpolation error.
 *  4. Per pixel, the eigenvector of G(r) with the largest eigenvalue is the map (eq. 14): power
 *     iteration warm-started from the neighbouring pixel (maps are smooth and the eigenvalue gap
 *     inside the object is large, so a few iterations suffice). Maps are zeroed where that
 *     eigenvalue <= crop (BART's hard crop), and pixels where ||G(r)||_F <= crop (an upper bound
 *     on the largest eigenvalue) are zeroed without iterating: most of the background.
 *  5. Phase: each pixel's map is rotated so that its projection on the first principal component
 *     of the calibration data (coil covariance) is real and positive, as BART's default rotation;
 *     this makes the maps' phase smooth and independent of any single coil.
 */
#include "mr_recon.h"

#include <complex.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* LAPACK/BLAS (Fortran symbols in OpenBLAS; the trailing size_t are the hidden string lengths).
 * Single precision, as BART: the kept singular values are >= sqrt(threshold) = 3 % of the largest,
 * far above float rounding of the Gram matrix. */
extern void cherk_(const char *uplo, const char *trans, const int *n, const int *k,
                   const float *alpha, const mr_cfloat *a, const int *lda, const float *beta,
                   mr_cfloat *c, const int *ldc, size_t uplo_len, size_t trans_len);
extern void cheevd_(const char *jobz, const char *uplo, const int *n, mr_cfloat *a, const int *lda,
                    float *w, mr_cfloat *work, const int *lwork, float *rwork, const int *lrwork,
                    int *iwork, const int *liwork, int *info, size_t jobz_len, size_t uplo_len);

/* Below this fraction of non-zero map pixels the maps are reported as failed (see the check at
 * the end of mr_espirit_maps; measured: 0 % with 7 centre lines and kernel 6 on 181 columns). */
#define MR_ESPIRIT_MIN_SUPPORT 0.05
#define MR_ESPIRIT_MAX_COILS 256
#define POWER_MAX_ITERS 50
#define POWER_TOL2 1e-10 /* ||v_new - v||^2: stop when the eigenvector moved by < 1e-5 */

void mr_espirit_params_default(mr_espirit_params *p)
{
    p->kernel = 6;
    p->cal_size = 0;
    p->threshold = 0.001;
    p->crop = 0.8;
}

/* ---------------------------------------------------------------- calibration region */

static int block_sampled(const float *mask, size_t w, size_t y0, size_t x0, size_t bh, size_t bw)
{
    for (size_t y = y0; y < y0 + bh; y++)
        for (size_t x = x0; x < x0 + bw; x++)
            if (mask[y * w + x] == 0.0f) return 0;
    return 1;
}

void mr_calib_region_find(size_t *y0, size_t *x0, size_t *ch, size_t *cw, const float *mask,
                          const mr_cfloat *kspace, size_t coils, size_t h, size_t w, size_t max_h,
                          size_t max_w, int sampled_only)
{
    /* BART first cuts a centred window of at most max_w phase-encode columns (offset rounded
     * down) and grows the block centred in that window; for odd sizes this can differ by one
     * column from centring in the whole axis, so the same arithmetic is kept here */
    const size_t wx = w < max_w ? w : max_w, offx = (w - wx) / 2;
    size_t n[2] = {h, wx}, cap[2] = {max_h, max_w}, sz[2] = {1, 1};
    int stop[2] = {0, 0};
    *ch = *cw = 0;
    *y0 = h / 2;
    *x0 = w / 2;
    if (h == 0 || w == 0 || !block_sampled(mask, w, (h - 1) / 2, offx + (wx - 1) / 2, 1, 1)) return;
    /* grow each axis by one in turn while the centred block stays fully sampled */
    while (!(stop[0] && stop[1])) {
        for (int i = 0; i < 2; i++) {
            if (sz[i] >= n[i] || sz[i] >= cap[i]) stop[i] = 1;
            if (stop[i]) continue;
            sz[i]++;
            if (!block_sampled(mask, w, (h - sz[0]) / 2, offx + (wx - sz[1]) / 2, sz[0], sz[1])) {
                sz[i]--;
                stop[i] = 1;
            }
        }
    }
    *ch = sz[0];
    *cw = sz[1];
    *x0 = offx + (wx - sz[1]) / 2;
    *y0 = (h - sz[0]) / 2;
    /* along the readout (rows), the position of maximum energy, as BART; BART searches every
     * position (sampled_only = 0, for its data scaling), ESPIRiT here only fully sampled ones so
     * that no unacquired zero enters the calibration matrix */
    if (kspace) {
        double best = -1;
        size_t best_y = *y0;
        for (size_t y = 0; y + sz[0] <= h; y++) {
            double e = 0;
            if (sampled_only && !block_sampled(mask, w, y, *x0, sz[0], sz[1])) continue;
            for (size_t c = 0; c < coils; c++)
                for (size_t yy = y; yy < y + sz[0]; yy++) {
                    const mr_cfloat *row = kspace + (c * h + yy) * w + *x0;
                    for (size_t x = 0; x < sz[1]; x++)
                        e += (double)crealf(row[x]) * crealf(row[x]) +
                             (double)cimagf(row[x]) * cimagf(row[x]);
                }
            if (e > best) {
                best = e;
                best_y = y;
            }
        }
        *y0 = best_y;
    }
}

/* ---------------------------------------------------------------- LAPACK helper */

/* Eigen-decomposition of the Hermitian n x n column-major matrix a (upper triangle read):
 * eigenvalues ascending into w, orthonormal eigenvectors into the columns of a. a must have 256
 * elements of slack after its n x n: OpenBLAS's AVX-512 cgemv kernel (in cheevd's
 * tridiagonalisation) reads past the end of the matrix, and faulted when the matrix ended at a
 * page boundary (ASan build, 288 x 288 from a 24 x 6 calibration region: 5 runs in 12; none in 16
 * with the slack). */
static mr_status herm_eig(mr_cfloat *a, float *w, int n)
{
    int lwork = -1, lrwork = -1, liwork = -1, info = 0, iw;
    mr_cfloat wq;
    float rw;
    mr_cfloat *work = NULL;
    float *rwork = NULL;
    int *iwork = NULL;
    mr_status st = MR_OK;
    cheevd_("V", "U", &n, a, &n, w, &wq, &lwork, &rw, &lrwork, &iw, &liwork, &info, 1, 1);
    if (info != 0)
        return mr_error_set(MR_ERR_INTERNAL, "LAPACK cheevd workspace query failed (info %d)",
                            info);
    lwork = (int)crealf(wq) + 1;
    lrwork = (int)rw + 1;
    liwork = iw + 1;
    /* slack after the work arrays too (see the comment on herm_eig) */
    work = mr_malloc(((size_t)lwork + 256) * sizeof *work);
    rwork = mr_malloc(((size_t)lrwork + 256) * sizeof *rwork);
    iwork = mr_malloc(((size_t)liwork + 256) * sizeof *iwork);
    if (!work || !rwork || !iwork) st = MR_ERR_NOMEM;
    else {
        cheevd_("V", "U", &n, a, &n, w, work, &lwork, rwork, &lrwork, iwork, &liwork, &info, 1, 1);
        if (info != 0)
            st = mr_error_set(MR_ERR_INTERNAL,
                              "LAPACK cheevd failed on a %d x %d Hermitian matrix (info %d)", n, n,
                              info);
    }
    free(work);
    free(rwork);
    free(iwork);
    return st;
}

/* ---------------------------------------------------------------- per-pixel eigenvectors */

/* One thread's pass over image rows [y_begin, y_end): assemble G(r) from the column transforms T,
 * power-iterate, crop, rotate the phase, store the maps. Complex values are kept as separate real
 * and imaginary arrays so that the inner loops vectorise. */
typedef struct {
    size_t coils, h, w, npairs, klen; /* klen = 2k - 1 */
    const int *pair_a, *pair_b;       /* pair p = (a, b), a <= b */
    const float *t_re, *t_im;         /* (npairs, klen, W): sum over ex of g e^{-i..ex..} */
    const float *phy_re, *phy_im;     /* (klen, H) */
    const float *rot_re, *rot_im;     /* (C) principal component, unit norm */
    float crop;
    mr_cfloat *maps;                  /* (C, H, W) output */
} eig_job;

typedef struct {
    float *g_re, *g_im;                         /* (npairs, W): one image row of G entries */
    float *m_re, *m_im;                         /* (C, C) */
    float *v_re, *v_im, *w_re, *w_im;           /* (C) */
    float *prev_re, *prev_im, *cur_re, *cur_im; /* (W, C): previous / current row's eigenvectors */
    unsigned char *prev_ok, *cur_ok;            /* (W) */
} eig_work;

/* g += t * c over n values (complex, split) */
static void row_accumulate(float *restrict gr, float *restrict gi, const float *restrict tr,
                           const float *restrict ti, float cr, float ci, size_t n)
{
#pragma omp simd
    for (size_t x = 0; x < n; x++) {
        gr[x] += tr[x] * cr - ti[x] * ci;
        gi[x] += tr[x] * ci + ti[x] * cr;
    }
}

/* w = M v for an n x n complex matrix (split, row-major) */
static void matvec(float *restrict wr, float *restrict wi, const float *restrict mr,
                   const float *restrict mi, const float *restrict vr, const float *restrict vi,
                   size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const float *ar = mr + i * n, *ai = mi + i * n;
        float re = 0, im = 0;
#pragma omp simd reduction(+ : re, im)
        for (size_t j = 0; j < n; j++) {
            re += ar[j] * vr[j] - ai[j] * vi[j];
            im += ar[j] * vi[j] + ai[j] * vr[j];
        }
        wr[i] = re;
        wi[i] = im;
    }
}

static void eig_rows(const eig_job *jb, eig_work *wk, size_t y_begin, size_t y_end)
{
    const size_t C = jb->coils, W = jb->w, H = jb->h, np = jb->npairs, L = jb->klen;
    const float crop2 = jb->crop * jb->crop;
    float *mr = wk->m_re, *mi = wk->m_im, *vr = wk->v_re, *vi = wk->v_im;
    float *wr = wk->w_re, *wi = wk->w_im;
    memset(wk->prev_ok, 0, W);
    for (size_t y = y_begin; y < y_end; y++) {
        /* G entries for this row: g_p(y, x) = sum_ly T_p[ly][x] phy[ly][y] */
        for (size_t p = 0; p < np; p++) {
            float *gr = wk->g_re + p * W, *gi = wk->g_im + p * W;
            memset(gr, 0, W * sizeof *gr);
            memset(gi, 0, W * sizeof *gi);
            for (size_t ly = 0; ly < L; ly++)
                row_accumulate(gr, gi, jb->t_re + (p * L + ly) * W, jb->t_im + (p * L + ly) * W,
                               jb->phy_re[ly * H + y], jb->phy_im[ly * H + y], W);
        }
        int have_left = 0;
        for (size_t x = 0; x < W; x++) {
            float fro2 = 0;
            wk->cur_ok[x] = 0;
            for (size_t p = 0; p < np; p++) {
                size_t a = (size_t)jb->pair_a[p], b = (size_t)jb->pair_b[p];
                float re = wk->g_re[p * W + x], im = wk->g_im[p * W + x];
                mr[a * C + b] = re;
                mi[a * C + b] = im;
                mr[b * C + a] = re;
                mi[b * C + a] = -im;
                fro2 += (a == b ? 1.0f : 2.0f) * (re * re + im * im);
            }
            for (size_t c = 0; c < C; c++) jb->maps[(c * H + y) * W + x] = 0.0f;
            if (fro2 <= crop2) { /* lambda_max <= ||G||_F <= crop */
                have_left = 0;
                continue;
            }
            /* warm start: left neighbour, else the pixel above, else the column of G with the
             * largest diagonal (one power step from that unit vector) */
            if (have_left) {
                memcpy(vr, wk->cur_re + (x - 1) * C, C * sizeof *vr);
                memcpy(vi, wk->cur_im + (x - 1) * C, C * sizeof *vi);
            } else if (wk->prev_ok[x]) {
                memcpy(vr, wk->prev_re + x * C, C * sizeof *vr);
                memcpy(vi, wk->prev_im + x * C, C * sizeof *vi);
            } else {
                size_t jmax = 0;
                for (size_t c = 1; c < C; c++)
                    if (mr[c * C + c] > mr[jmax * C + jmax]) jmax = c;
                for (size_t c = 0; c < C; c++) {
                    vr[c] = mr[c * C + jmax];
                    vi[c] = mi[c * C + jmax];
                }
            }
            float n2 = 0;
            for (size_t c = 0; c < C; c++) n2 += vr[c] * vr[c] + vi[c] * vi[c];
            if (!(n2 > 0)) {
                have_left = 0;
                continue;
            }
            for (size_t c = 0; c < C; c++) {
                vr[c] /= sqrtf(n2);
                vi[c] /= sqrtf(n2);
            }
            float lambda = 0;
            for (int it = 0; it < POWER_MAX_ITERS; it++) {
                float w2 = 0, d2 = 0, rq = 0;
                matvec(wr, wi, mr, mi, vr, vi, C);
                for (size_t c = 0; c < C; c++) {
                    w2 += wr[c] * wr[c] + wi[c] * wi[c];
                    rq += vr[c] * wr[c] + vi[c] * wi[c];
                }
                lambda = rq; /* Rayleigh quotient v^H G v (real: G Hermitian) */
                if (!(w2 > 0)) break;
                const float inv = 1.0f / sqrtf(w2);
                for (size_t c = 0; c < C; c++) {
                    float nr = wr[c] * inv, ni = wi[c] * inv;
                    d2 += (nr - vr[c]) * (nr - vr[c]) + (ni - vi[c]) * (ni - vi[c]);
                    vr[c] = nr;
                    vi[c] = ni;
                }
                if (d2 < POWER_TOL2) break;
            }
            if (!(lambda > jb->crop)) {
                have_left = 0;
                continue;
            }
            /* phase: t = rot^H v made real positive */
            float tr = 0, ti = 0;
            for (size_t c = 0; c < C; c++) {
                tr += jb->rot_re[c] * vr[c] + jb->rot_im[c] * vi[c];
                ti += jb->rot_re[c] * vi[c] - jb->rot_im[c] * vr[c];
            }
            const float mag = sqrtf(tr * tr + ti * ti);
            if (mag > 0) {
                const float pr = tr / mag, pi = -ti / mag; /* conj(t) / |t| */
                for (size_t c = 0; c < C; c++) {
                    float a = vr[c], b = vi[c];
                    vr[c] = a * pr - b * pi;
                    vi[c] = a * pi + b * pr;
                }
            }
            for (size_t c = 0; c < C; c++) jb->maps[(c * H + y) * W + x] = CMPLXF(vr[c], vi[c]);
            memcpy(wk->cur_re + x * C, vr, C * sizeof *vr);
            memcpy(wk->cur_im + x * C, vi, C * sizeof *vi);
            wk->cur_ok[x] = 1;
            have_left = 1;
        }
        /* this row becomes the previous one */
        float *t;
        t = wk->prev_re, wk->prev_re = wk->cur_re, wk->cur_re = t;
        t = wk->prev_im, wk->prev_im = wk->cur_im, wk->cur_im = t;
        unsigned char *to = wk->prev_ok;
        wk->prev_ok = wk->cur_ok;
        wk->cur_ok = to;
    }
}

/* ---------------------------------------------------------------- maps */

static void eig_work_free(eig_work *wk)
{
    free(wk->g_re);
    free(wk->g_im);
    free(wk->m_re);
    free(wk->m_im);
    free(wk->v_re);
    free(wk->v_im);
    free(wk->w_re);
    free(wk->w_im);
    free(wk->prev_re);
    free(wk->prev_im);
    free(wk->cur_re);
    free(wk->cur_im);
    free(wk->prev_ok);
    free(wk->cur_ok);
}

static mr_status eig_work_alloc(eig_work *wk, size_t coils, size_t w, size_t npairs)
{
    wk->g_re = malloc(npairs * w * sizeof(float));
    wk->g_im = malloc(npairs * w * sizeof(float));
    wk->m_re = malloc(coils * coils * sizeof(float));
    wk->m_im = malloc(coils * coils * sizeof(float));
    wk->v_re = malloc(coils * sizeof(float));
    wk->v_im = malloc(coils * sizeof(float));
    wk->w_re = malloc(coils * sizeof(float));
    wk->w_im = malloc(coils * sizeof(float));
    wk->prev_re = malloc(w * coils * sizeof(float));
    wk->prev_im = malloc(w * coils * sizeof(float));
    wk->cur_re = malloc(w * coils * sizeof(float));
    wk->cur_im = malloc(w * coils * sizeof(float));
    wk->prev_ok = calloc(w, 1);
    wk->cur_ok = calloc(w, 1);
    if (!wk->g_re || !wk->g_im || !wk->m_re || !wk->m_im || !wk->v_re || !wk->v_im || !wk->w_re ||
        !wk->w_im || !wk->prev_re || !wk->prev_im || !wk->cur_re || !wk->cur_im || !wk->prev_ok ||
        !wk->cur_ok)
        return mr_error_set(MR_ERR_NOMEM, "ESPIRiT: out of memory for the per-pixel workspace");
    return MR_OK;
}

/* The first principal component of the calibration block (C, ch, cw): the principal
 * eigenvector v of X^H X for X (samples, coils); the coil vectors (rows of X) point along
 * conj(v), which is returned (unit norm) split into re/im. */
static mr_status principal_component(float *rot_re, float *rot_im, const mr_cfloat *kspace,
                                     size_t coils, size_t h, size_t w, size_t y0, size_t x0,
                                     size_t ch, size_t cw)
{
    const size_t C = coils;
    mr_cfloat *cov = mr_calloc(C * C + 256, sizeof *cov); /* slack: see herm_eig */
    float *ev = mr_malloc(C * sizeof *ev);
    mr_status st = MR_OK;
    if (!cov || !ev) st = MR_ERR_NOMEM;
    for (size_t a = 0; st == MR_OK && a < C; a++)
        for (size_t b = a; b < C; b++) {
            double complex acc = 0;
            for (size_t y = y0; y < y0 + ch; y++)
                for (size_t x = x0; x < x0 + cw; x++)
                    acc += conj(kspace[(a * h + y) * w + x]) * kspace[(b * h + y) * w + x];
            cov[b * C + a] = (mr_cfloat)acc; /* column-major upper triangle: (a, b), a <= b */
        }
    if (st == MR_OK) st = herm_eig(cov, ev, (int)C);
    if (st == MR_OK) {
        const mr_cfloat *v = cov + (C - 1) * C;
        double n2 = 0;
        for (size_t c = 0; c < C; c++) n2 += crealf(v[c] * conjf(v[c]));
        for (size_t c = 0; c < C; c++) {
            rot_re[c] = (float)(crealf(v[c]) / sqrt(n2));
            rot_im[c] = (float)(-cimagf(v[c]) / sqrt(n2));
        }
    }
    free(cov);
    free(ev);
    return st;
}

mr_status mr_espirit_maps(mr_cfloat *maps, const mr_cfloat *kspace, const float *mask, size_t coils,
                          size_t h, size_t w, const mr_espirit_params *p)
{
    const size_t C = coils;
    const int nthreads = mr_threads();
    size_t y0, x0, ch, cw, cap, k, K, L, py, px, nr, nc, nk = 0, np;
    mr_cfloat *amat = NULL, *gram = NULL, *pmat = NULL;
    double complex *gk = NULL, *phx = NULL;
    float *eval = NULL, *t_re = NULL, *t_im = NULL, *phy_re = NULL, *phy_im = NULL;
    float rot_re[MR_ESPIRIT_MAX_COILS], rot_im[MR_ESPIRIT_MAX_COILS];
    int *pair_a = NULL, *pair_b = NULL;
    eig_work *works = NULL;
    mr_status st = MR_OK;

    if (coils < 2)
        return mr_error_set(MR_ERR_INPUT,
                            "ESPIRiT needs at least 2 coils; the k-space has %zu (single-coil data "
                            "needs no coil maps)",
                            coils);
    if (coils > MR_ESPIRIT_MAX_COILS)
        return mr_error_set(MR_ERR_INPUT, "ESPIRiT: %zu coils; at most %d are supported", coils,
                            MR_ESPIRIT_MAX_COILS);
    if (p->kernel < 1 || p->kernel > 32)
        return mr_error_set(MR_ERR_USAGE, "ESPIRiT kernel size: expected 1..32, found %ld",
                            p->kernel);
    if (!(p->threshold > 0 && p->threshold < 1))
        return mr_error_set(MR_ERR_USAGE, "ESPIRiT threshold: expected a value in (0, 1), found %g",
                            p->threshold);
    if (!(p->crop >= 0 && p->crop < 1))
        return mr_error_set(MR_ERR_USAGE, "ESPIRiT crop: expected a value in [0, 1), found %g",
                            p->crop);
    k = (size_t)p->kernel;
    K = k * k;
    L = 2 * k - 1;
    cap = p->cal_size > 0 ? (size_t)p->cal_size : 24;
    mr_calib_region_find(&y0, &x0, &ch, &cw, mask, kspace, coils, h, w, cap, cap, 1);
    if (ch < k || cw < k)
        return mr_error_set(MR_ERR_INPUT,
                            "ESPIRiT: the fully sampled calibration region at the k-space centre "
                            "is "
                            "%zu x %zu, smaller than the %zu x %zu kernel; acquire a fully sampled "
                            "centre of at least %zu x %zu (e.g. a larger --center-fraction) or "
                            "give coil maps with --sens",
                            ch, cw, k, k, k, k);
    MR_DEBUG("ESPIRiT: calibration region %zu x %zu at (%zu, %zu), kernel %zu", ch, cw, y0, x0, k);

    /* calibration matrix, column-major: rows = patch positions, columns = (c, uy, ux) */
    py = ch - k + 1;
    px = cw - k + 1;
    nr = py * px;
    nc = C * K;
    amat = mr_malloc(nr * nc * sizeof *amat);
    gram = mr_malloc((nc * nc + 256) * sizeof *gram); /* slack: see herm_eig */
    eval = mr_malloc(nc * sizeof *eval);
    if (!amat || !gram || !eval) {
        st = MR_ERR_NOMEM;
        goto done;
    }
    for (size_t c = 0; c < C; c++)
        for (size_t uy = 0; uy < k; uy++)
            for (size_t ux = 0; ux < k; ux++) {
                mr_cfloat *col = amat + ((c * k + uy) * k + ux) * nr;
                for (size_t qy = 0; qy < py; qy++)
                    memcpy(col + qy * px, kspace + (c * h + y0 + qy + uy) * w + x0 + ux,
                           px * sizeof *col);
            }
    {
        int n = (int)nc, kk = (int)nr;
        float one = 1, zero = 0;
        cherk_("U", "C", &n, &kk, &one, amat, &kk, &zero, gram, &n, 1, 1);
        if ((st = herm_eig(gram, eval, n)) != MR_OK) goto done;
    }
    /* signal subspace: the last nk eigenvectors (ascending eigenvalues, sigma^2) */
    {
        const double smax = sqrt(fmax(eval[nc - 1], 0));
        if (!(smax > 0)) {
            st = mr_error_set(MR_ERR_INPUT,
                              "ESPIRiT: the calibration region (%zu x %zu at the k-space centre) "
                              "holds no signal (all zeros)",
                              ch, cw);
            goto done;
        }
        for (size_t i = 0; i < nc; i++)
            if (sqrt(fmax(eval[i], 0)) / smax > sqrt(p->threshold)) nk++;
        MR_DEBUG("ESPIRiT: %zu of %zu singular vectors kept (threshold %g)", nk, nc, p->threshold);
    }
    /* P = V_par V_par^H (upper triangle) */
    pmat = mr_malloc(nc * nc * sizeof *pmat);
    if (!pmat) {
        st = MR_ERR_NOMEM;
        goto done;
    }
    {
        int n = (int)nc, kk = (int)nk;
        float one = 1, zero = 0;
        cherk_("U", "N", &n, &kk, &one, gram + (nc - nk) * nc, &n, &zero, pmat, &n, 1, 1);
    }
    if ((st = principal_component(rot_re, rot_im, kspace, C, h, w, y0, x0, ch, cw)) != MR_OK)
        goto done;

    /* convolution kernel for coil pairs (a <= b): g[p][ly][lx], e = (ly - (k-1), lx - (k-1)) */
    np = C * (C + 1) / 2;
    gk = mr_calloc(np * L * L, sizeof *gk);
    pair_a = mr_malloc(np * sizeof *pair_a);
    pair_b = mr_malloc(np * sizeof *pair_b);
    if (!gk || !pair_a || !pair_b) {
        st = MR_ERR_NOMEM;
        goto done;
    }
    for (size_t a = 0, pp = 0; a < C; a++)
        for (size_t b = a; b < C; b++, pp++) {
            pair_a[pp] = (int)a;
            pair_b[pp] = (int)b;
        }
#pragma omp parallel for schedule(static) num_threads(nthreads)
    for (long pl = 0; pl < (long)np; pl++) {
        const size_t pp = (size_t)pl, a = (size_t)pair_a[pp], b = (size_t)pair_b[pp];
        for (long ey = -(long)k + 1; ey < (long)k; ey++)
            for (long ex = -(long)k + 1; ex < (long)k; ex++) {
                double complex acc = 0;
                for (long uy = 0; uy < (long)k; uy++) {
                    const long vy = uy + ey;
                    if (vy < 0 || vy >= (long)k) continue;
                    for (long ux = 0; ux < (long)k; ux++) {
                        const long vx = ux + ex;
                        if (vx < 0 || vx >= (long)k) continue;
                        const size_t i = (a * k + (size_t)uy) * k + (size_t)ux;
                        const size_t j = (b * k + (size_t)vy) * k + (size_t)vx;
                        /* patches are rows of A = U S V^H, so as column vectors they lie in
                         * span(conj V): the projection is conj(P) */
                        acc += i <= j ? conjf(pmat[j * nc + i]) : pmat[i * nc + j];
                    }
                }
                gk[(pp * L + (size_t)(ey + (long)k - 1)) * L + (size_t)(ex + (long)k - 1)] =
                    acc / (double)K;
            }
    }

    /* T[p][ly][x] = sum_lx g[p][ly][lx] exp(-2 pi i ex (x - W/2) / W); phases along y */
    t_re = mr_malloc(np * L * w * sizeof *t_re);
    t_im = mr_malloc(np * L * w * sizeof *t_im);
    phy_re = mr_malloc(L * h * sizeof *phy_re);
    phy_im = mr_malloc(L * h * sizeof *phy_im);
    phx = mr_malloc(L * w * sizeof *phx);
    if (!t_re || !t_im || !phy_re || !phy_im || !phx) {
        st = MR_ERR_NOMEM;
        goto done;
    }
    for (size_t l = 0; l < L; l++) {
        const double e = (double)l - (double)(k - 1);
        for (size_t x = 0; x < w; x++)
            phx[l * w + x] = cexp(-2.0 * M_PI * I * e * ((double)x - (double)(w / 2)) / (double)w);
        for (size_t y = 0; y < h; y++) {
            const double complex ph =
                cexp(-2.0 * M_PI * I * e * ((double)y - (double)(h / 2)) / (double)h);
            phy_re[l * h + y] = (float)creal(ph);
            phy_im[l * h + y] = (float)cimag(ph);
        }
    }
#pragma omp parallel for schedule(static) num_threads(nthreads)
    for (long pl = 0; pl < (long)(np * L); pl++) {
        const double complex *grow = gk + (size_t)pl * L;
        for (size_t x = 0; x < w; x++) {
            double complex acc = 0;
            for (size_t lx = 0; lx < L; lx++) acc += grow[lx] * phx[lx * w + x];
            t_re[(size_t)pl * w + x] = (float)creal(acc);
            t_im[(size_t)pl * w + x] = (float)cimag(acc);
        }
    }

    /* per-pixel eigenvectors, image rows split evenly over the threads */
    works = mr_calloc((size_t)nthreads, sizeof *works);
    if (!works) {
        st = MR_ERR_NOMEM;
        goto done;
    }
    for (int t = 0; t < nthreads && st == MR_OK; t++) st = eig_work_alloc(&works[t], C, w, np);
    if (st != MR_OK) goto done;
    {
        const eig_job jb = {C,      h,      w,      np,     L,      pair_a,         pair_b, t_re,
                            t_im,   phy_re, phy_im, rot_re, rot_im, (float)p->crop, maps};
#pragma omp parallel num_threads(nthreads)
        {
            const int t = omp_get_thread_num(), nt = omp_get_num_threads();
            eig_rows(&jb, &works[t], h * (size_t)t / (size_t)nt, h * (size_t)(t + 1) / (size_t)nt);
        }
    }
    {
        /* Maps that vanish almost everywhere are not an estimate: a calibration region too small
         * for the kernel leaves no eigenvalue above the crop threshold, and a reconstruction with
         * such maps is a near-zero image. Say so instead of returning garbage. */
        size_t kept = 0;
        for (size_t i = 0; i < h * w; i++)
            for (size_t c = 0; c < C; c++)
                if (maps[c * h * w + i] != 0) {
                    kept++;
                    break;
                }
        MR_DEBUG("ESPIRiT: maps non-zero on %.1f %% of the pixels", 100.0 * kept / (double)(h * w));
        if ((double)kept < MR_ESPIRIT_MIN_SUPPORT * (double)(h * w))
            st = mr_error_set(MR_ERR_INPUT,
                              "ESPIRiT: the coil maps vanish on %.1f %% of the image (calibration "
                              "region %zu x %zu, kernel %zu, crop %g): the fully sampled centre is "
                              "too small to estimate them; acquire a larger centre (e.g. "
                              "--center-fraction), give maps with --sens, or use --method zf",
                              100.0 - 100.0 * kept / (double)(h * w), ch, cw, k, p->crop);
    }

done:
    if (works)
        for (int t = 0; t < nthreads; t++) eig_work_free(&works[t]);
    free(works);
    free(amat);
    free(gram);
    free(pmat);
    free(eval);
    free(gk);
    free(phx);
    free(pair_a);
    free(pair_b);
    free(t_re);
    free(t_im);
    free(phy_re);
    free(phy_im);
    return st;
}
