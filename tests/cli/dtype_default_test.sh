#!/usr/bin/env bash
# --dtype defaults to the checkpoint's own (config.json torch_dtype, as transformers' torch_dtype="auto"):
# models/ are bf16, the HF fixtures gqa_tied / mha_untied f32 and sharded f16 (run as bf16 with a note).
# inspect says what a checkpoint runs as; bench reports the weights it ran; logits prove the f32 path ran.
#   tests/cli/dtype_default_test.sh BIN_DIR SOURCE_DIR
set -uo pipefail
bin="$1/layerskip"
src="$2"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export LAYERSKIP_CACHE_DIR="$tmp/cache"
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
expect_line() {  # expect_line FILE SUBSTRING WHAT
  grep -qF -- "$2" "$1" || fail "$3: expected '$2' in: $(cat "$1")"
}

for m in models/tiny-random models/layerskip-demo; do
  "$bin" inspect --model "$src/$m" >"$tmp/inspect" 2>&1 || fail "inspect $m"
  expect_line "$tmp/inspect" "runs as: bf16 (config.json torch_dtype bfloat16)" "inspect $m"
  "$bin" bench --model "$src/$m" --prompt-tokens 4 --decode-tokens 2 --threads 1 >"$tmp/bench" 2>&1 || fail "bench $m"
  expect_line "$tmp/bench" "bf16 weights" "bench $m (default)"
done
f32="$src/tests/fixtures/hf/gqa_tied"
"$bin" inspect --model "$f32" >"$tmp/inspect" 2>&1 || fail "inspect gqa_tied"
expect_line "$tmp/inspect" "runs as: f32 (config.json torch_dtype float32)" "inspect gqa_tied"
"$bin" bench --model "$f32" --prompt-tokens 4 --decode-tokens 2 --threads 1 >"$tmp/bench" 2>&1 || fail "bench gqa_tied"
expect_line "$tmp/bench" "f32 weights" "bench f32 checkpoint, default dtype"
"$bin" bench --model "$f32" --prompt-tokens 4 --decode-tokens 2 --threads 1 --dtype bf16 >"$tmp/bench" 2>&1 || fail "bench --dtype bf16"
expect_line "$tmp/bench" "bf16 weights" "bench f32 checkpoint, --dtype bf16 overrides"

# logits: the default equals --dtype f32 bit for bit and differs from --dtype bf16 (the weights really are f32).
for d in auto f32 bf16; do
  "$bin" logits --model "$f32" --prompt-ids 1,2,3,4 --exit-layers 4 --threads 1 --dtype "$d" >"$tmp/logits_$d" 2>"$tmp/err" ||
    fail "logits --dtype $d: $(cat "$tmp/err")"
done
"$bin" logits --model "$f32" --prompt-ids 1,2,3,4 --exit-layers 4 --threads 1 >"$tmp/logits_default" 2>/dev/null || fail "logits"
cmp -s "$tmp/logits_default" "$tmp/logits_f32" || fail "logits of an f32 checkpoint without --dtype differ from --dtype f32"
cmp -s "$tmp/logits_auto" "$tmp/logits_f32" || fail "logits --dtype auto differ from --dtype f32"
cmp -s "$tmp/logits_default" "$tmp/logits_bf16" && fail "logits with f32 and bf16 weights are identical: the dtype did not reach the model"

# float16: no f16 weights in the engine; bf16 with a one-line note on stderr.
f16="$src/tests/fixtures/hf/sharded"
"$bin" bench --model "$f16" --prompt-tokens 4 --decode-tokens 2 --threads 1 >"$tmp/bench" 2>"$tmp/err" || fail "bench sharded (f16)"
expect_line "$tmp/bench" "bf16 weights" "bench f16 checkpoint"
expect_line "$tmp/err" "note: config.json torch_dtype float16: float16 weights run as bf16" "f16 note"
[ "$(grep -c '^note:' "$tmp/err")" = 1 ] || fail "expected one note line: $(cat "$tmp/err")"

# A bad --dtype is one line naming the accepted values.
"$bin" generate --model "$src/models/tiny-random" --prompt-ids 1 --dtype f16 >/dev/null 2>"$tmp/err"
rc=$?
{ [ $rc = 1 ] || [ $rc = 2 ]; } || fail "--dtype f16: exit $rc"
expect_line "$tmp/err" "--dtype: 'f16' is not auto, bf16 or f32" "--dtype f16"

if [ "$failures" -gt 0 ]; then echo "$failures failure(s)"; exit 1; fi
echo "dtype default: all checks passed"
