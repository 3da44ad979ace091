#!/bin/bash
# The "Your own model" table of docs/BENCHMARKS.md: torchvision models trained by plain PyTorch
# (tests/bench/train_torchvision.py) on Fashion-MNIST at 3x32x32, then quantized by qnet-worker at
# W4A4 and W2A2 from that same file. Prints a Markdown table with PyTorch's own top-1 of each
# float model beside the float top-1 qnet reports for it (they must agree).
#
#   tests/bench/byom_table.sh [BUILD_DIR]
#
# Environment: OUT (default /tmp/qnet-byom-table), ARCHS ("resnet18 mobilenet_v2 efficientnet_b0"),
# FLOAT_EPOCHS (3), QN_EPOCHS (2), TRAIN_SAMPLES (20000), TEST_SAMPLES (0 = all 10000),
# CONFIGS ("W4A4 W2A2").
set -euo pipefail
build=${1:-build}
worker="$build/workers/worker/qnet-worker"
[[ -x $worker ]] || { echo "no $worker: build the project first" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
out=${OUT:-/tmp/qnet-byom-table}
archs=${ARCHS:-resnet18 mobilenet_v2 efficientnet_b0}
configs=${CONFIGS:-W4A4 W2A2}
mkdir -p "$out"

printf '| model | PyTorch float top-1 | qnet float top-1 | setting | quantized top-1 | delta (points) | TorchScript artifact top-1 | size ratio | QN time |\n'
printf '|---|---|---|---|---|---|---|---|---|\n'
for arch in $archs; do
  model="$out/$arch.pt"
  if [[ ! -f $model ]]; then
    python3 "$here/train_torchvision.py" "$arch" "$model" --epochs "${FLOAT_EPOCHS:-3}" \
      --train-samples "${TRAIN_SAMPLES:-20000}" >"$out/$arch.train.json"
  fi
  for c in $configs; do
    [[ $c =~ ^W([0-9]+)A([0-9]+)$ ]] || { echo "bad config $c" >&2; exit 2; }
    start=$(date +%s)
    "$worker" run --model "$model" --dataset fashion-mnist --input-shape 3x32x32 \
      --input-mean 0.5 --input-std 0.5 --weight-bits "${BASH_REMATCH[1]}" \
      --activation-bits "${BASH_REMATCH[2]}" --epochs "${QN_EPOCHS:-2}" \
      --max-train-samples "${TRAIN_SAMPLES:-20000}" --max-test-samples "${TEST_SAMPLES:-0}" \
      --export metrics,packed,torchscript --out "$out/$arch-$c" >"$out/$arch-$c.log" 2>&1
    secs=$(( $(date +%s) - start ))
    python3 - "$out/$arch.train.json" "$out/$arch-$c/metrics.json" "$arch" "$c" "$secs" <<'PY'
import json, sys
t, m = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
arch, c, secs = sys.argv[3], sys.argv[4], int(sys.argv[5])
f, q = m['float_top1'], m['quantized_top1']
ts = m.get('parity', {}).get('torchscript_top1')
ts = f'{100 * ts:.2f}' if ts is not None else 'n/a'
print(f"| {arch} | {100 * t['pytorch_top1']:.2f} | {100 * f:.2f} | {c} | {100 * q:.2f} "
      f"| {100 * (q - f):+.2f} | {ts} | {m['compression_ratio']:.1f}x | {secs} s |")
PY
  done
done
