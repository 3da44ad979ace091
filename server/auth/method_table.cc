#include "server/auth/method_table.h"

namespace qnet::server {
namespace {

constexpr RoleSet kClient = RoleBit(Role::kClient);
constexpr RoleSet kWorker = RoleBit(Role::kWorker);
constexpr RoleSet kAdmin = RoleBit(Role::kAdmin);

}  // namespace

const std::vector<std::pair<absl::string_view, RoleSet>>& MethodTable() {
  static const auto* const table = new std::vector<std::pair<absl::string_view, RoleSet>>{
      // Jobs: clients see their own (the service filters by owner), admins every one.
      {"/qnet.v1.JobService/SubmitJob", kClient | kAdmin},
      {"/qnet.v1.JobService/GetJob", kClient | kAdmin},
      {"/qnet.v1.JobService/ListJobs", kClient | kAdmin},
      {"/qnet.v1.JobService/WatchJob", kClient | kAdmin},
      {"/qnet.v1.JobService/CancelJob", kClient | kAdmin},
      {"/qnet.v1.JobService/DeleteJob", kClient | kAdmin},
      {"/qnet.v1.JobService/ListDatasets", kClient | kAdmin},
      {"/qnet.v1.JobService/CreateDataset", kClient | kAdmin},
      {"/qnet.v1.JobService/ListModels", kClient | kAdmin},
      {"/qnet.v1.JobService/GetCapabilities", kClient | kWorker | kAdmin},
      // Blobs: clients upload models and datasets, workers checkpoints and artifacts; downloads
      // are limited to the caller's own jobs (the service checks).
      {"/qnet.v1.BlobService/Upload", kClient | kWorker | kAdmin},
      {"/qnet.v1.BlobService/Download", kClient | kWorker | kAdmin},
      {"/qnet.v1.BlobService/StatBlob", kClient | kWorker | kAdmin},
      {"/qnet.v1.BlobService/GetUploadOffset", kClient | kWorker | kAdmin},
      // Leases: bound to the worker identity that acquired them (the scheduler checks).
      {"/qnet.v1.WorkerService/AcquireLease", kWorker | kAdmin},
      {"/qnet.v1.WorkerService/Heartbeat", kWorker | kAdmin},
      {"/qnet.v1.WorkerService/CompleteLease", kWorker | kAdmin},
      {"/qnet.v1.WorkerService/FailLease", kWorker | kAdmin},
      // Probes need no identity.
      {"/grpc.health.v1.Health/Check", kAnyone},
      {"/grpc.health.v1.Health/Watch", kAnyone},
      {"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
       kClient | kWorker | kAdmin},
  };
  return *table;
}

std::optional<RoleSet> AllowedRoles(absl::string_view method) {
  for (const auto& [name, roles] : MethodTable()) {
    if (name == method) return roles;
  }
  return std::nullopt;
}

}  // namespace qnet::server
