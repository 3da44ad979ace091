#include "server/blobs/blob_collector.h"

#include <vector>

#include "spdlog/spdlog.h"

namespace qnet::server {

bool BlobCollector::OnlyForEndedJobs(const std::string& digest,
                                     const absl::flat_hash_set<std::string>& active_jobs) const {
  const std::vector<BlobGrants::Holder> holders = grants_->HoldersOf(digest);
  if (holders.empty()) return false;
  for (const BlobGrants::Holder& h : holders) {
    if (h.job_id.empty() || active_jobs.contains(h.job_id)) return false;
  }
  return true;
}

absl::StatusOr<BlobCollector::Result> BlobCollector::Collect(
    const absl::flat_hash_set<std::string>& live,
    const absl::flat_hash_set<std::string>& active_jobs, absl::Time scan_start, absl::Time now) {
  absl::StatusOr<std::vector<StoredBlob>> stored = blobs_->List();
  if (!stored.ok()) return stored.status();
  Result result;
  absl::flat_hash_set<std::string> removed;
  absl::Status first_error;
  for (const StoredBlob& b : *stored) {
    if (live.contains(b.digest) || b.modified >= scan_start) continue;
    if (now - b.modified < grace_ && !OnlyForEndedJobs(b.digest, active_jobs)) continue;
    if (absl::Status s = blobs_->Remove(b.digest); !s.ok() && !absl::IsNotFound(s)) {
      spdlog::warn("blob collector: {}", s.ToString());
      if (first_error.ok()) first_error = s;
      continue;
    }
    removed.insert(b.digest);
    ++result.blobs_removed;
    result.bytes_removed += b.size_bytes;
  }
  if (absl::Status s = grants_->Forget(removed); !s.ok()) return s;
  if (!first_error.ok()) return first_error;
  return result;
}

}  // namespace qnet::server
