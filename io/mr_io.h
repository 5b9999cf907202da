/*
 * mr_io.h: the public header of mrpipe's I/O module.
 *
 * Formats: fastMRI-layout HDF5 (streamed slice by slice), ISMRMRD v1 HDF5, BART .cfl/.hdr, NIfTI-1
 * (.nii, .nii.gz), PNG previews; DICOM series in (file, folder, DICOMDIR) and derived MR series out
 * through the DCMTK shim (docs/dicom.md).
 *
 * One axis convention everywhere (docs/formats.md):
 *  - arrays are C order; multi-coil k-space is (S, C, H, W), H = readout (kx), W = phase encode (ky);
 *  - a BART .cfl maps d0 = H, d1 = W, d3 = coils, d13 = slices (column-major: d0 fastest);
 *  - a NIfTI volume's voxel axes i, j, k are W, H, S (slices are planes of constant k).
 *
 * Every function returns mr_status and keeps a message naming the file, the dataset or field, what
 * was expected and what was found. Writers write to a temporary name and rename when complete, so a
 * failure never leaves a partial output under the final name.
 */
#ifndef MR_IO_H
#define MR_IO_H

#include "mr_core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ================================================================ format detection */

typedef enum {
    MR_FMT_UNKNOWN = 0,
    MR_FMT_FASTMRI, /* HDF5 with kspace and/or reconstruction* datasets */
    MR_FMT_ISMRMRD, /* HDF5 with /dataset/data (ISMRMRD v1) */
    MR_FMT_CFL,     /* BART .cfl + .hdr */
    MR_FMT_NIFTI,   /* .nii or .nii.gz */
    MR_FMT_PNG,     /* .png (write only) */
    MR_FMT_DICOM,   /* a directory, or a file with "DICM" at byte 128 */
} mr_format;

const char *mr_format_name(mr_format fmt);

/* Format of an existing input: by extension; for .h5/.hdf5 by the datasets inside; a directory or a
 * file with "DICM" at byte 128 is DICOM; BART names may omit the extension ("x" for x.cfl/x.hdr).
 * MR_ERR_INPUT when the file is missing or the format cannot be told (message says what was seen). */
mr_status mr_io_detect_input(mr_format *out, const char *path);

/* Format of an output path, by extension only (.h5/.hdf5 -> FASTMRI, .cfl/.hdr -> CFL,
 * .nii/.nii.gz -> NIFTI, .png -> PNG). MR_ERR_USAGE for anything else, naming the extensions known. */
mr_status mr_io_detect_output(mr_format *out, const char *path);

/* ================================================================ ISMRMRD XML header */

/* The fields of an ISMRMRD XML header that reconstruction needs. Sizes are 0 when absent. */
typedef struct {
    size_t enc_x, enc_y, enc_z;       /* encoding/encodedSpace/matrixSize (x = readout) */
    size_t recon_x, recon_y, recon_z; /* encoding/reconSpace/matrixSize */
    double enc_fov[3], recon_fov[3];  /* fieldOV_mm x, y, z (0 when absent) */
    int has_e1_limits;                /* encodingLimits/kspace_encoding_step_1 present */
    long e1_min, e1_max, e1_center;
    int has_slice_limits;             /* encodingLimits/slice present */
    long slice_min, slice_max, slice_center;
    int has_e1_accel;                 /* parallelImaging/accelerationFactor present */
    long e1_accel;
    char acquisition[128];            /* measurementInformation/protocolName ("" if absent) */
    char patient_id[128];             /* subjectInformation/patientID ("" if absent) */
    double field_strength_t;          /* acquisitionSystemInformation/systemFieldStrength_T (0) */
    long receiver_channels;           /* acquisitionSystemInformation/receiverChannels (0) */
} mr_ismrmrd_hdr;

/* Parse an XML header (namespace http://www.ismrm.org/ISMRMRD; libxml2). `source` names the file
 * and dataset for messages. MR_ERR_INPUT when the XML is malformed or encodedSpace is missing. */
mr_status mr_ismrmrd_hdr_parse(mr_ismrmrd_hdr *out, const char *xml, size_t len, const char *source);

/* Write a minimal valid ISMRMRD header for `h` (encoding with encodedSpace, reconSpace,
 * encodingLimits, trajectory cartesian; measurementInformation/protocolName when set). The caller
 * frees *out_xml with free(). */
mr_status mr_ismrmrd_hdr_format(char **out_xml, const mr_ismrmrd_hdr *h);

/* fastMRI's phase-encode placement from a header (REFERENCE.md): padding_left = enc_y/2 - center,
 * padding_right = padding_left + maximum + 1. Without limits: 0 and width. */
void mr_ismrmrd_hdr_padding(long *pad_left, long *pad_right, const mr_ismrmrd_hdr *h, size_t width);

