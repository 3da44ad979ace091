// Tests for the engine's datasets: IDX (.gz and raw) and CIFAR-10 readers on tiny synthetic files,
// their error discipline on malformed input, subset limits and the batch iterator.
#include "workers/engine/data.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace qnet::engine {
namespace {

namespace fs = std::filesystem;

void PutU32(std::vector<uint8_t>& out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<uint8_t>(v >> shift));
}

void WriteBytes(const std::string& path, const std::vector<uint8_t>& bytes, bool gz) {
  if (gz) {
    gzFile f = gzopen(path.c_str(), "wb");
    ASSERT_NE(f, nullptr) << path;
    if (!bytes.empty()) {
      ASSERT_EQ(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())),
                static_cast<int>(bytes.size()));
    }
    ASSERT_EQ(gzclose(f), Z_OK);
  } else {
    FILE* f = std::fopen(path.c_str(), "wb");
    ASSERT_NE(f, nullptr) << path;
    if (!bytes.empty()) {
      ASSERT_EQ(std::fwrite(bytes.data(), 1, bytes.size(), f), bytes.size());
    }
    std::fclose(f);
  }
}

std::vector<uint8_t> IdxBytes(uint32_t magic, const std::vector<uint32_t>& dims,
                              const std::vector<uint8_t>& data) {
  std::vector<uint8_t> out;
  PutU32(out, magic);
  for (uint32_t d : dims) PutU32(out, d);
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

uint8_t Pixel(int64_t split, int64_t i, int64_t k) {
  return static_cast<uint8_t>((split * 101 + i * 37 + k * 11) % 256);
}

struct SyntheticIdx {
  int64_t n_train = 40, n_test = 12, rows = 6, cols = 5;
};

// Writes train-* and t10k-* IDX files; pixel k of image i of split s is Pixel(s, i, k), label
// i % 10.
void WriteIdxDataset(const std::string& dir, const SyntheticIdx& spec, bool gz) {
  const std::string ext = gz ? ".gz" : "";
  const int64_t hw = spec.rows * spec.cols;
  for (int split = 0; split < 2; ++split) {
    const int64_t n = split == 0 ? spec.n_train : spec.n_test;
    const std::string prefix = split == 0 ? "train" : "t10k";
    std::vector<uint8_t> pixels, labels;
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t k = 0; k < hw; ++k) pixels.push_back(Pixel(split, i, k));
      labels.push_back(static_cast<uint8_t>(i % 10));
    }
    WriteBytes(dir + "/" + prefix + "-images-idx3-ubyte" + ext,
               IdxBytes(0x803,
                        {static_cast<uint32_t>(n), static_cast<uint32_t>(spec.rows),
                         static_cast<uint32_t>(spec.cols)},
                        pixels),
               gz);
    WriteBytes(dir + "/" + prefix + "-labels-idx1-ubyte" + ext,
               IdxBytes(0x801, {static_cast<uint32_t>(n)}, labels), gz);
  }
}

class DataTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::path(::testing::TempDir()) / "qnet_data_XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::string Path(const std::string& name) const { return dir_ + "/" + name; }

  std::string dir_;
};

TEST_F(DataTest, IdxRoundTripGzAndRaw) {
  for (bool gz : {true, false}) {
    SCOPED_TRACE(gz ? "gz" : "raw");
    TearDown();
    SetUp();
    SyntheticIdx spec;
    WriteIdxDataset(dir_, spec, gz);
    absl::StatusOr<DatasetSplits> d = LoadDataset(dir_, "idx", {});
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_EQ(d->num_classes, 10);
    EXPECT_EQ(d->channels, 1);
    EXPECT_EQ(d->height, spec.rows);
    EXPECT_EQ(d->width, spec.cols);
    ASSERT_EQ(d->train.images.sizes(),
              (std::vector<int64_t>{spec.n_train, 1, spec.rows, spec.cols}));
    ASSERT_EQ(d->test.images.sizes(), (std::vector<int64_t>{spec.n_test, 1, spec.rows, spec.cols}));
    EXPECT_EQ(d->train.images.dtype(), torch::kFloat);
    EXPECT_EQ(d->train.labels.dtype(), torch::kLong);
    ASSERT_EQ(d->channel_mean.size(), 1u);
    // Undo the normalisation and compare with the bytes written.
    for (int split = 0; split < 2; ++split) {
      const TensorDataset& ds = split == 0 ? d->train : d->test;
      torch::Tensor raw = (ds.images * d->channel_std[0] + d->channel_mean[0]) * 255.0;
      for (int64_t i = 0; i < ds.size(); ++i) {
        EXPECT_EQ(ds.labels[i].item<int64_t>(), i % 10);
        torch::Tensor flat = raw[i].flatten();
        for (int64_t k = 0; k < spec.rows * spec.cols; ++k) {
          ASSERT_NEAR(flat[k].item<float>(), Pixel(split, i, k), 1e-3) << i << " " << k;
        }
      }
    }
  }
}

