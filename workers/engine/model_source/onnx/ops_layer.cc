// Layers with weights (Conv, ConvTranspose, Gemm, MatMul, the normalisations, PRelu) and pooling.
// A weight-bearing op becomes a submodule whose parameters the ATen call reads, so the QN
// transform and batch-norm re-estimation find it as they find a scripted torch.nn layer.
#include <charconv>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "workers/engine/model_source/onnx/importer.h"

namespace qnet::engine::onnx_import {
namespace {

// The padding of a windowed op (Conv, pooling) over `spatial` dimensions.
struct Window {
  std::vector<int64_t> kernel, strides, dilations;
  std::vector<int64_t> begin, end;  // explicit pads
  std::string same;                 // "SAME_UPPER"/"SAME_LOWER": pads from the input size
};

absl::StatusOr<Window> ReadWindow(NodeContext& c, const std::vector<int64_t>& kernel) {
  const size_t n = kernel.size();
  Window w;
  w.kernel = kernel;
  w.strides = c.Ints("strides").value_or(std::vector<int64_t>(n, 1));
  w.dilations = c.Ints("dilations").value_or(std::vector<int64_t>(n, 1));
  const std::vector<int64_t> pads = c.Ints("pads").value_or(std::vector<int64_t>(2 * n, 0));
  if (w.strides.size() != n || w.dilations.size() != n || pads.size() != 2 * n) {
    return c.Error("has strides, dilations or pads that do not match its kernel's rank");
  }
  for (size_t i = 0; i < n; ++i) {
    if (w.strides[i] < 1 || w.dilations[i] < 1 || w.kernel[i] < 1 || pads[i] < 0 ||
        pads[n + i] < 0) {
      return c.Error("has a kernel, stride, dilation or pad out of range");
    }
  }
  w.begin.assign(pads.begin(), pads.begin() + static_cast<std::ptrdiff_t>(n));
  w.end.assign(pads.begin() + static_cast<std::ptrdiff_t>(n), pads.end());
  const std::string auto_pad = c.String("auto_pad", "NOTSET");
  if (auto_pad == "VALID") {
    w.begin.assign(n, 0);
    w.end.assign(n, 0);
  } else if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
    w.same = auto_pad;
  } else if (auto_pad != "NOTSET" && !auto_pad.empty()) {
    return c.Error(absl::StrCat("has auto_pad '", auto_pad, "'"));
  }
  return w;
}

// The op's input: input 0, padded first where the op's own padding cannot (pads that differ at
// the two ends, or SAME pads that depend on the input size); `padding` is the op's own then.
std::string WindowInput(NodeContext& c, Window& w, const std::string& fill,
                        std::vector<int64_t>* padding) {
  const std::string x = c.TensorExpr(0);
  const size_t n = w.kernel.size();
  // SAME: total = max((ceil(in / s) - 1) * s + (k - 1) * d + 1 - in, 0), the odd one at the end
  // for SAME_UPPER, at the beginning for SAME_LOWER; with stride 1 it does not depend on `in`.
  bool runtime = false;
  for (size_t i = 0; i < n && !w.same.empty(); ++i) runtime = runtime || w.strides[i] > 1;
  if (!w.same.empty() && !runtime) {
    for (size_t i = 0; i < n; ++i) {
      const int64_t total = (w.kernel[i] - 1) * w.dilations[i];
      w.begin[i] = w.same == "SAME_UPPER" ? total / 2 : total - total / 2;
      w.end[i] = total - w.begin[i];
    }
  }
  if (!runtime && w.begin == w.end) {
    *padding = w.begin;
    return x;
  }
  std::vector<std::string> torch_pads;  // last dimension first
  for (size_t i = n; i-- > 0;) {
    if (!runtime) {
      torch_pads.push_back(absl::StrCat(w.begin[i]));
      torch_pads.push_back(absl::StrCat(w.end[i]));
      continue;
    }
    const std::string in = absl::StrCat(x, ".size(", i + 2, ")");
    const int64_t s = w.strides[i];
    const std::string total =
        c.Let(absl::StrCat("max(((", in, " + ", s - 1, ") // ", s, " - 1) * ", s, " + ",
                           (w.kernel[i] - 1) * w.dilations[i] + 1, " - ", in, ", 0)"));
    const std::string small = absl::StrCat(total, " // 2");
    const std::string big = absl::StrCat(total, " - ", total, " // 2");
    torch_pads.push_back(w.same == "SAME_UPPER" ? small : big);
    torch_pads.push_back(w.same == "SAME_UPPER" ? big : small);
  }
  padding->assign(n, 0);
  return c.Let(absl::StrCat("torch.constant_pad_nd(", x, ", [", absl::StrJoin(torch_pads, ", "),
                            "], ", fill, ")"));
}

absl::StatusOr<std::map<std::string, torch::Tensor>> WeightAndBias(NodeContext& c) {
  std::map<std::string, torch::Tensor> params;
  absl::StatusOr<torch::Tensor> w = c.ConstInput(1, "weight");
  if (!w.ok()) return w.status();
  params["weight"] = *w;
  if (c.has_input(2)) {
    absl::StatusOr<torch::Tensor> b = c.ConstInput(2, "bias");
    if (!b.ok()) return b.status();
    params["bias"] = b->reshape({-1});
  }
  return params;
}

absl::Status Conv(NodeContext& c) {
  const bool transposed = c.node().op_type() == "ConvTranspose";
  absl::StatusOr<std::map<std::string, torch::Tensor>> params = WeightAndBias(c);
  if (!params.ok()) return params.status();
  const torch::Tensor& weight = params->at("weight");
  const int64_t spatial = weight.dim() - 2;
  if (spatial != 1 && spatial != 2) return c.Error("is not a 1-D or 2-D convolution");
  if (c.input(0).rank != spatial + 2) {
    return c.Error(
        absl::StrCat("reads a tensor of rank ", c.input(0).rank, " with a ", spatial, "-D kernel"));
  }
  const std::vector<int64_t> kernel(weight.sizes().begin() + 2, weight.sizes().end());
  if (std::optional<std::vector<int64_t>> k = c.Ints("kernel_shape"); k && *k != kernel) {
    return c.Error("has a kernel_shape that differs from its weight's");
  }
  absl::StatusOr<Window> w = ReadWindow(c, kernel);
  if (!w.ok()) return w.status();
  const int64_t groups = c.Int("group", 1);
  if (groups < 1) return c.Error("has group < 1");
  const std::string d = absl::StrCat(spatial, "d");
  if (transposed) {
    if (c.Attr("output_shape") != nullptr || !w->same.empty() || w->begin != w->end) {
      return c.Error(
          "has output_shape, auto_pad or asymmetric pads, which the importer does "
          "not map to conv_transpose");
    }
    const std::vector<int64_t> output_padding =
        c.Ints("output_padding").value_or(std::vector<int64_t>(kernel.size(), 0));
    const std::string layer = c.AddLayer("ConvTranspose", *params, {}, {});
    c.SetTensor(
        0,
        absl::StrCat("torch.conv_transpose", d, "(", c.TensorExpr(0), ", ", layer, ".weight, ",
                     params->count("bias") ? layer + ".bias" : "None", ", ", IntList(w->strides),
                     ", ", IntList(w->begin), ", ", IntList(output_padding), ", ", groups, ", ",
                     IntList(w->dilations), ")"),
        spatial + 2);
    return absl::OkStatus();
  }
  std::vector<int64_t> padding;
  const std::string x = WindowInput(c, *w, "0.0", &padding);
  const std::string layer = c.AddLayer("Conv", *params, {}, {});
  c.SetTensor(
      0,
      absl::StrCat("torch.conv", d, "(", x, ", ", layer, ".weight, ",
                   params->count("bias") ? layer + ".bias" : "None", ", ", IntList(w->strides),
                   ", ", IntList(padding), ", ", IntList(w->dilations), ", ", groups, ")"),
      spatial + 2);
  return absl::OkStatus();
}

absl::Status Pool(NodeContext& c) {
  const std::string& op = c.node().op_type();
  const bool max = op == "MaxPool";
  if (c.node().output_size() > 1 && !c.node().output(1).empty()) {
    return c.Error("uses its indices output");
  }
  std::optional<std::vector<int64_t>> kernel = c.Ints("kernel_shape");
  if (!kernel || (kernel->size() != 1 && kernel->size() != 2)) {
    return c.Error("has no 1-D or 2-D kernel_shape");
  }
  absl::StatusOr<Window> w = ReadWindow(c, *kernel);
  if (!w.ok()) return w.status();
  const bool ceil = c.Int("ceil_mode", 0) != 0;
  const bool include_pad = c.Int("count_include_pad", 0) != 0;
  if (!max && !include_pad && (!w->same.empty() || w->begin != w->end)) {
    return c.Error(
        "averages over asymmetric pads without counting them, which ATen's avg_pool "
        "does not do");
  }
  for (size_t i = 0; i < kernel->size(); ++i) {
    if (2 * std::max(w->begin[i], w->end[i]) > (*kernel)[i]) {
      return c.Error("pads more than half its kernel, which ATen's pooling does not do");
    }
  }
  std::vector<int64_t> padding;
  const std::string x = WindowInput(c, *w, max ? "float('-inf')" : "0.0", &padding);
  const std::string d = absl::StrCat(kernel->size(), "d");
  const std::string bool_ceil = ceil ? "True" : "False";
  std::string call;
  if (max) {
    call =
        absl::StrCat("torch.max_pool", d, "(", x, ", ", IntList(*kernel), ", ", IntList(w->strides),
                     ", ", IntList(padding), ", ", IntList(w->dilations), ", ", bool_ceil, ")");
  } else {
    call = absl::StrCat("torch.avg_pool", d, "(", x, ", ", IntList(*kernel), ", ",
                        IntList(w->strides), ", ", IntList(padding), ", ", bool_ceil, ", ",
                        include_pad ? "True" : "False", ")");
  }
  c.SetTensor(0, call, c.input(0).rank);
  return absl::OkStatus();
}

absl::Status GlobalPool(NodeContext& c) {
  const int64_t rank = c.input(0).rank;
  if (rank != 3 && rank != 4)
    return c.Error("pools a tensor that is not [N, C, L] or [N, C, H, W]");
  const bool max = c.node().op_type() == "GlobalMaxPool";
  const std::string ones = rank == 4 ? "[1, 1]" : "[1]";
  c.SetTensor(0,
              absl::StrCat("torch.adaptive_", max ? "max" : "avg", "_pool", rank - 2, "d(",
                           c.TensorExpr(0), ", ", ones, ")", max ? "[0]" : ""),
              rank);
  return absl::OkStatus();
}

// Gemm: Y = alpha * A' B' + beta * C. With B and C constant it is a linear layer whose weight is
// alpha * B' in [out, in] and whose bias is beta * C.
absl::Status Gemm(NodeContext& c) {
  const double alpha = c.Float("alpha", 1.0), beta = c.Float("beta", 1.0);
  if (c.Int("transA", 0) != 0) return c.Error("has transA=1");
  absl::StatusOr<torch::Tensor> b = c.ConstInput(1, "weight (B)");
  if (!b.ok()) return b.status();
  if (b->dim() != 2) return c.Error("has a B that is not a matrix");
  torch::Tensor weight = (c.Int("transB", 0) != 0 ? *b : b->t()).to(torch::kFloat32) * alpha;
  std::map<std::string, torch::Tensor> params{{"weight", weight}};
  if (c.has_input(2)) {
    absl::StatusOr<torch::Tensor> bias = c.ConstInput(2, "bias (C)");
    if (!bias.ok()) return bias.status();
    if (bias->numel() != 1 && bias->numel() != weight.size(0)) {
      return c.Error("has a C that is not one bias per output");
    }
    params["bias"] = bias->to(torch::kFloat32).reshape({-1}).expand({weight.size(0)}) * beta;
  }
  const std::string layer = c.AddLayer("Linear", params, {}, {});
  c.SetTensor(0,
              absl::StrCat("torch.linear(", c.TensorExpr(0), ", ", layer, ".weight, ",
                           params.count("bias") ? layer + ".bias" : "None", ")"),
              2);
  return absl::OkStatus();
}

absl::Status MatMul(NodeContext& c) {
  const Operand& a = c.input(0);
  const Operand& b = c.input(1);
  if (a.is_const() && b.is_const()) {
    c.SetOutput(0, Operand::Const(torch::matmul(a.value, b.value)));
    return absl::OkStatus();
  }
  if (b.is_const() && b.value.dim() == 2 && b.value.is_floating_point()) {
    const std::string layer = c.AddLayer("Linear", {{"weight", b.value.t()}}, {}, {});
    c.SetTensor(0, absl::StrCat("torch.linear(", c.TensorExpr(0), ", ", layer, ".weight, None)"),
                a.rank);
    return absl::OkStatus();
  }
  const int64_t rank =
      std::max(a.is_const() ? a.value.dim() : a.rank, b.is_const() ? b.value.dim() : b.rank);
  c.SetTensor(0, absl::StrCat("torch.matmul(", c.TensorExpr(0), ", ", c.TensorExpr(1), ")"), rank);
  return absl::OkStatus();
}

// ONNX's momentum weighs the old running value, ATen's the new batch: 1 - m, rounded to as many
// decimals as m has, so that an exported 0.9 gives torch.nn.BatchNorm2d's 0.1 and not
// 0.09999999999999998 (the running statistics then match the original model's to the bit).
double AtenMomentum(const NodeContext& c) {
  const double onnx = c.Float("momentum", 0.9);
  char text[64];
  const std::to_chars_result fixed =
      std::to_chars(text, text + sizeof(text), onnx, std::chars_format::fixed);
  if (fixed.ec != std::errc()) return 1.0 - onnx;
  const std::string_view digits(text, static_cast<size_t>(fixed.ptr - text));
  const size_t point = digits.find('.');
  const int decimals =
      point == std::string_view::npos ? 0 : static_cast<int>(digits.size() - point - 1);
  const std::string rounded = absl::StrFormat("%.*f", decimals, 1.0 - onnx);
  double aten = 1.0 - onnx;
  std::from_chars(rounded.data(), rounded.data() + rounded.size(), aten);
  return aten;
}

absl::Status BatchNorm(NodeContext& c) {
  for (int i = 1; i < c.node().output_size(); ++i) {
    if (!c.node().output(i).empty()) return c.Error("uses its training-mode outputs");
  }
  std::map<std::string, torch::Tensor> params, buffers;
  const char* names[] = {"weight", "bias", "running_mean", "running_var"};
  for (int i = 1; i <= 4; ++i) {
    absl::StatusOr<torch::Tensor> t = c.ConstInput(i, names[i - 1]);
    if (!t.ok()) return t.status();
    (i <= 2 ? params : buffers)[names[i - 1]] = t->to(torch::kFloat32).reshape({-1});
  }
  buffers["num_batches_tracked"] = torch::zeros({}, torch::kLong);
  const std::string layer =
      c.AddLayer("BatchNorm", params, buffers,
                 {{"momentum", AtenMomentum(c)}, {"eps", c.Float("epsilon", 1e-5)}});
  c.SetTensor(0, BatchNormCall(c.TensorExpr(0), layer), c.input(0).rank);
  return absl::OkStatus();
}

absl::Status InstanceNorm(NodeContext& c) {
  c.SetTensor(0,
              absl::StrCat("torch.instance_norm(", c.TensorExpr(0), ", ", c.TensorExpr(1), ", ",
                           c.TensorExpr(2), ", None, None, True, 0.0, ",
                           FloatLiteral(c.Float("epsilon", 1e-5)), ", True)"),
              c.input(0).rank);
  return absl::OkStatus();
}

absl::Status LayerNorm(NodeContext& c) {
  for (int i = 1; i < c.node().output_size(); ++i) {
    if (!c.node().output(i).empty()) return c.Error("uses its mean or inverse-deviation outputs");
  }
  absl::StatusOr<torch::Tensor> scale = c.ConstInput(1, "scale");
  if (!scale.ok()) return scale.status();
  const int64_t rank = c.input(0).rank;
  std::optional<int64_t> axis = NormalizeAxis(c.Int("axis", -1), rank);
  if (!axis || scale->dim() != rank - *axis) {
    return c.Error("has a scale whose shape is not the normalised dimensions'");
  }
  const std::vector<int64_t> shape(scale->sizes().begin(), scale->sizes().end());
  c.SetTensor(0,
              absl::StrCat("torch.layer_norm(", c.TensorExpr(0), ", ", IntList(shape), ", ",
                           c.TensorExpr(1), ", ", c.has_input(2) ? c.TensorExpr(2) : "None", ", ",
                           FloatLiteral(c.Float("epsilon", 1e-5)), ")"),
              rank);
  return absl::OkStatus();
}

absl::Status PRelu(NodeContext& c) {
  absl::StatusOr<torch::Tensor> slope = c.ConstInput(1, "slope");
  if (!slope.ok()) return slope.status();
  // ATen's prelu takes one slope per channel (dimension 1) or one for all.
  const int64_t rank = c.input(0).rank;
  if (slope->numel() != 1 && !(slope->dim() == rank - 1 && slope->size(0) == slope->numel()) &&
      slope->dim() != 1) {
    return c.Error("has a slope that is not per channel");
  }
  const std::string layer = c.AddLayer("PRelu", {{"weight", slope->reshape({-1})}}, {}, {});
  c.SetTensor(0, absl::StrCat("torch.prelu(", c.TensorExpr(0), ", ", layer, ".weight)"), rank);
  return absl::OkStatus();
}

}  // namespace

std::string BatchNormCall(const std::string& x, const std::string& layer) {
  return absl::StrCat("torch.batch_norm(", x, ", ", layer, ".weight, ", layer, ".bias, ", layer,
                      ".running_mean, ", layer, ".running_var, ", layer, ".training, ", layer,
                      ".momentum, ", layer, ".eps, True)");
}

void AddLayerOps(std::map<std::string, OpHandler>& ops) {
  ops["Conv"] = {&Conv, 2};
  ops["ConvTranspose"] = {&Conv, 2};
  ops["MaxPool"] = {&Pool, 1};
  ops["AveragePool"] = {&Pool, 1};
  ops["GlobalAveragePool"] = {&GlobalPool, 1};
  ops["GlobalMaxPool"] = {&GlobalPool, 1};
  ops["Gemm"] = {&Gemm, 2};
  ops["MatMul"] = {&MatMul, 2};
  ops["BatchNormalization"] = {&BatchNorm, 5};
  ops["InstanceNormalization"] = {&InstanceNorm, 3};
  ops["LayerNormalization"] = {&LayerNorm, 2};
  ops["PRelu"] = {&PRelu, 2};
}

}  // namespace qnet::engine::onnx_import
