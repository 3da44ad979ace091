#include "workers/engine/quantization/levels.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "absl/strings/str_cat.h"
#include "workers/engine/quantization/quantizer.h"

namespace qnet::engine {
namespace {

constexpr double kBetaHeadroom = 1.25;  // beta = (5/4) * max|q| / max|x|, as the paper initialises
constexpr double kTernaryThreshold = 0.05;

torch::Tensor FloatTensor(const std::vector<double>& values) {
  return torch::tensor(values, torch::kDouble).to(torch::kFloat);
}

std::vector<double> ToDoubles(const torch::Tensor& t) {
  const torch::Tensor d = t.detach().to(torch::kCPU, torch::kDouble).contiguous().flatten();
  return std::vector<double>(d.data_ptr<double>(), d.data_ptr<double>() + d.numel());
}

absl::Status CheckStrictlyIncreasing(const std::vector<double>& v, const char* what) {
  if (v.size() < 2 || v.size() > static_cast<size_t>(kMaxLevels)) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " must have 2 to ", kMaxLevels, " values, got ", v.size()));
  }
  for (size_t i = 0; i < v.size(); ++i) {
    if (!std::isfinite(v[i])) {
      return absl::InvalidArgumentError(absl::StrCat(what, "[", i, "] is not finite"));
    }
    if (i > 0 && !(v[i - 1] < v[i])) {
      return absl::InvalidArgumentError(absl::StrCat(what, " must be sorted and distinct: [", i - 1,
                                                     "] = ", v[i - 1], ", [", i, "] = ", v[i]));
    }
  }
  return absl::OkStatus();
}

// A real-valued tensor as doubles, or InvalidArgument for empty / non-real / non-finite input.
absl::StatusOr<torch::Tensor> FiniteDoubles(const torch::Tensor& t, const char* what) {
  if (!t.defined() || t.numel() == 0) {
    return absl::InvalidArgumentError(absl::StrCat(what, " is empty"));
  }
  if (t.is_complex() || t.scalar_type() == torch::kBool) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " must be real-valued, got ", std::string(t.dtype().name())));
  }
  torch::Tensor d = t.detach().to(torch::kCPU, torch::kDouble).contiguous().flatten();
  if (!torch::isfinite(d).all().item<bool>()) {
    return absl::InvalidArgumentError(absl::StrCat(what, " holds NaN or infinite values"));
  }
  return d;
}

double MaxAbs(const std::vector<double>& v) {
  double m = 0;
  for (double x : v) m = std::max(m, std::abs(x));
  return m;
}

std::vector<double> Midpoints(const std::vector<double>& sorted) {
  std::vector<double> mid;
  for (size_t i = 1; i < sorted.size(); ++i) mid.push_back(0.5 * (sorted[i - 1] + sorted[i]));
  return mid;
}

}  // namespace

absl::StatusOr<torch::Tensor> WeightLevels(int bits, WeightLevelScheme scheme) {
  if (bits < 1 || bits > 8) {
    return absl::InvalidArgumentError(
        absl::StrCat("weight bits must be between 1 and 8, got ", bits));
  }
  if (bits == 1) return FloatTensor({-1.0, 1.0});
  if (bits == 3 && scheme == WeightLevelScheme::kPowerOfTwo) {
    return FloatTensor({-4.0, -2.0, -1.0, 0.0, 1.0, 2.0, 4.0});
  }
  // Uniform symmetric integers; 2 bits gives the ternary {-1, 0, 1}.
  const int top = (1 << (bits - 1)) - 1;
  return torch::arange(-top, top + 1, torch::kFloat);
}

absl::StatusOr<torch::Tensor> ActivationLevels(int bits) {
  if (bits < 1 || bits > 8) {
    return absl::InvalidArgumentError(
        absl::StrCat("activation bits must be between 1 and 8, got ", bits));
  }
  return torch::arange(0, 1 << bits, torch::kFloat);
}

absl::StatusOr<torch::Tensor> LevelsFromList(const std::vector<double>& values) {
  // Checked after the float32 cast too: distinct doubles may round to one float.
  if (absl::Status s = CheckStrictlyIncreasing(values, "levels"); !s.ok()) return s;
  torch::Tensor levels = FloatTensor(values);
  if (absl::Status s = CheckStrictlyIncreasing(ToDoubles(levels), "levels (as float32)"); !s.ok()) {
    return s;
  }
  return levels;
}

absl::Status ValidateLevels(const torch::Tensor& levels) {
  if (!levels.defined() || !levels.is_floating_point() || levels.dim() != 1) {
    return absl::InvalidArgumentError("levels must be a 1-D floating-point tensor");
  }
  return CheckStrictlyIncreasing(ToDoubles(levels), "levels");
}

