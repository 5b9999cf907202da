/*
 * mask.c: k-space sampling masks.
 *
 * 1-D column masks reproduce fastMRI's fastmri/data/subsample.py exactly (same seed, same mask):
 * MaskFunc([cf], [R])(shape, seed=S) seeds numpy's RandomState with S, draws randint(1) (the choice
 * among one (cf, R) pair: numpy consumes nothing for it), puts num_low = round(W cf) centre columns
 * (Python's round: ties to even) at pad = (W - num_low + 1) // 2, and takes the union with the
 * acceleration part of RandomMaskFunc (uniform < (W/R - num_low) / (W - num_low) per column),
 * EquiSpacedMaskFunc (every R-th column from offset = randint(0, R)) or EquispacedMaskFractionFunc
 * (round-half-even of numpy's arange(offset, W - 1, R') with R' = R (num_low - W) / (num_low R - W)
 * and offset = randint(0, round(R'))). numpy's float arange is filled as start + i * (next - start)
 * with next = start + step, and that is what is computed here.
 *
 * 2-D masks: the 1-D types repeat their column pattern along rows. MR_MASK_POISSON is a
 * variable-density Poisson disc in the spirit of BART's `poisson` (Lustig, Donoho & Pauly, MRM 2007,
 * "Sparse MRI"; Bridson-style dart throwing on the Cartesian grid): pixels are visited in a random
 * order (MT19937 Fisher-Yates shuffle) and a pixel is kept when no kept pixel lies closer than its
 * radius r = s (1 + VD d), where d is the elliptical distance from the k-space centre (1 at the
 * middle of each edge), so the density falls off with |k|. A centre block of center_fraction of
 * each axis is fully sampled. The scale s is found by bisection so that the count is close to
 * h w / R; the last few samples are then added or removed (in visiting order) so that exactly
 * round(h w / R) samples are kept.
 */
#include "mr_recon.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Variable-density slope: the disc radius at the edge midpoints is (1 + VD) times the centre's. */
#define POISSON_VD 2.0
/* Bisection stops when the dart-throwing count is within this fraction of the target. */
#define POISSON_TOL 0.005
#define POISSON_MAX_ITER 40

mr_status mr_mask_type_parse(mr_mask_type *out, const char *name)
{
    static const mr_mask_type all[] = {MR_MASK_RANDOM, MR_MASK_EQUISPACED,
                                       MR_MASK_EQUISPACED_FRACTION, MR_MASK_POISSON};
    for (size_t i = 0; name && i < sizeof all / sizeof all[0]; i++)
        if (!strcmp(name, mr_mask_type_name(all[i]))) {
            *out = all[i];
            return MR_OK;
        }
    return mr_error_set(MR_ERR_USAGE,
                        "mask type: expected random, equispaced, equispaced-fraction or poisson, "
                        "found '%s'",
                        name ? name : "(none)");
}

const char *mr_mask_type_name(mr_mask_type type)
{
    switch (type) {
    case MR_MASK_RANDOM: return "random";
    case MR_MASK_EQUISPACED: return "equispaced";
    case MR_MASK_EQUISPACED_FRACTION: return "equispaced-fraction";
    case MR_MASK_POISSON: return "poisson";
    }
    return "unknown";
}

/* Seed as fastMRI's temp_seed does: one word = RandomState(int), more = init_by_array. */
static void mask_rng_seed(mr_mt19937 *rng, const mr_mask_params *p)
{
    if (!p->seed || p->seed_len == 0) mr_mt_seed(rng, 0);
    else if (p->seed_len == 1) mr_mt_seed(rng, p->seed[0]);
    else mr_mt_seed_array(rng, p->seed, p->seed_len);
}

/* Checks shared by every type. */
static mr_status mask_params_check(const mr_mask_params *p, size_t h, size_t w)
{
    if (!p) return mr_error_set(MR_ERR_USAGE, "mask: no parameters given");
    if (h < 1 || w < 1)
        return mr_error_set(MR_ERR_USAGE, "mask shape: expected H, W >= 1, found %zu, %zu", h, w);
    if ((unsigned)p->type > MR_MASK_POISSON)
        return mr_error_set(MR_ERR_USAGE, "mask type: unknown value %d", (int)p->type);
    if (!isfinite(p->accel) || !(p->accel > 1.0))
        return mr_error_set(MR_ERR_USAGE, "acceleration R: expected a finite value > 1, found %g",
                            p->accel);
    if (!isfinite(p->center_fraction) || p->center_fraction < 0.0 || p->center_fraction >= 1.0)
        return mr_error_set(MR_ERR_USAGE, "center fraction: expected a value in [0, 1), found %g",
                            p->center_fraction);
    return MR_OK;
}

