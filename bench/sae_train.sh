#!/usr/bin/env bash
# SAE training throughput at GPT-2-small hook_z shapes (d_in 768, d_sae 24576, TopK k = 32, batch 4096
# rows): the `sae` plugin on cached random activations, then SAELens's own TopK training step (PyTorch)
# at the same config on the same machine, with its default dense codes (its `use_sparse_activations`
# fails in the backward pass on the CPU with torch 2.15: no `aten::view` for SparseCPU). Each reports the
# median step time over STEPS steps after the first (warm-up); the script prints tokens/s for both and
# their ratio.
#
#   bench/sae_train.sh [STEPS] [DEVICE]
#
# The SAELens side needs python with sae-lens (pip install sae-lens; it brings torch); set PYTHON to
# pick the interpreter. Without it only loupe's figure is printed.
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-5}
device=${2:-cpu}
python=${PYTHON:-python3}
batch=4096 d_in=768 d_sae=24576 k=32
cargo build --release --locked -q -p loupe
./scripts/build-plugins.sh >/dev/null
work=target/bench-sae
mkdir -p "$work"
rm -rf "$work/runs"
# Two batches fill the smallest buffer; the random rows only need the right shape.
[ -f "$work/acts.safetensors" ] || python3 bench/random_activations.py "$work/acts.safetensors" $((2 * batch)) $d_in
cat > "$work/bench.toml" <<TOML
[[run]]
name = "sae-train-bench"
plugin = "sae"
data = "acts.safetensors"
[run.params]
architecture = "topk"
k = $k
d_sae = $d_sae
batch_size = $batch
training_tokens = $(((steps + 1) * batch))
buffer_batches = 2
eval_tokens = 0
log_every = 1
TOML
./target/release/loupe run "$work/bench.toml" --device "$device" --plugins plugins/dist --out "$work/runs" >/dev/null
loupe_step=$(python3 bench/step_times.py "$work"/runs/*/events.jsonl)
echo "loupe   $device: median step $loupe_step s, $(python3 -c "print(round($batch / $loupe_step))") tokens/s  (d_in $d_in, d_sae $d_sae, k $k, batch $batch; $steps timed steps)"
if "$python" -c "import sae_lens" 2>/dev/null; then
  torch_step=$("$python" bench/saelens_topk_step.py --d-in $d_in --d-sae $d_sae --k $k --batch $batch --steps "$steps")
  echo "SAELens cpu: median step $torch_step s, $(python3 -c "print(round($batch / $torch_step))") tokens/s"
  echo "loupe / SAELens tokens/s: $(python3 -c "print(round($torch_step / $loupe_step, 2))")"
else
  echo "SAELens: not measured ($python has no sae_lens; pip install sae-lens)"
fi
