// LoadDataset: opens a dataset through its format's reader, resolves the model's input and the
// preprocessing, holds out a test split when there is none, and either decodes every image once
// (kept per process) or sets the splits up to stream.
#include <algorithm>
#include <cmath>
#include <exception>
#include <filesystem>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include <ATen/CPUGeneratorImpl.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/input_normalization.h"
#include "common/job/job_spec.h"
#include "datasets/dataset_format.h"
#include "workers/engine/data/batch_pipeline.h"
#include "workers/engine/data/data.h"
#include "workers/engine/torch_error.h"

namespace qnet::engine {
namespace {

using datasets::DatasetReader;
using datasets::ImageShape;
using datasets::SplitReader;

// Defaults of the training augmentation (docs/BENCHMARKS.md, "Input pipeline"): formats whose
// images vary in size (image folders, archives) are not augmented unless the job asks, since
// fine-tuning a trained model for a few epochs lost accuracy with every augmentation measured;
// a job that turns RandomResizedCrop on gets the smallest area fraction that lost least.
constexpr double kDefaultCropScaleMin = 0.5;
// A streaming train split's statistics come from this many of its images (seeded sample).
constexpr int64_t kStatisticsSample = 10000;

// How every image of a split becomes the model's input.
struct InputGeometry {
  int64_t channels = 0, height = 0, width = 0, resize_size = 0;
  int64_t pixels() const { return channels * height * width; }
};

torch::Generator SeededGenerator(uint64_t seed) {
  return at::make_generator<at::CPUGeneratorImpl>(seed);
}

// Image `index` of `split` decoded and prepared for the model into `out` (uint8 [C, H, W]).
absl::Status DecodeInto(const SplitReader& split, int64_t index, const InputGeometry& g,
                        torch::Tensor& out) {
  absl::StatusOr<datasets::Image> image = split.Decode(index);
  if (!image.ok()) return image.status();
  const ImageShape& s = image->shape;
  if (s.channels < 1 || s.height < 1 || s.width < 1 ||
      static_cast<int64_t>(image->pixels.size()) != s.pixels()) {
    return absl::InvalidArgumentError(absl::StrCat(split.source(index), ": decoded to ",
                                                   datasets::ShapeText(s), " with ",
                                                   image->pixels.size(), " bytes"));
  }
  const torch::Tensor pixels =
      torch::from_blob(image->pixels.data(), {s.channels, s.height, s.width}, torch::kUInt8);
  absl::StatusOr<torch::Tensor> adapted =
      AdaptChannels(ResizeCenterCrop(pixels, g.resize_size, g.height, g.width), g.channels);
  if (!adapted.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(split.source(index), ": ", adapted.status().message()));
  }
  out.copy_(*adapted);
  return absl::OkStatus();
}

// Images `rows` of `split` prepared into one uint8 [rows, C, H, W] tensor.
absl::StatusOr<torch::Tensor> DecodeRows(const SplitReader& split, const std::vector<int64_t>& rows,
                                         const InputGeometry& g, int threads) {
  torch::Tensor out = torch::empty(
      {static_cast<int64_t>(rows.size()), g.channels, g.height, g.width}, torch::kUInt8);
  absl::Status s = ParallelFor(static_cast<int64_t>(rows.size()), threads, [&](int64_t i) {
    torch::Tensor row = out[i];
    return DecodeInto(split, rows[static_cast<size_t>(i)], g, row);
  });
  if (!s.ok()) return s;
  return out;
}

std::vector<int64_t> AllRows(int64_t n) {
  std::vector<int64_t> rows(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) rows[static_cast<size_t>(i)] = i;
  return rows;
}

torch::Tensor Labels(const SplitReader& split, const std::vector<int64_t>& rows) {
  torch::Tensor labels = torch::empty({static_cast<int64_t>(rows.size())}, torch::kLong);
  int64_t* p = labels.data_ptr<int64_t>();
  for (int64_t r : rows) *p++ = split.label(r);
  return labels;
}

// Per-channel mean and population std of uint8 [N, C, H, W] pixels scaled to [0, 1]; exact
// integer sums, so the statistics do not depend on summation order.
void ChannelStats(const torch::Tensor& images, std::vector<double>& mean,
                  std::vector<double>& stddev) {
  const torch::Tensor x = images.contiguous();
  const int64_t n = x.size(0), c = x.size(1), hw = x.size(2) * x.size(3);
  std::vector<uint64_t> sum(c, 0), sum_sq(c, 0);
  const uint8_t* p = x.data_ptr<uint8_t>();
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
  for (int64_t ch = 0; ch < c && count > 0; ++ch) {
    const double m = static_cast<double>(sum[ch]) / count;
    const double var = static_cast<double>(sum_sq[ch]) / count - m * m;
    mean[ch] = m / 255.0;
    const double sd = std::sqrt(std::max(var, 0.0)) / 255.0;
    stddev[ch] = sd > 1e-12 ? sd : 1.0;  // a constant channel is only centred
  }
}

// The first `max` of a seeded permutation of `rows`, in ascending order (all when max is 0).
std::vector<int64_t> Subset(const std::vector<int64_t>& rows, int64_t max, uint64_t seed) {
  const auto n = static_cast<int64_t>(rows.size());
  if (max == 0 || max >= n) return rows;
  torch::Generator gen = SeededGenerator(seed);
  torch::Tensor picked = std::get<0>(torch::randperm(n, gen, torch::kLong).slice(0, 0, max).sort());
  std::vector<int64_t> out;
  out.reserve(static_cast<size_t>(max));
  const int64_t* p = picked.data_ptr<int64_t>();
  for (int64_t i = 0; i < max; ++i) out.push_back(rows[static_cast<size_t>(p[i])]);
  return out;
}

// The dataset's own image shape: the first image's for fixed-shape formats, else the most common
// height x width over the train split's headers with the most channels any image has.
absl::StatusOr<ImageShape> DatasetShape(const DatasetReader& reader, int threads) {
  const SplitReader& train = *reader.train;
  if (train.size() == 0) return absl::InvalidArgumentError("the train split has no images");
  if (reader.fixed_shape) return train.Shape(0);
  std::vector<ImageShape> shapes(static_cast<size_t>(train.size()));
  absl::Status s = ParallelFor(train.size(), threads, [&](int64_t i) -> absl::Status {
    absl::StatusOr<ImageShape> shape = train.Shape(i);
    if (!shape.ok()) return shape.status();
    shapes[static_cast<size_t>(i)] = *shape;
    return absl::OkStatus();
  });
  if (!s.ok()) return s;
  std::map<std::pair<int64_t, int64_t>, int64_t> counts;
  ImageShape best = shapes[0];
  int64_t best_count = 0, channels = 1;
  for (const ImageShape& shape : shapes) {
    channels = std::max(channels, shape.channels);
    const int64_t count = ++counts[{shape.height, shape.width}];
    if (count > best_count) {
      best_count = count;
      best = shape;
    }
  }
  best.channels = channels;
  return best;
}

absl::StatusOr<InputGeometry> ResolveGeometry(const std::string& dir, const ImageShape& dataset,
                                              const LoadOptions& options) {
  InputGeometry g{dataset.channels, dataset.height, dataset.width, 0};
  if (!options.input_shape.empty()) {
    absl::StatusOr<job::InputShape> shape = job::ParseInputShape(options.input_shape);
    if (!shape.ok()) return shape.status();
    g = {shape->channels, shape->height, shape->width, 0};
  }
  if (dataset.channels != g.channels && dataset.channels != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("the model takes ", g.channels, "-channel input but the images of ", dir,
                     " have ", dataset.channels,
                     " channels (only one-channel images are repeated to fit a model); give "
                     "an input shape with ",
                     dataset.channels, " channels"));
  }
  // 0: the input's shorter side, H for square inputs; images already of the input size stay as
  // they are.
  const int32_t resize = options.preprocessing.resize_size();
  g.resize_size = resize > 0 ? resize : std::min(g.height, g.width);
  return g;
}

