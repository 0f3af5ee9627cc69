#!/usr/bin/env bash
# Soak test (not in CI): a coordinator with 2 pipeline workers (launch/local-cluster.sh, supervised) under
# layerskip-loadgen --duration with random cancels and deadlines, and a worker killed (SIGKILL, restarted
# by the supervisor) every --restart-every seconds. Prints requests sent / completed / failed by code, the
# RSS of every process at the start (after a warm-up) and at the end, and PASS only when no stream was lost,
# short or hung and every process's RSS stayed flat (end <= 1.25 x start + 32 MiB).
#   bench/soak.sh --minutes N [--model DIR] [--bin-dir build/bin] [--concurrency 8] [--restart-every 180]
#                 [--port P]
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
minutes=20
model=models/tiny-random
bin=build/bin
concurrency=8
restart_every=180
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
while [[ $# -gt 0 ]]; do
  case "$1" in
    --minutes) minutes="$2"; shift 2 ;;
    --model) model="$2"; shift 2 ;;
    --bin-dir) bin="$2"; shift 2 ;;
    --concurrency) concurrency="$2"; shift 2 ;;
    --restart-every) restart_every="$2"; shift 2 ;;
    --port) port="$2"; shift 2 ;;
    *) echo "soak.sh: unknown flag $1" >&2; exit 2 ;;
  esac
done
seconds=$(python3 -c "print(int(float('$minutes') * 60))")
warmup=$(( seconds / 10 < 60 ? seconds / 10 : 60 ))
log=$(mktemp -d)
echo "soak: $minutes min, $concurrency streams, a worker killed every ${restart_every} s; logs in $log"
echo "soak: machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"

launch/local-cluster.sh --model "$model" --workers 2 --port "$port" --bin-dir "$bin" \
  -- --restore-timeout 60 --max-batch-size 16 >"$log/cluster.log" 2>&1 &
cluster=$!
stop_cluster() { kill -TERM "$cluster" 2>/dev/null; wait "$cluster" 2>/dev/null; }
trap stop_cluster EXIT
for _ in $(seq 1 600); do grep -q "health SERVING" "$log/cluster.log" && break; sleep 0.1; done
grep -q "health SERVING" "$log/cluster.log" || { echo "soak: the cluster did not start"; cat "$log/cluster.log"; exit 1; }

# The cluster's processes, as "role pid" lines (children of the supervisor).
procs() {
  local p
  for p in $(pgrep -P "$cluster"); do
    case "$(cat /proc/$p/comm 2>/dev/null)" in
      layerskip-coord*) echo "coordinator $p" ;;
      layerskip-worke*) echo "worker:$(tr '\0' ' ' </proc/$p/cmdline | grep -o '127.0.0.1:[0-9]*') $p" ;;
    esac
  done | sort
}
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
snapshot() { procs | while read -r role pid; do echo "$role $pid $(rss_kib "$pid")"; done; }

"$bin/layerskip-loadgen" --server "127.0.0.1:$port" --duration "$seconds" --concurrency "$concurrency" \
  --max-tokens 96 --prompt-tokens 48 --mode self-speculative --speculations auto --cancel-fraction 0.1 \
  --deadline-fraction 0.1 --hang-seconds 150 >"$log/load.log" 2>&1 &
load=$!

sleep "$warmup"
snapshot >"$log/rss_start"
echo "soak: RSS at start (after ${warmup} s of load):"; sed 's/^/soak:   /; s/$/ KiB/' "$log/rss_start"
restarts=0
elapsed=$warmup
next_restart=$restart_every
while kill -0 "$load" 2>/dev/null; do
  sleep 5
  elapsed=$((elapsed + 5))
  if (( elapsed >= next_restart && elapsed < seconds - 30 )); then
    victim=$(procs | grep '^worker' | sed -n "$(( restarts % 2 + 1 ))p" | cut -d' ' -f2)
    if [[ -n "$victim" ]]; then
      kill -KILL "$victim" && restarts=$((restarts + 1))
      echo "soak: t=${elapsed}s killed worker pid $victim (restart $restarts)"
    fi
    next_restart=$((next_restart + restart_every))
  fi
  if (( elapsed > seconds + 300 )); then echo "soak: the load generator hangs"; kill -KILL "$load"; break; fi
done
snapshot >"$log/rss_end"
wait "$load"; load_rc=$?
cat "$log/load.log"
echo "soak: RSS at end:"; sed 's/^/soak:   /; s/$/ KiB/' "$log/rss_end"
echo "soak: worker restarts: $restarts (supervisor: $(grep -c 'restarted (pid' "$log/cluster.log"))"

# Flat: every role's end RSS <= 1.25 x its start RSS + 32 MiB (restarted workers are compared by role).
flat=1
while read -r role pid kib; do
  start_kib=$(awk -v r="$role" '$1 == r {print $3}' "$log/rss_start")
  [[ -z "$start_kib" ]] && { echo "soak: $role missing at start"; flat=0; continue; }
  if (( kib > start_kib * 5 / 4 + 32768 )); then echo "soak: $role grew from $start_kib to $kib KiB"; flat=0; fi
done <"$log/rss_end"
[[ $(wc -l <"$log/rss_end") -eq 3 ]] || { echo "soak: expected 3 processes at the end"; flat=0; }
if (( load_rc == 0 && flat == 1 )) && grep -q "health SERVING" "$log/cluster.log"; then
  echo "soak: PASS (nothing lost, short or hung; RSS flat)"
  exit 0
fi
echo "soak: FAIL (load generator rc $load_rc, RSS flat: $flat)"
exit 1
