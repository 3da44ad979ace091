// Builds the ONNX ModelProto: the model header (IR version, opset, producer, metadata), unique
// value names, nodes with their attributes, initializers for constants and weights, and the
// graph's input and output value infos.
#ifndef QNET_WORKERS_ENGINE_EXPORT_ONNX_EMITTER_H_
#define QNET_WORKERS_ENGINE_EXPORT_ONNX_EMITTER_H_

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <torch/script.h>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "qnet_onnx.pb.h"
#include "workers/engine/export/onnx/value.h"

// LibTorch's bundled protobuf headers shadow the system ones here (CMakeLists checks this too).
#ifdef QNET_ONNX_PROTOBUF_VERSION
static_assert(GOOGLE_PROTOBUF_VERSION == QNET_ONNX_PROTOBUF_VERSION,
              "protobuf headers and library differ in version");
#endif

namespace qnet::engine::onnx {

namespace pb = ::qnet_onnx;

// Sets the model header and metadata_props, and names the graph.
void InitModel(pb::ModelProto* model, const std::map<std::string, std::string>& metadata);

absl::StatusOr<pb::TensorProto::DataType> OnnxType(at::ScalarType t);

void SetInt(pb::NodeProto* n, const std::string& name, int64_t v);
void SetInts(pb::NodeProto* n, const std::string& name, const std::vector<int64_t>& v);
void SetFloat(pb::NodeProto* n, const std::string& name, double v);

class Emitter {
 public:
  explicit Emitter(pb::GraphProto* graph) : graph_(graph) {}

  // A value name not used before, `hint` or `hint_<n>`.
  std::string Fresh(absl::string_view hint);
  // Appends a node (named `<op>_<n>`); the caller adds attributes.
  pb::NodeProto* Emit(absl::string_view op, const std::vector<std::string>& inputs,
                      const std::vector<std::string>& outputs);
  absl::StatusOr<std::string> Initializer(const at::Tensor& t, absl::string_view hint);
  // `codes` (integers in [-8, 7] when is_signed, else [0, 15]) as an INT4/UINT4 initializer: two
  // per byte, the first in the low nibble.
  absl::StatusOr<std::string> Int4Initializer(const at::Tensor& codes, bool is_signed,
                                              absl::string_view hint);
  absl::StatusOr<std::string> Scalar(double v, at::ScalarType dtype);
  absl::StatusOr<std::string> Int64s(const std::vector<int64_t>& v);
  // An ONNX value for a tensor operand: the dynamic value (cast to `dtype` when it differs and
  // dtype is given), or an initializer for constants and numbers.
  absl::StatusOr<std::string> Operand(const SlotPtr& s, std::optional<at::ScalarType> dtype);
  // Like Operand for a layer weight: quantized weights become their low-bit codes
  // (patterns.h, QuantizedWeight).
  absl::StatusOr<std::string> Weight(const SlotPtr& s, bool transpose);

  // The float input [N, C, H, W] with a symbolic batch dimension N.
  void AddInput(const std::string& name, const std::vector<int64_t>& chw);
  // An output typed from its values on the two example batches: dims that agree are fixed, a
  // leading dim that follows the batch is N, others are left unknown.
  absl::Status AddOutput(const std::string& name, const at::Tensor& ya, const at::Tensor& yb);

 private:
  pb::GraphProto* graph_;
  int64_t counter_ = 0;
  // Initializers made from module tensors, keyed by (TensorImpl, transposed); the tensors are kept
  // alive so a key can never be reused by another tensor.
  std::map<std::pair<const void*, bool>, std::string> weight_cache_;
  std::vector<at::Tensor> keep_alive_;
  std::map<std::string, int> used_names_;
  std::set<std::string> taken_ = {"input", "output"};
};

}  // namespace qnet::engine::onnx

#endif  // QNET_WORKERS_ENGINE_EXPORT_ONNX_EMITTER_H_
