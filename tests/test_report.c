/*
 * test_report.c: validation reports (`mrpipe report`, mr_report_write; docs/reports.md).
 *
 *  - SHA-256 against FIPS 180-4's examples and `sha256sum` on files of every padding boundary;
 *  - colour maps: the table ends and monotone lightness;
 *  - end to end on real data: `mrpipe simulate` from the ch2 template, `mrpipe recon` zero-filled
 *    with a mask and fully sampled, then `mrpipe report` with two inputs and --zero-filled: the
 *    JSON parses and its numbers equal `mrpipe metrics` exactly, and a Python transcription of
 *    fastMRI's evaluate.py with skimage within 1e-5; CSV rows; SHA-256 equal to `sha256sum`; the
 *    HTML is self-contained; no patient field anywhere by default, present with
 *    --include-patient-info; a larger input is centre-cropped as fastMRI does;
 *  - bad inputs (slice-count mismatch, NaN, all-zero reference, unreadable or missing file, an
 *    input too small to crop, a shown slice out of range, NaN in the uncertainty map): exit 1, a
 *    message naming the file, and no report file, no temporary, no new directory;
 *  - the library directly: nested output directories, repeated labels, errors leave nothing;
 *  - headless Chromium renders the page: it loads without console errors, the DOM holds the summary
 *    table and every image as a data URI, and the screenshot shows grey images and colour maps.
 */
#include "mr_validation.h"
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void expect_in_output(const char *needle)
{
    if (!strstr(mr_test_output(), needle))
        fprintf(stderr, "\noutput lacks '%s':\n%s\n", needle, mr_test_output());
    CU_ASSERT(strstr(mr_test_output(), needle) != NULL);
}

/* Run a Python script given as text (with numpy, h5py, skimage); returns its exit status. */
static int run_python(const char *script, const char *args)
{
    const char *path = mr_test_path("check.py");
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fputs(script, f);
    fclose(f);
    return mr_test_sh("cd %s && %s %s %s", mr_test_tmpdir(), mr_test_python(), path,
                      args ? args : "");
}

/* ================================================================ SHA-256 */

