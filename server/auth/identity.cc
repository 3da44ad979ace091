#include "server/auth/identity.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace qnet::server {

absl::string_view RoleName(Role role) {
  switch (role) {
    case Role::kClient:
      return "client";
    case Role::kWorker:
      return "worker";
    case Role::kAdmin:
      return "admin";
    case Role::kMetrics:
      return "metrics";
  }
  return "unknown";
}

absl::StatusOr<Role> ParseRole(absl::string_view name) {
  for (Role r : {Role::kClient, Role::kWorker, Role::kAdmin, Role::kMetrics}) {
    if (name == RoleName(r)) return r;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown role \"", name, "\"; roles are client, worker, admin, metrics"));
}

absl::Status CheckIdentityName(absl::string_view name) {
  constexpr size_t kMaxNameBytes = 64;
  if (name.empty() || name.size() > kMaxNameBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("identity name \"", name, "\" must have 1 to ", kMaxNameBytes, " characters"));
  }
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool ok =
        absl::ascii_isalnum(c) || (i > 0 && (c == '.' || c == '_' || c == '@' || c == '-'));
    if (!ok) {
      return absl::InvalidArgumentError(absl::StrCat(
          "identity name \"", name, "\" may hold only letters, digits and . _ @ - (not first)"));
    }
  }
  return absl::OkStatus();
}

}  // namespace qnet::server
