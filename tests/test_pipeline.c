/*
 * test_pipeline.c: the config-driven pipeline. Config errors (each names the key and its line, and
 * nothing is written), --set, `mrpipe run` on a small simulated input, `mrpipe batch --jobs 2` with
 * a broken file (exit 3, the others complete, the failure listed), resume (skip; redo a changed
 * input), kill -9 of the whole process group at random moments then re-run (every scan ends with
 * one complete output set and marker, no partial file, outputs equal to an uninterrupted run),
 * shards (cover every scan exactly once), reproducibility (bit-identical outputs), the SLURM array
 * script run task by task, and the Snakemake workflow (`snakemake --cores 2`).
 */
#include "mr_stages.h"
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CH2 "/usr/share/mricron/templates/ch2.nii.gz"

static void expect_in(const char *hay, const char *needle)
{
    if (!strstr(hay, needle)) fprintf(stderr, "\n'%s' lacks '%s'\n", hay, needle);
    CU_ASSERT(strstr(hay, needle) != NULL);
}

/* Parse + build; returns the status and leaves the message for checks. */
static mr_status build(const char *yaml, const char *const *sets, size_t n_sets)
{
    mr_config *c = NULL;
    mr_pipeline *p = NULL;
    mr_status st = mr_config_parse(&c, yaml, "t.yaml");
    for (size_t i = 0; st == MR_OK && i < n_sets; i++) st = mr_config_set(c, sets[i]);
    if (st != MR_OK) {
        mr_config_destroy(c);
        return st;
    }
    st = mr_pipeline_create(&p, c);
    mr_pipeline_destroy(p);
    return st;
}

static void expect_error(const char *yaml, const char *needle)
{
    mr_error_clear();
    CU_ASSERT(build(yaml, NULL, 0) != MR_OK);
    expect_in(mr_error_message(), needle);
}

/* A small fastMRI-layout k-space file. */
static void make_scan(const char *path, int first, int seed)
{
    CU_ASSERT_FATAL(mr_test_sh("%s -q simulate --input " CH2 " --output %s --coils 4 --slices %d:%d "
                               "--matrix 64,56 --seed %d", mr_test_bin(), path, first, first + 3,
                               seed) == 0);
}

