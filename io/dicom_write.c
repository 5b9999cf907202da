/*
 * dicom_write.c: writing derived series as MR Image Storage (docs/dicom.md).
 *
 * Follows DICOM PS3.3 A.4 (MR Image IOD) and its modules: Patient (C.7.1.1), General Study
 * (C.7.2.1), General Series (C.7.3.1), Frame of Reference (C.7.4.1), General Equipment (C.7.5.1),
 * General Image (C.7.6.1), General Reference (C.12.4: SourceImageSequence, DerivationDescription,
 * ReferencedImageSequence), Image Plane (C.7.6.2), Image Pixel (C.7.6.3), MR Image (C.8.3.1), VOI
 * LUT (C.11.2), SOP Common (C.12.1), Common Instance Reference (C.12.2); UIDs per PS3.5 B.2 (2.25 +
 * the decimal value of a UUID); de-identification per PS3.15 Annex E (Basic Application Level
 * Confidentiality Profile, table E.1-1: the attributes mrpipe carries are replaced (D/Z), removed
 * (X) or given new UIDs (U)).
 *
 * Pixel values: 16 bits with RescaleSlope/Intercept recording the scaling (the MR Image IOD has no
 * Modality LUT module, but readers (DCMTK, pydicom, dcm2niix, nibabel) apply these when present,
 * and dciodvfy reports them as a warning only; docs/dicom.md).
 */
#include "dicom_priv.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---------------------------------------------------------------- UIDs */

mr_status mr_dicom_uid_create(char uid[MR_DICOM_UID_SIZE])
{
    unsigned char b[16];
    char digits[48];
    int nd = 0, fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    ssize_t got = fd >= 0 ? read(fd, b, sizeof b) : -1;
    if (fd >= 0) close(fd);
    if (got != (ssize_t)sizeof b)
        return mr_error_set(MR_ERR_IO, "/dev/urandom: cannot read 16 bytes for a UID");
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* UUID version 4 (RFC 4122) */
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* variant 10 */
    /* decimal of the 128-bit big-endian number: repeated division by 10 */
    for (;;) {
        unsigned rem = 0;
        int zero = 1;
        for (int i = 0; i < 16; i++) {
            unsigned cur = rem * 256 + b[i];
            b[i] = (unsigned char)(cur / 10);
            rem = cur % 10;
            zero &= b[i] == 0;
        }
        digits[nd++] = (char)('0' + rem);
        if (zero) break;
    }
    memcpy(uid, "2.25.", 5);
    for (int i = 0; i < nd; i++)
        uid[5 + i] = digits[nd - 1 - i];
    uid[5 + nd] = '\0';
    return MR_OK;
}

void mr_dicom_written_free(mr_dicom_written *w)
{
    if (!w) return;
    free(w->sop_uids);
    w->sop_uids = NULL;
    w->count = 0;
}

/* ---------------------------------------------------------------- sources */

static void now_date_time(char date[9], char time_[7])
{
    time_t t = time(NULL);
    struct tm tmv;
    localtime_r(&t, &tmv);
    strftime(date, 9, "%Y%m%d", &tmv);
    strftime(time_, 7, "%H%M%S", &tmv);
}

mr_status mr_dicom_source_from_ismrmrd(mr_dicom_source *out, const mr_ismrmrd_hdr *hdr,
                                       size_t slices, size_t rows, size_t cols)
{
    char uid[MR_DICOM_UID_SIZE], date[9], tim[7], buf[80];
    mr_status st;
    mr_dicom_geometry *g = &out->geom;
    memset(out, 0, sizeof *out);
    g->slices = slices;
    g->rows = rows;
    g->cols = cols;
    /* ISMRMRD: x = readout = rows (H), y = phase encode = columns (W), z = slice */
    g->pixel_spacing[0] =
        hdr && hdr->recon_fov[0] > 0 && hdr->recon_x ? hdr->recon_fov[0] / (double)hdr->recon_x : 1;
    g->pixel_spacing[1] =
        hdr && hdr->recon_fov[1] > 0 && hdr->recon_y ? hdr->recon_fov[1] / (double)hdr->recon_y : 1;
    g->slice_thickness = hdr && hdr->recon_fov[2] > 0
                             ? hdr->recon_fov[2] / (double)(hdr->recon_z ? hdr->recon_z : 1)
                             : 1;
    g->slice_spacing = g->slice_thickness;
    if (!hdr || hdr->recon_fov[0] <= 0 || hdr->recon_fov[1] <= 0)
        MR_WARN(
            "no reconSpace field of view in the ISMRMRD header: DICOM pixel spacing set to 1 mm");
    /* nominal axial orientation, volume centred on the origin (the header has no position) */
    g->row_dir[0] = 1;
    g->col_dir[1] = 1;
    g->normal[2] = 1;
    g->origin[0] = -0.5 * (double)(cols - 1) * g->pixel_spacing[1];
    g->origin[1] = -0.5 * (double)(rows - 1) * g->pixel_spacing[0];
    g->origin[2] = -0.5 * (double)(slices - 1) * g->slice_spacing;
    /* a new study and frame of reference; patient fields only when the input has them */
    now_date_time(date, tim);
    if ((st = mr_dicom_uid_create(uid)) != MR_OK) return st;
    mr_dicom_attrs_set(&out->identity, T_STUDY_UID, uid);
    if ((st = mr_dicom_uid_create(uid)) != MR_OK) return st;
    mr_dicom_attrs_set(&out->identity, T_FRAME_OF_REFERENCE, uid);
    mr_dicom_attrs_set(&out->identity, T_STUDY_DATE, date);
    mr_dicom_attrs_set(&out->identity, T_STUDY_TIME, tim);
    mr_dicom_attrs_set(&out->identity, T_STUDY_ID, "MRPIPE");
    if (hdr && hdr->patient_id[0]) {
        snprintf(buf, sizeof buf, "%.64s", hdr->patient_id);
        mr_dicom_attrs_set(&out->identity, T_PATIENT_ID, buf);
    }
    if (hdr && hdr->field_strength_t > 0) {
        snprintf(buf, sizeof buf, "%.6g", hdr->field_strength_t);
        mr_dicom_attrs_set(&out->acquisition, T_FIELD_STRENGTH, buf);
    }
    if (hdr && hdr->acquisition[0]) {
        snprintf(buf, sizeof buf, "%.16s", hdr->acquisition);
        mr_dicom_attrs_set(&out->acquisition, T_SEQUENCE_NAME, buf);
    }
    mr_dicom_attrs_set(&out->acquisition, T_SCANNING_SEQUENCE, "RM"); /* research mode: unknown */
    mr_dicom_attrs_set(&out->acquisition, T_SEQUENCE_VARIANT, "NONE");
    out->series.series_number = -1;
    return MR_OK;
}

