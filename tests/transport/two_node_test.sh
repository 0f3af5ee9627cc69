#!/usr/bin/env bash
# Two "nodes" on this machine: network namespaces A and B joined by a veth pair (like two pods), both created
# and removed here. Node A runs the coordinator and stage 0, node B stage 1 (wildcard --listen, explicit
# --advertise-address). Real binaries, real clients (layerskip-client). Every chaos case runs a batch of
# concurrent greedy requests and checks that each one completes with exactly the tokens of the undisturbed
# baseline (no request lost):
#   stranger     an idle connection and 100 KB of garbage to stage 1's data port     -> refused, no effect
#   oversized    the 28-byte v1 header and a 32-byte v2 header claiming 16384 x 16384 -> refused, no allocation
#   badframe     a peer that holds the token takes over stage 1's link and sends an oversized header
#                -> that link closed and counted; the round it broke fails, streams suspend and resume
#   kill9        kill -9 of stage 1, restart after 2 s       -> NOT_SERVING, streams suspend, then resume
#   sigstop      SIGSTOP of stage 1 for 20 s, then SIGCONT   -> streams stall and finish
#   netem        50 ms delay and 1% loss on the link (skipped when the kernel has no sch_netem)
#   delay        stage 1 re-advertised behind a userspace proxy on node A that holds every chunk of the
#                activation link 50 ms each way (tests/transport/delay_proxy.py; runs whether or not netem does)
# Prints the figures of docs/pipeline.md: tokens/s per case, death -> NOT_SERVING and restart -> SERVING.
#   tests/transport/two_node_test.sh BIN_DIR SOURCE_DIR       (root; exit 77 = skipped)
set -uo pipefail
bin=$(cd "${1:-build/bin}" && pwd)
src=$(cd "${2:-.}" && pwd)
skip() { echo "SKIP: $*"; exit 77; }
[[ $(id -u) == 0 ]] || skip "needs root to create network namespaces"
command -v ip > /dev/null || skip "iproute2 (ip) is not installed"
command -v curl > /dev/null || skip "curl is not installed"

