/*
 * train_artefact.c: training data for the model that cleans undersampled reconstructions
 * (docs/models.md, "artefact model"). Clean planes of the training volumes (three orientations,
 * training z blocks only, dihedral and gamma/scale augmentation) are placed on an M x M matrix,
 * turned into multi-coil k-space as ../shared/DATA.md describes (smooth coil maps, a smooth random
 * background phase, complex Gaussian noise: recon/simulate.c), undersampled with a fastMRI mask
 * (random or equispaced columns, 4x/8x with their centre fractions) and reconstructed by a real
 * mrpipe method (zero-filled RSS or cs-l1, exactly as `mrpipe recon`). The target is the RSS of the
 * fully sampled coil images, as fastMRI's reconstruction_rss. Both are divided by the same robust
 * level (the model's percentile of the degraded image), as inference divides by the input's.
 *
 * The bank is built once per run from its own rng streams (seed, slice): a resumed run rebuilds the
 * same bank (same thread count), so `--resume` still reaches the uninterrupted result.
 */
#include "mr_recon.h"
#include "mr_train.h"

#define _USE_MATH_DEFINES
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct mr_train_degrader {
    mr_train_us u;
    size_t m, coils;
    mr_fft_plan *fwd;
    mr_zf_plan *zfp;
    mr_cfloat *maps, *ks, *kmask, *img;
    float *phase, *mask, *zf; /* zf: the zero-filled image of the last degradation */
    const mr_recon_method *method[MR_TRAIN_US_MAX];
    void *state[MR_TRAIN_US_MAX];
    mr_recon_params rp; /* every state's parameters: the methods' defaults, seed 1 */
    int boot;          /* mr_train_degrader_bootstrap: ESPIRiT maps made explicit, kept in emaps */
    int last_method;   /* the method of the last degradation (-1: zero-filled) */
    mr_cfloat *emaps;  /* (C, M, M) the maps of the last degradation's reconstruction */
};

void mr_train_degrader_destroy(mr_train_degrader *d)
{
    if (!d) return;
    for (int i = 0; i < d->u.n_methods; i++)
        if (d->state[i]) d->method[i]->destroy(d->state[i]);
    mr_fft_plan_destroy(d->fwd);
    mr_zf_plan_destroy(d->zfp);
    free(d->maps), free(d->ks), free(d->kmask), free(d->img), free(d->phase), free(d->mask);
    free(d->zf);
    free(d->emaps);
    free(d);
}

mr_status mr_train_degrader_create(mr_train_degrader **out, const mr_train_us *u)
{
    *out = NULL;
    if (u->matrix < 32 || u->coils < 1 || u->n_methods < 1 || u->n_accel < 1 || u->n_masks < 1)
        return mr_error_set(MR_ERR_USAGE, "degradation: matrix >= 32, coils >= 1 and at least one "
                            "method, acceleration and mask are needed");
    mr_train_degrader *d = calloc(1, sizeof *d);
    if (!d) return mr_error_set(MR_ERR_NOMEM, "degradation: out of memory");
    d->u = *u;
    d->last_method = -1;
    d->rp.seed = 1;
    d->m = (size_t)u->matrix, d->coils = (size_t)u->coils;
    size_t hw = d->m * d->m, n = d->coils * hw;
    mr_status st;
    d->maps = malloc(n * sizeof *d->maps);
    d->ks = malloc(n * sizeof *d->ks);
    d->kmask = malloc(n * sizeof *d->kmask);
    d->img = malloc(hw * sizeof *d->img);
    d->phase = malloc(hw * sizeof *d->phase);
    d->mask = malloc(hw * sizeof *d->mask);
    d->zf = malloc(hw * sizeof *d->zf);
    if (!d->maps || !d->ks || !d->kmask || !d->img || !d->phase || !d->mask || !d->zf) {
        mr_train_degrader_destroy(d);
        return mr_error_set(MR_ERR_NOMEM, "degradation: out of memory");
    }
    if ((st = mr_sim_coil_maps(d->maps, d->coils, d->m, d->m)) != MR_OK ||
        (st = mr_fft_plan_create(&d->fwd, d->coils, d->m, d->m)) != MR_OK ||
        (st = mr_zf_plan_create(&d->zfp, d->coils, d->m, d->m, d->m, d->m)) != MR_OK) {
        mr_train_degrader_destroy(d);
        return st;
    }
    for (int i = 0; i < u->n_methods; i++) {
        if (!(d->method[i] = mr_recon_method_find(u->methods[i]))) {
            mr_train_degrader_destroy(d);
            return mr_error_set(MR_ERR_USAGE, "degradation: unknown reconstruction method '%s'",
                                u->methods[i]);
        }
        if (!strcmp(u->methods[i], "zf")) continue; /* zero-filled RSS: the zf plan */
        if ((st = d->method[i]->create(&d->state[i], &d->rp, d->coils, d->m, d->m)) != MR_OK) {
            mr_train_degrader_destroy(d);
            return st;
        }
    }
    *out = d;
    return MR_OK;
}

