// BlobGrants: who may use which blob. An upload grants the blob to its uploader (for a worker:
// for the jobs it uploaded it for); a completed job grants its artifacts to the job's owner.
// Blobs are content-addressed and shared on disk, so this record, not the file, says whose they
// are. Each grant is appended to a log in the data folder and synced before Grant returns, so a
// grant a caller was told about survives a crash.
//
//   absl::StatusOr<std::unique_ptr<BlobGrants>> grants = BlobGrants::Open(dir + "/blob-grants");
//   (*grants)->Grant("sha256:...", "gpu-node-7", "j-1f2e...");
//   (*grants)->Has("sha256:...", "gpu-node-7", "j-1f2e...");  // true
#ifndef QNET_SERVER_BLOBS_BLOB_GRANTS_H_
#define QNET_SERVER_BLOBS_BLOB_GRANTS_H_

#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace qnet::server {

class BlobGrants {
 public:
  // Reads the log at `path` (created when missing); a torn last line (a crash mid-append) is
  // dropped.
  static absl::StatusOr<std::unique_ptr<BlobGrants>> Open(std::string path);
  ~BlobGrants();
  BlobGrants(const BlobGrants&) = delete;
  BlobGrants& operator=(const BlobGrants&) = delete;

  // `identity` may use `digest`, for job `job_id` ("" = no job). Durable when it returns OK.
  absl::Status Grant(absl::string_view digest, absl::string_view identity,
                     absl::string_view job_id);
  bool Has(absl::string_view digest, absl::string_view identity, absl::string_view job_id) const;
  // For any job or none.
  bool HasAny(absl::string_view digest, absl::string_view identity) const;

 private:
  BlobGrants(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  void Insert(absl::string_view digest, absl::string_view identity, absl::string_view job_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string path_;
  const int fd_;
  mutable absl::Mutex mu_;
  absl::flat_hash_set<std::string> grants_ ABSL_GUARDED_BY(mu_);  // "digest identity job"
  absl::flat_hash_set<std::string> users_ ABSL_GUARDED_BY(mu_);   // "digest identity"
};

}  // namespace qnet::server

#endif  // QNET_SERVER_BLOBS_BLOB_GRANTS_H_
