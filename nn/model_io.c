/*
 * model_io.c: the model file, HDF5 (readable by h5py: scripts/nn_torch_equivalence.py loads it
 * into PyTorch).
 *
 *   /                      attributes: format = "mrpipe-nn", format_version = 1,
 *                          architecture = "dncnn depth=D channels=C kernel=3 in_channels=I
 *                          out_channels=O bn=B residual=R" and the same numbers as int
 *                          attributes depth, channels, kernel, in_channels, out_channels,
 *                          batch_norm, residual; bn_eps (float);
 *                          input_type, norm_method, norm_params (float64 array), noise_model,
 *                          training_data, split, epochs, validation, mrpipe_version
 *   /layerNN/conv_weight   float32 (Cout, Cin, 3, 3)   (PyTorch Conv2d.weight)
 *   /layerNN/conv_bias     float32 (Cout)              layers without batch norm
 *   /layerNN/bn_weight, bn_bias, bn_running_mean, bn_running_var   float32 (Cout)   BN layers
 *
 * Files written before out_channels existed (models/denoiser_blind.h5, tests/data/nn_golden_model.h5)
 * lack the attribute and its word in the architecture string: they load with out_channels =
 * in_channels and are checked against the string of that time. The format version stays 1: an
 * old file means exactly what it meant; an older mrpipe refuses a new file with a clear message
 * (its architecture-string check does not know "out_channels=").
 *
 * Loading validates everything it reads and keeps a message naming the file, the dataset or
 * attribute, what was expected and what was found. HDF5's automatic error printing is switched off
 * and its error stack is turned into the message (as io/fastmri_h5.c). Saving writes a temporary
 * file renamed over the target when complete (mr_atomic_*).
 */
#include "mr_nn.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hdf5.h>

#define FORMAT_NAME "mrpipe-nn"
#define FORMAT_VERSION 1

/* ---------------------------------------------------------------- HDF5 errors */

typedef struct {
    char text[512];
    int n;
} h5_walk;

static herr_t h5_walk_cb(unsigned n, const H5E_error2_t *e, void *data)
{
    h5_walk *w = data;
    (void)n;
    if (w->n++ == 0 && e && e->desc)
        snprintf(w->text, sizeof w->text, "%s (in %s)", e->desc, e->func_name ? e->func_name : "?");
    return 0;
}

/* The innermost HDF5 error as text; clears the stack. */
static const char *h5_detail(void)
{
    static _Thread_local h5_walk w;
    memset(&w, 0, sizeof w);
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, h5_walk_cb, &w);
    H5Eclear2(H5E_DEFAULT);
    if (!w.text[0]) snprintf(w.text, sizeof w.text, "no detail from HDF5");
    return w.text;
}

/* ---------------------------------------------------------------- writing */

static herr_t put_str(hid_t loc, const char *name, const char *value)
{
    hid_t type = H5Tcopy(H5T_C_S1), space = H5Screate(H5S_SCALAR), attr = -1;
    herr_t r = -1;
    if (type >= 0 && space >= 0 && H5Tset_size(type, strlen(value) + 1) >= 0 &&
        H5Tset_strpad(type, H5T_STR_NULLTERM) >= 0) {
        attr = H5Acreate2(loc, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
        if (attr >= 0) r = H5Awrite(attr, type, value);
    }
    if (attr >= 0) H5Aclose(attr);
    if (space >= 0) H5Sclose(space);
    if (type >= 0) H5Tclose(type);
    return r;
}

static herr_t put_num(hid_t loc, const char *name, hid_t ftype, hid_t mtype, const void *v,
                      hsize_t n)
{
    hid_t space = n == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &n, NULL), attr = -1;
    herr_t r = -1;
    if (space >= 0) {
        attr = H5Acreate2(loc, name, ftype, space, H5P_DEFAULT, H5P_DEFAULT);
        if (attr >= 0) r = H5Awrite(attr, mtype, v);
    }
    if (attr >= 0) H5Aclose(attr);
    if (space >= 0) H5Sclose(space);
    return r;
}

static herr_t put_int(hid_t loc, const char *name, int v)
{
    return put_num(loc, name, H5T_STD_I32LE, H5T_NATIVE_INT, &v, 0);
}

static herr_t put_dataset(hid_t loc, const char *name, int rank, const hsize_t *dims,
                          const float *data)
{
    hid_t space = H5Screate_simple(rank, dims, NULL), ds = -1;
    herr_t r = -1;
    if (space >= 0) {
        ds = H5Dcreate2(loc, name, H5T_IEEE_F32LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        if (ds >= 0) r = H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data);
    }
    if (ds >= 0) H5Dclose(ds);
    if (space >= 0) H5Sclose(space);
    return r;
}

/* A (centre, slope) pair per (mask kind, calibration acceleration) (mask difficulty, ghost
 * phase, line fill): written as one array, kinds outer; nothing without kinds or accelerations. */
static int put_kind_pairs(hid_t f, const char *name, const mr_nn_meta *M, const double (*pr)[4][2])
{
    double v[32];
    int k = 0;
    if (M->n_calibration_masks <= 0 || M->n_calibration_accel <= 0) return 1;
    for (int i = 0; i < M->n_calibration_masks; i++)
        for (int j = 0; j < M->n_calibration_accel; j++) v[k++] = pr[i][j][0], v[k++] = pr[i][j][1];
    return put_num(f, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, v, (hsize_t)k) >= 0;
}

/* Write the model (and, when adam_m != NULL, the optimizer state of a checkpoint). */
/* Space-separated names and one scale per (name, acceleration), name-major (get_named_scales
 * reads them); nothing when there are no names or accelerations. 1 on success. */