Augmentation ResolveAugmentation(const datasets::DatasetFormat& format, bool fixed_shape,
                                 const v1::Preprocessing& p) {
  Augmentation a;
  // Fixed-size natural images (CIFAR-10) keep the pad-4 crop and flip they always had.
  const bool pad_and_flip = format.augments() && fixed_shape;
  a.crop = pad_and_flip ? Crop::kPad4 : Crop::kNone;
  if (p.has_random_resized_crop()) {
    a.crop = p.random_resized_crop() ? Crop::kRandomResized : Crop::kNone;
  }
  a.flip = p.has_horizontal_flip() ? p.horizontal_flip() : pad_and_flip;
  a.scale_min = p.crop_scale_min() > 0 ? p.crop_scale_min() : kDefaultCropScaleMin;
  a.scale_max = p.crop_scale_max() > 0 ? p.crop_scale_max() : 1.0;
  return a;
}

absl::Status ResolveNormalization(const std::string& dir, const LoadOptions& options,
                                  int64_t channels, DatasetSplits& out) {
  if (options.mean.empty() && options.std.empty()) return absl::OkStatus();
  if (absl::Status s = CheckInputNormalization(options.mean, options.std); !s.ok()) return s;
  const auto given = static_cast<int64_t>(options.mean.size());
  if (given == channels) {
    out.channel_mean = options.mean;
    out.channel_std = options.std;
  } else if (given == 1) {  // one value for every channel, as Normalize((m,), (s,)) broadcasts
    out.channel_mean.assign(static_cast<size_t>(channels), options.mean[0]);
    out.channel_std.assign(static_cast<size_t>(channels), options.std[0]);
  } else {
    return absl::InvalidArgumentError(absl::StrCat("input normalization has ", given,
                                                   " channel(s) but the model's images of ", dir,
                                                   " have ", channels));
  }
  return absl::OkStatus();
}

