/*
 * cmd_convert.c: `mrpipe convert`: DICOM series to NIfTI (geometry kept: LPS to RAS in the affine,
 * voxel axes i, j, k = W, H, S), to the other image formats, or to a derived DICOM series (e.g. an
 * anonymized copy for research export, PS3.15 Annex E basic profile), optionally sent to a PACS
 * (C-STORE). docs/dicom.md.
 */
#include "mr_output.h"
#include "mr_pipeline.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *USAGE =
    "usage: mrpipe convert --input DICOM --output OUT [--series UID] [--anonymize]\n"
    "                      [--description TEXT] [--series-number N]\n"
    "                      [--send AET@HOST:PORT [--calling-aet AET] [--retries N]]\n"
    "\n"
    "  --input DICOM       a DICOM file, a folder (searched recursively; its DICOMDIR is used "
    "when\n"
    "                      present) or a DICOMDIR\n"
    "  --output OUT        .nii/.nii.gz (float32, affine from the DICOM geometry, LPS -> RAS),\n"
    "                      .h5, .cfl, .png, or a folder (ends in '/' or exists): a derived DICOM\n"
    "                      series per input series, "
    "OUT/<SeriesNumber>_<description>/IM_<nnnn>.dcm\n"
    "  --series UID        the series to convert when the input holds several (mrpipe info lists\n"
    "                      them); a folder output converts every MR series without it. A series\n"
    "                      whose images differ by echo or time point is one volume per echo:\n"
    "                      each is written (OUT_echo1.nii.gz, OUT_echo2.nii.gz, ...; a folder\n"
    "                      output gets one series per echo), or UID:echo2 picks one\n"
    "  --anonymize         folder output: de-identify (PS3.15 basic profile: patient name and ID\n"
    "                      replaced, birth date and other identifiers removed, new study UID)\n"
    "  --description TEXT  folder output: SeriesDescription  [<source description> mrpipe "
    "convert]\n"
    "  --series-number N   folder output: SeriesNumber  [the source's + 1000]\n"
    "  --send AET@HOST:PORT folder output: also send each series written to a PACS (C-STORE)\n"
    "  --calling-aet AET   our AE title for --send  [MRPIPE]\n"
    "  --retries N         --send: retries of a failed connection (not of a refusal)  [2]\n"
    "\n"
    "Slices are ordered by position along the slice normal (not by file name); rescale slope and\n"
    "intercept are applied; inputs must be MR.\n";

typedef struct {
    const char *input, *output, *series, *description, *send, *calling_aet;
    long series_number, retries;
    int anonymize;
    mr_dicom_peer peer;
} convert_opts;

static int parse(convert_opts *o, int argc, char **argv)
{
    const char *v;
    mr_status st;
    for (int i = 1; i < argc; i++) {
        v = "";
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(USAGE, stdout);
            return -1;
        } else if (!strcmp(argv[i], "--anonymize"))
            o->anonymize = 1;
        else if (mr_opt_value(&v, "--input", argc, argv, &i))
            o->input = v;
        else if (mr_opt_value(&v, "--output", argc, argv, &i))
            o->output = v;
        else if (mr_opt_value(&v, "--series", argc, argv, &i))
            o->series = v;
        else if (mr_opt_value(&v, "--description", argc, argv, &i))
            o->description = v;
        else if (mr_opt_value(&v, "--send", argc, argv, &i)) {
            if (v && (st = mr_dicom_peer_parse(&o->peer, v)) != MR_OK)
                return mr_cli_fail("convert", st);
            o->send = v;
        } else if (mr_opt_value(&v, "--calling-aet", argc, argv, &i))
            o->calling_aet = v;
        else if (mr_opt_value(&v, "--retries", argc, argv, &i)) {
            if ((st = mr_parse_long(&o->retries, "--retries", v, 0, 100)) != MR_OK)
                return mr_cli_fail("convert", st);
        } else if (mr_opt_value(&v, "--series-number", argc, argv, &i)) {
            if ((st = mr_parse_long(&o->series_number, "--series-number", v, 1, 2147483647L)) !=
                MR_OK)
                return mr_cli_fail("convert", st);
        } else
            return mr_cli_usage_error("convert", "unknown option '%s'", argv[i]);
        if (!v) return mr_cli_usage_error("convert", "%s needs a value", argv[i]);
    }
    if (!o->input) return mr_cli_usage_error("convert", "--input is required");
    if (!o->output) return mr_cli_usage_error("convert", "--output is required");
    return 0;
}

