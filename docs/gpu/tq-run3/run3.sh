#!/usr/bin/env bash
# tq-run3: op test + speed (new and baseline binaries, same machine) + profile + check.
set -uo pipefail
D=/tmp/tq; mkdir -p $D; tar xzf .gpu-carry/pack.tgz -C $D; cp .gpu-carry/tqlm_base $D/bin/
t() { LD_LIBRARY_PATH="$D/lib" "$@"; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
if [[ " ${STEPS:-test} " == *" test "* ]]; then
  t $D/bin/cuda_backend_test > $OUT/ops_test.txt 2>&1; echo "cuda_backend_test exit $?"
  grep -E "FAIL|compressed|rel err|checks" $OUT/ops_test.txt | tail -30
fi
python3 $D/repo/scripts/gpu_gguf_random.py fill $D/skel/qwen.skel /tmp/qwen.gguf > /dev/null
for b in ${BINS:-tqlm tqlm_base}; do
  echo "== $b"
  t $D/bin/$b bench e2e -m /tmp/qwen.gguf --device cuda --ctx 512 32768 --kv f16/f16 auto tq4/tq4 \
    --prefill 2048 -b 2048 2>&1 | grep -v "^loading" | tee $OUT/speed-$b.txt
done
if [[ -n "${PROF:-}" ]]; then
  for kv in $PROF; do
    echo "== profile $kv 32K"
    TQLM_CUDA_PROFILE=1 t $D/bin/tqlm bench e2e -m /tmp/qwen.gguf --device cuda --ctx 32768 --kv $kv \
      --decode 32 -b 2048 2>&1 | grep -v "^loading" | tee -a $OUT/profile.txt | tail -25
  done
fi
if [[ " ${STEPS:-test} " == *" check "* ]]; then
  python3 $D/repo/scripts/gpu_gguf_random.py fill $D/skel/smol.skel /tmp/smol.gguf > /dev/null
  t $D/bin/tqlm bench e2e -m /tmp/smol.gguf --device cuda --ctx 0 --check $D/data/prideprejudice.txt \
    --check-tokens 2048 --check-kv auto -b 256 2>&1 | grep -v "^loading" | tee $OUT/check.txt
fi
