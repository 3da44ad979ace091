"""Checks an exported model.onnx the way its user would: read by the onnx package, its graph's
input and output names the ones given, and run in ONNX Runtime on a random [2, C, H, W] batch fed
under that input name, giving finite [2, CLASSES] logits. Prints what differs; exit status 1 then.

    python3 onnx_io_check.py MODEL.onnx INPUT_NAME OUTPUT_NAME CxHxW CLASSES
"""
import sys

import numpy as np
import onnx
import onnxruntime as ort


def main():
    path, want_in, want_out, chw, classes = sys.argv[1:6]
    model = onnx.load(path)
    onnx.checker.check_model(model)
    initializers = {t.name for t in model.graph.initializer}
    inputs = [i.name for i in model.graph.input if i.name not in initializers]
    outputs = [o.name for o in model.graph.output]
    problems = []
    if inputs != [want_in]:
        problems.append(f"graph inputs {inputs}, want ['{want_in}']")
    if outputs != [want_out]:
        problems.append(f"graph outputs {outputs}, want ['{want_out}']")
    if not problems:
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        x = np.random.default_rng(0).normal(size=[2] + [int(d) for d in chw.split("x")])
        (y,) = session.run([want_out], {want_in: x.astype(np.float32)})
        if y.shape != (2, int(classes)) or not np.isfinite(y).all():
            problems.append(f"ONNX Runtime gives shape {y.shape}, finite: {np.isfinite(y).all()}")
    for p in problems:
        print(p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
