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

// The codes c satisfy weight = scale * c: the level values themselves when they are integers (all
// built-in level sets), else multiples of a common step; other level sets store level indices.
absl::StatusOr<std::optional<std::string>> QuantizedWeight(Emitter& e, const at::Tensor& w,
                                                           const QuantInfo& q,
                                                           const std::string& hint) {
  if (w.scalar_type() != at::kFloat || q.levels.empty() || q.alpha == 0 ||
      !std::isfinite(q.alpha)) {
    return std::nullopt;
  }
  std::vector<double> levels = q.levels;
  std::sort(levels.begin(), levels.end());
  double min_gap = 0;
  for (size_t i = 1; i < levels.size(); ++i) {
    const double gap = levels[i] - levels[i - 1];
    if (gap > 0 && (min_gap == 0 || gap < min_gap)) min_gap = gap;
  }
  const double abs_alpha = std::abs(q.alpha);
  const double sign = q.alpha < 0 ? -1.0 : 1.0;
  // Nearest level per element, and a check that the weight is that level (to float precision).
  const at::Tensor table = at::tensor(levels, at::TensorOptions().dtype(at::kDouble));
  const at::Tensor scaled = w.detach().to(at::kCPU, at::kDouble).reshape({-1}) / q.alpha;
  const int64_t num_levels = static_cast<int64_t>(levels.size());
  const at::Tensor mids = (table.slice(0, 1) + table.slice(0, 0, num_levels - 1)) / 2;
  const at::Tensor idx = at::searchsorted(mids, scaled).clamp(0, num_levels - 1);
  const at::Tensor nearest = table.index_select(0, idx);
  const double tolerance = levels.size() > 1 ? 1e-3 * min_gap : 1e-3 * std::abs(levels[0]) + 1e-6;
  if (((scaled - nearest).abs() > tolerance).any().item<bool>()) return std::nullopt;

  // A step d with every level an integer multiple of d that fits INT8.
  std::optional<double> step;
  std::vector<double> candidates = {1.0};
  for (double l : levels) {
    if (l != 0) candidates.push_back(std::abs(l));
  }
  if (min_gap > 0) candidates.push_back(min_gap);
  for (double d : candidates) {
    const bool fits = std::all_of(levels.begin(), levels.end(), [&](double l) {
      const double c = sign * l / d;
      return std::abs(c - std::round(c)) <= 1e-6 && std::round(c) >= -128 && std::round(c) <= 127;
    });
    if (fits) {
      step = d;
      break;
    }
  }
  const std::vector<int64_t> shape(w.sizes().begin(), w.sizes().end());
  if (step) {
    const at::Tensor codes = (sign * nearest / *step).round().to(at::kChar).reshape(shape);
    QNET_ONNX_ASSIGN_OR_RETURN(std::string c, e.Initializer(codes, hint + "_codes"));
    QNET_ONNX_ASSIGN_OR_RETURN(
        std::string scale,
        e.Initializer(at::scalar_tensor(abs_alpha * *step, at::TensorOptions().dtype(at::kFloat)),
                      hint + "_scale"));
    QNET_ONNX_ASSIGN_OR_RETURN(
        std::string zp,
        e.Initializer(at::zeros({}, at::TensorOptions().dtype(at::kChar)), hint + "_zero_point"));
    const std::string out = e.Fresh(hint + "_dequantized");
    e.Emit("DequantizeLinear", {c, scale, zp}, {out});
    return out;
  }
  if (levels.size() > 128) return std::nullopt;
  const at::Tensor codes = idx.to(at::kChar).reshape(shape);
  QNET_ONNX_ASSIGN_OR_RETURN(std::string c, e.Initializer(codes, hint + "_codes"));
  QNET_ONNX_ASSIGN_OR_RETURN(std::string values,
                             e.Initializer((table * q.alpha).to(at::kFloat), hint + "_levels"));
  const std::string index = e.Fresh(hint + "_index");
  SetInt(e.Emit("Cast", {c}, {index}), "to", pb::TensorProto::INT32);
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

// The ONNX integer type for codes lo..hi of a uniform quantizer, when there is one: levels
// q_j = q_0 + j*d with midpoint thresholds and q_0/d an integer make the quantizer
// round(beta*x / d) clipped to the level range.
std::optional<at::ScalarType> UniformCodeType(const StepQuantizer& sq) {
  const std::vector<double>& q = sq.levels;
  const std::vector<double>& b = sq.thresholds;
  const size_t n = b.size();
  const double d = q[1] - q[0];
  bool uniform = d > 0 && sq.beta > 0 && sq.alpha != 0;
  for (size_t j = 0; uniform && j <= n; ++j) {
    uniform = std::abs(q[j] - (q[0] + d * static_cast<double>(j))) <= 1e-6 * d;
  }
  for (size_t i = 0; uniform && i < n; ++i) {
    uniform = std::abs(b[i] - (q[0] + d * (static_cast<double>(i) + 0.5))) <= 1e-5 * d;
  }
  const double k0 = q[0] / d;
  uniform = uniform && std::abs(k0 - std::round(k0)) <= 1e-6;
  const double lo = std::round(k0);
  const double hi = lo + static_cast<double>(n);
  if (uniform && lo >= 0 && hi <= 255) return at::kByte;
  if (uniform && lo >= -128 && hi <= 127) return at::kChar;
  return std::nullopt;
}

// out = alpha * dequantize(quantize(clip(bx, q_0, q_n), d)): codes in `code_type`.
absl::Status EmitQuantizeDequantize(Emitter& e, const StepQuantizer& sq, at::ScalarType code_type,
                                    const std::string& bx, const std::string& out) {
  const std::vector<double>& q = sq.levels;
  const double d = q[1] - q[0];
  QNET_ONNX_ASSIGN_OR_RETURN(std::string lo_c, e.Scalar(q[0], at::kFloat));
  QNET_ONNX_ASSIGN_OR_RETURN(std::string hi_c, e.Scalar(q.back(), at::kFloat));
  QNET_ONNX_ASSIGN_OR_RETURN(std::string step_c, e.Scalar(d, at::kFloat));
  QNET_ONNX_ASSIGN_OR_RETURN(std::string scale_c, e.Scalar(std::abs(sq.alpha) * d, at::kFloat));
  QNET_ONNX_ASSIGN_OR_RETURN(std::string zp_c, e.Scalar(0, code_type));
  const std::string clipped = e.Fresh("clipped");
  e.Emit("Clip", {bx, lo_c, hi_c}, {clipped});
  const std::string codes = e.Fresh(absl::StrCat(out, "_codes"));
  e.Emit("QuantizeLinear", {clipped, step_c, zp_c}, {codes});
  if (sq.alpha > 0) {
    e.Emit("DequantizeLinear", {codes, scale_c, zp_c}, {out});
  } else {
    const std::string mag = e.Fresh("dequantized");
    e.Emit("DequantizeLinear", {codes, scale_c, zp_c}, {mag});
    e.Emit("Neg", {mag}, {out});
  }
  return absl::OkStatus();
}

// out = alpha * (q_0 + sum_i s_i * [bx >= b_i]) for any level set.
absl::Status EmitStepSum(Emitter& e, const StepQuantizer& sq, at::ScalarType dtype,
                         const std::string& bx, const std::string& out) {
  const std::vector<double>& q = sq.levels;
  std::vector<std::string> terms;
  for (size_t i = 0; i < sq.thresholds.size(); ++i) {
    QNET_ONNX_ASSIGN_OR_RETURN(std::string b_c, e.Scalar(sq.thresholds[i], dtype));
    QNET_ONNX_ASSIGN_OR_RETURN(pb::TensorProto::DataType to, OnnxType(dtype));
    const std::string ge = e.Fresh("ge");
    e.Emit("GreaterOrEqual", {bx, b_c}, {ge});
    std::string term = e.Fresh("step");
    SetInt(e.Emit("Cast", {ge}, {term}), "to", to);
    const double step = q[i + 1] - q[i];
    if (step != 1.0) {
      QNET_ONNX_ASSIGN_OR_RETURN(std::string s_c, e.Scalar(step, dtype));
      const std::string scaled = e.Fresh("step");
      e.Emit("Mul", {term, s_c}, {scaled});
      term = scaled;
    }
    terms.push_back(term);
  }
  std::string sum = terms[0];
  if (terms.size() > 1) {
    sum = e.Fresh("steps");
    e.Emit("Sum", terms, {sum});
  }
  if (q[0] != 0) {
    QNET_ONNX_ASSIGN_OR_RETURN(std::string q0_c, e.Scalar(q[0], dtype));
    const std::string shifted = e.Fresh("levels");
    e.Emit("Add", {sum, q0_c}, {shifted});
    sum = shifted;
  }
  QNET_ONNX_ASSIGN_OR_RETURN(std::string alpha_c, e.Scalar(sq.alpha, dtype));
  e.Emit("Mul", {sum, alpha_c}, {out});
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

  // Run the module itself (that is what the TorchScript artifact computes) and compare.
  torch::jit::Method forward = torch::jit::Object(obj).get_method("forward");
  auto y = std::make_shared<Slot>();
  y->tensor = true;
  y->a = forward({x->a});
  y->b = forward({x->b});
  if (!y->a.isTensor() || !y->b.isTensor()) {
    return absl::InvalidArgumentError(where + " does not return a tensor");
  }
  const at::ScalarType dtype = TensorA(x).scalar_type();
  if (!ComputesStepQuantizer(sq, TensorA(x), TensorA(y))) {
    return NotSupported(
        absl::StrCat(where,
                     ": its forward does not compute the hard QN quantizer alpha*(q_0 + sum_i "
                     "s_i*H(beta*x - b_i)) from its attributes"));
  }

  const std::string out = e.Fresh(self->path.empty() ? "act_quant" : self->path);
  QNET_ONNX_ASSIGN_OR_RETURN(std::string beta_c, e.Scalar(sq.beta, dtype));
  const std::string bx = e.Fresh("scaled");
  e.Emit("Mul", {x->name, beta_c}, {bx});
  const std::optional<at::ScalarType> code_type = UniformCodeType(sq);
  if (code_type && dtype == at::kFloat) {
    QNET_ONNX_RETURN_IF_ERROR(EmitQuantizeDequantize(e, sq, *code_type, bx, out));
  } else {
    QNET_ONNX_RETURN_IF_ERROR(EmitStepSum(e, sq, dtype, bx, out));
  }
  y->name = out;
  return y;
}

}  // namespace qnet::engine::onnx
