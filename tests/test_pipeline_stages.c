/*
 * test_pipeline_stages.c: the pipeline's image stages (issues 7 and 8): the denoise stage on a
 * small simulated scan (one new image per cleaned image, files written, the CNN image differs from
 * its input and has its shape, scored and reported); config errors (a model file that does not
 * exist, recon on a DICOM input, ...: each names the key and its line, nothing is written); a
 * DICOM series in -> denoise -> write dicom (dciodvfy finds no error, new Series UID, the source's
 * study, the input folder untouched); a NIfTI input (geometry kept for the chosen slices);
 * dicom_send to a real Orthanc inside `unshare -n` on loopback (every instance arrives, checked
 * through Orthanc's REST API), a refusing peer and a closed port (the scan fails with the peer's
 * answer, `mrpipe batch` exits 3). Oracles: pydicom, nibabel, dciodvfy, Orthanc.
 */
#include "mr_stages.h"
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CH2 "/usr/share/mricron/templates/ch2.nii.gz"

static void expect_in(const char *hay, const char *needle)
{
    if (!strstr(hay, needle)) fprintf(stderr, "\n'%s' lacks '%s'\n", hay, needle);
    CU_ASSERT(strstr(hay, needle) != NULL);
}

static mr_status build(const char *yaml)
{
    mr_config *c = NULL;
    mr_pipeline *p = NULL;
    mr_status st = mr_config_parse(&c, yaml, "t.yaml");
    if (st != MR_OK) return st;
    st = mr_pipeline_create(&p, c);
    mr_pipeline_destroy(p);
    return st;
}

static void expect_error(const char *yaml, const char *needle)
{
    mr_error_clear();
    CU_ASSERT(build(yaml) != MR_OK);
    expect_in(mr_error_message(), needle);
}

/* The DICOM fixtures of test_dicom.c (a 5-slice oblique series built from pydicom's MR_small). */
static const char *fixture_series(void)
{
    static char dir[4096];
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "%s", mr_test_path("fx"));
        int rc = mr_test_sh("%s %s make %s", mr_test_python(),
                            mr_test_src("tests/dicom_fixtures.py"), dir);
        if (rc != 0) fprintf(stderr, "fixtures failed:\n%s\n", mr_test_output());
        CU_ASSERT_FATAL(rc == 0);
        strncat(dir, "/series", sizeof dir - strlen(dir) - 1);
    }
    return dir;
}

static const char *small_scan(void)
{
    static char path[4096];
    if (!path[0]) {
        snprintf(path, sizeof path, "%s", mr_test_path("scan.h5"));
        CU_ASSERT_FATAL(mr_test_sh("%s -q simulate --input " CH2 " --output %s --coils 4 "
                                   "--slices 80:83 --matrix 64,56 --seed 0",
                                   mr_test_bin(), path) == 0);
    }
    return path;
}

