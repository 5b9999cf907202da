/*
 * simulate_file.c: the work behind `mrpipe simulate` and the pipeline's simulate stage: a real
 * magnitude volume (NIfTI) -> fastMRI-layout multi-coil HDF5 with kspace (S, C, 2H, W),
 * reconstruction_rss (S, H, W), max/norm attributes and a minimal valid ismrmrd_header (encoded
 * x = 2 recon x: readout oversampling as scanners do), or a BART .cfl with the k-space only.
 * The simulation model is recon/simulate.c (coil maps, background phase, noise streams).
 */
#include "mr_recon.h"
#include "mr_stages.h"

#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Extract slice s along `axis` from vol (S, H, W) as an (h, w) image, rows flipped. */
static void extract(float *img, size_t *h, size_t *w, const mr_array *vol, long axis, size_t s)
{
    size_t S = vol->dims[0], H = vol->dims[1], W = vol->dims[2];
    const float *v = mr_array_f32(vol);
    if (axis == 0) {
        *h = H, *w = W;
        for (size_t y = 0; y < H; y++) memcpy(img + y * W, v + s * H * W + (H - 1 - y) * W, W * 4);
    } else if (axis == 1) {
        *h = S, *w = W;
        for (size_t y = 0; y < S; y++) memcpy(img + y * W, v + (S - 1 - y) * H * W + s * W, W * 4);
    } else {
        *h = S, *w = H;
        for (size_t y = 0; y < S; y++)
            for (size_t x = 0; x < H; x++) img[y * H + x] = v[(S - 1 - y) * H * W + x * W + s];
    }
}

