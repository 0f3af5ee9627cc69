#!/usr/bin/env bash
# layerskip-loadgen against a real coordinator on loopback with TLS and a bearer token: it runs a level
# without errors, and it prints the status and message of every failed request.
#   tests/cli/loadgen_test.sh BIN_DIR SOURCE_DIR
set -uo pipefail
bin="$1"
src="$2"
failures=0
passed=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
ok() { passed=$((passed + 1)); }

tmp=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost -addext subjectAltName=DNS:localhost \
  -keyout "$tmp/key.pem" -out "$tmp/cert.pem" >/dev/null 2>&1 || { echo "FAIL: openssl"; exit 1; }
printf 's3cret\r\n' >"$tmp/token"  # a token file with a Windows line end

"$bin/layerskip-coordinator" --model "$src/models/tiny-random" --threads 1 --listen 127.0.0.1:0 \
  --tls-cert "$tmp/cert.pem" --tls-key "$tmp/key.pem" --auth-token s3cret >"$tmp/out" 2>"$tmp/err" &
pid=$!
for _ in $(seq 600); do grep -q serving "$tmp/out" && break; sleep 0.1; done
port=$(grep -o '(port [0-9]*)' "$tmp/out" | grep -o '[0-9]*')
[ -n "$port" ] || { echo "FAIL: the coordinator did not start: $(cat "$tmp/err")"; exit 1; }

run() { "$bin/layerskip-loadgen" --server "localhost:$port" --tls-ca "$tmp/cert.pem" --concurrency 2 \
          --requests-per-stream 2 "$@" >"$tmp/lg.out" 2>"$tmp/lg.err"; }
if run --auth-token-file "$tmp/token" --max-tokens 8; then
  grep -Eq '^\| 2 \| [0-9]+ .*\| 0 \|$' "$tmp/lg.out" && ok || fail "no clean row: $(cat "$tmp/lg.out")"
else
  fail "loadgen with TLS and the token: $(cat "$tmp/lg.err")"
fi
# Requests the server refuses (prompt + max_tokens over the 2048-position context): each is reported.
run --auth-token s3cret --max-tokens 4000
n=$(grep -c 'request failed .*: INVALID_ARGUMENT: max_tokens: ' "$tmp/lg.err")
[ "$n" = 4 ] && ok || fail "expected 4 reported failures, got $n: $(cat "$tmp/lg.err")"
grep -Eq '^\| 2 \| .*\| 4 \|$' "$tmp/lg.out" && ok || fail "the table does not count 4 errors: $(cat "$tmp/lg.out")"
# A wrong token or no TLS: one clear line, non-zero exit.
run --auth-token wrong --max-tokens 8 && fail "a wrong token was accepted" || { grep -q UNAUTHENTICATED\\\|invalid "$tmp/lg.err" && ok || fail "wrong token: $(cat "$tmp/lg.err")"; }
"$bin/layerskip-loadgen" --server "localhost:$port" --auth-token s3cret --concurrency 1 >/dev/null 2>"$tmp/lg.err" \
  && fail "plaintext to a TLS port succeeded" || ok

echo "$passed passed, $failures failed"
[ $failures -eq 0 ]
