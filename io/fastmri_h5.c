/*
 * fastmri_h5.c: fastMRI-layout HDF5 files, read slice by slice and written the way h5py writes
 * them.
 *
 * Layout (fastMRI dataset, Zbontar et al. 2018, arXiv:1811.08839; REFERENCE.md):
 *   kspace              complex64 (S, C, H, W) multi-coil or (S, H, W) single-coil; numpy's complex
 *                       is an HDF5 compound {r: float, i: float} (h5py's convention); complex128
 *                       ({r,i} of float64) is accepted and converted by HDF5 on read
 *   mask                1-D bool over W (h5py's bool: enum of int8 {FALSE = 0, TRUE = 1})
 *   ismrmrd_header      scalar string (fixed or variable length) holding the ISMRMRD XML header
 *   reconstruction_rss  float32 (S, 320, 320) / reconstruction_esc (single-coil)
 *   attributes          acquisition, patient_id (strings), max, norm, acceleration,
 *                       num_low_frequency (numbers)
 *
 * Reading never loads the whole k-space: each call selects one slice with an HDF5 hyperslab and
 * reads it straight into the caller's buffer with a memory type equal to the file's compound, so
 * HDF5 performs no per-element conversion for complex64 files. HDF5's automatic error printing is
 * switched off (per thread: the library is a thread-safe build) and its error stack is turned into
 * the kept message. Writers create a temporary file (mr_atomic_begin) renamed on commit.
 */
#include "mr_io.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hdf5.h>

struct mr_fastmri_file {
    char path[4096];
    hid_t file;          /* the open file */
    hid_t kspace;        /* `kspace` dataset, or -1 */
    hid_t kspace_space;  /* its file dataspace */
    hid_t kspace_mtype;  /* memory type: compound of two native floats named like the file's */
    int kspace_rank;     /* 3 or 4 */
    char *header_xml;    /* `ismrmrd_header` text (NUL-terminated), or NULL */
    mr_fastmri_info info;
};

struct mr_fastmri_writer {
    mr_atomic_file af;
    hid_t file;
    hid_t kspace;        /* `kspace` dataset once begun, or -1 */
    hid_t ctype_file;    /* complex64 compound {r,i} of IEEE_F32LE (h5py's layout) */
    hid_t ctype_mem;     /* the same compound in native floats */
    int kspace_rank;
    hsize_t kspace_dims[4];
};

/* ---------------------------------------------------------------- HDF5 errors */

static void h5_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

typedef struct {
    char text[512];
    int n;
} h5_err_walk;

/* Keep the innermost entry of the error stack: that is where HDF5 detected the problem. */
static herr_t h5_err_cb(unsigned n, const H5E_error2_t *e, void *data)
{
    h5_err_walk *w = data;
    (void)n;
    if (w->n++ == 0 && e && e->desc)
        snprintf(w->text, sizeof w->text, "%s (in %s)", e->desc, e->func_name ? e->func_name : "?");
    return 0;
}

/* A short description of the current HDF5 error, for messages; clears the stack. */
static const char *h5_err_detail(void)
{
    static _Thread_local h5_err_walk w;
    memset(&w, 0, sizeof w);
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, h5_err_cb, &w);
    H5Eclear2(H5E_DEFAULT);
    if (!w.text[0]) snprintf(w.text, sizeof w.text, "no detail from HDF5");
    return w.text;
}

static void h5_close_dataset(hid_t *id)
{
    if (*id >= 0) H5Dclose(*id);
    *id = -1;
}

static void h5_close_type(hid_t *id)
{
    if (*id >= 0) H5Tclose(*id);
    *id = -1;
}

static void h5_close_space(hid_t *id)
{
    if (*id >= 0) H5Sclose(*id);
    *id = -1;
}

/* A human-readable name of an HDF5 type: "float32", "int8", "compound {r: float32, i: float32}". */
static void h5_type_describe(char *buf, size_t size, hid_t type)
{
    H5T_class_t cls = H5Tget_class(type);
    size_t bytes = H5Tget_size(type);
    switch (cls) {
    case H5T_FLOAT: snprintf(buf, size, "float%zu", bytes * 8); break;
    case H5T_INTEGER:
        snprintf(buf, size, "%sint%zu", H5Tget_sign(type) == H5T_SGN_NONE ? "u" : "", bytes * 8);
        break;
    case H5T_STRING: snprintf(buf, size, "string"); break;
    case H5T_ENUM: snprintf(buf, size, "enum (%zu bytes)", bytes); break;
    case H5T_COMPOUND: {
        int n = H5Tget_nmembers(type);
        size_t used = (size_t)snprintf(buf, size, "compound {");
        for (int i = 0; i < n && used < size; i++) {
            char *name = H5Tget_member_name(type, (unsigned)i);
            hid_t mt = H5Tget_member_type(type, (unsigned)i);
            char mdesc[64];
            h5_type_describe(mdesc, sizeof mdesc, mt);
            used += (size_t)snprintf(buf + used, size - used, "%s%s: %s", i ? ", " : "",
                                     name ? name : "?", mdesc);
            H5Tclose(mt);
            H5free_memory(name);
        }
        if (used < size) snprintf(buf + used, size - used, "}");
        break;
    }
    default: snprintf(buf, size, "HDF5 type class %d (%zu bytes)", (int)cls, bytes); break;
    }
}

/* Is there a dataset called `name` in the root group? */
static int h5_dataset_exists(hid_t file, const char *name)
{
    H5O_info_t oi;
    if (H5Lexists(file, name, H5P_DEFAULT) <= 0) return 0;
    if (H5Oget_info_by_name(file, name, &oi, H5P_DEFAULT) < 0) {
        H5Eclear2(H5E_DEFAULT);
        return 0;
    }
    return oi.type == H5O_TYPE_DATASET;
}

/* ---------------------------------------------------------------- reading helpers */

/* Read a string held by a dataset or attribute (fixed or variable length, scalar or one element).
 * `is_attr` chooses H5Aread/H5Dread. Returns a malloc'd NUL-terminated copy in *out. */
