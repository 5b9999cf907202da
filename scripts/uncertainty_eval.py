#!/usr/bin/python3
"""uncertainty_eval.py: how honest are mrpipe's uncertainty maps? (docs/uncertainty.md, issue 6)

On held-out validation data with a known reference (never trained on, never calibrated on):
  - ch2 (Colin27) slab z = 20..40 mm (k = 91..111, every other slice) and
  - inia19 (macaque T1 brain), 10 axial slices over the middle 60 % of the volume,
each SD map is judged by `mrpipe metrics --uncertainty` over the foreground (reference > 5 % of
its maximum): coverage of the nominal 68/90/95 % intervals (+-1, 1.645, 1.96 SD), Spearman of the
SD with the local 5x5 RMS error beside the ceiling an oracle SD of the same pattern reaches, UCE
(relative to the MSE), AUSE, RMSE / RMS(SD).

Cases:
  denoiser   Rician noise at 3, 5, 10 % of the region's maximum (as scripts/denoise_quality.py);
             `mrpipe denoise --uncertainty model | replica | both` with the shipped blind model
  cs-l1 4x   `mrpipe simulate` (8 coils, noise 0.005 of max), `mrpipe recon --method cs-l1 --mask
             equispaced|random --accel 4 --center-fraction 0.08 --uncertainty model` (and `both`
             with --recon-both) against the fully sampled RSS
  zf, sense, cs-tv  the same k-space, `mrpipe recon --method M ... --uncertainty model` (their own
             variance networks); ask for them in --cases
  artefact   the same k-space, zero-filled 4x, then `mrpipe denoise --model models/artefact.h5
             --uncertainty model --accel 4`; also the artefact model on the cs-l1 4x images
Goal (issue 6): coverage within 3 points of nominal at 90 and 95 %, Spearman >= 0.5.

usage: /usr/bin/python3 scripts/uncertainty_eval.py --mrpipe build/mrpipe [--out table.md]
           [--work DIR] [--quick] [--report]
--report also writes an HTML report per case (image, |error|, SD, sparsification and reliability
plots) into WORK/reports/.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import h5py
import nibabel as nib
import numpy as np

TEMPLATES = "/usr/share/mricron/templates"
RECON_METHODS = ("zf", "sense", "cs-l1", "cs-tv")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_stack(name):
    """(S, H, W) float32 as mrpipe reads NIfTI: slices of constant k, rows j, columns i."""
    d = np.asarray(nib.load(os.path.join(TEMPLATES, name)).get_fdata(), dtype=np.float32)
    return np.ascontiguousarray(d.transpose(2, 1, 0))


def validation_sets(quick):
    ch2 = load_stack("ch2.nii.gz")
    ini = load_stack("inia19-t1-brain.nii.gz")
    s = ini.shape[0]
    k0, k1 = s // 5, s - s // 5
    n = 4 if quick else 10
    ks = [k0 + (2 * i + 1) * (k1 - k0) // (2 * n) for i in range(n)]
    step = 5 if quick else 2
    # k-space cases: contiguous slices (mrpipe simulate takes a range): ch2 k 95..106 (z 24-35 mm),
    # inia19's 12 middle slices
    nk = 4 if quick else 12
    kc = [95 + i for i in range(nk)]
    ki = [s // 2 - nk // 2 + i for i in range(nk)]
    return [("ch2 slab z 20-40 mm", "ch2.nii.gz", list(range(91, 112, step)), kc, ch2),
            ("inia19 macaque", "inia19-t1-brain.nii.gz", ks, ki, ini)]


def rician(x, sigma, seed):
    rng = np.random.default_rng(seed)
    re = x + sigma * rng.standard_normal(x.shape)
    im = sigma * rng.standard_normal(x.shape)
    return np.sqrt(re * re + im * im).astype(np.float32)


def write_h5(path, arr, name):
    with h5py.File(path, "w") as f:
        f.create_dataset(name, data=arr.astype(np.float32))


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        sys.exit("failed (%d): %s\n%s" % (r.returncode, " ".join(cmd), r.stderr[-3000:]))
    return r


def uq_figures(mrpipe, ref, est, sd, work, tag):
    js = os.path.join(work, tag + ".json")
    run([mrpipe, "metrics", "--reference", ref, "--input", est, "--uncertainty", sd,
         "--json", js])
    with open(js) as f:
        d = json.load(f)
    u = d["uncertainty"]["figures"]
    u["psnr"] = d["psnr"]
    return u


def row(case, data, method, u, seconds):
    return {"case": case, "data": data, "method": method, "psnr": u["psnr"],
            "c68": 100 * u["coverage_68"], "c90": 100 * u["coverage_90"],
            "c95": 100 * u["coverage_95"], "rho": u["spearman"], "rho_oracle": u["spearman_oracle"],
            "uce_rel": u["uce_relative"], "ause": u["ause"], "ratio": u["rmse_over_rms_sd"],
            "seconds": seconds}


def fmt(v, f="%.3f"):
    return "n/a" if v is None else f % v


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mrpipe", default=os.path.join(ROOT, "build", "mrpipe"))
    ap.add_argument("--models", default=os.path.join(ROOT, "models"))
    ap.add_argument("--out", default=None)
    ap.add_argument("--work", default=None)
    ap.add_argument("--quick", action="store_true", help="fewer slices and levels (smoke run)")
    ap.add_argument("--report", action="store_true", help="an HTML report per case")
    ap.add_argument("--replicas", type=int, default=8)
    ap.add_argument("--kspace-noise", type=float, default=0.005,
                    help="mrpipe simulate --noise for the k-space cases (fraction of the volume "
                         "max per coil and real/imaginary part); at 0.01 the reference RSS noise "
                         "floor of inia19 lies above the 5 %% foreground threshold")
    ap.add_argument("--cases", default="denoiser,cs-l1,artefact",
                    help="denoiser, artefact and any of the recon methods zf, sense, cs-l1, cs-tv "
                         "(their own variance networks, models/<method>_sigma.h5)")
    ap.add_argument("--masks", default="equispaced,random",
                    help="fastMRI masks of the k-space cases (4x, centre fraction 0.08)")
    ap.add_argument("--mask-seeds", default="0",
                    help="mask draws of the k-space cases (recon --seed): with several, each row "
                         "pools its images over the draws (one fastMRI mask per volume makes a "
                         "single draw one sample of the coverage) and reports the range of the "
                         "per-draw coverage at 90 %%")
    ap.add_argument("--recon-both", action="store_true",
                    help="also judge recon --uncertainty both (cost: N replicas of cs-l1)")
    ap.add_argument("--artefact-sigma", default=None,
                    help="variance network for the artefact model (default: models/artefact_sigma.h5)")
    ap.add_argument("--artefact-sigma-bootstrap", default=None,
                    help="variance network for the artefact model's --uncertainty bootstrap "
                         "(default: models/artefact_sigma_bootstrap.h5)")
    ap.add_argument("--csl1-sigma", default=None,
                    help="variance network for cs-l1 (default: models/cs-l1_sigma.h5)")
    ap.add_argument("--kinds", default="model,replica,both",
                    help="maps to judge: model, replica, both (denoiser; replica and both cost N "
                         "denoisings), bootstrap (cs-l1, sense, cs-tv: one more reconstruction; "
                         "artefact: denoise --uncertainty bootstrap, one more reconstruction of "
                         "the input's method and model pass)")
    a = ap.parse_args()
    mrpipe = os.path.abspath(a.mrpipe)
    work = a.work or tempfile.mkdtemp(prefix="mrpipe-uq-")
    os.makedirs(work, exist_ok=True)
    cases = a.cases.split(",")
    rows = []
    levels = [0.05] if a.quick else [0.03, 0.05, 0.10]
    blind = os.path.join(a.models, "denoiser_blind.h5")
    artefact = os.path.join(a.models, "artefact.h5")

    def report(tag, ref, est, sd, label):
        if not a.report:
            return
        d = os.path.join(work, "reports", tag)
        run([mrpipe, "report", "--reference", ref, "--input", est, "--label", label,
             "--uncertainty", sd, "--output", d])

    seeds = a.mask_seeds.split(",")
    pending = {}  # (case, data, kind) -> [(ref, est, sd, seconds)] over the mask draws

    def judge(case, data, kind, ref, est, sd, sec):
        if len(seeds) == 1:
            u = uq_figures(mrpipe, ref, est, sd, work, os.path.basename(est[:-3]))
            rows.append(row(case, data, kind, u, sec))
        else:
            pending.setdefault((case, data, kind), []).append((ref, est, sd, sec))

    def pool():
        """One row per (case, data, kind): mrpipe metrics on the draws' images stacked."""
        for (case, data, kind), runs in pending.items():
            tag = "pool_" + "".join(c if c.isalnum() else "_" for c in "%s_%s_%s" % (case, data, kind))
            stk = {}
            per = []
            for ref, est, sd, _ in runs:
                fn, ds = ref.rsplit(":", 1)
                with h5py.File(fn) as f:
                    stk.setdefault("ref", []).append(f[ds][()])
                with h5py.File(est) as f:
                    stk.setdefault("est", []).append(f["reconstruction"][()])
                with h5py.File(sd) as f:
                    stk.setdefault("sd", []).append(f["uncertainty"][()])
                per.append(100 * uq_figures(mrpipe, ref, est, sd, work,
                                            os.path.basename(est[:-3]))["coverage_90"])
            paths = {}
            for key, dname in (("ref", "reconstruction"), ("est", "reconstruction"),
                               ("sd", "uncertainty")):
                paths[key] = os.path.join(work, "%s_%s.h5" % (tag, key))
                write_h5(paths[key], np.concatenate(stk[key]), dname)
            u = uq_figures(mrpipe, paths["ref"], paths["est"], paths["sd"], work, tag)
            r = row(case, data, kind, u, sum(x[3] for x in runs) / len(runs))
            r["c90_draws"] = per
            rows.append(r)

    for name, fname, ks, kks, stack in validation_sets(a.quick):
        clean = stack[ks]
        short = fname.split(".")[0].split("-")[0]
        if "denoiser" in cases:
            ref = os.path.join(work, "%s_clean.h5" % short)
            write_h5(ref, clean, "reconstruction")
            for li, lev in enumerate(levels):
                noisy = rician(clean, lev * float(clean.max()), 1000 + li)
                inp = os.path.join(work, "%s_noisy%d.h5" % (short, round(lev * 100)))
                write_h5(inp, noisy, "reconstruction")
                for kind in [k for k in a.kinds.split(",") if k != "bootstrap"]:
                    tag = "%s_den%d_%s" % (short, round(lev * 100), kind)
                    out = os.path.join(work, tag + ".h5")
                    sdp = os.path.join(work, tag + "_sd.h5")
                    t0 = time.time()
                    run([mrpipe, "denoise", "--input", inp, "--output", out, "--model", blind,
                         "--uncertainty", kind, "--replicas", str(a.replicas)])
                    sec = time.time() - t0
                    u = uq_figures(mrpipe, ref, out, sdp, work, tag)
                    rows.append(row("denoiser, Rician %d %%" % round(lev * 100), name, kind, u, sec))
                    if kind == "model" and lev == 0.05:
                        report(tag, ref, out, sdp, "denoiser 5 % (model SD)")
        recon_cases = [c for c in cases if c in RECON_METHODS]
        if recon_cases or "artefact" in cases:
            ksp = os.path.join(work, "%s_k.h5" % short)
            run([mrpipe, "simulate", "--input", os.path.join(TEMPLATES, fname), "--output", ksp,
                 "--slices", "%d:%d" % (kks[0], kks[-1] + 1), "--coils", "8", "--noise", str(a.kspace_noise),
                 "--seed", "7"])
            ref = ksp + ":reconstruction_rss"
            for mk, seed in [(m, sd_) for m in a.masks.split(",") for sd_ in seeds]:
                mask = ["--mask", mk, "--accel", "4", "--center-fraction", "0.08", "--seed", seed]
                mt = "random" if mk == "random" else "equisp."
                if seed != "0":
                    mk = "%s_s%s" % (mk, seed)  # file names; seed 0 keeps the old ones
                cs = os.path.join(work, "%s_csl1_4x_%s.h5" % (short, mk))
                # the other reconstruction methods' own variance networks (models/<method>_sigma.h5)
                for meth in [c for c in recon_cases if c != "cs-l1"]:
                    for kind in [k for k in ("model", "bootstrap") if k in a.kinds.split(",") and
                                 (k == "model" or meth != "zf")]:
                        out = os.path.join(work, "%s_%s_4x_%s%s.h5" % (
                            short, meth, mk, "" if kind == "model" else "_" + kind))
                        sdp = out[:-3] + "_sd.h5"
                        t0 = time.time()
                        run([mrpipe, "recon", "--input", ksp, "--output", out, "--method", meth] +
                            mask + ["--uncertainty", kind])
                        sec = time.time() - t0
                        judge("%s 4x %s" % (meth, mt), name, kind, ref, out, sdp, sec)
                if "cs-l1" not in cases and "artefact" not in cases:
                    continue
                kinds = ["model", "both"] if a.recon_both else ["model"]
                if "bootstrap" in a.kinds.split(",") and "cs-l1" in cases:
                    kinds.append("bootstrap")
                for kind in kinds:
                    out = cs if kind == "model" else cs[:-3] + "_%s.h5" % kind
                    sdp = out[:-3] + "_sd.h5"
                    t0 = time.time()
                    run([mrpipe, "recon", "--input", ksp, "--output", out, "--method", "cs-l1"] +
                        mask + ["--uncertainty", kind, "--replicas", str(a.replicas)] +
                        (["--uncertainty-model", a.csl1_sigma] if a.csl1_sigma else []))
                    sec = time.time() - t0
                    if "cs-l1" in cases:
                        judge("cs-l1 4x %s" % mt, name, kind, ref, out, sdp, sec)
                        if kind == "model":
                            report("%s_csl1_%s" % (short, mk), ref, out, sdp,
                                   "cs-l1 4x %s (model SD)" % mk)
                if "artefact" in cases:
                    zf = os.path.join(work, "%s_zf_4x_%s.h5" % (short, mk))
                    # with its own SD map: the artefact network combines with it (input-SD weights)
                    run([mrpipe, "recon", "--input", ksp, "--output", zf, "--method", "zf"] + mask +
                        ["--uncertainty", "model"])
                    art_kinds = ["model"] + (["bootstrap"] if "bootstrap" in a.kinds.split(",")
                                             else [])
                    for (src, lab), kind in [(x, k) for x in [(zf, "zf"), (cs, "cs-l1")]
                                             for k in art_kinds]:
                        tag = "%s_art_%s_%s%s" % (short, lab, mk, "" if kind == "model" else "_bs")
                        out = os.path.join(work, tag + ".h5")
                        sdp = os.path.join(work, tag + "_sd.h5")
                        net = a.artefact_sigma if kind == "model" else a.artefact_sigma_bootstrap
                        t0 = time.time()
                        run([mrpipe, "denoise", "--input", src, "--output", out, "--model",
                             artefact, "--uncertainty", kind, "--accel", "4"] +
                            (["--uncertainty-model", net] if net else []))
                        sec = time.time() - t0
                        judge("artefact model on %s 4x %s" % (lab, mt), name, kind, ref, out,
                              sdp, sec)
                        if lab == "zf" and kind == "model":
                            report(tag, ref, out, sdp, "artefact model on zf 4x %s (model SD)" % mk)

    pool()
    draws = len(seeds) > 1
    lines = ["| case | data | SD | PSNR dB | cover 68 / 90 / 95 % | Spearman (oracle) | UCE/MSE "
             "| AUSE | RMSE/RMS(SD) | s |" + (" 90 % per mask draw |" if draws else ""),
             "|---|---|---|---|---|---|---|---|---|---|" + ("---|" if draws else "")]
    for r in rows:
        lines.append("| %s | %s | %s | %.2f | %.1f / %.1f / %.1f | %s (%s) | %s | %s | %s | %.1f |" % (
            r["case"], r["data"], r["method"], r["psnr"], r["c68"], r["c90"], r["c95"],
            fmt(r["rho"]), fmt(r["rho_oracle"]), fmt(r["uce_rel"]), fmt(r["ause"]),
            fmt(r["ratio"], "%.2f"), r["seconds"]) +
            (" %s |" % " ".join("%.1f" % c for c in r["c90_draws"]) if "c90_draws" in r else
             (" |" if draws else "")))
    if draws:
        lines.append("")
        lines.append("k-space rows pool the images of mask draws (recon --seed) %s." %
                     ", ".join(seeds))
    lines.append("")
    for kind in ("model", "bootstrap"):
        ok = [abs(r["c90"] - 90) <= 3 and abs(r["c95"] - 95) <= 3 and (r["rho"] or 0) >= 0.5
              for r in rows if r["method"] == kind]
        if ok:
            lines.append("goal met (%s SD: coverage within 3 points at 90 and 95 %%, Spearman >= "
                         "0.5): %d of %d rows" % (kind, sum(ok), len(ok)))
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)
    with open(os.path.join(work, "uq_rows.json"), "w") as f:
        json.dump(rows, f, indent=1)
    print("work files: %s" % work, file=sys.stderr)


if __name__ == "__main__":
    main()
