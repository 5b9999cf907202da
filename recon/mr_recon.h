/*
 * mr_recon.h: the public header of mrpipe's reconstruction module.
 *
 *  - Centred orthonormal 2-D FFTs over the last two axes of a batch (coils), FFTW plans made once
 *    and reused, wisdom cached, threads. Centring follows fastMRI (fastmri/fftc.py):
 *    image = fftshift(ifft2(ifftshift(kspace), norm="ortho")), which for even sizes equals BART's
 *    `fft -i -u 3`.
 *  - Sampling masks with fastMRI's behaviour and numpy's MT19937 RandomState, so that the same seed
 *    gives fastMRI's exact masks; 2-D variable-density Poisson disc.
 *  - Zero-filled reconstruction: IFFT, RSS coil combination, centre crop (readout oversampling
 *    removal when encoded x = 2 recon x).
 */
#ifndef MR_RECON_H
#define MR_RECON_H

#include <stdint.h>

#include "mr_core.h"
#include "mr_io.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ================================================================ FFT */

typedef struct mr_fft_plan mr_fft_plan;

typedef enum { MR_FFT_FORWARD = -1, MR_FFT_INVERSE = +1 } mr_fft_direction;

/* Plan centred orthonormal 2-D transforms of `batch` contiguous (h, w) complex64 images, in place
 * on caller buffers (any buffer of batch*h*w values, 64-byte aligned for speed; any alignment works).
 * Planner effort from $MRPIPE_FFTW_PLANNER (estimate|measure, default measure with the wisdom cache
 * at $XDG_CACHE_HOME/mrpipe/fftw-wisdom-f32). Threads: mr_threads(). */
mr_status mr_fft_plan_create(mr_fft_plan **out, size_t batch, size_t h, size_t w);

/* Transform data (batch, h, w) in place. Thread-safe for distinct buffers. Fails only with
 * MR_ERR_NOMEM (odd sizes need one temporary image). */
mr_status mr_fft_execute(const mr_fft_plan *plan, mr_fft_direction dir, mr_cfloat *data);

void mr_fft_plan_destroy(mr_fft_plan *plan);

/* Save accumulated FFTW wisdom to the cache (best effort, never fails). */
void mr_fft_save_wisdom(void);

/* FFTW's version string. */
const char *mr_fft_version(void);

/* fftshift / ifftshift of one (h, w) image from src to dst (dst != src). */
void mr_fftshift2(mr_cfloat *dst, const mr_cfloat *src, size_t h, size_t w);
void mr_ifftshift2(mr_cfloat *dst, const mr_cfloat *src, size_t h, size_t w);

/* ================================================================ numpy-compatible MT19937 */

/* numpy.random.RandomState's generator: MT19937 with numpy's seeding, 53-bit doubles, and legacy
 * bounded integers (masked rejection), so that C draws equal numpy's for the same seed. */
typedef struct {
    uint32_t mt[624];
    int mti;
} mr_mt19937;

void mr_mt_seed(mr_mt19937 *rng, uint32_t seed);                              /* RandomState(seed) */
void mr_mt_seed_array(mr_mt19937 *rng, const uint32_t *key, size_t len);       /* tuple/array seed */
uint32_t mr_mt_next32(mr_mt19937 *rng);
double mr_mt_random_sample(mr_mt19937 *rng);                 /* RandomState.random_sample() */
long mr_mt_randint(mr_mt19937 *rng, long low, long high);    /* RandomState.randint(low, high) */

/* ================================================================ sampling masks */

typedef enum {
    MR_MASK_RANDOM = 0,          /* fastMRI RandomMaskFunc */
    MR_MASK_EQUISPACED,          /* fastMRI EquiSpacedMaskFunc */
    MR_MASK_EQUISPACED_FRACTION, /* fastMRI EquispacedMaskFractionFunc */
    MR_MASK_POISSON,             /* 2-D variable-density Poisson disc (BART `poisson` family) */
} mr_mask_type;

typedef struct {
    mr_mask_type type;
    double accel;            /* acceleration R > 1 */
    double center_fraction;  /* fraction of columns fully sampled at the centre, 0 <= cf < 1/R..1 */
    const uint32_t *seed;    /* seed words: 1 word = RandomState(int), more = init_by_array (a
                                fastMRI per-file seed tuple(map(ord, fname))); NULL = seed 0 */
    size_t seed_len;
} mr_mask_params;

/* Parse "random", "equispaced", "equispaced-fraction", "poisson". MR_ERR_USAGE otherwise. */
mr_status mr_mask_type_parse(mr_mask_type *out, const char *name);
const char *mr_mask_type_name(mr_mask_type type);

/* fastMRI 1-D column mask over w columns (out[w] in {0, 1}): the union of the centre block and the
 * acceleration pattern, drawn exactly as fastMRI's MaskFunc.__call__(shape, seed=seed). *num_low
 * (may be NULL) receives the centre column count. MR_ERR_USAGE for Poisson or bad parameters. */
