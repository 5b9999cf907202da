/*
 * uq_model.c: uncertainty for images a CNN made or a reconstruction without k-space replicas
 * (docs/uncertainty.md): the calibrated variance network of a model ("model"), noise re-injected at
 * the estimated level and the model re-run ("replica"), or both (variances added). Shared by
 * `mrpipe denoise`, `mrpipe recon --uncertainty model` and the pipeline's denoise stage.
 */
#include "mr_nn.h"
#include "mr_pipeline.h"
#include "mr_train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

mr_status mr_uq_kind_parse(mr_uq_kind *out, const char *s, const char *what)
{
    static const char *const names[] = {"none", "replica", "model", "both"};
    for (int i = 0; i < 4; i++)
        if (!strcmp(s, names[i])) {
            *out = (mr_uq_kind)i;
            return MR_OK;
        }
    return mr_error_set(MR_ERR_USAGE, "%s: expected none, replica, model or both, found '%s'", what,
                        s);
}

mr_status mr_uq_kind_parse_boot(mr_uq_kind *out, int *boot, const char *s, const char *what)
{
    *boot = !strcmp(s, "bootstrap");
    if (!*boot) return mr_uq_kind_parse(out, s, what);
    *out = MR_UQ_MODEL;
    return MR_OK;
}

const char *mr_uq_kind_name(mr_uq_kind k)
{
    static const char *const names[] = {"none", "replica", "model", "both"};
    return k >= MR_UQ_NONE && k <= MR_UQ_BOTH ? names[k] : "?";
}

mr_status mr_sigma_path_for(char *buf, size_t n, const char *model_path)
{
    size_t len = strlen(model_path);
    const char *ext = len > 3 && !strcmp(model_path + len - 3, ".h5") ? model_path + len - 3 : NULL;
    int k = ext ? snprintf(buf, n, "%.*s_sigma.h5", (int)(ext - model_path), model_path)
                : snprintf(buf, n, "%s_sigma.h5", model_path);
    if (k < 0 || (size_t)k >= n) return mr_error_set(MR_ERR_USAGE, "%s: path too long", model_path);
    return MR_OK;
}

mr_status mr_sigma_bootstrap_path_for(char *buf, size_t n, const char *model_path)
{
    char b[4096];
    mr_status st = mr_sigma_path_for(b, sizeof b, model_path);
    if (st != MR_OK) return st;
    int k = snprintf(buf, n, "%.*s_bootstrap.h5", (int)strlen(b) - 3, b); /* b ends in .h5 */
    if (k < 0 || (size_t)k >= n) return mr_error_set(MR_ERR_USAGE, "%s: path too long", model_path);
    return MR_OK;
}

int mr_sigma_has_boot_sd(const void *sigma_model)
{
    const mr_nn_meta *M = &((const mr_nn_model *)sigma_model)->meta;
    for (int j = 0; j < M->n_boot_sd; j++)
        if (M->boot_sd[j][0] > 0) return 1;
    return 0;
}

mr_status mr_sigma_load(void **out, const char *path, const char *for_what)
{
    mr_nn_model *m = NULL;
    *out = NULL;
    if (!mr_path_is_file(path))
        return mr_error_set(MR_ERR_INPUT,
                            "%s: no calibrated uncertainty model for %s (expected this file: train "
                            "it with `mrpipe train --config configs/train_sigma_*.yaml`, give "
                            "--uncertainty-model, or use --uncertainty replica)",
                            path, for_what);
    mr_status st = mr_nn_model_load(&m, path, NULL);
    if (st != MR_OK) return st;
    if ((m->arch.in_channels != 2 && m->arch.in_channels != 3) || m->arch.out_channels != 1) {
        int cin = m->arch.in_channels, cout = m->arch.out_channels;
        mr_nn_model_destroy(m);
        return mr_error_set(MR_ERR_INPUT, "%s: a model with %d input and %d output channels: "
                            "expected a variance network (2 -> 1) made by `mrpipe train` with "
                            "variance_head", path, cin, cout);
    }
    if (!(m->meta.calibration_scale > 0) || !isfinite(m->meta.calibration_scale)) {
        mr_nn_model_destroy(m);
        return mr_error_set(MR_ERR_INPUT, "%s: attribute calibration_scale missing or not positive: "
                            "the variance network was never calibrated (expected a split-conformal "
                            "scale > 0)", path);
    }
    *out = m;
    return MR_OK;
}

void mr_sigma_free(void *sigma)
{
    mr_nn_model_destroy(sigma);
}

const char *mr_sigma_base(const void *sigma)
{
    return ((const mr_nn_model *)sigma)->meta.base_model;
}

double mr_sigma_scale(const void *sigma)
{
    return ((const mr_nn_model *)sigma)->meta.calibration_scale;
}

mr_status mr_sigma_input_noise(double *noise, const float *x, size_t S, size_t H, size_t W,
                               const void *sigma_model)
{
    const mr_nn_model *m = sigma_model;
    double level = 0, s = 0;
    mr_status st = mr_train_percentile(&level, x, S * H * W,
                                       m->meta.n_norm_params ? m->meta.norm_params[0] : 99.5);
    if (st == MR_OK) st = mr_noise_sigma_mad(&s, x, S, H, W);
    *noise = st == MR_OK && level > 0 ? s / level : 0;
    return st;
}

/* Piecewise linear in log(x) through (keys[i], scales[i]) (keys ascending, n >= 2), constant
 * beyond the first and last key. */
static double interp_log(const double *keys, const double *scales, int n, double x)
{
    if (x <= keys[0]) return scales[0];
    if (x >= keys[n - 1]) return scales[n - 1];
    int i = 0;
    while (x > keys[i + 1]) i++;
    double f = (log(x) - log(keys[i])) / (log(keys[i + 1]) - log(keys[i]));
    return scales[i] + f * (scales[i + 1] - scales[i]);
}

double mr_sigma_scale_accel(const void *sigma_model, double accel)
{
    const mr_nn_model *m = sigma_model;
    if (m->meta.n_calibration_accel < 2 || !(accel >= 1)) return m->meta.calibration_scale;
    return interp_log(m->meta.calibration_accel, m->meta.calibration_accel_scales,
                      m->meta.n_calibration_accel, accel);
}

double mr_sigma_scale_method(const void *sigma_model, const char *method, double accel)
{
    const mr_nn_model *m = sigma_model;
    for (int i = 0; method && *method && accel >= 1 && m->meta.n_calibration_accel >= 2 &&
                    i < m->meta.n_calibration_methods; i++)
        if (!strcmp(m->meta.calibration_methods[i], method))
            return interp_log(m->meta.calibration_accel, m->meta.calibration_method_scales[i],
                              m->meta.n_calibration_accel, accel);
    return mr_sigma_scale_accel(sigma_model, accel);
}

/* mr_sigma_scale_full with the mask kind by name (NULL: unknown). */
static double scale_kind(const mr_nn_model *m, const char *method, const char *kind, double accel)
{
    double s = mr_sigma_scale_method(m, method, accel);
    if (!kind || !(accel >= 1) || m->meta.n_calibration_accel < 2) return s;
    for (int i = 0; i < m->meta.n_calibration_masks; i++)
        if (!strcmp(m->meta.calibration_masks[i], kind))
            return s * interp_log(m->meta.calibration_accel, m->meta.calibration_mask_scales[i],
                                  m->meta.n_calibration_accel, accel) /
                   mr_sigma_scale_accel(m, accel);
    return s;
}

/* The calibration's name for the kind of a 1-D column mask (NULL: no mask or cannot tell). */
static const char *mask_kind_name(const float *mask, size_t mask_len)
{
    int eq = mask && mask_len ? mr_mask_is_equispaced(mask, mask_len) : -1;
    return eq < 0 ? NULL : eq ? "equispaced" : "random";
}

double mr_sigma_scale_full(const void *sigma_model, const char *method, const float *mask,
                           size_t mask_len, double accel)
{
    return scale_kind(sigma_model, method, mask_kind_name(mask, mask_len), accel);
}

/* b (x - c) of a (centre, slope) pair per (mask kind i, calibration acceleration), both
 * interpolated linear in log R (constant outside) */
static double kind_term(const mr_nn_meta *M, const double (*pr)[4][2], int i, double accel,
                        double x)
{
    int n = M->n_calibration_accel;
    double c[4], b[4];
    for (int j = 0; j < n; j++) c[j] = pr[i][j][0], b[j] = pr[i][j][1];
    return interp_log(M->calibration_accel, b, n, accel) *
           (x - interp_log(M->calibration_accel, c, n, accel));
}

