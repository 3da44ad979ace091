#include "workers/engine/model_source/onnx/importer.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <exception>
#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "workers/engine/torch_error.h"
#include "workers/engine/zoo/zoo_builder.h"

namespace qnet::engine::onnx_import {
namespace {

using qnet_onnx::AttributeProto;
using qnet_onnx::NodeProto;

const std::map<std::string, OpHandler>& Handlers() {
  static const auto* handlers = [] {
    auto* ops = new std::map<std::string, OpHandler>;
    AddTensorOps(*ops);
    AddLayerOps(*ops);
    AddShapeOps(*ops);
    return ops;
  }();
  return *handlers;
}

// A layer's tensors in the order torch.nn registers them (weight, bias, running_mean, running_var,
// num_batches_tracked), then any others by name: an imported layer lists its parameters as the
// original module did, so whatever walks them in order sees the same sequence.
std::vector<std::pair<std::string, torch::Tensor>> InTorchOrder(
    const std::map<std::string, torch::Tensor>& tensors) {
  static const std::vector<std::string> kOrder = {"weight", "bias", "running_mean", "running_var",
                                                  "num_batches_tracked"};
  auto rank = [](const std::string& name) {
    return std::find(kOrder.begin(), kOrder.end(), name) - kOrder.begin();
  };
  std::vector<std::pair<std::string, torch::Tensor>> out(tensors.begin(), tensors.end());
  std::stable_sort(out.begin(), out.end(),
                   [&](const auto& a, const auto& b) { return rank(a.first) < rank(b.first); });
  return out;
}

bool IsDefaultDomain(const std::string& domain) { return domain.empty() || domain == "ai.onnx"; }

// A TorchScript identifier from an ONNX name ("layer1.0.conv1" -> "layer1_0_conv1").
std::string Identifier(const std::string& name) {
  std::string id;
  for (const char c : name) {
    const bool word = std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_';
    if (word)
      id += c;
    else if (!id.empty() && id.back() != '_')
      id += '_';
  }
  while (!id.empty() && id.back() == '_') id.pop_back();
  while (!id.empty() && id.front() == '_') id.erase(0, 1);
  if (id.empty() || std::isdigit(static_cast<unsigned char>(id.front())) != 0) id = "n_" + id;
  return id;
}

Operand Named(Operand v, const std::string& name) {
  v.name = name;
  return v;
}

torch::Tensor Param(const torch::Tensor& t) {
  return t.detach().to(torch::kFloat32).contiguous().requires_grad_(true);
}

class Importer final : public NodeContext {
 public:
  explicit Importer(const OnnxFile& file) : file_(file), builder_(0) { opset_ = file.opset; }

  absl::StatusOr<ImportedModel> Run();

  // NodeContext
  const NodeProto& node() const override { return *node_; }
  bool has_input(int i) const override {
    return i < node_->input_size() && !node_->input(i).empty();
  }
  const Operand& input(int i) const override { return values_.at(node_->input(i)); }
  std::string TensorExpr(int i) override;
  absl::StatusOr<torch::Tensor> ConstInput(int i, const std::string& what) const override;
  std::string Let(const std::string& expr) override;
  void SetTensor(int i, const std::string& expr, int64_t rank) override;
  void SetTensors(const std::string& list_expr, int64_t rank) override;
  void SetOutput(int i, Operand value) override;
  std::string AddLayer(const std::string& kind, const std::map<std::string, torch::Tensor>& params,
                       const std::map<std::string, torch::Tensor>& buffers,
                       const std::map<std::string, double>& floats) override;

