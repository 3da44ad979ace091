// Exit codes of the `qnet` CLI, and how errors and final job states map onto them. Scripts rely on
// these, so they are part of the CLI's interface:
//   0  success (for --wait / watch: the job SUCCEEDED)
//   1  the job ended FAILED or CANCELLED (--wait / watch)
//   2  usage error: bad flags, a missing model file, or the server refused the request as
//      INVALID_ARGUMENT / NOT_FOUND / ALREADY_EXISTS / FAILED_PRECONDITION (fix the input and
//      retry)
//   3  server error or server unreachable (anything else: UNAVAILABLE, INTERNAL, ...), and
//      refused credentials (UNAUTHENTICATED, PERMISSION_DENIED), with the server's message
//
//   absl::Status s = ...;
//   if (!s.ok()) return qnet::cli::ExitCodeFor(s);
#ifndef QNET_CLIENT_CLI_EXIT_CODES_H_
#define QNET_CLIENT_CLI_EXIT_CODES_H_

#include "absl/status/status.h"
#include "qnet/v1/job.pb.h"

namespace qnet::cli {

enum ExitCode : int {
  kExitOk = 0,
  kExitJobFailed = 1,
  kExitUsage = 2,
  kExitServerError = 3,
};

// kExitOk for OK, kExitUsage for errors the caller can fix, kExitServerError otherwise.
ExitCode ExitCodeFor(const absl::Status& status);

// For a job followed to its end: kExitOk when SUCCEEDED, kExitJobFailed for FAILED / CANCELLED,
// kExitServerError for a state that is not terminal (the server stopped answering).
ExitCode ExitCodeForFinalState(v1::JobState state);

}  // namespace qnet::cli

#endif  // QNET_CLIENT_CLI_EXIT_CODES_H_