/* OUT with "_<label>" before its extension (vol.nii.gz -> vol_echo2.nii.gz); folders unchanged. */
static void output_name(char *buf, size_t size, const char *out, const char *label, mr_format ofmt)
{
    size_t n = strlen(out), cut = n;
    const char *base = strrchr(out, '/');
    base = base ? base + 1 : out;
    if (!label[0] || ofmt == MR_FMT_DICOM) {
        snprintf(buf, size, "%s", out);
        return;
    }
    if (n > 7 && !strcmp(out + n - 7, ".nii.gz"))
        cut = n - 7;
    else if (strrchr(base, '.'))
        cut = (size_t)(strrchr(base, '.') - out);
    snprintf(buf, size, "%.*s_%s%s", (int)cut, out, label, out + cut);
}

/* Convert entry `index`; group: one of several volumes written together (their outputs are told
 * apart by the volume's label). */
static mr_status convert_one(const convert_opts *o, const mr_dicom_set *set, size_t index,
                             mr_format ofmt, int group)
{
    char output[4200];
    mr_dicom_volume *vol = NULL;
    mr_output_extra extra;
    mr_nifti_meta meta;
    mr_dicom_written written;
    char desc[160];
    mr_status st = mr_dicom_volume_read(&vol, set, index, 1);
    if (st != MR_OK) return st;
    memset(&extra, 0, sizeof extra);
    if (ofmt == MR_FMT_NIFTI) {
        mr_dicom_geometry_nifti(&meta, &vol->src.geom);
        extra.nifti = &meta;
    }
    const char *label = mr_dicom_set_series(set, index)->label; /* "echo2" of a split series */
    output_name(output, sizeof output, o->output, group ? label : "", ofmt);
    snprintf(desc, sizeof desc, "%s%s%s%smrpipe convert", vol->src.series.description,
             vol->src.series.description[0] ? " " : "", label, label[0] ? " " : "");
    extra.dicom = &vol->src;
    extra.description = o->description ? o->description : o->anonymize ? "mrpipe anonymized" : desc;
    if (label[0] && (o->description || o->anonymize)) { /* one folder per volume */
        snprintf(desc, sizeof desc, "%s %s", extra.description, label);
        extra.description = desc;
    }
    extra.derivation = o->anonymize ? "mrpipe convert --anonymize (PS3.15 basic profile)"
                                    : "mrpipe convert (16-bit copy of the source series)";
    extra.series_number = o->series_number;
    {
        /* the volumes of a split series (echoes) get distinct SeriesNumbers: the source's + 1000
         * + (volume - 1), as one derived series would get + 1000 */
        const mr_dicom_series_info *si = mr_dicom_set_series(set, index);
        if (!o->series_number && si->volumes > 1 && si->volume >= 1)
            extra.series_number = (vol->src.series.series_number >= 0
                                       ? vol->src.series.series_number + 1000
                                       : 1000) + (long)si->volume - 1;
    }
    extra.anonymize = o->anonymize;
    extra.method = "convert";
    extra.written = &written;
    memset(&written, 0, sizeof written);
    st = mr_output_write_volume(output, vol->data, NULL, &extra);
    if (st == MR_OK && o->send && ofmt == MR_FMT_DICOM)
        st = mr_dicom_send(&o->peer, o->calling_aet, &written, (int)o->retries);
    mr_dicom_written_free(&written);
    if (st == MR_OK)
        MR_INFO("%s: series %s, %zu x %zu x %zu -> %s", o->input, vol->src.series.series_uid,
                vol->data->dims[0], vol->data->dims[1], vol->data->dims[2], output);
    mr_dicom_volume_destroy(vol);
    return st;
}

