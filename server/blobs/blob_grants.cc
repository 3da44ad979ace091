#include "server/blobs/blob_grants.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
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

absl::StatusOr<std::unique_ptr<BlobGrants>> BlobGrants::Open(std::string path) {
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
  std::unique_ptr<BlobGrants> grants(new BlobGrants(std::move(path), fd));
  absl::MutexLock lock(&grants->mu_);
  // Only newline-terminated lines were fully written.
  const size_t end = text.rfind('\n');
  if (end != std::string::npos) {
    for (absl::string_view line : absl::StrSplit(absl::string_view(text).substr(0, end), '\n')) {
      const std::vector<absl::string_view> f = absl::StrSplit(line, ' ');
      if (f.size() == 3) grants->Insert(f[0], f[1], f[2] == kNoJob ? "" : f[2]);
    }
  }
  return grants;
}

BlobGrants::~BlobGrants() { ::close(fd_); }

void BlobGrants::Insert(absl::string_view digest, absl::string_view identity,
                        absl::string_view job_id) {
  grants_.insert(absl::StrCat(digest, " ", identity, " ", job_id));
  users_.insert(absl::StrCat(digest, " ", identity));
}

absl::Status BlobGrants::Grant(absl::string_view digest, absl::string_view identity,
                               absl::string_view job_id) {
  if (absl::Status s = CheckDigest(digest, "digest"); !s.ok()) return s;
  if (absl::Status s = CheckField(identity, "identity"); !s.ok()) return s;
  if (!job_id.empty()) {
    if (absl::Status s = CheckField(job_id, "job id"); !s.ok()) return s;
  }
  absl::MutexLock lock(&mu_);
  if (grants_.contains(absl::StrCat(digest, " ", identity, " ", job_id))) return absl::OkStatus();
  const std::string line =
      absl::StrCat(digest, " ", identity, " ", job_id.empty() ? kNoJob : job_id, "\n");
  if (::write(fd_, line.data(), line.size()) != static_cast<ssize_t>(line.size()) ||
      ::fdatasync(fd_) != 0) {
    return absl::UnavailableError(absl::StrCat("cannot record the blob's uploader in ", path_, ": ",
                                               std::strerror(errno), "; try again"));
  }
  Insert(digest, identity, job_id);
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

}  // namespace qnet::server
