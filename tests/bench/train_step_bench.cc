// One training step (forward, backward, clip, SGD) of zoo:resnet20 on a 1x28x28 batch: the float
// model against its QN-transformed models, set up as the trainer's joint phase runs them (the
// recipe's temperatures at schedule T = 20, soft weights, hard-forward activations, the loss
// distilled from precomputed teacher logits). The W2A2 step should cost at most 1.3x the float
// step. QNET_BENCH_MODEL=FILE.pt (a user's TorchScript classifier with 10 outputs) adds its float
// step against its W4 (weights only) step, on the input QNET_BENCH_INPUT (CxHxW, default 3x32x32):
// the transform should add at most 10% there; TrainStepPaired/user_model_W4 times the two steps
// alternately in one loop, for a ratio that both measure under the same load. QNET_BENCH_BATCH
// sets the batch size (default 64). The process's heap is set up as qnet-worker's
// (KeepTrainingBuffersInHeap); QNET_BENCH_DEFAULT_HEAP=1 keeps glibc's defaults instead. Both
// steps store convolution weights channels-last when the model trains that way, as the trainer
// does (memory_layout.h); QNET_BENCH_NCHW=1 keeps PyTorch's default layout instead.
//
//   train_step_bench --benchmark_filter=resnet20 --benchmark_min_time=5
#include <benchmark/benchmark.h>
#include <torch/csrc/jit/runtime/graph_executor.h>
#include <torch/torch.h>

#include <time.h>

#include <chrono>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <memory>
#include <string_view>
#include <vector>

#include "absl/strings/numbers.h"
#include "common/job/job_spec.h"
#include "workers/engine/quantization/levels.h"
#include "workers/engine/training/heap.h"
#include "workers/engine/training/memory_layout.h"
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

// The model's weights in the layout the trainer would choose for it.
void LayOut(torch::jit::Module& m, const Subject& subject, std::vector<torch::Tensor> weights) {
  const bool nhwc = std::getenv("QNET_BENCH_NCHW") == nullptr &&
                    ChannelsLastTrains(m, Batch(subject).slice(0, 0, 2));
  SetChannelsLast(weights, nhwc);
}

// One model's training step, set up once: Step() runs forward, backward, clip and SGD.
class FloatStep {
 public:
  explicit FloatStep(const Subject& subject) : m_(Load(subject)) {
    LayOut(m_, subject, ModuleParameters(m_));
    m_.train(true);
    for (const torch::Tensor& p : m_.parameters()) params_.push_back(p);
    sgd_ = std::make_unique<Sgd>(std::vector<ParamGroup>{{params_, 5e-4}}, 0.9);
    torch::manual_seed(1);
    x_ = Batch(subject);
    y_ = torch::randint(0, 10, {kBatch}, torch::kLong);
  }

  void Step() {
    const torch::Tensor loss = torch::cross_entropy_loss(m_.forward({x_}).toTensor(), y_);
    loss.backward();
    ClipGradNorm(params_, 5.0);
    sgd_->Step(0.01);
    sgd_->ZeroGrad();
  }

 private:
  torch::jit::Module m_;
  std::vector<torch::Tensor> params_;
  std::unique_ptr<Sgd> sgd_;
  torch::Tensor x_, y_;
};

// The QN-transformed model as the trainer's joint phase runs it.
class QuantizedStep {
 public:
  QuantizedStep(const Subject& subject, int wbits, int abits) {
    QuantSpec spec;
    spec.weight_levels = *WeightLevels(wbits);
    if (abits > 0) spec.activation_levels = *ActivationLevels(abits);
    torch::jit::Module float_model = Load(subject);
    q_ = *QuantizedModel::Create(float_model.clone(), spec);
    LayOut(float_model, subject, ModuleParameters(*q_));
    q_->module().train(true);
    q_->SetActivationsEnabled(abits > 0);
    constexpr double kScheduleT = 20.0;
    q_->SetTemperature(kScheduleT * recipe_.weight_temperature_factor,
                       kScheduleT * recipe_.activation_temperature_factor);
    q_->SetHard(false, recipe_.hard_forward_activations);
    sgd_ = std::make_unique<Sgd>(std::vector<ParamGroup>{{q_->OtherParameters(), 1e-4},
                                                         {q_->LatentWeights(), 1e-4},
                                                         {q_->WeightQuantizerParameters(), 0},
                                                         {q_->ActivationQuantizerParameters(), 0}},
                                 0.9);
    params_ = sgd_->AllParameters();
    torch::manual_seed(1);
    x_ = Batch(subject);
    y_ = torch::randint(0, 10, {kBatch}, torch::kLong);
    teacher_ = torch::randn({kBatch, 10});
  }

