// dcmtk_net.cpp: C-STORE, C-GET, C-FIND and C-MOVE over DCMTK's dcmnet DcmSCU, and a temporary
// storage SCP (DcmStorageSCP in a thread) as the C-MOVE destination (see dcmtk_shim.h): the network
// half of the extern "C" shim. DICOM parts followed: PS3.7 (C-STORE service, status codes: 0000
// success, Bxxx warning, Axxx/Cxxx failure), PS3.8 (association negotiation: a rejection is final,
// a failed connection may be retried by the caller).
#include "dcmtk/config/osconfig.h"

#include "dcmtk/dcmdata/dcuid.h"
#include "dcmtk/dcmnet/dstorscp.h"
#include "dcmtk/dcmnet/scu.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <thread>

#include "dcmtk_shim.h"

/* The association settings both services use: explicit then implicit little-endian transfer
 * syntaxes (filled into ts), peer address and AE titles, the same timeout for connection, ACSE and
 * DIMSE, non-blocking DIMSE. */
static void scu_configure(DcmSCU &scu, OFList<OFString> &ts, const char *host, int port,
                          const char *called_aet, const char *calling_aet, int timeout_s)
{
    ts.push_back(UID_LittleEndianExplicitTransferSyntax);
    ts.push_back(UID_LittleEndianImplicitTransferSyntax);
    scu.setAETitle(calling_aet);
    scu.setPeerHostName(host);
    scu.setPeerPort((Uint16)port);
    scu.setPeerAETitle(called_aet);
    scu.setConnectionTimeout(timeout_s);
    scu.setACSETimeout((Uint32)timeout_s);
    scu.setDIMSETimeout((Uint32)timeout_s);
    scu.setDIMSEBlockingMode(DIMSE_NONBLOCKING);
}

/* Initialise the network and negotiate the association of a configured DcmSCU: 0, or
 * MR_DCM_NET_CONNECT / MR_DCM_NET_REFUSED with the message set. */
static int scu_associate(DcmSCU &scu, const char *host, int port, const char *called_aet,
                         const char *calling_aet)
{
    OFCondition c = scu.initNetwork();
    if (c.bad()) {
        mr_dcm_error(MR_DCM_ERR_IO, "%s@%s:%d: cannot initialise the network: %s", called_aet,
                     host, port, c.text());
        return MR_DCM_NET_CONNECT;
    }
    c = scu.negotiateAssociation();
    if (c == DUL_ASSOCIATIONREJECTED) {
        mr_dcm_error(MR_DCM_ERR_IO,
                     "%s@%s:%d refused the association from %s (wrong called or calling AE "
                     "title?): %s",
                     called_aet, host, port, calling_aet, c.text());
        return MR_DCM_NET_REFUSED;
    }
    if (c.bad()) {
        mr_dcm_error(MR_DCM_ERR_IO, "%s@%s:%d: no association: %s", called_aet, host, port,
                     c.text());
        return MR_DCM_NET_CONNECT;
    }
    return 0;
}

/* Open the association scu was configured for and find the accepted presentation context of
 * sop_class (a Study Root query/retrieve model, named `service` in messages: "C-GET" ...). Returns
 * 0 with *pc set, or MR_DCM_NET_REFUSED / MR_DCM_NET_CONNECT with the message set. */
static int scu_open_qr(DcmSCU &scu, const char *sop_class, const char *service, const char *host,
                       int port, const char *called_aet, const char *calling_aet,
                       T_ASC_PresentationContextID *pc)
{
    int rc = scu_associate(scu, host, port, called_aet, calling_aet);
    if (rc) return rc;
    *pc = scu.findPresentationContextID(sop_class, "");
    if (*pc == 0) {
        scu.releaseAssociation();
        mr_dcm_error(MR_DCM_ERR_IO, "%s@%s:%d does not offer %s (Study Root)", called_aet, host,
                     port, service);
        return MR_DCM_NET_REFUSED;
    }
    return 0;
}

