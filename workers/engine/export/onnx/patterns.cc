#include "workers/engine/export/onnx/patterns.h"

#include <algorithm>
#include <cmath>
#include <memory>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace qnet::engine::onnx {

absl::StatusOr<std::optional<QuantInfo>> LayerQuantInfo(
    const c10::intrusive_ptr<c10::ivalue::Object>& layer, const std::string& path) {
  if (!layer->type()->hasAttribute("qnet_alpha") || !layer->type()->hasAttribute("qnet_levels")) {
    return std::nullopt;
  }
  absl::StatusOr<double> alpha = ToDouble(layer->getAttr("qnet_alpha"), "qnet_alpha");
  absl::StatusOr<std::vector<double>> levels =
      ToDoubles(layer->getAttr("qnet_levels"), "qnet_levels");
  if (!alpha.ok() || !levels.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("layer ", path, ": bad qnet_alpha/qnet_levels: ",
                     (alpha.ok() ? levels.status() : alpha.status()).message()));
  }
  return QuantInfo{*alpha, *std::move(levels)};
}

bool KeepsWeightQuantization(const std::string& kind) {
  static const auto* kinds = new std::vector<std::string>{
      "aten::t",         "aten::transpose", "aten::permute", "aten::contiguous",
      "aten::reshape",   "aten::view",      "aten::flatten", "aten::squeeze",
      "aten::unsqueeze", "aten::clone",     "aten::detach",  "aten::to"};
  return std::find(kinds->begin(), kinds->end(), kind) != kinds->end();
}

namespace {

// The integer codes k_j with level j = alpha * d * k_j (d a common step, k_j = level_j / d times
// the sign of alpha, so the scale |alpha| * d is positive), when such a step exists with every
// code in [-128, 127].
struct LinearCodes {
  double step = 0;
  std::vector<int64_t> codes;
};

std::optional<LinearCodes> FindLinearCodes(const std::vector<double>& levels, double alpha) {
  double min_gap = 0;
  for (size_t i = 1; i < levels.size(); ++i) {
    const double gap = levels[i] - levels[i - 1];
    if (gap > 0 && (min_gap == 0 || gap < min_gap)) min_gap = gap;
  }
  std::vector<double> candidates = {1.0};
  for (double l : levels) {
    if (l != 0) candidates.push_back(std::abs(l));
  }
  if (min_gap > 0) candidates.push_back(min_gap);
  const double sign = alpha < 0 ? -1.0 : 1.0;
  for (double d : candidates) {
    LinearCodes lin{d, {}};
    for (double l : levels) {
      const double c = sign * l / d;
      if (std::abs(c - std::round(c)) > 1e-6 || std::round(c) < -128 || std::round(c) > 127) break;
      lin.codes.push_back(static_cast<int64_t>(std::round(c)));
    }
    if (lin.codes.size() == levels.size()) return lin;
  }
  return std::nullopt;
}

// Whether DequantizeLinear of every code (float32 code * float32 scale, as ONNX defines it)
// gives exactly the float32 value in `values`.
bool DequantizesExactly(const LinearCodes& lin, double scale, const at::Tensor& values) {
  const at::Tensor codes = at::tensor(lin.codes, at::TensorOptions().dtype(at::kLong));
  const at::Tensor scale_f = at::scalar_tensor(scale, at::TensorOptions().dtype(at::kFloat));
  return at::equal(codes.to(at::kFloat) * scale_f, values.to(at::kFloat));
}

bool FitsInt4(const std::vector<int64_t>& codes) {
  return std::all_of(codes.begin(), codes.end(), [](int64_t c) { return c >= -8 && c <= 7; });
}

// A codes initializer: INT4/UINT4 when every code fits, else INT8/UINT8.
absl::StatusOr<std::string> CodesInitializer(Emitter& e, const at::Tensor& codes, bool is_signed,
                                             bool four_bits, const std::string& hint) {
  if (four_bits) return e.Int4Initializer(codes, is_signed, hint);
  return e.Initializer(codes.to(is_signed ? at::kChar : at::kByte), hint);
}

// A zero point of the codes' type.
absl::StatusOr<std::string> ZeroPoint(Emitter& e, bool is_signed, bool four_bits,
                                      const std::string& hint) {
  const at::Tensor zero = at::zeros({}, at::TensorOptions().dtype(at::kLong));
  return CodesInitializer(e, zero, is_signed, four_bits, hint);
}

}  // namespace

