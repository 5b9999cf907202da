/*
 * config.c: YAML pipeline configurations read with libyaml's event parser into a small tree whose
 * nodes keep the line of their key (libyaml's marks), so that every later error (unknown stage or
 * key, wrong type, missing value, file not found) can name the key and its line; `--set` overrides
 * parsed as YAML values; typed getters; a block-YAML emitter for the resolved configuration; and
 * the growable text buffer the pipeline writes its JSON/CSV/HTML with.
 */
#include "mr_config.h"

#include <errno.h>
#include <libgen.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

/* ================================================================ text */

void mr_text_append(mr_text *t, const char *s, size_t n)
{
    if (t->failed) return;
    if (t->len + n + 1 > t->cap) {
        size_t cap = t->cap ? t->cap : 256;
        while (cap < t->len + n + 1) cap *= 2;
        char *p = realloc(t->s, cap);
        if (!p) {
            t->failed = 1;
            return;
        }
        t->s = p;
        t->cap = cap;
    }
    memcpy(t->s + t->len, s, n);
    t->len += n;
    t->s[t->len] = '\0';
}

void mr_text_puts(mr_text *t, const char *s) { mr_text_append(t, s, strlen(s)); }

void mr_text_printf(mr_text *t, const char *fmt, ...)
{
    char small[512];
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) {
        t->failed = 1;
        return;
    }
    if ((size_t)n < sizeof small) {
        mr_text_append(t, small, (size_t)n);
        return;
    }
    char *big = malloc((size_t)n + 1);
    if (!big) {
        t->failed = 1;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    mr_text_append(t, big, (size_t)n);
    free(big);
}

void mr_text_json_str(mr_text *t, const char *s)
{
    mr_text_puts(t, "\"");
    for (; s && *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') mr_text_printf(t, "\\%c", ch);
        else if (ch < 0x20) mr_text_printf(t, "\\u%04x", ch);
        else mr_text_append(t, s, 1);
    }
    mr_text_puts(t, "\"");
}

void mr_text_json_num(mr_text *t, double v)
{
    if (!isfinite(v)) mr_text_puts(t, "null");
    else mr_text_printf(t, "%.17g", v);
}

const char *mr_text_str(const mr_text *t) { return t->s ? t->s : ""; }

void mr_text_free(mr_text *t)
{
    free(t->s);
    memset(t, 0, sizeof *t);
}

