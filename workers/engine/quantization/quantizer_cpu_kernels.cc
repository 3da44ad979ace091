#include "workers/engine/quantization/quantizer_cpu_kernels.h"

#include <algorithm>
#include <atomic>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
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
typedef int32_t VecI2 __attribute__((vector_size(8)));
typedef int32_t VecI4 __attribute__((vector_size(16)));
typedef int32_t VecI8 __attribute__((vector_size(32)));

template <typename V>
struct VecTraits;
template <>
struct VecTraits<VecF4> {
  using Scalar = float;
  using Wide = VecD4;  // reductions accumulate in double
  using Index = VecI4;
  static constexpr int kWidth = 4;
};
template <>
struct VecTraits<VecF8> {
  using Scalar = float;
  using Wide = VecD8;
  using Index = VecI8;
  static constexpr int kWidth = 8;
};
template <>
struct VecTraits<VecD2> {
  using Scalar = double;
  using Wide = VecD2;
  using Index = VecI2;
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

// Stores one vector at p; with `stream` (p aligned to the vector's size, see Streamable) a float
// vector goes out as a non-temporal store, which does not first read the line into the cache. The
// weight-sized outputs are written once and read back only in a later pass over tens of MB, so that
// read would be pure extra memory traffic: about a third of the soft forward's.
template <typename V>
QNET_ALWAYS_INLINE void Put(typename VecTraits<V>::Scalar* p, V v, bool stream) {
#if QNET_QUANTIZER_AVX2
  if constexpr (std::is_same_v<V, VecF8> || std::is_same_v<V, VecF4>) {
    if (stream) {
#if defined(__clang__)
      __builtin_nontemporal_store(v, reinterpret_cast<V*>(p));
#else
      if constexpr (std::is_same_v<V, VecF8>) {
        __builtin_ia32_movntps256(p, v);
      } else {
        __builtin_ia32_movntps(p, v);
      }
#endif
      return;
    }
  }
#endif
  Store(p, v);
}

// Whether Put may stream to p and every vector after it (null: nothing is stored there).
template <typename V>
QNET_ALWAYS_INLINE bool Streamable(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % sizeof(V) == 0;
}

// Orders a range's streaming stores before whatever the caller does next (the threads' join).
QNET_ALWAYS_INLINE void FinishStreaming(bool streamed) {
#if QNET_QUANTIZER_AVX2
  if (streamed) __builtin_ia32_sfence();
#else
  (void)streamed;
#endif
}

template <typename V>
QNET_ALWAYS_INLINE V Splat(typename VecTraits<V>::Scalar s) {
  return V{} + s;
}

template <typename V>
QNET_ALWAYS_INLINE typename VecTraits<V>::Wide Widen(V v) {
  return __builtin_convertvector(v, typename VecTraits<V>::Wide);
}

// table[i] per lane. AVX2: one gather instruction; otherwise a load per lane.
template <typename V>
QNET_ALWAYS_INLINE V Gather(const typename VecTraits<V>::Scalar* table,
                            typename VecTraits<V>::Index i) {
#if QNET_QUANTIZER_AVX2
  if constexpr (std::is_same_v<V, VecF8>) {
    return __builtin_ia32_gathersiv8sf(V{}, table, i, std::bit_cast<V>(VecI8{} - 1), 4);
  }
#endif
  V out;
  for (int l = 0; l < VecTraits<V>::kWidth; ++l) out[l] = table[i[l]];
  return out;
}

// table[i] per lane for a table of kNearestTable entries. AVX2: two in-register permutes (each
// reads its index's low three bits) and a blend, no memory access per lane.
template <typename V>
QNET_ALWAYS_INLINE V Lookup16(const typename VecTraits<V>::Scalar* table,
                              typename VecTraits<V>::Index i) {
  static_assert(kNearestTable == 16);
#if QNET_QUANTIZER_AVX2
  if constexpr (std::is_same_v<V, VecF8>) {
    const V lo = __builtin_ia32_permvarsf256(Load<V>(table), i);
    const V hi = __builtin_ia32_permvarsf256(Load<V>(table + 8), i);
    return i > 7 ? hi : lo;
  }
#endif
  return Gather<V>(table, i);
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

// beta * x rounded to the vector's type, as ATen's composite rounds it. Without the barrier the
// compiler may contract the product into the next subtraction (an FMA for beta*x - b), which moves
// z = T*(beta*x - b) by up to T ulps of beta*x: at T = 1000 and beta*x near 30, past the float
// tolerance against the composite, and differently in the loop kernels and the single-term one.
template <typename V>
QNET_ALWAYS_INLINE V RoundedProduct(typename VecTraits<V>::Scalar beta, V x) {
  V bx = beta * x;
#if defined(__GNUC__) || defined(__clang__)
  asm("" : "+x"(bx));
#endif
  return bx;
}

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

// The bucket of the window table that beta*x falls in, per lane (NaN goes to bucket 0).
template <typename V>
QNET_ALWAYS_INLINE typename VecTraits<V>::Index WindowBucket(
    const KernelParams<typename VecTraits<V>::Scalar>& p, V bx) {
  using S = typename VecTraits<V>::Scalar;
  const S last = static_cast<S>(p.window_buckets - 1);
  V t = (bx - p.window_origin) * p.window_scale;
  t = t >= S(0) ? t : V{};
  t = t < last ? t : Splat<V>(last);
  return __builtin_convertvector(t, typename VecTraits<V>::Index);
}

// One term of the sum for a vector of elements: threshold b, step s, z = T*(beta*x - b) and
// e = exp(-clamp(z, -W, W)).
template <typename V>
struct Term {
  V b, s, z, e;
};

// Which terms a vector of elements evaluates: all n, the `window` listed for each lane's bucket,
// or the single one listed when the window holds one threshold (then the loop over terms unrolls
// at compile time and its state stays in registers), found from the bucket or, kNearest, as the
// threshold nearest beta*x.
enum class TermSet { kAll, kWindow, kSingle, kNearest };

// The terms one vector of elements evaluates and the constant the others add up to: all n
// thresholds and q_0, or (windowed) the thresholds listed for each lane's bucket and that
// bucket's base.
template <typename V, TermSet kTerms>
class Terms {
  using S = typename VecTraits<V>::Scalar;
  using Index = typename VecTraits<V>::Index;
  static constexpr bool kWindow = kTerms != TermSet::kAll;
  static constexpr bool kNearest = kTerms == TermSet::kNearest;

 public:
  QNET_ALWAYS_INLINE Terms(const KernelParams<S>& p, V bx) : p_(p), bx_(bx) {
    if constexpr (kNearest) {
      // The midpoints beta*x has passed, counted as comparisons give them (-1 for true); a NaN
      // passes none.
      for (int j = 0; j + 1 < p.n; ++j) {
        bucket_ -= __builtin_convertvector(bx >= p.nearest_mid[j], Index);
      }
    } else if constexpr (kWindow) {
      bucket_ = WindowBucket(p, bx);
    } else {
      shared_ = SharedExp(p, bx);
    }
  }

  QNET_ALWAYS_INLINE int Count() const {
    if constexpr (kTerms == TermSet::kSingle || kNearest) return 1;
    return kWindow ? p_.window : p_.n;
  }

  QNET_ALWAYS_INLINE V Base() const {
    if constexpr (kNearest) return Lookup16<V>(p_.nearest_base, bucket_);
    if constexpr (kWindow) return Gather<V>(p_.window_base, bucket_);
    return Splat<V>(p_.levels[0]);
  }

  QNET_ALWAYS_INLINE Term<V> At(int k) const {
    constexpr S kWin = static_cast<S>(kClampWindow);
    Term<V> t;
    if constexpr (kNearest) {
      t.b = Lookup16<V>(p_.nearest_thresholds, bucket_);
      t.s = Lookup16<V>(p_.nearest_steps, bucket_);
      t.z = (bx_ - t.b) * p_.temperature;
      t.e = ExpInWindow<V>(-Clamp(t.z, -kWin, kWin));
    } else if constexpr (kWindow) {
      const Index slot = bucket_ * p_.window + k;
      t.b = Gather<V>(p_.window_thresholds, slot);
      t.s = Gather<V>(p_.window_steps, slot);
      t.z = (bx_ - t.b) * p_.temperature;
      t.e = ExpInWindow<V>(-Clamp(t.z, -kWin, kWin));
    } else {
      t.b = Splat<V>(p_.thresholds[k]);
      t.s = Splat<V>(p_.steps[k]);
      t.z = (bx_ - p_.thresholds[k]) * p_.temperature;
      t.e = ExpNegClamped(p_, shared_, t.z, k);
    }
    return t;
  }

  // Index of term k's threshold in lane l.
  QNET_ALWAYS_INLINE int ThresholdIndex(int k, int l) const {
    if constexpr (kNearest) return bucket_[l] + k;
    if constexpr (kWindow) return p_.window_first[bucket_[l]] + k;
    return k;
  }

 private:
  const KernelParams<S>& p_;
  V bx_;
  V shared_{};
  Index bucket_{};  // the window table's bucket, or (kNearest) the listed threshold's index
};

// q_j per lane, for j = the number of thresholds each lane has passed (0..n).
template <typename V, typename J>
QNET_ALWAYS_INLINE V LevelAt(const KernelParams<typename VecTraits<V>::Scalar>& p, J j) {
  if (p.levels_table != nullptr) {
    return Lookup16<V>(p.levels_table, __builtin_convertvector(j, typename VecTraits<V>::Index));
  }
  V q;
  for (int l = 0; l < VecTraits<V>::kWidth; ++l) q[l] = p.levels[j[l]];
  return q;
}

// sig * (1 - sig) inside the clamp window, 0 where z is clamped.
template <typename V>
QNET_ALWAYS_INLINE V SigmoidDerivative(V z, V sig) {
  using S = typename VecTraits<V>::Scalar;
  constexpr S kWin = static_cast<S>(kClampWindow);
  const auto inside = (z > -kWin) & (z < kWin);
  return inside ? sig * (S(1) - sig) : V{};
}

// One vector of outputs. Soft with a non-null *dsum also writes sum_i s_i * d_i, the derivative
// of the bracket by T*beta*x (d_i = sig_i * (1 - sig_i) inside the clamp window, else 0), which
// the backward then reads instead of recomputing every sigmoid.
template <typename V, bool kHard, TermSet kTerms>
QNET_ALWAYS_INLINE V ForwardVec(const KernelParams<typename VecTraits<V>::Scalar>& p, V x,
                                V* dsum) {
  using S = typename VecTraits<V>::Scalar;
  const V bx = RoundedProduct(p.beta, x);
  if constexpr (kHard) {
    // j counts the thresholds passed; comparisons give -1 for true.
    decltype(bx < bx) j{};
    for (int i = 0; i < p.n; ++i) j -= bx >= p.thresholds[i];
    const V y = p.alpha * LevelAt<V>(p, j);
    return bx == bx ? y : bx;  // NaN in, NaN out
  } else {
    const Terms<V, kTerms> terms(p, bx);
    V acc{};
    V dacc{};
    for (int k = 0; k < terms.Count(); ++k) {
      const Term<V> t = terms.At(k);
      const V sig = Reciprocal(S(1) + t.e);
      acc += t.s * sig;
      if (dsum != nullptr) dacc += t.s * SigmoidDerivative(t.z, sig);
    }
    if (dsum != nullptr) *dsum = dacc;
    return p.alpha * (acc + terms.Base());
  }
}

// y (and, soft, the derivative sums into d when d is not null) for count elements.
template <typename V, bool kHard, TermSet kTerms>
QNET_ALWAYS_INLINE void ForwardRange(const KernelParams<typename VecTraits<V>::Scalar>& params,
                                     const typename VecTraits<V>::Scalar* x,
                                     typename VecTraits<V>::Scalar* y,
                                     typename VecTraits<V>::Scalar* d, int64_t count) {
  using S = typename VecTraits<V>::Scalar;
  constexpr int kW = VecTraits<V>::kWidth;
  // A local copy: the stores to y and d could alias the caller's struct, which would make the
  // compiler reload every parameter for every vector.
  const KernelParams<S> p = params;
  int64_t k = 0;
  V dv{};
  V* dout = d == nullptr ? nullptr : &dv;
  const bool stream = Streamable<V>(y) && Streamable<V>(d);
  for (; k + kW <= count; k += kW) {
    Put(y + k, ForwardVec<V, kHard, kTerms>(p, Load<V>(x + k), dout), stream);
    if (d != nullptr) Put(d + k, dv, stream);
  }
  FinishStreaming(stream);
  if (k < count) {  // tail: run one padded vector, keep the valid lanes
    S in[kW] = {};
    S out[kW];
    S dtail[kW];
    std::memcpy(in, x + k, (count - k) * sizeof(S));
    Store(out, ForwardVec<V, kHard, kTerms>(p, Load<V>(in), dout));
    std::memcpy(y + k, out, (count - k) * sizeof(S));
    if (d != nullptr) {
      Store(dtail, dv);
      std::memcpy(d + k, dtail, (count - k) * sizeof(S));
    }
  }
}

// Per-chunk sums, in double: [0] sum g*bracket (d/dalpha), [1] sum g*x*D (d/dbeta before the
// alpha*T factor), [2+i] sum g*s_i*sig_i*(1-sig_i) (d/db_i before the -alpha*T factor).
template <typename V, bool kHard, bool kThresholds, TermSet kTerms>
QNET_ALWAYS_INLINE void BackwardRange(const KernelParams<typename VecTraits<V>::Scalar>& p,
                                      const typename VecTraits<V>::Scalar* x,
                                      const typename VecTraits<V>::Scalar* g,
                                      typename VecTraits<V>::Scalar* gx, int64_t count,
                                      double* sums) {
  using S = typename VecTraits<V>::Scalar;
  using Wide = typename VecTraits<V>::Wide;
  constexpr int kW = VecTraits<V>::kWidth;
  constexpr bool kWindow = kTerms != TermSet::kAll;
  const S scale_x = p.alpha * p.beta * p.temperature;
  Wide acc_alpha{};
  Wide acc_beta{};
  // Threshold sums as plain doubles, read and written with memcpy: a std::vector<Wide> would need
  // 64-byte aligned storage, which its allocator did not give. All terms: kW lanes per threshold.
  // Windowed: one slot per threshold (lanes differ in which thresholds they see), plus the
  // window's padding.
  const size_t thr_slots =
      kWindow ? static_cast<size_t>(p.n + p.window) : static_cast<size_t>(p.n) * kW;
  std::vector<double> acc_thr(kThresholds ? thr_slots : 0, 0.0);

  // Recomputes the sigmoids of one vector (nothing per level was saved) and writes dy/dx. Takes
  // pointers, not vectors: a lambda cannot carry the target attribute, so it must not pass AVX
  // vectors by value.
  auto step = [&](const S* xin, const S* gin, S* gx_out, bool stream) QNET_ALWAYS_INLINE_LAMBDA {
    const V xv = Load<V>(xin);
    const V gv = Load<V>(gin);
    const V bx = RoundedProduct(p.beta, xv);
    const Terms<V, kTerms> terms(p, bx);
    V dsum{};
    V soft{};
    decltype(bx < bx) j{};
    for (int k = 0; k < terms.Count(); ++k) {
      const Term<V> t = terms.At(k);
      const V sig = Reciprocal(S(1) + t.e);
      const V sd = t.s * SigmoidDerivative(t.z, sig);
      dsum += sd;
      if constexpr (kHard) {
        j -= bx >= t.b;
      } else {
        soft += t.s * sig;
      }
      if constexpr (kThresholds && kWindow) {
        const V gsd = gv * sd;
        for (int l = 0; l < kW; ++l) acc_thr[terms.ThresholdIndex(k, l)] += gsd[l];
      } else if constexpr (kThresholds) {
        double* slot = acc_thr.data() + static_cast<size_t>(k) * kW;
        Wide acc;
        std::memcpy(&acc, slot, sizeof(Wide));
        acc += Widen(gv * sd);
        std::memcpy(slot, &acc, sizeof(Wide));
      }
    }
    V bracket;
    if constexpr (kHard && kTerms == TermSet::kAll) {
      bracket = LevelAt<V>(p, j);
    } else if constexpr (kHard) {
      // Windowed, j counts from the lane's first listed threshold (those before it are passed);
      // padding (the largest S) is passed only by an infinite or maximal beta*x, where j is n.
      for (int l = 0; l < kW; ++l) {
        bracket[l] = p.levels[std::min<int>(terms.ThresholdIndex(0, l) + j[l], p.n)];
      }
    } else {
      bracket = soft + terms.Base();
    }
    acc_alpha += Widen(gv * bracket);
    acc_beta += Widen(gv * xv * dsum);
    if (gx_out != nullptr) Put(gx_out, gv * dsum * scale_x, stream);
  };

  int64_t k = 0;
  const bool stream = Streamable<V>(gx);
  for (; k + kW <= count; k += kW) step(x + k, g + k, gx == nullptr ? nullptr : gx + k, stream);
  FinishStreaming(stream);
  if (k < count) {  // padded lanes have g = 0 and so add nothing to the sums
    S xin[kW] = {};
    S gin[kW] = {};
    S out[kW];
    std::memcpy(xin, x + k, (count - k) * sizeof(S));
    std::memcpy(gin, g + k, (count - k) * sizeof(S));
    step(xin, gin, out, false);
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
      if constexpr (kWindow) {
        sums[2 + i] = acc_thr[i];
      } else {
        double s = 0;
        for (int l = 0; l < kW; ++l) s += acc_thr[static_cast<size_t>(i) * kW + l];
        sums[2 + i] = s;
      }
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
  auto step = [&](const S* xin, const S* gin, const S* din, const S* yin, S* gx_out, bool stream)
                  QNET_ALWAYS_INLINE_LAMBDA {
                    const V gv = Load<V>(gin);
                    const V dv = Load<V>(din);
                    acc_alpha += Widen(gv * Load<V>(yin));
                    acc_beta += Widen(gv * Load<V>(xin) * dv);
                    if (gx_out != nullptr) Put(gx_out, gv * dv * scale_x, stream);
                  };
  int64_t k = 0;
  const bool stream = Streamable<V>(gx);
  for (; k + kW <= count; k += kW) {
    step(x + k, g + k, d + k, y + k, gx == nullptr ? nullptr : gx + k, stream);
  }
  FinishStreaming(stream);
  if (k < count) {  // padded lanes have g = 0 and so add nothing to the sums
    S xin[kW] = {}, gin[kW] = {}, din[kW] = {}, yin[kW] = {};
    S out[kW];
    const size_t bytes = (count - k) * sizeof(S);
    std::memcpy(xin, x + k, bytes);
    std::memcpy(gin, g + k, bytes);
    std::memcpy(din, d + k, bytes);
    std::memcpy(yin, y + k, bytes);
    step(xin, gin, din, yin, out, false);
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
    ForwardRange<V, true, TermSet::kAll>(p, x, y, nullptr, count);
  } else if (p.window == 1 && p.nearest_mid != nullptr) {
    ForwardRange<V, false, TermSet::kNearest>(p, x, y, d, count);
  } else if (p.window == 1) {
    ForwardRange<V, false, TermSet::kSingle>(p, x, y, d, count);
  } else if (p.window > 1) {
    ForwardRange<V, false, TermSet::kWindow>(p, x, y, d, count);
  } else {
    ForwardRange<V, false, TermSet::kAll>(p, x, y, d, count);
  }
}

template <typename V, bool kHard, bool kThresholds>
QNET_ALWAYS_INLINE void BackwardWindowDispatch(const KernelParams<typename VecTraits<V>::Scalar>& p,
                                               const typename VecTraits<V>::Scalar* x,
                                               const typename VecTraits<V>::Scalar* g,
                                               typename VecTraits<V>::Scalar* gx, int64_t count,
                                               double* sums) {
  if (p.window == 1 && p.nearest_mid != nullptr) {
    BackwardRange<V, kHard, kThresholds, TermSet::kNearest>(p, x, g, gx, count, sums);
  } else if (p.window == 1) {
    BackwardRange<V, kHard, kThresholds, TermSet::kSingle>(p, x, g, gx, count, sums);
  } else if (p.window > 1) {
    BackwardRange<V, kHard, kThresholds, TermSet::kWindow>(p, x, g, gx, count, sums);
  } else {
    BackwardRange<V, kHard, kThresholds, TermSet::kAll>(p, x, g, gx, count, sums);
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
      BackwardWindowDispatch<V, true, true>(p, x, g, gx, count, sums);
    } else {
      BackwardWindowDispatch<V, true, false>(p, x, g, gx, count, sums);
    }
  } else {
    if (thresholds) {
      BackwardWindowDispatch<V, false, true>(p, x, g, gx, count, sums);
    } else {
      BackwardWindowDispatch<V, false, false>(p, x, g, gx, count, sums);
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
