#!/usr/bin/env bash
# Installs what LayerSkip Serve needs on Debian 12, idempotently: only missing packages are installed.
#   launch/install-deps.sh            # C++ build + test dependencies (Debian packages)
#   launch/install-deps.sh --python   # also the Python packages of tests/fixtures and train/ (PyPI)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

packages=(
  build-essential cmake ninja-build pkg-config git python3 python3-pip python3-yaml openssl libssl-dev iproute2 curl
  libabsl-dev libgtest-dev libgmock-dev
  libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc
  libsentencepiece-dev nlohmann-json3-dev libpcre2-dev libboost-dev libssl-dev curl
  clang libclang-rt-14-dev
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ "${1:-}" = "--python" ]; then
  # Skip pip when everything imports already; on Debian's own python3 (PEP 668) allow the system install.
  if ! python3 -c "import torch, transformers, tokenizers, safetensors, sentencepiece, numpy, openai, kubernetes_validate" 2>/dev/null; then
    python3 -m pip install -q -r "$here/../requirements.txt" 2>/dev/null ||
      python3 -m pip install -q --break-system-packages -r "$here/../requirements.txt"
  fi
fi
echo "install-deps: ok"