mr_status mr_dicom_source_anonymize(mr_dicom_source *src, const char *pseudonym)
{
    /* PS3.15 E.1-1: X (remove) for these; Z/D (empty or dummy) for the type 2 ones written anyway
     */
    static const uint32_t removed[] = {T_PATIENT_BIRTH_DATE,  T_ISSUER_PATIENT_ID,
                                       T_PATIENT_AGE,         T_PATIENT_SIZE,
                                       T_PATIENT_WEIGHT,      T_PATIENT_SEX,
                                       T_STUDY_DATE,          T_STUDY_TIME,
                                       T_REFERRING_PHYSICIAN, T_STUDY_ID,
                                       T_ACCESSION,           T_STUDY_DESCRIPTION,
                                       T_POSITION_REFERENCE,  0};
    char uid[MR_DICOM_UID_SIZE];
    mr_status st;
    for (const uint32_t *t = removed; *t; t++)
        mr_dicom_attrs_remove(&src->identity, *t);
    mr_dicom_attrs_remove(&src->acquisition, T_SEQUENCE_NAME);
    mr_dicom_attrs_remove(&src->acquisition, T_BODY_PART);
    if ((st = mr_dicom_attrs_set(&src->identity, T_PATIENT_NAME,
                                 pseudonym && *pseudonym ? pseudonym : "ANONYMOUS")) != MR_OK)
        return st;
    if ((st = mr_dicom_attrs_set(&src->identity, T_PATIENT_ID,
                                 pseudonym && *pseudonym ? pseudonym : "ANONYMOUS")) != MR_OK)
        return st;
    /* U: new UIDs, consistent for every series written from this source */
    if ((st = mr_dicom_uid_create(uid)) != MR_OK) return st;
    mr_dicom_attrs_set(&src->identity, T_STUDY_UID, uid);
    if ((st = mr_dicom_uid_create(uid)) != MR_OK) return st;
    mr_dicom_attrs_set(&src->identity, T_FRAME_OF_REFERENCE, uid);
    src->series.description[0] = '\0';
    src->series.series_uid[0] = '\0';
    src->series.study_uid[0] = '\0';
    free(src->refs); /* references to the source instances would identify it */
    src->refs = NULL;
    src->anonymized = 1;
    return MR_OK;
}

/* ---------------------------------------------------------------- writing */

/* Folder name from a description: letters, digits, '-', '_' kept, others '_', at most 48. */
static void folder_name(char *out, size_t size, long number, const char *desc)
{
    size_t n = (size_t)snprintf(out, size, "%ld_", number);
    for (const char *p = desc; *p && n + 1 < size && n < 56; p++) {
        char c = *p;
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '-' || c == '_';
        out[n++] = ok ? c : '_';
    }
    out[n] = '\0';
}

/* DS value (at most 16 characters, PS3.5 6.2) */
static void ds_format(char out[17], double v)
{
    for (int prec = 10; prec > 1; prec--) {
        if (snprintf(out, 17, "%.*g", prec, v) < 17) return;
    }
    snprintf(out, 17, "%.1g", v);
}

typedef struct {
    int is_signed;
    double slope, intercept;
    char slope_s[17], intercept_s[17];
} pixel_scaling;

/* Choose how real values map to 16-bit stored values (stored = round((v - intercept) / slope)):
 * integer data that fit are kept exactly; otherwise 0 stays 0 and the largest magnitude uses the
 * full range. */
static void scaling_choose(pixel_scaling *s, const float *x, size_t n)
{
    double lo = x[0], hi = x[0];
    int integer = 1;
    for (size_t i = 0; i < n; i++) {
        lo = fmin(lo, x[i]);
        hi = fmax(hi, x[i]);
        integer &= x[i] == nearbyintf(x[i]);
    }
    s->is_signed = lo < 0;
    s->intercept = 0;
    if (integer && lo >= (s->is_signed ? -32768 : 0) && hi <= (s->is_signed ? 32767 : 65535))
        s->slope = 1;
    else {
        double m = s->is_signed ? fmax(-lo, hi) / 32767.0 : hi / 65535.0;
        s->slope = m > 0 ? m : 1;
    }
    ds_format(s->slope_s, s->slope);
    s->slope = strtod(s->slope_s, NULL); /* the value readers will use */
    ds_format(s->intercept_s, s->intercept);
}

static uint16_t scaling_apply(const pixel_scaling *s, float v)
{
    double q = nearbyint(((double)v - s->intercept) / s->slope);
    if (s->is_signed) {
        q = fmin(fmax(q, -32768), 32767);
        return (uint16_t)(int16_t)q;
    }
    q = fmin(fmax(q, 0), 65535);
    return (uint16_t)q;
}

static mr_status put(mr_dcm_item *it, uint32_t tag, const char *value)
{
    return (mr_status)mr_dcm_put_string(it, tag, value ? value : "");
}

/* Put an attribute from a list, or an empty one (type 2) when the list lacks it. */
static mr_status put_from(mr_dcm_item *it, const mr_dicom_attrs *list, uint32_t tag, int type2)
{
    const char *v = mr_dicom_attrs_get(list, tag);
    if (!v && !type2) return MR_OK;
    return put(it, tag, v);
}

static mr_status put_code(mr_dcm_item *parent, uint32_t seq, const char *value, const char *scheme,
                          const char *meaning)
{
    mr_dcm_item *it;
    mr_status st = (mr_status)mr_dcm_seq_append(&it, parent, seq);
    if (st == MR_OK) st = put(it, T_CODE_VALUE, value);
    if (st == MR_OK) st = put(it, T_CODING_SCHEME, scheme);
    if (st == MR_OK) st = put(it, T_CODE_MEANING, meaning);
    return st;
}

static mr_status put_ds3(mr_dcm_item *it, uint32_t tag, const double *v, int n)
{
    char buf[128] = "", one[17];
    for (int i = 0; i < n; i++) {
        ds_format(one, fabs(v[i]) < 5e-14 ? 0.0 : v[i]);
        if (i) strcat(buf, "\\");
        strcat(buf, one);
    }
    return put(it, tag, buf);
}

/* Everything of one instance (slice k). */
typedef struct {
    const mr_dicom_source *src;
    const mr_dicom_series_params *p;
    const pixel_scaling *scale;
    const char *series_uid;
    long series_number;
    const char *date, *time;
    char window_c[17], window_w[17];
    int has_window;
} series_ctx;