/* numpy's np.arange(start, stop, step) for a float step, rounded half-to-even (np.around) and used
 * as column indices: marks out[col] = 1. */
static void mark_arange_rounded(float *out, size_t w, long start, long stop, double step)
{
    double len_f = ceil((double)(stop - start) / step);
    double first = (double)start, delta;
    size_t len;
    if (!(len_f > 0.0)) return;
    len = (size_t)len_f;
    delta = (first + step) - first; /* numpy fills start + i * (buffer[1] - buffer[0]) */
    for (size_t i = 0; i < len; i++) {
        double v = i == 0 ? first : i == 1 ? first + step : first + (double)i * delta;
        double col = rint(v);
        if (col >= 0.0 && col < (double)w) out[(size_t)col] = 1.0f;
    }
}

mr_status mr_mask_create_1d(float *out, size_t w, const mr_mask_params *p, size_t *num_low)
{
    mr_mt19937 rng;
    size_t nl, pad;
    mr_status st = mask_params_check(p, 1, w);
    if (st) return st;
    if (p->type == MR_MASK_POISSON)
        return mr_error_set(MR_ERR_USAGE,
                            "mask type poisson: a 2-D mask, not a 1-D column mask (use the 2-D call)");
    if (!out) return mr_error_set(MR_ERR_USAGE, "mask: no output buffer");

    nl = (size_t)rint((double)w * p->center_fraction); /* Python round(): ties to even */
    pad = (w - nl + 1) / 2;

    /* Parameter checks that fastMRI leaves to a ZeroDivisionError or a silently wrong mask. */
    if (p->type == MR_MASK_RANDOM) {
        double prob = nl < w ? ((double)w / p->accel - (double)nl) / (double)(w - nl) : -1.0;
        if (nl >= w || prob < 0.0 || prob > 1.0)
            return mr_error_set(MR_ERR_USAGE,
                                "random mask: column probability (W/R - num_low) / (W - num_low) "
                                "must be in [0, 1], found %g for W = %zu, R = %g, num_low = %zu "
                                "(center fraction %g too large for acceleration %g)",
                                prob, w, p->accel, nl, p->center_fraction, p->accel);
    } else if (p->type == MR_MASK_EQUISPACED) {
        if (p->accel != rint(p->accel) || p->accel > 1e9)
            return mr_error_set(MR_ERR_USAGE,
                                "equispaced mask: acceleration R must be an integer (fastMRI "
                                "steps mask[offset::R]), found %g",
                                p->accel);
    } else if ((double)nl * p->accel >= (double)w) {
        return mr_error_set(MR_ERR_USAGE,
                            "equispaced-fraction mask: num_low * R must be < W, found num_low = "
                            "%zu, R = %g, W = %zu (center fraction %g too large for acceleration %g)",
                            nl, p->accel, w, p->center_fraction, p->accel);
    }

    mask_rng_seed(&rng, p);
    (void)mr_mt_randint(&rng, 0, 1); /* choose_acceleration(): randint(len([cf])) */

    for (size_t i = 0; i < w; i++) out[i] = 0.0f;

    switch (p->type) {
    case MR_MASK_RANDOM: {
        double prob = ((double)w / p->accel - (double)nl) / (double)(w - nl);
        for (size_t i = 0; i < w; i++)
            if (mr_mt_random_sample(&rng) < prob) out[i] = 1.0f;
        break;
    }
    case MR_MASK_EQUISPACED: {
        long r = (long)p->accel;
        long offset = mr_mt_randint(&rng, 0, r);
        for (size_t i = (size_t)offset; i < w; i += (size_t)r) out[i] = 1.0f;
        break;
    }
    case MR_MASK_EQUISPACED_FRACTION: {
        double adjusted = (p->accel * ((double)nl - (double)w)) / ((double)nl * p->accel - (double)w);
        long offset = mr_mt_randint(&rng, 0, (long)rint(adjusted));
        mark_arange_rounded(out, w, offset, (long)w - 1, adjusted);
        break;
    }
    case MR_MASK_POISSON: break; /* rejected above */
    }

    for (size_t i = pad; i < pad + nl; i++) out[i] = 1.0f;
    if (num_low) *num_low = nl;
    return MR_OK;
}

