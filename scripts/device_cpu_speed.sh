#!/usr/bin/env bash
# tqlm vs llama.cpp CPU prefill/decode (bench/speed_best_of.py) on another machine that has
# Python and numpy but neither tqlm's libraries nor a registry, e.g. the lent GPU machine's
# CPU, whose AMX this 2-core VM lacks. Weights are random (speed does not depend on them) in
# each model's exact geometry and tensor formats, written there from GGUF skeletons.
#   scripts/device_cpu_speed.sh pack OUT.tgz [BEFORE_TQLM]    here, after scripts/build.sh
#   D=DIR OUT=dir scripts/device_cpu_speed.sh run             there, after tar xzf OUT.tgz -C DIR
# `run` measures Qwen2.5-Coder-1.5B and SmolLM2 geometries, f16 KV, 2 threads, best of 3, with
# AMX and with TQLM_NO_AMX=1 (and the k-quant prefill engines alone by bench_matmul), and
# prints the CPU's model and AMX flags first.
set -euo pipefail
case "${1:-}" in
  pack)
    out=$(realpath -m "$2")
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    cd "$(dirname "$0")/.."
    CACHE="${TQLM_CACHE:-$HOME/.cache/tqlm}"
    PY="$CACHE/venv-llamacpp/bin/python"   # numpy + the llama_cpp package (compare_llamacpp.sh)
    mkdir -p "$tmp"/{bin,lib,skel,corpus,bench,scripts}
    cp build/tqlm "$tmp/bin/tqlm"
    [ -x build/bench_matmul ] && cp build/bench_matmul "$tmp/bin/"
    [ -n "${3:-}" ] && cp "$3" "$tmp/bin/tqlm-before"
    strip "$tmp"/bin/*
    ldd build/tqlm build/bench_matmul "$CACHE"/venv-llamacpp/lib/python3*/site-packages/llama_cpp/lib/*.so |
      awk '/=> \// {print $3}' | sort -u |
      grep -Ev '/(libc|libm|libdl|libpthread|librt|libstdc\+\+|libgcc_s)\.so|llama_cpp/lib' |
      while read -r lib; do cp -L "$lib" "$tmp/lib/"; done
    cp -r "$CACHE"/venv-llamacpp/lib/python3*/site-packages/llama_cpp "$tmp/"
    "$PY" scripts/gpu_gguf_random.py skeleton "$CACHE/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf" \
      "$tmp/skel/qwen.skel"
    "$PY" scripts/gpu_gguf_random.py skeleton "$CACHE/models/SmolLM2-135M-Instruct.Q4_1.gguf" \
      "$tmp/skel/smol.skel"
    cp "$CACHE/corpus/prideprejudice.txt" "$tmp/corpus/"
    cp bench/speed_best_of.py bench/llamacpp_env.py "$tmp/bench/"
    cp scripts/gpu_gguf_random.py "$0" "$tmp/scripts/"
    tar czf "$out" -C "$tmp" .
    ls -la "$out"
    ;;
  run)
    D=${D:?the unpacked tarball}
    OUT=${OUT:-/tmp/cpu-speed}
    mkdir -p "$OUT" /tmp/tqlm-cache/corpus
    lscpu | grep -E '^(Model name|CPU\(s\))' || true
    echo "amx flags: $(grep -o 'amx[a-z_0-9]*' /proc/cpuinfo | sort -u | tr '\n' ' ')"
    cp "$D/corpus/prideprejudice.txt" /tmp/tqlm-cache/corpus/
    export LD_LIBRARY_PATH="$D/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export PYTHONPATH="$D" TQLM_CACHE=/tmp/tqlm-cache
    bins=(--tqlm "$D/bin/tqlm")
    [ -x "$D/bin/tqlm-before" ] && bins=(--tqlm "$D/bin/tqlm-before" --tqlm "$D/bin/tqlm")
    if [ -x "$D/bin/bench_matmul" ]; then  # the prefill engines alone, AMX-INT8 vs VNNI int8
      for amx in 0 1 0 1; do
        echo "== bench_matmul, TQLM_NO_AMX=$amx"
        TQLM_NO_AMX=$amx "$D/bin/bench_matmul" --benchmark_min_time=0.3 \
          --benchmark_filter='(Q4_K|Q6_K)_qwen_(up|down)_prefill256' 2>&1 | grep '^RunShape' |
          tee -a "$OUT/bench_matmul.txt"
      done
    fi
    for m in ${MODELS:-qwen smol}; do
      [ -f "/tmp/$m.gguf" ] || python3 "$D/scripts/gpu_gguf_random.py" fill "$D/skel/$m.skel" \
        "/tmp/$m.gguf" > /dev/null
      for amx in 0 1; do
        echo "== $m, TQLM_NO_AMX=$amx"
        TQLM_NO_AMX=$amx python3 "$D/bench/speed_best_of.py" "${bins[@]}" --model "/tmp/$m.gguf" \
          --runs "${RUNS:-3}" --kv f16 --threads 2 2>&1 | grep '^\[speed\]' | tee -a "$OUT/speed-$m.txt"
      done
    done
    ;;
  *) sed -n 2,9p "$0"; exit 2 ;;
esac
