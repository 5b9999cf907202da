/*
 * train_data.c: the denoiser's data: robust percentile normalisation, Rician noise (Gudbjartsson &
 * Patz 1995: complex Gaussian noise in the image, then the magnitude), a light [1 2 1]/4 blur for
 * quantised volumes, and random 2-D training patches from the three orientations of clean volumes
 * with dihedral augmentation and gamma/scale intensity remapping (../shared/DATA.md).
 */
#include "mr_train.h"
#include "mr_nn.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* k-th smallest of x[0..n) (Wirth's selection: Hoare partitions around x[k]); the values above
 * index k end up >= x[k]. */
static float select_kth(float *x, size_t n, size_t k)
{
    long l = 0, m = (long)n - 1, kk = (long)k;
    while (l < m) {
        float pivot = x[kk];
        long i = l, j = m;
        do {
            while (x[i] < pivot) i++;
            while (pivot < x[j]) j--;
            if (i <= j) {
                float t = x[i];
                x[i] = x[j];
                x[j] = t;
                i++;
                j--;
            }
        } while (i <= j);
        if (j < kk) l = i;
        if (kk < i) m = j;
    }
    return x[kk];
}

mr_status mr_train_percentile(double *out, const float *x, size_t n, double p)
{
    if (n == 0) return mr_error_set(MR_ERR_INPUT, "percentile of an empty image");
    float *c = malloc(n * sizeof *c);
    if (!c) return mr_error_set(MR_ERR_NOMEM, "percentile: out of memory (%zu values)", n);
    memcpy(c, x, n * sizeof *c);
    double pos = p / 100.0 * (double)(n - 1);
    size_t k = (size_t)floor(pos);
    double frac = pos - (double)k;
    double a = select_kth(c, n, k), b = a;
    if (k + 1 < n && frac > 0) {
        /* after selection every value above index k is >= x[k]: the next order statistic is
         * their minimum */
        float m = c[k + 1];
        for (size_t i = k + 2; i < n; i++)
            if (c[i] < m) m = c[i];
        b = m;
    }
    free(c);
    *out = a + frac * (b - a);
    return MR_OK;
}

size_t mr_train_first_nonfinite(const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return i;
    return n;
}

void mr_train_rician(float *x, size_t n, double sigma, mr_rng *rng)
{
    for (size_t i = 0; i < n; i++) {
        double re = x[i] + sigma * mr_rng_normal(rng), im = sigma * mr_rng_normal(rng);
        x[i] = (float)sqrt(re * re + im * im);
    }
}

/* [1 2 1]/4 along one axis of a (S, H, W) volume: stride between neighbours, len along the axis. */
static void blur_axis(float *v, size_t count, size_t stride, size_t len, float *line)
{
    /* count lines; line start for index t: (t / stride) * stride * len + t % stride */
    for (size_t t = 0; t < count; t++) {
        float *p = v + (t / stride) * stride * len + t % stride;
        for (size_t i = 0; i < len; i++) line[i] = p[i * stride];
        for (size_t i = 0; i < len; i++) {
            float l = line[i > 0 ? i - 1 : i], r = line[i + 1 < len ? i + 1 : i];
            p[i * stride] = 0.25f * l + 0.5f * line[i] + 0.25f * r;
        }
    }
}

mr_status mr_train_blur3(mr_array *vol)
{
    size_t s = vol->ndim == 3 ? vol->dims[0] : 1, h = vol->dims[vol->ndim - 2],
           w = vol->dims[vol->ndim - 1];
    size_t mx = s > h ? s : h;
    if (w > mx) mx = w;
    float *line = malloc(mx * sizeof *line), *v = mr_array_f32(vol);
    if (!line) return mr_error_set(MR_ERR_NOMEM, "blur: out of memory");
    blur_axis(v, s * h, 1, w, line);            /* x: lines of W contiguous */
    for (size_t k = 0; k < s; k++)               /* y: within each slice */
        blur_axis(v + k * h * w, w, w, h, line);
    if (s > 2) blur_axis(v, h * w, h * w, s, line); /* z */
    free(line);
    return MR_OK;
}

