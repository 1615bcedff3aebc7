#!/usr/bin/env python3
"""Checks that SAELens itself loads SAEs loupe saved and computes what loupe computed: for each run
directory given, `sae_lens.SAE.load_from_disk(<run>/artifacts/sae)` must load, and its encode and decode
of `codes.safetensors`' x must match loupe's feature_acts and reconstruction (the run needs
save_codes_rows > 0). Exits non-zero on any mismatch.

    python scripts/saelens_interop.py runs/<id> [runs/<id> ...]

Needs `pip install sae-lens` (an optional interoperability check; the test suite does not need it).
"""
import sys

import torch
from safetensors.torch import load_file
from sae_lens import SAE

failed = False
for run in sys.argv[1:]:
    sae = SAE.load_from_disk(f"{run}/artifacts/sae", device="cpu")
    # codes.safetensors holds flattened rows; hook_z SAEs otherwise expect [..., n_heads, d_head].
    sae.turn_off_forward_pass_hook_z_reshaping()
    codes = load_file(f"{run}/artifacts/codes.safetensors")
    with torch.no_grad():
        feature_acts = sae.encode(codes["x"])
        reconstruction = sae.decode(feature_acts)
    worst_f = (feature_acts - codes["feature_acts"]).abs().max().item()
    worst_r = (reconstruction - codes["reconstruction"]).abs().max().item()
    ok = worst_f <= 1e-5 and worst_r <= 1e-5
    failed |= not ok
    print(f"{run}: {type(sae).__name__} loaded; max |diff| feature_acts {worst_f:.2e}, reconstruction {worst_r:.2e} {'ok' if ok else 'MISMATCH'}")
sys.exit(1 if failed else 0)
