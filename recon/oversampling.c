/*
 * oversampling.c: readout-oversampling removal in k-space (as Gadgetron's RemoveROOversampling and
 * scanners do): centred inverse FFT, keep the central out_h rows of the readout, forward FFT.
 */
#include "mr_recon.h"

#include <stdlib.h>
#include <string.h>

struct mr_os_plan {
    size_t coils, h, w, out_h;
    mr_fft_plan *inv, *fwd;
    mr_cfloat *work; /* (C, H, W) */
};

mr_status mr_os_plan_create(mr_os_plan **out, size_t coils, size_t h, size_t w, size_t out_h)
{
    mr_os_plan *p;
    mr_status st;
    *out = NULL;
    if (!coils || !h || !w || !out_h || out_h > h)
        return mr_error_set(MR_ERR_INPUT,
                            "readout oversampling removal: cannot crop %zu readout samples to %zu",
                            h, out_h);
    p = mr_calloc(1, sizeof *p);
    if (!p) return MR_ERR_NOMEM;
    p->coils = coils, p->h = h, p->w = w, p->out_h = out_h;
    p->work = mr_malloc_aligned(coils * h * w * sizeof *p->work);
    if (!p->work) st = MR_ERR_NOMEM;
    else if ((st = mr_fft_plan_create(&p->inv, coils, h, w)) == MR_OK)
        st = mr_fft_plan_create(&p->fwd, coils, out_h, w);
    if (st != MR_OK) {
        mr_os_plan_destroy(p);
        return st;
    }
    *out = p;
    return MR_OK;
}

mr_status mr_os_execute(mr_os_plan *p, mr_cfloat *out, const mr_cfloat *kspace)
{
    size_t hw = p->h * p->w, ohw = p->out_h * p->w;
    mr_status st;
    memcpy(p->work, kspace, p->coils * hw * sizeof *kspace);
    if ((st = mr_fft_execute(p->inv, MR_FFT_INVERSE, p->work)) != MR_OK) return st;
    for (size_t c = 0; c < p->coils; c++)
        mr_crop_c64(out + c * ohw, p->out_h, p->w, p->work + c * hw, p->h, p->w);
    return mr_fft_execute(p->fwd, MR_FFT_FORWARD, out);
}

void mr_os_plan_destroy(mr_os_plan *p)
{
    if (!p) return;
    mr_fft_plan_destroy(p->inv);
    mr_fft_plan_destroy(p->fwd);
    mr_free_aligned(p->work);
    free(p);
}
