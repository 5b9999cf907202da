/*
 * mr_validation.h: the public header of mrpipe's validation module: image-quality metrics with
 * fastMRI's definitions (fastmri/evaluate.py, ../shared/REFERENCE.md), and the reports.
 */
#ifndef MR_VALIDATION_H
#define MR_VALIDATION_H

#include "mr_core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* NMSE = ||gt - pred||^2 / ||gt||^2 over n values (fastMRI nmse). */
double mr_metric_nmse(const float *gt, const float *pred, size_t n);

/* PSNR = 10 log10(maxval^2 / MSE) with maxval = max(gt) over the n values (fastMRI psnr on a whole
 * volume). +inf when identical. */
double mr_metric_psnr(const float *gt, const float *pred, size_t n);

/* NRMSE = ||gt - pred|| / ||gt|| (BART `nrmse` without scaling). */
double mr_metric_nrmse(const float *gt, const float *pred, size_t n);

/* ================================================================ fastMRI metrics per volume */

typedef enum {
    MR_SSIM_UNIFORM = 0, /* fastMRI / skimage defaults: 7x7 uniform window, K1 0.01, K2 0.03, sample
                            covariance (x 49/48), mean after cropping 3 pixels at each border */
    MR_SSIM_GAUSSIAN,    /* MATLAB / Wang et al.: Gaussian sigma 1.5 (11x11 support), population
                            covariance, border crop 5 (skimage gaussian_weights=True,
                            use_sample_covariance=False) */
} mr_ssim_window;

typedef struct {
    double nmse; /* ||gt - pred||^2 / ||gt||^2 */
    double psnr; /* 10 log10(data_range^2 / MSE); +inf when identical */
    double ssim; /* mean SSIM */
} mr_metric_values;

typedef struct {
    mr_metric_values volume;     /* fastMRI's per-volume numbers (SSIM = mean over slices) */
    size_t slices;
    mr_metric_values *per_slice; /* (slices) owned; per-slice PSNR/SSIM use the VOLUME's max */
    double data_range;           /* max of the reference volume */
} mr_metrics_result;

/* SSIM of one (h, w) slice with the given data range (skimage structural_similarity on 2-D arrays).
 * MR_ERR_INPUT when h or w is smaller than the window (7, or 11 for Gaussian), naming the size. */
mr_status mr_ssim_slice(double *out, const float *ref, const float *img, size_t h, size_t w,
                        double data_range, mr_ssim_window window);

/* fastMRI metrics of a volume: ref and img are float32 (S, H, W) of the same shape (the caller
 * centre-crops first). MR_ERR_INPUT on shape mismatch, NaN/Inf (naming slice and pixel), a reference
 * whose maximum is <= 0 (PSNR undefined: the message says so). Free with mr_metrics_result_free. */
mr_status mr_metrics_volume(mr_metrics_result *out, const mr_array *ref, const mr_array *img,
                            mr_ssim_window window);

void mr_metrics_result_free(mr_metrics_result *r);

#ifdef __cplusplus
}
#endif

#endif
