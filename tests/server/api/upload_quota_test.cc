// The upload quota (qnetd --quota-upload-bytes) holds while an upload streams: one that declares
// no size is stopped with RESOURCE_EXHAUSTED, naming the limit, as soon as the caller's stored
// uploads plus the bytes received pass it, without waiting for the client to finish sending, and
// its bytes are removed; the quota it did not use stays for the next upload.
#include <filesystem>

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "qnet/v1/blob.grpc.pb.h"
#include "tests/server/test_server.h"
#include "tests/server/test_util.h"

namespace qnet::server {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kQuota = 10000;
constexpr size_t kChunk = 4096;

class UploadQuotaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    token_ = testing::WriteTokensFile(dir_ / "tokens", {{"alice", Role::kClient}})["alice"];
    QnetServerOptions options = testing::LoopbackServerOptions(dir_, /*http=*/false);
    options.auth_tokens_path = dir_ / "tokens";
    options.quota_upload_bytes = kQuota;
    auto server = QnetServerImpl::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    blobs_ = v1::BlobService::NewStub(
        grpc::CreateChannel(server_->grpc_address(), grpc::InsecureChannelCredentials()));
  }

  // Sends a header without size or digest and then `bytes` in chunks, and does not half-close:
  // only the server can end the call before the deadline.
  grpc::Status UploadUnsized(size_t bytes, bool finish_sending) {
    grpc::ClientContext context;
    testing::Authorize(context, token_);
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v1::UploadResponse response;
    auto writer = blobs_->Upload(&context, &response);
    v1::UploadRequest header;
    header.mutable_header()->set_kind("model");
    bool open = writer->Write(header);
    for (size_t sent = 0; open && sent < bytes; sent += kChunk) {
      v1::UploadRequest chunk;
      chunk.set_chunk(std::string(std::min(kChunk, bytes - sent), 'q'));
      open = writer->Write(chunk);
    }
    if (open && finish_sending) writer->WritesDone();
    return writer->Finish();
  }

  bool NoTempFiles() {
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(dir_ / "data/blobs/tmp", ec)) {
      if (entry.is_regular_file()) return false;
    }
    return !ec;
  }

  testing::TempDir dir_;
  std::string token_;
  std::unique_ptr<QnetServerImpl> server_;
  std::unique_ptr<v1::BlobService::Stub> blobs_;
};

TEST_F(UploadQuotaTest, AnUnsizedUploadStopsAsSoonAsItPassesTheQuota) {
  const grpc::Status s = UploadUnsized(4 * kChunk, /*finish_sending=*/false);
  ASSERT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << s.error_message();
  EXPECT_THAT(s.error_message(), HasSubstr("the limit is 10000 (qnetd --quota-upload-bytes)"));
  EXPECT_TRUE(testing::WaitFor([&] { return NoTempFiles(); }));

  // Nothing of it was counted: the whole quota is still there, and then it is full.
  const grpc::Status fits = UploadUnsized(kQuota, /*finish_sending=*/true);
  EXPECT_TRUE(fits.ok()) << fits.error_message();
  const grpc::Status one_more = UploadUnsized(1, /*finish_sending=*/false);
  EXPECT_EQ(one_more.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
}

}  // namespace
}  // namespace qnet::server
