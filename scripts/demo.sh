#!/usr/bin/env bash
# The first-run demo: installs what is missing, builds qnetd / qnet-worker / qnet, starts qnetd with
# its embedded SQLite store and one local worker, submits a real Fashion-MNIST job (LeNet-5, 2-bit
# weights and activations) with the CLI, shows its progress bar and final table, prints where the
# artifacts are, and stops the server.
#   BUILD_DIR  build folder (default build/)
#   OUT_DIR    where the artifacts land (default out/demo)
#   MODEL      model to quantize (default zoo:lenet5)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
OUT_DIR=${OUT_DIR:-out/demo}
MODEL=${MODEL:-zoo:lenet5}

scripts/install-deps.sh
export CCACHE_DIR=${CCACHE_DIR:-$HOME/.cache/qnet-ccache}
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DQNET_PYTHON="${QNET_PYTHON:-python3}" >/dev/null
cmake --build "$BUILD_DIR" -j"$(nproc)" --target qnetd qnet-worker qnet

data=$(mktemp -d)
log=$data/qnetd.log
"$BUILD_DIR/server/qnetd" --listen 127.0.0.1:0 --http-listen 127.0.0.1:0 --data-dir "$data" \
  --local-workers 1 >"$log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 1 300); do
  line=$(grep -m1 -o 'listening grpc=[^ ]* http=[^ ]*' "$log" || true)
  [[ -n $line ]] && break
  kill -0 "$server" 2>/dev/null || { cat "$log"; exit 1; }
  sleep 0.2
done
[[ -n $line ]] || { echo "qnetd did not start; see $log"; exit 1; }
grpc=${line#listening grpc=}; grpc=${grpc%% *}; http=${line##*http=}
export QNET_SERVER=$grpc
echo "qnetd is serving gRPC on $grpc; dashboard and metrics at http://$http/"

"$BUILD_DIR/client/qnet" submit --model "$MODEL" --dataset fashion-mnist \
  --weight-bits 2 --activation-bits 2 --pretrain-epochs 2 --epochs 2 --wait --json >"$data/job.json"
id=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['id'])" "$data/job.json")
rm -rf "$OUT_DIR"
"$BUILD_DIR/client/qnet" download "$id" -o "$OUT_DIR"
echo
echo "artifacts of job $id are in $OUT_DIR:"
ls -l "$OUT_DIR"
