#!/usr/bin/env bash
# Builds (if needed) and runs the whole test suite with CTest. Set BUILD_DIR / extra cmake
# arguments to test another configuration (the CI also runs it under ASan+UBSan).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR="${BUILD_DIR:-build}"
scripts/deps.sh > /dev/null
scripts/fetch_data.sh > /dev/null
BUILD_DIR="$BUILD_DIR" scripts/build.sh "$@"
ctest --test-dir "$BUILD_DIR" --output-on-failure -j"$(nproc)" --timeout 600
