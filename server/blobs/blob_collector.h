// BlobCollector: removes blobs nothing needs any more, so what clients and workers upload does
// not stay on disk for ever. The caller (RetentionSweeper) says what is live: the models and
// artifacts of every stored job, the checkpoints of unfinished ones, every dataset's files. Of
// the rest, a blob goes when
//  - it was uploaded only for jobs that have ended or are gone (a finished job's checkpoints, a
//    deleted job's artifacts): at once;
//  - otherwise (a client's upload no job uses, anything without a grant) once it is older than
//    the grace period, which leaves a client time to submit the job for a model it uploaded.
// Blobs stored after `scan_start` (while the caller was gathering the live set) are kept for the
// next round. Removed blobs' grants are forgotten, which gives their uploaders their quota back.
//
//   BlobCollector collector(&blobs, &grants, /*grace=*/absl::Hours(24));
//   absl::StatusOr<BlobCollector::Result> r = collector.Collect(live, active_jobs, start, now);
#ifndef QNET_SERVER_BLOBS_BLOB_COLLECTOR_H_
#define QNET_SERVER_BLOBS_BLOB_COLLECTOR_H_

#include <cstdint>
#include <string>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/blobs/blob_grants.h"
#include "server/blobs/blob_store.h"

namespace qnet::server {

class BlobCollector {
 public:
  struct Result {
    int64_t blobs_removed = 0;
    int64_t bytes_removed = 0;
  };

  // Both must outlive the collector.
  BlobCollector(const BlobStore* blobs, BlobGrants* grants, absl::Duration grace)
      : blobs_(blobs), grants_(grants), grace_(grace) {}

  // `live`: digests in use; `active_jobs`: ids of QUEUED and RUNNING jobs.
  absl::StatusOr<Result> Collect(const absl::flat_hash_set<std::string>& live,
                                 const absl::flat_hash_set<std::string>& active_jobs,
                                 absl::Time scan_start, absl::Time now);

 private:
  // Whether `digest` was uploaded only for jobs that are no longer active.
  bool OnlyForEndedJobs(const std::string& digest,
                        const absl::flat_hash_set<std::string>& active_jobs) const;

  const BlobStore* const blobs_;
  BlobGrants* const grants_;
  const absl::Duration grace_;
};

}  // namespace qnet::server

#endif  // QNET_SERVER_BLOBS_BLOB_COLLECTOR_H_
