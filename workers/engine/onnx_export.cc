#include "workers/engine/onnx_export.h"
#include "workers/engine/torch_error.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/function.h>
#include <torch/csrc/jit/api/function_impl.h>
#include <torch/csrc/jit/ir/constants.h>
#include <torch/csrc/jit/ir/ir.h>
#include <torch/script.h>
#include <torch/torch.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "common/atomic_file.h"
#include "qnet_onnx.pb.h"

// LibTorch's bundled protobuf headers shadow the system ones here (CMakeLists checks this too).
#ifdef QNET_ONNX_PROTOBUF_VERSION
static_assert(GOOGLE_PROTOBUF_VERSION == QNET_ONNX_PROTOBUF_VERSION,
              "protobuf headers and library differ in version");
#endif

namespace qnet::engine {
namespace {

namespace pb = ::qnet_onnx;
using c10::IValue;
using torch::jit::Block;
using torch::jit::Node;
using torch::jit::Value;

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

// Opset 17 (ONNX 1.12) pairs with IR version 8; onnxruntime has run both for years.
constexpr int64_t kOpset = 17;
constexpr int64_t kIrVersion = 8;
// The two example batches: different sizes tell batch-dependent shape arithmetic apart from
// constants; neither is 1, so no size-1 special case fires.
constexpr int64_t kBatchA = 2;
constexpr int64_t kBatchB = 3;
// Guards against runaway loops in user graphs.
constexpr int64_t kMaxSteps = 5'000'000;
constexpr int kMaxDepth = 256;

constexpr char kActivationQuantizerType[] = "QnetActivationQuantizer";

// What a quantized layer's weight is made of: weight = alpha * levels[j].
struct QuantInfo {
  double alpha = 0;
  std::vector<double> levels;
};

// One TorchScript value during the export: its concrete value on both example batches and, when
// it depends on the model input, the ONNX value holding it.
struct Slot;
using SlotPtr = std::shared_ptr<Slot>;
struct Slot {
  IValue a, b;
  bool tensor = false;  // a tensor computed from the model input: `name` holds it in ONNX
  bool dyn = false;     // a non-tensor value that changes with the batch size or the data
  bool data = false;    // computed from tensor data (e.g. x.item()): never a constant
  std::string name;
  std::string path;  // module path of objects and their attributes, for names and messages
  std::optional<QuantInfo> quant;
  std::optional<std::vector<SlotPtr>> elems;  // list/tuple elements when some are dynamic
};

bool IsDynamic(const Slot& s) {
  if (s.tensor || s.dyn) return true;
  if (s.elems) {
    for (const SlotPtr& e : *s.elems) {
      if (IsDynamic(*e)) return true;
    }
  }
  return false;
}

// Whether the value is (or holds) a tensor computed in the ONNX graph.
bool HasOnnxTensor(const Slot& s) {
  if (s.tensor) return true;
  if (s.elems) {
    for (const SlotPtr& e : *s.elems) {
      if (HasOnnxTensor(*e)) return true;
    }
  }
  return false;
}

SlotPtr StaticSlot(IValue v) {
  auto s = std::make_shared<Slot>();
  s->a = v;
  s->b = std::move(v);
  return s;
}

using Env = std::unordered_map<const Value*, SlotPtr>;

bool SameValue(const IValue& x, const IValue& y) {
  if (x.isTensor() && y.isTensor()) {
    const at::Tensor& tx = x.toTensor();
    const at::Tensor& ty = y.toTensor();
    if (tx.unsafeGetTensorImpl() == ty.unsafeGetTensorImpl()) return true;
    if (!tx.defined() || !ty.defined()) return tx.defined() == ty.defined();
    return tx.sizes() == ty.sizes() && tx.scalar_type() == ty.scalar_type() && tx.equal(ty);
  }
  if (x.isList() && y.isList()) {
    const c10::List<IValue> lx = x.toList();
    const c10::List<IValue> ly = y.toList();
    if (lx.size() != ly.size()) return false;
    for (size_t i = 0; i < lx.size(); ++i) {
      if (!SameValue(lx.get(i), ly.get(i))) return false;
    }
    return true;
  }
  if (x.isTuple() && y.isTuple()) {
    const auto& ex = x.toTupleRef().elements();
    const auto& ey = y.toTupleRef().elements();
    if (ex.size() != ey.size()) return false;
    for (size_t i = 0; i < ex.size(); ++i) {
      if (!SameValue(ex[i], ey[i])) return false;
    }
    return true;
  }
  if (x.isInt() && y.isInt()) return x.toInt() == y.toInt();
  if (x.isDouble() && y.isDouble()) return x.toDouble() == y.toDouble();
  if (x.isBool() && y.isBool()) return x.toBool() == y.toBool();
  if (x.isString() && y.isString()) return x.toStringRef() == y.toStringRef();
  if (x.isNone() && y.isNone()) return true;
  if (x.isDevice() && y.isDevice()) return x.toDevice() == y.toDevice();
  return x.isSameIdentity(y);
}

bool HasTensor(const c10::TypePtr& type) {
  if (type->kind() == c10::TypeKind::TensorType) return true;
  for (const c10::TypePtr& t : type->containedTypes()) {
    if (HasTensor(t)) return true;
  }
  return false;
}

std::string TypeName(const c10::ClassTypePtr& type) {
  return type->name() ? type->name()->qualifiedName() : "<anonymous>";
}

std::string Join(const std::string& path, const std::string& name) {
  return path.empty() ? name : absl::StrCat(path, ".", name);
}

absl::Status Unsupported(const Node* node, absl::string_view why = "") {
  return absl::UnimplementedError(absl::StrCat(
      "ONNX export does not support ", node->kind().toQualString(), why.empty() ? "" : ": ", why));
}

absl::StatusOr<double> ToDouble(const IValue& v, absl::string_view what) {
  if (v.isDouble()) return v.toDouble();
  if (v.isInt()) return static_cast<double>(v.toInt());
  if (v.isTensor() && v.toTensor().defined() && v.toTensor().numel() == 1) {
    return v.toTensor().item<double>();
  }
  return absl::InvalidArgumentError(absl::StrCat(what, " is not a number"));
}

absl::StatusOr<std::vector<double>> ToDoubles(const IValue& v, absl::string_view what) {
  std::vector<double> out;
  if (v.isTensor() && v.toTensor().defined()) {
    const at::Tensor t = v.toTensor().detach().to(at::kCPU, at::kDouble).contiguous().view(-1);
    out.assign(t.data_ptr<double>(), t.data_ptr<double>() + t.numel());
    return out;
  }
  if (v.isDoubleList()) {
    for (double d : v.toDoubleVector()) out.push_back(d);
    return out;
  }
  if (v.isIntList()) {
    for (int64_t i : v.toIntVector()) out.push_back(static_cast<double>(i));
    return out;
  }
  return absl::InvalidArgumentError(absl::StrCat(what, " is not a tensor or list of numbers"));
}

absl::StatusOr<pb::TensorProto::DataType> OnnxType(at::ScalarType t) {
  switch (t) {
    case at::kFloat:
      return pb::TensorProto::FLOAT;
    case at::kDouble:
      return pb::TensorProto::DOUBLE;
    case at::kHalf:
      return pb::TensorProto::FLOAT16;
    case at::kBFloat16:
      return pb::TensorProto::BFLOAT16;
    case at::kLong:
      return pb::TensorProto::INT64;
    case at::kInt:
      return pb::TensorProto::INT32;
    case at::kShort:
      return pb::TensorProto::INT16;
    case at::kChar:
      return pb::TensorProto::INT8;
    case at::kByte:
      return pb::TensorProto::UINT8;
    case at::kBool:
      return pb::TensorProto::BOOL;
    default:
      return absl::UnimplementedError(
          absl::StrCat("ONNX export does not support tensors of type ", c10::toString(t)));
  }
}

int64_t NormDim(int64_t d, int64_t rank) { return d < 0 ? d + rank : d; }

// Ops whose non-tensor result depends only on shapes/types, not on tensor data.
bool IsShapeOnly(const Node* node) {
  static const auto* kinds = new std::vector<std::string>{"aten::size",
                                                          "aten::dim",
                                                          "prim::shape",
                                                          "aten::len",
                                                          "aten::numel",
                                                          "prim::dtype",
                                                          "prim::device",
                                                          "prim::layout",
                                                          "aten::__is__",
                                                          "aten::__isnot__",
                                                          "prim::is_cuda",
                                                          "prim::is_cpu",
                                                          "aten::is_floating_point",
                                                          "prim::requires_grad",
                                                          "aten::is_contiguous",
                                                          "aten::sym_size",
                                                          "aten::sym_numel",
                                                          "prim::is_quantized",
                                                          "prim::is_mkldnn"};
  const std::string k = node->kind().toQualString();
  return std::find(kinds->begin(), kinds->end(), k) != kinds->end();
}

class Exporter {
 public:
  explicit Exporter(pb::GraphProto* graph) : graph_(graph) {}

  absl::Status Export(const torch::jit::Module& module, const std::vector<int64_t>& chw);

 private:
  // --- interpreting TorchScript ---
  absl::StatusOr<std::vector<SlotPtr>> RunGraph(torch::jit::Graph& graph,
                                                const std::vector<SlotPtr>& args, int depth);
  absl::Status RunBlock(Block* block, Env& env, int depth);
  absl::Status RunNode(Node* node, Env& env, int depth);
  absl::Status RunIf(Node* node, const std::vector<SlotPtr>& in, Env& env, int depth);
  absl::Status RunLoop(Node* node, const std::vector<SlotPtr>& in, Env& env, int depth);
  absl::Status RunCall(Node* node, const std::vector<SlotPtr>& in, Env& env, int depth);
  absl::Status RunGeneric(Node* node, const std::vector<SlotPtr>& in, Env& env);
  // Runs the node on both example batches (or once, with out_b = out_a, when `once`).
  absl::Status Evaluate(Node* node, const std::vector<SlotPtr>& in, std::vector<IValue>* out_a,
                        std::vector<IValue>* out_b, bool once = false);
  absl::Status EvaluateRuns(Node* node, const std::vector<SlotPtr>& in, int runs,
                            std::vector<IValue>* out_a, std::vector<IValue>* out_b);
  absl::Status ActivationQuantizer(Node* node, const std::vector<SlotPtr>& in, Env& env);

  // --- writing ONNX ---
  absl::Status Translate(Node* node, const std::string& kind, const std::vector<SlotPtr>& in,
                         const std::vector<SlotPtr>& out);
  std::string Fresh(absl::string_view hint);
  pb::NodeProto* Emit(absl::string_view op, const std::vector<std::string>& inputs,
                      const std::vector<std::string>& outputs);
  absl::StatusOr<std::string> Initializer(const at::Tensor& t, absl::string_view hint);
  absl::StatusOr<std::string> Scalar(double v, at::ScalarType dtype);
  absl::StatusOr<std::string> Int64s(const std::vector<int64_t>& v);
  // An ONNX value for a tensor operand: the dynamic value (cast to `dtype` when it differs and
  // dtype is given), or an initializer for constants and numbers.
  absl::StatusOr<std::string> Operand(const SlotPtr& s, std::optional<at::ScalarType> dtype);
  // Like Operand for a layer weight: quantized weights become DequantizeLinear of INT8 codes.
  absl::StatusOr<std::string> Weight(const SlotPtr& s, bool transpose);
  absl::StatusOr<std::optional<std::string>> QuantizedWeight(const at::Tensor& w,
                                                             const QuantInfo& q,
                                                             const std::string& hint);
  absl::StatusOr<std::vector<SlotPtr>> Elements(const SlotPtr& s);

