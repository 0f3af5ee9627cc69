#!/usr/bin/env bash
# Installs what is missing, builds, and runs the main job on the model in the repo: the same prompt decoded
# autoregressively and self-speculatively (identical greedy text), with the speculation statistics.
#   launch/quickstart.sh [MODEL_DIR]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
model="${1:-${LAYERSKIP_MODEL:-models/tiny-random}}"
launch/install-deps.sh
launch/build.sh
bin=build/bin/layerskip
prompt='def fibonacci(n):'
layers=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['num_hidden_layers'])" "$model/config.json")
exit_layer=$(( layers / 2 ))

echo "== model"
$bin inspect --model "$model"
echo
echo "== autoregressive"
$bin generate --model "$model" --prompt "$prompt" --max-tokens 48 --json > /tmp/layerskip_ar.json
python3 - /tmp/layerskip_ar.json <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(repr(r["text"]))
print(f"{r['stats']['generated_tokens']} tokens, {r['stats']['tokens_per_second']:.1f} tokens/s")
PY
echo
echo "== self-speculative (exit layer $exit_layer, up to 4 drafts per round)"
$bin generate --model "$model" --prompt "$prompt" --max-tokens 48 --mode self-speculative \
  --exit-layer "$exit_layer" --speculations 4 --json > /tmp/layerskip_ss.json
python3 - /tmp/layerskip_ar.json /tmp/layerskip_ss.json <<'PY'
import json, sys
ar, ss = (json.load(open(p)) for p in sys.argv[1:3])
s = ss["stats"]["speculation"]
print(repr(ss["text"]))
print(f"{ss['stats']['generated_tokens']} tokens, {ss['stats']['tokens_per_second']:.1f} tokens/s; "
      f"{s['rounds']} rounds, {s['accepted']}/{s['drafted']} drafts accepted "
      f"({100 * s['acceptance_rate']:.1f}%), {s['tokens_per_round']:.2f} tokens per round")
print("identical to autoregressive:", ss["ids"] == ar["ids"])
sys.exit(0 if ss["ids"] == ar["ids"] else 1)
PY

echo
echo "== service: layerskip-coordinator + a streamed request with layerskip client"
coord_log=$(mktemp)
build/bin/layerskip-coordinator --model "$model" --listen 127.0.0.1:0 --metrics-port 0 >"$coord_log" 2>&1 &
coord_pid=$!
trap 'kill "$coord_pid" 2>/dev/null || true; rm -f "$coord_log"' EXIT
port=""
for _ in $(seq 1 300); do  # up to 30 s for the model to load
  if grep -q "serving" "$coord_log"; then port=$(grep -o '(port [0-9]*' "$coord_log" | grep -o '[0-9]*'); break; fi
  kill -0 "$coord_pid" 2>/dev/null || { cat "$coord_log"; exit 1; }
  sleep 0.1
done
[ -n "$port" ] || { echo "the coordinator did not start"; cat "$coord_log"; exit 1; }
metrics_port=$(grep -o 'metrics on port [0-9]*' "$coord_log" | grep -o '[0-9]*$')
$bin client --server "127.0.0.1:$port" --prompt "$prompt" --max-tokens 48 --mode self-speculative \
  --exit-layer "$exit_layer" --speculations 4
echo "-- speculation metrics (http://127.0.0.1:$metrics_port/metrics)"
python3 - "$metrics_port" <<'PY'
import sys, urllib.request
text = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics").read().decode()
for line in text.splitlines():
    if line.startswith("layerskip:spec_decode") or line.startswith("layerskip:generation_tokens_total"):
        print(line)
PY
kill -TERM "$coord_pid"
wait "$coord_pid" && echo "coordinator stopped cleanly (exit 0)"
