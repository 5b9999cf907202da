/*
 * stage_recon.c: the recon stage: the same library calls as `mrpipe recon` (cmd_recon.c), slice by
 * slice: optional retrospective undersampling with a fastMRI or Poisson mask (columns outside the
 * header's acquired range zeroed as fastMRI does), readout-oversampling removal in k-space for
 * iterative methods, a method from mr_recon_methods, centre crop to the recon size. The method's
 * state and the oversampling plan are kept across scans of the same geometry, so a batch of
 * same-sized scans plans once per worker.
 *
 * uncertainty: model gives each image the SD map of its method's calibrated variance network
 * (models/<method>_sigma.h5, as `mrpipe recon --uncertainty model`), with the sampling mask (given,
 * or inferred from slice 0's k-space) and each slice's coil noise SD (mr_noise_sd_estimate), both
 * also kept with the image for later stages and outputs. uncertainty: bootstrap (sense, cs-l1,
 * cs-tv) does the same with models/<method>_sigma_bootstrap.h5 and the reconstruction's parametric
 * bootstrap map (as `mrpipe recon --uncertainty bootstrap`: ESPIRiT maps made explicit, the method
 * run once more on k-space re-simulated from its image; recon/bootstrap.c).
 */
#include "mr_recon.h"
#include "mr_stages.h"
#include "mr_train.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char label[64];
    const mr_recon_method *method;
    int has_mask;
    mr_mask_params mp;
    uint32_t seed;
    mr_recon_params rp;
    void *sigma; /* uncertainty: model or bootstrap: the method's variance network */
    int boot;    /* uncertainty: bootstrap */
    /* kept across scans */
    void *mstate;
    size_t mc, mh, mw;
    mr_os_plan *os;
    size_t oc, oh, ow, ogh;
} recon_state;

static const mr_stage_key recon_keys[] = {
    {"method", MR_KEY_STRING, "zf", 0, "reconstruction method (mrpipe recon --help lists them)"},
    {"mask", MR_KEY_STRING, "none", 0,
     "undersample first: none, random, equispaced, equispaced-fraction, poisson"},
    {"accel", MR_KEY_FLOAT, "4", 0, "acceleration R of the mask"},
    {"center_fraction", MR_KEY_FLOAT, "0.08", 0, "fully sampled centre fraction of the mask"},
    {"seed", MR_KEY_INT, "0", 0, "mask seed (same seed, same mask as fastMRI)"},
    {"lambda", MR_KEY_FLOAT, NULL, 0, "regularisation weight as BART pics -r [method's default]"},
    {"iters", MR_KEY_INT, NULL, 0, "iterations [method's default]"},
    {"uncertainty", MR_KEY_STRING, "none", 0,
     "none, model or bootstrap: the SD map of the method's calibrated variance network "
     "(models/<method>_sigma.h5, as mrpipe recon --uncertainty model; bootstrap: "
     "models/<method>_sigma_bootstrap.h5 with one more reconstruction per slice, not zf)"},
    {NULL, 0, NULL, 0, NULL},
};

static void recon_destroy(void *state)
{
    recon_state *s = state;
    if (!s) return;
    if (s->mstate) s->method->destroy(s->mstate);
    mr_os_plan_destroy(s->os);
    mr_sigma_free(s->sigma);
    free(s);
}

