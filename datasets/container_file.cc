#include "datasets/container_file.h"

#include <archive.h>
#include <archive_entry.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "datasets/gz_reader.h"

namespace qnet::datasets {
namespace {

constexpr uint8_t kZipMagic[] = {'P', 'K', 3, 4};
constexpr uint8_t kEmptyZipMagic[] = {'P', 'K', 5, 6};
constexpr uint8_t kGzipMagic[] = {0x1f, 0x8b};
constexpr char kTarMagic[] = "ustar";  // at offset 257, POSIX and GNU alike
constexpr size_t kTarMagicOffset = 257;
constexpr size_t kReadBlockBytes = 64 << 10;  // libarchive's reads from the file
constexpr char kNotAnArchive[] = "not a tar, tar.gz or zip archive, or damaged";

bool HasAt(std::span<const uint8_t> bytes, size_t offset, const void* magic, size_t n) {
  return bytes.size() >= offset + n && std::memcmp(bytes.data() + offset, magic, n) == 0;
}

// The first zip entry's name from its local header (name length at 26, name at 30).
std::string FirstZipName(std::span<const uint8_t> head) {
  if (head.size() < 30) return "";
  const size_t length = head[26] | (size_t{head[27]} << 8);
  if (head.size() < 30 + length) return "";
  return std::string(reinterpret_cast<const char*>(head.data()) + 30, length);
}

}  // namespace

ContainerKind SniffContainer(std::span<const uint8_t> head) {
  if (HasAt(head, 0, kZipMagic, sizeof kZipMagic)) {
    return FirstZipName(head).ends_with(".npy") ? ContainerKind::kNpz : ContainerKind::kZip;
  }
  if (HasAt(head, 0, kEmptyZipMagic, sizeof kEmptyZipMagic)) return ContainerKind::kZip;
  if (HasAt(head, 0, kGzipMagic, sizeof kGzipMagic)) return ContainerKind::kGzip;
  if (HasAt(head, kTarMagicOffset, kTarMagic, std::strlen(kTarMagic))) return ContainerKind::kTar;
  return ContainerKind::kNone;
}

ContainerKind SniffContainerFile(const std::string& path) {
  if (FileSize(path) < 0) return ContainerKind::kNone;
  std::unique_ptr<FILE, int (*)(FILE*)> file(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (file == nullptr) return ContainerKind::kNone;
  std::vector<uint8_t> head(kSniffBytes);
  head.resize(std::fread(head.data(), 1, head.size(), file.get()));
  return SniffContainer(head);
}

absl::StatusOr<std::string> SingleFile(const std::string& path) {
  if (FileSize(path) >= 0) return path;
  std::error_code ec;
  if (!std::filesystem::is_directory(path, ec)) {
    return absl::NotFoundError(absl::StrCat(path, ": no such file or folder"));
  }
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(path, ec)) {
    std::string name = entry.path().filename().string();
    if (!name.starts_with(".")) names.push_back(std::move(name));
  }
  std::sort(names.begin(), names.end());
  if (names.size() == 1 && FileSize(path + "/" + names[0]) >= 0) return path + "/" + names[0];
  if (names.size() > 5) names.resize(5);
  return MalformedFile(path, absl::StrCat("expected the dataset file alone in this folder, found ",
                                          names.empty() ? "nothing" : absl::StrJoin(names, ", ")));
}

void ContainerReader::Free::operator()(archive* a) const { archive_read_free(a); }

ContainerReader::ContainerReader(std::string name, int64_t container_bytes, int64_t max_entry_bytes)
    : name_(std::move(name)),
      budget_(kMaxExpansion * container_bytes + kExpansionSlackBytes),
      max_entry_bytes_(max_entry_bytes),
      archive_(archive_read_new()) {
  // Only the containers the formats promise: tar (raw or gzip) and zip; no other filter or
  // format is attack surface.
  archive_read_support_filter_gzip(archive_.get());
  archive_read_support_format_tar(archive_.get());
  archive_read_support_format_zip(archive_.get());
}

absl::StatusOr<ContainerReader> ContainerReader::Start(ContainerReader reader, int open_result) {
  if (open_result != ARCHIVE_OK) return reader.Error(kNotAnArchive);
  return reader;
}

absl::StatusOr<ContainerReader> ContainerReader::OpenFile(const std::string& path,
                                                          int64_t max_entry_bytes) {
  const int64_t size = FileSize(path);
  if (size < 0) return absl::NotFoundError(absl::StrCat(path, ": not a regular file"));
  ContainerReader reader(path, size, max_entry_bytes);
  const int opened =
      archive_read_open_filename(reader.archive_.get(), path.c_str(), kReadBlockBytes);
  return Start(std::move(reader), opened);
}

absl::StatusOr<ContainerReader> ContainerReader::OpenMemory(std::span<const uint8_t> bytes,
                                                            const std::string& name,
                                                            int64_t max_entry_bytes) {
  ContainerReader reader(name, static_cast<int64_t>(bytes.size()), max_entry_bytes);
  const int opened = archive_read_open_memory(reader.archive_.get(), bytes.data(), bytes.size());
  return Start(std::move(reader), opened);
}

absl::Status ContainerReader::Error(const std::string& what) const {
  const char* detail = archive_error_string(archive_.get());
  return MalformedFile(name_, detail == nullptr ? what : absl::StrCat(what, ": ", detail));
}

absl::Status ContainerReader::Spend(const std::string& entry, int64_t bytes) {
  budget_ -= bytes;
  if (budget_ >= 0) return absl::OkStatus();
  return MalformedFile(absl::StrCat(name_, "/", entry),
                       absl::StrCat("entries expand to more than ", kMaxExpansion,
                                    " times the archive's size; refused as a compression bomb"));
}

absl::StatusOr<std::optional<ContainerEntry>> ContainerReader::Next() {
  while (true) {
    archive_entry* header = nullptr;
    const int r = archive_read_next_header(archive_.get(), &header);
    if (r == ARCHIVE_EOF) return std::nullopt;
    if (r < ARCHIVE_WARN) {
      return Error(entry_.empty() ? kNotAnArchive
                                  : absl::StrCat("damaged or truncated after entry ", entry_));
    }
    const char* raw_path = archive_entry_pathname(header);
    if (raw_path == nullptr) return Error("an entry's name cannot be read");
    const std::string raw(raw_path);
    const std::string where = absl::StrCat(name_, "/", raw);
    if (raw.starts_with("/")) return MalformedFile(where, "absolute path in the archive");
    std::vector<std::string> parts;
    for (absl::string_view part : absl::StrSplit(raw, '/', absl::SkipEmpty())) {
      if (part == "..") return MalformedFile(where, "path leaves the archive (\"..\")");
      if (part != ".") parts.emplace_back(part);
    }
    if (archive_entry_hardlink(header) != nullptr || archive_entry_filetype(header) == AE_IFLNK) {
      return MalformedFile(where, "links are not accepted in a dataset archive");
    }
    const auto type = archive_entry_filetype(header);
    if (type != AE_IFREG && type != AE_IFDIR) {
      return MalformedFile(where, "device or special file in the archive");
    }
    ContainerEntry entry{absl::StrJoin(parts, "/"), type == AE_IFDIR,
                         archive_entry_size_is_set(header) ? archive_entry_size(header) : -1};
    if (entry.size > max_entry_bytes_) {
      return MalformedFile(where, absl::StrCat("entry of ", entry.size, " bytes exceeds the ",
                                               max_entry_bytes_, "-byte limit"));
    }
    entry_ = raw;
    entry_read_ = 0;
    entry_declared_ = std::max<int64_t>(entry.size, 0);
    entry_done_ = entry.directory;
    if (absl::Status s = Spend(raw, entry_declared_); !s.ok()) return s;
    if (entry.path.empty()) continue;  // "./", the archive's own top folder
    return entry;
  }
}

absl::Status ContainerReader::ReadData(std::vector<uint8_t>& out, size_t limit) {
  uint8_t probe[4096];
  while (!entry_done_ && out.size() < limit) {
    const size_t start = out.size(), room = limit - start;
    // Up to the declared size, read straight into `out`, grown once to fit; past it (the end, or
    // an entry that declares no size) through a small buffer, so `out` is never over-allocated.
    const int64_t declared_left = entry_declared_ - entry_read_;
    la_ssize_t n = 0;
    if (declared_left > 0) {
      out.resize(start + std::min(room, static_cast<size_t>(declared_left)));
      n = archive_read_data(archive_.get(), out.data() + start, out.size() - start);
      out.resize(start + static_cast<size_t>(std::max<la_ssize_t>(n, 0)));
    } else {
      n = archive_read_data(archive_.get(), probe, std::min(room, sizeof probe));
      if (n > 0) out.insert(out.end(), probe, probe + n);
    }
    if (n < 0) return Error(absl::StrCat("damaged or truncated entry ", entry_));
    if (n == 0) entry_done_ = true;
    // An entry that runs past its declared size (or declares none) is charged as it is read.
    const int64_t before = std::max(entry_read_, entry_declared_);
    entry_read_ += n;
    if (entry_read_ > max_entry_bytes_) {
      return MalformedFile(absl::StrCat(name_, "/", entry_),
                           absl::StrCat("entry exceeds the ", max_entry_bytes_, "-byte limit"));
    }
    if (entry_read_ > before) {
      if (absl::Status s = Spend(entry_, entry_read_ - before); !s.ok()) return s;
    }
  }
  return absl::OkStatus();
}

}  // namespace qnet::datasets