// --- prepared datasets kept per process ---

struct Prepared {
  torch::Tensor train_images, train_labels;
  torch::Tensor test_images, test_labels;  // undefined without a test split
  int64_t bytes = 0;
};

class PreparedCache {
 public:
  std::shared_ptr<const Prepared> Find(const std::string& key) {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = entries_.begin(); it != entries_.end(); ++it) {
      if (it->first != key) continue;
      entries_.splice(entries_.begin(), entries_, it);  // most recently used first
      return it->second;
    }
    return nullptr;
  }
  // Keeps `value`, dropping the least recently used entries beyond `budget` bytes in all.
  void Put(const std::string& key, std::shared_ptr<const Prepared> value, int64_t budget) {
    std::lock_guard<std::mutex> lock(mu_);
    entries_.emplace_front(key, std::move(value));
    int64_t total = 0;
    for (auto it = entries_.begin(); it != entries_.end();) {
      total += it->second->bytes;
      it = total > budget && it != entries_.begin() ? entries_.erase(it) : std::next(it);
    }
  }
  void Clear() {
    std::lock_guard<std::mutex> lock(mu_);
    entries_.clear();
  }

 private:
  std::mutex mu_;
  std::list<std::pair<std::string, std::shared_ptr<const Prepared>>> entries_;
};

// What identifies the dataset's content for the cache: each entry's path, size and modification
// time down to `dir`/a/b (the files of idx and cifar10 folders, archives and .npz files, and the
// class folders of an image folder, whose times change when images are added or removed). A
// worker's dataset folders are named by their content digest anyway.
std::string ContentStamp(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  std::string stamp;
  auto add = [&](const fs::path& p) {
    const auto time = fs::last_write_time(p, ec).time_since_epoch().count();
    const auto size = fs::is_regular_file(p, ec) ? fs::file_size(p, ec) : 0;
    absl::StrAppend(&stamp, p.string(), ":", size, ":", time, ";");
  };
  add(dir);
  if (!fs::is_directory(dir, ec)) return stamp;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::end(it);
       it.increment(ec)) {
    add(it->path());
    if (it.depth() >= 1) it.disable_recursion_pending();
  }
  return stamp;
}

PreparedCache& Cache() {
  static PreparedCache* cache = new PreparedCache();
  return *cache;
}