/* k-space -> zf 4x -> denoise -> validate -> write -> report. */
static void test_denoise_stage(void)
{
    char yaml[16384], p[4300];
    const char *out = mr_test_path("den-out"), *cfg = mr_test_path("den.yaml");
    snprintf(yaml, sizeof yaml,
             "inputs:\n  file: %s\noutput:\n  dir: %s\nstages:\n"
             "  full: {stage: recon}\n"
             "  zf_4x: {stage: recon, mask: equispaced, accel: 4}\n"
             "  denoise: {images: [zf_4x]}\n"
             "  validate: {}\n  write: {formats: [h5, png]}\n  report: {zero_filled: zf_4x}\n",
             small_scan(), out);
    mr_test_write_text(cfg, yaml);
    int rc = mr_test_sh("%s -q run %s", mr_test_bin(), cfg);
    if (rc) fprintf(stderr, "%s\n", mr_test_output());
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    /* one new image: written, scored, in the marker and the report */
    const char *files[] = {"full.h5", "zf_4x.h5", "zf_4x_cnn.h5", "zf_4x_cnn.png", "report.html"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        snprintf(p, sizeof p, "%s/%s", out, files[i]);
        CU_ASSERT(access(p, R_OK) == 0);
    }
    snprintf(p, sizeof p, "%s/full_cnn.h5", out);
    CU_ASSERT(access(p, R_OK) != 0); /* images: [zf_4x] only */
    CU_ASSERT_EQUAL(mr_test_sh("%s -c \"import json; m = json.load(open('%s/metrics.json'))"
                               "['images']; assert sorted(m) == ['full', 'zf_4x', 'zf_4x_cnn'], m; "
                               "assert m['zf_4x_cnn']['method'] == 'denoise'\"",
                               mr_test_python(), out),
                    0);
    CU_ASSERT_EQUAL(mr_test_sh("grep -o 'zf_4x_cnn: {nmse: [0-9.e-]*' %s/mrpipe-done.yaml", out),
                    0);
    CU_ASSERT_EQUAL(mr_test_sh("grep -c zf_4x_cnn %s/report.json", out), 0);
    /* the CNN image: the input's shape, different values, finite */
    mr_array *a = NULL, *b = NULL;
    snprintf(p, sizeof p, "%s/zf_4x.h5", out);
    CU_ASSERT_EQUAL_FATAL(mr_image_load(&a, NULL, 0, p, 0), MR_OK);
    snprintf(p, sizeof p, "%s/zf_4x_cnn.h5", out);
    CU_ASSERT_EQUAL_FATAL(mr_image_load(&b, NULL, 0, p, 0), MR_OK);
    CU_ASSERT_EQUAL(a->ndim, 3);
    CU_ASSERT_EQUAL(b->ndim, 3);
    for (int i = 0; i < 3; i++)
        CU_ASSERT_EQUAL(a->dims[i], b->dims[i]);
    CU_ASSERT_EQUAL(a->dims[0], 3);
    double diff = 0, norm = 0;
    int finite = 1;
    for (size_t i = 0; i < mr_array_numel(a); i++) {
        double d = (double)mr_array_f32(b)[i] - mr_array_f32(a)[i];
        diff += d * d;
        norm += (double)mr_array_f32(a)[i] * mr_array_f32(a)[i];
        finite &= isfinite(mr_array_f32(b)[i]);
    }
    CU_ASSERT(finite);
    CU_ASSERT(diff > 1e-6 * norm); /* changed */
    CU_ASSERT(diff < norm);        /* but still the same picture */
    mr_array_destroy(a);
    mr_array_destroy(b);
    CU_ASSERT_EQUAL(mr_test_count_files(out, ".partial"), 0);
}

/* uncertainty: bootstrap on the artefact model after a zf recon: the cleaned image's SD map is
 * written (kind bootstrap), finite and positive over the image; a model without
 * NAME_sigma_bootstrap.h5 (the blind denoiser) is a config error naming the key. */
static void test_denoise_bootstrap_stage(void)
{
    char yaml[16384];
    const char *out = mr_test_path("dbs-out"), *cfg = mr_test_path("dbs.yaml");
    snprintf(yaml, sizeof yaml,
             "inputs:\n  file: %s\noutput:\n  dir: %s\nstages:\n"
             "  zf_4x: {stage: recon, mask: random, accel: 4, uncertainty: model}\n"
             "  denoise: {model: %s, images: [zf_4x], uncertainty: bootstrap}\n"
             "  write: {formats: [h5]}\n",
             small_scan(), out, mr_test_src("models/artefact.h5"));
    mr_test_write_text(cfg, yaml);
    int rc = mr_test_sh("%s -q run %s", mr_test_bin(), cfg);
    if (rc) fprintf(stderr, "%s\n", mr_test_output());
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    rc = mr_test_sh("%s -c \"import h5py, numpy as np\n"
                    "g = h5py.File('%s/zf_4x_cnn_sd.h5', 'r')\n"
                    "u = g['uncertainty'][()]\n"
                    "assert g.attrs['mrpipe_uncertainty'] in ('bootstrap', b'bootstrap')\n"
                    "assert u.shape[0] == 3 and np.isfinite(u).all() and u.min() > 0, u.min()\"",
                    mr_test_python(), out);
    if (rc) fprintf(stderr, "%s\n", mr_test_output());
    CU_ASSERT_EQUAL(rc, 0);
    snprintf(yaml, sizeof yaml,
             "inputs:\n  file: %s\nstages:\n  zf_4x: {stage: recon, mask: random, accel: 4}\n"
             "  denoise:\n    uncertainty: bootstrap\n",
             small_scan());
    expect_error(yaml, "stages.denoise.uncertainty");
    expect_error(yaml, "denoiser_blind_sigma_bootstrap.h5");
}