static int put_named_scales(hid_t f, const char *nname, const char *sname, int n, int n_accel,
                            const char names_in[4][32], const double scales[4][4])
{
    if (n <= 0 || n_accel <= 0) return 1;
    char names[160] = "";
    double v[16];
    for (int i = 0; i < n; i++) {
        if (i) strncat(names, " ", sizeof names - strlen(names) - 1);
        strncat(names, names_in[i], sizeof names - strlen(names) - 1);
        for (int j = 0; j < n_accel; j++) v[i * n_accel + j] = scales[i][j];
    }
    return put_str(f, nname, names) >= 0 &&
           put_num(f, sname, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, v, (hsize_t)(n * n_accel)) >= 0;
}

static mr_status save_file(const mr_nn_model *m, const char *path, const float *adam_m,
                           const float *adam_v, long steps)
{
    mr_atomic_file af;
    mr_status st;
    hid_t f = -1;
    const mr_nn_arch *A = &m->arch;
    const mr_nn_meta *M = &m->meta;
    char arch[256];
    int ok = 1;
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    if ((st = mr_atomic_begin(&af, path)) != MR_OK) return st;
    f = H5Fcreate(af.tmp_path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) {
        st = mr_error_set(MR_ERR_IO, "%s: cannot create the model file: %s", path, h5_detail());
        mr_atomic_abort(&af);
        return st;
    }
    mr_nn_arch_describe(arch, sizeof arch, A);
    ok &= put_str(f, "format", FORMAT_NAME) >= 0;
    ok &= put_int(f, "format_version", FORMAT_VERSION) >= 0;
    ok &= put_str(f, "architecture", arch) >= 0;
    ok &= put_int(f, "depth", A->depth) >= 0;
    ok &= put_int(f, "channels", A->channels) >= 0;
    ok &= put_int(f, "kernel", 3) >= 0;
    ok &= put_int(f, "in_channels", A->in_channels) >= 0;
    ok &= put_int(f, "out_channels", A->out_channels ? A->out_channels : A->in_channels) >= 0;
    ok &= put_int(f, "batch_norm", A->batch_norm) >= 0;
    ok &= put_int(f, "residual", A->residual) >= 0;
    ok &= put_num(f, "bn_eps", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, &A->bn_eps, 0) >= 0;
    ok &= put_str(f, "input_type", M->input_type) >= 0;
    ok &= put_str(f, "norm_method", M->norm_method) >= 0;
    if (M->n_norm_params > 0)
        ok &= put_num(f, "norm_params", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, M->norm_params,
                      (hsize_t)M->n_norm_params) >= 0;
    ok &= put_str(f, "noise_model", M->noise_model) >= 0;
    ok &= put_str(f, "training_data", M->training_data) >= 0;
    ok &= put_str(f, "split", M->split) >= 0;
    ok &= put_int(f, "epochs", M->epochs) >= 0;
    ok &= put_str(f, "validation", M->validation) >= 0;
    ok &= put_str(f, "mrpipe_version", MR_VERSION_STRING) >= 0;
    if (M->calibration_scale > 0) { /* a calibrated variance network */
        ok &= put_num(f, "calibration_scale", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE,
                      &M->calibration_scale, 0) >= 0;
        ok &= put_str(f, "calibration", M->calibration) >= 0;
        ok &= put_str(f, "base_model", M->base_model) >= 0;
        if (M->n_calibration_levels > 0) {
            ok &= put_num(f, "calibration_noise", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE,
                          M->calibration_noise, (hsize_t)M->n_calibration_levels) >= 0;
            ok &= put_num(f, "calibration_scales", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE,
                          M->calibration_scales, (hsize_t)M->n_calibration_levels) >= 0;
        }
        if (M->n_noise_factors > 0) {
            ok &= put_num(f, "calibration_noise_factor_levels", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE,
                          M->noise_factor_levels, (hsize_t)M->n_noise_factors) >= 0;
            ok &= put_num(f, "calibration_noise_factors", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE,
                          M->noise_factors, (hsize_t)M->n_noise_factors) >= 0;
        }
        if (M->n_calibration_accel > 0) {
            ok &= put_num(f, "calibration_accel", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE,
                          M->calibration_accel, (hsize_t)M->n_calibration_accel) >= 0;
            ok &= put_num(f, "calibration_accel_scales", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE,
                          M->calibration_accel_scales, (hsize_t)M->n_calibration_accel) >= 0;
        }
        ok &= put_named_scales(f, "calibration_methods", "calibration_method_scales",
                               M->n_calibration_methods, M->n_calibration_accel,
                               M->calibration_methods, M->calibration_method_scales);
        ok &= put_named_scales(f, "calibration_masks", "calibration_mask_scales",
                               M->n_calibration_masks, M->n_calibration_accel,
                               M->calibration_masks, M->calibration_mask_scales);
        if (M->has_difficulty) ok &= put_kind_pairs(f, "calibration_mask_difficulty", M, M->difficulty);
        if (M->has_ghost) ok &= put_kind_pairs(f, "calibration_mask_ghost_phase", M, M->ghost);
        if (M->has_fill) ok &= put_kind_pairs(f, "calibration_line_fill", M, M->fill);
        for (int j = 0; M->has_fill_m && j < M->n_calibration_methods; j++) {
            char nm[64];
            snprintf(nm, sizeof nm, "calibration_line_fill_%s", M->calibration_methods[j]);
            ok &= put_kind_pairs(f, nm, M, M->fill_m[j]);
        }
        if (M->n_feature_weights > 0)
            ok &= put_num(f, "calibration_feature_weights", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE,
                          M->feature_weights, (hsize_t)M->n_feature_weights) >= 0;
        if (M->n_feature_weights > 0 && M->feature_bootstrap) {
            double one = 1;
            ok &= put_num(f, "calibration_feature_bootstrap", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE,
                          &one, 1) >= 0;
        }
        if (M->n_noise_term > 0)
            ok &= put_num(f, "calibration_noise_term", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE,
                          M->noise_term, (hsize_t)M->n_noise_term) >= 0;
        if (M->n_noise_term > 0 && M->n_noise_term_methods > 0)
            ok &= put_num(f, "calibration_method_noise_terms", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE,
                          &M->noise_term_methods[0][0], (hsize_t)(2 * M->n_noise_term_methods)) >= 0;
        if (M->n_input_sd > 0)
            ok &= put_num(f, "calibration_input_sd", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE,
                          &M->input_sd[0][0], (hsize_t)(2 * M->n_input_sd)) >= 0;
        if (M->n_boot_sd > 0)
            ok &= put_num(f, "calibration_bootstrap_sd", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE,
                          &M->boot_sd[0][0], (hsize_t)(2 * M->n_boot_sd)) >= 0;
    }
    for (int l = 0; ok && l < A->depth; l++) {
        const mr_nn_layer *L = &m->layers[l];
        char name[32];
        hsize_t wd[4] = {(hsize_t)L->cout, (hsize_t)L->cin, 3, 3}, cd = (hsize_t)L->cout;
        hid_t g;
        snprintf(name, sizeof name, "layer%02d", l);
        g = H5Gcreate2(f, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        if (g < 0) {
            ok = 0;
            break;
        }
        ok &= put_dataset(g, "conv_weight", 4, wd, m->params + L->weight) >= 0;
        if (L->bias != SIZE_MAX) ok &= put_dataset(g, "conv_bias", 1, &cd, m->params + L->bias) >= 0;
        if (L->bn) {
            ok &= put_dataset(g, "bn_weight", 1, &cd, m->params + L->bn_gamma) >= 0;
            ok &= put_dataset(g, "bn_bias", 1, &cd, m->params + L->bn_beta) >= 0;
            ok &= put_dataset(g, "bn_running_mean", 1, &cd, m->buffers + L->bn_mean) >= 0;
            ok &= put_dataset(g, "bn_running_var", 1, &cd, m->buffers + L->bn_var) >= 0;
        }
        H5Gclose(g);
    }
    if (ok && adam_m) {
        hsize_t np = (hsize_t)m->nparams;
        hid_t g = H5Gcreate2(f, "optimizer", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        long long s64 = steps;
        if (g < 0) {
            ok = 0;
        } else {
            ok &= put_dataset(g, "adam_m", 1, &np, adam_m) >= 0;
            ok &= put_dataset(g, "adam_v", 1, &np, adam_v) >= 0;
            ok &= put_num(g, "steps", H5T_STD_I64LE, H5T_NATIVE_LLONG, &s64, 0) >= 0;
            H5Gclose(g);
        }
    }
    if (!ok) {
        st = mr_error_set(MR_ERR_IO, "%s: cannot write the model: %s", path, h5_detail());
        H5Fclose(f);
        mr_atomic_abort(&af);
        return st;
    }
    if (H5Fclose(f) < 0) {
        st = mr_error_set(MR_ERR_IO, "%s: cannot close the model file: %s", path, h5_detail());
        mr_atomic_abort(&af);
        return st;
    }
    if ((st = mr_atomic_commit(&af)) != MR_OK) {
        mr_atomic_abort(&af);
        return st;
    }
    return MR_OK;
}

mr_status mr_nn_model_save(const mr_nn_model *m, const char *path)
{
    return save_file(m, path, NULL, NULL, 0);
}

mr_status mr_nn_checkpoint_save(mr_nn_trainer *t, const char *path)
{
    return save_file(mr_nn_trainer_model(t), path, mr_nn_trainer_adam_m(t),
                     mr_nn_trainer_adam_v(t), *mr_nn_trainer_steps(t));
}

/* ---------------------------------------------------------------- reading */

/* Read string attribute `name` into buf. Missing: "" when !required, else an error. */
static mr_status get_str(hid_t f, const char *path, const char *name, char *buf, size_t size,
                         int required)
{
    hid_t attr, type = -1, mtype = -1, space = -1;
    mr_status st = MR_OK;
    buf[0] = '\0';
    if (H5Aexists(f, name) <= 0) {
        H5Eclear2(H5E_DEFAULT);
        if (!required) return MR_OK;
        return mr_error_set(MR_ERR_INPUT, "%s: attribute '%s' missing: not an mrpipe model file?",
                            path, name);
    }
    attr = H5Aopen(f, name, H5P_DEFAULT);
    if (attr < 0)
        return mr_error_set(MR_ERR_INPUT, "%s: attribute '%s': cannot open: %s", path, name,
                            h5_detail());
    type = H5Aget_type(attr);
    space = H5Aget_space(attr);
    if (type < 0 || space < 0 || H5Tget_class(type) != H5T_STRING ||
        H5Sget_simple_extent_npoints(space) != 1) {
        st = mr_error_set(MR_ERR_INPUT, "%s: attribute '%s': expected one string", path, name);
    } else if (H5Tis_variable_str(type) > 0) {
        char *s = NULL;
        mtype = H5Tcopy(H5T_C_S1);
        H5Tset_size(mtype, H5T_VARIABLE);
        if (H5Aread(attr, mtype, &s) < 0 || !s)
            st = mr_error_set(MR_ERR_INPUT, "%s: attribute '%s': cannot read: %s", path, name,
                              h5_detail());
        else
            snprintf(buf, size, "%s", s);
        if (s) H5free_memory(s);
    } else {
        size_t n = H5Tget_size(type);
        char *s = mr_calloc(n + 1, 1);
        if (!s) {
            st = MR_ERR_NOMEM;
        } else {
            mtype = H5Tcopy(H5T_C_S1);
            H5Tset_size(mtype, n + 1);
            H5Tset_strpad(mtype, H5T_STR_NULLTERM);
            if (H5Aread(attr, mtype, s) < 0)
                st = mr_error_set(MR_ERR_INPUT, "%s: attribute '%s': cannot read: %s", path, name,
                                  h5_detail());
            else
                snprintf(buf, size, "%s", s);
            free(s);
        }
    }
    if (mtype >= 0) H5Tclose(mtype);
    if (type >= 0) H5Tclose(type);
    if (space >= 0) H5Sclose(space);
    H5Aclose(attr);
    return st;
}

/* Read numeric attribute `name` (up to n values, converted to double); *count receives how many
 * were found. Missing: error when required, else *count = 0. */
static mr_status get_nums(hid_t f, const char *path, const char *name, double *v, int n,
                          int *count, int required)
{
    hid_t attr, type, space;
    hssize_t npts;
    mr_status st = MR_OK;
    *count = 0;
    if (H5Aexists(f, name) <= 0) {
        H5Eclear2(H5E_DEFAULT);
        if (!required) return MR_OK;
        return mr_error_set(MR_ERR_INPUT, "%s: attribute '%s' missing", path, name);
    }
    attr = H5Aopen(f, name, H5P_DEFAULT);
    if (attr < 0)
        return mr_error_set(MR_ERR_INPUT, "%s: attribute '%s': cannot open: %s", path, name,
                            h5_detail());
    type = H5Aget_type(attr);
    space = H5Aget_space(attr);
    npts = space >= 0 ? H5Sget_simple_extent_npoints(space) : -1;
    if (type < 0 || (H5Tget_class(type) != H5T_INTEGER && H5Tget_class(type) != H5T_FLOAT))
        st = mr_error_set(MR_ERR_INPUT, "%s: attribute '%s': expected a number", path, name);
    else if (npts < 1 || npts > n)
        st = mr_error_set(MR_ERR_INPUT, "%s: attribute '%s': expected 1..%d values, found %lld",
                          path, name, n, (long long)npts);
    else if (H5Aread(attr, H5T_NATIVE_DOUBLE, v) < 0)
        st = mr_error_set(MR_ERR_INPUT, "%s: attribute '%s': cannot read: %s", path, name,
                          h5_detail());
    else
        *count = (int)npts;
    if (type >= 0) H5Tclose(type);
    if (space >= 0) H5Sclose(space);
    H5Aclose(attr);
    return st;
}

/* put_kind_pairs' array read back into pr, *has 1 when present; MR_ERR_INPUT when its length is
 * not 2 x kinds x accelerations or a value is not finite. */
static mr_status get_kind_pairs(hid_t f, const char *path, const char *name, const mr_nn_meta *M,
                                double (*pr)[4][2], int *has)
{
    double v[32];
    int nd = 0, want = 2 * M->n_calibration_masks * M->n_calibration_accel, ok;
    mr_status st = get_nums(f, path, name, v, 32, &nd, 0);
    if (st != MR_OK) return st;
    ok = nd == 0 || (nd == want && want > 0);
    for (int i = 0; ok && i < nd; i++) ok = isfinite(v[i]) && fabs(v[i]) < 100;
    if (!ok)
        return mr_error_set(MR_ERR_INPUT, "%s: attribute '%s': expected %d finite values (centre, "
                            "slope per mask kind and calibration acceleration), found %d", path,
                            name, want, nd);
    for (int i = 0, k = 0; nd && i < M->n_calibration_masks; i++)
        for (int j = 0; j < M->n_calibration_accel; j++, k += 2) pr[i][j][0] = v[k], pr[i][j][1] = v[k + 1];
    *has = nd > 0;
    return MR_OK;
}

/* Combination weights {w in [0, 1], k > 0} per calibration method (input SD, bootstrap): *n
 * becomes the method count, or 0 when the attribute is absent. */
static mr_status get_method_pairs(hid_t f, const char *path, const char *name, const mr_nn_meta *M,
                                  double (*wk)[2], int *n)
{
    int nn = 0;
    mr_status st = get_nums(f, path, name, &wk[0][0], 8, &nn, 0);
    if (st != MR_OK) return st;
    int ok = nn == 0 || (M->n_calibration_methods > 0 && nn == 2 * M->n_calibration_methods);
    for (int i = 0; ok && i < nn / 2; i++)
        ok = wk[i][0] >= 0 && wk[i][0] <= 1 && wk[i][1] > 0 && isfinite(wk[i][1]);
    if (!ok)
        return mr_error_set(MR_ERR_INPUT, "%s: attribute '%s': expected (w in [0, 1], k > 0) per "
                            "calibration method (%d), found %d values", path, name,
                            M->n_calibration_methods, nn);
    *n = nn / 2;
    return MR_OK;
}

/* A pair of optional attributes: keys (ascending, above key_min, or from it when not strict) and
 * one positive finite scale per key; *count = how many (0 when both are absent). */
static mr_status get_key_scales(hid_t f, const char *path, const char *kname, const char *sname,
                                double *keys, double *scales, int max, double key_min, int strict,
                                const char *what, int *count)
{
    int nk = 0, ns = 0;
    mr_status st = get_nums(f, path, kname, keys, max, &nk, 0);
    if (st == MR_OK) st = get_nums(f, path, sname, scales, max, &ns, 0);
    if (st != MR_OK) return st;
    int ok = nk == ns;
    for (int i = 0; ok && i < nk; i++)
        ok = scales[i] > 0 && isfinite(scales[i]) && (strict ? keys[i] > key_min : keys[i] >= key_min) &&
             (i == 0 || keys[i] > keys[i - 1]);
    if (!ok)
        return mr_error_set(MR_ERR_INPUT, "%s: attributes '%s' (%d values) and '%s' (%d): expected "
                            "as many positive values, %s ascending", path, kname, nk, sname, ns, what);
    *count = nk;
    return MR_OK;
}


/* Optional attributes: space-separated names (at most 4) and one positive finite scale per
 * (name, calibration acceleration), name-major; *count = how many names (0 when both absent). */
static mr_status get_named_scales(hid_t f, const char *path, const char *nname, const char *sname,
                                  const char *what, int n_accel, char names_out[4][32],
                                  double scales[4][4], int *count)
{
    char names[160] = "";
    double v[16];
    int ns = 0, nn = 0;
    mr_status st = get_str(f, path, nname, names, sizeof names, 0);
    if (st == MR_OK) st = get_nums(f, path, sname, v, 16, &ns, 0);
    if (st != MR_OK) return st;
    for (char *tok = strtok(names, " "); tok && nn < 4; tok = strtok(NULL, " "))
        snprintf(names_out[nn++], 32, "%s", tok);
    int ok = (nn == 0 && ns == 0) || (n_accel > 0 && ns == nn * n_accel);
    for (int i = 0; ok && i < ns; i++) ok = v[i] > 0 && isfinite(v[i]);
    if (!ok)
        return mr_error_set(MR_ERR_INPUT, "%s: attributes '%s' (%d names) and '%s' (%d values): "
                            "expected one positive scale per %s and calibration acceleration (%d)",
                            path, nname, nn, sname, ns, what, n_accel);
    for (int i = 0; i < nn; i++)
        for (int j = 0; j < n_accel; j++) scales[i][j] = v[i * n_accel + j];
    *count = nn;
    return MR_OK;
}

static mr_status get_int(hid_t f, const char *path, const char *name, int *out)
{
    double v;
    int n;
    mr_status st = get_nums(f, path, name, &v, 1, &n, 1);
    if (st != MR_OK) return st;
    if (n != 1 || v != floor(v) || fabs(v) > 1e9)
        return mr_error_set(MR_ERR_INPUT, "%s: attribute '%s': expected one integer, found %g",
                            path, name, v);
    *out = (int)v;
    return MR_OK;
}

/* Read dataset `group/name` of exactly (dims) float values into dst, checking class, shape and
 * finiteness. */
static mr_status get_dataset(hid_t f, const char *path, const char *group, const char *name,
                             int rank, const hsize_t *dims, float *dst)
{
    char full[96], want[128], found[128];
    hid_t ds, type = -1, space = -1;
    hsize_t fd[8] = {0};
    int frank;
    size_t n = 1;
    mr_status st = MR_OK;
    snprintf(full, sizeof full, "%s/%s", group, name);
    {
        size_t used = (size_t)snprintf(want, sizeof want, "(");
        for (int i = 0; i < rank; i++)
            used += (size_t)snprintf(want + used, sizeof want - used, "%s%llu", i ? ", " : "",
                                     (unsigned long long)dims[i]);
        snprintf(want + used, sizeof want - used, ")");
    }
    if (H5Lexists(f, group, H5P_DEFAULT) <= 0 || H5Lexists(f, full, H5P_DEFAULT) <= 0) {
        H5Eclear2(H5E_DEFAULT);
        return mr_error_set(MR_ERR_INPUT, "%s: dataset '%s' missing: expected float32 %s", path,
                            full, want);
    }
    ds = H5Dopen2(f, full, H5P_DEFAULT);
    if (ds < 0)
        return mr_error_set(MR_ERR_INPUT, "%s: dataset '%s': cannot open: %s", path, full,
                            h5_detail());
    type = H5Dget_type(ds);
    space = H5Dget_space(ds);
    frank = space >= 0 ? H5Sget_simple_extent_ndims(space) : -1;
    if (type < 0 || H5Tget_class(type) != H5T_FLOAT) {
        st = mr_error_set(MR_ERR_INPUT, "%s: dataset '%s': expected float32 %s, found a "
                          "non-float type", path, full, want);
        goto done;
    }
    if (frank < 0 || frank > 8) {
        st = mr_error_set(MR_ERR_INPUT, "%s: dataset '%s': cannot read its shape: %s", path, full,
                          h5_detail());
        goto done;
    }
    H5Sget_simple_extent_dims(space, fd, NULL);
    {
        int same = frank == rank;
        size_t used = (size_t)snprintf(found, sizeof found, "(");
        for (int i = 0; i < frank; i++) {
            used += (size_t)snprintf(found + used, sizeof found - used, "%s%llu", i ? ", " : "",
                                     (unsigned long long)fd[i]);
            if (i < rank && fd[i] != dims[i]) same = 0;
        }
        snprintf(found + used, sizeof found - used, ")");
        if (!same) {
            st = mr_error_set(MR_ERR_INPUT, "%s: dataset '%s': expected shape %s, found %s", path,
                              full, want, found);
            goto done;
        }
    }
    for (int i = 0; i < rank; i++) n *= (size_t)dims[i];
    if (H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst) < 0) {
        st = mr_error_set(MR_ERR_INPUT, "%s: dataset '%s': cannot read: %s", path, full,
                          h5_detail());
        goto done;
    }
    for (size_t i = 0; i < n; i++)
        if (!isfinite(dst[i])) {
            st = mr_error_set(MR_ERR_INPUT, "%s: dataset '%s': element %zu is %g: expected finite "
                              "weights", path, full, i, (double)dst[i]);
            goto done;
        }
done:
    if (type >= 0) H5Tclose(type);
    if (space >= 0) H5Sclose(space);
    H5Dclose(ds);
    return st;
}

mr_status mr_nn_model_load(mr_nn_model **out, const char *path, const char *expect_input_type)
{
    hid_t f;
    mr_status st;
    mr_nn_arch A;
    mr_nn_model *m = NULL;
    char buf[1024], arch[256];
    int v, kernel, count, has_out;
    double d[4];
    *out = NULL;
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    if (!mr_path_is_file(path))
        return mr_error_set(MR_ERR_INPUT, "%s: model file not found", path);
    f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0)
        return mr_error_set(MR_ERR_INPUT, "%s: cannot open as HDF5: %s", path, h5_detail());
#define TRY(expr)                                                                                 \
    do {                                                                                          \
        if ((st = (expr)) != MR_OK) goto fail;                                                    \
    } while (0)
    TRY(get_str(f, path, "format", buf, sizeof buf, 1));
    if (strcmp(buf, FORMAT_NAME)) {
        st = mr_error_set(MR_ERR_INPUT, "%s: attribute 'format': expected \"%s\", found \"%s\"",
                          path, FORMAT_NAME, buf);
        goto fail;
    }
    TRY(get_int(f, path, "format_version", &v));
    if (v != FORMAT_VERSION) {
        st = mr_error_set(MR_ERR_INPUT, "%s: attribute 'format_version': expected %d, found %d "
                          "(written by a newer mrpipe?)", path, FORMAT_VERSION, v);
        goto fail;
    }
    memset(&A, 0, sizeof A);
    TRY(get_int(f, path, "depth", &A.depth));
    TRY(get_int(f, path, "channels", &A.channels));
    TRY(get_int(f, path, "kernel", &kernel));
    TRY(get_int(f, path, "in_channels", &A.in_channels));
    has_out = H5Aexists(f, "out_channels") > 0;
    H5Eclear2(H5E_DEFAULT);
    if (has_out) {
        TRY(get_int(f, path, "out_channels", &A.out_channels));
        if (A.out_channels < 1 || A.out_channels > 16) {
            st = mr_error_set(MR_ERR_INPUT, "%s: attribute 'out_channels': expected 1..16, found "
                              "%d", path, A.out_channels);
            goto fail;
        }
    }
    TRY(get_int(f, path, "batch_norm", &A.batch_norm));
    TRY(get_int(f, path, "residual", &A.residual));
    TRY(get_nums(f, path, "bn_eps", d, 1, &count, 1));
    A.bn_eps = (float)d[0];
    if (kernel != 3) {
        st = mr_error_set(MR_ERR_INPUT, "%s: attribute 'kernel': expected 3, found %d", path,
                          kernel);
        goto fail;
    }
    if ((A.batch_norm != 0 && A.batch_norm != 1) || (A.residual != 0 && A.residual != 1)) {
        st = mr_error_set(MR_ERR_INPUT, "%s: attributes 'batch_norm'/'residual': expected 0 or 1, "
                          "found %d/%d", path, A.batch_norm, A.residual);
        goto fail;
    }
    if ((st = mr_nn_model_create(&m, &A)) != MR_OK) {
        st = mr_error_prefix(MR_ERR_INPUT, "%s: architecture attributes: ", path);
        goto fail;
    }
    TRY(get_str(f, path, "architecture", buf, sizeof buf, 1));
    if (has_out)
        mr_nn_arch_describe(arch, sizeof arch, &m->arch);
    else /* the string before out_channels existed */
        snprintf(arch, sizeof arch, "dncnn depth=%d channels=%d kernel=3 in_channels=%d bn=%d "
                 "residual=%d", m->arch.depth, m->arch.channels, m->arch.in_channels,
                 m->arch.batch_norm, m->arch.residual);
    if (strcmp(buf, arch)) {
        st = mr_error_set(MR_ERR_INPUT, "%s: attribute 'architecture': expected \"%s\" (from the "
                          "numeric attributes), found \"%s\"", path, arch, buf);
        goto fail;
    }
    TRY(get_str(f, path, "input_type", m->meta.input_type, sizeof m->meta.input_type, 1));
    if (expect_input_type && strcmp(expect_input_type, m->meta.input_type)) {
        st = mr_error_set(MR_ERR_INPUT, "%s: attribute 'input_type': the model was trained for "
                          "\"%s\" images, expected \"%s\"", path, m->meta.input_type,
                          expect_input_type);
        goto fail;
    }
    TRY(get_str(f, path, "norm_method", m->meta.norm_method, sizeof m->meta.norm_method, 0));
    TRY(get_nums(f, path, "norm_params", m->meta.norm_params, 4, &m->meta.n_norm_params, 0));
    TRY(get_str(f, path, "noise_model", m->meta.noise_model, sizeof m->meta.noise_model, 0));
    TRY(get_str(f, path, "training_data", m->meta.training_data, sizeof m->meta.training_data, 0));
    TRY(get_str(f, path, "split", m->meta.split, sizeof m->meta.split, 0));
    TRY(get_str(f, path, "validation", m->meta.validation, sizeof m->meta.validation, 0));
    TRY(get_str(f, path, "mrpipe_version", m->meta.version, sizeof m->meta.version, 0));
    if (H5Aexists(f, "epochs") > 0) TRY(get_int(f, path, "epochs", &m->meta.epochs));
    if (H5Aexists(f, "calibration_scale") > 0) {
        int nc = 0;
        TRY(get_nums(f, path, "calibration_scale", &m->meta.calibration_scale, 1, &nc, 0));
        if (nc != 1 || !(m->meta.calibration_scale > 0) || !isfinite(m->meta.calibration_scale)) {
            st = mr_error_set(MR_ERR_INPUT, "%s: attribute 'calibration_scale': expected one "
                              "positive number", path);
            goto fail;
        }
        TRY(get_str(f, path, "calibration", m->meta.calibration, sizeof m->meta.calibration, 0));
        TRY(get_str(f, path, "base_model", m->meta.base_model, sizeof m->meta.base_model, 0));
        int nn = 0, ok;
        TRY(get_key_scales(f, path, "calibration_noise", "calibration_scales",
                           m->meta.calibration_noise, m->meta.calibration_scales, 8, 0, 1, "noise",
                           &m->meta.n_calibration_levels));
        TRY(get_key_scales(f, path, "calibration_noise_factor_levels", "calibration_noise_factors",
                           m->meta.noise_factor_levels, m->meta.noise_factors, 8, 0, 1,
                           "relative noise levels", &m->meta.n_noise_factors));
        TRY(get_key_scales(f, path, "calibration_accel", "calibration_accel_scales",
                           m->meta.calibration_accel, m->meta.calibration_accel_scales, 4, 1, 0,
                           "accelerations", &m->meta.n_calibration_accel));
        TRY(get_named_scales(f, path, "calibration_methods", "calibration_method_scales", "method",
                             m->meta.n_calibration_accel, m->meta.calibration_methods,
                             m->meta.calibration_method_scales, &m->meta.n_calibration_methods));
        TRY(get_named_scales(f, path, "calibration_masks", "calibration_mask_scales", "mask kind",
                             m->meta.n_calibration_accel, m->meta.calibration_masks,
                             m->meta.calibration_mask_scales, &m->meta.n_calibration_masks));
        TRY(get_kind_pairs(f, path, "calibration_mask_difficulty", &m->meta, m->meta.difficulty,
                           &m->meta.has_difficulty));
        TRY(get_kind_pairs(f, path, "calibration_mask_ghost_phase", &m->meta, m->meta.ghost,
                           &m->meta.has_ghost));
        TRY(get_kind_pairs(f, path, "calibration_line_fill", &m->meta, m->meta.fill,
                           &m->meta.has_fill));
        for (int j = 0; j < m->meta.n_calibration_methods; j++) { /* per input method */
            char nm[64];
            int has = 0;
            snprintf(nm, sizeof nm, "calibration_line_fill_%s", m->meta.calibration_methods[j]);
            TRY(get_kind_pairs(f, path, nm, &m->meta, m->meta.fill_m[j], &has));
            m->meta.has_fill_m |= has;
        }
        TRY(get_nums(f, path, "calibration_feature_weights", m->meta.feature_weights, 4, &nn, 0));
        ok = nn == 0 || nn == 4;
        for (int i = 0; ok && i < nn; i++) ok = isfinite(m->meta.feature_weights[i]);
        if (!ok) {
            st = mr_error_set(MR_ERR_INPUT, "%s: attribute 'calibration_feature_weights': expected 4 "
                              "finite values, found %d", path, nn);
            goto fail;
        }
        m->meta.n_feature_weights = nn;
        {
            double fb = 0;
            TRY(get_nums(f, path, "calibration_feature_bootstrap", &fb, 1, &nn, 0));
            if (nn == 1 && (fb != 0 && fb != 1)) {
                st = mr_error_set(MR_ERR_INPUT, "%s: attribute 'calibration_feature_bootstrap': "
                                  "expected 0 or 1, found %g", path, fb);
                goto fail;
            }
            if (nn == 1 && fb == 1 && m->meta.n_feature_weights != 4) {
                st = mr_error_set(MR_ERR_INPUT, "%s: attribute 'calibration_feature_bootstrap' "
                                  "is 1 but 'calibration_feature_weights' is missing: expected "
                                  "4 feature weights with it", path);
                goto fail;
            }
            m->meta.feature_bootstrap = nn == 1 && fb == 1;
        }
        TRY(get_nums(f, path, "calibration_noise_term", m->meta.noise_term, 2, &nn, 0));
        ok = nn == 0 || nn == 2;
        for (int i = 0; ok && i < nn; i++) ok = m->meta.noise_term[i] >= 0 && isfinite(m->meta.noise_term[i]);
        if (!ok) {
            st = mr_error_set(MR_ERR_INPUT, "%s: attribute 'calibration_noise_term': expected 2 "
                              "finite values >= 0 (b, f), found %d", path, nn);
            goto fail;
        }
        m->meta.n_noise_term = nn;
        TRY(get_nums(f, path, "calibration_method_noise_terms", &m->meta.noise_term_methods[0][0], 8,
                     &nn, 0));
        ok = nn == 0 || (m->meta.n_noise_term == 2 && nn == 2 * m->meta.n_calibration_methods);
        for (int i = 0; ok && i < nn; i++)
            ok = (&m->meta.noise_term_methods[0][0])[i] >= 0 &&
                 isfinite((&m->meta.noise_term_methods[0][0])[i]);
        if (!ok) {
            st = mr_error_set(MR_ERR_INPUT, "%s: attribute 'calibration_method_noise_terms': "
                              "expected (b, f) >= 0 per calibration method (%d), found %d values",
                              path, m->meta.n_calibration_methods, nn);
            goto fail;
        }
        m->meta.n_noise_term_methods = nn / 2;
        TRY(get_method_pairs(f, path, "calibration_input_sd", &m->meta, m->meta.input_sd,
                             &m->meta.n_input_sd));
        TRY(get_method_pairs(f, path, "calibration_bootstrap_sd", &m->meta, m->meta.boot_sd,
                             &m->meta.n_boot_sd));
    }
    H5Eclear2(H5E_DEFAULT);
    for (int l = 0; l < m->arch.depth; l++) {
        const mr_nn_layer *L = &m->layers[l];
        char g[32];
        hsize_t wd[4] = {(hsize_t)L->cout, (hsize_t)L->cin, 3, 3}, cd = (hsize_t)L->cout;
        snprintf(g, sizeof g, "layer%02d", l);
        TRY(get_dataset(f, path, g, "conv_weight", 4, wd, m->params + L->weight));
        if (L->bias != SIZE_MAX) TRY(get_dataset(f, path, g, "conv_bias", 1, &cd, m->params + L->bias));
        if (L->bn) {
            TRY(get_dataset(f, path, g, "bn_weight", 1, &cd, m->params + L->bn_gamma));
            TRY(get_dataset(f, path, g, "bn_bias", 1, &cd, m->params + L->bn_beta));
            TRY(get_dataset(f, path, g, "bn_running_mean", 1, &cd, m->buffers + L->bn_mean));
            TRY(get_dataset(f, path, g, "bn_running_var", 1, &cd, m->buffers + L->bn_var));
            for (int c = 0; c < L->cout; c++)
                if (!(m->buffers[L->bn_var + c] >= 0.0f)) {
                    st = mr_error_set(MR_ERR_INPUT, "%s: dataset '%s/bn_running_var': element %d "
                                      "is %g: expected a variance >= 0", path, g, c,
                                      (double)m->buffers[L->bn_var + c]);
                    goto fail;
                }
        }
    }
    {
        char g[32];
        snprintf(g, sizeof g, "layer%02d", m->arch.depth);
        if (H5Lexists(f, g, H5P_DEFAULT) > 0) {
            st = mr_error_set(MR_ERR_INPUT, "%s: group '%s' present but attribute 'depth' says %d "
                              "layers (layer00..layer%02d)", path, g, m->arch.depth,
                              m->arch.depth - 1);
            goto fail;
        }
        H5Eclear2(H5E_DEFAULT);
    }
#undef TRY
    H5Fclose(f);
    *out = m;
    return MR_OK;
fail:
    mr_nn_model_destroy(m);
    H5Fclose(f);
    return st;
}

