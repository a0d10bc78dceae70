#!/usr/bin/env bash
# Private Python environment with the peers tqlm is compared against: llama.cpp (through the
# prebuilt `xllamacpp` wheels, which bundle llama.cpp and expose its tokenizer and server
# APIs) and quant.cpp (`quantcpp`). Pinned versions; idempotent (a second run only checks).
#   scripts/peers_env.sh            create/check the venv, print its python path last
#   $(scripts/peers_env.sh --python) script.py ...
# The venv lives outside the repo, at $TQLM_CACHE/venv-peers (default ~/.cache/tqlm).
set -euo pipefail
CACHE="${TQLM_CACHE:-$HOME/.cache/tqlm}"
VENV="$CACHE/venv-peers"
PINS=(xllamacpp==2026.10.11549 quantcpp==0.13.0 numpy==2.4.6)
STAMP="$VENV/.tqlm-pins"
WANT="${PINS[*]}"

quiet=0
[ "${1:-}" = "--python" ] && quiet=1
log() { [ $quiet -eq 1 ] && echo "$@" >&2 || echo "$@"; }

if [ ! -x "$VENV/bin/python" ]; then
  log "[peers] creating $VENV"
  mkdir -p "$CACHE"
  python3 -m venv "$VENV"
fi
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  log "[peers] installing ${PINS[*]}"
  # Prebuilt wheels only: building llama.cpp from source on this machine would take an hour.
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    --only-binary=xllamacpp,quantcpp "${PINS[@]}" >&2
  echo "$WANT" > "$STAMP"
fi
"$VENV/bin/python" -c 'import xllamacpp, quantcpp' >&2
if [ $quiet -eq 1 ]; then
  echo "$VENV/bin/python"
else
  log "[peers] ok: $VENV/bin/python"
fi
