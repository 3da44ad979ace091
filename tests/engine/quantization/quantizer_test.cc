// Tests of the fused quantizer op against its ATen composition, finite differences and the
// properties docs/METHOD.md "The quantizer" states (exact hard levels, clamp window, thread count).

#include "workers/engine/quantization/quantizer.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "workers/engine/quantization/quantize_buffers.h"
#include "workers/engine/quantization/quantizer_cpu_kernels.h"
#include "workers/engine/quantization/quantizer_kernels.h"

namespace qnet::engine {
namespace {

struct LevelSet {
  std::string name;
  std::vector<double> levels;
  std::vector<double> thresholds;
};

std::vector<LevelSet> LevelSets() {
  return {
      {"binary", {-1, 1}, {0}},
      {"ternary", {-1, 0, 1}, {-0.05, 0.05}},
      {"pow2", {-4, -2, -1, 0, 1, 2, 4}, {-3, -1.5, -0.5, 0.5, 1.5, 3}},
      {"act2", {0, 1, 2, 3}, {0.5, 1.5, 2.5}},
      {"uneven", {-0.7, 0.1, 0.35, 1.2}, {-0.3, 0.2, 0.9}},
  };
}

torch::Tensor T1(const std::vector<double>& v, torch::ScalarType type) {
  return torch::tensor(v, torch::kDouble).to(type);
}

// Everything one call needs, as leaves that require grad.
struct Inputs {
  torch::Tensor x, alpha, beta, levels, thresholds;

