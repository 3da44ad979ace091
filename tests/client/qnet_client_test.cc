// QnetClient against the in-process fake server: chunked uploads with digests, skipping blobs the
// server has, resumable and verified downloads, paging, watching, and error codes; the dataset
// folder packer (dataset_archive.h).
#include "client/qnet_client.h"

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "client/dataset_archive.h"
#include "common/digest.h"
#include "gtest/gtest.h"
#include "tests/client/fake_qnet_server.h"

namespace qnet::client {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

std::string RandomBytes(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng() & 0xff);
  return s;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class QnetClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("qnet_client_test_" + std::to_string(getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    client_ = QnetClient::Connect(server_.address());
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string WriteFile(const std::string& name, const std::string& content) {
    const std::string path = (dir_ / name).string();
    std::ofstream(path, std::ios::binary) << content;
    return path;
  }

  testing::FakeQnetServer server_;
  fs::path dir_;
  std::unique_ptr<QnetClient> client_;
};

TEST_F(QnetClientTest, UploadSendsOneMebibyteChunksWithTheDigest) {
  const std::string content = RandomBytes((5 << 20) / 2, 1);  // 2.5 MiB
  const std::string path = WriteFile("model.pt", content);

  absl::StatusOr<UploadResult> result = client_->UploadFile(path, "model");
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->digest, DigestOf(content));
  EXPECT_EQ(result->size_bytes, static_cast<int64_t>(content.size()));
  EXPECT_FALSE(result->already_present);

  auto state = server_.Lock();
  EXPECT_EQ(state->blobs[result->digest], content);
  EXPECT_EQ(state->upload_kinds, std::vector<std::string>{"model"});
  EXPECT_EQ(state->upload_chunk_sizes, (std::vector<size_t>{1 << 20, 1 << 20, 1 << 19}));
}

TEST_F(QnetClientTest, UploadSkipsABlobTheServerHas) {
  const std::string content = RandomBytes(1000, 2);
  server_.PutBlob(content);
  absl::StatusOr<UploadResult> result = client_->UploadFile(WriteFile("m.pt", content), "model");
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_TRUE(result->already_present);
  EXPECT_EQ(result->digest, DigestOf(content));
  EXPECT_EQ(server_.Lock()->upload_calls, 0);
}

TEST_F(QnetClientTest, UploadOfAMissingFileIsNotFound) {
  absl::StatusOr<UploadResult> result = client_->UploadFile((dir_ / "nope.pt").string(), "model");
  EXPECT_EQ(result.status().code(), absl::StatusCode::kNotFound);
}

TEST_F(QnetClientTest, UploadOfAnEmptyFileWorks) {
  absl::StatusOr<UploadResult> result = client_->UploadFile(WriteFile("empty", ""), "dataset");
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->digest, DigestOf(""));
  EXPECT_EQ(result->size_bytes, 0);
}

TEST_F(QnetClientTest, DownloadWritesAndVerifies) {
  const std::string content = RandomBytes(300000, 3);
  const std::string digest = server_.PutBlob(content);
  const std::string path = (dir_ / "sub" / "out.bin").string();
  absl::StatusOr<int64_t> size = client_->DownloadBlob(digest, path);
  ASSERT_TRUE(size.ok()) << size.status();
  EXPECT_EQ(*size, 300000);
  EXPECT_EQ(ReadFile(path), content);
  EXPECT_FALSE(fs::exists(path + ".part"));
}

TEST_F(QnetClientTest, DownloadResumesFromTheOffsetAfterABrokenStream) {
  const std::string content = RandomBytes(500000, 4);
  const std::string digest = server_.PutBlob(content);
  server_.Lock()->break_download_after = 128 << 10;  // two 64 KiB chunks, then UNAVAILABLE
  const std::string path = (dir_ / "out.bin").string();
  absl::StatusOr<int64_t> size = client_->DownloadBlob(digest, path);
  ASSERT_TRUE(size.ok()) << size.status();
  EXPECT_EQ(ReadFile(path), content);
  EXPECT_EQ(server_.Lock()->download_offsets, (std::vector<int64_t>{0, 128 << 10}));
}

