#include "server/datasets/dataset_check.h"

#include <algorithm>
#include <atomic>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"

namespace qnet::server {
namespace {

struct Failure {
  int64_t index = -1;  // over both splits, train first; the lowest one is reported
  absl::Status status;
};

// Decodes every image of `reader` on a few threads; the first failing image's error, if any.
absl::Status DecodeEverything(const datasets::DatasetReader& reader) {
  std::vector<const datasets::SplitReader*> splits = {reader.train.get()};
  if (reader.test != nullptr) splits.push_back(reader.test.get());
  int64_t total = 0;
  for (const datasets::SplitReader* split : splits) total += split->size();
  std::atomic<int64_t> next{0};
  std::mutex mu;
  Failure first;
  auto work = [&] {
    for (int64_t i = next++; i < total; i = next++) {
      int64_t local = i;
      const datasets::SplitReader* split = splits[0];
      if (local >= split->size()) {
        local -= split->size();
        split = splits[1];
      }
      absl::StatusOr<datasets::Image> image = split->Decode(local);
      if (image.ok()) continue;
      std::lock_guard<std::mutex> lock(mu);
      if (first.index < 0 || i < first.index) first = {i, image.status()};
      next = total;  // one bad image is enough to refuse the dataset
    }
  };
  const int64_t most = std::max<int64_t>(1, std::min<int64_t>(total, 8));
  const int threads =
      static_cast<int>(std::clamp<int64_t>(std::thread::hardware_concurrency(), 1, most));
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(work);
  work();
  for (std::thread& t : pool) t.join();
  return first.status;
}

absl::Status Refusal(const std::string& path, const absl::Status& status) {
  return absl::InvalidArgumentError(
      absl::StrReplaceAll(status.message(), {{path + "/", ""}, {path, "the upload"}}));
}

// Inspects, opens and decodes `path` as `format`.
absl::StatusOr<qnet::v1::Dataset> CheckAs(const datasets::DatasetFormat& format,
                                          const std::string& path) {
  absl::StatusOr<datasets::DatasetSummary> summary = format.Inspect(path);
  if (!summary.ok()) return Refusal(path, summary.status());
  absl::StatusOr<datasets::DatasetReader> reader = format.Open(path);
  if (!reader.ok()) return Refusal(path, reader.status());
  if (absl::Status s = DecodeEverything(*reader); !s.ok()) return Refusal(path, s);
  qnet::v1::Dataset info;
  SetDatasetSummary(format.name(), *summary, &info);
  return info;
}

}  // namespace

void SetDatasetSummary(absl::string_view format, const datasets::DatasetSummary& summary,
                       qnet::v1::Dataset* info) {
  info->set_format(std::string(format));
  info->set_channels(static_cast<int32_t>(summary.shape.channels));
  info->set_height(static_cast<int32_t>(summary.shape.height));
  info->set_width(static_cast<int32_t>(summary.shape.width));
  info->set_num_classes(static_cast<int32_t>(summary.num_classes));
  info->set_train_images(summary.train_images);
  info->set_test_images(summary.test_images);
  info->clear_class_names();
  for (const std::string& name : summary.class_names) info->add_class_names(name);
}

absl::StatusOr<qnet::v1::Dataset> CheckDatasetFile(const std::string& path) {
  // A .npz is also a zip: every format that claims the content is tried, in name order, and the
  // first that reads it cleanly wins.
  std::vector<std::string> errors;
  for (const std::string& name : datasets::DatasetFormatNames()) {
    const datasets::DatasetFormat* format = datasets::FindDatasetFormat(name);
    if (!format->Detect(path)) continue;
    absl::StatusOr<qnet::v1::Dataset> info = CheckAs(*format, path);
    if (info.ok()) return info;
    errors.push_back(absl::StrCat("as ", name, ": ", info.status().message()));
  }
  if (errors.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "no dataset format recognises the upload (", datasets::DatasetFormatNameList(),
        "): upload an image folder (train/<class>/*, test/<class>/*), a .tar, .tar.gz or .zip "
        "of one, or an .npz with x_train and y_train"));
  }
  if (errors.size() == 1) {
    return absl::InvalidArgumentError(errors[0].substr(errors[0].find(": ") + 2));
  }
  return absl::InvalidArgumentError(absl::StrJoin(errors, "; "));
}

}  // namespace qnet::server
