/*
 * cmd_calibrate.c: `mrpipe calibrate`: split-conformal recalibration of an undersampling variance
 * network on images made through the deployment path (mrpipe simulate + recon / denoise), per
 * acceleration, mask kind and input method (mr_sigma_recalibrate; docs/uncertainty.md).
 */
#include "mr_io.h"
#include "mr_nn.h"
#include "mr_pipeline.h"
#include "mr_recon.h"
#include "mr_train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *USAGE =
    "usage: mrpipe calibrate --model SIGMA.h5 --list IMAGES.csv --output NEW.h5\n"
    "                        [--min-pixels N] [--foreground F] [--source TEXT]\n"
    "                        [--no-line-fill]\n"
    "\n"
    "Recalibrate the split-conformal scales of an undersampling variance network on images made\n"
    "the way users make them: each row of IMAGES.csv is one image volume whose SD map the network\n"
    "SIGMA.h5 made (mrpipe recon / denoise --uncertainty model), with its reference. Per\n"
    "acceleration, per mask kind and per input method, the scale is multiplied by the factor at\n"
    "which the +-1.645 and +-1.96 SD intervals cover 90 and 95 % of the foreground pixels; then\n"
    "per relative noise level (the image's mrpipe_noise_sd over its 99.5th percentile) and per\n"
    "mask difficulty (mrpipe_mask_difficulty, per mask kind and acceleration: how much signal the\n"
    "volume's mask draw missed), fitted in turn with the group factors.\n"
    "\n"
    "IMAGES.csv: one image per line, '#' comments, an optional header line:\n"
    "  reference,image,uncertainty,accel,mask,method[,input_uncertainty[,bootstrap]]\n"
    "  reference    FILE[:DATASET] the truth (an .h5 without a dataset: reconstruction_rss first)\n"
    "  image        FILE[:DATASET] the judged image\n"
    "  uncertainty  FILE[:DATASET] its SD map; empty: the image file's `uncertainty` dataset\n"
    "  accel        its undersampling R\n"
    "  mask         random or equispaced\n"
    "  method       what made the image the network judges (zf, cs-l1, ...); may be empty\n"
    "  input_uncertainty  FILE[:DATASET] the SD map of the image the network judged (its input:\n"
    "               recon --uncertainty model writes it as `uncertainty`); optional. With it, a\n"
    "               network calibrated per input method that does not combine yet gets per method\n"
    "               the weight w of SD x (input SD / SD)^w (Gaussian likelihood), which denoise\n"
    "               then applies when its input carries an SD map\n"
    "  bootstrap    FILE[:DATASET] the model's parametric bootstrap map of the image (denoise\n"
    "               --uncertainty bootstrap writes it as `bootstrap_sd`); optional. With it, a\n"
    "               network calibrated per input method gets per method the weight of\n"
    "               SD x (bootstrap / SD)^w, applied after the input SD's, which denoise\n"
    "               --uncertainty bootstrap then applies\n"
    "  Relative paths are relative to the list's directory.\n"
    "\n"
    "  --model SIGMA.h5   the variance network the SD maps were made with (never modified)\n"
    "  --output NEW.h5    the recalibrated network (written under a temporary name, then renamed)\n"
    "  --min-pixels N     fewest foreground pixels a group needs to get its own factor [10000]\n"
    "  --foreground F     foreground: reference > F x its maximum [0.05]\n"
    "  --source TEXT      what the images are, for the network's calibration text [the list's path]\n"
    "  --no-line-fill     fit no line-fill factor (a calibration set of one anatomy: its slices'\n"
    "                     line fill spans too little to extrapolate from)\n";

typedef struct {
    const char *model, *list, *output;
    size_t min_pixels;
    double fg;
    const char *source;
    int no_fill;
} cal_opts;

