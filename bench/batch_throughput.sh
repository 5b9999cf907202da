#!/usr/bin/env bash
# batch_throughput.sh: mrpipe batch throughput on many small scans: scans per second at --jobs 1
# and --jobs 2 (1 thread per worker), the scaling ratio, and the per-scan overhead beyond the
# stages' own work.
#   bench/batch_throughput.sh [SCANS] [REPEATS]   (defaults 40 and 3; needs a build in ./build or
#                                                  $MRPIPE_BUILD_DIR, relative to the source tree,
#                                                  or the binary $MRPIPE)
# Each scan: 8-coil fastMRI-layout k-space, 4 slices of 2 x 160 x 128 (10.8 MB; simulated once from
# Debian's Colin27 volume and copied), recon zf at 4x and 8x, fastMRI metrics, .h5 output. Each
# configuration runs REPEATS times into a fresh OUT; the run with the median wall time is reported.
#
# Timings, all recorded by the batch runner except the batch wall time (measured here):
#   stages   mean over scans of the stages' own times (summary.json: scans[].stage_seconds_total,
#            the sum of the marker's per-stage seconds)
#   worker   mean over scans of a scan's wall time in its worker (OUT/mrpipe.log "done in"): stages
#            + skip check + work directory + content hash wait + metrics.json + marker + rename
#   idle     mean over scans of the worker's wait for the scan after its previous one (or after
#            its start) (OUT/mrpipe.log "start (...), idle"): the hand-off through the pool
#   fixed    the cost of a run, not of a scan: wall time of the same batch over one scan (same
#            --jobs, per-scan layout) minus that scan's worker time: process start, config checks,
#            log, worker start and exit, summary
# Overheads (fractions of the wall time per scan):
#   scan overhead      (worker - stages) / worker: the runner's work around the stages of a scan
#   per-scan overhead  (W - stages) / W with W = worker + idle, the wall time a scan takes of a
#                      worker: everything a scan costs beyond its stages, without the fixed cost
#                      of the run (the goal: < 5 %)
#   batch overhead     the same with W = batch wall x jobs / scans: also the fixed cost, spread over
#                      SCANS, and the workers idling at the end while the last scans finish
# The load average is printed before and after; a run is called quiet only when the 1-minute load
# is <= 0.5 when the timed runs start (the machine then has its cores to itself).
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
mrpipe=${MRPIPE:-$src/${MRPIPE_BUILD_DIR:-build}/mrpipe}
n=${1:-40}
reps=${2:-3}
[ -x "$mrpipe" ] || { echo "batch_throughput: $mrpipe not found (build first)" >&2; exit 1; }
load() { cut -d' ' -f1-3 /proc/loadavg; }
load_script=$(load)
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
sed -e 's|glob: in/\*.h5|file: in/s0.h5|' -e 's|dir: out}|dir: out1, layout: per-scan}|' \
  "$work/b.yaml" > "$work/b1.yaml"
cd "$work"
sync # the inputs' 10.8 MB x SCANS written back now, not during the timed runs
"$mrpipe" -q batch b.yaml --jobs 1 --threads 1 --no-progress 2>/dev/null # warm-up (page cache)
mv out warm
sync
load_start=$(load)
printf "mrpipe batch, %d scans, %s cores, %s repeats (median), %s\n" "$n" "$(nproc)" "$reps" \
  "$("$mrpipe" --version | head -n 1)"
printf "load average (1, 5, 15 min): %s at script start, %s when the timed runs start\n" \
  "$load_script" "$load_start"
