#!/usr/bin/env bash
# The one prepared GPU run (issues 7, 11, 17): every GPU test, then the figures of docs/cuda.md, in under
# 8 minutes on one H200. Writes to $OUT (else build-gpu/gpu-logs/) at most 8 files, as the device tool returns:
#   summary.txt   every step with its time, PASSED/FAILED lines, WARNINGs, the final status
#   figures.md    the measured tables (service tokens/s at 1/16/64 streams on cuda:0 and the CPU; self-
#                 speculative vs autoregressive on the GPU; Hugging Face transformers vs ours)
#   logs.tar.gz   every log (refreshed after each step, so a run cut short still returns what it did)
#
#   tests/gpu/run.sh --prebuilt gpu-pack[.tar.xz]   binaries packed here by tests/gpu/pack.sh (the device
#                                                   machine has no abseil/gRPC); no build
#   tests/gpu/run.sh [--skip-build] [--arch 90]     build here with CUDA (a machine with the build deps)
#   options: --dry-run (print the plan, run nothing)  --budget SECONDS (default 460: a step gets at most the
#            time left; one that would start with under 20 s is skipped with a WARNING)
#            --only SECTION,...  of: tests (tests/gpu/gpu_tests.txt), issue11 (service on cuda:0 at 1/16/64
#            streams, self-speculative vs autoregressive, Hugging Face transformers), issue17 (the decode
#            kernels' profile and before/after, tests/gpu/cuda_bench), new17 (issue 17's kernels that are
#            not yet the default, LAYERSKIP_CUDA_NEW_KERNELS / cuda_bench --new-kernels: the backend tests with
#            them on, then old vs new paired and interleaved); default all four, in that order;
#            issue11's parts alone: bench, hf, service
#            --bin DIR (binaries from elsewhere, e.g. build/bin)  --device D (default cuda:0; `none` passes no
#            --device flag: the same steps on the CPU build, which is how the CPU figures are taken)
#            --service-requests N (requests per stream of the service load, default 3)
#            --service-timeout S (the load's time limit, default 150 s)
#            --model-1b DIR (an existing Llama-3.2-1B-shape checkpoint; default: made by
#            bench/make_random_model.py into /tmp/ls-rand1b, in the background while the tests run)
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
ARCH=90
BUILD=1
PREBUILT=""
DRY=0
BUDGET=460
ONLY="tests,issue11,issue17,new17"
MODEL_1B=""
BIN_ARG=""
DEV=cuda:0
RPS=3
SERVICE_MAX=150
while [ $# -gt 0 ]; do
  case "$1" in
    --skip-build) BUILD=0 ;;
    --arch) ARCH="$2"; shift ;;
    --prebuilt) PREBUILT="$2"; BUILD=0; shift ;;
    --dry-run) DRY=1 ;;
    --budget) BUDGET="$2"; shift ;;
    --only) ONLY="$2"; shift ;;
    --model-1b) MODEL_1B="$2"; shift ;;
    --bin) BIN_ARG="$2"; BUILD=0; shift ;;
    --device) DEV="$2"; shift ;;
    --service-requests) RPS="$2"; shift ;;
    --service-timeout) SERVICE_MAX="$2"; shift ;;
    *) echo "run.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
  shift