int mr_train_is_integer_valued(const mr_array *vol)
{
    const float *v = mr_array_f32(vol);
    size_t n = mr_array_numel(vol);
    for (size_t i = 0; i < n; i++)
        if (v[i] != floorf(v[i])) return 0;
    return 1;
}

double mr_train_k_of_z(const mr_nifti_meta *meta, double z_mm)
{
    /* axis-aligned affine: z = A[2][2] k + A[2][3] */
    double a = meta->affine[2][2], b = meta->affine[2][3];
    if (a == 0) return 0;
    return (z_mm - b) / a;
}

double mr_train_log_uniform(mr_rng *rng, double lo, double hi)
{
    if (hi <= lo) return lo;
    return exp(log(lo) + (log(hi) - log(lo)) * mr_rng_uniform(rng));
}

void mr_train_augment(float *dst, const float *src, size_t m, const mr_train_sampler *s,
                      mr_rng *rng)
{
    /* dihedral transform: transpose?, flip rows?, flip columns? (8 elements); then s x^g */
    int tr = (int)mr_rng_below(rng, 2), fy = (int)mr_rng_below(rng, 2),
        fx = (int)mr_rng_below(rng, 2);
    double g = mr_train_log_uniform(rng, s->gamma_min, s->gamma_max);
    double sc = s->scale_min + (s->scale_max - s->scale_min) * mr_rng_uniform(rng);
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < m; j++) {
            size_t si = tr ? j : i, sj = tr ? i : j;
            if (fy) si = m - 1 - si;
            if (fx) sj = m - 1 - sj;
            double v = src[si * m + sj];
            dst[i * m + j] = (float)(sc * pow(v > 0 ? v : 0, g));
        }
}

/* Cut one (P, P) clean patch. */
static void cut_patch(float *dst, const mr_train_volume *vols, int nvols, int P, mr_rng *rng)
{
    /* pick a block weighted by its voxel count */
    double total = 0;
    for (int v = 0; v < nvols; v++)
        for (int b = 0; b < vols[v].nblocks; b++)
            total += (double)(vols[v].k1[b] - vols[v].k0[b]) * (double)vols[v].vol->dims[1] *
                     (double)vols[v].vol->dims[2];
    double r = mr_rng_uniform(rng) * total;
    int vi = 0, bi = 0;
    for (int v = 0; v < nvols; v++)
        for (int b = 0; b < vols[v].nblocks; b++) {
            double sz = (double)(vols[v].k1[b] - vols[v].k0[b]) * (double)vols[v].vol->dims[1] *
                        (double)vols[v].vol->dims[2];
            vi = v, bi = b;
            if (r < sz) goto found;
            r -= sz;
        }
found:;
    const mr_train_volume *tv = &vols[vi];
    size_t H = tv->vol->dims[1], W = tv->vol->dims[2];
    int k0 = tv->k0[bi], k1 = tv->k1[bi];
    const float *d = mr_array_f32(tv->vol);
    int orient = (int)mr_rng_below(rng, 3);
    if (k1 - k0 < P) orient = 0; /* a block thinner than a patch: axial only */
    if (orient == 0) {
        size_t k = (size_t)k0 + mr_rng_below(rng, (uint64_t)(k1 - k0));
        size_t y = mr_rng_below(rng, H - P + 1), x = mr_rng_below(rng, W - P + 1);
        for (int i = 0; i < P; i++)
            memcpy(dst + (size_t)i * P, d + (k * H + y + i) * W + x, (size_t)P * sizeof *dst);
    } else {
        size_t k = (size_t)k0 + mr_rng_below(rng, (uint64_t)(k1 - k0 - P + 1));
        if (orient == 1) { /* coronal: rows along z, columns along x, fixed y */
            size_t y = mr_rng_below(rng, H), x = mr_rng_below(rng, W - P + 1);
            for (int i = 0; i < P; i++)
                for (int j = 0; j < P; j++) dst[i * P + j] = d[((k + i) * H + y) * W + x + j];
        } else { /* sagittal: rows along z, columns along y, fixed x */
            size_t x = mr_rng_below(rng, W), y = mr_rng_below(rng, H - P + 1);
            for (int i = 0; i < P; i++)
                for (int j = 0; j < P; j++) dst[i * P + j] = d[((k + i) * H + y + j) * W + x];
        }
    }
}