/* ================================================================ fastMRI HDF5 */

typedef struct mr_fastmri_file mr_fastmri_file;

typedef struct {
    int has_kspace;
    int multicoil;                   /* 1: kspace (S,C,H,W); 0: kspace (S,H,W), coils = 1 */
    size_t slices, coils, height, width;
    int has_mask;                    /* 1-D `mask` over the W columns */
    size_t mask_len;
    int has_header;                  /* `ismrmrd_header` present and parsed */
    mr_ismrmrd_hdr hdr;
    const char *header_xml;          /* owned by the file; NULL when absent */
    char ref_name[64];               /* "reconstruction_rss" / "reconstruction_esc" / "" */
    int ref_ndim;
    size_t ref_dims[4];              /* shape of ref_name */
    int has_reconstruction;          /* a `reconstruction` dataset (mrpipe output) */
    char acquisition[128];           /* attribute `acquisition` ("" if absent) */
    char patient_id[128];            /* attribute `patient_id` ("" if absent) */
    char mrpipe_method[64];          /* attribute `mrpipe_method` of mrpipe outputs ("" if absent) */
    int has_max, has_norm, has_acceleration, has_num_low;
    double max, norm, acceleration;
    long num_low_frequency;
} mr_fastmri_info;

/* Open a fastMRI-layout file for streaming. Validates the layout: `kspace` rank 3 or 4 and a
 * complex dtype (compound of two float32/float64 members "r","i"), the header parses. A file with no
 * `kspace` opens (images only) and has_kspace = 0. */
mr_status mr_fastmri_open(mr_fastmri_file **out, const char *path);

const mr_fastmri_info *mr_fastmri_get_info(const mr_fastmri_file *f);

/* Read one slice of k-space, (C, H, W) complex64 (C = 1 for single-coil), by hyperslab.
 * MR_ERR_INPUT when it holds NaN or Inf (message: file, dataset, slice, first bad index). */
mr_status mr_fastmri_read_kspace_slice(mr_fastmri_file *f, size_t slice, mr_cfloat *out);

/* Read `mask` as 0/1 floats (mask_len values). */
mr_status mr_fastmri_read_mask(mr_fastmri_file *f, float *out);

/* Read a numeric root attribute of at most cap values into v; *n = how many (0 when absent: not an
 * error). MR_ERR_INPUT naming file and attribute for a non-numeric one, more than cap values or
 * a value that is not finite. */
mr_status mr_fastmri_read_attr_doubles(mr_fastmri_file *f, const char *name, double *v, size_t cap,
                                       size_t *n);

/* Read a real float dataset (any rank <= 4, converted to float32) into a new array. */
mr_status mr_fastmri_read_image(mr_fastmri_file *f, const char *dataset, mr_array **out);

/* Does the file hold a dataset with this name? */
int mr_fastmri_has_dataset(const mr_fastmri_file *f, const char *dataset);

void mr_fastmri_close(mr_fastmri_file *f);

typedef struct mr_fastmri_writer mr_fastmri_writer;

/* Start writing `path` (under a temporary name until commit). */
mr_status mr_fastmri_writer_create(mr_fastmri_writer **out, const char *path);

/* Create the `kspace` dataset, complex64 compound {r,i} as h5py writes it, chunked by slice:
 * (S,C,H,W) when multicoil, else (S,H,W). Then write slices in any order. */
mr_status mr_fastmri_writer_kspace_begin(mr_fastmri_writer *w, int multicoil, size_t slices,
                                         size_t coils, size_t height, size_t width);
mr_status mr_fastmri_writer_kspace_slice(mr_fastmri_writer *w, size_t slice, const mr_cfloat *data);

/* Write a float32 dataset (e.g. "reconstruction_rss", "reconstruction") of the array's shape. */
mr_status mr_fastmri_writer_image(mr_fastmri_writer *w, const char *name, const mr_array *a);

/* Write `mask` as a 1-D boolean (numpy bool = HDF5 enum {FALSE,TRUE} of int8, as h5py writes it). */
mr_status mr_fastmri_writer_mask(mr_fastmri_writer *w, const float *mask, size_t len);

/* Write `ismrmrd_header` as a scalar fixed-length byte string (h5py reads it as bytes). Readers
 * accept fixed- and variable-length strings. */
mr_status mr_fastmri_writer_header(mr_fastmri_writer *w, const char *xml);

/* File attributes (root group). */
mr_status mr_fastmri_writer_attr_double(mr_fastmri_writer *w, const char *name, double value);
mr_status mr_fastmri_writer_attr_string(mr_fastmri_writer *w, const char *name, const char *value);
/* A 1-D float64 attribute of n values (n >= 1). */
mr_status mr_fastmri_writer_attr_doubles(mr_fastmri_writer *w, const char *name, const double *v,
                                         size_t n);

