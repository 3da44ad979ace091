#include "workers/engine/data/data.h"
#include "workers/engine/torch_error.h"

#include <algorithm>
#include <cmath>
#include <exception>
#include <memory>
#include <new>
#include <utility>

#include <ATen/CPUGeneratorImpl.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/input_normalization.h"
#include "datasets/dataset_format.h"

namespace qnet::engine {
namespace {

// SplitMix64: turns (seed, stream) pairs into well-spread generator seeds.
uint64_t Mix(uint64_t seed, uint64_t stream) {
  uint64_t z = seed ^ (stream * 0x9e3779b97f4a7c15ULL + 0x632be59bd9b4e019ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

torch::Generator SeededGenerator(uint64_t seed) {
  return at::make_generator<at::CPUGeneratorImpl>(seed);
}

// A tensor over `values`, which it keeps alive without copying them.
template <typename T>
torch::Tensor VectorToTensor(std::vector<T>&& values, std::vector<int64_t> shape,
                             torch::ScalarType type) {
  auto holder = std::make_shared<std::vector<T>>(std::move(values));
  void* data = holder->data();
  return torch::from_blob(
      data, shape, [holder](void*) mutable { holder.reset(); }, type);
}

// Images uint8 [N, C, H, W]; labels int64 [N].
struct SplitTensors {
  torch::Tensor images;
  torch::Tensor labels;
};

SplitTensors ToTensors(datasets::RawSplit&& split) {
  const int64_t n = split.size();
  const datasets::ImageShape& s = split.shape;
  return {
      VectorToTensor(std::move(split.pixels), {n, s.channels, s.height, s.width}, torch::kUInt8),
      VectorToTensor(std::move(split.labels), {n}, torch::kLong)};
}

// Per-channel mean and population std of uint8 [N, C, H, W] pixels scaled to [0, 1]; exact
// integer sums, so the statistics do not depend on summation order.
void ChannelStats(const torch::Tensor& images, std::vector<double>& mean,
                  std::vector<double>& stddev) {
  const int64_t n = images.size(0), c = images.size(1), hw = images.size(2) * images.size(3);
  std::vector<uint64_t> sum(c, 0), sum_sq(c, 0);
  const uint8_t* p = images.data_ptr<uint8_t>();
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t ch = 0; ch < c; ++ch) {
      uint64_t s = 0, s2 = 0;
      for (int64_t k = 0; k < hw; ++k, ++p) {
        s += *p;
        s2 += uint64_t{*p} * *p;
      }
      sum[ch] += s;
      sum_sq[ch] += s2;
    }
  }
  mean.assign(c, 0.0);
  stddev.assign(c, 1.0);
  const double count = static_cast<double>(n) * static_cast<double>(hw);
  for (int64_t ch = 0; ch < c; ++ch) {
    const double m = static_cast<double>(sum[ch]) / count;
    const double var = static_cast<double>(sum_sq[ch]) / count - m * m;
    mean[ch] = m / 255.0;
    const double sd = std::sqrt(std::max(var, 0.0)) / 255.0;
    stddev[ch] = sd > 1e-12 ? sd : 1.0;  // a constant channel is only centred
  }
}

// The first `max` of a seeded permutation, in ascending index order (undefined: keep all).
torch::Tensor SubsetIndices(int64_t n, int64_t max, uint64_t seed) {
  if (max == 0 || max >= n) return {};
  torch::Generator gen = SeededGenerator(seed);
  torch::Tensor perm = torch::randperm(n, gen, torch::kLong);
  return std::get<0>(perm.slice(0, 0, max).sort());
}

TensorDataset Finish(const SplitTensors& raw, const torch::Tensor& subset,
                     const std::vector<double>& mean, const std::vector<double>& stddev) {
  torch::Tensor images = raw.images, labels = raw.labels;
  if (subset.defined()) {
    images = images.index_select(0, subset);
    labels = labels.index_select(0, subset);
  }
  const auto c = static_cast<int64_t>(mean.size());
  torch::Tensor m = torch::tensor(mean, torch::kDouble).to(torch::kFloat).view({1, c, 1, 1});
  torch::Tensor s = torch::tensor(stddev, torch::kDouble).to(torch::kFloat).view({1, c, 1, 1});
  return {images.to(torch::kFloat).div_(255.0f).sub_(m).div_(s).contiguous(), labels.contiguous()};
}

absl::StatusOr<DatasetSplits> LoadDatasetImpl(const std::string& dir, const std::string& format,
                                              const LoadOptions& options) {
  if (absl::Status s = CheckInputNormalization(options.mean, options.std); !s.ok()) return s;
  if (options.max_train < 0 || options.max_test < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_train (", options.max_train, ") and max_test (", options.max_test, ") must be >= 0"));
  }
  const datasets::DatasetFormat* dataset_format = datasets::FindDatasetFormat(format);
  if (dataset_format == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "unknown dataset format '", format, "' (known: ", datasets::DatasetFormatNameList(), ")"));
  }
  absl::StatusOr<datasets::RawDataset> raw = dataset_format->Read(dir);
  if (!raw.ok()) return raw.status();
  const datasets::ImageShape shape = raw->shape();
  const int64_t num_classes = raw->num_classes;
  const SplitTensors train = ToTensors(std::move(raw->train));
  const SplitTensors test = ToTensors(std::move(raw->test));

