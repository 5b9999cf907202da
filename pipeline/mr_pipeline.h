/*
 * mr_pipeline.h: the public header of mrpipe's pipeline module: the CLI subcommands (one
 * `mr_cmd_<name>` per subcommand, each parsing its options and calling library code), and the small
 * option-parsing helpers they share.
 */
#ifndef MR_PIPELINE_H
#define MR_PIPELINE_H

#include "mr_core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A subcommand: argv[0] is the subcommand name. Returns a process exit code (0, 1 or 2). */
typedef int (*mr_cmd_fn)(int argc, char **argv);

typedef struct {
    const char *name;
    mr_cmd_fn fn;
    const char *summary;
} mr_command;

/* The table of subcommands, terminated by {NULL, NULL, NULL}. */
extern const mr_command mr_commands[];

/* Run the CLI (main() calls this). */
int mr_cli_main(int argc, char **argv);

int mr_cmd_batch(int argc, char **argv);
int mr_cmd_convert(int argc, char **argv);
int mr_cmd_denoise(int argc, char **argv);
int mr_cmd_fetch(int argc, char **argv);
int mr_cmd_info(int argc, char **argv);
int mr_cmd_mask(int argc, char **argv);
int mr_cmd_metrics(int argc, char **argv);
int mr_cmd_calibrate(int argc, char **argv);
int mr_cmd_recon(int argc, char **argv);
int mr_cmd_report(int argc, char **argv);
int mr_cmd_run(int argc, char **argv);
int mr_cmd_simulate(int argc, char **argv);
int mr_cmd_stages(int argc, char **argv);
int mr_cmd_train(int argc, char **argv);
int mr_cmd_version(int argc, char **argv);

/* Print "mrpipe <cmd>: error: <message>" for a failed status to stderr; returns its exit code. */
int mr_cli_fail(const char *cmd, mr_status st);

/* Print a usage error ("mrpipe <cmd>: usage error: ... (see mrpipe <cmd> --help)"); returns 1. */
int mr_cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Strict number parsing for option values; MR_ERR_USAGE naming the option when not a number or
 * outside [lo, hi]. */
mr_status mr_parse_double(double *out, const char *opt, const char *s, double lo, double hi);
mr_status mr_parse_long(long *out, const char *opt, const char *s, long lo, long hi);
/* "H,W" -> two sizes >= 1. */
mr_status mr_parse_shape2(size_t *h, size_t *w, const char *opt, const char *s);

/* Option matching for "--name value" and "--name=value": returns 1 when argv[*i] is the option
 * (advancing *i past a separate value) and sets *val (NULL when the value is missing). */
int mr_opt_value(const char **val, const char *name, int argc, char **argv, int *i);

/* Print the version line and library versions (FFTW, HDF5, OpenBLAS, DCMTK, libxml2, libpng). */
void mr_print_versions(void *file);

/* The library versions `mrpipe --version` prints, as name/value pairs in that order (FFTW, HDF5,
 * OpenBLAS, DCMTK, ISMRMRD, libxml2, libpng, zlib), for reports. Returns the count. */
#define MR_VERSIONS_MAX 12
typedef struct {
    const char *name;  /* static */
    char value[256];
} mr_version_entry;
size_t mr_versions_collect(mr_version_entry out[MR_VERSIONS_MAX]);

#ifdef __cplusplus
}
#endif

#endif
