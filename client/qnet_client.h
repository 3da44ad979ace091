// QnetClient: the C++ client of qnetd's public API (JobService and BlobService). The `qnet` CLI,
// the worker (for blobs) and C++ pipelines use it. Every call returns errors as values: the gRPC
// code is kept (INVALID_ARGUMENT for a bad spec, NOT_FOUND, UNAVAILABLE when the server cannot be
// reached, ...) and the message says what failed.
//
//   auto client = qnet::client::QnetClient::Connect("127.0.0.1:50051");
//   absl::StatusOr<qnet::client::UploadResult> model = client->UploadFile("net.pt", "model");
//   qnet::v1::JobSpec spec;
//   spec.set_model(model->digest);
//   spec.set_dataset("fashion-mnist");
//   spec.set_weight_bits(2);
//   absl::StatusOr<qnet::v1::Job> job = client->SubmitJob(spec, "my-request-1");
//   client->WatchJob(job->id(), [](const qnet::v1::Job& j) { return true; });  // until terminal
//   client->DownloadBlob(job->artifacts(0).digest(), "/tmp/model.pt");
//
// Thread-safe: one client may be shared by threads (gRPC stubs are).
#ifndef QNET_CLIENT_QNET_CLIENT_H_
#define QNET_CLIENT_QNET_CLIENT_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "qnet/v1/blob.grpc.pb.h"
#include "qnet/v1/job.grpc.pb.h"

namespace qnet::client {

struct ClientOptions {
  // Deadline of unary calls (submit, get, list, cancel, stat). Streams have none: a watch lasts
  // as long as the job, an upload as long as the file.
  std::chrono::milliseconds call_timeout{30000};
  // Bytes per upload chunk; the server accepts at most 1 MiB.
  size_t upload_chunk_bytes = size_t{1} << 20;
  // Page size asked for by ListJobs (the server may cap it).
  int list_page_size = 100;
  // How many times DownloadBlob reconnects and resumes when the stream breaks mid-way.
  int download_retries = 3;
  // How many times UploadFile resumes an upload whose stream broke mid-way.
  int upload_retries = 3;
  // Deadline of CreateDataset: the server reads the whole dataset before it answers.
  std::chrono::milliseconds dataset_check_timeout{std::chrono::minutes(30)};
};

struct UploadResult {
  std::string digest;  // "sha256:<hex>"
  int64_t size_bytes = 0;
  bool already_present = false;  // the server had it: nothing was sent
  // Bytes an earlier, interrupted upload had left on the server, which were not sent again.
  int64_t resumed_from = 0;
};

struct DatasetUpload {
  v1::Dataset dataset;  // the server's record
  UploadResult blob;    // the uploaded file (the packed .tar for a folder)
};

class QnetClient {
 public:
  // A plaintext channel to `address` ("host:port") without a token; MakeChannel (connection.h)
  // makes one with credentials. Does not connect until the first call.
  static std::unique_ptr<QnetClient> Connect(const std::string& address,
                                             ClientOptions options = {});
  QnetClient(std::shared_ptr<grpc::Channel> channel, std::string address,
             ClientOptions options = {});

  const std::string& address() const { return address_; }

  absl::StatusOr<v1::Job> SubmitJob(const v1::JobSpec& spec, const std::string& request_id);
  absl::StatusOr<v1::Job> GetJob(const std::string& id);
  // Every job in `state` (JOB_STATE_UNSPECIFIED: all), following page tokens to the end.
  absl::StatusOr<std::vector<v1::Job>> ListJobs(v1::JobState state = v1::JOB_STATE_UNSPECIFIED);
  // Calls `on_snapshot` for each snapshot the server streams. Returns OK when the stream ends
  // (the server ends it after a terminal state) or when `on_snapshot` returns false.
  absl::Status WatchJob(const std::string& id,
                        const std::function<bool(const v1::Job&)>& on_snapshot);
  absl::StatusOr<v1::Job> CancelJob(const std::string& id);
  // Deletes a finished job and its artifacts (FAILED_PRECONDITION while it is queued or running).
  absl::Status DeleteJob(const std::string& id);
  absl::StatusOr<std::vector<v1::Dataset>> ListDatasets();
  absl::StatusOr<std::vector<v1::Model>> ListModels();
  // What the server accepts: export formats (and the artifact kinds each produces), dataset
  // formats, bit ranges.
  absl::StatusOr<v1::Capabilities> GetCapabilities();

  // Registers uploaded blob `digest` as dataset `name` once the server has checked it; the same
  // content under the same name again returns the existing record (see CreateDatasetRequest).
  absl::StatusOr<v1::Dataset> CreateDataset(const std::string& name, const std::string& digest,
                                            bool replace = false);
  // Uploads `path` and registers it as dataset `name`: a folder (packed into a deterministic
  // .tar in `temp_dir` first, dataset_archive.h, removed afterwards), or a .tar, .tar.gz, .zip or
  // .npz file as it is.
  absl::StatusOr<DatasetUpload> UploadDataset(const std::string& path, const std::string& name,
                                              bool replace = false,
                                              const std::string& temp_dir = "");

  // Uploads a file as a blob of `kind` ("model", "dataset", "checkpoint", "artifact"). Its sha256
  // is computed first; a blob the server already has (StatBlob) is not sent again, and an upload
  // the server holds part of (GetUploadOffset, an earlier call that broke off) continues there.
  // A stream that breaks is resumed up to `upload_retries` times.
  absl::StatusOr<UploadResult> UploadFile(const std::string& path, const std::string& kind);
  // Bytes of an interrupted upload of `digest` the server holds (0 also for a server that does
  // not resume uploads).
  absl::StatusOr<int64_t> GetUploadOffset(const std::string& digest);
  // Size of a stored blob; NOT_FOUND when the server lacks it.
  absl::StatusOr<int64_t> StatBlob(const std::string& digest);
  // Downloads blob `digest` to `path`. Bytes land in `path`.part first; an interrupted download
  // resumes from that file's size (now or on a later call), and `path` appears only once the
  // whole content matches the digest (DATA_LOSS otherwise, and the partial file is dropped).
  // A `path` already holding the right content is kept as is. Returns the size.
  absl::StatusOr<int64_t> DownloadBlob(const std::string& digest, const std::string& path);

 private:
  void SetDeadline(grpc::ClientContext& context) const;
  // One Upload stream sending `path` from byte `offset`.
  absl::Status UploadOnce(const std::string& path, const UploadResult& blob,
                          const std::string& kind, int64_t offset);
  // One Download stream appending to `part` from its current size; OK once all bytes arrived.
  absl::Status DownloadOnce(const std::string& digest, const std::string& part,
                            int64_t* total_size);

  std::shared_ptr<grpc::Channel> channel_;
  std::string address_;
  ClientOptions options_;
  std::unique_ptr<v1::JobService::Stub> jobs_;
  std::unique_ptr<v1::BlobService::Stub> blobs_;
};

// True for SUCCEEDED, FAILED and CANCELLED.
bool IsTerminal(v1::JobState state);

}  // namespace qnet::client

#endif  // QNET_CLIENT_QNET_CLIENT_H_
