#!/usr/bin/env bash
# k8s/: the manifests' security, probe, resource, TLS and GPU rules, every flag they pass exists in the
# binaries, `kubernetes-validate --strict` on every object (LeaderWorkerSet templates as Pods), the
# Dockerfile's structure and copied files (tests/cli/k8s_check.py), and the LeaderWorkerSet leader script.
#   tests/cli/k8s_test.sh BIN_DIR SOURCE_DIR
set -uo pipefail
bin="$1"
src="$2"
failures=0
passed=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
ok() { passed=$((passed + 1)); }

# A Python with PyYAML and kubernetes-validate (requirements.txt).
py=""
for p in python3 /usr/bin/python3; do
  if "$p" -c "import yaml, kubernetes_validate" 2>/dev/null; then py="$p"; break; fi
done
if [ -z "$py" ]; then
  fail "no python3 with yaml and kubernetes_validate (launch/install-deps.sh --python)"
else
  "$py" "$src/tests/cli/k8s_check.py" "$bin" "$src" && ok || fail "k8s_check.py"
fi

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
