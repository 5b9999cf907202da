/*
 * uq_bootstrap.c: the parametric bootstrap of an image model that cleans a reconstruction (the
 * artefact model; docs/uncertainty.md, "The artefact model's bootstrap"). The truth is unknown, so
 * the model's output y stands in for the object: its k-space with the input's own mask is
 * reconstructed by the input's method (one coil, a unit map: the image is a magnitude), the model
 * cleans that once more, and y_b - y is one draw of the error the chain (method, then model) makes
 * on an object like y with this mask: the aliasing the model leaves, where it falls. Its local RMS
 * is the map the variance network's SD is combined with (mrpipe calibrate's bootstrap weights).
 */
#include "mr_recon.h"
#include "mr_train.h"

#include <complex.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

mr_status mr_denoise_bootstrap_map(float *b, const float *y, size_t S, size_t H, size_t W,
                                   const void *model, const char *method, const float *cols,
                                   size_t ncols, const char *what)
{
    const mr_recon_method *m = method ? mr_recon_method_find(method) : NULL;
    if (!m)
        return mr_error_set(MR_ERR_INPUT, "%s: the bootstrap re-runs the method that made the input "
                            "(mrpipe_method of mrpipe's .h5 reconstructions): expected zf, sense, "
                            "cs-l1 or cs-tv, found '%s'", what, method ? method : "");
    if (!cols || ncols < W)
        return mr_error_set(MR_ERR_INPUT, "%s: the bootstrap needs the input's sampling mask (the "
                            "`mask` of mrpipe's .h5 reconstructions) with at least %zu columns, "
                            "found %zu", what, W, cols ? ncols : 0);
    const size_t hw = H * W, gw = ncols, ghw = H * gw, n = S * hw;
    float *xb = malloc(n * sizeof *xb), *pattern = malloc(ghw * sizeof *pattern),
          *pad = malloc(ghw * sizeof *pad), *dev = malloc(ghw * sizeof *dev),
          *crop = malloc(hw * sizeof *crop), *tmp = malloc(2 * hw * sizeof *tmp);
    mr_cfloat *xhat = mr_malloc_aligned(ghw * sizeof *xhat),
              *sens = mr_malloc_aligned(ghw * sizeof *sens);
    mr_status st = MR_OK;
    if (!xb || !pattern || !pad || !dev || !crop || !tmp || !xhat || !sens)
        st = mr_error_set(MR_ERR_NOMEM, "%s: bootstrap: out of memory", what);
    if (st == MR_OK) {
        for (size_t i = 0; i < H; i++)
            for (size_t c = 0; c < gw; c++) pattern[i * gw + c] = cols[c] != 0.0f ? 1.0f : 0.0f;
        for (size_t q = 0; q < ghw; q++) sens[q] = 1.0f;
    }
    mr_recon_params rp;
    memset(&rp, 0, sizeof rp);
    for (size_t s = 0; s < S && st == MR_OK; s++) {
        /* the image on the mask's grid (zero-padded, centred, as recon crops), the re-run there */
        mr_crop_f32(pad, H, gw, y + s * hw, H, W);
        for (size_t q = 0; q < ghw; q++) xhat[q] = fabsf(pad[q]);
        st = mr_bootstrap_dev(dev, m, &rp, xhat, pattern, sens, 1, H, gw);
        if (st != MR_OK) {
            mr_error_prefix(st, "%s: slice %zu: bootstrap: ", what, s);
            break;
        }
        for (size_t q = 0; q < ghw; q++) pad[q] = fabsf(pad[q]) + dev[q]; /* |x_b| */
        mr_crop_f32(xb + s * hw, H, W, pad, H, gw);
    }
    /* the model cleans the re-simulated input; b = sqrt(G((y_b - y)^2)) per slice */
    if (st == MR_OK) st = mr_train_denoise_volume(xb, xb, S, H, W, model, what);
    if (st == MR_OK)
        for (size_t s = 0; s < S; s++) {
            for (size_t q = 0; q < hw; q++) crop[q] = xb[s * hw + q] - y[s * hw + q];
            mr_sigma_bootstrap_map(b + s * hw, crop, H, W, tmp);
        }
    free(xb), free(pattern), free(pad), free(dev), free(crop), free(tmp);
    mr_free_aligned(xhat), mr_free_aligned(sens);
    return st;
}
