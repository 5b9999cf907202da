/*
 * html.c: the report's HTML page, one self-contained file: images are PNGs embedded as base64
 * data URIs (RFC 2397), plots and colour bars are inline SVG, the style is one small <style> block.
 * No script, no external resource, so the file can be mailed, archived or opened offline and shows
 * the same thing everywhere.
 *
 * Also the text-building helpers report.c shares (growable buffer, HTML/JSON escaping, base64) and
 * an in-memory PNG encoder (libpng with a write callback instead of a FILE).
 *
 * Display conventions (docs/reports.md): magnitude images share one grey window, 0 .. the 99.5th
 * percentile of the reference volume; |error| maps share one inferno scale across methods;
 * uncertainty (SD) maps use viridis; each panel has a colour bar in image units.
 */
#include "report_priv.h"

#include <math.h>
#include <png.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ================================================================ text buffer */

static void strbuf_reserve(mr_strbuf *b, size_t extra)
{
    size_t need, cap;
    char *p;
    if (b->failed) return;
    need = b->len + extra + 1;
    if (need <= b->cap) return;
    cap = b->cap ? b->cap : 4096;
    while (cap < need)
        cap *= 2;
    p = realloc(b->data, cap);
    if (!p) {
        b->failed = 1;
        return;
    }
    b->data = p;
    b->cap = cap;
}

void mr_strbuf_free(mr_strbuf *b)
{
    free(b->data);
    memset(b, 0, sizeof *b);
}

void mr_strbuf_put(mr_strbuf *b, const void *s, size_t n)
{
    strbuf_reserve(b, n);
    if (b->failed) return;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void mr_strbuf_puts(mr_strbuf *b, const char *s)
{
    mr_strbuf_put(b, s, strlen(s));
}

void mr_strbuf_printf(mr_strbuf *b, const char *fmt, ...)
{
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->failed = 1;
        return;
    }
    strbuf_reserve(b, (size_t)n);
    if (b->failed) return;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void mr_strbuf_html(mr_strbuf *b, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '&':
            mr_strbuf_puts(b, "&amp;");
            break;
        case '<':
            mr_strbuf_puts(b, "&lt;");
            break;
        case '>':
            mr_strbuf_puts(b, "&gt;");
            break;
        case '"':
            mr_strbuf_puts(b, "&quot;");
            break;
        case '\'':
            mr_strbuf_puts(b, "&#39;");
            break;
        default:
            mr_strbuf_put(b, s, 1);
        }
    }
}

void mr_strbuf_json_str(mr_strbuf *b, const char *s)
{
    if (!s) {
        mr_strbuf_puts(b, "null");
        return;
    }
    mr_strbuf_puts(b, "\"");
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            mr_strbuf_put(b, esc, 2);
        } else if (c == '\n') {
            mr_strbuf_puts(b, "\\n");
        } else if (c == '\t') {
            mr_strbuf_puts(b, "\\t");
        } else if (c < 0x20) {
            mr_strbuf_printf(b, "\\u%04x", c);
        } else {
            mr_strbuf_put(b, s, 1);
        }
    }
    mr_strbuf_puts(b, "\"");
}

void mr_strbuf_json_num(mr_strbuf *b, double v)
{
    if (!isfinite(v))
        mr_strbuf_puts(b, "null");
    else
        mr_strbuf_printf(b, "%.17g", v);
}

void mr_strbuf_base64(mr_strbuf *b, const unsigned char *d, size_t n)
{
    static const char A[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t i, o = 0;
    char *out;
    strbuf_reserve(b, (n + 2) / 3 * 4);
    if (b->failed) return;
    out = b->data + b->len;
    for (i = 0; i + 2 < n; i += 3) {
        unsigned v = (unsigned)d[i] << 16 | (unsigned)d[i + 1] << 8 | d[i + 2];
        out[o++] = A[v >> 18];
        out[o++] = A[(v >> 12) & 63];
        out[o++] = A[(v >> 6) & 63];
        out[o++] = A[v & 63];
    }
    if (i < n) { /* one or two bytes left: pad with '=' */
        unsigned v = (unsigned)d[i] << 16 | (i + 1 < n ? (unsigned)d[i + 1] << 8 : 0);
        out[o++] = A[v >> 18];
        out[o++] = A[(v >> 12) & 63];
        out[o++] = i + 1 < n ? A[(v >> 6) & 63] : '=';
        out[o++] = '=';
    }
    b->len += o;
    b->data[b->len] = '\0';
}

/* ================================================================ PNG in memory */

typedef struct {
    unsigned char *data;
    size_t len, cap;
    int nomem;
    char msg[200];
} png_mem;

static void png_mem_write(png_structp png, png_bytep src, png_size_t n)
{
    png_mem *m = png_get_io_ptr(png);
    if (m->len + n > m->cap) {
        size_t cap = m->cap ? m->cap : 16384;
        unsigned char *p;
        while (cap < m->len + n)
            cap *= 2;
        p = realloc(m->data, cap);
        if (!p) {
            m->nomem = 1;
            png_error(png, "out of memory");
        }
        m->data = p;
        m->cap = cap;
    }
    memcpy(m->data + m->len, src, n);
    m->len += n;
}

static void png_mem_flush(png_structp png)
{
    (void)png;
}

static void png_mem_error(png_structp png, png_const_charp msg)
{
    png_mem *m = png_get_error_ptr(png);
    snprintf(m->msg, sizeof m->msg, "%s", msg ? msg : "libpng error");
    png_longjmp(png, 1);
}

static void png_mem_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg; /* the library never prints */
}

mr_status mr_png_encode_mem(unsigned char **out, size_t *out_len, const unsigned char *pix,
                            size_t h, size_t w, int channels, const unsigned char *palette)
{
    png_mem m;
    png_structp png;
    png_infop info = NULL;
    mr_status volatile st = MR_OK;
    const size_t row_bytes = palette ? w : w * (size_t)channels;

    *out = NULL;
    *out_len = 0;
    memset(&m, 0, sizeof m);
    png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &m, png_mem_error, png_mem_warning);
    if (png) info = png_create_info_struct(png);
    if (!png || !info) {
        png_destroy_write_struct(&png, NULL);
        return mr_error_set(MR_ERR_NOMEM, "report: cannot create the PNG encoder (out of memory)");
    }
    if (setjmp(png_jmpbuf(png))) {
        st = m.nomem ? mr_error_set(MR_ERR_NOMEM, "report: out of memory encoding a PNG image")
                     : mr_error_set(MR_ERR_INTERNAL, "report: PNG encoding failed: %s", m.msg);
        goto done;
    }
    png_set_write_fn(png, &m, png_mem_write, png_mem_flush);
    png_set_compression_level(png, 6);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8,
                 palette         ? PNG_COLOR_TYPE_PALETTE
                 : channels == 3 ? PNG_COLOR_TYPE_RGB
                                 : PNG_COLOR_TYPE_GRAY,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (palette) {
        png_color pal[256];
        for (int i = 0; i < 256; i++)
            pal[i].red = palette[3 * i], pal[i].green = palette[3 * i + 1],
            pal[i].blue = palette[3 * i + 2];
        png_set_PLTE(png, info, pal, 256);
    }
    png_write_info(png, info);
    for (size_t r = 0; r < h; r++)
        png_write_row(png, (png_const_bytep)(pix + r * row_bytes));
    png_write_end(png, info);
done:
    png_destroy_write_struct(&png, &info);
    if (st != MR_OK) {
        free(m.data);
        return st;
    }
    *out = m.data;
    *out_len = m.len;
    return MR_OK;
}