static mr_status instance_build(mr_dcm_item *ds, const series_ctx *c, size_t k, const char *sop_uid,
                                const uint16_t *pixels)
{
    const mr_dicom_source *src = c->src;
    const mr_dicom_geometry *g = &src->geom;
    const mr_dicom_series_params *p = c->p;
    char buf[512];
    double pos[3];
    mr_status st = MR_OK;
#define TRY(x)                                                                                     \
    do {                                                                                           \
        if ((st = (x)) != MR_OK) return st;                                                        \
    } while (0)

    /* SOP common */
    if (mr_dicom_attrs_get(&src->identity, T_SPECIFIC_CHARSET))
        TRY(put_from(ds, &src->identity, T_SPECIFIC_CHARSET, 0));
    TRY(put(ds, T_SOP_CLASS, MR_UID_MR_IMAGE));
    TRY(put(ds, T_SOP_INSTANCE, sop_uid));
    if (c->date) {
        TRY(put(ds, T_INSTANCE_CREATION_DATE, c->date));
        TRY(put(ds, T_INSTANCE_CREATION_TIME, c->time));
    }
    /* Patient (type 2 attributes always present) */
    TRY(put_from(ds, &src->identity, T_PATIENT_NAME, 1));
    TRY(put_from(ds, &src->identity, T_PATIENT_ID, 1));
    TRY(put_from(ds, &src->identity, T_ISSUER_PATIENT_ID, 0));
    TRY(put_from(ds, &src->identity, T_PATIENT_BIRTH_DATE, 1));
    TRY(put_from(ds, &src->identity, T_PATIENT_SEX, 1));
    TRY(put_from(ds, &src->identity, T_PATIENT_AGE, 0));
    TRY(put_from(ds, &src->identity, T_PATIENT_SIZE, 0));
    TRY(put_from(ds, &src->identity, T_PATIENT_WEIGHT, 0));
    if (src->anonymized) {
        mr_dcm_item *code;
        TRY(put(ds, T_PATIENT_IDENTITY_REMOVED, "YES"));
        TRY(put(ds, T_DEIDENTIFICATION_METHOD, "mrpipe: PS3.15 E Basic Profile"));
        TRY(put_code(ds, T_DEIDENTIFICATION_CODE_SEQ, "113100", "DCM",
                     "Basic Application Confidentiality Profile"));
        (void)code;
    }
    /* General Study */
    TRY(put_from(ds, &src->identity, T_STUDY_UID, 1));
    TRY(put_from(ds, &src->identity, T_STUDY_DATE, 1));
    TRY(put_from(ds, &src->identity, T_STUDY_TIME, 1));
    TRY(put_from(ds, &src->identity, T_REFERRING_PHYSICIAN, 1));
    TRY(put_from(ds, &src->identity, T_STUDY_ID, 1));
    TRY(put_from(ds, &src->identity, T_ACCESSION, 1));
    TRY(put_from(ds, &src->identity, T_STUDY_DESCRIPTION, 0));
    /* General Series */
    TRY(put(ds, T_MODALITY, "MR"));
    TRY(put(ds, T_SERIES_UID, c->series_uid));
    snprintf(buf, sizeof buf, "%ld", c->series_number);
    TRY(put(ds, T_SERIES_NUMBER, buf));
    snprintf(buf, sizeof buf, "%.64s", p->description ? p->description : "mrpipe");
    TRY(put(ds, T_SERIES_DESCRIPTION, buf));
    if (c->date) {
        TRY(put(ds, T_SERIES_DATE, c->date));
        TRY(put(ds, T_SERIES_TIME, c->time));
    }
    TRY(put_from(ds, &src->acquisition, T_PATIENT_POSITION, 1));
    TRY(put_from(ds, &src->acquisition, T_BODY_PART, 0));
    TRY(put_from(ds, &src->acquisition, T_LATERALITY,
                 1)); /* 2C: paired body parts; empty = unknown */
    /* Frame of Reference */
    TRY(put_from(ds, &src->identity, T_FRAME_OF_REFERENCE, 1));
    TRY(put_from(ds, &src->identity, T_POSITION_REFERENCE, 1));
    /* General Equipment: the equipment that made this instance is mrpipe */
    TRY(put(ds, T_MANUFACTURER, "mrpipe"));
    TRY(put(ds, T_MODEL_NAME, "mrpipe"));
    if (p->config_hash && *p->config_hash)
        snprintf(buf, sizeof buf, "mrpipe %s\\config %.48s", MR_VERSION_STRING, p->config_hash);
    else
        snprintf(buf, sizeof buf, "mrpipe %s", MR_VERSION_STRING);
    TRY(put(ds, T_SOFTWARE_VERSIONS, buf));
    /* General Image */
    snprintf(buf, sizeof buf, "%zu", k + 1);
    TRY(put(ds, T_INSTANCE_NUMBER, buf));
    if (c->date) {
        TRY(put(ds, T_CONTENT_DATE, c->date));
        TRY(put(ds, T_CONTENT_TIME, c->time));
    }
    snprintf(buf, sizeof buf, "DERIVED\\SECONDARY\\%.16s",
             p->image_type && *p->image_type ? p->image_type : "OTHER");
    TRY(put(ds, T_IMAGE_TYPE, buf));
    /* General Reference */
    if (p->derivation && *p->derivation) {
        char st_value[1025]; /* ST: at most 1024 characters */
        snprintf(st_value, sizeof st_value, "%s", p->derivation);
        TRY(put(ds, T_DERIVATION_DESCRIPTION, st_value));
    }
    if (src->refs && !src->anonymized) {
        const mr_dicom_ref *r = &src->refs[k];
        mr_dcm_item *it;
        TRY((mr_status)mr_dcm_seq_append(&it, ds, T_SOURCE_IMAGE_SEQ));
        TRY(put(it, T_REF_SOP_CLASS, r->sop_class_uid));
        TRY(put(it, T_REF_SOP_INSTANCE, r->sop_instance_uid));
        if (r->frame > 0) {
            snprintf(buf, sizeof buf, "%ld", r->frame);
            TRY(put(it, T_REF_FRAME_NUMBER, buf));
        }
        TRY(put_code(it, T_PURPOSE_OF_REFERENCE_SEQ, "121322", "DCM",
                     "Source image for image processing operation"));
    }
    if (p->linked) {
        mr_dcm_item *it;
        TRY((mr_status)mr_dcm_seq_append(&it, ds, T_REF_IMAGE_SEQ));
        TRY(put(it, T_REF_SOP_CLASS, p->linked->sop_class_uid));
        TRY(put(it, T_REF_SOP_INSTANCE, p->linked->sop_uids[k]));
    }
    /* Common Instance Reference: the series of the instances referenced above */
    if (src->refs && !src->anonymized && src->series.series_uid[0]) {
        mr_dcm_item *se, *in;
        TRY((mr_status)mr_dcm_seq_append(&se, ds, T_REF_SERIES_SEQ));
        TRY(put(se, T_SERIES_UID, src->series.series_uid));
        TRY((mr_status)mr_dcm_seq_append(&in, se, T_REF_INSTANCE_SEQ));
        TRY(put(in, T_REF_SOP_CLASS, src->refs[k].sop_class_uid));
        TRY(put(in, T_REF_SOP_INSTANCE, src->refs[k].sop_instance_uid));
    }
    if (p->linked) {
        mr_dcm_item *se, *in;
        TRY((mr_status)mr_dcm_seq_append(&se, ds, T_REF_SERIES_SEQ));
        TRY(put(se, T_SERIES_UID, p->linked->series_uid));
        TRY((mr_status)mr_dcm_seq_append(&in, se, T_REF_INSTANCE_SEQ));
        TRY(put(in, T_REF_SOP_CLASS, p->linked->sop_class_uid));
        TRY(put(in, T_REF_SOP_INSTANCE, p->linked->sop_uids[k]));
    }
    /* Image Plane */
    double ps[2] = {g->pixel_spacing[0], g->pixel_spacing[1]};
    double iop[6] = {g->row_dir[0], g->row_dir[1], g->row_dir[2],
                     g->col_dir[0], g->col_dir[1], g->col_dir[2]};
    for (int i = 0; i < 3; i++)
        pos[i] = g->origin[i] + (double)k * g->slice_spacing * g->normal[i];
    TRY(put_ds3(ds, T_PIXEL_SPACING, ps, 2));
    TRY(put_ds3(ds, T_IOP, iop, 6));
    TRY(put_ds3(ds, T_IPP, pos, 3));
    {
        double loc = pos[0] * g->normal[0] + pos[1] * g->normal[1] + pos[2] * g->normal[2];
        TRY(put_ds3(ds, T_SLICE_LOCATION, &loc, 1));
    }
    if (g->slice_thickness > 0)
        TRY(put_ds3(ds, T_SLICE_THICKNESS, &g->slice_thickness, 1));
    else
        TRY(put(ds, T_SLICE_THICKNESS, ""));
    if (g->slices > 1) TRY(put_ds3(ds, T_SPACING_BETWEEN_SLICES, &g->slice_spacing, 1));
    /* Image Pixel */
    TRY((mr_status)mr_dcm_put_u16(ds, T_SAMPLES_PER_PIXEL, 1));
    TRY(put(ds, T_PHOTOMETRIC, "MONOCHROME2"));
    TRY((mr_status)mr_dcm_put_u16(ds, T_ROWS, (unsigned)g->rows));
    TRY((mr_status)mr_dcm_put_u16(ds, T_COLUMNS, (unsigned)g->cols));
    TRY((mr_status)mr_dcm_put_u16(ds, T_BITS_ALLOCATED, 16));
    TRY((mr_status)mr_dcm_put_u16(ds, T_BITS_STORED, 16));
    TRY((mr_status)mr_dcm_put_u16(ds, T_HIGH_BIT, 15));
    TRY((mr_status)mr_dcm_put_u16(ds, T_PIXEL_REPRESENTATION, c->scale->is_signed ? 1 : 0));
    /* MR Image: acquisition attributes of the source; type 1 defaults when unknown */
    if (!mr_dicom_attrs_get(&src->acquisition, T_SCANNING_SEQUENCE))
        TRY(put(ds, T_SCANNING_SEQUENCE, "RM"));
    if (!mr_dicom_attrs_get(&src->acquisition, T_SEQUENCE_VARIANT))
        TRY(put(ds, T_SEQUENCE_VARIANT, "NONE"));
    for (const uint32_t *t = mr_dicom_acquisition_tags; *t; t++) {
        if (*t == T_PATIENT_POSITION || *t == T_BODY_PART || *t == T_LATERALITY)
            continue; /* General Series, above */
        int type2 = *t == T_SCAN_OPTIONS || *t == T_MR_ACQUISITION_TYPE || *t == T_ECHO_TIME ||
                    *t == T_ECHO_TRAIN_LENGTH || *t == T_REPETITION_TIME;
        TRY(put_from(ds, &src->acquisition, *t, type2));
    }
    /* Modality LUT (the recorded scaling) and VOI LUT (window from the data) */
    if (c->scale->slope != 1 || c->scale->intercept != 0) {
        TRY(put(ds, T_RESCALE_INTERCEPT, c->scale->intercept_s));
        TRY(put(ds, T_RESCALE_SLOPE, c->scale->slope_s));
        TRY(put(ds, T_RESCALE_TYPE, "US")); /* unspecified: the units of the source */
    }
    if (c->has_window) {
        TRY(put(ds, T_WINDOW_CENTER, c->window_c));
        TRY(put(ds, T_WINDOW_WIDTH, c->window_w));
        TRY(put(ds, T_WINDOW_EXPLANATION, "mrpipe 0-99.5 percentile"));
    }
    TRY((mr_status)mr_dcm_put_pixels16(ds, pixels, g->rows * g->cols));
#undef TRY
    return st;
}

