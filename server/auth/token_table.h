// TokenTable: the identities qnetd knows, read from the tokens file (qnetd --auth-tokens FILE).
// One identity per line, `#` starts a comment:
//
//   # NAME      ROLE     TOKEN HASH
//   alice       client   sha256:5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8
//   gpu-node-7  worker   sha256:...
//   ops         admin    sha256:...
//   prometheus  metrics  sha256:...
//   edge-1      worker   -          # no token: only a client certificate with CN edge-1
//
// The file holds SHA-256 hashes of the tokens, never the tokens (`qnetd token` prints both). A
// presented token is hashed and looked up by its hash, in time independent of the table's size:
// what a lookup's time could show is how much of the presented token's hash matches a stored
// one, which says nothing of any token (finding a token to a chosen hash prefix is a preimage
// search), so the token itself is never compared.
//
//   absl::StatusOr<TokenTable> table = TokenTable::Load("/etc/qnet/tokens");
//   std::optional<Identity> who = table->FindToken(bearer_token);
#ifndef QNET_SERVER_AUTH_TOKEN_TABLE_H_
#define QNET_SERVER_AUTH_TOKEN_TABLE_H_

#include <optional>
#include <string>
#include <vector>
#include "absl/strings/string_view.h"

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/auth/identity.h"

namespace qnet::server {

class TokenTable {
 public:
  // Errors name `source` and the line: "/etc/qnet/tokens:3: unknown role ...".
  static absl::StatusOr<TokenTable> Parse(absl::string_view text, absl::string_view source);
  static absl::StatusOr<TokenTable> Load(const std::string& path);

  // Adds an identity known by `token_hash` ("sha256:<hex>", or "" for certificate only);
  // ALREADY_EXISTS for a name or hash the table has.
  absl::Status Add(Identity identity, std::string token_hash);

  std::optional<Identity> FindToken(absl::string_view token) const;
  std::optional<Identity> FindName(absl::string_view name) const;
  size_t size() const { return identities_.size(); }

 private:
  std::vector<Identity> identities_;
  // Indices into identities_: a lookup on every call must not scan a table of many workers.
  absl::flat_hash_map<std::string, size_t> by_name_;
  absl::flat_hash_map<std::string, size_t> by_token_hash_;  // "sha256:<hex>"; identities with one
};

// "sha256:<hex>" of a token, as the tokens file holds it.
std::string TokenHash(absl::string_view token);
// A new token from the operating system's CSPRNG: "qnet_" and 64 hex digits (256 bits).
std::string NewToken();

}  // namespace qnet::server

#endif  // QNET_SERVER_AUTH_TOKEN_TABLE_H_
