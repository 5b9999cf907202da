/*
 * stage_io.c: the pipeline's input and output stages.
 *  - simulate: multi-coil k-space from a NIfTI magnitude volume (mr_sim_file_write, what
 *    `mrpipe simulate` runs), written as kspace.h5 in the scan's outputs; later stages read it.
 *  - read: open the k-space (fastMRI .h5, ISMRMRD .h5, BART .cfl) and choose the slices used; or,
 *    for an image input (a DICOM series, a NIfTI volume), read the volume into the scan as the
 *    image `input`, keeping its DICOM source (patient, study, geometry, source instances) and its
 *    NIfTI geometry for the outputs.
 *  - write: every image (and optionally the reference) as .h5 / .nii.gz / .png / .cfl or a derived
 *    DICOM series, through the same writers as `mrpipe recon` and `mrpipe denoise`
 *    (pipeline/output.c); an image's SD map (uncertainty) as <label>_sd.*.
 */
#include "mr_output.h"
#include "mr_stages.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
    {"slices", MR_KEY_STRING, "all", 0,
     "k-space (or image) slices A:B used (0-based, B exclusive), or all"},
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

/* Keep slices [a, b) of an (S, H, W) volume (and of its DICOM source). */
static mr_status keep_slices(mr_scan *scan, mr_scan_image *im, long a, long b)
{
    size_t S = im->image->dims[0], hw = im->image->dims[1] * im->image->dims[2];
    size_t dims[3] = {(size_t)(b - a), im->image->dims[1], im->image->dims[2]};
    mr_array *sub = NULL;
    mr_status st;
    if ((size_t)b > S)
        return mr_error_set(MR_ERR_INPUT, "%s: slices %ld:%ld asked for, the volume has %zu",
                            scan->input, a, b, S);
    if ((st = mr_array_create(&sub, MR_FLOAT32, 3, dims)) != MR_OK) return st;
    memcpy(mr_array_f32(sub), mr_array_f32(im->image) + (size_t)a * hw, dims[0] * hw * sizeof(float));
    mr_array_destroy(im->image);
    im->image = sub;
    if (scan->dicom) {
        /* the first kept slice's position; references of the kept slices */
        mr_dicom_geometry *g = &scan->dicom->geom;
        for (int k = 0; k < 3; k++) g->origin[k] += (double)a * g->slice_spacing * g->normal[k];
        if (scan->dicom->refs)
            memmove(scan->dicom->refs, scan->dicom->refs + a, dims[0] * sizeof *scan->dicom->refs);
        g->slices = dims[0];
        mr_dicom_geometry_nifti(scan->nifti, g);
    } else if (scan->nifti && scan->nifti->valid) {
        /* voxel k = a becomes k = 0: shift the origin by a slice steps along the affine's k column */
        for (int r = 0; r < 3; r++) scan->nifti->affine[r][3] += (double)a * scan->nifti->affine[r][2];
        scan->nifti->valid = 1;
    }
    scan->slice_a = (size_t)a;
    scan->slice_b = (size_t)b;
    return MR_OK;
}

mr_status mr_scan_load_image(mr_scan *scan)
{
    mr_dicom_set *set = NULL;
    mr_dicom_volume *vol = NULL;
    mr_array *img = NULL;
    mr_status st = MR_OK;
    size_t index;
    if (scan->kind == MR_INPUT_KSPACE || scan->image_loaded) return MR_OK;
    if (scan->n_images >= MR_SCAN_MAX_IMAGES)
        return mr_error_set(MR_ERR_USAGE, "more than %d images", MR_SCAN_MAX_IMAGES);
    if (!(scan->nifti = mr_calloc(1, sizeof *scan->nifti))) return MR_ERR_NOMEM;
    if (scan->kind == MR_INPUT_DICOM) {
        if ((st = mr_dicom_set_open(&set, scan->input)) == MR_OK &&
            (st = mr_dicom_set_select(&index, set, NULL)) == MR_OK)
            st = mr_dicom_volume_read(&vol, set, index, 1);
        mr_dicom_set_close(set);
        if (st != MR_OK) return st;
        if (!(scan->dicom = mr_calloc(1, sizeof *scan->dicom))) {
            mr_dicom_volume_destroy(vol);
            return MR_ERR_NOMEM;
        }
        *scan->dicom = vol->src; /* the refs move to the scan */
        memset(&vol->src, 0, sizeof vol->src);
        img = vol->data;
        vol->data = NULL;
        mr_dicom_volume_destroy(vol);
        mr_dicom_geometry_nifti(scan->nifti, &scan->dicom->geom);
    } else {
        if ((st = mr_nifti_read(&img, scan->nifti, scan->input)) != MR_OK) return st;
        if (img->ndim == 2) { /* one slice: (1, H, W) */
            img->ndim = 3;
            img->dims[2] = img->dims[1];
            img->dims[1] = img->dims[0];
            img->dims[0] = 1;
        }
    }
    if (img->ndim != 3) {
        int nd = img->ndim;
        mr_array_destroy(img);
        return mr_error_set(MR_ERR_INPUT, "%s: expected a 2-D image or a 3-D volume, found %d dims",
                            scan->input, nd);
    }
    mr_scan_image *im = &scan->images[scan->n_images++];
    memset(im, 0, sizeof *im);
    snprintf(im->label, sizeof im->label, "input");
    snprintf(im->method, sizeof im->method, "input");
    im->image = img;
    scan->image_loaded = 1;
    scan->slice_a = 0;
    scan->slice_b = img->dims[0];
    MR_INFO("%s: %s, %zu slice(s) x %zu x %zu", scan->id,
            scan->kind == MR_INPUT_DICOM ? "DICOM series" : "NIfTI volume", img->dims[0],
            img->dims[1], img->dims[2]);
    return MR_OK;
}

