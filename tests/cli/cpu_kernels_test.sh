#!/usr/bin/env bash
# The CPU kernel paths: `layerskip inspect` and `bench` name them (one path, or PROMPT/GENERATED);
# LAYERSKIP_CPU_KERNELS forces a path or a pair the host has, and an unknown one or one above the host is a
# one-line error with a non-zero exit.
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
# The demo model (19 MiB) fits any last-level cache: its generated tokens run on the host's best path, never
# amx; its prompts on amx where the host has it (the pair amx/BEST), else on the best path too.
best=$(sed -n 's/^cpu kernels: \([a-z0-9-]*\) .*/\1/p' <<<"$out")
want=$best
grep -qw amx_bf16 /proc/cpuinfo && want="amx/$best"
grep -q "cpu kernels for this model: $want\$" <<<"$out" || fail "inspect's per-model paths are not $want: $out"

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
grep -q "cpu kernels $want\$" <<<"$out" || fail "bench names not the paths $want: $out"

# A pair PROMPT/GENERATED is forced as one; a bad half is a one-line error naming it.
out=$(LAYERSKIP_CPU_KERNELS=avx2/avx2 "$bin/layerskip" inspect --model "$model") || fail "forced avx2/avx2 exits $?"
grep -q 'cpu kernels for this model: avx2$' <<<"$out" || fail "forced avx2/avx2 not used for the model: $out"
err=$(LAYERSKIP_CPU_KERNELS=avx2/sse9 "$bin/layerskip" inspect --model "$model" 2>&1 >/dev/null)
rc=$?
[ $rc -ne 0 ] && [ "$(wc -l <<<"$err")" -eq 1 ] && grep -q "LAYERSKIP_CPU_KERNELS='sse9' is not a CPU kernel path" <<<"$err" ||
  fail "a pair with an unknown half: want one line naming it, got: $err"
if grep -qw amx_bf16 /proc/cpuinfo; then
  out=$(LAYERSKIP_CPU_KERNELS=amx/avx2 "$bin/layerskip" bench --model "$model" --prompt-tokens 4 --decode-tokens 2) ||
    fail "bench with amx/avx2 exits $?"
  grep -q "cpu kernels amx/avx2\$" <<<"$out" || fail "forced amx/avx2 not reported by bench: $out"
fi

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
