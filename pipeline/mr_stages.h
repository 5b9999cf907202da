/*
 * mr_stages.h: pipeline-internal: the config-driven pipeline. A configuration (mr_config.h) names
 * inputs, an output directory and an ordered mapping of stages; each stage is a table entry
 * {name, keys, create(config), run(state, scan), destroy} (../shared/STYLE.md rule 9) chosen by
 * name. mr_pipeline_create checks everything before any work starts (unknown stage or key, wrong
 * type, missing required key, input or reference file not found: each error names the key and its
 * line); mr_pipeline_scan_run then runs the stages on one scan, writing into a work directory.
 * The batch runner (batch.c) adds resumable, atomic per-scan output sets, worker processes, shards,
 * progress and the summary. See docs/configs.md.
 */
#ifndef MR_STAGES_H
#define MR_STAGES_H

#include "mr_config.h"
#include "mr_io.h"
#include "mr_validation.h"

/* ---------------------------------------------------------------- stage table */

typedef enum { MR_KEY_STRING = 0, MR_KEY_INT, MR_KEY_FLOAT, MR_KEY_BOOL, MR_KEY_LIST } mr_key_type;

/* One documented key of a stage. */
typedef struct {
    const char *name;
    mr_key_type type;
    const char *def;  /* default as YAML text (filled into the resolved config); NULL: none */
    int required;     /* 1: must be given (def is then NULL) */
    const char *doc;  /* one line: meaning, units, allowed values */
} mr_stage_key;

typedef struct mr_scan mr_scan;
typedef struct mr_pipeline mr_pipeline;

/* What create() gets: the configuration, this stage's mapping (defaults filled in, keys already
 * checked against the table for names and types), its label, and the pipeline (inputs known). */
typedef struct {
    const mr_config *config;
    const mr_cfg_node *node;
    const char *label;
    const mr_pipeline *pipeline;
} mr_stage_ctx;

typedef struct {
    const char *name;
    const char *summary;
    const mr_stage_key *keys; /* terminated by {NULL} */
    /* Check the values (errors name the key and line) and make the per-process state. */
    mr_status (*create)(void **state, const mr_stage_ctx *ctx);
    /* Run on one scan; outputs go to scan->work_dir. */
    mr_status (*run)(void *state, mr_scan *scan);
    void (*destroy)(void *state);
} mr_stage;

/* The stages, NULL-terminated, in their usual order. */
extern const mr_stage *const mr_stages[];
const mr_stage *mr_stage_find(const char *name);

extern const mr_stage mr_stage_simulate, mr_stage_read, mr_stage_recon, mr_stage_denoise,
    mr_stage_validate, mr_stage_write, mr_stage_dicom_send, mr_stage_report;

/* A list key of image labels (write.images, validate.images, denoise.images): each must name an
 * image made before this stage: a recon stage's name, a denoise stage's output (`<image>_<suffix>`)
 * or `input` (the image of a DICOM / NIfTI input). Error naming the entry and its line (and the
 * labels known). *out (n_out labels) is NULL for an empty list. */
mr_status mr_stage_check_images(char (**out)[64], size_t *n_out, const mr_stage_ctx *x,
                                const mr_cfg_node *list);

/* Is `label` an image made before the stage instance `before` (index in p->stages)? */
int mr_pipeline_image_known(const mr_pipeline *p, size_t before, const char *label);

/* Index of the stage instance whose mapping is ctx->node (the stage being created). */
size_t mr_stage_ctx_index(const mr_stage_ctx *x);

/* 1 when a write stage's mapping lists the dicom format (dicom_send's check). */
int mr_stage_write_has_dicom(const mr_cfg_node *write_node);

/* The labels a denoise stage's state makes (for mr_pipeline_image_known). */
size_t mr_stage_denoise_labels(const void *state, const char (**labels)[64]);

/* ---------------------------------------------------------------- one scan */

#define MR_SCAN_MAX_IMAGES 32
#define MR_PIPELINE_MAX_STAGES 32

