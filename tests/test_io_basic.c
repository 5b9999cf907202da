/*
 * test_io_basic.c: the simple file formats of io/ (cfl.c, nifti.c, png.c, detect.c).
 *
 *  - BART .cfl/.hdr: bit-exact round trips (odd sizes, float32 and complex64, -0.0 kept); element
 *    placement against BART itself (`bart phantom`, `bart slice` + `bart show`); files we write
 *    are read by BART (`bart show -m` dims, `bart fft` along d0 equals a direct centred DFT along H);
 *  - NIfTI-1: bit-exact round trips (.nii, .nii.gz, 2-D/3-D); every standard datatype, both byte
 *    orders, vox_offset past extensions, scl_slope/scl_inter and qform-only geometry against
 *    nibabel; the mricron template ch2.nii.gz voxels and affine against nibabel; written files keep
 *    affine/pixdim/codes as nibabel reads them;
 *  - PNG: decoded with libpng's simplified API, pixel values checked; window percentiles against
 *    numpy.percentile and timed at fastMRI volume size;
 *  - detection of every input kind and output extension;
 *  - every bad input: status, message content, and no output or temporary file left behind;
 *  - writes that fail part-way (a file-size limit, RLIMIT_FSIZE, turns writes into EFBIG) leave
 *    neither the output nor a temporary.
 */
#include "mr_io.h"
#include "testutil.h"

#include <hdf5.h>
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>

/* ---------------------------------------------------------------- helpers */

/* Does the kept message contain every needle? Prints the message when not. */
static int msg_has(const char *n1, const char *n2)
{
    const char *m = mr_error_message();
    int ok = strstr(m, n1) != NULL && (!n2 || strstr(m, n2) != NULL);
    if (!ok) fprintf(stderr, "\n  message '%s' lacks '%s'%s%s\n", m, n1, n2 ? " or " : "", n2 ? n2 : "");
    return ok;
}

static int no_partials(void)
{
    int n = mr_test_count_files(mr_test_tmpdir(), ".partial");
    if (n) fprintf(stderr, "\n  %d temporary files left in %s\n", n, mr_test_tmpdir());
    return n == 0;
}

