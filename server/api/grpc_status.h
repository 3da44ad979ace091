// Maps absl::Status (used inside the server) to grpc::Status at the RPC boundary. The codes are
// numerically the same; the message is kept as written (it is meant for a person to act on).
//
//   absl::StatusOr<Job> job = scheduler.Get(id);
//   if (!job.ok()) return ToGrpcStatus(job.status());
#ifndef QNET_SERVER_API_GRPC_STATUS_H_
#define QNET_SERVER_API_GRPC_STATUS_H_

#include <string>

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace qnet::server {

inline grpc::Status ToGrpcStatus(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

}  // namespace qnet::server

#endif  // QNET_SERVER_API_GRPC_STATUS_H_