done
OUTDIR="${OUT:-build-gpu/gpu-logs}"
LOG="${TMPDIR:-/tmp}/ls-gpu-logs.$$"  # every log (this run's own); tarred into $OUTDIR/logs.tar.gz after each step
DEMO=models/layerskip-demo
DEMO_E=6                    # the demo model's exit layer for the comparisons (L/2)
[ -n "$MODEL_1B" ] || MODEL_1B=/tmp/ls-rand1b
[[ ",$ONLY," == *",issue11,"* ]] && ONLY="$ONLY,bench,hf,service"  # issue11's three parts, each selectable
section() { [[ ",$ONLY," == *",$1,"* ]]; }
mkdir -p "$OUTDIR"
rm -rf "$LOG" && mkdir -p "$LOG"
: > "$OUTDIR/summary.txt"
: > "$OUTDIR/figures.md"
export PATH="/usr/local/cuda/bin:$PATH" PYTHONUNBUFFERED=1
start=$(date +%s)
elapsed() { echo $(( $(date +%s) - start )); }
left() { echo $(( BUDGET - $(elapsed) )); }
say() { echo "$*" | tee -a "$OUTDIR/summary.txt"; }
step() { say "== $* ($(elapsed)s)"; }
warn() { say "WARNING: $*"; }
fig() { echo "$*" >> "$OUTDIR/figures.md"; echo "$*"; }
save_logs() { [ "$DRY" = 1 ] || tar -C "$LOG" -czf "$OUTDIR/logs.tar.gz" . 2>/dev/null; }
status=0
fail() { status=1; say "FAILED: $*"; }

