#!/usr/bin/env python3
"""Python side of torchvision_export_test: users' torchvision models in, the engine's artifacts
checked in stock PyTorch and ONNX Runtime. A package that does not import (torch, torchvision,
onnx, onnxruntime) fails the command (exit 1, naming it): the checks never skip.

  torchvision_check.py make DIR NAME...
      each NAME is FAMILY:MODE (MODE script or trace): torchvision.models.FAMILY(weights=None,
      num_classes=10) in eval mode, scripted (torch.jit.script) or traced (torch.jit.trace on a
      [2, 3, S, S] batch), saved as DIR/FAMILY_MODE.pt; S is 64 for alexnet (its pooling needs
      it), else 32. Batch-norm statistics come from three random batches. googlenet is built with
      aux_logits=False and transform_input=True.
  torchvision_check.py check DIR BITS
      DIR holds what the test exported: model.pt, model.onnx, input.bin and engine.bin (float32,
      the engine's hard-model logits on input.bin, shape in shape.txt: N C H W K). Checks:
       - model.pt loads in this process, which has no qnet code, and reproduces engine.bin;
       - every quantized layer's weight (qnet_alpha != 0) takes at most len(qnet_levels) values;
       - model.onnx passes onnx.checker (full_check), runs in ONNX Runtime and agrees with
         model.pt on 64 random inputs (at most a quarter of the samples differ, by level flips
         from float rounding; top-1 equal wherever decided beyond the difference);
       - every quantized layer's weight is stored as codes: INT4/UINT4 at BITS <= 4, else
         INT8/UINT8.
Prints one line of findings; exit status 0 on success.
"""
import pathlib
import sys

from onnx_check import missing_packages  # the sibling checker's; this folder is on sys.path


def make(out_dir, names):
    import warnings
    import torch
    import torchvision
    warnings.filterwarnings('ignore')
    for name in names:
        family, mode = name.split(':')
        torch.manual_seed(1)
        kwargs = dict(weights=None, num_classes=10)
        if family == 'googlenet':
            kwargs.update(aux_logits=False, transform_input=True, init_weights=False)
        model = getattr(torchvision.models, family)(**kwargs)
        size = 64 if family == 'alexnet' else 32
        # Batch-norm statistics of a few random batches, as a trained model has statistics of its
        # data: with the initial ones (mean 0, var 1) many families' logits collapse to zero.
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.momentum = None
        with torch.no_grad():
            for _ in range(3):
                model(torch.randn(8, 3, size, size))
        model.eval()
        if mode == 'script':
            saved = torch.jit.script(model)
        else:
            saved = torch.jit.trace(model, torch.randn(2, 3, size, size), check_trace=False)
        saved.save(str(pathlib.Path(out_dir) / f'{family}_{mode}.pt'))
    return 0


def check(out_dir, bits):
    import numpy as np
    import onnx
    import onnxruntime as ort
    import torch
    d = pathlib.Path(out_dir)
    n, c, h, w, k = [int(v) for v in (d / 'shape.txt').read_text().split()]
    x = np.fromfile(d / 'input.bin', np.float32).reshape(n, c, h, w)
    engine = np.fromfile(d / 'engine.bin', np.float32).reshape(n, k)

    # The TorchScript artifact in stock PyTorch.
    model = torch.jit.load(str(d / 'model.pt')).eval()
    with torch.no_grad():
        ts = model(torch.from_numpy(x)).numpy()
    scale = float(np.abs(engine).max())
    if scale < 1e-3:  # every comparison below would pass on zeros
        print(f'the engine\'s logits are all zero (max {scale:.3g}): nothing to compare')
        return 1
    ts_diff = float(np.abs(ts - engine).max())
    if ts_diff > 1e-4 * scale:
        print(f'model.pt differs from the engine by {ts_diff:.3g} (output scale {scale:.3g})')
        return 1
    quantized = {}
    for name, module in model.named_modules():
        if not hasattr(module, 'qnet_alpha') or float(module.qnet_alpha) == 0:
            continue
        values = torch.unique(module.weight.detach())
        if values.numel() > module.qnet_levels.numel():
            print(f'{name}: {values.numel()} weight values for {module.qnet_levels.numel()} levels')
            return 1
        quantized[name] = module.weight.numel()
    if not quantized:
        print('no quantized layer in model.pt')
        return 1

    # The ONNX artifact: valid, runs, agrees with model.pt, low-bit weights.
    proto = onnx.load(str(d / 'model.onnx'))
    onnx.checker.check_model(proto, full_check=True)
    inits = {t.name: t for t in proto.graph.initializer}
    want = ({onnx.TensorProto.INT4, onnx.TensorProto.UINT4} if bits <= 4
            else {onnx.TensorProto.INT8, onnx.TensorProto.UINT8})
    codes = [inits[node.input[0]] for node in proto.graph.node
             if node.op_type in ('DequantizeLinear', 'Cast') and node.input[0] in inits]
    weight_codes = [t for t in codes if np.prod(t.dims) > 1]
    if len(weight_codes) != len(quantized) or any(t.data_type not in want for t in weight_codes):
        types = sorted({onnx.TensorProto.DataType.Name(t.data_type) for t in weight_codes})
        print(f'{len(weight_codes)} weight code initializers ({types}) for {len(quantized)} '
              f'quantized layers at {bits} bits')
        return 1
    # A quantized network amplifies float rounding: an activation within rounding distance of a
    # step takes the neighbouring level and the difference propagates. Two correct float
    # implementations therefore agree exactly on most samples and differ on a few (DenseNet-121's
    # model.pt run in float64 differs from its own float32 run on 9% of random samples, run
    # without oneDNN on 61%), while a wrong export differs on nearly all. So: on 64 random inputs
    # most samples equal model.pt, and top-1 agrees wherever it is decided beyond the difference.
    sess = ort.InferenceSession(str(d / 'model.onnx'), providers=['CPUExecutionProvider'])
    torch.manual_seed(7)
    xs = torch.randn(64, c, h, w)
    with torch.no_grad():
        ts = model(xs).numpy()
    y = sess.run(None, {sess.get_inputs()[0].name: xs.numpy()})[0]
    diff = np.abs(y - ts).max(1)
    differing = float((diff > 1e-3 * scale).mean())
    top2 = np.sort(ts, 1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) > 2 * diff  # top-1 decided beyond the difference
    agree = float((y.argmax(1) == ts.argmax(1))[clear].mean()) if clear.any() else 1.0
    ops = sorted({node.op_type for node in proto.graph.node})
    size = (d / 'model.onnx').stat().st_size
    print(f'model.pt vs engine {ts_diff:.3g}, onnx vs model.pt: {differing:.1%} of samples differ '
          f'(max {diff.max():.3g}, scale {scale:.3g}), top-1 agreement {agree:.3f}, '
          f'{len(quantized)} quantized layers, model.onnx {size} bytes, ops {ops}')
    if differing > 0.25 or agree < 1.0:
        return 1
    return 0


NEEDS = {'make': ('torch', 'torchvision'), 'check': ('torch', 'onnx', 'onnxruntime', 'numpy')}


def main(argv):
    if not argv or argv[0] not in NEEDS:
        print(__doc__)
        return 2
    missing = missing_packages(NEEDS[argv[0]])
    if missing:
        print(f'missing Python packages (pip install them): {", ".join(missing)}')
        return 1
    if argv[0] == 'make' and len(argv) >= 3:
        return make(argv[1], argv[2:])
    if argv[0] == 'check' and len(argv) == 3:
        return check(argv[1], int(argv[2]))
    print(__doc__)
    return 2


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
