// The engine's input pipeline on a dataset folder: how many training images per second it
// prepares (decode, resize, augment, normalise) when nothing else runs, streaming and in memory,
// and how long a training loop waits for it. tests/bench/loader_bench.sh runs it beside
// torchvision's DataLoader (loader_bench_torchvision.py) on the same folders.
//
//   qnet_loader_bench --dataset DIR --input-shape 3x224x224 --threads 2 [--batch 128]
//       [--epochs 2] [--model resnet20] [--rrc-scale-min 0.25]
// Prints one line per measurement: "<mode> <images/s> ..." (see below).
#include <chrono>
#include <cstdio>
#include <string>

#include <torch/torch.h>
#include <CLI/CLI.hpp>

#include "workers/engine/data/data.h"
#include "workers/engine/zoo/zoo.h"

namespace qnet::engine {
namespace {

double Seconds(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

struct Args {
  std::string dataset, format, input_shape = "3x32x32", model = "resnet20";
  int threads = 2, epochs = 2;
  int64_t batch = 128, train_batches = 20;
  double rrc_scale_min = 0;  // > 0: RandomResizedCrop from this area fraction, and flip
};

// Images per second over `epochs` augmented training epochs, nothing consuming them.
double Throughput(const DatasetSplits& d, const Args& a) {
  const auto start = std::chrono::steady_clock::now();
  int64_t images = 0;
  for (int epoch = 0; epoch < a.epochs; ++epoch) {
    BatchIterator it(d.train, a.batch, 1, epoch, d.augment);
    while (std::optional<Batch> b = it.Next()) images += b->labels.size(0);
  }
  return static_cast<double>(images) / Seconds(start);
}

// A training loop of `train_batches` steps (forward, backward) of a zoo model: the share of its
// time spent waiting in BatchIterator::Next.
void TrainingWait(const DatasetSplits& d, const Args& a, const char* mode) {
  torch::jit::Module model = *MakeZooModel(a.model, d.channels, d.num_classes, 1);
  model.train(true);
  BatchIterator it(d.train, a.batch, 1, 0, d.augment);
  const auto start = std::chrono::steady_clock::now();
  int64_t steps = 0;
  while (steps < a.train_batches) {
    std::optional<Batch> b = it.Next();
    if (!b) break;
    torch::cross_entropy_loss(model.forward({b->images}).toTensor(), b->labels).backward();
    ++steps;
  }
  const double total = Seconds(start);
  std::printf(
      "%s training: %lld steps in %.2f s, waiting on the loader %.3f s (%.1f%%; first "
      "batch included)\n",
      mode, static_cast<long long>(steps), total, it.wait_seconds(),
      100.0 * it.wait_seconds() / total);
}

int Main(int argc, char** argv) {
  Args a;
  CLI::App app("input pipeline throughput");
  app.add_option("--dataset", a.dataset)->required();
  app.add_option("--format", a.format, "dataset format (default: detect)");
  app.add_option("--input-shape", a.input_shape);
  app.add_option("--threads", a.threads);
  app.add_option("--batch", a.batch);
  app.add_option("--epochs", a.epochs);
  app.add_option("--train-batches", a.train_batches);
  app.add_option("--model", a.model);
  app.add_option("--rrc-scale-min", a.rrc_scale_min,
                 "turn RandomResizedCrop (from this area fraction) and flip on");
  CLI11_PARSE(app, argc, argv);
  for (const bool streaming : {true, false}) {
    const char* mode = streaming ? "streaming" : "in-memory";
    ClearDatasetCache();
    const auto start = std::chrono::steady_clock::now();
    LoadOptions options{.input_shape = a.input_shape,
                        .memory_budget_bytes = streaming ? 0 : int64_t{8} << 30,
                        .loader_threads = a.threads};
    if (a.rrc_scale_min > 0) {
      options.preprocessing.set_random_resized_crop(true);
      options.preprocessing.set_crop_scale_min(a.rrc_scale_min);
      options.preprocessing.set_horizontal_flip(true);
    }
    absl::StatusOr<DatasetSplits> d = LoadDataset(a.dataset, a.format, options);
    if (!d.ok()) {
      std::fprintf(stderr, "%s\n", std::string(d.status().message()).c_str());
      return 1;
    }
    std::printf("%s load: %.2f s (%lld train images%s)\n", mode, Seconds(start),
                static_cast<long long>(d->train.size()),
                streaming ? ", statistics from a sample" : ", decoded and resized once");
    std::printf("%s epoch: %.0f images/s (%s crop, flip %s, %d threads)\n", mode, Throughput(*d, a),
                CropName(d->train.augmentation.crop).c_str(),
                d->train.augmentation.flip ? "on" : "off", a.threads);
    TrainingWait(*d, a, mode);
  }
  return 0;
}

}  // namespace
}  // namespace qnet::engine

int main(int argc, char** argv) { return qnet::engine::Main(argc, argv); }