static void test_config_errors(void)
{
    char yaml[2048];
    const char *h5 = mr_test_path("cfg.h5");
    make_scan(h5, 80, 0);
    /* a valid one first */
    snprintf(yaml, sizeof yaml, "inputs:\n  file: %s\nstages:\n  recon: {method: zf}\n", h5);
    mr_error_clear();
    CU_ASSERT_EQUAL(build(yaml, NULL, 0), MR_OK);
    /* unknown stage */
    snprintf(yaml, sizeof yaml, "inputs:\n  file: %s\nstages:\n  recon: {}\n  sharpen:\n"
             "    model: x\n", h5);
    expect_error(yaml, "t.yaml line 5: stages.sharpen: unknown stage 'sharpen'");
    /* unknown key */
    snprintf(yaml, sizeof yaml, "inputs:\n  file: %s\nstages:\n  recon:\n    method: zf\n"
             "    lamda: 0.01\n", h5);
    expect_error(yaml, "t.yaml line 6: stages.recon.lamda: unknown key for stage 'recon'");
    /* wrong type */
    snprintf(yaml, sizeof yaml, "inputs:\n  file: %s\nstages:\n  recon:\n    accel: fast\n", h5);
    expect_error(yaml, "t.yaml line 5: stages.recon.accel: expected a number, found 'fast'");
    snprintf(yaml, sizeof yaml, "inputs:\n  file: %s\nstages:\n  recon: {}\n  write:\n"
             "    formats: h5\n", h5);
    expect_error(yaml, "t.yaml line 6: stages.write.formats: expected a list");
    /* a value the stage refuses */
    snprintf(yaml, sizeof yaml, "inputs:\n  file: %s\nstages:\n  recon:\n    method: magic\n", h5);
    expect_error(yaml, "t.yaml line 5: stages.recon.method: expected one of zf");
    /* missing required keys */
    snprintf(yaml, sizeof yaml, "inputs:\n  file: %s\n", h5);
    expect_error(yaml, "missing required key 'stages'");
    expect_error("stages:\n  recon: {}\n", "missing required key 'inputs'");
    /* input file not found, glob without match, manifest entry missing */
    expect_error("inputs:\n  file: /nonexistent/x.h5\nstages:\n  recon: {}\n",
                 "t.yaml line 2: inputs.file: input file /nonexistent/x.h5 not found");
    expect_error("stages:\n  recon: {}\ninputs:\n  glob: /nonexistent/*.h5\n",
                 "t.yaml line 4: inputs.glob: no file matches '/nonexistent/*.h5'");
    FILE *f = fopen(mr_test_path("list.txt"), "w");
    CU_ASSERT_FATAL(f != NULL);
    fprintf(f, "# scans\n%s\nmissing.h5\n", h5);
    fclose(f);
    snprintf(yaml, sizeof yaml, "inputs:\n  manifest: %s\nstages:\n  recon: {}\n",
             mr_test_path("list.txt"));
    expect_error(yaml, "t.yaml line 2: inputs.manifest: ");
    expect_error(yaml, "list.txt line 3: input file ");
    /* a reference file that does not exist */
    snprintf(yaml, sizeof yaml, "inputs:\n  file: %s\nstages:\n  recon: {}\n  validate:\n"
             "    reference: '{dir}/{id}_ref.nii.gz'\n", h5);
    expect_error(yaml, "t.yaml line 6: stages.validate.reference: reference file ");
    /* YAML syntax, duplicate keys, unknown top-level key, order */
    expect_error("inputs:\n  file: [a, b\nstages: {}\n", "t.yaml line ");
    snprintf(yaml, sizeof yaml, "inputs:\n  file: %s\nstages:\n  recon: {}\n  recon: {}\n", h5);
    expect_error(yaml, "t.yaml line 5: stages.recon: duplicate key (first on line 4)");
    snprintf(yaml, sizeof yaml, "inputs:\n  file: %s\nstage:\n  recon: {}\n", h5);
    expect_error(yaml, "t.yaml line 3: stage: unknown key (top-level keys");
    snprintf(yaml, sizeof yaml, "inputs:\n  file: %s\nstages:\n  validate: {}\n", h5);
    expect_error(yaml, "t.yaml line 4: stages.validate: 'validate' needs a recon stage before it");
    snprintf(yaml, sizeof yaml, "inputs:\n  file: %s\nstages:\n  simulate: {}\n  recon: {}\n", h5);
    expect_error(yaml, "the simulate stage needs NIfTI volumes");
    /* the CLI: exit 1, the message, nothing written */
    f = fopen(mr_test_path("bad.yaml"), "w");
    CU_ASSERT_FATAL(f != NULL);
    fprintf(f, "inputs:\n  file: %s\noutput:\n  dir: %s\nstages:\n  recon:\n    iters: many\n", h5,
            mr_test_path("bad-out"));
    fclose(f);
    CU_ASSERT_EQUAL(mr_test_sh("%s run %s", mr_test_bin(), mr_test_path("bad.yaml")), 1);
    expect_in(mr_test_output(), "bad.yaml line 7: stages.recon.iters: expected an integer, found "
                                "'many'");
    CU_ASSERT(!mr_path_is_dir(mr_test_path("bad-out")));
    CU_ASSERT_EQUAL(mr_test_sh("%s batch %s --jobs 2", mr_test_bin(), mr_test_path("bad.yaml")), 1);
    CU_ASSERT(!mr_path_is_dir(mr_test_path("bad-out")));
}