// The codes of each element: its level's linear code under one scale when that reproduces the
// weight exactly (DequantizeLinear), else its level index into a table of the weight's own values
// (Cast and Gather). INT4/UINT4 codes wherever they fit 4 bits, and always for level sets of at
// most 16 levels, so the file's size follows the bit width (docs/METHOD.md, "Artifacts").
absl::StatusOr<std::optional<std::string>> QuantizedWeight(Emitter& e, const at::Tensor& w,
                                                           const QuantInfo& q,
                                                           const std::string& hint) {
  if (w.scalar_type() != at::kFloat || q.levels.empty() || q.levels.size() > 256 || q.alpha == 0 ||
      !std::isfinite(q.alpha)) {
    return std::nullopt;
  }
  std::vector<double> levels = q.levels;
  std::sort(levels.begin(), levels.end());
  levels.erase(std::unique(levels.begin(), levels.end()), levels.end());
  const int64_t num_levels = static_cast<int64_t>(levels.size());
  // Each element's nearest level, and the value the weight holds for each level (alpha * q_j
  // as the engine computed it; the formula only for levels no element uses). Every element must
  // hold exactly its level's value, or the layer is written as float.
  const at::Tensor flat = w.detach().to(at::kCPU).reshape({-1});
  const at::Tensor level_t = at::tensor(levels, at::TensorOptions().dtype(at::kDouble));
  const at::Tensor scaled = flat.to(at::kDouble) / q.alpha;
  const at::Tensor mids = (level_t.slice(0, 1) + level_t.slice(0, 0, num_levels - 1)) / 2;
  const at::Tensor idx = at::searchsorted(mids, scaled).clamp(0, num_levels - 1);
  at::Tensor table = (level_t * q.alpha).to(at::kFloat);
  table.index_put_({idx}, flat);
  if (!at::equal(table.index_select(0, idx), flat)) return std::nullopt;

  const std::vector<int64_t> shape(w.sizes().begin(), w.sizes().end());
  const std::optional<LinearCodes> lin = FindLinearCodes(levels, q.alpha);
  const double scale = lin ? std::abs(q.alpha) * lin->step : 0;
  const bool small_set = num_levels <= 16;
  if (lin && DequantizesExactly(*lin, scale, table) && (FitsInt4(lin->codes) || !small_set)) {
    const bool four_bits = FitsInt4(lin->codes);
    const at::Tensor codes =
        at::tensor(lin->codes, at::TensorOptions().dtype(at::kLong)).index_select(0, idx);
    QNET_ONNX_ASSIGN_OR_RETURN(
        std::string c, CodesInitializer(e, codes.reshape(shape), true, four_bits, hint + "_codes"));
    QNET_ONNX_ASSIGN_OR_RETURN(
        std::string scale_c,
        e.Initializer(at::scalar_tensor(scale, at::TensorOptions().dtype(at::kFloat)),
                      hint + "_scale"));
    QNET_ONNX_ASSIGN_OR_RETURN(std::string zp, ZeroPoint(e, true, four_bits, hint + "_zero_point"));
    const std::string out = e.Fresh(hint + "_dequantized");
    e.Emit("DequantizeLinear", {c, scale_c, zp}, {out});
    return out;
  }
  QNET_ONNX_ASSIGN_OR_RETURN(
      std::string c, CodesInitializer(e, idx.reshape(shape), false, small_set, hint + "_codes"));
  QNET_ONNX_ASSIGN_OR_RETURN(std::string values, e.Initializer(table, hint + "_levels"));
  const std::string index = e.Fresh(hint + "_index");
  SetInt(e.Emit("Cast", {c}, {index}), "to", pb::TensorProto::INT64);
  const std::string out = e.Fresh(hint + "_dequantized");
  SetInt(e.Emit("Gather", {values, index}, {out}), "axis", 0);
  return out;
}

