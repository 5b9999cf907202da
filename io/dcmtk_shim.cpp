// dcmtk_shim.cpp: the thin extern "C" shim over DCMTK (C++). For now it reports the DCMTK version
// mrpipe is built against; DICOM reading and writing come through this file (issue 7).
#include "dcmtk/config/osconfig.h"
#include "dcmtk/dcmdata/dcuid.h"

extern "C" const char *mr_dcmtk_version(void) { return OFFIS_DCMTK_VERSION_STRING; }
