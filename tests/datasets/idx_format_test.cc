// Format "idx": reading .gz and raw IDX files byte-exactly, Inspect from headers alone, and the
// error discipline on malformed input (INVALID_ARGUMENT naming the file and the problem).
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "datasets/dataset_format.h"
#include "tests/datasets/dataset_files.h"

namespace qnet::datasets {
namespace {

namespace fs = std::filesystem;
using ::qnet::testing::IdxBytes;
using ::qnet::testing::IdxPixel;
using ::qnet::testing::SyntheticIdx;
using ::qnet::testing::WriteBytes;
using ::qnet::testing::WriteIdxDataset;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

class IdxFormatTest : public qnet::testing::DatasetDirTest {
 protected:
  const DatasetFormat& idx_ = *FindDatasetFormat("idx");
};

TEST_F(IdxFormatTest, ReadsGzAndRawByteForByte) {
  for (bool gz : {true, false}) {
    SCOPED_TRACE(gz ? "gz" : "raw");
    Reset();
    SyntheticIdx spec;
    WriteIdxDataset(dir_, spec, gz);
    EXPECT_TRUE(idx_.Detect(dir_));
    absl::StatusOr<RawDataset> d = idx_.Read(dir_);
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_EQ(d->num_classes, 10);
    EXPECT_EQ(d->shape(), (ImageShape{1, spec.rows, spec.cols}));
    for (int split = 0; split < 2; ++split) {
      const RawSplit& s = split == 0 ? d->train : d->test;
      const int64_t n = split == 0 ? spec.n_train : spec.n_test;
      ASSERT_EQ(s.size(), n);
      ASSERT_EQ(s.pixels.size(), static_cast<size_t>(n * spec.rows * spec.cols));
      for (int64_t i = 0; i < n; ++i) {
        EXPECT_EQ(s.labels[i], i % 10);
        for (int64_t k = 0; k < spec.rows * spec.cols; ++k) {
          ASSERT_EQ(s.pixels[i * spec.rows * spec.cols + k], IdxPixel(split, i, k))
              << i << " " << k;
        }
      }
    }
  }
}

TEST_F(IdxFormatTest, InspectReadsHeadersOnly) {
  WriteIdxDataset(dir_, {.n_train = 40, .n_test = 12, .rows = 6, .cols = 5}, /*gz=*/true);
  // Raw test files next to the .gz train files: each split uses what is there.
  fs::remove(Path("t10k-images-idx3-ubyte.gz"));
  fs::remove(Path("t10k-labels-idx1-ubyte.gz"));
  WriteBytes(Path("t10k-images-idx3-ubyte"), IdxBytes(0x803, {12, 6, 5}, std::vector<uint8_t>(360)),
             false);
  WriteBytes(Path("t10k-labels-idx1-ubyte"), IdxBytes(0x801, {12}, std::vector<uint8_t>(12)),
             false);
  absl::StatusOr<DatasetSummary> summary = idx_.Inspect(dir_);
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(summary->shape, (ImageShape{1, 6, 5}));
  EXPECT_EQ(summary->num_classes, 10);
  EXPECT_EQ(summary->train_images, 40);
  EXPECT_EQ(summary->test_images, 12);
  EXPECT_THAT(summary->files,
              ElementsAre("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                          "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"));

  // Inspect does not read the pixels: a label out of range is only found by Read...
  std::vector<uint8_t> labels(12, 1);
  labels[3] = 10;
  WriteBytes(Path("t10k-labels-idx1-ubyte"), IdxBytes(0x801, {12}, labels), false);
  EXPECT_TRUE(idx_.Inspect(dir_).ok());
  EXPECT_THAT(idx_.Read(dir_).status().message(), HasSubstr("label 10 at index 3"));
  // ...but headers that disagree with each other or with a raw file's size are found.
  WriteBytes(Path("t10k-labels-idx1-ubyte"), IdxBytes(0x801, {11}, std::vector<uint8_t>(11)),
             false);
  EXPECT_THAT(idx_.Inspect(dir_).status().message(), HasSubstr("count mismatch"));
  WriteBytes(Path("t10k-labels-idx1-ubyte"), IdxBytes(0x801, {12}, std::vector<uint8_t>(11)),
             false);
  EXPECT_THAT(idx_.Inspect(dir_).status().message(), HasSubstr("truncated"));
}

// --- malformed input ---

struct Malformed {
  std::string name;
  std::string file;  // the file to overwrite
  std::vector<uint8_t> bytes;
  bool gz;
  std::string expect;  // substring of the message
  // What Inspect, which reads headers only, makes of the same folder.
  enum { kSameError, kPasses, kOtherError } inspect;
};

std::vector<uint8_t> GoodImages(uint32_t n) {
  return IdxBytes(0x803, {n, 6, 5}, std::vector<uint8_t>(n * 30, 7));
}

TEST_F(IdxFormatTest, MalformedFilesGiveInvalidArgumentNamingTheFile) {
  std::vector<uint8_t> truncated = GoodImages(40);
  truncated.resize(truncated.size() - 10);
  std::vector<uint8_t> trailing = GoodImages(40);
  trailing.push_back(1);
  std::vector<uint8_t> bad_label = IdxBytes(0x801, {40}, std::vector<uint8_t>(40, 3));
  bad_label[8 + 17] = 10;
  const std::vector<Malformed> cases = {
      {"labels magic in images", "train-images-idx3-ubyte", IdxBytes(0x801, {40}, {}), false,
       "bad magic number 0x00000801 (an IDX label file), expected 0x00000803 for images",
       Malformed::kSameError},
      {"images magic in labels", "train-labels-idx1-ubyte", GoodImages(40), false,
       "bad magic number 0x00000803 (an IDX image file), expected 0x00000801 for labels",
       Malformed::kSameError},
      {"not idx",
       "train-images-idx3-ubyte",
       {'h', 'e', 'l', 'l', 'o', '!', '!', '!'},
       false,
       "bad magic number 0x68656c6c (not an IDX file of unsigned bytes)",
       Malformed::kSameError},
      {"empty file",
       "train-images-idx3-ubyte",
       {},
       false,
       "truncated: the IDX magic number needs 4 bytes but the file ends after 0",
       Malformed::kSameError},
      {"short header",
       "train-images-idx3-ubyte",
       {0, 0, 8, 3, 0, 0},
       true,
       "truncated: the IDX dims needs 12 bytes",
       Malformed::kSameError},
      {"truncated raw", "train-images-idx3-ubyte", truncated, false,
       "truncated: header declares 1200 data bytes but the file has 1190", Malformed::kSameError},
      {"truncated gz", "train-images-idx3-ubyte", truncated, true,
       "truncated: the data the header declares needs 1200 bytes", Malformed::kPasses},
      {"trailing raw", "train-images-idx3-ubyte", trailing, false,
       "size mismatch: header declares 1200 data bytes but the file has 1201",
       Malformed::kSameError},
      {"trailing gz", "train-images-idx3-ubyte", trailing, true,
       "trailing bytes after the size the header declares", Malformed::kPasses},
      {"zero dim", "train-images-idx3-ubyte", IdxBytes(0x803, {40, 0, 5}, {}), false,
       "dimension 1 is 0", Malformed::kSameError},
      {"absurd size raw", "train-images-idx3-ubyte",
       IdxBytes(0x803, {0xffffffffu, 0xffffffffu, 0xffffffffu}, {1, 2, 3}), false,
       "header claims more than 2147483648 bytes of data (dimension 0 is 4294967295)",
       Malformed::kSameError},
      {"absurd size gz", "train-images-idx3-ubyte", IdxBytes(0x803, {1u << 20, 1u << 10, 4}, {}),
       true, "more than 2147483648 bytes", Malformed::kSameError},
      {"big claim small gz", "train-images-idx3-ubyte",
       IdxBytes(0x803, {40, 1u << 15, 1u << 10}, {1}), true, "truncated", Malformed::kOtherError},
      {"count mismatch", "train-labels-idx1-ubyte",
       IdxBytes(0x801, {39}, std::vector<uint8_t>(39, 1)), false,
       "count mismatch: 39 labels for 40", Malformed::kSameError},
      {"label out of range", "train-labels-idx1-ubyte", bad_label, false,
       "label 10 at index 17 is out of range for 10 classes", Malformed::kPasses},
  };
  for (const Malformed& c : cases) {
    SCOPED_TRACE(c.name);
    Reset();
    WriteIdxDataset(dir_, {}, /*gz=*/false);
    const std::string path = Path(c.file + (c.gz ? ".gz" : ""));
    fs::remove(Path(c.file));
    WriteBytes(path, c.bytes, c.gz);
    absl::StatusOr<RawDataset> d = idx_.Read(dir_);
    ASSERT_FALSE(d.ok());
    EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument) << d.status();
    EXPECT_THAT(d.status().message(), HasSubstr(path + ": "));
    EXPECT_THAT(d.status().message(), HasSubstr(c.expect));
    absl::StatusOr<DatasetSummary> summary = idx_.Inspect(dir_);
    switch (c.inspect) {
      case Malformed::kSameError:
        EXPECT_EQ(summary.status(), d.status());
        break;
      case Malformed::kPasses:
        EXPECT_TRUE(summary.ok()) << summary.status();
        break;
      case Malformed::kOtherError:
        EXPECT_EQ(summary.status().code(), absl::StatusCode::kInvalidArgument) << summary.status();
        EXPECT_NE(summary.status(), d.status());
        break;
    }
  }
}

TEST_F(IdxFormatTest, CorruptGzipGivesInvalidArgument) {
  WriteIdxDataset(dir_, {}, /*gz=*/true);
  // A valid gzip header followed by deflate data with a reserved block type.
  std::vector<uint8_t> corrupt = {0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 3};
  for (int i = 0; i < 64; ++i) corrupt.push_back(static_cast<uint8_t>(0xff - i));
  const std::string path = Path("t10k-images-idx3-ubyte.gz");
  WriteBytes(path, corrupt, /*gz=*/false);
  for (const absl::Status& s : {idx_.Read(dir_).status(), idx_.Inspect(dir_).status()}) {
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_THAT(s.message(), HasSubstr(path + ": corrupt data"));
  }
}

TEST_F(IdxFormatTest, MissingFilesGiveNotFoundNamingThem) {
  EXPECT_FALSE(idx_.Detect(dir_));
  for (const absl::Status& s : {idx_.Read(dir_).status(), idx_.Inspect(dir_).status()}) {
    EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
    EXPECT_EQ(s.message(), dir_ + "/train-images-idx3-ubyte[.gz]: file not found");
  }
  WriteIdxDataset(dir_, {}, true);
  fs::remove(Path("t10k-labels-idx1-ubyte.gz"));
  for (const absl::Status& s : {idx_.Read(dir_).status(), idx_.Inspect(dir_).status()}) {
    EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
    EXPECT_THAT(s.message(), HasSubstr("t10k-labels-idx1-ubyte[.gz]: file not found"));
  }
}

TEST_F(IdxFormatTest, RandomGarbageNeverCrashes) {
  std::mt19937 rng(42);
  for (int round = 0; round < 60; ++round) {
    Reset();
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
    absl::StatusOr<RawDataset> d = idx_.Read(dir_);
    EXPECT_FALSE(d.ok());
    EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument) << d.status();
    EXPECT_FALSE(idx_.Inspect(dir_).ok());
  }
}

}  // namespace
}  // namespace qnet::datasets
