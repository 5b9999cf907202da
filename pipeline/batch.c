/*
 * batch.c: running a pipeline over many scans: resumable, atomic per-scan output sets, worker
 * processes, shards, a progress bar, a log file, and the batch summary (JSON, CSV, HTML).
 *
 * Per scan (process_scan): the stages write into OUT/.ID.partial-PID/; when they all succeeded,
 * metrics.json and the marker mrpipe-done.yaml (input size, mtime, XXH64; config hash; mrpipe and
 * library versions; the resolved stages; metrics; timings) are written into it, and the directory is
 * renamed to OUT/ID in one rename(2) (an older OUT/ID is first moved aside and removed after). So at
 * any moment OUT/ID is either absent or one complete output set with its marker; `kill -9` leaves at
 * most a .partial/.old directory, which the next run of that scan removes. A re-run skips a scan
 * whose marker has the same config hash and mrpipe version and whose input has the same size and
 * mtime (or, when those changed, the same XXH64 content hash). A failing scan leaves OUT/ID.failed.txt with the
 * reason; the batch goes on. With the flat layout (one scan, `mrpipe run`), the files are renamed
 * one by one into OUT after the old marker is removed, and the marker is written last.
 *
 * Workers: `jobs` forked processes, each with `threads` threads (MRPIPE_THREADS and OpenMP), fed
 * scan indices over a pipe, the next one queued while the current one runs (WORKER_QUEUE); results
 * come back on one shared pipe (records < PIPE_BUF, so writes are atomic). A worker that dies
 * mid-scan (a crash) fails that scan, its queued scans go back to the pool, and it is replaced.
 * The parent never runs OpenMP or FFTW threads before forking.
 */
#define _GNU_SOURCE
#include "mr_pipeline.h"
#include "mr_recon.h"
#include "mr_stages.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define MARKER "mrpipe-done.yaml"

/* ================================================================ small helpers */

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

/* rm -rf (best effort). */
static void remove_tree(const char *path)
{
    struct stat sb;
    if (lstat(path, &sb) != 0) return;
    if (!S_ISDIR(sb.st_mode)) {
        unlink(path);
        return;
    }
    nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static mr_status make_dirs(const char *dir)
{
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", dir) >= (int)sizeof buf)
        return mr_error_set(MR_ERR_USAGE, "%s: path too long", dir);
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || !*p) {
            char save = *p;
            *p = '\0';
            if (mkdir(buf, 0777) != 0 && errno != EEXIST)
                return mr_error_set(MR_ERR_IO, "%s: cannot create the directory: %s", buf,
                                    strerror(errno));
            *p = save;
            if (!save) break;
        }
    }
    if (!mr_path_is_dir(dir))
        return mr_error_set(MR_ERR_IO, "%s: exists and is not a directory", dir);
    return MR_OK;
}

/* The input file whose bytes identify a scan (a BART name may omit .cfl). */
static void input_file(char *out, size_t size, const char *input)
{
    if (access(input, R_OK) != 0 && snprintf(out, size, "%s.cfl", input) < (int)size &&
        access(out, R_OK) == 0)
        return;
    snprintf(out, size, "%s", input);
}

typedef struct {
    long long size, mtime_ns;
} file_stamp;

static mr_status content_hash(char hex[17], const char *path);

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A folder input (a DICOM series): its files, recursively in sorted order, stand for its bytes:
 * size = their total, mtime = the latest, and with `lines` one "relpath xxh64\n" line per file
 * (hashed by content_hash). -1 when the folder cannot be read. */
static int stamp_dir(file_stamp *s, mr_text *lines, const char *root, const char *rel)
{
    char dir[8400], path[8400], sub[8400], hex[17];
    struct dirent *e;
    struct stat sb;
    char **names = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    if (snprintf(dir, sizeof dir, "%s%s%s", root, rel[0] ? "/" : "", rel) >= (int)sizeof dir)
        return -1;
    DIR *d = opendir(dir);
    if (!d) return -1;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (n == cap) {
            char **g = realloc(names, (cap = cap ? 2 * cap : 64) * sizeof *names);
            if (!g) {
                rc = -1;
                break;
            }
            names = g;
        }
        if (!(names[n] = strdup(e->d_name))) {
            rc = -1;
            break;
        }
        n++;
    }
    closedir(d);
    if (n) qsort(names, n, sizeof *names, cmp_names);
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (snprintf(path, sizeof path, "%s/%s", dir, names[i]) >= (int)sizeof path ||
            snprintf(sub, sizeof sub, "%s%s%s", rel, rel[0] ? "/" : "", names[i]) >= (int)sizeof sub) {
            rc = -1;
            break;
        }
        if (stat(path, &sb) != 0) continue;
        long long t = (long long)sb.st_mtim.tv_sec * 1000000000LL + sb.st_mtim.tv_nsec;
        if (t > s->mtime_ns) s->mtime_ns = t;
        if (S_ISDIR(sb.st_mode)) {
            rc = stamp_dir(s, lines, root, sub);
        } else if (S_ISREG(sb.st_mode)) {
            s->size += (long long)sb.st_size;
            if (lines) {
                if (content_hash(hex, path) != MR_OK) rc = -1;
                else mr_text_printf(lines, "%s %s\n", sub, hex);
            }
        }
    }
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    return rc;
}

static int stamp_file(file_stamp *s, const char *input)
{
    char f[4200];
    struct stat sb;
    input_file(f, sizeof f, input);
    if (stat(f, &sb) != 0) return -1;
    if (S_ISDIR(sb.st_mode)) { /* a DICOM folder */
        s->size = 0;
        s->mtime_ns = 0;
        return stamp_dir(s, NULL, f, "");
    }
    s->size = (long long)sb.st_size;
    s->mtime_ns = (long long)sb.st_mtim.tv_sec * 1000000000LL + sb.st_mtim.tv_nsec;
    return 0;
}

/* Paths of scan i. */
typedef struct {
    char final[4096];  /* the output set */
    char marker[4200];
    char failed[4200]; /* the failure record */
} scan_paths;

static void paths_of(scan_paths *sp, const mr_pipeline *p, size_t i)
{
    if (p->flat) {
        snprintf(sp->final, sizeof sp->final, "%s", p->out_dir);
        snprintf(sp->failed, sizeof sp->failed, "%s/failed.txt", p->out_dir);
    } else {
        if (snprintf(sp->final, sizeof sp->final, "%s/%s", p->out_dir, p->ids[i]) >=
            (int)sizeof sp->final)
            sp->final[sizeof sp->final - 1] = '\0';
        snprintf(sp->failed, sizeof sp->failed, "%s/%s.failed.txt", p->out_dir, p->ids[i]);
    }
    snprintf(sp->marker, sizeof sp->marker, "%s/" MARKER, sp->final);
}

/* ================================================================ markers */

typedef struct {
    int valid;            /* parsed, same mrpipe version and config hash */
    long long size, mtime_ns;
    char hash[65];
    double seconds_total, seconds_stages;
    mr_config *doc;       /* the parsed marker (metrics are read from it) */
} marker_info;

static void marker_free(marker_info *m)
{
    mr_config_destroy(m->doc);
    memset(m, 0, sizeof *m);
}

static const char *node_text(const mr_cfg_node *map, const char *key)
{
    const mr_cfg_node *n = mr_cfg_child(map, key);
    return n && n->kind == MR_CFG_SCALAR ? n->value : "";
}

/* Read a marker; m->valid when it belongs to this pipeline (version and config hash). */
static void marker_read(marker_info *m, const mr_pipeline *p, const char *path)
{
    memset(m, 0, sizeof *m);
    if (access(path, R_OK) != 0) return;
    if (mr_config_load(&m->doc, path) != MR_OK) {
        mr_error_clear();
        return;
    }
    const mr_cfg_node *r = m->doc->root, *in = mr_cfg_child(r, "input"), *sec;
    m->valid = !strcmp(node_text(r, "mrpipe"), MR_VERSION_STRING) &&
               !strcmp(node_text(r, "config_sha256"), p->config_hash) && in;
    if (in) {
        m->size = atoll(node_text(in, "size"));
        m->mtime_ns = atoll(node_text(in, "mtime_ns"));
        snprintf(m->hash, sizeof m->hash, "%s", node_text(in, "xxh64"));
    }
    if ((sec = mr_cfg_child(r, "seconds"))) {
        m->seconds_total = atof(node_text(sec, "total"));
        m->seconds_stages = atof(node_text(sec, "stages"));
    }
}

