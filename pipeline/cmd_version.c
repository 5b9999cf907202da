/*
 * cmd_version.c: `mrpipe --version` / `mrpipe version`: mrpipe's version and the versions of the
 * libraries it runs with (FFTW, HDF5, OpenBLAS, DCMTK, libxml2, libpng, zlib, ISMRMRD), also as a
 * name/value list (mr_versions_collect) for reports.
 */
#include "mr_pipeline.h"
#include "mr_recon.h"

#include <hdf5.h>
#include <ismrmrd/version.h>
#include <libxml/xmlversion.h>
#include <png.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <zlib.h>

extern const char *mr_dcmtk_version(void);
extern char *openblas_get_config(void);

static void put_version(mr_version_entry *e, size_t *n, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void put_version(mr_version_entry *e, size_t *n, const char *name, const char *fmt, ...)
{
    va_list ap;
    e[*n].name = name;
    va_start(ap, fmt);
    vsnprintf(e[*n].value, sizeof e[*n].value, fmt, ap);
    va_end(ap);
    (*n)++;
}

size_t mr_versions_collect(mr_version_entry out[MR_VERSIONS_MAX])
{
    unsigned maj, min, rel;
    size_t n = 0;
    H5get_libversion(&maj, &min, &rel);
    put_version(out, &n, "FFTW", "%s", mr_fft_version());
    put_version(out, &n, "HDF5", "%u.%u.%u", maj, min, rel);
    put_version(out, &n, "OpenBLAS", "%s", openblas_get_config());
    put_version(out, &n, "DCMTK", "%s", mr_dcmtk_version());
    put_version(out, &n, "ISMRMRD", "%d.%d.%d", ISMRMRD_VERSION_MAJOR, ISMRMRD_VERSION_MINOR,
                ISMRMRD_VERSION_PATCH);
    put_version(out, &n, "libxml2", "%s", LIBXML_DOTTED_VERSION);
    put_version(out, &n, "libpng", "%s", png_get_libpng_ver(NULL));
    put_version(out, &n, "zlib", "%s", zlibVersion());
    return n;
}

void mr_print_versions(void *file)
{
    FILE *f = file;
    mr_version_entry v[MR_VERSIONS_MAX];
    size_t n = mr_versions_collect(v);
    fprintf(f, "mrpipe %s\n", MR_VERSION_STRING);
    for (size_t i = 0; i < n; i++) fprintf(f, "  %-10s%s\n", v[i].name, v[i].value);
    const char *root = mr_data_root();
    fprintf(f, "data root   %s\n", root ? root : mr_error_message());
}

int mr_cmd_version(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    mr_print_versions(stdout);
    return 0;
}
