/*
 * unsampled.c: where a magnitude image's content lies in k-space that was never acquired.
 *
 * For an image y and a sampling mask M (1 acquired, 0 not) in centred k-space,
 *     u = |F^-1[(1 - M) F(y)]|
 * is the part of y that no measurement supports: with y the reconstruction, it is the aliasing a
 * zero-filled reconstruction of y's own k-space would lose, placed where the mask's point-spread
 * function puts it (ghosts W/R away for equispaced lines, spread along the phase-encode direction
 * for random ones). The variance networks read it as a third channel (docs/uncertainty.md), so
 * that errors far outside their receptive field, at the ghosts of bright structures, can be seen.
 */
#include "mr_recon.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

mr_status mr_unsampled_part(float *out, const float *img, const float *mask, size_t S, size_t H,
                            size_t W)
{
    size_t hw = H * W;
    if (S == 0 || hw == 0) return MR_OK;
    mr_fft_plan *plan = NULL;
    mr_status st = mr_fft_plan_create(&plan, 1, H, W);
    if (st != MR_OK) return mr_error_prefix(st, "unsampled part of %zu x %zu images: ", H, W);
    mr_cfloat *buf = mr_malloc_aligned(hw * sizeof *buf);
    if (!buf) {
        mr_fft_plan_destroy(plan);
        return mr_error_set(MR_ERR_NOMEM, "unsampled part: out of memory (%zu x %zu)", H, W);
    }
    for (size_t s = 0; s < S && st == MR_OK; s++) {
        const float *y = img + s * hw;
        for (size_t i = 0; i < hw; i++) buf[i] = y[i];
        if ((st = mr_fft_execute(plan, MR_FFT_FORWARD, buf)) != MR_OK) break;
        for (size_t i = 0; i < hw; i++) buf[i] *= 1.0f - (mask[i] != 0);
        if ((st = mr_fft_execute(plan, MR_FFT_INVERSE, buf)) != MR_OK) break;
        for (size_t i = 0; i < hw; i++) out[s * hw + i] = cabsf(buf[i]);
    }
    mr_free_aligned(buf);
    mr_fft_plan_destroy(plan);
    return st;
}

mr_status mr_unsampled_part_cols(float *out, const float *img, size_t S, size_t H, size_t W,
                                 const float *cols, size_t ncols)
{
    if (ncols < W)
        return mr_error_set(MR_ERR_INPUT, "sampling mask: %zu columns for images %zu wide: "
                            "expected at least as many columns as the image", ncols, W);
    /* An image cropped from a wider phase-encode grid is zero-padded back to it (centred, as
     * mr_crop_f32 crops), its unsampled part taken there and cropped again. */
    size_t hw = H * ncols;
    float *mask = malloc(hw * sizeof *mask), *pad = malloc(S * hw * sizeof *pad),
          *u = ncols == W ? out : malloc(S * hw * sizeof *u);
    mr_status st = MR_OK;
    if (!mask || !pad || !u) st = mr_error_set(MR_ERR_NOMEM, "unsampled part: out of memory");
    if (st == MR_OK) {
        for (size_t i = 0; i < H; i++) memcpy(mask + i * ncols, cols, ncols * sizeof *cols);
        for (size_t s = 0; s < S; s++) mr_crop_f32(pad + s * hw, H, ncols, img + s * H * W, H, W);
        st = mr_unsampled_part(u, pad, mask, S, H, ncols);
    }
    if (st == MR_OK && u != out)
        for (size_t s = 0; s < S; s++) mr_crop_f32(out + s * H * W, H, W, u + s * hw, H, ncols);
    free(mask), free(pad);
    if (u != out) free(u);
    return st;
}
