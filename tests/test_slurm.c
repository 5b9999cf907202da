/*
 * test_slurm.c: scripts/slurm_array.sh under a real SLURM. tests/slurm_local.sh starts a
 * single-node SLURM on 127.0.0.1 (munged, slurmctld, slurmd with a minimal slurm.conf in a scratch
 * directory), submits a 3-task array over a small batch with a broken file, waits, checks that
 * every scan was processed exactly once and the summary gathered, and stops the daemons. When
 * slurm-wlm or munge is not installed, or the daemons cannot start here, the script exits 77 and
 * this test is skipped with its reason (it passes without checking anything; the message says so).
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void test_slurm_array(void)
{
    char work[4200];
    const char *src = getenv("MRPIPE_SOURCE_DIR");
    CU_ASSERT_FATAL(src != NULL);
    snprintf(work, sizeof work, "%s/slurm", mr_test_tmpdir());
    int rc = mr_test_sh("bash %s/tests/slurm_local.sh %s %s %s", src, mr_test_bin(), src, work);
    if (rc == 77) {
        fprintf(stderr, "\n  SKIPPED: SLURM cannot run here:\n%s\n", mr_test_output());
        return;
    }
    fprintf(stderr, "\n%s", mr_test_output()); /* what ran, or why it failed */
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT(strstr(mr_test_output(), "slurm_local: OK") != NULL);
}

int main(void)
{
    static const mr_test_case cases[] = {
        {"slurm_array.sh --submit on a local single-node SLURM", test_slurm_array},
        {NULL, NULL},
    };
    return mr_test_run("slurm", cases);
}