mr_status mr_train_degrade(mr_train_degrader *d, float *ref, float *deg, const float *img,
                           const mr_train_degradation *g)
{
    size_t m = d->m, hw = m * m, C = d->coils;
    mr_status st;
    if (g->method < 0 || g->method >= d->u.n_methods)
        return mr_error_set(MR_ERR_USAGE, "degradation: method index %d out of range", g->method);
    mr_sim_background_phase(d->phase, m, m, (uint32_t)(g->seed * 2654435761u));
    if ((st = mr_sim_slice_kspace(d->ks, img, m, m, 1, d->maps, d->phase, C, g->noise,
                                  (uint32_t)g->seed, (uint32_t)(g->seed >> 32), d->fwd)) != MR_OK)
        return st;
    /* the fully sampled reference: RSS of the coil images (fastMRI's reconstruction_rss) */
    if ((st = mr_zf_execute(d->zfp, ref, NULL, d->ks, NULL)) != MR_OK) return st;
    uint32_t words[2] = {(uint32_t)g->seed, (uint32_t)(g->seed >> 32)};
    mr_mask_params mp = {g->mask, g->accel, g->center_fraction, words, 2};
    if ((st = mr_mask_create_2d(d->mask, m, m, &mp)) != MR_OK) return st;
    if ((st = mr_zf_execute(d->zfp, d->zf, NULL, d->ks, d->mask)) != MR_OK) return st;
    d->last_method = -1;
    if (!d->state[g->method]) { /* zero-filled */
        memcpy(deg, d->zf, hw * sizeof *deg);
        return MR_OK;
    }
    for (size_t c = 0; c < C; c++)
        for (size_t i = 0; i < hw; i++) d->kmask[c * hw + i] = d->ks[c * hw + i] * d->mask[i];
    mr_recon_stats rs;
    if (d->boot) { /* the methods' own ESPIRiT defaults, made explicit for the bootstrap, and a
                    * fresh state, as the bootstrap run's (cmd_recon.c says why) */
        mr_espirit_params ep;
        mr_espirit_params_default(&ep);
        if ((st = mr_espirit_maps(d->emaps, d->kmask, d->mask, C, m, m, &ep)) != MR_OK ||
            (st = mr_recon_state_renew(d->method[g->method], &d->state[g->method], &d->rp, C, m,
                                       m)) != MR_OK)
            return st;
    }
    if ((st = d->method[g->method]->run(d->state[g->method], d->img, &rs, d->kmask, d->mask,
                                        d->boot ? d->emaps : NULL)) != MR_OK)
        return st;
    d->last_method = g->method;
    for (size_t i = 0; i < hw; i++) deg[i] = cabsf(d->img[i]);
    return MR_OK;
}

/* ---------------------------------------------------------------- the bank */

/* Place a (ph, pw) plane (row stride pw) on the (m, m) matrix: each axis centred-and-jittered
 * zero padding when shorter, a random crop when longer. */
static void place(float *dst, size_t m, const float *plane, size_t ph, size_t pw, mr_rng *rng)
{
    memset(dst, 0, m * m * sizeof *dst);
    size_t oy_d = 0, oy_s = 0, ox_d = 0, ox_s = 0, ny = ph < m ? ph : m, nx = pw < m ? pw : m;
    if (ph < m) oy_d = (m - ph) / 2 + (size_t)mr_rng_below(rng, (m - ph) / 4 + 1) - (m - ph) / 8;
    else oy_s = (size_t)mr_rng_below(rng, ph - m + 1);
    if (pw < m) ox_d = (m - pw) / 2 + (size_t)mr_rng_below(rng, (m - pw) / 4 + 1) - (m - pw) / 8;
    else ox_s = (size_t)mr_rng_below(rng, pw - m + 1);
    for (size_t y = 0; y < ny; y++)
        memcpy(dst + (oy_d + y) * m + ox_d, plane + (oy_s + y) * pw + ox_s, nx * sizeof *dst);
}

