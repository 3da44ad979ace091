// The engine's single entry point for running one compression job end to end.
//
// RunJob loads the model (zoo name or TorchScript file), the dataset, pre-trains in full precision
// when asked, fine-tunes with the QN recipe (docs/METHOD.md), evaluates, writes the artifacts into
// `out_dir`. Both `qnet-worker run` (local) and `qnet-worker serve` (leased jobs) call it; the
// caller owns the out and checkpoint directories, the engine owns everything written inside them.
//
//   qnet::engine::JobConfig config;
//   config.model = "zoo:lenet5";
//   config.dataset_dir = "/usr/share/datasets/fashion-mnist";
//   config.weight_bits = 2;
//   config.out_dir = "/tmp/out";
//   qnet::engine::JobCallbacks callbacks;
//   callbacks.on_progress = [](const qnet::engine::ProgressEvent& p) { ... };
//   absl::StatusOr<qnet::engine::JobResult> result = qnet::engine::RunJob(config, callbacks);
#ifndef QNET_WORKERS_ENGINE_JOB_RUNNER_H_
#define QNET_WORKERS_ENGINE_JOB_RUNNER_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace qnet::engine {

struct TrainSettings {
  int epochs = 3;           // QN fine-tuning epochs
  int pretrain_epochs = 0;  // full-precision epochs first (zoo models start untrained)
  int batch_size = 128;
  double learning_rate = 0;       // 0: the recipe's default for the phase
  int64_t max_train_samples = 0;  // 0: all
  int64_t max_test_samples = 0;   // 0: all
  uint64_t seed = 1;
  double temperature_slope = 0;  // 0: recipe default
  // Weight of the float model's predictions in the QN loss, 0 to 1 (0: the labels alone);
  // negative: the recipe's default.
  double distill_weight = -1;
  bool quantize_first_last = false;
  bool learn_thresholds = false;
  std::string device = "auto";  // "auto" (CUDA when available), "cpu", "cuda", "cuda:N"
};

struct JobConfig {
  std::string model;                   // "zoo:NAME" or a path to a TorchScript archive
  std::string dataset_dir;             // directory holding the dataset files
  std::string dataset_format = "idx";  // "idx" (MNIST/Fashion-MNIST) or "cifar10"
  int weight_bits = 2;
  int activation_bits = 0;            // 0: float activations
  std::vector<double> weight_levels;  // explicit levels; overrides weight_bits when non-empty
  // The input normalisation the model expects, per channel: x' = (pixel / 255 - mean) / std.
  // Empty: what a model file records (qnet_input_mean/qnet_input_std, as qnet's artifacts and
  // saved float models do), else the training split's statistics. The artifacts record what was
  // used.
  std::vector<double> input_mean, input_std;
  TrainSettings train;
  std::vector<std::string>
      export_formats;          // "torchscript", "onnx", "packed", "metrics"; empty: all
  std::string out_dir;         // artifacts land here
  std::string checkpoint_dir;  // checkpoints are written here; resumes from the newest one present
  // When set, the full-precision model (after pre-training, before quantization) is saved here as
  // TorchScript: the float baseline a zoo job trained, reusable as the --model of later jobs. It
  // records its input normalisation like the artifacts do.
  // Not written when a resumed run starts past pre-training (its float weights are not restored).
  std::string float_model_path;
};

struct ProgressEvent {
  std::string phase;  // "pretrain", "weights", "activations", "joint", "finalize"
  int epoch = 0;      // 1-based over all epochs (pretrain then QN)
  int total_epochs = 0;
  int64_t step = 0;  // within the epoch, 1-based
  int64_t steps_per_epoch = 0;
  double loss = 0;
  double temperature = 0;
  double accuracy = -1;  // last hard evaluation top-1 (fraction); -1 before the first
  double images_per_second = 0;
  double eta_seconds = 0;
  bool epoch_end = false;           // true once per epoch, after its evaluation
  int64_t device_memory_bytes = 0;  // held by the CUDA caching allocator; 0 on the CPU
};

struct EpochRecord {
  int epoch = 0;
  std::string phase;
  double train_loss = 0;
  double temperature = 0;
  double soft_top1 = 0;
  double hard_top1 = 0;
};

struct JobMetrics {
  double float_top1 = 0, float_top5 = 0;
  double quantized_top1 = 0, quantized_top5 = 0;  // hard, after batch-norm re-estimation
  double soft_top1 = 0, hard_top1 = 0;            // before re-estimation
  int64_t float_size_bytes = 0, packed_size_bytes = 0;
  double compression_ratio = 0;
  std::vector<EpochRecord> epochs;
  std::string device;
  std::vector<double> input_mean, input_std;  // the normalisation used (see JobConfig)
};

struct ArtifactFile {
  std::string kind;  // "torchscript", "onnx", "packed", "manifest", "metrics"
  std::string path;  // inside out_dir
};

struct JobResult {
  JobMetrics metrics;
  std::vector<ArtifactFile> artifacts;
};

struct JobCallbacks {
  std::function<void(const ProgressEvent&)> on_progress;
  // Called after a checkpoint file is complete on disk (once per epoch).
  std::function<void(const std::string& checkpoint_path)> on_checkpoint;
  // Polled between steps; true stops the job with absl::CancelledError.
  std::function<bool()> should_stop;
};

// Runs the job. Errors are values: INVALID_ARGUMENT for a bad model, dataset or settings (the
// message names the file and the problem), CANCELLED when should_stop said so, INTERNAL otherwise.
// Never throws.
absl::StatusOr<JobResult> RunJob(const JobConfig& config, const JobCallbacks& callbacks);

}  // namespace qnet::engine

#endif  // QNET_WORKERS_ENGINE_JOB_RUNNER_H_
