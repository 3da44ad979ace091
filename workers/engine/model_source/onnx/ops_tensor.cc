// Element-wise ops, activations and reductions: one ATen call each; constant operands are folded
// at import, and integer arithmetic on shapes stays TorchScript int arithmetic.
#include <cmath>
#include <map>
#include <string>

#include "absl/strings/str_cat.h"
#include "workers/engine/model_source/onnx/importer.h"

namespace qnet::engine::onnx_import {
namespace {

using Kind = Operand::Kind;

// A shape integer: a runtime int, a runtime shape list of one element (a Gather with indices
// [i]) or a constant integer of one element; "" otherwise.
std::string IntExpr(const Operand& v) {
  if (v.kind == Kind::kInt) return v.expr;
  if (v.kind == Kind::kInts && v.rank == 1) return absl::StrCat(v.expr, "[0]");
  if (v.is_const() && v.value.numel() == 1 && !v.value.is_floating_point()) {
    return absl::StrCat(v.value.reshape({}).item<int64_t>());
  }
  return "";
}

struct Binary {
  const char* torch;   // the ATen function
  const char* int_op;  // on shape integers
  torch::Tensor (*fold)(const torch::Tensor&, const torch::Tensor&);
};

// ONNX Div truncates integers; ATen's div would return floats.
torch::Tensor FoldDiv(const torch::Tensor& a, const torch::Tensor& b) {
  if (a.is_floating_point() || b.is_floating_point()) return torch::div(a, b);
  return torch::div(a, b, "trunc");
}

const std::map<std::string, Binary>& BinaryOps() {
  using T = torch::Tensor;
  static const auto* ops = new std::map<std::string, Binary>{
      {"Add", {"add", "+", [](const T& a, const T& b) { return torch::add(a, b); }}},
      {"Sub", {"sub", "-", [](const T& a, const T& b) { return torch::sub(a, b); }}},
      {"Mul", {"mul", "*", [](const T& a, const T& b) { return torch::mul(a, b); }}},
      {"Div", {"div", "//", &FoldDiv}},
      {"Pow", {"pow", "**", [](const T& a, const T& b) { return torch::pow(a, b); }}}};
  return *ops;
}

absl::Status BinaryOp(NodeContext& c) {
  const Binary& op = BinaryOps().at(c.node().op_type());
  const Operand& a = c.input(0);
  const Operand& b = c.input(1);
  if (a.is_const() && b.is_const()) {
    c.SetOutput(0, Operand::Const(op.fold(a.value, b.value)));
    return absl::OkStatus();
  }
  const bool a_shape = a.kind == Kind::kInt || a.kind == Kind::kInts;
  const bool b_shape = b.kind == Kind::kInt || b.kind == Kind::kInts;
  if (a_shape || b_shape) {
    const std::string x = IntExpr(a), y = IntExpr(b);
    if (x.empty() || y.empty()) {
      return c.Error(
          "does arithmetic on a shape of several elements or on a shape and a tensor, which the "
          "importer does not fold");
    }
    const std::string expr = absl::StrCat(x, " ", op.int_op, " ", y);
    // A one-element operand of rank 1 makes the result a one-element list, as ONNX broadcasts.
    if (std::max(a.tensor_rank(), b.tensor_rank()) == 1) {
      c.SetOutput(0, Operand::Ints(absl::StrCat("[", expr, "]"), 1));
    } else {
      c.SetOutput(0, Operand::Int(expr));
    }
    return absl::OkStatus();
  }
  c.SetTensor(0, absl::StrCat("torch.", op.torch, "(", c.TensorExpr(0), ", ", c.TensorExpr(1), ")"),
              std::max(a.tensor_rank(), b.tensor_rank()));
  return absl::OkStatus();
}

// Runtime tensor in, runtime tensor of the same rank out: `torch.<fn>(x<args>)`.
absl::Status Unary(NodeContext& c, const std::string& fn, const std::string& args = "") {
  c.SetTensor(0, absl::StrCat("torch.", fn, "(", c.TensorExpr(0), args, ")"), c.input(0).rank);
  return absl::OkStatus();
}

// Ops that are one ATen function of one tensor, by ONNX name.
const std::map<std::string, std::string>& UnaryFunctions() {
  static const auto* fns = new std::map<std::string, std::string>{{"Relu", "relu"},
                                                                  {"Sigmoid", "sigmoid"},
                                                                  {"Tanh", "tanh"},
                                                                  {"Erf", "erf"},
                                                                  {"Exp", "exp"},
                                                                  {"Log", "log"},
                                                                  {"Sqrt", "sqrt"},
                                                                  {"Neg", "neg"},
                                                                  {"Abs", "abs"},
                                                                  {"Reciprocal", "reciprocal"},
                                                                  {"HardSwish", "hardswish"}};
  return *fns;
}

absl::Status UnaryOp(NodeContext& c) { return Unary(c, UnaryFunctions().at(c.node().op_type())); }

// A constant scalar input as a literal; "None" when absent.
absl::StatusOr<std::string> ScalarLiteral(NodeContext& c, int i, const std::string& what) {
  if (!c.has_input(i)) return std::string("None");
  absl::StatusOr<torch::Tensor> t = c.ConstInput(i, what);
  if (!t.ok()) return t.status();
  if (t->numel() != 1) return c.Error(absl::StrCat("its ", what, " is not a scalar"));
  return FloatLiteral(t->to(torch::kFloat64).reshape({}).item<double>());
}

absl::Status Clip(NodeContext& c) {
  absl::StatusOr<std::string> lo = ScalarLiteral(c, 1, "min");
  if (!lo.ok()) return lo.status();
  absl::StatusOr<std::string> hi = ScalarLiteral(c, 2, "max");
  if (!hi.ok()) return hi.status();
  return Unary(c, "clamp", absl::StrCat(", ", *lo, ", ", *hi));
}

absl::Status LeakyRelu(NodeContext& c) {
  return Unary(c, "leaky_relu", ", " + FloatLiteral(c.Float("alpha", 0.01)));
}

absl::Status HardSigmoid(NodeContext& c) {
  const double alpha = c.Float("alpha", 0.2), beta = c.Float("beta", 0.5);
  if (std::abs(alpha - 1.0 / 6) < 1e-7 && beta == 0.5) return Unary(c, "hardsigmoid");
  c.SetTensor(0,
              absl::StrCat("torch.clamp(", c.TensorExpr(0), " * ", FloatLiteral(alpha), " + ",
                           FloatLiteral(beta), ", 0.0, 1.0)"),
              c.input(0).rank);
  return absl::OkStatus();
}

absl::Status Gelu(NodeContext& c) {
  const std::string approximate = c.String("approximate", "none");
  if (approximate != "none" && approximate != "tanh") {
    return c.Error(absl::StrCat("has approximate='", approximate, "'"));
  }
  return Unary(c, "gelu", absl::StrCat(", approximate='", approximate, "'"));
}

absl::Status Softmax(NodeContext& c) {
  const std::string fn = c.node().op_type() == "Softmax" ? "softmax" : "log_softmax";
  return Unary(c, fn, absl::StrCat(", ", c.Int("axis", -1)));
}

absl::Status Dropout(NodeContext& c) {
  if (c.node().output_size() > 1 && !c.node().output(1).empty()) {
    return c.Error("uses its mask output");
  }
  absl::StatusOr<std::string> ratio = ScalarLiteral(c, 1, "ratio");
  if (!ratio.ok()) return ratio.status();
  // Active while the model trains, as in the framework that exported it.
  return Unary(c, "dropout",
               absl::StrCat(", ", *ratio == "None" ? "0.5" : *ratio, ", self.training"));
}

absl::Status Identity(NodeContext& c) {
  c.SetOutput(0, c.input(0));
  return absl::OkStatus();
}

absl::Status Reduce(NodeContext& c) {
  const Operand& x = c.input(0);
  std::vector<int64_t> axes;
  // ReduceSum from opset 13, the others from 18, take the axes as an input.
  if (c.has_input(1)) {
    absl::StatusOr<std::vector<int64_t>> given = c.ConstInts(1, "axes");
    if (!given.ok()) return given.status();
    axes = *given;
  } else if (std::optional<std::vector<int64_t>> attr = c.Ints("axes")) {
    axes = *attr;
  }
  if (axes.empty()) {
    if (c.Int("noop_with_empty_axes", 0) != 0) return Identity(c);
    for (int64_t d = 0; d < x.rank; ++d) axes.push_back(d);
  }
  for (int64_t& a : axes) {
    std::optional<int64_t> n = NormalizeAxis(a, x.rank);
    if (!n) return c.Error(absl::StrCat("reduces axis ", a, " of a tensor of rank ", x.rank));
    a = *n;
  }
  const bool keep = c.Int("keepdims", 1) != 0;
  const std::string& op = c.node().op_type();
  const char* fn = op == "ReduceMean" ? "mean" : op == "ReduceSum" ? "sum" : "amax";
  c.SetTensor(0,
              absl::StrCat("torch.", fn, "(", c.TensorExpr(0), ", ", IntList(axes), ", ",
                           keep ? "True" : "False", ")"),
              keep ? x.rank : x.rank - static_cast<int64_t>(axes.size()));
  return absl::OkStatus();
}

}  // namespace

void AddTensorOps(std::map<std::string, OpHandler>& ops) {
  for (const auto& [name, op] : BinaryOps()) ops[name] = {&BinaryOp, 2};
  for (const auto& [name, fn] : UnaryFunctions()) ops[name] = {&UnaryOp, 1};
  ops["Clip"] = {&Clip, 1};
  ops["LeakyRelu"] = {&LeakyRelu, 1};
  ops["HardSigmoid"] = {&HardSigmoid, 1};
  ops["Gelu"] = {&Gelu, 1};
  ops["Softmax"] = {&Softmax, 1};
  ops["LogSoftmax"] = {&Softmax, 1};
  ops["Dropout"] = {&Dropout, 1};
  ops["Identity"] = {&Identity, 1};
  ops["ReduceMean"] = {&Reduce, 1};
  ops["ReduceSum"] = {&Reduce, 1};
  ops["ReduceMax"] = {&Reduce, 1};
}

}  // namespace qnet::engine::onnx_import
