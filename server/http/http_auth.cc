#include "server/http/http_auth.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace qnet::server {

absl::StatusOr<Identity> HttpCaller(const Authenticator& auth, const HttpRequest& request,
                                    RoleSet allowed, absl::string_view what) {
  const std::string* bearer = request.Header("authorization");
  if (bearer == nullptr && request.client_certificate_cn.empty() && !auth.open()) {
    return absl::UnauthenticatedError(
        "this endpoint needs an identity: send \"Authorization: Bearer TOKEN\" (the dashboard: "
        "open /#token=TOKEN once) or a client certificate");
  }
  absl::StatusOr<Identity> who =
      bearer == nullptr && !request.client_certificate_cn.empty() && !auth.open()
          ? auth.AuthenticateCertificate(request.client_certificate_cn)
          : auth.AuthenticateBearer(bearer != nullptr ? *bearer : "");
  if (!who.ok()) return who.status();
  if (absl::Status s = RequireRole(*who, allowed, what); !s.ok()) return s;
  return who;
}

HttpResponse AuthRefusal(const absl::Status& status, bool json) {
  const bool unauthenticated = status.code() == absl::StatusCode::kUnauthenticated;
  HttpResponse out;
  out.status = unauthenticated ? 401 : 403;
  if (json) {
    out.content_type = "application/json";
    out.body = nlohmann::json{{"error", std::string(status.message())},
                              {"code", absl::StatusCodeToString(status.code())}}
                   .dump() +
               "\n";
  } else {
    out.body = absl::StrCat(status.message(), "\n");
  }
  if (unauthenticated) out.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"qnetd\"");
  return out;
}

}  // namespace qnet::server