static void remove_tree_files(const char *dir, size_t count)
{
    char path[4200];
    for (size_t k = 0; k < count; k++) {
        snprintf(path, sizeof path, "%s/IM_%04zu.dcm", dir, k + 1);
        unlink(path);
    }
    rmdir(dir);
}

mr_status mr_dicom_series_write(mr_dicom_written *out, const char *out_dir, const mr_array *data,
                                const mr_dicom_source *src, const mr_dicom_series_params *params)
{
    const mr_dicom_geometry *g = &src->geom;
    series_ctx c;
    pixel_scaling scale;
    char name[128], final_dir[4096], tmp_dir[4096], date[9], tim[7], shape[128];
    uint16_t *pixels = NULL;
    mr_dcm_file *df = NULL;
    mr_status st = MR_OK;
    size_t written = 0;
    static int counter;
    memset(out, 0, sizeof *out);
    memset(&c, 0, sizeof c);
    if (!data || data->dtype != MR_FLOAT32 || data->ndim != 3 || data->dims[0] != g->slices ||
        data->dims[1] != g->rows || data->dims[2] != g->cols)
        return mr_error_set(MR_ERR_INPUT,
                            "%s: DICOM output expects float32 (S, H, W) = (%zu, %zu, %zu) as the "
                            "source geometry, found %s",
                            out_dir, g->slices, g->rows, g->cols,
                            data ? mr_dims_format(shape, sizeof shape, data->ndim, data->dims)
                                 : "none");
    if (g->rows > 65535 || g->cols > 65535)
        return mr_error_set(MR_ERR_INPUT, "%s: %zu x %zu images do not fit DICOM Rows/Columns",
                            out_dir, g->rows, g->cols);
    if (params->linked && params->linked->count != g->slices)
        return mr_error_set(MR_ERR_USAGE, "%s: the linked series has %zu images, this one %zu",
                            out_dir, params->linked->count, g->slices);
    size_t hw = g->rows * g->cols, numel = g->slices * hw;
    const float *x = mr_array_f32(data);
    for (size_t i = 0; i < numel; i++)
        if (!isfinite(x[i]))
            return mr_error_set(MR_ERR_INPUT,
                                "%s: value %zu (slice %zu) is %g: DICOM needs finite "
                                "values",
                                out_dir, i, i / hw, x[i]);
    scaling_choose(&scale, x, numel);

    out->series_number = params->series_number > 0        ? params->series_number
                         : src->series.series_number >= 0 ? src->series.series_number + 1000
                                                          : 1000;
    folder_name(name, sizeof name, out->series_number,
                params->description && *params->description ? params->description : "mrpipe");
    if (!mr_path_is_dir(out_dir) && mkdir(out_dir, 0777) != 0 && errno != EEXIST)
        return mr_error_set(MR_ERR_IO, "%s: cannot create the output folder: %s", out_dir,
                            strerror(errno));
    if (snprintf(final_dir, sizeof final_dir, "%s/%s", out_dir, name) >= (int)sizeof final_dir ||
        snprintf(tmp_dir, sizeof tmp_dir, "%s/.%s.partial-%ld-%d", out_dir, name, (long)getpid(),
                 __atomic_fetch_add(&counter, 1, __ATOMIC_RELAXED)) >= (int)sizeof tmp_dir)
        return mr_error_set(MR_ERR_USAGE, "%s: output path too long", out_dir);
    struct stat sb;
    if (lstat(final_dir, &sb) == 0)
        return mr_error_set(MR_ERR_IO,
                            "%s: exists already; a derived series is never written over "
                            "(remove it or choose another series number)",
                            final_dir);
    if (mkdir(tmp_dir, 0777) != 0)
        return mr_error_set(MR_ERR_IO, "%s: cannot create: %s", tmp_dir, strerror(errno));

    out->count = g->slices;
    if (!(out->sop_uids = mr_calloc(g->slices, sizeof *out->sop_uids)) ||
        !(pixels = mr_malloc(hw * sizeof *pixels))) {
        st = MR_ERR_NOMEM;
        goto fail;
    }
    if ((st = mr_dicom_uid_create(out->series_uid)) != MR_OK) goto fail;
    snprintf(out->sop_class_uid, sizeof out->sop_class_uid, "%s", MR_UID_MR_IMAGE);
    snprintf(out->study_uid, sizeof out->study_uid, "%s",
             mr_dicom_attrs_get(&src->identity, T_STUDY_UID)
                 ? mr_dicom_attrs_get(&src->identity, T_STUDY_UID)
                 : "");
    if (!out->study_uid[0]) {
        st = mr_error_set(MR_ERR_INPUT, "%s: the source has no (0020,000D) StudyInstanceUID",
                          out_dir);
        goto fail;
    }
    for (size_t k = 0; k < g->slices; k++)
        if ((st = mr_dicom_uid_create(out->sop_uids[k])) != MR_OK) goto fail;

    now_date_time(date, tim);
    c.src = src;
    c.p = params;
    c.scale = &scale;
    c.series_uid = out->series_uid;
    c.series_number = out->series_number;
    c.date = src->anonymized ? NULL : date;
    c.time = src->anonymized ? NULL : tim;
    {
        float lo, hi;
        mr_window_percentile(&lo, &hi, x, numel, 0.0, 99.5);
        if (hi - lo >= 1.0) { /* PS3.3 C.11.2.1.2: a window width is >= 1 */
            ds_format(c.window_c, 0.5 * ((double)lo + (double)hi));
            ds_format(c.window_w, (double)hi - (double)lo);
            c.has_window = 1;
        }
    }
    for (size_t k = 0; k < g->slices; k++) {
        char path[4200];
        for (size_t p = 0; p < hw; p++)
            pixels[p] = scaling_apply(&scale, x[k * hw + p]);
        if ((st = (mr_status)mr_dcm_file_new(&df)) != MR_OK) goto fail;
        if ((st = instance_build(mr_dcm_file_dataset(df), &c, k, out->sop_uids[k], pixels)) !=
            MR_OK)
            goto fail;
        snprintf(path, sizeof path, "%s/IM_%04zu.dcm", tmp_dir, k + 1);
        if ((st = (mr_status)mr_dcm_file_save(df, path, "MRPIPE_" MR_VERSION_STRING)) != MR_OK)
            goto fail;
        written = k + 1;
        mr_dcm_file_free(df);
        df = NULL;
    }
    if (rename(tmp_dir, final_dir) != 0) {
        st = mr_error_set(MR_ERR_IO, "%s: cannot rename %s into place: %s", final_dir, tmp_dir,
                          strerror(errno));
        goto fail;
    }
    snprintf(out->dir, sizeof out->dir, "%s", final_dir);
    free(pixels);
    return MR_OK;
fail:
    mr_dcm_file_free(df);
    free(pixels);
    remove_tree_files(tmp_dir, written + 1);
    mr_dicom_written_free(out);
    return st;
}

