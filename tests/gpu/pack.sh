#!/usr/bin/env bash
# Builds, here (CUDA compiles without a GPU), what tests/gpu/run.sh runs on the device machine, and packs it
# for a machine that has the CUDA driver and Python (torch, transformers, nvidia-nccl-cu13) but none of this
# project's build dependencies (abseil, gRPC, protobuf, ...):
#   bin/  the GPU test binaries of tests/gpu/gpu_tests.txt (those built), layerskip, layerskip-client,
#         layerskip-coordinator, layerskip-worker, layerskip-loadgen, cuda_bench; stripped
#   lib/  every shared library they load except the C runtime, the GPU driver (libcuda) and libnccl (218 MB;
#         run.sh finds the device image's nvidia/nccl/lib)
# then compresses it to DIR.tar.xz (the file to carry: it must stay under 60 MiB) and prints its size. Models,
# Python scripts and run.sh itself travel with the working tree (tracked files).
#   tests/gpu/pack.sh [DIR] [--arch 90] [--build-dir build-gpu] [--no-build]      (DIR default: gpu-pack)
# Then the device tool:  run(command="tests/gpu/run.sh --prebuilt gpu-pack", carry=["gpu-pack.tar.xz"])
set -euo pipefail
cd "$(dirname "$0")/../.."
DIR=gpu-pack
ARCH=90
BUILD_DIR=build-gpu
BUILD=1
while [ $# -gt 0 ]; do
  case "$1" in
    --arch) ARCH="$2"; shift ;;
    --build-dir) BUILD_DIR="$2"; shift ;;
    --no-build) BUILD=0 ;;
    -*) echo "pack.sh: unknown flag '$1'" >&2; exit 2 ;;
    *) DIR="$1" ;;
  esac
  shift
done
TOOLS="layerskip layerskip-client layerskip-coordinator layerskip-worker layerskip-loadgen cuda_bench"
TESTS=$(grep -vE '^\s*(#|$)' tests/gpu/gpu_tests.txt | awk '{print $1}' | grep -v '\.sh$')  # scripts travel in the tree
if [ "$BUILD" = 1 ]; then
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DLAYERSKIP_CUDA=ON \
    -DCMAKE_CUDA_ARCHITECTURES="$ARCH" >/dev/null
  known=$(cmake --build "$BUILD_DIR" --target help | sed -n 's/^\([A-Za-z0-9_.-]*\): .*/\1/p')
  targets=""
  for t in $TOOLS $TESTS; do
    if grep -qx "$t" <<< "$known"; then targets="$targets $t"; else echo "pack.sh: WARNING: no target $t (not packed)"; fi
  done
  # shellcheck disable=SC2086
  cmake --build "$BUILD_DIR" --target $targets -j "$(nproc)"
fi
rm -rf "$DIR" "$DIR.tar.xz"
mkdir -p "$DIR/bin" "$DIR/lib"
for b in $TOOLS $TESTS; do
  if [ -x "$BUILD_DIR/bin/$b" ]; then
    cp "$BUILD_DIR/bin/$b" "$DIR/bin/"
    strip --strip-unneeded "$DIR/bin/$b"
  else
    echo "pack.sh: WARNING: $BUILD_DIR/bin/$b not built (not packed)"
  fi
done
# Every library the binaries load except the C runtime, the GPU driver and NCCL.
for b in "$DIR"/bin/*; do ldd "$b"; done | awk '$3 ~ /^\// {print $3}' | sort -u |
  grep -Ev '/(libc|libm|libdl|libpthread|librt|ld-linux-x86-64|libcuda|libnccl)\.so' | while read -r lib; do
  cp -L "$lib" "$DIR/lib/"
  strip --strip-unneeded "$DIR/lib/$(basename "$lib")" 2>/dev/null || true
done
tar -C "$(dirname "$DIR")" -cf - "$(basename "$DIR")" | xz -9 -T"$(nproc)" > "$DIR.tar.xz"
size=$(stat -c %s "$DIR.tar.xz")
echo "packed $(ls "$DIR/bin" | wc -l) binaries ($(ls "$DIR/bin" | tr '\n' ' ')) and $(ls "$DIR/lib" | wc -l) libraries:" \
  "$DIR $(du -sh "$DIR" | cut -f1), $DIR.tar.xz $((size / 1048576)) MiB ($size bytes)"
if [ "$size" -ge $((60 * 1048576)) ]; then
  echo "pack.sh: $DIR.tar.xz is over 60 MiB: too big to carry" >&2
  exit 1
fi
