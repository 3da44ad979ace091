#include "common/atomic_file.h"

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include <gtest/gtest.h>

namespace qnet {
namespace {

namespace fs = std::filesystem;

std::string ReadAll(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

class AtomicFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) /
           ("atomic_file_" +
            std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

TEST_F(AtomicFileTest, WritesBinaryDataAndReplacesOldContents) {
  const fs::path path = dir_ / "a.bin";
  const std::string bytes("x\0y\n\xff", 5);
  ASSERT_TRUE(WriteFileAtomically(path.string(), bytes).ok());
  EXPECT_EQ(ReadAll(path), bytes);
  ASSERT_TRUE(WriteFileAtomically(path.string(), "shorter").ok());
  EXPECT_EQ(ReadAll(path), "shorter");
  EXPECT_FALSE(fs::exists(path.string() + ".tmp"));
}

TEST_F(AtomicFileTest, CreatesMissingParentDirectories) {
  const fs::path path = dir_ / "deep" / "er" / "m.json";
  ASSERT_TRUE(WriteFileAtomically(path.string(), "{}").ok());
  EXPECT_EQ(ReadAll(path), "{}");
}

TEST_F(AtomicFileTest, FailureNamesThePathAndKeepsTheOldFile) {
  // A directory where the file should go: the rename fails, the old entry stays.
  const fs::path path = dir_ / "taken";
  fs::create_directories(path / "child");
  absl::Status s = WriteFileAtomically(path.string(), "data");
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find(path.string()), std::string::npos) << s;
  EXPECT_TRUE(fs::is_directory(path / "child"));
  EXPECT_FALSE(fs::exists(path.string() + ".tmp"));

  // A regular file where a parent directory should be.
  std::ofstream(dir_ / "plain") << "x";
  s = WriteFileAtomically((dir_ / "plain" / "f").string(), "data");
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("plain"), std::string::npos) << s;
  EXPECT_EQ(ReadAll(dir_ / "plain"), "x");
}

}  // namespace
}  // namespace qnet
