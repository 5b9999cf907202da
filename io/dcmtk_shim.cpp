// dcmtk_shim.cpp: the thin extern "C" shim over DCMTK's dcmdata (see dcmtk_shim.h). The only C++ in
// mrpipe: every function catches everything, so no exception crosses into C, and turns DCMTK's
// OFCondition into an mr_status with a kept message naming the file and the tag.
//
// DICOM parts followed: PS3.10 (file format, meta header), PS3.5 (value representations, transfer
// syntaxes, encapsulated pixel data). Decoders: DCMTK's RLE (dcmdata), JPEG baseline/extended/
// lossless (dcmjpeg, IJG) and JPEG-LS (dcmjpls, CharLS), registered once. DCMTK's own logging is
// switched off: a library does not print (its conditions become our messages).
#include "dcmtk/config/osconfig.h"

#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcmetinf.h"
#include "dcmtk/dcmdata/dcrledrg.h"
#include "dcmtk/dcmdata/dcuid.h"
#include "dcmtk/dcmdata/dcxfer.h"
#include "dcmtk/dcmjpeg/djdecode.h"
#include "dcmtk/dcmjpls/djdecode.h"
#include "dcmtk/oflog/oflog.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>

#include "dcmtk_shim.h"

// mrpipe's implementation class UID (PS3.7 D.3.3.2): a 2.25 UUID-derived UID, no registered root.
#define MR_IMPLEMENTATION_CLASS_UID "2.25.16339207024580545569842197655184216168"

struct mr_dcm_file {
    DcmFileFormat ff;
};

// An item handle is the DcmItem itself (DcmDataset and DcmMetaInfo derive from it).
static DcmItem *item(const mr_dcm_item *it)
{
    return reinterpret_cast<DcmItem *>(const_cast<mr_dcm_item *>(it));
}
static mr_dcm_item *handle(DcmItem *it)
{
    return reinterpret_cast<mr_dcm_item *>(it);
}
static DcmTagKey key(uint32_t tag)
{
    return DcmTagKey((Uint16)(tag >> 16), (Uint16)(tag & 0xffff));
}

extern "C" void mr_dcm_init(void)
{
    static std::once_flag once;
    std::call_once(once, [] {
        OFLog::configure(OFLogger::OFF_LOG_LEVEL);
        DcmRLEDecoderRegistration::registerCodecs();
        DJDecoderRegistration::registerCodecs();
        DJLSDecoderRegistration::registerCodecs();
    });
}

extern "C" const char *mr_dcmtk_version(void)
{
    return OFFIS_DCMTK_VERSION_STRING;
}

extern "C" int mr_dcm_file_load(mr_dcm_file **out, const char *path, int header_only)
{
    *out = NULL;
    try {
        mr_dcm_init();
        mr_dcm_file *f = new mr_dcm_file;
        OFCondition c =
            header_only ? f->ff.loadFileUntilTag(path, EXS_Unknown, EGL_noChange, DCM_MaxReadLength,
                                                 ERM_autoDetect, DCM_PixelData)
                        : f->ff.loadFile(path);
        if (c.bad()) {
            delete f;
            return mr_dcm_error(MR_DCM_ERR_INPUT, "%s: not a readable DICOM file (DCMTK: %s)", path,
                                c.text());
        }
        *out = f;
        return MR_DCM_OK;
    } catch (const std::bad_alloc &) {
        return mr_dcm_error(MR_DCM_ERR_NOMEM, "%s: out of memory reading DICOM", path);
    } catch (...) {
        return mr_dcm_error(MR_DCM_ERR_INTERNAL, "%s: DCMTK failed reading the file", path);
    }
}

extern "C" int mr_dcm_file_new(mr_dcm_file **out)
{
    *out = NULL;
    try {
        mr_dcm_init();
        *out = new mr_dcm_file;
        return MR_DCM_OK;
    } catch (...) {
        return mr_dcm_error(MR_DCM_ERR_NOMEM, "out of memory creating a DICOM dataset");
    }
}

extern "C" void mr_dcm_file_free(mr_dcm_file *f)
{
    try {
        delete f;
    } catch (...) {
    }
}

extern "C" mr_dcm_item *mr_dcm_file_dataset(mr_dcm_file *f)
{
    return handle(f->ff.getDataset());
}
extern "C" mr_dcm_item *mr_dcm_file_meta(mr_dcm_file *f)
{
    return handle(f->ff.getMetaInfo());
}

