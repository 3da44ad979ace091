// In-process qnetd set-ups shared by the server tests: options for a server on loopback over a
// fake Fashion-MNIST folder, and a tokens file of named identities with fresh tokens.
//
//   QnetServerOptions options = testing::LoopbackServerOptions(dir_, /*http=*/false);
//   std::map<std::string, std::string> tokens =
//       testing::WriteTokensFile(dir_ / "tokens", {{"alice", Role::kClient}});
//   options.auth_tokens_path = dir_ / "tokens";
//   grpc::ClientContext context;
//   testing::Authorize(context, tokens["alice"]);
#ifndef QNET_TESTS_SERVER_TEST_SERVER_H_
#define QNET_TESTS_SERVER_TEST_SERVER_H_

#include <map>
#include <string>
#include <utility>
#include <vector>

#include <grpcpp/client_context.h>

#include "server/app/qnet_server_impl.h"
#include "server/auth/identity.h"
#include "tests/server/test_util.h"

namespace qnet::server::testing {

// gRPC on 127.0.0.1:0, HTTP on 127.0.0.1:0 when `http` (off otherwise), the data folder
// dir/data, and the default dataset a fake IDX folder written to dir/fmnist.
QnetServerOptions LoopbackServerOptions(const TempDir& dir, bool http);

// Writes `path` naming each identity with its role and the hash of a new token; returns each
// name's token.
std::map<std::string, std::string> WriteTokensFile(
    const std::string& path, const std::vector<std::pair<std::string, Role>>& identities);

// Sends `token` as the call's bearer token.
void Authorize(grpc::ClientContext& context, const std::string& token);

}  // namespace qnet::server::testing

#endif  // QNET_TESTS_SERVER_TEST_SERVER_H_