bool IsActivationQuantizer(const c10::ClassTypePtr& type) {
  return type->name() &&
         absl::StrContains(type->name()->qualifiedName(), "QnetActivationQuantizer");
}

namespace {

// The quantizer's parameters, read from the module's attributes.
struct StepQuantizer {
  double alpha = 0, beta = 0;
  std::vector<double> levels;      // q_0..q_n
  std::vector<double> thresholds;  // b_1..b_n
};

absl::StatusOr<StepQuantizer> ReadStepQuantizer(const c10::intrusive_ptr<c10::ivalue::Object>& obj,
                                                const std::string& where) {
  auto attr = [&](const std::string& name) -> absl::StatusOr<c10::IValue> {
    if (!obj->type()->hasAttribute(name)) {
      return absl::InvalidArgumentError(absl::StrCat(where, " has no attribute '", name, "'"));
    }
    return obj->getAttr(name);
  };
  QNET_ONNX_ASSIGN_OR_RETURN(c10::IValue alpha_v, attr("alpha"));
  QNET_ONNX_ASSIGN_OR_RETURN(c10::IValue beta_v, attr("beta"));
  QNET_ONNX_ASSIGN_OR_RETURN(c10::IValue levels_v, attr("levels"));
  QNET_ONNX_ASSIGN_OR_RETURN(c10::IValue thresholds_v, attr("thresholds"));
  StepQuantizer sq;
  QNET_ONNX_ASSIGN_OR_RETURN(sq.alpha, ToDouble(alpha_v, where + " alpha"));
  QNET_ONNX_ASSIGN_OR_RETURN(sq.beta, ToDouble(beta_v, where + " beta"));
  QNET_ONNX_ASSIGN_OR_RETURN(sq.levels, ToDoubles(levels_v, where + " levels"));
  QNET_ONNX_ASSIGN_OR_RETURN(sq.thresholds, ToDoubles(thresholds_v, where + " thresholds"));
  const size_t n = sq.thresholds.size();
  if (sq.levels.size() != n + 1 || n == 0) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": ", sq.levels.size(), " levels and ", n,
                                                   " thresholds (need n+1 and n, n >= 1)"));
  }
  for (double v : sq.levels) {
    if (!std::isfinite(v)) return absl::InvalidArgumentError(where + ": non-finite level");
  }
  if (!std::isfinite(sq.alpha) || !std::isfinite(sq.beta)) {
    return absl::InvalidArgumentError(where + ": non-finite alpha or beta");
  }
  return sq;
}

// Whether `y` (the module's own output on `x`) is the hard quantizer of `x`. Elements sitting
// exactly on a threshold may round either way; nothing else may differ.
bool ComputesStepQuantizer(const StepQuantizer& sq, const at::Tensor& x, const at::Tensor& y) {
  const std::vector<double>& q = sq.levels;
  at::Tensor sum = at::zeros_like(x, at::TensorOptions().dtype(at::kDouble)) + q[0];
  const at::Tensor bx = x * sq.beta;
  for (size_t i = 0; i < sq.thresholds.size(); ++i) {
    sum = sum + (q[i + 1] - q[i]) * (bx >= sq.thresholds[i]).to(at::kDouble);
  }
  const at::Tensor expected = (sum * sq.alpha).to(x.scalar_type());
  double range = 0;
  for (double v : q) range = std::max(range, std::abs(v));
  const at::Tensor off = (y - expected).abs() > 1e-4 * (std::abs(sq.alpha) * range + 1e-6);
  return off.to(at::kDouble).mean().item<double>() <= 1e-3;
}