static void write_zeros(const char *path, size_t n)
{
    FILE *f = fopen(path, "wb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    for (size_t i = 0; i < n; i++) fputc(0, f);
    fclose(f);
}

static void patch_bytes(const char *path, long off, const void *bytes, size_t n)
{
    FILE *f = fopen(path, "r+b");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fseek(f, off, SEEK_SET);
    fwrite(bytes, 1, n, f);
    fclose(f);
}

static long file_size(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? (long)sb.st_size : -1;
}

static mr_array *random_array(mr_dtype dt, int ndim, const size_t *dims, unsigned long long seed)
{
    mr_array *a = NULL;
    mr_test_rng r;
    size_t n;
    CU_ASSERT_FATAL(mr_array_create(&a, dt, ndim, dims) == MR_OK);
    n = mr_array_numel(a);
    mr_test_rng_init(&r, seed);
    if (dt == MR_FLOAT32)
        for (size_t i = 0; i < n; i++) mr_array_f32(a)[i] = (float)mr_test_randn(&r);
    else
        for (size_t i = 0; i < n; i++)
            mr_array_c64(a)[i] = (float)mr_test_randn(&r) + I * (float)mr_test_randn(&r);
    return a;
}

/* Parse the single value `bart show` prints for a 1-element array. */
static int bart_value(mr_cfloat *out, const char *file)
{
    float re, im;
    if (mr_test_sh("cd %s && bart show %s", mr_test_tmpdir(), file) != 0) return 0;
    if (sscanf(mr_test_output(), "%f%fi", &re, &im) != 2) return 0;
    *out = re + I * im;
    return 1;
}

static int close_c(mr_cfloat a, mr_cfloat b, double rel)
{
    double s = cabsf(a) > cabsf(b) ? cabsf(a) : cabsf(b);
    return cabsf(a - b) <= rel * (s > 1e-30 ? s : 1e-30);
}

/* ---------------------------------------------------------------- BART cfl */

static void test_cfl_roundtrip(void)
{
    const size_t d4[4] = {3, 2, 7, 5}, d3[3] = {4, 9, 13}, d2[2] = {11, 3};
    mr_array *a = random_array(MR_COMPLEX64, 4, d4, 1), *b = NULL;
    long dims[16];
    const char *x = mr_test_path("rt4");

    mr_array_c64(a)[0] = -0.0f + I * -0.0f; /* signs of zero survive */
    CU_ASSERT_FATAL(mr_cfl_write(mr_test_path("rt4.cfl"), a) == MR_OK);
    CU_ASSERT(file_size(mr_test_path("rt4.cfl")) == 3 * 2 * 7 * 5 * 8);
    for (int k = 0; k < 3; k++) {
        char name[4200];
        snprintf(name, sizeof name, "%s%s", x, k == 0 ? "" : k == 1 ? ".cfl" : ".hdr");
        CU_ASSERT_FATAL(mr_cfl_read(&b, name) == MR_OK);
        CU_ASSERT(b->ndim == 4 && b->dtype == MR_COMPLEX64);
        CU_ASSERT(memcmp(b->dims, a->dims, sizeof(size_t) * 4) == 0);
        CU_ASSERT(memcmp(b->data, a->data, mr_array_numel(a) * 8) == 0);
        mr_array_destroy(b);
        b = NULL;
    }
    CU_ASSERT(mr_cfl_read_dims(dims, x) == MR_OK);
    CU_ASSERT(dims[0] == 7 && dims[1] == 5 && dims[2] == 1 && dims[3] == 2 && dims[13] == 3);
    for (int i = 0; i < 16; i++)
        if (i != 0 && i != 1 && i != 3 && i != 13) CU_ASSERT(dims[i] == 1);
    mr_array_destroy(a);

    /* (S, H, W) float32 -> d0, d1, d13; imaginary parts are +0.0 */
    a = random_array(MR_FLOAT32, 3, d3, 2);
    mr_array_f32(a)[1] = -0.0f;
    CU_ASSERT_FATAL(mr_cfl_write(mr_test_path("rt3"), a) == MR_OK);
    CU_ASSERT(mr_cfl_read_dims(dims, mr_test_path("rt3.hdr")) == MR_OK);
    CU_ASSERT(dims[0] == 9 && dims[1] == 13 && dims[3] == 1 && dims[13] == 4);
    CU_ASSERT_FATAL(mr_cfl_read(&b, mr_test_path("rt3")) == MR_OK);
    CU_ASSERT(b->dims[0] == 4 && b->dims[1] == 1 && b->dims[2] == 9 && b->dims[3] == 13);
    {
        int exact = 1;
        for (size_t i = 0; i < mr_array_numel(a); i++) {
            float parts[2];
            memcpy(parts, &mr_array_c64(b)[i], 8);
            if (memcmp(&parts[0], &mr_array_f32(a)[i], 4) != 0 || parts[1] != 0 || signbit(parts[1]))
                exact = 0;
        }
        CU_ASSERT(exact);
    }
    mr_array_destroy(a);
    mr_array_destroy(b);

    /* (H, W) */
    a = random_array(MR_COMPLEX64, 2, d2, 3);
    CU_ASSERT_FATAL(mr_cfl_write(mr_test_path("rt2.cfl"), a) == MR_OK);
    CU_ASSERT_FATAL(mr_cfl_read(&b, mr_test_path("rt2")) == MR_OK);
    CU_ASSERT(b->dims[0] == 1 && b->dims[1] == 1 && b->dims[2] == 11 && b->dims[3] == 3);
    CU_ASSERT(memcmp(b->data, a->data, mr_array_numel(a) * 8) == 0);
    /* the raw layout is column-major: element (h, w) at h + H*w */
    {
        FILE *f = fopen(mr_test_path("rt2.cfl"), "rb");
        mr_cfloat v;
        CU_ASSERT_PTR_NOT_NULL_FATAL(f);
        fseek(f, (long)(8 * (4 + 11 * 2)), SEEK_SET);
        CU_ASSERT(fread(&v, 8, 1, f) == 1);
        fclose(f);
        CU_ASSERT(memcmp(&v, &mr_array_c64(a)[4 * 3 + 2], 8) == 0);
    }
    mr_array_destroy(a);
    mr_array_destroy(b);
    CU_ASSERT(no_partials());
}

static void test_cfl_reads_bart(void)
{
    mr_array *a = NULL;
    /* (h, w, coil) triples with h != w so a missing transpose would show */
    const int pick[4][3] = {{3, 40, 1}, {50, 7, 3}, {10, 33, 0}, {63, 0, 2}};
    if (mr_test_sh("cd %s && bart phantom -x 64 -k -s 4 P", mr_test_tmpdir()) != 0) {
        CU_FAIL("bart phantom failed");
        fprintf(stderr, "%s\n", mr_test_output());
        return;
    }
    CU_ASSERT_FATAL(mr_cfl_read(&a, mr_test_path("P")) == MR_OK);
    CU_ASSERT(a->ndim == 4 && a->dims[0] == 1 && a->dims[1] == 4 && a->dims[2] == 64 &&
              a->dims[3] == 64);
    for (int p = 0; p < 4; p++) {
        int h = pick[p][0], w = pick[p][1], c = pick[p][2];
        mr_cfloat ref = 0;
        CU_ASSERT(mr_test_sh("cd %s && bart slice 0 %d 1 %d 3 %d P E", mr_test_tmpdir(), h, w, c) ==
                  0);
        CU_ASSERT_FATAL(bart_value(&ref, "E"));
        CU_ASSERT(close_c(mr_array_c64(a)[((size_t)c * 64 + (size_t)h) * 64 + (size_t)w], ref, 1e-6));
    }
    mr_array_destroy(a);
}

static void test_cfl_bart_reads_ours(void)
{
    const size_t S = 2, C = 3, H = 8, W = 5, d[4] = {2, 3, 8, 5};
    mr_array *a = random_array(MR_COMPLEX64, 4, d, 4), *y = NULL;
    double worst = 0, scale = 0;
    mr_cfloat ref;

    CU_ASSERT_FATAL(mr_cfl_write(mr_test_path("X.cfl"), a) == MR_OK);
    CU_ASSERT(mr_test_sh("cd %s && bart show -m X", mr_test_tmpdir()) == 0);
    CU_ASSERT(strstr(mr_test_output(), "AoD:\t8\t5\t1\t3\t1\t1\t1\t1\t1\t1\t1\t1\t1\t2\t1\t1") !=
              NULL);
    /* one element through BART's own indexing: (s=1, c=2, h=6, w=1) */
    CU_ASSERT(mr_test_sh("cd %s && bart slice 0 6 1 1 3 2 13 1 X E1", mr_test_tmpdir()) == 0);
    CU_ASSERT_FATAL(bart_value(&ref, "E1"));
    CU_ASSERT(close_c(mr_array_c64(a)[((1 * C + 2) * H + 6) * W + 1], ref, 1e-6));

    /* bart fft -u 1: centred unitary DFT along d0 = H only */
    CU_ASSERT_FATAL(mr_test_sh("cd %s && bart fft -u 1 X Y", mr_test_tmpdir()) == 0);
    CU_ASSERT_FATAL(mr_cfl_read(&y, mr_test_path("Y")) == MR_OK);
    CU_ASSERT_FATAL(memcmp(y->dims, a->dims, sizeof(size_t) * 4) == 0);
    for (size_t p = 0; p < S * C; p++)
        for (size_t k = 0; k < H; k++)
            for (size_t w = 0; w < W; w++) {
                double complex acc = 0;
                for (size_t n = 0; n < H; n++)
                    acc += mr_array_c64(a)[(p * H + n) * W + w] *
                           cexp(-2 * M_PI * I * ((double)k - H / 2.0) * ((double)n - H / 2.0) / H);
                acc /= sqrt((double)H);
                double diff = cabs(acc - mr_array_c64(y)[(p * H + k) * W + w]);
                worst = diff > worst ? diff : worst;
                scale = cabs(acc) > scale ? cabs(acc) : scale;
            }
    CU_ASSERT(worst < 1e-5 * scale);
    if (!(worst < 1e-5 * scale)) fprintf(stderr, "\n  bart fft differs by %g (scale %g)\n", worst, scale);
    mr_array_destroy(a);
    mr_array_destroy(y);
}

static void test_cfl_bad_inputs(void)
{
    mr_array *a = NULL;
    long dims[16];
    const size_t d2[2] = {4, 4};

    /* dims whose product overflows */
    mr_test_write_text(mr_test_path("ovf.hdr"), "# Dimensions\n1000000000 1000000000 1000000000 1 1 1 1 1 "
                                        "1 1 1 1 1 1 1 1\n");
    write_zeros(mr_test_path("ovf.cfl"), 8);
    CU_ASSERT(mr_cfl_read(&a, mr_test_path("ovf")) == MR_ERR_INPUT);
    CU_ASSERT(msg_has("ovf.hdr", "overflow"));
    CU_ASSERT(a == NULL);

    /* header disagreeing with the data size: names the file, the dims and both sizes */
    mr_test_write_text(mr_test_path("sz.hdr"), "# Dimensions\n4 4 1 1 1 1 1 1 1 1 1 1 1 1 1 1\n");
    write_zeros(mr_test_path("sz.cfl"), 100);
    CU_ASSERT(mr_cfl_read(&a, mr_test_path("sz.cfl")) == MR_ERR_INPUT);
    CU_ASSERT(msg_has("sz.cfl", "100 bytes"));
    CU_ASSERT(msg_has("4 4", "128 bytes"));
    CU_ASSERT(mr_cfl_read_dims(dims, mr_test_path("sz")) == MR_ERR_INPUT);

    /* garbled headers */
    write_zeros(mr_test_path("g1.cfl"), 128);
    mr_test_write_text(mr_test_path("g1.hdr"), "hello world\n");
    CU_ASSERT(mr_cfl_read(&a, mr_test_path("g1")) == MR_ERR_INPUT);
    CU_ASSERT(msg_has("g1.hdr", "# Dimensions"));
    mr_test_write_text(mr_test_path("g1.hdr"), "# Dimensions\n4 x4 1\n");
    CU_ASSERT(mr_cfl_read(&a, mr_test_path("g1")) == MR_ERR_INPUT);
    CU_ASSERT(msg_has("garbled", "'x4'"));
    mr_test_write_text(mr_test_path("g1.hdr"), "# Dimensions\n\n");
    CU_ASSERT(mr_cfl_read(&a, mr_test_path("g1")) == MR_ERR_INPUT);
    CU_ASSERT(msg_has("g1.hdr", "garbled"));
    mr_test_write_text(mr_test_path("g1.hdr"), "# Dimensions\n4 0 1\n");
    CU_ASSERT(mr_cfl_read(&a, mr_test_path("g1")) == MR_ERR_INPUT);
    CU_ASSERT(msg_has("dim 1", "is 0"));
    mr_test_write_text(mr_test_path("g1.hdr"), "# Dimensions\n4 -4 1\n");
    CU_ASSERT(mr_cfl_read(&a, mr_test_path("g1")) == MR_ERR_INPUT);
    CU_ASSERT(msg_has("dim 1", "-4"));
    mr_test_write_text(mr_test_path("g1.hdr"), "# Dimensions\n1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1\n");
    CU_ASSERT(mr_cfl_read(&a, mr_test_path("g1")) == MR_ERR_INPUT);
    CU_ASSERT(msg_has("more than 16", NULL));

    /* a dim mrpipe does not map (d2 = PHS2) */
    mr_test_write_text(mr_test_path("g1.hdr"), "# Dimensions\n4 2 2 1\n");
    CU_ASSERT(mr_cfl_read(&a, mr_test_path("g1")) == MR_ERR_INPUT);
    CU_ASSERT(msg_has("dim 2", "PHS2"));
    /* ...while short dims lines (BART pads with 1) and extra sections are fine */
    mr_test_write_text(mr_test_path("g1.hdr"), "# Dimensions\n4 4\n# Command\nfoo\n");
    CU_ASSERT(mr_cfl_read(&a, mr_test_path("g1")) == MR_OK);
    mr_array_destroy(a);
    a = NULL;

    /* missing files */
    CU_ASSERT(mr_cfl_read(&a, mr_test_path("nothere")) == MR_ERR_INPUT);
    CU_ASSERT(msg_has("nothere.hdr", "No such file"));
    mr_test_write_text(mr_test_path("onlyhdr.hdr"), "# Dimensions\n4 4\n");
    CU_ASSERT(mr_cfl_read(&a, mr_test_path("onlyhdr")) == MR_ERR_INPUT);
    CU_ASSERT(msg_has("onlyhdr.cfl", "No such file"));

    /* output into a missing directory: error, nothing written */
    CU_ASSERT_FATAL(mr_array_create(&a, MR_COMPLEX64, 2, d2) == MR_OK);
    CU_ASSERT(mr_cfl_write(mr_test_path("nodir/out.cfl"), a) == MR_ERR_IO);
    CU_ASSERT(msg_has("nodir", "does not exist"));
    mr_array_destroy(a);
    CU_ASSERT(no_partials());
}

/* ---------------------------------------------------------------- NIfTI */

static int read_floats(float *out, size_t n, const char *path)
{
    FILE *f = fopen(path, "rb");
    size_t got;
    if (!f) return 0;
    got = fread(out, 4, n, f);
    fclose(f);
    return got == n;
}

static void test_nifti_roundtrip(void)
{
    const size_t d3[3] = {3, 5, 7}, d2[2] = {6, 9};
    mr_array *a = random_array(MR_FLOAT32, 3, d3, 5), *b = NULL;
    mr_nifti_meta meta;
    const char *names[2] = {"rt.nii", "rt.nii.gz"};

    mr_array_f32(a)[2] = -0.0f;
    for (int k = 0; k < 2; k++) {
        CU_ASSERT_FATAL(mr_nifti_write(mr_test_path(names[k]), a, NULL) == MR_OK);
        CU_ASSERT_FATAL(mr_nifti_read(&b, &meta, mr_test_path(names[k])) == MR_OK);
        CU_ASSERT(b->ndim == 3 && b->dims[0] == 3 && b->dims[1] == 5 && b->dims[2] == 7);
        CU_ASSERT(memcmp(b->data, a->data, mr_array_numel(a) * 4) == 0);
        CU_ASSERT(meta.valid);
        for (int r = 0; r < 4; r++)
            for (int c = 0; c < 4; c++) CU_ASSERT(meta.affine[r][c] == (r == c ? 1.0 : 0.0));
        CU_ASSERT(meta.pixdim[0] == 1 && meta.pixdim[1] == 1 && meta.pixdim[2] == 1);
        mr_array_destroy(b);
        b = NULL;
    }
    CU_ASSERT(file_size(mr_test_path("rt.nii")) == 352 + 3 * 5 * 7 * 4);
    CU_ASSERT(file_size(mr_test_path("rt.nii.gz")) < file_size(mr_test_path("rt.nii")));

    /* nibabel reads ours: shape (i, j, k) = (W, H, S), value placement, identity affine,
     * sform and qform codes 1 */
    CU_ASSERT(mr_test_sh("%s -c \"import nibabel as nib, numpy as np\n"
                         "im = nib.load('%s'); d = np.asanyarray(im.dataobj)\n"
                         "print(d.shape, d.dtype, repr(float(d[4, 1, 2])), "
                         "np.allclose(im.affine, np.eye(4)), int(im.header['sform_code']), "
                         "int(im.header['qform_code']))\"",
                         mr_test_python(), mr_test_path("rt.nii.gz")) == 0);
    {
        char expect[256];
        snprintf(expect, sizeof expect, "(7, 5, 3) float32 %.9g True 1 1",
                 (double)mr_array_f32(a)[(2 * 5 + 1) * 7 + 4]);
        /* repr of a float32 widened to double prints up to 17 digits: compare the parsed value */
        double v = 0;
        int s1 = 0, s2 = 0;
        char shape[64] = "", tf[8] = "";
        CU_ASSERT(sscanf(mr_test_output(), "(%63[^)]) float32 %lf %7s %d %d", shape, &v, tf, &s1,
                         &s2) == 5);
        CU_ASSERT_STRING_EQUAL(shape, "7, 5, 3");
        CU_ASSERT((float)v == mr_array_f32(a)[(2 * 5 + 1) * 7 + 4]);
        CU_ASSERT_STRING_EQUAL(tf, "True");
        CU_ASSERT(s1 == 1 && s2 == 1);
        if (strncmp(mr_test_output(), "(7, 5, 3)", 9) != 0)
            fprintf(stderr, "\n  nibabel: %s (expected like %s)\n", mr_test_output(), expect);
    }
    mr_array_destroy(a);

    /* 2-D (H, W) -> read back as (1, H, W) */
    a = random_array(MR_FLOAT32, 2, d2, 6);
    CU_ASSERT_FATAL(mr_nifti_write(mr_test_path("rt2.nii"), a, NULL) == MR_OK);
    CU_ASSERT_FATAL(mr_nifti_read(&b, NULL, mr_test_path("rt2.nii")) == MR_OK);
    CU_ASSERT(b->ndim == 3 && b->dims[0] == 1 && b->dims[1] == 6 && b->dims[2] == 9);
    CU_ASSERT(memcmp(b->data, a->data, mr_array_numel(a) * 4) == 0);
    mr_array_destroy(a);
    mr_array_destroy(b);
    CU_ASSERT(no_partials());
}

/* Files of every datatype / byte order / geometry, made with nibabel's header writer; the
 * expected volume is nibabel's scaled data, as float32 in (k, j, i) order, and its affine. */
static const char *nifti_gen_py =
    "import sys, numpy as np, nibabel as nib\n"
    "d = sys.argv[1]\n"
    "rng = np.random.default_rng(7)\n"
    "cases = [('u8', np.uint8, '<', 0), ('i8', np.int8, '>', 0), ('i16', np.int16, '<', 1),\n"
    "         ('u16', np.uint16, '>', 0), ('i32', np.int32, '<', 1), ('u32', np.uint32, '>', 0),\n"
    "         ('i64', np.int64, '<', 0), ('f32', np.float32, '>', 1), ('f64', np.float64, '<', 0)]\n"
    "for name, dt, endian, scaled in cases:\n"
    "    shape = (5, 4, 3)\n"
    "    if np.issubdtype(dt, np.integer):\n"
    "        info = np.iinfo(dt)\n"
    "        lo, hi = max(info.min, -30000), min(info.max, 30000)\n"
    "        data = rng.integers(lo, hi, size=shape, endpoint=True).astype(dt)\n"
    "        data.flat[0] = lo; data.flat[1] = hi\n"
    "    else:\n"
    "        data = (rng.standard_normal(shape) * 100).astype(dt)\n"
    "    h = nib.Nifti1Header(endianness=endian)\n"
    "    h.set_data_dtype(dt); h.set_data_shape(shape)\n"
    "    if name in ('i16', 'u16'):\n"
    "        # qform only, a rotation about z plus a flipped k axis (qfac -1), 0.9x1.1x2.5 mm\n"
    "        c, s = np.cos(0.3), np.sin(0.3)\n"
    "        aff = np.array([[c, -s, 0, 10], [s, c, 0, -20], [0, 0, 1, 5], [0, 0, 0, 1]])\n"
    "        aff = aff @ np.diag([0.9, 1.1, -2.5, 1])\n"
    "        h.set_qform(aff, code=1); h.set_sform(None, code=0)\n"
    "    else:\n"
    "        aff = np.array([[0, 0, 1.5, -3], [-2, 0, 0, 7], [0, 0.5, 0, 1], [0, 0, 0, 1.]])\n"
    "        h.set_sform(aff, code=2); h.set_qform(None, code=0)\n"
    "    if scaled:\n"
    "        h['scl_slope'] = 0.5; h['scl_inter'] = -3\n"
    "    if name == 'i32':\n"
    "        h.extensions.append(nib.nifti1.Nifti1Extension('comment', b'x' * 45))\n"
    "    off = 352 + sum(e.get_sizeondisk() for e in h.extensions)\n"
    "    h['vox_offset'] = off\n"
    "    with open(f'{d}/dt_{name}.nii', 'wb') as f:\n"
    "        h.write_to(f)\n"
    "        f.write(b'\\0' * (off - f.tell()))\n"
    "        f.write(data.astype(data.dtype.newbyteorder(endian)).tobytes(order='F'))\n"
    "    im = nib.load(f'{d}/dt_{name}.nii')\n"
    "    im.get_fdata(dtype=np.float64).transpose(2, 1, 0).astype(np.float32).tofile(f'{d}/dt_{name}.f32')\n"
    "    np.savetxt(f'{d}/dt_{name}.aff', im.affine)\n"
    "print('generated', len(cases))\n";

static void test_nifti_datatypes(void)
{
    const char *names[] = {"u8", "i8", "i16", "u16", "i32", "u32", "i64", "f32", "f64"};
    char script[4200];
    FILE *f;
    snprintf(script, sizeof script, "%s", mr_test_path("gen_nifti.py"));
    mr_test_write_text(script, nifti_gen_py);
    if (mr_test_sh("%s %s %s", mr_test_python(), script, mr_test_tmpdir()) != 0) {
        CU_FAIL("nibabel generator failed");
        fprintf(stderr, "\n%s\n", mr_test_output());
        return;
    }
    for (size_t t = 0; t < sizeof names / sizeof names[0]; t++) {
        char path[4200], ref[4200], aff[4200];
        mr_array *a = NULL;
        mr_nifti_meta meta;
        float expect[60];
        double A[4][4];
        int ok = 1;
        snprintf(path, sizeof path, "%s/dt_%s.nii", mr_test_tmpdir(), names[t]);
        snprintf(ref, sizeof ref, "%s/dt_%s.f32", mr_test_tmpdir(), names[t]);
        snprintf(aff, sizeof aff, "%s/dt_%s.aff", mr_test_tmpdir(), names[t]);
        if (mr_nifti_read(&a, &meta, path) != MR_OK) {
            fprintf(stderr, "\n  %s: %s\n", names[t], mr_error_message());
            CU_FAIL("datatype read failed");
            continue;
        }
        CU_ASSERT(a->dims[0] == 3 && a->dims[1] == 4 && a->dims[2] == 5);
        CU_ASSERT_FATAL(read_floats(expect, 60, ref));
        for (size_t i = 0; i < 60; i++)
            if (fabsf(mr_array_f32(a)[i] - expect[i]) > 1e-6f * fabsf(expect[i])) ok = 0;
        f = fopen(aff, "r");
        CU_ASSERT_PTR_NOT_NULL_FATAL(f);
        for (int r = 0; r < 4; r++)
            for (int c = 0; c < 4; c++) {
                if (fscanf(f, "%lf", &A[r][c]) != 1) ok = 0;
                if (fabs(A[r][c] - meta.affine[r][c]) > 1e-5) ok = 0;
            }
        fclose(f);
        if (!ok) fprintf(stderr, "\n  datatype %s: values or affine differ from nibabel\n", names[t]);
        CU_ASSERT(ok);
        mr_array_destroy(a);
    }
}

static void test_nifti_ch2(void)
{
    const char *ch2 = "/usr/share/mricron/templates/ch2.nii.gz";
    /* voxels (i, j, k) */
    const int vox[5][3] = {{90, 108, 90}, {10, 20, 30}, {100, 150, 60}, {180, 216, 180}, {45, 171, 133}};
    mr_array *a = NULL, *b = NULL;
    mr_nifti_meta meta, meta2;
    char cmd[2048];
    size_t used = 0;
    const char *p;

    CU_ASSERT_FATAL(mr_nifti_read(&a, &meta, ch2) == MR_OK);
    CU_ASSERT(a->ndim == 3 && a->dims[0] == 181 && a->dims[1] == 217 && a->dims[2] == 181);
    used += (size_t)snprintf(cmd + used, sizeof cmd - used,
                             "%s -c \"import nibabel as nib, numpy as np\n"
                             "im = nib.load('%s'); d = np.asanyarray(im.dataobj)\n"
                             "print(' '.join(repr(float(d[v])) for v in [",
                             mr_test_python(), ch2);
    for (int v = 0; v < 5; v++)
        used += (size_t)snprintf(cmd + used, sizeof cmd - used, "(%d,%d,%d),", vox[v][0], vox[v][1],
                                 vox[v][2]);
    snprintf(cmd + used, sizeof cmd - used,
             "]))\nprint(' '.join(repr(float(x)) for x in im.affine.ravel()))\"");
    CU_ASSERT_FATAL(mr_test_sh("%s", cmd) == 0);
    p = mr_test_output();
    for (int v = 0; v < 5; v++) {
        double ref;
        int n = 0;
        CU_ASSERT_FATAL(sscanf(p, "%lf%n", &ref, &n) == 1);
        p += n;
        CU_ASSERT(mr_array_f32(a)[((size_t)vox[v][2] * 217 + (size_t)vox[v][1]) * 181 + (size_t)vox[v][0]] ==
                  (float)ref);
    }
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < 4; c++) {
            double ref;
            int n = 0;
            CU_ASSERT_FATAL(sscanf(p, "%lf%n", &ref, &n) == 1);
            p += n;
            CU_ASSERT(meta.affine[r][c] == ref);
        }
    CU_ASSERT(meta.affine[0][3] == -90 && meta.affine[1][3] == -125 && meta.affine[2][3] == -71);
    CU_ASSERT(meta.pixdim[0] == 1 && meta.pixdim[1] == 1 && meta.pixdim[2] == 1);
    CU_ASSERT(meta.intent_code == 0);

    /* write with the source's meta: geometry and codes kept, values exact */
    CU_ASSERT_FATAL(mr_nifti_write(mr_test_path("ch2_out.nii.gz"), a, &meta) == MR_OK);
    CU_ASSERT_FATAL(mr_nifti_read(&b, &meta2, mr_test_path("ch2_out.nii.gz")) == MR_OK);
    CU_ASSERT(memcmp(a->data, b->data, mr_array_numel(a) * 4) == 0);
    CU_ASSERT(memcmp(meta.affine, meta2.affine, sizeof meta.affine) == 0);
    CU_ASSERT(
        mr_test_sh("%s -c \"import nibabel as nib, numpy as np\n"
                   "a = nib.load('%s'); b = nib.load('%s')\n"
                   "da = np.asanyarray(a.dataobj).astype(np.float32); db = np.asanyarray(b.dataobj)\n"
                   "print(db.dtype, np.array_equal(da, db), np.array_equal(a.affine, b.affine),\n"
                   "      np.array_equal(a.header.get_zooms(), b.header.get_zooms()),\n"
                   "      int(b.header['sform_code']), b.header['descrip'].tobytes().rstrip(b'\\\\0').decode())\"",
                   mr_test_python(), ch2, mr_test_path("ch2_out.nii.gz")) == 0);
    CU_ASSERT(strstr(mr_test_output(), "float32 True True True 4 spm - algebra") != NULL);
    if (!strstr(mr_test_output(), "float32 True True True 4"))
        fprintf(stderr, "\n  nibabel: %s\n", mr_test_output());
    mr_array_destroy(b);

    /* a different in-plane size gets a fresh 1 mm identity header */
    {
        const size_t d[3] = {2, 3, 4};
        mr_array *c = random_array(MR_FLOAT32, 3, d, 9);
        CU_ASSERT_FATAL(mr_nifti_write(mr_test_path("fresh.nii"), c, &meta) == MR_OK);
        CU_ASSERT_FATAL(mr_nifti_read(&b, &meta2, mr_test_path("fresh.nii")) == MR_OK);
        for (int r = 0; r < 4; r++)
            for (int cc = 0; cc < 4; cc++) CU_ASSERT(meta2.affine[r][cc] == (r == cc ? 1.0 : 0.0));
        mr_array_destroy(b);
        mr_array_destroy(c);
    }
    mr_array_destroy(a);
    CU_ASSERT(no_partials());
}

