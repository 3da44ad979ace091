// The credential flags of the `qnet` CLI and `qnet-worker serve`, bound once for both
// (connection.h resolves them).
//
//   client::ConnectionFlags flags;
//   client::BindConnectionFlags(app, flags);
#ifndef QNET_CLIENT_CONNECTION_FLAGS_H_
#define QNET_CLIENT_CONNECTION_FLAGS_H_

#include "CLI/CLI.hpp"
#include "client/connection.h"

namespace qnet::client {

inline void BindConnectionFlags(CLI::App& app, ConnectionFlags& flags) {
  app.add_option("--token-file", flags.token_file,
                 "file holding this identity's token (default: $QNET_TOKEN)")
      ->check(CLI::ExistingFile);
  app.add_option("--ca-cert", flags.ca_cert,
                 "TLS: the CA that signed qnetd's certificate, PEM (default: $QNET_CA_CERT)");
  app.add_option("--cert", flags.cert,
                 "mTLS: this client's certificate, PEM (default: $QNET_CERT)");
  app.add_option("--key", flags.key, "mTLS: this client's private key, PEM (default: $QNET_KEY)");
}

}  // namespace qnet::client

#endif  // QNET_CLIENT_CONNECTION_FLAGS_H_