/* Close, flush and rename into place; frees w (also on failure, after removing the temporary). */
mr_status mr_fastmri_writer_commit(mr_fastmri_writer *w);

/* Close and remove the temporary file; frees w. NULL is a no-op. */
void mr_fastmri_writer_abort(mr_fastmri_writer *w);

/* ================================================================ ISMRMRD v1 HDF5 */

typedef struct {
    mr_array *kspace;      /* (S, C, H, W) complex64, H = encoded x (readout, oversampling kept),
                              W = encoded y; lines placed at idx.kspace_encode_step_1; repetitions
                              and averages of the same line are averaged */
    mr_array *noise;       /* (N, C) complex64 noise samples (flag 19), or NULL */
    mr_ismrmrd_hdr hdr;
    char *xml;             /* the header text, owned */
    size_t n_acquisitions; /* imaging acquisitions used */
    size_t n_noise;        /* noise acquisitions seen */
} mr_ismrmrd_data;

/* Read a Cartesian ISMRMRD v1 file (dataset group "/dataset"). Noise scans are returned in `noise`
 * when keep_noise, else skipped. Calibration lines (flag 20) are used as imaging lines. Errors
 * name the file and the acquisition number. */
mr_status mr_ismrmrd_read(mr_ismrmrd_data *out, const char *path, int keep_noise);

void mr_ismrmrd_data_free(mr_ismrmrd_data *d);

/* ================================================================ BART .cfl/.hdr */

/* Read a .cfl/.hdr pair ("x", "x.cfl" or "x.hdr" all name it) into a complex64 array
 * (S, C, H, W) from BART dims d13, d3, d0, d1. Other dims must be 1 (else MR_ERR_INPUT naming the
 * dim). Validates the .hdr (16 dims max, positive, no overflow) against the .cfl size. */
mr_status mr_cfl_read(mr_array **out, const char *path);

/* Read the raw BART dims only (16 values, 1-padded). */
mr_status mr_cfl_read_dims(long dims[16], const char *path);

/* Write an array as .cfl/.hdr. Accepts (H,W), (S,H,W) -> d0,d1,d13 and (S,C,H,W) -> d0,d1,d3,d13;
 * float32 arrays are written as complex with zero imaginary part. Both files are written under
 * temporary names and renamed when complete. */
mr_status mr_cfl_write(const char *path, const mr_array *a);

/* ================================================================ NIfTI-1 */

/* Geometry and identity carried from an input volume to outputs. */
typedef struct {
    int valid;                /* 0: no source header (outputs get a 1 mm identity affine) */
    unsigned char raw[348];   /* the source's header bytes, for the fields mrpipe does not change */
    double affine[4][4];      /* voxel (i,j,k) -> RAS mm, from sform (code > 0) else qform */
    float pixdim[3];          /* voxel sizes i, j, k in mm */
    int intent_code;          /* e.g. 1002 = label atlas */
} mr_nifti_meta;

/* Read a NIfTI-1 volume (.nii or .nii.gz; 2-D, 3-D, or 4-D with one volume) of any standard
 * datatype into float32 (S, H, W) = (k, j, i), scl_slope/scl_inter applied. meta may be NULL. */
mr_status mr_nifti_read(mr_array **out, mr_nifti_meta *meta, const char *path);

/* Quaternion (b, c, d) and qfac (+1, or -1 for a left-handed frame) of an affine's rotation, its
 * columns normalised by their lengths (NIfTI-1 method 2 inverted). */
void mr_nifti_quatern_from_affine(double quat[3], double *qfac, const double A[4][4]);

/* Write a float32 (S,H,W) or (H,W) array as NIfTI-1 float32 (gzip when the name ends in .gz),
 * keeping meta's affine and pixdim when meta->valid and its in-plane size matches. */
mr_status mr_nifti_write(const char *path, const mr_array *a, const mr_nifti_meta *meta);

/* ================================================================ PNG previews */

/* Write an 8-bit grayscale PNG of an (h, w) image, mapping [lo, hi] to [0, 255] (clamped). */
mr_status mr_png_write_gray(const char *path, const float *img, size_t h, size_t w, float lo,
                            float hi);

/* Write an 8-bit RGB PNG from interleaved rgb (h, w, 3). */
mr_status mr_png_write_rgb(const char *path, const unsigned char *rgb, size_t h, size_t w);

/* Write a float32 (S,H,W) or (H,W) volume as one PNG: a montage grid of its slices, windowed from
 * 0 (or the minimum when negative) to the 99.5th percentile of the volume. */
mr_status mr_png_write_volume(const char *path, const mr_array *a);

/* Window [lo, hi] = percentiles plo, phi (0..100) of img (n values). */
void mr_window_percentile(float *lo, float *hi, const float *img, size_t n, double plo, double phi);

