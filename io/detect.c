/*
 * detect.c: telling input and output formats apart (docs/formats.md, "Format detection").
 *
 * Inputs: a directory is a DICOM series; otherwise the extension decides (.h5/.hdf5 by the
 * datasets inside: /dataset/data is ISMRMRD v1, kspace or reconstruction* is fastMRI; .cfl/.hdr is
 * BART; .nii/.nii.gz is NIfTI-1), and files with another extension are recognised by content
 * ("DICM" at byte 128 per DICOM PS3.10 section 7.1, the HDF5 superblock signature, the NIfTI-1
 * header). A BART name may omit its extension. Outputs are told by extension only.
 *
 * HDF5's automatic error printing is switched off (H5Eset_auto2) so that a non-HDF5 or truncated
 * file becomes a kept message, not text on stderr.
 */
#include "mr_io.h"

#include <hdf5.h>
#include <stdio.h>
#include <string.h>

const char *mr_format_name(mr_format fmt)
{
    switch (fmt) {
    case MR_FMT_UNKNOWN: return "unknown";
    case MR_FMT_FASTMRI: return "fastMRI HDF5";
    case MR_FMT_ISMRMRD: return "ISMRMRD HDF5";
    case MR_FMT_CFL: return "BART cfl";
    case MR_FMT_NIFTI: return "NIfTI-1";
    case MR_FMT_PNG: return "PNG";
    case MR_FMT_DICOM: return "DICOM";
    }
    return "unknown";
}

/* ---------------------------------------------------------------- content sniffing */

/* Read up to n bytes from the start of path; returns the count (0 on failure). */
static size_t read_head(unsigned char *buf, size_t n, const char *path)
{
    FILE *f = fopen(path, "rb");
    size_t got;
    if (!f) return 0;
    got = fread(buf, 1, n, f);
    fclose(f);
    return got;
}

static int is_dicom_file(const unsigned char *head, size_t n)
{
    return n >= 132 && memcmp(head + 128, "DICM", 4) == 0;
}

static int is_hdf5_file(const unsigned char *head, size_t n)
{
    /* the superblock signature at offset 0 (files with a user block are named .h5 anyway) */
    return n >= 8 && memcmp(head, "\211HDF\r\n\032\n", 8) == 0;
}

static int is_nifti_file(const unsigned char *head, size_t n)
{
    static const unsigned char le[4] = {0x5c, 0x01, 0, 0}, be[4] = {0, 0, 0x01, 0x5c};
    return n >= 348 && (memcmp(head, le, 4) == 0 || memcmp(head, be, 4) == 0) &&
           memcmp(head + 344, "n+1", 4) == 0;
}

/* ---------------------------------------------------------------- HDF5 */

typedef struct {
    char names[512];
    size_t used;
    int count;
} name_list;

static herr_t collect_name(hid_t group, const char *name, const H5L_info_t *info, void *data)
{
    name_list *l = data;
    (void)group;
    (void)info;
    if (l->used < sizeof l->names - 1) {
        int n = snprintf(l->names + l->used, sizeof l->names - l->used, "%s%s",
                         l->count ? ", " : "", name);
        if (n > 0) l->used += (size_t)n;
        if (l->used >= sizeof l->names - 1) {
            l->used = sizeof l->names - 1;
            memcpy(l->names + sizeof l->names - 5, "...", 4);
        }
    }
    l->count++;
    return 0;
}

static int link_exists(hid_t file, const char *name)
{
    return H5Lexists(file, name, H5P_DEFAULT) > 0;
}

static mr_status detect_hdf5(mr_format *out, const char *path)
{
    hid_t file;
    name_list list;
    static const char *const fastmri_names[] = {"kspace", "reconstruction_rss",
                                                "reconstruction_esc", "reconstruction"};

    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (file < 0)
        return mr_error_set(MR_ERR_INPUT,
                            "%s: not a readable HDF5 file (truncated, corrupt or another format); "
                            "expected a fastMRI or ISMRMRD .h5 file",
                            path);
    if (link_exists(file, "dataset") && link_exists(file, "dataset/data")) {
        H5Fclose(file);
        *out = MR_FMT_ISMRMRD;
        return MR_OK;
    }
    for (size_t i = 0; i < sizeof fastmri_names / sizeof fastmri_names[0]; i++)
        if (link_exists(file, fastmri_names[i])) {
            H5Fclose(file);
            *out = MR_FMT_FASTMRI;
            return MR_OK;
        }
    memset(&list, 0, sizeof list);
    H5Literate(file, H5_INDEX_NAME, H5_ITER_NATIVE, NULL, collect_name, &list);
    H5Fclose(file);
    return mr_error_set(MR_ERR_INPUT,
                        "%s: HDF5 file is neither ISMRMRD (expected /dataset/data) nor fastMRI "
                        "(expected kspace, reconstruction_rss, reconstruction_esc or "
                        "reconstruction); found %s%s",
                        path, list.count ? "" : "no datasets", list.names);
}

/* ---------------------------------------------------------------- inputs */