/* ---------------------------------------------------------------- Poisson disc */

/* A neighbour offset and its squared distance; the table is sorted by distance so that the
 * conflict test looks at the nearest (most likely occupied) pixels first and stops at the radius. */
typedef struct {
    int dy, dx;
    int d2;
} poisson_offset;

static int poisson_offset_cmp(const void *a, const void *b)
{
    const poisson_offset *x = a, *y = b;
    if (x->d2 != y->d2) return x->d2 < y->d2 ? -1 : 1;
    if (x->dy != y->dy) return x->dy < y->dy ? -1 : 1;
    return (x->dx > y->dx) - (x->dx < y->dx);
}

typedef struct {
    size_t h, w;
    unsigned char *occ;      /* (h, w) 1 = sampled */
    unsigned char *centre;   /* (h, w) 1 = in the fully sampled centre block */
    float *dnorm;            /* (h, w) 1 + VD * elliptical distance from the centre */
    uint32_t *order;         /* visiting order of the non-centre pixels */
    size_t n_order;
    unsigned char *accepted; /* per entry of order: kept in the last run */
    float dnorm_max;
    poisson_offset *offs;    /* offsets with 0 < d2 <= cap^2, sorted by d2 */
    size_t n_offs;
    long cap;                /* radius covered by offs */
    long rmax;               /* radius beyond which nothing changes (the grid diagonal) */
    size_t n_centre;
} poisson_work;

/* Make the offset table cover radius r (at most the grid diagonal). */
static mr_status poisson_offsets_reserve(poisson_work *pw, double r)
{
    long cap;
    size_t n_alloc;
    if (r > (double)pw->rmax) r = (double)pw->rmax;
    if (pw->offs && (double)pw->cap >= r) return MR_OK;
    cap = (long)ceil(r * 1.5) + 1; /* some headroom: the bisection moves s up and down */
    if (cap > pw->rmax) cap = pw->rmax;
    n_alloc = (size_t)(2 * cap + 1) * (size_t)(2 * cap + 1);
    free(pw->offs);
    pw->n_offs = 0;
    pw->offs = malloc(n_alloc * sizeof *pw->offs);
    if (!pw->offs)
        return mr_error_set(MR_ERR_NOMEM, "poisson mask: out of memory for a radius-%ld table", cap);
    for (long dy = -cap; dy <= cap; dy++)
        for (long dx = -cap; dx <= cap; dx++) {
            long d2 = dy * dy + dx * dx;
            if (d2 == 0 || d2 > cap * cap) continue;
            pw->offs[pw->n_offs].dy = (int)dy;
            pw->offs[pw->n_offs].dx = (int)dx;
            pw->offs[pw->n_offs].d2 = (int)d2;
            pw->n_offs++;
        }
    qsort(pw->offs, pw->n_offs, sizeof *pw->offs, poisson_offset_cmp);
    pw->cap = cap;
    return MR_OK;
}

/* Dart throwing with radius scale s: *out_count = the number of kept pixels (centre included). */
static mr_status poisson_throw(size_t *out_count, poisson_work *pw, double s)
{
    size_t h = pw->h, w = pw->w, count = pw->n_centre;
    mr_status st = poisson_offsets_reserve(pw, s * pw->dnorm_max);
    if (st) return st;
    memcpy(pw->occ, pw->centre, h * w);
    for (size_t k = 0; k < pw->n_order; k++) {
        uint32_t idx = pw->order[k];
        long y = (long)(idx / w), x = (long)(idx % w);
        double r = s * pw->dnorm[idx];
        double r2 = r * r;
        int hit = 0;
        pw->accepted[k] = 0;
        /* Kept when no sampled pixel lies at distance < r (r <= 1: every pixel is kept). */
        for (size_t o = 0; o < pw->n_offs && (double)pw->offs[o].d2 < r2; o++) {
            long yy = y + pw->offs[o].dy, xx = x + pw->offs[o].dx;
            if (yy < 0 || xx < 0 || yy >= (long)h || xx >= (long)w) continue;
            if (pw->occ[(size_t)yy * w + (size_t)xx]) {
                hit = 1;
                break;
            }
        }
        if (!hit) {
            pw->occ[idx] = 1;
            pw->accepted[k] = 1;
            count++;
        }
    }
    *out_count = count;
    return MR_OK;
}