static void test_config_errors(void)
{
    char yaml[16384];
    const char *h5 = small_scan(), *dcm = fixture_series();
    /* valid ones first: denoise on all recon images; a DICOM input with no recon */
    snprintf(yaml, sizeof yaml,
             "inputs:\n  file: %s\nstages:\n  zf: {stage: recon}\n"
             "  denoise: {}\n  write: {formats: [dicom]}\n",
             h5);
    mr_error_clear();
    CU_ASSERT_EQUAL(build(yaml), MR_OK);
    snprintf(yaml, sizeof yaml,
             "inputs:\n  file: %s\nstages:\n  denoise: {}\n  write:\n"
             "    formats: [dicom, png]\n    images: [input_cnn]\n  dicom_send:\n"
             "    peer: PACS@localhost:4242\n",
             dcm);
    mr_error_clear();
    CU_ASSERT_EQUAL(build(yaml), MR_OK);
    /* a model file that does not exist: the key and its line */
    snprintf(yaml, sizeof yaml,
             "inputs:\n  file: %s\nstages:\n  zf: {stage: recon}\n  denoise:\n"
             "    model: /nonexistent/m.h5\n",
             h5);
    expect_error(yaml, "t.yaml line 6: stages.denoise.model: ");
    expect_error(yaml, "/nonexistent/m.h5");
    snprintf(yaml, sizeof yaml,
             "inputs:\n  file: %s\nstages:\n  zf: {stage: recon}\n  denoise:\n"
             "    model: models/nothing.h5\n",
             h5);
    expect_error(yaml, "t.yaml line 6: stages.denoise.model: model file models/nothing.h5 not "
                       "found");
    /* a file that is not a model */
    snprintf(yaml, sizeof yaml,
             "inputs:\n  file: %s\nstages:\n  zf: {stage: recon}\n  denoise:\n"
             "    model: %s\n",
             h5, h5);
    expect_error(yaml, "t.yaml line 6: stages.denoise.model: ");
    /* recon on a DICOM input: the stage is named */
    snprintf(yaml, sizeof yaml,
             "inputs:\n  file: %s\nstages:\n  zf_4x:\n    stage: recon\n"
             "    accel: 4\n",
             dcm);
    expect_error(yaml, "t.yaml line 4: stages.zf_4x: stage 'zf_4x' (recon) needs k-space, but "
                       "input ");
    expect_error(yaml, "is a DICOM series");
    /* a k-space input with no recon before denoise */
    snprintf(yaml, sizeof yaml, "inputs:\n  file: %s\nstages:\n  denoise: {}\n", h5);
    expect_error(yaml, "t.yaml line 4: stages.denoise: 'denoise' needs a recon stage before it");
    /* images: a label that is not made before */
    snprintf(yaml, sizeof yaml,
             "inputs:\n  file: %s\nstages:\n  zf: {stage: recon}\n  denoise:\n"
             "    images: [zf, sense]\n",
             h5);
    expect_error(yaml, "t.yaml line 6: stages.denoise.images.1: no image named 'sense'");
    snprintf(yaml, sizeof yaml,
             "inputs:\n  file: %s\nstages:\n  zf: {stage: recon}\n  write:\n"
             "    images: [zf_cnn]\n  denoise: {}\n",
             h5);
    expect_error(yaml, "t.yaml line 6: stages.write.images.0: no image named 'zf_cnn'");
    /* uncertainty model: a model without its variance network beside it is a config error */
    {
        char lone[4096];
        snprintf(lone, sizeof lone, "%s", mr_test_path("lone.h5"));
        CU_ASSERT_FATAL(mr_test_sh("cp %s %s", mr_test_src("models/denoiser_blind.h5"), lone) == 0);
        snprintf(yaml, sizeof yaml,
                 "inputs:\n  file: %s\nstages:\n  zf: {stage: recon}\n  denoise:\n"
                 "    model: %s\n    uncertainty: model\n",
                 h5, lone);
        expect_error(yaml, "t.yaml line 7: stages.denoise.uncertainty: ");
        expect_error(yaml, "no calibrated uncertainty model");
        snprintf(yaml, sizeof yaml,
                 "inputs:\n  file: %s\nstages:\n  zf: {stage: recon}\n  denoise:\n"
                 "    uncertainty: replica\n    replicas: 1\n",
                 h5);
        expect_error(yaml, "t.yaml line 7: stages.denoise.replicas");
    }
    snprintf(yaml, sizeof yaml,
             "inputs:\n  file: %s\nstages:\n  zf: {stage: recon}\n  denoise:\n"
             "    uncertainty: maybe\n",
             h5);
    expect_error(yaml, "expected none, model, replica, both or bootstrap, found 'maybe'");
    /* the recon stage's uncertainty: none, model or bootstrap (replica maps are mrpipe recon's);
     * bootstrap re-simulates from the image, which zf's image already is */
    snprintf(yaml, sizeof yaml,
             "inputs:\n  file: %s\nstages:\n  zf: {stage: recon, uncertainty: replica}\n", h5);
    expect_error(yaml, "t.yaml line 4: stages.zf.uncertainty: expected none, model or bootstrap");
    snprintf(yaml, sizeof yaml,
             "inputs:\n  file: %s\nstages:\n  zf: {stage: recon, uncertainty: bootstrap}\n", h5);
    expect_error(yaml, "t.yaml line 4: stages.zf.uncertainty: bootstrap: method zf has nothing to "
                       "re-simulate");
    /* a suffix that makes a label already taken */
    snprintf(yaml, sizeof yaml,
             "inputs:\n  file: %s\nstages:\n  zf: {stage: recon}\n"
             "  zf_x: {stage: recon}\n  denoise:\n    suffix: x\n",
             h5);
    expect_error(yaml, "t.yaml line 7: stages.denoise.suffix: label zf_x is already an image's");
    /* validate's automatic reference needs k-space */
    snprintf(yaml, sizeof yaml,
             "inputs:\n  file: %s\nstages:\n  denoise: {}\n  validate:\n"
             "    reference: auto\n",
             dcm);
    expect_error(yaml, "t.yaml line 6: stages.validate.reference: auto takes the reference from a "
                       "k-space file");
    /* dicom_send: the peer, the calling AE title, a write stage with dicom */
    snprintf(yaml, sizeof yaml,
             "inputs:\n  file: %s\nstages:\n  write: {formats: [dicom]}\n"
             "  dicom_send:\n    peer: localhost:4242\n",
             dcm);
    expect_error(yaml, "t.yaml line 6: stages.dicom_send.peer: ");
    expect_error(yaml, "AET@HOST:PORT");
    snprintf(yaml, sizeof yaml,
             "inputs:\n  file: %s\nstages:\n  write: {formats: [dicom]}\n"
             "  dicom_send:\n    retries: 1\n",
             dcm);
    expect_error(yaml, "t.yaml line 5: stages.dicom_send: missing required key 'peer'");
    snprintf(yaml, sizeof yaml,
             "inputs:\n  file: %s\nstages:\n  write: {formats: [dicom]}\n"
             "  dicom_send:\n    peer: A@h:1\n    calling_aet: THIS IS TOO LONG AE\n",
             dcm);
    expect_error(yaml, "t.yaml line 7: stages.dicom_send.calling_aet: expected an AE title");
    snprintf(yaml, sizeof yaml,
             "inputs:\n  file: %s\nstages:\n  write: {formats: [png]}\n"
             "  dicom_send:\n    peer: A@h:1\n",
             dcm);
    expect_error(yaml, "t.yaml line 5: stages.dicom_send: dicom_send needs a write stage with "
                       "format dicom");
    snprintf(yaml, sizeof yaml,
             "inputs:\n  file: %s\nstages:\n  dicom_send:\n    peer: A@h:1\n"
             "  write: {formats: [dicom]}\n",
             dcm);
    expect_error(yaml, "t.yaml line 4: stages.dicom_send: dicom_send needs a write stage");
    /* the CLI: exit 1, the message, nothing written */
    const char *cfg = mr_test_path("bad_stages.yaml"), *out = mr_test_path("bad-stages-out");
    snprintf(yaml, sizeof yaml,
             "inputs:\n  file: %s\noutput:\n  dir: %s\nstages:\n"
             "  zf: {stage: recon}\n",
             dcm, out);
    mr_test_write_text(cfg, yaml);
    CU_ASSERT_EQUAL(mr_test_sh("%s run %s", mr_test_bin(), cfg), 1);
    expect_in(mr_test_output(), "bad_stages.yaml line 6: stages.zf: stage 'zf' (recon) needs "
                                "k-space");
    CU_ASSERT(access(out, F_OK) != 0);
}

