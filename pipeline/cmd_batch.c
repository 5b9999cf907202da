/*
 * cmd_batch.c: `mrpipe batch CONFIG.yaml [--jobs N] [--threads T] [--shard I/N] ...`: a pipeline
 * over many scans (inputs from a glob or a manifest) in N worker processes, resumable, with a
 * progress bar, a log file and a summary (batch.c). Also the pieces a cluster workflow needs:
 * --list (the scans of a shard), --scan ID (one scan: a Snakemake job), --gather (the summary
 * over everything on disk).
 */
#include "mr_pipeline.h"
#include "mr_stages.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *USAGE =
    "usage: mrpipe batch CONFIG.yaml [--jobs N] [--threads T] [--shard I/N] [--set KEY=VALUE ...]\n"
    "                    [--force] [--no-progress] [--scan ID | --list | --gather]\n"
    "\n"
    "  --jobs N           worker processes  [1]\n"
    "  --threads T        threads per worker (MRPIPE_THREADS)  [cores / N]\n"
    "  --shard I/N        process inputs I, I+N, I+2N, ... (0 <= I < N): one SLURM array task\n"
    "  --set KEY=VALUE    override a value by its dotted path (repeatable)\n"
    "  --force            redo scans whose outputs are complete\n"
    "  --no-progress      no progress bar on stderr (the log file still records everything)\n"
    "  --scan ID          process only the scan with this output name (one Snakemake job)\n"
    "  --list             print the scans (ID<TAB>INPUT) of this shard and exit\n"
    "  --gather           no processing: write the summary over all inputs from what is on disk\n"
    "\n"
    "Outputs: OUT/ID/ per scan (renamed into place when complete, with the marker\n"
    "mrpipe-done.yaml), OUT/ID.failed.txt for a failed scan, OUT/mrpipe.log, OUT/summary.{json,csv,\n"
    "html} (OUT/summary.shard-I-of-N.* for a shard), OUT/config.resolved.yaml, OUT/versions.txt.\n"
    "A re-run skips complete scans and redoes the rest. Exit codes: 0 all scans complete, 1 bad\n"
    "configuration or usage, 2 internal error, 3 finished with failures (or scans missing).\n";

int mr_cmd_batch(int argc, char **argv)
{
    const char *config = NULL, *only = NULL;
    const char **sets = NULL;
    size_t n_sets = 0;
    long jobs = 1, threads = 0, si = 0, sn = 0;
    int force = 0, list = 0, gather = 0, progress = 1, rc = 0;
    mr_pipeline *p = NULL;
    mr_status st = MR_OK;
    if (!(sets = calloc((size_t)argc, sizeof *sets))) return mr_cli_fail("batch", MR_ERR_NOMEM);
    for (int i = 1; i < argc && st == MR_OK; i++) {
        const char *v = "";
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(USAGE, stdout);
            free(sets);
            return 0;
        } else if (mr_opt_value(&v, "--set", argc, argv, &i)) {
            if (v) sets[n_sets++] = v;
        } else if (mr_opt_value(&v, "--jobs", argc, argv, &i)) {
            st = mr_parse_long(&jobs, "--jobs", v, 1, 1024);
        } else if (mr_opt_value(&v, "--threads", argc, argv, &i)) {
            st = mr_parse_long(&threads, "--threads", v, 1, 1024);
        } else if (mr_opt_value(&v, "--shard", argc, argv, &i)) {
            char tail;
            if (!v || sscanf(v, "%ld/%ld%c", &si, &sn, &tail) != 2 || sn < 1 || si < 0 || si >= sn)
                st = mr_error_set(MR_ERR_USAGE, "--shard: expected I/N with 0 <= I < N (e.g. 0/4), "
                                  "found '%s'", v ? v : "");
        } else if (mr_opt_value(&v, "--scan", argc, argv, &i)) {
            only = v;
        } else if (!strcmp(argv[i], "--force")) {
            force = 1;
        } else if (!strcmp(argv[i], "--list")) {
            list = 1;
        } else if (!strcmp(argv[i], "--gather")) {
            gather = 1;
        } else if (!strcmp(argv[i], "--no-progress")) {
            progress = 0;
        } else if (argv[i][0] == '-' || config) {
            free(sets);
            return mr_cli_usage_error("batch", "unexpected argument '%s'", argv[i]);
        } else {
            config = argv[i];
        }
        if (!v) {
            free(sets);
            return mr_cli_usage_error("batch", "%s needs a value", argv[i]);
        }
    }
    if (st != MR_OK) {
        free(sets);
        return mr_cli_usage_error("batch", "%s", mr_error_message());
    }
    if (!config) {
        free(sets);
        return mr_cli_usage_error("batch", "CONFIG.yaml is required");
    }
    if (list + gather + (only != NULL) > 1) {
        free(sets);
        return mr_cli_usage_error("batch", "--scan, --list and --gather exclude each other");
    }
    st = mr_pipeline_load(&p, config, sets, n_sets);
    free(sets);
    if (st != MR_OK) return mr_cli_fail("batch", st);
    if (list) {
        for (size_t i = 0; i < p->n_inputs; i++)
            if (sn == 0 || (long)(i % (size_t)sn) == si) printf("%s\t%s\n", p->ids[i], p->inputs[i]);
        mr_pipeline_destroy(p);
        return 0;
    }
    mr_batch_options o;
    mr_batch_counts c;
    memset(&o, 0, sizeof o);
    o.jobs = (int)jobs;
    o.threads = (int)threads;
    o.shard_i = si;
    o.shard_n = sn;
    o.only_id = only;
    o.force = force;
    o.progress = progress && !only;
    o.fork_workers = 1;
    o.gather_only = gather;
    o.argc = argc;
    o.argv = argv;
    st = mr_batch_run(p, &o, &c);
    if (st != MR_OK) {
        rc = mr_cli_fail("batch", st);
    } else {
        if (!only)
            fprintf(stderr, "mrpipe batch: %zu scan(s): %zu complete (%zu skipped), %zu failed, %zu "
                    "missing; summary in %s/\n", c.total, c.done, c.skipped, c.failed, c.missing,
                    p->out_dir);
        if (c.failed + c.missing) rc = 3;
    }
    mr_pipeline_destroy(p);
    return rc;
}
