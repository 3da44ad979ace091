#!/usr/bin/env bash
# The Torch-free components built with clang under sanitizers and their tests run; the parsers of
# outside bytes fuzzed. CI runs all three steps (.ci/run); any finding fails the step.
#
#   scripts/sanitize.sh [STEP...]    STEP: asan, fuzz, tsan (default: asan fuzz)
#     asan  build-asan/: every target with AddressSanitizer and UndefinedBehaviorSanitizer (and
#           libFuzzer's coverage, so the fuzz step reuses the build); runs $SANITIZE_TESTS and
#           every fuzz target's corpus replay.
#     fuzz  each libFuzzer target (tests/fuzz/fuzz_target.cmake) for QNET_FUZZ_SECONDS (default
#           20) from its seed corpus; a crash fails, its input left in build-asan/fuzz/crashes/.
#     tsan  build-tsan/: the same tests (not the replays) with ThreadSanitizer. Reports whose racing
#           accesses gRPC, Abseil or OpenSSL make inside their uninstrumented system libraries
#           (TSan cannot see how gRPC's threads hand data over) are suppressed, each with why,
#           in scripts/sanitize/tsan.supp; a race in qnet's code is fixed.
#   SANITIZE_TESTS  test binaries to run (default: common_test job_spec_test datasets_test
#                   server_test qnet_client_test qnet_cli_test; asan also qnetd_e2e_test, not yet
#                   checked under TSan). The worker and sandbox tests are Torch-free too but not
#                   yet part of the default; the engine and e2e tests need LibTorch.
#   BUILD_PREFIX    build folders' prefix (default build: build-asan, build-tsan)
#   JOBS            parallel compiles and tests (default nproc)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_PREFIX=${BUILD_PREFIX:-build}
JOBS=${JOBS:-$(nproc)}
default_tests="common_test job_spec_test datasets_test server_test qnet_client_test qnet_cli_test"
read -r -a tests <<<"${SANITIZE_TESTS:-$default_tests}"
read -r -a asan_tests <<<"${SANITIZE_TESTS:-$default_tests qnetd_e2e_test}"
export CCACHE_DIR=${CCACHE_DIR:-$HOME/.cache/qnet-ccache}
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$PWD}
steps=("$@")
((${#steps[@]})) || steps=(asan fuzz)

# A sanitizer finding aborts the process, so it fails its test.
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:detect_stack_use_after_return=1:strict_string_checks=1:check_initialization_order=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/scripts/sanitize/lsan.supp}
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1:suppressions=$PWD/scripts/sanitize/tsan.supp}

# -O1 and line tables only: a sanitizer build compiles about twice as fast as -O2 -g, and its
# reports still name file and line.
configure() {  # BUILD_DIR CMAKE_OPTIONS...
  local dir=$1
  shift
  cmake -S . -B "$dir" -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -gline-tables-only" -DQNET_BUILD_ENGINE=OFF \
    -DQNET_BUILD_BENCHMARKS=OFF "$@" >/dev/null
}

# Builds the TEST binaries in BUILD_DIR and runs each once, with PRELOAD (may be empty) as
# LD_PRELOAD; with REPLAY 1 also every fuzz target's corpus replay.
run_tests() {  # BUILD_DIR REPLAY PRELOAD TEST...
  local dir=$1 replay=$2 preload=$3 test binary
  shift 3
  local targets=("$@")
  if ((replay)); then targets+=(qnet_fuzz_replays); fi
  cmake --build "$dir" -j"$JOBS" --target "${targets[@]}"
  for test in "$@"; do
    binary=$(find "$dir/tests" -name "$test" -type f -perm -u+x | head -1)
    echo "sanitize.sh: $binary"
    LD_PRELOAD=$preload timeout 1200 "$binary" --gtest_brief=1
  done
  if ((replay)); then
    LD_PRELOAD=$preload ctest --test-dir "$dir" --output-on-failure -j"$JOBS" -L '^fuzz_replay$'
  fi
}

for step in "${steps[@]}"; do
  start=$SECONDS
  case $step in
    asan)
      configure "$BUILD_PREFIX-asan" -DQNET_FUZZ=ON
      run_tests "$BUILD_PREFIX-asan" 1 "" "${asan_tests[@]}"
      ;;
    fuzz)
      configure "$BUILD_PREFIX-asan" -DQNET_FUZZ=ON -DQNET_FUZZ_SECONDS="${QNET_FUZZ_SECONDS:-20}"
      cmake --build "$BUILD_PREFIX-asan" -j"$JOBS" --target qnet_fuzzers
      ctest --test-dir "$BUILD_PREFIX-asan" --output-on-failure -j"$JOBS" -L '^fuzz$'
      ;;
    tsan)
      configure "$BUILD_PREFIX-tsan" -DQNET_SANITIZE=thread
      cmake --build "$BUILD_PREFIX-tsan" -j"$JOBS" --target qnet_tsan_absl_sync
      # scripts/sanitize/tsan_absl_sync.cc: how the system's absl::Mutex orders threads. No corpus
      # replays: each runs one parser on one thread, nothing for TSan to find, and they would add
      # two minutes to CI.
      run_tests "$BUILD_PREFIX-tsan" 0 "$(realpath "$BUILD_PREFIX-tsan/libqnet_tsan_absl_sync.so")" \
        "${tests[@]}"
      ;;
    *)
      echo "unknown step $step (asan, fuzz, tsan)" >&2
      exit 2
      ;;
  esac
  echo "sanitize.sh: $step passed in $((SECONDS - start)) s"
done