/* DICOM series in -> denoise -> a derived series out (and PNG previews); the input untouched. */
static void test_dicom_enhance(void)
{
    char yaml[16384], dir[4300];
    const char *src = fixture_series(), *out = mr_test_path("enh-out"),
               *cfg = mr_test_path("enh.yaml");
    CU_ASSERT_EQUAL_FATAL(
        mr_test_sh(
            "cd %s && sha256sum * > ../series.sha256 && ls -l --time-style=full-iso > ../series.ls",
            src),
        0);
    snprintf(yaml, sizeof yaml,
             "inputs:\n  file: %s\noutput:\n  dir: %s\nstages:\n  read: {}\n  denoise: {}\n"
             "  write:\n    formats: [dicom, png]\n    images: [input_cnn]\n",
             src, out);
    mr_test_write_text(cfg, yaml);
    int rc = mr_test_sh("%s -q run %s", mr_test_bin(), cfg);
    if (rc) fprintf(stderr, "%s\n", mr_test_output());
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    snprintf(dir, sizeof dir, "%s/input_cnn/1007_fixture_series_mrpipe_input_cnn", out);
    CU_ASSERT_FATAL(mr_path_is_dir(dir));
    CU_ASSERT_EQUAL(mr_test_count_files(dir, "IM_"), 5);
    snprintf(dir, sizeof dir, "%s/input_cnn.png", out);
    CU_ASSERT(access(dir, R_OK) == 0);
    snprintf(dir, sizeof dir, "%s/input", out);
    CU_ASSERT(access(dir, F_OK) != 0); /* images: [input_cnn] */
    snprintf(dir, sizeof dir, "%s/input_cnn/1007_fixture_series_mrpipe_input_cnn", out);
    /* dciodvfy: no error in any instance */
    CU_ASSERT_EQUAL(
        mr_test_sh("for f in %s/IM_*.dcm; do dciodvfy $f 2>&1; done | grep -i '^Error'", dir), 1);
    if (strstr(mr_test_output(), "Error")) fprintf(stderr, "dciodvfy: %s\n", mr_test_output());
    /* new series, the source's study and patient, same geometry, other pixel values */
    rc = mr_test_sh(
        "%s -c \"\n"
        "import glob, pydicom, numpy as np\n"
        "src = sorted((pydicom.dcmread(f) for f in glob.glob('%s/*.dcm')), key=lambda d: "
        "float(np.dot(np.cross(np.array(d.ImageOrientationPatient[:3], float), "
        "np.array(d.ImageOrientationPatient[3:], float)), np.array(d.ImagePositionPatient, "
        "float))))\n"
        "out = [pydicom.dcmread(f) for f in sorted(glob.glob('%s/IM_*.dcm'))]\n"
        "assert len(out) == 5 == len(src)\n"
        "ser = {d.SeriesInstanceUID for d in out}\n"
        "assert len(ser) == 1 and ser.pop() != src[0].SeriesInstanceUID\n"
        "assert all(d.StudyInstanceUID == src[0].StudyInstanceUID for d in out)\n"
        "assert all(str(d.PatientName) == str(src[0].PatientName) for d in out)\n"
        "assert 'DERIVED' in list(out[0].ImageType)\n"
        "for a, b in zip(src, out):\n"
        "    assert [round(float(x), 3) for x in a.ImagePositionPatient] == "
        "[round(float(x), 3) for x in b.ImagePositionPatient]\n"
        "    assert a.pixel_array.shape == b.pixel_array.shape\n"
        "va = np.stack([d.pixel_array * float(getattr(d, 'RescaleSlope', 1)) for d in src])\n"
        "vb = np.stack([d.pixel_array * float(d.RescaleSlope) + float(d.RescaleIntercept) "
        "for d in out])\n"
        "rel = np.linalg.norm(vb - va) / np.linalg.norm(va)\n"
        "assert 1e-4 < rel < 0.5, rel\n"
        "print('rel_change %%.4f' %% rel)\n\"",
        mr_test_python(), src, dir);
    if (rc) fprintf(stderr, "%s\n", mr_test_output());
    CU_ASSERT_EQUAL(rc, 0);
    /* the input folder: same bytes, same files, same times */
    CU_ASSERT_EQUAL(mr_test_sh("cd %s && sha256sum -c --quiet ../series.sha256 && "
                               "ls -l --time-style=full-iso | cmp - ../series.ls",
                               src),
                    0);
    /* re-run with --force: the folder outputs are replaced (flat layout) */
    CU_ASSERT_EQUAL(mr_test_sh("%s -q run %s --force", mr_test_bin(), cfg), 0);
    snprintf(dir, sizeof dir, "%s/input_cnn", out);
    CU_ASSERT_EQUAL(mr_test_count_files(dir, "_"), 1);
}

