#!/usr/bin/env bash
# The main job on the default data: the default model (SmolLM2-135M-Instruct) answers a
# question about a long real document (the first three chapters of Pride and Prejudice from the
# installed corpus, ~4.8K tokens), once with the default TurboQuant-compressed KV cache and once
# with a plain f16 cache, and prints both answers, the KV cache bytes of each (the saving) and
# prefill/decode speed. The codec's proof table comes first.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${TQLM_CACHE:-$HOME/.cache/tqlm}"
BOOK="$CACHE/corpus/prideprejudice.txt"
[ -f "$BOOK" ] || { echo "main_job: $BOOK missing (run scripts/fetch_data.sh)" >&2; exit 1; }
build/tqlm codec
echo

doc=$(mktemp)
trap 'rm -f "$doc" "$doc".*.json' EXIT
QUESTION="In one or two sentences: what happens in this text?"
{
  awk '/^Chapter 1$/ {on = 1} /^Chapter 4$/ {on = 0} on' "$BOOK"
  printf '\n%s\n' "$QUESTION"
} > "$doc"
echo "Document: Pride and Prejudice, chapters 1-3 ($(wc -w < "$doc") words), then: $QUESTION"
for kv in default f16; do
  args=()
  [ "$kv" = f16 ] && args=(--ctk f16 --ctv f16)
  echo "[main job] answering with the $kv KV cache ..." >&2
  build/tqlm run --chat -f "$doc" -n 64 --temp 0 -c 8192 "${args[@]}" --json \
    2>/dev/null > "$doc.$kv.json"
done
python3 - "$doc.default.json" "$doc.f16.json" <<'EOF'
import json
import sys

runs = [json.load(open(p)) for p in sys.argv[1:]]
names = [f"default ({runs[0]['cache_type_k']}/{runs[0]['cache_type_v']})", "f16"]
for name, r in zip(names, runs):
    print(f"\n[{name}] {r['text'].strip()}")
print()
print(f"{'KV cache':24s} {'KV bytes':>12s} {'vs f16':>7s} {'prefill tok/s':>14s} {'decode tok/s':>13s}")
f16_bytes = runs[1]["kv_cache_bytes"]
for name, r in zip(names, runs):
    print(f"{name:24s} {r['kv_cache_bytes'] / 2**20:9.2f} MiB {r['kv_cache_bytes'] / f16_bytes:6.3f}x "
          f"{r['prefill_tokens_per_s']:14.1f} {r['decode_tokens_per_s']:13.1f}")
same = runs[0]["text"] == runs[1]["text"]
print(f"\n{runs[0]['prompt_tokens']} prompt tokens; the compressed cache holds them in "
      f"{runs[0]['kv_cache_bytes'] / f16_bytes:.1%} of the f16 bytes; answers "
      f"{'identical' if same else 'differ'}.")
EOF
