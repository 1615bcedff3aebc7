#!/usr/bin/env bash
# loupe vs Hugging Face transformers + PyTorch (eager) on the same random GPT-2 files, the same batch and
# the same token ids. The two run alternately, ROUNDS times, so both see the same machine state; each
# run reports the median and the best of its timed passes. Prints every run, then per capture mode the
# median over rounds of the loupe/PyTorch tokens/s ratio (from median passes and from best passes) and
# both peak RSS figures.
#
#   bench/compare_forward.sh [PRESET] [BATCH] [SEQ] [ROUNDS]
#
# DEVICE=cuda runs both on GPU 0 (default: cpu). GRAD=1 times forward + backward instead (the gradients
# of the summed next-token cross-entropy with respect to every parameter), with no captures.
#
# Needs python3 with torch and transformers (pip install torch transformers safetensors); set PYTHON
# to pick the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
preset=${1:-gpt2-small}
batch=${2:-8}
seq=${3:-128}
rounds=${4:-5}
python=${PYTHON:-python3}
device=${DEVICE:-cpu}
model=target/bench-models/$preset
cargo build --release --locked -q -p loupe
loupe=./target/release/loupe
[ -f "$model/model.safetensors" ] || $loupe models random --preset "$preset" --seed 0 --out "$model"

field() { awk -v key="$1" -v col="$2" '$1 == key {print $col}'; }
median() { sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

modes=(none all)
[ "${GRAD:-0}" = 1 ] && modes=(grad)
for capture in "${modes[@]}"; do
  loupe_capture=() torch_capture=(--capture "$capture") key=forward:
  [ "$capture" = all ] && loupe_capture=(--capture '*')
  [ "$capture" = grad ] && loupe_capture=(--grad) torch_capture=(--grad) key=forward+backward:
  ratios_median=() ratios_best=()
  for round in $(seq "$rounds"); do
    l=$($loupe bench forward --model "$model" --batch "$batch" --seq "$seq" --device "$device" "${loupe_capture[@]}")
    t=$($python bench/torch_forward.py --model "$model" --batch "$batch" --seq "$seq" "${torch_capture[@]}" --device "$device" 2>/dev/null)
    echo "== capture $capture, round $round"
    echo "   loupe:   $(echo "$l" | grep -F "$key")  peak RSS $(echo "$l" | field peak 3) MiB"
    echo "   pytorch: $(echo "$t" | grep -F "$key")  peak RSS $(echo "$t" | field peak 3) MiB"
    # Both print "forward: median X ms, best Y ms": time ratios torch/loupe are tokens/s ratios loupe/torch.
    ratios_median+=("$(awk -v a="$(echo "$l" | field "$key" 3)" -v b="$(echo "$t" | field "$key" 3)" 'BEGIN {print b / a}')")
    ratios_best+=("$(awk -v a="$(echo "$l" | field "$key" 6)" -v b="$(echo "$t" | field "$key" 6)" 'BEGIN {print b / a}')")
  done
  echo "-- capture $capture: loupe/pytorch tokens/s, median over $rounds rounds:" \
    "$(printf '%s\n' "${ratios_median[@]}" | median | xargs printf '%.2f') (median passes)," \
    "$(printf '%s\n' "${ratios_best[@]}" | median | xargs printf '%.2f') (best passes)"
done