// The module's own output for each level j (what model.pt computes there), read off probe inputs
// whose beta*x lies inside level j's interval; alpha * q_j for a level no probe reaches (its
// interval is empty).
at::Tensor LevelValues(torch::jit::Method& forward, const StepQuantizer& sq) {
  const std::vector<double>& b = sq.thresholds;
  const size_t n = b.size();
  std::vector<double> probes;
  for (size_t j = 0; j <= n; ++j) {
    const double t = j == 0   ? b[0] - 1 - std::abs(b[0])
                     : j == n ? b[n - 1] + 1 + std::abs(b[n - 1])
                              : (b[j - 1] + b[j]) / 2;
    probes.push_back(t / sq.beta);
  }
  const auto f32 = at::TensorOptions().dtype(at::kFloat);
  const at::Tensor x = at::tensor(probes, at::TensorOptions().dtype(at::kDouble)).to(at::kFloat);
  const at::Tensor y = forward({x}).toTensor().to(at::kFloat);
  // The level each probe reached, counted as the hard quantizer counts.
  const at::Tensor bx = at::scalar_tensor(sq.beta, f32) * x;
  const at::Tensor reached = at::ge(bx.unsqueeze(1), at::tensor(b, f32).unsqueeze(0)).sum(1);
  at::Tensor table =
      (at::tensor(sq.levels, at::TensorOptions().dtype(at::kDouble)) * sq.alpha).to(at::kFloat);
  table.index_put_({reached}, y);
  return table;
}

// The activation codes sign(alpha) * q_j / d of uniform levels q_j = q_0 + j*d whose q_0 / d is an
// integer, when they fit UINT8 (`is_signed` false) or INT8.
struct ActivationCodes {
  double step = 0;
  LinearCodes codes;
  bool is_signed = false;
};

std::optional<ActivationCodes> UniformActivationCodes(const StepQuantizer& sq) {
  const std::vector<double>& q = sq.levels;
  const double d = q[1] - q[0];
  if (!(d > 0)) return std::nullopt;
  const double k0 = q[0] / d;
  if (std::abs(k0 - std::round(k0)) > 1e-6) return std::nullopt;
  ActivationCodes out{d, {d, {}}, false};
  const int64_t sign = sq.alpha < 0 ? -1 : 1;
  for (size_t j = 0; j < q.size(); ++j) {
    if (std::abs(q[j] - (q[0] + d * static_cast<double>(j))) > 1e-6 * d) return std::nullopt;
    out.codes.codes.push_back(sign *
                              (static_cast<int64_t>(std::round(k0)) + static_cast<int64_t>(j)));
  }
  const auto [lo, hi] = std::minmax_element(out.codes.codes.begin(), out.codes.codes.end());
  if (*lo >= 0 && *hi <= 255) return out;
  if (*lo >= -128 && *hi <= 127) {
    out.is_signed = true;
    return out;
  }
  return std::nullopt;
}

bool MidpointThresholds(const StepQuantizer& sq) {
  for (size_t i = 0; i < sq.thresholds.size(); ++i) {
    const double mid = (sq.levels[i] + sq.levels[i + 1]) / 2;
    if (std::abs(sq.thresholds[i] - mid) > 1e-5 * (sq.levels[i + 1] - sq.levels[i])) return false;
  }
  return true;
}

// out = DequantizeLinear(QuantizeLinear(in, scale, 0), scale, 0), codes UINT8 or INT8.
absl::Status EmitQdq(Emitter& e, const std::string& in, double scale, bool is_signed,
                     const std::string& out) {
  QNET_ONNX_ASSIGN_OR_RETURN(std::string scale_c, e.Scalar(scale, at::kFloat));
  QNET_ONNX_ASSIGN_OR_RETURN(std::string zp_c, e.Scalar(0, is_signed ? at::kChar : at::kByte));
  const std::string codes = e.Fresh(absl::StrCat(out, "_codes"));
  e.Emit("QuantizeLinear", {in, scale_c, zp_c}, {codes});
  e.Emit("DequantizeLinear", {codes, scale_c, zp_c}, {out});
  return absl::OkStatus();
}