mr_status mr_text_write_file(const char *path, const mr_text *t)
{
    mr_atomic_file af;
    mr_status st;
    FILE *f;
    if (t->failed) return mr_error_set(MR_ERR_NOMEM, "%s: out of memory composing the file", path);
    if ((st = mr_atomic_begin(&af, path)) != MR_OK) return st;
    f = fopen(af.tmp_path, "wb");
    if (!f) return mr_error_set(MR_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
    size_t w = t->len ? fwrite(t->s, 1, t->len, f) : 0;
    int bad = w != t->len;
    if (fclose(f) != 0) bad = 1;
    if (bad) {
        mr_atomic_abort(&af);
        return mr_error_set(MR_ERR_IO, "%s: cannot write (disk full?)", path);
    }
    return mr_atomic_commit(&af);
}

/* ================================================================ nodes */

static void node_free(mr_cfg_node *n)
{
    if (!n) return;
    for (size_t i = 0; i < n->n; i++) {
        node_free(n->items[i]);
        if (n->keys) free(n->keys[i]);
    }
    free(n->items);
    free(n->keys);
    free(n->value);
    free(n->path);
    free(n);
}

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = mr_malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

static char *child_path(const char *parent, const char *key)
{
    size_t a = strlen(parent), b = strlen(key);
    char *p = mr_malloc(a + b + 2);
    if (!p) return NULL;
    if (a) {
        memcpy(p, parent, a);
        p[a] = '.';
        memcpy(p + a + 1, key, b + 1);
    } else {
        memcpy(p, key, b + 1);
    }
    return p;
}

static mr_cfg_node *node_new(mr_cfg_kind kind, const char *path, int line)
{
    mr_cfg_node *n = mr_calloc(1, sizeof *n);
    if (!n) return NULL;
    n->kind = kind;
    n->line = line;
    n->path = dup_str(path);
    if (!n->path) {
        free(n);
        return NULL;
    }
    return n;
}

/* Append a child (key may be NULL for sequences). Takes ownership of child. */
static mr_status node_add(mr_cfg_node *parent, const char *key, mr_cfg_node *child)
{
    mr_cfg_node **items = realloc(parent->items, (parent->n + 1) * sizeof *items);
    if (!items) {
        node_free(child);
        return mr_error_set(MR_ERR_NOMEM, "out of memory reading the configuration");
    }
    parent->items = items;
    if (parent->kind == MR_CFG_MAP) {
        char **keys = realloc(parent->keys, (parent->n + 1) * sizeof *keys);
        char *k = dup_str(key);
        if (!keys || !k) {
            free(k);
            if (keys) parent->keys = keys;
            node_free(child);
            return mr_error_set(MR_ERR_NOMEM, "out of memory reading the configuration");
        }
        parent->keys = keys;
        parent->keys[parent->n] = k;
    }
    parent->items[parent->n++] = child;
    return MR_OK;
}

mr_cfg_node *mr_cfg_child(const mr_cfg_node *map, const char *key)
{
    if (!map || map->kind != MR_CFG_MAP) return NULL;
    for (size_t i = 0; i < map->n; i++)
        if (!strcmp(map->keys[i], key)) return map->items[i];
    return NULL;
}

/* Re-root a subtree's paths and lines (copies and --set values). */
static mr_status node_repath(mr_cfg_node *n, const char *path, int line0)
{
    char *p = dup_str(path);
    if (!p) return MR_ERR_NOMEM;
    free(n->path);
    n->path = p;
    if (line0) n->line = 0;
    for (size_t i = 0; i < n->n; i++) {
        char idx[32];
        const char *k = n->keys ? n->keys[i] : (snprintf(idx, sizeof idx, "%zu", i), idx);
        char *cp = child_path(n->path, k); /* `path` may be the old n->path, freed above */
        if (!cp) return MR_ERR_NOMEM;
        mr_status st = node_repath(n->items[i], cp, line0);
        free(cp);
        if (st != MR_OK) return st;
    }
    return MR_OK;
}

static mr_cfg_node *node_copy(const mr_cfg_node *src)
{
    mr_cfg_node *n = node_new(src->kind, src->path, src->line);
    if (!n) return NULL;
    n->plain = src->plain;
    if (src->value && !(n->value = dup_str(src->value))) goto fail;
    for (size_t i = 0; i < src->n; i++) {
        mr_cfg_node *c = node_copy(src->items[i]);
        if (!c || node_add(n, src->keys ? src->keys[i] : NULL, c) != MR_OK) goto fail;
    }
    return n;
fail:
    node_free(n);
    return NULL;
}

/* Replace map[key] with child (appending when absent). Takes ownership of child. */
static mr_status node_put(mr_cfg_node *map, const char *key, mr_cfg_node *child)
{
    for (size_t i = 0; i < map->n; i++)
        if (!strcmp(map->keys[i], key)) {
            if (child->line == 0 && map->items[i]->line) child->line = map->items[i]->line;
            node_free(map->items[i]);
            map->items[i] = child;
            return MR_OK;
        }
    return node_add(map, key, child);
}

mr_status mr_cfg_put_scalar(mr_cfg_node *map, const char *key, const char *value, int plain)
{
    char *path = child_path(map->path, key);
    mr_cfg_node *n = path ? node_new(MR_CFG_SCALAR, path, 0) : NULL;
    free(path);
    if (!n || !(n->value = dup_str(value))) {
        node_free(n);
        return mr_error_set(MR_ERR_NOMEM, "out of memory");
    }
    n->plain = plain;
    return node_put(map, key, n);
}

mr_status mr_cfg_put_copy(mr_cfg_node *map, const char *key, const mr_cfg_node *value)
{
    mr_cfg_node *n = node_copy(value);
    char *path = child_path(map->path, key);
    if (!n || !path || node_repath(n, path, 0) != MR_OK) {
        free(path);
        node_free(n);
        return mr_error_set(MR_ERR_NOMEM, "out of memory");
    }
    free(path);
    return node_put(map, key, n);
}

void mr_cfg_remove(mr_cfg_node *map, const char *key)
{
    for (size_t i = 0; i < map->n; i++)
        if (!strcmp(map->keys[i], key)) {
            node_free(map->items[i]);
            free(map->keys[i]);
            memmove(map->items + i, map->items + i + 1, (map->n - i - 1) * sizeof *map->items);
            memmove(map->keys + i, map->keys + i + 1, (map->n - i - 1) * sizeof *map->keys);
            map->n--;
            return;
        }
}

/* ================================================================ parsing */

typedef struct {
    yaml_parser_t parser;
    const char *name;  /* for messages */
    int line0;         /* 1: every node gets line 0 (a --set value) */
} yaml_ctx;

static mr_status next_event(yaml_ctx *y, yaml_event_t *ev)
{
    if (!yaml_parser_parse(&y->parser, ev)) {
        const char *problem = y->parser.problem ? y->parser.problem : "malformed YAML";
        if (y->parser.context)
            return mr_error_set(MR_ERR_INPUT, "%s line %zu: %s %s (line %zu)", y->name,
                                y->parser.problem_mark.line + 1, problem, y->parser.context,
                                y->parser.context_mark.line + 1);
        return mr_error_set(MR_ERR_INPUT, "%s line %zu: %s", y->name,
                            y->parser.problem_mark.line + 1, problem);
    }
    return MR_OK;
}

static mr_status refuse_extras(yaml_ctx *y, const yaml_event_t *ev, const unsigned char *anchor,
                               const unsigned char *tag, int implicit)
{
    size_t line = ev->start_mark.line + 1;
    if (anchor)
        return mr_error_set(MR_ERR_INPUT, "%s line %zu: anchors (&%s) are not supported; write the "
                            "value out", y->name, line, (const char *)anchor);
    if (tag && !implicit)
        return mr_error_set(MR_ERR_INPUT, "%s line %zu: tags (%s) are not supported", y->name, line,
                            (const char *)tag);
    return MR_OK;
}

/* Parse the node that starts with event *ev (consumed here). */
static mr_status parse_node(yaml_ctx *y, yaml_event_t *ev, mr_cfg_node **out, const char *path,
                            int line, int depth)
{
    mr_status st = MR_OK;
    mr_cfg_node *n = NULL;
    *out = NULL;
    if (depth > 64) {
        yaml_event_delete(ev);
        return mr_error_set(MR_ERR_INPUT, "%s line %d: nesting deeper than 64 levels", y->name, line);
    }
    switch (ev->type) {
    case YAML_ALIAS_EVENT:
        st = mr_error_set(MR_ERR_INPUT, "%s line %zu: %s: aliases (*%s) are not supported; write "
                          "the value out", y->name, ev->start_mark.line + 1, path,
                          (const char *)ev->data.alias.anchor);
        yaml_event_delete(ev);
        return st;
    case YAML_SCALAR_EVENT:
        st = refuse_extras(y, ev, ev->data.scalar.anchor, ev->data.scalar.tag,
                           ev->data.scalar.plain_implicit || ev->data.scalar.quoted_implicit);
        if (st == MR_OK && !(n = node_new(MR_CFG_SCALAR, path, line))) st = MR_ERR_NOMEM;
        if (st == MR_OK) {
            n->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
            n->value = mr_malloc(ev->data.scalar.length + 1);
            if (!n->value) st = MR_ERR_NOMEM;
            else {
                memcpy(n->value, ev->data.scalar.value, ev->data.scalar.length);
                n->value[ev->data.scalar.length] = '\0';
                if (strlen(n->value) != ev->data.scalar.length)
                    st = mr_error_set(MR_ERR_INPUT, "%s line %d: %s: NUL character in a value",
                                      y->name, line, path);
            }
        }
        yaml_event_delete(ev);
        break;
    case YAML_SEQUENCE_START_EVENT:
        st = refuse_extras(y, ev, ev->data.sequence_start.anchor, ev->data.sequence_start.tag,
                           ev->data.sequence_start.implicit);
        yaml_event_delete(ev);
        if (st == MR_OK && !(n = node_new(MR_CFG_SEQ, path, line))) st = MR_ERR_NOMEM;
        while (st == MR_OK) {
            yaml_event_t item;
            if ((st = next_event(y, &item)) != MR_OK) break;
            if (item.type == YAML_SEQUENCE_END_EVENT) {
                yaml_event_delete(&item);
                break;
            }
            char idx[32];
            snprintf(idx, sizeof idx, "%zu", n->n);
            char *cp = child_path(path, idx);
            mr_cfg_node *c = NULL;
            if (!cp) {
                yaml_event_delete(&item);
                st = MR_ERR_NOMEM;
                break;
            }
            st = parse_node(y, &item, &c, cp, y->line0 ? 0 : (int)item.start_mark.line + 1,
                            depth + 1);
            free(cp);
            if (st == MR_OK) st = node_add(n, NULL, c);
        }
        break;
    case YAML_MAPPING_START_EVENT:
        st = refuse_extras(y, ev, ev->data.mapping_start.anchor, ev->data.mapping_start.tag,
                           ev->data.mapping_start.implicit);
        yaml_event_delete(ev);
        if (st == MR_OK && !(n = node_new(MR_CFG_MAP, path, line))) st = MR_ERR_NOMEM;
        while (st == MR_OK) {
            yaml_event_t kev, vev;
            if ((st = next_event(y, &kev)) != MR_OK) break;
            if (kev.type == YAML_MAPPING_END_EVENT) {
                yaml_event_delete(&kev);
                break;
            }
            int kline = y->line0 ? 0 : (int)kev.start_mark.line + 1;
            if (kev.type != YAML_SCALAR_EVENT) {
                st = mr_error_set(MR_ERR_INPUT, "%s line %d: %s: keys must be plain names, found a "
                                  "%s", y->name, kline, path[0] ? path : "(top level)",
                                  kev.type == YAML_ALIAS_EVENT ? "alias" : "list or mapping");
                yaml_event_delete(&kev);
                break;
            }
            char *key = mr_malloc(kev.data.scalar.length + 1);
            if (!key) {
                yaml_event_delete(&kev);
                st = MR_ERR_NOMEM;
                break;
            }
            memcpy(key, kev.data.scalar.value, kev.data.scalar.length);
            key[kev.data.scalar.length] = '\0';
            yaml_event_delete(&kev);
            mr_cfg_node *prev = mr_cfg_child(n, key);
            if (prev) {
                st = mr_error_set(MR_ERR_INPUT, "%s line %d: %s: duplicate key (first on line %d)",
                                  y->name, kline, prev->path, prev->line);
                free(key);
                break;
            }
            char *cp = child_path(path, key);
            mr_cfg_node *c = NULL;
            if (!cp) st = MR_ERR_NOMEM;
            if (st == MR_OK) st = next_event(y, &vev);
            if (st == MR_OK) st = parse_node(y, &vev, &c, cp, kline, depth + 1);
            if (st == MR_OK) st = node_add(n, key, c);
            free(cp);
            free(key);
        }
        break;
    default:
        st = mr_error_set(MR_ERR_INPUT, "%s line %zu: unexpected YAML event", y->name,
                          ev->start_mark.line + 1);
        yaml_event_delete(ev);
        break;
    }
    if (st == MR_ERR_NOMEM && !*mr_error_message())
        mr_error_set(MR_ERR_NOMEM, "out of memory reading the configuration");
    if (st != MR_OK) {
        node_free(n);
        return st;
    }
    *out = n;
    return MR_OK;
}

/* Parse a whole stream holding one document. An empty stream gives *out = NULL. */
static mr_status parse_text(mr_cfg_node **out, const char *text, size_t len, const char *name,
                            const char *path, int line0)
{
    yaml_ctx y;
    yaml_event_t ev;
    mr_status st;
    mr_cfg_node *root = NULL;
    *out = NULL;
    memset(&y, 0, sizeof y);
    y.name = name;
    y.line0 = line0;
    if (!yaml_parser_initialize(&y.parser))
        return mr_error_set(MR_ERR_NOMEM, "cannot initialise the YAML parser");
    yaml_parser_set_input_string(&y.parser, (const unsigned char *)text, len);
    st = next_event(&y, &ev); /* stream start */
    if (st == MR_OK) {
        yaml_event_delete(&ev);
        st = next_event(&y, &ev);
    }
    if (st == MR_OK && ev.type == YAML_DOCUMENT_START_EVENT) {
        yaml_event_delete(&ev);
        if ((st = next_event(&y, &ev)) == MR_OK)
            st = parse_node(&y, &ev, &root, path, line0 ? 0 : (int)ev.start_mark.line + 1, 0);
        if (st == MR_OK) st = next_event(&y, &ev); /* document end */
        if (st == MR_OK) {
            yaml_event_delete(&ev);
            st = next_event(&y, &ev);
            if (st == MR_OK && ev.type != YAML_STREAM_END_EVENT)
                st = mr_error_set(MR_ERR_INPUT, "%s line %zu: expected one YAML document, found "
                                  "another", name, ev.start_mark.line + 1);
            if (st == MR_OK || ev.type != YAML_NO_EVENT) yaml_event_delete(&ev);
        }
    } else if (st == MR_OK) {
        yaml_event_delete(&ev); /* stream end: empty */
    }
    yaml_parser_delete(&y.parser);
    if (st != MR_OK) {
        node_free(root);
        return st;
    }
    *out = root;
    return MR_OK;
}

mr_status mr_config_parse(mr_config **out, const char *text, const char *name)
{
    mr_config *c;
    mr_status st;
    *out = NULL;
    if (!(c = mr_calloc(1, sizeof *c))) return MR_ERR_NOMEM;
    snprintf(c->file, sizeof c->file, "%s", name);
    snprintf(c->dir, sizeof c->dir, ".");
    st = parse_text(&c->root, text, strlen(text), name, "", 0);
    if (st == MR_OK && (!c->root || c->root->kind != MR_CFG_MAP))
        st = mr_error_set(MR_ERR_INPUT, "%s line %d: expected a mapping of keys (inputs:, output:, "
                          "stages:), found %s", name, c->root ? c->root->line : 1,
                          c->root ? "a list or a single value" : "an empty file");
    if (st != MR_OK) {
        mr_config_destroy(c);
        return st;
    }
    *out = c;
    return MR_OK;
}

mr_status mr_config_load(mr_config **out, const char *path)
{
    FILE *f;
    char *text = NULL;
    long size;
    mr_status st;
    *out = NULL;
    if (!(f = fopen(path, "rb")))
        return mr_error_set(MR_ERR_INPUT, "%s: cannot open the configuration: %s", path,
                            strerror(errno));
    if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0 ||
        size > (64L << 20)) {
        fclose(f);
        return mr_error_set(MR_ERR_INPUT, "%s: not a readable configuration file", path);
    }
    if (!(text = mr_malloc((size_t)size + 1))) {
        fclose(f);
        return MR_ERR_NOMEM;
    }
    if (fread(text, 1, (size_t)size, f) != (size_t)size) {
        fclose(f);
        free(text);
        return mr_error_set(MR_ERR_INPUT, "%s: read error", path);
    }
    fclose(f);
    text[size] = '\0';
    if (strlen(text) != (size_t)size) {
        free(text);
        return mr_error_set(MR_ERR_INPUT, "%s: not a text file (NUL byte)", path);
    }
    st = mr_config_parse(out, text, path);
    free(text);
    if (st == MR_OK) {
        char copy[4096];
        snprintf(copy, sizeof copy, "%s", path);
        snprintf((*out)->dir, sizeof (*out)->dir, "%s", dirname(copy));
    }
    return st;
}

