/*
 * cmd_mask.c: `mrpipe mask`: make a sampling mask (fastMRI's random / equispaced /
 * equispaced-fraction column masks, drawn exactly as fastMRI's subsample.py does for the same seed,
 * or a 2-D variable-density Poisson disc) and write it as PNG, BART .cfl or fastMRI-style .h5.
 * The masks themselves are library code (recon/mask.c); this file parses options and writes.
 */
#include "mr_pipeline.h"
#include "mr_recon.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *USAGE =
    "usage: mrpipe mask --type TYPE --accel R --center-fraction CF --shape H,W\n"
    "                   [--seed S | --seed-file NAME] --output MASK.{png,cfl,h5}\n"
    "\n"
    "  --type TYPE             random | equispaced | equispaced-fraction  (fastMRI column masks,\n"
    "                          repeated along the H rows) | poisson  (2-D variable-density\n"
    "                          Poisson disc over H x W)\n"
    "  --accel R               acceleration, > 1 (an integer for equispaced)\n"
    "  --center-fraction CF    fully sampled centre fraction of the columns (poisson: of each\n"
    "                          axis), 0 <= CF < 1; fastMRI uses 0.08 for R 4 and 0.04 for R 8\n"
    "  --shape H,W             mask size: H rows (readout) by W columns (phase encodes)\n"
    "  --seed S                integer seed 0..4294967295, as fastMRI's mask_func(shape, seed=S)  [0]\n"
    "  --seed-file NAME        fastMRI's per-file seed tuple(map(ord, NAME)), e.g. file1000001.h5\n"
    "                          (directories are dropped, as fastMRI seeds with the base name;\n"
    "                          at least 2 characters)\n"
    "  --output MASK           .png (0/255), .cfl (+ .hdr; (H, W) as complex) or .h5 (`mask`, the\n"
    "                          1-D column mask for column types; `mask2d` (H, W) float32 always;\n"
    "                          attributes acceleration, num_low_frequency, mask_type)\n"
    "\n"
    "The same seed gives the same mask as fastMRI (numpy RandomState MT19937). Prints one summary\n"
    "line: samples kept and the effective acceleration. See docs/masks.md.\n";

typedef enum { OUT_PNG, OUT_CFL, OUT_H5 } mask_out;

typedef struct {
    const char *type_name, *accel_s, *cf_s, *shape_s, *seed_s, *seed_file, *output;
} mask_opts;

/* fastMRI's tuple(map(ord, name)): the Unicode code points of the name (decoded from UTF-8). */
static mr_status seed_from_name(uint32_t **out, size_t *len, const char *name)
{
    size_t n = strlen(name), k = 0;
    const unsigned char *s = (const unsigned char *)name;
    uint32_t *words = mr_malloc((n ? n : 1) * sizeof *words);
    if (!words) return MR_ERR_NOMEM;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int extra;
        if (s[i] < 0x80) cp = s[i], extra = 0;
        else if ((s[i] & 0xe0) == 0xc0) cp = s[i] & 0x1f, extra = 1;
        else if ((s[i] & 0xf0) == 0xe0) cp = s[i] & 0x0f, extra = 2;
        else if ((s[i] & 0xf8) == 0xf0) cp = s[i] & 0x07, extra = 3;
        else extra = -1, cp = 0;
        if (extra < 0 || i + (size_t)extra >= n) {
            free(words);
            return mr_error_set(MR_ERR_USAGE, "--seed-file: expected a UTF-8 name, found a bad byte "
                                              "at position %zu of '%s'", i, name);
        }
        for (int e = 1; e <= extra; e++) {
            if ((s[i + (size_t)e] & 0xc0) != 0x80) {
                free(words);
                return mr_error_set(MR_ERR_USAGE, "--seed-file: expected a UTF-8 name, found a bad "
                                                  "byte at position %zu of '%s'", i + (size_t)e, name);
            }
            cp = (cp << 6) | (s[i + (size_t)e] & 0x3f);
        }
        words[k++] = cp;
        i += (size_t)extra + 1;
    }
    /* One word would mean RandomState(int) in mr_mask_params, not numpy's 1-element tuple. */
    if (k < 2) {
        free(words);
        return mr_error_set(MR_ERR_USAGE,
                            "--seed-file: expected a name of at least 2 characters, found '%s'", name);
    }
    *out = words;
    *len = k;
    return MR_OK;
}

