#!/usr/bin/env bash
# Private Python environment for deploy/ray (tqlm replicas on Ray Serve): `ray[serve]`, the
# official `openai` client, PyYAML and httpx, every package pinned by version in
# deploy/ray/requirements.lock. Idempotent (a second run only checks).
#   scripts/ray_env.sh            create/check the venv, print its python path last
#   $(scripts/ray_env.sh --python) -m tqlm_ray ...
#   scripts/ray_env.sh --check    exit 0 when the venv is ready, 1 otherwise (installs nothing)
# The venv lives outside the repo, at $TQLM_CACHE/venv-ray (default ~/.cache/tqlm). Needs
# Python 3.10-3.13 (Ray's wheels); PYTHON=python3.11 picks another interpreter.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="${TQLM_CACHE:-$HOME/.cache/tqlm}"
VENV="$CACHE/venv-ray"
LOCK="$ROOT/deploy/ray/requirements.lock"
STAMP="$VENV/.tqlm-lock"
WANT="$(sha256sum "$LOCK" | cut -d' ' -f1)"

if [ "${1:-}" = "--check" ]; then
  [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && exit 0
  exit 1
fi
quiet=0
[ "${1:-}" = "--python" ] && quiet=1
log() { if [ $quiet -eq 1 ]; then echo "$@" >&2; else echo "$@"; fi; }

if [ ! -x "$VENV/bin/python" ]; then
  PY="${PYTHON:-python3}"
  if ! "$PY" -c 'import sys; sys.exit(0 if (3, 10) <= sys.version_info[:2] <= (3, 13) else 1)'; then
    echo "[ray] $PY is $("$PY" --version 2>&1); Ray's wheels need Python 3.10-3.13 (set PYTHON=)" >&2
    exit 1
  fi
  log "[ray] creating $VENV"
  mkdir -p "$CACHE"
  "$PY" -m venv "$VENV"
fi
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  log "[ray] installing deploy/ray/requirements.lock (ray[serve], openai, PyYAML, httpx; pinned)"
  rm -f "$STAMP"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$LOCK" >&2
  echo "$WANT" > "$STAMP"
fi
"$VENV/bin/python" -c 'import ray, ray.serve, openai, yaml, httpx' >&2
if [ $quiet -eq 1 ]; then
  echo "$VENV/bin/python"
else
  log "[ray] ok: $VENV/bin/python"
fi
