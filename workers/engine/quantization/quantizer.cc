#include "workers/engine/quantization/quantizer.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <vector>

#include "absl/strings/str_cat.h"
#include "workers/engine/quantization/quantize_buffers.h"
#include "workers/engine/quantization/quantizer_cpu_kernels.h"
#include "workers/engine/quantization/quantizer_kernels.h"

namespace qnet::engine {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// ---------------------------------------------------------------------------------------------
// CPU driver: fixed-size chunks spread over ATen's intra-op threads. The chunking does not depend
// on the thread count, and per-chunk sums are added in chunk order, so results are bitwise the
// same for any number of threads.

constexpr int64_t kChunk = 1 << 15;

// A tensor with x's shape and strides (x is dense), from `buffers` when given: the kernels walk
// x, its output and its gradients as flat arrays, so all must lay elements out alike.
torch::Tensor Allocate(const torch::Tensor& x, QuantizeBuffers* buffers) {
  return buffers != nullptr ? buffers->Take(x) : torch::empty_like(x);
}

// t in like's memory layout. A channels-last activation stays channels-last: making it
// contiguous would cost two copies per quantizer and slow the convolutions around it.
torch::Tensor InLayoutOf(const torch::Tensor& t, const torch::Tensor& like) {
  if (t.strides() == like.strides()) return t;
  return torch::empty_like(like).copy_(t);
}

// Largest |exponent| the shared-exponential path feeds ExpInWindow.
constexpr double kSharedExpReach = 80.0;

// The small tensors as host arrays in the compute type; steps computed in that type, like the
// composite does. `windowed`: also the window table, for kernels that evaluate sigmoids.
template <typename S>
struct HostParams {
  std::vector<S> levels, levels_table, steps, thresholds, exp_thresholds;
  WindowTable<S> window;
  KernelParams<S> kernel;

  HostParams(const torch::Tensor& alpha, const torch::Tensor& beta, const torch::Tensor& lv,
             const torch::Tensor& th, double temperature, bool windowed) {
    const torch::Tensor l =
        lv.detach().to(torch::kCPU, c10::CppTypeToScalarType<S>::value).contiguous();
    const torch::Tensor t =
        th.detach().to(torch::kCPU, c10::CppTypeToScalarType<S>::value).contiguous();
    levels.assign(l.data_ptr<S>(), l.data_ptr<S>() + l.numel());
    thresholds.assign(t.data_ptr<S>(), t.data_ptr<S>() + t.numel());
    for (size_t i = 1; i < levels.size(); ++i) steps.push_back(levels[i] - levels[i - 1]);
    kernel.alpha = static_cast<S>(alpha.item<double>());
    kernel.beta = static_cast<S>(beta.item<double>());
    kernel.temperature = static_cast<S>(temperature);
    kernel.n = static_cast<int>(thresholds.size());
    kernel.levels = levels.data();
    if (levels.size() <= static_cast<size_t>(kNearestTable)) {
      levels_table = levels;
      levels_table.resize(kNearestTable, levels.back());
      kernel.levels_table = levels_table.data();
    }
    kernel.steps = steps.data();
    kernel.thresholds = thresholds.data();
    // Float only (double keeps its per-term std::exp). The bound keeps both exp factors finite
    // and inside the polynomial's range (|w| < 87, no denormals).
    double reach = 0;  // max |T*b_i|
    for (const S b : thresholds) reach = std::max(reach, std::abs(temperature * b));
    if (std::is_same_v<S, float> && reach + kClampWindow <= kSharedExpReach) {
      for (const S b : thresholds)
        exp_thresholds.push_back(static_cast<S>(std::exp(temperature * b)));
      double b_min = 0, b_max = 0;
      if (!thresholds.empty()) {
        b_min = *std::min_element(thresholds.begin(), thresholds.end());
        b_max = *std::max_element(thresholds.begin(), thresholds.end());
      }
      kernel.shared_exp = true;
      kernel.exp_lo = static_cast<S>(std::exp(-kClampWindow));
      kernel.exp_hi = static_cast<S>(std::exp(kClampWindow));
      kernel.shared_lo = static_cast<S>(-kClampWindow - temperature * b_max);
      kernel.shared_hi = static_cast<S>(kClampWindow - temperature * b_min);
      kernel.exp_thresholds = exp_thresholds.data();
    }
    if (windowed) BuildWindow(&kernel, &window);
  }
  // `kernel` points into the vectors above.
  HostParams(const HostParams&) = delete;
  HostParams& operator=(const HostParams&) = delete;
};

// y; soft with a non-null *derivative also fills it with the per-element derivative sums.
template <typename S>
torch::Tensor ForwardCpu(const torch::Tensor& x, const torch::Tensor& alpha,
                         const torch::Tensor& beta, const torch::Tensor& levels,
                         const torch::Tensor& thresholds, double temperature, bool hard,
                         QuantizeBuffers* buffers, torch::Tensor* derivative = nullptr) {
  const HostParams<S> hp(alpha, beta, levels, thresholds, temperature, /*windowed=*/!hard);
  torch::Tensor y = Allocate(x, buffers);
  const S* xp = x.data_ptr<S>();
  S* yp = y.data_ptr<S>();
  S* dp = nullptr;
  if (derivative != nullptr && !hard) {
    *derivative = Allocate(x, buffers);
    dp = derivative->data_ptr<S>();
  }
  const int64_t numel = x.numel();
  const int64_t chunks = (numel + kChunk - 1) / kChunk;
  at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      const int64_t offset = c * kChunk;
      ForwardKernel(hp.kernel, xp + offset, yp + offset, dp == nullptr ? nullptr : dp + offset,
                    std::min(kChunk, numel - offset), hard);
    }
  });
  return y;
}

