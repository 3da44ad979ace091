#include "common/utf8.h"

#include <string>

#include "absl/strings/str_cat.h"

#include <gtest/gtest.h>

namespace qnet {
namespace {

const std::string kEuro = "\xE2\x82\xAC";       // U+20AC, 3 bytes
const std::string kEmoji = "\xF0\x9F\x98\x80";  // U+1F600, 4 bytes
const std::string kFffd = "\xEF\xBF\xBD";       // U+FFFD

TEST(Utf8Test, WellFormedTextIsUnchanged) {
  const std::string text = "plain, caf\xC3\xA9, " + kEuro + kEmoji;
  EXPECT_TRUE(IsValidUtf8(text));
  EXPECT_EQ(ValidUtf8(text), text);
  EXPECT_TRUE(IsValidUtf8(""));
}

TEST(Utf8Test, IllFormedSequencesBecomeReplacementCharacters) {
  struct Case {
    std::string in, out;
  };
  for (const Case& c : {
           Case{"a\xC3", "a" + kFffd},  // cut 2-byte character
           Case{absl::StrCat("a", kEuro.substr(0, 2), "b"),
                absl::StrCat("a", kFffd, "b")},                      // one U+FFFD per subpart
           Case{"\xC0\xAF", kFffd + kFffd},                          // overlong '/'
           Case{"\xE0\x80\xAF", kFffd + kFffd + kFffd},              // overlong 3-byte form
           Case{"\xED\xA0\x80", kFffd + kFffd + kFffd},              // UTF-16 surrogate
           Case{"\xF4\x90\x80\x80", kFffd + kFffd + kFffd + kFffd},  // past U+10FFFF
           Case{"\xFF"
                "x",
                kFffd + "x"},
           Case{"\x80\x80", kFffd + kFffd},  // stray continuation bytes
       }) {
    EXPECT_FALSE(IsValidUtf8(c.in));
    const std::string repaired = ValidUtf8(c.in);
    EXPECT_EQ(repaired, c.out);
    EXPECT_TRUE(IsValidUtf8(repaired));
  }
}

TEST(Utf8Test, TruncationNeverSplitsACharacter) {
  const std::string text = "ab" + kEuro + kEmoji;  // 2 + 3 + 4 bytes
  EXPECT_EQ(TruncateUtf8(text, 100), text);
  EXPECT_EQ(TruncateUtf8(text, 9), text);
  EXPECT_EQ(TruncateUtf8(text, 8), "ab" + kEuro);
  EXPECT_EQ(TruncateUtf8(text, 5), "ab" + kEuro);
  EXPECT_EQ(TruncateUtf8(text, 4), "ab");
  EXPECT_EQ(TruncateUtf8(text, 0), "");
  for (size_t n = 0; n <= text.size(); ++n) {
    EXPECT_TRUE(IsValidUtf8(TruncateUtf8(text, n))) << n;
    EXPECT_LE(TruncateUtf8(text, n).size(), n);
  }
  // Repaired first, then cut: the limit holds for the repaired text.
  EXPECT_EQ(TruncateUtf8("\xFF\xFF", 4), kFffd);
}

}  // namespace
}  // namespace qnet
