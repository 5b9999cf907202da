/*
 * tensor.c: float32 tensors in the dense NCHW layout and in the engine's padded channel-major
 * layout (C, N, H+2, W+2) + slack (see mr_nn.h), and the copies between them.
 */
#include "mr_nn.h"

#include <stdlib.h>
#include <string.h>

mr_status mr_nn_tensor_create(mr_nn_tensor **out, int n, int c, int h, int w, int padded)
{
    mr_nn_tensor *t;
    size_t dims[4], numel;
    *out = NULL;
    if (n < 1 || c < 1 || h < 1 || w < 1)
        return mr_error_set(MR_ERR_INPUT, "tensor shape (%d, %d, %d, %d): dims must be positive", n,
                            c, h, w);
    dims[0] = (size_t)n;
    dims[1] = (size_t)c;
    dims[2] = (size_t)h + (padded ? 2 : 0);
    dims[3] = (size_t)w + (padded ? 2 : 0);
    if (mr_dims_numel(&numel, 4, dims) != MR_OK) return MR_ERR_INPUT;
    if (numel > (SIZE_MAX / sizeof(float)) - MR_NN_SLACK)
        return mr_error_set(MR_ERR_INPUT, "tensor shape (%d, %d, %d, %d) too large", n, c, h, w);
    t = mr_calloc(1, sizeof *t);
    if (!t) return MR_ERR_NOMEM;
    t->n = n;
    t->c = c;
    t->h = h;
    t->w = w;
    t->padded = padded ? 1 : 0;
    t->plane = dims[2] * dims[3];
    t->size = numel + (padded ? MR_NN_SLACK : 0);
    t->data = mr_malloc_aligned(t->size * sizeof(float));
    if (!t->data) {
        free(t);
        return MR_ERR_NOMEM;
    }
    memset(t->data, 0, t->size * sizeof(float));
    *out = t;
    return MR_OK;
}

void mr_nn_tensor_destroy(mr_nn_tensor *t)
{
    if (!t) return;
    mr_free_aligned(t->data);
    free(t);
}

void mr_nn_tensor_zero(mr_nn_tensor *t) { memset(t->data, 0, t->size * sizeof(float)); }

void mr_nn_tensor_pad(mr_nn_tensor *dst, const float *src)
{
    const size_t hw = (size_t)dst->h * dst->w;
#pragma omp parallel for schedule(static) collapse(2)
    for (int n = 0; n < dst->n; n++)
        for (int c = 0; c < dst->c; c++) {
            const float *s = src + ((size_t)n * dst->c + c) * hw;
            for (int y = 0; y < dst->h; y++)
                memcpy(mr_nn_at(dst, n, c, y, 0), s + (size_t)y * dst->w, dst->w * sizeof(float));
        }
}

void mr_nn_tensor_unpad(float *dst, const mr_nn_tensor *src)
{
    const size_t hw = (size_t)src->h * src->w;
#pragma omp parallel for schedule(static) collapse(2)
    for (int n = 0; n < src->n; n++)
        for (int c = 0; c < src->c; c++) {
            float *d = dst + ((size_t)n * src->c + c) * hw;
            for (int y = 0; y < src->h; y++)
                memcpy(d + (size_t)y * src->w, mr_nn_at(src, n, c, y, 0), src->w * sizeof(float));
        }
}
