#!/usr/bin/env bash
# artefact_quality.sh: the artefact model's quality table (docs/models.md, "The artefact model").
#
# On held-out slices only (never trained on): ch2 axial k 99..102 (world z 28..31 mm, inside the
# validation slab) and the 4 middle axial slices of inia19 (macaque), each simulated as 8-coil
# k-space (mrpipe simulate, noise 0.01 of max, fastMRI knee matrix 320 x 368 for ch2, zero-padded to
# 256 x 256 for inia19 so that 8x keeps 10 centre lines), undersampled with fastMRI's equispaced
# masks (4x cf 0.08, 8x cf 0.04), reconstructed zero-filled and cs-l1, then cleaned by models/artefact.h5 (and, for contrast, by the
# blind Rician denoiser). PSNR / SSIM against the fully sampled RSS by `mrpipe metrics`.
#
# usage: scripts/artefact_quality.sh [MRPIPE] [WORKDIR]     (mrpipe only: no Python)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
M=${1:-$root/build/mrpipe}
W=${2:-$(mktemp -d /tmp/mrpipe-artq.XXXXXX)}
mkdir -p "$W"
T=/usr/share/mricron/templates
score() { "$M" metrics --reference "$1" --input "$2" 2>/dev/null | tail -1 |
          sed -E 's/.*PSNR=([0-9.]+) SSIM=([0-9.]+).*/\1 \2/' | awk '{printf "%.2f / %.3f", $1, $2}'; }
echo "| data | R | zero-filled | zf + artefact model | zf + blind denoiser | cs-l1 | cs-l1 + artefact model |"
echo "|---|---|---|---|---|---|---|"
for set in ch2 inia19; do
  if [ $set = ch2 ]; then
    "$M" simulate --input $T/ch2.nii.gz --output "$W/$set.h5" --slices 99:103 --matrix 320,368 \
      --seed 0 2>/dev/null
    label="ch2 k 99-102 (z 28-31 mm), 320 x 368"
  else
    "$M" simulate --input $T/inia19-t1-brain.nii.gz --output "$W/$set.h5" --slices 62:66 --matrix 256,256 \
      --seed 0 2>/dev/null
    label="inia19 k 62-65, 256 x 256"
  fi
  ref="$W/$set.h5:reconstruction_rss"
  for R in 4 8; do
    cf=0.08; [ $R = 8 ] && cf=0.04
    mask=(--mask equispaced --accel $R --center-fraction $cf)
    "$M" recon --input "$W/$set.h5" --output "$W/${set}_zf$R.h5" --method zf "${mask[@]}" 2>/dev/null
    "$M" recon --input "$W/$set.h5" --output "$W/${set}_cs$R.h5" --method cs-l1 "${mask[@]}" 2>/dev/null
    for src in zf cs; do
      "$M" denoise --input "$W/${set}_$src$R.h5" --output "$W/${set}_${src}${R}_art.h5" \
        --model "$root/models/artefact.h5" --uncertainty none 2>/dev/null
    done
    "$M" denoise --input "$W/${set}_zf$R.h5" --output "$W/${set}_zf${R}_den.h5" --uncertainty none 2>/dev/null
    echo "| $label | ${R}x | $(score "$ref" "$W/${set}_zf$R.h5") | $(score "$ref" "$W/${set}_zf${R}_art.h5") |" \
         "$(score "$ref" "$W/${set}_zf${R}_den.h5") | $(score "$ref" "$W/${set}_cs$R.h5") |" \
         "$(score "$ref" "$W/${set}_cs${R}_art.h5") |"
  done
done
echo
echo "cells: PSNR (dB) / SSIM (fastMRI definitions) against the fully sampled RSS; work files: $W"
