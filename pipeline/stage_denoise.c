/*
 * stage_denoise.c: the denoise stage: the learned residual CNN (DnCNN family, docs/models.md) that
 * `mrpipe denoise` runs (mr_train_denoise_volume: whole slices, one inference plan, the model's
 * percentile normalisation undone so the output keeps the input's units) on images of the scan:
 * reconstructions (recon stages), the image of a DICOM / NIfTI input (`input`), or all of them.
 * Each cleaned image becomes a new image of the scan labelled `<image>_<suffix>` (zf_4x_cnn), so
 * validate scores it, write writes it and report shows it like any reconstruction. The model file
 * is loaded (and checked) when the pipeline is built, once per process.
 *
 * Uncertainty: the key `uncertainty` (none | model | replica | both; pipeline/uq_model.c, as
 * `mrpipe denoise --uncertainty`) fills mr_scan_image.uncertainty (float32 SD of the image's
 * shape): write writes it as <label>_sd.* and the report shows and judges it. `model` needs the
 * model's variance network (NAME_sigma.h5 beside it), loaded with the model at build time.
 */
#include "mr_nn.h"
#include "mr_stages.h"
#include "mr_train.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DENOISE_MAX MR_SCAN_MAX_IMAGES

typedef struct {
    mr_nn_model *model;
    char model_path[4096];
    mr_uq_kind uq;
    void *sigma;               /* the variance network (model | both | bootstrap) */
    int boot;                  /* uncertainty: bootstrap (the model path with its bootstrap map) */
    long replicas;
    size_t n;                  /* images cleaned */
    char in[DENOISE_MAX][64];  /* (n) source labels */
    char out[DENOISE_MAX][64]; /* (n) new labels <in>_<suffix> */
} denoise_state;

static const mr_stage_key denoise_keys[] = {
    {"model", MR_KEY_STRING, "models/denoiser_blind.h5", 0,
     "model file written by mrpipe train; a relative path is looked up next to the config, then "
     "in mrpipe's data root (the shipped models/)"},
    {"images", MR_KEY_LIST, "[]", 0,
     "images to clean: recon stage names or input (a DICOM/NIfTI input); [] = every recon image "
     "and input made before this stage"},
    {"suffix", MR_KEY_STRING, "cnn", 0, "the cleaned image of X is labelled X_<suffix>"},
    {"uncertainty", MR_KEY_STRING, "none", 0,
     "none | model | replica | both | bootstrap: per-pixel SD of the cleaned image (as mrpipe "
     "denoise --uncertainty; model needs the model's NAME_sigma.h5 beside it, bootstrap its "
     "NAME_sigma_bootstrap.h5 and a recon image with its mask)"},
    {"replicas", MR_KEY_INT, "8", 0, "replicas for uncertainty replica / both (>= 2)"},
    {NULL, 0, NULL, 0, NULL},
};

size_t mr_stage_denoise_labels(const void *state, const char (**labels)[64])
{
    const denoise_state *s = state;
    *labels = (const char(*)[64])s->out;
    return s->n;
}

static void denoise_destroy(void *state)
{
    denoise_state *s = state;
    if (!s) return;
    mr_nn_model_destroy(s->model);
    mr_sigma_free(s->sigma);
    free(s);
}

/* A relative model path: next to the config file first, then in the data root. */
static mr_status resolve_model(char *out, size_t size, const mr_config *c, const mr_cfg_node *n,
                               const char *v)
{
    if (v[0] == '/') {
        snprintf(out, size, "%s", v);
        return MR_OK;
    }
    if (n->line != 0 && strcmp(c->dir, ".") != 0) {
        if ((size_t)snprintf(out, size, "%s/%s", c->dir, v) < size && access(out, R_OK) == 0)
            return MR_OK;
    } else if (access(v, R_OK) == 0) { /* --set values: the current directory */
        snprintf(out, size, "%s", v);
        return MR_OK;
    }
    if (mr_data_path(out, size, v) == MR_OK) return MR_OK;
    mr_error_clear();
    return mr_config_error(c, n, MR_ERR_INPUT,
                           "model file %s not found (looked next to the config%s and in mrpipe's "
                           "data root %s)",
                           v, strcmp(c->dir, ".") ? "" : " (current directory)",
                           mr_data_root() ? mr_data_root() : "(none)");
}

static int is_label_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '_' || ch == '-';
}

