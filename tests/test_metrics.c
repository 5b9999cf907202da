/*
 * test_metrics.c: CUnit suite for the validation metrics (validation/ssim.c, metrics.c), the image
 * loader (io/image_load.c) and `mrpipe metrics` (pipeline/cmd_metrics.c).
 *
 * Oracle: scikit-image 0.19 (Debian python3-skimage) through fastMRI's evaluate.py definitions.
 * Golden values (tests/data/metrics_golden.txt, scripts/gen_metrics_golden.py) let the suite run
 * without Python; when /usr/bin/python3 has skimage the same script recomputes them live on the
 * exact arrays this test built, and the test asserts against both. Tolerances (issue 3): SSIM and
 * PSNR |diff| < 1e-5, NMSE relative < 1e-6, against skimage on float32 and on float64 copies.
 */
#include "testutil.h"

#include "mr_io.h"
#include "mr_pipeline.h"
#include "mr_recon.h"
#include "mr_validation.h"

#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TEMPLATES "/usr/share/mricron/templates"
#define SKIMAGE_DATA "/usr/lib/python3/dist-packages/skimage/data"

/* ================================================================ numpy-compatible normals */

/* numpy RandomState.standard_normal (legacy_gauss): the polar method on random_sample doubles,
 * returning f * x2 and keeping f * x1 for the next call. */
typedef struct {
    mr_mt19937 mt;
    int has;
    double kept;
} np_rng;

static void np_rng_seed(np_rng *r, uint32_t seed)
{
    mr_mt_seed(&r->mt, seed);
    r->has = 0;
}

static double np_gauss(np_rng *r)
{
    double x1, x2, r2, f;
    if (r->has) {
        r->has = 0;
        return r->kept;
    }
    do {
        x1 = 2.0 * mr_mt_random_sample(&r->mt) - 1.0;
        x2 = 2.0 * mr_mt_random_sample(&r->mt) - 1.0;
        r2 = x1 * x1 + x2 * x2;
    } while (r2 >= 1.0 || r2 == 0.0);
    f = sqrt(-2.0 * log(r2) / r2);
    r->kept = f * x1;
    r->has = 1;
    return f * x2;
}

/* ================================================================ golden values */

typedef struct {
    char name[64], file[64], degr[16];
    int axis, index, ns, y0, x0, h, w, seed;
    double sigma;
    unsigned long long ref_bits, img_bits; /* sums of the float32 bit patterns */
} case_spec;

typedef struct {
    char name[64], key[32];
    double v;
} kv;

typedef struct {
    kv *v;
    size_t n, cap;
} kv_table;

static case_spec g_cases[32];
static int g_ncases;
static kv_table g_golden, g_live;
static int g_live_ok = -1; /* -1: not tried; 0: no Python/skimage; 1: live values loaded */

/* the worst agreement seen, printed at the end: [f32 oracle, f64 oracle][SSIM, PSNR, NMSE rel] */
static double g_max[2][3];

static void kv_add(kv_table *t, const char *name, const char *key, double v)
{
    if (t->n == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 256;
        t->v = realloc(t->v, t->cap * sizeof *t->v);
    }
    snprintf(t->v[t->n].name, sizeof t->v[t->n].name, "%s", name);
    snprintf(t->v[t->n].key, sizeof t->v[t->n].key, "%s", key);
    t->v[t->n++].v = v;
}

static int kv_get(double *out, const kv_table *t, const char *name, const char *key)
{
    for (size_t i = 0; i < t->n; i++)
        if (!strcmp(t->v[i].name, name) && !strcmp(t->v[i].key, key)) {
            *out = t->v[i].v;
            return 1;
        }
    return 0;
}

/* Parse "val NAME KEY VALUE" and "camera KEY VALUE" lines (and spec/sum lines when specs). */
static void parse_values(kv_table *t, const char *text, int specs)
{
    const char *p = text;
    char line[512];
    while (*p) {
        size_t n = strcspn(p, "\n");
        char a[64], b[64], c[64];
        if (n >= sizeof line) n = sizeof line - 1;
        memcpy(line, p, n);
        line[n] = '\0';
        p += n + (p[n] == '\n');
        if (sscanf(line, "val %63s %31s %63s", a, b, c) == 3) {
            kv_add(t, a, b, strtod(c, NULL));
        } else if (sscanf(line, "camera %31s %63s", b, c) == 2) {
            kv_add(t, "camera", b, strtod(c, NULL));
        } else if (specs && !strncmp(line, "spec ", 5) && g_ncases < 32) {
            case_spec *s = &g_cases[g_ncases];
            if (sscanf(line, "spec %63s %63s %d %d %d %d %d %d %d %15s %lf %d", s->name, s->file,
                       &s->axis, &s->index, &s->ns, &s->y0, &s->x0, &s->h, &s->w, s->degr,
                       &s->sigma, &s->seed) == 12)
                g_ncases++;
        } else if (specs && sscanf(line, "sum %63s %63s %63s", a, b, c) == 3) {
            for (int i = 0; i < g_ncases; i++)
                if (!strcmp(g_cases[i].name, a)) {
                    g_cases[i].ref_bits = strtoull(b, NULL, 10);
                    g_cases[i].img_bits = strtoull(c, NULL, 10);
                }
        }
    }
}

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    long n;
    char *s;
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    s = malloc((size_t)n + 1);
    if (fread(s, 1, (size_t)n, f) != (size_t)n) n = 0;
    s[n] = '\0';
    fclose(f);
    return s;
}

static void load_golden(void)
{
    char *text;
    if (g_ncases) return;
    text = read_text(mr_test_src("tests/data/metrics_golden.txt"));
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    parse_values(&g_golden, text, 1);
    free(text);
}

/* ================================================================ test images */

static mr_array *g_templates[4];
static const char *g_template_names[4] = {"ch2.nii.gz", "ch2bet.nii.gz", "inia19-t1-brain.nii.gz",
                                          "ch2better.nii.gz"};

static const mr_array *template_get(const char *name)
{
    for (int i = 0; i < 4; i++)
        if (!strcmp(name, g_template_names[i])) {
            if (!g_templates[i]) {
                char path[512];
                snprintf(path, sizeof path, "%s/%s", TEMPLATES, name);
                if (mr_nifti_read(&g_templates[i], NULL, path) != MR_OK) return NULL;
            }
            return g_templates[i];
        }
    return NULL;
}

/* [1 2 1] / 4 along W then H, border pixel repeated, in double: the generator's blur121. */
static void blur121(double *v, size_t S, size_t H, size_t W)
{
    double *t = malloc(H * W * sizeof *t);
    for (size_t s = 0; s < S; s++) {
        double *a = v + s * H * W;
        for (size_t y = 0; y < H; y++)
            for (size_t x = 0; x < W; x++) {
                double l = a[y * W + (x ? x - 1 : 0)], c = a[y * W + x];
                double r = a[y * W + (x + 1 < W ? x + 1 : W - 1)];
                t[y * W + x] = (l + 2.0 * c + r) * 0.25;
            }
        for (size_t y = 0; y < H; y++)
            for (size_t x = 0; x < W; x++) {
                double u = t[(y ? y - 1 : 0) * W + x], c = t[y * W + x];
                double d = t[(y + 1 < H ? y + 1 : H - 1) * W + x];
                a[y * W + x] = (u + 2.0 * c + d) * 0.25;
            }
    }
    free(t);
}