static void marker_compose(mr_text *t, const mr_pipeline *p, const mr_scan *scan,
                           const file_stamp *fs, const char *sha, double total)
{
    mr_version_entry ver[MR_VERSIONS_MAX];
    size_t nv = mr_versions_collect(ver);
    double stages = 0;
    const mr_cfg_node *stages_node = mr_cfg_child(p->config->root, "stages");
    for (size_t i = 0; i < p->n_stages; i++) stages += scan->stage_seconds[i];
    mr_text_puts(t, "# mrpipe-done.yaml: this scan's outputs are complete (written last; "
                    "docs/configs.md)\n");
    mr_text_printf(t, "mrpipe: %s\nconfig_sha256: %s\nscan: ", MR_VERSION_STRING, p->config_hash);
    mr_text_json_str(t, scan->id);
    mr_text_puts(t, "\ninput:\n  path: ");
    mr_text_json_str(t, scan->input);
    mr_text_printf(t, "\n  size: %lld\n  mtime_ns: %lld\n  xxh64: %s\n", fs->size, fs->mtime_ns, sha);
    mr_text_printf(t, "seconds:\n  total: %.6f\n  stages: %.6f\n", total, stages);
    for (size_t i = 0; i < p->n_stages; i++)
        mr_text_printf(t, "  %s: %.6f\n", p->stages[i].label, scan->stage_seconds[i]);
    mr_text_puts(t, "metrics:");
    int any = 0;
    for (size_t i = 0; i < scan->n_images; i++) {
        const mr_scan_image *im = &scan->images[i];
        if (!im->has_metrics) continue;
        mr_text_printf(t, "\n  %s: {nmse: %.9g, psnr: %.9g, ssim: %.9g}", im->label,
                       im->metrics.volume.nmse, im->metrics.volume.psnr, im->metrics.volume.ssim);
        any = 1;
    }
    mr_text_puts(t, any ? "\n" : " {}\n");
    mr_text_puts(t, "versions:\n");
    for (size_t i = 0; i < nv; i++) {
        mr_text_printf(t, "  %s: ", ver[i].name);
        mr_text_json_str(t, ver[i].value);
        mr_text_puts(t, "\n");
    }
    mr_text_puts(t, "stages:\n");
    mr_cfg_emit(t, stages_node, 2);
}

/* metrics.json: the scan's metrics per volume and per slice (no timings: reproducible). */
static void metrics_compose(mr_text *t, const mr_scan *scan)
{
    mr_text_puts(t, "{\n  \"scan\": ");
    mr_text_json_str(t, scan->id);
    mr_text_puts(t, ",\n  \"reference\": ");
    mr_text_json_str(t, scan->reference_desc);
    mr_text_puts(t, ",\n  \"images\": {");
    int first = 1;
    for (size_t i = 0; i < scan->n_images; i++) {
        const mr_scan_image *im = &scan->images[i];
        if (!im->has_metrics) continue;
        const mr_metrics_result *r = &im->metrics;
        mr_text_printf(t, "%s\n    ", first ? "" : ",");
        first = 0;
        mr_text_json_str(t, im->label);
        mr_text_puts(t, ": {\"method\": ");
        mr_text_json_str(t, im->method);
        mr_text_puts(t, ", \"nmse\": ");
        mr_text_json_num(t, r->volume.nmse);
        mr_text_puts(t, ", \"psnr\": ");
        mr_text_json_num(t, r->volume.psnr);
        mr_text_puts(t, ", \"ssim\": ");
        mr_text_json_num(t, r->volume.ssim);
        mr_text_puts(t, ", \"data_range\": ");
        mr_text_json_num(t, r->data_range);
        mr_text_puts(t, ",\n      \"per_slice\": [");
        for (size_t s = 0; s < r->slices; s++) {
            mr_text_puts(t, s ? ", " : "");
            mr_text_puts(t, "{\"nmse\": ");
            mr_text_json_num(t, r->per_slice[s].nmse);
            mr_text_puts(t, ", \"psnr\": ");
            mr_text_json_num(t, r->per_slice[s].psnr);
            mr_text_puts(t, ", \"ssim\": ");
            mr_text_json_num(t, r->per_slice[s].ssim);
            mr_text_puts(t, "}");
        }
        mr_text_puts(t, "]}");
    }
    mr_text_puts(t, first ? "}\n}\n" : "\n  }\n}\n");
}

/* ================================================================ content hash */

/* XXH64 (seed 0) of n bytes: the marker's content hash. Not cryptographic: it detects a changed
 * input whose size and mtime look the same (copied back, touched), at memory speed, where SHA-256
 * (~275 MB/s here) would cost more than a zero-filled reconstruction of the same file. */
#define XP1 0x9E3779B185EBCA87ULL
#define XP2 0xC2B2AE3D27D4EB4FULL
#define XP3 0x165667B19E3779F9ULL
#define XP4 0x85EBCA77C2B2AE63ULL
#define XP5 0x27D4EB2F165667C5ULL

