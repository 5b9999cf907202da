/*
 * cmd_recon.c: `mrpipe recon`: reconstruct k-space (fastMRI .h5, ISMRMRD .h5, BART .cfl) slice by
 * slice. Methods: zf (zero-filled RSS). Optional retrospective undersampling with a fastMRI or
 * Poisson mask; columns outside the header's acquired phase-encode range are zeroed as fastMRI does.
 */
#include "mr_output.h"
#include "mr_pipeline.h"
#include "mr_recon.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *USAGE =
    "usage: mrpipe recon --input K --output OUT [--method zf]\n"
    "                    [--mask TYPE --accel R --center-fraction CF [--seed S]]\n"
    "\n"
    "  --input K            k-space: fastMRI .h5 (kspace (S,C,H,W) or (S,H,W)), ISMRMRD .h5 or BART\n"
    "                       .cfl (d0=H readout, d1=W, d3=coils, d13=slices)\n"
    "  --output OUT         .h5 (dataset `reconstruction`, float32 (S,H,W) magnitude), .cfl\n"
    "                       (complex64; zf: the RSS with zero imaginary part), .nii/.nii.gz\n"
    "                       (magnitude) or .png (montage of the slices)\n"
    "  --method M           zf (zero-filled, RSS over coils)  [zf]\n"
    "  --mask TYPE          undersample first: random | equispaced | equispaced-fraction | poisson\n"
    "  --accel R            acceleration for --mask  [4]\n"
    "  --center-fraction CF fully sampled centre fraction for --mask  [0.08]\n"
    "  --seed S             mask seed (same seed, same mask as fastMRI)  [0]\n"
    "\n"
    "Output size: the header's reconSpace, else the shape of reconstruction_rss/_esc, else the\n"
    "k-space's (readout oversampling is removed by the centre crop).\n";

typedef struct {
    const char *input, *output, *method, *mask_type;
    double accel, cf;
    long seed;
} recon_opts;

static int parse(recon_opts *o, int argc, char **argv)
{
    const char *v;
    mr_status st;
    o->method = "zf";
    o->accel = 4;
    o->cf = 0.08;
    o->seed = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(USAGE, stdout);
            return -1;
        } else if (mr_opt_value(&v, "--input", argc, argv, &i)) o->input = v;
        else if (mr_opt_value(&v, "--output", argc, argv, &i)) o->output = v;
        else if (mr_opt_value(&v, "--method", argc, argv, &i)) o->method = v;
        else if (mr_opt_value(&v, "--mask", argc, argv, &i)) o->mask_type = v;
        else if (mr_opt_value(&v, "--accel", argc, argv, &i)) {
            if ((st = mr_parse_double(&o->accel, "--accel", v, 1.0, 1e6)) != MR_OK)
                return mr_cli_fail("recon", st);
        } else if (mr_opt_value(&v, "--center-fraction", argc, argv, &i)) {
            if ((st = mr_parse_double(&o->cf, "--center-fraction", v, 0.0, 1.0)) != MR_OK)
                return mr_cli_fail("recon", st);
        } else if (mr_opt_value(&v, "--seed", argc, argv, &i)) {
            if ((st = mr_parse_long(&o->seed, "--seed", v, 0, 4294967295L)) != MR_OK)
                return mr_cli_fail("recon", st);
        } else return mr_cli_usage_error("recon", "unknown option '%s'", argv[i]);
        if (!v) return mr_cli_usage_error("recon", "%s needs a value", argv[i]);
    }
    if (!o->input) return mr_cli_usage_error("recon", "--input is required");
    if (!o->output) return mr_cli_usage_error("recon", "--output is required");
    if (strcmp(o->method, "zf") != 0)
        return mr_cli_usage_error("recon", "--method: expected zf, found '%s'", o->method);
    return 0;
}

