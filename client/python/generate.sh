#!/bin/bash
# Generates the Python protobuf/gRPC stubs of qnet's API into OUT_DIR (default: ./gen), so that
# `import qnet.v1.job_pb2` works with OUT_DIR on sys.path. CMake's qnet_python_stubs target runs
# it into the build tree; nothing generated is committed.
#   client/python/generate.sh /tmp/qnet-stubs && PYTHONPATH=/tmp/qnet-stubs:client/python python3 ...
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
proto_root=$(cd "$here/../../proto" && pwd)
out=${1:-$here/gen}
py=${QNET_PYTHON:-python3}
mkdir -p "$out"
"$py" -m grpc_tools.protoc --proto_path="$proto_root" --python_out="$out" --grpc_python_out="$out" \
  "$proto_root"/qnet/v1/*.proto
