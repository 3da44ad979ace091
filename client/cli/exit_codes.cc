#include "client/cli/exit_codes.h"

namespace qnet::cli {

ExitCode ExitCodeFor(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kOk:
      return kExitOk;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kOutOfRange:
      return kExitUsage;
    default:
      return kExitServerError;
  }
}

ExitCode ExitCodeForFinalState(v1::JobState state) {
  switch (state) {
    case v1::SUCCEEDED:
      return kExitOk;
    case v1::FAILED:
    case v1::CANCELLED:
      return kExitJobFailed;
    default:
      return kExitServerError;
  }
}

}  // namespace qnet::cli
