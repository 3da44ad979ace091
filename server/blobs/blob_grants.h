// BlobGrants: who may use which blob. An upload grants the blob to its uploader (for a worker:
// for the jobs it uploaded it for); a completed job grants its artifacts to the job's owner.
// Blobs are content-addressed and shared on disk, so this record, not the file, says whose they
// are. Each grant is appended to a log in the data folder and synced before Grant returns, so a
// grant a caller was told about survives a crash; Forget (the blob collector's, for blobs it
// removed) rewrites the log without them, so it stays as large as what is stored.
//
// Upload quota: the blobs granted to an identity for no job (its own uploads: models, datasets)
// count against `upload_quota_bytes` (0 = unlimited) at their stored size; a grant that would
// pass it is refused with RESOURCE_EXHAUSTED and CheckUpload refuses such an upload up front.
// The use is rebuilt from the log and the blob store at Open, so it holds across restarts.
//
//   absl::StatusOr<std::unique_ptr<BlobGrants>> grants =
//       BlobGrants::Open(dir + "/blob-grants", &blob_store, /*upload_quota_bytes=*/10 << 30);
//   (*grants)->Grant("sha256:...", "gpu-node-7", "j-1f2e...");
//   (*grants)->Has("sha256:...", "gpu-node-7", "j-1f2e...");  // true
#ifndef QNET_SERVER_BLOBS_BLOB_GRANTS_H_
#define QNET_SERVER_BLOBS_BLOB_GRANTS_H_

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace qnet::server {

class BlobStore;

class BlobGrants {
 public:
  // One grant: `identity` may use the blob for job `job_id` ("" = its own upload).
  struct Holder {
    std::string identity;
    std::string job_id;
  };

  // Reads the log at `path` (created when missing); a torn last line (a crash mid-append) is
  // dropped. `blobs` (may be null: no upload accounting) gives the sizes the quota counts, and
  // grants of blobs it no longer holds are dropped.
  static absl::StatusOr<std::unique_ptr<BlobGrants>> Open(std::string path,
                                                          const BlobStore* blobs = nullptr,
                                                          int64_t upload_quota_bytes = 0);
  ~BlobGrants();
  BlobGrants(const BlobGrants&) = delete;
  BlobGrants& operator=(const BlobGrants&) = delete;

  // `identity` may use `digest`, for job `job_id` ("" = no job). Durable when it returns OK;
  // RESOURCE_EXHAUSTED when a job-less grant would take `identity` past its upload quota.
  absl::Status Grant(absl::string_view digest, absl::string_view identity,
                     absl::string_view job_id);
  bool Has(absl::string_view digest, absl::string_view identity, absl::string_view job_id) const;
  // For any job or none.
  bool HasAny(absl::string_view digest, absl::string_view identity) const;
  // Every grant of `digest`.
  std::vector<Holder> HoldersOf(absl::string_view digest) const;

  // RESOURCE_EXHAUSTED when `size_bytes` more of uploads would take `identity` past its quota.
  absl::Status CheckUpload(absl::string_view identity, int64_t size_bytes) const;
  // Bytes of `identity`'s own uploads still stored.
  int64_t UploadedBytes(absl::string_view identity) const;

  // Drops every grant of `digests` (blobs that were removed) and rewrites the log without them.
  absl::Status Forget(const absl::flat_hash_set<std::string>& digests);

 private:
  struct Uploads {
    int64_t bytes = 0;
    absl::flat_hash_map<std::string, int64_t> sizes;  // digest -> size
  };

  BlobGrants(std::string path, int fd, const BlobStore* blobs, int64_t upload_quota_bytes)
      : path_(std::move(path)), fd_(fd), blobs_(blobs), upload_quota_bytes_(upload_quota_bytes) {}
  void Insert(absl::string_view digest, absl::string_view identity, absl::string_view job_id,
              int64_t size) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  int64_t SizeOf(absl::string_view digest) const;
  absl::Status QuotaError(absl::string_view identity, int64_t used, int64_t more) const;

  const std::string path_;
  int fd_ ABSL_GUARDED_BY(mu_);
  const BlobStore* const blobs_;
  const int64_t upload_quota_bytes_;
  mutable absl::Mutex mu_;
  absl::flat_hash_set<std::string> grants_ ABSL_GUARDED_BY(mu_);  // "digest identity job"
  absl::flat_hash_set<std::string> users_ ABSL_GUARDED_BY(mu_);   // "digest identity"
  absl::flat_hash_map<std::string, std::vector<Holder>> holders_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, Uploads> uploads_ ABSL_GUARDED_BY(mu_);  // by identity
};

}  // namespace qnet::server

#endif  // QNET_SERVER_BLOBS_BLOB_GRANTS_H_
