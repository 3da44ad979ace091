// BlobStore: content addressing, digest verification, size limits, partial uploads, resumable
// uploads, offsets.
#include "server/blobs/blob_store.h"

#include <filesystem>

#include "common/digest.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/server/test_util.h"

namespace qnet::server {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using testing::TempDir;

class BlobStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = BlobStore::Open(dir_ / "blobs", /*max_blob_bytes=*/1000);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
  }

  absl::StatusOr<BlobInfo> Put(const std::string& data, int64_t declared,
                               const std::string& digest = "", size_t chunk = 7) {
    auto upload = store_->StartUpload(declared, digest);
    if (!upload.ok()) return upload.status();
    for (size_t i = 0; i < data.size(); i += chunk) {
      if (absl::Status s = (*upload)->Append(absl::string_view(data).substr(i, chunk)); !s.ok()) {
        return s;
      }
    }
    return (*upload)->Commit();
  }

  int TempFiles() { return testing::CountFiles(dir_ / "blobs/tmp"); }

  TempDir dir_;
  std::unique_ptr<BlobStore> store_;
};

TEST_F(BlobStoreTest, StoresByContentDigest) {
  const std::string data = "hello, quantized world";
  auto blob = Put(data, static_cast<int64_t>(data.size()), DigestOf(data));
  ASSERT_TRUE(blob.ok()) << blob.status();
  EXPECT_EQ(blob->digest, DigestOf(data));
  EXPECT_EQ(blob->size_bytes, static_cast<int64_t>(data.size()));
  EXPECT_EQ(testing::ReadFile(dir_ / ("blobs/sha256/" + blob->digest.substr(7))), data);
  EXPECT_EQ(*store_->Stat(blob->digest), static_cast<int64_t>(data.size()));
  // Uploading the same bytes again (size undeclared) is fine and yields the same digest.
  auto again = Put(data, 0);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->digest, blob->digest);
  EXPECT_EQ(TempFiles(), 0);
}

TEST_F(BlobStoreTest, ErrorsNameNoServerPath) {
  std::filesystem::remove_all(dir_ / "blobs/tmp");  // every upload now fails to create its file
  const absl::StatusOr<BlobInfo> blob = Put("abc", 3);
  ASSERT_FALSE(blob.ok());
  EXPECT_THAT(std::string(blob.status().message()), HasSubstr("blob store: create failed"));
  EXPECT_THAT(std::string(blob.status().message()), Not(HasSubstr(dir_.path())));
}