/* An image volume a stage produced (a reconstruction, a denoised image) or read (`input`). */
typedef struct {
    char label[64];           /* the stage instance's name (recon), `<image>_<suffix>` (denoise) or
                                 `input`; names output files */
    char method[32];          /* reconstruction method, "denoise", or "input" */
    mr_array *image;          /* float32 (S, H, W) magnitude, owned */
    mr_array *uncertainty;    /* float32 (S, H, W) per-pixel SD of image, owned, or NULL (written
                                 as <label>_sd.* by write, shown by report) */
    char uncertainty_kind[16];  /* what the SD is: "model", "replica", ... ("" when none) */
    mr_array *cplx;           /* complex64 (S, H, W), owned, or NULL */
    float *mask1d;            /* (mask_len) 1-D column mask applied, owned, or NULL */
    size_t mask_len;
    double *noise_sd;         /* (S) per slice the coil noise SD estimated from the k-space
                                 (mr_noise_sd_estimate; image units), owned, or NULL */
    int coils;                /* the receive coils of the k-space it came from, or 0 */
    double mask_difficulty;   /* mr_mask_difficulty of that k-space and mask1d, or 0 */
    int has_metrics;
    mr_metrics_result metrics; /* against the scan's reference (validate) */
} mr_scan_image;

/* What an input is (decided when the pipeline is built, mr_pipeline.input_kinds). */
typedef enum {
    MR_INPUT_KSPACE = 0, /* fastMRI / ISMRMRD .h5, BART .cfl (or NIfTI made k-space by simulate) */
    MR_INPUT_NIFTI,      /* a NIfTI magnitude volume, read as the image `input` */
    MR_INPUT_DICOM,      /* a DICOM series (a file or a folder holding one series), image `input` */
} mr_input_kind;

struct mr_scan {
    size_t index;                  /* position in the pipeline's input list */
    const char *id;                /* output name (the input's base name without extension) */
    const char *input;             /* the input as resolved */
    mr_input_kind kind;            /* what the input is */
    int image_loaded;              /* 1: an image input has been read into images[] as `input` */
    mr_dicom_source *dicom;        /* DICOM input: its source (patient, study, geometry, refs) for
                                      derived series; owned (mr_dicom_source_free + free), or NULL */
    mr_nifti_meta *nifti;          /* image input: its geometry for NIfTI outputs; owned, or NULL */
    mr_dicom_written *series;      /* (n_series) DICOM series the write stage made (dicom_send
                                      sends them); owned */
    size_t n_series;
    char kspace_path[4096];        /* the k-space read: the input, or the simulated file */
    char work_dir[4096];           /* where stages write (a temporary directory) */
    mr_kspace_source *src;         /* opened by read (or by the first stage that needs it) */
    size_t slice_a, slice_b;       /* k-space slices used, [a, b) */
    mr_array *reference;           /* float32 (S, H, W) or NULL */
    char reference_desc[4200];     /* what the reference was read from */
    mr_scan_image images[MR_SCAN_MAX_IMAGES];
    size_t n_images;
    char drop[4][4096];            /* work files removed before the outputs are committed */
    size_t n_drop;
    double stage_seconds[MR_PIPELINE_MAX_STAGES];
};

/* Open scan->kspace_path if not yet open (slices default to all). MR_ERR_USAGE for an image input
 * (DICOM, NIfTI): nothing to reconstruct. */
mr_status mr_scan_open_kspace(mr_scan *scan);

/* Read an image input (DICOM series, NIfTI volume) into images[] as `input` if not yet read (its
 * DICOM source and NIfTI geometry kept in scan->dicom / scan->nifti); a no-op for k-space inputs. */
mr_status mr_scan_load_image(mr_scan *scan);

/* Free what the scan holds (not the struct). */
void mr_scan_clear(mr_scan *scan);

/* ---------------------------------------------------------------- the pipeline */