absl::StatusOr<std::shared_ptr<const Prepared>> PrepareInMemory(const std::string& key,
                                                                const DatasetReader& reader,
                                                                const InputGeometry& g,
                                                                const LoadOptions& options) {
  if (std::shared_ptr<const Prepared> hit = Cache().Find(key)) return hit;
  auto prepared = std::make_shared<Prepared>();
  const int threads = LoaderThreads(options.loader_threads);
  const std::vector<int64_t> train_rows = AllRows(reader.train->size());
  absl::StatusOr<torch::Tensor> train = DecodeRows(*reader.train, train_rows, g, threads);
  if (!train.ok()) return train.status();
  prepared->train_images = *std::move(train);
  prepared->train_labels = Labels(*reader.train, train_rows);
  if (reader.test != nullptr) {
    const std::vector<int64_t> test_rows = AllRows(reader.test->size());
    absl::StatusOr<torch::Tensor> test = DecodeRows(*reader.test, test_rows, g, threads);
    if (!test.ok()) return test.status();
    prepared->test_images = *std::move(test);
    prepared->test_labels = Labels(*reader.test, test_rows);
  }
  prepared->bytes = prepared->train_images.numel() +
                    (prepared->test_images.defined() ? prepared->test_images.numel() : 0);
  Cache().Put(key, prepared, options.memory_budget_bytes);
  return prepared;
}

// A split that decodes from the dataset's files: row i is image rows[i] of `split`.
class ReaderStream final : public ImageStream {
 public:
  ReaderStream(std::shared_ptr<const DatasetReader> reader, const SplitReader* split,
               std::vector<int64_t> rows, InputGeometry g)
      : reader_(std::move(reader)), split_(split), rows_(std::move(rows)), g_(g) {}
  absl::Status Decode(int64_t row, torch::Tensor& out) const override {
    return DecodeInto(*split_, rows_[static_cast<size_t>(row)], g_, out);
  }

 private:
  std::shared_ptr<const DatasetReader> reader_;  // keeps split_ alive
  const SplitReader* split_;
  std::vector<int64_t> rows_;
  InputGeometry g_;
};

TensorDataset InMemorySplit(const torch::Tensor& images, const torch::Tensor& labels,
                            const std::vector<int64_t>& rows) {
  const torch::Tensor index = torch::tensor(rows, torch::kLong);
  return {.images = images.index_select(0, index), .labels = labels.index_select(0, index)};
}

