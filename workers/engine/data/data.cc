// Batching: the epoch's order, per-sample augmentation and normalisation (LoadDataset is in
// dataset_loader.cc).
#include "workers/engine/data/data.h"

#include <algorithm>
#include <chrono>
#include <exception>
#include <utility>

#include <ATen/CPUGeneratorImpl.h>

#include "workers/engine/data/batch_pipeline.h"

namespace qnet::engine {
namespace {

// Batches in preparation or waiting ahead of the consumer.
constexpr int kPipelineDepth = 3;

torch::Tensor ChannelVector(const std::vector<double>& values, int64_t dims) {
  std::vector<int64_t> shape(static_cast<size_t>(dims), 1);
  shape[shape.size() - 3] = static_cast<int64_t>(values.size());
  return torch::tensor(values, torch::kDouble).to(torch::kFloat).view(shape);
}

}  // namespace

torch::Tensor NormaliseImages(const torch::Tensor& images, const TensorDataset& data) {
  if (images.scalar_type() != torch::kUInt8) return images;
  torch::Tensor x = images.to(torch::kFloat).div_(255.0f);
  if (data.mean.empty()) return x;
  return x.sub_(ChannelVector(data.mean, x.dim())).div_(ChannelVector(data.std, x.dim()));
}

BatchIterator::BatchIterator(const TensorDataset& data, int64_t batch_size, uint64_t seed,
                             int64_t epoch, bool augment)
    : data_(data),
      batch_size_(std::max<int64_t>(1, batch_size)),
      augment_(augment && data.augmentation.any()) {
  try {
    const int64_t n = data.size();
    const bool consistent =
        data.stream != nullptr ||
        (data.images.defined() && data.images.dim() == 4 && data.images.size(0) == n);
    torch::Generator generator = at::make_generator<at::CPUGeneratorImpl>(
        MixSeed(seed, static_cast<uint64_t>(epoch) + 0x100));
    order_ = torch::randperm(consistent ? n : 0, generator, torch::kLong);
    Start(order_.size(0), MixSeed(seed, static_cast<uint64_t>(epoch) + 0x200));
  } catch (const std::exception&) {
    order_ = torch::empty({0}, torch::kLong);
  }
}

BatchIterator::BatchIterator(const TensorDataset& data, int64_t batch_size)
    : data_(data), batch_size_(std::max<int64_t>(1, batch_size)), augment_(false) {
  order_ = torch::arange(data.size(), torch::kLong);
  Start(order_.size(0), 0);
}

BatchIterator::~BatchIterator() = default;

void BatchIterator::Start(int64_t n, uint64_t sample_seed) {
  if (n == 0 || (data_.stream == nullptr && !augment_)) return;  // plain slices need no pool
  const int64_t* rows = order_.data_ptr<int64_t>();
  std::vector<int64_t> shape =
      data_.stream != nullptr
          ? data_.shape
          : std::vector<int64_t>(data_.images.sizes().begin() + 1, data_.images.sizes().end());
  auto prepare = [this, rows, sample_seed](int64_t position, torch::Tensor& out) -> absl::Status {
    const int64_t row = rows[position];
    torch::Tensor image;
    if (data_.stream != nullptr) {
      image = torch::empty(out.sizes(), torch::kUInt8);
      if (absl::Status s = data_.stream->Decode(row, image); !s.ok()) return s;
    } else {
      image = data_.images[row];
    }
    if (augment_) {
      image = AugmentSample(image, data_.augmentation,
                            MixSeed(sample_seed, static_cast<uint64_t>(position)));
    }
    out.copy_(NormaliseImages(image, data_));
    return absl::OkStatus();
  };
  pipeline_ = std::make_unique<BatchPipeline>(n, batch_size_, std::move(shape), std::move(prepare),
                                              LoaderThreads(data_.loader_threads), kPipelineDepth);
}

int64_t BatchIterator::num_batches() const {
  return (order_.size(0) + batch_size_ - 1) / batch_size_;
}

std::optional<Batch> BatchIterator::Next() {
  const int64_t n = order_.size(0);
  if (position_ >= n) return std::nullopt;
  const int64_t end = std::min(n, position_ + batch_size_);
  torch::Tensor idx = order_.slice(0, position_, end);
  position_ = end;
  torch::Tensor images;
  if (pipeline_ != nullptr) {
    const auto start = std::chrono::steady_clock::now();
    std::optional<absl::StatusOr<torch::Tensor>> taken = pipeline_->Take();
    wait_seconds_ +=
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (!taken.has_value()) return std::nullopt;
    if (!taken->ok()) {
      position_ = n;
      throw DataError(taken->status());
    }
    images = **std::move(taken);
  }
  try {
    if (!images.defined()) {
      images = NormaliseImages(data_.images.index_select(0, idx.to(data_.images.device())), data_);
    }
    return Batch{std::move(images), data_.labels.index_select(0, idx.to(data_.labels.device())),
                 idx};
  } catch (const std::exception&) {
    position_ = n;  // a dataset torch rejects ends the epoch rather than escaping as an exception
    return std::nullopt;
  }
}

}  // namespace qnet::engine
