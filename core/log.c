/*
 * log.c: logging through an application-installed sink. The library itself never writes to
 * stdout/stderr; with no sink installed, log lines are dropped.
 */
#include "mr_core.h"

#include <pthread.h>
#include <stdio.h>

static mr_log_sink g_sink;
static void *g_user;
static mr_log_level g_min = MR_LOG_INFO;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;

void mr_log_set_sink(mr_log_sink sink, void *user, mr_log_level min_level)
{
    pthread_mutex_lock(&g_lock);
    g_sink = sink;
    g_user = user;
    g_min = min_level;
    pthread_mutex_unlock(&g_lock);
}

void mr_log(mr_log_level level, const char *fmt, ...)
{
    char line[16384]; /* calibrate logs its whole calibration text */
    va_list ap;
    pthread_mutex_lock(&g_lock);
    if (g_sink && level >= g_min) {
        va_start(ap, fmt);
        vsnprintf(line, sizeof line, fmt, ap);
        va_end(ap);
        g_sink(level, line, g_user);
    }
    pthread_mutex_unlock(&g_lock);
}