absl::StatusOr<DatasetSplits> LoadDatasetImpl(const std::string& dir, const std::string& format,
                                              const LoadOptions& options) {
  if (options.max_train < 0 || options.max_test < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_train (", options.max_train, ") and max_test (", options.max_test, ") must be >= 0"));
  }
  const datasets::DatasetFormat* dataset_format = nullptr;
  if (format.empty()) {
    absl::StatusOr<const datasets::DatasetFormat*> detected = datasets::DetectDatasetFormat(dir);
    if (!detected.ok()) return detected.status();
    dataset_format = *detected;
  } else {
    dataset_format = datasets::FindDatasetFormat(format);
  }
  if (dataset_format == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "unknown dataset format '", format, "' (known: ", datasets::DatasetFormatNameList(), ")"));
  }
  absl::StatusOr<DatasetReader> opened = dataset_format->Open(dir);
  if (!opened.ok()) return opened.status();
  auto reader = std::make_shared<const DatasetReader>(*std::move(opened));
  const int threads = LoaderThreads(options.loader_threads);
  absl::StatusOr<ImageShape> shape = DatasetShape(*reader, threads);
  if (!shape.ok()) return shape.status();
  absl::StatusOr<InputGeometry> g = ResolveGeometry(dir, *shape, options);
  if (!g.ok()) return g.status();

  DatasetSplits out;
  out.num_classes = reader->num_classes;
  out.class_names = reader->class_names;
  out.channels = g->channels;
  out.height = g->height;
  out.width = g->width;
  out.resize_size = g->resize_size;
  out.channel_repeat = shape->channels == 1 && g->channels > 1;
  if (absl::Status s = ResolveNormalization(dir, options, g->channels, out); !s.ok()) return s;
  const Augmentation augmentation =
      ResolveAugmentation(*dataset_format, reader->fixed_shape, options.preprocessing);
  out.augment = augmentation.any();

  // Rows of the reader's train split that train, and of the split the test images come from.
  const int64_t n_train = reader->train->size();
  std::vector<int64_t> train_rows = AllRows(n_train), test_rows;
  out.holdout = reader->test == nullptr;
  if (out.holdout) {
    const double fraction = options.preprocessing.has_holdout_fraction()
                                ? options.preprocessing.holdout_fraction()
                                : job::kDefaultHoldoutFraction;
    const auto held = std::max<int64_t>(
        1, static_cast<int64_t>(std::llround(fraction * static_cast<double>(n_train))));
    if (held >= n_train) {
      return absl::InvalidArgumentError(
          absl::StrCat(dir, " has no test split and too few training images (", n_train,
                       ") to hold out a fraction of ", fraction, " for testing"));
    }
    torch::Generator gen = SeededGenerator(MixSeed(options.seed, 3));
    const torch::Tensor perm = torch::randperm(n_train, gen, torch::kLong);
    std::vector<int64_t> p(perm.data_ptr<int64_t>(), perm.data_ptr<int64_t>() + n_train);
    test_rows.assign(p.begin(), p.begin() + held);
    train_rows.assign(p.begin() + held, p.end());
    std::sort(test_rows.begin(), test_rows.end());
    std::sort(train_rows.begin(), train_rows.end());
  } else {
    test_rows = AllRows(reader->test->size());
  }
  const SplitReader& test_split = out.holdout ? *reader->train : *reader->test;
  const std::vector<int64_t> train_subset =
      Subset(train_rows, options.max_train, MixSeed(options.seed, 1));
  const std::vector<int64_t> test_subset =
      Subset(test_rows, options.max_test, MixSeed(options.seed, 2));

  const int64_t images = n_train + (reader->test != nullptr ? reader->test->size() : 0);
  out.streaming = images > options.memory_budget_bytes / std::max<int64_t>(1, g->pixels());
  if (!out.streaming) {
    const std::string key =
        absl::StrCat(dataset_format->name(), "|", g->channels, "x", g->height, "x", g->width, "|",
                     g->resize_size, "|", ContentStamp(dir));
    absl::StatusOr<std::shared_ptr<const Prepared>> prepared =
        PrepareInMemory(key, *reader, *g, options);
    if (!prepared.ok()) return prepared.status();
    const Prepared& p = **prepared;
    if (out.channel_mean.empty()) {
      // Statistics of the whole train split, so they do not change with max_train.
      const torch::Tensor train_images =
          out.holdout ? p.train_images.index_select(0, torch::tensor(train_rows, torch::kLong))
                      : p.train_images;
      ChannelStats(train_images, out.channel_mean, out.channel_std);
    }
    out.train = InMemorySplit(p.train_images, p.train_labels, train_subset);
    out.test = out.holdout ? InMemorySplit(p.train_images, p.train_labels, test_subset)
                           : InMemorySplit(p.test_images, p.test_labels, test_subset);
  } else {
    if (out.channel_mean.empty()) {
      absl::StatusOr<torch::Tensor> sample =
          DecodeRows(*reader->train,
                     Subset(train_rows, kStatisticsSample, MixSeed(options.seed, 4)), *g, threads);
      if (!sample.ok()) return sample.status();
      ChannelStats(*sample, out.channel_mean, out.channel_std);
    }
    const std::vector<int64_t> shape = {g->channels, g->height, g->width};
    out.train = {
        .labels = Labels(*reader->train, train_subset),
        .stream = std::make_shared<ReaderStream>(reader, reader->train.get(), train_subset, *g),
        .shape = shape};
    out.test = {.labels = Labels(test_split, test_subset),
                .stream = std::make_shared<ReaderStream>(reader, &test_split, test_subset, *g),
                .shape = shape};
  }
  for (TensorDataset* split : {&out.train, &out.test}) {
    split->mean = out.channel_mean;
    split->std = out.channel_std;
    split->loader_threads = options.loader_threads;
  }
  out.train.augmentation = augmentation;
  return out;
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

void ClearDatasetCache() { Cache().Clear(); }

}  // namespace qnet::engine