static mr_status h5_read_string(char **out, size_t *out_len, hid_t obj, int is_attr,
                                const char *path, const char *what)
{
    hid_t ftype = -1, space = -1, mtype = -1;
    mr_status st = MR_OK;
    hssize_t npoints;
    char *buf = NULL;
    char desc[256];

    *out = NULL;
    ftype = is_attr ? H5Aget_type(obj) : H5Dget_type(obj);
    space = is_attr ? H5Aget_space(obj) : H5Dget_space(obj);
    if (ftype < 0 || space < 0) {
        st = mr_error_set(MR_ERR_INPUT, "%s: %s: cannot read its type: %s", path, what,
                          h5_err_detail());
        goto done;
    }
    if (H5Tget_class(ftype) != H5T_STRING) {
        h5_type_describe(desc, sizeof desc, ftype);
        st = mr_error_set(MR_ERR_INPUT, "%s: %s: expected a string, found %s", path, what, desc);
        goto done;
    }
    npoints = H5Sget_simple_extent_npoints(space);
    if (npoints != 1) {
        st = mr_error_set(MR_ERR_INPUT, "%s: %s: expected one string (scalar), found %lld "
                          "elements", path, what, (long long)npoints);
        goto done;
    }
    mtype = H5Tcopy(H5T_C_S1);
    if (H5Tis_variable_str(ftype) > 0) {
        char *vstr = NULL;
        herr_t rc;
        H5Tset_size(mtype, H5T_VARIABLE);
        H5Tset_cset(mtype, H5Tget_cset(ftype));
        rc = is_attr ? H5Aread(obj, mtype, &vstr) : H5Dread(obj, mtype, H5S_ALL, H5S_ALL,
                                                            H5P_DEFAULT, &vstr);
        if (rc < 0) {
            st = mr_error_set(MR_ERR_INPUT, "%s: %s: cannot read the string: %s", path, what,
                              h5_err_detail());
            goto done;
        }
        buf = strdup(vstr ? vstr : "");
        H5free_memory(vstr);
        if (!buf) {
            st = mr_error_set(MR_ERR_NOMEM, "%s: %s: out of memory", path, what);
            goto done;
        }
    } else {
        size_t n = H5Tget_size(ftype);
        herr_t rc;
        H5Tset_size(mtype, n + 1);
        H5Tset_strpad(mtype, H5T_STR_NULLTERM);
        H5Tset_cset(mtype, H5Tget_cset(ftype));
        buf = calloc(1, n + 2);
        if (!buf) {
            st = mr_error_set(MR_ERR_NOMEM, "%s: %s: out of memory for %zu bytes", path, what, n);
            goto done;
        }
        rc = is_attr ? H5Aread(obj, mtype, buf) : H5Dread(obj, mtype, H5S_ALL, H5S_ALL,
                                                          H5P_DEFAULT, buf);
        if (rc < 0) {
            st = mr_error_set(MR_ERR_INPUT, "%s: %s: cannot read the string: %s", path, what,
                              h5_err_detail());
            free(buf);
            buf = NULL;
            goto done;
        }
        buf[n] = '\0';
    }
    *out = buf;
    if (out_len) *out_len = strlen(buf);
done:
    h5_close_type(&mtype);
    h5_close_type(&ftype);
    h5_close_space(&space);
    return st;
}

/* Read root attribute `name` as a number (numeric attributes, or a string holding a number).
 * *present = 0 when the attribute does not exist. */
static mr_status h5_attr_number(double *out, int *present, hid_t file, const char *path,
                                const char *name)
{
    hid_t attr = -1, type = -1, space = -1;
    mr_status st = MR_OK;
    char desc[256];
    *present = 0;
    if (H5Aexists(file, name) <= 0) return MR_OK;
    attr = H5Aopen(file, name, H5P_DEFAULT);
    if (attr < 0)
        return mr_error_set(MR_ERR_INPUT, "%s: attribute '%s': cannot open: %s", path, name,
                            h5_err_detail());
    type = H5Aget_type(attr);
    space = H5Aget_space(attr);
    if (H5Tget_class(type) == H5T_STRING) {
        char *s = NULL, *end;
        char what[96];
        snprintf(what, sizeof what, "attribute '%s'", name);
        if ((st = h5_read_string(&s, NULL, attr, 1, path, what)) != MR_OK) goto done;
        errno = 0;
        *out = strtod(s, &end);
        if (errno || end == s || *end != '\0')
            st = mr_error_set(MR_ERR_INPUT, "%s: attribute '%s': expected a number, found the "
                              "string '%s'", path, name, s);
        else
            *present = 1;
        free(s);
        goto done;
    }
    if ((H5Tget_class(type) != H5T_FLOAT && H5Tget_class(type) != H5T_INTEGER) ||
        H5Sget_simple_extent_npoints(space) != 1) {
        h5_type_describe(desc, sizeof desc, type);
        st = mr_error_set(MR_ERR_INPUT, "%s: attribute '%s': expected one number, found %s with "
                          "%lld elements", path, name, desc,
                          (long long)H5Sget_simple_extent_npoints(space));
        goto done;
    }
    if (H5Aread(attr, H5T_NATIVE_DOUBLE, out) < 0) {
        st = mr_error_set(MR_ERR_INPUT, "%s: attribute '%s': cannot read: %s", path, name,
                          h5_err_detail());
        goto done;
    }
    *present = 1;
done:
    h5_close_type(&type);
    h5_close_space(&space);
    if (attr >= 0) H5Aclose(attr);
    return st;
}

/* Read root attribute `name` as text into buf ("" when absent). Numbers are formatted. */
static mr_status h5_attr_text(char *buf, size_t size, hid_t file, const char *path,
                              const char *name)
{
    hid_t attr = -1, type = -1;
    mr_status st = MR_OK;
    buf[0] = '\0';
    if (H5Aexists(file, name) <= 0) return MR_OK;
    attr = H5Aopen(file, name, H5P_DEFAULT);
    if (attr < 0)
        return mr_error_set(MR_ERR_INPUT, "%s: attribute '%s': cannot open: %s", path, name,
                            h5_err_detail());
    type = H5Aget_type(attr);
    if (H5Tget_class(type) == H5T_STRING) {
        char *s = NULL;
        char what[96];
        snprintf(what, sizeof what, "attribute '%s'", name);
        if ((st = h5_read_string(&s, NULL, attr, 1, path, what)) == MR_OK) {
            snprintf(buf, size, "%s", s);
            free(s);
        }
    } else {
        double v;
        int present;
        h5_close_type(&type);
        H5Aclose(attr);
        attr = -1;
        if ((st = h5_attr_number(&v, &present, file, path, name)) == MR_OK && present)
            snprintf(buf, size, "%.17g", v);
    }
    h5_close_type(&type);
    if (attr >= 0) H5Aclose(attr);
    return st;
}

/* Dataset rank and dims (up to 4); MR_ERR_INPUT naming the dataset when it cannot be read. */
static mr_status h5_dataset_shape(int *rank, hsize_t dims[4], hid_t ds, const char *path,
                                  const char *name)
{
    hid_t space = H5Dget_space(ds);
    int r;
    if (space < 0)
        return mr_error_set(MR_ERR_INPUT, "%s: dataset '%s': cannot read its shape: %s", path,
                            name, h5_err_detail());
    r = H5Sget_simple_extent_ndims(space);
    if (r < 0 || r > 4) {
        H5Sclose(space);
        return mr_error_set(MR_ERR_INPUT, "%s: dataset '%s': expected rank 0..4, found %d", path,
                            name, r);
    }
    H5Sget_simple_extent_dims(space, dims, NULL);
    H5Sclose(space);
    *rank = r;
    return MR_OK;
}

