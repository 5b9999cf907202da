/*
 * mr_config.h: pipeline-internal: YAML pipeline configurations (libyaml) as a tree of nodes that
 * remember their line in the file, `--set a.b.c=value` overrides, typed getters whose errors name
 * the key and its line, a YAML emitter for the resolved configuration, and a growable text buffer.
 *
 * Error messages have one shape: "CONFIG line N: KEY: what was expected, what was found" (N is the
 * 1-based line of the key in the file), or "--set KEY: ..." for a value given on the command line.
 */
#ifndef MR_CONFIG_H
#define MR_CONFIG_H

#include "mr_core.h"

#include <stdio.h>

/* ---------------------------------------------------------------- growable text */

/* A NUL-terminated text that grows as it is appended to; an allocation failure sets `failed` and
 * later appends do nothing (checked once by the owner). */
typedef struct {
    char *s;     /* NUL-terminated when len > 0; NULL while empty */
    size_t len;
    size_t cap;
    int failed;
} mr_text;

void mr_text_append(mr_text *t, const char *s, size_t n);
void mr_text_puts(mr_text *t, const char *s);
void mr_text_printf(mr_text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A JSON string literal (quotes included, control characters escaped). */
void mr_text_json_str(mr_text *t, const char *s);
/* A JSON number (%.17g), null for NaN/inf. */
void mr_text_json_num(mr_text *t, double v);
/* The text ("" when empty). */
const char *mr_text_str(const mr_text *t);
void mr_text_free(mr_text *t);

/* Write text to path atomically (temporary name + rename). */
mr_status mr_text_write_file(const char *path, const mr_text *t);

/* ---------------------------------------------------------------- the node tree */

typedef enum { MR_CFG_SCALAR = 0, MR_CFG_MAP, MR_CFG_SEQ } mr_cfg_kind;

typedef struct mr_cfg_node mr_cfg_node;
struct mr_cfg_node {
    mr_cfg_kind kind;
    char *value;          /* scalar text; NULL for maps and sequences; "" for an empty value */
    int plain;            /* 1: a plain (unquoted) scalar, which may read as a number or a bool */
    int line;             /* 1-based line of the node's key (of the node itself in a sequence);
                             0 when it came from --set */
    char *path;           /* dotted path from the root, e.g. "stages.recon.lambda" */
    size_t n;             /* entries of a map or sequence */
    char **keys;          /* (n) map keys; NULL for sequences */
    mr_cfg_node **items;  /* (n) children */
};

typedef struct {
    char file[4096];      /* the config's path as given; "" when parsed from a string */
    char dir[4096];       /* its directory: relative input paths in the file are relative to it */
    mr_cfg_node *root;    /* a map */
} mr_config;

/* Parse a YAML file (one document whose root is a mapping). Aliases, anchors, tags and duplicate
 * keys are refused. MR_ERR_INPUT naming the file and line for a missing file or bad YAML. */
mr_status mr_config_load(mr_config **out, const char *path);

/* Parse YAML text; `name` is used in messages (e.g. "test.yaml"). */
mr_status mr_config_parse(mr_config **out, const char *text, const char *name);

void mr_config_destroy(mr_config *c);

/* Apply one "dotted.key=value" override. The value is read as YAML (a scalar, or a flow sequence
 * such as [h5, png]). Missing maps on the way are created, except that --set cannot add a stage
 * (a key directly under `stages` that the file does not have): MR_ERR_USAGE naming the key. */
mr_status mr_config_set(mr_config *c, const char *assignment);

/* The child of a map by key, or NULL. */
mr_cfg_node *mr_cfg_child(const mr_cfg_node *map, const char *key);

/* Set (replace or append) map[key] to a plain scalar (used to fill defaults). line 0. */
mr_status mr_cfg_put_scalar(mr_cfg_node *map, const char *key, const char *value, int plain);
/* Set map[key] to a deep copy of `value`. */
mr_status mr_cfg_put_copy(mr_cfg_node *map, const char *key, const mr_cfg_node *value);
/* Remove map[key] if present. */
void mr_cfg_remove(mr_cfg_node *map, const char *key);

/* Keep a message "CONFIG line N: PATH: <fmt>" (or "--set PATH: <fmt>") and return st. */
mr_status mr_config_error(const mr_config *c, const mr_cfg_node *n, mr_status st, const char *fmt,
                          ...) __attribute__((format(printf, 4, 5)));

/* Where a node is, for messages: "demo.yaml line 12: stages.recon.lambda" (static rotating
 * buffer, 4 slots). */
const char *mr_config_where(const mr_config *c, const mr_cfg_node *n);

/* Typed reads of a scalar node; errors name the key and line and say what was found. */
mr_status mr_cfg_as_string(const char **out, const mr_config *c, const mr_cfg_node *n);
mr_status mr_cfg_as_long(long *out, const mr_config *c, const mr_cfg_node *n, long lo, long hi);
mr_status mr_cfg_as_double(double *out, const mr_config *c, const mr_cfg_node *n, double lo,
                           double hi);
mr_status mr_cfg_as_bool(int *out, const mr_config *c, const mr_cfg_node *n);

/* Emit a node as block YAML (maps and sequences of scalars in flow style where short). */
void mr_cfg_emit(mr_text *t, const mr_cfg_node *n, int indent);

#endif