/* Series-level retrieve keys (Study Root: the study and the series UID). */
static void series_keys(DcmDataset &keys, const char *study_uid, const char *series_uid)
{
    keys.putAndInsertString(DCM_QueryRetrieveLevel, "SERIES");
    keys.putAndInsertString(DCM_StudyInstanceUID, study_uid);
    keys.putAndInsertString(DCM_SeriesInstanceUID, series_uid);
}

/* The final C-GET / C-MOVE response's status and sub-operation counts; frees the responses. */
static void last_response(OFList<RetrieveResponse *> &responses, Uint16 *status, Uint16 *completed,
                          Uint16 *failed)
{
    *status = 0xffff, *completed = 0, *failed = 0;
    for (RetrieveResponse *r : responses) {
        *status = r->m_status;
        *completed = r->m_numberOfCompletedSubops;
        *failed = r->m_numberOfFailedSubops;
        delete r;
    }
    responses.clear();
}

extern "C" int mr_dcm_send_files(const char *host, int port, const char *called_aet,
                                 const char *calling_aet, const char *sop_class,
                                 const char *const *files, size_t n, int timeout_s, size_t *sent)
{
    *sent = 0;
    try {
        mr_dcm_init();
        DcmSCU scu;
        OFList<OFString> ts;
        scu_configure(scu, ts, host, port, called_aet, calling_aet, timeout_s);
        scu.addPresentationContext(sop_class, ts);
        int rc = scu_associate(scu, host, port, called_aet, calling_aet);
        if (rc) return rc;
        OFCondition c;
        T_ASC_PresentationContextID pc = scu.findPresentationContextID(sop_class, "");
        if (pc == 0) {
            scu.releaseAssociation();
            mr_dcm_error(MR_DCM_ERR_IO, "%s@%s:%d does not accept SOP class %s", called_aet, host,
                         port, sop_class);
            return MR_DCM_NET_REFUSED;
        }
        for (size_t i = 0; i < n; i++) {
            Uint16 status = 0;
            c = scu.sendSTORERequest(pc, files[i], NULL, status);
            if (c.bad()) {
                scu.abortAssociation();
                mr_dcm_error(MR_DCM_ERR_IO, "%s@%s:%d: C-STORE of %s failed: %s", called_aet, host,
                             port, files[i], c.text());
                return MR_DCM_NET_CONNECT;
            }
            if (status != 0 && (status & 0xf000) != 0xb000) {
                scu.releaseAssociation();
                mr_dcm_error(MR_DCM_ERR_IO, "%s@%s:%d refused %s: C-STORE status 0x%04x",
                             called_aet, host, port, files[i], status);
                return MR_DCM_NET_STORE;
            }
            (*sent)++;
        }
        scu.releaseAssociation();
        return MR_DCM_NET_OK;
    } catch (...) {
        mr_dcm_error(MR_DCM_ERR_NOMEM, "%s@%s:%d: DCMTK failed while sending", called_aet, host,
                     port);
        return MR_DCM_NET_CONNECT;
    }
}

