#!/usr/bin/env python3
"""The yardstick for `loupe bench gemm`: torch.matmul (cuBLAS on a GPU) on n×n · n×n products, timed
the same way (one untimed product, then the median of timed ones, each waited for), printing one line
per size in loupe's format.

    python bench/torch_gemm.py --sizes 1024,2048,4096,8192 --precision bf16 --device cuda

bf16/f16 multiply 16-bit operands stored as such, accumulating in f32 (cuBLAS's default for these
types); f32 disables TF32 so both sides compute true f32 products.
"""
import argparse
import statistics
import time

import torch


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="1024,2048,4096,8192")
    p.add_argument("--precision", choices=["f32", "bf16", "f16"], default="f32")
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--device", default="cuda")
    a = p.parse_args()
    device = torch.device(a.device)
    torch.backends.cuda.matmul.allow_tf32 = False
    dtype = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}[a.precision]

    def wait():
        if device.type == "cuda":
            torch.cuda.synchronize()

    print(f"device: torch {torch.__version__} {device}, precision: {a.precision}, median of {a.iters} products")
    print(f"{'n':>6}  {'ms':>10}  {'TFLOP/s':>9}")
    for n in (int(s) for s in a.sizes.split(",")):
        g = torch.Generator(device="cpu").manual_seed(0)
        x = torch.randn(n, n, generator=g).to(device, dtype)
        y = torch.randn(n, n, generator=g).to(device, dtype)
        torch.matmul(x, y)
        wait()
        times = []
        for _ in range(max(a.iters, 1)):
            t = time.perf_counter()
            torch.matmul(x, y)
            wait()
            times.append(time.perf_counter() - t)
        median = statistics.median(times)
        print(f"{n:>6}  {median * 1e3:>10.3f}  {2 * n**3 / median / 1e12:>9.2f}")


if __name__ == "__main__":
    main()
