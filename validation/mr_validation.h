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

/* Side of the square SSIM window: 7 (uniform) or 11 (Gaussian, radius int(3.5 * 1.5 + 0.5) = 5). The
 * SSIM mean is taken after cropping (size - 1) / 2 pixels at every border. */
int mr_ssim_window_size(mr_ssim_window window);

/* "uniform" or "gaussian". */
const char *mr_ssim_window_name(mr_ssim_window window);

/* A reusable SSIM plan for (h, w) slices: the window weights and the row workspaces are made once,
 * so a loop over slices allocates nothing. A plan is not thread-safe (one per thread).
 * MR_ERR_INPUT when h or w is smaller than the window (naming the size), MR_ERR_NOMEM. */
typedef struct mr_ssim_plan mr_ssim_plan;

mr_status mr_ssim_plan_create(mr_ssim_plan **out, size_t h, size_t w, mr_ssim_window window);

/* SSIM of ref and img, (h, w) float32 each, with the given data range (> 0). No checks: values
 * must be finite (mr_ssim_slice and mr_metrics_volume check first). */
double mr_ssim_plan_execute(const mr_ssim_plan *plan, const float *ref, const float *img,
                            double data_range);

/* NULL is a no-op. */
void mr_ssim_plan_destroy(mr_ssim_plan *plan);

#ifdef __cplusplus
}
#endif

#endif