/* ================================================================ small formatting helpers */

/* Metric values as shown in the page (the JSON keeps full precision). */
static void put_nmse(mr_strbuf *b, double v)
{
    mr_strbuf_printf(b, "%.4g", v);
}
static void put_psnr(mr_strbuf *b, double v)
{
    if (isinf(v))
        mr_strbuf_puts(b, "&infin;");
    else
        mr_strbuf_printf(b, "%.2f", v);
}
static void put_ssim(mr_strbuf *b, double v)
{
    mr_strbuf_printf(b, "%.4f", v);
}

/* A tick label: short, without trailing zeros ("0.5", "1e-05", "120"). */
static void put_tick(mr_strbuf *b, double v, double step)
{
    if (fabs(v) < 1e-12 * (fabs(step) + 1e-300)) v = 0; /* no "-0" or "1.2e-17" */
    mr_strbuf_printf(b, "%.4g", v);
}

/* A "nice" tick step (1, 2 or 5 x 10^k) giving about n intervals over range. */
static double nice_step(double range, int n)
{
    double raw = range / n, mag, f;
    if (!(raw > 0)) return 1;
    mag = pow(10, floor(log10(raw)));
    f = raw / mag;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * mag;
}

/* The data URI of an (h, w) image: gray levels, or indices into a colour map's 256 colours. */
static mr_status put_png_uri(mr_strbuf *b, const unsigned char *pix, size_t h, size_t w,
                             const unsigned char *palette)
{
    unsigned char *png;
    size_t len;
    mr_status st = mr_png_encode_mem(&png, &len, pix, h, w, 1, palette);
    if (st != MR_OK) return st;
    mr_strbuf_puts(b, "data:image/png;base64,");
    mr_strbuf_base64(b, png, len);
    free(png);
    return MR_OK;
}

/* ================================================================ colour bars */

/* An SVG colour bar for [lo, hi] with the map's gradient and three labelled ticks; `caption` names
 * the quantity (e.g. "intensity"). `id` makes the gradient's id unique within the page. */
static void put_colorbar(mr_strbuf *b, int id, mr_colormap map, double lo, double hi,
                         const char *caption)
{
    const int stops = map == MR_COLORMAP_GRAY ? 2 : 9;
    const double x0 = 6, x1 = 194;
    mr_strbuf_printf(b,
                     "<svg class=\"cbar\" viewBox=\"0 0 200 34\" role=\"img\" aria-label=\"colour "
                     "bar, %s from %.4g to %.4g\"><defs><linearGradient id=\"cb%d\">",
                     caption, lo, hi, id);
    for (int k = 0; k < stops; k++) {
        unsigned char c[3];
        double t = (double)k / (stops - 1);
        mr_colormap_rgb(c, map, t);
        mr_strbuf_printf(b, "<stop offset=\"%g\" stop-color=\"#%02x%02x%02x\"/>", t, c[0], c[1],
                         c[2]);
    }
    mr_strbuf_printf(b,
                     "</linearGradient></defs><rect x=\"%g\" y=\"2\" width=\"%g\" height=\"10\" "
                     "fill=\"url(#cb%d)\" stroke=\"#888\" stroke-width=\"0.5\"/>",
                     x0, x1 - x0, id);
    for (int k = 0; k <= 2; k++) {
        double x = x0 + (x1 - x0) * k / 2.0, v = lo + (hi - lo) * k / 2.0;
        const char *anchor = k == 0 ? "start" : k == 1 ? "middle" : "end";
        mr_strbuf_printf(b,
                         "<line x1=\"%g\" y1=\"12\" x2=\"%g\" y2=\"15\" stroke=\"#666\" "
                         "stroke-width=\"0.7\"/><text x=\"%g\" y=\"24\" text-anchor=\"%s\">",
                         x, x, x, anchor);
        put_tick(b, v, hi - lo);
        mr_strbuf_puts(b, "</text>");
    }
    mr_strbuf_puts(b, "<text x=\"100\" y=\"33\" text-anchor=\"middle\" class=\"cap\">");
    mr_strbuf_html(b, caption);
    mr_strbuf_puts(b, "</text></svg>");
}

/* ================================================================ image panels */

typedef enum { PANEL_MAG, PANEL_ERR, PANEL_SD } panel_kind;

/* [lo, hi] -> 0..255, clamped, rounded; NaN -> 0. */
static void to_levels(unsigned char *dst, const float *src, size_t n, double lo, double hi)
{
    double scale = hi > lo ? 255.0 / (hi - lo) : 0;
    for (size_t i = 0; i < n; i++) {
        double v = ((double)src[i] - lo) * scale;
        dst[i] = !(v > 0) ? 0 : v >= 255 ? 255 : (unsigned char)(v + 0.5);
    }
}

/* One figure: title, the slice image, its colour bar. `ref` is used for error panels (|img - ref|).
 * Colour-mapped panels are palette PNGs (one byte per pixel: a third of RGB's size). `scratch`
 * holds h*w bytes, `fscratch` h*w floats. */
static mr_status put_panel(mr_strbuf *b, int *bar_id, const mr_report_data *d, panel_kind kind,
                           const char *title, const char *tooltip, const float *img,
                           const float *ref, unsigned char *scratch, float *fscratch)
{
    size_t n = d->H * d->W;
    mr_status st;
    mr_strbuf_puts(b, "<figure><figcaption title=\"");
    mr_strbuf_html(b, tooltip);
    mr_strbuf_puts(b, "\">");
    mr_strbuf_html(b, title);
    mr_strbuf_puts(b, "</figcaption><img alt=\"");
    mr_strbuf_html(b, title);
    mr_strbuf_printf(b, "\" width=\"%zu\" height=\"%zu\" src=\"", d->W, d->H);
    if (kind == PANEL_MAG) {
        to_levels(scratch, img, n, d->mag_lo, d->mag_hi);
        st = put_png_uri(b, scratch, d->H, d->W, NULL);
    } else {
        unsigned char palette[256 * 3];
        mr_colormap map = kind == PANEL_ERR ? MR_COLORMAP_INFERNO : MR_COLORMAP_VIRIDIS;
        for (int k = 0; k < 256; k++)
            mr_colormap_rgb(palette + 3 * k, map, k / 255.0);
        if (kind == PANEL_ERR) {
            for (size_t i = 0; i < n; i++)
                fscratch[i] = fabsf(img[i] - ref[i]);
            to_levels(scratch, fscratch, n, 0, d->err_hi);
        } else {
            to_levels(scratch, img, n, 0, d->sd_hi);
        }
        st = put_png_uri(b, scratch, d->H, d->W, palette);
    }
    if (st != MR_OK) return st;
    mr_strbuf_puts(b, "\">");
    if (kind == PANEL_MAG)
        put_colorbar(b, (*bar_id)++, MR_COLORMAP_GRAY, d->mag_lo, d->mag_hi, "intensity");
    else if (kind == PANEL_ERR)
        put_colorbar(b, (*bar_id)++, MR_COLORMAP_INFERNO, 0, d->err_hi, "|error|");
    else
        put_colorbar(b, (*bar_id)++, MR_COLORMAP_VIRIDIS, 0, d->sd_hi, "SD");
    mr_strbuf_puts(b, "</figure>\n");
    return MR_OK;
}

/* ================================================================ per-slice line plots */