static mr_status read_run(void *state, mr_scan *scan)
{
    read_state *s = state;
    mr_status st;
    if (scan->kind != MR_INPUT_KSPACE) {
        if ((st = mr_scan_load_image(scan)) != MR_OK) return st;
        return s->has ? keep_slices(scan, &scan->images[scan->n_images - 1], s->a, s->b) : MR_OK;
    }
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
    "read",
    "open the k-space (fastMRI .h5, ISMRMRD .h5, BART .cfl), or read an image input (a DICOM "
    "series: a folder or file; a NIfTI volume) as the image `input`; choose the slices",
    read_keys, read_create, read_run, plain_destroy,
};

/* ================================================================ write */

enum { FMT_H5 = 1, FMT_NIFTI = 2, FMT_PNG = 4, FMT_CFL = 8, FMT_DICOM = 16 };

/* ext "/" : a folder LABEL/ holding the derived series LABEL/<SeriesNumber>_<description>/ */
static const struct {
    const char *name, *ext;
    int bit;
} g_formats[] = {
    {"h5", ".h5", FMT_H5},   {"nifti", ".nii.gz", FMT_NIFTI}, {"png", ".png", FMT_PNG},
    {"cfl", ".cfl", FMT_CFL}, {"dicom", "/", FMT_DICOM},      {NULL, NULL, 0},
};

typedef struct {
    int formats;
    int reference;
    char (*images)[64];
    size_t n_images;
} write_state;

static const mr_stage_key write_keys[] = {
    {"formats", MR_KEY_LIST, "[h5, png]", 0,
     "any of h5, nifti, png, cfl, dicom (a derived MR series per image in LABEL/)"},
    {"images", MR_KEY_LIST, "[]", 0, "images to write (recon / denoise outputs, input); [] = all"},
    {"reference", MR_KEY_BOOL, "false", 0, "also write the reference (reference.*)"},
    {NULL, 0, NULL, 0, NULL},
};