void mr_train_sample(float *clean, float *noisy, const mr_train_volume *vols, int nvols,
                     const mr_train_sampler *s, mr_rng *rng)
{
    int P = s->patch;
    size_t n = (size_t)P * P;
    for (int attempt = 0; attempt < 8; attempt++) {
        cut_patch(noisy, vols, nvols, P, rng); /* noisy is scratch here */
        double mean = 0;
        for (size_t i = 0; i < n; i++) mean += noisy[i];
        mean /= (double)n;
        /* mostly tissue, but keep some background (its Rayleigh noise must be learned too) */
        if (mean >= s->min_mean || mr_rng_uniform(rng) < 0.1) break;
    }
    mr_train_augment(clean, noisy, (size_t)P, s, rng);
    double sigma = mr_train_log_uniform(rng, s->sigma_min, s->sigma_max);
    memcpy(noisy, clean, n * sizeof *noisy);
    mr_train_rician(noisy, n, sigma, rng);
}

mr_status mr_train_denoise_volume(float *out, const float *in, size_t S, size_t H, size_t W,
                                  const void *model, const char *what)
{
    const mr_nn_model *m = model;
    size_t n = S * H * W, bad = mr_train_first_nonfinite(in, n);
    if (bad < n)
        return mr_error_set(MR_ERR_INPUT,
                            "%s: pixel (slice %zu, row %zu, column %zu) is %s: expected finite "
                            "values",
                            what, bad / (H * W), bad / W % H, bad % W,
                            isnan(in[bad]) ? "NaN" : "infinite");
    if (m->arch.in_channels != 1 || strcmp(m->meta.input_type, "magnitude"))
        return mr_error_set(MR_ERR_INPUT,
                            "model: input_type '%s' with %d channel(s): expected a magnitude "
                            "model (1 channel)",
                            m->meta.input_type, m->arch.in_channels);
    if (m->arch.out_channels != 1) /* the plan writes out_channels maps into one slice's buffer */
        return mr_error_set(MR_ERR_INPUT,
                            "model: out_channels %d: expected a denoiser with 1 output channel",
                            m->arch.out_channels);
    if (strcmp(m->meta.norm_method, "percentile") || m->meta.n_norm_params < 1 ||
        !(m->meta.norm_params[0] > 0 && m->meta.norm_params[0] <= 100))
        return mr_error_set(MR_ERR_INPUT,
                            "model: norm_method '%s' (%d parameter(s)): expected 'percentile' "
                            "with a level in (0, 100]",
                            m->meta.norm_method, m->meta.n_norm_params);
    double level = 0;
    mr_status st = mr_train_percentile(&level, in, n, m->meta.norm_params[0]);
    if (st != MR_OK) return st;
    if (!(level > 0)) { /* mostly empty image: fall back to the maximum */
        level = 0;
        for (size_t i = 0; i < n; i++)
            if (in[i] > level) level = in[i];
    }
    if (!(level > 0)) { /* all zero (or negative): nothing to denoise */
        if (out != in) memmove(out, in, n * sizeof *out);
        return MR_OK;
    }
    mr_nn_plan *plan = NULL;
    st = mr_nn_plan_create(&plan, m, (int)H, (int)W);
    if (st != MR_OK) return mr_error_prefix(st, "%s: slices %zu x %zu: ", what, H, W);
    float *buf = malloc(H * W * sizeof *buf);
    if (!buf) {
        mr_nn_plan_destroy(plan);
        return mr_error_set(MR_ERR_NOMEM, "denoise: out of memory");
    }
    float inv = (float)(1.0 / level), lv = (float)level;
    for (size_t s = 0; s < S && st == MR_OK; s++) {
        const float *src = in + s * H * W;
        for (size_t i = 0; i < H * W; i++) buf[i] = src[i] * inv;
        st = mr_nn_plan_run(plan, buf, buf);
        if (st != MR_OK) break;
        float *dst = out + s * H * W;
        for (size_t i = 0; i < H * W; i++) dst[i] = buf[i] * lv;
    }
    free(buf);
    mr_nn_plan_destroy(plan);
    return st;
}