static void test_nifti_bad_inputs(void)
{
    const size_t d[3] = {2, 3, 4};
    mr_array *a = random_array(MR_FLOAT32, 3, d, 10), *b = NULL;
    const char *good = mr_test_path("good.nii");
    const char *bad = mr_test_path("bad.nii");
    short s;
    mr_nifti_meta meta;

    CU_ASSERT_FATAL(mr_nifti_write(good, a, NULL) == MR_OK);

    /* not NIfTI at all */
    mr_test_write_text(bad, "this is not a NIfTI file, just text that is long enough to be read........"
                    "..........................................................................."
                    "..........................................................................."
                    "..........................................................................."
                    "..........................................................................");
    CU_ASSERT(mr_nifti_read(&b, &meta, bad) == MR_ERR_INPUT);
    CU_ASSERT(msg_has("bad.nii", "sizeof_hdr"));
    CU_ASSERT(b == NULL && meta.valid == 0);
    mr_test_write_text(bad, "short");
    CU_ASSERT(mr_nifti_read(&b, NULL, bad) == MR_ERR_INPUT);
    CU_ASSERT(msg_has("bad.nii", "348-byte header"));

    /* bad magic */
    CU_ASSERT(mr_test_sh("cp %s %s", good, bad) == 0);
    patch_bytes(bad, 344, "xyz", 4);
    CU_ASSERT(mr_nifti_read(&b, NULL, bad) == MR_ERR_INPUT);
    CU_ASSERT(msg_has("magic is 'xyz'", "expected 'n+1'"));

    /* truncated data: plain and gzipped */
    CU_ASSERT(mr_test_sh("head -c 370 %s > %s", good, bad) == 0);
    CU_ASSERT(mr_nifti_read(&b, NULL, bad) == MR_ERR_INPUT);
    CU_ASSERT(msg_has("truncated", "96 bytes"));
    CU_ASSERT(mr_test_sh("head -c 370 %s | gzip -c > %s.gz", good, bad) == 0);
    CU_ASSERT(mr_nifti_read(&b, NULL, mr_test_path("bad.nii.gz")) == MR_ERR_INPUT);
    CU_ASSERT(msg_has("bad.nii.gz", "truncated"));
    CU_ASSERT(mr_test_sh("gzip -c %s | head -c 60 > %s.gz", good, bad) == 0);
    CU_ASSERT(mr_nifti_read(&b, NULL, mr_test_path("bad.nii.gz")) == MR_ERR_INPUT);
    CU_ASSERT(msg_has("bad.nii.gz", "348-byte header"));

    /* unsupported datatype (complex64 = 32) */
    CU_ASSERT(mr_test_sh("cp %s %s", good, bad) == 0);
    s = 32;
    patch_bytes(bad, 70, &s, 2);
    CU_ASSERT(mr_nifti_read(&b, NULL, bad) == MR_ERR_INPUT);
    CU_ASSERT(msg_has("datatype 32", "complex64"));
    s = 1234;
    patch_bytes(bad, 70, &s, 2);
    CU_ASSERT(mr_nifti_read(&b, NULL, bad) == MR_ERR_INPUT);
    CU_ASSERT(msg_has("datatype 1234", NULL));

    /* empty dims */
    CU_ASSERT(mr_test_sh("cp %s %s", good, bad) == 0);
    s = 0;
    patch_bytes(bad, 40 + 6, &s, 2); /* dim[3] */
    CU_ASSERT(mr_nifti_read(&b, NULL, bad) == MR_ERR_INPUT);
    CU_ASSERT(msg_has("dim[3] is 0", "empty"));
    patch_bytes(bad, 40, &s, 2); /* dim[0] */
    CU_ASSERT(mr_nifti_read(&b, NULL, bad) == MR_ERR_INPUT);
    CU_ASSERT(msg_has("dim[0] is 0", "empty"));

    /* 4-D with more than one volume; 4-D with one is fine */
    CU_ASSERT(mr_test_sh("cp %s %s", good, bad) == 0);
    s = 4;
    patch_bytes(bad, 40, &s, 2);
    CU_ASSERT(mr_nifti_read(&b, NULL, bad) == MR_OK);
    mr_array_destroy(b);
    b = NULL;
    s = 2;
    patch_bytes(bad, 40 + 8, &s, 2);
    CU_ASSERT(mr_nifti_read(&b, NULL, bad) == MR_ERR_INPUT);
    CU_ASSERT(msg_has("dim[4] is 2", NULL));

    /* missing input, output into a missing directory, wrong array type */
    CU_ASSERT(mr_nifti_read(&b, NULL, mr_test_path("nothere.nii")) == MR_ERR_INPUT);
    CU_ASSERT(msg_has("nothere.nii", "No such file"));
    CU_ASSERT(mr_nifti_write(mr_test_path("nodir/x.nii.gz"), a, NULL) == MR_ERR_IO);
    CU_ASSERT(msg_has("nodir", "does not exist"));
    {
        const size_t dc[2] = {2, 2};
        mr_array *c = NULL;
        CU_ASSERT_FATAL(mr_array_create(&c, MR_COMPLEX64, 2, dc) == MR_OK);
        CU_ASSERT(mr_nifti_write(mr_test_path("cplx.nii"), c, NULL) == MR_ERR_INPUT);
        CU_ASSERT(msg_has("cplx.nii", "float32"));
        CU_ASSERT(!mr_path_is_file(mr_test_path("cplx.nii")));
        mr_array_destroy(c);
    }
    CU_ASSERT(b == NULL);
    mr_array_destroy(a);
    CU_ASSERT(no_partials());
}

