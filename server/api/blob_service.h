// BlobServiceImpl: qnet.v1.BlobService over the BlobStore: chunked, content-addressed uploads
// (size limit up front and while streaming, digest verified when the header names one; such an
// upload resumes after a break from GetUploadOffset) and downloads from an offset in 1 MiB
// chunks; byte counts go to qnet_blob_bytes_total. An upload that sends nothing for
// `upload_idle` is cancelled (DEADLINE_EXCEEDED; its temp file goes, as for any upload dropped
// before Commit), so stalled clients cannot hold threads and temp files forever.
//
//   BlobServiceImpl blobs(&blob_store, &metrics, absl::Seconds(60));
//   builder.RegisterService(&blobs);
#ifndef QNET_SERVER_API_BLOB_SERVICE_H_
#define QNET_SERVER_API_BLOB_SERVICE_H_

#include <condition_variable>
#include <mutex>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/time/time.h"
#include "qnet/v1/blob.grpc.pb.h"
#include "server/blobs/blob_store.h"
#include "server/metrics/metrics_registry.h"

namespace qnet::server {

class BlobServiceImpl final : public qnet::v1::BlobService::Service {
 public:
  static constexpr size_t kDownloadChunkBytes = 1 << 20;

  BlobServiceImpl(const BlobStore* store, MetricsRegistry* metrics, absl::Duration upload_idle);
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

  const BlobStore* const store_;
  MetricsRegistry* const metrics_;
  IdleUploads idle_uploads_;
};

}  // namespace qnet::server

#endif  // QNET_SERVER_API_BLOB_SERVICE_H_
