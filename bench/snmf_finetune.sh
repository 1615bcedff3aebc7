#!/usr/bin/env bash
# Speed of the hierarchical SNMF's joint fine-tune at d 3072 (neurons), n 7000 (tokens), ranks [100, 50]:
# the `snmf` plugin's Adam steps on cached random activations (each level fitted for 2 iterations only, to
# get there quickly), then the reference's fine-tune in PyTorch (bench/torch_snmf_finetune.py: autograd,
# nn.MSELoss, torch.optim.Adam) on the same file on the same machine. Each runs STEPS steps and reports the
# median time per step over those after the first (warm-up); the script prints steps/s for both and their
# ratio.
#
#   bench/snmf_finetune.sh [STEPS] [DEVICE]
#
# The PyTorch side needs python with torch (pip install torch); set PYTHON to pick the interpreter.
# Without it only loupe's figure is printed.
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-20}
device=${2:-cpu}
python=${PYTHON:-python3}
d=3072 n=7000 r1=100 r2=50
if [ "$steps" -lt 2 ]; then
  echo "STEPS must be at least 2 (the first step is warm-up)" >&2
  exit 2
fi
cargo build --release --locked -q -p loupe
./scripts/build-plugins.sh >/dev/null
work=target/bench-snmf
mkdir -p "$work"
rm -rf "$work/finetune-runs"
[ -f "$work/acts.safetensors" ] || python3 bench/random_activations.py "$work/acts.safetensors" $n $d
cat > "$work/finetune.toml" <<TOML
[[run]]
name = "snmf-finetune-bench"
plugin = "snmf"
data = "acts.safetensors"
seed = 0
[run.params]
ranks = [$r1, $r2]
max_iter = 2
patience = 2
finetune_steps = $steps
top_tokens = 0
log_every = 1
TOML
./target/release/loupe run "$work/finetune.toml" --device "$device" --plugins plugins/dist --out "$work/finetune-runs" >/dev/null
# One finetune/mse event per step; the gaps between them, after the first, are the step times.
loupe_step=$(python3 bench/step_times.py "$work"/finetune-runs/*/events.jsonl finetune/mse)
echo "loupe   $device: median step $loupe_step s, $(python3 -c "print(round(1 / $loupe_step, 2))") steps/s  (d $d, n $n, ranks [$r1, $r2]; $((steps - 1)) timed steps)"
if "$python" -c "import torch" 2>/dev/null; then
  torch_step=$(cd bench && "$python" torch_snmf_finetune.py "../$work/acts.safetensors" --ranks $r1 $r2 --steps "$steps" \
    --device "$device" 2>"../$work/torch-finetune.log") || { cat "$work/torch-finetune.log" >&2; exit 1; }
  echo "PyTorch $device: median step $torch_step s, $(python3 -c "print(round(1 / $torch_step, 2))") steps/s  (autograd, nn.MSELoss, torch.optim.Adam)"
  echo "loupe / PyTorch steps/s: $(python3 -c "print(round($torch_step / $loupe_step, 2))")"
else
  echo "PyTorch: not measured ($python has no torch; pip install torch)"
fi
