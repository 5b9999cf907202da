/*
 * output.c: write a reconstructed volume to whichever format the output path names: fastMRI-layout
 * .h5 (float32 `reconstruction` (S,H,W)), BART .cfl (complex64 d0=H, d1=W, d13=S), NIfTI
 * (magnitude, keeping a source's geometry), a PNG montage, or a derived DICOM series in a folder.
 * Every writer is atomic.
 */
#include "mr_output.h"
#include "mr_validation.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

mr_status mr_output_detect(mr_format *fmt, const char *path)
{
    size_t n = strlen(path);
    if ((n > 0 && path[n - 1] == '/') || mr_path_is_dir(path)) {
        *fmt = MR_FMT_DICOM;
        return MR_OK;
    }
    return mr_io_detect_output(fmt, path);
}

/* A derived DICOM series from a DICOM source, or from the k-space input's ISMRMRD header. */
static mr_status write_dicom(const char *dir, const mr_array *mag, const mr_output_extra *extra)
{
    mr_dicom_source src;
    mr_dicom_series_params p;
    mr_dicom_written w;
    mr_ismrmrd_hdr hdr;
    char desc[160], deriv[256];
    const char *method = extra && extra->method ? extra->method : NULL;
    mr_status st;
    if (mag->ndim != 3)
        return mr_error_set(MR_ERR_INPUT, "%s: a DICOM series needs an (S, H, W) volume", dir);
    if (extra && extra->dicom)
        st = mr_dicom_source_copy(&src, extra->dicom);
    else {
        int has_hdr = extra && extra->header_xml &&
                      mr_ismrmrd_hdr_parse(&hdr, extra->header_xml, strlen(extra->header_xml),
                                           "ismrmrd_header") == MR_OK;
        mr_error_clear();
        st = mr_dicom_source_from_ismrmrd(&src, has_hdr ? &hdr : NULL, mag->dims[0], mag->dims[1],
                                          mag->dims[2]);
    }
    if (st == MR_OK && extra && extra->anonymize) st = mr_dicom_source_anonymize(&src, NULL);
    if (st != MR_OK) {
        mr_dicom_source_free(&src);
        return st;
    }
    snprintf(desc, sizeof desc, "%s%smrpipe%s%s",
             src.series.description[0] ? src.series.description : "",
             src.series.description[0] ? " " : "", method ? " " : "", method ? method : "");
    snprintf(deriv, sizeof deriv, "mrpipe %s%s%s", MR_VERSION_STRING, method ? ": " : "",
             method ? method : "");
    memset(&p, 0, sizeof p);
    p.description = extra && extra->description ? extra->description : desc;
    p.derivation = extra && extra->derivation ? extra->derivation : deriv;
    p.config_hash = extra ? extra->config_hash : NULL;
    p.series_number = extra ? extra->series_number : 0;
    p.linked = extra ? extra->linked : NULL;
    st = mr_dicom_series_write(&w, dir, mag, &src, &p);
    mr_dicom_source_free(&src);
    if (st != MR_OK) return st;
    MR_INFO("wrote DICOM series %ld (%zu images) to %s", w.series_number, w.count, w.dir);
    if (extra && extra->written)
        *extra->written = w;
    else
        mr_dicom_written_free(&w);
    return MR_OK;
}

mr_status mr_output_write_volume(const char *path, const mr_array *mag, const mr_array *cplx,
                                 const mr_output_extra *extra)
{
    mr_format fmt;
    mr_status st = mr_output_detect(&fmt, path);
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
        if (st == MR_OK && extra && extra->noise_sd && extra->n_noise_sd)
            st = mr_fastmri_writer_attr_doubles(w, "mrpipe_noise_sd", extra->noise_sd,
                                                extra->n_noise_sd);
        if (st == MR_OK && extra && extra->coils > 0)
            st = mr_fastmri_writer_attr_double(w, "mrpipe_coils", extra->coils);
        if (st == MR_OK && extra && extra->mask_difficulty > 0)
            st = mr_fastmri_writer_attr_double(w, "mrpipe_mask_difficulty",
                                               extra->mask_difficulty);
        if (st == MR_OK) st = mr_fastmri_writer_attr_string(w, "mrpipe_version", MR_VERSION_STRING);
        if (st == MR_OK && extra && extra->uncertainty)
            st = mr_fastmri_writer_image(w, "uncertainty", extra->uncertainty);
        if (st == MR_OK && extra && extra->uncertainty && extra->bootstrap_map)
            st = mr_fastmri_writer_image(w, "bootstrap_sd", extra->bootstrap_map);
        if (st != MR_OK) {
            mr_fastmri_writer_abort(w);
            return st;
        }
        return mr_fastmri_writer_commit(w);
    }
    case MR_FMT_CFL: return mr_cfl_write(path, cplx ? cplx : mag);
    case MR_FMT_NIFTI: return mr_nifti_write(path, mag, extra ? extra->nifti : NULL);
    case MR_FMT_PNG: return mr_png_write_volume(path, mag);
    case MR_FMT_DICOM: return write_dicom(path, mag, extra);
    default:
        return mr_error_set(MR_ERR_USAGE, "%s: cannot write a volume as %s", path,
                            mr_format_name(fmt));
    }
}

