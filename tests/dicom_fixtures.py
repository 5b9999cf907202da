#!/usr/bin/python3
"""dicom_fixtures.py: DICOM inputs and oracles for tests/test_dicom.c (pydicom, numpy, nibabel).

  make OUT          build the fixtures under OUT (from pydicom's MR_small.dcm pixels)
  affine DIR        print the voxel (i=column, j=row, k=slice) -> RAS affine of the series in DIR,
                    computed from the DICOM tags as dicom2nifti/nibabel reason (slices sorted by
                    IPP . normal, step = (last IPP - first IPP) / (n - 1), LPS -> RAS)
  volume DIR NPY    save the series in DIR as float32 (S, H, W) (sorted, rescaled) to NPY
  compare NII NPY   exit 0 when the NIfTI's data (k, j, i) equals the (S, H, W) array exactly
  check_nii NII DIR exit 0 when the NIfTI's data and affine match the DICOM series in DIR
  check_written DIR SOURCE_DIR  check a derived series: pydicom reads it, UIDs 2.25 and new, identity
                    copied from the source, values within the recorded scaling of the source's
  make_net OUT      the fixtures of tests/test_dicom_net.c: `series` (as make), `echo2` (a 2-echo
                    series: 4 positions x EchoNumbers 1, 2, TE 12 / 30 ms, shuffled files),
                    `echo_te` (2 echoes told apart by EchoTime only), `echo_dup` (two images of
                    echo 1 at one position: still an error)
  check_nii_echo NII DIR ECHO  as check_nii for the images of DIR with EchoNumbers == ECHO
Only pydicom's own test files are used (DATA.md), never held-out data.
"""
import copy
import glob
import os
import random
import sys

import warnings

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

TEST_FILES = "/usr/lib/python3/dist-packages/pydicom/data/test_files"
MR_SMALL = os.path.join(TEST_FILES, "MR_small.dcm")


def rotation():
    """An oblique orientation: rows, columns and normal of a rotated frame (orthonormal)."""
    a, b = np.deg2rad(20.0), np.deg2rad(-35.0)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    r = rz @ rx
    return r[:, 0], r[:, 1], r[:, 2]


def slice_pixels(base, k):
    """Distinct, deterministic slices from MR_small's pixels (int16)."""
    return (np.roll(base, 3 * k, axis=1) + 7 * k).astype(np.int16)


def write(ds, path):
    ds.is_little_endian = True
    ds.is_implicit_VR = False
    ds.save_as(path, write_like_original=False)


def single(base_ds, pixels, series_uid, ipp, iop, inst):
    ds = copy.deepcopy(base_ds)
    ds.SeriesInstanceUID = series_uid
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta = copy.deepcopy(base_ds.file_meta)
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.ImagePositionPatient = [float("%.6f" % v) for v in ipp]
    ds.ImageOrientationPatient = [float("%.8f" % v) for v in iop]
    ds.InstanceNumber = inst
    ds.PixelData = pixels.tobytes()
    return ds


def make_series(out, base, n=5, spacing=2.5, gap_break=None, odd_iop=None, prefix="f", uid=None,
                descr="fixture series", number=7):
    os.makedirs(out, exist_ok=True)
    row, col, nrm = rotation()
    origin = np.array([-40.0, 12.5, 30.0])
    uid = uid or generate_uid()
    order = list(range(n))
    random.Random(4).shuffle(order)  # file names and instance numbers unrelated to position
    for rank, k in enumerate(order):
        d = k * spacing + (spacing if gap_break is not None and k >= gap_break else 0.0)
        iop = list(row) + list(col)
        if odd_iop is not None and k == odd_iop:
            r2, c2, _ = rotation()
            iop = [r2[0], r2[1], r2[2] + 0.05, c2[0], c2[1], c2[2]]
        ds = single(base, slice_pixels(base.pixel_array, k), uid, origin + d * nrm, iop, rank + 1)
        ds.SeriesDescription = descr
        ds.SeriesNumber = number
        write(ds, os.path.join(out, "%s_%02d.dcm" % (prefix, (rank * 7 + 3) % 11)))
    return uid