  // Translators, grouped by kind of op.
  absl::Status Conv(Node* node, const std::string& kind, const std::vector<SlotPtr>& in,
                    const std::string& out);
  absl::Status Pool(Node* node, const std::string& kind, const std::vector<SlotPtr>& in,
                    const std::vector<SlotPtr>& out);
  absl::Status Reshape(Node* node, const std::string& kind, const std::vector<SlotPtr>& in,
                       const std::vector<SlotPtr>& out);

  pb::GraphProto* graph_;
  int64_t counter_ = 0;
  int64_t steps_ = 0;
  // Initializers made from module tensors, keyed by (TensorImpl, transposed); the tensors are kept
  // alive so a key can never be reused by another tensor.
  std::map<std::pair<const void*, bool>, std::string> weight_cache_;
  std::vector<at::Tensor> keep_alive_;
  std::map<std::string, int> used_names_;
  std::set<std::string> taken_ = {"input", "output"};
};

std::string Exporter::Fresh(absl::string_view hint) {
  const std::string base(hint.empty() ? "t" : hint);
  int& n = used_names_[base];
  std::string name = base;
  while (!taken_.insert(name).second) name = absl::StrCat(base, "_", ++n);
  return name;
}

pb::NodeProto* Exporter::Emit(absl::string_view op, const std::vector<std::string>& inputs,
                              const std::vector<std::string>& outputs) {
  pb::NodeProto* n = graph_->add_node();
  n->set_op_type(std::string(op));
  n->set_name(absl::StrCat(op, "_", counter_++));
  for (const std::string& i : inputs) n->add_input(i);
  for (const std::string& o : outputs) n->add_output(o);
  return n;
}

void SetInt(pb::NodeProto* n, const std::string& name, int64_t v) {
  pb::AttributeProto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(pb::AttributeProto::INT);
  a->set_i(v);
}

void SetInts(pb::NodeProto* n, const std::string& name, const std::vector<int64_t>& v) {
  pb::AttributeProto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(pb::AttributeProto::INTS);
  for (int64_t x : v) a->add_ints(x);
}

void SetFloat(pb::NodeProto* n, const std::string& name, double v) {
  pb::AttributeProto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(pb::AttributeProto::FLOAT);
  a->set_f(static_cast<float>(v));
}

absl::StatusOr<std::string> Exporter::Initializer(const at::Tensor& t, absl::string_view hint) {
  QNET_ONNX_ASSIGN_OR_RETURN(pb::TensorProto::DataType type, OnnxType(t.scalar_type()));
  const at::Tensor c = t.detach().to(at::kCPU).contiguous();
  pb::TensorProto* init = graph_->add_initializer();
  const std::string name = Fresh(hint.empty() ? "const" : hint);
  init->set_name(name);
  init->set_data_type(type);
  for (int64_t d : c.sizes()) init->add_dims(d);
  // raw_data is little-endian, like every host LibTorch runs on.
  init->set_raw_data(c.data_ptr(), c.numel() * c.element_size());
  return name;
}

absl::StatusOr<std::string> Exporter::Scalar(double v, at::ScalarType dtype) {
  return Initializer(at::scalar_tensor(v, at::TensorOptions().dtype(dtype)), "c");
}

absl::StatusOr<std::string> Exporter::Int64s(const std::vector<int64_t>& v) {
  return Initializer(at::tensor(v, at::TensorOptions().dtype(at::kLong)), "shape");
}

absl::StatusOr<std::string> Exporter::Operand(const SlotPtr& s,
                                              std::optional<at::ScalarType> dtype) {
  if (s->tensor) {
    const at::ScalarType have = s->a.toTensor().scalar_type();
    if (!dtype || *dtype == have) return s->name;
    QNET_ONNX_ASSIGN_OR_RETURN(pb::TensorProto::DataType to, OnnxType(*dtype));
    const std::string out = Fresh("cast");
    SetInt(Emit("Cast", {s->name}, {out}), "to", to);
    return out;
  }
  if (s->dyn) {
    return absl::UnimplementedError(
        "ONNX export does not support tensors built from batch-size-dependent numbers");
  }
  if (s->a.isTensor()) {
    at::Tensor t = s->a.toTensor();
    if (!t.defined()) return absl::InternalError("undefined tensor operand");
    if (dtype && t.scalar_type() != *dtype) {
      return Initializer(t.to(*dtype), s->path.empty() ? "const" : s->path);
    }
    const std::pair<const void*, bool> key(t.unsafeGetTensorImpl(), false);
    auto it = weight_cache_.find(key);
    if (it != weight_cache_.end()) return it->second;
    QNET_ONNX_ASSIGN_OR_RETURN(std::string name,
                               Initializer(t, s->path.empty() ? "const" : s->path));
    weight_cache_[key] = name;
    keep_alive_.push_back(t);
    return name;
  }
  if (s->a.isDouble() || s->a.isInt() || s->a.isBool()) {
    QNET_ONNX_ASSIGN_OR_RETURN(
        double v, ToDouble(s->a.isBool() ? IValue(int64_t{s->a.toBool()}) : s->a, "operand"));
    return Scalar(v, dtype.value_or(s->a.isDouble() ? at::kFloat : at::kLong));
  }
  return absl::UnimplementedError(
      absl::StrCat("ONNX export does not support operands of type ", s->a.tagKind()));
}

absl::StatusOr<std::string> Exporter::Weight(const SlotPtr& s, bool transpose) {
  if (IsDynamic(*s) || !s->a.isTensor()) {
    if (!transpose) return Operand(s, std::nullopt);
    QNET_ONNX_ASSIGN_OR_RETURN(std::string w, Operand(s, std::nullopt));
    const std::string out = Fresh("transposed");
    SetInts(Emit("Transpose", {w}, {out}), "perm", {1, 0});
    return out;
  }
  const at::Tensor t = s->a.toTensor();
  const std::pair<const void*, bool> key(t.unsafeGetTensorImpl(), transpose);
  auto it = weight_cache_.find(key);
  if (it != weight_cache_.end()) return it->second;
  const at::Tensor w = transpose ? t.t().contiguous() : t;
  const std::string hint = s->path.empty() ? "weight" : s->path;
  std::optional<std::string> name;
  if (s->quant) {
    QNET_ONNX_ASSIGN_OR_RETURN(name, QuantizedWeight(w, *s->quant, hint));
  }
  if (!name) {
    QNET_ONNX_ASSIGN_OR_RETURN(name, Initializer(w, hint));
  }
  weight_cache_[key] = *name;
  keep_alive_.push_back(t);
  return *name;
}

// Quantized weights are stored as INT8 codes c with weight = scale * c: the level values
// themselves when they are integers (all built-in level sets), else multiples of a common step.
// Other level sets store level indices and look the values up with Gather. Returns nullopt when
// the tensor does not hold exactly alpha * level values (then it is exported as float).
absl::StatusOr<std::optional<std::string>> Exporter::QuantizedWeight(const at::Tensor& w,
                                                                     const QuantInfo& q,
                                                                     const std::string& hint) {
  if (w.scalar_type() != at::kFloat || q.levels.empty() || q.alpha == 0 ||
      !std::isfinite(q.alpha)) {
    return std::nullopt;
  }
  std::vector<double> levels = q.levels;
  std::sort(levels.begin(), levels.end());
  double min_gap = 0;
  for (size_t i = 1; i < levels.size(); ++i) {
    const double gap = levels[i] - levels[i - 1];
    if (gap > 0 && (min_gap == 0 || gap < min_gap)) min_gap = gap;
  }
  const double abs_alpha = std::abs(q.alpha);
  const double sign = q.alpha < 0 ? -1.0 : 1.0;
  // Nearest level per element, and a check that the weight is that level (to float precision).
  const at::Tensor table = at::tensor(levels, at::TensorOptions().dtype(at::kDouble));
  const at::Tensor scaled = w.detach().to(at::kCPU, at::kDouble).reshape({-1}) / q.alpha;
  const int64_t num_levels = static_cast<int64_t>(levels.size());
  const at::Tensor mids = (table.slice(0, 1) + table.slice(0, 0, num_levels - 1)) / 2;
  const at::Tensor idx = at::searchsorted(mids, scaled).clamp(0, num_levels - 1);
  const at::Tensor nearest = table.index_select(0, idx);
  const double tolerance = levels.size() > 1 ? 1e-3 * min_gap : 1e-3 * std::abs(levels[0]) + 1e-6;
  if (((scaled - nearest).abs() > tolerance).any().item<bool>()) return std::nullopt;

  // A step d with every level an integer multiple of d that fits INT8.
  std::optional<double> step;
  std::vector<double> candidates = {1.0};
  for (double l : levels) {
    if (l != 0) candidates.push_back(std::abs(l));
  }
  if (min_gap > 0) candidates.push_back(min_gap);
  for (double d : candidates) {
    bool ok = true;
    for (double l : levels) {
      const double c = sign * l / d;
      if (std::abs(c - std::round(c)) > 1e-6 || std::round(c) < -128 || std::round(c) > 127) {
        ok = false;
        break;
      }
    }
    if (ok) {
      step = d;
      break;
    }
  }
  const std::vector<int64_t> shape(w.sizes().begin(), w.sizes().end());
  if (step) {
    const at::Tensor codes = (sign * nearest / *step).round().to(at::kChar).reshape(shape);
    QNET_ONNX_ASSIGN_OR_RETURN(std::string c, Initializer(codes, hint + "_codes"));
    QNET_ONNX_ASSIGN_OR_RETURN(
        std::string scale,
        Initializer(at::scalar_tensor(abs_alpha * *step, at::TensorOptions().dtype(at::kFloat)),
                    hint + "_scale"));
    QNET_ONNX_ASSIGN_OR_RETURN(
        std::string zp,
        Initializer(at::zeros({}, at::TensorOptions().dtype(at::kChar)), hint + "_zero_point"));
    const std::string out = Fresh(hint + "_dequantized");
    Emit("DequantizeLinear", {c, scale, zp}, {out});
    return out;
  }
  if (levels.size() > 128) return std::nullopt;
  const at::Tensor codes = idx.to(at::kChar).reshape(shape);
  QNET_ONNX_ASSIGN_OR_RETURN(std::string c, Initializer(codes, hint + "_codes"));
  QNET_ONNX_ASSIGN_OR_RETURN(std::string values,
                             Initializer((table * q.alpha).to(at::kFloat), hint + "_levels"));
  const std::string index = Fresh(hint + "_index");
  SetInt(Emit("Cast", {c}, {index}), "to", pb::TensorProto::INT32);
  const std::string out = Fresh(hint + "_dequantized");
  SetInt(Emit("Gather", {values, index}, {out}), "axis", 0);
  return out;
}

absl::StatusOr<std::vector<SlotPtr>> Exporter::Elements(const SlotPtr& s) {
  if (s->elems) return *s->elems;
  std::vector<SlotPtr> out;
  if (s->a.isList() && s->b.isList()) {
    const c10::List<IValue> la = s->a.toList();
    const c10::List<IValue> lb = s->b.toList();
    if (la.size() != lb.size()) {
      return absl::UnimplementedError(
          "ONNX export does not support lists whose length depends on the batch");
    }
    for (size_t i = 0; i < la.size(); ++i) {
      auto e = std::make_shared<Slot>();
      e->a = la.get(i);
      e->b = lb.get(i);
      e->dyn = !SameValue(e->a, e->b);
      out.push_back(e);
    }
    return out;
  }
  if (s->a.isTuple() && s->b.isTuple()) {
    const auto& ea = s->a.toTupleRef().elements();
    const auto& eb = s->b.toTupleRef().elements();
    for (size_t i = 0; i < ea.size() && i < eb.size(); ++i) {
      auto e = std::make_shared<Slot>();
      e->a = ea[i];
      e->b = eb[i];
      e->dyn = !SameValue(e->a, e->b);
      out.push_back(e);
    }
    return out;
  }
  return absl::InternalError("not a list or tuple");
}

// --- interpreting ---

absl::StatusOr<std::vector<SlotPtr>> Exporter::RunGraph(torch::jit::Graph& graph,
                                                        const std::vector<SlotPtr>& args,
                                                        int depth) {
  if (depth > kMaxDepth) {
    return absl::UnimplementedError("ONNX export does not support recursion this deep");
  }
  if (graph.inputs().size() != args.size()) {
    return absl::InternalError(
        absl::StrCat("graph takes ", graph.inputs().size(), " arguments, got ", args.size()));
  }
  Env env;
  for (size_t i = 0; i < args.size(); ++i) env[graph.inputs()[i]] = args[i];
  QNET_ONNX_RETURN_IF_ERROR(RunBlock(graph.block(), env, depth));
  std::vector<SlotPtr> out;
  for (const Value* v : graph.outputs()) out.push_back(env.at(v));
  return out;
}

absl::Status Exporter::RunBlock(Block* block, Env& env, int depth) {
  for (Node* node : block->nodes()) {
    if (++steps_ > kMaxSteps) {
      return absl::UnimplementedError("ONNX export gave up: the graph runs too many nodes");
    }
    QNET_ONNX_RETURN_IF_ERROR(RunNode(node, env, depth));
  }
  return absl::OkStatus();
}

absl::Status Exporter::RunNode(Node* node, Env& env, int depth) {
  std::vector<SlotPtr> in;
  for (const Value* v : node->inputs()) {
    auto it = env.find(v);
    if (it == env.end()) return absl::InternalError("value used before definition");
    in.push_back(it->second);
  }
  const std::string kind = node->kind().toQualString();
  auto set_out = [&](size_t i, SlotPtr s) { env[node->outputs()[i]] = std::move(s); };

  if (kind == "prim::Constant") {
    std::optional<IValue> v = torch::jit::toIValue(node->output());
    set_out(0, StaticSlot(v ? *v : IValue()));
    return absl::OkStatus();
  }
  if (kind == "prim::GetAttr") {
    if (!in[0]->a.isObject()) return Unsupported(node, "attribute of a non-module value");
    const c10::intrusive_ptr<c10::ivalue::Object> obj = in[0]->a.toObject();
    const std::string name = node->s(torch::jit::attr::name);
    auto s = StaticSlot(obj->getAttr(name));
    s->path = Join(in[0]->path, name);
    if (name == "weight" && obj->type()->hasAttribute("qnet_alpha") &&
        obj->type()->hasAttribute("qnet_levels")) {
      QuantInfo q;
      absl::StatusOr<double> alpha = ToDouble(obj->getAttr("qnet_alpha"), "qnet_alpha");
      absl::StatusOr<std::vector<double>> levels =
          ToDoubles(obj->getAttr("qnet_levels"), "qnet_levels");
      if (!alpha.ok() || !levels.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("layer ", in[0]->path, ": bad qnet_alpha/qnet_levels: ",
                         (alpha.ok() ? levels.status() : alpha.status()).message()));
      }
      q.alpha = *alpha;
      q.levels = *levels;
      s->quant = std::move(q);
    }
    set_out(0, s);
    return absl::OkStatus();
  }
  if (kind == "prim::SetAttr") {
    return Unsupported(node, "the forward pass changes module state");
  }
  if (kind == "prim::CallMethod" || kind == "prim::CallFunction") {
    return RunCall(node, in, env, depth);
  }
  if (kind == "prim::If") return RunIf(node, in, env, depth);
  if (kind == "prim::Loop") return RunLoop(node, in, env, depth);
  if (kind == "prim::RaiseException") {
    // The model itself ran on this input (Export checks first), so this is a path the export
    // took differently.
    std::string message = "ONNX export reached an exception in the model";
    if (!in.empty() && in[0]->a.isString()) message += ": " + in[0]->a.toStringRef();
    return absl::UnimplementedError(message);
  }
  if (kind == "aten::warn" || kind == "prim::Print") return absl::OkStatus();
  if (kind == "prim::unchecked_cast" || kind == "prim::unchecked_unwrap_optional" ||
      kind == "aten::_unwrap_optional") {
    set_out(0, in[0]);
    return absl::OkStatus();
  }

