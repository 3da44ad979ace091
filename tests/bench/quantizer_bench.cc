// Fused quantizer op against its ATen composition on the CPU, side by side in one binary:
// 4M floats, 3-bit weight levels (7 levels, 6 sigmoids), soft mode at T = 10.
//
//   build-quant/tests/bench/qnet_quantizer_bench --benchmark_min_time=2s
//
// FwdBwd: forward and backward with gradients for x, alpha and beta (thresholds fixed, the
// default). Fwd: forward only, under NoGradGuard (evaluation). Hard: the hard forward.

#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include "workers/engine/quantizer.h"

namespace qnet::engine {
namespace {

constexpr int64_t kElements = 4 << 20;
constexpr double kTemperature = 10.0;

struct Setup {
  torch::Tensor x, alpha, beta, levels, thresholds, grad_y;

  Setup() {
    torch::manual_seed(0);
    x = (torch::randn({kElements}) * 0.05).requires_grad_(true);
    const double beta0 = 1.25 * 4 / x.detach().abs().max().item<double>();
    alpha = torch::tensor(1 / beta0).requires_grad_(true);
    beta = torch::tensor(beta0).requires_grad_(true);
    levels = torch::tensor({-4.0f, -2.0f, -1.0f, 0.0f, 1.0f, 2.0f, 4.0f});
    thresholds = torch::tensor({-3.0f, -1.5f, -0.5f, 0.5f, 1.5f, 3.0f});
    grad_y = torch::randn({kElements});
  }
};

const Setup& Data() {
  static const Setup* setup = new Setup();
  return *setup;
}

template <bool kFused>
torch::Tensor Forward(const Setup& s, bool hard) {
  return kFused
             ? Quantize(s.x, s.alpha, s.beta, s.levels, s.thresholds, kTemperature, hard)
             : QuantizeComposite(s.x, s.alpha, s.beta, s.levels, s.thresholds, kTemperature, hard);
}

template <bool kFused>
void BM_FwdBwd(benchmark::State& state) {
  const Setup& s = Data();
  for (auto _ : state) {
    const torch::Tensor y = Forward<kFused>(s, false);
    // autograd::grad returns the gradients without accumulating into .grad (no extra pass).
    auto grads = torch::autograd::grad({y}, {s.x, s.alpha, s.beta}, {s.grad_y});
    benchmark::DoNotOptimize(grads);
  }
  state.SetItemsProcessed(state.iterations() * kElements);
}

template <bool kFused>
void BM_Fwd(benchmark::State& state) {
  const Setup& s = Data();
  torch::NoGradGuard no_grad;
  const bool hard = state.range(0) != 0;
  for (auto _ : state) {
    torch::Tensor y = Forward<kFused>(s, hard);
    benchmark::DoNotOptimize(y);
  }
  state.SetItemsProcessed(state.iterations() * kElements);
}

BENCHMARK(BM_FwdBwd<true>)->Name("Fused/FwdBwd")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_FwdBwd<false>)->Name("Composite/FwdBwd")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Fwd<true>)->Name("Fused/Fwd")->Arg(0)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Fwd<false>)
    ->Name("Composite/Fwd")
    ->Arg(0)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_Fwd<true>)
    ->Name("Fused/FwdHard")
    ->Arg(1)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_Fwd<false>)
    ->Name("Composite/FwdHard")
    ->Arg(1)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace
}  // namespace qnet::engine

BENCHMARK_MAIN();
