// WorkerServiceImpl: the worker protocol (qnet.v1.WorkerService) over the Scheduler: long-poll
// AcquireLease (with the job's dataset as downloadable blobs, or its path on a shared volume),
// Heartbeat (progress, checkpoint; answers cancel_requested and the new expiry), CompleteLease
// and FailLease. Stale or unknown
// lease tokens get FAILED_PRECONDITION; digests a worker reports must name uploaded blobs.
// Who may call it is settled before a handler runs (server/auth/grpc_auth.h); on top, a lease
// belongs to the worker identity that acquired it: Heartbeat, CompleteLease and FailLease from
// another identity get PERMISSION_DENIED (a stale token: FAILED_PRECONDITION, whoever sends it,
// so a worker whose lease ended drops the job), and its checkpoints and artifacts must be blobs
// that identity uploaded for that job. Admins are not held to either.
//
//   WorkerServiceImpl workers(&scheduler, &datasets, &blob_store, &grants, &authenticator);
//   builder.RegisterService(&workers);
#ifndef QNET_SERVER_API_WORKER_SERVICE_H_
#define QNET_SERVER_API_WORKER_SERVICE_H_

#include <string>

#include "qnet/v1/worker.grpc.pb.h"
#include "server/auth/authenticator.h"
#include "server/blobs/blob_grants.h"
#include "server/blobs/blob_store.h"
#include "server/datasets/dataset_registry.h"
#include "server/scheduling/scheduler.h"

namespace qnet::server {

class WorkerServiceImpl final : public qnet::v1::WorkerService::Service {
 public:
  WorkerServiceImpl(Scheduler* scheduler, const DatasetRegistry* datasets, const BlobStore* blobs,
                    BlobGrants* grants, const Authenticator* auth);

  grpc::Status AcquireLease(grpc::ServerContext* context,
                            const qnet::v1::AcquireLeaseRequest* request,
                            qnet::v1::AcquireLeaseResponse* response) override;
  grpc::Status Heartbeat(grpc::ServerContext* context, const qnet::v1::HeartbeatRequest* request,
                         qnet::v1::HeartbeatResponse* response) override;
  grpc::Status CompleteLease(grpc::ServerContext* context,
                             const qnet::v1::CompleteLeaseRequest* request,
                             qnet::v1::CompleteLeaseResponse* response) override;
  grpc::Status FailLease(grpc::ServerContext* context, const qnet::v1::FailLeaseRequest* request,
                         qnet::v1::FailLeaseResponse* response) override;

 private:
  Scheduler* const scheduler_;
  const DatasetRegistry* const datasets_;
  const BlobStore* const blobs_;
  BlobGrants* const grants_;
  const Authenticator* const auth_;
};

}  // namespace qnet::server

#endif  // QNET_SERVER_API_WORKER_SERVICE_H_
