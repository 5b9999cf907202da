#!/usr/bin/python3
"""gen_metrics_golden.py: oracle values for mrpipe's metrics tests (tests/test_metrics.c).

The oracle is Debian's scikit-image 0.19 (`structural_similarity`, `peak_signal_noise_ratio`) and
fastMRI's evaluate.py definitions (nmse, psnr with the volume max, ssim = mean over slices with the
volume max as data_range), each run on float32 arrays (what fastMRI does with its .h5 volumes) and on
the same values as float64.

Modes:
  gen_metrics_golden.py [OUT]         write the golden file (default tests/data/metrics_golden.txt)
  gen_metrics_golden.py --oracle MAN  read a manifest written by the C test ("NAME S H W REF IMG",
                                      raw float32 C-order files) and print "val NAME KEY VALUE" lines
                                      for those exact arrays (the live check)

Test images: slices of Debian's MNI templates (mricron), cropped, then degraded deterministically:
  noise      |base + sigma * N(0, 1)|, N = numpy RandomState(seed).standard_normal((S, H, W))
  blur       separable [1 2 1] / 4 along W then H, border pixel repeated, in float64
  noiseblur  blur, then noise
then cast to float32. The C test rebuilds the same arrays (MT19937 + the polar method, the same
float64 operations in the same order) and checks them against the `sum` lines here (the sum of the
float32 bit patterns, an exact checksum).
"""
import os
import sys

import nibabel as nib
import numpy as np
from skimage.metrics import normalized_root_mse, peak_signal_noise_ratio, structural_similarity

TEMPLATES = "/usr/share/mricron/templates"

# name, file, axis, index, nslices, y0, x0, h, w, degradation, sigma, seed
# axis: plane of the (S, H, W) = (k, j, i) array (0: constant k, 1: constant j), as mrpipe reads
# NIfTI. Sizes: odd, even, square, not square, the minimum for each window.
CASES = [
    ("ch2_k90_noise", "ch2.nii.gz", 0, 90, 1, 0, 0, 217, 181, "noise", 8.0, 1),
    ("ch2_k60_blur", "ch2.nii.gz", 0, 60, 1, 0, 0, 217, 181, "blur", 0.0, 0),
    ("ch2bet_j108_noiseblur", "ch2bet.nii.gz", 1, 108, 1, 0, 0, 181, 181, "noiseblur", 4.0, 2),
    ("inia_k64_noise", "inia19-t1-brain.nii.gz", 0, 64, 1, 0, 0, 206, 168, "noise", 10.0, 3),
    ("inia_k70_odd37x51", "inia19-t1-brain.nii.gz", 0, 70, 1, 60, 50, 37, 51, "noise", 6.0, 4),
    ("inia_j103_noise", "inia19-t1-brain.nii.gz", 1, 103, 1, 0, 0, 128, 168, "noise", 15.0, 7),
    ("ch2_k100_even128x96", "ch2.nii.gz", 0, 100, 1, 20, 10, 128, 96, "blur", 0.0, 0),
    ("ch2_k90_min7x7", "ch2.nii.gz", 0, 90, 1, 100, 80, 7, 7, "noise", 8.0, 5),
    ("ch2bet_k80_min11x11", "ch2bet.nii.gz", 0, 80, 1, 100, 80, 11, 11, "noise", 5.0, 6),
    ("ch2_k70_vol8", "ch2.nii.gz", 0, 70, 8, 30, 20, 150, 141, "noise", 6.0, 11),
    ("inia_k50_vol5_blur", "inia19-t1-brain.nii.gz", 0, 50, 5, 10, 5, 180, 155, "noiseblur", 3.0,
     12),
]

_cache = {}


def load_template(name):
    """float32 (S, H, W) = (k, j, i) as mrpipe's NIfTI reader returns it."""
    if name not in _cache:
        img = nib.load(os.path.join(TEMPLATES, name))
        data = np.asanyarray(img.dataobj).astype(np.float32)
        _cache[name] = np.ascontiguousarray(np.transpose(data, (2, 1, 0)))
    return _cache[name]


def blur121(a):
    p = np.concatenate([a[..., :, :1], a, a[..., :, -1:]], axis=-1)
    t = (p[..., :, :-2] + 2.0 * p[..., :, 1:-1] + p[..., :, 2:]) * 0.25
    p = np.concatenate([t[..., :1, :], t, t[..., -1:, :]], axis=-2)
    return (p[..., :-2, :] + 2.0 * p[..., 1:-1, :] + p[..., 2:, :]) * 0.25


def make_case(case):
    name, fname, axis, index, ns, y0, x0, h, w, degr, sigma, seed = case
    vol = load_template(fname)
    if axis == 0:
        planes = vol[index:index + ns]
    else:
        planes = np.transpose(vol[:, index:index + ns, :], (1, 0, 2))
    ref = np.ascontiguousarray(planes[:, y0:y0 + h, x0:x0 + w], dtype=np.float32)
    assert ref.shape == (ns, h, w), (name, ref.shape)
    base = ref.astype(np.float64)
    if degr in ("blur", "noiseblur"):
        base = blur121(base)
    if degr in ("noise", "noiseblur"):
        n = np.random.RandomState(seed).standard_normal((ns, h, w))
        base = np.abs(base + sigma * n)
    return ref, base.astype(np.float32)


