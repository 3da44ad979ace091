#include "server/blobs/blob_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>
#include <utility>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "common/atomic_file.h"
#include "spdlog/spdlog.h"

namespace qnet::server {
namespace {

namespace fs = std::filesystem;

constexpr char kPartialPrefix[] = "partial-";
// An interrupted upload nobody resumed within this long is abandoned.
constexpr auto kPartialMaxAge = std::chrono::hours(24);

// The path goes to the log, for the operator; clients are told what failed, not where.
absl::Status ErrnoError(absl::string_view what, const std::string& path) {
  const int err = errno;
  spdlog::error("blob store: {} {}: {}", std::string(what), path, std::strerror(err));
  std::string msg = absl::StrCat("blob store: ", what, " failed: ", std::strerror(err));
  // EFBIG: the process's file size limit (RLIMIT_FSIZE), a full disk in all but name.
  if (err == ENOSPC || err == EDQUOT || err == EFBIG) return absl::ResourceExhaustedError(msg);
  return absl::InternalError(msg);
}

absl::Status FsyncDir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoError("open directory", dir);
  absl::Status s = ::fsync(fd) == 0 ? absl::OkStatus() : ErrnoError("fsync directory", dir);
  ::close(fd);
  return s;
}

}  // namespace

absl::Status CheckDigest(absl::string_view digest, absl::string_view what) {
  if (IsValidDigest(std::string_view(digest.data(), digest.size()))) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      what, " \"", digest.substr(0, 80), "\" is not a digest: expected sha256:<64 lowercase hex>"));
}

absl::StatusOr<std::unique_ptr<BlobStore>> BlobStore::Open(const std::string& root,
                                                           int64_t max_blob_bytes) {
  std::error_code ec;
  for (const char* sub : {"sha256", "tmp"}) {
    fs::create_directories(fs::path(root) / sub, ec);
    if (ec) {
      return absl::UnavailableError(
          absl::StrCat("cannot create blob folder ", root, "/", sub, ": ", ec.message()));
    }
  }
  // Uploads a previous run left (crash, kill -9) are garbage now, except recent resumable ones.
  const auto now = fs::file_time_type::clock::now();
  for (const auto& entry : fs::directory_iterator(fs::path(root) / "tmp", ec)) {
    std::error_code rm_ec;
    const bool partial = entry.path().filename().string().starts_with(kPartialPrefix);
    if (partial && now - entry.last_write_time(rm_ec) < kPartialMaxAge && !rm_ec) continue;
    fs::remove(entry.path(), rm_ec);
  }
  std::unique_ptr<BlobStore> store(new BlobStore(root, max_blob_bytes));
  absl::StatusOr<std::vector<StoredBlob>> blobs = store->List();
  if (!blobs.ok()) return blobs.status();
  absl::MutexLock lock(&store->files_mu_);
  for (const StoredBlob& b : *blobs) store->total_bytes_ += b.size_bytes;
  return store;
}

absl::StatusOr<std::vector<StoredBlob>> BlobStore::List() const {
  std::vector<StoredBlob> blobs;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(fs::path(root_) / "sha256", ec)) {
    const std::string digest = absl::StrCat("sha256:", entry.path().filename().string());
    struct stat st;
    if (!IsValidDigest(digest) || ::stat(entry.path().c_str(), &st) != 0) continue;
    blobs.push_back({digest, static_cast<int64_t>(st.st_size), absl::TimeFromTimespec(st.st_mtim)});
  }
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("cannot list blob folder ", root_, "/sha256: ", ec.message()));
  }
  return blobs;
}

absl::Status BlobStore::Remove(absl::string_view digest) const {
  if (absl::Status s = CheckDigest(digest, "digest"); !s.ok()) return s;
  const std::string path = PathOf(digest);
  absl::MutexLock lock(&files_mu_);
  struct stat st;
  if (::stat(path.c_str(), &st) != 0 || ::unlink(path.c_str()) != 0) {
    if (errno == ENOENT) return absl::NotFoundError(absl::StrCat("blob ", digest, " not found"));
    return ErrnoError("remove", path);
  }
  total_bytes_ -= st.st_size;
  return absl::OkStatus();
}

int64_t BlobStore::total_bytes() const {
  absl::MutexLock lock(&files_mu_);
  return total_bytes_;
}

