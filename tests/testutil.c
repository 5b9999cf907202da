/*
 * testutil.c: see testutil.h.
 */
#define _GNU_SOURCE
#include "testutil.h"

#include <dirent.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char g_tmp[4096];
static char *g_out;
static size_t g_out_len;

int mr_test_run(const char *suite, const mr_test_case *cases)
{
    CU_pSuite s;
    unsigned failures;
    if (CU_initialize_registry() != CUE_SUCCESS) return 2;
    s = CU_add_suite(suite, NULL, NULL);
    if (!s) return 2;
    /* MRPIPE_TEST_ONLY=TEXT: only the cases whose name contains TEXT (for working on one) */
    const char *only = getenv("MRPIPE_TEST_ONLY");
    for (const mr_test_case *c = cases; c->name; c++)
        if ((!only || strstr(c->name, only)) && !CU_add_test(s, c->name, c->fn)) return 2;
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    failures = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
    CU_cleanup_registry();
    return failures ? 1 : 0;
}

const char *mr_test_tmpdir(void)
{
    if (!g_tmp[0]) {
        const char *base = getenv("MRPIPE_TEST_TMP");
        char tmpl[4096];
        if (!base || !*base) base = "/tmp";
        mkdir(base, 0755);
        if (snprintf(tmpl, sizeof tmpl, "%s/mrtest-XXXXXX", base) >= (int)sizeof tmpl) exit(2);
        if (!mkdtemp(tmpl)) {
            perror("mkdtemp");
            exit(2);
        }
        snprintf(g_tmp, sizeof g_tmp, "%s", tmpl);
    }
    return g_tmp;
}

static char *rotating(void)
{
    static char bufs[8][4096];
    static int next;
    return bufs[next++ % 8];
}

const char *mr_test_path(const char *name)
{
    char *b = rotating();
    if (snprintf(b, 4096, "%s/%s", mr_test_tmpdir(), name) >= 4096) b[0] = '\0';
    return b;
}

const char *mr_test_src(const char *rel)
{
    char *b = rotating();
    const char *src = getenv("MRPIPE_SOURCE_DIR");
    if (snprintf(b, 4096, "%s/%s", src ? src : ".", rel) >= 4096) b[0] = '\0';
    return b;
}

const char *mr_test_bin(void)
{
    const char *b = getenv("MRPIPE_BIN");
    return b ? b : "mrpipe";
}

const char *mr_test_python(void) { return "/usr/bin/python3"; }

int mr_test_sh(const char *fmt, ...)
{
    char cmd[16384];
    va_list ap;
    FILE *p;
    char chunk[4096];
    size_t n;
    int st;
    cmd[0] = '(';
    va_start(ap, fmt);
    vsnprintf(cmd + 1, sizeof cmd - 16, fmt, ap);
    va_end(ap);
    strcat(cmd, "\n) 2>&1"); /* a subshell, so that commands ending in a here-document work */
    free(g_out);
    g_out = NULL;
    g_out_len = 0;
    p = popen(cmd, "r");
    if (!p) return -1;
    while ((n = fread(chunk, 1, sizeof chunk, p)) > 0) {
        g_out = realloc(g_out, g_out_len + n + 1);
        memcpy(g_out + g_out_len, chunk, n);
        g_out_len += n;
        g_out[g_out_len] = '\0';
    }
    st = pclose(p);
    if (!g_out) g_out = calloc(1, 1);
    if (getenv("MRPIPE_TEST_VERBOSE")) fprintf(stderr, "$ %s\n%s", cmd, g_out);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

const char *mr_test_output(void) { return g_out ? g_out : ""; }

void mr_test_write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fputs(text, f);
    fclose(f);
}

int mr_test_count_files(const char *dir, const char *needle)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    if (!d) return 0;
    while ((e = readdir(d)))
        if (strstr(e->d_name, needle)) n++;
    closedir(d);
    return n;
}

void mr_test_rng_init(mr_test_rng *r, unsigned long long seed)
{
    r->s = seed * 0x9E3779B97F4A7C15ULL + 1;
    r->has = 0;
}

double mr_test_randu(mr_test_rng *r)
{
    r->s ^= r->s << 13;
    r->s ^= r->s >> 7;
    r->s ^= r->s << 17;
    return ((r->s >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

double mr_test_randn(mr_test_rng *r)
{
    double u1, u2;
    if (r->has) {
        r->has = 0;
        return r->spare;
    }
    u1 = mr_test_randu(r);
    u2 = mr_test_randu(r);
    r->spare = sqrt(-2 * log(u1)) * sin(2 * M_PI * u2);
    r->has = 1;
    return sqrt(-2 * log(u1)) * cos(2 * M_PI * u2);
}
