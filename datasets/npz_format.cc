// Format "npz": a NumPy .npz (a zip of .npy arrays, as np.savez or np.savez_compressed write it)
// holding x_train and y_train, and optionally x_test and y_test (without them the trainer holds
// out part of train). Given as the file or a folder holding only that file; told by content.
// Images are uint8 in NHW (grey), NHWC or NCHW (C 1 or 3; a last axis of 1 or 3 means NHWC);
// labels any integer dtype, shape (N,) or (N, 1). The classes are 0..K-1 with K = the largest
// train label + 1, so test labels must lie below it. Other arrays in the file are ignored.
#include <algorithm>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "datasets/container_file.h"
#include "datasets/dataset_format.h"
#include "datasets/gz_reader.h"
#include "datasets/image_decoder.h"
#include "datasets/npy_header.h"

namespace qnet::datasets {
namespace {

constexpr const char* kArrayNames[] = {"x_train", "y_train", "x_test", "y_test"};
// A label this large is a mistake (or an attack on the class-name list), not a class.
constexpr int64_t kMaxClasses = 100000;

struct NpyArray {
  std::string path;  // "FILE/x_train.npy", for messages
  NpyHeader header;
  NpyDtype dtype;
  std::vector<uint8_t> data;  // when loaded
};

// Reads the array entry the reader is at: its header, and its data when `load`. The data's length
// must be what the header declares; `images` arrays must be uint8, the others of an integer type.
absl::StatusOr<NpyArray> ReadArray(ContainerReader& reader, const ContainerEntry& entry,
                                   bool images, bool load) {
  NpyArray array;
  array.path = absl::StrCat(reader.name(), "/", entry.path);
  std::vector<uint8_t> bytes;
  if (absl::Status s = reader.ReadData(bytes, 12 + kMaxNpyHeaderBytes); !s.ok()) return s;
  absl::StatusOr<NpyHeader> header = ParseNpyHeader(array.path, bytes);
  if (!header.ok()) return header.status();
  absl::StatusOr<NpyDtype> dtype = ParseNpyDtype(array.path, header->descr);
  if (images && (!dtype.ok() || !dtype->is_uint8())) {
    return MalformedFile(array.path,
                         absl::StrCat("images must be uint8, not '", header->descr, "'"));
  }
  if (!dtype.ok()) return dtype.status();
  absl::StatusOr<uint64_t> data_bytes =
      NpyDataBytes(array.path, header->shape, dtype->bytes, kMaxFileBytes);
  if (!data_bytes.ok()) return data_bytes.status();
  int64_t stored = entry.size - static_cast<int64_t>(header->data_offset);
  if (load || entry.size < 0) {
    if (absl::Status s = reader.ReadData(bytes, header->data_offset + *data_bytes + 1); !s.ok()) {
      return s;
    }
    stored = static_cast<int64_t>(bytes.size()) - static_cast<int64_t>(header->data_offset);
  }
  if (stored != static_cast<int64_t>(*data_bytes)) {
    return MalformedFile(
        array.path,
        absl::StrCat(stored < static_cast<int64_t>(*data_bytes) ? "truncated: " : "size mismatch: ",
                     "the header declares ", *data_bytes, " bytes of data but the array holds ",
                     stored));
  }
  if (load) array.data.assign(bytes.begin() + header->data_offset, bytes.end());
  array.header = *std::move(header);
  array.dtype = *dtype;
  return array;
}

// The four arrays by name (x_* loaded only when `load_images`; labels always, they are small).
absl::StatusOr<std::map<std::string, NpyArray>> ReadNpz(const std::string& file, bool load_images) {
  const ContainerKind kind = SniffContainerFile(file);
  if (kind != ContainerKind::kNpz && kind != ContainerKind::kZip) {
    return MalformedFile(file, "not an .npz file (no zip signature)");
  }
  absl::StatusOr<ContainerReader> reader = ContainerReader::OpenFile(file, kMaxFileBytes);
  if (!reader.ok()) return reader.status();
  std::map<std::string, NpyArray> arrays;
  std::vector<std::string> seen;
  while (true) {
    absl::StatusOr<std::optional<ContainerEntry>> entry = reader->Next();
    if (!entry.ok()) return entry.status();
    if (!entry->has_value()) break;
    const std::string& path = (*entry)->path;
    seen.push_back(path);
    const std::string key = path.ends_with(".npy") ? path.substr(0, path.size() - 4) : "";
    if (std::find(std::begin(kArrayNames), std::end(kArrayNames), key) == std::end(kArrayNames)) {
      continue;
    }
    const bool images = key[0] == 'x';
    absl::StatusOr<NpyArray> array = ReadArray(*reader, **entry, images, load_images || !images);
    if (!array.ok()) return array.status();
    arrays[key] = *std::move(array);
  }
  if (!arrays.contains("x_train") || !arrays.contains("y_train")) {
    if (seen.size() > 8) seen.resize(8);
    return MalformedFile(file,
                         absl::StrCat("not an npz dataset: it needs x_train.npy and "
                                      "y_train.npy (found: ",
                                      seen.empty() ? "nothing" : absl::StrJoin(seen, ", "), ")"));
  }
  if (arrays.contains("x_test") != arrays.contains("y_test")) {
    return MalformedFile(file, "has one of x_test.npy and y_test.npy but not the other");
  }
  return arrays;
}

// How an images array is laid out.
struct ImagesLayout {
  int64_t count = 0;
  ImageShape shape;
  bool channels_last = false;
};

absl::StatusOr<ImagesLayout> LayoutOf(const NpyArray& x) {
  const std::vector<int64_t>& s = x.header.shape;
  ImagesLayout layout;
  if (s.size() == 3) {
    layout = {s[0], {1, s[1], s[2]}, false};
  } else if (s.size() == 4 && (s[3] == 1 || s[3] == 3)) {
    layout = {s[0], {s[3], s[1], s[2]}, true};
  } else if (s.size() == 4 && (s[1] == 1 || s[1] == 3)) {
    layout = {s[0], {s[1], s[2], s[3]}, false};
  } else {
    return MalformedFile(x.path, absl::StrCat("shape (", absl::StrJoin(s, ", "),
                                              ") is not NHW, NHWC or NCHW with 1 or 3 channels"));
  }
  if (absl::Status st = CheckImageSize(x.path, layout.shape.height, layout.shape.width); !st.ok()) {
    return st;
  }
  return layout;
}

absl::StatusOr<std::vector<int64_t>> LabelsOf(const NpyArray& y, const NpyArray& x, int64_t count) {
  const std::vector<int64_t>& s = y.header.shape;
  if (s.empty() || s.size() > 2 || (s.size() == 2 && s[1] != 1)) {
    return MalformedFile(y.path, absl::StrCat("labels must have shape (N,) or (N, 1), not (",
                                              absl::StrJoin(s, ", "), ")"));
  }
  if (s[0] != count) {
    return MalformedFile(y.path, absl::StrCat("count mismatch: ", s[0], " labels for ", count,
                                              " images in ", x.path));
  }
  std::vector<int64_t> labels(count);
  const int n = y.dtype.bytes;
  for (int64_t i = 0; i < count; ++i) {
    uint64_t v = 0;
    for (int k = 0; k < n; ++k) {
      const uint8_t byte = y.data[i * n + (y.dtype.big_endian ? k : n - 1 - k)];
      v = (v << 8) | byte;
    }
    // Sign-extend a signed value narrower than 64 bits.
    if (y.dtype.is_signed && n < 8 && (v >> (8 * n - 1)) != 0) v |= ~uint64_t{0} << (8 * n);
    labels[i] = static_cast<int64_t>(v);
  }
  return labels;
}

// One split's layout and labels, checked against each other.
struct SplitArrays {
  ImagesLayout layout;
  std::vector<int64_t> labels;
};

absl::StatusOr<SplitArrays> CheckSplit(const std::map<std::string, NpyArray>& arrays,
                                       const std::string& split) {
  const NpyArray& x = arrays.at("x_" + split);
  absl::StatusOr<ImagesLayout> layout = LayoutOf(x);
  if (!layout.ok()) return layout.status();
  absl::StatusOr<std::vector<int64_t>> labels = LabelsOf(arrays.at("y_" + split), x, layout->count);
  if (!labels.ok()) return labels.status();
  return SplitArrays{*layout, *std::move(labels)};
}

// Both splits checked: shapes agree, labels in 0..K-1 with K from the train labels.
struct NpzContents {
  SplitArrays train;
  std::optional<SplitArrays> test;
  int64_t num_classes = 0;
};

absl::StatusOr<NpzContents> CheckNpz(const std::string& file,
                                     const std::map<std::string, NpyArray>& arrays) {
  NpzContents contents;
  absl::StatusOr<SplitArrays> train = CheckSplit(arrays, "train");
  if (!train.ok()) return train.status();
  contents.train = *std::move(train);
  if (arrays.contains("x_test")) {
    absl::StatusOr<SplitArrays> test = CheckSplit(arrays, "test");
    if (!test.ok()) return test.status();
    if (absl::Status s =
            CheckSplitShapesAgree(file, contents.train.layout.shape, test->layout.shape);
        !s.ok()) {
      return s;
    }
    contents.test = *std::move(test);
  }
  const std::vector<int64_t>& y = contents.train.labels;
  const std::string& y_train = arrays.at("y_train").path;
  if (y.empty()) return MalformedFile(y_train, "no training images");
  const int64_t largest = *std::max_element(y.begin(), y.end());
  if (largest >= kMaxClasses) {
    return MalformedFile(
        y_train, absl::StrCat("label ", largest, " implies more than ", kMaxClasses, " classes"));
  }
  contents.num_classes = largest + 1;
  if (absl::Status s = CheckLabels(y_train, y, contents.num_classes); !s.ok()) return s;
  if (contents.test) {
    if (absl::Status s =
            CheckLabels(arrays.at("y_test").path, contents.test->labels, contents.num_classes);
        !s.ok()) {
      return s;
    }
  }
  return contents;
}

// NCHW pixels of a loaded images array.
std::vector<uint8_t> ChannelsFirst(NpyArray& x, const ImagesLayout& layout) {
  if (!layout.channels_last || layout.shape.channels == 1) return std::move(x.data);
  const int64_t c = layout.shape.channels, plane = layout.shape.height * layout.shape.width;
  std::vector<uint8_t> out(x.data.size());
  for (int64_t n = 0; n < layout.count; ++n) {
    const uint8_t* in = x.data.data() + n * c * plane;
    uint8_t* image = out.data() + n * c * plane;
    for (int64_t p = 0; p < plane; ++p) {
      for (int64_t k = 0; k < c; ++k) image[k * plane + p] = in[p * c + k];
    }
  }
  return out;
}

std::string BaseName(const std::string& path) { return path.substr(path.rfind('/') + 1); }

class NpzFormat final : public DatasetFormat {
 public:
  absl::string_view name() const override { return "npz"; }
  absl::string_view description() const override {
    return "a NumPy .npz: x_train, y_train, optional x_test, y_test; uint8 NHW, NHWC or NCHW";
  }
  // Arrays say nothing of what they picture; flips would change glyphs. Jobs can turn
  // augmentation on (--horizontal-flip, --random-resized-crop).
  bool augments() const override { return false; }

