/*
 * stage_dicom.c: the dicom_send stage: C-STORE (PS3.4 B) of every DICOM series the write stage
 * made for this scan to a PACS, as `mrpipe convert --send` does (mr_dicom_send_timeout, the DCMTK
 * shim): one association per series, a failed connection retried `retries` times (1 s, 2 s, ...
 * apart), a refused association or a failure status not retried. Any failure fails the scan with
 * the peer's answer in the message; the batch goes on with the other scans (batch.c). The files
 * sent are the ones in the scan's work directory, i.e. exactly what the scan's outputs will hold.
 */
#include "mr_stages.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    mr_dicom_peer peer;
    char calling[17];
    int retries;
    int timeout;
} send_state;

static const mr_stage_key send_keys[] = {
    {"peer", MR_KEY_STRING, NULL, 1, "the PACS as AET@HOST:PORT (called AE title, host, port)"},
    {"calling_aet", MR_KEY_STRING, "MRPIPE", 0, "our (calling) AE title, 1-16 characters"},
    {"retries", MR_KEY_INT, "2", 0, "retries of a failed connection (0..20); refusals are final"},
    {"timeout", MR_KEY_INT, "30", 0, "connection, association and DIMSE timeout in seconds"},
    {NULL, 0, NULL, 0, NULL},
};

static mr_status send_create(void **state, const mr_stage_ctx *x)
{
    send_state *s = mr_calloc(1, sizeof *s);
    const mr_config *c = x->config;
    const mr_cfg_node *pn = mr_cfg_child(x->node, "peer"),
                      *cn = mr_cfg_child(x->node, "calling_aet");
    const mr_pipeline *p = x->pipeline;
    size_t here = mr_stage_ctx_index(x);
    long retries = 0, timeout = 0;
    int has_dicom = 0;
    mr_status st;
    if (!s) return MR_ERR_NOMEM;
    if ((st = mr_dicom_peer_parse(&s->peer, pn->value)) != MR_OK) {
        char why[1024];
        snprintf(why, sizeof why, "%s", mr_error_message());
        st = mr_config_error(c, pn, MR_ERR_USAGE, "%s", why);
    }
    if (st == MR_OK) {
        size_t n = strlen(cn->value);
        int ok = n >= 1 && n <= 16;
        for (size_t i = 0; ok && i < n; i++)
            ok = cn->value[i] > ' ' && cn->value[i] < 127 && cn->value[i] != '\\';
        if (!ok)
            st = mr_config_error(c, cn, MR_ERR_USAGE,
                                 "expected an AE title of 1-16 printable "
                                 "characters without spaces or '\\', found '%s'",
                                 cn->value);
        else
            snprintf(s->calling, sizeof s->calling, "%s", cn->value);
    }
    if (st == MR_OK) st = mr_cfg_as_long(&retries, c, mr_cfg_child(x->node, "retries"), 0, 20);
    if (st == MR_OK) st = mr_cfg_as_long(&timeout, c, mr_cfg_child(x->node, "timeout"), 1, 3600);
    /* it sends what a write stage before it wrote as DICOM */
    for (size_t j = 0; j < here; j++)
        if (p->stages[j].stage == &mr_stage_write && mr_stage_write_has_dicom(p->stages[j].node))
            has_dicom = 1;
    if (st == MR_OK && !has_dicom)
        st = mr_config_error(c, x->node, MR_ERR_USAGE,
                             "dicom_send needs a write stage with format "
                             "dicom before it (e.g. write: {formats: [dicom]})");
    if (st != MR_OK) {
        free(s);
        return st;
    }
    s->retries = (int)retries;
    s->timeout = (int)timeout;
    *state = s;
    return MR_OK;
}

static mr_status send_run(void *state, mr_scan *scan)
{
    send_state *s = state;
    size_t instances = 0;
    mr_status st;
    if (scan->n_series == 0)
        return mr_error_set(MR_ERR_INPUT,
                            "nothing to send: the write stage wrote no DICOM series "
                            "for %s (check write.images)",
                            scan->id);
    for (size_t i = 0; i < scan->n_series; i++) {
        const mr_dicom_written *w = &scan->series[i];
        const char *name = strrchr(w->dir, '/'); /* the folder's name, not the work directory */
        st = mr_dicom_send_timeout(&s->peer, s->calling, w, s->retries, s->timeout);
        if (st != MR_OK)
            return mr_error_prefix(
                st, "sending series %ld (%zu of %zu, %zu instance(s), %s): ", w->series_number,
                i + 1, scan->n_series, w->count, name ? name + 1 : w->dir);
        instances += w->count;
    }
    MR_INFO("%s: sent %zu series (%zu instance(s)) to %s@%s:%d", scan->id, scan->n_series,
            instances, s->peer.aet, s->peer.host, s->peer.port);
    return MR_OK;
}

static void send_destroy(void *state)
{
    free(state);
}

const mr_stage mr_stage_dicom_send = {
    "dicom_send",
    "C-STORE every DICOM series the write stage made for the scan to a PACS (AET@HOST:PORT); a "
    "refusal or an unreachable peer fails the scan",
    send_keys,
    send_create,
    send_run,
    send_destroy,
};