static uint64_t rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
static uint64_t rd64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8); /* little-endian hosts (x86-64, arm64) */
    return v;
}
static uint32_t rd32(const unsigned char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
static uint64_t xround(uint64_t acc, uint64_t in) { return rotl64(acc + in * XP2, 31) * XP1; }
static uint64_t xmerge(uint64_t h, uint64_t v) { return (h ^ xround(0, v)) * XP1 + XP4; }

static uint64_t xxmerge(uint64_t v1, uint64_t v2, uint64_t v3, uint64_t v4)
{
    uint64_t h = rotl64(v1, 1) + rotl64(v2, 7) + rotl64(v3, 12) + rotl64(v4, 18);
    return xmerge(xmerge(xmerge(xmerge(h, v1), v2), v3), v4);
}

/* The end of XXH64: h (the merged lanes, or XP5 under 32 bytes) + the total length, the last
 * (end - p) < 32 bytes, the avalanche. Shared by the one-shot and the streamed digest. */
static uint64_t xxh_finish(uint64_t h, uint64_t total, const unsigned char *p,
                           const unsigned char *end)
{
    h += total;
    for (; p + 8 <= end; p += 8) h = rotl64(h ^ xround(0, rd64(p)), 27) * XP1 + XP4;
    if (p + 4 <= end) {
        h = rotl64(h ^ ((uint64_t)rd32(p) * XP1), 23) * XP2 + XP3;
        p += 4;
    }
    for (; p < end; p++) h = rotl64(h ^ (*p * XP5), 11) * XP1;
    h ^= h >> 33;
    h *= XP2;
    h ^= h >> 29;
    h *= XP3;
    h ^= h >> 32;
    return h;
}

uint64_t mr_batch_xxh64(const void *data, size_t n);
uint64_t mr_batch_xxh64(const void *data, size_t n)
{
    const unsigned char *p = data, *end = p + n;
    uint64_t h;
    if (n >= 32) {
        uint64_t v1 = XP1 + XP2, v2 = XP2, v3 = 0, v4 = 0 - XP1;
        for (; p + 32 <= end; p += 32) {
            v1 = xround(v1, rd64(p));
            v2 = xround(v2, rd64(p + 8));
            v3 = xround(v3, rd64(p + 16));
            v4 = xround(v4, rd64(p + 24));
        }
        h = xxmerge(v1, v2, v3, v4);
    } else {
        h = XP5;
    }
    return xxh_finish(h, (uint64_t)n, p, end);
}

/* Streaming XXH64 (seed 0): the same value as mr_batch_xxh64 over the concatenated updates. Used
 * to hash a file through a small buffer with read(): on this VM mapping a 10.8 MB file cost more
 * in page faults (~1.2 ms) than the hashing itself (~1.0 ms). */
typedef struct {
    uint64_t v1, v2, v3, v4, total;
    unsigned char buf[32];
    size_t nbuf;
} mr_xxh64_state;

void mr_batch_xxh64_init(mr_xxh64_state *s);
void mr_batch_xxh64_update(mr_xxh64_state *s, const void *data, size_t n);
uint64_t mr_batch_xxh64_digest(const mr_xxh64_state *s);

void mr_batch_xxh64_init(mr_xxh64_state *s)
{
    memset(s, 0, sizeof *s);
    s->v1 = XP1 + XP2, s->v2 = XP2, s->v3 = 0, s->v4 = 0 - XP1;
}

static void xxh_block(mr_xxh64_state *s, const unsigned char *p)
{
    s->v1 = xround(s->v1, rd64(p));
    s->v2 = xround(s->v2, rd64(p + 8));
    s->v3 = xround(s->v3, rd64(p + 16));
    s->v4 = xround(s->v4, rd64(p + 24));
}

void mr_batch_xxh64_update(mr_xxh64_state *s, const void *data, size_t n)
{
    const unsigned char *p = data, *end = p + n;
    s->total += n;
    if (s->nbuf + n < 32) {
        memcpy(s->buf + s->nbuf, p, n);
        s->nbuf += n;
        return;
    }
    if (s->nbuf) {
        size_t k = 32 - s->nbuf;
        memcpy(s->buf + s->nbuf, p, k);
        xxh_block(s, s->buf);
        p += k;
        s->nbuf = 0;
    }
    for (; p + 32 <= end; p += 32) xxh_block(s, p);
    s->nbuf = (size_t)(end - p);
    memcpy(s->buf, p, s->nbuf);
}

uint64_t mr_batch_xxh64_digest(const mr_xxh64_state *s)
{
    const unsigned char *p = s->buf, *end = p + s->nbuf;
    uint64_t h;
    if (s->total >= 32) {
        h = xxmerge(s->v1, s->v2, s->v3, s->v4);
    } else {
        h = XP5;
    }
    return xxh_finish(h, s->total, p, end);
}

/* The content hash of a file as 16 hex digits (read() through a 256 KiB buffer, one pass). */
static mr_status content_hash(char hex[17], const char *path)
{
    int fd = open(path, O_RDONLY);
    struct stat sb;
    uint64_t h;
    if (fd < 0 || fstat(fd, &sb) != 0) {
        if (fd >= 0) close(fd);
        return mr_error_set(MR_ERR_INPUT, "%s: cannot read the input: %s", path, strerror(errno));
    }
    if (S_ISDIR(sb.st_mode)) { /* a DICOM folder: the hash of its files' names and hashes */
        mr_text lines = {0};
        file_stamp fs = {0, 0};
        close(fd);
        if (stamp_dir(&fs, &lines, path, "") != 0 || lines.failed) {
            mr_text_free(&lines);
            return mr_error_set(MR_ERR_INPUT, "%s: cannot read the folder's files", path);
        }
        h = mr_batch_xxh64(lines.len ? mr_text_str(&lines) : "", lines.len);
        mr_text_free(&lines);
        snprintf(hex, 17, "%016llx", (unsigned long long)h);
        return MR_OK;
    }
    {
        enum { CHUNK = 1 << 18 };
        unsigned char *buf = malloc(CHUNK);
        mr_xxh64_state xs;
        ssize_t k;
        if (!buf) {
            close(fd);
            return mr_error_set(MR_ERR_NOMEM, "%s: out of memory for hashing", path);
        }
        mr_batch_xxh64_init(&xs);
        while ((k = read(fd, buf, CHUNK)) > 0) mr_batch_xxh64_update(&xs, buf, (size_t)k);
        free(buf);
        if (k < 0) {
            int e = errno;
            close(fd);
            return mr_error_set(MR_ERR_INPUT, "%s: cannot read the input: %s", path, strerror(e));
        }
        h = mr_batch_xxh64_digest(&xs);
    }
    close(fd);
    snprintf(hex, 17, "%016llx", (unsigned long long)h);
    return MR_OK;
}

/* Hashing in a detached thread while the stages run (the file is in the page cache after either
 * read). The scan never waits for it: on a busy machine the thread can wait to be scheduled, before
 * or while hashing, for 40-485 ms (seen at load 9 on 2 cores: a 5 ms mean wait per 30 ms scan).
 * When the stages end before the thread has finished, the scan hashes the file itself (~1 ms for
 * 10 MB); a thread that has not started by then finds the job claimed and does nothing, one that is
 * hashing finishes and its result is dropped. */
typedef struct {
    char path[4200];
    char hex[17];
    mr_status st;
    char msg[600];
    pthread_mutex_t mu;
    int claimed; /* under mu: 1 once the thread has started hashing or the scan no longer needs it */
    int done;    /* under mu: the thread's hex, st and msg are final */
    int refs;    /* under mu: the thread and the scan; the last to let go frees the job */
} hash_job;

static void hash_job_release(hash_job *j)
{
    if (!j) return;
    pthread_mutex_lock(&j->mu);
    int left = --j->refs;
    pthread_mutex_unlock(&j->mu);
    if (left) return;
    pthread_mutex_destroy(&j->mu);
    free(j);
}

/* Take the work unless the other side has; 1 when taken. */
static int hash_job_claim(hash_job *j)
{
    pthread_mutex_lock(&j->mu);
    int mine = !j->claimed;
    j->claimed = 1;
    pthread_mutex_unlock(&j->mu);
    return mine;
}

static void *hash_thread(void *arg)
{
    hash_job *j = arg;
    if (hash_job_claim(j)) {
        j->st = content_hash(j->hex, j->path);
        if (j->st != MR_OK) snprintf(j->msg, sizeof j->msg, "%s", mr_error_message());
        pthread_mutex_lock(&j->mu);
        j->done = 1;
        pthread_mutex_unlock(&j->mu);
    }
    hash_job_release(j);
    return NULL;
}

/* Start hashing `path` in a detached thread; NULL when that is not possible (then the caller
 * hashes the file itself after the stages). */
static hash_job *hash_start(const char *path)
{
    hash_job *j = calloc(1, sizeof *j);
    pthread_attr_t attr;
    pthread_t th;
    if (!j) return NULL;
    snprintf(j->path, sizeof j->path, "%s", path);
    j->refs = 2;
    if (pthread_mutex_init(&j->mu, NULL) != 0) {
        free(j);
        return NULL;
    }
    int ok = pthread_attr_init(&attr) == 0;
    if (ok) {
        ok = pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED) == 0 &&
             pthread_create(&th, &attr, hash_thread, j) == 0;
        pthread_attr_destroy(&attr);
    }
    if (!ok) {
        pthread_mutex_destroy(&j->mu);
        free(j);
        return NULL;
    }
    return j;
}

/* The content hash of the scan's input after its stages: the thread's when it has finished, else
 * computed here (and a thread that has not started will not). */
static mr_status hash_finish(char hex[17], hash_job *j, const char *path)
{
    if (j) {
        pthread_mutex_lock(&j->mu);
        int done = j->done;
        j->claimed = 1;
        pthread_mutex_unlock(&j->mu);
        if (done) {
            if (j->st != MR_OK) return mr_error_set(j->st, "%s", j->msg);
            memcpy(hex, j->hex, 17);
            return MR_OK;
        }
    }
    return content_hash(hex, path);
}

/* ================================================================ one scan */

typedef struct {
    int32_t worker;
    int32_t index;
    int32_t status;       /* mr_status */
    int32_t skipped;      /* 1: marker matched (content hash), nothing redone */
    double wall, stages;  /* seconds: the whole scan here, and its stages */
    char message[960];
} scan_result;

/* Move the output set into place. */
static mr_status commit_set(const mr_pipeline *p, const scan_paths *sp, const char *tmp,
                            const char *id, const mr_text *marker)
{
    mr_status st;
    char path[8400];
    if (!p->flat) {
        /* the marker goes in first: the rename makes outputs and marker appear together */
        snprintf(path, sizeof path, "%s/" MARKER, tmp);
        if ((st = mr_text_write_file(path, marker)) != MR_OK) return st;
        if (mr_path_is_dir(sp->final)) {
            char old[4400];
            snprintf(old, sizeof old, "%s/.%s.old-%ld", p->out_dir, id, (long)getpid());
            remove_tree(old);
            if (rename(sp->final, old) != 0)
                return mr_error_set(MR_ERR_IO, "%s: cannot move the previous outputs aside: %s",
                                    sp->final, strerror(errno));
            if (rename(tmp, sp->final) != 0)
                return mr_error_set(MR_ERR_IO, "%s: cannot move the outputs into place: %s",
                                    sp->final, strerror(errno));
            remove_tree(old);
        } else if (rename(tmp, sp->final) != 0) {
            return mr_error_set(MR_ERR_IO, "%s: cannot move the outputs into place: %s", sp->final,
                                strerror(errno));
        }
        return MR_OK;
    }
    /* flat: no marker while files are replaced one by one; the marker last */
    unlink(sp->marker);
    DIR *d = opendir(tmp);
    struct dirent *e;
    if (!d) return mr_error_set(MR_ERR_IO, "%s: cannot list: %s", tmp, strerror(errno));
    st = MR_OK;
    while (st == MR_OK && (e = readdir(d))) {
        char dst[8400];
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(path, sizeof path, "%s/%s", tmp, e->d_name);
        snprintf(dst, sizeof dst, "%s/%s", sp->final, e->d_name);
        if (mr_path_is_dir(dst)) remove_tree(dst); /* a folder output (DICOM series) of a former run:
                                                      rename(2) does not replace a non-empty one */
        if (rename(path, dst) != 0)
            st = mr_error_set(MR_ERR_IO, "%s: cannot move into place: %s", dst, strerror(errno));
    }
    closedir(d);
    if (st == MR_OK) st = mr_text_write_file(sp->marker, marker);
    rmdir(tmp);
    return st;
}

