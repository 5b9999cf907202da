/*
 * test_dicom_net.c: DICOM multi-volume series, uncertainty series and the PACS services beyond
 * C-STORE / C-GET (issue 7): a 2-echo series split into one volume per echo (mrpipe info,
 * convert, selection by UID:echoN), mr_dicom_uncertainty_write (dciodvfy, dcmdump, pydicom:
 * references, units, geometry), and against a real Orthanc (Debian `orthanc`, inside `unshare -n`
 * on loopback with its own storage): C-FIND (`mrpipe query`) of what was sent, instance by
 * instance; C-MOVE (`mrpipe fetch --move-dest`) to mrpipe's own storage SCP, converted and
 * denoised; refusals and bad input. Fixtures: tests/dicom_fixtures.py make_net (from pydicom's
 * MR_small.dcm). Oracles: pydicom, nibabel, dciodvfy (dicom3tools), dcmdump, DCMTK's storescu.
 */
#include "mr_io.h"
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char g_fx[4096];

/* The fixtures, built once per run. */
static const char *fx(const char *rel)
{
    static char bufs[8][4096];
    static int next;
    if (!g_fx[0]) {
        snprintf(g_fx, sizeof g_fx, "%s", mr_test_path("fx"));
        int rc = mr_test_sh("%s %s make_net %s", mr_test_python(),
                            mr_test_src("tests/dicom_fixtures.py"), g_fx);
        if (rc != 0) fprintf(stderr, "fixtures failed:\n%s\n", mr_test_output());
    }
    char *b = bufs[next++ % 8];
    snprintf(b, 4096, "%.3000s/%.1000s", g_fx, rel);
    return b;
}

/* Every file of a written series passes dciodvfy with no error and dcmdump reads it. */
static void check_valid_dir(const char *dir, size_t count)
{
    CU_ASSERT_EQUAL(mr_test_count_files(dir, "IM_"), (int)count);
    CU_ASSERT_EQUAL(
        mr_test_sh("for f in %s/IM_*.dcm; do dciodvfy $f 2>&1; done | grep -i '^Error'", dir),
        1); /* grep finds nothing */
    if (strstr(mr_test_output(), "Error")) fprintf(stderr, "dciodvfy: %s\n", mr_test_output());
    CU_ASSERT_EQUAL(
        mr_test_sh("for f in %s/IM_*.dcm; do dcmdump -q $f >/dev/null || exit 1; done", dir), 0);
}

/* ---------------------------------------------------------------- multi-echo series */

