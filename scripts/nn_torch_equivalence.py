#!/usr/bin/python3
"""nn_torch_equivalence.py: run an mrpipe model file (nn/model_io.c layout) in PyTorch and write
golden outputs for tests/test_nn.c.

The network is rebuilt from the file with torch.nn layers (Conv2d(k=3, padding=1), BatchNorm2d,
ReLU; output = input - net(input) when residual) and the file's weights, then:
  - eval mode on a 32x32 image            -> datasets input (32, 32), output (32, 32)
  - training mode (batch statistics), MSE loss (mean) on a (2, 1, 16, 16) batch
                                          -> train_input, train_target, train_loss (1,),
                                             train_grads (nparams,) in mrpipe's parameter order
                                             (per layer: conv weight, conv bias, BN weight, BN bias)
Run with Debian's interpreter (/usr/bin/python3 has python3-torch and h5py):
  /usr/bin/python3 scripts/nn_torch_equivalence.py --model M.h5 --out IO.h5 [--seed S]
"""
import argparse

import h5py
import numpy as np
import torch
from torch import nn


def build(f):
    depth = int(f.attrs["depth"])
    eps = float(f.attrs["bn_eps"])
    layers, params = [], []
    for l in range(depth):
        g = f["layer%02d" % l]
        w = np.asarray(g["conv_weight"], dtype=np.float32)
        cout, cin = w.shape[:2]
        conv = nn.Conv2d(cin, cout, 3, padding=1, bias="conv_bias" in g)
        with torch.no_grad():
            conv.weight.copy_(torch.from_numpy(w))
            params.append(conv.weight)
            if "conv_bias" in g:
                conv.bias.copy_(torch.from_numpy(np.asarray(g["conv_bias"], dtype=np.float32)))
                params.append(conv.bias)
        layers.append(conv)
        if "bn_weight" in g:
            bn = nn.BatchNorm2d(cout, eps=eps, momentum=0.1)
            with torch.no_grad():
                bn.weight.copy_(torch.from_numpy(np.asarray(g["bn_weight"], dtype=np.float32)))
                bn.bias.copy_(torch.from_numpy(np.asarray(g["bn_bias"], dtype=np.float32)))
                bn.running_mean.copy_(torch.from_numpy(np.asarray(g["bn_running_mean"], dtype=np.float32)))
                bn.running_var.copy_(torch.from_numpy(np.asarray(g["bn_running_var"], dtype=np.float32)))
            params += [bn.weight, bn.bias]
            layers.append(bn)
        if l < depth - 1:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers), params, bool(int(f.attrs["residual"]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(2)
    with h5py.File(a.model, "r") as f:
        body, params, residual = build(f)

    def net(x):
        return x - body(x) if residual else body(x)

    rng = np.random.default_rng(a.seed)
    yy, xx = np.mgrid[0:32, 0:32]
    x = (0.5 + 0.4 * np.sin(xx / 5.0) * np.cos(yy / 7.0) + 0.1 * rng.standard_normal((32, 32)))
    x = x.astype(np.float32)
    body.eval()
    with torch.no_grad():
        y = net(torch.from_numpy(x)[None, None])[0, 0].numpy()

    body.train()
    tx = rng.standard_normal((2, 1, 16, 16)).astype(np.float32)
    ty = (tx + 0.3 * rng.standard_normal(tx.shape)).astype(np.float32)
    out = net(torch.from_numpy(tx))
    loss = torch.nn.functional.mse_loss(out, torch.from_numpy(ty))
    loss.backward()
    grads = np.concatenate([p.grad.detach().numpy().ravel() for p in params]).astype(np.float32)

    with h5py.File(a.out, "w") as f:
        f["input"] = x
        f["output"] = y.astype(np.float32)
        f["train_input"] = tx
        f["train_target"] = ty
        f["train_loss"] = np.array([loss.item()], dtype=np.float32)
        f["train_grads"] = grads
        f.attrs["torch_version"] = str(torch.__version__)
        f.attrs["model"] = a.model.split("/")[-1]
        f.attrs["seed"] = a.seed


if __name__ == "__main__":
    main()