static void write_failure(const scan_paths *sp, const char *id, const char *input, const char *why)
{
    mr_text t = {0};
    mr_text_printf(&t, "scan: %s\ninput: %s\nerror: %s\n", id, input, why);
    if (mr_text_write_file(sp->failed, &t) != MR_OK) mr_error_clear();
    mr_text_free(&t);
}

static void process_scan(scan_result *r, const mr_pipeline *p, size_t i, int force)
{
    scan_paths sp;
    char tmp[4400], sha[17] = "", file[4200];
    hash_job *hj = NULL;
    file_stamp fs = {0, 0};
    marker_info m;
    mr_scan scan;
    mr_status st = MR_OK;
    double t0 = now_seconds();
    memset(&scan, 0, sizeof scan);
    r->index = (int32_t)i;
    r->skipped = 0;
    r->stages = 0;
    paths_of(&sp, p, i);
    snprintf(tmp, sizeof tmp, "%s/.%s.partial-%ld", p->out_dir, p->ids[i], (long)getpid());
    input_file(file, sizeof file, p->inputs[i]);
    if (stamp_file(&fs, p->inputs[i]) != 0)
        st = mr_error_set(MR_ERR_INPUT, "%s: input file not found: %s", p->inputs[i],
                          strerror(errno));
    double t_hash = now_seconds();
    if (st == MR_OK && !force) {
        marker_read(&m, p, sp.marker);
        /* the parent skipped the scans whose size and mtime match; when only those changed,
         * compare the content */
        int same = 0;
        if (m.valid) {
            st = content_hash(sha, file);
            same = st == MR_OK && !strcmp(m.hash, sha);
        }
        t_hash = now_seconds();
        if (same && (m.size != fs.size || m.mtime_ns != fs.mtime_ns)) {
            /* same bytes, new mtime (copied, touched): record the new stamp, skip */
            char old[32], now[32];
            snprintf(old, sizeof old, "%lld", m.mtime_ns);
            snprintf(now, sizeof now, "%lld", fs.mtime_ns);
            mr_text t = {0};
            FILE *f = fopen(sp.marker, "r");
            if (f) {
                char line[8192];
                while (fgets(line, sizeof line, f)) {
                    if (!strncmp(line, "  mtime_ns: ", 12)) mr_text_printf(&t, "  mtime_ns: %s\n", now);
                    else mr_text_puts(&t, line);
                }
                fclose(f);
                if (mr_text_write_file(sp.marker, &t) != MR_OK) mr_error_clear();
            }
            mr_text_free(&t);
        }
        marker_free(&m);
        if (same) {
            r->skipped = 1;
            r->status = MR_OK;
            r->wall = now_seconds() - t0;
            r->message[0] = '\0';
            return;
        }
    }
    if (st == MR_OK) {
        remove_tree(tmp);
        if (mkdir(tmp, 0777) != 0)
            st = mr_error_set(MR_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    }
    if (st == MR_OK && !sha[0]) hj = hash_start(file); /* sha is set when the skip check hashed */
    double t_prep = now_seconds();
    if (st == MR_OK) st = mr_pipeline_scan_run(p, i, tmp, &scan);
    double t_run = now_seconds();
    if (st == MR_OK && !sha[0]) st = hash_finish(sha, hj, file);
    else if (hj) (void)hash_job_claim(hj); /* a failed scan: the thread need not hash */
    hash_job_release(hj);
    if (st == MR_OK) {
        mr_text mt = {0}, mk = {0};
        char path[4600];
        metrics_compose(&mt, &scan);
        snprintf(path, sizeof path, "%s/metrics.json", tmp);
        st = mr_text_write_file(path, &mt);
        for (size_t k = 0; k < p->n_stages; k++) r->stages += scan.stage_seconds[k];
        if (st == MR_OK) {
            marker_compose(&mk, p, &scan, &fs, sha, now_seconds() - t0);
            st = commit_set(p, &sp, tmp, p->ids[i], &mk);
        }
        mr_text_free(&mt);
        mr_text_free(&mk);
    }
    mr_scan_clear(&scan);
    r->status = st;
    r->wall = now_seconds() - t0;
    MR_DEBUG("%s: skip check %.3f s, work dir %.3f s, stages (hash alongside) %.3f s, commit %.3f s",
             p->ids[i], t_hash - t0, t_prep - t_hash, t_run - t_prep, t0 + r->wall - t_run);
    if (st != MR_OK) {
        const char *msg = mr_error_message();
        snprintf(r->message, sizeof r->message, "%s", *msg ? msg : mr_status_name(st));
        remove_tree(tmp);
        write_failure(&sp, p->ids[i], p->inputs[i], r->message);
    } else {
        r->message[0] = '\0';
        unlink(sp.failed);
    }
    mr_error_clear();
}

/* ================================================================ log */

static FILE *g_log;
static char g_log_prefix[64];

static void log_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void log_line(const char *fmt, ...)
{
    char buf[4096], stamp[32];
    time_t t = time(NULL);
    struct tm tm;
    va_list ap;
    if (!g_log) return;
    gmtime_r(&t, &tm);
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", &tm);
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    /* one write per line: lines from several processes do not interleave */
    char line[4300];
    int n = snprintf(line, sizeof line, "%s %s%s\n", stamp, g_log_prefix, buf);
    if (n > (int)sizeof line - 1) n = (int)sizeof line - 1;
    if (write(fileno(g_log), line, (size_t)n) < 0) { /* a log write failure is not fatal */
    }
}

static void log_sink(mr_log_level level, const char *line, void *user)
{
    static const char *names[] = {"debug", "info", "warning", "error"};
    int also_stderr = user != NULL;
    log_line("%s: %s", names[level], line);
    if (also_stderr) fprintf(stderr, "mrpipe: %s: %s\n", names[level], line);
}

/* ================================================================ workers */

/* Scans sent to a worker at once: while it processes one, the next waits in its pipe, so it never
 * waits for the parent to be scheduled between scans (on a busy machine that hand-off cost ~2 ms
 * per scan, ~3 % of a small scan; bench/batch_throughput.sh). */
#ifndef WORKER_QUEUE
#define WORKER_QUEUE 2
#endif

typedef struct {
    pid_t pid;
    int cmd_fd;                /* parent -> worker: scan indices */
    long queue[WORKER_QUEUE];  /* scans sent, in order: queue[0] is being processed */
    int n_queued;              /* 0: idle */
} worker;

static void worker_main(const mr_pipeline *p, int id, int cmd_fd, int res_fd, int threads, int force)
{
    int32_t idx;
    snprintf(g_log_prefix, sizeof g_log_prefix, "[worker %d] ", id);
    mr_log_set_sink(log_sink, NULL, MR_LOG_INFO);
#ifdef _OPENMP
    omp_set_num_threads(threads);
#endif
    (void)threads;
    /* fault injection for tests/test_batch_pool.c: the worker dies (SIGKILL) as it starts this
     * scan, with the next scan already queued in its pipe */
    const char *kill_at = getenv("MRPIPE_TEST_KILL_WORKER_AT");
    double t_free = now_seconds(); /* since then the worker has had nothing to do */
    for (;;) {
        ssize_t n = read(cmd_fd, &idx, sizeof idx);
        if (n != (ssize_t)sizeof idx || idx < 0) break;
        /* idle: the wait for this scan after the previous one (or the worker's start); the
         * hand-off cost of the pool, measured by bench/batch_throughput.sh */
        log_line("%s: start (%s), idle %.6f s", p->ids[idx], p->inputs[idx], now_seconds() - t_free);
        if (kill_at && !strcmp(kill_at, p->ids[idx])) raise(SIGKILL);
        scan_result r;
        memset(&r, 0, sizeof r);
        r.worker = id;
        process_scan(&r, p, (size_t)idx, force);
        if (write(res_fd, &r, sizeof r) != (ssize_t)sizeof r) break;
        t_free = now_seconds();
    }
    mr_fft_save_wisdom(); /* once per worker, not per scan */
    _exit(0);
}

static mr_status spawn(worker *w, const mr_pipeline *p, int id, int res_pipe[2], int threads,
                       int force, worker *all, int n_all)
{
    int cmd[2];
    if (pipe(cmd) != 0) return mr_error_set(MR_ERR_IO, "cannot create a pipe: %s", strerror(errno));
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        close(cmd[0]);
        close(cmd[1]);
        return mr_error_set(MR_ERR_IO, "cannot start a worker process: %s", strerror(errno));
    }
    if (pid == 0) {
        close(cmd[1]);
        close(res_pipe[0]);
        for (int k = 0; k < n_all; k++)
            if (all[k].pid > 0 && all[k].cmd_fd >= 0) close(all[k].cmd_fd);
        signal(SIGPIPE, SIG_DFL);
        worker_main(p, id, cmd[0], res_pipe[1], threads, force);
    }
    close(cmd[0]);
    w->pid = pid;
    w->cmd_fd = cmd[1];
    w->n_queued = 0;
    return MR_OK;
}