def make_enhanced(path, base, n=5, spacing=2.5):
    """An Enhanced MR Image (multi-frame) object with the series' slices as frames in shuffled
    order: per-frame Plane Position, shared Plane Orientation, Pixel Measures and Pixel Value
    Transformation."""
    row, col, nrm = rotation()
    origin = np.array([-40.0, 12.5, 30.0])
    order = list(range(n))
    random.Random(9).shuffle(order)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4.1"
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.4.1"
    for kw in ("PatientName", "PatientID", "StudyInstanceUID", "StudyDate", "StudyTime",
               "FrameOfReferenceUID"):
        setattr(ds, kw, getattr(base, kw))
    ds.Modality = "MR"
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = 9
    ds.SeriesDescription = "fixture enhanced"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "NONE"]
    ds.Rows, ds.Columns = base.Rows, base.Columns
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.NumberOfFrames = n
    shared = Dataset()
    po = Dataset()
    po.ImageOrientationPatient = [float("%.8f" % v) for v in list(row) + list(col)]
    shared.PlaneOrientationSequence = Sequence([po])
    pm = Dataset()
    pm.PixelSpacing = list(base.PixelSpacing)
    pm.SliceThickness = base.SliceThickness
    shared.PixelMeasuresSequence = Sequence([pm])
    pv = Dataset()
    pv.RescaleSlope, pv.RescaleIntercept, pv.RescaleType = 1, 0, "US"
    shared.PixelValueTransformationSequence = Sequence([pv])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    frames, per = [], []
    for k in order:
        item = Dataset()
        pp = Dataset()
        pp.ImagePositionPatient = [float("%.6f" % v) for v in origin + k * spacing * nrm]
        item.PlanePositionSequence = Sequence([pp])
        per.append(item)
        frames.append(slice_pixels(base.pixel_array, k))
    ds.PerFrameFunctionalGroupsSequence = Sequence(per)
    ds.PixelData = np.stack(frames).astype(np.int16).tobytes()
    write(ds, path)


def make(out):
    base = pydicom.dcmread(MR_SMALL)
    os.makedirs(out, exist_ok=True)
    make_series(os.path.join(out, "series"), base)
    make_enhanced(os.path.join(out, "enhanced.dcm"), base)
    # two series in one folder (and a file that is not DICOM, skipped)
    two = os.path.join(out, "two")
    make_series(two, base, n=3, prefix="a", descr="first", number=3)
    make_series(two, base, n=2, prefix="b", descr="second", number=4)
    with open(os.path.join(two, "README.txt"), "w") as f:
        f.write("not DICOM\n")
    # variants of MR_small's pixel module
    ds = copy.deepcopy(base)
    ds.PhotometricInterpretation = "MONOCHROME1"
    write(ds, os.path.join(out, "mono1.dcm"))
    ds = copy.deepcopy(base)
    ds.RescaleSlope, ds.RescaleIntercept = 2, -100
    write(ds, os.path.join(out, "rescaled.dcm"))
    ds = copy.deepcopy(base)  # unsigned 12-bit stored (for JPEG extended) with values as MR_small's
    ds.PixelRepresentation, ds.BitsStored, ds.HighBit = 0, 12, 11
    ds.PixelData = base.pixel_array.astype(np.uint16).tobytes()
    write(ds, os.path.join(out, "unsigned12.dcm"))
    ds = copy.deepcopy(base)  # 8-bit (for JPEG baseline)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = (base.pixel_array // 9).astype(np.uint8).tobytes()
    write(ds, os.path.join(out, "eight.dcm"))
    # bad inputs
    bad = os.path.join(out, "bad")
    os.makedirs(bad, exist_ok=True)
    with open(os.path.join(bad, "notdicom.dcm"), "w") as f:
        f.write("this is not a DICOM file\n" * 20)
    ds = copy.deepcopy(base)
    del ds.PixelData
    write(ds, os.path.join(bad, "nopixels.dcm"))
    make_series(os.path.join(bad, "orientation"), base, n=3, odd_iop=1)
    make_series(os.path.join(bad, "gap"), base, n=4, gap_break=2)
    sz = os.path.join(bad, "size")
    uid = make_series(sz, base, n=2)
    small = single(base, base.pixel_array[:32, :].copy(), uid, [0, 0, 99], [1, 0, 0, 0, 1, 0], 9)
    small.Rows = 32
    write(small, os.path.join(sz, "z_small.dcm"))