// The level index j = #{i : b_i <= beta*x} as a float tensor, compared as model.pt compares.
absl::StatusOr<std::string> EmitLevelIndex(Emitter& e, const StepQuantizer& sq,
                                           const std::string& x) {
  QNET_ONNX_ASSIGN_OR_RETURN(std::string beta_c, e.Scalar(sq.beta, at::kFloat));
  const std::string bx = e.Fresh("scaled");
  e.Emit("Mul", {x, beta_c}, {bx});
  QNET_ONNX_ASSIGN_OR_RETURN(
      std::string thresholds_c,
      e.Initializer(
          at::tensor(sq.thresholds, at::TensorOptions().dtype(at::kDouble)).to(at::kFloat),
          "thresholds"));
  QNET_ONNX_ASSIGN_OR_RETURN(std::string last_axis, e.Int64s({-1}));
  const std::string column = e.Fresh("scaled"), ge = e.Fresh("ge"), steps = e.Fresh("steps"),
                    index = e.Fresh("level_index");
  e.Emit("Unsqueeze", {bx, last_axis}, {column});
  e.Emit("GreaterOrEqual", {column, thresholds_c}, {ge});
  SetInt(e.Emit("Cast", {ge}, {steps}), "to", pb::TensorProto::FLOAT);
  SetInt(e.Emit("ReduceSum", {steps, last_axis}, {index}), "keepdims", 0);
  return index;
}