void mr_config_destroy(mr_config *c)
{
    if (!c) return;
    node_free(c->root);
    free(c);
}

mr_status mr_config_set(mr_config *c, const char *assignment)
{
    const char *eq = strchr(assignment, '=');
    char key[1024];
    mr_cfg_node *value = NULL, *map = c->root;
    mr_status st;
    if (!eq || eq == assignment || (size_t)(eq - assignment) >= sizeof key)
        return mr_error_set(MR_ERR_USAGE, "--set: expected key=value (dotted key, e.g. "
                            "stages.recon.lambda=0.02), found '%s'", assignment);
    memcpy(key, assignment, (size_t)(eq - assignment));
    key[eq - assignment] = '\0';
    char where[1100];
    snprintf(where, sizeof where, "--set %s", key);
    if ((st = parse_text(&value, eq + 1, strlen(eq + 1), where, key, 1)) != MR_OK) return st;
    if (!value) { /* "key=" : an empty plain scalar */
        if (!(value = node_new(MR_CFG_SCALAR, key, 0)) || !(value->value = dup_str(""))) {
            node_free(value);
            return MR_ERR_NOMEM;
        }
        value->plain = 1;
    }
    /* walk the dotted path, creating maps on the way */
    char *save = NULL, *part = strtok_r(key, ".", &save), *next;
    int depth = 0;
    const char *first = part;
    for (; part; part = next, depth++) {
        next = strtok_r(NULL, ".", &save);
        if (!next) break;
        mr_cfg_node *child = mr_cfg_child(map, part);
        if (!child) {
            if (depth == 1 && !strcmp(first, "stages")) {
                st = mr_error_set(MR_ERR_USAGE, "--set %s: the configuration has no stage '%s' "
                                  "(--set changes stages, it cannot add one)", value->path, part);
                node_free(value);
                return st;
            }
            char *cp = child_path(map->path, part);
            child = cp ? node_new(MR_CFG_MAP, cp, 0) : NULL;
            free(cp);
            if (!child || node_add(map, part, child) != MR_OK) {
                node_free(value);
                return mr_error_set(MR_ERR_NOMEM, "out of memory");
            }
        } else if (child->kind != MR_CFG_MAP) {
            st = mr_error_set(MR_ERR_USAGE, "--set %s: '%s' is %s (%s), not a mapping of keys",
                              value->path, child->path,
                              child->kind == MR_CFG_SEQ ? "a list" : "a value",
                              mr_config_where(c, child));
            node_free(value);
            return st;
        }
        map = child;
    }
    if (!part) {
        node_free(value);
        return mr_error_set(MR_ERR_USAGE, "--set: empty key in '%s'", assignment);
    }
    if (depth == 1 && !strcmp(first, "stages") && !mr_cfg_child(map, part)) {
        st = mr_error_set(MR_ERR_USAGE, "--set %s: the configuration has no stage '%s' (--set "
                          "changes stages, it cannot add one)", value->path, part);
        node_free(value);
        return st;
    }
    if (node_repath(value, value->path, 1) != MR_OK) {
        node_free(value);
        return MR_ERR_NOMEM;
    }
    return node_put(map, part, value);
}