mr_status mr_mask_create_1d(float *out, size_t w, const mr_mask_params *p, size_t *num_low);

/* 2-D mask (h, w): 1-D types repeated along rows (h = readout); Poisson is a variable-density
 * Poisson disc over both axes with a fully sampled centre (center_fraction of each axis), its
 * sample count within 2 % of h*w/R. */
mr_status mr_mask_create_2d(float *out, size_t h, size_t w, const mr_mask_params *p);

/* Infer the sampling pattern of already undersampled k-space (C, H, W): a location is sampled when
 * any coil holds a non-zero value. Writes (H, W) 0/1 into out; returns the sampled fraction. */
double mr_mask_infer(float *out, const mr_cfloat *kspace, size_t coils, size_t h, size_t w);

/* Is the 1-D column mask (n values, non-zero = sampled) equispaced outside its fully sampled centre
 * (the gaps between the outer lines differ by at most 1)? 1 yes, 0 no (random-like), -1 cannot
 * tell (no sampled centre, fewer than 4 outer lines). */
int mr_mask_is_equispaced(const float *cols, size_t n);

/* How hard a phase-encode mask is on this data (mask difficulty, variance networks' calibration):
 * the k-space energy of the columns of one slice (C, H, W), minus the energy its noise brings
 * (2 noise_sd^2 H C per column: noise_sd per real and imaginary part, 0 when unknown), added into
 * acc[W]. */
void mr_kspace_column_energy_add(double *acc, const mr_cfloat *kspace, size_t coils, size_t h,
                                 size_t w, double noise_sd);
/* The mask difficulty: the signal's k-space energy that lies, by prediction, in the columns the
 * mask (cols, n values, non-zero = acquired) did not acquire, over what a mask of the nominal
 * acceleration R would miss on average on the same data. The acquired columns' energies (acc,
 * from mr_kspace_column_energy_add; floored at 1e-9 of the largest) are interpolated linearly in
 * log energy over the column index into the gaps (constant beyond the outermost acquired column);
 * with E_miss their sum over the unacquired columns, E_outer the sum over all columns outside the
 * fully sampled centre (n_c columns through n / 2) and p = (n / R - n_c) / (n - n_c) the fraction
 * of outer columns a fastMRI mask of acceleration R acquires (R <= 1: this mask's own fraction),
 * *difficulty = E_miss / ((1 - p) E_outer): 1 for a draw that misses an average share of the
 * energy, above 1 for one that missed heavy columns near the centre. It does not depend on the
 * anatomy's spectrum, only on where this draw's gaps fell in it (docs/uncertainty.md, "Mask
 * difficulty"). *difficulty = 0 when nothing is missing; MR_ERR_INPUT when fewer than 2 columns are
 * acquired, there is no sampled centre or no energy is left. */
mr_status mr_mask_difficulty(double *difficulty, const double *acc, const float *cols, size_t n,
                             double accel);

/* The in-phase share of a 1-D column mask's aliasing (ghost phase; variance networks'
 * calibration): with P(m) = sum_k cols[k] exp(2 pi i (k - n/2) m / n) the mask's point-spread
 * function about the k-space centre n / 2, rho = sum_{m != 0} Re(P)^2 / sum_{m != 0} |P|^2. A
 * ghost adds to a magnitude image through its part in phase with the image: for an object of
 * slowly varying phase, the magnitude error of aliasing grows with rho. Equispaced masks split by
 * their offset: at 4x, rho ~ 1 (every ghost real) or ~ 0.5 (the first and third ghosts in
 * quadrature); random masks stay near their mean. *rho in [0, 1]; MR_ERR_INPUT for n < 2 or no
 * aliasing (all or no columns acquired). */
mr_status mr_mask_ghost_phase(double *rho, const float *cols, size_t n);

/* ================================================================ zero-filled reconstruction */

/* A reusable plan for zero-filled reconstruction of slices of (C, H, W) k-space into (out_h, out_w)
 * magnitude images (RSS over coils of the centred IFFT, centre-cropped with offset (n - crop) / 2;
 * zero-padded when the output is larger). */
typedef struct mr_zf_plan mr_zf_plan;

mr_status mr_zf_plan_create(mr_zf_plan **out, size_t coils, size_t h, size_t w, size_t out_h,
                            size_t out_w);

/* Reconstruct one slice. `kspace` (C, H, W) is not modified. `mask` (H, W) or NULL: applied before
 * the transform (masked zeros are +0.0). `coil_images` (C, out_h, out_w) or NULL receives the
 * cropped complex coil images. */
mr_status mr_zf_execute(mr_zf_plan *plan, float *out, mr_cfloat *coil_images,
                        const mr_cfloat *kspace, const float *mask);

