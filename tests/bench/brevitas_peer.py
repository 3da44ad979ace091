#!/usr/bin/env python3
"""qnet's quantization-aware training against Brevitas QAT, from the same float model, on the same
images, with the same budget. Prints a Markdown table (one row per bit setting, mean and spread
over the seeds) and writes every run's record to OUT/peer.json.

    tests/bench/brevitas_peer.py --worker BUILD/workers/worker/qnet-worker \\
        --model OUT/float/resnet20_float.pt --arch resnet20 --configs W2A2 W3A3 W1A2 W4A4 \\
        --seeds 1 2 3 --epochs 2 --train-samples 20000 --test-samples 5000 --out OUT
    tests/bench/brevitas_peer.py ... --model resnet18.pt --arch resnet18 \\
        --input-shape 3x32x32 --input-mean 0.5 --input-std 0.5

Brevitas is not a project dependency: `pip install brevitas` (0.13) first
(tests/bench/peer_table.sh does). Fashion-MNIST comes from the IDX files of Debian's
dataset-fashion-mnist (--data).

The float model. FLOAT.pt is TorchScript: the zoo ResNet-20 that `qnet-worker run --model
zoo:resnet20 --save-float-model` saves (--arch resnet20), or a torchvision ResNet-18 saved by
tests/bench/train_torchvision.py (--arch resnet18). The script rebuilds the architecture in eager
PyTorch, loads the TorchScript module's parameters and buffers by name (strict), and refuses to go
on unless the rebuilt model's test top-1 equals the TorchScript module's and qnet's reported float
top-1 equals both (the last proves both sides score the same test images).

The same images. qnet takes a subset as the first N of a permutation seeded by MixSeed(seed, 1)
for the training split and MixSeed(seed, 2) for the test split, sorted (`Subset` in
workers/engine/data/dataset_loader.cc); this script draws the same permutations with torch's CPU
generator, so each seed's Brevitas run trains and tests on exactly qnet's images. Inputs are
normalised with the mean and std FLOAT.pt records (qnet_input_mean / qnet_input_std), else with
--input-mean / --input-std, which are then also given to qnet; with --input-shape the uint8
images are resized first (bilinear, antialias, as qnet and torchvision do) and grey is repeated
to three channels. No augmentation: qnet's default for IDX glyphs.

The Brevitas recipe, as Brevitas's documentation and examples set it up:
- every nn.Conv2d / nn.Linear except the first layer to run and the last (both stay float, qnet's
  default) becomes brevitas.nn.QuantConv2d / QuantLinear through brevitas.graph's
  ModuleToModuleByInstance rewriter (what layerwise_quantize applies, here per layer so each
  layer can get its own input quantizer), float weights and biases copied:
  weight_quant Int8WeightPerTensorFloatMSE at weight_bit_width k (learned per-tensor scale,
  initialised by minimising the quantization MSE); at 1 bit a binary quantizer: Brevitas's
  SignedBinaryWeightPerTensorConst with its constant 0.1 scale replaced by a learned per-tensor
  scale initialised from mean |w| (the MSE-optimal scale for sign(w));
  input_quant Uint8ActPerTensorFloatMSE at input_bit_width k on the input of every quantized
  layer (the same place qnet quantizes activations; a residual shortcut keeps the float value,
  as in qnet), Int8ActPerTensorFloatMSE instead where that input went negative on the float
  model's calibration batches; bias unquantized; float outputs (return_quant_tensor False).
  Batch norms stay unfolded and float, as in qnet.
- calibration: 8 training batches through the model inside
  brevitas.graph.calibrate.calibration_mode (activation scales from the MSE statistics);
- training: cross-entropy on the labels, SGD momentum 0.9, learning rate 0.01 with a per-step
  cosine to 0, weight decay 1e-4 except on quantizer scales and biases, gradient-norm clip 5,
  batch 128, shuffled by the seed, as many epochs as qnet's QN steps; evaluated in eval mode.

qnet runs through the real binary (`qnet-worker run --model FLOAT.pt --epochs E --weight-bits k
--activation-bits k ...`, its default QN recipe, docs/METHOD.md) and reports from its
metrics.json. Wall times: qnet's is the whole process (loading, float evaluation, teacher logits,
QN epochs each evaluated soft and hard, batch-norm re-estimation); Brevitas's is quantization,
calibration, training and the final evaluation.
"""
import argparse
import json
import math
import pathlib
import re
import shlex
import statistics
import subprocess
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from paired_accuracy import load_artifact_checks  # this folder is on sys.path when run

DATA = '/usr/share/datasets/fashion-mnist'
U64 = (1 << 64) - 1


# --- the same images as qnet -------------------------------------------------------------------

