#include "common/digest.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

namespace qnet {
namespace {

TEST(DigestTest, KnownVectors) {
  EXPECT_EQ(DigestOf(""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(DigestOf("abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(DigestTest, IncrementalEqualsOneShot) {
  Sha256 h;
  h.Update("a");
  h.Update("bc");
  EXPECT_EQ(h.Digest(), DigestOf("abc"));
}

TEST(DigestTest, FileDigestMatchesBytes) {
  auto path = std::filesystem::path(testing::TempDir()) / "digest_test.bin";
  std::string data(3 << 20, 'x');
  std::ofstream(path, std::ios::binary) << data;
  auto d = FileDigest(path.string());
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(*d, DigestOf(data));
  EXPECT_FALSE(FileDigest("/nonexistent/file").ok());
}

TEST(DigestTest, Validation) {
  EXPECT_TRUE(IsValidDigest(DigestOf("abc")));
  EXPECT_FALSE(IsValidDigest("sha256:../../etc/passwd"));
  EXPECT_FALSE(IsValidDigest("md5:" + std::string(64, 'a')));
  EXPECT_FALSE(IsValidDigest("sha256:" + std::string(64, 'A')));
  EXPECT_FALSE(IsValidDigest("sha256:" + std::string(63, 'a')));
}

}  // namespace
}  // namespace qnet
