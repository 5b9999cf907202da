/* mrpipe.c: the one binary; all work is in the library (pipeline/cli.c). */
#include "mr_pipeline.h"

int main(int argc, char **argv) { return mr_cli_main(argc, argv); }
