/*
 * cfl.c: BART .cfl/.hdr files (read, read dims, write).
 *
 * Format (as BART's src/misc/mmio.c and io.c write it): `NAME.hdr` is text whose line "# Dimensions"
 * is followed by a line of up to 16 positive integer sizes (BART writes all 16); other "# ..."
 * sections (Command, Files, Creator) are ignored. `NAME.cfl` is the raw data: complex64
 * (two little-endian float32, real first), column-major, d0 fastest.
 *
 * Axis convention (docs/formats.md): d0 = H (readout), d1 = W (phase encode), d3 = coils,
 * d13 = slices. mrpipe arrays are C order (S, C, H, W) with W contiguous, so every (H, W) plane is
 * transposed on the way in and out: cfl[h + H*(w + W*(c + C*s))] <-> a[((s*C + c)*H + h)*W + w].
 *
 * Reading maps the .cfl (mmap) and transposes plane by plane in cache-sized tiles; writing
 * transposes one plane at a time into a buffer and writes it with one fwrite. Both outputs are
 * written under temporary names and renamed only when both are complete.
 */
#include "mr_io.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define CFL_NDIMS 16
#define CFL_HDR_MAX (64 * 1024) /* a real header is < 1 KB; anything larger is not a BART header */
#define CFL_TILE 32             /* transpose tile edge (32x32 complex64 = 8 KB per side) */

/* BART dims that mrpipe maps onto (S, C, H, W). */
enum { CFL_DIM_H = 0, CFL_DIM_W = 1, CFL_DIM_COIL = 3, CFL_DIM_SLICE = 13 };

/* Names of BART's dims (src/misc/mri.h) for messages. */
static const char *const cfl_dim_names[CFL_NDIMS] = {
    "READ",     "PHS1",     "PHS2",     "COIL",     "MAPS",     "TE",       "COEFF",    "COEFF2",
    "ITER",     "CSHIFT",   "TIME",     "TIME2",    "LEVEL",    "SLICE",    "AVG",      "BATCH"};

/* ---------------------------------------------------------------- names */

/* Split "x", "x.cfl" or "x.hdr" into the two file names. */
static mr_status cfl_names(char *cfl, char *hdr, size_t size, const char *path)
{
    size_t n;
    if (!path || !*path) return mr_error_set(MR_ERR_USAGE, "empty BART file name");
    n = strlen(path);
    if (n >= 4 && (strcmp(path + n - 4, ".cfl") == 0 || strcmp(path + n - 4, ".hdr") == 0)) n -= 4;
    if (n + 5 > size) return mr_error_set(MR_ERR_USAGE, "%s: file name too long", path);
    memcpy(cfl, path, n);
    memcpy(hdr, path, n);
    memcpy(cfl + n, ".cfl", 5);
    memcpy(hdr + n, ".hdr", 5);
    return MR_OK;
}

/* ---------------------------------------------------------------- header */

/* Read the whole .hdr text (NUL-terminated, caller frees). */
static mr_status cfl_hdr_slurp(char **out, const char *hdr)
{
    FILE *f;
    char *buf;
    size_t n;
    *out = NULL;
    f = fopen(hdr, "rb");
    if (!f) {
        int e = errno;
        return mr_error_set(MR_ERR_INPUT, "%s: cannot open the BART header: %s", hdr, strerror(e));
    }
    buf = mr_malloc(CFL_HDR_MAX + 1);
    if (!buf) {
        fclose(f);
        return MR_ERR_NOMEM;
    }
    n = fread(buf, 1, CFL_HDR_MAX + 1, f);
    if (ferror(f)) {
        int e = errno;
        fclose(f);
        free(buf);
        return mr_error_set(MR_ERR_IO, "%s: cannot read the BART header: %s", hdr, strerror(e));
    }
    fclose(f);
    if (n > CFL_HDR_MAX) {
        free(buf);
        return mr_error_set(MR_ERR_INPUT,
                            "%s: garbled BART header: expected a short text file, found more "
                            "than %d bytes",
                            hdr, CFL_HDR_MAX);
    }
    if (memchr(buf, '\0', n)) {
        free(buf);
        return mr_error_set(MR_ERR_INPUT,
                            "%s: garbled BART header: expected text, found a NUL byte", hdr);
    }
    buf[n] = '\0';
    *out = buf;
    return MR_OK;
}

