// Format "cifar10": binary batches in the folder or its cifar-10-batches-bin/ subfolder, read
// byte-exactly, Inspect from file sizes, and malformed batches refused naming the file.
#include <filesystem>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "datasets/dataset_format.h"
#include "tests/datasets/dataset_files.h"

namespace qnet::datasets {
namespace {

namespace fs = std::filesystem;
using ::qnet::testing::CifarPixel;
using ::qnet::testing::CifarRecords;
using ::qnet::testing::WriteBytes;
using ::qnet::testing::WriteCifar;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

class Cifar10FormatTest : public qnet::testing::DatasetDirTest {
 protected:
  const DatasetFormat& cifar_ = *FindDatasetFormat("cifar10");
};

TEST_F(Cifar10FormatTest, ReadsBatchesInTheSubfolderByteForByte) {
  WriteCifar(Path("cifar-10-batches-bin"));
  EXPECT_TRUE(cifar_.Detect(dir_));
  absl::StatusOr<RawDataset> d = cifar_.Read(dir_);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->num_classes, 10);
  EXPECT_EQ(d->shape(), (ImageShape{3, 32, 32}));
  ASSERT_EQ(d->train.size(), 10);
  ASSERT_EQ(d->test.size(), 3);
  // Train images in batch order (ids 0..9), test ids 100..102; records keep their channel-major
  // layout, so byte k of a record is pixel k of the image.
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(d->train.labels[i], i % 10);
    for (int k : {0, 1023, 1024, 3071}) EXPECT_EQ(d->train.pixels[i * 3072 + k], CifarPixel(i, k));
  }
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(d->test.labels[i], (100 + i) % 10);
    for (int k = 0; k < 3072; ++k) {
      ASSERT_EQ(d->test.pixels[i * 3072 + k], CifarPixel(100 + i, k)) << i << " " << k;
    }
  }
}

TEST_F(Cifar10FormatTest, TheFolderItselfComesBeforeTheSubfolder) {
  WriteCifar(dir_);
  WriteCifar(Path("cifar-10-batches-bin"));
  WriteBytes(Path("cifar-10-batches-bin/test_batch.bin"), CifarRecords(7, 0), false);
  absl::StatusOr<RawDataset> d = cifar_.Read(dir_);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->test.size(), 3);
}

TEST_F(Cifar10FormatTest, InspectCountsRecordsFromFileSizes) {
  WriteCifar(Path("cifar-10-batches-bin"));
  absl::StatusOr<DatasetSummary> summary = cifar_.Inspect(dir_);
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(summary->shape, (ImageShape{3, 32, 32}));
  EXPECT_EQ(summary->num_classes, 10);
  EXPECT_EQ(summary->train_images, 10);
  EXPECT_EQ(summary->test_images, 3);
  EXPECT_THAT(
      summary->files,
      ElementsAre("cifar-10-batches-bin/data_batch_1.bin", "cifar-10-batches-bin/data_batch_2.bin",
                  "cifar-10-batches-bin/data_batch_3.bin", "cifar-10-batches-bin/data_batch_4.bin",
                  "cifar-10-batches-bin/data_batch_5.bin", "cifar-10-batches-bin/test_batch.bin"));

  // A compressed batch reads fine, but only decompressing it would count its records.
  WriteBytes(Path("cifar-10-batches-bin/data_batch_2.bin"), CifarRecords(2, 2), /*gz=*/true);
  summary = cifar_.Inspect(dir_);
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(summary->train_images, -1);
  EXPECT_EQ(summary->test_images, 3);
  absl::StatusOr<RawDataset> d = cifar_.Read(dir_);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->train.size(), 10);
}

TEST_F(Cifar10FormatTest, MalformedBatchesGiveInvalidArgumentNamingTheFile) {
  struct Case {
    std::string name, file;
    std::vector<uint8_t> bytes;
    std::string expect;
    bool header_only;  // Inspect finds it too
  };
  std::vector<uint8_t> truncated = CifarRecords(2, 0);
  truncated.pop_back();
  std::vector<uint8_t> bad_label = CifarRecords(3, 0);
  bad_label[3073] = 200;
  const std::vector<Case> cases = {
      {"truncated", "data_batch_3.bin", truncated,
       "truncated: 6145 bytes is not a whole number of 3073-byte records", true},
      {"label out of range", "test_batch.bin", bad_label,
       "label 200 at index 1 is out of range for 10 classes", false},
      {"empty", "data_batch_5.bin", {}, "empty file", true},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    Reset();
    WriteCifar(dir_);
    WriteBytes(Path(c.file), c.bytes, false);
    absl::StatusOr<RawDataset> d = cifar_.Read(dir_);
    EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(d.status().message(), HasSubstr(Path(c.file) + ": " + c.expect));
    absl::StatusOr<DatasetSummary> summary = cifar_.Inspect(dir_);
    if (c.header_only) {
      EXPECT_EQ(summary.status(), d.status());
    } else {
      EXPECT_TRUE(summary.ok()) << summary.status();
    }
  }
}

TEST_F(Cifar10FormatTest, MissingBatchGivesNotFound) {
  EXPECT_FALSE(cifar_.Detect(dir_));
  EXPECT_EQ(cifar_.Read(dir_).status().code(), absl::StatusCode::kNotFound);
  WriteCifar(dir_);
  fs::remove(Path("data_batch_4.bin"));
  for (const absl::Status& s : {cifar_.Read(dir_).status(), cifar_.Inspect(dir_).status()}) {
    EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
    EXPECT_EQ(s.message(), Path("data_batch_4.bin") + ": file not found");
  }
}

}  // namespace
}  // namespace qnet::datasets
