#!/usr/bin/env bash
# cs_vs_bart.sh: L1-wavelet compressed sensing on BART's analytic phantom (256 x 256, 8 coils,
# R ~ 4), the whole `mrpipe recon --method cs-l1` process (ESPIRiT maps included) against
# `bart ecalib -m1` + `bart pics -S -l1 -r0.01 -i 30` on the same k-space, in the same run, for a
# 1-D equispaced + 24 centre lines mask and a 2-D Poisson-disc mask. Prints wall and CPU time
# (median of RUNS runs each after one warm-up), the ratios, and both images' magnitude PSNR against
# the fully sampled RSS. Also times mrpipe with BART's maps (--sens), the solver alone.
#   usage: bench/cs_vs_bart.sh [RUNS]     (env: BENCH_DIR, default /tmp/mrpipe-bench-cs;
#                                          MRPIPE_BUILD_DIR, default build)
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
runs=${1:-5}
dir=${BENCH_DIR:-/tmp/mrpipe-bench-cs}
mrpipe="$src/${MRPIPE_BUILD_DIR:-build}/mrpipe"
py=/usr/bin/python3
[ -x "$mrpipe" ] || "$src/scripts/build.sh"
command -v bart >/dev/null || { echo "bench: BART is not installed (apt-get install bart)" >&2; exit 1; }
mkdir -p "$dir"
cd "$dir"

# data: phantom, reference RSS, masks, undersampled k-space
bart phantom -x 256 -k -s 8 ph
bart fft -i -u 3 ph coil && bart rss 8 coil ref
"$py" - <<'EOF'
import numpy as np
m = np.zeros((256, 256), np.complex64); m[:, ::4] = 1; m[:, 116:140] = 1
open('m1d.hdr', 'w').write('# Dimensions\n256 256 1 1 1 1 1 1 1 1 1 1 1 1 1 1\n')
m.T.tofile('m1d.cfl')
EOF
"$mrpipe" -q mask --type poisson --accel 4 --center-fraction 0.08 --shape 256,256 --output m2d.cfl
bart fmac ph m1d us1 && bart fmac ph m2d us2

# measure CMD...: prints "wall_seconds cpu_seconds"
measure() {
  /usr/bin/time -o time.txt -f "%e %U %S" "$@" >/dev/null 2>&1
  awk '{printf "%s %.2f\n", $1, $2 + $3}' time.txt
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
psnr() {
  "$py" - "$1" "$2" <<'EOF'
import sys, numpy as np
def rd(n):
    d = [int(x) for x in open(n + '.hdr').read().split('\n')[1].split()]
    return np.abs(np.fromfile(n + '.cfl', np.complex64, int(np.prod(d))))
r, x = rd(sys.argv[1]), rd(sys.argv[2])
print('%.2f' % (10 * np.log10(r.max() ** 2 / ((r - x) ** 2).mean())))
EOF
}

bart_run() { bart ecalib -m1 "$1" sens_"$1" && bart pics -S -l1 -r0.01 -i 30 "$1" sens_"$1" bart_"$1"; }
mrpipe_run() { "$mrpipe" -q recon --input "$1".cfl --method cs-l1 --lambda 0.01 --iters 30 --output mr_"$1".cfl; }
mrpipe_sens() { "$mrpipe" -q recon --input "$1".cfl --sens sens_"$1".cfl --method cs-l1 --lambda 0.01 --iters 30 --output mrs_"$1".cfl; }
export -f bart_run mrpipe_run mrpipe_sens
export mrpipe

printf 'L1-wavelet CS, BART phantom 256 x 256 x 8 coils, lambda 0.01, 30 iterations, median of %d runs, %d cores\n' \
  "$runs" "$(nproc)"
printf '(load average at start: %s)\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
for us in us1 us2; do
  label=$([ $us = us1 ] && echo "1-D equispaced (every 4th) + 24 centre lines" || echo "2-D Poisson disc (mrpipe mask, R 4)")
  bash -c "bart_run $us" >/dev/null 2>&1          # warm-up (page cache, FFTW wisdom)
  espirit=1
  bash -c "mrpipe_run $us" >/dev/null 2>&1 || espirit=0
  bash -c "mrpipe_sens $us" >/dev/null 2>&1
  b_t=(); b_c=(); m_t=(); m_c=(); s_t=(); s_c=()
  for i in $(seq "$runs"); do
    read -r t c < <(measure bash -c "bart_run $us"); b_t+=("$t"); b_c+=("$c")
    if [ $espirit = 1 ]; then read -r t c < <(measure bash -c "mrpipe_run $us"); m_t+=("$t"); m_c+=("$c"); fi
    read -r t c < <(measure bash -c "mrpipe_sens $us"); s_t+=("$t"); s_c+=("$c")
  done
  bt=$(printf '%s\n' "${b_t[@]}" | median); bc_=$(printf '%s\n' "${b_c[@]}" | median)
  st=$(printf '%s\n' "${s_t[@]}" | median); sc=$(printf '%s\n' "${s_c[@]}" | median)
  printf '\n%s\n' "$label"
  printf '  bart ecalib -m1 + bart pics -S -l1 -r0.01 -i 30:  %5.2f s wall  %5.2f s CPU  PSNR %s dB\n' \
    "$bt" "$bc_" "$(psnr ref bart_$us)"
  if [ $espirit = 1 ]; then
    mt=$(printf '%s\n' "${m_t[@]}" | median); mc=$(printf '%s\n' "${m_c[@]}" | median)
    printf '  mrpipe recon --method cs-l1 (its ESPIRiT):       %5.2f s wall  %5.2f s CPU  PSNR %s dB\n' \
      "$mt" "$mc" "$(psnr ref mr_$us)"
    printf '  ratio mrpipe / BART: wall %.2f  CPU %.2f\n' "$(echo "$mt / $bt" | bc -l)" "$(echo "$mc / $bc_" | bc -l)"
  else
    printf '  mrpipe recon --method cs-l1 without --sens: not available (no ESPIRiT in this build)\n'
  fi
  printf '  mrpipe cs-l1 --sens (BART'"'"'s maps, no ESPIRiT):  %5.2f s wall  %5.2f s CPU  PSNR %s dB\n' \
    "$st" "$sc" "$(psnr ref mrs_$us)"
done