/* ================================================================ uncertainty maps (issue 6) */

mr_status mr_output_sd_path(char *buf, size_t n, const char *out)
{
    static const char *const exts[] = {".nii.gz", ".h5", ".cfl", ".nii", ".png", ".hdr", NULL};
    size_t len = strlen(out), stem = len;
    const char *ext = "";
    while (stem > 1 && out[stem - 1] == '/') stem--; /* a DICOM folder */
    if (stem == len)
        for (const char *const *e = exts; *e; e++) {
            size_t el = strlen(*e);
            if (len > el && !strcmp(out + len - el, *e)) {
                stem = len - el;
                ext = *e;
                break;
            }
        }
    if ((stem != len && !ext[0]) || (!ext[0] && mr_path_is_dir(out))) ext = "/";
    if ((size_t)snprintf(buf, n, "%.*s_sd%s", (int)stem, out, ext) >= n)
        return mr_error_set(MR_ERR_USAGE, "%s: path too long for its _sd map", out);
    return MR_OK;
}

/* PNG montage of sd (S, H, W) in inferno with a colour bar on the right. */
static mr_status write_sd_png(const char *path, const mr_array *sd)
{
    const size_t S = sd->ndim == 3 ? sd->dims[0] : 1;
    const size_t H = sd->dims[sd->ndim - 2], W = sd->dims[sd->ndim - 1];
    const float *v = mr_array_f32(sd);
    size_t cols = 1;
    while (cols * cols < S) cols++;
    const size_t rows = (S + cols - 1) / cols;
    const size_t bar_w = W / 16 > 8 ? W / 16 : 8, gap = 4;
    const size_t ow = cols * W + gap + bar_w, oh = rows * H;
    float lo, hi;
    unsigned char *rgb = mr_calloc(oh * ow * 3, 1);
    mr_status st;
    if (!rgb) return MR_ERR_NOMEM;
    mr_window_percentile(&lo, &hi, v, S * H * W, 0.0, 99.5);
    lo = 0;
    if (!(hi > lo)) hi = lo + 1;
    for (size_t s = 0; s < S; s++) {
        size_t ty = s / cols, tx = s % cols;
        for (size_t y = 0; y < H; y++)
            mr_colormap_apply(rgb + ((ty * H + y) * ow + tx * W) * 3, v + (s * H + y) * W, W, lo,
                              hi, MR_COLORMAP_INFERNO);
    }
    for (size_t y = 0; y < oh; y++) /* the bar: top = hi, bottom = 0 */
        for (size_t x = cols * W + gap; x < ow; x++)
            mr_colormap_rgb(rgb + (y * ow + x) * 3, MR_COLORMAP_INFERNO,
                            oh > 1 ? 1.0 - (double)y / (double)(oh - 1) : 1.0);
    st = mr_png_write_rgb(path, rgb, oh, ow);
    if (st == MR_OK) MR_INFO("%s: SD colour bar from 0 (bottom) to %.4g (top)", path, hi);
    free(rgb);
    return st;
}

mr_status mr_output_write_uncertainty(const char *path, const mr_array *sd, const char *kind,
                                      const mr_output_extra *extra)
{
    mr_format fmt;
    mr_status st = mr_output_detect(&fmt, path);
    if (st != MR_OK) return st;
    switch (fmt) {
    case MR_FMT_FASTMRI: {
        mr_fastmri_writer *w = NULL;
        if ((st = mr_fastmri_writer_create(&w, path)) != MR_OK) return st;
        st = mr_fastmri_writer_image(w, "uncertainty", sd);
        if (st == MR_OK && extra && extra->bootstrap_map)
            st = mr_fastmri_writer_image(w, "bootstrap_sd", extra->bootstrap_map);
        if (st == MR_OK && kind) st = mr_fastmri_writer_attr_string(w, "mrpipe_uncertainty", kind);
        if (st == MR_OK && extra && extra->method)
            st = mr_fastmri_writer_attr_string(w, "mrpipe_method", extra->method);
        if (st == MR_OK) st = mr_fastmri_writer_attr_string(w, "mrpipe_version", MR_VERSION_STRING);
        if (st != MR_OK) {
            mr_fastmri_writer_abort(w);
            return st;
        }
        return mr_fastmri_writer_commit(w);
    }
    case MR_FMT_CFL: return mr_cfl_write(path, sd);
    case MR_FMT_NIFTI: return mr_nifti_write(path, sd, extra ? extra->nifti : NULL);
    case MR_FMT_PNG: return write_sd_png(path, sd);
    case MR_FMT_DICOM: {
        mr_output_extra e;
        char desc[160];
        if (extra) e = *extra;
        else memset(&e, 0, sizeof e);
        snprintf(desc, sizeof desc, "mrpipe %s uncertainty SD (%s)", e.method ? e.method : "",
                 kind ? kind : "");
        e.description = desc;
        if (!e.linked) e.written = NULL; /* a linked SD series may be reported to the caller */
        return write_dicom(path, sd, &e);
    }
    default:
        return mr_error_set(MR_ERR_USAGE, "%s: cannot write an uncertainty map as %s", path,
                            mr_format_name(fmt));
    }
}
