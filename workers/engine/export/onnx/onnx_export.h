// ONNX export of the engine's hard-quantized TorchScript artifact.
//
// The exporter walks the module's TorchScript graphs while running them on two example batches, so
// submodule calls, `self.training` branches and shape arithmetic resolve to concrete values, and
// writes one ONNX node group per tensor op through a converter registered for the op's symbol.
// Quantized layers (Conv2d/Linear submodules carrying `qnet_alpha` and `qnet_levels`) become
// DequantizeLinear of an INT4 (4 bits or fewer) or INT8 initializer of level codes, or a Gather
// of level indices for level sets with no exact common scale; activation quantizers (submodules
// whose type name contains "QnetActivationQuantizer") become 8-bit QuantizeLinear/
// DequantizeLinear pairs (docs/METHOD.md, "Artifacts"). The model has opset 21, input [N,C,H,W]
// and output with a dynamic batch dimension N, named "input" and "output" unless `names` says.
//
//   torch::jit::Module hard = torch::jit::load(out_dir + "/model.pt");
//   absl::Status s = qnet::engine::ExportOnnx(hard, {1, 28, 28}, out_dir + "/model.onnx");
//   if (!s.ok()) return s;  // e.g. "ONNX export has no converter for aten::cumsum (node ...)"
#ifndef QNET_WORKERS_ENGINE_EXPORT_ONNX_ONNX_EXPORT_H_
#define QNET_WORKERS_ENGINE_EXPORT_ONNX_ONNX_EXPORT_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <torch/script.h>

#include "absl/status/status.h"
#include "workers/engine/export/io_names.h"

namespace qnet::engine {

// Writes `hard_model` (forward: one [N,C,H,W] tensor in, logits out) as an ONNX model at `path`.
// `input_shape` is {C, H, W}. The module is not modified (the export works on a CPU clone in eval
// mode). Errors: INVALID_ARGUMENT for a bad shape, a model that fails on it, a malformed or
// soft-mode activation quantizer, and anything the exporter cannot represent: an op with no
// converter, an op variant its converter refuses, a branch on the input data (the message names
// the op and the node: its TorchScript IR, method and source); NOT_FOUND when the directory of
// `path` does not exist; INTERNAL when the file cannot be written or the exporter contradicts
// the model. Never throws. `metadata` becomes the model's metadata_props (key -> value), read back
// by onnx.load(...).metadata_props or onnxruntime's
// InferenceSession.get_modelmeta().custom_metadata_map. `names` are the graph's input and output
// names (INVALID_ARGUMENT when one is empty or they are equal); a forward returning a tuple has
// outputs <output>_1, <output>_2, ... The file is written atomically.
absl::Status ExportOnnx(const torch::jit::Module& hard_model,
                        const std::vector<int64_t>& input_shape, const std::string& path,
                        const std::map<std::string, std::string>& metadata = {},
                        const IoNames& names = {});

}  // namespace qnet::engine

#endif  // QNET_WORKERS_ENGINE_EXPORT_ONNX_ONNX_EXPORT_H_