template <typename S>
internal::QuantizeGrads BackwardCpu(const torch::Tensor& grad_y, const torch::Tensor& x,
                                    const torch::Tensor& alpha, const torch::Tensor& beta,
                                    const torch::Tensor& levels, const torch::Tensor& thresholds,
                                    double temperature, bool hard, bool need_x,
                                    bool need_thresholds, QuantizeBuffers* buffers) {
  const HostParams<S> hp(alpha, beta, levels, thresholds, temperature, /*windowed=*/true);
  const int n = hp.kernel.n;
  const int64_t numel = x.numel();
  const int64_t chunks = (numel + kChunk - 1) / kChunk;
  const int stride = 2 + (need_thresholds ? n : 0);
  std::vector<double> partial(static_cast<size_t>(chunks) * stride, 0.0);
  torch::Tensor gx;
  if (need_x) gx = Allocate(x, buffers);
  const S* xp = x.data_ptr<S>();
  const S* gp = grad_y.data_ptr<S>();
  S* gxp = need_x ? gx.data_ptr<S>() : nullptr;
  at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      const int64_t offset = c * kChunk;
      BackwardKernel(hp.kernel, xp + offset, gp + offset, gxp == nullptr ? nullptr : gxp + offset,
                     std::min(kChunk, numel - offset), hard, need_thresholds,
                     partial.data() + c * stride);
    }
  });
  std::vector<double> sums(stride, 0.0);
  for (int64_t c = 0; c < chunks; ++c) {
    for (int i = 0; i < stride; ++i) sums[i] += partial[c * stride + i];
  }
  // The factors applied once here are those the closed-form gradients share across elements.
  const double a = alpha.item<double>();
  const double at = a * temperature;
  internal::QuantizeGrads grads;
  grads.x = gx;
  grads.alpha = torch::full(alpha.sizes(), sums[0], alpha.options());
  grads.beta = torch::full(beta.sizes(), sums[1] * at, beta.options());
  if (need_thresholds) {
    std::vector<double> gt(n);
    for (int i = 0; i < n; ++i) gt[i] = -at * sums[2 + i];
    grads.thresholds = torch::tensor(gt, torch::kDouble).to(thresholds.options());
  }
  return grads;
}