def mix_seed(seed, stream):
    """MixSeed of workers/engine/data/image_ops.cc (a splitmix64 finaliser)."""
    z = (seed ^ ((stream * 0x9e3779b97f4a7c15 + 0x632be59bd9b4e019) & U64)) & U64
    z = ((z ^ (z >> 30)) * 0xbf58476d1ce4e5b9) & U64
    z = ((z ^ (z >> 27)) * 0x94d049bb133111eb) & U64
    return z ^ (z >> 31)


def subset(n, count, seed, stream):
    """The rows qnet keeps of a split of n images: all, or the sorted first `count` of a seeded
    permutation."""
    if count == 0 or count >= n:
        return torch.arange(n)
    gen = torch.Generator().manual_seed(mix_seed(seed, stream))
    return torch.randperm(n, generator=gen)[:count].sort().values


def prepare(images, shape, mean, std):
    """uint8 [N, 1, 28, 28] -> the model's normalised float input [N, C, H, W]."""
    import torchvision.transforms.v2.functional as TF
    c, h, w = shape
    x = torch.from_numpy(images.copy())
    if x.shape[-2:] != (h, w):
        x = TF.resize(x, [h, w], antialias=True)
    x = x.float() / 255
    if c != x.shape[1]:
        x = x.repeat(1, c, 1, 1)
    m = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return (x - m) / s


def load_splits(args, seed, shape, mean, std):
    checks = load_artifact_checks()
    out = {}
    for split, prefix, count, stream in (('train', 'train', args.train_samples, 1),
                                         ('test', 't10k', args.test_samples, 2)):
        images = checks.read_idx(f'{args.data}/{prefix}-images-idx3-ubyte')[:, None]
        labels = torch.from_numpy(
            checks.read_idx(f'{args.data}/{prefix}-labels-idx1-ubyte').astype('int64'))
        rows = subset(len(labels), count, seed, stream)
        out[split] = (prepare(images[rows.numpy()], shape, mean, std), labels[rows])
    return out


# --- the same float model ----------------------------------------------------------------------

