/*
 * stage_io.c: the pipeline's input and output stages.
 *  - simulate: multi-coil k-space from a NIfTI magnitude volume (mr_sim_file_write, what
 *    `mrpipe simulate` runs), written as kspace.h5 in the scan's outputs; later stages read it.
 *  - read: open the k-space (fastMRI .h5, ISMRMRD .h5, BART .cfl) and choose the slices used.
 *  - write: every reconstruction (and optionally the reference) as .h5 / .nii.gz / .png / .cfl,
 *    through the same writers as `mrpipe recon` (pipeline/output.c).
 */
#include "mr_output.h"
#include "mr_stages.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* "A:B" (0-based, B exclusive) or "" for all. */
static mr_status parse_range(long *a, long *b, int *has, const mr_config *c, const mr_cfg_node *n)
{
    const char *v = n->value;
    char *end;
    *has = 0;
    if (!v[0] || !strcmp(v, "all")) return MR_OK;
    *a = strtol(v, &end, 10);
    if (end == v || *end != ':' || *a < 0)
        return mr_config_error(c, n, MR_ERR_USAGE, "expected A:B (0-based, B exclusive), found "
                               "'%s'", v);
    const char *bs = end + 1;
    *b = strtol(bs, &end, 10);
    if (end == bs || *end || *b <= *a)
        return mr_config_error(c, n, MR_ERR_USAGE, "expected A:B with B > A, found '%s'", v);
    *has = 1;
    return MR_OK;
}

/* ================================================================ simulate */

typedef struct {
    mr_sim_file_params p;
    int keep;
} simulate_state;

static const mr_stage_key simulate_keys[] = {
    {"coils", MR_KEY_INT, "8", 0, "receive coils, 1..128"},
    {"noise", MR_KEY_FLOAT, "0.01", 0, "complex Gaussian noise std as a fraction of the volume max"},
    {"axis", MR_KEY_INT, "0", 0, "slice orientation: 0, 1 or 2 (an axis of the (S, H, W) volume)"},
    {"slices", MR_KEY_STRING, "all", 0, "slices A:B along axis (0-based, B exclusive), or all"},
    {"matrix", MR_KEY_STRING, "volume", 0, "H,W: centre-crop or zero-pad each image, or volume"},
    {"seed", MR_KEY_INT, "0", 0, "seed of the background phase and the noise"},
    {"keep", MR_KEY_BOOL, "true", 0, "keep kspace.h5 among the outputs"},
    {NULL, 0, NULL, 0, NULL},
};

static mr_status simulate_create(void **state, const mr_stage_ctx *x)
{
    simulate_state *s = mr_calloc(1, sizeof *s);
    const mr_config *c = x->config;
    const mr_cfg_node *n = x->node;
    mr_status st;
    if (!s) return MR_ERR_NOMEM;
    st = mr_cfg_as_long(&s->p.coils, c, mr_cfg_child(n, "coils"), 1, 128);
    if (st == MR_OK) st = mr_cfg_as_double(&s->p.noise, c, mr_cfg_child(n, "noise"), 0, 10);
    if (st == MR_OK) st = mr_cfg_as_long(&s->p.axis, c, mr_cfg_child(n, "axis"), 0, 2);
    if (st == MR_OK) st = mr_cfg_as_long(&s->p.seed, c, mr_cfg_child(n, "seed"), 0, 4294967295L);
    if (st == MR_OK) st = mr_cfg_as_bool(&s->keep, c, mr_cfg_child(n, "keep"));
    if (st == MR_OK)
        st = parse_range(&s->p.a, &s->p.b, &s->p.has_slices, c, mr_cfg_child(n, "slices"));
    if (st == MR_OK) {
        const mr_cfg_node *m = mr_cfg_child(n, "matrix");
        unsigned long h, w;
        char tail;
        if (strcmp(m->value, "volume") != 0) {
            if (sscanf(m->value, "%lu,%lu%c", &h, &w, &tail) != 2 || h < 1 || w < 1 ||
                h > 65536 || w > 65536)
                st = mr_config_error(c, m, MR_ERR_USAGE, "expected H,W (e.g. 320,368) or volume, "
                                     "found '%s'", m->value);
            s->p.has_matrix = 1;
            s->p.mh = h;
            s->p.mw = w;
        }
    }
    if (st != MR_OK) {
        free(s);
        return st;
    }
    *state = s;
    return MR_OK;
}

