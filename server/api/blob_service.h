// BlobServiceImpl: qnet.v1.BlobService over the BlobStore: chunked, content-addressed uploads
// (size limit up front and while streaming, digest verified when the header names one; such an
// upload resumes after a break from GetUploadOffset) and downloads from an offset in 1 MiB
// chunks; byte counts go to qnet_blob_bytes_total. An upload that sends nothing for
// `upload_idle` is cancelled (DEADLINE_EXCEEDED; its temp file goes, as for any upload dropped
// before Commit), so stalled clients cannot hold threads and temp files forever.
//
// Blobs are shared on disk but not between identities: an upload is recorded as the caller's
// (a worker's for the job named in the header, else for every job it holds), and StatBlob and
// Download answer NOT_FOUND, as for a missing blob, unless the caller may read it: a client its
// uploads and its jobs' artifacts, a worker its uploads for and the inputs (model, dataset
// files, checkpoint) of the jobs it holds now, an admin everything.
//
// A resumable upload belongs to the identity that began it: only it may continue (another's
// offset > 0 gets NOT_FOUND) or query it (GetUploadOffset answers 0 to others, as for none), and
// another's upload of the same digest from offset 0 runs unresumable beside it without touching
// it. The store keeps the owner beside the partial bytes, so this holds across restarts.
//
//   BlobServiceImpl blobs(&blob_store, &metrics, &grants, &scheduler, &datasets, &authenticator,
//                         absl::Seconds(60));
//   builder.RegisterService(&blobs);
#ifndef QNET_SERVER_API_BLOB_SERVICE_H_
#define QNET_SERVER_API_BLOB_SERVICE_H_

#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "qnet/v1/blob.grpc.pb.h"

#include "server/auth/authenticator.h"
#include "server/blobs/blob_grants.h"
#include "server/blobs/blob_store.h"
#include "server/datasets/dataset_registry.h"
#include "server/metrics/metrics_registry.h"
#include "server/scheduling/scheduler.h"

namespace qnet::server {

class BlobServiceImpl final : public qnet::v1::BlobService::Service {
 public:
  static constexpr size_t kDownloadChunkBytes = 1 << 20;

  BlobServiceImpl(const BlobStore* store, MetricsRegistry* metrics, BlobGrants* grants,
                  Scheduler* scheduler, const DatasetRegistry* datasets, const Authenticator* auth,
                  absl::Duration upload_idle);
  ~BlobServiceImpl() override;

  grpc::Status Upload(grpc::ServerContext* context,
                      grpc::ServerReader<qnet::v1::UploadRequest>* reader,
                      qnet::v1::UploadResponse* response) override;
  grpc::Status Download(grpc::ServerContext* context, const qnet::v1::DownloadRequest* request,
                        grpc::ServerWriter<qnet::v1::DownloadChunk>* writer) override;
  grpc::Status StatBlob(grpc::ServerContext* context, const qnet::v1::StatBlobRequest* request,
                        qnet::v1::StatBlobResponse* response) override;
  grpc::Status GetUploadOffset(grpc::ServerContext* context,
                               const qnet::v1::GetUploadOffsetRequest* request,
                               qnet::v1::GetUploadOffsetResponse* response) override;

 private:
  // Cancels uploads that received nothing for `idle`: a synchronous ServerReader::Read has no
  // deadline of its own.
  class IdleUploads {
   public:
    explicit IdleUploads(absl::Duration idle);
    ~IdleUploads();
    // Starts or restarts the idle clock of `context`.
    void Touch(grpc::ServerContext* context);
    // Whether `context` was cancelled for being idle. Forgets it.
    bool Remove(grpc::ServerContext* context);

   private:
    void Run();

    const absl::Duration idle_;
    std::mutex mu_;
    std::condition_variable cv_;
    bool stop_ = false;
    absl::flat_hash_map<grpc::ServerContext*, absl::Time> last_activity_;
    absl::flat_hash_set<grpc::ServerContext*> expired_;
    std::thread thread_;
  };

  // OK when the caller may read `digest`; NOT_FOUND otherwise.
  absl::Status MayRead(const grpc::ServerContext& context, const std::string& digest);
  // Whether an upload of `digest` by `caller` from `offset` may use the resumable (partial) file:
  // true when the caller began it or starts it now, false when another identity holds it (the
  // upload then runs unresumable); NOT_FOUND for offset > 0 on an upload the caller did not begin.
  absl::StatusOr<bool> ClaimResumable(const std::string& digest, const std::string& caller,
                                      int64_t offset);
  // Who began the resumable upload of `digest` ("" when nobody): the map, else what the store
  // recorded before a restart (then cached in the map).
  std::string ResumableOwner(const std::string& digest)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(resumable_mu_);
  // The jobs a worker's upload is recorded for; PERMISSION_DENIED for a job it does not hold.
  absl::StatusOr<std::vector<std::string>> UploadJobs(const Identity& caller,
                                                      const std::string& job_id);

  const BlobStore* const store_;
  MetricsRegistry* const metrics_;
  BlobGrants* const grants_;
  Scheduler* const scheduler_;
  const DatasetRegistry* const datasets_;
  const Authenticator* const auth_;
  IdleUploads idle_uploads_;
  absl::Mutex resumable_mu_;
  // Digest -> the identity whose resumable upload of it is unfinished.
  absl::flat_hash_map<std::string, std::string> resumable_owners_ ABSL_GUARDED_BY(resumable_mu_);
};

}  // namespace qnet::server

#endif  // QNET_SERVER_API_BLOB_SERVICE_H_
