#!/usr/bin/env bash
# The Torch-free components (common, datasets, server, client) built with clang under sanitizers
# and their tests run; the parsers of outside bytes fuzzed. CI runs every step (.ci/run); a
# finding in any fails it.
#
#   scripts/sanitize.sh [STEP...]    STEP: asan (default: asan fuzz tsan)
#     asan  build-asan/: every target with AddressSanitizer and UndefinedBehaviorSanitizer (and
#           libFuzzer's coverage, so the fuzz step reuses the build); ctest.
#     fuzz  each libFuzzer target (tests/fuzz/fuzz_target.cmake) for QNET_FUZZ_SECONDS (default
#           20) from its seed corpus; a crash fails, its input left in build-asan/fuzz/crashes/.
#     tsan  build-tsan/: every target with ThreadSanitizer; ctest.
#   BUILD_PREFIX  build folders' prefix (default build: build-asan, build-tsan)
#   JOBS          parallel compiles and tests (default nproc)
#
# Not run under sanitizers: the tests that run no C++ of ours (Python client, deploy manifests,
# Prometheus config, the dashboard's script) and, as they need LibTorch, the engine and e2e tests
# (not built here: -DQNET_BUILD_ENGINE=OFF).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_PREFIX=${BUILD_PREFIX:-build}
JOBS=${JOBS:-$(nproc)}
export CCACHE_DIR=${CCACHE_DIR:-$HOME/.cache/qnet-ccache}
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$PWD}
steps=("$@")
((${#steps[@]})) || steps=(asan fuzz tsan)
not_native='^(python_client_test|deploy_check|prometheus_config_check|prometheus_rules_test|dashboard_script_test)$'

# -O1 and line tables only: a sanitizer build compiles twice as fast as -O2 -g and its reports
# still name file and line.
configure() {  # BUILD_DIR CMAKE_OPTIONS...
  local dir=$1
  shift
  cmake -S . -B "$dir" -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -gline-tables-only" -DQNET_BUILD_ENGINE=OFF \
    -DQNET_BUILD_BENCHMARKS=OFF "$@" >/dev/null
}

# Every test runs once, as in scripts/test.sh; halt on the first report so it fails its test.
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:detect_stack_use_after_return=1:strict_string_checks=1:check_initialization_order=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/scripts/sanitize/lsan.supp}
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1:suppressions=$PWD/scripts/sanitize/tsan.supp}

for step in "${steps[@]}"; do
  start=$SECONDS
  case $step in
    asan)
      configure "$BUILD_PREFIX-asan" -DQNET_FUZZ=ON
      cmake --build "$BUILD_PREFIX-asan" -j"$JOBS"
      ctest --test-dir "$BUILD_PREFIX-asan" --output-on-failure -j"$JOBS" --timeout 600 \
        -LE '^fuzz$' -E "$not_native"
      ;;
    fuzz)
      configure "$BUILD_PREFIX-asan" -DQNET_FUZZ=ON -DQNET_FUZZ_SECONDS="${QNET_FUZZ_SECONDS:-20}"
      cmake --build "$BUILD_PREFIX-asan" --target qnet_fuzzers -j"$JOBS"
      ctest --test-dir "$BUILD_PREFIX-asan" --output-on-failure -j"$JOBS" -L '^fuzz$'
      ;;
    tsan)
      configure "$BUILD_PREFIX-tsan" -DQNET_SANITIZE=thread
      cmake --build "$BUILD_PREFIX-tsan" -j"$JOBS"
      # scripts/sanitize/tsan_absl_sync.cc: how the system's absl::Mutex orders threads.
      LD_PRELOAD=$(realpath "$BUILD_PREFIX-tsan/libqnet_tsan_absl_sync.so") \
        ctest --test-dir "$BUILD_PREFIX-tsan" --output-on-failure -j"$JOBS" --timeout 600 \
        -E "$not_native"
      ;;
    *)
      echo "unknown step $step (asan, fuzz, tsan)" >&2
      exit 2
      ;;
  esac
  echo "sanitize.sh: $step passed in $((SECONDS - start)) s"
done
