#!/usr/bin/python3
"""gen_golden_masks.py: golden values for tests/test_mask.c, drawn with numpy's legacy RandomState.

Run with Debian's interpreter (it has numpy):  /usr/bin/python3 scripts/gen_golden_masks.py [OUT]
(default OUT: tests/data/golden_masks.txt next to this script's repository root; "-" = stdout).

The mask functions below transcribe the behaviour of fastMRI's fastmri/data/subsample.py
(MaskFunc.__call__ -> sample_mask: choose_acceleration, centre mask, calculate_acceleration_mask,
then the union) for RandomMaskFunc, EquiSpacedMaskFunc and EquispacedMaskFractionFunc, with torch
replaced by numpy. fastMRI itself is not needed. Call semantics reproduced: MaskFunc([cf], [R])
(shape, seed=S): rng.seed(S); randint(len([cf])); ...

File format (one record per line, '#' starts a comment):
  rng_seed N w1 .. wN            re-seed the reference generator (N == 1: RandomState(int), else array)
  next32 K v1 .. vK              K raw 32-bit draws (randint(0, 2**32, dtype=uint64): one draw each)
  random_sample K d1 .. dK       K doubles (repr, exact round trip)
  randint LOW HIGH K v1 .. vK    K draws of randint(LOW, HIGH)
  random_sample_skip K d         skip K random_sample() values, then the next one is d
  mask TYPE W CF R N w1 .. wN NUM_LOW BITS
                                 TYPE random|equispaced|equispaced-fraction; CF and R as repr; the seed
                                 words; the centre count; BITS = W characters '0'/'1'
"""
import os
import sys

import numpy as np


# ------------------------------------------------------------------ fastMRI mask transcription
# Each function returns (mask float32 (W,), num_low) as MaskFunc.__call__ would (the union of the
# centre mask and the acceleration mask), for one (cf, R) pair and the given seed.

def _setup(rng, seed, cf, accel, width):
    """Seed as temp_seed does, choose (cf, R) from one-element lists, build the centre mask."""
    rng.seed(seed)
    choice = rng.randint(1)  # choose_acceleration with one (cf, R) pair: consumes what numpy does
    assert choice == 0
    num_low = round(width * cf)  # Python round: ties to even
    centre = np.zeros(width, dtype=np.float32)
    pad = (width - num_low + 1) // 2
    centre[pad:pad + num_low] = 1
    return num_low, centre


def mask_random(width, cf, accel, seed):
    rng = np.random.RandomState()
    num_low, centre = _setup(rng, seed, cf, accel, width)
    prob = (width / accel - num_low) / (width - num_low)
    outer = rng.uniform(size=width) < prob
    return np.maximum(centre, outer.astype(np.float32)), num_low


def mask_equispaced(width, cf, accel, seed):
    rng = np.random.RandomState()
    num_low, centre = _setup(rng, seed, cf, accel, width)
    offset = rng.randint(0, high=round(accel))
    outer = np.zeros(width, dtype=np.float32)
    outer[offset::accel] = 1
    return np.maximum(centre, outer), num_low


def mask_equispaced_fraction(width, cf, accel, seed):
    rng = np.random.RandomState()
    num_low, centre = _setup(rng, seed, cf, accel, width)
    adjusted = (accel * (num_low - width)) / (num_low * accel - width)
    offset = rng.randint(0, high=round(adjusted))
    outer = np.zeros(width)
    cols = np.around(np.arange(offset, width - 1, adjusted)).astype(np.uint)
    outer[cols] = 1.0
    return np.maximum(centre, outer.astype(np.float32)), num_low


MASKS = {
    "random": mask_random,
    "equispaced": mask_equispaced,
    "equispaced-fraction": mask_equispaced_fraction,
}


def fname_seed(name):
    """fastMRI's per-file seed (e.g. in its validation transforms): tuple(map(ord, fname))."""
    return tuple(map(ord, name))


def seed_words(seed):
    return [seed] if isinstance(seed, int) else list(seed)


# ------------------------------------------------------------------ cases

