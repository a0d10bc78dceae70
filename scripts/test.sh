#!/usr/bin/env bash
# Builds (if needed) and runs the whole test suite with CTest. Set BUILD_DIR / extra cmake
# arguments to test another configuration (the CI also runs it under ASan+UBSan).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR="${BUILD_DIR:-build}"
scripts/deps.sh > /dev/null
# Everything the tests use, not only the default model: the Qwen2.5-Coder and Gemma 3 models
# (tool calls, llama.cpp goldens; ~1.3 GB once, then a hash check) and the official `openai`
# client's venv (the server tests). Tests whose inputs are missing skip, so nothing may be left
# to chance here. TQLM_TEST_DEFAULT_MODEL_ONLY=1 fetches only the default model.
if [ -n "${TQLM_TEST_DEFAULT_MODEL_ONLY:-}" ]; then
  scripts/fetch_data.sh > /dev/null
else
  scripts/fetch_data.sh --extra > /dev/null
fi
scripts/server_env.sh > /dev/null
# Ray Serve and its pinned dependencies for deploy/ray (deploy_ray skips only when this fails).
scripts/ray_env.sh > /dev/null || echo "[test] could not install Ray: the deploy_ray test will skip" >&2
# Headless Chromium for the chat page test (Debian's package; the test skips without it).
if ! command -v chromium > /dev/null; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get install -y -qq --no-install-recommends chromium > /dev/null ||
    echo "[test] could not install chromium: the chat page test will skip" >&2
fi
# The extended tokenizer golden sets (every Austen paragraph plus 3000 seeded random strings,
# ~17 MB per model, so kept in the cache rather than in git), made once by llama.cpp's own
# tokenizer (the prebuilt xllamacpp wheel, scripts/peers_env.sh) for every installed model;
# the tests then require them instead of skipping.
CACHE="${TQLM_CACHE:-$HOME/.cache/tqlm}"
need_golden=0
for pair in smollm2:SmolLM2-135M-Instruct.Q4_1.gguf smollm2-pre-llama3:SmolLM2-135M-Instruct.Q4_1.gguf \
            qwen2.5-coder:qwen2.5-coder-1.5b-instruct-q4_k_m.gguf gemma3:gemma-3-270m-q4_k_m.gguf; do
  name=${pair%%:*} model=${pair#*:}
  if [ -f "$CACHE/models/$model" ] && [ ! -f "$CACHE/golden/${name}_extended.json" ]; then need_golden=1; fi
done
if [ $need_golden -eq 1 ]; then
  echo "[test] generating the extended tokenizer golden sets with llama.cpp (once)"
  "$(scripts/peers_env.sh --python)" scripts/gen_tokenizer_golden.py --extended-only 2> /dev/null
fi
export TQLM_REQUIRE_EXTENDED_GOLDENS=1
BUILD_DIR="$BUILD_DIR" scripts/build.sh "$@"
ctest --test-dir "$BUILD_DIR" --output-on-failure -j"$(nproc)" --timeout 600
