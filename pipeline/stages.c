/*
 * stages.c: the stage table and the pipeline built from a configuration. Everything that can be
 * checked is checked here, before any work: top-level keys, inputs (file / glob / manifest, each
 * file must exist), the output directory, each stage's name and keys against its table entry
 * (unknown key, wrong type, missing required key), the stage order; then every stage's create()
 * checks its values. Defaults are filled in, so the resolved configuration (saved next to the
 * outputs, hashed into each scan's marker) says exactly what ran.
 */
#define _GNU_SOURCE
#include "mr_stages.h"

#include <glob.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

const mr_stage *const mr_stages[] = {
    &mr_stage_simulate, &mr_stage_read,       &mr_stage_recon,  &mr_stage_denoise,
    &mr_stage_validate, &mr_stage_write,      &mr_stage_dicom_send, &mr_stage_report, NULL,
};

const mr_stage *mr_stage_find(const char *name)
{
    for (const mr_stage *const *s = mr_stages; *s; s++)
        if (!strcmp((*s)->name, name)) return *s;
    return NULL;
}

static const char *type_name(mr_key_type t)
{
    static const char *names[] = {"text", "integer", "number", "true/false", "list"};
    return names[t];
}

/* ================================================================ stage keys */

static mr_status check_key_type(const mr_config *c, const mr_cfg_node *v, const mr_stage_key *k)
{
    const char *s;
    long l;
    double d;
    int b;
    switch (k->type) {
    case MR_KEY_STRING: return mr_cfg_as_string(&s, c, v);
    case MR_KEY_INT: return mr_cfg_as_long(&l, c, v, -(1L << 62), 1L << 62);
    case MR_KEY_FLOAT: return mr_cfg_as_double(&d, c, v, -1e300, 1e300);
    case MR_KEY_BOOL: return mr_cfg_as_bool(&b, c, v);
    case MR_KEY_LIST:
        if (v->kind != MR_CFG_SEQ)
            return mr_config_error(c, v, MR_ERR_USAGE, "expected a list (e.g. [a, b]), found %s",
                                   v->kind == MR_CFG_MAP ? "a mapping" : "a single value");
        for (size_t i = 0; i < v->n; i++)
            if (v->items[i]->kind != MR_CFG_SCALAR)
                return mr_config_error(c, v->items[i], MR_ERR_USAGE,
                                       "expected a list of values, found a nested %s",
                                       v->items[i]->kind == MR_CFG_MAP ? "mapping" : "list");
        return MR_OK;
    }
    return MR_OK;
}

/* Parse "key: DEFAULT" and copy the value into map[key]. */
static mr_status put_default(mr_cfg_node *map, const mr_stage_key *k)
{
    mr_config *tmp = NULL;
    char text[512];
    mr_status st;
    snprintf(text, sizeof text, "%s: %s\n", k->name, k->def);
    if ((st = mr_config_parse(&tmp, text, "default")) != MR_OK) return st;
    st = mr_cfg_put_copy(map, k->name, mr_cfg_child(tmp->root, k->name));
    mr_config_destroy(tmp);
    return st;
}

static mr_status check_stage_keys(const mr_config *c, mr_cfg_node *node, const mr_stage *s)
{
    mr_status st;
    for (size_t i = 0; i < node->n; i++) {
        const mr_stage_key *k = s->keys;
        if (!strcmp(node->keys[i], "stage")) continue;
        for (; k->name; k++)
            if (!strcmp(k->name, node->keys[i])) break;
        if (!k->name) {
            char known[1024] = "";
            for (k = s->keys; k->name; k++) {
                strncat(known, known[0] ? ", " : "", sizeof known - strlen(known) - 1);
                strncat(known, k->name, sizeof known - strlen(known) - 1);
            }
            return mr_config_error(c, node->items[i], MR_ERR_USAGE,
                                   "unknown key for stage '%s' (keys: %s; see mrpipe stages)",
                                   s->name, known[0] ? known : "none");
        }
        if ((st = check_key_type(c, node->items[i], k)) != MR_OK) return st;
    }
    for (const mr_stage_key *k = s->keys; k->name; k++) {
        if (mr_cfg_child(node, k->name)) continue;
        if (k->required)
            return mr_config_error(c, node, MR_ERR_USAGE, "missing required key '%s' (%s: %s)",
                                   k->name, type_name(k->type), k->doc);
        if (k->def && (st = put_default(node, k)) != MR_OK) return st;
    }
    return MR_OK;
}

