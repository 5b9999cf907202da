/*
 * ismrmrd_hdr.c: the ISMRMRD XML header (the fields reconstruction needs), parsed with libxml2 and
 * written as a minimal header that validates against the ISMRMRD schema (ismrmrd.xsd, v1.x:
 * experimentalConditions, one encoding with encodedSpace, reconSpace, encodingLimits, trajectory).
 *
 * Spec: ISMRMRD v1 header schema (namespace http://www.ismrm.org/ISMRMRD). Elements are matched by
 * local name in that namespace or in no namespace (some converters drop the xmlns), so both forms
 * parse. Only the first `encoding` element is read. fastMRI's phase-encode placement
 * (padding_left = enc_y/2 - center, padding_right = padding_left + maximum + 1) follows
 * fastmri/data/mri_data.py as summarised in REFERENCE.md.
 */
#include "mr_io.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xmlerror.h>

#define MR_ISMRMRD_NS "http://www.ismrm.org/ISMRMRD"

/* Gyromagnetic ratio of 1H over 2 pi, Hz/T (CODATA 2018). */
#define MR_GAMMA_1H_HZ_PER_T 42577478.518

static pthread_once_t g_xml_once = PTHREAD_ONCE_INIT;

static void xml_init_once(void) { xmlInitParser(); }

/* ---------------------------------------------------------------- tree helpers */

/* An element in the ISMRMRD namespace or in none. */
static int is_element(const xmlNode *n, const char *name)
{
    if (n->type != XML_ELEMENT_NODE || strcmp((const char *)n->name, name) != 0) return 0;
    return n->ns == NULL || n->ns->href == NULL ||
           strcmp((const char *)n->ns->href, MR_ISMRMRD_NS) == 0;
}

/* First child element called `name`, or NULL. */
static xmlNode *child(const xmlNode *parent, const char *name)
{
    if (!parent) return NULL;
    for (xmlNode *c = parent->children; c; c = c->next)
        if (is_element(c, name)) return c;
    return NULL;
}

/* Follow a '/'-separated path of child names from `node`. */
static xmlNode *path_find(const xmlNode *node, const char *path)
{
    char buf[256], *save = NULL, *tok;
    xmlNode *cur = (xmlNode *)node;
    snprintf(buf, sizeof buf, "%s", path);
    for (tok = strtok_r(buf, "/", &save); tok && cur; tok = strtok_r(NULL, "/", &save))
        cur = child(cur, tok);
    return cur;
}

/* Text of an element with surrounding whitespace removed, into buf. */
static void node_text(char *buf, size_t size, const xmlNode *n)
{
    xmlChar *s = xmlNodeGetContent(n);
    const char *p = s ? (const char *)s : "";
    size_t len;
    while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') p++;
    len = strlen(p);
    while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t' || p[len - 1] == '\r' ||
                       p[len - 1] == '\n'))
        len--;
    if (len >= size) len = size - 1;
    memcpy(buf, p, len);
    buf[len] = '\0';
    xmlFree(s);
}

/* Read an optional integer at `path` below `base`; *present says whether it was there. */
static mr_status get_long(long *out, int *present, const xmlNode *base, const char *path,
                          const char *where, const char *source)
{
    char text[128], *end;
    xmlNode *n = path_find(base, path);
    long v;
    *present = 0;
    if (!n) return MR_OK;
    node_text(text, sizeof text, n);
    errno = 0;
    v = strtol(text, &end, 10);
    if (errno || end == text || *end != '\0')
        return mr_error_set(MR_ERR_INPUT, "%s: ISMRMRD header field %s/%s: expected an integer, "
                            "found '%s'", source, where, path, text);
    *out = v;
    *present = 1;
    return MR_OK;
}

