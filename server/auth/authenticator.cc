#include "server/auth/authenticator.h"

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace qnet::server {

std::unique_ptr<Authenticator> Authenticator::Open() {
  return std::unique_ptr<Authenticator>(new Authenticator(/*open=*/true, ""));
}

const Identity& Authenticator::OpenIdentity() {
  static const Identity* const local = new Identity{"local", Role::kAdmin};
  return *local;
}

absl::StatusOr<std::unique_ptr<Authenticator>> Authenticator::FromFile(std::string path) {
  std::unique_ptr<Authenticator> auth(new Authenticator(/*open=*/false, std::move(path)));
  if (absl::Status s = auth->Reload(); !s.ok()) return s;
  return auth;
}

absl::Status Authenticator::Reload() {
  if (open_) return absl::OkStatus();
  absl::StatusOr<TokenTable> loaded = TokenTable::Load(path_);
  if (!loaded.ok()) return loaded.status();
  absl::MutexLock lock(&mu_);
  for (const auto& [identity, hash] : generated_) {
    if (absl::Status s = loaded->Add(identity, hash); !s.ok()) {
      return absl::AlreadyExistsError(absl::StrCat(path_, ": ", s.message(), " (", identity.name,
                                                   " is a local worker of this qnetd)"));
    }
  }
  table_ = std::make_shared<const TokenTable>(*std::move(loaded));
  return absl::OkStatus();
}

absl::StatusOr<std::string> Authenticator::AddGenerated(Identity identity) {
  if (open_) return std::string();
  std::string token = NewToken();
  std::string hash = TokenHash(token);
  absl::MutexLock lock(&mu_);
  auto next = std::make_shared<TokenTable>(*table_);
  if (absl::Status s = next->Add(identity, hash); !s.ok()) return s;
  generated_.emplace_back(std::move(identity), std::move(hash));
  table_ = std::move(next);
  return token;
}

std::shared_ptr<const TokenTable> Authenticator::table() const {
  absl::MutexLock lock(&mu_);
  return table_;
}

absl::StatusOr<Identity> Authenticator::AuthenticateBearer(
    absl::string_view authorization_header) const {
  if (open_) return OpenIdentity();
  if (authorization_header.empty()) {
    return absl::UnauthenticatedError(
        "this server requires a token: pass --token-file FILE or set QNET_TOKEN (the operator "
        "makes one with `qnetd token --name NAME --role ROLE`)");
  }
  constexpr absl::string_view kBearer = "Bearer ";
  if (!absl::StartsWith(authorization_header, kBearer)) {
    return absl::UnauthenticatedError("the authorization header must be \"Bearer TOKEN\"");
  }
  std::optional<Identity> who = table()->FindToken(authorization_header.substr(kBearer.size()));
  if (!who.has_value()) {
    return absl::UnauthenticatedError(
        "this server does not know the token (revoked, mistyped, or another server's)");
  }
  return *std::move(who);
}

absl::StatusOr<Identity> Authenticator::AuthenticateCertificate(
    absl::string_view common_name) const {
  if (open_) return OpenIdentity();
  std::optional<Identity> who = table()->FindName(common_name);
  if (!who.has_value()) {
    return absl::PermissionDeniedError(
        absl::StrCat("the client certificate's CN ", common_name,
                     " names no identity in this server's tokens file; add a line `", common_name,
                     " ROLE -` there"));
  }
  return *std::move(who);
}

absl::Status RequireRole(const Identity& who, RoleSet allowed, absl::string_view what) {
  if (RoleSetHas(allowed, who.role)) return absl::OkStatus();
  return absl::PermissionDeniedError(
      absl::StrCat("identity ", who.name, " (role ", RoleName(who.role), ") may not ", what));
}

}  // namespace qnet::server