/* ---------------------------------------------------------------- uncertainty series */

mr_status mr_dicom_uncertainty_write(mr_dicom_written *out, const char *out_dir, const mr_array *sd,
                                     const mr_dicom_source *src, const mr_dicom_written *image,
                                     const char *derivation, const char *config_hash)
{
    mr_dicom_series_params p;
    char desc[65], shape[128];
    const char *study = mr_dicom_attrs_get(&src->identity, T_STUDY_UID);
    memset(out, 0, sizeof *out);
    if (!image || !image->sop_uids || !image->count)
        return mr_error_set(MR_ERR_USAGE,
                            "%s: an uncertainty series needs the image series it "
                            "describes (written first)",
                            out_dir);
    if (!sd || sd->dtype != MR_FLOAT32 || sd->ndim != 3 || sd->dims[0] != image->count)
        return mr_error_set(MR_ERR_INPUT,
                            "%s: SD map: expected float32 (S, H, W) with S = %zu (the images of "
                            "series %s), found %s",
                            out_dir, image->count, image->series_uid,
                            sd ? mr_dims_format(shape, sizeof shape, sd->ndim, sd->dims) : "none");
    if (!study || strcmp(study, image->study_uid))
        return mr_error_set(MR_ERR_INPUT,
                            "%s: SD map: the source's (0020,000D) StudyInstanceUID %s is not the "
                            "image series' %s (write both from the same source)",
                            out_dir, study ? study : "(none)", image->study_uid);
    const float *x = mr_array_f32(sd);
    for (size_t i = 0, n = mr_array_numel(sd); i < n; i++)
        if (!(x[i] >= 0) || !isfinite(x[i]))
            return mr_error_set(MR_ERR_INPUT,
                                "%s: SD map: value %zu is %g: a standard deviation is finite and "
                                ">= 0",
                                out_dir, i, x[i]);
    snprintf(desc, sizeof desc, "%.38s%smrpipe uncertainty (SD)", src->series.description,
             src->series.description[0] ? " " : "");
    memset(&p, 0, sizeof p);
    p.description = desc;
    p.derivation = derivation && *derivation
                       ? derivation
                       : "mrpipe: voxel-wise standard deviation of the linked image series, in "
                         "its units";
    p.series_number = image->series_number + 1;
    p.config_hash = config_hash;
    p.image_type = "UNCERTAINTY";
    p.linked = image;
    return mr_dicom_series_write(out, out_dir, sd, src, &p);
}