  bool dynamic = false;
  for (const SlotPtr& s : in) dynamic = dynamic || IsDynamic(*s);
  if (!dynamic) return RunGeneric(node, in, env);

  // Containers holding dynamic values keep their elements' slots.
  if (kind == "prim::ListConstruct" || kind == "prim::TupleConstruct") {
    std::vector<IValue> a, b;
    QNET_ONNX_RETURN_IF_ERROR(Evaluate(node, in, &a, &b));
    auto s = std::make_shared<Slot>();
    s->a = a[0];
    s->b = b[0];
    s->elems = in;
    set_out(0, s);
    return absl::OkStatus();
  }
  if (kind == "prim::ListUnpack" || kind == "prim::TupleUnpack") {
    QNET_ONNX_ASSIGN_OR_RETURN(std::vector<SlotPtr> elems, Elements(in[0]));
    if (elems.size() != node->outputs().size()) return Unsupported(node, "length mismatch");
    for (size_t i = 0; i < elems.size(); ++i) set_out(i, elems[i]);
    return absl::OkStatus();
  }
  if ((kind == "prim::TupleIndex" || kind == "aten::__getitem__") && in.size() == 2 &&
      !IsDynamic(*in[1]) && in[1]->a.isInt() && (in[0]->elems || !IsDynamic(*in[0]))) {
    QNET_ONNX_ASSIGN_OR_RETURN(std::vector<SlotPtr> elems, Elements(in[0]));
    const int64_t i = NormDim(in[1]->a.toInt(), static_cast<int64_t>(elems.size()));
    if (i < 0 || i >= static_cast<int64_t>(elems.size())) return Unsupported(node, "bad index");
    set_out(0, elems[i]);
    return absl::OkStatus();
  }
  if (kind == "aten::append" && in.size() == 2) {
    QNET_ONNX_ASSIGN_OR_RETURN(std::vector<SlotPtr> elems, Elements(in[0]));
    if (in[0]->a.isList() && in[0]->a.isSameIdentity(in[0]->b)) {
      in[0]->b = IValue(in[0]->a.toList().copy());  // each batch appends to its own list
    }
    std::vector<IValue> a, b;
    QNET_ONNX_RETURN_IF_ERROR(Evaluate(node, in, &a, &b));
    elems.push_back(in[1]);
    in[0]->elems = std::move(elems);
    set_out(0, in[0]);
    return absl::OkStatus();
  }

  bool tensor_out = false;
  for (const Value* v : node->outputs()) tensor_out = tensor_out || HasTensor(v->type());
  bool onnx_in = false;
  for (const SlotPtr& s : in) onnx_in = onnx_in || HasOnnxTensor(*s);
  std::vector<IValue> a, b;
  QNET_ONNX_RETURN_IF_ERROR(Evaluate(node, in, &a, &b));
  if (!tensor_out || !onnx_in) {
    // Shape arithmetic (x.size(0), and traced graphs' size tensors): resolved now; it stays
    // "dynamic" only where the batch size shows, and ONNX ops refuse it as an operand.
    bool data = false;
    for (const SlotPtr& s : in) {
      data = data || s->data || (HasOnnxTensor(*s) && !IsShapeOnly(node));
    }
    for (size_t i = 0; i < a.size(); ++i) {
      auto s = std::make_shared<Slot>();
      s->a = a[i];
      s->b = b[i];
      s->data = data;
      s->dyn = data || !SameValue(a[i], b[i]);
      set_out(i, s);
    }
    return absl::OkStatus();
  }
  std::vector<SlotPtr> out;
  for (size_t i = 0; i < a.size(); ++i) {
    auto s = std::make_shared<Slot>();
    s->a = a[i];
    s->b = b[i];
    s->tensor = a[i].isTensor();
    out.push_back(s);
  }
  // In-place ops (relu_, add_) translate as their functional form; the written input then names
  // the result, so later uses of either value see it.
  std::string base = kind;
  std::vector<size_t> written;
  if (const c10::FunctionSchema* schema = node->maybeSchema()) {
    for (size_t i = 0; i < schema->arguments().size() && i < in.size(); ++i) {
      const c10::AliasInfo* alias = schema->arguments()[i].alias_info();
      if (alias && alias->isWrite() && in[i]->a.isTensor()) written.push_back(i);
    }
  }
  for (size_t i : written) {
    if (!in[i]->tensor) return Unsupported(node, "it writes to a constant tensor");
  }
  if (!written.empty() && absl::EndsWith(base, "_") && !absl::EndsWith(base, "__")) {
    base.pop_back();
  }
  QNET_ONNX_RETURN_IF_ERROR(Translate(node, base, in, out));
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i]->tensor && out[i]->name.empty() && node->outputs()[i]->hasUses()) {
      return absl::InternalError(absl::StrCat("no ONNX value for ", kind));
    }
  }
  if (!written.empty() && out.size() == 1) {
    in[written[0]]->name = out[0]->name;
    set_out(0, in[written[0]]);
    return absl::OkStatus();
  }
  for (size_t i = 0; i < out.size(); ++i) set_out(i, out[i]);
  return absl::OkStatus();
}

// The TorchScript interpreter runs these prim ops itself (they have no registered operator).
std::optional<absl::StatusOr<std::vector<IValue>>> RunInterpreterOp(Node* node,
                                                                    std::vector<IValue> in) {
  using Result = absl::StatusOr<std::vector<IValue>>;
  const c10::Symbol kind = node->kind();
  if (kind == torch::jit::prim::ListConstruct) {
    const c10::ListTypePtr type = node->output()->type()->cast<c10::ListType>();
    if (!type) return Result(Unsupported(node, "a list without a list type"));
    c10::impl::GenericList list(type->getElementType());
    list.reserve(in.size());
    for (IValue& v : in) list.push_back(std::move(v));
    return Result(std::vector<IValue>{IValue(std::move(list))});
  }
  if (kind == torch::jit::prim::TupleConstruct) {
    return Result(std::vector<IValue>{IValue(c10::ivalue::Tuple::create(std::move(in)))});
  }
  if (kind == torch::jit::prim::ListUnpack || kind == torch::jit::prim::TupleUnpack) {
    std::vector<IValue> out;
    if (in[0].isList()) {
      for (const IValue& v : in[0].toListRef()) out.push_back(v);
    } else if (in[0].isTuple()) {
      out = in[0].toTupleRef().elements().vec();
    }
    if (out.size() != node->outputs().size()) return Result(Unsupported(node, "length mismatch"));
    return Result(std::move(out));
  }
  if (kind == torch::jit::prim::TupleIndex) {
    if (!in[0].isTuple() || !in[1].isInt()) return Result(Unsupported(node, "bad tuple index"));
    const auto& elems = in[0].toTupleRef().elements();
    const int64_t i = NormDim(in[1].toInt(), static_cast<int64_t>(elems.size()));
    if (i < 0 || i >= static_cast<int64_t>(elems.size())) {
      return Result(Unsupported(node, "tuple index out of range"));
    }
    return Result(std::vector<IValue>{elems[i]});
  }
  if (kind == torch::jit::prim::Uninitialized) return Result(std::vector<IValue>{IValue()});
  if (kind == torch::jit::prim::isinstance) {
    bool match = false;
    for (const c10::TypePtr& t : node->tys(torch::jit::attr::types)) {
      match = match || in[0].type()->isSubtypeOf(*t);
    }
    return Result(std::vector<IValue>{IValue(match)});
  }
  return std::nullopt;
}

