#!/usr/bin/env python3
"""The reference for bench/snmf_finetune.sh: the joint fine-tune of `train_hierarchical_nmf` in
ordavid-s/snmf-mlp-decomposition (factorization/hierchichal_snmf.py) in PyTorch, float32: parameters
W1 [n, r1], W2 [r1, r2], …, H [r_L, d], the forward `W1 @ W2 @ … @ H` (left to right, as the reference's
HierarchicalNMFModule), `nn.MSELoss` against the activations, `torch.optim.Adam(lr=1e-3)`. The
parameters start random (the benchmark measures speed; each step costs the same whatever the values).

Times every step (waiting for the GPU on cuda) and prints one line to stdout: the median seconds per
step over the steps after the first (warm-up). Losses and timings go to stderr.

    python bench/torch_snmf_finetune.py ACTS.safetensors --ranks 100 50 --steps 20 [--threads T] [--device cpu|cuda]
"""
import argparse
import statistics
import sys
import time

import torch

from torch_snmf import load_activations, sync


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("acts")
    ap.add_argument("--ranks", type=int, nargs="+", required=True)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    x = load_activations(args.acts).to(device)
    n, d = x.shape
    gen = torch.Generator().manual_seed(0)
    dims = [n] + args.ranks
    ws = [torch.rand(a, b, generator=gen).to(device).requires_grad_() for a, b in zip(dims, dims[1:])]
    h = torch.randn(args.ranks[-1], d, generator=gen).to(device).requires_grad_()
    optimizer = torch.optim.Adam(ws + [h], lr=args.lr)
    loss_fn = torch.nn.MSELoss()
    times = []
    for step in range(args.steps):
        sync(device)
        start = time.perf_counter()
        optimizer.zero_grad()
        m = ws[0]
        for w in ws[1:]:
            m = m @ w
        loss = loss_fn(m @ h, x)
        loss.backward()
        optimizer.step()
        sync(device)
        times.append(time.perf_counter() - start)
        print(f"step {step + 1}: loss {loss.item():.6e}, {times[-1]:.4f} s", file=sys.stderr)
    print(f"{statistics.median(times[1:]):.5f}")


if __name__ == "__main__":
    main()
