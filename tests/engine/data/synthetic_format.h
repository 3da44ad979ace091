// A dataset format for the input pipeline's tests, registered as "synthetic" in the test binary:
// its reader serves images computed from their index, of varying sizes and channel counts, with
// or without a test split, and can be told to fail on one image, as a corrupt file would.
//
//   SetSyntheticDataset("/syn/a", {.train = 50, .test = 0});  // no test split: held out
//   auto d = qnet::engine::LoadDataset("/syn/a", "synthetic", {});
#ifndef QNET_TESTS_ENGINE_DATA_SYNTHETIC_FORMAT_H_
#define QNET_TESTS_ENGINE_DATA_SYNTHETIC_FORMAT_H_

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "datasets/dataset_format.h"

namespace qnet::testing {

struct SyntheticDataset {
  int64_t train = 40, test = 12, classes = 4;
  // Image i of a split is channels x (height + i % vary) x (width + 2 * (i % vary)).
  int64_t channels = 3, height = 20, width = 24, vary = 1;
  bool grey_odd = false;   // odd-numbered images have one channel
  int64_t bad_train = -1;  // this train image fails to decode
};

inline std::mutex& SyntheticMutex() {
  static std::mutex mu;
  return mu;
}
inline std::map<std::string, SyntheticDataset>& SyntheticDatasets() {
  static std::map<std::string, SyntheticDataset> datasets;
  return datasets;
}
inline void SetSyntheticDataset(const std::string& dir, const SyntheticDataset& d) {
  std::lock_guard<std::mutex> lock(SyntheticMutex());
  SyntheticDatasets()[dir] = d;
}

inline uint8_t SyntheticPixel(int split, int64_t i, int64_t k) {
  return static_cast<uint8_t>((split * 89 + i * 53 + k * 7 + (k / 17) * 5) % 256);
}

class SyntheticSplit final : public datasets::SplitReader {
 public:
  SyntheticSplit(SyntheticDataset d, int split) : d_(d), split_(split) {}
  int64_t size() const override { return split_ == 0 ? d_.train : d_.test; }
  int64_t label(int64_t i) const override { return i % d_.classes; }
  std::string source(int64_t i) const override {
    return absl::StrCat(split_ == 0 ? "train/" : "test/", label(i), "/", i, ".png");
  }
  absl::StatusOr<datasets::ImageShape> Shape(int64_t i) const override {
    const int64_t v = d_.vary > 0 ? i % d_.vary : 0;
    return datasets::ImageShape{d_.grey_odd && i % 2 == 1 ? 1 : d_.channels, d_.height + v,
                                d_.width + 2 * v};
  }
  absl::StatusOr<datasets::Image> Decode(int64_t i) const override {
    if (split_ == 0 && i == d_.bad_train) {
      return absl::InvalidArgumentError(absl::StrCat(source(i), ": truncated PNG data"));
    }
    datasets::Image image{*Shape(i), {}};
    image.pixels.resize(static_cast<size_t>(image.shape.pixels()));
    for (size_t k = 0; k < image.pixels.size(); ++k) {
      image.pixels[k] = SyntheticPixel(split_, i, static_cast<int64_t>(k));
    }
    return image;
  }

 private:
  SyntheticDataset d_;
  int split_;
};

class SyntheticFormat final : public datasets::DatasetFormat {
 public:
  absl::string_view name() const override { return "synthetic"; }
  absl::string_view description() const override { return "test images computed from indices"; }
  bool augments() const override { return true; }
  bool Detect(const std::string&) const override { return false; }
  absl::StatusOr<datasets::DatasetSummary> Inspect(const std::string&) const override {
    return absl::UnimplementedError("synthetic");
  }
  datasets::DatasetSummary Typical() const override { return {}; }
  absl::StatusOr<datasets::DatasetReader> Open(const std::string& dir) const override {
    SyntheticDataset d;
    {
      std::lock_guard<std::mutex> lock(SyntheticMutex());
      auto it = SyntheticDatasets().find(dir);
      if (it == SyntheticDatasets().end()) return absl::NotFoundError(dir);
      d = it->second;
    }
    datasets::DatasetReader reader;
    reader.train = std::make_unique<SyntheticSplit>(d, 0);
    if (d.test > 0) reader.test = std::make_unique<SyntheticSplit>(d, 1);
    for (int64_t c = 0; c < d.classes; ++c) reader.class_names.push_back(absl::StrCat("class", c));
    reader.num_classes = d.classes;
    reader.fixed_shape = d.vary <= 1 && !d.grey_odd;
    return reader;
  }

 private:
  absl::StatusOr<datasets::RawDataset> ReadFiles(const std::string&) const override {
    return absl::UnimplementedError("synthetic");
  }
};

}  // namespace qnet::testing

#endif  // QNET_TESTS_ENGINE_DATA_SYNTHETIC_FORMAT_H_
