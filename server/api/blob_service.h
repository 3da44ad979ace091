// BlobServiceImpl: qnet.v1.BlobService over the BlobStore: chunked, content-addressed uploads
// (size limit up front and while streaming, digest verified when the header names one; such an
// upload resumes after a break from GetUploadOffset) and downloads from an offset in 1 MiB
// chunks; byte counts go to qnet_blob_bytes_total.
//
//   BlobServiceImpl blobs(&blob_store, &metrics);
//   builder.RegisterService(&blobs);
#ifndef QNET_SERVER_API_BLOB_SERVICE_H_
#define QNET_SERVER_API_BLOB_SERVICE_H_

#include "qnet/v1/blob.grpc.pb.h"
#include "server/blobs/blob_store.h"
#include "server/metrics/metrics_registry.h"

namespace qnet::server {

class BlobServiceImpl final : public qnet::v1::BlobService::Service {
 public:
  static constexpr size_t kDownloadChunkBytes = 1 << 20;

  BlobServiceImpl(const BlobStore* store, MetricsRegistry* metrics);

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
  const BlobStore* const store_;
  MetricsRegistry* const metrics_;
};

}  // namespace qnet::server

#endif  // QNET_SERVER_API_BLOB_SERVICE_H_
