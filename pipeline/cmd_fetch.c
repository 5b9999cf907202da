/*
 * cmd_fetch.c: `mrpipe fetch`: retrieve a series from a PACS by Study/Series UID with C-GET
 * (PS3.4 C.4.3), or with C-MOVE (C.4.2) to a storage SCP mrpipe runs for the time of the request,
 * into a local folder, for `mrpipe convert` and batch runs. docs/dicom.md.
 */
#include "mr_io.h"
#include "mr_pipeline.h"

#include <stdio.h>
#include <string.h>

static const char *USAGE =
    "usage: mrpipe fetch --from AET@HOST:PORT --study UID --series UID --output DIR\n"
    "                    [--move-dest AET --port PORT] [--calling-aet AET] [--retries N]\n"
    "\n"
    "  --from AET@HOST:PORT  the PACS (its AE title, host and DICOM port)\n"
    "  --study UID           StudyInstanceUID of the series\n"
    "  --series UID          SeriesInstanceUID to retrieve\n"
    "  --output DIR          the series is stored in DIR/<series UID>/ (written under a temporary\n"
    "                        name and renamed when complete)\n"
    "  --move-dest AET       retrieve with C-MOVE instead of C-GET: the PACS sends the series to\n"
    "                        AET, which mrpipe serves on --port for the time of the request (the\n"
    "                        PACS must know AET with this host and port, e.g. Orthanc's\n"
    "                        DicomModalities)\n"
    "  --port PORT           the port of the --move-dest storage SCP (all interfaces)\n"
    "  --calling-aet AET     our AE title  [MRPIPE]\n"
    "  --retries N           retries of a failed connection (not of a refusal)  [2]\n";

int mr_cmd_fetch(int argc, char **argv)
{
    const char *v, *from = NULL, *study = NULL, *series = NULL, *out = NULL, *calling = NULL,
                   *dest = NULL;
    long retries = 2, port = 0;
    mr_dicom_peer peer;
    mr_status st;
    size_t got;
    for (int i = 1; i < argc; i++) {
        v = "";
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(USAGE, stdout);
            return 0;
        } else if (mr_opt_value(&v, "--from", argc, argv, &i))
            from = v;
        else if (mr_opt_value(&v, "--study", argc, argv, &i))
            study = v;
        else if (mr_opt_value(&v, "--series", argc, argv, &i))
            series = v;
        else if (mr_opt_value(&v, "--output", argc, argv, &i))
            out = v;
        else if (mr_opt_value(&v, "--move-dest", argc, argv, &i))
            dest = v;
        else if (mr_opt_value(&v, "--port", argc, argv, &i)) {
            if ((st = mr_parse_long(&port, "--port", v, 1, 65535)) != MR_OK)
                return mr_cli_fail("fetch", st);
        } else if (mr_opt_value(&v, "--calling-aet", argc, argv, &i))
            calling = v;
        else if (mr_opt_value(&v, "--retries", argc, argv, &i)) {
            if ((st = mr_parse_long(&retries, "--retries", v, 0, 100)) != MR_OK)
                return mr_cli_fail("fetch", st);
        } else
            return mr_cli_usage_error("fetch", "unknown option '%s'", argv[i]);
        if (!v) return mr_cli_usage_error("fetch", "%s needs a value", argv[i]);
    }
    if (!from || !study || !series || !out)
        return mr_cli_usage_error("fetch", "--from, --study, --series and --output are required");
    if (!dest != !port)
        return mr_cli_usage_error("fetch", "--move-dest and --port go together (C-MOVE)");
    if ((st = mr_dicom_peer_parse(&peer, from)) != MR_OK) return mr_cli_fail("fetch", st);
    st = dest ? mr_dicom_fetch_move(&got, &peer, calling, study, series, out, dest, (int)port,
                                    (int)retries)
              : mr_dicom_fetch(&got, &peer, calling, study, series, out, (int)retries);
    if (st != MR_OK) return mr_cli_fail("fetch", st);
    printf("%s/%s\n", out, series);
    return 0;
}
