/*
 * mr_train.h: pipeline-internal helpers shared by `mrpipe train` and `mrpipe denoise`: the robust
 * input normalisation (a high percentile of the image, recorded in the model file), Rician noise
 * (complex Gaussian noise added, then the magnitude), and the training data (clean volumes split in
 * disjoint z blocks, 2-D patches from the three orientations with augmentation). See docs/models.md.
 */
#ifndef MR_TRAIN_H
#define MR_TRAIN_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "mr_core.h"
#include "mr_io.h"
#include "mr_recon.h"

/* The p-th percentile (0..100) of n values with numpy's default linear interpolation; non-finite
 * values must have been rejected by the caller. Works on a copy (MR_ERR_NOMEM). */
mr_status mr_train_percentile(double *out, const float *x, size_t n, double p);

/* Index of the first non-finite value, or n when all are finite. */
size_t mr_train_first_nonfinite(const float *x, size_t n);

/* Rician noise in place: x = |x + sigma (n1 + i n2)|, n1, n2 standard normal from rng. */
void mr_train_rician(float *x, size_t n, double sigma, mr_rng *rng);

/* A clean training volume (S, H, W) = (z, y, x), normalised by its own percentile level, and
 * the z blocks [k0, k1) of it that training may use. */
#define MR_TRAIN_MAX_BLOCKS 8
typedef struct {
    char name[256];
    mr_array *vol;                      /* float32 (S, H, W), divided by `level` */
    double level;                       /* the percentile value (original units) */
    int nblocks;
    int k0[MR_TRAIN_MAX_BLOCKS], k1[MR_TRAIN_MAX_BLOCKS];
} mr_train_volume;

/* A synthetic training volume from a label atlas (train_synth.c): random intensity per label,
 * faint texture, ~1 voxel blur, smooth bias field; normalised by its percentile, all z usable. */
mr_status mr_train_synth_volume(mr_train_volume *tv, const char *atlas, uint64_t seed,
                                double percentile);

/* Separable [1 2 1]/4 blur along z, y and x in place (removes the quantisation steps of 8-bit and
 * posterised volumes before they serve as clean targets). MR_ERR_NOMEM. */
mr_status mr_train_blur3(mr_array *vol);

/* 1 when every value is an integer (an 8-bit or posterised volume). */
int mr_train_is_integer_valued(const mr_array *vol);

/* Slice index k of world z (mm) for a NIfTI volume with an axis-aligned affine. */
double mr_train_k_of_z(const mr_nifti_meta *meta, double z_mm);

/* Patch sampling and degradation parameters. */
typedef struct {
    int patch;                 /* P: patches are P x P */
    double sigma_min, sigma_max; /* Rician sigma, in units of the normalisation level (log-uniform) */
    double gamma_min, gamma_max; /* intensity remapping x -> s x^g, g log-uniform */
    double scale_min, scale_max; /* s uniform */
    double min_mean;           /* reject (up to 8 times) patches whose clean mean is below this */
} mr_train_sampler;

/* exp(uniform(log lo, log hi)) from rng (lo when hi <= lo). */
double mr_train_log_uniform(mr_rng *rng, double lo, double hi);

/* dst (m, m) = s * src^g after a random dihedral transform of src (m, m): transpose?, flip rows?,
 * flip columns? (8 elements), g log-uniform in the sampler's gamma range, s uniform in its scale
 * range; drawn from rng in that order. */
void mr_train_augment(float *dst, const float *src, size_t m, const mr_train_sampler *s,
                      mr_rng *rng);

/* Fill one (P, P) pair: clean target and noisy input, from a random block of a random volume
 * (weighted by voxels), a random orientation (axial, coronal, sagittal), a random dihedral
 * transform (flips, 90-degree rotations), random gamma/scale remapping and a random Rician sigma.
 * Everything drawn from rng, so a batch is a pure function of the rng's state. */
void mr_train_sample(float *clean, float *noisy, const mr_train_volume *vols, int nvols,
                     const mr_train_sampler *s, mr_rng *rng);

/* ---------------------------------------------------------------- undersampling artefacts
 * (train_artefact.c): clean planes -> simulated multi-coil k-space -> fastMRI mask -> a real mrpipe
 * reconstruction (zf or cs-l1); the target is the RSS of the fully sampled coil images. */

