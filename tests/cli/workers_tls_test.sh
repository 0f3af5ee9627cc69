#!/usr/bin/env bash
# The coordinator drives pipeline workers over TLS (--workers-tls-ca; the workers' --tls-cert/--tls-key, the
# layout k8s/pipeline-lws.yaml uses): two real workers and a coordinator on loopback; the greedy output
# equals `layerskip generate`; without the CA the coordinator refuses to start.
#   tests/cli/workers_tls_test.sh BIN_DIR SOURCE_DIR
set -uo pipefail
bin="$1"
src="$2"
model="$src/models/tiny-random"
failures=0
passed=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
ok() { passed=$((passed + 1)); }

tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done; rm -rf "$tmp"; }
trap cleanup EXIT
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost \
  -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" -keyout "$tmp/key.pem" -out "$tmp/cert.pem" >/dev/null 2>&1 ||
  { echo "FAIL: openssl"; exit 1; }
printf 'cluster-secret\n' >"$tmp/cluster"

workers=""
for i in 0 1; do
  "$bin/layerskip-worker" --listen 127.0.0.1:0 --token-file "$tmp/cluster" --tls-cert "$tmp/cert.pem" \
    --tls-key "$tmp/key.pem" >"$tmp/w$i" 2>&1 &
  pids+=($!)
  for _ in $(seq 200); do grep -q "listening on" "$tmp/w$i" && break; sleep 0.1; done
  port=$(grep -o '127.0.0.1:[0-9]*' "$tmp/w$i" | head -1)
  [ -n "$port" ] || { echo "FAIL: worker $i did not start: $(cat "$tmp/w$i")"; exit 1; }
  workers="${workers:+$workers,}$port"
done

start() {  # coordinator flags...; sets $grpc (port) or returns 1
  "$bin/layerskip-coordinator" --model "$model" --threads 1 --listen 127.0.0.1:0 --workers "$workers" \
    --stages 0-1,2-3 --default-exit-layer 2 --cluster-token-file "$tmp/cluster" "$@" >"$tmp/c.out" 2>"$tmp/c.err" &
  cpid=$!
  pids+=($cpid)
  # The coordinator serves at once, NOT_SERVING, and wires the workers in the background: wait for SERVING.
  for _ in $(seq 600); do
    grep -q "health SERVING" "$tmp/c.err" && break
    kill -0 $cpid 2>/dev/null || return 1
    sleep 0.1
  done
  grep -q "health SERVING" "$tmp/c.err" || return 1
  grpc=$(grep -o '(port [0-9]*)' "$tmp/c.out" | grep -o '[0-9]*')
  [ -n "$grpc" ]
}

# Plaintext to TLS workers: the coordinator cannot reach them and, past --workers-wait, exits with a clear line.
if start --workers-wait 3; then fail "the coordinator reached TLS workers without --workers-tls-ca"; else
  wait $cpid 2>/dev/null
  grep -q "workers not ready within --workers-wait" "$tmp/c.err" && ok || fail "no clear error: $(cat "$tmp/c.err")"
fi
if start --workers-tls-ca "$tmp/cert.pem"; then
  want=$("$bin/layerskip" generate --model "$model" --json --threads 1 --prompt "def main():" --max-tokens 24 |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["ids"])')
  got=$("$bin/layerskip-client" --server "127.0.0.1:$grpc" --prompt "def main():" --max-tokens 24 --mode self-speculative \
    --exit-layer 2 --speculations 3 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["ids"])')
  [ -n "$want" ] && [ "$got" = "$want" ] && ok || fail "TLS pipeline gave $got, want $want"
else
  fail "the coordinator did not start with --workers-tls-ca: $(cat "$tmp/c.err")"
fi

echo "$passed passed, $failures failed"
[ $failures -eq 0 ]