/* Parse the dims line of a BART header into dims (1-padded). */
static mr_status cfl_hdr_parse(long dims[CFL_NDIMS], const char *text, const char *hdr)
{
    const char *line = text, *p, *end;
    int found = 0, nd = 0;
    char shown[64];

    for (int i = 0; i < CFL_NDIMS; i++) dims[i] = 1;
    /* find the "# Dimensions" line */
    while (*line) {
        const char *eol = line + strcspn(line, "\n");
        const char *q = line;
        while (q < eol && (*q == ' ' || *q == '\t')) q++;
        if (q < eol && *q == '#') {
            q++;
            while (q < eol && (*q == ' ' || *q == '\t')) q++;
            if ((size_t)(eol - q) >= 10 && strncmp(q, "Dimensions", 10) == 0) {
                found = 1;
                line = *eol ? eol + 1 : eol;
                break;
            }
        }
        line = *eol ? eol + 1 : eol;
    }
    if (!found) {
        snprintf(shown, sizeof shown, "%.40s", text);
        shown[strcspn(shown, "\r\n")] = '\0';
        return mr_error_set(MR_ERR_INPUT,
                            "%s: garbled BART header: expected a '# Dimensions' line, found "
                            "'%s'",
                            hdr, shown);
    }
    end = line + strcspn(line, "\n");
    p = line;
    for (;;) {
        char *stop;
        long v;
        while (p < end && (*p == ' ' || *p == '\t' || *p == '\r')) p++;
        if (p >= end) break;
        if (nd == CFL_NDIMS)
            return mr_error_set(MR_ERR_INPUT,
                                "%s: BART header has more than %d dims (expected at most %d)",
                                hdr, CFL_NDIMS, CFL_NDIMS);
        errno = 0;
        v = strtol(p, &stop, 10);
        if (stop == p || (stop < end && !(*stop == ' ' || *stop == '\t' || *stop == '\r'))) {
            size_t len = strcspn(p, " \t\r\n");
            snprintf(shown, sizeof shown, "%.*s", (int)(len < 40 ? len : 40), p);
            return mr_error_set(MR_ERR_INPUT,
                                "%s: garbled BART header: dim %d: expected an integer, found '%s'",
                                hdr, nd, shown);
        }
        if (errno == ERANGE)
            return mr_error_set(MR_ERR_INPUT,
                                "%s: BART header: dim %d is too large (overflows a long)", hdr, nd);
        if (v <= 0)
            return mr_error_set(MR_ERR_INPUT,
                                "%s: BART header: dim %d (%s) is %ld, expected a size >= 1", hdr,
                                nd, cfl_dim_names[nd], v);
        dims[nd++] = v;
        p = stop;
    }
    if (nd == 0)
        return mr_error_set(MR_ERR_INPUT,
                            "%s: garbled BART header: expected sizes after '# Dimensions', found "
                            "an empty line",
                            hdr);
    return MR_OK;
}

/* "64 64 1 4 1 ..." for messages (trailing ones dropped). */
static void cfl_dims_text(char *buf, size_t size, const long dims[CFL_NDIMS])
{
    int last = 0;
    size_t used = 0;
    for (int i = 0; i < CFL_NDIMS; i++)
        if (dims[i] != 1) last = i;
    buf[0] = '\0';
    for (int i = 0; i <= last && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, "%s%ld", i ? " " : "", dims[i]);
}

/* Number of elements, rejecting products that overflow the byte count. */
static mr_status cfl_dims_numel(size_t *numel, const long dims[CFL_NDIMS], const char *hdr)
{
    size_t n = 1;
    char text[256];
    for (int i = 0; i < CFL_NDIMS; i++) {
        size_t d = (size_t)dims[i];
        if (n > SIZE_MAX / 8 / d) {
            cfl_dims_text(text, sizeof text, dims);
            return mr_error_set(MR_ERR_INPUT,
                                "%s: BART dims %s: their product overflows (more than %zu "
                                "complex values)",
                                hdr, text, SIZE_MAX / 8);
        }
        n *= d;
    }
    *numel = n;
    return MR_OK;
}

