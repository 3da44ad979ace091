#include "server/api/job_service.h"

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/job/catalog.h"
#include "common/job/job_spec.h"
#include "datasets/dataset_format.h"
#include "server/api/grpc_status.h"
#include "server/auth/grpc_auth.h"
#include "server/scheduling/page_token.h"

namespace qnet::server {
namespace {

grpc::Status RequireId(const std::string& id) {
  if (id.empty()) return {grpc::StatusCode::INVALID_ARGUMENT, "job id is required"};
  if (id.size() > 128) return {grpc::StatusCode::INVALID_ARGUMENT, "job id is too long"};
  return grpc::Status::OK;
}

}  // namespace

JobServiceImpl::JobServiceImpl(Scheduler* scheduler, const JobValidator* validator,
                               DatasetRegistry* datasets, const BlobStore* blobs,
                               const BlobGrants* grants, const Authenticator* auth)
    : scheduler_(scheduler),
      validator_(validator),
      datasets_(datasets),
      blobs_(blobs),
      grants_(grants),
      auth_(auth) {}

absl::StatusOr<qnet::v1::Job> JobServiceImpl::VisibleJob(const grpc::ServerContext& context,
                                                         const std::string& id) {
  absl::StatusOr<Identity> caller = CallerIdentity(*auth_, context);
  if (!caller.ok()) return caller.status();
  absl::StatusOr<qnet::v1::Job> job = scheduler_->Get(id);
  if (!job.ok()) return job.status();
  if (!caller->is_admin() && job->owner() != caller->name) {
    return absl::NotFoundError(absl::StrCat("job ", id, " not found"));
  }
  return job;
}

absl::Status JobServiceImpl::RequireOwnBlob(const Identity& caller, const std::string& digest,
                                            absl::string_view what) const {
  if (caller.is_admin() || grants_->HasAny(digest, caller.name)) return absl::OkStatus();
  return absl::NotFoundError(
      absl::StrCat(what, " ", digest, " is not among your uploads; upload it first"));
}

absl::Status JobServiceImpl::RequireVisibleDataset(const Identity& caller,
                                                   const std::string& name) const {
  if (caller.is_admin()) return absl::OkStatus();
  const std::optional<DatasetEntry> d = datasets_->Find(name);
  if (d.has_value() && DatasetRegistry::VisibleTo(d->info, caller.name)) return absl::OkStatus();
  // Another identity's upload reads as no dataset at all, and is not listed.
  const std::string known = datasets_->Names(caller.name);
  return absl::InvalidArgumentError(
      absl::StrCat(name.empty() ? "dataset is required" : "unknown dataset ",
                   name.empty() ? "" : job::QuoteClientText(name), "; known datasets: ",
                   known.empty() ? "none yet (qnet datasets upload PATH --name NAME)" : known));
}

grpc::Status JobServiceImpl::SubmitJob(grpc::ServerContext* context,
                                       const qnet::v1::SubmitJobRequest* request,
                                       qnet::v1::Job* response) {
  if (absl::Status s = job::ValidateRequestId(request->request_id()); !s.ok()) {
    return ToGrpcStatus(s);
  }
  absl::StatusOr<Identity> caller = CallerIdentity(*auth_, *context);
  if (!caller.ok()) return ToGrpcStatus(caller.status());
  // Fields this server does not know would be stored, and sent to every reader, verbatim.
  qnet::v1::JobSpec spec = request->spec();
  spec.DiscardUnknownFields();
  if (absl::StartsWith(spec.model(), "sha256:")) {
    if (absl::Status s = RequireOwnBlob(*caller, spec.model(), "model"); !s.ok()) {
      return ToGrpcStatus(s);
    }
  }
  if (absl::Status s = RequireVisibleDataset(*caller, spec.dataset()); !s.ok()) {
    return ToGrpcStatus(s);
  }
  if (absl::Status s = validator_->Validate(spec); !s.ok()) return ToGrpcStatus(s);
  absl::StatusOr<qnet::v1::Job> job = scheduler_->Submit(spec, request->request_id(), caller->name);
  if (!job.ok()) return ToGrpcStatus(job.status());
  // A request id names one submission of one owner; it never hands out another's job.
  if (job->owner() != caller->name) {
    return {grpc::StatusCode::ALREADY_EXISTS,
            absl::StrCat("request_id ", request->request_id(),
                         " was used by another identity; choose another")};
  }
  *response = *std::move(job);
  return grpc::Status::OK;
}

grpc::Status JobServiceImpl::GetJob(grpc::ServerContext* context,
                                    const qnet::v1::GetJobRequest* request,
                                    qnet::v1::Job* response) {
  if (grpc::Status s = RequireId(request->id()); !s.ok()) return s;
  absl::StatusOr<qnet::v1::Job> job = VisibleJob(*context, request->id());
  if (!job.ok()) return ToGrpcStatus(job.status());
  *response = *std::move(job);
  return grpc::Status::OK;
}

grpc::Status JobServiceImpl::ListJobs(grpc::ServerContext* context,
                                      const qnet::v1::ListJobsRequest* request,
                                      qnet::v1::ListJobsResponse* response) {
  if (!qnet::v1::JobState_IsValid(request->state())) {
    return {grpc::StatusCode::INVALID_ARGUMENT, "state is not a JobState"};
  }
  if (request->page_size() < 0) {
    return {grpc::StatusCode::INVALID_ARGUMENT, "page_size must not be negative"};
  }
  const int page_size =
      request->page_size() == 0 ? kDefaultPageSize : std::min(request->page_size(), kMaxPageSize);
  absl::StatusOr<int64_t> before_seq = DecodePageToken(request->page_token(), request->state());
  if (!before_seq.ok()) return ToGrpcStatus(before_seq.status());
  absl::StatusOr<Identity> caller = CallerIdentity(*auth_, *context);
  if (!caller.ok()) return ToGrpcStatus(caller.status());
  absl::StatusOr<JobList> list = scheduler_->List(request->state(), *before_seq, page_size,
                                                  caller->is_admin() ? "" : caller->name);
  if (!list.ok()) return ToGrpcStatus(list.status());
  for (qnet::v1::Job& job : list->jobs) *response->add_jobs() = std::move(job);
  response->set_next_page_token(EncodePageToken(request->state(), list->next_before_seq));
  return grpc::Status::OK;
}

grpc::Status JobServiceImpl::WatchJob(grpc::ServerContext* context,
                                      const qnet::v1::WatchJobRequest* request,
                                      grpc::ServerWriter<qnet::v1::Job>* writer) {
  if (grpc::Status s = RequireId(request->id()); !s.ok()) return s;
  if (absl::StatusOr<qnet::v1::Job> job = VisibleJob(*context, request->id()); !job.ok()) {
    return ToGrpcStatus(job.status());
  }
  uint64_t seen = 0;
  while (true) {
    if (context->IsCancelled()) return {grpc::StatusCode::CANCELLED, "watch cancelled by client"};
    absl::StatusOr<JobSnapshot> snap =
        scheduler_->WaitForChange(request->id(), seen, absl::Now() + absl::Seconds(1));
    if (!snap.ok()) return ToGrpcStatus(snap.status());
    const qnet::v1::JobState state = snap->job.state();
    if (snap->version != seen) {
      seen = snap->version;
      if (!writer->Write(snap->job)) {
        return {grpc::StatusCode::CANCELLED, "client went away"};
      }
    }
    if (state == qnet::v1::SUCCEEDED || state == qnet::v1::FAILED || state == qnet::v1::CANCELLED) {
      return grpc::Status::OK;
    }
  }
}

grpc::Status JobServiceImpl::CancelJob(grpc::ServerContext* context,
                                       const qnet::v1::CancelJobRequest* request,
                                       qnet::v1::Job* response) {
  if (grpc::Status s = RequireId(request->id()); !s.ok()) return s;
  if (absl::StatusOr<qnet::v1::Job> job = VisibleJob(*context, request->id()); !job.ok()) {
    return ToGrpcStatus(job.status());
  }
  absl::StatusOr<qnet::v1::Job> job = scheduler_->Cancel(request->id());
  if (!job.ok()) return ToGrpcStatus(job.status());
  *response = *std::move(job);
  return grpc::Status::OK;
}

grpc::Status JobServiceImpl::DeleteJob(grpc::ServerContext* context,
                                       const qnet::v1::DeleteJobRequest* request,
                                       qnet::v1::DeleteJobResponse*) {
  if (grpc::Status s = RequireId(request->id()); !s.ok()) return s;
  if (absl::StatusOr<qnet::v1::Job> job = VisibleJob(*context, request->id()); !job.ok()) {
    return ToGrpcStatus(job.status());
  }
  absl::StatusOr<qnet::v1::Job> deleted = scheduler_->Delete(request->id());
  if (!deleted.ok()) return ToGrpcStatus(deleted.status());
  if (on_deleted_) on_deleted_();
  return grpc::Status::OK;
}

grpc::Status JobServiceImpl::ListDatasets(grpc::ServerContext* context,
                                          const qnet::v1::ListDatasetsRequest*,
                                          qnet::v1::ListDatasetsResponse* response) {
  absl::StatusOr<Identity> caller = CallerIdentity(*auth_, *context);
  if (!caller.ok()) return ToGrpcStatus(caller.status());
  const std::optional<absl::string_view> viewer =
      caller->is_admin() ? std::nullopt : std::optional<absl::string_view>(caller->name);
  for (const qnet::v1::Dataset& d : datasets_->List(viewer)) *response->add_datasets() = d;
  return grpc::Status::OK;
}

grpc::Status JobServiceImpl::CreateDataset(grpc::ServerContext* context,
                                           const qnet::v1::CreateDatasetRequest* request,
                                           qnet::v1::Dataset* response) {
  absl::StatusOr<Identity> caller = CallerIdentity(*auth_, *context);
  if (!caller.ok()) return ToGrpcStatus(caller.status());
  if (absl::Status s = RequireOwnBlob(*caller, request->digest(), "dataset blob"); !s.ok()) {
    return ToGrpcStatus(s);
  }
  // The registry refuses a name another identity's upload holds.
  absl::StatusOr<qnet::v1::Dataset> dataset = datasets_->CreateUploaded(
      request->name(), request->digest(), request->replace(), *blobs_, caller->name);
  if (!dataset.ok()) return ToGrpcStatus(dataset.status());
  *response = *std::move(dataset);
  return grpc::Status::OK;
}

grpc::Status JobServiceImpl::ListModels(grpc::ServerContext*, const qnet::v1::ListModelsRequest*,
                                        qnet::v1::ListModelsResponse* response) {
  for (const qnet::v1::Model& m : job::ZooModels()) *response->add_models() = m;
  return grpc::Status::OK;
}

grpc::Status JobServiceImpl::GetCapabilities(grpc::ServerContext*,
                                             const qnet::v1::GetCapabilitiesRequest*,
                                             qnet::v1::Capabilities* response) {
  *response = job::Capabilities(datasets::DatasetFormatNames(), validator_->limits());
  return grpc::Status::OK;
}

}  // namespace qnet::server
