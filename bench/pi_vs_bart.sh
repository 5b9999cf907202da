#!/bin/bash
# pi_vs_bart.sh: parallel imaging, mrpipe vs BART on the same data, same masks, same lambda and
# iteration count (issue 4, part 1). Runs BART itself, so anyone can reproduce the figures in
# docs/recon.md.
#
#  1. BART's analytic phantom (bart phantom -x 256 -k -s 8) with a 1-D equispaced mask (every 4th
#     phase-encode column + the 24 centre ones) and a 2-D Poisson disc mask (bart poisson -y 2 -z 2
#     -C 24): ESPIRiT time (mrpipe in-process via `mrpipe recon` logs vs `bart ecalib -m1`), and
#     magnitude PSNR vs the fully sampled RSS of mrpipe `sense` and `bart pics -S -l2 -r L -i 30`
#     (BART with its own ecalib maps).
#  2. k-space simulated from a real brain (Colin27, `mrpipe simulate --matrix 216,180`, 8 coils,
#     noise 0.01 of the maximum), readout oversampling removed, fastMRI equispaced mask R = 4 (8 %
#     centre): volume PSNR vs the noise-free RSS (same simulation without noise) and vs the noisy
#     fully sampled RSS, for mrpipe sense and bart ecalib + pics -l2, both from the same .cfl files.
#
# usage: bench/pi_vs_bart.sh [MRPIPE_BINARY]   (default: build/mrpipe); needs bart, /usr/bin/python3
set -euo pipefail
MRPIPE=${1:-$(dirname "$0")/../build/mrpipe}
MRPIPE=$(realpath "$MRPIPE")
PY=/usr/bin/python3
LAMBDA=${LAMBDA:-0.01}
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
cd "$W"

cat > cfl.py <<'EOF'
import numpy as np
def readcfl(name):
    dims = [int(x) for x in open(name + '.hdr').read().split('\n')[1].split()]
    n = max([i for i, d in enumerate(dims) if d > 1] + [1]) + 1
    return np.fromfile(name + '.cfl', np.complex64).reshape(dims[:n], order='F')
def writecfl(name, a):
    a = np.asarray(a, np.complex64)
    with open(name + '.hdr', 'w') as f:
        f.write('# Dimensions\n' + ' '.join(str(d) for d in a.shape) + ' 1' * (16 - a.ndim) + '\n')
    a.ravel(order='F').tofile(name + '.cfl')
def psnr(ref, x):
    ref = abs(ref); x = abs(x)
    return 10 * np.log10(ref.max() ** 2 / ((x - ref) ** 2).mean())
EOF

now() { date +%s.%N; }
secs() { echo "$2 - $1" | bc; }

echo "== BART phantom 256 x 256 x 8 coils, lambda $LAMBDA, 30 iterations"
bart phantom -x 256 -k -s 8 ph >/dev/null
bart fft -i -u 3 ph coil >/dev/null && bart rss 8 coil ref >/dev/null
bart poisson -Y 256 -Z 256 -y 2 -z 2 -C 24 -s 7 pois >/dev/null && bart transpose 0 2 pois pois2 >/dev/null
bart fmac ph pois2 uspo >/dev/null
$PY - <<'EOF'
from cfl import *
m = np.zeros(256); m[0::4] = 1; m[128 - 12:128 + 12] = 1
writecfl('us1d', readcfl('ph') * m[None, :, None, None])
EOF
for us in us1d uspo; do
    t0=$(now); bart ecalib -m1 $us maps_$us >/dev/null; t1=$(now)
    bart pics -S -l2 -r "$LAMBDA" -i 30 $us maps_$us pics_$us >/dev/null 2>&1; t2=$(now)
    "$MRPIPE" -v recon --input $us.cfl --output sense_$us.cfl --method sense --lambda "$LAMBDA" \
        --iters 30 2>log_$us; t3=$(now)
    "$MRPIPE" -q recon --input $us.cfl --output senseb_$us.cfl --method sense --lambda "$LAMBDA" \
        --iters 30 --sens maps_$us.cfl
    esp=$(grep -o 'ESPIRiT: maps in [0-9.]* s' log_$us | grep -o '[0-9.]* s' || echo "?")
    $PY - "$us" <<EOF