/* ================================================================ progress */

typedef struct {
    size_t total, done, failed, skipped, todo, processed;
    double t0, last_print;
    int tty, enabled;
} progress;

static void fmt_time(char *b, size_t n, double s)
{
    if (!isfinite(s) || s < 0) snprintf(b, n, "--:--");
    else if (s >= 3600) snprintf(b, n, "%d:%02d:%02d", (int)(s / 3600), (int)fmod(s / 60, 60), (int)fmod(s, 60));
    else snprintf(b, n, "%d:%02d", (int)(s / 60), (int)fmod(s, 60));
}

static void progress_print(progress *pg, int final)
{
    if (!pg->enabled) return;
    double el = now_seconds() - pg->t0;
    if (!final && !pg->tty && (el - pg->last_print < 10 || pg->done == pg->total)) return;
    pg->last_print = el;
    double rate = el > 0 ? (double)pg->processed / el : 0;
    double eta = rate > 0 ? (double)(pg->todo - pg->processed) / rate : NAN;
    char etab[32], elb[32], bar[32];
    int width = 24, fill = pg->total ? (int)(width * (double)pg->done / (double)pg->total) : width;
    for (int k = 0; k < width; k++) bar[k] = k < fill ? '#' : '.';
    bar[width] = '\0';
    fmt_time(etab, sizeof etab, final ? 0 : eta);
    fmt_time(elb, sizeof elb, el);
    fprintf(stderr, "%s[%s] %zu/%zu scans, %zu failed, %zu skipped, %.2f scans/s, %s %s%s",
            pg->tty ? "\r" : "", bar, pg->done, pg->total, pg->failed, pg->skipped, rate,
            final ? "elapsed" : "ETA", final ? elb : etab, pg->tty ? (final ? "\n" : "\033[K") : "\n");
    fflush(stderr);
}

/* ================================================================ summary */

typedef struct {
    char label[64];
    size_t n;
    double sum[3], sumsq[3]; /* nmse, psnr, ssim */
} agg;

static void std_of(double *mean, double *sd, const agg *a, int k)
{
    *mean = a->n ? a->sum[k] / (double)a->n : NAN;
    /* sample variance (ddof 1), as fastMRI's evaluate.py (runstats.Statistics.variance) */
    if (a->n < 2) {
        *sd = NAN;
        return;
    }
    double v = (a->sumsq[k] - (double)a->n * *mean * *mean) / (double)(a->n - 1);
    *sd = sqrt(v > 0 ? v : 0);
}

static void html_esc(mr_text *t, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '&': mr_text_puts(t, "&amp;"); break;
        case '<': mr_text_puts(t, "&lt;"); break;
        case '>': mr_text_puts(t, "&gt;"); break;
        case '"': mr_text_puts(t, "&quot;"); break;
        default: mr_text_append(t, s, 1);
        }
    }
}

static void csv_field(mr_text *t, const char *s)
{
    if (strpbrk(s, ",\"\n\r")) {
        mr_text_puts(t, "\"");
        for (; *s; s++) {
            if (*s == '"') mr_text_puts(t, "\"\"");
            else mr_text_append(t, s, 1);
        }
        mr_text_puts(t, "\"");
    } else {
        mr_text_puts(t, s);
    }
}

static void csv_num(mr_text *t, double v)
{
    if (isfinite(v)) mr_text_printf(t, "%.9g", v);
}

/* Status of every listed scan, read from disk; writes the summary files with `base` (e.g.
 * "summary" -> summary.json, .csv, .html). */