// C-GET (PS3.4 C.4.3, Study Root, SERIES level): the peer sends the instances back as C-STORE
// sub-operations on the same association; DcmSCU stores each under out_dir. The storage SOP classes
// mrpipe reads are offered with the SCP role (PS3.7 D.3.3.4 role selection).
extern "C" int mr_dcm_get_series(const char *host, int port, const char *called_aet,
                                 const char *calling_aet, const char *study_uid,
                                 const char *series_uid, const char *out_dir, int timeout_s,
                                 size_t *received)
{
    static const char *storage[] = {UID_MRImageStorage, UID_EnhancedMRImageStorage,
                                    UID_CTImageStorage, UID_SecondaryCaptureImageStorage};
    *received = 0;
    try {
        mr_dcm_init();
        DcmSCU scu;
        OFList<OFString> ts;
        scu_configure(scu, ts, host, port, called_aet, calling_aet, timeout_s);
        scu.setStorageMode(DCMSCU_STORAGE_DISK);
        scu.setStorageDir(out_dir);
        scu.addPresentationContext(UID_GETStudyRootQueryRetrieveInformationModel, ts);
        for (const char *sop : storage)
            scu.addPresentationContext(sop, ts, ASC_SC_ROLE_SCP);
        T_ASC_PresentationContextID pc = 0;
        int orc = scu_open_qr(scu, UID_GETStudyRootQueryRetrieveInformationModel, "C-GET", host,
                              port, called_aet, calling_aet, &pc);
        if (orc) return orc;
        DcmDataset keys;
        series_keys(keys, study_uid, series_uid);
        OFList<RetrieveResponse *> responses;
        OFCondition c = scu.sendCGETRequest(pc, &keys, &responses);
        Uint16 status, completed, failed;
        last_response(responses, &status, &completed, &failed);
        scu.releaseAssociation();
        if (c.bad()) {
            mr_dcm_error(MR_DCM_ERR_IO, "%s@%s:%d: C-GET failed: %s", called_aet, host, port,
                         c.text());
            return MR_DCM_NET_CONNECT;
        }
        *received = completed;
        if (completed == 0 && failed == 0) {
            mr_dcm_error(MR_DCM_ERR_INPUT,
                         "%s@%s:%d has no series %s in study %s (C-GET status 0x%04x)", called_aet,
                         host, port, series_uid, study_uid, status);
            return MR_DCM_NET_STORE;
        }
        if ((status != 0 && (status & 0xf000) != 0xb000) || failed) {
            mr_dcm_error(MR_DCM_ERR_IO,
                         "%s@%s:%d: C-GET of series %s: status 0x%04x, %u instance(s) received, "
                         "%u failed",
                         called_aet, host, port, series_uid, status, completed, failed);
            return MR_DCM_NET_STORE;
        }
        return MR_DCM_NET_OK;
    } catch (...) {
        mr_dcm_error(MR_DCM_ERR_NOMEM, "%s@%s:%d: DCMTK failed while retrieving", called_aet, host,
                     port);
        return MR_DCM_NET_CONNECT;
    }
}

