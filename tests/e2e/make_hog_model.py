#!/usr/bin/env python3
"""Writes a TorchScript model that passes the engine's checks (a middle Linear to quantize, 10
logits for [N,1,28,28]) and then, in its forward, holds on to 64 MiB tensors without end: the sandbox's
memory cap must stop it (service_e2e_test.py, scenario sandbox).

    make_hog_model.py OUT.pt
"""
import sys

import torch


class Hog(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.first = torch.nn.Linear(28 * 28, 32)
        self.middle = torch.nn.Linear(32, 32)
        self.last = torch.nn.Linear(32, 10)

    def forward(self, x):
        hoard = [torch.ones(16 << 20)]
        while len(hoard) > 0:
            hoard.append(torch.ones(16 << 20))
        return self.last(self.middle(self.first(x.flatten(1))))


if __name__ == "__main__":
    torch.jit.script(Hog()).save(sys.argv[1])
