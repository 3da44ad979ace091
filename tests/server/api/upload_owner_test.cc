// A resumable upload belongs to the identity that began it, through an in-process qnetd with a
// tokens file: another client neither sees its offset, continues it nor finishes it; its own
// upload of the same bytes runs beside it and leaves it intact; the owner resumes and finishes.
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>

#include "common/digest.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "qnet/v1/blob.grpc.pb.h"
#include "tests/server/test_server.h"
#include "tests/server/test_util.h"

namespace qnet::server {
namespace {

using ::testing::HasSubstr;

constexpr size_t kChunk = 4096;

class UploadOwnerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tokens_ = testing::WriteTokensFile(dir_ / "tokens",
                                       {{"alice", Role::kClient}, {"bob", Role::kClient}});
    QnetServerOptions options = testing::LoopbackServerOptions(dir_, /*http=*/false);
    options.auth_tokens_path = dir_ / "tokens";
    auto server = QnetServerImpl::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    blobs_ = v1::BlobService::NewStub(
        grpc::CreateChannel(server_->grpc_address(), grpc::InsecureChannelCredentials()));
    for (int i = 0; content_.size() < 4 * kChunk; ++i) content_ += std::to_string(i) + ",";
    digest_ = DigestOf(content_);
  }

  void As(grpc::ClientContext& context, const std::string& name) {
    testing::Authorize(context, tokens_[name]);
  }

  int64_t Offset(const std::string& name) {
    grpc::ClientContext context;
    As(context, name);
    v1::GetUploadOffsetRequest request;
    request.set_digest(digest_);
    v1::GetUploadOffsetResponse response;
    grpc::Status s = blobs_->GetUploadOffset(&context, request, &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return response.offset();
  }

  // Uploads content_[offset, end) as `name`, announcing `offset`.
  grpc::Status Upload(const std::string& name, int64_t offset) {
    grpc::ClientContext context;
    As(context, name);
    v1::UploadResponse response;
    auto writer = blobs_->Upload(&context, &response);
    v1::UploadRequest header;
    header.mutable_header()->set_size_bytes(static_cast<int64_t>(content_.size()));
    header.mutable_header()->set_digest(digest_);
    header.mutable_header()->set_kind("model");
    header.mutable_header()->set_offset(offset);
    bool open = writer->Write(header);
    for (size_t at = static_cast<size_t>(offset); open && at < content_.size(); at += kChunk) {
      v1::UploadRequest chunk;
      chunk.set_chunk(content_.substr(at, kChunk));
      open = writer->Write(chunk);
    }
    if (open) writer->WritesDone();
    return writer->Finish();
  }

  // Alice resumes from `offset`. Until the server has seen her broken connection end, it still
  // holds that upload and answers ABORTED ("retry once it ends"); a client retries then.
  grpc::Status AliceResumes(int64_t offset) {
    grpc::Status status;
    EXPECT_TRUE(testing::WaitFor([&] {
      status = Upload("alice", offset);
      return status.error_code() != grpc::StatusCode::ABORTED;
    }));
    return status;
  }

  // Alice sends the first two chunks, then her connection breaks.
  void AliceBreaksOffHalfway() {
    grpc::ClientContext context;
    As(context, "alice");
    v1::UploadResponse response;
    auto writer = blobs_->Upload(&context, &response);
    v1::UploadRequest header;
    header.mutable_header()->set_size_bytes(static_cast<int64_t>(content_.size()));
    header.mutable_header()->set_digest(digest_);
    header.mutable_header()->set_kind("model");
    ASSERT_TRUE(writer->Write(header));
    for (int i = 0; i < 2; ++i) {
      v1::UploadRequest chunk;
      chunk.set_chunk(content_.substr(i * kChunk, kChunk));
      ASSERT_TRUE(writer->Write(chunk));
    }
    ASSERT_TRUE(testing::WaitFor([&] { return Offset("alice") == 2 * kChunk; }));
    context.TryCancel();
    EXPECT_FALSE(writer->Finish().ok());
  }

  testing::TempDir dir_;
  std::map<std::string, std::string> tokens_;
  std::unique_ptr<QnetServerImpl> server_;
  std::unique_ptr<v1::BlobService::Stub> blobs_;
  std::string content_;
  std::string digest_;
};

TEST_F(UploadOwnerTest, AnotherIdentityCannotQueryContinueOrFinishIt) {
  AliceBreaksOffHalfway();
  EXPECT_EQ(Offset("bob"), 0);  // as if there were none
  grpc::Status continued = Upload("bob", 2 * kChunk);
  EXPECT_EQ(continued.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(continued.error_message(), HasSubstr("upload it from offset 0"));
  EXPECT_FALSE(server_->blobs().Contains(digest_));
  // Bob's refused attempt left Alice's bytes as they were.
  EXPECT_EQ(Offset("alice"), static_cast<int64_t>(2 * kChunk));

  grpc::Status resumed = AliceResumes(2 * kChunk);
  ASSERT_TRUE(resumed.ok()) << resumed.error_message();
  EXPECT_EQ(testing::ReadFile(server_->blobs().PathOf(digest_)), content_);
  EXPECT_EQ(Offset("alice"), 0);
}

TEST_F(UploadOwnerTest, AnotherIdentitysWholeUploadLeavesItIntact) {
  AliceBreaksOffHalfway();
  grpc::Status whole = Upload("bob", 0);
  ASSERT_TRUE(whole.ok()) << whole.error_message();
  EXPECT_EQ(testing::ReadFile(server_->blobs().PathOf(digest_)), content_);
  EXPECT_EQ(Offset("alice"), static_cast<int64_t>(2 * kChunk));
  grpc::Status resumed = AliceResumes(2 * kChunk);
  EXPECT_TRUE(resumed.ok()) << resumed.error_message();
}

}  // namespace
}  // namespace qnet::server