/* ================================================================ inputs */

static const char *const g_exts[] = {".nii.gz", ".nii", ".h5", ".hdf5", ".cfl", ".hdr", ".dcm",
                                     NULL};

static int is_nifti(const char *p)
{
    return mr_path_has_suffix(p, ".nii") || mr_path_has_suffix(p, ".nii.gz");
}

/* Input name without directory and known extension. */
static void input_id(char *out, size_t size, const char *path)
{
    char trimmed[4096];
    size_t n = (size_t)snprintf(trimmed, sizeof trimmed, "%s", path);
    while (n > 1 && trimmed[n - 1] == '/') trimmed[--n] = '\0'; /* a DICOM folder "dir/" */
    const char *base = strrchr(trimmed, '/');
    base = base ? base + 1 : trimmed;
    if (snprintf(out, size, "%s", base) >= (int)size) out[size - 1] = '\0';
    for (const char *const *e = g_exts; *e; e++)
        if (mr_path_has_suffix(out, *e) && strlen(out) > strlen(*e)) {
            out[strlen(out) - strlen(*e)] = '\0';
            break;
        }
}

/* Path relative to the config's directory (file values) or the current directory (--set). */
static void resolve_rel(char *out, size_t size, const mr_config *c, const mr_cfg_node *n,
                        const char *value)
{
    int k = value[0] == '/' || n->line == 0 || !strcmp(c->dir, ".")
                ? snprintf(out, size, "%s", value)
                : snprintf(out, size, "%s/%s", c->dir, value);
    if (k < 0 || (size_t)k >= size) out[size - 1] = '\0'; /* cut; the existence check fails */
}

static int input_exists(const char *path)
{
    char buf[8300];
    if (access(path, R_OK) == 0) return 1;
    if (snprintf(buf, sizeof buf, "%s.cfl", path) >= (int)sizeof buf) return 0;
    return access(buf, R_OK) == 0; /* BART names may omit .cfl */
}

static mr_status add_input(mr_pipeline *p, const char *path)
{
    char **in = realloc(p->inputs, (p->n_inputs + 1) * sizeof *in);
    if (!in) return mr_error_set(MR_ERR_NOMEM, "out of memory");
    p->inputs = in;
    char **ids = realloc(p->ids, (p->n_inputs + 1) * sizeof *ids);
    if (!ids) return mr_error_set(MR_ERR_NOMEM, "out of memory");
    p->ids = ids;
    char id[512];
    input_id(id, sizeof id, path);
    p->inputs[p->n_inputs] = strdup(path);
    p->ids[p->n_inputs] = strdup(id);
    if (!p->inputs[p->n_inputs] || !p->ids[p->n_inputs]) {
        free(p->inputs[p->n_inputs]);
        free(p->ids[p->n_inputs]);
        return mr_error_set(MR_ERR_NOMEM, "out of memory");
    }
    p->n_inputs++;
    return MR_OK;
}

static mr_status add_file(mr_pipeline *p, const mr_config *c, const mr_cfg_node *n)
{
    const char *v;
    char path[4096];
    mr_status st;
    if ((st = mr_cfg_as_string(&v, c, n)) != MR_OK) return st;
    if (!v[0]) return mr_config_error(c, n, MR_ERR_USAGE, "expected a file name, found nothing");
    resolve_rel(path, sizeof path, c, n, v);
    if (!input_exists(path)) return mr_config_error(c, n, MR_ERR_INPUT, "input file %s not found", path);
    return add_input(p, path);
}

