/*
 * mrpipe.c: the one binary; all work is in the library (pipeline/cli.c).
 *
 * OpenMP wait policy: libgomp spin-waits between parallel regions by default, which on a shared or
 * busy machine (batch jobs, other processes) makes mrpipe's many short parallel loops several times
 * slower (measured: SENSE on a 256x256x8 phantom 1.2-4.7 s spinning vs 0.5 s passive, load ~5 on 2
 * cores). libgomp reads OMP_WAIT_POLICY before main() runs, so when the user has not chosen one,
 * mrpipe sets "passive" and re-executes itself once. MRPIPE_NO_REEXEC=1 disables this.
 */
#include "mr_pipeline.h"

#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (!getenv("OMP_WAIT_POLICY") && !getenv("MRPIPE_NO_REEXEC")) {
        setenv("OMP_WAIT_POLICY", "passive", 1);
        setenv("MRPIPE_NO_REEXEC", "1", 1); /* never loop */
        execv("/proc/self/exe", argv);
        /* exec failed (no /proc): run with the default policy */
    }
    return mr_cli_main(argc, argv);
}