std::string BlobStore::PathOf(absl::string_view digest) const {
  return absl::StrCat(root_, "/sha256/", digest.substr(7));
}

absl::StatusOr<std::unique_ptr<BlobStore::Upload>> BlobStore::StartUpload(
    int64_t declared_size, const std::string& expected_digest) const {
  return Start(declared_size, expected_digest, max_blob_bytes_);
}

absl::StatusOr<std::unique_ptr<BlobStore::Upload>> BlobStore::Start(
    int64_t declared_size, const std::string& expected_digest, int64_t limit) const {
  if (declared_size < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("size_bytes must not be negative (got ", declared_size, ")"));
  }
  if (declared_size > limit) {
    return absl::ResourceExhaustedError(absl::StrCat("blob of ", declared_size,
                                                     " bytes exceeds the server's limit of ", limit,
                                                     " bytes (server flag --max-blob-bytes)"));
  }
  if (!expected_digest.empty()) {
    if (absl::Status s = CheckDigest(expected_digest, "digest"); !s.ok()) return s;
  }
  std::string temp =
      absl::StrFormat("%s/tmp/upload-%016x", root_, absl::Uniform<uint64_t>(absl::BitGen()));
  int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoError("create", temp);
  return std::unique_ptr<Upload>(new Upload(this, fd, std::move(temp), declared_size,
                                            expected_digest, limit, /*resumable=*/false));
}

std::string BlobStore::PartialPathOf(absl::string_view digest) const {
  return absl::StrCat(root_, "/tmp/", kPartialPrefix, digest.substr(7));
}

namespace {

// Beside the partial file, under the same prefix: removed with it when a day old.
std::string PartialOwnerPath(const std::string& partial_path) { return partial_path + ".owner"; }

}  // namespace

std::string BlobStore::PartialOwner(absl::string_view digest) const {
  std::ifstream in(PartialOwnerPath(PartialPathOf(digest)), std::ios::binary);
  std::string owner;
  std::getline(in, owner, '\0');
  return owner;
}

absl::Status BlobStore::SetPartialOwner(absl::string_view digest, const std::string& owner) const {
  return WriteFileAtomically(PartialOwnerPath(PartialPathOf(digest)), owner);
}

int64_t BlobStore::PartialUploadSize(absl::string_view digest) const {
  if (!CheckDigest(digest, "digest").ok()) return 0;
  struct stat st;
  return ::stat(PartialPathOf(digest).c_str(), &st) == 0 ? static_cast<int64_t>(st.st_size) : 0;
}

void BlobStore::ReleaseResumable(const std::string& digest) const {
  absl::MutexLock lock(&mu_);
  resuming_.erase(digest);
}

absl::StatusOr<std::unique_ptr<BlobStore::Upload>> BlobStore::StartResumableUpload(
    int64_t declared_size, const std::string& digest, int64_t offset) const {
  if (absl::Status s = CheckDigest(digest, "digest"); !s.ok()) return s;
  if (declared_size <= 0 || offset < 0 || offset > declared_size) {
    return absl::InvalidArgumentError(absl::StrCat("a resumable upload needs size_bytes > 0 and ",
                                                   "0 <= offset <= size_bytes (got size ",
                                                   declared_size, ", offset ", offset, ")"));
  }
  if (declared_size > max_blob_bytes_) return Start(declared_size, digest, max_blob_bytes_);
  {
    absl::MutexLock lock(&mu_);
    if (!resuming_.insert(digest).second) {
      if (offset == 0) return Start(declared_size, digest, max_blob_bytes_);
      return absl::AbortedError(
          absl::StrCat("another upload of ", digest, " is in progress; retry once it ends"));
    }
  }
  const std::string path = PartialPathOf(digest);
  auto fail = [&](absl::Status s) {
    ReleaseResumable(digest);
    return s;
  };
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return fail(ErrnoError("open", path));
  std::unique_ptr<Upload> upload(
      new Upload(this, fd, path, declared_size, digest, max_blob_bytes_, /*resumable=*/true));
  struct stat st;
  if (::fstat(fd, &st) != 0) return ErrnoError("stat", path);
  if (offset > st.st_size) {
    upload->KeepForResume();
    return absl::OutOfRangeError(absl::StrCat("the server holds ", st.st_size, " bytes of ", digest,
                                              ", not ", offset, "; resume from GetUploadOffset"));
  }
  if (::ftruncate(fd, offset) != 0 || ::lseek(fd, offset, SEEK_SET) != offset) {
    return ErrnoError("truncate", path);
  }
  // The kept bytes are hashed again: the digest check at Commit covers all of them.
  std::string buf(1 << 20, '\0');
  for (int64_t at = 0; at < offset;) {
    const ssize_t n = ::pread(fd, buf.data(),
                              static_cast<size_t>(std::min<int64_t>(offset - at, buf.size())), at);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return ErrnoError("read", path);
    upload->hash_.Update(std::string_view(buf.data(), static_cast<size_t>(n)));
    at += n;
  }
  upload->received_ = offset;
  return upload;
}

