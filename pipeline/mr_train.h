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

/* Divide ref and deg (n values) by the percentile of deg (its maximum when that is 0). */
mr_status mr_train_normalise_pair(float *ref, float *deg, size_t n, double percentile);

/* The degraded planes made once before training: (n, M, M) targets and inputs, normalised. */
typedef struct {
    int n, m;
    float *ref, *deg;
    unsigned char *kind; /* method * 16 + acceleration index, per plane */
} mr_train_bank;

mr_status mr_train_bank_build(mr_train_bank *b, const mr_train_volume *vols, int nvols,
                              const mr_train_us *u, const mr_train_sampler *s, double percentile,
                              uint64_t seed, FILE *log);
void mr_train_bank_free(mr_train_bank *b);

/* One (P, P) training pair from a random plane of the bank, dihedral augmentation. */
void mr_train_bank_sample(float *clean, float *deg, const mr_train_bank *b,
                          const mr_train_sampler *s, mr_rng *rng);

/* Denoise a float32 volume (S, H, W) slice by slice with a loaded model, whole slices, one plan:
 * the model's normalisation (norm_method "percentile", norm_params[0] = p) divides the input by
 * the p-th percentile of the whole volume and the output is multiplied back (input units kept).
 * out may equal in. MR_ERR_INPUT for NaN/Inf pixels (naming slice, row, column), a slice smaller
 * than the receptive field, a model of another normalisation or input type; `what` names the
 * input in messages. */
mr_status mr_train_denoise_volume(float *out, const float *in, size_t S, size_t H, size_t W,
                                  const void *model, const char *what);

#endif
