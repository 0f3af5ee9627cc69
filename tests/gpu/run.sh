#!/usr/bin/env bash
# The GPU check of issue 7, in one script for a machine with an NVIDIA GPU (H200 first): builds with CUDA
# for sm_90, prints nvidia-smi, runs every GPU test (ctest -L gpu) and the GPU benchmark. About 5-8 minutes
# (most of it the build). Logs go to $OUT when set (else build-gpu/gpu-logs/).
#   tests/gpu/run.sh [--skip-build] [--arch 90]
#   tests/gpu/run.sh --prebuilt DIR     binaries and libraries packed by tests/gpu/pack.sh on another machine
#                                       (for a GPU machine without the build dependencies); no build, no ctest
set -uo pipefail
cd "$(dirname "$0")/../.."
ARCH=90
BUILD=1
PREBUILT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --skip-build) BUILD=0 ;;
    --arch) ARCH="$2"; shift ;;
    --prebuilt) PREBUILT="$2"; BUILD=0; shift ;;
  esac
  shift
done
LOG="${OUT:-build-gpu/gpu-logs}"
mkdir -p "$LOG"
export PATH="/usr/local/cuda/bin:$PATH"
start=$(date +%s)
step() { echo "== $* ($(( $(date +%s) - start ))s)" | tee -a "$LOG/summary.txt"; }
status=0

step "device"
nvidia-smi 2>&1 | tee "$LOG/nvidia-smi.txt"
nvcc --version | tail -1 | tee -a "$LOG/summary.txt"

if [ "$BUILD" = 1 ]; then
  step "build (sm_$ARCH)"
  jobs=$(( $(nproc) > 16 ? 16 : $(nproc) ))
  if ! { cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DLAYERSKIP_CUDA=ON \
           -DCMAKE_CUDA_ARCHITECTURES="$ARCH" &&
         timeout 400 cmake --build build-gpu --target layerskip_cuda cuda_ops_test cuda_model_test cuda_bench \
           layerskip-worker $(cmake --build build-gpu --target help | grep -oE '^(nccl_link_test|ipc_pipeline_test)') \
           -j "$jobs"; } > "$LOG/build.txt" 2>&1; then
    tail -50 "$LOG/build.txt"
    step "BUILD FAILED"
    exit 1
  fi
fi

BIN=build-gpu/bin
if [ -n "$PREBUILT" ]; then
  BIN="$PREBUILT/bin"
  export LD_LIBRARY_PATH="$PWD/$PREBUILT/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export LAYERSKIP_SOURCE_DIR="$PWD" LAYERSKIP_BIN_DIR="$(cd "$BIN" && pwd)"  # the IPC test starts workers
  step "GPU tests (prebuilt)"
  for t in cuda_ops_test cuda_model_test nccl_link_test ipc_pipeline_test; do
    [ -x "$BIN/$t" ] || { echo "WARNING: $t not packed (built without NCCL?)" | tee -a "$LOG/summary.txt"; continue; }
    timeout 240 "$BIN/$t" 2>&1 | tee "$LOG/$t.txt"
    [ "${PIPESTATUS[0]}" = 0 ] || status=1
    if grep -q "SKIPPED" "$LOG/$t.txt"; then echo "WARNING: $t skipped tests (no device?)" | tee -a "$LOG/summary.txt"; fi
    grep -E "^\[  (PASSED|FAILED)" "$LOG/$t.txt" | sed "s/^/$t: /" >> "$LOG/summary.txt"
  done
else
  step "ctest -L gpu"
  (cd build-gpu && timeout 240 ctest -L gpu --output-on-failure --timeout 120) 2>&1 | tee "$LOG/ctest.txt"
  [ "${PIPESTATUS[0]}" = 0 ] || status=1
  if grep -q "Skipped\|Not Run" "$LOG/ctest.txt"; then echo "WARNING: GPU tests were skipped (no device?)" | tee -a "$LOG/summary.txt"; fi
fi

step "cuda_bench"
timeout 180 "$BIN/cuda_bench" --steps 64 --model models/layerskip-demo 2>&1 | tee "$LOG/bench.txt"
[ "${PIPESTATUS[0]}" = 0 ] || status=1

step "done, status $status"
exit $status