/* Build the (H, W) mask: the pattern, then columns outside [pad_left, pad_right) zeroed. */
static mr_status build_mask(float *mask2d, float *mask1d, const recon_opts *o,
                            const mr_kspace_info *in)
{
    mr_mask_params mp;
    mr_status st;
    uint32_t seed = (uint32_t)o->seed;
    memset(&mp, 0, sizeof mp);
    if ((st = mr_mask_type_parse(&mp.type, o->mask_type)) != MR_OK) return st;
    mp.accel = o->accel;
    mp.center_fraction = o->cf;
    mp.seed = &seed;
    mp.seed_len = 1;
    if ((st = mr_mask_create_2d(mask2d, in->height, in->width, &mp)) != MR_OK) return st;
    for (size_t y = 0; y < in->height; y++)
        for (size_t x = 0; x < in->width; x++)
            if ((long)x < in->pad_left || (long)x >= in->pad_right) mask2d[y * in->width + x] = 0;
    if (mask1d) memcpy(mask1d, mask2d, in->width * sizeof *mask1d); /* row 0 = column pattern */
    return MR_OK;
}

int mr_cmd_recon(int argc, char **argv)
{
    recon_opts o;
    mr_kspace_source *src = NULL;
    mr_zf_plan *plan = NULL;
    mr_array *mag = NULL, *cplx = NULL;
    mr_cfloat *slice = NULL;
    float *mask2d = NULL, *mask1d = NULL;
    mr_status st;
    mr_format ofmt;
    int rc;
    memset(&o, 0, sizeof o);
    if ((rc = parse(&o, argc, argv)) != 0) return rc < 0 ? 0 : rc;
    /* Check the output name before any work. */
    if ((st = mr_io_detect_output(&ofmt, o.output)) != MR_OK) return mr_cli_fail("recon", st);
    if ((st = mr_kspace_open(&src, o.input)) != MR_OK) return mr_cli_fail("recon", st);
    const mr_kspace_info *in = mr_kspace_get_info(src);
    size_t dims[3] = {in->slices, in->recon_h, in->recon_w};
    size_t hw_out = in->recon_h * in->recon_w;
    MR_INFO("%s: %s k-space, %zu slice(s) x %zu coil(s) x %zu x %zu -> %zu x %zu", o.input,
            mr_format_name(in->format), in->slices, in->coils, in->height, in->width, in->recon_h,
            in->recon_w);
    st = mr_array_create(&mag, MR_FLOAT32, 3, dims);
    if (st == MR_OK && ofmt == MR_FMT_CFL) st = mr_array_create(&cplx, MR_COMPLEX64, 3, dims);
    if (st == MR_OK && !(slice = mr_malloc_aligned(in->coils * in->height * in->width * 8)))
        st = MR_ERR_NOMEM;
    if (st == MR_OK && o.mask_type) {
        mask2d = mr_malloc(in->height * in->width * sizeof *mask2d);
        mask1d = mr_malloc(in->width * sizeof *mask1d);
        if (!mask2d || !mask1d) st = MR_ERR_NOMEM;
        else st = build_mask(mask2d, mask1d, &o, in);
    }
    if (st == MR_OK)
        st = mr_zf_plan_create(&plan, in->coils, in->height, in->width, in->recon_h, in->recon_w);
    for (size_t s = 0; st == MR_OK && s < in->slices; s++) {
        float *out = mr_array_f32(mag) + s * hw_out;
        st = mr_kspace_read_slice(src, s, slice);
        if (st == MR_OK) st = mr_zf_execute(plan, out, NULL, slice, mask2d);
        if (st == MR_OK && cplx) {
            mr_cfloat *c = mr_array_c64(cplx) + s * hw_out;
            for (size_t p = 0; p < hw_out; p++) c[p] = out[p];
        }
    }
    mr_fft_save_wisdom();
    if (st == MR_OK) {
        mr_output_extra extra;
        mr_fastmri_file *fm = mr_kspace_fastmri(src);
        memset(&extra, 0, sizeof extra);
        extra.method = o.method;
        extra.header_xml = in->header_xml;
        if (fm) extra.acquisition = mr_fastmri_get_info(fm)->acquisition;
        if (mask1d && o.mask_type && strcmp(o.mask_type, "poisson") != 0) {
            extra.mask = mask1d;
            extra.mask_len = in->width;
        }
        st = mr_output_write_volume(o.output, mag, cplx, &extra);
    }
    rc = st == MR_OK ? 0 : mr_cli_fail("recon", st);
    if (st == MR_OK) MR_INFO("wrote %s", o.output);
    mr_zf_plan_destroy(plan);
    mr_kspace_close(src);
    mr_array_destroy(mag);
    mr_array_destroy(cplx);
    mr_free_aligned(slice);
    free(mask2d);
    free(mask1d);
    return rc;
}