#define MR_TRAIN_US_MAX 4
typedef struct {
    int n_accel;
    double accel[MR_TRAIN_US_MAX], cf[MR_TRAIN_US_MAX]; /* accelerations and their centre fractions */
    int n_masks;
    mr_mask_type masks[MR_TRAIN_US_MAX];                /* random, equispaced, ... */
    int n_methods;
    char methods[MR_TRAIN_US_MAX][32];                  /* mrpipe recon methods: zf, cs-l1, ... */
    int coils;                                          /* receive coils */
    double noise_min, noise_max; /* k-space noise std per real/imag part, x the volume's level */
    int matrix;                  /* planes placed on an M x M matrix (pad or crop) */
    int bank_slices;             /* degraded planes made before training */
    int aux_unsampled;           /* bank aux: the unsampled part of the reconstruction (recon/
                                  * unsampled.c) instead of the zero-filled image (a base model's
                                  * variance network then replaces it with that of its output) */
} mr_train_us;

/* One degradation: mask, acceleration, method (index into mr_train_us.methods), noise, seed. */
typedef struct {
    double accel, center_fraction;
    mr_mask_type mask;
    int method;
    double noise;
    uint64_t seed;
} mr_train_degradation;

typedef struct mr_train_degrader mr_train_degrader;
mr_status mr_train_degrader_create(mr_train_degrader **out, const mr_train_us *u);
void mr_train_degrader_destroy(mr_train_degrader *d);

/* Degrade one clean (M, M) image: ref = RSS of the fully sampled simulated coil images,
 * deg = the magnitude of the method's reconstruction of the undersampled k-space. */
mr_status mr_train_degrade(mr_train_degrader *d, float *ref, float *deg, const float *img,
                           const mr_train_degradation *g);

/* The zero-filled magnitude (M, M) of the last mr_train_degrade's undersampled k-space (whatever
 * the method). */
const float *mr_train_degrader_zf(const mr_train_degrader *d);
/* From now on, reconstruct with explicit ESPIRiT maps (the methods' defaults: the same images) and
 * keep them, so that mr_train_degrader_boot can re-simulate the last degradation. */
mr_status mr_train_degrader_bootstrap(mr_train_degrader *d);
/* The parametric bootstrap deviation (M, M) of the last degradation's reconstruction
 * (mr_bootstrap_dev with its maps and mask; normalised units as deg). MR_ERR_USAGE after a
 * zero-filled degradation or without mr_train_degrader_bootstrap. */
mr_status mr_train_degrader_boot(const mr_train_degrader *d, float *dev);
/* The (M, M) sampling mask of the last mr_train_degrade (1 acquired, 0 not; centred k-space). */
const float *mr_train_degrader_mask(const mr_train_degrader *d);

/* The noise SD (per real and imaginary part, the image's units before any normalisation of the
 * outputs) of the last mr_train_degrade's k-space, estimated as `mrpipe recon` does without a noise
 * scan: mr_noise_cov_estimate on its acquired samples, then mr_noise_sd_of_cov. */
mr_status mr_train_degrader_noise_sd(const mr_train_degrader *d, double *sd);
/* aux for a degraded plane deg (M, M) just made by d: the zero-filled image, or with
 * u->aux_unsampled the unsampled part of deg (|F^-1[(1 - mask) F(deg)]|). */
mr_status mr_train_degrader_aux(const mr_train_degrader *d, float *aux, const float *deg);

/* Divide ref and deg (n values) by the percentile of deg (its maximum when that is 0); _set also
 * aux (may be NULL) by the same level. */
mr_status mr_train_normalise_pair(float *ref, float *deg, size_t n, double percentile);
mr_status mr_train_normalise_set(float *ref, float *deg, float *aux, size_t n, double percentile);

/* The degraded planes made once before training: (n, M, M) targets and inputs, normalised. */
typedef struct {
    int n, m;
    float *ref, *deg, *aux; /* aux: the zero-filled image of the same undersampled k-space */
    float *cols;            /* (n, M): each plane's phase-encode mask (1 acquired) */
    unsigned char *kind; /* method * 16 + acceleration index, per plane */
} mr_train_bank;

mr_status mr_train_bank_build(mr_train_bank *b, const mr_train_volume *vols, int nvols,
                              const mr_train_us *u, const mr_train_sampler *s, double percentile,
                              uint64_t seed, FILE *log);
void mr_train_bank_free(mr_train_bank *b);