absl::Status Exporter::Evaluate(Node* node, const std::vector<SlotPtr>& in,
                                std::vector<IValue>* out_a, std::vector<IValue>* out_b, bool once) {
  if (once) {
    std::vector<IValue> unused;
    QNET_ONNX_RETURN_IF_ERROR(EvaluateRuns(node, in, 1, out_a, &unused));
    *out_b = *out_a;
    return absl::OkStatus();
  }
  return EvaluateRuns(node, in, 2, out_a, out_b);
}

absl::Status Exporter::EvaluateRuns(Node* node, const std::vector<SlotPtr>& in, int runs,
                                    std::vector<IValue>* out_a, std::vector<IValue>* out_b) {
  for (int run = 0; run < runs; ++run) {
    std::vector<IValue> args;
    for (const SlotPtr& s : in) args.push_back(run == 0 ? s->a : s->b);
    std::optional<absl::StatusOr<std::vector<IValue>>> special = RunInterpreterOp(node, args);
    if (!special) break;
    if (!special->ok()) return special->status();
    *(run == 0 ? out_a : out_b) = std::move(**special);
    if (run == runs - 1) return absl::OkStatus();
  }
  if (node->maybeOperator() == nullptr) return Unsupported(node);
  torch::jit::Operation op = node->getOperation();
  for (int run = 0; run < runs; ++run) {
    torch::jit::Stack stack;
    for (const SlotPtr& s : in) stack.push_back(run == 0 ? s->a : s->b);
    op(stack);
    if (stack.size() != node->outputs().size()) {
      return absl::InternalError(
          absl::StrCat(node->kind().toQualString(), " returned ", stack.size(), " values"));
    }
    *(run == 0 ? out_a : out_b) = std::move(stack);
  }
  return absl::OkStatus();
}

// A node that does not touch the model input: evaluate it; tensors it makes are constants.
absl::Status Exporter::RunGeneric(Node* node, const std::vector<SlotPtr>& in, Env& env) {
  if (const c10::FunctionSchema* schema = node->maybeSchema()) {
    for (size_t i = 0; i < schema->arguments().size() && i < in.size(); ++i) {
      const c10::AliasInfo* alias = schema->arguments()[i].alias_info();
      if (alias && alias->isWrite() && in[i]->a.isTensor()) {
        return Unsupported(node, "the forward pass changes a module tensor in place");
      }
    }
  }
  // Inputs are the same on both batches, so one run gives both (and a list op does not mutate
  // the shared list twice).
  std::vector<IValue> a, b;
  QNET_ONNX_RETURN_IF_ERROR(Evaluate(node, in, &a, &b, /*once=*/true));
  // Layout-only ops on a quantized weight keep it quantized (e.g. weight.t() for addmm).
  static const auto* kKeepsQuant = new std::vector<std::string>{
      "aten::t",         "aten::transpose", "aten::permute", "aten::contiguous",
      "aten::reshape",   "aten::view",      "aten::flatten", "aten::squeeze",
      "aten::unsqueeze", "aten::clone",     "aten::detach",  "aten::to"};
  const std::string kind = node->kind().toQualString();
  const bool keeps_quant =
      !in.empty() && in[0]->quant &&
      std::find(kKeepsQuant->begin(), kKeepsQuant->end(), kind) != kKeepsQuant->end();
  for (size_t i = 0; i < a.size(); ++i) {
    auto s = std::make_shared<Slot>();
    s->a = a[i];
    s->b = a[i];
    if (!in.empty()) s->path = in[0]->path;
    if (keeps_quant && i == 0) s->quant = in[0]->quant;
    env[node->outputs()[i]] = s;
  }
  return absl::OkStatus();
}

absl::Status Exporter::RunIf(Node* node, const std::vector<SlotPtr>& in, Env& env, int depth) {
  if (IsDynamic(*in[0]) || !in[0]->a.isBool()) {
    return Unsupported(node, "a branch that depends on the batch size or the input data");
  }
  Block* block = node->blocks()[in[0]->a.toBool() ? 0 : 1];
  QNET_ONNX_RETURN_IF_ERROR(RunBlock(block, env, depth));
  for (size_t i = 0; i < node->outputs().size(); ++i) {
    env[node->outputs()[i]] = env.at(block->outputs()[i]);
  }
  return absl::OkStatus();
}

absl::Status Exporter::RunLoop(Node* node, const std::vector<SlotPtr>& in, Env& env, int depth) {
  if (IsDynamic(*in[0]) || IsDynamic(*in[1]) || !in[0]->a.isInt() || !in[1]->a.isBool()) {
    return Unsupported(node, "a loop whose trip count depends on the batch size or the data");
  }
  Block* body = node->blocks()[0];
  const int64_t trips = in[0]->a.toInt();
  bool cond = in[1]->a.toBool();
  std::vector<SlotPtr> carried(in.begin() + 2, in.end());
  for (int64_t i = 0; i < trips && cond; ++i) {
    env[body->inputs()[0]] = StaticSlot(IValue(i));
    for (size_t j = 0; j < carried.size(); ++j) env[body->inputs()[j + 1]] = carried[j];
    QNET_ONNX_RETURN_IF_ERROR(RunBlock(body, env, depth));
    const SlotPtr& c = env.at(body->outputs()[0]);
    if (IsDynamic(*c) || !c->a.isBool()) {
      return Unsupported(node, "a loop condition that depends on the batch size or the data");
    }
    cond = c->a.toBool();
    for (size_t j = 0; j < carried.size(); ++j) carried[j] = env.at(body->outputs()[j + 1]);
  }
  for (size_t i = 0; i < node->outputs().size(); ++i) env[node->outputs()[i]] = carried[i];
  return absl::OkStatus();
}

absl::Status Exporter::RunCall(Node* node, const std::vector<SlotPtr>& in, Env& env, int depth) {
  torch::jit::Function* fn = nullptr;
  std::vector<SlotPtr> args;
  if (node->kind() == torch::jit::prim::CallMethod) {
    if (!in[0]->a.isObject()) return Unsupported(node, "a method of a non-module value");
    const c10::intrusive_ptr<c10::ivalue::Object> obj = in[0]->a.toObject();
    const std::string method = node->s(torch::jit::attr::name);
    if (method == "forward" && absl::StrContains(TypeName(obj->type()), kActivationQuantizerType)) {
      return ActivationQuantizer(node, in, env);
    }
    fn = obj->type()->findMethod(method);
    args = in;
  } else {
    const auto function_type = node->input(0)->type()->cast<c10::FunctionType>();
    if (function_type) fn = function_type->function();
    args.assign(in.begin() + 1, in.end());
  }
  torch::jit::GraphFunction* graph_fn = fn ? torch::jit::tryToGraphFunction(*fn) : nullptr;
  if (graph_fn == nullptr) return Unsupported(node, "a call without a TorchScript graph");
  QNET_ONNX_ASSIGN_OR_RETURN(std::vector<SlotPtr> out,
                             RunGraph(*graph_fn->graph(), args, depth + 1));
  if (out.size() != node->outputs().size()) return absl::InternalError("call arity mismatch");
  for (size_t i = 0; i < out.size(); ++i) env[node->outputs()[i]] = out[i];
  return absl::OkStatus();
}

// y = alpha * (q_0 + sum_i s_i * H(beta*x - b_i)), checked against the module's own forward on
// both example batches before it is written.
absl::Status Exporter::ActivationQuantizer(Node* node, const std::vector<SlotPtr>& in, Env& env) {
  const c10::intrusive_ptr<c10::ivalue::Object> obj = in[0]->a.toObject();
  const std::string where = absl::StrCat("activation quantizer ", in[0]->path);
  if (in.size() != 2 || !in[1]->tensor) {
    return absl::InvalidArgumentError(where + ": expected one tensor input from the model input");
  }
  const SlotPtr& x = in[1];
  auto attr = [&](const std::string& name) -> absl::StatusOr<IValue> {
    if (!obj->type()->hasAttribute(name)) {
      return absl::InvalidArgumentError(absl::StrCat(where, " has no attribute '", name, "'"));
    }
    return obj->getAttr(name);
  };
  if (obj->type()->hasAttribute("enabled") && obj->getAttr("enabled").isBool() &&
      !obj->getAttr("enabled").toBool()) {
    env[node->output()] = x;  // a disabled quantizer passes its input through
    return absl::OkStatus();
  }
  if (obj->type()->hasAttribute("hard") && obj->getAttr("hard").isBool() &&
      !obj->getAttr("hard").toBool()) {
    return absl::InvalidArgumentError(where + " is in soft mode; export the hard model");
  }
  QNET_ONNX_ASSIGN_OR_RETURN(IValue alpha_v, attr("alpha"));
  QNET_ONNX_ASSIGN_OR_RETURN(IValue beta_v, attr("beta"));
  QNET_ONNX_ASSIGN_OR_RETURN(IValue levels_v, attr("levels"));
  QNET_ONNX_ASSIGN_OR_RETURN(IValue thresholds_v, attr("thresholds"));
  QNET_ONNX_ASSIGN_OR_RETURN(const double alpha, ToDouble(alpha_v, where + " alpha"));
  QNET_ONNX_ASSIGN_OR_RETURN(const double beta, ToDouble(beta_v, where + " beta"));
  QNET_ONNX_ASSIGN_OR_RETURN(const std::vector<double> q, ToDoubles(levels_v, where + " levels"));
  QNET_ONNX_ASSIGN_OR_RETURN(const std::vector<double> b,
                             ToDoubles(thresholds_v, where + " thresholds"));
  const size_t n = b.size();
  if (q.size() != n + 1 || n == 0) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": ", q.size(), " levels and ", n,
                                                   " thresholds (need n+1 and n, n >= 1)"));
  }
  for (double v : q) {
    if (!std::isfinite(v)) return absl::InvalidArgumentError(where + ": non-finite level");
  }
  if (!std::isfinite(alpha) || !std::isfinite(beta)) {
    return absl::InvalidArgumentError(where + ": non-finite alpha or beta");
  }

  // Run the module itself (that is what the TorchScript artifact computes) and compare.
  torch::jit::Object module(obj);
  torch::jit::Method forward = module.get_method("forward");
  auto s = std::make_shared<Slot>();
  s->tensor = true;
  s->a = forward({x->a});
  s->b = forward({x->b});
  if (!s->a.isTensor() || !s->b.isTensor()) {
    return absl::InvalidArgumentError(where + " does not return a tensor");
  }
  const at::Tensor xa = x->a.toTensor();
  const at::ScalarType dtype = xa.scalar_type();
  {
    at::Tensor sum = at::zeros_like(xa, at::TensorOptions().dtype(at::kDouble)) + q[0];
    const at::Tensor bx = xa * beta;
    for (size_t i = 0; i < n; ++i) sum = sum + (q[i + 1] - q[i]) * (bx >= b[i]).to(at::kDouble);
    const at::Tensor expected = (sum * alpha).to(dtype);
    double range = 0;
    for (double v : q) range = std::max(range, std::abs(v));
    const at::Tensor off =
        (s->a.toTensor() - expected).abs() > 1e-4 * (std::abs(alpha) * range + 1e-6);
    // Elements sitting exactly on a threshold may round either way; nothing else may differ.
    if (off.to(at::kDouble).mean().item<double>() > 1e-3) {
      return absl::UnimplementedError(
          where +
          "'s forward does not compute the hard QN quantizer alpha*(q_0 + sum_i "
          "s_i*H(beta*x - b_i)) from its attributes");
    }
  }

  const std::string out = Fresh(in[0]->path.empty() ? "act_quant" : in[0]->path);
  QNET_ONNX_ASSIGN_OR_RETURN(std::string beta_c, Scalar(beta, dtype));
  const std::string bx = Fresh("scaled");
  Emit("Mul", {x->name, beta_c}, {bx});

  // Uniform levels q_j = q_0 + j*d with midpoint thresholds and q_0/d an integer: this is
  // round(beta*x / d) clipped to the level range, i.e. QuantizeLinear/DequantizeLinear.
  const double d = q[1] - q[0];
  bool uniform = d > 0 && beta > 0 && alpha != 0;
  for (size_t j = 0; uniform && j <= n; ++j) {
    uniform = std::abs(q[j] - (q[0] + d * static_cast<double>(j))) <= 1e-6 * d;
  }
  for (size_t i = 0; uniform && i < n; ++i) {
    uniform = std::abs(b[i] - (q[0] + d * (static_cast<double>(i) + 0.5))) <= 1e-5 * d;
  }
  const double k0 = q[0] / d;
  uniform = uniform && std::abs(k0 - std::round(k0)) <= 1e-6;
  const double lo = std::round(k0);
  const double hi = lo + static_cast<double>(n);
  std::optional<at::ScalarType> code_type;
  if (uniform && lo >= 0 && hi <= 255) {
    code_type = at::kByte;
  } else if (uniform && lo >= -128 && hi <= 127) {
    code_type = at::kChar;
  }
  if (code_type && dtype == at::kFloat) {
    QNET_ONNX_ASSIGN_OR_RETURN(std::string lo_c, Scalar(q[0], dtype));
    QNET_ONNX_ASSIGN_OR_RETURN(std::string hi_c, Scalar(q[n], dtype));
    QNET_ONNX_ASSIGN_OR_RETURN(std::string step_c, Scalar(d, at::kFloat));
    QNET_ONNX_ASSIGN_OR_RETURN(std::string scale_c, Scalar(std::abs(alpha) * d, at::kFloat));
    QNET_ONNX_ASSIGN_OR_RETURN(std::string zp_c, Scalar(0, *code_type));
    const std::string clipped = Fresh("clipped");
    Emit("Clip", {bx, lo_c, hi_c}, {clipped});
    const std::string codes = Fresh(absl::StrCat(out, "_codes"));
    Emit("QuantizeLinear", {clipped, step_c, zp_c}, {codes});
    if (alpha > 0) {
      Emit("DequantizeLinear", {codes, scale_c, zp_c}, {out});
    } else {
      const std::string mag = Fresh("dequantized");
      Emit("DequantizeLinear", {codes, scale_c, zp_c}, {mag});
      Emit("Neg", {mag}, {out});
    }
  } else {
    // Any other level set: the exact sum of unit steps.
    std::vector<std::string> terms;
    for (size_t i = 0; i < n; ++i) {
      QNET_ONNX_ASSIGN_OR_RETURN(std::string b_c, Scalar(b[i], dtype));
      QNET_ONNX_ASSIGN_OR_RETURN(pb::TensorProto::DataType to, OnnxType(dtype));
      const std::string ge = Fresh("ge");
      Emit("GreaterOrEqual", {bx, b_c}, {ge});
      std::string term = Fresh("step");
      SetInt(Emit("Cast", {ge}, {term}), "to", to);
      const double step = q[i + 1] - q[i];
      if (step != 1.0) {
        QNET_ONNX_ASSIGN_OR_RETURN(std::string s_c, Scalar(step, dtype));
        const std::string scaled = Fresh("step");
        Emit("Mul", {term, s_c}, {scaled});
        term = scaled;
      }
      terms.push_back(term);
    }
    std::string sum = terms[0];
    if (terms.size() > 1) {
      sum = Fresh("steps");
      Emit("Sum", terms, {sum});
    }
    if (q[0] != 0) {
      QNET_ONNX_ASSIGN_OR_RETURN(std::string q0_c, Scalar(q[0], dtype));
      const std::string shifted = Fresh("levels");
      Emit("Add", {sum, q0_c}, {shifted});
      sum = shifted;
    }
    QNET_ONNX_ASSIGN_OR_RETURN(std::string alpha_c, Scalar(alpha, dtype));
    Emit("Mul", {sum, alpha_c}, {out});
  }
  s->name = out;
  env[node->output()] = s;
  return absl::OkStatus();
}