static void poisson_work_free(poisson_work *pw)
{
    free(pw->occ);
    free(pw->centre);
    free(pw->dnorm);
    free(pw->order);
    free(pw->accepted);
    free(pw->offs);
}

static mr_status mask_create_poisson(float *out, size_t h, size_t w, const mr_mask_params *p)
{
    poisson_work pw;
    mr_mt19937 rng;
    mr_status st = MR_OK;
    size_t n = h * w, ch, cw, pad_y, pad_x, target, best_count = 0, count;
    double s_lo, s_hi, best_s = 1.0, cy = (double)(h / 2), cx = (double)(w / 2);
    double hy = h > 1 ? (double)h / 2.0 : 1.0, hx = w > 1 ? (double)w / 2.0 : 1.0;
    size_t k;

    memset(&pw, 0, sizeof pw);
    if (n > UINT32_MAX)
        return mr_error_set(MR_ERR_USAGE, "poisson mask: shape %zu x %zu is too large", h, w);
    ch = (size_t)rint((double)h * p->center_fraction);
    cw = (size_t)rint((double)w * p->center_fraction);
    pad_y = (h - ch + 1) / 2;
    pad_x = (w - cw + 1) / 2;
    target = (size_t)llround((double)n / p->accel);
    if (target < 1)
        return mr_error_set(MR_ERR_USAGE,
                            "poisson mask: %zu x %zu samples at acceleration %g round to no sample",
                            h, w, p->accel);
    if (ch * cw > target)
        return mr_error_set(MR_ERR_USAGE,
                            "poisson mask: the %zu x %zu centre block (center fraction %g) holds "
                            "more than the %zu samples of acceleration %g over %zu x %zu",
                            ch, cw, p->center_fraction, target, p->accel, h, w);

    pw.h = h;
    pw.w = w;
    pw.n_centre = ch * cw;
    pw.n_order = n - pw.n_centre;
    pw.occ = malloc(n);
    pw.centre = calloc(n, 1);
    pw.dnorm = malloc(n * sizeof *pw.dnorm);
    pw.order = malloc((pw.n_order ? pw.n_order : 1) * sizeof *pw.order);
    pw.accepted = malloc(pw.n_order ? pw.n_order : 1);
    /* Radii never need to exceed the grid diagonal. */
    pw.rmax = (long)ceil(sqrt((double)h * h + (double)w * w)) + 1;
    if (!pw.occ || !pw.centre || !pw.dnorm || !pw.order || !pw.accepted) {
        st = mr_error_set(MR_ERR_NOMEM, "poisson mask: out of memory for a %zu x %zu mask", h, w);
        goto done;
    }

    for (size_t y = pad_y; y < pad_y + ch; y++)
        for (size_t x = pad_x; x < pad_x + cw; x++) pw.centre[y * w + x] = 1;
    for (size_t y = 0; y < h; y++)
        for (size_t x = 0; x < w; x++) {
            double dy = ((double)y - cy) / hy, dx = ((double)x - cx) / hx;
            pw.dnorm[y * w + x] = (float)(1.0 + POISSON_VD * sqrt(dy * dy + dx * dx));
            if (pw.dnorm[y * w + x] > pw.dnorm_max) pw.dnorm_max = pw.dnorm[y * w + x];
        }

    /* Random visiting order of the non-centre pixels (Fisher-Yates with numpy-style randint). */
    k = 0;
    for (size_t i = 0; i < n; i++)
        if (!pw.centre[i]) pw.order[k++] = (uint32_t)i;
    mask_rng_seed(&rng, p);
    for (size_t i = pw.n_order; i > 1; i--) {
        size_t j = (size_t)mr_mt_randint(&rng, 0, (long)i);
        uint32_t t = pw.order[i - 1];
        pw.order[i - 1] = pw.order[j];
        pw.order[j] = t;
    }

    /* Bracket: at s = 0.5 every radius is < 1 and every pixel is kept (count = n >= target); the
     * upper end grows until the count falls below the target. */
    s_lo = 0.5;
    s_hi = 2.0;
    best_count = n;
    best_s = s_lo;
    for (int it = 0; it < 60; it++) {
        if ((st = poisson_throw(&count, &pw, s_hi))) goto done;
        if ((count > target ? count - target : target - count) <
            (best_count > target ? best_count - target : target - best_count)) {
            best_count = count;
            best_s = s_hi;
        }
        if (count <= target || s_hi > (double)pw.rmax) break;
        s_lo = s_hi;
        s_hi *= 2.0;
    }
    /* Bisection on s (the count falls, noisily, as s grows). */
    for (int it = 0; it < POISSON_MAX_ITER; it++) {
        double dist = fabs((double)best_count - (double)target);
        double s;
        if (dist <= POISSON_TOL * (double)target) break;
        s = 0.5 * (s_lo + s_hi);
        if ((st = poisson_throw(&count, &pw, s))) goto done;
        if (fabs((double)count - (double)target) < dist) {
            best_count = count;
            best_s = s;
        }
        if (count > target) s_lo = s;
        else s_hi = s;
    }

    /* Final pass at the best scale, then add or remove samples in visiting order so that exactly
     * `target` are kept: removal drops the last-visited kept pixels, addition takes the first-visited
     * unkept ones. */
    if ((st = poisson_throw(&count, &pw, best_s))) goto done;
    for (k = pw.n_order; k > 0 && count > target; k--)
        if (pw.accepted[k - 1]) {
            pw.occ[pw.order[k - 1]] = 0;
            count--;
        }
    for (k = 0; k < pw.n_order && count < target; k++)
        if (!pw.accepted[k]) {
            pw.occ[pw.order[k]] = 1;
            count++;
        }
    for (size_t i = 0; i < n; i++) out[i] = pw.occ[i] ? 1.0f : 0.0f;

done:
    poisson_work_free(&pw);
    return st;
}