/* ---------------------------------------------------------------- sending (PS3.4 C-STORE) */

static int aet_valid(const char *a)
{
    size_t n = strlen(a);
    if (n < 1 || n > 16) return 0;
    for (const char *p = a; *p; p++)
        if (*p < 0x20 || *p > 0x7e || *p == '\\') return 0;
    return 1;
}

mr_status mr_dicom_peer_parse(mr_dicom_peer *out, const char *spec)
{
    const char *at = spec ? strchr(spec, '@') : NULL, *colon = spec ? strrchr(spec, ':') : NULL;
    char *end;
    memset(out, 0, sizeof *out);
    if (!at || !colon || colon < at || at == spec || colon == at + 1)
        return mr_error_set(MR_ERR_USAGE,
                            "peer: expected AET@HOST:PORT (e.g. PACS@127.0.0.1:4242), "
                            "found '%s'",
                            spec ? spec : "");
    if ((size_t)(at - spec) > 16)
        return mr_error_set(MR_ERR_USAGE, "peer '%s': the AE title has more than 16 characters",
                            spec);
    memcpy(out->aet, spec, (size_t)(at - spec));
    if (!aet_valid(out->aet))
        return mr_error_set(MR_ERR_USAGE,
                            "peer '%s': AE title '%s' is not 1-16 printable characters", spec,
                            out->aet);
    if ((size_t)(colon - at - 1) >= sizeof out->host)
        return mr_error_set(MR_ERR_USAGE, "peer '%s': host name too long", spec);
    memcpy(out->host, at + 1, (size_t)(colon - at - 1));
    long port = strtol(colon + 1, &end, 10);
    if (end == colon + 1 || *end || port < 1 || port > 65535)
        return mr_error_set(MR_ERR_USAGE, "peer '%s': port: expected 1..65535, found '%s'", spec,
                            colon + 1);
    out->port = (int)port;
    return MR_OK;
}

mr_status mr_dicom_send(const mr_dicom_peer *peer, const char *calling_aet,
                        const mr_dicom_written *series, int retries)
{
    return mr_dicom_send_timeout(peer, calling_aet, series, retries, 30);
}

mr_status mr_dicom_send_timeout(const mr_dicom_peer *peer, const char *calling_aet,
                                const mr_dicom_written *series, int retries, int timeout_s)
{
    const char **files = NULL;
    char *paths = NULL;
    mr_status st = MR_OK;
    size_t sent = 0;
    const size_t len = sizeof series->dir + 32;
    if (!calling_aet) calling_aet = "MRPIPE";
    if (!aet_valid(calling_aet))
        return mr_error_set(MR_ERR_USAGE, "calling AE title '%s' is not 1-16 printable characters",
                            calling_aet);
    if (!(files = mr_calloc(series->count ? series->count : 1, sizeof *files)) ||
        !(paths = mr_malloc((series->count ? series->count : 1) * len))) {
        free(files);
        return MR_ERR_NOMEM;
    }
    for (size_t k = 0; k < series->count; k++) {
        snprintf(paths + k * len, len, "%s/IM_%04zu.dcm", series->dir, k + 1);
        files[k] = paths + k * len;
    }
    for (int attempt = 0;; attempt++) {
        int kind =
            mr_dcm_send_files(peer->host, peer->port, peer->aet, calling_aet, series->sop_class_uid,
                              files, series->count, timeout_s > 0 ? timeout_s : 30, &sent);
        if (kind == MR_DCM_NET_OK) {
            st = MR_OK;
            break;
        }
        st = MR_ERR_IO;
        if (kind != MR_DCM_NET_CONNECT || attempt >= retries) {
            if (attempt) mr_error_prefix(st, "after %d attempts: ", attempt + 1);
            break;
        }
        MR_WARN("%s (attempt %d of %d; retrying)", mr_error_message(), attempt + 1, retries + 1);
        sleep((unsigned)(attempt + 1));
    }
    if (st == MR_OK)
        MR_INFO("sent %zu instance(s) of series %s to %s@%s:%d", sent, series->series_uid,
                peer->aet, peer->host, peer->port);
    free(files);
    free(paths);
    return st;
}

/* ---------------------------------------------------------------- fetching (PS3.4 C-GET) */

static void remove_folder(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[4400];
    if (d) {
        while ((e = readdir(d)))
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
                snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
                unlink(path);
            }
        closedir(d);
    }
    rmdir(dir);
}

/* Retrieve into out_dir/<series_uid>/ through a temporary folder renamed when complete; with
 * dest_aet a C-MOVE to our own storage SCP on dest_port, else a C-GET. */