static mr_status add_glob(mr_pipeline *p, const mr_config *c, const mr_cfg_node *n)
{
    const char *v;
    char pattern[4096];
    glob_t g;
    mr_status st;
    if ((st = mr_cfg_as_string(&v, c, n)) != MR_OK) return st;
    resolve_rel(pattern, sizeof pattern, c, n, v);
    int rc = glob(pattern, 0, NULL, &g); /* sorted: the batch order is deterministic */
    if (rc == GLOB_NOMATCH || (rc == 0 && g.gl_pathc == 0)) {
        if (rc == 0) globfree(&g);
        return mr_config_error(c, n, MR_ERR_INPUT, "no file matches '%s'", pattern);
    }
    if (rc != 0) return mr_config_error(c, n, MR_ERR_INPUT, "cannot read the files of '%s'", pattern);
    for (size_t i = 0; i < g.gl_pathc && st == MR_OK; i++)
        if (!mr_path_has_suffix(g.gl_pathv[i], ".hdr")) st = add_input(p, g.gl_pathv[i]);
    globfree(&g);
    return st;
}

static mr_status add_manifest(mr_pipeline *p, const mr_config *c, const mr_cfg_node *n)
{
    const char *v;
    char path[4096], line[4096], dir[4096], copy[4096];
    mr_status st;
    FILE *f;
    int lineno = 0;
    if ((st = mr_cfg_as_string(&v, c, n)) != MR_OK) return st;
    resolve_rel(path, sizeof path, c, n, v);
    if (!(f = fopen(path, "r")))
        return mr_config_error(c, n, MR_ERR_INPUT, "manifest %s not found", path);
    snprintf(copy, sizeof copy, "%s", path);
    snprintf(dir, sizeof dir, "%s", dirname(copy));
    while (st == MR_OK && fgets(line, sizeof line, f)) {
        char *s = line, full[8200];
        lineno++;
        s[strcspn(s, "\r\n")] = '\0';
        while (*s == ' ' || *s == '\t') s++;
        size_t len = strlen(s);
        while (len && (s[len - 1] == ' ' || s[len - 1] == '\t')) s[--len] = '\0';
        if (!*s || *s == '#') continue;
        if (s[0] == '/') snprintf(full, sizeof full, "%s", s);
        else snprintf(full, sizeof full, "%s/%s", dir, s);
        if (!input_exists(full))
            st = mr_config_error(c, n, MR_ERR_INPUT, "%s line %d: input file %s not found", path,
                                 lineno, full);
        else st = add_input(p, full);
    }
    fclose(f);
    if (st == MR_OK && p->n_inputs == 0)
        st = mr_config_error(c, n, MR_ERR_INPUT, "manifest %s lists no file", path);
    return st;
}

static mr_status resolve_inputs(mr_pipeline *p, const mr_config *c, const mr_cfg_node *in)
{
    mr_status st = MR_OK;
    int kinds = 0;
    if (!in) return mr_config_error(c, c->root, MR_ERR_USAGE, "missing required key 'inputs' "
                                    "(file:, glob: or manifest:)");
    if (in->kind != MR_CFG_MAP)
        return mr_config_error(c, in, MR_ERR_USAGE, "expected a mapping with one of file:, glob:, "
                               "manifest:");
    for (size_t i = 0; i < in->n && st == MR_OK; i++) {
        const char *k = in->keys[i];
        const mr_cfg_node *v = in->items[i];
        kinds++;
        if (!strcmp(k, "file") || !strcmp(k, "glob")) {
            mr_status (*add)(mr_pipeline *, const mr_config *, const mr_cfg_node *) =
                k[0] == 'f' ? add_file : add_glob;
            if (v->kind == MR_CFG_SEQ)
                for (size_t j = 0; j < v->n && st == MR_OK; j++) st = add(p, c, v->items[j]);
            else st = add(p, c, v);
        } else if (!strcmp(k, "manifest")) {
            st = add_manifest(p, c, v);
        } else {
            st = mr_config_error(c, v, MR_ERR_USAGE, "unknown key (inputs: file: PATH or [PATHS], "
                                 "glob: PATTERN, manifest: FILE)");
        }
    }
    if (st == MR_OK && kinds == 0)
        st = mr_config_error(c, in, MR_ERR_USAGE, "expected one of file:, glob:, manifest:");
    if (st == MR_OK && p->n_inputs == 0)
        st = mr_config_error(c, in, MR_ERR_USAGE, "no inputs");
    /* output names must be unique */
    for (size_t i = 0; st == MR_OK && i < p->n_inputs; i++)
        for (size_t j = 0; j < i; j++)
            if (!strcmp(p->ids[i], p->ids[j])) {
                st = mr_config_error(c, in, MR_ERR_INPUT, "two inputs have the output name '%s' "
                                     "(%s and %s); rename one", p->ids[i], p->inputs[j],
                                     p->inputs[i]);
                break;
            }
    return st;
}

