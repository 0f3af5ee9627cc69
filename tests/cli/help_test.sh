#!/usr/bin/env bash
# Every binary answers --help (and -h) with its flags on stdout and exits 0; `layerskip COMMAND --help` too.
#   tests/cli/help_test.sh BIN_DIR SOURCE_DIR
set -uo pipefail
bin="$1"
failures=0
passed=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
ok() { passed=$((passed + 1)); }

# binary, a flag its usage (on stdout) must name
check() {
  local b="$1" flag="$2" opt out
  for opt in --help -h; do
    out=$("$bin/$b" $opt 2>/dev/null)
    rc=$?
    [ $rc -eq 0 ] || { fail "$b $opt exits $rc"; continue; }
    grep -q -- "$flag" <<<"$out" && ok || fail "$b $opt does not name $flag on stdout: $out"
  done
}
check layerskip "--model"
check layerskip-coordinator "--http-port"
check layerskip-client "--tls-ca"
check layerskip-loadgen "--tls-ca"
check layerskip-matmul-bench "--shape"
check layerskip-fma-peak "--threads"
check layerskip-worker "--advertise-address"
for cmd in generate inspect logits bench; do
  out=$("$bin/layerskip" $cmd --help 2>/dev/null) && grep -q -- "--model" <<<"$out" && ok || fail "layerskip $cmd --help"
done
out=$("$bin/layerskip" client --help 2>/dev/null) && grep -q -- "--server" <<<"$out" && ok || fail "layerskip client --help"
# An unknown flag is still an error.
"$bin/layerskip-loadgen" --nope >/dev/null 2>&1 && fail "loadgen accepted --nope" || ok
"$bin/layerskip-client" --nope >/dev/null 2>&1 && fail "client accepted --nope" || ok

echo "$passed passed, $failures failed"
[ $failures -eq 0 ]
