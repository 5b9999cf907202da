/*
 * files.c: atomic output (temporary name + rename), path tests, locating shipped data, threads.
 */
#define _GNU_SOURCE
#include "mr_core.h"

#include <errno.h>
#include <dirent.h>
#include <libgen.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static atomic_uint g_tmp_counter;

mr_status mr_atomic_begin(mr_atomic_file *af, const char *final_path)
{
    char copy1[4096], copy2[4096];
    const char *dir, *base;
    int n;
    memset(af, 0, sizeof *af);
    if (!final_path || !*final_path) return mr_error_set(MR_ERR_USAGE, "empty output path");
    if (strlen(final_path) >= sizeof copy1 - 64)
        return mr_error_set(MR_ERR_USAGE, "%s: output path too long", final_path);
    strcpy(af->final_path, final_path);
    strcpy(copy1, final_path);
    strcpy(copy2, final_path);
    dir = dirname(copy1);
    base = basename(copy2);
    if (!mr_path_is_dir(dir))
        return mr_error_set(MR_ERR_IO, "%s: output directory '%s' does not exist", final_path, dir);
    n = snprintf(af->tmp_path, sizeof af->tmp_path, "%s/.%s.partial-%ld-%u", dir, base,
                 (long)getpid(), atomic_fetch_add(&g_tmp_counter, 1));
    if (n < 0 || (size_t)n >= sizeof af->tmp_path)
        return mr_error_set(MR_ERR_USAGE, "%s: output path too long", final_path);
    return MR_OK;
}

mr_status mr_atomic_commit(mr_atomic_file *af)
{
    if (rename(af->tmp_path, af->final_path) != 0) {
        int e = errno;
        unlink(af->tmp_path);
        return mr_error_set(MR_ERR_IO, "%s: cannot move the finished output into place: %s",
                            af->final_path, strerror(e));
    }
    return MR_OK;
}

void mr_atomic_abort(mr_atomic_file *af)
{
    if (af->tmp_path[0]) unlink(af->tmp_path);
}

int mr_atomic_cleanup_stale(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int removed = 0;
    if (!d) return 0;
    while ((e = readdir(d))) {
        const char *tag = e->d_name[0] == '.' ? strstr(e->d_name, ".partial-") : NULL;
        char path[4600];
        char *end;
        long pid;
        if (!tag) continue;
        pid = strtol(tag + 9, &end, 10);
        if (end == tag + 9 || *end != '-' || pid <= 0) continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue; /* alive, or not ours to judge */
        if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= (int)sizeof path) continue;
        if (unlink(path) == 0) removed++;
    }
    closedir(d);
    return removed;
}

int mr_path_is_file(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

int mr_path_is_dir(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

int mr_path_has_suffix(const char *path, const char *suffix)
{
    size_t n = strlen(path), m = strlen(suffix);
    return n >= m && strcasecmp(path + n - m, suffix) == 0;
}

/* A candidate root holds the shipped configs/ directory. */
static int is_data_root(const char *dir)
{
    char buf[4200];
    if (snprintf(buf, sizeof buf, "%s/configs", dir) >= (int)sizeof buf) return 0;
    return mr_path_is_dir(buf);
}

const char *mr_data_root(void)
{
    static char root[4096];
    char exe[4096], tmp[4200];
    const char *env = getenv("MRPIPE_HOME");
    ssize_t n;
    if (env && *env) {
        if (is_data_root(env)) {
            snprintf(root, sizeof root, "%s", env);
            return root;
        }
        mr_error_set(MR_ERR_INPUT, "$MRPIPE_HOME=%s: expected a directory holding configs/", env);
        return NULL;
    }
    n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *d = dirname(exe); /* <prefix>/bin or <build>/ */
        snprintf(tmp, sizeof tmp, "%s/../share/mrpipe", d);
        if (is_data_root(tmp) && realpath(tmp, root)) return root;
        /* running from a build tree: the marker file records the source tree */
        snprintf(tmp, sizeof tmp, "%s/mrpipe-source-dir.txt", d);
        FILE *f = fopen(tmp, "r");
        if (f) {
            char line[4096];
            if (fgets(line, sizeof line, f)) {
                line[strcspn(line, "\r\n")] = '\0';
                if (is_data_root(line)) {
                    snprintf(root, sizeof root, "%s", line);
                    fclose(f);
                    return root;
                }
            }
            fclose(f);
        }
    }
#ifdef MR_SOURCE_DIR
    if (is_data_root(MR_SOURCE_DIR)) {
        snprintf(root, sizeof root, "%s", MR_SOURCE_DIR);
        return root;
    }
#endif
    mr_error_set(MR_ERR_INPUT, "cannot find mrpipe's data (configs/, models/): set $MRPIPE_HOME");
    return NULL;
}

mr_status mr_data_path(char *buf, size_t bufsize, const char *rel)
{
    const char *root = mr_data_root();
    if (!root) return MR_ERR_INPUT;
    if ((size_t)snprintf(buf, bufsize, "%s/%s", root, rel) >= bufsize)
        return mr_error_set(MR_ERR_USAGE, "path too long: %s/%s", root, rel);
    if (access(buf, R_OK) != 0)
        return mr_error_set(MR_ERR_INPUT, "%s: shipped file not found (data root %s)", buf, root);
    return MR_OK;
}

int mr_threads(void)
{
    const char *env = getenv("MRPIPE_THREADS");
    if (env && atoi(env) > 0) return atoi(env);
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
#endif
}
