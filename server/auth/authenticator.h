// Authenticator: turns what a caller presents (a bearer token, a verified client certificate)
// into an Identity, and checks it against the method table (method_table.h). qnetd holds one;
// the gRPC glue (grpc_auth.h) and the HTTP layer both ask it.
//
// Open mode (qnetd on loopback without --auth-tokens, or --insecure-no-auth): nobody is asked
// for anything and every caller is the admin "local", as before authentication existed.
//
//   absl::StatusOr<std::unique_ptr<Authenticator>> auth = Authenticator::FromFile(path);
//   absl::StatusOr<Identity> who = (*auth)->AuthenticateBearer("Bearer qnet_5f0c...");
//   if (absl::Status s = RequireRole(*who, RoleBit(Role::kMetrics)); !s.ok()) ...  // HTTP 403
//   (*auth)->Reload();  // on SIGHUP
#ifndef QNET_SERVER_AUTH_AUTHENTICATOR_H_
#define QNET_SERVER_AUTH_AUTHENTICATOR_H_

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>
#include "absl/strings/string_view.h"

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "server/auth/identity.h"
#include "server/auth/token_table.h"

namespace qnet::server {

class Authenticator {
 public:
  // No authentication: every caller is the admin "local".
  static std::unique_ptr<Authenticator> Open();
  // Identities from a tokens file (token_table.h).
  static absl::StatusOr<std::unique_ptr<Authenticator>> FromFile(std::string path);

  bool open() const { return open_; }
  static const Identity& OpenIdentity();

  // Reads the tokens file again; on an error the identities stay as they were. Identities added
  // with AddGenerated stay.
  absl::Status Reload();
  // Adds an identity known by a new random token (a local worker's); returns the token.
  absl::StatusOr<std::string> AddGenerated(Identity identity);

  // "Bearer TOKEN" (an HTTP or gRPC authorization header) -> its identity. UNAUTHENTICATED for
  // an empty header, another scheme or an unknown token. Open mode: the open identity.
  absl::StatusOr<Identity> AuthenticateBearer(absl::string_view authorization_header) const;
  // A verified client certificate's common name -> the identity of that name in the tokens file;
  // PERMISSION_DENIED when the file does not list it.
  absl::StatusOr<Identity> AuthenticateCertificate(absl::string_view common_name) const;

 private:
  Authenticator(bool open, std::string path) : open_(open), path_(std::move(path)) {}
  std::shared_ptr<const TokenTable> table() const;

  const bool open_;
  const std::string path_;
  mutable absl::Mutex mu_;
  std::shared_ptr<const TokenTable> table_ ABSL_GUARDED_BY(mu_);
  // (identity, token hash) of AddGenerated, kept across reloads.
  std::vector<std::pair<Identity, std::string>> generated_ ABSL_GUARDED_BY(mu_);
};

// OK when `who` has a role in `allowed`; PERMISSION_DENIED naming the identity otherwise.
absl::Status RequireRole(const Identity& who, RoleSet allowed, absl::string_view what);

}  // namespace qnet::server

#endif  // QNET_SERVER_AUTH_AUTHENTICATOR_H_