/* ---------------------------------------------------------------- open */

/* Member index of a compound whose name is one of `a`, `b`; -1 when absent. */
static int compound_member(hid_t type, const char *a, const char *b)
{
    int n = H5Tget_nmembers(type);
    for (int i = 0; i < n; i++) {
        char *name = H5Tget_member_name(type, (unsigned)i);
        int hit = name && (strcmp(name, a) == 0 || strcmp(name, b) == 0);
        H5free_memory(name);
        if (hit) return i;
    }
    return -1;
}

/* Open and validate `kspace`: rank 3 or 4, compound {r,i} of float32 or float64. */
static mr_status open_kspace(mr_fastmri_file *f)
{
    const char *path = f->path;
    hid_t ftype = -1;
    hsize_t dims[4] = {0, 0, 0, 0};
    mr_status st = MR_OK;
    char desc[256];
    int ri, ii;

    f->kspace = H5Dopen2(f->file, "kspace", H5P_DEFAULT);
    if (f->kspace < 0)
        return mr_error_set(MR_ERR_INPUT, "%s: dataset 'kspace': cannot open: %s", path,
                            h5_err_detail());
    f->kspace_space = H5Dget_space(f->kspace);
    ftype = H5Dget_type(f->kspace);
    if (f->kspace_space < 0 || ftype < 0) {
        st = mr_error_set(MR_ERR_INPUT, "%s: dataset 'kspace': cannot read its type or shape: %s",
                          path, h5_err_detail());
        goto done;
    }
    f->kspace_rank = H5Sget_simple_extent_ndims(f->kspace_space);
    if (f->kspace_rank != 3 && f->kspace_rank != 4) {
        st = mr_error_set(MR_ERR_INPUT, "%s: dataset 'kspace': expected rank 3 (slices, H, W) or "
                          "4 (slices, coils, H, W), found rank %d", path, f->kspace_rank);
        goto done;
    }
    H5Sget_simple_extent_dims(f->kspace_space, dims, NULL);
    for (int i = 0; i < f->kspace_rank; i++) {
        if (dims[i] == 0) {
            st = mr_error_set(MR_ERR_INPUT, "%s: dataset 'kspace': expected non-empty dims, found "
                              "dim %d = 0", path, i);
            goto done;
        }
    }
    h5_type_describe(desc, sizeof desc, ftype);
    ri = H5Tget_class(ftype) == H5T_COMPOUND ? compound_member(ftype, "r", "real") : -1;
    ii = H5Tget_class(ftype) == H5T_COMPOUND ? compound_member(ftype, "i", "imag") : -1;
    if (ri < 0 || ii < 0 || H5Tget_nmembers(ftype) != 2) {
        st = mr_error_set(MR_ERR_INPUT, "%s: dataset 'kspace': expected complex data (complex64: "
                          "compound {r: float32, i: float32}), found %s", path, desc);
        goto done;
    }
    for (int m = 0; m < 2; m++) {
        hid_t mt = H5Tget_member_type(ftype, (unsigned)m);
        int ok = H5Tget_class(mt) == H5T_FLOAT && (H5Tget_size(mt) == 4 || H5Tget_size(mt) == 8);
        H5Tclose(mt);
        if (!ok) {
            st = mr_error_set(MR_ERR_INPUT, "%s: dataset 'kspace': expected complex members of "
                              "float32 or float64, found %s", path, desc);
            goto done;
        }
    }
    /* The memory type names its members like the file, so HDF5 matches them; for a little-endian
     * complex64 file it equals the file type and the read is a plain copy. */
    {
        char *rname = H5Tget_member_name(ftype, (unsigned)ri);
        char *iname = H5Tget_member_name(ftype, (unsigned)ii);
        f->kspace_mtype = H5Tcreate(H5T_COMPOUND, 2 * sizeof(float));
        if (f->kspace_mtype < 0 || H5Tinsert(f->kspace_mtype, rname, 0, H5T_NATIVE_FLOAT) < 0 ||
            H5Tinsert(f->kspace_mtype, iname, sizeof(float), H5T_NATIVE_FLOAT) < 0)
            st = mr_error_set(MR_ERR_INTERNAL, "%s: dataset 'kspace': cannot build the memory "
                              "type: %s", path, h5_err_detail());
        H5free_memory(rname);
        H5free_memory(iname);
        if (st != MR_OK) goto done;
    }
    f->info.has_kspace = 1;
    f->info.multicoil = f->kspace_rank == 4;
    f->info.slices = dims[0];
    f->info.coils = f->kspace_rank == 4 ? dims[1] : 1;
    f->info.height = dims[f->kspace_rank - 2];
    f->info.width = dims[f->kspace_rank - 1];
    {
        size_t numel;
        size_t sdims[3] = {f->info.coils, f->info.height, f->info.width};
        if (mr_dims_numel(&numel, 3, sdims) != MR_OK || numel > SIZE_MAX / sizeof(mr_cfloat)) {
            st = mr_error_set(MR_ERR_INPUT, "%s: dataset 'kspace': slice of %zu x %zu x %zu is too "
                              "large", path, sdims[0], sdims[1], sdims[2]);
            goto done;
        }
    }
done:
    h5_close_type(&ftype);
    return st;
}

static mr_status open_header(mr_fastmri_file *f)
{
    hid_t ds;
    mr_status st;
    size_t len = 0;
    char source[4200];
    if (!h5_dataset_exists(f->file, "ismrmrd_header")) return MR_OK;
    ds = H5Dopen2(f->file, "ismrmrd_header", H5P_DEFAULT);
    if (ds < 0)
        return mr_error_set(MR_ERR_INPUT, "%s: dataset 'ismrmrd_header': cannot open: %s", f->path,
                            h5_err_detail());
    st = h5_read_string(&f->header_xml, &len, ds, 0, f->path, "dataset 'ismrmrd_header'");
    H5Dclose(ds);
    if (st != MR_OK) return st;
    snprintf(source, sizeof source, "%s: dataset 'ismrmrd_header'", f->path);
    /* mr_ismrmrd_hdr_parse names `source` in its messages. */
    if ((st = mr_ismrmrd_hdr_parse(&f->info.hdr, f->header_xml, len, source)) != MR_OK) return st;
    f->info.has_header = 1;
    f->info.header_xml = f->header_xml;
    return MR_OK;
}

