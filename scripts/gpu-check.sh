#!/usr/bin/env bash
# The GPU check, for a GPU machine with no Rust toolchain: the repository plus what scripts/gpu-pack.sh
# put in .gpu-check/ (a stripped release `loupe` and the reference GPT-2 and DeiT), NVRTC 13 and python3 with
# torch and transformers (for the cuBLAS and PyTorch yardsticks). In about four minutes on an H200:
#   1. `loupe selftest --device cuda`: every engine op on the CPU and the GPU compared (gradients
#      included), the GPT-2 and DeiT fixture parity (DeiT: logits, hooks, pixel gradient) on both,
#      short GEMM and forward timings;
#   2. GEMM TFLOP/s, loupe's kernels against cuBLAS (torch.matmul), f32 and bf16;
#   3. GPT-2-small forward tokens/s (random weights, 8×128), loupe against transformers + PyTorch eager;
#   4. ViT-B/16 pixel gradient images/s (random weights, batch 16), loupe against PyTorch autograd.
# Logs go to $OUT (default target/gpu-check); a short table prints last. Exit status 1 if the selftest
# failed or a step could not run.
#
#   scripts/gpu-check.sh
#
# LOUPE_BIN, LOUPE_FIXTURES and PYTHON override the binary, the fixtures and the interpreter; SIZES
# the GEMM sizes (default 2048,4096,8192); DEVICE the backend (default cuda; `cpu` rehearses the
# script on a machine without a GPU, the yardsticks then measure the CPU).
set -uo pipefail
cd "$(dirname "$0")/.."
loupe=${LOUPE_BIN:-.gpu-check/loupe}
fixtures=${LOUPE_FIXTURES:-.gpu-check/fixtures}
python=${PYTHON:-python3}
sizes=${SIZES:-2048,4096,8192}
device=${DEVICE:-cuda}
out=${OUT:-target/gpu-check}
mkdir -p "$out"
[ -x "$loupe" ] || { echo "gpu-check: no loupe binary at $loupe (run scripts/gpu-pack.sh where Rust is, and carry .gpu-check)" >&2; exit 1; }

# NVRTC 13: beside PyTorch (the nvidia-cuda-nvrtc wheel), the system's CUDA, or target/nvrtc. No
# installing: GPU machines may have no network.
nvrtc=$("$python" - 2>/dev/null <<'PY' || true
import glob, site, sys
dirs = site.getsitepackages() + [site.getusersitepackages()] + sys.path
for d in dirs:
    for hit in glob.glob(d + "/nvidia/cu13/lib/libnvrtc.so.13") + glob.glob(d + "/nvidia/cuda_nvrtc/lib/libnvrtc.so.13"):
        print(hit.rsplit("/", 1)[0]); sys.exit()
PY
)
[ -z "$nvrtc" ] && nvrtc=$(ldconfig -p 2>/dev/null | awk '/libnvrtc\.so\.13 / {print $NF; exit}' | xargs -r dirname)
[ -z "$nvrtc" ] && for d in target/nvrtc/lib/nvidia/cu13/lib /usr/local/cuda/lib64 /usr/local/cuda-13*/lib64; do
  [ -e "$d/libnvrtc.so.13" ] && nvrtc=$d && break
done
[ -n "$nvrtc" ] && export LD_LIBRARY_PATH="$nvrtc${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
echo "gpu-check: NVRTC from ${nvrtc:-nowhere (the GPU checks will say why they cannot run)}"

status=0
step() { echo "== $1"; }

step "doctor"
"$loupe" doctor 2>&1 | tee "$out/doctor.log"

step "selftest on $device"
timeout 300 "$loupe" selftest --device "$device" --fixtures "$fixtures" --report "$out/selftest.json" \
  > "$out/selftest.log" 2> "$out/selftest.err"
selftest=$?
[ $selftest -ne 0 ] && status=1
grep '^FAILED' "$out/selftest.log" | head -40
tail -3 "$out/selftest.err"

