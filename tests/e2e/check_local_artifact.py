#!/usr/bin/env python3
"""check_local_artifact.py MODEL.pt [IO.pt]: the TorchScript artifact of `qnet-worker run` loads in
stock PyTorch; every layer carrying qnet_levels has at most len(qnet_levels) distinct weight values,
all of the form qnet_alpha * level; with IO.pt (a dict {"input", "output"} saved by the engine's
hard evaluation) the artifact's outputs match the engine's. Prints the number of quantized layers."""
import sys
import torch

model = torch.jit.load(sys.argv[1]).eval()
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
if len(sys.argv) > 2:
    io = torch.load(sys.argv[2], weights_only=False)  # written by the test itself
    with torch.no_grad():
        got = model(io['input'])
    want = io['output']
    err = (got - want).abs().max().item()
    assert torch.allclose(got, want, atol=1e-4, rtol=1e-4), f'outputs differ by {err}'
print(quantized)