  bool Detect(const std::string& path) const override {
    absl::StatusOr<std::string> file = SingleFile(path);
    return file.ok() && SniffContainerFile(*file) == ContainerKind::kNpz;
  }

  absl::StatusOr<DatasetSummary> Inspect(const std::string& path) const override {
    absl::StatusOr<std::string> file = SingleFile(path);
    if (!file.ok()) return file.status();
    absl::StatusOr<std::map<std::string, NpyArray>> arrays = ReadNpz(*file, /*load_images=*/false);
    if (!arrays.ok()) return arrays.status();
    absl::StatusOr<NpzContents> contents = CheckNpz(*file, *arrays);
    if (!contents.ok()) return contents.status();
    DatasetSummary summary;
    summary.shape = contents->train.layout.shape;
    summary.num_classes = contents->num_classes;
    summary.class_names = NumberedClassNames(contents->num_classes);
    summary.train_images = contents->train.layout.count;
    summary.test_images = contents->test ? contents->test->layout.count : 0;
    summary.files = {BaseName(*file)};
    return summary;
  }

  DatasetSummary Typical() const override { return {}; }

 private:
  absl::StatusOr<RawDataset> ReadFiles(const std::string& path) const override {
    absl::StatusOr<std::string> file = SingleFile(path);
    if (!file.ok()) return file.status();
    absl::StatusOr<std::map<std::string, NpyArray>> arrays = ReadNpz(*file, /*load_images=*/true);
    if (!arrays.ok()) return arrays.status();
    absl::StatusOr<NpzContents> contents = CheckNpz(*file, *arrays);
    if (!contents.ok()) return contents.status();
    RawDataset data;
    data.num_classes = contents->num_classes;
    data.train = {contents->train.layout.shape,
                  ChannelsFirst(arrays->at("x_train"), contents->train.layout),
                  std::move(contents->train.labels)};
    data.test.shape = data.train.shape;
    if (contents->test) {
      data.test.pixels = ChannelsFirst(arrays->at("x_test"), contents->test->layout);
      data.test.labels = std::move(contents->test->labels);
    }
    return data;
  }
};

QNET_REGISTER_DATASET_FORMAT(NpzFormat);

}  // namespace
}  // namespace qnet::datasets