TEST_F(DataTest, NormalisesWithTrainStatistics) {
  WriteIdxDataset(dir_, {}, true);
  absl::StatusOr<DatasetSplits> d = LoadDataset(dir_, "idx", {});
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_NEAR(d->train.images.mean().item<double>(), 0.0, 1e-5);
  EXPECT_NEAR(d->train.images.std(/*unbiased=*/false).item<double>(), 1.0, 1e-4);
  // The statistics are those of the raw train pixels, scaled to [0, 1].
  double sum = 0, sum_sq = 0, count = 0;
  SyntheticIdx spec;
  for (int64_t i = 0; i < spec.n_train; ++i) {
    for (int64_t k = 0; k < spec.rows * spec.cols; ++k) {
      const double v = Pixel(0, i, k) / 255.0;
      sum += v;
      sum_sq += v * v;
      ++count;
    }
  }
  const double mean = sum / count;
  EXPECT_NEAR(d->channel_mean[0], mean, 1e-9);
  EXPECT_NEAR(d->channel_std[0], std::sqrt(sum_sq / count - mean * mean), 1e-9);
  // The test split uses the train statistics, so its mean is not exactly zero.
  torch::Tensor test0 = d->test.images[0].flatten();
  EXPECT_NEAR(test0[0].item<double>(), (Pixel(1, 0, 0) / 255.0 - mean) / d->channel_std[0], 1e-5);
}

TEST_F(DataTest, NormalisesWithTheGivenValuesWhenAsked) {
  WriteIdxDataset(dir_, {}, true);
  absl::StatusOr<DatasetSplits> d = LoadDataset(dir_, "idx", {.mean = {0.5}, .std = {0.25}});
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->channel_mean, std::vector<double>{0.5});
  EXPECT_EQ(d->channel_std, std::vector<double>{0.25});
  EXPECT_NEAR(d->train.images.flatten()[0].item<double>(), (Pixel(0, 0, 0) / 255.0 - 0.5) / 0.25,
              1e-5);
  EXPECT_NEAR(d->test.images.flatten()[0].item<double>(), (Pixel(1, 0, 0) / 255.0 - 0.5) / 0.25,
              1e-5);
}

