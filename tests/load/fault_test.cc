// Faults injected into the real qnetd: SIGTERM during a resumable upload (nothing half-written is
// served; the upload resumes after the restart) and during leases (a live worker carries on, a
// gone one's job is leased again and finishes once), blobs corrupted or truncated on disk (the
// digest check refuses to serve them), a data folder qnetd cannot write (a clear error, exit code
// 1) and a disk that fills up while qnetd runs (every write refused with a clear error, nothing
// stored lost, all well once space returns). Each scenario ends by restarting qnetd and reading
// every stored job back.
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <filesystem>
#include <fstream>
#include <map>
#include <random>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/digest.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "qnet/v1/job.grpc.pb.h"
#include "qnet/v1/worker.grpc.pb.h"
#include "tests/load/qnetd_process.h"
#include "tests/server/test_util.h"

#ifndef QNETD_PATH
#error "QNETD_PATH must name the qnetd binary"
#endif

namespace qnet::load {
namespace {

namespace fs = std::filesystem;
using qnet::v1::Job;
using server::testing::TempDir;
using server::testing::WaitFor;
using ::testing::AllOf;
using ::testing::HasSubstr;

constexpr int64_t kMiB = 1 << 20;

std::string RandomBytes(size_t n, uint32_t seed) {
  std::mt19937 gen(seed);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(gen());
  return s;
}

// qnetd with a client and two worker identities over one data folder, in a fresh temp folder.
class FaultTest : public ::testing::Test {
 protected:
  FaultTest()
      : client_(NewIdentity("alice", "client")),
        worker1_(NewIdentity("node-1", "worker")),
        worker2_(NewIdentity("node-2", "worker")) {
    server::testing::MakeFakeIdxDataset(dir_ / "dataset");
    EXPECT_TRUE(WriteTokensFile(dir_ / "tokens", {client_, worker1_, worker2_}).ok());
    qnetd_ = MakeQnetd();
  }

  // `wrapper`: what runs qnetd (QnetdProcess).
  std::unique_ptr<QnetdProcess> MakeQnetd(std::vector<std::string> wrapper = {},
                                          int lease_seconds = 5) {
    return std::make_unique<QnetdProcess>(
        QNETD_PATH,
        std::vector<std::string>{"--data-dir", data_dir(), "--dataset",
                                 "fake=idx:" + (dir_ / "dataset"), "--auth-tokens", dir_ / "tokens",
                                 "--lease-seconds", std::to_string(lease_seconds),
                                 "--local-workers", "0", "--shutdown-grace-seconds", "2"},
        dir_ / "qnetd.log", std::move(wrapper));
  }

  std::string data_dir() const { return dir_ / "data"; }
  std::string BlobPath(const std::string& digest) const {
    return data_dir() + "/blobs/sha256/" + digest.substr(7);
  }

  // Starts qnetd (again on the same address after the first time) and connects to it.
  void Start() {
    const std::string listen = address_.empty() ? "127.0.0.1:0" : address_;
    const absl::Status s = qnetd_->Start(listen);
    ASSERT_TRUE(s.ok()) << s;
    address_ = qnetd_->grpc_address();
    auto channel = Connect(address_);
    jobs_ = qnet::v1::JobService::NewStub(channel);
    blobs_ = qnet::v1::BlobService::NewStub(channel);
    workers_ = qnet::v1::WorkerService::NewStub(channel);
  }
  void Stop(int sig) {
    absl::StatusOr<int> code = qnetd_->Stop(sig);
    ASSERT_TRUE(code.ok()) << code.status();
    if (sig == SIGTERM) {
      EXPECT_EQ(*code, 0) << qnetd_->LogTail();
    }
  }

