#!/usr/bin/env bash
# Continue training models/layerskip-demo (LayerSkip recipe of its phase 3) on one GPU for a wall-clock budget,
# on a corpus built here from the Python sources of the running python3 (stdlib + site-packages), and export it.
#
#   OUT=/some/empty/dir train/gpu_run.sh [--minutes M] [--out DIR] [options] [-- extra train.py args]
#
#   --minutes M       training time (train.py --max-minutes; T is fitted to it by --fit-steps)   [5]
#   --out DIR         where the results go                                                       [$OUT]
#   --work DIR        scratch: corpus, run dir, exports (wiped first)         [${TMPDIR:-/tmp}/layerskip_gpu_run]
#   --source DIR      corpus source dir, repeatable            [stdlib + site-packages of python3]
#   --max-mb N        corpus cap in MB of source files (make_corpus.py --max-mb)                [300]
#   --threads N       torch / tokenizer threads without CUDA (with CUDA: torch defaults)        [2]
#   --no-tokenizer    do not copy tokenizer.json / tokenizer_config.json into OUT/model
#   -- ...            further train.py arguments (they override the ones below)
#
# Writes only OUT/train_log.txt (everything printed, stage times, per-exit validation losses before/after) and
# OUT/model/: config.json, generation_config.json, model.safetensors.index.json, bf16 shards of <= 15 MB (2), and
# tokenizer.json + tokenizer_config.json (the demo model's, unchanged) while OUT stays within 8 files.
# Stages: env, corpus, eval-before, train (tokenize + fit + train + final eval), export, eval-after, copy.
# Without CUDA it runs the same stages with small batches (a smoke test: use --source/--max-mb to keep it small).
set -euo pipefail
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_PROGRESS_BARS=1

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MINUTES=5
OUT_DIR="${OUT:-}"
WORK="${TMPDIR:-/tmp}/layerskip_gpu_run"
SOURCES=()
MAX_MB=300
THREADS=2
COPY_TOKENIZER=1
EXTRA=()
while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) MINUTES="$2"; shift 2 ;;
    --out) OUT_DIR="$2"; shift 2 ;;
    --work) WORK="$2"; shift 2 ;;
    --source) SOURCES+=("$2"); shift 2 ;;
    --max-mb) MAX_MB="$2"; shift 2 ;;
    --threads) THREADS="$2"; shift 2 ;;
    --no-tokenizer) COPY_TOKENIZER=0; shift ;;
    --) shift; EXTRA=("$@"); break ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "gpu_run: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -n "$OUT_DIR" ] || { echo "gpu_run: set OUT or pass --out DIR" >&2; exit 2; }
mkdir -p "$OUT_DIR"
OUT_DIR="$(cd "$OUT_DIR" && pwd)"
LOG="$OUT_DIR/train_log.txt"
: > "$LOG"
rm -rf "$OUT_DIR/model"

BASE_MODEL="$REPO/models/layerskip-demo"
ORIG_CORPUS="$REPO/train/data/corpus"
MAX_FILES=8   # what comes back from OUT