// C-FIND (PS3.4 C.4.1, Study Root information model): one association, one request; every
// pending response (0xFF00/0xFF01) carries a match; the final response's status says whether the
// query succeeded (0x0000) or failed (0xA700 out of resources, 0xA900 identifier does not match
// SOP class, 0xCxxx unable to process).
extern "C" int mr_dcm_find(const char *host, int port, const char *called_aet,
                           const char *calling_aet, const char *level, const uint32_t *tags,
                           const char *const *values, size_t nkeys, int timeout_s, char **results,
                           size_t *nresults)
{
    *results = NULL;
    *nresults = 0;
    char *out = NULL;
    try {
        mr_dcm_init();
        DcmSCU scu;
        OFList<OFString> ts;
        scu_configure(scu, ts, host, port, called_aet, calling_aet, timeout_s);
        scu.addPresentationContext(UID_FINDStudyRootQueryRetrieveInformationModel, ts);
        T_ASC_PresentationContextID pc = 0;
        int orc = scu_open_qr(scu, UID_FINDStudyRootQueryRetrieveInformationModel, "C-FIND", host,
                              port, called_aet, calling_aet, &pc);
        if (orc) return orc;
        OFCondition c;
        DcmDataset keys;
        keys.putAndInsertString(DCM_QueryRetrieveLevel, level);
        for (size_t k = 0; k < nkeys; k++) {
            DcmTagKey key((Uint16)(tags[k] >> 16), (Uint16)(tags[k] & 0xffff));
            keys.putAndInsertString(key, values[k] ? values[k] : "");
        }
        OFList<QRResponse *> responses;
        c = scu.sendFINDRequest(pc, &keys, &responses);
        Uint16 status = 0xffff;
        size_t matches = 0;
        for (QRResponse *r : responses)
            if (r->m_dataset) matches++;
        out = (char *)calloc(matches * nkeys + 1, MR_DCM_FIND_VALUE_SIZE);
        size_t m = 0;
        for (QRResponse *r : responses) {
            status = r->m_status;
            if (r->m_dataset && out) {
                for (size_t k = 0; k < nkeys; k++) {
                    DcmTagKey key((Uint16)(tags[k] >> 16), (Uint16)(tags[k] & 0xffff));
                    OFString v;
                    if (r->m_dataset->findAndGetOFStringArray(key, v).good())
                        snprintf(out + (m * nkeys + k) * MR_DCM_FIND_VALUE_SIZE,
                                 MR_DCM_FIND_VALUE_SIZE, "%s", v.c_str());
                }
                m++;
            }
            delete r;
        }
        scu.releaseAssociation();
        if (!out) {
            mr_dcm_error(MR_DCM_ERR_NOMEM, "%s@%s:%d: out of memory for %zu C-FIND matches",
                         called_aet, host, port, matches);
            return MR_DCM_NET_STORE;
        }
        if (c.bad()) {
            free(out);
            mr_dcm_error(MR_DCM_ERR_IO, "%s@%s:%d: C-FIND failed: %s", called_aet, host, port,
                         c.text());
            return MR_DCM_NET_CONNECT;
        }
        if (status != 0) {
            free(out);
            mr_dcm_error(MR_DCM_ERR_IO, "%s@%s:%d: C-FIND at %s level: status 0x%04x", called_aet,
                         host, port, level, status);
            return MR_DCM_NET_STORE;
        }
        *results = out;
        *nresults = m;
        return MR_DCM_NET_OK;
    } catch (...) {
        free(out);
        mr_dcm_error(MR_DCM_ERR_NOMEM, "%s@%s:%d: DCMTK failed while querying", called_aet, host,
                     port);
        return MR_DCM_NET_CONNECT;
    }
}

// The C-MOVE destination: a Storage SCP (PS3.4 B) on our port for the duration of one C-MOVE. It
// accepts the storage SOP classes mrpipe reads, stores each instance as <SOPInstanceUID>.dcm in
// the output folder, counts them, and stops when asked (polled every second by DcmSCP in
// non-blocking mode, and after the association in progress).
namespace
{
class MoveDestination : public DcmStorageSCP
{
  public:
    std::atomic<bool> stop{false};
    mutable std::atomic<size_t> stored{0};

  protected:
    OFBool stopAfterConnectionTimeout() override
    {
        return stop.load();
    }
    OFBool stopAfterCurrentAssociation() override
    {
        return stop.load();
    }
    void notifyInstanceStored(const OFString &, const OFString &, const OFString &,
                              DcmDataset *) const override
    {
        stored++;
    }
};
} // namespace

