#!/usr/bin/env bash
# The engine's input pipeline beside torchvision's DataLoader on the same JPEG image folders, at
# 32x32 and at 224x224, with the same number of threads / workers (docs/BENCHMARKS.md, "Input
# pipeline"). Usage: tests/bench/loader_bench.sh BUILD_DIR   (THREADS=2 TRAIN32=10000 TRAIN224=2000)
set -euo pipefail
build=${1:?usage: loader_bench.sh BUILD_DIR}
here=$(cd "$(dirname "$0")" && pwd)
threads=${THREADS:-2}
work=${WORK:-/tmp/qnet-loader-bench}
python=${PYTHON:-python3}
[ -d "$work/jpeg32" ] || "$python" "$here/make_image_folder.py" "$work/jpeg32" \
  --train "${TRAIN32:-10000}" --test 500 --min-side 32 --max-side 32
[ -d "$work/jpeg224" ] || "$python" "$here/make_image_folder.py" "$work/jpeg224" \
  --train "${TRAIN224:-2000}" --test 200 --min-side 240 --max-side 320
# Batch and training steps per size: ResNet-20 steps on 224x224 images take seconds on a CPU.
# Augmentation: the 32x32 folder's default (pad-4 crop, flip); RandomResizedCrop from 0.25 and
# flip at 224x224 on both sides.
for run in "32 128 10" "224 32 3"; do
  read -r size batch steps <<< "$run"
  echo "== JPEG folder, ${size}x${size}, batch $batch, $threads threads / workers"
  "$build/tests/bench/qnet_loader_bench" --dataset "$work/jpeg$size" --batch "$batch" \
    --input-shape "3x${size}x${size}" --threads "$threads" --train-batches "$steps" \
    $( [ "$size" = 224 ] && echo --rrc-scale-min 0.25 )
  "$python" "$here/loader_bench_torchvision.py" "$work/jpeg$size" --size "$size" --batch "$batch" \
    --workers "$threads" --crop "$( [ "$size" = 32 ] && echo pad4 || echo rrc )"
done