BlobStore::Upload::Upload(const BlobStore* store, int fd, std::string temp_path,
                          int64_t declared_size, std::string expected_digest, int64_t limit,
                          bool resumable)
    : store_(store),
      fd_(fd),
      temp_path_(std::move(temp_path)),
      declared_size_(declared_size),
      expected_digest_(std::move(expected_digest)),
      limit_(limit),
      resumable_(resumable) {}

BlobStore::Upload::~Upload() { KeepForResume(); }

void BlobStore::Upload::KeepForResume() {
  if (resumable_) temp_path_.clear();  // Discard then leaves the file
  Discard();
}

void BlobStore::Upload::Discard() {
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
  if (!temp_path_.empty()) {
    ::unlink(temp_path_.c_str());
    if (resumable_) ::unlink(PartialOwnerPath(temp_path_).c_str());
    temp_path_.clear();
  }
  if (resumable_ && !done_) store_->ReleaseResumable(expected_digest_);
  done_ = true;
}

absl::Status BlobStore::Upload::Append(absl::string_view data) {
  if (done_) return absl::FailedPreconditionError("upload already finished");
  const int64_t total = received_ + static_cast<int64_t>(data.size());
  if (total > limit_) {
    Discard();
    return absl::ResourceExhaustedError(
        absl::StrCat("blob exceeds the server's limit of ", limit_,
                     " bytes (server flag --max-blob-bytes); upload discarded"));
  }
  if (declared_size_ > 0 && total > declared_size_) {
    Discard();
    return absl::InvalidArgumentError(absl::StrCat("upload sent more than the ", declared_size_,
                                                   " bytes its header declared; upload discarded"));
  }
  hash_.Update(std::string_view(data.data(), data.size()));
  const char* p = data.data();
  size_t left = data.size();
  while (left > 0) {
    ssize_t n = ::write(fd_, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      absl::Status s = ErrnoError("write", temp_path_);
      Discard();
      return s;
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
  received_ = total;
  return absl::OkStatus();
}

absl::StatusOr<BlobInfo> BlobStore::Upload::Commit() {
  if (done_) return absl::FailedPreconditionError("upload already finished");
  if (declared_size_ > 0 && received_ != declared_size_) {
    KeepForResume();  // a short resumable upload is an interrupted one
    return absl::InvalidArgumentError(absl::StrCat("upload ended after ", received_,
                                                   " bytes but its header declared ",
                                                   declared_size_, "; upload discarded"));
  }
  BlobInfo info{hash_.Digest(), received_};
  if (!expected_digest_.empty() && info.digest != expected_digest_) {
    Discard();
    return absl::InvalidArgumentError(absl::StrCat("digest mismatch: the header says ",
                                                   expected_digest_, " but the content hashes to ",
                                                   info.digest, "; upload discarded"));
  }
  if (::fsync(fd_) != 0) {
    absl::Status s = ErrnoError("fsync", temp_path_);
    Discard();
    return s;
  }
  ::close(fd_);
  fd_ = -1;
  const std::string final_path = store_->PathOf(info.digest);
  {
    absl::MutexLock lock(&store_->files_mu_);
    struct stat st;
    const bool replaces = ::stat(final_path.c_str(), &st) == 0;
    if (::rename(temp_path_.c_str(), final_path.c_str()) != 0) {
      absl::Status s = ErrnoError("rename into", final_path);
      Discard();
      return s;
    }
    if (!replaces) store_->total_bytes_ += info.size_bytes;
  }
  if (resumable_) ::unlink(PartialOwnerPath(temp_path_).c_str());  // nothing left to resume
  temp_path_.clear();
  Discard();  // releases a resumable upload's digest
  if (absl::Status s = FsyncDir(store_->root_ + "/sha256"); !s.ok()) return s;
  return info;
}

absl::StatusOr<int64_t> BlobStore::Stat(absl::string_view digest) const {
  if (absl::Status s = CheckDigest(digest, "digest"); !s.ok()) return s;
  struct stat st;
  const std::string path = PathOf(digest);
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) {
      return absl::NotFoundError(absl::StrCat("blob ", digest, " not found; upload it first"));
    }
    return ErrnoError("stat", path);
  }
  return static_cast<int64_t>(st.st_size);
}

