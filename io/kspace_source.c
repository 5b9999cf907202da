/*
 * kspace_source.c: one interface over every k-space input (fastMRI HDF5 streamed slice by slice,
 * ISMRMRD v1 HDF5 and BART .cfl read whole), with the in-plane output size chosen once for all
 * outputs: the header's reconSpace, else the shape of reconstruction_rss/_esc, else the k-space's.
 */
#include "mr_io.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct mr_kspace_source {
    mr_kspace_info info;
    char path[4096];
    mr_fastmri_file *fm;  /* fastMRI: streamed */
    mr_array *whole;      /* ISMRMRD / cfl: (S, C, H, W) in memory */
    mr_ismrmrd_data ism;  /* ISMRMRD: keeps noise and header */
    int have_ism;
};

static void set_recon_size_from_header(mr_kspace_info *in)
{
    if (in->has_header && in->hdr.recon_x > 0 && in->hdr.recon_y > 0) {
        in->recon_h = in->hdr.recon_x; /* x = readout = H */
        in->recon_w = in->hdr.recon_y;
    }
}

static mr_status check_finite(const mr_kspace_source *src, size_t s, const mr_cfloat *data,
                              size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(crealf(data[i])) || !isfinite(cimagf(data[i])))
            return mr_error_set(MR_ERR_INPUT,
                                "%s: k-space slice %zu holds NaN or Inf (first at element %zu); "
                                "expected finite values",
                                src->path, s, i);
    return MR_OK;
}

static mr_status open_fastmri(mr_kspace_source *src)
{
    mr_status st = mr_fastmri_open(&src->fm, src->path);
    const mr_fastmri_info *fi;
    mr_kspace_info *in = &src->info;
    if (st != MR_OK) return st;
    fi = mr_fastmri_get_info(src->fm);
    if (!fi->has_kspace)
        return mr_error_set(MR_ERR_INPUT,
                            "%s: no dataset 'kspace': expected fastMRI k-space (S,C,H,W) or (S,H,W) "
                            "complex64",
                            src->path);
    in->slices = fi->slices;
    in->coils = fi->coils;
    in->height = fi->height;
    in->width = fi->width;
    in->has_header = fi->has_header;
    if (fi->has_header) in->hdr = fi->hdr;
    in->header_xml = fi->header_xml;
    in->has_mask = fi->has_mask && fi->mask_len == fi->width;
    if (fi->has_mask && fi->mask_len != fi->width)
        return mr_error_set(MR_ERR_INPUT,
                            "%s: dataset 'mask' has %zu values; expected one per k-space column "
                            "(%zu)",
                            src->path, fi->mask_len, fi->width);
    in->recon_h = in->height;
    in->recon_w = in->width;
    if (fi->ref_name[0] && fi->ref_ndim >= 2) {
        in->recon_h = fi->ref_dims[fi->ref_ndim - 2];
        in->recon_w = fi->ref_dims[fi->ref_ndim - 1];
    }
    set_recon_size_from_header(in);
    return MR_OK;
}

static mr_status open_ismrmrd(mr_kspace_source *src)
{
    mr_kspace_info *in = &src->info;
    mr_status st = mr_ismrmrd_read(&src->ism, src->path, 1);
    if (st != MR_OK) return st;
    src->have_ism = 1;
    src->whole = src->ism.kspace;
    in->slices = src->whole->dims[0];
    in->coils = src->whole->dims[1];
    in->height = src->whole->dims[2];
    in->width = src->whole->dims[3];
    in->has_header = 1;
    in->hdr = src->ism.hdr;
    in->header_xml = src->ism.xml;
    in->has_noise = src->ism.noise != NULL;
    in->recon_h = in->height;
    in->recon_w = in->width;
    set_recon_size_from_header(in);
    return MR_OK;
}

