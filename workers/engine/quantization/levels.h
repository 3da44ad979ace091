// Quantizer level sets and initialisation from a full-precision model (docs/METHOD.md, "Levels and
// initialisation"): which target levels a bit width means, and the starting alpha, beta and
// thresholds of a weight quantizer (from the weight tensor) or an activation quantizer (from
// calibration batches).
//
//   absl::StatusOr<torch::Tensor> levels = WeightLevels(3);        // {-4,-2,-1,0,1,2,4}
//   absl::StatusOr<QuantizerParams> p = InitWeightQuantizer(conv->weight, *levels);
//   torch::Tensor y = Quantize(w, torch::tensor(p->alpha), torch::tensor(p->beta), p->levels,
//                              p->thresholds, /*temperature=*/5.0, /*hard=*/false);
//
//   ActivationCalibrator calib(/*percentile=*/99.99);
//   for (const torch::Tensor& a : relu_outputs) {
//     if (absl::Status s = calib.Observe(a); !s.ok()) return s;
//   }
//   absl::StatusOr<QuantizerParams> ap = InitActivationQuantizer(calib, *ActivationLevels(2));
//
// Level and threshold tensors are 1-D float32 on the CPU; Quantize moves them where x lives.
#ifndef QNET_WORKERS_ENGINE_QUANTIZATION_LEVELS_H_
#define QNET_WORKERS_ENGINE_QUANTIZATION_LEVELS_H_

