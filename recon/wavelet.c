/*
 * wavelet.c: 2-D orthogonal discrete wavelet transform of complex images and the prox of the
 * l1-norm of the coefficients with random cycle spinning, for L1-wavelet compressed sensing
 * (Lustig, Donoho, Pauly 2007, "Sparse MRI", MRM 58:1182; the cycle spinning as in BART's pics).
 *
 * Filters: Daubechies' 4-tap orthogonal wavelet ("D4", BART's `dau2`; Daubechies 1988):
 *   h = [1+s3, 3+s3, 3-s3, 1-s3] / (4 sqrt 2),  g[k] = (-1)^k h[3-k].
 * One level along an axis of even length n (periodic):
 *   a[j] = sum_k h[k] x[(2j+k) mod n],  d[j] = sum_k g[k] x[(2j+k) mod n],  j < n/2,
 * an orthogonal map, so the inverse is its transpose. An odd length splits its first n - 1 samples
 * and carries the last sample at the end of the low band. The 2-D transform is separable (Mallat):
 * at each level the current approximation block is split along x (rows) then y (columns), and the
 * next level works on its low-low block, stored at the top left. BART's own transform uses
 * symmetric extension and a redundant band size of (n + 3) / 2; the periodic form here is exactly
 * orthogonal, so soft thresholding of W x is the exact prox of ||W x||_1.
 */
#include "mr_recon.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MR_WL_MAX_LEVELS 32
/* blocks smaller than this run on one thread: fork/join costs more than the work, and much more
 * on an oversubscribed machine */
#define MR_WL_PAR_MIN 16384

#define S3 1.7320508075688772
#define R2 1.4142135623730951
static const float H[4] = {(float)((1 + S3) / (4 * R2)), (float)((3 + S3) / (4 * R2)),
                           (float)((3 - S3) / (4 * R2)), (float)((1 - S3) / (4 * R2))};
static const float G[4] = {(float)((1 - S3) / (4 * R2)), (float)(-(3 - S3) / (4 * R2)),
                           (float)((3 + S3) / (4 * R2)), (float)(-(1 + S3) / (4 * R2))};

typedef struct {
    size_t lh, lw; /* size of the block split at this level */
    int split_y, split_x;
} wl_level;

struct mr_wavelet {
    size_t h, w;
    int nlev, lev_y, lev_x;
    wl_level lev[MR_WL_MAX_LEVELS];
    size_t ch, cw;     /* coarse band */
    size_t dy, dx;     /* circular shift */
    mr_cfloat *tmp;    /* (h, w) workspace */
};

/* Low band length of an axis of length n: n/2 (+1 when odd). */
static size_t low_len(size_t n) { return n / 2 + (n & 1); }

mr_status mr_wavelet_create(mr_wavelet **out, size_t h, size_t w, size_t min_size)
{
    mr_wavelet *wt;
    size_t min_y = h < min_size ? h : min_size, min_x = w < min_size ? w : min_size;
    size_t lh = h, lw = w;
    *out = NULL;
    if (h == 0 || w == 0) return mr_error_set(MR_ERR_INPUT, "wavelet: empty image (%zu, %zu)", h, w);
    wt = mr_calloc(1, sizeof *wt);
    if (!wt) return MR_ERR_NOMEM;
    wt->h = h;
    wt->w = w;
    while (wt->nlev < MR_WL_MAX_LEVELS) {
        int sy = lh >= min_y && lh >= 2, sx = lw >= min_x && lw >= 2;
        if (!sy && !sx) break;
        wt->lev[wt->nlev] = (wl_level){lh, lw, sy, sx};
        wt->nlev++;
        wt->lev_y += sy;
        wt->lev_x += sx;
        if (sy) lh = low_len(lh);
        if (sx) lw = low_len(lw);
        /* a block that no longer shrinks (n = 2 -> 1 is the last split) stops by itself */
    }
    wt->ch = lh;
    wt->cw = lw;
    wt->tmp = mr_malloc_aligned(h * w * sizeof *wt->tmp);
    if (!wt->tmp) {
        mr_wavelet_destroy(wt);
        return MR_ERR_NOMEM;
    }
    *out = wt;
    return MR_OK;
}

