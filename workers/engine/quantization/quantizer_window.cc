// The window table of the CPU kernels (docs/METHOD.md, "Only the terms near beta x are
// evaluated"): which thresholds can be unclamped in each bucket of the beta*x axis, the constant
// the clamped others add up to, and the nearest-threshold tables of a one-term window. Built once
// per call from the host copies of the parameters; the kernels in quantizer_cpu_kernels.cc read it.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "workers/engine/quantization/quantizer.h"
#include "workers/engine/quantization/quantizer_cpu_kernels.h"

namespace qnet::engine {
namespace {

// Most buckets a window table has; at higher temperatures buckets widen instead.
constexpr int kMaxWindowBuckets = 1 << 14;

template <typename S>
void BuildWindowTable(KernelParams<S>* p, WindowTable<S>* table) {
  p->window = 0;
  p->nearest_mid = nullptr;
  const int n = p->n;
  const S* b = p->thresholds;
  for (int i = 0; i < n; ++i) {
    if (!std::isfinite(b[i]) || (i > 0 && b[i] < b[i - 1])) return;
  }
  if (n < 2) return;
  const double temperature = p->temperature;  // T as the kernel rounds it
  // A term farther than `reach` from its threshold has |z| >= W however z rounds: the relative
  // part covers the roundings of beta*x - b and of the product with T, the absolute part a
  // beta*x contracted into that difference (an FMA) when it is not rounded first.
  const double max_abs_b = std::max(std::abs(double{b[0]}), std::abs(double{b[n - 1]}));
  const double reach = kClampWindow / temperature * (1 + 1e-4) + 1e-6 * max_abs_b;
  const double span = double{b[n - 1]} - double{b[0]} + 2 * reach;
  const S origin = static_cast<S>(double{b[0]} - 2 * reach);
  const S scale = static_cast<S>(1 / std::max(reach / 2, span / (kMaxWindowBuckets - 8)));
  const double width = 1 / double{scale};  // as the kernel's index computation sees them
  // The float bucket index is off by at most a few thousandths of a bucket: each bucket is
  // widened by `slack` on both sides.
  const double slack = 0.01 * width;
  const int buckets =
      static_cast<int>(std::ceil((double{b[n - 1]} + reach + slack - double{origin}) / width)) + 2;
  std::vector<int> first(buckets);
  int window = 1;
  int lo = 0, hi = 0;  // both only grow with the bucket
  for (int k = 0; k < buckets; ++k) {
    const double start = double{origin} + k * width - slack;
    const double stop = double{origin} + (k + 1) * width + slack;
    while (lo < n && b[lo] <= start - reach) ++lo;  // clamped high anywhere in the bucket
    while (hi < n && b[hi] < stop + reach) ++hi;    // beyond hi: clamped low
    first[k] = lo;
    window = std::max(window, hi - lo);
  }
  // Below the first bucket and above the last, the buckets' own lists must still hold.
  if (first.front() != 0 || first.back() != n) return;
  // Against the plain loop: a windowed term costs its own exponential and three gathers, a plain
  // one with the shared exponential about a third of that.
  if (window > (p->shared_exp ? n / 4 : n / 2)) return;

  // The base: q_0, the clamped-high terms before the list at sigmoid(W), those after at
  // sigmoid(-W) (prefix sums in double).
  std::vector<double> prefix(n + 1, 0.0);
  for (int i = 0; i < n; ++i) prefix[i + 1] = prefix[i] + p->steps[i];
  const double sat_hi = 1 / (1 + std::exp(-kClampWindow));
  const double sat_lo = 1 / (1 + std::exp(kClampWindow));
  table->base.resize(buckets);
  table->first.resize(buckets);
  table->thresholds.resize(static_cast<size_t>(buckets) * window);
  table->steps.resize(static_cast<size_t>(buckets) * window);
  for (int k = 0; k < buckets; ++k) {
    const int listed_end = std::min(first[k] + window, n);
    table->base[k] = static_cast<S>(p->levels[0] + sat_hi * prefix[first[k]] +
                                    sat_lo * (prefix[n] - prefix[listed_end]));
    table->first[k] = first[k];
    for (int m = 0; m < window; ++m) {
      const int i = first[k] + m;
      const size_t slot = static_cast<size_t>(k) * window + m;
      table->thresholds[slot] = i < n ? b[i] : std::numeric_limits<S>::max();
      table->steps[slot] = i < n ? p->steps[i] : S(0);
    }
  }
  p->window = window;
  p->window_buckets = buckets;
  p->window_origin = origin;
  p->window_scale = scale;
  p->window_base = table->base.data();
  p->window_first = table->first.data();
  p->window_thresholds = table->thresholds.data();
  p->window_steps = table->steps.data();
  if (window != 1 || n > kNearestTable) return;
  // One listed threshold means thresholds are more than twice the reach apart, so any beta*x
  // within reach of b_i is nearer b_i than either midpoint, by far more than float rounding.
  // Elsewhere every term is clamped, and any listed threshold with its base gives the same sum.
  table->nearest_mid.assign(kNearestTable, std::numeric_limits<S>::quiet_NaN());
  table->nearest_base.assign(kNearestTable, S(0));
  table->nearest_thresholds.assign(kNearestTable, S(0));
  table->nearest_steps.assign(kNearestTable, S(0));
  for (int i = 0; i < n; ++i) {
    if (i + 1 < n) table->nearest_mid[i] = static_cast<S>((double{b[i]} + double{b[i + 1]}) / 2);
    table->nearest_base[i] =
        static_cast<S>(p->levels[0] + sat_hi * prefix[i] + sat_lo * (prefix[n] - prefix[i + 1]));
    table->nearest_thresholds[i] = b[i];
    table->nearest_steps[i] = p->steps[i];
  }
  p->nearest_mid = table->nearest_mid.data();
  p->nearest_base = table->nearest_base.data();
  p->nearest_thresholds = table->nearest_thresholds.data();
  p->nearest_steps = table->nearest_steps.data();
}

}  // namespace

void BuildWindow(KernelParams<float>* p, WindowTable<float>* table) { BuildWindowTable(p, table); }
void BuildWindow(KernelParams<double>* p, WindowTable<double>* table) {
  BuildWindowTable(p, table);
}

}  // namespace qnet::engine