static mr_status open_mask(mr_fastmri_file *f)
{
    hid_t ds;
    int rank;
    hsize_t dims[4];
    mr_status st;
    if (!h5_dataset_exists(f->file, "mask")) return MR_OK;
    ds = H5Dopen2(f->file, "mask", H5P_DEFAULT);
    if (ds < 0)
        return mr_error_set(MR_ERR_INPUT, "%s: dataset 'mask': cannot open: %s", f->path,
                            h5_err_detail());
    st = h5_dataset_shape(&rank, dims, ds, f->path, "mask");
    H5Dclose(ds);
    if (st != MR_OK) return st;
    if (rank != 1)
        return mr_error_set(MR_ERR_INPUT, "%s: dataset 'mask': expected a 1-D mask over the "
                            "phase-encode columns, found rank %d", f->path, rank);
    if (f->info.has_kspace && dims[0] != f->info.width)
        return mr_error_set(MR_ERR_INPUT, "%s: dataset 'mask': expected %zu values (the width of "
                            "'kspace'), found %llu", f->path, f->info.width,
                            (unsigned long long)dims[0]);
    f->info.has_mask = 1;
    f->info.mask_len = dims[0];
    return MR_OK;
}

static mr_status open_reference(mr_fastmri_file *f)
{
    static const char *names[2] = {"reconstruction_rss", "reconstruction_esc"};
    for (int i = 0; i < 2; i++) {
        hid_t ds;
        hsize_t dims[4];
        int rank;
        mr_status st;
        if (!h5_dataset_exists(f->file, names[i])) continue;
        ds = H5Dopen2(f->file, names[i], H5P_DEFAULT);
        if (ds < 0)
            return mr_error_set(MR_ERR_INPUT, "%s: dataset '%s': cannot open: %s", f->path,
                                names[i], h5_err_detail());
        st = h5_dataset_shape(&rank, dims, ds, f->path, names[i]);
        H5Dclose(ds);
        if (st != MR_OK) return st;
        snprintf(f->info.ref_name, sizeof f->info.ref_name, "%s", names[i]);
        f->info.ref_ndim = rank;
        for (int d = 0; d < rank; d++) f->info.ref_dims[d] = (size_t)dims[d];
        return MR_OK;
    }
    return MR_OK;
}

static mr_status open_attributes(mr_fastmri_file *f)
{
    mr_status st;
    double v = 0;
    int present;
    mr_fastmri_info *in = &f->info;
    if ((st = h5_attr_text(in->acquisition, sizeof in->acquisition, f->file, f->path,
                           "acquisition")) != MR_OK)
        return st;
    if ((st = h5_attr_text(in->patient_id, sizeof in->patient_id, f->file, f->path,
                           "patient_id")) != MR_OK)
        return st;
    if ((st = h5_attr_text(in->mrpipe_method, sizeof in->mrpipe_method, f->file, f->path,
                           "mrpipe_method")) != MR_OK)
        return st;
    if ((st = h5_attr_number(&in->max, &in->has_max, f->file, f->path, "max")) != MR_OK) return st;
    if ((st = h5_attr_number(&in->norm, &in->has_norm, f->file, f->path, "norm")) != MR_OK)
        return st;
    if ((st = h5_attr_number(&in->acceleration, &in->has_acceleration, f->file, f->path,
                             "acceleration")) != MR_OK)
        return st;
    if ((st = h5_attr_number(&v, &present, f->file, f->path, "num_low_frequency")) != MR_OK)
        return st;
    if (present) {
        in->has_num_low = 1;
        in->num_low_frequency = lround(v);
    }
    return MR_OK;
}

mr_status mr_fastmri_open(mr_fastmri_file **out, const char *path)
{
    mr_fastmri_file *f = NULL;
    mr_status st = MR_OK;
    htri_t is_h5;
    struct stat sb;

    *out = NULL;
    h5_quiet();
    if (!path || !*path) return mr_error_set(MR_ERR_USAGE, "empty input path");
    if (stat(path, &sb) != 0)
        return mr_error_set(MR_ERR_INPUT, "%s: cannot open the input: %s", path, strerror(errno));
    if (!S_ISREG(sb.st_mode))
        return mr_error_set(MR_ERR_INPUT, "%s: expected an HDF5 file, found a directory or special "
                            "file", path);
    if (access(path, R_OK) != 0)
        return mr_error_set(MR_ERR_INPUT, "%s: cannot read the input: %s", path, strerror(errno));
    is_h5 = H5Fis_hdf5(path);
    if (is_h5 <= 0) {
        H5Eclear2(H5E_DEFAULT);
        return mr_error_set(MR_ERR_INPUT, "%s: expected an HDF5 file (fastMRI layout), found %s",
                            path, sb.st_size == 0 ? "an empty file" : "no HDF5 signature");
    }
    f = mr_calloc(1, sizeof *f);
    if (!f) return MR_ERR_NOMEM;
    f->file = f->kspace = f->kspace_space = f->kspace_mtype = -1;
    snprintf(f->path, sizeof f->path, "%s", path);
    f->file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f->file < 0) {
        st = mr_error_set(MR_ERR_INPUT, "%s: cannot open as HDF5 (truncated or damaged file?): %s",
                          path, h5_err_detail());
        goto fail;
    }
    if (h5_dataset_exists(f->file, "kspace")) {
        if ((st = open_kspace(f)) != MR_OK) goto fail;
    }
    if ((st = open_header(f)) != MR_OK) goto fail;
    if ((st = open_mask(f)) != MR_OK) goto fail;
    if ((st = open_reference(f)) != MR_OK) goto fail;
    f->info.has_reconstruction = h5_dataset_exists(f->file, "reconstruction");
    if ((st = open_attributes(f)) != MR_OK) goto fail;
    *out = f;
    return MR_OK;
fail:
    mr_fastmri_close(f);
    return st;
}

const mr_fastmri_info *mr_fastmri_get_info(const mr_fastmri_file *f) { return &f->info; }

int mr_fastmri_has_dataset(const mr_fastmri_file *f, const char *dataset)
{
    h5_quiet();
    return f && dataset && h5_dataset_exists(f->file, dataset);
}

void mr_fastmri_close(mr_fastmri_file *f)
{
    if (!f) return;
    h5_quiet();
    h5_close_type(&f->kspace_mtype);
    h5_close_space(&f->kspace_space);
    h5_close_dataset(&f->kspace);
    if (f->file >= 0) H5Fclose(f->file);
    free(f->header_xml);
    free(f);
}

/* ---------------------------------------------------------------- read */

