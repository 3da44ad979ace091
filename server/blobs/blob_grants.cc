#include "server/blobs/blob_grants.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/atomic_file.h"
#include "server/blobs/blob_store.h"

namespace qnet::server {
namespace {

// Log lines: "DIGEST IDENTITY JOB", JOB "-" for none.
constexpr absl::string_view kNoJob = "-";

absl::Status CheckField(absl::string_view value, absl::string_view what) {
  if (value.empty() || value.find_first_of(" \t\r\n") != absl::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " \"", value, "\" is empty or has a space"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<BlobGrants>> BlobGrants::Open(std::string path,
                                                             const BlobStore* blobs,
                                                             int64_t upload_quota_bytes) {
  std::string text;
  {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream buffer;
    if (in) buffer << in.rdbuf();
    text = buffer.str();
  }
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot open ", path, ": ", std::strerror(errno)));
  }
  std::unique_ptr<BlobGrants> grants(
      new BlobGrants(std::move(path), fd, blobs, upload_quota_bytes));
  absl::MutexLock lock(&grants->mu_);
  // Only newline-terminated lines were fully written.
  const size_t end = text.rfind('\n');
  if (end != std::string::npos) {
    for (absl::string_view line : absl::StrSplit(absl::string_view(text).substr(0, end), '\n')) {
      const std::vector<absl::string_view> f = absl::StrSplit(line, ' ');
      if (f.size() != 3) continue;
      int64_t size = 0;
      if (blobs != nullptr) {
        absl::StatusOr<int64_t> stored = blobs->Stat(f[0]);
        if (!stored.ok()) continue;  // removed since
        size = *stored;
      }
      grants->Insert(f[0], f[1], f[2] == kNoJob ? "" : f[2], size);
    }
  }
  return grants;
}

BlobGrants::~BlobGrants() {
  absl::MutexLock lock(&mu_);
  ::close(fd_);
}

void BlobGrants::Insert(absl::string_view digest, absl::string_view identity,
                        absl::string_view job_id, int64_t size) {
  if (!grants_.insert(absl::StrCat(digest, " ", identity, " ", job_id)).second) return;
  users_.insert(absl::StrCat(digest, " ", identity));
  holders_[digest].push_back({std::string(identity), std::string(job_id)});
  if (job_id.empty()) {
    Uploads& u = uploads_[identity];
    if (u.sizes.try_emplace(digest, size).second) u.bytes += size;
  }
}

int64_t BlobGrants::SizeOf(absl::string_view digest) const {
  if (blobs_ == nullptr) return 0;
  absl::StatusOr<int64_t> size = blobs_->Stat(digest);
  return size.ok() ? *size : 0;
}

absl::Status BlobGrants::QuotaError(absl::string_view identity, int64_t used, int64_t more) const {
  return absl::ResourceExhaustedError(absl::StrCat(
      "upload quota: ", identity, " has ", used, " bytes of uploads stored and the limit is ",
      upload_quota_bytes_, " (qnetd --quota-upload-bytes); this upload of ", more,
      " bytes would pass it. Delete jobs you no longer need: uploads no job or dataset uses "
      "are removed after the grace period (qnetd --upload-grace-hours)"));
}

absl::Status BlobGrants::CheckUpload(absl::string_view identity, int64_t size_bytes) const {
  if (upload_quota_bytes_ <= 0) return absl::OkStatus();
  const int64_t used = UploadedBytes(identity);
  // An upload of unknown size is refused only once nothing more fits.
  if (used + std::max<int64_t>(size_bytes, 1) > upload_quota_bytes_) {
    return QuotaError(identity, used, size_bytes);
  }
  return absl::OkStatus();
}

int64_t BlobGrants::UploadedBytes(absl::string_view identity) const {
  absl::MutexLock lock(&mu_);
  const auto it = uploads_.find(identity);
  return it == uploads_.end() ? 0 : it->second.bytes;
}

absl::Status BlobGrants::Grant(absl::string_view digest, absl::string_view identity,
                               absl::string_view job_id) {
  if (absl::Status s = CheckDigest(digest, "digest"); !s.ok()) return s;
  if (absl::Status s = CheckField(identity, "identity"); !s.ok()) return s;
  if (!job_id.empty()) {
    if (absl::Status s = CheckField(job_id, "job id"); !s.ok()) return s;
  }
  const int64_t size = job_id.empty() ? SizeOf(digest) : 0;
  absl::MutexLock lock(&mu_);
  if (grants_.contains(absl::StrCat(digest, " ", identity, " ", job_id))) return absl::OkStatus();
  if (job_id.empty() && upload_quota_bytes_ > 0) {
    const auto it = uploads_.find(identity);
    const int64_t used = it == uploads_.end() ? 0 : it->second.bytes;
    if (used + size > upload_quota_bytes_) return QuotaError(identity, used, size);
  }
  const std::string line =
      absl::StrCat(digest, " ", identity, " ", job_id.empty() ? kNoJob : job_id, "\n");
  if (::write(fd_, line.data(), line.size()) != static_cast<ssize_t>(line.size()) ||
      ::fdatasync(fd_) != 0) {
    return absl::UnavailableError(absl::StrCat("cannot record the blob's uploader in ", path_, ": ",
                                               std::strerror(errno), "; try again"));
  }
  Insert(digest, identity, job_id, size);
  return absl::OkStatus();
}

bool BlobGrants::Has(absl::string_view digest, absl::string_view identity,
                     absl::string_view job_id) const {
  absl::MutexLock lock(&mu_);
  return grants_.contains(absl::StrCat(digest, " ", identity, " ", job_id));
}

bool BlobGrants::HasAny(absl::string_view digest, absl::string_view identity) const {
  absl::MutexLock lock(&mu_);
  return users_.contains(absl::StrCat(digest, " ", identity));
}

std::vector<BlobGrants::Holder> BlobGrants::HoldersOf(absl::string_view digest) const {
  absl::MutexLock lock(&mu_);
  const auto it = holders_.find(digest);
  return it == holders_.end() ? std::vector<Holder>() : it->second;
}

absl::Status BlobGrants::Forget(const absl::flat_hash_set<std::string>& digests) {
  absl::MutexLock lock(&mu_);
  bool changed = false;
  for (const std::string& digest : digests) {
    const auto it = holders_.find(digest);
    if (it == holders_.end()) continue;
    changed = true;
    for (const Holder& h : it->second) {
      grants_.erase(absl::StrCat(digest, " ", h.identity, " ", h.job_id));
      users_.erase(absl::StrCat(digest, " ", h.identity));
      if (!h.job_id.empty()) continue;
      const auto u = uploads_.find(h.identity);
      if (u == uploads_.end()) continue;
      u->second.bytes -= u->second.sizes[digest];
      u->second.sizes.erase(digest);
      if (u->second.sizes.empty()) uploads_.erase(u);
    }
    holders_.erase(it);
  }
  if (!changed) return absl::OkStatus();
  std::string text;
  for (const auto& [digest, holders] : holders_) {
    for (const Holder& h : holders) {
      absl::StrAppend(&text, digest, " ", h.identity, " ",
                      h.job_id.empty() ? kNoJob : absl::string_view(h.job_id), "\n");
    }
  }
  // Replaced whole, then reopened for appends; a crash before the rename keeps the old log,
  // whose grants of removed blobs Open drops.
  if (absl::Status s = WriteFileAtomically(path_, text); !s.ok()) return s;
  const int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot reopen ", path_, ": ", std::strerror(errno)));
  }
  ::close(fd_);
  fd_ = fd;
  return absl::OkStatus();
}

}  // namespace qnet::server