/* Build a case's reference and degraded image, float32 (S, H, W), as the generator does. */
static int case_build(mr_array **ref, mr_array **img, const case_spec *c)
{
    const mr_array *t = template_get(c->file);
    size_t dims[3] = {(size_t)c->ns, (size_t)c->h, (size_t)c->w};
    size_t n = dims[0] * dims[1] * dims[2];
    double *base;
    if (!t) return 0;
    if (mr_array_create(ref, MR_FLOAT32, 3, dims) != MR_OK) return 0;
    if (mr_array_create(img, MR_FLOAT32, 3, dims) != MR_OK) return 0;
    for (int s = 0; s < c->ns; s++)
        for (int y = 0; y < c->h; y++)
            for (int x = 0; x < c->w; x++) {
                size_t nj = t->dims[1], ni = t->dims[2], src;
                if (c->axis == 0) /* plane k: (j, i) */
                    src = ((size_t)(c->index + s) * nj + (size_t)(c->y0 + y)) * ni +
                          (size_t)(c->x0 + x);
                else /* plane j: (k, i) */
                    src = ((size_t)(c->y0 + y) * nj + (size_t)(c->index + s)) * ni +
                          (size_t)(c->x0 + x);
                mr_array_f32(*ref)[((size_t)s * c->h + y) * c->w + x] = mr_array_f32(t)[src];
            }
    base = malloc(n * sizeof *base);
    for (size_t i = 0; i < n; i++)
        base[i] = mr_array_f32(*ref)[i];
    if (!strcmp(c->degr, "blur") || !strcmp(c->degr, "noiseblur"))
        blur121(base, dims[0], dims[1], dims[2]);
    if (!strcmp(c->degr, "noise") || !strcmp(c->degr, "noiseblur")) {
        np_rng r;
        np_rng_seed(&r, (uint32_t)c->seed);
        for (size_t i = 0; i < n; i++)
            base[i] = fabs(base[i] + c->sigma * np_gauss(&r));
    }
    for (size_t i = 0; i < n; i++)
        mr_array_f32(*img)[i] = (float)base[i];
    free(base);
    return 1;
}

static unsigned long long array_bits(const mr_array *a)
{
    unsigned long long s = 0;
    const uint32_t *u = (const uint32_t *)a->data;
    for (size_t i = 0; i < mr_array_numel(a); i++)
        s += u[i];
    return s;
}

static int write_raw(const char *path, const mr_array *a)
{
    FILE *f = fopen(path, "wb");
    size_t n = mr_array_numel(a);
    int ok = f && fwrite(a->data, 4, n, f) == n;
    if (f) fclose(f);
    return ok;
}

static int python_has_skimage(void)
{
    return mr_test_sh("%s -c 'import skimage.metrics, nibabel, h5py' >/dev/null 2>&1",
                      mr_test_python()) == 0;
}

/* Run the generator's --oracle mode on the arrays this test built (once). */
static void load_live(void)
{
    FILE *man;
    if (g_live_ok >= 0) return;
    g_live_ok = 0;
    if (!python_has_skimage()) {
        fprintf(stderr, "\n  (live skimage check skipped: %s has no skimage; golden values only)\n",
                mr_test_python());
        return;
    }
    man = fopen(mr_test_path("oracle_manifest.txt"), "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(man);
    for (int i = 0; i < g_ncases; i++) {
        mr_array *ref = NULL, *img = NULL;
        char rp[128], ip[128];
        snprintf(rp, sizeof rp, "%.63s.ref.f32", g_cases[i].name);
        snprintf(ip, sizeof ip, "%.63s.img.f32", g_cases[i].name);
        CU_ASSERT_FATAL(case_build(&ref, &img, &g_cases[i]));
        CU_ASSERT(write_raw(mr_test_path(rp), ref));
        CU_ASSERT(write_raw(mr_test_path(ip), img));
        fprintf(man, "%s %d %d %d %s", g_cases[i].name, g_cases[i].ns, g_cases[i].h, g_cases[i].w,
                mr_test_path(rp));
        fprintf(man, " %s\n", mr_test_path(ip));
        mr_array_destroy(ref);
        mr_array_destroy(img);
    }
    fclose(man);
    if (mr_test_sh("%s %s --oracle %s", mr_test_python(),
                   mr_test_src("scripts/gen_metrics_golden.py"),
                   mr_test_path("oracle_manifest.txt")) != 0) {
        fprintf(stderr, "%s\n", mr_test_output());
        CU_FAIL("the live skimage oracle failed");
        return;
    }
    parse_values(&g_live, mr_test_output(), 0);
    CU_ASSERT(g_live.n > 100);
    g_live_ok = 1;
}

/* Compare one value against the golden and the live oracle (f32 and f64 both). kind: 0 SSIM,
 * 1 PSNR (absolute dB), 2 NMSE (relative).
 * Tolerances (issue 3): 1e-5 for SSIM and PSNR (dB), 1e-6 relative for NMSE, against scikit-image on
 * float32 and float64 inputs (NMSE = normalized_root_mse(euclidean)^2, which accumulates in float64
 * as mrpipe does). */
static void check_value(const char *name, const char *key, double mine, int kind)
{
    const kv_table *tables[2] = {&g_golden, &g_live};
    static const char *tags[2] = {"f32", "f64"};
    int found = 0;
    for (int t = 0; t < 2; t++) {
        if (t == 1 && g_live_ok != 1) continue;
        for (int g = 0; g < 2; g++) {
            char k[40];
            double ref, d, tol = kind == 2 ? 1e-6 : 1e-5;
            snprintf(k, sizeof k, "%s.%s", key, tags[g]);
            if (!kv_get(&ref, tables[t], name, k)) continue;
            found++;
            if (isinf(ref) || isinf(mine)) {
                CU_ASSERT(isinf(ref) && isinf(mine));
                continue;
            }
            d = fabs(mine - ref);
            if (kind == 2) d /= fabs(ref);
            if (d > g_max[g][kind]) g_max[g][kind] = d;
            if (d >= tol) {
                fprintf(stderr, "\n  %s %s (%s, %s): mrpipe %.12g vs skimage %.12g (diff %.3g)\n",
                        name, k, t ? "live" : "golden", tags[g], mine, ref, d);
                CU_FAIL("disagreement with skimage");
            }
        }
    }
    if (!found) {
        fprintf(stderr, "\n  no oracle value for %s %s\n", name, key);
        CU_FAIL("missing oracle value");
    }
}

/* ================================================================ agreement with skimage */

static void test_skimage_agreement(void)
{
    load_golden();
    CU_ASSERT_FATAL(g_ncases >= 10);
    if (!template_get("ch2.nii.gz")) {
        fprintf(stderr, "\n  (skipped: %s not installed (Debian mricron-data))\n", TEMPLATES);
        return;
    }
    load_live();
    for (int i = 0; i < g_ncases; i++) {
        const case_spec *c = &g_cases[i];
        mr_array *ref = NULL, *img = NULL;
        mr_metrics_result ru, rg;
        char key[32];
        CU_ASSERT_FATAL(case_build(&ref, &img, c));
        /* the C test built the generator's exact arrays */
        if (array_bits(ref) != c->ref_bits || array_bits(img) != c->img_bits) {
            fprintf(stderr, "\n  %s: the arrays differ from the generator's\n", c->name);
            CU_FAIL("test image construction");
        }
        CU_ASSERT_EQUAL_FATAL(mr_metrics_volume(&ru, ref, img, MR_SSIM_UNIFORM), MR_OK);
        check_value(c->name, "vol.nmse", ru.volume.nmse, 2);
        check_value(c->name, "vol.psnr", ru.volume.psnr, 1);
        check_value(c->name, "vol.ssim_u", ru.volume.ssim, 0);
        for (int s = 0; s < c->ns; s++) {
            snprintf(key, sizeof key, "s%d.ssim_u", s);
            check_value(c->name, key, ru.per_slice[s].ssim, 0);
            snprintf(key, sizeof key, "s%d.psnr", s);
            check_value(c->name, key, ru.per_slice[s].psnr, 1);
            snprintf(key, sizeof key, "s%d.nmse", s);
            check_value(c->name, key, ru.per_slice[s].nmse, 2);
        }
        if (c->h >= 11 && c->w >= 11) {
            CU_ASSERT_EQUAL_FATAL(mr_metrics_volume(&rg, ref, img, MR_SSIM_GAUSSIAN), MR_OK);
            check_value(c->name, "vol.ssim_g", rg.volume.ssim, 0);
            for (int s = 0; s < c->ns; s++) {
                snprintf(key, sizeof key, "s%d.ssim_g", s);
                check_value(c->name, key, rg.per_slice[s].ssim, 0);
            }
            mr_metrics_result_free(&rg);
        } else {
            CU_ASSERT_EQUAL(mr_metrics_volume(&rg, ref, img, MR_SSIM_GAUSSIAN), MR_ERR_INPUT);
            CU_ASSERT_PTR_NOT_NULL(
                strstr(mr_error_message(), "smaller than the gaussian SSIM window"));
        }
        mr_metrics_result_free(&ru);
        mr_array_destroy(ref);
        mr_array_destroy(img);
    }
    for (int g = 0; g < 2; g++)
        fprintf(stderr,
                "\n  max |diff| vs skimage on %s (golden%s): SSIM %.3g, PSNR %.3g dB, "
                "NMSE relative %.3g\n",
                g ? "float64" : "float32", g_live_ok == 1 ? ", live" : "", g_max[g][0], g_max[g][1],
                g_max[g][2]);
}

/* The golden file's values equal a fresh skimage run (so that a stale golden file shows). */
static void test_golden_is_current(void)
{
    load_golden();
    load_live();
    if (g_live_ok != 1) return;
    for (size_t i = 0; i < g_golden.n; i++) {
        double v;
        const kv *g = &g_golden.v[i];
        CU_ASSERT_FATAL(kv_get(&v, &g_live, g->name, g->key));
        if (isinf(v)) {
            CU_ASSERT(isinf(g->v));
        } else if (fabs(v - g->v) > 1e-12 * fmax(1.0, fabs(v))) {
            fprintf(stderr, "\n  golden %s %s = %.17g, skimage now %.17g\n", g->name, g->key, g->v,
                    v);
            CU_FAIL("tests/data/metrics_golden.txt is stale: rerun scripts/gen_metrics_golden.py");
        }
    }
}

/* ================================================================ Gaussian SSIM: skimage's camera
 * test */

static int read_png_gray(unsigned char **out, size_t *h, size_t *w, const char *path)
{
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_file(&im, path)) return 0;
    if (im.format != PNG_FORMAT_GRAY) { /* the camera image is 8-bit grayscale: no conversion */
        png_image_free(&im);
        return 0;
    }
    *out = malloc(PNG_IMAGE_SIZE(im));
    if (!png_image_finish_read(&im, NULL, *out, 0, NULL)) {
        free(*out);
        return 0;
    }
    *h = im.height;
    *w = im.width;
    return 1;
}

