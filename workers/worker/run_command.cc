#include "workers/worker/run_command.h"

#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/input_normalization.h"
#include "common/job_limits.h"
#include "workers/worker/progress_bar.h"

namespace qnet::worker {
namespace {

std::atomic<bool> g_interrupted{false};

void OnSigint(int /*signal*/) { g_interrupted.store(true); }

struct RunArgs {
  std::string model;
  std::string dataset;
  std::string dataset_format;
  int weight_bits = 2;
  std::string weight_levels;
  int activation_bits = 0;
  int epochs = 3;
  int pretrain_epochs = 0;
  int batch_size = 128;
  double lr = 0;
  int64_t max_train = 0;
  int64_t max_test = 0;
  uint64_t seed = 1;
  double temperature_slope = 0;
  double distill_weight = -1;
  std::vector<double> input_mean, input_std;
  bool quantize_first_last = false;
  bool learn_thresholds = false;
  std::string device = "auto";
  std::vector<std::string> exports;
  std::string out;
  std::string checkpoint_dir;
  std::string save_float_model;
};

bool Exists(const std::filesystem::path& p) {
  std::error_code ec;
  return std::filesystem::exists(p, ec);
}

std::string DetectFormat(const std::filesystem::path& dir) {
  if (Exists(dir / "train-images-idx3-ubyte") || Exists(dir / "train-images-idx3-ubyte.gz")) {
    return "idx";
  }
  if (Exists(dir / "data_batch_1.bin") || Exists(dir / "cifar-10-batches-bin")) return "cifar10";
  return "";
}

[[noreturn]] void Fail(int code, const std::string& message) {
  std::fprintf(stderr, "qnet-worker run: %s\n", message.c_str());
  throw CLI::RuntimeError(code);
}

std::string Bytes(int64_t b) {
  if (b >= (int64_t{1} << 20)) return absl::StrFormat("%.2f MiB", b / 1048576.0);
  if (b >= 1024) return absl::StrFormat("%.1f KiB", b / 1024.0);
  return absl::StrCat(b, " B");
}

void Run(const RunArgs& a) {
  engine::JobConfig config;
  config.model = a.model;
  absl::StatusOr<DatasetChoice> ds = ResolveDataset(a.dataset, a.dataset_format);
  if (!ds.ok()) Fail(2, std::string(ds.status().message()));
  config.dataset_dir = ds->dir;
  config.dataset_format = ds->format;
  config.weight_bits = a.weight_bits;
  if (!a.weight_levels.empty()) {
    for (absl::string_view part : absl::StrSplit(a.weight_levels, ',')) {
      double v = 0;
      if (!absl::SimpleAtod(part, &v)) {
        Fail(2, absl::StrCat("--weight-levels: '", part, "' is not a number"));
      }
      config.weight_levels.push_back(v);
    }
  }
  config.activation_bits = a.activation_bits;
  config.train.epochs = a.epochs;
  config.train.pretrain_epochs = a.pretrain_epochs;
  config.train.batch_size = a.batch_size;
  config.train.learning_rate = a.lr;
  config.train.max_train_samples = a.max_train;
  config.train.max_test_samples = a.max_test;
  config.train.seed = a.seed;
  config.train.temperature_slope = a.temperature_slope;
  config.train.distill_weight = a.distill_weight;
  config.input_mean = a.input_mean;
  config.input_std = a.input_std;
  config.train.quantize_first_last = a.quantize_first_last;
  config.train.learn_thresholds = a.learn_thresholds;
  config.train.device = a.device;
  config.export_formats = a.exports;
  config.out_dir = a.out;
  config.checkpoint_dir = a.checkpoint_dir;
  config.float_model_path = a.save_float_model;

  ProgressBar bar(stderr, isatty(fileno(stderr)) != 0);
  engine::JobCallbacks callbacks;
  callbacks.on_progress = [&](const engine::ProgressEvent& e) { bar.Update(e); };
  callbacks.should_stop = [] { return g_interrupted.load(); };
  auto previous = std::signal(SIGINT, OnSigint);
  absl::StatusOr<engine::JobResult> result = engine::RunJob(config, callbacks);
  std::signal(SIGINT, previous);
  bar.Finish();
  if (!result.ok()) {
    if (absl::IsCancelled(result.status())) Fail(130, "interrupted");
    Fail(absl::IsInvalidArgument(result.status()) ? 2 : 1, std::string(result.status().message()));
  }
  std::fputs(FormatSummary(config, *result).c_str(), stdout);
  std::fflush(stdout);
}

}  // namespace

absl::StatusOr<DatasetChoice> ResolveDataset(const std::string& dataset,
                                             const std::string& format) {
  static const std::vector<std::pair<std::string, DatasetChoice>> kNamed = {
      {"fashion-mnist", {"/usr/share/datasets/fashion-mnist", "idx"}},
      {"mnist", {"/usr/share/datasets/mnist", "idx"}},
      {"cifar10", {"/usr/share/datasets/cifar10", "cifar10"}},
  };
  DatasetChoice choice;
  for (const auto& [name, c] : kNamed) {
    if (dataset == name) choice = c;
  }
  if (choice.dir.empty()) {
    std::error_code ec;
    if (!std::filesystem::is_directory(dataset, ec)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--dataset '", dataset,
          "' is neither a known name (fashion-mnist, mnist, cifar10) nor a directory"));
    }
    choice.dir = dataset;
    choice.format = DetectFormat(dataset);
  }
  if (!format.empty()) choice.format = format;
  if (choice.format.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--dataset ", dataset,
        ": no IDX (train-images-idx3-ubyte[.gz]) or CIFAR-10 (data_batch_1.bin) files found; "
        "give --dataset-format"));
  }
  return choice;
}