static mr_status write_summary(const mr_pipeline *p, const size_t *idx, size_t n, const char *base,
                               mr_batch_counts *counts, double wall, int jobs)
{
    mr_text js = {0}, csv = {0}, html = {0};
    agg aggs[MR_SCAN_MAX_IMAGES];
    size_t n_agg = 0, ok = 0, failed = 0, missing = 0;
    double sum_total = 0, sum_stages = 0;
    size_t n_timed = 0;
    mr_status st = MR_OK;
    char (*status)[16] = mr_calloc(n ? n : 1, sizeof *status);
    marker_info *mk = mr_calloc(n ? n : 1, sizeof *mk);
    char **reasons = mr_calloc(n ? n : 1, sizeof *reasons);
    if (!status || !mk || !reasons) {
        free(status);
        free(mk);
        free(reasons);
        return MR_ERR_NOMEM;
    }
    for (size_t k = 0; k < n; k++) {
        size_t i = idx[k];
        scan_paths sp;
        file_stamp fs;
        paths_of(&sp, p, i);
        marker_read(&mk[k], p, sp.marker);
        int fresh = mk[k].valid && stamp_file(&fs, p->inputs[i]) == 0 && fs.size == mk[k].size &&
                    fs.mtime_ns == mk[k].mtime_ns;
        if (fresh) {
            strcpy(status[k], "ok");
            ok++;
            sum_total += mk[k].seconds_total;
            sum_stages += mk[k].seconds_stages;
            n_timed++;
            const mr_cfg_node *mets = mr_cfg_child(mk[k].doc->root, "metrics");
            for (size_t j = 0; mets && mets->kind == MR_CFG_MAP && j < mets->n; j++) {
                size_t a = 0;
                while (a < n_agg && strcmp(aggs[a].label, mets->keys[j])) a++;
                if (a == n_agg) {
                    if (n_agg == MR_SCAN_MAX_IMAGES) continue;
                    memset(&aggs[a], 0, sizeof aggs[a]);
                    snprintf(aggs[a].label, sizeof aggs[a].label, "%s", mets->keys[j]);
                    n_agg++;
                }
                static const char *names[3] = {"nmse", "psnr", "ssim"};
                for (int q = 0; q < 3; q++) {
                    double v = atof(node_text(mets->items[j], names[q]));
                    aggs[a].sum[q] += v;
                    aggs[a].sumsq[q] += v * v;
                }
                aggs[a].n++;
            }
        } else {
            FILE *f = fopen(sp.failed, "r");
            if (f) {
                char line[4096];
                strcpy(status[k], "failed");
                failed++;
                while (fgets(line, sizeof line, f))
                    if (!strncmp(line, "error: ", 7)) {
                        line[strcspn(line, "\n")] = '\0';
                        reasons[k] = strdup(line + 7);
                    }
                fclose(f);
            } else {
                strcpy(status[k], "missing");
                missing++;
            }
        }
    }
    /* JSON */
    mr_text_printf(&js, "{\n  \"mrpipe\": \"%s\",\n  \"config_sha256\": \"%s\",\n  \"output\": ",
                   MR_VERSION_STRING, p->config_hash);
    mr_text_json_str(&js, p->out_dir);
    mr_text_printf(&js, ",\n  \"counts\": {\"total\": %zu, \"ok\": %zu, \"failed\": %zu, "
                   "\"missing\": %zu},\n", n, ok, failed, missing);
    mr_text_printf(&js, "  \"timing\": {\"wall_seconds\": ");
    mr_text_json_num(&js, wall);
    mr_text_printf(&js, ", \"jobs\": %d, \"scan_seconds_mean\": ", jobs);
    mr_text_json_num(&js, n_timed ? sum_total / (double)n_timed : NAN);
    mr_text_puts(&js, ", \"stage_seconds_mean\": ");
    mr_text_json_num(&js, n_timed ? sum_stages / (double)n_timed : NAN);
    mr_text_puts(&js, ", \"overhead_fraction\": ");
    mr_text_json_num(&js, sum_total > 0 ? (sum_total - sum_stages) / sum_total : NAN);
    mr_text_puts(&js, "},\n  \"aggregate\": {");
    for (size_t a = 0; a < n_agg; a++) {
        static const char *names[3] = {"nmse", "psnr", "ssim"};
        mr_text_printf(&js, "%s\n    ", a ? "," : "");
        mr_text_json_str(&js, aggs[a].label);
        mr_text_printf(&js, ": {\"volumes\": %zu", aggs[a].n);
        for (int q = 0; q < 3; q++) {
            double mean, sd;
            std_of(&mean, &sd, &aggs[a], q);
            mr_text_printf(&js, ", \"%s\": {\"mean\": ", names[q]);
            mr_text_json_num(&js, mean);
            mr_text_puts(&js, ", \"std\": ");
            mr_text_json_num(&js, sd);
            mr_text_puts(&js, ", \"two_std\": ");
            mr_text_json_num(&js, 2 * sd);
            mr_text_puts(&js, "}");
        }
        mr_text_puts(&js, "}");
    }
    mr_text_puts(&js, n_agg ? "\n  },\n  \"scans\": [" : "},\n  \"scans\": [");
    mr_text_puts(&csv, "scan,input,status,image,nmse,psnr,ssim,seconds,error\n");
    for (size_t k = 0; k < n; k++) {
        size_t i = idx[k];
        mr_text_printf(&js, "%s\n    {\"scan\": ", k ? "," : "");
        mr_text_json_str(&js, p->ids[i]);
        mr_text_puts(&js, ", \"input\": ");
        mr_text_json_str(&js, p->inputs[i]);
        mr_text_printf(&js, ", \"status\": \"%s\"", status[k]);
        if (!strcmp(status[k], "ok")) {
            mr_text_puts(&js, ", \"seconds\": ");
            mr_text_json_num(&js, mk[k].seconds_total);
            /* the stages' own times (the marker's seconds: map without total and stages); the
             * overhead of a scan is seconds - stage_seconds_total (bench/batch_throughput.sh) */
            mr_text_puts(&js, ", \"stage_seconds_total\": ");
            mr_text_json_num(&js, mk[k].seconds_stages);
            mr_text_puts(&js, ", \"stage_seconds\": {");
            const mr_cfg_node *secs = mr_cfg_child(mk[k].doc->root, "seconds");
            int first_sec = 1;
            for (size_t j = 0; secs && secs->kind == MR_CFG_MAP && j < secs->n; j++) {
                const mr_cfg_node *v = secs->items[j];
                if (!strcmp(secs->keys[j], "total") || !strcmp(secs->keys[j], "stages") ||
                    v->kind != MR_CFG_SCALAR)
                    continue;
                mr_text_puts(&js, first_sec ? "" : ", ");
                first_sec = 0;
                mr_text_json_str(&js, secs->keys[j]);
                mr_text_puts(&js, ": ");
                mr_text_json_num(&js, atof(v->value));
            }
            mr_text_puts(&js, "}");
            mr_text_puts(&js, ", \"input_xxh64\": ");
            mr_text_json_str(&js, mk[k].hash);
            mr_text_puts(&js, ", \"metrics\": {");
            const mr_cfg_node *mets = mr_cfg_child(mk[k].doc->root, "metrics");
            for (size_t j = 0; mets && mets->kind == MR_CFG_MAP && j < mets->n; j++) {
                double v[3];
                static const char *names[3] = {"nmse", "psnr", "ssim"};
                mr_text_puts(&js, j ? ", " : "");
                mr_text_json_str(&js, mets->keys[j]);
                mr_text_puts(&js, ": {");
                for (int q = 0; q < 3; q++) {
                    v[q] = atof(node_text(mets->items[j], names[q]));
                    mr_text_printf(&js, "%s\"%s\": ", q ? ", " : "", names[q]);
                    mr_text_json_num(&js, v[q]);
                }
                mr_text_puts(&js, "}");
                csv_field(&csv, p->ids[i]);
                mr_text_puts(&csv, ",");
                csv_field(&csv, p->inputs[i]);
                mr_text_puts(&csv, ",ok,");
                csv_field(&csv, mets->keys[j]);
                for (int q = 0; q < 3; q++) {
                    mr_text_puts(&csv, ",");
                    csv_num(&csv, v[q]);
                }
                mr_text_printf(&csv, ",%.3f,\n", mk[k].seconds_total);
            }
            if (!mets || !mets->n) {
                csv_field(&csv, p->ids[i]);
                mr_text_puts(&csv, ",");
                csv_field(&csv, p->inputs[i]);
                mr_text_printf(&csv, ",ok,,,,,%.3f,\n", mk[k].seconds_total);
            }
            mr_text_puts(&js, "}");
        } else {
            mr_text_puts(&js, ", \"error\": ");
            mr_text_json_str(&js, reasons[k] ? reasons[k] : (strcmp(status[k], "missing") ? "" :
                                                             "not processed (yet)"));
            csv_field(&csv, p->ids[i]);
            mr_text_puts(&csv, ",");
            csv_field(&csv, p->inputs[i]);
            mr_text_printf(&csv, ",%s,,,,,,", status[k]);
            csv_field(&csv, reasons[k] ? reasons[k] : "");
            mr_text_puts(&csv, "\n");
        }
        mr_text_puts(&js, "}");
    }
    mr_text_puts(&js, n ? "\n  ]\n}\n" : "]\n}\n");
    /* aggregate rows (fastMRI: mean +/- 2 std over volumes) */
    for (size_t a = 0; a < n_agg; a++) {
        double mean[3], sd[3];
        for (int q = 0; q < 3; q++) std_of(&mean[q], &sd[q], &aggs[a], q);
        mr_text_puts(&csv, "ALL,,mean,");
        csv_field(&csv, aggs[a].label);
        for (int q = 0; q < 3; q++) {
            mr_text_puts(&csv, ",");
            csv_num(&csv, mean[q]);
        }
        mr_text_puts(&csv, ",,\nALL,,two_std,");
        csv_field(&csv, aggs[a].label);
        for (int q = 0; q < 3; q++) {
            mr_text_puts(&csv, ",");
            csv_num(&csv, 2 * sd[q]);
        }
        mr_text_puts(&csv, ",,\n");
    }
    /* HTML: one self-contained page */
    mr_text_puts(&html, "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>mrpipe batch "
                        "summary</title>\n<style>body{font-family:sans-serif;margin:2em}table{"
                        "border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:"
                        "3px 8px;text-align:right}td.l,th.l{text-align:left}.failed{background:"
                        "#fdd}.missing{background:#ffd}</style></head><body>\n");
    mr_text_puts(&html, "<h1>mrpipe batch summary</h1>\n<p>Output ");
    html_esc(&html, p->out_dir);
    mr_text_printf(&html, " &middot; mrpipe %s &middot; config %.16s&hellip; &middot; %zu scans: "
                   "%zu ok, %zu failed, %zu missing</p>\n", MR_VERSION_STRING, p->config_hash, n,
                   ok, failed, missing);
    mr_text_puts(&html, "<h2>Aggregate (mean &plusmn; 2 std over volumes)</h2>\n<table><tr><th "
                        "class=l>image</th><th>volumes</th><th>NMSE</th><th>PSNR (dB)</th><th>SSIM"
                        "</th></tr>\n");
    for (size_t a = 0; a < n_agg; a++) {
        mr_text_puts(&html, "<tr><td class=l>");
        html_esc(&html, aggs[a].label);
        mr_text_printf(&html, "</td><td>%zu</td>", aggs[a].n);
        for (int q = 0; q < 3; q++) {
            double mean, sd;
            std_of(&mean, &sd, &aggs[a], q);
            if (isfinite(sd)) mr_text_printf(&html, "<td>%.4g &plusmn; %.2g</td>", mean, 2 * sd);
            else mr_text_printf(&html, "<td>%.4g</td>", mean);
        }
        mr_text_puts(&html, "</tr>\n");
    }
    mr_text_puts(&html, "</table>\n<h2>Scans</h2>\n<table><tr><th class=l>scan</th><th class=l>"
                        "status</th><th class=l>image</th><th>NMSE</th><th>PSNR (dB)</th><th>SSIM"
                        "</th><th>seconds</th><th class=l>error</th></tr>\n");
    for (size_t k = 0; k < n; k++) {
        size_t i = idx[k];
        const mr_cfg_node *mets =
            !strcmp(status[k], "ok") ? mr_cfg_child(mk[k].doc->root, "metrics") : NULL;
        size_t rows = mets && mets->kind == MR_CFG_MAP && mets->n ? mets->n : 1;
        for (size_t j = 0; j < rows; j++) {
            mr_text_printf(&html, "<tr class=%s><td class=l>", status[k]);
            html_esc(&html, p->ids[i]);
            mr_text_printf(&html, "</td><td class=l>%s</td><td class=l>", status[k]);
            if (mets && mets->n) {
                html_esc(&html, mets->keys[j]);
                mr_text_puts(&html, "</td>");
                static const char *names[3] = {"nmse", "psnr", "ssim"};
                for (int q = 0; q < 3; q++)
                    mr_text_printf(&html, "<td>%.4g</td>", atof(node_text(mets->items[j], names[q])));
                mr_text_printf(&html, "<td>%.2f</td><td></td></tr>\n", mk[k].seconds_total);
            } else {
                mr_text_puts(&html, "</td><td></td><td></td><td></td><td></td><td class=l>");
                html_esc(&html, reasons[k] ? reasons[k] : "");
                mr_text_puts(&html, "</td></tr>\n");
            }
        }
    }
    mr_text_puts(&html, "</table>\n</body></html>\n");
    {
        char path[4400];
        snprintf(path, sizeof path, "%s/%s.json", p->out_dir, base);
        st = mr_text_write_file(path, &js);
        snprintf(path, sizeof path, "%s/%s.csv", p->out_dir, base);
        if (st == MR_OK) st = mr_text_write_file(path, &csv);
        snprintf(path, sizeof path, "%s/%s.html", p->out_dir, base);
        if (st == MR_OK) st = mr_text_write_file(path, &html);
    }
    counts->total = n;
    counts->done = ok;
    counts->failed = failed;
    counts->missing = missing;
    for (size_t k = 0; k < n; k++) {
        marker_free(&mk[k]);
        free(reasons[k]);
    }
    free(mk);
    free(reasons);
    free(status);
    mr_text_free(&js);
    mr_text_free(&csv);
    mr_text_free(&html);
    return st;
}

