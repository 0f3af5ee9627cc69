#!/usr/bin/env bash
# Installs what is missing, builds, and runs the main job on the model in the repo: the same prompt decoded
# autoregressively and self-speculatively with the automatic choice of exit layer and draft length (identical
# greedy text), its choice and its measured speedup, then the same through the service.
#   launch/quickstart.sh [MODEL_DIR]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
model="${1:-${LAYERSKIP_MODEL:-models/layerskip-demo}}"
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
echo "== self-speculative, automatic: a cost model measured on this machine now (then cached in ~/.cache/layerskip) and the"
echo "   acceptance seen so far choose the exit layer E and the draft length d before every step, and fall back to"
echo "   autoregressive steps where speculation is predicted not to pay"
$bin generate --model "$model" --prompt "$prompt" --max-tokens 48 --mode self-speculative --calibration fresh --json \
  > /tmp/layerskip_ss.json  # fresh: measured now, so a cache taken on a busier machine does not decide
python3 - /tmp/layerskip_ar.json /tmp/layerskip_ss.json <<'PY'
import json, sys
ar, ss = (json.load(open(p)) for p in sys.argv[1:3])
s, p = ss["stats"]["speculation"], ss["stats"]["policy"]
print(repr(ss["text"]))
steps = ", ".join(f"E={c['exit_layer']} d={c['speculations']}: {c['steps']}" if c["speculations"] else f"autoregressive: {c['steps']}"
                  for c in p["choices"])
print(f"chosen: mostly E={ss['exit_layer']} d={ss['speculations']} (steps per choice: {steps}); "
      f"predicted speedup {p['predicted_speedup']:.2f}x; cost model {p['cost_model']}")
print(f"{s['rounds']} rounds, {s['accepted']}/{s['drafted']} drafts accepted ({100 * s['acceptance_rate']:.1f}%)")
print("identical to autoregressive:", ss["ids"] == ar["ids"])
sys.exit(0 if ss["ids"] == ar["ids"] else 1)
PY
chosen=$(python3 -c "import json;print(json.load(open('/tmp/layerskip_ss.json'))['exit_layer'])")
[ "$chosen" -ge 1 ] 2>/dev/null && exit_layer=$chosen
echo "-- its speedup: autoregressive and automatic runs paired and interleaved on the same prompt (median of 5 pairs)"
$bin bench --model "$model" --mode self-speculative --auto --no-static --repeats 5 --prompt-tokens 32 --decode-tokens 48 \
  | grep -E "^(auto|autoregressive|load average)"

echo
echo "== service: a coordinator and 2 pipeline workers (launch/local-cluster.sh), one streamed request"
# Stage 0 holds the embedding, layers [0, E) and a copy of the head (the draft stage); stage 1 holds [E, L).
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
metrics_port=$((port + 3))
cluster_log=$(mktemp)
launch/local-cluster.sh --model "$model" --workers 2 --exit-layer "$exit_layer" --port "$port" \
  -- --metrics-port "$metrics_port" >"$cluster_log" 2>&1 &
cluster_pid=$!
trap 'kill "$cluster_pid" 2>/dev/null || true; rm -f "$cluster_log"' EXIT
for _ in $(seq 1 300); do  # up to 30 s for the shards to load and the stages to be wired
  grep -q "health SERVING" "$cluster_log" && break
  kill -0 "$cluster_pid" 2>/dev/null || { cat "$cluster_log"; exit 1; }
  sleep 0.1
done
grep -q "health SERVING" "$cluster_log" || { echo "the cluster did not start"; cat "$cluster_log"; exit 1; }
grep "local-cluster:" "$cluster_log"
$bin client --server "127.0.0.1:$port" --prompt "$prompt" --max-tokens 48 --mode self-speculative \
  --exit-layer "$exit_layer" --speculations auto
echo "-- speculation metrics (http://127.0.0.1:$metrics_port/metrics)"
python3 - "$metrics_port" <<'PY'
import sys, urllib.request
text = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics").read().decode()
for line in text.splitlines():
    if line.startswith("layerskip:spec_decode") or line.startswith("layerskip:generation_tokens_total"):
        print(line)
PY
kill -TERM "$cluster_pid"
wait "$cluster_pid" 2>/dev/null || true
echo "cluster stopped"
