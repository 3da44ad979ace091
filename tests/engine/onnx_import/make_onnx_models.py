"""Writes the ONNX importer's test fixtures into OUT_DIR.

Models: the torchvision families in FAMILIES (weights=None, 10 classes, 32x32 inputs, dynamic
batch), by torch.onnx.export's TorchScript exporter (dynamo=False: it needs no onnxscript) at opset
17, with batch norms kept (TrainingMode.PRESERVE) or folded into the convolutions where they follow
one (TrainingMode.EVAL, the default export); small_cnn.onnx and small_cnn_bn.onnx, one small CNN
with random batch-norm statistics exported with the default constant folding (its batch norms
folded into the convolutions) and with do_constant_folding=False (kept), and small_cnn.pt, the
same model saved by torch.jit.script; and ops.onnx, a
hand-written opset-20 graph with every op the importer maps. For each, NAME.input.bin (float32
[2, C, H, W], random normal) and NAME.expected.bin (float32, ONNX Runtime's output on it).
Malformed files, each refused with its own message: not_protobuf, truncated, missing_initializer,
cyclic, unsupported_op, external_outside, old_opset. The fuzz target's corpus (fuzz/corpus) is
a copy of ops.onnx, cyclic.onnx, unsupported_op.onnx and missing_initializer.onnx.

    python3 make_onnx_models.py OUT_DIR
"""
import os
import sys
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torchvision
from onnx import TensorProto, helper, numpy_helper

warnings.filterwarnings("ignore")
RNG = np.random.default_rng(0)


# (torchvision constructor, export mode); README.md's table of verified ONNX families lists them.
FAMILIES = [
    ("resnet18", torch.onnx.TrainingMode.PRESERVE),
    ("mobilenet_v3_small", torch.onnx.TrainingMode.EVAL),
    ("efficientnet_b0", torch.onnx.TrainingMode.PRESERVE),  # SiLU as x * Sigmoid(x)
    ("densenet121", torch.onnx.TrainingMode.EVAL),  # norms after a Concat stay unfolded
    ("convnext_tiny", torch.onnx.TrainingMode.EVAL),  # LayerNorm over channels, layer scale
    ("shufflenet_v2_x0_5", torch.onnx.TrainingMode.PRESERVE),  # channel shuffle, runtime Slice
]


def export_torchvision(name, out, training):
    model = getattr(torchvision.models, name)(weights=None, num_classes=10).eval()
    path = os.path.join(out, name + ".onnx")
    torch.onnx.export(model, (torch.randn(1, 3, 32, 32),), path, dynamo=False, opset_version=17,
                      training=training, input_names=["image"], output_names=["logits"],
                      dynamic_axes={"image": {0: "N"}, "logits": {0: "N"}})
    return path


class SmallCnn(torch.nn.Module):
    """Conv-BN-ReLU blocks (one depthwise), a squeeze-and-excitation gate and a classifier conv:
    the convolutions the importer gives a restored batch norm and those it does not."""

    def __init__(self):
        super().__init__()
        block = lambda c_in, c_out, **kw: torch.nn.Sequential(
            torch.nn.Conv2d(c_in, c_out, 3, padding=1, bias=False, **kw),
            torch.nn.BatchNorm2d(c_out), torch.nn.ReLU())
        self.features = torch.nn.Sequential(block(3, 8), block(8, 8, groups=8),
                                            block(8, 16, stride=2))
        self.se = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Conv2d(16, 4, 1),
                                      torch.nn.ReLU(), torch.nn.Conv2d(4, 16, 1),
                                      torch.nn.Sigmoid())
        self.classifier = torch.nn.Conv2d(16, 10, 1)

    def forward(self, x):
        x = self.features(x)
        x = self.classifier(x * self.se(x))
        return x.mean((2, 3))


def export_small_cnn(out):
    """small_cnn.onnx (batch norms folded) and small_cnn_bn.onnx (kept), one model, which
    small_cnn.pt holds as TorchScript."""
    model = SmallCnn().eval()
    with torch.no_grad():  # statistics far from (0, 1): folding changes the weights' scale
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.2, 4)
                m.weight.uniform_(0.5, 2)
                m.bias.uniform_(-0.5, 0.5)
    torch.jit.script(model).save(os.path.join(out, "small_cnn.pt"))
    paths = []
    for name, fold in (("small_cnn", True), ("small_cnn_bn", False)):
        paths.append(os.path.join(out, name + ".onnx"))
        torch.onnx.export(model, (torch.randn(1, 3, 32, 32),), paths[-1], dynamo=False,
                          opset_version=17, do_constant_folding=fold, input_names=["image"],
                          output_names=["logits"],
                          dynamic_axes={"image": {0: "N"}, "logits": {0: "N"}})
    return paths


def init(name, array):
    return numpy_helper.from_array(np.asarray(array, dtype=np.float32), name)


def weights(name, *shape):
    return init(name, RNG.normal(0, 0.3, size=shape))


