// dcmtk_net.cpp: C-STORE over DCMTK's dcmnet DcmSCU (see dcmtk_shim.h), the network half of the
// extern "C" shim. DICOM parts followed: PS3.7 (C-STORE service, status codes: 0000 success, Bxxx
// warning, Axxx/Cxxx failure), PS3.8 (association negotiation: a rejection is final, a failed
// connection may be retried by the caller).
#include "dcmtk/config/osconfig.h"

#include "dcmtk/dcmdata/dcuid.h"
#include "dcmtk/dcmnet/scu.h"

#include <new>

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
        OFCondition c = scu.initNetwork();
        if (c.good()) c = scu.negotiateAssociation();
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
        T_ASC_PresentationContextID pc =
            scu.findPresentationContextID(UID_GETStudyRootQueryRetrieveInformationModel, "");
        if (pc == 0) {
            scu.releaseAssociation();
            mr_dcm_error(MR_DCM_ERR_IO, "%s@%s:%d does not offer C-GET (Study Root)", called_aet,
                         host, port);
            return MR_DCM_NET_REFUSED;
        }
        DcmDataset keys;
        keys.putAndInsertString(DCM_QueryRetrieveLevel, "SERIES");
        keys.putAndInsertString(DCM_StudyInstanceUID, study_uid);
        keys.putAndInsertString(DCM_SeriesInstanceUID, series_uid);
        OFList<RetrieveResponse *> responses;
        c = scu.sendCGETRequest(pc, &keys, &responses);
        Uint16 status = 0xffff, completed = 0, failed = 0;
        for (RetrieveResponse *r : responses) {
            status = r->m_status;
            completed = r->m_numberOfCompletedSubops;
            failed = r->m_numberOfFailedSubops;
            delete r;
        }
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
