#!/usr/bin/env bash
# deploy/ray end to end (CTest `deploy_ray`): installs/checks the pinned Ray venv
# (scripts/ray_env.sh), runs the unit checks, then a local Ray cluster with 2 `tqlm serve`
# replicas of the default model under load (test_ray_serve.py). Skips (exit 77) only when Ray
# cannot be installed (no Python 3.10-3.13, no network on a fresh machine) or the model is
# missing (scripts/fetch_data.sh installs it). In a sanitizer build it runs only the unit checks:
# the Ray layer is Python, `tqlm serve` under ASan is server_openai's job, and 2 sanitized
# servers under load would take many minutes of CI. Usage: ray_test.sh TQLM_BINARY [SANITIZED]
set -uo pipefail
TQLM=$1
SANITIZED=${2:-0}
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"
CACHE="${TQLM_CACHE:-$HOME/.cache/tqlm}"
MODEL="$CACHE/models/SmolLM2-135M-Instruct.Q4_1.gguf"
[ -f "$MODEL" ] || { echo "model not installed: skip"; exit 77; }
if ! PY=$("$ROOT/scripts/ray_env.sh" --python); then
  echo "Ray could not be installed (scripts/ray_env.sh failed): skip"; exit 77
fi
"$PY" "$HERE/test_units.py" || exit 1
if [ "$SANITIZED" = "1" ] || [ "$SANITIZED" = "ON" ]; then
  echo "sanitizer build: unit checks only (the end-to-end run is in the Release stage)"; exit 0
fi
# Its own Ray session directory and replica logs (TMPDIR), so nothing is shared with another Ray
# on this machine and nothing is left behind.
export RAY_TMPDIR="$(mktemp -d /tmp/tqlm-ray-test.XXXXXX)"
export TMPDIR="$RAY_TMPDIR"
trap 'rm -rf "$RAY_TMPDIR"' EXIT
timeout 600 "$PY" "$HERE/test_ray_serve.py" "$TQLM" "$MODEL"
