#!/usr/bin/env bash
# --device on every binary: `cpu` computes as before (the same ids as no flag); a GPU the binary cannot use
# (built without CUDA, or no device on this machine) is one line on stderr naming the device and the
# reason, and exit 1, before any weights are read; a malformed device is a usage error. On a machine where
# cuda:0 works, the GPU half is left to the gpu-labelled tests.
#   tests/cli/device_test.sh BIN_DIR SOURCE_DIR
set -uo pipefail
bin="$1"
src="$2"
model="$src/models/tiny-random"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0
passed=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
ok() { passed=$((passed + 1)); }

gen=(generate --model "$model" --prompt-ids 5,6,7 --max-tokens 6 --threads 1 --json)
"$bin/layerskip" "${gen[@]}" >"$tmp/default.json" || fail "generate without --device"
"$bin/layerskip" "${gen[@]}" --device cpu >"$tmp/cpu.json" || fail "generate --device cpu"
python3 - "$tmp/default.json" "$tmp/cpu.json" <<'PY' && ok || fail "--device cpu changed the ids"
import json, sys
a, b = (json.load(open(p))["ids"] for p in sys.argv[1:3])
sys.exit(0 if a == b and len(a) == 6 else 1)
PY
"$bin/layerskip" logits --model "$model" --prompt-ids 5,6 --exit-layers 1 --device cpu >"$tmp/logits.json" \
  && grep -q '"device":"cpu"' "$tmp/logits.json" && ok || fail "logits --device cpu"

# expect_gpu_error NAME CMD...: exit 1, exactly one stderr line "NAME: cuda:0: <reason>".
expect_gpu_error() {
  local name="$1"
  shift
  "$@" >"$tmp/out" 2>"$tmp/err"
  local rc=$? lines
  lines=$(wc -l <"$tmp/err")
  if [[ $rc -eq 1 && $lines -eq 1 ]] && grep -qE "^$name: cuda:0: (this binary was built without CUDA|no CUDA device|no such device)" "$tmp/err"; then
    ok
  else
    fail "$name with --device cuda:0: rc $rc, stderr: $(cat "$tmp/err")"
  fi
}

if "$bin/layerskip" generate --model "$model" --prompt-ids 5 --max-tokens 1 --device cuda:0 >/dev/null 2>&1; then
  echo "cuda:0 works here: the no-GPU checks are skipped (the gpu-labelled tests cover it)"
else
  expect_gpu_error "layerskip generate" "$bin/layerskip" "${gen[@]}" --device cuda:0
  expect_gpu_error "layerskip bench" "$bin/layerskip" bench --model "$model" --decode-tokens 4 --device cuda:0
  expect_gpu_error "layerskip logits" "$bin/layerskip" logits --model "$model" --prompt-ids 5 --device cuda
  # No weights are read first: a model directory that does not exist still gets the device's error.
  expect_gpu_error "layerskip generate" "$bin/layerskip" generate --model "$tmp/none" --prompt-ids 5 --device cuda:0
  expect_gpu_error "layerskip-coordinator" "$bin/layerskip-coordinator" --model "$model" --listen 127.0.0.1:0 --device cuda:0
  expect_gpu_error "layerskip-worker" "$bin/layerskip-worker" --listen 127.0.0.1:0 --allow-unauthenticated --device cuda:0
fi

# A malformed device: a usage error naming the value (exit 2 for the CLI, non-zero for the servers).
"$bin/layerskip" "${gen[@]}" --device gpu >/dev/null 2>"$tmp/err"
[[ $? -eq 2 ]] && grep -q "device 'gpu' is not cpu, cuda or cuda:N" "$tmp/err" && ok || fail "--device gpu: $(cat "$tmp/err")"
"$bin/layerskip-coordinator" --model "$model" --listen 127.0.0.1:0 --device cuda:x >/dev/null 2>"$tmp/err" \
  && fail "coordinator accepted --device cuda:x" || { grep -q "device 'cuda:x'" "$tmp/err" && ok || fail "coordinator --device cuda:x: $(cat "$tmp/err")"; }
"$bin/layerskip-worker" --listen 127.0.0.1:0 --allow-unauthenticated --device tpu:0 >/dev/null 2>"$tmp/err" \
  && fail "worker accepted --device tpu:0" || { grep -q "device 'tpu:0'" "$tmp/err" && ok || fail "worker --device tpu:0: $(cat "$tmp/err")"; }
# A pipeline coordinator computes nothing: --device with --workers is refused.
"$bin/layerskip-coordinator" --model "$model" --listen 127.0.0.1:0 --workers 127.0.0.1:1 --device cuda:0 >/dev/null 2>"$tmp/err" \
  && fail "coordinator accepted --device with --workers" || { grep -q "give each worker its --device" "$tmp/err" && ok || fail "--workers + --device: $(cat "$tmp/err")"; }

echo "$passed passed, $failures failed"
[ $failures -eq 0 ]