absl::StatusOr<std::vector<double>> KMeans1D(const torch::Tensor& values,
                                             const std::vector<double>& initial_centres,
                                             int max_iterations) {
  absl::StatusOr<torch::Tensor> d = FiniteDoubles(values, "k-means values");
  if (!d.ok()) return d.status();
  if (initial_centres.empty()) return absl::InvalidArgumentError("k-means needs >= 1 centre");
  for (size_t i = 0; i < initial_centres.size(); ++i) {
    if (!std::isfinite(initial_centres[i]) ||
        (i > 0 && !(initial_centres[i - 1] < initial_centres[i]))) {
      return absl::InvalidArgumentError("k-means initial centres must be finite and increasing");
    }
  }
  if (max_iterations < 0) return absl::InvalidArgumentError("k-means max_iterations < 0");

  const std::vector<double> xs = ToDoubles(std::get<0>(d->sort()));
  std::vector<double> prefix(xs.size() + 1, 0.0);
  for (size_t i = 0; i < xs.size(); ++i) prefix[i + 1] = prefix[i] + xs[i];

  std::vector<double> centres = initial_centres;
  const size_t k = centres.size();
  std::vector<size_t> ends(k);
  for (int iter = 0; iter < max_iterations; ++iter) {
    // Cluster j is [ends[j-1], ends[j]) in sorted order: the values below the midpoint to the next
    // centre (a value on a midpoint goes up, as H(beta*x - b) >= b does).
    for (size_t j = 0; j + 1 < k; ++j) {
      const double mid = 0.5 * (centres[j] + centres[j + 1]);
      ends[j] = std::lower_bound(xs.begin(), xs.end(), mid) - xs.begin();
    }
    ends[k - 1] = xs.size();
    bool moved = false;
    size_t begin = 0;
    for (size_t j = 0; j < k; ++j) {
      const size_t end = ends[j];
      if (end > begin) {
        const double mean = (prefix[end] - prefix[begin]) / static_cast<double>(end - begin);
        moved |= mean != centres[j];
        centres[j] = mean;
      }
      begin = std::max(begin, end);
    }
    if (!moved) break;
  }
  // Lloyd steps in 1-D keep the centres ordered; sorting only guards against rounding ties.
  std::sort(centres.begin(), centres.end());
  return centres;
}

absl::StatusOr<QuantizerParams> InitWeightQuantizer(const torch::Tensor& weights,
                                                    const torch::Tensor& levels) {
  if (absl::Status s = ValidateLevels(levels); !s.ok()) return s;
  if (weights.defined() && !weights.is_floating_point()) {
    return absl::InvalidArgumentError("weights must be floating point");
  }
  absl::StatusOr<torch::Tensor> w = FiniteDoubles(weights, "weights");
  if (!w.ok()) return w.status();

  const std::vector<double> q = ToDoubles(levels);
  double max_x = w->abs().max().item<double>();
  if (max_x == 0) max_x = 1;  // all zeros: see the header
  QuantizerParams p;
  p.beta = kBetaHeadroom * MaxAbs(q) / max_x;
  p.alpha = 1.0 / p.beta;
  p.levels = levels.detach().to(torch::kCPU, torch::kFloat).contiguous().clone();

  const size_t n = q.size() - 1;
  std::vector<double> thresholds;
  if (n == 1) {
    thresholds = Midpoints(q);
  } else if (n == 2 && q[1] == 0 && q[0] == -q[2]) {
    thresholds = {-kTernaryThreshold * q[2], kTernaryThreshold * q[2]};
  } else {
    absl::StatusOr<std::vector<double>> centres = KMeans1D(*w * p.beta, q);
    if (!centres.ok()) return centres.status();
    thresholds = Midpoints(*centres);
  }
  p.thresholds = FloatTensor(thresholds);
  return p;
}

double StepSizeLrFactor(const torch::Tensor& levels) {
  constexpr double kTwoBitMaxLevel = 3;
  const double q = levels.detach().abs().max().item<double>();
  return q <= kTwoBitMaxLevel ? 1.0 : (kTwoBitMaxLevel / q) * (kTwoBitMaxLevel / q);
}

ActivationCalibrator::ActivationCalibrator(double percentile) : percentile_(percentile) {}