void mr_zf_plan_destroy(mr_zf_plan *plan);

/* Readout-oversampling removal in k-space: (C, H, W) -> (C, out_h, W) by a centred inverse FFT,
 * a centre crop of the readout to out_h rows (offset (H - out_h) / 2) and a forward FFT, so that later
 * iterative methods work on the smaller grid. Image-domain results equal those of cropping after the
 * reconstruction. */
typedef struct mr_os_plan mr_os_plan;

mr_status mr_os_plan_create(mr_os_plan **out, size_t coils, size_t h, size_t w, size_t out_h);
mr_status mr_os_execute(mr_os_plan *plan, mr_cfloat *out, const mr_cfloat *kspace);
void mr_os_plan_destroy(mr_os_plan *plan);

/* Centre crop (or zero-pad) an (h, w) complex image to (oh, ow): offset (n - crop) / 2 (floor). */
void mr_crop_c64(mr_cfloat *dst, size_t oh, size_t ow, const mr_cfloat *src, size_t h, size_t w);
void mr_crop_f32(float *dst, size_t oh, size_t ow, const float *src, size_t h, size_t w);

/* RSS over coils: out[p] = sqrt(sum_c |img[c][p]|^2) for n pixels per coil. */
void mr_rss(float *out, const mr_cfloat *img, size_t coils, size_t n);

/* ================================================================ unsampled part (unsampled.c) */

/* out = |F^-1[(1 - M) F(img)]| for S real (H, W) images and one (H, W) mask in centred k-space
 * (non-zero = acquired): the part of each image that lies in k-space never acquired (where the
 * aliasing of a zero-filled reconstruction of the image would land). */
mr_status mr_unsampled_part(float *out, const float *img, const float *mask, size_t S, size_t H,
                            size_t W);
/* The same with a phase-encode mask of ncols >= W columns (the same on every row): images narrower
 * than the mask (cropped after the reconstruction) are zero-padded to ncols, centred, first. */
mr_status mr_unsampled_part_cols(float *out, const float *img, size_t S, size_t H, size_t W,
                                 const float *cols, size_t ncols);

/* ================================================================ vectors */

/* Complex float vectors of n values; reductions accumulate in double. OpenMP inside. */
double complex mr_vec_dot(const mr_cfloat *x, const mr_cfloat *y, size_t n); /* sum conj(x) y */
double mr_vec_norm2(const mr_cfloat *x, size_t n);                           /* sum |x|^2 */
void mr_vec_axpy(mr_cfloat *y, mr_cfloat a, const mr_cfloat *x, size_t n);   /* y += a x */
void mr_vec_xpay(mr_cfloat *y, mr_cfloat a, const mr_cfloat *x, size_t n);   /* y = x + a y */
void mr_vec_scale(mr_cfloat *x, float a, size_t n);                          /* x *= a */
void mr_vec_copy(mr_cfloat *dst, const mr_cfloat *src, size_t n);
void mr_vec_zero(mr_cfloat *x, size_t n);
/* Deterministic complex Gaussian vector (MT19937 seeded by seed) for tests and adjoint checks. */
void mr_vec_randn(mr_cfloat *x, size_t n, uint32_t seed);

/* ================================================================ linear operators */

/* A linear operator A: C^n_in -> C^n_out with forward, adjoint and (optionally) normal A^H A.
 * Solvers see only operators and vectors (BART's linops, ../shared/STYLE.md). Operators are not
 * thread-safe (they own workspaces); build one per thread. */
typedef struct mr_linop mr_linop;

typedef struct {
    mr_status (*forward)(void *data, mr_cfloat *out, const mr_cfloat *in);
    mr_status (*adjoint)(void *data, mr_cfloat *out, const mr_cfloat *in);
    mr_status (*normal)(void *data, mr_cfloat *out, const mr_cfloat *in); /* NULL: A^H (A x) */
    void (*destroy)(void *data);                                         /* NULL: nothing */
} mr_linop_ops;

/* Wrap ops + data (ownership of data passes to the operator, also on failure). */
mr_status mr_linop_create(mr_linop **out, size_t n_in, size_t n_out, const mr_linop_ops *ops,
                          void *data);
size_t mr_linop_n_in(const mr_linop *A);
size_t mr_linop_n_out(const mr_linop *A);
mr_status mr_linop_forward(const mr_linop *A, mr_cfloat *out, const mr_cfloat *in);
mr_status mr_linop_adjoint(const mr_linop *A, mr_cfloat *out, const mr_cfloat *in);
mr_status mr_linop_normal(const mr_linop *A, mr_cfloat *out, const mr_cfloat *in);

/* x -> A(B(x)); takes ownership of A and B (destroyed with the composition, or on failure). */
mr_status mr_linop_compose(mr_linop **out, mr_linop *A, mr_linop *B);

