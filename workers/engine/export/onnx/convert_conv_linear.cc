// Convolution, fully connected layers, matrix products and normalization layers. Layer weights go
// through Emitter::Weight, so quantized ones are written as low-bit codes.
#include "absl/strings/str_cat.h"
#include "workers/engine/export/onnx/converter.h"

namespace qnet::engine::onnx {
namespace {

// conv2d(input, weight, bias, stride, padding, dilation, groups) (conv1d/conv3d alike);
// _convolution/convolution(input, weight, bias, stride, padding, dilation, transposed,
// output_padding, groups, ...).
absl::Status ConvertConv(const ConvertContext& c) {
  const std::vector<SlotPtr>& in = c.in;
  const bool generic = c.kind == "aten::_convolution" || c.kind == "aten::convolution";
  if (in.size() < (generic ? 9u : 7u)) return c.Unsupported("unexpected arguments");
  if (!in[0]->tensor) return c.Unsupported("a constant input");
  if (generic) {
    QNET_ONNX_ASSIGN_OR_RETURN(bool transposed, c.StaticBool(6, "transposed"));
    if (transposed) return c.Unsupported("transposed convolution");
  }
  const SlotPtr& w = in[1];
  if (IsDynamic(*w) || !w->a.isTensor()) return c.Unsupported("weights computed from the input");
  const int64_t spatial = TensorA(w).dim() - 2;
  if (spatial < 1) return c.Unsupported("weight rank");
  QNET_ONNX_ASSIGN_OR_RETURN(std::vector<int64_t> stride, c.StaticInts(3, "stride"));
  QNET_ONNX_ASSIGN_OR_RETURN(stride, c.Expand(stride, spatial, "stride"));
  QNET_ONNX_ASSIGN_OR_RETURN(std::vector<int64_t> dilation, c.StaticInts(5, "dilation"));
  QNET_ONNX_ASSIGN_OR_RETURN(dilation, c.Expand(dilation, spatial, "dilation"));
  QNET_ONNX_ASSIGN_OR_RETURN(int64_t groups, c.StaticInt(generic ? 8 : 6, "groups"));
  std::vector<int64_t> kernel(TensorA(w).sizes().begin() + 2, TensorA(w).sizes().end());
  std::vector<int64_t> pads;
  if (in[4]->a.isString()) {
    const std::string mode = in[4]->a.toStringRef();
    if (mode != "same" && mode != "valid") return c.Unsupported("padding mode " + mode);
    std::vector<int64_t> end;
    for (int64_t i = 0; i < spatial; ++i) {
      const int64_t total = mode == "same" ? dilation[i] * (kernel[i] - 1) : 0;
      pads.push_back(total / 2);
      end.push_back(total - total / 2);
    }
    pads.insert(pads.end(), end.begin(), end.end());
  } else {
    QNET_ONNX_ASSIGN_OR_RETURN(std::vector<int64_t> padding, c.StaticInts(4, "padding"));
    QNET_ONNX_ASSIGN_OR_RETURN(padding, c.Expand(padding, spatial, "padding"));
    pads = padding;
    pads.insert(pads.end(), padding.begin(), padding.end());
  }
  const at::ScalarType dtype = TensorA(in[0]).scalar_type();
  QNET_ONNX_ASSIGN_OR_RETURN(std::string x, c.e.Operand(in[0], dtype));
  QNET_ONNX_ASSIGN_OR_RETURN(std::string wname, c.e.Weight(w, false));
  std::vector<std::string> inputs = {x, wname};
  if (!in[2]->a.isNone()) {
    QNET_ONNX_ASSIGN_OR_RETURN(std::string bias, c.e.Operand(in[2], dtype));
    inputs.push_back(bias);
  }
  pb::NodeProto* n = c.e.Emit("Conv", inputs, {c.out_name});
  SetInts(n, "kernel_shape", kernel);
  SetInts(n, "strides", stride);
  SetInts(n, "pads", pads);
  SetInts(n, "dilations", dilation);
  SetInt(n, "group", groups);
  return absl::OkStatus();
}

// linear(x, weight, bias): Gemm for a 2-D input and weight, else MatMul (+ Add).
absl::Status ConvertLinear(const ConvertContext& c) {
  const std::vector<SlotPtr>& in = c.in;
  QNET_ONNX_ASSIGN_OR_RETURN(std::string x, c.FirstTensor());
  const bool has_bias = in.size() > 2 && !in[2]->a.isNone();
  if (TensorA(in[0]).dim() == 2 && !IsDynamic(*in[1]) && in[1]->a.isTensor() &&
      TensorA(in[1]).dim() == 2) {
    QNET_ONNX_ASSIGN_OR_RETURN(std::string w, c.e.Weight(in[1], false));
    std::vector<std::string> inputs = {x, w};
    if (has_bias) {
      QNET_ONNX_ASSIGN_OR_RETURN(std::string bias, c.e.Operand(in[2], c.out_dtype));
      inputs.push_back(bias);
    }
    SetInt(c.e.Emit("Gemm", inputs, {c.out_name}), "transB", 1);
    return absl::OkStatus();
  }
  QNET_ONNX_ASSIGN_OR_RETURN(std::string w, c.e.Weight(in[1], true));
  const std::string product = has_bias ? c.e.Fresh("matmul") : c.out_name;
  c.e.Emit("MatMul", {x, w}, {product});
  if (has_bias) {
    QNET_ONNX_ASSIGN_OR_RETURN(std::string bias, c.e.Operand(in[2], c.out_dtype));
    c.e.Emit("Add", {product, bias}, {c.out_name});
  }
  return absl::OkStatus();
}

// matmul/mm(a, b)
absl::Status ConvertMatMul(const ConvertContext& c) {
  QNET_ONNX_ASSIGN_OR_RETURN(std::string lhs, c.e.Weight(c.in[0], false));
  QNET_ONNX_ASSIGN_OR_RETURN(std::string rhs, c.e.Weight(c.in[1], false));
  c.e.Emit("MatMul", {lhs, rhs}, {c.out_name});
  return absl::OkStatus();
}

// addmm(bias, mat1, mat2, beta, alpha) = beta * bias + alpha * mat1 @ mat2
absl::Status ConvertAddmm(const ConvertContext& c) {
  const std::vector<SlotPtr>& in = c.in;
  if (in.size() < 5 || TensorA(c.out[0]).dim() != 2) return c.Unsupported("unexpected arguments");
  QNET_ONNX_ASSIGN_OR_RETURN(double beta, c.StaticDouble(3, "beta"));
  QNET_ONNX_ASSIGN_OR_RETURN(double alpha, c.StaticDouble(4, "alpha"));
  QNET_ONNX_ASSIGN_OR_RETURN(std::string a, c.e.Weight(in[1], false));
  QNET_ONNX_ASSIGN_OR_RETURN(std::string b, c.e.Weight(in[2], false));
  QNET_ONNX_ASSIGN_OR_RETURN(std::string bias, c.e.Operand(in[0], c.out_dtype));
  pb::NodeProto* n = c.e.Emit("Gemm", {a, b, bias}, {c.out_name});
  SetFloat(n, "alpha", alpha);
  SetFloat(n, "beta", beta);
  return absl::OkStatus();
}

// batch_norm(input, weight, bias, running_mean, running_var, training, momentum, eps, cudnn)
absl::Status ConvertBatchNorm(const ConvertContext& c) {
  const std::vector<SlotPtr>& in = c.in;
  if (in.size() < 8) return c.Unsupported("unexpected arguments");
  QNET_ONNX_ASSIGN_OR_RETURN(bool training, c.StaticBool(5, "training"));
  if (training) return c.Unsupported("batch statistics (training mode)");
  QNET_ONNX_ASSIGN_OR_RETURN(double eps, c.StaticDouble(7, "eps"));
  QNET_ONNX_ASSIGN_OR_RETURN(std::string x, c.FirstTensor());
  const int64_t channels = TensorA(in[0]).dim() > 1 ? TensorA(in[0]).size(1) : 0;
  if (in[3]->a.isNone() || in[4]->a.isNone()) return c.Unsupported("no running statistics");
  std::vector<std::string> inputs = {x};
  const auto opts = at::TensorOptions().dtype(c.out_dtype);
  for (int i : {1, 2, 3, 4}) {
    if (in[i]->a.isNone()) {
      // No affine weight or bias: the identity scale and shift.
      QNET_ONNX_ASSIGN_OR_RETURN(
          std::string param,
          c.e.Initializer(i == 1 ? at::ones({channels}, opts) : at::zeros({channels}, opts),
                          i == 1 ? "bn_scale" : "bn_bias"));
      inputs.push_back(param);
    } else {
      QNET_ONNX_ASSIGN_OR_RETURN(std::string param, c.e.Operand(in[i], c.out_dtype));
      inputs.push_back(param);
    }
  }
  SetFloat(c.e.Emit("BatchNormalization", inputs, {c.out_name}), "epsilon", eps);
  return absl::OkStatus();
}

// layer_norm(input, normalized_shape, weight, bias, eps, cudnn_enable)
absl::Status ConvertLayerNorm(const ConvertContext& c) {
  const std::vector<SlotPtr>& in = c.in;
  QNET_ONNX_ASSIGN_OR_RETURN(std::string x, c.FirstTensor());
  QNET_ONNX_ASSIGN_OR_RETURN(std::vector<int64_t> shape, c.StaticInts(1, "shape"));
  QNET_ONNX_ASSIGN_OR_RETURN(double eps, c.StaticDouble(4, "eps"));
  const auto opts = at::TensorOptions().dtype(c.out_dtype);
  std::vector<std::string> inputs = {x};
  for (int i : {2, 3}) {
    QNET_ONNX_ASSIGN_OR_RETURN(
        std::string param,
        in[i]->a.isNone()
            ? c.e.Initializer(i == 2 ? at::ones(shape, opts) : at::zeros(shape, opts), "ln")
            : c.e.Operand(in[i], c.out_dtype));
    inputs.push_back(param);
  }
  pb::NodeProto* n = c.e.Emit("LayerNormalization", inputs, {c.out_name});
  SetInt(n, "axis", TensorA(in[0]).dim() - static_cast<int64_t>(shape.size()));
  SetFloat(n, "epsilon", eps);
  return absl::OkStatus();
}

}  // namespace

void RegisterConvLinearConverters(ConverterRegistry& registry) {
  for (const char* conv : {"aten::conv1d", "aten::conv2d", "aten::conv3d", "aten::_convolution",
                           "aten::convolution"}) {
    registry.Add(conv, ConvertConv);
  }
  registry.Add("aten::linear", ConvertLinear);
  registry.Add("aten::matmul", ConvertMatMul);
  registry.Add("aten::mm", ConvertMatMul);
  registry.Add("aten::addmm", ConvertAddmm);
  registry.Add("aten::batch_norm", ConvertBatchNorm);
  registry.Add("aten::layer_norm", ConvertLayerNorm);
}

}  // namespace qnet::engine::onnx