/* Line colours: matplotlib's tab10 (distinct, colour-blind-aware ordering). */
static const char *const PALETTE[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                      "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"};
#define N_PALETTE (sizeof PALETTE / sizeof PALETTE[0])

typedef enum { PLOT_PSNR, PLOT_SSIM } plot_kind;

static double plot_value(const mr_metrics_result *m, size_t s, plot_kind k)
{
    return k == PLOT_PSNR ? m->per_slice[s].psnr : m->per_slice[s].ssim;
}

/* A series' legend text: its label, and how many values were not drawn (infinite PSNR). */
static void legend_text(char *buf, size_t size, const mr_report_data *d, size_t k, plot_kind kind)
{
    const int is_zf = k >= d->spec->n_methods;
    const mr_metrics_result *m = is_zf ? &d->zf_metrics : &d->metrics[k];
    size_t n_inf = 0;
    for (size_t s = 0; s < d->S; s++)
        n_inf += !isfinite(plot_value(m, s, kind));
    if (n_inf == d->S)
        snprintf(buf, size, "%s (\u221e: identical, not drawn)",
                 is_zf ? "zero-filled" : d->labels[k]);
    else if (n_inf > 0)
        snprintf(buf, size, "%s (\u221e on %zu slices, not drawn)",
                 is_zf ? "zero-filled" : d->labels[k], n_inf);
    else
        snprintf(buf, size, "%s", is_zf ? "zero-filled" : d->labels[k]);
}

/* Legend layout: entries flow left to right and wrap; widths estimated from the character count
 * (11 px sans-serif: about 6.3 px a character). Entry k's position into *x (from the left of the
 * legend area) and *row; returns the number of rows. */
static int legend_place(const mr_report_data *d, plot_kind kind, double avail, size_t k, double *x,
                        int *row)
{
    const size_t n_series = d->spec->n_methods + (size_t)d->has_zf;
    double cx = 0;
    int r = 0;
    char text[600];
    for (size_t j = 0; j < n_series; j++) {
        size_t chars = 0;
        double w;
        legend_text(text, sizeof text, d, j, kind);
        for (const char *p = text; *p; p++)
            chars += ((unsigned char)*p & 0xc0) != 0x80;
        w = 28 + 6.3 * (double)chars + 20;
        if (cx > 0 && cx + w > avail) cx = 0, r++;
        if (j == k) *x = cx, *row = r;
        cx += w;
    }
    return r + 1;
}

/* An SVG line plot of one metric over slices: one line per method (the zero-filled baseline dashed
 * grey), axes with ticks and labels, the shown slices marked, a legend below. Non-finite values
 * (PSNR of identical slices) leave gaps and are counted in the legend. */
static void put_plot(mr_strbuf *b, const mr_report_data *d, plot_kind kind)
{
    const mr_report_spec *sp = d->spec;
    const size_t n_series = sp->n_methods + (size_t)d->has_zf;
    const double W = 560, ML = 62, MR = 18, MT = 34, PH = 220;
    double lx0;
    int lrow0;
    const int legend_rows = legend_place(d, kind, W - ML - MR, 0, &lx0, &lrow0);
    const double H = MT + PH + 46 + 18.0 * legend_rows;
    const char *name = kind == PLOT_PSNR ? "PSNR" : "SSIM";
    double ymin = INFINITY, ymax = -INFINITY, xmin = 0, xmax = d->S > 1 ? (double)(d->S - 1) : 1;
    double ystep, xstep;

    for (size_t k = 0; k < n_series; k++) {
        const mr_metrics_result *m = k < sp->n_methods ? &d->metrics[k] : &d->zf_metrics;
        for (size_t s = 0; s < d->S; s++) {
            double v = plot_value(m, s, kind);
            if (!isfinite(v)) continue;
            ymin = v < ymin ? v : ymin;
            ymax = v > ymax ? v : ymax;
        }
    }
    if (!(ymin <= ymax)) ymin = 0, ymax = 1; /* nothing finite to draw */
    if (ymax - ymin < 1e-9 * (fabs(ymax) + 1)) {
        double pad = kind == PLOT_SSIM ? 0.01 : 0.5;
        ymin -= pad;
        ymax += pad;
    }
    ystep = nice_step(ymax - ymin, 5);
    ymin = floor(ymin / ystep) * ystep;
    ymax = ceil(ymax / ystep) * ystep;
    if (d->S == 1) xmin = -1, xmax = 1;
    xstep = nice_step(xmax - xmin, d->S < 10 ? (int)(xmax - xmin) : 8);
    if (xstep < 1) xstep = 1;

#define PX(x) (ML + ((x)-xmin) / (xmax - xmin) * (W - ML - MR))
#define PY(y) (MT + PH - ((y)-ymin) / (ymax - ymin) * PH)

    mr_strbuf_printf(b,
                     "<svg class=\"plot\" viewBox=\"0 0 %g %g\" role=\"img\" aria-label=\"%s per "
                     "slice\"><text x=\"%g\" y=\"20\" class=\"title\">%s per slice%s</text>",
                     W, H, name, ML, name, kind == PLOT_PSNR ? " (dB)" : "");
    /* grid and y ticks */
    for (double y = ymin; y <= ymax + ystep * 1e-6; y += ystep) {
        mr_strbuf_printf(b,
                         "<line x1=\"%g\" y1=\"%.2f\" x2=\"%g\" y2=\"%.2f\" class=\"grid\"/>"
                         "<text x=\"%g\" y=\"%.2f\" text-anchor=\"end\">",
                         ML, PY(y), W - MR, PY(y), ML - 6, PY(y) + 4);
        put_tick(b, y, ystep);
        mr_strbuf_puts(b, "</text>");
    }
    /* shown slices */
    for (size_t i = 0; i < d->n_shown; i++)
        mr_strbuf_printf(b, "<line x1=\"%.2f\" y1=\"%g\" x2=\"%.2f\" y2=\"%g\" class=\"shown\"/>",
                         PX((double)d->shown[i]), MT, PX((double)d->shown[i]), MT + PH);
    /* x ticks */
    for (double x = ceil(xmin / xstep) * xstep; x <= xmax + 1e-9; x += xstep)
        mr_strbuf_printf(b,
                         "<line x1=\"%.2f\" y1=\"%g\" x2=\"%.2f\" y2=\"%g\" class=\"axis\"/>"
                         "<text x=\"%.2f\" y=\"%g\" text-anchor=\"middle\">%.0f</text>",
                         PX(x), MT + PH, PX(x), MT + PH + 5, PX(x), MT + PH + 18, x);
    /* axes and labels */
    mr_strbuf_printf(b,
                     "<line x1=\"%g\" y1=\"%g\" x2=\"%g\" y2=\"%g\" class=\"axis\"/>"
                     "<line x1=\"%g\" y1=\"%g\" x2=\"%g\" y2=\"%g\" class=\"axis\"/>"
                     "<text x=\"%g\" y=\"%g\" text-anchor=\"middle\">slice</text>"
                     "<text transform=\"translate(14 %g) rotate(-90)\" text-anchor=\"middle\">%s%s"
                     "</text>",
                     ML, MT, ML, MT + PH, ML, MT + PH, W - MR, MT + PH, (ML + W - MR) / 2,
                     MT + PH + 34, MT + PH / 2, name, kind == PLOT_PSNR ? " (dB)" : "");
    /* series */
    for (size_t k = 0; k < n_series; k++) {
        const int is_zf = k >= sp->n_methods;
        const mr_metrics_result *m = is_zf ? &d->zf_metrics : &d->metrics[k];
        const char *label = is_zf ? "zero-filled" : d->labels[k];
        const char *colour = is_zf ? "#888888" : PALETTE[k % N_PALETTE];
        const char *dash = is_zf ? " stroke-dasharray=\"5 3\"" : "";
        size_t run = 0;
        double lx, ly;
        int lrow;
        char text[600];
        for (size_t s = 0; s <= d->S; s++) {
            double v = s < d->S ? plot_value(m, s, kind) : NAN;
            if (isfinite(v)) {
                if (run == 0)
                    mr_strbuf_printf(b,
                                     "<polyline fill=\"none\" stroke=\"%s\" "
                                     "stroke-width=\"1.8\"%s points=\"",
                                     colour, dash);
                mr_strbuf_printf(b, "%.2f,%.2f ", PX((double)s), PY(v));
                run++;
            } else {
                if (run > 0) mr_strbuf_puts(b, "\"/>");
                run = 0;
            }
        }
        if (d->S <= 80)
            for (size_t s = 0; s < d->S; s++) {
                double v = plot_value(m, s, kind);
                if (!isfinite(v)) continue;
                mr_strbuf_printf(b,
                                 "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"2.6\" fill=\"%s\">"
                                 "<title>",
                                 PX((double)s), PY(v), colour);
                mr_strbuf_html(b, label);
                mr_strbuf_printf(b, ", slice %zu: %s %.4f</title></circle>", s, name, v);
            }
        /* legend entry */
        legend_place(d, kind, W - ML - MR, k, &lx, &lrow);
        lx += ML;
        ly = MT + PH + 56 + 18.0 * lrow;
        mr_strbuf_printf(b,
                         "<line x1=\"%g\" y1=\"%g\" x2=\"%g\" y2=\"%g\" stroke=\"%s\" "
                         "stroke-width=\"2.5\"%s/><text x=\"%g\" y=\"%g\">",
                         lx, ly - 4, lx + 22, ly - 4, colour, dash, lx + 28, ly);
        legend_text(text, sizeof text, d, k, kind);
        mr_strbuf_html(b, text);
        mr_strbuf_puts(b, "</text>");
    }
    mr_strbuf_puts(b, "</svg>\n");
#undef PX
#undef PY
}

