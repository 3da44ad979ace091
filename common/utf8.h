// UTF-8 repair and truncation for text that is stored in protobuf string fields: a string field
// with invalid UTF-8 makes the whole message unparseable, so a job record holding one could never
// be read back.
//
//   std::string s = qnet::ValidUtf8("caf\xC3");         // "caf\uFFFD"
//   std::string e = qnet::TruncateUtf8(error, 8192);     // at most 8192 bytes, whole characters
#ifndef QNET_COMMON_UTF8_H_
#define QNET_COMMON_UTF8_H_

#include <cstddef>
#include <string>
#include <string_view>

namespace qnet {

// True when `s` is well-formed UTF-8 (no overlong forms, surrogates or code points past U+10FFFF).
bool IsValidUtf8(std::string_view s);

// `s` with every ill-formed sequence replaced by U+FFFD (one per maximal ill-formed subpart, as
// Unicode recommends); well-formed input comes back unchanged.
std::string ValidUtf8(std::string_view s);

// ValidUtf8(s) cut to at most `max_bytes` bytes, never inside a character.
std::string TruncateUtf8(std::string_view s, size_t max_bytes);

}  // namespace qnet

#endif  // QNET_COMMON_UTF8_H_