/* 1: "DICM" at byte 128 (a DICOM PS3.10 file). */
static int has_dicm_magic(const char *path)
{
    unsigned char b[132];
    FILE *f = fopen(path, "rb");
    int ok = f && fread(b, 1, sizeof b, f) == sizeof b && !memcmp(b + 128, "DICM", 4);
    if (f) fclose(f);
    return ok;
}

/* What each input is: with a simulate stage every input becomes k-space; otherwise a NIfTI volume
 * or a DICOM series (a folder, or a file with the DICM magic) is an image input; anything else is
 * k-space (its reader says what is wrong with it when the scan runs). */
static mr_status classify_inputs(mr_pipeline *p)
{
    int sim = mr_pipeline_has_stage(p, "simulate");
    if (!(p->input_kinds = mr_calloc(p->n_inputs ? p->n_inputs : 1, sizeof *p->input_kinds)))
        return MR_ERR_NOMEM;
    for (size_t i = 0; i < p->n_inputs; i++) {
        const char *in = p->inputs[i];
        if (sim) p->input_kinds[i] = MR_INPUT_KSPACE;
        else if (is_nifti(in)) p->input_kinds[i] = MR_INPUT_NIFTI;
        else if (mr_path_is_dir(in) || has_dicm_magic(in)) p->input_kinds[i] = MR_INPUT_DICOM;
        else p->input_kinds[i] = MR_INPUT_KSPACE;
    }
    return MR_OK;
}

static const char *kind_text(mr_input_kind k)
{
    return k == MR_INPUT_DICOM ? "a DICOM series" : k == MR_INPUT_NIFTI ? "a NIfTI volume" : "k-space";
}

/* The checks that need both the stages and the inputs: recon needs k-space; stages that work on
 * images need a recon before them or image inputs; validate's automatic reference is the k-space
 * file's reconstruction_rss. */
static mr_status check_input_kinds(const mr_pipeline *p, const mr_config *c)
{
    size_t first_image = p->n_inputs, first_kspace = p->n_inputs;
    for (size_t i = p->n_inputs; i-- > 0;) {
        if (p->input_kinds[i] == MR_INPUT_KSPACE) first_kspace = i;
        else first_image = i;
    }
    int has_recon = 0;
    for (size_t i = 0; i < p->n_stages; i++) {
        const mr_stage_instance *in = &p->stages[i];
        const mr_stage *s = in->stage;
        if (s == &mr_stage_recon) {
            if (first_image < p->n_inputs)
                return mr_config_error(c, in->node, MR_ERR_USAGE,
                                       "stage '%s' (recon) needs k-space, but input %s is %s (an "
                                       "image: use denoise, validate, write; a NIfTI volume becomes "
                                       "k-space with a simulate stage)",
                                       in->label, p->inputs[first_image],
                                       kind_text(p->input_kinds[first_image]));
            has_recon = 1;
        }
        if ((s == &mr_stage_validate || s == &mr_stage_write || s == &mr_stage_report ||
             s == &mr_stage_denoise) && !has_recon && first_kspace < p->n_inputs)
            return mr_config_error(c, in->node, MR_ERR_USAGE, "'%s' needs a recon stage before it "
                                   "(input %s is k-space)", s->name, p->inputs[first_kspace]);
        if (s == &mr_stage_validate && first_image < p->n_inputs) {
            const mr_cfg_node *r = mr_cfg_child(in->node, "reference");
            if (r && r->value && !strcmp(r->value, "auto"))
                return mr_config_error(c, r, MR_ERR_USAGE,
                                       "auto takes the reference from a k-space file, but input %s "
                                       "is %s: give a file pattern (e.g. '{dir}/{id}_ref.nii.gz')",
                                       p->inputs[first_image],
                                       kind_text(p->input_kinds[first_image]));
        }
    }
    return MR_OK;
}