void mr_wavelet_destroy(mr_wavelet *wt)
{
    if (!wt) return;
    mr_free_aligned(wt->tmp);
    free(wt);
}

void mr_wavelet_levels(const mr_wavelet *wt, int *levels_y, int *levels_x)
{
    *levels_y = wt->lev_y;
    *levels_x = wt->lev_x;
}

void mr_wavelet_coarse_size(const mr_wavelet *wt, size_t *ch, size_t *cw)
{
    *ch = wt->ch;
    *cw = wt->cw;
}

void mr_wavelet_set_shift(mr_wavelet *wt, size_t dy, size_t dx)
{
    wt->dy = dy % wt->h;
    wt->dx = dx % wt->w;
}

/* ---------------------------------------------------------------- 1-D kernels */

/* Forward split of x[0..n) into out: low band [0, ml), high band [ml, n). */
static void fwd1(mr_cfloat *restrict out, const mr_cfloat *restrict x, size_t n)
{
    size_t ne = n & ~(size_t)1, m = ne / 2, ml = low_len(n);
    const float *xf = (const float *)x;
    float *lo = (float *)out, *hi = (float *)(out + ml);
    /* interior: no wrap-around (j < m - 1), real arithmetic on (re, im) pairs */
    for (size_t j = 0; j + 1 < m; j++) {
        const float *q = xf + 4 * j;
        for (int r = 0; r < 2; r++) {
            lo[2 * j + r] = H[0] * q[r] + H[1] * q[2 + r] + H[2] * q[4 + r] + H[3] * q[6 + r];
            hi[2 * j + r] = G[0] * q[r] + G[1] * q[2 + r] + G[2] * q[4 + r] + G[3] * q[6 + r];
        }
    }
    if (m >= 1) { /* the last pair wraps around periodically */
        size_t j = m - 1, i0 = 2 * j, i1 = i0 + 1, i2 = (i0 + 2) % ne, i3 = (i0 + 3) % ne;
        out[j] = H[0] * x[i0] + H[1] * x[i1] + H[2] * x[i2] + H[3] * x[i3];
        out[ml + j] = G[0] * x[i0] + G[1] * x[i1] + G[2] * x[i2] + G[3] * x[i3];
    }
    if (n & 1) out[m] = x[n - 1];
}

/* Inverse (transpose) of fwd1: x[2p] = h0 a[p] + h2 a[p-1] + g0 d[p] + g2 d[p-1], and
 * x[2p+1] = h1 a[p] + h3 a[p-1] + g1 d[p] + g3 d[p-1] (indices mod m). */
static void inv1(mr_cfloat *restrict x, const mr_cfloat *restrict in, size_t n)
{
    size_t ne = n & ~(size_t)1, m = ne / 2, ml = low_len(n);
    const mr_cfloat *a = in, *d = in + ml;
    const float *af = (const float *)a, *df = (const float *)d;
    float *xf = (float *)x;
    if (m >= 1) { /* p = 0 wraps around to a[m-1], d[m-1] */
        size_t q = m - 1;
        x[0] = H[0] * a[0] + H[2] * a[q] + G[0] * d[0] + G[2] * d[q];
        x[1] = H[1] * a[0] + H[3] * a[q] + G[1] * d[0] + G[3] * d[q];
    }
    for (size_t p = 1; p < m; p++)
        for (int r = 0; r < 2; r++) {
            float ap = af[2 * p + r], aq = af[2 * p - 2 + r], dp = df[2 * p + r],
                  dq = df[2 * p - 2 + r];
            xf[4 * p + r] = H[0] * ap + H[2] * aq + G[0] * dp + G[2] * dq;
            xf[4 * p + 2 + r] = H[1] * ap + H[3] * aq + G[1] * dp + G[3] * dq;
        }
    if (n & 1) x[n - 1] = a[m];
}

/* ---------------------------------------------------------------- 2-D passes on a block */

/* Split rows 0..lh of the (lh, lw) block of c (row stride w) along x (inverse: merge), through
 * the workspace rows. */
static void rows_fwd(mr_wavelet *wt, mr_cfloat *c, size_t lh, size_t lw, int inverse)
{
    size_t w = wt->w;
#pragma omp parallel for schedule(static) if (lh * lw >= MR_WL_PAR_MIN)
    for (long y = 0; y < (long)lh; y++) {
        mr_cfloat *row = c + (size_t)y * w, *buf = wt->tmp + (size_t)y * w;
        if (inverse) inv1(buf, row, lw);
        else fwd1(buf, row, lw);
        memcpy(row, buf, lw * sizeof *row);
    }
}

