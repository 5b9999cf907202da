/*
 * nn_bench.c: mrpipe's side of bench/nn_vs_torch.sh. Times, for a DnCNN-family network,
 *   - OpenBLAS sgemm in the same process (conv-shaped (C, 9C) x (9C, 4096), and 1024^3), as the
 *     reference of what a BLAS reaches on this machine now;
 *   - inference: one S x S slice through an mr_nn_plan (BN folded), per algorithm (direct kernel,
 *     im2col + sgemm);
 *   - one training step (forward with batch-statistics BN, MSE, backward, AdamW) on a batch of
 *     B patches P x P.
 * Prints one "key value" line per figure; times are medians of --reps runs after one warm-up.
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mr_nn.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, n, sizeof *v, cmp);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static double sgemm_gflops(int m, int n, int k, int reps)
{
    float *a = calloc((size_t)m * k, 4), *b = calloc((size_t)k * n, 4), *c = calloc((size_t)m * n, 4);
    double t[64];
    for (size_t i = 0; i < (size_t)m * k; i++) a[i] = (float)(i % 7) * 0.1f;
    for (size_t i = 0; i < (size_t)k * n; i++) b[i] = (float)(i % 5) * 0.1f;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1, a, k, b, n, 0, c, n);
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1, a, k, b, n, 0, c, n);
        t[r] = now() - t0;
    }
    free(a);
    free(b);
    free(c);
    return 2.0 * m * n * k / median(t, reps) * 1e-9;
}

int main(int argc, char **argv)
{
    int depth = 12, ch = 48, size = 320, batch = 16, patch = 48, reps = 7, im2col = 1;
    mr_nn_model *m = NULL;
    mr_nn_plan *p = NULL;
    mr_nn_trainer *t = NULL;
    mr_nn_arch a;
    mr_nn_train_cfg cfg = mr_nn_train_cfg_default();
    float *img, *out, *bx, *by;
    double ts[64], fpp;
    mr_rng rng;
    for (int i = 1; i + 1 < argc; i += 2) {
        int v = atoi(argv[i + 1]);
        if (!strcmp(argv[i], "--depth")) depth = v;
        else if (!strcmp(argv[i], "--channels")) ch = v;
        else if (!strcmp(argv[i], "--size")) size = v;
        else if (!strcmp(argv[i], "--batch")) batch = v;
        else if (!strcmp(argv[i], "--patch")) patch = v;
        else if (!strcmp(argv[i], "--reps")) reps = v;
        else if (!strcmp(argv[i], "--im2col")) im2col = v;
        else {
            fprintf(stderr, "usage: nn_bench [--depth D] [--channels C] [--size S] [--batch B] "
                            "[--patch P] [--reps N] [--im2col 0|1]\n");
            return 1;
        }
    }
    if (reps < 1 || reps > 64) reps = 7;
    printf("threads %d\nisa %s\n", mr_threads(), mr_nn_conv_isa());
    printf("sgemm_conv_gflops %.1f\n", sgemm_gflops(ch, 4096, 9 * ch, reps));
    printf("sgemm_1024_gflops %.1f\n", sgemm_gflops(1024, 1024, 1024, reps));

    a = mr_nn_arch_default(depth, ch);
    if (mr_nn_model_create(&m, &a) != MR_OK) {
        fprintf(stderr, "nn_bench: %s\n", mr_error_message());
        return 1;
    }
    mr_nn_model_init_he(m, 1);
    fpp = mr_nn_flops_per_pixel(&a);
    img = malloc((size_t)size * size * 4);
    out = malloc((size_t)size * size * 4);
    mr_rng_seed(&rng, 2);
    for (int i = 0; i < size * size; i++) img[i] = (float)mr_rng_uniform(&rng);
    if (mr_nn_plan_create(&p, m, size, size) != MR_OK) {
        fprintf(stderr, "nn_bench: %s\n", mr_error_message());
        return 1;
    }
    for (int algo = 0; algo <= im2col; algo++) {
        const char *name = algo ? "im2col" : "direct";
        mr_nn_conv_set_algo((mr_nn_conv_algo)algo);
        mr_nn_plan_run(p, out, img);
        for (int r = 0; r < reps; r++) {
            double t0 = now();
            mr_nn_plan_run(p, out, img);
            ts[r] = now() - t0;
        }
        printf("infer_%s_s %.4f\n", name, median(ts, reps));
        printf("infer_%s_gflops %.1f\n", name, fpp * size * size / median(ts, reps) * 1e-9);
    }
    mr_nn_conv_set_algo(MR_NN_CONV_DIRECT);

    cfg.weight_decay = 1e-4f;
    if (mr_nn_trainer_create(&t, m, batch, patch, patch, &cfg) != MR_OK) {
        fprintf(stderr, "nn_bench: %s\n", mr_error_message());
        return 1;
    }
    bx = malloc((size_t)batch * patch * patch * 4);
    by = malloc((size_t)batch * patch * patch * 4);
    for (int i = 0; i < batch * patch * patch; i++) {
        bx[i] = (float)mr_rng_uniform(&rng);
        by[i] = (float)mr_rng_uniform(&rng);
    }
    mr_nn_trainer_step(t, bx, by, NULL);
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        mr_nn_trainer_step(t, bx, by, NULL);
        ts[r] = now() - t0;
    }
    /* forward + backward (input and weight gradients) = 3 x the forward's FLOPs */
    printf("train_s %.4f\n", median(ts, reps));
    printf("train_gflops %.1f\n", 3.0 * fpp * batch * patch * patch / median(ts, reps) * 1e-9);
    mr_nn_trainer_destroy(t);
    mr_nn_plan_destroy(p);
    mr_nn_model_destroy(m);
    free(img);
    free(out);
    free(bx);
    free(by);
    return 0;
}
