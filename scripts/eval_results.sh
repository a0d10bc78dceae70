#!/usr/bin/env bash
# Regenerates the evaluation figures of docs/RESULTS.md ("Evaluation") into docs/eval/:
# per model, the Pareto table of KV configurations (tqlm and llama.cpp's quantized KV on the
# same token ids), its plot, and the needle-in-a-haystack grids and heatmaps. Every step
# appends to resumable JSONL files, so an interrupted run (Ctrl-C) continues where it stopped.
#
#   scripts/eval_results.sh                 SmolLM2 (and Qwen2.5-Coder if installed), full grids
#   QUICK=1 scripts/eval_results.sh         small grids (minutes): 2 windows, NIAH 1K/2K
#   MODELS="path.gguf ..." / NIAH_LENGTHS=1024,2048,4096,max / QWEN_NIAH_LENGTHS=... / NIAH_TRIALS=3
#   SKIP_LLAMACPP=1 (Qwen NIAH runs to its 32K context: hours on 2 cores)
# "auto/auto+s=4" is the default of `tqlm run`: tq8/tq3+s=4 on SmolLM2, tq3/tq2+s=4 on Qwen.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${TQLM_CACHE:-$HOME/.cache/tqlm}"
BUILD_DIR="${BUILD_DIR:-build}"
OUT="${OUT:-docs/eval}"
THREADS="${THREADS:-2}"
TQLM="$BUILD_DIR/tqlm"
[ -x "$TQLM" ] || BUILD_DIR="$BUILD_DIR" scripts/build.sh
mkdir -p "$OUT"

KV_PPL="${KV_PPL:-f16/f16,q8_0/q8_0,q4_0/q4_0,tq8/tq8,tq4/tq4,tq4/tq3,tq3/tq3,tq3/tq2,tq2/tq2,tq4/tq3+s=4,tq3/tq3+s=4,tq3/tq2+s=4,auto/auto+s=4,tq4/tq3+s=4+b=128,tq3/tq3+s=4+b=128,tq3/tq3+p=edges2}"
KV_NIAH="${KV_NIAH:-f16/f16,q4_0/q4_0,tq4/tq3,tq3/tq3,tq3/tq2+s=4,auto/auto+s=4,tq4/tq3+s=4+b=128}"
# Tool calling (models that call tools: Qwen2.5-Coder here); 4 sinks unless a config says +s=.
# tq3/tq2+th=2048 is the default policy on Qwen (head size 128): 4 sinks, tool-defining head kept.
KV_TOOLS="${KV_TOOLS:-f16/f16,tq3/tq2,tq3/tq2+th=2048,tq4/tq3,tq3/tq3,tq3/tq2+s=0,tq2/tq2+s=0}"
# The call rate over filler texts at long prompts, no buffer: the default against f16 and 4 sinks.
KV_TOOLS_SEEDS="${KV_TOOLS_SEEDS:-f16/f16,tq3/tq2,tq3/tq2+th=2048}"
TOOLS_RATIOS="${TOOLS_RATIOS:-0,0.25,0.5,0.75}"
if [ -n "${QUICK:-}" ]; then
  CHUNKS=${CHUNKS:-2}; NIAH_LENGTHS=${NIAH_LENGTHS:-1024,2048}; NIAH_TRIALS=${NIAH_TRIALS:-1}
  TOOLS_LENGTHS=${TOOLS_LENGTHS:-512}; TOOLS_SEED_LENGTHS=${TOOLS_SEED_LENGTHS:-1024}
  TOOLS_SEEDS=${TOOLS_SEEDS:-2}
else
  CHUNKS=${CHUNKS:-8}; NIAH_LENGTHS=${NIAH_LENGTHS:-1024,2048,4096,max}; NIAH_TRIALS=${NIAH_TRIALS:-3}
  TOOLS_LENGTHS=${TOOLS_LENGTHS:-512,1024,2048,4096}; TOOLS_SEED_LENGTHS=${TOOLS_SEED_LENGTHS:-8192}
  TOOLS_SEEDS=${TOOLS_SEEDS:-10}