/* A NIfTI input read as an image (no simulate): slices chosen by read, geometry kept. */
static void test_nifti_input(void)
{
    char yaml[16384];
    const char *out = mr_test_path("nii-out"), *cfg = mr_test_path("nii.yaml");
    snprintf(yaml, sizeof yaml,
             "inputs:\n  file: " CH2 "\noutput:\n  dir: %s\nstages:\n  read: {slices: \"90:92\"}\n"
             "  denoise: {}\n  write: {formats: [nifti]}\n",
             out);
    mr_test_write_text(cfg, yaml);
    int rc = mr_test_sh("%s -q run %s", mr_test_bin(), cfg);
    if (rc) fprintf(stderr, "%s\n", mr_test_output());
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    rc = mr_test_sh("%s -c \"\n"
                    "import nibabel as nib, numpy as np\n"
                    "a = nib.load('" CH2 "'); i = nib.load('%s/input.nii.gz'); "
                    "c = nib.load('%s/input_cnn.nii.gz')\n"
                    "va = np.asarray(a.dataobj, float)[:, :, 90:92]\n"
                    "vi = np.asarray(i.dataobj, float); vc = np.asarray(c.dataobj, float)\n"
                    "assert vi.shape == vc.shape == va.shape, (vi.shape, va.shape)\n"
                    "assert np.allclose(vi, va)\n"
                    "want = a.affine.copy(); want[:3, 3] = a.affine[:3, :3] @ [0, 0, 90] + "
                    "a.affine[:3, 3]\n"
                    "assert np.allclose(i.affine, want, atol=1e-4), (i.affine, want)\n"
                    "assert np.allclose(c.affine, want, atol=1e-4)\n"
                    "assert np.abs(vc - vi).max() > 0\n\"",
                    mr_test_python(), out, out);
    if (rc) fprintf(stderr, "%s\n", mr_test_output());
    CU_ASSERT_EQUAL(rc, 0);
}

