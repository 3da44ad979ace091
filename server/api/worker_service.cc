#include "server/api/worker_service.h"

#include <algorithm>
#include <chrono>

#include <string>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/utf8.h"
#include "server/api/grpc_status.h"
#include "server/scheduling/proto_time.h"
#include "spdlog/spdlog.h"

namespace qnet::server {
namespace {

constexpr size_t kMaxErrorBytes = 8192;

grpc::Status RequireLeaseIds(const std::string& job_id, const std::string& token) {
  if (job_id.empty() || token.empty()) {
    return {grpc::StatusCode::INVALID_ARGUMENT,
            "job_id and lease_token are required (from AcquireLease)"};
  }
  return grpc::Status::OK;
}

// INVALID_ARGUMENT unless `digest` names a stored blob.
absl::Status CheckUploaded(const BlobStore& blobs, const std::string& digest,
                           absl::string_view what) {
  if (absl::Status s = CheckDigest(digest, what); !s.ok()) return s;
  if (!blobs.Contains(digest)) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " ", digest, " not uploaded; upload it with BlobService.Upload first"));
  }
  return absl::OkStatus();
}

// Compares every byte whatever the first mismatch, so the reply time says nothing about how
// much of a guessed token was right.
bool SameToken(absl::string_view a, absl::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

grpc::Status Authorize(const grpc::ServerContext& context, const std::string& token) {
  if (token.empty()) return grpc::Status::OK;
  const auto& metadata = context.client_metadata();
  const auto it = metadata.find("authorization");
  if (it == metadata.end()) {
    return {grpc::StatusCode::UNAUTHENTICATED,
            "this server requires a worker token: start qnet-worker with --token-file FILE or "
            "QNET_WORKER_TOKEN (the token of qnetd's --worker-token-file)"};
  }
  const absl::string_view value(it->second.data(), it->second.size());
  constexpr absl::string_view kBearer = "Bearer ";
  if (!absl::StartsWith(value, kBearer) || !SameToken(value.substr(kBearer.size()), token)) {
    return {grpc::StatusCode::PERMISSION_DENIED,
            "the worker token does not match this server's --worker-token-file"};
  }
  return grpc::Status::OK;
}

}  // namespace

WorkerServiceImpl::WorkerServiceImpl(Scheduler* scheduler, const DatasetRegistry* datasets,
                                     const BlobStore* blobs, std::string worker_token)
    : scheduler_(scheduler),
      datasets_(datasets),
      blobs_(blobs),
      worker_token_(std::move(worker_token)) {}

grpc::Status WorkerServiceImpl::AcquireLease(grpc::ServerContext* context,
                                             const qnet::v1::AcquireLeaseRequest* request,
                                             qnet::v1::AcquireLeaseResponse* response) {
  if (grpc::Status s = Authorize(*context, worker_token_); !s.ok()) return s;
  if (request->worker_id().empty() || request->worker_id().size() > 128) {
    return {grpc::StatusCode::INVALID_ARGUMENT,
            "worker_id is required (at most 128 characters; e.g. the worker's host name)"};
  }
  absl::Time deadline = absl::Now() + absl::Seconds(std::max(0, request->wait_seconds()));
  // Answer "no job" a little before the client's own deadline rather than let it time out.
  if (const auto d = context->deadline(); d != std::chrono::system_clock::time_point::max()) {
    deadline = std::min(deadline, absl::FromChrono(d) - absl::Milliseconds(200));
  }
  while (true) {
    absl::StatusOr<std::optional<Lease>> lease =
        scheduler_->Acquire(request->worker_id(), request->device(), deadline - absl::Now(),
                            [context] { return context->IsCancelled(); });
    if (!lease.ok()) return ToGrpcStatus(lease.status());
    if (!lease->has_value()) return grpc::Status::OK;  // no job within the wait: no `job`
    Lease& l = **lease;
    const std::optional<DatasetEntry> dataset = datasets_->Find(l.job.spec().dataset());
    if (!dataset.has_value()) {
      // The operator restarted without this dataset (or its upload is gone): the job can never
      // run here.
      const std::string error =
          absl::StrCat("dataset ", l.job.spec().dataset(),
                       " is no longer on this server (flag --dataset, or upload it again)");
      spdlog::error("job {}: {}", l.job.id(), error);
      scheduler_->Fail(l.job.id(), l.token, error, /*retryable=*/false, /*cancelled=*/false)
          .IgnoreError();
      continue;
    }
    *response->mutable_job() = std::move(l.job);
    response->set_lease_token(l.token);
    *response->mutable_expire_time() = ToTimestamp(l.expire_time);
    for (const qnet::v1::DatasetFile& f : dataset->files) *response->add_dataset_files() = f;
    if (dataset->in_place) response->set_dataset_path(dataset->path);
    response->set_dataset_format(dataset->info.format());
    return grpc::Status::OK;
  }
}

grpc::Status WorkerServiceImpl::Heartbeat(grpc::ServerContext* context,
                                          const qnet::v1::HeartbeatRequest* request,
                                          qnet::v1::HeartbeatResponse* response) {
  if (grpc::Status s = Authorize(*context, worker_token_); !s.ok()) return s;
  if (grpc::Status s = RequireLeaseIds(request->job_id(), request->lease_token()); !s.ok()) {
    return s;
  }
  if (!request->checkpoint_digest().empty()) {
    if (absl::Status s = CheckUploaded(*blobs_, request->checkpoint_digest(), "checkpoint");
        !s.ok()) {
      return ToGrpcStatus(s);
    }
  }
  absl::StatusOr<HeartbeatReply> reply = scheduler_->Heartbeat(
      request->job_id(), request->lease_token(),
      request->has_progress() ? &request->progress() : nullptr, request->checkpoint_digest());
  if (!reply.ok()) return ToGrpcStatus(reply.status());
  response->set_cancel_requested(reply->cancel_requested);
  *response->mutable_expire_time() = ToTimestamp(reply->expire_time);
  return grpc::Status::OK;
}

grpc::Status WorkerServiceImpl::CompleteLease(grpc::ServerContext* context,
                                              const qnet::v1::CompleteLeaseRequest* request,
                                              qnet::v1::CompleteLeaseResponse*) {
  if (grpc::Status s = Authorize(*context, worker_token_); !s.ok()) return s;
  if (grpc::Status s = RequireLeaseIds(request->job_id(), request->lease_token()); !s.ok()) {
    return s;
  }
  for (const qnet::v1::Artifact& a : request->artifacts()) {
    if (absl::Status s = CheckUploaded(*blobs_, a.digest(), absl::StrCat("artifact ", a.kind()));
        !s.ok()) {
      return ToGrpcStatus(s);
    }
  }
  return ToGrpcStatus(scheduler_->Complete(request->job_id(), request->lease_token(),
                                           request->metrics(), request->artifacts()));
}

grpc::Status WorkerServiceImpl::FailLease(grpc::ServerContext* context,
                                          const qnet::v1::FailLeaseRequest* request,
                                          qnet::v1::FailLeaseResponse*) {
  if (grpc::Status s = Authorize(*context, worker_token_); !s.ok()) return s;
  if (grpc::Status s = RequireLeaseIds(request->job_id(), request->lease_token()); !s.ok()) {
    return s;
  }
  // Cut on a character boundary: a stored error with a split character makes the job unreadable.
  const std::string error = TruncateUtf8(request->error(), kMaxErrorBytes);
  return ToGrpcStatus(scheduler_->Fail(request->job_id(), request->lease_token(), error,
                                       request->retryable(), request->cancelled()));
}

}  // namespace qnet::server
