#!/usr/bin/env python3
"""check_local_artifact.py MODEL.pt [IO.pt] [--accuracy IDX_DIR METRICS.json]: the TorchScript
artifact of `qnet-worker run` loads in stock PyTorch; every layer carrying qnet_levels has at most
len(qnet_levels) distinct weight values, all of the form qnet_alpha * level; with IO.pt (a dict
{"input", "output"} saved by the engine's hard evaluation) the artifact's outputs match the
engine's; with --accuracy, the artifact fed the raw t10k IDX images the way a user would (pixels
/ 255, then the qnet_input_mean / qnet_input_std it records) scores the quantized_top1 that
METRICS.json reports, to within one image, and so does model.onnx beside MODEL.pt when there is
one, in ONNX Runtime with the normalization from its own metadata. Prints the number of quantized
layers."""
import gzip
import json
import pathlib
import sys

import numpy as np
import torch


def read_idx(path):
    """An IDX file (raw or .gz) as a numpy array."""
    path = pathlib.Path(path)
    if not path.exists():
        path = path.with_name(path.name + '.gz')
    data = (gzip.open if path.suffix == '.gz' else open)(path, 'rb').read()
    ndim = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], 'big') for i in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def raw_test_split(idx_dir):
    """uint8 images [N, 1, H, W] and int64 labels [N], as stored."""
    images = read_idx(f'{idx_dir}/t10k-images-idx3-ubyte')[:, None]
    labels = read_idx(f'{idx_dir}/t10k-labels-idx1-ubyte').astype(np.int64)
    return images, labels


def normalize(images, mean, std):
    shape = (1, -1, 1, 1)
    return ((images.astype(np.float32) / 255 - np.asarray(mean, np.float32).reshape(shape))
            / np.asarray(std, np.float32).reshape(shape))


def torchscript_correct(model, images, labels):
    x = torch.from_numpy(normalize(images, model.qnet_input_mean, model.qnet_input_std))
    with torch.no_grad():
        return int((model(x).argmax(1).numpy() == labels).sum())


def onnx_correct(path, images, labels):
    import onnxruntime as ort
    sess = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    meta = sess.get_modelmeta().custom_metadata_map
    x = normalize(images, json.loads(meta['qnet_input_mean']), json.loads(meta['qnet_input_std']))
    logits = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    return int((logits.argmax(1) == labels).sum())


def main(args):
    accuracy = None
    if '--accuracy' in args:
        i = args.index('--accuracy')
        accuracy = args[i + 1:i + 3]
        del args[i:i + 3]
    model = torch.jit.load(args[0]).eval()
    quantized = 0
    for name, m in model.named_modules():
        if not hasattr(m, 'qnet_levels'):
            continue
        levels = m.qnet_levels
        if levels.numel() == 0:
            continue
        quantized += 1
        w = m.weight.detach()
        values = torch.unique(w)
        assert values.numel() <= levels.numel(), f'{name}: {values.numel()} values > {levels.numel()}'
        allowed = torch.tensor(m.qnet_alpha, dtype=torch.float32) * levels
        assert bool((w.unsqueeze(-1) == allowed).any(-1).all()), f'{name}: weight not alpha*level'
    assert quantized > 0, 'no quantized layers (qnet_levels) in the artifact'
    if len(args) > 1:
        io = torch.load(args[1], weights_only=False)  # written by the test itself
        with torch.no_grad():
            got = model(io['input'])
        want = io['output']
        err = (got - want).abs().max().item()
        assert torch.allclose(got, want, atol=1e-4, rtol=1e-4), f'outputs differ by {err}'
    if accuracy:
        images, labels = raw_test_split(accuracy[0])
        reported = json.load(open(accuracy[1]))['quantized_top1'] * labels.size
        scores = {'torchscript': torchscript_correct(model, images, labels)}
        onnx_path = pathlib.Path(args[0]).with_name('model.onnx')
        if onnx_path.exists():
            scores['onnx'] = onnx_correct(onnx_path, images, labels)
        for kind, correct in scores.items():
            assert abs(correct - reported) <= 1, \
                f'{kind}: {correct}/{labels.size} correct, metrics say {reported:.0f}'
    print(quantized)


if __name__ == '__main__':
    main(sys.argv[1:])