/* One (P, P) training pair from a random plane of the bank, dihedral augmentation; aux (may be
 * NULL) receives the same crop of the plane's zero-filled image. */
void mr_train_bank_sample(float *clean, float *deg, float *aux, const mr_train_bank *b,
                          const mr_train_sampler *s, mr_rng *rng);

/* ---------------------------------------------------------------- model uncertainty
 * (train_sigma.c): a variance network on (model input x, model output y) predicting the
 * log-variance of y's error, calibrated by one split-conformal scale. docs/uncertainty.md. */

/* Batch for the variance network from n patches (Pb, Pb) of noisy inputs and clean targets: the
 * base model (plan for Pb x Pb, or NULL for y = x) runs on each whole patch and the centre (P, P)
 * crops give input (n, 2, P, P) = (x, y) and target (n, 1, P, P) = y - clean. ybuf: Pb*Pb floats.
 * aux_big (may be NULL; base_plan NULL): the second input channel is aux (the zero-filled image
 * of the reconstruction x, whose own error is the target: x - clean). aux_third: aux is instead a
 * third channel (n, 3, P, P) = (x, y, aux) (the unsampled part of y; zeros when aux_big is NULL). */
struct mr_nn_plan;
mr_status mr_sigma_batch(float *input, float *target, const float *noisy_big,
                         const float *clean_big, const float *aux_big, int aux_third, int n,
                         int Pb, int P, struct mr_nn_plan *base_plan, float *ybuf);

/* Calibrated model SD (S, H, W) of y = model(x), in x's units: scale x level x exp(s / 2), s the
 * variance network's output on (x, y) / level (3-channel networks: (x, y, g) / level, g the
 * unsampled part of y, or zeros when g is NULL: the sampling mask is unknown), level the
 * network's percentile of x. boot (S, H, W): the reconstruction's parametric bootstrap map
 * (mr_sigma_bootstrap_map), read in place of G|y - x| by networks refitted with it
 * (mr_sigma_wants_bootstrap: MR_ERR_USAGE when such a network gets boot NULL); NULL for others.
 * sigma: a loaded mr_nn_model (void * keeps mr_nn.h out of this header's users). */
mr_status mr_sigma_volume(float *sd, const float *x, const float *y, const float *g,
                          const float *boot, size_t S, size_t H, size_t W, const void *sigma,
                          double scale, const char *what);
/* 1 when the variance network's feature refit reads a bootstrap map (calibration_feature_bootstrap). */
int mr_sigma_wants_bootstrap(const void *sigma);
/* The bootstrap SD map of one (H, W) slice: b = sqrt(G(dev^2)), dev = |x_b| - |x^|
 * (mr_bootstrap_dev), G the Gaussian of sigma 1.5 px: the local RMS of the draw; b may be dev.
 * tmp: 2 H W floats. */
void mr_sigma_bootstrap_map(float *b, const float *dev, size_t H, size_t W, float *tmp);
/* Image features of a model's input x and output y, one (H, W) slice: fc = G(|y - x|) (what the
 * model changed), fg = G(|Sobel y| / 8) (edges), G a Gaussian of sigma 1.5 px. tmp: 2 H W floats. */
void mr_sigma_features(float *fc, float *fg, const float *x, const float *y, size_t H, size_t W,
                       float *tmp);
/* Fit w (mr_nn_meta.feature_weights) by Newton on the mean Gaussian NLL over n calibration pixels,
 * rows (e, log(net SD + eps) - L, log(fc + eps) - L, log(fg + eps) - L, L) with L = log(level),
 * eps = 1e-3 level; starts from the network alone (0, 1, 0, 0). *nll (may be NULL): the minimum. */
mr_status mr_sigma_fit_features(double w[4], double *nll, const double *rows, size_t n);

/* The reference's noise (undersampling networks, variance_head.noise_term; docs/uncertainty.md).
 * The fully sampled RSS reference carries the coil images' noise s (per real and imaginary part,
 * image units) and, where the signal is low, its noise floor: mr_sigma_noise_floor(y, s, C) =
 * sqrt(y^2 + 2 C s^2) - |y| (the bias of the RSS of C coils). With the network's SD (scale 1),
 * the model is SD^2 = sd^2 + b^2 s^2 + f^2 floor^2, (b, f) = mr_nn_meta.noise_term. */
