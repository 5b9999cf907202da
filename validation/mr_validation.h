/*
 * mr_validation.h: the public header of mrpipe's validation module: image-quality metrics with
 * fastMRI's definitions (fastmri/evaluate.py). This first part holds the volume-level NMSE, PSNR and
 * NRMSE used to check reconstructions; SSIM and the reports extend it.
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

#ifdef __cplusplus
}
#endif

#endif
