#!/usr/bin/env bash
# demo.sh: the README's first command. Installs what is missing, builds in Release, and runs the
# main job on a default input that Debian ships (the Colin27 T1 head, mricron-data): simulate
# 8-coil k-space, undersample it 4x with a fastMRI equispaced mask, reconstruct, and write the
# results with PNG previews into ./mrpipe-demo/.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
"$src/scripts/install-deps.sh"
"$src/scripts/build.sh"
mrpipe="$src/${MRPIPE_BUILD_DIR:-build}/mrpipe"
out=${MRPIPE_DEMO_DIR:-$PWD/mrpipe-demo}
mkdir -p "$out"
"$mrpipe" --version
"$mrpipe" simulate --input /usr/share/mricron/templates/ch2.nii.gz --output "$out/kspace.h5" \
  --coils 8 --noise 0.01 --slices 80:96 --seed 0
"$mrpipe" info "$out/kspace.h5"
"$mrpipe" mask --type equispaced --accel 4 --center-fraction 0.08 --shape 434,181 --seed 0 \
  --output "$out/mask.png"
"$mrpipe" recon --input "$out/kspace.h5" --output "$out/full.h5"
"$mrpipe" recon --input "$out/kspace.h5" --output "$out/zf_4x.h5" \
  --mask equispaced --accel 4 --center-fraction 0.08 --seed 0
"$mrpipe" recon --input "$out/kspace.h5" --output "$out/zf_4x.png" \
  --mask equispaced --accel 4 --center-fraction 0.08 --seed 0
"$mrpipe" recon --input "$out/kspace.h5" --output "$out/full.png"
echo "mrpipe demo: results in $out (full.png: fully sampled RSS, zf_4x.png: zero-filled 4x)"