static void test_set(void)
{
    char yaml[1024];
    const char *h5 = mr_test_path("set.h5");
    make_scan(h5, 80, 0);
    snprintf(yaml, sizeof yaml, "inputs:\n  file: %s\nstages:\n  recon:\n    method: zf\n", h5);
    mr_config *c = NULL;
    mr_pipeline *p = NULL;
    CU_ASSERT_FATAL(mr_config_parse(&c, yaml, "t.yaml") == MR_OK);
    CU_ASSERT(mr_config_set(c, "stages.recon.lambda=0.02") == MR_OK);
    CU_ASSERT(mr_config_set(c, "stages.recon.mask=equispaced") == MR_OK);
    CU_ASSERT(mr_config_set(c, "output.dir=/tmp/elsewhere") == MR_OK);
    CU_ASSERT_FATAL(mr_pipeline_create(&p, c) == MR_OK);
    const mr_cfg_node *r = mr_cfg_child(mr_cfg_child(p->config->root, "stages"), "recon");
    CU_ASSERT_STRING_EQUAL(mr_cfg_child(r, "lambda")->value, "0.02");
    CU_ASSERT_STRING_EQUAL(mr_cfg_child(r, "mask")->value, "equispaced");
    CU_ASSERT_STRING_EQUAL(p->out_dir, "/tmp/elsewhere");
    expect_in(mr_text_str(&p->resolved), "lambda: 0.02");
    expect_in(mr_text_str(&p->resolved), "center_fraction: 0.08"); /* defaults filled in */
    char hash1[65];
    memcpy(hash1, p->config_hash, sizeof hash1);
    mr_pipeline_destroy(p);
    /* a changed stage value changes the config hash; the output directory does not */
    const char *s1[] = {"stages.recon.lambda=0.03"}, *s2[] = {"output.dir=/tmp/x"};
    CU_ASSERT_FATAL(mr_config_parse(&c, yaml, "t.yaml") == MR_OK);
    CU_ASSERT(mr_config_set(c, s1[0]) == MR_OK);
    CU_ASSERT_FATAL(mr_pipeline_create(&p, c) == MR_OK);
    CU_ASSERT(strcmp(p->config_hash, hash1) != 0);
    mr_pipeline_destroy(p);
    /* errors of --set values name the --set key */
    const char *bad[] = {"stages.recon.accel=[1, 2]"};
    mr_error_clear();
    CU_ASSERT(build(yaml, bad, 1) != MR_OK);
    expect_in(mr_error_message(), "--set stages.recon.accel: expected a number, found a list");
    const char *add[] = {"stages.denoise.model=x"};
    CU_ASSERT(build(yaml, add, 1) != MR_OK);
    expect_in(mr_error_message(), "--set stages.denoise.model: the configuration has no stage "
                                  "'denoise'");
    const char *nokey[] = {"stages.recon.bogus=1"};
    CU_ASSERT(build(yaml, nokey, 1) != MR_OK);
    expect_in(mr_error_message(), "--set stages.recon.bogus: unknown key for stage 'recon'");
    const char *noeq[] = {"stages.recon.method"};
    CU_ASSERT(build(yaml, noeq, 1) != MR_OK);
    expect_in(mr_error_message(), "expected key=value");
    (void)s2;
}

/* The files of a finished scan directory. */
static void expect_complete(const char *dir, const char *const *files)
{
    char path[4200];
    for (const char *const *f = files; *f; f++) {
        snprintf(path, sizeof path, "%s/%s", dir, *f);
        if (!mr_path_is_file(path)) fprintf(stderr, "\nmissing %s\n", path);
        CU_ASSERT(mr_path_is_file(path));
    }
}

