// Converts gRPC statuses into absl::Status values with a message a person can act on. Client code
// (the CLI, the worker, pipelines) keeps errors as absl::Status; the gRPC code is kept as the absl
// code (the numeric values are the same), the message names the call and, for an unreachable
// server, the address.
//
//   grpc::Status s = stub->GetJob(&ctx, request, &job);
//   if (!s.ok()) return qnet::client::FromGrpc(s, "GetJob", "127.0.0.1:50051");
#ifndef QNET_CLIENT_GRPC_STATUS_H_
#define QNET_CLIENT_GRPC_STATUS_H_

#include "absl/strings/string_view.h"

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"

namespace qnet::client {

// "GetJob: job j-1 not found" (the server's message, prefixed by the call);
// UNAVAILABLE / DEADLINE_EXCEEDED also say which address did not answer.
absl::Status FromGrpc(const grpc::Status& status, absl::string_view call,
                      absl::string_view address);

// The reverse, for fakes and servers written against absl::Status.
grpc::Status ToGrpc(const absl::Status& status);

}  // namespace qnet::client

#endif  // QNET_CLIENT_GRPC_STATUS_H_
