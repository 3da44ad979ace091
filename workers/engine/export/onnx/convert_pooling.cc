// Max, average and adaptive pooling.
#include <cmath>

#include "absl/strings/match.h"
#include "workers/engine/export/onnx/converter.h"

namespace qnet::engine::onnx {
namespace {

// ONNX pooling output size (without ceil-mode corrections), to reject configs where PyTorch and
// ONNX Runtime would disagree.
int64_t PoolOut(int64_t in, int64_t k, int64_t s, int64_t pb, int64_t pe, int64_t d, bool ceil) {
  const double v = static_cast<double>(in + pb + pe - ((k - 1) * d + 1)) / static_cast<double>(s);
  return static_cast<int64_t>(ceil ? std::ceil(v) : std::floor(v)) + 1;
}

// Bin i averages [floor(i*in/out), ceil((i+1)*in/out)): the averaging matrix [out, in].
at::Tensor AdaptiveBins(int64_t in_size, int64_t out_size, at::ScalarType dtype) {
  at::Tensor p = at::zeros({out_size, in_size}, at::TensorOptions().dtype(at::kDouble));
  for (int64_t i = 0; i < out_size; ++i) {
    const int64_t start = (i * in_size) / out_size;
    const int64_t end = ((i + 1) * in_size + out_size - 1) / out_size;
    p.index_put_({i, at::indexing::Slice(start, end)}, 1.0 / static_cast<double>(end - start));
  }
  return p.to(dtype);
}

// adaptive_{avg,max}_poolNd(x, output_size): global pooling, a regular pooling when the output
// divides the input, else (average, up to 2-D) constant averaging matrices applied with MatMul.
absl::Status ConvertAdaptivePool(const ConvertContext& c, const std::string& out, bool is_max) {
  const at::Tensor& x = TensorA(c.in[0]);
  const at::Tensor& y = TensorA(c.out[0]);
  const int64_t spatial = x.dim() - 2;
  const std::string& input = c.in[0]->name;
  std::vector<int64_t> kernel;
  bool global = true, even = true;
  for (int64_t i = 0; i < spatial; ++i) {
    const int64_t xi = x.size(2 + i), yi = y.size(2 + i);
    global = global && yi == 1;
    even = even && yi > 0 && xi % yi == 0;
    kernel.push_back(yi > 0 ? xi / yi : 0);
  }
  if (global) {
    c.e.Emit(is_max ? "GlobalMaxPool" : "GlobalAveragePool", {input}, {out});
    return absl::OkStatus();
  }
  if (!even) {
    if (is_max || spatial > 2) {
      return c.Unsupported("an output size that does not divide the input size");
    }
    // Rows of the last dim first, then of the one before.
    const int64_t last = 2 + spatial - 1;
    QNET_ONNX_ASSIGN_OR_RETURN(
        std::string pw,
        c.e.Initializer(AdaptiveBins(x.size(last), y.size(last), x.scalar_type()).t().contiguous(),
                        "pool_w"));
    const std::string cols = spatial == 2 ? c.e.Fresh("pool_cols") : out;
    c.e.Emit("MatMul", {input, pw}, {cols});
    if (spatial == 2) {
      QNET_ONNX_ASSIGN_OR_RETURN(
          std::string ph,
          c.e.Initializer(AdaptiveBins(x.size(2), y.size(2), x.scalar_type()), "pool_h"));
      c.e.Emit("MatMul", {ph, cols}, {out});
    }
    return absl::OkStatus();
  }
  pb::NodeProto* n = c.e.Emit(is_max ? "MaxPool" : "AveragePool", {input}, {out});
  SetInts(n, "kernel_shape", kernel);
  SetInts(n, "strides", kernel);
  return absl::OkStatus();
}

// max_poolNd(x, kernel, stride, padding, dilation, ceil_mode);
// avg_poolNd(x, kernel, stride, padding, ceil_mode, count_include_pad[, divisor_override]).
absl::Status ConvertWindowPool(const ConvertContext& c, const std::string& out, bool is_max) {
  const std::vector<SlotPtr>& in = c.in;
  const at::Tensor& x = TensorA(in[0]);
  const at::Tensor& y = TensorA(c.out[0]);
  const int64_t spatial = x.dim() - 2;
  if (in.size() < 6) return c.Unsupported("unexpected arguments");
  QNET_ONNX_ASSIGN_OR_RETURN(std::vector<int64_t> kernel, c.StaticInts(1, "kernel size"));
  QNET_ONNX_ASSIGN_OR_RETURN(kernel, c.Expand(kernel, spatial, "kernel size"));
  QNET_ONNX_ASSIGN_OR_RETURN(std::vector<int64_t> stride, c.StaticInts(2, "stride"));
  if (stride.empty()) stride = kernel;
  QNET_ONNX_ASSIGN_OR_RETURN(stride, c.Expand(stride, spatial, "stride"));
  QNET_ONNX_ASSIGN_OR_RETURN(std::vector<int64_t> padding, c.StaticInts(3, "padding"));
  QNET_ONNX_ASSIGN_OR_RETURN(padding, c.Expand(padding, spatial, "padding"));
  std::vector<int64_t> dilation(spatial, 1);
  bool ceil_mode = false;
  if (is_max) {
    QNET_ONNX_ASSIGN_OR_RETURN(dilation, c.StaticInts(4, "dilation"));
    QNET_ONNX_ASSIGN_OR_RETURN(dilation, c.Expand(dilation, spatial, "dilation"));
    QNET_ONNX_ASSIGN_OR_RETURN(ceil_mode, c.StaticBool(5, "ceil_mode"));
  } else {
    QNET_ONNX_ASSIGN_OR_RETURN(ceil_mode, c.StaticBool(4, "ceil_mode"));
    if (in.size() > 6 && !in[6]->a.isNone()) return c.Unsupported("divisor_override");
  }
  for (int64_t i = 0; i < spatial; ++i) {
    if (PoolOut(x.size(2 + i), kernel[i], stride[i], padding[i], padding[i], dilation[i],
                ceil_mode) != y.size(2 + i)) {
      return c.Unsupported("a ceil_mode window that PyTorch drops");
    }
  }
  std::vector<int64_t> pads = padding;
  pads.insert(pads.end(), padding.begin(), padding.end());
  pb::NodeProto* n = c.e.Emit(is_max ? "MaxPool" : "AveragePool", {in[0]->name}, {out});
  SetInts(n, "kernel_shape", kernel);
  SetInts(n, "strides", stride);
  SetInts(n, "pads", pads);
  if (ceil_mode) SetInt(n, "ceil_mode", 1);
  if (is_max) {
    SetInts(n, "dilations", dilation);
  } else {
    QNET_ONNX_ASSIGN_OR_RETURN(bool include_pad, c.StaticBool(5, "count_include_pad"));
    SetInt(n, "count_include_pad", include_pad ? 1 : 0);
  }
  return absl::OkStatus();
}

absl::Status ConvertPool(const ConvertContext& c) {
  if (c.in.empty() || !c.in[0]->tensor) return c.Unsupported("a constant input");
  if (TensorA(c.in[0]).dim() - 2 < 1) return c.Unsupported("input rank");
  const std::string out = c.e.Fresh("pool");
  c.out[0]->name = out;
  const bool is_max = absl::StrContains(c.kind, "max");
  if (is_max && c.out.size() > 1 && c.node->outputs()[1]->hasUses()) {
    return c.Unsupported("pooling indices");
  }
  return absl::StrContains(c.kind, "adaptive") ? ConvertAdaptivePool(c, out, is_max)
                                               : ConvertWindowPool(c, out, is_max);
}

}  // namespace

void RegisterPoolingConverters(ConverterRegistry& registry) {
  for (const char* pool :
       {"aten::max_pool1d", "aten::max_pool2d", "aten::max_pool3d", "aten::avg_pool1d",
        "aten::avg_pool2d", "aten::avg_pool3d", "aten::adaptive_avg_pool1d",
        "aten::adaptive_avg_pool2d", "aten::adaptive_avg_pool3d", "aten::adaptive_max_pool1d",
        "aten::adaptive_max_pool2d", "aten::adaptive_max_pool3d"}) {
    registry.Add(pool, ConvertPool);
  }
}

}  // namespace qnet::engine::onnx