static mr_status recon_create(void **state, const mr_stage_ctx *x)
{
    recon_state *s = mr_calloc(1, sizeof *s);
    const mr_config *c = x->config;
    const mr_cfg_node *n = x->node, *v;
    const char *name;
    long seed;
    mr_status st;
    if (!s) return MR_ERR_NOMEM;
    snprintf(s->label, sizeof s->label, "%s", x->label);
    v = mr_cfg_child(n, "method");
    st = mr_cfg_as_string(&name, c, v);
    if (st == MR_OK && !(s->method = mr_recon_method_find(name))) {
        char names[512] = "";
        for (const mr_recon_method *const *m = mr_recon_methods; *m; m++) {
            strncat(names, names[0] ? ", " : "", sizeof names - strlen(names) - 1);
            strncat(names, (*m)->name, sizeof names - strlen(names) - 1);
        }
        st = mr_config_error(c, v, MR_ERR_USAGE, "expected one of %s, found '%s'", names, name);
    }
    v = mr_cfg_child(n, "mask");
    if (st == MR_OK && strcmp(v->value, "none") != 0) {
        s->has_mask = 1;
        if (mr_mask_type_parse(&s->mp.type, v->value) != MR_OK)
            st = mr_config_error(c, v, MR_ERR_USAGE, "expected none, random, equispaced, "
                                 "equispaced-fraction or poisson, found '%s'", v->value);
    }
    if (st == MR_OK) st = mr_cfg_as_double(&s->mp.accel, c, mr_cfg_child(n, "accel"), 1, 1e6);
    if (st == MR_OK)
        st = mr_cfg_as_double(&s->mp.center_fraction, c, mr_cfg_child(n, "center_fraction"), 0, 1);
    if (st == MR_OK) st = mr_cfg_as_long(&seed, c, mr_cfg_child(n, "seed"), 0, 4294967295L);
    if (st == MR_OK) {
        s->seed = (uint32_t)seed;
        s->rp.seed = s->seed;
    }
    if (st == MR_OK && (v = mr_cfg_child(n, "lambda"))) {
        st = mr_cfg_as_double(&s->rp.lambda, c, v, 0, 1e12);
        s->rp.has_lambda = 1;
    }
    if (st == MR_OK && (v = mr_cfg_child(n, "iters"))) st = mr_cfg_as_long(&s->rp.iters, c, v, 1, 100000);
    v = mr_cfg_child(n, "uncertainty");
    if (st == MR_OK && strcmp(v->value, "none") != 0) {
        s->boot = !strcmp(v->value, "bootstrap");
        if (strcmp(v->value, "model") != 0 && !s->boot)
            st = mr_config_error(c, v, MR_ERR_USAGE, "expected none, model or bootstrap (replica "
                                 "maps: mrpipe recon --uncertainty replica), found '%s'", v->value);
        if (st == MR_OK && s->boot && !strcmp(s->method->name, "zf"))
            st = mr_config_error(c, v, MR_ERR_USAGE, "bootstrap: method zf has nothing to "
                                 "re-simulate (its image is the data itself); use model");
        char rel[96], sp[4096], what[96];
        snprintf(rel, sizeof rel, "models/%s_sigma%s.h5", s->method->name,
                 s->boot ? "_bootstrap" : "");
        snprintf(what, sizeof what, "method %s", s->method->name);
        if (st == MR_OK && mr_data_path(sp, sizeof sp, rel) != MR_OK)
            snprintf(sp, sizeof sp, "%s (in mrpipe's data root)", rel);
        if (st == MR_OK && (st = mr_sigma_load(&s->sigma, sp, what)) != MR_OK) {
            char why[1024];
            snprintf(why, sizeof why, "%s", mr_error_message());
            st = mr_config_error(c, v, st, "%s", why);
        }
        if (st == MR_OK && s->boot != mr_sigma_wants_bootstrap(s->sigma))
            st = mr_config_error(c, v, MR_ERR_INPUT, "%s: %s", sp, s->boot ?
                                 "not calibrated with the parametric bootstrap" :
                                 "calibrated with the parametric bootstrap: use uncertainty: "
                                 "bootstrap");
    }
    if (st != MR_OK) {
        mr_sigma_free(s->sigma);
        free(s);
        return st;
    }
    *state = s;
    return MR_OK;
}

/* (H, W) mask: the pattern, then columns outside [pad_left, pad_right) zeroed; row 0 -> mask1d. */
static mr_status build_mask(float *mask2d, float *mask1d, recon_state *s, const mr_kspace_info *in)
{
    mr_mask_params mp = s->mp;
    mr_status st;
    mp.seed = &s->seed;
    mp.seed_len = 1;
    if ((st = mr_mask_create_2d(mask2d, in->height, in->width, &mp)) != MR_OK) return st;
    for (size_t y = 0; y < in->height; y++)
        for (size_t x = 0; x < in->width; x++)
            if ((long)x < in->pad_left || (long)x >= in->pad_right) mask2d[y * in->width + x] = 0;
    memcpy(mask1d, mask2d, in->width * sizeof *mask1d);
    return MR_OK;
}