mr_status mr_fastmri_read_kspace_slice(mr_fastmri_file *f, size_t slice, mr_cfloat *out)
{
    hsize_t start[4] = {0, 0, 0, 0}, count[4];
    hsize_t n;
    hid_t mspace = -1, fspace = -1;
    mr_status st = MR_OK;
    const mr_fastmri_info *in = &f->info;
    const float *v = (const float *)out;

    h5_quiet();
    if (!in->has_kspace)
        return mr_error_set(MR_ERR_INPUT, "%s: dataset 'kspace': expected k-space, found no "
                            "'kspace' dataset", f->path);
    if (slice >= in->slices)
        return mr_error_set(MR_ERR_USAGE, "%s: dataset 'kspace': slice %zu out of range (%zu "
                            "slices)", f->path, slice, in->slices);
    start[0] = slice;
    count[0] = 1;
    if (f->kspace_rank == 4) {
        count[1] = in->coils;
        count[2] = in->height;
        count[3] = in->width;
    } else {
        count[1] = in->height;
        count[2] = in->width;
    }
    n = (hsize_t)in->coils * in->height * in->width;
    fspace = H5Scopy(f->kspace_space);
    /* The memory space has the selection's own shape: with a flat 1-D one, HDF5 1.10 maps a
     * chunked selection element row by row and reads about ten times slower. */
    mspace = H5Screate_simple(f->kspace_rank, count, NULL);
    if (fspace < 0 || mspace < 0 ||
        H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, NULL, count, NULL) < 0) {
        st = mr_error_set(MR_ERR_INTERNAL, "%s: dataset 'kspace': cannot select slice %zu: %s",
                          f->path, slice, h5_err_detail());
        goto done;
    }
    if (H5Dread(f->kspace, f->kspace_mtype, mspace, fspace, H5P_DEFAULT, out) < 0) {
        st = mr_error_set(MR_ERR_INPUT, "%s: dataset 'kspace': cannot read slice %zu (truncated or "
                          "damaged file?): %s", f->path, slice, h5_err_detail());
        goto done;
    }
    /* NaN/Inf would poison every later stage; report the first one with its (coil, row, col). */
    for (size_t k = 0; k < 2 * (size_t)n; k++) {
        if (!isfinite(v[k])) {
            size_t e = k / 2, hw = in->height * in->width;
            st = mr_error_set(MR_ERR_INPUT, "%s: dataset 'kspace', slice %zu: expected finite "
                              "values, found %s at index (coil %zu, row %zu, col %zu)%s", f->path,
                              slice, isnan(v[k]) ? "NaN" : "Inf", e / hw, (e % hw) / in->width,
                              e % in->width, k % 2 ? " (imaginary part)" : "");
            goto done;
        }
    }
done:
    h5_close_space(&mspace);
    h5_close_space(&fspace);
    return st;
}

/* Read a numeric dataset (integer, float, or enum such as h5py's bool) as float32; `n` is its
 * element count. */
static mr_status read_as_float(float *out, size_t n, hid_t ds, const char *path, const char *name)
{
    hid_t ftype = H5Dget_type(ds), mtype = -1;
    mr_status st = MR_OK;
    char desc[256];
    H5T_class_t cls = H5Tget_class(ftype);
    if (cls == H5T_FLOAT || cls == H5T_INTEGER) {
        if (H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0)
            st = mr_error_set(MR_ERR_INPUT, "%s: dataset '%s': cannot read: %s", path, name,
                              h5_err_detail());
    } else if (cls == H5T_ENUM) {
        /* HDF5 does not convert enums to numbers: read the raw integers in the native enum type
         * (h5py's bool is FALSE = 0, TRUE = 1) and map non-zero to 1. */
        unsigned char *raw = NULL;
        size_t es;
        mtype = H5Tget_native_type(ftype, H5T_DIR_ASCEND);
        es = mtype >= 0 ? H5Tget_size(mtype) : 0;
        if (es != 1 && es != 2 && es != 4 && es != 8) {
            h5_type_describe(desc, sizeof desc, ftype);
            st = mr_error_set(MR_ERR_INPUT, "%s: dataset '%s': expected a numeric or bool dtype, "
                              "found %s", path, name, desc);
            goto done;
        }
        raw = mr_malloc(n * es);
        if (!raw) {
            st = MR_ERR_NOMEM;
            goto done;
        }
        if (H5Dread(ds, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, raw) < 0) {
            st = mr_error_set(MR_ERR_INPUT, "%s: dataset '%s': cannot read: %s", path, name,
                              h5_err_detail());
        } else {
            for (size_t i = 0; i < n; i++) {
                int nonzero = 0;
                for (size_t b = 0; b < es; b++) nonzero |= raw[i * es + b] != 0;
                out[i] = nonzero ? 1.0f : 0.0f;
            }
        }
        free(raw);
    } else {
        h5_type_describe(desc, sizeof desc, ftype);
        st = mr_error_set(MR_ERR_INPUT, "%s: dataset '%s': expected a real numeric dtype "
                          "(float32, float64, integer or bool), found %s", path, name, desc);
    }
done:
    h5_close_type(&mtype);
    h5_close_type(&ftype);
    return st;
}

mr_status mr_fastmri_read_attr_doubles(mr_fastmri_file *f, const char *name, double *v, size_t cap,
                                       size_t *n)
{
    hid_t attr, type = -1, space = -1;
    mr_status st = MR_OK;
    *n = 0;
    h5_quiet();
    if (H5Aexists(f->file, name) <= 0) return MR_OK;
    attr = H5Aopen(f->file, name, H5P_DEFAULT);
    if (attr < 0)
        return mr_error_set(MR_ERR_INPUT, "%s: attribute '%s': cannot open: %s", f->path, name,
                            h5_err_detail());
    type = H5Aget_type(attr);
    space = H5Aget_space(attr);
    hssize_t np = space >= 0 ? H5Sget_simple_extent_npoints(space) : -1;
    if (type < 0 || (H5Tget_class(type) != H5T_FLOAT && H5Tget_class(type) != H5T_INTEGER))
        st = mr_error_set(MR_ERR_INPUT, "%s: attribute '%s': expected numbers", f->path, name);
    else if (np < 1 || (size_t)np > cap)
        st = mr_error_set(MR_ERR_INPUT, "%s: attribute '%s': expected 1 to %zu values, found %lld",
                          f->path, name, cap, (long long)np);
    else if (H5Aread(attr, H5T_NATIVE_DOUBLE, v) < 0)
        st = mr_error_set(MR_ERR_INPUT, "%s: attribute '%s': cannot read: %s", f->path, name,
                          h5_err_detail());
    for (hssize_t i = 0; st == MR_OK && i < np; i++)
        if (!isfinite(v[i]))
            st = mr_error_set(MR_ERR_INPUT, "%s: attribute '%s': value %lld is not finite", f->path,
                              name, (long long)i);
    if (st == MR_OK) *n = (size_t)np;
    if (type >= 0) H5Tclose(type);
    h5_close_space(&space);
    H5Aclose(attr);
    return st;
}

