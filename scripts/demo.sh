#!/usr/bin/env bash
# demo.sh: the README's first command. Installs what is missing, builds in Release, and runs the
# main job: `mrpipe run` with the shipped demo config (configs/demo.yaml) on a default input that
# Debian ships (the Colin27 T1 head, mricron-data): simulate 8-coil k-space, reconstruct it fully
# sampled and 4x undersampled (fastMRI equispaced mask; zero-filled, SENSE, cs-l1), score each
# against the reference, and
# write the results, PNG previews and report.html into ./mrpipe-demo/.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
"$src/scripts/install-deps.sh"
"$src/scripts/build.sh"
mrpipe="$src/${MRPIPE_BUILD_DIR:-build}/mrpipe"
out=${MRPIPE_DEMO_DIR:-$PWD/mrpipe-demo}
"$mrpipe" --version
"$mrpipe" run --set output.dir="$out"
echo "mrpipe demo: results in $out (report.html; full.png: fully sampled RSS; zf_4x.png, sense_4x.png, csl1_4x.png: 4x undersampled)"
