#include "client/qnet_client.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <system_error>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "client/connection.h"
#include "client/dataset_archive.h"
#include "client/grpc_status.h"
#include "common/digest.h"

namespace qnet::client {
namespace {

namespace fs = std::filesystem;

int64_t FileSizeOrZero(const std::string& path) {
  std::error_code ec;
  const auto size = fs::file_size(path, ec);
  return ec ? 0 : static_cast<int64_t>(size);
}

bool Retryable(absl::StatusCode code) {
  return code == absl::StatusCode::kUnavailable || code == absl::StatusCode::kDeadlineExceeded ||
         code == absl::StatusCode::kAborted || code == absl::StatusCode::kInternal ||
         code == absl::StatusCode::kUnknown;
}

}  // namespace

bool IsTerminal(v1::JobState state) {
  return state == v1::SUCCEEDED || state == v1::FAILED || state == v1::CANCELLED;
}

std::unique_ptr<QnetClient> QnetClient::Connect(const std::string& address, ClientOptions options) {
  ConnectionOptions connection;
  connection.address = address;
  return std::make_unique<QnetClient>(MakeChannel(connection), address, options);
}

QnetClient::QnetClient(std::shared_ptr<grpc::Channel> channel, std::string address,
                       ClientOptions options)
    : channel_(std::move(channel)),
      address_(std::move(address)),
      options_(options),
      jobs_(v1::JobService::NewStub(channel_)),
      blobs_(v1::BlobService::NewStub(channel_)) {}

void QnetClient::SetDeadline(grpc::ClientContext& context) const {
  context.set_deadline(std::chrono::system_clock::now() + options_.call_timeout);
}

absl::StatusOr<v1::Job> QnetClient::SubmitJob(const v1::JobSpec& spec,
                                              const std::string& request_id) {
  v1::SubmitJobRequest request;
  *request.mutable_spec() = spec;
  request.set_request_id(request_id);
  grpc::ClientContext context;
  SetDeadline(context);
  v1::Job job;
  grpc::Status s = jobs_->SubmitJob(&context, request, &job);
  if (!s.ok()) return FromGrpc(s, "SubmitJob", address_);
  return job;
}

absl::StatusOr<v1::Job> QnetClient::GetJob(const std::string& id) {
  v1::GetJobRequest request;
  request.set_id(id);
  grpc::ClientContext context;
  SetDeadline(context);
  v1::Job job;
  grpc::Status s = jobs_->GetJob(&context, request, &job);
  if (!s.ok()) return FromGrpc(s, "GetJob", address_);
  return job;
}

absl::StatusOr<std::vector<v1::Job>> QnetClient::ListJobs(v1::JobState state) {
  std::vector<v1::Job> jobs;
  v1::ListJobsRequest request;
  request.set_state(state);
  request.set_page_size(options_.list_page_size);
  // A server repeating a token would loop forever; no real listing has this many pages.
  for (int page = 0; page < 100000; ++page) {
    grpc::ClientContext context;
    SetDeadline(context);
    v1::ListJobsResponse response;
    grpc::Status s = jobs_->ListJobs(&context, request, &response);
    if (!s.ok()) return FromGrpc(s, "ListJobs", address_);
    for (auto& job : *response.mutable_jobs()) jobs.push_back(std::move(job));
    if (response.next_page_token().empty()) return jobs;
    if (response.next_page_token() == request.page_token()) {
      return absl::InternalError("ListJobs: the server returned the same page token twice");
    }
    request.set_page_token(response.next_page_token());
  }
  return absl::InternalError("ListJobs: too many pages");
}

absl::Status QnetClient::WatchJob(const std::string& id,
                                  const std::function<bool(const v1::Job&)>& on_snapshot) {
  v1::WatchJobRequest request;
  request.set_id(id);
  grpc::ClientContext context;
  auto reader = jobs_->WatchJob(&context, request);
  v1::Job job;
  bool stopped = false;
  while (reader->Read(&job)) {
    if (!on_snapshot(job)) {
      stopped = true;
      context.TryCancel();
      break;
    }
  }
  grpc::Status s = reader->Finish();
  if (stopped) return absl::OkStatus();
  return FromGrpc(s, "WatchJob", address_);
}

absl::StatusOr<v1::Job> QnetClient::CancelJob(const std::string& id) {
  v1::CancelJobRequest request;
  request.set_id(id);
  grpc::ClientContext context;
  SetDeadline(context);
  v1::Job job;
  grpc::Status s = jobs_->CancelJob(&context, request, &job);
  if (!s.ok()) return FromGrpc(s, "CancelJob", address_);
  return job;
}

absl::Status QnetClient::DeleteJob(const std::string& id) {
  v1::DeleteJobRequest request;
  request.set_id(id);
  grpc::ClientContext context;
  SetDeadline(context);
  v1::DeleteJobResponse response;
  grpc::Status s = jobs_->DeleteJob(&context, request, &response);
  if (!s.ok()) return FromGrpc(s, "DeleteJob", address_);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<v1::Dataset>> QnetClient::ListDatasets() {
  grpc::ClientContext context;
  SetDeadline(context);
  v1::ListDatasetsResponse response;
  grpc::Status s = jobs_->ListDatasets(&context, v1::ListDatasetsRequest(), &response);
  if (!s.ok()) return FromGrpc(s, "ListDatasets", address_);
  return std::vector<v1::Dataset>(response.datasets().begin(), response.datasets().end());
}

absl::StatusOr<std::vector<v1::Model>> QnetClient::ListModels() {
  grpc::ClientContext context;
  SetDeadline(context);
  v1::ListModelsResponse response;
  grpc::Status s = jobs_->ListModels(&context, v1::ListModelsRequest(), &response);
  if (!s.ok()) return FromGrpc(s, "ListModels", address_);
  return std::vector<v1::Model>(response.models().begin(), response.models().end());
}

absl::StatusOr<v1::Capabilities> QnetClient::GetCapabilities() {
  grpc::ClientContext context;
  SetDeadline(context);
  v1::Capabilities response;
  grpc::Status s = jobs_->GetCapabilities(&context, v1::GetCapabilitiesRequest(), &response);
  if (!s.ok()) return FromGrpc(s, "GetCapabilities", address_);
  return response;
}

absl::StatusOr<int64_t> QnetClient::StatBlob(const std::string& digest) {
  v1::StatBlobRequest request;
  request.set_digest(digest);
  grpc::ClientContext context;
  SetDeadline(context);
  v1::StatBlobResponse response;
  grpc::Status s = blobs_->StatBlob(&context, request, &response);
  if (!s.ok()) return FromGrpc(s, "StatBlob", address_);
  return response.size_bytes();
}

absl::StatusOr<int64_t> QnetClient::GetUploadOffset(const std::string& digest) {
  v1::GetUploadOffsetRequest request;
  request.set_digest(digest);
  grpc::ClientContext context;
  SetDeadline(context);
  v1::GetUploadOffsetResponse response;
  grpc::Status s = blobs_->GetUploadOffset(&context, request, &response);
  if (s.error_code() == grpc::StatusCode::UNIMPLEMENTED) return 0;  // an older server
  if (!s.ok()) return FromGrpc(s, "GetUploadOffset", address_);
  return response.offset();
}

absl::Status QnetClient::UploadOnce(const std::string& path, const UploadResult& blob,
                                    const std::string& kind, int64_t offset) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("upload: cannot open ", path));
  in.seekg(offset);
  grpc::ClientContext context;
  v1::UploadResponse response;
  auto writer = blobs_->Upload(&context, &response);
  v1::UploadRequest header;
  header.mutable_header()->set_size_bytes(blob.size_bytes);
  header.mutable_header()->set_digest(blob.digest);
  header.mutable_header()->set_kind(kind);
  header.mutable_header()->set_offset(offset);
  // A failed Write means the server ended the call; Finish() carries its reason.
  bool open = writer->Write(header);
  std::string buffer(options_.upload_chunk_bytes, '\0');
  int64_t sent = offset;
  while (open && in) {
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    const auto n = static_cast<size_t>(in.gcount());
    if (n == 0) break;
    v1::UploadRequest chunk;
    chunk.set_chunk(buffer.data(), n);
    open = writer->Write(chunk);
    sent += static_cast<int64_t>(n);
  }
  if (in.bad()) {
    context.TryCancel();
    writer->Finish();
    return absl::DataLossError(absl::StrCat("upload: read error in ", path));
  }
  if (open) writer->WritesDone();
  grpc::Status s = writer->Finish();
  if (!s.ok()) return FromGrpc(s, absl::StrCat("Upload ", path), address_);
  if (open && sent != blob.size_bytes) {
    return absl::DataLossError(absl::StrCat("upload: ", path, " changed while uploading (", sent,
                                            " of ", blob.size_bytes, " bytes)"));
  }
  if (response.digest() != blob.digest) {
    return absl::DataLossError(absl::StrCat("upload: server stored ", path, " as ",
                                            response.digest(), ", expected ", blob.digest));
  }
  return absl::OkStatus();
}

