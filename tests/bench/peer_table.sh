#!/bin/bash
# The "Against Brevitas QAT" tables of docs/BENCHMARKS.md: qnet's QN fine-tuning and Brevitas QAT
# (tests/bench/brevitas_peer.py has the recipe) from the same float models, on the same images,
# for each bit setting and seed. The float models: zoo:resnet20 pre-trained by qnet-worker, and a
# torchvision ResNet-18 trained by plain PyTorch (tests/bench/train_torchvision.py) at 3x32x32.
# Installs Brevitas with pip when it is missing (it is not a project dependency). Prints one
# Markdown table per model; every run's log and metrics stay under OUT.
#
#   tests/bench/peer_table.sh [BUILD_DIR]
#
# Environment: OUT (default /tmp/qnet-brevitas-peer), MODELS ("resnet20 resnet18"),
# FLOAT_EPOCHS (3), EPOCHS (2), TRAIN_SAMPLES (20000), TEST_SAMPLES (5000),
# CONFIGS ("W2A2 W3A3 W1A2 W4A4"), SEEDS ("1 2 3"), QNET_FLAGS (more qnet-worker run flags for
# qnet's side, e.g. "--temperature-slope 6").
set -euo pipefail
build=${1:-build}
worker="$build/workers/worker/qnet-worker"
[[ -x $worker ]] || { echo "no $worker: build the project first" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
out=${OUT:-/tmp/qnet-brevitas-peer}
float_epochs=${FLOAT_EPOCHS:-3}
train=${TRAIN_SAMPLES:-20000}
test=${TEST_SAMPLES:-5000}
read -ra configs <<<"${CONFIGS:-W2A2 W3A3 W1A2 W4A4}"
read -ra seeds <<<"${SEEDS:-1 2 3}"
mkdir -p "$out"

if ! python3 -c 'import brevitas' 2>/dev/null; then
  echo "installing Brevitas for this benchmark: python3 -m pip install 'brevitas==0.13.*'" >&2
  python3 -m pip install 'brevitas==0.13.*' >&2 || {
    echo "could not install Brevitas: run python3 -m pip install 'brevitas==0.13.*' (in a" \
      "virtual environment, or with --break-system-packages on a system Python)" >&2
    exit 2
  }
fi

peer() {
  python3 "$here/brevitas_peer.py" --worker "$worker" --epochs "${EPOCHS:-2}" \
    --train-samples "$train" --test-samples "$test" \
    --configs "${configs[@]}" --seeds "${seeds[@]}" --qnet-flags="${QNET_FLAGS:-}" "$@"
}

for model in ${MODELS:-resnet20 resnet18}; do
  case $model in
    resnet20)
      float="$out/float/resnet20_float.pt"
      if [[ ! -f $float ]]; then
        # --epochs 0: pre-training only; the W2 quantization it also evaluates is not used.
        "$worker" run --model zoo:resnet20 --dataset fashion-mnist --max-train-samples "$train" \
          --max-test-samples "$test" --seed 1 --weight-bits 2 --pretrain-epochs "$float_epochs" \
          --epochs 0 --export metrics --save-float-model "$float" --out "$out/float" \
          >"$out/float.log" 2>&1
      fi
      echo "### ResNet-20 (zoo, pre-trained by qnet-worker: $float)"
      peer --model "$float" --arch resnet20 --out "$out/resnet20"
      ;;
    resnet18)
      float="$out/resnet18.pt"
      if [[ ! -f $float ]]; then
        python3 "$here/train_torchvision.py" resnet18 "$float" --epochs "$float_epochs" \
          --train-samples "$train" >"$out/resnet18.train.json"
      fi
      echo "### torchvision ResNet-18 (trained by plain PyTorch, 3x32x32: $float)"
      peer --model "$float" --arch resnet18 --input-shape 3x32x32 --input-mean 0.5 \
        --input-std 0.5 --out "$out/resnet18"
      ;;
    *) echo "unknown model $model: resnet20 or resnet18" >&2; exit 2 ;;
  esac
  echo
done