/* ---------------------------------------------------------------- PNG */

/* Decode a PNG into 8-bit pixels of the given format (caller frees). */
static unsigned char *png_decode(const char *path, unsigned format, size_t *h, size_t *w)
{
    png_image im;
    unsigned char *buf;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_file(&im, path)) return NULL;
    im.format = format;
    buf = malloc(PNG_IMAGE_SIZE(im));
    if (!png_image_finish_read(&im, NULL, buf, 0, NULL)) {
        free(buf);
        return NULL;
    }
    *h = im.height;
    *w = im.width;
    return buf;
}

static int map_expect(float x, float lo, float hi)
{
    double v;
    if (!(x > lo)) return 0;
    if (x >= hi) return 255;
    v = (x - lo) / (hi - lo) * 255.0;
    return (int)floor(v + 0.5);
}

static void test_png_gray_rgb(void)
{
    const size_t h = 7, w = 5;
    float img[35];
    unsigned char rgb[3 * 4 * 3], *pix;
    size_t ph = 0, pw = 0;
    int ok = 1;
    for (size_t i = 0; i < h * w; i++) img[i] = (float)i * 0.4f - 2.0f; /* -2 .. 11.6 */
    CU_ASSERT_FATAL(mr_png_write_gray(mr_test_path("g.png"), img, h, w, 0.0f, 10.0f) == MR_OK);
    pix = png_decode(mr_test_path("g.png"), PNG_FORMAT_GRAY, &ph, &pw);
    CU_ASSERT_PTR_NOT_NULL_FATAL(pix);
    CU_ASSERT(ph == h && pw == w);
    for (size_t i = 0; i < h * w; i++)
        if (pix[i] != map_expect(img[i], 0, 10)) ok = 0;
    CU_ASSERT(ok);
    CU_ASSERT(pix[0] == 0 && pix[h * w - 1] == 255 && pix[15] == 102); /* 15*0.4-2 = 4 -> 102 */
    free(pix);

    for (size_t i = 0; i < sizeof rgb; i++) rgb[i] = (unsigned char)(i * 7 + 3);
    CU_ASSERT_FATAL(mr_png_write_rgb(mr_test_path("c.png"), rgb, 3, 4) == MR_OK);
    pix = png_decode(mr_test_path("c.png"), PNG_FORMAT_RGB, &ph, &pw);
    CU_ASSERT_PTR_NOT_NULL_FATAL(pix);
    CU_ASSERT(ph == 3 && pw == 4);
    CU_ASSERT(memcmp(pix, rgb, sizeof rgb) == 0);
    free(pix);

    /* errors leave nothing */
    CU_ASSERT(mr_png_write_gray(mr_test_path("nodir/g.png"), img, h, w, 0, 1) == MR_ERR_IO);
    CU_ASSERT(msg_has("nodir", "does not exist"));
    CU_ASSERT(mr_png_write_gray(mr_test_path("z.png"), img, 0, w, 0, 1) == MR_ERR_INPUT);
    CU_ASSERT(!mr_path_is_file(mr_test_path("z.png")));
    CU_ASSERT(no_partials());
}