static int kind_index(const mr_nn_meta *M, const char *kind, double accel)
{
    if (!kind || !(accel >= 1) || M->n_calibration_accel < 2) return -1;
    for (int i = 0; i < M->n_calibration_masks; i++)
        if (!strcmp(M->calibration_masks[i], kind)) return i;
    return -1;
}

static double clamp_factor(double e)
{
    double f = exp(e);
    return f < MR_DIFFICULTY_MIN ? MR_DIFFICULTY_MIN : f > MR_DIFFICULTY_MAX ? MR_DIFFICULTY_MAX : f;
}

/* mr_sigma_difficulty_factor with the mask kind by name (NULL: unknown), d the difficulty (<= 0:
 * unknown) and lg the log of the ghost phase (NAN: unknown). */
static double difficulty_kind(const mr_nn_meta *M, const char *kind, double accel, double d,
                              double lg)
{
    int i = kind_index(M, kind, accel);
    if ((!M->has_difficulty && !M->has_ghost) || i < 0) return 1;
    double e = 0;
    if (M->has_difficulty && d > 0) e += kind_term(M, M->difficulty, i, accel, log(d));
    if (M->has_ghost && isfinite(lg)) e += kind_term(M, M->ghost, i, accel, lg);
    return clamp_factor(e);
}

static int method_index(const mr_nn_meta *M, const char *method);

/* The line-fill factor of a slice of log line fill lf (NAN: unknown) of an image made by `method`
 * (NULL: unknown): the method's own slopes when the network has them, else the pooled ones */
static double fill_kind(const mr_nn_meta *M, const char *method, const char *kind, double accel,
                        double lf)
{
    int i = kind_index(M, kind, accel), j = method_index(M, method);
    if (i < 0 || !isfinite(lf)) return 1;
    if (M->has_fill_m && j >= 0) return clamp_factor(kind_term(M, M->fill_m[j], i, accel, lf));
    return M->has_fill ? clamp_factor(kind_term(M, M->fill, i, accel, lf)) : 1;
}

double mr_sigma_line_fill(const float *y, size_t H, size_t W)
{
    float mx = 0;
    for (size_t i = 0; i < H * W; i++)
        if (y[i] > mx) mx = y[i];
    if (!(mx > 0)) return 0;
    double s1 = 0, s2 = 0;
    for (size_t h = 0; h < H; h++) {
        size_t c = 0;
        for (size_t w = 0; w < W; w++) c += y[h * W + w] > 0.05f * mx;
        s1 += (double)c, s2 += (double)c * (double)c;
    }
    return s1 > 0 ? s2 / (s1 * (double)W) : 0;
}

/* log of a slice's line fill (NAN: an empty slice) */
static double log_fill(const float *y, size_t H, size_t W)
{
    double l = H && W ? mr_sigma_line_fill(y, H, W) : 0;
    return l > 0 ? log(l) : NAN;
}

double mr_sigma_fill_factor(const void *sigma_model, const char *method, const float *mask,
                            size_t mask_len, double accel, const float *y, size_t H, size_t W)
{
    const mr_nn_meta *M = &((const mr_nn_model *)sigma_model)->meta;
    return M->has_fill || M->has_fill_m
               ? fill_kind(M, method, mask_kind_name(mask, mask_len), accel, log_fill(y, H, W))
               : 1;
}

/* log of the mask's ghost phase (NAN: no mask or none to tell) */
static double log_ghost(const float *mask, size_t mask_len)
{
    double rho;
    if (!mask || mask_len < 2 || mr_mask_ghost_phase(&rho, mask, mask_len) != MR_OK) {
        mr_error_clear();
        return NAN;
    }
    return log(rho > 1e-3 ? rho : 1e-3);
}

double mr_sigma_difficulty_factor(const void *sigma_model, const float *mask, size_t mask_len,
                                  double accel, double difficulty)
{
    const mr_nn_meta *M = &((const mr_nn_model *)sigma_model)->meta;
    return difficulty_kind(M, mask_kind_name(mask, mask_len), accel, difficulty,
                           M->has_ghost ? log_ghost(mask, mask_len) : NAN);
}

double mr_sigma_noise_factor(const void *sigma_model, double rel_noise)
{
    const mr_nn_model *m = sigma_model;
    if (m->meta.n_noise_factors < 1 || !(rel_noise > 0)) return 1;
    return interp_log(m->meta.noise_factor_levels, m->meta.noise_factors, m->meta.n_noise_factors,
                      rel_noise);
}

mr_status mr_sigma_rel_noise_level(double *level, const float *y, size_t n)
{
    mr_status st = mr_train_percentile(level, y, n, 99.5);
    if (st == MR_OK && !(*level > 0))
        st = mr_error_set(MR_ERR_INPUT, "the image is empty: no noise level relative to it");
    return st;
}

mr_status mr_sigma_apply_noise_factors(float *sd, const float *y, size_t S, size_t hw,
                                       const void *sigma_model, const double *noise_sd)
{
    const mr_nn_model *m = sigma_model;
    if (m->meta.n_noise_factors < 1 || !noise_sd) return MR_OK;
    double level;
    mr_status st = mr_sigma_rel_noise_level(&level, y, S * hw);
    if (st != MR_OK) return st;
    for (size_t s = 0; s < S; s++) {
        if (!(noise_sd[s] > 0)) continue; /* no estimate: left alone */
        float f = (float)mr_sigma_noise_factor(sigma_model, noise_sd[s] / level);
        for (size_t i = 0; i < hw; i++) sd[s * hw + i] *= f;
    }
    return MR_OK;
}

mr_status mr_sigma_apply_calibrate_factors(float *sd, const float *y, size_t S, size_t hw,
                                           size_t W, const void *sigma_model, const char *method,
                                           const double *noise_sd, const float *mask,
                                           size_t mask_len, double accel, double difficulty,
                                           double *df_out)
{
    mr_status st = mr_sigma_apply_noise_factors(sd, y, S, hw, sigma_model, noise_sd);
    double df = mr_sigma_difficulty_factor(sigma_model, mask, mask_len, accel, difficulty);
    for (size_t i = 0; st == MR_OK && df != 1 && i < S * hw; i++) sd[i] *= (float)df;
    if (df_out) *df_out = df;
    /* each slice's line-fill factor */
    for (size_t s = 0; st == MR_OK && W && hw % W == 0 && s < S; s++) {
        float f = (float)mr_sigma_fill_factor(sigma_model, method, mask, mask_len, accel,
                                              y + s * hw, hw / W, W);
        for (size_t i = 0; f != 1 && i < hw; i++) sd[s * hw + i] *= f;
    }
    return st;
}

#define INPUT_SD_LOG_MAX 6.907755278982137 /* log 1000 */

/* log(input SD / SD) kept within +-log 1000 */
static double clamp_log_ratio(double t)
{
    return t < -INPUT_SD_LOG_MAX ? -INPUT_SD_LOG_MAX : t > INPUT_SD_LOG_MAX ? INPUT_SD_LOG_MAX : t;
}

double mr_sigma_log_sd_ratio(double v, double sd)
{
    return clamp_log_ratio(v > 0 && sd > 0 ? log(v / sd) : v > 0 ? INPUT_SD_LOG_MAX : -INPUT_SD_LOG_MAX);
}

static int method_index(const mr_nn_meta *M, const char *method)
{
    for (int i = 0; method && i < M->n_calibration_methods; i++)
        if (!strcmp(M->calibration_methods[i], method)) return i;
    return -1;
}

double mr_sigma_input_sd_weight(const void *sigma_model, const char *method)
{
    const mr_nn_meta *M = &((const mr_nn_model *)sigma_model)->meta;
    int j = method_index(M, method);
    return j >= 0 && j < M->n_input_sd ? M->input_sd[j][0] : 0;
}

double mr_sigma_boot_sd_weight(const void *sigma_model, const char *method)
{
    const mr_nn_meta *M = &((const mr_nn_model *)sigma_model)->meta;
    int j = method_index(M, method);
    return j >= 0 && j < M->n_boot_sd ? M->boot_sd[j][0] : 0;
}

/* sd = sd k (v scale / sd)^w, the log ratio clamped (mr_sigma_log_sd_ratio) */
static void combine_sd(float *sd, const float *v, size_t n, const double wk[2], double scale)
{
    if (!(wk[0] > 0) || !(scale > 0)) return;
    for (size_t i = 0; i < n; i++)
        sd[i] = (float)(sd[i] * wk[1] * exp(wk[0] * mr_sigma_log_sd_ratio((double)v[i] * scale, sd[i])));
}

