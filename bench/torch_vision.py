#!/usr/bin/env python3
"""The reference for `loupe bench vision`: Hugging Face transformers + PyTorch (eager) on the same image
classifier directory, batch and pixels, timed the same way (median of timed passes after warm-up),
printing images/s and peak memory.

    python bench/torch_vision.py --model DIR --batch 16 [--grad] [--device cuda]

`--grad` times forward + backward to the pixels: autograd's gradient of the summed cross-entropy
(labels b mod classes) with respect to `pixel_values`, as `loupe bench vision --grad`. The model
directory must have no preprocessor normalisation (the random presets have none), since the pixels
are fed to HF as they are. Needs `pip install torch transformers safetensors` (benchmarks only).
"""
import argparse
import resource
import statistics
import time

import torch
from transformers import AutoModelForImageClassification


def spread_pixels(batch, channels, size):
    # The same deterministic pixels `loupe bench vision` feeds.
    per = channels * size * size
    i = torch.arange(per, dtype=torch.int64)
    rows = [((b * 7919 + i * 104729) % 1000).float() / 1000.0 for b in range(batch)]
    return torch.stack(rows).reshape(batch, channels, size, size)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--grad", action="store_true", help="forward + backward to the pixels")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    a = p.parse_args()
    device = torch.device(a.device)

    start = time.perf_counter()
    model = AutoModelForImageClassification.from_pretrained(a.model, dtype=torch.float32).eval().to(device)
    load_s = time.perf_counter() - start
    c = model.config
    pixels = spread_pixels(a.batch, c.num_channels, c.image_size).to(device)
    labels = (torch.arange(a.batch) % c.num_labels).to(device)

    def forward():
        with torch.inference_mode():
            model(pixel_values=pixels)
        if device.type == "cuda":
            torch.cuda.synchronize()

    def with_grad():
        x = pixels.clone().requires_grad_(True)
        logits = model(pixel_values=x).logits
        torch.nn.functional.cross_entropy(logits, labels, reduction="sum").backward()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return x.grad

    once = with_grad if a.grad else forward
    for _ in range(a.warmup):
        once()
    times = []
    for _ in range(max(a.iters, 1)):
        t = time.perf_counter()
        once()
        times.append(time.perf_counter() - t)
    median = statistics.median(times)
    print(f"model:          {a.model} ({c.architectures[0]})")
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device:         torch {torch.__version__} {where}, {torch.get_num_threads()} threads")
    print(f"batch:          {a.batch} × {c.image_size}×{c.image_size}")
    print(f"load:           {load_s:.2f} s")
    label = "grad(pixels):   " if a.grad else "forward:        "
    print(f"{label}median {median * 1e3:.1f} ms, best {min(times) * 1e3:.1f} ms over {len(times)} passes")
    print(f"images/s:       {a.batch / median:.1f}")
    print(f"peak RSS:       {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    if device.type == "cuda":
        print(f"GPU memory:     peak {torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB allocated by torch")


if __name__ == "__main__":
    main()
