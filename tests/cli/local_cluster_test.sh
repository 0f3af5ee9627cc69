#!/usr/bin/env bash
# launch/local-cluster.sh supervises its cluster: a worker killed with SIGKILL mid-stream is restarted on its
# port, the coordinator restores the stage and the stream ends with exactly `layerskip generate`'s tokens;
# Ctrl-C (SIGINT to the process group) stops every process.
#   tests/cli/local_cluster_test.sh BIN_DIR SOURCE_DIR
set -uo pipefail
set -m  # background jobs get their own process group and keep SIGINT (as under a terminal)
bin_dir="$1"
src="$2"
tmp=$(mktemp -d)
lc=""
trap '[[ -n "$lc" ]] && kill -TERM -- "-$lc" 2>/dev/null; rm -rf "$tmp"' EXIT
failures=0
passed=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
ok() { passed=$((passed + 1)); }

# A base port P below the ephemeral range with P, P+1, P+2 free.
port=$(python3 - <<'PY'
import random, socket
for _ in range(1000):
    p = random.randrange(20000, 32000)
    try:
        socks = []
        for q in (p, p + 1, p + 2):
            s = socket.socket(); s.bind(("127.0.0.1", q)); socks.append(s)
        print(p); break
    except OSError:
        pass
    finally:
        for s in socks: s.close()
PY
)
"$src/launch/local-cluster.sh" --model "$src/models/tiny-random" --workers 2 --exit-layer 2 --port "$port" \
  --bin-dir "$bin_dir" >"$tmp/cluster.log" 2>&1 &
lc=$!
for _ in $(seq 1 600); do grep -q "health SERVING" "$tmp/cluster.log" && break; sleep 0.1; done
grep -q "health SERVING" "$tmp/cluster.log" && ok || { fail "the cluster did not start: $(cat "$tmp/cluster.log")"; exit 1; }
procs=$(pgrep -P "$lc" | tr '\n' ' ')
[[ $(echo $procs | wc -w) -eq 3 ]] && ok || fail "expected 3 processes under the supervisor, got '$procs'"

# --ignore-eos: the stream runs its full 1500 tokens on every CPU kernel path (where the random model's EOS
# falls depends on the path's arithmetic), so the kill below lands mid-stream.
args=(--prompt-ids 100,200 --max-tokens 1500 --ignore-eos --mode self-speculative --exit-layer 2 --speculations 3)
"$bin_dir/layerskip" generate --model "$src/models/tiny-random" --threads 1 --json "${args[@]}" >"$tmp/want.json" \
  || fail "layerskip generate"
"$bin_dir/layerskip" client --server "127.0.0.1:$port" --json --timeout 120 "${args[@]}" >"$tmp/got.json" 2>"$tmp/client.err" &
client=$!
sleep 0.3
victim=$(pgrep -P "$lc" -f "layerskip-worker --listen 127.0.0.1:$((port + 2))")
kill -KILL "$victim" && ok || fail "no worker 2 to kill"
for _ in $(seq 1 300); do grep -q "worker 2 restarted" "$tmp/cluster.log" && break; sleep 0.1; done
grep -q "worker 2 restarted" "$tmp/cluster.log" && ok || fail "worker 2 was not restarted: $(cat "$tmp/cluster.log")"
wait "$client" && ok || fail "the stream did not survive the restart: $(cat "$tmp/client.err")"
grep -q "1 running requests wait" "$tmp/cluster.log" && ok || fail "the stream was not suspended (killed too late?)"
python3 - "$tmp/want.json" "$tmp/got.json" <<'PY' && ok || fail "the resumed stream differs from layerskip generate"
import json, sys
want, got = (json.load(open(p)) for p in sys.argv[1:3])
sys.exit(0 if want["ids"] == got["ids"] and len(got["ids"]) == 1500 else 1)
PY

procs=$(pgrep -P "$lc" | tr '\n' ' ')
kill -INT -- "-$lc"  # Ctrl-C
for _ in $(seq 1 200); do kill -0 "$lc" 2>/dev/null || break; sleep 0.1; done
kill -0 "$lc" 2>/dev/null && fail "local-cluster.sh still runs after SIGINT" || ok
for p in $procs; do kill -0 "$p" 2>/dev/null && fail "process $p still runs after SIGINT"; done
lc=""
echo "$passed passed, $failures failed"
[ $failures -eq 0 ]