/* One clean plane from the training blocks, any orientation, on (m, m);
 * returns its mean. scratch: at least max(H*W, S*W, S*H) floats of any volume. */
static double cut_plane(float *dst, size_t m, const mr_train_volume *vols, int nvols,
                        float *scratch, mr_rng *rng)
{
    /* a volume uniformly (ch2better's 0.5 mm voxels must not outweigh the others 5:1), then one
     * of its training blocks weighted by slices */
    int vi = (int)mr_rng_below(rng, (uint64_t)nvols), bi = 0;
    double total = 0;
    for (int b = 0; b < vols[vi].nblocks; b++) total += vols[vi].k1[b] - vols[vi].k0[b];
    double r = mr_rng_uniform(rng) * total;
    for (int b = 0; b < vols[vi].nblocks; b++) {
        bi = b;
        if (r < vols[vi].k1[b] - vols[vi].k0[b]) break;
        r -= vols[vi].k1[b] - vols[vi].k0[b];
    }
    const mr_train_volume *tv = &vols[vi];
    size_t H = tv->vol->dims[1], W = tv->vol->dims[2];
    size_t k0 = (size_t)tv->k0[bi], nk = (size_t)(tv->k1[bi] - tv->k0[bi]);
    const float *d = mr_array_f32(tv->vol);
    int orient = (int)mr_rng_below(rng, 4); /* axial half of the time, coronal, sagittal */
    orient = orient < 2 ? 0 : orient - 1;
    if (nk < 32) orient = 0; /* a thin block: axial planes only */
    size_t ph, pw;
    if (orient == 0) {
        size_t k = k0 + mr_rng_below(rng, nk);
        ph = H, pw = W;
        for (size_t y = 0; y < H; y++) memcpy(scratch + y * W, d + (k * H + (H - 1 - y)) * W, W * 4);
    } else if (orient == 1) { /* coronal: rows along z (superior up), columns x, fixed y */
        size_t y = mr_rng_below(rng, H);
        ph = nk, pw = W;
        for (size_t i = 0; i < nk; i++)
            memcpy(scratch + i * W, d + ((k0 + nk - 1 - i) * H + y) * W, W * 4);
    } else { /* sagittal: rows along z, columns y, fixed x */
        size_t x = mr_rng_below(rng, W);
        ph = nk, pw = H;
        for (size_t i = 0; i < nk; i++)
            for (size_t j = 0; j < H; j++) scratch[i * H + j] = d[((k0 + nk - 1 - i) * H + j) * W + x];
    }
    if (orient != 0) {
        /* a plane across z stops at the block's ends: where that is a cut through tissue (a
         * held-out slab beyond), fade it out over 24 rows (like a coil's fall-off) instead of a
         * straight edge no scan has */
        size_t S = tv->vol->dims[0], taper = 24 < nk / 3 ? 24 : nk / 3;
        for (size_t i = 0; i < taper; i++) {
            float f = (float)(0.5 - 0.5 * cos(M_PI * ((double)i + 0.5) / (double)taper));
            if ((size_t)tv->k1[bi] < S) /* top rows (i = 0 is z = k1 - 1) */
                for (size_t j = 0; j < pw; j++) scratch[i * pw + j] *= f;
            if (tv->k0[bi] > 0)
                for (size_t j = 0; j < pw; j++) scratch[(nk - 1 - i) * pw + j] *= f;
        }
    }
    /* a plane larger than the matrix (ch2better's 0.5 mm) is box-averaged down by an integer
     * factor rather than cropped through the tissue */
    size_t big = ph > pw ? ph : pw, f = (big + m - 1) / m;
    if (f > 1) {
        size_t qh = ph / f, qw = pw / f;
        for (size_t y = 0; y < qh; y++)
            for (size_t x = 0; x < qw; x++) {
                double acc = 0;
                for (size_t a = 0; a < f; a++)
                    for (size_t c = 0; c < f; c++) acc += scratch[(y * f + a) * pw + x * f + c];
                scratch[y * qw + x] = (float)(acc / (double)(f * f)); /* in place: y*qw+x <= read */
            }
        ph = qh, pw = qw;
    }
    place(dst, m, scratch, ph, pw, rng);
    double mean = 0;
    for (size_t i = 0; i < m * m; i++) mean += dst[i];
    return mean / (double)(m * m);
}