static int parse(cal_opts *o, int argc, char **argv)
{
    const char *v = NULL, *mp = NULL, *fg = NULL;
    o->min_pixels = 10000, o->fg = 0.05;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(USAGE, stdout);
            return -1;
        } else if (!strcmp(argv[i], "--no-line-fill")) {
            o->no_fill = 1;
            continue;
        } else if (mr_opt_value(&v, "--model", argc, argv, &i))
            o->model = v;
        else if (mr_opt_value(&v, "--list", argc, argv, &i))
            o->list = v;
        else if (mr_opt_value(&v, "--output", argc, argv, &i))
            o->output = v;
        else if (mr_opt_value(&v, "--min-pixels", argc, argv, &i))
            mp = v;
        else if (mr_opt_value(&v, "--foreground", argc, argv, &i))
            fg = v;
        else if (mr_opt_value(&v, "--source", argc, argv, &i))
            o->source = v;
        else
            return mr_cli_usage_error("calibrate", "unknown option '%s'", argv[i]);
        if (!v) return mr_cli_usage_error("calibrate", "%s needs a value", argv[i]);
    }
    if (!o->model) return mr_cli_usage_error("calibrate", "--model is required");
    if (!o->list) return mr_cli_usage_error("calibrate", "--list is required");
    if (!o->output) return mr_cli_usage_error("calibrate", "--output is required");
    char *end;
    if (mp) {
        long n = strtol(mp, &end, 10);
        if (*end || end == mp || n < 1)
            return mr_cli_usage_error("calibrate", "--min-pixels: expected a count >= 1, found '%s'",
                                      mp);
        o->min_pixels = (size_t)n;
    }
    if (fg) {
        o->fg = strtod(fg, &end);
        if (*end || end == fg || !(o->fg >= 0 && o->fg < 1))
            return mr_cli_usage_error("calibrate", "--foreground: expected a fraction 0 <= F < 1, "
                                      "found '%s'", fg);
    }
    struct stat a, b;
    if (!strcmp(o->model, o->output) ||
        (stat(o->model, &a) == 0 && stat(o->output, &b) == 0 && a.st_dev == b.st_dev &&
         a.st_ino == b.st_ino))
        return mr_cli_usage_error("calibrate", "--output names the input network %s: inputs are "
                                  "never modified; give another name", o->model);
    return 0;
}

/* A path of the list, relative to the list's directory unless absolute. */
static void resolve(char *buf, size_t n, const char *list, const char *p)
{
    const char *slash = strrchr(list, '/');
    if (p[0] == '/' || !slash) snprintf(buf, n, "%s", p);
    else snprintf(buf, n, "%.*s/%s", (int)(slash - list), list, p);
}

/* Trim spaces in place; returns s. */
static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t') s++;
    size_t l = strlen(s);
    while (l && (s[l - 1] == ' ' || s[l - 1] == '\t' || s[l - 1] == '\r' || s[l - 1] == '\n'))
        s[--l] = 0;
    return s;
}

typedef struct {
    mr_recal_image *im;
    double **r, **t, **fill, **tb; /* per image: ratios, input-SD log ratios, slices' log line
                                    * fill, bootstrap log ratios */
    size_t **slice_n;        /* per image: ratios per slice */
    char (*kind)[16];
    char (*method)[32];
    size_t n, cap;
} image_set;

static void set_free(image_set *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->r[i]), free(s->t[i]), free(s->fill[i]), free(s->slice_n[i]), free(s->tb[i]);
    free(s->im), free(s->r), free(s->t), free(s->fill), free(s->slice_n), free(s->kind), free(s->method);
    free(s->tb);
}