static int row_constant(const float *mask, size_t h, size_t w)
{
    for (size_t y = 1; y < h; y++)
        if (memcmp(mask + y * w, mask, w * sizeof *mask) != 0) return 0;
    return 1;
}

static mr_status recon_run(void *state, mr_scan *scan)
{
    recon_state *s = state;
    mr_status st;
    mr_array *mag = NULL, *cplx = NULL, *sd = NULL;
    mr_cfloat *slice = NULL, *grid = NULL, *image = NULL;
    float *mask2d = NULL, *mask1d = NULL, *pattern = NULL;
    float *bvol = NULL, *bdev = NULL; /* uncertainty: bootstrap: the map (S, h, w), one grid slice */
    mr_cfloat *bmaps = NULL;          /* ... and the ESPIRiT maps of the slice */
    double *nsd = NULL; /* per slice the coil noise SD */
    double *colE = NULL, difficulty = 0; /* the mask difficulty (mr_mask_difficulty) */
    size_t n_nsd_fail = 0;
    int is_zf = !strcmp(s->method->name, "zf");
    if (scan->n_images >= MR_SCAN_MAX_IMAGES)
        return mr_error_set(MR_ERR_USAGE, "more than %d reconstructions", MR_SCAN_MAX_IMAGES);
    if ((st = mr_scan_open_kspace(scan)) != MR_OK) return st;
    const mr_kspace_info *in = mr_kspace_get_info(scan->src);
    size_t C = in->coils, H = in->height, W = in->width, chw = C * H * W;
    size_t S = scan->slice_b - scan->slice_a, hw_out = in->recon_h * in->recon_w;
    size_t dims[3] = {S, in->recon_h, in->recon_w};
    if ((st = mr_array_create(&mag, MR_FLOAT32, 3, dims)) != MR_OK) goto done;
    if ((st = mr_array_create(&cplx, MR_COMPLEX64, 3, dims)) != MR_OK) goto done;
    slice = mr_malloc_aligned(chw * sizeof *slice);
    grid = mr_malloc_aligned(chw * sizeof *grid);
    image = mr_malloc_aligned(H * W * sizeof *image);
    pattern = mr_malloc(H * W * sizeof *pattern);
    if (!slice || !grid || !image || !pattern) {
        st = MR_ERR_NOMEM;
        goto done;
    }
    if (s->has_mask) {
        mask2d = mr_malloc(H * W * sizeof *mask2d);
        mask1d = mr_malloc(W * sizeof *mask1d);
        if (!mask2d || !mask1d) st = MR_ERR_NOMEM;
        else st = build_mask(mask2d, mask1d, s, in);
        if (st != MR_OK) goto done;
    }
    /* iterative methods work on the recon readout size when the pattern allows it */
    size_t gh = H;
    int use_os = !is_zf && in->recon_h < H && (!mask2d || row_constant(mask2d, H, W));
    if (use_os) {
        gh = in->recon_h;
        if (!s->os || s->oc != C || s->oh != H || s->ow != W || s->ogh != gh) {
            mr_os_plan_destroy(s->os);
            s->os = NULL;
            if ((st = mr_os_plan_create(&s->os, C, H, W, gh)) != MR_OK) goto done;
            s->oc = C, s->oh = H, s->ow = W, s->ogh = gh;
        }
    }
    if (!s->mstate || s->mc != C || s->mh != gh || s->mw != W) {
        if (s->mstate) s->method->destroy(s->mstate);
        s->mstate = NULL;
        if ((st = s->method->create(&s->mstate, &s->rp, C, gh, W)) != MR_OK) {
            s->mstate = NULL;
            goto done;
        }
        s->mc = C, s->mh = gh, s->mw = W;
    }
    nsd = calloc(S ? S : 1, sizeof *nsd);
    colE = calloc(W ? W : 1, sizeof *colE);
    if (s->boot) {
        bvol = malloc(S * hw_out * sizeof *bvol);
        bdev = malloc((H * W > 2 * hw_out ? H * W : 2 * hw_out) * sizeof *bdev);
        bmaps = mr_malloc_aligned(chw * sizeof *bmaps);
    }
    if (!nsd || !colE || (s->boot && (!bvol || !bdev || !bmaps))) {
        st = MR_ERR_NOMEM;
        goto done;
    }
    for (size_t i = 0; i < S; i++) {
        size_t sl = scan->slice_a + i;
        mr_recon_stats stats;
        const mr_cfloat *k = slice;
        if ((st = mr_kspace_read_slice(scan->src, sl, slice)) != MR_OK) goto done;
        if (mask2d)
            for (size_t j = 0; j < chw; j++)
                if (mask2d[j % (H * W)] == 0.0f) slice[j] = 0.0f; /* +0.0, never -0.0 */
        if (use_os) {
            if ((st = mr_os_execute(s->os, grid, slice)) != MR_OK) goto done;
            k = grid;
        }
        if (mask2d) memcpy(pattern, mask2d, gh * W * sizeof *pattern); /* row-constant if os */
        else if (!is_zf || i == 0) mr_mask_infer(pattern, k, C, gh, W); /* zf ignores it */
        if (!mask2d && i == 0 && !mask1d) { /* the pattern found in the data, when 1-D */
            int rows_same = 1;
            for (size_t y = 1; y < gh && rows_same; y++)
                rows_same = !memcmp(pattern + y * W, pattern, W * sizeof *pattern);
            size_t acq = 0;
            for (size_t x = 0; x < W; x++) acq += pattern[x] != 0;
            if (rows_same && acq > 0 && acq < W && (mask1d = malloc(W * sizeof *mask1d)))
                memcpy(mask1d, pattern, W * sizeof *mask1d);
        }
        /* the coil noise SD, as `mrpipe recon` records it (variance networks' noise term) */
        if (mr_noise_sd_estimate(nsd + i, k, (mask2d || !is_zf || i == 0) ? pattern : NULL, C, gh,
                                 W) != MR_OK)
            n_nsd_fail++, mr_error_clear();
        mr_kspace_column_energy_add(colE, k, C, gh, W, nsd[i]);
        if (s->boot) { /* the methods' own ESPIRiT defaults, made explicit for the bootstrap, and
                        * a fresh state per slice, as its bootstrap run's (cmd_recon.c says why) */
            mr_espirit_params ep;
            mr_espirit_params_default(&ep);
            if ((st = mr_espirit_maps(bmaps, k, pattern, C, gh, W, &ep)) != MR_OK) {
                mr_error_prefix(st, "%s: slice %zu: ", scan->kspace_path, sl);
                goto done;
            }
            if ((st = mr_recon_state_renew(s->method, &s->mstate, &s->rp, C, gh, W)) != MR_OK)
                goto done;
        }
        if ((st = s->method->run(s->mstate, image, &stats, k, pattern, s->boot ? bmaps : NULL)) !=
            MR_OK) {
            mr_error_prefix(st, "%s: slice %zu: ", scan->kspace_path, sl);
            goto done;
        }
        if (s->boot) { /* parametric bootstrap: one more reconstruction (recon/bootstrap.c) */
            if ((st = mr_bootstrap_dev(bdev, s->method, &s->rp, image, pattern, bmaps, C, gh, W)) !=
                MR_OK) {
                mr_error_prefix(st, "%s: slice %zu: ", scan->kspace_path, sl);
                goto done;
            }
            float *b = bvol + i * hw_out; /* cropped, then its local RMS in place */
            mr_crop_f32(b, in->recon_h, in->recon_w, bdev, gh, W);
            mr_sigma_bootstrap_map(b, b, in->recon_h, in->recon_w, bdev);
        }
        if (!stats.converged)
            MR_WARN("%s: slice %zu: %s did not converge: %ld iterations, residual %.3g", scan->id,
                    sl, s->method->name, stats.iterations, stats.residual);
        mr_cfloat *c = mr_array_c64(cplx) + i * hw_out;
        float *m = mr_array_f32(mag) + i * hw_out;
        mr_crop_c64(c, in->recon_h, in->recon_w, image, gh, W);
        for (size_t p = 0; p < hw_out; p++) m[p] = cabsf(c[p]);
    }
    /* the mask difficulty, for 1-D phase-encode masks (given or found in the data) */
    if (mask1d && (!s->has_mask || s->mp.type != MR_MASK_POISSON)) {
        if (mr_mask_difficulty(&difficulty, colE, mask1d, W, s->has_mask ? s->mp.accel : 0) != MR_OK)
            MR_WARN("%s: %s", scan->id, mr_error_message()), mr_error_clear(), difficulty = 0;
        else
            MR_DEBUG("%s: %s: mask difficulty %.3f", scan->id, s->label, difficulty);
    }
    if (s->sigma) { /* uncertainty: model */
        size_t hw_o = in->recon_h * in->recon_w, acq = 0;
        for (size_t x = 0; mask1d && x < W; x++) acq += mask1d[x] != 0;
        double R = acq ? (double)W / (double)acq : 0;
        double scale = mr_sigma_scale_full(s->sigma, NULL, mask1d, mask1d ? W : 0, R);
        char what[4200];
        snprintf(what, sizeof what, "%s (image %s)", scan->input, s->label);
        if ((st = mr_array_create(&sd, MR_FLOAT32, 3, dims)) != MR_OK) goto done;
        st = mr_sigma_volume_masked(mr_array_f32(sd), mr_array_f32(mag), mr_array_f32(mag),
                                         bvol, S, in->recon_h, in->recon_w, s->sigma, scale,
                                         mask1d, mask1d ? W : 0, what);
        if (st != MR_OK) goto done;
        if (n_nsd_fail < S)
            mr_sigma_add_noise_term(mr_array_f32(sd), mr_array_f32(mag), S, hw_o, s->sigma, scale,
                                    nsd, (int)C, s->method->name);
        if ((st = mr_sigma_apply_calibrate_factors(mr_array_f32(sd), mr_array_f32(mag), S, hw_o,
                                                   in->recon_w,
                                                   s->sigma, s->method->name,
                                                   n_nsd_fail < S ? nsd : NULL, mask1d,
                                                   mask1d ? W : 0, R, difficulty, NULL)) != MR_OK)
            goto done;
    }
    {
        mr_scan_image *im = &scan->images[scan->n_images++];
        memset(im, 0, sizeof *im);
        snprintf(im->label, sizeof im->label, "%s", s->label);
        snprintf(im->method, sizeof im->method, "%s", s->method->name);
        im->image = mag;
        im->cplx = cplx;
        mag = cplx = NULL;
        if (sd) {
            im->uncertainty = sd, sd = NULL;
            snprintf(im->uncertainty_kind, sizeof im->uncertainty_kind, "%s",
                     s->boot ? "bootstrap" : "model");
        }
        if (mask1d && (!s->has_mask || s->mp.type != MR_MASK_POISSON)) {
            im->mask1d = mask1d;
            im->mask_len = W;
            mask1d = NULL;
        }
        if (n_nsd_fail < S) im->noise_sd = nsd, nsd = NULL;
        im->coils = (int)C;
        im->mask_difficulty = im->mask1d ? difficulty : 0;
    }
    MR_INFO("%s: %s: %s, %zu slice(s) -> %zu x %zu", scan->id, s->label, s->method->name, S,
            in->recon_h, in->recon_w);
done:
    free(bvol), free(bdev);
    mr_free_aligned(bmaps);
    mr_array_destroy(sd);
    mr_array_destroy(mag);
    mr_array_destroy(cplx);
    mr_free_aligned(slice);
    mr_free_aligned(grid);
    mr_free_aligned(image);
    free(pattern);
    free(mask2d);
    free(mask1d);
    free(nsd);
    free(colE);
    return st;
}

const mr_stage mr_stage_recon = {
    "recon",
    "reconstruct (optionally undersampling first); appears once per method/setting, its name "
    "labels the result",
    recon_keys, recon_create, recon_run, recon_destroy,
};
