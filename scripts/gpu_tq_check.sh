#!/usr/bin/env bash
# The compressed GPU KV cache on a GPU machine, one call: the op test (cuda_backend_test, which
# checks the compressed cache against the CPU cache), decode speed at 512 and 32K context with
# f16, the default ("auto") and tq4/tq4 KV side by side on the Qwen2.5-Coder-1.5B geometry
# (random weights), and GPU vs CPU engine with the default KV on the SmolLM2 geometry (random
# weights) and, when REAL_SMOL names the real file, on real weights. JSON and logs go to $OUT.
#   tar xzf pack.tgz -C DIR   (scripts/gpu_pack.sh)
#   D=DIR OUT=dir [REAL_SMOL=file] [STEPS="test speed check"] scripts/gpu_tq_check.sh
set -uo pipefail
D=${D:?the unpacked gpu_pack.sh tarball}
OUT=${OUT:-/tmp/tq-out}
STEPS=${STEPS:-"test speed check"}
mkdir -p "$OUT"
t() { LD_LIBRARY_PATH="$D/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$@"; }
TEXT=$D/data/prideprejudice.txt
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
if [[ " $STEPS " == *" test "* ]]; then
  t "$D/bin/cuda_backend_test" > "$OUT/ops_test.txt" 2>&1
  echo "cuda_backend_test exit $?"
  grep -E "FAIL|compressed|rel err|blocks decoded|checks" "$OUT/ops_test.txt" | tail -40
fi
for m in qwen smol; do
  [[ -f /tmp/$m.gguf ]] || python3 "$D/repo/scripts/gpu_gguf_random.py" fill "$D/skel/$m.skel" \
    /tmp/$m.gguf > /dev/null
done
if [[ " $STEPS " == *" speed "* ]]; then
  t "$D/bin/tqlm" bench e2e -m /tmp/qwen.gguf --device cuda --ctx 512 32768 \
    --kv f16/f16 auto tq4/tq4 --prefill 2048 -b 2048 2>&1 | tee "$OUT/speed-qwen.txt"
fi
if [[ " $STEPS " == *" check "* ]]; then
  files=(/tmp/smol.gguf)
  [[ -n "${REAL_SMOL:-}" ]] && files+=("$REAL_SMOL")
  for f in "${files[@]}"; do
    for kv in ${CHECK_KVS:-auto}; do
      echo "== GPU vs CPU: $(basename "$f") KV $kv"
      t "$D/bin/tqlm" bench e2e -m "$f" --device cuda --ctx 0 --check "$TEXT" \
        --check-tokens 2048 --check-kv "$kv" -b 256 2>&1 | grep -v "^loading" |
        tee -a "$OUT/check.txt"
    done
  done
fi
