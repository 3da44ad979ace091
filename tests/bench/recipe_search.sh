#!/bin/bash
# Recipe choices for the QN fine-tuning, measured on a validation split carved from Fashion-MNIST's
# training images, never on its test set (docs/BENCHMARKS.md, "Choosing the recipe"). Writes an
# .npz whose train split is 50,000 training images and whose test split is the other 10,000
# (a fixed permutation), pre-trains zoo:resnet20 on its train split only, then fine-tunes that
# float model once per variant and prints validation top-1 per variant and seed.
#
#   tests/bench/recipe_search.sh [BUILD_DIR]
#
# Environment: OUT (default /tmp/qnet-recipe-search), CONFIG (W2A2), FLOAT_EPOCHS (3), EPOCHS (2),
# TRAIN_SAMPLES (20000), VAL_SAMPLES (5000), SEEDS ("1"), VARIANTS: newline-separated
# "name|qnet-worker flags" (default: the recipe as it is, and one change of each exposed knob).
set -euo pipefail
build=${1:-build}
worker="$build/workers/worker/qnet-worker"
[[ -x $worker ]] || { echo "no $worker: build the project first" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
out=${OUT:-/tmp/qnet-recipe-search}
config=${CONFIG:-W2A2}
[[ $config =~ ^W([0-9]+)(A([0-9]+))?$ ]] || { echo "bad CONFIG $config" >&2; exit 2; }
wbits=${BASH_REMATCH[1]}
abits=${BASH_REMATCH[3]:-0}
read -ra seeds <<<"${SEEDS:-1}"
default_variants='recipe|
distill 0.8|--distill-weight 0.8
lr 0.02|--lr 0.02
lr 0.005|--lr 0.005
slope 6|--temperature-slope 6
slope 15|--temperature-slope 15
learned thresholds|--learn-thresholds'
variants=${VARIANTS:-$default_variants}
mkdir -p "$out/$config"

data="$out/fashion_mnist_val.npz"
if [[ ! -f $data ]]; then
  PYTHONPATH=$here python3 - "$data" <<'EOF'
import sys
import numpy as np
from make_image_folder import read_idx
x, y = read_idx("/usr/share/datasets/fashion-mnist", "train")
order = np.random.default_rng(17).permutation(len(x))
train, val = order[:50000], order[50000:]
np.savez(sys.argv[1], x_train=x[train], y_train=y[train], x_test=x[val], y_test=y[val])
EOF
fi
# IDX glyphs get no augmentation by default; the .npz is told the same.
common=(--dataset "$data" --max-train-samples "${TRAIN_SAMPLES:-20000}"
        --max-test-samples "${VAL_SAMPLES:-5000}" --random-resized-crop false
        --horizontal-flip false)

float_model="$out/float/resnet20_float.pt"
if [[ ! -f $float_model ]]; then
  "$worker" run --model zoo:resnet20 "${common[@]}" --seed 1 --weight-bits 2 \
    --pretrain-epochs "${FLOAT_EPOCHS:-3}" --epochs 0 --export metrics \
    --save-float-model "$float_model" --out "$out/float" >"$out/float.log" 2>&1
fi
float_top1=$(python3 -c "import json,sys; print(100*json.load(open(sys.argv[1]))['float_top1'])" \
  "$out/float/metrics.json")

echo "$config from a float model at $float_top1% validation top-1 (${EPOCHS:-2} QN epochs)"
printf '| variant | seed | validation top-1 | soft top-1 | wall time |\n|---|---|---|---|---|\n'
while IFS='|' read -r name flags; do
  [[ -n $name ]] || continue
  for seed in "${seeds[@]}"; do
    dir="$out/$config/${name// /_}-seed$seed"
    start=$(date +%s)
    # shellcheck disable=SC2086  # flags are words
    "$worker" run --model "$float_model" "${common[@]}" --seed "$seed" --weight-bits "$wbits" \
      --activation-bits "$abits" --epochs "${EPOCHS:-2}" --export metrics --out "$dir" \
      $flags >"$dir.log" 2>&1
    secs=$(($(date +%s) - start))
    python3 - "$dir/metrics.json" "$name" "$seed" "$secs" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1]))
print(f"| {sys.argv[2]} | {sys.argv[3]} | {100*m['quantized_top1']:.2f} "
      f"| {100*m['soft_top1']:.2f} | {sys.argv[4]} s |")
EOF
  done
done <<<"$variants"
