#!/usr/bin/env bash
# batch_throughput.sh: mrpipe batch throughput on many small scans: scans per second at --jobs 1
# and --jobs 2 (1 thread per worker), and the per-scan overhead beyond the stages' own work.
#   bench/batch_throughput.sh [SCANS]     (default 40; needs a build in ./build or $MRPIPE_BUILD_DIR)
# Each scan: 8-coil fastMRI-layout k-space, 4 slices of 2 x 160 x 128 (simulated once from Debian's
# Colin27 volume), recon zf at 4x and 8x, fastMRI metrics, .h5 output. Overhead per scan =
# (scan wall time in the worker - its stages' time) / scan wall time, from the markers; batch
# overhead = (batch wall x jobs - sum of stage times) / (batch wall x jobs), which also counts
# process start, config checks, skip checks, dispatch and the summary.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
mrpipe="$src/${MRPIPE_BUILD_DIR:-build}/mrpipe"
n=${1:-40}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export MRPIPE_FFTW_PLANNER=${MRPIPE_FFTW_PLANNER:-estimate}
mkdir -p "$work/in"
"$mrpipe" -q simulate --input /usr/share/mricron/templates/ch2.nii.gz --output "$work/in/s0.h5" \
  --coils 8 --slices 84:88 --matrix 160,128 --seed 0
for i in $(seq 1 $((n - 1))); do cp "$work/in/s0.h5" "$work/in/s$i.h5"; done
cat > "$work/b.yaml" <<YAML
inputs: {glob: in/*.h5}
output: {dir: out}
stages:
  zf_4x: {stage: recon, mask: equispaced, accel: 4}
  zf_8x: {stage: recon, mask: equispaced, accel: 8, center_fraction: 0.04}
  validate: {}
  write: {formats: [h5]}
YAML
cd "$work"
printf "%d scans, %s\n" "$n" "$(nproc) cores"
printf "%-8s %10s %12s %16s %16s\n" jobs "wall (s)" "scans/s" "scan overhead" "batch overhead"
for jobs in 1 2; do
  rm -rf out
  t0=$(date +%s.%N)
  "$mrpipe" -q batch b.yaml --jobs "$jobs" --threads 1 --no-progress 2>/dev/null
  t1=$(date +%s.%N)
  /usr/bin/python3 - "$t0" "$t1" "$jobs" "$n" <<'PY'
import glob, sys, re
t0, t1, jobs, n = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
tot = st = 0.0
for m in glob.glob("out/*/mrpipe-done.yaml"):
    s = open(m).read()
    tot += float(re.search(r"^  total: (\S+)", s, re.M).group(1))
    st += float(re.search(r"^  stages: (\S+)", s, re.M).group(1))
wall = t1 - t0
print("%-8d %10.2f %12.2f %15.1f%% %15.1f%%" % (jobs, wall, n / wall, 100 * (tot - st) / tot,
      100 * (wall * jobs - st) / (wall * jobs)))
PY
done