/* dicom_send to a real Orthanc on loopback inside its own network namespace: two DICOM inputs
 * through `mrpipe batch` (every instance of every derived series arrives, REST API), then the same
 * with a wrong called AE title (refused) and a closed port: each scan fails with the peer's answer
 * and the batch exits 3. */
static void test_dicom_send_orthanc(void)
{
    const char *dir = mr_test_path("pacs"), *script = mr_test_path("pacs.sh");
    const char *src = fixture_series();
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
        "D=%s; B=%s; mkdir -p $D/store $D/in\n"
        "cp -r %s $D/in/scan_a && cp -r %s $D/in/scan_b\n"
        "cat > $D/cfg.json <<J\n"
        "{ \"Name\": \"mrpipe-test\", \"StorageDirectory\": \"$D/store\", \"IndexDirectory\": "
        "\"$D/store\", \"HttpPort\": 18043, \"DicomPort\": 14243, \"DicomAet\": \"ORTHANC\", "
        "\"DicomCheckCalledAet\": true, \"RemoteAccessAllowed\": false, "
        "\"AuthenticationEnabled\": false, \"Plugins\": [] }\n"
        "J\n"
        "Orthanc $D/cfg.json > $D/orthanc.log 2>&1 & pid=$!\n"
        "for i in $(seq 150); do curl -sf http://127.0.0.1:18043/system >/dev/null && break; "
        "sleep 0.1; done\n"
        "mk() { cat > $D/$1.yaml <<Y\n"
        "inputs: {glob: $D/in/scan_*}\n"
        "output: {dir: $D/$1}\n"
        "stages:\n"
        "  denoise: {}\n"
        "  write: {formats: [dicom], images: [input_cnn]}\n"
        "  dicom_send: {peer: \"$2\", calling_aet: MRPIPETEST, retries: $3, timeout: 5}\n"
        "Y\n"
        "}\n"
        "mk ok ORTHANC@127.0.0.1:14243 2; $B -q batch $D/ok.yaml --jobs 1; echo \"ok=$?\"\n"
        "/usr/bin/python3 -c \"\n"
        "import glob, json, urllib.request, pydicom\n"
        "got = json.load(urllib.request.urlopen('http://127.0.0.1:18043/instances?expand'))\n"
        "got = {i['MainDicomTags']['SOPInstanceUID'] for i in got}\n"
        "ours = [pydicom.dcmread(f) for f in glob.glob('$D/ok/*/input_cnn/*/IM_*.dcm')]\n"
        "assert len(ours) == 10 and got == {d.SOPInstanceUID for d in ours}, (len(got), "
        "len(ours))\n"
        "series = json.load(urllib.request.urlopen('http://127.0.0.1:18043/series?expand'))\n"
        "assert sorted(s['MainDicomTags']['SeriesInstanceUID'] for s in series) == "
        "sorted({d.SeriesInstanceUID for d in ours})\n"
        "print('arrived', len(got), 'series', len(series))\"\n"
        "mk refused WRONG@127.0.0.1:14243 2; $B -q batch $D/refused.yaml --jobs 1; "
        "echo \"refused=$?\"\n"
        "cat $D/refused/scan_a.failed.txt\n"
        "mk closed ORTHANC@127.0.0.1:14999 1; $B -q batch $D/closed.yaml --jobs 1; "
        "echo \"closed=$?\"\n"
        "cat $D/closed/scan_b.failed.txt\n"
        "ls $D/closed\n"
        "kill $pid; wait $pid\n",
        dir, mr_test_bin(), src, src);
    fclose(f);
    int rc = mr_test_sh("unshare -n sh %s", script);
    const char *out = mr_test_output();
    if (!strstr(out, "arrived 10")) fprintf(stderr, "%s\n", out);
    CU_ASSERT_EQUAL(rc, 0);
    expect_in(out, "ok=0");
    expect_in(out, "arrived 10 series 2");
    /* refused: exit 3, the scan's failure names the stage, the peer and its answer; not retried */
    expect_in(out, "refused=3");
    expect_in(out, "stage dicom_send: sending series 1007");
    expect_in(out, "WRONG@127.0.0.1:14243 refused the association from MRPIPETEST");
    /* closed port: retried once, then the scan fails; no output set for it */
    expect_in(out, "closed=3");
    expect_in(out, "after 2 attempts");
    expect_in(out, "ORTHANC@127.0.0.1:14999");
    CU_ASSERT(strstr(out, "\nscan_a\n") == NULL && strstr(out, "\nscan_b\n") == NULL);
}

