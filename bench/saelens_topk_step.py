#!/usr/bin/env python3
"""The reference for bench/sae_train.sh: SAELens's TopK training step (PyTorch, CPU, float32) at a given
config, as SAELens's trainer runs it: `training_forward_pass`, backward, gradient clipping at norm 1,
Adam. Prints the median seconds per step after one warm-up step.

    python bench/saelens_topk_step.py --d-in 768 --d-sae 24576 --k 32 --batch 4096 --steps 5

Needs `pip install sae-lens` (benchmarks only).
"""
import argparse
import statistics
import time

import torch
from sae_lens import TopKTrainingSAE, TopKTrainingSAEConfig
from sae_lens.saes.sae import TrainStepInput


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--d-in", type=int, default=768)
    ap.add_argument("--d-sae", type=int, default=24576)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--steps", type=int, default=5)
    a = ap.parse_args()
    torch.manual_seed(0)
    sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=a.d_in, d_sae=a.d_sae, k=a.k, device="cpu", dtype="float32"))
    optimizer = torch.optim.Adam(sae.parameters(), lr=3e-4, betas=(0.9, 0.999))
    x = torch.randn(a.batch, a.d_in)
    dead = torch.zeros(a.d_sae, dtype=torch.bool)
    times = []
    for step in range(a.steps + 1):
        start = time.perf_counter()
        out = sae.training_forward_pass(
            TrainStepInput(sae_in=x, coefficients={}, dead_neuron_mask=dead, n_training_steps=step, is_logging_step=False)
        )
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(sae.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        times.append(time.perf_counter() - start)
    print(f"{statistics.median(times[1:]):.4f}")


if __name__ == "__main__":
    main()