absl::StatusOr<std::unique_ptr<BlobStore::Reader>> BlobStore::OpenReader(absl::string_view digest,
                                                                         int64_t offset) const {
  if (absl::Status s = CheckDigest(digest, "digest"); !s.ok()) return s;
  const std::string path = PathOf(digest);
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) {
      return absl::NotFoundError(absl::StrCat("blob ", digest, " not found"));
    }
    return ErrnoError("open", path);
  }
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    absl::Status s = ErrnoError("stat", path);
    ::close(fd);
    return s;
  }
  if (offset < 0 || offset > st.st_size) {
    ::close(fd);
    return absl::OutOfRangeError(
        absl::StrCat("offset ", offset, " is outside blob ", digest, " of ", st.st_size, " bytes"));
  }
  std::unique_ptr<Reader> reader(new Reader(fd, 0, st.st_size, std::string(digest)));
  std::string prefix;
  for (int64_t at = 0; at < offset; at += static_cast<int64_t>(prefix.size())) {
    const size_t n = static_cast<size_t>(std::min<int64_t>(offset - at, 1 << 20));
    if (absl::Status s = reader->ReadAt(at, n, prefix); !s.ok()) return s;
    if (prefix.empty()) break;  // the file shrank; the check at the end fails
    reader->hash_.Update(prefix);
  }
  reader->offset_ = offset;
  return reader;
}

BlobStore::Reader::~Reader() { ::close(fd_); }

absl::Status BlobStore::Reader::ReadAt(int64_t at, size_t n, std::string& data) const {
  data.resize(n);
  size_t got = 0;
  while (got < n) {
    ssize_t r = ::pread(fd_, data.data() + got, n - got, at + static_cast<int64_t>(got));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return ErrnoError("read", absl::StrCat("blob ", digest_));
    if (r == 0) break;  // the file shrank (Read reports it)
    got += static_cast<size_t>(r);
  }
  data.resize(got);
  return absl::OkStatus();
}

absl::StatusOr<std::string> BlobStore::Reader::Read(size_t max_bytes) {
  const size_t want =
      static_cast<size_t>(std::min<int64_t>(size_ - offset_, static_cast<int64_t>(max_bytes)));
  std::string data;
  if (absl::Status s = ReadAt(offset_, want, data); !s.ok()) return s;
  if (data.size() < want) {
    return absl::DataLossError(absl::StrCat("blob ", digest_, " is shorter on the server than its ",
                                            size_, " bytes; not served: upload it again"));
  }
  hash_.Update(data);
  offset_ += static_cast<int64_t>(data.size());
  if (offset_ >= size_ && !verified_) {
    if (const std::string actual = hash_.Digest(); actual != digest_) {
      spdlog::error("blob {} is corrupt on disk: its content hashes to {}", digest_, actual);
      return absl::DataLossError(
          absl::StrCat("blob ", digest_, " is corrupt on the server (its content hashes to ",
                       actual, "); not served: upload it again or restore it from a backup"));
    }
    verified_ = true;
  }
  return data;
}

absl::StatusOr<BlobInfo> BlobStore::ImportFile(const std::string& path) const {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoError("open", path);
  absl::StatusOr<std::unique_ptr<Upload>> upload = Start(0, "", INT64_MAX);
  if (!upload.ok()) {
    ::close(fd);
    return upload.status();
  }
  std::string buf(1 << 20, '\0');
  absl::Status s;
  while (s.ok()) {
    ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) s = ErrnoError("read", path);
    if (n <= 0) break;
    s = (*upload)->Append(absl::string_view(buf.data(), static_cast<size_t>(n)));
  }
  ::close(fd);
  if (!s.ok()) return s;
  return (*upload)->Commit();
}

}  // namespace qnet::server
