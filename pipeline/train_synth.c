/*
 * train_synth.c: brain-shaped training images of any contrast from label atlases (the SynthSeg
 * idea, ../shared/DATA.md): every label of an atlas gets a random intensity, the volume is given a
 * faint smooth texture, blurred to partial-volume edges and multiplied by a smooth bias field. Used
 * (data.synthetic) so that a variance network also learns a base model's errors on anatomy that
 * model never saw; never used for validation or calibration.
 */
#include "mr_io.h"
#include "mr_train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double label_intensity(long label, uint64_t seed)
{
    mr_rng r;
    mr_rng_seed(&r, seed * 0x9E3779B97F4A7C15ull + (uint64_t)label * 0xD1B54A32D192ED03ull + 1);
    return 0.15 + 0.85 * mr_rng_uniform(&r);
}

mr_status mr_train_synth_volume(mr_train_volume *tv, const char *atlas, uint64_t seed,
                                double percentile)
{
    mr_nifti_meta meta;
    mr_array *a = NULL;
    memset(tv, 0, sizeof *tv);
    mr_status st = mr_nifti_read(&a, &meta, atlas);
    if (st != MR_OK) return st;
    if (a->ndim != 3) {
        mr_array_destroy(a);
        return mr_error_set(MR_ERR_INPUT, "%s: expected a 3-D label volume, found %d dims", atlas,
                            a->ndim);
    }
    size_t S = a->dims[0], H = a->dims[1], W = a->dims[2], n = S * H * W;
    float *v = mr_array_f32(a);
    mr_rng rng;
    mr_rng_seed(&rng, seed * 0xA0761D6478BD642Full + 17);
    size_t labelled = 0;
    for (size_t i = 0; i < n; i++) {
        double lab = v[i];
        if (!(lab > 0.5)) {
            v[i] = 0;
            continue;
        }
        labelled++;
        double x = label_intensity(lround(lab), seed);
        v[i] = (float)(x * (1 + 0.06 * (2 * mr_rng_uniform(&rng) - 1))); /* texture before blur */
    }
    if (labelled < 1000) {
        mr_array_destroy(a);
        return mr_error_set(MR_ERR_INPUT, "%s: %zu labelled voxels: expected a label atlas (labels "
                            "> 0 over the brain)", atlas, labelled);
    }
    for (int b = 0; b < 2 && st == MR_OK; b++) st = mr_train_blur3(a); /* ~1 voxel of blur */
    double c[6];
    for (int k = 0; k < 6; k++) c[k] = 0.4 * mr_rng_uniform(&rng) - 0.2;
    for (size_t z = 0; st == MR_OK && z < S; z++)
        for (size_t y = 0; y < H; y++)
            for (size_t x = 0; x < W; x++) {
                double u = 2.0 * z / (S - 1) - 1, w = 2.0 * y / (H - 1) - 1, q = 2.0 * x / (W - 1) - 1;
                v[(z * H + y) * W + x] *= (float)exp(c[0] * u + c[1] * w + c[2] * q + c[3] * u * u +
                                                     c[4] * w * w + c[5] * q * q);
            }
    double level = 0;
    if (st == MR_OK) st = mr_train_percentile(&level, v, n, percentile);
    if (st == MR_OK && !(level > 0)) st = mr_error_set(MR_ERR_INPUT, "%s: empty", atlas);
    if (st != MR_OK) {
        mr_array_destroy(a);
        return st;
    }
    for (size_t i = 0; i < n; i++) v[i] = (float)(v[i] / level);
    const char *base = strrchr(atlas, '/');
    snprintf(tv->name, sizeof tv->name, "synthetic(%s, seed %llu)", base ? base + 1 : atlas,
             (unsigned long long)seed);
    tv->vol = a;
    tv->level = level;
    tv->nblocks = 1, tv->k0[0] = 0, tv->k1[0] = (int)S;
    return MR_OK;
}
