#include "workers/worker/blob_cache.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/digest.h"

namespace qnet::worker {
namespace {

namespace fs = std::filesystem;

// An exclusive flock() held for the object's lifetime.
class FileLock {
 public:
  explicit FileLock(const std::string& path) : fd_(open(path.c_str(), O_CREAT | O_RDWR, 0644)) {
    if (fd_ >= 0 && flock(fd_, LOCK_EX) != 0) {
      close(fd_);
      fd_ = -1;
    }
  }
  ~FileLock() {
    if (fd_ >= 0) close(fd_);  // closing releases the lock
  }
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;
  bool locked() const { return fd_ >= 0; }

 private:
  int fd_;
};

std::string Hex(const std::string& digest) { return digest.substr(digest.find(':') + 1); }

// Hard link, else copy (the cache and the dataset directory may sit on different file systems).
absl::Status LinkOrCopy(const std::string& from, const std::string& to) {
  std::error_code ec;
  fs::create_hard_link(from, to, ec);
  if (!ec) return absl::OkStatus();
  fs::copy_file(from, to, fs::copy_options::overwrite_existing, ec);
  if (ec)
    return absl::PermissionDeniedError(absl::StrCat("copy ", from, " to ", to, ": ", ec.message()));
  return absl::OkStatus();
}

}  // namespace

bool IsSafeFileName(const std::string& name) {
  if (name.empty() || name.size() > 200 || name[0] == '.') return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
  });
}

BlobCache::BlobCache(std::string root, Fetcher fetch)
    : root_(std::move(root)), fetch_(std::move(fetch)) {}

absl::StatusOr<std::string> BlobCache::Blob(const std::string& digest) {
  if (!IsValidDigest(digest)) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", digest, "' is not a sha256:<64 hex> blob digest"));
  }
  const std::string hex = Hex(digest);
  const std::string path = (fs::path(root_) / "blobs" / hex).string();
  std::error_code ec;
  if (fs::is_regular_file(path, ec)) return path;

  fs::create_directories(fs::path(root_) / "blobs", ec);
  fs::create_directories(fs::path(root_) / "locks", ec);
  if (ec) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot create the cache under ", root_, ": ", ec.message()));
  }
  FileLock lock((fs::path(root_) / "locks" / hex).string());
  if (!lock.locked()) {
    return absl::PermissionDeniedError(absl::StrCat("cannot lock ", root_, "/locks/", hex));
  }
  // Another process may have fetched it while this one waited for the lock.
  if (fs::is_regular_file(path, ec)) return path;
  absl::Status fetched = fetch_(digest, path);
  if (!fetched.ok()) return fetched;
  if (!fs::is_regular_file(path, ec)) {
    return absl::InternalError(
        absl::StrCat("blob ", digest, " was fetched but ", path, " is missing"));
  }
  return path;
}

absl::StatusOr<std::string> BlobCache::Dataset(
    const std::string& name, const google::protobuf::RepeatedPtrField<v1::DatasetFile>& files) {
  if (!IsSafeFileName(name)) {
    return absl::InvalidArgumentError(
        absl::StrCat("dataset name '", name, "' is not a plain file name"));
  }
  if (files.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("dataset ", name, " has no files"));
  }
  std::vector<std::pair<std::string, std::string>> entries;  // (file name, digest)
  for (const v1::DatasetFile& f : files) {
    if (!IsSafeFileName(f.name())) {
      return absl::InvalidArgumentError(
          absl::StrCat("dataset ", name, ": file name '", f.name(), "' is not a plain file name"));
    }
    if (!IsValidDigest(f.digest())) {
      return absl::InvalidArgumentError(
          absl::StrCat("dataset ", name, ": file ", f.name(), " has a malformed digest"));
    }
    entries.emplace_back(f.name(), f.digest());
  }
  std::sort(entries.begin(), entries.end());
  std::string listing = absl::StrCat(name, "\n");
  for (const auto& [file, digest] : entries) absl::StrAppend(&listing, file, " ", digest, "\n");
  const std::string key = Hex(DigestOf(listing));

  const fs::path parent = fs::path(root_) / "datasets";
  const fs::path done = parent / key;
  const std::string dir = (done / name).string();
  std::error_code ec;
  if (fs::is_directory(dir, ec)) return dir;

  // Fetch first (outside the assembly), then build in a private directory and rename it into
  // place, so a reader never sees a half-built dataset.
  std::vector<std::string> blobs;
  for (const auto& [file, digest] : entries) {
    absl::StatusOr<std::string> blob = Blob(digest);
    if (!blob.ok()) {
      return absl::Status(blob.status().code(), absl::StrCat("dataset ", name, " file ", file, ": ",
                                                             blob.status().message()));
    }
    blobs.push_back(*blob);
  }
  static std::atomic<int> counter{0};
  const fs::path temp = parent / absl::StrCat(key, ".tmp-", getpid(), "-", counter++);
  fs::create_directories(temp / name, ec);
  if (ec) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot create ", temp.string(), ": ", ec.message()));
  }
  for (size_t i = 0; i < entries.size(); ++i) {
    absl::Status s = LinkOrCopy(blobs[i], (temp / name / entries[i].first).string());
    if (!s.ok()) {
      fs::remove_all(temp, ec);
      return s;
    }
  }
  fs::rename(temp, done, ec);
  if (ec) {
    fs::remove_all(temp, ec);  // lost the race to another process: its copy is identical
    if (fs::is_directory(dir, ec)) return dir;
    return absl::PermissionDeniedError(absl::StrCat("cannot assemble dataset in ", dir));
  }
  return dir;
}

}  // namespace qnet::worker