def make_multiecho(out, base, n=4, spacing=3.0, tes=(12.0, 30.0), echo_numbers=True, dup=False):
    """One series, n positions x len(tes) echoes at the same positions (as a multi-echo GRE):
    EchoNumbers 1.. (or none: told apart by EchoTime only), file names shuffled over echoes."""
    os.makedirs(out, exist_ok=True)
    row, col, nrm = rotation()
    origin = np.array([-40.0, 12.5, 30.0])
    uid = generate_uid()
    items = [(e, k) for e in range(len(tes)) for k in range(n)]
    if dup:
        items.append((0, 1))
    random.Random(11).shuffle(items)
    for rank, (e, k) in enumerate(items):
        px = (slice_pixels(base.pixel_array, k).astype(np.int32) // (e + 1) + 100 * e).astype(np.int16)
        ds = single(base, px, uid, origin + k * spacing * nrm, list(row) + list(col), rank + 1)
        ds.SeriesDescription = "fixture multi-echo"
        ds.SeriesNumber = 12
        ds.EchoTime = tes[e]
        if echo_numbers:
            ds.EchoNumbers = e + 1
        elif "EchoNumbers" in ds:
            del ds.EchoNumbers
        write(ds, os.path.join(out, "m_%03d.dcm" % ((rank * 13 + 5) % 97)))
    return uid


def make_net(out):
    base = pydicom.dcmread(MR_SMALL)
    os.makedirs(out, exist_ok=True)
    make_series(os.path.join(out, "series"), base)
    make_multiecho(os.path.join(out, "echo2"), base)
    make_multiecho(os.path.join(out, "echo_te"), base, n=3, echo_numbers=False)
    make_multiecho(os.path.join(out, "echo_dup"), base, n=3, dup=True)


def read_series(d, echo=None):
    files = sorted(glob.glob(os.path.join(d, "*"))) if os.path.isdir(d) else [d]
    dss = [pydicom.dcmread(f) for f in files]
    if echo is not None:
        dss = [x for x in dss if int(x.EchoNumbers) == echo]
    if len(dss) == 1 and "PerFrameFunctionalGroupsSequence" in dss[0]:
        ds = dss[0]
        iop = np.array(ds.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0]
                       .ImageOrientationPatient, float)
        ps = [float(v) for v in ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing]
        ipps = [np.array(f.PlanePositionSequence[0].ImagePositionPatient, float)
                for f in ds.PerFrameFunctionalGroupsSequence]
        imgs = list(ds.pixel_array.astype(np.float32))
    else:
        iop = np.array(dss[0].ImageOrientationPatient, float)
        ps = [float(v) for v in dss[0].PixelSpacing]
        ipps = [np.array(x.ImagePositionPatient, float) for x in dss]
        imgs = [x.pixel_array.astype(np.float32) * float(getattr(x, "RescaleSlope", 1)) +
                float(getattr(x, "RescaleIntercept", 0)) for x in dss]
    row, col = iop[:3], iop[3:]
    nrm = np.cross(row, col)
    order = np.argsort([p @ nrm for p in ipps])
    ipps = [ipps[i] for i in order]
    vol = np.stack([imgs[i] for i in order]).astype(np.float32)
    step = (ipps[-1] - ipps[0]) / (len(ipps) - 1) if len(ipps) > 1 else nrm * float(dss[0].SliceThickness)
    A = np.eye(4)
    A[:3, 0] = row * ps[1]
    A[:3, 1] = col * ps[0]
    A[:3, 2] = step
    A[:3, 3] = ipps[0]
    A = np.diag([-1, -1, 1, 1]) @ A  # LPS -> RAS
    return vol, A