typedef struct {
    const mr_stage *stage;
    void *state;
    char label[64];
    const mr_cfg_node *node;
} mr_stage_instance;

struct mr_pipeline {
    mr_config *config;             /* owned; defaults filled in */
    mr_stage_instance stages[MR_PIPELINE_MAX_STAGES];
    size_t n_stages;
    char **inputs;                 /* (n_inputs) resolved input paths, in order */
    char **ids;                    /* (n_inputs) output names, unique */
    mr_input_kind *input_kinds;    /* (n_inputs) what each input is */
    size_t n_inputs;
    char out_dir[4096];
    int flat;                      /* 1: one scan's outputs directly in out_dir */
    char config_hash[65];          /* SHA-256 of the resolved stages + mrpipe version */
    mr_text resolved;              /* the resolved configuration as YAML */
};

/* Check a configuration and build the pipeline (takes ownership of c, also on failure). Nothing is
 * written. */
mr_status mr_pipeline_create(mr_pipeline **out, mr_config *c);
void mr_pipeline_destroy(mr_pipeline *p);

/* Load a config file, apply "--set" assignments in order, build the pipeline. */
mr_status mr_pipeline_load(mr_pipeline **out, const char *path, const char *const *sets,
                           size_t n_sets);

/* Run every stage on input `index`, writing into work_dir (which must exist). scan is filled (the
 * caller clears it with mr_scan_clear). Errors are prefixed with the stage's label. */
mr_status mr_pipeline_scan_run(const mr_pipeline *p, size_t index, const char *work_dir,
                               mr_scan *scan);

/* Does a stage of this type appear? */
int mr_pipeline_has_stage(const mr_pipeline *p, const char *name);

/* ---------------------------------------------------------------- batch */

typedef struct {
    int jobs;              /* worker processes (>= 1) */
    int threads;           /* threads per worker; 0: cores / jobs */
    long shard_i, shard_n; /* this run processes inputs i with i % shard_n == shard_i; n 0: all */
    const char *only_id;   /* process just this scan (Snakemake), or NULL */
    int force;             /* redo scans whose marker matches */
    int progress;          /* 1: progress bar on stderr */
    int fork_workers;      /* 0: run scans in this process (mrpipe run) */
    int gather_only;       /* 1: no processing, just the summary over all inputs */
    int argc;              /* the command line, recorded in the log */
    char **argv;
} mr_batch_options;

typedef struct {
    size_t total, done, skipped, failed, missing;
} mr_batch_counts;

/* Process the pipeline's inputs (this shard), then write the summary. Returns MR_OK when the batch
 * ran (counts say how many failed) or a status for what stopped it (output directory not
 * writable...). */
mr_status mr_batch_run(const mr_pipeline *p, const mr_batch_options *o, mr_batch_counts *counts);

/* The input indices of shard i of n (n >= 1): i, i + n, i + 2n, ... Exposed for tests. */
size_t mr_batch_shard_count(size_t n_inputs, long shard_i, long shard_n);

/* ---------------------------------------------------------------- simulation (mrpipe simulate) */

typedef struct {
    const char *input;       /* NIfTI magnitude volume */
    const char *output;      /* .h5 (fastMRI layout) or .cfl (k-space only) */
    long coils;              /* >= 1 */
    double noise;            /* std as a fraction of the volume max */
    long axis;               /* 0, 1, 2 */
    long seed;
    int has_slices;          /* slices [a, b) along axis */
    long a, b;
    int has_matrix;          /* centre-crop / zero-pad to (mh, mw) */
    size_t mh, mw;
} mr_sim_file_params;

/* What `mrpipe simulate` does (docs/cli.md): read the volume, simulate multi-coil k-space with 2x
 * readout oversampling, write the output atomically. MR_ERR_USAGE for a slice range outside the
 * volume ("slices A:B: ..."), MR_ERR_INPUT for an empty volume or unreadable input. */
mr_status mr_sim_file_write(const mr_sim_file_params *p);

#endif
