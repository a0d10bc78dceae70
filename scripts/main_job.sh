#!/usr/bin/env bash
# The main job on the default data: the codec's proof table, then text from the default model.
set -euo pipefail
cd "$(dirname "$0")/.."
build/tqlm codec
