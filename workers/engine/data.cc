#include "workers/engine/data.h"
#include "workers/engine/torch_error.h"

#include <sys/stat.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <exception>
#include <memory>
#include <new>
#include <utility>

#include <ATen/CPUGeneratorImpl.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/input_normalization.h"

namespace qnet::engine {
namespace {

// Larger claims are refused before anything is allocated: no real image dataset file is this big,
// and a corrupt header must not make the worker allocate gigabytes.
constexpr uint64_t kMaxFileBytes = uint64_t{1} << 31;
constexpr size_t kChunkBytes = size_t{1} << 20;
constexpr int64_t kNumClasses = 10;  // MNIST, Fashion-MNIST and CIFAR-10 alike
constexpr uint32_t kIdxImagesMagic = 0x00000803;
constexpr uint32_t kIdxLabelsMagic = 0x00000801;
constexpr int64_t kCifarSide = 32;
constexpr int64_t kCifarRecord = 1 + 3 * kCifarSide * kCifarSide;

absl::Status Malformed(const std::string& path, absl::string_view problem) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": ", problem));
}

std::string Hex32(uint32_t v) {
  std::array<char, 16> buf{};
  std::snprintf(buf.data(), buf.size(), "0x%08x", v);
  return buf.data();
}

// SplitMix64: turns (seed, stream) pairs into well-spread generator seeds.
uint64_t Mix(uint64_t seed, uint64_t stream) {
  uint64_t z = seed ^ (stream * 0x9e3779b97f4a7c15ULL + 0x632be59bd9b4e019ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

torch::Generator SeededGenerator(uint64_t seed) {
  return at::make_generator<at::CPUGeneratorImpl>(seed);
}

// Size of a regular file, or -1 if it does not exist (or is not a regular file).
int64_t FileSize(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return -1;
  return static_cast<int64_t>(st.st_size);
}

// A file read through zlib, which reads uncompressed files transparently: the same code serves
// train-images-idx3-ubyte.gz and train-images-idx3-ubyte.
class Reader {
 public:
  static absl::StatusOr<Reader> Open(const std::string& path) {
    const int64_t size = FileSize(path);
    if (size < 0) return absl::NotFoundError(absl::StrCat(path, ": file not found"));
    gzFile f = gzopen(path.c_str(), "rb");
    if (f == nullptr) return absl::PermissionDeniedError(absl::StrCat(path, ": cannot open"));
    return Reader(path, size, f);
  }

  // Appends exactly n bytes to `out` (in chunks, so memory follows what the file really holds, not
  // what its header claims); a short read is a truncated or corrupt file.
  absl::Status ReadExactly(uint64_t n, std::vector<uint8_t>& out, absl::string_view what) {
    uint64_t got = 0;
    while (got < n) {
      const size_t want = static_cast<size_t>(std::min<uint64_t>(kChunkBytes, n - got));
      const size_t before = out.size();
      out.resize(before + want);
      const int r = gzread(file_.get(), out.data() + before, static_cast<unsigned>(want));
      if (r < 0) return Malformed(path_, absl::StrCat("corrupt data while reading ", what));
      out.resize(before + static_cast<size_t>(r));
      got += static_cast<uint64_t>(r);
      if (static_cast<size_t>(r) < want) {
        return Malformed(path_, absl::StrCat("truncated: ", what, " needs ", n,
                                             " bytes but the file ends after ", got));
      }
    }
    return absl::OkStatus();
  }

  // Reads everything, refusing more than `limit` bytes.
  absl::Status ReadAll(uint64_t limit, std::vector<uint8_t>& out) {
    while (true) {
      const size_t before = out.size();
      out.resize(before + kChunkBytes);
      const int r = gzread(file_.get(), out.data() + before, static_cast<unsigned>(kChunkBytes));
      if (r < 0) return Malformed(path_, "corrupt data");
      out.resize(before + static_cast<size_t>(r));
      if (out.size() > limit) {
        return Malformed(path_, absl::StrCat("larger than the ", limit, "-byte limit"));
      }
      if (r == 0) return absl::OkStatus();
    }
  }

  // After the declared content: anything left means the header and the file disagree.
  absl::Status ExpectEnd() {
    uint8_t extra = 0;
    const int r = gzread(file_.get(), &extra, 1);
    if (r < 0) return Malformed(path_, "corrupt data after the declared content");
    if (r > 0) return Malformed(path_, "trailing bytes after the size the header declares");
    return absl::OkStatus();
  }

  // True when the file is not gzip-compressed (valid after the first read).
  bool raw() const { return gzdirect(file_.get()) == 1; }
  int64_t file_size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  struct Closer {
    void operator()(gzFile f) const { gzclose(f); }
  };
  Reader(std::string path, int64_t size, gzFile f)
      : path_(std::move(path)), size_(size), file_(f) {}

  std::string path_;
  int64_t size_;
  std::unique_ptr<gzFile_s, Closer> file_;
};

// Images as stored: uint8 [N, C, H, W]; labels int64 [N].
struct RawSplit {
  torch::Tensor images;
  torch::Tensor labels;
};

torch::Tensor BytesToTensor(std::vector<uint8_t>&& bytes, std::vector<int64_t> shape) {
  auto holder = std::make_shared<std::vector<uint8_t>>(std::move(bytes));
  void* data = holder->data();
  return torch::from_blob(
      data, shape, [holder](void*) mutable { holder.reset(); }, torch::kUInt8);
}

// Parses an IDX file of unsigned bytes into a uint8 tensor of the declared dimensions.
absl::StatusOr<torch::Tensor> ReadIdx(const std::string& path, uint32_t expected_magic) {
  absl::StatusOr<Reader> reader = Reader::Open(path);
  if (!reader.ok()) return reader.status();
  std::vector<uint8_t> header;
  if (absl::Status s = reader->ReadExactly(4, header, "the IDX magic number"); !s.ok()) return s;
  const uint32_t magic = (uint32_t{header[0]} << 24) | (uint32_t{header[1]} << 16) |
                         (uint32_t{header[2]} << 8) | uint32_t{header[3]};
  if (magic != expected_magic) {
    const char* wanted = expected_magic == kIdxImagesMagic ? "images" : "labels";
    std::string seen = "not an IDX file of unsigned bytes";
    if (magic == kIdxImagesMagic) seen = "an IDX image file";
    if (magic == kIdxLabelsMagic) seen = "an IDX label file";
    return Malformed(path, absl::StrCat("bad magic number ", Hex32(magic), " (", seen,
                                        "), expected ", Hex32(expected_magic), " for ", wanted));
  }
  const int ndims = static_cast<int>(magic & 0xff);
  header.clear();
  if (absl::Status s =
          reader->ReadExactly(4 * static_cast<uint64_t>(ndims), header, "the IDX dims");
      !s.ok()) {
    return s;
  }
  std::vector<int64_t> dims;
  uint64_t total = 1;
  for (int i = 0; i < ndims; ++i) {
    const uint8_t* p = header.data() + 4 * i;
    const uint32_t d =
        (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
    if (d == 0) return Malformed(path, absl::StrCat("dimension ", i, " is 0"));
    // Checked at every step so the product cannot overflow.
    total *= d;
    if (total > kMaxFileBytes) {
      return Malformed(path, absl::StrCat("header claims more than ", kMaxFileBytes,
                                          " bytes of data (dimension ", i, " is ", d, ")"));
    }
    dims.push_back(d);
  }
  const uint64_t header_bytes = 4 + 4 * static_cast<uint64_t>(ndims);
  // An uncompressed file's size is known up front: check it against the header before reading.
  if (reader->raw() && static_cast<uint64_t>(reader->file_size()) != header_bytes + total) {
    return Malformed(path,
                     absl::StrCat(static_cast<uint64_t>(reader->file_size()) < header_bytes + total
                                      ? "truncated: "
                                      : "size mismatch: ",
                                  "header declares ", total, " data bytes but the file has ",
                                  reader->file_size() - static_cast<int64_t>(header_bytes)));
  }
  std::vector<uint8_t> data;
  if (absl::Status s = reader->ReadExactly(total, data, "the data the header declares"); !s.ok()) {
    return s;
  }
  if (absl::Status s = reader->ExpectEnd(); !s.ok()) return s;
  return BytesToTensor(std::move(data), dims);
}

// Finds `dir/name.gz` or `dir/name`.
absl::StatusOr<std::string> FindIdx(const std::string& dir, const std::string& name) {
  for (const std::string& candidate : {absl::StrCat(dir, "/", name, ".gz"), dir + "/" + name}) {
    if (FileSize(candidate) >= 0) return candidate;
  }
  return absl::NotFoundError(absl::StrCat(dir, "/", name, "[.gz]: file not found"));
}

absl::Status CheckLabels(const std::string& path, const torch::Tensor& labels) {
  const auto* p = labels.data_ptr<int64_t>();
  for (int64_t i = 0; i < labels.numel(); ++i) {
    if (p[i] >= kNumClasses) {
      return Malformed(path, absl::StrCat("label ", p[i], " at index ", i, " is out of range for ",
                                          kNumClasses, " classes"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<RawSplit> LoadIdxSplit(const std::string& dir, const std::string& prefix) {
  absl::StatusOr<std::string> images_path = FindIdx(dir, prefix + "-images-idx3-ubyte");
  if (!images_path.ok()) return images_path.status();
  absl::StatusOr<std::string> labels_path = FindIdx(dir, prefix + "-labels-idx1-ubyte");
  if (!labels_path.ok()) return labels_path.status();
  absl::StatusOr<torch::Tensor> images = ReadIdx(*images_path, kIdxImagesMagic);
  if (!images.ok()) return images.status();
  absl::StatusOr<torch::Tensor> labels = ReadIdx(*labels_path, kIdxLabelsMagic);
  if (!labels.ok()) return labels.status();
  if (images->size(0) != labels->size(0)) {
    return Malformed(*labels_path, absl::StrCat("count mismatch: ", labels->size(0), " labels for ",
                                                images->size(0), " images in ", *images_path));
  }
  RawSplit split{images->unsqueeze(1), labels->to(torch::kLong)};
  if (absl::Status s = CheckLabels(*labels_path, split.labels); !s.ok()) return s;
  return split;
}

// One CIFAR-10 binary batch: records of 1 label byte + 3x32x32 channel-major pixels.
absl::StatusOr<RawSplit> ReadCifarBatch(const std::string& path) {
  absl::StatusOr<Reader> reader = Reader::Open(path);
  if (!reader.ok()) return reader.status();
  if (static_cast<uint64_t>(reader->file_size()) > kMaxFileBytes) {
    return Malformed(path, absl::StrCat("file of ", reader->file_size(), " bytes exceeds the ",
                                        kMaxFileBytes, "-byte limit"));
  }
  std::vector<uint8_t> bytes;
  if (absl::Status s = reader->ReadAll(kMaxFileBytes, bytes); !s.ok()) return s;
  const auto size = static_cast<int64_t>(bytes.size());
  if (size == 0) return Malformed(path, "empty file");
  if (size % kCifarRecord != 0) {
    return Malformed(path, absl::StrCat("truncated: ", size, " bytes is not a whole number of ",
                                        kCifarRecord, "-byte records"));
  }
  const int64_t n = size / kCifarRecord;
  torch::Tensor records = BytesToTensor(std::move(bytes), {n, kCifarRecord});
  RawSplit split{records.slice(1, 1).reshape({n, 3, kCifarSide, kCifarSide}).contiguous(),
                 records.select(1, 0).to(torch::kLong)};
  if (absl::Status s = CheckLabels(path, split.labels); !s.ok()) return s;
  return split;
}

absl::StatusOr<RawSplit> LoadCifarSplit(const std::string& dir, bool train) {
  std::vector<std::string> names;
  if (train) {
    for (int i = 1; i <= 5; ++i) names.push_back(absl::StrCat("data_batch_", i, ".bin"));
  } else {
    names.push_back("test_batch.bin");
  }
  std::vector<torch::Tensor> images, labels;
  for (const std::string& name : names) {
    absl::StatusOr<RawSplit> part = ReadCifarBatch(dir + "/" + name);
    if (!part.ok()) return part.status();
    images.push_back(part->images);
    labels.push_back(part->labels);
  }
  return RawSplit{torch::cat(images), torch::cat(labels)};
}

// Per-channel mean and population std of uint8 [N, C, H, W] pixels scaled to [0, 1]; exact
// integer sums, so the statistics do not depend on summation order.
void ChannelStats(const torch::Tensor& images, std::vector<double>& mean,
                  std::vector<double>& stddev) {
  const int64_t n = images.size(0), c = images.size(1), hw = images.size(2) * images.size(3);
  std::vector<uint64_t> sum(c, 0), sum_sq(c, 0);
  const uint8_t* p = images.data_ptr<uint8_t>();
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t ch = 0; ch < c; ++ch) {
      uint64_t s = 0, s2 = 0;
      for (int64_t k = 0; k < hw; ++k, ++p) {
        s += *p;
        s2 += uint64_t{*p} * *p;
      }
      sum[ch] += s;
      sum_sq[ch] += s2;
    }
  }
  mean.assign(c, 0.0);
  stddev.assign(c, 1.0);
  const double count = static_cast<double>(n) * static_cast<double>(hw);
  for (int64_t ch = 0; ch < c; ++ch) {
    const double m = static_cast<double>(sum[ch]) / count;
    const double var = static_cast<double>(sum_sq[ch]) / count - m * m;
    mean[ch] = m / 255.0;
    const double sd = std::sqrt(std::max(var, 0.0)) / 255.0;
    stddev[ch] = sd > 1e-12 ? sd : 1.0;  // a constant channel is only centred
  }
}

// The first `max` of a seeded permutation, in ascending index order (undefined: keep all).
torch::Tensor SubsetIndices(int64_t n, int64_t max, uint64_t seed) {
  if (max == 0 || max >= n) return {};
  torch::Generator gen = SeededGenerator(seed);
  torch::Tensor perm = torch::randperm(n, gen, torch::kLong);
  return std::get<0>(perm.slice(0, 0, max).sort());
}

TensorDataset Finish(const RawSplit& raw, const torch::Tensor& subset,
                     const std::vector<double>& mean, const std::vector<double>& stddev) {
  torch::Tensor images = raw.images, labels = raw.labels;
  if (subset.defined()) {
    images = images.index_select(0, subset);
    labels = labels.index_select(0, subset);
  }
  const auto c = static_cast<int64_t>(mean.size());
  torch::Tensor m = torch::tensor(mean, torch::kDouble).to(torch::kFloat).view({1, c, 1, 1});
  torch::Tensor s = torch::tensor(stddev, torch::kDouble).to(torch::kFloat).view({1, c, 1, 1});
  return {images.to(torch::kFloat).div_(255.0f).sub_(m).div_(s).contiguous(), labels.contiguous()};
}

absl::StatusOr<DatasetSplits> LoadDatasetImpl(const std::string& dir, const std::string& format,
                                              const LoadOptions& options) {
  if (absl::Status s = CheckInputNormalization(options.mean, options.std); !s.ok()) return s;
  if (options.max_train < 0 || options.max_test < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_train (", options.max_train, ") and max_test (", options.max_test, ") must be >= 0"));
  }
  absl::StatusOr<RawSplit> train, test;
  if (format == "idx") {
    train = LoadIdxSplit(dir, "train");
    if (!train.ok()) return train.status();
    test = LoadIdxSplit(dir, "t10k");
  } else if (format == "cifar10") {
    std::string root = dir;
    if (FileSize(root + "/data_batch_1.bin") < 0 &&
        FileSize(root + "/cifar-10-batches-bin/data_batch_1.bin") >= 0) {
      root += "/cifar-10-batches-bin";
    }
    train = LoadCifarSplit(root, /*train=*/true);
    if (!train.ok()) return train.status();
    test = LoadCifarSplit(root, /*train=*/false);
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown dataset format '", format, "' (known: idx, cifar10)"));
  }
  if (!test.ok()) return test.status();
  if (train->images.sizes().slice(1) != test->images.sizes().slice(1)) {
    return absl::InvalidArgumentError(
        absl::StrCat(dir, ": train images are ", c10::str(train->images.sizes().slice(1)),
                     " but test images are ", c10::str(test->images.sizes().slice(1))));
  }

  DatasetSplits out;
  out.num_classes = kNumClasses;
  out.channels = train->images.size(1);
  out.height = train->images.size(2);
  out.width = train->images.size(3);
  if (options.mean.empty() && options.std.empty()) {
    // Statistics of the whole train split, so they do not change with max_train.
    ChannelStats(train->images, out.channel_mean, out.channel_std);
  } else if (options.mean.size() != static_cast<size_t>(out.channels)) {
    return absl::InvalidArgumentError(absl::StrCat("input normalization has ", options.mean.size(),
                                                   " channel(s) but the images of ", dir, " have ",
                                                   out.channels));
  } else {
    out.channel_mean = options.mean;
    out.channel_std = options.std;
  }
  out.train =
      Finish(*train, SubsetIndices(train->images.size(0), options.max_train, Mix(options.seed, 1)),
             out.channel_mean, out.channel_std);
  out.test =
      Finish(*test, SubsetIndices(test->images.size(0), options.max_test, Mix(options.seed, 2)),
             out.channel_mean, out.channel_std);
  return out;
}

// Random crop (zero padding `kPad`) and horizontal flip per sample, as one gather per axis.
torch::Tensor CropFlip(const torch::Tensor& images, torch::Generator& gen) {
  constexpr int64_t kPad = 4;
  const int64_t b = images.size(0), c = images.size(1), h = images.size(2), w = images.size(3);
  const auto cpu_long = torch::TensorOptions().dtype(torch::kLong);
  torch::Tensor dy = torch::randint(0, 2 * kPad + 1, {b}, gen, cpu_long);
  torch::Tensor dx = torch::randint(0, 2 * kPad + 1, {b}, gen, cpu_long);
  torch::Tensor flip = torch::randint(0, 2, {b}, gen, cpu_long).to(torch::kBool);
  torch::Tensor ar_h = torch::arange(h, cpu_long), ar_w = torch::arange(w, cpu_long);
  torch::Tensor rows = dy.unsqueeze(1) + ar_h.unsqueeze(0);  // [B, H] rows of the padded image
  // A flipped crop reads its window right to left.
  torch::Tensor cols = dx.unsqueeze(1) + torch::where(flip.unsqueeze(1), (w - 1) - ar_w, ar_w);
  const torch::Device device = images.device();
  torch::Tensor padded = torch::constant_pad_nd(images, {kPad, kPad, kPad, kPad}, 0);
  torch::Tensor out =
      padded.gather(2, rows.to(device).view({b, 1, h, 1}).expand({b, c, h, w + 2 * kPad}));
  return out.gather(3, cols.to(device).view({b, 1, 1, w}).expand({b, c, h, w}));
}

}  // namespace

absl::StatusOr<DatasetSplits> LoadDataset(const std::string& dir, const std::string& format,
                                          const LoadOptions& options) {
  try {
    return LoadDatasetImpl(dir, format, options);
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(absl::StrCat(dir, ": out of memory loading the dataset"));
  } catch (const std::exception& e) {
    return absl::InternalError(
        absl::StrCat(dir, ": loading the dataset failed: ", TorchErrorText(e)));
  }
}

BatchIterator::BatchIterator(const TensorDataset& data, int64_t batch_size, uint64_t seed,
                             int64_t epoch, bool augment)
    : data_(data),
      batch_size_(std::max<int64_t>(1, batch_size)),
      augment_(augment),
      generator_(SeededGenerator(Mix(seed, static_cast<uint64_t>(epoch) + 0x100))) {
  try {
    int64_t n = 0;
    if (data.images.defined() && data.labels.defined() && data.images.dim() == 4 &&
        data.labels.dim() == 1 && data.images.size(0) == data.labels.size(0)) {
      n = data.labels.size(0);
    }
    order_ = torch::randperm(n, generator_, torch::kLong);
  } catch (const std::exception&) {
    order_ = torch::empty({0}, torch::kLong);
  }
}

int64_t BatchIterator::num_batches() const {
  return (order_.size(0) + batch_size_ - 1) / batch_size_;
}

std::optional<Batch> BatchIterator::Next() {
  const int64_t n = order_.size(0);
  if (position_ >= n) return std::nullopt;
  const int64_t end = std::min(n, position_ + batch_size_);
  torch::Tensor idx = order_.slice(0, position_, end);
  position_ = end;
  try {
    Batch batch{data_.images.index_select(0, idx.to(data_.images.device())),
                data_.labels.index_select(0, idx.to(data_.labels.device())), idx};
    if (augment_) batch.images = CropFlip(batch.images, generator_);
    return batch;
  } catch (const std::exception&) {
    position_ = n;  // a dataset torch rejects ends the epoch rather than escaping as an exception
    return std::nullopt;
  }
}

}  // namespace qnet::engine
