#!/usr/bin/env bash
# Builds the GPU tests and benchmark here (CUDA compiles without a GPU) and packs them, with the shared
# libraries they need beyond glibc/libstdc++, into one folder, for a GPU machine that has the CUDA driver
# but not this project's build dependencies (abseil, sentencepiece, ...). Then, on that machine:
#   tests/gpu/run.sh --prebuilt DIR
#   tests/gpu/pack.sh [DIR] [--arch 90]      (DIR default: gpu-pack)
set -euo pipefail
cd "$(dirname "$0")/../.."
DIR=gpu-pack
ARCH=90
while [ $# -gt 0 ]; do
  case "$1" in
    --arch) ARCH="$2"; shift ;;
    *) DIR="$1" ;;
  esac
  shift
done
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DLAYERSKIP_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$ARCH" >/dev/null
cmake --build build-gpu --target cuda_ops_test cuda_model_test cuda_bench layerskip layerskip-worker \
  $(cmake --build build-gpu --target help | grep -oE '^(nccl_link_test|ipc_pipeline_test)') -j "$(nproc)"
rm -rf "$DIR"
mkdir -p "$DIR/bin" "$DIR/lib"
for b in cuda_ops_test cuda_model_test cuda_bench layerskip layerskip-worker nccl_link_test ipc_pipeline_test; do
  [ -x "build-gpu/bin/$b" ] && cp "build-gpu/bin/$b" "$DIR/bin/"
done
# Every library the binaries load except the C runtime and the GPU driver.
for b in "$DIR"/bin/*; do ldd "$b"; done | awk '$3 ~ /^\// {print $3}' | sort -u |
  grep -Ev '/(libc|libm|libdl|libpthread|librt|ld-linux-x86-64|libcuda)\.so' | while read -r lib; do
  cp -L "$lib" "$DIR/lib/"
done
echo "packed $(ls "$DIR/bin" | wc -l) binaries and $(ls "$DIR/lib" | wc -l) libraries into $DIR ($(du -sh "$DIR" | cut -f1))"