mr_status mr_stage_check_images(char (**out)[64], size_t *n_out, const mr_stage_ctx *x,
                                const mr_cfg_node *list)
{
    size_t here = mr_stage_ctx_index(x);
    *out = NULL;
    *n_out = 0;
    if (!list || list->n == 0) return MR_OK;
    if (!(*out = mr_calloc(list->n, sizeof **out))) return MR_ERR_NOMEM;
    for (size_t i = 0; i < list->n; i++) {
        const char *v = list->items[i]->value;
        if (!mr_pipeline_image_known(x->pipeline, here, v)) {
            free(*out);
            *out = NULL;
            return mr_config_error(x->config, list->items[i], MR_ERR_USAGE,
                                   "no image named '%s' before this stage (a recon stage's name, a "
                                   "denoise output <image>_<suffix>, or input for DICOM/NIfTI "
                                   "inputs)", v);
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
                                 "expected one of h5, nifti, png, cfl, dicom, found '%s'",
                                 f->items[i]->value);
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

/* Does the write stage (its mapping) list the dicom format? For dicom_send's check. */
int mr_stage_write_has_dicom(const mr_cfg_node *write_node)
{
    const mr_cfg_node *f = mr_cfg_child(write_node, "formats");
    for (size_t i = 0; f && i < f->n; i++)
        if (f->items[i]->value && !strcmp(f->items[i]->value, "dicom")) return 1;
    return 0;
}

static int wanted(const write_state *s, const char *label)
{
    if (!s->n_images) return 1;
    for (size_t i = 0; i < s->n_images; i++)
        if (!strcmp(s->images[i], label)) return 1;
    return 0;
}

/* Record a written DICOM series in the scan (dicom_send sends them); takes w. */
static mr_status keep_series(mr_scan *scan, mr_dicom_written *w)
{
    mr_dicom_written *n = realloc(scan->series, (scan->n_series + 1) * sizeof *n);
    if (!n) {
        mr_dicom_written_free(w);
        return mr_error_set(MR_ERR_NOMEM, "out of memory");
    }
    scan->series = n;
    scan->series[scan->n_series++] = *w;
    memset(w, 0, sizeof *w);
    return MR_OK;
}

/* The SeriesNumber of the k-th derived series of a scan: the source's + 1000 + k (1000 + k for
 * k-space and NIfTI inputs), so the series of one scan are told apart in a PACS. */
static long series_number(const mr_scan *scan, size_t k)
{
    long base = scan->dicom && scan->dicom->series.series_number > 0
                    ? scan->dicom->series.series_number
                    : 0;
    return base + 1000 + (long)k;
}

static mr_status write_one(const write_state *s, mr_scan *scan, const char *label,
                           const mr_array *mag, const mr_array *cplx, const mr_array *sd,
                           const char *sd_kind, mr_output_extra *extra)
{
    mr_status st;
    for (int k = 0; g_formats[k].name; k++) {
        char path[4300], sdpath[4400], desc[65], deriv[256];
        mr_dicom_written w, wsd;
        if (!(s->formats & g_formats[k].bit)) continue;
        snprintf(path, sizeof path, "%s/%s%s", scan->work_dir, label, g_formats[k].ext);
        memset(&w, 0, sizeof w);
        memset(&wsd, 0, sizeof wsd);
        extra->uncertainty = g_formats[k].bit == FMT_H5 ? sd : NULL;
        if (g_formats[k].bit == FMT_DICOM) {
            /* "<source description> mrpipe <label>", cut to the 64 characters DICOM allows */
            const char *sdsc = scan->dicom ? scan->dicom->series.description : "";
            snprintf(desc, sizeof desc, "%.40s%smrpipe %s", sdsc, sdsc[0] ? " " : "", label);
            snprintf(deriv, sizeof deriv, "mrpipe %s pipeline: %s (%s)", MR_VERSION_STRING, label,
                     extra->method ? extra->method : "");
            extra->description = desc;
            extra->derivation = deriv;
            extra->series_number = series_number(scan, scan->n_series);
            extra->written = &w;
            extra->linked = NULL;
        }
        st = mr_output_write_volume(path, mag, cplx, extra);
        extra->written = NULL;
        if (st == MR_OK && g_formats[k].bit == FMT_DICOM) st = keep_series(scan, &w);
        if (st != MR_OK) return st;
        if (!sd) continue;
        /* the SD map beside it: <label>_sd.<ext> (a DICOM series linked to the image series) */
        if ((st = mr_output_sd_path(sdpath, sizeof sdpath, path)) != MR_OK) return st;
        extra->uncertainty = NULL;
        if (g_formats[k].bit == FMT_DICOM) {
            extra->linked = &scan->series[scan->n_series - 1];
            extra->series_number = series_number(scan, scan->n_series);
            extra->written = &wsd;
        }
        st = mr_output_write_uncertainty(sdpath, sd, sd_kind, extra);
        extra->written = NULL;
        extra->linked = NULL;
        if (st == MR_OK && g_formats[k].bit == FMT_DICOM) st = keep_series(scan, &wsd);
        if (st != MR_OK) return st;
    }
    return MR_OK;
}

static mr_status write_run(void *state, mr_scan *scan)
{
    write_state *s = state;
    mr_status st;
    mr_output_extra extra;
    if ((st = mr_scan_load_image(scan)) != MR_OK) return st;
    memset(&extra, 0, sizeof extra);
    if (scan->src) {
        const mr_kspace_info *in = mr_kspace_get_info(scan->src);
        mr_fastmri_file *fm = mr_kspace_fastmri(scan->src);
        extra.header_xml = in->header_xml;
        if (fm) extra.acquisition = mr_fastmri_get_info(fm)->acquisition;
    }
    extra.dicom = scan->dicom;
    extra.nifti = scan->nifti && scan->nifti->valid ? scan->nifti : NULL;
    for (size_t i = 0; i < scan->n_images; i++) {
        const mr_scan_image *im = &scan->images[i];
        if (!wanted(s, im->label)) continue;
        extra.method = im->method;
        extra.mask = im->mask1d;
        extra.mask_len = im->mask_len;
        extra.noise_sd = im->noise_sd, extra.n_noise_sd = im->noise_sd ? im->image->dims[0] : 0;
        extra.coils = im->coils;
        extra.mask_difficulty = im->mask_difficulty;
        if ((st = write_one(s, scan, im->label, im->image, im->cplx, im->uncertainty,
                            im->uncertainty_kind[0] ? im->uncertainty_kind : NULL, &extra)) != MR_OK)
            return st;
    }
    if (s->reference) {
        if (!scan->reference)
            return mr_error_set(MR_ERR_INPUT, "reference: true, but no reference was loaded (add a "
                                "validate stage before write)");
        extra.method = "reference";
        extra.mask = NULL;
        extra.mask_len = 0;
        extra.noise_sd = NULL, extra.n_noise_sd = 0, extra.coils = 0, extra.mask_difficulty = 0;
        if ((st = write_one(s, scan, "reference", scan->reference, NULL, NULL, NULL, &extra)) != MR_OK)
            return st;
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
    "write",
    "write each image as LABEL.h5 / .nii.gz / .png / .cfl, or a derived DICOM series in LABEL/ "
    "(from a DICOM input: its patient, study and geometry; from k-space: the ISMRMRD header's "
    "geometry, a new study); an image's SD map as LABEL_sd.*",
    write_keys, write_create, write_run, write_destroy,
};
