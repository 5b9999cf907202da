/*
 * mr_nn.h: the public header of mrpipe's neural-network engine: float32 tensors, 3x3 convolution,
 * batch norm, ReLU, MSE/L1/Gaussian-NLL losses, the residual CNN of the DnCNN family (Zhang et al. 2017, "Beyond
 * a Gaussian denoiser: residual learning of deep CNN for image denoising", IEEE TIP 26(7)), its
 * training (Adam/AdamW) and its inference plan, and the HDF5 model file. See docs/nn.md.
 *
 * Conventions (llm.c's layer style):
 *  - a layer is `mr_nn_<layer>_forward(out, cache, in, weights, sizes)` and
 *    `mr_nn_<layer>_backward(din, dweight, dout, in, cache, weights, sizes)`; outputs first;
 *  - backward ADDS into every gradient it writes (din, dweight, dbias, ...): callers zero them;
 *  - a model's parameters live in ONE contiguous float block (`params`), and so do the gradients
 *    and Adam's two moments of a trainer, all with the same layout, so an optimizer step or a
 *    checkpoint is a single loop;
 *  - buffer shapes are written next to them: (N, C, H, W) is the usual NCHW order.
 *
 * Two tensor layouts:
 *  - DENSE: NCHW, W contiguous. The API boundary (training batches, images) uses this layout.
 *  - PADDED (activations inside the engine): channel-major (C, N, H+2, W+2): every (c, n) image is
 *    stored with a one-pixel zero border, the N images of a channel follow each other, and SLACK
 *    zero floats end the buffer. A 3x3 "same" convolution then reads every tap at a constant
 *    offset of a linear position, across rows and images, without any border test; outputs that
 *    land on border pixels are junk and are zeroed again after each convolution. Borders are zero
 *    in every padded tensor between layers: elementwise layers only touch interior pixels.
 *
 * Threads: OpenMP loops with static schedules, each output element computed by one thread in a
 * fixed order, per-channel sums as fixed-order partial sums added in double, the weight gradient
 * summed per item in chunk order. Results are bit-identical for the same seed, inputs and thread
 * count (mr_threads()). OpenBLAS is only used by the im2col baseline.
 */
#ifndef MR_NN_H
#define MR_NN_H

#include <stddef.h>
#include <stdint.h>

#include "mr_core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- tensors */

#define MR_NN_SLACK 256 /* zero floats after a padded tensor's data (vector over-reads) */

/* A float32 tensor of logical shape (n, c, h, w) in one of the two layouts above. Plain data; owns
 * `data` (64-byte aligned, zero-initialised) when made by mr_nn_tensor_create. */
typedef struct {
    int n, c, h, w;  /* logical shape (N, C, H, W) */
    int padded;      /* 0: dense NCHW; 1: padded (C, N, H+2, W+2) + MR_NN_SLACK */
    size_t plane;    /* floats per (c, n) image: h*w dense, (h+2)*(w+2) padded */
    size_t size;     /* floats allocated */
    float *data;
} mr_nn_tensor;

/* Create a zero tensor. MR_ERR_INPUT on non-positive or overflowing dims, MR_ERR_NOMEM. */
mr_status mr_nn_tensor_create(mr_nn_tensor **out, int n, int c, int h, int w, int padded);
void mr_nn_tensor_destroy(mr_nn_tensor *t); /* NULL is a no-op */
void mr_nn_tensor_zero(mr_nn_tensor *t);

/* Pointer to pixel (n, c, y, x) (0-based interior coordinates) in either layout. */
static inline float *mr_nn_at(const mr_nn_tensor *t, int n, int c, int y, int x)
{
    if (!t->padded)
        return t->data + (((size_t)n * t->c + c) * t->h + y) * t->w + x;
    return t->data + ((size_t)c * t->n + n) * t->plane + (size_t)(y + 1) * (t->w + 2) + x + 1;
}

/* Copy dense NCHW (N, C, H, W) floats into a padded tensor of the same shape, and back. */
void mr_nn_tensor_pad(mr_nn_tensor *dst, const float *src);
void mr_nn_tensor_unpad(float *dst, const mr_nn_tensor *src);