stage_start=0
stage() {  # stage NAME TIMEOUT_S CMD...: runs CMD under a hard timeout, logs its wall time
  local name="$1" limit="$2"; shift 2
  echo
  echo "=== stage $name (timeout ${limit}s) $(date -u +%H:%M:%S)"
  stage_start=$(date +%s.%N)
  local rc=0
  timeout --kill-after=20 "$limit" "$@" || rc=$?
  local dt
  dt=$(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$stage_start" "$(date +%s.%N)")
  echo "=== stage $name: rc $rc, ${dt} s"
  echo "$name ${dt}s rc=$rc" >> "$WORK/stage_times.txt"
  return $rc
}

# The Python helpers are written to WORK first (so `timeout` can run them).
write_helpers() {
  # Per-exit loss on the original val split (train/data/corpus/val.jsonl, seq 256, f32 compute), as in
  # docs/training.md: the first 16 batches x 8 sequences (32,768 tokens); with CUDA also the whole split.
  cat > "$WORK/eval_orig.py" <<'PY'
# eval_orig.py MODEL_DIR JSON_OUT CORPUS TOKENIZER_JSON THREADS REPO
import json, os, sys, time
sys.path.insert(0, os.path.join(sys.argv[6], "train"))
import torch
from tokenizers import Tokenizer
from transformers import LlamaForCausalLM
from layerskip.data import TokenChunks, read_texts, tokenize_corpus
from layerskip.evaluate import evaluate_exits, format_table
model_dir, out, corpus, tok_file, threads = sys.argv[1:6]
cuda = torch.cuda.is_available()
if not cuda:
    torch.set_num_threads(int(threads))
device = torch.device("cuda" if cuda else "cpu")
chunks = TokenChunks(tokenize_corpus(read_texts(os.path.join(corpus, "val.jsonl")), Tokenizer.from_file(tok_file)), 256)
from layerskip.model import LayerSkipLlama
w = LayerSkipLlama(LlamaForCausalLM.from_pretrained(model_dir, dtype=torch.float32).to(device))
res = {"model": model_dir}
runs = [("docs16x8", 8, 16)] + ([("full", 64, None)] if cuda else [("cpu2x8", 8, 2)])
for name, bs, mb in runs:
    t = time.time()
    rows = evaluate_exits(w, chunks, bs, device, mb)
    res[name] = rows
    print(f"{model_dir} on the original val split, {name}: {rows[0]['tokens']} tokens ({time.time() - t:.1f} s)")
    print(format_table(rows))
with open(out, "w") as f:
    json.dump(res, f, indent=1)
PY

  # The trainer's export (f32) -> bf16 HF dir with shards <= 15 MB; falls back to the last state.pt.
  cat > "$WORK/export_bf16.py" <<'PY'
# export_bf16.py SRC_EXPORT STATE_PT DST BASE_MODEL
import os, shutil, sys
import torch
from transformers import LlamaConfig, LlamaForCausalLM
src, state, dst, base = sys.argv[1:5]
if os.path.exists(os.path.join(src, "config.json")):
    model = LlamaForCausalLM.from_pretrained(src, dtype=torch.float32)
    print(f"export: from {src}")
else:
    print(f"export: {src} missing, falling back to {state}")
    model = LlamaForCausalLM(LlamaConfig.from_pretrained(base))
    model.load_state_dict(torch.load(state, map_location="cpu", weights_only=False)["model"])
    if os.path.exists(os.path.join(base, "generation_config.json")):
        from transformers import GenerationConfig
        model.generation_config = GenerationConfig.from_pretrained(base)
model = model.to(torch.bfloat16)
if os.path.exists(dst):
    shutil.rmtree(dst)
model.save_pretrained(dst, max_shard_size="15MB")
for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
    if os.path.exists(os.path.join(base, name)):
        shutil.copy(os.path.join(base, name), os.path.join(dst, name))
for name in sorted(os.listdir(dst)):
    print(f"  {name}: {os.path.getsize(os.path.join(dst, name))} bytes")
PY
  cat > "$WORK/compare.py" <<'PY'
# compare.py BEFORE_JSON AFTER_JSON
import json, sys
b, a = (json.load(open(p)) for p in sys.argv[1:3])
for key in [k for k in b if k != "model" and k in a]:
    print(f"original val split ({key}, {b[key][0]['tokens']} tokens): per-exit loss before -> after")
    print("| exit | before | after | delta |\n|---:|---:|---:|---:|")
    for rb, ra in zip(b[key], a[key]):
        print(f"| {rb['layer']} | {rb['loss']:.4f} | {ra['loss']:.4f} | {ra['loss'] - rb['loss']:+.4f} |")
PY
}

main() {
  set -euo pipefail
  cd "$REPO"
  rm -rf "$WORK"
  mkdir -p "$WORK"
  write_helpers
  echo "gpu_run: $(date -u) repo $REPO ($(git rev-parse --short HEAD 2>/dev/null || echo no-git))"
  echo "gpu_run: out $OUT_DIR work $WORK"
  echo "gpu_run: --minutes $MINUTES --max-mb $MAX_MB extra: ${EXTRA[*]:-none}"

  stage env 120 python3 - "$WORK/cuda" <<'PY'
import os, sys, torch, transformers, tokenizers
print("python", sys.version.split()[0], "torch", torch.__version__, "transformers", transformers.__version__,
      "tokenizers", tokenizers.__version__, "cpus", os.cpu_count(), "affinity", len(os.sched_getaffinity(0)))
cuda = torch.cuda.is_available()
print("cuda", cuda, torch.cuda.get_device_name(0) if cuda else "")
open(sys.argv[1], "w").write("1" if cuda else "0")
PY
  local cuda
  cuda=$(cat "$WORK/cuda")

  local train_args
  if [ "$cuda" = 1 ]; then
    # 128 x 512 = 65,536 tokens per step; lr for that batch (phase 3: 8 x 256 at 4e-4)
    train_args=(--dtype bf16 --batch-size 128 --seq-len 512 --lr 1e-3 --warmup 100 --probe-steps 30
                --log-every 100 --eval-batches 16 --ckpt-every 500)
  else
    export RAYON_NUM_THREADS="${RAYON_NUM_THREADS:-$THREADS}" OMP_NUM_THREADS="${OMP_NUM_THREADS:-$THREADS}"
    train_args=(--dtype f32 --threads "$THREADS" --batch-size 4 --seq-len 256 --lr 4e-4 --warmup 2
                --probe-steps 3 --log-every 2 --eval-batches 2 --ckpt-every 1000000)
    echo "gpu_run: no CUDA: CPU smoke-test settings (${train_args[*]})"
  fi

  if [ ${#SOURCES[@]} -eq 0 ]; then
    mapfile -t SOURCES < <(timeout 60 python3 - <<'PY'
import os, site, sysconfig
paths = sysconfig.get_paths()
cands = [paths["stdlib"], paths["purelib"], paths["platlib"]] + site.getsitepackages()
cands += [site.getusersitepackages(), "/usr/lib/python3/dist-packages"]
seen = set()
for p in cands:
    if p and os.path.isdir(p) and os.path.realpath(p) not in seen:
        seen.add(os.path.realpath(p))
        print(p)
PY
)
  fi
  local src_args=()
  for s in "${SOURCES[@]}"; do src_args+=(--source "$s"); done
  echo "gpu_run: corpus sources: ${SOURCES[*]}"
  stage corpus 600 python3 train/make_corpus.py "${src_args[@]}" --max-mb "$MAX_MB" --dedupe --out "$WORK/corpus"
  ls -la "$WORK/corpus"

  local have_orig=0
  if [ -f "$ORIG_CORPUS/val.jsonl" ]; then
    have_orig=1
    stage eval-before 300 python3 "$WORK/eval_orig.py" "$BASE_MODEL" "$WORK/eval_before.json" "$ORIG_CORPUS" \
      "$BASE_MODEL/tokenizer.json" "$THREADS" "$REPO"
  else
    echo "gpu_run: $ORIG_CORPUS/val.jsonl missing: no evaluation on the original val split"
  fi

  # The LayerSkip flags of the demo model's phase 3 (docs/training.md), continued from its export.
  local train_limit train_rc=0
  train_limit=$(python3 -c "print(int(float('$MINUTES') * 60) + 420)")
  stage train "$train_limit" python3 train/train.py --from-pretrained "$BASE_MODEL" --tokenizer "$BASE_MODEL" \
    --corpus "$WORK/corpus" --seed 3 \
    --p-max 0.1 --dropout-shape exponential --dropout-schedule constant --exit-scale sum --e-scale 1 \
    --curriculum rotational --rotation 2 --min-lr-ratio 0.1 \
    --steps 1000000 --max-minutes "$MINUTES" --fit-steps --eval-at-start \
    --out "$WORK/run" --export-dir "$WORK/export" "${train_args[@]}" "${EXTRA[@]}" || train_rc=$?
  if [ "$train_rc" -ne 0 ]; then  # still export what it saved (its last export, else state.pt), then fail
    echo "gpu_run: train failed (rc $train_rc)"
    [ -f "$WORK/export/config.json" ] || [ -f "$WORK/run/state.pt" ] || return "$train_rc"
  fi

  stage export 300 python3 "$WORK/export_bf16.py" "$WORK/export" "$WORK/run/state.pt" "$WORK/final" "$BASE_MODEL"

  if [ "$have_orig" = 1 ]; then
    stage eval-after 300 python3 "$WORK/eval_orig.py" "$WORK/final" "$WORK/eval_after.json" "$ORIG_CORPUS" \
      "$BASE_MODEL/tokenizer.json" "$THREADS" "$REPO"
    timeout 60 python3 "$WORK/compare.py" "$WORK/eval_before.json" "$WORK/eval_after.json"
  fi

  # OUT/model: config, generation config, index, shards; the tokenizer while OUT stays within MAX_FILES.
  mkdir -p "$OUT_DIR/model"
  local f n
  for f in "$WORK"/final/config.json "$WORK"/final/generation_config.json "$WORK"/final/*.safetensors \
           "$WORK"/final/model.safetensors.index.json; do
    if [ -f "$f" ]; then cp "$f" "$OUT_DIR/model/"; fi
  done
  n=$(find "$OUT_DIR" -type f | wc -l)
  if [ "$COPY_TOKENIZER" = 1 ] && [ $((n + 2)) -le "$MAX_FILES" ]; then
    cp "$BASE_MODEL/tokenizer.json" "$BASE_MODEL/tokenizer_config.json" "$OUT_DIR/model/"
  else
    echo "gpu_run: tokenizer not copied (copy $BASE_MODEL/tokenizer.json and tokenizer_config.json beside the model)"
  fi
  echo
  echo "=== stage times"
  cat "$WORK/stage_times.txt"
  echo "=== OUT ($(find "$OUT_DIR" -type f | wc -l) files)"
  (cd "$OUT_DIR" && find . -type f -printf '%p %s\n' | sort)
  return "$train_rc"
}

rc=0
set +e
main 2>&1 | tee -a "$LOG"
rc=${PIPESTATUS[0]}
set -e
if [ "$rc" -eq 0 ]; then
  echo "gpu_run: OK $(date -u)" | tee -a "$LOG"
else
  echo "gpu_run: FAILED (rc $rc) $(date -u); see the stage lines above" | tee -a "$LOG"
fi
exit "$rc"
