/*
 * test_io_h5.c: the HDF5 formats of io/: the ISMRMRD XML header (parse, format validated against
 * ismrmrd.xsd with xmllint and libismrmrd's own parser, fastMRI padding), fastMRI files (round
 * trips, files written by mrpipe read by h5py and files written by h5py read by mrpipe,
 * slice-by-slice streaming and its speed, bad inputs with their messages and no output left
 * behind) and ISMRMRD v1 files from ismrmrd_generate_cartesian_shepp_logan (dimensions, noise
 * scans, line placement checked against h5py's view of /dataset/data and against the generator's
 * own coil images, the R = 2 line pattern, bad inputs).
 */
#include "mr_io.h"
#include "testutil.h"

#include <complex.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <hdf5.h>
#include <ismrmrd/dataset.h>
#include <ismrmrd/ismrmrd.h>

/* ---------------------------------------------------------------- helpers */

/* Write `code` to a script in the scratch dir and run it with Debian's python3 and `args`. */
static int run_py(const char *name, const char *code, const char *args)
{
    const char *script = mr_test_path(name);
    FILE *fp = fopen(script, "w");
    if (!fp) return -1;
    fputs(code, fp);
    fclose(fp);
    return mr_test_sh("%s %s %s", mr_test_python(), script, args ? args : "");
}

static int contains(const char *hay, const char *needle)
{
    int ok = strstr(hay, needle) != NULL;
    if (!ok) fprintf(stderr, "\n  expected '%s' in: %s\n", needle, hay);
    return ok;
}

static int no_partials(void) { return mr_test_count_files(mr_test_tmpdir(), ".partial") == 0; }

/* No HDF5 file or object id may stay open after readers and writers are closed. */
static int no_open_hdf5_ids(void)
{
    ssize_t n = H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL);
    if (n != 0) fprintf(stderr, "\n  %zd HDF5 ids still open\n", n);
    return n == 0;
}

/* Deterministic, exactly representable test values. */
static mr_cfloat kval(size_t s, size_t c, size_t h, size_t w)
{
    return (float)(s * 1000 + c * 100 + h) + I * ((float)w + 0.5f);
}

static void fill_slice(mr_cfloat *out, size_t s, size_t C, size_t H, size_t W)
{
    for (size_t c = 0; c < C; c++)
        for (size_t h = 0; h < H; h++)
            for (size_t w = 0; w < W; w++) out[(c * H + h) * W + w] = kval(s, c, h, w);
}

static mr_ismrmrd_hdr small_hdr(size_t ex, size_t ey)
{
    mr_ismrmrd_hdr h;
    memset(&h, 0, sizeof h);
    h.enc_x = ex;
    h.enc_y = ey;
    h.enc_z = 1;
    h.recon_x = ex / 2;
    h.recon_y = ey;
    h.recon_z = 1;
    h.enc_fov[0] = 2 * 200.0;
    h.enc_fov[1] = 200.0;
    h.enc_fov[2] = 3.0;
    h.recon_fov[0] = 200.0;
    h.recon_fov[1] = 200.0;
    h.recon_fov[2] = 3.0;
    h.has_e1_limits = 1;
    h.e1_min = 0;
    h.e1_max = (long)ey - 1;
    h.e1_center = (long)ey / 2;
    snprintf(h.acquisition, sizeof h.acquisition, "CORPD_FBK");
    snprintf(h.patient_id, sizeof h.patient_id, "p<&>1");
    h.field_strength_t = 3.0;
    h.receiver_channels = 4;
    return h;
}

/* ---------------------------------------------------------------- ISMRMRD XML header */

static const char *FASTMRI_XML =
    "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n"
    "<ismrmrdHeader xmlns=\"http://www.ismrm.org/ISMRMRD\" "
    "xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\">\n"
    "  <subjectInformation><patientID>abc123</patientID></subjectInformation>\n"
    "  <measurementInformation><patientPosition>HFS</patientPosition>"
    "<protocolName>CORPD_FBK</protocolName></measurementInformation>\n"
    "  <acquisitionSystemInformation><systemFieldStrength_T>2.89362</systemFieldStrength_T>"
    "<receiverChannels>15</receiverChannels></acquisitionSystemInformation>\n"
    "  <experimentalConditions><H1resonanceFrequency_Hz>123251815</H1resonanceFrequency_Hz>"
    "</experimentalConditions>\n"
    "  <encoding>\n"
    "    <encodedSpace><matrixSize><x>640</x><y>368</y><z>1</z></matrixSize>"
    "<fieldOfView_mm><x>280</x><y>161</y><z>4.5</z></fieldOfView_mm></encodedSpace>\n"
    "    <reconSpace><matrixSize><x>320</x><y>320</y><z>1</z></matrixSize>"
    "<fieldOfView_mm><x>140</x><y>140</y><z>3</z></fieldOfView_mm></reconSpace>\n"
    "    <trajectory>cartesian</trajectory>\n"
    "    <encodingLimits>\n"
    "      <kspace_encoding_step_1><minimum>0</minimum><maximum>366</maximum>"
    "<center>184</center></kspace_encoding_step_1>\n"
    "      <slice><minimum>0</minimum><maximum>34</maximum><center>17</center></slice>\n"
    "    </encodingLimits>\n"
    "    <parallelImaging><accelerationFactor><kspace_encoding_step_1>1</kspace_encoding_step_1>"
    "<kspace_encoding_step_2>1</kspace_encoding_step_2></accelerationFactor></parallelImaging>\n"
    "  </encoding>\n"
    "  <encoding><encodedSpace><matrixSize><x>9</x><y>9</y><z>1</z></matrixSize>"
    "</encodedSpace></encoding>\n"
    "</ismrmrdHeader>\n";