  Inputs(torch::Tensor x_in, double a, double b, const LevelSet& set, torch::ScalarType type,
         bool thresholds_grad = true) {
    x = x_in.to(type).detach().requires_grad_(true);
    alpha = torch::tensor(a, torch::dtype(type)).requires_grad_(true);
    beta = torch::tensor(b, torch::dtype(type)).requires_grad_(true);
    levels = T1(set.levels, type);
    thresholds = T1(set.thresholds, type).requires_grad_(thresholds_grad);
  }
};

using QuantizeFn =
    std::function<torch::Tensor(const torch::Tensor&, const torch::Tensor&, const torch::Tensor&,
                                const torch::Tensor&, const torch::Tensor&, double, bool)>;

struct Result {
  torch::Tensor y, gx, galpha, gbeta, gthr;
};

Result RunWithGrads(const QuantizeFn& fn, const Inputs& in, const torch::Tensor& grad_y, double t,
                    bool hard) {
  Result r;
  r.y = fn(in.x, in.alpha, in.beta, in.levels, in.thresholds, t, hard);
  std::vector<torch::Tensor> wrt = {in.x, in.alpha, in.beta};
  if (in.thresholds.requires_grad()) wrt.push_back(in.thresholds);
  const auto grads = torch::autograd::grad({r.y}, wrt, {grad_y});
  r.gx = grads[0];
  r.galpha = grads[1];
  r.gbeta = grads[2];
  if (grads.size() > 3) r.gthr = grads[3];
  r.y = r.y.detach();
  return r;
}

const QuantizeFn kFused = [](const torch::Tensor& x, const torch::Tensor& a, const torch::Tensor& b,
                             const torch::Tensor& l, const torch::Tensor& th, double t,
                             bool h) { return Quantize(x, a, b, l, th, t, h); };
const QuantizeFn kComposite = [](const torch::Tensor& x, const torch::Tensor& a,
                                 const torch::Tensor& b, const torch::Tensor& l,
                                 const torch::Tensor& th, double t,
                                 bool h) { return QuantizeComposite(x, a, b, l, th, t, h); };

// |a - b| <= atol + rtol * |b| elementwise, with a readable failure.
void ExpectClose(const torch::Tensor& a, const torch::Tensor& b, double rtol, double atol,
                 const std::string& what) {
  ASSERT_EQ(a.sizes(), b.sizes()) << what;
  const torch::Tensor ad = a.to(torch::kDouble);
  const torch::Tensor bd = b.to(torch::kDouble);
  const torch::Tensor excess = (ad - bd).abs() - (atol + rtol * bd.abs());
  EXPECT_LE(excess.max().item<double>(), 0.0)
      << what << ": max |diff| = " << (ad - bd).abs().max().item<double>();
}

// Float inputs take one of two kernel paths: one exp per element shared by all sigmoids while
// T*|b_i| stays small (every set at T <= 20, ternary and binary at 200), one exp per sigmoid
// otherwise (the wider sets at T = 200). Both must match the composite.
TEST(QuantizeTest, MatchesCompositeInFloat) {
  torch::manual_seed(1);
  for (const LevelSet& set : LevelSets()) {
    for (const double t : {1.0, 5.0, 20.0, 200.0}) {
      for (const bool hard : {false, true}) {
        for (const int64_t size : {1, 7, 13, 100003}) {
          SCOPED_TRACE(set.name + " T=" + std::to_string(t) + (hard ? " hard" : " soft") +
                       " n=" + std::to_string(size));
          // Spread x over the levels' range and a little past it.
          const double span = set.levels.back() - set.levels.front();
          const Inputs in(torch::randn({size}) * span * 0.4, 0.37, 1.1, set, torch::kFloat);
          const torch::Tensor g = torch::randn({size});
          const Result fused = RunWithGrads(kFused, in, g, t, hard);
          const Result ref = RunWithGrads(kComposite, in, g, t, hard);
          if (hard) {
            EXPECT_TRUE(torch::equal(fused.y, ref.y));
          } else {
            ExpectClose(fused.y, ref.y, 1e-5, 1e-5, "y");
          }
          // Per-element gradients scale with T; sums over many elements lose a little more.
          ExpectClose(fused.gx, ref.gx, 1e-4, 1e-5 * t, "dx");
          ExpectClose(fused.galpha, ref.galpha, 1e-4, 1e-3, "dalpha");
          ExpectClose(fused.gbeta, ref.gbeta, 1e-4, 1e-4 * t, "dbeta");
          ExpectClose(fused.gthr, ref.gthr, 1e-4, 1e-4 * t, "dthresholds");
        }
      }
    }
  }
}

// With thresholds fixed, a soft forward keeps its derivative sums and the backward reads them
// instead of recomputing the sigmoids: the same gradients as the recomputing backward (thresholds
// learning) and as ATen's composite, in float and double, on both exponential paths.
TEST(QuantizeTest, SavedDerivativeBackwardMatchesRecomputing) {
  torch::manual_seed(9);
  for (const LevelSet& set : LevelSets()) {
    for (const double t : {5.0, 200.0}) {
      for (const torch::ScalarType type : {torch::kFloat, torch::kDouble}) {
        SCOPED_TRACE(set.name + " T=" + std::to_string(t) + " " + c10::toString(type));
        const double span = set.levels.back() - set.levels.front();
        const torch::Tensor x = torch::randn({20001}) * span * 0.4;
        const torch::Tensor g = torch::randn({20001}).to(type);
        const Inputs fixed(x, 0.37, 1.1, set, type, /*thresholds_grad=*/false);
        const Inputs learning(x, 0.37, 1.1, set, type, /*thresholds_grad=*/true);
        const Result saved = RunWithGrads(kFused, fixed, g, t, false);
        const Result recomputed = RunWithGrads(kFused, learning, g, t, false);
        const Result ref = RunWithGrads(kComposite, fixed, g, t, false);
        EXPECT_TRUE(torch::equal(saved.y, recomputed.y));
        ExpectClose(saved.gx, recomputed.gx, 1e-5, 1e-6 * t, "dx");
        ExpectClose(saved.galpha, recomputed.galpha, 1e-5, 1e-5, "dalpha");
        ExpectClose(saved.gbeta, recomputed.gbeta, 1e-5, 1e-5 * t, "dbeta");
        ExpectClose(saved.gx, ref.gx, 1e-4, 1e-5 * t, "dx vs composite");
        ExpectClose(saved.galpha, ref.galpha, 1e-4, 1e-3, "dalpha vs composite");
        ExpectClose(saved.gbeta, ref.gbeta, 1e-4, 1e-4 * t, "dbeta vs composite");
      }
    }
  }
}

// f(x, alpha, beta, b) = sum(w * Quantize(...)) in double; central differences against autograd.
TEST(QuantizeTest, GradientsMatchFiniteDifferencesInDouble) {
  torch::manual_seed(2);
  for (const LevelSet& set : LevelSets()) {
    for (const bool hard : {false, true}) {
      SCOPED_TRACE(set.name + (hard ? " hard" : " soft"));
      const double t = 3.0;
      const Inputs in(torch::randn({40}) * 1.5, 0.8, 1.3, set, torch::kDouble);
      const torch::Tensor w = torch::randn({40}, torch::kDouble);
      const Result r = RunWithGrads(kFused, in, w, t, hard);

      // The soft function is differentiated numerically. In hard mode x, beta and b get its
      // gradient (straight-through), alpha the exact derivative of alpha*q_j.
      auto f = [&](const torch::Tensor& x, double a, double b, const torch::Tensor& th,
                   bool hard_value) {
        torch::NoGradGuard no_grad;
        return (w * Quantize(x, torch::tensor(a, torch::kDouble), torch::tensor(b, torch::kDouble),
                             in.levels, th, t, hard_value))
            .sum()
            .item<double>();
      };
      const torch::Tensor x0 = in.x.detach();
      const torch::Tensor th0 = in.thresholds.detach();
      const double a0 = in.alpha.item<double>();
      const double b0 = in.beta.item<double>();
      const double eps = 1e-6;
      const auto check = [](double analytic, double numeric, const std::string& what) {
        EXPECT_NEAR(analytic, numeric, 1e-6 + 1e-6 * std::abs(numeric)) << what;
      };

      for (int64_t k = 0; k < x0.numel(); ++k) {
        torch::Tensor xp = x0.clone();
        torch::Tensor xm = x0.clone();
        xp[k] += eps;
        xm[k] -= eps;
        const double numeric = (f(xp, a0, b0, th0, false) - f(xm, a0, b0, th0, false)) / (2 * eps);
        check(r.gx[k].item<double>(), numeric, "dx[" + std::to_string(k) + "]");
      }
      const double da =
          (f(x0, a0 + eps, b0, th0, hard) - f(x0, a0 - eps, b0, th0, hard)) / (2 * eps);
      check(r.galpha.item<double>(), da, "dalpha");
      const double db =
          (f(x0, a0, b0 + eps, th0, false) - f(x0, a0, b0 - eps, th0, false)) / (2 * eps);
      check(r.gbeta.item<double>(), db, "dbeta");
      for (int64_t i = 0; i < th0.numel(); ++i) {
        torch::Tensor tp = th0.clone();
        torch::Tensor tm = th0.clone();
        tp[i] += eps;
        tm[i] -= eps;
        const double numeric = (f(x0, a0, b0, tp, false) - f(x0, a0, b0, tm, false)) / (2 * eps);
        check(r.gthr[i].item<double>(), numeric, "dthreshold[" + std::to_string(i) + "]");
      }
    }
  }
}

// The closed-form gradients per element, for levels with unequal steps (where the published
// activation code went wrong).
TEST(QuantizeTest, GradientsFollowTheClosedForm) {
  const LevelSet set{"uneven", {-0.7, 0.1, 0.35, 1.2}, {-0.3, 0.2, 0.9}};
  const double a = 0.6, b = 1.7, t = 3.0;  // |T*(beta*x - b_i)| < 10: no clamping here
  const Inputs in(torch::linspace(-1, 1, 9, torch::kDouble), a, b, set, torch::kDouble);
  const torch::Tensor ones = torch::ones({9}, torch::kDouble);
  const Result r = RunWithGrads(kFused, in, ones, t, false);
  double galpha = 0, gbeta = 0;
  std::vector<double> gthr(3, 0.0);
  for (int64_t k = 0; k < 9; ++k) {
    const double x = in.x[k].item<double>();
    double bracket = set.levels[0], dsum = 0;
    for (int i = 0; i < 3; ++i) {
      const double s = set.levels[i + 1] - set.levels[i];
      const double sig = 1 / (1 + std::exp(-t * (b * x - set.thresholds[i])));
      bracket += s * sig;
      dsum += s * sig * (1 - sig);
      gthr[i] += -a * t * s * sig * (1 - sig);
    }
    EXPECT_NEAR(r.y[k].item<double>(), a * bracket, 1e-12);
    EXPECT_NEAR(r.gx[k].item<double>(), a * b * t * dsum, 1e-12);
    galpha += bracket;
    gbeta += a * t * x * dsum;
  }
  EXPECT_NEAR(r.galpha.item<double>(), galpha, 1e-12);
  EXPECT_NEAR(r.gbeta.item<double>(), gbeta, 1e-12);
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(r.gthr[i].item<double>(), gthr[i], 1e-12);
}

// Evenly spaced levels 0..count-1 with thresholds at the midpoints.
LevelSet UnsignedLevels(int count) {
  LevelSet set{"unsigned" + std::to_string(count), {}, {}};
  for (int i = 0; i < count; ++i) set.levels.push_back(i);
  for (int i = 1; i < count; ++i) set.thresholds.push_back(i - 0.5);
  return set;
}

TEST(QuantizeTest, HardModeGivesExactlyAlphaTimesALevel) {
  torch::manual_seed(3);
  std::vector<LevelSet> sets = LevelSets();
  // Up to 16 levels the kernels look levels up in registers; past that, one load per lane.
  sets.push_back(UnsignedLevels(16));
  sets.push_back(UnsignedLevels(17));
  for (const LevelSet& set : sets) {
    SCOPED_TRACE(set.name);
    const double span = set.levels.back() - set.levels.front();
    const Inputs in(torch::randn({50001}) * span * 0.4, 0.0371, 0.9, set, torch::kFloat);
    const torch::Tensor g = torch::rand({in.x.numel()});
    const Result r = RunWithGrads(kFused, in, g, 7, true);
    const torch::Tensor allowed = in.alpha.detach() * in.levels;
    EXPECT_TRUE(torch::isin(r.y.detach(), allowed).all().item<bool>());
    // And the right level: j = number of thresholds at or below beta*x.
    const torch::Tensor bx = (in.beta.detach() * in.x.detach()).unsqueeze(-1);
    const torch::Tensor j = (bx >= in.thresholds.detach()).sum(-1);
    EXPECT_TRUE(torch::equal(r.y.detach(), allowed.take(j)));
    // The backward looks the same levels up: d/dalpha = sum g * q_j.
    const double galpha =
        (g.to(torch::kDouble) * in.levels.to(torch::kDouble).take(j)).sum().item<double>();
    EXPECT_NEAR(r.galpha.item<double>(), galpha, 1e-5 * std::max(1.0, std::abs(galpha)));
  }
}

TEST(QuantizeTest, ClampWindowGradientsMatchComposite) {
  const LevelSet set = LevelSets()[2];  // pow2
  // T*(beta*x - b) is far outside [-10, 10] for every level at the ends, near edges in between.
  const torch::Tensor x = torch::tensor({-1000.0, -50.0, -3.0, -1.52, 0.0, 0.49, 2.98, 60.0, 1e4});
  const Inputs in(x, 0.5, 1.0, set, torch::kFloat);
  const torch::Tensor g = torch::ones({x.numel()});
  // T = 1 and 20 take the shared-exponential path, 30 and 2000 the per-sigmoid one. At T = 20,
  // x = 0 sits exactly on the window's edge for b = +-0.5 (z = -+10): no gradient there.
  for (const double t : {1.0, 20.0, 30.0, 2000.0}) {
    SCOPED_TRACE("T=" + std::to_string(t));
    const Result fused = RunWithGrads(kFused, in, g, t, false);
    const Result ref = RunWithGrads(kComposite, in, g, t, false);
    ExpectClose(fused.y, ref.y, 1e-6, 1e-6, "y");
    // Fully clamped elements: zero gradient exactly, as ATen's clamp gives.
    for (const int64_t k : {0, 1, 7, 8}) {
      EXPECT_EQ(fused.gx[k].item<float>(), 0.0f);
      EXPECT_EQ(ref.gx[k].item<float>(), 0.0f);
    }
    ExpectClose(fused.gx, ref.gx, 1e-5, 1e-6, "dx");
    ExpectClose(fused.gbeta, ref.gbeta, 1e-5, 1e-6, "dbeta");
    ExpectClose(fused.gthr, ref.gthr, 1e-5, 1e-6, "dthresholds");
    // The shared exponential rounds T*beta*x (up to 80 here): a few 1e-6 relative, within the
    // 1e-5 that float results are held to.
    ExpectClose(fused.galpha, ref.galpha, 1e-5, 1e-6, "dalpha");
  }
  // All elements clamped: beta and threshold gradients are exactly 0 in both.
  const Inputs far(torch::tensor({-1e3, 1e3}), 0.5, 1.0, set, torch::kFloat);
  const Result fused = RunWithGrads(kFused, far, torch::ones({2}), 5.0, false);
  const Result ref = RunWithGrads(kComposite, far, torch::ones({2}), 5.0, false);
  EXPECT_EQ(fused.gbeta.item<float>(), 0.0f);
  EXPECT_EQ(ref.gbeta.item<float>(), 0.0f);
  EXPECT_TRUE(torch::equal(fused.gthr, ref.gthr));
  EXPECT_EQ(fused.gthr.abs().sum().item<float>(), 0.0f);
}

// How the CPU kernels evaluate these levels and thresholds at T.
struct KernelPlan {
  int window;    // terms per element when they use a window (1: one term), 0: every term
  bool nearest;  // the one term found as the nearest threshold rather than from the bucket table
};
KernelPlan PlanKernel(const LevelSet& set, double t) {
  KernelParams<double> p;
  std::vector<double> steps;
  for (size_t i = 1; i < set.levels.size(); ++i) steps.push_back(set.levels[i] - set.levels[i - 1]);
  p.temperature = t;
  p.n = static_cast<int>(set.thresholds.size());
  p.levels = set.levels.data();
  p.steps = steps.data();
  p.thresholds = set.thresholds.data();
  WindowTable<double> table;
  BuildWindow(&p, &table);
  return {p.window, p.nearest_mid != nullptr};
}

// A random sorted level set: uneven steps, thresholds between and around the levels; `crowded`:
// some of them close together or equal, else at least 0.3 apart.
LevelSet RandomLevelSet(std::mt19937& rng, int n, bool crowded) {
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  LevelSet set{"random" + std::to_string(n), {-1.0}, {}};
  for (int i = 0; i < n; ++i) set.levels.push_back(set.levels.back() + 0.05 + unit(rng));
  for (int i = 0; i < n; ++i) {
    const double r = unit(rng);
    const double gap = !crowded  ? 0.3 + 1.5 * r
                       : r < 0.2 ? 1e-4 * unit(rng)
                       : r < 0.3 ? 0.0
                                 : 0.02 + 1.5 * unit(rng);
    set.thresholds.push_back((i == 0 ? set.levels[0] - 0.5 : set.thresholds.back()) + gap);
  }
  return set;
}

// The windowed kernels (only the terms near beta*x evaluated, the clamped others folded into a
// constant) against the composite's full sum over all terms, on random levels, thresholds and
// temperatures from where the window holds every term (no windowing) to T = 3000, spread
// thresholds at T >= 150 among them (one term per element: the single-term kernel, from the bucket
// table over more than 16 thresholds, as the nearest threshold over fewer). x lands
// everywhere, on thresholds and on the window's edges (|z| near 10) too. Double to 1e-10, so a
// window that drops a term with |z| < 10 (sigmoid(9) - sigmoid(10) ~ 8e-5) fails; float as the
// other tests hold it.
TEST(QuantizeTest, WindowedTermsMatchFullEvaluation) {
  torch::manual_seed(10);
  std::mt19937 rng(10);
  int windowed = 0, single = 0, nearest = 0, full = 0;
  for (int trial = 0; trial < 24; ++trial) {
    const bool spread = trial % 6 == 5;
    const int n = trial == 0        ? 255
                  : !spread         ? 1 + static_cast<int>(rng() % 40)
                  : trial % 12 == 5 ? 2 + static_cast<int>(rng() % 15)  // up to 16 thresholds
                                    : 17 + static_cast<int>(rng() % 24);
    const LevelSet set = RandomLevelSet(rng, n, /*crowded=*/!spread);
    const double t =
        std::exp(std::uniform_real_distribution<double>(spread ? 5.0 : std::log(0.3), 8.0)(rng));
    const double beta = 1.3;
    const KernelPlan plan = PlanKernel(set, t);
    (plan.window > 0 ? windowed : full) += 1;
    (plan.nearest ? nearest : single) += plan.window == 1 ? 1 : 0;
    std::vector<double> xs;
    for (const double b : set.thresholds) {
      for (const double dz : {0.0, 9.99, -9.99, 10.0, -10.0, 10.01, -10.01, 3.0, 30.0}) {
        xs.push_back((b + dz / t) / beta);
      }
    }
    const torch::Tensor edges = torch::tensor(xs, torch::kDouble);
    const double lo = set.thresholds.front() - 1, hi = set.thresholds.back() + 1;
    const torch::Tensor x =
        torch::cat({edges, (torch::rand({4000}, torch::kDouble) * (hi - lo) + lo) / beta});
    const torch::Tensor g = torch::randn({x.numel()}, torch::kDouble);
    for (const torch::ScalarType type : {torch::kDouble, torch::kFloat}) {
      const bool exact = type == torch::kDouble;
      for (const bool hard : {false, true}) {
        for (const bool thresholds_grad : {false, true}) {
          SCOPED_TRACE(set.name + " T=" + std::to_string(t) + " " + c10::toString(type) +
                       (hard ? " hard" : " soft") + (thresholds_grad ? " learning" : " fixed"));
          const Inputs in(x, 0.7, beta, set, type, thresholds_grad);
          const Result fused = RunWithGrads(kFused, in, g.to(type), t, hard);
          const Result ref = RunWithGrads(kComposite, in, g.to(type), t, hard);
          const double tol = exact ? 1e-10 : 1e-5;
          ExpectClose(fused.y, ref.y, tol, tol, "y");
          // Gradients carry T; their sums over 4,000+ elements lose more in float.
          ExpectClose(fused.gx, ref.gx, tol * 10, tol * t, "dx");
          ExpectClose(fused.galpha, ref.galpha, tol * 10, tol * 100, "dalpha");
          ExpectClose(fused.gbeta, ref.gbeta, tol * 10, tol * 10 * t, "dbeta");
          if (thresholds_grad) {
            ExpectClose(fused.gthr, ref.gthr, tol * 10, tol * 10 * t, "dthresholds");
          }
        }
      }
    }
  }
  // Every regime was covered, both single-term kernels included.
  EXPECT_GE(windowed, 8);
  EXPECT_GE(single, 2);
  EXPECT_GE(nearest, 2);
  EXPECT_GE(full, 3);
}

TEST(QuantizeTest, ThreadCountDoesNotChangeResults) {
  torch::manual_seed(4);
  const int saved = at::get_num_threads();
  const Inputs in(torch::randn({1 << 20}) * 2, 0.4, 1.2, LevelSets()[2], torch::kFloat);
  const torch::Tensor g = torch::randn({1 << 20});
  for (const bool hard : {false, true}) {
    at::set_num_threads(1);
    const Result one = RunWithGrads(kFused, in, g, 10.0, hard);
    at::set_num_threads(4);
    const Result four = RunWithGrads(kFused, in, g, 10.0, hard);
    at::set_num_threads(saved);
    EXPECT_TRUE(torch::equal(one.y, four.y));
    EXPECT_TRUE(torch::equal(one.gx, four.gx));
    EXPECT_TRUE(torch::equal(one.galpha, four.galpha));
    EXPECT_TRUE(torch::equal(one.gbeta, four.gbeta));
    EXPECT_TRUE(torch::equal(one.gthr, four.gthr));
  }
}

TEST(QuantizeTest, NonContiguousInputAndGradient) {
  torch::manual_seed(5);
  const LevelSet set = LevelSets()[1];
  const torch::Tensor leaf = torch::randn({300, 200}).requires_grad_(true);
  const torch::Tensor view = leaf.t().slice(0, 0, 200, 3);  // transposed and strided
  ASSERT_FALSE(view.is_contiguous());
  const Inputs dense(view.detach().contiguous(), 0.5, 1.0, set, torch::kFloat);
  const torch::Tensor g = torch::randn({view.size(1), view.size(0)}).t();  // strided too
  const Result ref = RunWithGrads(kFused, dense, g.contiguous(), 8.0, false);
  const torch::Tensor y =
      Quantize(view, dense.alpha, dense.beta, dense.levels, dense.thresholds, 8.0, false);
  const auto grads = torch::autograd::grad({y}, {leaf, dense.alpha}, {g});
  EXPECT_TRUE(torch::equal(y.detach(), ref.y));
  EXPECT_TRUE(torch::equal(grads[0].t().slice(0, 0, 200, 3), ref.gx));
  torch::Tensor outside = grads[0].clone();  // nothing flows to elements the view skips
  outside.t().slice(0, 0, 200, 3).zero_();
  EXPECT_EQ(outside.abs().max().item<float>(), 0.0f);
  EXPECT_TRUE(torch::equal(grads[1], ref.galpha));
}

// A channels-last activation or latent weight (memory_layout.h) is quantized in its own layout:
// the output and the x gradient keep x's strides and equal the contiguous results element for
// element, whatever layout the incoming gradient has; the alpha and beta sums only add in
// another order. Both a leaf (the reused-buffer path) and a view, soft and hard.
TEST(QuantizeTest, ChannelsLastKeepsItsLayout) {
  torch::manual_seed(7);
  const LevelSet set = LevelSets()[3];
  const torch::Tensor values = torch::rand({4, 6, 5, 7}) * 3;
  const torch::Tensor nhwc_values = values.contiguous(torch::MemoryFormat::ChannelsLast);
  for (const bool hard : {false, true}) {
    for (const bool leaf : {true, false}) {
      SCOPED_TRACE(std::string(hard ? "hard" : "soft") + (leaf ? " leaf" : " view"));
      const Inputs dense(values, 0.7, 1.1, set, torch::kFloat, /*thresholds_grad=*/false);
      const torch::Tensor g = torch::randn(values.sizes());
      const Result ref = RunWithGrads(kFused, dense, g, 12.0, hard);
      const torch::Tensor x = nhwc_values.detach().clone().requires_grad_(true);
      ASSERT_TRUE(x.is_contiguous(torch::MemoryFormat::ChannelsLast));
      const torch::Tensor y = Quantize(leaf ? x : x.view_as(x), dense.alpha, dense.beta,
                                       dense.levels, dense.thresholds, 12.0, hard);
      EXPECT_EQ(y.strides(), x.strides());
      const auto grads = torch::autograd::grad({y}, {x, dense.alpha, dense.beta}, {g});
      EXPECT_TRUE(torch::equal(y.detach(), ref.y));
      EXPECT_EQ(grads[0].strides(), x.strides());
      EXPECT_TRUE(torch::equal(grads[0], ref.gx));
      ExpectClose(grads[1], ref.galpha, 1e-5, 1e-5, "dalpha");
      ExpectClose(grads[2], ref.gbeta, 1e-5, 1e-5, "dbeta");
    }
  }
}

TEST(QuantizeTest, BaselineVectorCodeMatchesAvx2) {
  internal::SetCpuVectorIsa(internal::CpuVectorIsa::kAuto);
  if (!internal::CpuKernelUsesAvx2()) GTEST_SKIP() << "no AVX2 on this CPU";
  torch::manual_seed(6);
  const Inputs in(torch::randn({40001}) * 2, 0.4, 1.2, LevelSets()[2], torch::kFloat);
  const torch::Tensor g = torch::randn({40001});
  // T = 10 evaluates several terms per element, T = 100 one (the nearest threshold's).
  for (const auto& [t, hard] : {std::pair{10.0, false}, std::pair{10.0, true},
                                std::pair{100.0, false}, std::pair{100.0, true}}) {
    SCOPED_TRACE("T=" + std::to_string(t) + (hard ? " hard" : " soft"));
    const Result avx2 = RunWithGrads(kFused, in, g, t, hard);
    internal::SetCpuVectorIsa(internal::CpuVectorIsa::kBaseline);
    ASSERT_FALSE(internal::CpuKernelUsesAvx2());
    const Result base = RunWithGrads(kFused, in, g, t, hard);
    internal::SetCpuVectorIsa(internal::CpuVectorIsa::kAuto);
    // Both refine the same reciprocal estimate, but the AVX2 code fuses the Newton step into FMAs
    // and rounds it differently: a sigmoid may differ by an ulp, and sums over 40,001 terms of
    // both signs by more, relatively. The tolerances are those of the fused op against ATen's;
    // the x and beta gradients carry a factor T.
    ExpectClose(base.y, avx2.y, 1e-5, 1e-5, "y");
    ExpectClose(base.gx, avx2.gx, 1e-4, 1e-6 * t, "dx");
    ExpectClose(base.galpha, avx2.galpha, 1e-4, 1e-4, "dalpha");
    ExpectClose(base.gbeta, avx2.gbeta, 1e-4, 1e-5 * t, "dbeta");
    ExpectClose(base.gthr, avx2.gthr, 1e-4, 1e-4, "dthresholds");
  }
}

// A training loop's steps on one leaf x (a latent weight), whose x-sized tensors are reused from
// step to step: the same outputs and gradients as fresh allocations (a view of x, not a leaf, gets
// those), bit for bit, soft and hard, saved-derivative and recomputing backwards, odd sizes whose
// tails the kernels pad. Storages come back once released, and a tensor still held (last step's
// weight, a gradient not dropped) is never written over.
TEST(QuantizeTest, LeafBuffersReuseStoragesWithoutChangingResults) {
  torch::manual_seed(12);
  const QuantizeFn fresh = [](const torch::Tensor& x, const torch::Tensor& a,
                              const torch::Tensor& b, const torch::Tensor& l,
                              const torch::Tensor& th, double t,
                              bool h) { return Quantize(x.view_as(x), a, b, l, th, t, h); };
  for (const bool hard : {false, true}) {
    for (const bool thresholds_grad : {false, true}) {
      for (const int64_t size : {4099, 100003}) {
        SCOPED_TRACE(std::string(hard ? "hard" : "soft") + (thresholds_grad ? " learning" : "") +
                     " n=" + std::to_string(size));
        const Inputs in(torch::randn({size}) * 2, 0.4, 1.2, LevelSets()[2], torch::kFloat,
                        thresholds_grad);
        torch::Tensor held_y, held_grad;
        std::set<const void*> seen;
        int reused = 0;
        for (int step = 0; step < 4; ++step) {
          const torch::Tensor g = torch::randn({size});
          const Result ref = RunWithGrads(fresh, in, g, 30.0, hard);
          const Result got = RunWithGrads(kFused, in, g, 30.0, hard);
          EXPECT_TRUE(torch::equal(got.y, ref.y));
          EXPECT_TRUE(torch::equal(got.gx, ref.gx));
          EXPECT_TRUE(torch::equal(got.galpha, ref.galpha));
          EXPECT_TRUE(torch::equal(got.gbeta, ref.gbeta));
          if (thresholds_grad) {
            EXPECT_TRUE(torch::equal(got.gthr, ref.gthr));
          }
          if (step == 0) {  // kept across the later steps
            held_y = got.y;
            held_grad = got.gx;
          } else {
            EXPECT_NE(got.y.data_ptr(), held_y.data_ptr());
            EXPECT_NE(got.gx.data_ptr(), held_grad.data_ptr());
          }
          for (const torch::Tensor& t : {got.y, got.gx})
            reused += !seen.insert(t.data_ptr()).second;
          EXPECT_LE(BuffersForLeaf(in.x)->kept(), QuantizeBuffers::kMaxKept);
        }
        EXPECT_GT(reused, 0);
        const Result first = RunWithGrads(fresh, in, torch::zeros({size}), 30.0, hard);
        EXPECT_TRUE(torch::equal(held_y, first.y)) << "a held output was overwritten";
      }
    }
  }
  // One set of buffers per leaf.
  const torch::Tensor a = torch::ones({3}).requires_grad_(true);
  const torch::Tensor b = torch::ones({3}).requires_grad_(true);
  EXPECT_EQ(BuffersForLeaf(a).get(), BuffersForLeaf(a).get());
  EXPECT_NE(BuffersForLeaf(a).get(), BuffersForLeaf(b).get());
}

// Released storages are handed out again; held ones are not.
TEST(QuantizeTest, BuffersHandOutOnlyReleasedStorages) {
  QuantizeBuffers buffers;
  const torch::Tensor like = torch::empty({1000, 3});
  torch::Tensor a = buffers.Take(like);
  const void* a_data = a.data_ptr();
  EXPECT_EQ(a.sizes(), like.sizes());
  EXPECT_TRUE(a.is_contiguous());
  EXPECT_FALSE(a.requires_grad());
  torch::Tensor b = buffers.Take(like);
  EXPECT_NE(b.data_ptr(), a_data);  // a is still held
  a = torch::Tensor();
  EXPECT_EQ(buffers.Take(like).data_ptr(), a_data);  // a was released
  const torch::Tensor view = b.view({-1});           // a view holds the storage too
  const void* b_data = b.data_ptr();
  b = torch::Tensor();
  for (int i = 0; i < 8; ++i) EXPECT_NE(buffers.Take(like).data_ptr(), b_data);
  // Past kMaxKept storages in use, new ones are not kept.
  std::vector<torch::Tensor> held;
  std::set<const void*> distinct;
  for (int i = 0; i < 6; ++i) distinct.insert(held.emplace_back(buffers.Take(like)).data_ptr());
  EXPECT_EQ(distinct.size(), 6u);
  EXPECT_EQ(buffers.kept(), QuantizeBuffers::kMaxKept);
  // Another size or dtype gets its own storage.
  EXPECT_EQ(buffers.Take(torch::empty({7}, torch::kDouble)).numel(), 7);
}

TEST(QuantizeTest, AlphaZeroGivesFiniteGradients) {
  const Inputs in(torch::linspace(-2, 2, 11), 0.0, 1.0, LevelSets()[1], torch::kFloat);
  const Result r = RunWithGrads(kFused, in, torch::ones({11}), 5.0, false);
  EXPECT_EQ(r.y.abs().sum().item<float>(), 0.0f);
  EXPECT_TRUE(std::isfinite(r.galpha.item<float>()));
  const Result ref = RunWithGrads(kComposite, in, torch::ones({11}), 5.0, false);
  ExpectClose(r.galpha, ref.galpha, 1e-6, 1e-6, "dalpha");
  EXPECT_NE(r.galpha.item<float>(), 0.0f);
}

TEST(QuantizeTest, ShapesDtypesAndEmptyInput) {
  const LevelSet set = LevelSets()[1];
  // 0-dim x.
  const Inputs scalar(torch::tensor(0.3), 0.5, 1.0, set, torch::kFloat);
  const Result rs = RunWithGrads(kFused, scalar, torch::tensor(1.0f), 5.0, false);
  EXPECT_EQ(rs.y.dim(), 0);
  EXPECT_EQ(rs.gx.dim(), 0);
  // 3-D x.
  const Inputs cube(torch::randn({3, 4, 5}), 0.5, 1.0, set, torch::kFloat);
  EXPECT_EQ(RunWithGrads(kFused, cube, torch::ones({3, 4, 5}), 5.0, true).gx.sizes(),
            cube.x.sizes());
  // Empty x: empty output, zero parameter gradients.
  const Inputs empty(torch::empty({0, 3}), 0.5, 1.0, set, torch::kFloat);
  const Result re = RunWithGrads(kFused, empty, torch::empty({0, 3}), 5.0, false);
  EXPECT_EQ(re.y.numel(), 0);
  EXPECT_EQ(re.galpha.item<float>(), 0.0f);
  EXPECT_EQ(re.gthr.abs().sum().item<float>(), 0.0f);
  // Float x with double parameters: output float, gradients typed like their inputs.
  torch::Tensor x = torch::randn({10}).requires_grad_(true);
  torch::Tensor alpha = torch::tensor(0.5, torch::kDouble).requires_grad_(true);
  torch::Tensor beta = torch::tensor({1.0}, torch::kDouble).requires_grad_(true);  // shape [1]
  const torch::Tensor y = Quantize(x, alpha, beta, T1(set.levels, torch::kDouble),
                                   T1(set.thresholds, torch::kDouble), 5.0, false);
  EXPECT_EQ(y.scalar_type(), torch::kFloat);
  y.sum().backward();
  EXPECT_EQ(alpha.grad().scalar_type(), torch::kDouble);
  EXPECT_EQ(beta.grad().sizes(), beta.sizes());
  EXPECT_EQ(x.grad().scalar_type(), torch::kFloat);
}

TEST(QuantizeTest, ThresholdGradientOnlyWhenAsked) {
  const Inputs in(torch::randn({100}), 0.5, 1.0, LevelSets()[2], torch::kFloat,
                  /*thresholds_grad=*/false);
  const torch::Tensor y = Quantize(in.x, in.alpha, in.beta, in.levels, in.thresholds, 5.0, false);
  y.sum().backward();
  EXPECT_FALSE(in.thresholds.grad().defined());
  EXPECT_TRUE(in.alpha.grad().defined());
  EXPECT_TRUE(in.x.grad().defined());
}

TEST(QuantizeTest, OtherDtypesUseTheComposite) {
  const LevelSet set = LevelSets()[1];
  const torch::Tensor x = torch::randn({64}).to(torch::kBFloat16);
  const torch::Tensor a = torch::tensor(0.5), b = torch::tensor(1.0);
  const torch::Tensor y = Quantize(x, a, b, T1(set.levels, torch::kFloat),
                                   T1(set.thresholds, torch::kFloat), 5.0, false);
  EXPECT_EQ(y.scalar_type(), torch::kBFloat16);
  EXPECT_TRUE(torch::equal(y, QuantizeComposite(x, a, b, T1(set.levels, torch::kFloat),
                                                T1(set.thresholds, torch::kFloat), 5.0, false)));
}

TEST(QuantizeTest, NanPropagates) {
  const LevelSet set = LevelSets()[1];
  const torch::Tensor x = torch::tensor({NAN, 0.5f});
  for (const bool hard : {false, true}) {
    const torch::Tensor y =
        Quantize(x, torch::tensor(1.0), torch::tensor(1.0), T1(set.levels, torch::kFloat),
                 T1(set.thresholds, torch::kFloat), 5.0, hard);
    EXPECT_TRUE(std::isnan(y[0].item<float>()));
    EXPECT_FALSE(std::isnan(y[1].item<float>()));
  }
}

TEST(QuantizeTest, BadArgumentsAreRejected) {
  const torch::Tensor x = torch::randn({8});
  const torch::Tensor a = torch::tensor(1.0), b = torch::tensor(1.0);
  const torch::Tensor lv = torch::tensor({-1.0, 0.0, 1.0});
  const torch::Tensor th = torch::tensor({-0.5, 0.5});
  EXPECT_TRUE(ValidateQuantizeArgs(x, a, b, lv, th, 5.0).ok());
  const auto invalid = [](const absl::Status& s) {
    return s.code() == absl::StatusCode::kInvalidArgument;
  };
  EXPECT_TRUE(invalid(ValidateQuantizeArgs(x, a, b, lv, torch::tensor({0.0}), 5.0)));
  EXPECT_TRUE(invalid(ValidateQuantizeArgs(x, a, b, torch::tensor({1.0}), torch::empty({0}), 5.0)));
  EXPECT_TRUE(invalid(ValidateQuantizeArgs(x, a, b, lv.view({3, 1}), th, 5.0)));
  EXPECT_TRUE(
      invalid(ValidateQuantizeArgs(x, a, b, torch::arange(300.0), torch::arange(299.0), 5.0)));
  EXPECT_TRUE(invalid(ValidateQuantizeArgs(x, torch::ones({2}), b, lv, th, 5.0)));
  EXPECT_TRUE(invalid(ValidateQuantizeArgs(x, a, b, lv, th, 0.0)));
  EXPECT_TRUE(invalid(ValidateQuantizeArgs(x, a, b, lv, th, NAN)));
  EXPECT_TRUE(invalid(ValidateQuantizeArgs(torch::ones({3}, torch::kInt), a, b, lv, th, 5.0)));
  EXPECT_TRUE(invalid(ValidateQuantizeArgs(torch::Tensor(), a, b, lv, th, 5.0)));
  EXPECT_THROW(Quantize(x, a, b, lv, torch::tensor({0.0}), 5.0, false), c10::Error);
  EXPECT_THROW(QuantizeComposite(x, a, b, lv, th, -1.0, false), c10::Error);
}

// ---- CUDA: compared with the CPU path; skipped on machines without a GPU. ----

class QuantizeCudaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  }
};

