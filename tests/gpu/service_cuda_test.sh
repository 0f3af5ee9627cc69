#!/usr/bin/env bash
# The service on cuda:0 gives exactly `layerskip generate --device cuda:0`'s ids per stream:
#   1. layerskip-coordinator --device cuda:0 on loopback, 16 concurrent streams (layerskip client), each
#      stream's ids == `layerskip generate --device cuda:0` of the same prompt (self-speculative, E=6 d=4,
#      and autoregressive);
#   2. a 2-stage pipeline whose two workers both use --device cuda:0 gives the same ids.
# Skipped (exit 0, "SKIP") when there is no GPU. ctest label `gpu` (tests/gpu/CMakeLists.txt).
# LAYERSKIP_TEST_DEVICE=cpu runs the same checks on the CPU (how the script itself is tested without a GPU).
#   tests/gpu/service_cuda_test.sh BIN_DIR SOURCE_DIR
set -uo pipefail
bin="$1"
src="$2"
model="$src/models/layerskip-demo"
device="${LAYERSKIP_TEST_DEVICE:-cuda:0}"
if [[ "$device" == cuda* ]] && { ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; }; then
  echo "SKIP: no GPU (nvidia-smi)"
  exit 0
fi
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
failures=0
passed=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
ok() { passed=$((passed + 1)); }

# Free loopback ports.
read -r p0 p1 p2 <<<"$(python3 - <<'PY'
import socket
socks = [socket.socket() for _ in range(3)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])
for s in socks: s.close()
PY
)"
wait_for() {  # wait_for FILE PATTERN SECONDS
  for _ in $(seq 1 $(($3 * 10))); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  return 1
}

n=16
prompts=()
for i in $(seq 0 $((n - 1))); do  # mixed lengths: 1 .. 46 ids
  prompts+=("$(python3 -c "print(','.join(str(7 + (i * 131 + j * 17) % 4000) for i in [$i] for j in range(1 + 3 * $i)))")")
done
modes=("--mode self-speculative --exit-layer 6 --speculations 4" "--mode autoregressive")

# The reference: layerskip generate --device $device, one prompt at a time.
t0=$(date +%s.%N)
for m in 0 1; do
  for i in $(seq 0 $((n - 1))); do
    # shellcheck disable=SC2086
    "$bin/layerskip" generate --model "$model" --device "$device" --prompt-ids "${prompts[$i]}" --max-tokens 48 \
      --ignore-eos --json ${modes[$m]} >"$tmp/want.$m.$i.json" 2>"$tmp/want.err" || fail "generate $m $i: $(cat "$tmp/want.err")"
  done
done
echo "reference: $((2 * n)) generate runs in $(python3 -c "import time; print(round(time.time() - $t0, 1))") s"

run_streams() {  # run_streams PORT TAG MODE: 16 concurrent clients; their ids vs the reference
  local port="$1" tag="$2" m="$3" cp=()
  for i in $(seq 0 $((n - 1))); do
    # shellcheck disable=SC2086
    "$bin/layerskip-client" --server "127.0.0.1:$port" --prompt-ids "${prompts[$i]}" --max-tokens 48 --ignore-eos \
      --json --timeout 300 ${modes[$m]} >"$tmp/$tag.$m.$i.json" 2>"$tmp/$tag.$m.$i.err" &
    cp+=($!)
  done
  local bad=0
  for i in $(seq 0 $((n - 1))); do wait "${cp[$i]}" || { bad=1; fail "$tag stream $i: $(cat "$tmp/$tag.$m.$i.err")"; }; done
  ((bad)) && return
  python3 - "$tmp" "$tag" "$m" "$n" <<'PY' && ok || fail "$tag mode $m: streams differ from layerskip generate --device $device"
import json, sys
tmp, tag, m, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
bad = 0
for i in range(n):
    want = json.load(open(f"{tmp}/want.{m}.{i}.json"))["ids"]
    got = json.load(open(f"{tmp}/{tag}.{m}.{i}.json"))["ids"]
    if want != got or len(got) != 48:
        bad += 1
        print(f"stream {i}: want {want[:12]}... got {got[:12]}...")
sys.exit(1 if bad else 0)
PY
}

# 1. The in-process engine on cuda:0.
"$bin/layerskip-coordinator" --model "$model" --device "$device" --listen "127.0.0.1:$p0" --num-slots 16 \
  --max-batch-size 16 --speculation-batch-threshold 0 --calibration off >"$tmp/coord.log" 2>&1 &
pids+=($!)
if wait_for "$tmp/coord.log" "layerskip-coordinator: serving" 120; then
  ok
  t0=$(date +%s.%N)
  run_streams "$p0" local 0
  run_streams "$p0" local 1
  echo "service on $device: 2 x $n streams in $(python3 -c "import time; print(round(time.time() - $t0, 1))") s"
else
  fail "the coordinator on $device did not start: $(tail -5 "$tmp/coord.log")"
fi
kill "${pids[-1]}" 2>/dev/null
wait "${pids[-1]}" 2>/dev/null  # its port is reused below

# 2. Two pipeline stages, both on cuda:0.
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$tmp/token"
for port in "$p1" "$p2"; do
  "$bin/layerskip-worker" --listen "127.0.0.1:$port" --device "$device" --token-file "$tmp/token" >"$tmp/worker.$port.log" 2>&1 &
  pids+=($!)
  wait_for "$tmp/worker.$port.log" listening 60 || fail "worker on $port: $(tail -5 "$tmp/worker.$port.log")"
done
"$bin/layerskip-coordinator" --model "$model" --listen "127.0.0.1:$p0" --workers "127.0.0.1:$p1,127.0.0.1:$p2" \
  --cluster-token-file "$tmp/token" --stages 0-5,6-11 --default-exit-layer 6 --num-slots 16 --max-batch-size 16 \
  --speculation-batch-threshold 0 \
  --calibration off >"$tmp/pipe.log" 2>&1 &
pids+=($!)
if wait_for "$tmp/pipe.log" "health SERVING" 180; then
  ok
  run_streams "$p0" pipe 0
  run_streams "$p0" pipe 1
else
  fail "the pipeline did not become SERVING: $(tail -5 "$tmp/pipe.log")"
fi
echo "$passed passed, $failures failed"
[ $failures -eq 0 ]
