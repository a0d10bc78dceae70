#!/usr/bin/env bash
# On the GPU machine, the TurboQuant attention kernels alone (scripts/gpu_check.sh runs the whole
# engine): builds the CUDA kernels standalone (src/kernels/cuda, nothing else of the
# tree), runs the correctness test, the tqlm benchmark and PyTorch's SDPA on the same shapes, and
# writes log.txt, test.txt, bench.json, sdpa.json, sass.txt and table.md to $OUT (default
# /tmp/tqlm-gpu-out).
#   scripts/gpu_check_attention.sh [--quick]      --quick: test + 32K, batch 1 and 8 only
#   CONTEXTS=4096,32768 BATCHES=8 SKIP_SDPA=1 scripts/gpu_check_attention.sh     a subset, no PyTorch
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/tqlm-gpu-out}
mkdir -p "$OUT"
BUILD=${BUILD:-/tmp/tqlm-cuda-build}
ARCH=${TQLM_CUDA_ARCH:-90a}
CONTEXTS=${CONTEXTS:-4096,8192,16384,32768,65536,131072}
BATCHES=${BATCHES:-1,8,32}
if [[ "${1:-}" == "--quick" ]]; then CONTEXTS=32768; BATCHES=1,8; fi
exec > >(tee "$OUT/log.txt") 2>&1

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv
nvcc --version | tail -2
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'

cmake -S src/kernels/cuda -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_CUDA_ARCHITECTURES="$ARCH" >/dev/null && cmake --build "$BUILD" -j 16 ||
  { echo "BUILD FAILED"; exit 1; }

echo "== correctness"
"$BUILD/cuda_attention_test" | tee "$OUT/test.txt"
test_rc=${PIPESTATUS[0]}
echo "== tqlm benchmark"
"$BUILD/cuda_attention_bench" --contexts "$CONTEXTS" --batches "$BATCHES" --json "$OUT/bench.json"
echo "== SASS instruction mix of the attention kernels (cuobjdump)"
if command -v cuobjdump >/dev/null; then
  cuobjdump -sass "$BUILD/libtqlm_cuda.a" | python3 bench/cuda_attention/sass_stats.py > "$OUT/sass.txt" || true
  grep -E "AttendSplitKernel<128, (4, 3|16, 16)>" -A2 "$OUT/sass.txt" || true
fi
if [[ "${SKIP_SDPA:-0}" != 1 ]]; then
  echo "== PyTorch SDPA"
  PYTHONUNBUFFERED=1 python3 bench/cuda_attention/sdpa_bench.py --contexts "$CONTEXTS" \
    --batches "$BATCHES" --json "$OUT/sdpa.json"
  python3 bench/cuda_attention/report.py "$OUT/bench.json" "$OUT/sdpa.json" | tee "$OUT/table.md"
fi
echo "correctness test exit code: $test_rc"
exit "$test_rc"