/* ================================================================ k-space sources */

/* One interface over every k-space input: fastMRI .h5 (streamed), ISMRMRD .h5, BART .cfl. */
typedef struct mr_kspace_source mr_kspace_source;

typedef struct {
    mr_format format;
    size_t slices, coils, height, width; /* each slice is (C, H, W) complex64, H = readout */
    int has_header;                      /* an ISMRMRD header was found (fastMRI or ISMRMRD) */
    mr_ismrmrd_hdr hdr;
    size_t recon_h, recon_w;             /* in-plane output size: header reconSpace, else the
                                            shape of reconstruction_rss/_esc, else (H, W) */
    long pad_left, pad_right;            /* phase-encode columns holding data: [left, right) */
    int has_mask;                        /* the file carries a 1-D `mask` over W */
    int has_noise;                       /* noise samples available (ISMRMRD flag 19) */
    const char *header_xml;              /* the ISMRMRD header text (owned by the source) or NULL */
} mr_kspace_info;

mr_status mr_kspace_open(mr_kspace_source **out, const char *path);
const mr_kspace_info *mr_kspace_get_info(const mr_kspace_source *src);

/* Read slice s into out (C*H*W complex64). MR_ERR_INPUT on NaN/Inf. */
mr_status mr_kspace_read_slice(mr_kspace_source *src, size_t s, mr_cfloat *out);

/* The file's mask (W values 0/1) when has_mask. */
mr_status mr_kspace_read_mask(mr_kspace_source *src, float *out);

/* A copy of the noise samples (N, C) complex64 when has_noise (ISMRMRD noise acquisitions, flag 19,
 * in acquisition order); the caller destroys *out. MR_ERR_INPUT naming the file otherwise. */
mr_status mr_kspace_read_noise(mr_kspace_source *src, mr_array **out);

/* The fastMRI file handle behind the source (NULL for other formats), e.g. to read a reference. */
mr_fastmri_file *mr_kspace_fastmri(mr_kspace_source *src);

void mr_kspace_close(mr_kspace_source *src);

/* ================================================================ image volumes (metrics, reports) */

/* Load a magnitude image volume as float32 (S, H, W) (a 2-D image becomes (1, H, W)) from `spec`:
 *  - "file.h5": fastMRI-layout HDF5; with prefer_reference the first of reconstruction_rss,
 *    reconstruction_esc, reconstruction, otherwise the first of reconstruction, reconstruction_rss,
 *    reconstruction_esc; "file.h5:NAME" reads the dataset NAME;
 *  - "file.nii" / "file.nii.gz": NIfTI-1 (slices are planes of constant k);
 *  - "file.cfl" (or "file"): BART; (S, 1, H, W) only, more than one coil is an error naming the dims.
 * Complex data (BART, HDF5 compound {r, i}) becomes its magnitude. DICOM is recognised and refused
 * (MR_ERR_INPUT, "not available yet (issue 7)"), ISMRMRD k-space too. `desc` (desc_size bytes,
 * may be 0) receives what was read, e.g. "file.h5:reconstruction_rss". MR_ERR_INPUT naming the file
 * (and dataset) for a missing or unreadable file or a dataset of another shape. */
mr_status mr_image_load(mr_array **out, char *desc, size_t desc_size, const char *spec,
                        int prefer_reference);

/* ================================================================ DICOM (docs/dicom.md) */

/* Reading MR images from DICOM (PS3.10 files, directories, DICOMDIR) into volumes, and writing
 * derived series as MR Image Storage (PS3.3 A.4), through the DCMTK shim. */

#define MR_DICOM_UID_SIZE 65    /* a UID is at most 64 characters (PS3.5 9.1) */
#define MR_DICOM_TAG(group, element) ((uint32_t)(((uint32_t)(group) << 16) | (uint32_t)(element)))
#define MR_DICOM_MAX_ATTRS 48
#define MR_DICOM_VALUE_SIZE 324 /* longest copied value (LO/PN/DS lists) + NUL */

/* One attribute as DICOM text (values separated by '\'); tag = group << 16 | element. */
typedef struct {
    uint32_t tag;
    char value[MR_DICOM_VALUE_SIZE];
} mr_dicom_attr;

/* A small list of attributes carried from a source to derived series. Plain data. */
typedef struct {
    size_t count;
    mr_dicom_attr attr[MR_DICOM_MAX_ATTRS];
} mr_dicom_attrs;

/* Value of `tag` in the list (NULL when absent). */
const char *mr_dicom_attrs_get(const mr_dicom_attrs *list, uint32_t tag);

/* Set (replace or append) `tag`; MR_ERR_INTERNAL when the list is full or the value too long. */
mr_status mr_dicom_attrs_set(mr_dicom_attrs *list, uint32_t tag, const char *value);

