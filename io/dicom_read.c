/*
 * dicom_read.c: reading MR images from DICOM into volumes (docs/dicom.md).
 *
 * Follows DICOM PS3.10 (files, DICOMDIR as a File-set: PS3.3 Annex F Basic Directory IOD), PS3.3
 * C.7.6.2 Image Plane module (ImagePositionPatient is the centre of the first voxel;
 * ImageOrientationPatient holds the row direction then the column direction, LPS), C.7.6.3 Image
 * Pixel module (BitsStored/HighBit/PixelRepresentation, MONOCHROME1/2), C.11.1 Modality LUT
 * (RescaleSlope/Intercept) and C.7.6.16 Multi-frame Functional Groups (Enhanced MR, A.36.2:
 * per-frame Plane Position, Plane Orientation, Pixel Measures and Pixel Value Transformation,
 * shared when not per frame).
 *
 * A path (file, directory, DICOMDIR) is scanned header by header (DCMTK stops before the pixel
 * data): every image frame becomes an entry with its series, size and geometry. A volume is one
 * series: its frames are sorted by d = n . IPP, n = row x column direction (as dcm2niix and
 * dicom2nifti do), checked for one size, one orientation, one pixel spacing and even gaps along n,
 * then the pixel data are read file by file (decoded by DCMTK for compressed transfer syntaxes).
 */
#include "dicom_priv.h"

#include <dirent.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

_Static_assert(MR_DCM_OK == (int)MR_OK && MR_DCM_ERR_INPUT == (int)MR_ERR_INPUT &&
                   MR_DCM_ERR_IO == (int)MR_ERR_IO && MR_DCM_ERR_NOMEM == (int)MR_ERR_NOMEM &&
                   MR_DCM_ERR_INTERNAL == (int)MR_ERR_INTERNAL,
               "dcmtk_shim.h status values must equal mr_status's");

int mr_dcm_error(int status, const char *fmt, ...)
{
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return (int)mr_error_set((mr_status)status, "%s", buf);
}

const uint32_t mr_dicom_identity_tags[] = {T_SPECIFIC_CHARSET,
                                           T_PATIENT_NAME,
                                           T_PATIENT_ID,
                                           T_ISSUER_PATIENT_ID,
                                           T_PATIENT_BIRTH_DATE,
                                           T_PATIENT_SEX,
                                           T_PATIENT_AGE,
                                           T_PATIENT_SIZE,
                                           T_PATIENT_WEIGHT,
                                           T_STUDY_UID,
                                           T_STUDY_DATE,
                                           T_STUDY_TIME,
                                           T_REFERRING_PHYSICIAN,
                                           T_STUDY_ID,
                                           T_ACCESSION,
                                           T_STUDY_DESCRIPTION,
                                           T_FRAME_OF_REFERENCE,
                                           T_POSITION_REFERENCE,
                                           0};

const uint32_t mr_dicom_acquisition_tags[] = {T_SCANNING_SEQUENCE,
                                              T_SEQUENCE_VARIANT,
                                              T_SCAN_OPTIONS,
                                              T_MR_ACQUISITION_TYPE,
                                              T_SEQUENCE_NAME,
                                              T_REPETITION_TIME,
                                              T_ECHO_TIME,
                                              T_INVERSION_TIME,
                                              T_NUMBER_OF_AVERAGES,
                                              T_IMAGING_FREQUENCY,
                                              T_IMAGED_NUCLEUS,
                                              T_ECHO_NUMBERS,
                                              T_FIELD_STRENGTH,
                                              T_ECHO_TRAIN_LENGTH,
                                              T_FLIP_ANGLE,
                                              T_PATIENT_POSITION,
                                              T_BODY_PART,
                                              T_LATERALITY,
                                              0};

/* ---------------------------------------------------------------- attribute lists */

const char *mr_dicom_attrs_get(const mr_dicom_attrs *list, uint32_t tag)
{
    for (size_t i = 0; i < list->count; i++)
        if (list->attr[i].tag == tag) return list->attr[i].value;
    return NULL;
}

mr_status mr_dicom_attrs_set(mr_dicom_attrs *list, uint32_t tag, const char *value)
{
    size_t i = 0;
    if (strlen(value) >= MR_DICOM_VALUE_SIZE)
        return mr_error_set(MR_ERR_INTERNAL,
                            "DICOM (%04X,%04X): value of %zu characters is too long", tag >> 16,
                            tag & 0xffff, strlen(value));
    while (i < list->count && list->attr[i].tag != tag)
        i++;
    if (i == list->count) {
        if (list->count == MR_DICOM_MAX_ATTRS)
            return mr_error_set(MR_ERR_INTERNAL, "DICOM attribute list full (%d)",
                                MR_DICOM_MAX_ATTRS);
        list->count++;
    }
    list->attr[i].tag = tag;
    snprintf(list->attr[i].value, sizeof list->attr[i].value, "%s", value);
    return MR_OK;
}

void mr_dicom_attrs_remove(mr_dicom_attrs *list, uint32_t tag)
{
    for (size_t i = 0; i < list->count; i++)
        if (list->attr[i].tag == tag) {
            memmove(&list->attr[i], &list->attr[i + 1],
                    (list->count - i - 1) * sizeof list->attr[0]);
            list->count--;
            return;
        }
}

/* Copy the listed attributes present (non-empty) in `it` into list (values too long are skipped).
 */
static void attrs_copy(mr_dicom_attrs *list, const mr_dcm_item *it, const uint32_t *tags)
{
    char buf[1024];
    for (const uint32_t *t = tags; *t; t++)
        if (mr_dcm_get_string(it, *t, buf, sizeof buf) && strlen(buf) < MR_DICOM_VALUE_SIZE)
            mr_dicom_attrs_set(list, *t, buf);
}

/* ---------------------------------------------------------------- the scan */

typedef struct {
    char *path;
    size_t series; /* index into set->series */
    char sop_class[MR_DICOM_UID_SIZE];
    char sop_instance[MR_DICOM_UID_SIZE];
    char modality[17];
} dicom_file;

typedef struct {
    size_t file; /* index into set->files */
    long frame;  /* 1-based frame of a multi-frame file; 0 for a single-frame one */
    size_t rows, cols;
    int has_ipp, has_iop, has_spacing;
    double ipp[3], iop[6], spacing[2];
    double thickness, between; /* SliceThickness, SpacingBetweenSlices (0 when absent) */
    double slope, intercept;
    double d;      /* position along the series normal (set when reading) */
    size_t series; /* index into set->series: the volume this image belongs to */
    long echo;     /* EchoNumbers (first value), -1 when absent */
    double te;     /* EchoTime / EffectiveEchoTime (ms), -1 when absent */
    long tpos;     /* TemporalPositionIdentifier / TemporalPositionIndex, -1 when absent */
} dicom_image;