def ops_model():
    """Every op the importer maps, on a [N, 3, 16, 16] input, in one chain to [N, 10] logits."""
    n = helper.make_node
    ints = lambda name, v: numpy_helper.from_array(np.asarray(v, dtype=np.int64), name)
    nodes = [
        n("Conv", ["x", "c1.weight", "c1.bias"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
        n("BatchNormalization", ["c1", "bn.weight", "bn.bias", "bn.mean", "bn.var"], ["b1"],
          epsilon=1e-3, name="bn1"),
        n("Relu", ["b1"], ["r1"]),
        n("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        n("Conv", ["p1", "dw.weight"], ["c2"], group=8, auto_pad="SAME_UPPER", name="depthwise"),
        n("HardSwish", ["c2"], ["h2"]),
        n("Conv", ["h2", "dil.weight"], ["c3"], dilations=[2, 2], pads=[2, 2, 2, 2]),
        n("LeakyRelu", ["c3"], ["l3"], alpha=0.1),
        n("Conv", ["l3", "asym.weight"], ["c4"], pads=[0, 0, 1, 1]),
        n("Clip", ["c4", "zero", "six"], ["cl"]),
        n("HardSigmoid", ["cl"], ["hs"], alpha=0.2, beta=0.5),
        n("Mul", ["cl", "hs"], ["m4"]),
        n("Conv", ["m4", "same.weight"], ["c5"], strides=[2, 2], auto_pad="SAME_LOWER"),
        n("Sigmoid", ["c5"], ["sg"]),
        n("Tanh", ["c5"], ["th"]),
        n("Sub", ["sg", "th"], ["sub"]),
        n("Erf", ["sub"], ["erf"]),
        n("Constant", [], ["two"], value_float=2.0),
        n("Div", ["erf", "two"], ["div"]),
        n("Add", ["div", "c5"], ["ad"]),
        n("AveragePool", ["ad"], ["ap"], kernel_shape=[3, 3], pads=[1, 1, 1, 1],
          count_include_pad=1),
        n("Split", ["ap", "split"], ["s1", "s2"], axis=1),
        n("Softmax", ["s1"], ["sm"], axis=1),
        n("Concat", ["sm", "s2"], ["cat"], axis=1),
        n("Transpose", ["cat"], ["nhwc"], perm=[0, 2, 3, 1]),
        n("Transpose", ["nhwc"], ["nchw"], perm=[0, 3, 1, 2]),
        n("Slice", ["nchw", "sl.starts", "sl.ends", "sl.axes"], ["sl"]),
        n("Pad", ["sl", "pad.pads", "pad.value"], ["pd"], mode="constant"),
        n("PRelu", ["pd", "prelu.weight"], ["pr"]),
        n("InstanceNormalization", ["pr", "in.scale", "in.bias"], ["ins"]),
        # A residual around the instance norm, which alone would erase the spatial means that
        # the pools below read.
        n("Add", ["ins", "pr"], ["mix"]),
        n("Resize", ["mix", "", "rs.scales"], ["rs"], mode="nearest",
          coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
        n("ConvTranspose", ["rs", "up.weight", "up.bias"], ["ct"], strides=[2, 2]),
        n("GlobalAveragePool", ["ct"], ["gap"]),
        n("ReduceMean", ["rs", "rm.axes"], ["rm"], keepdims=1),
        n("Concat", ["gap", "rm"], ["cc"], axis=1),
        # The split point exporters write for torch.chunk(x, 2, 1): Slice bounds computed from the
        # shape at run time, by arithmetic on one-element lists. The halves swap places.
        n("Shape", ["cc"], ["cc.shape"]),
        n("Gather", ["cc.shape", "one_list"], ["channels"], axis=0),
        n("Add", ["channels", "one_list"], ["channels1"]),
        n("Div", ["channels1", "two_list"], ["half"]),
        n("Mul", ["half", "one_list"], ["half1"]),
        n("Sub", ["channels", "half1"], ["rest"]),
        n("Slice", ["cc", "zero_list", "half1", "one_list"], ["first"]),
        n("Slice", ["cc", "rest", "channels", "one_list"], ["second"]),
        n("Concat", ["second", "first"], ["swapped"], axis=1),
        n("Mul", ["swapped", "cc"], ["cc2"]),
        # The batch-size arithmetic exporters write for x.view(x.size(0), -1).
        n("Shape", ["cc2"], ["shape"]),
        n("Gather", ["shape", "zero_index"], ["batch"], axis=0),
        n("Unsqueeze", ["batch", "axes0"], ["batch1"]),
        n("Concat", ["batch1", "minus_one"], ["target"], axis=0),
        n("Cast", ["target"], ["target64"], to=TensorProto.INT64),
        n("Reshape", ["cc2", "target64"], ["rsh"]),
        n("Flatten", ["cc2"], ["fl"], axis=1),
        n("Add", ["rsh", "fl"], ["flat"]),
        n("Unsqueeze", ["flat", "axes1"], ["u"]),
        n("Squeeze", ["u", "axes1"], ["sq"]),
        n("LayerNormalization", ["sq", "ln.scale", "ln.bias"], ["ln"], axis=-1),
        n("Gelu", ["ln"], ["gelu"]),
        n("Dropout", ["gelu", "drop.ratio"], ["drop"]),
        n("Identity", ["drop"], ["id"]),
        n("MatMul", ["id", "mm.weight"], ["mm"]),
        n("Add", ["mm", "mm.bias"], ["mmb"]),
        n("Relu", ["mmb"], ["hidden"]),
        n("Gemm", ["hidden", "fc.weight", "fc.bias"], ["gemm"], transB=1, name="fc"),
        n("ConstantOfShape", ["out.shape"], ["zeros"],
          value=numpy_helper.from_array(np.zeros(1, np.float32))),
        n("Cast", ["zeros"], ["zeros32"], to=TensorProto.FLOAT),
        n("Add", ["gemm", "zeros32"], ["logits"]),
    ]
    inits = [
        weights("c1.weight", 8, 3, 3, 3), weights("c1.bias", 8),
        weights("bn.weight", 8), weights("bn.bias", 8), weights("bn.mean", 8),
        init("bn.var", RNG.uniform(0.5, 1.5, 8)),
        weights("dw.weight", 8, 1, 3, 3), weights("dil.weight", 8, 8, 3, 3),
        weights("asym.weight", 8, 8, 2, 2), init("zero", 0.0), init("six", 6.0),
        weights("same.weight", 8, 8, 3, 3), ints("split", [3, 5]),
        ints("sl.starts", [1]), ints("sl.ends", [4]), ints("sl.axes", [2]),
        ints("pad.pads", [0, 0, 1, 0, 0, 0, 0, 0]), init("pad.value", 0.5),
        weights("prelu.weight", 8, 1, 1), weights("in.scale", 8), weights("in.bias", 8),
        init("rs.scales", [1, 1, 2, 2]), weights("up.weight", 8, 4, 2, 2), weights("up.bias", 4),
        ints("rm.axes", [2, 3]), ints("zero_index", 0), ints("axes0", [0]),
        ints("minus_one", [-1]), ints("axes1", [1]), ints("one_list", [1]), ints("two_list", [2]),
        ints("zero_list", [0]), weights("ln.scale", 12),
        weights("ln.bias", 12), init("drop.ratio", 0.1), weights("mm.weight", 12, 16),
        weights("mm.bias", 16), weights("fc.weight", 10, 16), weights("fc.bias", 10),
        ints("out.shape", [1, 10]),
    ]
    graph = helper.make_graph(
        nodes, "ops", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 16, 16])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    onnx.checker.check_model(model)
    return model


def write_reference(path):
    """NAME.input.bin and NAME.expected.bin next to NAME.onnx."""
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    shape = [2] + [d for d in session.get_inputs()[0].shape[1:]]
    x = RNG.normal(size=shape).astype(np.float32)
    (y,) = session.run(None, {session.get_inputs()[0].name: x})
    base = path[: -len(".onnx")]
    x.tofile(base + ".input.bin")
    y.astype(np.float32).tofile(base + ".expected.bin")


def tiny_graph(nodes, inits, opset=17, inputs=None):
    graph = helper.make_graph(
        nodes, "g",
        inputs or [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def write_malformed(out, good_bytes):
    n = helper.make_node
    with open(os.path.join(out, "not_protobuf.onnx"), "wb") as f:
        f.write(b"this is a text file, not a model\n")
    with open(os.path.join(out, "truncated.onnx"), "wb") as f:
        f.write(good_bytes[: len(good_bytes) // 2])
    conv = [n("Conv", ["x", "w"], ["c"]), n("Flatten", ["c"], ["y"])]
    onnx.save(tiny_graph(conv, []), os.path.join(out, "missing_initializer.onnx"))
    cyclic = [n("Relu", ["x2"], ["x1"], name="a"), n("Relu", ["x1"], ["x2"], name="b"),
              n("Add", ["x", "x2"], ["y"])]
    onnx.save(tiny_graph(cyclic, []), os.path.join(out, "cyclic.onnx"))
    topk = [n("Flatten", ["x"], ["f"]), n("TopK", ["f", "k"], ["y", "i"], name="pick_top")]
    onnx.save(tiny_graph(topk, [numpy_helper.from_array(np.array([3], np.int64), "k")]),
              os.path.join(out, "unsupported_op.onnx"))
    w = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[1, 1, 1, 1])
    w.data_location = TensorProto.EXTERNAL
    entry = w.external_data.add()
    entry.key, entry.value = "location", "../outside.bin"
    onnx.save(tiny_graph(conv, [w]), os.path.join(out, "external_outside.onnx"))
    onnx.save(tiny_graph([n("Relu", ["x"], ["y"])], [], opset=11),
              os.path.join(out, "old_opset.onnx"))


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    paths = [export_torchvision(name, out, training) for name, training in FAMILIES]
    paths += export_small_cnn(out)
    ops_path = os.path.join(out, "ops.onnx")
    onnx.save(ops_model(), ops_path)
    paths.append(ops_path)
    for path in paths:
        write_reference(path)
    with open(ops_path, "rb") as f:
        write_malformed(out, f.read())


if __name__ == "__main__":
    main()
