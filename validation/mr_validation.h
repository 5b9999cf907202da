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

/* ================================================================ uncertainty maps
 * (validation/uncertainty.c; docs/validation.md "Uncertainty maps"): how honest a per-pixel
 * standard-deviation map is, judged against the actual error of the estimate on data with a known
 * reference. Every figure is over the foreground, reference > fg_fraction x max(reference volume). */

#define MR_UQ_N_LEVELS 3       /* the intervals +-z SD, z = 1, 1.645, 1.96 (68.27 / 90.00 / 95.00 %) */
#define MR_UQ_N_RELIABILITY 20 /* the reliability curve's nominal levels: 5, 10, ..., 95, 99 % */

typedef struct {
    double fg_fraction;  /* foreground: reference > fg_fraction x the reference volume's max;
                            [0, 1), default 0.05 */
    double fg_threshold; /* when finite: this absolute threshold instead (the per-slice figures
                            use the volume's); default NAN */
    int radius;          /* local RMS error over a (2 radius + 1)^2 window in each slice; 2 (5x5) */
    size_t n_bins;       /* UCE: equal-count bins of predicted variance; 20 (at most N) */
    size_t n_fractions;  /* sparsification at fractions k / n_fractions, k = 0 .. n_fractions - 1;
                            100 (0 .. 0.99 in 1 % steps) */
    uint64_t seed;       /* the oracle ceiling's synthetic draws (core mr_rng); 1 */
    const char *reference_name, *estimate_name, *sd_name; /* named in error messages; NULL:
                            "reference", "estimate", "uncertainty (SD)" */
} mr_uq_params;

/* The defaults above. */
void mr_uq_params_default(mr_uq_params *p);

typedef struct {
    size_t n_pixels;      /* S x H x W */
    size_t n_foreground;  /* N, the pixels every figure is over */
    double threshold;     /* the foreground threshold in image units */
    double z[MR_UQ_N_LEVELS];        /* 1, 1.645, 1.96 */
    double nominal[MR_UQ_N_LEVELS];  /* erf(z / sqrt 2): 0.6827, 0.9000, 0.9500 */
    double coverage[MR_UQ_N_LEVELS]; /* fraction of N with |error| <= z SD */
    double reliability_nominal[MR_UQ_N_RELIABILITY];  /* 0.05 .. 0.95, 0.99 */
    double reliability_z[MR_UQ_N_RELIABILITY];        /* sqrt 2 erfinv(nominal) */
    double reliability_coverage[MR_UQ_N_RELIABILITY]; /* fraction with |error| <= z SD */
    double spearman;        /* Spearman rho of SD with the local RMS error; NaN if either is
                               constant over the foreground */
    double spearman_oracle; /* the same with errors drawn from N(0, SD^2): the ceiling */
    double uce;             /* sum_b N_b / N |MSE_b - meanVar_b| (image units^2) */
    double uce_relative;    /* uce / MSE */
    size_t n_bins;          /* bins used: min(n_bins, N) */
    double *bin_mean_var;   /* (n_bins) owned: mean SD^2 in each bin */
    double *bin_mse;        /* (n_bins) owned: mean error^2 in each bin */
    size_t *bin_count;      /* (n_bins) owned */
    double ause;            /* area between the two sparsification curves; NaN when RMSE is 0 */
    size_t n_fractions;
    double *fraction;          /* (n_fractions) owned: k / n_fractions */
    double *sparse_uncertainty; /* (n_fractions) owned: RMSE left after dropping the largest-SD
                                   fraction, / full RMSE */
    double *sparse_oracle;      /* (n_fractions) owned: the same dropping the largest |error| */
    double mean_sd, rms_sd;     /* mean and root-mean-square SD */
    double mse, rmse;           /* of the error over the foreground */
    double rmse_over_rms_sd;    /* RMSE / RMS(SD): 1 when calibrated on average */
} mr_uq_result;

/* Judge the SD map `sd` of the estimate `est` against the reference `ref`: float32 (S, H, W) each,
 * the same shape. p NULL: defaults. MR_ERR_INPUT naming the input (p's names) on a shape mismatch,
 * a NaN/Inf (slice and pixel), a negative SD, no foreground (reference max <= 0, or fewer than 2
 * pixels above the threshold); MR_ERR_USAGE on bad parameters; MR_ERR_NOMEM. Memory: O(N) extra
 * (about 48 bytes per foreground pixel), sort-based. Free with mr_uq_result_free. */
mr_status mr_uq_metrics(mr_uq_result *out, const mr_array *ref, const mr_array *est,
                        const mr_array *sd, const mr_uq_params *p);

/* The same per slice, out (S): every slice judged alone with the VOLUME's foreground threshold
 * and the same seed; a slice with fewer than 2 foreground pixels gets NaN figures (n_foreground
 * says how many it had). The same errors as mr_uq_metrics. Free each with mr_uq_result_free. */
mr_status mr_uq_metrics_slices(mr_uq_result *out, const mr_array *ref, const mr_array *est,
                               const mr_array *sd, const mr_uq_params *p);

/* Frees the owned arrays; NULL is a no-op. */
void mr_uq_result_free(mr_uq_result *r);

/* The figures as one JSON object (the field names docs/validation.md lists; 17 significant
 * digits, NaN/inf as null); `full` 0 leaves out the curves and bins (per-slice entries). Lines
 * after the first are prefixed by `indent`. Returns a malloc'ed string (free()), NULL when out of
 * memory. */
char *mr_uq_result_json(const mr_uq_result *r, int full, const char *indent);

