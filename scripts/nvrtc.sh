#!/usr/bin/env bash
# Installs NVRTC (the CUDA runtime compiler, from the `nvidia-cuda-nvrtc` 13.0 PyPI wheel; no GPU or
# toolkit needed) into target/nvrtc once, and prints the directory holding libnvrtc.so.13, for
# LD_LIBRARY_PATH. The GPU machines run CUDA 13.0, so kernels are checked with the NVRTC they will use.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/nvrtc
lib=$venv/lib/nvidia/cu13/lib
if [ -e "$lib/libnvrtc.so.13" ]; then
  echo "$PWD/$lib"
  exit 0
fi
if PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check --target "$venv/lib" "nvidia-cuda-nvrtc==13.0.*" >&2; then
  echo "$PWD/$lib"
  exit 0
fi
# Offline (a GPU machine without PyPI): an NVRTC 13 already installed, e.g. beside PyTorch or the
# system's CUDA.
found=$(python3 - 2>/dev/null <<'PY' || true
import glob, site, sys
for d in site.getsitepackages() + [site.getusersitepackages()]:
    for hit in glob.glob(d + "/nvidia/cu13/lib/libnvrtc.so.13"):
        print(hit.rsplit("/", 1)[0]); sys.exit()
PY
)
[ -z "$found" ] && found=$(ldconfig -p 2>/dev/null | awk '/libnvrtc\.so\.13 / {print $NF; exit}' | xargs -r dirname)
[ -z "$found" ] && for d in /usr/local/cuda/lib64 /usr/local/cuda-13*/lib64; do
  [ -e "$d/libnvrtc.so.13" ] && found=$d && break
done
if [ -n "$found" ]; then
  echo "$found"
  exit 0
fi
echo "scripts/nvrtc.sh: could not install nvidia-cuda-nvrtc==13.0.* from PyPI, and found no libnvrtc.so.13 installed" >&2
exit 1