/* ================================================================ uncertainty figures */

/* A percentage with one decimal, or "n/a". */
static void put_pct(mr_strbuf *b, double v)
{
    if (isfinite(v))
        mr_strbuf_printf(b, "%.1f&thinsp;%%", 100 * v);
    else
        mr_strbuf_puts(b, "n/a");
}

static void put_num(mr_strbuf *b, const char *fmt, double v)
{
    if (isfinite(v))
        mr_strbuf_printf(b, fmt, v);
    else
        mr_strbuf_puts(b, "n/a");
}

typedef enum { UQPLOT_SPARSE, UQPLOT_RELIABILITY } uqplot_kind;

/* An SVG plot over [0, 1] x [0, ymax] of every method with figures: the sparsification curves
 * (RMSE left / full RMSE vs fraction removed; solid: by predicted SD, dashed: by the true error,
 * the oracle) or the reliability curve (observed vs nominal coverage, with the diagonal). */
static void put_uq_plot(mr_strbuf *b, const mr_report_data *d, uqplot_kind kind)
{
    const mr_report_spec *sp = d->spec;
    const double W = 560, ML = 62, MR = 18, MT = 34, PH = 240;
    const int sparse = kind == UQPLOT_SPARSE;
    double ymax = 1, ystep;
    size_t n_leg = 0, shown = 0;

    if (sparse)
        for (size_t i = 0; i < sp->n_methods; i++)
            if (d->method_sd[i])
                for (size_t k = 0; k < d->uq[i].n_fractions; k++)
                    if (isfinite(d->uq[i].sparse_uncertainty[k]) &&
                        d->uq[i].sparse_uncertainty[k] > ymax)
                        ymax = d->uq[i].sparse_uncertainty[k];
    ystep = nice_step(ymax, 5);
    ymax = ceil(ymax / ystep - 1e-9) * ystep;
    for (size_t i = 0; i < sp->n_methods; i++)
        n_leg += d->method_sd[i] != NULL;
    if (sparse) n_leg *= 2;
    else n_leg += 1;
    const double H = MT + PH + 50 + 17.0 * (double)n_leg;
#define QX(x) (ML + (x) * (W - ML - MR))
#define QY(y) (MT + PH - (y) / ymax * PH)
    mr_strbuf_printf(b,
                     "<svg class=\"plot uq\" viewBox=\"0 0 %g %g\" role=\"img\" aria-label=\"%s\">"
                     "<text x=\"%g\" y=\"20\" class=\"title\">%s</text>",
                     W, H, sparse ? "sparsification curves" : "reliability curve", ML,
                     sparse ? "Sparsification: RMSE left after removing the most uncertain pixels"
                            : "Reliability: observed vs nominal coverage of &#177;z SD");
    for (double y = 0; y <= ymax + ystep * 1e-6; y += ystep) {
        mr_strbuf_printf(b,
                         "<line x1=\"%g\" y1=\"%.2f\" x2=\"%g\" y2=\"%.2f\" class=\"grid\"/>"
                         "<text x=\"%g\" y=\"%.2f\" text-anchor=\"end\">",
                         ML, QY(y), W - MR, QY(y), ML - 6, QY(y) + 4);
        put_tick(b, y, ystep);
        mr_strbuf_puts(b, "</text>");
    }
    for (int k = 0; k <= 5; k++) {
        double x = k / 5.0;
        mr_strbuf_printf(b,
                         "<line x1=\"%.2f\" y1=\"%g\" x2=\"%.2f\" y2=\"%g\" class=\"axis\"/>"
                         "<text x=\"%.2f\" y=\"%g\" text-anchor=\"middle\">%g</text>",
                         QX(x), MT + PH, QX(x), MT + PH + 5, QX(x), MT + PH + 18, x);
    }
    mr_strbuf_printf(b,
                     "<line x1=\"%g\" y1=\"%g\" x2=\"%g\" y2=\"%g\" class=\"axis\"/>"
                     "<line x1=\"%g\" y1=\"%g\" x2=\"%g\" y2=\"%g\" class=\"axis\"/>"
                     "<text x=\"%g\" y=\"%g\" text-anchor=\"middle\">%s</text>"
                     "<text transform=\"translate(14 %g) rotate(-90)\" text-anchor=\"middle\">%s"
                     "</text>",
                     ML, MT, ML, MT + PH, ML, MT + PH, W - MR, MT + PH, (ML + W - MR) / 2,
                     MT + PH + 34, sparse ? "fraction of foreground pixels removed"
                                          : "nominal coverage",
                     MT + PH / 2, sparse ? "RMSE / full RMSE" : "observed coverage");
    if (!sparse)
        mr_strbuf_printf(b,
                         "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"#999\" "
                         "stroke-width=\"1.2\" stroke-dasharray=\"4 3\"/>",
                         QX(0), QY(0), QX(1), QY(1));
    for (size_t i = 0; i < sp->n_methods; i++) {
        const mr_uq_result *u = &d->uq[i];
        const char *colour = PALETTE[i % N_PALETTE];
        if (!d->method_sd[i]) continue;
        for (int pass = 0; pass < (sparse ? 2 : 1); pass++) {
            const double *yv = sparse ? (pass ? u->sparse_oracle : u->sparse_uncertainty)
                                      : u->reliability_coverage;
            const double *xv = sparse ? u->fraction : u->reliability_nominal;
            size_t n = sparse ? u->n_fractions : MR_UQ_N_RELIABILITY, run = 0;
            double ly = MT + PH + 58 + 17.0 * (double)shown;
            for (size_t k = 0; k <= n; k++) {
                double y = k < n ? yv[k] : NAN;
                if (isfinite(y)) {
                    if (run == 0)
                        mr_strbuf_printf(b,
                                         "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.8\""
                                         "%s points=\"",
                                         colour, pass ? " stroke-dasharray=\"5 3\"" : "");
                    mr_strbuf_printf(b, "%.2f,%.2f ", QX(xv[k]), QY(y));
                    run++;
                } else {
                    if (run > 0) mr_strbuf_puts(b, "\"/>");
                    run = 0;
                }
            }
            if (!sparse)
                for (size_t k = 0; k < n; k++)
                    if (isfinite(yv[k]))
                        mr_strbuf_printf(b,
                                         "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"2.4\" fill=\"%s\">"
                                         "<title>nominal %.0f %%: observed %.1f %%</title>"
                                         "</circle>",
                                         QX(xv[k]), QY(yv[k]), colour, 100 * xv[k], 100 * yv[k]);
            mr_strbuf_printf(b,
                             "<line x1=\"%g\" y1=\"%g\" x2=\"%g\" y2=\"%g\" stroke=\"%s\" "
                             "stroke-width=\"2.5\"%s/><text x=\"%g\" y=\"%g\">",
                             ML, ly - 4, ML + 22, ly - 4, colour,
                             pass ? " stroke-dasharray=\"5 3\"" : "", ML + 28, ly);
            mr_strbuf_html(b, d->labels[i]);
            if (sparse) {
                mr_strbuf_puts(b, pass ? ": removing by true |error| (oracle)"
                                       : ": removing by predicted SD (AUSE ");
                if (!pass) {
                    put_num(b, "%.3f", u->ause);
                    mr_strbuf_puts(b, ")");
                }
            }
            mr_strbuf_puts(b, "</text>");
            shown++;
        }
    }
    if (!sparse) {
        double ly = MT + PH + 58 + 17.0 * (double)shown;
        mr_strbuf_printf(b,
                         "<line x1=\"%g\" y1=\"%g\" x2=\"%g\" y2=\"%g\" stroke=\"#999\" "
                         "stroke-width=\"1.5\" stroke-dasharray=\"4 3\"/><text x=\"%g\" y=\"%g\">"
                         "calibrated (observed = nominal)</text>",
                         ML, ly - 4, ML + 22, ly - 4, ML + 28, ly);
    }
    mr_strbuf_puts(b, "</svg>\n");
#undef QX
#undef QY
}

