/*
 * nifti.c: NIfTI-1 single-file volumes (.nii, .nii.gz): read any standard scalar datatype into
 * float32, write float32. Own implementation of the NIfTI-1 standard (nifti1.h, NIfTI DFWG 2004):
 *
 *  - the 348-byte header; byte order is told by sizeof_hdr (348 as read, or 348 byte-swapped);
 *  - magic "n+1" (single file), voxel data from vox_offset (>= 352; some writers store 0 there,
 *    which readers such as nibabel and nifti1_io treat as 352);
 *  - voxel value = scl_slope * stored + scl_inter when scl_slope is finite and non-zero;
 *  - voxel (i, j, k) -> mm: method 3 (sform, sform_code > 0) first, else method 2 (qform,
 *    quaternion formula of the standard), else method 1 (pixdim scaling);
 *  - data is i fastest, so the volume is exactly the C-order array (k, j, i) = (S, H, W).
 *
 * All I/O goes through zlib's gz* functions, which read plain files transparently and write plain
 * files with mode "T". A header read in the other byte order is swapped to host order (meta->raw
 * holds it so); outputs are written in host order, which the standard allows (readers tell it by
 * sizeof_hdr), under a temporary name renamed when complete.
 */
#include "mr_io.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define NII_HDR_SIZE 348
#define NII_DATA_OFFSET 352          /* header + 4-byte extension flag */
#define NII_CHUNK ((size_t)1 << 20)  /* elements converted per block */
#define NII_IO_MAX ((size_t)1 << 30) /* bytes per gzread/gzwrite call (they take unsigned) */

/* Header field offsets (nifti1.h, struct nifti_1_header). */
enum {
    OFF_SIZEOF_HDR = 0,
    OFF_DIM = 40,          /* short[8] */
    OFF_INTENT_CODE = 68,  /* short */
    OFF_DATATYPE = 70,     /* short */
    OFF_BITPIX = 72,       /* short */
    OFF_PIXDIM = 76,       /* float[8] */
    OFF_VOX_OFFSET = 108,  /* float */
    OFF_SCL_SLOPE = 112,   /* float */
    OFF_SCL_INTER = 116,   /* float */
    OFF_XYZT_UNITS = 123,  /* char */
    OFF_CAL_MAX = 124,     /* float */
    OFF_CAL_MIN = 128,     /* float */
    OFF_DESCRIP = 148,     /* char[80] */
    OFF_QFORM_CODE = 252,  /* short */
    OFF_SFORM_CODE = 254,  /* short */
    OFF_QUATERN_B = 256,   /* float b, c, d, qoffset x, y, z */
    OFF_SROW = 280,        /* float[3][4] */
    OFF_MAGIC = 344,       /* char[4] */
};

/* Numeric header fields as (offset, element size, count), for byte swapping. */
static const struct {
    int off, size, count;
} nii_fields[] = {
    {0, 4, 1},    /* sizeof_hdr */
    {32, 4, 1},   /* extents */
    {36, 2, 1},   /* session_error */
    {40, 2, 8},   /* dim */
    {56, 4, 3},   /* intent_p1..3 */
    {68, 2, 4},   /* intent_code, datatype, bitpix, slice_start */
    {76, 4, 8},   /* pixdim */
    {108, 4, 3},  /* vox_offset, scl_slope, scl_inter */
    {120, 2, 1},  /* slice_end */
    {124, 4, 4},  /* cal_max, cal_min, slice_duration, toffset */
    {140, 4, 2},  /* glmax, glmin */
    {252, 2, 2},  /* qform_code, sform_code */
    {256, 4, 6},  /* quatern_b..d, qoffset_x..z */
    {280, 4, 12}, /* srow_x, srow_y, srow_z */
};

/* The datatypes mrpipe reads (nifti1.h DT_*). */
typedef struct {
    int code;
    int size;
    const char *name;
} nii_type;

static const nii_type nii_types[] = {
    {2, 1, "uint8"},    {256, 1, "int8"},    {4, 2, "int16"},   {512, 2, "uint16"},
    {8, 4, "int32"},    {768, 4, "uint32"},  {1024, 8, "int64"}, {1280, 8, "uint64"},
    {16, 4, "float32"}, {64, 8, "float64"},
};