/* ================================================================ messages and getters */

const char *mr_config_where(const mr_config *c, const mr_cfg_node *n)
{
    static _Thread_local char bufs[4][4608];
    static _Thread_local int slot;
    char *b = bufs[slot++ & 3];
    const char *path = n && n->path[0] ? n->path : "(top level)";
    if (n && n->line == 0)
        snprintf(b, sizeof bufs[0], "--set %s", path);
    else
        snprintf(b, sizeof bufs[0], "%s line %d: %s", c && c->file[0] ? c->file : "config",
                 n ? n->line : 1, path);
    return b;
}

mr_status mr_config_error(const mr_config *c, const mr_cfg_node *n, mr_status st, const char *fmt,
                          ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return mr_error_set(st, "%s: %s", mr_config_where(c, n), msg);
}

static const char *found_desc(const mr_cfg_node *n)
{
    static _Thread_local char b[300];
    if (n->kind == MR_CFG_MAP) return "a mapping";
    if (n->kind == MR_CFG_SEQ) return "a list";
    if (!n->value[0]) return "nothing";
    snprintf(b, sizeof b, "'%.250s'", n->value);
    return b;
}

mr_status mr_cfg_as_string(const char **out, const mr_config *c, const mr_cfg_node *n)
{
    if (n->kind != MR_CFG_SCALAR)
        return mr_config_error(c, n, MR_ERR_USAGE, "expected a text value, found %s", found_desc(n));
    *out = n->value;
    return MR_OK;
}