CASES = [
    # (type, W, cf, R, seed)
    ("random", 368, 0.08, 4, 0),
    ("random", 368, 0.08, 4, 42),
    ("random", 368, 0.04, 8, 1234),
    ("random", 372, 0.08, 4, 7),
    ("random", 320, 0.08, 4, 2**32 - 1),
    ("random", 640, 0.04, 8, 99),
    ("random", 368, 0.08, 4, fname_seed("file1000001.h5")),
    ("random", 368, 0.04, 8, fname_seed("file_brain_AXT2_200_2000019.h5")),
    ("random", 100, 0.1, 5.5, 3),
    ("random", 25, 0.1, 2, 11),      # 25 * 0.1 = 2.5: round to even -> 2
    ("random", 30, 0.05, 3, 12),     # 1.5 -> 2
    ("random", 1, 0.0, 2, 5),
    ("equispaced", 368, 0.08, 4, 0),
    ("equispaced", 368, 0.08, 4, 1),
    ("equispaced", 368, 0.04, 8, 2),
    ("equispaced", 372, 0.08, 4, 3),
    ("equispaced", 320, 0.08, 4, 123456),
    ("equispaced", 368, 0.08, 4, fname_seed("file1000001.h5")),
    ("equispaced", 640, 0.04, 8, fname_seed("file_brain_AXFLAIR_200_6002425.h5")),
    ("equispaced", 33, 0.0, 3, 9),
    ("equispaced-fraction", 368, 0.08, 4, 0),
    ("equispaced-fraction", 368, 0.08, 4, 17),
    ("equispaced-fraction", 368, 0.04, 8, 5),
    ("equispaced-fraction", 372, 0.08, 4, 8),
    ("equispaced-fraction", 320, 0.04, 8, 31337),
    ("equispaced-fraction", 368, 0.08, 4, fname_seed("file1000001.h5")),
    ("equispaced-fraction", 368, 0.08, 4, fname_seed("knee_\u00e9\u20ac.h5")),  # code points > 127
    ("equispaced-fraction", 60, 0.17, 2, 4),   # adjusted R = 2.5 exactly: ties in np.around
    ("equispaced-fraction", 60, 0.17, 2, 6),
    ("equispaced-fraction", 100, 0.1, 5.5, 21),
    ("equispaced-fraction", 200, 0.0, 3, 1),
]


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out_path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "tests", "data",
                                                                   "golden_masks.txt")
    lines = ["# golden values for tests/test_mask.c: numpy %s legacy RandomState" % np.__version__,
             "# generated by scripts/gen_golden_masks.py (format described there)"]

    # Raw generator draws. next32 via randint(0, 2**32) on uint64: one 32-bit draw each.
    for seed in (0, 5489, 2**32 - 1, fname_seed("file1000001.h5"), (1, 2, 3, 4)):
        words = seed_words(seed)
        lines.append("rng_seed %d %s" % (len(words), " ".join(map(str, words))))
        rng = np.random.RandomState(seed)
        v = [int(x) for x in rng.randint(0, 2**32, size=8, dtype=np.uint64)]
        lines.append("next32 %d %s" % (len(v), " ".join(map(str, v))))
        d = [repr(float(x)) for x in rng.random_sample(6)]
        lines.append("random_sample %d %s" % (len(d), " ".join(d)))
        for low, high in ((0, 1), (0, 4), (3, 4), (0, 5), (-7, 100), (0, 368), (10, 2**31),
                          (0, 2**32 - 1), (0, 2**32), (5, 2**40 + 3), (0, 1), (0, 2**62)):
            k = 6
            v = [int(rng.randint(low, high)) for _ in range(k)]
            lines.append("randint %d %d %d %s" % (low, high, k, " ".join(map(str, v))))
        d = [repr(float(x)) for x in rng.random_sample(3)]
        lines.append("random_sample %d %s" % (len(d), " ".join(d)))
    # Many draws: past several twists of the state.
    lines.append("rng_seed 1 2024")
    rng = np.random.RandomState(2024)
    d = rng.random_sample(2000)
    lines.append("random_sample_skip 1999 %r" % float(d[-1]))

    for kind, width, cf, accel, seed in CASES:
        mask, num_low = MASKS[kind](width, cf, accel, seed)
        words = seed_words(seed)
        bits = "".join("1" if x else "0" for x in mask)
        lines.append("mask %s %d %r %r %d %s %d %s" % (kind, width, float(cf), float(accel),
                                                      len(words), " ".join(map(str, words)),
                                                      num_low, bits))

    text = "\n".join(lines) + "\n"
    if out_path == "-":
        sys.stdout.write(text)
    else:
        with open(out_path, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