static void test_gaussian_camera(void)
{
    unsigned char *cam8 = NULL;
    size_t h, w;
    float *cam, *noisy;
    double sum_c = 0, sum_n = 0, g = 0, u = 0, v = 0;
    np_rng r;
    load_golden();
    if (!read_png_gray(&cam8, &h, &w, SKIMAGE_DATA "/camera.png")) {
        fprintf(stderr, "\n  (skipped: %s/camera.png not installed (python3-skimage))\n",
                SKIMAGE_DATA);
        return;
    }
    cam = malloc(h * w * sizeof *cam);
    noisy = malloc(h * w * sizeof *noisy);
    /* skimage's test: np.random.seed(5); clip(cam + 20 randn, 0, 255).astype(uint8) */
    np_rng_seed(&r, 5);
    for (size_t i = 0; i < h * w; i++) {
        double x = (double)cam8[i] + 20.0 * np_gauss(&r);
        x = x < 0 ? 0 : (x > 255 ? 255 : x);
        cam[i] = cam8[i];
        noisy[i] = (float)(unsigned char)x;
        sum_c += cam[i];
        sum_n += noisy[i];
    }
    CU_ASSERT_FATAL(kv_get(&v, &g_golden, "camera", "cam.sum"));
    CU_ASSERT_EQUAL(sum_c, v);
    CU_ASSERT_FATAL(kv_get(&v, &g_golden, "camera", "noisy.sum"));
    CU_ASSERT_EQUAL(sum_n, v);
    CU_ASSERT_EQUAL_FATAL(mr_ssim_slice(&g, cam, noisy, h, w, 255.0, MR_SSIM_GAUSSIAN), MR_OK);
    CU_ASSERT_EQUAL_FATAL(mr_ssim_slice(&u, cam, noisy, h, w, 255.0, MR_SSIM_UNIFORM), MR_OK);
    /* skimage's own values (golden; the live run recomputes them) */
    CU_ASSERT_FATAL(kv_get(&v, &g_golden, "camera", "gauss.skimage"));
    CU_ASSERT(fabs(g - v) < 1e-9);
    CU_ASSERT_FATAL(kv_get(&v, &g_golden, "camera", "uniform.skimage"));
    CU_ASSERT(fabs(u - v) < 1e-9);
    CU_ASSERT(fabs(u - 0.3674518327910367) < 1e-9); /* skimage's test_mssim_vs_legacy */
    if (g_live_ok == 1) {
        CU_ASSERT_FATAL(kv_get(&v, &g_live, "camera", "gauss.skimage"));
        CU_ASSERT(fabs(g - v) < 1e-9);
    }
    /* IPOL's imdiff (an independent implementation of Wang's Gaussian SSIM) on the same images */
    CU_ASSERT(fabs(g - 0.357959091663361) < 1e-5);
    CU_ASSERT_FATAL(kv_get(&v, &g_golden, "camera", "gauss.matlab_npz"));
    fprintf(stderr,
            "\n  Gaussian SSIM of skimage's camera test: mrpipe %.12f, skimage %.12f, IPOL "
            "%.12f; mssim_matlab_output.npz %.7f belongs to the camera image shipped before "
            "skimage 0.18 (not installed)\n",
            g, g, 0.357959091663361, v);
    free(cam8);
    free(cam);
    free(noisy);
}

/* ================================================================ fastMRI volume semantics */

/* A small (S, H, W) volume from ch2 (or a smooth pattern when the templates are missing) with
 * per-slice intensity scales so that slice maxima differ from the volume maximum. */
static void make_volume(mr_array **ref, mr_array **img, size_t S, size_t H, size_t W, double sigma,
                        uint32_t seed)
{
    const mr_array *t = template_get("ch2.nii.gz");
    size_t dims[3] = {S, H, W};
    np_rng r;
    np_rng_seed(&r, seed);
    CU_ASSERT_FATAL(mr_array_create(ref, MR_FLOAT32, 3, dims) == MR_OK);
    CU_ASSERT_FATAL(mr_array_create(img, MR_FLOAT32, 3, dims) == MR_OK);
    for (size_t s = 0; s < S; s++)
        for (size_t y = 0; y < H; y++)
            for (size_t x = 0; x < W; x++) {
                double v;
                size_t i = (s * H + y) * W + x;
                if (t && H + 20 <= t->dims[1] && W + 20 <= t->dims[2])
                    v = mr_array_f32(t)[((80 + s) * t->dims[1] + 20 + y) * t->dims[2] + 20 + x];
                else
                    v = 100 + 80 * sin(0.1 * (double)x) * cos(0.13 * (double)y);
                v *= 1.0 - 0.2 * (double)s; /* slice s has max about (1 - 0.2 s) x the volume's */
                mr_array_f32(*ref)[i] = (float)v;
                mr_array_f32(*img)[i] = (float)fabs(v + sigma * np_gauss(&r));
            }
}