void mr_sigma_apply_input_sd(float *sd, const float *v, size_t n, const void *sigma_model,
                             const char *method, double scale)
{
    const mr_nn_meta *M = &((const mr_nn_model *)sigma_model)->meta;
    int j = method_index(M, method);
    if (j >= 0 && j < M->n_input_sd) combine_sd(sd, v, n, M->input_sd[j], scale);
}

void mr_sigma_apply_boot_sd(float *sd, const float *b, size_t n, const void *sigma_model,
                            const char *method, double scale)
{
    const mr_nn_meta *M = &((const mr_nn_model *)sigma_model)->meta;
    int j = method_index(M, method);
    if (j >= 0 && j < M->n_boot_sd) combine_sd(sd, b, n, M->boot_sd[j], scale);
}

mr_status mr_sigma_scale_for(double *scale, const void *sigma_model, const float *x, size_t S,
                             size_t H, size_t W, double *noise_out)
{
    const mr_nn_model *m = sigma_model;
    int n = m->meta.n_calibration_levels;
    *scale = m->meta.calibration_scale;
    if (noise_out) *noise_out = 0;
    if (n < 2) return MR_OK;
    double z;
    mr_status st = mr_sigma_input_noise(&z, x, S, H, W, m);
    if (st != MR_OK) return st;
    if (noise_out) *noise_out = z;
    if (z > 0) *scale = interp_log(m->meta.calibration_noise, m->meta.calibration_scales, n, z);
    return MR_OK;
}

