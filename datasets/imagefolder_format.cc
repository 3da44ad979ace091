// Format "imagefolder": a folder of JPEG and PNG files laid out as train/<class>/<image> and
// optionally test/<class>/<image> (or val/), as torchvision's ImageFolder reads them; the layout
// rules are in datasets/image_tree.h. Inspect reads each file's header (its first 64 KiB); Open
// keeps the list and reads a file each time its image is decoded.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "datasets/dataset_format.h"
#include "datasets/gz_reader.h"
#include "datasets/image_tree.h"

namespace qnet::datasets {
namespace {

namespace fs = std::filesystem;

constexpr const char* kSplitFolders[] = {"train", "test", "val"};

bool IsFolder(const fs::path& path) {
  std::error_code ec;
  return fs::is_directory(path, ec);
}

// "" when dir/train exists, "X/" when dir holds one visible folder X with X/train. Anything else
// gives "", and ArrangeImageTree then says what is missing.
std::string RootOf(const std::string& dir) {
  if (IsFolder(fs::path(dir) / "train")) return "";
  std::error_code ec;
  std::string only;
  int folders = 0;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (IsSkippedPath(name) || !IsFolder(entry.path())) continue;
    ++folders;
    only = name;
  }
  if (folders == 1 && IsFolder(fs::path(dir) / only / "train")) return only + "/";
  return "";
}

// Up to `limit` bytes of the file from its start.
absl::StatusOr<std::vector<uint8_t>> ReadFilePrefix(const std::string& path, int64_t limit) {
  std::unique_ptr<FILE, int (*)(FILE*)> file(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (file == nullptr) return absl::PermissionDeniedError(absl::StrCat(path, ": cannot open"));
  std::vector<uint8_t> bytes(static_cast<size_t>(limit));
  const size_t n = std::fread(bytes.data(), 1, bytes.size(), file.get());
  if (std::ferror(file.get())) return absl::DataLossError(absl::StrCat(path, ": read error"));
  bytes.resize(n);
  return bytes;
}

// The size of an image file, refusing what is not a regular file or too large to be an image.
absl::StatusOr<int64_t> ImageFileSize(const std::string& path) {
  const int64_t size = FileSize(path);
  if (size < 0) return MalformedFile(path, "not a regular file (device, socket or broken link)");
  if (size > kMaxImageFileBytes) {
    return MalformedFile(path, absl::StrCat("file of ", size, " bytes exceeds the ",
                                            kMaxImageFileBytes, "-byte limit for one image"));
  }
  return size;
}

absl::StatusOr<std::vector<uint8_t>> ReadImageFile(const std::string& path) {
  absl::StatusOr<int64_t> size = ImageFileSize(path);
  if (!size.ok()) return size.status();
  return ReadFilePrefix(path, *size);
}

absl::StatusOr<ImageShape> FileHeader(const std::string& path) {
  absl::StatusOr<int64_t> size_or = ImageFileSize(path);
  if (!size_or.ok()) return size_or.status();
  const int64_t size = *size_or;
  absl::StatusOr<std::vector<uint8_t>> bytes =
      ReadFilePrefix(path, std::min<int64_t>(size, kHeaderPrefixBytes));
  if (!bytes.ok()) return bytes.status();
  auto read_all = [&]() -> absl::Status {
    absl::StatusOr<std::vector<uint8_t>> all = ReadFilePrefix(path, size);
    if (!all.ok()) return all.status();
    *bytes = *std::move(all);
    return absl::OkStatus();
  };
  absl::StatusOr<ImageShape> header;
  const bool complete = static_cast<int64_t>(bytes->size()) >= size;
  if (absl::Status s = ReadListedHeader(path, *bytes, complete, read_all, header); !s.ok()) {
    return s;
  }
  return header;
}

// Every entry under the split folders of `dir`, relative to it, with the headers of its files.
absl::StatusOr<std::vector<ListedFile>> ListFolder(const std::string& dir) {
  if (!IsFolder(dir)) return absl::NotFoundError(absl::StrCat(dir, ": not a folder"));
  const std::string root = RootOf(dir);
  std::vector<ListedFile> files;
  // The top-level folders, unread, so that a missing train/ can be explained by what is there.
  std::error_code top_ec;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir, top_ec)) {
    const std::string name = entry.path().filename().string();
    if (IsFolder(entry.path()) && !IsSkippedPath(name)) files.push_back({name, true});
  }
  for (const char* split : kSplitFolders) {
    const fs::path top = fs::path(dir) / root / split;
    if (!IsFolder(top)) continue;
    files.push_back({root + split, /*directory=*/true});
    std::error_code ec;
    fs::recursive_directory_iterator it(top, fs::directory_options::follow_directory_symlink, ec);
    for (; !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
      const std::string relative = fs::path(it->path()).lexically_relative(dir).generic_string();
      if (IsSkippedPath(relative)) {
        if (IsFolder(it->path())) it.disable_recursion_pending();
        continue;
      }
      ListedFile file{relative, IsFolder(it->path())};
      if (!file.directory) file.header = FileHeader(it->path().string());
      files.push_back(std::move(file));
    }
    if (ec) return absl::PermissionDeniedError(absl::StrCat(top.string(), ": ", ec.message()));
  }
  return files;
}