/* Read an optional non-negative size at `path`; 0 when absent. */
static mr_status get_size(size_t *out, const xmlNode *base, const char *path, const char *where,
                          const char *source)
{
    long v = 0;
    int present;
    mr_status st = get_long(&v, &present, base, path, where, source);
    if (st != MR_OK) return st;
    if (present && v < 0)
        return mr_error_set(MR_ERR_INPUT, "%s: ISMRMRD header field %s/%s: expected a size >= 0, "
                            "found %ld", source, where, path, v);
    *out = present ? (size_t)v : 0;
    return MR_OK;
}

static mr_status get_double(double *out, const xmlNode *base, const char *path, const char *where,
                            const char *source)
{
    char text[128], *end;
    xmlNode *n = path_find(base, path);
    double v;
    if (!n) return MR_OK;
    node_text(text, sizeof text, n);
    errno = 0;
    v = strtod(text, &end);
    if (errno || end == text || *end != '\0' || !isfinite(v))
        return mr_error_set(MR_ERR_INPUT, "%s: ISMRMRD header field %s/%s: expected a number, "
                            "found '%s'", source, where, path, text);
    *out = v;
    return MR_OK;
}

/* minimum/maximum/center of an encodingLimits entry. */
static mr_status get_limits(int *has, long *lo, long *hi, long *center, const xmlNode *limits,
                            const char *name, const char *source)
{
    char where[96];
    int p1 = 0, p2 = 0, p3 = 0;
    mr_status st;
    xmlNode *n = child(limits, name);
    *has = 0;
    if (!n) return MR_OK;
    snprintf(where, sizeof where, "encoding/encodingLimits/%s", name);
    if ((st = get_long(lo, &p1, n, "minimum", where, source)) != MR_OK) return st;
    if ((st = get_long(hi, &p2, n, "maximum", where, source)) != MR_OK) return st;
    if ((st = get_long(center, &p3, n, "center", where, source)) != MR_OK) return st;
    if (!p1) *lo = 0;
    if (!p2) *hi = 0;
    if (!p3) *center = 0;
    if (*lo < 0 || *hi < *lo || *center < 0)
        return mr_error_set(MR_ERR_INPUT, "%s: ISMRMRD header %s: expected 0 <= minimum <= maximum "
                            "and center >= 0, found minimum %ld, maximum %ld, center %ld",
                            source, where, *lo, *hi, *center);
    *has = 1;
    return MR_OK;
}

static mr_status get_space(size_t size[3], double fov[3], const xmlNode *enc, const char *name,
                           const char *source)
{
    static const char *axes[3] = {"x", "y", "z"};
    char where[96], path[64];
    mr_status st;
    xmlNode *sp = child(enc, name);
    if (!sp) return MR_OK;
    snprintf(where, sizeof where, "encoding/%s", name);
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "matrixSize/%s", axes[i]);
        if ((st = get_size(&size[i], sp, path, where, source)) != MR_OK) return st;
        snprintf(path, sizeof path, "fieldOfView_mm/%s", axes[i]);
        if ((st = get_double(&fov[i], sp, path, where, source)) != MR_OK) return st;
    }
    return MR_OK;
}

/* ---------------------------------------------------------------- parse */