static mr_status retrieve(size_t *received, const mr_dicom_peer *peer, const char *calling_aet,
                          const char *study_uid, const char *series_uid, const char *out_dir,
                          const char *dest_aet, int dest_port, int retries)
{
    char final_dir[4096], tmp_dir[4096];
    size_t got = 0;
    mr_status st = MR_OK;
    static int counter;
    if (received) *received = 0;
    if (!calling_aet) calling_aet = "MRPIPE";
    if (!aet_valid(calling_aet))
        return mr_error_set(MR_ERR_USAGE, "calling AE title '%s' is not 1-16 printable characters",
                            calling_aet);
    if (dest_aet && !aet_valid(dest_aet))
        return mr_error_set(MR_ERR_USAGE,
                            "move destination AE title '%s' is not 1-16 printable characters",
                            dest_aet);
    if (dest_aet && (dest_port < 1 || dest_port > 65535))
        return mr_error_set(MR_ERR_USAGE, "move destination port: expected 1..65535, found %d",
                            dest_port);
    if (!study_uid || !*study_uid || !series_uid || !*series_uid ||
        strspn(series_uid, "0123456789.") != strlen(series_uid) || strlen(series_uid) > 64)
        return mr_error_set(MR_ERR_USAGE,
                            "fetch needs a study UID and a series UID (digits and "
                            "dots, at most 64), found '%s' / '%s'",
                            study_uid ? study_uid : "", series_uid ? series_uid : "");
    int made = 0; /* out_dir created here: removed again on failure (when still empty) */
    if (!mr_path_is_dir(out_dir)) {
        if (mkdir(out_dir, 0777) != 0 && errno != EEXIST)
            return mr_error_set(MR_ERR_IO, "%s: cannot create the output folder: %s", out_dir,
                                strerror(errno));
        made = 1;
    }
    if (snprintf(final_dir, sizeof final_dir, "%s/%s", out_dir, series_uid) >=
            (int)sizeof final_dir ||
        snprintf(tmp_dir, sizeof tmp_dir, "%s/.%s.partial-%ld-%d", out_dir, series_uid,
                 (long)getpid(),
                 __atomic_fetch_add(&counter, 1, __ATOMIC_RELAXED)) >= (int)sizeof tmp_dir)
        return mr_error_set(MR_ERR_USAGE, "%s: output path too long", out_dir);
    struct stat sb;
    if (lstat(final_dir, &sb) == 0) return mr_error_set(MR_ERR_IO, "%s: exists already", final_dir);
    for (int attempt = 0;; attempt++) {
        if (mkdir(tmp_dir, 0777) != 0) {
            st = mr_error_set(MR_ERR_IO, "%s: cannot create: %s", tmp_dir, strerror(errno));
            if (made) rmdir(out_dir);
            return st;
        }
        int kind =
            dest_aet ? mr_dcm_move_series(peer->host, peer->port, peer->aet, calling_aet, study_uid,
                                          series_uid, dest_aet, dest_port, tmp_dir, 30, &got)
                     : mr_dcm_get_series(peer->host, peer->port, peer->aet, calling_aet, study_uid,
                                         series_uid, tmp_dir, 30, &got);
        if (kind == MR_DCM_NET_OK) {
            st = MR_OK;
            break;
        }
        remove_folder(tmp_dir);
        st = strstr(mr_error_message(), "has no series") ? MR_ERR_INPUT : MR_ERR_IO;
        if (st == MR_ERR_INPUT && dest_aet) {
            /* a PACS may answer a move it cannot make (unknown or unreachable destination) as
             * it answers a missing series (Orthanc: 0xC000, nothing sent): ask whether the
             * series exists */
            char msg[1024];
            mr_dicom_found_series *found = NULL;
            size_t nfound = 0;
            mr_dicom_query_keys k = {NULL, study_uid, series_uid, NULL};
            snprintf(msg, sizeof msg, "%s", mr_error_message());
            if (mr_dicom_query(&found, &nfound, peer, calling_aet, &k, 0) == MR_OK && nfound)
                st = mr_error_set(MR_ERR_IO,
                                  "%s@%s:%d holds series %s but did not move it to %s (port %d): "
                                  "does it know %s with this host and port (Orthanc: "
                                  "DicomModalities)? Its log says why",
                                  peer->aet, peer->host, peer->port, series_uid, dest_aet,
                                  dest_port, dest_aet);
            else
                mr_error_set(MR_ERR_INPUT, "%s", msg);
            free(found);
        }
        if (kind != MR_DCM_NET_CONNECT || attempt >= retries) {
            if (attempt) mr_error_prefix(st, "after %d attempts: ", attempt + 1);
            if (made) rmdir(out_dir);
            return st;
        }
        MR_WARN("%s (attempt %d of %d; retrying)", mr_error_message(), attempt + 1, retries + 1);
        sleep((unsigned)(attempt + 1));
    }
    if (rename(tmp_dir, final_dir) != 0) {
        st = mr_error_set(MR_ERR_IO, "%s: cannot rename %s into place: %s", final_dir, tmp_dir,
                          strerror(errno));
        remove_folder(tmp_dir);
        return st;
    }
    if (received) *received = got;
    MR_INFO("fetched %zu instance(s) of series %s from %s@%s:%d (%s) into %s", got, series_uid,
            peer->aet, peer->host, peer->port, dest_aet ? "C-MOVE" : "C-GET", final_dir);
    return MR_OK;
}

mr_status mr_dicom_fetch(size_t *received, const mr_dicom_peer *peer, const char *calling_aet,
                         const char *study_uid, const char *series_uid, const char *out_dir,
                         int retries)
{
    return retrieve(received, peer, calling_aet, study_uid, series_uid, out_dir, NULL, 0, retries);
}

mr_status mr_dicom_fetch_move(size_t *received, const mr_dicom_peer *peer, const char *calling_aet,
                              const char *study_uid, const char *series_uid, const char *out_dir,
                              const char *dest_aet, int dest_port, int retries)
{
    if (!dest_aet)
        return mr_error_set(MR_ERR_USAGE, "C-MOVE needs a destination AE title (--move-dest)");
    return retrieve(received, peer, calling_aet, study_uid, series_uid, out_dir, dest_aet,
                    dest_port, retries);
}

/* ---------------------------------------------------------------- querying (PS3.4 C-FIND) */

/* One C-FIND with retries of failed connections. */
static mr_status find_retry(char **res, size_t *n, const mr_dicom_peer *peer, const char *calling,
                            const char *level, const uint32_t *tags, const char *const *values,
                            size_t nkeys, int retries)
{
    for (int attempt = 0;; attempt++) {
        int kind = mr_dcm_find(peer->host, peer->port, peer->aet, calling, level, tags, values,
                               nkeys, 30, res, n);
        if (kind == MR_DCM_NET_OK) return MR_OK;
        mr_status st = strstr(mr_error_message(), "out of memory") ? MR_ERR_NOMEM : MR_ERR_IO;
        if (kind != MR_DCM_NET_CONNECT || attempt >= retries) {
            if (attempt) mr_error_prefix(st, "after %d attempts: ", attempt + 1);
            return st;
        }
        MR_WARN("%s (attempt %d of %d; retrying)", mr_error_message(), attempt + 1, retries + 1);
        sleep((unsigned)(attempt + 1));
    }
}

/* A query key: printable, no backslash (one value), at most 64 characters. */
static mr_status key_check(const char *name, const char *v)
{
    if (!v) return MR_OK;
    if (strlen(v) > 64 || strchr(v, '\\'))
        return mr_error_set(MR_ERR_USAGE,
                            "query key %s: expected one value of at most 64 "
                            "characters, found '%s'",
                            name, v);
    for (const char *p = v; *p; p++)
        if (*p < 0x20 || *p > 0x7e)
            return mr_error_set(MR_ERR_USAGE, "query key %s: non-printable character in '%s'", name,
                                v);
    return MR_OK;
}

static int found_cmp(const void *a, const void *b)
{
    const mr_dicom_found_series *x = a, *y = b;
    int c = strcmp(x->study_date, y->study_date);
    if (!c) c = strcmp(x->study_uid, y->study_uid);
    if (!c) c = (x->series_number > y->series_number) - (x->series_number < y->series_number);
    if (!c) c = strcmp(x->series_uid, y->series_uid);
    return c;
}

