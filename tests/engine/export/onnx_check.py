#!/usr/bin/env python3
"""Python side of onnx_export_test. A command fails (exit 1, naming the package) when a package it
needs (onnx, onnxruntime, torch, torchvision) does not import: the numeric checks never skip.

  onnx_check.py make-resnet18 OUT.pt [--quantize]
      torchvision resnet18 (10 classes, random running stats) scripted and saved; with --quantize
      every conv but the first holds ternary weights alpha*{-1,0,1} and carries the attributes
      qnet_alpha / qnet_levels, like the engine's hard artifact
  onnx_check.py make-traced OUT.pt
      a small CNN traced with torch.jit.trace (x.view(x.size(0), -1), batch norm, relu6,
      grouped conv, dropout, log_softmax)
  onnx_check.py make-family FAMILY OUT.pt
      a scripted model on [N, 3, 8, 8] inputs that uses the ops of one converter family:
      activations, conv-linear, pooling, shape, indexing, math
  onnx_check.py check MODEL.onnx MODEL.pt C H W [--min-code-dq K] [--act-qdq] [--act-steps]
                      [--no-top1]
      onnx.checker full check; ONNX Runtime against torch.jit.load(MODEL.pt) on fixed random
      inputs (outputs must be close, and top-1 must agree everywhere unless --no-top1: for models
      whose output is not class scores); at least K DequantizeLinear
      nodes of INT4/INT8 code initializers; --act-qdq: QuantizeLinear present; --act-steps: the
      exact comparison form (GreaterOrEqual) present; --meta KEY=VALUE (repeatable): ONNX Runtime's custom
      metadata map holds KEY with exactly VALUE
Prints one line of findings; exit status 0 on success.
"""
import sys


def missing_packages(names):
    """The packages among `names` that do not import, as 'name (error)'."""
    missing = []
    for name in names:
        try:
            __import__(name)
        except Exception as e:  # an ImportError, or a broken install
            missing.append(f'{name} ({e})')
    return missing


def make_resnet18(out, quantize):
    import torch, torchvision
    torch.manual_seed(7)
    m = torchvision.models.resnet18(num_classes=10)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.2, 0.2)
                mod.running_var.uniform_(0.5, 2.0)
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.2, 0.2)
        if quantize:
            convs = [mod for mod in m.modules() if isinstance(mod, torch.nn.Conv2d)]
            for conv in convs[1:]:
                w = conv.weight
                alpha = float(w.abs().mean())
                q = torch.where(w > 0.5 * alpha, 1.0, torch.where(w < -0.5 * alpha, -1.0, 0.0))
                w.copy_(alpha * q)
                conv.qnet_alpha = alpha
                conv.register_buffer('qnet_levels', torch.tensor([-1.0, 0.0, 1.0]))
    torch.jit.script(m.eval()).save(out)
    return 0


def make_traced(out):
    import torch
    from torch import nn
    torch.manual_seed(3)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
            self.bn = nn.BatchNorm2d(8)
            self.conv2 = nn.Conv2d(8, 16, 3, stride=2, groups=2)
            self.pool = nn.AdaptiveAvgPool2d((2, 2))
            self.drop = nn.Dropout(0.5)
            self.fc = nn.Linear(64, 10)

        def forward(self, x):
            x = torch.max_pool2d(torch.relu(self.bn(self.conv1(x))), 2)
            x = nn.functional.relu6(self.conv2(x) * 2.0 - 0.1)
            x = self.pool(x)
            x = x.view(x.size(0), -1)
            return torch.log_softmax(self.fc(self.drop(x)), dim=1)

    m = Net().eval()
    torch.jit.trace(m, torch.randn(2, 3, 16, 16)).save(out)
    return 0


