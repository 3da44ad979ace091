// Who a caller is: a name from the tokens file (or a client certificate's CN) and one role.
// docs/ARCHITECTURE.md ("Security") describes the roles and what each may call.
//
//   absl::StatusOr<Role> role = ParseRole("worker");
//   Identity caller{"gpu-node-7", Role::kWorker};
//   if (RoleSetHas(allowed, caller.role)) ...
#ifndef QNET_SERVER_AUTH_IDENTITY_H_
#define QNET_SERVER_AUTH_IDENTITY_H_

#include <cstdint>
#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"

namespace qnet::server {

enum class Role : uint8_t {
  kClient,   // submits, follows, cancels and downloads its own jobs; uploads blobs and datasets
  kWorker,   // the lease API, and the blobs of the jobs it holds
  kAdmin,    // everything, every job
  kMetrics,  // scrapes /metrics over HTTP; no gRPC method
};

// "client", "worker", "admin", "metrics".
absl::string_view RoleName(Role role);
absl::StatusOr<Role> ParseRole(absl::string_view name);

// A set of roles as a bit mask; kAnyone also admits calls without an identity.
using RoleSet = uint8_t;
constexpr RoleSet RoleBit(Role role) { return static_cast<RoleSet>(1u << static_cast<int>(role)); }
constexpr RoleSet kAnyone = 0x80;
constexpr bool RoleSetHas(RoleSet set, Role role) { return (set & RoleBit(role)) != 0; }

struct Identity {
  std::string name;
  Role role = Role::kClient;

  bool is_admin() const { return role == Role::kAdmin; }
  bool operator==(const Identity&) const = default;
};

// Identity names: [A-Za-z0-9][A-Za-z0-9._@-]*, at most 64 characters, so they can be stored and
// logged as they are.
absl::Status CheckIdentityName(absl::string_view name);

}  // namespace qnet::server

#endif  // QNET_SERVER_AUTH_IDENTITY_H_