double mr_sigma_noise_floor(double y, double s, int coils);
/* Fit (b, f) by Newton on the mean Gaussian NLL of rows (e, sd, s, floor), n of them, with a free
 * scale a on sd (b and f are returned relative to it); *nll the minimum, *nll0 the network alone
 * (both may be NULL). */
mr_status mr_sigma_fit_noise_term(double bf[2], double *nll, double *nll0, const double *rows,
                                  size_t n);
/* sd (S slices of hw pixels, already scaled by `scale`) += the noise term at each slice's noise SD
 * noise_sd[s] (image units) for an image y from `coils` coils: sd = sqrt(sd^2 + scale^2 (b^2 s^2 +
 * f^2 floor^2)), (b, f) the input method's when the network has them per method (method may be
 * NULL: the pooled ones). No-op when the network has no noise term or noise_sd is NULL; slices
 * with noise_sd <= 0 are left alone. */
void mr_sigma_add_noise_term(float *sd, const float *y, size_t S, size_t hw, const void *sigma,
                             double scale, const double *noise_sd, int coils, const char *method);

/* Append |est - truth| / sd over the foreground (truth > fg x max) to r[*count...]. */
void mr_sigma_collect(double *r, size_t *count, const float *truth, const float *est,
                      const float *sd, size_t S, size_t hw, double fg_fraction);
/* Fraction of r <= z c. */
double mr_sigma_coverage(const double *r, size_t n, double z, double c);
/* Split-conformal scale (sorts r); cov: coverage at 68.3 / 90 / 95 % nominal with it. */
double mr_sigma_conformal_scale(double *r, size_t n, double cov[3]);

/* ---------------------------------------------------------------- uncertainty of CNN outputs
 * (uq_model.c; docs/uncertainty.md) */

typedef enum { MR_UQ_NONE = 0, MR_UQ_REPLICA = 1, MR_UQ_MODEL = 2, MR_UQ_BOTH = 3 } mr_uq_kind;

/* "none" | "replica" | "model" | "both"; MR_ERR_USAGE naming `what` (e.g. "--uncertainty"). */
mr_status mr_uq_kind_parse(mr_uq_kind *out, const char *s, const char *what);
/* The same, and "bootstrap": the model path (MR_UQ_MODEL) with a parametric bootstrap map,
 * *boot = 1 (recon: the reconstruction's, denoise: the model's); *boot = 0 otherwise. */
mr_status mr_uq_kind_parse_boot(mr_uq_kind *out, int *boot, const char *s, const char *what);
const char *mr_uq_kind_name(mr_uq_kind k);

/* The variance network beside a model: DIR/NAME.h5 -> DIR/NAME_sigma.h5. */
mr_status mr_sigma_path_for(char *buf, size_t n, const char *model_path);
/* NAME_sigma_bootstrap.h5 beside NAME.h5: the variance network recalibrated with the model's
 * parametric bootstrap (denoise --uncertainty bootstrap). */
mr_status mr_sigma_bootstrap_path_for(char *buf, size_t n, const char *model_path);
/* 1 when the network combines its SD with the model's bootstrap map (some bootstrap weight > 0):
 * made for --uncertainty bootstrap only. */
int mr_sigma_has_boot_sd(const void *sigma);

/* Load and check a variance network (2 -> 1 channels, a positive calibration_scale): a missing
 * file or calibration is an MR_ERR_INPUT naming the file and `for_what` (the model or method). */
mr_status mr_sigma_load(void **out, const char *path, const char *for_what);
void mr_sigma_free(void *sigma);
double mr_sigma_scale(const void *sigma);          /* its split-conformal scale (all levels) */
/* The model whose errors it predicts: a file name, "none" (the input judges itself) or
 * "zero-filled" (a reconstruction with its zero-filled image as the second input). */
const char *mr_sigma_base(const void *sigma);
/* The input's noise level as the calibration measured it: MAD noise (mr_noise_sigma_mad) / the
 * variance network's percentile level of x. */
mr_status mr_sigma_input_noise(double *noise, const float *x, size_t S, size_t H, size_t W,
                               const void *sigma);
/* The scale for input x: interpolated (linear in log noise, constant outside) between the
 * per-level scales when the network has them, else the single scale. *noise_out (may be NULL)
 * receives the input's noise level (0 when not needed). */
mr_status mr_sigma_scale_for(double *scale, const void *sigma, const float *x, size_t S, size_t H,
                             size_t W, double *noise_out);