Inputs ToCuda(const Inputs& in) {
  Inputs out = in;
  out.x = in.x.detach().cuda().requires_grad_(true);
  out.alpha = in.alpha.detach().cuda().requires_grad_(true);
  out.beta = in.beta.detach().cuda().requires_grad_(true);
  out.levels = in.levels.cuda();
  out.thresholds = in.thresholds.detach().cuda().requires_grad_(in.thresholds.requires_grad());
  return out;
}

TEST_F(QuantizeCudaTest, MatchesCpu) {
  torch::manual_seed(7);
  for (const LevelSet& set : LevelSets()) {
    for (const auto type : {torch::kFloat, torch::kDouble}) {
      for (const bool hard : {false, true}) {
        for (const int64_t size : {1, 1000, 1000003}) {
          SCOPED_TRACE(set.name + (hard ? " hard " : " soft ") + std::to_string(size));
          const Inputs cpu(torch::randn({size}) * 2, 0.45, 1.1, set, type);
          const Inputs gpu = ToCuda(cpu);
          const torch::Tensor g = torch::randn({size}, type);
          const Result rc = RunWithGrads(kFused, cpu, g, 12.0, hard);
          const Result rg = RunWithGrads(kFused, gpu, g.cuda(), 12.0, hard);
          ASSERT_TRUE(rg.y.is_cuda());
          if (hard) {
            EXPECT_TRUE(torch::equal(rg.y.cpu(), rc.y));
          } else {
            ExpectClose(rg.y.cpu(), rc.y, 1e-5, 1e-5, "y");
          }
          ExpectClose(rg.gx.cpu(), rc.gx, 1e-4, 1e-4, "dx");
          ExpectClose(rg.galpha.cpu(), rc.galpha, 1e-4, 1e-3, "dalpha");
          ExpectClose(rg.gbeta.cpu(), rc.gbeta, 1e-4, 1e-3, "dbeta");
          ExpectClose(rg.gthr.cpu(), rc.gthr, 1e-4, 1e-3, "dthresholds");
        }
      }
    }
  }
}

