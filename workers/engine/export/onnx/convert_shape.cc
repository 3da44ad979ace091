// Layout and type ops: reshapes, transposes, (un)squeezing, concatenation, splitting, indexing,
// copies and casts.
#include <algorithm>
#include <limits>
#include <memory>
#include <optional>

#include "workers/engine/export/onnx/converter.h"

namespace qnet::engine::onnx {
namespace {

// contiguous/clone/detach: the same values.
absl::Status ConvertIdentity(const ConvertContext& c) { return c.Identity(); }

// to(x, dtype, ...)/type_as(x, other): a Cast when the dtype changes.
absl::Status ConvertCast(const ConvertContext& c) {
  QNET_ONNX_ASSIGN_OR_RETURN(std::string x, c.FirstTensor());
  if (TensorA(c.in[0]).scalar_type() == c.out_dtype) return c.Identity();
  QNET_ONNX_ASSIGN_OR_RETURN(pb::TensorProto::DataType to, OnnxType(c.out_dtype));
  SetInt(c.e.Emit("Cast", {x}, {c.out_name}), "to", to);
  return absl::OkStatus();
}

// flatten(x, start, end): writes Flatten or Identity where one fits (and returns nullopt), else
// returns the shape to Reshape to.
absl::StatusOr<std::optional<std::vector<int64_t>>> FlattenShape(const ConvertContext& c,
                                                                 const std::string& out) {
  const at::Tensor& xa = TensorA(c.in[0]);
  const at::Tensor& xb = c.in[0]->b.toTensor();
  const int64_t rank = xa.dim();
  if (c.in.size() < 3) return c.Unsupported("unexpected arguments");
  QNET_ONNX_ASSIGN_OR_RETURN(int64_t start, c.StaticInt(1, "start_dim"));
  QNET_ONNX_ASSIGN_OR_RETURN(int64_t end, c.StaticInt(2, "end_dim"));
  if (rank == 0) return std::vector<int64_t>{1};
  start = NormDim(start, rank);
  end = NormDim(end, rank);
  if (start == 1 && end == rank - 1) {
    SetInt(c.e.Emit("Flatten", {c.in[0]->name}, {out}), "axis", 1);
    return std::nullopt;
  }
  if (start >= end) {
    c.e.Emit("Identity", {c.in[0]->name}, {out});
    return std::nullopt;
  }
  std::vector<int64_t> shape(start, 0);
  shape.push_back(-1);
  for (int64_t i = end + 1; i < rank; ++i) {
    if (xa.size(i) != xb.size(i)) return c.Unsupported("batch-dependent trailing dims");
    shape.push_back(xa.size(i));
  }
  return shape;
}

// view/reshape(x, shape): entries that follow the batch become 0 (copy the input's dim) or -1.
absl::StatusOr<std::vector<int64_t>> ViewShape(const ConvertContext& c) {
  const std::vector<SlotPtr>& in = c.in;
  const at::Tensor& xa = TensorA(in[0]);
  const at::Tensor& xb = in[0]->b.toTensor();
  const int64_t rank = xa.dim();
  if (in.size() < 2 || !in[1]->a.isIntList() || !in[1]->b.isIntList()) {
    return c.Unsupported("a shape that is not an int list");
  }
  if (in[1]->data) return c.Unsupported("a shape computed from tensor data");
  const std::vector<int64_t> sa = in[1]->a.toIntVector();
  const std::vector<int64_t> sb = in[1]->b.toIntVector();
  if (sa.size() != sb.size()) return c.Unsupported("a shape whose rank depends on the batch");
  bool has_infer =
      std::count(sa.begin(), sa.end(), -1) > 0 && std::count(sb.begin(), sb.end(), -1) > 0;
  std::vector<int64_t> shape;
  for (size_t i = 0; i < sa.size(); ++i) {
    const int64_t ri = static_cast<int64_t>(i);
    if (sa[i] == sb[i]) {
      if (sa[i] == 0) return c.Unsupported("zero-size dims");
      shape.push_back(sa[i]);
    } else if (ri < rank && xa.size(ri) == sa[i] && xb.size(ri) == sb[i]) {
      shape.push_back(0);
    } else if (!has_infer) {
      shape.push_back(-1);
      has_infer = true;
    } else {
      return c.Unsupported("more than one batch-dependent dim");
    }
  }
  return shape;
}

// flatten/view/reshape: Flatten or Identity where they fit, else Reshape.
absl::Status ConvertReshape(const ConvertContext& c) {
  if (!c.in[0]->tensor) return c.Unsupported("a constant input");
  const std::string out = c.e.Fresh("reshaped");
  c.out[0]->name = out;
  std::optional<std::vector<int64_t>> shape;
  if (c.kind == "aten::flatten") {
    QNET_ONNX_ASSIGN_OR_RETURN(shape, FlattenShape(c, out));
    if (!shape) return absl::OkStatus();
  } else {
    QNET_ONNX_ASSIGN_OR_RETURN(shape, ViewShape(c));
  }
  QNET_ONNX_ASSIGN_OR_RETURN(std::string shape_c, c.e.Int64s(*shape));
  c.e.Emit("Reshape", {c.in[0]->name, shape_c}, {out});
  return absl::OkStatus();
}

// cat(tensors, dim)
absl::Status ConvertConcat(const ConvertContext& c) {
  QNET_ONNX_ASSIGN_OR_RETURN(std::vector<SlotPtr> elems, Elements(c.in[0]));
  QNET_ONNX_ASSIGN_OR_RETURN(int64_t dim, c.StaticInt(1, "dim"));
  std::vector<std::string> inputs;
  for (const SlotPtr& elem : elems) {
    QNET_ONNX_ASSIGN_OR_RETURN(std::string name, c.e.Operand(elem, c.out_dtype));
    inputs.push_back(name);
  }
  SetInt(c.e.Emit("Concat", inputs, {c.out_name}), "axis", NormDim(dim, TensorA(c.out[0]).dim()));
  return absl::OkStatus();
}

// permute(x, dims), transpose(x, dim0, dim1), t(x).
absl::Status ConvertTranspose(const ConvertContext& c) {
  QNET_ONNX_ASSIGN_OR_RETURN(std::string x, c.FirstTensor());
  const int64_t rank = TensorA(c.in[0]).dim();
  std::vector<int64_t> perm;
  for (int64_t i = 0; i < rank; ++i) perm.push_back(i);
  if (c.kind == "aten::permute") {
    QNET_ONNX_ASSIGN_OR_RETURN(perm, c.StaticInts(1, "dims"));
    for (int64_t& p : perm) p = NormDim(p, rank);
  } else if (c.kind == "aten::transpose") {
    QNET_ONNX_ASSIGN_OR_RETURN(int64_t d0, c.StaticInt(1, "dim0"));
    QNET_ONNX_ASSIGN_OR_RETURN(int64_t d1, c.StaticInt(2, "dim1"));
    std::swap(perm[NormDim(d0, rank)], perm[NormDim(d1, rank)]);
  } else if (rank == 2) {
    perm = {1, 0};
  }
  SetInts(c.e.Emit("Transpose", {x}, {c.out_name}), "perm", perm);
  return absl::OkStatus();
}

// unsqueeze(x, dim)
absl::Status ConvertUnsqueeze(const ConvertContext& c) {
  QNET_ONNX_ASSIGN_OR_RETURN(std::string x, c.FirstTensor());
  QNET_ONNX_ASSIGN_OR_RETURN(int64_t d, c.StaticInt(1, "dim"));
  QNET_ONNX_ASSIGN_OR_RETURN(std::string axes_c,
                             c.e.Int64s({NormDim(d, TensorA(c.in[0]).dim() + 1)}));
  c.e.Emit("Unsqueeze", {x, axes_c}, {c.out_name});
  return absl::OkStatus();
}

// squeeze(x[, dims]): only dims that are 1 on both batches (a batch of one is not squeezed).
absl::Status ConvertSqueeze(const ConvertContext& c) {
  QNET_ONNX_ASSIGN_OR_RETURN(std::string x, c.FirstTensor());
  const at::Tensor& xa = TensorA(c.in[0]);
  const at::Tensor& xb = c.in[0]->b.toTensor();
  std::vector<int64_t> dims;
  if (c.in.size() > 1) {
    QNET_ONNX_ASSIGN_OR_RETURN(dims, c.StaticInts(1, "dim"));
  } else {
    for (int64_t i = 0; i < xa.dim(); ++i) dims.push_back(i);
  }
  std::vector<int64_t> axes;
  for (int64_t d : dims) {
    d = NormDim(d, xa.dim());
    if (xa.size(d) == 1 && xb.size(d) == 1) axes.push_back(d);
  }
  if (axes.empty()) return c.Identity();
  QNET_ONNX_ASSIGN_OR_RETURN(std::string axes_c, c.e.Int64s(axes));
  c.e.Emit("Squeeze", {x, axes_c}, {c.out_name});
  return absl::OkStatus();
}

// chunk(x, chunks, dim), split(x, size, dim), split_with_sizes(x, sizes, dim), unbind(x, dim):
// one Split whose pieces become the elements of the op's list result (unbind squeezes them).
absl::Status ConvertSplit(const ConvertContext& c) {
  QNET_ONNX_ASSIGN_OR_RETURN(std::string x, c.FirstTensor());
  const size_t dim_arg = c.kind == "aten::unbind" ? 1 : 2;
  if (c.in.size() <= dim_arg || c.out.size() != 1 || !c.out[0]->a.isTensorList() ||
      !c.out[0]->b.isTensorList()) {
    return c.Unsupported("unexpected arguments");
  }
  QNET_ONNX_ASSIGN_OR_RETURN(int64_t dim, c.StaticInt(dim_arg, "dim"));
  dim = NormDim(dim, TensorA(c.in[0]).dim());
  const std::vector<at::Tensor> pieces_a = c.out[0]->a.toTensorVector();
  const std::vector<at::Tensor> pieces_b = c.out[0]->b.toTensorVector();
  const bool unbind = c.kind == "aten::unbind";
  std::vector<int64_t> sizes;
  for (size_t i = 0; i < pieces_a.size(); ++i) {
    if (unbind) {
      sizes.push_back(1);
    } else if (i >= pieces_b.size() || pieces_a[i].size(dim) != pieces_b[i].size(dim)) {
      return c.Unsupported("pieces whose sizes depend on the batch");
    } else {
      sizes.push_back(pieces_a[i].size(dim));
    }
  }
  if (sizes.empty() || pieces_a.size() != pieces_b.size()) return c.Unsupported("no pieces");
  QNET_ONNX_ASSIGN_OR_RETURN(std::string sizes_c, c.e.Int64s(sizes));
  std::vector<std::string> names;
  for (size_t i = 0; i < sizes.size(); ++i) names.push_back(c.e.Fresh("piece"));
  SetInt(c.e.Emit("Split", {x, sizes_c}, names), "axis", dim);
  std::vector<SlotPtr> elems;
  for (size_t i = 0; i < sizes.size(); ++i) {
    auto piece = std::make_shared<Slot>();
    piece->a = pieces_a[i];
    piece->b = pieces_b[i];
    piece->tensor = true;
    piece->name = names[i];
    if (unbind) {
      QNET_ONNX_ASSIGN_OR_RETURN(std::string axes_c, c.e.Int64s({dim}));
      piece->name = c.e.Fresh("unbound");
      c.e.Emit("Squeeze", {names[i], axes_c}, {piece->name});
    }
    elems.push_back(std::move(piece));
  }
  c.out[0]->elems = std::move(elems);
  return absl::OkStatus();
}

// select(x, dim, index): Gather of one index, which drops the dim.
absl::Status ConvertSelect(const ConvertContext& c) {
  QNET_ONNX_ASSIGN_OR_RETURN(std::string x, c.FirstTensor());
  QNET_ONNX_ASSIGN_OR_RETURN(int64_t dim, c.StaticInt(1, "dim"));
  QNET_ONNX_ASSIGN_OR_RETURN(int64_t index, c.StaticInt(2, "index"));
  QNET_ONNX_ASSIGN_OR_RETURN(std::string index_c,
                             c.e.Scalar(static_cast<double>(index), at::kLong));
  SetInt(c.e.Emit("Gather", {x, index_c}, {c.out_name}), "axis",
         NormDim(dim, TensorA(c.in[0]).dim()));
  return absl::OkStatus();
}

// slice(x, dim, start, end, step): None bounds are the dim's ends (ONNX clamps out-of-range ones).
absl::Status ConvertSlice(const ConvertContext& c) {
  QNET_ONNX_ASSIGN_OR_RETURN(std::string x, c.FirstTensor());
  if (c.in.size() < 5) return c.Unsupported("unexpected arguments");
  QNET_ONNX_ASSIGN_OR_RETURN(int64_t dim, c.StaticInt(1, "dim"));
  int64_t start = 0, end = std::numeric_limits<int64_t>::max();
  if (!c.in[2]->a.isNone()) {
    QNET_ONNX_ASSIGN_OR_RETURN(start, c.StaticInt(2, "start"));
  }
  if (!c.in[3]->a.isNone()) {
    QNET_ONNX_ASSIGN_OR_RETURN(end, c.StaticInt(3, "end"));
  }
  QNET_ONNX_ASSIGN_OR_RETURN(int64_t step, c.StaticInt(4, "step"));
  QNET_ONNX_ASSIGN_OR_RETURN(std::string starts_c, c.e.Int64s({start}));
  QNET_ONNX_ASSIGN_OR_RETURN(std::string ends_c, c.e.Int64s({end}));
  QNET_ONNX_ASSIGN_OR_RETURN(std::string axes_c,
                             c.e.Int64s({NormDim(dim, TensorA(c.in[0]).dim())}));
  QNET_ONNX_ASSIGN_OR_RETURN(std::string steps_c, c.e.Int64s({step}));
  c.e.Emit("Slice", {x, starts_c, ends_c, axes_c, steps_c}, {c.out_name});
  return absl::OkStatus();
}

}  // namespace

void RegisterShapeConverters(ConverterRegistry& registry) {
  for (const char* copy : {"aten::contiguous", "aten::clone", "aten::detach"}) {
    registry.Add(copy, ConvertIdentity);
  }
  registry.Add("aten::to", ConvertCast);
  registry.Add("aten::type_as", ConvertCast);
  for (const char* reshape : {"aten::flatten", "aten::view", "aten::reshape"}) {
    registry.Add(reshape, ConvertReshape);
  }
  registry.Add("aten::cat", ConvertConcat);
  registry.Add("aten::concat", ConvertConcat);
  for (const char* transpose : {"aten::permute", "aten::transpose", "aten::t"}) {
    registry.Add(transpose, ConvertTranspose);
  }
  registry.Add("aten::unsqueeze", ConvertUnsqueeze);
  registry.Add("aten::squeeze", ConvertSqueeze);
  for (const char* split :
       {"aten::chunk", "aten::split", "aten::split_with_sizes", "aten::unbind"}) {
    registry.Add(split, ConvertSplit);
  }
  registry.Add("aten::select", ConvertSelect);
  registry.Add("aten::slice", ConvertSlice);
}

}  // namespace qnet::engine::onnx