/* Frees the operator and its data; NULL is a no-op. */
void mr_linop_destroy(mr_linop *A);

/* The adjoint test on random vectors: |<Ax, y> - <x, A^H y>| / (||Ax|| ||y||). Returns a negative
 * value when an application failed. */
double mr_linop_adjoint_error(const mr_linop *A, uint32_t seed);

/* Standard operators (in, out shapes in C order):
 *  - fft2c: centred orthonormal 2-D FFT over (C, H, W) -> (C, H, W);
 *  - mask: (C, H, W) -> (C, H, W), multiply by a 0/1 (H, W) pattern (copied);
 *  - sens: (H, W) -> (C, H, W), x -> s_c x (maps copied). */
mr_status mr_linop_fft2c(mr_linop **out, size_t coils, size_t h, size_t w);
mr_status mr_linop_mask(mr_linop **out, const float *mask, size_t coils, size_t h, size_t w);
mr_status mr_linop_sens(mr_linop **out, const mr_cfloat *maps, size_t coils, size_t h, size_t w);

/* ================================================================ reconstruction methods */

/* Parameters common to `mrpipe recon` methods (each method documents which it uses). */
typedef struct {
    double lambda;            /* regularisation weight, BART `pics -r` meaning */
    int has_lambda;           /* 0: the method's default */
    long iters;               /* iterations; 0: the method's default */
    uint32_t seed;            /* randomness (e.g. wavelet shifts) */
} mr_recon_params;

/* What a method reports about one slice (for logs and non-convergence warnings). */
typedef struct {
    long iterations;          /* iterations run */
    double residual;          /* final relative residual / objective change (method-defined) */
    int converged;            /* 1 when the method's stopping rule was met (or it has none) */
    double scale;             /* data scaling applied (1 when none) */
} mr_recon_stats;

/* A reconstruction method: state made once per geometry, run per slice. run gets the (already
 * masked) k-space (C, H, W), the sampling pattern (H, W) (1 = acquired), given coil maps (C, H, W)
 * or NULL (the method estimates them when it needs them), and writes the complex coil-combined
 * image (H, W) on the k-space grid; the caller crops. */
typedef struct {
    const char *name;
    const char *summary;
    mr_status (*create)(void **state, const mr_recon_params *p, size_t coils, size_t h, size_t w);
    mr_status (*run)(void *state, mr_cfloat *image, mr_recon_stats *stats,
                     const mr_cfloat *kspace, const float *mask, const mr_cfloat *sens);
    void (*destroy)(void *state);
} mr_recon_method;

/* The methods, NULL-terminated. */
extern const mr_recon_method *const mr_recon_methods[];

/* By name; NULL when unknown. */
const mr_recon_method *mr_recon_method_find(const char *name);

/* Replace *state (may be NULL) by a fresh one made from rp for (coils, h, w): stateful methods
 * (cs-l1's random wavelet shifts) then start their sequence anew, as a state made for one run
 * (mr_bootstrap_dev's). On failure *state is NULL. */
mr_status mr_recon_state_renew(const mr_recon_method *m, void **state, const mr_recon_params *rp,
                               size_t coils, size_t h, size_t w);

/* ================================================================ parallel imaging (issue 4, part 1)
 * ESPIRiT coil maps, SENSE (CG), noise pre-whitening, BART's data scaling. */

typedef struct {
    long kernel;        /* calibration kernel size (square)  [6, as bart ecalib] */
    long cal_size;      /* calibration region size (square); 0: the largest fully sampled centre
                           block found in the mask, at most 24  [0] */
    double threshold;   /* singular value threshold relative to the largest  [0.001, bart -t] */
    double crop;        /* eigenvalue crop threshold  [0.8, bart -c] */
} mr_espirit_params;

/* Defaults as bart ecalib -m1. */
void mr_espirit_params_default(mr_espirit_params *p);

/* ESPIRiT coil maps (C, H, W) (one set, as `bart ecalib -m1`) from k-space (C, H, W) and its
 * sampling pattern (H, W). MR_ERR_INPUT when the calibration region is smaller than the kernel
 * (message names both sizes) or there is one coil. */
mr_status mr_espirit_maps(mr_cfloat *maps, const mr_cfloat *kspace, const float *mask, size_t coils,
                          size_t h, size_t w, const mr_espirit_params *p);

/* BART `pics` data scaling: the factor k-space is multiplied by before the reconstruction, so that
 * `--lambda L` means what `bart pics -r L` means; the result is divided by it afterwards (-S). */
double mr_recon_bart_scale(const mr_cfloat *kspace, size_t coils, size_t h, size_t w);