mr_status mr_fastmri_read_mask(mr_fastmri_file *f, float *out)
{
    hid_t ds;
    mr_status st;
    h5_quiet();
    if (!f->info.has_mask)
        return mr_error_set(MR_ERR_INPUT, "%s: dataset 'mask': expected a mask, found none",
                            f->path);
    ds = H5Dopen2(f->file, "mask", H5P_DEFAULT);
    if (ds < 0)
        return mr_error_set(MR_ERR_INPUT, "%s: dataset 'mask': cannot open: %s", f->path,
                            h5_err_detail());
    st = read_as_float(out, f->info.mask_len, ds, f->path, "mask");
    H5Dclose(ds);
    return st;
}

mr_status mr_fastmri_read_image(mr_fastmri_file *f, const char *dataset, mr_array **out)
{
    hid_t ds = -1;
    hsize_t dims[4];
    size_t sdims[4];
    int rank;
    mr_status st;
    mr_array *a = NULL;

    *out = NULL;
    h5_quiet();
    if (!h5_dataset_exists(f->file, dataset))
        return mr_error_set(MR_ERR_INPUT, "%s: dataset '%s': expected an image dataset, found no "
                            "such dataset", f->path, dataset);
    ds = H5Dopen2(f->file, dataset, H5P_DEFAULT);
    if (ds < 0)
        return mr_error_set(MR_ERR_INPUT, "%s: dataset '%s': cannot open: %s", f->path, dataset,
                            h5_err_detail());
    if ((st = h5_dataset_shape(&rank, dims, ds, f->path, dataset)) != MR_OK) goto done;
    if (rank < 1) {
        st = mr_error_set(MR_ERR_INPUT, "%s: dataset '%s': expected rank 1..4, found a scalar",
                          f->path, dataset);
        goto done;
    }
    for (int i = 0; i < rank; i++) sdims[i] = (size_t)dims[i];
    if ((st = mr_array_create(&a, MR_FLOAT32, rank, sdims)) != MR_OK) {
        mr_error_prefix(st, "%s: dataset '%s': ", f->path, dataset);
        goto done;
    }
    if ((st = read_as_float(mr_array_f32(a), mr_array_numel(a), ds, f->path, dataset)) != MR_OK)
        goto done;
    *out = a;
    a = NULL;
done:
    mr_array_destroy(a);
    if (ds >= 0) H5Dclose(ds);
    return st;
}

/* ---------------------------------------------------------------- writer */

mr_status mr_fastmri_writer_create(mr_fastmri_writer **out, const char *path)
{
    mr_fastmri_writer *w;
    mr_status st;
    *out = NULL;
    h5_quiet();
    w = mr_calloc(1, sizeof *w);
    if (!w) return MR_ERR_NOMEM;
    w->file = w->kspace = w->ctype_file = w->ctype_mem = -1;
    if ((st = mr_atomic_begin(&w->af, path)) != MR_OK) {
        free(w);
        return st;
    }
    w->file = H5Fcreate(w->af.tmp_path, H5F_ACC_EXCL, H5P_DEFAULT, H5P_DEFAULT);
    if (w->file < 0) {
        st = mr_error_set(MR_ERR_IO, "%s: cannot create the HDF5 output (temporary %s): %s", path,
                          w->af.tmp_path, h5_err_detail());
        mr_atomic_abort(&w->af);
        free(w);
        return st;
    }
    *out = w;
    return MR_OK;
}

/* complex64 as h5py writes it: compound {r: <f4, i: <f4}, 8 bytes. */
static hid_t make_complex_type(hid_t member)
{
    hid_t t = H5Tcreate(H5T_COMPOUND, 8);
    if (t < 0) return -1;
    if (H5Tinsert(t, "r", 0, member) < 0 || H5Tinsert(t, "i", 4, member) < 0) {
        H5Tclose(t);
        return -1;
    }
    return t;
}

mr_status mr_fastmri_writer_kspace_begin(mr_fastmri_writer *w, int multicoil, size_t slices,
                                         size_t coils, size_t height, size_t width)
{
    hid_t space = -1, dcpl = -1;
    hsize_t chunk[4];
    mr_status st = MR_OK;
    const char *path = w->af.final_path;
    size_t numel, sdims[4] = {slices, coils, height, width};

    h5_quiet();
    if (w->kspace >= 0)
        return mr_error_set(MR_ERR_USAGE, "%s: dataset 'kspace': already created", path);
    if (!multicoil && coils != 1)
        return mr_error_set(MR_ERR_USAGE, "%s: dataset 'kspace': single-coil layout expects 1 "
                            "coil, found %zu", path, coils);
    if ((st = mr_dims_numel(&numel, 4, sdims)) != MR_OK)
        return mr_error_prefix(st, "%s: dataset 'kspace': ", path);
    w->kspace_rank = multicoil ? 4 : 3;
    if (multicoil) {
        w->kspace_dims[0] = slices;
        w->kspace_dims[1] = coils;
        w->kspace_dims[2] = height;
        w->kspace_dims[3] = width;
    } else {
        w->kspace_dims[0] = slices;
        w->kspace_dims[1] = height;
        w->kspace_dims[2] = width;
    }
    /* One slice per chunk, so that a reader's slice hyperslab touches one chunk; a slice larger
     * than HDF5's 4 GiB chunk limit falls back to one (coil, slice) per chunk. */
    for (int i = 0; i < w->kspace_rank; i++) chunk[i] = w->kspace_dims[i];
    chunk[0] = 1;
    if ((double)coils * height * width * 8 >= 4294967295.0 && multicoil) chunk[1] = 1;
    if ((double)height * width * 8 >= 4294967295.0) {
        return mr_error_set(MR_ERR_USAGE, "%s: dataset 'kspace': an in-plane size of %zu x %zu "
                            "exceeds HDF5's 4 GiB chunk limit", path, height, width);
    }
    w->ctype_file = make_complex_type(H5T_IEEE_F32LE);
    w->ctype_mem = make_complex_type(H5T_NATIVE_FLOAT);
    space = H5Screate_simple(w->kspace_rank, w->kspace_dims, NULL);
    dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (w->ctype_file < 0 || w->ctype_mem < 0 || space < 0 || dcpl < 0 ||
        H5Pset_chunk(dcpl, w->kspace_rank, chunk) < 0) {
        st = mr_error_set(MR_ERR_INTERNAL, "%s: dataset 'kspace': cannot set up the dataset: %s",
                          path, h5_err_detail());
        goto done;
    }
    w->kspace = H5Dcreate2(w->file, "kspace", w->ctype_file, space, H5P_DEFAULT, dcpl,
                           H5P_DEFAULT);
    if (w->kspace < 0)
        st = mr_error_set(MR_ERR_IO, "%s: dataset 'kspace': cannot create: %s", path,
                          h5_err_detail());
done:
    h5_close_space(&space);
    if (dcpl >= 0) H5Pclose(dcpl);
    if (st != MR_OK) {
        h5_close_type(&w->ctype_file);
        h5_close_type(&w->ctype_mem);
    }
    return st;
}

