#!/usr/bin/python3
"""uncertainty_choice.py: which model uncertainty for mrpipe's CNN? (docs/uncertainty.md, issue 6)

Measures, on the denoiser's held-out validation data (ch2 slab z 20-40 mm, inia19), Rician noise at
3, 5 and 10 % of the maximum, three ways to give a CNN's output a per-pixel SD, each with the same
split-conformal scale fitted on the calibration slab (ch2 z -10..10 mm: k 61..81), then judged by
`mrpipe metrics --uncertainty`:
  variance   the shipped denoiser + its variance network (`mrpipe denoise --uncertainty model`):
             1 model pass + 1 small-network pass; already calibrated inside mrpipe
  ensemble   a deep ensemble (Lakshminarayanan et al. 2017) of K small models trained by mrpipe
             with different seeds (configs/train_ensemble_member.yaml): mean = the image, SD = the
             members' spread; K trainings, K passes
  tta        test-time augmentation: the shipped model on the 8 flips/transpositions of the
             input, SD = their spread; 8 passes
MC dropout is not measured: the engine has no dropout layer and it would need a retrained model
(and T >= 20 passes per image); see docs/uncertainty.md.

usage: /usr/bin/python3 scripts/uncertainty_choice.py --mrpipe build/mrpipe [--members 4]
           [--work DIR] [--out table.md]
Members already trained in WORK/member_K/model.h5 are reused.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import h5py
import nibabel as nib
import numpy as np

TEMPLATES = "/usr/share/mricron/templates"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
Z90, Z95 = 1.6448536269514722, 1.959963984540054


def load_stack(name):
    d = np.asarray(nib.load(os.path.join(TEMPLATES, name)).get_fdata(), dtype=np.float32)
    return np.ascontiguousarray(d.transpose(2, 1, 0))


def rician(x, sigma, seed):
    rng = np.random.default_rng(seed)
    return np.hypot(x + sigma * rng.standard_normal(x.shape),
                    sigma * rng.standard_normal(x.shape)).astype(np.float32)


def write_h5(path, arr, name="reconstruction"):
    with h5py.File(path, "w") as f:
        f.create_dataset(name, data=np.asarray(arr, dtype=np.float32))


def read_h5(path, name="reconstruction"):
    with h5py.File(path, "r") as f:
        return f[name][()]


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        sys.exit("failed: %s\n%s" % (" ".join(cmd), r.stderr[-3000:]))
    return r


def conformal_scale(r):
    """mrpipe's rule (pipeline/train_sigma.c): between the 90 % and the 95 % split-conformal
    solutions, the scale that minimises the larger coverage gap on the calibration pixels."""
    r = np.sort(r)
    n = len(r)
    c = []
    for lv, z in ((0.90, Z90), (0.95, Z95)):
        k = min(max(int(np.ceil((n + 1) * lv)), 1), n)
        c.append(r[k - 1] / z)
    best, gap = c[0], np.inf
    for g in range(41):
        cc = c[0] + (c[1] - c[0]) * g / 40
        m = max(abs(np.mean(r <= Z90 * cc) - 0.90), abs(np.mean(r <= Z95 * cc) - 0.95))
        if m < gap:
            best, gap = cc, m
    return best


def dihedral(x, k):
    """k in 0..7: transpose?, flip rows?, flip columns? on the last two axes."""
    if k & 4:
        x = np.swapaxes(x, -1, -2)
    if k & 2:
        x = x[..., ::-1, :]
    if k & 1:
        x = x[..., :, ::-1]
    return np.ascontiguousarray(x)


def undo(x, k):
    if k & 1:
        x = x[..., :, ::-1]
    if k & 2:
        x = x[..., ::-1, :]
    if k & 4:
        x = np.swapaxes(x, -1, -2)
    return np.ascontiguousarray(x)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mrpipe", default=os.path.join(ROOT, "build", "mrpipe"))
    ap.add_argument("--models", default=os.path.join(ROOT, "models"))
    ap.add_argument("--members", type=int, default=4)
    ap.add_argument("--work", default="/tmp/mrpipe-uq-choice")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    mrpipe = os.path.abspath(a.mrpipe)
    os.makedirs(a.work, exist_ok=True)
    shipped = os.path.join(a.models, "denoiser_blind.h5")

    # the ensemble's members, trained by mrpipe (reused when present)
    members, train_s = [], 0.0
    for k in range(1, a.members + 1):
        d = os.path.join(a.work, "member_%d" % k)
        m = os.path.join(d, "model.h5")
        if not os.path.exists(m):
            t0 = time.time()
            run([mrpipe, "train", "--config", os.path.join(ROOT, "configs",
                 "train_ensemble_member.yaml"), "--seed", str(k), "--output", d])
            train_s += time.time() - t0
            print("member %d trained in %.0f s" % (k, time.time() - t0), file=sys.stderr)
        members.append(m)

    def denoise(model, x, tag):
        i, o = os.path.join(a.work, tag + "_in.h5"), os.path.join(a.work, tag + "_out.h5")
        write_h5(i, x)
        run([mrpipe, "denoise", "--input", i, "--output", o, "--model", model,
             "--uncertainty", "none"])
        return read_h5(o)

    def ensemble(x, tag):
        ys = np.stack([denoise(m, x, "%s_m%d" % (tag, j)) for j, m in enumerate(members)])
        return ys.mean(0), ys.std(0, ddof=1)

    def tta(x, tag):
        ys = np.stack([undo(denoise(shipped, dihedral(x, k), "%s_t%d" % (tag, k)), k)
                       for k in range(8)])
        return ys[0], ys.std(0, ddof=1)  # the image: the plain pass (k = 0)

    levels = [0.03, 0.05, 0.10]
    ch2 = load_stack("ch2.nii.gz")
    ini = load_stack("inia19-t1-brain.nii.gz")
    s = ini.shape[0]
    k0, k1 = s // 5, s - s // 5
    sets = [("ch2 slab z 20-40 mm", ch2[91:112:2]),
            ("inia19 macaque", ini[[k0 + (2 * i + 1) * (k1 - k0) // 20 for i in range(10)]])]
    cal = ch2[61:82:2]

    # calibration of the ensemble and TTA spreads (the variance network carries its own)
    scale = {}
    for name, fn in (("ensemble", ensemble), ("tta", tta)):
        r = []
        for li, lev in enumerate(levels):
            x = rician(cal, lev * float(cal.max()), 500 + li)
            y, sd = fn(x, "cal_%s_%d" % (name, li))
            fg = cal > 0.05 * cal.max()
            r.append(np.abs(y - cal)[fg] / np.maximum(sd[fg], 1e-12))
        scale[name] = conformal_scale(np.concatenate(r))
    print("calibration scales: %s" % scale, file=sys.stderr)

    rows = []
    for sname, clean in sets:
        ref = os.path.join(a.work, "ref_%s.h5" % sname.split()[0])
        write_h5(ref, clean)
        for li, lev in enumerate(levels):
            x = rician(clean, lev * float(clean.max()), 1000 + li)  # as uncertainty_eval.py
            tag = "%s_%d" % (sname.split()[0], round(lev * 100))
            for name in ("variance", "ensemble", "tta"):
                t0 = time.time()
                est, sdp = os.path.join(a.work, tag + "_%s.h5" % name), \
                    os.path.join(a.work, tag + "_%s_sd.h5" % name)
                if name == "variance":
                    i = os.path.join(a.work, tag + "_noisy.h5")
                    write_h5(i, x)
                    run([mrpipe, "denoise", "--input", i, "--output", est, "--model", shipped,
                         "--uncertainty", "model", "--uncertainty-output", sdp])
                else:
                    y, sd = (ensemble if name == "ensemble" else tta)(x, tag + name)
                    write_h5(est, y)
                    write_h5(sdp, sd * scale[name])
                sec = time.time() - t0
                js = os.path.join(a.work, tag + "_%s.json" % name)
                run([mrpipe, "metrics", "--reference", ref, "--input", est, "--uncertainty", sdp,
                     "--json", js])
                d = json.load(open(js))
                u = d["uncertainty"]["figures"]
                rows.append((name, sname, lev, d["psnr"], u, sec))

    out = ["| SD from | data | noise | PSNR dB | cover 68 / 90 / 95 % | Spearman (oracle) | AUSE "
           "| s |", "|---|---|---|---|---|---|---|---|"]
    for name, sname, lev, psnr, u, sec in rows:
        out.append("| %s | %s | %d %% | %.2f | %.1f / %.1f / %.1f | %.3f (%.3f) | %.3f | %.1f |" % (
            name, sname, round(100 * lev), psnr, 100 * u["coverage_68"], 100 * u["coverage_90"],
            100 * u["coverage_95"], u["spearman"] or 0, u["spearman_oracle"] or 0, u["ause"] or 0,
            sec))
    out.append("")
    for name in ("variance", "ensemble", "tta"):
        rs = [r for r in rows if r[0] == name]
        out.append("%s: mean PSNR %.2f dB, mean |coverage90 - 90| %.1f points, mean |coverage95 - "
                   "95| %.1f, mean Spearman %.3f, mean AUSE %.3f" % (
                       name, np.mean([r[3] for r in rs]),
                       np.mean([abs(100 * r[4]["coverage_90"] - 90) for r in rs]),
                       np.mean([abs(100 * r[4]["coverage_95"] - 95) for r in rs]),
                       np.mean([r[4]["spearman"] or 0 for r in rs]),
                       np.mean([r[4]["ause"] or 0 for r in rs])))
    out.append("ensemble: %d members of configs/train_ensemble_member.yaml; calibration scales "
               "ensemble %.3f, tta %.3f%s" % (a.members, scale["ensemble"], scale["tta"],
                                              ", members trained in %.0f s" % train_s
                                              if train_s else ""))
    text = "\n".join(out) + "\n"
    print(text)
    if a.out:
        open(a.out, "w").write(text)


if __name__ == "__main__":
    main()