static void test_volume_semantics(void)
{
    mr_array *ref = NULL, *img = NULL;
    mr_metrics_result res;
    const size_t S = 3, H = 60, W = 50, hw = H * W;
    double maxv = 0, e = 0, g2 = 0, mean = 0;
    make_volume(&ref, &img, S, H, W, 5.0, 3);
    for (size_t i = 0; i < S * hw; i++) {
        double a = mr_array_f32(ref)[i], b = mr_array_f32(img)[i];
        if (a > maxv) maxv = a;
        e += (a - b) * (a - b);
        g2 += a * a;
    }
    CU_ASSERT_EQUAL_FATAL(mr_metrics_volume(&res, ref, img, MR_SSIM_UNIFORM), MR_OK);
    CU_ASSERT_EQUAL(res.slices, S);
    CU_ASSERT_EQUAL(res.data_range, maxv);
    CU_ASSERT(fabs(res.volume.nmse - e / g2) < 1e-12 * (e / g2));
    CU_ASSERT(fabs(res.volume.psnr - 10 * log10(maxv * maxv / (e / (double)(S * hw)))) < 1e-10);
    for (size_t s = 0; s < S; s++) {
        const float *a = mr_array_f32(ref) + s * hw, *b = mr_array_f32(img) + s * hw;
        double v_vol, v_slice, smax = 0, se = 0;
        for (size_t i = 0; i < hw; i++) {
            if (a[i] > smax) smax = a[i];
            se += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        }
        /* per-slice values use the VOLUME max (fastMRI PR 130), not the slice's */
        CU_ASSERT_EQUAL_FATAL(mr_ssim_slice(&v_vol, a, b, H, W, maxv, MR_SSIM_UNIFORM), MR_OK);
        CU_ASSERT_EQUAL_FATAL(mr_ssim_slice(&v_slice, a, b, H, W, smax, MR_SSIM_UNIFORM), MR_OK);
        CU_ASSERT_EQUAL(res.per_slice[s].ssim, v_vol);
        if (s > 0) {
            CU_ASSERT(fabs(v_vol - v_slice) > 1e-4);
        }
        CU_ASSERT(fabs(res.per_slice[s].psnr - 10 * log10(maxv * maxv / (se / (double)hw))) <
                  1e-10);
        mean += v_vol;
    }
    /* the volume SSIM is the mean over slices */
    CU_ASSERT(fabs(res.volume.ssim - mean / (double)S) < 1e-15);
    mr_metrics_result_free(&res);
    mr_metrics_result_free(&res); /* twice is harmless */
    mr_array_destroy(ref);
    mr_array_destroy(img);
}

/* The same numbers whatever the thread count (slices are independent; sums in slice order). */
static void test_thread_independence(void)
{
    mr_array *ref = NULL, *img = NULL;
    mr_metrics_result a, b;
    const char *old = getenv("MRPIPE_THREADS");
    char saved[32] = "";
    if (old) snprintf(saved, sizeof saved, "%s", old);
    make_volume(&ref, &img, 5, 40, 45, 8.0, 9);
    setenv("MRPIPE_THREADS", "1", 1);
    CU_ASSERT_EQUAL_FATAL(mr_metrics_volume(&a, ref, img, MR_SSIM_GAUSSIAN), MR_OK);
    setenv("MRPIPE_THREADS", "3", 1);
    CU_ASSERT_EQUAL_FATAL(mr_metrics_volume(&b, ref, img, MR_SSIM_GAUSSIAN), MR_OK);
    if (saved[0])
        setenv("MRPIPE_THREADS", saved, 1);
    else
        unsetenv("MRPIPE_THREADS");
    CU_ASSERT(memcmp(&a.volume, &b.volume, sizeof a.volume) == 0);
    CU_ASSERT(memcmp(a.per_slice, b.per_slice, 5 * sizeof *a.per_slice) == 0);
    mr_metrics_result_free(&a);
    mr_metrics_result_free(&b);
    mr_array_destroy(ref);
    mr_array_destroy(img);
}

/* Properties: SSIM(x, x) = 1 exactly, symmetric in its arguments, <= 1; PSNR inf, NMSE 0. */
static void test_properties(void)
{
    mr_array *ref = NULL, *img = NULL;
    mr_metrics_result res;
    double s1, s2;
    make_volume(&ref, &img, 2, 30, 33, 4.0, 21);
    CU_ASSERT_EQUAL_FATAL(mr_metrics_volume(&res, ref, ref, MR_SSIM_UNIFORM), MR_OK);
    CU_ASSERT_EQUAL(res.volume.ssim, 1.0);
    CU_ASSERT(isinf(res.volume.psnr) && res.volume.psnr > 0);
    CU_ASSERT_EQUAL(res.volume.nmse, 0.0);
    CU_ASSERT(isinf(res.per_slice[1].psnr));
    mr_metrics_result_free(&res);
    for (int win = 0; win < 2; win++) {
        CU_ASSERT_EQUAL(mr_ssim_slice(&s1, mr_array_f32(ref), mr_array_f32(img), 30, 33, 200.0,
                                      (mr_ssim_window)win),
                        MR_OK);
        CU_ASSERT_EQUAL(mr_ssim_slice(&s2, mr_array_f32(img), mr_array_f32(ref), 30, 33, 200.0,
                                      (mr_ssim_window)win),
                        MR_OK);
        CU_ASSERT(fabs(s1 - s2) < 1e-14);
        CU_ASSERT(s1 < 1.0 && s1 > 0.0);
    }
    CU_ASSERT_EQUAL(mr_ssim_window_size(MR_SSIM_UNIFORM), 7);
    CU_ASSERT_EQUAL(mr_ssim_window_size(MR_SSIM_GAUSSIAN), 11);
    mr_array_destroy(ref);
    mr_array_destroy(img);
}

/* ================================================================ library errors */

static void test_library_errors(void)
{
    size_t d3[3] = {3, 20, 21}, d2[3] = {2, 20, 21}, dsmall[3] = {1, 5, 6};
    mr_array *a = NULL, *b = NULL, *c = NULL, *s1 = NULL, *s2 = NULL;
    mr_metrics_result res;
    double v;
    float img[36] = {0};
    CU_ASSERT_FATAL(mr_array_create(&a, MR_FLOAT32, 3, d3) == MR_OK);
    CU_ASSERT_FATAL(mr_array_create(&b, MR_FLOAT32, 3, d3) == MR_OK);
    CU_ASSERT_FATAL(mr_array_create(&c, MR_FLOAT32, 3, d2) == MR_OK);
    CU_ASSERT_FATAL(mr_array_create(&s1, MR_FLOAT32, 3, dsmall) == MR_OK);
    CU_ASSERT_FATAL(mr_array_create(&s2, MR_FLOAT32, 3, dsmall) == MR_OK);
    for (size_t i = 0; i < mr_array_numel(a); i++)
        mr_array_f32(a)[i] = (float)(i % 17);

    /* smaller than the window: the size is named */
    CU_ASSERT_EQUAL(mr_ssim_slice(&v, img, img, 5, 6, 1.0, MR_SSIM_UNIFORM), MR_ERR_INPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(mr_error_message(), "5 x 6"));
    CU_ASSERT_EQUAL(mr_ssim_slice(&v, img, img, 6, 6, 1.0, MR_SSIM_GAUSSIAN), MR_ERR_INPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(mr_error_message(), "6 x 6"));
    mr_array_f32(s1)[0] = 1;
    CU_ASSERT_EQUAL(mr_metrics_volume(&res, s1, s2, MR_SSIM_UNIFORM), MR_ERR_INPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(mr_error_message(), "5 x 6"));
    CU_ASSERT_PTR_NULL(res.per_slice);
    /* the data range must be positive */
    CU_ASSERT_EQUAL(mr_ssim_slice(&v, img, img, 6, 6, 0.0, MR_SSIM_UNIFORM), MR_ERR_INPUT);

    /* all-zero reference: PSNR undefined, said so */
    CU_ASSERT_EQUAL(mr_metrics_volume(&res, b, a, MR_SSIM_UNIFORM), MR_ERR_INPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(mr_error_message(), "PSNR undefined"));

    /* NaN and Inf: which image, slice and pixel */
    mr_array_f32(b)[(1 * 20 + 2) * 21 + 3] = NAN;
    CU_ASSERT_EQUAL(mr_metrics_volume(&res, a, b, MR_SSIM_UNIFORM), MR_ERR_INPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(mr_error_message(), "input"));
    CU_ASSERT_PTR_NOT_NULL(strstr(mr_error_message(), "slice 1, pixel (row 2, column 3)"));
    mr_array_f32(b)[(1 * 20 + 2) * 21 + 3] = 0;
    mr_array_f32(a)[(2 * 20 + 19) * 21 + 20] = INFINITY;
    CU_ASSERT_EQUAL(mr_metrics_volume(&res, a, b, MR_SSIM_UNIFORM), MR_ERR_INPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(mr_error_message(), "reference"));
    CU_ASSERT_PTR_NOT_NULL(strstr(mr_error_message(), "slice 2, pixel (row 19, column 20)"));
    mr_array_f32(a)[(2 * 20 + 19) * 21 + 20] = 1;

    /* shape mismatch names both shapes */
    CU_ASSERT_EQUAL(mr_metrics_volume(&res, a, c, MR_SSIM_UNIFORM), MR_ERR_INPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(mr_error_message(), "(3, 20, 21)"));
    CU_ASSERT_PTR_NOT_NULL(strstr(mr_error_message(), "(2, 20, 21)"));

    mr_ssim_plan_destroy(NULL);
    mr_array_destroy(a);
    mr_array_destroy(b);
    mr_array_destroy(c);
    mr_array_destroy(s1);
    mr_array_destroy(s2);
}

