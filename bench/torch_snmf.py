#!/usr/bin/env python3
"""The reference for bench/snmf_fit.sh: the semi-NMF fit of `NMFSemiNMF.fit` in ordavid-s/
snmf-mlp-decomposition (factorization/seminmf.py) in PyTorch, float32, "random" init, on the
activations of a `.safetensors` file (an f32 tensor `activations` [n, d], rows = tokens; the fit runs
on its transpose A, d × n: neurons × tokens). Each iteration, under torch.no_grad():

    F = A G (GᵀG + reg I)⁻¹                       closed-form F (reg 1e-6)
    keep the ceil(pct_keep · d) largest |F| per column (winner-take-all), zero the rest
    c = ‖G[:, j]‖ (≥ 1e-8); G /= c; F *= c          scale fix
    P = AᵀF, Q = FᵀF; G *= sqrt((P⁺ + G Q⁻) / (P⁻ + G Q⁺ + 1e-6))
    loss = ‖A − F Gᵀ‖²_F (full reconstruction); keep copies of the best (F, G) (tol 1e-4)

With `--loss cheap` the loss is instead ‖A‖² − 2·Σ P⊙G + Σ Q⊙GᵀG (no d × n reconstruction, the scalars
added in float64), as loupe computes it: the same fit with the engine, not the loss, compared.

Times every iteration (waiting for the GPU on cuda) and prints one line to stdout: the median seconds
per iteration over the iterations after the first (warm-up). Losses and timings go to stderr.

    python bench/torch_snmf.py ACTS.safetensors --rank 100 --pct-keep 0.01 --iters 20 [--threads T] [--device cpu|cuda] [--loss full|cheap]

Needs `pip install torch` (benchmarks only); reads the file with `safetensors` when installed, else
parses the format itself.
"""
import argparse
import json
import math
import statistics
import struct
import sys
import time

import torch


def load_activations(path):
    """The f32 `activations` tensor [n, d] of a .safetensors file."""
    try:
        from safetensors.torch import load_file
    except ImportError:
        load_file = None
    if load_file is not None:
        return load_file(path)["activations"].to(torch.float32)
    # The format: an 8-byte little-endian header length, a JSON header, then the raw tensor bytes.
    with open(path, "rb") as f:
        (header_len,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(header_len))
        info = header["activations"]
        if info["dtype"] != "F32":
            sys.exit(f"{path}: `activations` is {info['dtype']}, expected F32")
        start, end = info["data_offsets"]
        f.seek(8 + header_len + start)
        data = bytearray(f.read(end - start))
    return torch.frombuffer(data, dtype=torch.float32).reshape(info["shape"])  # little-endian hosts


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("acts", help=".safetensors file with an f32 `activations` tensor [n, d]")
    ap.add_argument("--rank", type=int, default=100)
    ap.add_argument("--pct-keep", type=float, default=0.01)
    ap.add_argument("--iters", type=int, default=20, help="iterations, the first of them untimed warm-up")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--loss", choices=["full", "cheap"], default="full",
                    help="full: ‖A − F Gᵀ‖² as the reference forms it; cheap: from P, Q and GᵀG")
    a = ap.parse_args()
    if a.iters < 2:
        sys.exit("--iters must be at least 2 (the first is warm-up)")
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    reg, tol = 1e-6, 1e-4

    A = load_activations(a.acts).t().contiguous().to(device)  # d × n: neurons × tokens
    d, n = A.shape
    k = a.rank
    m = max(1, math.ceil(a.pct_keep * d))
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    print(f"torch {torch.__version__} on {where}: d {d}, n {n}, k {k}, pct_keep {a.pct_keep} (keep {m} per column)",
          file=sys.stderr)

    torch.manual_seed(a.seed)
    G = torch.rand(n, k, device=device).clamp_min(1e-6)
    F = torch.randn(d, k, device=device)
    eye = torch.eye(k, device=device)
    norm_sq = A.double().pow(2).sum().item()
    best_loss, best_F, best_G = float("inf"), None, None
    times = []
    with torch.no_grad():
        for it in range(a.iters):
            sync(device)
            start = time.perf_counter()
            # F in closed form, then winner-take-all per column.
            inv = torch.linalg.inv(G.T @ G + reg * eye)
            F = A @ G @ inv
            scores = F.abs()
            thresh = torch.topk(scores, m, dim=0).values[-1, :]
            F.mul_(scores >= thresh.unsqueeze(0))
            # Scale fix: unit-norm columns of G, compensated in F.
            c = G.norm(dim=0).clamp_min(1e-8)
            G.div_(c)
            F.mul_(c)
            # Multiplicative update of the non-negative G.
            P = A.T @ F
            Q = F.T @ F
            P_plus, P_minus = (P.abs() + P) * 0.5, (P.abs() - P) * 0.5
            Q_plus, Q_minus = (Q.abs() + Q) * 0.5, (Q.abs() - Q) * 0.5
            G = G * torch.sqrt((P_plus + G @ Q_minus) / (P_minus + G @ Q_plus + 1e-6))
            if a.loss == "full":
                # Loss on the full reconstruction, as the reference forms it.
                loss = torch.linalg.norm(A - F @ G.T).pow(2).item()
            else:
                loss = (norm_sq - 2.0 * (P * G).sum(dim=1).double().sum().item()
                        + (Q * (G.T @ G)).sum(dim=1).double().sum().item())
            if loss < best_loss - tol:
                best_loss, best_F, best_G = loss, F.clone(), G.clone()
            sync(device)
            times.append(time.perf_counter() - start)
            print(f"iter {it:4d}: loss {loss:.6g}  ({times[-1]:.4f} s)", file=sys.stderr)
    print(f"best loss {best_loss:.6g}; ‖A‖² {A.pow(2).sum().item():.6g}", file=sys.stderr)
    print(f"{statistics.median(times[1:]):.5f}")


if __name__ == "__main__":
    main()
