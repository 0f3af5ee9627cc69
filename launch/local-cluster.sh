#!/usr/bin/env bash
# A pipeline-parallel cluster on this machine: N CPU workers (layerskip-worker) and a coordinator that
# shards the model's layers across them (docs/pipeline.md). Ctrl-C (or SIGTERM) stops them all.
#   launch/local-cluster.sh [--model DIR] [--workers N] [--stages 0-1,2-3] [--exit-layer E]
#                           [--port P] [--bin-dir build/bin] [-- extra coordinator flags]
# Workers listen on 127.0.0.1:(P+1)..(P+N); the coordinator on 127.0.0.1:P. A fresh random cluster token
# is written to a private temporary file and shared with the workers and the coordinator.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
model=models/tiny-random
workers=2
stages=""
exit_layer=""
port=50051
bin=build/bin
extra=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --model) model="$2"; shift 2 ;;
    --workers) workers="$2"; shift 2 ;;
    --stages) stages="$2"; shift 2 ;;
    --exit-layer) exit_layer="$2"; shift 2 ;;
    --port) port="$2"; shift 2 ;;
    --bin-dir) bin="$2"; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    *) echo "local-cluster.sh: unknown flag $1" >&2; exit 2 ;;
  esac
done
for b in layerskip-worker layerskip-coordinator; do
  [[ -x "$bin/$b" ]] || { echo "local-cluster.sh: $bin/$b not found (build first: launch/build.sh)" >&2; exit 1; }
done

tmp=$(mktemp -d)
chmod 700 "$tmp"
head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$tmp/token"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

addrs=""
threads=$(( $(nproc) / (workers + 1) )); (( threads >= 1 )) || threads=1
for i in $(seq 1 "$workers"); do
  addr="127.0.0.1:$((port + i))"
  "$bin/layerskip-worker" --listen "$addr" --token-file "$tmp/token" > "$tmp/worker$i.log" 2>&1 &
  pids+=($!)
  addrs="${addrs:+$addrs,}$addr"
done
# Wait until every worker printed its listening line.
for i in $(seq 1 "$workers"); do
  for _ in $(seq 1 100); do grep -q listening "$tmp/worker$i.log" 2>/dev/null && break; sleep 0.1; done
  grep -q listening "$tmp/worker$i.log" || { echo "worker $i did not start:" >&2; cat "$tmp/worker$i.log" >&2; exit 1; }
done
echo "local-cluster: $workers workers at $addrs"

args=(--model "$model" --listen "127.0.0.1:$port" --workers "$addrs" --cluster-token-file "$tmp/token" --threads "$threads")
[[ -n "$stages" ]] && args+=(--stages "$stages")
[[ -n "$exit_layer" ]] && args+=(--default-exit-layer "$exit_layer")
"$bin/layerskip-coordinator" "${args[@]}" "${extra[@]}" &
pids+=($!)
echo "local-cluster: coordinator at 127.0.0.1:$port (Ctrl-C stops the cluster)"
wait -n "${pids[@]}"