/* Remove `tag` from the list (no-op when absent). */
void mr_dicom_attrs_remove(mr_dicom_attrs *list, uint32_t tag);

/* One series found under a path. Plain data. */
typedef struct {
    char series_uid[MR_DICOM_UID_SIZE];
    char study_uid[MR_DICOM_UID_SIZE];
    char sop_class_uid[MR_DICOM_UID_SIZE]; /* of the first instance */
    char modality[17];                     /* (0008,0060), "" when absent */
    char description[65];                  /* SeriesDescription (0008,103E), "" when absent */
    long series_number;                    /* SeriesNumber (0020,0011), -1 when absent */
    size_t files;                          /* instances (files) of the series */
    size_t images;                         /* frames: NumberOfFrames summed (1 per single frame) */
    size_t rows, cols;                     /* of the first image (0 when it has none) */
    int enhanced;                          /* a multi-frame (functional groups) object */
    /* identifying: print only when asked (mrpipe info --show-patient) */
    char patient_name[65], patient_id[65], patient_birth_date[9], patient_sex[17];
    /* Multi-echo / multi-volume series: when the images of one SeriesInstanceUID differ by
     * EchoNumbers (0018,0086), TemporalPositionIdentifier (0020,0100) or EchoTime (0018,0081)
     * (Enhanced MR: per-frame EffectiveEchoTime (0018,9082), TemporalPositionIndex (0020,9128)),
     * the set lists one entry per volume (same series_uid, files/images counted per volume), in
     * the order time point then echo; select one with "UID:<label>" (mr_dicom_series_spec). */
    size_t volume;          /* 1-based volume within its series; 0 when the series is one volume */
    size_t volumes;         /* volumes the series was split into (1: not split) */
    char label[32];         /* "echo2", "time3", "time3_echo2" ("" when not split): the echo
                               label is EchoNumbers when present, else the rank by EchoTime */
    long echo_number;       /* EchoNumbers of the volume's first image, -1 when absent */
    double echo_time;       /* EchoTime in ms of the volume's first image, -1 when absent */
    long temporal_position; /* TemporalPositionIdentifier (or index), -1 when absent */
} mr_dicom_series_info;

/* Longest selection spec: a UID, ':' and a label. */
#define MR_DICOM_SPEC_SIZE (MR_DICOM_UID_SIZE + 33)

/* How to name this entry for mr_dicom_set_select / --series: "UID" for a series that is one volume,
 * "UID:<label>" (e.g. "1.2.3:echo2") for one volume of a split series. Returns buf. */
const char *mr_dicom_series_spec(char buf[MR_DICOM_SPEC_SIZE], const mr_dicom_series_info *s);

/* What a path holds: the series found in a file, a directory (searched recursively; a DICOMDIR in
 * it is used when present) or a DICOMDIR. */
typedef struct mr_dicom_set mr_dicom_set;

/* Scan `path` (headers only; pixel data is read by mr_dicom_volume_read). Files that are not DICOM
 * are skipped in a directory (counted, see mr_dicom_set_skipped) and an error for a single file.
 * MR_ERR_INPUT when nothing DICOM is found (the message names the path and what was seen). */
mr_status mr_dicom_set_open(mr_dicom_set **out, const char *path);

size_t mr_dicom_set_count(const mr_dicom_set *set);
const mr_dicom_series_info *mr_dicom_set_series(const mr_dicom_set *set, size_t index);

/* Files in a directory scan that were not DICOM (or not images: SR, DICOMDIR ...). */
size_t mr_dicom_set_skipped(const mr_dicom_set *set);

/* Pick a series: by UID (MR_ERR_INPUT naming the UIDs found when it is not there), or, with
 * series_uid NULL, the only one (MR_ERR_INPUT "found N series; choose one with its UID:" + each
 * UID, number, description and size when there are several). A series split into volumes (echoes,
 * time points) is picked with "UID:<label>" (mr_dicom_series_spec, e.g. "UID:echo2"); its bare UID
 * (or NULL when it is the only series) is MR_ERR_INPUT listing each "UID:<label>" to choose from. */
mr_status mr_dicom_set_select(size_t *index, const mr_dicom_set *set, const char *series_uid);

/* Free the set; NULL is a no-op. */
void mr_dicom_set_close(mr_dicom_set *set);

/* Where a volume's voxels are, in DICOM patient coordinates (LPS, mm). Plain data. */
typedef struct {
    size_t slices, rows, cols;  /* S, H, W */
    double row_dir[3];          /* ImageOrientationPatient[0:3]: along a row (W increasing) */
    double col_dir[3];          /* ImageOrientationPatient[3:6]: down a column (H increasing) */
    double normal[3];           /* row_dir x col_dir: slice k + 1 is further along it */
    double origin[3];           /* ImagePositionPatient of slice 0: centre of voxel (0, 0, 0) */
    double pixel_spacing[2];    /* PixelSpacing order: [0] between rows (H), [1] between columns (W) */
    double slice_spacing;       /* between slice centres along the normal (mm) */
    double slice_thickness;     /* SliceThickness (0 when unknown) */
} mr_dicom_geometry;

