/*
 * fft.c: centred orthonormal 2-D FFTs over a batch of images with FFTW (single precision).
 *
 * Convention (fastMRI fastmri/fftc.py, and BART `fft -u` for even sizes):
 *     X = fftshift(DFT(ifftshift(x))) / sqrt(h w)
 * For an even axis of length N the shifts are modulations: ifftshift(x)[n] = x[n + N/2], so
 *     fftshift(DFT(ifftshift(x)))[k] = (-1)^(k - N/2) DFT((-1)^n x)[k],
 * which lets even-sized transforms run in place with two cheap sign passes (fused with the
 * 1/sqrt(N) scaling). Odd sizes shift through a temporary copy.
 *
 * Plans are made once (guru "many" interface, batched over coils) and executed on any buffer; FFTW's
 * planner is not thread-safe, so planning is serialised. Wisdom is cached across runs.
 */
#include "mr_recon.h"

#include <fftw3.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct mr_fft_plan {
    size_t batch, h, w;
    fftwf_plan fwd, inv;           /* for 16-byte aligned buffers (SIMD) */
    fftwf_plan fwd_un, inv_un;     /* for any alignment */
    int align_ref;                 /* fftwf_alignment_of the planning buffer */
};

static pthread_mutex_t g_plan_lock = PTHREAD_MUTEX_INITIALIZER;
static int g_fftw_ready;
static char g_wisdom_path[4096];

static void wisdom_path_init(void)
{
    const char *xdg = getenv("XDG_CACHE_HOME");
    const char *home = getenv("HOME");
    char dir[4096];
    if (xdg && *xdg) snprintf(dir, sizeof dir, "%s/mrpipe", xdg);
    else if (home && *home) snprintf(dir, sizeof dir, "%s/.cache/mrpipe", home);
    else return;
    /* best effort: create ~/.cache then ~/.cache/mrpipe */
    {
        char parent[4096];
        snprintf(parent, sizeof parent, "%s", dir);
        char *slash = strrchr(parent, '/');
        if (slash) {
            *slash = '\0';
            mkdir(parent, 0755);
        }
    }
    mkdir(dir, 0755);
    if (snprintf(g_wisdom_path, sizeof g_wisdom_path, "%s/fftw-wisdom-f32", dir) >=
        (int)sizeof g_wisdom_path)
        g_wisdom_path[0] = '\0'; /* no cache for absurdly long paths */
}

/* Called with g_plan_lock held. */
static void fftw_init_once(void)
{
    if (g_fftw_ready) return;
    fftwf_init_threads();
    wisdom_path_init();
    if (g_wisdom_path[0]) fftwf_import_wisdom_from_filename(g_wisdom_path);
    g_fftw_ready = 1;
}

static unsigned planner_flags(void)
{
    const char *p = getenv("MRPIPE_FFTW_PLANNER");
    if (p && !strcmp(p, "estimate")) return FFTW_ESTIMATE;
    if (p && !strcmp(p, "patient")) return FFTW_PATIENT;
    return FFTW_MEASURE;
}

void mr_fft_save_wisdom(void)
{
    pthread_mutex_lock(&g_plan_lock);
    if (g_fftw_ready && g_wisdom_path[0]) {
        char tmp[4200];
        snprintf(tmp, sizeof tmp, "%s.tmp-%d", g_wisdom_path, (int)getpid());
        if (fftwf_export_wisdom_to_filename(tmp)) rename(tmp, g_wisdom_path);
        else remove(tmp);
    }
    pthread_mutex_unlock(&g_plan_lock);
}

const char *mr_fft_version(void) { return fftwf_version; }

static fftwf_plan make_plan(size_t batch, size_t h, size_t w, int sign, unsigned flags,
                            fftwf_complex *buf)
{
    int n[2] = {(int)h, (int)w};
    int dist = (int)(h * w);
    return fftwf_plan_many_dft(2, n, (int)batch, buf, NULL, 1, dist, buf, NULL, 1, dist, sign,
                               flags);
}

mr_status mr_fft_plan_create(mr_fft_plan **out, size_t batch, size_t h, size_t w)
{
    mr_fft_plan *p;
    fftwf_complex *buf;
    unsigned flags = planner_flags();
    *out = NULL;
    if (batch == 0 || h == 0 || w == 0 || h > (1u << 24) || w > (1u << 24) ||
        batch * h * w > (size_t)1 << 31)
        return mr_error_set(MR_ERR_INPUT, "FFT size %zu x (%zu, %zu) outside what FFTW plans here",
                            batch, h, w);
    p = mr_calloc(1, sizeof *p);
    if (!p) return MR_ERR_NOMEM;
    p->batch = batch;
    p->h = h;
    p->w = w;
    buf = fftwf_malloc(sizeof(fftwf_complex) * batch * h * w);
    if (!buf) {
        free(p);
        return mr_error_set(MR_ERR_NOMEM, "out of memory planning an FFT of %zu x %zu x %zu", batch,
                            h, w);
    }
    pthread_mutex_lock(&g_plan_lock);
    fftw_init_once();
    fftwf_plan_with_nthreads(mr_threads());
    /* MEASURE overwrites the buffer; plans are executed later on caller data (new-array execute). */
    p->fwd = make_plan(batch, h, w, FFTW_FORWARD, flags, buf);
    p->inv = make_plan(batch, h, w, FFTW_BACKWARD, flags, buf);
    p->fwd_un = make_plan(batch, h, w, FFTW_FORWARD, FFTW_ESTIMATE | FFTW_UNALIGNED, buf);
    p->inv_un = make_plan(batch, h, w, FFTW_BACKWARD, FFTW_ESTIMATE | FFTW_UNALIGNED, buf);
    p->align_ref = fftwf_alignment_of((float *)buf);
    pthread_mutex_unlock(&g_plan_lock);
    fftwf_free(buf);
    if (!p->fwd || !p->inv || !p->fwd_un || !p->inv_un) {
        mr_fft_plan_destroy(p);
        return mr_error_set(MR_ERR_INTERNAL, "FFTW could not plan a %zu x (%zu, %zu) transform",
                            batch, h, w);
    }
    *out = p;
    return MR_OK;
}

