#!/usr/bin/env bash
# One command from a fresh machine to generated text: installs the Debian packages, fetches
# and verifies the default model and corpus, builds tqlm, and runs the main job.
#   scripts/setup.sh [--extra]   (--extra also assembles the Qwen2.5-Coder model)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/fetch_data.sh "$@"
scripts/build.sh
scripts/main_job.sh