static mr_status simulate_run(void *state, mr_scan *scan)
{
    simulate_state *s = state;
    mr_sim_file_params p = s->p;
    char out[4096];
    mr_status st;
    if (snprintf(out, sizeof out, "%s/kspace.h5", scan->work_dir) >= (int)sizeof out)
        return mr_error_set(MR_ERR_USAGE, "%s: output path too long", scan->work_dir);
    p.input = scan->input;
    p.output = out;
    if ((st = mr_sim_file_write(&p)) != MR_OK) return st;
    memcpy(scan->kspace_path, out, sizeof out);
    if (!s->keep && scan->n_drop < 4) memcpy(scan->drop[scan->n_drop++], out, sizeof out);
    return MR_OK;
}

static void plain_destroy(void *state) { free(state); }

const mr_stage mr_stage_simulate = {
    "simulate",
    "multi-coil k-space from a NIfTI magnitude volume (as mrpipe simulate); input must be NIfTI",
    simulate_keys, simulate_create, simulate_run, plain_destroy,
};

/* ================================================================ read */

typedef struct {
    long a, b;
    int has;
} read_state;

static const mr_stage_key read_keys[] = {
    {"slices", MR_KEY_STRING, "all", 0, "k-space slices A:B used (0-based, B exclusive), or all"},
    {NULL, 0, NULL, 0, NULL},
};

static mr_status read_create(void **state, const mr_stage_ctx *x)
{
    read_state *s = mr_calloc(1, sizeof *s);
    mr_status st;
    if (!s) return MR_ERR_NOMEM;
    st = parse_range(&s->a, &s->b, &s->has, x->config, mr_cfg_child(x->node, "slices"));
    if (st != MR_OK) {
        free(s);
        return st;
    }
    *state = s;
    return MR_OK;
}

static mr_status read_run(void *state, mr_scan *scan)
{
    read_state *s = state;
    mr_status st;
    if ((st = mr_scan_open_kspace(scan)) != MR_OK) return st;
    const mr_kspace_info *in = mr_kspace_get_info(scan->src);
    if (s->has) {
        if ((size_t)s->b > in->slices)
            return mr_error_set(MR_ERR_INPUT, "%s: slices %ld:%ld asked for, the k-space has %zu",
                                scan->kspace_path, s->a, s->b, in->slices);
        scan->slice_a = (size_t)s->a;
        scan->slice_b = (size_t)s->b;
    }
    MR_INFO("%s: %s k-space, %zu slice(s) (using %zu..%zu) x %zu coil(s) x %zu x %zu", scan->id,
            mr_format_name(in->format), in->slices, scan->slice_a, scan->slice_b - 1, in->coils,
            in->height, in->width);
    return MR_OK;
}

const mr_stage mr_stage_read = {
    "read", "open the k-space (fastMRI .h5, ISMRMRD .h5, BART .cfl) and choose the slices",
    read_keys, read_create, read_run, plain_destroy,
};

/* ================================================================ write */

enum { FMT_H5 = 1, FMT_NIFTI = 2, FMT_PNG = 4, FMT_CFL = 8 };

static const struct {
    const char *name, *ext;
    int bit;
} g_formats[] = {
    {"h5", ".h5", FMT_H5}, {"nifti", ".nii.gz", FMT_NIFTI}, {"png", ".png", FMT_PNG},
    {"cfl", ".cfl", FMT_CFL}, {NULL, NULL, 0},
};

typedef struct {
    int formats;
    int reference;
    char (*images)[64];
    size_t n_images;
} write_state;

static const mr_stage_key write_keys[] = {
    {"formats", MR_KEY_LIST, "[h5, png]", 0, "any of h5, nifti, png, cfl"},
    {"images", MR_KEY_LIST, "[]", 0, "recon stage names to write; [] = all"},
    {"reference", MR_KEY_BOOL, "false", 0, "also write the reference (reference.*)"},
    {NULL, 0, NULL, 0, NULL},
};