/* Split the (lh, lw) block along y: whole rows at a time (contiguous, vectorisable), through tmp. */
static void cols_fwd(mr_wavelet *wt, mr_cfloat *c, size_t lh, size_t lw)
{
    size_t w = wt->w, ne = lh & ~(size_t)1, m = ne / 2, ml = low_len(lh);
    float *tmp = (float *)wt->tmp;
    const float *cf = (const float *)c;
    size_t n2 = 2 * lw, s2 = 2 * w;
#pragma omp parallel for schedule(static) if (lh * lw >= MR_WL_PAR_MIN)
    for (long j = 0; j < (long)m; j++) {
        size_t i0 = 2 * (size_t)j, i1 = i0 + 1, i2 = (i0 + 2) % ne, i3 = (i0 + 3) % ne;
        const float *r0 = cf + i0 * s2, *r1 = cf + i1 * s2, *r2 = cf + i2 * s2, *r3 = cf + i3 * s2;
        float *lo = tmp + (size_t)j * s2, *hi = tmp + (ml + (size_t)j) * s2;
        for (size_t k = 0; k < n2; k++) {
            lo[k] = H[0] * r0[k] + H[1] * r1[k] + H[2] * r2[k] + H[3] * r3[k];
            hi[k] = G[0] * r0[k] + G[1] * r1[k] + G[2] * r2[k] + G[3] * r3[k];
        }
    }
    if (lh & 1) memcpy(tmp + m * s2, cf + (lh - 1) * s2, n2 * sizeof *tmp);
#pragma omp parallel for schedule(static) if (lh * lw >= MR_WL_PAR_MIN)
    for (long y = 0; y < (long)lh; y++)
        memcpy(c + (size_t)y * w, wt->tmp + (size_t)y * w, lw * sizeof *c);
}

static void cols_inv(mr_wavelet *wt, mr_cfloat *c, size_t lh, size_t lw)
{
    size_t w = wt->w, ne = lh & ~(size_t)1, m = ne / 2, ml = low_len(lh);
    float *tmp = (float *)wt->tmp;
    const float *cf = (const float *)c;
    size_t n2 = 2 * lw, s2 = 2 * w;
#pragma omp parallel for schedule(static) if (lh * lw >= MR_WL_PAR_MIN)
    for (long p = 0; p < (long)m; p++) {
        size_t q = ((size_t)p + m - 1) % m;
        const float *ap = cf + (size_t)p * s2, *aq = cf + q * s2;
        const float *dp = cf + (ml + (size_t)p) * s2, *dq = cf + (ml + q) * s2;
        float *x0 = tmp + 2 * (size_t)p * s2, *x1 = x0 + s2;
        for (size_t k = 0; k < n2; k++) {
            x0[k] = H[0] * ap[k] + H[2] * aq[k] + G[0] * dp[k] + G[2] * dq[k];
            x1[k] = H[1] * ap[k] + H[3] * aq[k] + G[1] * dp[k] + G[3] * dq[k];
        }
    }
    if (lh & 1) memcpy(tmp + (lh - 1) * s2, cf + m * s2, n2 * sizeof *tmp);
#pragma omp parallel for schedule(static) if (lh * lw >= MR_WL_PAR_MIN)
    for (long y = 0; y < (long)lh; y++)
        memcpy(c + (size_t)y * w, wt->tmp + (size_t)y * w, lw * sizeof *c);
}

/* ---------------------------------------------------------------- transforms */