tag="lsk$$"                                  # unique per run: namespaces, veth names
nsA="${tag}a" nsB="${tag}b" vA="${tag}x" vB="${tag}y"
octet=$(( $$ % 200 + 20 ))
ipA="10.231.$octet.1" ipB="10.231.$octet.2" ipP="10.231.$octet.3"  # ipP: node A's delay proxy
tmp=$(mktemp -d)
chmod 700 "$tmp"
pids=()
batch_pids=()
stage1_pid=""
cleanup() {
  [[ -n "$stage1_pid" ]] && kill -CONT "$stage1_pid" 2> /dev/null
  for n in "$nsA" "$nsB"; do  # every process this test started inside its own namespaces
    for p in $(ip netns pids "$n" 2> /dev/null); do kill -CONT "$p" 2> /dev/null; kill -9 "$p" 2> /dev/null; done
  done
  for p in "${pids[@]}" "${batch_pids[@]}" $stage1_pid; do kill -9 "$p" 2> /dev/null; done
  wait 2> /dev/null
  ip netns del "$nsA" 2> /dev/null
  ip netns del "$nsB" 2> /dev/null      # removes the veth pair with it
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 143' INT TERM  # exit runs cleanup (the EXIT trap)
ip netns add "$nsA" 2> /dev/null || skip "ip netns add failed (no permission for network namespaces here)"
ip netns add "$nsB" || exit 1
ip link add "$vA" type veth peer name "$vB" || skip "cannot create a veth pair"
ip link set "$vA" netns "$nsA" && ip link set "$vB" netns "$nsB" || exit 1
ip -n "$nsA" addr add "$ipA/24" dev "$vA" && ip -n "$nsB" addr add "$ipB/24" dev "$vB" || exit 1
ip -n "$nsA" addr add "$ipP/24" dev "$vA" || exit 1
for n in "$nsA" "$nsB"; do ip -n "$n" link set lo up; done
ip -n "$nsA" link set "$vA" up && ip -n "$nsB" link set "$vB" up || exit 1
# nsenter execs the command in place (ip netns exec forks), so `nsenter ... &` (not through a shell
# function, which would fork a subshell) makes $! the process itself: kill -9 and SIGSTOP reach the worker.
command -v nsenter > /dev/null || skip "nsenter (util-linux) is not installed"
inA() { nsenter --net="/run/netns/$nsA" "$@"; }
inB() { nsenter --net="/run/netns/$nsB" "$@"; }

fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
now() { date +%s.%N; }
calc() { awk "BEGIN { print $1 }"; }
head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$tmp/token"

start_stage1() {  # $1: the address it advertises (default its own)
  nsenter --net="/run/netns/$nsB" "$bin/layerskip-worker" --listen 0.0.0.0:7002 --data-port 7003 --advertise-address "${1:-$ipB}" \
    --token-file "$tmp/token" --recv-timeout 10 >> "$tmp/stage1.log" 2>&1 &
  stage1_pid=$!
}
nsenter --net="/run/netns/$nsA" "$bin/layerskip-worker" --listen "$ipA:7001" --data-port 7004 --token-file "$tmp/token" > "$tmp/stage0.log" 2>&1 &
pids+=($!)
start_stage1
nsenter --net="/run/netns/$nsA" "$bin/layerskip-coordinator" --model "$src/models/tiny-random" --listen "$ipA:7000" --metrics-port 7009 \
  --workers "$ipA:7001,$ipB:7002" --stages 0-1,2-3 --default-exit-layer 2 --threads 1 \
  --cluster-token-file "$tmp/token" --restore-timeout 120 > "$tmp/coordinator.log" 2>&1 &
coordinator_pid=$!
pids+=($coordinator_pid)
health() { inA curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://$ipA:7009/health"; }
for _ in $(seq 1 300); do [[ "$(health)" == 200 ]] && break; sleep 0.1; done
if [[ "$(health)" != 200 ]]; then
  echo "FAIL: the two-node cluster did not start"; cat "$tmp"/*.log; exit 1
fi
grep -q "data $ipB:7003" "$tmp/stage1.log" || fail "stage 1 does not advertise $ipB:7003: $(head -1 "$tmp/stage1.log")"

# Health, every 20 ms, for the timings.
( while kill -0 $$ 2> /dev/null; do echo "$(now) $(health)"; sleep 0.02; done ) > "$tmp/health.log" 2> /dev/null &
pids+=($!)

prompts=("def main():" "The quick brown fox" "import numpy as np" "Once upon a time")
max_tokens=400
start_batch() {  # $1: case name
  batch_pids=()
  batch_t0=$(now)
  for i in "${!prompts[@]}"; do
    (
      inA "$bin/layerskip-client" --server "$ipA:7000" --prompt "${prompts[$i]}" --max-tokens $max_tokens --ignore-eos \
        --mode self-speculative --exit-layer 2 --speculations 3 --timeout 300 --json > "$tmp/$1.$i.json" 2> "$tmp/$1.$i.err"
      rc=$?
      now > "$tmp/$1.$i.end"
      exit $rc
    ) &
    batch_pids+=($!)
  done
}
ids() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["ids"])' "$1" 2> /dev/null; }
finish_batch() {  # $1: case name; checks every request against the baseline, prints tokens/s
  local ok=1 tokens=0
  for i in "${!batch_pids[@]}"; do
    if ! wait "${batch_pids[$i]}"; then
      fail "$1: request $i failed: $(cat "$tmp/$1.$i.err")"; ok=0; continue
    fi
    if [[ "$1" != baseline && "$(ids "$tmp/$1.$i.json")" != "$(ids "$tmp/baseline.$i.json")" ]]; then
      fail "$1: request $i returned other tokens than the baseline"; ok=0
    fi
    tokens=$((tokens + $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["completion_tokens"])' "$tmp/$1.$i.json")))
  done
  local wall last
  last=$(sort -n "$tmp/$1".*.end | tail -1)  # when the last request ended
  wall=$(calc "$last - $batch_t0")
  printf 'case %-10s %s: %d requests, %d tokens in %.2f s = %.1f tokens/s\n' "$1" "$([[ $ok == 1 ]] && echo ok || echo FAILED)" \
    "${#batch_pids[@]}" "$tokens" "$wall" "$(calc "$tokens / $wall")"
}
still_running() { for p in "${batch_pids[@]}"; do kill -0 "$p" 2> /dev/null && return 0; done; return 1; }
first_code_after() {  # $1: code, $2: time -> first health sample with that code after the time
  awk -v c="$1" -v t="$2" '$1 > t && $2 == c { print $1; exit }' "$tmp/health.log"
}
wait_code_after() {
  for _ in $(seq 1 600); do
    local at; at=$(first_code_after "$1" "$2")
    [[ -n "$at" ]] && { echo "$at"; return 0; }
    sleep 0.05
  done
  return 1
}
refusals() { grep -c "refused a connection" "$tmp/stage1.log"; }

start_batch baseline
finish_batch baseline

# Strangers: one idle connection held open during the batch, and garbage.
before=$(refusals)
start_batch stranger
inA bash -c "exec 3<>/dev/tcp/$ipB/7003; sleep 8" &
idle=$!
sleep 0.5
inA bash -c "head -c 100000 /dev/urandom > /dev/tcp/$ipB/7003" 2> /dev/null
finish_batch stranger
wait $idle 2> /dev/null
[[ $(( $(refusals) - before )) -ge 2 ]] || fail "stranger: stage 1 did not refuse both connections ($(refusals) refusals)"
rejected=$(inA curl -s --max-time 5 "http://$ipA:7009/metrics" |
  awk '/^layerskip:data_plane_links_rejected_total\{.*stage="1"\}/ { print $2 }')
[[ "${rejected:-0}" -ge 2 ]] || fail "stranger: /metrics shows ${rejected:-no} data_plane_links_rejected_total for stage 1"

# Oversized frame headers from a stranger (the 28-byte v1 header of issue 12, then a v2 header).
rss_kb() { awk '/VmRSS/ { print $2 }' "/proc/$stage1_pid/status"; }
before=$(refusals)
rss0=$(rss_kb)
start_batch oversized
sleep 0.3
inA python3 - "$ipB" << 'EOF'
import socket, struct, sys
for header in (struct.pack("<IIQIii", 0x4C534B46, 1, 1, 0, 16384, 16384),
               struct.pack("<IIQIiiI", 0x4C534B46, 2, 1, 0, 16384, 16384, 0) + b"\0" * 16):
    s = socket.create_connection((sys.argv[1], 7003))
    s.sendall(header)
    s.settimeout(10)
    try:
        s.recv(64)
    except OSError:
        pass
    s.close()
EOF
finish_batch oversized
rss1=$(rss_kb)
echo "oversized: stage 1 RSS ${rss0} kB -> ${rss1} kB"
(( rss1 < rss0 + 100000 )) || fail "oversized: stage 1 grew by $((rss1 - rss0)) kB"
[[ $(( $(refusals) - before )) -ge 2 ]] || fail "oversized: stage 1 did not refuse both headers"

# An authenticated peer (it holds the token) claims stage 0's link to stage 1 and sends a header beyond the
# shard's limits: stage 1 closes that link before allocating; a round whose frames were on the replaced link
# fails (data plane), the coordinator re-wires and the streams resume.
start_batch badframe
sleep 0.5
inA python3 - "$ipB" "$tmp/token" > "$tmp/badframe.out" 2>&1 << 'EOF'
import hashlib, hmac, os, socket, struct, sys
token = open(sys.argv[2], "rb").read().rstrip()
s = socket.create_connection((sys.argv[1], 7003))
s.settimeout(10)
def read(n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            raise SystemExit("closed during the handshake")
        b += c
    return b
hello = struct.pack("<IIii", 0x48534B4C, 1, 0, 1) + os.urandom(32)  # "LSKH" v1, stage 0 -> stage 1
s.sendall(hello)
challenge = read(64)
assert hmac.compare_digest(challenge[32:], hmac.new(token, b"listener" + hello + challenge[:32], hashlib.sha256).digest())
s.sendall(hmac.new(token, b"dialer" + hello + challenge[:32], hashlib.sha256).digest())
code, length = struct.unpack("<II", read(8))
read(length)
print("verdict", code)
s.sendall(struct.pack("<IIQIiiI", 0x4C534B46, 2, 1, 0, 16384, 16384, 0))
print("closed" if s.recv(64) == b"" else "open")
EOF
finish_batch badframe
grep -q "verdict 0" "$tmp/badframe.out" && grep -q "closed" "$tmp/badframe.out" ||
  fail "badframe: the authenticated peer was not taken and then closed: $(cat "$tmp/badframe.out")"
grep -q "closing the link from .*: frame: " "$tmp/stage1.log" || fail "badframe: stage 1 did not log the bad frame"
grep -q "pipeline data plane failed" "$tmp/coordinator.log" &&
  echo "badframe: a round failed on the data plane; the coordinator suspended the streams and re-wired"

# kill -9 of stage 1 mid-stream; restart after 2 s.
start_batch kill9
sleep 0.5
still_running || fail "kill9: the batch ended before the kill; raise max_tokens"
t_kill=$(now)
kill -9 "$stage1_pid"
wait "$stage1_pid" 2> /dev/null
t_down=$(wait_code_after 503 "$t_kill") || fail "kill9: health never turned NOT_SERVING"
sleep 2
t_restart=$(now)
start_stage1
t_up=$(wait_code_after 200 "$t_restart") || fail "kill9: health never came back to SERVING"
finish_batch kill9
[[ -n "${t_down:-}" && -n "${t_up:-}" ]] &&
  printf 'kill9: stage death -> NOT_SERVING %.3f s; restart -> SERVING %.3f s\n' \
    "$(calc "$t_down - $t_kill")" "$(calc "$t_up - $t_restart")"

# SIGSTOP of stage 1 for 20 s mid-stream.
start_batch sigstop
sleep 0.5
still_running || fail "sigstop: the batch ended before the stop; raise max_tokens"
kill -STOP "$stage1_pid"
sleep 20
kill -CONT "$stage1_pid"
finish_batch sigstop

# netem on node A's end of the link: 50 ms delay, 1% loss.
if inA tc qdisc add dev "$vA" root netem delay 50ms loss 1% 2> "$tmp/netem.err"; then
  start_batch netem
  finish_batch netem
  inA tc qdisc del dev "$vA" root
else
  echo "SKIP case netem: tc netem is not available in this kernel ($(head -1 "$tmp/netem.err"))"
fi

# delay: stage 1 restarted to advertise the proxy, so stage 0's activations take +50 ms each way; one
# request first lets the coordinator notice the restart and restore the stage.
nsenter --net="/run/netns/$nsA" python3 "$src/tests/transport/delay_proxy.py" "$ipP" 7003 "$ipB" 7003 0.05 > "$tmp/proxy.log" 2>&1 &
pids+=($!)
kill -TERM "$stage1_pid"
wait "$stage1_pid" 2> /dev/null
start_stage1 "$ipP"
for _ in $(seq 1 100); do grep -q "data $ipP:7003" "$tmp/stage1.log" && break; sleep 0.1; done
inA "$bin/layerskip-client" --server "$ipA:7000" --prompt "warm up" --max-tokens 8 --timeout 120 > /dev/null 2>&1 ||
  fail "delay: the first request after re-advertising failed"
start_batch delay
finish_batch delay
grep -q "delay_proxy:" "$tmp/proxy.log" || fail "delay: the proxy did not start"

kill -0 "$coordinator_pid" 2> /dev/null || fail "the coordinator exited"
if (( fails > 0 )); then
  echo "--- coordinator"; tail -20 "$tmp/coordinator.log"
  echo "--- stage 0"; tail -20 "$tmp/stage0.log"
  echo "--- stage 1"; tail -20 "$tmp/stage1.log"
  echo "two-node test: $fails failure(s)"
  exit 1
fi
echo "two-node test: all cases passed"