void mr_fft_plan_destroy(mr_fft_plan *p)
{
    if (!p) return;
    pthread_mutex_lock(&g_plan_lock);
    if (p->fwd) fftwf_destroy_plan(p->fwd);
    if (p->inv) fftwf_destroy_plan(p->inv);
    if (p->fwd_un) fftwf_destroy_plan(p->fwd_un);
    if (p->inv_un) fftwf_destroy_plan(p->inv_un);
    pthread_mutex_unlock(&g_plan_lock);
    free(p);
}

/* Cyclic roll of an (h, w) image by (sh, sw): dst[(y + sh) % h][(x + sw) % w] = src[y][x]. */
static void roll2(mr_cfloat *dst, const mr_cfloat *src, size_t h, size_t w, size_t sh, size_t sw)
{
    for (size_t y = 0; y < h; y++) {
        const mr_cfloat *s = src + y * w;
        mr_cfloat *d = dst + ((y + sh) % h) * w;
        memcpy(d + sw, s, (w - sw) * sizeof *s);
        memcpy(d, s + (w - sw), sw * sizeof *s);
    }
}

/* fftshift moves index 0 to floor(N/2); ifftshift, its inverse, rolls by ceil(N/2). */
void mr_fftshift2(mr_cfloat *dst, const mr_cfloat *src, size_t h, size_t w)
{
    roll2(dst, src, h, w, h / 2, w / 2);
}

void mr_ifftshift2(mr_cfloat *dst, const mr_cfloat *src, size_t h, size_t w)
{
    roll2(dst, src, h, w, h - h / 2, w - w / 2);
}

/* Even h and w: x *= scale * (-1)^(y+x) before, and (-1)^(y+x + h/2 + w/2) after the DFT. */
static void modulate(mr_cfloat *data, size_t batch, size_t h, size_t w, float scale, size_t extra)
{
    long rows = (long)(batch * h);
#pragma omp parallel for schedule(static)
    for (long r = 0; r < rows; r++) {
        size_t y = (size_t)r % h;
        mr_cfloat *row = data + (size_t)r * w;
        float s = ((y + extra) & 1) ? -scale : scale;
        for (size_t x = 0; x < w; x += 2) {
            row[x] *= s;
            row[x + 1] *= -s;
        }
    }
}

static void scale_all(mr_cfloat *data, size_t n, float scale)
{
    float *f = (float *)data;
#pragma omp parallel for schedule(static)
    for (long i = 0; i < (long)(2 * n); i++) f[i] *= scale;
}

mr_status mr_fft_execute(const mr_fft_plan *p, mr_fft_direction dir, mr_cfloat *data)
{
    size_t hw = p->h * p->w;
    float scale = (float)(1.0 / sqrt((double)hw));
    int aligned = fftwf_alignment_of((float *)data) == p->align_ref;
    fftwf_plan plan = dir == MR_FFT_FORWARD ? (aligned ? p->fwd : p->fwd_un)
                                            : (aligned ? p->inv : p->inv_un);
    if (p->h % 2 == 0 && p->w % 2 == 0) {
        modulate(data, p->batch, p->h, p->w, scale, 0);
        fftwf_execute_dft(plan, (fftwf_complex *)data, (fftwf_complex *)data);
        modulate(data, p->batch, p->h, p->w, 1.0f, p->h / 2 + p->w / 2);
        return MR_OK;
    }
    /* Odd sizes: explicit shifts through one temporary image. */
    mr_cfloat *tmp = mr_malloc(hw * sizeof *tmp);
    if (!tmp) return MR_ERR_NOMEM;
    for (size_t b = 0; b < p->batch; b++) {
        mr_cfloat *img = data + b * hw;
        mr_ifftshift2(tmp, img, p->h, p->w);
        memcpy(img, tmp, hw * sizeof *tmp);
    }
    fftwf_execute_dft(plan, (fftwf_complex *)data, (fftwf_complex *)data);
    for (size_t b = 0; b < p->batch; b++) {
        mr_cfloat *img = data + b * hw;
        mr_fftshift2(tmp, img, p->h, p->w);
        memcpy(img, tmp, hw * sizeof *tmp);
    }
    free(tmp);
    scale_all(data, p->batch * hw, scale);
    return MR_OK;
}
