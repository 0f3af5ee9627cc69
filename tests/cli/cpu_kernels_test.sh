#!/usr/bin/env bash
# The CPU kernel path: `layerskip inspect` and `bench` name it; LAYERSKIP_CPU_KERNELS forces one the host
# has, and an unknown one or one above the host is a one-line error with a non-zero exit.
#   tests/cli/cpu_kernels_test.sh BIN_DIR SOURCE_DIR
set -uo pipefail
bin="$1"
src="$2"
model="$src/models/layerskip-demo"
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

out=$("$bin/layerskip" inspect --model "$model") || fail "inspect exits $?"
grep -Eq '^cpu kernels: (avx2|avx512|avx512-bf16|amx) ' <<<"$out" || fail "inspect names no kernel path: $out"
grep -Eq '^default threads: [1-9]' <<<"$out" || fail "inspect names no default thread count: $out"
# The demo model (19 MiB) fits any last-level cache: its path is the host's best, never amx.
best=$(sed -n 's/^cpu kernels: \([a-z0-9-]*\) .*/\1/p' <<<"$out")
grep -q "cpu kernels for this model: $best\$" <<<"$out" || fail "inspect's per-model path is not $best: $out"

out=$(LAYERSKIP_CPU_KERNELS=avx2 "$bin/layerskip" inspect --model "$model") || fail "forced avx2 exits $?"
grep -q '^cpu kernels: avx2 ' <<<"$out" || fail "forced avx2 not reported: $out"
grep -q 'cpu kernels for this model: avx2$' <<<"$out" || fail "forced avx2 not used for the model: $out"

err=$(LAYERSKIP_CPU_KERNELS=sse9 "$bin/layerskip" inspect --model "$model" 2>&1 >/dev/null)
rc=$?
[ $rc -ne 0 ] || fail "an unknown path exits 0"
[ "$(wc -l <<<"$err")" -eq 1 ] && grep -q "LAYERSKIP_CPU_KERNELS='sse9' is not a CPU kernel path" <<<"$err" ||
  fail "unknown path: want one line naming it, got: $err"

# bench names the path it runs (the host's best).
out=$("$bin/layerskip" bench --model "$model" --prompt-tokens 4 --decode-tokens 2) || fail "bench exits $?"
grep -Eq "cpu kernels (avx2|avx512|avx512-bf16|amx)$" <<<"$out" || fail "bench names no kernel path: $out"

for path in avx512 avx512-bf16 amx; do
  flag=avx512bw
  [ $path = avx512-bf16 ] && flag=avx512_bf16
  [ $path = amx ] && flag=amx_bf16
  if grep -qw $flag /proc/cpuinfo; then
    out=$(LAYERSKIP_CPU_KERNELS=$path "$bin/layerskip" inspect --model "$model") || fail "inspect with $path exits $?"
    grep -q "^cpu kernels: $path " <<<"$out" || fail "forced $path not reported: $out"
  else
    err=$(LAYERSKIP_CPU_KERNELS=$path "$bin/layerskip" generate --model "$model" --prompt hi --max-tokens 1 2>&1 >/dev/null)
    [ $? -ne 0 ] && [ "$(wc -l <<<"$err")" -eq 1 ] && grep -q "which this CPU lacks" <<<"$err" || fail "$path above this host: want a clear error, got: $err"
  fi
done

[ $failures -eq 0 ] && echo "ok" || exit 1
