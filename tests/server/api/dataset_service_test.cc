// Getting data to the service, through a whole in-process qnetd and the C++ client: an upload
// cut off mid-way continues from what the server kept, CreateDataset refuses what is not a
// dataset and registers nothing, ListDatasets describes the operator's datasets.
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>

#include "client/qnet_client.h"
#include "common/digest.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "qnet/v1/blob.grpc.pb.h"
#include "server/app/qnet_server_impl.h"
#include "tests/server/test_server.h"
#include "tests/server/test_util.h"

namespace qnet::server {
namespace {

using ::testing::HasSubstr;
using testing::TempDir;

class DatasetServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    QnetServerOptions options = testing::LoopbackServerOptions(dir_, /*http=*/false);
    auto server = QnetServerImpl::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    client::ClientOptions client_options;
    client_options.upload_chunk_bytes = kChunk;
    client_ = client::QnetClient::Connect(server_->grpc_address(), client_options);
  }

  void TearDown() override { server_->Shutdown(absl::Seconds(2)); }

  static constexpr size_t kChunk = 4096;
  TempDir dir_;
  std::unique_ptr<QnetServerImpl> server_;
  std::unique_ptr<client::QnetClient> client_;
};

TEST_F(DatasetServiceTest, ACutUploadContinuesFromWhatTheServerKept) {
  std::string content;
  for (int i = 0; content.size() < 5 * kChunk; ++i) content += std::to_string(i) + ",";
  const std::string path = dir_ / "dataset.npz";
  testing::WriteFile(path, content);
  const std::string digest = DigestOf(content);

  // Two chunks go out, then the connection is cut.
  auto stub = v1::BlobService::NewStub(
      grpc::CreateChannel(server_->grpc_address(), grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  v1::UploadResponse response;
  auto writer = stub->Upload(&context, &response);
  v1::UploadRequest header;
  header.mutable_header()->set_size_bytes(static_cast<int64_t>(content.size()));
  header.mutable_header()->set_digest(digest);
  header.mutable_header()->set_kind("dataset");
  ASSERT_TRUE(writer->Write(header));
  for (int i = 0; i < 2; ++i) {
    v1::UploadRequest chunk;
    chunk.set_chunk(content.substr(i * kChunk, kChunk));
    ASSERT_TRUE(writer->Write(chunk));
  }
  ASSERT_TRUE(testing::WaitFor([&] { return *client_->GetUploadOffset(digest) == 2 * kChunk; }));
  context.TryCancel();
  EXPECT_FALSE(writer->Finish().ok());
  EXPECT_FALSE(server_->blobs().Contains(digest));

  // The next upload of the same file sends only the rest.
  absl::StatusOr<client::UploadResult> resumed = client_->UploadFile(path, "dataset");
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  EXPECT_EQ(resumed->digest, digest);
  EXPECT_EQ(resumed->resumed_from, static_cast<int64_t>(2 * kChunk));
  EXPECT_EQ(testing::ReadFile(server_->blobs().PathOf(digest)), content);
  EXPECT_EQ(*client_->GetUploadOffset(digest), 0);
}

TEST_F(DatasetServiceTest, WhatIsNotADatasetIsRefusedAndNothingRegistered) {
  const std::string garbage = dir_ / "not-a-dataset.npz";
  testing::WriteFile(garbage, "this is text, not a NumPy archive");
  absl::StatusOr<client::DatasetUpload> up = client_->UploadDataset(garbage, "mine");
  ASSERT_EQ(up.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(up.status().message()),
              HasSubstr("no dataset format recognises the upload"));
  EXPECT_THAT(std::string(up.status().message()), ::testing::Not(HasSubstr(dir_.path())));

  // An operator's name cannot be taken; a blob nobody uploaded is not found.
  absl::StatusOr<client::UploadResult> blob = client_->UploadFile(garbage, "dataset");
  ASSERT_TRUE(blob.ok());
  EXPECT_EQ(client_->CreateDataset("fashion-mnist", blob->digest).status().code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(client_->CreateDataset("mine", DigestOf("never uploaded")).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(client_->UploadDataset(dir_ / "missing", "mine").status().code(),
            absl::StatusCode::kNotFound);

  absl::StatusOr<std::vector<v1::Dataset>> listed = client_->ListDatasets();
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].name(), "fashion-mnist");
  EXPECT_EQ((*listed)[0].origin(), "operator");
  EXPECT_EQ((*listed)[0].class_names_size(), 10);
}

}  // namespace
}  // namespace qnet::server
