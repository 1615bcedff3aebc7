#!/usr/bin/env bash
# Every GPU check, on a machine with a CUDA GPU: the CPU-vs-CUDA parity suite (every op), the GPT-2
# fixture parity on CUDA and the CUDA unit tests. A missing GPU is a failure here, not a skip.
#
#   scripts/gpu-tests.sh
set -euo pipefail
cd "$(dirname "$0")/.."
nvrtc=$(scripts/nvrtc.sh)
export LD_LIBRARY_PATH="$nvrtc${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export LOUPE_REQUIRE_GPU=1
cargo run --quiet --locked -p loupe -- doctor
cargo test --locked -p loupe-kernels --test cuda_parity
cargo test --locked -p loupe-kernels --lib cuda::
cargo test --locked -p loupe --test gpt2_parity
