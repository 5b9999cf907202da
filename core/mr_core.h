/*
 * mr_core.h: the public header of mrpipe's core module.
 *
 * What every other module builds on:
 *  - status codes with a kept, thread-local message (SQLite style: the library never prints, never
 *    exits; the CLI turns a status into a message and an exit code);
 *  - n-d arrays of float32 or complex64 in C (row-major) order: dims[0] is the slowest axis, so a
 *    fastMRI multi-coil k-space is (S, C, H, W) with W contiguous, exactly as numpy/h5py see it;
 *  - logging through a sink the application installs (default: silent);
 *  - atomic output: write to a temporary name beside the target, rename when complete;
 *  - locating shipped data (models, configs) independent of the current directory.
 */
#ifndef MR_CORE_H
#define MR_CORE_H

#include <complex.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- version */

#define MR_VERSION_STRING "0.1.0"

/* ---------------------------------------------------------------- status */

/* Status codes. MR_OK is 0; every failing function keeps a message (see mr_error_message). */
typedef enum {
    MR_OK = 0,
    MR_ERR_USAGE,    /* bad command-line usage or bad parameter value (exit 1) */
    MR_ERR_INPUT,    /* bad input data: missing file, wrong shape, dtype, NaN ... (exit 1) */
    MR_ERR_IO,       /* an I/O operation failed: cannot write, disk full ... (exit 1) */
    MR_ERR_NOMEM,    /* allocation failed (exit 2) */
    MR_ERR_INTERNAL, /* a library call failed unexpectedly, a bug (exit 2) */
} mr_status;

/* Keep a printf-style message for the calling thread and return `status` (so that a function can
 * `return mr_error_set(MR_ERR_INPUT, "%s: dataset 'kspace': expected rank 3 or 4, found %d", ...)`).
 * Messages name the file, the dataset/field, what was expected and what was found. */