TEST_F(DataTest, RefusesANormalisationThatDoesNotFitTheImages) {
  WriteIdxDataset(dir_, {}, true);
  absl::StatusOr<DatasetSplits> d =
      LoadDataset(dir_, "idx", {.mean = {0.5, 0.5, 0.5}, .std = {0.2, 0.2, 0.2}});
  EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(d.status().message().find("3 channel(s) but the images of " + dir_ + " have 1"),
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
  std::set<std::vector<float>> seen;
  for (int64_t i = 0; i < a->train.size(); ++i) {
    torch::Tensor img = a->train.images[i].contiguous();
    seen.insert(std::vector<float>(img.data_ptr<float>(), img.data_ptr<float>() + img.numel()));
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

// --- malformed input ---

struct Malformed {
  std::string name;
  std::string file;  // the file to overwrite
  std::vector<uint8_t> bytes;
  bool gz;
  std::string expect;  // substring of the message
};

std::vector<uint8_t> GoodImages(uint32_t n) {
  return IdxBytes(0x803, {n, 6, 5}, std::vector<uint8_t>(n * 30, 7));
}

TEST_F(DataTest, MalformedIdxGivesInvalidArgumentNamingTheFile) {
  std::vector<uint8_t> truncated = GoodImages(40);
  truncated.resize(truncated.size() - 10);
  std::vector<uint8_t> trailing = GoodImages(40);
  trailing.push_back(1);
  std::vector<uint8_t> bad_label = IdxBytes(0x801, {40}, std::vector<uint8_t>(40, 3));
  bad_label[8 + 17] = 10;
  const std::vector<Malformed> cases = {
      {"labels magic in images", "train-images-idx3-ubyte", IdxBytes(0x801, {40}, {}), false,
       "bad magic number 0x00000801"},
      {"images magic in labels", "train-labels-idx1-ubyte", GoodImages(40), false,
       "bad magic number 0x00000803"},
      {"not idx",
       "train-images-idx3-ubyte",
       {'h', 'e', 'l', 'l', 'o', '!', '!', '!'},
       false,
       "bad magic number"},
      {"empty file", "train-images-idx3-ubyte", {}, false, "truncated"},
      {"short header", "train-images-idx3-ubyte", {0, 0, 8, 3, 0, 0}, true, "truncated"},
      {"truncated raw", "train-images-idx3-ubyte", truncated, false, "truncated"},
      {"truncated gz", "train-images-idx3-ubyte", truncated, true, "truncated"},
      {"trailing raw", "train-images-idx3-ubyte", trailing, false, "size mismatch"},
      {"trailing gz", "train-images-idx3-ubyte", trailing, true, "trailing bytes"},
      {"zero dim", "train-images-idx3-ubyte", IdxBytes(0x803, {40, 0, 5}, {}), false, "is 0"},
      {"absurd size raw", "train-images-idx3-ubyte",
       IdxBytes(0x803, {0xffffffffu, 0xffffffffu, 0xffffffffu}, {1, 2, 3}), false,
       "more than 2147483648 bytes"},
      {"absurd size gz", "train-images-idx3-ubyte", IdxBytes(0x803, {1u << 20, 1u << 10, 4}, {}),
       true, "more than 2147483648 bytes"},
      {"big claim small gz", "train-images-idx3-ubyte", IdxBytes(0x803, {1u << 20, 64, 16}, {1}),
       true, "truncated"},
      {"count mismatch", "train-labels-idx1-ubyte",
       IdxBytes(0x801, {39}, std::vector<uint8_t>(39, 1)), false, "count mismatch"},
      {"label out of range", "train-labels-idx1-ubyte", bad_label, false,
       "label 10 at index 17 is out of range for 10 classes"},
  };
  for (const Malformed& c : cases) {
    SCOPED_TRACE(c.name);
    TearDown();
    SetUp();
    WriteIdxDataset(dir_, {}, /*gz=*/false);
    const std::string path = Path(c.file + (c.gz ? ".gz" : ""));
    fs::remove(Path(c.file));
    WriteBytes(path, c.bytes, c.gz);
    absl::StatusOr<DatasetSplits> d = LoadDataset(dir_, "idx", {});
    ASSERT_FALSE(d.ok());
    EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument) << d.status();
    EXPECT_NE(d.status().message().find(path), std::string::npos) << d.status();
    EXPECT_NE(d.status().message().find(c.expect), std::string::npos) << d.status();
  }
}

TEST_F(DataTest, CorruptGzipGivesInvalidArgument) {
  WriteIdxDataset(dir_, {}, /*gz=*/true);
  // A valid gzip header followed by deflate data with a reserved block type.
  std::vector<uint8_t> corrupt = {0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 3};
  for (int i = 0; i < 64; ++i) corrupt.push_back(static_cast<uint8_t>(0xff - i));
  const std::string path = Path("t10k-images-idx3-ubyte.gz");
  WriteBytes(path, corrupt, /*gz=*/false);
  absl::StatusOr<DatasetSplits> d = LoadDataset(dir_, "idx", {});
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument) << d.status();
  EXPECT_NE(d.status().message().find(path), std::string::npos) << d.status();
  EXPECT_NE(d.status().message().find("corrupt"), std::string::npos) << d.status();
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
  d = LoadDataset(dir_, "cifar10", {});
  EXPECT_EQ(d.status().code(), absl::StatusCode::kNotFound);
}

TEST_F(DataTest, TrainAndTestShapesMustAgree) {
  WriteIdxDataset(dir_, {}, true);
  WriteBytes(Path("t10k-images-idx3-ubyte.gz"),
             IdxBytes(0x803, {12, 5, 5}, std::vector<uint8_t>(12 * 25, 1)), true);
  absl::StatusOr<DatasetSplits> d = LoadDataset(dir_, "idx", {});
  EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument) << d.status();
}