: > runs.txt
for jobs in 1 2; do
  for r in $(seq "$reps"); do
    # Each run writes into a fresh OUT and earlier runs' outputs stay until the end: deleting
    # thousands of files just before a run makes ext4 skip their recently freed inodes when it
    # allocates new ones (recently_deleted()), a cost that grows with the files deleted and would
    # be charged to the runner's mkdir and to the write stage.
    [ -e out ] && mv out "old-$jobs-$r"
    [ -e out1 ] && mv out1 "old1-$jobs-$r"
    t0=$(date +%s.%N)
    "$mrpipe" -q batch b.yaml --jobs "$jobs" --threads 1 --no-progress 2>/dev/null
    t1=$(date +%s.%N)
    # the fixed cost of a run: the same batch over one scan
    f0=$(date +%s.%N)
    "$mrpipe" -q batch b1.yaml --jobs "$jobs" --threads 1 --no-progress 2>/dev/null
    f1=$(date +%s.%N)
    /usr/bin/python3 - "$jobs" "$t0" "$t1" "$f0" "$f1" >> runs.txt <<'PY'
import json, re, sys
jobs = int(sys.argv[1])
wall = float(sys.argv[3]) - float(sys.argv[2])
one = float(sys.argv[5]) - float(sys.argv[4])
one_worker = [float(m) for m in re.findall(r" done in ([0-9.]+) s", open("out1/mrpipe.log").read())]
assert len(one_worker) == 1, one_worker
fixed = one - one_worker[0]
s = json.load(open("out/summary.json"))
scans = [x for x in s["scans"] if x["status"] == "ok"]
stages = sum(x["stage_seconds_total"] for x in scans) / len(scans)
log = open("out/mrpipe.log").read()
done = [float(m) for m in re.findall(r" done in ([0-9.]+) s", log)]
idle = [float(m) for m in re.findall(r": start \(.*\), idle ([0-9.]+) s$", log, re.M)]
assert len(done) == len(idle) == len(scans) == s["counts"]["total"], (len(done), len(idle), len(scans))
print(jobs, wall, fixed, stages, sum(done) / len(done), sum(idle) / len(idle), len(scans))
PY
  done
done
load_end=$(load)
/usr/bin/python3 - "$load_start" "$load_end" runs.txt <<'PY'
import sys
load_start = float(sys.argv[1].split()[0])
runs = {}
for line in open(sys.argv[3]):
    j, wall, fixed, stages, worker, idle, n = line.split()
    runs.setdefault(int(j), []).append((float(wall), float(fixed), float(stages), float(worker),
                                        float(idle), int(n)))
print("%-5s %7s %8s %8s %10s %10s %8s %9s %9s %10s" % ("jobs", "wall s", "scans/s", "fixed s",
      "stages ms", "worker ms", "idle ms", "scan ovh", "per-scan", "batch ovh"))
rate = {}
per_scan = {}
for j in sorted(runs):
    r = sorted(runs[j])[len(runs[j]) // 2]  # the median wall time
    wall, fixed, stages, worker, idle, n = r
    fixed = sorted(x[1] for x in runs[j])[len(runs[j]) // 2]
    w_scan = worker + idle
    w_batch = wall * j / n
    rate[j] = n / wall
    per_scan[j] = (w_scan - stages) / w_scan
    print("%-5d %7.3f %8.2f %8.3f %10.2f %10.2f %8.3f %8.2f%% %8.2f%% %9.2f%%" % (
        j, wall, n / wall, fixed, 1e3 * stages, 1e3 * worker, 1e3 * idle,
        100 * (worker - stages) / worker, 100 * per_scan[j], 100 * (w_batch - stages) / w_batch))
print("scaling: scans/s at jobs 2 / jobs 1 = %.2f" % (rate[2] / rate[1]))
print("per-scan overhead (goal < 5 %%): jobs 1 %.2f %%, jobs 2 %.2f %%" % (100 * per_scan[1], 100 * per_scan[2]))
print("load average (1, 5, 15 min) at the end: %s" % sys.argv[2])
if load_start <= 0.5:
    print("quiet run: 1-minute load %.2f <= 0.5 at the start" % load_start)
else:
    print("NOT a quiet run: 1-minute load %.2f > 0.5 at the start; other work shared the cores, "
          "so jobs 2 had no idle core and the figures are pessimistic; re-run on an idle machine"
          % load_start)
PY