import sys
from cfl import *
us = sys.argv[1]; ref = readcfl('ref')
print('%s: PSNR mrpipe sense %.2f dB | mrpipe sense with bart maps %.2f dB | bart pics -l2 %.2f dB'
      % (us, psnr(ref, readcfl('sense_' + us)), psnr(ref, readcfl('senseb_' + us)),
         psnr(ref, readcfl('pics_' + us))))
EOF
    echo "    time: bart ecalib -m1 $(secs $t0 $t1) s, bart pics $(secs $t1 $t2) s;" \
         "mrpipe recon (ESPIRiT $esp + SENSE, whole process) $(secs $t2 $t3) s"
done

echo "== Colin27 brain (mrpipe simulate --matrix 216,180, 8 coils, noise 0.01), slices 80:90," \
     "equispaced R=4 cf 0.08"
# even sizes: BART centres odd-sized FFTs differently from fastMRI's fftshift convention
"$MRPIPE" -q simulate --input /usr/share/mricron/templates/ch2.nii.gz --output sim.h5 --coils 8 \
    --noise 0.01 --slices 80:90 --seed 3 --matrix 216,180
"$MRPIPE" -q simulate --input /usr/share/mricron/templates/ch2.nii.gz --output clean.h5 --coils 8 \
    --noise 0 --slices 80:90 --seed 3 --matrix 216,180
$PY - <<'PYEOF'
import h5py
from cfl import *
f = h5py.File('sim.h5', 'r')
k = f['kspace'][:]                       # (S, C, 2H, W), readout oversampled
S, C, H2, W = k.shape; H = H2 // 2
img = np.fft.fftshift(np.fft.ifft(np.fft.ifftshift(k, axes=2), axis=2, norm='ortho'), axes=2)
img = img[:, :, (H2 - H) // 2:(H2 - H) // 2 + H]
k = np.fft.fftshift(np.fft.fft(np.fft.ifftshift(img, axes=2), axis=2, norm='ortho'), axes=2)
# fastMRI equispaced mask, R = 4, centre fraction 0.08 (offset 0)
nl = int(round(W * 0.08)); pad = (W - nl + 1) // 2
m = np.zeros(W); m[0::4] = 1; m[pad:pad + nl] = 1
k = k * m[None, None, None, :]
print('   readout oversampling removed: %d x %d, %d of %d columns (R = %.2f)' % (H, W, m.sum(), W, W / m.sum()))
for s in range(S):
    writecfl('brain_%d' % s, k[s].transpose(1, 2, 0)[:, :, None, :])   # d0 = H, d1 = W, d3 = C
np.save('ref_noisy.npy', f['reconstruction_rss'][:])
np.save('ref_clean.npy', h5py.File('clean.h5', 'r')['reconstruction_rss'][:])
PYEOF
t_bart=0; t_ours=0
for s in $(seq 0 9); do
    t0=$(now)
    bart ecalib -m1 brain_$s bmaps_$s >/dev/null
    bart pics -S -l2 -r "$LAMBDA" -i 30 brain_$s bmaps_$s bpics_$s >/dev/null 2>&1
    t1=$(now)
    "$MRPIPE" -q recon --input brain_$s.cfl --output sense_$s.cfl --method sense --lambda "$LAMBDA" \
        --iters 30
    t2=$(now)
    "$MRPIPE" -q recon --input brain_$s.cfl --output senseb_$s.cfl --method sense \
        --lambda "$LAMBDA" --iters 30 --sens bmaps_$s.cfl
    "$MRPIPE" -q recon --input brain_$s.cfl --output zf_$s.cfl --method zf
    t_bart=$(echo "$t_bart + $t1 - $t0" | bc); t_ours=$(echo "$t_ours + $t2 - $t1" | bc)
done
$PY - <<'PYEOF'
from cfl import *
def vol(name): return np.stack([abs(readcfl('%s_%d' % (name, s))).squeeze() for s in range(10)])
for refname in ['ref_clean', 'ref_noisy']:
    ref = np.load(refname + '.npy')
    print('   volume PSNR vs %s RSS: mrpipe sense %.2f dB | mrpipe sense with bart maps %.2f dB |'
          ' bart ecalib + pics -l2 %.2f dB | zero-filled %.2f dB'
          % (refname[4:], psnr(ref, vol('sense')), psnr(ref, vol('senseb')), psnr(ref, vol('bpics')),
             psnr(ref, vol('zf'))))
PYEOF
echo "    time (10 slices, one process per slice): bart ecalib + pics $t_bart s; mrpipe recon" \
     "--method sense $t_ours s"