TEST_F(QuantizeCudaTest, MatchesCompositeOnDevice) {
  torch::manual_seed(8);
  const Inputs gpu = ToCuda(Inputs(torch::randn({4097}) * 3, 0.3, 0.8, LevelSets()[2],
                                   torch::kFloat, /*thresholds_grad=*/false));
  const torch::Tensor g = torch::randn({4097}).cuda();
  const Result fused = RunWithGrads(kFused, gpu, g, 6.0, false);
  const Result ref = RunWithGrads(kComposite, gpu, g, 6.0, false);
  ExpectClose(fused.y, ref.y, 1e-5, 1e-5, "y");
  ExpectClose(fused.gx, ref.gx, 1e-4, 1e-4, "dx");
  ExpectClose(fused.galpha, ref.galpha, 1e-4, 1e-3, "dalpha");
  ExpectClose(fused.gbeta, ref.gbeta, 1e-4, 1e-3, "dbeta");
  EXPECT_FALSE(fused.gthr.defined());
}

TEST_F(QuantizeCudaTest, CpuParametersWithCudaInput) {
  const Inputs cpu(torch::randn({100}), 0.5, 1.0, LevelSets()[1], torch::kFloat);
  const torch::Tensor xg = cpu.x.detach().cuda();
  const torch::Tensor y = Quantize(xg, cpu.alpha, cpu.beta, cpu.levels, cpu.thresholds, 5, false);
  ExpectClose(y.detach().cpu(),
              Quantize(cpu.x, cpu.alpha, cpu.beta, cpu.levels, cpu.thresholds, 5, false).detach(),
              1e-5, 1e-5, "y");
}

}  // namespace
}  // namespace qnet::engine
