#!/usr/bin/env bash
# The layerskip binary on real checkpoint files: generate/inspect results, and one clear error line with a
# non-zero exit (never a crash) for every kind of bad input.
#   tests/cli/generate_test.sh BIN_DIR SOURCE_DIR
set -uo pipefail
bin_dir="$1"
bin="$bin_dir/layerskip"
src="$2"
model="$src/models/tiny-random"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export LAYERSKIP_CACHE_DIR="$tmp/cache"  # the cost model's calibration cache
failures=0
passed=0

fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
ok() { passed=$((passed + 1)); }

# expect_error SUBSTRING CMD...: exits 1 or 2 (not a signal), prints one line to stderr containing SUBSTRING.
expect_error() {
  local want="$1"; shift
  "$@" >"$tmp/out" 2>"$tmp/err"
  local rc=$?
  if [ $rc -eq 0 ] || [ $rc -gt 2 ]; then fail "exit $rc from: $* ($(head -c 300 "$tmp/err"))"; return; fi
  if ! grep -qF -- "$want" "$tmp/err"; then fail "expected '$want' in the error of: $* -- got: $(cat "$tmp/err")"; return; fi
  if [ "$(wc -l <"$tmp/err")" -ne 1 ]; then fail "expected one error line from: $* -- got: $(cat "$tmp/err")"; return; fi
  ok
}

json_field() { python3 -c "import json,sys; print(json.dumps(json.load(open(sys.argv[1]))$2))" "$1"; }

# --- generate: autoregressive vs self-speculative and early exit on the demo model
"$bin" generate --model "$model" --prompt "def main():" --max-tokens 24 --json >"$tmp/ar.json" || fail "generate autoregressive"
ar_ids=$(json_field "$tmp/ar.json" '["ids"]')
[ "$(json_field "$tmp/ar.json" '["stats"]["generated_tokens"]')" -ge 1 ] && ok || fail "no tokens generated"
for spec in "1 1" "2 4" "3 8" "2 auto"; do
  set -- $spec
  "$bin" generate --model "$model" --prompt "def main():" --max-tokens 24 --mode self-speculative \
    --exit-layer "$1" --speculations "$2" --json >"$tmp/ss.json" || { fail "generate self-speculative E=$1 d=$2"; continue; }
  [ "$(json_field "$tmp/ss.json" '["ids"]')" = "$ar_ids" ] && ok || fail "self-speculative E=$1 d=$2 ids differ from autoregressive"
  for key in rounds drafted accepted acceptance_rate tokens_per_round accepted_per_position draft_seconds verify_seconds; do
    json_field "$tmp/ss.json" "[\"stats\"][\"speculation\"][\"$key\"]" >/dev/null 2>&1 && ok || fail "missing speculation stat $key"
  done
done
# Automatic speculation (E and d chosen by the cost model, autoregressive steps where it predicts no gain)
# and the draft head's vocabulary subset: the same greedy ids; the JSON says what was chosen.
for extra in "" "--exit-layer auto --speculations auto" "--calibration off" "--draft-vocab 64" \
             "--exit-layer 2 --speculations 3 --draft-vocab 64" "--calibration fresh --max-speculations 3"; do
  "$bin" generate --model "$model" --prompt "def main():" --max-tokens 24 --mode self-speculative $extra --json \
    >"$tmp/auto.json" || { fail "generate self-speculative $extra"; continue; }
  [ "$(json_field "$tmp/auto.json" '["ids"]')" = "$ar_ids" ] && ok || fail "self-speculative $extra: ids differ from autoregressive"
