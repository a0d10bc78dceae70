#!/usr/bin/env bash
# On the GPU machine, with prebuilt binaries (no build): the correctness test, then side-by-side
# timings for the fp16 split rule and the batch-1 fixed costs, all in one device call.
#   bench/cuda_attention/sweep_f16.sh BIN_DIR [HEAD_BIN_DIR]
# BIN_DIR holds cuda_attention_test and cuda_attention_bench; HEAD_BIN_DIR (optional) the bench of
# the previous commit, timed in the same rounds. Lines: "<label> <bench row>" and SDPA JSON.
#   SECTIONS="batch1 splits compressed"  which parts run (below)
#   EXTRA_BINS="label:dir ..."           more bench builds in the batch-1 rounds
#   SPLITS="1 2 4 8 16 32 64"            split counts of the sweep
# The binaries come from another machine: LD_LIBRARY_PATH may need their libcudart.
set -uo pipefail
cd "$(dirname "$0")/../.."
BIN=$1
HEAD=${2:-}
OUT=${OUT:-/tmp/tqlm-gpu-out}
mkdir -p "$OUT"
export TQLM_CODEC_TABLES=$PWD/bench/cuda_attention/codec_tables.bin  # the binaries were built elsewhere
exec > >(tee "$OUT/sweep.txt") 2>&1
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv,noheader

# bench LABEL BINARY FORMATS [flags]: prints the rows of that format, labelled.
bench() {
  local label=$1 bin=$2 fmts=$3
  shift 3
  "$bin" --formats "$fmts" --append 0 --json /dev/null "$@" |
    awk -v l="$label" '/^(f16|tq)/ {print l, $0} /failed/ {print l, $0}'
}
sdpa() {
  PYTHONUNBUFFERED=1 python3 bench/cuda_attention/sdpa_bench.py --contexts "$1" --batches "$2" \
    --json /dev/null | grep '"sdpa"' | sed 's/^/sdpa /'
}

echo "== correctness"
"$BIN/cuda_attention_test" > "$OUT/test.txt"
echo "test exit code $?; $(tail -1 "$OUT/test.txt")"

# Sections (SECTIONS, default all): batch1 = 4K/32K/128K x 1 f16, previous commit vs this one vs
# SDPA, 3 rounds; splits = fp16 split counts 1..64 over 4K/32K/128K x 1/8/32; compressed = tq4/tq3
# and tq3/tq3 at 4K/32K x 1/8, previous commit vs this one.
SECTIONS=${SECTIONS:-batch1 splits compressed}
if [[ " $SECTIONS " == *" batch1 "* ]]; then
  echo "== batch 1, side by side (3 rounds)"
  for round in 1 2 3; do
    [[ -n "$HEAD" ]] && bench "r$round/head" "$HEAD/cuda_attention_bench" f16 --contexts 4096,32768,131072 --batches 1
    for extra in ${EXTRA_BINS:-}; do  # label:dir, other builds timed in the same rounds
      bench "r$round/${extra%%:*}" "${extra#*:}/cuda_attention_bench" f16 --contexts 4096,32768,131072 --batches 1
    done
    bench "r$round/new" "$BIN/cuda_attention_bench" f16 --contexts 4096,32768,131072 --batches 1
    sdpa 4096,32768,131072 1
  done
fi
if [[ " $SECTIONS " == *" splits "* ]]; then
  echo "== fp16 split sweep"
  for s in ${SPLITS:-1 2 4 8 16 32 64}; do
    bench "splits$s" "$BIN/cuda_attention_bench" f16 --contexts 4096,32768,131072 --batches 1,8,32 --splits "$s"
  done
fi
if [[ " $SECTIONS " == *" compressed "* ]]; then
  echo "== compressed rows, previous commit vs this one"
  for round in 1 2; do
    [[ -n "$HEAD" ]] && bench "r$round/head" "$HEAD/cuda_attention_bench" tq4/tq3,tq3/tq3 --contexts 4096,32768 --batches 1,8
    bench "r$round/new" "$BIN/cuda_attention_bench" tq4/tq3,tq3/tq3 --contexts 4096,32768 --batches 1,8
  done
fi