static void test_sha256(void)
{
    /* FIPS 180-4 examples (NIST CSRC "SHA256.pdf", "SHA2_Additional.pdf") */
    static const struct {
        const char *msg;
        const char *hex;
    } known[] = {
        {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
        {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
    };
    char hex[65];
    mr_sha256 ctx;
    unsigned char *buf;
    mr_test_rng rng;

    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        mr_sha256_init(&ctx);
        mr_sha256_update(&ctx, known[i].msg, strlen(known[i].msg));
        mr_sha256_final(&ctx, NULL, hex);
        CU_ASSERT_STRING_EQUAL(hex, known[i].hex);
    }
    /* one million 'a', fed in uneven pieces */
    buf = malloc(1000000);
    CU_ASSERT_FATAL(buf != NULL);
    memset(buf, 'a', 1000000);
    mr_sha256_init(&ctx);
    for (size_t off = 0, step = 1; off < 1000000; off += step, step = step * 3 % 1001 + 1)
        mr_sha256_update(&ctx, buf + off, off + step > 1000000 ? 1000000 - off : step);
    mr_sha256_final(&ctx, NULL, hex);
    CU_ASSERT_STRING_EQUAL(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");

    /* files across the padding boundaries (55, 56, 63, 64, 65 bytes ...) against sha256sum */
    mr_test_rng_init(&rng, 7);
    for (size_t k = 0; k < 1000000; k++)
        buf[k] = (unsigned char)(mr_test_randu(&rng) * 256);
    static const size_t lens[] = {0,  1,   55,  56,  57,   63,    64,
                                  65, 119, 120, 128, 1000, 65537, 1000000};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        const char *p = mr_test_path("sha.bin");
        FILE *f = fopen(p, "wb");
        char want[65] = "";
        CU_ASSERT_FATAL(f != NULL);
        fwrite(buf, 1, lens[i], f);
        fclose(f);
        CU_ASSERT(mr_sha256_file(hex, p) == MR_OK);
        CU_ASSERT(mr_test_sh("sha256sum %s", p) == 0);
        snprintf(want, sizeof want, "%s", mr_test_output());
        if (strcmp(hex, want)) fprintf(stderr, "\nlength %zu: %s vs %s\n", lens[i], hex, want);
        CU_ASSERT_STRING_EQUAL(hex, want);
    }
    free(buf);
    /* a missing file is an error naming it */
    CU_ASSERT(mr_sha256_file(hex, mr_test_path("nope.bin")) == MR_ERR_INPUT);
    CU_ASSERT(strstr(mr_error_message(), "nope.bin") != NULL);
}

/* ================================================================ colour maps */

static void test_colormap(void)
{
    unsigned char c[3];
    double prev = -1;
    mr_colormap_rgb(c, MR_COLORMAP_INFERNO, 0);
    CU_ASSERT(c[0] == 0 && c[1] == 0 && c[2] == 4);
    mr_colormap_rgb(c, MR_COLORMAP_INFERNO, 1);
    CU_ASSERT(c[0] == 252 && c[1] == 255 && c[2] == 164);
    mr_colormap_rgb(c, MR_COLORMAP_VIRIDIS, 0);
    CU_ASSERT(c[0] == 68 && c[1] == 1 && c[2] == 84);
    mr_colormap_rgb(c, MR_COLORMAP_VIRIDIS, 2.0); /* clamped */
    CU_ASSERT(c[0] == 253 && c[1] == 231 && c[2] == 37);
    mr_colormap_rgb(c, MR_COLORMAP_GRAY, NAN);
    CU_ASSERT(c[0] == 0 && c[1] == 0 && c[2] == 0);
    /* perceptual maps: luma rises monotonically (a brighter pixel is a larger value) */
    for (int map = MR_COLORMAP_INFERNO; map <= MR_COLORMAP_VIRIDIS; map++, prev = -1)
        for (int k = 0; k <= 64; k++) {
            double y;
            mr_colormap_rgb(c, (mr_colormap)map, k / 64.0);
            y = 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
            CU_ASSERT(y > prev - 0.5);
            prev = y;
        }
}

/* ================================================================ data made once */

/* sim.h5 (reference, 6 slices of 217 x 181, patient_id set to a marker), zf4.h5 (zero-filled,
 * random mask R 4), full.h5 (fully sampled), and the bad inputs. */
static const char *g_data;
#define PATIENT_MARK "PATIENT-SECRET-4711"

static const char *data_dir(void)
{
    static char dir[4096];
    if (g_data) return g_data;
    snprintf(dir, sizeof dir, "%s", mr_test_path("data"));
    CU_ASSERT_FATAL(mr_test_sh("mkdir -p %s && cd %s && "
                               "%s -q simulate --input /usr/share/mricron/templates/ch2.nii.gz "
                               "--slices 85:91 --coils 4 --output sim.h5 && "
                               "%s -q recon --input sim.h5 --output zf4.h5 --mask random --accel 4 "
                               "--center-fraction 0.08 --seed 1 && "
                               "%s -q recon --input sim.h5 --output full.h5",
                               dir, dir, mr_test_bin(), mr_test_bin(), mr_test_bin()) == 0);
    /* the patient marker, and the bad and special inputs, with h5py */
    CU_ASSERT_FATAL(
        run_python(
            "import sys, h5py, numpy as np\n"
            "d = sys.argv[1]\n"
            "with h5py.File(d + '/sim.h5', 'a') as f:\n"
            "    f.attrs['patient_id'] = '" PATIENT_MARK "'\n"
            "    ref = f['reconstruction_rss'][()]\n"
            "full = h5py.File(d + '/full.h5', 'r')['reconstruction'][()]\n"
            "zf = h5py.File(d + '/zf4.h5', 'r')['reconstruction'][()]\n"
            "def put(name, a, ds='reconstruction'):\n"
            "    with h5py.File(d + '/' + name, 'w') as f: f[ds] = a.astype(np.float32)\n"
            "put('slices4.h5', full[:4])\n"
            "nan = full.copy(); nan[2, 100, 90] = np.nan; put('nan.h5', nan)\n"
            "put('zero_ref.h5', np.zeros_like(ref), 'reconstruction_rss')\n"
            "put('small.h5', full[:, :200, :])\n"
            "# fastMRI centre crop offset (n - crop) // 2: pad so that the crop gives full back\n"
            "put('bigger.h5', np.pad(full, ((0, 0), (11, 12), (9, 10))))\n"
            "# an uncertainty map: the smoothed error of the zero-filled image\n"
            "from scipy.ndimage import uniform_filter\n"
            "put('sd.h5', uniform_filter(np.abs(zf - ref), size=(1, 5, 5)) + 0.5)\n"
            "sdn = uniform_filter(np.abs(zf - ref), size=(1, 5, 5)); sdn[1, 5, 5] = np.nan\n"
            "put('sd_nan.h5', sdn)\n"
            "open(d + '/garbage.h5', 'w').write('this is not an HDF5 file\\n')\n",
            dir) == 0);
    g_data = dir;
    return g_data;
}

/* ================================================================ end to end */

/* Checks report.json against `mrpipe metrics` (exact), skimage (fastMRI evaluate.py, 1e-5), the
 * CSV rows, and sha256sum. argv: report dir, data dir, metrics JSON of zf4, of full. */
static const char *CHECK_REPORT =
    "import sys, json, csv, math, hashlib, subprocess, h5py, numpy as np\n"
    "from skimage.metrics import structural_similarity, peak_signal_noise_ratio\n"
    "out, d, mzf, mfull = sys.argv[1:5]\n"
    "r = json.load(open(out + '/report.json'))\n"
    "assert r['format'] == 'mrpipe-report' and r['shape'] == [6, 217, 181], r['shape']\n"
    "for k in ('FFTW', 'HDF5', 'OpenBLAS', 'DCMTK'): assert r['libraries'][k], k\n"
    "assert r['mrpipe_version'] and r['command_line'][:2] == ['mrpipe', 'report']\n"
    "assert r['config']['slices_shown'] == [1, 3, 5], r['config']['slices_shown']\n"
    "assert r['metrics']['ssim']['size'] == 7 and r['metrics']['ssim']['border_crop'] == 3\n"
    "labels = [m['label'] for m in r['methods']]\n"
    "assert labels == ['zf', 'full'], labels\n"
    "# exactly the numbers of mrpipe metrics\n"
    "for m, path in zip(r['methods'], (mzf, mfull)):\n"
    "    x = json.load(open(path))\n"
    "    for k in ('nmse', 'psnr', 'ssim'): assert m['volume'][k] == x[k], (m['label'], k)\n"
    "    for a, b in zip(m['slices'], x['slices']):\n"
    "        for k in ('nmse', 'psnr', 'ssim'): assert a[k] == b[k], (m['label'], k, a, b)\n"
    "    assert r['metrics']['data_range'] == x['data_range']\n"
    "assert r['methods'][1]['volume']['psnr'] is None  # identical: inf -> null\n"
    "assert r['methods'][1]['volume']['nmse'] == 0\n"
    "assert r['zero_filled']['volume'] == r['methods'][0]['volume']\n"
    "# fastMRI evaluate.py with skimage, per volume and per slice (volume max)\n"
    "gt = h5py.File(d + '/sim.h5', 'r')['reconstruction_rss'][()]\n"
    "pred = h5py.File(d + '/zf4.h5', 'r')['reconstruction'][()]\n"
    "mx = gt.max()\n"
    "nmse = np.linalg.norm(gt - pred) ** 2 / np.linalg.norm(gt) ** 2\n"
    "psnr = peak_signal_noise_ratio(gt, pred, data_range=mx)\n"
    "ss = [structural_similarity(gt[i], pred[i], data_range=mx) for i in range(gt.shape[0])]\n"
    "v = r['methods'][0]['volume']\n"
    "assert abs(v['nmse'] - nmse) <= 1e-5 * nmse, (v['nmse'], nmse)\n"
    "assert abs(v['psnr'] - psnr) < 1e-5, (v['psnr'], psnr)\n"
    "assert abs(v['ssim'] - np.mean(ss)) < 1e-5, (v['ssim'], np.mean(ss))\n"
    "for i, s in enumerate(r['methods'][0]['slices']):\n"
    "    assert abs(s['ssim'] - ss[i]) < 1e-5\n"
    "    p = peak_signal_noise_ratio(gt[i], pred[i], data_range=mx)\n"
    "    assert abs(s['psnr'] - p) < 1e-5, (i, s['psnr'], p)\n"
    "# CSV: a header and one row per slice per method (zero-filled included)\n"
    "rows = list(csv.reader(open(out + '/report.csv')))\n"
    "assert rows[0] == ['method', 'slice', 'nmse', 'psnr', 'ssim'], rows[0]\n"
    "assert len(rows) == 1 + 3 * 6, len(rows)\n"
    "assert [x[0] for x in rows[1:]] == ['zf'] * 6 + ['full'] * 6 + ['zero-filled'] * 6\n"
    "assert float(rows[1][4]) == r['methods'][0]['slices'][0]['ssim']\n"
    "assert rows[7][3] == 'inf'\n"
    "# SHA-256 of every input, as sha256sum prints it\n"
    "def sha(p): return subprocess.check_output(['sha256sum', p]).split()[0].decode()\n"
    "assert r['reference']['sha256'] == sha(d + '/sim.h5')\n"
    "assert r['reference']['dataset'] == 'reconstruction_rss'\n"
    "assert r['methods'][0]['sha256'] == sha(d + '/zf4.h5')\n"
    "assert r['methods'][1]['sha256'] == sha(d + '/full.h5')\n"
    "assert r['zero_filled']['sha256'] == sha(d + '/zf4.h5')\n"
    "assert r['methods'][0]['sha256'] == hashlib.sha256(open(d + '/zf4.h5', "
    "'rb').read()).hexdigest()\n"
    "print('report checks passed')\n";

/* The HTML is one self-contained file: no scripts, no external URLs, every image a data URI. */
static const char *CHECK_HTML =
    "import sys, re, base64, io\n"
    "from PIL import Image\n"
    "h = open(sys.argv[1] + '/report.html', encoding='utf-8').read()\n"
    "low = h.lower()\n"
    "for bad in ('http:', 'https:', '<script', '<link', '@import', '<iframe', 'file:'):\n"
    "    assert bad not in low, bad\n"
    "for u in re.findall(r'url\\(([^)]*)\\)', h): assert u.startswith('#'), u\n"
    "srcs = re.findall(r'src=\"([^\"]*)\"', h)\n"
    "assert len(srcs) == int(sys.argv[2]), (len(srcs), sys.argv[2])\n"
    "for s in srcs:\n"
    "    assert s.startswith('data:image/png;base64,'), s[:40]\n"
    "    im = Image.open(io.BytesIO(base64.b64decode(s.split(',', 1)[1], validate=True)))\n"
    "    im.load()\n"
    "    assert im.size == (181, 217), im.size\n"
    "assert '<table class=\"summary\">' in h and h.count('<svg class=\"plot\"') == 2\n"
    "assert h.count('<svg class=\"cbar\"') == len(srcs)\n"
    "print('html checks passed')\n";

static const char *report_dir(const char *name)
{
    return mr_test_path(name);
}

static void test_report_end_to_end(void)
{
    const char *d = data_dir(), *out = report_dir("rep1");
    char args[8192];
    CU_ASSERT_FATAL(mr_test_sh("cd %s && %s metrics --reference sim.h5 --input zf4.h5 --json "
                               "%s/m_zf.json && %s metrics --reference sim.h5 --input full.h5 "
                               "--json %s/m_full.json",
                               d, mr_test_bin(), d, mr_test_bin(), d) == 0);
    CU_ASSERT_FATAL(mr_test_sh("cd %s && %s report --reference sim.h5 --input zf4.h5 --input "
                               "full.h5 --label zf --label full --zero-filled zf4.h5 --output %s",
                               d, mr_test_bin(), out) == 0);
    expect_in_output("report.html");
    snprintf(args, sizeof args, "%s %s %s/m_zf.json %s/m_full.json", out, d, d, d);
    CU_ASSERT(run_python(CHECK_REPORT, args) == 0);
    expect_in_output("report checks passed");
    /* 3 shown slices x (reference, zero-filled, 2 reconstructions, 2 error maps) */
    snprintf(args, sizeof args, "%s 18", out);
    CU_ASSERT(run_python(CHECK_HTML, args) == 0);
    expect_in_output("html checks passed");
    /* privacy: neither the fields nor their values (the fastMRI attribute, the ISMRMRD header's
     * patientID, which simulate sets to the source file name) in any file; no temporaries */
    CU_ASSERT(mr_test_sh("grep -l -i -e patient_id -e patientid -e %s -e ch2.nii %s/report.*",
                         PATIENT_MARK, out) == 1);
    CU_ASSERT(mr_test_count_files(out, "partial") == 0);
    CU_ASSERT(mr_test_count_files(out, "report.") == 3);
}

static void test_report_patient_info(void)
{
    const char *d = data_dir(), *out = report_dir("rep_patient");
    CU_ASSERT_FATAL(mr_test_sh("cd %s && %s -q report --reference sim.h5 --input zf4.h5 "
                               "--include-patient-info --output %s",
                               d, mr_test_bin(), out) == 0);
    CU_ASSERT(mr_test_sh("grep -c %s %s/report.json %s/report.html", PATIENT_MARK, out, out) == 0);
    expect_in_output("report.json:1");
    expect_in_output("report.html:1");
    CU_ASSERT(run_python("import json, sys\n"
                         "r = json.load(open(sys.argv[1] + '/report.json'))\n"
                         "assert r['config']['include_patient_info'] is True\n"
                         "assert r['patient'] == {'reference patient_id': '" PATIENT_MARK "',\n"
                         "    'reference ismrmrd patientID': 'ch2.nii.gz',\n"
                         "    'input 1 ismrmrd patientID': 'ch2.nii.gz'}, r['patient']\n"
                         "print('ok')\n",
                         out) == 0);
    expect_in_output("ok");
}

/* A larger input is centre-cropped with fastMRI's offset (n - crop) // 2; --slices picks the
 * panels; the uncertainty map adds a column. */
static void test_report_crop_slices_uncertainty(void)
{
    const char *d = data_dir(), *out = report_dir("rep_crop");
    CU_ASSERT_FATAL(mr_test_sh("cd %s && %s -q report --reference sim.h5 --input bigger.h5 "
                               "--uncertainty sd.h5 --slices 0,5 --ssim gaussian --output %s",
                               d, mr_test_bin(), out) == 0);
    CU_ASSERT(
        run_python("import json, sys\n"
                   "r = json.load(open(sys.argv[1] + '/report.json'))\n"
                   "m = r['methods'][0]\n"
                   "assert m['label'] == 'bigger' and m['cropped'] is True\n"
                   "assert m['shape_loaded'] == [6, 240, 200] and m['shape'] == [6, 217, 181]\n"
                   "assert m['volume']['nmse'] == 0 and m['volume']['psnr'] is None\n"
                   "assert r['config']['slices_shown'] == [0, 5]\n"
                   "assert r['metrics']['ssim']['window'] == 'gaussian'\n"
                   "u = r['uncertainty']\n"
                   "assert u['mean'] > 0.5 and u['abs_error_correlation'][0]['pearson_r'] is None\n"
                   "print('ok')\n",
                   out) == 0);
    expect_in_output("ok");
}

/* ================================================================ bad inputs */

/* `mrpipe report` with `args` must exit 1 with a message holding `needle` and `needle2`, and write
 * nothing: a missing output directory is not created, an existing empty one stays empty. */
static void expect_bad(const char *args, const char *needle, const char *needle2)
{
    const char *d = data_dir();
    const char *out = mr_test_path("bad_out"), *out2 = mr_test_path("bad_existing");
    mr_test_sh("rm -rf %s %s && mkdir -p %s", out, out2, out2);
    CU_ASSERT(mr_test_sh("cd %s && %s report %s --output %s", d, mr_test_bin(), args, out) == 1);
    expect_in_output("mrpipe report: ");
    expect_in_output(needle);
    if (needle2) expect_in_output(needle2);
    CU_ASSERT(!mr_path_is_dir(out));
    CU_ASSERT(mr_test_sh("cd %s && %s report %s --output %s", d, mr_test_bin(), args, out2) == 1);
    CU_ASSERT(mr_test_count_files(out2, "") == 2); /* "." and ".." only */
}

static void test_report_bad_inputs(void)
{
    data_dir();
    /* slice counts differ */
    expect_bad("--reference sim.h5 --input slices4.h5", "slices4.h5", "slice count");
    /* NaN in an input, in the zero-filled input, in the reference, in the uncertainty map */
    expect_bad("--reference sim.h5 --input nan.h5", "nan.h5", "nan at slice 2");
    expect_bad("--reference sim.h5 --input full.h5 --zero-filled nan.h5", "nan.h5",
               "nan at slice 2");
    expect_bad("--reference nan.h5:reconstruction --input full.h5", "nan.h5", "nan at slice 2");
    expect_bad("--reference sim.h5 --input full.h5 --uncertainty sd_nan.h5", "sd_nan.h5", "nan");
    /* an all-zero reference: PSNR is undefined, and the message says so */
    expect_bad("--reference zero_ref.h5 --input full.h5", "zero_ref.h5", "PSNR undefined");
    /* unreadable and missing files */
    expect_bad("--reference sim.h5 --input garbage.h5", "garbage.h5", NULL);
    expect_bad("--reference missing.h5 --input full.h5", "missing.h5", NULL);
    expect_bad("--reference sim.h5 --input full.h5 --uncertainty nothere.nii", "nothere.nii", NULL);
    /* an input smaller in-plane than the reference cannot be cropped */
    expect_bad("--reference sim.h5 --input small.h5", "small.h5", "(6, 217, 181)");
    /* a shown slice out of range */
    expect_bad("--reference sim.h5 --input full.h5 --slices 2,6", "slice 6", "0..5");
    /* usage errors */
    expect_bad("--reference sim.h5 --input full.h5 --label a --label b", "one --label per", NULL);
    expect_bad("--reference sim.h5", "--input", NULL);
    expect_bad("--reference sim.h5 --input full.h5 --ssim box", "--ssim", NULL);
    expect_bad("--reference sim.h5 --input full.h5 --slices 1,x", "--slices", NULL);
    CU_ASSERT(mr_test_count_files(data_dir(), "partial") == 0);
}

/* ================================================================ the library directly */

static mr_array *make_volume(size_t S, size_t H, size_t W, unsigned long long seed, double noise,
                             const mr_array *base)
{
    size_t dims[3] = {S, H, W};
    mr_array *a = NULL;
    mr_test_rng rng;
    CU_ASSERT_FATAL(mr_array_create(&a, MR_FLOAT32, 3, dims) == MR_OK);
    mr_test_rng_init(&rng, seed);
    for (size_t i = 0; i < S * H * W; i++) {
        float b = base ? mr_array_f32(base)[i]
                       : (float)(1 + sin(0.3 * (double)(i % W)) * cos(0.2 * (double)(i / W % H)));
        mr_array_f32(a)[i] = b + (float)(noise * mr_test_randn(&rng));
    }
    return a;
}

static void test_report_library(void)
{
    mr_array *ref = make_volume(4, 24, 20, 1, 0, NULL);
    mr_array *a = make_volume(4, 24, 20, 2, 0.05, ref), *b = make_volume(4, 24, 20, 3, 0.1, ref);
    mr_array *zero = make_volume(4, 24, 20, 4, 0, NULL), *sd = make_volume(4, 24, 20, 5, 0, NULL);
    mr_report_volume m[2];
    mr_report_spec sp;
    const char *nested = mr_test_path("lib/x/y"), *none = mr_test_path("lib_none");
    size_t bad_slice = 4;

    memset(zero->data, 0, mr_array_numel(zero) * sizeof(float));
    memset(&sp, 0, sizeof sp);
    memset(m, 0, sizeof m);
    sp.reference.source = "ref.nii";
    sp.reference.image = ref;
    memcpy(sp.reference.dims_loaded, ref->dims, sizeof sp.reference.dims_loaded);
    for (int i = 0; i < 2; i++) {
        m[i].source = i ? "dir/b.nii.gz" : "a/b.nii.gz"; /* the same base name twice */
        m[i].image = i ? b : a;
        memcpy(m[i].dims_loaded, ref->dims, sizeof m[i].dims_loaded);
    }
    sp.methods = m;
    sp.n_methods = 2;
    sp.created = "2000-01-01T00:00:00Z";

    /* nested directories are created; labels from the base names, repeated ones numbered */
    CU_ASSERT_FATAL(mr_report_write(nested, &sp) == MR_OK);
    CU_ASSERT(mr_test_count_files(nested, "report.") == 3);
    CU_ASSERT(
        run_python("import json, sys\n"
                   "r = json.load(open(sys.argv[1] + '/report.json'))\n"
                   "assert r['config']['labels'] == ['b', 'b (2)'], r['config']['labels']\n"
                   "assert r['created'] == '2000-01-01T00:00:00Z'\n"
                   "assert r['reference']['sha256'] is None and r['libraries'] == {}\n"
                   "assert r['methods'][0]['volume']['psnr'] > r['methods'][1]['volume']['psnr']\n"
                   "assert r['config']['slices_shown'] == [0, 2, 3]\n"
                   "print('ok')\n",
                   nested) == 0);
    expect_in_output("ok");

    /* a slice out of range: an error, and the directory is not even created */
    sp.slices = &bad_slice;
    sp.n_slices = 1;
    CU_ASSERT(mr_report_write(none, &sp) == MR_ERR_USAGE);
    CU_ASSERT(strstr(mr_error_message(), "slice 4") != NULL);
    CU_ASSERT(!mr_path_is_dir(none));
    sp.slices = NULL;
    sp.n_slices = 0;

    /* NaN in the uncertainty map */
    mr_array_f32(sd)[100] = NAN;
    sp.uncertainty =
        &(mr_report_volume){.source = "sd.nii", .image = sd, .dims_loaded = {4, 24, 20}};
    CU_ASSERT(mr_report_write(none, &sp) == MR_ERR_INPUT);
    CU_ASSERT(strstr(mr_error_message(), "sd.nii") != NULL);
    CU_ASSERT(!mr_path_is_dir(none));
    sp.uncertainty = NULL;

    /* an all-zero reference */
    sp.reference.image = zero;
    CU_ASSERT(mr_report_write(none, &sp) == MR_ERR_INPUT);
    CU_ASSERT(strstr(mr_error_message(), "PSNR undefined") != NULL);
    CU_ASSERT(strstr(mr_error_message(), "ref.nii") != NULL);
    CU_ASSERT(!mr_path_is_dir(none));
    sp.reference.image = ref;

    /* an output directory that cannot be made (a file is in the way) */
    CU_ASSERT(mr_test_sh("touch %s", mr_test_path("lib_file")) == 0);
    CU_ASSERT(mr_report_write(mr_test_path("lib_file/sub"), &sp) == MR_ERR_IO);
    CU_ASSERT(strstr(mr_error_message(), "lib_file") != NULL);

    mr_array_destroy(ref);
    mr_array_destroy(a);
    mr_array_destroy(b);
    mr_array_destroy(zero);
    mr_array_destroy(sd);
}

/* ================================================================ headless Chromium */

#define CHROMIUM_FLAGS                                                                             \
    "--headless --no-sandbox --disable-gpu --disable-quic --no-first-run "                         \
    "--disable-background-networking --disable-component-update --disable-sync "                   \
    "--enable-logging=stderr --v=0"

/* Page errors in Chromium's log: console errors, uncaught exceptions, failed loads. */
static int chromium_log_has_errors(const char *log)
{
    return mr_test_sh("grep -E 'CONSOLE|Uncaught|net::ERR|Not allowed to load' %s", log) == 0;
}

static void test_report_chromium(void)
{
    /* own copies: mr_test_path's buffers rotate */
    char d[4096], out[4096], shot[4096], dom[4096], log[4096], bad[4096], prof[3][4096];
    FILE *f;

    snprintf(d, sizeof d, "%s", data_dir());
    snprintf(out, sizeof out, "%s", report_dir("rep_chromium"));
    snprintf(shot, sizeof shot, "%s", mr_test_path("report_screenshot.png"));
    snprintf(dom, sizeof dom, "%s", mr_test_path("report_dom.html"));
    snprintf(log, sizeof log, "%s", mr_test_path("chromium.log"));
    snprintf(bad, sizeof bad, "%s", mr_test_path("bad_page.html"));
    for (int i = 0; i < 3; i++) {
        char name[64];
        snprintf(name, sizeof name, "chromium-profile-%d", i + 1);
        snprintf(prof[i], sizeof prof[i], "%s", mr_test_path(name));
    }

    if (mr_test_sh("command -v chromium") != 0) {
        fprintf(stderr, "\nchromium is missing: run scripts/install-deps.sh --test\n");
        CU_FAIL_FATAL("chromium not installed");
    }
    CU_ASSERT_FATAL(mr_test_sh("cd %s && %s -q report --reference sim.h5 --input zf4.h5 --input "
                               "full.h5 --label 'zero-filled R4' --label 'fully sampled' "
                               "--zero-filled zf4.h5 --uncertainty sd.h5 --output %s",
                               d, mr_test_bin(), out) == 0);
    /* the check itself must see errors: a page with a script error trips it */
    f = fopen(bad, "w");
    CU_ASSERT_FATAL(f != NULL);
    fputs("<!DOCTYPE html><html><body><script>undefined_function();</script></body></html>\n", f);
    fclose(f);
    mr_test_sh("timeout 120 chromium " CHROMIUM_FLAGS " --user-data-dir=%s --dump-dom "
               "file://%s > /dev/null 2> %s",
               prof[0], bad, log);
    CU_ASSERT(chromium_log_has_errors(log));

    /* the DOM as loaded: summary table, plots, every image as a data URI */
    CU_ASSERT(mr_test_sh("timeout 120 chromium " CHROMIUM_FLAGS " --user-data-dir=%s "
                         "--dump-dom file://%s/report.html > %s 2> %s",
                         prof[1], out, dom, log) == 0);
    CU_ASSERT(!chromium_log_has_errors(log));
    if (chromium_log_has_errors(log)) fprintf(stderr, "\nchromium: %s\n", mr_test_output());
    CU_ASSERT(run_python("import sys, re\n"
                         "h = open(sys.argv[1]).read()\n"
                         "assert '<table class=\"summary\">' in h\n"
                         "assert 'zero-filled R4' in h and 'fully sampled' in h\n"
                         "imgs = re.findall(r'<img [^>]*src=\"([^\"]{0,30})', h)\n"
                         "# 3 slices x (reference, zero-filled, 2 recons, SD, 2 error maps)\n"
                         "assert len(imgs) == 21, len(imgs)\n"
                         "assert all(s.startswith('data:image/png;base64,') for s in imgs)\n"
                         "print('dom ok')\n",
                         dom) == 0);
    expect_in_output("dom ok");

    /* the screenshot: exists, and shows grey images and both colour maps */
    CU_ASSERT(mr_test_sh("rm -f %s && timeout 120 chromium " CHROMIUM_FLAGS
                         " --user-data-dir=%s --screenshot=%s --window-size=1400,2000 "
                         "file://%s/report.html 2> %s",
                         shot, prof[2], shot, out, log) == 0);
    CU_ASSERT(!chromium_log_has_errors(log));
    CU_ASSERT(run_python("import sys\n"
                         "import numpy as np\n"
                         "from PIL import Image\n"
                         "a = np.asarray(Image.open(sys.argv[1]).convert('RGB')).astype(int)\n"
                         "assert a.shape[:2] == (2000, 1400), a.shape\n"
                         "r, g, b = a[..., 0], a[..., 1], a[..., 2]\n"
                         "grey = (abs(r - g) < 4) & (abs(g - b) < 4) & (r > 40) & (r < 215)\n"
                         "inferno = (r > 180) & (g > 60) & (g < 170) & (b < 90)   # orange\n"
                         "viridis = (g > 120) & (g > r + 40) & (g > b)            # green\n"
                         "n = [int(x.sum()) for x in (grey, inferno, viridis)]\n"
                         "print('grey, inferno, viridis pixels:', n)\n"
                         "assert n[0] > 50000 and n[1] > 500 and n[2] > 2000, n\n"
                         "assert a.std() > 30\n"
                         "print('screenshot ok')\n",
                         shot) == 0);
    expect_in_output("screenshot ok");
    fprintf(stderr, "\nscreenshot: %s\n", shot);
}

int main(void)
{
    static const mr_test_case cases[] = {
        {"sha256: FIPS 180-4 examples and sha256sum at every padding boundary", test_sha256},
        {"colour maps: table ends, monotone lightness", test_colormap},
        {"report end to end: numbers = mrpipe metrics = skimage, CSV, SHA-256, self-contained, "
         "private",
         test_report_end_to_end},
        {"report --include-patient-info records the patient field", test_report_patient_info},
        {"report: centre crop, --slices, --uncertainty, --ssim gaussian",
         test_report_crop_slices_uncertainty},
        {"report bad inputs: exit 1, the file named, nothing written", test_report_bad_inputs},
        {"mr_report_write: nested dirs, labels, errors leave nothing", test_report_library},
        {"headless Chromium renders the report without errors", test_report_chromium},
        {NULL, NULL},
    };
    return mr_test_run("report", cases);
}