#define FV(res, m, nk, k) ((res) + ((m) * (nk) + (k)) * MR_DCM_FIND_VALUE_SIZE)

mr_status mr_dicom_query(mr_dicom_found_series **out, size_t *count, const mr_dicom_peer *peer,
                         const char *calling_aet, const mr_dicom_query_keys *keys, int retries)
{
    static const uint32_t study_tags[] = {T_PATIENT_ID, T_STUDY_UID, T_STUDY_DATE,
                                          T_STUDY_DESCRIPTION};
    static const uint32_t series_tags[] = {T_STUDY_UID,          T_SERIES_UID,
                                           T_MODALITY,           T_SERIES_NUMBER,
                                           T_SERIES_DESCRIPTION, MR_TAG(0x0020, 0x1209)};
    char *studies = NULL, *series = NULL;
    size_t nstudies = 0, nseries = 0, n = 0, cap = 0;
    mr_dicom_found_series *list = NULL;
    mr_status st;
    mr_dicom_query_keys none = {NULL, NULL, NULL, NULL};
    *out = NULL;
    *count = 0;
    if (!keys) keys = &none;
    if (!calling_aet) calling_aet = "MRPIPE";
    if (!aet_valid(calling_aet))
        return mr_error_set(MR_ERR_USAGE, "calling AE title '%s' is not 1-16 printable characters",
                            calling_aet);
    if ((st = key_check("PatientID", keys->patient_id)) != MR_OK ||
        (st = key_check("StudyInstanceUID", keys->study_uid)) != MR_OK ||
        (st = key_check("SeriesInstanceUID", keys->series_uid)) != MR_OK ||
        (st = key_check("Modality", keys->modality)) != MR_OK)
        return st;
    /* Study Root is hierarchical (PS3.4 C.4.1.2.1): studies first, then the series of each */
    const char *sv[] = {keys->patient_id ? keys->patient_id : "",
                        keys->study_uid ? keys->study_uid : "", "", ""};
    if ((st = find_retry(&studies, &nstudies, peer, calling_aet, "STUDY", study_tags, sv, 4,
                         retries)) != MR_OK)
        return st;
    for (size_t i = 0; i < nstudies && st == MR_OK; i++) {
        const char *study = FV(studies, i, 4, 1);
        if (!*study) continue;
        const char *rv[] = {study,
                            keys->series_uid ? keys->series_uid : "",
                            keys->modality ? keys->modality : "",
                            "",
                            "",
                            ""};
        if ((st = find_retry(&series, &nseries, peer, calling_aet, "SERIES", series_tags, rv, 6,
                             retries)) != MR_OK)
            break;
        for (size_t j = 0; j < nseries; j++) {
            mr_dicom_found_series *f;
            char *end;
            if (n == cap) {
                size_t nc = cap ? 2 * cap : 16;
                void *q = realloc(list, nc * sizeof *list);
                if (!q) {
                    st = mr_error_set(MR_ERR_NOMEM, "out of memory for C-FIND matches");
                    break;
                }
                list = q;
                cap = nc;
            }
            f = &list[n++];
            memset(f, 0, sizeof *f);
            snprintf(f->patient_id, sizeof f->patient_id, "%s", FV(studies, i, 4, 0));
            snprintf(f->study_uid, sizeof f->study_uid, "%s", study);
            snprintf(f->study_date, sizeof f->study_date, "%s", FV(studies, i, 4, 2));
            snprintf(f->study_description, sizeof f->study_description, "%s", FV(studies, i, 4, 3));
            snprintf(f->series_uid, sizeof f->series_uid, "%s", FV(series, j, 6, 1));
            snprintf(f->modality, sizeof f->modality, "%s", FV(series, j, 6, 2));
            f->series_number = strtol(FV(series, j, 6, 3), &end, 10);
            if (end == FV(series, j, 6, 3)) f->series_number = -1;
            snprintf(f->description, sizeof f->description, "%s", FV(series, j, 6, 4));
            f->instances = strtol(FV(series, j, 6, 5), &end, 10);
            if (end == FV(series, j, 6, 5)) f->instances = -1;
        }
        free(series);
        series = NULL;
    }
    free(studies);
    if (st != MR_OK) {
        free(list);
        return st;
    }
    if (n) qsort(list, n, sizeof *list, found_cmp);
    *out = list;
    *count = n;
    return MR_OK;
}

static int instance_cmp(const void *a, const void *b)
{
    const mr_dicom_found_instance *x = a, *y = b;
    int c = (x->instance_number > y->instance_number) - (x->instance_number < y->instance_number);
    return c ? c : strcmp(x->sop_instance_uid, y->sop_instance_uid);
}

mr_status mr_dicom_query_instances(mr_dicom_found_instance **out, size_t *count,
                                   const mr_dicom_peer *peer, const char *calling_aet,
                                   const char *study_uid, const char *series_uid, int retries)
{
    static const uint32_t tags[] = {T_STUDY_UID, T_SERIES_UID, T_SOP_INSTANCE, T_SOP_CLASS,
                                    T_INSTANCE_NUMBER};
    char *res = NULL;
    size_t n = 0;
    mr_status st;
    *out = NULL;
    *count = 0;
    if (!calling_aet) calling_aet = "MRPIPE";
    if (!aet_valid(calling_aet))
        return mr_error_set(MR_ERR_USAGE, "calling AE title '%s' is not 1-16 printable characters",
                            calling_aet);
    if (!study_uid || !*study_uid || !series_uid || !*series_uid)
        return mr_error_set(MR_ERR_USAGE, "an instance query needs a study UID and a series UID");
    if ((st = key_check("StudyInstanceUID", study_uid)) != MR_OK ||
        (st = key_check("SeriesInstanceUID", series_uid)) != MR_OK)
        return st;
    const char *values[] = {study_uid, series_uid, "", "", ""};
    if ((st = find_retry(&res, &n, peer, calling_aet, "IMAGE", tags, values, 5, retries)) != MR_OK)
        return st;
    mr_dicom_found_instance *list = mr_calloc(n ? n : 1, sizeof *list);
    if (!list) {
        free(res);
        return MR_ERR_NOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        char *end;
        snprintf(list[i].sop_instance_uid, sizeof list[i].sop_instance_uid, "%s", FV(res, i, 5, 2));
        snprintf(list[i].sop_class_uid, sizeof list[i].sop_class_uid, "%s", FV(res, i, 5, 3));
        list[i].instance_number = strtol(FV(res, i, 5, 4), &end, 10);
        if (end == FV(res, i, 5, 4)) list[i].instance_number = -1;
    }
    free(res);
    if (n) qsort(list, n, sizeof *list, instance_cmp);
    *out = list;
    *count = n;
    return MR_OK;
}