const char *mr_sigma_calibration(const void *sigma)
{
    return ((const mr_nn_model *)sigma)->meta.calibration;
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

mr_status mr_noise_sigma_mad(double *sigma, const float *x, size_t S, size_t H, size_t W)
{
    /* Donoho & Johnstone (1994): sigma = median |HH| / 0.6745 over the finest diagonal Haar
     * detail (x00 - x01 - x10 + x11) / 2 of each 2 x 2 block (edges barely reach this band) */
    size_t hh = H / 2, hw2 = W / 2, n = S * hh * hw2;
    if (n == 0) return mr_error_set(MR_ERR_INPUT, "noise estimate: image smaller than 2 x 2");
    float *d = malloc(n * sizeof *d);
    if (!d) return mr_error_set(MR_ERR_NOMEM, "noise estimate: out of memory");
    size_t k = 0;
    for (size_t s = 0; s < S; s++)
        for (size_t y = 0; y < hh; y++)
            for (size_t c = 0; c < hw2; c++) {
                const float *p = x + (s * H + 2 * y) * W + 2 * c;
                d[k++] = fabsf(0.5f * (p[0] - p[1] - p[W] + p[W + 1]));
            }
    qsort(d, n, sizeof *d, cmp_float);
    *sigma = (n % 2 ? d[n / 2] : 0.5 * ((double)d[n / 2 - 1] + d[n / 2])) / 0.6744897501960817;
    free(d);
    return MR_OK;
}

int mr_sigma_wants_mask(const void *sigma)
{
    return sigma && ((const mr_nn_model *)sigma)->arch.in_channels == 3;
}

mr_status mr_sigma_volume_masked(float *sd, const float *x, const float *y, const float *boot,
                                 size_t S, size_t H, size_t W, const void *sigma, double scale,
                                 const float *mask, size_t mask_len, const char *what)
{
    float *g = NULL;
    mr_status st = MR_OK;
    if (mr_sigma_wants_mask(sigma)) {
        if (mask && mask_len >= W) {
            if (!(g = malloc(S * H * W * sizeof *g)))
                return mr_error_set(MR_ERR_NOMEM, "uncertainty: out of memory");
            st = mr_unsampled_part_cols(g, y, S, H, W, mask, mask_len);
        } else
            MR_WARN("%s: %s: the uncertainty model reads where aliasing lands from the sampling "
                    "mask, and none is known%s: its SD without it (less sharp about ghosts)", what,
                    mask ? "mask narrower than the image" : "no sampling mask",
                    mask ? "" : " (mrpipe's .h5 outputs carry it as 'mask')");
    }
    if (st == MR_OK) st = mr_sigma_volume(sd, x, y, g, boot, S, H, W, sigma, scale, what);
    free(g);
    return st;
}

mr_status mr_denoise_uq(float *y, float *sd, const float *x, size_t S, size_t H, size_t W,
                        const void *model, const void *sigma, mr_uq_kind kind, int replicas,
                        uint64_t seed, const mr_uq_input *info, double *noise_est,
                        const char *what)
{
    static const mr_uq_input none;
    if (!info) info = &none;
    size_t n = S * H * W;
    mr_status st;
    if (kind != MR_UQ_NONE && !sd)
        return mr_error_set(MR_ERR_USAGE, "uncertainty %s: no output buffer", mr_uq_kind_name(kind));
    if ((kind == MR_UQ_MODEL || kind == MR_UQ_BOTH) && !sigma)
        return mr_error_set(MR_ERR_USAGE, "uncertainty %s: no variance network given",
                            mr_uq_kind_name(kind));
    if ((kind == MR_UQ_REPLICA || kind == MR_UQ_BOTH) && replicas < 2)
        return mr_error_set(MR_ERR_USAGE, "--replicas: expected at least 2 (a standard deviation "
                            "needs two replicas), found %d", replicas);
    if (model) {
        if ((st = mr_train_denoise_volume(y, x, S, H, W, model, what)) != MR_OK) return st;
    } else if (y != x)
        memcpy(y, x, n * sizeof *y);
    if (kind == MR_UQ_NONE) return MR_OK;
    if (kind == MR_UQ_MODEL || kind == MR_UQ_BOTH) {
        double scale;
        const mr_nn_model *sm = sigma;
        if (info->accel >= 1 && sm->meta.n_calibration_accel > 1)
            scale = mr_sigma_scale_full(sigma, info->method, info->mask, info->mask_len,
                                        info->accel), st = MR_OK;
        else
            st = mr_sigma_scale_for(&scale, sigma, x, S, H, W, NULL);
        if (st != MR_OK ||
            (st = mr_sigma_volume_masked(sd, x, y, NULL, S, H, W, sigma, scale, info->mask,
                                         info->mask_len, what)) != MR_OK)
            return st;
        if (sm->meta.n_noise_term == 2) { /* the reference's noise */
            double *ns = malloc(S * sizeof *ns), mad = 0;
            if (!ns) return mr_error_set(MR_ERR_NOMEM, "uncertainty: out of memory");
            if (info->noise_sd) {
                memcpy(ns, info->noise_sd, S * sizeof *ns);
            } else {
                if ((st = mr_noise_sigma_mad(&mad, x, S, H, W)) != MR_OK) {
                    free(ns);
                    return st;
                }
                for (size_t s = 0; s < S; s++) ns[s] = mad;
                MR_WARN("%s: no k-space noise estimate with the input (mrpipe's .h5 "
                        "reconstructions carry it as mrpipe_noise_sd): the model SD's noise term "
                        "uses the image's MAD noise, %.4g%s", what, mad,
                        info->coils > 0 ? "" : ", and one coil (a Rician floor)");
            }
            mr_sigma_add_noise_term(sd, y, S, H * W, sigma, scale, ns,
                                    info->coils > 0 ? info->coils : 1, info->method);
            free(ns);
        }
        /* the input's own SD map (mrpipe calibrate's input-SD weights) */
        if (mr_sigma_input_sd_weight(sigma, info->method) > 0) {
            if (info->input_sd)
                mr_sigma_apply_input_sd(sd, info->input_sd, n, sigma, info->method, scale);
            else
                MR_WARN("%s: the variance network combines its SD with the SD map of its input "
                        "(%s; the `uncertainty` of `mrpipe recon --uncertainty model` .h5 "
                        "outputs) and the input carries none: the network's SD alone (calibrated "
                        "on average, ranks the errors less well)", what, info->method);
        }
        /* the model's own parametric bootstrap map (denoise --uncertainty bootstrap) */
        if (info->boot_map) {
            if (!model)
                return mr_error_set(MR_ERR_USAGE, "%s: the bootstrap needs the model", what);
            if ((st = mr_denoise_bootstrap_map(info->boot_map, y, S, H, W, model, info->method,
                                               info->mask, info->mask_len, what)) != MR_OK)
                return st;
            mr_sigma_apply_boot_sd(sd, info->boot_map, n, sigma, info->method, scale);
        }
        /* mrpipe calibrate's factors per relative noise level (the k-space noise only) and per
         * mask difficulty */
        if ((st = mr_sigma_apply_calibrate_factors(sd, y, S, H * W, W, sigma, info->method,
                                                   info->noise_sd,
                                                   info->mask, info->mask_len, info->accel,
                                                   info->mask_difficulty, NULL)) != MR_OK)
            return st;
        if (kind == MR_UQ_MODEL) return MR_OK;
    }
    /* replicas: x + fresh Rician noise at the estimated level, through the model; the per-pixel
     * sample SD (N - 1) of the outputs, Welford's running mean and M2 in double */
    double s_noise;
    if ((st = mr_noise_sigma_mad(&s_noise, x, S, H, W)) != MR_OK) return st;
    if (noise_est) *noise_est = s_noise;
    float *xr = malloc(n * sizeof *xr);
    double *mean = calloc(n, sizeof *mean), *m2 = calloc(n, sizeof *m2);
    if (!xr || !mean || !m2) {
        free(xr), free(mean), free(m2);
        return mr_error_set(MR_ERR_NOMEM, "uncertainty replica: out of memory");
    }
    st = MR_OK;
    for (int r = 0; r < replicas && st == MR_OK; r++) {
        mr_rng rng;
        mr_rng_seed(&rng, seed * 0x9E3779B97F4A7C15ull + (uint64_t)r + 1);
        memcpy(xr, x, n * sizeof *xr);
        mr_train_rician(xr, n, s_noise, &rng);
        if (model && (st = mr_train_denoise_volume(xr, xr, S, H, W, model, what)) != MR_OK) break;
        for (size_t i = 0; i < n; i++) {
            double d = xr[i] - mean[i];
            mean[i] += d / (r + 1);
            m2[i] += d * (xr[i] - mean[i]);
        }
    }
    if (st == MR_OK)
        for (size_t i = 0; i < n; i++) {
            double v = m2[i] / (replicas - 1);
            if (kind == MR_UQ_BOTH) v += (double)sd[i] * sd[i];
            sd[i] = (float)sqrt(v);
        }
    free(xr), free(mean), free(m2);
    return st;
}

/* ---------------------------------------------------------------- recalibration (mrpipe calibrate) */

/* The calibration acceleration nearest R (in log R). */
static int nearest_accel(const mr_nn_meta *M, double R)
{
    int best = 0;
    for (int i = 1; i < M->n_calibration_accel; i++)
        if (fabs(log(R / M->calibration_accel[i])) < fabs(log(R / M->calibration_accel[best])))
            best = i;
    return best;
}

/* The ratios of the images at acceleration index ai (-1: all) whose `field` (0 none, 1 method,
 * 2 mask kind) equals key, pooled into a new *out (*n of them; *out NULL when none). */
static int in_group(const mr_recal_image *im, const mr_nn_meta *M, int ai, int field,
                    const char *key)
{
    const char *v = field == 1 ? im->method : field == 2 ? im->mask_kind : NULL;
    return (ai < 0 || nearest_accel(M, im->accel) == ai) && (!field || (v && !strcmp(v, key)));
}

static mr_status pool_ratios(double **out, size_t *n, const mr_recal_image *im, size_t nim,
                             const double *div, const mr_nn_meta *M, int ai, int field,
                             const char *key)
{
    size_t total = 0;
    *out = NULL, *n = 0;
    for (size_t i = 0; i < nim; i++)
        if (in_group(im + i, M, ai, field, key)) total += im[i].n;
    if (!total) return MR_OK;
    if (!(*out = malloc(total * sizeof **out)))
        return mr_error_set(MR_ERR_NOMEM, "calibrate: out of memory");
    for (size_t i = 0; i < nim; i++)
        if (in_group(im + i, M, ai, field, key))
            for (size_t q = 0; q < im[i].n; q++) (*out)[(*n)++] = im[i].r[q] / div[i];
    return MR_OK;
}

/* The split-conformal factor of the pooled group (1 and *used 0 below min_pixels); cov its
 * coverage at 68 / 90 / 95 % with the factor. */
static mr_status group_factor(double *c, int *used, size_t *npix, double cov[3],
                              const mr_recal_image *im, size_t nim, const double *div,
                              const mr_nn_meta *M, int ai, int field, const char *key,
                              size_t min_pixels)
{
    double *r = NULL;
    size_t n = 0;
    mr_status st = pool_ratios(&r, &n, im, nim, div, M, ai, field, key);
    *c = 1, *used = 0, *npix = n;
    if (st == MR_OK && n >= min_pixels && n > 0) *c = mr_sigma_conformal_scale(r, n, cov), *used = 1;
    free(r);
    return st;
}

static int cmp_rel(const void *a, const void *b)
{
    double x = ((const double *)a)[0], y = ((const double *)b)[0];
    return x < y ? -1 : x > y;
}

/* The least-squares line y = my + b (x - mx) through n points with weights w (NULL: 1 each);
 * returns b, *mx and *my the weighted means, *sxx the weighted sum of (x - mx)^2 (b 0 when it is
 * 0: x does not vary). */
static double fit_line(const double *x, const double *y, const double *w, size_t n, double *mx,
                       double *my, double *sxx)
{
    double sw = 0, sx = 0, sy = 0, sxy = 0;
    for (size_t j = 0; j < n; j++) {
        double wj = w ? w[j] : 1;
        sw += wj, sx += wj * x[j], sy += wj * y[j];
    }
    *mx = sw > 0 ? sx / sw : 0, *my = sw > 0 ? sy / sw : 0, *sxx = 0;
    for (size_t j = 0; j < n; j++) {
        double wj = w ? w[j] : 1, dx = x[j] - *mx;
        *sxx += wj * dx * dx, sxy += wj * dx * (y[j] - *my);
    }
    return *sxx > 0 ? sxy / *sxx : 0;
}

/* After the group factors: the images' ratios divided by their group's new factor (new / old
 * effective scale), binned by relative noise level (images within 15 % in level share a bin),
 * give one split-conformal factor per bin with min_pixels; two bins or more replace the network's
 * noise factors (times the old factor at the bin's level, which the SD maps were made with). With
 * three bins or more the factors are then smoothed to the line in log level (least squares,
 * weighted by pixels): the noise level's effect is smooth, and bins free per level would absorb
 * whatever else tells images apart (with two calibration volumes, each has its own levels, and
 * free bins took over the difference that the line-fill factor is there to model). */
static mr_status fit_noise_factors(mr_nn_model *m, const mr_recal_image *im, size_t nim,
                                   const double *old_eff, const double *dd, size_t min_pixels,
                                   char *text, size_t tsize, size_t *o)
{
    double (*ord)[2] = malloc((nim ? nim : 1) * sizeof *ord); /* (level, image index) */
    if (!ord) return mr_error_set(MR_ERR_NOMEM, "calibrate: out of memory");
    size_t nk = 0;
    for (size_t i = 0; i < nim; i++)
        if (im[i].rel_noise > 0) ord[nk][0] = im[i].rel_noise, ord[nk][1] = (double)i, nk++;
    qsort(ord, nk, sizeof *ord, cmp_rel);
    double lev[8], fac[8], wt[8];
    int nb = 0;
    mr_status st = MR_OK;
    for (size_t a = 0; a < nk && st == MR_OK;) {
        size_t b = a, n = 0;
        while (b < nk && log(ord[b][0] / ord[a][0]) < log(1.15)) n += im[(size_t)ord[b][1]].n, b++;
        double *r = n >= min_pixels && nb < 8 ? malloc(n * sizeof *r) : NULL;
        if (n >= min_pixels && nb < 8 && !r) st = mr_error_set(MR_ERR_NOMEM, "calibrate: out of memory");
        if (r) {
            size_t k = 0;
            double lsum = 0;
            for (size_t j = a; j < b; j++) {
                size_t i = (size_t)ord[j][1];
                double g = scale_kind(m, im[i].method, im[i].mask_kind, im[i].accel) / old_eff[i] *
                           dd[i];
                for (size_t q = 0; q < im[i].n; q++) r[k++] = im[i].r[q] / g;
                lsum += log(ord[j][0]);
            }
            double cov[3];
            lev[nb] = exp(lsum / (double)(b - a));
            fac[nb] = mr_sigma_conformal_scale(r, n, cov) * mr_sigma_noise_factor(m, lev[nb]);
            wt[nb] = (double)n;
            if (*o < tsize)
                *o += (size_t)snprintf(text + *o, tsize - *o, "%s%.4g at relative noise %.3g (%zu; "
                                       "%.1f/%.1f/%.1f %%)", nb ? ", " : "; noise factors: ",
                                       fac[nb], lev[nb], n, 100 * cov[0], 100 * cov[1],
                                       100 * cov[2]);
            nb++;
            free(r);
        }
        a = b;
    }
    free(ord);
    if (st == MR_OK && nb >= 3) { /* the weighted line in (log level, log factor) */
        double lx[8], ly[8], mx, my, sxx;
        for (int j = 0; j < nb; j++) lx[j] = log(lev[j]), ly[j] = log(fac[j]);
        double b = fit_line(lx, ly, wt, (size_t)nb, &mx, &my, &sxx);
        for (int j = 0; j < nb; j++) fac[j] = exp(my + b * (lx[j] - mx));
        if (*o < tsize)
            *o += (size_t)snprintf(text + *o, tsize - *o, "; smoothed to %.4g x (level / %.3g)^%.3f",
                                   exp(my), exp(mx), b);
    }
    if (st == MR_OK && nb >= 2) {
        m->meta.n_noise_factors = nb;
        memcpy(m->meta.noise_factor_levels, lev, (size_t)nb * sizeof *lev);
        memcpy(m->meta.noise_factors, fac, (size_t)nb * sizeof *fac);
    }
    return st;
}

#define GHOST(im) ((im)->has_ghost ? (im)->ghost : NAN)

/* The mask-difficulty and ghost-phase factors (mr_sigma_difficulty_factor): per (mask kind
 * kidx[k], calibration acceleration) with at least 6 images of known difficulty d_i
 * (mr_mask_difficulty), each image's own split-conformal factor f_i on its ratios over div[i] (the
 * change of its scale and noise factor so far); by least squares the plane log f_i = a +
 * b (log d_i - c) + b' (log rho_i - c') over the images that also know their ghost phase rho_i
 * (mr_mask_ghost_phase; the line in log d alone when fewer than 6 do or rho does not vary), c and c'
 * the means; b and b' kept within [0, 2] (more energy missed, or more of the aliasing in phase with
 * the image, cannot mean smaller errors; 2 bounds what 16 draws can tell), the other slope refitted
 * when one is clamped. */
static void fit_plane(double *b1, double *b2, const double *x1, const double *x2, const double *y,
                      size_t n, int two)
{
    double s11 = 0, s22 = 0, s12 = 0, s1y = 0, s2y = 0;
    for (size_t i = 0; i < n; i++) {
        s11 += x1[i] * x1[i], s1y += x1[i] * y[i];
        if (two) s22 += x2[i] * x2[i], s12 += x1[i] * x2[i], s2y += x2[i] * y[i];
    }
    double det = s11 * s22 - s12 * s12;
    *b2 = 0;
    if (two && s22 > 1e-12 && det > 1e-12 * (s11 * s22 + 1e-300)) {
        *b1 = (s22 * s1y - s12 * s2y) / det, *b2 = (s11 * s2y - s12 * s1y) / det;
    } else
        *b1 = s11 > 0 ? s1y / s11 : 0;
    if (*b1 < 0 || *b1 > 2) { /* clamp b, refit b' on what is left */
        *b1 = *b1 < 0 ? 0 : 2;
        if (two && s22 > 1e-12) *b2 = (s2y - *b1 * s12) / s22;
    } else if (*b2 < 0 || *b2 > 2) {
        *b2 = *b2 < 0 ? 0 : 2;
        *b1 = s11 > 0 ? (s1y - *b2 * s12) / s11 : 0;
        *b1 = *b1 < 0 ? 0 : *b1 > 2 ? 2 : *b1;
    }
    *b2 = *b2 < 0 ? 0 : *b2 > 2 ? 2 : *b2;
}

static mr_status fit_difficulty(mr_nn_meta *M, const mr_recal_image *im, size_t nim,
                                const double *div, const int kidx[2], const char *const kinds[2],
                                char *text, size_t tsize, size_t *o)
{
    size_t maxn = 1, na = nim ? nim : 1;
    for (size_t i = 0; i < nim; i++)
        if (im[i].n > maxn) maxn = im[i].n;
    double *r = malloc(maxn * sizeof *r), *x = malloc(na * sizeof *x), *y = malloc(na * sizeof *y),
           *g = malloc(na * sizeof *g);
    if (!r || !x || !y || !g) {
        free(r), free(x), free(y), free(g);
        return mr_error_set(MR_ERR_NOMEM, "calibrate: out of memory");
    }
    memset(M->difficulty, 0, sizeof M->difficulty);
    memset(M->ghost, 0, sizeof M->ghost);
    M->has_difficulty = M->has_ghost = 0;
    for (int k = 0; k < 2; k++)
        for (int a = 0; a < M->n_calibration_accel; a++) {
            size_t n = 0, ng = 0;
            for (size_t i = 0; i < nim; i++) {
                if (!(im[i].difficulty > 0) || im[i].n < 100 || !in_group(im + i, M, a, 2, kinds[k]))
                    continue;
                double cov[3];
                for (size_t q = 0; q < im[i].n; q++) r[q] = im[i].r[q] / div[i];
                x[n] = log(im[i].difficulty), y[n] = log(mr_sigma_conformal_scale(r, im[i].n, cov));
                g[n] = im[i].has_ghost ? im[i].ghost : NAN;
                ng += im[i].has_ghost;
                n++;
            }
            if (n < 6) continue;
            int two = ng == n; /* the plane only when every image knows its ghost phase */
            double mx = 0, my = 0, mg = 0, b = 0, b2 = 0;
            for (size_t i = 0; i < n; i++) mx += x[i], my += y[i], mg += two ? g[i] : 0;
            mx /= (double)n, my /= (double)n, mg /= (double)n;
            for (size_t i = 0; i < n; i++) x[i] -= mx, y[i] -= my, g[i] = two ? g[i] - mg : 0;
            fit_plane(&b, &b2, x, g, y, n, two);
            M->difficulty[kidx[k]][a][0] = mx, M->difficulty[kidx[k]][a][1] = b;
            M->has_difficulty = 1;
            if (two) {
                M->ghost[kidx[k]][a][0] = mg, M->ghost[kidx[k]][a][1] = b2;
                M->has_ghost = 1;
            }
            if (*o < tsize)
                *o += (size_t)snprintf(text + *o, tsize - *o, "; mask difficulty R %g %s: slope %.3f "
                                       "about %.4g (%zu images)",
                                       M->calibration_accel[a], kinds[k], b, exp(mx), n);
            if (two && *o < tsize)
                *o += (size_t)snprintf(text + *o, tsize - *o, ", ghost phase slope %.3f about %.3f",
                                       b2, exp(mg));
        }
    free(r), free(x), free(y), free(g);
    return MR_OK;
}

/* The line-fill factors (mr_sigma_fill_factor): per (mask kind kidx[k], calibration
 * acceleration) with at least 12 slices of known line fill l_s (and 500 ratios each), each slice's
 * own split-conformal factor f_s on its ratios over div[i] (its image's change of scale, noise and
 * difficulty factors so far) times the fill factor of `old` its SD was made with; by least
 * squares log f_s = a + b (log l_s - c), c the mean, b kept within [-2, 2]. Between images the
 * factor is what separates a head from a brain-only image of the same anatomy (docs/uncertainty.md, "Line fill"). */
static mr_status fit_fill(mr_nn_meta *M, const mr_nn_meta *old, const mr_recal_image *im,
                          size_t nim, const double *div, const int kidx[2],
                          const char *const kinds[2], char *text, size_t tsize, size_t *o)
{
    size_t ns = 0, maxn = 1;
    for (size_t i = 0; i < nim; i++)
        for (size_t s = 0; s < im[i].n_slices; s++) {
            ns++;
            if (im[i].slice_n[s] > maxn) maxn = im[i].slice_n[s];
        }
    double *r = malloc(maxn * sizeof *r), *x = malloc((ns ? ns : 1) * sizeof *x),
           *y = malloc((ns ? ns : 1) * sizeof *y);
    if (!r || !x || !y) {
        free(r), free(x), free(y);
        return mr_error_set(MR_ERR_NOMEM, "calibrate: out of memory");
    }
    /* pooled (g = -1: for images of unknown method), then per input method when the images
     * have several: one slope per mask kind could not serve both the artefact model's zf and
     * cs-l1 inputs (docs/uncertainty.md, "Line fill per input method") */
    int per_method = 0;
    for (size_t i = 0; i < nim; i++) per_method |= method_index(M, im[i].method) >= 0;
    for (int g = -1; g < (per_method ? M->n_calibration_methods : 0); g++)
    for (int k = 0; k < 2; k++)
        for (int a = 0; a < M->n_calibration_accel; a++) {
            size_t n = 0;
            for (size_t i = 0; i < nim; i++) {
                if (!in_group(im + i, M, a, 2, kinds[k])) continue;
                if (g >= 0 && method_index(M, im[i].method) != g) continue;
                size_t off = 0;
                for (size_t s = 0; s < im[i].n_slices; off += im[i].slice_n[s], s++) {
                    if (im[i].slice_n[s] < 500 || !isfinite(im[i].fill[s])) continue;
                    double cov[3];
                    for (size_t q = 0; q < im[i].slice_n[s]; q++) r[q] = im[i].r[off + q] / div[i];
                    x[n] = im[i].fill[s];
                    /* times the old fill factor the SD was made with */
                    y[n] = log(mr_sigma_conformal_scale(r, im[i].slice_n[s], cov) *
                               fill_kind(old, im[i].method, kinds[k], im[i].accel, x[n]));
                    n++;
                }
            }
            if (n < 12) continue;
            double mx, my, sxx, b = fit_line(x, y, NULL, n, &mx, &my, &sxx);
            if (!(sxx > 1e-9 * (double)n)) continue; /* the line fill does not vary */
            b = b < -2 ? -2 : b > 2 ? 2 : b;
            double *pr = g < 0 ? M->fill[kidx[k]][a] : M->fill_m[g][kidx[k]][a];
            pr[0] = mx, pr[1] = b;
            if (g < 0) M->has_fill = 1;
            else M->has_fill_m = 1;
            if (*o < tsize)
                *o += (size_t)snprintf(text + *o, tsize - *o, "; line fill R %g %s%s%s: slope %.3f "
                                       "about %.3f (%zu slices, %.3f-%.3f)",
                                       M->calibration_accel[a], kinds[k], g < 0 ? "" : ", input ",
                                       g < 0 ? "" : M->calibration_methods[g], b, exp(mx), n,
                                       exp(mx - sqrt(sxx / (double)n)), exp(mx + sqrt(sxx / (double)n)));
        }
    free(r), free(x), free(y);
    return MR_OK;
}

/* NLL(w) per pixel, up to constants, of the errors with the SD times exp(w t) and a free scale per
 * image (the scale of a volume is the group, noise and difficulty factors' business; w is about
 * the pattern within it): the mean over the pixels of the images of input method `method` with a
 * map (T[i] non-NULL) of w t + 0.5 log mean_image(r^2 exp(-2 w t)), t = T[i] + f[i] clamped;
 * f[i] (NULL: 0) = log of image i's old scale x noise x difficulty factors (t: log(map / SD
 * before them)); *mean_t the mean of t. */
static double combine_nll(const mr_recal_image *im, size_t nim, const double *const *T,
                          const double *f, const char *method, double w, double *mean_t)
{
    double st = 0, nll = 0;
    size_t n = 0;
    for (size_t i = 0; i < nim; i++) {
        if (!T[i] || !im[i].method || strcmp(im[i].method, method) || !im[i].n) continue;
        double sti = 0, sr = 0, fi = f ? f[i] : 0;
        for (size_t q = 0; q < im[i].n; q++) {
            double t = clamp_log_ratio(T[i][q] + fi);
            sti += t, sr += im[i].r[q] * im[i].r[q] * exp(-2 * w * t);
        }
        if (!(sr > 0)) continue;
        nll += w * sti + 0.5 * (double)im[i].n * log(sr / (double)im[i].n);
        st += sti, n += im[i].n;
    }
    if (mean_t) *mean_t = n ? st / (double)n : 0;
    return n ? nll / (double)n : 0;
}

/* Golden section for the w in [0, hi] that minimises combine_nll (convex in w). */
static double golden_w(const mr_recal_image *im, size_t nim, const double *const *T,
                       const double *f, const char *method, double hi)
{
    double lo = 0, g = 0.6180339887498949;
    double a = hi - g * (hi - lo), b = lo + g * (hi - lo);
    double fa = combine_nll(im, nim, T, f, method, a, NULL), fb = combine_nll(im, nim, T, f, method, b, NULL);
    for (int it = 0; it < 30; it++) {
        if (fa < fb) hi = b, b = a, fb = fa, a = hi - g * (hi - lo), fa = combine_nll(im, nim, T, f, method, a, NULL);
        else lo = a, a = b, fa = fb, b = lo + g * (hi - lo), fb = combine_nll(im, nim, T, f, method, b, NULL);
    }
    double w = 0.5 * (lo + hi);
    return combine_nll(im, nim, T, f, method, w, NULL) < combine_nll(im, nim, T, f, method, 0, NULL) ? w : 0;
}

/* The log factor image i's SD gets from the combinations: with t = clamp(Tv + f) and
 * tb = clamp(Tb + f - log k_in - w_in t) (the bootstrap's ratio against the input-combined SD),
 * log k_in + w_in t + log k_b + w_b tb; wk NULL: no combination of that kind. */
static double combo_log(const double *wi, double tv, const double *wb, double tbr)
{
    double l = 0, t = clamp_log_ratio(tv);
    if (wi && wi[0] > 0) l += log(wi[1]) + wi[0] * t;
    if (wb && wb[0] > 0)
        l += log(wb[1]) + wb[0] * clamp_log_ratio(tbr - (wi && wi[0] > 0 ? log(wi[1]) + wi[0] * t : 0));
    return l;
}

/* The combination weights of the SD with the input's SD map (meta.input_sd, when fit_in: images'
 * t) and with the model's bootstrap map (meta.boot_sd, when fit_b: images' tb), per input method.
 * Denoise applies them nested, SD_1 = SD k_i (v s / SD)^w_i, SD_2 = SD_1 k_b (b s / SD_1)^w_b, so
 * that log SD_2 = log SD + (1 - w_b) w_i log(v s / SD) + w_b log(b s / SD) + const: the two free
 * exponents a_v = (1 - w_b) w_i and a_b = w_b are fitted in turn (each by golden section on the
 * Gaussian NLL with a free scale per image, on the ratios divided by the other's current factor;
 * 6 rounds when both are fitted, the maps being correlated), then mapped back; k keeps the SD's
 * geometric mean over the method's pixels. f[i]: log of image i's old scale x noise x difficulty
 * factors. *out receives the images with their ratios divided by the new SD's factor (caller frees
 * out and out[i].r). */
static mr_status fit_combine(mr_nn_meta *M, int fit_in, int fit_b, mr_recal_image **out,
                             const mr_recal_image *im, size_t nim, const double *f, char *text,
                             size_t tsize, size_t *o)
{
    size_t na = nim ? nim : 1;
    mr_recal_image *c = calloc(na, sizeof *c), *wim = calloc(na, sizeof *wim);
    const double **Tv = calloc(na, sizeof *Tv), **Tb = calloc(na, sizeof *Tb);
    double **wr = calloc(na, sizeof *wr);
    mr_status st = MR_OK;
    *out = c;
    if (!c || !wim || !Tv || !Tb || !wr) st = mr_error_set(MR_ERR_NOMEM, "calibrate: out of memory");
    for (size_t i = 0; st == MR_OK && i < nim; i++) {
        c[i] = wim[i] = im[i], c[i].r = NULL;
        Tv[i] = fit_in && im[i].method ? im[i].t : NULL;
        Tb[i] = fit_b && im[i].method ? im[i].tb : NULL;
        if (!(wr[i] = malloc((im[i].n ? im[i].n : 1) * sizeof *wr[i])))
            st = mr_error_set(MR_ERR_NOMEM, "calibrate: out of memory");
        wim[i].r = wr[i];
    }
    if (fit_in) M->n_input_sd = M->n_calibration_methods;
    if (fit_b) M->n_boot_sd = M->n_calibration_methods;
    for (int j = 0; st == MR_OK && j < M->n_calibration_methods; j++) {
        const char *meth = M->calibration_methods[j];
        double av = 0, ab = 0, n0 = 0, mt;
        int hv = fit_in && combine_nll(im, nim, Tv, f, meth, 0, NULL) != 0,
            hb = fit_b && combine_nll(im, nim, Tb, f, meth, 0, NULL) != 0;
        if (fit_in) M->input_sd[j][0] = 0, M->input_sd[j][1] = 1;
        if (fit_b) M->boot_sd[j][0] = 0, M->boot_sd[j][1] = 1;
        if (!hv && !hb) continue;
        for (int round = 0; round < (hv && hb ? 6 : 1); round++)
            for (int which = 0; which < 2; which++) {
                if ((which == 0 && !hv) || (which == 1 && !hb)) continue;
                const double *const *To = which ? Tv : Tb; /* the other map, held fixed */
                double ao = which ? av : ab;
                for (size_t i = 0; i < nim; i++) {
                    if (method_index(M, im[i].method) != j) continue; /* combine_nll skips them */
                    for (size_t q = 0; q < im[i].n; q++)
                        wr[i][q] = im[i].r[q] / (To[i] && ao > 0 ? exp(ao * clamp_log_ratio(To[i][q] + f[i])) : 1);
                }
                if (round == 0 && which == (hv ? 0 : 1)) n0 = combine_nll(wim, nim, which ? Tb : Tv, f, meth, 0, NULL);
                double w = golden_w(wim, nim, which ? Tb : Tv, f, meth, 1);
                if (which) ab = w; else av = w;
            }
        /* back to the nested weights, and the k that keep the geometric mean */
        double wi = hv ? (hb && ab < 1 ? av / (1 - ab) : av) : 0, wb = hb ? ab : 0;
        wi = wi > 1 ? 1 : wi;
        if (hv) {
            combine_nll(im, nim, Tv, f, meth, 0, &mt);
            M->input_sd[j][0] = wi, M->input_sd[j][1] = exp(-wi * mt);
        }
        if (hb) { /* mean of the bootstrap's ratio against the input-combined SD */
            double sum = 0;
            size_t n = 0;
            for (size_t i = 0; i < nim; i++) {
                if (!Tb[i] || method_index(M, im[i].method) != j) continue;
                for (size_t q = 0; q < im[i].n; q++)
                    sum += clamp_log_ratio(Tb[i][q] + f[i] - (Tv[i] && hv ? combo_log(M->input_sd[j], Tv[i][q] + f[i], NULL, 0) : 0)),
                    n++;
            }
            M->boot_sd[j][0] = wb, M->boot_sd[j][1] = exp(-wb * (n ? sum / (double)n : 0));
        }
        /* the NLL with both (per image scale free), against neither */
        for (size_t i = 0; i < nim; i++) {
            if (method_index(M, im[i].method) != j) continue;
            for (size_t q = 0; q < im[i].n; q++)
                wr[i][q] = im[i].r[q] /
                           exp(combo_log(Tv[i] && hv ? M->input_sd[j] : NULL, Tv[i] ? Tv[i][q] + f[i] : 0,
                                         Tb[i] && hb ? M->boot_sd[j] : NULL, Tb[i] ? Tb[i][q] + f[i] : 0));
        }
        double nb = combine_nll(wim, nim, hv ? Tv : Tb, f, meth, 0, NULL), l2 = 0.5 * log(2 * M_PI) + 0.5;
        char a1[64] = "", a2[64] = "";
        if (hv) snprintf(a1, sizeof a1, " input SD w %.3f k %.4g", wi, M->input_sd[j][1]);
        if (hb) snprintf(a2, sizeof a2, "%s bootstrap w %.3f k %.4g", hv ? "," : "", wb, M->boot_sd[j][1]);
        if (*o < tsize)
            *o += (size_t)snprintf(text + *o, tsize - *o, "; %s:%s%s (NLL %.4f, without %.4f)",
                                   meth, a1, a2, nb + l2, n0 + l2);
    }
    for (size_t i = 0; st == MR_OK && i < nim; i++) {
        double *r = malloc((im[i].n ? im[i].n : 1) * sizeof *r);
        if (!r) {
            st = mr_error_set(MR_ERR_NOMEM, "calibrate: out of memory");
            break;
        }
        int j = method_index(M, im[i].method);
        const double *wi = j >= 0 && Tv[i] ? M->input_sd[j] : NULL, *wb = j >= 0 && Tb[i] ? M->boot_sd[j] : NULL;
        for (size_t q = 0; q < im[i].n; q++)
            r[q] = im[i].r[q] / exp(combo_log(wi, wi ? Tv[i][q] + f[i] : 0, wb, wb ? Tb[i][q] + f[i] : 0));
        c[i].r = r;
    }
    for (size_t i = 0; wr && i < nim; i++) free(wr[i]);
    free(wr), free(wim), free(Tv), free(Tb);
    return st;
}

mr_status mr_sigma_recalibrate(void *sigma, const mr_recal_image *im_in, size_t nim,
                               size_t min_pixels, const char *source, char *text, size_t tsize)
{
    const mr_recal_image *im = im_in;
    mr_recal_image *im_own = NULL; /* the images with the input-SD weights applied */
    mr_nn_model *m = sigma;
    mr_nn_meta *M = &m->meta;
    static const char *const kinds[2] = {"random", "equispaced"};
    size_t o = 0;
    text[0] = 0;
    if (M->n_calibration_accel < 2)
        return mr_error_set(MR_ERR_INPUT, "the variance network has no scales per acceleration "
                            "(calibration_accel): expected an undersampling network "
                            "(mrpipe train with degradation.type undersampling)");
    for (size_t i = 0; i < nim; i++) {
        if (!(im[i].accel >= 1))
            return mr_error_set(MR_ERR_INPUT, "image %zu: acceleration %g; expected R >= 1", i + 1,
                                im[i].accel);
        if (!im[i].mask_kind || (strcmp(im[i].mask_kind, "random") &&
                                 strcmp(im[i].mask_kind, "equispaced")))
            return mr_error_set(MR_ERR_INPUT, "image %zu: mask kind '%s'; expected random or "
                                "equispaced", i + 1, im[i].mask_kind ? im[i].mask_kind : "");
    }
    /* the mask kinds, starting from the pooled scales when the network has none yet */
    int kidx[2];
    for (int k = 0; k < 2; k++) {
        kidx[k] = -1;
        for (int j = 0; j < M->n_calibration_masks; j++)
            if (!strcmp(M->calibration_masks[j], kinds[k])) kidx[k] = j;
        if (kidx[k] < 0) {
            if (M->n_calibration_masks >= 4)
                return mr_error_set(MR_ERR_INPUT, "the variance network has 4 mask kinds already");
            kidx[k] = M->n_calibration_masks++;
            snprintf(M->calibration_masks[kidx[k]], sizeof M->calibration_masks[0], "%s", kinds[k]);
            for (int a = 0; a < M->n_calibration_accel; a++)
                M->calibration_mask_scales[kidx[k]][a] = M->calibration_accel_scales[a];
        }
    }
    /* each image's scale, noise factor and difficulty factor as its SD was made */
    size_t na = nim ? nim : 1;
    double *old_eff = malloc(na * sizeof *old_eff), *old_nf = malloc(na * sizeof *old_nf),
           *old_dd = malloc(na * sizeof *old_dd),
           *nd = malloc(na * sizeof *nd),   /* new / old noise factor per image */
           *dd = malloc(na * sizeof *dd),   /* new / old difficulty factor per image */
           *div = malloc(na * sizeof *div); /* what the ratios are divided by in a fit */
    if (!old_eff || !old_nf || !old_dd || !nd || !dd || !div) {
        free(old_eff), free(old_nf), free(old_dd), free(nd), free(dd), free(div);
        return mr_error_set(MR_ERR_NOMEM, "calibrate: out of memory");
    }
    for (size_t i = 0; i < nim; i++) {
        old_eff[i] = scale_kind(m, im[i].method, im[i].mask_kind, im[i].accel);
        old_nf[i] = mr_sigma_noise_factor(m, im[i].rel_noise);
        old_dd[i] = difficulty_kind(M, im[i].mask_kind, im[i].accel, im[i].difficulty, GHOST(im + i));
        nd[i] = dd[i] = 1;
    }
    mr_status st = MR_OK;
    double cov[3] = {0, 0, 0}, c;
    int used;
    size_t np;
    /* the input-SD weights, fitted once: a network that has them made its SD maps with them */
    char itext[512] = "";
    size_t io = 0;
    int any_t = 0;
    for (size_t i = 0; i < nim; i++) any_t |= im[i].t != NULL && im[i].method != NULL;
    /* the combination weights with the input's SD map and the model's bootstrap map, fitted
     * once: a network that has them made its SD maps with them */
    int any_tb = 0;
    for (size_t i = 0; i < nim; i++) any_tb |= im[i].tb != NULL && im[i].method != NULL;
    int fit_in = any_t && M->n_input_sd == 0 && M->n_calibration_methods > 0,
        fit_b = any_tb && M->n_boot_sd == 0 && M->n_calibration_methods > 0;
    if (fit_in || fit_b) {
        for (size_t i = 0; i < nim; i++) div[i] = log(old_eff[i] * old_nf[i] * old_dd[i]);
        io += (size_t)snprintf(itext + io, sizeof itext - io, "; %s weights",
                               fit_in && fit_b ? "input SD and bootstrap"
                                               : fit_in ? "input SD" : "bootstrap");
        st = fit_combine(M, fit_in, fit_b, &im_own, im, nim, div, itext, sizeof itext, &io);
        im = im_own;
    }
    const mr_nn_meta orig = *M;
    /* the line-fill factors: the other fits see the ratios divided by each slice's change of
     * fill factor (ffr, new / old; a working copy of the ratios), the fill fit the ratios divided
     * by the other factors' change */
    const mr_recal_image *base = im;
    mr_recal_image *im_w = NULL;
    double **ffr = NULL, **wr = NULL; /* per image: slices' ffr, the working ratios */
    int any_fill = 0;
    for (size_t i = 0; i < nim; i++) any_fill |= im[i].n_slices > 0 && im[i].fill && im[i].slice_n;
    if (st == MR_OK && any_fill) {
        im_w = calloc(na, sizeof *im_w), ffr = calloc(na, sizeof *ffr), wr = calloc(na, sizeof *wr);
        if (!im_w || !ffr || !wr) st = mr_error_set(MR_ERR_NOMEM, "calibrate: out of memory");
        for (size_t i = 0; st == MR_OK && i < nim; i++) {
            im_w[i] = im[i];
            double *r = malloc((im[i].n ? im[i].n : 1) * sizeof *r);
            double *f = malloc((im[i].n_slices ? im[i].n_slices : 1) * sizeof *f);
            im_w[i].r = wr[i] = r, ffr[i] = f;
            if (!r || !f) st = mr_error_set(MR_ERR_NOMEM, "calibrate: out of memory");
            else memcpy(r, im[i].r, im[i].n * sizeof *r);
            for (size_t q = 0; f && q < im[i].n_slices; q++) f[q] = 1;
        }
        if (st == MR_OK) im = im_w;
    }
    /* the group factors, the noise factors and the difficulty factors fitted in turn
     * (backfitting: each on the ratios divided by the others' current change), from the original
     * scales each round */
    for (int round = 0; round < 4 && st == MR_OK; round++) {
        int any = 0;
        memcpy(M->calibration_accel_scales, orig.calibration_accel_scales,
               sizeof orig.calibration_accel_scales);
        memcpy(M->calibration_mask_scales, orig.calibration_mask_scales,
               sizeof orig.calibration_mask_scales);
        memcpy(M->calibration_method_scales, orig.calibration_method_scales,
               sizeof orig.calibration_method_scales);
        M->n_noise_factors = orig.n_noise_factors;
        memcpy(M->noise_factor_levels, orig.noise_factor_levels, sizeof orig.noise_factor_levels);
        memcpy(M->noise_factors, orig.noise_factors, sizeof orig.noise_factors);
        o = 0;
        o += (size_t)snprintf(text + o, tsize - o, "recalibrated by mrpipe calibrate on %zu "
                              "image(s)%s%s", nim, source ? " of " : "", source ? source : "");
        for (size_t i = 0; i < nim; i++) div[i] = nd[i] * dd[i];
        for (int a = 0; a < M->n_calibration_accel && st == MR_OK; a++) {
            double ca;
            if ((st = group_factor(&ca, &used, &np, cov, im, nim, div, M, a, 0, NULL,
                                   min_pixels)) != MR_OK)
                break;
            if (!used) continue;
            any = 1;
            M->calibration_accel_scales[a] *= ca;
            if (o < tsize)
                o += (size_t)snprintf(text + o, tsize - o, "; R %g: x %.4g (%zu pixels; coverage "
                                      "68/90/95 = %.1f/%.1f/%.1f %%)", M->calibration_accel[a], ca,
                                      np, 100 * cov[0], 100 * cov[1], 100 * cov[2]);
            for (int k = 0; k < 2 && st == MR_OK; k++) {
                st = group_factor(&c, &used, &np, cov, im, nim, div, M, a, 2, kinds[k], min_pixels);
                M->calibration_mask_scales[kidx[k]][a] *= used ? c : ca;
                if (st == MR_OK && used && o < tsize)
                    o += (size_t)snprintf(text + o, tsize - o, ", %s x %.4g (%zu; %.1f/%.1f/%.1f "
                                          "%%)", kinds[k], c, np, 100 * cov[0], 100 * cov[1],
                                          100 * cov[2]);
            }
            for (int j = 0; j < M->n_calibration_methods && st == MR_OK; j++) {
                st = group_factor(&c, &used, &np, cov, im, nim, div, M, a, 1,
                                  M->calibration_methods[j], min_pixels);
                M->calibration_method_scales[j][a] *= used ? c : ca;
                if (st == MR_OK && used && o < tsize)
                    o += (size_t)snprintf(text + o, tsize - o, ", input %s x %.4g (%zu; "
                                          "%.1f/%.1f/%.1f %%)", M->calibration_methods[j], c, np,
                                          100 * cov[0], 100 * cov[1], 100 * cov[2]);
            }
        }
        if (st == MR_OK && !any)
            st = mr_error_set(MR_ERR_INPUT, "no acceleration has %zu foreground pixels to "
                              "calibrate on; expected more images", min_pixels);
        if (st == MR_OK)
            st = fit_noise_factors(m, im, nim, old_eff, dd, min_pixels, text, tsize, &o);
        if (st != MR_OK) break;
        int noise_fitted = !(M->n_noise_factors == orig.n_noise_factors &&
                             !memcmp(M->noise_factors, orig.noise_factors, sizeof orig.noise_factors));
        for (size_t i = 0; i < nim; i++) {
            nd[i] = mr_sigma_noise_factor(m, im[i].rel_noise) / old_nf[i];
            div[i] = scale_kind(m, im[i].method, im[i].mask_kind, im[i].accel) / old_eff[i] *
                     nd[i] / old_dd[i];
        }
        if ((st = fit_difficulty(M, im, nim, div, kidx, kinds, text, tsize, &o)) != MR_OK) break;
        int dd_moved = 0;
        for (size_t i = 0; i < nim; i++) {
            double v = difficulty_kind(M, im[i].mask_kind, im[i].accel, im[i].difficulty, GHOST(im + i)) /
                       old_dd[i];
            if (fabs(v - dd[i]) > 1e-9 * v) dd_moved = 1;
            dd[i] = v;
        }
        if (im_w) { /* the fill fit on the original ratios over the other factors' change */
            for (size_t i = 0; i < nim; i++)
                div[i] = scale_kind(m, im[i].method, im[i].mask_kind, im[i].accel) / old_eff[i] *
                         nd[i] * dd[i];
            if ((st = fit_fill(M, &orig, base, nim, div, kidx, kinds, text, tsize, &o)) != MR_OK) break;
            for (size_t i = 0; i < nim; i++) {
                size_t off = 0;
                for (size_t q = 0; q < base[i].n_slices; off += base[i].slice_n[q], q++) {
                    double v = fill_kind(M, base[i].method, base[i].mask_kind, base[i].accel,
                                         base[i].fill[q]) /
                               fill_kind(&orig, base[i].method, base[i].mask_kind, base[i].accel,
                                         base[i].fill[q]);
                    if (fabs(v - ffr[i][q]) > 1e-9 * v) dd_moved = 1;
                    ffr[i][q] = v;
                    for (size_t j = 0; j < base[i].slice_n[q]; j++)
                        wr[i][off + j] = base[i].r[off + j] / v;
                }
            }
        }
        /* nothing to alternate with (no noise factors, the difficulty factors as the group
         * factors assumed): one round is all */
        if (!noise_fitted && !M->has_difficulty && !dd_moved) break;
    }
    /* the single scale (R unknown): all ratios, with the new noise and difficulty factors */
    for (size_t i = 0; i < nim; i++) div[i] = nd[i] * dd[i];
    if (st == MR_OK && (st = group_factor(&c, &used, &np, cov, im, nim, div, M, -1, 0, NULL, 1)) == MR_OK)
        M->calibration_scale = orig.calibration_scale * c;
    free(old_eff), free(old_nf), free(old_dd), free(nd), free(dd), free(div);
    for (size_t i = 0; wr && i < nim; i++) free(wr[i]), free(ffr[i]);
    free(im_w), free(ffr), free(wr);
    for (size_t i = 0; im_own && i < nim; i++) free((void *)im_own[i].r);
    free(im_own);
    if (st == MR_OK && itext[0]) {
        size_t l = strlen(text);
        snprintf(text + l, tsize - l, "%s", itext);
    }
    if (st == MR_OK) {
        size_t l = strlen(M->calibration);
        snprintf(M->calibration + l, sizeof M->calibration - l, "%s%s", l ? "; " : "", text);
    }
    return st;
}
