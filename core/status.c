/*
 * status.c: status codes and the thread-local kept message (SQLite-style error reporting: the
 * library never prints or exits; the caller reads mr_error_message()).
 */
#include "mr_core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MR_MSG_SIZE 2048

static _Thread_local char tls_message[MR_MSG_SIZE];

mr_status mr_error_set(mr_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tls_message, sizeof tls_message, fmt, ap);
    va_end(ap);
    return status;
}

mr_status mr_error_prefix(mr_status status, const char *fmt, ...)
{
    char prefix[MR_MSG_SIZE];
    char old[MR_MSG_SIZE];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, tls_message, sizeof old);
    if (snprintf(tls_message, sizeof tls_message, "%s%s", prefix, old) >= (int)sizeof tls_message)
        tls_message[sizeof tls_message - 1] = '\0'; /* long messages are cut, never overflow */
    return status;
}

const char *mr_error_message(void) { return tls_message; }

void mr_error_clear(void) { tls_message[0] = '\0'; }

const char *mr_status_name(mr_status status)
{
    switch (status) {
    case MR_OK: return "ok";
    case MR_ERR_USAGE: return "usage error";
    case MR_ERR_INPUT: return "bad input";
    case MR_ERR_IO: return "I/O error";
    case MR_ERR_NOMEM: return "out of memory";
    case MR_ERR_INTERNAL: return "internal error";
    }
    return "unknown status";
}

int mr_status_exit_code(mr_status status)
{
    switch (status) {
    case MR_OK: return 0;
    case MR_ERR_USAGE:
    case MR_ERR_INPUT:
    case MR_ERR_IO: return 1;
    default: return 2;
    }
}

void *mr_malloc(size_t bytes)
{
    void *p = malloc(bytes ? bytes : 1);
    if (!p) mr_error_set(MR_ERR_NOMEM, "out of memory allocating %zu bytes", bytes);
    return p;
}

void *mr_calloc(size_t count, size_t size)
{
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) mr_error_set(MR_ERR_NOMEM, "out of memory allocating %zu x %zu bytes", count, size);
    return p;
}
