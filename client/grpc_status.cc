#include "client/grpc_status.h"

#include <string>

#include "absl/strings/str_cat.h"

namespace qnet::client {

absl::Status FromGrpc(const grpc::Status& status, absl::string_view call,
                      absl::string_view address) {
  if (status.ok()) return absl::OkStatus();
  const auto code = static_cast<absl::StatusCode>(status.error_code());
  std::string message = status.error_message();
  if (code == absl::StatusCode::kUnavailable) {
    return absl::Status(code,
                        absl::StrCat(call, ": cannot reach qnetd at ", address, " (", message,
                                     "); is the server running? (--server or ", "QNET_SERVER)"));
  }
  if (code == absl::StatusCode::kDeadlineExceeded) {
    return absl::Status(code,
                        absl::StrCat(call, ": qnetd at ", address, " did not answer in time"));
  }
  if (message.empty()) message = "failed without a message";
  return absl::Status(code, absl::StrCat(call, ": ", message));
}

grpc::Status ToGrpc(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

}  // namespace qnet::client
