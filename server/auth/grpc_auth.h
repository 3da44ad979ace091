// Authentication for gRPC: GrpcAuthProcessor runs before every call reaches a handler (a gRPC
// AuthMetadataProcessor on the listening port's credentials): it looks the method up in the
// method table (method_table.h), finds the caller's identity and refuses the call when the
// identity is missing (UNAUTHENTICATED) or its role is not allowed (PERMISSION_DENIED), so no
// handler checks roles. Each refusal is a line in the server log; with an audit log it goes there
// (AuditLog::Refused, which aggregates repeats) and the server log keeps only the refusals that
// got an audit line of their own. Handlers that need the caller's name (job ownership, lease
// holders, blob uploaders) ask CallerIdentity.
//
// The caller: the bearer token of the call's "authorization" metadata, or without one the common
// name of the verified client certificate (mTLS). Tokens are never logged.
//
//   auto creds = grpc::SslServerCredentials(ssl);  // or LocalServerCredentials(LOCAL_TCP)
//   creds->SetAuthMetadataProcessor(std::make_shared<GrpcAuthProcessor>(&authenticator));
//   ...
//   absl::StatusOr<Identity> who = CallerIdentity(authenticator, *context);  // in a handler
#ifndef QNET_SERVER_AUTH_GRPC_AUTH_H_
#define QNET_SERVER_AUTH_GRPC_AUTH_H_

#include <map>
#include <optional>

#include <grpcpp/security/auth_context.h>
#include <grpcpp/security/auth_metadata_processor.h>
#include <grpcpp/server_context.h>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/auth/audit_log.h"
#include "server/auth/authenticator.h"
#include "server/auth/identity.h"

namespace qnet::server {

class GrpcAuthProcessor final : public grpc::AuthMetadataProcessor {
 public:
  // `audit` may be null (no --audit-log).
  GrpcAuthProcessor(const Authenticator* auth, AuditLog* audit) : auth_(auth), audit_(audit) {}
  // Hashing a token and scanning the table is quick: runs inline on gRPC's thread.
  bool IsBlocking() const override { return false; }
  grpc::Status Process(const InputMetadata& metadata, grpc::AuthContext* context,
                       OutputMetadata* consumed, OutputMetadata* response) override;

 private:
  const Authenticator* const auth_;
  AuditLog* const audit_;
};

// Who is calling, from the call's metadata and the connection's security context (null: a
// connection without one).
absl::StatusOr<Identity> IdentityOf(const Authenticator& auth,
                                    const std::multimap<grpc::string_ref, grpc::string_ref>& md,
                                    const grpc::AuthContext* connection);

// The caller of a running call; the processor has already admitted it, so an error here means
// the identity was removed in between (a reload). This authenticates the call a second time:
// gRPC (1.51) hands the processor the connection's AuthContext, shared by every call on it, so
// a per-call identity left there by the processor would pile up on the connection (tried: the
// CPU per GetJob more than doubled) and could name another call's caller.
absl::StatusOr<Identity> CallerIdentity(const Authenticator& auth,
                                        const grpc::ServerContext& context);

// The whole check GrpcAuthProcessor makes, as a value: the caller when `method` is allowed to
// it, nullopt for a method open to anyone.
absl::StatusOr<std::optional<Identity>> AuthorizeCall(
    const Authenticator& auth, absl::string_view method,
    const std::multimap<grpc::string_ref, grpc::string_ref>& md,
    const grpc::AuthContext* connection);

}  // namespace qnet::server

#endif  // QNET_SERVER_AUTH_GRPC_AUTH_H_