/* ================================================================ the batch */

size_t mr_batch_shard_count(size_t n_inputs, long shard_i, long shard_n)
{
    if (shard_n <= 0) return n_inputs;
    size_t c = 0;
    for (size_t i = 0; i < n_inputs; i++)
        if ((long)(i % (size_t)shard_n) == shard_i) c++;
    return c;
}

/* Remove what killed runs of the selected scans left: OUT/.ID.partial-*, OUT/.ID.old-*; and, for
 * whole runs, temporaries of the top-level files. */
static void clean_stale(const mr_pipeline *p, const char *selected, int whole)
{
    DIR *d = opendir(p->out_dir);
    struct dirent *e;
    if (!d) return;
    while ((e = readdir(d))) {
        const char *name = e->d_name;
        char path[4400];
        if (name[0] != '.' || !strcmp(name, ".") || !strcmp(name, "..")) continue;
        const char *cut = strstr(name, ".partial-");
        if (!cut) cut = strstr(name, ".old-");
        if (!cut) continue;
        size_t len = (size_t)(cut - name - 1);
        int mine = 0;
        for (size_t i = 0; i < p->n_inputs && !mine; i++)
            if (selected[i] && strlen(p->ids[i]) == len && !strncmp(name + 1, p->ids[i], len))
                mine = 1;
        if (!mine && whole) mine = !strncmp(name, ".summary.", 9) || !strncmp(name, ".config.", 8) ||
                                   !strncmp(name, ".versions.", 10) || !strncmp(name, ".failed.", 8);
        if (!mine) continue;
        snprintf(path, sizeof path, "%s/%s", p->out_dir, name);
        remove_tree(path);
    }
    closedir(d);
}

static mr_status write_top_level(const mr_pipeline *p)
{
    char path[4400];
    mr_text v = {0};
    char *buf = NULL;
    size_t len = 0;
    mr_status st;
    snprintf(path, sizeof path, "%s/config.resolved.yaml", p->out_dir);
    if ((st = mr_text_write_file(path, &p->resolved)) != MR_OK) return st;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return mr_error_set(MR_ERR_NOMEM, "out of memory");
    mr_print_versions(f);
    fclose(f);
    mr_text_append(&v, buf, len);
    free(buf);
    snprintf(path, sizeof path, "%s/versions.txt", p->out_dir);
    st = mr_text_write_file(path, &v);
    mr_text_free(&v);
    return st;
}

/* The parent's view of the worker pool. */
typedef struct {
    const mr_pipeline *p;
    const mr_batch_options *o;
    worker *workers;
    int jobs;
    const size_t *todo;
    size_t n_todo, next, finished;
    size_t *requeued, n_requeued; /* sent to a worker that died before starting them */
    int next_id, threads;
    int *res_pipe;
    progress *pg;
    mr_batch_counts *counts;
} pool;

static size_t pool_left(const pool *pl) { return pl->n_requeued + (pl->n_todo - pl->next); }

/* Send worker w scans until it holds `depth` (at most WORKER_QUEUE). A scan is queued behind
 * another only while at least `jobs` scans are left, so the last ones go to idle workers instead
 * of waiting behind a long scan. */
static void pool_assign(pool *pl, int w, int depth)
{
    worker *wk = &pl->workers[w];
    while (wk->pid > 0 && wk->n_queued < depth && pool_left(pl) > 0) {
        if (wk->n_queued > 0 && pool_left(pl) < (size_t)pl->jobs) return;
        int from_requeue = pl->n_requeued > 0;
        size_t i = from_requeue ? pl->requeued[pl->n_requeued - 1] : pl->todo[pl->next];
        int32_t idx = (int32_t)i;
        if (write(wk->cmd_fd, &idx, sizeof idx) != (ssize_t)sizeof idx)
            return; /* dead: waitpid sees it */
        if (from_requeue) pl->n_requeued--;
        else pl->next++;
        wk->queue[wk->n_queued++] = (long)i;
    }
}

static void pool_record_failure(pool *pl, size_t i, const char *why)
{
    progress *pg = pl->pg;
    if (pg->tty && pg->enabled) fprintf(stderr, "\r\033[K");
    fprintf(stderr, "mrpipe: error: %s: %s\n", pl->p->ids[i], why);
    log_line("%s: FAILED: %s", pl->p->ids[i], why);
    pg->failed++;
    pl->counts->failed++;
}

static void pool_read_result(pool *pl)
{
    scan_result r;
    if (read(pl->res_pipe[0], &r, sizeof r) != (ssize_t)sizeof r) return;
    int w = -1;
    for (int k = 0; k < pl->jobs; k++)
        if (pl->workers[k].n_queued > 0 && pl->workers[k].queue[0] == r.index) w = k;
    pl->finished++;
    if (r.status != MR_OK) {
        char why[1100];
        snprintf(why, sizeof why, "%s (after %.2f s)", r.message, r.wall);
        pool_record_failure(pl, (size_t)r.index, why);
    } else if (r.skipped) {
        pl->pg->skipped++;
        pl->counts->skipped++;
        log_line("%s: skipped (same input bytes)", pl->p->ids[r.index]);
    } else {
        pl->counts->done++;
        log_line("%s: done in %.4f s (stages %.4f s)", pl->p->ids[r.index], r.wall, r.stages);
    }
    pl->pg->done++;
    pl->pg->processed++;
    if (w >= 0) {
        worker *wk = &pl->workers[w];
        for (int q = 1; q < wk->n_queued; q++) wk->queue[q - 1] = wk->queue[q];
        wk->n_queued--;
        pool_assign(pl, w, WORKER_QUEUE);
    }
    progress_print(pl->pg, 0);
}

/* Worker k died: the scan it was processing failed (a crash), the scans queued behind it go back
 * to the pool; start a replacement when work remains. */
static mr_status pool_worker_died(pool *pl, int k, int wstatus)
{
    worker *wk = &pl->workers[k];
    close(wk->cmd_fd);
    wk->cmd_fd = -1;
    wk->pid = 0;
    for (int q = wk->n_queued - 1; q >= 1; q--) pl->requeued[pl->n_requeued++] = (size_t)wk->queue[q];
    if (wk->n_queued > 0) {
        size_t i = (size_t)wk->queue[0];
        char why[256];
        scan_paths sp;
        if (WIFSIGNALED(wstatus))
            snprintf(why, sizeof why, "the worker process died (signal %d) while processing this "
                     "scan", WTERMSIG(wstatus));
        else
            snprintf(why, sizeof why, "the worker process exited (status %d) while processing "
                     "this scan", WEXITSTATUS(wstatus));
        paths_of(&sp, pl->p, i);
        write_failure(&sp, pl->p->ids[i], pl->p->inputs[i], why);
        pool_record_failure(pl, i, why);
        pl->finished++;
        pl->pg->done++;
        pl->pg->processed++;
    }
    wk->n_queued = 0;
    if (pool_left(pl) > 0) {
        mr_status st = spawn(wk, pl->p, pl->next_id++, pl->res_pipe, pl->threads, pl->o->force,
                             pl->workers, pl->jobs);
        if (st != MR_OK) return st;
        pool_assign(pl, k, WORKER_QUEUE);
    }
    return MR_OK;
}

