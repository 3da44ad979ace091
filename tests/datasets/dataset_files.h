// Tiny IDX and CIFAR-10 datasets written byte by byte, for the format parsers' tests and the
// engine's tensor-level tests: every pixel is a known function of (split, image, position).
//
//   qnet::testing::WriteIdxDataset(dir, {.n_train = 40}, /*gz=*/true);
//   // pixel k of train image i is IdxPixel(0, i, k); label i % 10
#ifndef QNET_TESTS_DATASETS_DATASET_FILES_H_
#define QNET_TESTS_DATASETS_DATASET_FILES_H_

#include <zlib.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

#include <gtest/gtest.h>
#include <stdlib.h>

namespace qnet::testing {

inline void PutU32(std::vector<uint8_t>& out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<uint8_t>(v >> shift));
}

// Writes `bytes` to `path`, gzip-compressed when `gz`.
inline void WriteBytes(const std::string& path, const std::vector<uint8_t>& bytes, bool gz) {
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

inline std::vector<uint8_t> IdxBytes(uint32_t magic, const std::vector<uint32_t>& dims,
                                     const std::vector<uint8_t>& data) {
  std::vector<uint8_t> out;
  PutU32(out, magic);
  for (uint32_t d : dims) PutU32(out, d);
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

inline uint8_t IdxPixel(int64_t split, int64_t i, int64_t k) {
  return static_cast<uint8_t>((split * 101 + i * 37 + k * 11) % 256);
}

struct SyntheticIdx {
  int64_t n_train = 40, n_test = 12, rows = 6, cols = 5;
};

// Writes train-* and t10k-* IDX files into `dir` (created if missing); pixel k of image i of split
// s (0 train, 1 test) is IdxPixel(s, i, k), label i % 10.
inline void WriteIdxDataset(const std::string& dir, const SyntheticIdx& spec, bool gz) {
  std::filesystem::create_directories(dir);
  const std::string ext = gz ? ".gz" : "";
  const int64_t hw = spec.rows * spec.cols;
  for (int split = 0; split < 2; ++split) {
    const int64_t n = split == 0 ? spec.n_train : spec.n_test;
    const std::string prefix = split == 0 ? "train" : "t10k";
    std::vector<uint8_t> pixels, labels;
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t k = 0; k < hw; ++k) pixels.push_back(IdxPixel(split, i, k));
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

// Byte k of record `id`'s image.
inline uint8_t CifarPixel(int id, int k) { return static_cast<uint8_t>((id * 13 + k) % 251); }

// `n` CIFAR-10 records with ids first_id.., labelled id % 10.
inline std::vector<uint8_t> CifarRecords(int n, int first_id) {
  std::vector<uint8_t> out;
  for (int r = 0; r < n; ++r) {
    const int id = first_id + r;
    out.push_back(static_cast<uint8_t>(id % 10));
    for (int k = 0; k < 3072; ++k) out.push_back(CifarPixel(id, k));
  }
  return out;
}

// Five train batches of 2 records (ids 0..9) and a test batch of 3 (ids 100..102).
inline void WriteCifar(const std::string& dir) {
  std::filesystem::create_directories(dir);
  for (int b = 1; b <= 5; ++b) {
    WriteBytes(dir + "/data_batch_" + std::to_string(b) + ".bin", CifarRecords(2, 2 * (b - 1)),
               false);
  }
  WriteBytes(dir + "/test_batch.bin", CifarRecords(3, 100), false);
}

// A fresh folder, removed with everything in it on destruction.
class TempFolder {
 public:
  TempFolder() {
    std::string pattern =
        (std::filesystem::path(::testing::TempDir()) / "qnet_data_XXXXXX").string();
    EXPECT_NE(mkdtemp(pattern.data()), nullptr);
    path_ = pattern;
  }
  ~TempFolder() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempFolder(const TempFolder&) = delete;
  TempFolder& operator=(const TempFolder&) = delete;

  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// A fresh folder per test (ctest runs test cases in parallel processes), removed afterwards.
class DatasetDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    folder_ = std::make_unique<TempFolder>();
    dir_ = folder_->path();
  }
  void TearDown() override { folder_.reset(); }
  // Starts over with an empty folder (for table-driven cases).
  void Reset() {
    TearDown();
    SetUp();
  }
  std::string Path(const std::string& name) const { return dir_ + "/" + name; }

  std::string dir_;

 private:
  std::unique_ptr<TempFolder> folder_;
};

}  // namespace qnet::testing

#endif  // QNET_TESTS_DATASETS_DATASET_FILES_H_
