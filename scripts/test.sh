#!/usr/bin/env bash
# Installs what is missing, builds everything and runs every test (ctest). CI runs this.
#   BUILD_DIR   build folder (default build/)
#   QNET_PYTHON Python whose PyTorch provides LibTorch (default python3)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
scripts/install-deps.sh
export CCACHE_DIR=${CCACHE_DIR:-$HOME/.cache/qnet-ccache}
# Paths relative to the checkout in ccache's hashes: another clone of the repository reuses the
# cache.
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$PWD}
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DQNET_PYTHON="${QNET_PYTHON:-python3}"
cmake --build "$BUILD_DIR" -j"$(nproc)"
# The Torch-free components once more with clang, whose -Wthread-safety checks the locking
# annotations (ABSL_GUARDED_BY and friends) that GCC ignores. Compile only: the tests ran above.
cmake -S . -B "$BUILD_DIR-clang" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER=clang++ \
  -DQNET_BUILD_ENGINE=OFF -DQNET_BUILD_TESTS=OFF -DQNET_BUILD_BENCHMARKS=OFF \
  -DQNET_THREAD_SAFETY_ANALYSIS=ON >/dev/null
cmake --build "$BUILD_DIR-clang" -j"$(nproc)"
# Every test runs once: a test that fails only sometimes is a bug to fix, not to retry.
ctest --test-dir "$BUILD_DIR" --output-on-failure -j"$(nproc)" --timeout 600