/* ---------------------------------------------------------------- layers (padded tensors) */

/* Convolution algorithm: the direct kernel (default; SIMD register-blocked over output channels
 * and pixels, AVX-512/AVX2/SSE picked at run time) or the im2col + OpenBLAS sgemm baseline. */
typedef enum { MR_NN_CONV_DIRECT = 0, MR_NN_CONV_IM2COL = 1 } mr_nn_conv_algo;
void mr_nn_conv_set_algo(mr_nn_conv_algo algo); /* process-wide; for benchmarks and tests */
mr_nn_conv_algo mr_nn_conv_get_algo(void);
const char *mr_nn_conv_isa(void); /* "avx512", "avx2" or "sse" ($MRPIPE_NN_ISA forces a lower one) */

/* Scratch floats a convolution with these channel counts needs (any image size). */
size_t mr_nn_conv_scratch_floats(int cin, int cout);

/* 3x3 convolution, zero padding, stride 1: out (N, Cout, H, W) = conv(in (N, Cin, H, W),
 * weight (Cout, Cin, 3, 3)) + bias (Cout) (bias may be NULL), optionally followed by ReLU
 * (relu != 0). Cross-correlation, as PyTorch's Conv2d. Both tensors padded; out's borders are zero
 * on return. scratch: mr_nn_conv_scratch_floats(Cin, Cout) floats. */
void mr_nn_conv_forward(mr_nn_tensor *out, const mr_nn_tensor *in, const float *weight,
                        const float *bias, int relu, float *scratch);

/* Backward of mr_nn_conv_forward (without its ReLU: pass dout already masked). ADDS:
 * din (N, Cin, H, W) += conv_transpose(dout) (din may be NULL: not needed for a first layer);
 * dweight (Cout, Cin, 3, 3) += sum over pixels of dout x shifted in; dbias (Cout) += sum of dout
 * (dbias may be NULL). dout and in padded with zero borders. */
void mr_nn_conv_backward(mr_nn_tensor *din, float *dweight, float *dbias, const mr_nn_tensor *dout,
                         const mr_nn_tensor *in, const float *weight, float *scratch);

/* ReLU over a padded tensor's interior, out = max(in, 0) (out may equal in); backward ADDS
 * din += dout where out > 0 (the gradient at 0 is 0, as PyTorch). */
void mr_nn_relu_forward(mr_nn_tensor *out, const mr_nn_tensor *in);
void mr_nn_relu_backward(mr_nn_tensor *din, const mr_nn_tensor *dout, const mr_nn_tensor *out);

/* Batch norm (Ioffe & Szegedy 2015) in training mode over (N, H, W) per channel, optionally
 * followed by ReLU. out = gamma (C) * (in - mean) * invstd + beta (C), invstd = 1/sqrt(var + eps)
 * with the biased batch variance; the cache mean (C), invstd (C) is written for backward.
 * running_mean/var (C) (may be NULL) are updated as PyTorch does:
 * r = (1 - momentum) r + momentum * batch value, with the unbiased variance for running_var. */
typedef struct {
    float eps;      /* 1e-5 (PyTorch's default) */
    float momentum; /* 0.1 (PyTorch's default) */
} mr_nn_bn_cfg;
void mr_nn_bn_forward(mr_nn_tensor *out, float *mean, float *invstd, const mr_nn_tensor *in,
                      const float *gamma, const float *beta, float *running_mean,
                      float *running_var, const mr_nn_bn_cfg *cfg, int relu);
/* ADDS din (N, C, H, W), dgamma (C), dbeta (C). out: the forward output (for the ReLU mask) when
 * relu != 0, else unused. */
void mr_nn_bn_backward(mr_nn_tensor *din, float *dgamma, float *dbeta, const mr_nn_tensor *dout,
                       const mr_nn_tensor *in, const mr_nn_tensor *out, const float *mean,
                       const float *invstd, const float *gamma, int relu);