extern "C" int mr_dcm_move_series(const char *host, int port, const char *called_aet,
                                  const char *calling_aet, const char *study_uid,
                                  const char *series_uid, const char *dest_aet, int dest_port,
                                  const char *out_dir, int timeout_s, size_t *received)
{
    static const char *storage[] = {UID_MRImageStorage, UID_EnhancedMRImageStorage,
                                    UID_CTImageStorage, UID_SecondaryCaptureImageStorage};
    *received = 0;
    try {
        mr_dcm_init();
        MoveDestination scp;
        OFList<OFString> ts;
        ts.push_back(UID_LittleEndianExplicitTransferSyntax);
        ts.push_back(UID_LittleEndianImplicitTransferSyntax);
        scp.setPort((Uint16)dest_port);
        scp.setAETitle(dest_aet);
        scp.setConnectionBlockingMode(DUL_NOBLOCK);
        scp.setConnectionTimeout(1);
        scp.setACSETimeout((Uint32)timeout_s);
        scp.setDIMSETimeout((Uint32)timeout_s);
        scp.setOutputDirectory(out_dir);
        scp.setDirectoryGenerationMode(DcmStorageSCP::DGM_NoSubdirectory);
        scp.setFilenameGenerationMode(DcmStorageSCP::FGM_SOPInstanceUID);
        scp.setFilenameExtension(".dcm");
        for (const char *sop : storage)
            scp.addPresentationContext(sop, ts);
        OFCondition c = scp.openListenPort();
        if (c.bad()) {
            mr_dcm_error(MR_DCM_ERR_IO,
                         "C-MOVE destination %s: cannot listen on port %d: %s (port in use, or "
                         "below 1024 without privileges?)",
                         dest_aet, dest_port, c.text());
            return MR_DCM_NET_REFUSED;
        }
        std::thread listener([&scp] { scp.acceptAssociations(); });
        struct Join { // stop and join the listener on every way out
            MoveDestination &s;
            std::thread &t;
            ~Join()
            {
                s.stop = true;
                if (t.joinable()) t.join();
            }
        } join{scp, listener};

        DcmSCU scu;
        OFList<OFString> sts;
        scu_configure(scu, sts, host, port, called_aet, calling_aet, timeout_s);
        scu.addPresentationContext(UID_MOVEStudyRootQueryRetrieveInformationModel, sts);
        T_ASC_PresentationContextID pc = 0;
        int orc = scu_open_qr(scu, UID_MOVEStudyRootQueryRetrieveInformationModel, "C-MOVE", host,
                              port, called_aet, calling_aet, &pc);
        if (orc) return orc;
        DcmDataset keys;
        series_keys(keys, study_uid, series_uid);
        OFList<RetrieveResponse *> responses;
        c = scu.sendMOVERequest(pc, dest_aet, &keys, &responses);
        Uint16 status, completed, failed;
        last_response(responses, &status, &completed, &failed);
        scu.releaseAssociation();
        scp.stop = true; // each store was acknowledged before the final response: all on disk
        listener.join();
        *received = scp.stored.load();
        if (c.bad()) {
            mr_dcm_error(MR_DCM_ERR_IO, "%s@%s:%d: C-MOVE failed: %s", called_aet, host, port,
                         c.text());
            return MR_DCM_NET_CONNECT;
        }
        if (status == 0xa801) {
            mr_dcm_error(MR_DCM_ERR_IO,
                         "%s@%s:%d does not know the move destination %s (C-MOVE status 0xa801: "
                         "add it to the PACS's modalities, e.g. Orthanc's DicomModalities, with "
                         "this host and port %d)",
                         called_aet, host, port, dest_aet, dest_port);
            return MR_DCM_NET_REFUSED;
        }
        if (completed == 0 && failed == 0 && (status == 0 || (status & 0xf000) == 0xc000)) {
            mr_dcm_error(MR_DCM_ERR_INPUT,
                         "%s@%s:%d has no series %s in study %s (C-MOVE status 0x%04x)", called_aet,
                         host, port, series_uid, study_uid, status);
            return MR_DCM_NET_STORE;
        }
        if ((status != 0 && (status & 0xf000) != 0xb000) || failed) {
            mr_dcm_error(MR_DCM_ERR_IO,
                         "%s@%s:%d: C-MOVE of series %s to %s: status 0x%04x, %u instance(s) "
                         "moved, %u failed",
                         called_aet, host, port, series_uid, dest_aet, status, completed, failed);
            return MR_DCM_NET_STORE;
        }
        if (*received != completed) {
            mr_dcm_error(
                MR_DCM_ERR_IO,
                "C-MOVE of series %s: the PACS reports %u instance(s) sent, %zu arrived at "
                "%s on port %d (another destination with this AE title?)",
                series_uid, completed, *received, dest_aet, dest_port);
            return MR_DCM_NET_STORE;
        }
        return MR_DCM_NET_OK;
    } catch (...) {
        mr_dcm_error(MR_DCM_ERR_NOMEM, "%s@%s:%d: DCMTK failed while moving", called_aet, host,
                     port);
        return MR_DCM_NET_CONNECT;
    }
}
