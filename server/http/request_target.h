// The few pieces of an HTTP request that Boost.Beast hands over unparsed: the request target
// (path and query string, percent-encoded) and the Host header's name. Kept apart from the
// server so the fuzz target (tests/server/http/fuzz) can run them on arbitrary bytes.
//
//   absl::StatusOr<RequestTarget> t = ParseRequestTarget("/api/v1/jobs?state=queued");
//   t->path == "/api/v1/jobs";  t->query.at("state") == "queued";
//   absl::StatusOr<std::string> host = HostOfHostHeader("[::1]:8080");  // "[::1]"
#ifndef QNET_SERVER_HTTP_REQUEST_TARGET_H_
#define QNET_SERVER_HTTP_REQUEST_TARGET_H_

#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace qnet::server {

struct RequestTarget {
  std::string path;                          // percent-decoded
  std::map<std::string, std::string> query;  // decoded ?k=v pairs ('+' is a space); last wins
};

// INVALID_ARGUMENT unless `target` is origin-form ("/path?query") with valid percent escapes
// and no control characters once decoded.
absl::StatusOr<RequestTarget> ParseRequestTarget(absl::string_view target);

// The host of a Host header value ("name", "name:port", "1.2.3.4:80", "[v6]:port"), lower-case,
// IPv6 literals in brackets; INVALID_ARGUMENT when it is not of that shape.
absl::StatusOr<std::string> HostOfHostHeader(absl::string_view value);

// True for an IPv4 literal or a bracketed IPv6 literal.
bool IsIpLiteral(absl::string_view host);

}  // namespace qnet::server

#endif  // QNET_SERVER_HTTP_REQUEST_TARGET_H_