/* The calibration region BART's calib_geom finds: starting from the centre sample, the centred
 * block (origin (h - ch) / 2, o + (min(w, max_w) - cw) / 2 with o = (w - min(w, max_w)) / 2, as
 * BART's window-then-grow) grows by one row, then one column, in turn while every sample of it is
 * acquired in mask (H, W), up to max_h x max_w; then, when kspace (C, H, W) is given, it moves
 * along the readout (rows) to the position of maximum energy: among all positions (sampled_only 0,
 * as BART) or among fully sampled ones (1). (*ch, *cw) = (0, 0) when the centre sample itself is
 * not acquired. */
void mr_calib_region_find(size_t *y0, size_t *x0, size_t *ch, size_t *cw, const float *mask,
                          const mr_cfloat *kspace, size_t coils, size_t h, size_t w, size_t max_h,
                          size_t max_w, int sampled_only);

/* ---- conjugate gradients (recon/cg.c) */

/* CG workspace for vectors of n values (made once, reused for every solve). */
typedef struct mr_cg mr_cg;

mr_status mr_cg_create(mr_cg **out, size_t n);
void mr_cg_destroy(mr_cg *cg); /* NULL is a no-op */

/* Solve (A^H A + lambda I) x = b (Hestenes-Stiefel CG on the normal equations; A^H A applied
 * through mr_linop_normal, so composed operators use their factors' normals). x (n = A's n_in)
 * holds the start (zero it for a cold start, as BART) and receives the solution; b (n). Stops after
 * max_iters iterations or when ||r|| <= tol ||b|| (tol 0: run all iterations, as BART's CG).
 * stats: iterations run, residual = ||b - (A^H A + lambda I) x|| / ||b|| (the recursive residual),
 * converged = residual <= conv_tol (a stopping rule met early also counts), scale untouched.
 * CG breaking down (p^H (A^H A + lambda I) p <= 0 or not finite: lambda 0 on a singular system,
 * NaN input) stops early with converged = 0 and MR_OK: the caller reports it. Errors: only those
 * of the operator. */
mr_status mr_cg_solve(mr_cg *cg, mr_cfloat *x, mr_recon_stats *stats, const mr_linop *A,
                      double lambda, const mr_cfloat *b, long max_iters, double tol,
                      double conv_tol);

/* ---- SENSE (recon/sense.c) */

/* The SENSE forward model E = M F S: image (H, W) -> k-space (C, H, W), S the coil maps (C, H, W),
 * F the centred orthonormal FFT per coil, M the sampling pattern (H, W); maps and mask are copied.
 * E's normal is S^H F^H M F S (the mask's normal is itself). */
mr_status mr_linop_sense(mr_linop **out, const mr_cfloat *maps, const float *mask, size_t coils,
                         size_t h, size_t w);

/* `mrpipe recon --method sense`: CG-SENSE with Tikhonov regularisation as `bart pics -l2 -r L -S`:
 * (E^H E + lambda I) x = E^H (k / s), 30 iterations from x = 0, image = s x (BART's scaling s),
 * maps from --sens or ESPIRiT (bart ecalib -m1 defaults) per slice. */
extern const mr_recon_method mr_method_sense;

/* ---- noise pre-whitening (recon/noise.c) */

/* Noise covariance Psi (C, C), Psi[a][b] = sum_n x_na conj(x_nb) / N, of noise samples X (N, C)
 * (N >= 1; zero-mean noise assumed, as scanners' noise scans), its Cholesky factor Psi = L L^H
 * (double precision), and the
 * whitening matrix Wt = sqrt(sigma2) L^-1 (C, C), row-major, lower triangular, with sigma2 the mean
 * of Psi's diagonal: whitened noise has covariance sigma2 I, so images keep their units.
 * psi (C, C) and sigma2 may be NULL. MR_ERR_INPUT when Psi is not positive definite (a dead or
 * duplicated channel: the message names the coil) or the samples hold NaN/Inf. */
mr_status mr_noise_whitener(mr_cfloat *wt, mr_cfloat *psi, double *sigma2, const mr_cfloat *noise,
                            size_t n, size_t coils);

/* Apply wt (C, C) across coils at every one of n points of data (C, n), in place:
 * data[:, p] = wt data[:, p]. Zeros (unsampled points) stay zeros. */
void mr_noise_whiten(mr_cfloat *data, const mr_cfloat *wt, size_t coils, size_t n);

/* ================================================================ compressed sensing (issue 4, part 2)
 * Wavelets, finite differences, FISTA, ADMM / primal-dual, cs-l1 and cs-tv. */

/* ---- proximal operators: out = argmin_z 1/2 ||z - in||^2 + t g(z) (in place allowed) */
typedef struct {
    mr_status (*apply)(void *data, mr_cfloat *out, const mr_cfloat *in, float t);
    void *data;
} mr_prox;

/* Complex soft thresholding of n values: out = max(0, 1 - tau / |in|) in. */
void mr_soft_threshold(mr_cfloat *out, const mr_cfloat *in, float tau, size_t n);