/* Names of datatypes mrpipe does not read, for messages. */
static const char *nii_unsupported_name(int code)
{
    switch (code) {
    case 0: return "unknown";
    case 1: return "binary";
    case 32: return "complex64";
    case 128: return "rgb24";
    case 1536: return "float128";
    case 1792: return "complex128";
    case 2048: return "complex256";
    case 2304: return "rgba32";
    default: return "not a NIfTI-1 datatype";
    }
}

/* ---------------------------------------------------------------- header access (host order) */

static short get_i16(const unsigned char *h, int off)
{
    short v;
    memcpy(&v, h + off, 2);
    return v;
}
static int get_i32(const unsigned char *h, int off)
{
    int v;
    memcpy(&v, h + off, 4);
    return v;
}
static float get_f32(const unsigned char *h, int off)
{
    float v;
    memcpy(&v, h + off, 4);
    return v;
}
static void put_i16(unsigned char *h, int off, short v) { memcpy(h + off, &v, 2); }
static void put_i32(unsigned char *h, int off, int v) { memcpy(h + off, &v, 4); }
static void put_f32(unsigned char *h, int off, float v) { memcpy(h + off, &v, 4); }

static void swap_bytes(unsigned char *p, int size)
{
    for (int i = 0; i < size / 2; i++) {
        unsigned char t = p[i];
        p[i] = p[size - 1 - i];
        p[size - 1 - i] = t;
    }
}

static void swap_header(unsigned char *h)
{
    for (size_t f = 0; f < sizeof nii_fields / sizeof nii_fields[0]; f++)
        for (int k = 0; k < nii_fields[f].count; k++)
            swap_bytes(h + nii_fields[f].off + k * nii_fields[f].size, nii_fields[f].size);
}

static void swap_elements(unsigned char *p, size_t count, int size)
{
    if (size == 1) return;
    for (size_t i = 0; i < count; i++) swap_bytes(p + i * (size_t)size, size);
}

/* ---------------------------------------------------------------- geometry */

/* voxel -> mm from the header (host order): sform, else qform, else pixdim. */
static void nii_affine(double A[4][4], const unsigned char *h)
{
    memset(A, 0, 16 * sizeof(double));
    A[3][3] = 1;
    if (get_i16(h, OFF_SFORM_CODE) > 0) {
        for (int r = 0; r < 3; r++)
            for (int c = 0; c < 4; c++) A[r][c] = get_f32(h, OFF_SROW + 4 * (4 * r + c));
        return;
    }
    double px = get_f32(h, OFF_PIXDIM + 4), py = get_f32(h, OFF_PIXDIM + 8),
           pz = get_f32(h, OFF_PIXDIM + 12);
    if (get_i16(h, OFF_QFORM_CODE) > 0) {
        /* NIfTI-1 method 2: R from the unit quaternion (a, b, c, d), a = sqrt(1 - b^2 - c^2 - d^2);
         * columns scaled by pixdim, the third also by qfac = pixdim[0] (-1 or 1). */
        double b = get_f32(h, OFF_QUATERN_B), c = get_f32(h, OFF_QUATERN_B + 4),
               d = get_f32(h, OFF_QUATERN_B + 8);
        double a = 1.0 - (b * b + c * c + d * d);
        double qfac = get_f32(h, OFF_PIXDIM) < 0 ? -1.0 : 1.0;
        double R[3][3];
        if (a < 1e-7) { /* a is 0 up to rounding: renormalise (b, c, d) as nifti1_io does */
            double s = 1.0 / sqrt(b * b + c * c + d * d);
            b *= s;
            c *= s;
            d *= s;
            a = 0;
        } else {
            a = sqrt(a);
        }
        if (!(px > 0)) px = 1;
        if (!(py > 0)) py = 1;
        if (!(pz > 0)) pz = 1;
        R[0][0] = a * a + b * b - c * c - d * d;
        R[0][1] = 2 * (b * c - a * d);
        R[0][2] = 2 * (b * d + a * c);
        R[1][0] = 2 * (b * c + a * d);
        R[1][1] = a * a + c * c - b * b - d * d;
        R[1][2] = 2 * (c * d - a * b);
        R[2][0] = 2 * (b * d - a * c);
        R[2][1] = 2 * (c * d + a * b);
        R[2][2] = a * a + d * d - c * c - b * b;
        for (int r = 0; r < 3; r++) {
            A[r][0] = R[r][0] * px;
            A[r][1] = R[r][1] * py;
            A[r][2] = R[r][2] * pz * qfac;
            A[r][3] = get_f32(h, OFF_QUATERN_B + 12 + 4 * r);
        }
        return;
    }
    /* method 1 (Analyze compatibility): scaling only */
    A[0][0] = px > 0 ? px : 1;
    A[1][1] = py > 0 ? py : 1;
    A[2][2] = pz > 0 ? pz : 1;
}

