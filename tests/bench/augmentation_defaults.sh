#!/usr/bin/env bash
# The measurement behind the training augmentation defaults of image folders (docs/METHOD.md,
# "Input pipeline"; docs/BENCHMARKS.md): Fashion-MNIST images written as a PNG folder of varying
# sizes (28 to 40 pixels), a float model (MODEL, LeNet-5 by default: the 2-core machine's budget)
# trained once without augmentation, then W2A2 fine-tuning runs of that model with each
# augmentation setting, same seed.
# Usage: tests/bench/augmentation_defaults.sh BUILD_DIR
#        (MODEL=lenet5 TRAIN=5000 TEST=2000 PRETRAIN=4 EPOCHS=3)
set -euo pipefail
build=${1:?usage: augmentation_defaults.sh BUILD_DIR}
here=$(cd "$(dirname "$0")" && pwd)
work=${WORK:-/tmp/qnet-augmentation}
worker="$build/workers/worker/qnet-worker"
data="$work/fashion-folder"
[ -d "$data" ] || python3 "$here/make_image_folder.py" "$data" --png \
  --fashion-mnist /usr/share/datasets/fashion-mnist --train "${TRAIN:-5000}" --test "${TEST:-2000}" \
  --min-side 28 --max-side 40
common=(--dataset "$data" --input-shape 1x28x28 --device cpu --seed 1)
[ -f "$work/float.pt" ] || "$worker" run --model "zoo:${MODEL:-lenet5}" "${common[@]}" \
  --pretrain-epochs "${PRETRAIN:-4}" \
  --epochs 0 --random-resized-crop off --horizontal-flip off --save-float-model "$work/float.pt" \
  --export metrics --out "$work/float" > "$work/float.txt"
grep -E "^  float" "$work/float.txt"
while read -r name flags; do
  # shellcheck disable=SC2086
  "$worker" run --model "$work/float.pt" "${common[@]}" --weight-bits 2 --activation-bits 2 \
    --epochs "${EPOCHS:-3}" $flags --export metrics --out "$work/$name" > "$work/$name.txt"
  echo "$name: $(grep -E 'quantized' "$work/$name.txt")"
done <<'SETTINGS'
none --random-resized-crop off --horizontal-flip off
flip --random-resized-crop off --horizontal-flip on
rrc0.08+flip --random-resized-crop on --crop-scale-min 0.08 --horizontal-flip on
rrc0.25+flip --random-resized-crop on --crop-scale-min 0.25 --horizontal-flip on
rrc0.5+flip --random-resized-crop on --crop-scale-min 0.5 --horizontal-flip on
SETTINGS
