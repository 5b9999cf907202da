/*
 * test_dicom.c: the DICOM suite (io/dicom_read.c, io/dicom_write.c, the DCMTK shim, mrpipe convert,
 * info and folder outputs). Inputs are pydicom's test files (MR_small in every encoding, CT_small,
 * the DICOMDIR set) and fixtures built from MR_small's pixels by tests/dicom_fixtures.py (a
 * shuffled oblique series, an Enhanced MR multi-frame object, two series in one folder, bad
 * inputs). Oracles: pydicom (pixel values, the affine computed from the tags as dicom2nifti
 * reasons), nibabel, DCMTK's own codecs (dcmcjpeg/dcmdjpeg, dcmcrle), dciodvfy (dicom3tools) and
 * dcmdump.
 */
#include "mr_io.h"
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define TEST_FILES "/usr/lib/python3/dist-packages/pydicom/data/test_files"

static char g_fx[4096];

/* The fixtures, built once per run. */
static const char *fx(const char *rel)
{
    static char bufs[8][4096];
    static int next;
    if (!g_fx[0]) {
        snprintf(g_fx, sizeof g_fx, "%s", mr_test_path("fx"));
        int rc = mr_test_sh("%s %s make %s", mr_test_python(),
                            mr_test_src("tests/dicom_fixtures.py"), g_fx);
        if (rc != 0) fprintf(stderr, "fixtures failed:\n%s\n", mr_test_output());
    }
    char *b = bufs[next++ % 8];
    snprintf(b, 4096, "%.3000s/%.1000s", g_fx, rel);
    return b;
}

/* Read the only series at path (NULL and the status on failure). */
static mr_dicom_volume *read_vol(mr_status *st_out, const char *path, int require_mr)
{
    mr_dicom_set *set = NULL;
    mr_dicom_volume *vol = NULL;
    size_t idx;
    mr_status st = mr_dicom_set_open(&set, path);
    if (st == MR_OK) st = mr_dicom_set_select(&idx, set, NULL);
    if (st == MR_OK) st = mr_dicom_volume_read(&vol, set, idx, require_mr);
    mr_dicom_set_close(set);
    if (st_out) *st_out = st;
    return vol;
}

static int same_data(const mr_array *a, const mr_array *b)
{
    if (!a || !b || a->ndim != b->ndim) return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->dims[i] != b->dims[i]) return 0;
    return memcmp(a->data, b->data, mr_array_numel(a) * sizeof(float)) == 0;
}

/* pydicom's real-world values of a single-frame file as float32 (the oracle). */
static float *pydicom_values(const char *path, size_t n)
{
    const char *out = mr_test_path("pyvals.f32");
    float *v = NULL;
    int rc =
        mr_test_sh("%s -c \"import pydicom, numpy as np, warnings; warnings.simplefilter('ignore');"
                   "d = pydicom.dcmread('%s');"
                   "(d.pixel_array * float(getattr(d, 'RescaleSlope', 1)) + "
                   "float(getattr(d, 'RescaleIntercept', 0))).astype('<f4').tofile('%s')\"",
                   mr_test_python(), path, out);
    FILE *f = rc == 0 ? fopen(out, "rb") : NULL;
    if (f) {
        v = malloc(n * sizeof *v);
        if (fread(v, sizeof *v, n, f) != n) {
            free(v);
            v = NULL;
        }
        fclose(f);
    }
    return v;
}

static mr_dicom_volume *reference(void)
{
    static mr_dicom_volume *ref;
    if (!ref) ref = read_vol(NULL, TEST_FILES "/MR_small.dcm", 1);
    return ref;
}

/* ---------------------------------------------------------------- reading */

