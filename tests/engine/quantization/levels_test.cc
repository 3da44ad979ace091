// Tests of level sets, 1-D k-means and quantizer initialisation (docs/METHOD.md "Levels and
// initialisation").

#include "workers/engine/quantization/levels.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <limits>
#include <vector>

namespace qnet::engine {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

std::vector<double> Values(const torch::Tensor& t) {
  const torch::Tensor d = t.to(torch::kDouble).contiguous();
  return std::vector<double>(d.data_ptr<double>(), d.data_ptr<double>() + d.numel());
}

TEST(LevelsTest, WeightLevelsByBits) {
  EXPECT_EQ(Values(*WeightLevels(1)), (std::vector<double>{-1, 1}));
  EXPECT_EQ(Values(*WeightLevels(2)), (std::vector<double>{-1, 0, 1}));
  EXPECT_EQ(Values(*WeightLevels(3)), (std::vector<double>{-4, -2, -1, 0, 1, 2, 4}));
  EXPECT_EQ(Values(*WeightLevels(3, WeightLevelScheme::kUniform)),
            (std::vector<double>{-3, -2, -1, 0, 1, 2, 3}));
  const std::vector<double> four = Values(*WeightLevels(4));
  ASSERT_EQ(four.size(), 15u);
  EXPECT_EQ(four.front(), -7);
  EXPECT_EQ(four.back(), 7);
  const torch::Tensor eight = *WeightLevels(8);
  EXPECT_EQ(eight.numel(), 255);
  EXPECT_EQ(eight.scalar_type(), torch::kFloat);
  EXPECT_TRUE(ValidateLevels(eight).ok());
  EXPECT_TRUE(absl::IsInvalidArgument(WeightLevels(0).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(WeightLevels(9).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(WeightLevels(-3).status()));
}

TEST(LevelsTest, ActivationLevelsByBits) {
  EXPECT_EQ(Values(*ActivationLevels(1)), (std::vector<double>{0, 1}));
  EXPECT_EQ(Values(*ActivationLevels(2)), (std::vector<double>{0, 1, 2, 3}));
  const std::vector<double> eight = Values(*ActivationLevels(8));
  ASSERT_EQ(eight.size(), 256u);
  EXPECT_EQ(eight.back(), 255);
  EXPECT_TRUE(absl::IsInvalidArgument(ActivationLevels(0).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(ActivationLevels(9).status()));
}

TEST(LevelsTest, StepSizeLrFactorHoldsAlphaAtTheTwoBitRelativeStep) {
  // 2-bit and narrower level sets (max|q| <= 3) keep the learning rate as it is.
  for (int bits : {1, 2}) {
    EXPECT_EQ(StepSizeLrFactor(*ActivationLevels(bits)), 1.0) << bits;
    EXPECT_EQ(StepSizeLrFactor(*WeightLevels(bits)), 1.0) << bits;
  }
  EXPECT_EQ(StepSizeLrFactor(*WeightLevels(3, WeightLevelScheme::kUniform)), 1.0);
  // Wider ones scale by (3 / max|q|)^2.
  EXPECT_DOUBLE_EQ(StepSizeLrFactor(*WeightLevels(3)), 9.0 / 16);
  EXPECT_DOUBLE_EQ(StepSizeLrFactor(*WeightLevels(4)), 9.0 / 49);
  EXPECT_DOUBLE_EQ(StepSizeLrFactor(*ActivationLevels(4)), 9.0 / 225);
  EXPECT_DOUBLE_EQ(StepSizeLrFactor(*ActivationLevels(8)), 9.0 / (255.0 * 255.0));
  EXPECT_DOUBLE_EQ(StepSizeLrFactor(*WeightLevels(8)), 9.0 / (127.0 * 127.0));
}

TEST(LevelsTest, ExplicitListValidation) {
  absl::StatusOr<torch::Tensor> ok = LevelsFromList({-1.5, -0.25, 0.0, 2.0});
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(Values(*ok), (std::vector<double>{-1.5, -0.25, 0.0, 2.0}));
  EXPECT_TRUE(absl::IsInvalidArgument(LevelsFromList({}).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(LevelsFromList({1.0}).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(LevelsFromList({1.0, 0.0}).status()));       // unsorted
  EXPECT_TRUE(absl::IsInvalidArgument(LevelsFromList({0.0, 1.0, 1.0}).status()));  // duplicate
  EXPECT_TRUE(absl::IsInvalidArgument(LevelsFromList({0.0, kNaN}).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(LevelsFromList({0.0, kInf}).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(LevelsFromList({1.0, 1.0 + 1e-12}).status()));  // same float
  std::vector<double> many(257);
  for (size_t i = 0; i < many.size(); ++i) many[i] = static_cast<double>(i);
  EXPECT_TRUE(absl::IsInvalidArgument(LevelsFromList(many).status()));
  many.pop_back();
  EXPECT_TRUE(LevelsFromList(many).ok());

  EXPECT_TRUE(absl::IsInvalidArgument(ValidateLevels(torch::Tensor())));
  EXPECT_TRUE(absl::IsInvalidArgument(ValidateLevels(torch::tensor({0.0, 1.0}).view({1, 2}))));
  EXPECT_TRUE(absl::IsInvalidArgument(ValidateLevels(torch::tensor({0, 1}))));  // integer
  EXPECT_TRUE(absl::IsInvalidArgument(ValidateLevels(torch::tensor({2.0, 1.0}))));
}

TEST(LevelsTest, KMeansRecoversMixtureCentres) {
  torch::manual_seed(11);
  const std::vector<double> truth = {-3.0, 0.0, 2.5};
  std::vector<torch::Tensor> parts;
  for (double c : truth) parts.push_back(torch::randn({3000}, torch::kDouble) * 0.1 + c);
  const torch::Tensor values = torch::cat(parts).index_select(0, torch::randperm(9000));
  absl::StatusOr<std::vector<double>> centres = KMeans1D(values, {-4.0, 0.5, 4.0});
  ASSERT_TRUE(centres.ok()) << centres.status();
  ASSERT_EQ(centres->size(), 3u);
  for (size_t j = 0; j < 3; ++j) {
    // The recovered centre is the sample mean of its component (components are well separated).
    EXPECT_NEAR((*centres)[j], parts[j].mean().item<double>(), 1e-9);
    EXPECT_NEAR((*centres)[j], truth[j], 0.01);
  }
  // Deterministic: same input, same answer, bit for bit.
  EXPECT_EQ(*KMeans1D(values, {-4.0, 0.5, 4.0}), *centres);
  // A centre with no values keeps its place.
  absl::StatusOr<std::vector<double>> extra = KMeans1D(values, {-4.0, 0.5, 4.0, 100.0});
  ASSERT_TRUE(extra.ok());
  EXPECT_EQ((*extra)[3], 100.0);
}

TEST(LevelsTest, KMeansRejectsBadInput) {
  const torch::Tensor v = torch::randn({10});
  EXPECT_TRUE(absl::IsInvalidArgument(KMeans1D(torch::empty({0}), {0.0}).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(KMeans1D(torch::tensor({1.0, kNaN}), {0.0}).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(KMeans1D(v, {}).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(KMeans1D(v, {1.0, 0.0}).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(KMeans1D(v, {0.0, 1.0}, -1).status()));
}

TEST(LevelsTest, BinaryWeightInit) {
  torch::manual_seed(12);
  const torch::Tensor w = torch::randn({64, 3, 3, 3}) * 0.05;
  absl::StatusOr<QuantizerParams> p = InitWeightQuantizer(w, *WeightLevels(1));
  ASSERT_TRUE(p.ok()) << p.status();
  const double max_abs = w.abs().max().item<double>();
  EXPECT_NEAR(p->beta, 1.25 * 1.0 / max_abs, 1e-9 * p->beta);
  EXPECT_NEAR(p->alpha * p->beta, 1.0, 1e-12);
  EXPECT_EQ(Values(p->thresholds), (std::vector<double>{0.0}));
  EXPECT_EQ(Values(p->levels), (std::vector<double>{-1, 1}));
}

TEST(LevelsTest, TernaryWeightInit) {
  torch::manual_seed(13);
  const torch::Tensor w = torch::randn({1000}) * 0.2;
  absl::StatusOr<QuantizerParams> p = InitWeightQuantizer(w, *WeightLevels(2));
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_NEAR(p->beta, 1.25 / w.abs().max().item<double>(), 1e-6 * p->beta);
  const std::vector<double> th = Values(p->thresholds);
  ASSERT_EQ(th.size(), 2u);
  EXPECT_NEAR(th[0], -0.05, 1e-7);
  EXPECT_NEAR(th[1], 0.05, 1e-7);
}

TEST(LevelsTest, ThreeBitWeightInitUsesKMeansMidpoints) {
  torch::manual_seed(14);
  // beta*x clusters tightly at each level; one value at 5 fixes max|x| so that beta = 1.25*4/5 = 1.
  const std::vector<double> q = {-4, -2, -1, 0, 1, 2, 4};
  std::vector<torch::Tensor> parts;
  for (double level : q) parts.push_back(torch::randn({2000}, torch::kDouble) * 0.02 + level);
  parts.push_back(torch::tensor({5.0}, torch::kDouble));
  const torch::Tensor w = torch::cat(parts).to(torch::kFloat);
  absl::StatusOr<QuantizerParams> p = InitWeightQuantizer(w, *WeightLevels(3));
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_NEAR(p->beta, 1.0, 1e-6);
  const std::vector<double> th = Values(p->thresholds);
  const std::vector<double> midpoints = {-3, -1.5, -0.5, 0.5, 1.5, 3};
  ASSERT_EQ(th.size(), midpoints.size());
  for (size_t i = 0; i < th.size(); ++i) EXPECT_NEAR(th[i], midpoints[i], 0.01) << i;

  // On Gaussian weights the thresholds are the midpoints of the k-means centres of beta*x.
  const torch::Tensor g = torch::randn({20000}) * 0.1;
  absl::StatusOr<QuantizerParams> pg = InitWeightQuantizer(g, *WeightLevels(3));
  ASSERT_TRUE(pg.ok());
  const std::vector<double> centres = *KMeans1D(g.to(torch::kDouble) * pg->beta, q);
  const std::vector<double> tg = Values(pg->thresholds);
  for (size_t i = 0; i < tg.size(); ++i) {
    EXPECT_NEAR(tg[i], 0.5 * (centres[i] + centres[i + 1]), 1e-6);
    if (i > 0) {
      EXPECT_LT(tg[i - 1], tg[i]);
    }
  }
}

TEST(LevelsTest, WeightInitBadInput) {
  const torch::Tensor lv = *WeightLevels(2);
  EXPECT_TRUE(absl::IsInvalidArgument(InitWeightQuantizer(torch::empty({0}), lv).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(InitWeightQuantizer(torch::Tensor(), lv).status()));
  EXPECT_TRUE(
      absl::IsInvalidArgument(InitWeightQuantizer(torch::tensor({1.0f, NAN}), lv).status()));
  EXPECT_TRUE(
      absl::IsInvalidArgument(InitWeightQuantizer(torch::tensor({1.0f, INFINITY}), lv).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(InitWeightQuantizer(torch::tensor({1, 2}), lv).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(
      InitWeightQuantizer(torch::randn({4}), torch::tensor({1.0, 0.0})).status()));
  // All zeros: documented fallback max|x| = 1.
  absl::StatusOr<QuantizerParams> zeros = InitWeightQuantizer(torch::zeros({16}), *WeightLevels(3));
  ASSERT_TRUE(zeros.ok()) << zeros.status();
  EXPECT_DOUBLE_EQ(zeros->beta, 1.25 * 4);
  EXPECT_EQ(zeros->thresholds.numel(), 6);
  EXPECT_TRUE(std::isfinite(zeros->thresholds.sum().item<double>()));
}

TEST(LevelsTest, ActivationCalibrationMax) {
  torch::manual_seed(15);
  ActivationCalibrator calib;
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(calib.Observe(torch::rand({64, 100}) * 6.0).ok());
  EXPECT_EQ(calib.batches(), 4);
  EXPECT_EQ(calib.values(), 4 * 6400);
  EXPECT_NEAR(calib.range(), 6.0, 0.01);
  EXPECT_EQ(calib.range(), calib.max_abs());
  absl::StatusOr<QuantizerParams> p = InitActivationQuantizer(calib, *ActivationLevels(2));
  ASSERT_TRUE(p.ok()) << p.status();
  // U(0, 6) onto 4 levels with midpoint thresholds: the squared error is least with the top level
  // at 5.16 (computed numerically); the search grid is 1% of the range.
  EXPECT_NEAR(3.0 / p->beta, 5.16, 0.07);
  EXPECT_NEAR(p->alpha * p->beta, 1.0, 1e-12);
  EXPECT_EQ(Values(p->thresholds), (std::vector<double>{0.5, 1.5, 2.5}));
}

// Mean squared error of the hard quantizer (midpoint thresholds) with parameters p over x.
double HardQuantizationError(const QuantizerParams& p, const torch::Tensor& x) {
  const torch::Tensor codes = torch::bucketize(x * p.beta, p.thresholds.to(torch::kDouble));
  return (p.levels.to(torch::kDouble).index({codes}) * p.alpha - x).pow(2).mean().item<double>();
}

TEST(LevelsTest, MseFitRangeBeatsTheHeadroomInitOnSkewedActivations) {
  torch::manual_seed(17);
  ActivationCalibrator calib(99.9);
  std::vector<torch::Tensor> batches;
  for (int i = 0; i < 4; ++i) {
    batches.push_back(-torch::log1p(-torch::rand({1 << 18}, torch::kDouble)));  // Exponential(1)
    ASSERT_TRUE(calib.Observe(batches.back()).ok());
  }
  const torch::Tensor x = torch::cat(batches);
  for (int bits : {2, 3}) {
    const torch::Tensor levels = *ActivationLevels(bits);
    absl::StatusOr<double> fit = calib.MseFitRange(levels);
    ASSERT_TRUE(fit.ok()) << fit.status();
    EXPECT_GT(*fit, 0.0);
    EXPECT_LT(*fit, calib.range());
    const QuantizerParams fitted = *InitActivationQuantizer(calib, levels);
    const QuantizerParams headroom = *InitActivationQuantizer(calib.range(), levels);
    const double e_fit = HardQuantizationError(fitted, x);
    const double e_headroom = HardQuantizationError(headroom, x);
    // The fit matters most where levels are few.
    EXPECT_LT(e_fit, (bits == 2 ? 0.8 : 1.0) * e_headroom) << bits << " bits";
    // No range on the grid does better (the fit is the grid's minimum, up to the sample).
    for (double f : {0.3, 0.5, 0.7, 0.9}) {
      EXPECT_LE(e_fit, HardQuantizationError(
                           *InitActivationQuantizer(calib.range() * f * 1.25, levels), x) +
                           1e-4)
          << bits << " bits, f=" << f;
    }
  }
  EXPECT_TRUE(absl::IsInvalidArgument(calib.MseFitRange(torch::tensor({1.0f, 0.0f})).status()));
}

TEST(LevelsTest, ActivationCalibrationPercentileResistsOutliers) {
  torch::manual_seed(16);
  // Exponential(1): the 99.99th percentile is -ln(1e-4) = 9.21.
  ActivationCalibrator pct(99.99);
  ActivationCalibrator max;
  for (int i = 0; i < 3; ++i) {
    torch::Tensor batch = -torch::log1p(-torch::rand({1 << 20}, torch::kDouble));
    batch[17] = 1e6;  // an outlier in every batch
    ASSERT_TRUE(pct.Observe(batch).ok());
    ASSERT_TRUE(max.Observe(batch).ok());
  }
  EXPECT_NEAR(pct.range(), -std::log(1e-4), 0.3);
  EXPECT_EQ(pct.max_abs(), 1e6);
  EXPECT_EQ(max.range(), 1e6);
}

TEST(LevelsTest, ActivationCalibrationErrors) {
  ActivationCalibrator calib;
  EXPECT_TRUE(absl::IsInvalidArgument(calib.Observe(torch::empty({0}))));
  EXPECT_TRUE(absl::IsInvalidArgument(calib.Observe(torch::tensor({1.0, kNaN}))));
  EXPECT_TRUE(absl::IsInvalidArgument(calib.Observe(torch::tensor({true, false}))));
  EXPECT_EQ(calib.batches(), 0);  // failed batches leave no trace
  EXPECT_EQ(InitActivationQuantizer(calib, *ActivationLevels(2)).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::IsInvalidArgument(ActivationCalibrator(0.0).Observe(torch::ones({3}))));
  EXPECT_TRUE(absl::IsInvalidArgument(ActivationCalibrator(100.5).Observe(torch::ones({3}))));
  EXPECT_TRUE(
      absl::IsInvalidArgument(InitActivationQuantizer(-1.0, *ActivationLevels(2)).status()));
  EXPECT_TRUE(
      absl::IsInvalidArgument(InitActivationQuantizer(kNaN, *ActivationLevels(2)).status()));
  EXPECT_TRUE(
      absl::IsInvalidArgument(InitActivationQuantizer(1.0, torch::tensor({0.0, 0.0})).status()));
  // A dead ReLU (all zeros) falls back to range 1.
  ASSERT_TRUE(calib.Observe(torch::zeros({8})).ok());
  absl::StatusOr<QuantizerParams> p = InitActivationQuantizer(calib, *ActivationLevels(1));
  ASSERT_TRUE(p.ok());
  EXPECT_DOUBLE_EQ(p->beta, 1.25);
}

}  // namespace
}  // namespace qnet::engine
