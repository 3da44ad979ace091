// Format "idx": MNIST-style IDX files of unsigned bytes, gzip-compressed or raw, in one folder:
// train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz] and the same with t10k- for the
// test split. Images are [count, rows, cols] grey, labels [count] in 0..9.
#include <array>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "datasets/dataset_format.h"
#include "datasets/gz_reader.h"

namespace qnet::datasets {
namespace {

constexpr int64_t kNumClasses = 10;  // MNIST and Fashion-MNIST
// The magic's last byte is the number of dimensions; 0x08 before it means unsigned bytes.
constexpr uint32_t kImagesMagic = 0x00000803;
constexpr uint32_t kLabelsMagic = 0x00000801;

uint32_t BigEndian32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

std::string Hex32(uint32_t v) {
  std::array<char, 16> buf{};
  std::snprintf(buf.data(), buf.size(), "0x%08x", v);
  return buf.data();
}

// Reads and checks an IDX header, leaving `reader` at the data; returns the declared dimensions.
// An uncompressed file's size is known up front, so it is checked against the header here.
absl::StatusOr<std::vector<int64_t>> ReadIdxHeader(GzReader& reader, uint32_t expected_magic) {
  const std::string& path = reader.path();
  std::vector<uint8_t> header;
  if (absl::Status s = reader.ReadExactly(4, header, "the IDX magic number"); !s.ok()) return s;
  const uint32_t magic = BigEndian32(header.data());
  if (magic != expected_magic) {
    const char* wanted = expected_magic == kImagesMagic ? "images" : "labels";
    std::string seen = "not an IDX file of unsigned bytes";
    if (magic == kImagesMagic) seen = "an IDX image file";
    if (magic == kLabelsMagic) seen = "an IDX label file";
    return MalformedFile(path,
                         absl::StrCat("bad magic number ", Hex32(magic), " (", seen, "), expected ",
                                      Hex32(expected_magic), " for ", wanted));
  }
  const int ndims = static_cast<int>(magic & 0xff);
  header.clear();
  if (absl::Status s = reader.ReadExactly(4 * static_cast<uint64_t>(ndims), header, "the IDX dims");
      !s.ok()) {
    return s;
  }
  std::vector<int64_t> dims;
  uint64_t total = 1;
  for (int i = 0; i < ndims; ++i) {
    const uint32_t d = BigEndian32(header.data() + 4 * i);
    if (d == 0) return MalformedFile(path, absl::StrCat("dimension ", i, " is 0"));
    // Checked at every step so the product cannot overflow.
    total *= d;
    if (total > kMaxFileBytes) {
      return MalformedFile(path, absl::StrCat("header claims more than ", kMaxFileBytes,
                                              " bytes of data (dimension ", i, " is ", d, ")"));
    }
    dims.push_back(d);
  }
  const uint64_t header_bytes = 4 + 4 * static_cast<uint64_t>(ndims);
  const auto file_size = static_cast<uint64_t>(reader.file_size());
  if (reader.raw() && file_size != header_bytes + total) {
    return MalformedFile(
        path, absl::StrCat(file_size < header_bytes + total ? "truncated: " : "size mismatch: ",
                           "header declares ", total, " data bytes but the file has ",
                           reader.file_size() - static_cast<int64_t>(header_bytes)));
  }
  return dims;
}

struct IdxArray {
  std::vector<int64_t> dims;
  std::vector<uint8_t> data;
};

absl::StatusOr<IdxArray> ReadIdx(const std::string& path, uint32_t expected_magic) {
  absl::StatusOr<GzReader> reader = GzReader::Open(path);
  if (!reader.ok()) return reader.status();
  absl::StatusOr<std::vector<int64_t>> dims = ReadIdxHeader(*reader, expected_magic);
  if (!dims.ok()) return dims.status();
  uint64_t total = 1;
  for (int64_t d : *dims) total *= static_cast<uint64_t>(d);
  IdxArray out{*std::move(dims), {}};
  if (absl::Status s = reader->ReadExactly(total, out.data, "the data the header declares");
      !s.ok()) {
    return s;
  }
  if (absl::Status s = reader->ExpectEnd(); !s.ok()) return s;
  return out;
}

// The two files of one split ("train" or "t10k"), each as `dir/name.gz` or `dir/name`.
struct SplitFiles {
  std::string images, labels;
};

absl::StatusOr<std::string> FindIdx(const std::string& dir, const std::string& name) {
  for (const std::string& candidate : {absl::StrCat(dir, "/", name, ".gz"), dir + "/" + name}) {
    if (FileSize(candidate) >= 0) return candidate;
  }
  return absl::NotFoundError(absl::StrCat(dir, "/", name, "[.gz]: file not found"));
}

absl::StatusOr<SplitFiles> FindSplit(const std::string& dir, const std::string& prefix) {
  absl::StatusOr<std::string> images = FindIdx(dir, prefix + "-images-idx3-ubyte");
  if (!images.ok()) return images.status();
  absl::StatusOr<std::string> labels = FindIdx(dir, prefix + "-labels-idx1-ubyte");
  if (!labels.ok()) return labels.status();
  return SplitFiles{*std::move(images), *std::move(labels)};
}

absl::Status CheckCounts(const SplitFiles& files, int64_t images, int64_t labels) {
  if (images == labels) return absl::OkStatus();
  return MalformedFile(files.labels, absl::StrCat("count mismatch: ", labels, " labels for ",
                                                  images, " images in ", files.images));
}

// Images [count, rows, cols] as 1 x rows x cols.
ImageShape GreyShape(const std::vector<int64_t>& image_dims) {
  return {1, image_dims[1], image_dims[2]};
}

absl::StatusOr<RawSplit> ReadSplit(const std::string& dir, const std::string& prefix) {
  absl::StatusOr<SplitFiles> files = FindSplit(dir, prefix);
  if (!files.ok()) return files.status();
  absl::StatusOr<IdxArray> images = ReadIdx(files->images, kImagesMagic);
  if (!images.ok()) return images.status();
  absl::StatusOr<IdxArray> labels = ReadIdx(files->labels, kLabelsMagic);
  if (!labels.ok()) return labels.status();
  if (absl::Status s = CheckCounts(*files, images->dims[0], labels->dims[0]); !s.ok()) return s;
  RawSplit split{GreyShape(images->dims), std::move(images->data),
                 std::vector<int64_t>(labels->data.begin(), labels->data.end())};
  if (absl::Status s = CheckLabels(files->labels, split.labels, kNumClasses); !s.ok()) return s;
  return split;
}

// Count and shape of one split from its two headers.
struct SplitHeader {
  int64_t count;
  ImageShape shape;
};

absl::StatusOr<std::vector<int64_t>> ReadDims(const std::string& path, uint32_t magic) {
  absl::StatusOr<GzReader> reader = GzReader::Open(path);
  if (!reader.ok()) return reader.status();
  return ReadIdxHeader(*reader, magic);
}

std::string BaseName(const std::string& path) { return path.substr(path.rfind('/') + 1); }

// Reads the headers of one split ("train" or "t10k"); appends its file names to `files`.
absl::StatusOr<SplitHeader> InspectSplit(const std::string& dir, const std::string& prefix,
                                         std::vector<std::string>& files) {
  absl::StatusOr<SplitFiles> paths = FindSplit(dir, prefix);
  if (!paths.ok()) return paths.status();
  absl::StatusOr<std::vector<int64_t>> images = ReadDims(paths->images, kImagesMagic);
  if (!images.ok()) return images.status();
  absl::StatusOr<std::vector<int64_t>> labels = ReadDims(paths->labels, kLabelsMagic);
  if (!labels.ok()) return labels.status();
  if (absl::Status s = CheckCounts(*paths, (*images)[0], (*labels)[0]); !s.ok()) return s;
  files.push_back(BaseName(paths->images));
  files.push_back(BaseName(paths->labels));
  return SplitHeader{(*images)[0], GreyShape(*images)};
}

class IdxFormat final : public DatasetFormat {
 public:
  absl::string_view name() const override { return "idx"; }
  absl::string_view description() const override {
    return "IDX files (MNIST, Fashion-MNIST): train-/t10k-{images-idx3,labels-idx1}-ubyte[.gz]";
  }
  bool augments() const override { return false; }