gemm_rows=()
for precision in f32 bf16; do
  step "GEMM $precision: loupe against torch.matmul"
  l=$(timeout 120 "$loupe" bench gemm --device "$device" --precision "$precision" --sizes "$sizes" 2>&1) || status=1
  t=$(timeout 120 "$python" bench/torch_gemm.py --device "$device" --precision "$precision" --sizes "$sizes" 2>&1) || status=1
  printf '%s\n-- torch\n%s\n' "$l" "$t" | tee "$out/gemm-$precision.log"
  while read -r n ours theirs; do
    gemm_rows+=("$(printf 'gemm %-5s n=%-5s  loupe %8s  torch %8s TFLOP/s  ratio %s' "$precision" "$n" "$ours" "$theirs" \
      "$(awk -v a="$ours" -v b="$theirs" 'BEGIN {printf "%.2f", a / b}')")")
  done < <(awk 'NR == FNR && $1 ~ /^[0-9]+$/ {ours[$1] = $3; next}
                $1 ~ /^[0-9]+$/ && ($1 in ours) {print $1, ours[$1], $3}' <(echo "$l") <(echo "$t"))
done

step "GPT-2-small forward: loupe against transformers + PyTorch"
model=$(mktemp -d)/gpt2-small
forward_row="forward: not measured"
if timeout 120 "$loupe" models random --preset gpt2-small --seed 0 --out "$model" > "$out/forward.log" 2>&1; then
  l=$(timeout 120 "$loupe" bench forward --model "$model" --batch 8 --seq 128 --device "$device" 2>&1) || status=1
  t=$(timeout 180 "$python" bench/torch_forward.py --model "$model" --batch 8 --seq 128 --device "$device" 2>&1) || status=1
  printf '%s\n-- torch\n%s\n' "$l" "$t" | tee -a "$out/forward.log"
  ours=$(echo "$l" | awk '$1 == "tokens/s:" {print $2}')
  theirs=$(echo "$t" | awk '$1 == "tokens/s:" {print $2}')
  [ -n "$ours" ] && [ -n "$theirs" ] && forward_row=$(printf 'forward gpt2-small 8x128  loupe %s  torch %s tokens/s  ratio %s' \
    "$ours" "$theirs" "$(awk -v a="$ours" -v b="$theirs" 'BEGIN {printf "%.2f", a / b}')")
else
  status=1
fi
rm -rf "$(dirname "$model")"

step "ViT-B/16 pixel gradient: loupe against PyTorch autograd"
model=$(mktemp -d)/vit-base
vision_row="vision: not measured"
if timeout 120 "$loupe" models random --preset vit-base --seed 0 --out "$model" > "$out/vision.log" 2>&1; then
  l=$(timeout 120 "$loupe" bench vision --model "$model" --batch 16 --grad --device "$device" 2>&1) || status=1
  t=$(timeout 180 "$python" bench/torch_vision.py --model "$model" --batch 16 --grad --device "$device" 2>&1) || status=1
  printf '%s\n-- torch\n%s\n' "$l" "$t" | tee -a "$out/vision.log"
  ours=$(echo "$l" | awk '$1 == "images/s:" {print $2}')
  theirs=$(echo "$t" | awk '$1 == "images/s:" {print $2}')
  [ -n "$ours" ] && [ -n "$theirs" ] && vision_row=$(printf 'grad(pixels) vit-base 16  loupe %s  torch %s images/s  ratio %s' \
    "$ours" "$theirs" "$(awk -v a="$ours" -v b="$theirs" 'BEGIN {printf "%.2f", a / b}')")
else
  status=1
fi
rm -rf "$(dirname "$model")"

echo
echo "================ gpu-check summary ($device) ================"
sed -n '/^loupe selftest on/,$p' "$out/selftest.log"
[ $selftest -ne 0 ] && echo "selftest exit status $selftest (details: $out/selftest.log, $out/selftest.err)"
printf '%s\n' "${gemm_rows[@]}" "$forward_row" "$vision_row"
exit $status
