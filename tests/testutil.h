/*
 * testutil.h: shared helpers for mrpipe's CUnit suites: running a suite, scratch directories,
 * running the mrpipe CLI and oracle programs (BART, Python with numpy/h5py/skimage) and capturing
 * their output.
 */
#ifndef MR_TESTUTIL_H
#define MR_TESTUTIL_H

#include <CUnit/Basic.h>
#include <stddef.h>

#include "mr_core.h"

typedef struct {
    const char *name;
    void (*fn)(void);
} mr_test_case;

/* Run one suite of cases (terminated by {NULL, NULL}); returns the process exit code
 * (0 when every assertion passed). */
int mr_test_run(const char *suite, const mr_test_case *cases);

/* A fresh scratch directory for this process (under $MRPIPE_TEST_TMP or /tmp). */
const char *mr_test_tmpdir(void);

/* Path "<tmpdir>/<name>" in a static rotating buffer (8 slots). */
const char *mr_test_path(const char *name);

/* Path of a file in the source tree ("tests/data/x" -> "<src>/tests/data/x"), rotating buffer. */
const char *mr_test_src(const char *rel);

/* The mrpipe binary under test. */
const char *mr_test_bin(void);

/* Run a shell command (printf-style); capture stdout+stderr into a static buffer readable with
 * mr_test_output(). Returns the exit status (or -1 if it could not run). */
int mr_test_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Output of the last mr_test_sh. */
const char *mr_test_output(void);

/* The Python interpreter that has Debian's numpy/h5py/skimage ("/usr/bin/python3"). */
const char *mr_test_python(void);

/* The training configs' data section (7 lines): Debian's Colin27 (mricron-data) for training,
 * validation slab z 20..40 mm, calibration slab z -10..10 mm (the shipped models' split). */
#define MR_TEST_CH2_SPLIT                                                                          \
    "data:\n"                                                                                      \
    "  dir: /usr/share/mricron/templates\n"                                                        \
    "  training: [ch2.nii.gz]\n"                                                                   \
    "  validation:\n"                                                                              \
    "    - {file: ch2.nii.gz, z_mm: [20, 40]}\n"                                                   \
    "  calibration:\n"                                                                             \
    "    - {file: ch2.nii.gz, z_mm: [-10, 10]}\n"

/* Write text to path (a CUnit fatal assertion when the file cannot be created). */
void mr_test_write_text(const char *path, const char *text);

/* Count files in a directory whose name contains `needle` (e.g. ".partial"). */
int mr_test_count_files(const char *dir, const char *needle);

/* Deterministic standard normal variates (xorshift + Box-Muller) for test inputs. */
typedef struct { unsigned long long s; int has; double spare; } mr_test_rng;
void mr_test_rng_init(mr_test_rng *r, unsigned long long seed);
double mr_test_randn(mr_test_rng *r);
double mr_test_randu(mr_test_rng *r);

#endif