mr_status mr_batch_run(const mr_pipeline *p, const mr_batch_options *o, mr_batch_counts *counts)
{
    mr_status st;
    size_t *sel = NULL, n_sel = 0, *todo = NULL, n_todo = 0;
    char *selected = NULL;
    char logpath[4400], base[64];
    worker *workers = NULL;
    size_t *requeued = NULL;
    int res_pipe[2] = {-1, -1};
    int whole = o->shard_n <= 0 && !o->only_id;
    int jobs = o->jobs > 0 ? o->jobs : 1;
    double t0 = now_seconds();
    progress pg;
    memset(counts, 0, sizeof *counts);
    memset(&pg, 0, sizeof pg);
    if ((st = make_dirs(p->out_dir)) != MR_OK) return st;
    sel = mr_calloc(p->n_inputs, sizeof *sel);
    todo = mr_calloc(p->n_inputs, sizeof *todo);
    selected = mr_calloc(p->n_inputs, 1);
    if (!sel || !todo || !selected) {
        st = MR_ERR_NOMEM;
        goto done;
    }
    for (size_t i = 0; i < p->n_inputs; i++) {
        if (o->shard_n > 0 && (long)(i % (size_t)o->shard_n) != o->shard_i) continue;
        if (o->only_id && strcmp(o->only_id, p->ids[i]) != 0) continue;
        sel[n_sel++] = i;
        selected[i] = 1;
    }
    if (o->only_id && n_sel == 0) {
        st = mr_error_set(MR_ERR_USAGE, "--scan %s: no input has this name (mrpipe batch CONFIG "
                          "--list shows them)", o->only_id);
        goto done;
    }
    if (o->gather_only) {
        for (size_t i = 0; i < p->n_inputs; i++) sel[i] = i;
        n_sel = p->n_inputs;
        if ((st = write_top_level(p)) == MR_OK)
            st = write_summary(p, sel, n_sel, "summary", counts, NAN, jobs);
        goto done;
    }
    snprintf(logpath, sizeof logpath, "%s/mrpipe.log", p->out_dir);
    g_log = fopen(logpath, "a");
    if (!g_log) {
        st = mr_error_set(MR_ERR_IO, "%s: cannot write the log: %s", logpath, strerror(errno));
        goto done;
    }
    g_log_prefix[0] = '\0';
    {
        mr_text cmd = {0};
        for (int k = 0; k < o->argc; k++) mr_text_printf(&cmd, "%s%s", k ? " " : "", o->argv[k]);
        log_line("start: mrpipe %s, %s; config %s; %zu of %zu scan(s); jobs %d; threads %d",
                 MR_VERSION_STRING, mr_text_str(&cmd), p->config_hash, n_sel, p->n_inputs, jobs,
                 o->threads);
        mr_text_free(&cmd);
    }
    clean_stale(p, selected, whole);
    if (whole && (st = write_top_level(p)) != MR_OK) goto done;
    /* cheap skip: the marker matches and the input has the same size and mtime */
    for (size_t k = 0; k < n_sel; k++) {
        size_t i = sel[k];
        scan_paths sp;
        marker_info m;
        file_stamp fs;
        paths_of(&sp, p, i);
        marker_read(&m, p, sp.marker);
        int skip = !o->force && m.valid && stamp_file(&fs, p->inputs[i]) == 0 &&
                   fs.size == m.size && fs.mtime_ns == m.mtime_ns;
        marker_free(&m);
        if (skip) {
            counts->skipped++;
            log_line("%s: skipped (complete: marker matches)", p->ids[i]);
        } else {
            todo[n_todo++] = i;
        }
    }
    pg.total = n_sel;
    pg.done = counts->skipped;
    pg.skipped = counts->skipped;
    pg.todo = n_todo;
    pg.t0 = now_seconds();
    pg.enabled = o->progress;
    pg.tty = isatty(2);
    progress_print(&pg, 0);
    if (!o->fork_workers) {
        /* in this process (mrpipe run): logs to stderr and the log file */
        mr_log_set_sink(log_sink, (void *)1, MR_LOG_INFO);
        for (size_t k = 0; k < n_todo; k++) {
            scan_result r;
            memset(&r, 0, sizeof r);
            log_line("%s: start (%s)", p->ids[todo[k]], p->inputs[todo[k]]);
            process_scan(&r, p, todo[k], o->force);
            if (r.status != MR_OK) {
                fprintf(stderr, "mrpipe: error: %s: %s\n", p->ids[todo[k]], r.message);
                log_line("%s: FAILED after %.2f s: %s", p->ids[todo[k]], r.wall, r.message);
            } else {
                log_line("%s: %s in %.4f s (stages %.4f s)", p->ids[todo[k]],
                         r.skipped ? "skipped (same input bytes)" : "done", r.wall, r.stages);
            }
        }
        mr_fft_save_wisdom();
    } else {
        int threads = o->threads;
        if (threads <= 0) {
            long cores = sysconf(_SC_NPROCESSORS_ONLN);
            threads = cores > jobs ? (int)(cores / jobs) : 1;
        }
        char tbuf[32];
        snprintf(tbuf, sizeof tbuf, "%d", threads);
        setenv("MRPIPE_THREADS", tbuf, 1);
        if ((size_t)jobs > n_todo) jobs = n_todo ? (int)n_todo : 1;
        signal(SIGPIPE, SIG_IGN);
        if (pipe(res_pipe) != 0) {
            st = mr_error_set(MR_ERR_IO, "cannot create a pipe: %s", strerror(errno));
            goto done;
        }
        workers = mr_calloc((size_t)jobs, sizeof *workers);
        requeued = mr_calloc((size_t)jobs * WORKER_QUEUE, sizeof *requeued);
        if (!workers || !requeued) {
            st = MR_ERR_NOMEM;
            goto done;
        }
        for (int w = 0; w < jobs; w++) workers[w].cmd_fd = -1;
        pool pl = {p, o, workers, jobs, todo, n_todo, 0, 0, requeued, 0, jobs, threads, res_pipe,
                   &pg, counts};
        for (int w = 0; w < jobs && n_todo; w++)
            if ((st = spawn(&workers[w], p, w, res_pipe, threads, o->force, workers, jobs)) != MR_OK)
                goto done;
        for (int w = 0; w < jobs; w++) pool_assign(&pl, w, 1); /* one each first */
        for (int w = 0; w < jobs; w++) pool_assign(&pl, w, WORKER_QUEUE);
        while (pl.finished < n_todo) {
            struct pollfd pfd = {res_pipe[0], POLLIN, 0};
            if (poll(&pfd, 1, 500) > 0 && (pfd.revents & POLLIN)) {
                pool_read_result(&pl);
                continue; /* results first, then dead workers */
            }
            int wstatus;
            pid_t dead;
            while ((dead = waitpid(-1, &wstatus, WNOHANG)) > 0) {
                /* a result it wrote just before dying is still in the pipe: read it first */
                struct pollfd q = {res_pipe[0], POLLIN, 0};
                while (poll(&q, 1, 0) > 0 && (q.revents & POLLIN)) pool_read_result(&pl);
                for (int k = 0; k < jobs; k++)
                    if (workers[k].pid == dead && (st = pool_worker_died(&pl, k, wstatus)) != MR_OK)
                        goto done;
            }
            progress_print(&pg, 0);
        }
    }
    pg.done = pg.total;
    progress_print(&pg, 1);
    /* the summary, from what is on disk */
    if (o->only_id) {
        st = MR_OK;
        scan_paths sp;
        paths_of(&sp, p, sel[0]);
        counts->total = 1;
        counts->failed = access(sp.failed, F_OK) == 0 && access(sp.marker, F_OK) != 0;
        counts->done = !counts->failed;
    } else {
        mr_batch_counts c;
        size_t skipped = counts->skipped;
        if (whole) snprintf(base, sizeof base, "summary");
        else snprintf(base, sizeof base, "summary.shard-%ld-of-%ld", o->shard_i, o->shard_n);
        st = write_summary(p, sel, n_sel, base, &c, now_seconds() - t0, jobs);
        c.skipped = skipped;
        *counts = c;
    }
    log_line("end: %zu scan(s): %zu ok (%zu skipped), %zu failed, %zu missing; %.2f s",
             counts->total, counts->done, counts->skipped, counts->failed, counts->missing,
             now_seconds() - t0);
done:
    if (workers) {
        for (int w = 0; w < jobs; w++)
            if (workers[w].cmd_fd >= 0) close(workers[w].cmd_fd); /* EOF: the worker exits */
        for (int w = 0; w < jobs; w++)
            if (workers[w].pid != 0) waitpid(workers[w].pid > 0 ? workers[w].pid : -workers[w].pid, NULL, 0);
    }
    if (res_pipe[0] >= 0) close(res_pipe[0]);
    if (res_pipe[1] >= 0) close(res_pipe[1]);
    if (g_log) {
        fclose(g_log);
        g_log = NULL;
    }
    free(workers);
    free(requeued);
    free(sel);
    free(todo);
    free(selected);
    return st;
}