/* Inference-mode batch norm with the running statistics: out = gamma (x - rm)/sqrt(rv + eps) + beta,
 * optionally followed by ReLU (the reference for BN folding). */
void mr_nn_bn_eval_forward(mr_nn_tensor *out, const mr_nn_tensor *in, const float *gamma,
                           const float *beta, const float *running_mean, const float *running_var,
                           float eps, int relu);

/* Losses over n floats (any layout whose unused entries are zero in both pred and target), as
 * means over `count` elements (the logical numel, N*C*H*W). Sums in double, fixed order.
 * MSE = sum (pred - target)^2 / count (PyTorch's MSELoss, reduction 'mean');
 * L1 = sum |pred - target| / count. Backward ADDS scale * dL/dpred into dpred (sign(0) = 0). */
double mr_nn_mse_forward(const float *pred, const float *target, size_t n, size_t count);
void mr_nn_mse_backward(float *dpred, const float *pred, const float *target, size_t n,
                        size_t count, float scale);
double mr_nn_l1_forward(const float *pred, const float *target, size_t n, size_t count);
void mr_nn_l1_backward(float *dpred, const float *pred, const float *target, size_t n,
                       size_t count, float scale);

/* Gaussian negative log-likelihood of a zero-mean error t with predicted log-variance s = pred
 * (the heteroscedastic loss of Kendall & Gal 2017 / Nix & Weigend 1994), without its constant:
 * loss = sum 0.5 * (s + t^2 exp(-s)) / count (torch.nn.GaussianNLLLoss(input = 0, target = t,
 * var = exp(s)), full=False, reduction 'mean', eps aside). s is clamped to [-30, 30] inside the
 * loss: outside that range the loss is that of the clamp bound and the gradient is 0 (as for
 * torch.clamp); exp(30) keeps t^2 exp(-s) finite in double for any finite float t.
 * Backward ADDS scale * 0.5 (1 - t^2 exp(-s)) / count into dpred. A zero (s, t) pair contributes
 * 0 to the loss but 0.5 / count to the gradient: on padded tensors the caller keeps the borders
 * out of dpred (the trainer differentiates interior rows only). */
#define MR_NN_GAUSS_NLL_CLAMP 30.0
double mr_nn_gauss_nll_forward(const float *pred, const float *target, size_t n, size_t count);
void mr_nn_gauss_nll_backward(float *dpred, const float *pred, const float *target, size_t n,
                              size_t count, float scale);

/* Residual output: out = in - noise (n floats); backward ADDS din += dout, dnoise -= dout. */
void mr_nn_residual_forward(float *out, const float *in, const float *noise, size_t n);
void mr_nn_residual_backward(float *din, float *dnoise, const float *dout, size_t n);

/* ---------------------------------------------------------------- the network */

#define MR_NN_MAX_DEPTH 64

/* A DnCNN-family network: conv(Cin->C)+ReLU; (depth-2) x [conv(C->C) (+BN) + ReLU];
 * conv(C->Cout). Middle convolutions have no bias when batch_norm (BN's beta takes its place, as
 * DnCNN). residual: output = input - net(input) (the network predicts the noise; needs
 * Cout = Cin). Cout != Cin serves e.g. a variance head: a (real, imag) or (image, denoised) pair
 * in, one log-variance map out. */
typedef struct {
    int depth;       /* convolution layers, 2..MR_NN_MAX_DEPTH (DnCNN: 17) */
    int channels;    /* hidden channels C (DnCNN: 64) */
    int in_channels; /* image channels: 1 magnitude, 2 complex (real, imag) */
    int batch_norm;  /* 1: BN after the middle convolutions */
    int residual;    /* 1: output = input - net(input) */
    float bn_eps;    /* BN epsilon (1e-5) */
    int out_channels; /* output channels of the last convolution, 1..16; 0 = in_channels (a
                         created model's arch always holds the resolved value). Last in the
                         struct so that zeroed or older initialisers mean "same as input". */
} mr_nn_arch;