# run_to LOGNAME MAXSECONDS CMD...: runs CMD with a timeout of min(MAXSECONDS, time left - 5), output to the
# console and $LOG/LOGNAME (a *.json LOGNAME: stdout only, stderr to LOGNAME.err); skips (WARNING) when under 20 s would be left. Returns CMD's exit status.
run_to() {
  local name="$1" max="$2"; shift 2
  if [ "$DRY" = 1 ]; then echo "  [plan, <= ${max}s] $* > $name"; return 0; fi
  local t=$(( $(left) - 5 ))
  [ "$t" -gt "$max" ] && t=$max
  if [ "$t" -lt 20 ]; then warn "$name skipped: ${t}s of the ${BUDGET}s budget left"; return 124; fi
  local pre=()
  [[ "$1" == "$BIN"/* ]] && pre=(env LD_LIBRARY_PATH="$LS_LD")  # our binaries only (lsx below)
  if [[ "$name" == *.json ]]; then  # JSON on stdout: keep stderr apart
    timeout -k 5 "$t" "${pre[@]}" "$@" < /dev/null > "$LOG/$name" 2> "$LOG/$name.err"
  else
    timeout -k 5 "$t" "${pre[@]}" "$@" < /dev/null > "$LOG/$name" 2>&1
  fi
  local rc=$?
  tail -n 25 "$LOG/$name"
  [ -f "$LOG/$name.err" ] && tail -n 5 "$LOG/$name.err"
  [ "$rc" = 124 ] && warn "$name timed out after ${t}s"
  return $rc
}

# cbench LOGNAME MAXSECONDS LINES PATTERN ARGS...: runs cuda_bench ARGS (run_to), fails on "ids DIFFER", and
# copies its first LINES lines matching PATTERN (grep -E) to figures.md.
cbench() {
  local name="$1" max="$2" lines="$3" pattern="$4"; shift 4
  run_to "$name" "$max" "$BIN/cuda_bench" "$@" || fail "cuda_bench $*"
  [ "$DRY" = 1 ] && return
  grep -q "ids DIFFER" "$LOG/$name" && fail "cuda_bench $*: ids DIFFER"
  { echo; echo "### cuda_bench $*"; echo
    grep -E "$pattern" "$LOG/$name" | head -"$lines" | sed 's/^/    /'; } >> "$OUTDIR/figures.md"
  save_logs
}

# ---- binaries
if [ "$BUILD" = 1 ]; then
  step "build (sm_$ARCH)"
  jobs=$(( $(nproc) > 16 ? 16 : $(nproc) ))
  if [ "$DRY" = 0 ] && ! { cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DLAYERSKIP_CUDA=ON \
           -DCMAKE_CUDA_ARCHITECTURES="$ARCH" && timeout 400 cmake --build build-gpu -j "$jobs"; } > "$LOG/build.txt" 2>&1; then
    tail -50 "$LOG/build.txt"; step "BUILD FAILED"; save_logs; exit 1
  fi
fi
BIN=build-gpu/bin
# The packed libraries (and NCCL's) go on the loader path of OUR binaries only (lsx), never Python's: torch
# must keep its own libstdc++, cudart and protobuf.
LS_LD=""
if [ -n "$PREBUILT" ]; then
  PACK="${PREBUILT%.tar.xz}"
  if [ ! -d "$PACK" ] && [ -f "$PACK.tar.xz" ]; then
    step "unpack $PACK.tar.xz"
    [ "$DRY" = 1 ] || tar -xJf "$PACK.tar.xz" 2>/dev/null ||
      python3 -c "import sys, tarfile; tarfile.open(sys.argv[1]).extractall('.')" "$PACK.tar.xz" || { say "cannot unpack"; exit 1; }
  fi
  BIN="$PACK/bin"
  LS_LD="$(cd "$PACK" 2>/dev/null && pwd)/lib"
fi
# libnccl is not packed (218 MB): the device image's Python has nvidia-nccl-cu13.
NCCL_DIR=$(python3 -c 'import nvidia.nccl as m, os; print(os.path.join(list(m.__path__)[0], "lib"))' 2>/dev/null)
if [ -n "$NCCL_DIR" ] && [ -d "$NCCL_DIR" ]; then
  LS_LD="$LS_LD${LS_LD:+:}$NCCL_DIR"
else
  warn "no nvidia.nccl Python package: binaries linked to libnccl may not start"
fi
[ -n "$BIN_ARG" ] && BIN="$BIN_ARG"
[ -d "$BIN" ] && BIN=$(cd "$BIN" && pwd)
DEVFLAG=(--device "$DEV")
HFDEV="$DEV"
[ "$DEV" = none ] && { DEVFLAG=(); HFDEV=cpu; }
export LAYERSKIP_SOURCE_DIR="$ROOT" LAYERSKIP_BIN_DIR="$BIN"  # the IPC test starts workers from here
LS_LD="$LS_LD${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
have() { [ -x "$BIN/$1" ] || [ "$DRY" = 1 ]; }
gpu() { [ "$DRY" = 1 ] || nvidia-smi -L > /dev/null 2>&1; }  # a device to benchmark on
lsx() { LD_LIBRARY_PATH="$LS_LD" "$@"; }  # runs one of our binaries

step "device"
if [ "$DRY" = 0 ]; then
  nvidia-smi > "$LOG/nvidia-smi.txt" 2>&1; head -15 "$LOG/nvidia-smi.txt"
  nvcc --version 2>/dev/null | tail -1 | tee -a "$OUTDIR/summary.txt"
  python3 -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)' 2>&1 |
    tee -a "$OUTDIR/summary.txt"
  for b in "$BIN"/*; do lsx ldd "$b" 2>/dev/null | grep "not found" | sed "s|^|$(basename "$b"): |"; done | sort -u | tee "$LOG/ldd-missing.txt"
  [ -s "$LOG/ldd-missing.txt" ] && warn "libraries not found (above)"
fi

# The 1B-shape checkpoint (~2.5 GB of bf16 random weights): made on this machine's CPUs while the GPU tests run.
GEN_PID=""
if { section hf || section service; } && [ ! -f "$MODEL_1B/config.json" ]; then
  step "making the Llama-3.2-1B shape in $MODEL_1B (background)"
  if [ "$DRY" = 1 ]; then echo "  [plan] python3 bench/make_random_model.py --shape llama3.2-1b --out $MODEL_1B --tokenizer $DEMO"
  else
    python3 bench/make_random_model.py --shape llama3.2-1b --out "$MODEL_1B" --tokenizer "$DEMO" > "$LOG/make_1b.txt" 2>&1 &
    GEN_PID=$!
  fi
fi
save_logs

# ---- GPU tests: every binary named in tests/gpu/gpu_tests.txt (the label-`gpu` tests; pack.sh packs the same)
if section tests; then
  step "GPU tests"
  while read -r t max; do
    case "$t" in ''|'#'*) continue ;; esac
    if [[ "$t" == *.sh ]]; then
      if [ ! -f "tests/gpu/$t" ]; then warn "tests/gpu/$t not in this tree: not run"; continue; fi
      run_to "$t.txt" "${max:-120}" env LD_LIBRARY_PATH="$LS_LD" bash "tests/gpu/$t" "$BIN" "$ROOT"
      rc=$?
      [ "$DRY" = 1 ] && continue
      [ "$rc" = 0 ] || fail "$t (exit $rc)"
      grep -q "^SKIP" "$LOG/$t.txt" && warn "$t skipped (no device?)"
      tail -n 3 "$LOG/$t.txt" | sed "s/^/$t: /" >> "$OUTDIR/summary.txt"
      save_logs
      continue
    fi
    if ! have "$t"; then warn "$t not built/packed (no NCCL, or not merged yet): not run"; continue; fi
    run_to "$t.txt" "${max:-120}" "$BIN/$t" --gtest_color=no
    rc=$?
    [ "$DRY" = 1 ] && continue
    [ "$rc" = 0 ] || fail "$t (exit $rc)"
    grep -q "SKIPPED" "$LOG/$t.txt" && warn "$t skipped tests (no device?)"
    grep -E "^\[  (PASSED|FAILED)|^\[  FAILED|tests? ran" "$LOG/$t.txt" | sed "s/^/$t: /" >> "$OUTDIR/summary.txt"
    save_logs
  done < tests/gpu/gpu_tests.txt
fi
fig "# GPU run $(date -u +%Y-%m-%dT%H:%MZ): $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null | head -1)"

[ "$DRY" = 1 ] || grep -h "bf16 KV vs f32 KV" "$LOG"/cuda_model_test.txt 2>/dev/null | sed 's/^/    /' >> "$OUTDIR/figures.md"

# ---- issue 11: the service on the GPU, self-speculative vs autoregressive, Hugging Face transformers
# (b) self-speculative vs autoregressive on the GPU, demo model: paired, interleaved runs (docs/self-speculative.md).
if section bench && have layerskip; then
  step "layerskip bench --device $DEV (demo model)"
  run_to bench_demo_cuda.txt 70 "$BIN/layerskip" bench "${DEVFLAG[@]}" --model "$DEMO" --mode self-speculative \
    --prompts-file bench/code_prompts.txt --exit-layers 6-8 --speculations 2,4 --auto --repeats 3 --decode-tokens 64 \
    --calibration fresh || fail "layerskip bench --device $DEV"
  fig ""; fig "## Self-speculative vs autoregressive, demo model, $DEV (layerskip bench, all prompts)"
  [ "$DRY" = 1 ] || { sed -n '/^| E /,/^$/p' "$LOG/bench_demo_cuda.txt" | head -20
    grep -E "^auto: |^autoregressive: median|^cost model: layer" "$LOG/bench_demo_cuda.txt" | sed 's/^/    /'; } >> "$OUTDIR/figures.md"
fi
save_logs

# Ours on the GPU, greedy, fixed length, 3 runs each (separate processes): the reference ids and end-to-end
# tokens/s for the Hugging Face comparison.
PROMPT="def fibonacci(n):"
ours() {  # ours TAG MODEL TOKENS [generate flags...] -> $LOG/TAG.1.json .. TAG.3.json; prints the comma list
  local tag="$1" model="$2" n="$3" list="" i; shift 3
  for i in 1 2 3; do
    run_to "$tag.$i.json" 60 "$BIN/layerskip" generate "${DEVFLAG[@]}" --model "$model" --prompt "$PROMPT" \
      --max-tokens "$n" --ignore-eos --json --calibration off "$@" >&2 || return 1
    [ "$DRY" = 1 ] || grep -q '"ids"' "$LOG/$tag.$i.json" || return 1
    list="$list${list:+,}$LOG/$tag.$i.json"
  done
  echo "$list"
}
compare() {  # compare TAG MODEL TOKENS E TITLE: ours autoregressive + self-speculative, then transformers
  local tag="$1" model="$2" n="$3" e="$4" title="$5" ar ss
  ar=$(ours "${tag}_ar" "$model" "$n") || { fail "layerskip generate --device cuda:0 ($tag)"; return; }
  ss=$(ours "${tag}_ss" "$model" "$n" --mode self-speculative --exit-layer "$e" --speculations 4) ||
    { fail "layerskip generate --device cuda:0 --mode self-speculative ($tag)"; ss=""; }
  run_to "hf_$tag.txt" 150 python3 bench/gpu/hf_compare.py --model "$model" --ours "$ar" --ours-ss "$ss" \
    --exit-layer "$e" --max-new-tokens "$n" --dtypes bfloat16,float32 --repeats 3 --device "$HFDEV" --markdown-out "$LOG/hf_$tag.md" ||
    fail "hf_compare ($tag)"
  fig ""; fig "## $title"
  [ "$DRY" = 1 ] || cat "$LOG/hf_$tag.md" >> "$OUTDIR/figures.md" 2>/dev/null
}

# (c) Hugging Face transformers on the demo model.
if section hf && have layerskip; then
  step "Hugging Face transformers vs ours (demo model)"
  compare demo "$DEMO" 128 "$DEMO_E" "Hugging Face transformers vs ours, demo model, $DEV, 128 tokens"
fi
save_logs

# (a) the service on cuda:0, 1B shape: real gRPC on loopback, layerskip-loadgen at 1, 16, 64 streams.
if [ -n "$GEN_PID" ] && { section hf || section service; }; then
  step "waiting for the 1B-shape checkpoint"
  wait "$GEN_PID" || { fail "make_random_model.py"; tail -5 "$LOG/make_1b.txt"; }
fi
service() {  # service TAG: starts a coordinator on MODEL_1B, runs the load, stops it
  local tag="$1" port
  if [ "$DRY" = 1 ]; then
    echo "  [plan] $BIN/layerskip-coordinator --model $MODEL_1B ${DEVFLAG[*]} --listen 127.0.0.1:0 --num-slots 64 --max-batch-size 64 --max-context 512 --calibration off &"
    echo "  [plan] $BIN/layerskip-loadgen --server 127.0.0.1:PORT --concurrency 1,16,64 --requests-per-stream "$RPS" --max-tokens 64 --prompt-tokens 32"
    return 0
  fi
  lsx "$BIN/layerskip-coordinator" --model "$MODEL_1B" "${DEVFLAG[@]}" --listen 127.0.0.1:0 --num-slots 64 --max-batch-size 64 \
    --max-context 512 --calibration off < /dev/null > "$LOG/coordinator_$tag.txt" 2>&1 &
  local pid=$!
  for _ in $(seq 1 240); do
    grep -q "serving" "$LOG/coordinator_$tag.txt" && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  port=$(sed -n 's/.*listening on .*(port \([0-9]*\)).*/\1/p' "$LOG/coordinator_$tag.txt" | head -1)
  if [ -z "$port" ] || ! kill -0 "$pid" 2>/dev/null; then
    tail -5 "$LOG/coordinator_$tag.txt"; kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; return 1
  fi
  run_to "loadgen_$tag.txt" "$SERVICE_MAX" "$BIN/layerskip-loadgen" --server "127.0.0.1:$port" --concurrency 1,16,64 \
    --requests-per-stream "$RPS" --max-tokens 64 --prompt-tokens 32
  local rc=$?
  kill -TERM "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
  grep -i "warning\|error" "$LOG/coordinator_$tag.txt" | head -5
  return $rc
}
section service && step "service on $DEV, Llama-3.2-1B shape (layerskip-coordinator + layerskip-loadgen over gRPC)"
if ! section service; then :
elif have layerskip-coordinator && have layerskip-loadgen && { [ "$DRY" = 1 ] || [ -f "$MODEL_1B/config.json" ]; }; then
  service cuda || fail "service on $DEV"
  fig ""; fig "## Service tokens/s, Llama-3.2-1B shape (random bf16), $DEV, 32 prompt + 64 generated tokens per request, $RPS requests per stream"
  [ "$DRY" = 1 ] || grep -E "^\||^model" "$LOG/loadgen_cuda.txt" >> "$OUTDIR/figures.md"
else
  warn "service step not run (layerskip-coordinator / layerskip-loadgen / the 1B checkpoint missing)"
fi
save_logs

# (c) Hugging Face transformers on the 1B shape.
if section hf && have layerskip && { [ "$DRY" = 1 ] || [ -f "$MODEL_1B/config.json" ]; }; then
  step "Hugging Face transformers vs ours (1B shape)"
  compare 1b "$MODEL_1B" 64 8 "Hugging Face transformers vs ours, Llama-3.2-1B shape (random weights), $DEV, 64 tokens"
fi
save_logs


# ---- issue 17: the decode kernels (/work/notes/gpu_ready_kernels.md): profile of the 1B and 8B shapes, the
# demo model, the issue-7 kernels for the before/after rows; bf16 KV on 8B only if time is left.
if section issue17; then
step "cuda_bench (issue 17)"
if ! gpu; then warn "no GPU (nvidia-smi -L): cuda_bench (issue 17) skipped"
elif have cuda_bench; then
  kbench() {  # kbench LOGNAME MAXSECONDS ARGS...
    cbench "$1" "$2" 60 "% of measured|step / batch 1 step|tokens/s|ids (equal|DIFFER)|^step:|launch overhead|gaps between" "${@:3}"
  }
  fig ""; fig "## Decode kernels (issue 17, cuda_bench)"
  kbench cuda_bench_profile.txt 150 --profile --shapes 1b,8b --batches 1,16 --steps 64 --skip-demo
  kbench cuda_bench_demo.txt 90 --shapes none --steps 64 --model "$DEMO"
  kbench cuda_bench_legacy.txt 120 --kernels legacy --shapes 1b,8b --batches 1,16 --steps 64 --skip-demo
  if [ "$DRY" = 1 ] || [ "$(left)" -gt 150 ]; then
    kbench cuda_bench_kv_bf16.txt 120 --kv bf16 --shapes 8b --batches 1,16 --steps 64 --skip-demo
  else
    warn "cuda_bench --kv bf16 (optional) skipped: $(left)s left"
  fi
fi
fi  # issue17

# ---- issue 17, not yet the default (docs/cuda.md, "Issue 17: prepared, not yet run"): the wide GEMV plan,
# the argmax in the LM head, the one-kernel decode attention. Their op and model tests (CudaNewKernels*) ran
# with cuda_ops_test / cuda_model_test above; here the backend tests with them on, then cuda_bench old vs new
# (paired: old, new, old, new; then each option alone on the 1B shape, and the demo model's lossless check).
if section new17; then
step "issue 17 new kernels: cuda_backend_test with LAYERSKIP_CUDA_NEW_KERNELS=1"
if have cuda_backend_test; then
  run_to cuda_backend_test_new17.txt 240 env LAYERSKIP_CUDA_NEW_KERNELS=1 LD_LIBRARY_PATH="$LS_LD" \
    "$BIN/cuda_backend_test" --gtest_color=no || fail "cuda_backend_test with LAYERSKIP_CUDA_NEW_KERNELS=1"
  [ "$DRY" = 1 ] || grep -E "^\[  (PASSED|FAILED)|^\[  FAILED|tests? ran" "$LOG/cuda_backend_test_new17.txt" |
    sed "s/^/cuda_backend_test (new kernels): /" >> "$OUTDIR/summary.txt"
  [ "$DRY" = 1 ] || ! grep -q "SKIPPED" "$LOG/cuda_backend_test_new17.txt" ||
    warn "cuda_backend_test (new kernels) skipped tests (no device?)"
  save_logs
else
  warn "cuda_backend_test not built/packed: the backend with the new kernels not run"
fi
step "issue 17 new kernels: compute-sanitizer over the new op tests"
SAN=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || true)
if ! gpu; then warn "no GPU (nvidia-smi -L): compute-sanitizer (new kernels) skipped"
elif [ -z "$SAN" ] && [ "$DRY" = 0 ]; then warn "no compute-sanitizer: the new kernels not sanitized"
elif have cuda_ops_test; then
  for tool in racecheck memcheck; do  # shared-memory hazards; out-of-bounds and misaligned accesses
    run_to "sanitizer_${tool}_new17.txt" 150 env LD_LIBRARY_PATH="$LS_LD" "${SAN:-compute-sanitizer}" --tool "$tool" \
      --error-exitcode 3 "$BIN/cuda_ops_test" --gtest_color=no \
      --gtest_filter='*NewKernelsAttention*:*ArgmaxInTheHead*/bf16'
    rc=$?  # a timeout (124) is a WARNING (run_to says so): the sanitizer is slow, not the kernels wrong
    [ "$rc" = 0 ] || [ "$rc" = 124 ] || fail "compute-sanitizer --tool $tool (new kernels, exit $rc)"
    [ "$DRY" = 1 ] || grep -E "ERROR SUMMARY|^\[  (PASSED|FAILED)" "$LOG/sanitizer_${tool}_new17.txt" |
      sed "s/^/compute-sanitizer $tool (new kernels): /" >> "$OUTDIR/summary.txt"
    save_logs
  done
fi
step "issue 17 new kernels: cuda_bench old vs new"
if ! gpu; then warn "no GPU (nvidia-smi -L): cuda_bench old vs new skipped"
elif have cuda_bench; then
  nbench() {  # nbench LOGNAME MAXSECONDS ARGS...: as kbench, the step lines only
    cbench "$1" "$2" 40 "^device|% of measured|step / batch 1 step|tokens/s|ids (equal|DIFFER)|^    step:|gaps between" "${@:3}"
  }
  fig ""; fig "## Issue 17 new kernels vs the default (cuda_bench; paired runs: old, new, old, new)"
  K17=(--shapes 1b,8b --batches 1,16 --steps 64 --skip-demo)
  nbench new17_profile.txt 150 --new-kernels --profile "${K17[@]}"
  nbench new17_old_1.txt 90 "${K17[@]}"
  nbench new17_new_1.txt 90 --new-kernels "${K17[@]}"
  nbench new17_old_2.txt 90 "${K17[@]}"
  nbench new17_new_2.txt 90 --new-kernels "${K17[@]}"
  nbench new17_demo.txt 90 --new-kernels --shapes none --steps 64 --model "$DEMO"
  nbench new17_pdl.txt 90 --new-kernels --gemv-plan wide-pdl "${K17[@]}"  # GEMVs as programmatic launches
  for one in "--gemv-plan wide" "--head-argmax" "--attention fused"; do  # each option alone, 1B batch 1
    # shellcheck disable=SC2086
    nbench "new17_only_${one//[ -]/_}.txt" 60 $one --shapes 1b --batches 1 --steps 64 --skip-demo
  done
  # The graph step times side by side (us/step): the decision to flip the defaults (docs/cuda.md).
  if [ "$DRY" = 0 ]; then
    { echo; echo "### graph us/step, old vs new (lines: shape batch old_1 new_1 old_2 new_2 new+pdl)"; echo
      for shape in 1b 8b; do for b in " 1" "16"; do
        row="    llama-$shape batch $b:"
        for f in old_1 new_1 old_2 new_2 pdl; do
          v=$(grep "llama-$shape bf16 batch $b graph" "$LOG/new17_$f.txt" 2>/dev/null | sed -n 's/.*, *\([0-9.]*\) us\/step.*/\1/p' | head -1)
          row="$row ${v:-?}"
        done
        echo "$row"
      done; done; } >> "$OUTDIR/figures.md"
  fi
else
  warn "cuda_bench not built/packed: old vs new not measured"
fi
fi  # new17

step "done, status $status (figures in figures.md, logs in logs.tar.gz)"
save_logs
exit $status
