#!/usr/bin/env bash
# zf_vs_bart.sh: zero-filled RSS reconstruction of a 35-slice, 15-coil, 640x368 multi-coil file
# (fastMRI knee size, simulated by mrpipe from Debian's Colin27 0.5 mm volume), mrpipe against BART's
# `fft -i -u 3` + `rss 8` on the same k-space as .cfl, in the same run. Prints wall time and peak
# RSS (median of N runs each) and the ratios.
#   usage: bench/zf_vs_bart.sh [RUNS]     (env: BENCH_DIR, default /tmp/mrpipe-bench)
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
runs=${1:-3}
dir=${BENCH_DIR:-/tmp/mrpipe-bench}
mrpipe="$src/${MRPIPE_BUILD_DIR:-build}/mrpipe"
[ -x "$mrpipe" ] || "$src/scripts/build.sh"
command -v bart >/dev/null || { echo "bench: BART is not installed (apt-get install bart)" >&2; exit 1; }
mkdir -p "$dir"
vol=/usr/share/mricron/templates/ch2better.nii.gz
sim=(--input "$vol" --axis 2 --matrix 320,368 --slices 140:175 --coils 15 --noise 0.01 --seed 7)
[ -f "$dir/knee.h5" ] || "$mrpipe" -q simulate "${sim[@]}" --output "$dir/knee.h5"
[ -f "$dir/knee.cfl" ] || "$mrpipe" -q simulate "${sim[@]}" --output "$dir/knee.cfl"
"$mrpipe" info "$dir/knee.h5" | head -3

# measure CMD...: prints "wall_seconds peak_kb"
measure() {
  /usr/bin/time -o "$dir/time.txt" -f "%e %M" "$@" >/dev/null 2>&1
  tail -1 "$dir/time.txt"
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# one untimed run each to warm the page cache and FFTW's wisdom
"$mrpipe" -q recon --input "$dir/knee.h5" --output "$dir/zf.h5"
bart fft -i -u 3 "$dir/knee" "$dir/coil" && bart rss 8 "$dir/coil" "$dir/bart_rss"

m_t=(); m_m=(); b_t=(); b_m=()
for i in $(seq "$runs"); do
  read -r t m < <(measure "$mrpipe" -q recon --input "$dir/knee.h5" --output "$dir/zf.h5")
  m_t+=("$t"); m_m+=("$m")
  read -r t1 mm1 < <(measure bart fft -i -u 3 "$dir/knee" "$dir/coil")
  read -r t2 mm2 < <(measure bart rss 8 "$dir/coil" "$dir/bart_rss")
  b_t+=("$(echo "$t1 + $t2" | bc -l)"); b_m+=("$(( mm1 > mm2 ? mm1 : mm2 ))")
done
mt=$(printf '%s\n' "${m_t[@]}" | median); mm=$(printf '%s\n' "${m_m[@]}" | median)
bt=$(printf '%s\n' "${b_t[@]}" | median); bm=$(printf '%s\n' "${b_m[@]}" | median)
printf 'zero-filled RSS, 35 x 15 x 640 x 368, median of %d runs, %d cores\n' "$runs" "$(nproc)"
printf '  mrpipe recon --method zf (.h5 in, .h5 out):  %6.2f s  peak %5d MB\n' "$mt" "$((mm / 1024))"
printf '  bart fft -i -u 3 + bart rss 8 (.cfl):        %6.2f s  peak %5d MB\n' "$bt" "$((bm / 1024))"
printf '  time ratio mrpipe/BART = %.2f   memory ratio mrpipe/BART = %.2f\n' \
  "$(echo "$mt / $bt" | bc -l)" "$(echo "$mm / $bm" | bc -l)"
# same numbers: mrpipe on the .cfl (no header, so no crop) against BART's image
"$mrpipe" -q recon --input "$dir/knee.cfl" --output "$dir/zf_cfl.cfl"
printf '  agreement: bart nrmse(BART, mrpipe) = %s\n' "$(bart nrmse "$dir/bart_rss" "$dir/zf_cfl")"
