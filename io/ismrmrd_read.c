/*
 * ismrmrd_read.c: Cartesian raw data from an ISMRMRD v1 HDF5 file, assembled into a k-space array.
 *
 * Spec: ISMRMRD v1 (Inati et al., MRM 2017, doi:10.1002/mrm.26089): group /dataset with `xml` (the
 * header) and `data` (acquisitions: header, trajectory, data stored coil-major as [coil][sample]).
 * Read through the libismrmrd C API. Each imaging line lands at
 *   kspace[idx.slice, coil, sample, idx.kspace_encode_step_1 + offset]       (S, C, H, W)
 * where H = encodedSpace x (readout, oversampling kept) and W = encodedSpace y. The offset is
 * enc_y/2 - encodingLimits/kspace_encoding_step_1/center when the header's centre is not the array
 * centre and the shifted lines still fit (the convention fastMRI's converter used), else 0.
 * Repeated acquisitions of one line (repetitions, averages) are averaged. Noise scans (flag 19) go
 * to `noise` as (N, C) samples; navigator, phase-correction, feedback and dummy scans are skipped;
 * parallel-calibration lines (flags 20, 21) are imaging lines. Readouts flagged reverse (22) are
 * flipped.
 */
#include "mr_io.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hdf5.h>
#include <ismrmrd/dataset.h>
#include <ismrmrd/ismrmrd.h>
#include <libxml/parser.h>
#include <libxml/tree.h>

/* libismrmrd reports errors through a process-wide handler; keep the last one per thread. */
static _Thread_local char g_ismrmrd_err[512];

static void ismrmrd_err_keep(const char *file, int line, const char *function, int code,
                             const char *msg)
{
    (void)file;
    (void)line;
    snprintf(g_ismrmrd_err, sizeof g_ismrmrd_err, "%s (%s, code %d)", msg ? msg : "?",
             function ? function : "?", code);
}

static const char *ismrmrd_err_text(void)
{
    return g_ismrmrd_err[0] ? g_ismrmrd_err : "no detail from libismrmrd";
}

/* Is the acquisition one that holds no imaging data for this k-space? */
static int is_auxiliary(uint64_t flags)
{
    static const int skip[] = {ISMRMRD_ACQ_IS_NAVIGATION_DATA,
                               ISMRMRD_ACQ_IS_PHASECORR_DATA,
                               ISMRMRD_ACQ_IS_HPFEEDBACK_DATA,
                               ISMRMRD_ACQ_IS_DUMMYSCAN_DATA,
                               ISMRMRD_ACQ_IS_RTFEEDBACK_DATA,
                               ISMRMRD_ACQ_IS_SURFACECOILCORRECTIONSCAN_DATA,
                               ISMRMRD_ACQ_IS_PHASE_STABILIZATION_REFERENCE,
                               ISMRMRD_ACQ_IS_PHASE_STABILIZATION};
    for (size_t i = 0; i < sizeof skip / sizeof skip[0]; i++)
        if (ismrmrd_is_flag_set(flags, (uint64_t)skip[i])) return 1;
    return 0;
}

/* The first encoding's trajectory text ("cartesian", ...), namespace-tolerant; "" when absent. */
static void header_trajectory(char *buf, size_t size, const char *xml)
{
    xmlDoc *doc;
    xmlNode *root, *n, *enc = NULL, *traj = NULL;
    buf[0] = '\0';
    doc = xmlReadMemory(xml, (int)strlen(xml), "ismrmrd_header.xml", NULL,
                        XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
    if (!doc) return;
    root = xmlDocGetRootElement(doc);
    for (n = root ? root->children : NULL; n && !enc; n = n->next)
        if (n->type == XML_ELEMENT_NODE && strcmp((const char *)n->name, "encoding") == 0) enc = n;
    for (n = enc ? enc->children : NULL; n && !traj; n = n->next)
        if (n->type == XML_ELEMENT_NODE && strcmp((const char *)n->name, "trajectory") == 0)
            traj = n;
    if (traj) {
        xmlChar *s = xmlNodeGetContent(traj);
        const char *p = s ? (const char *)s : "";
        while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r') p++;
        snprintf(buf, size, "%s", p);
        buf[strcspn(buf, " \t\r\n")] = '\0';
        xmlFree(s);
    }
    xmlFreeDoc(doc);
}

/* The innermost entry of HDF5's error stack (where the problem was found); clears the stack. */
static herr_t h5_err_cb(unsigned n, const H5E_error2_t *e, void *data)
{
    char *buf = data;
    if (n == 0 && e && e->desc) snprintf(buf, 256, "%s", e->desc);
    return 0;
}

static const char *h5_err_detail(char buf[256])
{
    snprintf(buf, 256, "no detail from HDF5");
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, h5_err_cb, buf);
    H5Eclear2(H5E_DEFAULT);
    return buf;
}

