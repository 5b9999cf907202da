/*
 * cmd_info.c: `mrpipe info FILE`: what a file holds: format, dims, dtype, attributes, header sizes;
 * for DICOM the series found (patient fields only with --show-patient).
 */
#include "mr_pipeline.h"
#include "mr_io.h"

#include <stdio.h>
#include <string.h>

static const char *USAGE = "usage: mrpipe info FILE [--show-patient]\n\n"
                           "Show a file's format, array dims (mrpipe's (S, C, H, W) order), dtype,\n"
                           "attributes and ISMRMRD header sizes. FILE: .h5 (fastMRI or ISMRMRD),\n"
                           ".cfl/.hdr, .nii/.nii.gz, or DICOM (a file, a folder or a DICOMDIR: the\n"
                           "series found, each with its volume geometry). Patient name, ID, birth\n"
                           "date and sex are printed only with --show-patient.\n";

static void print_hdr(const mr_ismrmrd_hdr *h)
{
    printf("  header: encodedSpace %zu x %zu x %zu, reconSpace %zu x %zu x %zu", h->enc_x, h->enc_y,
           h->enc_z, h->recon_x, h->recon_y, h->recon_z);
    if (h->has_e1_limits)
        printf(", kspace_encoding_step_1 [%ld, %ld] centre %ld", h->e1_min, h->e1_max, h->e1_center);
    printf("\n");
    if (h->acquisition[0]) printf("  protocol: %s\n", h->acquisition);
}

static mr_status info_fastmri(const char *path)
{
    mr_fastmri_file *f = NULL;
    mr_status st = mr_fastmri_open(&f, path);
    char buf[256];
    if (st != MR_OK) return st;
    const mr_fastmri_info *in = mr_fastmri_get_info(f);
    printf("%s: fastMRI-layout HDF5\n", path);
    if (in->has_kspace) {
        size_t d[4] = {in->slices, in->coils, in->height, in->width};
        if (in->multicoil)
            printf("  kspace: complex64 %s (slices, coils, H readout, W phase encode)\n",
                   mr_dims_format(buf, sizeof buf, 4, d));
        else {
            size_t d3[3] = {in->slices, in->height, in->width};
            printf("  kspace: complex64 %s (slices, H readout, W phase encode), single-coil\n",
                   mr_dims_format(buf, sizeof buf, 3, d3));
        }
    }
    if (in->ref_name[0])
        printf("  %s: float32 %s\n", in->ref_name,
               mr_dims_format(buf, sizeof buf, in->ref_ndim, in->ref_dims));
    if (in->has_reconstruction) {
        mr_array *a = NULL;
        if (mr_fastmri_read_image(f, "reconstruction", &a) == MR_OK)
            printf("  reconstruction: float32 %s\n", mr_dims_format(buf, sizeof buf, a->ndim, a->dims));
        mr_array_destroy(a);
    }
    if (in->has_mask) printf("  mask: bool (%zu)\n", in->mask_len);
    if (in->has_header) print_hdr(&in->hdr);
    if (in->acquisition[0]) printf("  attribute acquisition: %s\n", in->acquisition);
    if (in->patient_id[0]) printf("  attribute patient_id: %s\n", in->patient_id);
    if (in->has_max) printf("  attribute max: %.9g\n", in->max);
    if (in->has_norm) printf("  attribute norm: %.9g\n", in->norm);
    if (in->has_acceleration) printf("  attribute acceleration: %g\n", in->acceleration);
    if (in->has_num_low) printf("  attribute num_low_frequency: %ld\n", in->num_low_frequency);
    mr_fastmri_close(f);
    return MR_OK;
}

static mr_status info_ismrmrd(const char *path)
{
    mr_ismrmrd_data d;
    char buf[256];
    mr_status st = mr_ismrmrd_read(&d, path, 1);
    if (st != MR_OK) return st;
    printf("%s: ISMRMRD v1 HDF5\n", path);
    printf("  acquisitions: %zu imaging, %zu noise\n", d.n_acquisitions, d.n_noise);
    printf("  kspace: complex64 %s (slices, coils, H readout, W phase encode)\n",
           mr_dims_format(buf, sizeof buf, d.kspace->ndim, d.kspace->dims));
    if (d.noise) printf("  noise samples: %s (samples, coils)\n",
                        mr_dims_format(buf, sizeof buf, d.noise->ndim, d.noise->dims));
    print_hdr(&d.hdr);
    mr_ismrmrd_data_free(&d);
    return MR_OK;
}

static mr_status info_cfl(const char *path)
{
    long dims[16];
    mr_status st = mr_cfl_read_dims(dims, path);
    if (st != MR_OK) return st;
    printf("%s: BART cfl, complex64, dims", path);
    for (int i = 0; i < 16; i++) printf(" %ld", dims[i]);
    printf("\n  as mrpipe (S, C, H, W): (%ld, %ld, %ld, %ld)\n", dims[13], dims[3], dims[0], dims[1]);
    return MR_OK;
}

