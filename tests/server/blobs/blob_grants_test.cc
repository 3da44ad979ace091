// BlobGrants' upload quota over a real BlobStore: use counted per identity for job-less grants at
// the blob's size, refusals naming the limit and the use, rebuilt on reopen; Forget gives the
// bytes back and rewrites the log without the removed blobs.
#include "server/blobs/blob_grants.h"

#include <memory>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/blobs/blob_store.h"
#include "tests/server/test_util.h"

namespace qnet::server {
namespace {

using ::testing::HasSubstr;
using testing::TempDir;

class BlobGrantsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto blobs = BlobStore::Open(dir_ / "blobs", 1 << 20);
    ASSERT_TRUE(blobs.ok());
    blobs_ = *std::move(blobs);
    Reopen();
  }

  void Reopen() {
    grants_.reset();
    auto grants = BlobGrants::Open(dir_ / "grants.log", blobs_.get(), /*upload_quota_bytes=*/100);
    ASSERT_TRUE(grants.ok()) << grants.status();
    grants_ = *std::move(grants);
  }

  std::string Put(int size, char fill) {
    auto upload = blobs_->StartUpload(0, "");
    EXPECT_TRUE(upload.ok() && (*upload)->Append(std::string(size, fill)).ok());
    return (*upload)->Commit()->digest;
  }

  TempDir dir_;
  std::unique_ptr<BlobStore> blobs_;
  std::unique_ptr<BlobGrants> grants_;
};

TEST_F(BlobGrantsTest, UploadsCountAgainstTheQuotaOfTheirUploader) {
  const std::string a = Put(60, 'a');
  const std::string b = Put(50, 'b');
  ASSERT_TRUE(grants_->Grant(a, "alice", "").ok());
  ASSERT_TRUE(grants_->Grant(a, "alice", "").ok());  // the same blob again counts once
  EXPECT_EQ(grants_->UploadedBytes("alice"), 60);
  EXPECT_TRUE(grants_->CheckUpload("alice", 40).ok());
  const absl::Status up_front = grants_->CheckUpload("alice", 41);
  EXPECT_EQ(up_front.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(up_front.message()),
              HasSubstr("alice has 60 bytes of uploads stored and the limit is 100 "
                        "(qnetd --quota-upload-bytes); this upload of 41 bytes"));
  EXPECT_EQ(grants_->Grant(b, "alice", "").code(), absl::StatusCode::kResourceExhausted);
  EXPECT_FALSE(grants_->HasAny(b, "alice"));
  // Other identities, and blobs uploaded for jobs (a worker's), are counted apart.
  EXPECT_TRUE(grants_->Grant(b, "bob", "").ok());
  EXPECT_TRUE(grants_->Grant(b, "alice", "j-1").ok());
  EXPECT_EQ(grants_->UploadedBytes("alice"), 60);
  EXPECT_EQ(grants_->UploadedBytes("bob"), 50);
  // Rebuilt from the log and the blob sizes.
  Reopen();
  EXPECT_EQ(grants_->UploadedBytes("alice"), 60);
  EXPECT_EQ(grants_->HoldersOf(b).size(), 2u);
}

TEST_F(BlobGrantsTest, ForgetGivesTheBytesBackAndShrinksTheLog) {
  const std::string a = Put(60, 'a');
  const std::string b = Put(30, 'b');
  ASSERT_TRUE(grants_->Grant(a, "alice", "").ok());
  ASSERT_TRUE(grants_->Grant(b, "alice", "").ok());
  ASSERT_TRUE(grants_->Grant(a, "gpu", "j-1").ok());
  ASSERT_TRUE(blobs_->Remove(a).ok());
  ASSERT_TRUE(grants_->Forget({a}).ok());
  EXPECT_EQ(grants_->UploadedBytes("alice"), 30);
  EXPECT_FALSE(grants_->HasAny(a, "alice"));
  EXPECT_TRUE(grants_->HoldersOf(a).empty());
  EXPECT_EQ(testing::ReadFile(dir_ / "grants.log"), b + " alice -\n");
  // Appends after the rewrite land in the new log.
  const std::string c = Put(10, 'c');
  ASSERT_TRUE(grants_->Grant(c, "alice", "").ok());
  Reopen();
  EXPECT_EQ(grants_->UploadedBytes("alice"), 40);
  EXPECT_TRUE(grants_->HasAny(c, "alice"));
}

}  // namespace
}  // namespace qnet::server
