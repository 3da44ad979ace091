// Who is asking over HTTP, with the same Authenticator (tokens file, roles) as gRPC: the bearer
// token of the Authorization header, or without one the CN of the verified client certificate
// (HTTPS with --tls-client-ca). Open mode (no --auth-tokens): everyone is the admin "local".
// Refusals become 401 with WWW-Authenticate (no or unknown identity) or 403 (a role the endpoint
// does not admit). Tokens are never logged or echoed.
//
//   absl::StatusOr<Identity> who = HttpCaller(auth, request, RoleBit(Role::kMetrics), "scrape");
//   if (!who.ok()) return AuthRefusal(who.status(), /*json=*/false);
#ifndef QNET_SERVER_HTTP_HTTP_AUTH_H_
#define QNET_SERVER_HTTP_HTTP_AUTH_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/auth/authenticator.h"
#include "server/auth/identity.h"
#include "server/http/http_server.h"

namespace qnet::server {

// The caller when it has one of `allowed`; UNAUTHENTICATED without an identity,
// PERMISSION_DENIED for another role (`what` says what was refused).
absl::StatusOr<Identity> HttpCaller(const Authenticator& auth, const HttpRequest& request,
                                    RoleSet allowed, absl::string_view what);

// 401 (UNAUTHENTICATED, with `WWW-Authenticate: Bearer realm="qnetd"`) or 403, as JSON
// ({"error", "code"}) or plain text.
HttpResponse AuthRefusal(const absl::Status& status, bool json);

}  // namespace qnet::server

#endif  // QNET_SERVER_HTTP_HTTP_AUTH_H_
