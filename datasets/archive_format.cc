// Format "archive": the imagefolder layout (train/<class>/..., datasets/image_tree.h) inside one
// .tar, .tar.gz or .zip, given as the file or as a folder holding only that file (an uploaded
// blob, which has no extension: the kind is told by magic bytes). Inspect streams the archive
// once, reading each image entry's first 64 KiB for its header, so a large archive is never held
// in memory; Open keeps the image entries' encoded bytes in memory and decodes on demand. Nothing
// is extracted to disk.
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "datasets/container_file.h"
#include "datasets/dataset_format.h"
#include "datasets/image_decoder.h"
#include "datasets/image_tree.h"

namespace qnet::datasets {
namespace {

struct ArchiveListing {
  std::vector<ListedFile> files;
  std::vector<std::vector<uint8_t>> bytes;  // per file when kept: whole entries that are images
};

// The header of the entry the reader is at; with `keep`, an image entry's bytes, whole, in
// `bytes`. A damaged archive is the returned error, a bad image goes into `header`.
absl::Status ReadEntry(ContainerReader& reader, const std::string& name, bool keep,
                       std::vector<uint8_t>& bytes, absl::StatusOr<ImageShape>& header) {
  auto read_rest = [&] { return reader.ReadData(bytes, kMaxImageFileBytes); };
  if (absl::Status s = reader.ReadData(bytes, kHeaderPrefixBytes); !s.ok()) return s;
  if (absl::Status s = ReadListedHeader(name, bytes, reader.entry_done(), read_rest, header);
      !s.ok()) {
    return s;
  }
  if (!header.ok() || !keep) {
    bytes.clear();
    return absl::OkStatus();
  }
  return read_rest();
}

// Every entry of the archive with its header; image entries' bytes too when `keep`.
absl::StatusOr<ArchiveListing> ListArchive(const std::string& file, bool keep) {
  absl::StatusOr<ContainerReader> reader = ContainerReader::OpenFile(file, kMaxImageFileBytes);
  if (!reader.ok()) return reader.status();
  ArchiveListing listing;
  while (true) {
    absl::StatusOr<std::optional<ContainerEntry>> entry = reader->Next();
    if (!entry.ok()) return entry.status();
    if (!entry->has_value()) break;
    const ContainerEntry& e = **entry;
    ListedFile listed{e.path, e.directory};
    std::vector<uint8_t> bytes;
    // Hidden entries (__MACOSX/, ._name) are never read.
    if (!e.directory && !IsSkippedPath(e.path)) {
      if (absl::Status s =
              ReadEntry(*reader, absl::StrCat(file, "/", e.path), keep, bytes, listed.header);
          !s.ok()) {
        return s;
      }
    }
    listing.files.push_back(std::move(listed));
    if (keep) listing.bytes.push_back(std::move(bytes));
  }
  return listing;
}

// The image entries' bytes, held in memory; read-only after Open, so safe from many threads.
class ArchiveStore final : public ImageStore {
 public:
  explicit ArchiveStore(std::vector<std::vector<uint8_t>> bytes) : bytes_(std::move(bytes)) {}
  absl::StatusOr<std::span<const uint8_t>> Bytes(size_t file,
                                                 std::vector<uint8_t>& scratch) const override {
    return std::span<const uint8_t>(bytes_[file]);
  }

 private:
  std::vector<std::vector<uint8_t>> bytes_;
};

std::string BaseName(const std::string& path) { return path.substr(path.rfind('/') + 1); }

class ArchiveFormat final : public DatasetFormat {
 public:
  absl::string_view name() const override { return "archive"; }
  absl::string_view description() const override {
    return "a .tar, .tar.gz or .zip of JPEG/PNG images: train/<class>/*, optional test/<class>/*";
  }
  bool augments() const override { return true; }

  bool Detect(const std::string& path) const override {
    absl::StatusOr<std::string> file = SingleFile(path);
    if (!file.ok()) return false;
    const ContainerKind kind = SniffContainerFile(*file);
    return kind == ContainerKind::kTar || kind == ContainerKind::kGzip ||
           kind == ContainerKind::kZip;
  }

  absl::StatusOr<DatasetSummary> Inspect(const std::string& path) const override {
    absl::StatusOr<std::string> file = SingleFile(path);
    if (!file.ok()) return file.status();
    absl::StatusOr<ArchiveListing> listing = ListArchive(*file, /*keep=*/false);
    if (!listing.ok()) return listing.status();
    absl::StatusOr<ImageTree> tree = ArrangeImageTree(*file, listing->files);
    if (!tree.ok()) return tree.status();
    return SummarizeImageTree(*tree, {BaseName(*file)});
  }

  DatasetSummary Typical() const override { return {}; }

  absl::StatusOr<DatasetReader> Open(const std::string& path) const override {
    absl::StatusOr<std::string> file = SingleFile(path);
    if (!file.ok()) return file.status();
    absl::StatusOr<ArchiveListing> listing = ListArchive(*file, /*keep=*/true);
    if (!listing.ok()) return listing.status();
    absl::StatusOr<ImageTree> tree = ArrangeImageTree(*file, listing->files);
    if (!tree.ok()) return tree.status();
    auto store = std::make_shared<ArchiveStore>(std::move(listing->bytes));
    return OpenImageTree(*tree, listing->files, std::move(store), *file);
  }

 private:
  absl::StatusOr<RawDataset> ReadFiles(const std::string& path) const override {
    absl::StatusOr<DatasetReader> reader = Open(path);
    if (!reader.ok()) return reader.status();
    return ReadImageTree(path, *reader);
  }
};

QNET_REGISTER_DATASET_FORMAT(ArchiveFormat);

}  // namespace
}  // namespace qnet::datasets