  void Step() {
    q_->RefreshWeights();
    const torch::Tensor loss = DistillationLoss(
        q_->Forward(x_), y_, teacher_, recipe_.distill_weight, recipe_.distill_temperature);
    loss.backward();
    ClipGradNorm(params_, 5.0);
    sgd_->Step(0.01);
    sgd_->ZeroGrad();
  }

 private:
  const Recipe recipe_;
  std::unique_ptr<QuantizedModel> q_;
  std::unique_ptr<Sgd> sgd_;
  std::vector<torch::Tensor> params_;
  torch::Tensor x_, y_, teacher_;
};

void TrainStepFloat(benchmark::State& state, const Subject& subject) {
  FloatStep step(subject);
  for (auto _ : state) step.Step();
  state.SetItemsProcessed(state.iterations() * kBatch);
}

void TrainStepQuantized(benchmark::State& state, const Subject& subject, int wbits, int abits) {
  QuantizedStep step(subject, wbits, abits);
  for (auto _ : state) step.Step();
  state.SetItemsProcessed(state.iterations() * kBatch);
}

// CPU time of the whole process (every thread) in ms.
double ProcessCpuMs() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

// A float step and a quantized step alternately in one loop, each timed on its own, so that both
// see the same machine load (this machine is shared; separate runs drift apart). Counters: each
// step's mean wall time and process CPU time, and the ratios (quantized / float). Under a load
// above the core count the CPU ratio is the one to read.
void TrainStepPaired(benchmark::State& state, const Subject& subject, int wbits, int abits) {
  FloatStep float_step(subject);
  QuantizedStep quantized_step(subject, wbits, abits);
  using Clock = std::chrono::steady_clock;
  double float_wall = 0, quant_wall = 0, float_cpu = 0, quant_cpu = 0;
  long float_faults = 0, quant_faults = 0;
  const auto since = [](Clock::time_point t) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
  };
  for (auto _ : state) {
    Clock::time_point start = Clock::now();
    double cpu = ProcessCpuMs();
    long faults = MinorPageFaults();
    float_step.Step();
    float_wall += since(start);
    float_cpu += ProcessCpuMs() - cpu;
    float_faults += MinorPageFaults() - faults;
    start = Clock::now();
    cpu = ProcessCpuMs();
    faults = MinorPageFaults();
    quantized_step.Step();
    quant_wall += since(start);
    quant_cpu += ProcessCpuMs() - cpu;
    quant_faults += MinorPageFaults() - faults;
  }
  const double n = static_cast<double>(state.iterations());
  state.counters["float_ms"] = float_wall / n;
  state.counters["quant_ms"] = quant_wall / n;
  state.counters["ratio"] = quant_wall / float_wall;
  state.counters["float_cpu_ms"] = float_cpu / n;
  state.counters["quant_cpu_ms"] = quant_cpu / n;
  state.counters["cpu_ratio"] = quant_cpu / float_cpu;
  state.counters["float_faults"] = static_cast<double>(float_faults) / n;
  state.counters["quant_faults"] = static_cast<double>(quant_faults) / n;
}

BENCHMARK_CAPTURE(TrainStepFloat, resnet20, Zoo("resnet20"))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(TrainStepQuantized, resnet20_W2, Zoo("resnet20"), 2, 0)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(TrainStepQuantized, resnet20_W2A2, Zoo("resnet20"), 2, 2)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(TrainStepQuantized, resnet20_W3A3, Zoo("resnet20"), 3, 3)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(TrainStepQuantized, resnet20_W1A2, Zoo("resnet20"), 1, 2)
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
  benchmark::RegisterBenchmark("TrainStepPaired/user_model_W4", TrainStepPaired, subject, 4, 0)
      ->Unit(benchmark::kMillisecond);
  return true;
}

}  // namespace
}  // namespace qnet::engine

int main(int argc, char** argv) {
  // The heap as qnet-worker sets it up; QNET_BENCH_DEFAULT_HEAP=1 keeps glibc's defaults, to
  // measure what the set-up saves.
  const char* default_heap = std::getenv("QNET_BENCH_DEFAULT_HEAP");
  if (default_heap == nullptr || std::string_view(default_heap) != "1") {
    qnet::engine::KeepTrainingBuffersInHeap();
  }
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