/* ---- 2-D orthogonal wavelet transform (recon/wavelet.c)
 * Daubechies-2 (4 taps, as BART's default `dau2`), periodic boundaries, separable Mallat
 * decomposition of (h, w) complex images into (h, w) coefficients (orthogonal: the adjoint is the
 * inverse). An axis is split at a level while its current length is >= min(axis size, min_size)
 * (BART pics: 16); an odd length n splits its first n - 1 samples and carries the last one in the
 * low band (still orthogonal). A circular shift (dy, dx) of the image precedes the transform (BART's
 * random cycle spinning). Any size >= 1 works (sizes below 2 are not split). */
typedef struct mr_wavelet mr_wavelet;

mr_status mr_wavelet_create(mr_wavelet **out, size_t h, size_t w, size_t min_size);
void mr_wavelet_destroy(mr_wavelet *wt);
/* Levels along y (rows) and x (columns): the random shift is drawn from [0, 2^levels). */
void mr_wavelet_levels(const mr_wavelet *wt, int *levels_y, int *levels_x);
/* Size (rows, columns) of the coarsest (approximation) band, at the top left of the coefficients. */
void mr_wavelet_coarse_size(const mr_wavelet *wt, size_t *ch, size_t *cw);
void mr_wavelet_set_shift(mr_wavelet *wt, size_t dy, size_t dx);
/* coef = W shift(img); img = shift^-1 W^H coef. Not thread-safe for one wt (own workspace);
 * OpenMP inside. coef != img. */
void mr_wavelet_forward(mr_wavelet *wt, mr_cfloat *coef, const mr_cfloat *img);
void mr_wavelet_inverse(mr_wavelet *wt, mr_cfloat *img, const mr_cfloat *coef);

/* The transform (with a fixed shift) as an operator (h, w) -> (h, w). */
mr_status mr_linop_wavelet(mr_linop **out, size_t h, size_t w, size_t min_size, size_t dy,
                           size_t dx);

/* Prox of lambda ||W x||_1 with random cycle spinning (seeded MT19937), as BART's
 * prox_wavelet_thresh: x -> W^H soft(W shift x, lambda t) with a new random shift at each call.
 * shifts > 1 averages that over `shifts` random shifts per call (translation-invariant cycle
 * spinning, Coifman & Donoho 1995): less shift noise in the iterates for a few extra transforms.
 * random_shift 0: shift (0, 0) only. skip_coarse: leave the approximation band unthresholded.
 * Owns its wavelet and workspace; destroy with mr_prox_wavelet_destroy. */
mr_status mr_prox_wavelet_create(mr_prox *out, size_t h, size_t w, size_t min_size, float lambda,
                                 int random_shift, int shifts, int skip_coarse, uint32_t seed);
void mr_prox_wavelet_destroy(mr_prox *p);

/* ---- finite differences and isotropic TV (recon/tv.c)
 * grad: (h, w) -> (2, h, w): periodic forward differences, [0] along y (rows), [1] along x. */
mr_status mr_linop_grad2(mr_linop **out, size_t h, size_t w);
/* Prox of lambda sum_p sqrt(|g0_p|^2 + |g1_p|^2) on (2, hw) values: joint soft threshold.
 * Destroy with mr_prox_l21_destroy. */
mr_status mr_prox_l21_create(mr_prox *out, size_t hw, float lambda);
void mr_prox_l21_destroy(mr_prox *p);

/* ---- solvers (recon/fista.c, recon/admm.c); they see only operators and vectors */

/* Largest eigenvalue of A^H A by power iteration (iters steps from a seeded random vector). */
mr_status mr_linop_normal_norm(double *out, const mr_linop *A, long iters, uint32_t seed);

typedef struct {
    long iters;    /* iterations (maximum) */
    double step;   /* gradient step; <= 0: 0.95 / ||A^H A|| by power iteration (20 steps) */
    double tol;    /* converged when ||x_k - x_{k-1}|| <= tol ||x_k|| at the end */
    int early_stop; /* 1: stop as soon as the change is below tol */
    int output_gradient_point; /* 1: return the last z - step A^H (A z - y), the point before the
                                  final prox (what BART's pics returns), instead of the prox point */
} mr_fista_params;

/* FISTA (Beck & Teboulle 2009) for min_x 1/2 ||A x - y||^2 + g(x), g given by its prox.
 * x (n_in) holds the start and receives the result; y (n_out). stats: iterations, the final
 * relative change, converged (change <= tol). Workspace allocated once per call. */
mr_status mr_fista_solve(mr_cfloat *x, mr_recon_stats *stats, const mr_linop *A, const mr_cfloat *y,
                         const mr_prox *prox, const mr_fista_params *p);