/* ================================================================ the CLI */

static mr_array *vol_create(size_t S, size_t H, size_t W)
{
    mr_array *a = NULL;
    size_t d[3] = {S, H, W};
    CU_ASSERT_FATAL(mr_array_create(&a, MR_FLOAT32, 3, d) == MR_OK);
    return a;
}

/* A smooth positive test volume with noise (deterministic). */
static mr_array *vol_pattern(size_t S, size_t H, size_t W, double noise, uint32_t seed)
{
    mr_array *a = vol_create(S, H, W);
    np_rng r;
    np_rng_seed(&r, seed);
    for (size_t s = 0; s < S; s++)
        for (size_t y = 0; y < H; y++)
            for (size_t x = 0; x < W; x++)
                mr_array_f32(a)[(s * H + y) * W + x] =
                    (float)fabs(50 + 40 * sin(0.05 * (double)(x + 3 * s)) * cos(0.07 * (double)y) +
                                noise * np_gauss(&r));
    return a;
}

static void write_nii(const char *name, const mr_array *a)
{
    CU_ASSERT_EQUAL_FATAL(mr_nifti_write(mr_test_path(name), a, NULL), MR_OK);
}

/* Last line of the captured output. */
static const char *last_line(void)
{
    static char buf[1024];
    const char *out = mr_test_output(), *end = out + strlen(out), *p;
    while (end > out && end[-1] == '\n')
        end--;
    p = end;
    while (p > out && p[-1] != '\n')
        p--;
    snprintf(buf, sizeof buf, "%.*s", (int)(end - p), p);
    return buf;
}

/* Run mrpipe metrics with outputs j.json and c.csv in a fresh directory; check that a failure
 * writes nothing and leaves no temporary. Returns the exit code. */
static int run_metrics(const char *args, int stdout_only)
{
    const char *dir = mr_test_path("out");
    int rc;
    mr_test_sh("rm -rf %s && mkdir -p %s", dir, dir);
    rc = mr_test_sh("%s metrics %s --json %s/j.json --csv %s/c.csv%s", mr_test_bin(), args, dir,
                    dir, stdout_only ? " 2>/dev/null" : "");
    if (rc != 0) {
        CU_ASSERT_EQUAL(mr_test_count_files(dir, ".json"), 0);
        CU_ASSERT_EQUAL(mr_test_count_files(dir, ".csv"), 0);
        CU_ASSERT_EQUAL(mr_test_count_files(dir, "partial"), 0);
    }
    return rc;
}

static void expect_error(const char *args, const char *needle1, const char *needle2)
{
    int rc = run_metrics(args, 0);
    CU_ASSERT_EQUAL(rc, 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(mr_test_output(), "mrpipe metrics: "));
    if (needle1 && !strstr(mr_test_output(), needle1)) {
        fprintf(stderr, "\n  expected '%s' in: %s\n", needle1, mr_test_output());
        CU_FAIL("message");
    }
    if (needle2 && !strstr(mr_test_output(), needle2)) {
        fprintf(stderr, "\n  expected '%s' in: %s\n", needle2, mr_test_output());
        CU_FAIL("message");
    }
}

static double json_get(const char *json, const char *key, int *is_null)
{
    char pat[64];
    const char *p;
    snprintf(pat, sizeof pat, "\"%s\": ", key);
    p = strstr(json, pat);
    *is_null = -1;
    if (!p) return NAN;
    p += strlen(pat);
    *is_null = !strncmp(p, "null", 4);
    return *is_null ? NAN : strtod(p, NULL);
}

static void test_cli_identical_and_outputs(void)
{
    mr_array *a = vol_pattern(3, 40, 36, 0, 1);
    char *json, *csv;
    int isnull;
    write_nii("same.nii.gz", a);
    {
        char args[10000];
        snprintf(args, sizeof args, "--reference %s --input %s", mr_test_path("same.nii.gz"),
                 mr_test_path("same.nii.gz"));
        CU_ASSERT_EQUAL(run_metrics(args, 1), 0);
    }
    CU_ASSERT_STRING_EQUAL(last_line(), "NMSE=0 PSNR=inf SSIM=1");
    CU_ASSERT_PTR_NOT_NULL(strstr(mr_test_output(), "slice 2: NMSE=0 PSNR=inf SSIM=1"));
    json = read_text(mr_test_path("out/j.json"));
    csv = read_text(mr_test_path("out/c.csv"));
    CU_ASSERT_PTR_NOT_NULL_FATAL(json);
    CU_ASSERT_PTR_NOT_NULL_FATAL(csv);
    CU_ASSERT_EQUAL(json_get(json, "nmse", &isnull), 0.0);
    json_get(json, "psnr", &isnull);
    CU_ASSERT_EQUAL(isnull, 1); /* inf is null in JSON */
    CU_ASSERT_EQUAL(json_get(json, "ssim", &isnull), 1.0);
    CU_ASSERT_PTR_NOT_NULL(strstr(json, "\"slices\": ["));
    CU_ASSERT_PTR_NOT_NULL(strstr(json, "\"mrpipe_version\": \"" MR_VERSION_STRING "\""));
    CU_ASSERT_PTR_NOT_NULL(strstr(json, "\"compared_shape\": [3, 40, 36]"));
    CU_ASSERT_PTR_NOT_NULL(strstr(json, "\"type\": \"uniform\", \"size\": 7"));
    CU_ASSERT_PTR_NULL(strstr(json, "inf"));
    CU_ASSERT_PTR_NOT_NULL(strstr(csv, "slice,nmse,psnr,ssim\n0,0,inf,1\n1,0,inf,1\n2,0,inf,1\n"));
    /* the JSON parses (Python's json when available) */
    if (python_has_skimage()) {
        CU_ASSERT_EQUAL(mr_test_sh("%s -c 'import json,sys; d=json.load(open(sys.argv[1])); "
                                   "assert d[\"psnr\"] is None and len(d[\"slices\"]) == 3' %s",
                                   mr_test_python(), mr_test_path("out/j.json")),
                        0);
    }
    free(json);
    free(csv);
    mr_array_destroy(a);
}

