/*
 * image_load.c: loading a magnitude image volume, float32 (S, H, W), from any image format mrpipe
 * reads, for the metrics and the reports (docs/validation.md, "Inputs"):
 *
 *   file.h5        fastMRI-layout HDF5; the dataset is chosen by role: a reference prefers
 *                  reconstruction_rss, then reconstruction_esc, then reconstruction (mrpipe's
 *                  output); an input prefers reconstruction, then _rss, then _esc
 *   file.h5:NAME   the dataset NAME of an HDF5 file
 *   file.nii[.gz]  NIfTI-1 (mr_nifti_read: slices are planes of constant k)
 *   file.cfl       BART (mr_cfl_read), (S, 1, H, W) only
 *   DICOM          a file, directory or DICOMDIR with one series (RescaleSlope/Intercept applied)
 *
 * Complex data (a BART .cfl, an HDF5 compound {r, i}) becomes its magnitude |z| (cabsf, which is
 * what numpy's abs of complex64 computes). A 2-D image becomes (1, H, W).
 */
#include "mr_io.h"

#include <complex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hdf5.h>

/* ---------------------------------------------------------------- shapes */

/* Bring a float32 array of rank 2..4 to (S, H, W): (H, W) -> (1, H, W); (S, 1, H, W) -> (S, H, W).
 * Anything else is an error naming the dims. */
static mr_status to_volume(mr_array *a, const char *desc)
{
    char shape[128];
    if (a->ndim == 3) return MR_OK;
    if (a->ndim == 2) {
        a->dims[2] = a->dims[1];
        a->dims[1] = a->dims[0];
        a->dims[0] = 1;
        a->ndim = 3;
        return MR_OK;
    }
    if (a->ndim == 4 && a->dims[1] == 1) {
        a->dims[1] = a->dims[2];
        a->dims[2] = a->dims[3];
        a->ndim = 3;
        return MR_OK;
    }
    return mr_error_set(MR_ERR_INPUT,
                        "%s: expected an image volume (S, H, W) or an image (H, W), "
                        "found dims %s",
                        desc, mr_dims_format(shape, sizeof shape, a->ndim, a->dims));
}

/* Magnitude of a complex64 array into a new float32 array of the same dims. */
static mr_status magnitude(mr_array **out, const mr_array *c)
{
    mr_status st;
    mr_array *m;
    size_t n = mr_array_numel(c);
    *out = NULL;
    if ((st = mr_array_create(&m, MR_FLOAT32, c->ndim, c->dims)) != MR_OK) return st;
    const mr_cfloat *z = mr_array_c64(c);
    float *o = mr_array_f32(m);
    for (size_t i = 0; i < n; i++)
        o[i] = cabsf(z[i]);
    *out = m;
    return MR_OK;
}

/* ---------------------------------------------------------------- HDF5 */

/* Does the HDF5 dataset hold complex values (a compound of two float members, h5py's {r, i})?
 * Returns 1 and fills *mtype with a native {float, float} memory type using the file's member
 * names, 0 for another type, -1 when the dataset cannot be opened. */
static int h5_complex_type(hid_t *mtype, hid_t file, const char *name)
{
    hid_t ds = H5Dopen2(file, name, H5P_DEFAULT), ft;
    int is_complex = 0;
    *mtype = -1;
    if (ds < 0) return -1;
    ft = H5Dget_type(ds);
    if (ft >= 0 && H5Tget_class(ft) == H5T_COMPOUND && H5Tget_nmembers(ft) == 2) {
        hid_t m0 = H5Tget_member_type(ft, 0), m1 = H5Tget_member_type(ft, 1);
        if (H5Tget_class(m0) == H5T_FLOAT && H5Tget_class(m1) == H5T_FLOAT) {
            char *n0 = H5Tget_member_name(ft, 0), *n1 = H5Tget_member_name(ft, 1);
            hid_t t = H5Tcreate(H5T_COMPOUND, 2 * sizeof(float));
            if (t >= 0 && n0 && n1 && H5Tinsert(t, n0, 0, H5T_NATIVE_FLOAT) >= 0 &&
                H5Tinsert(t, n1, sizeof(float), H5T_NATIVE_FLOAT) >= 0) {
                *mtype = t;
                is_complex = 1;
            } else if (t >= 0) {
                H5Tclose(t);
            }
            H5free_memory(n0);
            H5free_memory(n1);
        }
        H5Tclose(m0);
        H5Tclose(m1);
    }
    if (ft >= 0) H5Tclose(ft);
    H5Dclose(ds);
    return is_complex;
}

