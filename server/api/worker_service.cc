#include "server/api/worker_service.h"

#include <algorithm>
#include <chrono>

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/utf8.h"
#include "server/api/grpc_status.h"
#include "server/auth/grpc_auth.h"
#include "server/scheduling/proto_time.h"
#include "spdlog/spdlog.h"

namespace qnet::server {
namespace {

// What a worker reports is stored with the job and sent to every reader of it, so each part is
// bounded: with the spec (job::kMaxJobSpecBytes) a job stays well under Scheduler::kMaxPageBytes.
constexpr size_t kMaxErrorBytes = 8192;
constexpr size_t kMaxProgressBytes = 4096;
constexpr size_t kMaxMetricsBytes = 512 << 10;  // 2000 epochs and 10,000 class names fit
constexpr int kMaxArtifacts = 16;
constexpr size_t kMaxArtifactBytes = 1024;

// INVALID_ARGUMENT when `message` (unknown fields already dropped) is over `limit` bytes.
absl::Status CheckReportSize(const google::protobuf::Message& message, size_t limit,
                             absl::string_view what) {
  if (const size_t bytes = message.ByteSizeLong(); bytes > limit) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " is ", bytes, " bytes; at most ", limit, " bytes are accepted"));
  }
  return absl::OkStatus();
}

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

// The caller, when it holds job `job_id`'s lease (admins hold every lease).
absl::StatusOr<Identity> LeaseHolder(const Authenticator& auth, const grpc::ServerContext& context,
                                     Scheduler& scheduler, const std::string& job_id,
                                     const std::string& token) {
  absl::StatusOr<Identity> caller = CallerIdentity(auth, context);
  if (!caller.ok() || caller->is_admin()) return caller;
  absl::StatusOr<qnet::v1::Job> job = scheduler.Get(job_id);
  if (!job.ok()) return job.status();
  if (job->lease_holder() != caller->name) {
    // A lease that ended is stale for the worker that held it, also once the job is another
    // worker's: FAILED_PRECONDITION tells it to drop the job.
    if (absl::Status current = scheduler.CheckLease(job_id, token); !current.ok()) return current;
    return absl::PermissionDeniedError(absl::StrCat(
        "job ", job_id, " is not leased to ", caller->name, "; only its lease holder may report"));
  }
  return caller;
}

// OK when `holder` uploaded `digest` for job `job_id`.
absl::Status RequireOwnUpload(const BlobGrants& grants, const Identity& holder,
                              const std::string& digest, const std::string& job_id,
                              absl::string_view what) {
  if (holder.is_admin() || grants.Has(digest, holder.name, job_id)) return absl::OkStatus();
  return absl::PermissionDeniedError(
      absl::StrCat(what, " ", digest, " was not uploaded by ", holder.name, " for job ", job_id));
}

}  // namespace

WorkerServiceImpl::WorkerServiceImpl(Scheduler* scheduler, const DatasetRegistry* datasets,
                                     const BlobStore* blobs, BlobGrants* grants,
                                     const Authenticator* auth)
    : scheduler_(scheduler), datasets_(datasets), blobs_(blobs), grants_(grants), auth_(auth) {}

