/*
 * cli.c: subcommand dispatch, the stderr log sink, shared option parsing and error printing.
 */
#include "mr_pipeline.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int mr_cmd_query(int argc, char **argv); /* cmd_query.c */

const mr_command mr_commands[] = {
    {"batch", mr_cmd_batch, "run a pipeline config over many scans: parallel, resumable, summary"},
    {"calibrate", mr_cmd_calibrate, "recalibrate a variance network's scales on images made by recon / denoise"},
    {"convert", mr_cmd_convert, "DICOM to NIfTI (geometry kept) or to a derived DICOM series"},
    {"denoise", mr_cmd_denoise, "learned residual-CNN denoiser on a NIfTI, .h5 or DICOM volume"},
    {"fetch", mr_cmd_fetch, "retrieve a series from a PACS (C-GET or C-MOVE) into a folder"},
    {"info", mr_cmd_info, "show what a file holds (format, dims, dtype, attributes)"},
    {"mask", mr_cmd_mask, "make a fastMRI-style or Poisson-disc sampling mask"},
    {"metrics", mr_cmd_metrics, "fastMRI NMSE, PSNR, SSIM of a reconstruction vs a reference"},
    {"query", mr_cmd_query, "list the studies and series a PACS holds (C-FIND)"},
    {"recon", mr_cmd_recon, "reconstruct k-space (zero-filled RSS, ...)"},
    {"report", mr_cmd_report, "validation report (JSON, CSV, self-contained HTML) vs a reference"},
    {"run", mr_cmd_run, "run a pipeline config (YAML) on a scan or a list; no config: the demo"},
    {"simulate", mr_cmd_simulate, "simulate multi-coil k-space from a real magnitude volume"},
    {"stages", mr_cmd_stages, "list the pipeline stages and their config keys"},
    {"train", mr_cmd_train, "train the residual-CNN denoiser from a config (resumable)"},
    {"version", mr_cmd_version, "print mrpipe's version and its libraries' versions"},
    {NULL, NULL, NULL},
};

static void stderr_sink(mr_log_level level, const char *line, void *user)
{
    static const char *names[] = {"debug", "info", "warning", "error"};
    (void)user;
    fprintf(stderr, "mrpipe: %s: %s\n", names[level], line);
}

static void print_help(FILE *f)
{
    fprintf(f, "mrpipe %s: MRI reconstruction, enhancement, uncertainty and validation\n\n"
               "usage: mrpipe <command> [options]   (mrpipe <command> --help for each)\n\n"
               "commands:\n",
            MR_VERSION_STRING);
    for (const mr_command *c = mr_commands; c->name; c++)
        fprintf(f, "  %-10s %s\n", c->name, c->summary);
    fprintf(f, "\noptions: --version, --help, -v/--verbose (debug log), -q/--quiet (warnings only)\n"
               "exit codes: 0 success, 1 bad input or usage, 2 internal error\n");
}

int mr_cli_main(int argc, char **argv)
{
    mr_log_level level = MR_LOG_INFO;
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (!strcmp(argv[i], "--version")) return mr_cmd_version(1, argv);
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            print_help(stdout);
            return 0;
        }
        if (!strcmp(argv[i], "-v") || !strcmp(argv[i], "--verbose")) level = MR_LOG_DEBUG;
        else if (!strcmp(argv[i], "-q") || !strcmp(argv[i], "--quiet")) level = MR_LOG_WARN;
        else {
            fprintf(stderr, "mrpipe: usage error: unknown option '%s' (see mrpipe --help)\n", argv[i]);
            return 1;
        }
    }
    mr_log_set_sink(stderr_sink, NULL, level);
    if (i >= argc) {
        print_help(stderr);
        return 1;
    }
    for (const mr_command *c = mr_commands; c->name; c++)
        if (!strcmp(argv[i], c->name)) return c->fn(argc - i, argv + i);
    fprintf(stderr, "mrpipe: usage error: unknown command '%s' (commands:", argv[i]);
    for (const mr_command *c = mr_commands; c->name; c++) fprintf(stderr, " %s", c->name);
    fprintf(stderr, ")\n");
    return 1;
}

int mr_cli_fail(const char *cmd, mr_status st)
{
    const char *msg = mr_error_message();
    fprintf(stderr, "mrpipe %s: error: %s\n", cmd, *msg ? msg : mr_status_name(st));
    return mr_status_exit_code(st);
}

int mr_cli_usage_error(const char *cmd, const char *fmt, ...)
{
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    fprintf(stderr, "mrpipe %s: usage error: %s (see mrpipe %s --help)\n", cmd, buf, cmd);
    return 1;
}

mr_status mr_parse_double(double *out, const char *opt, const char *s, double lo, double hi)
{
    char *end;
    double v;
    if (!s) return mr_error_set(MR_ERR_USAGE, "%s needs a value", opt);
    errno = 0;
    v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v))
        return mr_error_set(MR_ERR_USAGE, "%s: expected a number, found '%s'", opt, s);
    if (v < lo || v > hi)
        return mr_error_set(MR_ERR_USAGE, "%s: expected a value in [%g, %g], found %s", opt, lo, hi, s);
    *out = v;
    return MR_OK;
}

mr_status mr_parse_long(long *out, const char *opt, const char *s, long lo, long hi)
{
    char *end;
    long v;
    if (!s) return mr_error_set(MR_ERR_USAGE, "%s needs a value", opt);
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || end == s || *end)
        return mr_error_set(MR_ERR_USAGE, "%s: expected an integer, found '%s'", opt, s);
    if (v < lo || v > hi)
        return mr_error_set(MR_ERR_USAGE, "%s: expected an integer in [%ld, %ld], found %s", opt, lo,
                            hi, s);
    *out = v;
    return MR_OK;
}

mr_status mr_parse_shape2(size_t *h, size_t *w, const char *opt, const char *s)
{
    long a, b;
    char buf[128];
    char *comma;
    if (!s || strlen(s) >= sizeof buf) return mr_error_set(MR_ERR_USAGE, "%s needs H,W", opt);
    strcpy(buf, s);
    comma = strchr(buf, ',');
    if (!comma) return mr_error_set(MR_ERR_USAGE, "%s: expected H,W (e.g. 640,368), found '%s'", opt, s);
    *comma = '\0';
    if (mr_parse_long(&a, opt, buf, 1, 1L << 20) || mr_parse_long(&b, opt, comma + 1, 1, 1L << 20))
        return mr_error_set(MR_ERR_USAGE, "%s: expected H,W with positive integers, found '%s'", opt, s);
    *h = (size_t)a;
    *w = (size_t)b;
    return MR_OK;
}

int mr_opt_value(const char **val, const char *name, int argc, char **argv, int *i)
{
    size_t n = strlen(name);
    const char *arg = argv[*i];
    if (strncmp(arg, name, n) != 0) return 0;
    if (arg[n] == '=') {
        *val = arg + n + 1;
        return 1;
    }
    if (arg[n] != '\0') return 0;
    *val = (*i + 1 < argc) ? argv[++*i] : NULL;
    return 1;
}