/* Where layer l's parameters live in the model's block (offsets in floats; SIZE_MAX: absent). */
typedef struct {
    int cin, cout;      /* channels in and out */
    int bn;             /* batch norm after the convolution */
    int relu;           /* ReLU at the end of the layer (all but the last) */
    size_t weight;      /* (cout, cin, 3, 3) */
    size_t bias;        /* (cout) or SIZE_MAX */
    size_t bn_gamma;    /* (cout) or SIZE_MAX */
    size_t bn_beta;     /* (cout) or SIZE_MAX */
    size_t bn_mean;     /* running mean (cout), offset in `buffers`, or SIZE_MAX */
    size_t bn_var;      /* running variance (cout), offset in `buffers`, or SIZE_MAX */
} mr_nn_layer;

/* What a model file records besides the weights. Strings are NUL-terminated ("" when unknown). */
typedef struct {
    char input_type[32];       /* "magnitude" or "complex": what the model was trained on */
    char norm_method[64];      /* input normalisation, e.g. "percentile" */
    double norm_params[4];     /* its parameters (e.g. 99.5 for the percentile) */
    int n_norm_params;
    char noise_model[256];     /* e.g. "rician sigma 1-15 % of p99.5" */
    char training_data[1024];  /* data description / list */
    char split[1024];          /* training / validation split */
    int epochs;                /* epochs trained */
    char validation[1024];     /* validation figures, e.g. "psnr_db=34.1 ssim=0.91" */
    char version[32];          /* mrpipe version that wrote the file (filled by save) */
    /* variance networks (docs/uncertainty.md); absent in other model files: */
    double calibration_scale;  /* split-conformal SD scale (0: not calibrated / not written) */
    char calibration[8192];    /* what it was fitted on and the coverage it reached */
    char base_model[256];      /* the model whose errors it predicts ("none": the input's own) */
    int n_calibration_levels;  /* 0, or scales per input noise level (ascending noise): */
    double calibration_noise[8];  /* MAD noise level of the input / its percentile level */
    double calibration_scales[8]; /* the split-conformal scale fitted at that level */
    int n_calibration_accel;      /* 0, or scales per acceleration (ascending) of undersampling: */
    double calibration_accel[4];  /* the acceleration R */
    double calibration_accel_scales[4]; /* the split-conformal scale fitted at R */
    int n_calibration_methods;    /* 0, or scales per (input method, acceleration): the artefact */
    char calibration_methods[4][32]; /* model's errors differ by what made its input (zf, cs-l1) */
    double calibration_method_scales[4][4]; /* [method][i]: at calibration_accel[i] */
    int n_calibration_masks;      /* 0, or scales per (mask kind, acceleration): */
    char calibration_masks[4][32]; /* "equispaced", "random" */
    double calibration_mask_scales[4][4]; /* [kind][i]: at calibration_accel[i] */
    int n_noise_factors;          /* 0, or factors per relative noise level (mrpipe calibrate): */
    double noise_factor_levels[8]; /* the image's coil noise SD / its 99.5th percentile, ascending */
    double noise_factors[8];      /* the SD's factor there (interpolated in log, constant outside) */
    int has_difficulty;           /* 1: factors per mask difficulty (mrpipe calibrate), per (mask kind
                                   * of calibration_masks, acceleration): */
    double difficulty[4][4][2];   /* [kind][i] {c, b}: the SD times exp(b (log d - c)), d the
                                   * volume's mask difficulty (mr_mask_difficulty) */
    int has_ghost;                /* 1: factors per ghost phase too (mrpipe calibrate): */
    double ghost[4][4][2];        /* [kind][i] {c, b}: the SD times exp(b (log rho - c)), rho the
                                   * mask's in-phase aliasing share (mr_mask_ghost_phase); the
                                   * product with the difficulty factor clamped as it is */
    int n_feature_weights;        /* 0, or 4: the SD refitted on image features (calibration set):
                                   * log SD = w0 + w1 log(net SD + e) + w2 log(G|y - x| + e)
                                   * + w3 log(G|grad y| + e) + (1 - w1 - w2 - w3) log(level) */
    double feature_weights[4];
    int feature_bootstrap;        /* 1: w2's feature is the reconstruction's parametric bootstrap map
                                   * (recon/bootstrap.c, `recon --uncertainty bootstrap`), not G|y - x| */
    int n_noise_term;             /* 0, or 2: the reference's noise added to the SD (calibration set):
                                   * SD^2 = SD_net^2 + b^2 s^2 + f^2 (sqrt(y^2 + 2 C s^2) - y)^2,
                                   * s the coil images' noise SD, C the coils (undersampling) */
    double noise_term[2];         /* b, f */
    int n_noise_term_methods;     /* 0, or n_calibration_methods: (b, f) per input method */
    double noise_term_methods[4][2];
    int has_fill;                 /* 1: factors per slice line fill (mrpipe calibrate): */
    double fill[4][4][2];         /* [kind][i] {c, b}: each slice's SD times exp(b (log l - c)),
                                   * l its line fill (mr_sigma_line_fill), clamped to
                                   * [MR_DIFFICULTY_MIN, MR_DIFFICULTY_MAX] on its own */
    int has_fill_m;               /* 1: the same per input method (calibration_methods order), */
    double fill_m[4][4][4][2];    /* [method][kind][i]: used instead of fill for images of a
                                   * known method (the artefact model on zf and cs-l1 inputs) */
    int n_input_sd;               /* 0, or n_calibration_methods: per input method {w, k}, the SD
                                   * combined with the input image's own SD map v (the recon's
                                   * `uncertainty`; mrpipe calibrate): SD x (v scale / SD)^w x k,
                                   * before calibrate's per-volume factors (mr_sigma_apply_input_sd) */
    double input_sd[4][2];
    int n_boot_sd;                /* 0, or n_calibration_methods: per input method {w, k}, the SD
                                   * combined the same way with the model's parametric bootstrap
                                   * map b (mr_denoise_bootstrap_map; mrpipe calibrate), after the
                                   * input SD: SD x (b scale / SD)^w x k (denoise --uncertainty
                                   * bootstrap) */
    double boot_sd[4][2];
} mr_nn_meta;