/* BART pair check for a name ending in .cfl or .hdr. */
static mr_status detect_cfl_pair(mr_format *out, const char *path)
{
    char other[4096];
    size_t n = strlen(path);
    const char *ext = mr_path_has_suffix(path, ".cfl") ? ".hdr" : ".cfl";
    if (n >= sizeof other) return mr_error_set(MR_ERR_USAGE, "%s: file name too long", path);
    memcpy(other, path, n - 4);
    memcpy(other + n - 4, ext, 5);
    if (!mr_path_is_file(other))
        return mr_error_set(MR_ERR_INPUT, "%s: No such file (a BART %s needs its %s)", other,
                            ext[1] == 'h' ? "data file" : "header", ext);
    *out = MR_FMT_CFL;
    return MR_OK;
}

mr_status mr_io_detect_input(mr_format *out, const char *path)
{
    unsigned char head[352];
    size_t n;

    *out = MR_FMT_UNKNOWN;
    if (!path || !*path) return mr_error_set(MR_ERR_USAGE, "empty input path");
    if (mr_path_is_dir(path)) {
        *out = MR_FMT_DICOM;
        return MR_OK;
    }
    if (!mr_path_is_file(path)) {
        char cfl[4096], hdr[4096];
        if (mr_path_has_suffix(path, ".cfl") || mr_path_has_suffix(path, ".hdr"))
            return mr_error_set(MR_ERR_INPUT, "%s: No such file", path);
        if (snprintf(cfl, sizeof cfl, "%s.cfl", path) < (int)sizeof cfl &&
            snprintf(hdr, sizeof hdr, "%s.hdr", path) < (int)sizeof hdr) {
            int has_cfl = mr_path_is_file(cfl), has_hdr = mr_path_is_file(hdr);
            if (has_cfl && has_hdr) {
                *out = MR_FMT_CFL;
                return MR_OK;
            }
            if (has_cfl || has_hdr)
                return mr_error_set(MR_ERR_INPUT, "%s: No such file (BART %s found without it)",
                                    has_cfl ? hdr : cfl, has_cfl ? cfl : hdr);
        }
        return mr_error_set(MR_ERR_INPUT, "%s: No such file or directory", path);
    }

    if (mr_path_has_suffix(path, ".h5") || mr_path_has_suffix(path, ".hdf5"))
        return detect_hdf5(out, path);
    if (mr_path_has_suffix(path, ".cfl") || mr_path_has_suffix(path, ".hdr"))
        return detect_cfl_pair(out, path);
    if (mr_path_has_suffix(path, ".nii") || mr_path_has_suffix(path, ".nii.gz")) {
        *out = MR_FMT_NIFTI;
        return MR_OK;
    }
    if (mr_path_has_suffix(path, ".png"))
        return mr_error_set(MR_ERR_INPUT,
                            "%s: PNG is an output-only format (previews); expected a fastMRI or "
                            "ISMRMRD .h5, BART .cfl, NIfTI .nii/.nii.gz or DICOM input",
                            path);

    /* any other name: look at the content */
    n = read_head(head, sizeof head, path);
    if (is_dicom_file(head, n) || mr_path_has_suffix(path, ".dcm")) {
        *out = MR_FMT_DICOM;
        return MR_OK;
    }
    if (is_hdf5_file(head, n)) return detect_hdf5(out, path);
    if (is_nifti_file(head, n)) {
        *out = MR_FMT_NIFTI;
        return MR_OK;
    }
    return mr_error_set(MR_ERR_INPUT,
                        "%s: cannot tell the input format: expected a .h5/.hdf5 (fastMRI or "
                        "ISMRMRD), .cfl/.hdr (BART), .nii/.nii.gz (NIfTI-1) file or a DICOM "
                        "file/directory, and the content (%zu bytes read) is none of these",
                        path, n);
}

/* ---------------------------------------------------------------- outputs */

mr_status mr_io_detect_output(mr_format *out, const char *path)
{
    *out = MR_FMT_UNKNOWN;
    if (!path || !*path) return mr_error_set(MR_ERR_USAGE, "empty output path");
    if (mr_path_has_suffix(path, ".h5") || mr_path_has_suffix(path, ".hdf5"))
        *out = MR_FMT_FASTMRI;
    else if (mr_path_has_suffix(path, ".cfl") || mr_path_has_suffix(path, ".hdr"))
        *out = MR_FMT_CFL;
    else if (mr_path_has_suffix(path, ".nii") || mr_path_has_suffix(path, ".nii.gz"))
        *out = MR_FMT_NIFTI;
    else if (mr_path_has_suffix(path, ".png"))
        *out = MR_FMT_PNG;
    else {
        const char *slash = strrchr(path, '/');
        const char *dot = strrchr(slash ? slash : path, '.');
        return mr_error_set(MR_ERR_USAGE,
                            "%s: unknown output format '%s': expected one of .h5, .hdf5 "
                            "(fastMRI), .cfl, .hdr (BART), .nii, .nii.gz (NIfTI-1), .png",
                            path, dot ? dot : "(no extension)");
    }
    return MR_OK;
}
