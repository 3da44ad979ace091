// Image-classification datasets for the engine, in any format of datasets/dataset_format.h (IDX,
// CIFAR-10 binary, image folders, archives, .npz), prepared for the model's input as docs/METHOD.md
// ("Input pipeline") describes: every image resized and centre-cropped to the model's input size
// (torchvision's Resize + CenterCrop), one-channel images repeated for a three-channel model, a
// seeded held-out test split when the dataset has none, subset limits for quick runs, normalised
// per batch, and seeded training augmentation (pad-4 or RandomResizedCrop, horizontal flip).
//
// A dataset whose prepared images fit the memory budget is decoded once, on a pool of threads,
// into uint8 tensors at the input size (and kept per process for the next job on the same data);
// a larger one streams from its files, decoded by a pool of threads that fills batches ahead of
// the training step. Both give the same batches.
//
//   absl::StatusOr<qnet::engine::DatasetSplits> d = qnet::engine::LoadDataset(
//       "/usr/share/datasets/fashion-mnist", "idx", {.max_train = 6000});
//   qnet::engine::BatchIterator it(d->train, /*batch_size=*/128, /*seed=*/1, /*epoch=*/0,
//                                  d->augment);
//   while (auto batch = it.Next()) { model.forward({batch->images}); ... }
#ifndef QNET_WORKERS_ENGINE_DATA_DATA_H_
#define QNET_WORKERS_ENGINE_DATA_DATA_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "qnet/v1/job.pb.h"
#include "workers/engine/data/image_ops.h"

namespace qnet::engine {

class BatchPipeline;

// Decodes the images of a split that is not held in memory: row i, prepared for the model's
// input (uint8 [C, H, W]). Thread-safe.
class ImageStream {
 public:
  virtual ~ImageStream() = default;
  // Errors name the file and the problem.
  virtual absl::Status Decode(int64_t row, torch::Tensor& out) const = 0;
};

// One split of N images at the model's input size and their labels.
struct TensorDataset {
  // In memory: [N, C, H, W]; uint8 pixels are normalised per batch with mean/std below, float
  // images are taken as already normalised. Undefined when the split streams.
  torch::Tensor images = {};
  torch::Tensor labels = {};                       // [N] int64
  std::shared_ptr<const ImageStream> stream = {};  // set when the split streams from its files
  std::vector<int64_t> shape = {};                 // {C, H, W} of a streaming split's images
  std::vector<double> mean = {}, std = {};         // x' = (pixel / 255 - mean[c]) / std[c]
  Augmentation augmentation = {};                  // what BatchIterator applies when it augments
  int loader_threads = 0;                          // decode/augment threads; 0: one per core

  int64_t size() const { return labels.defined() && labels.dim() == 1 ? labels.size(0) : 0; }
};

struct DatasetSplits {
  TensorDataset train;
  TensorDataset test;  // the dataset's own test split, or the held-out part of its train split
  int64_t num_classes = 10;
  std::vector<std::string> class_names;  // index = label
  // The model's input: what every image is prepared to.
  int64_t channels = 1, height = 28, width = 28;
  // Evaluation: shorter side resized to this, then centre-cropped to height x width.
  int64_t resize_size = 28;
  // What both splits were normalised with, one value per model channel: LoadOptions' values when
  // given (a single value serves every channel), else the train split's statistics. The artifacts
  // record them.
  std::vector<double> channel_mean, channel_std;
  // Whether training augments (BatchIterator's `augment`), and how (train.augmentation).
  bool augment = false;
  bool channel_repeat = false;  // one-channel images feed a model of more channels
  bool holdout = false;         // the test split was held out of the training images
  bool streaming = false;       // the splits decode from the files batch by batch
};

struct LoadOptions {
  int64_t max_train = 0;  // 0: all; otherwise the first N after a seeded shuffle (negative: error)
  int64_t max_test = 0;
  uint64_t seed = 1;
  // The normalisation the model expects: one value per model channel, or one for all channels
  // (common/input_normalization.h); both empty: the train split's own statistics.
  std::vector<double> mean = {}, std = {};
  // The model's input "CxHxW" (JobSpec.input_shape); empty: the dataset's own shape.
  std::string input_shape = {};
  // JobSpec.preprocessing; unset augmentation switches take the format's defaults.
  v1::Preprocessing preprocessing = {};
  // Prepared images of both splits up to this many bytes (uint8) are held in memory; larger
  // datasets stream.
  int64_t memory_budget_bytes = int64_t{2} << 30;
  int loader_threads = 0;  // 0: one per core
};

// `format` is a registered dataset format's name (datasets::DatasetFormatNames()), or empty to
// detect it. Malformed input returns INVALID_ARGUMENT naming the file and the problem (bad magic,
// truncated, undecodable image, label out of range, a colour image for a one-channel model), and
// so do a normalisation or input shape that does not fit; a missing file NOT_FOUND. Never throws.
absl::StatusOr<DatasetSplits> LoadDataset(const std::string& dir, const std::string& format,
                                          const LoadOptions& options);

// Drops the prepared datasets this process keeps for later jobs.
void ClearDatasetCache();

struct Batch {
  torch::Tensor images;   // [B, C, H, W] float, normalised
  torch::Tensor labels;   // [B]
  torch::Tensor indices;  // [B] int64: each sample's row in the dataset
};

// A streaming split's image that does not decode, thrown out of BatchIterator::Next (whose
// callers cannot return a status); RunJob turns it back into its status (INVALID_ARGUMENT).
class DataError : public std::runtime_error {
 public:
  explicit DataError(absl::Status status)
      : std::runtime_error(std::string(status.message())), status_(std::move(status)) {}
  const absl::Status& status() const { return status_; }

 private:
  absl::Status status_;
};

// Iterates one epoch in a permutation fixed by (seed, epoch); the last partial batch is kept.
// With `augment`, each training image gets data.augmentation with parameters drawn from (seed,
// epoch, its position in the epoch), so a resumed job replays the same batches whichever thread
// prepared them. Streaming or augmented splits are prepared ahead by a pool of threads while the
// caller trains. `data` must outlive the iterator; batch_size < 1 counts as 1; a dataset whose
// images and labels disagree in count iterates as empty. Next() throws only DataError.
class BatchIterator {
 public:
  BatchIterator(const TensorDataset& data, int64_t batch_size, uint64_t seed, int64_t epoch,
                bool augment);
  // In row order, without augmentation (predictions kept per row).
  BatchIterator(const TensorDataset& data, int64_t batch_size);
  ~BatchIterator();
  BatchIterator(const BatchIterator&) = delete;
  BatchIterator& operator=(const BatchIterator&) = delete;

  std::optional<Batch> Next();
  int64_t num_batches() const;
  // Seconds Next() has spent waiting for the loader threads.
  double wait_seconds() const { return wait_seconds_; }

 private:
  void Start(int64_t n, uint64_t sample_seed);
  torch::Tensor Prepared(const torch::Tensor& rows) const;

  const TensorDataset& data_;
  int64_t batch_size_;
  bool augment_;
  torch::Tensor order_;
  int64_t position_ = 0;
  std::unique_ptr<BatchPipeline> pipeline_;
  double wait_seconds_ = 0;
};

// Normalises uint8 images ([..., C, H, W]) as the data set says; float images are returned as
// they are.
torch::Tensor NormaliseImages(const torch::Tensor& images, const TensorDataset& data);

}  // namespace qnet::engine

#endif  // QNET_WORKERS_ENGINE_DATA_DATA_H_