/* The scale for an image undersampled R-fold: interpolated (linear in log R, constant outside)
 * between the per-acceleration scales when the network has them, else the single scale. */
double mr_sigma_scale_accel(const void *sigma, double accel);
/* The scale at acceleration R for images the given method made (calibration_methods), else
 * mr_sigma_scale_accel. */
double mr_sigma_scale_method(const void *sigma, const char *method, double accel);
/* ... times the ratio of the scale for the mask's kind (mr_mask_is_equispaced: equispaced or
 * random; calibration_masks) to the pooled one at R: method and mask kind compose. mask NULL or
 * of unknown kind: mr_sigma_scale_method. */
double mr_sigma_scale_full(const void *sigma, const char *method, const float *mask,
                           size_t mask_len, double accel);
const char *mr_sigma_calibration(const void *sigma); /* what the calibration was, as text */
/* The factor of the SD at relative noise level rel (mrpipe calibrate's noise_factors,
 * interpolated in log, constant outside; 1 without them or for rel <= 0). The relative noise
 * level of a slice is its coil noise SD (mrpipe_noise_sd) / the 99.5th percentile of the image
 * volume (mr_sigma_rel_noise_level). */
double mr_sigma_noise_factor(const void *sigma, double rel_noise);
mr_status mr_sigma_rel_noise_level(double *level, const float *y, size_t n);
/* The factor of the SD for a volume whose mask (mask_len columns; its kind read off it) at
 * acceleration R has difficulty d (mr_mask_difficulty; .h5 attribute mrpipe_mask_difficulty):
 * exp(b (log d - c)) with mrpipe calibrate's centre c and slope b for that kind (interpolated
 * linear in log R, constant outside), within [MR_DIFFICULTY_MIN, MR_DIFFICULTY_MAX]; 1 without
 * them, without a mask of known kind or for d <= 0; times, for networks calibrated so, the ghost
 * phase factor exp(b' (log rho - c')) (rho = mr_mask_ghost_phase of the mask), the product within
 * the same bounds. The mask draw moves a volume's coverage by up to 20 points at 4x
 * (docs/uncertainty.md, "Mask difficulty", "Ghost phase"). */
#define MR_DIFFICULTY_MIN 0.5
#define MR_DIFFICULTY_MAX 2.0
double mr_sigma_difficulty_factor(const void *sigma, const float *mask, size_t mask_len,
                                  double accel, double difficulty);
/* sd (S slices of hw) *= the noise factor of each slice of image y with coil noise SD noise_sd[s];
 * no-op without factors or noise_sd, slices with noise_sd <= 0 left alone. */
mr_status mr_sigma_apply_noise_factors(float *sd, const float *y, size_t S, size_t hw,
                                       const void *sigma, const double *noise_sd);
/* A slice's line fill (H rows of W columns, the phase encoding along W as in fastMRI): the
 * foreground (pixels > 5 % of the slice's maximum) share of a foreground pixel's row, averaged
 * over the foreground, sum_h c_h^2 / (W sum_h c_h), c_h the row's foreground count; 0 for an empty
 * slice. Aliasing spreads along the phase-encode line: the fuller the lines, the more of it lands
 * on the object (docs/uncertainty.md, "Line fill"). */
double mr_sigma_line_fill(const float *y, size_t H, size_t W);
/* The SD factor of that slice: exp(b (log l - c)) with mrpipe calibrate's centre c and slope b
 * for the mask's kind (interpolated linear in log R), of the image's input method when the
 * network has slopes per method (method NULL or unknown: the pooled ones), within
 * [MR_DIFFICULTY_MIN, MR_DIFFICULTY_MAX]; 1 without them, without a mask of known kind, or for
 * an empty slice. */
double mr_sigma_fill_factor(const void *sigma, const char *method, const float *mask,
                            size_t mask_len, double accel, const float *y, size_t H, size_t W);
/* All of mrpipe calibrate's factors on an SD volume (S slices of hw = H x W) of image y: the noise
 * factor per slice (mr_sigma_apply_noise_factors; noise_sd NULL: none), then the volume's
 * mask-difficulty factor (mr_sigma_difficulty_factor), which *df_out (may be NULL) receives, then
 * each slice's line-fill factor (mr_sigma_fill_factor). */