/* The CSV columns (appended after a row's other columns) and one row's values (malloc'ed, free();
 * NULL when out of memory; nan / inf spelled so). */
#define MR_UQ_CSV_COLUMNS                                                                         \
    "coverage_68,coverage_90,coverage_95,spearman,spearman_oracle,uce,uce_relative,ause,"     \
    "rmse_over_rms_sd,n_foreground"
char *mr_uq_result_csv(const mr_uq_result *r);

/* ================================================================ reports
 * (validation/report.c, html.c, sha256.c, colormap.c; docs/reports.md) */

/* SHA-256 (FIPS 180-4), streaming: init, update any number of times, final. */
typedef struct {
    uint32_t state[8];       /* H0..H7 */
    uint64_t bytes;          /* message length so far, in bytes */
    unsigned char block[64]; /* the pending partial block */
    size_t fill;             /* bytes in block */
} mr_sha256;

void mr_sha256_init(mr_sha256 *ctx);
void mr_sha256_update(mr_sha256 *ctx, const void *data, size_t n);
/* The 32-byte digest into out and/or 64 lowercase hex digits + NUL into hex (either may be NULL);
 * the context is re-initialised. */
void mr_sha256_final(mr_sha256 *ctx, unsigned char out[32], char hex[65]);
/* SHA-256 of a file's bytes as hex (what `sha256sum` prints). MR_ERR_INPUT naming the file when it
 * cannot be opened or read. */
mr_status mr_sha256_file(char hex[65], const char *path);

/* Colour maps for |error| and uncertainty images: inferno and viridis (matplotlib's perceptually
 * uniform maps, 33-stop tables, linear interpolation) and grey. */
typedef enum { MR_COLORMAP_GRAY = 0, MR_COLORMAP_INFERNO, MR_COLORMAP_VIRIDIS } mr_colormap;

const char *mr_colormap_name(mr_colormap map);
/* RGB of t in [0, 1] (clamped; NaN -> 0). */
void mr_colormap_rgb(unsigned char rgb[3], mr_colormap map, double t);
/* Map n values over [lo, hi] (clamped) to interleaved RGB, rgb (n, 3). */
void mr_colormap_apply(unsigned char *rgb, const float *img, size_t n, float lo, float hi,
                       mr_colormap map);

/* One image volume of a report, loaded and centre-cropped by the caller. */
typedef struct {
    const char *label;      /* name shown for a reconstruction; NULL: the source's base name */
    const char *source;     /* as given (e.g. "recon.h5:reconstruction"); shown and recorded */
    const char *file;       /* the file whose SHA-256 is recorded; NULL when there is no single
                               file (e.g. a DICOM directory) */
    const char *dataset;    /* HDF5 dataset read, or NULL */
    const mr_array *image;  /* float32 (S, H, W), already centre-cropped to the reference's (H, W) */
    size_t dims_loaded[3];  /* (S, H, W) as loaded, before the crop */
    /* methods only (ignored elsewhere): this reconstruction's own per-pixel SD map, float32 of the
     * compared shape (cropped like image), or NULL: then spec->uncertainty, if any, is judged
     * against this method. Zero-initialised callers keep the old behaviour. */
    const mr_array *uncertainty;
    const char *uncertainty_source; /* shown and recorded for it; NULL: "<label> SD" */
} mr_report_volume;

/* A key/value text pair (library versions, patient fields). */
typedef struct {
    const char *key;
    const char *value;
} mr_report_field;

typedef struct {
    mr_report_volume reference;
    const mr_report_volume *methods;      /* (n_methods) reconstructions compared, n_methods >= 1 */
    size_t n_methods;
    const mr_report_volume *zero_filled;  /* undersampled input shown (and scored) as a baseline;
                                             NULL when none */
    const mr_report_volume *uncertainty;  /* per-pixel SD map of the same shape, or NULL */
    const size_t *slices;                 /* (n_slices) slices shown in the HTML; n_slices 0:
                                             3 evenly spread (all when S < 3) */
    size_t n_slices;
    mr_ssim_window window;
    int argc;                             /* the command line, recorded verbatim (may be 0) */
    const char *const *argv;
    const mr_report_field *versions;      /* (n_versions) library versions, e.g. {"FFTW", "..."} */
    size_t n_versions;
    int include_patient_info;             /* 0: no patient-identifying field is written anywhere */
    const mr_report_field *patient;       /* (n_patient) e.g. {"patient_id", "..."}; written only
                                             when include_patient_info */
    size_t n_patient;
    const char *created;                  /* timestamp shown; NULL: now, UTC, ISO 8601 */
    const mr_uq_params *uq_params;        /* uncertainty figures' parameters; NULL: defaults */
} mr_report_spec;

/* Compute fastMRI metrics (mr_metrics_volume) of every method and of the zero-filled input against
 * the reference and, for every method with an SD map (its own, else spec->uncertainty), the
 * uncertainty figures (mr_uq_metrics, per volume and per slice), and write DIR/report.json, DIR/report.csv and DIR/report.html (created if missing).
 * Every check and every computation happens before anything is written; the three files are written
 * under temporary names and renamed when all three are complete, so a failure leaves no report file
 * (and no DIR when it was created here). MR_ERR_INPUT naming the source on a shape mismatch, NaN/Inf,
 * an all-zero reference (PSNR undefined), a shown slice out of range, an unreadable file;
 * MR_ERR_IO when DIR or a file cannot be written; MR_ERR_NOMEM. */
mr_status mr_report_write(const char *dir, const mr_report_spec *spec);

#ifdef __cplusplus
}
#endif

#endif