const float *mr_train_degrader_zf(const mr_train_degrader *d) { return d->zf; }

mr_status mr_train_degrader_bootstrap(mr_train_degrader *d)
{
    if (!d->emaps && !(d->emaps = malloc(d->coils * d->m * d->m * sizeof *d->emaps)))
        return mr_error_set(MR_ERR_NOMEM, "degradation: out of memory");
    d->boot = 1;
    return MR_OK;
}

mr_status mr_train_degrader_boot(const mr_train_degrader *d, float *dev)
{
    if (!d->boot || d->last_method < 0)
        return mr_error_set(MR_ERR_USAGE, "degradation: the bootstrap needs a reconstruction with "
                            "coil maps (methods other than zf, mr_train_degrader_bootstrap first)");
    return mr_bootstrap_dev(dev, d->method[d->last_method], &d->rp, d->img, d->mask, d->emaps,
                            d->coils, d->m, d->m);
}
const float *mr_train_degrader_mask(const mr_train_degrader *d) { return d->mask; }

mr_status mr_train_degrader_noise_sd(const mr_train_degrader *d, double *sd)
{
    return mr_noise_sd_estimate(sd, d->ks, d->mask, d->coils, d->m, d->m);
}

mr_status mr_train_degrader_aux(const mr_train_degrader *d, float *aux, const float *deg)
{
    if (d->u.aux_unsampled) return mr_unsampled_part(aux, deg, d->mask, 1, d->m, d->m);
    memcpy(aux, d->zf, d->m * d->m * sizeof *aux);
    return MR_OK;
}

mr_status mr_train_normalise_pair(float *ref, float *deg, size_t n, double percentile)
{
    return mr_train_normalise_set(ref, deg, NULL, n, percentile);
}

mr_status mr_train_normalise_set(float *ref, float *deg, float *aux, size_t n, double percentile)
{
    double level;
    mr_status st = mr_train_percentile(&level, deg, n, percentile);
    if (st != MR_OK) return st;
    if (!(level > 0)) {
        level = 0;
        for (size_t i = 0; i < n; i++)
            if (deg[i] > level) level = deg[i];
    }
    if (!(level > 0)) level = 1;
    float inv = (float)(1.0 / level);
    for (size_t i = 0; i < n; i++) ref[i] *= inv, deg[i] *= inv;
    for (size_t i = 0; aux && i < n; i++) aux[i] *= inv;
    return MR_OK;
}

void mr_train_bank_free(mr_train_bank *b)
{
    free(b->ref), free(b->deg), free(b->aux), free(b->kind), free(b->cols);
    memset(b, 0, sizeof *b);
}

