#!/usr/bin/env bash
# Installs the Debian packages tqlm builds and tests with. Idempotent: does nothing (and needs
# no network) when every package is already present. Versions are bookworm's, recorded here;
# a newer point release of the same package is accepted.
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config git
  ccache                # 4.7.5  rebuilds in other build folders / fresh clones
  libhwy-dev            # 1.0.3  SIMD with runtime dispatch
  libfmt-dev            # 9.1.0
  libcli11-dev          # 2.1.2
  nlohmann-json3-dev    # 3.11.2
  libpcre2-dev          # 10.42  tokenizer pre-tokenizer regexes
  libcpp-httplib-dev    # 0.11.4 server
  libedit-dev           # 3.1-20221030  line editing and history in `tqlm chat`
  libgtest-dev          # 1.12.1
  libbenchmark-dev      # 1.7.1
  clang libclang-rt-14-dev  # libFuzzer targets
  python3-venv python3-pip
)
# The evaluation corpus (Jane Austen's novels) ships as R data; R extracts it at setup.
CORPUS_PACKAGES=(r-base-core r-cran-janeaustenr)

missing=()
for p in "${PACKAGES[@]}" "${CORPUS_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "[deps] all Debian packages present"
  exit 0
fi
echo "[deps] installing: ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
