#!/usr/bin/env bash
# loupe vs Hugging Face transformers + PyTorch (eager) on the same random ViT files, batch and pixels:
# the gradient of the summed cross-entropy with respect to the pixels (FORWARD=1: the forward pass
# alone). The two run alternately, ROUNDS times; prints every run, then the median over rounds of the
# loupe/PyTorch images/s ratio (from median and from best passes) and both peak RSS figures.
#
#   bench/compare_vision.sh [PRESET] [BATCH] [ROUNDS]      (default: vit-base 16 3)
#
# ITERS sets the timed passes per run (default 3, after one warm-up). DEVICE=cuda runs both on GPU 0. Needs python3 with torch and transformers; PYTHON picks the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
preset=${1:-vit-base}
batch=${2:-16}
rounds=${3:-3}
python=${PYTHON:-python3}
device=${DEVICE:-cpu}
iters=${ITERS:-3}
model=target/bench-models/$preset
cargo build --release --locked -q -p loupe
loupe=./target/release/loupe
[ -f "$model/model.safetensors" ] || $loupe models random --preset "$preset" --seed 0 --out "$model"

field() { awk -v key="$1" -v col="$2" '$1 == key {print $col}'; }
median() { sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

mode=(--grad) key=grad\(pixels\):
[ "${FORWARD:-0}" = 1 ] && mode=() key=forward:
ratios_median=() ratios_best=()
for round in $(seq "$rounds"); do
  l=$($loupe bench vision --model "$model" --batch "$batch" --iters "$iters" --device "$device" "${mode[@]}")
  t=$($python bench/torch_vision.py --model "$model" --batch "$batch" --iters "$iters" --device "$device" "${mode[@]}" 2>/dev/null)
  echo "== round $round"
  echo "   loupe:   $(echo "$l" | grep -F "$key")  peak RSS $(echo "$l" | field peak 3) MiB"
  echo "   pytorch: $(echo "$t" | grep -F "$key")  peak RSS $(echo "$t" | field peak 3) MiB"
  ratios_median+=("$(awk -v a="$(echo "$l" | field "$key" 3)" -v b="$(echo "$t" | field "$key" 3)" 'BEGIN {print b / a}')")
  ratios_best+=("$(awk -v a="$(echo "$l" | field "$key" 6)" -v b="$(echo "$t" | field "$key" 6)" 'BEGIN {print b / a}')")
done
echo "-- loupe/pytorch images/s, median over $rounds rounds:" \
  "$(printf '%s\n' "${ratios_median[@]}" | median | xargs printf '%.2f') (median passes)," \
  "$(printf '%s\n' "${ratios_best[@]}" | median | xargs printf '%.2f') (best passes)"