/* voxel (i, j, k) = (W, H, S) index -> RAS mm (NIfTI's convention: LPS with x and y negated). */
void mr_dicom_geometry_affine(double affine[4][4], const mr_dicom_geometry *g);

/* A NIfTI header for a volume of this geometry (sform and qform, codes 1 = scanner), for
 * mr_nifti_write. */
void mr_dicom_geometry_nifti(mr_nifti_meta *meta, const mr_dicom_geometry *g);

/* The source instance (and frame) an image came from. */
typedef struct {
    char sop_class_uid[MR_DICOM_UID_SIZE];
    char sop_instance_uid[MR_DICOM_UID_SIZE];
    long frame; /* 1-based frame of a multi-frame instance, 0 for a single-frame one */
} mr_dicom_ref;

/* What derived series inherit: geometry, identity and acquisition attributes, source images.
 * Free the refs with mr_dicom_source_free. */
typedef struct {
    mr_dicom_geometry geom;
    mr_dicom_series_info series;  /* the series read (empty for k-space sources) */
    mr_dicom_attrs identity;      /* Patient, General Study, Frame of Reference attributes */
    mr_dicom_attrs acquisition;   /* MR acquisition attributes (ScanningSequence, TR, TE, ...) */
    mr_dicom_ref *refs;           /* geom.slices entries (NULL when there are no source images) */
    int anonymized;               /* identity de-identified: no references to source instances */
} mr_dicom_source;

/* A volume read from DICOM. */
typedef struct {
    mr_array *data;       /* (S, H, W) float32: RescaleSlope x stored + RescaleIntercept, MONOCHROME1
                             inverted (max + min - value) so that bright is high signal */
    mr_dicom_source src;
} mr_dicom_volume;

/* Read series `index` of the set into a volume: slices sorted by position along the slice normal
 * (ImageOrientationPatient row x column . ImagePositionPatient), not by file name; multi-frame
 * objects by their per-frame / shared functional groups; compressed transfer syntaxes decoded.
 * require_mr: Modality must be MR. MR_ERR_INPUT, naming the file and the tag, for a non-MR modality,
 * missing pixel data, an unsupported transfer syntax (JPEG 2000), colour images, and inconsistent
 * geometry (different sizes, orientations or pixel spacings, uneven slice gaps, two images at one
 * position). */
mr_status mr_dicom_volume_read(mr_dicom_volume **out, const mr_dicom_set *set, size_t index,
                               int require_mr);

/* Free the volume; NULL is a no-op. */
void mr_dicom_volume_destroy(mr_dicom_volume *vol);

/* A source for k-space input (no DICOM): geometry from the ISMRMRD header's reconSpace field of view
 * (pixel spacing = FOV / matrix; slice thickness = FOV z; 1 mm when absent), a nominal axial
 * orientation centred on the origin (the XML header carries no orientation), a new study and frame
 * of reference, PatientID only when the header has one. hdr may be NULL. */
mr_status mr_dicom_source_from_ismrmrd(mr_dicom_source *out, const mr_ismrmrd_hdr *hdr,
                                       size_t slices, size_t rows, size_t cols);

/* De-identify per PS3.15 Annex E, Basic Application Level Confidentiality Profile: patient name and
 * ID replaced (by `pseudonym`, or "ANONYMOUS"), birth date and other identifying patient, study and
 * acquisition attributes removed or emptied, Study and Frame of Reference UIDs replaced by new ones,
 * PatientIdentityRemoved YES; geometry is kept. References to source instances are dropped. */
mr_status mr_dicom_source_anonymize(mr_dicom_source *src, const char *pseudonym);

/* Copy src into *out (refs duplicated). */
mr_status mr_dicom_source_copy(mr_dicom_source *out, const mr_dicom_source *src);

/* Free what the source owns (refs); the struct itself is the caller's. */
void mr_dicom_source_free(mr_dicom_source *src);

/* A new UID "2.25.<decimal of a random (version 4) UUID>" (PS3.5 B.2), from /dev/urandom. */
mr_status mr_dicom_uid_create(char uid[MR_DICOM_UID_SIZE]);

/* A series written. Free with mr_dicom_written_free. */
typedef struct {
    char series_uid[MR_DICOM_UID_SIZE];
    char study_uid[MR_DICOM_UID_SIZE];
    char sop_class_uid[MR_DICOM_UID_SIZE];
    long series_number;
    char dir[4096];               /* OUT_DIR/<SeriesNumber>_<description> */
    size_t count;                 /* instances */
    char (*sop_uids)[MR_DICOM_UID_SIZE]; /* count SOPInstanceUIDs, slice order */
} mr_dicom_written;

