// The vocabulary of one job run, Torch-free, for the engine and everything that drives it
// (`qnet-worker run`, the lease loop of `qnet-worker serve`, tests with a fake engine): the job is
// the API's JobSpec, unchanged; RunContext says where this process keeps its inputs and outputs.
// Progress, metrics and artifacts come back in the structs below.
//
//   qnet::engine::JobRun run;
//   run.spec.set_model("zoo:lenet5");
//   run.spec.set_dataset("fashion-mnist");
//   run.context.dataset_dir = "/usr/share/datasets/fashion-mnist";
//   run.context.dataset_format = "idx";
//   run.context.out_dir = "/tmp/out";
#ifndef QNET_WORKERS_ENGINE_JOB_RUN_H_
#define QNET_WORKERS_ENGINE_JOB_RUN_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "qnet/v1/job.pb.h"

namespace qnet::engine {

// Where this process finds the job's inputs and puts its outputs.
struct RunContext {
  // The model file to load when spec.model is not a zoo name: the cached blob of a leased job,
  // or the file `qnet-worker run` was given. Empty: spec.model itself is the path.
  std::string model_path;
  std::string dataset_dir;     // folder holding the dataset files
  std::string dataset_format;  // a registered dataset format ("idx", "cifar10"); empty: detect
  // Datasets whose prepared images (uint8 at the model's input size) fit in this many bytes are
  // decoded once and kept in memory; larger ones stream from their files.
  int64_t dataset_memory_budget_bytes = int64_t{2} << 30;
  int loader_threads = 0;       // threads decoding and augmenting images; 0: one per core
  std::string device = "auto";  // "auto" (CUDA when available), "cpu", "cuda", "cuda:N"
  std::string out_dir;          // artifacts land here
  std::string checkpoint_dir;   // checkpoints are written here; resumes from the newest one present
  // When set, the full-precision model (after pre-training, before quantization) is saved here as
  // TorchScript: the float baseline a zoo job trained, reusable as the --model of later jobs. It
  // records its input normalisation like the artifacts do. Not written when a resumed run starts
  // past pre-training (its float weights are not restored).
  std::string float_model_path;
};

struct JobRun {
  // The job as submitted. Unset settings take the defaults of common/job/job_spec.h. An empty
  // input_normalization means: what a model file records (qnet_input_mean/qnet_input_std, as
  // qnet's artifacts and saved float models do), else the training split's statistics.
  v1::JobSpec spec;
  RunContext context;
};

struct ProgressEvent {
  std::string phase;  // "pretrain", "weights", "joint", "finalize"
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
  // Parity: the TorchScript artifact's top-1 as loaded back from its file, and the ONNX
  // artifact's as ONNX Runtime computes it (each unset when that format was not exported; the
  // ONNX one also when the worker has no ONNX Runtime, export/onnx_runtime.h).
  std::optional<double> torchscript_top1, onnx_top1;
  int64_t float_size_bytes = 0, packed_size_bytes = 0;
  double compression_ratio = 0;
  std::vector<EpochRecord> epochs;
  std::string device;
  // How training stored the 4-D weights: "channels_last" (NHWC, on the CPU when the model trains
  // that way, training/memory_layout.h) or "contiguous". Artifacts are contiguous either way.
  std::string training_layout;
  std::vector<double> input_mean, input_std;  // the normalisation used (see JobRun::spec)
  v1::JobSpec effective_spec;                 // the spec with every default resolved
  std::vector<std::string> class_names;       // the dataset's, index = label
  // What effective_spec cannot say about the input pipeline: the training crop ("none", "pad4",
  // "random_resized"), whether one-channel images were repeated to the model's channels, and
  // whether the test split was held out of the training images.
  std::string train_crop;
  bool channel_repeat = false;
  bool holdout = false;
  // The batch norms the ONNX importer put back behind folded convolutions (their submodules).
  std::vector<std::string> restored_batch_norms;
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

}  // namespace qnet::engine

#endif  // QNET_WORKERS_ENGINE_JOB_RUN_H_