absl::StatusOr<UploadResult> QnetClient::UploadFile(const std::string& path,
                                                    const std::string& kind) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) {
    return absl::NotFoundError(absl::StrCat("upload: ", path, " is not a readable file"));
  }
  const int64_t size = FileSizeOrZero(path);
  absl::StatusOr<std::string> digest = FileDigest(path);
  if (!digest.ok()) return digest.status();

  UploadResult result{.digest = *digest, .size_bytes = size};
  absl::StatusOr<int64_t> stat = StatBlob(*digest);
  if (stat.ok() && *stat == size) {
    result.already_present = true;
    return result;
  }
  if (!stat.ok() && stat.status().code() != absl::StatusCode::kNotFound &&
      stat.status().code() != absl::StatusCode::kUnimplemented) {
    return stat.status();
  }
  absl::Status status;
  for (int attempt = 0; attempt <= options_.upload_retries; ++attempt) {
    if (attempt > 0) std::this_thread::sleep_for(std::chrono::milliseconds(200 << (attempt - 1)));
    absl::StatusOr<int64_t> held = size > 0 ? GetUploadOffset(*digest) : 0;
    const int64_t offset = held.ok() && *held <= size ? *held : 0;
    status = held.ok() ? UploadOnce(path, result, kind, offset) : held.status();
    if (status.ok()) {
      result.resumed_from = offset;
      return result;
    }
    // Another try resumes: after a broken stream, while another upload of the same content
    // ends, or from the start when the server's partial bytes did not match after all.
    const bool again = Retryable(status.code()) || status.code() == absl::StatusCode::kOutOfRange ||
                       (offset > 0 && status.code() == absl::StatusCode::kInvalidArgument);
    if (!again) return status;
  }
  return status;
}

