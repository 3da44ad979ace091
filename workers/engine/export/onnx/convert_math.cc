// Binary arithmetic and reductions.
#include "workers/engine/export/onnx/converter.h"

namespace qnet::engine::onnx {
namespace {

// add/sub(a, b, alpha) = a ± alpha*b; mul/div/true_divide(a, b[, rounding_mode]).
absl::Status ConvertArithmetic(const ConvertContext& c) {
  const std::vector<SlotPtr>& in = c.in;
  if (in.size() < 2) return c.Unsupported("unexpected arguments");
  const bool additive = c.kind == "aten::add" || c.kind == "aten::sub";
  if (!additive && in.size() > 2 && !in[2]->a.isNone()) return c.Unsupported("a rounding mode");
  QNET_ONNX_ASSIGN_OR_RETURN(std::string lhs, c.e.Operand(in[0], c.out_dtype));
  double alpha = 1;
  if (additive && in.size() > 2) {
    QNET_ONNX_ASSIGN_OR_RETURN(alpha, c.StaticDouble(2, "alpha"));
  }
  std::string rhs;
  if (alpha != 1 && !IsDynamic(*in[1])) {
    // A constant operand: fold alpha into it.
    const at::Tensor scaled = in[1]->a.isTensor()
                                  ? TensorA(in[1]).to(c.out_dtype) * alpha
                                  : at::scalar_tensor(*ToDouble(in[1]->a, "other") * alpha,
                                                      at::TensorOptions().dtype(c.out_dtype));
    QNET_ONNX_ASSIGN_OR_RETURN(rhs, c.e.Initializer(scaled, "const"));
  } else {
    QNET_ONNX_ASSIGN_OR_RETURN(rhs, c.e.Operand(in[1], c.out_dtype));
    if (alpha != 1) {
      QNET_ONNX_ASSIGN_OR_RETURN(std::string alpha_c, c.e.Scalar(alpha, c.out_dtype));
      const std::string scaled = c.e.Fresh("scaled");
      c.e.Emit("Mul", {rhs, alpha_c}, {scaled});
      rhs = scaled;
    }
  }
  const std::string op = c.kind == "aten::add"   ? "Add"
                         : c.kind == "aten::sub" ? "Sub"
                         : c.kind == "aten::mul" ? "Mul"
                                                 : "Div";
  c.e.Emit(op, {lhs, rhs}, {c.out_name});
  return absl::OkStatus();
}

// mean/sum(x, dim, keepdim, dtype) and mean/sum(x, dtype).
absl::Status ConvertReduce(const ConvertContext& c) {
  const std::vector<SlotPtr>& in = c.in;
  QNET_ONNX_ASSIGN_OR_RETURN(std::string x, c.FirstTensor());
  const int64_t rank = TensorA(in[0]).dim();
  std::vector<int64_t> axes;
  bool keepdim = false;
  if (in.size() >= 4) {
    if (!in[1]->a.isNone()) {
      QNET_ONNX_ASSIGN_OR_RETURN(axes, c.StaticInts(1, "dims"));
    }
    QNET_ONNX_ASSIGN_OR_RETURN(keepdim, c.StaticBool(2, "keepdim"));
    if (!in[3]->a.isNone()) return c.Unsupported("a dtype argument");
  } else if (in.size() == 2 && !in[1]->a.isNone()) {
    return c.Unsupported("a dtype argument");
  }
  if (axes.empty()) {
    for (int64_t i = 0; i < rank; ++i) axes.push_back(i);
  }
  for (int64_t& a : axes) a = NormDim(a, rank);
  // Since opset 18 every Reduce* op takes its axes as an input.
  QNET_ONNX_ASSIGN_OR_RETURN(std::string axes_c, c.e.Int64s(axes));
  SetInt(c.e.Emit(c.kind == "aten::mean" ? "ReduceMean" : "ReduceSum", {x, axes_c}, {c.out_name}),
         "keepdims", keepdim ? 1 : 0);
  return absl::OkStatus();
}

}  // namespace

void RegisterMathConverters(ConverterRegistry& registry) {
  for (const char* op : {"aten::add", "aten::sub", "aten::mul", "aten::div", "aten::true_divide"}) {
    registry.Add(op, ConvertArithmetic);
  }
  registry.Add("aten::mean", ConvertReduce);
  registry.Add("aten::sum", ConvertReduce);
}

}  // namespace qnet::engine::onnx
