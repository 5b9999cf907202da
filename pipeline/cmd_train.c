/*
 * cmd_train.c: `mrpipe train --config FILE.yaml [--resume] [--output DIR]`: trains the blind
 * residual-CNN denoiser (DnCNN family, Zhang et al. 2017; ../shared/REFERENCE.md) on the clean MRI
 * volumes of ../shared/DATA.md with Rician noise at random levels (one blind model).
 *
 * Data: training volumes split along world z into disjoint blocks (validation and calibration
 * slabs, widened by a guard, are cut out of every training volume: ch2, ch2bet and ch2better are
 * one subject); 2-D patches from the three orientations, dihedral augmentation, gamma/scale
 * intensity remapping; quantised (integer-valued) volumes get a [1 2 1]/4 blur before serving as
 * clean targets. Inputs are normalised by a percentile of the volume (recorded in the model).
 *
 * Reproducibility and resume: batch s is drawn from an rng seeded by (seed, s) only, so the data
 * of every step is known without replaying earlier steps; a checkpoint (weights, BN statistics,
 * Adam moments, step count) is written at the end of every epoch, and `--resume` continues from it
 * to the same final weights as an uninterrupted run (same seed and thread count).
 *
 * Output DIR: checkpoint.h5, model.h5 (final), train_log.csv (one row per epoch), train_curve.png;
 * `export:` keys copy the final three to their shipped places.
 */
#include "mr_config.h"
#include "mr_io.h"
#include "mr_nn.h"
#include "mr_pipeline.h"
#include "mr_train.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *USAGE =
    "usage: mrpipe train --config FILE.yaml [--resume] [--output DIR] [--seed S]\n"
    "                    [--stop-after-epochs N]\n"
    "\n"
    "  --config FILE   training configuration (configs/train_denoiser.yaml; docs/models.md)\n"
    "  --output DIR    where checkpoint.h5, model.h5, train_log.csv and train_curve.png go\n"
    "                  [the config's `output`]\n"
    "  --resume        continue from DIR/checkpoint.h5 (same result as an uninterrupted run)\n"
    "  --seed S        the config's seed replaced (e.g. the members of a deep ensemble)\n"
    "  --stop-after-epochs N  stop after epoch N's checkpoint, as if killed (for tests)\n";

#define MAX_SETS 8
#define MAX_EPOCHS 100000

typedef struct {
    char file[4096];
    int has_z;
    double z0, z1;
} set_entry;

typedef struct {
    long seed;
    int depth, channels;
    double percentile;
    char dir[4096];
    int ntrain;
    char train[MAX_SETS][4096];
    int nsynth, nsynth_atlas;            /* data.synthetic: volumes made from label atlases */
    char synth_atlas[MAX_SETS][4096];
    int blur;
    double guard_mm;
    int nval, ncal;
    set_entry val[MAX_SETS], cal[MAX_SETS];
    int val_slices;
    mr_train_sampler sampler;
    double val_sigma;
    int batch;
    long epochs, steps_per_epoch, warmup;
    double lr, lr_min, weight_decay;
    int loss_l1;
    char output[4096];
    char export_model[4096], export_log[4096], export_curve[4096];
    int us;          /* degradation: undersampling artefacts (else Rician noise) */
    mr_train_us u;
    char init[4096]; /* start from this model's weights (same architecture) */
    int vh;          /* variance_head: train the variance network of a base model */
    char vh_base[4096]; /* the base model ("" = none: the variance of the input itself) */
    int vh_zf;          /* none + second_input zero_filled: (recon, its zero-filled image) */
    int vh_unsampled;   /* unsampled_part: a third channel, the input's unsampled part */
    double vh_drop;     /* unsampled_dropout: training patches whose third channel is zeroed */
    int vh_feat;        /* feature_fit: refit the SD on image features on the calibration set */
    int vh_boot;        /* bootstrap: the refit's second feature is the reconstruction's parametric
                         * bootstrap map instead of G|y - x| (recon --uncertainty bootstrap) */
    int boot_sets;      /* set on cal_set_sd's copy: degraded sets also get their bootstrap maps */
    int vh_noise;       /* noise_term: the reference's noise added to the SD (undersampling) */
    int noise_ends;     /* noise_at cycles the ends and the middle of the noise range */
    int n_cal_sigma;
    double cal_sigma[8]; /* Rician calibration levels (x the region's maximum) */
    int cal_slices;
} train_cfg;

/* ---------------------------------------------------------------- config */

static mr_status check_keys(const mr_config *c, const mr_cfg_node *map, const char *const *keys)
{
    if (map->kind != MR_CFG_MAP)
        return mr_config_error(c, map, MR_ERR_USAGE, "expected a mapping");
    for (size_t i = 0; i < map->n; i++) {
        int ok = 0;
        for (const char *const *k = keys; *k; k++)
            if (!strcmp(*k, map->keys[i])) ok = 1;
        if (!ok) {
            char list[512] = "";
            for (const char *const *k = keys; *k; k++) {
                strncat(list, *k, sizeof list - strlen(list) - 1);
                if (k[1]) strncat(list, ", ", sizeof list - strlen(list) - 1);
            }
            return mr_config_error(c, map->items[i], MR_ERR_USAGE,
                                   "unknown key: expected one of %s", list);
        }
    }
    return MR_OK;
}

static mr_status get_long(long *out, const mr_config *c, const mr_cfg_node *map, const char *key,
                          long lo, long hi)
{
    const mr_cfg_node *n = map ? mr_cfg_child(map, key) : NULL;
    return n ? mr_cfg_as_long(out, c, n, lo, hi) : MR_OK;
}

static mr_status get_double(double *out, const mr_config *c, const mr_cfg_node *map,
                            const char *key, double lo, double hi)
{
    const mr_cfg_node *n = map ? mr_cfg_child(map, key) : NULL;
    return n ? mr_cfg_as_double(out, c, n, lo, hi) : MR_OK;
}

static mr_status get_range(double *a, double *b, const mr_config *c, const mr_cfg_node *map,
                           const char *key, double lo, double hi)
{
    const mr_cfg_node *n = map ? mr_cfg_child(map, key) : NULL;
    if (!n) return MR_OK;
    if (n->kind != MR_CFG_SEQ || n->n != 2)
        return mr_config_error(c, n, MR_ERR_USAGE, "expected a pair [low, high]");
    mr_status st = mr_cfg_as_double(a, c, n->items[0], lo, hi);
    if (st == MR_OK) st = mr_cfg_as_double(b, c, n->items[1], lo, hi);
    if (st == MR_OK && !(*a <= *b))
        return mr_config_error(c, n, MR_ERR_USAGE, "expected low <= high, found [%g, %g]", *a, *b);
    return st;
}

/* A path from the config: absolute, or relative to `base` (the data dir or the config's dir). */
static mr_status get_path(char *out, size_t size, const mr_config *c, const mr_cfg_node *n,
                          const char *base)
{
    const char *s;
    mr_status st = mr_cfg_as_string(&s, c, n);
    if (st != MR_OK) return st;
    if (!s[0]) return mr_config_error(c, n, MR_ERR_USAGE, "expected a path, found an empty value");
    int len = s[0] == '/' || !base[0] ? snprintf(out, size, "%s", s)
                                       : snprintf(out, size, "%s/%s", base, s);
    if (len < 0 || (size_t)len >= size)
        return mr_config_error(c, n, MR_ERR_USAGE, "path too long");
    return MR_OK;
}

static mr_status parse_sets(set_entry *out, int *count, const mr_config *c, const mr_cfg_node *n,
                            const char *dir)
{
    static const char *const keys[] = {"file", "z_mm", NULL};
    if (n->kind != MR_CFG_SEQ || n->n == 0 || n->n > MAX_SETS)
        return mr_config_error(c, n, MR_ERR_USAGE, "expected a list of 1 to %d entries", MAX_SETS);
    for (size_t i = 0; i < n->n; i++) {
        const mr_cfg_node *e = n->items[i], *f;
        mr_status st = check_keys(c, e, keys);
        if (st != MR_OK) return st;
        if (!(f = mr_cfg_child(e, "file")))
            return mr_config_error(c, e, MR_ERR_USAGE, "missing key 'file'");
        if ((st = get_path(out[i].file, sizeof out[i].file, c, f, dir)) != MR_OK) return st;
        out[i].has_z = mr_cfg_child(e, "z_mm") != NULL;
        if ((st = get_range(&out[i].z0, &out[i].z1, c, e, "z_mm", -1e4, 1e4)) != MR_OK) return st;
    }
    *count = (int)n->n;
    return MR_OK;
}

