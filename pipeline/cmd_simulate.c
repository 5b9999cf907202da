/*
 * cmd_simulate.c: `mrpipe simulate`: a real magnitude volume (NIfTI) -> fastMRI-layout multi-coil
 * HDF5 with kspace (S, C, 2H, W), reconstruction_rss (S, H, W), max/norm attributes and a minimal
 * valid ismrmrd_header (encoded x = 2 recon x: readout oversampling as scanners do). The work is
 * mr_sim_file_write (simulate_file.c), shared with the pipeline's simulate stage.
 */
#include "mr_pipeline.h"
#include "mr_stages.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *USAGE =
    "usage: mrpipe simulate --input VOL.nii.gz --output OUT.h5 [--coils 8] [--noise 0.01]\n"
    "                       [--axis 0|1|2] [--slices A:B] [--matrix H,W] [--seed 0]\n"
    "\n"
    "  --input VOL     a real magnitude volume (NIfTI; voxel axes i, j, k = W, H, S)\n"
    "  --output OUT    fastMRI-layout .h5: kspace (S, C, 2H, W) complex64, reconstruction_rss\n"
    "                  (S, H, W), attributes max, norm, acquisition, patient_id, ismrmrd_header;\n"
    "                  or BART .cfl: the k-space only (d0 = 2H, d1 = W, d3 = coils, d13 = slices)\n"
    "  --coils C       number of receive coils  [8]\n"
    "  --noise SIGMA   complex Gaussian noise std (per real and imaginary part, per coil, in image\n"
    "                  units) as a fraction of the volume maximum  [0.01]\n"
    "  --axis A        slice orientation, an axis of the (S, H, W) = (k, j, i) array: 0 = planes of\n"
    "                  constant k (the file's own slices), 1 = constant j, 2 = constant i  [0]\n"
    "  --slices A:B    slices A (inclusive) to B (exclusive), 0-based, along --axis  [all]\n"
    "  --matrix H,W    centre-crop or zero-pad each image to H x W first (e.g. 320,368 for\n"
    "                  fastMRI knee-sized k-space (S, C, 640, 368))  [the volume's]\n"
    "  --seed S        seed of the background phase and the noise  [0]\n"
    "\n"
    "Images are shown with the first row at the top; rows run against the volume's second in-plane\n"
    "axis (flipped so that anterior/superior is up for RAS volumes).\n";

typedef struct {
    const char *input, *output;
    long coils, axis, seed, a, b;
    double noise;
    int has_slices, has_matrix;
    size_t mh, mw;
} sim_opts;

static mr_status parse_range(sim_opts *o, const char *v)
{
    char buf[64];
    char *colon;
    if (!v || strlen(v) >= sizeof buf)
        return mr_error_set(MR_ERR_USAGE, "--slices: expected A:B, found '%s'", v ? v : "");
    strcpy(buf, v);
    colon = strchr(buf, ':');
    if (!colon) return mr_error_set(MR_ERR_USAGE, "--slices: expected A:B (0-based, B exclusive), found '%s'", v);
    *colon = '\0';
    if (mr_parse_long(&o->a, "--slices", buf, 0, 1L << 30) ||
        mr_parse_long(&o->b, "--slices", colon + 1, 1, 1L << 30))
        return mr_error_set(MR_ERR_USAGE, "--slices: expected A:B with integers, found '%s'", v);
    if (o->b <= o->a) return mr_error_set(MR_ERR_USAGE, "--slices: empty range '%s' (B must exceed A)", v);
    o->has_slices = 1;
    return MR_OK;
}

static int parse(sim_opts *o, int argc, char **argv)
{
    const char *v;
    mr_status st = MR_OK;
    o->coils = 8;
    o->noise = 0.01;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(USAGE, stdout);
            return -1;
        } else if (mr_opt_value(&v, "--input", argc, argv, &i)) o->input = v;
        else if (mr_opt_value(&v, "--output", argc, argv, &i)) o->output = v;
        else if (mr_opt_value(&v, "--coils", argc, argv, &i)) st = mr_parse_long(&o->coils, "--coils", v, 1, 128);
        else if (mr_opt_value(&v, "--noise", argc, argv, &i)) st = mr_parse_double(&o->noise, "--noise", v, 0, 10);
        else if (mr_opt_value(&v, "--axis", argc, argv, &i)) st = mr_parse_long(&o->axis, "--axis", v, 0, 2);
        else if (mr_opt_value(&v, "--seed", argc, argv, &i)) st = mr_parse_long(&o->seed, "--seed", v, 0, 4294967295L);
        else if (mr_opt_value(&v, "--slices", argc, argv, &i)) st = parse_range(o, v);
        else if (mr_opt_value(&v, "--matrix", argc, argv, &i)) {
            st = mr_parse_shape2(&o->mh, &o->mw, "--matrix", v);
            o->has_matrix = 1;
        }
        else return mr_cli_usage_error("simulate", "unknown option '%s'", argv[i]);
        if (!v) return mr_cli_usage_error("simulate", "%s needs a value", argv[i]);
        if (st != MR_OK) return mr_cli_fail("simulate", st);
    }
    if (!o->input) return mr_cli_usage_error("simulate", "--input is required");
    if (!o->output) return mr_cli_usage_error("simulate", "--output is required");
    return 0;
}

int mr_cmd_simulate(int argc, char **argv)
{
    sim_opts o;
    mr_sim_file_params p;
    mr_status st;
    int rc;
    memset(&o, 0, sizeof o);
    if ((rc = parse(&o, argc, argv)) != 0) return rc < 0 ? 0 : rc;
    if (!mr_path_has_suffix(o.output, ".cfl") && !mr_path_has_suffix(o.output, ".h5") &&
        !mr_path_has_suffix(o.output, ".hdf5"))
        return mr_cli_usage_error("simulate", "--output: expected a .h5 or .cfl file, found '%s'",
                                  o.output);
    memset(&p, 0, sizeof p);
    p.input = o.input;
    p.output = o.output;
    p.coils = o.coils;
    p.noise = o.noise;
    p.axis = o.axis;
    p.seed = o.seed;
    p.has_slices = o.has_slices;
    p.a = o.a;
    p.b = o.b;
    p.has_matrix = o.has_matrix;
    p.mh = o.mh;
    p.mw = o.mw;
    st = mr_sim_file_write(&p);
    if (st == MR_ERR_USAGE && !strncmp(mr_error_message(), "slices ", 7))
        mr_error_prefix(st, "--"); /* the option's name, as before */
    return st == MR_OK ? 0 : mr_cli_fail("simulate", st);
}