static void test_run_simulated(void)
{
    const char *dir = mr_test_path("run");
    char cfg[4200];
    snprintf(cfg, sizeof cfg, "%s/run.yaml", mr_test_tmpdir());
    FILE *f = fopen(cfg, "w");
    CU_ASSERT_FATAL(f != NULL);
    fprintf(f, "inputs:\n  file: " CH2 "\noutput:\n  dir: run-out\nstages:\n"
               "  simulate: {coils: 4, slices: '86:89', matrix: '96,80'}\n"
               "  full: {stage: recon}\n"
               "  zf_4x: {stage: recon, mask: equispaced, accel: 4}\n"
               "  zfu_4x: {stage: recon, mask: equispaced, accel: 4, uncertainty: model}\n"
               /* ESPIRiT needs a larger centre than 80 columns x 0.08 */
               "  csb_4x: {stage: recon, method: cs-l1, mask: equispaced, accel: 4, "
               "center_fraction: 0.2, uncertainty: bootstrap}\n"
               "  validate: {}\n  write: {formats: [h5, png, nifti]}\n"
               "  report: {zero_filled: zf_4x}\n");
    fclose(f);
    CU_ASSERT_FATAL(mr_test_sh("mkdir -p %s && cd %s && %s run %s", dir, dir, mr_test_bin(), cfg) == 0);
    const char *files[] = {"kspace.h5", "full.h5", "full.png", "full.nii.gz", "zf_4x.h5",
                           "zf_4x.png", "zfu_4x.h5", "zfu_4x_sd.h5", "zfu_4x_sd.png",
                           "zfu_4x_sd.nii.gz", "csb_4x_sd.h5", "metrics.json", "mrpipe-done.yaml", "report.html",
                           "summary.json", "summary.csv", "summary.html", "config.resolved.yaml",
                           "versions.txt", "mrpipe.log", NULL};
    char out[4200];
    snprintf(out, sizeof out, "%s/run-out", dir);
    expect_complete(out, files);
    CU_ASSERT_EQUAL(mr_test_count_files(out, ".partial"), 0);
    /* the fully sampled recon equals the simulation's reference: NMSE 0 */
    CU_ASSERT(mr_test_sh("grep -A1 '\"full\"' %s/metrics.json", out) == 0);
    expect_in(mr_test_output(), "\"nmse\": 0,");
    CU_ASSERT(mr_test_sh("cat %s/summary.csv", out) == 0);
    expect_in(mr_test_output(), "ch2,/usr/share/mricron/templates/ch2.nii.gz,ok,zf_4x,");
    /* the recon stage's model SD (models/zf_sigma.h5): the map and the noise estimate in the .h5,
     * the SD judged in the report */
    int rc = mr_test_sh("cd %s && %s -c \"import h5py, json, numpy as np\n"
                        "f = h5py.File('zfu_4x.h5')\n"
                        "u, r = f['uncertainty'][()], f['reconstruction'][()]\n"
                        "assert u.shape == r.shape and np.isfinite(u).all() and (u > 0).mean() > 0.9\n"
                        "assert f.attrs['mrpipe_noise_sd'].shape == (3,) and int(f.attrs['mrpipe_coils']) == 4\n"
                        "assert f['mask'].shape == (80,)\n"
                        "m = [x for x in json.load(open('report.json'))['methods'] if x['label'] == 'zfu_4x'][0]\n"
                        "c = m['uncertainty_metrics']['coverage_90']\n"
                        "print('zfu_4x coverage at 90:', c)\n"
                        "assert 0.5 < c <= 1\n"
                        "g = h5py.File('csb_4x_sd.h5')\n"
                        "b, rb = g['uncertainty'][()], h5py.File('csb_4x.h5')['reconstruction'][()]\n"
                        "assert g.attrs['mrpipe_uncertainty'] == 'bootstrap'\n"
                        "assert b.shape == rb.shape and np.isfinite(b).all() and (b[rb > 0.1 * rb.max()] > 0).all()\n"
                        "m = [x for x in json.load(open('report.json'))['methods'] if x['label'] == 'csb_4x'][0]\n"
                        "print('csb_4x (bootstrap) coverage at 90:', m['uncertainty_metrics']['coverage_90'])\n"
                        "assert 0.5 < m['uncertainty_metrics']['coverage_90'] <= 1\n\"", out, mr_test_python());
    CU_ASSERT_EQUAL(rc, 0);
    if (rc) fprintf(stderr, "%s\n", mr_test_output());
    /* again: complete, skipped */
    CU_ASSERT(mr_test_sh("cd %s && %s run %s", dir, mr_test_bin(), cfg) == 0);
    expect_in(mr_test_output(), "1 complete (1 already)");
    /* the stages listing names every stage */
    CU_ASSERT(mr_test_sh("%s stages", mr_test_bin()) == 0);
    expect_in(mr_test_output(), "recon:");
    expect_in(mr_test_output(), "center_fraction");
}