def check_nii(nii, d, echo=None):
    import nibabel as nib
    img = nib.load(nii)
    data = np.asarray(img.dataobj, dtype=np.float32).transpose(2, 1, 0)  # (i,j,k) -> (S,H,W)
    vol, A = read_series(d, echo)
    ok = True
    if data.shape != vol.shape or not np.array_equal(data, vol):
        print("data differ", data.shape, vol.shape)
        ok = False
    for name, aff in (("sform", img.get_sform()), ("qform", img.get_qform())):
        if not np.allclose(aff, A, atol=1e-3):
            print(name, "differs:\n", aff, "\nexpected\n", A)
            ok = False
    print("affine\n", A)
    return ok


def check_written(d, src):
    files = sorted(glob.glob(os.path.join(d, "*")))
    out = [pydicom.dcmread(f) for f in files]
    srcs = {}
    for f in glob.glob(os.path.join(src, "*")) if os.path.isdir(src) else [src]:
        try:
            x = pydicom.dcmread(f)
            srcs[x.SOPInstanceUID] = x
        except Exception:
            pass
    s0 = next(iter(srcs.values()))
    ok = True
    series = {x.SeriesInstanceUID for x in out}
    if len(series) != 1 or not series.pop().startswith("2.25."):
        print("series UID not one 2.25 UID")
        ok = False
    for x in out:
        if not all(os.path.basename(f).startswith("IM_") for f in files):
            ok = False
        if not x.SOPInstanceUID.startswith("2.25.") or x.SOPInstanceUID in srcs:
            print("bad SOP UID", x.SOPInstanceUID)
            ok = False
        if list(x.ImageType[:2]) != ["DERIVED", "SECONDARY"] or x.SOPClassUID != "1.2.840.10008.5.1.4.1.1.4":
            print("ImageType/SOP class", x.ImageType, x.SOPClassUID)
            ok = False
        for kw in ("PatientName", "PatientID", "StudyInstanceUID", "FrameOfReferenceUID"):
            if str(getattr(x, kw)) != str(getattr(s0, kw)):
                print(kw, "not copied", getattr(x, kw), getattr(s0, kw))
                ok = False
        ref = x.SourceImageSequence[0].ReferencedSOPInstanceUID
        if ref not in srcs:
            print("SourceImageSequence does not reference a source instance")
            ok = False
            continue
        s = srcs[ref]
        want = s.pixel_array.astype(np.float64) * float(getattr(s, "RescaleSlope", 1)) + \
            float(getattr(s, "RescaleIntercept", 0))
        got = x.pixel_array.astype(np.float64) * float(getattr(x, "RescaleSlope", 1)) + \
            float(getattr(x, "RescaleIntercept", 0))
        tol = float(getattr(x, "RescaleSlope", 1)) * 0.5 + 1e-9
        if np.max(np.abs(want - got)) > tol:
            print("values differ by", np.max(np.abs(want - got)), "tolerance", tol)
            ok = False
        if not np.allclose(np.array(x.ImagePositionPatient, float), np.array(s.ImagePositionPatient, float), atol=1e-3):
            print("IPP differs", x.ImagePositionPatient, s.ImagePositionPatient)
            ok = False
    print("checked", len(out), "instances")
    return ok


def main():
    warnings.simplefilter("ignore")
    cmd = sys.argv[1]
    if cmd == "make":
        make(sys.argv[2])
        return 0
    if cmd == "affine":
        print(read_series(sys.argv[2])[1])
        return 0
    if cmd == "make_net":
        make_net(sys.argv[2])
        return 0
    if cmd == "check_nii_echo":
        return 0 if check_nii(sys.argv[2], sys.argv[3], int(sys.argv[4])) else 1
    if cmd == "check_nii":
        return 0 if check_nii(sys.argv[2], sys.argv[3]) else 1
    if cmd == "check_written":
        return 0 if check_written(sys.argv[2], sys.argv[3]) else 1
    print("unknown command", cmd)
    return 2


if __name__ == "__main__":
    sys.exit(main())
