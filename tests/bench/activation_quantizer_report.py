#!/usr/bin/env python3
"""Shows what each calibrated activation quantizer of a qnet export does to the float model's own
activations: where a low-bit job loses its signal before any training.

    qnet-worker run --model FLOAT.pt ... --epochs 0 --activation-bits 4 --export torchscript --out Q
    tests/bench/activation_quantizer_report.py efficientnet_b0 FLOAT.pt Q/model.pt

FLOAT.pt is a torchvision classifier saved by tests/bench/train_torchvision.py (same arch name);
its weights are loaded into an eager copy so that the input of every layer can be observed. Each
quantizer of the export (the `qnet_act_<layer>` modules in front of quantized layers, with the
alpha, beta and levels calibration gave them) is applied to the input its layer sees in the float
model, on Fashion-MNIST training images prepared as train_torchvision.py prepares them. Prints one
line per quantizer: its level range, step (alpha), the input's median and 99.9th percentile of |x|,
the share of inputs it maps to zero and the signal-to-quantization-noise ratio; then a summary
over the quantizers (mean zero share, how many send at least 90% to zero, SQNR range) and the test
accuracy of the float model with every quantizer applied at once (float weights, the float model's
batch-norm statistics)."""
import argparse
import sys

import torch
import torchvision.models as tvm

from train_torchvision import load, prepare, top1


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('arch')
    p.add_argument('float_model')
    p.add_argument('quantized_model')
    p.add_argument('--images', type=int, default=512, help='training images the inputs come from')
    p.add_argument('--test-images', type=int, default=2000)
    args = p.parse_args()
    torch.manual_seed(0)

    model = getattr(tvm, args.arch)(weights=None, num_classes=10)
    model.load_state_dict(torch.jit.load(args.float_model).state_dict())
    model.eval()
    exported = torch.jit.load(args.quantized_model)
    quantizers = {n: q for n, q in exported.named_children() if n.startswith('qnet_act_')}
    layers = {}
    for name, module in model.named_modules():
        key = 'qnet_act_' + name.replace('.', '_')
        if key in quantizers:
            layers[name] = (module, quantizers.pop(key))
    if quantizers:
        sys.exit(f'no layer of {args.arch} for {sorted(quantizers)[:3]}: a different model?')

    seen = {name: [] for name in layers}
    applying = [False]

    def hook(name):
        def pre_hook(_, inputs):
            if applying[0]:
                with torch.no_grad():
                    return (layers[name][1](inputs[0]),)
            seen[name].append(inputs[0].detach().clone())
            return None
        return pre_hook

    for name, (module, _) in layers.items():
        module.register_forward_pre_hook(hook(name))
    x, _ = load('train')
    with torch.no_grad():
        for i in range(0, args.images, 128):
            model(prepare(x[i:min(i + 128, args.images)]))

    print(f'{"layer":34} {"levels":>9} {"step":>7} {"p50|x|":>8} {"p99.9|x|":>9} '
          f'{"zero":>5} {"SQNR dB":>8}')
    zeros, sqnrs = [], []
    for name, (_, quantizer) in layers.items():
        a = torch.cat([t.flatten() for t in seen[name]])
        with torch.no_grad():
            q = quantizer(a)
        levels = quantizer.levels
        sample = a.abs()[torch.randperm(a.numel())[:1_000_000]]
        sqnr = float(10 * torch.log10(a.pow(2).mean() / (q - a).pow(2).mean().clamp_min(1e-30)))
        zeros.append(float((q == 0).float().mean()))
        sqnrs.append(sqnr)
        print(f'{name:34} {int(levels[0]):>4}..{int(levels[-1]):<3} {float(quantizer.alpha):7.4f} '
              f'{sample.median():8.4f} {sample.quantile(0.999):9.3f} '
              f'{zeros[-1]:5.2f} {sqnr:8.1f}')
    print(f'{len(zeros)} quantizers: mean share sent to 0 {sum(zeros) / len(zeros):.2f}, '
          f'{sum(z >= 0.9 for z in zeros)} send >= 90% to 0, SQNR {min(sqnrs):.1f} to '
          f'{max(sqnrs):.1f} dB')
    tx, ty = load('t10k')
    n = args.test_images
    print(f'float top-1 on {n} test images: {100 * top1(model, tx[:n], ty[:n]):.2f}')
    applying[0] = True
    print(f'every quantizer applied:        {100 * top1(model, tx[:n], ty[:n]):.2f}')


if __name__ == '__main__':
    main()