/* Check the file is HDF5 and holds /dataset/xml and /dataset/data before libismrmrd sees it, so the
 * message can say what is missing. */
static mr_status check_layout(const char *path)
{
    struct stat sb;
    hid_t file;
    const char *missing = NULL;
    if (stat(path, &sb) != 0)
        return mr_error_set(MR_ERR_INPUT, "%s: cannot open the input: %s", path, strerror(errno));
    if (!S_ISREG(sb.st_mode))
        return mr_error_set(MR_ERR_INPUT, "%s: expected an ISMRMRD HDF5 file, found a directory "
                            "or special file", path);
    if (H5Fis_hdf5(path) <= 0) {
        H5Eclear2(H5E_DEFAULT);
        return mr_error_set(MR_ERR_INPUT, "%s: expected an HDF5 file (ISMRMRD v1), found %s", path,
                            sb.st_size == 0 ? "an empty file" : "no HDF5 signature");
    }
    file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (file < 0) {
        char detail[256];
        return mr_error_set(MR_ERR_INPUT, "%s: cannot open as HDF5 (truncated or damaged file?): "
                            "%s", path, h5_err_detail(detail));
    }
    if (H5Lexists(file, "dataset", H5P_DEFAULT) <= 0)
        missing = "/dataset";
    else if (H5Lexists(file, "dataset/xml", H5P_DEFAULT) <= 0)
        missing = "/dataset/xml";
    else if (H5Lexists(file, "dataset/data", H5P_DEFAULT) <= 0)
        missing = "/dataset/data";
    H5Fclose(file);
    H5Eclear2(H5E_DEFAULT);
    if (missing)
        return mr_error_set(MR_ERR_INPUT, "%s: expected an ISMRMRD v1 file with %s, found none",
                            path, missing);
    return MR_OK;
}

/* Grow the (S, C, H, W) sum and the (S, W) line counts to `slices` slices. */
static mr_status grow_slices(mr_array **sum, unsigned **count, size_t slices)
{
    mr_array *old = *sum, *a = NULL;
    size_t dims[4] = {slices, old->dims[1], old->dims[2], old->dims[3]};
    unsigned *c;
    mr_status st = mr_array_create(&a, MR_COMPLEX64, 4, dims);
    if (st != MR_OK) return st;
    memcpy(a->data, old->data, mr_array_numel(old) * sizeof(mr_cfloat));
    c = mr_calloc(slices * dims[3], sizeof *c);
    if (!c) {
        mr_array_destroy(a);
        return MR_ERR_NOMEM;
    }
    memcpy(c, *count, old->dims[0] * dims[3] * sizeof *c);
    free(*count);
    mr_array_destroy(old);
    *sum = a;
    *count = c;
    return MR_OK;
}

