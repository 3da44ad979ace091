// The quantization patterns the exporter recognizes in the engine's artifact: a layer whose weight
// is alpha * levels (carried as `qnet_alpha` / `qnet_levels`) and the hard activation quantizer
// alpha * (q_0 + sum_i s_i * H(beta*x - b_i)), and the ONNX they become.
#ifndef QNET_WORKERS_ENGINE_EXPORT_ONNX_PATTERNS_H_
#define QNET_WORKERS_ENGINE_EXPORT_ONNX_PATTERNS_H_

#include <optional>
#include <string>
#include <vector>

#include <torch/script.h>

#include "absl/status/statusor.h"
#include "workers/engine/export/onnx/emitter.h"
#include "workers/engine/export/onnx/value.h"

namespace qnet::engine::onnx {

// The quantization of `layer`'s weight, or nullopt when the layer carries none.
// INVALID_ARGUMENT when the attributes are there but malformed.
absl::StatusOr<std::optional<QuantInfo>> LayerQuantInfo(
    const c10::intrusive_ptr<c10::ivalue::Object>& layer, const std::string& path);

// Whether a layout-only op applied to a quantized weight leaves it quantized (weight.t() feeding
// addmm, say), so the weight is still written as codes.
bool KeepsWeightQuantization(const std::string& kind);

// Writes `w` (= alpha * levels) as low-bit codes that reproduce it exactly: DequantizeLinear of
// linear codes with scale |alpha|*d when the levels are multiples of a common step d (INT4 codes
// when they fit), else level indices (UINT4 for up to 16 levels) cast and gathered from the
// weight's own level values. nullopt when an element differs from its level's value (the weight
// is then written as float).
absl::StatusOr<std::optional<std::string>> QuantizedWeight(Emitter& e, const at::Tensor& w,
                                                           const QuantInfo& q,
                                                           const std::string& hint);

// Whether calls to this module's forward are activation quantizers.
bool IsActivationQuantizer(const c10::ClassTypePtr& type);

// Translates `quantizer.forward(x)` (call_inputs = {quantizer, x}) after checking, on both
// example batches, that the module computes the hard quantizer from its attributes. Every form
// ends in an 8-bit QuantizeLinear/DequantizeLinear pair (patterns.cc, EmitActivationQuantizer):
// rounding for uniform levels with midpoint thresholds, exact comparisons otherwise; a disabled
// quantizer is x itself.
absl::StatusOr<SlotPtr> ActivationQuantizer(Emitter& e, const std::vector<SlotPtr>& call_inputs);

}  // namespace qnet::engine::onnx

#endif  // QNET_WORKERS_ENGINE_EXPORT_ONNX_PATTERNS_H_