  // A job created joins submitted_.
  grpc::Status TrySubmit(const std::string& request_id, Job& job) {
    qnet::v1::SubmitJobRequest request;
    request.set_request_id(request_id);
    request.mutable_spec()->set_model("zoo:lenet5");
    request.mutable_spec()->set_dataset("fake");
    grpc::ClientContext ctx;
    PrepareContext(ctx, client_.token, absl::Seconds(10));
    const grpc::Status s = jobs_->SubmitJob(&ctx, request, &job);
    if (s.ok()) submitted_.push_back(job.id());
    return s;
  }
  Job Submit(const std::string& request_id) {
    Job job;
    const grpc::Status s = TrySubmit(request_id, job);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return job;
  }

  absl::StatusOr<Job> Get(const std::string& id) {
    qnet::v1::GetJobRequest request;
    request.set_id(id);
    Job job;
    grpc::ClientContext ctx;
    PrepareContext(ctx, client_.token, absl::Seconds(10));
    if (grpc::Status s = jobs_->GetJob(&ctx, request, &job); !s.ok()) return ToStatus(s);
    return job;
  }

  // Waits up to `wait_seconds` for a lease; no job in `lease` when none came.
  grpc::Status TryAcquire(const TestIdentity& worker, int wait_seconds,
                          qnet::v1::AcquireLeaseResponse& lease) {
    qnet::v1::AcquireLeaseRequest request;
    request.set_worker_id(worker.name);
    request.set_wait_seconds(wait_seconds);
    grpc::ClientContext ctx;
    PrepareContext(ctx, worker.token, absl::Seconds(wait_seconds + 10));
    return workers_->AcquireLease(&ctx, request, &lease);
  }
  qnet::v1::AcquireLeaseResponse Acquire(const TestIdentity& worker, int wait_seconds = 0) {
    qnet::v1::AcquireLeaseResponse lease;
    const grpc::Status s = TryAcquire(worker, wait_seconds, lease);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return lease;
  }

  grpc::Status Heartbeat(const TestIdentity& worker, const qnet::v1::AcquireLeaseResponse& lease) {
    qnet::v1::HeartbeatRequest request;
    request.set_job_id(lease.job().id());
    request.set_lease_token(lease.lease_token());
    qnet::v1::HeartbeatResponse reply;
    grpc::ClientContext ctx;
    PrepareContext(ctx, worker.token, absl::Seconds(10));
    return workers_->Heartbeat(&ctx, request, &reply);
  }

  // Uploads each artifact for the lease's job: the CompleteLease request naming them.
  absl::StatusOr<qnet::v1::CompleteLeaseRequest> UploadArtifacts(
      const TestIdentity& worker, const qnet::v1::AcquireLeaseResponse& lease,
      const std::vector<std::string>& artifacts) {
    qnet::v1::CompleteLeaseRequest request;
    request.set_job_id(lease.job().id());
    request.set_lease_token(lease.lease_token());
    for (const std::string& data : artifacts) {
      absl::StatusOr<std::string> digest =
          UploadBlob(*blobs_, worker.token, data, "artifact", lease.job().id());
      if (!digest.ok()) return digest.status();
      qnet::v1::Artifact& a = *request.add_artifacts();
      a.set_kind(absl::StrCat("part", request.artifacts_size()));
      a.set_digest(*digest);
      a.set_size_bytes(static_cast<int64_t>(data.size()));
    }
    return request;
  }

  grpc::Status SendComplete(const TestIdentity& worker,
                            const qnet::v1::CompleteLeaseRequest& request) {
    qnet::v1::CompleteLeaseResponse reply;
    grpc::ClientContext ctx;
    PrepareContext(ctx, worker.token, absl::Seconds(30));
    return workers_->CompleteLease(&ctx, request, &reply);
  }

  absl::Status Complete(const TestIdentity& worker, const qnet::v1::AcquireLeaseResponse& lease,
                        const std::vector<std::string>& artifacts) {
    absl::StatusOr<qnet::v1::CompleteLeaseRequest> request =
        UploadArtifacts(worker, lease, artifacts);
    if (!request.ok()) return request.status();
    return ToStatus(SendComplete(worker, *request));
  }

