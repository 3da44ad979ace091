// One training step (forward, backward, clip, SGD) of zoo:resnet20 on a 1x28x28 batch: the float
// model against its QN-transformed models, set up as the trainer's joint phase runs them (the
// recipe's temperatures at schedule T = 20, soft weights, hard-forward activations, the loss
// distilled from precomputed teacher logits). The W2A2 step should cost at most 1.3x the float
// step. QNET_BENCH_MODEL=FILE.pt (a user's TorchScript classifier with 10 outputs) adds its float
// step against its W4 (weights only) step, on the input QNET_BENCH_INPUT (CxHxW, default 3x32x32):
// the transform should add at most 10% there. QNET_BENCH_BATCH sets the batch size (default 64).
//
//   train_step_bench --benchmark_filter=resnet20 --benchmark_min_time=5
#include <benchmark/benchmark.h>
#include <torch/csrc/jit/runtime/graph_executor.h>
#include <torch/torch.h>

#include <cstdlib>
#include <functional>
#include <iostream>

#include "absl/strings/numbers.h"
#include "common/job/job_spec.h"
#include "workers/engine/quantization/levels.h"
#include "workers/engine/training/sgd.h"
#include "workers/engine/training/trainer.h"
#include "workers/engine/transform/transform.h"
#include "workers/engine/zoo/zoo.h"

namespace qnet::engine {
namespace {

// QNET_BENCH_BATCH, or 64; 0 when it is not a positive integer.
int64_t BatchSize() {
  const char* text = std::getenv("QNET_BENCH_BATCH");
  if (text == nullptr || *text == '\0') return 64;
  int64_t batch = 0;
  if (!absl::SimpleAtoi(text, &batch) || batch <= 0) return 0;
  return batch;
}
const int64_t kBatch = BatchSize();

// A model to time and the input it takes.
struct Subject {
  std::function<torch::jit::Module()> load;
  std::vector<int64_t> input;  // C, H, W
};

Subject Zoo(const std::string& name) {
  return {[name] { return *MakeZooModel(name, 1, 10, 1); }, {1, 28, 28}};
}

torch::jit::Module Load(const Subject& subject) {
  torch::jit::setGraphExecutorOptimize(false);  // as the trainer runs graphs
  return subject.load();
}

torch::Tensor Batch(const Subject& subject) {
  std::vector<int64_t> shape{kBatch};
  shape.insert(shape.end(), subject.input.begin(), subject.input.end());
  return torch::randn(shape);
}

void TrainStepFloat(benchmark::State& state, const Subject& subject) {
  torch::jit::Module m = Load(subject);
  m.train(true);
  std::vector<torch::Tensor> params;
  for (const torch::Tensor& p : m.parameters()) params.push_back(p);
  Sgd sgd({{params, 5e-4}}, 0.9);
  torch::manual_seed(1);
  const torch::Tensor x = Batch(subject);
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

void TrainStepQuantized(benchmark::State& state, const Subject& subject, int wbits, int abits) {
  QuantSpec spec;
  spec.weight_levels = *WeightLevels(wbits);
  if (abits > 0) spec.activation_levels = *ActivationLevels(abits);
  auto q = *QuantizedModel::Create(Load(subject).clone(), spec);
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
  const torch::Tensor x = Batch(subject);
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

BENCHMARK_CAPTURE(TrainStepFloat, resnet20, Zoo("resnet20"))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(TrainStepQuantized, resnet20_W2, Zoo("resnet20"), 2, 0)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(TrainStepQuantized, resnet20_W2A2, Zoo("resnet20"), 2, 2)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(TrainStepFloat, lenet5, Zoo("lenet5"))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(TrainStepQuantized, lenet5_W2A2, Zoo("lenet5"), 2, 2)
    ->Unit(benchmark::kMillisecond);

// The QNET_BENCH_MODEL cases; false when QNET_BENCH_INPUT does not parse.
bool RegisterUserModel() {
  const char* path = std::getenv("QNET_BENCH_MODEL");
  if (path == nullptr || *path == '\0') return true;
  const char* input = std::getenv("QNET_BENCH_INPUT");
  absl::StatusOr<job::InputShape> shape =
      job::ParseInputShape(input != nullptr && *input != '\0' ? input : "3x32x32");
  if (!shape.ok()) {
    std::cerr << "QNET_BENCH_INPUT: " << shape.status().message() << "\n";
    return false;
  }
  const std::string file = path;
  const Subject subject{[file] { return torch::jit::load(file); },
                        {shape->channels, shape->height, shape->width}};
  benchmark::RegisterBenchmark("TrainStepFloat/user_model", TrainStepFloat, subject)
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("TrainStepQuantized/user_model_W4", TrainStepQuantized, subject, 4,
                               0)
      ->Unit(benchmark::kMillisecond);
  return true;
}

}  // namespace
}  // namespace qnet::engine

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (qnet::engine::kBatch == 0) {
    std::cerr << "QNET_BENCH_BATCH must be a positive integer\n";
    return 2;
  }
  if (!qnet::engine::RegisterUserModel()) return 2;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