mr_status mr_error_set(mr_status status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Prefix the kept message with more context ("reading slice 3: " + old message); returns status. */
mr_status mr_error_prefix(mr_status status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The calling thread's last kept message ("" if none). Valid until the next mr_error_* call. */
const char *mr_error_message(void);

/* Clear the calling thread's kept message. */
void mr_error_clear(void);

/* Short name of a status ("bad input", ...). */
const char *mr_status_name(mr_status status);

/* Process exit code for a status: 0 OK, 1 usage/input/io, 2 nomem/internal. */
int mr_status_exit_code(mr_status status);

/* Allocation that keeps an MR_ERR_NOMEM message on failure. Free with free(). */
void *mr_malloc(size_t bytes);
void *mr_calloc(size_t count, size_t size);

/* ---------------------------------------------------------------- logging */

typedef enum { MR_LOG_DEBUG = 0, MR_LOG_INFO, MR_LOG_WARN, MR_LOG_ERROR } mr_log_level;

/* A sink receives complete, formatted lines (without trailing newline). */
typedef void (*mr_log_sink)(mr_log_level level, const char *line, void *user);

/* Install a sink (NULL: silent, the default) and the minimum level passed to it. */
void mr_log_set_sink(mr_log_sink sink, void *user, mr_log_level min_level);

/* Format and pass a line to the sink, if any and if level >= the minimum. Thread-safe. */
void mr_log(mr_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define MR_DEBUG(...) mr_log(MR_LOG_DEBUG, __VA_ARGS__)
#define MR_INFO(...) mr_log(MR_LOG_INFO, __VA_ARGS__)
#define MR_WARN(...) mr_log(MR_LOG_WARN, __VA_ARGS__)

/* ---------------------------------------------------------------- arrays */

#define MR_MAX_DIMS 16

typedef float complex mr_cfloat; /* complex64, layout-compatible with float[2] and fftwf_complex */

typedef enum { MR_FLOAT32 = 0, MR_COMPLEX64 = 1 } mr_dtype;

/* An n-d array in C order: dims[0] slowest, dims[ndim-1] contiguous. Plain data; owns `data`
 * (allocated 64-byte aligned) when created with mr_array_create. */
typedef struct {
    int ndim;                  /* 0 < ndim <= MR_MAX_DIMS */
    size_t dims[MR_MAX_DIMS];  /* sizes; dims[i] >= 1 */
    mr_dtype dtype;            /* element type */
    void *data;                /* numel * mr_dtype_size(dtype) bytes */
} mr_array;

size_t mr_dtype_size(mr_dtype dtype);

/* Create a zero-filled array. Fails with MR_ERR_INPUT on a zero or overflowing size, MR_ERR_NOMEM. */
mr_status mr_array_create(mr_array **out, mr_dtype dtype, int ndim, const size_t *dims);

/* Free the array and its data; NULL is a no-op. */
void mr_array_destroy(mr_array *a);

/* Product of dims. */
size_t mr_array_numel(const mr_array *a);

/* Typed views of the data (the caller must know the dtype). */
static inline float *mr_array_f32(const mr_array *a) { return (float *)a->data; }
static inline mr_cfloat *mr_array_c64(const mr_array *a) { return (mr_cfloat *)a->data; }

/* Product of dims with overflow check: returns 0 and keeps an MR_ERR_INPUT message on overflow. */
mr_status mr_dims_numel(size_t *out, int ndim, const size_t *dims);

/* Format dims as "(35, 15, 640, 368)" into buf. Returns buf. */
char *mr_dims_format(char *buf, size_t bufsize, int ndim, const size_t *dims);

/* 64-byte aligned allocation (free with mr_free_aligned). Keeps MR_ERR_NOMEM on failure. */
void *mr_malloc_aligned(size_t bytes);
void mr_free_aligned(void *p);

/* ---------------------------------------------------------------- atomic output */

/* An output written under a temporary name in the target's directory and renamed over the target
 * when complete, so that no reader ever sees a partial file. */
typedef struct {
    char final_path[4096];
    char tmp_path[4096];
} mr_atomic_file;

/* Choose a temporary name for `final_path` ("DIR/.NAME.partial-PID-N"). Nothing is created.
 * Fails with MR_ERR_USAGE when the path is too long, MR_ERR_IO when the directory does not exist. */
mr_status mr_atomic_begin(mr_atomic_file *af, const char *final_path);

/* Rename the temporary file over the final path (after the caller closed it). */
mr_status mr_atomic_commit(mr_atomic_file *af);

/* Remove the temporary file if it exists. Never fails. */
void mr_atomic_abort(mr_atomic_file *af);

/* Remove temporaries that a killed process left in `dir` (".NAME.partial-PID-N" files whose PID is
 * no longer running), e.g. before a resumed run writes there again. Returns how many were removed;
 * never fails (unreadable directories are skipped). */
int mr_atomic_cleanup_stale(const char *dir);

/* ---------------------------------------------------------------- files and paths */

/* 1 if path exists and is a regular file, 0 otherwise. */
int mr_path_is_file(const char *path);
/* 1 if path exists and is a directory. */
int mr_path_is_dir(const char *path);

/* Does `path` end with `suffix` (case-insensitive)? */
int mr_path_has_suffix(const char *path, const char *suffix);

/* mrpipe's data root: the directory that holds `models/` and `configs/`. In order: $MRPIPE_HOME;
 * <exe>/../share/mrpipe (installed); the source tree recorded at build time when the binary runs from
 * its build tree. Never the current directory. Returns NULL with a message when none is found. */
const char *mr_data_root(void);

/* Join root + "/" + rel into buf; returns MR_ERR_INPUT with a message when it does not exist. */
mr_status mr_data_path(char *buf, size_t bufsize, const char *rel);

/* ---------------------------------------------------------------- numerics */

/* Number of threads mrpipe uses (OpenMP max threads, or $MRPIPE_THREADS). */
int mr_threads(void);

/* ---------------------------------------------------------------- random numbers (core/rng.c) */

/* A seeded generator (xoshiro256**, state from splitmix64) for mrpipe's own sampling: network
 * initialisation, patch sampling, augmentation. Bit-reproducible from the seed on every platform
 * (normal variates use libm's log/sin/cos). Plain data: copy it to fork a stream. Not
 * numpy-compatible: masks use recon's MT19937 for that. */
typedef struct {
    uint64_t s[4];  /* xoshiro256** state */
    int has_spare;  /* a second Box-Muller variate is kept */
    double spare;
} mr_rng;

void mr_rng_seed(mr_rng *rng, uint64_t seed);
uint64_t mr_rng_next(mr_rng *rng);              /* 64 random bits */
double mr_rng_uniform(mr_rng *rng);             /* [0, 1), 53-bit resolution */
uint64_t mr_rng_below(mr_rng *rng, uint64_t n); /* uniform integer in [0, n), unbiased; 0 if n <= 1 */
double mr_rng_normal(mr_rng *rng);              /* standard normal (Box-Muller) */

#ifdef __cplusplus
}
#endif

#endif /* MR_CORE_H */