  DatasetSplits out;
  out.num_classes = num_classes;
  out.channels = shape.channels;
  out.height = shape.height;
  out.width = shape.width;
  out.augment = dataset_format->augments();
  if (options.mean.empty() && options.std.empty()) {
    // Statistics of the whole train split, so they do not change with max_train.
    ChannelStats(train.images, out.channel_mean, out.channel_std);
  } else if (options.mean.size() != static_cast<size_t>(out.channels)) {
    return absl::InvalidArgumentError(absl::StrCat("input normalization has ", options.mean.size(),
                                                   " channel(s) but the images of ", dir, " have ",
                                                   out.channels));
  } else {
    out.channel_mean = options.mean;
    out.channel_std = options.std;
  }
  out.train =
      Finish(train, SubsetIndices(train.images.size(0), options.max_train, Mix(options.seed, 1)),
             out.channel_mean, out.channel_std);
  out.test =
      Finish(test, SubsetIndices(test.images.size(0), options.max_test, Mix(options.seed, 2)),
             out.channel_mean, out.channel_std);
  return out;
}

// Random crop (zero padding `kPad`) and horizontal flip per sample, as one gather per axis.
torch::Tensor CropFlip(const torch::Tensor& images, torch::Generator& gen) {
  constexpr int64_t kPad = 4;
  const int64_t b = images.size(0), c = images.size(1), h = images.size(2), w = images.size(3);
  const auto cpu_long = torch::TensorOptions().dtype(torch::kLong);
  torch::Tensor dy = torch::randint(0, 2 * kPad + 1, {b}, gen, cpu_long);
  torch::Tensor dx = torch::randint(0, 2 * kPad + 1, {b}, gen, cpu_long);
  torch::Tensor flip = torch::randint(0, 2, {b}, gen, cpu_long).to(torch::kBool);
  torch::Tensor ar_h = torch::arange(h, cpu_long), ar_w = torch::arange(w, cpu_long);
  torch::Tensor rows = dy.unsqueeze(1) + ar_h.unsqueeze(0);  // [B, H] rows of the padded image
  // A flipped crop reads its window right to left.
  torch::Tensor cols = dx.unsqueeze(1) + torch::where(flip.unsqueeze(1), (w - 1) - ar_w, ar_w);
  const torch::Device device = images.device();
  torch::Tensor padded = torch::constant_pad_nd(images, {kPad, kPad, kPad, kPad}, 0);
  torch::Tensor out =
      padded.gather(2, rows.to(device).view({b, 1, h, 1}).expand({b, c, h, w + 2 * kPad}));
  return out.gather(3, cols.to(device).view({b, 1, 1, w}).expand({b, c, h, w}));
}

}  // namespace

absl::StatusOr<DatasetSplits> LoadDataset(const std::string& dir, const std::string& format,
                                          const LoadOptions& options) {
  try {
    return LoadDatasetImpl(dir, format, options);
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(absl::StrCat(dir, ": out of memory loading the dataset"));
  } catch (const std::exception& e) {
    return absl::InternalError(
        absl::StrCat(dir, ": loading the dataset failed: ", TorchErrorText(e)));
  }
}

BatchIterator::BatchIterator(const TensorDataset& data, int64_t batch_size, uint64_t seed,
                             int64_t epoch, bool augment)
    : data_(data),
      batch_size_(std::max<int64_t>(1, batch_size)),
      augment_(augment),
      generator_(SeededGenerator(Mix(seed, static_cast<uint64_t>(epoch) + 0x100))) {
  try {
    int64_t n = 0;
    if (data.images.defined() && data.labels.defined() && data.images.dim() == 4 &&
        data.labels.dim() == 1 && data.images.size(0) == data.labels.size(0)) {
      n = data.labels.size(0);
    }
    order_ = torch::randperm(n, generator_, torch::kLong);
  } catch (const std::exception&) {
    order_ = torch::empty({0}, torch::kLong);
  }
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
  try {
    Batch batch{data_.images.index_select(0, idx.to(data_.images.device())),
                data_.labels.index_select(0, idx.to(data_.labels.device())), idx};
    if (augment_) batch.images = CropFlip(batch.images, generator_);
    return batch;
  } catch (const std::exception&) {
    position_ = n;  // a dataset torch rejects ends the epoch rather than escaping as an exception
    return std::nullopt;
  }
}

}  // namespace qnet::engine