static mr_status grow(image_set *s)
{
    if (s->n < s->cap) return MR_OK;
    size_t nc = s->cap ? 2 * s->cap : 16;
    mr_recal_image *im = realloc(s->im, nc * sizeof *im);
    if (im) s->im = im;
    double **r = realloc(s->r, nc * sizeof *r);
    if (r) s->r = r;
    double **t = realloc(s->t, nc * sizeof *t);
    if (t) s->t = t;
    double **fl = realloc(s->fill, nc * sizeof *fl);
    if (fl) s->fill = fl;
    double **tb = realloc(s->tb, nc * sizeof *tb);
    if (tb) s->tb = tb;
    size_t **sn = realloc(s->slice_n, nc * sizeof *sn);
    if (sn) s->slice_n = sn;
    char(*k)[16] = realloc(s->kind, nc * sizeof *k);
    if (k) s->kind = k;
    char(*m)[32] = realloc(s->method, nc * sizeof *m);
    if (m) s->method = m;
    if (!im || !r || !t || !fl || !tb || !sn || !k || !m) return mr_error_set(MR_ERR_NOMEM, "calibrate: out of memory");
    s->cap = nc;
    return MR_OK;
}

/* What an mrpipe .h5 image records of how it was made: *rel its relative noise level
 * (mr_sigma_noise_factor): the mean over slices of its coil noise SD (attribute mrpipe_noise_sd, as
 * recon writes and denoise keeps it) over the 99.5th percentile of the image; *difficulty its
 * mask difficulty (attribute mrpipe_mask_difficulty, mr_mask_difficulty); 0 when the file has none. */
static void image_attrs(double *rel, double *difficulty, int *has_ghost, double *ghost,
                        const char *spec, const float *img, size_t n, size_t S)
{
    char h5[4200];
    *rel = *difficulty = 0, *has_ghost = 0, *ghost = 0;
    snprintf(h5, sizeof h5, "%s", spec);
    char *colon = strrchr(h5, ':');
    if (colon && !strchr(colon, '/')) *colon = 0;
    if (!mr_path_has_suffix(h5, ".h5")) return;
    mr_fastmri_file *f = NULL;
    if (mr_fastmri_open(&f, h5) != MR_OK) {
        mr_error_clear();
        return;
    }
    double *v = malloc((S ? S : 1) * sizeof *v), level = 0, d = 0;
    size_t nn = 0;
    if (v && mr_fastmri_read_attr_doubles(f, "mrpipe_noise_sd", v, S, &nn) == MR_OK && nn == S &&
        mr_sigma_rel_noise_level(&level, img, n) == MR_OK) {
        double m = 0;
        size_t k = 0;
        for (size_t i = 0; i < S; i++)
            if (v[i] > 0) m += v[i], k++;
        *rel = k ? m / (double)k / level : 0;
    }
    mr_error_clear();
    if (mr_fastmri_read_attr_doubles(f, "mrpipe_mask_difficulty", &d, 1, &nn) == MR_OK && nn == 1 &&
        d > 0 && d < 100)
        *difficulty = d;
    mr_error_clear();
    /* its sampling mask's ghost phase (mr_mask_ghost_phase) */
    const mr_fastmri_info *fi = mr_fastmri_get_info(f);
    float *mask = fi->has_mask && fi->mask_len >= 2 ? malloc(fi->mask_len * sizeof *mask) : NULL;
    double rho;
    if (mask && mr_fastmri_read_mask(f, mask) == MR_OK &&
        mr_mask_ghost_phase(&rho, mask, fi->mask_len) == MR_OK)
        *has_ghost = 1, *ghost = log(rho > 1e-3 ? rho : 1e-3);
    mr_error_clear();
    free(mask);
    free(v);
    mr_fastmri_close(f);
}

/* One row: load the three volumes, check shapes and values, collect |image - ref| / SD over the
 * foreground. where: "LIST:LINE" for messages. */
