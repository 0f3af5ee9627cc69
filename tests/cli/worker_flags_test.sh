#!/usr/bin/env bash
# layerskip-worker's command line: --help, one-line errors for bad flags, no wildcard advertised, and the
# cluster token file read the same way by the worker and the coordinator (a "\r\n"-terminated file).
#   tests/cli/worker_flags_test.sh BIN_DIR SOURCE_DIR
set -uo pipefail
bin="$1"
src="$2"
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
tmp=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill -9 "$p" 2> /dev/null; done; wait 2> /dev/null; rm -rf "$tmp"' EXIT

out=$("$bin/layerskip-worker" --help) || fail "--help exited $?"
for f in --listen --data-port --advertise-address --transport --token-file --allow-unauthenticated --tls-cert --data-tls-ca --recv-timeout; do
  grep -q -- "$f" <<< "$out" || fail "--help does not list $f"
done

# Each bad command line: a non-zero exit and one line naming the problem.
expect_error() {  # $1: text the message must contain; the rest: flags
  local want="$1"; shift
  local err rc
  err=$("$bin/layerskip-worker" "$@" 2>&1 > /dev/null); rc=$?
  [[ $rc -ne 0 ]] || fail "'$*' exited 0"
  [[ $(wc -l <<< "$err") -eq 1 ]] || fail "'$*' printed more than one line: $err"
  grep -q -- "$want" <<< "$err" || fail "'$*' said '$err', expected '$want'"
}
expect_error "unknown flag --bogus" --listen 127.0.0.1:0 --bogus
expect_error "--listen HOST:PORT is required" --allow-unauthenticated
expect_error "--data-port" --listen 127.0.0.1:0 --allow-unauthenticated --data-port 70000
expect_error "wildcard" --listen 127.0.0.1:0 --allow-unauthenticated --advertise-address 0.0.0.0
expect_error "--transport 'carrier-pigeon'" --listen 127.0.0.1:0 --allow-unauthenticated --transport carrier-pigeon
expect_error "--device" --listen 127.0.0.1:0 --allow-unauthenticated --device gpu
expect_error "no cluster token" --listen 127.0.0.1:0
expect_error "--gpu-memory-fraction sizes a CUDA device's KV cache: it needs --device cuda:N" --listen 127.0.0.1:0 \
  --allow-unauthenticated --gpu-memory-fraction 0.5
expect_error "--gpu-memory-fraction must be in (0, 1]" --listen 127.0.0.1:0 --allow-unauthenticated --gpu-memory-fraction 1.5
expect_error "--kv-cache-positions must be >= 0" --listen 127.0.0.1:0 --allow-unauthenticated --kv-cache-positions -5
printf '\r\n' > "$tmp/empty"
expect_error "holds no token" --listen 127.0.0.1:0 --token-file "$tmp/empty"
expect_error "cannot read" --listen 127.0.0.1:0 --token-file "$tmp/missing"

# A token file written with "\r\n": the worker and the coordinator read the same token.
printf 'cluster-secret\r\n' > "$tmp/token"
"$bin/layerskip-worker" --listen 127.0.0.1:0 --token-file "$tmp/token" > "$tmp/w0.log" 2>&1 &
pids+=($!)
"$bin/layerskip-worker" --listen 127.0.0.1:0 --token-file "$tmp/token" > "$tmp/w1.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do grep -q listening "$tmp/w0.log" && grep -q listening "$tmp/w1.log" && break; sleep 0.1; done
port() { sed -n 's/.*listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$1"; }
grep -q "data 127.0.0.1:" "$tmp/w0.log" || fail "the worker does not advertise its --listen host: $(cat "$tmp/w0.log")"
"$bin/layerskip-coordinator" --model "$src/models/tiny-random" --listen 127.0.0.1:0 --threads 1 \
  --workers "127.0.0.1:$(port "$tmp/w0.log"),127.0.0.1:$(port "$tmp/w1.log")" --cluster-token-file "$tmp/token" \
  > "$tmp/c.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 300); do grep -q "serving\|layerskip-coordinator: .*\(error\|refused\|UNAUTH\)" "$tmp/c.log" && break; sleep 0.1; done
grep -q "serving" "$tmp/c.log" || fail "coordinator and workers disagree on the token: $(cat "$tmp/c.log")"

if (( failures > 0 )); then echo "worker_flags_test: $failures failure(s)"; exit 1; fi
echo "worker_flags_test: all passed"