/* Quaternion (b, c, d) and qfac of an affine's rotation part (the inverse of NIfTI-1 method 2, as
 * nifti1_io's mat44_to_quatern), assuming orthogonal columns (true of scanner geometry); the columns
 * are normalised by their lengths (the voxel sizes). Shared by the NIfTI writer and DICOM -> NIfTI. */
void mr_nifti_quatern_from_affine(double quat[3], double *qfac_out, const double A[4][4])
{
    double R[3][3], len[3], qfac = 1, a, b, c, d, tr;
    for (int col = 0; col < 3; col++) {
        len[col] = sqrt(A[0][col] * A[0][col] + A[1][col] * A[1][col] + A[2][col] * A[2][col]);
        if (len[col] == 0) len[col] = 1;
        for (int r = 0; r < 3; r++) R[r][col] = A[r][col] / len[col];
    }
    double det = R[0][0] * (R[1][1] * R[2][2] - R[1][2] * R[2][1]) -
                 R[0][1] * (R[1][0] * R[2][2] - R[1][2] * R[2][0]) +
                 R[0][2] * (R[1][0] * R[2][1] - R[1][1] * R[2][0]);
    if (det < 0) { /* a reflection: store it in qfac and make R proper */
        qfac = -1;
        for (int r = 0; r < 3; r++) R[r][2] = -R[r][2];
    }
    tr = R[0][0] + R[1][1] + R[2][2] + 1;
    if (tr > 0.5) {
        a = 0.5 * sqrt(tr);
        b = 0.25 * (R[2][1] - R[1][2]) / a;
        c = 0.25 * (R[0][2] - R[2][0]) / a;
        d = 0.25 * (R[1][0] - R[0][1]) / a;
    } else {
        double xd = 1 + R[0][0] - R[1][1] - R[2][2], yd = 1 + R[1][1] - R[0][0] - R[2][2],
               zd = 1 + R[2][2] - R[0][0] - R[1][1];
        if (xd > 1) {
            b = 0.5 * sqrt(xd);
            c = 0.25 * (R[0][1] + R[1][0]) / b;
            d = 0.25 * (R[0][2] + R[2][0]) / b;
            a = 0.25 * (R[2][1] - R[1][2]) / b;
        } else if (yd > 1) {
            c = 0.5 * sqrt(yd);
            b = 0.25 * (R[0][1] + R[1][0]) / c;
            d = 0.25 * (R[1][2] + R[2][1]) / c;
            a = 0.25 * (R[0][2] - R[2][0]) / c;
        } else {
            d = 0.5 * sqrt(zd);
            b = 0.25 * (R[0][2] + R[2][0]) / d;
            c = 0.25 * (R[1][2] + R[2][1]) / d;
            a = 0.25 * (R[1][0] - R[0][1]) / d;
        }
        if (a < 0) {
            b = -b;
            c = -c;
            d = -d;
        }
    }
    quat[0] = b;
    quat[1] = c;
    quat[2] = d;
    *qfac_out = qfac;
}

/* Quaternion, qfac and offsets of an affine into a header. */
static void nii_affine_to_quatern(unsigned char *h, const double A[4][4])
{
    double q[3], qfac, b, c, d;
    mr_nifti_quatern_from_affine(q, &qfac, A);
    b = q[0], c = q[1], d = q[2];
    put_f32(h, OFF_QUATERN_B, (float)b);
    put_f32(h, OFF_QUATERN_B + 4, (float)c);
    put_f32(h, OFF_QUATERN_B + 8, (float)d);
    for (int r = 0; r < 3; r++) put_f32(h, OFF_QUATERN_B + 12 + 4 * r, (float)A[r][3]);
    put_f32(h, OFF_PIXDIM, (float)qfac);
}

