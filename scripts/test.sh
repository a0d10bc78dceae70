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
# Headless Chromium for the chat page test (Debian's package; the test skips without it).
if ! command -v chromium > /dev/null; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get install -y -qq --no-install-recommends chromium > /dev/null ||
    echo "[test] could not install chromium: the chat page test will skip" >&2
fi
BUILD_DIR="$BUILD_DIR" scripts/build.sh "$@"
ctest --test-dir "$BUILD_DIR" --output-on-failure -j"$(nproc)" --timeout 600
