#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan+UBSan) and runs each for N seconds (default 60)
# on its corpus in fuzz/corpus/<target>/. Longer on demand: scripts/fuzz.sh 3600
# TQLM_FUZZ_SEED fixes libFuzzer's seed (CI: a failure reproduces with the same command).
# FUZZ_BUILD_DIR reuses an existing clang build configured with -DTQLM_FUZZ=ON (as CI does).
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH="${1:-60}"
BUILD="${FUZZ_BUILD_DIR:-build-fuzz}"
if [ ! -f "$BUILD/CMakeCache.txt" ]; then
  CC=clang CXX=clang++ cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTQLM_FUZZ=ON \
    -DTQLM_TESTS=OFF -DTQLM_BENCH=OFF -DTQLM_CUDA=OFF > /dev/null
fi
targets=$(cd fuzz && ls *.cc | sed 's/^/fuzz_/; s/\.cc$//')
# shellcheck disable=SC2086
cmake --build "$BUILD" -j"$(nproc)" --target $targets
for target in $targets; do
  target="$BUILD/$target"
  name=$(basename "$target"); name=${name#fuzz_}
  corpus="fuzz/corpus/$name"
  [ -d "$corpus" ] || corpus="fuzz/corpus/${name%%_*}"  # e.g. gguf_reader -> corpus/gguf
  mkdir -p "$corpus"
  work=$(mktemp -d)
  echo "[fuzz] $name for ${SECONDS_EACH}s"
  dict=()
  for d in "fuzz/$name.dict" "fuzz/${name%%_*}.dict"; do [ -f "$d" ] && { dict=(-dict="$d"); break; }; done
  log="$work.log"
  seed=()
  [ -n "${TQLM_FUZZ_SEED:-}" ] && seed=(-seed="$TQLM_FUZZ_SEED")
  if ! "$target" -max_total_time="$SECONDS_EACH" -print_final_stats=1 "${dict[@]}" "${seed[@]}" "$work" \
      "$corpus" > "$log" 2>&1; then
    # A finding: show the report (the input is saved as ./crash-* / leak-* / timeout-*).
    grep -v '^#' "$log" | tail -n 40
    rm -rf "$work" "$log"
    echo "[fuzz] $name FAILED"
    exit 1
  fi
  tail -n 3 "$log"
  rm -rf "$work" "$log"
done