mr_status mr_fastmri_writer_kspace_slice(mr_fastmri_writer *w, size_t slice, const mr_cfloat *data)
{
    hsize_t start[4] = {0, 0, 0, 0}, count[4];
    hid_t fspace = -1, mspace = -1;
    mr_status st = MR_OK;
    const char *path = w->af.final_path;

    h5_quiet();
    if (w->kspace < 0)
        return mr_error_set(MR_ERR_USAGE, "%s: dataset 'kspace': write a slice after "
                            "mr_fastmri_writer_kspace_begin", path);
    if (slice >= w->kspace_dims[0])
        return mr_error_set(MR_ERR_USAGE, "%s: dataset 'kspace': slice %zu out of range (%llu "
                            "slices)", path, slice, (unsigned long long)w->kspace_dims[0]);
    for (int i = 0; i < w->kspace_rank; i++) count[i] = w->kspace_dims[i];
    count[0] = 1;
    start[0] = slice;
    fspace = H5Dget_space(w->kspace);
    mspace = H5Screate_simple(w->kspace_rank, count, NULL); /* same shape: see the reader */
    if (fspace < 0 || mspace < 0 ||
        H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, NULL, count, NULL) < 0) {
        st = mr_error_set(MR_ERR_INTERNAL, "%s: dataset 'kspace': cannot select slice %zu: %s",
                          path, slice, h5_err_detail());
        goto done;
    }
    if (H5Dwrite(w->kspace, w->ctype_mem, mspace, fspace, H5P_DEFAULT, data) < 0)
        st = mr_error_set(MR_ERR_IO, "%s: dataset 'kspace': cannot write slice %zu (disk full?): "
                          "%s", path, slice, h5_err_detail());
done:
    h5_close_space(&mspace);
    h5_close_space(&fspace);
    return st;
}

mr_status mr_fastmri_writer_image(mr_fastmri_writer *w, const char *name, const mr_array *a)
{
    hsize_t dims[MR_MAX_DIMS];
    hid_t space = -1, ds = -1;
    mr_status st = MR_OK;
    const char *path = w->af.final_path;

    h5_quiet();
    if (!name || !*name) return mr_error_set(MR_ERR_USAGE, "%s: empty dataset name", path);
    if (a->dtype != MR_FLOAT32)
        return mr_error_set(MR_ERR_USAGE, "%s: dataset '%s': expected a float32 array, found "
                            "complex64", path, name);
    if (H5Lexists(w->file, name, H5P_DEFAULT) > 0)
        return mr_error_set(MR_ERR_USAGE, "%s: dataset '%s': already written", path, name);
    H5Eclear2(H5E_DEFAULT);
    for (int i = 0; i < a->ndim; i++) dims[i] = a->dims[i];
    space = H5Screate_simple(a->ndim, dims, NULL);
    if (space < 0) {
        st = mr_error_set(MR_ERR_INTERNAL, "%s: dataset '%s': cannot create its dataspace: %s",
                          path, name, h5_err_detail());
        goto done;
    }
    ds = H5Dcreate2(w->file, name, H5T_IEEE_F32LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (ds < 0 || H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, a->data) < 0)
        st = mr_error_set(MR_ERR_IO, "%s: dataset '%s': cannot write: %s", path, name,
                          h5_err_detail());
done:
    h5_close_dataset(&ds);
    h5_close_space(&space);
    return st;
}