int mr_cmd_convert(int argc, char **argv)
{
    convert_opts o;
    mr_dicom_set *set = NULL;
    mr_format ofmt;
    mr_status st;
    size_t index;
    int rc;
    memset(&o, 0, sizeof o);
    o.retries = 2;
    if ((rc = parse(&o, argc, argv)) != 0) return rc < 0 ? 0 : rc;
    if ((st = mr_output_detect(&ofmt, o.output)) != MR_OK) return mr_cli_fail("convert", st);
    if (o.anonymize && ofmt != MR_FMT_DICOM)
        return mr_cli_usage_error("convert",
                                  "--anonymize applies to a DICOM folder output; %s "
                                  "carries no patient fields",
                                  o.output);
    if (o.send && ofmt != MR_FMT_DICOM)
        return mr_cli_usage_error("convert", "--send needs a folder output (a DICOM series)");
    if ((st = mr_dicom_set_open(&set, o.input)) != MR_OK) return mr_cli_fail("convert", st);
    if (mr_dicom_set_skipped(set))
        MR_INFO("%s: %zu file(s) skipped (not DICOM images)", o.input, mr_dicom_set_skipped(set));
    if (ofmt == MR_FMT_DICOM && !o.series) {
        size_t n = mr_dicom_set_count(set), done = 0;
        for (size_t i = 0; i < n && st == MR_OK; i++) {
            const mr_dicom_series_info *s = mr_dicom_set_series(set, i);
            if (strcmp(s->modality, "MR")) {
                MR_WARN("series %s: modality %s, not MR: skipped", s->series_uid, s->modality);
                continue;
            }
            if (n > 1 && o.series_number) {
                st = mr_error_set(MR_ERR_USAGE, "--series-number with %zu series: add --series UID",
                                  n);
                break;
            }
            if ((st = convert_one(&o, set, i, ofmt, 1)) == MR_OK) done++;
        }
        if (st == MR_OK && done == 0)
            st = mr_error_set(MR_ERR_INPUT, "%s: no MR series to convert", o.input);
    } else {
        /* a series split into volumes (echoes, time points), named by its UID or the only series:
         * every volume, one output each (OUT_echo1.nii.gz, ...; UID:LABEL picks one) */
        const mr_dicom_series_info *s0 = mr_dicom_set_series(set, 0);
        const char *group = NULL;
        if (!o.series && s0->volumes > 1 && s0->volumes == mr_dicom_set_count(set))
            group = s0->series_uid;
        for (size_t i = 0; o.series && !strchr(o.series, ':') && i < mr_dicom_set_count(set); i++)
            if (!strcmp(mr_dicom_set_series(set, i)->series_uid, o.series) &&
                mr_dicom_set_series(set, i)->volumes > 1)
                group = o.series;
        if (group && o.series_number)
            st = mr_error_set(MR_ERR_USAGE, "--series-number with several volumes (echoes): add "
                                            "--series UID:LABEL");
        for (size_t i = 0; group && st == MR_OK && i < mr_dicom_set_count(set); i++)
            if (!strcmp(mr_dicom_set_series(set, i)->series_uid, group))
                st = convert_one(&o, set, i, ofmt, 1);
        if (!group && (st = mr_dicom_set_select(&index, set, o.series)) == MR_OK)
            st = convert_one(&o, set, index, ofmt, 0);
    }
    mr_dicom_set_close(set);
    return st == MR_OK ? 0 : mr_cli_fail("convert", st);
}
