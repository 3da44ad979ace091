// Image-classification datasets for the engine, in any format of datasets/dataset_format.h (IDX,
// CIFAR-10 binary, ...), held in memory as normalised float tensors, with seeded shuffling,
// optional crop/flip augmentation, a held-out test split and subset limits for quick runs.
//
//   absl::StatusOr<qnet::engine::DatasetSplits> d =
//       qnet::engine::LoadDataset("/usr/share/datasets/fashion-mnist", "idx", {.max_train = 6000});
//   qnet::engine::BatchIterator it(d->train, /*batch_size=*/128, /*seed=*/1, /*epoch=*/0,
//                                  d->augment);
//   while (auto batch = it.Next()) { model.forward({batch->images}); ... }
#ifndef QNET_WORKERS_ENGINE_DATA_DATA_H_
#define QNET_WORKERS_ENGINE_DATA_DATA_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "absl/status/statusor.h"

namespace qnet::engine {

// N images [N, C, H, W] float32 normalised per channel, labels [N] int64.
struct TensorDataset {
  torch::Tensor images;
  torch::Tensor labels;
  int64_t size() const { return labels.size(0); }
};

struct DatasetSplits {
  TensorDataset train;
  TensorDataset test;  // the held-out split (the dataset's own test files)
  int64_t num_classes = 10;
  int64_t channels = 1, height = 28, width = 28;
  // What both splits were normalised with: x' = (x / 255 - mean[c]) / std[c]. LoadOptions'
  // values when given, else the statistics of the full train split. The artifacts record them.
  std::vector<double> channel_mean, channel_std;
  // Whether training should crop and flip (BatchIterator's `augment`): the format's choice
  // (DatasetFormat::augments), true for natural images such as CIFAR-10, false for IDX glyphs.
  bool augment = false;
};

struct LoadOptions {
  int64_t max_train = 0;  // 0: all; otherwise the first N after a seeded shuffle (negative: error)
  int64_t max_test = 0;
  uint64_t seed = 1;
  // The normalisation the model expects, one value per channel (common/input_normalization.h);
  // both empty: the train split's own statistics.
  std::vector<double> mean = {}, std = {};
};

// `format` is a registered dataset format's name (datasets::DatasetFormatNames(): "idx" reads
// train-images-idx3-ubyte[.gz] etc., "cifar10" data_batch_1..5.bin and test_batch.bin, optionally
// under cifar-10-batches-bin/); another name is INVALID_ARGUMENT listing the known ones. Malformed
// input returns INVALID_ARGUMENT naming the file and the problem (bad magic, truncated, count
// mismatch, label out of range), and so does a normalisation that is malformed or has a different
// channel count than the images; a missing file NOT_FOUND. Never throws.
absl::StatusOr<DatasetSplits> LoadDataset(const std::string& dir, const std::string& format,
                                          const LoadOptions& options);

struct Batch {
  torch::Tensor images;   // [B, C, H, W]
  torch::Tensor labels;   // [B]
  torch::Tensor indices;  // [B] int64: each sample's row in the dataset
};

// Iterates one epoch in a permutation fixed by (seed, epoch); the last partial batch is kept.
// Augmentation (training only): random crop with 4-pixel zero padding (zero in the normalised
// space) and horizontal flip, per sample, drawn from a generator seeded by (seed, epoch), so a
// resumed job replays the same batches. `data` must outlive the iterator; batch_size < 1 counts as
// 1; a dataset whose images and labels disagree in count iterates as empty. Never throws.
class BatchIterator {
 public:
  BatchIterator(const TensorDataset& data, int64_t batch_size, uint64_t seed, int64_t epoch,
                bool augment);
  std::optional<Batch> Next();
  int64_t num_batches() const;

 private:
  const TensorDataset& data_;
  int64_t batch_size_;
  bool augment_;
  torch::Tensor order_;
  torch::Generator generator_;
  int64_t position_ = 0;
};

}  // namespace qnet::engine

#endif  // QNET_WORKERS_ENGINE_DATA_DATA_H_