// BackwardCpu's gradients for x, alpha and beta from what a soft forward saved: its output y and
// derivative sums d. alpha must be nonzero (y / alpha is the bracket).
template <typename S>
internal::QuantizeGrads BackwardSavedCpu(const torch::Tensor& grad_y, const torch::Tensor& x,
                                         const torch::Tensor& derivative, const torch::Tensor& y,
                                         const torch::Tensor& alpha, const torch::Tensor& beta,
                                         const torch::Tensor& levels,
                                         const torch::Tensor& thresholds, double temperature,
                                         bool need_x, QuantizeBuffers* buffers) {
  const HostParams<S> hp(alpha, beta, levels, thresholds, temperature, /*windowed=*/false);
  const int64_t numel = x.numel();
  const int64_t chunks = (numel + kChunk - 1) / kChunk;
  std::vector<double> partial(static_cast<size_t>(chunks) * 2, 0.0);
  torch::Tensor gx;
  if (need_x) gx = Allocate(x, buffers);
  const S* xp = x.data_ptr<S>();
  const S* gp = grad_y.data_ptr<S>();
  const S* dp = derivative.data_ptr<S>();
  const S* yp = y.data_ptr<S>();
  S* gxp = need_x ? gx.data_ptr<S>() : nullptr;
  at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      const int64_t offset = c * kChunk;
      BackwardSavedKernel(hp.kernel, xp + offset, gp + offset, dp + offset, yp + offset,
                          gxp == nullptr ? nullptr : gxp + offset, std::min(kChunk, numel - offset),
                          partial.data() + c * 2);
    }
  });
  double sum_gy = 0, sum_gxd = 0;
  for (int64_t c = 0; c < chunks; ++c) {
    sum_gy += partial[c * 2];
    sum_gxd += partial[c * 2 + 1];
  }
  const double a = alpha.item<double>();
  internal::QuantizeGrads grads;
  grads.x = gx;
  grads.alpha = torch::full(alpha.sizes(), sum_gy / a, alpha.options());
  grads.beta = torch::full(beta.sizes(), sum_gxd * a * temperature, beta.options());
  return grads;
}

// ---------------------------------------------------------------------------------------------
// The autograd function.

