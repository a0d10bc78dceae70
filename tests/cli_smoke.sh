#!/usr/bin/env bash
# End-to-end checks of the tqlm command on the default model: JSON statistics, compressed KV
# accounting, and clear errors (non-zero exit, one line) for bad input. Skips (exit 77) when
# the model is not installed.
set -uo pipefail
TQLM=$1
CACHE="${TQLM_CACHE:-$HOME/.cache/tqlm}"
MODEL="$CACHE/models/SmolLM2-135M-Instruct.Q4_1.gguf"
[ -f "$MODEL" ] || { echo "model not installed: skip"; exit 77; }
fail=0
check() { if eval "$2"; then echo "ok   $1"; else echo "FAIL $1"; fail=1; fi; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

# Without a calibration (an empty calibration directory via a cache of links) 'auto' is the
# built-in rule and says so with a hint.
mkdir -p "$tmp/cache/models" && ln -s "$MODEL" "$tmp/cache/models/" && ln -s "$CACHE/corpus" "$tmp/cache/"
TQLM_CACHE="$tmp/cache" "$TQLM" run -p "The capital of France is" -n 8 --temp 0 --json > "$tmp/run.json" 2> "$tmp/run.err"
check "run --json exits 0" '[ $? -eq 0 ]'
check "run --json has the statistics" "python3 - '$tmp/run.json' <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
need = ['prompt_tokens', 'generated_tokens', 'prefill_tokens_per_s', 'decode_tokens_per_s',
        'kv_cache_bytes', 'kv_cache_bytes_f16', 'text']
assert all(k in j for k in need), j
assert j['generated_tokens'] == 8 and 'Paris' in j['text'], j
# The default cache is 'auto', without a calibration the built-in rule: 8-bit keys, 4-bit values.
assert (j['cache_type_k'], j['cache_type_v']) == ('tq8', 'tq4'), j
PY"
check "auto without a calibration hints at tqlm calibrate" "grep -q 'tqlm calibrate' '$tmp/run.err'"

# A long prompt on a compressed cache: KV bytes well below f16's for the same tokens.
head -c 6000 "$CACHE/corpus/emma.txt" > "$tmp/long.txt"
"$TQLM" run -f "$tmp/long.txt" -n 4 --temp 0 --ctk tq4 --ctv tq3 --kv-buffer 64 --json > "$tmp/tq.json" 2>/dev/null
check "tq4/tq3 KV bytes <= 0.30 x f16" "python3 -c \"import json; j=json.load(open('$tmp/tq.json')); r=j['kv_cache_bytes']/j['kv_cache_bytes_f16']; print('  ratio', round(r,3)); assert r <= 0.30\""

"$TQLM" run -f "$tmp/long.txt" -c 256 > /dev/null 2> "$tmp/over.err"
check "prompt longer than context: exit 1" '[ $? -eq 1 ]'
check "  ... says how many tokens over" 'grep -q "over" "$tmp/over.err"'
"$TQLM" run --no-such-flag > /dev/null 2>&1
check "unknown flag: non-zero exit" '[ $? -ne 0 ]'
head -c 5000 "$MODEL" > "$tmp/trunc.gguf"
"$TQLM" run -m "$tmp/trunc.gguf" -p hi > /dev/null 2> "$tmp/trunc.err"
check "truncated GGUF: exit 1 with a gguf error" '[ $? -eq 1 ] && grep -q "gguf" "$tmp/trunc.err"'
"$TQLM" run -p hi --ctk tq7 > /dev/null 2> "$tmp/type.err"
check "unknown cache type: exit 1" '[ $? -eq 1 ] && grep -q "tq7" "$tmp/type.err"'
for bad in . 12XB -5GiB; do
  "$TQLM" plan --memory "$bad" > /dev/null 2> "$tmp/size.err"
  check "plan --memory '$bad': exit 1 naming the flag" '[ $? -eq 1 ] && grep -q -- "--memory" "$tmp/size.err"'
done
printf 'Hi\n/exit\n' | "$TQLM" chat -n 4 --temp 0 > /dev/null 2>&1
check "chat on piped stdin exits 0" '[ $? -eq 0 ]'
echo '{"name": "not a list"}' > "$tmp/tools_bad.json"
"$TQLM" chat --tools "$tmp/tools_bad.json" < /dev/null > /dev/null 2> "$tmp/tools.err"
check "chat --tools with a non-array file: exit 1 naming the file" '[ $? -eq 1 ] && grep -q "tools_bad.json" "$tmp/tools.err"'
cat > "$tmp/tools.json" <<'JSON'
[{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object",
  "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
JSON
printf 'Hi\n/exit\n' | "$TQLM" chat --tools "$tmp/tools.json" -n 4 --temp 0 > /dev/null 2> "$tmp/tools.err"
check "chat --tools on piped stdin exits 0 and names the convention" '[ $? -eq 0 ] && grep -q "convention" "$tmp/tools.err"'

# llama.cpp's flags with llama.cpp's meaning; unknown and out-of-range ones refused at parse
# time (before the model loads: no "loading" line), with one message naming the flag.
"$TQLM" run -ctk f16 -ctv f16 -fa on -p "The capital of France is" -n 2 --temp 0 --json > "$tmp/ll.json" 2>/dev/null
check "run -ctk f16 -ctv f16 -fa on" "python3 -c \"import json; j=json.load(open('$tmp/ll.json')); assert (j['cache_type_k'], j['cache_type_v']) == ('f16', 'f16'), j\""
for bad in "-hf user/repo" "-xyz 1" "--temp -1" "--top-p 2" "--top-k -3" "-t -3" "-b 0" "-c -5" "-n -5" "--min-p 1.5"; do
  "$TQLM" run -p hi $bad > /dev/null 2> "$tmp/bad.err"
  rc=$?
  flag=${bad%% *}
  check "run $bad: refused before loading, naming the flag" '[ $rc -ne 0 ] && ! grep -q loading "$tmp/bad.err" && grep -q -- "${flag#-}" "$tmp/bad.err"'
done
# Speculative decoding (issue 28): same text as without it, counters in --json; bad settings are
# errors that say what is wrong.
"$TQLM" run -p "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12," -n 24 --temp 0 --json > "$tmp/nospec.json" 2>/dev/null
"$TQLM" run -p "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12," -n 24 --temp 0 --json --spec ngram --spec-fixed --spec-ngram-min 1 > "$tmp/spec.json" 2>/dev/null
check "run --spec ngram: same text, proposals counted" "python3 -c \"import json; a=json.load(open('$tmp/nospec.json')); b=json.load(open('$tmp/spec.json')); assert a['text'] == b['text'] and b['spec_proposed'] > 0 and b['spec'] == 'ngram', (a, b)\""
"$TQLM" run --spec draft -p hi -n 2 > /dev/null 2> "$tmp/spec.err"
check "run --spec draft without -md is an error" '[ $? -eq 1 ] && grep -q "needs a draft model" "$tmp/spec.err"'
"$TQLM" run --spec ngram --spec-ngram-min 5 --spec-ngram-max 2 -p hi -n 2 > /dev/null 2> "$tmp/spec.err"
check "run --spec-ngram-min above max is an error" '[ $? -eq 1 ] && grep -q "spec-ngram-min" "$tmp/spec.err"'
"$TQLM" run -c 1 -n 4 -p hi > /dev/null 2> "$tmp/room.err"
check "run -c 1 -n 4: no room to generate is an error" '[ $? -eq 1 ] && grep -q "no room" "$tmp/room.err"'
"$TQLM" plan -c 16k --memory 8GiB > "$tmp/plan.out" 2>&1
check "plan -c 16k plans for 16384 tokens" 'grep -q "best fit: .* -c 16384" "$tmp/plan.out"'
"$TQLM" plan --ctx max --memory 8GiB > "$tmp/planmax.out" 2>&1
check "plan --ctx max stops at the trained context, with a best-fit line" 'grep -q "best fit: .* -c 8192 (the trained context)" "$tmp/planmax.out"'

# Models by name: `tqlm models` lists the installed ones; -m takes an alias or a file name.
"$TQLM" models > "$tmp/models.out" 2>&1
check "models lists the default model with its alias" 'grep -q "SmolLM2-135M-Instruct.Q4_1.gguf *smollm2" "$tmp/models.out"'
"$TQLM" run -m smollm2 -p "The capital of France is" -n 2 --temp 0 > /dev/null 2>&1
check "run -m smollm2 (alias)" '[ $? -eq 0 ]'
"$TQLM" run -m SmolLM2-135M-Instruct.Q4_1 -p hi -n 1 > /dev/null 2>&1
check "run -m FILE-NAME without .gguf" '[ $? -eq 0 ]'
"$TQLM" run -m no-such-model -p hi > /dev/null 2> "$tmp/name.err"
check "run -m unknown name: non-zero exit listing the installed models" '[ $? -ne 0 ] && grep -q "SmolLM2-135M-Instruct.Q4_1.gguf" "$tmp/name.err"'
if [ -f "$CACHE/models/gemma-3-270m-q4_k_m.gguf" ]; then
  "$TQLM" run -m gemma3-270m --chat -p hi -n 1 > /dev/null 2> "$tmp/gemma.err"
  check "a model without a chat template warns with --chat" 'grep -q "no chat template" "$tmp/gemma.err"'
fi
exit $fail