def make_family(family, out):
    import torch
    from torch import nn
    import torch.nn.functional as F
    torch.manual_seed(11)

    class Activations(nn.Module):
        def forward(self, x):
            y = torch.relu(x) + torch.sigmoid(x) + torch.tanh(x) + F.leaky_relu(x, 0.1)
            y = y + F.elu(x, 0.7) + F.hardsigmoid(x) + F.silu(x) + F.gelu(x) + F.hardswish(x)
            y = y + torch.clamp(x, -0.5, 0.25) + F.relu6(x * 4.0) + F.hardtanh(x, -0.3, 0.6)
            y = y + torch.clamp(x, min=-0.2) + torch.sqrt(torch.exp(x)) + torch.log(x.abs() + 1)
            y = y + torch.erf(x) + torch.sin(x) + torch.cos(x) + torch.reciprocal(x.abs() + 1)
            y = y - torch.neg(torch.floor(x * 3.0)) + torch.ceil(x * 3.0)
            y = F.dropout(y, 0.5, self.training).flatten(1)
            return torch.cat([y, torch.log_softmax(y, 1), torch.softmax(y, -1)], 1)

    class ConvLinear(nn.Module):
        def __init__(self):
            super().__init__()
            self.same = nn.Conv2d(3, 4, 3, padding='same', dilation=2)
            self.grouped = nn.Conv2d(4, 8, 3, stride=2, padding=1, groups=2, bias=False)
            self.bn = nn.BatchNorm2d(8)
            self.ln = nn.LayerNorm([4])
            self.fc3d = nn.Linear(4, 5)
            self.weight = nn.Parameter(torch.randn(8, 6))
            self.bias = nn.Parameter(torch.randn(6))
            with torch.no_grad():
                self.bn.running_mean.uniform_(-0.2, 0.2)
                self.bn.running_var.uniform_(0.5, 2.0)

        def forward(self, x):
            y = self.bn(self.grouped(self.same(x)))         # [N, 8, 4, 4]
            y = self.fc3d(self.ln(y))                       # linear on 4-D: MatMul + Add
            y = y.mean([2, 3])                              # [N, 8]
            z = torch.addmm(self.bias, y, self.weight, beta=0.5, alpha=2.0)
            return torch.matmul(z, self.weight.t()) + torch.mm(y, self.weight).sum(1, keepdim=True)

    class Pooling(nn.Module):
        def forward(self, x):
            a = F.max_pool2d(x, 3, 2, 1)                                  # [N, 3, 4, 4]
            b = F.avg_pool2d(x, 2, 2, count_include_pad=False)            # [N, 3, 4, 4]
            c = F.avg_pool2d(x, 3, 2, 1)                                  # [N, 3, 4, 4]
            d = F.adaptive_avg_pool2d(x, [4, 4])                          # regular windows
            e = F.adaptive_avg_pool2d(x, 1)                               # global
            f = F.max_pool2d(x, 3, 3, ceil_mode=True)                     # [N, 3, 3, 3]
            return torch.cat([(a + b + c + d + e).flatten(1), f.flatten(1)], 1)

    class Shape(nn.Module):
        def forward(self, x):
            n = x.size(0)
            y = x.permute(0, 2, 3, 1).contiguous()                       # [N, 8, 8, 3]
            y = y.transpose(1, 2).reshape(n, 64, 3)                      # [N, 64, 3]
            y = torch.cat([y, y.clone() * 2.0, y.detach()], 2)           # [N, 64, 9]
            y = y.unsqueeze(1).squeeze(1).squeeze(-1).view(n, -1, 8)     # [N, 72, 8]
            y = y.to(torch.float64).sin().to(torch.float32).type_as(x)
            return torch.flatten(y.unsqueeze(3), 2) + y.flatten(0, 1).view(n, 72, 8)

    class Indexing(nn.Module):
        def forward(self, x):
            a, b = torch.chunk(x, 2, dim=2)                              # [N, 3, 4, 8] each
            c = torch.split(x, [3, 5], dim=3)[1]                         # [N, 3, 8, 5]
            u = torch.unbind(x, 1)                                       # 3 x [N, 8, 8]
            return torch.cat([(a - b).flatten(1), c.flatten(1), (u[0] + u[2]).flatten(1),
                              x[:, 1].flatten(1), x[:, :, 2:7:2].flatten(1),
                              x[:, -1:, :, 1:].flatten(1)], 1)

    class Math(nn.Module):
        def forward(self, x):
            y = torch.add(x, x * x, alpha=0.5) - torch.sub(x, 1.5, alpha=2)
            y = y * 3.0 / (x.abs() + 1.0) + torch.true_divide(x, 4.0) - 2.0 / (x * x + 1.0)
            y = y + y.mean([2, 3], keepdim=True) + y.sum(1, keepdim=True) + y.sum() / 1000
            y.add_(x.mean())
            y = torch.relu_(y)
            return y.mean(-1)

    models = {'activations': Activations, 'conv-linear': ConvLinear, 'pooling': Pooling,
              'shape': Shape, 'indexing': Indexing, 'math': Math}
    if family not in models:
        print(f'unknown family {family}; one of {sorted(models)}')
        return 2
    torch.jit.script(models[family]().eval()).save(out)
    return 0