size_t mr_stage_ctx_index(const mr_stage_ctx *x)
{
    for (size_t i = 0; i < x->pipeline->n_stages; i++)
        if (x->pipeline->stages[i].node == x->node) return i;
    return x->pipeline->n_stages;
}

int mr_pipeline_image_known(const mr_pipeline *p, size_t before, const char *label)
{
    if (!strcmp(label, "input"))
        for (size_t i = 0; i < p->n_inputs; i++)
            if (p->input_kinds && p->input_kinds[i] != MR_INPUT_KSPACE) return 1;
    for (size_t j = 0; j < before && j < p->n_stages; j++) {
        const mr_stage_instance *in = &p->stages[j];
        if (in->stage == &mr_stage_recon && !strcmp(in->label, label)) return 1;
        if (in->stage == &mr_stage_denoise && in->state) {
            const char (*labels)[64];
            size_t n = mr_stage_denoise_labels(in->state, &labels);
            for (size_t k = 0; k < n; k++)
                if (!strcmp(labels[k], label)) return 1;
        }
    }
    return 0;
}

/* ================================================================ the pipeline */

int mr_pipeline_has_stage(const mr_pipeline *p, const char *name)
{
    for (size_t i = 0; i < p->n_stages; i++)
        if (!strcmp(p->stages[i].stage->name, name)) return 1;
    return 0;
}

static int valid_label(const char *s)
{
    if (!*s || strlen(s) >= 64) return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '_' || *s == '-'))
            return 0;
    return 1;
}