typedef struct {
    mr_nn_arch arch;
    mr_nn_meta meta;
    mr_nn_layer layers[MR_NN_MAX_DEPTH]; /* arch.depth entries */
    size_t nparams;   /* floats in params */
    float *params;    /* every trainable parameter, one aligned block */
    size_t nbuffers;  /* floats in buffers */
    float *buffers;   /* BN running statistics, one block (not trained by the optimizer) */
} mr_nn_model;

/* The default architecture fields (bn_eps 1e-5, in_channels 1, out_channels 0 = in_channels,
 * residual 1, batch_norm 1): a 1 -> 1 residual denoiser, which stays square when the caller only
 * changes in_channels. */
mr_nn_arch mr_nn_arch_default(int depth, int channels);

/* Create a model with zero parameters, unit running variances and empty meta (input_type
 * "magnitude", or "complex" for 2 input channels). MR_ERR_USAGE on an invalid architecture (the
 * message names the field), among others residual with out_channels != in_channels. */
mr_status mr_nn_model_create(mr_nn_model **out, const mr_nn_arch *arch);
void mr_nn_model_destroy(mr_nn_model *m); /* NULL is a no-op */

/* He initialisation (He et al. 2015, "Delving deep into rectifiers", ICCV): conv weights
 * ~ N(0, 2 / (9 Cin)) (Kaiming normal, fan_in, as torch.nn.init.kaiming_normal_), biases 0,
 * BN gamma 1, beta 0, running mean 0 and variance 1. Deterministic from the seed (mr_rng). */
void mr_nn_model_init_he(mr_nn_model *m, uint64_t seed);

/* Receptive field (pixels per side): 2 * depth + 1. */
int mr_nn_receptive_field(const mr_nn_arch *arch);

/* A one-line description "dncnn depth=12 channels=48 kernel=3 in_channels=1 out_channels=1 bn=1
 * residual=1" (out_channels 0 is printed as in_channels). */
