#!/usr/bin/env bash
# The GPU benchmarks, in one run on one GPU:
#   1. GEMM TFLOP/s, loupe's kernels against cuBLAS (torch.matmul), f32 and bf16, n = 1024..8192;
#   2. GPT-2-small forward tokens/s, loupe against HF transformers + PyTorch eager, without and with
#      every hook captured (bench/compare_forward.sh with DEVICE=cuda).
# Prints both tables and the loupe/cuBLAS ratio per size.
#
#   bench/gpu.sh [SIZES] [ROUNDS]
#
# Needs a CUDA GPU (compute capability 8.0+), NVRTC (scripts/nvrtc.sh installs it) and python3 with
# torch and transformers; set PYTHON to pick the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=${1:-1024,2048,4096,8192}
rounds=${2:-3}
python=${PYTHON:-python3}
nvrtc=$(scripts/nvrtc.sh)
export LD_LIBRARY_PATH="$nvrtc${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
cargo build --release --locked -q -p loupe
loupe=./target/release/loupe
$loupe doctor

for precision in f32 bf16; do
  echo "== GEMM $precision"
  l=$($loupe bench gemm --device cuda --precision "$precision" --sizes "$sizes")
  t=$($python bench/torch_gemm.py --device cuda --precision "$precision" --sizes "$sizes")
  echo "-- loupe";  echo "$l"
  echo "-- cuBLAS"; echo "$t"
  echo "-- loupe / cuBLAS TFLOP/s (from the median times)"
  awk 'NR == FNR && $1 ~ /^[0-9]+$/ {ours[$1] = $2; next}
       $1 ~ /^[0-9]+$/ && ($1 in ours) {printf "%6d  %.2f\n", $1, $2 / ours[$1]}' \
    <(echo "$l") <(echo "$t")
done

echo "== GPT-2-small forward"
DEVICE=cuda PYTHON=$python bench/compare_forward.sh gpt2-small 8 128 "$rounds"
