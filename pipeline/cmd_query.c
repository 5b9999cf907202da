/*
 * cmd_query.c: `mrpipe query`: list the studies and series a PACS holds that match PatientID /
 * StudyInstanceUID / SeriesInstanceUID / Modality (C-FIND, PS3.4 C.4.1, Study Root), optionally
 * with each series' instances; the UIDs printed are what `mrpipe fetch` takes. docs/dicom.md.
 */
#include "mr_io.h"
#include "mr_pipeline.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *USAGE =
    "usage: mrpipe query --from AET@HOST:PORT [--patient-id ID] [--study UID] [--series UID]\n"
    "                    [--modality M] [--instances] [--calling-aet AET] [--retries N]\n"
    "\n"
    "  --from AET@HOST:PORT  the PACS (its AE title, host and DICOM port)\n"
    "  --patient-id ID       PatientID to match ('*' and '?' wildcards allowed)\n"
    "  --study UID           StudyInstanceUID to match\n"
    "  --series UID          SeriesInstanceUID to match\n"
    "  --modality M          Modality to match, e.g. MR\n"
    "  --instances           also list each series' instances (SOPInstanceUID, InstanceNumber)\n"
    "  --calling-aet AET     our AE title  [MRPIPE]\n"
    "  --retries N           retries of a failed connection (not of a refusal)  [2]\n"
    "\n"
    "Prints one line per study and per series (and per instance with --instances):\n"
    "  study <StudyInstanceUID> patient <PatientID> date <StudyDate> \"<StudyDescription>\"\n"
    "    series <SeriesInstanceUID> <Modality> #<SeriesNumber> <N> instance(s) \"<description>\"\n"
    "      instance <SOPInstanceUID> #<InstanceNumber>\n"
    "Nothing found: 'no match' on stderr, exit 0. Values the PACS did not return print as '-'.\n";

int mr_cmd_query(int argc, char **argv)
{
    const char *v, *from = NULL, *calling = NULL;
    mr_dicom_query_keys keys = {NULL, NULL, NULL, NULL};
    mr_dicom_found_series *found = NULL;
    long retries = 2;
    int instances = 0;
    size_t n = 0;
    mr_dicom_peer peer;
    mr_status st;
    for (int i = 1; i < argc; i++) {
        v = "";
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(USAGE, stdout);
            return 0;
        } else if (!strcmp(argv[i], "--instances"))
            instances = 1;
        else if (mr_opt_value(&v, "--from", argc, argv, &i))
            from = v;
        else if (mr_opt_value(&v, "--patient-id", argc, argv, &i))
            keys.patient_id = v;
        else if (mr_opt_value(&v, "--study", argc, argv, &i))
            keys.study_uid = v;
        else if (mr_opt_value(&v, "--series", argc, argv, &i))
            keys.series_uid = v;
        else if (mr_opt_value(&v, "--modality", argc, argv, &i))
            keys.modality = v;
        else if (mr_opt_value(&v, "--calling-aet", argc, argv, &i))
            calling = v;
        else if (mr_opt_value(&v, "--retries", argc, argv, &i)) {
            if ((st = mr_parse_long(&retries, "--retries", v, 0, 100)) != MR_OK)
                return mr_cli_fail("query", st);
        } else
            return mr_cli_usage_error("query", "unknown option '%s'", argv[i]);
        if (!v) return mr_cli_usage_error("query", "%s needs a value", argv[i]);
    }
    if (!from) return mr_cli_usage_error("query", "--from is required");
    if ((st = mr_dicom_peer_parse(&peer, from)) != MR_OK) return mr_cli_fail("query", st);
    if ((st = mr_dicom_query(&found, &n, &peer, calling, &keys, (int)retries)) != MR_OK)
        return mr_cli_fail("query", st);
    if (n == 0) fprintf(stderr, "mrpipe query: no match\n");
    for (size_t i = 0; i < n && st == MR_OK; i++) {
        const mr_dicom_found_series *f = &found[i];
        if (i == 0 || strcmp(f->study_uid, found[i - 1].study_uid))
            printf("study %s patient %s date %s \"%s\"\n", f->study_uid,
                   f->patient_id[0] ? f->patient_id : "-", f->study_date[0] ? f->study_date : "-",
                   f->study_description);
        printf("  series %s %s #", f->series_uid, f->modality[0] ? f->modality : "-");
        if (f->series_number >= 0)
            printf("%ld", f->series_number);
        else
            printf("-");
        if (f->instances >= 0)
            printf(" %ld instance(s)", f->instances);
        else
            printf(" - instance(s)");
        printf(" \"%s\"\n", f->description);
        if (instances) {
            mr_dicom_found_instance *in = NULL;
            size_t m = 0;
            if ((st = mr_dicom_query_instances(&in, &m, &peer, calling, f->study_uid, f->series_uid,
                                               (int)retries)) != MR_OK)
                break;
            for (size_t k = 0; k < m; k++) {
                printf("    instance %s #", in[k].sop_instance_uid);
                if (in[k].instance_number >= 0)
                    printf("%ld\n", in[k].instance_number);
                else
                    printf("-\n");
            }
            free(in);
        }
    }
    free(found);
    return st == MR_OK ? 0 : mr_cli_fail("query", st);
}
