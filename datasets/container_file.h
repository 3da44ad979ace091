// Single-file datasets (a tar, tar.gz or zip of images; a NumPy .npz, which is a zip): finding the
// file, telling its kind by magic bytes, and reading its entries in order through libarchive with
// the guards an uploaded file needs. Nothing is ever extracted to disk.
//
//   absl::StatusOr<std::string> file = SingleFile(dir_or_file);  // the blob a worker downloaded
//   absl::StatusOr<ContainerReader> reader = ContainerReader::OpenFile(*file, kMaxImageFileBytes);
//   while (true) {
//     absl::StatusOr<std::optional<ContainerEntry>> entry = reader->Next();
//     if (!entry.ok()) return entry.status();  // "..", absolute path, link, device, bad archive
//     if (!entry->has_value()) break;
//     std::vector<uint8_t> head;
//     if (absl::Status s = reader->ReadData(head, 4096); !s.ok()) return s;
//   }
#ifndef QNET_DATASETS_CONTAINER_FILE_H_
#define QNET_DATASETS_CONTAINER_FILE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

struct archive;

namespace qnet::datasets {

enum class ContainerKind { kNone, kTar, kGzip, kZip, kNpz };

// The kind by the first bytes of a file (at least kSniffBytes when the file is that long): a zip
// whose first entry is named *.npy is an npz. A gzip stream is assumed to hold a tar.
inline constexpr size_t kSniffBytes = 512;
ContainerKind SniffContainer(std::span<const uint8_t> head);
// The same for a file; kNone when it cannot be read.
ContainerKind SniffContainerFile(const std::string& path);

// `path` when it is a regular file; for a folder, the one regular file in it (names starting with
// '.' aside), as a worker receives an uploaded dataset. NOT_FOUND / INVALID_ARGUMENT otherwise.
absl::StatusOr<std::string> SingleFile(const std::string& path);

struct ContainerEntry {
  std::string path;  // normalised: '/'-separated, no "./", no trailing '/'
  bool directory = false;
  int64_t size = -1;  // declared size, -1 when the header does not say
};

// A tar (raw or gzip) or zip read entry by entry. Refuses, naming the entry: paths that are
// absolute or contain "..", links (symbolic or hard), devices and other special files, an entry
// declaring more than `max_entry_bytes`, and entries that together expand to more than
// kMaxExpansion times the container's size (plus kExpansionSlackBytes): a compression bomb.
class ContainerReader {
 public:
  static constexpr int64_t kMaxExpansion = 64;
  static constexpr int64_t kExpansionSlackBytes = int64_t{16} << 20;

  static absl::StatusOr<ContainerReader> OpenFile(const std::string& path, int64_t max_entry_bytes);
  // Over bytes in memory (they must outlive the reader); `name` is used in messages.
  static absl::StatusOr<ContainerReader> OpenMemory(std::span<const uint8_t> bytes,
                                                    const std::string& name,
                                                    int64_t max_entry_bytes);

  // The next entry, or nullopt after the last.
  absl::StatusOr<std::optional<ContainerEntry>> Next();
  // Appends the current entry's data to `out` until `out` holds `limit` bytes or the entry ends.
  absl::Status ReadData(std::vector<uint8_t>& out, size_t limit);
  // Whether the current entry's data has been read to its end.
  bool entry_done() const { return entry_done_; }

  const std::string& name() const { return name_; }

 private:
  struct Free {
    void operator()(archive* a) const;
  };
  ContainerReader(std::string name, int64_t container_bytes, int64_t max_entry_bytes);
  static absl::StatusOr<ContainerReader> Start(ContainerReader reader, int open_result);
  absl::Status Error(const std::string& what) const;
  absl::Status Spend(const std::string& entry, int64_t bytes);

  std::string name_;
  int64_t budget_;  // bytes entries may still expand to
  int64_t max_entry_bytes_;
  std::unique_ptr<archive, Free> archive_;
  std::string entry_;  // current entry's path
  int64_t entry_read_ = 0, entry_declared_ = -1;
  bool entry_done_ = true;
};

}  // namespace qnet::datasets

#endif  // QNET_DATASETS_CONTAINER_FILE_H_