struct mr_dicom_set {
    dicom_file *files;
    size_t nfiles, cap_files;
    dicom_image *images;
    size_t nimages, cap_images;
    mr_dicom_series_info *series;
    size_t nseries, cap_series;
    size_t skipped;
};

static mr_status grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return MR_OK;
    size_t n = *cap ? *cap * 2 : 16;
    while (n < need)
        n *= 2;
    void *q = realloc(*p, n * elem);
    if (!q) return mr_error_set(MR_ERR_NOMEM, "out of memory scanning DICOM files");
    *p = q;
    *cap = n;
    return MR_OK;
}

/* Numbers of a multi-valued attribute; 1 when all `n` were read. */
static int get_numbers(const mr_dcm_item *it, uint32_t tag, double *v, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        if (!mr_dcm_get_number(it, tag, i, &v[i])) return 0;
    return 1;
}

/* An attribute of a functional group macro: the per-frame item's sequence first, then the shared.
 */
static const mr_dcm_item *fg_find(const mr_dcm_item *frame_fg, const mr_dcm_item *shared_fg,
                                  uint32_t seq, uint32_t tag)
{
    const mr_dcm_item *it = frame_fg ? mr_dcm_seq_item(frame_fg, seq, 0) : NULL;
    if (it && mr_dcm_has(it, tag)) return it;
    it = shared_fg ? mr_dcm_seq_item(shared_fg, seq, 0) : NULL;
    if (it && mr_dcm_has(it, tag)) return it;
    return NULL;
}

/* Geometry and scaling of one image from the item(s) holding the image plane and modality LUT
 * attributes (the dataset for single-frame files; functional group items for multi-frame). */
static void image_fill(dicom_image *im, const mr_dcm_item *plane_pos, const mr_dcm_item *plane_ori,
                       const mr_dcm_item *measures, const mr_dcm_item *transform)
{
    im->has_ipp = plane_pos && get_numbers(plane_pos, T_IPP, im->ipp, 3);
    im->has_iop = plane_ori && get_numbers(plane_ori, T_IOP, im->iop, 6);
    im->has_spacing = measures && get_numbers(measures, T_PIXEL_SPACING, im->spacing, 2) &&
                      im->spacing[0] > 0 && im->spacing[1] > 0;
    im->thickness = 0;
    im->between = 0;
    if (measures) {
        mr_dcm_get_number(measures, T_SLICE_THICKNESS, 0, &im->thickness);
        mr_dcm_get_number(measures, T_SPACING_BETWEEN_SLICES, 0, &im->between);
    }
    im->slope = 1;
    im->intercept = 0;
    if (transform) {
        if (!mr_dcm_get_number(transform, T_RESCALE_SLOPE, 0, &im->slope) || im->slope == 0)
            im->slope = 1;
        mr_dcm_get_number(transform, T_RESCALE_INTERCEPT, 0, &im->intercept);
    }
}

/* Echo and time point of an image: from the dataset (single-frame) or from the per-frame / shared
 * MR Echo and Frame Content functional groups (Enhanced MR, PS3.3 C.8.13.5.2, C.7.6.16.2.2). */
static void echo_fill(dicom_image *im, const mr_dcm_item *ds, const mr_dcm_item *frame_fg,
                      const mr_dcm_item *shared_fg)
{
    double v;
    im->echo = -1;
    im->te = -1;
    im->tpos = -1;
    if (ds) {
        if (mr_dcm_get_number(ds, T_ECHO_NUMBERS, 0, &v)) im->echo = (long)v;
        if (mr_dcm_get_number(ds, T_ECHO_TIME, 0, &v) && v >= 0) im->te = v;
        if (mr_dcm_get_number(ds, T_TEMPORAL_POSITION_ID, 0, &v)) im->tpos = (long)v;
        return;
    }
    const mr_dcm_item *it = fg_find(frame_fg, shared_fg, T_MR_ECHO_SEQ, T_EFFECTIVE_ECHO_TIME);
    if (it && mr_dcm_get_number(it, T_EFFECTIVE_ECHO_TIME, 0, &v) && v >= 0) im->te = v;
    it = fg_find(frame_fg, NULL, T_FRAME_CONTENT_SEQ, T_TEMPORAL_POSITION_INDEX);
    if (it && mr_dcm_get_number(it, T_TEMPORAL_POSITION_INDEX, 0, &v)) im->tpos = (long)v;
}

static mr_status series_index(size_t *out, mr_dicom_set *set, const mr_dcm_item *ds,
                              const dicom_file *f, size_t rows, size_t cols, int enhanced)
{
    char uid[MR_DICOM_UID_SIZE];
    double num;
    mr_status st;
    mr_dcm_get_string(ds, T_SERIES_UID, uid, sizeof uid);
    for (size_t i = 0; i < set->nseries; i++)
        if (!strcmp(set->series[i].series_uid, uid)) {
            set->series[i].files++;
            *out = i;
            return MR_OK;
        }
    if ((st = grow((void **)&set->series, &set->cap_series, set->nseries + 1,
                   sizeof *set->series)) != MR_OK)
        return st;
    mr_dicom_series_info *s = &set->series[set->nseries];
    memset(s, 0, sizeof *s);
    snprintf(s->series_uid, sizeof s->series_uid, "%s", uid);
    mr_dcm_get_string(ds, T_STUDY_UID, s->study_uid, sizeof s->study_uid);
    snprintf(s->sop_class_uid, sizeof s->sop_class_uid, "%s", f->sop_class);
    snprintf(s->modality, sizeof s->modality, "%s", f->modality);
    mr_dcm_get_string(ds, T_SERIES_DESCRIPTION, s->description, sizeof s->description);
    s->series_number = mr_dcm_get_number(ds, T_SERIES_NUMBER, 0, &num) ? (long)num : -1;
    mr_dcm_get_string(ds, T_PATIENT_NAME, s->patient_name, sizeof s->patient_name);
    mr_dcm_get_string(ds, T_PATIENT_ID, s->patient_id, sizeof s->patient_id);
    mr_dcm_get_string(ds, T_PATIENT_BIRTH_DATE, s->patient_birth_date,
                      sizeof s->patient_birth_date);
    mr_dcm_get_string(ds, T_PATIENT_SEX, s->patient_sex, sizeof s->patient_sex);
    s->files = 1;
    s->rows = rows;
    s->cols = cols;
    s->enhanced = enhanced;
    *out = set->nseries++;
    return MR_OK;
}

/* Add one file. strict: a single file named by the user (not DICOM / not an image is an error);
 * otherwise such files are counted as skipped. */