done
"$bin" generate --model "$model" --prompt "def main():" --max-tokens 24 --mode self-speculative --json >"$tmp/auto.json"
python3 - "$tmp/auto.json" <<'PY' && ok || fail "automatic speculation's JSON (exit_layer, speculations, stats.policy)"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["exit_layer_requested"] == "auto" and r["speculations_requested"] == "auto", r
assert isinstance(r["exit_layer"], int) and isinstance(r["speculations"], int), r
p = r["stats"]["policy"]
assert sum(c["steps"] for c in p["choices"]) >= 1 and p["cost_model"], p
assert r["speculations"] == 0 or 1 <= r["exit_layer"] < 4, r
PY
ls "$LAYERSKIP_CACHE_DIR"/cost-*.json >/dev/null 2>&1 && ok || fail "no calibration cached under LAYERSKIP_CACHE_DIR"
"$bin" bench --model "$model" --mode self-speculative --exit-layers 2-2 --speculations 2 --repeats 2 --auto \
  --decode-tokens 8 --prompt-tokens 8 >"$tmp/bench" 2>/dev/null \
  && grep -q "predicted" "$tmp/bench" && grep -q "load average" "$tmp/bench" && grep -q "^auto:" "$tmp/bench" && ok \
  || fail "bench --mode self-speculative --auto: $(cat "$tmp/bench")"
"$bin" generate --model "$model" --prompt-ids 998,315,544 --max-tokens 5 --mode early-exit --exit-layer 2 --json >"$tmp/ee.json" \
  && [ "$(json_field "$tmp/ee.json" '["prompt_ids"]')" = "[998, 315, 544]" ] && ok || fail "early-exit with --prompt-ids"
# Sampling with a seed is reproducible.
for run in a b; do
  "$bin" generate --model "$model" --prompt "x = " --max-tokens 12 --temperature 0.9 --top-k 50 --top-p 0.9 --seed 7 \
    --mode self-speculative --exit-layer 2 --json >"$tmp/$run.json"
done
[ "$(json_field "$tmp/a.json" '["ids"]')" = "$(json_field "$tmp/b.json" '["ids"]')" ] && ok || fail "seeded sampling is not reproducible"
"$bin" inspect --model "$model" >"$tmp/inspect" && grep -q "parameters:" "$tmp/inspect" && grep -q "dtypes: BF16=" "$tmp/inspect" && ok \
  || fail "inspect output"
"$bin" inspect --model "$src/tests/fixtures/hf/sharded" >/dev/null && ok || fail "inspect sharded checkpoint"
grep -q "weights: bf16 (layers)" "$tmp/inspect" && grep -q "peak RSS" "$tmp/inspect" && ok || fail "inspect load line"
"$bin" inspect --model "$model" --weights int8 >"$tmp/inspect8" && grep -q "weights: int8 (layers), embedding and head bf16" \
  "$tmp/inspect8" && ok || fail "inspect --weights int8"
expect_error "--weights: 'int4' is not int8" "$bin" generate --model "$model" --prompt "x" --weights int4
expect_error "--weights: 'f32' is not int8 or the dtype (bf16)" "$bin" logits --model "$model" --prompt-ids 1 --weights f32

# A sentencepiece tokenizer.model (no tokenizer.json): the demo weights with the sentencepiece fixture.
mkdir -p "$tmp/sp" && cp "$model/config.json" "$model/model.safetensors" "$tmp/sp/"
cp "$src/tests/fixtures/tokenizers/sentencepiece/tokenizer.model" "$src/tests/fixtures/tokenizers/sentencepiece/tokenizer_config.json" "$tmp/sp/"
"$bin" generate --model "$tmp/sp" --prompt "hello world" --max-tokens 4 --mode self-speculative --exit-layer 2 --json >"$tmp/sp.json" \
  && [ "$(json_field "$tmp/sp.json" '["stats"]["generated_tokens"]')" = "4" ] && ok || fail "generate with a sentencepiece tokenizer.model"
# The coordinator refuses it with one line (its gRPC protobuf and sentencepiece's cannot share a process).
expect_error "tokenizer.json" "$bin_dir/layerskip-coordinator" --model "$tmp/sp" --listen 127.0.0.1:0

