// Tests for the engine's datasets as tensors: raw bytes from the dataset formats turned into
// uint8 tensors normalised per batch (the parsers themselves are tested in tests/datasets), the
// augment flag each format sets, subset limits and the batch iterator. The input pipeline's
// resizing, holdout and streaming are in pipeline_test.cc.
#include "workers/engine/data/data.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "absl/strings/match.h"

#include "tests/datasets/dataset_files.h"

namespace qnet::engine {
namespace {

namespace fs = std::filesystem;

using ::qnet::testing::CifarPixel;
using ::qnet::testing::IdxBytes;
using ::qnet::testing::IdxPixel;
using ::qnet::testing::SyntheticIdx;
using ::qnet::testing::WriteBytes;
using ::qnet::testing::WriteCifar;
using ::qnet::testing::WriteIdxDataset;
using DataTest = ::qnet::testing::DatasetDirTest;

TEST_F(DataTest, IdxRoundTripGzAndRaw) {
  for (bool gz : {true, false}) {
    SCOPED_TRACE(gz ? "gz" : "raw");
    Reset();
    SyntheticIdx spec;
    WriteIdxDataset(dir_, spec, gz);
    absl::StatusOr<DatasetSplits> d = LoadDataset(dir_, "idx", {});
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_EQ(d->num_classes, 10);
    EXPECT_FALSE(d->augment);  // a flipped glyph can be another class
    EXPECT_EQ(d->channels, 1);
    EXPECT_EQ(d->height, spec.rows);
    EXPECT_EQ(d->width, spec.cols);
    ASSERT_EQ(d->train.images.sizes(),
              (std::vector<int64_t>{spec.n_train, 1, spec.rows, spec.cols}));
    ASSERT_EQ(d->test.images.sizes(), (std::vector<int64_t>{spec.n_test, 1, spec.rows, spec.cols}));
    EXPECT_EQ(d->train.images.dtype(), torch::kUInt8);  // normalised per batch
    EXPECT_EQ(d->train.labels.dtype(), torch::kLong);
    ASSERT_EQ(d->channel_mean.size(), 1u);
    EXPECT_EQ(d->class_names,
              (std::vector<std::string>{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}));
    for (int split = 0; split < 2; ++split) {
      const TensorDataset& ds = split == 0 ? d->train : d->test;
      torch::Tensor raw = ds.images.to(torch::kFloat);
      for (int64_t i = 0; i < ds.size(); ++i) {
        EXPECT_EQ(ds.labels[i].item<int64_t>(), i % 10);
        torch::Tensor flat = raw[i].flatten();
        for (int64_t k = 0; k < spec.rows * spec.cols; ++k) {
          ASSERT_NEAR(flat[k].item<float>(), IdxPixel(split, i, k), 1e-3) << i << " " << k;
        }
      }
    }
  }
}

TEST_F(DataTest, NormalisesWithTrainStatistics) {
  WriteIdxDataset(dir_, {}, true);
  absl::StatusOr<DatasetSplits> d = LoadDataset(dir_, "idx", {});
  ASSERT_TRUE(d.ok()) << d.status();
  const torch::Tensor train = NormaliseImages(d->train.images, d->train);
  EXPECT_NEAR(train.mean().item<double>(), 0.0, 1e-5);
  EXPECT_NEAR(train.std(/*unbiased=*/false).item<double>(), 1.0, 1e-4);
  // The statistics are those of the raw train pixels, scaled to [0, 1].
  double sum = 0, sum_sq = 0, count = 0;
  SyntheticIdx spec;
  for (int64_t i = 0; i < spec.n_train; ++i) {
    for (int64_t k = 0; k < spec.rows * spec.cols; ++k) {
      const double v = IdxPixel(0, i, k) / 255.0;
      sum += v;
      sum_sq += v * v;
      ++count;
    }
  }
  const double mean = sum / count;
  EXPECT_NEAR(d->channel_mean[0], mean, 1e-9);
  EXPECT_NEAR(d->channel_std[0], std::sqrt(sum_sq / count - mean * mean), 1e-9);
  // The test split uses the train statistics, so its mean is not exactly zero.
  torch::Tensor test0 = NormaliseImages(d->test.images[0], d->test).flatten();
  EXPECT_NEAR(test0[0].item<double>(), (IdxPixel(1, 0, 0) / 255.0 - mean) / d->channel_std[0],
              1e-5);
}

TEST_F(DataTest, NormalisesWithTheGivenValuesWhenAsked) {
  WriteIdxDataset(dir_, {}, true);
  absl::StatusOr<DatasetSplits> d = LoadDataset(dir_, "idx", {.mean = {0.5}, .std = {0.25}});
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->channel_mean, std::vector<double>{0.5});
  EXPECT_EQ(d->channel_std, std::vector<double>{0.25});
  BatchIterator train(d->train, 1), test(d->test, 1);
  EXPECT_NEAR(train.Next()->images.flatten()[0].item<double>(),
              (IdxPixel(0, 0, 0) / 255.0 - 0.5) / 0.25, 1e-5);
  EXPECT_NEAR(test.Next()->images.flatten()[0].item<double>(),
              (IdxPixel(1, 0, 0) / 255.0 - 0.5) / 0.25, 1e-5);
}

TEST_F(DataTest, RefusesANormalisationThatDoesNotFitTheImages) {
  WriteIdxDataset(dir_, {}, true);
  absl::StatusOr<DatasetSplits> d =
      LoadDataset(dir_, "idx", {.mean = {0.5, 0.5, 0.5}, .std = {0.2, 0.2, 0.2}});
  EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(d.status().message().find("3 channel(s) but the model's images of " + dir_ + " have 1"),
            std::string::npos)
      << d.status();
  d = LoadDataset(dir_, "idx", {.mean = {0.5}, .std = {0}});
  EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(d.status().message().find("std of channel 0"), std::string::npos) << d.status();
}

TEST_F(DataTest, SubsetsAreSeededAndDeterministic) {
  WriteIdxDataset(dir_, {}, true);
  absl::StatusOr<DatasetSplits> full = LoadDataset(dir_, "idx", {});
  absl::StatusOr<DatasetSplits> a = LoadDataset(dir_, "idx", {.max_train = 7, .max_test = 3});
  absl::StatusOr<DatasetSplits> b = LoadDataset(dir_, "idx", {.max_train = 7, .max_test = 3});
  absl::StatusOr<DatasetSplits> c =
      LoadDataset(dir_, "idx", {.max_train = 7, .max_test = 3, .seed = 99});
  ASSERT_TRUE(full.ok() && a.ok() && b.ok() && c.ok());
  EXPECT_EQ(a->train.size(), 7);
  EXPECT_EQ(a->test.size(), 3);
  EXPECT_TRUE(torch::equal(a->train.images, b->train.images));
  EXPECT_TRUE(torch::equal(a->train.labels, b->train.labels));
  EXPECT_TRUE(torch::equal(a->test.images, b->test.images));
  EXPECT_FALSE(torch::equal(a->train.images, c->train.images));
  // Normalisation does not depend on the subset.
  EXPECT_EQ(a->channel_mean, full->channel_mean);
  // A subset holds images of the full set, without repeats.
  std::set<std::string> seen;  // each image's bytes
  for (int64_t i = 0; i < a->train.size(); ++i) {
    torch::Tensor img = a->train.images[i].contiguous();
    seen.insert(std::string(static_cast<const char*>(img.data_ptr()), img.numel()));
    bool found = false;
    for (int64_t j = 0; j < full->train.size() && !found; ++j) {
      found = torch::equal(img, full->train.images[j]);
    }
    EXPECT_TRUE(found) << i;
  }
  EXPECT_EQ(seen.size(), 7u);
  // A limit at or above the size keeps everything in file order.
  absl::StatusOr<DatasetSplits> all = LoadDataset(dir_, "idx", {.max_train = 1000});
  ASSERT_TRUE(all.ok());
  EXPECT_TRUE(torch::equal(all->train.images, full->train.images));
  absl::StatusOr<DatasetSplits> negative = LoadDataset(dir_, "idx", {.max_train = -1});
  EXPECT_EQ(negative.status().code(), absl::StatusCode::kInvalidArgument);
}

TensorDataset IndexDataset(int64_t n) {
  // Image i is filled with i and labelled i, so batches reveal which indices they hold.
  torch::Tensor ids = torch::arange(n, torch::kLong);
  return {ids.to(torch::kFloat).view({n, 1, 1, 1}).expand({n, 2, 3, 3}).contiguous(), ids};
}

std::vector<int64_t> EpochOrder(const TensorDataset& data, int64_t batch, uint64_t seed,
                                int64_t epoch) {
  BatchIterator it(data, batch, seed, epoch, /*augment=*/false);
  std::vector<int64_t> order;
  while (std::optional<Batch> b = it.Next()) {
    EXPECT_EQ(b->images.size(0), b->labels.size(0));
    for (int64_t i = 0; i < b->labels.size(0); ++i) {
      order.push_back(b->labels[i].item<int64_t>());
      EXPECT_EQ(b->images[i][0][0][0].item<float>(), static_cast<float>(order.back()));
      EXPECT_EQ(b->indices[i].item<int64_t>(), order.back());  // the row the sample came from
    }
  }
  return order;
}

TEST(BatchIteratorTest, CoversEveryIndexOncePerEpoch) {
  TensorDataset data = IndexDataset(103);
  BatchIterator it(data, 10, 1, 0, false);
  EXPECT_EQ(it.num_batches(), 11);
  std::vector<int64_t> sizes;
  while (std::optional<Batch> b = it.Next()) sizes.push_back(b->labels.size(0));
  ASSERT_EQ(sizes.size(), 11u);
  EXPECT_EQ(sizes.back(), 3);  // the last partial batch is kept
  EXPECT_FALSE(it.Next().has_value());

  std::vector<int64_t> order = EpochOrder(data, 10, 1, 0);
  std::vector<int64_t> sorted = order;
  std::sort(sorted.begin(), sorted.end());
  std::vector<int64_t> expected(103);
  std::iota(expected.begin(), expected.end(), 0);
  EXPECT_EQ(sorted, expected);
}

TEST(BatchIteratorTest, OrderDependsOnSeedAndEpoch) {
  TensorDataset data = IndexDataset(64);
  EXPECT_EQ(EpochOrder(data, 8, 5, 2), EpochOrder(data, 8, 5, 2));
  EXPECT_NE(EpochOrder(data, 8, 5, 2), EpochOrder(data, 8, 5, 3));
  EXPECT_NE(EpochOrder(data, 8, 5, 2), EpochOrder(data, 8, 6, 2));
  std::vector<int64_t> identity(64);
  std::iota(identity.begin(), identity.end(), 0);
  EXPECT_NE(EpochOrder(data, 8, 5, 0), identity);
}

TEST(BatchIteratorTest, DegenerateInputsDoNotCrash) {
  TensorDataset empty;
  BatchIterator a(empty, 4, 1, 0, true);
  EXPECT_EQ(a.num_batches(), 0);
  EXPECT_FALSE(a.Next().has_value());
  TensorDataset mismatched{torch::zeros({3, 1, 2, 2}), torch::zeros({4}, torch::kLong)};
  BatchIterator b(mismatched, 4, 1, 0, false);
  EXPECT_FALSE(b.Next().has_value());
  TensorDataset data = IndexDataset(5);
  BatchIterator c(data, 0, 1, 0, false);  // batch size < 1 counts as 1
  EXPECT_EQ(c.num_batches(), 5);
}

// Each augmented image must be some 4-padded crop of its source, possibly flipped.
bool IsCropFlip(const torch::Tensor& src, const torch::Tensor& out) {
  const int64_t h = src.size(1), w = src.size(2);
  torch::Tensor padded = torch::constant_pad_nd(src, {4, 4, 4, 4}, 0);
  for (int64_t dy = 0; dy <= 8; ++dy) {
    for (int64_t dx = 0; dx <= 8; ++dx) {
      torch::Tensor crop = padded.slice(1, dy, dy + h).slice(2, dx, dx + w);
      if (torch::equal(crop, out) || torch::equal(crop.flip({2}), out)) return true;
    }
  }
  return false;
}

TEST(BatchIteratorTest, AugmentationCropsAndFlipsDeterministically) {
  const int64_t n = 16;
  torch::Tensor images = torch::randn({n, 3, 8, 8});
  TensorDataset data{images, torch::arange(n, torch::kLong)};
  data.augmentation = {.crop = Crop::kPad4, .flip = true};
  BatchIterator a(data, 16, 3, 1, /*augment=*/true);
  BatchIterator b(data, 16, 3, 1, /*augment=*/true);
  std::optional<Batch> x = a.Next(), y = b.Next();
  ASSERT_TRUE(x && y);
  EXPECT_EQ(x->images.sizes(), (std::vector<int64_t>{n, 3, 8, 8}));
  EXPECT_TRUE(torch::equal(x->images, y->images));
  int changed = 0;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t id = x->labels[i].item<int64_t>();
    EXPECT_TRUE(IsCropFlip(images[id], x->images[i])) << i;
    changed += torch::equal(images[id], x->images[i]) ? 0 : 1;
  }
  EXPECT_GT(changed, n / 2);
  // Without augmentation the images are the originals.
  BatchIterator plain(data, 16, 3, 1, /*augment=*/false);
  std::optional<Batch> p = plain.Next();
  ASSERT_TRUE(p);
  EXPECT_TRUE(torch::equal(p->images, images.index_select(0, p->labels)));
}

