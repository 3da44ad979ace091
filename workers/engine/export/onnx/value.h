// What the ONNX exporter knows about one TorchScript value while it walks a graph: its concrete
// value on both example batches and, when it depends on the model input, the ONNX value holding
// it. Shared by the graph walker, the emitter and the op converters.
#ifndef QNET_WORKERS_ENGINE_EXPORT_ONNX_VALUE_H_
#define QNET_WORKERS_ENGINE_EXPORT_ONNX_VALUE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <torch/script.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

// Early returns on an error Status / StatusOr, for the exporter's files.
#define QNET_ONNX_RETURN_IF_ERROR(expr)          \
  do {                                           \
    absl::Status _qnet_status = (expr);          \
    if (!_qnet_status.ok()) return _qnet_status; \
  } while (0)

#define QNET_ONNX_CONCAT_INNER(a, b) a##b
#define QNET_ONNX_CONCAT(a, b) QNET_ONNX_CONCAT_INNER(a, b)
#define QNET_ONNX_ASSIGN_OR_RETURN(lhs, expr) \
  QNET_ONNX_ASSIGN_OR_RETURN_IMPL(QNET_ONNX_CONCAT(_qnet_or_, __LINE__), lhs, expr)
#define QNET_ONNX_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                    \
  if (!tmp.ok()) return tmp.status();                   \
  lhs = std::move(*tmp)

namespace qnet::engine::onnx {

// The two example batches: different sizes tell batch-dependent shape arithmetic apart from
// constants; neither is 1, so no size-1 special case fires.
inline constexpr int64_t kBatchA = 2;
inline constexpr int64_t kBatchB = 3;

// What a quantized layer's weight is made of: weight = alpha * levels[j].
struct QuantInfo {
  double alpha = 0;
  std::vector<double> levels;
};

struct Slot;
using SlotPtr = std::shared_ptr<Slot>;
struct Slot {
  c10::IValue a, b;     // the value on example batch A and on batch B
  bool tensor = false;  // a tensor computed from the model input: `name` holds it in ONNX
  bool dyn = false;     // a non-tensor value that changes with the batch size or the data
  bool data = false;    // computed from tensor data (e.g. x.item()): never a constant
  std::string name;
  std::string path;  // module path of objects and their attributes, for names and messages
  std::optional<QuantInfo> quant;
  std::optional<std::vector<SlotPtr>> elems;  // list/tuple elements when some are dynamic
};

// Whether the value (or an element of it) differs between the batches or lives in the ONNX graph.
bool IsDynamic(const Slot& s);
// Whether the value is (or holds) a tensor computed in the ONNX graph.
bool HasOnnxTensor(const Slot& s);
// A value that is the same on both batches.
SlotPtr StaticSlot(c10::IValue v);
// The elements of a list or tuple value, each with its own slot.
absl::StatusOr<std::vector<SlotPtr>> Elements(const SlotPtr& s);
// The slot's batch-A value as a tensor (the caller knows it is one).
inline const at::Tensor& TensorA(const SlotPtr& s) { return s->a.toTensor(); }

bool SameValue(const c10::IValue& x, const c10::IValue& y);
// Whether values of `type` can hold a tensor.
bool HasTensor(const c10::TypePtr& type);
absl::StatusOr<double> ToDouble(const c10::IValue& v, absl::string_view what);
absl::StatusOr<std::vector<double>> ToDoubles(const c10::IValue& v, absl::string_view what);
// The error for a construct ONNX export cannot represent: "ONNX export does not support <what>".
// INVALID_ARGUMENT, because the model (not the exporter's state) decides it.
absl::Status NotSupported(absl::string_view what);

// A possibly negative dim index counted from the front.
inline int64_t NormDim(int64_t d, int64_t rank) { return d < 0 ? d + rank : d; }

}  // namespace qnet::engine::onnx

#endif  // QNET_WORKERS_ENGINE_EXPORT_ONNX_VALUE_H_