mr_status mr_cfg_as_long(long *out, const mr_config *c, const mr_cfg_node *n, long lo, long hi)
{
    char *end;
    long v;
    if (n->kind != MR_CFG_SCALAR || !n->value[0])
        return mr_config_error(c, n, MR_ERR_USAGE, "expected an integer, found %s", found_desc(n));
    errno = 0;
    v = strtol(n->value, &end, 10);
    if (errno || end == n->value || *end)
        return mr_config_error(c, n, MR_ERR_USAGE, "expected an integer, found %s", found_desc(n));
    if (v < lo || v > hi)
        return mr_config_error(c, n, MR_ERR_USAGE, "expected an integer in [%ld, %ld], found %ld",
                               lo, hi, v);
    *out = v;
    return MR_OK;
}

mr_status mr_cfg_as_double(double *out, const mr_config *c, const mr_cfg_node *n, double lo,
                           double hi)
{
    char *end;
    double v;
    if (n->kind != MR_CFG_SCALAR || !n->value[0])
        return mr_config_error(c, n, MR_ERR_USAGE, "expected a number, found %s", found_desc(n));
    errno = 0;
    v = strtod(n->value, &end);
    if (errno || end == n->value || *end || !isfinite(v))
        return mr_config_error(c, n, MR_ERR_USAGE, "expected a number, found %s", found_desc(n));
    if (v < lo || v > hi)
        return mr_config_error(c, n, MR_ERR_USAGE, "expected a number in [%g, %g], found %g", lo,
                               hi, v);
    *out = v;
    return MR_OK;
}