/* ---------------------------------------------------------------- reading */

/* Read exactly `want` bytes (in chunks); *got says how many arrived. */
static int gz_read_all(gzFile g, void *buf, size_t want, size_t *got)
{
    *got = 0;
    while (*got < want) {
        size_t n = want - *got < NII_IO_MAX ? want - *got : NII_IO_MAX;
        int r = gzread(g, (char *)buf + *got, (unsigned)n);
        if (r <= 0) return r < 0 ? -1 : 0;
        *got += (size_t)r;
    }
    return 1;
}

static const char *gz_error_text(gzFile g)
{
    int code;
    const char *msg = gzerror(g, &code);
    return code == Z_OK ? "end of file" : (code == Z_ERRNO ? strerror(errno) : msg);
}

/* Convert `count` stored values (host order) to float32 with optional scaling. */
static void nii_convert(float *dst, const unsigned char *src, size_t count, int code, int scale,
                        double slope, double inter)
{
#define NII_CONV(T)                                                                                \
    for (size_t i = 0; i < count; i++) {                                                           \
        T v;                                                                                       \
        memcpy(&v, src + i * sizeof(T), sizeof(T));                                                \
        dst[i] = scale ? (float)(slope * (double)v + inter) : (float)v;                            \
    }                                                                                              \
    break
    switch (code) {
    case 2: NII_CONV(uint8_t);
    case 256: NII_CONV(int8_t);
    case 4: NII_CONV(int16_t);
    case 512: NII_CONV(uint16_t);
    case 8: NII_CONV(int32_t);
    case 768: NII_CONV(uint32_t);
    case 1024: NII_CONV(int64_t);
    case 1280: NII_CONV(uint64_t);
    case 16: NII_CONV(float);
    case 64: NII_CONV(double);
    default: break;
    }
#undef NII_CONV
}

