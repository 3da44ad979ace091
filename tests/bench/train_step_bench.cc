// One training step (forward, backward, clip, SGD) of zoo:resnet20 on a 1x28x28 batch: the float
// model against its QN-transformed models, set up as the trainer's joint phase runs them (the
// recipe's temperatures at schedule T = 20, soft weights, hard-forward activations, the loss
// distilled from precomputed teacher logits). The W2A2 step should cost at most 1.3x the float
// step.
//
//   train_step_bench --benchmark_filter=resnet20 --benchmark_min_time=5
#include <benchmark/benchmark.h>
#include <torch/csrc/jit/runtime/graph_executor.h>
#include <torch/torch.h>

#include "workers/engine/quantization/levels.h"
#include "workers/engine/training/sgd.h"
#include "workers/engine/training/trainer.h"
#include "workers/engine/transform/transform.h"
#include "workers/engine/zoo/zoo.h"

namespace qnet::engine {
namespace {

constexpr int64_t kBatch = 64;

torch::jit::Module Model(const std::string& name) {
  torch::jit::setGraphExecutorOptimize(false);  // as the trainer runs graphs
  return *MakeZooModel(name, 1, 10, 1);
}

void TrainStepFloat(benchmark::State& state, const std::string& name) {
  torch::jit::Module m = Model(name);
  m.train(true);
  std::vector<torch::Tensor> params;
  for (const torch::Tensor& p : m.parameters()) params.push_back(p);
  Sgd sgd({{params, 5e-4}}, 0.9);
  torch::manual_seed(1);
  const torch::Tensor x = torch::randn({kBatch, 1, 28, 28});
  const torch::Tensor y = torch::randint(0, 10, {kBatch}, torch::kLong);
  for (auto _ : state) {
    const torch::Tensor loss = torch::cross_entropy_loss(m.forward({x}).toTensor(), y);
    loss.backward();
    ClipGradNorm(params, 5.0);
    sgd.Step(0.01);
    sgd.ZeroGrad();
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
}

void TrainStepQuantized(benchmark::State& state, const std::string& name, int wbits, int abits) {
  QuantSpec spec;
  spec.weight_levels = *WeightLevels(wbits);
  if (abits > 0) spec.activation_levels = *ActivationLevels(abits);
  auto q = *QuantizedModel::Create(Model(name).clone(), spec);
  q->module().train(true);
  q->SetActivationsEnabled(abits > 0);
  const Recipe recipe;
  constexpr double kScheduleT = 20.0;
  q->SetTemperature(kScheduleT * recipe.weight_temperature_factor,
                    kScheduleT * recipe.activation_temperature_factor);
  q->SetHard(false, recipe.hard_forward_activations);
  Sgd sgd({{q->OtherParameters(), 1e-4},
           {q->LatentWeights(), 1e-4},
           {q->WeightQuantizerParameters(), 0},
           {q->ActivationQuantizerParameters(), 0}},
          0.9);
  const std::vector<torch::Tensor> params = sgd.AllParameters();
  torch::manual_seed(1);
  const torch::Tensor x = torch::randn({kBatch, 1, 28, 28});
  const torch::Tensor y = torch::randint(0, 10, {kBatch}, torch::kLong);
  const torch::Tensor teacher = torch::randn({kBatch, 10});
  for (auto _ : state) {
    q->RefreshWeights();
    const torch::Tensor loss = DistillationLoss(q->Forward(x), y, teacher, recipe.distill_weight,
                                                recipe.distill_temperature);
    loss.backward();
    ClipGradNorm(params, 5.0);
    sgd.Step(0.01);
    sgd.ZeroGrad();
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
}

BENCHMARK_CAPTURE(TrainStepFloat, resnet20, std::string("resnet20"))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(TrainStepQuantized, resnet20_W2, std::string("resnet20"), 2, 0)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(TrainStepQuantized, resnet20_W2A2, std::string("resnet20"), 2, 2)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(TrainStepFloat, lenet5, std::string("lenet5"))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(TrainStepQuantized, lenet5_W2A2, std::string("lenet5"), 2, 2)
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace qnet::engine

BENCHMARK_MAIN();