// The folder's files, read whenever an image is decoded.
class FolderStore final : public ImageStore {
 public:
  FolderStore(std::string dir, const std::vector<ListedFile>& files) : dir_(std::move(dir)) {
    for (const ListedFile& f : files) paths_.push_back(f.path);
  }
  absl::StatusOr<std::span<const uint8_t>> Bytes(size_t file,
                                                 std::vector<uint8_t>& scratch) const override {
    absl::StatusOr<std::vector<uint8_t>> bytes = ReadImageFile(dir_ + "/" + paths_[file]);
    if (!bytes.ok()) return bytes.status();
    scratch = *std::move(bytes);
    return std::span<const uint8_t>(scratch);
  }

 private:
  std::string dir_;
  std::vector<std::string> paths_;
};

class ImageFolderFormat final : public DatasetFormat {
 public:
  absl::string_view name() const override { return "imagefolder"; }
  absl::string_view description() const override {
    return "a folder of JPEG/PNG images: train/<class>/*, optional test/<class>/* (or val/)";
  }
  bool augments() const override { return true; }

  bool Detect(const std::string& dir) const override {
    return IsFolder(fs::path(dir) / RootOf(dir) / "train");
  }

  absl::StatusOr<DatasetSummary> Inspect(const std::string& dir) const override {
    absl::StatusOr<std::vector<ListedFile>> files = ListFolder(dir);
    if (!files.ok()) return files.status();
    absl::StatusOr<ImageTree> tree = ArrangeImageTree(dir, *files);
    if (!tree.ok()) return tree.status();
    std::vector<std::string> needed;
    for (const auto* split : {&tree->train, &tree->test}) {
      for (const TreeImage& image : *split) needed.push_back((*files)[image.file].path);
    }
    return SummarizeImageTree(*tree, std::move(needed));
  }

  DatasetSummary Typical() const override { return {}; }

  absl::StatusOr<DatasetReader> Open(const std::string& dir) const override {
    absl::StatusOr<std::vector<ListedFile>> files = ListFolder(dir);
    if (!files.ok()) return files.status();
    absl::StatusOr<ImageTree> tree = ArrangeImageTree(dir, *files);
    if (!tree.ok()) return tree.status();
    return OpenImageTree(*tree, *files, std::make_shared<FolderStore>(dir, *files), dir);
  }

 private:
  absl::StatusOr<RawDataset> ReadFiles(const std::string& dir) const override {
    absl::StatusOr<DatasetReader> reader = Open(dir);
    if (!reader.ok()) return reader.status();
    return ReadImageTree(dir, *reader);
  }
};

QNET_REGISTER_DATASET_FORMAT(ImageFolderFormat);

}  // namespace
}  // namespace qnet::datasets
