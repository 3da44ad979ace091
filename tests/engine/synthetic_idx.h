// Tiny synthetic IDX datasets for engine tests: 28x28 grey images whose class (0..9) is a bright
// 6x6 block at one of ten positions, plus noise: separable, so a few steps of training learn it.
//
//   std::string dir = WriteSyntheticIdx(ProcessTempDir("idx"), 256, 128);  // qnet::testing
//   auto data = qnet::engine::LoadDataset(dir, "idx", {});
#ifndef QNET_TESTS_ENGINE_SYNTHETIC_IDX_H_
#define QNET_TESTS_ENGINE_SYNTHETIC_IDX_H_

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <unistd.h>

namespace qnet::testing {

// A folder under the test temp dir that no other process uses: ctest runs every test case in its
// own process, several at once, so a fixed name would be shared (and deleted) under a running test.
inline std::string ProcessTempDir(const std::string& name) {
  return ::testing::TempDir() + "/" + name + "-" + std::to_string(getpid());
}

inline void WriteBigEndian32(std::ofstream& out, uint32_t v) {
  const char b[4] = {static_cast<char>(v >> 24), static_cast<char>(v >> 16),
                     static_cast<char>(v >> 8), static_cast<char>(v)};
  out.write(b, 4);
}

inline void WriteIdxSplit(const std::string& images_path, const std::string& labels_path, int count,
                          uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> noise(0, 60);
  std::ofstream images(images_path, std::ios::binary);
  std::ofstream labels(labels_path, std::ios::binary);
  WriteBigEndian32(images, 0x00000803);
  WriteBigEndian32(images, static_cast<uint32_t>(count));
  WriteBigEndian32(images, 28);
  WriteBigEndian32(images, 28);
  WriteBigEndian32(labels, 0x00000801);
  WriteBigEndian32(labels, static_cast<uint32_t>(count));
  std::vector<char> pixels(28 * 28);
  for (int i = 0; i < count; ++i) {
    const int label = i % 10;
    const int row = 3 + (label / 5) * 14, col = 2 + (label % 5) * 5;
    for (int y = 0; y < 28; ++y) {
      for (int x = 0; x < 28; ++x) {
        const bool on = y >= row && y < row + 6 && x >= col && x < col + 5;
        pixels[y * 28 + x] = static_cast<char>(on ? 200 + noise(rng) / 2 : noise(rng));
      }
    }
    images.write(pixels.data(), static_cast<std::streamsize>(pixels.size()));
    labels.put(static_cast<char>(label));
  }
}

// Writes train (train_count) and t10k (test_count) IDX files into `dir`; returns dir.
inline std::string WriteSyntheticIdx(const std::string& dir, int train_count, int test_count) {
  std::filesystem::create_directories(dir);
  WriteIdxSplit(dir + "/train-images-idx3-ubyte", dir + "/train-labels-idx1-ubyte", train_count, 1);
  WriteIdxSplit(dir + "/t10k-images-idx3-ubyte", dir + "/t10k-labels-idx1-ubyte", test_count, 2);
  return dir;
}

}  // namespace qnet::testing

#endif  // QNET_TESTS_ENGINE_SYNTHETIC_IDX_H_
