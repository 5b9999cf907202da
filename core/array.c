/*
 * array.c: n-d float32/complex64 arrays in C order, with overflow-checked sizes and aligned data.
 */
#include "mr_core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

size_t mr_dtype_size(mr_dtype dtype) { return dtype == MR_COMPLEX64 ? 8 : 4; }

mr_status mr_dims_numel(size_t *out, int ndim, const size_t *dims)
{
    size_t n = 1;
    *out = 0;
    if (ndim < 1 || ndim > MR_MAX_DIMS)
        return mr_error_set(MR_ERR_INPUT, "array rank %d outside 1..%d", ndim, MR_MAX_DIMS);
    for (int i = 0; i < ndim; i++) {
        if (dims[i] == 0) {
            char buf[256];
            return mr_error_set(MR_ERR_INPUT, "empty array: dims %s",
                                mr_dims_format(buf, sizeof buf, ndim, dims));
        }
        if (n > SIZE_MAX / dims[i]) {
            char buf[256];
            return mr_error_set(MR_ERR_INPUT, "array dims %s overflow the address space",
                                mr_dims_format(buf, sizeof buf, ndim, dims));
        }
        n *= dims[i];
    }
    *out = n;
    return MR_OK;
}

char *mr_dims_format(char *buf, size_t bufsize, int ndim, const size_t *dims)
{
    size_t used = 0;
    if (bufsize == 0) return buf;
    buf[0] = '\0';
    used += (size_t)snprintf(buf + used, bufsize - used, "(");
    for (int i = 0; i < ndim && used < bufsize; i++)
        used += (size_t)snprintf(buf + used, bufsize - used, "%s%zu", i ? ", " : "", dims[i]);
    if (used < bufsize) snprintf(buf + used, bufsize - used, ")");
    return buf;
}

void *mr_malloc_aligned(size_t bytes)
{
    void *p = NULL;
    size_t n = (bytes + 63) / 64 * 64;
    if (n == 0) n = 64;
    if (posix_memalign(&p, 64, n) != 0) {
        mr_error_set(MR_ERR_NOMEM, "out of memory allocating %zu bytes", bytes);
        return NULL;
    }
    return p;
}

void mr_free_aligned(void *p) { free(p); }

mr_status mr_array_create(mr_array **out, mr_dtype dtype, int ndim, const size_t *dims)
{
    size_t n;
    mr_status st;
    mr_array *a;
    *out = NULL;
    if ((st = mr_dims_numel(&n, ndim, dims)) != MR_OK) return st;
    if (n > SIZE_MAX / mr_dtype_size(dtype))
        return mr_error_set(MR_ERR_INPUT, "array of %zu elements overflows", n);
    a = mr_calloc(1, sizeof *a);
    if (!a) return MR_ERR_NOMEM;
    a->ndim = ndim;
    a->dtype = dtype;
    memcpy(a->dims, dims, (size_t)ndim * sizeof *dims);
    a->data = mr_malloc_aligned(n * mr_dtype_size(dtype));
    if (!a->data) {
        free(a);
        return MR_ERR_NOMEM;
    }
    memset(a->data, 0, n * mr_dtype_size(dtype));
    *out = a;
    return MR_OK;
}

void mr_array_destroy(mr_array *a)
{
    if (!a) return;
    mr_free_aligned(a->data);
    free(a);
}

size_t mr_array_numel(const mr_array *a)
{
    size_t n = 1;
    for (int i = 0; i < a->ndim; i++) n *= a->dims[i];
    return n;
}