  bool Detect(const std::string& dir) const override {
    return FindIdx(dir, "train-images-idx3-ubyte").ok();
  }

  absl::StatusOr<DatasetSummary> Inspect(const std::string& dir) const override {
    DatasetSummary summary;
    summary.num_classes = kNumClasses;
    summary.class_names = NumberedClassNames(kNumClasses);
    absl::StatusOr<SplitHeader> train = InspectSplit(dir, "train", summary.files);
    if (!train.ok()) return train.status();
    absl::StatusOr<SplitHeader> test = InspectSplit(dir, "t10k", summary.files);
    if (!test.ok()) return test.status();
    if (absl::Status s = CheckSplitShapesAgree(dir, train->shape, test->shape); !s.ok()) return s;
    summary.shape = train->shape;
    summary.train_images = train->count;
    summary.test_images = test->count;
    return summary;
  }

  DatasetSummary Typical() const override {
    DatasetSummary typical;
    typical.shape = {1, 28, 28};
    typical.num_classes = kNumClasses;
    typical.class_names = NumberedClassNames(kNumClasses);
    return typical;
  }

 private:
  absl::StatusOr<RawDataset> ReadFiles(const std::string& dir) const override {
    absl::StatusOr<RawSplit> train = ReadSplit(dir, "train");
    if (!train.ok()) return train.status();
    absl::StatusOr<RawSplit> test = ReadSplit(dir, "t10k");
    if (!test.ok()) return test.status();
    return RawDataset{*std::move(train), *std::move(test), kNumClasses};
  }
};

QNET_REGISTER_DATASET_FORMAT(IdxFormat);

}  // namespace
}  // namespace qnet::datasets