void mr_dicom_written_free(mr_dicom_written *w);

/* How a derived series describes itself. */
typedef struct {
    const char *description;   /* SeriesDescription (<= 64 chars), e.g. "T2 AX mrpipe denoise"; its
                                  letters, digits, '-' and '_' (others become '_') name the folder */
    const char *derivation;    /* DerivationDescription: what was done (e.g. the command) */
    long series_number;        /* > 0; 0: the source's SeriesNumber + 1000 (1000 without one) */
    const char *config_hash;   /* second SoftwareVersions value ("config <hash>"); NULL: none */
    const char *image_type;    /* third ImageType value after DERIVED\SECONDARY (NULL: none) */
    const mr_dicom_written *linked; /* the image series this series belongs to (uncertainty maps):
                                       referenced per slice (ReferencedImageSequence) and in the
                                       ReferencedSeriesSequence; NULL: none */
} mr_dicom_series_params;

/* Write `data` (float32 (S, H, W), real-world units) as a derived MR Image Storage series, one
 * single-frame instance per slice, in OUT_DIR/<SeriesNumber>_<description>/IM_<nnnn>.dcm (nnnn from
 * 0001). Pixels are 16-bit (unsigned, or signed when the data has negative values) with
 * RescaleSlope/Intercept recording the scaling, so that stored x slope + intercept gives the data
 * back to 1/65535 of its range (exactly when the data are integers that fit). New Series and
 * SOPInstance UIDs; src's identity, acquisition attributes and geometry; SourceImageSequence to
 * src->refs. Written to a temporary folder in OUT_DIR and renamed when complete; OUT_DIR is created
 * when missing (its parent must exist); MR_ERR_IO when the series folder exists already.
 * MR_ERR_INPUT when the data's shape differs from src->geom or it holds NaN/Inf. */
mr_status mr_dicom_series_write(mr_dicom_written *out, const char *out_dir, const mr_array *data,
                                const mr_dicom_source *src, const mr_dicom_series_params *params);

/* Write an uncertainty map (a voxel-wise standard deviation, e.g. pseudo-multiple replicas or a
 * network's predicted SD) as its own derived MR series, linked to the image series it describes.
 * Call it after writing the image series with mr_dicom_series_write from the same `src`:
 *   out         the series written (free with mr_dicom_written_free; zeroed on failure)
 *   out_dir     the folder holding the image series; the SD series goes into
 *               out_dir/<image SeriesNumber + 1>_<description>/IM_<nnnn>.dcm (atomic, as
 *               mr_dicom_series_write; MR_ERR_IO when that folder exists)
 *   sd          float32 (S, H, W), S = image->count, finite and >= 0, in the image's units: stored
 *               as 16-bit with RescaleSlope/Intercept (RescaleType US), so stored x slope +
 *               intercept gives the SD back to 1/65535 of its maximum (exactly for integers)
 *   src         the source the image series was written from: same study, patient, frame of
 *               reference and geometry (ImagePositionPatient per slice, orientation, spacing);
 *               anonymized sources keep their new study UID (call on the same, already
 *               anonymized src)
 *   image       the image series written from src (its study UID must be src's)
 *   derivation  DerivationDescription (NULL: a default saying it is the SD in the image's units)
 *   config_hash second SoftwareVersions value ("config <hash>"), NULL: none
 * Each instance: ImageType DERIVED\SECONDARY\UNCERTAINTY (MR Image Type value 3 is a defined
 * term list, extended here; dciodvfy accepts it), SeriesDescription "<source description> mrpipe
 * uncertainty (SD)", SeriesNumber = image SeriesNumber + 1, ReferencedImageSequence to the image
 * instance of the same slice, ReferencedSeriesSequence (Common Instance Reference) to the image
 * series and its instance (and to the source series, as SourceImageSequence does to the source
 * instances when src has them). MR_ERR_INPUT for a shape that is not (image->count, H, W), a
 * negative or non-finite value, or another study; MR_ERR_USAGE without an image series. */
mr_status mr_dicom_uncertainty_write(mr_dicom_written *out, const char *out_dir, const mr_array *sd,
                                     const mr_dicom_source *src, const mr_dicom_written *image,
                                     const char *derivation, const char *config_hash);

/* A DICOM peer (a PACS): "AET@HOST:PORT". */
typedef struct {
    char aet[17];   /* called AE title, 1..16 characters */
    char host[256];
    int port;       /* 1..65535 */
} mr_dicom_peer;

/* Parse "AET@HOST:PORT"; MR_ERR_USAGE saying what is wrong. */
mr_status mr_dicom_peer_parse(mr_dicom_peer *out, const char *spec);

