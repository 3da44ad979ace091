// The quantizer's vectorised CPU kernels (internal to quantizer.cc): one chunk of elements per
// call, forward, backward recomputing the sigmoids, and backward from a soft forward's saved
// derivative sums. Float picks SSE2 or AVX2+FMA code at run time (internal::SetCpuVectorIsa);
// double is the reference precision for tests. Callers validate arguments and split the work.
//
//   KernelParams<float> p = ...;  // host copies of alpha, beta, T, levels, steps, thresholds
//   WindowTable<float> table;
//   BuildWindow(&p, &table);      // optional: soft terms evaluated only near beta*x
//   ForwardKernel(p, x, y, /*d=*/nullptr, count, /*hard=*/false);
#ifndef QNET_WORKERS_ENGINE_QUANTIZATION_QUANTIZER_CPU_KERNELS_H_
#define QNET_WORKERS_ENGINE_QUANTIZATION_QUANTIZER_CPU_KERNELS_H_

#include <cstdint>
#include <vector>

namespace qnet::engine {

// Host copies of the small tensors, in the compute type of x.
template <typename S>
struct KernelParams {
  S alpha, beta, temperature;
  int n;                // number of thresholds (levels - 1)
  const S* levels;      // q_0..q_n
  const S* steps;       // s_i = q_i - q_{i-1}
  const S* thresholds;  // b_1..b_n
  // q_0..q_n padded with q_n to kNearestTable entries when n < kNearestTable, else null: the hard
  // kernels then look a level up with in-register permutes instead of one load per lane.
  const S* levels_table = nullptr;
  // Shared exponential: exp(-z_i) = exp(-T*beta*x) * exp(T*b_i), so one exp per element serves
  // all n sigmoids. Used when every T*b_i is small enough for both factors to stay finite;
  // -T*beta*x is clamped to [shared_lo, shared_hi], outside which every z_i is clamped anyway.
  bool shared_exp = false;
  S shared_lo = 0, shared_hi = 0;
  S exp_lo = 0, exp_hi = 0;           // e^-W, e^W
  const S* exp_thresholds = nullptr;  // exp(T*b_i)
  // Windowed evaluation (docs/METHOD.md, "The quantizer"): a term whose |z_i| >= kClampWindow is
  // clamped, a constant with no gradient. With sorted thresholds the beta*x axis is cut into
  // buckets; each lists the `window` consecutive thresholds that can be unclamped anywhere in it,
  // and its base folds q_0 and every other term's clamped value. 0: every term is evaluated.
  int window = 0;
  int window_buckets = 0;
  S window_origin = 0, window_scale = 0;  // bucket = (beta*x - origin) * scale, clamped
  const S* window_base = nullptr;         // [bucket]
  const int32_t* window_first = nullptr;  // [bucket]: index of its first listed threshold
  const S* window_thresholds = nullptr;   // [bucket * window + k]; padding: the largest S
  const S* window_steps = nullptr;        // [bucket * window + k]; padding: 0
  // Nearest-threshold form of a one-term window (window == 1 and n <= kNearestTable): the listed
  // threshold is then always the one nearest beta*x, found by counting the midpoints it passes,
  // and its tables fit in two vector registers, so the kernel needs no gathers. Null otherwise.
  const S* nearest_mid = nullptr;         // [j] = (b_j + b_{j+1}) / 2, j < n - 1
  const S* nearest_base = nullptr;        // [i]: the base of a bucket listing threshold i
  const S* nearest_thresholds = nullptr;  // [i] = b_i, padded to kNearestTable
  const S* nearest_steps = nullptr;       // [i] = s_i, padded to kNearestTable
};

// Entries of each nearest-threshold table (two 8-float registers).
inline constexpr int kNearestTable = 16;

// Storage for the window arrays that BuildWindow points KernelParams at.
template <typename S>
struct WindowTable {
  std::vector<S> base, thresholds, steps;
  std::vector<int32_t> first;
  std::vector<S> nearest_mid, nearest_base, nearest_thresholds, nearest_steps;
};

// Fills *table and sets p's window fields when the thresholds are finite and sorted and the window
// lists at most half of them (a quarter when p uses the shared exponential): a plain loop over all
// terms is no slower otherwise, and p->window stays 0. A one-term window over at most
// kNearestTable thresholds also gets the nearest-threshold tables. Needs p's temperature, n,
// levels, steps, thresholds and shared_exp; a windowed kernel computes its own exponentials.
void BuildWindow(KernelParams<float>* p, WindowTable<float>* table);
void BuildWindow(KernelParams<double>* p, WindowTable<double>* table);

// y for count elements; soft with a non-null d also writes each element's derivative sum
// sum_i s_i * sigma_i * (1 - sigma_i) (0 outside the clamp window) into d.
void ForwardKernel(const KernelParams<float>& p, const float* x, float* y, float* d, int64_t count,
                   bool hard);
void ForwardKernel(const KernelParams<double>& p, const double* x, double* y, double* d,
                   int64_t count, bool hard);

// dy/dx into gx (when not null) and the per-chunk sums: [0] sum g*bracket, [1] sum g*x*D, and
// with `thresholds` [2+i] sum g*s_i*sig_i*(1-sig_i); the shared factors are applied by the caller.
void BackwardKernel(const KernelParams<float>& p, const float* x, const float* g, float* gx,
                    int64_t count, bool hard, bool thresholds, double* sums);
void BackwardKernel(const KernelParams<double>& p, const double* x, const double* g, double* gx,
                    int64_t count, bool hard, bool thresholds, double* sums);

// The backward of a soft forward from its output y and derivative sums d, no sigmoid recomputed:
// sums[0] = sum g*y, sums[1] = sum g*x*d.
void BackwardSavedKernel(const KernelParams<float>& p, const float* x, const float* g,
                         const float* d, const float* y, float* gx, int64_t count, double* sums);
void BackwardSavedKernel(const KernelParams<double>& p, const double* x, const double* g,
                         const double* d, const double* y, double* gx, int64_t count, double* sums);

}  // namespace qnet::engine

#endif  // QNET_WORKERS_ENGINE_QUANTIZATION_QUANTIZER_CPU_KERNELS_H_