mr_status mr_cfg_as_bool(int *out, const mr_config *c, const mr_cfg_node *n)
{
    static const char *yes[] = {"true", "yes", "on"}, *no[] = {"false", "no", "off"};
    if (n->kind == MR_CFG_SCALAR)
        for (int i = 0; i < 3; i++) {
            if (!strcasecmp(n->value, yes[i])) return *out = 1, MR_OK;
            if (!strcasecmp(n->value, no[i])) return *out = 0, MR_OK;
        }
    return mr_config_error(c, n, MR_ERR_USAGE, "expected true or false, found %s", found_desc(n));
}

/* ================================================================ emitter */

/* Does a scalar need quotes to read back as the same text? */
static int needs_quotes(const char *s, int plain)
{
    if (!*s) return 1;
    if (!plain) {
        /* a quoted "4" must stay text */
        char *end;
        strtod(s, &end);
        if (!*end) return 1;
        if (!strcasecmp(s, "true") || !strcasecmp(s, "false") || !strcasecmp(s, "yes") ||
            !strcasecmp(s, "no") || !strcasecmp(s, "null") || !strcmp(s, "~"))
            return 1;
    }
    if (strchr("-?:,[]{}#&*!|>'\"%@`", s[0]) || s[0] == ' ' || s[strlen(s) - 1] == ' ') return 1;
    for (const char *p = s; *p; p++)
        if ((p[0] == ':' && (p[1] == ' ' || !p[1])) || (p[0] == ' ' && p[1] == '#') ||
            (unsigned char)*p < 0x20 || *p == '"')
            return 1;
    return 0;
}

