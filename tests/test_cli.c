/*
 * test_cli.c: the mrpipe binary as a user meets it: --version (library versions, data root found
 * from any current directory, after `cmake --install`, or from $MRPIPE_HOME), `info` on each format,
 * --help on every subcommand, and usage errors (exit 1, message naming the option).
 */
#include "mr_pipeline.h"
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void expect_in_output(const char *needle)
{
    if (!strstr(mr_test_output(), needle))
        fprintf(stderr, "output lacks '%s':\n%s\n", needle, mr_test_output());
    CU_ASSERT(strstr(mr_test_output(), needle) != NULL);
}

static void test_version(void)
{
    CU_ASSERT(mr_test_sh("cd / && %s --version", mr_test_bin()) == 0);
    expect_in_output("mrpipe " MR_VERSION_STRING);
    expect_in_output("FFTW      fftw-3");
    expect_in_output("HDF5      1.");
    expect_in_output("OpenBLAS");
    expect_in_output("DCMTK     3.");
    /* from / the data root is still the source tree (never the current directory) */
    char want[4200];
    snprintf(want, sizeof want, "data root   %s", getenv("MRPIPE_SOURCE_DIR"));
    expect_in_output(want);
    CU_ASSERT(mr_test_sh("%s version", mr_test_bin()) == 0);
    expect_in_output("mrpipe " MR_VERSION_STRING);
}

static void test_data_root_install_and_home(void)
{
    const char *prefix = mr_test_path("inst");
    char want[4200];
    CU_ASSERT_FATAL(mr_test_sh("cmake --install %s --prefix %s", getenv("MRPIPE_BUILD_DIR"),
                               prefix) == 0);
    CU_ASSERT(mr_test_sh("cd / && %s/bin/mrpipe --version", prefix) == 0);
    snprintf(want, sizeof want, "data root   %s/share/mrpipe", prefix);
    expect_in_output(want);
    /* $MRPIPE_HOME wins */
    CU_ASSERT(mr_test_sh("mkdir -p %s/home/configs && cd / && MRPIPE_HOME=%s/home %s --version",
                         mr_test_tmpdir(), mr_test_tmpdir(), mr_test_bin()) == 0);
    snprintf(want, sizeof want, "data root   %s/home", mr_test_tmpdir());
    expect_in_output(want);
    /* a $MRPIPE_HOME without configs/ is reported, not silently replaced */
    CU_ASSERT(mr_test_sh("MRPIPE_HOME=/nonexistent %s --version", mr_test_bin()) == 0);
    expect_in_output("MRPIPE_HOME=/nonexistent");
}

static void test_info(void)
{
    const char *h5 = mr_test_path("info.h5");
    CU_ASSERT_FATAL(mr_test_sh("%s -q simulate --input /usr/share/mricron/templates/ch2bet.nii.gz "
                               "--output %s --coils 4 --slices 90:92 --axis 1",
                               mr_test_bin(), h5) == 0);
    CU_ASSERT(mr_test_sh("%s info %s", mr_test_bin(), h5) == 0);
    expect_in_output("fastMRI-layout HDF5");
    expect_in_output("kspace: complex64 (2, 4, 362, 181)"); /* axis 1: rows = k (181) x2, cols = i */
    expect_in_output("reconstruction_rss: float32 (2, 181, 181)");
    expect_in_output("encodedSpace 362 x 181");
    expect_in_output("attribute max:");
    CU_ASSERT(mr_test_sh("%s info /usr/share/mricron/templates/ch2.nii.gz", mr_test_bin()) == 0);
    expect_in_output("(181, 217, 181)");
    expect_in_output("pixdim: 1 1 1");
    CU_ASSERT(mr_test_sh("%s info /usr/share/mricron/templates/jhu189.nii.gz", mr_test_bin()) == 0);
    expect_in_output("label atlas");
    CU_ASSERT(mr_test_sh("cd %s && bart phantom -x 32 -k -s 2 ph && %s info ph.cfl",
                         mr_test_tmpdir(), mr_test_bin()) == 0);
    expect_in_output("(S, C, H, W): (1, 2, 32, 32)");
    CU_ASSERT(mr_test_sh("ismrmrd_generate_cartesian_shepp_logan -m 32 -c 2 -C -o %s && %s info %s",
                         mr_test_path("ism.h5"), mr_test_bin(), mr_test_path("ism.h5")) == 0);
    expect_in_output("ISMRMRD");
    expect_in_output("(1, 2, 64, 32)");
    expect_in_output("noise");
    CU_ASSERT(mr_test_sh("%s info %s", mr_test_bin(), mr_test_path("missing.h5")) == 1);
    expect_in_output("missing.h5");
}

static void test_help_and_usage(void)
{
    for (const mr_command *c = mr_commands; c->name; c++) {
        CU_ASSERT(mr_test_sh("%s %s --help", mr_test_bin(), c->name) == 0);
        if (strcmp(c->name, "version") != 0) expect_in_output("usage: mrpipe");
    }
    CU_ASSERT(mr_test_sh("%s --help", mr_test_bin()) == 0);
    expect_in_output("recon");
    CU_ASSERT(mr_test_sh("%s", mr_test_bin()) == 1);
    CU_ASSERT(mr_test_sh("%s frobnicate", mr_test_bin()) == 1);
    expect_in_output("unknown command 'frobnicate'");
    CU_ASSERT(mr_test_sh("%s recon --input x.h5 --output y.h5 --bogus 1", mr_test_bin()) == 1);
    expect_in_output("unknown option '--bogus'");
    CU_ASSERT(mr_test_sh("%s recon --output y.h5", mr_test_bin()) == 1);
    expect_in_output("--input is required");
    CU_ASSERT(mr_test_sh("%s recon --input x.h5 --output y.h5 --method magic", mr_test_bin()) == 1);
    expect_in_output("magic");
    CU_ASSERT(mr_test_sh("%s simulate --input x.nii --output y.h5 --slices 5:2", mr_test_bin()) == 1);
    expect_in_output("--slices");
    CU_ASSERT(mr_test_sh("%s simulate --input /usr/share/mricron/templates/ch2.nii.gz --output %s "
                         "--slices 170:200",
                         mr_test_bin(), mr_test_path("s.h5")) == 1);
    expect_in_output("181 slices");
    CU_ASSERT(mr_test_count_files(mr_test_tmpdir(), ".partial") == 0);
}

int main(void)
{
    const mr_test_case cases[] = {
        {"--version prints libraries and the data root from any directory", test_version},
        {"data root after cmake --install and from $MRPIPE_HOME", test_data_root_install_and_home},
        {"info on fastMRI, NIfTI, label atlas, cfl and ISMRMRD files", test_info},
        {"--help on every command; usage errors", test_help_and_usage},
        {NULL, NULL},
    };
    return mr_test_run("cli", cases);
}