// --- errors from the formats ---

TEST_F(DataTest, MalformedFilesAreRefusedNamingTheFile) {
  WriteIdxDataset(dir_, {}, /*gz=*/false);
  std::vector<uint8_t> bad_label = IdxBytes(0x801, {12}, std::vector<uint8_t>(12, 3));
  bad_label[8 + 5] = 10;
  WriteBytes(Path("t10k-labels-idx1-ubyte"), bad_label, false);
  absl::StatusOr<DatasetSplits> d = LoadDataset(dir_, "idx", {});
  EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(d.status().message(), Path("t10k-labels-idx1-ubyte") +
                                      ": label 10 at index 5 is out of range for 10 classes");
}

TEST_F(DataTest, MissingFilesAndUnknownFormat) {
  absl::StatusOr<DatasetSplits> d = LoadDataset(dir_, "idx", {});
  EXPECT_EQ(d.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(d.status().message().find("train-images-idx3-ubyte"), std::string::npos);
  WriteIdxDataset(dir_, {}, true);
  fs::remove(Path("t10k-labels-idx1-ubyte.gz"));
  d = LoadDataset(dir_, "idx", {});
  EXPECT_EQ(d.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(d.status().message().find("t10k-labels-idx1-ubyte"), std::string::npos);
  d = LoadDataset(dir_, "png", {});
  EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StartsWith(d.status().message(), "unknown dataset format 'png' (known: "))
      << d.status();
  d = LoadDataset(dir_, "cifar10", {});
  EXPECT_EQ(d.status().code(), absl::StatusCode::kNotFound);
}

TEST_F(DataTest, TrainAndTestShapesMustAgree) {
  WriteIdxDataset(dir_, {}, true);
  WriteBytes(Path("t10k-images-idx3-ubyte.gz"),
             IdxBytes(0x803, {12, 5, 5}, std::vector<uint8_t>(12 * 25, 1)), true);
  absl::StatusOr<DatasetSplits> d = LoadDataset(dir_, "idx", {});
  EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument) << d.status();
  EXPECT_EQ(d.status().message(),
            dir_ + ": train images are [1, 6, 5] but test images are [1, 5, 5]");
}

