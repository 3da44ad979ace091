// The dataset-format registry: which formats a binary has, lookup, detection, and the checks Read
// adds to every format. This binary names no format's code (the formats live in anonymous
// namespaces of their own files), so finding them proves qnet_datasets is linked whole: as a plain
// static library the linker would drop the format files and the registry would be empty.
#include "datasets/dataset_format.h"

#include <algorithm>
#include <utility>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/datasets/dataset_files.h"

namespace qnet::datasets {
namespace {

using ::qnet::testing::DatasetDirTest;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(DatasetFormatRegistryTest, EveryFormatIsRegisteredWithoutBeingReferenced) {
  EXPECT_THAT(DatasetFormatNames(), ElementsAre("archive", "cifar10", "idx", "imagefolder", "npz"));
  EXPECT_EQ(DatasetFormatNameList(), "archive, cifar10, idx, imagefolder, npz");
  for (const std::string& name : DatasetFormatNames()) {
    const DatasetFormat* format = FindDatasetFormat(name);
    ASSERT_NE(format, nullptr) << name;
    EXPECT_EQ(format->name(), name);
    EXPECT_FALSE(format->description().empty()) << name;
  }
  EXPECT_EQ(FindDatasetFormat("png"), nullptr);
  EXPECT_EQ(FindDatasetFormat(""), nullptr);
}

TEST(DatasetFormatRegistryTest, OnlyNaturalImagesAugment) {
  for (const char* name : {"archive", "cifar10", "imagefolder"}) {
    EXPECT_TRUE(FindDatasetFormat(name)->augments()) << name;
  }
  for (const char* name : {"idx", "npz"}) EXPECT_FALSE(FindDatasetFormat(name)->augments()) << name;
}

TEST(DatasetFormatRegistryTest, TypicalShapes) {
  DatasetSummary idx = FindDatasetFormat("idx")->Typical();
  EXPECT_EQ(idx.shape, (ImageShape{1, 28, 28}));
  EXPECT_EQ(idx.num_classes, 10);
  DatasetSummary cifar = FindDatasetFormat("cifar10")->Typical();
  EXPECT_EQ(cifar.shape, (ImageShape{3, 32, 32}));
  EXPECT_EQ(cifar.num_classes, 10);
}

using DetectDatasetFormatTest = DatasetDirTest;

TEST_F(DetectDatasetFormatTest, FindsTheOneFormatThatFits) {
  absl::StatusOr<const DatasetFormat*> none = DetectDatasetFormat(dir_);
  EXPECT_EQ(none.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(none.status().message(), HasSubstr("archive, cifar10, idx, imagefolder, npz"));

  qnet::testing::WriteIdxDataset(dir_, {}, /*gz=*/true);
  absl::StatusOr<const DatasetFormat*> idx = DetectDatasetFormat(dir_);
  ASSERT_TRUE(idx.ok()) << idx.status();
  EXPECT_EQ((*idx)->name(), "idx");

  Reset();
  qnet::testing::WriteCifar(Path("cifar-10-batches-bin"));
  absl::StatusOr<const DatasetFormat*> cifar = DetectDatasetFormat(dir_);
  ASSERT_TRUE(cifar.ok()) << cifar.status();
  EXPECT_EQ((*cifar)->name(), "cifar10");

  // Both kinds of file in one folder: the caller has to say which is meant.
  qnet::testing::WriteIdxDataset(dir_, {}, /*gz=*/false);
  absl::StatusOr<const DatasetFormat*> both = DetectDatasetFormat(dir_);
  EXPECT_EQ(both.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(both.status().message(), HasSubstr("(cifar10, idx)"));
}

using ReadChecksTest = DatasetDirTest;

TEST_F(ReadChecksTest, SplitsOfDifferentShapesAreRefused) {
  qnet::testing::WriteIdxDataset(dir_, {}, /*gz=*/true);
  qnet::testing::WriteBytes(
      Path("t10k-images-idx3-ubyte.gz"),
      qnet::testing::IdxBytes(0x803, {12, 5, 5}, std::vector<uint8_t>(12 * 25, 1)), true);
  const DatasetFormat* idx = FindDatasetFormat("idx");
  absl::StatusOr<RawDataset> d = idx->Read(dir_);
  EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument) << d.status();
  EXPECT_THAT(d.status().message(),
              HasSubstr(dir_ + ": train images are [1, 6, 5] but test images are [1, 5, 5]"));
  absl::StatusOr<DatasetSummary> summary = idx->Inspect(dir_);
  EXPECT_EQ(summary.status(), d.status());
}

using DefaultOpenTest = DatasetDirTest;

// idx and cifar10 open through the default, which wraps Read: every image and label as Read has
// them, one by one.
TEST_F(DefaultOpenTest, FixedShapeFormatsOpenWhatReadReads) {
  qnet::testing::WriteIdxDataset(Path("idx"), {.n_train = 7, .n_test = 3}, /*gz=*/true);
  qnet::testing::WriteCifar(Path("cifar"));
  for (const auto& [name, sub] : {std::pair{"idx", "idx"}, std::pair{"cifar10", "cifar"}}) {
    SCOPED_TRACE(name);
    const DatasetFormat* format = FindDatasetFormat(name);
    absl::StatusOr<RawDataset> data = format->Read(Path(sub));
    ASSERT_TRUE(data.ok()) << data.status();
    absl::StatusOr<DatasetReader> reader = format->Open(Path(sub));
    ASSERT_TRUE(reader.ok()) << reader.status();
    EXPECT_TRUE(reader->fixed_shape);
    EXPECT_EQ(reader->num_classes, 10);
    EXPECT_THAT(reader->class_names, ElementsAre("0", "1", "2", "3", "4", "5", "6", "7", "8", "9"));
    ASSERT_NE(reader->test, nullptr);
    for (const auto& [raw, split] : {std::pair{&data->train, reader->train.get()},
                                     std::pair{&data->test, reader->test.get()}}) {
      ASSERT_EQ(split->size(), raw->size());
      const int64_t n = raw->shape.pixels();
      for (int64_t i = 0; i < split->size(); ++i) {
        EXPECT_EQ(split->label(i), raw->labels[i]);
        EXPECT_EQ(*split->Shape(i), raw->shape);
        absl::StatusOr<Image> image = split->Decode(i);
        ASSERT_TRUE(image.ok()) << image.status();
        EXPECT_EQ(image->shape, raw->shape);
        EXPECT_TRUE(std::equal(image->pixels.begin(), image->pixels.end(),
                               raw->pixels.begin() + i * n, raw->pixels.begin() + (i + 1) * n))
            << split->source(i);
      }
      EXPECT_EQ(split->Decode(split->size()).status().code(), absl::StatusCode::kOutOfRange);
    }
    EXPECT_THAT(reader->train->source(2), HasSubstr("train[2]"));
    absl::StatusOr<DatasetSummary> summary = format->Inspect(Path(sub));
    ASSERT_TRUE(summary.ok()) << summary.status();
    EXPECT_EQ(summary->class_names, reader->class_names);
  }
  EXPECT_EQ(FindDatasetFormat("idx")->Open(Path("missing")).status().code(),
            absl::StatusCode::kNotFound);
}

TEST(CheckLabelsTest, NamesTheFirstLabelOutOfRange) {
  EXPECT_TRUE(CheckLabels("f", {0, 9, 3}, 10).ok());
  absl::Status s = CheckLabels("f", {0, 10, -1}, 10);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "f: label 10 at index 1 is out of range for 10 classes");
  EXPECT_THAT(CheckLabels("f", {-1}, 10).message(), HasSubstr("label -1 at index 0"));
}

}  // namespace
}  // namespace qnet::datasets