fi
if [ -z "${MODELS:-}" ]; then
  MODELS="$CACHE/models/SmolLM2-135M-Instruct.Q4_1.gguf"
  QWEN="$CACHE/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
  [ -f "$QWEN" ] && MODELS="$MODELS $QWEN"
fi

PY_PLOT=$(scripts/plot_env.sh)
LLAMA_PY="$CACHE/venv-llamacpp/bin/python"
for model in $MODELS; do
  tag=$(basename "$model" .gguf)
  echo "== $tag: perplexity / KL sweep"
  common=(-m "$model" -t "$THREADS" -c 512 --chunks "$CHUNKS")
  "$TQLM" eval ppl "${common[@]}" --kv "$KV_PPL" -o "$OUT/ppl.jsonl" > /dev/null
  if [ -z "${SKIP_LLAMACPP:-}" ] && [ -x "$LLAMA_PY" ]; then
    echo "== $tag: llama.cpp quantized KV on the same token ids"
    "$LLAMA_PY" bench/eval_llamacpp.py --tqlm "$TQLM" --model "$model" --ctx 512 \
      --chunks "$CHUNKS" --threads "$THREADS" --results "$OUT/ppl.jsonl" --quantcpp
  fi
  # Every cell is in the file now: this only prints and writes the table with both engines.
  "$TQLM" eval ppl "${common[@]}" --kv "$KV_PPL" -o "$OUT/ppl.jsonl" \
    --table-md "$OUT/ppl_$tag.md" --summary "$OUT/ppl_$tag.summary.jsonl"

  echo "== $tag: needle in a haystack"
  lengths=$NIAH_LENGTHS
  case "$tag" in qwen*) lengths=${QWEN_NIAH_LENGTHS:-1024,2048,4096,8192,16384,max} ;; esac
  "$TQLM" eval niah -m "$model" -t "$THREADS" --kv "$KV_NIAH" --lengths "$lengths" \
    --trials "$NIAH_TRIALS" -o "$OUT/niah.jsonl" --table-md "$OUT/niah_$tag.md" \
    --summary "$OUT/niah_$tag.summary.jsonl"
  "$PY_PLOT" scripts/plots/niah.py "$OUT/niah_$tag" "$OUT/niah_$tag.summary.jsonl"

  case "$tag" in
    qwen*)
      echo "== $tag: tool calls over $TOOLS_SEEDS filler texts at $TOOLS_SEED_LENGTHS tokens"
      "$TQLM" eval tools -m "$model" -t "$THREADS" --kv "$KV_TOOLS_SEEDS" --ratios 0 \
        --lengths "$TOOLS_SEED_LENGTHS" --seeds "$TOOLS_SEEDS" --max-new 64 \
        -o "$OUT/tools.jsonl" > /dev/null
      echo "== $tag: tool-calling buffer cliff"
      "$TQLM" eval tools -m "$model" -t "$THREADS" --kv "$KV_TOOLS" --ratios "$TOOLS_RATIOS" \
        --lengths "$TOOLS_LENGTHS" --max-new 64 -o "$OUT/tools.jsonl" \
        --table-md "$OUT/tools_$tag.md" --summary "$OUT/tools_$tag.summary.jsonl" \
        --csv "$OUT/tools_$tag.leaderboard.csv" --cells-csv "$OUT/tools_$tag.cells.csv"
      "$PY_PLOT" scripts/plots/tools.py "$OUT/tools_$tag" "$OUT/tools_$tag.summary.jsonl"
      ;;
  esac
done
"$PY_PLOT" scripts/plots/pareto.py "$OUT/pareto" "$OUT"/ppl_*.summary.jsonl
echo "== done: $OUT"