typedef struct {
    long iters;      /* outer iterations (maximum) */
    long cg_iters;   /* CG iterations for the x-update (warm-started) */
    double rho;      /* augmented Lagrangian penalty (on the data scaled as BART) */
    double alpha;    /* over-relaxation in [1, 1.8] (BART: 1.6) */
    double abstol, reltol; /* Boyd et al. 2011 section 3.3.1 stopping rule */
    int adapt_rho;   /* residual balancing (Boyd 3.4.1): rho *= 2 or /= 2 when r/s > 10 */
    double tol;      /* also converged when the relative primal residual ends <= tol */
} mr_admm_params;

/* ADMM (Boyd et al. 2011) for min_x 1/2 ||A x - y||^2 + g(G x): x-update by CG on
 * (A^H A + rho G^H G) x = A^H y + rho G^H (z - u); z = prox_{g/rho}(alpha G x + (1-alpha) z + u).
 * stats: iterations, residual = primal residual ||Gx - z|| / max(||Gx||, ||z||), converged when
 * Boyd's rule held (the loop then stops) or the final residual is <= tol. */
mr_status mr_admm_solve(mr_cfloat *x, mr_recon_stats *stats, const mr_linop *A, const mr_cfloat *y,
                        const mr_linop *G, const mr_prox *prox, const mr_admm_params *p);

/* ---- methods (recon/cs.c): cs-l1 (FISTA, wavelets) and cs-tv (ADMM, isotropic TV), model
 * E = M F S, BART data scaling, output in input units. */
extern const mr_recon_method mr_method_cs_l1, mr_method_cs_tv;

/* ================================================================ uncertainty (issue 6)
 * Measurement-noise uncertainty: pseudo-multiple-replica Monte Carlo (Robson PM et al., MRM 60:895,
 * 2008) through any method of the table (recon/replica.c), and the analytic SENSE g-factor
 * (Pruessmann et al., MRM 42:952, 1999) as its cross-check (recon/gfactor.c). docs/uncertainty.md.
 * Covariances follow recon/noise.c: Psi[a][b] = E[x_a conj(x_b)] (C, C), row-major, k-space units. */

/* Cholesky factor Psi = L L^H (lower, row-major (C, C)) of a noise covariance. MR_ERR_INPUT when
 * Psi is not Hermitian positive definite (the message names the coil) or holds NaN/Inf. */
mr_status mr_noise_cov_cholesky(mr_cfloat *chol, const mr_cfloat *psi, size_t coils);

/* Noise covariance from the k-space itself, for data without a noise scan: the acquired samples
 * (mask (H, W) != 0, value != 0) of the outer k-space, max(|ky| / (H/2), |kx| / (W/2)) >= 0.75
 * (falling back to >= 0.5, then all acquired samples, when fewer than 64 are there), a robust
 * per-coil variance sigma_c^2 = (1.4826 MAD(re))^2 + (1.4826 MAD(im))^2. Diagonal: psi (C, C) gets
 * sigma_c^2 on the diagonal and zeros elsewhere. Signal left at the edge of k-space makes this an
 * over-estimate (documented). MR_ERR_INPUT when no sample is acquired or a coil's estimate is 0. */
mr_status mr_noise_cov_estimate(mr_cfloat *psi, const mr_cfloat *kspace, const float *mask,
                                size_t coils, size_t h, size_t w);

/* The mean noise SD per real and imaginary part of C coils with covariance psi (C, C):
 * sqrt(mean_c Re psi[c][c] / 2). With mrpipe's orthonormal FFTs it is the same in k-space and in
 * the coil images: the noise SD of the image units (variance networks' noise term). */
double mr_noise_sd_of_cov(const mr_cfloat *psi, size_t coils);
/* *sd = mr_noise_sd_of_cov of mr_noise_cov_estimate(kspace, mask, ...): the coil noise SD of
 * k-space without a noise scan (0 and the estimate's error when it fails). */
mr_status mr_noise_sd_estimate(double *sd, const mr_cfloat *kspace, const float *mask, size_t coils,
                               size_t h, size_t w);

/* Add complex Gaussian noise of covariance L L^H to kspace (C, H, W) at the acquired samples only
 * (mask (H, W) != 0; mask NULL: everywhere): k[:, p] += L z, z ~ CN(0, I) (each real and imaginary
 * part of z with variance 1/2) drawn from rng. */
void mr_replica_add_noise(mr_cfloat *kspace, const mr_cfloat *chol, const float *mask, size_t coils,
                          size_t h, size_t w, mr_mt19937 *rng);

