/*
 * mr_output.h: pipeline-internal: writing result volumes in any output format.
 */
#ifndef MR_OUTPUT_H
#define MR_OUTPUT_H

#include "mr_core.h"
#include "mr_io.h"

/* What an output carries besides the image (all optional). */
typedef struct {
    const char *header_xml;    /* ISMRMRD header of the input (.h5 outputs) */
    const char *acquisition;   /* fastMRI `acquisition` attribute */
    const float *mask;         /* 1-D column mask applied (.h5 outputs) */
    size_t mask_len;
    const char *method;        /* reconstruction method name */
    const double *noise_sd;    /* per slice, the k-space noise SD estimated by recon (image units;
                                  .h5 outputs: attribute mrpipe_noise_sd), or NULL */
    size_t n_noise_sd;
    int coils;                 /* the receive coils (.h5 attribute mrpipe_coils), or 0 */
    double mask_difficulty;    /* mr_mask_difficulty of the k-space it came from (.h5 attribute
                                  mrpipe_mask_difficulty), or 0 */
    const mr_nifti_meta *nifti; /* geometry for NIfTI outputs */
    /* DICOM outputs (a folder, docs/dicom.md): */
    const mr_dicom_source *dicom; /* the source series; NULL: from header_xml (k-space input) */
    const char *description;   /* SeriesDescription [mrpipe <method>] */
    const char *derivation;    /* DerivationDescription (what was done) */
    const char *config_hash;   /* recorded in SoftwareVersions */
    long series_number;        /* 0: the source's + 1000 */
    int anonymize;             /* PS3.15 basic profile de-identification */
    mr_dicom_written *written; /* receives the written series (caller frees), or NULL */
    const mr_dicom_written *linked; /* the image series an SD series belongs to (referenced per
                                       slice), or NULL */
    /* Uncertainty (issue 6, docs/uncertainty.md): */
    const mr_array *uncertainty; /* float32 SD map of mag's shape: an `uncertainty` dataset next to
                                    `reconstruction` in .h5 outputs; NULL: none */
    const mr_array *bootstrap_map; /* float32 (S,H,W): the model's parametric bootstrap map
                                      (denoise --uncertainty bootstrap), dataset `bootstrap_sd` of
                                      .h5 outputs (the image's and the SD map's); NULL: none */
} mr_output_extra;

/* Format of an output path: a folder (a path ending in '/' or an existing folder) is a derived DICOM
 * series (MR_FMT_DICOM); otherwise by extension (mr_io_detect_output). */
mr_status mr_output_detect(mr_format *fmt, const char *path);

/* Write mag (float32 (S,H,W)) to path; .cfl outputs use cplx (complex64 (S,H,W)) when given, else
 * the magnitude with zero imaginary part. A folder gets a derived DICOM series in
 * path/<SeriesNumber>_<description>/. */
mr_status mr_output_write_volume(const char *path, const mr_array *mag, const mr_array *cplx,
                                 const mr_output_extra *extra);

/* ---- uncertainty maps (issue 6) */

/* The default path of the separate SD map: out with `_sd` before the extension (recon.h5 ->
 * recon_sd.h5, a.nii.gz -> a_sd.nii.gz, a DICOM folder dir/ -> dir_sd/). MR_ERR_USAGE when it
 * does not fit in n bytes. */
mr_status mr_output_sd_path(char *buf, size_t n, const char *out);

/* Write an SD map sd (float32 (S,H,W)) to path, any output format, atomically: .h5 (dataset
 * `uncertainty`, attribute mrpipe_uncertainty = kind), .cfl (zero imaginary part), NIfTI (extra's
 * geometry), a DICOM series (description "<method> uncertainty SD"), or a PNG: the slices' montage
 * in the inferno colour map from 0 to the map's 99.5th percentile, with a colour bar on the right
 * (bottom 0, top the window's maximum, which is logged). kind: e.g. "replica". */
mr_status mr_output_write_uncertainty(const char *path, const mr_array *sd, const char *kind,
                                      const mr_output_extra *extra);

#endif