/* inputs: 5 small scans and a broken file. */
static const char *make_batch(const char *name, const char *extra_stages)
{
    static char cfg[4200];
    char dir[4000];
    snprintf(dir, sizeof dir, "%s/%s", mr_test_tmpdir(), name);
    CU_ASSERT_FATAL(mr_test_sh("mkdir -p %s/in", dir) == 0);
    for (int i = 0; i < 5; i++) {
        char p[4300];
        snprintf(p, sizeof p, "%s/in/s%d.h5", dir, i);
        make_scan(p, 60 + 10 * i, i);
    }
    CU_ASSERT_FATAL(mr_test_sh("echo 'not HDF5' > %s/in/broken.h5", dir) == 0);
    snprintf(cfg, sizeof cfg, "%s/batch.yaml", dir);
    FILE *f = fopen(cfg, "w");
    CU_ASSERT_FATAL(f != NULL);
    fprintf(f, "inputs:\n  glob: in/*.h5\noutput:\n  dir: %s/out\nstages:\n"
               "  zf_4x: {stage: recon, mask: equispaced, accel: 4}\n"
               "  zf_8x: {stage: recon, mask: equispaced, accel: 8, center_fraction: 0.04}\n"
               "  validate: {}\n  write: {formats: [h5, png]}\n%s", dir, extra_stages);
    fclose(f);
    return cfg;
}

static void test_batch_failure_and_resume(void)
{
    const char *cfg = make_batch("b1", "");
    char out[4200];
    snprintf(out, sizeof out, "%s/b1/out", mr_test_tmpdir());
    CU_ASSERT_EQUAL(mr_test_sh("%s batch %s --jobs 2", mr_test_bin(), cfg), 3);
    expect_in(mr_test_output(), "broken: stage zf_4x:");
    expect_in(mr_test_output(), "5 complete (0 skipped), 1 failed");
    const char *files[] = {"zf_4x.h5", "zf_4x.png", "zf_8x.h5", "metrics.json", "mrpipe-done.yaml",
                           NULL};
    for (int i = 0; i < 5; i++) {
        char d[4300];
        snprintf(d, sizeof d, "%s/s%d", out, i);
        expect_complete(d, files);
    }
    CU_ASSERT(!mr_path_is_dir(mr_test_path("b1/out/broken")));
    CU_ASSERT(mr_test_sh("cat %s/broken.failed.txt %s/summary.json", out, out) == 0);
    expect_in(mr_test_output(), "not a readable HDF5 file");
    expect_in(mr_test_output(), "\"counts\": {\"total\": 6, \"ok\": 5, \"failed\": 1");
    expect_in(mr_test_output(), "\"status\": \"failed\", \"error\": \"stage zf_4x:");
    expect_in(mr_test_output(), "\"zf_8x\": {\"volumes\": 5, \"nmse\": {\"mean\": ");
    CU_ASSERT(mr_test_sh("grep -c '^ALL,,two_std' %s/summary.csv", out) == 0);
    expect_in(mr_test_output(), "2");
    CU_ASSERT(mr_test_sh("grep 'broken' %s/summary.html %s/mrpipe.log", out, out) == 0);
    /* re-run: the five are skipped, the broken one is retried */
    CU_ASSERT_EQUAL(mr_test_sh("%s batch %s --jobs 2 --no-progress", mr_test_bin(), cfg), 3);
    expect_in(mr_test_output(), "5 complete (5 skipped), 1 failed");
    /* fix the broken input and change another: both are redone, the rest skipped */
    make_scan(mr_test_path("b1/in/broken.h5"), 40, 9);
    make_scan(mr_test_path("b1/in/s2.h5"), 41, 9);
    CU_ASSERT_EQUAL(mr_test_sh("%s batch %s --jobs 2 --no-progress", mr_test_bin(), cfg), 0);
    expect_in(mr_test_output(), "6 complete (4 skipped), 0 failed");
    CU_ASSERT(!mr_path_is_file(mr_test_path("b1/out/broken.failed.txt")));
    /* touched but the same bytes: skipped after comparing the SHA-256 */
    CU_ASSERT(mr_test_sh("touch %s/../in/s1.h5 && %s batch %s --no-progress", out, mr_test_bin(),
                         cfg) == 0);
    expect_in(mr_test_output(), "6 complete (6 skipped)");
    /* a changed stage value: everything redone */
    CU_ASSERT(mr_test_sh("%s batch %s --jobs 2 --no-progress --set stages.zf_8x.seed=3",
                         mr_test_bin(), cfg) == 0);
    expect_in(mr_test_output(), "6 complete (0 skipped)");
}