// Writes the hard quantizer of x as `out` (docs/METHOD.md, "Artifacts"; every form is an 8-bit
// QuantizeLinear/DequantizeLinear pair):
//  - uniform levels, midpoint thresholds, alpha > 0: beta*x clipped to the level range and
//    quantized at the level step d, dequantized at the learned scale alpha*d (rounding: a value
//    exactly on a threshold goes to the even code, where model.pt goes up);
//  - uniform levels, other thresholds: the exact level index j from comparisons, then
//    alpha*d*(k_0 + j) through a lossless QDQ of scale |alpha|*d;
//  - any other level set, or one whose DequantizeLinear values would differ from model.pt's: the
//    exact index j through a lossless QDQ of scale 1, then Gather from model.pt's own level values.
absl::Status EmitActivationQuantizer(Emitter& e, const StepQuantizer& sq, const at::Tensor& table,
                                     const std::string& x, const std::string& out) {
  const std::optional<ActivationCodes> uniform = UniformActivationCodes(sq);
  const double scale = uniform ? std::abs(sq.alpha) * uniform->step : 0;
  const bool linear = uniform && DequantizesExactly(uniform->codes, scale, table);
  if (linear && sq.alpha > 0 && MidpointThresholds(sq)) {
    // Rounding beta*x (the very float model.pt compares) at the level step: for integer levels
    // (d = 1) the same level except exactly on a threshold. The codes are k_0 + j.
    QNET_ONNX_ASSIGN_OR_RETURN(std::string beta_c, e.Scalar(sq.beta, at::kFloat));
    QNET_ONNX_ASSIGN_OR_RETURN(std::string lo_c, e.Scalar(sq.levels.front(), at::kFloat));
    QNET_ONNX_ASSIGN_OR_RETURN(std::string hi_c, e.Scalar(sq.levels.back(), at::kFloat));
    QNET_ONNX_ASSIGN_OR_RETURN(std::string step_c, e.Scalar(uniform->step, at::kFloat));
    QNET_ONNX_ASSIGN_OR_RETURN(std::string scale_c, e.Scalar(scale, at::kFloat));
    QNET_ONNX_ASSIGN_OR_RETURN(std::string zp_c,
                               e.Scalar(0, uniform->is_signed ? at::kChar : at::kByte));
    const std::string bx = e.Fresh("scaled"), clipped = e.Fresh("clipped"),
                      codes = e.Fresh(absl::StrCat(out, "_codes"));
    e.Emit("Mul", {x, beta_c}, {bx});
    e.Emit("Clip", {bx, lo_c, hi_c}, {clipped});
    e.Emit("QuantizeLinear", {clipped, step_c, zp_c}, {codes});
    e.Emit("DequantizeLinear", {codes, scale_c, zp_c}, {out});
    return absl::OkStatus();
  }
  QNET_ONNX_ASSIGN_OR_RETURN(std::string index, EmitLevelIndex(e, sq, x));
  if (linear) {
    std::string code = index;
    const double k0 = std::round(sq.levels.front() / uniform->step);
    if (k0 != 0) {
      QNET_ONNX_ASSIGN_OR_RETURN(std::string k0_c, e.Scalar(k0, at::kFloat));
      code = e.Fresh("level_code");
      e.Emit("Add", {index, k0_c}, {code});
    }
    QNET_ONNX_ASSIGN_OR_RETURN(std::string step_c, e.Scalar(sq.alpha * uniform->step, at::kFloat));
    const std::string value = e.Fresh("level_value");
    e.Emit("Mul", {code, step_c}, {value});
    return EmitQdq(e, value, scale, uniform->is_signed, out);
  }
  const std::string index_q = e.Fresh("level_index");
  QNET_ONNX_RETURN_IF_ERROR(EmitQdq(e, index, 1.0, false, index_q));
  QNET_ONNX_ASSIGN_OR_RETURN(std::string table_c, e.Initializer(table, "level_values"));
  const std::string index_i = e.Fresh("level_index");
  SetInt(e.Emit("Cast", {index_q}, {index_i}), "to", pb::TensorProto::INT64);
  SetInt(e.Emit("Gather", {table_c, index_i}, {out}), "axis", 0);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<SlotPtr> ActivationQuantizer(Emitter& e, const std::vector<SlotPtr>& call_inputs) {
  const SlotPtr& self = call_inputs[0];
  const c10::intrusive_ptr<c10::ivalue::Object> obj = self->a.toObject();
  const std::string where = absl::StrCat("activation quantizer ", self->path);
  if (call_inputs.size() != 2 || !call_inputs[1]->tensor) {
    return absl::InvalidArgumentError(where + ": expected one tensor input from the model input");
  }
  const SlotPtr& x = call_inputs[1];
  if (obj->type()->hasAttribute("enabled") && obj->getAttr("enabled").isBool() &&
      !obj->getAttr("enabled").toBool()) {
    return x;  // a disabled quantizer passes its input through
  }
  if (obj->type()->hasAttribute("hard") && obj->getAttr("hard").isBool() &&
      !obj->getAttr("hard").toBool()) {
    return absl::InvalidArgumentError(where + " is in soft mode; export the hard model");
  }
  QNET_ONNX_ASSIGN_OR_RETURN(const StepQuantizer sq, ReadStepQuantizer(obj, where));
  if (sq.beta == 0 || sq.alpha == 0) {
    return NotSupported(absl::StrCat(where, " with alpha or beta 0 (a constant output)"));
  }
  if (TensorA(x).scalar_type() != at::kFloat) {
    return NotSupported(absl::StrCat(where, " on ", c10::toString(TensorA(x).scalar_type()),
                                     " activations (float32 only)"));
  }

  // Run the module itself (that is what the TorchScript artifact computes) and compare.
  torch::jit::Method forward = torch::jit::Object(obj).get_method("forward");
  auto y = std::make_shared<Slot>();
  y->tensor = true;
  y->a = forward({x->a});
  y->b = forward({x->b});
  if (!y->a.isTensor() || !y->b.isTensor()) {
    return absl::InvalidArgumentError(where + " does not return a tensor");
  }
  if (!ComputesStepQuantizer(sq, TensorA(x), TensorA(y))) {
    return NotSupported(
        absl::StrCat(where,
                     ": its forward does not compute the hard QN quantizer alpha*(q_0 + sum_i "
                     "s_i*H(beta*x - b_i)) from its attributes"));
  }
  y->name = e.Fresh(self->path.empty() ? "act_quant" : self->path);
  QNET_ONNX_RETURN_IF_ERROR(
      EmitActivationQuantizer(e, sq, LevelValues(forward, sq), x->name, y->name));
  return y;
}

}  // namespace qnet::engine::onnx
