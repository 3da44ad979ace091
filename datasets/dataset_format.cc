#include "datasets/dataset_format.h"

#include <new>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/registry.h"

namespace qnet::datasets {
namespace {

// The process's formats (common/registry.h: built on first use, never destroyed).
Registry<std::unique_ptr<DatasetFormat>>& Formats() {
  return Registry<std::unique_ptr<DatasetFormat>>::Global();
}

// Images of one shape, held in memory; reading needs no lock because nothing changes them.
class InMemoryReader final : public SplitReader {
 public:
  InMemoryReader(RawSplit split, std::string split_name)
      : split_(std::move(split)), split_name_(std::move(split_name)) {}

  int64_t size() const override { return split_.size(); }
  int64_t label(int64_t i) const override { return split_.labels[i]; }
  std::string source(int64_t i) const override { return absl::StrCat(split_name_, "[", i, "]"); }
  absl::StatusOr<Image> Decode(int64_t i) const override {
    if (i < 0 || i >= size()) {
      return absl::OutOfRangeError(absl::StrCat(split_name_, ": no image ", i, " of ", size()));
    }
    const auto begin = split_.pixels.begin() + i * split_.shape.pixels();
    return Image{split_.shape, std::vector<uint8_t>(begin, begin + split_.shape.pixels())};
  }
  absl::StatusOr<ImageShape> Shape(int64_t i) const override { return split_.shape; }

 private:
  RawSplit split_;
  std::string split_name_;
};

}  // namespace

std::string ShapeText(const ImageShape& s) {
  return absl::StrCat("[", s.channels, ", ", s.height, ", ", s.width, "]");
}

std::vector<std::string> NumberedClassNames(int64_t num_classes) {
  std::vector<std::string> names;
  for (int64_t k = 0; k < num_classes; ++k) names.push_back(absl::StrCat(k));
  return names;
}

std::unique_ptr<SplitReader> InMemorySplitReader(RawSplit split, std::string split_name) {
  return std::make_unique<InMemoryReader>(std::move(split), std::move(split_name));
}

absl::StatusOr<RawDataset> DatasetFormat::Read(const std::string& dir) const {
  absl::StatusOr<RawDataset> data;
  try {
    data = ReadFiles(dir);
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(absl::StrCat(dir, ": out of memory reading the dataset"));
  }
  if (!data.ok()) return data.status();
  if (absl::Status s = CheckSplitShapesAgree(dir, data->train.shape, data->test.shape); !s.ok()) {
    return s;
  }
  // Consumers index pixels by these sizes without further checks: a parser that breaks them is a
  // bug here, not bad input.
  for (const RawSplit* split : {&data->train, &data->test}) {
    if (split->pixels.size() != static_cast<size_t>(split->size() * split->shape.pixels())) {
      return absl::InternalError(
          absl::StrCat(dir, ": format ", name(), " read ", split->pixels.size(),
                       " pixel bytes for ", split->size(), " images of ", ShapeText(split->shape)));
    }
  }
  return data;
}

absl::StatusOr<DatasetReader> DatasetFormat::Open(const std::string& dir) const {
  absl::StatusOr<RawDataset> data = Read(dir);
  if (!data.ok()) return data.status();
  DatasetReader reader;
  reader.num_classes = data->num_classes;
  reader.class_names = NumberedClassNames(data->num_classes);
  reader.fixed_shape = true;
  reader.train = InMemorySplitReader(std::move(data->train), dir + ": train");
  if (data->test.size() > 0)
    reader.test = InMemorySplitReader(std::move(data->test), dir + ": test");
  return reader;
}

const DatasetFormat* FindDatasetFormat(absl::string_view name) {
  const std::unique_ptr<DatasetFormat>* format = Formats().Find(name);
  return format == nullptr ? nullptr : format->get();
}

std::vector<std::string> DatasetFormatNames() { return Formats().Names(); }

std::string DatasetFormatNameList() { return Formats().NameList(); }

absl::StatusOr<const DatasetFormat*> DetectDatasetFormat(const std::string& dir) {
  std::vector<const DatasetFormat*> matches;
  for (const auto& [name, format] : Formats().entries()) {
    if (format->Detect(dir)) matches.push_back(format.get());
  }
  if (matches.size() == 1) return matches.front();
  if (matches.empty()) {
    return absl::NotFoundError(absl::StrCat(dir, " does not look like any known dataset format (",
                                            DatasetFormatNameList(), ")"));
  }
  return absl::InvalidArgumentError(absl::StrCat(
      dir, " looks like several dataset formats (",
      absl::StrJoin(
          matches, ", ",
          [](std::string* out, const DatasetFormat* f) { absl::StrAppend(out, f->name()); }),
      "); name one"));
}

bool RegisterDatasetFormat(std::unique_ptr<DatasetFormat> format) {
  std::string name(format->name());
  return Formats().Add(std::move(name), std::move(format));
}

absl::Status CheckSplitShapesAgree(const std::string& dir, const ImageShape& train,
                                   const ImageShape& test) {
  if (train == test) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(dir, ": train images are ", ShapeText(train),
                                                 " but test images are ", ShapeText(test)));
}

absl::Status CheckLabels(const std::string& path, const std::vector<int64_t>& labels,
                         int64_t num_classes) {
  for (size_t i = 0; i < labels.size(); ++i) {
    if (labels[i] < 0 || labels[i] >= num_classes) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": label ", labels[i], " at index ", i,
                                                     " is out of range for ", num_classes,
                                                     " classes"));
    }
  }
  return absl::OkStatus();
}

}  // namespace qnet::datasets
