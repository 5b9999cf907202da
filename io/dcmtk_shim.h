/*
 * dcmtk_shim.h: io-internal: the thin extern "C" interface over DCMTK's dcmdata (implemented in
 * dcmtk_shim.cpp, the only C++ in mrpipe). It knows nothing about MRI: it loads and saves DICOM
 * files (PS3.10), reads and writes attribute values by tag, walks sequences, and hands out decoded
 * pixel data. Everything DICOM-specific (which tags, what they mean, PS3.3 IODs) is in dicom_read.c
 * and dicom_write.c. No C++ type crosses this header; no exception crosses it either.
 *
 * Tags are written as 32-bit numbers (group << 16 | element), e.g. MR_TAG(0x0020, 0x0032).
 */
#ifndef MR_DCMTK_SHIM_H
#define MR_DCMTK_SHIM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The shim returns mr_status values as int: mr_core.h is C17 (`float complex`) and cannot be read
 * by a C++ compiler. dicom_read.c checks with _Static_assert that these equal mr_status's. */
enum {
    MR_DCM_OK = 0,
    MR_DCM_ERR_INPUT = 2,
    MR_DCM_ERR_IO = 3,
    MR_DCM_ERR_NOMEM = 4,
    MR_DCM_ERR_INTERNAL = 5,
};

/* Implemented in C (dicom_read.c): keep a message for the calling thread (mr_error_set) and return
 * status. The shim reports every failure through it. */