  int64_t UploadOffset(const std::string& digest) {
    qnet::v1::GetUploadOffsetRequest request;
    request.set_digest(digest);
    qnet::v1::GetUploadOffsetResponse reply;
    grpc::ClientContext ctx;
    PrepareContext(ctx, client_.token, absl::Seconds(10));
    const grpc::Status s = blobs_->GetUploadOffset(&ctx, request, &reply);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return reply.offset();
  }

  // Restarts qnetd (SIGKILL) and checks every job submitted in this test reads back as `want`
  // says (jobs it does not name: readable and finished).
  void ExpectStoredAfterRestart(const std::map<std::string, qnet::v1::JobState>& want) {
    Stop(SIGKILL);
    Start();
    for (const std::string& id : submitted_) {
      absl::StatusOr<Job> job = Get(id);
      ASSERT_TRUE(job.ok()) << id << ": " << job.status();
      if (auto it = want.find(id); it != want.end()) {
        EXPECT_EQ(job->state(), it->second) << id << ": " << job->error();
      }
    }
    qnet::v1::ListJobsRequest request;
    qnet::v1::ListJobsResponse listed;
    grpc::ClientContext ctx;
    PrepareContext(ctx, client_.token, absl::Seconds(10));
    ASSERT_TRUE(jobs_->ListJobs(&ctx, request, &listed).ok());
    EXPECT_EQ(listed.jobs_size(), static_cast<int>(submitted_.size()));
  }

