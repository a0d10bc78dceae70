#!/usr/bin/env bash
# The GPU engine end to end on a GPU machine, one command: op-by-op CUDA test against scalar CPU
# references, whole models on the GPU against the CPU engine (same GGUF, same token ids), speed
# (decode at several contexts with the roofline fraction, prefill) and the PyTorch baseline on
# the same GPU, then a side-by-side table (printed last). Logs and JSON go to $OUT.
#
#   scripts/gpu_check.sh                   build here (needs the Debian -dev packages), models
#                                          from ~/.cache/tqlm/models
#   BIN=dir LIBS=dir SKELS=dir MODELS=dir TEXT=file scripts/gpu_check.sh
#       prebuilt binaries (tqlm, cuda_backend_test) and their shared libraries (a GPU machine
#       without the build dependencies); SKELS: *.skel files (scripts/gpu_gguf_random.py
#       skeleton) filled here with random weights; MODELS: real GGUFs to check too.
#   STEPS="test check speed profile torch" (default all), CTX=512,32768, PREFILL=2048, KV=f16/f16,
#   CHECK_KV=f16/f16 (the KV configuration of the GPU vs CPU check, e.g. auto)
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-/tmp/tqlm-gpu-out}
J="$OUT/json"  # bundled into results.tgz at the end
mkdir -p "$OUT" "$J"
STEPS=${STEPS:-"test check speed profile torch"}
CTX=${CTX:-512,32768}
PREFILL=${PREFILL:-2048}
KV=${KV:-f16/f16}
TEXT=${TEXT:-$HOME/.cache/tqlm/corpus/prideprejudice.txt}
WORK=${WORK:-/tmp/tqlm-gpu-work}
mkdir -p "$WORK"
exec > >(tee -a "$OUT/log.txt") 2>&1

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv || true

if [[ -z "${BIN:-}" ]]; then
  BUILD=${BUILD:-/tmp/tqlm-gpu-build}
  cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DTQLM_CUDA=ON \
    -DCMAKE_CUDA_ARCHITECTURES="${TQLM_CUDA_ARCH:-90a}" -DTQLM_BENCH=OFF >/dev/null &&
    cmake --build "$BUILD" -j"$(nproc)" --target tqlm_cli cuda_backend_test ||
    { echo "BUILD FAILED"; exit 1; }
  BIN=$BUILD
fi
# The carried libraries serve tqlm only (PyTorch keeps the machine's own).
run_bin() { LD_LIBRARY_PATH="${LIBS:+$LIBS:}${LD_LIBRARY_PATH:-}" "$@"; }
TQLM="run_bin $BIN/tqlm"
$TQLM --version || { run_bin ldd "$BIN/tqlm"; echo "tqlm does not start"; exit 1; }

rc=0
if [[ " $STEPS " == *" test "* ]]; then
  echo "== op-by-op test (cuda_backend_test)"
  run_bin "$BIN/cuda_backend_test" | tee "$OUT/ops_test.txt"
  [[ ${PIPESTATUS[0]} == 0 ]] || rc=1
fi

# Models: real files in $MODELS, random-weight ones made from $SKELS.
declare -A MODEL_FILES
for f in "${MODELS:-$HOME/.cache/tqlm/models}"/*.gguf; do
  [[ -f "$f" ]] && MODEL_FILES["real-$(basename "$f" .gguf)"]="$f"
done
for s in "${SKELS:-}"/*.skel; do
  [[ -f "$s" ]] || continue
  name=$(basename "$s" .skel)
  python3 "$ROOT/scripts/gpu_gguf_random.py" fill "$s" "$WORK/$name-random.gguf" &&
    MODEL_FILES["random-$name"]="$WORK/$name-random.gguf"
done

if [[ " $STEPS " == *" check "* ]]; then
  for key in $(printf '%s\n' "${!MODEL_FILES[@]}" | sort); do
    echo "== GPU vs CPU engine: $key"
    $TQLM bench e2e -m "${MODEL_FILES[$key]}" --device cuda --ctx 0 --check "$TEXT" \
      --check-tokens "${CHECK_TOKENS:-2048}" --check-kv "${CHECK_KV:-f16/f16}" -b 256 \
      --json > "$J/check-$key.json" ||
      { rc=1; echo "check failed: $key"; }
    python3 -c "import json,sys; c=json.load(open(sys.argv[1])).get('check',{}); print(json.dumps(c))" \
      "$J/check-$key.json" 2>/dev/null
  done
fi

if [[ " $STEPS " == *" speed "* ]]; then
  for key in $(printf '%s\n' "${!MODEL_FILES[@]}" | sort); do
    [[ "$key" == random-* || -n "${SPEED_REAL:-}" ]] || continue
    echo "== speed: $key"
    # shellcheck disable=SC2086  # lists split on purpose
    $TQLM bench e2e -m "${MODEL_FILES[$key]}" --device cuda --ctx ${CTX//,/ } \
      --kv ${KV//,/ } --prefill ${PREFILL//,/ } -b "${PREFILL_CHUNK:-2048}" \
      --json > "$J/speed-$key.json" || { rc=1; echo "speed failed: $key"; }
  done
fi

if [[ " $STEPS " == *" profile "* ]]; then
  for key in $(printf '%s\n' "${!MODEL_FILES[@]}" | sort); do
    [[ "$key" == random-* ]] || continue
    echo "== op profile of decode at 512 (TQLM_CUDA_PROFILE): $key"
    TQLM_CUDA_PROFILE=1 $TQLM bench e2e -m "${MODEL_FILES[$key]}" --device cuda --ctx 512 \
      --decode 64 2>&1 | tail -22 | tee "$J/profile-$key.txt"
  done
fi

if [[ " $STEPS " == *" torch "* && -n "${MODEL_FILES[random-qwen]:-}" ]]; then
  echo "== PyTorch baseline (transformers Qwen2, fp16, random weights, SDPA, static cache)"
  PYTHONUNBUFFERED=1 timeout "${TORCH_TIMEOUT:-240}" python3 "$ROOT/bench/cuda_backend/torch_qwen2.py" "${MODEL_FILES[random-qwen]}" \
    --ctx "$CTX" --prefill "$PREFILL,32768" ${TORCH_COMPILE:+--compile} > "$J/torch.json" ||
    echo "torch baseline failed"
fi

python3 "$ROOT/bench/cuda_backend/report.py" "$J" | tee "$OUT/table.md"
tar czf "$OUT/results.tgz" -C "$OUT" json && rm -rf "$J"
echo "gpu_check exit code: $rc"
exit $rc