mr_status mr_mask_create_2d(float *out, size_t h, size_t w, const mr_mask_params *p)
{
    mr_status st = mask_params_check(p, h, w);
    if (st) return st;
    if (!out) return mr_error_set(MR_ERR_USAGE, "mask: no output buffer");
    if (p->type == MR_MASK_POISSON) return mask_create_poisson(out, h, w, p);
    /* 1-D types: the column pattern is the first row, repeated along the readout (rows). */
    st = mr_mask_create_1d(out, w, p, NULL);
    if (st) return st;
    for (size_t y = 1; y < h; y++) memcpy(out + y * w, out, w * sizeof *out);
    return MR_OK;
}

int mr_mask_is_equispaced(const float *cols, size_t n)
{
    /* the fully sampled centre: the run of sampled columns through n / 2 */
    size_t c = n / 2, lo = c, hi = c;
    if (n < 8 || cols[c] == 0) return -1;
    while (lo > 0 && cols[lo - 1] != 0) lo--;
    while (hi + 1 < n && cols[hi + 1] != 0) hi++;
    long prev = -1, gmin = (long)n, gmax = 0, lines = 0;
    for (size_t j = 0; j < n; j++) {
        if (cols[j] == 0 || (j >= lo && j <= hi)) continue;
        if (prev >= 0 && !(prev < (long)lo && (long)j > (long)hi)) { /* gaps beside the centre */
            long g = (long)j - prev;
            if (g < gmin) gmin = g;
            if (g > gmax) gmax = g;
        }
        prev = (long)j, lines++;
    }
    if (lines < 4 || gmax < gmin) return -1;
    return gmax - gmin <= 1; /* fastMRI's equispaced lines round a fractional spacing */
}

mr_status mr_mask_ghost_phase(double *rho, const float *cols, size_t n)
{
    *rho = 0;
    if (n < 2) return mr_error_set(MR_ERR_INPUT, "ghost phase: a mask of %zu columns", n);
    double re2 = 0, all = 0;
    long c = (long)(n / 2);
    for (size_t m = 1; m < n; m++) {
        double re = 0, im = 0;
        for (size_t k = 0; k < n; k++) {
            if (cols[k] == 0) continue;
            /* the phase 2 pi (k - c) m / n, its index reduced mod n for accuracy */
            long q = (((long)k - c) * (long)m) % (long)n;
            double a = 2 * M_PI * (double)q / (double)n;
            re += cos(a), im += sin(a);
        }
        re2 += re * re, all += re * re + im * im;
    }
    if (!(all > 1e-9 * (double)n))
        return mr_error_set(MR_ERR_INPUT, "ghost phase: the mask has no aliasing (all or none of "
                            "its %zu columns acquired)", n);
    *rho = re2 / all;
    return MR_OK;
}