/* Outputs of two scan directories are equal: HDF5 data and attributes (h5diff: HDF5 stores object
 * times, so the bytes differ), every other file byte for byte. */
static int same_outputs(const char *a, const char *b, const char *id)
{
    return mr_test_sh("cd %s/%s && for f in *; do case $f in mrpipe-done.yaml) ;; *.h5) h5diff "
                      "$f %s/%s/$f || exit 1;; *) cmp $f %s/%s/$f || exit 1;; esac; done; "
                      "[ $(ls | wc -l) = $(ls %s/%s | wc -l) ]", a, id, b, id, b, id, b, id);
}

static void test_kill9_resume(void)
{
    char dir[4200], cfg[4300];
    snprintf(dir, sizeof dir, "%s/k9", mr_test_tmpdir());
    CU_ASSERT_FATAL(mr_test_sh("mkdir -p %s/in && cd %s/in && for i in 0 1 2 3 4 5 6 7; do "
                               "ln -sf " CH2 " v$i.nii.gz; done", dir, dir) == 0);
    snprintf(cfg, sizeof cfg, "%s/k.yaml", dir);
    FILE *f = fopen(cfg, "w");
    CU_ASSERT_FATAL(f != NULL);
    fprintf(f, "inputs:\n  glob: in/*.nii.gz\noutput:\n  dir: out\nstages:\n"
               "  simulate: {coils: 4, slices: '84:90', seed: 1}\n"
               "  zf_4x: {stage: recon, mask: equispaced, accel: 4}\n"
               "  validate: {}\n  write: {formats: [h5, png, nifti]}\n");
    fclose(f);
    /* an uninterrupted run for comparison */
    CU_ASSERT_FATAL(mr_test_sh("cd %s && %s batch k.yaml --jobs 2 --threads 1 --no-progress "
                               "--set output.dir=ref", dir, mr_test_bin()) == 0);
    /* kill -9 the whole process group at random moments, three times, then finish */
    srand((unsigned)time(NULL));
    for (int k = 0; k < 3; k++) {
        int ms = 100 + rand() % 1800;
        printf("\n  kill -9 after %d ms", ms);
        mr_test_sh("cd %s && (setsid %s batch k.yaml --jobs 2 --threads 1 --no-progress "
                   ">/dev/null 2>&1 & pid=$!; sleep %d.%03d; kill -9 -- -$pid; wait $pid) "
                   "2>/dev/null; true", dir, mr_test_bin(), ms / 1000, ms % 1000);
        /* whatever is under a final name is complete: a scan directory always has its marker */
        CU_ASSERT(mr_test_sh("cd %s/out && for d in v*; do [ -d $d ] || continue; "
                             "[ -f $d/mrpipe-done.yaml ] || exit 1; done", dir) == 0);
    }
    CU_ASSERT(mr_test_sh("cd %s && %s batch k.yaml --jobs 2 --threads 1 --no-progress", dir,
                         mr_test_bin()) == 0);
    expect_in(mr_test_output(), "8 complete");
    /* no partial file or directory anywhere; every scan complete and equal to the reference run */
    CU_ASSERT(mr_test_sh("cd %s/out && [ -z \"$(find . -name '*.partial*' -o -name '*.old-*')\" ]",
                         dir) == 0);
    for (int i = 0; i < 8; i++) {
        char id[16], a[4300], b[4300];
        snprintf(id, sizeof id, "v%d", i);
        snprintf(a, sizeof a, "%s/out", dir);
        snprintf(b, sizeof b, "%s/ref", dir);
        CU_ASSERT(same_outputs(a, b, id) == 0);
    }
}

