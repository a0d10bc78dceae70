#!/usr/bin/env bash
# tqlm vs llama.cpp (llama-cpp-python built from its sdist into a private venv in the cache;
# the first run compiles llama.cpp, ~10 min on 2 cores) and quant.cpp, on the same model.
#   scripts/compare_llamacpp.sh [-m MODEL] [extra args of bench/compare_llamacpp.py]
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${TQLM_CACHE:-$HOME/.cache/tqlm}"
VENV="$CACHE/venv-llamacpp"
if ! "$VENV/bin/python" -c "import llama_cpp, quantcpp, numpy, gguf" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet numpy==2.4.6 quantcpp==0.13.0 gguf==0.19.0
  echo "[compare] building llama-cpp-python 0.3.36 from source (once)"
  CMAKE_ARGS="-DGGML_NATIVE=ON" "$VENV/bin/pip" install --quiet --no-binary llama-cpp-python \
    llama-cpp-python==0.3.36
fi
[ -x build/tqlm ] || scripts/build.sh
MODEL="$CACHE/models/SmolLM2-135M-Instruct.Q4_1.gguf"
if [ "${1:-}" = "-m" ]; then MODEL=$2; shift 2; fi
exec "$VENV/bin/python" bench/compare_llamacpp.py --model "$MODEL" "$@"