/* The uncertainty section: what the intervals promise, the figures table, the two plots. */
static void put_uncertainty(mr_strbuf *b, const mr_report_data *d)
{
    const mr_report_spec *sp = d->spec;
    const mr_uq_result *u0 = NULL;
    static const char *const cov_rows[MR_UQ_N_LEVELS] = {"&#177;1 SD", "&#177;1.645 SD",
                                                         "&#177;1.96 SD"};
    for (size_t i = 0; i < sp->n_methods && !u0; i++)
        if (d->method_sd[i]) u0 = &d->uq[i];
    if (!u0) return;
    mr_strbuf_printf(b,
                     "<section><h2>Uncertainty</h2>\n<p>The SD map promises that the intervals "
                     "&#177;1, &#177;1.645 and &#177;1.96 SD around each pixel hold the true "
                     "value in 68.3&thinsp;%%, 90&thinsp;%% and 95&thinsp;%% of pixels; the table "
                     "shows how often they did over the foreground (reference &gt; %g&thinsp;%% of "
                     "its maximum).</p>\n<table class=\"summary uq\"><thead><tr><th>figure</th>"
                     "<th>ideal</th>",
                     100 * d->uq_fg_fraction);
    for (size_t i = 0; i < sp->n_methods; i++) {
        if (!d->method_sd[i]) continue;
        mr_strbuf_puts(b, "<th>");
        mr_strbuf_html(b, d->labels[i]);
        mr_strbuf_puts(b, "</th>");
    }
    mr_strbuf_puts(b, "</tr></thead><tbody>\n");
    for (int k = 0; k < MR_UQ_N_LEVELS; k++) {
        mr_strbuf_printf(b, "<tr><td>coverage of %s</td><td>", cov_rows[k]);
        put_pct(b, u0->nominal[k]);
        mr_strbuf_puts(b, "</td>");
        for (size_t i = 0; i < sp->n_methods; i++) {
            if (!d->method_sd[i]) continue;
            mr_strbuf_puts(b, "<td>");
            put_pct(b, d->uq[i].coverage[k]);
            mr_strbuf_puts(b, "</td>");
        }
        mr_strbuf_puts(b, "</tr>\n");
    }
    mr_strbuf_puts(b, "<tr><td title=\"Spearman rank correlation of the SD with the RMS error over "
                      "each pixel's 5x5 neighbourhood; the ceiling is what a perfectly calibrated "
                      "map with this spatial pattern reaches (errors drawn from N(0, SD&#178;))\">"
                      "Spearman &rho;(SD, local RMS error) (oracle ceiling)</td><td>ceiling</td>");
    for (size_t i = 0; i < sp->n_methods; i++) {
        if (!d->method_sd[i]) continue;
        mr_strbuf_puts(b, "<td>");
        put_num(b, "%.3f", d->uq[i].spearman);
        mr_strbuf_puts(b, " <span class=\"small\">(");
        put_num(b, "%.3f", d->uq[i].spearman_oracle);
        mr_strbuf_puts(b, ")</span></td>");
    }
    mr_strbuf_puts(b, "</tr>\n<tr><td title=\"sum over 20 equal-count bins of predicted variance "
                      "of N_b/N |MSE_b - mean variance_b|\">UCE (relative to the MSE)</td>"
                      "<td>0</td>");
    for (size_t i = 0; i < sp->n_methods; i++) {
        if (!d->method_sd[i]) continue;
        mr_strbuf_puts(b, "<td>");
        put_num(b, "%.4g", d->uq[i].uce);
        mr_strbuf_puts(b, " <span class=\"small\">(");
        put_num(b, "%.3f", d->uq[i].uce_relative);
        mr_strbuf_puts(b, ")</span></td>");
    }
    mr_strbuf_puts(b, "</tr>\n<tr><td title=\"area between the sparsification curves below\">"
                      "AUSE</td><td>0</td>");
    for (size_t i = 0; i < sp->n_methods; i++) {
        if (!d->method_sd[i]) continue;
        mr_strbuf_puts(b, "<td>");
        put_num(b, "%.4f", d->uq[i].ause);
        mr_strbuf_puts(b, "</td>");
    }
    mr_strbuf_puts(b, "</tr>\n<tr><td>RMSE / RMS(SD)</td><td>1</td>");
    for (size_t i = 0; i < sp->n_methods; i++) {
        if (!d->method_sd[i]) continue;
        mr_strbuf_puts(b, "<td>");
        put_num(b, "%.3f", d->uq[i].rmse_over_rms_sd);
        mr_strbuf_puts(b, " <span class=\"small\">(");
        put_num(b, "%.4g", d->uq[i].rmse);
        mr_strbuf_puts(b, " / ");
        put_num(b, "%.4g", d->uq[i].rms_sd);
        mr_strbuf_puts(b, ")</span></td>");
    }
    mr_strbuf_puts(b, "</tr>\n<tr><td>SD map</td><td></td>");
    for (size_t i = 0; i < sp->n_methods; i++) {
        if (!d->method_sd[i]) continue;
        mr_strbuf_puts(b, "<td><code>");
        mr_strbuf_html(b, d->method_sd_src[i]);
        mr_strbuf_printf(b, "</code> <span class=\"small\">(%zu px)</span></td>",
                         d->uq[i].n_foreground);
    }
    mr_strbuf_puts(b, "</tr>\n</tbody></table>\n<div class=\"plots\">");
    put_uq_plot(b, d, UQPLOT_SPARSE);
    put_uq_plot(b, d, UQPLOT_RELIABILITY);
    mr_strbuf_puts(b, "</div>\n<p class=\"small\">Definitions (docs/validation.md): coverage = "
                      "fraction of foreground pixels with |error| &le; z&thinsp;SD; Spearman "
                      "with the RMS error over the pixel's 5&times;5 neighbourhood (one |error| "
                      "is a single draw and caps any correlation), beside the ceiling an honest "
                      "map would reach; UCE = &sum;<sub>b</sub> N<sub>b</sub>/N |MSE<sub>b</sub> "
                      "&minus; mean&thinsp;SD&#178;<sub>b</sub>| over 20 equal-count bins of "
                      "SD; AUSE = area between the sparsification curves (RMSE of the pixels "
                      "kept, divided by the full RMSE, removing pixels by decreasing SD vs by "
                      "decreasing true error). Per-slice values are in report.json and "
                      "report.csv.</p></section>\n");
}

