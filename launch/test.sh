#!/usr/bin/env bash
# Installs dependencies, builds, and runs every test through ctest (unit, cli, and, when clang exists, the
# fuzzers, the service and pipeline tests under ASan + UBSan, and the pipeline tests under TSan).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
launch/install-deps.sh --python  # the Python tests (train/) need torch and transformers
launch/build.sh
jobs="${LAYERSKIP_JOBS:-$(nproc)}"
status=0
(cd build && ctest --output-on-failure -j "$jobs" --timeout 600) || status=1

# libFuzzer targets: a separate clang build, each target run briefly.
if command -v clang++ >/dev/null; then
  cmake -S . -B build/fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLAYERSKIP_FUZZ=ON \
    -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ >/dev/null
  cmake --build build/fuzz -j "$jobs"
  (cd build/fuzz && ctest --output-on-failure --timeout 300) || status=1

  # Sanitizers, each a clang build of just the targets it runs; every report is written under REPORTS
  # (log_path) and fails the run, even one from a child process the tests kill.
  # - ASan + UBSan: the service and pipeline tests (the coordinator and worker processes, the HTTP server,
  #   the in-process pipeline and its data links, malformed requests from grpcio) and the Worker service fuzzer.
  # - TSan: the in-process pipeline tests (round drivers, heartbeat threads, gRPC clients, the data links) and
  #   their worker processes. Not the coordinator's callback server: Debian's gRPC is not built with TSan, and the calls it
  #   hands between threads inside libgrpc show as races in the reactors (tests/sanitizers/tsan.supp).
  tsan_supp="$PWD/tests/sanitizers/tsan.supp"
  for san in address thread; do
    dir="build/sanitize-$san"
    cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Sanitize -DLAYERSKIP_SANITIZE="$san" -DLAYERSKIP_CUDA=OFF \
      -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ >/dev/null
    if [[ "$san" == address ]]; then
      targets=(layerskip-coordinator layerskip-coordinator-failing layerskip-worker layerskip service_coordinator_test service_cluster_test
               service_http_test pipeline_pipeline_executor_test pipeline_data_plane_test pipeline_step_deadline_test
               worker_service_fuzz)
      select=(-L "service|pipeline|fuzz" -LE "python|netns")  # not the Python client tests nor the namespace one
    else
      targets=(layerskip-worker pipeline_pipeline_executor_test pipeline_data_plane_test pipeline_step_deadline_test)
      select=(-L pipeline -LE "service|netns")
    fi
    cmake --build "$dir" -j "$jobs" --target "${targets[@]}"
    reports="$PWD/$dir/reports"
    rm -rf "$reports" && mkdir -p "$reports"
    (cd "$dir" && \
      ASAN_OPTIONS="halt_on_error=1:detect_leaks=1:log_path=$reports/asan" \
      UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$reports/ubsan" \
      TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:report_atomic_races=0:log_path=$reports/tsan:suppressions=$tsan_supp" \
      ctest "${select[@]}" --output-on-failure -j "$jobs" --timeout 600) || status=1
    # A report is an error, a race or a runtime error; the runtimes also log notes (e.g. "Symbolizer buffer
    # too small") to the same files, which are shown but do not fail the run.
    if compgen -G "$reports/*" >/dev/null; then
      if grep -lqE "ERROR|runtime error|WARNING: ThreadSanitizer|SUMMARY" "$reports"/*; then
        echo "sanitizer reports ($san):"; cat "$reports"/*; status=1
      else
        echo "sanitizer notes ($san), not reports:"; cat "$reports"/*
      fi
    fi
  done
fi
exit $status