// --- translating ops ---

absl::StatusOr<std::vector<int64_t>> StaticInts(const Node* node, const SlotPtr& s,
                                                absl::string_view what) {
  if (IsDynamic(*s)) {
    return Unsupported(node, absl::StrCat(what, " that depends on the batch size or the data"));
  }
  if (s->a.isInt()) return std::vector<int64_t>{s->a.toInt()};
  if (s->a.isIntList()) return s->a.toIntVector();
  return Unsupported(node, absl::StrCat(what, " that is not an int list"));
}

absl::StatusOr<int64_t> StaticInt(const Node* node, const SlotPtr& s, absl::string_view what) {
  if (IsDynamic(*s) || !s->a.isInt()) {
    return Unsupported(node, absl::StrCat(what, " that is not a constant int"));
  }
  return s->a.toInt();
}

absl::StatusOr<double> StaticDouble(const Node* node, const SlotPtr& s, absl::string_view what) {
  if (IsDynamic(*s)) return Unsupported(node, absl::StrCat(what, " that is not a constant"));
  absl::StatusOr<double> v = ToDouble(s->a, what);
  if (!v.ok()) return Unsupported(node, v.status().message());
  return *v;
}

absl::StatusOr<bool> StaticBool(const Node* node, const SlotPtr& s, absl::string_view what) {
  if (IsDynamic(*s) || !s->a.isBool()) {
    return Unsupported(node, absl::StrCat(what, " that is not a constant bool"));
  }
  return s->a.toBool();
}

// Repeats a one-element list to `rank` entries (PyTorch accepts [k] for [k, k]).
absl::StatusOr<std::vector<int64_t>> Expand(const Node* node, std::vector<int64_t> v, size_t rank,
                                            absl::string_view what) {
  if (v.size() == 1 && rank > 1) v.assign(rank, v[0]);
  if (v.size() != rank) {
    return Unsupported(
        node, absl::StrCat(what, " with ", v.size(), " entries for ", rank, " spatial dims"));
  }
  return v;
}

const at::Tensor& A(const SlotPtr& s) { return s->a.toTensor(); }

absl::Status Exporter::Conv(Node* node, const std::string& kind, const std::vector<SlotPtr>& in,
                            const std::string& out) {
  // conv2d(input, weight, bias, stride, padding, dilation, groups) (conv1d/conv3d alike);
  // _convolution/convolution(input, weight, bias, stride, padding, dilation, transposed,
  // output_padding, groups, ...).
  const bool generic = kind == "aten::_convolution" || kind == "aten::convolution";
  if (in.size() < (generic ? 9u : 7u)) return Unsupported(node, "unexpected arguments");
  if (!in[0]->tensor) return Unsupported(node, "a constant input");
  if (generic) {
    QNET_ONNX_ASSIGN_OR_RETURN(bool transposed, StaticBool(node, in[6], "transposed"));
    if (transposed) return Unsupported(node, "transposed convolution");
  }
  const SlotPtr& w = in[1];
  if (IsDynamic(*w) || !w->a.isTensor())
    return Unsupported(node, "weights computed from the input");
  const int64_t spatial = A(w).dim() - 2;
  if (spatial < 1) return Unsupported(node, "weight rank");
  QNET_ONNX_ASSIGN_OR_RETURN(std::vector<int64_t> stride, StaticInts(node, in[3], "stride"));
  QNET_ONNX_ASSIGN_OR_RETURN(stride, Expand(node, stride, spatial, "stride"));
  QNET_ONNX_ASSIGN_OR_RETURN(std::vector<int64_t> dilation, StaticInts(node, in[5], "dilation"));
  QNET_ONNX_ASSIGN_OR_RETURN(dilation, Expand(node, dilation, spatial, "dilation"));
  QNET_ONNX_ASSIGN_OR_RETURN(int64_t groups, StaticInt(node, generic ? in[8] : in[6], "groups"));
  std::vector<int64_t> kernel(A(w).sizes().begin() + 2, A(w).sizes().end());
  std::vector<int64_t> pads;
  if (in[4]->a.isString()) {
    const std::string mode = in[4]->a.toStringRef();
    std::vector<int64_t> begin, end;
    for (int64_t i = 0; i < spatial; ++i) {
      const int64_t total = mode == "same" ? dilation[i] * (kernel[i] - 1) : 0;
      begin.push_back(total / 2);
      end.push_back(total - total / 2);
    }
    if (mode != "same" && mode != "valid") return Unsupported(node, "padding mode " + mode);
    pads = begin;
    pads.insert(pads.end(), end.begin(), end.end());
  } else {
    QNET_ONNX_ASSIGN_OR_RETURN(std::vector<int64_t> padding, StaticInts(node, in[4], "padding"));
    QNET_ONNX_ASSIGN_OR_RETURN(padding, Expand(node, padding, spatial, "padding"));
    pads = padding;
    pads.insert(pads.end(), padding.begin(), padding.end());
  }
  const at::ScalarType dtype = A(in[0]).scalar_type();
  QNET_ONNX_ASSIGN_OR_RETURN(std::string x, Operand(in[0], dtype));
  QNET_ONNX_ASSIGN_OR_RETURN(std::string wname, Weight(w, false));
  std::vector<std::string> inputs = {x, wname};
  if (!in[2]->a.isNone()) {
    QNET_ONNX_ASSIGN_OR_RETURN(std::string bias, Operand(in[2], dtype));
    inputs.push_back(bias);
  }
  pb::NodeProto* n = Emit("Conv", inputs, {out});
  SetInts(n, "kernel_shape", kernel);
  SetInts(n, "strides", stride);
  SetInts(n, "pads", pads);
  SetInts(n, "dilations", dilation);
  SetInt(n, "group", groups);
  return absl::OkStatus();
}

// ONNX pooling output size (without ceil-mode corrections), to reject configs where PyTorch and
// ONNX Runtime would disagree.
int64_t PoolOut(int64_t in, int64_t k, int64_t s, int64_t pb, int64_t pe, int64_t d, bool ceil) {
  const double v = static_cast<double>(in + pb + pe - ((k - 1) * d + 1)) / static_cast<double>(s);
  return static_cast<int64_t>(ceil ? std::ceil(v) : std::floor(v)) + 1;
}