/* ================================================================ the page */

static const char CSS[] =
    "body{font-family:system-ui,-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;color:#222;"
    "background:#fff;margin:0 auto;max-width:1320px;padding:12px 28px 40px;line-height:1.4}"
    "h1{font-size:1.55em;margin:.3em 0 .2em}"
    "h2{font-size:1.2em;border-bottom:1px solid #ddd;padding-bottom:3px;margin:1.6em 0 .6em}"
    "h3{font-size:1em;margin:1.4em 0 .5em}h3 .sub{font-weight:normal;color:#555;font-size:.9em}"
    ".meta{color:#444;margin:.25em 0;font-size:.93em}.small{font-size:.85em;color:#555}"
    "code{font-family:ui-monospace,'DejaVu Sans Mono',Menlo,Consolas,monospace;font-size:.88em;"
    "background:#f3f3f3;padding:0 3px;border-radius:3px;word-break:break-all}"
    "table{border-collapse:collapse;font-size:.92em;margin:.3em 0}"
    "th,td{padding:4px 12px;border-bottom:1px solid #e3e3e3;text-align:right;"
    "font-variant-numeric:tabular-nums}"
    "th:first-child,td:first-child{text-align:left}thead th{border-bottom:2px solid #bbb}"
    ".baseline{color:#777;font-style:italic}td.best{font-weight:bold}"
    "table.inputs td,table.inputs "
    "th{text-align:left;vertical-align:top}.sha{font-family:ui-monospace,"
    "'DejaVu Sans Mono',monospace;font-size:.8em;word-break:break-all}"
    ".plots{display:flex;flex-wrap:wrap;gap:16px 28px;align-items:flex-start}.plots svg{flex:1 1 "
    "500px;max-width:620px}"
    "svg text{font-size:11px;fill:#333}svg text.title{font-size:13px;font-weight:600}"
    "svg .grid{stroke:#e6e6e6;stroke-width:1}svg .axis{stroke:#555;stroke-width:1}"
    "svg .shown{stroke:#bbb;stroke-width:1;stroke-dasharray:2 3}"
    ".cbar text{font-size:9.5px}.cbar text.cap{font-size:9px;fill:#666}"
    ".grid{display:grid;gap:12px 14px;align-items:start}"
    "figure{margin:0;min-width:0}figcaption{font-size:.85em;margin-bottom:3px;white-space:nowrap;"
    "overflow:hidden;text-overflow:ellipsis}"
    "figure img{width:100%;height:auto;display:block;background:#000}"
    ".cbar{width:100%;height:auto;display:block;margin-top:2px}"
    "details{margin:.6em 0}summary{cursor:pointer;color:#333}pre{white-space:pre-wrap;"
    "word-break:break-all;background:#f6f6f6;padding:8px;border-radius:4px;font-size:.85em}";

/* Shape as "S &times; H &times; W". */
static void put_shape(mr_strbuf *b, size_t s, size_t h, size_t w)
{
    mr_strbuf_printf(b, "%zu&thinsp;&times;&thinsp;%zu&thinsp;&times;&thinsp;%zu", s, h, w);
}

static void put_header(mr_strbuf *b, const mr_report_data *d)
{
    const mr_report_spec *sp = d->spec;
    mr_strbuf_puts(b, "<header><h1>mrpipe validation report</h1>\n<p class=\"meta\">Reference "
                      "<code>");
    mr_strbuf_html(b, sp->reference.source);
    mr_strbuf_puts(b, "</code> (");
    put_shape(b, d->S, d->H, d->W);
    mr_strbuf_printf(b, ", data range %.6g) compared with %zu reconstruction%s: ",
                     d->metrics[0].data_range, sp->n_methods, sp->n_methods == 1 ? "" : "s");
    for (size_t i = 0; i < sp->n_methods; i++) {
        mr_strbuf_puts(b, i ? ", <b>" : "<b>");
        mr_strbuf_html(b, d->labels[i]);
        mr_strbuf_puts(b, "</b> (<code>");
        mr_strbuf_html(b, sp->methods[i].source);
        mr_strbuf_puts(b, "</code>)");
    }
    mr_strbuf_puts(b, ".");
    if (sp->zero_filled) {
        mr_strbuf_puts(b, " Zero-filled input: <code>");
        mr_strbuf_html(b, sp->zero_filled->source);
        mr_strbuf_puts(b, "</code>.");
    }
    if (sp->uncertainty) {
        mr_strbuf_puts(b, " Uncertainty (SD): <code>");
        mr_strbuf_html(b, sp->uncertainty->source);
        mr_strbuf_puts(b, "</code>.");
    }
    mr_strbuf_puts(b, "</p>\n<p class=\"meta\">Created ");
    mr_strbuf_html(b, d->created);
    mr_strbuf_printf(b, " by mrpipe %s", MR_VERSION_STRING);
    for (size_t i = 0; i < sp->n_versions; i++) {
        mr_strbuf_puts(b, " &middot; ");
        mr_strbuf_html(b, sp->versions[i].key);
        mr_strbuf_puts(b, " ");
        mr_strbuf_html(b, sp->versions[i].value);
    }
    mr_strbuf_puts(b, "</p>\n");
    if (sp->include_patient_info && sp->n_patient > 0) {
        mr_strbuf_puts(b, "<p class=\"meta\">Patient information (included on request): ");
        for (size_t i = 0; i < sp->n_patient; i++) {
            mr_strbuf_puts(b, i ? "; " : "");
            mr_strbuf_html(b, sp->patient[i].key);
            mr_strbuf_puts(b, " = ");
            mr_strbuf_html(b, sp->patient[i].value);
        }
        mr_strbuf_puts(b, "</p>\n");
    }
    mr_strbuf_puts(b, "</header>\n");
}

