// Dataset formats: how a folder of image-classification data is recognised, summarised and read,
// without LibTorch, so that qnetd (which registers datasets and ships their files to workers) and
// the engine (which trains on them) share one definition of each format. Each format lives in
// one .cc file of this folder and registers itself with one line; nothing else names it:
//
//   // datasets/idx_format.cc
//   class IdxFormat final : public DatasetFormat { ... };
//   QNET_REGISTER_DATASET_FORMAT(IdxFormat);
//
// Users find a format by name, or by looking at a folder:
//
//   const qnet::datasets::DatasetFormat* format = qnet::datasets::FindDatasetFormat("cifar10");
//   if (format == nullptr) return UnknownFormat(qnet::datasets::DatasetFormatNameList());
//   absl::StatusOr<qnet::datasets::DatasetSummary> summary = format->Inspect(dir);  // headers
//   absl::StatusOr<qnet::datasets::RawDataset> data = format->Read(dir);  // every pixel
//   absl::StatusOr<qnet::datasets::DatasetReader> reader = format->Open(dir);  // on demand
//   absl::StatusOr<qnet::datasets::Image> image = reader->train->Decode(0);
//
// `dir` may be a folder or, for formats stored in one file (archive, npz), that file itself.
//
// Errors name the file and the problem: NOT_FOUND for a missing file, INVALID_ARGUMENT for a
// malformed one (bad magic, truncated, count mismatch, label out of range). Nothing throws.
#ifndef QNET_DATASETS_DATASET_FORMAT_H_
#define QNET_DATASETS_DATASET_FORMAT_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace qnet::datasets {

// Channels x height x width of every image of a dataset.
struct ImageShape {
  int64_t channels = 0, height = 0, width = 0;

  int64_t pixels() const { return channels * height * width; }
  bool operator==(const ImageShape&) const = default;
};

// What a cheap look at a folder tells (headers and file sizes, not the pixels).
struct DatasetSummary {
  // The images' shape; for formats whose images differ in size, the most common one.
  ImageShape shape;
  int64_t num_classes = 0;
  // Class names indexed by label: sorted folder names, or "0".."K-1" for formats without names.
  std::vector<std::string> class_names;
  // Images per split; -1 where only reading the data would tell (a compressed fixed-record file).
  // test_images is 0 for a dataset without a test split (the trainer then holds out a part).
  int64_t train_images = -1, test_images = -1;
  // The files Read needs, relative to the folder (e.g. "cifar-10-batches-bin/test_batch.bin");
  // for a single-file format (archive, npz), that file's own name.
  std::vector<std::string> files;
};

// One split as stored: size() images of `shape`, uint8 pixels in NCHW order (channel-major, as
// CIFAR-10 stores them), and one label per image in [0, num_classes).
struct RawSplit {
  ImageShape shape;
  std::vector<uint8_t> pixels;  // size() * shape.pixels() bytes
  std::vector<int64_t> labels;

  int64_t size() const { return static_cast<int64_t>(labels.size()); }
};

struct RawDataset {
  RawSplit train;
  RawSplit test;  // the dataset's own held-out split
  int64_t num_classes = 0;

  const ImageShape& shape() const { return train.shape; }  // Read checks both splits agree
};

// One decoded image: uint8 pixels in CHW order (channels 1 or 3; RGBA and grey+alpha lose alpha),
// any size.
struct Image {
  ImageShape shape;
  std::vector<uint8_t> pixels;  // shape.pixels() bytes
};

// The images of one split, decoded on demand. Thread-safe: a pool of decode threads calls Decode
// concurrently. Errors name the file (entry) and the problem.
class SplitReader {
 public:
  virtual ~SplitReader() = default;
  virtual int64_t size() const = 0;
  virtual int64_t label(int64_t i) const = 0;       // in [0, num_classes)
  virtual std::string source(int64_t i) const = 0;  // "train/cat/001.png" (for messages)
  virtual absl::StatusOr<Image> Decode(int64_t i) const = 0;
  // The stored size of image i without decoding pixels when cheap (headers); may decode.
  virtual absl::StatusOr<ImageShape> Shape(int64_t i) const = 0;
};

struct DatasetReader {
  std::unique_ptr<SplitReader> train;
  std::unique_ptr<SplitReader> test;     // nullptr when the dataset has no test split (holdout)
  std::vector<std::string> class_names;  // sorted folder names; "0".."9" for formats without
  int64_t num_classes = 0;
  // Every image has the same shape (idx, cifar10, npz; an image folder whose files all declare
  // one size): the reader may be bulk-loaded.
  bool fixed_shape = false;
};

