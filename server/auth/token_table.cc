#include "server/auth/token_table.h"

#include <openssl/rand.h>

#include <cstdint>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/digest.h"

namespace qnet::server {
namespace {

constexpr absl::string_view kHashPrefix = "sha256:";
constexpr size_t kHashHexDigits = 64;

absl::Status CheckHash(absl::string_view hash) {
  if (!absl::StartsWith(hash, kHashPrefix) || hash.size() != kHashPrefix.size() + kHashHexDigits) {
    return absl::InvalidArgumentError(
        "the token hash must be sha256: and 64 hex digits (`qnetd token` prints the line), or - "
        "for an identity that only signs in with a client certificate");
  }
  for (const char c : hash.substr(kHashPrefix.size())) {
    if (!absl::ascii_isxdigit(c) || absl::ascii_isupper(c)) {
      return absl::InvalidArgumentError("the token hash must be lowercase hex after sha256:");
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<TokenTable> TokenTable::Parse(absl::string_view text, absl::string_view source) {
  TokenTable table;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    if (const size_t hash = line.find('#'); hash != absl::string_view::npos) {
      line = line.substr(0, hash);
    }
    const std::vector<absl::string_view> fields =
        absl::StrSplit(line, absl::ByAnyChar(" \t\r"), absl::SkipEmpty());
    if (fields.empty()) continue;
    auto error = [&](absl::string_view what) {
      return absl::InvalidArgumentError(absl::StrCat(source, ":", line_number, ": ", what));
    };
    if (fields.size() != 3) {
      return error(
          absl::StrCat("expected NAME ROLE sha256:HEX, found ", fields.size(), " field(s)"));
    }
    if (absl::Status s = CheckIdentityName(fields[0]); !s.ok()) return error(s.message());
    absl::StatusOr<Role> role = ParseRole(fields[1]);
    if (!role.ok()) return error(role.status().message());
    std::string token_hash;
    if (fields[2] != "-") {
      if (absl::Status s = CheckHash(fields[2]); !s.ok()) return error(s.message());
      token_hash = std::string(fields[2]);
    }
    if (absl::Status s = table.Add({std::string(fields[0]), *role}, std::move(token_hash));
        !s.ok()) {
      return error(s.message());
    }
  }
  return table;
}

absl::StatusOr<TokenTable> TokenTable::Load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("cannot read the tokens file ", path));
  }
  std::ostringstream text;
  text << in.rdbuf();
  return Parse(text.str(), path);
}

absl::Status TokenTable::Add(Identity identity, std::string token_hash) {
  if (by_name_.contains(identity.name)) {
    return absl::AlreadyExistsError(absl::StrCat("identity ", identity.name, " is listed twice"));
  }
  if (!token_hash.empty()) {
    if (const auto same = by_token_hash_.find(token_hash); same != by_token_hash_.end()) {
      return absl::AlreadyExistsError(absl::StrCat("identities ", identities_[same->second].name,
                                                   " and ", identity.name, " have the same token"));
    }
    by_token_hash_.emplace(std::move(token_hash), identities_.size());
  }
  by_name_.emplace(identity.name, identities_.size());
  identities_.push_back(std::move(identity));
  return absl::OkStatus();
}

std::optional<Identity> TokenTable::FindToken(absl::string_view token) const {
  const auto found = by_token_hash_.find(TokenHash(token));
  if (found == by_token_hash_.end()) return std::nullopt;
  return identities_[found->second];
}

std::optional<Identity> TokenTable::FindName(absl::string_view name) const {
  const auto found = by_name_.find(name);
  if (found == by_name_.end()) return std::nullopt;
  return identities_[found->second];
}

std::string TokenHash(absl::string_view token) {
  Sha256 h;
  h.Update(std::string_view(token.data(), token.size()));
  return h.Digest();
}

std::string NewToken() {
  unsigned char bytes[32];
  // RAND_bytes fails only when the CSPRNG cannot be seeded; no token is better than a weak one.
  if (RAND_bytes(bytes, sizeof(bytes)) != 1) std::abort();
  return absl::StrCat("qnet_", absl::BytesToHexString(absl::string_view(
                                   reinterpret_cast<char*>(bytes), sizeof(bytes))));
}

}  // namespace qnet::server
