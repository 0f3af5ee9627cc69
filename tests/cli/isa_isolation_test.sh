#!/usr/bin/env bash
# One binary for every x86-64 host: AVX-512 instructions may appear only in the AVX-512 kernels (matmul,
# and the attention tile of kernels/attention_avx512_cpu.cc)
# (namespaces layerskip::cpu::avx512, ::avx512bf16 and ::amx, compiled under their target pragma, and the
# int8 kernel's VnniPath in kernels/matmul_int8_cpu.cc, compiled under its target attribute), never in a
# function the AVX2 path runs (an inline helper or library template compiled for AVX-512 in those files
# and kept by the linker for everyone would crash an AVX2-only host). AMX instructions (ldtilecfg, tile*,
# tdp*) may appear only in layerskip::cpu::amx (kernels/matmul_amx_cpu.cc). Checks the disassembly of
# every binary.
set -euo pipefail
bin="$1"
command -v objdump >/dev/null || { echo "objdump not found (binutils)"; exit 1; }
status=0
for b in "$bin/layerskip" "$bin/layerskip-coordinator" "$bin/layerskip-worker"; do
  [ -x "$b" ] || continue
  dis=$(objdump -d --no-show-raw-insn -C "$b")
  leaks=$(awk '
    /^[0-9a-f]+ <.*>:$/ { fn = $0; next }
    /%zmm|%k[1-7]|%[xy]mm(1[6-9]|2[0-9]|3[01])|vdpbf16|vcvtne2ps2bf16|vpternlog|vmovdq[ua](8|16|32|64)|\tk(mov|or|and)|%tmm|ldtilecfg|sttilecfg|tilerelease/ { print fn }' <<<"$dis" |
    sort -u | grep -v 'layerskip::cpu::avx512::\|layerskip::cpu::avx512bf16::\|layerskip::cpu::amx::\|layerskip::cpu::(anonymous namespace)::VnniPath::' || true)
  amx_leaks=$(awk '
    /^[0-9a-f]+ <.*>:$/ { fn = $0; next }
    /%tmm|ldtilecfg|sttilecfg|tilerelease/ { print fn }' <<<"$dis" | sort -u | grep -v 'layerskip::cpu::amx::' || true)
  found=$(grep -c 'layerskip::cpu::avx512bf16::.*>:$' <<<"$dis" || true)
  found_amx=$(awk '/^[0-9a-f]+ <.*>:$/ { fn = $0; next } /tdpbf16ps/ { print fn }' <<<"$dis" |
    sort -u | grep -c 'layerskip::cpu::amx::' || true)
  if [ -n "$leaks" ] || [ -n "$amx_leaks" ]; then
    echo "FAIL: AVX-512 or AMX code outside their kernels in $b:"
    echo "$leaks"
    echo "$amx_leaks"
    status=1
  elif [ "$found" = 0 ] || [ "$found_amx" = 0 ]; then
    echo "FAIL: no AVX512-BF16 kernel or no AMX-BF16 kernel in $b (is the dispatch built?)"
    status=1
  else
    echo "ok: $b ($found AVX512-BF16 kernel functions, $found_amx with tdpbf16ps; no AVX-512 or AMX code elsewhere)"
  fi
done
exit $status
