/*
 * cmd_run.c: `mrpipe run [CONFIG.yaml] [--set key=value ...] [--force]`: run a pipeline
 * configuration on its input(s) in this process. With no configuration, the shipped demo
 * (configs/demo.yaml, found through mr_data_root from any directory), writing ./mrpipe-demo/.
 */
#include "mr_pipeline.h"
#include "mr_stages.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *USAGE =
    "usage: mrpipe run [CONFIG.yaml] [--set KEY=VALUE ...] [--force]\n"
    "\n"
    "  CONFIG.yaml        a pipeline configuration (docs/configs.md; `mrpipe stages` lists the\n"
    "                     stages and their keys)  [the shipped demo: configs/demo.yaml]\n"
    "  --set KEY=VALUE    override a value by its dotted path, e.g. --set stages.recon.lambda=0.02\n"
    "                     or --set output.dir=/tmp/out (repeatable; VALUE is YAML: 4, zf, [h5, png])\n"
    "  --force            redo scans whose outputs are complete (marker matches)\n"
    "\n"
    "Every check (unknown stage or key, wrong type, missing key, input not found) happens before any\n"
    "work; errors name the key and its line. Outputs appear complete or not at all (see `mrpipe\n"
    "batch` for many scans in parallel). Exit codes: 0 success, 1 bad configuration or (one scan)\n"
    "a failed scan, 2 internal error, 3 finished with failures (several scans).\n";

int mr_cmd_run(int argc, char **argv)
{
    const char *config = NULL;
    const char **sets = NULL;
    size_t n_sets = 0;
    int force = 0, rc = 0;
    char demo[4096];
    mr_pipeline *p = NULL;
    mr_status st;
    if (!(sets = calloc((size_t)argc, sizeof *sets))) return mr_cli_fail("run", MR_ERR_NOMEM);
    for (int i = 1; i < argc; i++) {
        const char *v;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(USAGE, stdout);
            free(sets);
            return 0;
        } else if (mr_opt_value(&v, "--set", argc, argv, &i)) {
            if (!v) {
                free(sets);
                return mr_cli_usage_error("run", "--set needs KEY=VALUE");
            }
            sets[n_sets++] = v;
        } else if (!strcmp(argv[i], "--force")) {
            force = 1;
        } else if (argv[i][0] == '-' || config) {
            free(sets);
            return mr_cli_usage_error("run", "unexpected argument '%s'", argv[i]);
        } else {
            config = argv[i];
        }
    }
    if (!config) {
        if ((st = mr_data_path(demo, sizeof demo, "configs/demo.yaml")) != MR_OK) {
            free(sets);
            return mr_cli_fail("run", st);
        }
        config = demo;
        MR_INFO("no configuration given: the demo, %s", config);
    }
    st = mr_pipeline_load(&p, config, sets, n_sets);
    free(sets);
    if (st != MR_OK) return mr_cli_fail("run", st);
    mr_batch_options o;
    mr_batch_counts c;
    memset(&o, 0, sizeof o);
    o.jobs = 1;
    o.force = force;
    o.argc = argc;
    o.argv = argv;
    st = mr_batch_run(p, &o, &c);
    if (st != MR_OK) {
        rc = mr_cli_fail("run", st);
    } else {
        fprintf(stderr, "mrpipe run: %zu scan(s): %zu complete (%zu already), %zu failed; outputs "
                "in %s/\n", c.total, c.done, c.skipped, c.failed + c.missing, p->out_dir);
        if (c.failed + c.missing) rc = p->n_inputs == 1 ? 1 : 3;
    }
    mr_pipeline_destroy(p);
    return rc;
}