mr_status mr_ismrmrd_hdr_parse(mr_ismrmrd_hdr *out, const char *xml, size_t len, const char *source)
{
    xmlDoc *doc = NULL;
    xmlNode *root, *enc, *n;
    mr_status st = MR_OK;
    size_t enc_size[3] = {0, 0, 0}, rec_size[3] = {0, 0, 0};
    int present;

    memset(out, 0, sizeof *out);
    if (!source) source = "ISMRMRD header";
    if (!xml || len == 0)
        return mr_error_set(MR_ERR_INPUT, "%s: ISMRMRD header: expected XML text, found an empty "
                            "string", source);
    if (len > (size_t)INT32_MAX)
        return mr_error_set(MR_ERR_INPUT, "%s: ISMRMRD header: %zu bytes is too large", source,
                            len);
    /* Strings stored with a fixed length may carry trailing NULs. */
    while (len > 0 && xml[len - 1] == '\0') len--;
    pthread_once(&g_xml_once, xml_init_once);
    xmlResetLastError();
    doc = xmlReadMemory(xml, (int)len, "ismrmrd_header.xml", NULL,
                        XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
    if (!doc) {
        const xmlError *e = xmlGetLastError();
        char msg[256] = "unknown parse error";
        if (e && e->message) {
            snprintf(msg, sizeof msg, "%s", e->message);
            msg[strcspn(msg, "\n")] = '\0';
        }
        return mr_error_set(MR_ERR_INPUT, "%s: ISMRMRD header: expected well-formed XML, found a "
                            "parse error at line %d: %s", source, e ? e->line : 0, msg);
    }
    root = xmlDocGetRootElement(doc);
    if (!root || !is_element(root, "ismrmrdHeader")) {
        st = mr_error_set(MR_ERR_INPUT, "%s: ISMRMRD header: expected root element "
                          "<ismrmrdHeader>, found <%s>", source,
                          root ? (const char *)root->name : "(none)");
        goto done;
    }
    enc = child(root, "encoding");
    if (!enc || !child(enc, "encodedSpace")) {
        st = mr_error_set(MR_ERR_INPUT, "%s: ISMRMRD header: expected encoding/encodedSpace, "
                          "found %s", source, enc ? "an encoding without encodedSpace"
                                                  : "no <encoding> element");
        goto done;
    }
    if ((st = get_space(enc_size, out->enc_fov, enc, "encodedSpace", source)) != MR_OK) goto done;
    if ((st = get_space(rec_size, out->recon_fov, enc, "reconSpace", source)) != MR_OK) goto done;
    out->enc_x = enc_size[0];
    out->enc_y = enc_size[1];
    out->enc_z = enc_size[2];
    out->recon_x = rec_size[0];
    out->recon_y = rec_size[1];
    out->recon_z = rec_size[2];
    if (out->enc_x == 0 || out->enc_y == 0) {
        st = mr_error_set(MR_ERR_INPUT, "%s: ISMRMRD header encoding/encodedSpace/matrixSize: "
                          "expected x and y >= 1, found x = %zu, y = %zu", source, out->enc_x,
                          out->enc_y);
        goto done;
    }
    if ((n = child(enc, "encodingLimits"))) {
        if ((st = get_limits(&out->has_e1_limits, &out->e1_min, &out->e1_max, &out->e1_center, n,
                             "kspace_encoding_step_1", source)) != MR_OK)
            goto done;
        if ((st = get_limits(&out->has_slice_limits, &out->slice_min, &out->slice_max,
                             &out->slice_center, n, "slice", source)) != MR_OK)
            goto done;
    }
    if ((st = get_long(&out->e1_accel, &out->has_e1_accel, enc,
                       "parallelImaging/accelerationFactor/kspace_encoding_step_1", "encoding",
                       source)) != MR_OK)
        goto done;
    if ((n = path_find(root, "measurementInformation/protocolName"))) {
        node_text(out->acquisition, sizeof out->acquisition, n);
    }
    if ((n = path_find(root, "subjectInformation/patientID"))) {
        node_text(out->patient_id, sizeof out->patient_id, n);
    }
    if ((st = get_double(&out->field_strength_t, root,
                         "acquisitionSystemInformation/systemFieldStrength_T", "ismrmrdHeader",
                         source)) != MR_OK)
        goto done;
    if ((st = get_long(&out->receiver_channels, &present, root,
                       "acquisitionSystemInformation/receiverChannels", "ismrmrdHeader",
                       source)) != MR_OK)
        goto done;
done:
    xmlFreeDoc(doc);
    if (st != MR_OK) {
        char keep[2048];
        snprintf(keep, sizeof keep, "%s", mr_error_message());
        memset(out, 0, sizeof *out);
        mr_error_set(st, "%s", keep);
    }
    return st;
}

/* ---------------------------------------------------------------- format */

/* Write text with the five XML special characters escaped. */
static void put_escaped(FILE *fp, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '&': fputs("&amp;", fp); break;
        case '<': fputs("&lt;", fp); break;
        case '>': fputs("&gt;", fp); break;
        case '"': fputs("&quot;", fp); break;
        case '\'': fputs("&apos;", fp); break;
        default: fputc(*s, fp);
        }
    }
}