mr_status mr_sim_file_write(const mr_sim_file_params *o)
{
    mr_array *vol = NULL, *rss = NULL;
    mr_nifti_meta meta;
    mr_fastmri_writer *wr = NULL;
    mr_fft_plan *fwd = NULL;
    mr_zf_plan *zf = NULL;
    mr_cfloat *maps = NULL, *ks = NULL;
    float *phase = NULL, *img = NULL, *src_img = NULL;
    mr_array *kall = NULL; /* whole k-space for .cfl outputs */
    char *xml = NULL;
    mr_status st;
    int to_cfl = mr_path_has_suffix(o->output, ".cfl");
    if (!to_cfl && !mr_path_has_suffix(o->output, ".h5") && !mr_path_has_suffix(o->output, ".hdf5"))
        return mr_error_set(MR_ERR_USAGE, "output: expected a .h5 or .cfl file, found '%s'",
                            o->output);
    if ((st = mr_nifti_read(&vol, &meta, o->input)) != MR_OK) return st;
    if (meta.intent_code == 1002)
        MR_WARN("%s: NIfTI intent_code 1002 marks a label atlas, not an image", o->input);
    size_t nsl = vol->dims[o->axis];
    size_t h, w, dummy_h, dummy_w;
    size_t a = o->has_slices ? (size_t)o->a : 0, b = o->has_slices ? (size_t)o->b : nsl;
    if (b > nsl) {
        st = mr_error_set(MR_ERR_USAGE, "slices %zu:%zu: the volume has %zu slices along axis %ld",
                          a, b, nsl, o->axis);
        goto done;
    }
    /* in-plane size of this orientation, then of the simulated images */
    size_t sh = o->axis == 0 ? vol->dims[1] : vol->dims[0];
    size_t sw = o->axis == 2 ? vol->dims[1] : vol->dims[2];
    h = o->has_matrix ? o->mh : sh;
    w = o->has_matrix ? o->mw : sw;
    size_t C = (size_t)o->coils, S = b - a, he = 2 * h, n = he * w;
    double vmax = 0;
    for (size_t i = 0, N = mr_array_numel(vol); i < N; i++)
        if (mr_array_f32(vol)[i] > vmax) vmax = mr_array_f32(vol)[i];
    if (!(vmax > 0)) {
        st = mr_error_set(MR_ERR_INPUT, "%s: the volume is empty (maximum %g); expected a positive "
                          "magnitude image", o->input, vmax);
        goto done;
    }
    double sigma = o->noise * vmax;
    size_t rdims[3] = {S, h, w};
    if ((st = mr_array_create(&rss, MR_FLOAT32, 3, rdims)) != MR_OK) goto done;
    maps = mr_malloc_aligned(C * n * sizeof *maps);
    ks = mr_malloc_aligned(C * n * sizeof *ks);
    phase = mr_malloc(n * sizeof *phase);
    img = mr_malloc(h * w * sizeof *img);
    src_img = mr_malloc(sh * sw * sizeof *src_img);
    if (!maps || !ks || !phase || !img || !src_img) {
        st = MR_ERR_NOMEM;
        goto done;
    }
    if ((st = mr_sim_coil_maps(maps, C, he, w)) != MR_OK) goto done;
    mr_sim_background_phase(phase, he, w, (uint32_t)o->seed);
    if ((st = mr_fft_plan_create(&fwd, C, he, w)) != MR_OK) goto done;
    if ((st = mr_zf_plan_create(&zf, C, he, w, h, w)) != MR_OK) goto done;
    if (to_cfl) {
        size_t kd[4] = {S, C, he, w};
        if ((st = mr_array_create(&kall, MR_COMPLEX64, 4, kd)) != MR_OK) goto done;
    } else {
        if ((st = mr_fastmri_writer_create(&wr, o->output)) != MR_OK) goto done;
        if ((st = mr_fastmri_writer_kspace_begin(wr, 1, S, C, he, w)) != MR_OK) goto done;
    }
    for (size_t s = 0; s < S; s++) {
        extract(src_img, &dummy_h, &dummy_w, vol, o->axis, a + s);
        mr_crop_f32(img, h, w, src_img, sh, sw);
        st = mr_sim_slice_kspace(ks, img, h, w, 2, maps, phase, C, sigma, (uint32_t)o->seed,
                                 (uint32_t)(a + s), fwd);
        if (st == MR_OK && kall) memcpy(mr_array_c64(kall) + s * C * n, ks, C * n * sizeof *ks);
        else if (st == MR_OK) st = mr_fastmri_writer_kspace_slice(wr, s, ks);
        if (st == MR_OK) st = mr_zf_execute(zf, mr_array_f32(rss) + s * h * w, NULL, ks, NULL);
        if (st != MR_OK) goto done;
    }
    if (kall) {
        st = mr_cfl_write(o->output, kall);
        if (st == MR_OK)
            MR_INFO("wrote %s: k-space (%zu, %zu, %zu, %zu) as BART dims [%zu %zu 1 %zu ... %zu]",
                    o->output, S, C, he, w, he, w, C, S);
        goto done;
    }
    {
        double rmax = 0, norm2 = 0;
        const float *r = mr_array_f32(rss);
        for (size_t i = 0, N = mr_array_numel(rss); i < N; i++) {
            if (r[i] > rmax) rmax = r[i];
            norm2 += (double)r[i] * r[i];
        }
        mr_ismrmrd_hdr hdr;
        char pid[128], src_copy[4096];
        float pix_r = o->axis == 0 ? meta.pixdim[1] : meta.pixdim[2];
        float pix_c = o->axis == 2 ? meta.pixdim[1] : meta.pixdim[0];
        if (!(pix_r > 0)) pix_r = 1;
        if (!(pix_c > 0)) pix_c = 1;
        memset(&hdr, 0, sizeof hdr);
        hdr.enc_x = he, hdr.enc_y = w, hdr.enc_z = 1;
        hdr.recon_x = h, hdr.recon_y = w, hdr.recon_z = 1;
        hdr.enc_fov[0] = 2.0 * h * pix_r, hdr.enc_fov[1] = w * pix_c, hdr.enc_fov[2] = 1;
        hdr.recon_fov[0] = h * pix_r, hdr.recon_fov[1] = w * pix_c, hdr.recon_fov[2] = 1;
        hdr.has_e1_limits = 1, hdr.e1_min = 0, hdr.e1_max = (long)w - 1, hdr.e1_center = (long)w / 2;
        hdr.has_slice_limits = 1, hdr.slice_min = 0, hdr.slice_max = (long)S - 1;
        hdr.slice_center = (long)S / 2;
        hdr.receiver_channels = (long)C;
        snprintf(hdr.acquisition, sizeof hdr.acquisition, "MRPIPE_SIM");
        snprintf(src_copy, sizeof src_copy, "%s", o->input);
        if (snprintf(pid, sizeof pid, "%s", basename(src_copy)) >= (int)sizeof pid)
            pid[sizeof pid - 1] = '\0'; /* an identifier, cut to the header's field size */
        memcpy(hdr.patient_id, pid, sizeof pid);
        if ((st = mr_ismrmrd_hdr_format(&xml, &hdr)) != MR_OK) goto done;
        if ((st = mr_fastmri_writer_image(wr, "reconstruction_rss", rss)) != MR_OK) goto done;
        if ((st = mr_fastmri_writer_header(wr, xml)) != MR_OK) goto done;
        if ((st = mr_fastmri_writer_attr_double(wr, "max", rmax)) != MR_OK) goto done;
        if ((st = mr_fastmri_writer_attr_double(wr, "norm", sqrt(norm2))) != MR_OK) goto done;
        if ((st = mr_fastmri_writer_attr_string(wr, "acquisition", "MRPIPE_SIM")) != MR_OK) goto done;
        if ((st = mr_fastmri_writer_attr_string(wr, "patient_id", pid)) != MR_OK) goto done;
        if ((st = mr_fastmri_writer_attr_double(wr, "sim_noise_fraction", o->noise)) != MR_OK) goto done;
        if ((st = mr_fastmri_writer_attr_double(wr, "sim_noise_sigma", sigma)) != MR_OK) goto done;
        if ((st = mr_fastmri_writer_attr_double(wr, "sim_seed", (double)o->seed)) != MR_OK) goto done;
        if ((st = mr_fastmri_writer_attr_double(wr, "sim_axis", (double)o->axis)) != MR_OK) goto done;
        if ((st = mr_fastmri_writer_attr_double(wr, "sim_first_slice", (double)a)) != MR_OK) goto done;
        if ((st = mr_fastmri_writer_attr_string(wr, "sim_source", o->input)) != MR_OK) goto done;
        st = mr_fastmri_writer_commit(wr);
        wr = NULL;
        if (st == MR_OK)
            MR_INFO("wrote %s: kspace (%zu, %zu, %zu, %zu), reconstruction_rss (%zu, %zu, %zu), "
                    "noise sigma %.4g", o->output, S, C, he, w, S, h, w, sigma);
    }
done:
    mr_fft_save_wisdom();
    mr_fastmri_writer_abort(wr);
    mr_fft_plan_destroy(fwd);
    mr_zf_plan_destroy(zf);
    mr_array_destroy(vol);
    mr_array_destroy(rss);
    mr_free_aligned(maps);
    mr_free_aligned(ks);
    free(phase);
    free(img);
    free(src_img);
    mr_array_destroy(kall);
    free(xml);
    return st;
}