static void test_cli_bad_inputs(void)
{
    char args[10000];
    mr_array *ref = vol_pattern(3, 40, 40, 0, 2), *in2 = vol_pattern(2, 40, 40, 3, 3);
    mr_array *small = vol_pattern(1, 5, 6, 0, 4), *zero = vol_create(3, 40, 40);
    mr_array *nan = vol_pattern(3, 40, 40, 3, 5), *narrow = vol_pattern(3, 40, 30, 3, 6);
    char p_ref[4096], p_in2[4096];
    snprintf(p_ref, sizeof p_ref, "%s", mr_test_path("b_ref.nii"));
    snprintf(p_in2, sizeof p_in2, "%s", mr_test_path("b_in2.nii"));
    mr_array_f32(nan)[(1 * 40 + 2) * 40 + 3] = NAN;
    write_nii("b_ref.nii", ref);
    write_nii("b_in2.nii", in2);
    write_nii("b_small.nii", small);
    write_nii("b_zero.nii", zero);
    write_nii("b_nan.nii", nan);
    write_nii("b_narrow.nii", narrow);

    /* images smaller than the window */
    snprintf(args, sizeof args, "--reference %s --input %s", mr_test_path("b_small.nii"),
             mr_test_path("b_small.nii"));
    expect_error(args, "5 x 6", "smaller than the uniform SSIM window");
    /* slice-count mismatch names both shapes */
    snprintf(args, sizeof args, "--reference %s --input %s", p_ref, p_in2);
    expect_error(args, "(3, 40, 40)", "(2, 40, 40)");
    /* all-zero reference */
    snprintf(args, sizeof args, "--reference %s --input %s", mr_test_path("b_zero.nii"), p_ref);
    expect_error(args, "PSNR undefined", NULL);
    /* NaN in the input */
    snprintf(args, sizeof args, "--reference %s --input %s", p_ref, mr_test_path("b_nan.nii"));
    expect_error(args, "slice 1, pixel (row 2, column 3)", "nan");
    /* input smaller in-plane than the reference: cannot crop */
    snprintf(args, sizeof args, "--reference %s --input %s", p_ref, mr_test_path("b_narrow.nii"));
    expect_error(args, "(3, 40, 30)", "(3, 40, 40)");
    /* missing and unreadable files */
    snprintf(args, sizeof args, "--reference %s --input %s", p_ref, mr_test_path("missing.nii"));
    expect_error(args, "missing.nii", "No such file");
    mr_test_sh("printf 'not an image' > %s; printf 'garbage' > %s; head -c 400 /dev/zero > %s",
               mr_test_path("junk.h5"), mr_test_path("junk.nii"), mr_test_path("junk.nii.gz"));
    snprintf(args, sizeof args, "--reference %s --input %s", mr_test_path("junk.h5"), p_ref);
    expect_error(args, "junk.h5", NULL);
    snprintf(args, sizeof args, "--reference %s --input %s", p_ref, mr_test_path("junk.nii"));
    expect_error(args, "junk.nii", NULL);
    snprintf(args, sizeof args, "--reference %s --input %s", p_ref, mr_test_path("junk.nii.gz"));
    expect_error(args, "junk.nii.gz", NULL);
    /* DICOM: a broken file (DICM marker, no data set) is an error naming it */
    mr_test_sh("(head -c 128 /dev/zero; printf 'DICM'; head -c 64 /dev/zero) > %s",
               mr_test_path("img.dcm"));
    snprintf(args, sizeof args, "--reference %s --input %s", mr_test_path("img.dcm"), p_ref);
    expect_error(args, "img.dcm", NULL);
    /* an HDF5 dataset that does not exist */
    snprintf(args, sizeof args, "--reference %s:nothing --input %s", mr_test_path("h_both.h5"),
             p_ref);
    expect_error(args, NULL, NULL);
    /* usage errors */
    expect_error("--input x.nii", "--reference is required", NULL);
    snprintf(args, sizeof args, "--reference %s --input %s --ssim box", p_ref, p_ref);
    expect_error(args, "--ssim: expected uniform or gaussian, found 'box'", NULL);
    expect_error("--bogus", "unknown option", NULL);
    /* an output directory that does not exist */
    CU_ASSERT_EQUAL(mr_test_sh("%s metrics --reference %s --input %s --json %s/nodir/x.json",
                               mr_test_bin(), p_ref, p_ref, mr_test_tmpdir()),
                    1);
    CU_ASSERT_PTR_NOT_NULL(strstr(mr_test_output(), "does not exist"));

    mr_array_destroy(ref);
    mr_array_destroy(in2);
    mr_array_destroy(small);
    mr_array_destroy(zero);
    mr_array_destroy(nan);
    mr_array_destroy(narrow);
}

/* fastMRI's centre crop: an input of 640 x 368 against a 320 x 320 reference is compared on rows
 * [160, 480) and columns [24, 344). */
static void test_cli_crop(void)
{
    const size_t S = 2, H = 640, W = 368, h = 320, w = 320;
    mr_array *big = vol_pattern(S, H, W, 4, 7), *full = vol_pattern(S, H, W, 0, 7);
    mr_array *ref = vol_create(S, h, w), *crop = vol_create(S, h, w);
    mr_metrics_result res;
    char args[10000], expect[256];
    for (size_t s = 0; s < S; s++)
        for (size_t y = 0; y < h; y++)
            for (size_t x = 0; x < w; x++) {
                size_t src = (s * H + y + (H - h) / 2) * W + x + (W - w) / 2;
                mr_array_f32(ref)[(s * h + y) * w + x] = mr_array_f32(full)[src];
                mr_array_f32(crop)[(s * h + y) * w + x] = mr_array_f32(big)[src];
            }
    write_nii("c_ref.nii.gz", ref);
    write_nii("c_big.nii.gz", big);
    CU_ASSERT_EQUAL_FATAL(mr_metrics_volume(&res, ref, crop, MR_SSIM_UNIFORM), MR_OK);
    snprintf(expect, sizeof expect, "NMSE=%.9g PSNR=%.9g SSIM=%.9g", res.volume.nmse,
             res.volume.psnr, res.volume.ssim);
    snprintf(args, sizeof args, "--reference %s --input %s", mr_test_path("c_ref.nii.gz"),
             mr_test_path("c_big.nii.gz"));
    CU_ASSERT_EQUAL(run_metrics(args, 1), 0);
    CU_ASSERT_STRING_EQUAL(last_line(), expect);
    /* fastMRI's transcription: center_crop + evaluate.py on the same files */
    if (python_has_skimage()) {
        CU_ASSERT_EQUAL(
            mr_test_sh(
                "%s - %s %s <<'EOF'\n"
                "import sys, numpy as np, nibabel as nib\n"
                "from skimage.metrics import structural_similarity, peak_signal_noise_ratio\n"
                "def load(p): return "
                "np.ascontiguousarray(np.transpose(np.asanyarray(nib.load(p).dataobj), (2, 1, "
                "0)))\n"
                "def center_crop(data, shape):\n"
                "    w_from = (data.shape[-2] - shape[0]) // 2\n"
                "    h_from = (data.shape[-1] - shape[1]) // 2\n"
                "    return data[..., w_from:w_from + shape[0], h_from:h_from + shape[1]]\n"
                "gt = load(sys.argv[1]); pred = load(sys.argv[2])\n"
                "pred = center_crop(pred, gt.shape[-2:])\n"
                "m = gt.max(); s = np.array([0])\n"
                "for i in range(gt.shape[0]): s = s + structural_similarity(gt[i], pred[i], "
                "data_range=m)\n"
                "print('NMSE=%%.17g PSNR=%%.17g SSIM=%%.17g' %% (np.linalg.norm(gt - pred) ** 2 / "
                "np.linalg.norm(gt) ** 2,"
                " peak_signal_noise_ratio(gt, pred, data_range=m), (s / gt.shape[0])[0]))\n"
                "EOF",
                mr_test_python(), mr_test_path("c_ref.nii.gz"), mr_test_path("c_big.nii.gz")),
            0);
        {
            double n, p, s;
            CU_ASSERT_EQUAL_FATAL(
                sscanf(mr_test_output(), "NMSE=%lf PSNR=%lf SSIM=%lf", &n, &p, &s), 3);
            CU_ASSERT(fabs(n - res.volume.nmse) < 1e-6 * n);
            CU_ASSERT(fabs(p - res.volume.psnr) < 1e-5);
            CU_ASSERT(fabs(s - res.volume.ssim) < 1e-5);
        }
    }
    mr_metrics_result_free(&res);
    mr_array_destroy(big);
    mr_array_destroy(full);
    mr_array_destroy(ref);
    mr_array_destroy(crop);
}

