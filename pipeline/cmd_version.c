/*
 * cmd_version.c: `mrpipe --version` / `mrpipe version`: mrpipe's version and the versions of the
 * libraries it runs with (FFTW, HDF5, OpenBLAS, DCMTK, libxml2, libpng, zlib, ISMRMRD).
 */
#include "mr_pipeline.h"
#include "mr_recon.h"

#include <hdf5.h>
#include <ismrmrd/version.h>
#include <libxml/xmlversion.h>
#include <png.h>
#include <stdio.h>
#include <string.h>
#include <zlib.h>

extern const char *mr_dcmtk_version(void);
extern char *openblas_get_config(void);

void mr_print_versions(void *file)
{
    FILE *f = file;
    unsigned maj, min, rel;
    H5get_libversion(&maj, &min, &rel);
    fprintf(f, "mrpipe %s\n", MR_VERSION_STRING);
    fprintf(f, "  FFTW      %s\n", mr_fft_version());
    fprintf(f, "  HDF5      %u.%u.%u\n", maj, min, rel);
    fprintf(f, "  OpenBLAS  %s\n", openblas_get_config());
    fprintf(f, "  DCMTK     %s\n", mr_dcmtk_version());
    fprintf(f, "  ISMRMRD   %d.%d.%d\n", ISMRMRD_VERSION_MAJOR, ISMRMRD_VERSION_MINOR,
            ISMRMRD_VERSION_PATCH);
    fprintf(f, "  libxml2   %s\n", LIBXML_DOTTED_VERSION);
    fprintf(f, "  libpng    %s\n", png_get_libpng_ver(NULL));
    fprintf(f, "  zlib      %s\n", zlibVersion());
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
