#!/usr/bin/env bash
# Builds llama.cpp's llama-bench (and llama-quantize) for this host from the source vendored in the
# llama-cpp-python sdist on PyPI. Not part of CI.
#   usage: bench/peers/build_llama_cpp.sh [WORK_DIR] [VERSION]
# Prints the directory that holds the binaries and convert_hf_to_gguf.py on its last line.
set -euo pipefail
work="${1:-${HOME}/.cache/layerskip-peers}"
version="${2:-0.3.36}"
jobs="${JOBS:-2}"
mkdir -p "$work"
cd "$work"
sdist="llama_cpp_python-${version}.tar.gz"
if [[ ! -f "$sdist" ]]; then
  pip download --no-deps --no-binary :all: "llama-cpp-python==${version}" -d . >&2
fi
src="llama_cpp_python-${version}/vendor/llama.cpp"
[[ -d "$src" ]] || tar xzf "$sdist"
build="$work/build-${version}"
if [[ ! -x "$build/bin/llama-bench" || ! -x "$build/bin/llama-quantize" ]]; then
  cmake -S "$src" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
    -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF \
    -DBUILD_SHARED_LIBS=OFF >&2
  nice -n 10 cmake --build "$build" -j "$jobs" --target llama-bench llama-quantize >&2
fi
echo "$work/$src"
echo "$build/bin"