grpc::Status WorkerServiceImpl::AcquireLease(grpc::ServerContext* context,
                                             const qnet::v1::AcquireLeaseRequest* request,
                                             qnet::v1::AcquireLeaseResponse* response) {
  absl::StatusOr<Identity> caller = CallerIdentity(*auth_, *context);
  if (!caller.ok()) return ToGrpcStatus(caller.status());
  if (request->worker_id().empty() || request->worker_id().size() > 128) {
    return {grpc::StatusCode::INVALID_ARGUMENT,
            "worker_id is required (at most 128 characters; e.g. the worker's host name)"};
  }
  if (request->device().size() > 128) {
    return {grpc::StatusCode::INVALID_ARGUMENT, "device must be at most 128 characters"};
  }
  absl::Time deadline = absl::Now() + absl::Seconds(std::max(0, request->wait_seconds()));
  // Answer "no job" a little before the client's own deadline rather than let it time out.
  if (const auto d = context->deadline(); d != std::chrono::system_clock::time_point::max()) {
    deadline = std::min(deadline, absl::FromChrono(d) - absl::Milliseconds(200));
  }
  while (true) {
    absl::StatusOr<std::optional<Lease>> lease = scheduler_->Acquire(
        request->worker_id(), request->device(), deadline - absl::Now(),
        [context] { return context->IsCancelled(); }, caller->name);
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
  if (grpc::Status s = RequireLeaseIds(request->job_id(), request->lease_token()); !s.ok()) {
    return s;
  }
  absl::StatusOr<Identity> holder =
      LeaseHolder(*auth_, *context, *scheduler_, request->job_id(), request->lease_token());
  if (!holder.ok()) return ToGrpcStatus(holder.status());
  qnet::v1::Progress progress = request->progress();
  progress.DiscardUnknownFields();
  if (absl::Status s = CheckReportSize(progress, kMaxProgressBytes, "progress"); !s.ok()) {
    return ToGrpcStatus(s);
  }
  if (!request->checkpoint_digest().empty()) {
    if (absl::Status s = CheckUploaded(*blobs_, request->checkpoint_digest(), "checkpoint");
        !s.ok()) {
      return ToGrpcStatus(s);
    }
    if (absl::Status s = RequireOwnUpload(*grants_, *holder, request->checkpoint_digest(),
                                          request->job_id(), "checkpoint");
        !s.ok()) {
      return ToGrpcStatus(s);
    }
  }
  absl::StatusOr<HeartbeatReply> reply = scheduler_->Heartbeat(
      request->job_id(), request->lease_token(), request->has_progress() ? &progress : nullptr,
      request->checkpoint_digest());
  if (!reply.ok()) return ToGrpcStatus(reply.status());
  response->set_cancel_requested(reply->cancel_requested);
  *response->mutable_expire_time() = ToTimestamp(reply->expire_time);
  return grpc::Status::OK;
}

grpc::Status WorkerServiceImpl::CompleteLease(grpc::ServerContext* context,
                                              const qnet::v1::CompleteLeaseRequest* request,
                                              qnet::v1::CompleteLeaseResponse*) {
  if (grpc::Status s = RequireLeaseIds(request->job_id(), request->lease_token()); !s.ok()) {
    return s;
  }
  absl::StatusOr<Identity> holder =
      LeaseHolder(*auth_, *context, *scheduler_, request->job_id(), request->lease_token());
  if (!holder.ok()) return ToGrpcStatus(holder.status());
  absl::StatusOr<qnet::v1::Job> job = scheduler_->Get(request->job_id());
  if (!job.ok()) return ToGrpcStatus(job.status());
  qnet::v1::Metrics metrics = request->metrics();
  metrics.DiscardUnknownFields();
  if (absl::Status s = CheckReportSize(metrics, kMaxMetricsBytes, "metrics"); !s.ok()) {
    return ToGrpcStatus(s);
  }
  if (request->artifacts_size() > kMaxArtifacts) {
    return {grpc::StatusCode::INVALID_ARGUMENT,
            absl::StrCat(request->artifacts_size(), " artifacts; at most ", kMaxArtifacts,
                         " are accepted")};
  }
  google::protobuf::RepeatedPtrField<qnet::v1::Artifact> artifacts = request->artifacts();
  for (qnet::v1::Artifact& a : artifacts) {
    a.DiscardUnknownFields();
    if (absl::Status s = CheckReportSize(a, kMaxArtifactBytes, "an artifact entry"); !s.ok()) {
      return ToGrpcStatus(s);
    }
  }
  for (const qnet::v1::Artifact& a : artifacts) {
    const std::string what = absl::StrCat("artifact ", a.kind());
    if (absl::Status s = CheckUploaded(*blobs_, a.digest(), what); !s.ok()) return ToGrpcStatus(s);
    if (absl::Status s = RequireOwnUpload(*grants_, *holder, a.digest(), request->job_id(), what);
        !s.ok()) {
      return ToGrpcStatus(s);
    }
  }
  // The owner may download the artifacts once the job shows them: granted first. (Without
  // authentication everyone is admin and needs no grant.)
  if (!job->owner().empty() && !auth_->open()) {
    for (const qnet::v1::Artifact& a : artifacts) {
      if (absl::Status s = grants_->Grant(a.digest(), job->owner(), job->id()); !s.ok()) {
        return ToGrpcStatus(s);
      }
    }
  }
  return ToGrpcStatus(
      scheduler_->Complete(request->job_id(), request->lease_token(), metrics, artifacts));
}

grpc::Status WorkerServiceImpl::FailLease(grpc::ServerContext* context,
                                          const qnet::v1::FailLeaseRequest* request,
                                          qnet::v1::FailLeaseResponse*) {
  if (grpc::Status s = RequireLeaseIds(request->job_id(), request->lease_token()); !s.ok()) {
    return s;
  }
  if (absl::StatusOr<Identity> holder =
          LeaseHolder(*auth_, *context, *scheduler_, request->job_id(), request->lease_token());
      !holder.ok()) {
    return ToGrpcStatus(holder.status());
  }
  // Cut on a character boundary: a stored error with a split character makes the job unreadable.
  const std::string error = TruncateUtf8(request->error(), kMaxErrorBytes);
  return ToGrpcStatus(scheduler_->Fail(request->job_id(), request->lease_token(), error,
                                       request->retryable(), request->cancelled()));
}

}  // namespace qnet::server