static void emit_scalar(mr_text *t, const mr_cfg_node *n)
{
    if (!needs_quotes(n->value, n->plain)) {
        mr_text_puts(t, n->value);
        return;
    }
    mr_text_json_str(t, n->value); /* a JSON string is a valid double-quoted YAML scalar */
}

static int all_scalars(const mr_cfg_node *n)
{
    for (size_t i = 0; i < n->n; i++)
        if (n->items[i]->kind != MR_CFG_SCALAR) return 0;
    return 1;
}

void mr_cfg_emit(mr_text *t, const mr_cfg_node *n, int indent)
{
    for (size_t i = 0; i < n->n; i++) {
        const mr_cfg_node *c = n->items[i];
        mr_text_printf(t, "%*s", indent, "");
        if (n->kind == MR_CFG_MAP) mr_text_printf(t, "%s:", n->keys[i]);
        else mr_text_puts(t, "-");
        if (c->kind == MR_CFG_SCALAR) {
            mr_text_puts(t, " ");
            emit_scalar(t, c);
            mr_text_puts(t, "\n");
        } else if (c->kind == MR_CFG_SEQ && all_scalars(c)) {
            mr_text_puts(t, " [");
            for (size_t j = 0; j < c->n; j++) {
                if (j) mr_text_puts(t, ", ");
                emit_scalar(t, c->items[j]);
            }
            mr_text_puts(t, "]\n");
        } else if (c->n == 0) {
            mr_text_puts(t, c->kind == MR_CFG_MAP ? " {}\n" : " []\n");
        } else {
            mr_text_puts(t, "\n");
            mr_cfg_emit(t, c, indent + 2);
        }
    }
}
