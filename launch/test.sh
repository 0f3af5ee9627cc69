#!/usr/bin/env bash
# Installs dependencies, builds, and runs every test through ctest (unit, cli, and the fuzzers when clang exists).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
launch/install-deps.sh --python  # the Python tests (train/) need torch and transformers
launch/build.sh
jobs="${LAYERSKIP_JOBS:-$(nproc)}"
status=0
(cd build && ctest --output-on-failure -j "$jobs" --timeout 600) || status=1

# libFuzzer targets: a separate clang build, each target run briefly.
if command -v clang++ >/dev/null; then
  cmake -S . -B build/fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLAYERSKIP_FUZZ=ON \
    -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ >/dev/null
  cmake --build build/fuzz -j "$jobs"
  (cd build/fuzz && ctest --output-on-failure --timeout 300) || status=1
fi
exit $status
