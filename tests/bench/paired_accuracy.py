#!/usr/bin/env python3
"""paired_accuracy.py FLOAT.pt QUANTIZED.pt IDX_DIR: the two models on the same test images.

Prints each model's top-1, the images only one of them gets right, and the exact two-sided
McNemar p-value: the chance of a split at least that uneven between the two kinds of discordant
images if both models were equally accurate. A gap of a few images with a large p-value is not
evidence that the quantized model is worse. Both models are fed the raw t10k IDX images (.gz or
raw) normalized the way QUANTIZED.pt records (qnet_input_mean / qnet_input_std), which is how the
job that produced it normalized its float model too; an artifact from before qnet recorded it was
normalized with the training images' statistics, computed here the same way.

    python3 tests/bench/paired_accuracy.py OUT/float/resnet20_float.pt OUT/W3/model.pt \\
        /usr/share/datasets/fashion-mnist
"""
import importlib.util
import math
import pathlib
import sys

import numpy as np
import torch


def load_artifact_checks():
    path = pathlib.Path(__file__).resolve().parents[1] / 'e2e' / 'check_local_artifact.py'
    spec = importlib.util.spec_from_file_location('check_local_artifact', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def predictions(model, x, batch=1000):
    with torch.no_grad():
        return torch.cat([model(x[i:i + batch]).argmax(1) for i in range(0, len(x), batch)]).numpy()


def mcnemar_exact(b, c):
    """Two-sided exact McNemar p-value for b and c discordant images."""
    n, k = b + c, min(b, c)
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2.0 ** n
    return min(1.0, 2 * tail)


def input_normalization(model, idx_dir, checks):
    if hasattr(model, 'qnet_input_mean'):
        return model.qnet_input_mean, model.qnet_input_std
    train = checks.read_idx(f'{idx_dir}/train-images-idx3-ubyte').astype(np.float64) / 255
    return [train.mean()], [train.std()]


def main(argv):
    if len(argv) != 3:
        print(__doc__)
        return 2
    checks = load_artifact_checks()
    float_model = torch.jit.load(argv[0]).eval()
    quantized = torch.jit.load(argv[1]).eval()
    images, labels = checks.raw_test_split(argv[2])
    x = torch.from_numpy(checks.normalize(images, *input_normalization(quantized, argv[2], checks)))
    f_ok = predictions(float_model, x) == labels
    q_ok = predictions(quantized, x) == labels
    n = labels.size
    only_float = int((f_ok & ~q_ok).sum())
    only_quantized = int((~f_ok & q_ok).sum())
    print(f'images {n}')
    print(f'float top-1     {100 * f_ok.mean():.2f}%  ({int(f_ok.sum())})')
    print(f'quantized top-1 {100 * q_ok.mean():.2f}%  ({int(q_ok.sum())})')
    print(f'both right {int((f_ok & q_ok).sum())}, both wrong {int((~f_ok & ~q_ok).sum())}, '
          f'only float right {only_float}, only quantized right {only_quantized}')
    print(f'difference {only_quantized - only_float:+d} images, exact McNemar p = '
          f'{mcnemar_exact(only_float, only_quantized):.3f}')
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
