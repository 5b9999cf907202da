/*
 * output.c: write a reconstructed volume to whichever format the output path names: fastMRI-layout
 * .h5 (float32 `reconstruction` (S,H,W)), BART .cfl (complex64 d0=H, d1=W, d13=S), NIfTI
 * (magnitude, keeping a source's geometry) or a PNG montage. Every writer is atomic.
 */
#include "mr_output.h"

#include <stdio.h>
#include <string.h>

mr_status mr_output_write_volume(const char *path, const mr_array *mag, const mr_array *cplx,
                                 const mr_output_extra *extra)
{
    mr_format fmt;
    mr_status st = mr_io_detect_output(&fmt, path);
    if (st != MR_OK) return st;
    switch (fmt) {
    case MR_FMT_FASTMRI: {
        mr_fastmri_writer *w = NULL;
        double maxv = 0;
        size_t n = mr_array_numel(mag);
        const float *m = mr_array_f32(mag);
        for (size_t i = 0; i < n; i++)
            if (m[i] > maxv) maxv = m[i];
        if ((st = mr_fastmri_writer_create(&w, path)) != MR_OK) return st;
        st = mr_fastmri_writer_image(w, "reconstruction", mag);
        if (st == MR_OK) st = mr_fastmri_writer_attr_double(w, "max", maxv);
        if (st == MR_OK && extra && extra->header_xml)
            st = mr_fastmri_writer_header(w, extra->header_xml);
        if (st == MR_OK && extra && extra->acquisition && extra->acquisition[0])
            st = mr_fastmri_writer_attr_string(w, "acquisition", extra->acquisition);
        if (st == MR_OK && extra && extra->mask)
            st = mr_fastmri_writer_mask(w, extra->mask, extra->mask_len);
        if (st == MR_OK && extra && extra->method)
            st = mr_fastmri_writer_attr_string(w, "mrpipe_method", extra->method);
        if (st == MR_OK) st = mr_fastmri_writer_attr_string(w, "mrpipe_version", MR_VERSION_STRING);
        if (st != MR_OK) {
            mr_fastmri_writer_abort(w);
            return st;
        }
        return mr_fastmri_writer_commit(w);
    }
    case MR_FMT_CFL: return mr_cfl_write(path, cplx ? cplx : mag);
    case MR_FMT_NIFTI: return mr_nifti_write(path, mag, extra ? extra->nifti : NULL);
    case MR_FMT_PNG: return mr_png_write_volume(path, mag);
    default:
        return mr_error_set(MR_ERR_USAGE, "%s: cannot write a volume as %s", path,
                            mr_format_name(fmt));
    }
}