void mr_nn_arch_describe(char *buf, size_t size, const mr_nn_arch *arch);

/* Multiply-adds x 2 of one forward pass per pixel (for GFLOP/s figures). */
double mr_nn_flops_per_pixel(const mr_nn_arch *arch);

/* ---------------------------------------------------------------- model files (HDF5) */

/* Save: root attributes (format "mrpipe-nn", format_version 1, architecture, depth, channels,
 * kernel, in_channels, out_channels, batch_norm, residual, bn_eps, meta fields, mrpipe_version)
 * and one group per
 * layer "layerNN" with datasets conv_weight (Cout, Cin, 3, 3), conv_bias (Cout), bn_weight,
 * bn_bias, bn_running_mean, bn_running_var (Cout). Written atomically (temporary + rename). */
mr_status mr_nn_model_save(const mr_nn_model *m, const char *path);

/* Load and validate: format, architecture attributes against the architecture string, every
 * layer's datasets present with the expected shape (the last layer's (out_channels, C, 3, 3)),
 * no NaN/Inf. A file without the out_channels attribute (written before it existed, e.g.
 * models/denoiser_blind.h5) has out_channels = in_channels and an architecture string without
 * "out_channels=". expect_input_type (may be NULL)
 * must equal the file's input_type. MR_ERR_INPUT messages name the file, the dataset, what was
 * expected and what was found. */
mr_status mr_nn_model_load(mr_nn_model **out, const char *path, const char *expect_input_type);

/* ---------------------------------------------------------------- inference */

typedef struct mr_nn_plan mr_nn_plan;

/* Plan whole-image inference for (in_channels, H, W) images to (out_channels, H, W): batch norm folded into the
 * convolutions (W' = W gamma/sqrt(rv + eps), b' = (b - rm) gamma/sqrt(rv + eps) + beta), two
 * activation buffers and the scratch allocated once. The plan keeps a pointer to the model
 * (mr_nn_plan_update re-folds after the weights changed). MR_ERR_INPUT when H or W is smaller than
 * the receptive field. */
mr_status mr_nn_plan_create(mr_nn_plan **out, const mr_nn_model *m, int h, int w);
void mr_nn_plan_update(mr_nn_plan *p); /* re-fold the model's current weights */
void mr_nn_plan_destroy(mr_nn_plan *p); /* NULL is a no-op */

/* Run on one image: in dense (in_channels, H, W), out dense (out_channels, H, W) floats (out may
 * equal in when the buffer holds both). MR_ERR_INPUT on NaN/Inf pixels (naming the first one). */
mr_status mr_nn_plan_run(mr_nn_plan *p, float *out, const float *in);

/* ---------------------------------------------------------------- training */

/* MSE and L1 compare the network output with a clean target; GAUSS_NLL reads the raw output as a
 * per-pixel log-variance and the target as the observed error (mr_nn_gauss_nll_forward), and needs
 * residual = 0 (checked by mr_nn_trainer_create). */
typedef enum { MR_NN_LOSS_MSE = 0, MR_NN_LOSS_L1 = 1, MR_NN_LOSS_GAUSS_NLL = 2 } mr_nn_loss;
typedef enum { MR_NN_SCHED_CONST = 0, MR_NN_SCHED_STEP = 1, MR_NN_SCHED_COSINE = 2 } mr_nn_sched;

/* Adam (Kingma & Ba 2015) with decoupled weight decay (AdamW, Loshchilov & Hutter 2019), exactly
 * PyTorch's torch.optim.AdamW: p -= lr*wd*p; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
 * p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps). Weight decay applies to the conv
 * weights only (not biases, not BN parameters). */
