#!/usr/bin/env bash
# nn_vs_torch.sh: mrpipe's CNN engine against PyTorch CPU (Debian python3-torch, oneDNN) on the same
# residual network, both with the same thread count, in the same run:
#   inference  one S x S slice (BN folded in both), seconds and GFLOP/s;
#   training   one step (train-mode BN forward, MSE, backward, AdamW) on B patches P x P;
#   sgemm      OpenBLAS GFLOP/s measured in the same run (conv-shaped (C, 9C) x (9C, 4096), 1024^3).
# Each round runs mrpipe then torch; the table shows the median over rounds (the machine is shared,
# so single runs are noisy). Ratios are mrpipe time / torch time (<= 1: mrpipe faster).
#
# usage: bench/nn_vs_torch.sh [--rounds N] [--threads T] [--arch DEPTHxCHANNELS ...] [--im2col]
#        (default: --rounds 3 --threads 2 --arch 12x48; --size 320 --batch 16 --patch 48)
#        --im2col also times mrpipe's im2col + OpenBLAS sgemm baseline (slow: minutes)
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
build=${MRPIPE_BUILD_DIR:-$src/build}
rounds=3 threads=2 size=320 batch=16 patch=48 reps=5 im2col=0
archs=()
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --arch) archs+=("$2"); shift 2 ;;
    --size) size=$2; shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    --patch) patch=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    --im2col) im2col=1; shift ;;
    *) echo "usage: $0 [--rounds N] [--threads T] [--arch DxC ...] [--size S] [--batch B] [--patch P]" >&2; exit 1 ;;
  esac
done
[ ${#archs[@]} -gt 0 ] || archs=(12x48)
py=/usr/bin/python3
if ! $py -c 'import torch' 2>/dev/null; then
  echo "nn_vs_torch: $py has no torch: apt-get install python3-torch" >&2
  exit 1
fi
cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" --target nn_bench -j"$(nproc)" >/dev/null
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "threads $threads, slice ${size}x${size}, training batch ${batch}x${patch}x${patch}, $rounds rounds (median)"
for arch in "${archs[@]}"; do
  depth=${arch%x*} ch=${arch#*x}
  for r in $(seq "$rounds"); do
    MRPIPE_THREADS=$threads OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads \
      "$build/nn_bench" --depth "$depth" --channels "$ch" --size "$size" --batch "$batch" \
      --patch "$patch" --reps "$reps" --im2col "$im2col" > "$tmp/mr.$arch.$r"
    OMP_NUM_THREADS=$threads $py "$src/bench/nn_torch_bench.py" --depth "$depth" --channels "$ch" \
      --size "$size" --batch "$batch" --patch "$patch" --threads "$threads" --reps "$reps" \
      > "$tmp/pt.$arch.$r"
  done
done
$py - "$tmp" "$rounds" "$size" "$batch" "$patch" "${archs[@]}" <<'PY'
import statistics, sys
tmp, rounds, size, batch, patch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
def load(path):
    d = {}
    for line in open(path):
        k, v = line.split(None, 1)
        try: d[k] = float(v)
        except ValueError: d[k] = v.strip()
    return d
print("isa / torch: %s / %s" % (load(f"{tmp}/mr.{sys.argv[6]}.1")["isa"], load(f"{tmp}/pt.{sys.argv[6]}.1")["torch_version"]))
hdr = ("arch", "infer mrpipe", "infer torch", "ratio", "GFLOP/s mr/pt", "train mrpipe", "train torch",
       "ratio", "GFLOP/s mr/pt", "im2col infer", "sgemm conv/1024")
print("| " + " | ".join(hdr) + " |")
print("|" + "---|" * len(hdr))
for arch in sys.argv[6:]:
    depth, ch = map(int, arch.split("x"))
    fpp = 2 * 9 * (ch + (depth - 2) * ch * ch + ch)
    mr = [load(f"{tmp}/mr.{arch}.{r}") for r in range(1, rounds + 1)]
    pt = [load(f"{tmp}/pt.{arch}.{r}") for r in range(1, rounds + 1)]
    med = lambda rows, k: statistics.median(x[k] for x in rows)
    mi, pi = med(mr, "infer_direct_s"), med(pt, "infer_s")
    mt, ptt = med(mr, "train_s"), med(pt, "train_s")
    gi = lambda t: fpp * size * size / t * 1e-9
    gt = lambda t: 3 * fpp * batch * patch * patch / t * 1e-9
    print(f"| {arch} | {mi*1e3:.0f} ms | {pi*1e3:.0f} ms | {mi/pi:.2f} | {gi(mi):.0f}/{gi(pi):.0f} | "
          f"{mt*1e3:.0f} ms | {ptt*1e3:.0f} ms | {mt/ptt:.2f} | {gt(mt):.0f}/{gt(ptt):.0f} | "
          f"{(str(round(med(mr, 'infer_im2col_s')*1e3)) + ' ms') if 'infer_im2col_s' in mr[0] else '-'} | {med(mr, 'sgemm_conv_gflops'):.0f}/{med(mr, 'sgemm_1024_gflops'):.0f} |")
PY
