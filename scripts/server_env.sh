#!/usr/bin/env bash
# Private Python environment for the server tests and load test: the official `openai` client
# from PyPI, pinned. Idempotent (a second run only checks).
#   scripts/server_env.sh            create/check the venv, print its python path last
#   $(scripts/server_env.sh --python) script.py ...
#   scripts/server_env.sh --check    exit 0 when the venv is ready, 1 otherwise (installs nothing)
# The venv lives outside the repo, at $TQLM_CACHE/venv-server (default ~/.cache/tqlm).
set -euo pipefail
CACHE="${TQLM_CACHE:-$HOME/.cache/tqlm}"
VENV="$CACHE/venv-server"
PINS=(openai==3.51.0 websocket-client==1.9.2)
STAMP="$VENV/.tqlm-pins"
WANT="${PINS[*]}"

if [ "${1:-}" = "--check" ]; then
  [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && exit 0
  exit 1
fi
quiet=0
[ "${1:-}" = "--python" ] && quiet=1
log() { [ $quiet -eq 1 ] && echo "$@" >&2 || echo "$@"; }

if [ ! -x "$VENV/bin/python" ]; then
  log "[server] creating $VENV"
  mkdir -p "$CACHE"
  python3 -m venv "$VENV"
fi
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  log "[server] installing ${PINS[*]}"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${PINS[@]}" >&2
  echo "$WANT" > "$STAMP"
fi
"$VENV/bin/python" -c 'import openai' >&2
if [ $quiet -eq 1 ]; then
  echo "$VENV/bin/python"
else
  log "[server] ok: $VENV/bin/python"
fi