static mr_status load_row(image_set *s, const cal_opts *o, char **f, const char *where)
{
    char ref_p[4200], img_p[4200], sd_p[4300], in_p[4200], b_p[4200], d1[4400], d2[4400],
        d3[4400], d4[4400], d5[4400];
    mr_array *ref = NULL, *img = NULL, *sd = NULL, *isd = NULL, *bsd = NULL;
    mr_status st = grow(s);
    if (st != MR_OK) return st;
    resolve(ref_p, sizeof ref_p, o->list, f[0]);
    resolve(img_p, sizeof img_p, o->list, f[1]);
    if (*f[2]) resolve(sd_p, sizeof sd_p, o->list, f[2]);
    else {
        char base[4200];
        snprintf(base, sizeof base, "%s", img_p);
        char *colon = strrchr(base, ':');
        if (colon && !strchr(colon, '/')) *colon = 0; /* FILE:DATASET -> FILE */
        snprintf(sd_p, sizeof sd_p, "%s:uncertainty", base);
    }
    char *end;
    double R = strtod(f[3], &end);
    if (*end || end == f[3] || !(R >= 1 && R < 1e6))
        return mr_error_set(MR_ERR_INPUT, "%s: accel: expected an acceleration R >= 1, found '%s'",
                            where, f[3]);
    if (strcmp(f[4], "random") && strcmp(f[4], "equispaced"))
        return mr_error_set(MR_ERR_INPUT, "%s: mask: expected random or equispaced, found '%s'",
                            where, f[4]);
    if (strlen(f[5]) >= 32)
        return mr_error_set(MR_ERR_INPUT, "%s: method: '%s' is too long", where, f[5]);
    if ((st = mr_image_load(&ref, d1, sizeof d1, ref_p, 1)) == MR_OK &&
        (st = mr_image_load(&img, d2, sizeof d2, img_p, 0)) == MR_OK)
        st = mr_image_load(&sd, d3, sizeof d3, sd_p, 0);
    if (st == MR_OK && *f[6]) {
        resolve(in_p, sizeof in_p, o->list, f[6]);
        st = mr_image_load(&isd, d4, sizeof d4, in_p, 0);
    }
    if (st == MR_OK && *f[7]) {
        resolve(b_p, sizeof b_p, o->list, f[7]);
        st = mr_image_load(&bsd, d5, sizeof d5, b_p, 0);
    }
    if (st != MR_OK) mr_error_prefix(st, "%s: ", where);
    if (st == MR_OK) {
        for (int k = 0; k < 3 && st == MR_OK; k++)
            if (img->dims[k] != ref->dims[k] || sd->dims[k] != ref->dims[k]) {
                char a[96], b[96], c[96];
                mr_dims_format(a, sizeof a, 3, ref->dims);
                mr_dims_format(b, sizeof b, 3, img->dims);
                mr_dims_format(c, sizeof c, 3, sd->dims);
                st = mr_error_set(MR_ERR_INPUT, "%s: the image %s %s and its SD map %s %s; "
                                  "expected the reference's shape %s (%s)", where, d2, b, d3, c,
                                  a, d1);
            } else /* the optional maps: the input's SD map, the bootstrap map */
                for (int j = 0; j < 2 && st == MR_OK; j++) {
                    const mr_array *o2 = j ? bsd : isd;
                    if (!o2 || o2->dims[k] == ref->dims[k]) continue;
                    char a[96], c[96];
                    mr_dims_format(a, sizeof a, 3, ref->dims);
                    mr_dims_format(c, sizeof c, 3, o2->dims);
                    st = mr_error_set(MR_ERR_INPUT, "%s: %s: the map %s is %s; expected the "
                                      "reference's shape %s (%s)", where,
                                      j ? "bootstrap" : "input_uncertainty", j ? d5 : d4, c, a, d1);
                }
    }
    size_t n = 0, cnt = 0;
    double mx = 0;
    const float *pr = NULL, *pi = NULL, *ps = NULL, *pv = NULL, *pb = NULL;
    if (st == MR_OK) {
        n = mr_array_numel(ref);
        pr = mr_array_f32(ref), pi = mr_array_f32(img), ps = mr_array_f32(sd);
        pv = isd ? mr_array_f32(isd) : NULL;
        pb = bsd ? mr_array_f32(bsd) : NULL;
        for (size_t i = 0; i < n; i++)
            if (pr[i] > mx) mx = pr[i];
        for (size_t i = 0; i < n && st == MR_OK; i++) {
            if (!isfinite(pi[i]))
                st = mr_error_set(MR_ERR_INPUT, "%s: the image %s has a non-finite pixel (index "
                                  "%zu); expected finite values", where, d2, i);
            else if (!isfinite(ps[i]) || ps[i] < 0)
                st = mr_error_set(MR_ERR_INPUT, "%s: the SD map %s has the value %g (index %zu); "
                                  "expected finite values >= 0", where, d3, (double)ps[i], i);
            else if (pv && (!isfinite(pv[i]) || pv[i] < 0))
                st = mr_error_set(MR_ERR_INPUT, "%s: input_uncertainty: the SD map %s has the "
                                  "value %g (index %zu); expected finite values >= 0", where, d4,
                                  (double)pv[i], i);
            else if (pb && (!isfinite(pb[i]) || pb[i] < 0))
                st = mr_error_set(MR_ERR_INPUT, "%s: bootstrap: the map %s has the value %g "
                                  "(index %zu); expected finite values >= 0", where, d5,
                                  (double)pb[i], i);
            else if (pr[i] > o->fg * mx && ps[i] > 0)
                cnt++;
        }
        if (st == MR_OK && !(mx > 0))
            st = mr_error_set(MR_ERR_INPUT, "%s: the reference %s is all zero", where, d1);
    }
    double *r = NULL, *t = NULL, *fl = NULL, *tb = NULL;
    size_t *sn = NULL, S = st == MR_OK ? img->dims[0] : 0, H = S ? img->dims[1] : 0,
           W = S ? img->dims[2] : 0;
    if (st == MR_OK && (!(r = malloc((cnt ? cnt : 1) * sizeof *r)) ||
                        (pv && !(t = malloc((cnt ? cnt : 1) * sizeof *t))) ||
                        (pb && !(tb = malloc((cnt ? cnt : 1) * sizeof *tb))) ||
                        !(fl = malloc((S ? S : 1) * sizeof *fl)) ||
                        !(sn = calloc(S ? S : 1, sizeof *sn))))
        st = mr_error_set(MR_ERR_NOMEM, "calibrate: out of memory");
    if (st == MR_OK) {
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
            if (pr[i] > o->fg * mx && ps[i] > 0) {
                /* log(input SD / SD), within +-log 1000 (mr_sigma_apply_input_sd) */
                if (t) t[k] = mr_sigma_log_sd_ratio(pv[i], ps[i]);
                if (tb) tb[k] = mr_sigma_log_sd_ratio(pb[i], ps[i]);
                r[k++] = fabs((double)pi[i] - pr[i]) / ps[i];
                sn[i / (H * W)]++;
            }
        /* each slice's line fill, of the judged image (as recon and denoise see it) */
        for (size_t z = 0; z < S; z++) {
            double l = mr_sigma_line_fill(pi + z * H * W, H, W);
            fl[z] = l > 0 ? log(l) : NAN;
        }
        size_t j = s->n++;
        s->r[j] = r, s->t[j] = t, s->fill[j] = fl, s->slice_n[j] = sn, s->tb[j] = tb;
        snprintf(s->kind[j], sizeof s->kind[0], "%s", f[4]);
        snprintf(s->method[j], sizeof s->method[0], "%s", f[5]);
        /* names set by read_list */
        s->im[j] = (mr_recal_image){r, cnt, R, NULL, NULL, 0, 0, t, 0, 0, o->no_fill ? 0 : S, sn,
                                    fl, tb};
        image_attrs(&s->im[j].rel_noise, &s->im[j].difficulty, &s->im[j].has_ghost,
                    &s->im[j].ghost, img_p, pi, n, img->dims[0]);
        double lf = 0;
        size_t nf = 0;
        for (size_t z = 0; z < S; z++)
            if (isfinite(fl[z])) lf += fl[z], nf++;
        MR_INFO("%s: %s: %zu foreground pixels, R %g, %s mask%s%s, relative noise %.3g, mask "
                "difficulty %.4g, ghost phase %.3f, line fill %.3f%s%s%s%s", where, d2, cnt, R, f[4],
                *f[5] ? ", input " : "", f[5], s->im[j].rel_noise, s->im[j].difficulty,
                s->im[j].has_ghost ? exp(s->im[j].ghost) : 0, nf ? exp(lf / (double)nf) : 0,
                t ? ", input SD map " : "", t ? d4 : "", tb ? ", bootstrap map " : "", tb ? d5 : "");
    } else
        free(r), free(t), free(fl), free(sn), free(tb);
    mr_array_destroy(ref), mr_array_destroy(img), mr_array_destroy(sd), mr_array_destroy(isd);
    mr_array_destroy(bsd);
    return st;
}

