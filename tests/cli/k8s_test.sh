#!/usr/bin/env bash
# The Kubernetes manifests parse, every flag they pass to our binaries exists, and the LeaderWorkerSet
# leader script derives the workers' addresses from the LWS environment.
#   tests/cli/k8s_test.sh BIN_DIR SOURCE_DIR
set -uo pipefail
bin="$1"
src="$2"
failures=0
passed=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
ok() { passed=$((passed + 1)); }

# Debian's python3-yaml (launch/install-deps.sh) lives with /usr/bin/python3.
/usr/bin/python3 - "$src/k8s" "$bin" <<'PY' && ok || fail "manifests"
import glob, os, re, subprocess, sys, yaml
k8s, bin_dir = sys.argv[1], sys.argv[2]
usage = {}
for b in ("layerskip-coordinator", "layerskip-worker"):
    p = subprocess.run([os.path.join(bin_dir, b), "--help"], capture_output=True, text=True)
    usage[b] = p.stdout + p.stderr
kinds = set()
bad = []
for path in sorted(glob.glob(os.path.join(k8s, "*.yaml"))):
    for doc in yaml.safe_load_all(open(path)):
        kinds.add(doc["kind"])
        def containers(node):
            if isinstance(node, dict):
                for k, v in node.items():
                    if k == "containers":
                        yield from v
                    else:
                        yield from containers(v)
            elif isinstance(node, list):
                for v in node:
                    yield from containers(v)
        for c in containers(doc):
            argv = c.get("command", []) + c.get("args", [])
            binary = "layerskip-coordinator" if any("coordinator" in a or "k8s-leader" in a for a in argv) else "layerskip-worker"
            for a in argv:
                if a.startswith("--") and a not in usage[binary]:
                    bad.append(f"{os.path.basename(path)}: {c['name']}: {binary} has no flag {a}")
for want in ("Deployment", "Service", "LeaderWorkerSet"):
    if want not in kinds:
        bad.append(f"no {want} manifest")
print("\n".join(bad))
sys.exit(1 if bad else 0)
PY

# k8s-leader.sh with a fake coordinator: the --workers list for a group of 3.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/launch" "$tmp/build/bin"
cp "$src/launch/k8s-leader.sh" "$tmp/launch/"
printf '#!/bin/sh\necho "$@"\n' >"$tmp/build/bin/layerskip-coordinator"
chmod +x "$tmp/build/bin/layerskip-coordinator"
out=$(LWS_LEADER_ADDRESS=ls-0.ls.default LWS_GROUP_SIZE=3 "$tmp/launch/k8s-leader.sh" --model /m)
[ "$out" = "--workers ls-0-1.ls.default:50052,ls-0-2.ls.default:50052 --model /m" ] && ok || fail "k8s-leader.sh gave: $out"
LWS_LEADER_ADDRESS=ls-0.ls.default LWS_GROUP_SIZE=1 "$tmp/launch/k8s-leader.sh" >/dev/null 2>&1 && fail "group of 1 accepted" || ok

echo "$passed passed, $failures failed"
[ $failures -eq 0 ]