TEST_F(BlobStoreTest, DigestMismatchStoresNothing) {
  const std::string data = "abc";
  auto blob = Put(data, 3, DigestOf("something else"));
  ASSERT_FALSE(blob.ok());
  EXPECT_EQ(blob.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(blob.status().message()), HasSubstr("digest mismatch"));
  EXPECT_TRUE(absl::IsNotFound(store_->Stat(DigestOf(data)).status()));
  EXPECT_EQ(TempFiles(), 0);
  // A malformed expected digest is refused up front.
  EXPECT_EQ(Put(data, 3, "sha256:XYZ").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Put(data, 3, "md5:00").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(BlobStoreTest, SizeLimitUpFrontAndWhileStreaming) {
  auto declared = store_->StartUpload(1001, "");
  EXPECT_EQ(declared.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(declared.status().message()), HasSubstr("--max-blob-bytes"));
  // Undeclared size: refused when the stream crosses the limit.
  auto streamed = Put(std::string(1500, 'x'), 0);
  EXPECT_EQ(streamed.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(TempFiles(), 0);
  EXPECT_TRUE(Put(std::string(1000, 'x'), 1000).ok());  // exactly the limit is fine
  EXPECT_EQ(store_->StartUpload(-1, "").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(BlobStoreTest, DeclaredSizeMustMatch) {
  auto longer = Put("0123456789", 5);
  EXPECT_EQ(longer.status().code(), absl::StatusCode::kInvalidArgument);
  auto shorter = Put("0123", 5);
  EXPECT_EQ(shorter.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(shorter.status().message()), HasSubstr("declared 5"));
  EXPECT_EQ(TempFiles(), 0);
}

TEST_F(BlobStoreTest, AbandonedUploadLeavesNothing) {
  {
    auto upload = store_->StartUpload(100, "");
    ASSERT_TRUE(upload.ok());
    ASSERT_TRUE((*upload)->Append("partial").ok());
    EXPECT_EQ(TempFiles(), 1);
  }  // client went away
  EXPECT_EQ(TempFiles(), 0);
  EXPECT_EQ(testing::CountFiles(dir_ / "blobs/sha256"), 0);
}

TEST_F(BlobStoreTest, ReadsFromAnOffset) {
  std::string data;
  for (int i = 0; i < 100; ++i) data += static_cast<char>('a' + i % 26);
  auto blob = Put(data, 100);
  ASSERT_TRUE(blob.ok());
  auto reader = store_->OpenReader(blob->digest, 40);
  ASSERT_TRUE(reader.ok()) << reader.status();
  EXPECT_EQ((*reader)->size(), 100);
  std::string got;
  while (true) {
    auto chunk = (*reader)->Read(16);
    ASSERT_TRUE(chunk.ok());
    if (chunk->empty()) break;
    got += *chunk;
  }
  EXPECT_EQ(got, data.substr(40));
  auto at_end = store_->OpenReader(blob->digest, 100);
  ASSERT_TRUE(at_end.ok());
  EXPECT_EQ(*(*at_end)->Read(16), "");
  EXPECT_EQ(store_->OpenReader(blob->digest, 101).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(store_->OpenReader(blob->digest, -1).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(store_->OpenReader(DigestOf("nope"), 0).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->OpenReader("sha256:../../etc/passwd", 0).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(BlobStoreTest, ImportFileIgnoresTheClientLimitAndReopenCleansTemp) {
  testing::WriteFile(dir_ / "big.bin", std::string(5000, 'z'));
  auto blob = store_->ImportFile(dir_ / "big.bin");
  ASSERT_TRUE(blob.ok()) << blob.status();
  EXPECT_EQ(blob->size_bytes, 5000);
  EXPECT_EQ(blob->digest, DigestOf(std::string(5000, 'z')));
  EXPECT_FALSE(store_->ImportFile(dir_ / "missing.bin").ok());

  testing::WriteFile(dir_ / "blobs/tmp/upload-left-by-a-crash", "junk");
  auto reopened = BlobStore::Open(dir_ / "blobs", 1000);
  ASSERT_TRUE(reopened.ok());
  EXPECT_EQ(TempFiles(), 0);
  EXPECT_TRUE((*reopened)->Contains(blob->digest));
}

TEST_F(BlobStoreTest, AnInterruptedResumableUploadContinuesWhereItStopped) {
  const std::string data = "0123456789abcdefghij";
  const std::string digest = DigestOf(data);
  EXPECT_EQ(store_->PartialUploadSize(digest), 0);
  {
    auto upload = store_->StartResumableUpload(20, digest, 0);
    ASSERT_TRUE(upload.ok()) << upload.status();
    ASSERT_TRUE((*upload)->Append(data.substr(0, 12)).ok());
  }  // the client went away after 12 bytes
  EXPECT_EQ(store_->PartialUploadSize(digest), 12);
  // Kept over a restart too.
  auto reopened = BlobStore::Open(dir_ / "blobs", 1000);
  ASSERT_TRUE(reopened.ok());
  EXPECT_EQ((*reopened)->PartialUploadSize(digest), 12);

  // Past what the server holds: refused, and the bytes stay.
  auto beyond = store_->StartResumableUpload(20, digest, 13);
  EXPECT_EQ(beyond.status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_THAT(std::string(beyond.status().message()), HasSubstr("holds 12 bytes"));
  EXPECT_EQ(store_->PartialUploadSize(digest), 12);

  // One writer per digest: a second resume waits, a fresh upload goes its own way.
  auto resumed = store_->StartResumableUpload(20, digest, 10);  // 2 bytes sent again
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  EXPECT_EQ((*resumed)->bytes_received(), 10);
  EXPECT_EQ(store_->StartResumableUpload(20, digest, 10).status().code(),
            absl::StatusCode::kAborted);
  auto fresh = store_->StartResumableUpload(20, digest, 0);
  ASSERT_TRUE(fresh.ok());
  fresh->reset();

  ASSERT_TRUE((*resumed)->Append(data.substr(10)).ok());
  auto blob = (*resumed)->Commit();
  ASSERT_TRUE(blob.ok()) << blob.status();
  EXPECT_EQ(blob->digest, digest);
  EXPECT_EQ(testing::ReadFile(store_->PathOf(digest)), data);
  EXPECT_EQ(store_->PartialUploadSize(digest), 0);
  EXPECT_EQ(TempFiles(), 0);
}

TEST_F(BlobStoreTest, ResumedBytesThatDoNotMatchAreDropped) {
  const std::string data = "the real content";
  const std::string digest = DigestOf(data);
  {
    auto upload = store_->StartResumableUpload(16, digest, 0);
    ASSERT_TRUE(upload.ok());
    ASSERT_TRUE((*upload)->Append("THE").ok());  // not what the digest says
  }
  auto resumed = store_->StartResumableUpload(16, digest, 3);
  ASSERT_TRUE(resumed.ok());
  ASSERT_TRUE((*resumed)->Append(data.substr(3)).ok());
  auto blob = (*resumed)->Commit();
  EXPECT_EQ(blob.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(blob.status().message()), HasSubstr("digest mismatch"));
  EXPECT_EQ(store_->PartialUploadSize(digest), 0);  // the next attempt starts over
  EXPECT_FALSE(store_->Contains(digest));
}

}  // namespace
}  // namespace qnet::server