/* .h5 dataset choice by role, FILE.h5:NAME, complex datasets and BART .cfl as magnitude. */
static void test_cli_formats(void)
{
    const size_t S = 2, H = 24, W = 20, n = S * H * W;
    mr_array *rss = vol_pattern(S, H, W, 0, 11), *rec = vol_pattern(S, H, W, 2, 12);
    mr_array *cplx = NULL, *mag = vol_create(S, H, W), *loaded = NULL;
    mr_fastmri_writer *wr = NULL;
    mr_cfloat *k;
    char args[10000], desc[4200];
    char *json;
    size_t d3[3] = {S, H, W}, cd2[4] = {S, 2, H, W};
    CU_ASSERT_FATAL(mr_array_create(&cplx, MR_COMPLEX64, 3, d3) == MR_OK);
    k = mr_array_c64(cplx);
    for (size_t i = 0; i < n; i++) {
        k[i] = mr_array_f32(rec)[i] * cexpf(I * (float)(0.01 * (double)i));
        mr_array_f32(mag)[i] = cabsf(k[i]);
    }
    /* an .h5 with both reconstruction_rss and reconstruction, and single-coil complex kspace */
    CU_ASSERT_EQUAL_FATAL(mr_fastmri_writer_create(&wr, mr_test_path("h_both.h5")), MR_OK);
    CU_ASSERT_EQUAL_FATAL(mr_fastmri_writer_kspace_begin(wr, 0, S, 1, H, W), MR_OK);
    for (size_t s = 0; s < S; s++)
        CU_ASSERT_EQUAL_FATAL(mr_fastmri_writer_kspace_slice(wr, s, k + s * H * W), MR_OK);
    CU_ASSERT_EQUAL_FATAL(mr_fastmri_writer_image(wr, "reconstruction_rss", rss), MR_OK);
    CU_ASSERT_EQUAL_FATAL(mr_fastmri_writer_image(wr, "reconstruction", rec), MR_OK);
    CU_ASSERT_EQUAL_FATAL(mr_fastmri_writer_commit(wr), MR_OK);
    write_nii("f_rss.nii", rss);
    write_nii("f_rec.nii", rec);
    write_nii("f_mag.nii", mag);

    /* the reference role picks reconstruction_rss, the input role reconstruction */
    CU_ASSERT_EQUAL(mr_image_load(&loaded, desc, sizeof desc, mr_test_path("h_both.h5"), 1), MR_OK);
    CU_ASSERT_PTR_NOT_NULL(strstr(desc, "h_both.h5:reconstruction_rss"));
    CU_ASSERT(loaded && memcmp(loaded->data, rss->data, n * 4) == 0);
    mr_array_destroy(loaded);
    CU_ASSERT_EQUAL(mr_image_load(&loaded, desc, sizeof desc, mr_test_path("h_both.h5"), 0), MR_OK);
    CU_ASSERT_PTR_NOT_NULL(strstr(desc, "h_both.h5:reconstruction"));
    CU_ASSERT_PTR_NULL(strstr(desc, "_rss"));
    CU_ASSERT(loaded && memcmp(loaded->data, rec->data, n * 4) == 0);
    mr_array_destroy(loaded);
    /* FILE.h5:NAME; a complex dataset becomes its magnitude */
    snprintf(args, sizeof args, "%s:kspace", mr_test_path("h_both.h5"));
    CU_ASSERT_EQUAL(mr_image_load(&loaded, desc, sizeof desc, args, 1), MR_OK);
    CU_ASSERT(loaded && loaded->ndim == 3 && loaded->dims[0] == S && loaded->dims[1] == H);
    CU_ASSERT(loaded && memcmp(loaded->data, mag->data, n * 4) == 0);
    mr_array_destroy(loaded);

    snprintf(args, sizeof args, "--reference %s --input %s", mr_test_path("h_both.h5"),
             mr_test_path("h_both.h5"));
    CU_ASSERT_EQUAL(run_metrics(args, 1), 0);
    json = read_text(mr_test_path("out/j.json"));
    CU_ASSERT_PTR_NOT_NULL_FATAL(json);
    CU_ASSERT_PTR_NOT_NULL(strstr(json, "h_both.h5:reconstruction_rss\""));
    CU_ASSERT_PTR_NOT_NULL(strstr(json, "h_both.h5:reconstruction\""));
    free(json);
    {
        char out1[256];
        snprintf(args, sizeof args, "--reference %s --input %s", mr_test_path("f_rss.nii"),
                 mr_test_path("f_rec.nii"));
        CU_ASSERT_EQUAL(run_metrics(args, 1), 0);
        snprintf(out1, sizeof out1, "%s", last_line());
        CU_ASSERT_STRING_NOT_EQUAL(out1, "NMSE=0 PSNR=inf SSIM=1");
        snprintf(args, sizeof args, "--reference %s --input %s", mr_test_path("h_both.h5"),
                 mr_test_path("h_both.h5"));
        CU_ASSERT_EQUAL(run_metrics(args, 1), 0);
        CU_ASSERT_STRING_EQUAL(last_line(), out1);
    }
    snprintf(args, sizeof args, "--reference %s --input %s:kspace", mr_test_path("f_mag.nii"),
             mr_test_path("h_both.h5"));
    CU_ASSERT_EQUAL(run_metrics(args, 1), 0);
    CU_ASSERT_STRING_EQUAL(last_line(), "NMSE=0 PSNR=inf SSIM=1");

    /* BART .cfl: magnitude; more than one coil is refused naming the dims */
    CU_ASSERT_EQUAL_FATAL(mr_cfl_write(mr_test_path("f_c"), cplx), MR_OK);
    snprintf(args, sizeof args, "--reference %s --input %s.cfl", mr_test_path("f_mag.nii"),
             mr_test_path("f_c"));
    CU_ASSERT_EQUAL(run_metrics(args, 1), 0);
    CU_ASSERT_STRING_EQUAL(last_line(), "NMSE=0 PSNR=inf SSIM=1");
    {
        mr_array *c2 = NULL;
        CU_ASSERT_FATAL(mr_array_create(&c2, MR_COMPLEX64, 4, cd2) == MR_OK);
        for (size_t i = 0; i < 2 * n; i++)
            mr_array_c64(c2)[i] = 1.0f + (float)(i % 7);
        CU_ASSERT_EQUAL_FATAL(mr_cfl_write(mr_test_path("f_c2"), c2), MR_OK);
        mr_array_destroy(c2);
    }
    snprintf(args, sizeof args, "--reference %s --input %s", mr_test_path("f_mag.nii"),
             mr_test_path("f_c2.cfl"));
    expect_error(args, "2 coils", "(2, 2, 24, 20)");
    /* an ISMRMRD-like or image-less .h5 has no image dataset */
    {
        mr_fastmri_writer *w2 = NULL;
        CU_ASSERT_EQUAL_FATAL(mr_fastmri_writer_create(&w2, mr_test_path("h_k.h5")), MR_OK);
        CU_ASSERT_EQUAL_FATAL(mr_fastmri_writer_kspace_begin(w2, 0, S, 1, H, W), MR_OK);
        for (size_t s = 0; s < S; s++)
            CU_ASSERT_EQUAL_FATAL(mr_fastmri_writer_kspace_slice(w2, s, k + s * H * W), MR_OK);
        CU_ASSERT_EQUAL_FATAL(mr_fastmri_writer_commit(w2), MR_OK);
    }
    snprintf(args, sizeof args, "--reference %s --input %s", mr_test_path("h_k.h5"),
             mr_test_path("f_rec.nii"));
    expect_error(args,
                 "expected an image dataset (reconstruction_rss, reconstruction_esc or "
                 "reconstruction)",
                 NULL);
    mr_array_destroy(rss);
    mr_array_destroy(rec);
    mr_array_destroy(cplx);
    mr_array_destroy(mag);
}

