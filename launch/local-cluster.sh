#!/usr/bin/env bash
# A pipeline-parallel cluster on this machine: N CPU workers (layerskip-worker) and a coordinator that
# shards the model's layers across them (docs/pipeline.md). Supervised: a worker that dies is restarted on
# its port (the coordinator reloads its shard and suspended streams resume); when the coordinator exits the
# cluster stops with its exit status. Ctrl-C (or SIGTERM) stops them all.
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
declare -A worker_pid=()
coord_pid=""
stopping=0
cleanup() {
  stopping=1
  for pid in "${worker_pid[@]}" $coord_pid; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

threads=$(( $(nproc) / (workers + 1) )); (( threads >= 1 )) || threads=1
# start_worker I: worker I on 127.0.0.1:(port + I), its output appended to $tmp/workerI.log; waits for its
# listening line (a restarted worker may need a moment for the port to be free again).
start_worker() {
  local i="$1" addr="127.0.0.1:$((port + $1))" log="$tmp/worker$1.log" before
  before=$(grep -c listening "$log" 2>/dev/null || true)
  "$bin/layerskip-worker" --listen "$addr" --token-file "$tmp/token" >> "$log" 2>&1 &
  worker_pid[$i]=$!
  for _ in $(seq 1 100); do
    (( $(grep -c listening "$log" 2>/dev/null || true) > ${before:-0} )) && return 0
    kill -0 "${worker_pid[$i]}" 2>/dev/null || break
    sleep 0.1
  done
  echo "local-cluster: worker $i did not start:" >&2
  tail -n 5 "$log" >&2
  return 1
}

addrs=""
for i in $(seq 1 "$workers"); do
  start_worker "$i" || exit 1
  addrs="${addrs:+$addrs,}127.0.0.1:$((port + i))"
done
echo "local-cluster: $workers workers at $addrs"

args=(--model "$model" --listen "127.0.0.1:$port" --workers "$addrs" --cluster-token-file "$tmp/token" --threads "$threads")
[[ -n "$stages" ]] && args+=(--stages "$stages")
[[ -n "$exit_layer" ]] && args+=(--default-exit-layer "$exit_layer")
"$bin/layerskip-coordinator" "${args[@]}" "${extra[@]}" &
coord_pid=$!
echo "local-cluster: coordinator at 127.0.0.1:$port (Ctrl-C stops the cluster)"

# Supervise: whichever child exits, see which.
while true; do
  wait -n || true
  (( stopping )) && break
  if ! kill -0 "$coord_pid" 2>/dev/null; then
    rc=0; wait "$coord_pid" || rc=$?
    echo "local-cluster: the coordinator exited ($rc); stopping the workers"
    exit "$rc"
  fi
  for i in "${!worker_pid[@]}"; do
    kill -0 "${worker_pid[$i]}" 2>/dev/null && continue
    rc=0; wait "${worker_pid[$i]}" 2>/dev/null || rc=$?
    echo "local-cluster: worker $i (pid ${worker_pid[$i]}) exited ($rc); restarting it"
    sleep 0.5
    until start_worker "$i"; do sleep 2; done
    echo "local-cluster: worker $i restarted (pid ${worker_pid[$i]})"
  done
done
