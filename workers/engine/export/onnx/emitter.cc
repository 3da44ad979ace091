#include "workers/engine/export/onnx/emitter.h"

#include "absl/strings/str_cat.h"
#include "workers/engine/export/onnx/patterns.h"

namespace qnet::engine::onnx {

// Opset 21 (ONNX 1.16, IR version 10) is the first with INT4/UINT4 tensors, which quantized
// weights of 4 bits or fewer are stored as.
constexpr int64_t kOpset = 21;
constexpr int64_t kIrVersion = 10;

void InitModel(pb::ModelProto* model, const std::map<std::string, std::string>& metadata) {
  model->set_ir_version(kIrVersion);
  model->set_producer_name("qnet");
  model->set_producer_version("0.1.0");
  pb::OperatorSetIdProto* opset = model->add_opset_import();
  opset->set_domain("");
  opset->set_version(kOpset);
  for (const auto& [key, value] : metadata) {
    pb::StringStringEntryProto* prop = model->add_metadata_props();
    prop->set_key(key);
    prop->set_value(value);
  }
  model->mutable_graph()->set_name("qnet");
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
      return NotSupported(absl::StrCat("tensors of type ", c10::toString(t)));
  }
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

std::string Emitter::Fresh(absl::string_view hint) {
  const std::string base(hint.empty() ? "t" : hint);
  int& n = used_names_[base];
  std::string name = base;
  while (!taken_.insert(name).second) name = absl::StrCat(base, "_", ++n);
  return name;
}

pb::NodeProto* Emitter::Emit(absl::string_view op, const std::vector<std::string>& inputs,
                             const std::vector<std::string>& outputs) {
  pb::NodeProto* n = graph_->add_node();
  n->set_op_type(std::string(op));
  n->set_name(absl::StrCat(op, "_", counter_++));
  for (const std::string& i : inputs) n->add_input(i);
  for (const std::string& o : outputs) n->add_output(o);
  return n;
}

absl::StatusOr<std::string> Emitter::Initializer(const at::Tensor& t, absl::string_view hint) {
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

absl::StatusOr<std::string> Emitter::Int4Initializer(const at::Tensor& codes, bool is_signed,
                                                     absl::string_view hint) {
  const at::Tensor c = codes.detach().to(at::kCPU, at::kLong).contiguous().view(-1);
  const int64_t lo = is_signed ? -8 : 0;
  if (c.numel() > 0 && (c.min().item<int64_t>() < lo || c.max().item<int64_t>() > lo + 15)) {
    return absl::InternalError(absl::StrCat("codes of ", hint, " do not fit 4 bits"));
  }
  const int64_t* p = c.data_ptr<int64_t>();
  std::string packed(static_cast<size_t>((c.numel() + 1) / 2), '\0');
  for (int64_t i = 0; i < c.numel(); ++i) {
    const auto nibble = static_cast<unsigned char>(p[i] & 0xf);
    packed[i / 2] = static_cast<char>(static_cast<unsigned char>(packed[i / 2]) |
                                      (i % 2 == 0 ? nibble : nibble << 4));
  }
  pb::TensorProto* init = graph_->add_initializer();
  const std::string name = Fresh(hint);
  init->set_name(name);
  init->set_data_type(is_signed ? pb::TensorProto::INT4 : pb::TensorProto::UINT4);
  for (int64_t d : codes.sizes()) init->add_dims(d);
  init->set_raw_data(std::move(packed));
  return name;
}

absl::StatusOr<std::string> Emitter::Scalar(double v, at::ScalarType dtype) {
  return Initializer(at::scalar_tensor(v, at::TensorOptions().dtype(dtype)), "c");
}

absl::StatusOr<std::string> Emitter::Int64s(const std::vector<int64_t>& v) {
  return Initializer(at::tensor(v, at::TensorOptions().dtype(at::kLong)), "shape");
}

absl::StatusOr<std::string> Emitter::Operand(const SlotPtr& s,
                                             std::optional<at::ScalarType> dtype) {
  if (s->tensor) {
    const at::ScalarType have = s->a.toTensor().scalar_type();
    if (!dtype || *dtype == have) return s->name;
    QNET_ONNX_ASSIGN_OR_RETURN(pb::TensorProto::DataType to, OnnxType(*dtype));
    const std::string out = Fresh("cast");
    SetInt(Emit("Cast", {s->name}, {out}), "to", to);
    return out;
  }
  if (s->dyn) return NotSupported("tensors built from batch-size-dependent numbers");
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
        double v, ToDouble(s->a.isBool() ? c10::IValue(int64_t{s->a.toBool()}) : s->a, "operand"));
    return Scalar(v, dtype.value_or(s->a.isDouble() ? at::kFloat : at::kLong));
  }
  return NotSupported(absl::StrCat("operands of type ", s->a.tagKind()));
}

absl::StatusOr<std::string> Emitter::Weight(const SlotPtr& s, bool transpose) {
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
    QNET_ONNX_ASSIGN_OR_RETURN(name, QuantizedWeight(*this, w, *s->quant, hint));
  }
  if (!name) {
    QNET_ONNX_ASSIGN_OR_RETURN(name, Initializer(w, hint));
  }
  weight_cache_[key] = *name;
  keep_alive_.push_back(t);
  return *name;
}

void Emitter::AddInput(const std::string& name, const std::vector<int64_t>& chw) {
  pb::ValueInfoProto* input = graph_->add_input();
  input->set_name(name);
  auto* type = input->mutable_type()->mutable_tensor_type();
  type->set_elem_type(pb::TensorProto::FLOAT);
  type->mutable_shape()->add_dim()->set_dim_param("N");
  for (int64_t d : chw) type->mutable_shape()->add_dim()->set_dim_value(d);
}

absl::Status Emitter::AddOutput(const std::string& name, const at::Tensor& ya,
                                const at::Tensor& yb) {
  QNET_ONNX_ASSIGN_OR_RETURN(pb::TensorProto::DataType elem, OnnxType(ya.scalar_type()));
  pb::ValueInfoProto* output = graph_->add_output();
  output->set_name(name);
  auto* type = output->mutable_type()->mutable_tensor_type();
  type->set_elem_type(elem);
  auto* shape = type->mutable_shape();
  for (int64_t d = 0; d < ya.dim(); ++d) {
    if (d < yb.dim() && ya.size(d) == yb.size(d)) {
      shape->add_dim()->set_dim_value(ya.size(d));
    } else if (d == 0 && ya.size(0) == kBatchA && yb.size(0) == kBatchB) {
      shape->add_dim()->set_dim_param("N");
    } else {
      shape->add_dim();  // unknown
    }
  }
  return absl::OkStatus();
}

}  // namespace qnet::engine::onnx