static mr_status scan_file(mr_dicom_set *set, const char *path, int strict)
{
    mr_dcm_file *df = NULL;
    mr_dcm_item *ds;
    char buf[256];
    double v;
    size_t rows, cols, nframes = 1, sidx;
    int enhanced;
    mr_status st = (mr_status)mr_dcm_file_load(&df, path, 1);
    if (st != MR_OK) {
        if (strict || st == MR_ERR_NOMEM) return st;
        MR_DEBUG("%s: skipped: %s", path, mr_error_message());
        mr_error_clear();
        set->skipped++;
        return MR_OK;
    }
    ds = mr_dcm_file_dataset(df);
    mr_dcm_get_string(mr_dcm_file_meta(df), T_MEDIA_SOP_CLASS, buf, sizeof buf);
    if (!strcmp(buf, MR_UID_MEDIA_DIRECTORY) || mr_dcm_has(ds, T_DIR_RECORD_SEQ)) {
        mr_dcm_file_free(df);
        if (strict) return mr_error_set(MR_ERR_INPUT, "%s: a DICOMDIR, not an image", path);
        set->skipped++; /* a DICOMDIR met while walking a folder that has no top-level one */
        return MR_OK;
    }
    rows = mr_dcm_get_number(ds, T_ROWS, 0, &v) && v >= 1 ? (size_t)v : 0;
    cols = mr_dcm_get_number(ds, T_COLUMNS, 0, &v) && v >= 1 ? (size_t)v : 0;
    if (!rows || !cols) {
        mr_dcm_get_string(ds, T_SOP_CLASS, buf, sizeof buf);
        mr_dcm_file_free(df);
        if (strict)
            return mr_error_set(MR_ERR_INPUT,
                                "%s: not an image: no (0028,0010) Rows / (0028,0011) Columns "
                                "(SOP class %s)",
                                path, buf[0] ? buf : "missing");
        set->skipped++;
        return MR_OK;
    }
    if (!mr_dcm_get_string(ds, T_SERIES_UID, buf, sizeof buf)) {
        mr_dcm_file_free(df);
        if (strict) return mr_error_set(MR_ERR_INPUT, "%s: no (0020,000E) SeriesInstanceUID", path);
        MR_WARN("%s: skipped: no (0020,000E) SeriesInstanceUID", path);
        set->skipped++;
        return MR_OK;
    }
    if (mr_dcm_get_number(ds, T_NUMBER_OF_FRAMES, 0, &v)) {
        if (v < 1 || v > 1e6) {
            mr_dcm_file_free(df);
            return mr_error_set(MR_ERR_INPUT,
                                "%s: (0028,0008) NumberOfFrames: expected >= 1, found %g", path, v);
        }
        nframes = (size_t)v;
    }
    enhanced =
        mr_dcm_seq_count(ds, T_PER_FRAME_FG_SEQ) > 0 || mr_dcm_seq_count(ds, T_SHARED_FG_SEQ) > 0;
    if (enhanced && mr_dcm_seq_count(ds, T_PER_FRAME_FG_SEQ) < nframes) {
        mr_dcm_file_free(df);
        return mr_error_set(MR_ERR_INPUT,
                            "%s: (5200,9230) PerFrameFunctionalGroupsSequence: expected %zu items "
                            "(NumberOfFrames), found %zu",
                            path, nframes, mr_dcm_seq_count(ds, T_PER_FRAME_FG_SEQ));
    }

    st = grow((void **)&set->files, &set->cap_files, set->nfiles + 1, sizeof *set->files);
    if (st == MR_OK)
        st = grow((void **)&set->images, &set->cap_images, set->nimages + nframes,
                  sizeof *set->images);
    if (st != MR_OK) {
        mr_dcm_file_free(df);
        return st;
    }
    dicom_file *f = &set->files[set->nfiles];
    memset(f, 0, sizeof *f);
    f->path = strdup(path);
    if (!f->path) {
        mr_dcm_file_free(df);
        return mr_error_set(MR_ERR_NOMEM, "out of memory scanning DICOM files");
    }
    mr_dcm_get_string(ds, T_SOP_CLASS, f->sop_class, sizeof f->sop_class);
    mr_dcm_get_string(ds, T_SOP_INSTANCE, f->sop_instance, sizeof f->sop_instance);
    mr_dcm_get_string(ds, T_MODALITY, f->modality, sizeof f->modality);
    if ((st = series_index(&sidx, set, ds, f, rows, cols, enhanced)) != MR_OK) {
        free(f->path);
        mr_dcm_file_free(df);
        return st;
    }
    f->series = sidx;
    set->series[sidx].images += nframes;
    for (size_t k = 0; k < nframes; k++) {
        dicom_image *im = &set->images[set->nimages + k];
        memset(im, 0, sizeof *im);
        im->file = set->nfiles;
        im->rows = rows;
        im->cols = cols;
        im->series = sidx;
        echo_fill(im, enhanced ? NULL : ds,
                  enhanced ? mr_dcm_seq_item(ds, T_PER_FRAME_FG_SEQ, k) : NULL,
                  enhanced ? mr_dcm_seq_item(ds, T_SHARED_FG_SEQ, 0) : NULL);
        if (enhanced) {
            const mr_dcm_item *pf = mr_dcm_seq_item(ds, T_PER_FRAME_FG_SEQ, k);
            const mr_dcm_item *sh = mr_dcm_seq_item(ds, T_SHARED_FG_SEQ, 0);
            im->frame = (long)k + 1;
            image_fill(im, fg_find(pf, sh, T_PLANE_POSITION_SEQ, T_IPP),
                       fg_find(pf, sh, T_PLANE_ORIENTATION_SEQ, T_IOP),
                       fg_find(pf, sh, T_PIXEL_MEASURES_SEQ, T_PIXEL_SPACING),
                       fg_find(pf, sh, T_PIXEL_VALUE_TRANSFORM_SEQ, T_RESCALE_SLOPE));
            /* thickness may sit in a Pixel Measures item without PixelSpacing */
            if (!im->thickness) {
                const mr_dcm_item *m = fg_find(pf, sh, T_PIXEL_MEASURES_SEQ, T_SLICE_THICKNESS);
                if (m) mr_dcm_get_number(m, T_SLICE_THICKNESS, 0, &im->thickness);
            }
        } else {
            im->frame = nframes > 1 ? (long)k + 1 : 0;
            image_fill(im, ds, ds, ds, ds);
        }
    }
    set->nimages += nframes;
    set->nfiles++;
    mr_dcm_file_free(df);
    return MR_OK;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every regular file under dir (hidden entries skipped), depth-first in name order. */
static mr_status scan_dir(mr_dicom_set *set, const char *dir, int depth)
{
    DIR *d;
    struct dirent *e;
    char **names = NULL;
    size_t n = 0, cap = 0;
    mr_status st = MR_OK;
    if (depth > 16) return mr_error_set(MR_ERR_INPUT, "%s: folders nested too deep", dir);
    if (!(d = opendir(dir))) return mr_error_set(MR_ERR_INPUT, "%s: cannot open folder", dir);
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        if ((st = grow((void **)&names, &cap, n + 1, sizeof *names)) != MR_OK) break;
        if (!(names[n] = strdup(e->d_name))) {
            st = mr_error_set(MR_ERR_NOMEM, "out of memory scanning %s", dir);
            break;
        }
        n++;
    }
    closedir(d);
    if (n) qsort(names, n, sizeof *names, cmp_names);
    for (size_t i = 0; i < n && st == MR_OK; i++) {
        char path[4096];
        if (snprintf(path, sizeof path, "%s/%s", dir, names[i]) >= (int)sizeof path) continue;
        if (mr_path_is_dir(path))
            st = scan_dir(set, path, depth + 1);
        else if (mr_path_is_file(path))
            st = scan_file(set, path, 0);
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return st;
}

/* A DICOMDIR: the files its records reference (ReferencedFileID, relative to its folder). */
static mr_status scan_dicomdir(mr_dicom_set *set, const char *path)
{
    mr_dcm_file *df = NULL;
    char base[4096], id[1024];
    mr_status st = (mr_status)mr_dcm_file_load(&df, path, 0);
    if (st != MR_OK) return st;
    const mr_dcm_item *ds = mr_dcm_file_dataset(df);
    size_t n = mr_dcm_seq_count(ds, T_DIR_RECORD_SEQ), refs = 0;
    snprintf(base, sizeof base, "%s", path);
    char *slash = strrchr(base, '/');
    if (slash)
        *slash = '\0';
    else
        strcpy(base, ".");
    for (size_t i = 0; i < n && st == MR_OK; i++) {
        const mr_dcm_item *rec = mr_dcm_seq_item(ds, T_DIR_RECORD_SEQ, i);
        char file[4096];
        if (!mr_dcm_get_string(rec, T_REFERENCED_FILE_ID, id, sizeof id)) continue;
        for (char *p = id; *p; p++)
            if (*p == '\\') *p = '/';
        refs++;
        snprintf(file, sizeof file, "%s/%s", base, id);
        if (!mr_path_is_file(file)) { /* media written in upper case, copied in lower case */
            size_t off = strlen(base) + 1;
            for (char *p = file + off; *p; p++)
                if (*p >= 'A' && *p <= 'Z') *p = (char)(*p - 'A' + 'a');
        }
        if (!mr_path_is_file(file)) {
            MR_WARN("%s: record %zu: referenced file %s is missing", path, i + 1, id);
            set->skipped++;
            continue;
        }
        st = scan_file(set, file, 0);
    }
    mr_dcm_file_free(df);
    if (st == MR_OK && refs == 0)
        st = mr_error_set(MR_ERR_INPUT,
                          "%s: DICOMDIR: (0004,1220) DirectoryRecordSequence "
                          "references no files",
                          path);
    return st;
}

/* ---------------------------------------------------------------- multi-echo / multi-volume */

/* What tells volumes of one series apart (PS3.3 C.8.3.1, C.7.6.2): time point, echo number, echo
 * time. Two images with equal keys belong to one volume. */
typedef struct {
    long tpos, echo;
    double te;
} volume_key;

static int key_cmp(const volume_key *a, const volume_key *b)
{
    if (a->tpos != b->tpos) return a->tpos < b->tpos ? -1 : 1;
    if (a->echo != b->echo) return a->echo < b->echo ? -1 : 1;
    if (fabs(a->te - b->te) > 1e-3) return a->te < b->te ? -1 : 1;
    return 0;
}

static int key_qsort(const void *a, const void *b)
{
    return key_cmp(a, b);
}

static volume_key key_of(const dicom_image *im)
{
    volume_key k = {im->tpos, im->echo, im->te};
    return k;
}

/* Split every series whose images have more than one volume key into one entry per key (as
 * dcm2niix does for echoes: _e1, _e2), in key order, and count files and images per entry. */
static mr_status split_volumes(mr_dicom_set *set)
{
    mr_dicom_series_info *out = NULL;
    size_t nout = 0, cap = 0, *remap = NULL;
    volume_key *keys = NULL;
    mr_status st = MR_OK;
    if (!set->nimages) return MR_OK;
    if (!(remap = mr_malloc(set->nimages * sizeof *remap)) ||
        !(keys = mr_malloc(set->nimages * sizeof *keys))) {
        st = MR_ERR_NOMEM;
        goto done;
    }
    for (size_t s = 0; s < set->nseries && st == MR_OK; s++) {
        size_t nk = 0;
        for (size_t i = 0; i < set->nimages; i++) {
            if (set->images[i].series != s) continue;
            volume_key k = key_of(&set->images[i]);
            size_t j = 0;
            while (j < nk && key_cmp(&keys[j], &k))
                j++;
            if (j == nk) keys[nk++] = k;
        }
        if (nk == 0) nk = 1; /* (a series always has images) */
        qsort(keys, nk, sizeof *keys, key_qsort);
        if ((st = grow((void **)&out, &cap, nout + nk, sizeof *out)) != MR_OK) break;
        for (size_t v = 0; v < nk; v++) {
            mr_dicom_series_info *e = &out[nout + v];
            *e = set->series[s];
            e->volume = nk > 1 ? v + 1 : 0;
            e->volumes = nk;
            e->label[0] = '\0';
            e->echo_number = keys[v].echo;
            e->echo_time = keys[v].te;
            e->temporal_position = keys[v].tpos;
            if (nk == 1) continue; /* one volume: the scan's counts stand */
            e->files = e->images = 0;
            /* the volumes of this time point (keys are sorted by time point first) */
            size_t g0 = v, g1 = v;
            while (g0 > 0 && keys[g0 - 1].tpos == keys[v].tpos)
                g0--;
            while (g1 + 1 < nk && keys[g1 + 1].tpos == keys[v].tpos)
                g1++;
            int echo_distinct = 1, any_time = keys[0].tpos != keys[nk - 1].tpos;
            for (size_t a = g0; a <= g1; a++)
                for (size_t b = a + 1; b <= g1; b++)
                    echo_distinct &= keys[a].echo != keys[b].echo;
            for (size_t a = g0; a <= g1; a++)
                echo_distinct &= keys[a].echo >= 0;
            long echo_label = echo_distinct ? keys[v].echo : (long)(v - g0 + 1);
            long time_label = keys[v].tpos;
            if (any_time && keys[0].tpos < 0) { /* some images lack the time point: rank them */
                time_label = 1;
                for (size_t a = 1; a <= v; a++)
                    time_label += keys[a].tpos != keys[a - 1].tpos;
            }
            if (any_time && g1 > g0)
                snprintf(e->label, sizeof e->label, "time%ld_echo%ld", time_label, echo_label);
            else if (any_time)
                snprintf(e->label, sizeof e->label, "time%ld", time_label);
            else
                snprintf(e->label, sizeof e->label, "echo%ld", echo_label);
        }
        for (size_t i = 0; i < set->nimages; i++) {
            if (set->images[i].series != s) continue;
            volume_key k = key_of(&set->images[i]);
            size_t v = 0;
            while (v + 1 < nk && key_cmp(&keys[v], &k))
                v++;
            remap[i] = nout + v;
            if (nk == 1) continue;
            mr_dicom_series_info *e = &out[nout + v];
            e->images++;
            /* files: count each file once per volume */
            int seen = 0;
            for (size_t j = 0; j < i && !seen; j++)
                seen = set->images[j].file == set->images[i].file && set->images[j].series == s &&
                       remap[j] == remap[i];
            if (!seen) e->files++;
        }
        nout += nk;
    }
    if (st == MR_OK) {
        for (size_t i = 0; i < set->nimages; i++)
            set->images[i].series = remap[i];
        free(set->series);
        set->series = out;
        set->nseries = nout;
        set->cap_series = cap;
        out = NULL;
    }
done:
    free(out);
    free(remap);
    free(keys);
    return st;
}

const char *mr_dicom_series_spec(char buf[MR_DICOM_SPEC_SIZE], const mr_dicom_series_info *s)
{
    snprintf(buf, MR_DICOM_SPEC_SIZE, "%s%s%s", s->series_uid, s->label[0] ? ":" : "", s->label);
    return buf;
}

static int is_dicomdir_name(const char *path)
{
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    return !strcasecmp(b, "DICOMDIR");
}

mr_status mr_dicom_set_open(mr_dicom_set **out, const char *path)
{
    mr_dicom_set *set;
    mr_status st;
    char dd[4096];
    *out = NULL;
    if (!mr_path_is_dir(path) && !mr_path_is_file(path))
        return mr_error_set(MR_ERR_INPUT, "%s: no such file or folder", path);
    if (!(set = mr_calloc(1, sizeof *set))) return MR_ERR_NOMEM;
    if (mr_path_is_dir(path)) {
        snprintf(dd, sizeof dd, "%s/DICOMDIR", path);
        if (mr_path_is_file(dd))
            st = scan_dicomdir(set, dd);
        else
            st = scan_dir(set, path, 0);
    } else if (is_dicomdir_name(path)) {
        st = scan_dicomdir(set, path);
    } else {
        st = scan_file(set, path, 1);
    }
    if (st == MR_OK) st = split_volumes(set);
    if (st == MR_OK && set->nseries == 0)
        st = mr_error_set(MR_ERR_INPUT,
                          "%s: no DICOM images found (%zu file(s) skipped: not DICOM "
                          "or not images)",
                          path, set->skipped);
    if (st != MR_OK) {
        mr_dicom_set_close(set);
        return st;
    }
    *out = set;
    return MR_OK;
}

size_t mr_dicom_set_count(const mr_dicom_set *set)
{
    return set->nseries;
}
size_t mr_dicom_set_skipped(const mr_dicom_set *set)
{
    return set->skipped;
}

const mr_dicom_series_info *mr_dicom_set_series(const mr_dicom_set *set, size_t index)
{
    return index < set->nseries ? &set->series[index] : NULL;
}

/* One line per entry for the "choose one" messages (only entries of `uid` when it is not NULL). */
static void list_entries(char *list, size_t size, const mr_dicom_set *set, const char *uid)
{
    char spec[MR_DICOM_SPEC_SIZE], te[48];
    size_t used = 0;
    list[0] = '\0';
    for (size_t i = 0; i < set->nseries && used < size; i++) {
        const mr_dicom_series_info *s = &set->series[i];
        if (uid && strcmp(uid, s->series_uid)) continue;
        te[0] = '\0';
        if (s->volume && s->echo_time >= 0) snprintf(te, sizeof te, ", TE %g ms", s->echo_time);
        int n = snprintf(list + used, size - used, "\n  %s  (#%ld %s, %s, %zu image(s) %zux%zu%s)",
                         mr_dicom_series_spec(spec, s), s->series_number,
                         s->description[0] ? s->description : "-",
                         s->modality[0] ? s->modality : "?", s->images, s->rows, s->cols, te);
        if (n > 0) used += (size_t)n;
    }
}

mr_status mr_dicom_set_select(size_t *index, const mr_dicom_set *set, const char *series_uid)
{
    char list[4096], uid[MR_DICOM_SPEC_SIZE] = "";
    const char *label = NULL;
    size_t matches = 0, first = 0;
    if (series_uid) {
        snprintf(uid, sizeof uid, "%s", series_uid);
        char *colon = strchr(uid, ':');
        if (colon) {
            *colon = '\0';
            label = colon + 1;
        }
    }
    for (size_t i = 0; i < set->nseries; i++) {
        const mr_dicom_series_info *s = &set->series[i];
        if (series_uid && strcmp(uid, s->series_uid)) continue;
        if (label && strcmp(label, s->label)) continue;
        if (!matches++) first = i;
    }
    if (series_uid && matches == 1) {
        *index = first;
        return MR_OK;
    }
    if (!series_uid && set->nseries == 1) {
        *index = 0;
        return MR_OK;
    }
    if (series_uid && matches > 1) { /* a bare UID of a series split into volumes */
        list_entries(list, sizeof list, set, uid);
        return mr_error_set(MR_ERR_INPUT,
                            "series %s holds %zu volumes (echoes or time points with images at "
                            "the same positions); choose one (--series UID:LABEL):%s",
                            uid, matches, list);
    }
    list_entries(list, sizeof list, set, NULL);
    if (series_uid)
        return mr_error_set(MR_ERR_INPUT, "series %s not found; the series found are:%s",
                            series_uid, list);
    if (set->nseries > 1 && set->series[0].volumes == set->nseries)
        return mr_error_set(MR_ERR_INPUT,
                            "series %s holds %zu volumes (echoes or time points with images at "
                            "the same positions) where one volume is needed; choose one "
                            "(--series UID:LABEL):%s",
                            set->series[0].series_uid, set->nseries, list);
    return mr_error_set(MR_ERR_INPUT,
                        "found %zu series where one volume is needed; choose one with its UID "
                        "(--series UID):%s",
                        set->nseries, list);
}

void mr_dicom_set_close(mr_dicom_set *set)
{
    if (!set) return;
    for (size_t i = 0; i < set->nfiles; i++)
        free(set->files[i].path);
    free(set->files);
    free(set->images);
    free(set->series);
    free(set);
}

/* ---------------------------------------------------------------- geometry */

static void cross(double out[3], const double a[3], const double b[3])
{
    out[0] = a[1] * b[2] - a[2] * b[1];
    out[1] = a[2] * b[0] - a[0] * b[2];
    out[2] = a[0] * b[1] - a[1] * b[0];
}

static double dot(const double a[3], const double b[3])
{
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
}

static void normalise(double v[3])
{
    double n = sqrt(dot(v, v));
    if (n > 0)
        for (int i = 0; i < 3; i++)
            v[i] /= n;
}

void mr_dicom_geometry_affine(double A[4][4], const mr_dicom_geometry *g)
{
    for (int r = 0; r < 3; r++) {
        double sign = r < 2 ? -1.0 : 1.0; /* LPS -> RAS */
        /* (+ 0.0 turns -0.0 into +0.0) */
        A[r][0] = sign * g->row_dir[r] * g->pixel_spacing[1] + 0.0;
        A[r][1] = sign * g->col_dir[r] * g->pixel_spacing[0] + 0.0;
        A[r][2] = sign * g->normal[r] * g->slice_spacing + 0.0;
        A[r][3] = sign * g->origin[r] + 0.0;
    }
    A[3][0] = A[3][1] = A[3][2] = 0;
    A[3][3] = 1;
}

static void put16(unsigned char *h, int off, short v)
{
    memcpy(h + off, &v, 2);
}
static void put32(unsigned char *h, int off, int v)
{
    memcpy(h + off, &v, 4);
}
static void putf(unsigned char *h, int off, float v)
{
    memcpy(h + off, &v, 4);
}

void mr_dicom_geometry_nifti(mr_nifti_meta *meta, const mr_dicom_geometry *g)
{
    unsigned char *h = meta->raw;
    double A[4][4], q[3], qfac, b, c, d;
    double pix[3] = {g->pixel_spacing[1], g->pixel_spacing[0], g->slice_spacing};
    memset(meta, 0, sizeof *meta);
    mr_dicom_geometry_affine(A, g);
    /* rotation quaternion; a left-handed frame has qfac -1 */
    mr_nifti_quatern_from_affine(q, &qfac, A);
    b = q[0], c = q[1], d = q[2];
    /* NIfTI-1 header fields (nifti1.h offsets) */
    put32(h, 0, 348);
    h[38] = 'r';
    put16(h, 40, 3);
    put16(h, 42, (short)g->cols);
    put16(h, 44, (short)g->rows);
    put16(h, 46, (short)g->slices);
    for (int i = 4; i < 8; i++)
        put16(h, 40 + 2 * i, 1);
    put16(h, 70, 16); /* float32 */
    put16(h, 72, 32);
    putf(h, 76, (float)qfac);
    for (int i = 0; i < 3; i++)
        putf(h, 80 + 4 * i, (float)pix[i]);
    putf(h, 108, 352.0f);
    putf(h, 112, 1.0f);
    h[123] = 2; /* mm */
    snprintf((char *)h + 148, 80, "mrpipe %s from DICOM", MR_VERSION_STRING);
    put16(h, 252, 1); /* qform_code scanner */
    put16(h, 254, 1); /* sform_code scanner */
    putf(h, 256, (float)b);
    putf(h, 260, (float)c);
    putf(h, 264, (float)d);
    for (int i = 0; i < 3; i++)
        putf(h, 268 + 4 * i, (float)A[i][3]);
    for (int r = 0; r < 3; r++)
        for (int k = 0; k < 4; k++)
            putf(h, 280 + 4 * (4 * r + k), (float)A[r][k]);
    memcpy(h + 344, "n+1", 4);
    meta->valid = 1;
    memcpy(meta->affine, A, sizeof A);
    for (int i = 0; i < 3; i++)
        meta->pixdim[i] = (float)pix[i];
}

/* ---------------------------------------------------------------- reading a volume */

static const char *file_of(const mr_dicom_set *set, const dicom_image *im)
{
    return set->files[im->file].path;
}

/* frame description for messages: "file" or "file frame 3" */
static const char *where(char *buf, size_t n, const mr_dicom_set *set, const dicom_image *im)
{
    if (im->frame)
        snprintf(buf, n, "%s frame %ld", file_of(set, im), im->frame);
    else
        snprintf(buf, n, "%s", file_of(set, im));
    return buf;
}

static int cmp_d(const void *a, const void *b)
{
    const dicom_image *x = *(dicom_image *const *)a, *y = *(dicom_image *const *)b;
    if (x->d < y->d) return -1;
    if (x->d > y->d) return 1;
    return 0;
}

/* Check one size, orientation and pixel spacing; sort along the normal; check the gaps. */
static mr_status series_geometry(mr_dicom_geometry *g, dicom_image **ims, size_t n,
                                 const mr_dicom_set *set)
{
    char w1[4200], w2[4200];
    const dicom_image *first = ims[0];
    memset(g, 0, sizeof *g);
    for (size_t k = 1; k < n; k++) {
        const dicom_image *im = ims[k];
        if (im->rows != first->rows || im->cols != first->cols)
            return mr_error_set(MR_ERR_INPUT,
                                "%s: inconsistent slice geometry: (0028,0010) Rows x (0028,0011) "
                                "Columns %zu x %zu, but %zu x %zu in %s",
                                where(w1, sizeof w1, set, im), im->rows, im->cols, first->rows,
                                first->cols, where(w2, sizeof w2, set, first));
    }
    if (n > 1)
        for (size_t k = 0; k < n; k++) {
            if (!ims[k]->has_ipp)
                return mr_error_set(MR_ERR_INPUT,
                                    "%s: no (0020,0032) ImagePositionPatient: slices cannot be "
                                    "ordered",
                                    where(w1, sizeof w1, set, ims[k]));
            if (!ims[k]->has_iop)
                return mr_error_set(MR_ERR_INPUT,
                                    "%s: no (0020,0037) ImageOrientationPatient: slices cannot be "
                                    "ordered",
                                    where(w1, sizeof w1, set, ims[k]));
        }
    g->rows = first->rows;
    g->cols = first->cols;
    g->slices = n;
    if (first->has_iop) {
        memcpy(g->row_dir, first->iop, sizeof g->row_dir);
        memcpy(g->col_dir, first->iop + 3, sizeof g->col_dir);
        normalise(g->row_dir);
        normalise(g->col_dir);
        if (fabs(dot(g->row_dir, g->col_dir)) > 1e-3 || dot(g->row_dir, g->row_dir) < 0.5 ||
            dot(g->col_dir, g->col_dir) < 0.5)
            return mr_error_set(MR_ERR_INPUT,
                                "%s: (0020,0037) ImageOrientationPatient: expected two orthogonal "
                                "unit vectors, found %g\\%g\\%g\\%g\\%g\\%g",
                                where(w1, sizeof w1, set, first), first->iop[0], first->iop[1],
                                first->iop[2], first->iop[3], first->iop[4], first->iop[5]);
    } else {
        MR_WARN("%s: no (0020,0037) ImageOrientationPatient: assuming axial",
                where(w1, sizeof w1, set, first));
        g->row_dir[0] = 1;
        g->col_dir[1] = 1;
    }
    cross(g->normal, g->row_dir, g->col_dir);
    normalise(g->normal);
    if (first->has_spacing) {
        g->pixel_spacing[0] = first->spacing[0];
        g->pixel_spacing[1] = first->spacing[1];
    } else {
        MR_WARN("%s: no (0028,0030) PixelSpacing: assuming 1 mm", where(w1, sizeof w1, set, first));
        g->pixel_spacing[0] = g->pixel_spacing[1] = 1;
    }
    for (size_t k = 1; k < n; k++) {
        const dicom_image *im = ims[k];
        double diff = 0;
        for (int i = 0; i < 6; i++)
            diff = fmax(diff, fabs(im->iop[i] - first->iop[i]));
        if (diff > 1e-4)
            return mr_error_set(
                MR_ERR_INPUT,
                "%s: inconsistent slice geometry: (0020,0037) ImageOrientationPatient "
                "%g\\%g\\%g\\%g\\%g\\%g differs from %s (%g\\%g\\%g\\%g\\%g\\%g)",
                where(w1, sizeof w1, set, im), im->iop[0], im->iop[1], im->iop[2], im->iop[3],
                im->iop[4], im->iop[5], where(w2, sizeof w2, set, first), first->iop[0],
                first->iop[1], first->iop[2], first->iop[3], first->iop[4], first->iop[5]);
        if (im->has_spacing != first->has_spacing ||
            (im->has_spacing &&
             (fabs(im->spacing[0] - first->spacing[0]) > 1e-4 * first->spacing[0] ||
              fabs(im->spacing[1] - first->spacing[1]) > 1e-4 * first->spacing[1])))
            return mr_error_set(MR_ERR_INPUT,
                                "%s: inconsistent slice geometry: (0028,0030) PixelSpacing %g\\%g "
                                "differs from %s (%g\\%g)",
                                where(w1, sizeof w1, set, im), im->spacing[0], im->spacing[1],
                                where(w2, sizeof w2, set, first), first->spacing[0],
                                first->spacing[1]);
    }
    for (size_t k = 0; k < n; k++)
        ims[k]->d = ims[k]->has_ipp ? dot(g->normal, ims[k]->ipp) : 0;
    qsort(ims, n, sizeof *ims, cmp_d);
    if (ims[0]->has_ipp)
        memcpy(g->origin, ims[0]->ipp, sizeof g->origin);
    else
        MR_WARN("%s: no (0020,0032) ImagePositionPatient: origin at 0",
                where(w1, sizeof w1, set, ims[0]));
    g->slice_thickness = ims[0]->thickness;
    if (n == 1) {
        g->slice_spacing = ims[0]->between > 0     ? ims[0]->between
                           : ims[0]->thickness > 0 ? ims[0]->thickness
                                                   : 1;
        return MR_OK;
    }
    double gap0 = ims[1]->d - ims[0]->d, mean = (ims[n - 1]->d - ims[0]->d) / (double)(n - 1);
    double tol_in_plane = 1e-2 * fmin(g->pixel_spacing[0], g->pixel_spacing[1]) + 1e-3;
    for (size_t k = 0; k + 1 < n; k++) {
        double gap = ims[k + 1]->d - ims[k]->d;
        if (gap < 1e-3)
            return mr_error_set(
                MR_ERR_INPUT,
                "%s and %s: inconsistent slice geometry: (0020,0032) "
                "ImagePositionPatient: both at %.4f mm along the slice normal (several "
                "images per position, e.g. echoes or time points, are not one volume)",
                where(w1, sizeof w1, set, ims[k]), where(w2, sizeof w2, set, ims[k + 1]),
                ims[k]->d);
        if (fabs(gap - gap0) > 0.02 * gap0 + 1e-3)
            return mr_error_set(
                MR_ERR_INPUT,
                "%s: inconsistent slice geometry: (0020,0032) ImagePositionPatient: "
                "uneven slice gaps along the normal: %.4f mm to the next slice (%s) "
                "but %.4f mm between the first two (a missing slice?)",
                where(w1, sizeof w1, set, ims[k]), gap, where(w2, sizeof w2, set, ims[k + 1]),
                gap0);
        /* the stack must lie along the normal: no in-plane shift between slices */
        double off[3];
        for (int i = 0; i < 3; i++)
            off[i] =
                ims[k + 1]->ipp[i] - ims[0]->ipp[i] - (ims[k + 1]->d - ims[0]->d) * g->normal[i];
        if (sqrt(dot(off, off)) > tol_in_plane * (double)(k + 1))
            return mr_error_set(
                MR_ERR_INPUT,
                "%s: inconsistent slice geometry: (0020,0032) ImagePositionPatient "
                "is shifted %.4f mm in-plane from the stack of %s (sheared or tilted "
                "stacks are not one volume)",
                where(w1, sizeof w1, set, ims[k + 1]), sqrt(dot(off, off)),
                where(w2, sizeof w2, set, ims[0]));
    }
    g->slice_spacing = mean;
    return MR_OK;
}

/* The pixel module of one file, checked. */
typedef struct {
    int bits_allocated, bits_stored, high_bit, is_signed, monochrome1;
} pixel_format;

static mr_status pixel_format_read(pixel_format *pf, const mr_dcm_item *ds, const char *path)
{
    char buf[64];
    double v;
    if (mr_dcm_get_number(ds, T_SAMPLES_PER_PIXEL, 0, &v) && v != 1)
        return mr_error_set(MR_ERR_INPUT,
                            "%s: (0028,0002) SamplesPerPixel: expected 1 (grey-scale), found %g",
                            path, v);
    mr_dcm_get_string(ds, T_PHOTOMETRIC, buf, sizeof buf);
    if (strcmp(buf, "MONOCHROME2") && strcmp(buf, "MONOCHROME1"))
        return mr_error_set(MR_ERR_INPUT,
                            "%s: (0028,0004) PhotometricInterpretation: expected MONOCHROME1 or "
                            "MONOCHROME2, found '%s'",
                            path, buf);
    pf->monochrome1 = !strcmp(buf, "MONOCHROME1");
    if (!mr_dcm_get_number(ds, T_BITS_ALLOCATED, 0, &v) || (v != 8 && v != 16))
        return mr_error_set(MR_ERR_INPUT,
                            "%s: (0028,0100) BitsAllocated: expected 8 or 16, found %s", path,
                            mr_dcm_has(ds, T_BITS_ALLOCATED) ? "another value" : "none");
    pf->bits_allocated = (int)v;
    pf->bits_stored = mr_dcm_get_number(ds, T_BITS_STORED, 0, &v) ? (int)v : pf->bits_allocated;
    pf->high_bit = mr_dcm_get_number(ds, T_HIGH_BIT, 0, &v) ? (int)v : pf->bits_stored - 1;
    if (pf->bits_stored < 1 || pf->bits_stored > pf->bits_allocated ||
        pf->high_bit < pf->bits_stored - 1 || pf->high_bit >= pf->bits_allocated)
        return mr_error_set(MR_ERR_INPUT,
                            "%s: (0028,0101) BitsStored %d / (0028,0102) HighBit %d do not fit "
                            "BitsAllocated %d",
                            path, pf->bits_stored, pf->high_bit, pf->bits_allocated);
    pf->is_signed = mr_dcm_get_number(ds, T_PIXEL_REPRESENTATION, 0, &v) && v == 1;
    return MR_OK;
}

/* Convert one frame's stored values to real-world values (Modality LUT: slope x v + intercept). */
static void frame_convert(float *out, const void *words, size_t offset, size_t n,
                          const pixel_format *pf, double slope, double intercept)
{
    int shift = pf->high_bit + 1 - pf->bits_stored;
    uint32_t mask = pf->bits_stored >= 32 ? 0xffffffffu : ((1u << pf->bits_stored) - 1u);
    uint32_t sign = 1u << (pf->bits_stored - 1);
    for (size_t p = 0; p < n; p++) {
        uint32_t w = pf->bits_allocated == 16 ? ((const uint16_t *)words)[offset + p]
                                              : ((const uint8_t *)words)[offset + p];
        uint32_t u = (w >> shift) & mask;
        double v = pf->is_signed && (u & sign) ? (double)u - (double)(mask + 1.0) : (double)u;
        out[p] = (float)(slope * v + intercept);
    }
}

mr_status mr_dicom_volume_read(mr_dicom_volume **out, const mr_dicom_set *set, size_t index,
                               int require_mr)
{
    mr_dicom_volume *vol = NULL;
    dicom_image **ims = NULL;
    mr_dcm_file *df = NULL;
    size_t n = 0;
    mr_status st = MR_OK;
    char w1[4200];
    *out = NULL;
    if (index >= set->nseries)
        return mr_error_set(MR_ERR_USAGE, "DICOM series index %zu of %zu", index, set->nseries);
    const mr_dicom_series_info *info = &set->series[index];
    if (!(ims = mr_malloc(info->images * sizeof *ims))) return MR_ERR_NOMEM;
    for (size_t i = 0; i < set->nimages; i++)
        if (set->images[i].series == index) ims[n++] = &set->images[i];
    if (require_mr)
        for (size_t i = 0; i < n; i++) {
            const dicom_file *f = &set->files[ims[i]->file];
            if (strcmp(f->modality, "MR")) {
                st = mr_error_set(MR_ERR_INPUT, "%s: (0008,0060) Modality: expected MR, found '%s'",
                                  f->path, f->modality);
                goto done;
            }
        }
    if (!(vol = mr_calloc(1, sizeof *vol))) {
        st = MR_ERR_NOMEM;
        goto done;
    }
    vol->src.series = *info;
    if ((st = series_geometry(&vol->src.geom, ims, n, set)) != MR_OK) goto done;
    {
        size_t dims[3] = {n, vol->src.geom.rows, vol->src.geom.cols};
        if ((st = mr_array_create(&vol->data, MR_FLOAT32, 3, dims)) != MR_OK) goto done;
    }
    if (!(vol->src.refs = mr_calloc(n, sizeof *vol->src.refs))) {
        st = MR_ERR_NOMEM;
        goto done;
    }
    /* read each file once, filling every slice that comes from it */
    size_t hw = vol->src.geom.rows * vol->src.geom.cols;
    int any_mono1 = 0;
    for (size_t k = 0; k < n && st == MR_OK; k++) {
        size_t fi = ims[k]->file;
        int seen = 0;
        for (size_t j = 0; j < k; j++)
            seen |= ims[j]->file == fi;
        if (seen) continue;
        const char *path = set->files[fi].path;
        pixel_format pf = {0, 0, 0, 0, 0};
        const void *words;
        size_t count;
        if ((st = (mr_status)mr_dcm_file_load(&df, path, 0)) != MR_OK) break;
        const mr_dcm_item *ds = mr_dcm_file_dataset(df);
        if (k == 0) {
            attrs_copy(&vol->src.identity, ds, mr_dicom_identity_tags);
            attrs_copy(&vol->src.acquisition, ds, mr_dicom_acquisition_tags);
        }
        if ((st = pixel_format_read(&pf, ds, path)) != MR_OK) break;
        any_mono1 |= pf.monochrome1;
        if ((st = (mr_status)mr_dcm_pixels(df, path, pf.bits_allocated, &words, &count)) != MR_OK)
            break;
        for (size_t j = k; j < n; j++) {
            if (ims[j]->file != fi) continue;
            size_t frame0 = ims[j]->frame ? (size_t)(ims[j]->frame - 1) : 0;
            if (count < (frame0 + 1) * hw) {
                st = mr_error_set(MR_ERR_INPUT,
                                  "%s: (7FE0,0010) PixelData: %zu values, expected at least %zu "
                                  "(%zu x %zu x frame %zu)",
                                  path, count, (frame0 + 1) * hw, vol->src.geom.rows,
                                  vol->src.geom.cols, frame0 + 1);
                break;
            }
            frame_convert(mr_array_f32(vol->data) + j * hw, words, frame0 * hw, hw, &pf,
                          ims[j]->slope, ims[j]->intercept);
            mr_dicom_ref *r = &vol->src.refs[j];
            snprintf(r->sop_class_uid, sizeof r->sop_class_uid, "%s", set->files[fi].sop_class);
            snprintf(r->sop_instance_uid, sizeof r->sop_instance_uid, "%s",
                     set->files[fi].sop_instance);
            r->frame = ims[j]->frame;
        }
        mr_dcm_file_free(df);
        df = NULL;
    }
    if (st == MR_OK && any_mono1) {
        /* MONOCHROME1: low values are bright; invert so that high signal is high */
        float *x = mr_array_f32(vol->data);
        size_t total = n * hw;
        float lo = x[0], hi = x[0];
        for (size_t p = 1; p < total; p++) {
            lo = fminf(lo, x[p]);
            hi = fmaxf(hi, x[p]);
        }
        for (size_t p = 0; p < total; p++)
            x[p] = hi + lo - x[p];
        MR_INFO("%s: MONOCHROME1 images inverted", where(w1, sizeof w1, set, ims[0]));
    }
done:
    mr_dcm_file_free(df);
    free(ims);
    if (st != MR_OK) {
        mr_dicom_volume_destroy(vol);
        return st;
    }
    *out = vol;
    return MR_OK;
}

void mr_dicom_volume_destroy(mr_dicom_volume *vol)
{
    if (!vol) return;
    mr_array_destroy(vol->data);
    mr_dicom_source_free(&vol->src);
    free(vol);
}

void mr_dicom_source_free(mr_dicom_source *src)
{
    if (!src) return;
    free(src->refs);
    src->refs = NULL;
}

mr_status mr_dicom_source_copy(mr_dicom_source *out, const mr_dicom_source *src)
{
    *out = *src;
    out->refs = NULL;
    if (src->refs) {
        if (!(out->refs = mr_malloc(src->geom.slices * sizeof *out->refs))) return MR_ERR_NOMEM;
        memcpy(out->refs, src->refs, src->geom.slices * sizeof *out->refs);
    }
    return MR_OK;
}