mr_status mr_sigma_apply_calibrate_factors(float *sd, const float *y, size_t S, size_t hw, size_t W,
                                           const void *sigma, const char *method,
                                           const double *noise_sd,
                                           const float *mask, size_t mask_len, double accel,
                                           double difficulty, double *df_out);

/* One image of a recalibration set (`mrpipe calibrate`): r, its n foreground ratios |e| / SD (the
 * SD as the network to recalibrate made it), at acceleration accel, with a mask of kind
 * mask_kind ("random", "equispaced") and from input method `method` (either NULL: unknown). */
typedef struct {
    const double *r;
    size_t n;
    double accel;
    const char *mask_kind;
    const char *method;
    double rel_noise; /* its relative noise level (mr_sigma_noise_factor), 0: unknown */
    double difficulty; /* its mask difficulty (mr_mask_difficulty), 0: unknown */
    const double *t;   /* NULL, or per ratio log(input SD / SD) (mr_sigma_log_sd_ratio): the SD map
                        * of the image the network judged, for the input-SD weights */
    int has_ghost;     /* 1: ghost is known */
    double ghost;      /* log of its mask's in-phase aliasing share (mr_mask_ghost_phase) */
    size_t n_slices;   /* 0, or how many slices r is made of, slice_n[s] ratios each in order, */
    const size_t *slice_n;
    const double *fill; /* with the log of each slice's line fill (mr_sigma_line_fill; NAN: empty) */
    const double *tb;   /* NULL, or per ratio log(b / SD): the model's parametric bootstrap map
                         * (mr_denoise_bootstrap_map), for the bootstrap weights */
} mr_recal_image;
/* Split-conformal recalibration of an undersampling variance network (n_calibration_accel >= 2)
 * on images made through the deployment path: per calibration acceleration i with images (nearest
 * R in log; at least min_pixels ratios, else kept), the factor c_i (mr_sigma_conformal_scale of
 * the pooled ratios) multiplies the scale at R_i; per (input method, R_i) and per (mask kind, R_i)
 * likewise (a kind not yet in the network starts from the pooled scale), so that the scale
 * mr_sigma_scale_full gives an image becomes the one its group's ratios ask for. sigma: a loaded
 * mr_nn_model, changed in place; text (tsize) receives the factors and coverage; appended to the
 * network's calibration text. MR_ERR_INPUT for a network without per-acceleration scales, an
 * image of unknown mask kind, no group with enough pixels. */
mr_status mr_sigma_recalibrate(void *sigma, const mr_recal_image *im, size_t nim, size_t min_pixels,
                               const char *source, char *text, size_t tsize);

/* Input SD maps (meta.input_sd). The variance network's SD of an image made by `method` from an
 * input that has its own SD map v (the `uncertainty` of mrpipe recon) is SD x (v scale / SD)^w x k,
 * scale the calibration scale the SD was made with, the ratio kept within [1/1000, 1000]; w and k
 * per input method, fitted by mrpipe calibrate (mr_sigma_recalibrate, when its images have t and
 * the network has no weights yet): w minimises the Gaussian negative log-likelihood of the errors,
 * k = exp(-w mean log ratio) keeps the geometric mean of the SD, so that without v (w taken as 0)
 * the SD keeps its average scale. mr_sigma_input_sd_weight: w (0: none). */
double mr_sigma_input_sd_weight(const void *sigma, const char *method);
double mr_sigma_log_sd_ratio(double v, double sd);
void mr_sigma_apply_input_sd(float *sd, const float *v, size_t n, const void *sigma,
                             const char *method, double scale);

/* The same combination with the model's parametric bootstrap map b (meta.boot_sd, fitted by
 * mrpipe calibrate from the list's `bootstrap` column), applied after the input SD's. */
double mr_sigma_boot_sd_weight(const void *sigma, const char *method);
void mr_sigma_apply_boot_sd(float *sd, const float *b, size_t n, const void *sigma,
                            const char *method, double scale);

/* The parametric bootstrap map of an image model that cleans a reconstruction (the artefact
 * model; pipeline/uq_bootstrap.c): y (S, H, W), the model's output, stands in for the object; its
 * k-space with the input's phase-encode mask cols (ncols >= W columns; images narrower than the
 * mask are zero-padded to it, centred) is reconstructed by `method` (the one that made the input;
 * one coil, a unit map, no noise: mr_bootstrap_dev), the model cleans that once more into y_b, and
 * b = sqrt(G((y_b - y)^2)) per slice (mr_sigma_bootstrap_map). Costs one reconstruction per slice
 * and one model pass. MR_ERR_INPUT for an unknown method or a missing or narrow mask. */
