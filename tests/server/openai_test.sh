#!/usr/bin/env bash
# Starts `tqlm serve` on the default model and drives it with the official `openai` client
# (tests/server/test_openai.py). Skips (exit 77) when the model or the client's venv
# (scripts/server_env.sh) is missing. Usage: openai_test.sh TQLM_BINARY [SANITIZED(0/1)]
set -uo pipefail
TQLM=$1
SANITIZED=${2:-0}
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
CACHE="${TQLM_CACHE:-$HOME/.cache/tqlm}"
MODEL="$CACHE/models/SmolLM2-135M-Instruct.Q4_1.gguf"
[ -f "$MODEL" ] || { echo "model not installed: skip"; exit 77; }
"$ROOT/scripts/server_env.sh" --check || { echo "no client venv (scripts/server_env.sh): skip"; exit 77; }
PY="$CACHE/venv-server/bin/python"
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
  rm -rf "$tmp"
}
trap cleanup EXIT

# start_server NAME ARGS...: runs tqlm serve on a free port in the background (its pid in
# $server_pid) and waits for /health; the port is in $port.
start_server() {
  local name=$1; shift
  "$TQLM" serve --port 0 -t 2 "$@" > "$tmp/$name.out" 2> "$tmp/$name.err" &
  server_pid=$!
  pids+=("$server_pid")
  port=""
  for _ in $(seq 1 600); do
    port=$(sed -n 's|.*on http://[^:]*:\([0-9]*\) .*|\1|p' "$tmp/$name.err" | head -1)
    [ -n "$port" ] && curl -sf "http://127.0.0.1:$port/health" > /dev/null 2>&1 && return 0
    kill -0 "$server_pid" 2>/dev/null || { echo "server $name died:"; cat "$tmp/$name.err"; return 1; }
    sleep 0.2
  done
  echo "server $name did not start"; cat "$tmp/$name.err"; return 1
}

fail=0
KV=(--ctk tq4 --ctv tq3)
QUESTION="What is the capital of France?"
expect=$("$TQLM" run -m "$MODEL" -c 512 -t 2 "${KV[@]}" --chat -p "$QUESTION" --temp 0 -n 12 --json \
         2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["text"], end="")')
start_server smol -m "$MODEL" -c 512 --parallel 2 --api-key test-key "${KV[@]}" \
  --max-tokens-limit 256 || exit 1
TQLM_SERVER_URL="http://127.0.0.1:$port" TQLM_API_KEY=test-key TQLM_EXPECT_CHAT="$expect" \
  "$PY" "$HERE/test_openai.py" -v || fail=1

# Graceful shutdown: SIGTERM ends the server with exit code 0.
kill -TERM "$server_pid"
wait "$server_pid"; rc=$?
if [ $rc -eq 0 ]; then echo "ok   SIGTERM: clean exit"; else echo "FAIL SIGTERM: exit $rc"; cat "$tmp/smol.err"; fail=1; fi
pids=()

# Overload: one slot, no queue: a second request gets 429 (OpenAI's rate-limit error).
start_server busy -m "$MODEL" -c 512 --parallel 1 --max-queue 0 --strict-model-name "${KV[@]}" ||
  exit 1
# A second server on a port in use is an error (no silent sharing through SO_REUSEPORT), and
# a port out of range is refused before the model loads.
if "$TQLM" serve -m "$MODEL" --port "$port" -t 1 > "$tmp/dup.out" 2> "$tmp/dup.err"; then
  echo "FAIL a second server on port $port started"; fail=1
elif grep -q "cannot listen on 127.0.0.1:$port" "$tmp/dup.err"; then
  echo "ok   port in use: $(tail -1 "$tmp/dup.err")"
else
  echo "FAIL port in use: unexpected error"; cat "$tmp/dup.err"; fail=1
fi
for bad in 99999 -1; do
  if "$TQLM" serve -m "$MODEL" --port "$bad" > "$tmp/range.out" 2> "$tmp/range.err"; then
    echo "FAIL --port $bad accepted"; fail=1
  elif grep -q "not in range" "$tmp/range.err" && ! grep -q "loading" "$tmp/range.err"; then
    echo "ok   --port $bad refused before loading: $(head -1 "$tmp/range.err")"
  else
    echo "FAIL --port $bad: unexpected output"; cat "$tmp/range.err"; fail=1
  fi
done
TQLM_SERVER_URL="http://127.0.0.1:$port" "$PY" "$HERE/test_openai_overload.py" -v || fail=1
kill -TERM "$server_pid"; wait "$server_pid"
pids=()

# Tool calls with a model that reliably calls tools (too slow under sanitizers).
QWEN="$CACHE/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
if [ "$SANITIZED" != "1" ] && [ "$SANITIZED" != "ON" ] && [ -f "$QWEN" ]; then
  start_server qwen -m "$QWEN" -c 1024 --parallel 1 || exit 1
  TQLM_SERVER_URL="http://127.0.0.1:$port" "$PY" "$HERE/test_openai_tools.py" -v || fail=1
else
  echo "skip tool-call round trip (Qwen2.5-Coder not installed, or sanitized build)"
fi
exit $fail
