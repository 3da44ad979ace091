// Format "cifar10": the CIFAR-10 binary version, data_batch_1.bin .. data_batch_5.bin (train) and
// test_batch.bin (test), in the folder or in its cifar-10-batches-bin/ subfolder (as the archive
// unpacks). Each file is a run of records: 1 label byte, then 3x32x32 channel-major pixels.
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "datasets/dataset_format.h"
#include "datasets/gz_reader.h"

namespace qnet::datasets {
namespace {

constexpr int64_t kNumClasses = 10;
constexpr ImageShape kShape = {3, 32, 32};
constexpr int64_t kRecordBytes = 1 + 3 * 32 * 32;
constexpr char kSubfolder[] = "cifar-10-batches-bin";

std::vector<std::string> SplitFiles(bool train) {
  if (!train) return {"test_batch.bin"};
  std::vector<std::string> names;
  for (int i = 1; i <= 5; ++i) names.push_back(absl::StrCat("data_batch_", i, ".bin"));
  return names;
}

// Where the batch files are, relative to `dir`: "" or the subfolder and a '/'. The folder's own
// files take precedence.
std::string BatchPrefix(const std::string& dir) {
  const std::string sub = absl::StrCat(kSubfolder, "/");
  if (FileSize(dir + "/data_batch_1.bin") < 0 &&
      FileSize(dir + "/" + sub + "data_batch_1.bin") >= 0) {
    return sub;
  }
  return "";
}

// Records in a file of `bytes` bytes, or why that size cannot hold whole records.
absl::StatusOr<int64_t> RecordCount(const std::string& path, int64_t bytes) {
  if (bytes == 0) return MalformedFile(path, "empty file");
  if (bytes % kRecordBytes != 0) {
    return MalformedFile(
        path, absl::StrCat("truncated: ", bytes, " bytes is not a whole number of ", kRecordBytes,
                           "-byte records"));
  }
  return bytes / kRecordBytes;
}

// Appends one batch file's records to `split`.
absl::Status ReadBatch(const std::string& path, RawSplit& split) {
  absl::StatusOr<GzReader> reader = GzReader::Open(path);
  if (!reader.ok()) return reader.status();
  if (static_cast<uint64_t>(reader->file_size()) > kMaxFileBytes) {
    return MalformedFile(path, absl::StrCat("file of ", reader->file_size(), " bytes exceeds the ",
                                            kMaxFileBytes, "-byte limit"));
  }
  std::vector<uint8_t> bytes;
  if (absl::Status s = reader->ReadAll(kMaxFileBytes, bytes); !s.ok()) return s;
  absl::StatusOr<int64_t> n = RecordCount(path, static_cast<int64_t>(bytes.size()));
  if (!n.ok()) return n.status();
  std::vector<int64_t> labels;
  labels.reserve(*n);
  split.pixels.reserve(split.pixels.size() + *n * kShape.pixels());
  for (auto record = bytes.begin(); record != bytes.end(); record += kRecordBytes) {
    labels.push_back(*record);
    split.pixels.insert(split.pixels.end(), record + 1, record + kRecordBytes);
  }
  if (absl::Status s = CheckLabels(path, labels, kNumClasses); !s.ok()) return s;
  split.labels.insert(split.labels.end(), labels.begin(), labels.end());
  return absl::OkStatus();
}

absl::StatusOr<RawSplit> ReadSplit(const std::string& dir, bool train) {
  RawSplit split;
  split.shape = kShape;
  const std::string prefix = BatchPrefix(dir);
  for (const std::string& name : SplitFiles(train)) {
    if (absl::Status s = ReadBatch(absl::StrCat(dir, "/", prefix, name), split); !s.ok()) return s;
  }
  return split;
}

class Cifar10Format final : public DatasetFormat {
 public:
  absl::string_view name() const override { return "cifar10"; }
  absl::string_view description() const override {
    return "CIFAR-10 binary batches: data_batch_1..5.bin, test_batch.bin "
           "(or under cifar-10-batches-bin/)";
  }
  bool augments() const override { return true; }

  bool Detect(const std::string& dir) const override {
    return FileSize(absl::StrCat(dir, "/", BatchPrefix(dir), "data_batch_1.bin")) >= 0;
  }

  // Counts come from file sizes, which only uncompressed files tell.
  absl::StatusOr<DatasetSummary> Inspect(const std::string& dir) const override {
    DatasetSummary summary = Typical();
    const std::string prefix = BatchPrefix(dir);
    for (bool train : {true, false}) {
      int64_t count = 0;
      for (const std::string& name : SplitFiles(train)) {
        summary.files.push_back(prefix + name);
        absl::StatusOr<GzReader> reader = GzReader::Open(absl::StrCat(dir, "/", prefix, name));
        if (!reader.ok()) return reader.status();
        if (reader->file_size() == 0) return MalformedFile(reader->path(), "empty file");
        std::vector<uint8_t> first_byte;  // zlib tells raw from gzip after a first read
        if (absl::Status s = reader->ReadExactly(1, first_byte, "the first record"); !s.ok()) {
          return s;
        }
        if (!reader->raw()) {
          count = -1;
          continue;
        }
        absl::StatusOr<int64_t> n = RecordCount(reader->path(), reader->file_size());
        if (!n.ok()) return n.status();
        if (count >= 0) count += *n;
      }
      (train ? summary.train_images : summary.test_images) = count;
    }
    return summary;
  }

  DatasetSummary Typical() const override {
    DatasetSummary typical;
    typical.shape = kShape;
    typical.num_classes = kNumClasses;
    typical.class_names = NumberedClassNames(kNumClasses);
    return typical;
  }

 private:
  absl::StatusOr<RawDataset> ReadFiles(const std::string& dir) const override {
    absl::StatusOr<RawSplit> train = ReadSplit(dir, /*train=*/true);
    if (!train.ok()) return train.status();
    absl::StatusOr<RawSplit> test = ReadSplit(dir, /*train=*/false);
    if (!test.ok()) return test.status();
    return RawDataset{*std::move(train), *std::move(test), kNumClasses};
  }
};

QNET_REGISTER_DATASET_FORMAT(Cifar10Format);

}  // namespace
}  // namespace qnet::datasets