absl::Status ActivationCalibrator::Observe(const torch::Tensor& batch) {
  if (!(percentile_ > 0 && percentile_ <= 100)) {
    return absl::InvalidArgumentError(
        absl::StrCat("calibration percentile must be in (0, 100], got ", percentile_));
  }
  absl::StatusOr<torch::Tensor> d = FiniteDoubles(batch, "calibration batch");
  if (!d.ok()) return d.status();
  const torch::Tensor a = d->abs();
  const int64_t count = a.numel();
  max_abs_ = std::max(max_abs_, a.max().item<double>());
  if (percentile_ < 100) {
    // Nearest rank: the smallest value with at least p% of the batch at or below it.
    const auto rank = static_cast<int64_t>(std::ceil(percentile_ / 100.0 * count));
    const double value =
        std::get<0>(a.kthvalue(std::clamp<int64_t>(rank, 1, count))).item<double>();
    weighted_percentile_sum_ += value * static_cast<double>(count);
  }
  const int64_t stride = (count + kSamplePerBatch - 1) / kSamplePerBatch;
  samples_.push_back(a.slice(0, 0, count, stride).clone());
  ++batches_;
  values_ += count;
  return absl::OkStatus();
}

absl::StatusOr<double> ActivationCalibrator::MseFitRange(const torch::Tensor& levels) const {
  if (absl::Status s = ValidateLevels(levels); !s.ok()) return s;
  const double upper = range();
  if (samples_.empty() || upper <= 0) return upper;
  // Sorted once, with prefix sums of x and x^2: every candidate's error is then a sum over its
  // bins of S2 - 2 c S1 + n c^2, each bin an interval of the sorted sample.
  const torch::Tensor sorted = std::get<0>(torch::cat(samples_).sort());
  const std::vector<double> x = ToDoubles(sorted);
  std::vector<double> s1(x.size() + 1, 0.0), s2(x.size() + 1, 0.0);
  for (size_t i = 0; i < x.size(); ++i) {
    s1[i + 1] = s1[i] + x[i];
    s2[i + 1] = s2[i] + x[i] * x[i];
  }
  const std::vector<double> q = ToDoubles(levels);
  const std::vector<double> mid = Midpoints(q);
  const double q_max = MaxAbs(q);
  double best_range = upper;
  double best_error = std::numeric_limits<double>::infinity();
  for (int percent = 1; percent <= 100; ++percent) {
    const double r = upper * percent / 100.0;
    const double scale = q_max / r;  // beta: the top level lands on r
    double error = 0;
    size_t begin = 0;
    for (size_t j = 0; j < q.size(); ++j) {
      const size_t end = j < mid.size()
                             ? static_cast<size_t>(
                                   std::upper_bound(x.begin(), x.end(), mid[j] / scale) - x.begin())
                             : x.size();
      const double c = q[j] / scale;
      error += (s2[end] - s2[begin]) - 2 * c * (s1[end] - s1[begin]) +
               static_cast<double>(end - begin) * c * c;
      begin = std::max(begin, end);
    }
    if (error < best_error) {
      best_error = error;
      best_range = r;
    }
  }
  return best_range;
}

double ActivationCalibrator::range() const {
  if (percentile_ >= 100 || values_ == 0) return max_abs_;
  return weighted_percentile_sum_ / static_cast<double>(values_);
}

namespace {

// beta = headroom * max|q| / range (range 0, a dead ReLU, counts as 1), alpha = 1 / beta,
// thresholds the midpoints of the levels.
absl::StatusOr<QuantizerParams> ActivationParams(double range, const torch::Tensor& levels,
                                                 double headroom) {
  if (absl::Status s = ValidateLevels(levels); !s.ok()) return s;
  if (!std::isfinite(range) || range < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("activation range must be finite and >= 0, got ", range));
  }
  const std::vector<double> q = ToDoubles(levels);
  QuantizerParams p;
  p.beta = headroom * MaxAbs(q) / (range == 0 ? 1.0 : range);
  p.alpha = 1.0 / p.beta;
  p.levels = levels.detach().to(torch::kCPU, torch::kFloat).contiguous().clone();
  p.thresholds = FloatTensor(Midpoints(q));
  return p;
}

}  // namespace

absl::StatusOr<QuantizerParams> InitActivationQuantizer(const ActivationCalibrator& calibrator,
                                                        const torch::Tensor& levels) {
  if (calibrator.batches() == 0) {
    return absl::FailedPreconditionError("activation calibration observed no batches");
  }
  absl::StatusOr<double> range = calibrator.MseFitRange(levels);
  if (!range.ok()) return range.status();
  // The top level sits at the fitted range; a dead ReLU (range 0) falls back as for weights.
  return ActivationParams(*range, levels, *range == 0 ? kBetaHeadroom : 1.0);
}

absl::StatusOr<QuantizerParams> InitActivationQuantizer(double range, const torch::Tensor& levels) {
  return ActivationParams(range, levels, kBetaHeadroom);
}

}  // namespace qnet::engine
