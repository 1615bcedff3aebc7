#!/usr/bin/env bash
# Installs NVRTC (the CUDA runtime compiler, from the `nvidia-cuda-nvrtc` 13.0 PyPI wheel; no GPU or
# toolkit needed) into target/nvrtc once, and prints the directory holding libnvrtc.so.13, for
# LD_LIBRARY_PATH. The GPU machines run CUDA 13.0, so kernels are checked with the NVRTC they will use.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/nvrtc
lib=$venv/lib/nvidia/cu13/lib
if [ ! -e "$lib/libnvrtc.so.13" ]; then
  PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check --target "$venv/lib" "nvidia-cuda-nvrtc==13.0.*" >&2 \
    || { echo "scripts/nvrtc.sh: could not install nvidia-cuda-nvrtc==13.0.* from PyPI" >&2; exit 1; }
fi
echo "$PWD/$lib"
