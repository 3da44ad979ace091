// The input pipeline end to end on the synthetic format (synthetic_format.h): images prepared to
// the model's input, channel repeat, held-out test splits, augmentation replay per (seed, epoch),
// streaming against in-memory loading, and decode errors that name the file.
#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "tests/engine/data/synthetic_format.h"
#include "workers/engine/data/data.h"

namespace qnet::testing {
QNET_REGISTER_DATASET_FORMAT(SyntheticFormat);
}  // namespace qnet::testing

namespace qnet::engine {
namespace {

using ::qnet::testing::SetSyntheticDataset;
using ::qnet::testing::SyntheticDataset;
using ::qnet::testing::SyntheticSplit;

class PipelineTest : public ::testing::Test {
 protected:
  void SetUp() override { ClearDatasetCache(); }

  // A dataset under a name of its own (the cache keys by name and content).
  static std::string Define(const SyntheticDataset& d) {
    static int counter = 0;
    const std::string dir = "/synthetic/" + std::to_string(++counter);
    SetSyntheticDataset(dir, d);
    return dir;
  }
  static DatasetSplits Load(const std::string& dir, const LoadOptions& options) {
    absl::StatusOr<DatasetSplits> d = LoadDataset(dir, "synthetic", options);
    EXPECT_TRUE(d.ok()) << d.status();
    return d.ok() ? *std::move(d) : DatasetSplits{};
  }
  // Image i of a synthetic split as the reader decodes it, [C, h, w] uint8.
  static torch::Tensor Raw(const SyntheticDataset& d, int split, int64_t i) {
    absl::StatusOr<datasets::Image> image = SyntheticSplit(d, split).Decode(i);
    const datasets::ImageShape& s = image->shape;
    return torch::from_blob(image->pixels.data(), {s.channels, s.height, s.width}, torch::kUInt8)
        .clone();
  }
  static std::vector<torch::Tensor> Epoch(const TensorDataset& data, int64_t batch, uint64_t seed,
                                          int64_t epoch, bool augment) {
    BatchIterator it(data, batch, seed, epoch, augment);
    std::vector<torch::Tensor> out;
    while (std::optional<Batch> b = it.Next()) {
      out.push_back(b->images);
      out.push_back(b->labels);
    }
    return out;
  }
  static bool Same(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i) {
      if (!torch::equal(a[i], b[i])) return false;
    }
    return true;
  }
};

TEST_F(PipelineTest, ImagesAreResizedAndCentreCroppedToTheInputShape) {
  const SyntheticDataset spec{.train = 12, .test = 6, .vary = 3};
  const std::string dir = Define(spec);
  LoadOptions options{.input_shape = "3x16x16"};
  options.preprocessing.set_resize_size(18);
  const DatasetSplits d = Load(dir, options);
  EXPECT_EQ(d.channels, 3);
  EXPECT_EQ(d.height, 16);
  EXPECT_EQ(d.resize_size, 18);
  EXPECT_FALSE(d.streaming);
  EXPECT_EQ(d.class_names, (std::vector<std::string>{"class0", "class1", "class2", "class3"}));
  ASSERT_EQ(d.test.images.sizes(), (std::vector<int64_t>{6, 3, 16, 16}));
  EXPECT_EQ(d.test.images.scalar_type(), torch::kUInt8);  // normalised per batch
  for (int64_t i = 0; i < 6; ++i) {
    EXPECT_TRUE(torch::equal(d.test.images[i], ResizeCenterCrop(Raw(spec, 1, i), 18, 16, 16))) << i;
  }
  // resize_size 0: the input height, a plain resize for square inputs.
  const DatasetSplits plain = Load(dir, {.input_shape = "3x10x10"});
  EXPECT_EQ(plain.resize_size, 10);
  EXPECT_TRUE(torch::equal(plain.test.images[2], ResizeCenterCrop(Raw(spec, 1, 2), 10, 10, 10)));
}

TEST_F(PipelineTest, DefaultShapeIsTheMostCommonOneWithTheMostChannels) {
  const SyntheticDataset spec{.train = 10, .test = 2, .channels = 3, .vary = 3, .grey_odd = true};
  const DatasetSplits d = Load(Define(spec), {});
  // Heights 20, 21, 22 for i % 3 = 0, 1, 2: i = 0, 3, 6, 9 make 20x24 the most common.
  EXPECT_EQ(std::vector<int64_t>({d.channels, d.height, d.width}),
            std::vector<int64_t>({3, 20, 24}));
}

TEST_F(PipelineTest, OneChannelImagesAreRepeatedForAThreeChannelModel) {
  const SyntheticDataset spec{
      .train = 8, .test = 4, .channels = 1, .height = 12, .width = 12, .vary = 0};
  const std::string dir = Define(spec);
  const DatasetSplits d = Load(dir, {.input_shape = "3x12x12"});
  EXPECT_TRUE(d.channel_repeat);
  ASSERT_EQ(d.train.images.size(1), 3);
  for (int c = 1; c < 3; ++c)
    EXPECT_TRUE(torch::equal(d.train.images.select(1, c), d.train.images.select(1, 0)));
  // Statistics after the repeat: one value per model channel, all equal.
  ASSERT_EQ(d.channel_mean.size(), 3u);
  EXPECT_EQ(d.channel_mean[0], d.channel_mean[2]);
  // A single given value serves every channel.
  const DatasetSplits given = Load(dir, {.mean = {0.5}, .std = {0.25}, .input_shape = "3x12x12"});
  EXPECT_EQ(given.channel_mean, (std::vector<double>{0.5, 0.5, 0.5}));
  BatchIterator it(given.test, 4);
  const torch::Tensor x = it.Next()->images;
  EXPECT_NEAR(x[0][2][0][0].item<double>(),
              (Raw(spec, 1, 0)[0][0][0].item<double>() / 255 - 0.5) / 0.25, 1e-6);
  // Two values for three channels fit nothing.
  absl::StatusOr<DatasetSplits> bad = LoadDataset(
      dir, "synthetic", {.mean = {0.5, 0.5}, .std = {0.2, 0.2}, .input_shape = "3x12x12"});
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(PipelineTest, ColourImagesIntoAOneChannelModelAreRefused) {
  const std::string dir = Define({.channels = 3, .vary = 0});
  absl::StatusOr<DatasetSplits> d = LoadDataset(dir, "synthetic", {.input_shape = "1x20x24"});
  EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(d.status().message().find("the model takes 1-channel input but the images of " + dir +
                                      " have 3 channels"),
            std::string::npos)
      << d.status();
}

TEST_F(PipelineTest, HoldoutIsASeededFractionOfTheTrainingImages) {
  const std::string dir = Define({.train = 50, .test = 0, .vary = 0});
  auto rows = [](const TensorDataset& t) {
    std::set<std::string> out;  // each image's bytes
    for (int64_t i = 0; i < t.size(); ++i) {
      torch::Tensor img = t.images[i].contiguous();
      out.insert(std::string(static_cast<const char*>(img.data_ptr()), img.numel()));
    }
    return out;
  };
  const DatasetSplits a = Load(dir, {.seed = 3});
  EXPECT_TRUE(a.holdout);
  EXPECT_EQ(a.train.size(), 45);
  EXPECT_EQ(a.test.size(), 5);
  std::set<std::string> all = rows(a.train), test = rows(a.test);
  for (const auto& r : test) EXPECT_FALSE(all.count(r)) << "a held-out image also trains";
  all.insert(test.begin(), test.end());
  EXPECT_EQ(all.size(), 50u);
  const DatasetSplits again = Load(dir, {.seed = 3});
  EXPECT_TRUE(torch::equal(again.test.images, a.test.images));
  EXPECT_TRUE(torch::equal(again.train.labels, a.train.labels));
  const DatasetSplits other = Load(dir, {.seed = 4});
  EXPECT_FALSE(torch::equal(other.test.images, a.test.images));
  LoadOptions quarter{.seed = 3};
  quarter.preprocessing.set_holdout_fraction(0.25);
  EXPECT_EQ(Load(dir, quarter).test.size(), 13);  // 12.5 rounded
  // A dataset with its own test split holds nothing out.
  const DatasetSplits own = Load(Define({.train = 50, .test = 7, .vary = 0}), {});
  EXPECT_FALSE(own.holdout);
  EXPECT_EQ(own.train.size(), 50);
  EXPECT_EQ(own.test.size(), 7);
}

TEST_F(PipelineTest, AugmentationReplaysPerSeedAndEpoch) {
  const std::string dir = Define({.train = 24, .test = 4, .vary = 2});
  // Images of varying size are not augmented unless the job asks; fixed-size natural images get
  // the pad-4 crop and flip.
  EXPECT_FALSE(Load(dir, {.input_shape = "3x16x16"}).augment);
  const DatasetSplits fixed = Load(Define({.train = 8, .test = 2, .vary = 0}), {});
  EXPECT_EQ(fixed.train.augmentation.crop, Crop::kPad4);
  EXPECT_TRUE(fixed.train.augmentation.flip);
  LoadOptions on{.input_shape = "3x16x16"};
  on.preprocessing.set_random_resized_crop(true);
  on.preprocessing.set_horizontal_flip(true);
  const DatasetSplits d = Load(dir, on);
  EXPECT_TRUE(d.augment);
  EXPECT_EQ(d.train.augmentation.crop, Crop::kRandomResized);
  EXPECT_EQ(d.train.augmentation.scale_min, 0.5);
  EXPECT_TRUE(d.train.augmentation.flip);
  EXPECT_TRUE(Same(Epoch(d.train, 5, 1, 2, true), Epoch(d.train, 5, 1, 2, true)));
  EXPECT_FALSE(Same(Epoch(d.train, 5, 1, 2, true), Epoch(d.train, 5, 1, 3, true)));
  EXPECT_FALSE(Same(Epoch(d.train, 5, 1, 2, true), Epoch(d.train, 5, 2, 2, true)));
  EXPECT_FALSE(Same(Epoch(d.train, 5, 1, 2, true), Epoch(d.train, 5, 1, 2, false)));
  // The thread count does not change a batch.
  LoadOptions one = on, four_threads = on;
  one.loader_threads = 1;
  four_threads.loader_threads = 4;
  DatasetSplits one_thread = Load(dir, one);
  DatasetSplits four = Load(dir, four_threads);
  EXPECT_TRUE(Same(Epoch(one_thread.train, 5, 1, 2, true), Epoch(four.train, 5, 1, 2, true)));
  // Switched off per job.
  LoadOptions off{.input_shape = "3x16x16"};
  off.preprocessing.set_random_resized_crop(false);
  off.preprocessing.set_horizontal_flip(false);
  const DatasetSplits plain = Load(dir, off);
  EXPECT_FALSE(plain.augment);
  EXPECT_TRUE(Same(Epoch(plain.train, 5, 1, 2, true), Epoch(plain.train, 5, 1, 2, false)));
}

TEST_F(PipelineTest, StreamingGivesTheBatchesOfInMemoryLoading) {
  const std::string dir = Define({.train = 37, .test = 0, .vary = 3, .grey_odd = true});
  LoadOptions options{.max_train = 30, .seed = 5, .input_shape = "3x14x14"};
  options.preprocessing.set_resize_size(16);
  const DatasetSplits memory = Load(dir, options);
  options.memory_budget_bytes = 1;
  const DatasetSplits streaming = Load(dir, options);
  EXPECT_FALSE(memory.streaming);
  EXPECT_TRUE(streaming.streaming);
  EXPECT_FALSE(streaming.train.images.defined());
  EXPECT_EQ(streaming.channel_mean, memory.channel_mean);
  EXPECT_EQ(streaming.channel_std, memory.channel_std);
  EXPECT_EQ(streaming.train.size(), 30);
  for (int64_t epoch : {0, 1}) {
    EXPECT_TRUE(
        Same(Epoch(memory.train, 8, 5, epoch, true), Epoch(streaming.train, 8, 5, epoch, true)))
        << epoch;
  }
  EXPECT_TRUE(Same(Epoch(memory.test, 3, 0, 0, false), Epoch(streaming.test, 3, 0, 0, false)));
  BatchIterator in_order(streaming.test, 2);
  BatchIterator in_order_memory(memory.test, 2);
  EXPECT_TRUE(torch::equal(in_order.Next()->images, in_order_memory.Next()->images));
}

TEST_F(PipelineTest, DecodeErrorsNameTheFile) {
  const std::string dir = Define({.train = 20, .test = 4, .vary = 0, .bad_train = 7});
  absl::StatusOr<DatasetSplits> d = LoadDataset(dir, "synthetic", {});
  EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(d.status().message(), "train/3/7.png: truncated PNG data");
  // Streaming with a given normalisation decodes nothing up front: the batch holding the image
  // fails with the same status.
  absl::StatusOr<DatasetSplits> s =
      LoadDataset(dir, "synthetic", {.mean = {0.5}, .std = {0.5}, .memory_budget_bytes = 1});
  ASSERT_TRUE(s.ok()) << s.status();
  BatchIterator it(s->train, 4, 1, 0, false);
  try {
    while (it.Next()) {
    }
    ADD_FAILURE() << "no DataError";
  } catch (const DataError& e) {
    EXPECT_EQ(e.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(e.status().message(), "train/3/7.png: truncated PNG data");
  }
}

TEST_F(PipelineTest, PreparedDatasetsAreKeptForTheNextLoad) {
  SyntheticDataset spec{.train = 10, .test = 3, .vary = 0};
  const std::string dir = Define(spec);
  const DatasetSplits first = Load(dir, {});
  // The reader would now fail, but the prepared images are kept.
  spec.bad_train = 2;
  SetSyntheticDataset(dir, spec);
  absl::StatusOr<DatasetSplits> cached = LoadDataset(dir, "synthetic", {});
  ASSERT_TRUE(cached.ok()) << cached.status();
  EXPECT_TRUE(torch::equal(cached->train.images, first.train.images));
  // Another input shape is another entry.
  EXPECT_FALSE(LoadDataset(dir, "synthetic", {.input_shape = "3x8x8"}).ok());
  ClearDatasetCache();
  EXPECT_FALSE(LoadDataset(dir, "synthetic", {}).ok());
}

}  // namespace
}  // namespace qnet::engine