static mr_status denoise_create(void **state, const mr_stage_ctx *x)
{
    denoise_state *s = mr_calloc(1, sizeof *s);
    const mr_config *c = x->config;
    const mr_cfg_node *mn = mr_cfg_child(x->node, "model"), *sn = mr_cfg_child(x->node, "suffix");
    const mr_cfg_node *un = mr_cfg_child(x->node, "uncertainty");
    const mr_pipeline *p = x->pipeline;
    size_t here = mr_stage_ctx_index(x);
    char(*images)[64] = NULL;
    size_t n_images = 0;
    mr_status st = MR_OK;
    if (!s) return MR_ERR_NOMEM;
    /* uncertainty */
    if (mr_uq_kind_parse_boot(&s->uq, &s->boot, un->value, "uncertainty") != MR_OK)
        st = mr_config_error(c, un, MR_ERR_USAGE, "expected none, model, replica, both or "
                             "bootstrap, found '%s'", un->value);
    const mr_cfg_node *rn = mr_cfg_child(x->node, "replicas");
    if (st == MR_OK) st = mr_cfg_as_long(&s->replicas, c, rn, 2, 100000); /* names the key */
    /* suffix: it names files */
    if (st == MR_OK) {
        const char *v = sn->value;
        int ok = v[0] && strlen(v) < 32;
        for (const char *q = v; ok && *q; q++)
            ok = is_label_char(*q);
        if (!ok)
            st = mr_config_error(c, sn, MR_ERR_USAGE,
                                 "expected 1-31 letters, digits, '_' or '-' "
                                 "(it names output files), found '%s'",
                                 v);
    }
    /* the model: found and loaded now, so a wrong file fails before any work */
    if (st == MR_OK && !mn->value[0])
        st = mr_config_error(c, mn, MR_ERR_USAGE, "expected a model file, found nothing");
    if (st == MR_OK) st = resolve_model(s->model_path, sizeof s->model_path, c, mn, mn->value);
    if (st == MR_OK && (st = mr_nn_model_load(&s->model, s->model_path, "magnitude")) != MR_OK) {
        char why[1024];
        snprintf(why, sizeof why, "%s", mr_error_message());
        st = mr_config_error(c, mn, st, "%s", why);
    }
    if (st == MR_OK && (s->uq == MR_UQ_MODEL || s->uq == MR_UQ_BOTH)) {
        char sp[4096];
        if ((st = (s->boot ? mr_sigma_bootstrap_path_for : mr_sigma_path_for)(sp, sizeof sp,
                                                                           s->model_path)) == MR_OK &&
            (st = mr_sigma_load(&s->sigma, sp, s->model_path)) != MR_OK) {
            char why[1024];
            snprintf(why, sizeof why, "%s", mr_error_message());
            st = mr_config_error(c, un, st, "%s", why);
        } else if (st == MR_OK && mr_sigma_wants_bootstrap(s->sigma))
            st = mr_config_error(c, un, MR_ERR_INPUT, "%s: calibrated with a reconstruction's "
                                 "parametric bootstrap (recon stage uncertainty: bootstrap), not "
                                 "for denoise", sp);
        else if (st == MR_OK && s->boot != mr_sigma_has_boot_sd(s->sigma))
            st = mr_config_error(c, un, MR_ERR_INPUT, s->boot
                                 ? "%s: has no bootstrap weights (mrpipe calibrate with a bootstrap "
                                   "column): expected the network for uncertainty: bootstrap"
                                 : "%s: calibrated with the model's parametric bootstrap: use it "
                                   "with uncertainty: bootstrap", sp);
    }
    /* which images: the list, or every recon image and input made before this stage */
    if (st == MR_OK)
        st = mr_stage_check_images(&images, &n_images, x, mr_cfg_child(x->node, "images"));
    if (st == MR_OK) {
        if (n_images) {
            for (size_t i = 0; i < n_images && i < DENOISE_MAX; i++)
                snprintf(s->in[s->n++], 64, "%s", images[i]);
        } else {
            if (mr_pipeline_image_known(p, here, "input")) snprintf(s->in[s->n++], 64, "input");
            for (size_t j = 0; j < here && s->n < DENOISE_MAX; j++)
                if (p->stages[j].stage == &mr_stage_recon)
                    snprintf(s->in[s->n++], 64, "%s", p->stages[j].label);
        }
        if (s->n == 0)
            st = mr_config_error(c, x->node, MR_ERR_USAGE,
                                 "no image to clean before this stage (a "
                                 "recon stage, or a DICOM / NIfTI input)");
    }
    for (size_t i = 0; st == MR_OK && i < s->n; i++) {
        int k = snprintf(s->out[i], 64, "%s_%s", s->in[i], sn->value);
        if (k < 0 || k >= 64)
            st = mr_config_error(c, sn, MR_ERR_USAGE, "label %s_%s is longer than 63 characters",
                                 s->in[i], sn->value);
        else if (mr_pipeline_image_known(p, here, s->out[i]))
            st = mr_config_error(c, sn, MR_ERR_USAGE,
                                 "label %s is already an image's (choose "
                                 "another suffix)",
                                 s->out[i]);
        for (size_t j = 0; st == MR_OK && j < i; j++)
            if (!strcmp(s->out[i], s->out[j]))
                st =
                    mr_config_error(c, x->node, MR_ERR_USAGE, "image %s is listed twice", s->in[i]);
    }
    free(images);
    if (st != MR_OK) {
        denoise_destroy(s);
        return st;
    }
    *state = s;
    return MR_OK;
}