static void put_space(FILE *fp, const char *name, size_t x, size_t y, size_t z, const double fov[3])
{
    fprintf(fp, "    <%s>\n      <matrixSize>\n        <x>%zu</x>\n        <y>%zu</y>\n"
                "        <z>%zu</z>\n      </matrixSize>\n", name, x, y, z ? z : 1);
    fprintf(fp, "      <fieldOfView_mm>\n        <x>%.9g</x>\n        <y>%.9g</y>\n"
                "        <z>%.9g</z>\n      </fieldOfView_mm>\n    </%s>\n",
            fov[0], fov[1], fov[2], name);
}

static void put_limits(FILE *fp, const char *name, long lo, long hi, long center)
{
    fprintf(fp, "      <%s>\n        <minimum>%ld</minimum>\n        <maximum>%ld</maximum>\n"
                "        <center>%ld</center>\n      </%s>\n", name, lo, hi, center, name);
}

mr_status mr_ismrmrd_hdr_format(char **out_xml, const mr_ismrmrd_hdr *h)
{
    char *buf = NULL;
    size_t size = 0;
    FILE *fp;
    size_t rx, ry, rz;
    double rfov[3];
    long h1;

    *out_xml = NULL;
    /* The schema types matrix sizes and limits as xs:unsignedShort. */
    if (h->enc_x == 0 || h->enc_y == 0 || h->enc_x > 65535 || h->enc_y > 65535 ||
        h->enc_z > 65535 || h->recon_x > 65535 || h->recon_y > 65535 || h->recon_z > 65535)
        return mr_error_set(MR_ERR_USAGE, "ISMRMRD header: expected encoded matrix sizes in "
                            "1..65535, found %zu x %zu x %zu", h->enc_x, h->enc_y, h->enc_z);
    if (h->has_e1_limits && (h->e1_min < 0 || h->e1_max < h->e1_min || h->e1_center < 0 ||
                             h->e1_max > 65535 || h->e1_center > 65535))
        return mr_error_set(MR_ERR_USAGE, "ISMRMRD header kspace_encoding_step_1 limits: expected "
                            "0 <= minimum <= maximum <= 65535, found %ld, %ld, center %ld",
                            h->e1_min, h->e1_max, h->e1_center);
    if (h->has_slice_limits && (h->slice_min < 0 || h->slice_max < h->slice_min ||
                                h->slice_center < 0 || h->slice_max > 65535))
        return mr_error_set(MR_ERR_USAGE, "ISMRMRD header slice limits: expected 0 <= minimum <= "
                            "maximum <= 65535, found %ld, %ld", h->slice_min, h->slice_max);
    fp = open_memstream(&buf, &size);
    if (!fp) return mr_error_set(MR_ERR_NOMEM, "ISMRMRD header: cannot allocate the XML text");

    /* reconSpace is required by the schema: default to the encoded space. */
    rx = h->recon_x ? h->recon_x : h->enc_x;
    ry = h->recon_y ? h->recon_y : h->enc_y;
    rz = h->recon_z ? h->recon_z : (h->enc_z ? h->enc_z : 1);
    for (int i = 0; i < 3; i++)
        rfov[i] = (h->recon_x || h->recon_y) ? h->recon_fov[i] : h->enc_fov[i];
    /* experimentalConditions/H1resonanceFrequency_Hz is required: the Larmor frequency at the
     * field strength when known, else ISMRMRD's own example value (63.5 MHz, about 1.5 T). */
    h1 = h->field_strength_t > 0 ? lround(h->field_strength_t * MR_GAMMA_1H_HZ_PER_T) : 63500000L;

    fputs("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
          "<ismrmrdHeader xmlns=\"" MR_ISMRMRD_NS "\">\n", fp);
    if (h->patient_id[0]) {
        fputs("  <subjectInformation>\n    <patientID>", fp);
        put_escaped(fp, h->patient_id);
        fputs("</patientID>\n  </subjectInformation>\n", fp);
    }
    if (h->acquisition[0]) {
        /* patientPosition is required in measurementInformation; head-first supine is the
         * schema's usual value and what fastMRI files carry. */
        fputs("  <measurementInformation>\n    <patientPosition>HFS</patientPosition>\n"
              "    <protocolName>", fp);
        put_escaped(fp, h->acquisition);
        fputs("</protocolName>\n  </measurementInformation>\n", fp);
    }
    if (h->field_strength_t > 0 || (h->receiver_channels > 0 && h->receiver_channels <= 65535)) {
        fputs("  <acquisitionSystemInformation>\n", fp);
        if (h->field_strength_t > 0)
            fprintf(fp, "    <systemFieldStrength_T>%.9g</systemFieldStrength_T>\n",
                    h->field_strength_t);
        if (h->receiver_channels > 0 && h->receiver_channels <= 65535)
            fprintf(fp, "    <receiverChannels>%ld</receiverChannels>\n", h->receiver_channels);
        fputs("  </acquisitionSystemInformation>\n", fp);
    }
    fprintf(fp, "  <experimentalConditions>\n    <H1resonanceFrequency_Hz>%ld"
                "</H1resonanceFrequency_Hz>\n  </experimentalConditions>\n", h1);
    fputs("  <encoding>\n", fp);
    put_space(fp, "encodedSpace", h->enc_x, h->enc_y, h->enc_z, h->enc_fov);
    put_space(fp, "reconSpace", rx, ry, rz, rfov);
    fputs("    <encodingLimits>\n", fp);
    if (h->has_e1_limits)
        put_limits(fp, "kspace_encoding_step_1", h->e1_min, h->e1_max, h->e1_center);
    if (h->has_slice_limits)
        put_limits(fp, "slice", h->slice_min, h->slice_max, h->slice_center);
    fputs("    </encodingLimits>\n    <trajectory>cartesian</trajectory>\n", fp);
    if (h->has_e1_accel && h->e1_accel >= 1 && h->e1_accel <= 65535)
        fprintf(fp, "    <parallelImaging>\n      <accelerationFactor>\n"
                    "        <kspace_encoding_step_1>%ld</kspace_encoding_step_1>\n"
                    "        <kspace_encoding_step_2>1</kspace_encoding_step_2>\n"
                    "      </accelerationFactor>\n    </parallelImaging>\n", h->e1_accel);
    fputs("  </encoding>\n</ismrmrdHeader>\n", fp);
    if (fclose(fp) != 0 || !buf) {
        free(buf);
        return mr_error_set(MR_ERR_NOMEM, "ISMRMRD header: cannot allocate the XML text");
    }
    *out_xml = buf;
    return MR_OK;
}

/* ---------------------------------------------------------------- padding */

void mr_ismrmrd_hdr_padding(long *pad_left, long *pad_right, const mr_ismrmrd_hdr *h, size_t width)
{
    long left = 0, right = (long)width;
    if (h && h->has_e1_limits && h->enc_y > 0) {
        left = (long)(h->enc_y / 2) - h->e1_center;
        right = left + h->e1_max + 1;
        /* A header that does not describe this k-space (other width) must not push the data
         * range outside the array. */
        if (left < 0) left = 0;
        if (right > (long)width) right = (long)width;
        if (right < left) right = left;
    }
    *pad_left = left;
    *pad_right = right;
}
