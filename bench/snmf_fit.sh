#!/usr/bin/env bash
# SNMF fitting speed at d 3072 (neurons), n 7000 (tokens), rank k 100, pct_keep 0.01: the `snmf` plugin
# on cached random activations, then the reference semi-NMF fit in PyTorch (bench/torch_snmf.py, the
# same updates, "random" init) on the same file on the same machine. Each runs ITERS iterations and
# reports the median time per iteration over those after the first (warm-up); the script prints
# iterations/s for both and their ratio, then PyTorch again with loupe's cheaper loss (no d × n
# reconstruction) to compare the engines on the same arithmetic.
#
#   bench/snmf_fit.sh [ITERS] [DEVICE]
#
# The PyTorch side needs python with torch (pip install torch); set PYTHON to pick the interpreter.
# Without it only loupe's figure is printed.
set -euo pipefail
cd "$(dirname "$0")/.."
iters=${1:-20}
device=${2:-cpu}
python=${PYTHON:-python3}
d=3072 n=7000 k=100 pct_keep=0.01
if [ "$iters" -lt 2 ]; then
  echo "ITERS must be at least 2 (the first iteration is warm-up)" >&2
  exit 2
fi
cargo build --release --locked -q -p loupe
./scripts/build-plugins.sh >/dev/null
work=target/bench-snmf
mkdir -p "$work"
rm -rf "$work/runs"
# Random N(0, 1) rows: the benchmark measures speed, not the quality of the factors, and each iteration
# costs the same whatever the values (patience = ITERS rules out stopping early).
[ -f "$work/acts.safetensors" ] || python3 bench/random_activations.py "$work/acts.safetensors" $n $d
cat > "$work/bench.toml" <<TOML
[[run]]
name = "snmf-bench"
plugin = "snmf"
data = "acts.safetensors"
seed = 0
[run.params]
rank = $k
pct_keep = $pct_keep
max_iter = $iters
patience = $iters
init = "random"
top_tokens = 0
log_every = 1
TOML
./target/release/loupe run "$work/bench.toml" --device "$device" --plugins plugins/dist --out "$work/runs" >/dev/null
# One fit/loss event per iteration; the gaps between them, after the first, are the iteration times.
loupe_iter=$(python3 bench/step_times.py "$work"/runs/*/events.jsonl fit/loss)
echo "loupe   $device: median iteration $loupe_iter s, $(python3 -c "print(round(1 / $loupe_iter, 2))") iterations/s  (d $d, n $n, k $k, pct_keep $pct_keep; $((iters - 1)) timed iterations)"
if "$python" -c "import torch" 2>/dev/null; then
  # Its per-iteration losses and times go to $work/torch.log.
  torch_iter=$("$python" bench/torch_snmf.py "$work/acts.safetensors" --rank $k --pct-keep $pct_keep --iters "$iters" \
    --device "$device" 2>"$work/torch.log") || { cat "$work/torch.log" >&2; exit 1; }
  echo "PyTorch $device: median iteration $torch_iter s, $(python3 -c "print(round(1 / $torch_iter, 2))") iterations/s  (the reference: loss on the full reconstruction)"
  echo "loupe / PyTorch iterations/s: $(python3 -c "print(round($torch_iter / $loupe_iter, 2))")"
  # The same fit with loupe's loss (no d × n reconstruction): the engines compared, not the loss.
  cheap_iter=$("$python" bench/torch_snmf.py "$work/acts.safetensors" --rank $k --pct-keep $pct_keep --iters "$iters" \
    --device "$device" --loss cheap 2>"$work/torch-cheap.log") || { cat "$work/torch-cheap.log" >&2; exit 1; }
  echo "PyTorch $device: median iteration $cheap_iter s, $(python3 -c "print(round(1 / $cheap_iter, 2))") iterations/s  (loupe's loss from P, Q and GᵀG)"
  echo "loupe / PyTorch (same loss) iterations/s: $(python3 -c "print(round($cheap_iter / $loupe_iter, 2))")"
else
  echo "PyTorch: not measured ($python has no torch; pip install torch)"
fi