/* Read a complex dataset (compound of two floats) of rank 1..4 as its magnitude. */
static mr_status h5_read_complex_magnitude(mr_array **out, const char *path, const char *name)
{
    hid_t file, ds = -1, space = -1, mtype = -1;
    hsize_t hd[4];
    size_t dims[4];
    int rank, kind;
    mr_array *c = NULL;
    mr_status st = MR_OK;

    *out = NULL;
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (file < 0) return mr_error_set(MR_ERR_INPUT, "%s: cannot open as HDF5", path);
    kind = h5_complex_type(&mtype, file, name);
    if (kind <= 0) {
        st = mr_error_set(MR_ERR_INPUT,
                          "%s: dataset '%s': expected a complex dataset (compound "
                          "{r, i} of floats)",
                          path, name);
        goto done;
    }
    ds = H5Dopen2(file, name, H5P_DEFAULT);
    space = ds >= 0 ? H5Dget_space(ds) : -1;
    rank = space >= 0 ? H5Sget_simple_extent_ndims(space) : -1;
    if (rank < 1 || rank > 4) {
        st = mr_error_set(MR_ERR_INPUT, "%s: dataset '%s': expected rank 2..4, found %d", path,
                          name, rank);
        goto done;
    }
    H5Sget_simple_extent_dims(space, hd, NULL);
    for (int i = 0; i < rank; i++)
        dims[i] = (size_t)hd[i];
    if ((st = mr_array_create(&c, MR_COMPLEX64, rank, dims)) != MR_OK) {
        mr_error_prefix(st, "%s: dataset '%s': ", path, name);
        goto done;
    }
    if (H5Dread(ds, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, c->data) < 0) {
        st =
            mr_error_set(MR_ERR_INPUT, "%s: dataset '%s': cannot read (damaged file?)", path, name);
        goto done;
    }
    st = magnitude(out, c);
done:
    mr_array_destroy(c);
    if (mtype >= 0) H5Tclose(mtype);
    if (space >= 0) H5Sclose(space);
    if (ds >= 0) H5Dclose(ds);
    H5Fclose(file);
    H5Eclear2(H5E_DEFAULT);
    return st;
}

static mr_status load_h5(mr_array **out, char *desc, size_t desc_size, const char *path,
                         const char *dataset, int prefer_reference)
{
    static const char *const ref_order[] = {"reconstruction_rss", "reconstruction_esc",
                                            "reconstruction"};
    static const char *const in_order[] = {"reconstruction", "reconstruction_rss",
                                           "reconstruction_esc"};
    const char *const *order = prefer_reference ? ref_order : in_order;
    const char *name = dataset;
    mr_fastmri_file *f = NULL;
    mr_status st;
    int kind;
    hid_t file, mtype = -1;

    if ((st = mr_fastmri_open(&f, path)) != MR_OK) return st;
    if (name) {
        if (!mr_fastmri_has_dataset(f, name)) {
            mr_fastmri_close(f);
            return mr_error_set(MR_ERR_INPUT,
                                "%s: dataset '%s': expected an image dataset, found "
                                "no such dataset",
                                path, name);
        }
    } else {
        for (int i = 0; i < 3 && !name; i++)
            if (mr_fastmri_has_dataset(f, order[i])) name = order[i];
        if (!name) {
            mr_fastmri_close(f);
            return mr_error_set(MR_ERR_INPUT,
                                "%s: expected an image dataset (%s, %s or %s), found "
                                "none; name one with %s:DATASET",
                                path, order[0], order[1], order[2], path);
        }
    }
    snprintf(desc, desc_size, "%s:%s", path, name);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    kind = file >= 0 ? h5_complex_type(&mtype, file, name) : -1;
    if (mtype >= 0) H5Tclose(mtype);
    if (file >= 0) H5Fclose(file);
    H5Eclear2(H5E_DEFAULT);
    if (kind == 1)
        st = h5_read_complex_magnitude(out, path, name);
    else
        st = mr_fastmri_read_image(f, name, out);
    mr_fastmri_close(f);
    return st;
}