static int parse(mask_opts *o, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(USAGE, stdout);
            return -1;
        } else if (mr_opt_value(&v, "--type", argc, argv, &i)) o->type_name = v;
        else if (mr_opt_value(&v, "--accel", argc, argv, &i)) o->accel_s = v;
        else if (mr_opt_value(&v, "--center-fraction", argc, argv, &i)) o->cf_s = v;
        else if (mr_opt_value(&v, "--shape", argc, argv, &i)) o->shape_s = v;
        else if (mr_opt_value(&v, "--seed-file", argc, argv, &i)) o->seed_file = v;
        else if (mr_opt_value(&v, "--seed", argc, argv, &i)) o->seed_s = v;
        else if (mr_opt_value(&v, "--output", argc, argv, &i)) o->output = v;
        else return mr_cli_usage_error("mask", "unknown option '%s'", argv[i]);
        if (!v) return mr_cli_usage_error("mask", "%s needs a value", argv[i]);
    }
    if (!o->type_name) return mr_cli_usage_error("mask", "--type is required (random, equispaced, "
                                                         "equispaced-fraction or poisson)");
    if (!o->accel_s) return mr_cli_usage_error("mask", "--accel is required");
    if (!o->cf_s) return mr_cli_usage_error("mask", "--center-fraction is required");
    if (!o->shape_s) return mr_cli_usage_error("mask", "--shape is required (H,W)");
    if (!o->output) return mr_cli_usage_error("mask", "--output is required");
    if (o->seed_s && o->seed_file)
        return mr_cli_usage_error("mask", "--seed and --seed-file exclude each other: give one");
    return 0;
}

/* Write the (H, W) mask a; col is the 1-D column mask (NULL for poisson). */
static mr_status write_mask(const char *path, mask_out fmt, const mr_array *a, const float *col,
                            const mr_mask_params *p, size_t num_low)
{
    size_t h = a->dims[0], w = a->dims[1];
    mr_fastmri_writer *wr = NULL;
    mr_status st;
    if (fmt == OUT_PNG) return mr_png_write_gray(path, mr_array_f32(a), h, w, 0.0f, 1.0f);
    if (fmt == OUT_CFL) return mr_cfl_write(path, a);
    if ((st = mr_fastmri_writer_create(&wr, path))) return st;
    if (col && (st = mr_fastmri_writer_mask(wr, col, w))) goto fail;
    if ((st = mr_fastmri_writer_image(wr, "mask2d", a))) goto fail;
    if ((st = mr_fastmri_writer_attr_double(wr, "acceleration", p->accel))) goto fail;
    if ((st = mr_fastmri_writer_attr_double(wr, "num_low_frequency", (double)num_low))) goto fail;
    if ((st = mr_fastmri_writer_attr_string(wr, "mask_type", mr_mask_type_name(p->type)))) goto fail;
    return mr_fastmri_writer_commit(wr);
fail:
    mr_fastmri_writer_abort(wr);
    return st;
}