// --- CIFAR-10 ---

TEST_F(DataTest, CifarBinaryBatchesInSubfolder) {
  WriteCifar(Path("cifar-10-batches-bin"));
  absl::StatusOr<DatasetSplits> d = LoadDataset(dir_, "cifar10", {});
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_TRUE(d->augment);  // natural images: crops and flips keep their class
  EXPECT_EQ(d->train.augmentation.crop, Crop::kPad4);
  EXPECT_TRUE(d->train.augmentation.flip);
  EXPECT_EQ(d->channels, 3);
  EXPECT_EQ(d->height, 32);
  EXPECT_EQ(d->width, 32);
  ASSERT_EQ(d->train.images.sizes(), (std::vector<int64_t>{10, 3, 32, 32}));
  ASSERT_EQ(d->test.images.sizes(), (std::vector<int64_t>{3, 3, 32, 32}));
  ASSERT_EQ(d->channel_mean.size(), 3u);
  for (int64_t i = 0; i < 10; ++i) EXPECT_EQ(d->train.labels[i].item<int64_t>(), i % 10);
  // Channel-major pixels: byte k of a record's image is channel k / 1024, row (k % 1024) / 32.
  for (int64_t k : {0, 31, 32, 1023, 1024, 2047, 2048, 3071}) {
    const int64_t c = k / 1024, y = (k % 1024) / 32, x = k % 32;
    EXPECT_EQ(d->test.images[1][c][y][x].item<int>(), CifarPixel(101, static_cast<int>(k))) << k;
  }
}

TEST(RealDataTest, FashionMnistSubset) {
  const std::string dir = "/usr/share/datasets/fashion-mnist";
  if (!fs::exists(dir + "/train-images-idx3-ubyte.gz")) GTEST_SKIP() << dir << " not installed";
  absl::StatusOr<DatasetSplits> d = LoadDataset(dir, "idx", {.max_train = 1000});
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->num_classes, 10);
  EXPECT_EQ(d->train.images.sizes(), (std::vector<int64_t>{1000, 1, 28, 28}));
  EXPECT_EQ(d->test.images.sizes(), (std::vector<int64_t>{10000, 1, 28, 28}));
  // The well-known Fashion-MNIST train statistics.
  EXPECT_NEAR(d->channel_mean[0], 0.2860, 1e-3);
  EXPECT_NEAR(d->channel_std[0], 0.3530, 1e-3);
  EXPECT_EQ(std::get<0>(torch::_unique(d->train.labels)).numel(), 10);
  EXPECT_GE(d->train.labels.min().item<int64_t>(), 0);
  EXPECT_LT(d->train.labels.max().item<int64_t>(), 10);
}

}  // namespace
}  // namespace qnet::engine
