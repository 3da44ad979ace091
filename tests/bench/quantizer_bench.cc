// Fused quantizer op against its ATen composition on the CPU, side by side in one binary:
// 4M floats, 3-bit weight levels (7 levels, 6 sigmoids), soft mode at T = 10; and 4M post-ReLU
// activations with 2-bit levels (4 levels, 3 sigmoids) as the trainer runs them: hard forward,
// backward at T = 5.
//
//   build/tests/bench/qnet_quantizer_bench --benchmark_min_time=2s
//
// FwdBwd: forward and backward with gradients for x, alpha and beta (thresholds fixed, the
// default). Fwd: forward only, under NoGradGuard (evaluation). Hard: the hard forward.
// ResNet18W4: the weight quantizers' share of a ResNet-18 training step at W4 (19 layers, 11.2M
// weights, soft at T = 100): forward, then backward into the latents' .grad, which is reset
// before the next step as the optimizer does (fused only: the composite needs GBs).

#include <benchmark/benchmark.h>
#include <torch/torch.h>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "workers/engine/quantization/levels.h"
#include "workers/engine/quantization/quantizer.h"

namespace qnet::engine {
namespace {

constexpr int64_t kElements = 4 << 20;

struct Setup {
  torch::Tensor x, alpha, beta, levels, thresholds, grad_y;
  double temperature = 0;