TEST_F(QnetClientTest, DownloadResumesAPartialFileLeftByAnEarlierRun) {
  const std::string content = RandomBytes(200000, 5);
  const std::string digest = server_.PutBlob(content);
  const std::string path = (dir_ / "out.bin").string();
  std::ofstream(path + ".part", std::ios::binary) << content.substr(0, 70000);
  ASSERT_TRUE(client_->DownloadBlob(digest, path).ok());
  EXPECT_EQ(ReadFile(path), content);
  EXPECT_EQ(server_.Lock()->download_offsets, (std::vector<int64_t>{70000}));
}

TEST_F(QnetClientTest, DownloadKeepsAFileThatAlreadyMatches) {
  const std::string content = RandomBytes(1000, 6);
  const std::string digest = server_.PutBlob(content);
  const std::string path = WriteFile("have.bin", content);
  ASSERT_TRUE(client_->DownloadBlob(digest, path).ok());
  EXPECT_TRUE(server_.Lock()->download_offsets.empty());
}

TEST_F(QnetClientTest, DownloadOfCorruptContentIsDataLossAndLeavesNoFile) {
  const std::string content = RandomBytes(1000, 7);
  const std::string digest = server_.PutBlob(content);
  server_.Lock()->corrupt_downloads[digest] = RandomBytes(1000, 8);
  const std::string path = (dir_ / "out.bin").string();
  absl::StatusOr<int64_t> size = client_->DownloadBlob(digest, path);
  EXPECT_EQ(size.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_FALSE(fs::exists(path));
  EXPECT_FALSE(fs::exists(path + ".part"));
}

TEST_F(QnetClientTest, DownloadOfAnUnknownOrMalformedDigest) {
  EXPECT_EQ(client_->DownloadBlob(DigestOf("nothing"), (dir_ / "x").string()).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(client_->DownloadBlob("sha256:../../etc", (dir_ / "x").string()).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(QnetClientTest, ListJobsFollowsPageTokens) {
  v1::JobSpec spec;
  spec.set_model("zoo:lenet5");
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(client_->SubmitJob(spec, "").ok());
  absl::StatusOr<std::vector<v1::Job>> jobs = client_->ListJobs();
  ASSERT_TRUE(jobs.ok()) << jobs.status();
  EXPECT_EQ(jobs->size(), 5u);
  EXPECT_EQ(server_.Lock()->list_calls, 3);  // pages of 2, 2, 1
}

TEST_F(QnetClientTest, SubmitIsIdempotentPerRequestId) {
  v1::JobSpec spec;
  spec.set_model("zoo:lenet5");
  absl::StatusOr<v1::Job> a = client_->SubmitJob(spec, "r-1");
  absl::StatusOr<v1::Job> b = client_->SubmitJob(spec, "r-1");
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->id(), b->id());
  EXPECT_EQ(server_.Lock()->submits[0].request_id(), "r-1");
}

TEST_F(QnetClientTest, ServerErrorsKeepTheirCodeAndMessage) {
  server_.Lock()->submit_error =
      grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "weight_bits must be 1..8, got 33");
  absl::StatusOr<v1::Job> job = client_->SubmitJob(v1::JobSpec(), "");
  EXPECT_EQ(job.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(job.status().message().find("weight_bits must be 1..8, got 33"), std::string::npos);
  EXPECT_EQ(client_->GetJob("job-404").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(QnetClientTest, WatchCallsBackPerSnapshotAndStopsOnRequest) {
  v1::JobSpec spec;
  ASSERT_TRUE(client_->SubmitJob(spec, "").ok());
  std::vector<v1::Job> script(3);
  for (int i = 0; i < 3; ++i) {
    script[i].set_id("job-1");
    script[i].set_state(i < 2 ? v1::RUNNING : v1::SUCCEEDED);
    script[i].mutable_progress()->set_epoch(i + 1);
  }
  server_.Lock()->watch_script = script;
  std::vector<int> epochs;
  ASSERT_TRUE(client_
                  ->WatchJob("job-1",
                             [&](const v1::Job& j) {
                               epochs.push_back(j.progress().epoch());
                               return true;
                             })
                  .ok());
  EXPECT_EQ(epochs, (std::vector<int>{1, 2, 3}));

  epochs.clear();
  ASSERT_TRUE(client_
                  ->WatchJob("job-1",
                             [&](const v1::Job& j) {
                               epochs.push_back(j.progress().epoch());
                               return false;
                             })
                  .ok());
  EXPECT_EQ(epochs, std::vector<int>{1});
  EXPECT_EQ(client_->WatchJob("nope", [](const v1::Job&) { return true; }).code(),
            absl::StatusCode::kNotFound);
}

TEST_F(QnetClientTest, ListingsAndCancel) {
  absl::StatusOr<std::vector<v1::Dataset>> datasets = client_->ListDatasets();
  ASSERT_TRUE(datasets.ok());
  EXPECT_EQ((*datasets)[0].name(), "fashion-mnist");
  absl::StatusOr<std::vector<v1::Model>> models = client_->ListModels();
  ASSERT_TRUE(models.ok());
  EXPECT_EQ((*models)[0].name(), "zoo:lenet5");
  ASSERT_TRUE(client_->SubmitJob(v1::JobSpec(), "").ok());
  absl::StatusOr<v1::Job> cancelled = client_->CancelJob("job-1");
  ASSERT_TRUE(cancelled.ok());
  EXPECT_EQ(cancelled->state(), v1::CANCELLED);
}

TEST(QnetClientUnreachableTest, UnreachableServerIsUnavailableWithTheAddress) {
  // Port 1 on loopback: nothing listens there.
  auto client = QnetClient::Connect("127.0.0.1:1");
  absl::StatusOr<v1::Job> job = client->GetJob("x");
  EXPECT_EQ(job.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(job.status().message().find("127.0.0.1:1"), std::string::npos);
}

// The same files give the same bytes: whatever their times, modes or the order they were made in.
TEST_F(QnetClientTest, APackedFolderDependsOnlyOnItsFiles) {
  auto make = [&](const std::string& root, bool reversed) {
    std::vector<std::pair<std::string, std::string>> files = {
        {"train/cat/1.png", "cat one"}, {"train/dog/2.png", "dog two"}, {"test/cat/3.png", "c"}};
    if (reversed) std::reverse(files.begin(), files.end());
    for (const auto& [name, content] : files) {
      fs::create_directories((dir_ / root / name).parent_path());
      WriteFile(root + "/" + name, content);
    }
  };
  make("a", false);
  make("b", true);
  fs::last_write_time(dir_ / "b/train/cat/1.png", fs::file_time_type::clock::now() - 1000h);
  fs::permissions(dir_ / "b/test/cat/3.png", fs::perms::owner_all);
  WriteFile("b/.DS_Store", "hidden");
  fs::create_directories(dir_ / "b/.git");
  WriteFile("b/.git/HEAD", "hidden too");
  ASSERT_EQ(*WriteDatasetTar((dir_ / "a").string(), (dir_ / "a.tar").string()), 3);
  ASSERT_EQ(*WriteDatasetTar((dir_ / "b").string(), (dir_ / "b.tar").string()), 3);
  const std::string tar = ReadFile((dir_ / "a.tar").string());
  EXPECT_EQ(ReadFile((dir_ / "b.tar").string()), tar);
  // Sorted entries, owner 0, mtime 0, mode 0644: the first header names test/cat/3.png.
  EXPECT_EQ(tar.substr(0, 14), "test/cat/3.png");
  EXPECT_EQ(tar.substr(100, 8), std::string("000644 \0", 8));
  EXPECT_EQ(tar.substr(136, 12), "00000000000 ");
  EXPECT_EQ(tar.size() % 512, 0u);

  // What a tar cannot carry, or nothing at all, is refused with the entry named.
  fs::create_directories(dir_ / "c/train");
  fs::create_directory_symlink(dir_ / "a/train/cat", dir_ / "c/train/cat");
  absl::StatusOr<int64_t> link = WriteDatasetTar((dir_ / "c").string(), (dir_ / "c.tar").string());
  EXPECT_EQ(link.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(link.status().message().find("train/cat is a symbolic link"), std::string::npos);
  fs::create_directories(dir_ / "empty/train");
  EXPECT_EQ(WriteDatasetTar((dir_ / "empty").string(), (dir_ / "e.tar").string()).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(WriteDatasetTar((dir_ / "nope").string(), (dir_ / "n.tar").string()).status().code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace qnet::client
