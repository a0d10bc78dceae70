#!/usr/bin/env bash
# Decode and prefill tokens/s of converted/requantized models against their source in the
# same run: source and candidate alternate (`tqlm bench e2e`, f16 KV, a 128-token cache, 32
# timed decode steps), so load on a shared machine hits both alike. One JSON line per candidate.
#   scripts/weights_speed.sh SOURCE.gguf CANDIDATE.gguf... >> speed.jsonl
set -euo pipefail
TQLM=${TQLM:-build/tqlm}
THREADS=${THREADS:-2}
src=$1
shift
bench() {
  "$TQLM" bench e2e -m "$1" --ctx 128 --kv f16/f16 --decode 32 --prefill 128 -t "$THREADS" \
    --json 2>/dev/null
}
for cand in "$@"; do
  s=$(bench "$src")
  c=$(bench "$cand")
  python3 - "$cand" "$s" "$c" <<'PY'
import json, sys
cand, s, c = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
print(json.dumps({"model": cand, "tok_s": c["decode"][0]["decode_tokens_per_s"],
                  "src_tok_s": s["decode"][0]["decode_tokens_per_s"],
                  "prefill_tok_s": c["prefill"][0]["tokens_per_s"],
                  "src_prefill_tok_s": s["prefill"][0]["tokens_per_s"]}))
PY
done
