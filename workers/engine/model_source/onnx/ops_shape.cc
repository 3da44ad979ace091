// Shape ops and the shape arithmetic exporters emit around them (Shape, Gather, Constant,
// ConstantOfShape, Cast, Unsqueeze, Concat, ...). On constants they are folded at import; on the
// shape of a runtime tensor they stay TorchScript int lists (x.size()), so Reshape(x, [N, -1])
// keeps a free batch dimension.
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "workers/engine/model_source/onnx/importer.h"
#include "workers/engine/model_source/onnx/onnx_file.h"

namespace qnet::engine::onnx_import {
namespace {

using Kind = Operand::Kind;

// Folded constants that are made, not read, are bounded like the file's own tensors; a smaller
// bound, since a classifier's shape constants are small and a crafted file states any size.
constexpr int64_t kMaxFoldedElements = int64_t{1} << 24;
// ATen's own limit on dimensions.
constexpr int64_t kMaxRank = 64;

absl::Status SetConst(NodeContext& c, int i, torch::Tensor value) {
  c.SetOutput(i, Operand::Const(std::move(value)));
  return absl::OkStatus();
}

// A runtime int list as one TorchScript expression; constants as literals.
std::string ListExpr(const Operand& v) {
  if (v.kind == Kind::kInt) return absl::StrCat("[", v.expr, "]");
  if (v.kind == Kind::kInts) return v.expr;
  const torch::Tensor t = v.value.to(torch::kInt64).contiguous().reshape({-1});
  return IntList(std::vector<int64_t>(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + t.numel()));
}

absl::Status Constant(NodeContext& c) {
  if (const qnet_onnx::AttributeProto* a = c.Attr("value")) {
    absl::StatusOr<torch::Tensor> t = TensorFromProto(a->t(), std::filesystem::path());
    if (!t.ok()) return c.Error(std::string(t.status().message()));
    return SetConst(c, 0, *t);
  }
  if (const qnet_onnx::AttributeProto* a = c.Attr("value_float")) {
    return SetConst(c, 0, torch::tensor(a->f()));
  }
  if (const qnet_onnx::AttributeProto* a = c.Attr("value_int")) {
    return SetConst(c, 0, torch::tensor(a->i(), torch::kInt64));
  }
  if (const qnet_onnx::AttributeProto* a = c.Attr("value_floats")) {
    return SetConst(c, 0,
                    torch::tensor(std::vector<float>(a->floats().begin(), a->floats().end())));
  }
  if (std::optional<std::vector<int64_t>> ints = c.Ints("value_ints")) {
    return SetConst(c, 0, torch::tensor(*ints, torch::kInt64));
  }
  return c.Error("has no tensor, float or int value (sparse and string constants are not read)");
}

absl::Status Shape(NodeContext& c) {
  const Operand& x = c.input(0);
  int64_t rank = x.tensor_rank();
  int64_t start = c.Int("start", 0), end = c.Int("end", rank);
  if (rank < 0) return c.Error("reads the shape of a tensor of unknown rank");
  start = std::clamp(start < 0 ? start + rank : start, int64_t{0}, rank);
  end = std::clamp(end < 0 ? end + rank : end, start, rank);
  if (x.is_const()) {
    return SetConst(c, 0, torch::tensor(x.value.sizes().vec(), torch::kInt64).slice(0, start, end));
  }
  if (x.kind != Kind::kTensor) return c.Error("reads the shape of a shape");
  c.SetOutput(0,
              Operand::Ints(absl::StrCat(x.expr, ".size()[", start, ":", end, "]"), end - start));
  return absl::OkStatus();
}

absl::Status ConstantOfShape(NodeContext& c) {
  torch::Tensor value = torch::zeros({1});
  if (const qnet_onnx::AttributeProto* a = c.Attr("value")) {
    absl::StatusOr<torch::Tensor> t = TensorFromProto(a->t(), std::filesystem::path());
    if (!t.ok()) return c.Error(std::string(t.status().message()));
    if (t->numel() != 1) return c.Error("has a value that is not one element");
    value = *t;
  }
  const Operand& shape = c.input(0);
  if (shape.is_const()) {
    absl::StatusOr<std::vector<int64_t>> dims = c.ConstInts(0, "shape");
    if (!dims.ok()) return dims.status();
    int64_t numel = 1;
    for (const int64_t d : *dims) {
      if (d < 0 || (d > 0 && numel > kMaxFoldedElements / d)) {
        return c.Error("makes a constant of a negative or too large shape");
      }
      numel *= d;
    }
    return SetConst(c, 0, value.reshape({}).expand(*dims).clone());
  }
  if (shape.kind != Kind::kInts) return c.Error("has a shape that is not a list");
  const std::string dtype = DTypeName(value.is_floating_point() ? 1 : 7);
  c.SetTensor(0,
              absl::StrCat("torch.full(", shape.expr, ", ",
                           value.is_floating_point()
                               ? FloatLiteral(value.to(torch::kFloat64).item<double>())
                               : absl::StrCat(value.to(torch::kInt64).item<int64_t>()),
                           ", dtype=", dtype, ")"),
              shape.rank);
  return absl::OkStatus();
}

absl::Status Cast(NodeContext& c) {
  const int64_t to = c.Int("to", 0);
  const std::string dtype = DTypeName(to);
  if (dtype.empty()) return c.Error(absl::StrCat("casts to element type ", to));
  const Operand& x = c.input(0);
  if (x.is_const()) {
    const std::map<int64_t, torch::ScalarType> types = {
        {1, torch::kFloat32}, {11, torch::kFloat64}, {10, torch::kFloat16}, {7, torch::kInt64},
        {6, torch::kInt32},   {3, torch::kInt8},     {2, torch::kUInt8},    {9, torch::kBool}};
    return SetConst(c, 0, x.value.to(types.at(to)));
  }
  if (x.kind != Kind::kTensor) {
    // Shape integers stay integers; exporters cast them to int64, which they already are.
    if (to != 7 && to != 6) return c.Error("casts a shape to a non-integer type");
    c.SetOutput(0, x);
    return absl::OkStatus();
  }
  c.SetTensor(0, absl::StrCat(x.expr, ".to(", dtype, ")"), x.rank);
  return absl::OkStatus();
}

// Gather along `axis` with constant indices.
absl::Status Gather(NodeContext& c) {
  const Operand& data = c.input(0);
  absl::StatusOr<torch::Tensor> indices = c.ConstInput(1, "indices");
  if (!indices.ok()) return indices.status();
  if (indices->is_floating_point() || indices->dim() > 1) {
    return c.Error("has indices that are not an integer scalar or list");
  }
  const int64_t rank = data.tensor_rank();
  std::optional<int64_t> axis = NormalizeAxis(c.Int("axis", 0), rank);
  if (!axis) return c.Error("gathers along an axis out of range");
  std::vector<int64_t> idx;
  const torch::Tensor flat = indices->to(torch::kInt64).contiguous().reshape({-1});
  idx.assign(flat.data_ptr<int64_t>(), flat.data_ptr<int64_t>() + flat.numel());
  const bool scalar = indices->dim() == 0;
  if (data.is_const()) {
    const int64_t size = data.value.size(*axis);
    for (int64_t& i : idx) {
      if (i < -size || i >= size) return c.Error("gathers an index out of range");
      if (i < 0) i += size;
    }
    torch::Tensor out = data.value.index_select(*axis, torch::tensor(idx, torch::kInt64));
    return SetConst(c, 0, scalar ? out.squeeze(*axis) : out);
  }
  if (data.kind == Kind::kInts) {
    std::vector<std::string> items;
    for (const int64_t i : idx) items.push_back(absl::StrCat(data.expr, "[", i, "]"));
    if (scalar) {
      c.SetOutput(0, Operand::Int(items[0]));
    } else {
      c.SetOutput(0, Operand::Ints(absl::StrCat("[", absl::StrJoin(items, ", "), "]"),
                                   static_cast<int64_t>(items.size())));
    }
    return absl::OkStatus();
  }
  if (data.kind != Kind::kTensor) return c.Error("gathers from a shape integer");
  if (scalar) {
    c.SetTensor(0, absl::StrCat("torch.select(", data.expr, ", ", *axis, ", ", idx[0], ")"),
                rank - 1);
  } else {
    c.SetTensor(
        0, absl::StrCat("torch.index_select(", data.expr, ", ", *axis, ", ", c.TensorExpr(1), ")"),
        rank);
  }
  return absl::OkStatus();
}

// Axes of Unsqueeze/Squeeze: input 1 from opset 13.
absl::StatusOr<std::optional<std::vector<int64_t>>> AxesInput(NodeContext& c) {
  if (!c.has_input(1)) return c.Ints("axes");
  absl::StatusOr<std::vector<int64_t>> axes = c.ConstInts(1, "axes");
  if (!axes.ok()) return axes.status();
  return std::optional<std::vector<int64_t>>(*axes);
}

absl::Status Unsqueeze(NodeContext& c) {
  absl::StatusOr<std::optional<std::vector<int64_t>>> given = AxesInput(c);
  if (!given.ok()) return given.status();
  if (!*given) return c.Error("has no axes");
  const Operand& x = c.input(0);
  const int64_t out_rank = x.tensor_rank() + static_cast<int64_t>((*given)->size());
  std::vector<int64_t> axes;
  for (const int64_t a : **given) {
    std::optional<int64_t> n = NormalizeAxis(a, out_rank);
    if (!n) return c.Error(absl::StrCat("unsqueezes axis ", a, " out of range"));
    axes.push_back(*n);
  }
  if (out_rank > kMaxRank) return c.Error(absl::StrCat("makes a tensor of rank ", out_rank));
  std::sort(axes.begin(), axes.end());
  if (x.kind == Kind::kInt) {
    if (axes != std::vector<int64_t>{0}) return c.Error("unsqueezes a shape integer twice");
    c.SetOutput(0, Operand::Ints(absl::StrCat("[", x.expr, "]"), 1));
    return absl::OkStatus();
  }
  if (x.kind == Kind::kInts) return c.Error("unsqueezes a shape list");
  if (x.is_const()) {
    torch::Tensor v = x.value;
    for (const int64_t a : axes) v = v.unsqueeze(a);
    return SetConst(c, 0, v);
  }
  std::string expr = x.expr;
  for (const int64_t a : axes) expr = absl::StrCat("torch.unsqueeze(", expr, ", ", a, ")");
  c.SetTensor(0, expr, out_rank);
  return absl::OkStatus();
}

absl::Status Squeeze(NodeContext& c) {
  absl::StatusOr<std::optional<std::vector<int64_t>>> given = AxesInput(c);
  if (!given.ok()) return given.status();
  const Operand& x = c.input(0);
  const int64_t rank = x.tensor_rank();
  std::vector<int64_t> axes;
  for (const int64_t a : given->value_or(std::vector<int64_t>{})) {
    std::optional<int64_t> n = NormalizeAxis(a, rank);
    if (!n) return c.Error(absl::StrCat("squeezes axis ", a, " out of range"));
    axes.push_back(*n);
  }
  if (static_cast<int64_t>(axes.size()) > rank) return c.Error("squeezes more axes than it has");
  std::sort(axes.rbegin(), axes.rend());
  if (x.kind == Kind::kInts) {
    if (x.rank != 1) return c.Error("squeezes a shape list of more than one element");
    c.SetOutput(0, Operand::Int(absl::StrCat(x.expr, "[0]")));
    return absl::OkStatus();
  }
  if (x.kind == Kind::kInt) return c.Error("squeezes a shape integer");
  if (x.is_const()) {
    torch::Tensor v = x.value;
    if (axes.empty()) v = v.squeeze();
    for (const int64_t a : axes) v = v.squeeze(a);
    return SetConst(c, 0, v);
  }
  if (axes.empty()) {
    c.SetTensor(0, absl::StrCat("torch.squeeze(", x.expr, ")"), -1);
    return absl::OkStatus();
  }
  std::string expr = x.expr;
  for (const int64_t a : axes) expr = absl::StrCat("torch.squeeze(", expr, ", ", a, ")");
  c.SetTensor(0, expr, rank - static_cast<int64_t>(axes.size()));
  return absl::OkStatus();
}

absl::Status Concat(NodeContext& c) {
  const int n = c.node().input_size();
  for (int i = 0; i < n; ++i) {
    if (!c.has_input(i)) return c.Error(absl::StrCat("lacks input ", i));
  }
  bool all_const = true, shapes = false;
  int64_t rank = -1;
  for (int i = 0; i < n; ++i) {
    const Operand& v = c.input(i);
    all_const = all_const && v.is_const();
    shapes = shapes || v.kind == Kind::kInt || v.kind == Kind::kInts;
    rank = std::max(rank, v.tensor_rank());
  }
  std::optional<int64_t> axis = NormalizeAxis(c.Int("axis", 0), rank);
  if (!axis) return c.Error("concatenates along an axis out of range");
  if (all_const) {
    std::vector<torch::Tensor> parts;
    for (int i = 0; i < n; ++i) parts.push_back(c.input(i).value);
    return SetConst(c, 0, torch::cat(parts, *axis));
  }
  if (shapes) {
    std::vector<std::string> parts;
    int64_t length = 0;
    for (int i = 0; i < n; ++i) {
      const Operand& v = c.input(i);
      if (v.kind == Kind::kTensor || (v.is_const() && v.value.is_floating_point())) {
        return c.Error("concatenates a shape with a tensor");
      }
      parts.push_back(ListExpr(v));
      const int64_t len = v.kind == Kind::kInt ? 1 : v.is_const() ? v.value.numel() : v.rank;
      length = length < 0 || len < 0 ? -1 : length + len;
    }
    c.SetOutput(0, Operand::Ints(absl::StrJoin(parts, " + "), length));
    return absl::OkStatus();
  }
  std::vector<std::string> parts;
  for (int i = 0; i < n; ++i) parts.push_back(c.TensorExpr(i));
  c.SetTensor(0, absl::StrCat("torch.cat([", absl::StrJoin(parts, ", "), "], ", *axis, ")"), rank);
  return absl::OkStatus();
}

absl::Status Reshape(NodeContext& c) {
  const Operand& x = c.input(0);
  const Operand& shape = c.input(1);
  const bool allow_zero = c.Int("allowzero", 0) != 0;
  if (shape.kind == Kind::kInts) {
    if (x.kind != Kind::kTensor) return c.Error("reshapes a constant to a runtime shape");
    c.SetTensor(0, absl::StrCat("torch.reshape(", x.expr, ", ", shape.expr, ")"), shape.rank);
    return absl::OkStatus();
  }
  absl::StatusOr<std::vector<int64_t>> dims = c.ConstInts(1, "shape");
  if (!dims.ok()) return dims.status();
  const int64_t rank = static_cast<int64_t>(dims->size());
  if (x.is_const()) {
    std::vector<int64_t> resolved = *dims;
    for (int64_t i = 0; i < rank; ++i) {
      if (resolved[i] == 0 && !allow_zero) {
        if (i >= x.value.dim()) return c.Error("copies a dimension the input does not have");
        resolved[i] = x.value.size(i);
      }
    }
    return SetConst(c, 0, x.value.reshape(resolved));
  }
  if (x.kind != Kind::kTensor) return c.Error("reshapes a shape");
  std::vector<std::string> items;
  for (int64_t i = 0; i < rank; ++i) {
    const int64_t d = (*dims)[i];
    // 0 copies the input's dimension (unless allowzero).
    items.push_back(d == 0 && !allow_zero ? absl::StrCat(x.expr, ".size(", i, ")")
                                          : absl::StrCat(d));
  }
  c.SetTensor(0, absl::StrCat("torch.reshape(", x.expr, ", [", absl::StrJoin(items, ", "), "])"),
              rank);
  return absl::OkStatus();
}

absl::Status Flatten(NodeContext& c) {
  const Operand& x = c.input(0);
  std::optional<int64_t> axis = NormalizeAxis(c.Int("axis", 1), x.tensor_rank() + 1);
  if (!axis || *axis > x.tensor_rank()) return c.Error("flattens at an axis out of range");
  if (x.is_const()) {
    const int64_t outer =
        x.value.sizes().vec().empty()
            ? 1
            : c10::multiply_integers(x.value.sizes().begin(), x.value.sizes().begin() + *axis);
    return SetConst(c, 0, x.value.reshape({outer, -1}));
  }
  if (x.kind != Kind::kTensor) return c.Error("flattens a shape");
  std::string expr;
  if (*axis == 0) {
    expr = absl::StrCat("torch.reshape(", x.expr, ", [1, -1])");
  } else if (*axis == x.rank) {
    expr = absl::StrCat("torch.unsqueeze(torch.flatten(", x.expr, "), -1)");
  } else {
    expr = absl::StrCat("torch.flatten(", x.expr, ", ", *axis, ")");
    if (*axis > 1) expr = absl::StrCat("torch.flatten(", expr, ", 0, ", *axis - 1, ")");
  }
  c.SetTensor(0, expr, 2);
  return absl::OkStatus();
}

absl::Status Transpose(NodeContext& c) {
  const Operand& x = c.input(0);
  const int64_t rank = x.tensor_rank();
  std::vector<int64_t> perm;
  for (int64_t i = rank - 1; i >= 0; --i) perm.push_back(i);
  perm = c.Ints("perm").value_or(perm);
  std::vector<int64_t> sorted = perm;
  std::sort(sorted.begin(), sorted.end());
  for (int64_t i = 0; i < static_cast<int64_t>(sorted.size()); ++i) {
    if (sorted[i] != i || static_cast<int64_t>(perm.size()) != rank) {
      return c.Error("has a perm that is not a permutation of the input's dimensions");
    }
  }
  if (x.is_const()) return SetConst(c, 0, x.value.permute(perm));
  if (x.kind != Kind::kTensor) return c.Error("transposes a shape");
  c.SetTensor(0, absl::StrCat(x.expr, ".permute(", IntList(perm), ")"), rank);
  return absl::OkStatus();
}

absl::Status Split(NodeContext& c) {
  const Operand& x = c.input(0);
  std::optional<int64_t> axis = NormalizeAxis(c.Int("axis", 0), x.tensor_rank());
  if (!axis) return c.Error("splits along an axis out of range");
  std::optional<std::vector<int64_t>> sizes = c.Ints("split");
  if (c.has_input(1)) {
    absl::StatusOr<std::vector<int64_t>> given = c.ConstInts(1, "split");
    if (!given.ok()) return given.status();
    sizes = *given;
  }
  const int64_t outputs = c.node().output_size();
  if (sizes && static_cast<int64_t>(sizes->size()) != outputs) {
    return c.Error("has a split list whose length is not its number of outputs");
  }
  if (x.is_const()) {
    std::vector<torch::Tensor> parts =
        sizes ? x.value.split_with_sizes(*sizes, *axis) : x.value.chunk(outputs, *axis);
    if (static_cast<int64_t>(parts.size()) != outputs) return c.Error("splits unevenly");
    for (int64_t i = 0; i < outputs; ++i) {
      if (absl::Status s = SetConst(c, static_cast<int>(i), parts[i]); !s.ok()) return s;
    }
    return absl::OkStatus();
  }
  if (x.kind != Kind::kTensor) return c.Error("splits a shape");
  c.SetTensors(sizes ? absl::StrCat("torch.split(", x.expr, ", ", IntList(*sizes), ", ", *axis, ")")
                     : absl::StrCat("torch.chunk(", x.expr, ", ", outputs, ", ", *axis, ")"),
               x.rank);
  return absl::OkStatus();
}

// Slice's starts or ends, one TorchScript int each: constants, or a shape integer computed at run
// time (torch.chunk exports its split point as Shape arithmetic).
struct SliceBounds {
  std::vector<std::string> exprs;
  std::vector<int64_t> values;  // when constant
  bool runtime = false;
};

absl::StatusOr<SliceBounds> ReadSliceBounds(NodeContext& c, int i, const std::string& what) {
  const Operand& v = c.input(i);
  SliceBounds b;
  if (v.kind == Kind::kInt || (v.kind == Kind::kInts && v.rank == 1)) {
    b.exprs.push_back(v.kind == Kind::kInt ? v.expr : absl::StrCat(v.expr, "[0]"));
    b.runtime = true;
    return b;
  }
  absl::StatusOr<std::vector<int64_t>> values = c.ConstInts(i, what);
  if (!values.ok()) return values.status();
  b.values = *values;
  for (const int64_t value : b.values) b.exprs.push_back(absl::StrCat(value));
  return b;
}

absl::Status Slice(NodeContext& c) {
  const Operand& x = c.input(0);
  absl::StatusOr<SliceBounds> starts = ReadSliceBounds(c, 1, "starts");
  if (!starts.ok()) return starts.status();
  absl::StatusOr<SliceBounds> ends = ReadSliceBounds(c, 2, "ends");
  if (!ends.ok()) return ends.status();
  const size_t n = starts->exprs.size();
  std::vector<int64_t> axes(n), steps(n, 1);
  for (size_t i = 0; i < n; ++i) axes[i] = static_cast<int64_t>(i);
  if (c.has_input(3)) {
    absl::StatusOr<std::vector<int64_t>> given = c.ConstInts(3, "axes");
    if (!given.ok()) return given.status();
    axes = *given;
  }
  if (c.has_input(4)) {
    absl::StatusOr<std::vector<int64_t>> given = c.ConstInts(4, "steps");
    if (!given.ok()) return given.status();
    steps = *given;
  }
  if (ends->exprs.size() != n || axes.size() != n || steps.size() != n) {
    return c.Error("has starts, ends, axes and steps of different lengths");
  }
  const int64_t rank = x.kind == Kind::kInts ? 1 : x.tensor_rank();
  if (static_cast<int64_t>(n) > rank) return c.Error("slices more axes than the input has");
  for (size_t i = 0; i < n; ++i) {
    std::optional<int64_t> a = NormalizeAxis(axes[i], rank);
    if (!a) return c.Error("slices an axis out of range");
    if (steps[i] < 1) return c.Error("slices with a step below 1");
    axes[i] = *a;
  }
  if (x.kind == Kind::kInts) {
    if (n != 1 || steps[0] != 1) return c.Error("slices a shape with steps");
    c.SetOutput(0, Operand::Ints(
                       absl::StrCat(x.expr, "[", starts->exprs[0], ":", ends->exprs[0], "]"), -1));
    return absl::OkStatus();
  }
  if (x.kind == Kind::kInt) return c.Error("slices a shape integer");
  if (x.is_const()) {
    if (starts->runtime || ends->runtime) return c.Error("slices a constant at run-time bounds");
    torch::Tensor v = x.value;
    for (size_t i = 0; i < n; ++i) {
      v = v.slice(axes[i], starts->values[i], ends->values[i], steps[i]);
    }
    return SetConst(c, 0, v);
  }
  std::string expr = x.expr;
  for (size_t i = 0; i < n; ++i) {
    expr = absl::StrCat("torch.slice(", expr, ", ", axes[i], ", ", starts->exprs[i], ", ",
                        ends->exprs[i], ", ", steps[i], ")");
  }
  c.SetTensor(0, expr, rank);
  return absl::OkStatus();
}

absl::Status Pad(NodeContext& c) {
  const std::string mode = c.String("mode", "constant");
  absl::StatusOr<std::vector<int64_t>> pads = c.ConstInts(1, "pads");
  if (!pads.ok()) return pads.status();
  const int64_t rank = c.input(0).rank;
  std::vector<int64_t> axes;
  if (c.has_input(3)) {
    absl::StatusOr<std::vector<int64_t>> given = c.ConstInts(3, "axes");
    if (!given.ok()) return given.status();
    axes = *given;
  } else {
    for (int64_t d = 0; d < rank; ++d) axes.push_back(d);
  }
  const size_t n = axes.size();
  if (pads->size() != 2 * n) return c.Error("has pads that do not match its axes");
  // ATen lists pads from the last dimension on, up to the first padded one.
  std::vector<int64_t> begin(static_cast<size_t>(std::max<int64_t>(rank, 0)), 0), end = begin;
  for (size_t i = 0; i < n; ++i) {
    std::optional<int64_t> a = NormalizeAxis(axes[i], rank);
    if (!a) return c.Error("pads an axis out of range");
    begin[*a] = (*pads)[i];
    end[*a] = (*pads)[n + i];
  }
  int64_t first = 0;
  while (first < rank && begin[first] == 0 && end[first] == 0) ++first;
  std::vector<int64_t> torch_pads;
  for (int64_t d = rank - 1; d >= first; --d)
    torch_pads.insert(torch_pads.end(), {begin[d], end[d]});
  const std::string x = c.TensorExpr(0);
  if (mode == "constant") {
    std::string value = "0.0";
    if (c.has_input(2)) {
      absl::StatusOr<torch::Tensor> v = c.ConstInput(2, "constant_value");
      if (!v.ok()) return v.status();
      value = FloatLiteral(v->to(torch::kFloat64).reshape({-1})[0].item<double>());
    }
    c.SetTensor(
        0, absl::StrCat("torch.constant_pad_nd(", x, ", ", IntList(torch_pads), ", ", value, ")"),
        rank);
    return absl::OkStatus();
  }
  if ((mode != "reflect" && mode != "edge") || rank != 4 || first < 2) {
    return c.Error(absl::StrCat("pads in mode '", mode,
                                "' other than over the two spatial dimensions of an image"));
  }
  c.SetTensor(0,
              absl::StrCat("torch.", mode == "reflect" ? "reflection" : "replication", "_pad2d(", x,
                           ", ", IntList(torch_pads), ")"),
              rank);
  return absl::OkStatus();
}

// Resize of an image batch by constant scales or sizes, nearest or (bi)linear.
absl::Status Resize(NodeContext& c) {
  const Operand& x = c.input(0);
  if (x.rank != 4) return c.Error("resizes a tensor that is not [N, C, H, W]");
  const std::string mode = c.String("mode", "nearest");
  const std::string coords = c.String("coordinate_transformation_mode", "half_pixel");
  std::string output_size = "None", scale_factors = "None";
  if (c.has_input(3)) {
    absl::StatusOr<std::vector<int64_t>> sizes = c.ConstInts(3, "sizes");
    if (!sizes.ok()) return sizes.status();
    if (sizes->size() != 4) return c.Error("has sizes that are not [N, C, H, W]");
    output_size = IntList({(*sizes)[2], (*sizes)[3]});
  } else {
    absl::StatusOr<torch::Tensor> scales = c.ConstInput(2, "scales");
    if (!scales.ok()) return scales.status();
    if (scales->numel() != 4) return c.Error("has scales that are not [N, C, H, W]");
    const torch::Tensor s = scales->to(torch::kFloat64).contiguous();
    const double* v = s.data_ptr<double>();
    if (v[0] != 1.0 || v[1] != 1.0) return c.Error("scales the batch or channel dimension");
    scale_factors = absl::StrCat("[", FloatLiteral(v[2]), ", ", FloatLiteral(v[3]), "]");
  }
  std::string call;
  if (mode == "nearest" && coords == "asymmetric" &&
      c.String("nearest_mode", "round_prefer_floor") == "floor") {
    call = absl::StrCat("torch.upsample_nearest2d(", x.expr, ", ", output_size, ", ", scale_factors,
                        ")");
  } else if (mode == "linear" && (coords == "half_pixel" || coords == "pytorch_half_pixel" ||
                                  coords == "align_corners")) {
    call = absl::StrCat("torch.upsample_bilinear2d(", x.expr, ", ", output_size, ", ",
                        coords == "align_corners" ? "True" : "False", ", ", scale_factors, ")");
  } else {
    return c.Error(absl::StrCat("resizes in mode '", mode, "' with coordinates '", coords,
                                "', which the importer does not map to ATen"));
  }
  c.SetTensor(0, call, 4);
  return absl::OkStatus();
}

}  // namespace

void AddShapeOps(std::map<std::string, OpHandler>& ops) {
  ops["Constant"] = {&Constant, 0};
  ops["Shape"] = {&Shape, 1};
  ops["ConstantOfShape"] = {&ConstantOfShape, 1};
  ops["Cast"] = {&Cast, 1};
  ops["Gather"] = {&Gather, 2};
  ops["Unsqueeze"] = {&Unsqueeze, 1};
  ops["Squeeze"] = {&Squeeze, 1};
  ops["Concat"] = {&Concat, 1};
  ops["Reshape"] = {&Reshape, 2};
  ops["Flatten"] = {&Flatten, 1};
  ops["Transpose"] = {&Transpose, 1};
  ops["Split"] = {&Split, 1};
  ops["Slice"] = {&Slice, 3};
  ops["Pad"] = {&Pad, 2};
  ops["Resize"] = {&Resize, 1};
}

}  // namespace qnet::engine::onnx_import
