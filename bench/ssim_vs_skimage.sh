#!/usr/bin/env bash
# ssim_vs_skimage.sh: fastMRI's SSIM of a 35-slice 320x320 volume, mrpipe against scikit-image 0.19
# (Debian python3-skimage) called the way fastMRI's evaluate.py calls it (a loop over slices with
# the volume max as data_range), in the same run, on the same arrays.
#
# Data (deterministic): slices 140..174 (constant k) of Debian's Colin27 0.5 mm volume
# (ch2better.nii.gz), each centre-cropped/zero-padded to 320 x 320 as fastMRI's reference images
# are; the second volume adds Gaussian noise (numpy RandomState(1), sigma 4) and takes the
# magnitude. Both are written as uncompressed NIfTI (float32).
#
# Timings (median of RUNS, after one warm-up):
#   skimage   the SSIM loop only, arrays already in memory: wall (time.perf_counter) and CPU time
#             (time.process_time)
#   mrpipe    (a) the metrics computation only (NMSE + PSNR + SSIM, timed inside `mrpipe -v metrics`),
#                 wall time with all threads, and CPU time with one thread (MRPIPE_THREADS=1)
#             (b) the whole command: process start, reading both files, metrics, printing
# The ratio the issue asks for is skimage / mrpipe (a) in wall time. On a busy machine wall times
# (threaded ones most) say little; the single-thread CPU-time ratio is robust to load.
#   usage: bench/ssim_vs_skimage.sh [RUNS]     (env: BENCH_DIR, default /tmp/mrpipe-bench)
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
runs=${1:-5}
dir=${BENCH_DIR:-/tmp/mrpipe-bench}
mrpipe="$src/${MRPIPE_BUILD_DIR:-build}/mrpipe"
py=/usr/bin/python3
[ -x "$mrpipe" ] || "$src/scripts/build.sh"
"$py" -c 'import skimage.metrics, nibabel' 2>/dev/null ||
  { echo "bench: $py has no skimage/nibabel (apt-get install python3-skimage python3-nibabel)" >&2; exit 1; }
mkdir -p "$dir"

"$py" - "$dir" <<'EOF'
import os, sys, numpy as np, nibabel as nib
d = sys.argv[1]
ref_p, in_p = os.path.join(d, "ssim_ref.nii"), os.path.join(d, "ssim_in.nii")
if not (os.path.exists(ref_p) and os.path.exists(in_p)):
    v = np.asanyarray(nib.load("/usr/share/mricron/templates/ch2better.nii.gz").dataobj)
    v = np.transpose(v, (2, 1, 0))[140:175].astype(np.float32)  # (S, H, W) = (k, j, i)
    S, H, W = v.shape
    out = np.zeros((S, 320, 320), np.float32)
    # centre crop H (offset (H - 320) // 2), centre zero-pad W
    y0 = (H - 320) // 2
    x0 = (320 - W) // 2
    out[:, :, x0:x0 + W] = v[:, y0:y0 + 320, :]
    noisy = np.abs(out.astype(np.float64) +
                   4.0 * np.random.RandomState(1).standard_normal(out.shape)).astype(np.float32)
    for p, a in ((ref_p, out), (in_p, noisy)):
        # NIfTI voxel axes (i, j, k) = (W, H, S)
        nib.save(nib.Nifti1Image(np.transpose(a, (2, 1, 0)), np.eye(4)), p)
EOF

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# skimage: fastMRI evaluate.py's ssim() loop, timed in-process; prints seconds per run and the SSIM
sk=$("$py" - "$dir" "$runs" <<'EOF'
import sys, time, numpy as np, nibabel as nib
from skimage.metrics import structural_similarity
d, runs = sys.argv[1], int(sys.argv[2])
load = lambda p: np.ascontiguousarray(np.transpose(np.asanyarray(nib.load(p).dataobj), (2, 1, 0)))
gt, pred = load(d + "/ssim_ref.nii"), load(d + "/ssim_in.nii")
def ssim(gt, pred):
    maxval = gt.max()
    s = np.array([0])
    for i in range(gt.shape[0]):
        s = s + structural_similarity(gt[i], pred[i], data_range=maxval)
    return (s / gt.shape[0])[0]
ssim(gt, pred)  # warm-up
ts, cs = [], []
for _ in range(runs):
    t, c = time.perf_counter(), time.process_time()
    v = ssim(gt, pred)
    ts.append(time.perf_counter() - t)
    cs.append(time.process_time() - c)
print(sorted(ts)[len(ts) // 2], sorted(cs)[len(cs) // 2], "%.9g" % v)
EOF
)
read -r sk_t sk_c sk_v <<<"$sk"

args=(metrics --reference "$dir/ssim_ref.nii" --input "$dir/ssim_in.nii")
"$mrpipe" -q "${args[@]}" >/dev/null # warm-up
c_t=(); w_t=(); c1=()
for i in $(seq "$runs"); do
  start=$(date +%s.%N)
  "$mrpipe" -v "${args[@]}" >"$dir/ssim_out.txt" 2>"$dir/ssim_log.txt"
  end=$(date +%s.%N)
  w_t+=("$(echo "$end - $start" | bc -l)")
  c_t+=("$(sed -n 's/.*computed in \([0-9.]*\) ms.*/\1/p' "$dir/ssim_log.txt")")
  MRPIPE_THREADS=1 "$mrpipe" -v "${args[@]}" >/dev/null 2>"$dir/ssim_log1.txt"
  c1+=("$(sed -n 's/.*(cpu \([0-9.]*\) ms.*/\1/p' "$dir/ssim_log1.txt")")
done
ct=$(printf '%s\n' "${c_t[@]}" | median)
wt=$(printf '%s\n' "${w_t[@]}" | median)
c1t=$(printf '%s\n' "${c1[@]}" | median)
mr_v=$(tail -1 "$dir/ssim_out.txt" | sed 's/.*SSIM=//')
threads=$(sed -n 's/.*, \([0-9]*\) thread(s)).*/\1/p' "$dir/ssim_log.txt")

printf 'SSIM of a 35 x 320 x 320 volume (fastMRI evaluate.py loop), median of %d runs, %d cores\n' \
  "$runs" "$(nproc)"
printf '  load average at the end: %s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
printf '  skimage %s structural_similarity loop: %8.1f ms wall, %8.1f ms CPU   SSIM %s\n' \
  "$("$py" -c 'import skimage; print(skimage.__version__)')" "$(echo "$sk_t * 1000" | bc -l)" \
  "$(echo "$sk_c * 1000" | bc -l)" "$sk_v"
printf '  mrpipe metrics, computation, %s threads: %8.1f ms wall                   SSIM %s\n' \
  "$threads" "$ct" "$mr_v"
printf '  mrpipe metrics, computation, 1 thread:  %19s %8.1f ms CPU\n' "" "$c1t"
printf '  mrpipe metrics, whole command:          %8.1f ms wall (start, read 2 x 14 MB, metrics)\n' \
  "$(echo "$wt * 1000" | bc -l)"
printf '  ratio skimage / mrpipe: %.1fx wall (computation), %.1fx CPU (one thread), %.1fx wall (whole command)\n' \
  "$(echo "$sk_t * 1000 / $ct" | bc -l)" "$(echo "$sk_c * 1000 / $c1t" | bc -l)" \
  "$(echo "$sk_t / $wt" | bc -l)"