/* Parse the header and check it against the .cfl size. */
static mr_status cfl_open_checked(long dims[CFL_NDIMS], size_t *numel, const char *cfl,
                                  const char *hdr)
{
    char *text;
    mr_status st;
    struct stat sb;
    char dtext[256];

    if (!mr_path_is_file(hdr)) {
        if (mr_path_is_file(cfl))
            return mr_error_set(MR_ERR_INPUT, "%s: No such file (the header of %s is missing)",
                                hdr, cfl);
        return mr_error_set(MR_ERR_INPUT, "%s: No such file (nor %s: no BART array here)", hdr,
                            cfl);
    }
    if ((st = cfl_hdr_slurp(&text, hdr)) != MR_OK) return st;
    st = cfl_hdr_parse(dims, text, hdr);
    free(text);
    if (st != MR_OK) return st;
    if ((st = cfl_dims_numel(numel, dims, hdr)) != MR_OK) return st;
    if (stat(cfl, &sb) != 0) {
        int e = errno;
        return mr_error_set(MR_ERR_INPUT, "%s: %s (the data of %s)",
                            cfl, e == ENOENT ? "No such file" : strerror(e), hdr);
    }
    if (!S_ISREG(sb.st_mode))
        return mr_error_set(MR_ERR_INPUT, "%s: expected a regular file", cfl);
    if ((unsigned long long)sb.st_size != (unsigned long long)*numel * 8ULL) {
        cfl_dims_text(dtext, sizeof dtext, dims);
        return mr_error_set(MR_ERR_INPUT,
                            "%s: size is %lld bytes, but %s says dims %s = %zu complex values "
                            "(%llu bytes)",
                            cfl, (long long)sb.st_size, hdr, dtext, *numel,
                            (unsigned long long)*numel * 8ULL);
    }
    return MR_OK;
}

mr_status mr_cfl_read_dims(long dims[16], const char *path)
{
    char cfl[4096], hdr[4096];
    size_t numel;
    mr_status st;
    if ((st = cfl_names(cfl, hdr, sizeof cfl, path)) != MR_OK) return st;
    return cfl_open_checked(dims, &numel, cfl, hdr);
}

/* ---------------------------------------------------------------- transposes */

/* One byte-order-correct complex64 copy (files are little-endian). */
static inline void c64_copy_le(mr_cfloat *dst, const mr_cfloat *src)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    const unsigned char *s = (const unsigned char *)src;
    unsigned char *d = (unsigned char *)dst;
    for (int k = 0; k < 2; k++)
        for (int b = 0; b < 4; b++) d[4 * k + b] = s[4 * k + 3 - b];
#else
    *dst = *src;
#endif
}

/* dst (rows, cols) C order <- src column-major (rows, cols), i.e. src[r + rows*c]. */
static void transpose_from_colmajor(mr_cfloat *dst, const mr_cfloat *src, size_t rows, size_t cols)
{
    for (size_t r0 = 0; r0 < rows; r0 += CFL_TILE) {
        size_t r1 = r0 + CFL_TILE < rows ? r0 + CFL_TILE : rows;
        for (size_t c0 = 0; c0 < cols; c0 += CFL_TILE) {
            size_t c1 = c0 + CFL_TILE < cols ? c0 + CFL_TILE : cols;
            for (size_t r = r0; r < r1; r++)
                for (size_t c = c0; c < c1; c++) c64_copy_le(&dst[r * cols + c], &src[r + rows * c]);
        }
    }
}

/* dst column-major (rows, cols) <- src C order (rows, cols); float32 sources get imag 0. */
static void transpose_to_colmajor(mr_cfloat *dst, const void *src, mr_dtype dtype, size_t rows,
                                  size_t cols)
{
    const mr_cfloat *sc = src;
    const float *sf = src;
    for (size_t c0 = 0; c0 < cols; c0 += CFL_TILE) {
        size_t c1 = c0 + CFL_TILE < cols ? c0 + CFL_TILE : cols;
        for (size_t r0 = 0; r0 < rows; r0 += CFL_TILE) {
            size_t r1 = r0 + CFL_TILE < rows ? r0 + CFL_TILE : rows;
            for (size_t c = c0; c < c1; c++)
                for (size_t r = r0; r < r1; r++) {
                    mr_cfloat v;
                    if (dtype == MR_COMPLEX64) {
                        v = sc[r * cols + c];
                    } else {
                        /* real part bit-exact (sign of zero kept), imaginary +0.0 */
                        float parts[2] = {sf[r * cols + c], 0.0f};
                        memcpy(&v, parts, sizeof v);
                    }
                    c64_copy_le(&dst[r + rows * c], &v);
                }
        }
    }
}