int mr_cmd_mask(int argc, char **argv)
{
    mask_opts o;
    mr_mask_params p;
    mask_out fmt;
    size_t h = 0, w = 0, num_low = 0, kept = 0, n, dims[2];
    uint32_t seed_word = 0, *seed_words = NULL;
    mr_array *a = NULL;
    float *col = NULL;
    mr_status st;
    long seed = 0;
    int rc;

    memset(&o, 0, sizeof o);
    memset(&p, 0, sizeof p);
    rc = parse(&o, argc, argv);
    if (rc) return rc < 0 ? 0 : rc;

    if ((st = mr_mask_type_parse(&p.type, o.type_name)))
        return mr_cli_usage_error("mask", "--type: %s", mr_error_message());
    if ((st = mr_parse_double(&p.accel, "--accel", o.accel_s, -1e300, 1e300)))
        return mr_cli_usage_error("mask", "%s", mr_error_message());
    if (!(p.accel > 1.0 && p.accel <= 1e6))
        return mr_cli_usage_error("mask", "--accel: expected an acceleration > 1 (and <= 1e6), found %s",
                                  o.accel_s);
    if (p.type == MR_MASK_EQUISPACED && p.accel != (double)(long)p.accel)
        return mr_cli_usage_error("mask", "--accel: equispaced needs an integer acceleration "
                                          "(fastMRI keeps every R-th column), found %s", o.accel_s);
    if ((st = mr_parse_double(&p.center_fraction, "--center-fraction", o.cf_s, 0.0, 1.0)))
        return mr_cli_usage_error("mask", "%s", mr_error_message());
    if (!(p.center_fraction < 1.0))
        return mr_cli_usage_error("mask", "--center-fraction: expected a value in [0, 1), found %s",
                                  o.cf_s);
    if ((st = mr_parse_shape2(&h, &w, "--shape", o.shape_s)))
        return mr_cli_usage_error("mask", "%s", mr_error_message());
    if (mr_path_has_suffix(o.output, ".png")) fmt = OUT_PNG;
    else if (mr_path_has_suffix(o.output, ".cfl")) fmt = OUT_CFL;
    else if (mr_path_has_suffix(o.output, ".h5") || mr_path_has_suffix(o.output, ".hdf5")) fmt = OUT_H5;
    else
        return mr_cli_usage_error("mask", "--output: expected a .png, .cfl or .h5 name, found '%s'",
                                  o.output);
    if (o.seed_s) {
        if ((st = mr_parse_long(&seed, "--seed", o.seed_s, 0, 4294967295L)))
            return mr_cli_usage_error("mask", "%s", mr_error_message());
    }
    if (o.seed_file) {
        /* fastMRI's datasets hand the transform fname.name: the base name. */
        const char *base = strrchr(o.seed_file, '/');
        base = base && base[1] ? base + 1 : o.seed_file;
        if ((st = seed_from_name(&seed_words, &p.seed_len, base))) {
            if (st == MR_ERR_USAGE) return mr_cli_usage_error("mask", "%s", mr_error_message());
            return mr_cli_fail("mask", st);
        }
        p.seed = seed_words;
    } else {
        seed_word = (uint32_t)seed;
        p.seed = &seed_word;
        p.seed_len = 1;
    }

    dims[0] = h;
    dims[1] = w;
    if ((st = mr_array_create(&a, MR_FLOAT32, 2, dims))) goto fail;
    n = h * w;
    if (p.type == MR_MASK_POISSON) {
        st = mr_mask_create_2d(mr_array_f32(a), h, w, &p);
        num_low = (size_t)rint((double)w * p.center_fraction);
    } else {
        col = mr_malloc(w * sizeof *col);
        if (!col) {
            st = MR_ERR_NOMEM;
            goto fail;
        }
        st = mr_mask_create_1d(col, w, &p, &num_low);
        for (size_t y = 0; st == MR_OK && y < h; y++)
            memcpy(mr_array_f32(a) + y * w, col, w * sizeof *col);
    }
    if (st) {
        mr_error_prefix(st, "--type %s --accel %s --center-fraction %s --shape %s: ", o.type_name,
                        o.accel_s, o.cf_s, o.shape_s);
        goto fail;
    }
    for (size_t i = 0; i < n; i++) kept += mr_array_f32(a)[i] != 0.0f;

    if ((st = write_mask(o.output, fmt, a, col, &p, num_low))) goto fail;

    if (col) {
        size_t kc = 0;
        for (size_t i = 0; i < w; i++) kc += col[i] != 0.0f;
        printf("mrpipe mask: %s (%zu, %zu): %zu of %zu columns kept (%zu centre), effective "
               "acceleration %.3f (nominal %g) -> %s\n",
               mr_mask_type_name(p.type), h, w, kc, w, num_low, (double)w / (double)kc, p.accel,
               o.output);
    } else {
        printf("mrpipe mask: poisson (%zu, %zu): %zu of %zu samples kept (%zu x %zu centre), "
               "effective acceleration %.3f (nominal %g) -> %s\n",
               h, w, kept, n, (size_t)rint((double)h * p.center_fraction), num_low,
               (double)n / (double)kept, p.accel, o.output);
    }
    free(col);
    free(seed_words);
    mr_array_destroy(a);
    return 0;

fail:
    free(col);
    free(seed_words);
    mr_array_destroy(a);
    return mr_cli_fail("mask", st);
}