static void test_two_echoes_split(void)
{
    mr_dicom_set *set = NULL;
    mr_dicom_volume *v1 = NULL, *v2 = NULL;
    size_t idx;
    char spec[MR_DICOM_SPEC_SIZE];
    CU_ASSERT_EQUAL_FATAL(mr_dicom_set_open(&set, fx("echo2")), MR_OK);
    CU_ASSERT_EQUAL_FATAL(mr_dicom_set_count(set), 2);
    const mr_dicom_series_info *a = mr_dicom_set_series(set, 0), *b = mr_dicom_set_series(set, 1);
    CU_ASSERT_STRING_EQUAL(a->series_uid, b->series_uid);
    CU_ASSERT_EQUAL(a->volume, 1);
    CU_ASSERT_EQUAL(b->volume, 2);
    CU_ASSERT_EQUAL(a->volumes, 2);
    CU_ASSERT_STRING_EQUAL(a->label, "echo1");
    CU_ASSERT_STRING_EQUAL(b->label, "echo2");
    CU_ASSERT_EQUAL(a->images, 4);
    CU_ASSERT_EQUAL(a->files, 4);
    CU_ASSERT_DOUBLE_EQUAL(a->echo_time, 12.0, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(b->echo_time, 30.0, 1e-9);
    CU_ASSERT_EQUAL(b->echo_number, 2);
    /* the bare UID (or nothing) is not one volume: the message lists UID:echo1 and UID:echo2 */
    CU_ASSERT_EQUAL(mr_dicom_set_select(&idx, set, NULL), MR_ERR_INPUT);
    CU_ASSERT(strstr(mr_error_message(), mr_dicom_series_spec(spec, b)) != NULL);
    CU_ASSERT_EQUAL(mr_dicom_set_select(&idx, set, a->series_uid), MR_ERR_INPUT);
    CU_ASSERT(strstr(mr_error_message(), "holds 2 volumes") != NULL);
    CU_ASSERT_EQUAL(mr_dicom_set_select(&idx, set, mr_dicom_series_spec(spec, b)), MR_OK);
    CU_ASSERT_EQUAL(idx, 1);
    snprintf(spec, sizeof spec, "%s:echo3", a->series_uid);
    CU_ASSERT_EQUAL(mr_dicom_set_select(&idx, set, spec), MR_ERR_INPUT);
    /* each volume sorted along the normal, from its own echo's files */
    CU_ASSERT_EQUAL_FATAL(mr_dicom_volume_read(&v1, set, 0, 1), MR_OK);
    CU_ASSERT_EQUAL_FATAL(mr_dicom_volume_read(&v2, set, 1, 1), MR_OK);
    CU_ASSERT_EQUAL(v1->data->dims[0], 4);
    CU_ASSERT_DOUBLE_EQUAL(v1->src.geom.slice_spacing, 3.0, 1e-4);
    CU_ASSERT_DOUBLE_EQUAL(v2->src.geom.slice_spacing, 3.0, 1e-4);
    CU_ASSERT_STRING_EQUAL(mr_dicom_attrs_get(&v2->src.acquisition, MR_DICOM_TAG(0x0018, 0x0086)),
                           "2");
    CU_ASSERT_DOUBLE_EQUAL(
        atof(mr_dicom_attrs_get(&v2->src.acquisition, MR_DICOM_TAG(0x0018, 0x0081))), 30.0, 1e-9);
    int differ = 0;
    for (size_t i = 0; i < mr_array_numel(v1->data); i++)
        differ |= mr_array_f32(v1->data)[i] != mr_array_f32(v2->data)[i];
    CU_ASSERT(differ);
    mr_dicom_volume_destroy(v1);
    mr_dicom_volume_destroy(v2);
    mr_dicom_set_close(set);

    /* echoes told apart by EchoTime only: ranked by TE */
    CU_ASSERT_EQUAL_FATAL(mr_dicom_set_open(&set, fx("echo_te")), MR_OK);
    CU_ASSERT_EQUAL(mr_dicom_set_count(set), 2);
    CU_ASSERT_STRING_EQUAL(mr_dicom_set_series(set, 1)->label, "echo2");
    CU_ASSERT_DOUBLE_EQUAL(mr_dicom_set_series(set, 1)->echo_time, 30.0, 1e-9);
    CU_ASSERT_EQUAL(mr_dicom_set_series(set, 1)->echo_number, -1);
    mr_dicom_set_close(set);

    /* two images of one echo at one position stay an error naming both files */
    CU_ASSERT_EQUAL_FATAL(mr_dicom_set_open(&set, fx("echo_dup")), MR_OK);
    CU_ASSERT_EQUAL(mr_dicom_volume_read(&v1, set, 0, 1), MR_ERR_INPUT);
    CU_ASSERT(strstr(mr_error_message(), "both at") != NULL);
    CU_ASSERT(strstr(mr_error_message(), "echo_dup/m_") != NULL);
    CU_ASSERT_EQUAL(mr_dicom_volume_read(&v2, set, 1, 1), MR_OK);
    mr_dicom_volume_destroy(v2);
    mr_dicom_set_close(set);
}

/* mrpipe info lists both volumes; convert writes one NIfTI per echo (data and affine of that
 * echo's images, pydicom/nibabel oracle) and one derived series per echo; UID:echo2 picks one;
 * a command needing one volume says how to choose. */
static void test_two_echoes_cli(void)
{
    const char *out = mr_test_path("echo_out");
    char uid[128] = "", *nl;
    CU_ASSERT_EQUAL_FATAL(mr_test_sh("%s info %s", mr_test_bin(), fx("echo2")), 0);
    CU_ASSERT(strstr(mr_test_output(), "volume 1 of 2") != NULL);
    CU_ASSERT(strstr(mr_test_output(), "volume 2 of 2") != NULL);
    CU_ASSERT(strstr(mr_test_output(), ":echo2, echo number 2, TE 30 ms") != NULL);
    CU_ASSERT(strstr(mr_test_output(), "1 series, 2 volumes") != NULL);
    CU_ASSERT(strstr(mr_test_output(), "not one volume") == NULL);
    CU_ASSERT_EQUAL_FATAL(mr_test_sh("mkdir -p %s && %s -q convert --input %s --output %s/e.nii.gz",
                                     out, mr_test_bin(), fx("echo2"), out),
                          0);
    for (int e = 1; e <= 2; e++) {
        int rc = mr_test_sh("%s %s check_nii_echo %s/e_echo%d.nii.gz %s %d", mr_test_python(),
                            mr_test_src("tests/dicom_fixtures.py"), out, e, fx("echo2"), e);
        if (rc) fprintf(stderr, "%s\n", mr_test_output());
        CU_ASSERT_EQUAL(rc, 0);
    }
    CU_ASSERT_EQUAL(mr_test_count_files(out, "e_echo"), 2);
    /* one derived series per echo (SeriesNumber source + 1000 + echo - 1), EchoTime of its echo,
     * valid */
    CU_ASSERT_EQUAL_FATAL(
        mr_test_sh("%s -q convert --input %s --output %s/dcm/", mr_test_bin(), fx("echo2"), out),
        0);
    char d1[4200], d2[4200];
    snprintf(d1, sizeof d1, "%s/dcm/1012_fixture_multi-echo_echo1_mrpipe_convert", out);
    snprintf(d2, sizeof d2, "%s/dcm/1013_fixture_multi-echo_echo2_mrpipe_convert", out);
    check_valid_dir(d1, 4);
    check_valid_dir(d2, 4);
    CU_ASSERT_EQUAL(mr_test_sh("%s -c \"import pydicom; d = pydicom.dcmread('%s/IM_0001.dcm'); "
                               "assert float(d.EchoTime) == 30 and int(d.EchoNumbers) == 2\"",
                               mr_test_python(), d2),
                    0);
    /* choose one: UID:echo2 */
    CU_ASSERT_EQUAL(
        mr_test_sh("%s info %s | grep -o '[0-9.]*:echo2' | head -1", mr_test_bin(), fx("echo2")),
        0);
    snprintf(uid, sizeof uid, "%s", mr_test_output());
    if ((nl = strchr(uid, '\n'))) *nl = '\0';
    CU_ASSERT_FATAL(strstr(uid, ":echo2") != NULL);
    CU_ASSERT_EQUAL(mr_test_sh("%s -q convert --input %s --series %s --output %s/only2.nii",
                               mr_test_bin(), fx("echo2"), uid, out),
                    0);
    CU_ASSERT_EQUAL(mr_test_sh("%s %s check_nii_echo %s/only2.nii %s 2", mr_test_python(),
                               mr_test_src("tests/dicom_fixtures.py"), out, fx("echo2")),
                    0);
    /* a command needing one volume lists the volumes and says how to choose */
    CU_ASSERT_EQUAL(
        mr_test_sh("%s denoise --input %s --output %s/den.nii", mr_test_bin(), fx("echo2"), out),
        1);
    CU_ASSERT(strstr(mr_test_output(), "holds 2 volumes") != NULL);
    CU_ASSERT(strstr(mr_test_output(), ":echo1") != NULL);
    CU_ASSERT(strstr(mr_test_output(), "--series UID:LABEL") != NULL);
    CU_ASSERT_EQUAL(mr_test_count_files(out, "den"), 0);
    /* a duplicate position within one echo: the error, no output */
    CU_ASSERT_EQUAL(
        mr_test_sh("%s convert --input %s --output %s/dup.nii", mr_test_bin(), fx("echo_dup"), out),
        1);
    CU_ASSERT(strstr(mr_test_output(), "both at") != NULL);
    CU_ASSERT_EQUAL(mr_test_count_files(out, "dup"), 0);
    CU_ASSERT_EQUAL(mr_test_count_files(out, ".partial"), 0);
}

/* ---------------------------------------------------------------- uncertainty series */

static mr_dicom_volume *read_only(const char *path)
{
    mr_dicom_set *set = NULL;
    mr_dicom_volume *vol = NULL;
    size_t idx;
    if (mr_dicom_set_open(&set, path) == MR_OK && mr_dicom_set_select(&idx, set, NULL) == MR_OK)
        mr_dicom_volume_read(&vol, set, idx, 1);
    mr_dicom_set_close(set);
    return vol;
}

/* Write an image series and its SD series into out; returns 0 on success. */
static int write_pair(const char *out, mr_dicom_written *img, mr_dicom_written *unc)
{
    mr_dicom_volume *v = read_only(fx("series"));
    mr_dicom_series_params p;
    mr_array *sd = NULL;
    int rc = 1;
    if (!v) return 1;
    memset(&p, 0, sizeof p);
    p.description = "fixture series mrpipe denoise";
    p.derivation = "test image";
    if (mr_dicom_series_write(img, out, v->data, &v->src, &p) != MR_OK) goto done;
    if (mr_array_create(&sd, MR_FLOAT32, 3, v->data->dims) != MR_OK) goto done;
    /* an SD in the image's units: 2 % of the image plus a smooth pattern, with exact zeros */
    for (size_t i = 0; i < mr_array_numel(sd); i++)
        mr_array_f32(sd)[i] =
            i % 64 == 0 ? 0.0f
                        : 0.02f * fabsf(mr_array_f32(v->data)[i]) + 0.37f * (float)(i % 13) + 0.5f;
    if (mr_dicom_uncertainty_write(unc, out, sd, &v->src, img, NULL, "cafe0123") != MR_OK)
        goto done;
    /* the SD values as float32 for the oracle */
    char path[4200];
    snprintf(path, sizeof path, "%s/sd.f32", out);
    FILE *f = fopen(path, "wb");
    if (f) {
        fwrite(sd->data, sizeof(float), mr_array_numel(sd), f);
        fclose(f);
        rc = 0;
    }
done:
    mr_array_destroy(sd);
    mr_dicom_volume_destroy(v);
    return rc;
}

static void test_uncertainty_series(void)
{
    const char *out = mr_test_path("unc");
    mr_dicom_written img, unc, w;
    CU_ASSERT_EQUAL_FATAL(write_pair(out, &img, &unc), 0);
    CU_ASSERT_EQUAL(unc.series_number, img.series_number + 1);
    CU_ASSERT_STRING_EQUAL(unc.study_uid, img.study_uid);
    CU_ASSERT(strcmp(unc.series_uid, img.series_uid) != 0);
    check_valid_dir(img.dir, 5);
    check_valid_dir(unc.dir, 5);
    /* pydicom: description, image type, per-slice links to the image instance at the same
     * position, the same frame of reference and geometry, values = the SD to the recorded
     * scaling */
    int rc = mr_test_sh(
        "%s -c \"\n"
        "import glob, numpy as np, pydicom\n"
        "im = [pydicom.dcmread(f) for f in sorted(glob.glob('%s/IM_*.dcm'))]\n"
        "us = [pydicom.dcmread(f) for f in sorted(glob.glob('%s/IM_*.dcm'))]\n"
        "sd = np.fromfile('%s/sd.f32', '<f4').reshape(len(us), 64, 64)\n"
        "byuid = {d.SOPInstanceUID: d for d in im}\n"
        "assert len(us) == len(im) == 5\n"
        "for k, u in enumerate(us):\n"
        "    assert list(u.ImageType) == ['DERIVED', 'SECONDARY', 'UNCERTAINTY'], u.ImageType\n"
        "    assert u.SeriesDescription == 'fixture series mrpipe uncertainty (SD)', "
        "u.SeriesDescription\n"
        "    assert int(u.SeriesNumber) == int(im[0].SeriesNumber) + 1\n"
        "    r = u.ReferencedImageSequence[0]\n"
        "    i = byuid[r.ReferencedSOPInstanceUID]\n"
        "    assert r.ReferencedSOPClassUID == i.SOPClassUID\n"
        "    assert np.allclose(np.array(u.ImagePositionPatient, float), "
        "np.array(i.ImagePositionPatient, float), atol=1e-4)\n"
        "    assert list(u.ImageOrientationPatient) == list(i.ImageOrientationPatient)\n"
        "    assert list(u.PixelSpacing) == list(i.PixelSpacing)\n"
        "    assert u.FrameOfReferenceUID == i.FrameOfReferenceUID\n"
        "    assert u.StudyInstanceUID == i.StudyInstanceUID and u.PatientID == i.PatientID\n"
        "    refs = {s.SeriesInstanceUID: [x.ReferencedSOPInstanceUID for x in "
        "s.ReferencedInstanceSequence] for s in u.ReferencedSeriesSequence}\n"
        "    assert refs[i.SeriesInstanceUID] == [i.SOPInstanceUID], refs\n"
        "    assert u.SourceImageSequence[0].ReferencedSOPInstanceUID == "
        "i.SourceImageSequence[0].ReferencedSOPInstanceUID\n"
        "    assert 'config cafe0123' in list(u.SoftwareVersions)\n"
        "    v = u.pixel_array * float(u.RescaleSlope) + float(u.RescaleIntercept)\n"
        "    assert u.RescaleType == 'US' and float(u.RescaleIntercept) == 0\n"
        "    err = np.max(np.abs(v - sd[k]))\n"
        "    assert err <= float(u.RescaleSlope) / 2 + 1e-6, (err, u.RescaleSlope)\n"
        "    assert np.all(v[sd[k] == 0] == 0)\n"
        "print('uncertainty ok')\n\"",
        mr_test_python(), img.dir, unc.dir, out);
    if (rc) fprintf(stderr, "%s\n", mr_test_output());
    CU_ASSERT_EQUAL(rc, 0);
    /* mrpipe reads the SD series back in the same geometry */
    mr_dicom_volume *a = read_only(img.dir), *b = read_only(unc.dir);
    CU_ASSERT_FATAL(a && b);
    CU_ASSERT_EQUAL(a->data->dims[0], b->data->dims[0]);
    for (int i = 0; i < 3; i++)
        CU_ASSERT_DOUBLE_EQUAL(a->src.geom.origin[i], b->src.geom.origin[i], 1e-4);
    CU_ASSERT_DOUBLE_EQUAL(a->src.geom.slice_spacing, b->src.geom.slice_spacing, 1e-5);
    /* bad input: a negative SD, another shape, a source of another study, no image series;
     * nothing written */
    mr_dicom_volume *v = read_only(fx("series"));
    mr_array *sd = NULL;
    CU_ASSERT_FATAL(v != NULL);
    CU_ASSERT_EQUAL_FATAL(mr_array_create(&sd, MR_FLOAT32, 3, v->data->dims), MR_OK);
    mr_array_f32(sd)[7] = -1.0f;
    img.series_number = 500; /* (the folder would be 501_...) */
    CU_ASSERT_EQUAL(mr_dicom_uncertainty_write(&w, out, sd, &v->src, &img, NULL, NULL),
                    MR_ERR_INPUT);
    CU_ASSERT(strstr(mr_error_message(), ">= 0") != NULL);
    mr_array_f32(sd)[7] = 0.0f;
    mr_dicom_written short_img = img;
    short_img.count = 3;
    CU_ASSERT_EQUAL(mr_dicom_uncertainty_write(&w, out, sd, &v->src, &short_img, NULL, NULL),
                    MR_ERR_INPUT);
    CU_ASSERT(strstr(mr_error_message(), "S = 3") != NULL);
    mr_dicom_source other;
    CU_ASSERT_EQUAL_FATAL(mr_dicom_source_copy(&other, &v->src), MR_OK);
    mr_dicom_attrs_set(&other.identity, MR_DICOM_TAG(0x0020, 0x000D), "1.2.3.4");
    CU_ASSERT_EQUAL(mr_dicom_uncertainty_write(&w, out, sd, &other, &img, NULL, NULL),
                    MR_ERR_INPUT);
    CU_ASSERT(strstr(mr_error_message(), "StudyInstanceUID") != NULL);
    CU_ASSERT_EQUAL(mr_dicom_uncertainty_write(&w, out, sd, &v->src, NULL, NULL, NULL),
                    MR_ERR_USAGE);
    CU_ASSERT_EQUAL(mr_test_count_files(out, "501_"), 0);
    CU_ASSERT_EQUAL(mr_test_count_files(out, ".partial"), 0);
    mr_dicom_source_free(&other);
    mr_array_destroy(sd);
    mr_dicom_volume_destroy(v);
    mr_dicom_volume_destroy(a);
    mr_dicom_volume_destroy(b);
    mr_dicom_written_free(&img);
    mr_dicom_written_free(&unc);
}

/* ---------------------------------------------------------------- PACS: C-FIND and C-MOVE */

/* A real Orthanc on loopback inside its own network namespace (unshare -n), its own temporary
 * storage, fixed high ports; it knows our AE MRPIPETEST at 127.0.0.1:11112 (DicomModalities),
 * which is where `fetch --move-dest` serves. */
static void test_pacs_find_move(void)
{
    const char *dir = mr_test_path("pacs"), *script = mr_test_path("pacs.sh");
    const char *pairdir = mr_test_path("pacs_pair");
    mr_dicom_written img, unc;
    FILE *f;
    if (mr_test_sh("command -v Orthanc && command -v storescu && unshare -n true") != 0) {
        fprintf(stderr, "\n  (skipped: needs Debian's orthanc, dcmtk's storescu and unshare -n)\n");
        return;
    }
    /* an image series and its uncertainty series, written by the API, sent with storescu */
    CU_ASSERT_EQUAL_FATAL(write_pair(pairdir, &img, &unc), 0);
    f = fopen(script, "w");
    CU_ASSERT_FATAL(f != NULL);
    fprintf(
        f,
        "ip link set lo up || { echo 'cannot bring the loopback up (needs iproute2)'; exit 1; }\n"
        "D=%s; B=%s; PY=%s; FX=%s; PAIR=%s; IMG=%s; UNC=%s\n"
        "P=ORTHANC@127.0.0.1:14243; C='--calling-aet MRPIPETEST'\n"
        "mkdir -p $D/store\n"
        "cat > $D/cfg.json <<J\n"
        "{ \"Name\": \"mrpipe-net-test\", \"StorageDirectory\": \"$D/store\", "
        "\"IndexDirectory\": \"$D/store\", \"HttpPort\": 18043, \"DicomPort\": 14243, "
        "\"DicomAet\": \"ORTHANC\", \"DicomCheckCalledAet\": true, \"RemoteAccessAllowed\": "
        "false, \"AuthenticationEnabled\": false, \"Plugins\": [], "
        "\"DicomModalities\": { \"mrpipe\": [ \"MRPIPETEST\", \"127.0.0.1\", 11112 ], "
        "\"elsewhere\": [ \"ELSEWHERE\", \"127.0.0.1\", 11119 ] } }\n"
        "J\n"
        "Orthanc $D/cfg.json > $D/orthanc.log 2>&1 & pid=$!\n"
        "for i in $(seq 150); do curl -sf http://127.0.0.1:18043/system >/dev/null && break; "
        "sleep 0.1; done\n"
        "$B -q convert --input $FX/series --output $D/out/ --send $P $C; echo \"send=$?\"\n"
        "storescu -aet MRPIPETEST -aec ORTHANC 127.0.0.1 14243 $IMG/*.dcm $UNC/*.dcm; "
        "echo \"storescu=$?\"\n"
        /* C-FIND everything back, with instances, and check each local file's UIDs */
        "$B query --from $P $C --instances > $D/query.txt; echo \"query=$?\"\n"
        "$PY - $D/query.txt $D/out $PAIR <<'EOF'\n"
        "import glob, sys, pydicom\n"
        "lines = open(sys.argv[1]).read().split(chr(10))\n"
        "found, study, series = {}, None, None\n"
        "for l in lines:\n"
        "    w = l.split()\n"
        "    if l.startswith('study '): study = w[1]\n"
        "    elif l.startswith('  series '):\n"
        "        series = w[1]; found[series] = dict(study=study, modality=w[2], number=w[3], "
        "n=int(w[4]), desc=l.split(chr(34))[1], inst=[])\n"
        "    elif l.startswith('    instance '): found[series]['inst'].append((w[1], w[2]))\n"
        "local = [pydicom.dcmread(f) for f in glob.glob(sys.argv[2] + '/*/IM_*.dcm') + "
        "glob.glob(sys.argv[3] + '/*/IM_*.dcm')]\n"
        "assert len(local) == 15, len(local)\n"
        "assert len(found) == 3, found.keys()\n"
        "for d in local:\n"
        "    s = found[d.SeriesInstanceUID]\n"
        "    assert s['study'] == d.StudyInstanceUID and s['modality'] == 'MR'\n"
        "    assert s['desc'] == d.SeriesDescription and s['number'] == '#%%d' %% "
        "d.SeriesNumber\n"
        "    assert (d.SOPInstanceUID, '#%%d' %% d.InstanceNumber) in s['inst'], "
        "d.SOPInstanceUID\n"
        "for uid, s in found.items():\n"
        "    mine = [d for d in local if d.SeriesInstanceUID == uid]\n"
        "    assert s['n'] == len(mine) == len(s['inst']) == 5, (uid, s)\n"
        "print('query checked', len(local), 'instances in', len(found), 'series')\n"
        "EOF\n"
        "$B query --from $P $C --series $UNCUID > $D/q1.txt; echo \"q_series=$? "
        "lines=$(wc -l < $D/q1.txt)\"; cat $D/q1.txt\n"
        "$B query --from $P $C --modality CT; echo \"q_ct=$?\"\n"
        "$B query --from $P $C --patient-id 'NOBODY*'; echo \"q_nobody=$?\"\n"
        /* C-MOVE the series sent by convert to our own storage SCP, convert it, denoise it */
        "S=$(awk '/series/ && /mrpipe convert/ {print $2}' $D/query.txt)\n"
        "T=$(awk -v s=$S '/^study/ {t=$2} $2 == s {print t}' $D/query.txt)\n"
        "echo \"study=$T series=$S\"\n"
        "$B fetch --from $P $C --study $T --series $S --output $D/moved --move-dest MRPIPETEST "
        "--port 11112; echo \"move=$?\"\n"
        "ls $D/moved/$S | wc -l | sed 's/^/moved_files=/'\n"
        "ls -A $D/moved | grep -c partial | sed 's/^/moved_partial=/'\n"
        "$B -q convert --input $D/moved/$S --output $D/moved.nii && $PY %s check_nii "
        "$D/moved.nii $FX/series >/dev/null; echo \"moved_nii=$?\"\n"
        "$B -q denoise --input $D/moved/$S --output $D/den/; echo \"denoise=$?\"\n"
        "ls $D/den/*_denoise/IM_*.dcm | wc -l | sed 's/^/denoised_files=/'\n"
        "ls $D/den/*uncertainty*/IM_*.dcm | wc -l | sed 's/^/denoised_sd_files=/'\n"
        /* refusals and bad input */
        "$B fetch --from $P $C --study $T --series $S --output $D/m2 --move-dest NOBODY "
        "--port 11112; echo \"unknown_dest=$?\"\n"
        "$B fetch --from $P $C --study $T --series $S --output $D/m3 --move-dest MRPIPETEST "
        "--port 14243; echo \"port_busy=$?\"\n"
        "$B fetch --from $P $C --study $T --series 1.2.3 --output $D/m4 --move-dest MRPIPETEST "
        "--port 11112; echo \"move_missing=$?\"\n"
        "$B fetch --from $P $C --study $T --series $S --output $D/m5 --move-dest ELSEWHERE "
        "--port 11112 --retries 0; echo \"wrong_place=$?\"\n"
        "ls -A $D | grep -c '^m[2-5]$' | sed 's/^/bad_outputs=/'\n"
        "find $D/m2 $D/m3 $D/m4 $D/m5 2>/dev/null | grep -c . | sed 's/^/bad_files=/'\n"
        "$B query --from WRONG@127.0.0.1:14243 $C; echo \"q_refused=$?\"\n"
        "$B query --from $P $C --study 'a\\\\b'; echo \"q_badkey=$?\"\n"
        "$B fetch --from $P --study $T --series $S --output $D/m6 --move-dest MRPIPETEST; "
        "echo \"no_port=$?\"\n"
        "kill $pid; wait $pid\n",
        dir, mr_test_bin(), mr_test_python(), g_fx, pairdir, img.dir, unc.dir,
        mr_test_src("tests/dicom_fixtures.py"));
    fclose(f);
    /* the SD series' UID for the series query */
    int rc = mr_test_sh("UNCUID=%s unshare -n sh %s", unc.series_uid, script);
    const char *out = mr_test_output();
    if (rc || !strstr(out, "query checked 15")) fprintf(stderr, "%s\n", out);
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT(strstr(out, "send=0") != NULL);
    CU_ASSERT(strstr(out, "storescu=0") != NULL);
    CU_ASSERT(strstr(out, "query=0") != NULL);
    CU_ASSERT(strstr(out, "query checked 15 instances in 3 series") != NULL);
    /* filters: one series by UID (a study line and a series line), no CT, no such patient */
    CU_ASSERT(strstr(out, "q_series=0 lines=2") != NULL);
    CU_ASSERT(strstr(out, "mrpipe uncertainty (SD)") != NULL);
    CU_ASSERT(strstr(out, "q_ct=0") != NULL);
    CU_ASSERT(strstr(out, "q_nobody=0") != NULL);
    CU_ASSERT(strstr(out, "no match") != NULL);
    /* C-MOVE: 5 files, nothing temporary left, same volume and affine, denoised */
    CU_ASSERT(strstr(out, "move=0") != NULL);
    CU_ASSERT(strstr(out, "moved_files=5") != NULL);
    CU_ASSERT(strstr(out, "moved_partial=0") != NULL);
    CU_ASSERT(strstr(out, "moved_nii=0") != NULL);
    CU_ASSERT(strstr(out, "denoise=0") != NULL);
    CU_ASSERT(strstr(out, "denoised_files=5") != NULL);
    CU_ASSERT(strstr(out, "denoised_sd_files=5") != NULL); /* the model's SD series beside it */
    /* errors: clear, exit 1, nothing written */
    CU_ASSERT(strstr(out, "unknown_dest=1") != NULL);
    CU_ASSERT(strstr(out, "did not move it to NOBODY") != NULL);
    CU_ASSERT(strstr(out, "port_busy=1") != NULL);
    CU_ASSERT(strstr(out, "cannot listen on port 14243") != NULL);
    CU_ASSERT(strstr(out, "move_missing=1") != NULL);
    CU_ASSERT(strstr(out, "has no series 1.2.3") != NULL);
    CU_ASSERT(strstr(out, "wrong_place=1") != NULL);
    CU_ASSERT(strstr(out, "did not move it to ELSEWHERE") != NULL);
    CU_ASSERT(strstr(out, "bad_outputs=0") != NULL);
    CU_ASSERT(strstr(out, "bad_files=0") != NULL);
    CU_ASSERT(strstr(out, "q_refused=1") != NULL);
    CU_ASSERT(strstr(out, "refused the association") != NULL);
    CU_ASSERT(strstr(out, "q_badkey=1") != NULL);
    CU_ASSERT(strstr(out, "query key StudyInstanceUID") != NULL);
    CU_ASSERT(strstr(out, "no_port=1") != NULL);
    CU_ASSERT(strstr(out, "--move-dest and --port go together") != NULL);
    mr_dicom_written_free(&img);
    mr_dicom_written_free(&unc);
}

int main(void)
{
    static const mr_test_case cases[] = {
        {"a 2-echo series is one volume per echo", test_two_echoes_split},
        {"info, convert and selection of echoes", test_two_echoes_cli},
        {"uncertainty series: dciodvfy, links, units, geometry, errors", test_uncertainty_series},
        {"PACS: C-FIND back what was sent; C-MOVE, convert, denoise; errors", test_pacs_find_move},
        {NULL, NULL},
    };
    return mr_test_run("dicom_net", cases);
}