 private:
  absl::Status AddInput(ImportedModel& out);
  absl::Status RunNode(const NodeProto& node);
  // The layer's name from the node: its weight's framework name, else the node's, else `kind`.
  std::string LayerBase(const std::string& kind) const;
  std::string AddNamedLayer(const std::string& name, const std::string& kind,
                            const std::map<std::string, torch::Tensor>& params,
                            const std::map<std::string, torch::Tensor>& buffers,
                            const std::map<std::string, double>& floats);
  // A batch norm behind the current Conv node's output 0, the identity until the job calibrates it.
  void RestoreBatchNorm(int64_t channels);
  std::string NewVariable() { return absl::StrCat("v", variables_++); }
  std::string UniqueName(std::string base);

  const OnnxFile& file_;
  ZooBuilder builder_;
  torch::jit::Module root_;
  const NodeProto* node_ = nullptr;
  std::map<std::string, Operand> values_;
  std::map<std::string, std::string> materialized_;  // constant's name -> self.<attribute>
  std::set<std::string> names_;                      // attribute and submodule names taken
  std::vector<std::string> lines_;
  int64_t variables_ = 0;
  std::set<const NodeProto*> folded_convs_;  // ConvsWithFoldedBatchNorm
  std::vector<std::string> restored_;        // the restored batch norms' names
};

std::string Importer::UniqueName(std::string base) {
  std::string name = base;
  for (int k = 1; !names_.insert(name).second; ++k) name = absl::StrCat(base, "_", k);
  return name;
}

std::string Importer::TensorExpr(int i) {
  const Operand& v = input(i);
  if (v.kind == Operand::Kind::kTensor) return v.expr;
  if (v.kind != Operand::Kind::kConst) return absl::StrCat("torch.tensor(", v.expr, ")");
  const std::string key = v.name.empty() ? absl::StrCat("#", variables_) : v.name;
  if (auto it = materialized_.find(key); it != materialized_.end()) return it->second;
  const std::string attr = UniqueName(absl::StrCat("c_", Identifier(v.name)));
  // A float initializer is a weight the model trains; a constant the graph computes is not.
  if (v.initializer && v.value.is_floating_point()) {
    root_.register_parameter(attr, Param(v.value), false);
  } else {
    root_.register_buffer(attr, v.value.contiguous());
  }
  return materialized_[key] = "self." + attr;
}

absl::StatusOr<torch::Tensor> Importer::ConstInput(int i, const std::string& what) const {
  if (!has_input(i)) return Error(absl::StrCat("has no ", what));
  const Operand& v = input(i);
  if (!v.is_const()) {
    return Error(absl::StrCat("its ", what, " ('", v.name,
                              "') depends on the model input; the importer needs it constant"));
  }
  return v.value;
}

std::string Importer::Let(const std::string& expr) {
  const std::string var = NewVariable();
  lines_.push_back(absl::StrCat("    ", var, " = ", expr));
  return var;
}

void Importer::SetTensor(int i, const std::string& expr, int64_t rank) {
  const std::string var = Let(expr);
  values_[node_->output(i)] = Named(Operand::Tensor(var, rank), node_->output(i));
}

void Importer::SetTensors(const std::string& list_expr, int64_t rank) {
  std::vector<std::string> vars;
  for (const std::string& out : node_->output()) {
    vars.push_back(NewVariable());
    values_[out] = Named(Operand::Tensor(vars.back(), rank), out);
  }
  lines_.push_back(absl::StrCat("    ", absl::StrJoin(vars, ", "), " = ", list_expr));
}

void Importer::SetOutput(int i, Operand value) {
  value.name = node_->output(i);
  if (!value.is_const()) value.expr = Let(value.expr);
  values_[node_->output(i)] = std::move(value);
}

std::string Importer::LayerBase(const std::string& kind) const {
  // Named after the weight when the exporter kept the framework's name ("layer1.0.conv1.weight").
  if (node_->input_size() > 1 && absl::EndsWith(node_->input(1), ".weight")) {
    return Identifier(node_->input(1).substr(0, node_->input(1).size() - 7));
  }
  if (!node_->name().empty()) return Identifier(node_->name());
  return absl::AsciiStrToLower(kind);
}

std::string Importer::AddLayer(const std::string& kind,
                               const std::map<std::string, torch::Tensor>& params,
                               const std::map<std::string, torch::Tensor>& buffers,
                               const std::map<std::string, double>& floats) {
  return AddNamedLayer(UniqueName(LayerBase(kind)), kind, params, buffers, floats);
}

std::string Importer::AddNamedLayer(const std::string& name, const std::string& kind,
                                    const std::map<std::string, torch::Tensor>& params,
                                    const std::map<std::string, torch::Tensor>& buffers,
                                    const std::map<std::string, double>& floats) {
  torch::jit::Module layer = builder_.NewModule("Onnx" + kind);
  for (const auto& [attr, t] : InTorchOrder(params)) {
    layer.register_parameter(attr, Param(t), false);
  }
  for (const auto& [attr, t] : InTorchOrder(buffers)) layer.register_buffer(attr, t.contiguous());
  for (const auto& [attr, v] : floats) layer.register_attribute(attr, c10::FloatType::get(), v);
  root_.register_module(name, layer);
  return "self." + name;
}

void Importer::RestoreBatchNorm(int64_t channels) {
  constexpr double kEps = 1e-5;  // torch.nn.BatchNorm2d's defaults, momentum too
  const std::string name = UniqueName(LayerBase("Conv") + "_bn");
  const std::string layer =
      AddNamedLayer(name, "BatchNorm",
                    {{"weight", torch::full({channels}, std::sqrt(1.0 + kEps))},
                     {"bias", torch::zeros({channels})}},
                    {{"running_mean", torch::zeros({channels})},
                     {"running_var", torch::ones({channels})},
                     {"num_batches_tracked", torch::zeros({}, torch::kLong)}},
                    {{"momentum", 0.1}, {"eps", kEps}});
  const std::string& out = node_->output(0);
  values_[out] = Named(Operand::Tensor(Let(BatchNormCall(values_.at(out).expr, layer)), 4), out);
  restored_.push_back(name);
}

absl::Status Importer::AddInput(ImportedModel& out) {
  const qnet_onnx::GraphProto& g = file_.model.graph();
  std::set<std::string> initializers;
  for (const auto& init : g.initializer()) initializers.insert(init.name());
  const qnet_onnx::ValueInfoProto* input = nullptr;
  for (const auto& in : g.input()) {
    if (initializers.count(in.name()) != 0) continue;
    if (input != nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("the graph has more than one input ('",
                                                     input->name(), "', '", in.name(),
                                                     "'); a classifier takes one image batch"));
    }
    input = &in;
  }
  if (input == nullptr) return absl::InvalidArgumentError("the graph has no input");
  std::vector<int64_t> dims;
  const auto& type = input->type().tensor_type();
  for (const auto& d : type.shape().dim()) dims.push_back(d.has_dim_value() ? d.dim_value() : -1);
  if (type.has_elem_type() && type.elem_type() != qnet_onnx::TensorProto::FLOAT) {
    return absl::InvalidArgumentError(absl::StrCat("the graph's input '", input->name(),
                                                   "' has element type ", type.elem_type(),
                                                   "; the importer takes float images"));
  }
  if (dims.size() != 4) {
    return absl::InvalidArgumentError(
        absl::StrCat("the graph's input '", input->name(), "' has ", dims.size(),
                     " dimensions; the importer takes image batches [N, C, H, W] or [N, H, W, C]"));
  }
  std::string x = "x";
  // NHWC (tf2onnx): channels last and few, the second dimension large.
  auto few = [](int64_t c) { return c == 1 || c == 3 || c == 4; };
  if (few(dims[3]) && !few(dims[1])) {
    lines_.push_back("    x_nhwc = x.permute([0, 2, 3, 1])");
    x = "x_nhwc";
    dims = {dims[0], dims[3], dims[1], dims[2]};
  }
  if (dims[1] > 0 && dims[2] > 0 && dims[3] > 0) {
    out.input_shape = std::vector<int64_t>{dims[1], dims[2], dims[3]};
  }
  values_[input->name()] = Named(Operand::Tensor(x, 4), input->name());
  for (const auto& init : g.initializer()) {
    absl::StatusOr<torch::Tensor> t = TensorFromProto(init, file_.dir);
    if (!t.ok()) return t.status();
    Operand& v = values_[init.name()] = Named(Operand::Const(*std::move(t)), init.name());
    v.initializer = true;
  }
  return absl::OkStatus();
}

absl::Status Importer::RunNode(const NodeProto& node) {
  node_ = &node;
  const auto handler = Handlers().find(node.op_type());
  if (!IsDefaultDomain(node.domain()) || handler == Handlers().end()) {
    return Error("is not an op the ONNX importer supports");
  }
  if (node.output_size() == 0) return Error("has no output");
  for (int i = 0; i < handler->second.min_inputs; ++i) {
    if (!has_input(i)) {
      return Error(absl::StrCat("lacks input ", i, " (", node.op_type(), " takes at least ",
                                handler->second.min_inputs, ")"));
    }
  }
  try {
    absl::Status s = handler->second.convert(*this);
    if (!s.ok()) return s;
    if (folded_convs_.count(&node) != 0 && input(1).is_const() && input(1).value.dim() == 4) {
      RestoreBatchNorm(input(1).value.size(0));
    }
  } catch (const std::exception& e) {
    return Error(TorchErrorText(e));
  }
  for (const std::string& out : node.output()) {
    if (!out.empty() && values_.count(out) == 0) {
      return Error(absl::StrCat("output '", out, "' is not supported by the importer"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<ImportedModel> Importer::Run() {
  ImportedModel out;
  root_ = builder_.NewModule("OnnxModel");
  folded_convs_ = ConvsWithFoldedBatchNorm(file_);
  if (absl::Status s = AddInput(out); !s.ok()) return s;
  for (const NodeProto* node : file_.order) {
    if (absl::Status s = RunNode(*node); !s.ok()) return s;
  }
  const qnet_onnx::GraphProto& g = file_.model.graph();
  if (g.output_size() != 1) {
    return absl::InvalidArgumentError(absl::StrCat("the graph has ", g.output_size(),
                                                   " outputs; a classifier has one (its logits)"));
  }
  const Operand& y = values_.at(g.output(0).name());
  if (y.kind != Operand::Kind::kTensor) {
    return absl::InvalidArgumentError(
        absl::StrCat("the graph's output '", y.name, "' does not depend on its input"));
  }
  const std::string source =
      absl::StrCat("def forward(self, x: Tensor) -> Tensor:\n", absl::StrJoin(lines_, "\n"),
                   "\n    return ", y.expr, "\n");
  try {
    root_.define(source);
  } catch (const std::exception& e) {
    return absl::InternalError(
        absl::StrCat("the imported model does not compile: ", TorchErrorText(e)));
  }
  out.module = root_;
  out.restored_batch_norms = restored_;
  return out;
}

}  // namespace

absl::StatusOr<std::vector<int64_t>> NodeContext::ConstInts(int i, const std::string& what) const {
  absl::StatusOr<torch::Tensor> t = ConstInput(i, what);
  if (!t.ok()) return t.status();
  if (t->is_floating_point() || t->dim() > 1) {
    return Error(absl::StrCat("its ", what, " is not a list of integers"));
  }
  const torch::Tensor v = t->to(torch::kInt64).contiguous().reshape({-1});
  return std::vector<int64_t>(v.data_ptr<int64_t>(), v.data_ptr<int64_t>() + v.numel());
}

const AttributeProto* NodeContext::Attr(const std::string& name) const {
  for (const AttributeProto& a : node().attribute()) {
    if (a.name() == name) return &a;
  }
  return nullptr;
}

int64_t NodeContext::Int(const std::string& name, int64_t fallback) const {
  const AttributeProto* a = Attr(name);
  return a == nullptr ? fallback : a->i();
}

// ONNX keeps float attributes in single precision, but exporters wrote them from doubles such as
// 1e-5: the double of the float's shortest decimal is that value, so an imported layer computes
// with the eps the original model used rather than 9.999999747378752e-06.
double NodeContext::Float(const std::string& name, double fallback) const {
  const AttributeProto* a = Attr(name);
  if (a == nullptr) return fallback;
  char text[64];
  const std::to_chars_result shortest = std::to_chars(text, text + sizeof(text), a->f());
  double value = a->f();
  std::from_chars(text, shortest.ptr, value);
  return value;
}

std::string NodeContext::String(const std::string& name, const std::string& fallback) const {
  const AttributeProto* a = Attr(name);
  return a == nullptr ? fallback : a->s();
}

std::optional<std::vector<int64_t>> NodeContext::Ints(const std::string& name) const {
  const AttributeProto* a = Attr(name);
  if (a == nullptr) return std::nullopt;
  return std::vector<int64_t>(a->ints().begin(), a->ints().end());
}

absl::Status NodeContext::Error(const std::string& message) const {
  return absl::InvalidArgumentError(absl::StrCat("node ", NodeLabel(node()), " ", message));
}

std::string FloatLiteral(double v) {
  if (std::isnan(v)) return "float('nan')";
  if (std::isinf(v)) return v > 0 ? "float('inf')" : "float('-inf')";
  std::string s = absl::StrFormat("%.9g", v);
  if (s.find_first_of(".e") == std::string::npos) s += ".0";
  return s;
}

std::string DTypeName(int64_t onnx_type) {
  switch (onnx_type) {
    case qnet_onnx::TensorProto::FLOAT:
      return "torch.float32";
    case qnet_onnx::TensorProto::DOUBLE:
      return "torch.float64";
    case qnet_onnx::TensorProto::FLOAT16:
      return "torch.float16";
    case qnet_onnx::TensorProto::INT64:
      return "torch.int64";
    case qnet_onnx::TensorProto::INT32:
      return "torch.int32";
    case qnet_onnx::TensorProto::INT8:
      return "torch.int8";
    case qnet_onnx::TensorProto::UINT8:
      return "torch.uint8";
    case qnet_onnx::TensorProto::BOOL:
      return "torch.bool";
    default:
      return "";
  }
}

std::optional<int64_t> NormalizeAxis(int64_t axis, int64_t rank) {
  if (rank < 0 || axis < -rank || axis >= rank) return std::nullopt;
  return axis < 0 ? axis + rank : axis;
}

std::string IntList(const std::vector<int64_t>& v) {
  return absl::StrCat("[", absl::StrJoin(v, ", "), "]");
}

std::vector<std::string> UnsupportedOps(const OnnxFile& file) {
  std::vector<std::string> found;
  std::set<std::string> seen;
  for (const NodeProto* node : file.order) {
    const std::string op = IsDefaultDomain(node->domain())
                               ? node->op_type()
                               : absl::StrCat(node->domain(), ".", node->op_type());
    if (IsDefaultDomain(node->domain()) && Handlers().count(node->op_type()) != 0) continue;
    if (seen.insert(op).second) found.push_back(absl::StrCat(op, " (node ", NodeLabel(*node), ")"));
  }
  return found;
}

absl::StatusOr<ImportedModel> ImportOnnx(const OnnxFile& file) {
  if (std::vector<std::string> ops = UnsupportedOps(file); !ops.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the ONNX importer does not support ", absl::StrJoin(ops, ", "),
                     "; docs/ARCHITECTURE.md lists the supported ops"));
  }
  try {
    return Importer(file).Run();
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("importing the ONNX graph: ", TorchErrorText(e)));
  }
}

}  // namespace qnet::engine::onnx_import