mr_status mr_nifti_read(mr_array **out, mr_nifti_meta *meta, const char *path)
{
    unsigned char h[NII_HDR_SIZE];
    gzFile g = NULL;
    mr_status st = MR_OK;
    mr_array *a = NULL;
    unsigned char *chunk = NULL;
    int swapped = 0, ndim, code, esize = 0, scale;
    short dim[8];
    size_t dims[3], numel, got, offset;
    double slope, inter, vox;
    const char *tname = NULL;
    char magic[5];

    *out = NULL;
    if (meta) memset(meta, 0, sizeof *meta);
    if (!mr_path_is_file(path))
        return mr_error_set(MR_ERR_INPUT, "%s: No such file (expected a NIfTI-1 .nii/.nii.gz)",
                            path);
    g = gzopen(path, "rb");
    if (!g) {
        int e = errno;
        return mr_error_set(MR_ERR_INPUT, "%s: cannot open: %s", path, strerror(e));
    }
    gzbuffer(g, 256 * 1024);
    if (gz_read_all(g, h, NII_HDR_SIZE, &got) != 1) {
        st = mr_error_set(MR_ERR_INPUT,
                          "%s: not a NIfTI-1 file: expected a 348-byte header, found %zu bytes "
                          "(%s)",
                          path, got, gz_error_text(g));
        goto done;
    }

    /* byte order from sizeof_hdr */
    if (get_i32(h, OFF_SIZEOF_HDR) != NII_HDR_SIZE) {
        unsigned char t[4];
        int v;
        memcpy(t, h, 4);
        swap_bytes(t, 4);
        memcpy(&v, t, 4);
        if (v != NII_HDR_SIZE) {
            st = mr_error_set(MR_ERR_INPUT,
                              "%s: not a NIfTI-1 file: sizeof_hdr is %d, expected 348 (in either "
                              "byte order)",
                              path, get_i32(h, OFF_SIZEOF_HDR));
            goto done;
        }
        swapped = 1;
        swap_header(h);
    }
    memcpy(magic, h + OFF_MAGIC, 4);
    magic[4] = '\0';
    for (int i = 0; i < 4; i++)
        if (magic[i] && (magic[i] < 32 || magic[i] > 126)) magic[i] = '?';
    if (memcmp(h + OFF_MAGIC, "ni1", 4) == 0) {
        st = mr_error_set(MR_ERR_INPUT,
                          "%s: magic 'ni1' (a NIfTI .hdr/.img pair): expected 'n+1', a single "
                          ".nii file",
                          path);
        goto done;
    }
    if (memcmp(h + OFF_MAGIC, "n+1", 4) != 0) {
        st = mr_error_set(MR_ERR_INPUT, "%s: not a NIfTI-1 file: magic is '%s', expected 'n+1'",
                          path, magic);
        goto done;
    }

    /* dims: 2-D, 3-D, or more with all extra dims 1 */
    for (int i = 0; i < 8; i++) dim[i] = get_i16(h, OFF_DIM + 2 * i);
    ndim = dim[0];
    if (ndim <= 0 || ndim > 7) {
        st = mr_error_set(MR_ERR_INPUT,
                          "%s: NIfTI dim[0] is %d: expected the number of dimensions, 2 to 4 "
                          "(empty dims)",
                          path, ndim);
        goto done;
    }
    for (int i = 1; i <= ndim; i++)
        if (dim[i] <= 0) {
            st = mr_error_set(MR_ERR_INPUT,
                              "%s: NIfTI dim[%d] is %d: expected a size >= 1 (empty dims)", path,
                              i, dim[i]);
            goto done;
        }
    if (ndim < 2) {
        st = mr_error_set(MR_ERR_INPUT,
                          "%s: NIfTI volume has %d dimension (dim[0] = 1): expected 2 to 4", path,
                          ndim);
        goto done;
    }
    for (int i = 4; i <= ndim; i++)
        if (dim[i] != 1) {
            st = mr_error_set(MR_ERR_INPUT,
                              "%s: NIfTI dim[%d] is %d: mrpipe reads one 2-D/3-D volume, expected "
                              "dim[%d] = 1 (%s)",
                              path, i, dim[i], i, i == 4 ? "a time series" : "extra dimensions");
            goto done;
        }
    dims[0] = ndim >= 3 ? (size_t)dim[3] : 1; /* S = k */
    dims[1] = (size_t)dim[2];                 /* H = j */
    dims[2] = (size_t)dim[1];                 /* W = i */
    numel = dims[0] * dims[1] * dims[2];      /* < 2^45: no overflow */

    code = get_i16(h, OFF_DATATYPE);
    for (size_t t = 0; t < sizeof nii_types / sizeof nii_types[0]; t++)
        if (nii_types[t].code == code) {
            esize = nii_types[t].size;
            tname = nii_types[t].name;
        }
    if (!tname) {
        st = mr_error_set(MR_ERR_INPUT,
                          "%s: unsupported NIfTI datatype %d (%s): expected one of uint8, int8, "
                          "int16, uint16, int32, uint32, int64, uint64, float32, float64",
                          path, code, nii_unsupported_name(code));
        goto done;
    }

    vox = get_f32(h, OFF_VOX_OFFSET);
    if (!isfinite(vox) || vox < 0 || vox > 1e12) {
        st = mr_error_set(MR_ERR_INPUT, "%s: NIfTI vox_offset is %g: expected an offset >= 352",
                          path, vox);
        goto done;
    }
    offset = vox < NII_DATA_OFFSET ? NII_DATA_OFFSET : (size_t)vox;
    slope = get_f32(h, OFF_SCL_SLOPE);
    inter = get_f32(h, OFF_SCL_INTER);
    scale = isfinite(slope) && slope != 0;
    if (!isfinite(inter)) inter = 0;
    if (scale && slope == 1 && inter == 0) scale = 0;

    /* skip the extensions up to vox_offset */
    chunk = mr_malloc(NII_CHUNK * 8);
    if (!chunk) {
        st = MR_ERR_NOMEM;
        goto done;
    }
    for (size_t pos = NII_HDR_SIZE; pos < offset;) {
        size_t n = offset - pos < NII_CHUNK ? offset - pos : NII_CHUNK;
        if (gz_read_all(g, chunk, n, &got) != 1) {
            st = mr_error_set(MR_ERR_INPUT,
                              "%s: truncated NIfTI file: vox_offset is %zu but the file ends at "
                              "byte %zu (%s)",
                              path, offset, pos + got, gz_error_text(g));
            goto done;
        }
        pos += n;
    }

    if ((st = mr_array_create(&a, MR_FLOAT32, 3, dims)) != MR_OK) {
        mr_error_prefix(st, "%s: ", path);
        goto done;
    }
    for (size_t done_n = 0; done_n < numel;) {
        size_t n = numel - done_n < NII_CHUNK ? numel - done_n : NII_CHUNK;
        if (gz_read_all(g, chunk, n * (size_t)esize, &got) != 1) {
            st = mr_error_set(MR_ERR_INPUT,
                              "%s: truncated NIfTI data: dims %d x %d x %zu of %s need %zu bytes "
                              "from offset %zu, found %zu (%s)",
                              path, dim[1], dim[2], dims[0], tname, numel * (size_t)esize, offset,
                              done_n * (size_t)esize + got, gz_error_text(g));
            goto done;
        }
        if (swapped) swap_elements(chunk, n, esize);
        nii_convert(mr_array_f32(a) + done_n, chunk, n, code, scale, slope, inter);
        done_n += n;
    }

    if (meta) {
        meta->valid = 1;
        memcpy(meta->raw, h, NII_HDR_SIZE);
        nii_affine(meta->affine, h);
        for (int i = 0; i < 3; i++) meta->pixdim[i] = get_f32(h, OFF_PIXDIM + 4 * (i + 1));
        meta->intent_code = get_i16(h, OFF_INTENT_CODE);
    }
    st = MR_OK;
done:
    free(chunk);
    if (g) gzclose(g);
    if (st != MR_OK) {
        mr_array_destroy(a);
        if (meta) memset(meta, 0, sizeof *meta);
        return st;
    }
    *out = a;
    return MR_OK;
}