typedef struct {
    mr_nn_loss loss;
    float lr;            /* base learning rate (1e-3) */
    float beta1, beta2;  /* 0.9, 0.999 */
    float eps;           /* 1e-8 */
    float weight_decay;  /* decoupled, e.g. 1e-4; 0 = plain Adam */
    mr_nn_sched sched;   /* learning-rate schedule over optimizer steps */
    long total_steps;    /* cosine: steps to decay over (lr -> lr_min); */
    float lr_min;        /* cosine floor */
    long step_size;      /* step schedule: multiply by gamma every step_size steps */
    float gamma;         /* step schedule factor (0.1) */
    long warmup_steps;   /* linear warm-up from 0 over these steps (0: none) */
    mr_nn_bn_cfg bn;     /* BN momentum (eps comes from the architecture) */
} mr_nn_train_cfg;

mr_nn_train_cfg mr_nn_train_cfg_default(void);

/* Learning rate at optimizer step `step` (0-based) under cfg's schedule. */
float mr_nn_lr_at(const mr_nn_train_cfg *cfg, long step);

typedef struct mr_nn_trainer mr_nn_trainer;

/* A trainer for batches of N patches (in_channels, H, W) -> (out_channels, H, W): activations,
 * gradients, Adam moments and scratch allocated here once. Keeps a pointer to the model, whose
 * params it updates in place. MR_ERR_USAGE on bad sizes or settings, an unknown loss, or
 * GAUSS_NLL with a residual network. */
mr_status mr_nn_trainer_create(mr_nn_trainer **out, mr_nn_model *m, int n, int h, int w,
                               const mr_nn_train_cfg *cfg);
void mr_nn_trainer_destroy(mr_nn_trainer *t); /* NULL is a no-op */

/* One optimizer step on a batch: input dense (N, in_channels, H, W), target dense
 * (N, out_channels, H, W); for MSE/L1 the target is the clean image (the loss compares the
 * network's output, input - noise estimate when residual, with it); for GAUSS_NLL it is the
 * observed error whose log-variance the output predicts. loss (may be NULL) receives the batch
 * loss before the step. MR_ERR_INPUT on NaN loss. */
mr_status mr_nn_trainer_step(mr_nn_trainer *t, const float *input, const float *target,
                             double *loss);

/* The pieces of a step, for tests and custom loops: forward (training-mode BN) returning the loss;
 * backward ADDS into the gradient block (zero it with mr_nn_trainer_zero_grad), and, when dinput is
 * not NULL, ADDS the loss gradient w.r.t. the input (dense (N, Cin, H, W)); adam applies one step. */
double mr_nn_trainer_forward(mr_nn_trainer *t, const float *input, const float *target);
void mr_nn_trainer_backward(mr_nn_trainer *t, float *dinput);
void mr_nn_trainer_zero_grad(mr_nn_trainer *t);
void mr_nn_trainer_adam(mr_nn_trainer *t);

/* The network output of the last forward, dense (N, out_channels, H, W) into `out`. */
void mr_nn_trainer_output(const mr_nn_trainer *t, float *out);

/* The gradient block and Adam's moments (nparams floats each, the params layout) and the number
 * of optimizer steps taken: what a checkpoint must save to resume exactly. */
float *mr_nn_trainer_grads(mr_nn_trainer *t);
float *mr_nn_trainer_adam_m(mr_nn_trainer *t);
float *mr_nn_trainer_adam_v(mr_nn_trainer *t);
long *mr_nn_trainer_steps(mr_nn_trainer *t);
mr_nn_model *mr_nn_trainer_model(mr_nn_trainer *t);

/* Checkpoints: the model file plus a group "optimizer" with datasets adam_m, adam_v (nparams) and
 * attribute steps. Saving is atomic. Loading validates the file like mr_nn_model_load, requires
 * the trainer's architecture, and only then replaces the model's weights, running statistics and
 * meta and the trainer's moments and step count, so that training resumes exactly where it was
 * saved (the same batches then give bit-identical weights). A plain model file (no optimizer
 * group) is an MR_ERR_INPUT naming the missing dataset. */
mr_status mr_nn_checkpoint_save(mr_nn_trainer *t, const char *path);
mr_status mr_nn_checkpoint_load(mr_nn_trainer *t, const char *path);

#ifdef __cplusplus
}
#endif

#endif /* MR_NN_H */