static mr_status denoise_run(void *state, mr_scan *scan)
{
    denoise_state *s = state;
    mr_status st;
    if ((st = mr_scan_load_image(scan)) != MR_OK) return st;
    for (size_t i = 0; i < s->n; i++) {
        const mr_scan_image *src = NULL;
        mr_array *out = NULL;
        for (size_t j = 0; j < scan->n_images; j++)
            if (!strcmp(scan->images[j].label, s->in[i])) src = &scan->images[j];
        if (!src) return mr_error_set(MR_ERR_INTERNAL, "no image '%s' in the scan", s->in[i]);
        if (scan->n_images >= MR_SCAN_MAX_IMAGES)
            return mr_error_set(MR_ERR_USAGE, "more than %d images", MR_SCAN_MAX_IMAGES);
        const mr_array *a = src->image;
        if ((st = mr_array_create(&out, MR_FLOAT32, 3, a->dims)) != MR_OK) return st;
        char what[4200];
        snprintf(what, sizeof what, "%s (image %s)", scan->input, src->label);
        mr_array *sd = NULL;
        double accel = 0; /* the image's undersampling, when a recon stage applied a mask */
        if (src->mask1d && src->mask_len) {
            double acq = 0;
            for (size_t k = 0; k < src->mask_len; k++) acq += src->mask1d[k] != 0;
            if (acq > 0) accel = (double)src->mask_len / acq;
        }
        mr_array *bmap = NULL; /* uncertainty: bootstrap, the model's bootstrap map */
        if (s->uq != MR_UQ_NONE) st = mr_array_create(&sd, MR_FLOAT32, 3, a->dims);
        if (st == MR_OK && s->boot) {
            if (!src->mask1d || !src->mask_len || !src->method[0])
                st = mr_error_set(MR_ERR_INPUT, "%s: uncertainty: bootstrap re-runs the image's "
                                  "reconstruction: expected an image of a recon stage (its mask "
                                  "and method), found %s", what, src->mask1d ? "no method" : "no mask");
            else
                st = mr_array_create(&bmap, MR_FLOAT32, 3, a->dims);
        }
        mr_uq_input info = {accel, src->method, src->mask1d, src->mask_len, src->noise_sd,
                            src->coils, src->mask_difficulty,
                            src->uncertainty && mr_array_numel(src->uncertainty) == mr_array_numel(a)
                                ? mr_array_f32(src->uncertainty) : NULL,
                            bmap ? mr_array_f32(bmap) : NULL};
        if (st == MR_OK)
            st = mr_denoise_uq(mr_array_f32(out), sd ? mr_array_f32(sd) : NULL, mr_array_f32(a),
                               a->dims[0], a->dims[1], a->dims[2], s->model, s->sigma, s->uq,
                               (int)s->replicas, (uint64_t)scan->index, &info, NULL, what);
        mr_array_destroy(bmap);
        if (st != MR_OK) {
            mr_array_destroy(out);
            mr_array_destroy(sd);
            return st;
        }
        mr_scan_image *im = &scan->images[scan->n_images++];
        memset(im, 0, sizeof *im);
        snprintf(im->label, sizeof im->label, "%s", s->out[i]);
        snprintf(im->method, sizeof im->method, "denoise");
        im->image = out;
        im->uncertainty = sd;
        /* the reference's noise is the same as the recon's: kept for later stages and outputs */
        if (src->noise_sd && (im->noise_sd = malloc(a->dims[0] * sizeof *im->noise_sd)))
            memcpy(im->noise_sd, src->noise_sd, a->dims[0] * sizeof *im->noise_sd);
        im->coils = src->coils;
        im->mask_difficulty = src->mask_difficulty;
        if (src->mask1d && src->mask_len && (im->mask1d = malloc(src->mask_len * sizeof *im->mask1d))) {
            memcpy(im->mask1d, src->mask1d, src->mask_len * sizeof *im->mask1d); /* provenance */
            im->mask_len = src->mask_len;
        }
        if (sd)
            snprintf(im->uncertainty_kind, sizeof im->uncertainty_kind, "%s",
                     s->boot ? "bootstrap" : mr_uq_kind_name(s->uq));
        MR_INFO("%s: %s: residual CNN (%s) on %s, %zu slice(s) of %zu x %zu", scan->id, im->label,
                s->model_path, s->in[i], a->dims[0], a->dims[1], a->dims[2]);
    }
    return MR_OK;
}

const mr_stage mr_stage_denoise = {
    "denoise",
    "the learned residual-CNN denoiser (as mrpipe denoise) on recon images or the image input; "
    "each cleaned image X becomes a new image X_<suffix>; may appear more than once",
    denoise_keys,
    denoise_create,
    denoise_run,
    denoise_destroy,
};
