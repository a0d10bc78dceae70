#!/usr/bin/env bash
# Packs what scripts/gpu_check.sh needs on a GPU machine that has CUDA, Python, numpy and
# PyTorch but not tqlm's build dependencies: the CUDA build's binaries (stripped), the shared
# libraries they load that such a machine lacks, GGUF skeletons of the installed models (header
# and metadata only; gpu_check.sh fills them with random weights there), the Austen text, and
# the scripts. Run from the repository root after building build-cuda/:
#   cmake -S . -B build-cuda -G Ninja -DTQLM_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90a
#   cmake --build build-cuda --target tqlm_cli cuda_backend_test
#   scripts/gpu_pack.sh OUT.tgz [PYTHON_WITH_NUMPY]
# There:  tar xzf OUT.tgz -C DIR && BIN=DIR/bin LIBS=DIR/lib SKELS=DIR/skel \
#           TEXT=DIR/data/prideprejudice.txt DIR/repo/scripts/gpu_check.sh
#   or, for the compressed GPU KV cache:  D=DIR OUT=out scripts/gpu_tq_check.sh
set -euo pipefail
out=$(realpath -m "$1")
py=${2:-python3}
build=${BUILD:-build-cuda}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp"/{bin,lib,skel,data,repo/scripts,repo/bench/cuda_backend}
cp "$build/tqlm" "$build/cuda_backend_test" "$tmp/bin/"
strip "$tmp"/bin/*
# Every library tqlm loads except the C runtime, libstdc++/libgcc (the GPU machine's own are
# newer) and the loader.
ldd "$build/tqlm" | awk '/=> \// {print $3}' |
  grep -Ev '/(libc|libm|libdl|libpthread|librt|libstdc\+\+|libgcc_s)\.so' |
  while read -r lib; do cp -L "$lib" "$tmp/lib/"; done
models=${MODELS:-$HOME/.cache/tqlm/models}
declare -A short=([SmolLM2-135M-Instruct.Q4_1]=smol [qwen2.5-coder-1.5b-instruct-q4_k_m]=qwen
                  [gemma-3-270m-q4_k_m]=gemma)
for m in "${!short[@]}"; do
  [[ -f "$models/$m.gguf" ]] && "$py" scripts/gpu_gguf_random.py skeleton "$models/$m.gguf" \
    "$tmp/skel/${short[$m]}.skel"
done
cp "$HOME/.cache/tqlm/corpus/prideprejudice.txt" "$tmp/data/"
cp scripts/gpu_check.sh scripts/gpu_tq_check.sh scripts/gpu_gguf_random.py "$tmp/repo/scripts/"
cp bench/cuda_backend/*.py "$tmp/repo/bench/cuda_backend/"
tar czf "$out" -C "$tmp" .
ls -la "$out"
