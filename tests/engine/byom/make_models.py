#!/usr/bin/env python3
"""Fixtures for the bring-your-own-model tests: user models saved as TorchScript, scripted and
traced, a tiny synthetic CIFAR-10 dataset, and malformed model files.

    make_models.py OUT_DIR           # the CI set listed in MODELS below
    make_models.py OUT_DIR --all     # every torchvision classification family, scripted and traced

Writes OUT_DIR/<name>.pt for each model, OUT_DIR/cifar10/ (data_batch_1..5.bin, test_batch.bin:
3x32x32, 10 classes, a few dozen images), the malformed models, and last OUT_DIR/models.txt (one
model name a line), whose presence, newer than this script, makes a later run return at once.
"""
import argparse
import os
import sys
import warnings

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

warnings.filterwarnings("ignore")


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.reduce = nn.Conv2d(channels, channels // 4, 1)
        self.expand = nn.Conv2d(channels // 4, channels, 1)

    def forward(self, x):
        s = F.adaptive_avg_pool2d(x, 1)
        s = F.relu(self.reduce(s))
        return x * torch.sigmoid(self.expand(s))


def channel_shuffle(x, groups: int):
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class Handwritten(nn.Module):
    """Functional calls, a submodule shared by two branches (and registered twice), residual adds,
    concatenation, channel shuffle, grouped and depthwise convs, ReLU6/Hardswish/SiLU/GELU,
    squeeze-excitation, dropout, LayerNorm, batch norms with constant and None momentum."""

    def __init__(self, in_channels: int = 3, num_classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, 16, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(16, momentum=0.01), nn.ReLU6())
        self.shared = nn.Conv2d(16, 16, 3, padding=1, groups=4)
        self.shared_alias = self.shared
        self.bn_a = nn.BatchNorm2d(16)
        self.bn_b = nn.BatchNorm2d(16, momentum=None)
        self.depthwise = nn.Conv2d(32, 32, 3, stride=2, padding=1, groups=32, bias=False)
        self.bn_dw = nn.BatchNorm2d(32)
        self.project = nn.Conv2d(32, 32, 1)  # called functionally below
        self.se = SqueezeExcite(32)
        self.norm = nn.LayerNorm(32)
        self.mlp = nn.Sequential(nn.Linear(32, 64), nn.GELU(), nn.Linear(64, 32))
        self.dropout = nn.Dropout(0.2)
        self.head = nn.Linear(32, num_classes)

    def forward(self, x):
        x = self.stem(x)
        a = F.silu(self.bn_a(self.shared(x)))
        b = F.hardswish(self.bn_b(self.shared_alias(x + a)))
        x = channel_shuffle(torch.cat([a, b], 1), 4)
        x = F.relu(self.bn_dw(self.depthwise(x)))
        x = x + F.conv2d(x, self.project.weight, self.project.bias)
        x = self.se(x)
        y = x.permute(0, 2, 3, 1)
        y = y + self.mlp(self.norm(y))
        x = y.permute(0, 3, 1, 2).mean([2, 3])
        return self.head(self.dropout(x))


class TupleOutput(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.fc = nn.Linear(8, 10)
        self.aux = nn.Linear(8, 10)

    def forward(self, x):
        h = F.adaptive_avg_pool2d(F.relu(self.conv(x)), 1).flatten(1)
        return self.fc(h), self.aux(h)


class FailsInTraining(nn.Module):
    """Passes the dry run (two calls), then raises in its first training step."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.mid = nn.Conv2d(8, 8, 3)
        self.fc = nn.Linear(8, 10)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        if self.training and self.calls > 2:
            raise RuntimeError("this model refuses to train")
        h = F.relu(self.mid(F.relu(self.conv(x))))
        return self.fc(F.adaptive_avg_pool2d(h, 1).flatten(1))


class NoLayers(nn.Module):
    def forward(self, x):
        return F.adaptive_avg_pool2d(x, (2, 5)).flatten(1)


def tv(name, **kwargs):
    return lambda: getattr(torchvision.models, name)(weights=None, num_classes=10, **kwargs)


def small_densenet():
    return torchvision.models.DenseNet(growth_rate=8, block_config=(2, 2), num_init_features=16,
                                       num_classes=10)


# name -> (builder, "script" | "trace"). The CI set: every family the tests must keep working.
MODELS = {
    "resnet18_script": (tv("resnet18"), "script"),
    "mobilenet_v2_trace": (tv("mobilenet_v2"), "trace"),
    "efficientnet_b0_script": (tv("efficientnet_b0"), "script"),
    "shufflenet_v2_x0_5_trace": (tv("shufflenet_v2_x0_5"), "trace"),
    "densenet_small_script": (small_densenet, "script"),
    "convnext_tiny_trace": (tv("convnext_tiny"), "trace"),
    "mobilenet_v3_small_script": (tv("mobilenet_v3_small"), "script"),
    "squeezenet1_1_trace": (tv("squeezenet1_1"), "trace"),
    "googlenet_trace": (tv("googlenet", aux_logits=False, init_weights=True), "trace"),
    "regnet_x_400mf_script": (tv("regnet_x_400mf"), "script"),
    "handwritten_script": (Handwritten, "script"),
    "handwritten_trace": (Handwritten, "trace"),
}

# --all: every torchvision classification family, both ways (too slow for CI).
FAMILIES = {
    "resnet18": tv("resnet18"), "resnext50_32x4d": tv("resnext50_32x4d"),
    "wide_resnet50_2": tv("wide_resnet50_2"), "vgg11_bn": tv("vgg11_bn"), "alexnet": tv("alexnet"),
    "squeezenet1_1": tv("squeezenet1_1"), "densenet121": tv("densenet121"),
    "googlenet": tv("googlenet", aux_logits=False, init_weights=True),
    "mobilenet_v2": tv("mobilenet_v2"), "mobilenet_v3_small": tv("mobilenet_v3_small"),
    "mnasnet0_5": tv("mnasnet0_5"), "shufflenet_v2_x0_5": tv("shufflenet_v2_x0_5"),
    "efficientnet_b0": tv("efficientnet_b0"), "efficientnet_v2_s": tv("efficientnet_v2_s"),
    "regnet_x_400mf": tv("regnet_x_400mf"), "regnet_y_400mf": tv("regnet_y_400mf"),
    "convnext_tiny": tv("convnext_tiny"), "handwritten": Handwritten,
}


def save(module, mode, path):
    module.eval()  # traced in eval mode: what users export
    if mode == "script":
        saved = torch.jit.script(module)
    else:
        saved = torch.jit.trace(module, torch.randn(2, 3, 32, 32), check_trace=False)
    torch.jit.save(saved, path)


def write_cifar(folder, per_batch=4, test=8):
    """CIFAR-10 binary records (label byte, 3x32x32 channel-major pixels): a class-coloured square
    at a class-dependent position on noise."""
    os.makedirs(folder, exist_ok=True)
    g = torch.Generator().manual_seed(7)

    def records(count, offset):
        out = bytearray()
        for i in range(count):
            label = (i + offset) % 10
            img = torch.randint(0, 60, (3, 32, 32), generator=g, dtype=torch.uint8)
            r, c = 2 + (label // 5) * 16, 2 + (label % 5) * 6
            img[label % 3, r:r + 10, c:c + 5] = 220
            out += bytes([label]) + img.numpy().tobytes()
        return bytes(out)

    for b in range(1, 6):
        with open(os.path.join(folder, f"data_batch_{b}.bin"), "wb") as f:
            f.write(records(per_batch, b * per_batch))
    with open(os.path.join(folder, "test_batch.bin"), "wb") as f:
        f.write(records(test, 0))


def write_malformed(out):
    with open(os.path.join(out, "not_torchscript.pt"), "w") as f:
        f.write("this is a text file, not a model\n")
    save(Handwritten(), "script", os.path.join(out, "whole.tmp"))
    with open(os.path.join(out, "whole.tmp"), "rb") as f:
        whole = f.read()
    with open(os.path.join(out, "truncated.pt"), "wb") as f:
        f.write(whole[: len(whole) // 2])
    os.remove(os.path.join(out, "whole.tmp"))
    torch.save(Handwritten().state_dict(), os.path.join(out, "state_dict.pt"))
    save(NoLayers(), "script", os.path.join(out, "no_layers.pt"))
    save(TupleOutput(), "script", os.path.join(out, "tuple_output.pt"))
    save(Handwritten(num_classes=1000), "script", os.path.join(out, "wrong_classes.pt"))
    save(Handwritten(in_channels=1), "script", os.path.join(out, "wrong_channels.pt"))
    save(FailsInTraining(), "script", os.path.join(out, "fails_in_training.pt"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--all", action="store_true")
    args = parser.parse_args()
    listing = os.path.join(args.out, "models.txt")
    if not args.all and os.path.exists(listing) and \
            os.path.getmtime(listing) > os.path.getmtime(__file__):
        return  # written by this version of the script already
    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(0)
    models = MODELS
    if args.all:
        models = {f"{n}_{m}": (b, m) for n, b in FAMILIES.items() for m in ("script", "trace")}
    names = []
    for name, (build, mode) in models.items():
        try:
            save(build(), mode, os.path.join(args.out, name + ".pt"))
            names.append(name)
        except Exception as e:  # a family PyTorch cannot save this way: reported, not fatal
            if not args.all:
                raise
            print(f"{name}: cannot be saved: {type(e).__name__}: {e}".splitlines()[0],
                  file=sys.stderr)
    write_cifar(os.path.join(args.out, "cifar10"))
    write_malformed(args.out)
    with open(os.path.join(args.out, "models.txt"), "w") as f:
        f.write("".join(n + "\n" for n in names))


if __name__ == "__main__":
    main()
