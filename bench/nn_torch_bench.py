#!/usr/bin/python3
"""nn_torch_bench.py: PyTorch (CPU, oneDNN) timings of the same residual CNN as bench/nn_bench.c,
for bench/nn_vs_torch.sh. Prints one "key value" line per figure.

  inference: a (1, 1, S, S) slice through the BN-folded network (conv + bias + ReLU layers, what
             mrpipe runs), torch.no_grad(), eval mode;
  training:  one step = forward in training mode (batch-statistics BN) + MSE loss + backward +
             AdamW step on a (B, 1, P, P) batch.
Times are the median of --reps runs after --warmup runs.
"""
import argparse
import statistics
import time

import torch
from torch import nn


def net(depth, ch, bn):
    layers = [nn.Conv2d(1, ch, 3, padding=1), nn.ReLU()]
    for _ in range(depth - 2):
        layers.append(nn.Conv2d(ch, ch, 3, padding=1, bias=not bn))
        if bn:
            layers.append(nn.BatchNorm2d(ch))
        layers.append(nn.ReLU())
    layers.append(nn.Conv2d(ch, 1, 3, padding=1))
    return nn.Sequential(*layers)


def median_time(fn, warmup, reps):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--depth", type=int, default=12)
    ap.add_argument("--channels", type=int, default=48)
    ap.add_argument("--size", type=int, default=320)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--patch", type=int, default=48)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)

    folded = net(a.depth, a.channels, False).eval()
    x = torch.rand(1, 1, a.size, a.size)

    def infer():
        with torch.no_grad():
            return x - folded(x)

    t_inf = median_time(infer, a.warmup, a.reps)

    model = net(a.depth, a.channels, True).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    bx = torch.rand(a.batch, 1, a.patch, a.patch)
    by = torch.rand(a.batch, 1, a.patch, a.patch)

    def step():
        opt.zero_grad(set_to_none=False)
        loss = nn.functional.mse_loss(bx - model(bx), by)
        loss.backward()
        opt.step()

    t_train = median_time(step, a.warmup, a.reps)
    print("torch_version", torch.__version__)
    print("torch_threads", torch.get_num_threads())
    print("infer_s", t_inf)
    print("train_s", t_train)


if __name__ == "__main__":
    main()
