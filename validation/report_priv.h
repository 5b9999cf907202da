/*
 * report_priv.h: validation-internal declarations shared by report.c (metrics, JSON, CSV, atomic
 * output) and html.c (the self-contained HTML page: embedded PNGs, SVG plots and colour bars).
 * Not installed, not part of the public API (see mr_validation.h for that).
 */
#ifndef MR_REPORT_PRIV_H
#define MR_REPORT_PRIV_H

#include "mr_validation.h"

/* ---------------------------------------------------------------- growable text buffer */

/* A NUL-terminated text that grows as it is appended to. An allocation failure sets `failed`, after
 * which appends are no-ops; the owner checks it once at the end (one error path, not one per line).
 */
typedef struct {
    char *data; /* NUL-terminated when len > 0 */
    size_t len;
    size_t cap;
    int failed;
} mr_strbuf;

void mr_strbuf_free(mr_strbuf *b);
void mr_strbuf_put(mr_strbuf *b, const void *s, size_t n);
void mr_strbuf_puts(mr_strbuf *b, const char *s);
void mr_strbuf_printf(mr_strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Text with &, <, >, " and ' escaped for HTML element content and attribute values. */
void mr_strbuf_html(mr_strbuf *b, const char *s);
/* A JSON string literal (quotes included; control characters as \u00XX; invalid UTF-8 is kept as
 * bytes, which JSON parsers reject, so callers pass paths and labels as given). */
void mr_strbuf_json_str(mr_strbuf *b, const char *s);
/* A JSON number with round-trip precision (%.17g); null for NaN and +-inf. */
void mr_strbuf_json_num(mr_strbuf *b, double v);
/* Base64 (RFC 4648, with padding) of n bytes. */
void mr_strbuf_base64(mr_strbuf *b, const unsigned char *data, size_t n);

/* Encode an 8-bit image (h, w) as PNG in memory: gray (channels 1), RGB (channels 3), or, when
 * palette (256 RGB triplets) is given, indices into it (one byte per pixel). *out is malloc'ed
 * (free()). MR_ERR_NOMEM or MR_ERR_INTERNAL (libpng's message) on failure. */
mr_status mr_png_encode_mem(unsigned char **out, size_t *out_len, const unsigned char *pix,
                            size_t h, size_t w, int channels, const unsigned char *palette);

/* ---------------------------------------------------------------- what the renderers share */

/* Everything a report shows, computed once by report.c from an mr_report_spec. */
typedef struct {
    const mr_report_spec *spec;
    size_t S, H, W;             /* the compared shape (the reference's) */
    const char **labels;        /* (n_methods) resolved method labels */
    mr_metrics_result *metrics; /* (n_methods) */
    int has_zf;
    mr_metrics_result zf_metrics; /* when has_zf */
    char ref_sha[65];             /* "" when the input has no file to hash */
    char (*method_sha)[65];       /* (n_methods) */
    char zf_sha[65], sd_sha[65];
    size_t *shown; /* (n_shown) slices shown in the HTML */
    size_t n_shown;
    float mag_lo, mag_hi;   /* magnitude window: 0 .. 99.5th percentile of the reference */
    float err_hi;           /* |error| maps share [0, err_hi] across methods */
    float sd_hi;            /* uncertainty maps: [0, 99.5th percentile of the SD volume] */
    double sd_mean, sd_max; /* uncertainty volume statistics */
    double *sd_corr;        /* (n_methods) Pearson r of SD with |error|, NaN if undefined */
    const mr_array **method_sd;  /* (n_methods) the SD map judged with each method, or NULL */
    const char **method_sd_src;  /* (n_methods) its source as shown */
    mr_uq_result *uq;            /* (n_methods) figures when method_sd[i] */
    mr_uq_result *uq_slices;     /* (n_methods * S) per-slice figures when method_sd[i] */
    size_t n_uq;                 /* methods with figures */
    int own_sd;                  /* some method has its own SD map (shown in a third row) */
    double uq_fg_fraction;       /* the foreground fraction used */
    char created[40];       /* UTC, ISO 8601 */
    const char *ssim_desc;  /* human-readable SSIM definition */
} mr_report_data;

/* The HTML page into out. MR_ERR_NOMEM / MR_ERR_INTERNAL on failure. */
mr_status mr_report_html_render(mr_strbuf *out, const mr_report_data *d);

#endif