# --- bad input
expect_error "config.json" "$bin" generate --model "$tmp/missing" --prompt-ids 1
mkdir -p "$tmp/noweights" && cp "$model/config.json" "$tmp/noweights/"
expect_error "no model.safetensors" "$bin" generate --model "$tmp/noweights" --prompt-ids 1
mkdir -p "$tmp/badcfg" && cp "$model"/* "$tmp/badcfg/"
echo '{"hidden_size": 128,' >"$tmp/badcfg/config.json"
expect_error "config.json" "$bin" generate --model "$tmp/badcfg" --prompt-ids 1
python3 - "$model/config.json" "$tmp/badcfg/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); c["architectures"] = ["MistralForCausalLM"]; c["model_type"] = "mistral"
json.dump(c, open(sys.argv[2], "w"))
PY
expect_error "architecture" "$bin" generate --model "$tmp/badcfg" --prompt-ids 1
python3 - "$model/config.json" "$tmp/badcfg/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); c["intermediate_size"] = 300
json.dump(c, open(sys.argv[2], "w"))
PY
expect_error "mlp.gate_proj.weight" "$bin" generate --model "$tmp/badcfg" --prompt-ids 1
# config.json promising 10^9 layers (inside the accepted range) over a 4-layer checkpoint: one line, no bad_alloc.
python3 - "$model/config.json" "$tmp/badcfg/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); c["num_hidden_layers"] = 1000000000
json.dump(c, open(sys.argv[2], "w"))
PY
expect_error "num_hidden_layers is 1000000000" "$bin" generate --model "$tmp/badcfg" --prompt-ids 1
expect_error "num_hidden_layers is 1000000000" "$bin" inspect --model "$tmp/badcfg"
expect_error "num_hidden_layers is 1000000000" "$bin_dir/layerskip-coordinator" --model "$tmp/badcfg" --listen 127.0.0.1:0
mkdir -p "$tmp/trunc" && cp "$model"/* "$tmp/trunc/"
head -c 100000 "$model/model.safetensors" >"$tmp/trunc/model.safetensors"
expect_error "model.safetensors" "$bin" generate --model "$tmp/trunc" --prompt-ids 1
printf '\xff\xff\xff\xff\x00\x00\x00\x00{}' >"$tmp/trunc/model.safetensors"
expect_error "model.safetensors" "$bin" generate --model "$tmp/trunc" --prompt-ids 1
expect_error "outside the vocabulary" "$bin" generate --model "$model" --prompt-ids 1,5000
expect_error "context" "$bin" generate --model "$model" --prompt-ids 1,2,3,4,5,6,7,8 --max-context 8
expect_error "exit_layer" "$bin" generate --model "$model" --prompt-ids 1 --mode self-speculative --exit-layer 4
expect_error "exit_layer" "$bin" generate --model "$model" --prompt-ids 1 --mode self-speculative --exit-layer 0
expect_error "--mode" "$bin" generate --model "$model" --prompt-ids 1 --mode fast
expect_error "--calibration" "$bin" generate --model "$model" --prompt-ids 1 --mode self-speculative --calibration sometimes
expect_error "--draft-vocab" "$bin" generate --model "$model" --prompt-ids 1 --mode self-speculative --draft-vocab 99999
expect_error "--max-speculations" "$bin" generate --model "$model" --prompt-ids 1 --mode self-speculative --max-speculations 0
expect_error "--draft-vocab-corpus" "$bin" generate --model "$model" --prompt-ids 1 --mode self-speculative --draft-vocab 64 \
  --draft-vocab-corpus "$tmp/missing.txt"
expect_error "--exit-layer" "$bin" generate --model "$model" --prompt-ids 1 --mode early-exit
expect_error "--top-p" "$bin" generate --model "$model" --prompt-ids 1 --top-p 1.5
expect_error "--temperature" "$bin" generate --model "$model" --prompt-ids 1 --temperature -1
expect_error "--max-tokens" "$bin" generate --model "$model" --prompt-ids 1 --max-tokens 0
expect_error "--prompt-ids" "$bin" generate --model "$model" --prompt-ids 1,x
expect_error "unknown flag --bogus" "$bin" generate --model "$model" --prompt-ids 1 --bogus 3
expect_error "--random" "$bin" bench --random nonsense

echo "$passed passed, $failures failed"
[ $failures -eq 0 ]
