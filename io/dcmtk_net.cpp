// dcmtk_net.cpp: C-STORE over DCMTK's dcmnet DcmSCU (see dcmtk_shim.h), the network half of the
// extern "C" shim. DICOM parts followed: PS3.7 (C-STORE service, status codes: 0000 success, Bxxx
// warning, Axxx/Cxxx failure), PS3.8 (association negotiation: a rejection is final, a failed
// connection may be retried by the caller).
#include "dcmtk/config/osconfig.h"

#include "dcmtk/dcmdata/dcuid.h"
#include "dcmtk/dcmnet/scu.h"

#include <new>

#include "dcmtk_shim.h"

extern "C" int mr_dcm_send_files(const char *host, int port, const char *called_aet,
                                 const char *calling_aet, const char *sop_class,
                                 const char *const *files, size_t n, int timeout_s, size_t *sent)
{
    *sent = 0;
    try {
        mr_dcm_init();
        DcmSCU scu;
        OFList<OFString> ts;
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
