// JobServiceImpl: the public job API (qnet.v1.JobService) over the Scheduler: validates specs
// (JobValidator), submits idempotently by request_id, reads, pages, watches and cancels jobs,
// lists the datasets and zoo models this server offers, and registers uploaded datasets.
// A job belongs to the identity that submitted it: other clients get NOT_FOUND for it, as for a
// job that does not exist (admins see every job); a model or dataset blob must be the caller's
// own upload, and an uploaded dataset the caller's own (operator datasets are everyone's).
// DeleteJob removes a finished job (the store first) and calls the deletion hook, which has the
// blob collector remove what only that job used.
//
//   JobServiceImpl jobs(&scheduler, &validator, &datasets, &blobs, &grants, &authenticator);
//   grpc::ServerBuilder builder;
//   builder.RegisterService(&jobs);
#ifndef QNET_SERVER_API_JOB_SERVICE_H_
#define QNET_SERVER_API_JOB_SERVICE_H_

#include <functional>
#include <string>
#include <utility>

#include "qnet/v1/job.grpc.pb.h"
#include "server/api/job_validator.h"
#include "server/auth/authenticator.h"
#include "server/blobs/blob_grants.h"
#include "server/blobs/blob_store.h"
#include "server/datasets/dataset_registry.h"
#include "server/scheduling/scheduler.h"

namespace qnet::server {

class JobServiceImpl final : public qnet::v1::JobService::Service {
 public:
  static constexpr int kDefaultPageSize = 50;
  static constexpr int kMaxPageSize = 500;

  // All must outlive the service.
  JobServiceImpl(Scheduler* scheduler, const JobValidator* validator, DatasetRegistry* datasets,
                 const BlobStore* blobs, const BlobGrants* grants, const Authenticator* auth);

  grpc::Status SubmitJob(grpc::ServerContext* context, const qnet::v1::SubmitJobRequest* request,
                         qnet::v1::Job* response) override;
  grpc::Status GetJob(grpc::ServerContext* context, const qnet::v1::GetJobRequest* request,
                      qnet::v1::Job* response) override;
  grpc::Status ListJobs(grpc::ServerContext* context, const qnet::v1::ListJobsRequest* request,
                        qnet::v1::ListJobsResponse* response) override;
  grpc::Status WatchJob(grpc::ServerContext* context, const qnet::v1::WatchJobRequest* request,
                        grpc::ServerWriter<qnet::v1::Job>* writer) override;
  grpc::Status CancelJob(grpc::ServerContext* context, const qnet::v1::CancelJobRequest* request,
                         qnet::v1::Job* response) override;
  grpc::Status DeleteJob(grpc::ServerContext* context, const qnet::v1::DeleteJobRequest* request,
                         qnet::v1::DeleteJobResponse* response) override;
  grpc::Status ListDatasets(grpc::ServerContext* context,
                            const qnet::v1::ListDatasetsRequest* request,
                            qnet::v1::ListDatasetsResponse* response) override;
  grpc::Status CreateDataset(grpc::ServerContext* context,
                             const qnet::v1::CreateDatasetRequest* request,
                             qnet::v1::Dataset* response) override;
  grpc::Status ListModels(grpc::ServerContext* context, const qnet::v1::ListModelsRequest* request,
                          qnet::v1::ListModelsResponse* response) override;
  grpc::Status GetCapabilities(grpc::ServerContext* context,
                               const qnet::v1::GetCapabilitiesRequest* request,
                               qnet::v1::Capabilities* response) override;

  // Called after each deleted job (set before serving).
  void OnJobDeleted(std::function<void()> hook) { on_deleted_ = std::move(hook); }

 private:
  // The job `id` when the caller may see it; NOT_FOUND alike for another owner's and no job.
  absl::StatusOr<qnet::v1::Job> VisibleJob(const grpc::ServerContext& context,
                                           const std::string& id);
  // NOT_FOUND unless the caller uploaded `digest` (admins may use any blob).
  absl::Status RequireOwnBlob(const Identity& caller, const std::string& digest,
                              absl::string_view what) const;
  // INVALID_ARGUMENT unless the caller may use dataset `name`; lists the ones it may.
  absl::Status RequireVisibleDataset(const Identity& caller, const std::string& name) const;

  Scheduler* const scheduler_;
  const JobValidator* const validator_;
  DatasetRegistry* const datasets_;
  const BlobStore* const blobs_;
  const BlobGrants* const grants_;
  const Authenticator* const auth_;
  std::function<void()> on_deleted_;
};

}  // namespace qnet::server

#endif  // QNET_SERVER_API_JOB_SERVICE_H_
