/*
 * test_batch_pool.c: the worker pool of `mrpipe batch` (pipeline/batch.c). Each worker holds the
 * next scan in its pipe while it processes one; when a worker dies, the scan it was processing
 * fails and the scan queued behind it goes to another worker (tested with the fault-injection hook
 * MRPIPE_TEST_KILL_WORKER_AT=ID: the worker SIGKILLs itself as it starts scan ID). Also: every scan
 * is started and finished exactly once (OUT/mrpipe.log), the log's per-scan idle times, and the
 * per-scan stage times in summary.json (names, positive, their sum = stage_seconds_total).
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CH2 "/usr/share/mricron/templates/ch2.nii.gz"

/* n small fastMRI-layout scans s0..s{n-1} in DIR/in and DIR/batch.yaml; returns the config path. */
static const char *make_batch(const char *name, int n)
{
    static char cfg[4200];
    char dir[4000];
    snprintf(dir, sizeof dir, "%s/%s", mr_test_tmpdir(), name);
    CU_ASSERT_FATAL(mr_test_sh("mkdir -p %s/in", dir) == 0);
    for (int i = 0; i < n; i++)
        CU_ASSERT_FATAL(mr_test_sh("%s -q simulate --input " CH2 " --output %s/in/s%d.h5 --coils 4 "
                                   "--slices %d:%d --matrix 64,56 --seed %d",
                                   mr_test_bin(), dir, i, 60 + 4 * i, 62 + 4 * i, i) == 0);
    snprintf(cfg, sizeof cfg, "%s/batch.yaml", dir);
    FILE *f = fopen(cfg, "w");
    CU_ASSERT_FATAL(f != NULL);
    fprintf(f,
            "inputs: {glob: in/*.h5}\noutput: {dir: %s/out}\nstages:\n"
            "  zf_4x: {stage: recon, mask: equispaced, accel: 4}\n"
            "  validate: {}\n  write: {formats: [h5]}\n",
            dir);
    fclose(f);
    return cfg;
}

/* Lines of OUT/mrpipe.log matching an extended regex. */
static int log_count(const char *out, const char *regex)
{
    if (mr_test_sh("grep -c -E '%s' %s/mrpipe.log", regex, out) > 1) return -1;
    return atoi(mr_test_output());
}

static void expect_once_each(const char *out, int n, int failed_scan)
{
    for (int i = 0; i < n; i++) {
        char re[256];
        snprintf(re, sizeof re, "\\] s%d: start \\(.*\\), idle [0-9.]+ s$", i);
        int starts = log_count(out, re);
        snprintf(re, sizeof re, "Z s%d: (done in|FAILED)", i);
        int ends = log_count(out, re);
        if (starts != 1 || ends != 1)
            fprintf(stderr, "\n  s%d: %d start and %d done/FAILED lines\n", i, starts, ends);
        CU_ASSERT_EQUAL(starts, 1);
        CU_ASSERT_EQUAL(ends, 1);
        snprintf(re, sizeof re, "Z s%d: FAILED: the worker process died \\(signal 9\\)", i);
        CU_ASSERT_EQUAL(log_count(out, re), i == failed_scan ? 1 : 0);
    }
}

static void test_killed_worker_queued_scan(void)
{
    const char *cfg = make_batch("k1", 5);
    char out[4200];
    snprintf(out, sizeof out, "%s/k1/out", mr_test_tmpdir());
    /* one worker: while it processes s0, s1 waits in its pipe; when s0 is done, s2 is queued
     * behind s1; the worker dies as it starts s1, so s2 must go to the replacement (worker 1) */
    CU_ASSERT_EQUAL(mr_test_sh("MRPIPE_TEST_KILL_WORKER_AT=s1 timeout 120 %s batch %s --jobs 1 "
                               "--threads 1 --no-progress",
                               mr_test_bin(), cfg),
                    3);
    CU_ASSERT(strstr(mr_test_output(), "s1: the worker process died (signal 9)") != NULL);
    CU_ASSERT(strstr(mr_test_output(), "4 complete (0 skipped), 1 failed") != NULL);
    expect_once_each(out, 5, 1);
    CU_ASSERT_EQUAL(log_count(out, "\\[worker 0\\] s0: start "), 1);
    CU_ASSERT_EQUAL(log_count(out, "\\[worker 0\\] s1: start "), 1);
    CU_ASSERT_EQUAL(log_count(out, "\\[worker 1\\] s2: start "), 1);
    CU_ASSERT(mr_test_sh("grep -q 'worker process died (signal 9)' %s/s1.failed.txt", out) == 0);
    CU_ASSERT(mr_test_sh("test ! -e %s/s1", out) == 0);
    for (int i = 0; i < 5; i++)
        if (i != 1)
            CU_ASSERT(mr_test_sh("test -f %s/s%d/mrpipe-done.yaml && test -f %s/s%d/zf_4x.h5", out,
                                 i, out, i) == 0);
    CU_ASSERT(mr_test_sh("grep -c '\"counts\": {\"total\": 5, \"ok\": 4, \"failed\": 1, "
                         "\"missing\": 0}' %s/summary.json",
                         out) == 0);
    CU_ASSERT_EQUAL(mr_test_count_files(out, ".partial"), 0);
    /* without the fault: s1 is redone, the others are skipped */
    CU_ASSERT_EQUAL(
        mr_test_sh("timeout 120 %s batch %s --jobs 1 --no-progress", mr_test_bin(), cfg), 0);
    CU_ASSERT(strstr(mr_test_output(), "5 complete (4 skipped), 0 failed") != NULL);
}

static void test_two_workers_one_dies(void)
{
    const char *cfg = make_batch("k2", 8);
    char out[4200];
    snprintf(out, sizeof out, "%s/k2/out", mr_test_tmpdir());
    CU_ASSERT_EQUAL(mr_test_sh("MRPIPE_TEST_KILL_WORKER_AT=s3 timeout 120 %s batch %s --jobs 2 "
                               "--threads 1 --no-progress",
                               mr_test_bin(), cfg),
                    3);
    CU_ASSERT(strstr(mr_test_output(), "7 complete (0 skipped), 1 failed") != NULL);
    expect_once_each(out, 8, 3);
    CU_ASSERT(mr_test_sh("grep -c '\"counts\": {\"total\": 8, \"ok\": 7, \"failed\": 1, "
                         "\"missing\": 0}' %s/summary.json",
                         out) == 0);
    /* the per-scan stage times in the summary (from the markers) */
    CU_ASSERT(mr_test_sh("%s - %s/summary.json <<'PY'\n"
                         "import json, sys\n"
                         "s = json.load(open(sys.argv[1]))\n"
                         "ok = [x for x in s['scans'] if x['status'] == 'ok']\n"
                         "assert len(ok) == 7, len(ok)\n"
                         "for x in ok:\n"
                         "    st = x['stage_seconds']\n"
                         "    assert sorted(st) == ['validate', 'write', 'zf_4x'], st\n"
                         "    assert all(v > 0 for v in st.values()), st\n"
                         "    assert abs(sum(st.values()) - x['stage_seconds_total']) < 1e-5, x\n"
                         "    assert x['stage_seconds_total'] <= x['seconds'], x\n"
                         "PY",
                         mr_test_python(), out) == 0);
}

int main(void)
{
    static const mr_test_case cases[] = {
        {"a killed worker's queued scan goes to its replacement (jobs 1)",
         test_killed_worker_queued_scan},
        {"jobs 2, one worker dies: every scan once, stage times in the summary",
         test_two_workers_one_dies},
        {NULL, NULL},
    };
    return mr_test_run("batch_pool", cases);
}
