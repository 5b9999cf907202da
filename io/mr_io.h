/*
 * mr_io.h: the public header of mrpipe's I/O module.
 *
 * Formats: fastMRI-layout HDF5 (streamed slice by slice), ISMRMRD v1 HDF5, BART .cfl/.hdr, NIfTI-1
 * (.nii, .nii.gz), PNG previews; detection of DICOM inputs (reading comes with the DCMTK shim).
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

#ifdef __cplusplus
}
#endif

#endif /* MR_IO_H */
