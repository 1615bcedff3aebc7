#!/usr/bin/env python3
"""Writes a `.safetensors` file with an f32 `activations` tensor [ROWS, D] of N(0, 1) samples (seed 0),
using only the standard library: the SAE benchmark's input.

    python3 bench/random_activations.py OUT ROWS D
"""
import json
import random
import struct
import sys

out, rows, d = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(0)
data = struct.pack(f"<{rows * d}f", *(rng.gauss(0.0, 1.0) for _ in range(rows * d)))
header = json.dumps({"activations": {"dtype": "F32", "shape": [rows, d], "data_offsets": [0, len(data)]}}).encode()
header += b" " * (-len(header) % 8)
with open(out, "wb") as f:
    f.write(struct.pack("<Q", len(header)) + header + data)