TEST_F(DataTest, RandomGarbageNeverCrashes) {
  std::mt19937 rng(42);
  for (int round = 0; round < 60; ++round) {
    TearDown();
    SetUp();
    WriteIdxDataset(dir_, {}, false);
    // Keep a valid-looking magic half the time so the parser gets past it.
    std::vector<uint8_t> bytes(rng() % 200);
    for (uint8_t& b : bytes) b = static_cast<uint8_t>(rng());
    if (round % 2 == 0 && bytes.size() >= 4) {
      bytes[0] = 0;
      bytes[1] = 0;
      bytes[2] = 8;
      bytes[3] = 3;
    }
    WriteBytes(Path("train-images-idx3-ubyte"), bytes, round % 3 == 0);
    absl::StatusOr<DatasetSplits> d = LoadDataset(dir_, "idx", {});
    EXPECT_FALSE(d.ok());
    EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument) << d.status();
  }
}

// --- CIFAR-10 ---

std::vector<uint8_t> CifarRecords(int n, int first_id) {
  std::vector<uint8_t> out;
  for (int r = 0; r < n; ++r) {
    const int id = first_id + r;
    out.push_back(static_cast<uint8_t>(id % 10));
    for (int k = 0; k < 3072; ++k) out.push_back(static_cast<uint8_t>((id * 13 + k) % 251));
  }
  return out;
}

void WriteCifar(const std::string& dir) {
  fs::create_directories(dir);
  for (int b = 1; b <= 5; ++b) {
    WriteBytes(dir + "/data_batch_" + std::to_string(b) + ".bin", CifarRecords(2, 2 * (b - 1)),
               false);
  }
  WriteBytes(dir + "/test_batch.bin", CifarRecords(3, 100), false);
}

TEST_F(DataTest, CifarBinaryBatchesInSubfolder) {
  WriteCifar(Path("cifar-10-batches-bin"));
  absl::StatusOr<DatasetSplits> d = LoadDataset(dir_, "cifar10", {});
  ASSERT_TRUE(d.ok()) << d.status();
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
    const double v =
        d->test.images[1][c][y][x].item<double>() * d->channel_std[c] + d->channel_mean[c];
    EXPECT_NEAR(v * 255.0, (101 * 13 + k) % 251, 1e-3) << k;
  }
}

TEST_F(DataTest, MalformedCifar) {
  WriteCifar(dir_);
  std::vector<uint8_t> truncated = CifarRecords(2, 0);
  truncated.pop_back();
  WriteBytes(Path("data_batch_3.bin"), truncated, false);
  absl::StatusOr<DatasetSplits> d = LoadDataset(dir_, "cifar10", {});
  EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(d.status().message().find(Path("data_batch_3.bin")), std::string::npos) << d.status();
  EXPECT_NE(d.status().message().find("truncated"), std::string::npos) << d.status();

  WriteCifar(dir_);
  std::vector<uint8_t> bad_label = CifarRecords(3, 0);
  bad_label[3073] = 200;
  WriteBytes(Path("test_batch.bin"), bad_label, false);
  d = LoadDataset(dir_, "cifar10", {});
  EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(d.status().message().find(Path("test_batch.bin")), std::string::npos) << d.status();
  EXPECT_NE(d.status().message().find("label 200 at index 1"), std::string::npos) << d.status();

  WriteCifar(dir_);
  WriteBytes(Path("data_batch_5.bin"), {}, false);
  d = LoadDataset(dir_, "cifar10", {});
  EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(d.status().message().find(Path("data_batch_5.bin")), std::string::npos) << d.status();
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
