#!/bin/bash
# The "ONNX in, TorchScript in" table of docs/BENCHMARKS.md: one torchvision ResNet-18 trained by
# plain PyTorch (tests/bench/train_torchvision.py) on Fashion-MNIST at 3x32x32 and saved as
# TorchScript, then exported from that file to ONNX twice: as torch.onnx.export does by default
# (batch norms folded into the convolutions) and with do_constant_folding=False (batch norms
# kept). qnet-worker quantizes each file at the same settings and seed; a setting's rows are one
# model brought three ways.
#
#   tests/bench/onnx_vs_torchscript.sh [BUILD_DIR]
#
# Environment: OUT (default /tmp/qnet-onnx-vs-torchscript), FLOAT_EPOCHS (3), QN_EPOCHS (2),
# TRAIN_SAMPLES (20000: float training), QN_SAMPLES (TRAIN_SAMPLES: QN fine-tuning),
# TEST_SAMPLES (0 = all 10000), CONFIGS ("W4A4 W2A2"), MODELS (the files to quantize: "resnet18.pt
# resnet18.onnx resnet18.bn.onnx"), SEED (1).
set -euo pipefail
build=${1:-build}
worker="$build/workers/worker/qnet-worker"
[[ -x $worker ]] || { echo "no $worker: build the project first" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
out=${OUT:-/tmp/qnet-onnx-vs-torchscript}
configs=${CONFIGS:-W4A4 W2A2}
seed=${SEED:-1}
train_samples=${TRAIN_SAMPLES:-20000}
mkdir -p "$out"

if [[ ! -f $out/resnet18.pt ]]; then
  python3 -W ignore "$here/train_torchvision.py" resnet18 "$out/resnet18.pt" \
    --epochs "${FLOAT_EPOCHS:-3}" --train-samples "$train_samples" --seed "$seed" \
    >"$out/resnet18.train.json"
fi
if [[ ! -f $out/resnet18.bn.onnx ]]; then
  python3 -W ignore - "$out" <<'PY'
import sys
import torch
out = sys.argv[1]
model = torch.jit.load(f'{out}/resnet18.pt').eval()
for name, fold in (('resnet18.onnx', True), ('resnet18.bn.onnx', False)):
    torch.onnx.export(model, (torch.randn(2, 3, 32, 32),), f'{out}/{name}', dynamo=False,
                      opset_version=17, do_constant_folding=fold, input_names=['pixel_values'],
                      output_names=['logits'],
                      dynamic_axes={'pixel_values': {0: 'batch'}, 'logits': {0: 'batch'}})
PY
fi

printf '| model file | PyTorch float top-1 | qnet float top-1 | setting | quantized top-1 | delta (points) | QN time |\n'
printf '|---|---|---|---|---|---|---|\n'
for c in $configs; do
  [[ $c =~ ^W([0-9]+)A([0-9]+)$ ]] || { echo "bad config $c" >&2; exit 2; }
  for file in ${MODELS:-resnet18.pt resnet18.onnx resnet18.bn.onnx}; do
    run="$out/$file-$c"
    start=$(date +%s)
    "$worker" run --model "$out/$file" --dataset fashion-mnist \
      --input-shape 3x32x32 --input-mean 0.5 --input-std 0.5 --seed "$seed" \
      --weight-bits "${BASH_REMATCH[1]}" --activation-bits "${BASH_REMATCH[2]}" \
      --epochs "${QN_EPOCHS:-2}" --max-train-samples "${QN_SAMPLES:-$train_samples}" \
      --max-test-samples "${TEST_SAMPLES:-0}" --export metrics --out "$run" >"$run.log" 2>&1
    secs=$(( $(date +%s) - start ))
    python3 - "$out/resnet18.train.json" "$run/metrics.json" "$file" "$c" "$secs" <<'PY'
import json, sys
t, m = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
name, c, secs = sys.argv[3], sys.argv[4], int(sys.argv[5])
f, q = m['float_top1'], m['quantized_top1']
print(f"| {name} | {100 * t['pytorch_top1']:.2f} | {100 * f:.2f} | {c} | {100 * q:.2f} "
      f"| {100 * (q - f):+.2f} | {secs} s |")
PY
  done
done