std::string FormatSummary(const engine::JobConfig& config, const engine::JobResult& result) {
  const engine::JobMetrics& m = result.metrics;
  std::string bits = absl::StrCat("W", config.weight_bits);
  if (!config.weight_levels.empty())
    bits = absl::StrCat("W{", config.weight_levels.size(), " levels}");
  if (config.activation_bits > 0) absl::StrAppend(&bits, "A", config.activation_bits);
  std::string s = absl::StrFormat("\n%s on %s (%s, device %s)\n", config.model, config.dataset_dir,
                                  bits, m.device);
  absl::StrAppendFormat(&s, "  %-26s %8s %8s\n", "", "top-1", "top-5");
  absl::StrAppendFormat(&s, "  %-26s %7.2f%% %7.2f%%\n", "float", 100 * m.float_top1,
                        100 * m.float_top5);
  absl::StrAppendFormat(&s, "  %-26s %7.2f%% %7.2f%%\n", "quantized (hard, BN re-est)",
                        100 * m.quantized_top1, 100 * m.quantized_top5);
  if (config.train.epochs > 0) {  // without QN epochs there is no last epoch to report
    absl::StrAppendFormat(&s, "  %-26s %7.2f%%\n", "last epoch soft", 100 * m.soft_top1);
    absl::StrAppendFormat(&s, "  %-26s %7.2f%%\n", "last epoch hard", 100 * m.hard_top1);
  }
  if (m.packed_size_bytes > 0) {
    absl::StrAppendFormat(&s, "  size: float %s, packed %s, ratio %.1fx\n",
                          Bytes(m.float_size_bytes), Bytes(m.packed_size_bytes),
                          m.compression_ratio);
  } else {
    absl::StrAppendFormat(&s, "  size: float %s (no packed artifact: --export lacks packed)\n",
                          Bytes(m.float_size_bytes));
  }
  absl::StrAppend(&s, "  ", FormatInputNormalization(m.input_mean, m.input_std), "\n");
  for (const engine::ArtifactFile& a : result.artifacts) {
    absl::StrAppendFormat(&s, "  %-12s %s\n", a.kind, a.path);
  }
  return s;
}

void RegisterRunCommand(CLI::App& app) {
  auto args = std::make_shared<RunArgs>();
  CLI::App* run = app.add_subcommand("run", "Run one compression job locally");
  run->add_option("--model", args->model, "zoo:lenet5, zoo:resnet20, or a TorchScript .pt file")
      ->required();
  run->add_option("--dataset", args->dataset,
                  "fashion-mnist, mnist, cifar10, or a directory of IDX / CIFAR-10 files")
      ->required();
  run->add_option("--dataset-format", args->dataset_format, "idx or cifar10 (default: detect)")
      ->check(CLI::IsMember({"idx", "cifar10"}));
  run->add_option("--weight-bits", args->weight_bits, "weight bits (1..8)")
      ->check(CLI::Range(1, 8));
  run->add_option("--weight-levels", args->weight_levels,
                  "explicit weight levels, comma separated (overrides --weight-bits)");
  run->add_option("--activation-bits", args->activation_bits, "activation bits (0: float)")
      ->check(CLI::Range(0, 8));
  run->add_option("--epochs", args->epochs, "QN fine-tuning epochs")->check(CLI::Range(0, 10000));
  run->add_option("--pretrain-epochs", args->pretrain_epochs, "full-precision epochs first")
      ->check(CLI::Range(0, 10000));
  run->add_option("--batch-size", args->batch_size)->check(CLI::Range(1, 65536));
  run->add_option("--lr", args->lr, "QN learning rate (0: the recipe's)")
      ->check(CLI::Range(0.0, 100.0));
  run->add_option("--max-train-samples", args->max_train, "0: all")->check(CLI::NonNegativeNumber);
  run->add_option("--max-test-samples", args->max_test, "0: all")->check(CLI::NonNegativeNumber);
  run->add_option("--seed", args->seed);
  run->add_option("--temperature-slope", args->temperature_slope, "0: the recipe's")
      ->check(CLI::Range(0.0, kMaxTemperatureSlope));
  run->add_option("--distill-weight", args->distill_weight,
                  "weight of the float model's predictions in the QN loss, 0 (labels only) to 1 "
                  "(default: the recipe's 0.5)")
      ->check(CLI::Range(0.0, 1.0));
  run->add_option("--input-mean", args->input_mean,
                  "per-channel mean the model's inputs are normalised with, pixels scaled to "
                  "[0,1], comma-separated (default: the dataset's; give with --input-std)")
      ->delimiter(',');
  run->add_option("--input-std", args->input_std,
                  "per-channel std of that normalisation, comma-separated")
      ->delimiter(',');
  run->add_flag("--quantize-first-last", args->quantize_first_last);
  run->add_flag("--learn-thresholds", args->learn_thresholds);
  run->add_option("--device", args->device, "auto, cpu, cuda or cuda:N");
  run->add_option("--export", args->exports, "artifacts (default all)")
      ->check(CLI::IsMember({"torchscript", "onnx", "packed", "metrics"}))
      ->delimiter(',');
  run->add_option("--checkpoint-dir", args->checkpoint_dir,
                  "write per-epoch checkpoints here and resume from the newest");
  run->add_option("--save-float-model", args->save_float_model,
                  "also save the full-precision model (after pre-training) here as TorchScript");
  run->add_option("--out", args->out, "output directory for the artifacts")->required();
  run->callback([args] { Run(*args); });
}

}  // namespace qnet::worker