void mr_wavelet_forward(mr_wavelet *wt, mr_cfloat *coef, const mr_cfloat *img)
{
    size_t h = wt->h, w = wt->w, dy = wt->dy, dx = wt->dx;
    /* coef = img circularly shifted by (dy, dx): coef[y][x] = img[(y + dy) % h][(x + dx) % w] */
#pragma omp parallel for schedule(static) if (h * w >= MR_WL_PAR_MIN)
    for (long y = 0; y < (long)h; y++) {
        const mr_cfloat *src = img + (((size_t)y + dy) % h) * w;
        mr_cfloat *dst = coef + (size_t)y * w;
        memcpy(dst, src + dx, (w - dx) * sizeof *dst);
        memcpy(dst + (w - dx), src, dx * sizeof *dst);
    }
    for (int l = 0; l < wt->nlev; l++) {
        const wl_level *L = &wt->lev[l];
        if (L->split_x) rows_fwd(wt, coef, L->lh, L->lw, 0);
        if (L->split_y) cols_fwd(wt, coef, L->lh, L->lw);
    }
}

void mr_wavelet_inverse(mr_wavelet *wt, mr_cfloat *img, const mr_cfloat *coef)
{
    size_t h = wt->h, w = wt->w, dy = wt->dy, dx = wt->dx;
    /* work in img itself (unshifted at the end through the workspace rows) */
    mr_cfloat *c = img;
    if (c != coef) memcpy(c, coef, h * w * sizeof *c);
    for (int l = wt->nlev - 1; l >= 0; l--) {
        const wl_level *L = &wt->lev[l];
        if (L->split_y) cols_inv(wt, c, L->lh, L->lw);
        if (L->split_x) rows_fwd(wt, c, L->lh, L->lw, 1);
    }
    if (dy == 0 && dx == 0) return;
    /* undo the shift: img[(y + dy) % h][(x + dx) % w] = c[y][x], through tmp */
    memcpy(wt->tmp, c, h * w * sizeof *c);
#pragma omp parallel for schedule(static) if (h * w >= MR_WL_PAR_MIN)
    for (long y = 0; y < (long)h; y++) {
        const mr_cfloat *src = wt->tmp + (size_t)y * w;
        mr_cfloat *dst = img + (((size_t)y + dy) % h) * w;
        memcpy(dst + dx, src, (w - dx) * sizeof *dst);
        memcpy(dst, src + (w - dx), dx * sizeof *dst);
    }
}

/* ---------------------------------------------------------------- as an operator */

static mr_status wl_forward(void *d, mr_cfloat *out, const mr_cfloat *in)
{
    mr_wavelet_forward(d, out, in);
    return MR_OK;
}

static mr_status wl_adjoint(void *d, mr_cfloat *out, const mr_cfloat *in)
{
    mr_wavelet_inverse(d, out, in);
    return MR_OK;
}

static mr_status wl_normal(void *d, mr_cfloat *out, const mr_cfloat *in)
{
    mr_wavelet *wt = d; /* orthogonal */
    if (out != in) memcpy(out, in, wt->h * wt->w * sizeof *out);
    return MR_OK;
}

static void wl_destroy(void *d) { mr_wavelet_destroy(d); }

mr_status mr_linop_wavelet(mr_linop **out, size_t h, size_t w, size_t min_size, size_t dy,
                           size_t dx)
{
    static const mr_linop_ops ops = {wl_forward, wl_adjoint, wl_normal, wl_destroy};
    mr_wavelet *wt;
    mr_status st = mr_wavelet_create(&wt, h, w, min_size);
    *out = NULL;
    if (st != MR_OK) return st;
    mr_wavelet_set_shift(wt, dy, dx);
    return mr_linop_create(out, h * w, h * w, &ops, wt);
}

/* ---------------------------------------------------------------- thresholding and the prox */

void mr_soft_threshold(mr_cfloat *out, const mr_cfloat *in, float tau, size_t n)
{
#pragma omp parallel for schedule(static) if (n >= MR_WL_PAR_MIN)
    for (long i = 0; i < (long)n; i++) {
        float re = crealf(in[i]), im = cimagf(in[i]);
        float mag = sqrtf(re * re + im * im);
        float s = mag > tau ? (mag - tau) / mag : 0.0f;
        out[i] = in[i] * s;
    }
}

typedef struct {
    mr_wavelet *wt;
    mr_cfloat *coef;   /* (h, w) */
    mr_cfloat *coarse; /* ch * cw saved approximation band (skip_coarse) */
    mr_cfloat *acc;    /* (h, w) sum over shifts (shifts > 1) */
    float lambda;
    int random_shift, shifts, skip_coarse;
    mr_mt19937 rng;
} wprox_data;

