/*
 * methods.c: the table of reconstruction methods behind `mrpipe recon --method`, and `zf`
 * (zero-filled: centred inverse FFT per coil, root-sum-of-squares; a real image).
 */
#include "mr_recon.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    mr_zf_plan *plan;
    float *mag;
    size_t hw;
} zf_state;

static mr_status zf_create(void **state, const mr_recon_params *p, size_t coils, size_t h, size_t w)
{
    zf_state *z = mr_calloc(1, sizeof *z);
    mr_status st;
    (void)p;
    *state = NULL;
    if (!z) return MR_ERR_NOMEM;
    z->hw = h * w;
    z->mag = mr_malloc(z->hw * sizeof *z->mag);
    if (!z->mag) st = MR_ERR_NOMEM;
    else st = mr_zf_plan_create(&z->plan, coils, h, w, h, w);
    if (st != MR_OK) {
        free(z->mag);
        free(z);
        return st;
    }
    *state = z;
    return MR_OK;
}

static mr_status zf_run(void *state, mr_cfloat *image, mr_recon_stats *stats,
                        const mr_cfloat *kspace, const float *mask, const mr_cfloat *sens)
{
    zf_state *z = state;
    mr_status st;
    (void)mask; /* the k-space is already masked: zeros stay zeros */
    (void)sens; /* zf combines by RSS */
    if ((st = mr_zf_execute(z->plan, z->mag, NULL, kspace, NULL)) != MR_OK) return st;
    for (size_t p = 0; p < z->hw; p++) image[p] = z->mag[p];
    if (stats) {
        memset(stats, 0, sizeof *stats);
        stats->converged = 1;
        stats->scale = 1;
    }
    return MR_OK;
}

static void zf_destroy(void *state)
{
    zf_state *z = state;
    if (!z) return;
    mr_zf_plan_destroy(z->plan);
    free(z->mag);
    free(z);
}

static const mr_recon_method method_zf = {
    "zf", "zero-filled: centred inverse FFT per coil, root-sum-of-squares (magnitude)",
    zf_create, zf_run, zf_destroy,
};

const mr_recon_method *const mr_recon_methods[] = {
    &method_zf,
    &mr_method_sense,
    &mr_method_cs_l1,
    &mr_method_cs_tv,
    NULL,
};

const mr_recon_method *mr_recon_method_find(const char *name)
{
    for (const mr_recon_method *const *m = mr_recon_methods; *m; m++)
        if (!strcmp((*m)->name, name)) return *m;
    return NULL;
}

mr_status mr_recon_state_renew(const mr_recon_method *m, void **state, const mr_recon_params *rp,
                               size_t coils, size_t h, size_t w)
{
    if (*state) m->destroy(*state);
    *state = NULL;
    mr_status st = m->create(state, rp, coils, h, w);
    if (st != MR_OK) *state = NULL;
    return st;
}