mr_status mr_nn_checkpoint_load(mr_nn_trainer *t, const char *path)
{
    mr_nn_model *m = mr_nn_trainer_model(t), *c = NULL;
    mr_status st;
    hid_t f, g;
    hsize_t np = (hsize_t)m->nparams;
    double steps;
    int count;
    char want[256], found[256];
    if ((st = mr_nn_model_load(&c, path, NULL)) != MR_OK) return st;
    mr_nn_arch_describe(want, sizeof want, &m->arch);
    mr_nn_arch_describe(found, sizeof found, &c->arch);
    if (strcmp(want, found) || c->arch.bn_eps != m->arch.bn_eps) {
        mr_nn_model_destroy(c);
        return mr_error_set(MR_ERR_INPUT, "%s: checkpoint of another network: expected \"%s\", "
                            "found \"%s\"", path, want, found);
    }
    f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) {
        mr_nn_model_destroy(c);
        return mr_error_set(MR_ERR_INPUT, "%s: cannot open as HDF5: %s", path, h5_detail());
    }
    /* read into the trainer only when everything is valid: moments into the gradient block first
     * would clobber it, so read m and v into the checkpoint model's spare copies */
    {
        float *mm = mr_malloc_aligned(m->nparams * sizeof(float));
        float *vv = mr_malloc_aligned(m->nparams * sizeof(float));
        if (!mm || !vv) {
            st = MR_ERR_NOMEM;
        } else if ((st = get_dataset(f, path, "optimizer", "adam_m", 1, &np, mm)) == MR_OK &&
                   (st = get_dataset(f, path, "optimizer", "adam_v", 1, &np, vv)) == MR_OK) {
            g = H5Gopen2(f, "optimizer", H5P_DEFAULT);
            st = g < 0 ? mr_error_set(MR_ERR_INPUT, "%s: group 'optimizer': cannot open: %s",
                                      path, h5_detail())
                       : get_nums(g, path, "steps", &steps, 1, &count, 1);
            if (g >= 0) H5Gclose(g);
            if (st == MR_OK && !(steps >= 0 && steps == floor(steps)))
                st = mr_error_set(MR_ERR_INPUT, "%s: attribute 'optimizer/steps': expected a "
                                  "count >= 0, found %g", path, steps);
            if (st == MR_OK) {
                memcpy(m->params, c->params, m->nparams * sizeof(float));
                memcpy(m->buffers, c->buffers, m->nbuffers * sizeof(float));
                m->meta = c->meta;
                memcpy(mr_nn_trainer_adam_m(t), mm, m->nparams * sizeof(float));
                memcpy(mr_nn_trainer_adam_v(t), vv, m->nparams * sizeof(float));
                *mr_nn_trainer_steps(t) = (long)steps;
            }
        }
        mr_free_aligned(mm);
        mr_free_aligned(vv);
    }
    H5Fclose(f);
    mr_nn_model_destroy(c);
    return st;
}