absl::Status Exporter::Pool(Node* node, const std::string& kind, const std::vector<SlotPtr>& in,
                            const std::vector<SlotPtr>& out) {
  const at::Tensor& x = A(in[0]);
  const at::Tensor& y = A(out[0]);
  const int64_t spatial = x.dim() - 2;
  if (spatial < 1) return Unsupported(node, "input rank");
  const std::string oname = Fresh("pool");
  out[0]->name = oname;
  const bool adaptive = absl::StrContains(kind, "adaptive");
  const bool is_max = absl::StrContains(kind, "max");
  if (is_max && out.size() > 1 && node->outputs()[1]->hasUses()) {
    return Unsupported(node, "pooling indices");
  }
  if (adaptive) {
    std::vector<int64_t> kernel;
    bool global = true, even = true;
    for (int64_t i = 0; i < spatial; ++i) {
      const int64_t xi = x.size(2 + i), yi = y.size(2 + i);
      global = global && yi == 1;
      even = even && yi > 0 && xi % yi == 0;
      kernel.push_back(yi > 0 ? xi / yi : 0);
    }
    if (global) {
      Emit(is_max ? "GlobalMaxPool" : "GlobalAveragePool", {in[0]->name}, {oname});
      return absl::OkStatus();
    }
    if (!even) {
      if (is_max || spatial > 2) {
        return Unsupported(node, "an output size that does not divide the input size");
      }
      // Bin i averages [floor(i*in/out), ceil((i+1)*in/out)): a constant averaging matrix per
      // spatial dim, applied with MatMul (rows of the last dim, then of the one before).
      auto bins = [&](int64_t in_size, int64_t out_size) {
        at::Tensor p = at::zeros({out_size, in_size}, at::TensorOptions().dtype(at::kDouble));
        for (int64_t i = 0; i < out_size; ++i) {
          const int64_t start = (i * in_size) / out_size;
          const int64_t end = ((i + 1) * in_size + out_size - 1) / out_size;
          p.index_put_({i, at::indexing::Slice(start, end)},
                       1.0 / static_cast<double>(end - start));
        }
        return p.to(x.scalar_type());
      };
      const int64_t last = 2 + spatial - 1;
      QNET_ONNX_ASSIGN_OR_RETURN(
          std::string pw, Initializer(bins(x.size(last), y.size(last)).t().contiguous(), "pool_w"));
      const std::string cols = spatial == 2 ? Fresh("pool_cols") : oname;
      Emit("MatMul", {in[0]->name, pw}, {cols});
      if (spatial == 2) {
        QNET_ONNX_ASSIGN_OR_RETURN(std::string ph,
                                   Initializer(bins(x.size(2), y.size(2)), "pool_h"));
        Emit("MatMul", {ph, cols}, {oname});
      }
      return absl::OkStatus();
    }
    pb::NodeProto* n = Emit(is_max ? "MaxPool" : "AveragePool", {in[0]->name}, {oname});
    SetInts(n, "kernel_shape", kernel);
    SetInts(n, "strides", kernel);
    return absl::OkStatus();
  }
  // max_poolNd(x, kernel, stride, padding, dilation, ceil_mode);
  // avg_poolNd(x, kernel, stride, padding, ceil_mode, count_include_pad[, divisor_override]).
  if (in.size() < 6) return Unsupported(node, "unexpected arguments");
  QNET_ONNX_ASSIGN_OR_RETURN(std::vector<int64_t> kernel, StaticInts(node, in[1], "kernel size"));
  QNET_ONNX_ASSIGN_OR_RETURN(kernel, Expand(node, kernel, spatial, "kernel size"));
  QNET_ONNX_ASSIGN_OR_RETURN(std::vector<int64_t> stride, StaticInts(node, in[2], "stride"));
  if (stride.empty()) stride = kernel;
  QNET_ONNX_ASSIGN_OR_RETURN(stride, Expand(node, stride, spatial, "stride"));
  QNET_ONNX_ASSIGN_OR_RETURN(std::vector<int64_t> padding, StaticInts(node, in[3], "padding"));
  QNET_ONNX_ASSIGN_OR_RETURN(padding, Expand(node, padding, spatial, "padding"));
  std::vector<int64_t> dilation(spatial, 1);
  bool ceil_mode = false;
  if (is_max) {
    QNET_ONNX_ASSIGN_OR_RETURN(dilation, StaticInts(node, in[4], "dilation"));
    QNET_ONNX_ASSIGN_OR_RETURN(dilation, Expand(node, dilation, spatial, "dilation"));
    QNET_ONNX_ASSIGN_OR_RETURN(ceil_mode, StaticBool(node, in[5], "ceil_mode"));
  } else {
    QNET_ONNX_ASSIGN_OR_RETURN(ceil_mode, StaticBool(node, in[4], "ceil_mode"));
    if (in.size() > 6 && !in[6]->a.isNone()) return Unsupported(node, "divisor_override");
  }
  for (int64_t i = 0; i < spatial; ++i) {
    if (PoolOut(x.size(2 + i), kernel[i], stride[i], padding[i], padding[i], dilation[i],
                ceil_mode) != y.size(2 + i)) {
      return Unsupported(node, "a ceil_mode window that PyTorch drops");
    }
  }
  std::vector<int64_t> pads = padding;
  pads.insert(pads.end(), padding.begin(), padding.end());
  pb::NodeProto* n = Emit(is_max ? "MaxPool" : "AveragePool", {in[0]->name}, {oname});
  SetInts(n, "kernel_shape", kernel);
  SetInts(n, "strides", stride);
  SetInts(n, "pads", pads);
  if (ceil_mode) SetInt(n, "ceil_mode", 1);
  if (is_max) {
    SetInts(n, "dilations", dilation);
  } else {
    QNET_ONNX_ASSIGN_OR_RETURN(bool include_pad, StaticBool(node, in[5], "count_include_pad"));
    SetInt(n, "count_include_pad", include_pad ? 1 : 0);
  }
  return absl::OkStatus();
}

// flatten/view/reshape. Batch-dependent entries become 0 (copy the input's dim) or -1.
absl::Status Exporter::Reshape(Node* node, const std::string& kind, const std::vector<SlotPtr>& in,
                               const std::vector<SlotPtr>& out) {
  const at::Tensor& xa = A(in[0]);
  const at::Tensor& xb = in[0]->b.toTensor();
  const int64_t rank = xa.dim();
  const std::string oname = Fresh("reshaped");
  out[0]->name = oname;
  std::vector<int64_t> shape;
  if (kind == "aten::flatten") {
    if (in.size() < 3) return Unsupported(node, "unexpected arguments");
    QNET_ONNX_ASSIGN_OR_RETURN(int64_t start, StaticInt(node, in[1], "start_dim"));
    QNET_ONNX_ASSIGN_OR_RETURN(int64_t end, StaticInt(node, in[2], "end_dim"));
    if (rank == 0) {
      QNET_ONNX_ASSIGN_OR_RETURN(std::string one, Int64s({1}));
      Emit("Reshape", {in[0]->name, one}, {oname});
      return absl::OkStatus();
    }
    start = NormDim(start, rank);
    end = NormDim(end, rank);
    if (start == 1 && end == rank - 1) {
      SetInt(Emit("Flatten", {in[0]->name}, {oname}), "axis", 1);
      return absl::OkStatus();
    }
    if (start >= end) {
      Emit("Identity", {in[0]->name}, {oname});
      return absl::OkStatus();
    }
    shape.assign(start, 0);
    shape.push_back(-1);
    for (int64_t i = end + 1; i < rank; ++i) {
      if (xa.size(i) != xb.size(i)) return Unsupported(node, "batch-dependent trailing dims");
      shape.push_back(xa.size(i));
    }
  } else {
    if (in.size() < 2 || !in[1]->a.isIntList() || !in[1]->b.isIntList()) {
      return Unsupported(node, "a shape that is not an int list");
    }
    if (in[1]->data) return Unsupported(node, "a shape computed from tensor data");
    const std::vector<int64_t> sa = in[1]->a.toIntVector();
    const std::vector<int64_t> sb = in[1]->b.toIntVector();
    if (sa.size() != sb.size()) return Unsupported(node, "a shape whose rank depends on the batch");
    bool has_infer =
        std::count(sa.begin(), sa.end(), -1) > 0 && std::count(sb.begin(), sb.end(), -1) > 0;
    for (size_t i = 0; i < sa.size(); ++i) {
      const int64_t ri = static_cast<int64_t>(i);
      if (sa[i] == sb[i]) {
        if (sa[i] == 0) return Unsupported(node, "zero-size dims");
        shape.push_back(sa[i]);
      } else if (ri < rank && xa.size(ri) == sa[i] && xb.size(ri) == sb[i]) {
        shape.push_back(0);
      } else if (!has_infer) {
        shape.push_back(-1);
        has_infer = true;
      } else {
        return Unsupported(node, "more than one batch-dependent dim");
      }
    }
  }
  QNET_ONNX_ASSIGN_OR_RETURN(std::string shape_c, Int64s(shape));
  Emit("Reshape", {in[0]->name, shape_c}, {oname});
  return absl::OkStatus();
}