/* ---------------------------------------------------------------- spec */

/* "file.h5:NAME" -> path and dataset, when `spec` itself is not an existing path and the part
 * before the last ':' is an existing .h5/.hdf5 file. */
static int split_spec(char *path, size_t path_size, const char **dataset, const char *spec)
{
    const char *colon = strrchr(spec, ':');
    size_t n;
    *dataset = NULL;
    if (mr_path_is_file(spec) || mr_path_is_dir(spec) || !colon || !colon[1]) return 0;
    n = (size_t)(colon - spec);
    if (n == 0 || n >= path_size) return 0;
    memcpy(path, spec, n);
    path[n] = '\0';
    if (!mr_path_is_file(path) ||
        !(mr_path_has_suffix(path, ".h5") || mr_path_has_suffix(path, ".hdf5")))
        return 0;
    *dataset = colon + 1;
    return 1;
}

mr_status mr_image_load(mr_array **out, char *desc, size_t desc_size, const char *spec,
                        int prefer_reference)
{
    char path[4096];
    const char *dataset = NULL;
    mr_format fmt;
    mr_status st;
    mr_array *a = NULL, *c = NULL;
    char shape[128];

    *out = NULL;
    if (desc_size) desc[0] = '\0';
    if (!spec || !*spec) return mr_error_set(MR_ERR_USAGE, "empty image path");
    if (strlen(spec) >= sizeof path)
        return mr_error_set(MR_ERR_USAGE, "%.64s...: path too long", spec);
    if (split_spec(path, sizeof path, &dataset, spec)) {
        fmt = MR_FMT_FASTMRI;
    } else {
        snprintf(path, sizeof path, "%s", spec);
        if ((st = mr_io_detect_input(&fmt, path)) != MR_OK) return st;
    }
    if (desc_size) snprintf(desc, desc_size, "%s", path);

    switch (fmt) {
    case MR_FMT_FASTMRI:
        st = load_h5(&a, desc, desc_size, path, dataset, prefer_reference);
        break;
    case MR_FMT_NIFTI:
        st = mr_nifti_read(&a, NULL, path);
        break;
    case MR_FMT_CFL:
        if ((st = mr_cfl_read(&c, path)) != MR_OK) break;
        if (c->dims[1] != 1) {
            st = mr_error_set(MR_ERR_INPUT,
                              "%s: expected one image per slice, found %zu coils "
                              "(dims (S, C, H, W) = %s); combine the coils first (e.g. bart rss 8)",
                              path, c->dims[1], mr_dims_format(shape, sizeof shape, 4, c->dims));
            break;
        }
        st = magnitude(&a, c);
        break;
    case MR_FMT_DICOM: {
        /* a file, directory or DICOMDIR holding exactly one series (else the UIDs are listed) */
        mr_dicom_set *set = NULL;
        mr_dicom_volume *vol = NULL;
        size_t index = 0;
        if ((st = mr_dicom_set_open(&set, path)) == MR_OK &&
            (st = mr_dicom_set_select(&index, set, NULL)) == MR_OK &&
            (st = mr_dicom_volume_read(&vol, set, index, 0)) == MR_OK) {
            a = vol->data; /* (S, H, W) float32 in the stored units (rescale applied) */
            vol->data = NULL;
        }
        mr_dicom_volume_destroy(vol);
        mr_dicom_set_close(set);
        break;
    }
    case MR_FMT_ISMRMRD:
        st = mr_error_set(MR_ERR_INPUT,
                          "%s: expected an image, found ISMRMRD raw k-space; "
                          "reconstruct it first (mrpipe recon --input %s --output rec.h5)",
                          path, path);
        break;
    default:
        st = mr_error_set(MR_ERR_INPUT,
                          "%s: expected an image (.h5, .nii, .nii.gz, .cfl), found "
                          "format %s",
                          path, mr_format_name(fmt));
        break;
    }
    mr_array_destroy(c);
    if (st == MR_OK) st = to_volume(a, desc_size ? desc : path);
    if (st != MR_OK) {
        mr_array_destroy(a);
        return st;
    }
    *out = a;
    return MR_OK;
}
