#!/usr/bin/env bash
# loupe vs Hugging Face transformers + PyTorch (CPU) on the same random GPT-2 files, same batch and
# token ids, runs interleaved so both see the same machine state. Prints both reports and the ratio.
#
#   bench/compare_forward.sh [PRESET] [BATCH] [SEQ] [ROUNDS]
#
# Needs python3 with torch and transformers (pip install torch transformers safetensors); set PYTHON
# to pick the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
preset=${1:-gpt2-small}
batch=${2:-8}
seq=${3:-128}
rounds=${4:-3}
python=${PYTHON:-python3}
model=target/bench-models/$preset
cargo build --release --locked -q -p loupe
loupe=./target/release/loupe
[ -f "$model/model.safetensors" ] || $loupe models random --preset "$preset" --seed 0 --out "$model"

tokens_per_s() { awk '/^tokens\/s:/ {print $2}'; }
for capture in none all; do
  loupe_capture=(); [ "$capture" = all ] && loupe_capture=(--capture '*')
  for round in $(seq "$rounds"); do
    l=$($loupe bench forward --model "$model" --batch "$batch" --seq "$seq" "${loupe_capture[@]}")
    t=$($python bench/torch_forward.py --model "$model" --batch "$batch" --seq "$seq" --capture "$capture" 2>/dev/null)
    echo "== capture $capture, round $round"
    echo "-- loupe";   echo "$l" | grep -E 'tokens/s|peak RSS|forward:'
    echo "-- pytorch"; echo "$t" | grep -E 'tokens/s|peak RSS|forward:'
    awk -v a="$(echo "$l" | tokens_per_s)" -v b="$(echo "$t" | tokens_per_s)" \
      'BEGIN { printf "ratio loupe/pytorch tokens/s: %.2f\n", a / b }'
  done
done
