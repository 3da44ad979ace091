#!/usr/bin/env bash
# Installs what is missing, builds everything and runs every test (ctest). CI runs this.
#   BUILD_DIR   build folder (default build/)
#   QNET_PYTHON Python whose PyTorch provides LibTorch (default python3)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
scripts/install-deps.sh
export CCACHE_DIR=${CCACHE_DIR:-$HOME/.cache/qnet-ccache}
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DQNET_PYTHON="${QNET_PYTHON:-python3}"
cmake --build "$BUILD_DIR" -j"$(nproc)"
# A test that fails is re-run once; a second failure fails the run (timing tests on a loaded machine).
ctest --test-dir "$BUILD_DIR" --output-on-failure -j"$(nproc)" --timeout 600 --repeat until-pass:2
