#include "workers/engine/quantization/quantizer_cpu_kernels.h"

#include <algorithm>
#include <atomic>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "workers/engine/quantization/quantizer.h"
#include "workers/engine/quantization/quantizer_kernels.h"

// The CPU kernel is written with GCC/Clang vector extensions so that one source gives 4-wide SSE2
// code for any x86-64 and 8-wide AVX2+FMA code chosen at run time (a worker binary must not
// assume AVX2). The templated helpers take vectors by value but are always inlined into the
// per-ISA entry points, so the ABI note GCC gives for 32-byte vectors outside AVX code never
// applies to a real call; the CMake target turns that note off for this file (-Wno-psabi).
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define QNET_QUANTIZER_AVX2 1
#else
#define QNET_QUANTIZER_AVX2 0
#endif
#define QNET_ALWAYS_INLINE inline __attribute__((always_inline))
#define QNET_ALWAYS_INLINE_LAMBDA __attribute__((always_inline))

namespace qnet::engine {
namespace internal {
namespace {
std::atomic<bool> g_force_baseline{false};
}  // namespace

void SetCpuVectorIsa(CpuVectorIsa isa) { g_force_baseline = isa == CpuVectorIsa::kBaseline; }

bool CpuKernelUsesAvx2() {
#if QNET_QUANTIZER_AVX2
  static const bool has_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return has_avx2 && !g_force_baseline;
#else
  return false;
#endif
}
}  // namespace internal

namespace {

// ---------------------------------------------------------------------------------------------
// Vector types and per-lane math.

typedef float VecF4 __attribute__((vector_size(16)));
typedef float VecF8 __attribute__((vector_size(32)));
typedef double VecD2 __attribute__((vector_size(16)));
typedef double VecD4 __attribute__((vector_size(32)));
typedef double VecD8 __attribute__((vector_size(64)));

template <typename V>
struct VecTraits;
template <>
struct VecTraits<VecF4> {
  using Scalar = float;
  using Wide = VecD4;  // reductions accumulate in double
  static constexpr int kWidth = 4;
};
template <>
struct VecTraits<VecF8> {
  using Scalar = float;
  using Wide = VecD8;
  static constexpr int kWidth = 8;
};
template <>
struct VecTraits<VecD2> {
  using Scalar = double;
  using Wide = VecD2;
  static constexpr int kWidth = 2;
};

template <typename V>
QNET_ALWAYS_INLINE V Load(const typename VecTraits<V>::Scalar* p) {
  V v;
  std::memcpy(&v, p, sizeof(V));
  return v;
}

template <typename V>
QNET_ALWAYS_INLINE void Store(typename VecTraits<V>::Scalar* p, V v) {
  std::memcpy(p, &v, sizeof(V));
}

template <typename V>
QNET_ALWAYS_INLINE V Splat(typename VecTraits<V>::Scalar s) {
  return V{} + s;
}

template <typename V>
QNET_ALWAYS_INLINE typename VecTraits<V>::Wide Widen(V v) {
  return __builtin_convertvector(v, typename VecTraits<V>::Wide);
}

// exp(w) for |w| <= kSharedExpReach (callers clamp first; NaN stays NaN). Float: w = n*ln2 + r with
// a two-constant ln2 (Cody-Waite), e^r by a degree-6 minimax polynomial on |r| <= ln2/2 (the
// classic Cephes expf coefficients), 2^n written into the exponent bits; about 1 ulp. The bound
// keeps n within [-116, 116], so there is no overflow or denormal handling to do. Double (tests,
// gradcheck) calls std::exp per lane: accuracy matters there, speed does not.
template <typename V>
QNET_ALWAYS_INLINE V ExpInWindow(V w) {
  using S = typename VecTraits<V>::Scalar;
  if constexpr (std::is_same_v<S, float>) {
    typedef int32_t VecI __attribute__((vector_size(sizeof(V))));
    constexpr float kRoundMagic = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
    const V t = w * 1.44269504088896341f + kRoundMagic;
    const V n = t - kRoundMagic;
    V r = w - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    V p = Splat<V>(1.9875691500e-4f);
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    const VecI exponent = (__builtin_convertvector(n, VecI) + 127) << 23;
    return p * std::bit_cast<V>(exponent);
  } else {
    V out;
    for (int l = 0; l < VecTraits<V>::kWidth; ++l) out[l] = std::exp(w[l]);
    return out;
  }
}

// 1/a for a sigmoid's denominator (a >= 1). Float: the hardware estimate (12 bits) refined by one
// Newton step to about 1 ulp, a few times cheaper than a vector division, which bounded the soft
// kernels (every sigmoid of every element divides). Double divides.
template <typename V>
QNET_ALWAYS_INLINE V Reciprocal(V a) {
#if QNET_QUANTIZER_AVX2
  if constexpr (std::is_same_v<V, VecF4> || std::is_same_v<V, VecF8>) {
    V r;
    if constexpr (std::is_same_v<V, VecF4>) {
      r = __builtin_ia32_rcpps(a);
    } else {
      r = __builtin_ia32_rcpps256(a);
    }
    return r * (2.0f - a * r);
  }
#endif
  return 1 / a;
}

// ---------------------------------------------------------------------------------------------
// Kernel bodies.

// v clamped to [lo, hi] per lane; a NaN lane stays NaN (both comparisons are false).
template <typename V>
QNET_ALWAYS_INLINE V Clamp(V v, typename VecTraits<V>::Scalar lo,
                           typename VecTraits<V>::Scalar hi) {
  v = v < lo ? Splat<V>(lo) : v;
  return v > hi ? Splat<V>(hi) : v;
}

// exp(-clamp(z_i, -W, W)) for threshold i: from the element's shared factor when the kernel has
// one (clamping the product to [e^-W, e^W] is clamping z_i; an overflow to inf or an underflow to
// 0 lands on the right edge), else one exponential of its own.
template <typename V>
QNET_ALWAYS_INLINE V ExpNegClamped(const KernelParams<typename VecTraits<V>::Scalar>& p, V shared,
                                   V z, int i) {
  using S = typename VecTraits<V>::Scalar;
  constexpr S kWin = static_cast<S>(kClampWindow);
  if (!p.shared_exp) return ExpInWindow<V>(-Clamp(z, -kWin, kWin));
  return Clamp(shared * p.exp_thresholds[i], p.exp_lo, p.exp_hi);
}

// exp(-T*beta*x), clamped to the range where it matters; unused without a shared exponential.
template <typename V>
QNET_ALWAYS_INLINE V SharedExp(const KernelParams<typename VecTraits<V>::Scalar>& p, V bx) {
  if (!p.shared_exp) return V{};
  return ExpInWindow<V>(Clamp(-(bx * p.temperature), p.shared_lo, p.shared_hi));
}

// One vector of outputs. Soft with a non-null *dsum also writes sum_i s_i * d_i, the derivative
// of the bracket by T*beta*x (d_i = sig_i * (1 - sig_i) inside the clamp window, else 0), which
// the backward then reads instead of recomputing every sigmoid.
template <typename V, bool kHard>
QNET_ALWAYS_INLINE V ForwardVec(const KernelParams<typename VecTraits<V>::Scalar>& p, V x,
                                V* dsum) {
  using S = typename VecTraits<V>::Scalar;
  constexpr S kWin = static_cast<S>(kClampWindow);
  const V bx = p.beta * x;
  if constexpr (kHard) {
    // j counts the thresholds passed; comparisons give -1 for true.
    decltype(bx < bx) j{};
    for (int i = 0; i < p.n; ++i) j -= bx >= p.thresholds[i];
    V q;
    for (int l = 0; l < VecTraits<V>::kWidth; ++l) q[l] = p.levels[j[l]];
    const V y = p.alpha * q;
    return bx == bx ? y : bx;  // NaN in, NaN out
  } else {
    const V shared = SharedExp(p, bx);
    V acc{};
    V dacc{};
    for (int i = 0; i < p.n; ++i) {
      const V z = (bx - p.thresholds[i]) * p.temperature;
      const V sig = Reciprocal(S(1) + ExpNegClamped(p, shared, z, i));
      acc += p.steps[i] * sig;
      if (dsum != nullptr) {
        const auto inside = (z > -kWin) & (z < kWin);
        dacc += p.steps[i] * (inside ? sig * (S(1) - sig) : V{});
      }
    }
    if (dsum != nullptr) *dsum = dacc;
    return p.alpha * (acc + p.levels[0]);
  }
}

// y (and, soft, the derivative sums into d when d is not null) for count elements.
template <typename V, bool kHard>
QNET_ALWAYS_INLINE void ForwardRange(const KernelParams<typename VecTraits<V>::Scalar>& p,
                                     const typename VecTraits<V>::Scalar* x,
                                     typename VecTraits<V>::Scalar* y,
                                     typename VecTraits<V>::Scalar* d, int64_t count) {
  using S = typename VecTraits<V>::Scalar;
  constexpr int kW = VecTraits<V>::kWidth;
  int64_t k = 0;
  V dv{};
  V* dout = d == nullptr ? nullptr : &dv;
  for (; k + kW <= count; k += kW) {
    Store(y + k, ForwardVec<V, kHard>(p, Load<V>(x + k), dout));
    if (d != nullptr) Store(d + k, dv);
  }
  if (k < count) {  // tail: run one padded vector, keep the valid lanes
    S in[kW] = {};
    S out[kW];
    S dtail[kW];
    std::memcpy(in, x + k, (count - k) * sizeof(S));
    Store(out, ForwardVec<V, kHard>(p, Load<V>(in), dout));
    std::memcpy(y + k, out, (count - k) * sizeof(S));
    if (d != nullptr) {
      Store(dtail, dv);
      std::memcpy(d + k, dtail, (count - k) * sizeof(S));
    }
  }
}

// Per-chunk sums, in double: [0] sum g*bracket (d/dalpha), [1] sum g*x*D (d/dbeta before the
// alpha*T factor), [2+i] sum g*s_i*sig_i*(1-sig_i) (d/db_i before the -alpha*T factor).
template <typename V, bool kHard, bool kThresholds>
QNET_ALWAYS_INLINE void BackwardRange(const KernelParams<typename VecTraits<V>::Scalar>& p,
                                      const typename VecTraits<V>::Scalar* x,
                                      const typename VecTraits<V>::Scalar* g,
                                      typename VecTraits<V>::Scalar* gx, int64_t count,
                                      double* sums) {
  using S = typename VecTraits<V>::Scalar;
  using Wide = typename VecTraits<V>::Wide;
  constexpr int kW = VecTraits<V>::kWidth;
  constexpr S kWin = static_cast<S>(kClampWindow);
  const S scale_x = p.alpha * p.beta * p.temperature;
  Wide acc_alpha{};
  Wide acc_beta{};
  // Threshold sums as plain doubles (kW per level), read and written with memcpy: a
  // std::vector<Wide> would need 64-byte aligned storage, which its allocator did not give.
  std::vector<double> acc_thr(kThresholds ? static_cast<size_t>(p.n) * kW : 0, 0.0);

  // Recomputes the sigmoids of one vector (nothing per level was saved) and writes dy/dx. Takes
  // pointers, not vectors: a lambda cannot carry the target attribute, so it must not pass AVX
  // vectors by value.
  auto step = [&](const S* xin, const S* gin, S* gx_out) QNET_ALWAYS_INLINE_LAMBDA {
    const V xv = Load<V>(xin);
    const V gv = Load<V>(gin);
    const V bx = p.beta * xv;
    const V shared = SharedExp(p, bx);
    V dsum{};
    V soft{};
    decltype(bx < bx) j{};
    for (int i = 0; i < p.n; ++i) {
      const V z = (bx - p.thresholds[i]) * p.temperature;
      const auto inside = (z > -kWin) & (z < kWin);
      const V sig = Reciprocal(S(1) + ExpNegClamped(p, shared, z, i));
      const V d = inside ? sig * (S(1) - sig) : V{};
      const V sd = p.steps[i] * d;
      dsum += sd;
      if constexpr (kHard) {
        j -= bx >= p.thresholds[i];
      } else {
        soft += p.steps[i] * sig;
      }
      if constexpr (kThresholds) {
        double* slot = acc_thr.data() + static_cast<size_t>(i) * kW;
        Wide acc;
        std::memcpy(&acc, slot, sizeof(Wide));
        acc += Widen(gv * sd);
        std::memcpy(slot, &acc, sizeof(Wide));
      }
    }
    V bracket;
    if constexpr (kHard) {
      for (int l = 0; l < kW; ++l) bracket[l] = p.levels[j[l]];
    } else {
      bracket = soft + p.levels[0];
    }
    acc_alpha += Widen(gv * bracket);
    acc_beta += Widen(gv * xv * dsum);
    if (gx_out != nullptr) Store(gx_out, gv * dsum * scale_x);
  };

  int64_t k = 0;
  for (; k + kW <= count; k += kW) step(x + k, g + k, gx == nullptr ? nullptr : gx + k);
  if (k < count) {  // padded lanes have g = 0 and so add nothing to the sums
    S xin[kW] = {};
    S gin[kW] = {};
    S out[kW];
    std::memcpy(xin, x + k, (count - k) * sizeof(S));
    std::memcpy(gin, g + k, (count - k) * sizeof(S));
    step(xin, gin, out);
    if (gx != nullptr) std::memcpy(gx + k, out, (count - k) * sizeof(S));
  }

  auto lane_sum = [](const Wide& w) {
    double s = 0;
    for (int l = 0; l < kW; ++l) s += w[l];
    return s;
  };
  sums[0] = lane_sum(acc_alpha);
  sums[1] = lane_sum(acc_beta);
  if constexpr (kThresholds) {
    for (int i = 0; i < p.n; ++i) {
      double s = 0;
      for (int l = 0; l < kW; ++l) s += acc_thr[static_cast<size_t>(i) * kW + l];
      sums[2 + i] = s;
    }
  }
}

// The backward of a soft forward that saved its derivative sums d: no sigmoid is recomputed.
// sums[0] = sum g*y (alpha times d/dalpha), sums[1] = sum g*x*d (d/dbeta before alpha*T).
template <typename V>
QNET_ALWAYS_INLINE void BackwardSavedRange(const KernelParams<typename VecTraits<V>::Scalar>& p,
                                           const typename VecTraits<V>::Scalar* x,
                                           const typename VecTraits<V>::Scalar* g,
                                           const typename VecTraits<V>::Scalar* d,
                                           const typename VecTraits<V>::Scalar* y,
                                           typename VecTraits<V>::Scalar* gx, int64_t count,
                                           double* sums) {
  using S = typename VecTraits<V>::Scalar;
  using Wide = typename VecTraits<V>::Wide;
  constexpr int kW = VecTraits<V>::kWidth;
  const S scale_x = p.alpha * p.beta * p.temperature;
  Wide acc_alpha{};
  Wide acc_beta{};
  auto step = [&](const S* xin, const S* gin, const S* din, const S* yin, S* gx_out)
                  QNET_ALWAYS_INLINE_LAMBDA {
                    const V gv = Load<V>(gin);
                    const V dv = Load<V>(din);
                    acc_alpha += Widen(gv * Load<V>(yin));
                    acc_beta += Widen(gv * Load<V>(xin) * dv);
                    if (gx_out != nullptr) Store(gx_out, gv * dv * scale_x);
                  };
  int64_t k = 0;
  for (; k + kW <= count; k += kW) {
    step(x + k, g + k, d + k, y + k, gx == nullptr ? nullptr : gx + k);
  }
  if (k < count) {  // padded lanes have g = 0 and so add nothing to the sums
    S xin[kW] = {}, gin[kW] = {}, din[kW] = {}, yin[kW] = {};
    S out[kW];
    const size_t bytes = (count - k) * sizeof(S);
    std::memcpy(xin, x + k, bytes);
    std::memcpy(gin, g + k, bytes);
    std::memcpy(din, d + k, bytes);
    std::memcpy(yin, y + k, bytes);
    step(xin, gin, din, yin, out);
    if (gx != nullptr) std::memcpy(gx + k, out, bytes);
  }
  sums[0] = 0;
  sums[1] = 0;
  for (int l = 0; l < kW; ++l) {
    sums[0] += acc_alpha[l];
    sums[1] += acc_beta[l];
  }
}

template <typename V>
QNET_ALWAYS_INLINE void ForwardDispatch(const KernelParams<typename VecTraits<V>::Scalar>& p,
                                        const typename VecTraits<V>::Scalar* x,
                                        typename VecTraits<V>::Scalar* y,
                                        typename VecTraits<V>::Scalar* d, int64_t count,
                                        bool hard) {
  if (hard) {
    ForwardRange<V, true>(p, x, y, nullptr, count);
  } else {
    ForwardRange<V, false>(p, x, y, d, count);
  }
}

template <typename V>
QNET_ALWAYS_INLINE void BackwardDispatch(const KernelParams<typename VecTraits<V>::Scalar>& p,
                                         const typename VecTraits<V>::Scalar* x,
                                         const typename VecTraits<V>::Scalar* g,
                                         typename VecTraits<V>::Scalar* gx, int64_t count,
                                         bool hard, bool thresholds, double* sums) {
  if (hard) {
    if (thresholds) {
      BackwardRange<V, true, true>(p, x, g, gx, count, sums);
    } else {
      BackwardRange<V, true, false>(p, x, g, gx, count, sums);
    }
  } else {
    if (thresholds) {
      BackwardRange<V, false, true>(p, x, g, gx, count, sums);
    } else {
      BackwardRange<V, false, false>(p, x, g, gx, count, sums);
    }
  }
}

// Per-ISA entry points: the vector code above is inlined into each and compiled for its target.
void ForwardFloatBaseline(const KernelParams<float>& p, const float* x, float* y, float* d,
                          int64_t count, bool hard) {
  ForwardDispatch<VecF4>(p, x, y, d, count, hard);
}
void BackwardSavedFloatBaseline(const KernelParams<float>& p, const float* x, const float* g,
                                const float* d, const float* y, float* gx, int64_t count,
                                double* sums) {
  BackwardSavedRange<VecF4>(p, x, g, d, y, gx, count, sums);
}
void BackwardFloatBaseline(const KernelParams<float>& p, const float* x, const float* g, float* gx,
                           int64_t count, bool hard, bool thresholds, double* sums) {
  BackwardDispatch<VecF4>(p, x, g, gx, count, hard, thresholds, sums);
}
#if QNET_QUANTIZER_AVX2
__attribute__((target("avx2,fma"))) void ForwardFloatAvx2(const KernelParams<float>& p,
                                                          const float* x, float* y, float* d,
                                                          int64_t count, bool hard) {
  ForwardDispatch<VecF8>(p, x, y, d, count, hard);
}
__attribute__((target("avx2,fma"))) void BackwardSavedFloatAvx2(const KernelParams<float>& p,
                                                                const float* x, const float* g,
                                                                const float* d, const float* y,
                                                                float* gx, int64_t count,
                                                                double* sums) {
  BackwardSavedRange<VecF8>(p, x, g, d, y, gx, count, sums);
}
__attribute__((target("avx2,fma"))) void BackwardFloatAvx2(const KernelParams<float>& p,
                                                           const float* x, const float* g,
                                                           float* gx, int64_t count, bool hard,
                                                           bool thresholds, double* sums) {
  BackwardDispatch<VecF8>(p, x, g, gx, count, hard, thresholds, sums);
}
#endif
void ForwardDouble(const KernelParams<double>& p, const double* x, double* y, double* d,
                   int64_t count, bool hard) {
  ForwardDispatch<VecD2>(p, x, y, d, count, hard);
}
void BackwardSavedDouble(const KernelParams<double>& p, const double* x, const double* g,
                         const double* d, const double* y, double* gx, int64_t count,
                         double* sums) {
  BackwardSavedRange<VecD2>(p, x, g, d, y, gx, count, sums);
}
void BackwardDouble(const KernelParams<double>& p, const double* x, const double* g, double* gx,
                    int64_t count, bool hard, bool thresholds, double* sums) {
  BackwardDispatch<VecD2>(p, x, g, gx, count, hard, thresholds, sums);
}

}  // namespace

void ForwardKernel(const KernelParams<float>& p, const float* x, float* y, float* d, int64_t count,
                   bool hard) {
#if QNET_QUANTIZER_AVX2
  if (internal::CpuKernelUsesAvx2()) return ForwardFloatAvx2(p, x, y, d, count, hard);
#endif
  ForwardFloatBaseline(p, x, y, d, count, hard);
}
void ForwardKernel(const KernelParams<double>& p, const double* x, double* y, double* d,
                   int64_t count, bool hard) {
  ForwardDouble(p, x, y, d, count, hard);
}
void BackwardSavedKernel(const KernelParams<float>& p, const float* x, const float* g,
                         const float* d, const float* y, float* gx, int64_t count, double* sums) {
#if QNET_QUANTIZER_AVX2
  if (internal::CpuKernelUsesAvx2()) return BackwardSavedFloatAvx2(p, x, g, d, y, gx, count, sums);
#endif
  BackwardSavedFloatBaseline(p, x, g, d, y, gx, count, sums);
}
void BackwardSavedKernel(const KernelParams<double>& p, const double* x, const double* g,
                         const double* d, const double* y, double* gx, int64_t count,
                         double* sums) {
  BackwardSavedDouble(p, x, g, d, y, gx, count, sums);
}
void BackwardKernel(const KernelParams<float>& p, const float* x, const float* g, float* gx,
                    int64_t count, bool hard, bool thresholds, double* sums) {
#if QNET_QUANTIZER_AVX2
  if (internal::CpuKernelUsesAvx2()) {
    return BackwardFloatAvx2(p, x, g, gx, count, hard, thresholds, sums);
  }
#endif
  BackwardFloatBaseline(p, x, g, gx, count, hard, thresholds, sums);
}
void BackwardKernel(const KernelParams<double>& p, const double* x, const double* g, double* gx,
                    int64_t count, bool hard, bool thresholds, double* sums) {
  BackwardDouble(p, x, g, gx, count, hard, thresholds, sums);
}

}  // namespace qnet::engine
