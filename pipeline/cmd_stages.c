/*
 * cmd_stages.c: `mrpipe stages [--markdown]`: the pipeline stages and each one's keys, types,
 * defaults and meaning, straight from the stage table (so the list cannot drift from the code);
 * --markdown prints the same as the tables of docs/configs.md.
 */
#include "mr_pipeline.h"
#include "mr_recon.h"
#include "mr_stages.h"

#include <stdio.h>
#include <string.h>

static const char *type_name(mr_key_type t)
{
    static const char *names[] = {"text", "integer", "number", "bool", "list"};
    return names[t];
}

static const char *def_text(const mr_stage_key *k)
{
    if (k->required) return "(required)";
    return k->def ? k->def : "(method's default)";
}

int mr_cmd_stages(int argc, char **argv)
{
    int md = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: mrpipe stages [--markdown]\n\nThe stages a pipeline configuration can "
                   "use (docs/configs.md), with their keys.\n");
            return 0;
        } else if (!strcmp(argv[i], "--markdown")) {
            md = 1;
        } else {
            return mr_cli_usage_error("stages", "unknown option '%s'", argv[i]);
        }
    }
    if (!md)
        printf("Pipeline stages (in a config: stages: {NAME: {KEY: VALUE, ...}}; a stage named\n"
               "otherwise takes 'stage: TYPE', e.g. zf_4x: {stage: recon, mask: equispaced}):\n");
    for (const mr_stage *const *s = mr_stages; *s; s++) {
        const mr_stage *st = *s;
        if (md) {
            printf("\n### %s\n\n%s.\n\n| key | type | default | meaning |\n|---|---|---|---|\n",
                   st->name, st->summary);
            for (const mr_stage_key *k = st->keys; k->name; k++)
                printf("| `%s` | %s | `%s` | %s |\n", k->name, type_name(k->type), def_text(k),
                       k->doc);
            continue;
        }
        printf("\n%s: %s\n", st->name, st->summary);
        for (const mr_stage_key *k = st->keys; k->name; k++)
            printf("  %-16s %-8s %-20s %s\n", k->name, type_name(k->type), def_text(k), k->doc);
    }
    if (!md) {
        printf("\nrecon methods:");
        for (const mr_recon_method *const *m = mr_recon_methods; *m; m++) printf(" %s", (*m)->name);
        printf("\n");
    }
    return 0;
}