static mr_status read_list(image_set *s, const cal_opts *o)
{
    FILE *fp = fopen(o->list, "r");
    if (!fp) return mr_error_set(MR_ERR_IO, "%s: cannot open the image list", o->list);
    char line[16384], where[4300];
    mr_status st = MR_OK;
    for (int ln = 1; st == MR_OK && fgets(line, sizeof line, fp); ln++) {
        char *t = trim(line);
        if (!*t || *t == '#') continue;
        if (!strncmp(t, "reference,", 10)) continue; /* the header */
        char *f[8];
        int nf = 0;
        for (char *p = t; nf < 8;) {
            char *c = strchr(p, ',');
            if (c) *c = 0;
            f[nf++] = trim(p);
            if (!c) break;
            p = c + 1;
        }
        snprintf(where, sizeof where, "%s:%d", o->list, ln);
        if (nf == 5) f[5] = "", nf = 6;
        if (nf == 6) f[6] = "", nf = 7;
        if (nf == 7) f[7] = "", nf = 8;
        if (nf != 8 || !*f[0] || !*f[1])
            st = mr_error_set(MR_ERR_INPUT, "%s: expected reference,image,uncertainty,accel,mask"
                              "[,method[,input_uncertainty[,bootstrap]]] (reference and image "
                              "required)",
                              where);
        else st = load_row(s, o, f, where);
    }
    fclose(fp);
    for (size_t i = 0; i < s->n; i++) { /* the arrays may have moved while growing */
        s->im[i].mask_kind = s->kind[i];
        s->im[i].method = s->method[i][0] ? s->method[i] : NULL;
    }
    if (st == MR_OK && s->n == 0)
        st = mr_error_set(MR_ERR_INPUT, "%s: no images listed; expected one line per image "
                          "(reference,image,uncertainty,accel,mask,method)", o->list);
    return st;
}

int mr_cmd_calibrate(int argc, char **argv)
{
    cal_opts o;
    memset(&o, 0, sizeof o);
    int rc = parse(&o, argc, argv);
    if (rc) return rc < 0 ? 0 : rc;
    void *sig = NULL;
    image_set s;
    memset(&s, 0, sizeof s);
    mr_status st = mr_sigma_load(&sig, o.model, "calibrate");
    if (st == MR_OK) st = read_list(&s, &o);
    char text[8192];
    if (st == MR_OK) {
        st = mr_sigma_recalibrate(sig, s.im, s.n, o.min_pixels, o.source ? o.source : o.list,
                                  text, sizeof text);
        if (st != MR_OK) mr_error_prefix(st, "%s: ", o.model);
    }
    if (st == MR_OK) st = mr_nn_model_save(sig, o.output);
    if (st == MR_OK) MR_INFO("%s: %s; wrote %s", o.model, text, o.output);
    set_free(&s);
    mr_sigma_free(sig);
    return st == MR_OK ? 0 : mr_cli_fail("calibrate", st);
}
