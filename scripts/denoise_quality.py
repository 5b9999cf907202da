#!/usr/bin/python3
"""denoise_quality.py: the denoiser's quality table (docs/models.md).

On the held-out validation data of configs/train_denoiser.yaml (never trained on):
  - ch2 (Colin27) slab z = 20..40 mm (every other axial slice: k = 91, 93, ..., 111), and
  - inia19 (macaque T1 brain), 10 axial slices evenly spaced over the middle 60 % of the volume,
Rician noise (complex Gaussian added, then the magnitude) at 3, 5 and 10 % of the region's maximum;
scores PSNR and SSIM (fastMRI definitions, computed by `mrpipe metrics`) of
  - the noisy input,
  - scikit-image denoise_nl_means (fast mode, 5x5 patches, distance 6, sigma given) with h tuned per
    SLICE over a grid with the clean image known (the best it can do),
  - BART `rof` (2-D TV, flags 3) with lambda tuned per slice likewise,
  - mrpipe's model through `mrpipe denoise` (no tuning: one blind model, defaults).

usage: /usr/bin/python3 scripts/denoise_quality.py --mrpipe build/mrpipe [--model M.h5]
           [--out table.md] [--work DIR]
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

import h5py
import nibabel as nib
import numpy as np
from skimage.restoration import denoise_nl_means

TEMPLATES = "/usr/share/mricron/templates"
LEVELS = [0.03, 0.05, 0.10]
NLM_H = [0.25, 0.4, 0.55, 0.7, 0.85, 1.0]          # x sigma
ROF_LAMBDA = [0.01, 0.02, 0.03, 0.045, 0.065, 0.09, 0.13]  # images scaled to max 1


def load_stack(name):
    """(S, H, W) float32 like mrpipe reads NIfTI: slices of constant k, rows j, columns i."""
    d = np.asarray(nib.load(os.path.join(TEMPLATES, name)).get_fdata(), dtype=np.float32)
    return np.ascontiguousarray(d.transpose(2, 1, 0))


def validation_sets():
    ch2 = load_stack("ch2.nii.gz")
    # ch2 affine: z = k - 71 mm; slab [20, 40] mm -> k 91..111
    slab = ch2[91:112:2]
    ini = load_stack("inia19-t1-brain.nii.gz")
    s = ini.shape[0]
    k0, k1 = s // 5, s - s // 5
    ks = [k0 + (2 * i + 1) * (k1 - k0) // 20 for i in range(10)]
    return [("ch2 slab z 20-40 mm (11 slices)", slab), ("inia19 macaque (10 slices)", ini[ks])]


def rician(x, sigma, seed):
    rng = np.random.default_rng(seed)
    re = x + sigma * rng.standard_normal(x.shape)
    im = sigma * rng.standard_normal(x.shape)
    return np.sqrt(re * re + im * im).astype(np.float32)


def write_h5(path, arr, name):
    with h5py.File(path, "w") as f:
        f.create_dataset(name, data=arr.astype(np.float32))


def mrpipe_metrics(mrpipe, ref_h5, rec_h5):
    out = subprocess.run([mrpipe, "metrics", "--reference", ref_h5, "--input", rec_h5],
                         check=True, capture_output=True, text=True).stdout
    m = re.search(r"PSNR=([0-9.eE+-]+) SSIM=([0-9.eE+-]+)", out.strip().splitlines()[-1])
    return float(m.group(1)), float(m.group(2))


def write_cfl(base, arr):
    """(S, H, W) C-order = BART column-major dims (W, H, S)."""
    s, h, w = arr.shape
    with open(base + ".hdr", "w") as f:
        f.write("# Dimensions\n%d %d %d" % (w, h, s) + " 1" * 13 + "\n")
    arr.astype(np.complex64).tofile(base + ".cfl")


def read_cfl(base, shape):
    return np.fromfile(base + ".cfl", dtype=np.complex64).reshape(shape)


def best_per_slice(clean, candidates):
    """Pick, per slice, the candidate with the lowest MSE (the oracle tuning)."""
    out = np.empty_like(clean)
    chosen = []
    for k in range(clean.shape[0]):
        errs = [np.mean((c[k] - clean[k]) ** 2) for c in candidates]
        j = int(np.argmin(errs))
        chosen.append(j)
        out[k] = candidates[j][k]
    return out, chosen


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mrpipe", default="mrpipe")
    ap.add_argument("--model", default=None)
    ap.add_argument("--out", default=None)
    ap.add_argument("--work", default=None)
    ap.add_argument("--quick", action="store_true", help="5 %% only (a smoke test)")
    a = ap.parse_args()
    levels = [0.05] if a.quick else LEVELS
    work = a.work or tempfile.mkdtemp(prefix="mrpipe-quality-")
    os.makedirs(work, exist_ok=True)
    rows = []
    for si, (name, clean) in enumerate(validation_sets()):
        mx = float(clean.max())
        ref = os.path.join(work, "ref%d.h5" % si)
        write_h5(ref, clean, "reconstruction_rss")
        for level in levels:
            sigma = level * mx
            noisy = rician(clean, sigma, seed=1000 * si + int(round(level * 100)))
            tag = "%d_%02d" % (si, round(level * 100))
            res = {}
            p = os.path.join(work, "noisy%s.h5" % tag)
            write_h5(p, noisy, "reconstruction")
            res["noisy input"] = mrpipe_metrics(a.mrpipe, ref, p)
            # NLM, h tuned per slice with the true sigma given
            t0 = time.time()
            cands = []
            for hf in NLM_H:
                cands.append(np.stack([denoise_nl_means(s, h=hf * sigma, sigma=sigma,
                                                        fast_mode=True, patch_size=5,
                                                        patch_distance=6) for s in noisy])
                             .astype(np.float32))
            nlm, ch = best_per_slice(clean, cands)
            p = os.path.join(work, "nlm%s.h5" % tag)
            write_h5(p, nlm, "reconstruction")
            res["skimage NLM (h tuned per slice)"] = mrpipe_metrics(a.mrpipe, ref, p)
            nlm_h = sorted(set(NLM_H[j] for j in ch))
            # BART rof, lambda tuned per slice (image scaled to max 1)
            cands = []
            base_in = os.path.join(work, "rofin" + tag)
            write_cfl(base_in, noisy / mx)
            for lam in ROF_LAMBDA:
                base_out = os.path.join(work, "rofout%s_%g" % (tag, lam))
                subprocess.run(["bart", "rof", str(lam), "3", base_in, base_out], check=True,
                               capture_output=True)
                cands.append((np.abs(read_cfl(base_out, noisy.shape)) * mx).astype(np.float32))
            rof, ch = best_per_slice(clean, cands)
            p = os.path.join(work, "rof%s.h5" % tag)
            write_h5(p, rof, "reconstruction")
            res["BART rof (lambda tuned per slice)"] = mrpipe_metrics(a.mrpipe, ref, p)
            rof_l = sorted(set(ROF_LAMBDA[j] for j in ch))
            # mrpipe
            src = os.path.join(work, "noisy%s.h5" % tag)
            p = os.path.join(work, "mrpipe%s.h5" % tag)
            cmd = [a.mrpipe, "denoise", "--input", src, "--output", p]
            if a.model:
                cmd += ["--model", a.model]
            t0 = time.time()
            subprocess.run(cmd, check=True, capture_output=True)
            dt = time.time() - t0
            res["mrpipe denoise"] = mrpipe_metrics(a.mrpipe, ref, p)
            best_other = max(res["skimage NLM (h tuned per slice)"][0],
                             res["BART rof (lambda tuned per slice)"][0])
            rows.append((name, level, res, res["mrpipe denoise"][0] - best_other, nlm_h, rof_l, dt))
            print("%s %2d%%: " % (name, round(level * 100)) +
                  "; ".join("%s %.2f dB / %.4f" % (k, v[0], v[1]) for k, v in res.items()) +
                  "; margin %.2f dB" % rows[-1][3], file=sys.stderr)
    lines = ["| validation data | Rician noise (% of max) | noisy input | skimage NLM, h tuned | "
             "BART rof, lambda tuned | mrpipe denoise | mrpipe - best other (dB) |",
             "|---|---|---|---|---|---|---|"]
    for name, level, res, margin, nlm_h, rof_l, dt in rows:
        cells = ["%.2f / %.4f" % res[k] for k in ("noisy input", "skimage NLM (h tuned per slice)",
                                                  "BART rof (lambda tuned per slice)",
                                                  "mrpipe denoise")]
        lines.append("| %s | %d | %s | %+.2f |" % (name, round(level * 100), " | ".join(cells),
                                                   margin))
    lines.append("")
    lines.append("Cells: PSNR (dB) / SSIM from `mrpipe metrics` (fastMRI definitions: volume "
                 "maximum, 7x7 uniform SSIM). Tuned values chosen: " +
                 "; ".join("%s %d%%: NLM h/sigma %s, rof lambda %s" %
                           (n.split(" (")[0], round(l * 100), ",".join("%g" % h for h in nh),
                            ",".join("%g" % x for x in rl))
                           for n, l, _, _, nh, rl, _ in rows) + ".")
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)
    ok = all(r[3] >= 1.0 for r in rows)
    print("goal (mrpipe >= 1 dB above the best other at every level): %s" %
          ("met" if ok else "NOT met"), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