/* The uncertainty plumbing (the lead's model uncertainty fills mr_scan_image.uncertainty): write
 * puts LABEL_sd.* beside every format (an `uncertainty` dataset in LABEL.h5, a DICOM SD series
 * linked to the image series, both kept for dicom_send) and report shows the SD map. The stages
 * run on a scan made by hand. */
static void test_uncertainty_outputs(void)
{
    char yaml[16384], p[4400];
    const char *h5 = small_scan(), *work = mr_test_path("unc-work");
    mr_config *c = NULL;
    mr_pipeline *pl = NULL;
    mr_scan scan;
    CU_ASSERT_FATAL(mr_test_sh("mkdir -p %s", work) == 0);
    snprintf(yaml, sizeof yaml,
             "inputs:\n  file: %s\nstages:\n  zf: {stage: recon}\n"
             "  validate: {reference: '%s'}\n  write: {formats: [h5, png, nifti, dicom]}\n"
             "  report: {}\n",
             h5, h5);
    CU_ASSERT_FATAL(mr_config_parse(&c, yaml, "t.yaml") == MR_OK);
    CU_ASSERT_FATAL(mr_pipeline_create(&pl, c) == MR_OK);
    memset(&scan, 0, sizeof scan);
    scan.id = "unc";
    scan.input = h5;
    snprintf(scan.kspace_path, sizeof scan.kspace_path, "%s", h5);
    snprintf(scan.work_dir, sizeof scan.work_dir, "%s", work);
    size_t dims[3] = {2, 24, 20};
    mr_scan_image *im = &scan.images[scan.n_images++];
    snprintf(im->label, sizeof im->label, "zf");
    snprintf(im->method, sizeof im->method, "zf");
    snprintf(im->uncertainty_kind, sizeof im->uncertainty_kind, "model");
    CU_ASSERT_FATAL(mr_array_create(&im->image, MR_FLOAT32, 3, dims) == MR_OK);
    CU_ASSERT_FATAL(mr_array_create(&im->uncertainty, MR_FLOAT32, 3, dims) == MR_OK);
    CU_ASSERT_FATAL(mr_array_create(&scan.reference, MR_FLOAT32, 3, dims) == MR_OK);
    for (size_t i = 0; i < 2 * 24 * 20; i++) {
        mr_array_f32(scan.reference)[i] = (float)((i * 7) % 23);
        mr_array_f32(im->image)[i] = (float)((i * 7) % 23) + 0.5f * (float)(i % 3);
        mr_array_f32(im->uncertainty)[i] = 0.01f * (float)(i % 11);
    }
    snprintf(scan.reference_desc, sizeof scan.reference_desc, "hand-made reference");
    const mr_stage_instance *w = &pl->stages[2], *r = &pl->stages[3];
    CU_ASSERT_STRING_EQUAL(w->stage->name, "write");
    mr_error_clear();
    CU_ASSERT_EQUAL(w->stage->run(w->state, &scan), MR_OK);
    if (mr_error_message()[0]) fprintf(stderr, "%s\n", mr_error_message());
    const char *files[] = {"zf.h5", "zf_sd.h5", "zf.png", "zf_sd.png", "zf.nii.gz", "zf_sd.nii.gz"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        snprintf(p, sizeof p, "%s/%s", work, files[i]);
        CU_ASSERT(access(p, R_OK) == 0);
    }
    CU_ASSERT_EQUAL(scan.n_series, 2); /* image series and SD series, both to be sent */
    if (scan.n_series == 2) {
        CU_ASSERT_EQUAL(scan.series[1].series_number, scan.series[0].series_number + 1);
        int rc = mr_test_sh(
            "%s -c \"import glob, pydicom, h5py, numpy as np\n"
            "u = [pydicom.dcmread(f) for f in sorted(glob.glob('%s/IM_*.dcm'))]\n"
            "assert len(u) == 2\n"
            "assert all(d.ReferencedSeriesSequence[0].SeriesInstanceUID == '%s' for d in u)\n"
            "f = h5py.File('%s/zf.h5', 'r'); g = h5py.File('%s/zf_sd.h5', 'r')\n"
            "assert np.allclose(f['uncertainty'][()], g['uncertainty'][()])\n"
            "assert g.attrs['mrpipe_uncertainty'] in ('model', b'model')\n"
            "assert abs(float(g['uncertainty'][()].max()) - 0.1) < 1e-6\"",
            mr_test_python(), scan.series[1].dir, scan.series[0].series_uid, work, work);
        if (rc) fprintf(stderr, "%s\n", mr_test_output());
        CU_ASSERT_EQUAL(rc, 0);
    }
    /* report: the SD map is passed on */
    CU_ASSERT_STRING_EQUAL(r->stage->name, "report");
    CU_ASSERT_EQUAL(r->stage->run(r->state, &scan), MR_OK);
    CU_ASSERT_EQUAL(mr_test_sh("grep '\"uncertainty_source\": \"zf SD (model)\"' %s/report.json", work),
                    0);
    mr_scan_clear(&scan);
    mr_pipeline_destroy(pl);
}

int main(void)
{
    static const mr_test_case cases[] = {
        {"denoise stage on a simulated scan: new image, files, scored, reported",
         test_denoise_stage},
        {"denoise stage with uncertainty: bootstrap (artefact model after zf)",
         test_denoise_bootstrap_stage},
        {"config errors: model file, recon on DICOM, images, uncertainty, dicom_send",
         test_config_errors},
        {"DICOM in -> denoise -> derived series (dciodvfy, new series UID, input untouched)",
         test_dicom_enhance},
        {"NIfTI input: slices and geometry kept", test_nifti_input},
        {"uncertainty: write LABEL_sd.* (linked DICOM SD series), report shows it",
         test_uncertainty_outputs},
        {"dicom_send to Orthanc (REST check); refused and closed peers fail the scan, exit 3",
         test_dicom_send_orthanc},
        {NULL, NULL},
    };
    return mr_test_run("pipeline_stages", cases);
}