extern "C" void mr_dcm_file_xfer(const mr_dcm_file *f, char *uid, size_t uid_size, char *name,
                                 size_t name_size)
{
    try {
        DcmXfer x(const_cast<mr_dcm_file *>(f)->ff.getDataset()->getOriginalXfer());
        if (uid && uid_size) snprintf(uid, uid_size, "%s", x.getXferID());
        if (name && name_size) snprintf(name, name_size, "%s", x.getXferName());
    } catch (...) {
        if (uid && uid_size) uid[0] = '\0';
        if (name && name_size) name[0] = '\0';
    }
}

static DcmElement *find(const mr_dcm_item *it, uint32_t tag)
{
    DcmElement *e = NULL;
    if (!it || item(it)->findAndGetElement(key(tag), e).bad()) return NULL;
    return e;
}

extern "C" int mr_dcm_has(const mr_dcm_item *it, uint32_t tag)
{
    try {
        return it && item(it)->tagExists(key(tag));
    } catch (...) {
        return 0;
    }
}

extern "C" int mr_dcm_get_string(const mr_dcm_item *it, uint32_t tag, char *buf, size_t size)
{
    if (size) buf[0] = '\0';
    try {
        DcmElement *e = find(it, tag);
        OFString s;
        if (!e || e->getLength() == 0 || e->getOFStringArray(s, OFTrue).bad()) return 0;
        size_t a = 0, b = s.length();
        while (a < b && (s[a] == ' ' || s[a] == '\0'))
            a++;
        while (b > a && (s[b - 1] == ' ' || s[b - 1] == '\0'))
            b--;
        if (a == b) return 0;
        snprintf(buf, size, "%.*s", (int)(b - a), s.c_str() + a);
        return 1;
    } catch (...) {
        return 0;
    }
}

extern "C" int mr_dcm_get_number(const mr_dcm_item *it, uint32_t tag, unsigned long idx,
                                 double *value)
{
    try {
        DcmElement *e = find(it, tag);
        if (!e || e->getLength() == 0 || idx >= e->getVM()) return 0;
        switch (e->ident()) {
        case EVR_US: {
            Uint16 v;
            if (e->getUint16(v, idx).bad()) return 0;
            *value = v;
            return 1;
        }
        case EVR_SS: {
            Sint16 v;
            if (e->getSint16(v, idx).bad()) return 0;
            *value = v;
            return 1;
        }
        case EVR_UL: {
            Uint32 v;
            if (e->getUint32(v, idx).bad()) return 0;
            *value = v;
            return 1;
        }
        case EVR_SL: {
            Sint32 v;
            if (e->getSint32(v, idx).bad()) return 0;
            *value = v;
            return 1;
        }
        case EVR_FL: {
            Float32 v;
            if (e->getFloat32(v, idx).bad()) return 0;
            *value = v;
            return 1;
        }
        case EVR_FD: {
            Float64 v;
            if (e->getFloat64(v, idx).bad()) return 0;
            *value = v;
            return 1;
        }
        default: {
            // DS, IS and anything textual: parse the value strictly
            OFString s;
            char *end;
            if (e->getOFString(s, idx, OFTrue).bad()) return 0;
            const char *p = s.c_str();
            while (*p == ' ')
                p++;
            double v = strtod(p, &end);
            if (end == p) return 0;
            while (*end == ' ')
                end++;
            if (*end) return 0;
            *value = v;
            return 1;
        }
        }
    } catch (...) {
        return 0;
    }
}

extern "C" unsigned long mr_dcm_vm(const mr_dcm_item *it, uint32_t tag)
{
    try {
        DcmElement *e = find(it, tag);
        return e && e->getLength() ? e->getVM() : 0;
    } catch (...) {
        return 0;
    }
}

extern "C" size_t mr_dcm_seq_count(const mr_dcm_item *it, uint32_t tag)
{
    try {
        DcmSequenceOfItems *sq = NULL;
        if (!it || item(it)->findAndGetSequence(key(tag), sq).bad() || !sq) return 0;
        return sq->card();
    } catch (...) {
        return 0;
    }
}

extern "C" mr_dcm_item *mr_dcm_seq_item(const mr_dcm_item *it, uint32_t tag, size_t idx)
{
    try {
        DcmItem *sub = NULL;
        if (!it || idx > 0x7fffffff ||
            item(it)->findAndGetSequenceItem(key(tag), sub, (int)idx).bad())
            return NULL;
        return handle(sub);
    } catch (...) {
        return NULL;
    }
}