mr_status mr_stage_check_images(char (**out)[64], size_t *n_out, const mr_stage_ctx *x,
                                const mr_cfg_node *list)
{
    *out = NULL;
    *n_out = 0;
    if (!list || list->n == 0) return MR_OK;
    if (!(*out = mr_calloc(list->n, sizeof **out))) return MR_ERR_NOMEM;
    for (size_t i = 0; i < list->n; i++) {
        const char *v = list->items[i]->value;
        int found = 0;
        for (size_t j = 0; j < x->pipeline->n_stages; j++)
            if (x->pipeline->stages[j].stage == &mr_stage_recon &&
                !strcmp(x->pipeline->stages[j].label, v))
                found = 1;
        if (!found) {
            free(*out);
            *out = NULL;
            return mr_config_error(x->config, list->items[i], MR_ERR_USAGE,
                                   "no recon stage named '%s'", v);
        }
        snprintf((*out)[i], 64, "%s", v);
    }
    *n_out = list->n;
    return MR_OK;
}

static mr_status write_create(void **state, const mr_stage_ctx *x)
{
    write_state *s = mr_calloc(1, sizeof *s);
    const mr_cfg_node *f = mr_cfg_child(x->node, "formats");
    mr_status st = MR_OK;
    if (!s) return MR_ERR_NOMEM;
    for (size_t i = 0; i < f->n && st == MR_OK; i++) {
        int bit = 0;
        for (int k = 0; g_formats[k].name; k++)
            if (!strcmp(g_formats[k].name, f->items[i]->value)) bit = g_formats[k].bit;
        if (!bit)
            st = mr_config_error(x->config, f->items[i], MR_ERR_USAGE,
                                 "expected one of h5, nifti, png, cfl, found '%s'%s",
                                 f->items[i]->value,
                                 !strcmp(f->items[i]->value, "dicom") ? " (DICOM output is not "
                                                                        "available yet)" : "");
        s->formats |= bit;
    }
    if (st == MR_OK && !s->formats)
        st = mr_config_error(x->config, f, MR_ERR_USAGE, "expected at least one format");
    if (st == MR_OK) st = mr_cfg_as_bool(&s->reference, x->config, mr_cfg_child(x->node, "reference"));
    if (st == MR_OK)
        st = mr_stage_check_images(&s->images, &s->n_images, x, mr_cfg_child(x->node, "images"));
    if (st != MR_OK) {
        free(s);
        return st;
    }
    *state = s;
    return MR_OK;
}

static int wanted(const write_state *s, const char *label)
{
    if (!s->n_images) return 1;
    for (size_t i = 0; i < s->n_images; i++)
        if (!strcmp(s->images[i], label)) return 1;
    return 0;
}

static mr_status write_one(const write_state *s, const mr_scan *scan, const char *label,
                           const mr_array *mag, const mr_array *cplx, const mr_output_extra *extra)
{
    mr_status st;
    for (int k = 0; g_formats[k].name; k++) {
        char path[4300];
        if (!(s->formats & g_formats[k].bit)) continue;
        snprintf(path, sizeof path, "%s/%s%s", scan->work_dir, label, g_formats[k].ext);
        if ((st = mr_output_write_volume(path, mag, cplx, extra)) != MR_OK) return st;
    }
    return MR_OK;
}

static mr_status write_run(void *state, mr_scan *scan)
{
    write_state *s = state;
    mr_status st;
    mr_output_extra extra;
    memset(&extra, 0, sizeof extra);
    if (scan->src) {
        const mr_kspace_info *in = mr_kspace_get_info(scan->src);
        mr_fastmri_file *fm = mr_kspace_fastmri(scan->src);
        extra.header_xml = in->header_xml;
        if (fm) extra.acquisition = mr_fastmri_get_info(fm)->acquisition;
    }
    for (size_t i = 0; i < scan->n_images; i++) {
        const mr_scan_image *im = &scan->images[i];
        if (!wanted(s, im->label)) continue;
        extra.method = im->method;
        extra.mask = im->mask1d;
        extra.mask_len = im->mask_len;
        if ((st = write_one(s, scan, im->label, im->image, im->cplx, &extra)) != MR_OK) return st;
    }
    if (s->reference) {
        if (!scan->reference)
            return mr_error_set(MR_ERR_INPUT, "reference: true, but no reference was loaded (add a "
                                "validate stage before write)");
        memset(&extra, 0, sizeof extra);
        extra.method = "reference";
        if ((st = write_one(s, scan, "reference", scan->reference, NULL, &extra)) != MR_OK) return st;
    }
    return MR_OK;
}

static void write_destroy(void *state)
{
    write_state *s = state;
    if (!s) return;
    free(s->images);
    free(s);
}

const mr_stage mr_stage_write = {
    "write", "write each reconstruction as LABEL.h5 / .nii.gz / .png / .cfl",
    write_keys, write_create, write_run, write_destroy,
};
