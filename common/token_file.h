// Reads an identity's token from a file, so it never has to appear on a command line where `ps`
// would show it. The file holds the token on one line; surrounding whitespace is ignored. The
// --token-file of `qnet` and `qnet-worker serve` (client/connection.h) read it this way.
//
//   absl::StatusOr<std::string> token = qnet::ReadTokenFile("/etc/qnet/worker-token");
//   if (!token.ok()) { std::cerr << token.status().message() << "\n"; return 2; }
#ifndef QNET_COMMON_TOKEN_FILE_H_
#define QNET_COMMON_TOKEN_FILE_H_

#include <string>

#include "absl/status/statusor.h"

namespace qnet {

// The token: 1 to 1024 printable ASCII characters without spaces (it travels in a gRPC header).
// InvalidArgument naming the file when it is missing, unreadable, empty or holds anything else.
absl::StatusOr<std::string> ReadTokenFile(const std::string& path);

// The same rules for a token given directly (e.g. from the QNET_WORKER_TOKEN variable); `source`
// names it in the error.
absl::StatusOr<std::string> CheckToken(std::string token, const std::string& source);

}  // namespace qnet

#endif  // QNET_COMMON_TOKEN_FILE_H_
