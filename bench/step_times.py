#!/usr/bin/env python3
"""The median time between consecutive metric events of one name in a run's events.jsonl, skipping the
first step (warm-up): seconds per step. The metric defaults to `train/loss` (the sae plugin reports one
per step with log_every = 1); the snmf plugin reports `fit/loss` once per iteration with log_every = 1.

    python3 bench/step_times.py runs/<id>/events.jsonl [METRIC]
"""
import json
import statistics
import sys

path = sys.argv[1]
metric = sys.argv[2] if len(sys.argv) > 2 else "train/loss"
times = []
with open(path) as f:
    for line in f:
        event = json.loads(line)
        if event.get("event") == "metric" and event.get("name") == metric:
            times.append(event["t"])
steps = [b - a for a, b in zip(times, times[1:])]
if not steps:
    sys.exit(f"{path}: fewer than two {metric} events; did the run fail?")
print(f"{statistics.median(steps):.5f}")