#include <torch/torch.h>

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace qnet::engine {

// The choice only exists at 3 bits: the paper's power-of-two set {-4,-2,-1,0,1,2,4} or the uniform
// {-3..3}. 1 bit is always {-1,+1}, 2 bits ternary {-1,0,+1}, 4 to 8 bits uniform symmetric
// integers (power-of-two sets past 3 bits would span +-2^(2^(k-1)-2): useless).
enum class WeightLevelScheme { kPowerOfTwo, kUniform };

// Weight levels for 1 <= bits <= 8: k >= 4 bits gives -(2^(k-1)-1)..2^(k-1)-1 (4 bits: -7..7).
// InvalidArgument for other bit widths.
absl::StatusOr<torch::Tensor> WeightLevels(
    int bits, WeightLevelScheme scheme = WeightLevelScheme::kPowerOfTwo);

// Activation levels (after ReLU) for 1 <= bits <= 8: {0, 1, ..., 2^bits - 1}.
absl::StatusOr<torch::Tensor> ActivationLevels(int bits);

// An explicit level list from a job: finite, strictly increasing (so sorted and distinct), 2 to
// kMaxLevels values. InvalidArgument saying which rule failed otherwise.
absl::StatusOr<torch::Tensor> LevelsFromList(const std::vector<double>& values);

// Same rules for a levels tensor (any floating dtype, any device): 1-D and as above.
absl::Status ValidateLevels(const torch::Tensor& levels);

// The factor a quantizer's alpha learns at, relative to the learning rate: (3 / max|q|)^2, at most
// 1. alpha's gradient, sum(dL/dy * q_j), grows with the levels while alpha (the range over max|q|)
// shrinks with them, so at one learning rate alpha's relative step grows as max|q|^2: 7,000 times
// a 2-bit quantizer's at 8 bits, where an EfficientNet's squeeze-excitation step sizes turned
// negative within four steps (docs/METHOD.md). The factor holds every quantizer at the relative
// step of the 2-bit ones (max|q| <= 3), which it leaves unchanged. `levels` as ValidateLevels.
double StepSizeLrFactor(const torch::Tensor& levels);

// A quantizer's starting point: levels q_0..q_n, thresholds b_1..b_n (float32, CPU), and the two
// scalars. The caller turns alpha and beta into learnable tensors.
struct QuantizerParams {
  torch::Tensor levels;
  torch::Tensor thresholds;
  double alpha = 1.0;
  double beta = 1.0;
};

// 1-D k-means (Lloyd) of `values` starting from `initial_centres` (must be strictly increasing):
// deterministic, exact per iteration (values are sorted once; each cluster is an interval between
// midpoints of adjacent centres, its mean read off prefix sums). Stops when no centre moves or
// after max_iterations. An empty cluster keeps its centre. Returns the centres, sorted.
// InvalidArgument for empty or non-finite values, or bad initial centres.
absl::StatusOr<std::vector<double>> KMeans1D(const torch::Tensor& values,
                                             const std::vector<double>& initial_centres,
                                             int max_iterations = 100);

// Weight quantizer from a full-precision weight tensor:
//   beta = 1.25 * max|q| / max|x|, alpha = 1 / beta;
//   thresholds (in the scaled domain beta*x): 2 levels: their midpoint (0 for {-1,+1});
//   3 levels symmetric about 0 ({-a,0,a}): {-0.05a, +0.05a} (the paper's ternary +-0.05);
//   otherwise k-means of beta*x into n+1 clusters started at the levels, b_i = midpoints of
//   adjacent sorted centres.
// An all-zero tensor (nothing to scale by) falls back to max|x| = 1: beta = 1.25*max|q|; this keeps
// a zero-initialised layer trainable instead of failing the job. InvalidArgument for an empty,
// non-floating or non-finite tensor, or invalid levels.
absl::StatusOr<QuantizerParams> InitWeightQuantizer(const torch::Tensor& weights,
                                                    const torch::Tensor& levels);

// Accumulates the range of an activation over calibration batches.
//
// percentile = 100 (default) tracks the exact max |x| over everything observed. Below 100 (e.g.
// 99.99) each batch contributes its own p-th percentile of |x| (nearest rank), and the calibrated
// range is their element-count-weighted mean: a few outlier activations, or one outlier batch,
// then cannot stretch the range that every other value is quantized against. It also keeps an
// evenly strided sample of every batch (at most kSamplePerBatch values) for MseFitRange. Not
// thread-safe.
class ActivationCalibrator {
 public:
  explicit ActivationCalibrator(double percentile = 100.0);

  // InvalidArgument for an empty, non-real or non-finite batch (the state is left unchanged),
  // or when the percentile given at construction was not in (0, 100].
  absl::Status Observe(const torch::Tensor& batch);

  static constexpr int64_t kSamplePerBatch = 65536;

  // The calibrated range (see above); 0 before any batch.
  double range() const;
  // The clipping range in (0, range()] whose hard quantization onto `levels` (scaled so that the
  // top level sits at the range, thresholds at midpoints) has the least mean squared error over
  // the sample, searched on a grid of 1% steps. At 2 bits this is far below the outlier range:
  // four levels spread up to the 99.9th percentile leave most activations in the bottom bin.
  // 0 before any batch; InvalidArgument for invalid levels.
  absl::StatusOr<double> MseFitRange(const torch::Tensor& levels) const;
  // Exact max |x| seen so far, whatever the percentile.
  double max_abs() const { return max_abs_; }
  int64_t batches() const { return batches_; }
  int64_t values() const { return values_; }
  double percentile() const { return percentile_; }

 private:
  double percentile_;
  double max_abs_ = 0.0;
  double weighted_percentile_sum_ = 0.0;  // sum over batches of numel * batch percentile
  int64_t batches_ = 0;
  int64_t values_ = 0;
  std::vector<torch::Tensor> samples_;
};

// Activation quantizer, thresholds the midpoints of adjacent levels (b_i = i - 0.5 for
// {0..2^k-1}). From a range: beta = 1.25 * max|q| / range (the paper's), alpha = 1 / beta. From a
// calibrator: beta = max|q| / MseFitRange, alpha = 1 / beta, so the top level sits at the
// MSE-fitted clipping range (the paper's 1.25 x max leaves 2-bit activations nearly all in level 0,
// and the network then trains back from a collapsed start). A range of 0 (a dead ReLU) falls back
// to 1, as for weights. FailedPrecondition before any batch was observed; InvalidArgument for bad
// levels or a negative or non-finite range.
absl::StatusOr<QuantizerParams> InitActivationQuantizer(const ActivationCalibrator& calibrator,
                                                        const torch::Tensor& levels);
absl::StatusOr<QuantizerParams> InitActivationQuantizer(double range, const torch::Tensor& levels);

}  // namespace qnet::engine

#endif  // QNET_WORKERS_ENGINE_QUANTIZATION_LEVELS_H_
