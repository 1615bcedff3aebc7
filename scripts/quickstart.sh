#!/usr/bin/env bash
# The quickstart on the embedded default: a small random GPT-2 written locally (no download), traced on
# a sentence with its attention patterns captured.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p loupe
loupe=./target/release/loupe
out=.quickstart
$loupe models random --preset tiny --seed 0 --out "$out/tiny-gpt2"
$loupe tokenize --model "$out/tiny-gpt2" --text "Interpretability starts with looking inside."
$loupe trace --model "$out/tiny-gpt2" \
  --text "Interpretability starts with looking inside." \
  --capture 'blocks.*.attn.hook_pattern' --capture 'blocks.*.hook_resid_post' \
  --out "$out/trace.safetensors"
echo "quickstart: done — activations in $out/trace.safetensors, model in $out/tiny-gpt2"