// Transfer syntaxes DCMTK 3.6.7 cannot decode without extra libraries (PS3.5 Annex A.4).
static bool is_jpeg2000(const char *uid)
{
    static const char *j2k[] = {"1.2.840.10008.1.2.4.90",  "1.2.840.10008.1.2.4.91",
                                "1.2.840.10008.1.2.4.92",  "1.2.840.10008.1.2.4.93",
                                "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202",
                                "1.2.840.10008.1.2.4.203"};
    for (const char *u : j2k)
        if (!strcmp(uid, u)) return true;
    return false;
}

extern "C" int mr_dcm_pixels(mr_dcm_file *f, const char *path, int bits_allocated,
                             const void **data, size_t *count)
{
    *data = NULL;
    *count = 0;
    try {
        mr_dcm_init();
        DcmDataset *ds = f->ff.getDataset();
        DcmXfer x(ds->getOriginalXfer());
        DcmElement *e = NULL;
        if (ds->findAndGetElement(DCM_PixelData, e).bad() || !e ||
            (!x.isEncapsulated() && e->getLength() == 0))
            return mr_dcm_error(MR_DCM_ERR_INPUT,
                                "%s: missing pixel data: no (7FE0,0010) PixelData", path);
        if (x.isEncapsulated()) {
            if (is_jpeg2000(x.getXferID()))
                return mr_dcm_error(
                    MR_DCM_ERR_INPUT,
                    "%s: unsupported transfer syntax %s (%s): mrpipe's DCMTK has no "
                    "JPEG 2000 decoder; convert the file first (e.g. gdcmconv --raw)",
                    path, x.getXferID(), x.getXferName());
            OFCondition c = ds->chooseRepresentation(EXS_LittleEndianExplicit, NULL);
            if (c.bad() || !ds->canWriteXfer(EXS_LittleEndianExplicit))
                return mr_dcm_error(MR_DCM_ERR_INPUT, "%s: unsupported transfer syntax %s (%s): %s",
                                    path, x.getXferID(), x.getXferName(),
                                    c.bad() ? c.text() : "no decoder");
            if (ds->findAndGetElement(DCM_PixelData, e).bad() || !e || e->getLength() == 0)
                return mr_dcm_error(MR_DCM_ERR_INPUT, "%s: (7FE0,0010) PixelData lost in decoding",
                                    path);
        }
        if (bits_allocated == 16) {
            Uint16 *p = NULL;
            if (e->getUint16Array(p).bad() || !p) {
                // OB-encoded 16-bit data: reinterpret the bytes (little endian after decoding)
                Uint8 *b = NULL;
                if (e->getUint8Array(b).bad() || !b)
                    return mr_dcm_error(MR_DCM_ERR_INPUT,
                                        "%s: (7FE0,0010) PixelData: cannot read as "
                                        "16-bit words",
                                        path);
                *data = b;
                *count = e->getLength() / 2;
                return MR_DCM_OK;
            }
            *data = p;
            *count = e->getLength() / 2;
            return MR_DCM_OK;
        }
        if (bits_allocated == 8) {
            Uint8 *b = NULL;
            if (e->getUint8Array(b).bad() || !b) {
                Uint16 *p = NULL; // OW holding bytes: the in-memory order is the file's
                if (e->getUint16Array(p).bad() || !p)
                    return mr_dcm_error(MR_DCM_ERR_INPUT,
                                        "%s: (7FE0,0010) PixelData: cannot read as "
                                        "bytes",
                                        path);
                *data = p;
                *count = e->getLength();
                return MR_DCM_OK;
            }
            *data = b;
            *count = e->getLength();
            return MR_DCM_OK;
        }
        return mr_dcm_error(MR_DCM_ERR_INPUT,
                            "%s: (0028,0100) BitsAllocated: expected 8 or 16, found %d", path,
                            bits_allocated);
    } catch (const std::bad_alloc &) {
        return mr_dcm_error(MR_DCM_ERR_NOMEM, "%s: out of memory decoding pixel data", path);
    } catch (...) {
        return mr_dcm_error(MR_DCM_ERR_INTERNAL, "%s: DCMTK failed decoding pixel data", path);
    }
}

extern "C" int mr_dcm_put_string(mr_dcm_item *it, uint32_t tag, const char *value)
{
    try {
        OFCondition c = item(it)->putAndInsertString(DcmTag(key(tag)), value ? value : "");
        if (c.bad())
            return mr_dcm_error(MR_DCM_ERR_INTERNAL, "DICOM (%04X,%04X): cannot set '%s': %s",
                                tag >> 16, tag & 0xffff, value ? value : "", c.text());
        return MR_DCM_OK;
    } catch (...) {
        return mr_dcm_error(MR_DCM_ERR_NOMEM, "DICOM (%04X,%04X): out of memory", tag >> 16,
                            tag & 0xffff);
    }
}