/* Send a written series to the peer with C-STORE (PS3.4 B, one association, explicit or implicit VR
 * little endian) as calling_aet (NULL: "MRPIPE"). A failed connection is retried `retries` times
 * (1 s, 2 s, ... apart); a refused association or a failure status is not retried. MR_ERR_IO with a
 * message naming the peer and what it answered. */
mr_status mr_dicom_send(const mr_dicom_peer *peer, const char *calling_aet,
                        const mr_dicom_written *series, int retries);

/* mr_dicom_send with the connection, association and DIMSE timeout in seconds (mr_dicom_send: 30;
 * <= 0: 30). */
mr_status mr_dicom_send_timeout(const mr_dicom_peer *peer, const char *calling_aet,
                                const mr_dicom_written *series, int retries, int timeout_s);

/* Fetch a series from the peer with C-GET (PS3.4 C.4.3, Study Root, SERIES level) into
 * out_dir/<series_uid>/ (out_dir is created when missing; the series folder is filled under a
 * temporary name and renamed when complete; MR_ERR_IO when it exists already). Retries as
 * mr_dicom_send. *received (may be NULL) = instances stored. MR_ERR_INPUT when the peer has no such
 * series, MR_ERR_IO for refusals and network failures. */
mr_status mr_dicom_fetch(size_t *received, const mr_dicom_peer *peer, const char *calling_aet,
                         const char *study_uid, const char *series_uid, const char *out_dir,
                         int retries);

/* Fetch a series with C-MOVE (PS3.4 C.4.2, Study Root, SERIES level) instead of C-GET: mrpipe runs
 * a temporary storage SCP with AE title dest_aet on dest_port (all interfaces) while the peer
 * sends the instances to it on a second association. The peer must know dest_aet with this host
 * and port (Orthanc: DicomModalities). Same output, atomicity, retries and errors as
 * mr_dicom_fetch; MR_ERR_IO also when the port cannot be opened (in use) or the peer does not know
 * dest_aet (status 0xA801), or when fewer instances arrived than the peer reports as sent. */
mr_status mr_dicom_fetch_move(size_t *received, const mr_dicom_peer *peer, const char *calling_aet,
                              const char *study_uid, const char *series_uid, const char *out_dir,
                              const char *dest_aet, int dest_port, int retries);

/* C-FIND matching keys (NULL: any). Values are matched by the peer as PS3.4 C.2.2.2 says: a UID
 * exactly (single value), PatientID and Modality exactly or with the wildcards '*' and '?'. */
typedef struct {
    const char *patient_id; /* PatientID (0010,0020) */
    const char *study_uid;  /* StudyInstanceUID (0020,000D) */
    const char *series_uid; /* SeriesInstanceUID (0020,000E) */
    const char *modality;   /* Modality (0008,0060), e.g. "MR" */
} mr_dicom_query_keys;

/* A series found by mr_dicom_query. Plain data; "" / -1 when the peer did not return a value. */
typedef struct {
    char patient_id[65];
    char study_uid[MR_DICOM_UID_SIZE];
    char study_date[9];
    char study_description[65];
    char series_uid[MR_DICOM_UID_SIZE];
    char modality[17];
    char description[65]; /* SeriesDescription */
    long series_number;
    long instances;       /* NumberOfSeriesRelatedInstances (0020,1209) */
} mr_dicom_found_series;

/* Query the peer with C-FIND (PS3.4 C.4.1, Study Root, hierarchical): STUDY level with PatientID /
 * StudyInstanceUID, then SERIES level in each study with SeriesInstanceUID / Modality. *out (free()
 * it) receives *count series sorted by study date, study UID, series number; none found is MR_OK
 * with *count 0. Retries of failed connections as mr_dicom_send; MR_ERR_USAGE for a key that is
 * not one printable value of <= 64 characters; MR_ERR_IO for refusals, failure statuses and
 * network failures. */
mr_status mr_dicom_query(mr_dicom_found_series **out, size_t *count, const mr_dicom_peer *peer,
                         const char *calling_aet, const mr_dicom_query_keys *keys, int retries);

/* An instance found by mr_dicom_query_instances. */
typedef struct {
    char sop_instance_uid[MR_DICOM_UID_SIZE];
    char sop_class_uid[MR_DICOM_UID_SIZE];
    long instance_number; /* -1 when not returned */
} mr_dicom_found_instance;

/* The instances of one series (C-FIND at IMAGE level), sorted by InstanceNumber; *out: free(). */
mr_status mr_dicom_query_instances(mr_dicom_found_instance **out, size_t *count,
                                   const mr_dicom_peer *peer, const char *calling_aet,
                                   const char *study_uid, const char *series_uid, int retries);

#ifdef __cplusplus
}
#endif

#endif /* MR_IO_H */
