// The one table of who may call what over gRPC: every fully-qualified method qnetd serves, and
// the roles allowed to call it. A method missing here is refused to everyone, so a new RPC stays
// closed until it is added (tests/server/auth checks every method in proto/ is listed).
// Ownership (whose job, whose blob, whose lease) is checked by the services on top of this.
//
//   std::optional<RoleSet> roles = AllowedRoles("/qnet.v1.JobService/SubmitJob");
#ifndef QNET_SERVER_AUTH_METHOD_TABLE_H_
#define QNET_SERVER_AUTH_METHOD_TABLE_H_

#include <optional>
#include <utility>
#include <vector>
#include "absl/strings/string_view.h"

#include "server/auth/identity.h"

namespace qnet::server {

// nullopt for a method the table does not list.
std::optional<RoleSet> AllowedRoles(absl::string_view method);

// Every row: ("/package.Service/Method", roles).
const std::vector<std::pair<absl::string_view, RoleSet>>& MethodTable();

}  // namespace qnet::server

#endif  // QNET_SERVER_AUTH_METHOD_TABLE_H_
