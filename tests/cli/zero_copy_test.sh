#!/usr/bin/env bash
# Zero-copy loading through the real binary: `layerskip logits` is byte-identical with the weights used in place
# from the memory map and with private copies (--no-mmap), for bf16 and int8 weights; and loading a ~110 MB random
# bf16 checkpoint (bench/make_random_model.py --shape mid) peaks at about the weights' size (VmHWM, printed by
# `layerskip inspect`), where a private copy on top of the mapped file would need twice that.
#   tests/cli/zero_copy_test.sh BIN_DIR SOURCE_DIR
set -uo pipefail
bin="$1/layerskip"
src="$2"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

ids=0,17,230,5,99,1024,7,3000,42,11
for model in "$src/models/layerskip-demo" "$src/tests/fixtures/hf/gqa_tied"; do
  for extra in "" "--weights int8"; do
    dtype=bf16
    [[ "$model" == *gqa_tied ]] && dtype=f32 && ids=0,5,17,9,3
    # shellcheck disable=SC2086
    "$bin" logits --model "$model" --prompt-ids "$ids" --exit-layers all --dtype $dtype $extra >"$tmp/mapped" 2>"$tmp/err" \
      || fail "logits (mapped) $model $extra: $(cat "$tmp/err")"
    # shellcheck disable=SC2086
    "$bin" logits --model "$model" --prompt-ids "$ids" --exit-layers all --dtype $dtype $extra --no-mmap >"$tmp/copied" 2>"$tmp/err" \
      || fail "logits (--no-mmap) $model $extra: $(cat "$tmp/err")"
    [ -s "$tmp/mapped" ] || fail "no logits from $model $extra"
    cmp -s "$tmp/mapped" "$tmp/copied" || fail "logits differ between the mapped and copied weights: $model $extra"
  done
done

python3 "$src/bench/make_random_model.py" --shape mid --out "$tmp/mid" --tokenizer "$src/models/layerskip-demo" >/dev/null \
  || fail "make_random_model.py --shape mid"
"$bin" inspect --model "$tmp/mid" >"$tmp/inspect" 2>"$tmp/err" || fail "inspect: $(cat "$tmp/err")"
cat "$tmp/inspect"
# bytes on disk (tensor data): N (..); load: ... peak RSS X MiB
python3 - "$tmp/inspect" <<'PY' || fail "peak RSS check"
import re, sys
text = open(sys.argv[1]).read()
size = int(re.search(r"bytes on disk \(tensor data\): (\d+)", text).group(1)) / 2**20
peak = float(re.search(r"peak RSS ([\d.]+) MiB", text).group(1))
in_place = float(re.search(r"in place from the map ([\d.]+) MiB", text).group(1))
# The process without weights is ~10-20 MiB; 1.1x the weights + 40 MiB, against 2x for a copy.
bound = 1.1 * size + 40
print(f"weights {size:.1f} MiB, peak RSS {peak:.1f} MiB, bound {bound:.1f} MiB, in place {in_place:.1f} MiB")
assert in_place > 0.99 * size, "the bf16 weights were not used in place"
assert peak <= bound, f"peak RSS {peak:.1f} MiB exceeds {bound:.1f} MiB"
PY

if [ "$failures" -ne 0 ]; then echo "$failures failure(s)"; exit 1; fi
echo "zero_copy_test: all passed"