static void test_png_volume(void)
{
    const size_t d[3] = {5, 6, 7}; /* 5 slices -> 3 columns x 2 rows of 6 x 7 */
    mr_array *a = random_array(MR_FLOAT32, 3, d, 11);
    float lo, hi;
    unsigned char *pix;
    size_t ph = 0, pw = 0;
    int ok = 1;
    mr_window_percentile(&lo, &hi, mr_array_f32(a), mr_array_numel(a), 0, 99.5);
    if (lo > 0) lo = 0;
    CU_ASSERT(lo < 0); /* randn data: the window starts at the minimum */
    CU_ASSERT_FATAL(mr_png_write_volume(mr_test_path("v.png"), a) == MR_OK);
    pix = png_decode(mr_test_path("v.png"), PNG_FORMAT_GRAY, &ph, &pw);
    CU_ASSERT_PTR_NOT_NULL_FATAL(pix);
    CU_ASSERT(ph == 12 && pw == 21);
    for (size_t s = 0; s < 6; s++)
        for (size_t y = 0; y < 6; y++)
            for (size_t x = 0; x < 7; x++) {
                int got = pix[((s / 3) * 6 + y) * 21 + (s % 3) * 7 + x];
                int want = s < 5 ? map_expect(mr_array_f32(a)[(s * 6 + y) * 7 + x], lo, hi) : 0;
                if (got != want) ok = 0;
            }
    CU_ASSERT(ok);
    free(pix);
    mr_array_destroy(a);

    /* a single (H, W) image of non-negative values: window [0, p99.5] */
    {
        const size_t d2[2] = {9, 4};
        mr_array *b = random_array(MR_FLOAT32, 2, d2, 12);
        for (size_t i = 0; i < 36; i++) mr_array_f32(b)[i] = fabsf(mr_array_f32(b)[i]) + 1;
        mr_window_percentile(&lo, &hi, mr_array_f32(b), 36, 0, 99.5);
        CU_ASSERT_FATAL(mr_png_write_volume(mr_test_path("v2.png"), b) == MR_OK);
        pix = png_decode(mr_test_path("v2.png"), PNG_FORMAT_GRAY, &ph, &pw);
        CU_ASSERT_PTR_NOT_NULL_FATAL(pix);
        CU_ASSERT(ph == 9 && pw == 4);
        ok = 1;
        for (size_t i = 0; i < 36; i++)
            if (pix[i] != map_expect(mr_array_f32(b)[i], 0, hi)) ok = 0;
        CU_ASSERT(ok);
        free(pix);
        mr_array_destroy(b);
    }
    CU_ASSERT(no_partials());
}