mr_status mr_denoise_bootstrap_map(float *b, const float *y, size_t S, size_t H, size_t W,
                                   const void *model, const char *method, const float *cols,
                                   size_t ncols, const char *what);

/* Robust Gaussian noise level of an image volume: median |HH| / 0.6745 of the finest diagonal
 * Haar band (Donoho & Johnstone 1994). */
mr_status mr_noise_sigma_mad(double *sigma, const float *x, size_t S, size_t H, size_t W);

/* What is known about an image a model judges (all optional: zeros / NULL when unknown). */
typedef struct {
    double accel;             /* its undersampling R (the scale per acceleration) */
    const char *method;       /* the reconstruction method that made it (zf, cs-l1, ...) */
    const float *mask;        /* the phase-encode sampling mask (mask_len >= W columns) */
    size_t mask_len;
    const double *noise_sd;   /* per slice (S values) the coil noise SD of its k-space */
    int coils;                /* the receive coils it was combined from */
    double mask_difficulty;   /* mr_mask_difficulty of its k-space and mask (0: unknown) */
    const float *input_sd;    /* the input's own SD map (S, H, W), e.g. recon's `uncertainty` */
    float *boot_map;          /* non-NULL: the model's parametric bootstrap map (S, H, W) is
                               * made here (mr_denoise_bootstrap_map: needs method and mask) and
                               * combined with the SD by networks with bootstrap weights */
} mr_uq_input;

/* y = model(x) (model NULL: y = x, the image itself is judged) and its SD (S, H, W) in x's units:
 * MODEL the calibrated variance network `sigma`; REPLICA the sample SD of model(x + Rician noise at
 * the MAD level) over `replicas` draws (*noise_est receives the level, may be NULL); BOTH
 * sqrt(var_replica + var_model); NONE leaves sd untouched. y may equal x. info (may be NULL):
 * accel, the input's undersampling R when known (the scale per acceleration of networks
 * calibrated so), else 0 (the scale at the input's noise level, or the single scale); method, for
 * networks calibrated per method at each acceleration (the artefact model's); mask: variance
 * networks with the unsampled-part channel read |F^-1[(1 - mask) F(y)]| from it (zeros, and a
 * warning, without one); noise_sd and coils: networks with a noise term add the reference's
 * noise (without noise_sd: the MAD noise of x and a warning; without coils: 1, Rician);
 * mask_difficulty: calibrate's factor per mask difficulty (mr_sigma_difficulty_factor); input_sd:
 * combined with the SD by networks with input-SD weights (mr_sigma_apply_input_sd; without it the
 * network's SD alone, and a warning). */
mr_status mr_denoise_uq(float *y, float *sd, const float *x, size_t S, size_t H, size_t W,
                        const void *model, const void *sigma, mr_uq_kind kind, int replicas,
                        uint64_t seed, const mr_uq_input *info, double *noise_est,
                        const char *what);

/* Does the variance network read the unsampled part (a third input channel, so the mask)? */
int mr_sigma_wants_mask(const void *sigma);
/* Its SD (S, H, W) of y = model(x) with the unsampled part of y for the given mask (NULL/0: zeros,
 * with a warning naming `what`) and the bootstrap map boot (as mr_sigma_volume; NULL for networks
 * without it); scale: the calibration scale to use. */
mr_status mr_sigma_volume_masked(float *sd, const float *x, const float *y, const float *boot,
                                 size_t S, size_t H, size_t W, const void *sigma, double scale,
                                 const float *mask, size_t mask_len, const char *what);

/* Denoise a float32 volume (S, H, W) slice by slice with a loaded model, whole slices, one plan:
 * the model's normalisation (norm_method "percentile", norm_params[0] = p) divides the input by
 * the p-th percentile of the whole volume and the output is multiplied back (input units kept).
 * out may equal in. MR_ERR_INPUT for NaN/Inf pixels (naming slice, row, column), a slice smaller
 * than the receptive field, a model of another normalisation or input type; `what` names the
 * input in messages. */
mr_status mr_train_denoise_volume(float *out, const float *in, size_t S, size_t H, size_t W,
                                  const void *model, const char *what);

#endif
