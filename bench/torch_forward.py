#!/usr/bin/env python3
"""The reference for `loupe bench forward`: Hugging Face transformers + PyTorch (eager) on the same
model directory, batch, sequence length and token ids, timed the same way (median of timed passes
after warm-up, waiting for the GPU to finish each pass), printing tokens/s and peak memory.

    python bench/torch_forward.py --model DIR --batch 8 --seq 128 [--capture all | --grad] [--device cuda]

`--capture all` asks HF for every hidden state and attention pattern (eager attention), the closest HF
has to capturing every hook. `--grad` times forward + backward instead: autograd's gradients of the
summed next-token cross-entropy with respect to every parameter, as `loupe bench forward --grad`. Needs `pip install torch transformers safetensors` (benchmarks only).
"""
import argparse
import resource
import statistics
import time

import torch
from transformers import GPT2LMHeadModel


def token_ids(batch, seq, vocab):
    # The same deterministic ids `loupe bench forward` feeds.
    return torch.tensor([[(b * 7919 + t * 104729) % vocab for t in range(seq)] for b in range(batch)])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--capture", choices=["none", "all"], default="none")
    p.add_argument("--grad", action="store_true", help="forward + backward to every parameter")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    a = p.parse_args()
    device = torch.device(a.device)

    start = time.perf_counter()
    attn = "eager" if a.capture == "all" else None
    model = GPT2LMHeadModel.from_pretrained(a.model, dtype=torch.float32, attn_implementation=attn).eval()
    model = model.to(device)
    load_s = time.perf_counter() - start
    ids = token_ids(a.batch, a.seq, model.config.vocab_size).to(device)
    kwargs = dict(output_hidden_states=True, output_attentions=True) if a.capture == "all" else {}

    def once():
        with torch.inference_mode():
            out = model(ids, use_cache=False, **kwargs)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return out.logits.shape

    predicted = a.batch * (a.seq - 1)

    def once_with_grad():
        model.zero_grad(set_to_none=True)
        out = model(ids, labels=ids, use_cache=False)
        # HF's loss is the mean over predicted tokens; loupe's objective is the sum.
        (out.loss * predicted).backward()
        if device.type == "cuda":
            torch.cuda.synchronize()

    if a.grad:
        once = once_with_grad

    for _ in range(a.warmup):
        once()
    times = []
    for _ in range(max(a.iters, 1)):
        t = time.perf_counter()
        once()
        times.append(time.perf_counter() - t)
    median = statistics.median(times)
    print(f"model:          {a.model}")
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device:         torch {torch.__version__} {where}, {torch.get_num_threads()} threads")
    print(f"batch × seq:    {a.batch} × {a.seq}")
    print(f"capture:        {a.capture}")
    print(f"load:           {load_s:.2f} s")
    label = "forward+backward: " if a.grad else "forward:        "
    print(f"{label}median {median * 1e3:.1f} ms, best {min(times) * 1e3:.1f} ms over {len(times)} passes")
    print(f"tokens/s:       {a.batch * a.seq / median:.0f}")
    print(f"peak RSS:       {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    if device.type == "cuda":
        print(f"GPU memory:     peak {torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB allocated by torch")


if __name__ == "__main__":
    main()