class DatasetFormat {
 public:
  virtual ~DatasetFormat() = default;

  // The name users give (--dataset NAME=FORMAT:DIR, --dataset-format), e.g. "idx".
  virtual absl::string_view name() const = 0;
  // One line for help texts: what the folder holds, e.g. "CIFAR-10 binary batches: ...".
  virtual absl::string_view description() const = 0;
  // Whether training augments with random crops and flips: right for natural photographs
  // (CIFAR-10), wrong for centred glyphs (MNIST), whose classes a flip can change.
  virtual bool augments() const = 0;

  // Whether `dir` looks like this format: its first file is there, or, for a single-file format,
  // its magic bytes (reads at most a few bytes; never by file name, uploaded blobs have none).
  virtual bool Detect(const std::string& dir) const = 0;
  // Shape, classes and counts from headers and file sizes; checks that every file Read needs
  // exists and that the headers agree with each other.
  virtual absl::StatusOr<DatasetSummary> Inspect(const std::string& dir) const = 0;
  // What a server reports for a folder that Inspect refuses (registered before its files are
  // complete): the shape and classes datasets of this format usually have; zero shape if none.
  virtual DatasetSummary Typical() const = 0;

  // Every image and label of both splits. Besides the format's own checks, refuses splits of
  // different shapes (INVALID_ARGUMENT) and reports running out of memory (RESOURCE_EXHAUSTED).
  absl::StatusOr<RawDataset> Read(const std::string& dir) const;

  // Opens `dir` for reading image by image. The default (for fixed-shape formats) wraps Read(dir)
  // in memory, with class names "0".."K-1"; image formats override it to decode on demand.
  virtual absl::StatusOr<DatasetReader> Open(const std::string& dir) const;

 private:
  // The format's parser; Read adds the checks every format shares.
  virtual absl::StatusOr<RawDataset> ReadFiles(const std::string& dir) const = 0;
};

// The registered format of that name, or nullptr. Formats register before main() runs and are
// never removed, so the pointer stays valid and lookups need no lock.
const DatasetFormat* FindDatasetFormat(absl::string_view name);
// Registered names, sorted: {"archive", "cifar10", "idx", "imagefolder", "npz"}.
std::vector<std::string> DatasetFormatNames();
// The same joined for messages: "archive, cifar10, idx, imagefolder, npz".
std::string DatasetFormatNameList();
// The one format whose Detect accepts `dir`. NOT_FOUND when none does, INVALID_ARGUMENT when
// several do (the caller must then name the format); both messages list the candidates.
absl::StatusOr<const DatasetFormat*> DetectDatasetFormat(const std::string& dir);

// --- for format implementations ---

// Adds a format; a second format of the same name aborts at startup (two files claim one name).
// Called by QNET_REGISTER_DATASET_FORMAT; returns true so it can initialise a static.
bool RegisterDatasetFormat(std::unique_ptr<DatasetFormat> format);

// INVALID_ARGUMENT "DIR: train images are [1, 28, 28] but test images are [1, 32, 32]" unless the
// splits' shapes agree.
absl::Status CheckSplitShapesAgree(const std::string& dir, const ImageShape& train,
                                   const ImageShape& test);
// The names "0".."K-1" of formats that store no class names.
std::vector<std::string> NumberedClassNames(int64_t num_classes);
// A reader over images held in memory; `split.pixels` holds size() images of `split.shape`.
std::unique_ptr<SplitReader> InMemorySplitReader(RawSplit split, std::string split_name);
// "[3, 32, 32]", for messages.
std::string ShapeText(const ImageShape& shape);
// INVALID_ARGUMENT naming `path` and the first label outside [0, num_classes).
absl::Status CheckLabels(const std::string& path, const std::vector<int64_t>& labels,
                         int64_t num_classes);

}  // namespace qnet::datasets

// Registers `Type` (default-constructible, derived from DatasetFormat) when the program starts.
// Use once at namespace scope in the format's .cc file. The registrar is only reached because
// qnet_datasets is linked whole (datasets/CMakeLists.txt).
#define QNET_REGISTER_DATASET_FORMAT(Type)                                   \
  [[maybe_unused]] static const bool qnet_dataset_format_registered_##Type = \
      ::qnet::datasets::RegisterDatasetFormat(std::make_unique<Type>())

#endif  // QNET_DATASETS_DATASET_FORMAT_H_
