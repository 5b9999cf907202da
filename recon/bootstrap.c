/*
 * bootstrap.c: the reconstruction's own error by a parametric bootstrap (Efron; in MRI the
 * re-simulation of the data from the estimate). The truth is unknown, so the reconstruction's
 * magnitude |x^| stands in for the object: k_b = M F (S |x^|) is what the scanner would have
 * measured had |x^| been the object, the same method with the same coil maps and mask
 * reconstructs it, and |x_b| - |x^| is one draw of the error the method makes on an object like
 * x^ with this mask: lost detail and left-over aliasing, where they fall. The phase is dropped
 * (measured: the complex solution's phase, unreliable where the signal is low, made the
 * re-simulated object less sparse and the map flatter; docs/uncertainty.md). No noise is added:
 * the reference's noise is the variance networks' noise term.
 */
#include "mr_recon.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

mr_status mr_bootstrap_dev(float *dev, const mr_recon_method *method, const mr_recon_params *rp,
                           const mr_cfloat *xhat, const float *mask, const mr_cfloat *sens,
                           size_t coils, size_t h, size_t w)
{
    const size_t hw = h * w, nk = coils * hw;
    mr_fft_plan *plan = NULL;
    mr_cfloat *k = NULL, *img = NULL;
    void *state = NULL;
    mr_recon_stats stats;
    mr_status st = MR_OK;
    if (!sens)
        return mr_error_set(MR_ERR_USAGE,
                            "bootstrap: method %s: coil maps are needed to "
                            "re-simulate the data",
                            method->name);
    k = mr_malloc_aligned(nk * sizeof *k);
    img = mr_malloc_aligned(hw * sizeof *img);
    if (!k || !img) st = mr_error_set(MR_ERR_NOMEM, "bootstrap: out of memory");
    if (st == MR_OK) st = mr_fft_plan_create(&plan, coils, h, w);
    if (st == MR_OK) { /* k = M F (S |x^|) */
        for (size_t c = 0; c < coils; c++)
            for (size_t q = 0; q < hw; q++)
                k[c * hw + q] = sens[c * hw + q] * cabsf(xhat[q]);
        st = mr_fft_execute(plan, MR_FFT_FORWARD, k);
    }
    if (st == MR_OK) {
        for (size_t i = 0; i < nk; i++)
            if (mask[i % hw] == 0.0f) k[i] = 0.0f;
        /* a fresh state, as the replicas': stateful methods repeat their sequence */
        st = method->create(&state, rp, coils, h, w);
    }
    if (st == MR_OK) st = method->run(state, img, &stats, k, mask, sens);
    if (state) method->destroy(state);
    if (st == MR_OK)
        for (size_t q = 0; q < hw; q++)
            dev[q] = cabsf(img[q]) - cabsf(xhat[q]);
    else
        mr_error_prefix(st, "bootstrap: ");
    mr_fft_plan_destroy(plan);
    mr_free_aligned(k);
    mr_free_aligned(img);
    return st;
}