static mr_status info_nifti(const char *path)
{
    mr_array *a = NULL;
    mr_nifti_meta m;
    char buf[256];
    mr_status st = mr_nifti_read(&a, &m, path);
    if (st != MR_OK) return st;
    printf("%s: NIfTI-1\n  volume: %s (k, j, i) = (S, H, W), read as float32\n", path,
           mr_dims_format(buf, sizeof buf, a->ndim, a->dims));
    printf("  pixdim: %g %g %g mm\n", m.pixdim[0], m.pixdim[1], m.pixdim[2]);
    if (m.intent_code) printf("  intent_code: %d%s\n", m.intent_code,
                              m.intent_code == 1002 ? " (label atlas, not an image)" : "");
    printf("  affine (voxel -> RAS mm):\n");
    for (int r = 0; r < 3; r++)
        printf("    %10.4f %10.4f %10.4f %10.4f\n", m.affine[r][0], m.affine[r][1], m.affine[r][2],
               m.affine[r][3]);
    mr_array_destroy(a);
    return MR_OK;
}

/* DICOM: every series found, and whether it forms one volume (its geometry), or why not. */
static mr_status info_dicom(const char *path, int show_patient)
{
    mr_dicom_set *set = NULL;
    char buf[256];
    mr_status st = mr_dicom_set_open(&set, path);
    if (st != MR_OK) return st;
    size_t n = mr_dicom_set_count(set), uids = 0;
    for (size_t i = 0; i < n; i++)
        uids += mr_dicom_set_series(set, i)->volume <= 1; /* volumes of a split series: once */
    printf("%s: DICOM, %zu series", path, uids);
    if (uids != n) printf(", %zu volumes (multi-echo / multi-volume series split)", n);
    if (mr_dicom_set_skipped(set))
        printf(" (%zu file(s) skipped: not DICOM images)", mr_dicom_set_skipped(set));
    printf("\n");
    for (size_t i = 0; i < n; i++) {
        const mr_dicom_series_info *s = mr_dicom_set_series(set, i);
        mr_dicom_volume *vol = NULL;
        printf("  series %zu: %s\n", i + 1, s->series_uid);
        if (s->volume) {
            char spec[MR_DICOM_SPEC_SIZE];
            printf("    volume %zu of %zu (echoes / time points): --series %s, echo number %ld, "
                   "TE %g ms, time point %ld\n",
                   s->volume, s->volumes, mr_dicom_series_spec(spec, s), s->echo_number,
                   s->echo_time, s->temporal_position);
        }
        printf("    number %ld, description \"%s\", modality %s, %s\n", s->series_number,
               s->description, s->modality[0] ? s->modality : "-",
               s->enhanced ? "multi-frame (enhanced)" : "single-frame");
        printf("    %zu file(s), %zu image(s) of %zu x %zu, SOP class %s\n", s->files, s->images,
               s->rows, s->cols, s->sop_class_uid);
        printf("    study %s\n", s->study_uid);
        if (show_patient)
            printf("    patient: name \"%s\", ID \"%s\", birth date \"%s\", sex \"%s\"\n",
                   s->patient_name, s->patient_id, s->patient_birth_date, s->patient_sex);
        if (mr_dicom_volume_read(&vol, set, i, 0) != MR_OK) {
            printf("    not one volume: %s\n", mr_error_message());
            mr_error_clear();
            continue;
        }
        const mr_dicom_geometry *g = &vol->src.geom;
        double A[4][4];
        printf("    volume: float32 %s (S, H, W), pixel spacing %g x %g mm, slice spacing %g mm, "
               "thickness %g mm\n",
               mr_dims_format(buf, sizeof buf, vol->data->ndim, vol->data->dims),
               g->pixel_spacing[0], g->pixel_spacing[1], g->slice_spacing, g->slice_thickness);
        printf("    orientation (LPS) row %.4f %.4f %.4f, column %.4f %.4f %.4f; first voxel at "
               "%.4f %.4f %.4f\n",
               g->row_dir[0], g->row_dir[1], g->row_dir[2], g->col_dir[0], g->col_dir[1],
               g->col_dir[2], g->origin[0], g->origin[1], g->origin[2]);
        mr_dicom_geometry_affine(A, g);
        printf("    NIfTI affine (voxel i=W, j=H, k=S -> RAS mm):\n");
        for (int r = 0; r < 3; r++)
            printf("      %10.4f %10.4f %10.4f %10.4f\n", A[r][0], A[r][1], A[r][2], A[r][3]);
        mr_dicom_volume_destroy(vol);
    }
    if (n > 1)
        printf("  (a command that needs one volume takes --series UID, or UID:LABEL for one volume "
               "of a multi-echo series)\n");
    mr_dicom_set_close(set);
    return MR_OK;
}

int mr_cmd_info(int argc, char **argv)
{
    int show_patient = 0;
    mr_format fmt;
    mr_status st;
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        fputs(USAGE, stdout);
        return 0;
    }
    if (argc == 3 && !strcmp(argv[2], "--show-patient")) {
        show_patient = 1;
        argc = 2;
    }
    if (argc != 2) return mr_cli_usage_error("info", "expected one FILE");
    if ((st = mr_io_detect_input(&fmt, argv[1])) != MR_OK) return mr_cli_fail("info", st);
    switch (fmt) {
    case MR_FMT_FASTMRI: st = info_fastmri(argv[1]); break;
    case MR_FMT_ISMRMRD: st = info_ismrmrd(argv[1]); break;
    case MR_FMT_CFL: st = info_cfl(argv[1]); break;
    case MR_FMT_NIFTI: st = info_nifti(argv[1]); break;
    case MR_FMT_DICOM: st = info_dicom(argv[1], show_patient); break;
    default: st = mr_error_set(MR_ERR_INPUT, "%s: unknown format", argv[1]);
    }
    return st == MR_OK ? 0 : mr_cli_fail("info", st);
}
