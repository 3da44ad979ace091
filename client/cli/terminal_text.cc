#include "client/cli/terminal_text.h"

#include "absl/strings/str_format.h"
#include "common/utf8.h"

namespace qnet::cli {
namespace {

// The code point of the UTF-8 character at the start of `s` (well-formed), and its length.
char32_t Decode(std::string_view s, size_t& length) {
  const auto b = [&](size_t i) { return static_cast<char32_t>(static_cast<unsigned char>(s[i])); };
  if (b(0) < 0x80) return length = 1, b(0);
  if (b(0) < 0xE0) return length = 2, (b(0) & 0x1F) << 6 | (b(1) & 0x3F);
  if (b(0) < 0xF0) return length = 3, (b(0) & 0x0F) << 12 | (b(1) & 0x3F) << 6 | (b(2) & 0x3F);
  return length = 4, (b(0) & 0x07) << 18 | (b(1) & 0x3F) << 12 | (b(2) & 0x3F) << 6 | (b(3) & 0x3F);
}

bool IsUnsafe(char32_t c) {
  return c < 0x20 || c == 0x7F || (c >= 0x80 && c <= 0x9F) ||           // C0, DEL, C1 (0x9B is CSI)
         (c >= 0x202A && c <= 0x202E) || (c >= 0x2066 && c <= 0x2069);  // bidi overrides
}

}  // namespace

std::string TerminalSafe(absl::string_view text) {
  const std::string valid = ValidUtf8(std::string_view(text.data(), text.size()));
  std::string out;
  out.reserve(valid.size());
  for (size_t i = 0; i < valid.size();) {
    size_t length = 0;
    const char32_t c = Decode(std::string_view(valid).substr(i), length);
    if (!IsUnsafe(c)) {
      out.append(valid, i, length);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x100) {
      out += absl::StrFormat("\\x%02x", static_cast<unsigned>(c));
    } else {
      out += absl::StrFormat("\\u%04x", static_cast<unsigned>(c));
    }
    i += length;
  }
  return out;
}

}  // namespace qnet::cli
