#!/usr/bin/env python3
"""The reference for `loupe bench forward`: Hugging Face transformers + PyTorch on the CPU, on the same
model directory, batch, sequence length and token ids, timed the same way (median of timed passes
after warm-up), printing tokens/s and peak RSS.

    python bench/torch_forward.py --model DIR --batch 8 --seq 128 [--capture all]

`--capture all` asks HF for every hidden state and attention pattern (eager attention), the closest HF
has to capturing every hook. Needs `pip install torch transformers safetensors` (benchmarks only).
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
    a = p.parse_args()

    start = time.perf_counter()
    attn = "eager" if a.capture == "all" else None
    model = GPT2LMHeadModel.from_pretrained(a.model, dtype=torch.float32, attn_implementation=attn).eval()
    load_s = time.perf_counter() - start
    ids = token_ids(a.batch, a.seq, model.config.vocab_size)
    kwargs = dict(output_hidden_states=True, output_attentions=True) if a.capture == "all" else {}

    def once():
        with torch.inference_mode():
            out = model(ids, use_cache=False, **kwargs)
        return out.logits.shape

    for _ in range(a.warmup):
        once()
    times = []
    for _ in range(max(a.iters, 1)):
        t = time.perf_counter()
        once()
        times.append(time.perf_counter() - t)
    median = statistics.median(times)
    print(f"model:          {a.model}")
    print(f"device:         torch {torch.__version__} cpu, {torch.get_num_threads()} threads")
    print(f"batch × seq:    {a.batch} × {a.seq}")
    print(f"capture:        {a.capture}")
    print(f"load:           {load_s:.2f} s")
    print(f"forward:        median {median * 1e3:.1f} ms, best {min(times) * 1e3:.1f} ms over {len(times)} passes")
    print(f"tokens/s:       {a.batch * a.seq / median:.0f}")
    print(f"peak RSS:       {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