mr_status mr_fastmri_writer_mask(mr_fastmri_writer *w, const float *mask, size_t len)
{
    hsize_t n = len;
    hid_t space = -1, ds = -1, ftype = -1, mtype = -1;
    signed char *buf = NULL;
    signed char v0 = 0, v1 = 1;
    mr_status st = MR_OK;
    const char *path = w->af.final_path;

    h5_quiet();
    if (len == 0) return mr_error_set(MR_ERR_USAGE, "%s: dataset 'mask': empty mask", path);
    if (H5Lexists(w->file, "mask", H5P_DEFAULT) > 0)
        return mr_error_set(MR_ERR_USAGE, "%s: dataset 'mask': already written", path);
    buf = mr_malloc(len);
    if (!buf) return MR_ERR_NOMEM;
    for (size_t i = 0; i < len; i++) buf[i] = mask[i] != 0.0f ? 1 : 0;
    /* numpy bool in h5py: enum {FALSE = 0, TRUE = 1} over a little-endian int8. */
    ftype = H5Tenum_create(H5T_STD_I8LE);
    mtype = H5Tenum_create(H5T_NATIVE_SCHAR);
    if (ftype < 0 || mtype < 0 || H5Tenum_insert(ftype, "FALSE", &v0) < 0 ||
        H5Tenum_insert(ftype, "TRUE", &v1) < 0 || H5Tenum_insert(mtype, "FALSE", &v0) < 0 ||
        H5Tenum_insert(mtype, "TRUE", &v1) < 0) {
        st = mr_error_set(MR_ERR_INTERNAL, "%s: dataset 'mask': cannot build the bool type: %s",
                          path, h5_err_detail());
        goto done;
    }
    space = H5Screate_simple(1, &n, NULL);
    ds = space < 0 ? -1 : H5Dcreate2(w->file, "mask", ftype, space, H5P_DEFAULT, H5P_DEFAULT,
                                     H5P_DEFAULT);
    if (ds < 0 || H5Dwrite(ds, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)
        st = mr_error_set(MR_ERR_IO, "%s: dataset 'mask': cannot write: %s", path, h5_err_detail());
done:
    h5_close_dataset(&ds);
    h5_close_space(&space);
    h5_close_type(&ftype);
    h5_close_type(&mtype);
    free(buf);
    return st;
}

mr_status mr_fastmri_writer_header(mr_fastmri_writer *w, const char *xml)
{
    hid_t space = -1, ds = -1, type = -1;
    mr_status st = MR_OK;
    const char *path = w->af.final_path;
    size_t len = xml ? strlen(xml) : 0;

    h5_quiet();
    if (len == 0)
        return mr_error_set(MR_ERR_USAGE, "%s: dataset 'ismrmrd_header': empty header", path);
    if (H5Lexists(w->file, "ismrmrd_header", H5P_DEFAULT) > 0)
        return mr_error_set(MR_ERR_USAGE, "%s: dataset 'ismrmrd_header': already written", path);
    /* A scalar fixed-length byte string, as numpy's bytes_ is stored (h5py reads bytes). */
    type = H5Tcopy(H5T_C_S1);
    space = H5Screate(H5S_SCALAR);
    if (type < 0 || space < 0 || H5Tset_size(type, len) < 0 ||
        H5Tset_strpad(type, H5T_STR_NULLPAD) < 0 || H5Tset_cset(type, H5T_CSET_ASCII) < 0) {
        st = mr_error_set(MR_ERR_INTERNAL, "%s: dataset 'ismrmrd_header': cannot build the string "
                          "type: %s", path, h5_err_detail());
        goto done;
    }
    ds = H5Dcreate2(w->file, "ismrmrd_header", type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (ds < 0 || H5Dwrite(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, xml) < 0)
        st = mr_error_set(MR_ERR_IO, "%s: dataset 'ismrmrd_header': cannot write: %s", path,
                          h5_err_detail());
done:
    h5_close_dataset(&ds);
    h5_close_space(&space);
    h5_close_type(&type);
    return st;
}

/* Replace an existing root attribute, so setting one twice keeps the last value. */
static void drop_attr(hid_t file, const char *name)
{
    if (H5Aexists(file, name) > 0) H5Adelete(file, name);
    H5Eclear2(H5E_DEFAULT);
}

mr_status mr_fastmri_writer_attr_double(mr_fastmri_writer *w, const char *name, double value)
{
    hid_t space, attr = -1;
    mr_status st = MR_OK;
    h5_quiet();
    if (!name || !*name)
        return mr_error_set(MR_ERR_USAGE, "%s: empty attribute name", w->af.final_path);
    drop_attr(w->file, name);
    space = H5Screate(H5S_SCALAR);
    if (space >= 0)
        attr = H5Acreate2(w->file, name, H5T_IEEE_F64LE, space, H5P_DEFAULT, H5P_DEFAULT);
    if (attr < 0 || H5Awrite(attr, H5T_NATIVE_DOUBLE, &value) < 0)
        st = mr_error_set(MR_ERR_IO, "%s: attribute '%s': cannot write: %s", w->af.final_path,
                          name, h5_err_detail());
    if (attr >= 0) H5Aclose(attr);
    h5_close_space(&space);
    return st;
}

mr_status mr_fastmri_writer_attr_doubles(mr_fastmri_writer *w, const char *name, const double *v,
                                         size_t n)
{
    hid_t space, attr = -1;
    hsize_t d = (hsize_t)n;
    mr_status st = MR_OK;
    h5_quiet();
    if (!name || !*name || n == 0)
        return mr_error_set(MR_ERR_USAGE, "%s: attribute '%s': empty name or no values",
                            w->af.final_path, name ? name : "");
    drop_attr(w->file, name);
    space = H5Screate_simple(1, &d, NULL);
    if (space >= 0)
        attr = H5Acreate2(w->file, name, H5T_IEEE_F64LE, space, H5P_DEFAULT, H5P_DEFAULT);
    if (attr < 0 || H5Awrite(attr, H5T_NATIVE_DOUBLE, v) < 0)
        st = mr_error_set(MR_ERR_IO, "%s: attribute '%s': cannot write: %s", w->af.final_path,
                          name, h5_err_detail());
    if (attr >= 0) H5Aclose(attr);
    h5_close_space(&space);
    return st;
}

mr_status mr_fastmri_writer_attr_string(mr_fastmri_writer *w, const char *name, const char *value)
{
    hid_t space = -1, attr = -1, type = -1;
    mr_status st = MR_OK;
    const char *v = value ? value : "";
    h5_quiet();
    if (!name || !*name)
        return mr_error_set(MR_ERR_USAGE, "%s: empty attribute name", w->af.final_path);
    drop_attr(w->file, name);
    /* A variable-length UTF-8 string: what h5py writes for a Python str (read back as str). */
    type = H5Tcopy(H5T_C_S1);
    space = H5Screate(H5S_SCALAR);
    if (type >= 0 && space >= 0 && H5Tset_size(type, H5T_VARIABLE) >= 0 &&
        H5Tset_cset(type, H5T_CSET_UTF8) >= 0)
        attr = H5Acreate2(w->file, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    if (attr < 0 || H5Awrite(attr, type, &v) < 0)
        st = mr_error_set(MR_ERR_IO, "%s: attribute '%s': cannot write: %s", w->af.final_path,
                          name, h5_err_detail());
    if (attr >= 0) H5Aclose(attr);
    h5_close_space(&space);
    h5_close_type(&type);
    return st;
}

/* Close every id the writer holds; returns the number of other ids still open in the file
 * (leaks) before closing it, or -1 when closing failed. */
static int writer_close_all(mr_fastmri_writer *w)
{
    int leaked = 0;
    herr_t rc = 0;
    h5_close_dataset(&w->kspace);
    h5_close_type(&w->ctype_file);
    h5_close_type(&w->ctype_mem);
    if (w->file >= 0) {
        ssize_t open_ids = H5Fget_obj_count(w->file, H5F_OBJ_ALL | H5F_OBJ_LOCAL);
        if (open_ids > 1) leaked = (int)(open_ids - 1);
        if (H5Fflush(w->file, H5F_SCOPE_LOCAL) < 0) rc = -1;
        if (H5Fclose(w->file) < 0) rc = -1;
        w->file = -1;
    }
    return rc < 0 ? -1 : leaked;
}

mr_status mr_fastmri_writer_commit(mr_fastmri_writer *w)
{
    mr_status st;
    int r;
    char final_path[4096];
    h5_quiet();
    snprintf(final_path, sizeof final_path, "%s", w->af.final_path);
    r = writer_close_all(w);
    if (r != 0) {
        if (r < 0)
            st = mr_error_set(MR_ERR_IO, "%s: cannot flush and close the HDF5 output (disk full?): "
                              "%s", final_path, h5_err_detail());
        else
            st = mr_error_set(MR_ERR_INTERNAL, "%s: %d HDF5 objects were left open when closing "
                              "the output", final_path, r);
        mr_atomic_abort(&w->af);
        free(w);
        return st;
    }
    st = mr_atomic_commit(&w->af);
    free(w);
    return st;
}

void mr_fastmri_writer_abort(mr_fastmri_writer *w)
{
    if (!w) return;
    h5_quiet();
    writer_close_all(w);
    H5Eclear2(H5E_DEFAULT);
    mr_atomic_abort(&w->af);
    free(w);
}