/* ---------------------------------------------------------------- read */

mr_status mr_cfl_read(mr_array **out, const char *path)
{
    char cfl[4096], hdr[4096], dtext[256];
    long dims[CFL_NDIMS];
    size_t numel, adims[4], H, W, C, S, plane;
    mr_status st;
    int fd = -1;
    void *map = MAP_FAILED;
    mr_array *a = NULL;

    *out = NULL;
    if ((st = cfl_names(cfl, hdr, sizeof cfl, path)) != MR_OK) return st;
    if ((st = cfl_open_checked(dims, &numel, cfl, hdr)) != MR_OK) return st;
    for (int i = 0; i < CFL_NDIMS; i++) {
        if (i == CFL_DIM_H || i == CFL_DIM_W || i == CFL_DIM_COIL || i == CFL_DIM_SLICE) continue;
        if (dims[i] != 1) {
            cfl_dims_text(dtext, sizeof dtext, dims);
            return mr_error_set(MR_ERR_INPUT,
                                "%s: BART dim %d (%s) is %ld; mrpipe reads only d0 = H, d1 = W, "
                                "d3 = coils, d13 = slices and expects every other dim to be 1 "
                                "(dims %s)",
                                hdr, i, cfl_dim_names[i], dims[i], dtext);
        }
    }
    H = (size_t)dims[CFL_DIM_H];
    W = (size_t)dims[CFL_DIM_W];
    C = (size_t)dims[CFL_DIM_COIL];
    S = (size_t)dims[CFL_DIM_SLICE];
    adims[0] = S;
    adims[1] = C;
    adims[2] = H;
    adims[3] = W;
    if ((st = mr_array_create(&a, MR_COMPLEX64, 4, adims)) != MR_OK)
        return mr_error_prefix(st, "%s: ", cfl);

    fd = open(cfl, O_RDONLY);
    if (fd < 0) {
        int e = errno;
        st = mr_error_set(MR_ERR_INPUT, "%s: cannot open: %s", cfl, strerror(e));
        goto done;
    }
    map = mmap(NULL, numel * 8, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
        /* fall back to plain reads (e.g. a file system without mmap) */
        mr_cfloat *buf = mr_malloc_aligned(H * W * 8);
        if (!buf) {
            st = MR_ERR_NOMEM;
            goto done;
        }
        plane = H * W;
        for (size_t p = 0; p < S * C; p++) {
            size_t want = plane * 8, got = 0;
            while (got < want) {
                ssize_t r = pread(fd, (char *)buf + got, want - got, (off_t)(p * want + got));
                if (r < 0 && errno == EINTR) continue;
                if (r <= 0) {
                    int e = r < 0 ? errno : 0;
                    mr_free_aligned(buf);
                    st = mr_error_set(MR_ERR_IO, "%s: read failed at plane %zu: %s", cfl, p,
                                      e ? strerror(e) : "unexpected end of file");
                    goto done;
                }
                got += (size_t)r;
            }
            transpose_from_colmajor(mr_array_c64(a) + p * plane, buf, H, W);
        }
        mr_free_aligned(buf);
    } else {
        posix_madvise(map, numel * 8, POSIX_MADV_SEQUENTIAL);
        plane = H * W;
        for (size_t p = 0; p < S * C; p++)
            transpose_from_colmajor(mr_array_c64(a) + p * plane, (const mr_cfloat *)map + p * plane,
                                    H, W);
    }
    st = MR_OK;
done:
    if (map != MAP_FAILED) munmap(map, numel * 8);
    if (fd >= 0) close(fd);
    if (st != MR_OK) {
        mr_array_destroy(a);
        return st;
    }
    *out = a;
    return MR_OK;
}

/* ---------------------------------------------------------------- write */

static mr_status cfl_write_data(const char *tmp, const char *final, const mr_array *a, size_t planes,
                                size_t H, size_t W)
{
    FILE *f;
    mr_cfloat *buf;
    size_t esize = mr_dtype_size(a->dtype);
    const char *src = a->data;
    int e;

    buf = mr_malloc_aligned(H * W * 8);
    if (!buf) return MR_ERR_NOMEM;
    f = fopen(tmp, "wb");
    if (!f) {
        e = errno;
        mr_free_aligned(buf);
        return mr_error_set(MR_ERR_IO, "%s: cannot create: %s", final, strerror(e));
    }
    for (size_t p = 0; p < planes; p++) {
        transpose_to_colmajor(buf, src + p * H * W * esize, a->dtype, H, W);
        if (fwrite(buf, 8, H * W, f) != H * W) {
            e = errno;
            fclose(f);
            mr_free_aligned(buf);
            return mr_error_set(MR_ERR_IO, "%s: write failed: %s", final, strerror(e));
        }
    }
    mr_free_aligned(buf);
    if (fclose(f) != 0) {
        e = errno;
        return mr_error_set(MR_ERR_IO, "%s: write failed: %s", final, strerror(e));
    }
    return MR_OK;
}