def sk_nmse(gt, pred):
    """NMSE = ||gt - pred||^2 / ||gt||^2 through scikit-image: normalized_root_mse (euclidean) squared.
    skimage accumulates its means in float64 for float32 inputs too, unlike numpy's float32 norm
    (fastMRI's nmse() on float32 arrays sums in float32, off by ~1e-5 relative)."""
    return float(normalized_root_mse(gt, pred, normalization="euclidean") ** 2)


def oracle(ref32, img32):
    """fastMRI evaluate.py values on float32 and float64 copies, computed with scikit-image's metrics
    (NMSE via normalized_root_mse). Keys: vol.*, s<i>.*."""
    out = {}
    ns, h, w = ref32.shape
    for tag, gt, pred in (("f32", ref32, img32),
                          ("f64", ref32.astype(np.float64), img32.astype(np.float64))):
        maxval = gt.max()
        out["vol.nmse." + tag] = sk_nmse(gt, pred)
        if np.array_equal(gt, pred):
            out["vol.psnr." + tag] = float("inf")
        else:
            out["vol.psnr." + tag] = float(peak_signal_noise_ratio(gt, pred, data_range=maxval))
        for win, kw in (("u", {}), ("g", dict(gaussian_weights=True, sigma=1.5,
                                               use_sample_covariance=False))):
            if win == "g" and min(h, w) < 11:
                continue
            ssim = np.array([0])
            for s in range(ns):
                v = structural_similarity(gt[s], pred[s], data_range=maxval, **kw)
                out["s%d.ssim_%s.%s" % (s, win, tag)] = float(v)
                ssim = ssim + v
            out["vol.ssim_%s.%s" % (win, tag)] = float((ssim / ns)[0])
        for s in range(ns):
            out["s%d.psnr.%s" % (s, tag)] = float(
                peak_signal_noise_ratio(gt[s], pred[s], data_range=maxval))
            out["s%d.nmse.%s" % (s, tag)] = sk_nmse(gt[s], pred[s])
    return out


def camera_values():
    """skimage's own Gaussian-SSIM test inputs: data.camera() and its noisy copy (seed 5)."""
    from skimage import data
    np.random.seed(5)
    cam = data.camera()
    noisy = np.clip(cam + 20.0 * np.random.randn(*cam.shape), 0, 255).astype(cam.dtype)
    npz = np.load(os.path.join(os.path.dirname(data.__file__), "mssim_matlab_output.npz"))
    return {
        "cam.sum": float(cam.astype(np.float64).sum()),  # integers: exact in any order
        "noisy.sum": float(noisy.astype(np.float64).sum()),
        "gauss.skimage": float(structural_similarity(cam, noisy, gaussian_weights=True,
                                                     use_sample_covariance=False)),
        "uniform.skimage": float(structural_similarity(cam, noisy)),
        # skimage's test_gaussian_structural_similarity_vs_IPOL: imdiff (an independent C
        # implementation) on the current camera image
        "gauss.ipol": 0.357959091663361,
        # mssim_matlab_output.npz: Wang's MATLAB ssim_index on the camera image shipped before
        # skimage 0.18 (replaced since); kept for the record, see docs/validation.md
        "gauss.matlab_npz": float(npz["mssim_matlab"].ravel()[0]),
    }


def bitsum(a):
    """Order-independent exact checksum: the sum of the float32 bit patterns."""
    return int(a.view(np.uint32).astype(np.uint64).sum())


def fmt(v):
    return repr(float(v))


def write_golden(path):
    lines = ["# mrpipe metrics golden values: scripts/gen_metrics_golden.py with scikit-image",
             "# (Debian python3-skimage), numpy %s. Regenerate with /usr/bin/python3." % np.__version__,
             "# spec NAME FILE AXIS INDEX NSLICES Y0 X0 H W DEGRADATION SIGMA SEED",
             "# sum NAME bits(ref) bits(img) (sums of the float32 bit patterns: an exact checksum)",
             "# val NAME KEY VALUE (KEY: vol|s<i> . nmse|psnr|ssim_u|ssim_g . f32|f64)"]
    import skimage
    lines[0] += " %s" % skimage.__version__
    for case in CASES:
        ref, img = make_case(case)
        lines.append("spec " + " ".join(str(x) for x in case))
        lines.append("sum %s %d %d" % (case[0], bitsum(ref), bitsum(img)))
        for k, v in oracle(ref, img).items():
            lines.append("val %s %s %s" % (case[0], k, fmt(v)))
    for k, v in camera_values().items():
        lines.append("camera %s %s" % (k, fmt(v)))
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def run_manifest(path):
    with open(path) as f:
        for line in f:
            t = line.split()
            if not t:
                continue
            name, ns, h, w = t[0], int(t[1]), int(t[2]), int(t[3])
            ref = np.fromfile(t[4], dtype=np.float32).reshape(ns, h, w)
            img = np.fromfile(t[5], dtype=np.float32).reshape(ns, h, w)
            for k, v in oracle(ref, img).items():
                print("val %s %s %s" % (name, k, fmt(v)))
    for k, v in camera_values().items():
        print("camera %s %s" % (k, fmt(v)))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--oracle":
        run_manifest(sys.argv[2])
    else:
        here = os.path.dirname(os.path.abspath(__file__))
        out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "tests", "data",
                                                                 "metrics_golden.txt")
        write_golden(out)
