#include "common/token_file.h"

#include <fstream>
#include <string>

#include <gtest/gtest.h>

namespace qnet {
namespace {

std::string WriteFile(const std::string& name, const std::string& content) {
  const std::string path = ::testing::TempDir() + "/" + name;
  std::ofstream(path, std::ios::binary) << content;
  return path;
}

TEST(TokenFileTest, ReadsTheTokenWithoutSurroundingWhitespace) {
  absl::StatusOr<std::string> token = ReadTokenFile(WriteFile("tok1", "  s3cr3t-Token_x\n\n"));
  ASSERT_TRUE(token.ok()) << token.status();
  EXPECT_EQ(*token, "s3cr3t-Token_x");
}

TEST(TokenFileTest, RejectsMissingEmptyMultiWordAndOversizedFilesNamingThem) {
  const std::string missing = ::testing::TempDir() + "/no-such-token";
  absl::StatusOr<std::string> r = ReadTokenFile(missing);
  EXPECT_TRUE(absl::IsInvalidArgument(r.status()));
  EXPECT_NE(r.status().message().find(missing), std::string::npos);
  for (const std::string& bad :
       {std::string(" \n"), std::string("two words"), std::string("tab\there"),
        std::string(2000, 'a'), std::string("bin\x01ary")}) {
    const std::string path = WriteFile("tok_bad", bad);
    r = ReadTokenFile(path);
    EXPECT_TRUE(absl::IsInvalidArgument(r.status())) << bad.substr(0, 20);
    EXPECT_NE(r.status().message().find(path), std::string::npos) << r.status();
  }
}

TEST(TokenFileTest, CheckTokenNamesItsSource) {
  EXPECT_EQ(*CheckToken(" abc ", "QNET_WORKER_TOKEN"), "abc");
  absl::StatusOr<std::string> r = CheckToken("", "QNET_WORKER_TOKEN");
  EXPECT_TRUE(absl::IsInvalidArgument(r.status()));
  EXPECT_NE(r.status().message().find("QNET_WORKER_TOKEN"), std::string::npos);
}

}  // namespace
}  // namespace qnet
