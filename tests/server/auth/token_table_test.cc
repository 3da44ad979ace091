// The tokens file: identities, roles, hashes, comments, and errors that name the line.
#include "server/auth/token_table.h"

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/auth/authenticator.h"
#include "tests/server/test_util.h"

namespace qnet::server {
namespace {

using ::testing::HasSubstr;

TEST(TokenTableTest, FindsIdentitiesByTokenAndName) {
  const std::string alice = NewToken(), ci = NewToken();
  absl::StatusOr<TokenTable> table = TokenTable::Parse(
      "# who may call qnetd\n"
      "alice   client  " +
          TokenHash(alice) +
          "   # the data team\n"
          "\n"
          "ci\tworker\t" +
          TokenHash(ci) +
          "\r\n"
          "edge-1 worker -\n",
      "tokens");
  ASSERT_TRUE(table.ok()) << table.status();
  EXPECT_EQ(table->size(), 3u);
  EXPECT_EQ(table->FindToken(alice), (Identity{"alice", Role::kClient}));
  EXPECT_EQ(table->FindToken(ci), (Identity{"ci", Role::kWorker}));
  EXPECT_FALSE(table->FindToken(alice + "x").has_value());
  EXPECT_FALSE(table->FindToken("").has_value());  // a certificate-only entry has no token
  EXPECT_EQ(table->FindName("edge-1"), (Identity{"edge-1", Role::kWorker}));
  EXPECT_FALSE(table->FindName("mallory").has_value());
}

TEST(TokenTableTest, FindsEachOfManyIdentities) {
  std::vector<std::string> tokens;
  std::string text;
  for (int i = 0; i < 300; ++i) {
    tokens.push_back(NewToken());
    absl::StrAppend(&text, "w", i, " worker ", TokenHash(tokens.back()), "\n");
  }
  text += "edge worker -\n";
  absl::StatusOr<TokenTable> table = TokenTable::Parse(text, "tokens");
  ASSERT_TRUE(table.ok()) << table.status();
  for (int i = 0; i < 300; ++i) {
    const Identity expected{absl::StrCat("w", i), Role::kWorker};
    EXPECT_EQ(table->FindToken(tokens[i]), expected);
    EXPECT_EQ(table->FindName(expected.name), expected);
  }
  EXPECT_FALSE(table->FindToken(NewToken()).has_value());
  EXPECT_EQ(table->FindName("edge"), (Identity{"edge", Role::kWorker}));
  EXPECT_THAT(table->Add({"w7", Role::kAdmin}, "").message(), HasSubstr("w7 is listed twice"));
  EXPECT_THAT(table->Add({"late", Role::kAdmin}, TokenHash(tokens[123])).message(),
              HasSubstr("identities w123 and late have the same token"));
  EXPECT_FALSE(table->FindName("late").has_value());
}

TEST(TokenTableTest, ErrorsNameTheFileAndLine) {
  const std::string hash = TokenHash("t");
  const struct {
    std::string text;
    std::string error;
  } cases[] = {
      {"# ok\nalice client\n", "tokens:2: expected NAME ROLE sha256:HEX, found 2 field(s)"},
      {"alice owner " + hash + "\n", "tokens:1: unknown role \"owner\""},
      {"alice client 5e8848\n", "tokens:1: the token hash must be sha256: and 64 hex digits"},
      {"alice client sha256:" + std::string(64, 'G') + "\n", "tokens:1: the token hash must be"},
      {"alice client " + hash + "\nalice admin -\n", "tokens:2: identity alice is listed twice"},
      {"a client " + hash + "\nb client " + hash + "\n",
       "tokens:2: identities a and b have the same token"},
      {"-bad client " + hash + "\n", "tokens:1: identity name \"-bad\""},
      {"alice client " + hash + " extra\n", "found 4 field(s)"},
  };
  for (const auto& c : cases) {
    absl::StatusOr<TokenTable> table = TokenTable::Parse(c.text, "tokens");
    ASSERT_FALSE(table.ok()) << c.text;
    EXPECT_EQ(table.status().code(), absl::StatusCode::kInvalidArgument) << c.text;
    EXPECT_THAT(table.status().message(), HasSubstr(c.error));
  }
  EXPECT_THAT(TokenTable::Load("/nonexistent/tokens").status().message(),
              HasSubstr("cannot read the tokens file /nonexistent/tokens"));
}

TEST(TokenTableTest, NewTokensAreLongAndDistinct) {
  const std::string a = NewToken(), b = NewToken();
  EXPECT_NE(a, b);
  EXPECT_EQ(a.size(), 5u + 64u);
  EXPECT_EQ(a.rfind("qnet_", 0), 0u);
  EXPECT_EQ(TokenHash("abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(AuthenticatorTest, BearerHeadersAndReload) {
  testing::TempDir dir;
  const std::string alice = NewToken(), bob = NewToken();
  testing::WriteFile(dir / "tokens", "alice client " + TokenHash(alice) + "\n");
  absl::StatusOr<std::unique_ptr<Authenticator>> auth = Authenticator::FromFile(dir / "tokens");
  ASSERT_TRUE(auth.ok()) << auth.status();
  EXPECT_EQ((*auth)->AuthenticateBearer("Bearer " + alice)->name, "alice");
  EXPECT_TRUE(absl::IsUnauthenticated((*auth)->AuthenticateBearer("").status()));
  EXPECT_TRUE(absl::IsUnauthenticated((*auth)->AuthenticateBearer(alice).status()));
  EXPECT_TRUE(absl::IsUnauthenticated((*auth)->AuthenticateBearer("Bearer " + bob).status()));

  // A generated identity survives reloads; a broken file changes nothing.
  absl::StatusOr<std::string> local = (*auth)->AddGenerated({"local-worker-0", Role::kWorker});
  ASSERT_TRUE(local.ok());
  testing::WriteFile(dir / "tokens", "bob admin " + TokenHash(bob) + "\n");
  ASSERT_TRUE((*auth)->Reload().ok());
  EXPECT_TRUE(absl::IsUnauthenticated((*auth)->AuthenticateBearer("Bearer " + alice).status()));
  EXPECT_EQ((*auth)->AuthenticateBearer("Bearer " + bob)->role, Role::kAdmin);
  EXPECT_EQ((*auth)->AuthenticateBearer("Bearer " + *local)->name, "local-worker-0");
  testing::WriteFile(dir / "tokens", "bob admin\n");
  EXPECT_THAT((*auth)->Reload().message(), HasSubstr(":1: expected NAME ROLE"));
  EXPECT_EQ((*auth)->AuthenticateBearer("Bearer " + bob)->name, "bob");
  testing::WriteFile(dir / "tokens", "local-worker-0 admin -\n");
  EXPECT_THAT((*auth)->Reload().message(), HasSubstr("is a local worker of this qnetd"));

  EXPECT_TRUE(RequireRole({"bob", Role::kAdmin}, RoleBit(Role::kAdmin), "x").ok());
  EXPECT_THAT(RequireRole({"m", Role::kMetrics}, RoleBit(Role::kClient), "list jobs").message(),
              HasSubstr("identity m (role metrics) may not list jobs"));
  EXPECT_EQ(Authenticator::Open()->AuthenticateBearer("")->role, Role::kAdmin);
}

}  // namespace
}  // namespace qnet::server