static const char *base_name(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

/* degradation: {type: rician|undersampling, accel: [..], center_fraction: [..], masks: [..],
 * methods: [..], coils, noise: [lo, hi], matrix, bank_slices} */
static mr_status parse_degradation(train_cfg *t, const mr_config *c, const mr_cfg_node *sec)
{
    static const char *const keys[] = {"type", "accel", "center_fraction", "masks", "methods",
                                       "coils", "noise", "matrix", "bank_slices", NULL};
    mr_status st = check_keys(c, sec, keys);
    const mr_cfg_node *n;
    const char *s;
    long v;
    if (st != MR_OK) return st;
    if (!(n = mr_cfg_child(sec, "type")))
        return mr_config_error(c, sec, MR_ERR_USAGE, "missing key 'type' (rician or undersampling)");
    if ((st = mr_cfg_as_string(&s, c, n)) != MR_OK) return st;
    if (!strcmp(s, "rician")) return MR_OK;
    if (strcmp(s, "undersampling"))
        return mr_config_error(c, n, MR_ERR_USAGE, "expected rician or undersampling, found '%s'", s);
    mr_train_us *u = &t->u;
    t->us = 1;
    *u = (mr_train_us){1, {4}, {0.08}, 1, {MR_MASK_EQUISPACED}, 1, {"zf"}, 8, 0.002, 0.02, 256, 400, 0};
    const char *lists[4] = {"accel", "center_fraction", "masks", "methods"};
    for (int li = 0; li < 4; li++) {
        if (!(n = mr_cfg_child(sec, lists[li]))) continue;
        if (n->kind != MR_CFG_SEQ || n->n < 1 || n->n > MR_TRAIN_US_MAX)
            return mr_config_error(c, n, MR_ERR_USAGE, "expected a list of 1 to %d values",
                                   MR_TRAIN_US_MAX);
        for (size_t i = 0; i < n->n; i++) {
            const mr_cfg_node *e = n->items[i];
            if (li == 0) st = mr_cfg_as_double(&u->accel[i], c, e, 1.0001, 64);
            else if (li == 1) st = mr_cfg_as_double(&u->cf[i], c, e, 0, 0.9);
            else {
                if ((st = mr_cfg_as_string(&s, c, e)) != MR_OK) return st;
                if (li == 2) {
                    if (mr_mask_type_parse(&u->masks[i], s) != MR_OK || u->masks[i] == MR_MASK_POISSON)
                        return mr_config_error(c, e, MR_ERR_USAGE, "expected a 1-D fastMRI mask "
                                               "(random, equispaced, equispaced-fraction), found '%s'", s);
                } else {
                    if (!mr_recon_method_find(s))
                        return mr_config_error(c, e, MR_ERR_USAGE, "unknown reconstruction method "
                                               "'%s' (mrpipe recon --help lists them)", s);
                    snprintf(u->methods[i], sizeof u->methods[i], "%s", s);
                }
            }
            if (st != MR_OK) return st;
        }
        if (li == 0) u->n_accel = (int)n->n;
        else if (li == 1 && (int)n->n != u->n_accel)
            return mr_config_error(c, n, MR_ERR_USAGE, "expected one centre fraction per "
                                   "acceleration (%d), found %zu", u->n_accel, n->n);
        else if (li == 2) u->n_masks = (int)n->n;
        else if (li == 3) u->n_methods = (int)n->n;
    }
    if (mr_cfg_child(sec, "accel") && !mr_cfg_child(sec, "center_fraction"))
        return mr_config_error(c, mr_cfg_child(sec, "accel"), MR_ERR_USAGE,
                               "accel needs center_fraction (one per acceleration)");
    v = u->coils;
    if ((st = get_long(&v, c, sec, "coils", 1, 64)) != MR_OK) return st;
    u->coils = (int)v, v = u->matrix;
    if ((st = get_long(&v, c, sec, "matrix", 32, 1024)) != MR_OK) return st;
    u->matrix = (int)v, v = u->bank_slices;
    if ((st = get_long(&v, c, sec, "bank_slices", 1, 100000)) != MR_OK) return st;
    u->bank_slices = (int)v;
    return get_range(&u->noise_min, &u->noise_max, c, sec, "noise", 1e-6, 1);
}

static mr_status parse_config(train_cfg *t, const mr_config *c)
{
    static const char *const top[] = {"seed", "model", "normalisation", "data", "noise",
                                      "augment", "training", "output", "export",
                                      "degradation", "init", "variance_head", NULL};
    static const char *const kmodel[] = {"depth", "channels", NULL};
    static const char *const knorm[] = {"percentile", NULL};
    static const char *const kdata[] = {"dir", "training", "blur_quantised", "guard_mm",
                                       "validation", "calibration", "validation_slices",
                                       "synthetic", NULL};
    static const char *const ksynth[] = {"atlases", "volumes", NULL};
    static const char *const knoise[] = {"sigma", "validation_sigma", NULL};
    static const char *const kaug[] = {"gamma", "scale", "min_mean", NULL};
    static const char *const ktrain[] = {"patch", "batch", "epochs", "steps_per_epoch", "lr",
                                        "lr_min", "warmup_steps", "weight_decay", "loss", NULL};
    static const char *const kexp[] = {"model", "log", "curve", NULL};
    const mr_cfg_node *r = c->root, *n, *sec;
    mr_status st;
    long v;
    memset(t, 0, sizeof *t);
    t->seed = 1;
    t->depth = 10, t->channels = 32;
    t->percentile = 99.5;
    t->blur = 1;
    t->guard_mm = 4;
    t->val_slices = 3;
    t->sampler = (mr_train_sampler){40, 0.01, 0.35, 0.7, 1.4, 0.75, 1.25, 0.05};
    t->val_sigma = 0.05;
    t->batch = 16;
    t->epochs = 10, t->steps_per_epoch = 100, t->warmup = 0;
    t->lr = 1e-3, t->lr_min = 1e-5, t->weight_decay = 1e-4;
    if ((st = check_keys(c, r, top)) != MR_OK) return st;
    if ((st = get_long(&t->seed, c, r, "seed", 0, 0x7fffffffL)) != MR_OK) return st;
    if ((sec = mr_cfg_child(r, "model"))) {
        if ((st = check_keys(c, sec, kmodel)) != MR_OK) return st;
        v = t->depth;
        if ((st = get_long(&v, c, sec, "depth", 2, MR_NN_MAX_DEPTH)) != MR_OK) return st;
        t->depth = (int)v, v = t->channels;
        if ((st = get_long(&v, c, sec, "channels", 1, 512)) != MR_OK) return st;
        t->channels = (int)v;
    }
    if ((sec = mr_cfg_child(r, "normalisation"))) {
        if ((st = check_keys(c, sec, knorm)) != MR_OK) return st;
        if ((st = get_double(&t->percentile, c, sec, "percentile", 50, 100)) != MR_OK) return st;
    }
    if (!(sec = mr_cfg_child(r, "data")))
        return mr_error_set(MR_ERR_USAGE, "%s: missing section 'data'", c->file);
    if ((st = check_keys(c, sec, kdata)) != MR_OK) return st;
    if ((n = mr_cfg_child(sec, "dir"))) {
        if ((st = get_path(t->dir, sizeof t->dir, c, n, c->dir)) != MR_OK) return st;
    } else
        snprintf(t->dir, sizeof t->dir, "%s", c->dir);
    if (!(n = mr_cfg_child(sec, "training")) || n->kind != MR_CFG_SEQ || n->n == 0 ||
        n->n > MAX_SETS)
        return n ? mr_config_error(c, n, MR_ERR_USAGE, "expected a list of 1 to %d files",
                                   MAX_SETS)
                 : mr_config_error(c, sec, MR_ERR_USAGE, "missing key 'training'");
    for (size_t i = 0; i < n->n; i++)
        if ((st = get_path(t->train[i], sizeof t->train[i], c, n->items[i], t->dir)) != MR_OK)
            return st;
    t->ntrain = (int)n->n;
    if ((n = mr_cfg_child(sec, "synthetic"))) {
        const mr_cfg_node *a = mr_cfg_child(n, "atlases");
        long nv = 4;
        if ((st = check_keys(c, n, ksynth)) != MR_OK) return st;
        if (!a || a->kind != MR_CFG_SEQ || a->n == 0 || a->n > MAX_SETS)
            return mr_config_error(c, a ? a : n, MR_ERR_USAGE, "atlases: expected a list of 1 to "
                                   "%d label atlases (NIfTI)", MAX_SETS);
        for (size_t i = 0; i < a->n; i++)
            if ((st = get_path(t->synth_atlas[i], sizeof t->synth_atlas[i], c, a->items[i],
                               t->dir)) != MR_OK)
                return st;
        t->nsynth_atlas = (int)a->n;
        if ((st = get_long(&nv, c, n, "volumes", 1, MAX_SETS - t->ntrain)) != MR_OK) return st;
        t->nsynth = (int)nv;
    }
    if ((n = mr_cfg_child(sec, "blur_quantised")) && (st = mr_cfg_as_bool(&t->blur, c, n)))
        return st;
    if ((st = get_double(&t->guard_mm, c, sec, "guard_mm", 0, 1000)) != MR_OK) return st;
    if (!(n = mr_cfg_child(sec, "validation")))
        return mr_config_error(c, sec, MR_ERR_USAGE, "missing key 'validation'");
    if ((st = parse_sets(t->val, &t->nval, c, n, t->dir)) != MR_OK) return st;
    if ((n = mr_cfg_child(sec, "calibration")) &&
        (st = parse_sets(t->cal, &t->ncal, c, n, t->dir)) != MR_OK)
        return st;
    v = t->val_slices;
    if ((st = get_long(&v, c, sec, "validation_slices", 1, 64)) != MR_OK) return st;
    t->val_slices = (int)v;
    /* a held-out entry without a z range is a whole volume: it must not be a training file */
    for (int pass = 0; pass < 2; pass++) {
        const set_entry *e = pass ? t->cal : t->val;
        int ne = pass ? t->ncal : t->nval;
        for (int i = 0; i < ne; i++)
            for (int j = 0; j < t->ntrain && !e[i].has_z; j++)
                if (!strcmp(base_name(e[i].file), base_name(t->train[j])))
                    return mr_config_error(c, mr_cfg_child(sec, pass ? "calibration" : "validation"),
                                           MR_ERR_USAGE,
                                           "'%s' is a training volume: a held-out entry of it "
                                           "needs a z_mm slab", base_name(e[i].file));
    }
    if ((sec = mr_cfg_child(r, "noise"))) {
        if ((st = check_keys(c, sec, knoise)) != MR_OK) return st;
        if ((st = get_range(&t->sampler.sigma_min, &t->sampler.sigma_max, c, sec, "sigma", 1e-4,
                            2)) != MR_OK)
            return st;
        if ((st = get_double(&t->val_sigma, c, sec, "validation_sigma", 0, 1)) != MR_OK) return st;
    }
    if ((sec = mr_cfg_child(r, "degradation")) && (st = parse_degradation(t, c, sec)) != MR_OK)
        return st;
    if ((sec = mr_cfg_child(r, "variance_head"))) {
        static const char *const kvh[] = {"base", "calibration_sigma", "calibration_slices",
                                          "second_input", "unsampled_part",
                                          "unsampled_dropout", "feature_fit", "noise_term",
                                          "bootstrap", NULL};
        const char *b;
        if ((st = check_keys(c, sec, kvh)) != MR_OK) return st;
        t->vh = 1;
        t->n_cal_sigma = 3;
        t->cal_sigma[0] = 0.03, t->cal_sigma[1] = 0.05, t->cal_sigma[2] = 0.10;
        t->cal_slices = 8;
        if (!(n = mr_cfg_child(sec, "base")))
            return mr_config_error(c, sec, MR_ERR_USAGE, "missing key 'base' (a model file or none)");
        if ((st = mr_cfg_as_string(&b, c, n)) != MR_OK) return st;
        if (strcmp(b, "none") && (st = get_path(t->vh_base, sizeof t->vh_base, c, n, c->dir)) != MR_OK)
            return st;
        if ((n = mr_cfg_child(sec, "calibration_sigma"))) {
            if (n->kind != MR_CFG_SEQ || n->n < 1 || n->n > 8)
                return mr_config_error(c, n, MR_ERR_USAGE, "expected a list of 1 to 8 levels");
            for (size_t i = 0; i < n->n; i++)
                if ((st = mr_cfg_as_double(&t->cal_sigma[i], c, n->items[i], 1e-4, 1)) != MR_OK)
                    return st;
            t->n_cal_sigma = (int)n->n;
        }
        v = t->cal_slices;
        if ((st = get_long(&v, c, sec, "calibration_slices", 1, 256)) != MR_OK) return st;
        t->cal_slices = (int)v;
        if ((n = mr_cfg_child(sec, "second_input"))) {
            if ((st = mr_cfg_as_string(&b, c, n)) != MR_OK) return st;
            if (!strcmp(b, "zero_filled"))
                t->vh_zf = 1;
            else if (strcmp(b, "output"))
                return mr_config_error(c, n, MR_ERR_USAGE, "expected output or zero_filled, found "
                                       "'%s'", b);
            if (t->vh_zf && !t->us)
                return mr_config_error(c, n, MR_ERR_USAGE, "zero_filled needs degradation: {type: "
                                       "undersampling} before variance_head");
            if (t->vh_zf && t->vh_base[0])
                return mr_config_error(c, n, MR_ERR_USAGE, "zero_filled needs base: none (the "
                                       "reconstruction judges itself)");
        }
        if ((n = mr_cfg_child(sec, "unsampled_part"))) {
            if ((st = mr_cfg_as_bool(&t->vh_unsampled, c, n)) != MR_OK) return st;
            if (t->vh_unsampled && !t->us)
                return mr_config_error(c, n, MR_ERR_USAGE, "unsampled_part needs degradation: "
                                       "{type: undersampling} before variance_head");
            if (t->vh_unsampled && t->vh_zf)
                return mr_config_error(c, n, MR_ERR_USAGE, "unsampled_part and second_input: "
                                       "zero_filled cannot be combined");
            t->u.aux_unsampled = t->vh_unsampled;
        }
        if ((n = mr_cfg_child(sec, "feature_fit")) &&
            (st = mr_cfg_as_bool(&t->vh_feat, c, n)) != MR_OK)
            return st;
        if ((n = mr_cfg_child(sec, "noise_term"))) {
            if ((st = mr_cfg_as_bool(&t->vh_noise, c, n)) != MR_OK) return st;
            if (t->vh_noise && !t->us)
                return mr_config_error(c, n, MR_ERR_USAGE, "noise_term needs degradation: "
                                       "{type: undersampling} before variance_head (Rician "
                                       "models have scales per noise level instead)");
        }
        if ((n = mr_cfg_child(sec, "bootstrap"))) {
            if ((st = mr_cfg_as_bool(&t->vh_boot, c, n)) != MR_OK) return st;
            int zf = 0;
            for (int i = 0; i < t->u.n_methods; i++) zf |= !strcmp(t->u.methods[i], "zf");
            if (t->vh_boot && (!t->us || !t->vh_feat || t->vh_base[0] || zf))
                return mr_config_error(c, n, MR_ERR_USAGE, "bootstrap needs degradation: {type: "
                                       "undersampling} with methods other than zf before "
                                       "variance_head, base: none and feature_fit: true (the "
                                       "bootstrap map is a feature of the refit)");
        }
        t->vh_drop = 0.2;
        if ((st = get_double(&t->vh_drop, c, sec, "unsampled_dropout", 0, 1)) != MR_OK) return st;
    }
    if ((n = mr_cfg_child(r, "init")) &&
        (st = get_path(t->init, sizeof t->init, c, n, c->dir)) != MR_OK)
        return st;
    if ((sec = mr_cfg_child(r, "augment"))) {
        if ((st = check_keys(c, sec, kaug)) != MR_OK) return st;
        if ((st = get_range(&t->sampler.gamma_min, &t->sampler.gamma_max, c, sec, "gamma", 0.1,
                            10)) != MR_OK ||
            (st = get_range(&t->sampler.scale_min, &t->sampler.scale_max, c, sec, "scale", 0.01,
                            100)) != MR_OK ||
            (st = get_double(&t->sampler.min_mean, c, sec, "min_mean", 0, 10)) != MR_OK)
            return st;
    }
    if ((sec = mr_cfg_child(r, "training"))) {
        if ((st = check_keys(c, sec, ktrain)) != MR_OK) return st;
        v = t->sampler.patch;
        if ((st = get_long(&v, c, sec, "patch", 8, 512)) != MR_OK) return st;
        t->sampler.patch = (int)v, v = t->batch;
        if ((st = get_long(&v, c, sec, "batch", 1, 4096)) != MR_OK) return st;
        t->batch = (int)v;
        if ((st = get_long(&t->epochs, c, sec, "epochs", 0, MAX_EPOCHS)) != MR_OK ||
            (st = get_long(&t->steps_per_epoch, c, sec, "steps_per_epoch", 1, 10000000)) != MR_OK ||
            (st = get_long(&t->warmup, c, sec, "warmup_steps", 0, 100000000)) != MR_OK ||
            (st = get_double(&t->lr, c, sec, "lr", 1e-8, 1)) != MR_OK ||
            (st = get_double(&t->lr_min, c, sec, "lr_min", 0, 1)) != MR_OK ||
            (st = get_double(&t->weight_decay, c, sec, "weight_decay", 0, 1)) != MR_OK)
            return st;
        if ((n = mr_cfg_child(sec, "loss"))) {
            const char *s;
            if ((st = mr_cfg_as_string(&s, c, n)) != MR_OK) return st;
            if (!strcmp(s, "l1"))
                t->loss_l1 = 1;
            else if (strcmp(s, "mse"))
                return mr_config_error(c, n, MR_ERR_USAGE, "expected mse or l1, found '%s'", s);
        }
    }
    if (t->epochs == 0 && (!t->vh || !t->init[0]))
        return mr_config_error(c, mr_cfg_child(mr_cfg_child(r, "training"), "epochs"),
                               MR_ERR_USAGE, "epochs 0 (calibrate only) needs a variance_head and "
                               "init: the trained variance network to calibrate");
    if (2 * t->depth + 1 > t->sampler.patch)
        return mr_config_error(c, mr_cfg_child(r, "training") ? mr_cfg_child(r, "training") : r,
                               MR_ERR_USAGE,
                               "patch %d is smaller than the receptive field %d of depth %d",
                               t->sampler.patch, 2 * t->depth + 1, t->depth);
    if (t->us && t->sampler.patch > t->u.matrix)
        return mr_config_error(c, mr_cfg_child(r, "degradation"), MR_ERR_USAGE,
                               "matrix %d is smaller than the patch %d", t->u.matrix,
                               t->sampler.patch);
    if ((n = mr_cfg_child(r, "output")) &&
        (st = get_path(t->output, sizeof t->output, c, n, c->dir)) != MR_OK)
        return st;
    if ((sec = mr_cfg_child(r, "export"))) {
        if ((st = check_keys(c, sec, kexp)) != MR_OK) return st;
        if ((n = mr_cfg_child(sec, "model")) &&
            (st = get_path(t->export_model, sizeof t->export_model, c, n, c->dir)) != MR_OK)
            return st;
        if ((n = mr_cfg_child(sec, "log")) &&
            (st = get_path(t->export_log, sizeof t->export_log, c, n, c->dir)) != MR_OK)
            return st;
        if ((n = mr_cfg_child(sec, "curve")) &&
            (st = get_path(t->export_curve, sizeof t->export_curve, c, n, c->dir)) != MR_OK)
            return st;
    }
    return MR_OK;
}

/* ---------------------------------------------------------------- data */

typedef struct {
    char name[256];
    size_t S, H, W;
    float *clean;  /* (S, H, W) selected slices, original units */
    float *noisy;  /* the same with Rician noise at val_sigma x region max */
    float *out;    /* denoised */
    float *aux;    /* undersampling: the zero-filled image of the same k-space, or NULL */
    float *cols;   /* undersampling: (S, M) each slice's phase-encode mask, or NULL */
    float *boot;   /* variance_head.bootstrap: (S, M, M) the bootstrap SD map (original units) */
    double *nsd;   /* undersampling: (S) each slice's k-space noise SD as recon estimates it
                    * (original units), or NULL */
    int coils;     /* undersampling: the simulated coils */
    double maxval; /* the region's maximum */
} val_set;

/* Free a set's buffers (the struct itself is the caller's). */
static void val_set_free(val_set *vs)
{
    free(vs->clean), free(vs->noisy), free(vs->out), free(vs->aux), free(vs->cols), free(vs->nsd);
    free(vs->boot);
}

/* Exclusion ranges in z (mm) from the held-out slabs, widened by the guard. */
static void cut_blocks(mr_train_volume *tv, const mr_nifti_meta *meta, const train_cfg *t)
{
    int S = (int)tv->vol->dims[0];
    tv->nblocks = 1, tv->k0[0] = 0, tv->k1[0] = S;
    for (int pass = 0; pass < 2; pass++) {
        const set_entry *e = pass ? t->cal : t->val;
        int ne = pass ? t->ncal : t->nval;
        for (int i = 0; i < ne; i++) {
            if (!e[i].has_z) continue;
            double ka = mr_train_k_of_z(meta, e[i].z0 - t->guard_mm),
                   kb = mr_train_k_of_z(meta, e[i].z1 + t->guard_mm);
            if (ka > kb) {
                double tmp = ka;
                ka = kb, kb = tmp;
            }
            int ex0 = (int)floor(ka), ex1 = (int)ceil(kb) + 1; /* excluded [ex0, ex1) */
            int nb = 0, k0[MR_TRAIN_MAX_BLOCKS], k1[MR_TRAIN_MAX_BLOCKS];
            for (int b = 0; b < tv->nblocks; b++) {
                int a0 = tv->k0[b], a1 = tv->k1[b];
                if (ex1 <= a0 || ex0 >= a1) {
                    k0[nb] = a0, k1[nb++] = a1;
                    continue;
                }
                if (ex0 > a0 && nb < MR_TRAIN_MAX_BLOCKS) k0[nb] = a0, k1[nb++] = ex0;
                if (ex1 < a1 && nb < MR_TRAIN_MAX_BLOCKS) k0[nb] = ex1, k1[nb++] = a1;
            }
            tv->nblocks = nb;
            memcpy(tv->k0, k0, sizeof k0);
            memcpy(tv->k1, k1, sizeof k1);
        }
    }
}

static mr_status load_training(mr_train_volume *tv, const char *path, const train_cfg *t,
                               FILE *info)
{
    mr_nifti_meta meta;
    mr_status st = mr_nifti_read(&tv->vol, &meta, path);
    if (st != MR_OK) return st;
    snprintf(tv->name, sizeof tv->name, "%s", base_name(path));
    if (tv->vol->ndim != 3 || tv->vol->dims[1] < (size_t)t->sampler.patch ||
        tv->vol->dims[2] < (size_t)t->sampler.patch)
        return mr_error_set(MR_ERR_INPUT, "%s: expected a 3-D volume with slices of at least %d x %d",
                            path, t->sampler.patch, t->sampler.patch);
    int quantised = mr_train_is_integer_valued(tv->vol);
    if (t->blur && quantised && (st = mr_train_blur3(tv->vol)) != MR_OK) return st;
    size_t n = mr_array_numel(tv->vol);
    float *v = mr_array_f32(tv->vol);
    if ((st = mr_train_percentile(&tv->level, v, n, t->percentile)) != MR_OK) return st;
    if (!(tv->level > 0)) return mr_error_set(MR_ERR_INPUT, "%s: percentile level is 0", path);
    for (size_t i = 0; i < n; i++) v[i] = (float)(v[i] / tv->level);
    cut_blocks(tv, &meta, t);
    fprintf(info, "mrpipe train: %s (%zu, %zu, %zu)%s, p%.1f = %g, training z blocks:", tv->name,
            tv->vol->dims[0], tv->vol->dims[1], tv->vol->dims[2], quantised && t->blur ? " blurred" : "",
            t->percentile, tv->level);
    for (int b = 0; b < tv->nblocks; b++) fprintf(info, " [%d, %d)", tv->k0[b], tv->k1[b]);
    fputc('\n', info);
    if (tv->nblocks == 0) return mr_error_set(MR_ERR_INPUT, "%s: no training slices left", path);
    return MR_OK;
}

/* The k-space noise of validation / calibration slice i: three levels spread over the training
 * range (log 1/6, 1/2, 5/6 of [noise_min, noise_max]), cycling with i (3 is coprime with the
 * (method, acceleration) cycles of 2 and 4), so that scales are not fitted at one noise level. */
static double noise_at(const train_cfg *t, size_t i)
{
    static const double f[2][3] = {{1.0 / 6, 0.5, 5.0 / 6}, {0, 0.5, 1}};
    double a = log(t->u.noise_min), b = log(t->u.noise_max);
    return exp(a + f[t->noise_ends != 0][i % 3] * (b - a));
}

/* Undersampling validation: each slice (original units) placed centred on the M x M matrix and
 * degraded as training does, with a fixed cycle of (method, acceleration), then of the masks, and
 * a cycle of three noise levels (noise_at); clean becomes the fully sampled RSS. */
static mr_status degrade_validation(val_set *vs, const train_cfg *t, mr_train_degrader *dg,
                                    uint64_t seed)
{
    size_t M = (size_t)t->u.matrix, ns = vs->S, hw = M * M;
    float *ref = malloc(ns * hw * sizeof *ref), *deg = malloc(ns * hw * sizeof *deg),
          *img = malloc(hw * sizeof *img), *out = malloc(ns * hw * sizeof *out),
          *aux = malloc(ns * hw * sizeof *aux), *cols = malloc(ns * M * sizeof *cols);
    float *boot = t->boot_sets ? malloc(ns * hw * sizeof *boot) : NULL,
          *btmp = t->boot_sets ? malloc(2 * hw * sizeof *btmp) : NULL;
    double *nsd = malloc(ns * sizeof *nsd);
    mr_status st = MR_OK;
    double level = 0;
    if (!ref || !deg || !img || !out || !aux || !cols || !nsd || (t->boot_sets && (!boot || !btmp)))
        st = mr_error_set(MR_ERR_NOMEM, "validation: out of memory");
    if (st == MR_OK)
        st = mr_train_percentile(&level, vs->clean, ns * vs->H * vs->W, t->percentile);
    if (st == MR_OK && !(level > 0))
        st = mr_error_set(MR_ERR_INPUT, "%s: validation slices are empty", vs->name);
    for (size_t i = 0; i < ns && st == MR_OK; i++) {
        float *src = vs->clean + i * vs->H * vs->W;
        for (size_t k = 0; k < vs->H * vs->W; k++) src[k] = (float)(src[k] / level);
        mr_crop_f32(img, M, M, src, vs->H, vs->W);
        int combo = (int)(i % (size_t)(t->u.n_methods * t->u.n_accel));
        /* masks cycle too, after every (method, acceleration) pair */
        mr_mask_type mk = t->u.masks[(i / (size_t)(t->u.n_methods * t->u.n_accel)) %
                                     (size_t)t->u.n_masks];
        mr_train_degradation g = {t->u.accel[combo % t->u.n_accel],
                                  t->u.cf[combo % t->u.n_accel], mk,
                                  combo / t->u.n_accel % t->u.n_methods,
                                  noise_at(t, i), seed + i};
        st = mr_train_degrade(dg, ref + i * hw, deg + i * hw, img, &g);
        if (st == MR_OK) st = mr_train_degrader_aux(dg, aux + i * hw, deg + i * hw);
        if (st == MR_OK) memcpy(cols + i * M, mr_train_degrader_mask(dg), M * sizeof *cols);
        if (st == MR_OK) st = mr_train_degrader_noise_sd(dg, nsd + i);
        if (st == MR_OK && boot && (st = mr_train_degrader_boot(dg, boot + i * hw)) == MR_OK)
            mr_sigma_bootstrap_map(boot + i * hw, boot + i * hw, M, M, btmp); /* in place */
    }
    if (st == MR_OK) {
        vs->maxval = 0;
        for (size_t k = 0; k < ns * hw; k++) {
            ref[k] = (float)(ref[k] * level), deg[k] = (float)(deg[k] * level);
            aux[k] = (float)(aux[k] * level);
            if (boot) boot[k] = (float)(boot[k] * level);
            if (ref[k] > vs->maxval) vs->maxval = ref[k];
        }
        for (size_t i = 0; i < ns; i++) nsd[i] *= level;
        free(vs->clean), free(vs->noisy), free(vs->out), free(vs->nsd), free(vs->boot);
        vs->clean = ref, vs->noisy = deg, vs->out = out, vs->aux = aux, vs->cols = cols;
        vs->boot = boot, boot = NULL;
        vs->nsd = nsd, vs->coils = t->u.coils;
        vs->H = vs->W = M;
        ref = deg = out = aux = cols = NULL;
        nsd = NULL;
    }
    free(ref), free(deg), free(img), free(out), free(aux), free(cols), free(nsd), free(boot);
    free(btmp);
    return st;
}

static mr_status load_validation(val_set *vs, const set_entry *e, const train_cfg *t,
                                 uint64_t seed, mr_train_degrader *dg)
{
    mr_array *a = NULL;
    mr_nifti_meta meta;
    mr_status st = mr_nifti_read(&a, &meta, e->file);
    if (st != MR_OK) return st;
    size_t S = a->ndim == 3 ? a->dims[0] : 1, H = a->dims[a->ndim - 2], W = a->dims[a->ndim - 1];
    long k0 = (long)(S / 5), k1 = (long)(S - S / 5); /* whole volume: the middle 60 % */
    if (e->has_z) {
        k0 = (long)ceil(mr_train_k_of_z(&meta, e->z0));
        k1 = (long)floor(mr_train_k_of_z(&meta, e->z1)) + 1;
        if (k0 > k1) {
            long tmp = k0;
            k0 = k1, k1 = tmp;
        }
        if (k0 < 0) k0 = 0;
        if (k1 > (long)S) k1 = (long)S;
    }
    if (k1 <= k0) {
        mr_array_destroy(a);
        return mr_error_set(MR_ERR_INPUT, "%s: validation slab [%g, %g] mm holds no slice", e->file,
                            e->z0, e->z1);
    }
    const float *v = mr_array_f32(a);
    vs->maxval = 0;
    for (size_t i = (size_t)k0 * H * W; i < (size_t)k1 * H * W; i++)
        if (v[i] > vs->maxval) vs->maxval = v[i];
    size_t ns = (size_t)t->val_slices;
    if (ns > (size_t)(k1 - k0)) ns = (size_t)(k1 - k0);
    vs->S = ns, vs->H = H, vs->W = W;
    snprintf(vs->name, sizeof vs->name, "%.200s", base_name(e->file));
    vs->clean = malloc(ns * H * W * sizeof(float));
    vs->noisy = malloc(ns * H * W * sizeof(float));
    vs->out = malloc(ns * H * W * sizeof(float));
    if (!vs->clean || !vs->noisy || !vs->out) {
        mr_array_destroy(a);
        return mr_error_set(MR_ERR_NOMEM, "validation: out of memory");
    }
    for (size_t i = 0; i < ns; i++) {
        size_t k = (size_t)k0 + (size_t)((2 * i + 1) * (size_t)(k1 - k0) / (2 * ns));
        memcpy(vs->clean + i * H * W, v + k * H * W, H * W * sizeof(float));
    }
    mr_array_destroy(a);
    if (dg) return degrade_validation(vs, t, dg, seed);
    memcpy(vs->noisy, vs->clean, ns * H * W * sizeof(float));
    mr_rng rng;
    mr_rng_seed(&rng, seed);
    mr_train_rician(vs->noisy, ns * H * W, t->val_sigma * vs->maxval, &rng);
    return MR_OK;
}

static double psnr(const float *ref, const float *x, size_t n, double maxval)
{
    double mse = 0;
    for (size_t i = 0; i < n; i++) mse += ((double)ref[i] - x[i]) * ((double)ref[i] - x[i]);
    mse /= (double)n;
    return 10 * log10(maxval * maxval / mse);
}

/* ---------------------------------------------------------------- log and curve */

typedef struct {
    long epoch, step;
    double loss, psnr_noisy, psnr_val, lr, seconds;
} log_row;

static int sigma_log; /* the variance network's log names its columns */

static mr_status write_log(const char *path, const log_row *rows, long n)
{
    mr_text t = {0};
    mr_text_puts(&t, sigma_log ? "epoch,step,train_nll,val_coverage90_raw_pct,val_nll,lr,seconds\n"
                               : "epoch,step,train_loss,val_psnr_noisy_db,val_psnr_db,lr,seconds\n");
    for (long i = 0; i < n; i++)
        mr_text_printf(&t, "%ld,%ld,%.9g,%.4f,%.4f,%.6g,%.1f\n", rows[i].epoch, rows[i].step,
                       rows[i].loss, rows[i].psnr_noisy, rows[i].psnr_val, rows[i].lr,
                       rows[i].seconds);
    mr_status st = t.failed ? mr_error_set(MR_ERR_NOMEM, "log: out of memory")
                            : mr_text_write_file(path, &t);
    mr_text_free(&t);
    return st;
}

/* Rows of an earlier run's log up to `epochs` (a resumed run continues its log). */
static long read_log(const char *path, log_row *rows, long max, long epochs)
{
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    char line[512];
    long n = 0;
    if (!fgets(line, sizeof line, f)) {
        fclose(f);
        return 0;
    }
    while (n < max && fgets(line, sizeof line, f)) {
        log_row r;
        if (sscanf(line, "%ld,%ld,%lf,%lf,%lf,%lf,%lf", &r.epoch, &r.step, &r.loss, &r.psnr_noisy,
                   &r.psnr_val, &r.lr, &r.seconds) == 7 &&
            r.epoch <= epochs)
            rows[n++] = r;
    }
    fclose(f);
    return n;
}

static void plot_line(unsigned char *rgb, int W, int H, int x0, int y0, int x1, int y1,
                      const unsigned char col[3])
{
    int dx = abs(x1 - x0), dy = -abs(y1 - y0), sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1;
    int err = dx + dy;
    for (;;) {
        for (int oy = 0; oy < 2; oy++) /* 2-pixel-thick lines */
            if (x0 >= 0 && x0 < W && y0 + oy >= 0 && y0 + oy < H)
                memcpy(rgb + ((size_t)(y0 + oy) * W + x0) * 3, col, 3);
        if (x0 == x1 && y0 == y1) break;
        int e2 = 2 * err;
        if (e2 >= dy) err += dy, x0 += sx;
        if (e2 <= dx) err += dx, y0 += sy;
    }
}

/* The curve: log10(train loss) in blue (left half of the vertical range scaled to its own
 * min..max) and validation PSNR in red (own min..max), against the epoch; grey frame and a grey
 * grid line per 10 % of the range. No text: the CSV holds the numbers. */
static mr_status write_curve(const char *path, const log_row *rows, long n)
{
    const int W = 640, H = 360, L = 40, R = 600, T = 20, B = 330;
    unsigned char *rgb = malloc((size_t)W * H * 3);
    if (!rgb) return mr_error_set(MR_ERR_NOMEM, "curve: out of memory");
    memset(rgb, 255, (size_t)W * H * 3);
    const unsigned char grey[3] = {200, 200, 200}, black[3] = {60, 60, 60},
                        blue[3] = {30, 80, 200}, red[3] = {200, 40, 40};
    for (int i = 0; i <= 10; i++) {
        int y = T + (B - T) * i / 10;
        plot_line(rgb, W, H, L, y, R, y, grey);
    }
    plot_line(rgb, W, H, L, T, L, B, black);
    plot_line(rgb, W, H, R, T, R, B, black);
    plot_line(rgb, W, H, L, B, R, B, black);
    if (n >= 1) {
        double lmin = INFINITY, lmax = -INFINITY, pmin = INFINITY, pmax = -INFINITY;
        for (long i = 0; i < n; i++) {
            double l = log10(rows[i].loss > 0 ? rows[i].loss : 1e-30);
            if (l < lmin) lmin = l;
            if (l > lmax) lmax = l;
            if (rows[i].psnr_val < pmin) pmin = rows[i].psnr_val;
            if (rows[i].psnr_val > pmax) pmax = rows[i].psnr_val;
        }
        if (lmax - lmin < 1e-9) lmax = lmin + 1;
        if (pmax - pmin < 1e-9) pmax = pmin + 1;
        for (long i = 0; i + 1 < n || (n == 1 && i == 0); i++) {
            long j = n == 1 ? 0 : i + 1;
            int xa = L + (int)((R - L) * (n == 1 ? 0.5 : (double)i / (n - 1)));
            int xb = L + (int)((R - L) * (n == 1 ? 0.5 : (double)j / (n - 1)));
            double la = log10(rows[i].loss), lb = log10(rows[j].loss);
            plot_line(rgb, W, H, xa, B - (int)((B - T) * (la - lmin) / (lmax - lmin)), xb,
                      B - (int)((B - T) * (lb - lmin) / (lmax - lmin)), blue);
            plot_line(rgb, W, H, xa, B - (int)((B - T) * (rows[i].psnr_val - pmin) / (pmax - pmin)),
                      xb, B - (int)((B - T) * (rows[j].psnr_val - pmin) / (pmax - pmin)), red);
            if (n == 1) break;
        }
    }
    mr_status st = mr_png_write_rgb(path, rgb, (size_t)H, (size_t)W);
    free(rgb);
    return st;
}

static mr_status copy_file(const char *dst, const char *src)
{
    FILE *in = fopen(src, "rb");
    if (!in) return mr_error_set(MR_ERR_IO, "%s: cannot open: %s", src, strerror(errno));
    mr_atomic_file af;
    mr_status st = mr_atomic_begin(&af, dst);
    if (st != MR_OK) {
        fclose(in);
        return st;
    }
    FILE *out = fopen(af.tmp_path, "wb");
    if (!out) {
        fclose(in);
        return mr_error_set(MR_ERR_IO, "%s: cannot write: %s", dst, strerror(errno));
    }
    char buf[65536];
    size_t k;
    int bad = 0;
    while ((k = fread(buf, 1, sizeof buf, in)) > 0)
        if (fwrite(buf, 1, k, out) != k) bad = 1;
    fclose(in);
    if (fclose(out) || bad) {
        mr_atomic_abort(&af);
        return mr_error_set(MR_ERR_IO, "%s: write failed", dst);
    }
    return mr_atomic_commit(&af);
}

/* ---------------------------------------------------------------- the run */

static void fmt_time(char *buf, size_t n, double s)
{
    if (s < 0 || !isfinite(s)) s = 0;
    long t = (long)(s + 0.5);
    snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Validation: each set denoised as `mrpipe denoise` would (percentile of the noisy stack);
 * returns the mean PSNR over sets, *noisy_psnr the same for the noisy inputs. */
static mr_status validate(double *mean_psnr, double *noisy_psnr, val_set *vs, int nv,
                          const mr_nn_model *m)
{
    double sp = 0, sn = 0;
    for (int i = 0; i < nv; i++) {
        size_t n = vs[i].S * vs[i].H * vs[i].W;
        mr_status st = mr_train_denoise_volume(vs[i].out, vs[i].noisy, vs[i].S, vs[i].H, vs[i].W,
                                               m, vs[i].name);
        if (st != MR_OK) return st;
        sp += psnr(vs[i].clean, vs[i].out, n, vs[i].maxval);
        sn += psnr(vs[i].clean, vs[i].noisy, n, vs[i].maxval);
    }
    *mean_psnr = sp / nv;
    *noisy_psnr = sn / nv;
    return MR_OK;
}

/* The unsampled part of each (M, M) slice of y with its own phase-encode mask cols (S, M): the
 * third input of variance networks with unsampled_part (the judged image's, so after the base). */
static mr_status unsampled_of(float *g, const float *y, const float *cols, size_t S, size_t M)
{
    mr_status st = MR_OK;
    for (size_t s = 0; s < S && st == MR_OK; s++)
        st = mr_unsampled_part_cols(g + s * M * M, y + s * M * M, 1, M, M, cols + s * M, M);
    return st;
}

/* Variance-network validation: the base model's output y on each set (as denoise does), the raw
 * (scale 1) SD, and over the foreground (clean > 5 % of max): *cov90 = the fraction of |y - clean|
 * within 1.645 SD and *nll = the mean of log(SD) + 0.5 (e / SD)^2 (image units). */
static mr_status validate_sigma(double *nll, double *cov90, val_set *vs, int nv,
                                const mr_nn_model *base, const mr_nn_model *sig, int aux_mode)
{
    double sn = 0, sc = 0;
    for (int i = 0; i < nv; i++) {
        size_t hw = vs[i].H * vs[i].W, n = vs[i].S * hw;
        float *sd = malloc(n * sizeof *sd);
        if (!sd) return mr_error_set(MR_ERR_NOMEM, "validation: out of memory");
        mr_status st = base ? mr_train_denoise_volume(vs[i].out, vs[i].noisy, vs[i].S, vs[i].H,
                                                      vs[i].W, base, vs[i].name)
                            : (memcpy(vs[i].out, vs[i].noisy, n * sizeof *sd), MR_OK);
        if (st == MR_OK && aux_mode == 2 && base && vs[i].cols)
            st = unsampled_of(vs[i].aux, vs[i].out, vs[i].cols, vs[i].S, vs[i].W);
        if (st == MR_OK)
            /* validation runs before any refit: no bootstrap map */
            st = mr_sigma_volume(sd, vs[i].noisy, aux_mode == 1 && vs[i].aux ? vs[i].aux : vs[i].out,
                                 aux_mode == 2 ? vs[i].aux : NULL, NULL, vs[i].S, vs[i].H, vs[i].W,
                                 sig, 1.0, vs[i].name);
        if (st != MR_OK) {
            free(sd);
            return st;
        }
        double acc = 0;
        size_t cnt = 0, in = 0;
        for (size_t k = 0; k < n; k++)
            if (vs[i].clean[k] > 0.05 * vs[i].maxval && sd[k] > 0) {
                double e = (double)vs[i].out[k] - vs[i].clean[k], z = e / sd[k];
                acc += log(sd[k]) + 0.5 * z * z;
                in += fabs(z) <= 1.6448536269514722;
                cnt++;
            }
        free(sd);
        sn += cnt ? acc / (double)cnt : 0;
        sc += cnt ? 100.0 * (double)in / (double)cnt : 0;
    }
    *nll = sn / nv;
    *cov90 = sc / nv;
    return MR_OK;
}

/* The method index of slice k of an undersampling validation / calibration set (the cycle of
 * degrade_validation). */
static int method_of_slice(const train_cfg *t, size_t k)
{
    return (int)(k % (size_t)(t->u.n_methods * t->u.n_accel)) / t->u.n_accel;
}

/* Calibration set i at level l (Rician; undersampling: l = 0) as calibrate_sigma and
 * fit_features see it: loaded and degraded, the base model's output in vs->out, and the variance
 * network's raw SD (scale 1) in a new *sd (n floats; freed by the caller, with vs's buffers).
 * wide: undersampling noise levels at the ends and the middle of the range (noise_at). */
static mr_status cal_set_sd(val_set *vs, float **sd, const train_cfg *t, int i, int l, int wide,
                            const mr_nn_model *base, const mr_nn_model *sig, mr_train_degrader *dg)
{
    train_cfg tc = *t;
    tc.val_slices = t->cal_slices;
    /* wide: the noise term's fit spans the whole training noise range, ends included, so that
     * its weights are fitted where the noise matters (the scales keep the usual levels) */
    tc.noise_ends = wide;
    tc.boot_sets = t->vh_boot;
    if (!t->us) tc.val_sigma = t->cal_sigma[l];
    memset(vs, 0, sizeof *vs);
    *sd = NULL;
    mr_status st = load_validation(vs, &t->cal[i], &tc, (uint64_t)t->seed * 104729u + 31u * i + l, dg);
    if (st != MR_OK) return st;
    size_t n = vs->S * vs->H * vs->W;
    if (!(*sd = malloc(n * sizeof **sd))) return mr_error_set(MR_ERR_NOMEM, "calibration: out of memory");
    st = base ? mr_train_denoise_volume(vs->out, vs->noisy, vs->S, vs->H, vs->W, base, vs->name)
              : (memcpy(vs->out, vs->noisy, n * sizeof *vs->out), MR_OK);
    if (st == MR_OK && t->vh_unsampled && base && vs->cols)
        st = unsampled_of(vs->aux, vs->out, vs->cols, vs->S, vs->W);
    if (st == MR_OK)
        st = mr_sigma_volume(*sd, vs->noisy, t->vh_zf && vs->aux ? vs->aux : vs->out,
                             t->vh_unsampled ? vs->aux : NULL, vs->boot, vs->S, vs->H, vs->W, sig,
                             1.0, vs->name);
    /* no-op until fit_noise_term has set the term; each slice with its own method's */
    size_t hw = vs->H * vs->W;
    for (size_t k = 0; st == MR_OK && k < vs->S && vs->nsd; k++)
        mr_sigma_add_noise_term(*sd + k * hw, vs->out + k * hw, 1, hw, sig, 1.0, vs->nsd + k,
                                vs->coils, t->u.methods[method_of_slice(t, k)]);
    return st;
}

/* The next row of `width` doubles of a growing table (*cap rows allocated, *n used), or NULL when
 * out of memory (the table is kept). */
static double *next_row(double **rows, size_t *cap, size_t *n, size_t width)
{
    if (*n == *cap) {
        size_t nc = *cap ? 2 * *cap : 1 << 16;
        double *nr = realloc(*rows, nc * width * sizeof *nr);
        if (!nr) return NULL;
        *rows = nr, *cap = nc;
    }
    return *rows + width * (*n)++;
}

/* noise_term: on every calibration set, rows (e, SD at scale 1, the slice's k-space noise SD, the
 * RSS noise floor at the judged image y), (b, f) fitted by Gaussian NLL (mr_sigma_fit_noise_term)
 * and stored in sig's meta; the conformal scales are fitted after, on the SD with the term. */
static mr_status fit_noise_term(char *text, size_t tsize, const train_cfg *t,
                                const mr_nn_model *base, mr_nn_model *sig, mr_train_degrader *dg)
{
    size_t cap = 0, n = 0;
    double *rows = NULL;
    unsigned char *mrow = NULL; /* each row's method index */
    size_t mcap = 0;
    mr_status st = MR_OK;
    sig->meta.n_noise_term = 0, sig->meta.n_noise_term_methods = 0;
    for (int i = 0; i < t->ncal && st == MR_OK; i++) {
        val_set vs;
        float *sd = NULL;
        st = cal_set_sd(&vs, &sd, t, i, 0, 1, base, sig, dg);
        size_t hw = vs.H * vs.W;
        double mx = 0;
        for (size_t k = 0; st == MR_OK && k < vs.S * hw; k++)
            if (vs.clean[k] > mx) mx = vs.clean[k];
        if (st == MR_OK && !vs.nsd)
            st = mr_error_set(MR_ERR_INPUT, "%s: noise_term: no k-space noise estimate", vs.name);
        for (size_t q = 0; st == MR_OK && q < vs.S * hw; q++) {
            if (!(vs.clean[q] > 0.05 * mx) || !(sd[q] > 0)) continue;
            double *r = next_row(&rows, &cap, &n, 4);
            if (!r) {
                st = mr_error_set(MR_ERR_NOMEM, "calibration: out of memory");
                break;
            }
            double ns = vs.nsd[q / hw];
            r[0] = (double)vs.out[q] - vs.clean[q], r[1] = sd[q], r[2] = ns;
            r[3] = mr_sigma_noise_floor(vs.out[q], ns, vs.coils);
            if (n > mcap) {
                unsigned char *nm = realloc(mrow, cap);
                if (!nm) {
                    st = mr_error_set(MR_ERR_NOMEM, "calibration: out of memory");
                    break;
                }
                mrow = nm, mcap = cap;
            }
            mrow[n - 1] = (unsigned char)method_of_slice(t, q / hw);
        }
        free(sd);
        val_set_free(&vs);
    }
    double bf[2], nll = 0, nll0 = 0;
    if (st == MR_OK && (st = mr_sigma_fit_noise_term(bf, &nll, &nll0, rows, n)) == MR_OK) {
        sig->meta.noise_term[0] = bf[0], sig->meta.noise_term[1] = bf[1];
        sig->meta.n_noise_term = 2;
        size_t o = (size_t)snprintf(text, tsize, "noise term fitted on %zu pixels: SD^2 = SD_net^2 + "
                                    "%.4g^2 s^2 + %.4g^2 (sqrt(y^2 + 2 C s^2) - y)^2 (s the k-space "
                                    "noise SD, C coils); NLL %.4f (network alone %.4f)", n, bf[0],
                                    bf[1], nll, nll0);
        /* per input method too (the artefact model's zf inputs carry the RSS floor into its output,
         * its cs-l1 inputs do not): each method's rows fitted alone */
        double *sub = t->u.n_methods > 1 ? malloc(n * 4 * sizeof *sub) : NULL;
        if (t->u.n_methods > 1 && !sub) st = mr_error_set(MR_ERR_NOMEM, "calibration: out of memory");
        for (int mi = 0; st == MR_OK && t->u.n_methods > 1 && mi < t->u.n_methods; mi++) {
            size_t k = 0;
            for (size_t j = 0; j < n; j++)
                if (mrow[j] == mi) memcpy(sub + 4 * k++, rows + 4 * j, 4 * sizeof *sub);
            double bm[2], nm = 0, nm0 = 0;
            if ((st = mr_sigma_fit_noise_term(bm, &nm, &nm0, sub, k)) != MR_OK) break;
            sig->meta.noise_term_methods[mi][0] = bm[0], sig->meta.noise_term_methods[mi][1] = bm[1];
            snprintf(sig->meta.calibration_methods[mi], sizeof sig->meta.calibration_methods[0],
                     "%s", t->u.methods[mi]);
            o += (size_t)snprintf(text + o, o < tsize ? tsize - o : 0, "%s %s: b %.4g, f %.4g (NLL "
                                  "%.4f, network alone %.4f)", mi ? ";" : "; per input method:",
                                  t->u.methods[mi], bm[0], bm[1], nm, nm0);
        }
        free(sub);
        if (st == MR_OK && t->u.n_methods > 1) sig->meta.n_noise_term_methods = t->u.n_methods;
    }
    free(rows), free(mrow);
    return st;
}

/* feature_fit: on every calibration set (as calibrate_sigma loads them), the network's raw SD and
 * the image features of (x, y) over the foreground; the 4 weights of log SD fitted by Gaussian NLL
 * (mr_sigma_fit_features) and stored in sig's meta. The conformal scales are fitted after, on the
 * refitted SD (the same pixels: 4 weights over ~10^5 pixels). */
static mr_status fit_features(char *text, size_t tsize, const train_cfg *t, const mr_nn_model *base,
                              mr_nn_model *sig, mr_train_degrader *dg)
{
    size_t cap = 0, n = 0;
    double *rows = NULL;
    mr_status st = MR_OK;
    sig->meta.n_feature_weights = 0, sig->meta.feature_bootstrap = 0;
    int nlev = t->us ? 1 : t->n_cal_sigma;
    for (int l = 0; l < nlev && st == MR_OK; l++)
        for (int i = 0; i < t->ncal && st == MR_OK; i++) {
            val_set vs;
            float *sd = NULL, *fb = NULL;
            st = cal_set_sd(&vs, &sd, t, i, l, 0, base, sig, dg);
            size_t hw = vs.H * vs.W, nv = vs.S * hw;
            if (st == MR_OK && !(fb = malloc(4 * hw * sizeof *fb)))
                st = mr_error_set(MR_ERR_NOMEM, "calibration: out of memory");
            double level = 0, mx = 0;
            if (st == MR_OK) st = mr_train_percentile(&level, vs.noisy, nv, sig->meta.norm_params[0]);
            for (size_t k = 0; st == MR_OK && k < nv; k++)
                if (vs.clean[k] > mx) mx = vs.clean[k];
            if (st == MR_OK && !(level > 0)) st = mr_error_set(MR_ERR_INPUT, "%s: empty", vs.name);
            double eps = 1e-3 * level, L = log(level);
            for (size_t s = 0; st == MR_OK && s < vs.S; s++) {
                mr_sigma_features(fb, fb + hw, vs.noisy + s * hw, vs.out + s * hw, vs.H, vs.W,
                                  fb + 2 * hw);
                if (t->vh_boot) memcpy(fb, vs.boot + s * hw, hw * sizeof *fb);
                for (size_t p = 0; p < hw; p++) {
                    size_t q = s * hw + p;
                    if (!(vs.clean[q] > 0.05 * mx) || !(sd[q] > 0)) continue;
                    double *r = next_row(&rows, &cap, &n, 5);
                    if (!r) {
                        st = mr_error_set(MR_ERR_NOMEM, "calibration: out of memory");
                        break;
                    }
                    r[0] = (double)vs.out[q] - vs.clean[q];
                    r[1] = log(sd[q] + eps) - L, r[2] = log(fb[p] + eps) - L;
                    /* with the bootstrap map, no edge feature (w3 stays 0): measured, it took
                     * a negative weight and made the ranking worse (docs/uncertainty.md) */
                    r[3] = t->vh_boot ? 0 : log(fb[hw + p] + eps) - L, r[4] = L;
                }
            }
            free(sd), free(fb);
            val_set_free(&vs);
        }
    double w[4], nll = 0;
    if (st == MR_OK && (st = mr_sigma_fit_features(w, &nll, rows, n)) == MR_OK) {
        double nll0 = 0;
        for (size_t i = 0; i < n; i++) { /* the network alone, for the record */
            const double *q = rows + 5 * i;
            double ls = q[4] + q[1];
            nll0 += ls + 0.5 * q[0] * q[0] * exp(-2 * ls);
        }
        nll0 /= (double)n;
        memcpy(sig->meta.feature_weights, w, sizeof w);
        sig->meta.n_feature_weights = 4;
        sig->meta.feature_bootstrap = t->vh_boot;
        snprintf(text, tsize, "features refitted on %zu pixels: log SD = %.4g + %.4g log(net) + "
                 "%.4g log(%s) + %.4g log(G|grad y|) + %.4g log(level); NLL %.4f (network "
                 "alone %.4f)", n, w[0], w[1], w[2], t->vh_boot ? "bootstrap" : "G|y-x|", w[3],
                 1 - w[1] - w[2] - w[3], nll, nll0);
    }
    free(rows);
    return st;
}

/* Split-conformal calibration of a variance network on the config's calibration sets: each set
 * degraded at every calibration level (Rician) or with the cycled (method, acceleration)
 * degradations (undersampling); writes the scale and the text recorded in the model file. */
static mr_status calibrate_sigma(double *scale, char *text, size_t tsize, const train_cfg *t,
                                 const mr_nn_model *base, mr_nn_model *sig, mr_train_degrader *dg)
{
    size_t cap = 0, nr = 0, lev_start[9] = {0}, acap[MR_TRAIN_US_MAX] = {0},
           an[MR_TRAIN_US_MAX] = {0};
    double *ar[MR_TRAIN_US_MAX] = {0}; /* undersampling: residuals per acceleration */
    /* ... and per (method, acceleration) */
    double *amr[MR_TRAIN_US_MAX][MR_TRAIN_US_MAX] = {{0}};
    size_t amcap[MR_TRAIN_US_MAX][MR_TRAIN_US_MAX] = {{0}}, amn[MR_TRAIN_US_MAX][MR_TRAIN_US_MAX] = {{0}};
    double lev_noise[8] = {0};
    int lev_count[8] = {0};
    double *r = NULL;
    mr_status st = MR_OK;
    int nlev = t->us ? 1 : t->n_cal_sigma;
    /* level-major, so that each level's residuals are one contiguous run of r */
    for (int l = 0; l < nlev && st == MR_OK; l++) {
        lev_start[l] = nr;
        for (int i = 0; i < t->ncal && st == MR_OK; i++) {
            val_set vs;
            float *sd = NULL;
            st = cal_set_sd(&vs, &sd, t, i, l, 0, base, sig, dg);
            size_t n = vs.S * vs.H * vs.W;
            if (st == MR_OK && nr + n > cap) {
                size_t nc = (nr + n) * 2;
                double *nrr = realloc(r, nc * sizeof *r);
                if (!nrr) st = mr_error_set(MR_ERR_NOMEM, "calibration: out of memory");
                else r = nrr, cap = nc;
            }
            if (st == MR_OK) mr_sigma_collect(r, &nr, vs.clean, vs.out, sd, vs.S, vs.H * vs.W, 0.05);
            /* slice k of an undersampling set was degraded at acceleration index
             * (k mod (methods x accelerations)) mod accelerations (degrade_validation) */
            for (size_t k = 0; st == MR_OK && t->us && t->u.n_accel > 1 && k < vs.S; k++) {
                size_t hw = vs.H * vs.W;
                int ai = (int)(k % (size_t)(t->u.n_methods * t->u.n_accel)) % t->u.n_accel,
                    mi = (int)(k % (size_t)(t->u.n_methods * t->u.n_accel)) / t->u.n_accel;
                if (t->u.n_methods > 1) {
                    if (amn[mi][ai] + hw > amcap[mi][ai]) {
                        size_t nc = (amn[mi][ai] + hw) * 2;
                        double *q = realloc(amr[mi][ai], nc * sizeof *q);
                        if (!q) {
                            st = mr_error_set(MR_ERR_NOMEM, "calibration: out of memory");
                            break;
                        }
                        amr[mi][ai] = q, amcap[mi][ai] = nc;
                    }
                    mr_sigma_collect(amr[mi][ai], &amn[mi][ai], vs.clean + k * hw, vs.out + k * hw,
                                     sd + k * hw, 1, hw, 0.05);
                }
                if (an[ai] + hw > acap[ai]) {
                    size_t nc = (an[ai] + hw) * 2;
                    double *q = realloc(ar[ai], nc * sizeof *q);
                    if (!q) {
                        st = mr_error_set(MR_ERR_NOMEM, "calibration: out of memory");
                        break;
                    }
                    ar[ai] = q, acap[ai] = nc;
                }
                mr_sigma_collect(ar[ai], &an[ai], vs.clean + k * hw, vs.out + k * hw, sd + k * hw, 1,
                                 hw, 0.05);
            }
            double nz = 0;
            if (st == MR_OK && (st = mr_sigma_input_noise(&nz, vs.noisy, vs.S, vs.H, vs.W, sig)) == MR_OK)
                lev_noise[l] += nz, lev_count[l]++;
            free(sd);
            val_set_free(&vs);
        }
    }
    lev_start[nlev] = nr;
    if (st == MR_OK && t->us && t->u.n_accel > 1) {
        /* one scale per acceleration (errors grow with R faster than the network's SD does):
         * recon knows its R, the pipeline knows its images', denoise takes --accel */
        int order[MR_TRAIN_US_MAX], na = 0, sel[MR_TRAIN_US_MAX];
        for (int i = 0; i < t->u.n_accel; i++) order[i] = i;
        for (int i = 0; i < t->u.n_accel; i++) /* ascending R */
            for (int j = i + 1; j < t->u.n_accel; j++)
                if (t->u.accel[order[j]] < t->u.accel[order[i]]) {
                    int tmp = order[i];
                    order[i] = order[j], order[j] = tmp;
                }
        for (int i = 0; i < t->u.n_accel; i++) {
            int ai = order[i];
            double cl[3];
            if (an[ai] < 100 || (na && t->u.accel[ai] <= sig->meta.calibration_accel[na - 1]))
                continue;
            sel[na] = ai;
            sig->meta.calibration_accel[na] = t->u.accel[ai];
            sig->meta.calibration_accel_scales[na++] = mr_sigma_conformal_scale(ar[ai], an[ai], cl);
        }
        sig->meta.n_calibration_accel = na > 1 ? na : 0;
        /* per input method too (the artefact model judged on zf and on cs-l1 images): where a
         * (method, R) cell has too few pixels, the pooled scale at R */
        sig->meta.n_calibration_methods = 0;
        if (na > 1 && t->u.n_methods > 1) {
            for (int mi = 0; mi < t->u.n_methods; mi++) {
                snprintf(sig->meta.calibration_methods[mi], sizeof sig->meta.calibration_methods[0],
                         "%s", t->u.methods[mi]);
                for (int j = 0; j < na; j++) {
                    double cl[3];
                    int ai = sel[j];
                    sig->meta.calibration_method_scales[mi][j] =
                        amn[mi][ai] >= 100 ? mr_sigma_conformal_scale(amr[mi][ai], amn[mi][ai], cl)
                                           : sig->meta.calibration_accel_scales[j];
                }
            }
            sig->meta.n_calibration_methods = t->u.n_methods;
        }
    }
    for (int i = 0; i < MR_TRAIN_US_MAX; i++)
        for (int j = 0; j < MR_TRAIN_US_MAX; j++) free(amr[i][j]);
    for (int i = 0; i < MR_TRAIN_US_MAX; i++) free(ar[i]);
    if (st == MR_OK && nr < 100)
        st = mr_error_set(MR_ERR_INPUT, "calibration: %zu foreground pixels: expected a calibration "
                          "set with tissue (data.calibration)", nr);
    if (st == MR_OK && nlev > 1) {
        /* one scale per calibration noise level (the variance network is not equally right at
         * every level): at inference the scale is interpolated at the input's own noise level */
        sig->meta.n_calibration_levels = nlev;
        for (int l = 0; l < nlev; l++) {
            /* sorting a level's run in place is harmless: the pooled scale below sorts all */
            double cl[3];
            sig->meta.calibration_noise[l] = lev_noise[l] / (lev_count[l] ? lev_count[l] : 1);
            sig->meta.calibration_scales[l] =
                mr_sigma_conformal_scale(r + lev_start[l], lev_start[l + 1] - lev_start[l], cl);
        }
        /* ascending noise (the levels are configured ascending; keep them so, or drop) */
        for (int l = 1; l < nlev; l++)
            if (!(sig->meta.calibration_noise[l] > sig->meta.calibration_noise[l - 1]))
                sig->meta.n_calibration_levels = 0;
    }
    if (st == MR_OK) {
        double cov[3];
        *scale = mr_sigma_conformal_scale(r, nr, cov);
        size_t o = (size_t)snprintf(text, tsize, "split-conformal on %zu foreground pixels of", nr);
        for (int i = 0; i < t->ncal && o < tsize; i++)
            o += (size_t)snprintf(text + o, tsize - o, " %s z=[%g,%g]mm", base_name(t->cal[i].file),
                                  t->cal[i].z0, t->cal[i].z1);
        if (!t->us)
            for (int l = 0; l < t->n_cal_sigma && o < tsize; l++)
                o += (size_t)snprintf(text + o, tsize - o, "%s%g", l ? "/" : ", rician ",
                                      t->cal_sigma[l]);
        if (o < tsize)
            o += (size_t)snprintf(text + o, tsize - o, "; scale %.5g; calibration coverage 68/90/95 "
                                  "= %.1f/%.1f/%.1f %%", *scale, 100 * cov[0], 100 * cov[1],
                                  100 * cov[2]);
        for (int l = 0; l < sig->meta.n_calibration_accel && o < tsize; l++)
            o += (size_t)snprintf(text + o, tsize - o, "%s%.4g at R %g",
                                  l ? ", " : "; per acceleration: scale ",
                                  sig->meta.calibration_accel_scales[l],
                                  sig->meta.calibration_accel[l]);
        for (int mi = 0; mi < sig->meta.n_calibration_methods && o < tsize; mi++)
            for (int l = 0; l < sig->meta.n_calibration_accel && o < tsize; l++)
                o += (size_t)snprintf(text + o, tsize - o, "%s%s%s%.4g at R %g",
                                      l ? ", " : mi ? "; " : "; per input method: ",
                                      l ? "" : sig->meta.calibration_methods[mi], l ? "" : " ",
                                      sig->meta.calibration_method_scales[mi][l],
                                      sig->meta.calibration_accel[l]);
        for (int l = 0; l < sig->meta.n_calibration_levels && o < tsize; l++)
            o += (size_t)snprintf(text + o, tsize - o, "%s%.4g at input noise %.4g",
                                  l ? ", " : "; per level: scale ", sig->meta.calibration_scales[l],
                                  sig->meta.calibration_noise[l]);
    }
    free(r);
    return st;
}

static void describe(mr_nn_model *m, const train_cfg *t, long epochs, const char *val)
{
    mr_nn_meta *me = &m->meta;
    snprintf(me->input_type, sizeof me->input_type, "magnitude");
    snprintf(me->norm_method, sizeof me->norm_method, "percentile");
    me->norm_params[0] = t->percentile;
    me->n_norm_params = 1;
    if (t->us) {
        const mr_train_us *u = &t->u;
        size_t o = (size_t)snprintf(me->noise_model, sizeof me->noise_model,
                                    "undersampling artefacts: %d-coil k-space simulated on %dx%d "
                                    "(noise %g-%g x p%g), masks", u->coils, u->matrix, u->matrix,
                                    u->noise_min, u->noise_max, t->percentile);
        for (int i = 0; i < u->n_masks && o < sizeof me->noise_model; i++)
            o += (size_t)snprintf(me->noise_model + o, sizeof me->noise_model - o, " %s",
                                  mr_mask_type_name(u->masks[i]));
        for (int i = 0; i < u->n_accel && o < sizeof me->noise_model; i++)
            o += (size_t)snprintf(me->noise_model + o, sizeof me->noise_model - o, "%s%gx/cf%g",
                                  i ? " " : ", R ", u->accel[i], u->cf[i]);
        for (int i = 0; i < u->n_methods && o < sizeof me->noise_model; i++)
            o += (size_t)snprintf(me->noise_model + o, sizeof me->noise_model - o, "%s%s",
                                  i ? " " : ", methods ", u->methods[i]);
        if (o < sizeof me->noise_model)
            snprintf(me->noise_model + o, sizeof me->noise_model - o,
                     "; target RSS of the fully sampled coil images%s%.64s", t->init[0] ? "; from " : "",
                     t->init[0] ? base_name(t->init) : "");
    } else
    snprintf(me->noise_model, sizeof me->noise_model,
             "rician: complex gaussian sigma log-uniform in [%g, %g] x p%g of the volume, then "
             "magnitude; gamma [%g, %g], scale [%g, %g], dihedral, 3 orientations",
             t->sampler.sigma_min, t->sampler.sigma_max, t->percentile, t->sampler.gamma_min,
             t->sampler.gamma_max, t->sampler.scale_min, t->sampler.scale_max);
    size_t off = 0;
    if (t->init[0]) /* fine-tuned, or (epochs 0) only calibrated: say whose weights */
        off += (size_t)snprintf(me->training_data, sizeof me->training_data, "the weights of %s%s",
                                base_name(t->init), epochs ? ", then " : " (calibrated only); ");
    off += (size_t)snprintf(me->training_data + off, sizeof me->training_data - off,
                            "patches %dx%d batch %d steps %ld (seed %ld):", t->sampler.patch,
                            t->sampler.patch, t->batch, epochs * t->steps_per_epoch, t->seed);
    for (int i = 0; i < t->ntrain && off < sizeof me->training_data; i++)
        off += (size_t)snprintf(me->training_data + off, sizeof me->training_data - off, " %s",
                                base_name(t->train[i]));
    for (int i = 0; i < t->nsynth && off < sizeof me->training_data; i++)
        off += (size_t)snprintf(me->training_data + off, sizeof me->training_data - off,
                                " synthetic(%s)", base_name(t->synth_atlas[i % t->nsynth_atlas]));
    off = 0;
    for (int pass = 0; pass < 2; pass++) {
        const set_entry *e = pass ? t->cal : t->val;
        int ne = pass ? t->ncal : t->nval;
        for (int i = 0; i < ne && off < sizeof me->split; i++) {
            if (e[i].has_z)
                off += (size_t)snprintf(me->split + off, sizeof me->split - off,
                                        "%s%s %s z=[%g,%g]mm", off ? "; " : "",
                                        pass ? "calibration" : "validation", base_name(e[i].file),
                                        e[i].z0, e[i].z1);
            else
                off += (size_t)snprintf(me->split + off, sizeof me->split - off, "%s%s %s",
                                        off ? "; " : "", pass ? "calibration" : "validation",
                                        base_name(e[i].file));
        }
    }
    if (off < sizeof me->split)
        snprintf(me->split + off, sizeof me->split - off,
                 "; training: the rest minus guard %g mm", t->guard_mm);
    me->epochs = (int)epochs;
    snprintf(me->validation, sizeof me->validation, "%s", val);
}

typedef struct {
    const char *config, *output;
    int resume;
    long stop_after;
    long seed; /* >= 0: replaces the config's */
} train_opts;

static int run(const train_opts *o)
{
    mr_config *c = NULL;
    train_cfg t;
    mr_train_volume tv[MAX_SETS];
    val_set vs[MAX_SETS];
    mr_nn_model *m = NULL;
    mr_nn_trainer *tr = NULL;
    mr_train_degrader *dg = NULL;
    mr_train_bank bank = {0};
    mr_nn_model *base = NULL;    /* variance_head: the model whose errors are learned */
    mr_nn_plan *base_plan = NULL;
    float *big_clean = NULL, *big_noisy = NULL, *big_aux = NULL, *vin = NULL, *vtgt = NULL,
          *ybuf = NULL;
    float *clean = NULL, *noisy = NULL;
    log_row *rows = NULL;
    long nrows = 0;
    int rc = 1, tty = isatty(2);
    char outdir[4096], ckpt[4200], model_path[4200], log_path[4200], curve_path[4200];
    memset(tv, 0, sizeof tv);
    memset(vs, 0, sizeof vs);
    mr_status st = mr_config_load(&c, o->config);
    if (st == MR_OK) st = parse_config(&t, c);
    if (st != MR_OK) goto fail;
    if (o->seed >= 0) t.seed = o->seed;
    snprintf(outdir, sizeof outdir, "%s", o->output ? o->output : t.output);
    if (!outdir[0]) {
        st = mr_error_set(MR_ERR_USAGE, "%s: no output directory (--output or `output:`)",
                          o->config);
        goto fail;
    }
    if (mkdir(outdir, 0777) && errno != EEXIST) {
        st = mr_error_set(MR_ERR_IO, "%s: cannot create: %s", outdir, strerror(errno));
        goto fail;
    }
    snprintf(ckpt, sizeof ckpt, "%s/checkpoint.h5", outdir);
    snprintf(model_path, sizeof model_path, "%s/model.h5", outdir);
    snprintf(log_path, sizeof log_path, "%s/train_log.csv", outdir);
    snprintf(curve_path, sizeof curve_path, "%s/train_curve.png", outdir);

    for (int i = 0; i < t.ntrain; i++)
        if ((st = load_training(&tv[i], t.train[i], &t, stderr)) != MR_OK) goto fail;
    for (int i = 0; i < t.nsynth; i++) { /* after the real ones: ntrain + i */
        mr_train_volume *sv = &tv[t.ntrain + i];
        if ((st = mr_train_synth_volume(sv, t.synth_atlas[i % t.nsynth_atlas],
                                        (uint64_t)t.seed * 7919u + (uint64_t)i, t.percentile)) != MR_OK)
            goto fail;
        fprintf(stderr, "mrpipe train: %s (%zu, %zu, %zu), all z\n", sv->name, sv->vol->dims[0],
                sv->vol->dims[1], sv->vol->dims[2]);
    }
    int nvol = t.ntrain + t.nsynth;
    if (t.us) {
        if ((st = mr_train_degrader_create(&dg, &t.u)) != MR_OK) goto fail;
        if (t.vh_boot && (st = mr_train_degrader_bootstrap(dg)) != MR_OK) goto fail;
    }
    for (int i = 0; i < t.nval; i++)
        if ((st = load_validation(&vs[i], &t.val[i], &t, (uint64_t)t.seed * 7919u + 17u + i,
                                  dg)) != MR_OK)
            goto fail;

    if (t.vh && t.vh_base[0]) {
        if ((st = mr_nn_model_load(&base, t.vh_base, "magnitude")) != MR_OK) goto fail;
        if (strcmp(base->meta.norm_method, "percentile") || base->meta.n_norm_params < 1 ||
            base->meta.norm_params[0] != t.percentile) {
            st = mr_error_set(MR_ERR_INPUT, "%s: normalisation '%s' %g: expected the config's "
                              "percentile %g (the variance network must see what the model sees)",
                              t.vh_base, base->meta.norm_method, base->meta.norm_params[0],
                              t.percentile);
            goto fail;
        }
    }
    mr_nn_arch arch = mr_nn_arch_default(t.depth, t.channels);
    if (t.vh) arch.in_channels = t.vh_unsampled ? 3 : 2, arch.out_channels = 1, arch.residual = 0;
    if ((st = mr_nn_model_create(&m, &arch)) != MR_OK) goto fail;
    mr_nn_model_init_he(m, (uint64_t)t.seed);
    if (t.init[0]) { /* fine-tuning: start from a trained model of the same architecture */
        mr_nn_model *im = NULL;
        if ((st = mr_nn_model_load(&im, t.init, "magnitude")) != MR_OK) goto fail;
        if (im->arch.depth != arch.depth || im->arch.channels != arch.channels ||
            im->nparams != m->nparams || im->nbuffers != m->nbuffers) {
            mr_nn_model_destroy(im);
            st = mr_error_set(MR_ERR_INPUT, "%s: init model has another architecture than the "
                              "config's depth %d channels %d", t.init, arch.depth, arch.channels);
            goto fail;
        }
        memcpy(m->params, im->params, m->nparams * sizeof *m->params);
        memcpy(m->buffers, im->buffers, m->nbuffers * sizeof *m->buffers);
        mr_nn_model_destroy(im);
        fprintf(stderr, "mrpipe train: starting from the weights of %s\n", t.init);
    }
    describe(m, &t, t.epochs, "none yet"); /* normalisation first: validation reads it */
    mr_nn_train_cfg tc = mr_nn_train_cfg_default();
    long total = t.epochs * t.steps_per_epoch;
    tc.loss = t.vh ? MR_NN_LOSS_GAUSS_NLL : t.loss_l1 ? MR_NN_LOSS_L1 : MR_NN_LOSS_MSE;
    tc.lr = (float)t.lr;
    tc.lr_min = (float)t.lr_min;
    tc.weight_decay = (float)t.weight_decay;
    tc.sched = MR_NN_SCHED_COSINE;
    tc.total_steps = total;
    tc.warmup_steps = t.warmup;
    int P = t.sampler.patch;
    if ((st = mr_nn_trainer_create(&tr, m, t.batch, P, P, &tc)) != MR_OK) goto fail;
    size_t per = (size_t)P * P;
    clean = malloc((size_t)t.batch * per * sizeof *clean);
    noisy = malloc((size_t)t.batch * per * sizeof *noisy);
    rows = calloc((size_t)t.epochs + 1, sizeof *rows);
    int Pb = P + (base ? 2 * base->arch.depth : 0); /* the base model sees whole larger patches */
    mr_train_sampler big_sampler = t.sampler;
    big_sampler.patch = Pb;
    if (t.vh) {
        size_t perb = (size_t)Pb * Pb;
        big_clean = malloc((size_t)t.batch * perb * sizeof *big_clean);
        big_noisy = malloc((size_t)t.batch * perb * sizeof *big_noisy);
        vin = malloc((size_t)t.batch * 3 * per * sizeof *vin);
        vtgt = malloc((size_t)t.batch * per * sizeof *vtgt);
        ybuf = malloc(perb * sizeof *ybuf);
        int aux = t.vh_zf || t.vh_unsampled;
        if (aux) big_aux = malloc((size_t)t.batch * perb * sizeof *big_aux);
        if (!big_clean || !big_noisy || !vin || !vtgt || !ybuf || (aux && !big_aux)) {
            st = mr_error_set(MR_ERR_NOMEM, "train: out of memory");
            goto fail;
        }
        if (base && (st = mr_nn_plan_create(&base_plan, base, Pb, Pb)) != MR_OK) goto fail;
        if (t.us && Pb > t.u.matrix) {
            st = mr_error_set(MR_ERR_USAGE, "%s: patch %d + the base model's border %d exceeds the "
                              "matrix %d", o->config, P, Pb - P, t.u.matrix);
            goto fail;
        }
    }
    if (!clean || !noisy || !rows) {
        st = mr_error_set(MR_ERR_NOMEM, "train: out of memory");
        goto fail;
    }
    long start = 0;
    /* a killed run may have left a checkpoint or log half-written under a temporary name */
    int stale = mr_atomic_cleanup_stale(outdir);
    if (stale) fprintf(stderr, "mrpipe train: removed %d unfinished file(s) of a killed run\n", stale);
    if (o->resume && mr_path_is_file(ckpt)) {
        if ((st = mr_nn_checkpoint_load(tr, ckpt)) != MR_OK) goto fail;
        start = *mr_nn_trainer_steps(tr);
        if (start % t.steps_per_epoch || start > total) {
            st = mr_error_set(MR_ERR_INPUT,
                              "%s: %ld steps is not an epoch end of this config (%ld steps per "
                              "epoch, %ld in all)",
                              ckpt, start, t.steps_per_epoch, total);
            goto fail;
        }
        nrows = read_log(log_path, rows, t.epochs, start / t.steps_per_epoch);
        fprintf(stderr, "mrpipe train: resuming from %s at epoch %ld (step %ld)\n", ckpt,
                start / t.steps_per_epoch, start);
    } else if (o->resume)
        fprintf(stderr, "mrpipe train: no checkpoint in %s: starting from scratch\n", outdir);
    sigma_log = t.vh;
    char desc[256];
    mr_nn_arch_describe(desc, sizeof desc, &arch);
    fprintf(stderr, "mrpipe train: %s, %zu parameters, %d threads, %ld epochs x %ld steps, batch %d "
            "x %dx%d\n", desc, m->nparams, mr_threads(), t.epochs, t.steps_per_epoch, t.batch, P, P);

    if (t.us && start < total) { /* the bank only feeds training steps (a finished run's
                                    * --resume only re-does the final validation/calibration) */
        fprintf(stderr, "mrpipe train: building the artefact bank: %d planes of %d x %d, %d coils\n",
                t.u.bank_slices, t.u.matrix, t.u.matrix, t.u.coils);
        double tb = now_s();
        if ((st = mr_train_bank_build(&bank, tv, nvol, &t.u, &t.sampler, t.percentile,
                                      (uint64_t)t.seed, stderr)) != MR_OK)
            goto fail;
        fprintf(stderr, "mrpipe train: artefact bank built in %.0f s\n", now_s() - tb);
        if (t.vh_unsampled && base) { /* the third channel: the unsampled part of the base's output */
            size_t M = (size_t)bank.m, hw = M * M;
            float *y = malloc(hw * sizeof *y);
            if (!y) {
                st = mr_error_set(MR_ERR_NOMEM, "train: out of memory");
                goto fail;
            }
            tb = now_s();
            for (int i = 0; i < bank.n && st == MR_OK; i++)
                if ((st = mr_train_denoise_volume(y, bank.deg + i * hw, 1, M, M, base, "bank")) == MR_OK)
                    st = unsampled_of(bank.aux + i * hw, y, bank.cols + i * M, 1, M);
            free(y);
            if (st != MR_OK) goto fail;
            fprintf(stderr, "mrpipe train: unsampled part of the base model's output on the bank: "
                    "%.0f s\n", now_s() - tb);
        }
        const char *pv = getenv("MRPIPE_TRAIN_PREVIEW"); /* look at the data: input | target */
        for (int i = 0; pv && i < bank.n && i < 8; i++) {
            size_t M = (size_t)bank.m, hw = M * M;
            float *pair = malloc(2 * hw * sizeof *pair);
            if (!pair) break;
            for (size_t y = 0; y < M; y++) {
                memcpy(pair + y * 2 * M, bank.deg + i * hw + y * M, M * sizeof *pair);
                memcpy(pair + y * 2 * M + M, bank.ref + i * hw + y * M, M * sizeof *pair);
            }
            char path[4200];
            snprintf(path, sizeof path, "%s/bank_%02d_kind%d.png", pv, i, bank.kind[i]);
            mr_png_write_gray(path, pair, M, 2 * M, 0, 1.2f);
            free(pair);
        }
    }
    double t0 = now_s(), prev_seconds = nrows ? rows[nrows - 1].seconds : 0;
    double loss_sum = 0, vpsnr = nrows ? rows[nrows - 1].psnr_val : NAN, npsnr = 0;
    for (long s = start; s < total; s++) {
        mr_rng rng;
        mr_rng_seed(&rng, (uint64_t)t.seed * 0x9E3779B97F4A7C15ull + (uint64_t)s);
        double loss;
        if (t.vh) {
            size_t perb = (size_t)Pb * Pb;
            for (int b = 0; b < t.batch; b++)
                if (t.us)
                    mr_train_bank_sample(big_clean + b * perb, big_noisy + b * perb,
                                         big_aux ? big_aux + b * perb : NULL, &bank,
                                         &big_sampler, &rng);
                else
                    mr_train_sample(big_clean + b * perb, big_noisy + b * perb, tv, nvol,
                                    &big_sampler, &rng);
            if ((st = mr_sigma_batch(vin, vtgt, big_noisy, big_clean, big_aux, t.vh_unsampled,
                                     t.batch, Pb, P, base_plan, ybuf)) != MR_OK)
                goto fail;
            /* some patches without the unsampled part: images whose mask is unknown */
            for (int b = 0; t.vh_unsampled && b < t.batch; b++)
                if (mr_rng_uniform(&rng) < t.vh_drop)
                    memset(vin + ((size_t)b * 3 + 2) * per, 0, per * sizeof *vin);
            if ((st = mr_nn_trainer_step(tr, vin, vtgt, &loss)) != MR_OK) goto fail;
        } else {
            for (int b = 0; b < t.batch; b++)
                if (t.us)
                    mr_train_bank_sample(clean + b * per, noisy + b * per, NULL, &bank, &t.sampler,
                                         &rng);
                else
                    mr_train_sample(clean + b * per, noisy + b * per, tv, nvol, &t.sampler,
                                    &rng);
            if ((st = mr_nn_trainer_step(tr, noisy, clean, &loss)) != MR_OK) goto fail;
        }
        loss_sum += loss;
        long epoch = s / t.steps_per_epoch + 1, in_epoch = s % t.steps_per_epoch + 1;
        double el = now_s() - t0, rate = (double)(s + 1 - start) / el;
        if (tty || in_epoch % (t.steps_per_epoch / 5 > 0 ? t.steps_per_epoch / 5 : 1) == 0) {
            char eta[32], spent[32];
            fmt_time(eta, sizeof eta, (double)(total - s - 1) / rate);
            fmt_time(spent, sizeof spent, prev_seconds + el);
            int width = 24, fill = (int)(width * in_epoch / t.steps_per_epoch);
            char bar[32];
            for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
            bar[width] = 0;
            fprintf(stderr, "%sepoch %ld/%ld [%s] step %ld/%ld loss %.3e val %.2f%s  %.1f step/s "
                    "elapsed %s ETA %s%s", tty ? "\r" : "", epoch, t.epochs, bar, s + 1, total,
                    loss_sum / in_epoch, vpsnr, t.vh ? " NLL" : " dB", rate, spent, eta,
                    tty ? "  " : "\n");
        }
        if (in_epoch == t.steps_per_epoch) {
            /* variance network: "psnr" columns hold the validation NLL and raw 90 % coverage */
            if ((st = t.vh ? validate_sigma(&vpsnr, &npsnr, vs, t.nval, base, m, t.vh_zf ? 1 : t.vh_unsampled ? 2 : 0)
                           : validate(&vpsnr, &npsnr, vs, t.nval, m)) != MR_OK)
                goto fail;
            log_row r = {epoch, s + 1, loss_sum / t.steps_per_epoch, npsnr, vpsnr,
                         mr_nn_lr_at(&tc, s), prev_seconds + now_s() - t0};
            rows[nrows++] = r;
            loss_sum = 0;
            if ((st = mr_nn_checkpoint_save(tr, ckpt)) != MR_OK ||
                (st = write_log(log_path, rows, nrows)) != MR_OK ||
                (st = write_curve(curve_path, rows, nrows)) != MR_OK)
                goto fail;
            if (t.vh)
                fprintf(stderr, "%sepoch %ld: NLL %.4e, validation NLL %.4f, raw 90 %% coverage "
                        "%.1f %%, checkpoint %s\n", tty ? "\n" : "", epoch, r.loss, vpsnr, npsnr,
                        ckpt);
            else
                fprintf(stderr, "%sepoch %ld: loss %.4e, validation PSNR %.2f dB (noisy %.2f dB), "
                        "checkpoint %s\n", tty ? "\n" : "", epoch, r.loss, vpsnr, npsnr, ckpt);
            if (o->stop_after > 0 && epoch >= o->stop_after && s + 1 < total) {
                fprintf(stderr, "mrpipe train: stopped after epoch %ld (--stop-after-epochs)\n",
                        epoch);
                rc = 0;
                goto done;
            }
        }
    }
    /* the final model: meta with the validation figures of the last epoch */
    {
        double vp = vpsnr, np = npsnr;
        char val[1024];
        if (t.vh) {
            double scale;
            char cal[2048];
            char feat[512] = "", noise[512] = "";
            m->meta.n_noise_term = 0; /* a resumed run refits it */
            if ((st = validate_sigma(&vp, &np, vs, t.nval, base, m, t.vh_zf ? 1 : t.vh_unsampled ? 2 : 0)) != MR_OK ||
                (t.vh_feat && (st = fit_features(feat, sizeof feat, &t, base, m, dg)) != MR_OK) ||
                (t.vh_noise && (st = fit_noise_term(noise, sizeof noise, &t, base, m, dg)) != MR_OK) ||
                (st = calibrate_sigma(&scale, cal, sizeof cal, &t, base, m, dg)) != MR_OK)
                goto fail;
            for (const char *x = feat; x; x = x == feat ? noise : NULL)
                if (x[0]) {
                    fprintf(stderr, "mrpipe train: %s\n", x);
                    size_t o = strlen(cal);
                    snprintf(cal + o, sizeof cal - o, "; %s", x);
                }
            snprintf(val, sizeof val, "validation NLL %.4f, raw 90%% coverage %.1f %% (before "
                     "calibration)", vp, np);
            describe(m, &t, t.epochs, val);
            m->meta.calibration_scale = scale; /* calibrate_sigma also set the per-level scales */
            snprintf(m->meta.calibration, sizeof m->meta.calibration, "%s", cal);
            snprintf(m->meta.base_model, sizeof m->meta.base_model, "%.200s",
                     t.vh_base[0] ? base_name(t.vh_base) : t.vh_zf ? "zero-filled" : "none");
            if ((st = mr_nn_model_save(m, model_path)) != MR_OK) goto fail;
            fprintf(stderr, "mrpipe train: %s written (%s; %s), %.0f s in all\n", model_path, val,
                    cal, prev_seconds + now_s() - t0);
            goto exported;
        }
        if ((st = validate(&vp, &np, vs, t.nval, m)) != MR_OK) goto fail;
        size_t off = t.us ? (size_t)snprintf(val, sizeof val, "undersampled (equispaced, methods x "
                                             "accelerations cycled): mean psnr_db=%.2f (input %.2f)",
                                             vp, np)
                          : (size_t)snprintf(val, sizeof val, "rician %g%% of max: mean psnr_db=%.2f "
                                             "(noisy %.2f)", 100 * t.val_sigma, vp, np);
        for (int i = 0; i < t.nval && off < sizeof val; i++) {
            size_t n = vs[i].S * vs[i].H * vs[i].W;
            off += (size_t)snprintf(val + off, sizeof val - off, "; %s %zu slices %.2f (noisy %.2f)",
                                    vs[i].name, vs[i].S, psnr(vs[i].clean, vs[i].out, n, vs[i].maxval),
                                    psnr(vs[i].clean, vs[i].noisy, n, vs[i].maxval));
        }
        describe(m, &t, t.epochs, val);
        if ((st = mr_nn_model_save(m, model_path)) != MR_OK) goto fail;
        fprintf(stderr, "mrpipe train: %s written (%s), %.0f s in all\n", model_path, val,
                prev_seconds + now_s() - t0);
    exported:
        if (t.export_model[0] && (st = copy_file(t.export_model, model_path)) != MR_OK) goto fail;
        /* a calibrate-only run (epochs 0) has no log or curve of its own */
        if (t.export_log[0] && mr_path_is_file(log_path) &&
            (st = copy_file(t.export_log, log_path)) != MR_OK)
            goto fail;
        if (t.export_curve[0] && mr_path_is_file(curve_path) &&
            (st = copy_file(t.export_curve, curve_path)) != MR_OK)
            goto fail;
    }
    rc = 0;
    goto done;
fail:
    rc = mr_cli_fail("train", st);
done:
    for (int i = 0; i < MAX_SETS; i++) {
        mr_array_destroy(tv[i].vol);
        val_set_free(&vs[i]);
    }
    free(clean), free(noisy), free(rows);
    mr_nn_trainer_destroy(tr);
    mr_nn_model_destroy(m);
    mr_train_degrader_destroy(dg);
    mr_train_bank_free(&bank);
    mr_nn_plan_destroy(base_plan);
    mr_nn_model_destroy(base);
    free(big_clean), free(big_noisy), free(big_aux), free(vin), free(vtgt), free(ybuf);
    mr_config_destroy(c);
    return rc;
}

int mr_cmd_train(int argc, char **argv)
{
    train_opts o = {0};
    o.seed = -1;
    const char *v = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(USAGE, stdout);
            return 0;
        } else if (!strcmp(argv[i], "--resume")) {
            o.resume = 1;
            continue;
        } else if (mr_opt_value(&v, "--config", argc, argv, &i))
            o.config = v;
        else if (mr_opt_value(&v, "--output", argc, argv, &i))
            o.output = v;
        else if (mr_opt_value(&v, "--seed", argc, argv, &i)) {
            mr_status st = v ? mr_parse_long(&o.seed, "--seed", v, 0, 0x7fffffffL) : MR_OK;
            if (st != MR_OK) return mr_cli_fail("train", st);
        } else if (mr_opt_value(&v, "--stop-after-epochs", argc, argv, &i)) {
            mr_status st = v ? mr_parse_long(&o.stop_after, "--stop-after-epochs", v, 1, MAX_EPOCHS)
                             : MR_OK;
            if (st != MR_OK) return mr_cli_fail("train", st);
        } else
            return mr_cli_usage_error("train", "unknown option '%s'", argv[i]);
        if (!v) return mr_cli_usage_error("train", "%s needs a value", argv[i]);
    }
    if (!o.config) return mr_cli_usage_error("train", "--config is required");
    return run(&o);
}