static mr_status build_stages(mr_pipeline *p, mr_config *c, mr_cfg_node *stages)
{
    mr_status st;
    if (!stages) return mr_config_error(c, c->root, MR_ERR_USAGE, "missing required key 'stages'");
    if (stages->kind != MR_CFG_MAP || stages->n == 0)
        return mr_config_error(c, stages, MR_ERR_USAGE, "expected a mapping of stages (e.g. "
                               "recon: {method: zf}), found %s",
                               stages->kind == MR_CFG_SEQ ? "a list" : "nothing");
    if (stages->n > MR_PIPELINE_MAX_STAGES)
        return mr_config_error(c, stages, MR_ERR_USAGE, "more than %d stages",
                               MR_PIPELINE_MAX_STAGES);
    for (size_t i = 0; i < stages->n; i++) {
        mr_cfg_node *node = stages->items[i];
        const char *label = stages->keys[i], *type = label;
        if (node->kind == MR_CFG_SCALAR && node->plain &&
            (!node->value[0] || !strcmp(node->value, "~") || !strcmp(node->value, "null"))) {
            node->kind = MR_CFG_MAP; /* "recon:" with nothing: all defaults */
            free(node->value);
            node->value = NULL;
        }
        if (node->kind != MR_CFG_MAP)
            return mr_config_error(c, node, MR_ERR_USAGE, "expected a mapping of the stage's keys, "
                                   "found %s", node->kind == MR_CFG_SEQ ? "a list" : "a value");
        if (!valid_label(label))
            return mr_config_error(c, node, MR_ERR_USAGE, "a stage's name must be letters, digits, "
                                   "'_' or '-' (it names output files)");
        mr_cfg_node *tn = mr_cfg_child(node, "stage");
        if (tn && (st = mr_cfg_as_string(&type, c, tn)) != MR_OK) return st;
        const mr_stage *s = mr_stage_find(type);
        if (!s) {
            char known[512] = "";
            for (const mr_stage *const *k = mr_stages; *k; k++) {
                strncat(known, known[0] ? ", " : "", sizeof known - strlen(known) - 1);
                strncat(known, (*k)->name, sizeof known - strlen(known) - 1);
            }
            return mr_config_error(c, tn ? tn : node, MR_ERR_USAGE,
                                   "unknown stage '%s' (stages: %s; a stage of another type "
                                   "takes 'stage: TYPE')", type, known);
        }
        if ((st = check_stage_keys(c, node, s)) != MR_OK) return st;
        /* order: simulate first; validate, write and report after a recon; at most one of the
         * single-instance stages */
        int has_recon = mr_pipeline_has_stage(p, "recon");
        if (s == &mr_stage_simulate && i != 0)
            return mr_config_error(c, node, MR_ERR_USAGE, "simulate must be the first stage");
        if (s != &mr_stage_recon && s != &mr_stage_denoise && mr_pipeline_has_stage(p, s->name))
            return mr_config_error(c, node, MR_ERR_USAGE, "a second '%s' stage (only recon and "
                                   "denoise may appear more than once)", s->name);
        /* stages on images need a recon or image inputs: check_input_kinds, once inputs are known */
        if (s == &mr_stage_dicom_send && !mr_pipeline_has_stage(p, "write"))
            return mr_config_error(c, node, MR_ERR_USAGE, "dicom_send needs a write stage with "
                                   "format dicom before it (it sends what write made)");
        if (s == &mr_stage_read && has_recon)
            return mr_config_error(c, node, MR_ERR_USAGE, "read must come before recon");
        if (s == &mr_stage_report && !mr_pipeline_has_stage(p, "validate"))
            return mr_config_error(c, node, MR_ERR_USAGE, "report needs a validate stage before it "
                                   "(the reference)");
        mr_stage_instance *in = &p->stages[p->n_stages++];
        in->stage = s;
        in->node = node;
        snprintf(in->label, sizeof in->label, "%s", label);
    }
    return MR_OK;
}

static mr_status check_output(mr_pipeline *p, mr_config *c)
{
    mr_cfg_node *out = mr_cfg_child(c->root, "output");
    const char *dir = "mrpipe-out", *layout = "auto";
    mr_status st;
    if (out && out->kind != MR_CFG_MAP)
        return mr_config_error(c, out, MR_ERR_USAGE, "expected a mapping (dir:, layout:)");
    for (size_t i = 0; out && i < out->n; i++) {
        if (!strcmp(out->keys[i], "dir")) st = mr_cfg_as_string(&dir, c, out->items[i]);
        else if (!strcmp(out->keys[i], "layout")) {
            st = mr_cfg_as_string(&layout, c, out->items[i]);
            if (st == MR_OK && strcmp(layout, "auto") && strcmp(layout, "flat") &&
                strcmp(layout, "per-scan"))
                st = mr_config_error(c, out->items[i], MR_ERR_USAGE, "expected auto, flat or "
                                     "per-scan, found '%s'", layout);
        } else
            st = mr_config_error(c, out->items[i], MR_ERR_USAGE, "unknown key (output: dir:, "
                                 "layout:)");
        if (st != MR_OK) return st;
        if (!strcmp(out->keys[i], "dir") && !dir[0])
            return mr_config_error(c, out->items[i], MR_ERR_USAGE, "expected a directory, found "
                                   "nothing");
    }
    /* output.dir is relative to the current directory (a shipped config writes where it runs) */
    snprintf(p->out_dir, sizeof p->out_dir, "%s", dir);
    size_t n = strlen(p->out_dir);
    while (n > 1 && p->out_dir[n - 1] == '/') p->out_dir[--n] = '\0';
    if (!strcmp(layout, "flat") && p->n_inputs != 1)
        return mr_config_error(c, mr_cfg_child(out, "layout"), MR_ERR_USAGE, "flat needs exactly "
                               "one input, found %zu", p->n_inputs);
    p->flat = !strcmp(layout, "flat") || (!strcmp(layout, "auto") && p->n_inputs == 1);
    /* fill the defaults so that the resolved config shows them */
    if (!out) {
        mr_config *tmp = NULL;
        if ((st = mr_config_parse(&tmp, "output: {}\n", "default")) != MR_OK) return st;
        st = mr_cfg_put_copy(c->root, "output", mr_cfg_child(tmp->root, "output"));
        mr_config_destroy(tmp);
        if (st != MR_OK) return st;
        out = mr_cfg_child(c->root, "output");
    }
    if (!mr_cfg_child(out, "dir") && (st = mr_cfg_put_scalar(out, "dir", dir, 1)) != MR_OK) return st;
    if (!mr_cfg_child(out, "layout") && (st = mr_cfg_put_scalar(out, "layout", layout, 1)) != MR_OK)
        return st;
    return MR_OK;
}

