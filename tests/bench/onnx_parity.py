#!/usr/bin/env python3
"""onnx_parity.py OUT_DIR DATASET_DIR [--format idx|cifar10] [--limit N] [--tolerance F] [--json]

The parity table of a finished job: the top-1 of its ONNX artifact (OUT_DIR/model.onnx, in ONNX
Runtime) and of its TorchScript artifact (OUT_DIR/model.pt, in stock PyTorch) on the dataset's
test split, each fed the raw test images the way a user would (pixels / 255, then the input
normalization the artifact records), beside what the worker reported in OUT_DIR/metrics.json.
The worker cannot measure the ONNX figure itself: ONNX Runtime has no C++ package here (no
Debian package, no headers in the PyPI wheel), so Metrics.onnx_top1 stays unset and this tool
fills the gap.

The format is detected from the files (t10k-images-idx3-ubyte[.gz]: idx; test_batch.bin,
optionally under cifar-10-batches-bin/: cifar10) unless --format says. --limit N uses the first N
test images (metrics.json's figures cover the job's own max_test_samples subset, a seeded
shuffle, so they match only without a limit on a job that evaluated every test image).
--json prints the table as one JSON object instead.

Exit status 1 when the two artifacts' predictions disagree on more than a fraction F of the
images (default 0.001): they are one model, and only an activation sitting within float rounding
of a quantizer threshold may round differently (docs/METHOD.md, "Artifacts").
"""
import argparse
import json
import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / 'e2e'))
from check_local_artifact import read_idx, normalize  # noqa: E402  one IDX reader, one normalization


def cifar_test_file(root):
    for candidate in (root / 'test_batch.bin', root / 'cifar-10-batches-bin' / 'test_batch.bin'):
        if candidate.exists():
            return candidate
    return None


def test_split(root, fmt):
    """uint8 images [N, C, H, W] and int64 labels [N], as stored."""
    root = pathlib.Path(root)
    if fmt is None:
        idx = root / 't10k-images-idx3-ubyte'
        fmt = 'idx' if idx.exists() or idx.with_name(idx.name + '.gz').exists() else 'cifar10'
    if fmt == 'idx':
        images = read_idx(root / 't10k-images-idx3-ubyte')[:, None]
        labels = read_idx(root / 't10k-labels-idx1-ubyte').astype(np.int64)
        return images, labels
    path = cifar_test_file(root)
    if path is None:
        raise SystemExit(f'{root}: no t10k-images-idx3-ubyte[.gz] (idx) or test_batch.bin '
                         '(cifar10)')
    records = np.fromfile(path, np.uint8).reshape(-1, 1 + 3 * 32 * 32)
    return records[:, 1:].reshape(-1, 3, 32, 32), records[:, 0].astype(np.int64)


def batches(x, size=256):
    for start in range(0, len(x), size):
        yield x[start:start + size]


def onnx_predictions(path, images):
    import onnxruntime as ort
    sess = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    meta = sess.get_modelmeta().custom_metadata_map
    x = normalize(images, json.loads(meta['qnet_input_mean']), json.loads(meta['qnet_input_std']))
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: b})[0].argmax(1) for b in batches(x)])


def torchscript_predictions(path, images):
    import torch
    model = torch.jit.load(str(path)).eval()
    x = normalize(images, model.qnet_input_mean, model.qnet_input_std)
    with torch.no_grad():
        return np.concatenate([model(torch.from_numpy(b)).argmax(1).numpy() for b in batches(x)])


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('out_dir')
    parser.add_argument('dataset_dir')
    parser.add_argument('--format', choices=['idx', 'cifar10'])
    parser.add_argument('--limit', type=int, default=0)
    parser.add_argument('--tolerance', type=float, default=0.001)
    parser.add_argument('--json', action='store_true')
    args = parser.parse_args(argv)
    out = pathlib.Path(args.out_dir)
    images, labels = test_split(args.dataset_dir, args.format)
    if args.limit > 0:
        images, labels = images[:args.limit], labels[:args.limit]
    onnx_pred = onnx_predictions(out / 'model.onnx', images)
    ts_pred = torchscript_predictions(out / 'model.pt', images)
    metrics_path = out / 'metrics.json'
    reported = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
    parity = reported.get('parity', {})
    table = {
        'images': int(labels.size),
        'float_top1': reported.get('float_top1'),
        'quantized_top1': reported.get('quantized_top1'),
        'torchscript_top1_reported': parity.get('torchscript_top1'),
        'torchscript_top1': float((ts_pred == labels).mean()),
        'onnx_top1': float((onnx_pred == labels).mean()),
        'disagreements': int((onnx_pred != ts_pred).sum()),
    }
    if args.json:
        print(json.dumps(table))
    else:
        def pct(v):
            return '-' if v is None else f'{100 * v:.2f}%'
        print(f'test images: {table["images"]}')
        for key in ('float_top1', 'quantized_top1', 'torchscript_top1_reported',
                    'torchscript_top1', 'onnx_top1'):
            print(f'  {key:<26} {pct(table[key])}')
        print(f'  ONNX and TorchScript disagree on {table["disagreements"]} images')
    return 1 if table['disagreements'] > args.tolerance * table['images'] else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