/* End to end: simulate from ch2, reconstruct undersampled, compare with a Python transcription of
 * fastMRI's evaluate.py (nmse, psnr, ssim functions) run on the same .h5 arrays. */
static void test_end_to_end_fastmri(void)
{
    char sim[4096], rec[4096], args[10000], *json;
    double mn, mp, ms, pn, pp, ps;
    int isnull;
    if (!template_get("ch2.nii.gz") || !python_has_skimage()) {
        fprintf(stderr, "\n  (skipped: needs %s and skimage)\n", TEMPLATES);
        return;
    }
    snprintf(sim, sizeof sim, "%s", mr_test_path("e_sim.h5"));
    snprintf(rec, sizeof rec, "%s", mr_test_path("e_rec.h5"));
    /* square images: evaluate.py crops to (W, W) of the target, the same as (H, W) here */
    CU_ASSERT_EQUAL_FATAL(mr_test_sh("%s -q simulate --input %s/ch2.nii.gz --output %s --slices "
                                     "78:84 --matrix 128,128 --coils 4 --seed 3",
                                     mr_test_bin(), TEMPLATES, sim),
                          0);
    CU_ASSERT_EQUAL_FATAL(mr_test_sh("%s -q recon --input %s --output %s --mask equispaced "
                                     "--accel 4 --center-fraction 0.08 --seed 1",
                                     mr_test_bin(), sim, rec),
                          0);
    snprintf(args, sizeof args, "--reference %s --input %s", sim, rec);
    CU_ASSERT_EQUAL_FATAL(run_metrics(args, 1), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(mr_test_output(), "slice 5: "));
    CU_ASSERT_EQUAL(sscanf(last_line(), "NMSE=%lf PSNR=%lf SSIM=%lf", &mn, &mp, &ms), 3);
    json = read_text(mr_test_path("out/j.json"));
    CU_ASSERT_PTR_NOT_NULL_FATAL(json);
    mn = json_get(json, "nmse", &isnull);
    mp = json_get(json, "psnr", &isnull);
    ms = json_get(json, "ssim", &isnull);
    free(json);
    CU_ASSERT_EQUAL_FATAL(
        mr_test_sh("%s - %s %s <<'EOF'\n"
                   "import sys, h5py, numpy as np\n"
                   "from skimage.metrics import peak_signal_noise_ratio, structural_similarity\n"
                   "# fastmri/evaluate.py\n"
                   "def nmse(gt, pred):\n"
                   "    return np.array(np.linalg.norm(gt - pred) ** 2 / np.linalg.norm(gt) ** 2)\n"
                   "def psnr(gt, pred, maxval=None):\n"
                   "    maxval = gt.max() if maxval is None else maxval\n"
                   "    return peak_signal_noise_ratio(gt, pred, data_range=maxval)\n"
                   "def ssim(gt, pred, maxval=None):\n"
                   "    maxval = gt.max() if maxval is None else maxval\n"
                   "    ssim = np.array([0])\n"
                   "    for slice_num in range(gt.shape[0]):\n"
                   "        ssim = ssim + structural_similarity(gt[slice_num], pred[slice_num], "
                   "data_range=maxval)\n"
                   "    return ssim / gt.shape[0]\n"
                   "def center_crop(data, shape):\n"
                   "    w_from = (data.shape[-2] - shape[0]) // 2\n"
                   "    h_from = (data.shape[-1] - shape[1]) // 2\n"
                   "    return data[..., w_from:w_from + shape[0], h_from:h_from + shape[1]]\n"
                   "target = h5py.File(sys.argv[1], 'r')['reconstruction_rss'][()]\n"
                   "recons = h5py.File(sys.argv[2], 'r')['reconstruction'][()]\n"
                   "target = center_crop(target, (target.shape[-1], target.shape[-1]))\n"
                   "recons = center_crop(recons, (target.shape[-1], target.shape[-1]))\n"
                   "print('%%.17g %%.17g %%.17g' %% (nmse(target, recons), psnr(target, recons), "
                   "ssim(target, recons)[0]))\n"
                   "EOF",
                   mr_test_python(), sim, rec),
        0);
    CU_ASSERT_EQUAL_FATAL(sscanf(mr_test_output(), "%lf %lf %lf", &pn, &pp, &ps), 3);
    fprintf(stderr,
            "\n  end to end: mrpipe NMSE %.12g PSNR %.12g SSIM %.12g; evaluate.py %.12g %.12g "
            "%.12g\n",
            mn, mp, ms, pn, pp, ps);
    CU_ASSERT(fabs(mn - pn) < 1e-6 * pn);
    CU_ASSERT(fabs(mp - pp) < 1e-5);
    CU_ASSERT(fabs(ms - ps) < 1e-5);
    CU_ASSERT(mp > 15 && mp < 60 && ms > 0.3 && ms < 1);
}

/* DICOM inputs: the same pixels in two transfer syntaxes are identical (NMSE 0, PSNR inf, SSIM 1);
 * a DICOM reference against its NIfTI conversion too; numbers equal those on the NIfTI copies. */
static void test_cli_dicom(void)
{
    const char *dir = "/usr/lib/python3/dist-packages/pydicom/data/test_files";
    char args[4096];
    snprintf(args, sizeof args, "--reference %s/MR_small.dcm --input %s/MR_small_RLE.dcm", dir, dir);
    CU_ASSERT_EQUAL(run_metrics(args, 1), 0);
    CU_ASSERT_STRING_EQUAL(last_line(), "NMSE=0 PSNR=inf SSIM=1");
    CU_ASSERT_FATAL(mr_test_sh("%s -q convert --input %s/MR_small.dcm --output %s", mr_test_bin(),
                               dir, mr_test_path("mrs.nii.gz")) == 0);
    CU_ASSERT_FATAL(mr_test_sh("%s - <<'EOF'\nimport nibabel as nb, numpy as np\n"
                               "im = nb.load('%s'); d = im.get_fdata().astype(np.float32)\n"
                               "rng = np.random.RandomState(0)\n"
                               "n = d + rng.standard_normal(d.shape).astype(np.float32) * 50\n"
                               "nb.save(nb.Nifti1Image(n, im.affine), '%s')\nEOF",
                               mr_test_python(), mr_test_path("mrs.nii.gz"),
                               mr_test_path("mrs_noisy.nii.gz")) == 0);
    char dicom_line[256];
    snprintf(args, sizeof args, "--reference %s/MR_small.dcm --input %s", dir,
             mr_test_path("mrs_noisy.nii.gz"));
    CU_ASSERT_EQUAL(run_metrics(args, 1), 0);
    snprintf(dicom_line, sizeof dicom_line, "%s", last_line());
    snprintf(args, sizeof args, "--reference %s --input %s", mr_test_path("mrs.nii.gz"),
             mr_test_path("mrs_noisy.nii.gz"));
    CU_ASSERT_EQUAL(run_metrics(args, 1), 0);
    CU_ASSERT_STRING_EQUAL(last_line(), dicom_line);
    CU_ASSERT(strstr(dicom_line, "PSNR=inf") == NULL);
}

int main(void)
{
    static const mr_test_case cases[] = {
        {"skimage_agreement", test_skimage_agreement},
        {"golden_is_current", test_golden_is_current},
        {"gaussian_camera", test_gaussian_camera},
        {"volume_semantics", test_volume_semantics},
        {"thread_independence", test_thread_independence},
        {"properties", test_properties},
        {"library_errors", test_library_errors},
        {"cli_identical_and_outputs", test_cli_identical_and_outputs},
        {"cli_formats", test_cli_formats},
        {"cli_dicom", test_cli_dicom},
        {"cli_bad_inputs", test_cli_bad_inputs},
        {"cli_crop", test_cli_crop},
        {"end_to_end_fastmri", test_end_to_end_fastmri},
        {NULL, NULL},
    };
    int rc = mr_test_run("metrics", cases);
    for (int i = 0; i < 4; i++)
        mr_array_destroy(g_templates[i]);
    free(g_golden.v);
    free(g_live.v);
    return rc;
}
