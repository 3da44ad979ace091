#include "server/auth/grpc_auth.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "server/auth/method_table.h"
#include "spdlog/spdlog.h"

namespace qnet::server {
namespace {

// Longer than any method qnetd serves.
constexpr size_t kMaxAuditedMethodChars = 200;

absl::string_view View(const grpc::string_ref& s) { return {s.data(), s.size()}; }

absl::string_view Find(const std::multimap<grpc::string_ref, grpc::string_ref>& md,
                       absl::string_view key) {
  const auto it = md.find(grpc::string_ref(key.data(), key.size()));
  return it == md.end() ? absl::string_view() : View(it->second);
}

}  // namespace

absl::StatusOr<Identity> IdentityOf(const Authenticator& auth,
                                    const std::multimap<grpc::string_ref, grpc::string_ref>& md,
                                    const grpc::AuthContext* connection) {
  const absl::string_view bearer = Find(md, "authorization");
  if (!bearer.empty() || auth.open() || connection == nullptr) {
    return auth.AuthenticateBearer(bearer);
  }
  // Only a verified client certificate (mTLS) gives the connection a common name.
  const std::vector<grpc::string_ref> cn = connection->FindPropertyValues("x509_common_name");
  if (cn.empty()) return auth.AuthenticateBearer(bearer);
  return auth.AuthenticateCertificate(View(cn.front()));
}

absl::StatusOr<Identity> CallerIdentity(const Authenticator& auth,
                                        const grpc::ServerContext& context) {
  return IdentityOf(auth, context.client_metadata(), context.auth_context().get());
}

absl::StatusOr<std::optional<Identity>> AuthorizeCall(
    const Authenticator& auth, absl::string_view method,
    const std::multimap<grpc::string_ref, grpc::string_ref>& md,
    const grpc::AuthContext* connection) {
  const std::optional<RoleSet> roles = AllowedRoles(method);
  if (!roles.has_value()) {
    return absl::PermissionDeniedError(
        absl::StrCat(method, " is not in qnetd's method table; nobody may call it"));
  }
  if ((*roles & kAnyone) != 0) return std::nullopt;
  absl::StatusOr<Identity> who = IdentityOf(auth, md, connection);
  if (!who.ok()) return who.status();
  if (absl::Status s = RequireRole(*who, *roles, absl::StrCat("call ", method)); !s.ok()) {
    return s;
  }
  return *std::move(who);
}

grpc::Status GrpcAuthProcessor::Process(const InputMetadata& metadata, grpc::AuthContext* context,
                                        OutputMetadata*, OutputMetadata*) {
  const absl::string_view method = Find(metadata, ":path");
  absl::StatusOr<std::optional<Identity>> who = AuthorizeCall(*auth_, method, metadata, context);
  if (who.ok()) return grpc::Status::OK;
  // With an audit log, the server log follows its aggregation: repeats are counted there.
  bool news = true;
  if (audit_ != nullptr) {
    AuditEntry entry;
    entry.time = absl::Now();
    // Who it was, when the caller is known but not allowed.
    absl::StatusOr<Identity> caller = IdentityOf(*auth_, metadata, context);
    if (caller.ok()) entry.who = *std::move(caller);
    // The path is the caller's to choose: bounded, as the line must be.
    entry.method = std::string(method.substr(0, kMaxAuditedMethodChars));
    entry.outcome = who.status();
    news = audit_->Refused(entry);
  }
  if (news) {
    spdlog::info("refused {}: {}", std::string(method), std::string(who.status().message()));
  }
  return grpc::Status(static_cast<grpc::StatusCode>(who.status().code()),
                      std::string(who.status().message()));
}

}  // namespace qnet::server
