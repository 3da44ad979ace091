#include "tests/server/test_server.h"

#include "server/auth/token_table.h"

namespace qnet::server::testing {

QnetServerOptions LoopbackServerOptions(const TempDir& dir, bool http) {
  MakeFakeIdxDataset(dir / "fmnist");
  QnetServerOptions options;
  options.listen = "127.0.0.1:0";
  options.http_listen = http ? "127.0.0.1:0" : "";
  options.data_dir = dir / "data";
  options.default_dataset_dir = dir / "fmnist";
  return options;
}

std::map<std::string, std::string> WriteTokensFile(
    const std::string& path, const std::vector<std::pair<std::string, Role>>& identities) {
  std::map<std::string, std::string> tokens;
  std::string lines;
  for (const auto& [name, role] : identities) {
    tokens[name] = NewToken();
    lines += name + " " + std::string(RoleName(role)) + " " + TokenHash(tokens[name]) + "\n";
  }
  WriteFile(path, lines);
  return tokens;
}

void Authorize(grpc::ClientContext& context, const std::string& token) {
  context.AddMetadata("authorization", "Bearer " + token);
}

}  // namespace qnet::server::testing