static void test_mr_small_matches_pydicom(void)
{
    mr_dicom_volume *ref = reference();
    CU_ASSERT_FATAL(ref != NULL);
    CU_ASSERT_EQUAL(ref->data->dims[0], 1);
    CU_ASSERT_EQUAL(ref->data->dims[1], 64);
    CU_ASSERT_EQUAL(ref->data->dims[2], 64);
    float *py = pydicom_values(TEST_FILES "/MR_small.dcm", 64 * 64);
    CU_ASSERT_FATAL(py != NULL);
    CU_ASSERT(memcmp(py, ref->data->data, 64 * 64 * sizeof(float)) == 0);
    free(py);
    CU_ASSERT_DOUBLE_EQUAL(ref->src.geom.pixel_spacing[0], 0.3125, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(ref->src.geom.origin[0], -83.9063, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(ref->src.geom.slice_thickness, 0.8, 1e-9);
    CU_ASSERT_STRING_EQUAL(ref->src.refs[0].sop_instance_uid,
                           "1.3.6.1.4.1.5962.1.1.4.1.1.20040826185059.5457");
}

/* Every encoding DCMTK decodes gives MR_small.dcm's pixels exactly. */
static void test_every_encoding_same_pixels(void)
{
    static const char *names[] = {"MR_small_implicit.dcm",
                                  "MR_small_bigendian.dcm",
                                  "MR_small_expb.dcm",
                                  "MR_small_padded.dcm",
                                  "MR_small_RLE.dcm",
                                  "MR_small_jpeg_ls_lossless.dcm",
                                  NULL};
    mr_dicom_volume *ref = reference();
    char path[4096];
    CU_ASSERT_FATAL(ref != NULL);
    for (const char **n = names; *n; n++) {
        mr_status st;
        snprintf(path, sizeof path, "%s/%s", TEST_FILES, *n);
        mr_dicom_volume *v = read_vol(&st, path, 1);
        if (!v) fprintf(stderr, "%s: %s\n", *n, mr_error_message());
        CU_ASSERT(v && same_data(v->data, ref->data));
        mr_dicom_volume_destroy(v);
    }
    /* JPEG lossless (process 14, SV1 and SV6) and RLE made by DCMTK's encoders */
    const char *opts[] = {"dcmcjpeg +e1", "dcmcjpeg +el", "dcmcrle", "dcmcjpls", NULL};
    const char *uids[] = {"1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.5",
                          "1.2.840.10008.1.2.4.80"};
    for (int i = 0; opts[i]; i++) {
        const char *out = mr_test_path("enc.dcm");
        CU_ASSERT_EQUAL_FATAL(mr_test_sh("%s %s/MR_small.dcm %s && dcmdump -Un -s +P 0002,0010 %s",
                                         opts[i], TEST_FILES, out, out),
                              0);
        CU_ASSERT(strstr(mr_test_output(), uids[i]) != NULL);
        mr_dicom_volume *v = read_vol(NULL, out, 1);
        if (!v) fprintf(stderr, "%s: %s\n", opts[i], mr_error_message());
        CU_ASSERT(v && same_data(v->data, ref->data));
        mr_dicom_volume_destroy(v);
    }
}

/* Lossy JPEG (baseline 8-bit, extended 12-bit): the pixels DCMTK's own dcmdjpeg decodes. */
static void test_jpeg_lossy_decodes_as_dcmtk(void)
{
    const char *in[] = {"eight.dcm", "unsigned12.dcm"};
    const char *opt[] = {"+eb", "+ee"};
    const char *uid[] = {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51"};
    for (int i = 0; i < 2; i++) {
        const char *jpg = mr_test_path("lossy.dcm"), *raw = mr_test_path("lossy_raw.dcm");
        CU_ASSERT_EQUAL_FATAL(mr_test_sh("dcmcjpeg %s %s %s && dcmdjpeg %s %s && dcmdump -Un -s +P "
                                         "0002,0010 %s",
                                         opt[i], fx(in[i]), jpg, jpg, raw, jpg),
                              0);
        CU_ASSERT(strstr(mr_test_output(), uid[i]) != NULL);
        mr_dicom_volume *a = read_vol(NULL, jpg, 1), *b = read_vol(NULL, raw, 1);
        CU_ASSERT(a && b && same_data(a->data, b->data));
        mr_dicom_volume_destroy(a);
        mr_dicom_volume_destroy(b);
    }
}

static void test_jpeg2000_clear_error(void)
{
    mr_status st;
    mr_dicom_volume *v = read_vol(&st, TEST_FILES "/MR_small_jp2klossless.dcm", 1);
    CU_ASSERT(v == NULL);
    CU_ASSERT_EQUAL(st, MR_ERR_INPUT);
    CU_ASSERT(strstr(mr_error_message(), "unsupported transfer syntax 1.2.840.10008.1.2.4.90") !=
              NULL);
    CU_ASSERT(strstr(mr_error_message(), "MR_small_jp2klossless.dcm") != NULL);
    CU_ASSERT_EQUAL(mr_test_sh("%s convert --input %s/MR_small_jp2klossless.dcm --output %s",
                               mr_test_bin(), TEST_FILES, mr_test_path("j2k.nii")),
                    1);
    CU_ASSERT(strstr(mr_test_output(), "unsupported transfer syntax 1.2.840.10008.1.2.4.90") !=
              NULL);
    CU_ASSERT(!mr_path_is_file(mr_test_path("j2k.nii")));
}

static void test_ct_rescale_and_non_mr(void)
{
    mr_status st;
    mr_dicom_volume *v = read_vol(&st, TEST_FILES "/CT_small.dcm", 0);
    CU_ASSERT_FATAL(v != NULL);
    float *py = pydicom_values(TEST_FILES "/CT_small.dcm", 128 * 128);
    CU_ASSERT_FATAL(py != NULL);
    CU_ASSERT(memcmp(py, v->data->data, 128 * 128 * sizeof(float)) == 0);
    free(py);
    mr_dicom_volume_destroy(v);
    v = read_vol(&st, TEST_FILES "/CT_small.dcm", 1);
    CU_ASSERT(v == NULL);
    CU_ASSERT_EQUAL(st, MR_ERR_INPUT);
    CU_ASSERT(strstr(mr_error_message(), "(0008,0060) Modality: expected MR, found 'CT'") != NULL);
    CU_ASSERT(strstr(mr_error_message(), "CT_small.dcm") != NULL);
}

static void test_pixel_module_variants(void)
{
    mr_dicom_volume *ref = reference();
    mr_dicom_volume *resc = read_vol(NULL, fx("rescaled.dcm"), 1);
    mr_dicom_volume *mono1 = read_vol(NULL, fx("mono1.dcm"), 1);
    mr_dicom_volume *u12 = read_vol(NULL, fx("unsigned12.dcm"), 1);
    CU_ASSERT_FATAL(ref && resc && mono1 && u12);
    const float *r = mr_array_f32(ref->data);
    float lo = r[0], hi = r[0];
    for (size_t i = 0; i < 64 * 64; i++) {
        lo = fminf(lo, r[i]);
        hi = fmaxf(hi, r[i]);
    }
    int ok_resc = 1, ok_mono = 1;
    for (size_t i = 0; i < 64 * 64; i++) {
        ok_resc &= mr_array_f32(resc->data)[i] == 2 * r[i] - 100;
        ok_mono &= mr_array_f32(mono1->data)[i] == hi + lo - r[i];
    }
    CU_ASSERT(ok_resc);
    CU_ASSERT(ok_mono);
    CU_ASSERT(same_data(u12->data, ref->data));
    mr_dicom_volume_destroy(resc);
    mr_dicom_volume_destroy(mono1);
    mr_dicom_volume_destroy(u12);
}

/* Shuffled file names and instance numbers: slices sorted along the normal; the NIfTI's data and
 * affine equal what pydicom and the dicom2nifti reasoning give. */
static void test_series_sorted_and_affine(void)
{
    const char *nii = mr_test_path("series.nii.gz");
    mr_status st;
    mr_dicom_volume *v = read_vol(&st, fx("series"), 1);
    CU_ASSERT_FATAL(v != NULL);
    CU_ASSERT_EQUAL(v->data->dims[0], 5);
    CU_ASSERT_DOUBLE_EQUAL(v->src.geom.slice_spacing, 2.5, 1e-5);
    CU_ASSERT_DOUBLE_EQUAL(v->src.geom.origin[0], -40.0, 1e-5);
    CU_ASSERT_DOUBLE_EQUAL(v->src.geom.origin[1], 12.5, 1e-5);
    CU_ASSERT_DOUBLE_EQUAL(v->src.geom.origin[2], 30.0, 1e-5);
    /* slice k = MR_small rolled 3k columns + 7k: check slice 3's first row */
    const float *ref = mr_array_f32(reference()->data), *s3 = mr_array_f32(v->data) + 3 * 64 * 64;
    int ok = 1;
    for (int x = 0; x < 64; x++)
        ok &= s3[x] == ref[(x - 9 + 64) % 64] + 21;
    CU_ASSERT(ok);
    mr_dicom_volume_destroy(v);
    CU_ASSERT_EQUAL_FATAL(
        mr_test_sh("%s -q convert --input %s --output %s", mr_test_bin(), fx("series"), nii), 0);
    int rc = mr_test_sh("%s %s check_nii %s %s", mr_test_python(),
                        mr_test_src("tests/dicom_fixtures.py"), nii, fx("series"));
    if (rc) fprintf(stderr, "%s\n", mr_test_output());
    CU_ASSERT_EQUAL(rc, 0);
}

static void test_enhanced_multiframe_same_volume(void)
{
    mr_dicom_volume *a = read_vol(NULL, fx("series"), 1),
                    *b = read_vol(NULL, fx("enhanced.dcm"), 1);
    CU_ASSERT_FATAL(a && b);
    CU_ASSERT(same_data(a->data, b->data));
    double A[4][4], B[4][4], diff = 0;
    mr_dicom_geometry_affine(A, &a->src.geom);
    mr_dicom_geometry_affine(B, &b->src.geom);
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < 4; c++)
            diff = fmax(diff, fabs(A[r][c] - B[r][c]));
    CU_ASSERT(diff < 1e-5);
    CU_ASSERT_EQUAL(b->src.refs[0].frame > 0, 1);
    CU_ASSERT_EQUAL(b->src.series.enhanced, 1);
    mr_dicom_volume_destroy(a);
    mr_dicom_volume_destroy(b);
    const char *nii = mr_test_path("enhanced.nii");
    CU_ASSERT_EQUAL_FATAL(
        mr_test_sh("%s -q convert --input %s --output %s", mr_test_bin(), fx("enhanced.dcm"), nii),
        0);
    CU_ASSERT_EQUAL(mr_test_sh("%s %s check_nii %s %s", mr_test_python(),
                               mr_test_src("tests/dicom_fixtures.py"), nii, fx("enhanced.dcm")),
                    0);
}

static void test_two_series_listed(void)
{
    mr_dicom_set *set = NULL;
    size_t idx;
    CU_ASSERT_EQUAL_FATAL(mr_dicom_set_open(&set, fx("two")), MR_OK);
    CU_ASSERT_EQUAL(mr_dicom_set_count(set), 2);
    CU_ASSERT_EQUAL(mr_dicom_set_skipped(set), 1); /* README.txt */
    const mr_dicom_series_info *a = mr_dicom_set_series(set, 0), *b = mr_dicom_set_series(set, 1);
    CU_ASSERT(a->images + b->images == 5);
    CU_ASSERT_EQUAL(mr_dicom_set_select(&idx, set, NULL), MR_ERR_INPUT);
    CU_ASSERT(strstr(mr_error_message(), "found 2 series") != NULL);
    CU_ASSERT(strstr(mr_error_message(), a->series_uid) &&
              strstr(mr_error_message(), b->series_uid));
    CU_ASSERT_EQUAL(mr_dicom_set_select(&idx, set, b->series_uid), MR_OK);
    CU_ASSERT_EQUAL(idx, 1);
    CU_ASSERT_EQUAL(mr_dicom_set_select(&idx, set, "1.2.3"), MR_ERR_INPUT);
    /* the CLI: info lists both; convert needs --series */
    CU_ASSERT_EQUAL(mr_test_sh("%s info %s", mr_test_bin(), fx("two")), 0);
    CU_ASSERT(strstr(mr_test_output(), "2 series") && strstr(mr_test_output(), a->series_uid) &&
              strstr(mr_test_output(), b->series_uid));
    CU_ASSERT_EQUAL(mr_test_sh("%s convert --input %s --output %s", mr_test_bin(), fx("two"),
                               mr_test_path("two.nii")),
                    1);
    CU_ASSERT(strstr(mr_test_output(), "--series") && strstr(mr_test_output(), a->series_uid));
    CU_ASSERT(!mr_path_is_file(mr_test_path("two.nii")));
    CU_ASSERT_EQUAL(mr_test_sh("%s -q convert --input %s --series %s --output %s", mr_test_bin(),
                               fx("two"), b->series_uid, mr_test_path("two.nii")),
                    0);
    mr_dicom_set_close(set);
}

static void test_dicomdir(void)
{
    mr_dicom_set *a = NULL, *b = NULL;
    CU_ASSERT_EQUAL_FATAL(mr_dicom_set_open(&a, TEST_FILES "/dicomdirtests/DICOMDIR"), MR_OK);
    CU_ASSERT_EQUAL_FATAL(mr_dicom_set_open(&b, TEST_FILES "/dicomdirtests"), MR_OK);
    CU_ASSERT(mr_dicom_set_count(a) > 1);
    CU_ASSERT_EQUAL(mr_dicom_set_count(a), mr_dicom_set_count(b));
    mr_dicom_set_close(a);
    mr_dicom_set_close(b);
}

static void expect_error(const char *path, const char *a, const char *b)
{
    mr_status st;
    mr_dicom_volume *v = read_vol(&st, path, 1);
    CU_ASSERT(v == NULL);
    CU_ASSERT_EQUAL(st, MR_ERR_INPUT);
    if (!strstr(mr_error_message(), a) || (b && !strstr(mr_error_message(), b)))
        fprintf(stderr, "unexpected message for %s: %s\n", path, mr_error_message());
    CU_ASSERT(strstr(mr_error_message(), a) != NULL);
    if (b) CU_ASSERT(strstr(mr_error_message(), b) != NULL);
    mr_dicom_volume_destroy(v);
    /* the CLI says the same and writes nothing */
    const char *out = mr_test_path("bad.nii");
    CU_ASSERT_EQUAL(mr_test_sh("%s convert --input %s --output %s", mr_test_bin(), path, out), 1);
    CU_ASSERT(strstr(mr_test_output(), a) != NULL);
    CU_ASSERT(!mr_path_is_file(out));
}

static void test_bad_inputs(void)
{
    expect_error(fx("bad/notdicom.dcm"), "not a readable DICOM file", "notdicom.dcm");
    expect_error(fx("bad/nopixels.dcm"), "missing pixel data", "(7FE0,0010)");
    expect_error(fx("bad/orientation"), "inconsistent slice geometry", "(0020,0037)");
    expect_error(fx("bad/gap"), "uneven slice gaps", "(0020,0032)");
    expect_error(fx("bad/size"), "(0028,0010) Rows", "z_small.dcm");
    expect_error(TEST_FILES "/rtplan.dcm", "not an image", "rtplan.dcm");
    expect_error(mr_test_path("does-not-exist"), "no such file", NULL);
}

/* ---------------------------------------------------------------- writing */

static void test_uid_create(void)
{
    char a[MR_DICOM_UID_SIZE], b[MR_DICOM_UID_SIZE];
    CU_ASSERT_EQUAL_FATAL(mr_dicom_uid_create(a), MR_OK);
    CU_ASSERT_EQUAL_FATAL(mr_dicom_uid_create(b), MR_OK);
    CU_ASSERT(strncmp(a, "2.25.", 5) == 0 && strcmp(a, b) != 0);
    CU_ASSERT(strlen(a) <= 64 && strspn(a + 5, "0123456789") == strlen(a + 5));
    CU_ASSERT(a[5] != '0');
    /* the decimal is a version-4 UUID */
    CU_ASSERT_EQUAL(mr_test_sh("%s -c \"import uuid; u = uuid.UUID(int=int('%s'[5:])); "
                               "assert u.version == 4 and u.variant == uuid.RFC_4122\"",
                               mr_test_python(), a),
                    0);
}

/* Every instance in dir: dciodvfy reports no error, dcmdump reads it, only IM_nnnn.dcm files. */
static void check_valid_dir(const char *dir, size_t count)
{
    CU_ASSERT_EQUAL(mr_test_count_files(dir, "IM_"), (int)count);
    CU_ASSERT_EQUAL(mr_test_count_files(dir, ".dcm"), (int)count);
    CU_ASSERT_EQUAL(mr_test_sh("ls -A %s | grep -v '^IM_[0-9][0-9][0-9][0-9]\\.dcm$'", dir), 1);
    CU_ASSERT_EQUAL(
        mr_test_sh("for f in %s/IM_*.dcm; do dciodvfy $f 2>&1; done | grep -i '^Error'", dir),
        1); /* grep finds nothing */
    if (strstr(mr_test_output(), "Error")) fprintf(stderr, "dciodvfy: %s\n", mr_test_output());
    CU_ASSERT_EQUAL(
        mr_test_sh("for f in %s/IM_*.dcm; do dcmdump -q $f >/dev/null || exit 1; done", dir), 0);
}

static void test_derived_series_valid(void)
{
    const char *out = mr_test_path("derived");
    char dir[4096];
    CU_ASSERT_EQUAL_FATAL(
        mr_test_sh("%s -q convert --input %s --output %s/", mr_test_bin(), fx("series"), out), 0);
    snprintf(dir, sizeof dir, "%s/1007_fixture_series_mrpipe_convert", out);
    CU_ASSERT_FATAL(mr_path_is_dir(dir));
    check_valid_dir(dir, 5);
    CU_ASSERT_EQUAL(mr_test_count_files(out, ".partial"), 0);
    int rc = mr_test_sh("%s %s check_written %s %s", mr_test_python(),
                        mr_test_src("tests/dicom_fixtures.py"), dir, fx("series"));
    if (rc) fprintf(stderr, "%s\n", mr_test_output());
    CU_ASSERT_EQUAL(rc, 0);
    /* mrpipe reads its own output back: same volume and geometry */
    mr_dicom_volume *a = read_vol(NULL, fx("series"), 1), *b = read_vol(NULL, dir, 1);
    CU_ASSERT_FATAL(a && b);
    CU_ASSERT(same_data(a->data, b->data));
    CU_ASSERT_DOUBLE_EQUAL(a->src.geom.slice_spacing, b->src.geom.slice_spacing, 1e-5);
    CU_ASSERT_STRING_EQUAL(mr_dicom_attrs_get(&b->src.identity, MR_DICOM_TAG(0x0020, 0x000D)),
                           mr_dicom_attrs_get(&a->src.identity, MR_DICOM_TAG(0x0020, 0x000D)));
    mr_dicom_volume_destroy(a);
    mr_dicom_volume_destroy(b);
    /* never written over */
    CU_ASSERT_EQUAL(
        mr_test_sh("%s convert --input %s --output %s/", mr_test_bin(), fx("series"), out), 1);
    CU_ASSERT(strstr(mr_test_output(), "exists already") != NULL);
    CU_ASSERT_EQUAL(mr_test_count_files(out, ".partial"), 0);
}

static void test_anonymized(void)
{
    const char *out = mr_test_path("anon");
    char dir[4096];
    CU_ASSERT_EQUAL_FATAL(
        mr_test_sh("%s -q convert --anonymize --input %s/MR_small.dcm --output %s/", mr_test_bin(),
                   TEST_FILES, out),
        0);
    snprintf(dir, sizeof dir, "%s/1001_mrpipe_anonymized", out);
    CU_ASSERT_FATAL(mr_path_is_dir(dir));
    check_valid_dir(dir, 1);
    CU_ASSERT_EQUAL(mr_test_sh("dcmdump %s/IM_0001.dcm", dir), 0);
    const char *d = mr_test_output();
    CU_ASSERT(strstr(d, "CompressedSamples") == NULL);
    CU_ASSERT(strstr(d, "4MR1") == NULL);
    CU_ASSERT(strstr(d, "1.3.6.1.4.1.5962.1.2.4.20040826185059.5457") == NULL);     /* study UID */
    CU_ASSERT(strstr(d, "1.3.6.1.4.1.5962.1.1.4.1.1.20040826185059.5457") == NULL); /* source */
    CU_ASSERT(strstr(d, "[YES]") != NULL);                                          /* removed */
    CU_ASSERT_EQUAL(
        mr_test_sh("%s -c \"import pydicom; d = pydicom.dcmread('%s/IM_0001.dcm'); "
                   "assert 'PatientBirthDate' not in d or d.PatientBirthDate == ''; "
                   "assert str(d.PatientName) == 'ANONYMOUS'; "
                   "assert [float(x) for x in d.ImagePositionPatient] == "
                   "[-83.9063, -91.2, 6.6406]; assert d.StudyInstanceUID.startswith('2.25.')\"",
                   mr_test_python(), dir),
        0);
}

/* k-space input (no DICOM): geometry from the ISMRMRD header, a new study; the values are the
 * reconstruction's to the recorded scaling. */
static void test_recon_kspace_to_dicom(void)
{
    const char *k = mr_test_path("sl.h5"), *out = mr_test_path("recon_dcm"),
               *nii = mr_test_path("recon.nii");
    char dir[4096];
    CU_ASSERT_EQUAL_FATAL(mr_test_sh("ismrmrd_generate_cartesian_shepp_logan -m 64 -c 4 -o %s", k),
                          0);
    CU_ASSERT_EQUAL_FATAL(
        mr_test_sh("%s -q recon --input %s --output %s/ && %s -q recon --input %s "
                   "--output %s",
                   mr_test_bin(), k, out, mr_test_bin(), k, nii),
        0);
    snprintf(dir, sizeof dir, "%s/1000_mrpipe_zf", out);
    CU_ASSERT_FATAL(mr_path_is_dir(dir));
    check_valid_dir(dir, 1);
    int rc = mr_test_sh("%s -c \"import pydicom, nibabel, numpy as np; "
                        "d = pydicom.dcmread('%s/IM_0001.dcm'); "
                        "v = d.pixel_array * float(d.RescaleSlope) + float(d.RescaleIntercept); "
                        "r = np.asarray(nibabel.load('%s').dataobj)[:, :, 0].T; "
                        "assert np.max(np.abs(v - r)) <= float(d.RescaleSlope) * 0.5 + 1e-12, "
                        "np.max(np.abs(v - r)); assert d.StudyInstanceUID.startswith('2.25.'); "
                        "assert d.SeriesInstanceUID.startswith('2.25.'); "
                        "assert 'mrpipe' in str(d.SoftwareVersions)\"",
                        mr_test_python(), dir, nii);
    if (rc) fprintf(stderr, "%s\n", mr_test_output());
    CU_ASSERT_EQUAL(rc, 0);
}

/* The uncertainty-series API: a second series linked to the image series. */
static void test_linked_series(void)
{
    mr_dicom_volume *v = read_vol(NULL, fx("series"), 1);
    mr_dicom_written img, unc;
    mr_dicom_series_params p;
    mr_array *u = NULL;
    const char *out = mr_test_path("linked");
    CU_ASSERT_FATAL(v != NULL);
    memset(&p, 0, sizeof p);
    p.description = "fixture denoised";
    p.derivation = "test";
    p.config_hash = "0123abcd";
    CU_ASSERT_EQUAL_FATAL(mr_dicom_series_write(&img, out, v->data, &v->src, &p), MR_OK);
    CU_ASSERT_EQUAL_FATAL(mr_array_create(&u, MR_FLOAT32, 3, v->data->dims), MR_OK);
    for (size_t i = 0; i < mr_array_numel(u); i++)
        mr_array_f32(u)[i] = 0.001f * (float)(i % 977);
    memset(&p, 0, sizeof p);
    p.description = "fixture uncertainty";
    p.derivation = "pseudo-multiple-replica std";
    p.series_number = img.series_number + 1;
    p.linked = &img;
    CU_ASSERT_EQUAL_FATAL(mr_dicom_series_write(&unc, out, u, &v->src, &p), MR_OK);
    check_valid_dir(unc.dir, 5);
    check_valid_dir(img.dir, 5);
    int rc = mr_test_sh(
        "%s -c \"import pydicom, glob, numpy as np; "
        "im = {pydicom.dcmread(f).SOPInstanceUID for f in glob.glob('%s/*.dcm')}; "
        "us = [pydicom.dcmread(f) for f in sorted(glob.glob('%s/*.dcm'))]; "
        "assert all(u.ReferencedImageSequence[0].ReferencedSOPInstanceUID in im for u in us); "
        "assert all('%s' in [s.SeriesInstanceUID for s in u.ReferencedSeriesSequence] for u in "
        "us); "
        "assert all(u.StudyInstanceUID == '%s' for u in us); "
        "assert 'config 0123abcd' in "
        "list(pydicom.dcmread(glob.glob('%s/*.dcm')[0]).SoftwareVersions); "
        "v = us[0].pixel_array * float(us[0].RescaleSlope); "
        "assert abs(v.max() - 0.976) < 1e-4\"",
        mr_test_python(), img.dir, unc.dir, img.series_uid, img.study_uid, img.dir);
    if (rc) fprintf(stderr, "%s\n", mr_test_output());
    CU_ASSERT_EQUAL(rc, 0);
    /* bad data: NaN, and a shape that is not the source's; nothing left behind */
    mr_dicom_written w;
    mr_array_f32(u)[5] = NAN;
    p.linked = NULL;
    p.series_number = 77;
    CU_ASSERT_EQUAL(mr_dicom_series_write(&w, out, u, &v->src, &p), MR_ERR_INPUT);
    CU_ASSERT(strstr(mr_error_message(), "finite") != NULL);
    CU_ASSERT_EQUAL(mr_dicom_series_write(&w, out, reference()->data, &v->src, &p), MR_ERR_INPUT);
    CU_ASSERT_EQUAL(mr_test_count_files(out, "77_"), 0);
    CU_ASSERT_EQUAL(mr_test_count_files(out, ".partial"), 0);
    mr_dicom_written_free(&img);
    mr_dicom_written_free(&unc);
    mr_array_destroy(u);
    mr_dicom_volume_destroy(v);
}

/* PACS round trip: a real Orthanc on loopback inside its own network namespace (unshare -n), with
 * its own temporary storage. Send a derived series with C-STORE, query it back through Orthanc's
 * REST API and check that every instance arrived with its UIDs; fetch it back with C-GET and
 * convert it (same data and affine as the original); a missing series, a wrong called AE title
 * (refused, no retry) and a closed port (retried, then fails) give clear errors. */
static void test_pacs_send_orthanc(void)
{
    const char *dir = mr_test_path("pacs"), *script = mr_test_path("pacs.sh");
    FILE *f;
    if (mr_test_sh("command -v Orthanc && unshare -n true") != 0) {
        fprintf(stderr, "\n  (skipped: needs Debian's orthanc and unshare -n)\n");
        return;
    }
    f = fopen(script, "w");
    CU_ASSERT_FATAL(f != NULL);
    fprintf(
        f,
        "ip link set lo up || { echo 'cannot bring the loopback up (needs iproute2)'; exit 1; }\n"
        "D=%s; mkdir -p $D/store\n"
        "cat > $D/cfg.json <<J\n"
        "{ \"Name\": \"mrpipe-test\", \"StorageDirectory\": \"$D/store\", \"IndexDirectory\": "
        "\"$D/store\", \"HttpPort\": 18042, \"DicomPort\": 14242, \"DicomAet\": \"ORTHANC\", "
        "\"DicomCheckCalledAet\": true, \"RemoteAccessAllowed\": false, "
        "\"AuthenticationEnabled\": false, \"Plugins\": [], "
        "\"DicomModalities\": { \"mrpipe\": [ \"MRPIPETEST\", \"127.0.0.1\", 11112 ] } }\n"
        "J\n"
        "Orthanc $D/cfg.json > $D/orthanc.log 2>&1 & pid=$!\n"
        "for i in $(seq 150); do curl -sf http://127.0.0.1:18042/system >/dev/null && break; "
        "sleep 0.1; done\n"
        "%s -q convert --input %s --output $D/out/ --send ORTHANC@127.0.0.1:14242 "
        "--calling-aet MRPIPETEST; echo \"send=$?\"\n"
        "%s -c \"\n"
        "import glob, json, urllib.request, pydicom\n"
        "got = json.load(urllib.request.urlopen('http://127.0.0.1:18042/instances?expand'))\n"
        "got = {(i['MainDicomTags']['SOPInstanceUID']) for i in got}\n"
        "ours = [pydicom.dcmread(f) for f in glob.glob('$D/out/*/IM_*.dcm')]\n"
        "series = json.load(urllib.request.urlopen('http://127.0.0.1:18042/series?expand'))\n"
        "assert len(ours) == 5 and got == {d.SOPInstanceUID for d in ours}, (got, ours)\n"
        "assert [s['MainDicomTags']['SeriesInstanceUID'] for s in series] == "
        "[ours[0].SeriesInstanceUID]\n"
        "print('arrived', len(got))\n"
        "open('$D/uids', 'w').write(ours[0].StudyInstanceUID + ' ' + ours[0].SeriesInstanceUID)\"\n"
        "read T S < $D/uids\n"
        "%s -q fetch --from ORTHANC@127.0.0.1:14242 --calling-aet MRPIPETEST --study $T "
        "--series $S --output $D/fetched; echo \"fetch=$?\"\n"
        "%s -q convert --input $D/fetched/$S --output $D/fetched.nii && %s %s check_nii "
        "$D/fetched.nii %s >/dev/null; echo \"fetched_nii=$?\"\n"
        "%s -q fetch --from ORTHANC@127.0.0.1:14242 --calling-aet MRPIPETEST --study $T "
        "--series 1.2.3 --output $D/fetched; echo \"missing=$?\"\n"
        "%s -q convert --input %s --output $D/out2/ --send WRONG@127.0.0.1:14242; "
        "echo \"refused=$?\"\n"
        "%s -q convert --input %s --output $D/out3/ --send ORTHANC@127.0.0.1:14999 --retries 1; "
        "echo \"closed=$?\"\n"
        "kill $pid; wait $pid\n",
        dir, mr_test_bin(), fx("series"), mr_test_python(), mr_test_bin(), mr_test_bin(),
        mr_test_python(), mr_test_src("tests/dicom_fixtures.py"), fx("series"), mr_test_bin(),
        mr_test_bin(), fx("series"), mr_test_bin(), fx("series"));
    fclose(f);
    int rc = mr_test_sh("unshare -n sh %s", script);
    const char *out = mr_test_output();
    if (!strstr(out, "arrived 5")) fprintf(stderr, "%s\n", out);
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT(strstr(out, "send=0") != NULL);
    CU_ASSERT(strstr(out, "arrived 5") != NULL);
    CU_ASSERT(strstr(out, "refused=1") != NULL);
    CU_ASSERT(strstr(out, "refused the association") != NULL);
    {
        /* a refusal is final: nothing retried before "refused=" */
        const char *r = strstr(out, "refused=");
        const char *retry = strstr(out, "retrying");
        CU_ASSERT(r && (!retry || retry > r));
    }
    CU_ASSERT(strstr(out, "closed=1") != NULL);
    /* fetched back with C-GET: the same volume and geometry as the original series */
    CU_ASSERT(strstr(out, "fetch=0") != NULL);
    CU_ASSERT(strstr(out, "fetched_nii=0") != NULL);
    CU_ASSERT(strstr(out, "missing=1") != NULL);
    CU_ASSERT(strstr(out, "has no series 1.2.3") != NULL);
    CU_ASSERT(strstr(out, "after 2 attempts") != NULL);
    /* usage: a peer that is not AET@HOST:PORT */
    CU_ASSERT_EQUAL(mr_test_sh("%s convert --input %s --output %s/ --send localhost:4242",
                               mr_test_bin(), fx("series"), mr_test_path("pacs_bad")),
                    1);
    CU_ASSERT(strstr(mr_test_output(), "expected AET@HOST:PORT") != NULL);
}

static void test_info_privacy(void)
{
    CU_ASSERT_EQUAL(mr_test_sh("%s info %s/MR_small.dcm", mr_test_bin(), TEST_FILES), 0);
    CU_ASSERT(strstr(mr_test_output(), "CompressedSamples") == NULL);
    CU_ASSERT(strstr(mr_test_output(), "4MR1") == NULL);
    CU_ASSERT(strstr(mr_test_output(), "1.3.6.1.4.1.5962.1.3.4.1.20040826185059.5457") != NULL);
    CU_ASSERT(strstr(mr_test_output(), "(1, 64, 64)") != NULL);
    CU_ASSERT_EQUAL(mr_test_sh("%s info %s/MR_small.dcm --show-patient", mr_test_bin(), TEST_FILES),
                    0);
    CU_ASSERT(strstr(mr_test_output(), "CompressedSamples^MR1") != NULL);
}

int main(void)
{
    static const mr_test_case cases[] = {
        {"MR_small equals pydicom's values and geometry", test_mr_small_matches_pydicom},
        {"every decodable encoding gives the same pixels", test_every_encoding_same_pixels},
        {"lossy JPEG baseline/extended decode as DCMTK's dcmdjpeg",
         test_jpeg_lossy_decodes_as_dcmtk},
        {"JPEG 2000: unsupported transfer syntax error", test_jpeg2000_clear_error},
        {"CT rescale slope/intercept; non-MR refused", test_ct_rescale_and_non_mr},
        {"rescale, MONOCHROME1, unsigned 12-bit", test_pixel_module_variants},
        {"series sorted along the normal; NIfTI affine as pydicom", test_series_sorted_and_affine},
        {"Enhanced MR multi-frame reads as the same volume", test_enhanced_multiframe_same_volume},
        {"two series in a folder are listed", test_two_series_listed},
        {"DICOMDIR and its folder give the same series", test_dicomdir},
        {"bad inputs give clear errors and no output", test_bad_inputs},
        {"UIDs are 2.25 + a version-4 UUID", test_uid_create},
        {"derived series: dciodvfy, dcmdump, pydicom, identity, values", test_derived_series_valid},
        {"anonymized output has no patient identifiers", test_anonymized},
        {"k-space recon to DICOM (new study, ISMRMRD geometry)", test_recon_kspace_to_dicom},
        {"uncertainty series linked to the image series", test_linked_series},
        {"info prints patient fields only when asked", test_info_privacy},
        {"PACS: C-STORE to Orthanc and C-GET back; refusals", test_pacs_send_orthanc},
        {NULL, NULL},
    };
    int rc = mr_test_run("dicom", cases);
    return rc;
}