absl::StatusOr<v1::Dataset> QnetClient::CreateDataset(const std::string& name,
                                                      const std::string& digest, bool replace) {
  v1::CreateDatasetRequest request;
  request.set_name(name);
  request.set_digest(digest);
  request.set_replace(replace);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + options_.dataset_check_timeout);
  v1::Dataset dataset;
  grpc::Status s = jobs_->CreateDataset(&context, request, &dataset);
  if (!s.ok()) return FromGrpc(s, "CreateDataset", address_);
  return dataset;
}

absl::StatusOr<DatasetUpload> QnetClient::UploadDataset(const std::string& path,
                                                        const std::string& name, bool replace,
                                                        const std::string& temp_dir) {
  std::error_code ec;
  std::string file = path;
  std::string packed;
  if (fs::is_directory(path, ec)) {
    const fs::path dir = temp_dir.empty() ? fs::temp_directory_path(ec) : fs::path(temp_dir);
    packed = (dir / absl::StrCat("qnet-dataset-", ::getpid(), "-", std::random_device()(), ".tar"))
                 .string();
    absl::StatusOr<int64_t> files = WriteDatasetTar(path, packed);
    if (!files.ok()) {
      fs::remove(packed, ec);
      return absl::Status(files.status().code(),
                          absl::StrCat("packing ", path, ": ", files.status().message()));
    }
    file = packed;
  } else if (!fs::is_regular_file(path, ec)) {
    return absl::NotFoundError(absl::StrCat(
        path,
        " is neither a folder nor a file; give an image folder, a .tar, .tar.gz or .zip "
        "of one, or an .npz"));
  }
  absl::StatusOr<UploadResult> blob = UploadFile(file, "dataset");
  if (!packed.empty()) fs::remove(packed, ec);
  if (!blob.ok()) return blob.status();
  absl::StatusOr<v1::Dataset> dataset = CreateDataset(name, blob->digest, replace);
  if (!dataset.ok()) return dataset.status();
  return DatasetUpload{*std::move(dataset), *std::move(blob)};
}