/* Is v the best of the methods' values (higher or lower better)? Ties are all best. */
static int is_best(const mr_report_data *d, double v, int which, int higher)
{
    for (size_t i = 0; i < d->spec->n_methods; i++) {
        const mr_metric_values *m = &d->metrics[i].volume;
        double o = which == 0 ? m->nmse : which == 1 ? m->psnr : m->ssim;
        if (higher ? o > v : o < v) return 0;
    }
    return 1;
}

static void put_summary(mr_strbuf *b, const mr_report_data *d)
{
    const mr_report_spec *sp = d->spec;
    static const char *const rows[] = {"NMSE &darr;", "PSNR (dB) &uarr;", "SSIM &uarr;"};
    const int bold = sp->n_methods > 1;
    mr_strbuf_puts(b, "<section><h2>Summary</h2>\n<table class=\"summary\"><thead><tr><th>metric "
                      "(per volume)</th>");
    for (size_t i = 0; i < sp->n_methods; i++) {
        mr_strbuf_puts(b, "<th>");
        mr_strbuf_html(b, d->labels[i]);
        mr_strbuf_puts(b, "</th>");
    }
    if (d->has_zf) mr_strbuf_puts(b, "<th class=\"baseline\">zero-filled (baseline)</th>");
    mr_strbuf_puts(b, "</tr></thead><tbody>\n");
    for (int r = 0; r < 3; r++) {
        mr_strbuf_printf(b, "<tr><td>%s</td>", rows[r]);
        for (size_t i = 0; i <= sp->n_methods; i++) {
            const mr_metric_values *m;
            double v;
            if (i == sp->n_methods && !d->has_zf) break;
            m = i < sp->n_methods ? &d->metrics[i].volume : &d->zf_metrics.volume;
            v = r == 0 ? m->nmse : r == 1 ? m->psnr : m->ssim;
            if (i == sp->n_methods)
                mr_strbuf_puts(b, "<td class=\"baseline\">");
            else if (bold && is_best(d, v, r, r != 0))
                mr_strbuf_puts(b, "<td class=\"best\">");
            else
                mr_strbuf_puts(b, "<td>");
            if (r == 0)
                put_nmse(b, v);
            else if (r == 1)
                put_psnr(b, v);
            else
                put_ssim(b, v);
            mr_strbuf_puts(b, "</td>");
        }
        mr_strbuf_puts(b, "</tr>\n");
    }
    mr_strbuf_puts(b, "</tbody></table>\n<p class=\"small\">fastMRI definitions "
                      "(fastmri/evaluate.py): NMSE = &Vert;ref &minus; rec&Vert;&sup2; / "
                      "&Vert;ref&Vert;&sup2; over the volume; PSNR with the volume's maximum as "
                      "data range (");
    mr_strbuf_printf(b, "%.6g", d->metrics[0].data_range);
    mr_strbuf_puts(b, "); SSIM: ");
    mr_strbuf_html(b, d->ssim_desc);
    mr_strbuf_puts(b, ", mean over slices.");
    if (bold) mr_strbuf_puts(b, " Best value in bold.");
    mr_strbuf_puts(b, "</p></section>\n");
}

static void put_plots(mr_strbuf *b, const mr_report_data *d)
{
    mr_strbuf_puts(b, "<section><h2>Per-slice metrics</h2>\n<div class=\"plots\">");
    put_plot(b, d, PLOT_PSNR);
    put_plot(b, d, PLOT_SSIM);
    mr_strbuf_puts(b, "</div>\n<p class=\"small\">Dotted vertical lines mark the slices shown "
                      "below. Per-slice PSNR and SSIM use the volume's data range, as fastMRI "
                      "does.</p>\n<details><summary>Per-slice values</summary><table><thead><tr>"
                      "<th>slice</th>");
    for (size_t i = 0; i <= d->spec->n_methods; i++) {
        if (i == d->spec->n_methods && !d->has_zf) break;
        mr_strbuf_puts(b, i == d->spec->n_methods ? "<th class=\"baseline\" colspan=\"3\">"
                                                  : "<th colspan=\"3\">");
        mr_strbuf_html(b, i < d->spec->n_methods ? d->labels[i] : "zero-filled");
        mr_strbuf_puts(b, " (NMSE, PSNR, SSIM)</th>");
    }
    mr_strbuf_puts(b, "</tr></thead><tbody>\n");
    for (size_t s = 0; s < d->S; s++) {
        mr_strbuf_printf(b, "<tr><td>%zu</td>", s);
        for (size_t i = 0; i <= d->spec->n_methods; i++) {
            const mr_metric_values *m;
            if (i == d->spec->n_methods && !d->has_zf) break;
            m = i < d->spec->n_methods ? &d->metrics[i].per_slice[s] : &d->zf_metrics.per_slice[s];
            mr_strbuf_puts(b, "<td>");
            put_nmse(b, m->nmse);
            mr_strbuf_puts(b, "</td><td>");
            put_psnr(b, m->psnr);
            mr_strbuf_puts(b, "</td><td>");
            put_ssim(b, m->ssim);
            mr_strbuf_puts(b, "</td>");
        }
        mr_strbuf_puts(b, "</tr>\n");
    }
    mr_strbuf_puts(b, "</tbody></table></details></section>\n");
}