int mr_dcm_error(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define MR_TAG(g, e) ((uint32_t)(((uint32_t)(g) << 16) | (uint32_t)(e)))

typedef struct mr_dcm_file mr_dcm_file; /* a DICOM file (meta header + dataset) */
typedef struct mr_dcm_item mr_dcm_item; /* a dataset or a sequence item, owned by its file */

/* Once per process (thread-safe; every shim entry calls it): DCMTK's logging off, decoders
 * registered. */
void mr_dcm_init(void);

/* DCMTK's version string ("3.6.7"). */
const char *mr_dcmtk_version(void);

/* Load `path`. header_only stops parsing at the pixel data (7FE0,0010), for scanning directories.
 * Files with or without the PS3.10 meta header are read. MR_ERR_INPUT naming the file and DCMTK's
 * reason when it is not DICOM or is unreadable. */
int mr_dcm_file_load(mr_dcm_file **out, const char *path, int header_only);

/* An empty file to fill and save. */
int mr_dcm_file_new(mr_dcm_file **out);

/* Free the file and every item in it; NULL is a no-op. */
void mr_dcm_file_free(mr_dcm_file *f);

/* The main dataset, and the meta header (group 0002) as an item. */
mr_dcm_item *mr_dcm_file_dataset(mr_dcm_file *f);
mr_dcm_item *mr_dcm_file_meta(mr_dcm_file *f);

/* The transfer syntax the dataset was read in: its UID into uid and DCMTK's name into name. */
void mr_dcm_file_xfer(const mr_dcm_file *f, char *uid, size_t uid_size, char *name,
                      size_t name_size);

/* 1 when the attribute is present (possibly empty) in this item (not in nested sequences). */
int mr_dcm_has(const mr_dcm_item *it, uint32_t tag);

/* All values of an attribute as text, joined by '\\' (DICOM's separator), leading and trailing
 * spaces removed. Returns 1 when present with a non-empty value, 0 otherwise (buf = ""). A value
 * longer than the buffer is truncated (the caller's buffers are larger than the VRs' maxima). */
int mr_dcm_get_string(const mr_dcm_item *it, uint32_t tag, char *buf, size_t size);

/* Value number idx (0-based) of a numeric attribute as a double: US, SS, UL, SL, FL, FD and the
 * string VRs DS and IS. Returns 1 on success, 0 when absent, empty, too short or not a number. */
int mr_dcm_get_number(const mr_dcm_item *it, uint32_t tag, unsigned long idx, double *value);

/* Number of values (VM) of an attribute, 0 when absent. */
unsigned long mr_dcm_vm(const mr_dcm_item *it, uint32_t tag);

/* Items of a sequence (0 when absent or not a sequence), and item idx (NULL when out of range). */
size_t mr_dcm_seq_count(const mr_dcm_item *it, uint32_t tag);
mr_dcm_item *mr_dcm_seq_item(const mr_dcm_item *it, uint32_t tag, size_t idx);

/* The pixel data (7FE0,0010), decompressed when the transfer syntax is encapsulated (RLE, JPEG
 * baseline/extended/lossless, JPEG-LS: DCMTK's decoders are registered on first use), as host-order
 * 16-bit words (elem_size 2: bits allocated 16) or bytes (elem_size 1: bits allocated 8).
 * *data points into the file's memory, valid until it is freed. `path` names the file in
 * messages. MR_ERR_INPUT: missing pixel data, or "unsupported transfer syntax <UID> (<name>)"
 * when no decoder exists (JPEG 2000). */
int mr_dcm_pixels(mr_dcm_file *f, const char *path, int bits_allocated, const void **data,
                  size_t *count);

/* Writing. Values are DICOM text (multiple values separated by '\\'); the VR comes from DCMTK's
 * data dictionary. An empty string writes an empty (type 2) attribute. */
int mr_dcm_put_string(mr_dcm_item *it, uint32_t tag, const char *value);
int mr_dcm_put_u16(mr_dcm_item *it, uint32_t tag, unsigned value);

/* Pixel data as OW from `count` host-order 16-bit words. */
int mr_dcm_put_pixels16(mr_dcm_item *it, const uint16_t *pixels, size_t count);

/* Append a new, empty item to a sequence (created when absent); *out is owned by the file. */
int mr_dcm_seq_append(mr_dcm_item **out, mr_dcm_item *it, uint32_t tag);

/* Save as a PS3.10 file, explicit VR little endian, with a new meta header (mrpipe's implementation
 * class UID; version_name, e.g. "MRPIPE_0.1.0", at most 16 characters). MR_ERR_IO naming the file
 * on failure. */
int mr_dcm_file_save(mr_dcm_file *f, const char *path, const char *version_name);

/* DICOM networking (dcmtk_net.cpp, PS3.7 C-STORE, PS3.8 association). */

/* What went wrong in a send, so that the C side can decide whether to retry. */
enum {
    MR_DCM_NET_OK = 0,
    MR_DCM_NET_CONNECT = 1, /* no connection / timeout / network error: worth retrying */
    MR_DCM_NET_REFUSED = 2, /* the peer rejected the association or the SOP class: do not retry */
    MR_DCM_NET_STORE = 3,   /* the peer answered a C-STORE with a failure status */
};

/* Send `n` files of SOP class `sop_class` in one association from calling_aet to called_aet at
 * host:port (explicit and implicit VR little endian offered), timeout_s for connect, ACSE and
 * DIMSE. Returns an MR_DCM_NET_* kind; the message (kept through mr_dcm_error) names the peer, the
 * file and the status. *sent receives the number of instances the peer stored. */
int mr_dcm_send_files(const char *host, int port, const char *called_aet, const char *calling_aet,
                      const char *sop_class, const char *const *files, size_t n, int timeout_s,
                      size_t *sent);

/* Retrieve a series with C-GET (Study Root, SERIES level) into out_dir (an existing folder; DCMTK
 * names the files after the SOP instance UIDs). *received = instances stored. Same kinds as
 * mr_dcm_send_files; MR_DCM_NET_STORE also when the peer has no such series. */
int mr_dcm_get_series(const char *host, int port, const char *called_aet, const char *calling_aet,
                      const char *study_uid, const char *series_uid, const char *out_dir,
                      int timeout_s, size_t *received);

/* C-FIND (Study Root information model) at `level` ("STUDY", "SERIES" or "IMAGE") with nkeys
 * keys: tags[k] with values[k] ("" or NULL: a return key; otherwise a matching value, e.g. a UID
 * or "MR"). On success *results is a malloc'ed block (free()) of *nresults x nkeys strings of
 * MR_DCM_FIND_VALUE_SIZE characters, match by match in tags' order ("" when the peer did not return
 * the attribute). Kinds as mr_dcm_send_files; MR_DCM_NET_STORE for a failure status. */
#define MR_DCM_FIND_VALUE_SIZE 80
int mr_dcm_find(const char *host, int port, const char *called_aet, const char *calling_aet,
                const char *level, const uint32_t *tags, const char *const *values, size_t nkeys,
                int timeout_s, char **results, size_t *nresults);

/* Retrieve a series with C-MOVE (Study Root, SERIES level) to dest_aet, served by a temporary
 * storage SCP that mrpipe runs on dest_port (all interfaces) for the duration of the request; the
 * peer must know dest_aet at this host and port. Instances are stored in out_dir (an existing
 * folder) as <SOPInstanceUID>.dcm. *received = instances stored. Kinds as mr_dcm_get_series;
 * MR_DCM_NET_REFUSED also when the port cannot be opened or the peer does not know dest_aet
 * (status 0xA801). */
int mr_dcm_move_series(const char *host, int port, const char *called_aet, const char *calling_aet,
                       const char *study_uid, const char *series_uid, const char *dest_aet,
                       int dest_port, const char *out_dir, int timeout_s, size_t *received);

#ifdef __cplusplus
}
#endif

#endif