absl::Status QnetClient::DownloadOnce(const std::string& digest, const std::string& part,
                                      int64_t* total_size) {
  const int64_t start = FileSizeOrZero(part);
  v1::DownloadRequest request;
  request.set_digest(digest);
  request.set_offset(start);
  grpc::ClientContext context;
  auto reader = blobs_->Download(&context, request);
  std::ofstream out(part, std::ios::binary | std::ios::app);
  if (!out) {
    context.TryCancel();
    reader->Finish();
    return absl::PermissionDeniedError(absl::StrCat("download: cannot write ", part));
  }
  int64_t offset = start;
  v1::DownloadChunk chunk;
  while (reader->Read(&chunk)) {
    if (chunk.offset() != offset) {
      context.TryCancel();
      reader->Finish();
      return absl::InternalError(absl::StrCat("download ", digest, ": server sent offset ",
                                              chunk.offset(), ", expected ", offset));
    }
    *total_size = chunk.total_size();
    out.write(chunk.data().data(), static_cast<std::streamsize>(chunk.data().size()));
    if (!out) {
      context.TryCancel();
      reader->Finish();
      return absl::ResourceExhaustedError(absl::StrCat("download: write to ", part, " failed"));
    }
    offset += static_cast<int64_t>(chunk.data().size());
  }
  out.close();
  grpc::Status s = reader->Finish();
  if (!s.ok()) return FromGrpc(s, absl::StrCat("Download ", digest), address_);
  if (*total_size >= 0 && offset != *total_size) {
    return absl::UnavailableError(
        absl::StrCat("download ", digest, ": stream ended at byte ", offset, " of ", *total_size));
  }
  return absl::OkStatus();
}

absl::StatusOr<int64_t> QnetClient::DownloadBlob(const std::string& digest,
                                                 const std::string& path) {
  if (!IsValidDigest(digest)) {
    return absl::InvalidArgumentError(
        absl::StrCat("download: '", digest, "' is not a sha256:<64 hex> digest"));
  }
  std::error_code ec;
  const fs::path target(path);
  if (target.has_parent_path()) fs::create_directories(target.parent_path(), ec);
  if (fs::is_regular_file(target, ec)) {
    absl::StatusOr<std::string> have = FileDigest(path);
    if (have.ok() && *have == digest) return FileSizeOrZero(path);
  }

  const std::string part = path + ".part";
  absl::Status status;
  for (int attempt = 0; attempt <= options_.download_retries; ++attempt) {
    int64_t total = -1;
    const int64_t before = FileSizeOrZero(part);
    status = DownloadOnce(digest, part, &total);
    if (status.ok()) break;
    // A partial file the server will not resume from (offset past the end): maybe it is whole.
    if (before > 0 && (status.code() == absl::StatusCode::kOutOfRange ||
                       status.code() == absl::StatusCode::kInvalidArgument)) {
      absl::StatusOr<std::string> have = FileDigest(part);
      if (have.ok() && *have == digest) {
        status = absl::OkStatus();
        break;
      }
      fs::remove(part, ec);
      continue;
    }
    if (status.code() == absl::StatusCode::kInternal) fs::remove(part, ec);  // offset mismatch
    if (!Retryable(status.code())) return status;
    if (attempt < options_.download_retries) {
      std::this_thread::sleep_for(std::chrono::milliseconds(200 << attempt));
    }
  }
  if (!status.ok()) return status;

  absl::StatusOr<std::string> got = FileDigest(part);
  if (!got.ok()) return got.status();
  if (*got != digest) {
    fs::remove(part, ec);
    return absl::DataLossError(absl::StrCat("download: content of ", digest, " hashed to ", *got,
                                            "; the partial file was dropped, retry"));
  }
  fs::rename(part, target, ec);
  if (ec) {
    return absl::PermissionDeniedError(
        absl::StrCat("download: cannot move ", part, " to ", path, ": ", ec.message()));
  }
  return FileSizeOrZero(path);
}

}  // namespace qnet::client