absl::Status Exporter::Translate(Node* node, const std::string& kind,
                                 const std::vector<SlotPtr>& in, const std::vector<SlotPtr>& out) {
  const std::string oname = Fresh("t");
  if (!out.empty()) out[0]->name = oname;
  const at::ScalarType out_dtype =
      !out.empty() && out[0]->a.isTensor() ? A(out[0]).scalar_type() : at::kFloat;
  auto first_tensor = [&]() -> absl::StatusOr<std::string> {
    if (in.empty() || !in[0]->tensor) return Unsupported(node, "a non-tensor first argument");
    return in[0]->name;
  };
  auto identity = [&]() -> absl::Status {
    QNET_ONNX_ASSIGN_OR_RETURN(std::string x, first_tensor());
    Emit("Identity", {x}, {oname});
    return absl::OkStatus();
  };

  static const auto* kUnary =
      new std::map<std::string, std::string>{{"aten::relu", "Relu"},
                                             {"aten::sigmoid", "Sigmoid"},
                                             {"aten::tanh", "Tanh"},
                                             {"aten::exp", "Exp"},
                                             {"aten::log", "Log"},
                                             {"aten::sqrt", "Sqrt"},
                                             {"aten::abs", "Abs"},
                                             {"aten::neg", "Neg"},
                                             {"aten::reciprocal", "Reciprocal"},
                                             {"aten::erf", "Erf"},
                                             {"aten::hardswish", "HardSwish"},
                                             {"aten::floor", "Floor"},
                                             {"aten::ceil", "Ceil"},
                                             {"aten::sin", "Sin"},
                                             {"aten::cos", "Cos"}};
  if (auto it = kUnary->find(kind); it != kUnary->end() && in.size() == 1) {
    QNET_ONNX_ASSIGN_OR_RETURN(std::string x, first_tensor());
    Emit(it->second, {x}, {oname});
    return absl::OkStatus();
  }
  if (kind == "aten::dropout" || kind == "aten::feature_dropout" || kind == "aten::alpha_dropout" ||
      kind == "aten::feature_alpha_dropout") {
    QNET_ONNX_ASSIGN_OR_RETURN(bool train, StaticBool(node, in[2], "train"));
    if (train) return Unsupported(node, "dropout in training mode");
    return identity();
  }
  if (kind == "aten::contiguous" || kind == "aten::clone" || kind == "aten::detach") {
    return identity();
  }
  if (kind == "aten::to" || kind == "aten::type_as") {
    QNET_ONNX_ASSIGN_OR_RETURN(std::string x, first_tensor());
    if (A(in[0]).scalar_type() == out_dtype) return identity();
    QNET_ONNX_ASSIGN_OR_RETURN(pb::TensorProto::DataType to, OnnxType(out_dtype));
    SetInt(Emit("Cast", {x}, {oname}), "to", to);
    return absl::OkStatus();
  }
  if (kind == "aten::conv1d" || kind == "aten::conv2d" || kind == "aten::conv3d" ||
      kind == "aten::_convolution" || kind == "aten::convolution") {
    return Conv(node, kind, in, oname);
  }
  if (kind == "aten::linear") {
    QNET_ONNX_ASSIGN_OR_RETURN(std::string x, first_tensor());
    const bool has_bias = in.size() > 2 && !in[2]->a.isNone();
    if (A(in[0]).dim() == 2 && !IsDynamic(*in[1]) && in[1]->a.isTensor() && A(in[1]).dim() == 2) {
      QNET_ONNX_ASSIGN_OR_RETURN(std::string w, Weight(in[1], false));
      std::vector<std::string> inputs = {x, w};
      if (has_bias) {
        QNET_ONNX_ASSIGN_OR_RETURN(std::string bias, Operand(in[2], out_dtype));
        inputs.push_back(bias);
      }
      SetInt(Emit("Gemm", inputs, {oname}), "transB", 1);
      return absl::OkStatus();
    }
    QNET_ONNX_ASSIGN_OR_RETURN(std::string w, Weight(in[1], true));
    const std::string product = has_bias ? Fresh("matmul") : oname;
    Emit("MatMul", {x, w}, {product});
    if (has_bias) {
      QNET_ONNX_ASSIGN_OR_RETURN(std::string bias, Operand(in[2], out_dtype));
      Emit("Add", {product, bias}, {oname});
    }
    return absl::OkStatus();
  }
  if (kind == "aten::matmul" || kind == "aten::mm") {
    QNET_ONNX_ASSIGN_OR_RETURN(std::string lhs, Weight(in[0], false));
    QNET_ONNX_ASSIGN_OR_RETURN(std::string rhs, Weight(in[1], false));
    Emit("MatMul", {lhs, rhs}, {oname});
    return absl::OkStatus();
  }
  if (kind == "aten::addmm") {
    // addmm(bias, mat1, mat2, beta, alpha) = beta * bias + alpha * mat1 @ mat2
    if (in.size() < 5 || A(out[0]).dim() != 2) return Unsupported(node, "unexpected arguments");
    QNET_ONNX_ASSIGN_OR_RETURN(double beta, StaticDouble(node, in[3], "beta"));
    QNET_ONNX_ASSIGN_OR_RETURN(double alpha, StaticDouble(node, in[4], "alpha"));
    QNET_ONNX_ASSIGN_OR_RETURN(std::string a, Weight(in[1], false));
    QNET_ONNX_ASSIGN_OR_RETURN(std::string b, Weight(in[2], false));
    QNET_ONNX_ASSIGN_OR_RETURN(std::string c, Operand(in[0], out_dtype));
    pb::NodeProto* n = Emit("Gemm", {a, b, c}, {oname});
    SetFloat(n, "alpha", alpha);
    SetFloat(n, "beta", beta);
    return absl::OkStatus();
  }
  if (kind == "aten::batch_norm") {
    // batch_norm(input, weight, bias, running_mean, running_var, training, momentum, eps, cudnn)
    if (in.size() < 8) return Unsupported(node, "unexpected arguments");
    QNET_ONNX_ASSIGN_OR_RETURN(bool training, StaticBool(node, in[5], "training"));
    if (training) return Unsupported(node, "batch statistics (training mode)");
    QNET_ONNX_ASSIGN_OR_RETURN(double eps, StaticDouble(node, in[7], "eps"));
    QNET_ONNX_ASSIGN_OR_RETURN(std::string x, first_tensor());
    const int64_t channels = A(in[0]).dim() > 1 ? A(in[0]).size(1) : 0;
    if (in[3]->a.isNone() || in[4]->a.isNone()) return Unsupported(node, "no running statistics");
    std::vector<std::string> inputs = {x};
    const auto opts = at::TensorOptions().dtype(out_dtype);
    for (int i : {1, 2, 3, 4}) {
      if (in[i]->a.isNone()) {
        QNET_ONNX_ASSIGN_OR_RETURN(std::string c, Initializer(i == 1 ? at::ones({channels}, opts)
                                                                     : at::zeros({channels}, opts),
                                                              i == 1 ? "bn_scale" : "bn_bias"));
        inputs.push_back(c);
      } else {
        QNET_ONNX_ASSIGN_OR_RETURN(std::string c, Operand(in[i], out_dtype));
        inputs.push_back(c);
      }
    }
    SetFloat(Emit("BatchNormalization", inputs, {oname}), "epsilon", eps);
    return absl::OkStatus();
  }
  if (kind == "aten::layer_norm") {
    // layer_norm(input, normalized_shape, weight, bias, eps, cudnn_enable)
    QNET_ONNX_ASSIGN_OR_RETURN(std::string x, first_tensor());
    QNET_ONNX_ASSIGN_OR_RETURN(std::vector<int64_t> shape, StaticInts(node, in[1], "shape"));
    QNET_ONNX_ASSIGN_OR_RETURN(double eps, StaticDouble(node, in[4], "eps"));
    const auto opts = at::TensorOptions().dtype(out_dtype);
    std::vector<std::string> inputs = {x};
    for (int i : {2, 3}) {
      QNET_ONNX_ASSIGN_OR_RETURN(
          std::string c,
          in[i]->a.isNone()
              ? Initializer(i == 2 ? at::ones(shape, opts) : at::zeros(shape, opts), "ln")
              : Operand(in[i], out_dtype));
      inputs.push_back(c);
    }
    pb::NodeProto* n = Emit("LayerNormalization", inputs, {oname});
    SetInt(n, "axis", A(in[0]).dim() - static_cast<int64_t>(shape.size()));
    SetFloat(n, "epsilon", eps);
    return absl::OkStatus();
  }
  if (absl::StrContains(kind, "pool")) {
    static const auto* kPools = new std::vector<std::string>{
        "aten::max_pool1d",          "aten::max_pool2d",          "aten::max_pool3d",
        "aten::avg_pool1d",          "aten::avg_pool2d",          "aten::avg_pool3d",
        "aten::adaptive_avg_pool1d", "aten::adaptive_avg_pool2d", "aten::adaptive_avg_pool3d",
        "aten::adaptive_max_pool1d", "aten::adaptive_max_pool2d", "aten::adaptive_max_pool3d"};
    if (std::find(kPools->begin(), kPools->end(), kind) != kPools->end() && in[0]->tensor) {
      return Pool(node, kind, in, out);
    }
  }
  if (kind == "aten::flatten" || kind == "aten::view" || kind == "aten::reshape") {
    if (!in[0]->tensor) return Unsupported(node, "a constant input");
    return Reshape(node, kind, in, out);
  }
  if (kind == "aten::mean" || kind == "aten::sum") {
    // mean(x, dim, keepdim, dtype) / mean(x, dtype); sum alike.
    QNET_ONNX_ASSIGN_OR_RETURN(std::string x, first_tensor());
    const int64_t rank = A(in[0]).dim();
    std::vector<int64_t> axes;
    bool keepdim = false;
    if (in.size() >= 4) {
      if (!in[1]->a.isNone()) {
        QNET_ONNX_ASSIGN_OR_RETURN(axes, StaticInts(node, in[1], "dims"));
      }
      QNET_ONNX_ASSIGN_OR_RETURN(keepdim, StaticBool(node, in[2], "keepdim"));
      if (!in[3]->a.isNone()) return Unsupported(node, "a dtype argument");
    } else if (in.size() == 2 && !in[1]->a.isNone()) {
      return Unsupported(node, "a dtype argument");
    }
    if (axes.empty()) {
      for (int64_t i = 0; i < rank; ++i) axes.push_back(i);
    }
    for (int64_t& a : axes) a = NormDim(a, rank);
    if (kind == "aten::mean") {
      pb::NodeProto* n = Emit("ReduceMean", {x}, {oname});
      SetInts(n, "axes", axes);
      SetInt(n, "keepdims", keepdim ? 1 : 0);
    } else {
      QNET_ONNX_ASSIGN_OR_RETURN(std::string axes_c, Int64s(axes));
      SetInt(Emit("ReduceSum", {x, axes_c}, {oname}), "keepdims", keepdim ? 1 : 0);
    }
    return absl::OkStatus();
  }
  if (kind == "aten::add" || kind == "aten::sub" || kind == "aten::mul" || kind == "aten::div" ||
      kind == "aten::true_divide") {
    if (in.size() < 2) return Unsupported(node, "unexpected arguments");
    const bool additive = kind == "aten::add" || kind == "aten::sub";
    if (!additive && in.size() > 2 && !in[2]->a.isNone()) {
      return Unsupported(node, "a rounding mode");
    }
    QNET_ONNX_ASSIGN_OR_RETURN(std::string lhs, Operand(in[0], out_dtype));
    double alpha = 1;
    if (additive && in.size() > 2) {
      QNET_ONNX_ASSIGN_OR_RETURN(alpha, StaticDouble(node, in[2], "alpha"));
    }
    std::string rhs;
    if (alpha != 1 && !IsDynamic(*in[1])) {
      const at::Tensor scaled = in[1]->a.isTensor()
                                    ? A(in[1]).to(out_dtype) * alpha
                                    : at::scalar_tensor(*ToDouble(in[1]->a, "other") * alpha,
                                                        at::TensorOptions().dtype(out_dtype));
      QNET_ONNX_ASSIGN_OR_RETURN(rhs, Initializer(scaled, "const"));
    } else {
      QNET_ONNX_ASSIGN_OR_RETURN(rhs, Operand(in[1], out_dtype));
      if (alpha != 1) {
        QNET_ONNX_ASSIGN_OR_RETURN(std::string alpha_c, Scalar(alpha, out_dtype));
        const std::string scaled = Fresh("scaled");
        Emit("Mul", {rhs, alpha_c}, {scaled});
        rhs = scaled;
      }
    }
    const std::string op = kind == "aten::add"   ? "Add"
                           : kind == "aten::sub" ? "Sub"
                           : kind == "aten::mul" ? "Mul"
                                                 : "Div";
    Emit(op, {lhs, rhs}, {oname});
    return absl::OkStatus();
  }
  if (kind == "aten::hardtanh" || kind == "aten::relu6" || kind == "aten::clamp" ||
      kind == "aten::clip") {
    QNET_ONNX_ASSIGN_OR_RETURN(std::string x, first_tensor());
    std::vector<std::string> inputs = {x};
    if (kind == "aten::relu6") {
      QNET_ONNX_ASSIGN_OR_RETURN(std::string lo, Scalar(0, out_dtype));
      QNET_ONNX_ASSIGN_OR_RETURN(std::string hi, Scalar(6, out_dtype));
      inputs = {x, lo, hi};
    } else {
      for (size_t i : {1u, 2u}) {
        if (i >= in.size() || in[i]->a.isNone()) {
          inputs.push_back("");
          continue;
        }
        if (in[i]->a.isTensor() && A(in[i]).numel() != 1) {
          return Unsupported(node, "tensor bounds");
        }
        QNET_ONNX_ASSIGN_OR_RETURN(double v, StaticDouble(node, in[i], "bound"));
        QNET_ONNX_ASSIGN_OR_RETURN(std::string c, Scalar(v, out_dtype));
        inputs.push_back(c);
      }
      while (!inputs.empty() && inputs.back().empty()) inputs.pop_back();
    }
    Emit("Clip", inputs, {oname});
    return absl::OkStatus();
  }
  if (kind == "aten::leaky_relu") {
    QNET_ONNX_ASSIGN_OR_RETURN(std::string x, first_tensor());
    QNET_ONNX_ASSIGN_OR_RETURN(double slope, StaticDouble(node, in[1], "negative_slope"));
    SetFloat(Emit("LeakyRelu", {x}, {oname}), "alpha", slope);
    return absl::OkStatus();
  }
  if (kind == "aten::elu") {
    QNET_ONNX_ASSIGN_OR_RETURN(std::string x, first_tensor());
    QNET_ONNX_ASSIGN_OR_RETURN(double alpha, StaticDouble(node, in[1], "alpha"));
    QNET_ONNX_ASSIGN_OR_RETURN(double scale, StaticDouble(node, in[2], "scale"));
    QNET_ONNX_ASSIGN_OR_RETURN(double input_scale, StaticDouble(node, in[3], "input_scale"));
    if (scale != 1 || input_scale != 1) return Unsupported(node, "scaled elu");
    SetFloat(Emit("Elu", {x}, {oname}), "alpha", alpha);
    return absl::OkStatus();
  }
  if (kind == "aten::hardsigmoid") {
    QNET_ONNX_ASSIGN_OR_RETURN(std::string x, first_tensor());
    pb::NodeProto* n = Emit("HardSigmoid", {x}, {oname});
    SetFloat(n, "alpha", 1.0 / 6.0);
    SetFloat(n, "beta", 0.5);
    return absl::OkStatus();
  }
  if (kind == "aten::silu") {
    QNET_ONNX_ASSIGN_OR_RETURN(std::string x, first_tensor());
    const std::string sig = Fresh("sigmoid");
    Emit("Sigmoid", {x}, {sig});
    Emit("Mul", {x, sig}, {oname});
    return absl::OkStatus();
  }
  if (kind == "aten::gelu") {
    QNET_ONNX_ASSIGN_OR_RETURN(std::string x, first_tensor());
    if (in.size() > 1 && in[1]->a.isString() && in[1]->a.toStringRef() != "none") {
      return Unsupported(node, "the tanh approximation");
    }
    // 0.5 * x * (1 + erf(x / sqrt(2)))
    QNET_ONNX_ASSIGN_OR_RETURN(std::string sqrt2, Scalar(std::sqrt(2.0), out_dtype));
    QNET_ONNX_ASSIGN_OR_RETURN(std::string one, Scalar(1.0, out_dtype));
    QNET_ONNX_ASSIGN_OR_RETURN(std::string half, Scalar(0.5, out_dtype));
    const std::string t1 = Fresh("gelu"), t2 = Fresh("gelu"), t3 = Fresh("gelu"),
                      t4 = Fresh("gelu");
    Emit("Div", {x, sqrt2}, {t1});
    Emit("Erf", {t1}, {t2});
    Emit("Add", {t2, one}, {t3});
    Emit("Mul", {x, t3}, {t4});
    Emit("Mul", {t4, half}, {oname});
    return absl::OkStatus();
  }
  if (kind == "aten::softmax" || kind == "aten::log_softmax") {
    QNET_ONNX_ASSIGN_OR_RETURN(std::string x, first_tensor());
    QNET_ONNX_ASSIGN_OR_RETURN(int64_t dim, StaticInt(node, in[1], "dim"));
    if (in.size() > 2 && !in[2]->a.isNone()) return Unsupported(node, "a dtype argument");
    SetInt(Emit(kind == "aten::softmax" ? "Softmax" : "LogSoftmax", {x}, {oname}), "axis",
           NormDim(dim, A(in[0]).dim()));
    return absl::OkStatus();
  }
  if (kind == "aten::cat" || kind == "aten::concat") {
    QNET_ONNX_ASSIGN_OR_RETURN(std::vector<SlotPtr> elems, Elements(in[0]));
    QNET_ONNX_ASSIGN_OR_RETURN(int64_t dim, StaticInt(node, in[1], "dim"));
    std::vector<std::string> inputs;
    for (const SlotPtr& e : elems) {
      QNET_ONNX_ASSIGN_OR_RETURN(std::string name, Operand(e, out_dtype));
      inputs.push_back(name);
    }
    SetInt(Emit("Concat", inputs, {oname}), "axis", NormDim(dim, A(out[0]).dim()));
    return absl::OkStatus();
  }
  if (kind == "aten::permute" || kind == "aten::transpose" || kind == "aten::t") {
    QNET_ONNX_ASSIGN_OR_RETURN(std::string x, first_tensor());
    const int64_t rank = A(in[0]).dim();
    std::vector<int64_t> perm;
    for (int64_t i = 0; i < rank; ++i) perm.push_back(i);
    if (kind == "aten::permute") {
      QNET_ONNX_ASSIGN_OR_RETURN(perm, StaticInts(node, in[1], "dims"));
      for (int64_t& p : perm) p = NormDim(p, rank);
    } else if (kind == "aten::transpose") {
      QNET_ONNX_ASSIGN_OR_RETURN(int64_t d0, StaticInt(node, in[1], "dim0"));
      QNET_ONNX_ASSIGN_OR_RETURN(int64_t d1, StaticInt(node, in[2], "dim1"));
      std::swap(perm[NormDim(d0, rank)], perm[NormDim(d1, rank)]);
    } else if (rank == 2) {
      perm = {1, 0};
    }
    SetInts(Emit("Transpose", {x}, {oname}), "perm", perm);
    return absl::OkStatus();
  }
  if (kind == "aten::squeeze" || kind == "aten::unsqueeze") {
    QNET_ONNX_ASSIGN_OR_RETURN(std::string x, first_tensor());
    const at::Tensor& xa = A(in[0]);
    const at::Tensor& xb = in[0]->b.toTensor();
    std::vector<int64_t> axes;
    if (kind == "aten::unsqueeze") {
      QNET_ONNX_ASSIGN_OR_RETURN(int64_t d, StaticInt(node, in[1], "dim"));
      axes.push_back(NormDim(d, xa.dim() + 1));
    } else {
      std::vector<int64_t> dims;
      if (in.size() > 1) {
        QNET_ONNX_ASSIGN_OR_RETURN(dims, StaticInts(node, in[1], "dim"));
      } else {
        for (int64_t i = 0; i < xa.dim(); ++i) dims.push_back(i);
      }
      for (int64_t d : dims) {
        d = NormDim(d, xa.dim());
        if (xa.size(d) == 1 && xb.size(d) == 1) axes.push_back(d);
      }
      if (axes.empty()) return identity();
    }
    QNET_ONNX_ASSIGN_OR_RETURN(std::string axes_c, Int64s(axes));
    Emit(kind == "aten::squeeze" ? "Squeeze" : "Unsqueeze", {x, axes_c}, {oname});
    return absl::OkStatus();
  }
  return Unsupported(node);
}