  TempDir dir_;
  TestIdentity client_, worker1_, worker2_;
  std::unique_ptr<QnetdProcess> qnetd_;
  std::string address_;
  std::unique_ptr<qnet::v1::JobService::Stub> jobs_;
  std::unique_ptr<qnet::v1::BlobService::Stub> blobs_;
  std::unique_ptr<qnet::v1::WorkerService::Stub> workers_;
  std::vector<std::string> submitted_;
};

TEST_F(FaultTest, SigtermDuringUploadServesNothingHalfWrittenAndTheUploadResumes) {
  ASSERT_NO_FATAL_FAILURE(Start());
  const Job queued = Submit("queued");
  const std::string data = RandomBytes(3 * kMiB + 123, 7);
  const std::string digest = DigestOf(data);
  {
    grpc::ClientContext ctx;
    PrepareContext(ctx, client_.token, absl::Seconds(60), /*wait_for_ready=*/false);
    qnet::v1::UploadResponse response;
    auto stream = blobs_->Upload(&ctx, &response);
    qnet::v1::UploadRequest msg;
    msg.mutable_header()->set_size_bytes(static_cast<int64_t>(data.size()));
    msg.mutable_header()->set_digest(digest);
    msg.mutable_header()->set_kind("model");
    ASSERT_TRUE(stream->Write(msg));
    msg.set_chunk(data.substr(0, kMiB));
    ASSERT_TRUE(stream->Write(msg));
    ASSERT_TRUE(WaitFor([&] { return UploadOffset(digest) == kMiB; }))
        << "qnetd never held the first MiB";
    ASSERT_NO_FATAL_FAILURE(Stop(SIGTERM));  // drains, then cuts the upload off
    EXPECT_FALSE(stream->Finish().ok());
  }
  ASSERT_NO_FATAL_FAILURE(Start());
  qnet::v1::StatBlobRequest stat;
  stat.set_digest(digest);
  qnet::v1::StatBlobResponse stat_reply;
  grpc::ClientContext stat_ctx;
  PrepareContext(stat_ctx, client_.token, absl::Seconds(10));
  EXPECT_EQ(blobs_->StatBlob(&stat_ctx, stat, &stat_reply).error_code(),
            grpc::StatusCode::NOT_FOUND);
  EXPECT_FALSE(fs::exists(BlobPath(digest))) << "a partial upload became a blob";
  Download half = DownloadBlob(*blobs_, client_.token, digest);
  EXPECT_EQ(half.status.code(), absl::StatusCode::kNotFound) << half.status;
  EXPECT_TRUE(half.data.empty());

  // The bytes received before the SIGTERM were kept, and who sent them: the upload continues.
  const int64_t offset = UploadOffset(digest);
  EXPECT_EQ(offset, kMiB);
  {
    grpc::ClientContext ctx;
    PrepareContext(ctx, client_.token, absl::Seconds(60));
    qnet::v1::UploadResponse response;
    auto stream = blobs_->Upload(&ctx, &response);
    qnet::v1::UploadRequest msg;
    msg.mutable_header()->set_size_bytes(static_cast<int64_t>(data.size()));
    msg.mutable_header()->set_digest(digest);
    msg.mutable_header()->set_kind("model");
    msg.mutable_header()->set_offset(offset);
    ASSERT_TRUE(stream->Write(msg));
    for (int64_t at = offset; at < static_cast<int64_t>(data.size()); at += kMiB) {
      msg.set_chunk(data.substr(static_cast<size_t>(at), kMiB));
      ASSERT_TRUE(stream->Write(msg));
    }
    ASSERT_TRUE(stream->WritesDone());
    const grpc::Status s = stream->Finish();
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(response.digest(), digest);
  }
  Download whole = DownloadBlob(*blobs_, client_.token, digest);
  ASSERT_TRUE(whole.status.ok()) << whole.status;
  EXPECT_TRUE(whole.data == data);
  EXPECT_EQ(UploadOffset(digest), 0);
  ExpectStoredAfterRestart({{queued.id(), qnet::v1::QUEUED}});
}

TEST_F(FaultTest, SigtermDuringLeasesEachJobFinishesOnce) {
  ASSERT_NO_FATAL_FAILURE(Start());
  const Job carried_on = Submit("carried-on");
  const Job released = Submit("released");
  const qnet::v1::AcquireLeaseResponse lease_a = Acquire(worker1_);
  const qnet::v1::AcquireLeaseResponse lease_b = Acquire(worker1_);
  ASSERT_EQ(lease_a.job().id(), carried_on.id());
  ASSERT_EQ(lease_b.job().id(), released.id());
  ASSERT_TRUE(Heartbeat(worker1_, lease_a).ok());
  ASSERT_NO_FATAL_FAILURE(Stop(SIGTERM));
  ASSERT_NO_FATAL_FAILURE(Start());

  // A worker that lives through the restart carries on with its stored lease.
  EXPECT_TRUE(Heartbeat(worker1_, lease_a).ok());
  absl::Status s = Complete(worker1_, lease_a, {"carried on"});
  EXPECT_TRUE(s.ok()) << s;

  // The other lease runs out (its worker is gone) and the job is leased again.
  const qnet::v1::AcquireLeaseResponse again = Acquire(worker2_, /*wait_seconds=*/20);
  ASSERT_EQ(again.job().id(), released.id());
  EXPECT_EQ(again.job().attempt(), 2);
  qnet::v1::CompleteLeaseRequest stale;
  stale.set_job_id(lease_b.job().id());
  stale.set_lease_token(lease_b.lease_token());
  // Its former holder learns that the lease is gone, not that it lacks permission.
  EXPECT_EQ(Heartbeat(worker1_, lease_b).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(SendComplete(worker1_, stale).error_code(), grpc::StatusCode::FAILED_PRECONDITION)
      << "a lost lease completed";
  absl::StatusOr<qnet::v1::CompleteLeaseRequest> done =
      UploadArtifacts(worker2_, again, {"second attempt"});
  ASSERT_TRUE(done.ok()) << done.status();
  const grpc::Status first = SendComplete(worker2_, *done);
  EXPECT_TRUE(first.ok()) << first.error_message();
  EXPECT_EQ(SendComplete(worker2_, *done).error_code(), grpc::StatusCode::FAILED_PRECONDITION)
      << "a lease completed twice";

  absl::StatusOr<Job> a = Get(carried_on.id());
  absl::StatusOr<Job> b = Get(released.id());
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->attempt(), 1);
  ASSERT_EQ(a->artifacts_size(), 1);
  EXPECT_EQ(a->artifacts(0).digest(), DigestOf("carried on"));
  EXPECT_EQ(b->attempt(), 2);
  ASSERT_EQ(b->artifacts_size(), 1);
  EXPECT_EQ(b->artifacts(0).digest(), DigestOf("second attempt"));
  ExpectStoredAfterRestart(
      {{carried_on.id(), qnet::v1::SUCCEEDED}, {released.id(), qnet::v1::SUCCEEDED}});
}

// Flips a byte of a stored blob's file in place.
void FlipByte(const std::string& path, int64_t at) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  ASSERT_TRUE(f) << path;
  f.seekg(at);
  char c = 0;
  f.get(c);
  f.seekp(at);
  f.put(static_cast<char>(c ^ 0x5a));
}

TEST_F(FaultTest, CorruptBlobIsDetectedByDigestAndNeverServed) {
  ASSERT_NO_FATAL_FAILURE(Start());
  const Job job = Submit("corrupt");
  const std::string small = RandomBytes(200, 1), large = RandomBytes(2 * kMiB + 1000, 2),
                    cut = RandomBytes(300, 3), intact = RandomBytes(400, 4);
  const qnet::v1::AcquireLeaseResponse lease = Acquire(worker1_);
  ASSERT_EQ(lease.job().id(), job.id());
  const absl::Status s = Complete(worker1_, lease, {small, large, cut, intact});
  ASSERT_TRUE(s.ok()) << s;
  const auto path = [&](const std::string& data) { return BlobPath(DigestOf(data)); };
  for (const std::string* data : {&small, &large, &cut, &intact}) {
    ASSERT_TRUE(fs::exists(path(*data))) << "blobs are not stored where this test looks";
  }
  ASSERT_NO_FATAL_FAILURE(FlipByte(path(small), 10));
  ASSERT_NO_FATAL_FAILURE(FlipByte(path(large), 100));  // in the first of three chunks
  fs::resize_file(path(cut), 100);

  for (int run = 0; run < 2; ++run) {
    SCOPED_TRACE(run == 0 ? "corrupted while running" : "after a restart");
    Download d = DownloadBlob(*blobs_, client_.token, DigestOf(small));
    EXPECT_EQ(d.status.code(), absl::StatusCode::kDataLoss) << d.status;
    EXPECT_TRUE(absl::StrContains(d.status.message(), "corrupt")) << d.status;
    EXPECT_TRUE(d.data.empty()) << "a corrupt blob was served";

    d = DownloadBlob(*blobs_, client_.token, DigestOf(large));
    EXPECT_EQ(d.status.code(), absl::StatusCode::kDataLoss) << d.status;
    EXPECT_LT(d.data.size(), large.size()) << "a corrupt blob was served whole";
    d = DownloadBlob(*blobs_, client_.token, DigestOf(large), /*offset=*/2 * kMiB);
    EXPECT_EQ(d.status.code(), absl::StatusCode::kDataLoss) << "resumed download: " << d.status;
    EXPECT_TRUE(d.data.empty());

    d = DownloadBlob(*blobs_, client_.token, DigestOf(cut));
    EXPECT_EQ(d.status.code(), absl::StatusCode::kDataLoss) << d.status;
    EXPECT_TRUE(d.data.empty());

    d = DownloadBlob(*blobs_, client_.token, DigestOf(intact));
    ASSERT_TRUE(d.status.ok()) << d.status;
    EXPECT_TRUE(d.data == intact);
    if (run == 0) ExpectStoredAfterRestart({{job.id(), qnet::v1::SUCCEEDED}});
  }
  absl::StatusOr<Job> stored = Get(job.id());
  ASSERT_TRUE(stored.ok());
  EXPECT_EQ(stored->artifacts_size(), 4);
}

// Everyone may read the temp folder and the data folder in it; only its owner may write, and only
// when `writable`.
void SetWritable(const TempDir& dir, const std::string& data_dir, bool writable) {
  const fs::perms read = fs::perms::owner_read | fs::perms::group_read | fs::perms::others_read;
  const fs::perms exec = fs::perms::owner_exec | fs::perms::group_exec | fs::perms::others_exec;
  const fs::perms write = writable ? fs::perms::owner_write : fs::perms::none;
  fs::permissions(dir.path(), read | exec | write);
  fs::permissions(data_dir, read | exec | write);
  for (const fs::directory_entry& e : fs::recursive_directory_iterator(data_dir)) {
    fs::permissions(e.path(), read | write | (e.is_directory() ? exec : fs::perms::none));
  }
}

TEST_F(FaultTest, UnwritableDataFolderFailsWithAClearErrorAndExitCode) {
  // A data folder that cannot be created: its parent is a file.
  server::testing::WriteFile(dir_ / "file", "x");
  QnetdProcess nested(QNETD_PATH, {"--data-dir", dir_ / "file/data"}, dir_ / "nested.log");
  absl::Status s = nested.Start();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_EQ(nested.exit_code(), 1);
  EXPECT_TRUE(absl::StrContains(nested.LogTail(), "cannot create --data-dir " + dir_ / "file/data"))
      << nested.LogTail();

  // A data folder with jobs that qnetd may read but not write. Root writes anywhere, so as root
  // qnetd runs as nobody for this part.
  ASSERT_NO_FATAL_FAILURE(Start());
  const Job job = Submit("kept");
  ASSERT_NO_FATAL_FAILURE(Stop(SIGTERM));
  std::vector<std::string> wrapper;
  if (::geteuid() == 0) {
    if (!fs::exists("/usr/bin/setpriv"))
      GTEST_SKIP() << "root without setpriv: cannot drop write access";
    wrapper = {"/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"};
  }
  SetWritable(dir_, data_dir(), false);
  QnetdProcess locked_out(QNETD_PATH, {"--data-dir", data_dir()}, dir_ / "unwritable.log", wrapper);
  s = locked_out.Start();
  SetWritable(dir_, data_dir(), true);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_EQ(locked_out.exit_code(), 1);
  EXPECT_TRUE(absl::StrContains(locked_out.LogTail(), "cannot write in --data-dir " + data_dir()))
      << locked_out.LogTail();

  // Writable again: the job is as it was.
  ASSERT_NO_FATAL_FAILURE(Start());
  ExpectStoredAfterRestart({{job.id(), qnet::v1::QUEUED}});
}

// Runs qnetd with SIGXFSZ ignored (inherited through exec), so a write past its file size limit
// fails with EFBIG instead of killing it.
const std::vector<std::string> kIgnoreFileSizeSignal = {"/bin/sh", "-c",
                                                        "trap '' XFSZ; exec \"$@\"", "sh"};

// The disk fills up under the running qnetd, or space comes back: its file size limit
// (RLIMIT_FSIZE) drops to 0, so every write into a file fails, or is lifted again.
void SetDiskFull(pid_t qnetd, bool full) {
  rlimit limit{};
  ASSERT_EQ(::prlimit(qnetd, RLIMIT_FSIZE, nullptr, &limit), 0) << std::strerror(errno);
  limit.rlim_cur = full ? 0 : limit.rlim_max;
  ASSERT_EQ(::prlimit(qnetd, RLIMIT_FSIZE, &limit, nullptr), 0) << std::strerror(errno);
}

TEST_F(FaultTest, FullDiskRefusesEveryWriteLosesNothingStoredAndRecovers) {
  qnetd_ = MakeQnetd(kIgnoreFileSizeSignal, /*lease_seconds=*/60);  // no lease runs out here
  ASSERT_NO_FATAL_FAILURE(Start());
  const Job done = Submit("done"), running = Submit("running"), queued = Submit("queued");
  const std::string artifact = RandomBytes(5000, 5);
  const qnet::v1::AcquireLeaseResponse done_lease = Acquire(worker1_);
  ASSERT_EQ(done_lease.job().id(), done.id());
  const absl::Status completed = Complete(worker1_, done_lease, {artifact});
  ASSERT_TRUE(completed.ok()) << completed;
  const qnet::v1::AcquireLeaseResponse lease = Acquire(worker1_);
  ASSERT_EQ(lease.job().id(), running.id());

  ASSERT_NO_FATAL_FAILURE(SetDiskFull(qnetd_->pid(), true));
  // Each write is refused, saying what went wrong and that nothing changed.
  Job refused;
  grpc::Status s = TrySubmit("while-full", refused);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
  EXPECT_THAT(s.error_message(),
              AllOf(HasSubstr("disk may be full or failing"), HasSubstr("not created")));
  qnet::v1::AcquireLeaseResponse no_lease;
  s = TryAcquire(worker2_, 0, no_lease);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
  EXPECT_THAT(s.error_message(), HasSubstr("still QUEUED"));
  s = Heartbeat(worker1_, lease);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
  EXPECT_THAT(s.error_message(), HasSubstr("still RUNNING"));
  const std::string model = RandomBytes(2 * kMiB, 6);
  absl::StatusOr<std::string> uploaded = UploadBlob(*blobs_, client_.token, model, "model");
  EXPECT_EQ(uploaded.status().code(), absl::StatusCode::kResourceExhausted) << uploaded.status();
  EXPECT_THAT(uploaded.status().message(), HasSubstr("File too large"));
  const std::string result = RandomBytes(3000, 7);
  absl::Status c = Complete(worker1_, lease, {result});
  EXPECT_EQ(c.code(), absl::StatusCode::kResourceExhausted) << c;
  EXPECT_FALSE(fs::exists(BlobPath(DigestOf(model)))) << "a refused upload became a blob";
  EXPECT_FALSE(fs::exists(BlobPath(DigestOf(result)))) << "a refused upload became a blob";

  // Everything stored reads back as it was.
  const auto expect_state = [&](const Job& job, qnet::v1::JobState state) {
    absl::StatusOr<Job> got = Get(job.id());
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(got->state(), state) << job.request_id();
  };
  expect_state(done, qnet::v1::SUCCEEDED);
  expect_state(running, qnet::v1::RUNNING);
  expect_state(queued, qnet::v1::QUEUED);
  Download d = DownloadBlob(*blobs_, client_.token, DigestOf(artifact));
  ASSERT_TRUE(d.status.ok()) << d.status;
  EXPECT_TRUE(d.data == artifact);

  // Space is back: the refused calls, repeated, go through without a restart.
  ASSERT_NO_FATAL_FAILURE(SetDiskFull(qnetd_->pid(), false));
  const Job after = Submit("while-full");
  EXPECT_TRUE(Heartbeat(worker1_, lease).ok());
  c = Complete(worker1_, lease, {result});
  EXPECT_TRUE(c.ok()) << c;
  uploaded = UploadBlob(*blobs_, client_.token, model, "model");
  ASSERT_TRUE(uploaded.ok()) << uploaded.status();
  const qnet::v1::AcquireLeaseResponse next = Acquire(worker2_);
  EXPECT_EQ(next.job().id(), queued.id());
  ExpectStoredAfterRestart({{done.id(), qnet::v1::SUCCEEDED},
                            {running.id(), qnet::v1::SUCCEEDED},
                            {queued.id(), qnet::v1::RUNNING},
                            {after.id(), qnet::v1::QUEUED}});
  for (const std::string* data : {&artifact, &result, &model}) {
    d = DownloadBlob(*blobs_, client_.token, DigestOf(*data));
    ASSERT_TRUE(d.status.ok()) << d.status;
    EXPECT_TRUE(d.data == *data);
  }
}

}  // namespace
}  // namespace qnet::load
