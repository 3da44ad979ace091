"""Writes the fixtures of onnx_io_test (the ONNX importer's inputs, outputs and files) into OUT_DIR.

named.onnx: a small CNN for [N, 1, 28, 28] images (Conv, BatchNormalization kept, Relu, a strided
Conv, GlobalAveragePool, Gemm) exported by torch.onnx.export with the input "pixel_values" and the
output "logits". external.onnx: the same model with every tensor in external_data/weights.bin, as
onnx.save(..., save_as_external_data=True, location=...) writes it. nhwc.onnx: the layout
tf2onnx exports a Keras model in: input "input_1" [N, 28, 28, 1] (NHWC), a Transpose to NCHW, the
convolutions, a Transpose back to NHWC before Keras' Flatten, MatMul and Add; output "dense:0".
For each, NAME.input.bin (float32, random normal, [2, ...] in the graph's own layout) and
NAME.expected.bin (float32 [2, 10], ONNX Runtime's output on it).

    python3 make_onnx_io_models.py OUT_DIR
"""
import os
import sys
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import TensorProto, helper, numpy_helper

warnings.filterwarnings("ignore")
RNG = np.random.default_rng(0)


def small_cnn():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
        torch.nn.Conv2d(8, 16, 3, stride=2, padding=1), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 10))
    # Batch-norm statistics that are not the identity, so folding them wrong shows.
    with torch.no_grad():
        model[1].running_mean.uniform_(-0.5, 0.5)
        model[1].running_var.uniform_(0.5, 1.5)
    return model.eval()


def export_named(path):
    torch.onnx.export(small_cnn(), (torch.randn(1, 1, 28, 28),), path, dynamo=False,
                      opset_version=17, training=torch.onnx.TrainingMode.PRESERVE,
                      input_names=["pixel_values"], output_names=["logits"],
                      dynamic_axes={"pixel_values": {0: "batch"}, "logits": {0: "batch"}})


def save_external(named_path, path):
    model = onnx.load(named_path)
    os.makedirs(os.path.join(os.path.dirname(path), "external_data"), exist_ok=True)
    onnx.save(model, path, save_as_external_data=True, all_tensors_to_one_file=True,
              location="external_data/weights.bin", size_threshold=0)
    # Every weight must really be outside the model file for the test to mean anything.
    stored = onnx.load(path, load_external_data=False)
    assert all(t.data_location == TensorProto.EXTERNAL for t in stored.graph.initializer)


def nhwc_model():
    n = helper.make_node
    w = lambda name, *shape: numpy_helper.from_array(
        RNG.normal(0, 0.3, size=shape).astype(np.float32), name)
    nodes = [
        n("Transpose", ["input_1"], ["to_nchw"], perm=[0, 3, 1, 2], name="transpose_in"),
        n("Conv", ["to_nchw", "conv/kernel", "conv/bias"], ["c1"], pads=[1, 1, 1, 1],
          name="conv"),
        n("Relu", ["c1"], ["r1"]),
        n("Conv", ["r1", "conv_1/kernel", "conv_1/bias"], ["c2"], strides=[2, 2],
          pads=[1, 1, 1, 1], name="conv_1"),
        n("Relu", ["c2"], ["r2"]),
        n("Transpose", ["r2"], ["to_nhwc"], perm=[0, 2, 3, 1], name="transpose_out"),
        n("Reshape", ["to_nhwc", "flatten/shape"], ["flat"], name="flatten"),
        n("MatMul", ["flat", "dense/kernel"], ["mm"], name="dense/MatMul"),
        n("Add", ["mm", "dense/bias"], ["dense:0"], name="dense/BiasAdd"),
    ]
    inits = [
        w("conv/kernel", 4, 1, 3, 3), w("conv/bias", 4), w("conv_1/kernel", 8, 4, 3, 3),
        w("conv_1/bias", 8),
        numpy_helper.from_array(np.array([-1, 14 * 14 * 8], np.int64), "flatten/shape"),
        w("dense/kernel", 14 * 14 * 8, 10), w("dense/bias", 10),
    ]
    graph = helper.make_graph(
        nodes, "keras_model",
        [helper.make_tensor_value_info("input_1", TensorProto.FLOAT, ["unk__0", 28, 28, 1])],
        [helper.make_tensor_value_info("dense:0", TensorProto.FLOAT, ["unk__1", 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="tf2onnx")
    onnx.checker.check_model(model)
    return model


def write_reference(path):
    """NAME.input.bin and NAME.expected.bin next to NAME.onnx."""
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    shape = [2] + list(session.get_inputs()[0].shape[1:])
    x = RNG.normal(size=shape).astype(np.float32)
    (y,) = session.run(None, {session.get_inputs()[0].name: x})
    base = path[: -len(".onnx")]
    x.tofile(base + ".input.bin")
    y.astype(np.float32).tofile(base + ".expected.bin")


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    named = os.path.join(out, "named.onnx")
    export_named(named)
    external = os.path.join(out, "external.onnx")
    save_external(named, external)
    nhwc = os.path.join(out, "nhwc.onnx")
    onnx.save(nhwc_model(), nhwc)
    for path in (named, external, nhwc):
        write_reference(path)


if __name__ == "__main__":
    main()
