#include "server/scheduling/page_token.h"

#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

namespace qnet::server {

std::string EncodePageToken(qnet::v1::JobState state, int64_t before_seq) {
  if (before_seq <= 0) return "";
  return absl::WebSafeBase64Escape(absl::StrCat("v1:", static_cast<int>(state), ":", before_seq));
}

absl::StatusOr<int64_t> DecodePageToken(absl::string_view token, qnet::v1::JobState state) {
  if (token.empty()) return 0;
  std::string raw;
  int token_state = 0;
  int64_t before_seq = 0;
  if (token.size() > 64 || !absl::WebSafeBase64Unescape(token, &raw)) {
    return absl::InvalidArgumentError("page_token is not one this server issued");
  }
  std::vector<absl::string_view> parts = absl::StrSplit(raw, ':');
  if (parts.size() != 3 || parts[0] != "v1" || !absl::SimpleAtoi(parts[1], &token_state) ||
      !absl::SimpleAtoi(parts[2], &before_seq) || before_seq <= 0) {
    return absl::InvalidArgumentError("page_token is not one this server issued");
  }
  if (token_state != static_cast<int>(state)) {
    return absl::InvalidArgumentError(
        "page_token was issued for another state filter; start again without a token");
  }
  return before_seq;
}

}  // namespace qnet::server