void mr_kspace_column_energy_add(double *acc, const mr_cfloat *kspace, size_t coils, size_t h,
                                 size_t w, double noise_sd)
{
    double noise = noise_sd > 0 ? 2.0 * noise_sd * noise_sd * (double)h * (double)coils : 0;
    for (size_t x = 0; x < w; x++) acc[x] -= noise;
    for (size_t c = 0; c < coils; c++)
        for (size_t y = 0; y < h; y++) {
            const mr_cfloat *k = kspace + (c * h + y) * w;
            for (size_t x = 0; x < w; x++)
                acc[x] += (double)crealf(k[x]) * crealf(k[x]) + (double)cimagf(k[x]) * cimagf(k[x]);
        }
}

mr_status mr_mask_difficulty(double *difficulty, const double *acc, const float *cols, size_t n,
                             double accel)
{
    double emax = 0, miss = 0, outer = 0;
    size_t nacq = 0, c = n / 2, lo = c, hi = c;
    *difficulty = 0;
    for (size_t x = 0; x < n; x++)
        if (cols[x] != 0) {
            nacq++;
            if (acc[x] > emax) emax = acc[x];
        }
    if (nacq == n) return MR_OK; /* fully sampled: nothing missing */
    if (nacq < 2 || cols[c] == 0)
        return mr_error_set(MR_ERR_INPUT, "mask difficulty: %zu of %zu columns acquired%s; "
                            "expected at least 2 and a sampled centre", nacq, n,
                            cols[c] == 0 ? ", the centre column not" : "");
    if (!(emax > 0))
        return mr_error_set(MR_ERR_INPUT, "mask difficulty: no signal energy left in the acquired "
                            "columns once their noise is removed");
    while (lo > 0 && cols[lo - 1] != 0) lo--;
    while (hi + 1 < n && cols[hi + 1] != 0) hi++;
    double floor = 1e-9 * emax;
#define E_AT(x) (acc[x] > floor ? acc[x] : floor)
    long prev = -1; /* the last acquired column */
    for (size_t x = 0; x <= n; x++) {
        if (x < n && cols[x] == 0) continue;
        for (long j = prev + 1; j < (long)x; j++) { /* the gap (prev, x) */
            double e;
            if (prev < 0) e = E_AT(x); /* before the first acquired column */
            else if (x == n) e = E_AT((size_t)prev); /* after the last */
            else {
                double l0 = log(E_AT((size_t)prev)), l1 = log(E_AT(x));
                e = exp(l0 + (l1 - l0) * (double)(j - prev) / (double)((long)x - prev));
            }
            miss += e, outer += e;
        }
        if (x < n && (x < lo || x > hi)) outer += E_AT(x);
        prev = (long)x;
    }
#undef E_AT
    double nc = (double)(hi - lo + 1), N = (double)n;
    double p = accel > 1 ? (N / accel - nc) / (N - nc) : ((double)nacq - nc) / (N - nc);
    if (p < 0) p = 0;
    if (p > 0.99) p = 0.99;
    if (!(outer > 0)) return MR_OK;
    *difficulty = miss / ((1 - p) * outer);
    return MR_OK;
}

double mr_mask_infer(float *out, const mr_cfloat *kspace, size_t coils, size_t h, size_t w)
{
    size_t n = h * w, sampled = 0;
    if (n == 0) return 0.0;
    for (size_t i = 0; i < n; i++) out[i] = 0.0f;
    for (size_t c = 0; c < coils; c++) {
        const mr_cfloat *k = kspace + c * n;
        for (size_t i = 0; i < n; i++)
            if (crealf(k[i]) != 0.0f || cimagf(k[i]) != 0.0f) out[i] = 1.0f;
    }
    for (size_t i = 0; i < n; i++) sampled += out[i] != 0.0f;
    return (double)sampled / (double)n;
}