/* ---------------------------------------------------------------- writing */

/* A header from scratch: 1 mm voxels, identity orientation, sform and qform both set. */
static void nii_header_fresh(unsigned char *h)
{
    double eye[4][4] = {{1, 0, 0, 0}, {0, 1, 0, 0}, {0, 0, 1, 0}, {0, 0, 0, 1}};
    memset(h, 0, NII_HDR_SIZE);
    put_i32(h, OFF_SIZEOF_HDR, NII_HDR_SIZE);
    h[38] = 'r'; /* regular: Analyze compatibility, as other writers set it */
    for (int i = 0; i < 3; i++) put_f32(h, OFF_PIXDIM + 4 * (i + 1), 1.0f);
    h[OFF_XYZT_UNITS] = 2; /* NIFTI_UNITS_MM */
    put_i16(h, OFF_QFORM_CODE, 1);
    put_i16(h, OFF_SFORM_CODE, 1);
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 4; c++) put_f32(h, OFF_SROW + 4 * (4 * r + c), (float)eye[r][c]);
    nii_affine_to_quatern(h, eye);
}

mr_status mr_nifti_write(const char *path, const mr_array *a, const mr_nifti_meta *meta)
{
    unsigned char h[NII_HDR_SIZE + 4];
    size_t S, H, W, numel;
    mr_atomic_file af;
    gzFile g = NULL;
    mr_status st;
    char shape[256];
    const float *x;
    float lo = 0, hi = 0;
    int first = 1, gz;

    memset(&af, 0, sizeof af);
    if (!a || !a->data) return mr_error_set(MR_ERR_USAGE, "%s: no array to write", path);
    if (a->dtype != MR_FLOAT32 || (a->ndim != 2 && a->ndim != 3))
        return mr_error_set(MR_ERR_INPUT,
                            "%s: NIfTI output expects a float32 (S, H, W) or (H, W) array, found "
                            "%s %s",
                            path, a->dtype == MR_FLOAT32 ? "float32" : "complex64",
                            mr_dims_format(shape, sizeof shape, a->ndim, a->dims));
    S = a->ndim == 3 ? a->dims[0] : 1;
    H = a->dims[a->ndim - 2];
    W = a->dims[a->ndim - 1];
    if (S > 32767 || H > 32767 || W > 32767 || S == 0 || H == 0 || W == 0)
        return mr_error_set(MR_ERR_INPUT,
                            "%s: array shape %s does not fit NIfTI-1 (each size 1..32767)", path,
                            mr_dims_format(shape, sizeof shape, a->ndim, a->dims));
    numel = S * H * W;
    x = mr_array_f32(a);

    /* keep the source's header when it describes the same in-plane grid */
    if (meta && meta->valid && get_i32(meta->raw, OFF_SIZEOF_HDR) == NII_HDR_SIZE &&
        memcmp(meta->raw + OFF_MAGIC, "n+1", 4) == 0 &&
        get_i16(meta->raw, OFF_DIM + 2) == (short)W && get_i16(meta->raw, OFF_DIM + 4) == (short)H) {
        memcpy(h, meta->raw, NII_HDR_SIZE);
        for (int i = 0; i < 3; i++) put_f32(h, OFF_PIXDIM + 4 * (i + 1), meta->pixdim[i]);
        put_i16(h, OFF_INTENT_CODE, (short)meta->intent_code);
        if (get_i16(h, OFF_SFORM_CODE) > 0)
            for (int r = 0; r < 3; r++)
                for (int c = 0; c < 4; c++)
                    put_f32(h, OFF_SROW + 4 * (4 * r + c), (float)meta->affine[r][c]);
    } else {
        nii_header_fresh(h);
        snprintf((char *)h + OFF_DESCRIP, 80, "mrpipe %s", MR_VERSION_STRING);
    }
    put_i16(h, OFF_DIM, (short)(a->ndim == 3 ? 3 : 2));
    put_i16(h, OFF_DIM + 2, (short)W);
    put_i16(h, OFF_DIM + 4, (short)H);
    put_i16(h, OFF_DIM + 6, (short)S);
    for (int i = 4; i < 8; i++) put_i16(h, OFF_DIM + 2 * i, 1);
    put_i16(h, OFF_DATATYPE, 16);
    put_i16(h, OFF_BITPIX, 32);
    put_f32(h, OFF_VOX_OFFSET, (float)NII_DATA_OFFSET);
    put_f32(h, OFF_SCL_SLOPE, 1.0f);
    put_f32(h, OFF_SCL_INTER, 0.0f);
    for (size_t i = 0; i < numel; i++)
        if (isfinite(x[i])) {
            if (first || x[i] < lo) lo = x[i];
            if (first || x[i] > hi) hi = x[i];
            first = 0;
        }
    put_f32(h, OFF_CAL_MIN, lo);
    put_f32(h, OFF_CAL_MAX, hi);
    memcpy(h + OFF_MAGIC, "n+1", 4);
    memset(h + NII_HDR_SIZE, 0, 4); /* no extensions */

    gz = mr_path_has_suffix(path, ".gz");
    if ((st = mr_atomic_begin(&af, path)) != MR_OK) return st;
    g = gzopen(af.tmp_path, gz ? "wb6" : "wbT");
    if (!g) {
        int e = errno;
        st = mr_error_set(MR_ERR_IO, "%s: cannot create: %s", path, strerror(e));
        goto fail;
    }
    gzbuffer(g, 256 * 1024);
    if (gzwrite(g, h, sizeof h) != (int)sizeof h) goto write_error;
    for (size_t off = 0; off < numel * 4;) {
        size_t n = numel * 4 - off < NII_IO_MAX ? numel * 4 - off : NII_IO_MAX;
        if (gzwrite(g, (const char *)x + off, (unsigned)n) != (int)n) goto write_error;
        off += n;
    }
    {
        int rc = gzclose(g);
        g = NULL;
        if (rc != Z_OK) {
            st = mr_error_set(MR_ERR_IO, "%s: write failed on close (zlib code %d): %s", path, rc,
                              strerror(errno));
            goto fail;
        }
    }
    if ((st = mr_atomic_commit(&af)) != MR_OK) goto fail;
    return MR_OK;
write_error:
    st = mr_error_set(MR_ERR_IO, "%s: write failed: %s", path, gz_error_text(g));
fail:
    if (g) gzclose(g);
    mr_atomic_abort(&af);
    return st;
}
