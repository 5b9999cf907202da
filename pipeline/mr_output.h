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
    const mr_nifti_meta *nifti; /* geometry for NIfTI outputs */
} mr_output_extra;

/* Write mag (float32 (S,H,W)) to path; .cfl outputs use cplx (complex64 (S,H,W)) when given, else
 * the magnitude with zero imaginary part. */
mr_status mr_output_write_volume(const char *path, const mr_array *mag, const mr_array *cplx,
                                 const mr_output_extra *extra);

#endif