static void test_window_percentile(void)
{
    const size_t n = 100003, big = 35 * 320 * 320;
    float *x = malloc(big * sizeof *x), lo, hi;
    mr_test_rng r;
    FILE *f;
    struct timespec t0, t1;
    double secs, ref[4];

    mr_test_rng_init(&r, 13);
    for (size_t i = 0; i < n; i++) x[i] = (float)mr_test_randn(&r);
    for (size_t i = 0; i < n / 3; i++) x[i * 3] = 0.25f; /* many ties */
    f = fopen(mr_test_path("pct.f32"), "wb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fwrite(x, 4, n, f);
    fclose(f);
    CU_ASSERT_FATAL(mr_test_sh("%s -c \"import numpy as np\n"
                               "x = np.fromfile('%s', dtype=np.float32).astype(np.float64)\n"
                               "print(*[repr(float(v)) for v in np.percentile(x, [0, 99.5, 1.7, 50])])\"",
                               mr_test_python(), mr_test_path("pct.f32")) == 0);
    CU_ASSERT_FATAL(sscanf(mr_test_output(), "%lf %lf %lf %lf", &ref[0], &ref[1], &ref[2], &ref[3]) == 4);
    mr_window_percentile(&lo, &hi, x, n, 0, 99.5);
    CU_ASSERT(lo == (float)ref[0]);
    CU_ASSERT(fabs(hi - ref[1]) <= 1e-6 * fabs(ref[1]));
    mr_window_percentile(&lo, &hi, x, n, 1.7, 50);
    CU_ASSERT(fabs(lo - ref[2]) <= 1e-6 * fabs(ref[2]));
    CU_ASSERT(fabs(hi - ref[3]) <= 1e-6 * fabs(ref[3]));

    /* edge cases: one value, constant, NaN ignored */
    x[0] = 3;
    mr_window_percentile(&lo, &hi, x, 1, 0, 99.5);
    CU_ASSERT(lo == 3 && hi == 3);
    for (size_t i = 0; i < 10; i++) x[i] = 2;
    x[4] = NAN;
    mr_window_percentile(&lo, &hi, x, 10, 0, 99.5);
    CU_ASSERT(lo == 2 && hi == 2);

    /* fastMRI volume size, 60 % background zeros, twice: well under a second */
    for (size_t i = 0; i < big; i++) x[i] = mr_test_randu(&r) < 0.6 ? 0.0f : (float)mr_test_randu(&r);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    mr_window_percentile(&lo, &hi, x, big, 0, 99.5);
    mr_window_percentile(&lo, &hi, x, big, 0, 99.5);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    secs = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    CU_ASSERT(lo == 0 && hi > 0.98f && hi < 0.999f);
    CU_ASSERT(secs < 2.0);
    if (secs >= 0.5) fprintf(stderr, "\n  percentile of %zu values: %.3f s\n", big, secs / 2);
    free(x);
}

/* ---------------------------------------------------------------- detection */

static void make_h5(const char *path, const char *group, const char *dataset)
{
    hid_t file, space, ds, grp = -1;
    hsize_t dims[1] = {4};
    float data[4] = {1, 2, 3, 4};
    file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    CU_ASSERT_FATAL(file >= 0);
    if (group) {
        grp = H5Gcreate2(file, group, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        CU_ASSERT_FATAL(grp >= 0);
    }
    space = H5Screate_simple(1, dims, NULL);
    ds = H5Dcreate2(grp >= 0 ? grp : file, dataset, H5T_NATIVE_FLOAT, space, H5P_DEFAULT,
                    H5P_DEFAULT, H5P_DEFAULT);
    CU_ASSERT_FATAL(ds >= 0);
    H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data);
    H5Dclose(ds);
    H5Sclose(space);
    if (grp >= 0) H5Gclose(grp);
    H5Fclose(file);
}

static void test_detect(void)
{
    mr_format fmt;
    const size_t d2[2] = {4, 4};
    mr_array *a = NULL;
    char dcm[132];

    make_h5(mr_test_path("fm.h5"), NULL, "kspace");
    make_h5(mr_test_path("rec.hdf5"), NULL, "reconstruction_rss");
    make_h5(mr_test_path("ism.h5"), "dataset", "data");
    make_h5(mr_test_path("other.h5"), NULL, "foo");
    CU_ASSERT(mr_io_detect_input(&fmt, mr_test_path("fm.h5")) == MR_OK && fmt == MR_FMT_FASTMRI);
    CU_ASSERT(mr_io_detect_input(&fmt, mr_test_path("rec.hdf5")) == MR_OK && fmt == MR_FMT_FASTMRI);
    CU_ASSERT(mr_io_detect_input(&fmt, mr_test_path("ism.h5")) == MR_OK && fmt == MR_FMT_ISMRMRD);
    CU_ASSERT(mr_io_detect_input(&fmt, mr_test_path("other.h5")) == MR_ERR_INPUT);
    CU_ASSERT(msg_has("other.h5", "foo"));
    CU_ASSERT(mr_test_sh("head -c 1000 %s > %s", mr_test_path("fm.h5"), mr_test_path("trunc.h5")) == 0);
    CU_ASSERT(mr_io_detect_input(&fmt, mr_test_path("trunc.h5")) == MR_ERR_INPUT);
    CU_ASSERT(msg_has("trunc.h5", "not a readable HDF5 file"));
    mr_test_write_text(mr_test_path("text.h5"), "not hdf5\n");
    CU_ASSERT(mr_io_detect_input(&fmt, mr_test_path("text.h5")) == MR_ERR_INPUT);
    CU_ASSERT(msg_has("text.h5", "not a readable HDF5 file"));
    /* an HDF5 file under another name is recognised by its signature */
    CU_ASSERT(mr_test_sh("cp %s %s", mr_test_path("fm.h5"), mr_test_path("fm.dat")) == 0);
    CU_ASSERT(mr_io_detect_input(&fmt, mr_test_path("fm.dat")) == MR_OK && fmt == MR_FMT_FASTMRI);

    /* BART with and without extension; a half pair is an error */
    CU_ASSERT_FATAL(mr_array_create(&a, MR_COMPLEX64, 2, d2) == MR_OK);
    CU_ASSERT_FATAL(mr_cfl_write(mr_test_path("det"), a) == MR_OK);
    CU_ASSERT(mr_io_detect_input(&fmt, mr_test_path("det")) == MR_OK && fmt == MR_FMT_CFL);
    CU_ASSERT(mr_io_detect_input(&fmt, mr_test_path("det.cfl")) == MR_OK && fmt == MR_FMT_CFL);
    CU_ASSERT(mr_io_detect_input(&fmt, mr_test_path("det.hdr")) == MR_OK && fmt == MR_FMT_CFL);
    write_zeros(mr_test_path("half.cfl"), 8);
    CU_ASSERT(mr_io_detect_input(&fmt, mr_test_path("half.cfl")) == MR_ERR_INPUT);
    CU_ASSERT(msg_has("half.hdr", "No such file"));
    CU_ASSERT(mr_io_detect_input(&fmt, mr_test_path("half")) == MR_ERR_INPUT);
    CU_ASSERT(msg_has("half.hdr", "No such file"));
    mr_array_destroy(a);

    /* NIfTI by extension, and by header under another name */
    CU_ASSERT(mr_io_detect_input(&fmt, "/usr/share/mricron/templates/ch2.nii.gz") == MR_OK &&
              fmt == MR_FMT_NIFTI);
    {
        const size_t d3[3] = {1, 2, 2};
        mr_array *b = random_array(MR_FLOAT32, 3, d3, 14);
        CU_ASSERT_FATAL(mr_nifti_write(mr_test_path("n.nii"), b, NULL) == MR_OK);
        mr_array_destroy(b);
    }
    CU_ASSERT(mr_io_detect_input(&fmt, mr_test_path("n.nii")) == MR_OK && fmt == MR_FMT_NIFTI);
    CU_ASSERT(mr_test_sh("cp %s %s", mr_test_path("n.nii"), mr_test_path("n.img1")) == 0);
    CU_ASSERT(mr_io_detect_input(&fmt, mr_test_path("n.img1")) == MR_OK && fmt == MR_FMT_NIFTI);

    /* DICOM: a directory, or DICM at byte 128 whatever the name */
    CU_ASSERT(mr_io_detect_input(&fmt, mr_test_tmpdir()) == MR_OK && fmt == MR_FMT_DICOM);
    memset(dcm, 0, sizeof dcm);
    memcpy(dcm + 128, "DICM", 4);
    {
        FILE *f = fopen(mr_test_path("IM0001"), "wb");
        CU_ASSERT_PTR_NOT_NULL_FATAL(f);
        fwrite(dcm, 1, sizeof dcm, f);
        fclose(f);
    }
    CU_ASSERT(mr_io_detect_input(&fmt, mr_test_path("IM0001")) == MR_OK && fmt == MR_FMT_DICOM);

    /* missing, unknown, PNG as input */
    CU_ASSERT(mr_io_detect_input(&fmt, mr_test_path("missing.h5")) == MR_ERR_INPUT);
    CU_ASSERT(msg_has("missing.h5", "No such file"));
    mr_test_write_text(mr_test_path("notes.txt"), "hello\n");
    CU_ASSERT(mr_io_detect_input(&fmt, mr_test_path("notes.txt")) == MR_ERR_INPUT);
    CU_ASSERT(msg_has("notes.txt", "cannot tell"));
    mr_test_write_text(mr_test_path("p.png"), "x");
    CU_ASSERT(mr_io_detect_input(&fmt, mr_test_path("p.png")) == MR_ERR_INPUT);
    CU_ASSERT(msg_has("p.png", "output-only"));

    /* outputs by extension */
    CU_ASSERT(mr_io_detect_output(&fmt, "a/b.h5") == MR_OK && fmt == MR_FMT_FASTMRI);
    CU_ASSERT(mr_io_detect_output(&fmt, "b.HDF5") == MR_OK && fmt == MR_FMT_FASTMRI);
    CU_ASSERT(mr_io_detect_output(&fmt, "b.cfl") == MR_OK && fmt == MR_FMT_CFL);
    CU_ASSERT(mr_io_detect_output(&fmt, "b.hdr") == MR_OK && fmt == MR_FMT_CFL);
    CU_ASSERT(mr_io_detect_output(&fmt, "b.nii") == MR_OK && fmt == MR_FMT_NIFTI);
    CU_ASSERT(mr_io_detect_output(&fmt, "b.nii.gz") == MR_OK && fmt == MR_FMT_NIFTI);
    CU_ASSERT(mr_io_detect_output(&fmt, "b.png") == MR_OK && fmt == MR_FMT_PNG);
    CU_ASSERT(mr_io_detect_output(&fmt, "dir.x/b.txt") == MR_ERR_USAGE);
    CU_ASSERT(msg_has("'.txt'", ".nii.gz"));
    CU_ASSERT(mr_io_detect_output(&fmt, "dir.x/b") == MR_ERR_USAGE);
    CU_ASSERT(msg_has("no extension", NULL));
    for (int f = MR_FMT_UNKNOWN; f <= MR_FMT_DICOM; f++)
        CU_ASSERT(mr_format_name((mr_format)f) != NULL && *mr_format_name((mr_format)f));
    CU_ASSERT_STRING_EQUAL(mr_format_name(MR_FMT_CFL), "BART cfl");
}


/* ---------------------------------------------------------------- failing writes */

static void test_writes_fail_midway(void)
{
    const size_t dc[4] = {2, 3, 64, 64}, df[3] = {4, 128, 128};
    mr_array *c = random_array(MR_COMPLEX64, 4, dc, 15), *f = random_array(MR_FLOAT32, 3, df, 16);
    struct rlimit old, lim;
    void (*old_handler)(int);
    mr_status st_cfl, st_nii, st_niigz, st_png;

    /* PNG of noise does not compress: 512 x 256 gray bytes > the limit */
    CU_ASSERT_FATAL(getrlimit(RLIMIT_FSIZE, &old) == 0);
    old_handler = signal(SIGXFSZ, SIG_IGN);
    lim = old;
    lim.rlim_cur = 16 * 1024;
    CU_ASSERT_FATAL(setrlimit(RLIMIT_FSIZE, &lim) == 0);
    st_cfl = mr_cfl_write(mr_test_path("full.cfl"), c);
    st_nii = mr_nifti_write(mr_test_path("full.nii"), f, NULL);
    st_niigz = mr_nifti_write(mr_test_path("full.nii.gz"), f, NULL);
    st_png = mr_png_write_volume(mr_test_path("full.png"), f);
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, old_handler);

    CU_ASSERT(st_cfl == MR_ERR_IO);
    CU_ASSERT(st_nii == MR_ERR_IO);
    CU_ASSERT(st_niigz == MR_ERR_IO);
    CU_ASSERT(st_png == MR_ERR_IO);
    CU_ASSERT(!mr_path_is_file(mr_test_path("full.cfl")) && !mr_path_is_file(mr_test_path("full.hdr")));
    CU_ASSERT(!mr_path_is_file(mr_test_path("full.nii")));
    CU_ASSERT(!mr_path_is_file(mr_test_path("full.nii.gz")));
    CU_ASSERT(!mr_path_is_file(mr_test_path("full.png")));
    CU_ASSERT(msg_has("full.png", "write"));
    CU_ASSERT(no_partials());
    mr_array_destroy(c);
    mr_array_destroy(f);
}

int main(void)
{
    const mr_test_case cases[] = {
        {"cfl round trip (odd sizes, 2-D/3-D/4-D, float32/complex64)", test_cfl_roundtrip},
        {"cfl reads BART's phantom with BART's element placement", test_cfl_reads_bart},
        {"BART reads our cfl (show -m, slice, fft along d0)", test_cfl_bart_reads_ours},
        {"cfl bad inputs", test_cfl_bad_inputs},
        {"NIfTI round trip, read by nibabel", test_nifti_roundtrip},
        {"NIfTI datatypes, byte orders, scaling, qform/sform vs nibabel", test_nifti_datatypes},
        {"NIfTI ch2 template vs nibabel; geometry kept on write", test_nifti_ch2},
        {"NIfTI bad inputs", test_nifti_bad_inputs},
        {"PNG gray and RGB decoded", test_png_gray_rgb},
        {"PNG volume montage and window", test_png_volume},
        {"window percentiles vs numpy, speed", test_window_percentile},
        {"format detection", test_detect},
        {"writes failing part-way leave nothing", test_writes_fail_midway},
        {NULL, NULL},
    };
    return mr_test_run("io_basic", cases);
}