/* out = W_s^H soft(W_s in, tau) for a newly drawn shift s. */
static void wprox_one(wprox_data *p, mr_cfloat *out, const mr_cfloat *in, float tau)
{
    mr_wavelet *wt = p->wt;
    if (p->random_shift) {
        /* uniform over [0, 2^levels) per axis: every cycle-spinning class of the decomposition */
        size_t ry = (size_t)1 << (wt->lev_y < 30 ? wt->lev_y : 30);
        size_t rx = (size_t)1 << (wt->lev_x < 30 ? wt->lev_x : 30);
        size_t dy = (size_t)mr_mt_randint(&p->rng, 0, (long)ry);
        size_t dx = (size_t)mr_mt_randint(&p->rng, 0, (long)rx);
        mr_wavelet_set_shift(wt, dy, dx);
    }
    mr_wavelet_forward(wt, p->coef, in);
    if (p->skip_coarse)
        for (size_t y = 0; y < wt->ch; y++)
            memcpy(p->coarse + y * wt->cw, p->coef + y * wt->w, wt->cw * sizeof *p->coarse);
    mr_soft_threshold(p->coef, p->coef, tau, wt->h * wt->w);
    if (p->skip_coarse)
        for (size_t y = 0; y < wt->ch; y++)
            memcpy(p->coef + y * wt->w, p->coarse + y * wt->cw, wt->cw * sizeof *p->coarse);
    mr_wavelet_inverse(wt, out, p->coef);
}

static mr_status wprox_apply(void *d, mr_cfloat *out, const mr_cfloat *in, float t)
{
    wprox_data *p = d;
    size_t n = p->wt->h * p->wt->w;
    float tau = p->lambda * t;
    if (p->shifts <= 1) {
        wprox_one(p, out, in, tau);
        return MR_OK;
    }
    /* average over shifts: acc[0, n) sums, acc[n, 2n) takes each result; out (which may alias
     * in) is written last */
    mr_cfloat *sum = p->acc, *one = p->acc + n;
    float inv = 1.0f / (float)p->shifts;
    wprox_one(p, sum, in, tau);
    for (int k = 1; k < p->shifts; k++) {
        wprox_one(p, one, in, tau);
#pragma omp parallel for schedule(static) if (n >= MR_WL_PAR_MIN)
        for (long i = 0; i < (long)n; i++) sum[i] += one[i];
    }
#pragma omp parallel for schedule(static) if (n >= MR_WL_PAR_MIN)
    for (long i = 0; i < (long)n; i++) out[i] = sum[i] * inv;
    return MR_OK;
}

mr_status mr_prox_wavelet_create(mr_prox *out, size_t h, size_t w, size_t min_size, float lambda,
                                 int random_shift, int shifts, int skip_coarse, uint32_t seed)
{
    wprox_data *p = mr_calloc(1, sizeof *p);
    mr_status st;
    memset(out, 0, sizeof *out);
    if (!p) return MR_ERR_NOMEM;
    if ((st = mr_wavelet_create(&p->wt, h, w, min_size)) != MR_OK) {
        free(p);
        return st;
    }
    p->coef = mr_malloc_aligned(h * w * sizeof *p->coef);
    p->coarse = mr_malloc_aligned(p->wt->ch * p->wt->cw * sizeof *p->coarse);
    p->acc = shifts > 1 ? mr_malloc_aligned(2 * h * w * sizeof *p->acc) : NULL;
    if (!p->coef || !p->coarse || (shifts > 1 && !p->acc)) {
        out->data = p;
        mr_prox_wavelet_destroy(out);
        return MR_ERR_NOMEM;
    }
    p->lambda = lambda;
    p->random_shift = random_shift;
    p->shifts = shifts < 1 ? 1 : shifts;
    p->skip_coarse = skip_coarse;
    mr_mt_seed(&p->rng, seed);
    out->apply = wprox_apply;
    out->data = p;
    return MR_OK;
}

void mr_prox_wavelet_destroy(mr_prox *pr)
{
    wprox_data *p;
    if (!pr || !pr->data) return;
    p = pr->data;
    mr_free_aligned(p->coef);
    mr_free_aligned(p->coarse);
    mr_free_aligned(p->acc);
    mr_wavelet_destroy(p->wt);
    free(p);
    pr->data = NULL;
}