static void test_hdr_parse_fastmri(void)
{
    mr_ismrmrd_hdr h;
    long l, r;
    CU_ASSERT_FATAL(mr_ismrmrd_hdr_parse(&h, FASTMRI_XML, strlen(FASTMRI_XML), "x.h5") == MR_OK);
    CU_ASSERT_EQUAL(h.enc_x, 640);
    CU_ASSERT_EQUAL(h.enc_y, 368);
    CU_ASSERT_EQUAL(h.enc_z, 1);
    CU_ASSERT_EQUAL(h.recon_x, 320);
    CU_ASSERT_EQUAL(h.recon_y, 320);
    CU_ASSERT_DOUBLE_EQUAL(h.enc_fov[2], 4.5, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(h.recon_fov[0], 140, 1e-12);
    CU_ASSERT(h.has_e1_limits && h.e1_min == 0 && h.e1_max == 366 && h.e1_center == 184);
    CU_ASSERT(h.has_slice_limits && h.slice_max == 34 && h.slice_center == 17);
    CU_ASSERT(h.has_e1_accel && h.e1_accel == 1);
    CU_ASSERT_STRING_EQUAL(h.acquisition, "CORPD_FBK");
    CU_ASSERT_STRING_EQUAL(h.patient_id, "abc123");
    CU_ASSERT_DOUBLE_EQUAL(h.field_strength_t, 2.89362, 1e-12);
    CU_ASSERT_EQUAL(h.receiver_channels, 15);
    /* fastMRI: padding_left = 368/2 - 184 = 0, padding_right = 0 + 366 + 1 */
    mr_ismrmrd_hdr_padding(&l, &r, &h, 368);
    CU_ASSERT_EQUAL(l, 0);
    CU_ASSERT_EQUAL(r, 367);
    /* an asymmetric acquisition: centre 168 of maximum 332 */
    h.e1_center = 168;
    h.e1_max = 332;
    mr_ismrmrd_hdr_padding(&l, &r, &h, 368);
    CU_ASSERT_EQUAL(l, 16);
    CU_ASSERT_EQUAL(r, 349);
    /* no limits: the whole width */
    h.has_e1_limits = 0;
    mr_ismrmrd_hdr_padding(&l, &r, &h, 368);
    CU_ASSERT(l == 0 && r == 368);
    /* trailing NULs from a fixed-length HDF5 string are tolerated */
    {
        size_t n = strlen(FASTMRI_XML);
        char *buf = calloc(1, n + 8);
        memcpy(buf, FASTMRI_XML, n);
        CU_ASSERT(mr_ismrmrd_hdr_parse(&h, buf, n + 8, "x.h5") == MR_OK);
        CU_ASSERT_EQUAL(h.enc_y, 368);
        free(buf);
    }
}

static void test_hdr_no_namespace(void)
{
    const char *xml = "<ismrmrdHeader><encoding><encodedSpace><matrixSize><x> 64 </x><y>32</y>"
                      "</matrixSize></encodedSpace><encodingLimits><kspace_encoding_step_1>"
                      "<maximum>31</maximum><center>16</center></kspace_encoding_step_1>"
                      "</encodingLimits></encoding></ismrmrdHeader>";
    mr_ismrmrd_hdr h;
    CU_ASSERT_FATAL(mr_ismrmrd_hdr_parse(&h, xml, strlen(xml), "n.h5") == MR_OK);
    CU_ASSERT(h.enc_x == 64 && h.enc_y == 32 && h.enc_z == 0);
    CU_ASSERT(h.recon_x == 0 && h.recon_y == 0);
    CU_ASSERT(h.has_e1_limits && h.e1_min == 0 && h.e1_max == 31 && h.e1_center == 16);
    CU_ASSERT(!h.has_slice_limits && !h.has_e1_accel);
    CU_ASSERT_STRING_EQUAL(h.acquisition, "");
}

static void test_hdr_format_valid(void)
{
    mr_ismrmrd_hdr h = small_hdr(640, 368), back;
    char *xml = NULL;
    const char *path = mr_test_path("formatted.xml");
    FILE *fp;
    h.has_slice_limits = 1;
    h.slice_max = 34;
    h.slice_center = 17;
    h.has_e1_accel = 1;
    h.e1_accel = 4;
    CU_ASSERT_FATAL(mr_ismrmrd_hdr_format(&xml, &h) == MR_OK);
    CU_ASSERT_FATAL(mr_ismrmrd_hdr_parse(&back, xml, strlen(xml), "formatted") == MR_OK);
    CU_ASSERT(back.enc_x == 640 && back.enc_y == 368 && back.enc_z == 1);
    CU_ASSERT(back.recon_x == 320 && back.recon_y == 368);
    CU_ASSERT(back.has_e1_limits && back.e1_max == 367 && back.e1_center == 184);
    CU_ASSERT(back.has_slice_limits && back.slice_max == 34);
    CU_ASSERT(back.has_e1_accel && back.e1_accel == 4);
    CU_ASSERT_STRING_EQUAL(back.acquisition, "CORPD_FBK");
    CU_ASSERT_STRING_EQUAL(back.patient_id, "p<&>1");
    CU_ASSERT_DOUBLE_EQUAL(back.field_strength_t, 3.0, 1e-12);
    CU_ASSERT_EQUAL(back.receiver_channels, 4);
    CU_ASSERT_DOUBLE_EQUAL(back.enc_fov[0], 400.0, 1e-9);
    fp = fopen(path, "w");
    CU_ASSERT_FATAL(fp != NULL);
    fputs(xml, fp);
    fclose(fp);
    /* the ISMRMRD schema itself, and libismrmrd's C++ parser */
    CU_ASSERT_EQUAL(mr_test_sh("xmllint --noout --schema /usr/share/ismrmrd/schema/ismrmrd.xsd %s",
                               path), 0);
    CU_ASSERT(contains(mr_test_output(), "validates"));
    CU_ASSERT_EQUAL(mr_test_sh("ismrmrd_test_xml %s", path), 0);
    free(xml);

    /* the minimal header: no optional fields */
    memset(&h, 0, sizeof h);
    h.enc_x = 64;
    h.enc_y = 32;
    CU_ASSERT_FATAL(mr_ismrmrd_hdr_format(&xml, &h) == MR_OK);
    CU_ASSERT(strstr(xml, "measurementInformation") == NULL);
    fp = fopen(path, "w");
    fputs(xml, fp);
    fclose(fp);
    CU_ASSERT_EQUAL(mr_test_sh("xmllint --noout --schema /usr/share/ismrmrd/schema/ismrmrd.xsd %s",
                               path), 0);
    CU_ASSERT_EQUAL(mr_test_sh("ismrmrd_test_xml %s", path), 0);
    free(xml);

    /* an impossible header is refused */
    h.enc_x = 0;
    CU_ASSERT(mr_ismrmrd_hdr_format(&xml, &h) == MR_ERR_USAGE);
    CU_ASSERT(xml == NULL);
}

static void test_hdr_bad(void)
{
    mr_ismrmrd_hdr h;
    const char *broken = "<ismrmrdHeader><encoding><encodedSpace>";
    const char *noenc = "<ismrmrdHeader><experimentalConditions/></ismrmrdHeader>";
    const char *nonum = "<ismrmrdHeader><encoding><encodedSpace><matrixSize><x>sixty</x><y>3</y>"
                        "</matrixSize></encodedSpace></encoding></ismrmrdHeader>";
    const char *wrongroot = "<foo/>";
    CU_ASSERT(mr_ismrmrd_hdr_parse(&h, broken, strlen(broken), "b.h5: ismrmrd_header") ==
              MR_ERR_INPUT);
    CU_ASSERT(contains(mr_error_message(), "b.h5: ismrmrd_header"));
    CU_ASSERT(contains(mr_error_message(), "well-formed XML"));
    CU_ASSERT(mr_ismrmrd_hdr_parse(&h, noenc, strlen(noenc), "c.h5") == MR_ERR_INPUT);
    CU_ASSERT(contains(mr_error_message(), "encodedSpace"));
    CU_ASSERT(mr_ismrmrd_hdr_parse(&h, nonum, strlen(nonum), "d.h5") == MR_ERR_INPUT);
    CU_ASSERT(contains(mr_error_message(), "encodedSpace/matrixSize/x"));
    CU_ASSERT(contains(mr_error_message(), "'sixty'"));
    CU_ASSERT(mr_ismrmrd_hdr_parse(&h, wrongroot, strlen(wrongroot), "e.h5") == MR_ERR_INPUT);
    CU_ASSERT(contains(mr_error_message(), "<foo>"));
    CU_ASSERT(mr_ismrmrd_hdr_parse(&h, "", 0, "f.h5") == MR_ERR_INPUT);
}

/* ---------------------------------------------------------------- fastMRI round trips */

/* Write a complete fastMRI file with the writer: kspace from kval, mask w % 3 == 0, header,
 * reference (S, 8, 8) = s + h / 10, attributes. */
static void write_fastmri(const char *path, int multicoil, size_t S, size_t C, size_t H, size_t W)
{
    mr_fastmri_writer *w = NULL;
    mr_cfloat *slice = malloc(C * H * W * sizeof *slice);
    float *mask = malloc(W * sizeof *mask);
    mr_array *ref = NULL;
    size_t rdims[3] = {S, 8, 8};
    mr_ismrmrd_hdr hdr = small_hdr(H, W);
    char *xml = NULL;
    CU_ASSERT_FATAL(mr_fastmri_writer_create(&w, path) == MR_OK);
    CU_ASSERT_FATAL(mr_fastmri_writer_kspace_begin(w, multicoil, S, C, H, W) == MR_OK);
    for (size_t s = S; s-- > 0;) { /* any order */
        fill_slice(slice, s, C, H, W);
        CU_ASSERT(mr_fastmri_writer_kspace_slice(w, s, slice) == MR_OK);
    }
    for (size_t i = 0; i < W; i++) mask[i] = i % 3 == 0 ? 1.0f : 0.0f;
    CU_ASSERT(mr_fastmri_writer_mask(w, mask, W) == MR_OK);
    CU_ASSERT_FATAL(mr_ismrmrd_hdr_format(&xml, &hdr) == MR_OK);
    CU_ASSERT(mr_fastmri_writer_header(w, xml) == MR_OK);
    CU_ASSERT_FATAL(mr_array_create(&ref, MR_FLOAT32, 3, rdims) == MR_OK);
    for (size_t i = 0; i < mr_array_numel(ref); i++)
        mr_array_f32(ref)[i] = (float)(i / 64) + (float)((i / 8) % 8) / 10.0f;
    CU_ASSERT(mr_fastmri_writer_image(w, multicoil ? "reconstruction_rss" : "reconstruction_esc",
                                      ref) == MR_OK);
    CU_ASSERT(mr_fastmri_writer_attr_string(w, "acquisition", "AXT2") == MR_OK);
    CU_ASSERT(mr_fastmri_writer_attr_string(w, "acquisition", "CORPD_FBK") == MR_OK);
    CU_ASSERT(mr_fastmri_writer_attr_string(w, "patient_id", "pid-42") == MR_OK);
    CU_ASSERT(mr_fastmri_writer_attr_double(w, "max", 2.5) == MR_OK);
    CU_ASSERT(mr_fastmri_writer_attr_double(w, "norm", 0.125) == MR_OK);
    CU_ASSERT(mr_fastmri_writer_attr_double(w, "acceleration", 4) == MR_OK);
    CU_ASSERT(mr_fastmri_writer_attr_double(w, "num_low_frequency", 24) == MR_OK);
    CU_ASSERT(!mr_path_is_file(path)); /* nothing under the final name before commit */
    CU_ASSERT(mr_fastmri_writer_commit(w) == MR_OK);
    CU_ASSERT(mr_path_is_file(path));
    CU_ASSERT(no_partials());
    mr_array_destroy(ref);
    free(xml);
    free(mask);
    free(slice);
}

static void check_fastmri(const char *path, int multicoil, size_t S, size_t C, size_t H, size_t W)
{
    mr_fastmri_file *f = NULL;
    const mr_fastmri_info *in;
    mr_cfloat *slice = malloc(C * H * W * sizeof *slice), *want = malloc(C * H * W * sizeof *want);
    float *mask = malloc(W * sizeof *mask);
    mr_array *ref = NULL;
    CU_ASSERT_FATAL(mr_fastmri_open(&f, path) == MR_OK);
    in = mr_fastmri_get_info(f);
    CU_ASSERT(in->has_kspace);
    CU_ASSERT_EQUAL(in->multicoil, multicoil);
    CU_ASSERT(in->slices == S && in->coils == C && in->height == H && in->width == W);
    for (size_t s = 0; s < S; s++) {
        CU_ASSERT_FATAL(mr_fastmri_read_kspace_slice(f, s, slice) == MR_OK);
        fill_slice(want, s, C, H, W);
        CU_ASSERT(memcmp(slice, want, C * H * W * sizeof *slice) == 0);
    }
    CU_ASSERT(mr_fastmri_read_kspace_slice(f, S, slice) != MR_OK);
    CU_ASSERT(in->has_mask && in->mask_len == W);
    CU_ASSERT_FATAL(mr_fastmri_read_mask(f, mask) == MR_OK);
    for (size_t i = 0; i < W; i++) CU_ASSERT_EQUAL(mask[i], i % 3 == 0 ? 1.0f : 0.0f);
    CU_ASSERT(in->has_header && in->header_xml != NULL);
    CU_ASSERT(in->hdr.enc_x == H && in->hdr.enc_y == W && in->hdr.e1_center == (long)W / 2);
    CU_ASSERT_STRING_EQUAL(in->hdr.acquisition, "CORPD_FBK");
    CU_ASSERT_STRING_EQUAL(in->ref_name, multicoil ? "reconstruction_rss" : "reconstruction_esc");
    CU_ASSERT(in->ref_ndim == 3 && in->ref_dims[0] == S && in->ref_dims[1] == 8 &&
              in->ref_dims[2] == 8);
    CU_ASSERT(!in->has_reconstruction);
    CU_ASSERT_STRING_EQUAL(in->acquisition, "CORPD_FBK");
    CU_ASSERT_STRING_EQUAL(in->patient_id, "pid-42");
    CU_ASSERT(in->has_max && in->max == 2.5);
    CU_ASSERT(in->has_norm && in->norm == 0.125);
    CU_ASSERT(in->has_acceleration && in->acceleration == 4);
    CU_ASSERT(in->has_num_low && in->num_low_frequency == 24);
    CU_ASSERT(mr_fastmri_has_dataset(f, in->ref_name));
    CU_ASSERT(!mr_fastmri_has_dataset(f, "nope"));
    CU_ASSERT_FATAL(mr_fastmri_read_image(f, in->ref_name, &ref) == MR_OK);
    CU_ASSERT(ref->ndim == 3 && ref->dims[0] == S && ref->dims[2] == 8);
    for (size_t i = 0; i < mr_array_numel(ref); i++)
        CU_ASSERT_EQUAL(mr_array_f32(ref)[i], (float)(i / 64) + (float)((i / 8) % 8) / 10.0f);
    mr_array_destroy(ref);
    CU_ASSERT(mr_fastmri_read_image(f, "nope", &ref) == MR_ERR_INPUT);
    CU_ASSERT(contains(mr_error_message(), "'nope'"));
    mr_fastmri_close(f);
    free(mask);
    free(slice);
    free(want);
}

static void test_fastmri_roundtrip_multicoil(void)
{
    const char *p = mr_test_path("rt_multi.h5");
    write_fastmri(p, 1, 3, 4, 16, 12);
    check_fastmri(p, 1, 3, 4, 16, 12);
    CU_ASSERT(no_open_hdf5_ids());
}

static void test_fastmri_roundtrip_singlecoil(void)
{
    const char *p = mr_test_path("rt_single.h5");
    write_fastmri(p, 0, 5, 1, 10, 6);
    check_fastmri(p, 0, 5, 1, 10, 6);
    CU_ASSERT(no_open_hdf5_ids());
}

/* ---------------------------------------------------------------- h5py interoperability */

static const char *PY_READ_OURS =
    "import sys, h5py, numpy as np\n"
    "import xml.etree.ElementTree as ET\n"
    "f = h5py.File(sys.argv[1], 'r')\n"
    "S, C, H, W = 3, 4, 16, 12\n"
    "k = f['kspace']\n"
    "assert k.dtype == np.complex64, k.dtype\n"
    "assert k.shape == (S, C, H, W), k.shape\n"
    "assert k.chunks == (1, C, H, W), k.chunks\n"
    "s, c, h, w = np.meshgrid(*[np.arange(n) for n in (S, C, H, W)], indexing='ij')\n"
    "want = (s * 1000 + c * 100 + h + 1j * (w + 0.5)).astype(np.complex64)\n"
    "assert np.array_equal(k[()], want)\n"
    "m = f['mask']\n"
    "assert m.dtype == np.bool_, m.dtype\n"
    "assert np.array_equal(m[()], np.arange(W) % 3 == 0)\n"
    "r = f['reconstruction_rss']\n"
    "assert r.dtype == np.float32 and r.shape == (S, 8, 8)\n"
    "hd = f['ismrmrd_header'][()]\n"
    "assert isinstance(hd, bytes), type(hd)\n"
    "root = ET.fromstring(hd)\n"
    "ns = {'i': 'http://www.ismrm.org/ISMRMRD'}\n"
    "assert root.find('i:encoding/i:encodedSpace/i:matrixSize/i:x', ns).text == '16'\n"
    "assert root.find('i:encoding/i:reconSpace/i:matrixSize/i:x', ns).text == '8'\n"
    "assert root.find('i:encoding/i:encodingLimits/i:kspace_encoding_step_1/i:center',"
    " ns).text == '6'\n"
    "a = f.attrs['acquisition']\n"
    "a = a.decode() if isinstance(a, bytes) else a\n"
    "assert a == 'CORPD_FBK', a\n"
    "assert f.attrs['max'] == 2.5 and f.attrs['norm'] == 0.125\n"
    "assert f.attrs['acceleration'] == 4 and f.attrs['num_low_frequency'] == 24\n"
    "print('h5py OK', k.dtype, k.shape, m.dtype)\n";

static void test_fastmri_h5py_reads_ours(void)
{
    const char *p = mr_test_path("for_h5py.h5");
    char args[4200];
    write_fastmri(p, 1, 3, 4, 16, 12);
    snprintf(args, sizeof args, "%s", p);
    CU_ASSERT_EQUAL(run_py("read_ours.py", PY_READ_OURS, args), 0);
    CU_ASSERT(contains(mr_test_output(), "h5py OK complex64 (3, 4, 16, 12) bool"));
}

static const char *PY_WRITE_FASTMRI =
    "import sys, h5py, numpy as np\n"
    "xml = open(sys.argv[1], 'rb').read()\n"
    "def kspace(shape, dtype):\n"
    "    g = np.meshgrid(*[np.arange(n) for n in shape], indexing='ij')\n"
    "    if len(shape) == 4:\n"
    "        s, c, h, w = g\n"
    "    else:\n"
    "        s, h, w = g; c = 0\n"
    "    return (s * 1000 + c * 100 + h + 1j * (w + 0.5)).astype(dtype)\n"
    "with h5py.File(sys.argv[2], 'w') as f:\n"
    "    f['kspace'] = kspace((2, 3, 5, 4), np.complex64)\n"
    "    f['ismrmrd_header'] = xml.decode()\n" /* variable-length string */
    "    f['mask'] = np.array([True, False, False, True])\n"
    "    f['reconstruction_rss'] = np.ones((2, 3, 3), np.float32)\n"
    "    f.attrs['acquisition'] = 'CORPD_FBK'\n"
    "    f.attrs['max'] = 3.25\n"
    "    f.attrs['norm'] = np.float32(1.5)\n"
    "    f.attrs['patient_id'] = np.bytes_(b'fixed-id')\n"
    "    f.attrs['acceleration'] = 8\n"
    "    f.attrs['num_low_frequency'] = np.int32(13)\n"
    "with h5py.File(sys.argv[3], 'w') as f:\n"
    "    f['kspace'] = kspace((3, 5, 4), np.complex128)\n"
    "    f.create_dataset('ismrmrd_header', data=np.bytes_(xml))\n" /* fixed-length string */
    "    f['reconstruction_esc'] = np.zeros((3, 4, 4), np.float64)\n"
    "    f.attrs['acquisition'] = np.bytes_(b'CORPDFS_FBK')\n"
    "    print(f['ismrmrd_header'].dtype, f['kspace'].dtype)\n";

static void test_fastmri_reads_h5py(void)
{
    const char *xp = mr_test_path("py_hdr.xml"), *a = mr_test_path("py_multi.h5"),
               *b = mr_test_path("py_single.h5");
    char args[13000], *xml = NULL;
    mr_ismrmrd_hdr hdr = small_hdr(5, 4);
    mr_fastmri_file *f = NULL;
    const mr_fastmri_info *in;
    mr_cfloat buf[3 * 5 * 4], want[3 * 5 * 4];
    float mask[4];
    mr_array *img = NULL;
    FILE *fp;
    CU_ASSERT_FATAL(mr_ismrmrd_hdr_format(&xml, &hdr) == MR_OK);
    fp = fopen(xp, "w");
    fputs(xml, fp);
    fclose(fp);
    snprintf(args, sizeof args, "%s %s %s", xp, a, b);
    CU_ASSERT_FATAL(run_py("write_fastmri.py", PY_WRITE_FASTMRI, args) == 0);
    CU_ASSERT(contains(mr_test_output(), "|S"));

    /* multi-coil complex64, variable-length header */
    CU_ASSERT_FATAL(mr_fastmri_open(&f, a) == MR_OK);
    in = mr_fastmri_get_info(f);
    CU_ASSERT(in->multicoil && in->slices == 2 && in->coils == 3 && in->height == 5 &&
              in->width == 4);
    for (size_t s = 0; s < 2; s++) {
        CU_ASSERT_FATAL(mr_fastmri_read_kspace_slice(f, s, buf) == MR_OK);
        fill_slice(want, s, 3, 5, 4);
        CU_ASSERT(memcmp(buf, want, 3 * 5 * 4 * sizeof *buf) == 0);
    }
    CU_ASSERT(in->has_header && strcmp(in->header_xml, xml) == 0);
    CU_ASSERT(in->hdr.enc_x == 5 && in->hdr.enc_y == 4);
    CU_ASSERT_FATAL(mr_fastmri_read_mask(f, mask) == MR_OK);
    CU_ASSERT(mask[0] == 1 && mask[1] == 0 && mask[2] == 0 && mask[3] == 1);
    CU_ASSERT_STRING_EQUAL(in->acquisition, "CORPD_FBK");
    CU_ASSERT_STRING_EQUAL(in->patient_id, "fixed-id");
    CU_ASSERT(in->has_max && in->max == 3.25 && in->has_norm && in->norm == 1.5);
    CU_ASSERT(in->has_acceleration && in->acceleration == 8);
    CU_ASSERT(in->has_num_low && in->num_low_frequency == 13);
    CU_ASSERT_STRING_EQUAL(in->ref_name, "reconstruction_rss");
    mr_fastmri_close(f);

    /* single-coil complex128 (converted), fixed-length header */
    CU_ASSERT_FATAL(mr_fastmri_open(&f, b) == MR_OK);
    in = mr_fastmri_get_info(f);
    CU_ASSERT(!in->multicoil && in->slices == 3 && in->coils == 1 && in->height == 5 &&
              in->width == 4);
    for (size_t s = 0; s < 3; s++) {
        CU_ASSERT_FATAL(mr_fastmri_read_kspace_slice(f, s, buf) == MR_OK);
        fill_slice(want, s, 1, 5, 4);
        CU_ASSERT(memcmp(buf, want, 5 * 4 * sizeof *buf) == 0);
    }
    CU_ASSERT(in->has_header && strcmp(in->header_xml, xml) == 0);
    CU_ASSERT(!in->has_mask && !in->has_max);
    CU_ASSERT_STRING_EQUAL(in->acquisition, "CORPDFS_FBK");
    CU_ASSERT_STRING_EQUAL(in->ref_name, "reconstruction_esc");
    CU_ASSERT_FATAL(mr_fastmri_read_image(f, "reconstruction_esc", &img) == MR_OK);
    CU_ASSERT(img->dtype == MR_FLOAT32 && img->ndim == 3 && img->dims[1] == 4);
    mr_array_destroy(img);
    mr_fastmri_close(f);
    free(xml);
    CU_ASSERT(no_open_hdf5_ids());
}

/* ---------------------------------------------------------------- streaming */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Read slice `s` (all 1 + 2i) of a 15x640x368 file and compare the time with fread of the whole
 * file (warm page cache for both; best of 3). */
static void check_slice_speed(const char *path, size_t s, mr_cfloat *slice)
{
    mr_fastmri_file *f = NULL;
    const size_t n = (size_t)15 * 640 * 368;
    double t_h5 = 1e9, t_raw = 1e9;
    int good = 1;
    char *raw;
    FILE *fp;
    long size;
    CU_ASSERT_FATAL(mr_fastmri_open(&f, path) == MR_OK);
    for (int r = 0; r < 3; r++) {
        double t0 = now_s();
        CU_ASSERT(mr_fastmri_read_kspace_slice(f, s, slice) == MR_OK);
        if (now_s() - t0 < t_h5) t_h5 = now_s() - t0;
    }
    mr_fastmri_close(f);
    for (size_t i = 0; i < n; i++) good &= slice[i] == 1 + 2 * I;
    CU_ASSERT(good);
    fp = fopen(path, "rb");
    CU_ASSERT_FATAL(fp != NULL);
    fseek(fp, 0, SEEK_END);
    size = ftell(fp);
    raw = malloc((size_t)size);
    for (int r = 0; r < 3; r++) {
        double t0 = now_s();
        rewind(fp);
        CU_ASSERT(fread(raw, 1, (size_t)size, fp) == (size_t)size);
        if (now_s() - t0 < t_raw) t_raw = now_s() - t0;
    }
    fclose(fp);
    free(raw);
    /* per byte: the slice is n * 8 bytes of a `size`-byte file */
    t_raw *= (double)(n * 8) / (double)size;
    /* Reported, not asserted: speed is shown by bench/ (zf_vs_bart.sh), never by a timed test
     * (a sanitizer build or a busy machine would fail it for no fault of the code). */
    fprintf(stderr, "\n  %s: 15x640x368 slice in %.1f ms (%.0f MB/s; fread %.1f ms) ", path,
            1e3 * t_h5, (double)n * 8 / 1e6 / t_h5, 1e3 * t_raw);
}

static void test_fastmri_streaming(void)
{
    const char *p = mr_test_path("stream35.h5"), *big = mr_test_path("big_slice.h5"),
               *big_ours = mr_test_path("big_slice_ours.h5");
    const size_t S = 35, C = 15, H = 20, W = 12;
    mr_fastmri_file *f = NULL;
    mr_cfloat *slice = malloc(C * H * W * sizeof *slice), *want = malloc(C * H * W * sizeof *want);
    mr_fastmri_writer *w = NULL;
    size_t ok = 0;
    /* 35 slices, read one at a time into a single-slice buffer */
    CU_ASSERT_FATAL(mr_fastmri_writer_create(&w, p) == MR_OK);
    CU_ASSERT_FATAL(mr_fastmri_writer_kspace_begin(w, 1, S, C, H, W) == MR_OK);
    for (size_t s = 0; s < S; s++) {
        fill_slice(slice, s, C, H, W);
        CU_ASSERT(mr_fastmri_writer_kspace_slice(w, s, slice) == MR_OK);
    }
    CU_ASSERT_FATAL(mr_fastmri_writer_commit(w) == MR_OK);
    CU_ASSERT_FATAL(mr_fastmri_open(&f, p) == MR_OK);
    CU_ASSERT(mr_fastmri_get_info(f)->slices == 35);
    CU_ASSERT(!mr_fastmri_get_info(f)->has_header && !mr_fastmri_get_info(f)->has_mask);
    for (size_t s = 0; s < S; s++) {
        CU_ASSERT(mr_fastmri_read_kspace_slice(f, s, slice) == MR_OK);
        fill_slice(want, s, C, H, W);
        ok += memcmp(slice, want, C * H * W * sizeof *slice) == 0;
    }
    CU_ASSERT_EQUAL(ok, S);
    mr_fastmri_close(f);
    free(slice);
    free(want);

    /* A full-size knee slice (15 x 640 x 368, 28 MB), from a contiguous h5py file like fastMRI's
     * and from mrpipe's chunked writer: reading it must run near the speed of reading the file's
     * bytes with fread (both from the page cache). */
    CU_ASSERT_FATAL(mr_test_sh("%s -c \"import h5py, numpy as np; f = h5py.File('%s', 'w'); "
                               "d = f.create_dataset('kspace', (2, 15, 640, 368), np.complex64); "
                               "d[1] = np.full((15, 640, 368), 1 + 2j, np.complex64)\"",
                               mr_test_python(), big) == 0);
    slice = malloc((size_t)15 * 640 * 368 * sizeof *slice);
    CU_ASSERT_FATAL(slice != NULL);
    check_slice_speed(big, 1, slice);
    CU_ASSERT_FATAL(mr_fastmri_writer_create(&w, big_ours) == MR_OK);
    CU_ASSERT_FATAL(mr_fastmri_writer_kspace_begin(w, 1, 1, 15, 640, 368) == MR_OK);
    CU_ASSERT(mr_fastmri_writer_kspace_slice(w, 0, slice) == MR_OK);
    CU_ASSERT_FATAL(mr_fastmri_writer_commit(w) == MR_OK);
    check_slice_speed(big_ours, 0, slice);
    free(slice);
    unlink(big);
    unlink(big_ours);
    CU_ASSERT(no_open_hdf5_ids());
}

/* ---------------------------------------------------------------- bad fastMRI inputs */

static const char *PY_WRITE_BAD =
    "import sys, h5py, numpy as np\n"
    "d = sys.argv[1]\n"
    "good_xml = open(sys.argv[2], 'rb').read()\n"
    "with h5py.File(d + '/bad_nokspace.h5', 'w') as f:\n"
    "    f['reconstruction_rss'] = np.ones((2, 4, 4), np.float32)\n"
    "with h5py.File(d + '/bad_rank.h5', 'w') as f:\n"
    "    f['kspace'] = np.zeros((4, 5), np.complex64)\n"
    "with h5py.File(d + '/bad_dtype.h5', 'w') as f:\n"
    "    f['kspace'] = np.zeros((2, 4, 5), np.float32)\n"
    "with h5py.File(d + '/bad_nan.h5', 'w') as f:\n"
    "    k = np.ones((3, 2, 4, 5), np.complex64)\n"
    "    k[1, 1, 2, 3] = complex(np.nan, 0)\n"
    "    k[2, 0, 0, 1] = complex(0, np.inf)\n"
    "    f['kspace'] = k\n"
    "with h5py.File(d + '/bad_xml.h5', 'w') as f:\n"
    "    f['kspace'] = np.zeros((1, 4, 5), np.complex64)\n"
    "    f['ismrmrd_header'] = b'<ismrmrdHeader><encoding><encodedSpace>'\n"
    "with h5py.File(d + '/bad_mask.h5', 'w') as f:\n"
    "    f['kspace'] = np.zeros((1, 4, 5), np.complex64)\n"
    "    f['mask'] = np.ones(7, bool)\n"
    "with h5py.File(d + '/good_small.h5', 'w') as f:\n"
    "    f['kspace'] = np.zeros((4, 2, 64, 64), np.complex64)\n"
    "    f['ismrmrd_header'] = good_xml\n"
    "open(d + '/bad_text.h5', 'w').write('this is not HDF5\\n' * 100)\n";

/* What a conversion does with a bad input: the output writer is created first, the input fails
 * to open, the writer is aborted. Nothing may be left under the output name or a temporary. */
static mr_status open_like_convert(const char *in, mr_fastmri_file **f)
{
    const char *out = mr_test_path("converted.h5");
    mr_fastmri_writer *w = NULL;
    mr_status st;
    char keep[2048];
    *f = NULL;
    CU_ASSERT_FATAL(mr_fastmri_writer_create(&w, out) == MR_OK);
    st = mr_fastmri_open(f, in);
    if (st != MR_OK) {
        snprintf(keep, sizeof keep, "%s", mr_error_message());
        mr_fastmri_writer_abort(w);
        CU_ASSERT(!mr_path_is_file(out));
        CU_ASSERT(no_partials());
        mr_error_set(st, "%s", keep);
    } else {
        mr_fastmri_writer_abort(w);
    }
    return st;
}

static void test_fastmri_bad_inputs(void)
{
    char dir[4096], args[8300], path[4200], *xml = NULL;
    mr_fastmri_file *f = NULL;
    mr_cfloat buf[2 * 4 * 5];
    mr_ismrmrd_hdr hdr = small_hdr(64, 64);
    FILE *fp;
    snprintf(dir, sizeof dir, "%s", mr_test_tmpdir());
    CU_ASSERT_FATAL(mr_ismrmrd_hdr_format(&xml, &hdr) == MR_OK);
    fp = fopen(mr_test_path("good.xml"), "w");
    fputs(xml, fp);
    fclose(fp);
    free(xml);
    snprintf(args, sizeof args, "%s %s", dir, mr_test_path("good.xml"));
    CU_ASSERT_FATAL(run_py("write_bad.py", PY_WRITE_BAD, args) == 0);

    /* missing file */
    snprintf(path, sizeof path, "%s/does_not_exist.h5", dir);
    CU_ASSERT(open_like_convert(path, &f) == MR_ERR_INPUT);
    CU_ASSERT(contains(mr_error_message(), "does_not_exist.h5"));
    CU_ASSERT(contains(mr_error_message(), "No such file"));

    /* not HDF5 at all */
    snprintf(path, sizeof path, "%s/bad_text.h5", dir);
    CU_ASSERT(open_like_convert(path, &f) == MR_ERR_INPUT);
    CU_ASSERT(contains(mr_error_message(), "bad_text.h5"));
    CU_ASSERT(contains(mr_error_message(), "no HDF5 signature"));

    /* truncated: a real file cut to half its size */
    snprintf(path, sizeof path, "%s/good_small.h5", dir);
    CU_ASSERT_FATAL(open_like_convert(path, &f) == MR_OK);
    mr_fastmri_close(f);
    CU_ASSERT_FATAL(mr_test_sh("cp %s %s/bad_trunc.h5 && truncate -s $(( $(stat -c %%s %s) / 2 )) "
                               "%s/bad_trunc.h5", path, dir, path, dir) == 0);
    snprintf(path, sizeof path, "%s/bad_trunc.h5", dir);
    CU_ASSERT(open_like_convert(path, &f) == MR_ERR_INPUT);
    CU_ASSERT(contains(mr_error_message(), "bad_trunc.h5"));
    CU_ASSERT(contains(mr_error_message(), "truncated"));
    {
        mr_ismrmrd_data d;
        CU_ASSERT(mr_ismrmrd_read(&d, path, 0) == MR_ERR_INPUT);
        CU_ASSERT(contains(mr_error_message(), "bad_trunc.h5"));
        CU_ASSERT(contains(mr_error_message(), "eof"));
    }

    /* no kspace: opens (image-only file), reading k-space is an error naming the dataset */
    snprintf(path, sizeof path, "%s/bad_nokspace.h5", dir);
    CU_ASSERT_FATAL(open_like_convert(path, &f) == MR_OK);
    CU_ASSERT(!mr_fastmri_get_info(f)->has_kspace);
    CU_ASSERT_STRING_EQUAL(mr_fastmri_get_info(f)->ref_name, "reconstruction_rss");
    CU_ASSERT(mr_fastmri_read_kspace_slice(f, 0, buf) == MR_ERR_INPUT);
    CU_ASSERT(contains(mr_error_message(), "bad_nokspace.h5"));
    CU_ASSERT(contains(mr_error_message(), "'kspace'"));
    mr_fastmri_close(f);

    /* wrong rank */
    snprintf(path, sizeof path, "%s/bad_rank.h5", dir);
    CU_ASSERT(open_like_convert(path, &f) == MR_ERR_INPUT);
    CU_ASSERT(contains(mr_error_message(), "bad_rank.h5"));
    CU_ASSERT(contains(mr_error_message(), "dataset 'kspace'"));
    CU_ASSERT(contains(mr_error_message(), "expected rank 3"));
    CU_ASSERT(contains(mr_error_message(), "found rank 2"));

    /* real-valued k-space */
    snprintf(path, sizeof path, "%s/bad_dtype.h5", dir);
    CU_ASSERT(open_like_convert(path, &f) == MR_ERR_INPUT);
    CU_ASSERT(contains(mr_error_message(), "bad_dtype.h5"));
    CU_ASSERT(contains(mr_error_message(), "dataset 'kspace'"));
    CU_ASSERT(contains(mr_error_message(), "expected complex"));
    CU_ASSERT(contains(mr_error_message(), "found float32"));

    /* NaN and Inf: slice 0 reads, slices 1 and 2 name the first bad element */
    snprintf(path, sizeof path, "%s/bad_nan.h5", dir);
    CU_ASSERT_FATAL(open_like_convert(path, &f) == MR_OK);
    CU_ASSERT(mr_fastmri_read_kspace_slice(f, 0, buf) == MR_OK);
    CU_ASSERT(mr_fastmri_read_kspace_slice(f, 1, buf) == MR_ERR_INPUT);
    CU_ASSERT(contains(mr_error_message(), "bad_nan.h5"));
    CU_ASSERT(contains(mr_error_message(), "dataset 'kspace', slice 1"));
    CU_ASSERT(contains(mr_error_message(), "NaN at index (coil 1, row 2, col 3)"));
    CU_ASSERT(mr_fastmri_read_kspace_slice(f, 2, buf) == MR_ERR_INPUT);
    CU_ASSERT(contains(mr_error_message(), "slice 2"));
    CU_ASSERT(contains(mr_error_message(), "Inf at index (coil 0, row 0, col 1) (imaginary"));
    mr_fastmri_close(f);

    /* malformed header XML */
    snprintf(path, sizeof path, "%s/bad_xml.h5", dir);
    CU_ASSERT(open_like_convert(path, &f) == MR_ERR_INPUT);
    CU_ASSERT(contains(mr_error_message(), "bad_xml.h5"));
    CU_ASSERT(contains(mr_error_message(), "ismrmrd_header"));
    CU_ASSERT(contains(mr_error_message(), "XML"));

    /* a mask that does not match the k-space width */
    snprintf(path, sizeof path, "%s/bad_mask.h5", dir);
    CU_ASSERT(open_like_convert(path, &f) == MR_ERR_INPUT);
    CU_ASSERT(contains(mr_error_message(), "dataset 'mask'"));
    CU_ASSERT(contains(mr_error_message(), "expected 5 values"));
    CU_ASSERT(contains(mr_error_message(), "found 7"));
    CU_ASSERT(no_open_hdf5_ids());
}

static void test_fastmri_writer_errors(void)
{
    const char *out = mr_test_path("writer_err.h5");
    mr_fastmri_writer *w = NULL;
    mr_cfloat slice[2 * 3 * 4] = {0};
    mr_array *c = NULL;
    size_t dims[2] = {2, 2};
    char missing_dir[4200];
    CU_ASSERT_FATAL(mr_fastmri_writer_create(&w, out) == MR_OK);
    CU_ASSERT(mr_fastmri_writer_kspace_slice(w, 0, slice) == MR_ERR_USAGE); /* before begin */
    CU_ASSERT(mr_fastmri_writer_kspace_begin(w, 0, 2, 3, 3, 4) == MR_ERR_USAGE);
    CU_ASSERT(contains(mr_error_message(), "single-coil"));
    CU_ASSERT_FATAL(mr_fastmri_writer_kspace_begin(w, 1, 2, 2, 3, 4) == MR_OK);
    CU_ASSERT(mr_fastmri_writer_kspace_slice(w, 2, slice) == MR_ERR_USAGE);
    CU_ASSERT(contains(mr_error_message(), "writer_err.h5"));
    CU_ASSERT(contains(mr_error_message(), "slice 2 out of range"));
    CU_ASSERT_FATAL(mr_array_create(&c, MR_COMPLEX64, 2, dims) == MR_OK);
    CU_ASSERT(mr_fastmri_writer_image(w, "reconstruction", c) == MR_ERR_USAGE);
    CU_ASSERT(contains(mr_error_message(), "expected a float32 array"));
    mr_array_destroy(c);
    CU_ASSERT(mr_test_count_files(mr_test_tmpdir(), ".partial") == 1);
    mr_fastmri_writer_abort(w);
    CU_ASSERT(!mr_path_is_file(out));
    CU_ASSERT(no_partials());
    mr_fastmri_writer_abort(NULL);
    /* an output directory that does not exist */
    snprintf(missing_dir, sizeof missing_dir, "%s/no/such/dir/x.h5", mr_test_tmpdir());
    CU_ASSERT(mr_fastmri_writer_create(&w, missing_dir) == MR_ERR_IO);
    CU_ASSERT(contains(mr_error_message(), "does not exist"));
    /* a committed empty file is still valid HDF5 that opens as image-only */
    CU_ASSERT_FATAL(mr_fastmri_writer_create(&w, out) == MR_OK);
    CU_ASSERT(mr_fastmri_writer_commit(w) == MR_OK);
    {
        mr_fastmri_file *f = NULL;
        CU_ASSERT_FATAL(mr_fastmri_open(&f, out) == MR_OK);
        CU_ASSERT(!mr_fastmri_get_info(f)->has_kspace);
        mr_fastmri_close(f);
    }
    CU_ASSERT(no_partials());
    CU_ASSERT(no_open_hdf5_ids());
}

/* ---------------------------------------------------------------- ISMRMRD */

static int generate(const char *name, const char *opts)
{
    return mr_test_sh("cd %s && ismrmrd_generate_cartesian_shepp_logan %s -o %s", mr_test_tmpdir(),
                      opts, name);
}

static void test_ismrmrd_dims_noise(void)
{
    const char *p = mr_test_path("sl_noise.h5");
    mr_ismrmrd_data d;
    CU_ASSERT_FATAL(generate("sl_noise.h5", "-m 32 -c 4 -C -a 2") == 0);
    CU_ASSERT_FATAL(mr_ismrmrd_read(&d, p, 1) == MR_OK);
    CU_ASSERT_FATAL(d.kspace != NULL);
    CU_ASSERT(d.kspace->ndim == 4 && d.kspace->dtype == MR_COMPLEX64);
    CU_ASSERT(d.kspace->dims[0] == 1 && d.kspace->dims[1] == 4 && d.kspace->dims[2] == 64 &&
              d.kspace->dims[3] == 32);
    CU_ASSERT(d.hdr.enc_x == 64 && d.hdr.enc_y == 32 && d.hdr.recon_x == 32);
    CU_ASSERT(d.hdr.has_e1_accel && d.hdr.e1_accel == 2);
    CU_ASSERT(d.xml != NULL && strstr(d.xml, "ismrmrdHeader") != NULL);
    CU_ASSERT_EQUAL(d.n_noise, 1);
    CU_ASSERT_EQUAL(d.n_acquisitions, 32); /* two interleaved repetitions of 16 lines */
    CU_ASSERT_FATAL(d.noise != NULL);
    CU_ASSERT(d.noise->ndim == 2 && d.noise->dims[0] == 64 && d.noise->dims[1] == 4);
    {
        /* noise of level 0.05: non-zero and about that size */
        double e = 0;
        for (size_t i = 0; i < mr_array_numel(d.noise); i++)
            e += pow(cabsf(mr_array_c64(d.noise)[i]), 2);
        e = sqrt(e / (double)mr_array_numel(d.noise));
        CU_ASSERT(e > 0.01 && e < 0.5);
    }
    mr_ismrmrd_data_free(&d);
    CU_ASSERT(d.kspace == NULL && d.noise == NULL && d.xml == NULL);

    CU_ASSERT_FATAL(mr_ismrmrd_read(&d, p, 0) == MR_OK);
    CU_ASSERT(d.noise == NULL);
    CU_ASSERT_EQUAL(d.n_noise, 1);
    CU_ASSERT(d.kspace->dims[1] == 4);
    mr_ismrmrd_data_free(&d);
    mr_ismrmrd_data_free(&d); /* twice is harmless */
    CU_ASSERT(no_open_hdf5_ids());
}

/* h5py assembles the same k-space from /dataset/data (placing by idx, averaging repeats) and
 * writes it as a fastMRI file; both must agree. */
static const char *PY_ASSEMBLE =
    "import sys, h5py, numpy as np\n"
    "f = h5py.File(sys.argv[1], 'r')\n"
    "acq = f['dataset/data'][()]\n"
    "img = [a for a in acq if not (int(a['head']['flags']) >> 18) & 1]\n"
    "C = int(img[0]['head']['active_channels']); H = int(img[0]['head']['number_of_samples'])\n"
    "W = int(sys.argv[3]); S = 1 + max(int(a['head']['idx']['slice']) for a in img)\n"
    "k = np.zeros((S, C, H, W), np.complex128); n = np.zeros((S, W))\n"
    "for a in img:\n"
    "    h = a['head']; s = int(h['idx']['slice']); y = int(h['idx']['kspace_encode_step_1'])\n"
    "    k[s, :, :, y] += a['data'].view(np.complex64).reshape(C, H); n[s, y] += 1\n"
    "k /= np.maximum(n, 1)[:, None, None, :]\n"
    "with h5py.File(sys.argv[2], 'w') as o:\n"
    "    o['kspace'] = k.astype(np.complex64)\n"
    "print('assembled', k.shape, int(n.sum()))\n";

static void compare_with_python(const char *name, const char *opts, size_t W)
{
    const char *p = mr_test_path(name);
    char ref[4200], args[9000];
    mr_ismrmrd_data d;
    mr_fastmri_file *f = NULL;
    double worst = 0, scale = 0;
    snprintf(ref, sizeof ref, "%s.ref.h5", p);
    CU_ASSERT_FATAL(generate(name, opts) == 0);
    snprintf(args, sizeof args, "%s %s %zu", p, ref, W);
    CU_ASSERT_FATAL(run_py("assemble.py", PY_ASSEMBLE, args) == 0);
    CU_ASSERT_FATAL(mr_ismrmrd_read(&d, p, 0) == MR_OK);
    CU_ASSERT_FATAL(mr_fastmri_open(&f, ref) == MR_OK);
    {
        const mr_fastmri_info *in = mr_fastmri_get_info(f);
        size_t n = in->coils * in->height * in->width;
        mr_cfloat *buf = malloc(n * sizeof *buf);
        CU_ASSERT(in->slices == d.kspace->dims[0] && in->coils == d.kspace->dims[1] &&
                  in->height == d.kspace->dims[2] && in->width == d.kspace->dims[3]);
        for (size_t s = 0; s < in->slices; s++) {
            const mr_cfloat *ours = mr_array_c64(d.kspace) + s * n;
            CU_ASSERT_FATAL(mr_fastmri_read_kspace_slice(f, s, buf) == MR_OK);
            for (size_t i = 0; i < n; i++) {
                double e = cabsf(buf[i] - ours[i]);
                if (e > worst) worst = e;
                if (cabsf(buf[i]) > scale) scale = cabsf(buf[i]);
            }
        }
        free(buf);
    }
    CU_ASSERT(scale > 0);
    CU_ASSERT(worst <= 1e-6 * scale);
    mr_fastmri_close(f);
    mr_ismrmrd_data_free(&d);
}

static void test_ismrmrd_vs_h5py(void)
{
    compare_with_python("sl_a2.h5", "-m 32 -c 4 -a 2 -C", 32);
    compare_with_python("sl_r3.h5", "-m 24 -c 2 -r 3", 24); /* 3 repetitions averaged */
    CU_ASSERT(no_open_hdf5_ids());
}

/* Centred inverse DFT magnitude of one (H, W) coil image, by direct summation in double. */
static void centred_idft_mag(double *out, const mr_cfloat *k, size_t H, size_t W)
{
    double complex *tmp = calloc(H * W, sizeof *tmp);
    for (size_t x = 0; x < H; x++) /* along H */
        for (size_t v = 0; v < W; v++) {
            double complex acc = 0;
            for (size_t u = 0; u < H; u++)
                acc += k[u * W + v] *
                       cexp(2 * M_PI * I * ((double)u - H / 2) * ((double)x - H / 2) / (double)H);
            tmp[x * W + v] = acc;
        }
    for (size_t x = 0; x < H; x++)
        for (size_t y = 0; y < W; y++) {
            double complex acc = 0;
            for (size_t v = 0; v < W; v++)
                acc += tmp[x * W + v] *
                       cexp(2 * M_PI * I * ((double)v - W / 2) * ((double)y - W / 2) / (double)W);
            out[x * W + y] = cabs(acc);
        }
    free(tmp);
}

/* The generator stores its coil images (reps, C, y, x): the inverse DFT of our k-space must give
 * them back (magnitude, up to scale), which only happens when every line sits where it belongs. */
static void test_ismrmrd_image(void)
{
    const char *p = mr_test_path("sl_clean.h5");
    const char *ci = mr_test_path("sl_clean_coils.f32");
    mr_ismrmrd_data d;
    size_t H, W, C;
    float *ref;
    double *mag;
    FILE *fp;
    CU_ASSERT_FATAL(generate("sl_clean.h5", "-m 32 -c 3 -n 0 -a 2") == 0);
    CU_ASSERT_FATAL(mr_test_sh("%s -c \"import h5py, numpy as np; c = h5py.File('%s', 'r')"
                               "['dataset/coil_images'][0]; "
                               "np.abs(c['real'] + 1j * c['imag']).astype(np.float32)"
                               ".tofile('%s')\"",
                               mr_test_python(), p, ci) == 0);
    CU_ASSERT_FATAL(mr_ismrmrd_read(&d, p, 0) == MR_OK);
    C = d.kspace->dims[1];
    H = d.kspace->dims[2];
    W = d.kspace->dims[3];
    ref = malloc(C * H * W * sizeof *ref);
    mag = malloc(H * W * sizeof *mag);
    fp = fopen(ci, "rb");
    CU_ASSERT_FATAL(fp && fread(ref, sizeof *ref, C * H * W, fp) == C * H * W);
    fclose(fp);
    for (size_t c = 0; c < C; c++) {
        double ab = 0, aa = 0, bb = 0;
        centred_idft_mag(mag, mr_array_c64(d.kspace) + c * H * W, H, W);
        for (size_t x = 0; x < H; x++)
            for (size_t y = 0; y < W; y++) {
                double a = mag[x * W + y], b = ref[(c * W + y) * H + x]; /* ref is (y, x) */
                ab += a * b;
                aa += a * a;
                bb += b * b;
            }
        CU_ASSERT(ab / sqrt(aa * bb) > 0.9999);
    }
    free(ref);
    free(mag);
    mr_ismrmrd_data_free(&d);
}

/* Copy the acquisitions of `src` into a new ISMRMRD file, keeping those `keep` accepts and letting
 * `edit` change them; header from `xml` (or the source's). */
typedef int (*acq_filter)(ISMRMRD_Acquisition *acq, uint32_t index);

static void copy_ismrmrd(const char *dst, const char *src, const char *xml, acq_filter keep)
{
    ISMRMRD_Dataset in, out;
    ISMRMRD_Acquisition acq;
    char *hdr;
    uint32_t n;
    unlink(dst);
    CU_ASSERT_FATAL(ismrmrd_init_dataset(&in, src, "/dataset") == ISMRMRD_NOERROR);
    CU_ASSERT_FATAL(ismrmrd_open_dataset(&in, false) == ISMRMRD_NOERROR);
    CU_ASSERT_FATAL(ismrmrd_init_dataset(&out, dst, "/dataset") == ISMRMRD_NOERROR);
    CU_ASSERT_FATAL(ismrmrd_open_dataset(&out, true) == ISMRMRD_NOERROR);
    hdr = ismrmrd_read_header(&in);
    CU_ASSERT_FATAL(hdr != NULL);
    CU_ASSERT(ismrmrd_write_header(&out, xml ? xml : hdr) == ISMRMRD_NOERROR);
    free(hdr);
    n = ismrmrd_get_number_of_acquisitions(&in);
    ismrmrd_init_acquisition(&acq);
    for (uint32_t i = 0; i < n; i++) {
        CU_ASSERT_FATAL(ismrmrd_read_acquisition(&in, i, &acq) == ISMRMRD_NOERROR);
        if (!keep || keep(&acq, i)) CU_ASSERT(ismrmrd_append_acquisition(&out, &acq) == 0);
    }
    ismrmrd_cleanup_acquisition(&acq);
    ismrmrd_close_dataset(&in);
    ismrmrd_close_dataset(&out);
}

static int keep_rep0(ISMRMRD_Acquisition *acq, uint32_t i)
{
    (void)i;
    return acq->head.idx.repetition == 0;
}

static void test_ismrmrd_accel_pattern(void)
{
    const char *src = mr_test_path("sl_pat.h5"), *dst = mr_test_path("sl_pat_even.h5");
    mr_ismrmrd_data d;
    size_t C, H, W, nonzero_even = 0, nonzero_odd = 0;
    CU_ASSERT_FATAL(generate("sl_pat.h5", "-m 32 -c 2 -a 2") == 0);
    /* The generator interleaves R repetitions: with both, every line is sampled once. */
    CU_ASSERT_FATAL(mr_ismrmrd_read(&d, src, 0) == MR_OK);
    C = d.kspace->dims[1];
    H = d.kspace->dims[2];
    W = d.kspace->dims[3];
    for (size_t y = 0; y < W; y++) {
        int any = 0;
        for (size_t c = 0; c < C; c++)
            for (size_t x = 0; x < H; x++) any |= mr_array_c64(d.kspace)[(c * H + x) * W + y] != 0;
        CU_ASSERT(any);
    }
    mr_ismrmrd_data_free(&d);
    /* Repetition 0 alone is the R = 2 pattern: even lines only, odd columns exactly +0. */
    copy_ismrmrd(dst, src, NULL, keep_rep0);
    CU_ASSERT_FATAL(mr_ismrmrd_read(&d, dst, 0) == MR_OK);
    CU_ASSERT_EQUAL(d.n_acquisitions, W / 2);
    for (size_t y = 0; y < W; y++) {
        int any = 0, neg_zero = 0;
        for (size_t c = 0; c < C; c++)
            for (size_t x = 0; x < H; x++) {
                mr_cfloat v = mr_array_c64(d.kspace)[(c * H + x) * W + y];
                any |= v != 0;
                neg_zero |= signbit(crealf(v)) && v == 0;
            }
        if (y % 2) nonzero_odd += any;
        else nonzero_even += any;
        CU_ASSERT(!neg_zero);
    }
    CU_ASSERT_EQUAL(nonzero_even, W / 2);
    CU_ASSERT_EQUAL(nonzero_odd, 0);
    mr_ismrmrd_data_free(&d);
}

static int bad_samples(ISMRMRD_Acquisition *acq, uint32_t i)
{
    if (i == 5) { /* shorten one readout */
        acq->head.number_of_samples = (uint16_t)(acq->head.number_of_samples - 4);
        ismrmrd_make_consistent_acquisition(acq);
    }
    return 1;
}

static int bad_line(ISMRMRD_Acquisition *acq, uint32_t i)
{
    if (i == 3) acq->head.idx.kspace_encode_step_1 = 40;
    return 1;
}

/* As open_like_convert, for an ISMRMRD input converted to a fastMRI output. */
static mr_status ismrmrd_like_convert(mr_ismrmrd_data *d, const char *in)
{
    const char *out = mr_test_path("converted_ismrmrd.h5");
    mr_fastmri_writer *w = NULL;
    mr_status st;
    char keep[2048];
    CU_ASSERT_FATAL(mr_fastmri_writer_create(&w, out) == MR_OK);
    st = mr_ismrmrd_read(d, in, 0);
    snprintf(keep, sizeof keep, "%s", mr_error_message());
    mr_fastmri_writer_abort(w);
    CU_ASSERT(!mr_path_is_file(out));
    CU_ASSERT(no_partials());
    if (st != MR_OK) {
        CU_ASSERT(d->kspace == NULL && d->noise == NULL && d->xml == NULL);
        mr_error_set(st, "%s", keep);
    }
    return st;
}

static void test_ismrmrd_bad_inputs(void)
{
    char src[4200], dst[4200]; /* mr_test_path's buffers rotate: keep copies */
    mr_ismrmrd_data d;
    char *radial = NULL;
    snprintf(src, sizeof src, "%s", mr_test_path("sl_src.h5"));
    snprintf(dst, sizeof dst, "%s", mr_test_path("sl_bad.h5"));
    CU_ASSERT_FATAL(generate("sl_src.h5", "-m 16 -c 2") == 0);

    CU_ASSERT(ismrmrd_like_convert(&d, mr_test_path("nope.h5")) == MR_ERR_INPUT);
    CU_ASSERT(contains(mr_error_message(), "nope.h5"));
    CU_ASSERT(d.kspace == NULL);

    /* a fastMRI file is not ISMRMRD */
    write_fastmri(mr_test_path("not_ismrmrd.h5"), 0, 1, 1, 4, 3);
    CU_ASSERT(ismrmrd_like_convert(&d, mr_test_path("not_ismrmrd.h5")) == MR_ERR_INPUT);
    CU_ASSERT(contains(mr_error_message(), "not_ismrmrd.h5"));
    CU_ASSERT(contains(mr_error_message(), "/dataset"));

    copy_ismrmrd(dst, src, NULL, bad_samples);
    CU_ASSERT(ismrmrd_like_convert(&d, dst) == MR_ERR_INPUT);
    CU_ASSERT(contains(mr_error_message(), "sl_bad.h5"));
    CU_ASSERT(contains(mr_error_message(), "acquisition 5"));
    CU_ASSERT(contains(mr_error_message(), "expected number_of_samples = 32"));
    CU_ASSERT(contains(mr_error_message(), "found 28"));
    CU_ASSERT(d.kspace == NULL);

    copy_ismrmrd(dst, src, NULL, bad_line);
    CU_ASSERT(ismrmrd_like_convert(&d, dst) == MR_ERR_INPUT);
    CU_ASSERT(contains(mr_error_message(), "acquisition 3"));
    CU_ASSERT(contains(mr_error_message(), "kspace_encode_step_1 = 40"));
    CU_ASSERT(contains(mr_error_message(), "0..15"));

    {
        /* the same data declared radial */
        ISMRMRD_Dataset in;
        char *hdr, *at;
        ismrmrd_init_dataset(&in, src, "/dataset");
        ismrmrd_open_dataset(&in, false);
        hdr = ismrmrd_read_header(&in);
        ismrmrd_close_dataset(&in);
        CU_ASSERT_FATAL(hdr && (at = strstr(hdr, ">cartesian<")) != NULL);
        radial = malloc(strlen(hdr) + 8);
        memcpy(radial, hdr, (size_t)(at - hdr));
        strcpy(radial + (at - hdr), ">radial<");
        strcat(radial, at + strlen(">cartesian<"));
        free(hdr);
    }
    copy_ismrmrd(dst, src, radial, NULL);
    free(radial);
    CU_ASSERT(ismrmrd_like_convert(&d, dst) == MR_ERR_INPUT);
    CU_ASSERT(contains(mr_error_message(), "sl_bad.h5"));
    CU_ASSERT(contains(mr_error_message(), "expected 'cartesian', found 'radial'"));

    /* malformed header XML */
    copy_ismrmrd(dst, src, "<ismrmrdHeader><encoding>", NULL);
    CU_ASSERT(ismrmrd_like_convert(&d, dst) == MR_ERR_INPUT);
    CU_ASSERT(contains(mr_error_message(), "/dataset/xml"));
    CU_ASSERT(contains(mr_error_message(), "XML"));
    CU_ASSERT(no_open_hdf5_ids());
}

int main(void)
{
    static const mr_test_case cases[] = {
        {"ismrmrd header: fastMRI-like XML and padding", test_hdr_parse_fastmri},
        {"ismrmrd header: no namespace", test_hdr_no_namespace},
        {"ismrmrd header: format validates (xmllint xsd, libismrmrd)", test_hdr_format_valid},
        {"ismrmrd header: bad XML messages", test_hdr_bad},
        {"fastmri: round trip multi-coil", test_fastmri_roundtrip_multicoil},
        {"fastmri: round trip single-coil", test_fastmri_roundtrip_singlecoil},
        {"fastmri: h5py reads mrpipe's file", test_fastmri_h5py_reads_ours},
        {"fastmri: mrpipe reads h5py's files", test_fastmri_reads_h5py},
        {"fastmri: streaming 35 slices, full-size slice speed", test_fastmri_streaming},
        {"fastmri: bad inputs", test_fastmri_bad_inputs},
        {"fastmri: writer errors leave nothing", test_fastmri_writer_errors},
        {"ismrmrd: dims and noise scans", test_ismrmrd_dims_noise},
        {"ismrmrd: k-space equals h5py's assembly", test_ismrmrd_vs_h5py},
        {"ismrmrd: image equals the generator's coil images", test_ismrmrd_image},
        {"ismrmrd: R = 2 sampled-line pattern", test_ismrmrd_accel_pattern},
        {"ismrmrd: bad inputs", test_ismrmrd_bad_inputs},
        {NULL, NULL},
    };
    return mr_test_run("io_h5", cases);
}