  // x: the tensor before scaling; beta maps its largest magnitude to 1.25x the largest level.
  Setup(torch::Tensor x_in, torch::Tensor lv, torch::Tensor th, double t) : temperature(t) {
    x = x_in.requires_grad_(true);
    const double beta0 = 1.25 * lv.abs().max().item<double>() / x_in.abs().max().item<double>();
    alpha = torch::tensor(1 / beta0).requires_grad_(true);
    beta = torch::tensor(beta0).requires_grad_(true);
    levels = std::move(lv);
    thresholds = std::move(th);
    grad_y = torch::randn({kElements});
  }
};

const Setup& Weights3Bit() {
  static const Setup* setup = [] {
    torch::manual_seed(0);
    return new Setup(torch::randn({kElements}) * 0.05,
                     torch::tensor({-4.0f, -2.0f, -1.0f, 0.0f, 1.0f, 2.0f, 4.0f}),
                     torch::tensor({-3.0f, -1.5f, -0.5f, 0.5f, 1.5f, 3.0f}), 10.0);
  }();
  return *setup;
}

const Setup& Activations2Bit() {
  static const Setup* setup = [] {
    torch::manual_seed(0);
    return new Setup(torch::relu(torch::randn({kElements})),
                     torch::tensor({0.0f, 1.0f, 2.0f, 3.0f}), torch::tensor({0.5f, 1.5f, 2.5f}),
                     5.0);
  }();
  return *setup;
}

template <bool kFused>
torch::Tensor Forward(const Setup& s, bool hard) {
  return kFused
             ? Quantize(s.x, s.alpha, s.beta, s.levels, s.thresholds, s.temperature, hard)
             : QuantizeComposite(s.x, s.alpha, s.beta, s.levels, s.thresholds, s.temperature, hard);
}

// Arg: 0 = 3-bit weights, soft; 1 = 2-bit activations, hard forward.
template <bool kFused>
void BM_FwdBwd(benchmark::State& state) {
  const bool activations = state.range(0) != 0;
  const Setup& s = activations ? Activations2Bit() : Weights3Bit();
  for (auto _ : state) {
    const torch::Tensor y = Forward<kFused>(s, activations);
    // autograd::grad returns the gradients without accumulating into .grad (no extra pass).
    auto grads = torch::autograd::grad({y}, {s.x, s.alpha, s.beta}, {s.grad_y});
    benchmark::DoNotOptimize(grads);
  }
  state.SetItemsProcessed(state.iterations() * kElements);
}

template <bool kFused>
void BM_Fwd(benchmark::State& state) {
  const Setup& s = Weights3Bit();
  torch::NoGradGuard no_grad;
  const bool hard = state.range(0) != 0;
  for (auto _ : state) {
    torch::Tensor y = Forward<kFused>(s, hard);
    benchmark::DoNotOptimize(y);
  }
  state.SetItemsProcessed(state.iterations() * kElements);
}

// The 19 quantized weights of torchvision's ResNet-18 (first conv and fc stay float), each with
// its own initialised quantizer and the gradient its conv would hand back.
struct LayerSetup {
  torch::Tensor latent, alpha, beta, levels, thresholds, grad_w;
};

const std::vector<LayerSetup>& ResNet18W4() {
  static const std::vector<LayerSetup>* layers = [] {
    torch::manual_seed(0);
    const torch::Tensor levels = *WeightLevels(4);
    std::vector<std::vector<int64_t>> shapes;
    int64_t in = 64;
    for (const int64_t out : {64, 128, 256, 512}) {
      for (int block = 0; block < 2; ++block) {
        shapes.push_back({out, block == 0 ? in : out, 3, 3});
        shapes.push_back({out, out, 3, 3});
        if (block == 0 && in != out) shapes.push_back({out, in, 1, 1});
      }
      in = out;
    }
    auto* out = new std::vector<LayerSetup>;
    for (const auto& shape : shapes) {
      const torch::Tensor w =
          torch::randn(shape) * std::sqrt(2.0 / (shape[1] * shape[2] * shape[3]));
      const QuantizerParams p = *InitWeightQuantizer(w, levels);
      out->push_back({w.clone().requires_grad_(true), torch::tensor(p.alpha).requires_grad_(true),
                      torch::tensor(p.beta).requires_grad_(true), p.levels, p.thresholds,
                      torch::randn(shape) * 1e-3});
    }
    return out;
  }();
  return *layers;
}

void BM_ResNet18W4Step(benchmark::State& state) {
  const std::vector<LayerSetup>& layers = ResNet18W4();
  constexpr double kTemperature = 100.0;  // schedule T = 20 at the recipe's 5x for weights
  int64_t weights = 0;
  for (const LayerSetup& l : layers) weights += l.latent.numel();
  for (auto _ : state) {
    std::vector<torch::Tensor> ws, gs;
    for (const LayerSetup& l : layers) {
      ws.push_back(Quantize(l.latent, l.alpha, l.beta, l.levels, l.thresholds, kTemperature,
                            /*hard=*/false));
      gs.push_back(l.grad_w);
    }
    torch::autograd::backward(ws, gs);
    for (const LayerSetup& l : layers) {
      for (const torch::Tensor& t : {l.latent, l.alpha, l.beta}) t.mutable_grad() = torch::Tensor();
    }
  }
  state.SetItemsProcessed(state.iterations() * weights);
}

// Each case runs fused and composite side by side, under the same names the docs quote.
void RegisterPair(const std::string& name, void (*fused)(benchmark::State&),
                  void (*composite)(benchmark::State&), int64_t arg) {
  for (const auto& [prefix, fn] :
       {std::pair{"Fused/", fused}, std::pair{"Composite/", composite}}) {
    benchmark::RegisterBenchmark((prefix + name).c_str(), fn)
        ->Arg(arg)
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
  }
}

const bool kRegistered = [] {
  RegisterPair("FwdBwd", BM_FwdBwd<true>, BM_FwdBwd<false>, 0);
  RegisterPair("Act2FwdBwd", BM_FwdBwd<true>, BM_FwdBwd<false>, 1);
  RegisterPair("Fwd", BM_Fwd<true>, BM_Fwd<false>, 0);
  RegisterPair("FwdHard", BM_Fwd<true>, BM_Fwd<false>, 1);
  benchmark::RegisterBenchmark("Fused/ResNet18W4Step", BM_ResNet18W4Step)
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime();
  return true;
}();

}  // namespace
}  // namespace qnet::engine

BENCHMARK_MAIN();
