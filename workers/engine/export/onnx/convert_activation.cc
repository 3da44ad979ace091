// Element-wise activations and functions, clamping, softmax, and dropout (inference: identity).
#include <cmath>
#include <map>

#include "workers/engine/export/onnx/converter.h"

namespace qnet::engine::onnx {
namespace {

// Ops that are one ONNX op of the same meaning, by TorchScript symbol.
const std::map<std::string, std::string>& UnaryOps() {
  static const auto* ops =
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
  return *ops;
}

absl::Status ConvertUnary(const ConvertContext& c) {
  if (c.in.size() != 1) return c.Unsupported("unexpected arguments");
  QNET_ONNX_ASSIGN_OR_RETURN(std::string x, c.FirstTensor());
  c.e.Emit(UnaryOps().at(c.kind), {x}, {c.out_name});
  return absl::OkStatus();
}

// dropout(x, p, train) and its variants.
absl::Status ConvertDropout(const ConvertContext& c) {
  QNET_ONNX_ASSIGN_OR_RETURN(bool train, c.StaticBool(2, "train"));
  if (train) return c.Unsupported("dropout in training mode");
  return c.Identity();
}

// hardtanh(x, min, max), clamp/clip(x, min?, max?), relu6(x).
absl::Status ConvertClip(const ConvertContext& c) {
  QNET_ONNX_ASSIGN_OR_RETURN(std::string x, c.FirstTensor());
  std::vector<std::string> inputs = {x};
  if (c.kind == "aten::relu6") {
    QNET_ONNX_ASSIGN_OR_RETURN(std::string lo, c.e.Scalar(0, c.out_dtype));
    QNET_ONNX_ASSIGN_OR_RETURN(std::string hi, c.e.Scalar(6, c.out_dtype));
    inputs = {x, lo, hi};
  } else {
    for (size_t i : {1u, 2u}) {
      if (i >= c.in.size() || c.in[i]->a.isNone()) {
        inputs.push_back("");  // ONNX's "no such input"
        continue;
      }
      if (c.in[i]->a.isTensor() && TensorA(c.in[i]).numel() != 1) {
        return c.Unsupported("tensor bounds");
      }
      QNET_ONNX_ASSIGN_OR_RETURN(double v, c.StaticDouble(i, "bound"));
      QNET_ONNX_ASSIGN_OR_RETURN(std::string bound, c.e.Scalar(v, c.out_dtype));
      inputs.push_back(bound);
    }
    while (!inputs.empty() && inputs.back().empty()) inputs.pop_back();
  }
  c.e.Emit("Clip", inputs, {c.out_name});
  return absl::OkStatus();
}

absl::Status ConvertLeakyRelu(const ConvertContext& c) {
  QNET_ONNX_ASSIGN_OR_RETURN(std::string x, c.FirstTensor());
  QNET_ONNX_ASSIGN_OR_RETURN(double slope, c.StaticDouble(1, "negative_slope"));
  SetFloat(c.e.Emit("LeakyRelu", {x}, {c.out_name}), "alpha", slope);
  return absl::OkStatus();
}

// elu(x, alpha, scale, input_scale)
absl::Status ConvertElu(const ConvertContext& c) {
  QNET_ONNX_ASSIGN_OR_RETURN(std::string x, c.FirstTensor());
  QNET_ONNX_ASSIGN_OR_RETURN(double alpha, c.StaticDouble(1, "alpha"));
  QNET_ONNX_ASSIGN_OR_RETURN(double scale, c.StaticDouble(2, "scale"));
  QNET_ONNX_ASSIGN_OR_RETURN(double input_scale, c.StaticDouble(3, "input_scale"));
  if (scale != 1 || input_scale != 1) return c.Unsupported("scaled elu");
  SetFloat(c.e.Emit("Elu", {x}, {c.out_name}), "alpha", alpha);
  return absl::OkStatus();
}

// PyTorch's hardsigmoid is relu6(x + 3) / 6.
absl::Status ConvertHardSigmoid(const ConvertContext& c) {
  QNET_ONNX_ASSIGN_OR_RETURN(std::string x, c.FirstTensor());
  pb::NodeProto* n = c.e.Emit("HardSigmoid", {x}, {c.out_name});
  SetFloat(n, "alpha", 1.0 / 6.0);
  SetFloat(n, "beta", 0.5);
  return absl::OkStatus();
}

// x * sigmoid(x)
absl::Status ConvertSilu(const ConvertContext& c) {
  QNET_ONNX_ASSIGN_OR_RETURN(std::string x, c.FirstTensor());
  const std::string sig = c.e.Fresh("sigmoid");
  c.e.Emit("Sigmoid", {x}, {sig});
  c.e.Emit("Mul", {x, sig}, {c.out_name});
  return absl::OkStatus();
}

// 0.5 * x * (1 + erf(x / sqrt(2))); the tanh approximation is refused.
absl::Status ConvertGelu(const ConvertContext& c) {
  QNET_ONNX_ASSIGN_OR_RETURN(std::string x, c.FirstTensor());
  if (c.in.size() > 1 && c.in[1]->a.isString() && c.in[1]->a.toStringRef() != "none") {
    return c.Unsupported("the tanh approximation");
  }
  QNET_ONNX_ASSIGN_OR_RETURN(std::string sqrt2, c.e.Scalar(std::sqrt(2.0), c.out_dtype));
  QNET_ONNX_ASSIGN_OR_RETURN(std::string one, c.e.Scalar(1.0, c.out_dtype));
  QNET_ONNX_ASSIGN_OR_RETURN(std::string half, c.e.Scalar(0.5, c.out_dtype));
  const std::string t1 = c.e.Fresh("gelu"), t2 = c.e.Fresh("gelu"), t3 = c.e.Fresh("gelu"),
                    t4 = c.e.Fresh("gelu");
  c.e.Emit("Div", {x, sqrt2}, {t1});
  c.e.Emit("Erf", {t1}, {t2});
  c.e.Emit("Add", {t2, one}, {t3});
  c.e.Emit("Mul", {x, t3}, {t4});
  c.e.Emit("Mul", {t4, half}, {c.out_name});
  return absl::OkStatus();
}

// softmax/log_softmax(x, dim, dtype)
absl::Status ConvertSoftmax(const ConvertContext& c) {
  QNET_ONNX_ASSIGN_OR_RETURN(std::string x, c.FirstTensor());
  QNET_ONNX_ASSIGN_OR_RETURN(int64_t dim, c.StaticInt(1, "dim"));
  if (c.in.size() > 2 && !c.in[2]->a.isNone()) return c.Unsupported("a dtype argument");
  SetInt(c.e.Emit(c.kind == "aten::softmax" ? "Softmax" : "LogSoftmax", {x}, {c.out_name}), "axis",
         NormDim(dim, TensorA(c.in[0]).dim()));
  return absl::OkStatus();
}

}  // namespace

void RegisterActivationConverters(ConverterRegistry& registry) {
  for (const auto& [symbol, op] : UnaryOps()) registry.Add(symbol, ConvertUnary);
  for (const char* dropout : {"aten::dropout", "aten::feature_dropout", "aten::alpha_dropout",
                              "aten::feature_alpha_dropout"}) {
    registry.Add(dropout, ConvertDropout);
  }
  for (const char* clip : {"aten::hardtanh", "aten::relu6", "aten::clamp", "aten::clip"}) {
    registry.Add(clip, ConvertClip);
  }
  registry.Add("aten::leaky_relu", ConvertLeakyRelu);
  registry.Add("aten::elu", ConvertElu);
  registry.Add("aten::hardsigmoid", ConvertHardSigmoid);
  registry.Add("aten::silu", ConvertSilu);
  registry.Add("aten::gelu", ConvertGelu);
  registry.Add("aten::softmax", ConvertSoftmax);
  registry.Add("aten::log_softmax", ConvertSoftmax);
}

}  // namespace qnet::engine::onnx