mr_status mr_pipeline_create(mr_pipeline **out, mr_config *c)
{
    mr_pipeline *p;
    mr_status st = MR_OK;
    *out = NULL;
    if (!(p = mr_calloc(1, sizeof *p))) {
        mr_config_destroy(c);
        return MR_ERR_NOMEM;
    }
    p->config = c;
    for (size_t i = 0; i < c->root->n && st == MR_OK; i++) {
        const char *k = c->root->keys[i];
        if (strcmp(k, "name") && strcmp(k, "description") && strcmp(k, "inputs") &&
            strcmp(k, "output") && strcmp(k, "stages"))
            st = mr_config_error(c, c->root->items[i], MR_ERR_USAGE,
                                 "unknown key (top-level keys: name, description, inputs, output, "
                                 "stages)");
    }
    if (st == MR_OK) st = build_stages(p, c, mr_cfg_child(c->root, "stages"));
    if (st == MR_OK) st = resolve_inputs(p, c, mr_cfg_child(c->root, "inputs"));
    if (st == MR_OK) st = check_output(p, c);
    /* simulate needs NIfTI; without it, NIfTI volumes and DICOM series are image inputs */
    for (size_t i = 0; st == MR_OK && i < p->n_inputs; i++)
        if (mr_pipeline_has_stage(p, "simulate") && !is_nifti(p->inputs[i]))
            st = mr_config_error(c, mr_cfg_child(c->root, "inputs"), MR_ERR_USAGE,
                                 "%s: the simulate stage needs NIfTI volumes (.nii, .nii.gz)",
                                 p->inputs[i]);
    if (st == MR_OK) st = classify_inputs(p);
    if (st == MR_OK) st = check_input_kinds(p, c);
    for (size_t i = 0; st == MR_OK && i < p->n_stages; i++) {
        mr_stage_instance *in = &p->stages[i];
        mr_stage_ctx ctx = {c, in->node, in->label, p};
        st = in->stage->create(&in->state, &ctx);
        if (st != MR_OK) in->state = NULL;
    }
    if (st == MR_OK) {
        /* the resolved configuration; the hash covers what decides the outputs: the stages and
         * mrpipe's version (not the inputs or the output directory) */
        mr_text stages_text = {0};
        mr_sha256 h;
        mr_text_printf(&p->resolved, "# resolved by mrpipe %s (defaults filled in)\n",
                       MR_VERSION_STRING);
        mr_cfg_emit(&p->resolved, c->root, 0);
        mr_text_printf(&stages_text, "mrpipe %s\nlayout %s\n", MR_VERSION_STRING,
                       p->flat ? "flat" : "per-scan");
        mr_cfg_emit(&stages_text, mr_cfg_child(c->root, "stages"), 0);
        if (p->resolved.failed || stages_text.failed) st = mr_error_set(MR_ERR_NOMEM, "out of memory");
        mr_sha256_init(&h);
        mr_sha256_update(&h, mr_text_str(&stages_text), stages_text.len);
        mr_sha256_final(&h, NULL, p->config_hash);
        mr_text_free(&stages_text);
    }
    if (st != MR_OK) {
        mr_pipeline_destroy(p);
        return st;
    }
    *out = p;
    return MR_OK;
}