mr_status mr_ismrmrd_read(mr_ismrmrd_data *out, const char *path, int keep_noise)
{
    ISMRMRD_Dataset dset;
    ISMRMRD_Acquisition acq;
    int dset_open = 0, acq_init = 0;
    mr_status st = MR_OK;
    char *xml = NULL;
    char source[4200], traj[64];
    mr_ismrmrd_hdr *h = &out->hdr;
    mr_array *sum = NULL;
    unsigned *count = NULL;
    mr_cfloat *noise = NULL;
    size_t noise_cap = 0, noise_n = 0, noise_c = 0;
    size_t S, C = 0, H, W;
    long offset = 0;
    uint32_t nacq;

    memset(out, 0, sizeof *out);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    ismrmrd_set_error_handler(ismrmrd_err_keep);
    g_ismrmrd_err[0] = '\0';
    if (!path || !*path) return mr_error_set(MR_ERR_USAGE, "empty input path");
    if ((st = check_layout(path)) != MR_OK) return st;

    if (ismrmrd_init_dataset(&dset, path, "/dataset") != ISMRMRD_NOERROR ||
        ismrmrd_open_dataset(&dset, false) != ISMRMRD_NOERROR) {
        st = mr_error_set(MR_ERR_INPUT, "%s: cannot open the ISMRMRD dataset /dataset: %s", path,
                          ismrmrd_err_text());
        goto done;
    }
    dset_open = 1;
    xml = ismrmrd_read_header(&dset);
    if (!xml) {
        st = mr_error_set(MR_ERR_INPUT, "%s: dataset '/dataset/xml': cannot read the header: %s",
                          path, ismrmrd_err_text());
        goto done;
    }
    snprintf(source, sizeof source, "%s: dataset '/dataset/xml'", path);
    if ((st = mr_ismrmrd_hdr_parse(h, xml, strlen(xml), source)) != MR_OK) goto done;
    header_trajectory(traj, sizeof traj, xml);
    if (strcmp(traj, "cartesian") != 0) {
        st = mr_error_set(MR_ERR_INPUT, "%s: dataset '/dataset/xml' encoding/trajectory: expected "
                          "'cartesian', found '%s'", path, traj[0] ? traj : "(none)");
        goto done;
    }
    if (h->enc_z > 1) {
        st = mr_error_set(MR_ERR_INPUT, "%s: dataset '/dataset/xml' encodedSpace/matrixSize/z: "
                          "expected 1 (2-D encoding), found %zu (3-D is not supported)", path,
                          h->enc_z);
        goto done;
    }
    H = h->enc_x;
    W = h->enc_y;
    S = h->has_slice_limits ? (size_t)h->slice_max + 1 : 1;
    if (h->has_e1_limits) {
        long shift = (long)(W / 2) - h->e1_center;
        if (shift != 0 && h->e1_min + shift >= 0 && h->e1_max + shift < (long)W) offset = shift;
    }

    nacq = ismrmrd_get_number_of_acquisitions(&dset);
    if (ismrmrd_init_acquisition(&acq) != ISMRMRD_NOERROR) {
        st = mr_error_set(MR_ERR_NOMEM, "%s: cannot allocate an acquisition", path);
        goto done;
    }
    acq_init = 1;
    for (uint32_t i = 0; i < nacq; i++) {
        const ISMRMRD_AcquisitionHeader *ah = &acq.head;
        size_t ns, nc, slice;
        long col;
        int reverse;
        if (ismrmrd_read_acquisition(&dset, i, &acq) != ISMRMRD_NOERROR) {
            st = mr_error_set(MR_ERR_INPUT, "%s: acquisition %u: cannot read: %s", path, i,
                              ismrmrd_err_text());
            goto done;
        }
        ns = ah->number_of_samples;
        nc = ah->active_channels;
        if (nc == 0 || ns == 0 || !acq.data) {
            st = mr_error_set(MR_ERR_INPUT, "%s: acquisition %u: expected samples and active "
                              "channels, found %zu samples x %zu channels", path, i, ns, nc);
            goto done;
        }
        if (ismrmrd_is_flag_set(ah->flags, ISMRMRD_ACQ_IS_NOISE_MEASUREMENT)) {
            out->n_noise++;
            if (!keep_noise) continue;
            if (noise_c && nc != noise_c) {
                st = mr_error_set(MR_ERR_INPUT, "%s: noise acquisition %u: expected %zu channels "
                                  "like the earlier noise scans, found %zu", path, i, noise_c, nc);
                goto done;
            }
            noise_c = nc;
            if (noise_n + ns > noise_cap) {
                size_t cap = noise_cap ? 2 * noise_cap : 4096;
                mr_cfloat *p;
                while (cap < noise_n + ns) cap *= 2;
                p = realloc(noise, cap * nc * sizeof *p);
                if (!p) {
                    st = mr_error_set(MR_ERR_NOMEM, "%s: out of memory for %zu noise samples",
                                      path, cap);
                    goto done;
                }
                noise = p;
                noise_cap = cap;
            }
            /* (N, C): sample-major, transposed from the file's [coil][sample]. */
            for (size_t c = 0; c < nc; c++)
                for (size_t s = 0; s < ns; s++)
                    noise[(noise_n + s) * nc + c] = ((const mr_cfloat *)acq.data)[c * ns + s];
            noise_n += ns;
            continue;
        }
        if (is_auxiliary(ah->flags)) continue;
        if (ah->encoding_space_ref != 0) {
            st = mr_error_set(MR_ERR_INPUT, "%s: acquisition %u: expected encoding space 0 (only "
                              "the first encoding is supported), found %u", path, i,
                              (unsigned)ah->encoding_space_ref);
            goto done;
        }
        if (ah->idx.contrast || ah->idx.phase || ah->idx.set || ah->idx.kspace_encode_step_2) {
            st = mr_error_set(MR_ERR_INPUT, "%s: acquisition %u: expected one contrast, phase, set "
                              "and partition (all 0), found contrast %u, phase %u, set %u, "
                              "kspace_encode_step_2 %u", path, i, (unsigned)ah->idx.contrast,
                              (unsigned)ah->idx.phase, (unsigned)ah->idx.set,
                              (unsigned)ah->idx.kspace_encode_step_2);
            goto done;
        }
        if (ns != H) {
            st = mr_error_set(MR_ERR_INPUT, "%s: acquisition %u: expected number_of_samples = %zu "
                              "(encodedSpace x), found %zu", path, i, H, ns);
            goto done;
        }
        col = (long)ah->idx.kspace_encode_step_1 + offset;
        if (col < 0 || col >= (long)W) {
            st = mr_error_set(MR_ERR_INPUT, "%s: acquisition %u: kspace_encode_step_1 = %u%s is "
                              "outside the encoded matrix: expected 0..%zu (encodedSpace y = %zu)",
                              path, i, (unsigned)ah->idx.kspace_encode_step_1,
                              offset ? " (after the centre offset)" : "", W - 1, W);
            goto done;
        }
        if (!sum) {
            size_t dims[4] = {S, nc, H, W};
            C = nc;
            if ((st = mr_array_create(&sum, MR_COMPLEX64, 4, dims)) != MR_OK) {
                mr_error_prefix(st, "%s: k-space: ", path);
                goto done;
            }
            count = mr_calloc(S * W, sizeof *count);
            if (!count) {
                st = MR_ERR_NOMEM;
                goto done;
            }
        } else if (nc != C) {
            st = mr_error_set(MR_ERR_INPUT, "%s: acquisition %u: expected %zu active channels like "
                              "the first imaging acquisition, found %zu", path, i, C, nc);
            goto done;
        }
        slice = ah->idx.slice;
        if (slice >= sum->dims[0] && (st = grow_slices(&sum, &count, slice + 1)) != MR_OK) {
            mr_error_prefix(st, "%s: k-space: ", path);
            goto done;
        }
        reverse = ismrmrd_is_flag_set(ah->flags, ISMRMRD_ACQ_IS_REVERSE);
        {
            mr_cfloat *k = mr_array_c64(sum);
            const mr_cfloat *d = (const mr_cfloat *)acq.data;
            for (size_t c = 0; c < C; c++) {
                mr_cfloat *dst = k + ((slice * C + c) * H) * W + (size_t)col;
                const mr_cfloat *src = d + c * ns;
                for (size_t s = 0; s < H; s++) dst[s * W] += src[reverse ? H - 1 - s : s];
            }
        }
        count[slice * W + (size_t)col]++;
        out->n_acquisitions++;
    }
    if (!sum) {
        st = mr_error_set(MR_ERR_INPUT, "%s: dataset '/dataset/data': expected imaging "
                          "acquisitions, found none among %u acquisitions (%zu noise)", path, nacq,
                          out->n_noise);
        goto done;
    }
    if (noise_n && noise_c != C) {
        st = mr_error_set(MR_ERR_INPUT, "%s: noise scans have %zu channels, the imaging data %zu",
                          path, noise_c, C);
        goto done;
    }
    /* Average lines acquired more than once (repetitions, averages). */
    {
        mr_cfloat *k = mr_array_c64(sum);
        for (size_t s = 0; s < sum->dims[0]; s++)
            for (size_t x = 0; x < W; x++) {
                unsigned n = count[s * W + x];
                if (n <= 1) continue;
                float inv = 1.0f / (float)n;
                for (size_t c = 0; c < C; c++)
                    for (size_t r = 0; r < H; r++) k[((s * C + c) * H + r) * W + x] *= inv;
            }
    }
    if (keep_noise && noise_n) {
        size_t dims[2] = {noise_n, noise_c};
        if ((st = mr_array_create(&out->noise, MR_COMPLEX64, 2, dims)) != MR_OK) goto done;
        memcpy(out->noise->data, noise, noise_n * noise_c * sizeof *noise);
    }
    out->kspace = sum;
    sum = NULL;
    out->xml = xml;
    xml = NULL;
done:
    if (acq_init) ismrmrd_cleanup_acquisition(&acq);
    if (dset_open) ismrmrd_close_dataset(&dset);
    H5Eclear2(H5E_DEFAULT);
    free(xml);
    free(noise);
    free(count);
    mr_array_destroy(sum);
    if (st != MR_OK) {
        char keep[2048];
        snprintf(keep, sizeof keep, "%s", mr_error_message());
        mr_ismrmrd_data_free(out);
        mr_error_set(st, "%s", keep);
    }
    return st;
}

void mr_ismrmrd_data_free(mr_ismrmrd_data *d)
{
    if (!d) return;
    mr_array_destroy(d->kspace);
    mr_array_destroy(d->noise);
    free(d->xml);
    memset(d, 0, sizeof *d);
}
