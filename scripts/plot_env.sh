#!/usr/bin/env bash
# Private Python environment for the evaluation plots (~/.cache/tqlm/venv-plot): matplotlib
# and its dependencies from PyPI at pinned versions, installed once. Prints the python path.
#   PY=$(scripts/plot_env.sh)
set -euo pipefail
CACHE="${TQLM_CACHE:-$HOME/.cache/tqlm}"
VENV="$CACHE/venv-plot"
if ! "$VENV/bin/python" -c "import matplotlib, numpy" 2>/dev/null; then
  echo "[plot_env] creating $VENV (matplotlib 3.9.2, once)" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --only-binary=:all: \
    matplotlib==3.9.2 numpy==2.4.6 contourpy==1.3.3 cycler==0.12.1 fonttools==4.60.1 \
    kiwisolver==1.4.9 packaging==25.0 pillow==11.3.0 pyparsing==3.2.5 \
    python-dateutil==2.9.0.post0 six==1.17.0 >&2
fi
echo "$VENV/bin/python"