def check(args):
    import numpy as np
    import onnx, onnxruntime as ort, torch
    from onnx import numpy_helper
    onnx_path, ts_path = args[0], args[1]
    shape = [int(v) for v in args[2:5]]
    opts = args[5:]
    min_dq = int(opts[opts.index('--min-code-dq') + 1]) if '--min-code-dq' in opts else 0

    model = onnx.load(onnx_path)
    onnx.checker.check_model(model, full_check=True)
    inits = {t.name: t for t in model.graph.initializer}
    code_types = {onnx.TensorProto.INT4, onnx.TensorProto.INT8}
    code_dq = [n for n in model.graph.node if n.op_type == 'DequantizeLinear'
               and n.input[0] in inits and inits[n.input[0]].data_type in code_types]
    for n in code_dq:
        codes = numpy_helper.to_array(inits[n.input[0]])
        if codes.size and np.unique(codes).size > 256:
            print('codes are not a small level set')
            return 1
    ops = {n.op_type for n in model.graph.node}
    if len(code_dq) < min_dq:
        print(f'{len(code_dq)} code DequantizeLinear nodes, want >= {min_dq}')
        return 1
    if '--act-qdq' in opts and 'QuantizeLinear' not in ops:
        print('no QuantizeLinear for the activation quantizer')
        return 1
    if '--act-steps' in opts and 'GreaterOrEqual' not in ops:
        print('no step form for the activation quantizer')
        return 1

    x = np.random.default_rng(12345).uniform(-1, 1, size=[16] + shape).astype(np.float32)
    sess = ort.InferenceSession(onnx_path, providers=['CPUExecutionProvider'])
    meta = sess.get_modelmeta().custom_metadata_map
    for i, opt in enumerate(opts):
        if opt == '--meta':
            key, value = opts[i + 1].split('=', 1)
            if meta.get(key) != value:
                print(f'metadata {key}: {meta.get(key)!r}, want {value!r}')
                return 1
    y = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    ref = torch.jit.load(ts_path).eval()(torch.from_numpy(x)).detach().numpy()
    if y.shape != ref.shape:
        print(f'shape {y.shape} vs {ref.shape}')
        return 1
    diff = float(np.abs(y - ref).max())
    scale = float(np.abs(ref).max()) + 1e-6
    agree = float((y.argmax(1) == ref.argmax(1)).mean())
    print(f'top-1 agreement {agree:.3f}, max abs diff {diff:.3g} (output scale {scale:.3g}), '
          f'{len(code_dq)} code DequantizeLinear, ops {sorted(ops)}')
    top1_ok = agree == 1.0 or '--no-top1' in opts
    return 0 if top1_ok and diff <= 1e-3 * scale else 1


NEEDS = {'check': ('onnx', 'onnxruntime', 'torch'), 'make-resnet18': ('torch', 'torchvision')}


def main(argv):
    missing = missing_packages(NEEDS.get(argv[0] if argv else '', ('torch',)))
    if missing:
        print(f'missing Python packages (pip install them): {", ".join(missing)}')
        return 1
    if len(argv) >= 3 and argv[0] == 'make-family':
        return make_family(argv[1], argv[2])
    if len(argv) >= 2 and argv[0] == 'make-resnet18':
        return make_resnet18(argv[1], '--quantize' in argv[2:])
    if len(argv) >= 2 and argv[0] == 'make-traced':
        return make_traced(argv[1])
    if len(argv) >= 6 and argv[0] == 'check':
        return check(argv[1:])
    print(__doc__)
    return 2


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
