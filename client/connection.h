// How a client reaches qnetd: its address, the identity's token (sent on every call as
// "authorization: Bearer TOKEN") and TLS (the CA that signed qnetd's certificate, and a client
// certificate and key for mTLS). The `qnet` CLI, `qnet-worker serve` and C++ pipelines build
// their channel here, so every call of every stub on it carries the credentials.
//
//   absl::StatusOr<ConnectionOptions> c = ResolveConnection("qnetd:50051", {.token_file = f});
//   absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = MakeChannel(*c);
#ifndef QNET_CLIENT_CONNECTION_H_
#define QNET_CLIENT_CONNECTION_H_

#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

#include "absl/status/statusor.h"

namespace qnet::client {

// What the command line gave; empty fields come from the environment.
struct ConnectionFlags {
  std::string token_file;  // else $QNET_TOKEN
  std::string ca_cert;     // else $QNET_CA_CERT
  std::string cert;        // else $QNET_CERT
  std::string key;         // else $QNET_KEY
};

struct ConnectionOptions {
  std::string address;
  std::string token;  // "" = none
  // PEM contents. TLS when any is set (no CA: the system's roots); plaintext otherwise.
  std::string ca_cert_pem;
  std::string cert_pem;
  std::string key_pem;
};

// Reads the token and TLS files named by `flags` or the environment; errors name the file or
// variable.
absl::StatusOr<ConnectionOptions> ResolveConnection(const std::string& address,
                                                    const ConnectionFlags& flags);

// A channel that does not connect until the first call; 16 MiB messages (downloads stream 1 MiB
// chunks).
std::shared_ptr<grpc::Channel> MakeChannel(const ConnectionOptions& options);

}  // namespace qnet::client

#endif  // QNET_CLIENT_CONNECTION_H_
