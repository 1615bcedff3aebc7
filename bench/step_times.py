#!/usr/bin/env python3
"""The median time between consecutive `train/loss` metric events of a run's events.jsonl (the sae
plugin reports one per step with log_every = 1), skipping the first step (warm-up): seconds per step.

    python3 bench/step_times.py runs/<id>/events.jsonl
"""
import json
import statistics
import sys

times = []
with open(sys.argv[1]) as f:
    for line in f:
        event = json.loads(line)
        if event.get("event") == "metric" and event.get("name") == "train/loss":
            times.append(event["t"])
steps = [b - a for a, b in zip(times, times[1:])]
if not steps:
    sys.exit(f"{sys.argv[1]}: fewer than two train/loss events; did the run fail?")
print(f"{statistics.median(steps):.4f}")