void mr_pipeline_destroy(mr_pipeline *p)
{
    if (!p) return;
    for (size_t i = 0; i < p->n_stages; i++)
        if (p->stages[i].state) p->stages[i].stage->destroy(p->stages[i].state);
    for (size_t i = 0; i < p->n_inputs; i++) {
        free(p->inputs[i]);
        free(p->ids[i]);
    }
    free(p->inputs);
    free(p->ids);
    free(p->input_kinds);
    mr_text_free(&p->resolved);
    mr_config_destroy(p->config);
    free(p);
}

/* ================================================================ one scan */

mr_status mr_scan_open_kspace(mr_scan *scan)
{
    mr_status st;
    if (scan->src) return MR_OK;
    if (scan->kind != MR_INPUT_KSPACE)
        return mr_error_set(MR_ERR_USAGE, "%s is %s, not k-space: nothing to reconstruct",
                            scan->input, kind_text(scan->kind));
    if ((st = mr_kspace_open(&scan->src, scan->kspace_path)) != MR_OK) return st;
    scan->slice_a = 0;
    scan->slice_b = mr_kspace_get_info(scan->src)->slices;
    return MR_OK;
}

void mr_scan_clear(mr_scan *scan)
{
    mr_kspace_close(scan->src);
    mr_array_destroy(scan->reference);
    for (size_t i = 0; i < scan->n_images; i++) {
        mr_scan_image *im = &scan->images[i];
        mr_array_destroy(im->image);
        mr_array_destroy(im->uncertainty);
        mr_array_destroy(im->cplx);
        free(im->mask1d);
        free(im->noise_sd);
        if (im->has_metrics) mr_metrics_result_free(&im->metrics);
    }
    if (scan->dicom) mr_dicom_source_free(scan->dicom);
    free(scan->dicom);
    free(scan->nifti);
    for (size_t i = 0; i < scan->n_series; i++) mr_dicom_written_free(&scan->series[i]);
    free(scan->series);
    memset(scan, 0, sizeof *scan);
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

mr_status mr_pipeline_scan_run(const mr_pipeline *p, size_t index, const char *work_dir,
                               mr_scan *scan)
{
    mr_status st = MR_OK;
    memset(scan, 0, sizeof *scan);
    scan->index = index;
    scan->id = p->ids[index];
    scan->input = p->inputs[index];
    scan->kind = p->input_kinds[index];
    snprintf(scan->kspace_path, sizeof scan->kspace_path, "%s", p->inputs[index]);
    snprintf(scan->work_dir, sizeof scan->work_dir, "%s", work_dir);
    for (size_t i = 0; i < p->n_stages && st == MR_OK; i++) {
        const mr_stage_instance *in = &p->stages[i];
        double t0 = now_seconds();
        MR_DEBUG("%s: stage %s (%s)", scan->id, in->label, in->stage->name);
        st = in->stage->run(in->state, scan);
        scan->stage_seconds[i] = now_seconds() - t0;
        if (st != MR_OK) mr_error_prefix(st, "stage %s: ", in->label);
    }
    /* close the input before the outputs are committed; drop work files not kept */
    mr_kspace_close(scan->src);
    scan->src = NULL;
    for (size_t i = 0; i < scan->n_drop; i++) unlink(scan->drop[i]);
    return st;
}

mr_status mr_pipeline_load(mr_pipeline **out, const char *path, const char *const *sets,
                           size_t n_sets)
{
    mr_config *c = NULL;
    mr_status st;
    *out = NULL;
    if ((st = mr_config_load(&c, path)) != MR_OK) return st;
    for (size_t i = 0; i < n_sets; i++)
        if ((st = mr_config_set(c, sets[i])) != MR_OK) {
            mr_config_destroy(c);
            return st;
        }
    return mr_pipeline_create(out, c);
}