static void test_shards_and_reproducibility(void)
{
    const char *cfg = make_batch("b2", "");
    char out[4200];
    snprintf(out, sizeof out, "%s/b2", mr_test_tmpdir());
    /* shards 0..2 of 3 list every scan exactly once */
    CU_ASSERT(mr_test_sh("for i in 0 1 2; do %s batch %s --shard $i/3 --list; done | cut -f1 | "
                         "sort | uniq -c | awk '$1 != 1 {bad=1} END {exit bad}'", mr_test_bin(),
                         cfg) == 0);
    CU_ASSERT(mr_test_sh("for i in 0 1 2; do %s batch %s --shard $i/3 --list; done | wc -l",
                         mr_test_bin(), cfg) == 0);
    expect_in(mr_test_output(), "6");
    CU_ASSERT_EQUAL(mr_batch_shard_count(6, 0, 3) + mr_batch_shard_count(6, 1, 3) +
                        mr_batch_shard_count(6, 2, 3), 6);
    CU_ASSERT_EQUAL(mr_test_sh("%s batch %s --shard 4/3", mr_test_bin(), cfg), 1);
    /* the SLURM array script, task by task as sbatch would run it, then the gather */
    CU_ASSERT(mr_test_sh("cd %s && for i in 0 1 2; do SLURM_ARRAY_TASK_ID=$i MRPIPE=%s "
                         "%s/scripts/slurm_array.sh %s 3 || exit 1; done && MRPIPE=%s "
                         "%s/scripts/slurm_array.sh --gather %s; [ $? = 3 ]", out, mr_test_bin(),
                         getenv("MRPIPE_SOURCE_DIR"), cfg, mr_test_bin(),
                         getenv("MRPIPE_SOURCE_DIR"), cfg) == 0);
    CU_ASSERT(mr_test_sh("cat %s/out/summary.json", out) == 0);
    expect_in(mr_test_output(), "\"counts\": {\"total\": 6, \"ok\": 5, \"failed\": 1, \"missing\": 0}");
    /* reproducible: a second run into another directory, same threads: identical outputs */
    CU_ASSERT_EQUAL(mr_test_sh("%s batch %s --jobs 2 --threads 1 --no-progress --set "
                               "output.dir=%s/out2", mr_test_bin(), cfg, out), 3);
    for (int i = 0; i < 5; i++) {
        char id[16], a[4300], b[4300];
        snprintf(id, sizeof id, "s%d", i);
        snprintf(a, sizeof a, "%s/out", out);
        snprintf(b, sizeof b, "%s/out2", out);
        CU_ASSERT(same_outputs(a, b, id) == 0);
    }
}

static void test_snakemake(void)
{
    if (mr_test_sh("snakemake --version") != 0) {
        fprintf(stderr, "\n  snakemake not installed (scripts/install-deps.sh --test): skipped\n");
        CU_FAIL("snakemake missing");
        return;
    }
    const char *cfg = make_batch("b3", "");
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/b3", mr_test_tmpdir());
    CU_ASSERT(mr_test_sh("cd %s && snakemake -s %s/scripts/Snakefile --cores 2 --config "
                         "config=%s mrpipe=%s", dir, getenv("MRPIPE_SOURCE_DIR"), cfg,
                         mr_test_bin()) == 0);
    CU_ASSERT(mr_test_sh("cat %s/out/summary.json", dir) == 0);
    expect_in(mr_test_output(), "\"counts\": {\"total\": 6, \"ok\": 5, \"failed\": 1, \"missing\": 0}");
    for (int i = 0; i < 5; i++) {
        char d[4300];
        const char *files[] = {"zf_4x.h5", "mrpipe-done.yaml", NULL};
        snprintf(d, sizeof d, "%s/out/s%d", dir, i);
        expect_complete(d, files);
    }
}

int main(void)
{
    static const mr_test_case cases[] = {
        {"config errors name the key and line; nothing written", test_config_errors},
        {"--set overrides, defaults, config hash", test_set},
        {"run on a small simulated input (flat layout, report, skip)", test_run_simulated},
        {"batch --jobs 2 with a broken file; resume", test_batch_failure_and_resume},
        {"kill -9 at random moments, re-run: complete, no partial file", test_kill9_resume},
        {"shards, SLURM array script, reproducibility", test_shards_and_reproducibility},
        {"Snakemake workflow (--cores 2)", test_snakemake},
        {NULL, NULL},
    };
    return mr_test_run("pipeline", cases);
}