static mr_status cfl_write_hdr(const char *tmp, const char *final, const long dims[CFL_NDIMS])
{
    FILE *f = fopen(tmp, "w");
    int bad, e;
    if (!f) {
        e = errno;
        return mr_error_set(MR_ERR_IO, "%s: cannot create: %s", final, strerror(e));
    }
    fprintf(f, "# Dimensions\n");
    for (int i = 0; i < CFL_NDIMS; i++) fprintf(f, "%ld ", dims[i]);
    fprintf(f, "\n# Creator\nmrpipe %s\n", MR_VERSION_STRING);
    bad = ferror(f);
    e = errno;
    if (fclose(f) != 0 && !bad) {
        bad = 1;
        e = errno;
    }
    if (bad) return mr_error_set(MR_ERR_IO, "%s: write failed: %s", final, strerror(e));
    return MR_OK;
}

mr_status mr_cfl_write(const char *path, const mr_array *a)
{
    char cfl[4096], hdr[4096], shape[256];
    long dims[CFL_NDIMS];
    size_t S = 1, C = 1, H, W;
    mr_atomic_file af_cfl, af_hdr;
    mr_status st;

    memset(&af_cfl, 0, sizeof af_cfl);
    memset(&af_hdr, 0, sizeof af_hdr);
    if ((st = cfl_names(cfl, hdr, sizeof cfl, path)) != MR_OK) return st;
    if (!a || !a->data) return mr_error_set(MR_ERR_USAGE, "%s: no array to write", cfl);
    if (a->dtype != MR_FLOAT32 && a->dtype != MR_COMPLEX64)
        return mr_error_set(MR_ERR_INPUT, "%s: expected a float32 or complex64 array", cfl);
    if (a->ndim < 2 || a->ndim > 4)
        return mr_error_set(MR_ERR_INPUT,
                            "%s: expected an (H, W), (S, H, W) or (S, C, H, W) array, found shape "
                            "%s",
                            cfl, mr_dims_format(shape, sizeof shape, a->ndim, a->dims));
    H = a->dims[a->ndim - 2];
    W = a->dims[a->ndim - 1];
    if (a->ndim >= 3) S = a->dims[0];
    if (a->ndim == 4) C = a->dims[1];
    for (int i = 0; i < CFL_NDIMS; i++) dims[i] = 1;
    if (H > LONG_MAX || W > LONG_MAX || S > LONG_MAX || C > LONG_MAX || H == 0 || W == 0 ||
        S == 0 || C == 0)
        return mr_error_set(MR_ERR_INPUT, "%s: array shape %s cannot be written", cfl,
                            mr_dims_format(shape, sizeof shape, a->ndim, a->dims));
    dims[CFL_DIM_H] = (long)H;
    dims[CFL_DIM_W] = (long)W;
    dims[CFL_DIM_COIL] = (long)C;
    dims[CFL_DIM_SLICE] = (long)S;

    if ((st = mr_atomic_begin(&af_cfl, cfl)) != MR_OK) return st;
    if ((st = mr_atomic_begin(&af_hdr, hdr)) != MR_OK) return st;
    if ((st = cfl_write_data(af_cfl.tmp_path, cfl, a, S * C, H, W)) != MR_OK) goto fail;
    if ((st = cfl_write_hdr(af_hdr.tmp_path, hdr, dims)) != MR_OK) goto fail;
    /* both complete: move the data, then the header, into place */
    if ((st = mr_atomic_commit(&af_cfl)) != MR_OK) goto fail;
    if ((st = mr_atomic_commit(&af_hdr)) != MR_OK) {
        unlink(cfl); /* no data file without its header */
        goto fail;
    }
    return MR_OK;
fail:
    mr_atomic_abort(&af_cfl);
    mr_atomic_abort(&af_hdr);
    return st;
}
