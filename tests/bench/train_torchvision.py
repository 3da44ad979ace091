#!/usr/bin/env python3
"""Trains a torchvision classifier in plain PyTorch on Fashion-MNIST, the way a user would before
bringing it to qnet, and saves it as TorchScript.

    tests/bench/train_torchvision.py resnet18 OUT.pt [--epochs 3] [--train-samples 20000]

Inputs are the IDX images resized to 3x32x32 (bilinear, as torchvision's Resize) with the grey
channel repeated three times and Normalize(0.5, 0.5): what `qnet-worker run --input-shape
3x32x32 --input-mean 0.5 --input-std 0.5` feeds. Prints one JSON line with the model's own top-1
on the full test split, so qnet's reported float accuracy can be checked against it."""
import argparse
import gzip
import json
import time

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.models as tvm
import torchvision.transforms.v2.functional as TF

DATA = '/usr/share/datasets/fashion-mnist'


def load(prefix):
    with gzip.open(f'{DATA}/{prefix}-images-idx3-ubyte.gz') as f:
        x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)
    with gzip.open(f'{DATA}/{prefix}-labels-idx1-ubyte.gz') as f:
        y = np.frombuffer(f.read(), np.uint8, offset=8)
    return torch.from_numpy(x.copy()), torch.from_numpy(y.astype(np.int64))


def prepare(x):
    # Resize on uint8 images, as torchvision's Resize does on PIL images and uint8 tensors.
    x = TF.resize(x, [32, 32], antialias=True).float() / 255
    return ((x - 0.5) / 0.5).repeat(1, 3, 1, 1)


def top1(model, x, y):
    model.eval()
    right = 0
    with torch.no_grad():
        for i in range(0, len(y), 500):
            right += (model(prepare(x[i:i + 500])).argmax(1) == y[i:i + 500]).sum().item()
    return right / len(y)


def main():
    p = argparse.ArgumentParser()
    p.add_argument('arch')
    p.add_argument('out')
    p.add_argument('--epochs', type=int, default=3)
    p.add_argument('--train-samples', type=int, default=20000)
    p.add_argument('--batch-size', type=int, default=128)
    p.add_argument('--lr', type=float, default=0.05)
    p.add_argument('--trace', action='store_true', help='torch.jit.trace instead of script')
    p.add_argument('--seed', type=int, default=1)
    a = p.parse_args()
    torch.manual_seed(a.seed)
    x, y = load('train')
    order = torch.randperm(len(y))[:a.train_samples]
    x, y = x[order], y[order]
    model = getattr(tvm, a.arch)(weights=None, num_classes=10)
    opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=0.9, weight_decay=5e-4)
    steps = a.epochs * ((len(y) + a.batch_size - 1) // a.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, a.lr, total_steps=steps)
    start = time.time()
    for _ in range(a.epochs):
        model.train()
        perm = torch.randperm(len(y))
        for i in range(0, len(y), a.batch_size):
            idx = perm[i:i + a.batch_size]
            loss = F.cross_entropy(model(prepare(x[idx])), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    xt, yt = load('t10k')
    acc = top1(model, xt, yt)
    saved = (torch.jit.trace(model, prepare(xt[:2])) if a.trace else torch.jit.script(model))
    saved.save(a.out)
    print(json.dumps({'arch': a.arch, 'pytorch_top1': acc, 'train_seconds': round(time.time() - start),
                      'epochs': a.epochs, 'train_samples': len(y)}))


if __name__ == '__main__':
    main()