mr_status mr_train_bank_build(mr_train_bank *b, const mr_train_volume *vols, int nvols,
                              const mr_train_us *u, const mr_train_sampler *s, double percentile,
                              uint64_t seed, FILE *log)
{
    memset(b, 0, sizeof *b);
    size_t m = (size_t)u->matrix, hw = m * m, big = 0;
    for (int v = 0; v < nvols; v++) {
        size_t S = vols[v].vol->dims[0], H = vols[v].vol->dims[1], W = vols[v].vol->dims[2];
        size_t a = H * W, c = S * W, d = S * H, mx = a > c ? a : c;
        if (d > mx) mx = d;
        if (mx > big) big = mx;
    }
    mr_train_degrader *dg = NULL;
    mr_status st = mr_train_degrader_create(&dg, u);
    if (st != MR_OK) return st;
    float *scratch = malloc(big * sizeof *scratch), *plane = malloc(hw * sizeof *plane),
          *img = malloc(hw * sizeof *img);
    b->n = u->bank_slices, b->m = (int)m;
    b->ref = malloc((size_t)b->n * hw * sizeof *b->ref);
    b->deg = malloc((size_t)b->n * hw * sizeof *b->deg);
    b->aux = malloc((size_t)b->n * hw * sizeof *b->aux);
    b->kind = calloc((size_t)b->n, sizeof *b->kind);
    b->cols = malloc((size_t)b->n * m * sizeof *b->cols);
    if (!scratch || !plane || !img || !b->ref || !b->deg || !b->aux || !b->kind || !b->cols) {
        st = mr_error_set(MR_ERR_NOMEM, "artefact bank: out of memory (%d slices of %zu x %zu)",
                          b->n, m, m);
        goto done;
    }
    double t_last = 0;
    for (int i = 0; i < b->n && st == MR_OK; i++) {
        mr_rng rng;
        mr_rng_seed(&rng, seed * 0xD1B54A32D192ED03ull + (uint64_t)i * 0x9E3779B97F4A7C15ull + 5);
        double mean = 0;
        mr_train_degradation g;
        int ai = 0;
        float *ref = b->ref + (size_t)i * hw, *deg = b->deg + (size_t)i * hw;
        /* a plane the method cannot reconstruct (ESPIRiT finds no coil maps in too small a
         * centre of a nearly empty plane) is replaced by another draw, up to 8 times */
        for (int tries = 0;; tries++) {
            for (int attempt = 0; attempt < 8; attempt++) {
                mean = cut_plane(plane, m, vols, nvols, scratch, &rng);
                if (mean >= 0.5 * s->min_mean) break;
            }
            mr_train_augment(img, plane, m, s, &rng);
            ai = (int)mr_rng_below(&rng, (uint64_t)u->n_accel);
            g.accel = u->accel[ai], g.center_fraction = u->cf[ai];
            g.mask = u->masks[mr_rng_below(&rng, (uint64_t)u->n_masks)];
            g.method = (int)mr_rng_below(&rng, (uint64_t)u->n_methods);
            g.noise = mr_train_log_uniform(&rng, u->noise_min, u->noise_max);
            g.seed = mr_rng_next(&rng);
            st = mr_train_degrade(dg, ref, deg, img, &g);
            if (st != MR_ERR_INPUT || tries >= 8) break;
            if (log) fprintf(log, "mrpipe train: artefact bank plane %d drawn again (%s)\n", i,
                             mr_error_message());
            mr_error_clear();
        }
        if (st != MR_OK) break;
        float *aux = b->aux + (size_t)i * hw;
        if ((st = mr_train_degrader_aux(dg, aux, deg)) != MR_OK) break;
        memcpy(b->cols + (size_t)i * m, mr_train_degrader_mask(dg), m * sizeof *b->cols); /* row 0 */
        st = mr_train_normalise_set(ref, deg, aux, hw, percentile);
        b->kind[i] = (unsigned char)(g.method * 16 + ai);
        if (log && (i + 1 == b->n || (i + 1) % 50 == 0)) {
            (void)t_last;
            fprintf(log, "mrpipe train: artefact bank %d/%d slices\n", i + 1, b->n);
        }
    }
done:
    free(scratch), free(plane), free(img);
    mr_train_degrader_destroy(dg);
    if (st != MR_OK) mr_train_bank_free(b);
    return st;
}

void mr_train_bank_sample(float *clean, float *deg, float *aux, const mr_train_bank *b,
                          const mr_train_sampler *s, mr_rng *rng)
{
    int P = s->patch;
    size_t m = (size_t)b->m, hw = m * m;
    size_t idx = 0, y = 0, x = 0;
    for (int attempt = 0; attempt < 8; attempt++) {
        idx = mr_rng_below(rng, (uint64_t)b->n);
        y = mr_rng_below(rng, m - (size_t)P + 1), x = mr_rng_below(rng, m - (size_t)P + 1);
        const float *r = b->ref + idx * hw;
        double mean = 0;
        for (int i = 0; i < P; i++)
            for (int j = 0; j < P; j++) mean += r[(y + i) * m + x + j];
        mean /= (double)P * P;
        if (mean >= s->min_mean || mr_rng_uniform(rng) < 0.1) break;
    }
    int tr = (int)mr_rng_below(rng, 2), fy = (int)mr_rng_below(rng, 2),
        fx = (int)mr_rng_below(rng, 2);
    const float *r = b->ref + idx * hw, *d = b->deg + idx * hw;
    for (int i = 0; i < P; i++)
        for (int j = 0; j < P; j++) {
            int si = tr ? j : i, sj = tr ? i : j;
            if (fy) si = P - 1 - si;
            if (fx) sj = P - 1 - sj;
            size_t o = (y + (size_t)si) * m + x + (size_t)sj;
            clean[i * P + j] = r[o];
            deg[i * P + j] = d[o];
            if (aux) aux[i * P + j] = b->aux[idx * hw + o];
        }
}
