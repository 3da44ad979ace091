// Op converters: one function per TorchScript op symbol (or small family) that writes the op's
// ONNX nodes, found by symbol in a registry the graph walker consults for every op on the model
// input. Adding an op is a converter function plus one `registry.Add(...)` line in the Register
// function of its theme's file (convert_*.cc).
#ifndef QNET_WORKERS_ENGINE_EXPORT_ONNX_CONVERTER_H_
#define QNET_WORKERS_ENGINE_EXPORT_ONNX_CONVERTER_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <torch/csrc/jit/ir/ir.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/registry.h"
#include "workers/engine/export/onnx/emitter.h"
#include "workers/engine/export/onnx/value.h"

namespace qnet::engine::onnx {

// One op to convert. The walker has evaluated it on both example batches (`out` holds the
// results) and named its first output `out_name`; a converter writes nodes computing that name
// (or gives out[0] a name of its own) and returns NotSupported-style errors for variants ONNX
// export cannot represent. The walker adds where in the model the op is.
struct ConvertContext {
  const torch::jit::Node* node;
  std::string kind;  // the op's symbol; an in-place op (relu_) under its functional name (relu)
  const std::vector<SlotPtr>& in;
  const std::vector<SlotPtr>& out;
  std::string out_name;
  at::ScalarType out_dtype;  // out[0]'s dtype when it is a tensor, else float
  Emitter& e;

  // INVALID_ARGUMENT "ONNX export does not support <kind>[: why]".
  absl::Status Unsupported(absl::string_view why = "") const;
  // in[0] when it is computed from the model input.
  absl::StatusOr<std::string> FirstTensor() const;
  // out_name = Identity(in[0]).
  absl::Status Identity() const;
  // Argument `i` as a constant: refused when it depends on the batch size or the data.
  absl::StatusOr<std::vector<int64_t>> StaticInts(size_t i, absl::string_view what) const;
  absl::StatusOr<int64_t> StaticInt(size_t i, absl::string_view what) const;
  absl::StatusOr<double> StaticDouble(size_t i, absl::string_view what) const;
  absl::StatusOr<bool> StaticBool(size_t i, absl::string_view what) const;
  // Repeats a one-element list to `rank` entries (PyTorch accepts [k] for [k, k]).
  absl::StatusOr<std::vector<int64_t>> Expand(std::vector<int64_t> v, size_t rank,
                                              absl::string_view what) const;
};

using Converter = absl::Status (*)(const ConvertContext& c);

// Converters by op symbol ("aten::relu"), in the project's registry (common/registry.h: a symbol
// registered twice stops the process). Each theme's file registers its ops through the explicit
// Register* call below rather than a static registrar, so nothing depends on how qnet_onnx is
// linked.
using ConverterRegistry = Registry<Converter>;

// Every converter, registered on first use.
const ConverterRegistry& Converters();

// The themes' registrations (convert_*.cc).
void RegisterConvLinearConverters(ConverterRegistry& registry);
void RegisterActivationConverters(ConverterRegistry& registry);
void RegisterPoolingConverters(ConverterRegistry& registry);
void RegisterShapeConverters(ConverterRegistry& registry);
void RegisterMathConverters(ConverterRegistry& registry);

}  // namespace qnet::engine::onnx

#endif  // QNET_WORKERS_ENGINE_EXPORT_ONNX_CONVERTER_H_
