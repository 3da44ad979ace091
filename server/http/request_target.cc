#include "server/http/request_target.h"

#include <arpa/inet.h>

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_split.h"

namespace qnet::server {
namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

absl::StatusOr<std::string> PercentDecode(absl::string_view s, bool plus_is_space) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '%') {
      if (i + 2 >= s.size()) {
        return absl::InvalidArgumentError("truncated percent escape in the request target");
      }
      const int hi = HexValue(s[i + 1]), lo = HexValue(s[i + 2]);
      if (hi < 0 || lo < 0) {
        return absl::InvalidArgumentError("invalid percent escape in the request target");
      }
      c = static_cast<char>(hi * 16 + lo);
      i += 2;
    } else if (c == '+' && plus_is_space) {
      c = ' ';
    }
    // Control characters have no business in a path or a query value (and NUL would end a C
    // string early).
    if (absl::ascii_iscntrl(static_cast<unsigned char>(c))) {
      return absl::InvalidArgumentError("control character in the request target");
    }
    out += c;
  }
  return out;
}

}  // namespace

absl::StatusOr<RequestTarget> ParseRequestTarget(absl::string_view target) {
  if (target.empty() || target.front() != '/') {
    return absl::InvalidArgumentError("the request target must be a path starting with /");
  }
  RequestTarget out;
  const size_t q = target.find('?');
  absl::StatusOr<std::string> path = PercentDecode(target.substr(0, q), /*plus_is_space=*/false);
  if (!path.ok()) return path.status();
  out.path = *std::move(path);
  if (q == absl::string_view::npos) return out;
  for (absl::string_view kv : absl::StrSplit(target.substr(q + 1), '&', absl::SkipEmpty())) {
    const size_t eq = kv.find('=');
    absl::StatusOr<std::string> key = PercentDecode(kv.substr(0, eq), true);
    if (!key.ok()) return key.status();
    absl::StatusOr<std::string> value = PercentDecode(
        eq == absl::string_view::npos ? absl::string_view() : kv.substr(eq + 1), true);
    if (!value.ok()) return value.status();
    out.query[*std::move(key)] = *std::move(value);
  }
  return out;
}

bool IsIpLiteral(absl::string_view host) {
  unsigned char addr[16];
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    const std::string v6(host.substr(1, host.size() - 2));
    return ::inet_pton(AF_INET6, v6.c_str(), addr) == 1;
  }
  return ::inet_pton(AF_INET, std::string(host).c_str(), addr) == 1;
}

absl::StatusOr<std::string> HostOfHostHeader(absl::string_view value) {
  const auto bad = [&] {
    return absl::InvalidArgumentError("the Host header is not HOST or HOST:PORT");
  };
  absl::string_view host = value, port;
  if (!value.empty() && value.front() == '[') {
    const size_t close = value.find(']');
    if (close == absl::string_view::npos) return bad();
    host = value.substr(0, close + 1);
    absl::string_view rest = value.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return bad();
      port = rest.substr(1);
    }
    if (!IsIpLiteral(host)) return bad();
  } else if (const size_t colon = value.find(':'); colon != absl::string_view::npos) {
    host = value.substr(0, colon);
    port = value.substr(colon + 1);
  }
  if (host.empty()) return bad();
  // RFC 9110: port = *DIGIT, so "name:" is allowed.
  if (port.size() > 5 || !std::all_of(port.begin(), port.end(), [](char c) {
        return absl::ascii_isdigit(static_cast<unsigned char>(c));
      })) {
    return bad();
  }
  if (host.front() != '[') {
    for (char c : host) {
      // reg-name as hosts use it: letters, digits, '-', '.' (and '_', seen in container names).
      if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '.' && c != '_') {
        return bad();
      }
    }
  }
  return absl::AsciiStrToLower(host);
}

}  // namespace qnet::server