class QuantizeFunction : public torch::autograd::Function<QuantizeFunction> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x,
                               const torch::Tensor& alpha, const torch::Tensor& beta,
                               const torch::Tensor& levels, const torch::Tensor& thresholds,
                               double temperature, bool hard, bool keep_derivative,
                               const c10::intrusive_ptr<QuantizeBuffers>& buffers) {
    // The CPU kernels take any dense layout (channels-last included); the CUDA ones a contiguous x.
    const torch::Tensor xc = !x.is_cuda() && x.is_non_overlapping_and_dense() ? x : x.contiguous();
    ctx->saved_data["temperature"] = temperature;
    ctx->saved_data["hard"] = hard;
    if (buffers) ctx->saved_data["buffers"] = c10::IValue::make_capsule(buffers);
#ifdef QNET_WITH_CUDA
    if (xc.is_cuda()) {
      // Only x and the small parameter tensors are kept; backward recomputes the sigmoids.
      ctx->save_for_backward({xc, alpha, beta, levels, thresholds});
      return internal::QuantizeForwardCuda(xc, alpha, beta, levels, thresholds, temperature, hard);
    }
#endif
    // A soft forward on the CPU (the weights' quantizers) can keep its output and per-element
    // derivative sums, so that the backward reads them instead of recomputing every sigmoid: one
    // more tensor the size of x for about half of the op's training cost (Quantize decides).
    const bool keep = keep_derivative && !hard;
    torch::Tensor derivative;
    torch::Tensor* derivative_out = keep ? &derivative : nullptr;
    const torch::Tensor y =
        xc.scalar_type() == torch::kDouble
            ? ForwardCpu<double>(xc, alpha, beta, levels, thresholds, temperature, hard,
                                 buffers.get(), derivative_out)
            : ForwardCpu<float>(xc, alpha, beta, levels, thresholds, temperature, hard,
                                buffers.get(), derivative_out);
    if (keep) {
      ctx->save_for_backward({xc, alpha, beta, levels, thresholds, derivative, y});
    } else {
      ctx->save_for_backward({xc, alpha, beta, levels, thresholds});
    }
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const variable_list saved = ctx->get_saved_variables();
    const torch::Tensor& x = saved[0];
    const double temperature = ctx->saved_data["temperature"].toDouble();
    const bool hard = ctx->saved_data["hard"].toBool();
    const bool need_x = ctx->needs_input_grad(0);
    const bool need_thresholds = ctx->needs_input_grad(4);
    const torch::Tensor g = InLayoutOf(grad_outputs[0].to(x.scalar_type()), x);
    c10::intrusive_ptr<QuantizeBuffers> buffers;
    if (ctx->saved_data.count("buffers") != 0) {
      buffers = c10::static_intrusive_pointer_cast<QuantizeBuffers>(
          ctx->saved_data["buffers"].toCapsule());
    }
    internal::QuantizeGrads grads;
#ifdef QNET_WITH_CUDA
    if (x.is_cuda()) {
      grads = internal::QuantizeBackwardCuda(g, x, saved[1], saved[2], saved[3], saved[4],
                                             temperature, hard, need_x, need_thresholds);
    }
#endif
    const bool saved_derivative =
        saved.size() == 7 && !need_thresholds && saved[1].item<double>() != 0;  // alpha divides y
    if (saved_derivative) {
      grads = x.scalar_type() == torch::kDouble
                  ? BackwardSavedCpu<double>(g, x, saved[5], saved[6], saved[1], saved[2], saved[3],
                                             saved[4], temperature, need_x, buffers.get())
                  : BackwardSavedCpu<float>(g, x, saved[5], saved[6], saved[1], saved[2], saved[3],
                                            saved[4], temperature, need_x, buffers.get());
    } else if (!x.is_cuda()) {
      grads = x.scalar_type() == torch::kDouble
                  ? BackwardCpu<double>(g, x, saved[1], saved[2], saved[3], saved[4], temperature,
                                        hard, need_x, need_thresholds, buffers.get())
                  : BackwardCpu<float>(g, x, saved[1], saved[2], saved[3], saved[4], temperature,
                                       hard, need_x, need_thresholds, buffers.get());
    }
    return {grads.x,         grads.alpha,     grads.beta,      torch::Tensor(), grads.thresholds,
            torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

void CheckArgs(const torch::Tensor& x, const torch::Tensor& alpha, const torch::Tensor& beta,
               const torch::Tensor& levels, const torch::Tensor& thresholds, double temperature) {
  const absl::Status status = ValidateQuantizeArgs(x, alpha, beta, levels, thresholds, temperature);
  TORCH_CHECK(status.ok(), std::string(status.message()));
}

}  // namespace

torch::Tensor QuantizeBuffers::Take(const torch::Tensor& like) {
  const auto options = like.options().requires_grad(false);
  const size_t bytes = static_cast<size_t>(like.numel()) * like.element_size();
  c10::Storage storage;
  {
    const std::lock_guard<std::mutex> lock(mu_);
    for (const c10::Storage& s : kept_) {
      // Held only here: no tensor, saved variable or .grad refers to it any more.
      if (s.use_count() == 1 && s.nbytes() == bytes && s.device() == like.device()) {
        storage = s;
        break;
      }
    }
    if (!storage) {
      torch::Tensor fresh = torch::empty_strided(like.sizes(), like.strides(), options);
      if (kept_.size() < kMaxKept) kept_.push_back(fresh.storage());
      return fresh;
    }
  }
  return torch::empty({0}, options).set_(storage, 0, like.sizes(), like.strides());
}

size_t QuantizeBuffers::kept() {
  const std::lock_guard<std::mutex> lock(mu_);
  return kept_.size();
}

c10::intrusive_ptr<QuantizeBuffers> BuffersForLeaf(const torch::Tensor& x) {
  struct Entry {
    // Keeps the TensorImpl's address from being reused while the entry exists.
    c10::weak_intrusive_ptr<c10::TensorImpl> leaf;
    c10::intrusive_ptr<QuantizeBuffers> buffers;
  };
  static std::mutex mu;
  static auto* entries = new std::unordered_map<const c10::TensorImpl*, Entry>();
  const std::lock_guard<std::mutex> lock(mu);
  std::erase_if(*entries, [](const auto& e) { return e.second.leaf.expired(); });
  const c10::TensorImpl* key = x.unsafeGetTensorImpl();
  auto it = entries->find(key);
  if (it == entries->end()) {
    it = entries
             ->emplace(key, Entry{c10::weak_intrusive_ptr<c10::TensorImpl>(x.getIntrusivePtr()),
                                  c10::make_intrusive<QuantizeBuffers>()})
             .first;
  }
  return it->second.buffers;
}

absl::Status ValidateQuantizeArgs(const torch::Tensor& x, const torch::Tensor& alpha,
                                  const torch::Tensor& beta, const torch::Tensor& levels,
                                  const torch::Tensor& thresholds, double temperature) {
  const auto bad = [](auto&&... parts) {
    return absl::InvalidArgumentError(absl::StrCat("quantizer: ", parts...));
  };
  if (!x.defined() || !alpha.defined() || !beta.defined() || !levels.defined() ||
      !thresholds.defined()) {
    return bad("x, alpha, beta, levels and thresholds must all be defined tensors");
  }
  if (!x.is_floating_point())
    return bad("x must be floating point, got ", std::string(x.dtype().name()));
  for (const auto& [name, t] : {std::pair<const char*, const torch::Tensor&>{"alpha", alpha},
                                {"beta", beta},
                                {"levels", levels},
                                {"thresholds", thresholds}}) {
    if (!t.is_floating_point()) return bad(name, " must be floating point");
    if (t.device() != x.device() && !t.is_cpu()) {
      return bad(name, " is on ", t.device().str(), " but x is on ", x.device().str());
    }
  }
  if (alpha.numel() != 1 || beta.numel() != 1) {
    return bad("alpha and beta must hold one value each, got ", alpha.numel(), " and ",
               beta.numel());
  }
  if (levels.dim() != 1 || levels.numel() < 2 || levels.numel() > kMaxLevels) {
    return bad("levels must be 1-D with 2 to ", kMaxLevels, " values, got shape ",
               c10::str(levels.sizes()));
  }
  if (thresholds.dim() != 1 || thresholds.numel() != levels.numel() - 1) {
    return bad("thresholds must be 1-D with ", levels.numel() - 1, " values (levels - 1), got ",
               thresholds.numel());
  }
  if (!std::isfinite(temperature) || temperature <= 0) {
    return bad("temperature must be finite and > 0, got ", temperature);
  }
  return absl::OkStatus();
}

torch::Tensor Quantize(const torch::Tensor& x, const torch::Tensor& alpha,
                       const torch::Tensor& beta, const torch::Tensor& levels,
                       const torch::Tensor& thresholds, double temperature, bool hard) {
  CheckArgs(x, alpha, beta, levels, thresholds, temperature);
  const bool fused_dtype = x.scalar_type() == torch::kFloat || x.scalar_type() == torch::kDouble;
#ifdef QNET_WITH_CUDA
  const bool fused_device = x.is_cpu() || x.is_cuda();
#else
  const bool fused_device = x.is_cpu();
#endif
  if (!fused_dtype || !fused_device) {
    return QuantizeComposite(x, alpha, beta, levels, thresholds, temperature, hard);
  }
  // The saved derivative serves only a backward that will run and needs no per-sigmoid term:
  // gradients on, thresholds fixed, something to differentiate.
  const bool keep_derivative = torch::GradMode::is_enabled() && !thresholds.requires_grad() &&
                               (x.requires_grad() || alpha.requires_grad() || beta.requires_grad());
  // A training step's latent weight: a leaf quantized again every step.
  const bool reuse =
      x.is_cpu() && x.is_leaf() && x.requires_grad() && torch::GradMode::is_enabled();
  return QuantizeFunction::apply(x, alpha, beta, levels, thresholds, temperature, hard,
                                 keep_derivative,
                                 reuse ? BuffersForLeaf(x) : c10::intrusive_ptr<QuantizeBuffers>());
}

torch::Tensor QuantizeComposite(const torch::Tensor& x, const torch::Tensor& alpha,
                                const torch::Tensor& beta, const torch::Tensor& levels,
                                const torch::Tensor& thresholds, double temperature, bool hard) {
  CheckArgs(x, alpha, beta, levels, thresholds, temperature);
  // Everything in x's dtype and device, as the fused kernels compute.
  const auto opts = x.options();
  const torch::Tensor a = alpha.to(opts).reshape({});
  const torch::Tensor b = beta.to(opts).reshape({});
  const torch::Tensor lv = levels.to(opts);
  const torch::Tensor th = thresholds.to(opts);
  const torch::Tensor steps = lv.slice(0, 1) - lv.slice(0, 0, -1);
  const torch::Tensor bx = (b * x).unsqueeze(-1);
  const torch::Tensor z = torch::clamp((bx - th) * temperature, -kClampWindow, kClampWindow);
  const torch::Tensor soft = (torch::sigmoid(z) * steps).sum(-1) + lv[0];
  if (!hard) return a * soft;
  // Straight-through: the value is q_j exactly (soft - soft.detach() is 0), the gradient the soft
  // bracket's; alpha's gradient is q_j.
  const torch::Tensor j = (bx >= th).sum(-1);
  const torch::Tensor q = torch::take(lv.detach(), j);
  return a * (q + (soft - soft.detach()));
}

}  // namespace qnet::engine