class BasicBlock(nn.Module):
    """The zoo's ResNet-20 block (workers/engine/zoo/resnet20.cc), with the zoo's module names."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.bn2 = nn.BatchNorm2d(cout)
        self.project = stride != 1 or cin != cout
        if self.project:
            self.shortcut_conv = nn.Conv2d(cin, cout, 1, stride, 0)
            self.shortcut_bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = out + (self.shortcut_bn(self.shortcut_conv(x)) if self.project else x)
        return torch.relu(out)


class Stage(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        for i in range(3):
            self.add_module(f'block{i}', BasicBlock(cin if i == 0 else cout, cout,
                                                    stride if i == 0 else 1))

    def forward(self, x):
        for block in self.children():
            x = block(x)
        return x


class ResNet20(nn.Module):
    def __init__(self, in_channels, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 16, 3, 1, 1)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = Stage(16, 16, 1)
        self.layer2 = Stage(16, 32, 2)
        self.layer3 = Stage(32, 64, 2)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.mean(x, [2, 3]))


def rebuild(arch, scripted, in_channels):
    if arch == 'resnet20':
        model = ResNet20(in_channels)
    else:
        import torchvision.models as tvm
        model = tvm.resnet18(num_classes=10)
    tensors = dict(scripted.named_parameters())
    tensors.update(dict(scripted.named_buffers()))
    model.load_state_dict(tensors, strict=True)
    return model.eval()


def top1(model, x, y, batch=500):
    model.eval()
    right = 0
    with torch.no_grad():
        for i in range(0, len(y), batch):
            right += (model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum().item()
    return right / len(y)


# --- Brevitas ----------------------------------------------------------------------------------

def binary_weight_quant():
    from brevitas.core.stats import StatsOp
    from brevitas.inject.enum import ScalingImplType
    from brevitas.quant import SignedBinaryWeightPerTensorConst

    class SignedBinaryWeightPerTensorMeanAbs(SignedBinaryWeightPerTensorConst):
        scaling_impl_type = ScalingImplType.PARAMETER_FROM_STATS
        scaling_stats_op = StatsOp.AVE

    return SignedBinaryWeightPerTensorMeanAbs


def compute_layers(model, x):
    """(name, module) of every conv and linear in the order the forward first runs them, each with
    the smallest value its input took on x."""
    order, low, hooks = [], {}, []
    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            def hook(mod, inp, name=name):
                if name not in low:
                    order.append((name, mod))
                low[name] = min(low.get(name, math.inf), inp[0].min().item())
            hooks.append(m.register_forward_pre_hook(hook))
    with torch.no_grad():
        model.eval()(x)
    for h in hooks:
        h.remove()
    return [(name, mod, low[name]) for name, mod in order]


def brevitas_quantize(model, w_bits, a_bits, calibration):
    import brevitas.config as config
    import brevitas.nn as qnn
    from brevitas.graph.base import ModuleToModuleByInstance
    from brevitas.quant import (Int8ActPerTensorFloatMSE, Int8WeightPerTensorFloatMSE,
                                Uint8ActPerTensorFloatMSE)

    layers = compute_layers(model, torch.cat(calibration))
    weight_quant = binary_weight_quant() if w_bits == 1 else Int8WeightPerTensorFloatMSE
    config.IGNORE_MISSING_KEYS = True  # the quantized layers' scales are not in the float model
    signed = []
    for name, module, low in layers[1:-1]:
        cls = qnn.QuantConv2d if isinstance(module, nn.Conv2d) else qnn.QuantLinear
        kwargs = dict(weight_quant=weight_quant, weight_bit_width=w_bits, return_quant_tensor=False)
        if a_bits:
            kwargs.update(input_quant=Int8ActPerTensorFloatMSE if low < 0 else
                          Uint8ActPerTensorFloatMSE, input_bit_width=a_bits)
            if low < 0:
                signed.append(name)
        model = ModuleToModuleByInstance(module, cls, **kwargs).apply(model)
    return model, signed


def calibrate(model, batches):
    from brevitas.graph.calibrate import calibration_mode
    model.eval()
    with torch.no_grad(), calibration_mode(model):
        for x in batches:
            model(x)


def brevitas_run(args, float_model, data, w_bits, a_bits, seed):
    torch.manual_seed(seed)
    x, y = data['train']
    bs = args.batch_size
    order = torch.randperm(len(y))
    batches = min(args.calibration_batches, math.ceil(len(y) / bs))
    calibration = [x[order[i * bs:(i + 1) * bs]] for i in range(batches)]
    start = time.time()
    model, signed = brevitas_quantize(float_model, w_bits, a_bits, calibration)
    calibrate(model, calibration)
    no_decay = [p for n, p in model.named_parameters() if 'scaling_impl' in n or n.endswith('bias')]
    decay = [p for n, p in model.named_parameters()
             if not ('scaling_impl' in n or n.endswith('bias'))]
    opt = torch.optim.SGD([{'params': decay, 'weight_decay': 1e-4},
                           {'params': no_decay, 'weight_decay': 0.0}], lr=args.lr, momentum=0.9)
    steps = args.epochs * math.ceil(len(y) / bs)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    for _ in range(args.epochs):
        model.train()
        perm = torch.randperm(len(y))
        for i in range(0, len(y), bs):
            idx = perm[i:i + bs]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            sched.step()
    acc = top1(model, *data['test'])
    return {'quantized_top1': acc, 'seconds': time.time() - start, 'signed_inputs': signed}


# --- qnet --------------------------------------------------------------------------------------

def qnet_run(args, name, w_bits, a_bits, seed):
    out = pathlib.Path(args.out) / f'qnet-{name}-seed{seed}'
    cmd = [args.worker, 'run', '--model', args.model, '--dataset', 'fashion-mnist',
           '--weight-bits', str(w_bits), '--activation-bits', str(a_bits),
           '--pretrain-epochs', '0', '--epochs', str(args.epochs),
           '--batch-size', str(args.batch_size), '--max-train-samples', str(args.train_samples),
           '--max-test-samples', str(args.test_samples), '--seed', str(seed),
           '--export', 'metrics', '--out', str(out)]
    if args.input_shape:
        cmd += ['--input-shape', args.input_shape]
    if args.input_mean:
        cmd += ['--input-mean', args.input_mean, '--input-std', args.input_std]
    cmd += shlex.split(args.qnet_flags)
    start = time.time()
    with open(f'{out}.log', 'w') as log:
        done = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        sys.exit(f'qnet-worker failed ({done.returncode}): see {out}.log\n  {" ".join(cmd)}')
    m = json.load(open(out / 'metrics.json'))
    return {'float_top1': m['float_top1'], 'quantized_top1': m['quantized_top1'],
            'seconds': time.time() - start}


# --- the table ---------------------------------------------------------------------------------

def mean_spread(values, scale=100, digits=2):
    m = statistics.mean(values) * scale
    if len(values) < 2:
        return f'{m:.{digits}f}'
    return f'{m:.{digits}f} ± {statistics.stdev(values) * scale:.{digits}f}'


def table(runs, configs, seeds):
    if len(seeds) > 1:
        print(f'Seeds {" ".join(map(str, seeds))}: mean ± sample standard deviation.\n')
    else:
        print(f'Seed {seeds[0]}.\n')
    print('| setting | side | float top-1 | quantized top-1 | drop (float - quantized, points) '
          '| wall time (s) |')
    print('|---|---|---|---|---|---|')
    for name in configs:
        for side in ('qnet', 'brevitas'):
            rs = [r for r in runs if r['config'] == name]
            f = [r['float_top1'] for r in rs]
            q = [r[side]['quantized_top1'] for r in rs]
            drop = [a - b for a, b in zip(f, q)]
            secs = [r[side]['seconds'] for r in rs]
            print(f'| {name} | {side} | {mean_spread(f)} | {mean_spread(q)} | '
                  f'{mean_spread(drop)} | {mean_spread(secs, 1, 0)} |')


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--worker', required=True, help='qnet-worker binary')
    p.add_argument('--model', required=True, help='float model, TorchScript')
    p.add_argument('--arch', choices=['resnet20', 'resnet18'], required=True)
    p.add_argument('--configs', nargs='+', default=['W2A2', 'W3A3', 'W1A2', 'W4A4'])
    p.add_argument('--seeds', nargs='+', type=int, default=[1])
    p.add_argument('--epochs', type=int, default=2)
    p.add_argument('--batch-size', type=int, default=128)
    p.add_argument('--lr', type=float, default=0.01, help='Brevitas side learning rate')
    p.add_argument('--calibration-batches', type=int, default=8)
    p.add_argument('--train-samples', type=int, default=20000, help='0: all')
    p.add_argument('--test-samples', type=int, default=5000, help='0: all')
    p.add_argument('--input-shape', default='', help='CxHxW, as qnet-worker run takes it')
    p.add_argument('--input-mean', default='', help='comma-separated, with --input-std')
    p.add_argument('--input-std', default='')
    p.add_argument('--data', default=DATA, help='Fashion-MNIST IDX folder')
    p.add_argument('--qnet-flags', default='',
                   help='more qnet-worker run flags, given as --qnet-flags="--learn-thresholds"')
    p.add_argument('--out', required=True)
    args = p.parse_args()
    try:
        import brevitas  # noqa: F401
    except ImportError:
        sys.exit('Brevitas is missing: pip install brevitas (tests/bench/peer_table.sh does)')
    settings = []
    for name in args.configs:
        m = re.fullmatch(r'W(\d)A(\d)', name)
        if not m:
            sys.exit(f'bad setting {name}: W<k>A<k>, e.g. W2A2')
        settings.append((name, int(m[1]), int(m[2])))
    pathlib.Path(args.out).mkdir(parents=True, exist_ok=True)

    scripted = torch.jit.load(args.model).eval()
    if args.input_mean:
        mean = [float(v) for v in args.input_mean.split(',')]
        std = [float(v) for v in args.input_std.split(',')]
    elif hasattr(scripted, 'qnet_input_mean'):
        mean, std = list(scripted.qnet_input_mean), list(scripted.qnet_input_std)
    else:
        sys.exit(f'{args.model} records no input normalisation: give --input-mean/--input-std')
    in_channels = scripted.conv1.weight.shape[1]
    shape = ([int(v) for v in args.input_shape.split('x')] if args.input_shape
             else [in_channels, 28, 28])

    runs = []
    for seed in args.seeds:
        data = load_splits(args, seed, shape, mean, std)
        float_model = rebuild(args.arch, scripted, in_channels)
        scripted_top1, eager_top1 = top1(scripted, *data['test']), top1(float_model, *data['test'])
        if scripted_top1 != eager_top1:
            sys.exit(f'the rebuilt {args.arch} scores {eager_top1:.4f}, the TorchScript model '
                     f'{scripted_top1:.4f}: the architecture does not match {args.model}')
        for name, w, a in settings:
            q = qnet_run(args, name, w, a, seed)
            if abs(q['float_top1'] - eager_top1) > 0.5 / len(data['test'][1]):
                sys.exit(f'qnet reports float top-1 {q["float_top1"]:.4f}, this script '
                         f'{eager_top1:.4f} on what should be the same test images')
            b = brevitas_run(args, rebuild(args.arch, scripted, in_channels), data, w, a, seed)
            runs.append({'config': name, 'seed': seed, 'float_top1': eager_top1,
                         'qnet': q, 'brevitas': b})
            print(f'{name} seed {seed}: float {100 * eager_top1:.2f}, qnet '
                  f'{100 * q["quantized_top1"]:.2f} ({q["seconds"]:.0f} s), brevitas '
                  f'{100 * b["quantized_top1"]:.2f} ({b["seconds"]:.0f} s)', file=sys.stderr)
            json.dump({'args': vars(args), 'runs': runs},
                      open(pathlib.Path(args.out) / 'peer.json', 'w'), indent=1)
    table(runs, args.configs, args.seeds)


if __name__ == '__main__':
    main()