static mr_status put_slices(mr_strbuf *b, const mr_report_data *d)
{
    const mr_report_spec *sp = d->spec;
    const size_t n = d->H * d->W;
    const size_t cols = 1 + (size_t)d->has_zf + sp->n_methods + (sp->uncertainty ? 1 : 0);
    unsigned char *scratch = mr_malloc(n);
    float *fscratch = mr_malloc(n * sizeof *fscratch);
    mr_status st = MR_OK;
    int bar_id = 0;
    char title[512], tip[1024];

    if (!scratch || !fscratch) {
        st = MR_ERR_NOMEM;
        goto done;
    }
    mr_strbuf_puts(b, "<section><h2>Images</h2>\n<p class=\"small\">Magnitude images share one "
                      "window (0 to the 99.5th percentile of the reference volume); |error| = "
                      "|reconstruction &minus; reference| maps share one scale across methods "
                      "(inferno)");
    if (sp->uncertainty)
        mr_strbuf_puts(b, "; the uncertainty map shows the per-pixel SD (viridis)");
    mr_strbuf_puts(b, ". Colour bars are in image units.</p>\n");
    for (size_t k = 0; k < d->n_shown; k++) {
        const size_t s = d->shown[k];
        const float *ref = mr_array_f32(sp->reference.image) + s * n;
        mr_strbuf_printf(b, "<h3>Slice %zu <span class=\"sub\">", s);
        for (size_t i = 0; i < sp->n_methods; i++) {
            mr_strbuf_puts(b, i ? " &middot; " : "");
            mr_strbuf_html(b, d->labels[i]);
            mr_strbuf_puts(b, ": PSNR ");
            put_psnr(b, d->metrics[i].per_slice[s].psnr);
            mr_strbuf_puts(b, isinf(d->metrics[i].per_slice[s].psnr) ? ", SSIM " : " dB, SSIM ");
            put_ssim(b, d->metrics[i].per_slice[s].ssim);
        }
        mr_strbuf_printf(b,
                         "</span></h3>\n<div class=\"grid\" style=\"grid-template-columns:"
                         "repeat(%zu,minmax(0,%s))\">\n",
                         cols, cols <= 3 ? "300px" : "1fr");
        /* row 1: images */
        snprintf(tip, sizeof tip, "%s, slice %zu", sp->reference.source, s);
        if ((st = put_panel(b, &bar_id, d, PANEL_MAG, "Reference", tip, ref, NULL, scratch,
                            fscratch)) != MR_OK)
            goto done;
        if (d->has_zf) {
            snprintf(tip, sizeof tip, "%s, slice %zu", sp->zero_filled->source, s);
            if ((st = put_panel(b, &bar_id, d, PANEL_MAG, "Zero-filled input", tip,
                                mr_array_f32(sp->zero_filled->image) + s * n, NULL, scratch,
                                fscratch)) != MR_OK)
                goto done;
        }
        for (size_t i = 0; i < sp->n_methods; i++) {
            snprintf(tip, sizeof tip, "%s, slice %zu", sp->methods[i].source, s);
            if ((st = put_panel(b, &bar_id, d, PANEL_MAG, d->labels[i], tip,
                                mr_array_f32(sp->methods[i].image) + s * n, NULL, scratch,
                                fscratch)) != MR_OK)
                goto done;
        }
        if (sp->uncertainty) {
            snprintf(tip, sizeof tip, "%s, slice %zu", sp->uncertainty->source, s);
            if ((st = put_panel(b, &bar_id, d, PANEL_SD, "Uncertainty (SD)", tip,
                                mr_array_f32(sp->uncertainty->image) + s * n, NULL, scratch,
                                fscratch)) != MR_OK)
                goto done;
        }
        /* row 2: |error| under each reconstruction */
        mr_strbuf_puts(b, "<div></div>");
        if (d->has_zf) mr_strbuf_puts(b, "<div></div>");
        for (size_t i = 0; i < sp->n_methods; i++) {
            snprintf(title, sizeof title, "|%s \u2212 reference|", d->labels[i]);
            snprintf(tip, sizeof tip, "absolute error of %s, slice %zu", sp->methods[i].source, s);
            if ((st = put_panel(b, &bar_id, d, PANEL_ERR, title, tip,
                                mr_array_f32(sp->methods[i].image) + s * n, ref, scratch,
                                fscratch)) != MR_OK)
                goto done;
        }
        if (sp->uncertainty) mr_strbuf_puts(b, "<div></div>");
        /* row 3: a method's own SD map under it */
        if (d->own_sd) {
            mr_strbuf_puts(b, "<div></div>");
            if (d->has_zf) mr_strbuf_puts(b, "<div></div>");
            for (size_t i = 0; i < sp->n_methods; i++) {
                if (!sp->methods[i].uncertainty) {
                    mr_strbuf_puts(b, "<div></div>");
                    continue;
                }
                snprintf(title, sizeof title, "%s SD", d->labels[i]);
                snprintf(tip, sizeof tip, "%s, slice %zu", d->method_sd_src[i], s);
                if ((st = put_panel(b, &bar_id, d, PANEL_SD, title, tip,
                                    mr_array_f32(sp->methods[i].uncertainty) + s * n, NULL,
                                    scratch, fscratch)) != MR_OK)
                    goto done;
            }
            if (sp->uncertainty) mr_strbuf_puts(b, "<div></div>");
        }
        mr_strbuf_puts(b, "</div>\n");
    }
    mr_strbuf_puts(b, "</section>\n");
done:
    free(scratch);
    free(fscratch);
    return st;
}

/* A command-line word as a POSIX shell would need it typed (single quotes when it holds anything
 * but plain path characters), HTML-escaped. */
static void put_shell_word(mr_strbuf *b, const char *w)
{
    int plain = *w != '\0';
    for (const char *p = w; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              strchr("_-./:=,+@%", *p)))
            plain = 0;
    if (plain) {
        mr_strbuf_html(b, w);
        return;
    }
    mr_strbuf_puts(b, "&#39;");
    for (const char *p = w; *p; p++) {
        char c[2] = {*p, 0};
        if (*p == '\'')
            mr_strbuf_puts(b, "&#39;\\&#39;&#39;"); /* ' -> '\'' */
        else
            mr_strbuf_html(b, c);
    }
    mr_strbuf_puts(b, "&#39;");
}

/* One row of the inputs table. */
static void put_input_row(mr_strbuf *b, const char *role, const char *label,
                          const mr_report_volume *v, const char *sha, const mr_report_data *d)
{
    mr_strbuf_puts(b, "<tr><td>");
    mr_strbuf_html(b, role);
    mr_strbuf_puts(b, "</td><td>");
    mr_strbuf_html(b, label ? label : "");
    mr_strbuf_puts(b, "</td><td><code>");
    mr_strbuf_html(b, v->source);
    mr_strbuf_puts(b, "</code></td><td>");
    put_shape(b, v->dims_loaded[0], v->dims_loaded[1], v->dims_loaded[2]);
    if (v->dims_loaded[1] != d->H || v->dims_loaded[2] != d->W)
        mr_strbuf_printf(b, " (centre-cropped to %zu&thinsp;&times;&thinsp;%zu)", d->H, d->W);
    mr_strbuf_puts(b, "</td><td class=\"sha\">");
    mr_strbuf_puts(b, sha[0] ? sha : "(no single file)");
    mr_strbuf_puts(b, "</td></tr>\n");
}

static void put_inputs(mr_strbuf *b, const mr_report_data *d)
{
    const mr_report_spec *sp = d->spec;
    mr_strbuf_puts(b, "<section><h2>Inputs</h2>\n<table class=\"inputs\"><thead><tr><th>role</th>"
                      "<th>label</th><th>source</th><th>shape (S&times;H&times;W)</th>"
                      "<th>SHA-256 of the file</th></tr></thead><tbody>\n");
    put_input_row(b, "reference", NULL, &sp->reference, d->ref_sha, d);
    for (size_t i = 0; i < sp->n_methods; i++)
        put_input_row(b, "reconstruction", d->labels[i], &sp->methods[i], d->method_sha[i], d);
    if (sp->zero_filled) put_input_row(b, "zero-filled input", NULL, sp->zero_filled, d->zf_sha, d);
    if (sp->uncertainty) put_input_row(b, "uncertainty (SD)", NULL, sp->uncertainty, d->sd_sha, d);
    mr_strbuf_puts(b, "</tbody></table>\n");
    if (sp->argc > 0) {
        mr_strbuf_puts(b, "<p class=\"small\">Command line:</p><pre>");
        for (int i = 0; i < sp->argc; i++) {
            mr_strbuf_puts(b, i ? " " : "");
            put_shell_word(b, sp->argv[i]);
        }
        mr_strbuf_puts(b, "</pre>\n");
    }
    mr_strbuf_puts(b, "<p class=\"small\">Every number is also in report.json (full precision, "
                      "per slice) and report.csv.</p></section>\n");
}

mr_status mr_report_html_render(mr_strbuf *b, const mr_report_data *d)
{
    mr_status st;
    mr_strbuf_puts(b, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                      "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
                      "<meta name=\"generator\" content=\"mrpipe " MR_VERSION_STRING "\">\n"
                      "<title>mrpipe report: ");
    mr_strbuf_html(b, d->spec->reference.source);
    mr_strbuf_printf(b, "</title>\n<style>%s</style>\n</head>\n<body>\n", CSS);
    put_header(b, d);
    put_summary(b, d);
    put_plots(b, d);
    if ((st = put_slices(b, d)) != MR_OK) return st;
    put_uncertainty(b, d); /* after the images, so the first screen still shows them */
    put_inputs(b, d);
    mr_strbuf_puts(b, "</body>\n</html>\n");
    if (b->failed)
        return mr_error_set(MR_ERR_NOMEM, "report: out of memory building the HTML page");
    return MR_OK;
}
