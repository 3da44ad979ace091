// The dataset-format registry: which formats a binary has, lookup, detection, and the checks Read
// adds to every format. This binary names no format's code (the formats live in anonymous
// namespaces of their own files), so finding them proves qnet_datasets is linked whole: as a plain
// static library the linker would drop the format files and the registry would be empty.
#include "datasets/dataset_format.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/datasets/dataset_files.h"

namespace qnet::datasets {
namespace {

using ::qnet::testing::DatasetDirTest;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(DatasetFormatRegistryTest, EveryFormatIsRegisteredWithoutBeingReferenced) {
  EXPECT_THAT(DatasetFormatNames(), ElementsAre("cifar10", "idx"));
  EXPECT_EQ(DatasetFormatNameList(), "cifar10, idx");
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
  EXPECT_TRUE(FindDatasetFormat("cifar10")->augments());
  EXPECT_FALSE(FindDatasetFormat("idx")->augments());
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
  EXPECT_THAT(none.status().message(), HasSubstr("cifar10, idx"));

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
  EXPECT_THAT(both.status().message(), HasSubstr("cifar10, idx"));
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

TEST(CheckLabelsTest, NamesTheFirstLabelOutOfRange) {
  EXPECT_TRUE(CheckLabels("f", {0, 9, 3}, 10).ok());
  absl::Status s = CheckLabels("f", {0, 10, -1}, 10);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "f: label 10 at index 1 is out of range for 10 classes");
  EXPECT_THAT(CheckLabels("f", {-1}, 10).message(), HasSubstr("label -1 at index 0"));
}

}  // namespace
}  // namespace qnet::datasets