extern "C" int mr_dcm_put_u16(mr_dcm_item *it, uint32_t tag, unsigned value)
{
    try {
        OFCondition c = item(it)->putAndInsertUint16(DcmTag(key(tag)), (Uint16)value);
        if (c.bad())
            return mr_dcm_error(MR_DCM_ERR_INTERNAL, "DICOM (%04X,%04X): cannot set %u: %s",
                                tag >> 16, tag & 0xffff, value, c.text());
        return MR_DCM_OK;
    } catch (...) {
        return mr_dcm_error(MR_DCM_ERR_NOMEM, "DICOM (%04X,%04X): out of memory", tag >> 16,
                            tag & 0xffff);
    }
}

extern "C" int mr_dcm_put_pixels16(mr_dcm_item *it, const uint16_t *pixels, size_t count)
{
    try {
        if (count > 0x7fffffffUL)
            return mr_dcm_error(MR_DCM_ERR_INPUT, "DICOM pixel data of %zu words is too large",
                                count);
        OFCondition c = item(it)->putAndInsertUint16Array(DcmTag(DCM_PixelData, EVR_OW), pixels,
                                                          (unsigned long)count);
        if (c.bad())
            return mr_dcm_error(MR_DCM_ERR_INTERNAL, "DICOM (7FE0,0010): cannot set pixel data: %s",
                                c.text());
        return MR_DCM_OK;
    } catch (...) {
        return mr_dcm_error(MR_DCM_ERR_NOMEM, "DICOM (7FE0,0010): out of memory");
    }
}

extern "C" int mr_dcm_seq_append(mr_dcm_item **out, mr_dcm_item *it, uint32_t tag)
{
    *out = NULL;
    try {
        DcmItem *sub = NULL;
        OFCondition c = item(it)->findOrCreateSequenceItem(key(tag), sub, -2 /* append */);
        if (c.bad() || !sub)
            return mr_dcm_error(MR_DCM_ERR_INTERNAL,
                                "DICOM (%04X,%04X): cannot add a sequence item: %s", tag >> 16,
                                tag & 0xffff, c.text());
        *out = handle(sub);
        return MR_DCM_OK;
    } catch (...) {
        return mr_dcm_error(MR_DCM_ERR_NOMEM, "DICOM (%04X,%04X): out of memory", tag >> 16,
                            tag & 0xffff);
    }
}

extern "C" int mr_dcm_file_save(mr_dcm_file *f, const char *path, const char *version_name)
{
    try {
        // The meta header (PS3.10 7.1), written in full here so that DCMTK keeps it as it is: the
        // SOP class/instance of the dataset and mrpipe as the implementation.
        DcmMetaInfo *meta = f->ff.getMetaInfo();
        DcmDataset *ds = f->ff.getDataset();
        OFString cls, inst;
        const Uint8 version[2] = {0, 1};
        ds->findAndGetOFString(DCM_SOPClassUID, cls);
        ds->findAndGetOFString(DCM_SOPInstanceUID, inst);
        meta->clear();
        meta->putAndInsertUint8Array(DCM_FileMetaInformationVersion, version, 2);
        meta->putAndInsertString(DCM_MediaStorageSOPClassUID, cls.c_str());
        meta->putAndInsertString(DCM_MediaStorageSOPInstanceUID, inst.c_str());
        meta->putAndInsertString(DCM_TransferSyntaxUID,
                                 DcmXfer(EXS_LittleEndianExplicit).getXferID());
        meta->putAndInsertString(DCM_ImplementationClassUID, MR_IMPLEMENTATION_CLASS_UID);
        meta->putAndInsertString(DCM_ImplementationVersionName, version_name);
        Uint32 group_length = 0; // bytes after (0002,0000), explicit VR little endian
        for (unsigned long i = 0; i < meta->card(); i++)
            group_length += meta->getElement(i)->calcElementLength(EXS_LittleEndianExplicit,
                                                                   EET_ExplicitLength);
        meta->putAndInsertUint32(DCM_FileMetaInformationGroupLength, group_length);
        OFCondition c = f->ff.saveFile(path, EXS_LittleEndianExplicit, EET_ExplicitLength,
                                       EGL_recalcGL, EPD_noChange, 0, 0, EWM_dontUpdateMeta);
        if (c.bad())
            return mr_dcm_error(MR_DCM_ERR_IO, "%s: cannot write DICOM: %s", path, c.text());
        return MR_DCM_OK;
    } catch (...) {
        return mr_dcm_error(MR_DCM_ERR_IO, "%s: cannot write DICOM (DCMTK failed)", path);
    }
}