typedef struct {
    long replicas;     /* N >= 2 */
    uint32_t seed;     /* replica r of stream s draws from MT19937 init_by_array {seed, s, r} */
    uint32_t stream;   /* e.g. the slice index */
    int complex_sd;    /* 0: std of the magnitude |x| (what users compare with |error|);
                          1: sqrt(E |x - E x|^2) of the complex image */
    int threads;       /* > 1 (with rp): up to this many replicas at once; <= 1: one at a time */
    const mr_recon_params *rp; /* given: every replica runs in a fresh state made from rp (states
                                  are not thread-safe, and stateful methods such as cs-l1's random
                                  shifts then repeat their sequence in each replica); NULL: all
                                  replicas run in `state`, one after another */
} mr_replica_params;

/* Pseudo-multiple-replica standard deviation: for r = 0..N-1, run method (with state, made by the
 * caller for (coils, h, w)) on kspace + noise (mr_replica_add_noise with chol) with the same mask
 * and coil maps sens (C, H, W) or NULL, and write the per-pixel sample std (N - 1 denominator) of
 * the output images to sd (H, W). Pass the maps the original reconstruction used, so that the
 * replicas differ by noise only. With p->rp and p->threads > 1, batches of replicas run
 * concurrently (the methods' inner OpenMP loops then run single-threaded); otherwise one after
 * another with the methods' own threads. Results are accumulated in replica order: deterministic
 * for (seed, stream) (and the thread count, through the methods' own reductions).
 * MR_ERR_USAGE for N < 2; errors of the method. */
mr_status mr_replica_sd(float *sd, const mr_recon_method *method, void *state,
                        const mr_cfloat *kspace, const float *mask, const mr_cfloat *sens,
                        const mr_cfloat *chol, size_t coils, size_t h, size_t w,
                        const mr_replica_params *p);

/* Parametric bootstrap of the reconstruction's own error (recon/bootstrap.c): with the magnitude
 * of the reconstruction xhat (h, w) standing in for the object, k = mask . F (sens |xhat|) is
 * reconstructed once more by method (a fresh state made from rp) with the same mask and coil maps
 * sens (C, h, w; required: MR_ERR_USAGE without), and dev (h, w) = |x_b| - |xhat|: one draw of the
 * error the method makes on an object like xhat with this mask. Costs one reconstruction; no noise
 * is added. Errors of the method. */
mr_status mr_bootstrap_dev(float *dev, const mr_recon_method *method, const mr_recon_params *rp,
                           const mr_cfloat *xhat, const float *mask, const mr_cfloat *sens,
                           size_t coils, size_t h, size_t w);

/* Analytic SENSE g-factor map g (H, W) for a Cartesian R-fold equispaced undersampling of the
 * columns (x, the phase-encode axis of mrpipe's masks; W % R == 0): pixel (y, x) aliases with
 * (y, x + k W / R), and over each aliased set of pixels with a non-zero map,
 * g_p = sqrt([(S^H Psi^-1 S)^-1]_pp [S^H Psi^-1 S]_pp). maps (C, H, W); psi (C, C) or NULL for
 * the identity. Pixels whose maps are all zero get g = 0. MR_ERR_INPUT for W % R != 0, a
 * non-positive-definite Psi or a singular aliasing set (the message names the pixel). */
mr_status mr_sense_gfactor(float *g, const mr_cfloat *maps, const mr_cfloat *psi, size_t coils,
                           size_t h, size_t w, size_t accel);

/* ================================================================ simulation from real images */

/* Smooth synthetic coil sensitivities (C, h, w): coils evenly spaced on an ellipse around the field
 * of view, Gaussian fall-off (sigma half the larger side), a distinct phase offset and a gentle
 * phase ramp per coil; scaled so that max over pixels of sqrt(sum_c |s_c|^2) = 1. */
mr_status mr_sim_coil_maps(mr_cfloat *maps, size_t coils, size_t h, size_t w);

/* A smooth background phase (h, w) in radians: a random low-order polynomial (|phase| < ~pi),
 * deterministic in seed. */
void mr_sim_background_phase(float *phase, size_t h, size_t w, uint32_t seed);

/* Simulate one slice of multi-coil k-space from a real magnitude image img (h, w):
 * coil image_c = pad_rows(img, oversample * h) * maps_c * exp(i phase); kspace = FFT2c(coil image) +
 * complex Gaussian noise with std sigma (per real and imaginary part). maps and phase are
 * (C, oversample*h, w) and (oversample*h, w); plan is a forward plan over (C, oversample*h, w).
 * The noise is drawn from MT19937 streams seeded by (seed, slice, coil): deterministic whatever the
 * thread count. */
mr_status mr_sim_slice_kspace(mr_cfloat *kspace, const float *img, size_t h, size_t w,
                              size_t oversample, const mr_cfloat *maps, const float *phase,
                              size_t coils, double sigma, uint32_t seed, uint32_t slice,
                              const mr_fft_plan *plan);

/* Standard normal variate from an MT19937 stream (Box-Muller on random_sample). */
double mr_mt_randn(mr_mt19937 *rng);

#ifdef __cplusplus
}
#endif

#endif /* MR_RECON_H */
