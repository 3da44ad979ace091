#include "common/token_file.h"

#include <fstream>
#include <iterator>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace qnet {

constexpr size_t kMaxTokenBytes = 1024;

absl::StatusOr<std::string> CheckToken(std::string token, const std::string& source) {
  absl::StripAsciiWhitespace(&token);
  if (token.empty()) return absl::InvalidArgumentError(absl::StrCat(source, " is empty"));
  if (token.size() > kMaxTokenBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, " is longer than ", kMaxTokenBytes, " characters"));
  }
  for (const char c : token) {
    if (!absl::ascii_isgraph(static_cast<unsigned char>(c))) {
      return absl::InvalidArgumentError(absl::StrCat(
          source, " must be one word of printable ASCII characters (e.g. openssl rand -hex 32)"));
    }
  }
  return token;
}

absl::StatusOr<std::string> ReadTokenFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::InvalidArgumentError(absl::StrCat("cannot read token file ", path));
  std::string text;
  text.resize(kMaxTokenBytes + 64);
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));
  return CheckToken(std::move(text), absl::StrCat("token file ", path));
}

}  // namespace qnet