absl::Status Exporter::Export(const torch::jit::Module& module, const std::vector<int64_t>& chw) {
  torch::jit::Method forward = module.get_method("forward");
  std::shared_ptr<torch::jit::Graph> graph = forward.graph();
  if (graph->inputs().size() != 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("forward must take one tensor, it takes ", graph->inputs().size() - 1));
  }
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(20240611);
  auto x = std::make_shared<Slot>();
  x->tensor = true;
  x->name = "input";
  x->a = at::randn({kBatchA, chw[0], chw[1], chw[2]}, gen, at::TensorOptions().dtype(at::kFloat));
  x->b = at::randn({kBatchB, chw[0], chw[1], chw[2]}, gen, at::TensorOptions().dtype(at::kFloat));
  auto self = StaticSlot(module._ivalue());

  // The model's own run: failures here are the model's (or the shape's), not the exporter's.
  IValue reference;
  try {
    reference = module.get_method("forward")({x->a});
  } catch (const c10::Error& e) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the model fails on input ", absl::StrJoin(chw, "x"), ": ", e.what_without_backtrace()));
  }

  QNET_ONNX_ASSIGN_OR_RETURN(std::vector<SlotPtr> outputs, RunGraph(*graph, {self, x}, 0));
  // The walk must have computed what the model computes.
  if (outputs.size() == 1 && reference.isTensor() && outputs[0]->a.isTensor()) {
    const at::Tensor want = reference.toTensor();
    const at::Tensor got = outputs[0]->a.toTensor();
    if (want.sizes() != got.sizes() ||
        (want.is_floating_point() && !at::allclose(want, got, 1e-4, 1e-5))) {
      return absl::UnimplementedError(
          "ONNX export: the graph walk does not reproduce the model's output");
    }
  }
  std::vector<SlotPtr> flat;
  for (const SlotPtr& s : outputs) {
    if (s->elems) {
      flat.insert(flat.end(), s->elems->begin(), s->elems->end());
    } else {
      flat.push_back(s);
    }
  }
  if (flat.empty()) return absl::InvalidArgumentError("forward returns nothing");

  pb::ValueInfoProto* input = graph_->add_input();
  input->set_name("input");
  auto* in_type = input->mutable_type()->mutable_tensor_type();
  in_type->set_elem_type(pb::TensorProto::FLOAT);
  in_type->mutable_shape()->add_dim()->set_dim_param("N");
  for (int64_t d : chw) in_type->mutable_shape()->add_dim()->set_dim_value(d);

  for (size_t i = 0; i < flat.size(); ++i) {
    const SlotPtr& s = flat[i];
    if (!s->a.isTensor() || !s->b.isTensor()) {
      return absl::InvalidArgumentError("forward must return a tensor (or a tuple of tensors)");
    }
    const std::string name = flat.size() == 1 ? "output" : Fresh("output");
    if (s->tensor) {
      Emit("Identity", {s->name}, {name});
    } else {
      QNET_ONNX_ASSIGN_OR_RETURN(std::string c, Operand(s, std::nullopt));
      Emit("Identity", {c}, {name});
    }
    const at::Tensor& ya = A(s);
    const at::Tensor& yb = s->b.toTensor();
    QNET_ONNX_ASSIGN_OR_RETURN(pb::TensorProto::DataType type, OnnxType(ya.scalar_type()));
    pb::ValueInfoProto* output = graph_->add_output();
    output->set_name(name);
    auto* out_type = output->mutable_type()->mutable_tensor_type();
    out_type->set_elem_type(type);
    auto* shape = out_type->mutable_shape();
    for (int64_t d = 0; d < ya.dim(); ++d) {
      if (d < yb.dim() && ya.size(d) == yb.size(d)) {
        shape->add_dim()->set_dim_value(ya.size(d));
      } else if (d == 0 && ya.size(0) == kBatchA && yb.size(0) == kBatchB) {
        shape->add_dim()->set_dim_param("N");
      } else {
        shape->add_dim();  // unknown
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ExportOnnx(const torch::jit::Module& hard_model,
                        const std::vector<int64_t>& input_shape, const std::string& path,
                        const std::map<std::string, std::string>& metadata) {
  if (input_shape.size() != 3) {
    return absl::InvalidArgumentError(
        absl::StrCat("input shape must be C,H,W; got ", input_shape.size(), " dims"));
  }
  for (int64_t d : input_shape) {
    if (d <= 0 || d > (1 << 16)) {
      return absl::InvalidArgumentError(
          absl::StrCat("bad input shape ", absl::StrJoin(input_shape, "x")));
    }
  }
  if (path.empty()) return absl::InvalidArgumentError("empty ONNX output path");
  {
    std::error_code ec;
    const std::filesystem::path parent = std::filesystem::path(path).parent_path();
    if (!parent.empty() && !std::filesystem::is_directory(parent, ec)) {
      return absl::NotFoundError(
          absl::StrCat("output directory does not exist: ", parent.string()));
    }
  }
  pb::ModelProto model;
  model.set_ir_version(kIrVersion);
  model.set_producer_name("qnet");
  model.set_producer_version("0.1.0");
  pb::OperatorSetIdProto* opset = model.add_opset_import();
  opset->set_domain("");
  opset->set_version(kOpset);
  for (const auto& [key, value] : metadata) {
    pb::StringStringEntryProto* prop = model.add_metadata_props();
    prop->set_key(key);
    prop->set_value(value);
  }
  pb::GraphProto* graph = model.mutable_graph();
  graph->set_name("qnet");
  try {
    torch::NoGradGuard no_grad;
    // Work on a CPU copy in eval mode: the caller's module is never touched.
    torch::jit::Module module = hard_model.clone();
    module.eval();
    module.to(at::kCPU);
    if (module.find_method("forward") == std::nullopt) {
      return absl::InvalidArgumentError("the model has no forward method");
    }
    Exporter exporter(graph);
    absl::Status s = exporter.Export(module, input_shape);
    if (!s.ok()) return s;
  } catch (const c10::Error& e) {
    // The model ran on this input (Export checks that first): an op failed the way the
    // exporter called it.
    return absl::UnimplementedError(
        absl::StrCat("ONNX export failed while walking the model: ", e.what_without_backtrace()));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("ONNX export failed: ", TorchErrorText(e)));
  }
  if (model.ByteSizeLong() > (size_t{1} << 31) - 1) {
    return absl::UnimplementedError("the ONNX model would exceed protobuf's 2 GiB limit");
  }
  std::string bytes;
  if (!model.SerializeToString(&bytes)) return absl::InternalError("cannot serialize ONNX model");
  return WriteFileAtomically(path, bytes);
}

}  // namespace qnet::engine