static mr_status open_cfl(mr_kspace_source *src)
{
    mr_kspace_info *in = &src->info;
    mr_status st = mr_cfl_read(&src->whole, src->path);
    if (st != MR_OK) return st;
    in->slices = src->whole->dims[0];
    in->coils = src->whole->dims[1];
    in->height = src->whole->dims[2];
    in->width = src->whole->dims[3];
    in->recon_h = in->height;
    in->recon_w = in->width;
    return MR_OK;
}

mr_status mr_kspace_open(mr_kspace_source **out, const char *path)
{
    mr_kspace_source *src;
    mr_format fmt;
    mr_status st;
    *out = NULL;
    if ((st = mr_io_detect_input(&fmt, path)) != MR_OK) return st;
    src = mr_calloc(1, sizeof *src);
    if (!src) return MR_ERR_NOMEM;
    snprintf(src->path, sizeof src->path, "%s", path);
    src->info.format = fmt;
    switch (fmt) {
    case MR_FMT_FASTMRI: st = open_fastmri(src); break;
    case MR_FMT_ISMRMRD: st = open_ismrmrd(src); break;
    case MR_FMT_CFL: st = open_cfl(src); break;
    default:
        st = mr_error_set(MR_ERR_INPUT,
                          "%s: a %s file holds no k-space; expected fastMRI .h5, ISMRMRD .h5 or "
                          "BART .cfl",
                          path, mr_format_name(fmt));
    }
    if (st == MR_OK) {
        mr_kspace_info *in = &src->info;
        if (in->has_header) mr_ismrmrd_hdr_padding(&in->pad_left, &in->pad_right, &in->hdr, in->width);
        else {
            in->pad_left = 0;
            in->pad_right = (long)in->width;
        }
        if (in->pad_left < 0 || in->pad_right > (long)in->width || in->pad_left >= in->pad_right) {
            in->pad_left = 0; /* limits that do not fit this k-space are ignored */
            in->pad_right = (long)in->width;
        }
    }
    if (st != MR_OK) {
        mr_kspace_close(src);
        return st;
    }
    *out = src;
    return MR_OK;
}

const mr_kspace_info *mr_kspace_get_info(const mr_kspace_source *src) { return &src->info; }

mr_status mr_kspace_read_slice(mr_kspace_source *src, size_t s, mr_cfloat *out)
{
    size_t n = src->info.coils * src->info.height * src->info.width;
    if (s >= src->info.slices)
        return mr_error_set(MR_ERR_INPUT, "%s: slice %zu requested; the file has %zu", src->path, s,
                            src->info.slices);
    if (src->fm) return mr_fastmri_read_kspace_slice(src->fm, s, out);
    memcpy(out, mr_array_c64(src->whole) + s * n, n * sizeof *out);
    return check_finite(src, s, out, n);
}

mr_status mr_kspace_read_mask(mr_kspace_source *src, float *out)
{
    if (!src->fm || !src->info.has_mask)
        return mr_error_set(MR_ERR_INPUT, "%s: no dataset 'mask'", src->path);
    return mr_fastmri_read_mask(src->fm, out);
}

mr_status mr_kspace_read_noise(mr_kspace_source *src, mr_array **out)
{
    const mr_array *n = src->have_ism ? src->ism.noise : NULL;
    mr_status st;
    *out = NULL;
    if (!n)
        return mr_error_set(MR_ERR_INPUT,
                            "%s: no noise samples (expected ISMRMRD acquisitions flagged as noise "
                            "measurements, flag 19)",
                            src->path);
    if ((st = mr_array_create(out, MR_COMPLEX64, n->ndim, n->dims)) != MR_OK) return st;
    memcpy((*out)->data, n->data, mr_array_numel(n) * mr_dtype_size(n->dtype));
    return MR_OK;
}

mr_fastmri_file *mr_kspace_fastmri(mr_kspace_source *src) { return src->fm; }

void mr_kspace_close(mr_kspace_source *src)
{
    if (!src) return;
    mr_fastmri_close(src->fm);
    if (src->have_ism) mr_ismrmrd_data_free(&src->ism); /* owns `whole` */
    else mr_array_destroy(src->whole);
    free(src);
}
