#!/bin/bash
# The Fashion-MNIST accuracy table of docs/BENCHMARKS.md: zoo:resnet20 pre-trained in full
# precision by the engine once, then fine-tuned with QN at each bit setting from that same float
# model. Prints a Markdown table; every run's artifacts and log stay under OUT.
#
#   tests/bench/resnet20_accuracy_table.sh [BUILD_DIR]
#
# Environment: OUT (default /tmp/qnet-accuracy-table), FLOAT_EPOCHS (6), QN_EPOCHS (3),
# TRAIN_SAMPLES (0 = all 60000), TEST_SAMPLES (0 = all 10000), CONFIGS (space-separated
# W<k>[A<k>] names, default "W2A2 W2 W3 W1 W3A3"), SEED (1).
set -euo pipefail
build=${1:-build}
worker="$build/workers/worker/qnet-worker"
[[ -x $worker ]] || { echo "no $worker: build the project first" >&2; exit 2; }
out=${OUT:-/tmp/qnet-accuracy-table}
float_epochs=${FLOAT_EPOCHS:-6}
qn_epochs=${QN_EPOCHS:-3}
samples=(--max-train-samples "${TRAIN_SAMPLES:-0}" --max-test-samples "${TEST_SAMPLES:-0}"
         --seed "${SEED:-1}" --dataset fashion-mnist)
configs=${CONFIGS:-W2A2 W2 W3 W1 W3A3}
mkdir -p "$out"

metric() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$@"; }

float_model="$out/float/resnet20_float.pt"
if [[ ! -f $float_model ]]; then
  start=$(date +%s)
  # --epochs 0: pre-training only; the W2 quantization it also evaluates is not used.
  "$worker" run --model zoo:resnet20 "${samples[@]}" --weight-bits 2 --pretrain-epochs "$float_epochs" \
    --epochs 0 --export metrics --save-float-model "$float_model" --out "$out/float" \
    >"$out/float.log" 2>&1
  echo "float: $(( $(date +%s) - start )) s" >&2
fi
float_top1=$(metric "$out/float/metrics.json" float_top1)

printf '| setting | float top-1 | quantized top-1 | delta (points) | soft top-1 | size ratio | QN time |\n'
printf '|---|---|---|---|---|---|---|\n'
for c in $configs; do
  [[ $c =~ ^W([0-9]+)(A([0-9]+))?$ ]] || { echo "bad config $c" >&2; exit 2; }
  w=${BASH_REMATCH[1]}
  a=${BASH_REMATCH[3]:-0}
  start=$(date +%s)
  "$worker" run --model "$float_model" "${samples[@]}" --weight-bits "$w" --activation-bits "$a" \
    --pretrain-epochs 0 --epochs "$qn_epochs" --export metrics,packed --out "$out/$c" \
    >"$out/$c.log" 2>&1
  secs=$(( $(date +%s) - start ))
  m="$out/$c/metrics.json"
  python3 - "$m" "$c" "$float_top1" "$secs" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1]))
name, f, secs = sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
q = m["quantized_top1"]
print(f"| {name} | {100*f:.2f} | {100*q:.2f} | {100*(q-f):+.2f} | {100*m['soft_top1']:.2f} "
      f"| {m['compression_ratio']:.1f}x | {secs} s |")
EOF
done
