/*
 * sense.c: SENSE reconstruction by conjugate gradients (Pruessmann KP, Weiger M, Boernert P,
 * Boesiger P. Advances in sensitivity encoding with arbitrary k-space trajectories. Magn Reson Med
 * 46:638-651 (2001)) with Tikhonov regularisation, as `bart pics -l2 -r L -S`:
 *     x = argmin ||E x - y / s||^2 + lambda ||x||^2,   E = M F S,
 * solved on the normal equations (E^H E + lambda I) x = E^H y / s by CG from x = 0 for a fixed
 * number of iterations (BART: 30), image = s x, with s BART's data scaling (scaling.c) so that
 * lambda means the same as `bart pics -r`. Coil maps: given (--sens) or ESPIRiT (espirit.c) from
 * the slice's own calibration region.
 */
#include "mr_recon.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SENSE_DEFAULT_ITERS 30      /* bart pics -i default */
#define SENSE_DEFAULT_LAMBDA 0.01   /* pics -l2 -r 0.01 */
#define SENSE_CONVERGED_RESIDUAL 1e-2 /* ||b - (E^H E + lambda I) x|| / ||b|| for "converged" */

mr_status mr_linop_sense(mr_linop **out, const mr_cfloat *maps, const float *mask, size_t coils,
                         size_t h, size_t w)
{
    mr_linop *S = NULL, *F = NULL, *M = NULL, *FS = NULL;
    mr_status st;
    *out = NULL;
    if ((st = mr_linop_sens(&S, maps, coils, h, w)) != MR_OK) return st;
    if ((st = mr_linop_fft2c(&F, coils, h, w)) != MR_OK) {
        mr_linop_destroy(S);
        return st;
    }
    if ((st = mr_linop_compose(&FS, F, S)) != MR_OK) return st; /* owns F and S from here */
    if ((st = mr_linop_mask(&M, mask, coils, h, w)) != MR_OK) {
        mr_linop_destroy(FS);
        return st;
    }
    return mr_linop_compose(out, M, FS);
}

typedef struct {
    size_t coils, h, w;
    double lambda;
    long iters;
    mr_espirit_params ep;
    mr_cfloat *maps; /* (C, H, W): ESPIRiT maps of the current slice */
    mr_cfloat *y;    /* (C, H, W): scaled k-space */
    mr_cfloat *b;    /* (H, W): E^H y */
    mr_cg *cg;
} sense_state;

static void sense_destroy(void *state)
{
    sense_state *s = state;
    if (!s) return;
    mr_free_aligned(s->maps);
    mr_free_aligned(s->y);
    mr_free_aligned(s->b);
    mr_cg_destroy(s->cg);
    free(s);
}

static mr_status sense_create(void **state, const mr_recon_params *p, size_t coils, size_t h,
                              size_t w)
{
    sense_state *s;
    mr_status st;
    *state = NULL;
    if (coils < 2)
        return mr_error_set(MR_ERR_INPUT,
                            "--method sense needs multi-coil k-space (at least 2 coils); this "
                            "k-space has %zu coil (use --method zf or cs-l1 for single-coil data)",
                            coils);
    if (p->has_lambda && !(p->lambda >= 0 && isfinite(p->lambda)))
        return mr_error_set(MR_ERR_USAGE, "--lambda: expected a value >= 0, found %g", p->lambda);
    s = mr_calloc(1, sizeof *s);
    if (!s) return MR_ERR_NOMEM;
    s->coils = coils;
    s->h = h;
    s->w = w;
    s->lambda = p->has_lambda ? p->lambda : SENSE_DEFAULT_LAMBDA;
    s->iters = p->iters > 0 ? p->iters : SENSE_DEFAULT_ITERS;
    mr_espirit_params_default(&s->ep);
    s->maps = mr_malloc_aligned(coils * h * w * sizeof *s->maps);
    s->y = mr_malloc_aligned(coils * h * w * sizeof *s->y);
    s->b = mr_malloc_aligned(h * w * sizeof *s->b);
    if (!s->maps || !s->y || !s->b) st = MR_ERR_NOMEM;
    else st = mr_cg_create(&s->cg, h * w);
    if (st != MR_OK) {
        sense_destroy(s);
        return st;
    }
    *state = s;
    return MR_OK;
}

static mr_status sense_run(void *state, mr_cfloat *image, mr_recon_stats *stats,
                           const mr_cfloat *kspace, const float *mask, const mr_cfloat *sens)
{
    sense_state *s = state;
    const size_t hw = s->h * s->w, n = s->coils * hw;
    const mr_cfloat *maps = sens;
    mr_linop *E = NULL;
    mr_recon_stats cs;
    mr_status st;
    double f;
    if (!maps) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        if ((st = mr_espirit_maps(s->maps, kspace, mask, s->coils, s->h, s->w, &s->ep)) != MR_OK)
            return st;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        MR_DEBUG("ESPIRiT: maps in %.3f s",
                 (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec));
        maps = s->maps;
    }
    f = mr_recon_bart_scale(kspace, s->coils, s->h, s->w);
    for (size_t i = 0; i < n; i++) s->y[i] = mask[i % hw] != 0.0f ? (float)f * kspace[i] : 0.0f;
    if ((st = mr_linop_sense(&E, maps, mask, s->coils, s->h, s->w)) != MR_OK) return st;
    st = mr_linop_adjoint(E, s->b, s->y);
    if (st == MR_OK) {
        mr_vec_zero(image, hw);
        memset(&cs, 0, sizeof cs);
        st = mr_cg_solve(s->cg, image, &cs, E, s->lambda, s->b, s->iters, 0.0,
                         SENSE_CONVERGED_RESIDUAL);
    }
    mr_linop_destroy(E);
    if (st != MR_OK) return st;
    mr_vec_scale(image, (float)(1.0 / f), hw);
    if (stats) {
        *stats = cs;
        stats->scale = f;
    }
    return MR_OK;
}

const mr_recon_method mr_method_sense = {
    "sense",
    "CG-SENSE with Tikhonov lambda (bart pics -l2 -r L -S; 30 iterations, lambda 0.01), ESPIRiT "
    "or --sens maps",
    sense_create,
    sense_run,
    sense_destroy,
};
