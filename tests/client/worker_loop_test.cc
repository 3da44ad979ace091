// `qnet-worker serve`'s logic (WorkerLoop, BlobCache, checkpoint envelopes, conversions) against
// the in-process fake server and a fake engine runner: no LibTorch, no training, fast.
#include "workers/worker/worker_loop.h"

#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>
#include <utility>
#include <vector>

#include "common/digest.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/client/fake_qnet_server.h"
#include "workers/worker/blob_cache.h"
#include "workers/worker/sandbox.h"
#include "workers/worker/worker_checkpoint.h"
#include "workers/worker/worker_convert.h"

namespace qnet::worker {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using FakeStateRef = const qnet::testing::FakeState&;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteFile(const std::string& path, const std::string& content) {
  std::ofstream(path, std::ios::binary) << content;
}

// Regular beats may come first (while blobs are fetched); the checkpoint's own beat follows.
const v1::HeartbeatRequest* FirstWithCheckpoint(const std::vector<v1::HeartbeatRequest>& beats) {
  for (const v1::HeartbeatRequest& beat : beats) {
    if (!beat.checkpoint_digest().empty()) return &beat;
  }
  return nullptr;
}

using ::testing::HasSubstr;

// A runner that reports progress and succeeds (defined below).
absl::StatusOr<engine::JobResult> SucceedingRunner(const engine::JobRun& config,
                                                   const engine::JobCallbacks& callbacks);

class WorkerLoopTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("qnet_worker_test_" + std::to_string(getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    options_.worker_id = "w-test";
    options_.device_label = "cpu";
    options_.cache_dir = (dir_ / "cache").string();
    options_.heartbeat_interval = 30ms;
    options_.lease_wait_seconds = 1;
    options_.min_backoff = 20ms;
    options_.max_backoff = 100ms;
    options_.report_retry_for = 1s;
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::unique_ptr<WorkerLoop> MakeLoop(JobRunner runner) {
    return std::make_unique<WorkerLoop>(
        grpc::CreateChannel(server_.address(), grpc::InsecureChannelCredentials()),
        server_.address(), options_, std::move(runner));
  }

  // Runs one lease that must fail before the engine is called; the one FailLease error sent.
  std::string FailureBeforeRunning() {
    bool ran = false;
    auto loop = MakeLoop([&](const engine::JobRun& c, const engine::JobCallbacks& cb) {
      ran = true;
      return SucceedingRunner(c, cb);
    });
    EXPECT_EQ(*loop->RunOnce(), LeaseOutcome::kFailed);
    EXPECT_FALSE(ran);
    auto state = server_.Lock();
    EXPECT_EQ(state->fails.size(), 1u);
    return state->fails.empty() ? "" : state->fails.back().error();
  }

  // Queues a lease for a zoo:lenet5 job on a two-file dataset the fake server holds.
  v1::AcquireLeaseResponse QueueLease(const std::string& model = "zoo:lenet5",
                                      const std::string& checkpoint = "") {
    v1::AcquireLeaseResponse lease;
    v1::Job* job = lease.mutable_job();
    job->set_id("job-7");
    job->set_attempt(checkpoint.empty() ? 1 : 2);
    job->set_checkpoint_digest(checkpoint);
    job->mutable_spec()->set_model(model);
    job->mutable_spec()->set_dataset("synth");
    job->mutable_spec()->set_weight_bits(2);
    job->mutable_spec()->mutable_training()->set_epochs(2);
    lease.set_lease_token("token-1");
    lease.set_dataset_format("idx");
    for (const char* name : {"train-images-idx3-ubyte", "train-labels-idx1-ubyte"}) {
      v1::DatasetFile* f = lease.add_dataset_files();
      f->set_name(name);
      f->set_digest(server_.PutBlob(std::string("content of ") + name));
    }
    server_.Lock()->leases.push_back(lease);
    return lease;
  }

  testing::FakeQnetServer server_;
  fs::path dir_;
  ServeOptions options_;
};

// A runner that reports progress, writes a checkpoint and two artifacts, and succeeds.
absl::StatusOr<engine::JobResult> SucceedingRunner(const engine::JobRun& config,
                                                   const engine::JobCallbacks& callbacks) {
  engine::ProgressEvent event;
  event.phase = "weights";
  event.epoch = 1;
  event.total_epochs = 2;
  event.loss = 0.5;
  event.accuracy = -1;
  callbacks.on_progress(event);
  const std::string ckpt = config.context.checkpoint_dir + "/ckpt-1.pt";
  WriteFile(ckpt, "checkpoint one");
  callbacks.on_checkpoint(ckpt);
  engine::JobResult result;
  result.metrics.quantized_top1 = 0.81;
  result.metrics.device = "cpu";
  result.metrics.epochs.push_back({.epoch = 1, .phase = "weights", .train_loss = 0.5});
  result.metrics.epochs.push_back({.epoch = 2, .phase = "joint", .train_loss = 0.4});
  WriteFile(config.context.out_dir + "/model.pt", "quantized torchscript");
  WriteFile(config.context.out_dir + "/metrics.json", R"({"quantized_top1": 0.81})");
  result.artifacts.push_back({"torchscript", config.context.out_dir + "/model.pt"});
  result.artifacts.push_back({"metrics", config.context.out_dir + "/metrics.json"});
  return result;
}

TEST_F(WorkerLoopTest, RunsALeasedJobAndCompletesIt) {
  QueueLease();
  engine::JobRun seen;
  auto loop = MakeLoop([&](const engine::JobRun& c, const engine::JobCallbacks& cb) {
    seen = c;
    // The dataset directory holds the files under their names with their content.
    EXPECT_EQ(ReadFile(c.context.dataset_dir + "/train-images-idx3-ubyte"),
              "content of train-images-idx3-ubyte");
    return SucceedingRunner(c, cb);
  });
  absl::StatusOr<LeaseOutcome> outcome = loop->RunOnce();
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(*outcome, LeaseOutcome::kCompleted);

  EXPECT_EQ(seen.spec.model(), "zoo:lenet5");
  EXPECT_EQ(seen.context.dataset_format, "idx");
  EXPECT_EQ(seen.spec.weight_bits(), 2);
  EXPECT_EQ(seen.spec.training().epochs(), 2);
  EXPECT_EQ(fs::path(seen.context.dataset_dir).filename(), "synth");

  auto state = server_.Lock();
  ASSERT_EQ(state->acquires.size(), 1u);
  EXPECT_EQ(state->acquires[0].worker_id(), "w-test");
  EXPECT_EQ(state->acquires[0].device(), "cpu");
  ASSERT_EQ(state->completes.size(), 1u);
  const v1::CompleteLeaseRequest& complete = state->completes[0];
  EXPECT_EQ(complete.job_id(), "job-7");
  EXPECT_EQ(complete.lease_token(), "token-1");
  EXPECT_DOUBLE_EQ(complete.metrics().quantized_top1(), 0.81);
  EXPECT_EQ(complete.metrics().epochs_size(), 2);
  ASSERT_EQ(complete.artifacts_size(), 2);
  EXPECT_EQ(complete.artifacts(0).kind(), "torchscript");
  EXPECT_EQ(complete.artifacts(0).filename(), "model.pt");
  EXPECT_EQ(complete.artifacts(0).digest(), DigestOf("quantized torchscript"));
  EXPECT_EQ(complete.artifacts(0).size_bytes(), 21);
  EXPECT_EQ(state->blobs[complete.artifacts(1).digest()], R"({"quantized_top1": 0.81})");
  // The checkpoint went up at once (not at the next regular beat) with the progress of the moment.
  const v1::HeartbeatRequest* beat = FirstWithCheckpoint(state->heartbeats);
  ASSERT_NE(beat, nullptr);
  EXPECT_EQ(state->blobs[beat->checkpoint_digest()].substr(0, 18), "qnet-checkpoint/1\n");
  EXPECT_EQ(beat->progress().phase(), "weights");
  EXPECT_EQ(beat->progress().accuracy(), 0);
  EXPECT_TRUE(state->fails.empty());
  // The per-job work directory is gone; the blob cache stays.
  EXPECT_FALSE(fs::exists(options_.cache_dir + "/work/job-7-1"));
  EXPECT_TRUE(fs::exists(options_.cache_dir + "/blobs"));
}

TEST_F(WorkerLoopTest, EveryWorkerCallCarriesTheToken) {
  options_.token = "s3cret";
  QueueLease();
  auto loop = MakeLoop(SucceedingRunner);
  absl::StatusOr<LeaseOutcome> outcome = loop->RunOnce();
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(*outcome, LeaseOutcome::kCompleted);
  auto state = server_.Lock();
  ASSERT_GE(state->worker_authorizations.size(), 3u);  // acquire, heartbeat(s), complete
  for (const std::string& a : state->worker_authorizations) EXPECT_EQ(a, "Bearer s3cret");
}

TEST_F(WorkerLoopTest, ARefusedTokenStopsTheLoopInsteadOfRetrying) {
  server_.Lock()->acquire_error = {grpc::StatusCode::PERMISSION_DENIED, "token does not match"};
  auto loop = MakeLoop(SucceedingRunner);
  absl::Status status = loop->Run();
  EXPECT_TRUE(absl::IsPermissionDenied(status)) << status;
  EXPECT_NE(status.message().find("token does not match"), absl::string_view::npos) << status;
  EXPECT_EQ(server_.Lock()->acquires.size(), 1u);
  EXPECT_EQ(server_.Lock()->worker_authorizations.front(), "");  // no token configured
}

TEST_F(WorkerLoopTest, FetchesAnUploadedModelBlob) {
  const std::string model = server_.PutBlob("user torchscript");
  QueueLease(model);
  std::string model_path;
  auto loop = MakeLoop([&](const engine::JobRun& c, const engine::JobCallbacks& cb) {
    model_path = c.context.model_path;
    EXPECT_EQ(ReadFile(c.context.model_path), "user torchscript");
    return SucceedingRunner(c, cb);
  });
  ASSERT_EQ(*loop->RunOnce(), LeaseOutcome::kCompleted);
  EXPECT_EQ(fs::path(model_path).filename(), model.substr(7));
}

TEST_F(WorkerLoopTest, ResumesFromTheCheckpointOfTheLastAttempt) {
  // Attempt 1 writes ckpt-1.pt and then dies.
  QueueLease();
  auto first = MakeLoop([](const engine::JobRun& c, const engine::JobCallbacks& cb) {
    WriteFile(c.context.checkpoint_dir + "/ckpt-1.pt", "epoch one state");
    cb.on_checkpoint(c.context.checkpoint_dir + "/ckpt-1.pt");
    return absl::StatusOr<engine::JobResult>(absl::InternalError("worker crashed"));
  });
  ASSERT_EQ(*first->RunOnce(), LeaseOutcome::kFailed);
  std::string checkpoint;
  {
    auto state = server_.Lock();
    ASSERT_EQ(state->fails.size(), 1u);
    EXPECT_TRUE(state->fails[0].retryable());
    EXPECT_EQ(state->fails[0].error(), "worker crashed");
    const v1::HeartbeatRequest* beat = FirstWithCheckpoint(state->heartbeats);
    ASSERT_NE(beat, nullptr);
    checkpoint = beat->checkpoint_digest();
    EXPECT_EQ(state->upload_kinds, std::vector<std::string>{"checkpoint"});
  }
  // Attempt 2 finds it under its own name in a fresh checkpoint directory.
  QueueLease("zoo:lenet5", checkpoint);
  options_.cache_dir = (dir_ / "other-cache").string();
  auto second = MakeLoop([](const engine::JobRun& c, const engine::JobCallbacks& cb) {
    EXPECT_EQ(ReadFile(c.context.checkpoint_dir + "/ckpt-1.pt"), "epoch one state");
    return SucceedingRunner(c, cb);
  });
  EXPECT_EQ(*second->RunOnce(), LeaseOutcome::kCompleted);
}

// Polls should_stop() like the engine does between steps.
absl::StatusOr<engine::JobResult> StoppableRunner(const engine::JobRun&,
                                                  const engine::JobCallbacks& callbacks) {
  for (int step = 0; step < 1000; ++step) {
    engine::ProgressEvent event;
    event.phase = "joint";
    event.epoch = 1;
    event.step = step;
    callbacks.on_progress(event);
    if (callbacks.should_stop()) return absl::CancelledError("stopped");
    std::this_thread::sleep_for(10ms);
  }
  return absl::DeadlineExceededError("runner was never stopped");
}

TEST_F(WorkerLoopTest, CancelFromAHeartbeatStopsTheJobAndFailsItAsCancelled) {
  QueueLease();
  server_.Lock()->cancel_requested = true;
  auto loop = MakeLoop(StoppableRunner);
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(*loop->RunOnce(), LeaseOutcome::kCancelled);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);
  auto state = server_.Lock();
  ASSERT_EQ(state->fails.size(), 1u);
  EXPECT_TRUE(state->fails[0].cancelled());
  EXPECT_FALSE(state->fails[0].retryable());
  EXPECT_TRUE(state->completes.empty());
}

TEST_F(WorkerLoopTest, LostLeaseStopsTheJobAndReportsNothing) {
  QueueLease();
  server_.Lock()->lease_lost = true;
  auto loop = MakeLoop(StoppableRunner);
  EXPECT_EQ(*loop->RunOnce(), LeaseOutcome::kLeaseLost);
  auto state = server_.Lock();
  EXPECT_TRUE(state->fails.empty());
  EXPECT_TRUE(state->completes.empty());
}

// The engine's failures reach FailLease classified by engine::IsRetryableFailure: the job's own
// model, data or settings fail it at once; trouble of this worker or this moment is retried.
TEST_F(WorkerLoopTest, DeterministicFailuresFailForGoodTransientOnesAreRetried) {
  const std::vector<std::pair<absl::Status, bool>> cases = {
      {absl::InvalidArgumentError("model.pt: not a TorchScript archive"), false},
      {absl::FailedPreconditionError("training failed: shape mismatch"), false},
      {absl::UnimplementedError("op not supported"), false},
      {absl::NotFoundError("blob sha256:... not on the server"), false},
      {absl::UnavailableError("qnetd unreachable"), true},
      {absl::DeadlineExceededError("download timed out"), true},
      {absl::ResourceExhaustedError("CUDA out of memory"), true},
      {absl::DataLossError("download hashed wrong"), true},
      {absl::PermissionDeniedError("cannot write the cache"), true},
      {absl::InternalError("unexpected"), true},
  };
  for (const auto& [error, retryable] : cases) {
    QueueLease();
    auto loop = MakeLoop([error = error](const engine::JobRun&, const engine::JobCallbacks&) {
      return absl::StatusOr<engine::JobResult>(error);
    });
    EXPECT_EQ(*loop->RunOnce(), LeaseOutcome::kFailed);
    auto state = server_.Lock();
    ASSERT_FALSE(state->fails.empty());
    EXPECT_EQ(state->fails.back().retryable(), retryable) << error;
    EXPECT_EQ(state->fails.back().error(), error.message());
    EXPECT_EQ(engine::IsRetryableFailure(error), retryable) << error;
  }
}

TEST_F(WorkerLoopTest, AThrowingRunnerFailsTheLeaseInsteadOfCrashing) {
  QueueLease();
  auto loop = MakeLoop(
      [](const engine::JobRun&, const engine::JobCallbacks&) -> absl::StatusOr<engine::JobResult> {
        throw std::runtime_error("boom");
      });
  EXPECT_EQ(*loop->RunOnce(), LeaseOutcome::kFailed);
  auto state = server_.Lock();
  ASSERT_EQ(state->fails.size(), 1u);
  EXPECT_TRUE(state->fails[0].retryable());
  EXPECT_NE(state->fails[0].error().find("boom"), std::string::npos);
}

TEST_F(WorkerLoopTest, AMissingModelBlobFailsTheLeaseWithoutRunning) {
  QueueLease(DigestOf("never uploaded"));
  EXPECT_THAT(FailureBeforeRunning(), HasSubstr("fetching model"));
}

// The engine reads a dataset by its registered format; a lease without one is not guessed at.
TEST_F(WorkerLoopTest, ALeaseWithoutADatasetFormatFailsWithoutRunning) {
  v1::AcquireLeaseResponse lease = QueueLease();
  lease.clear_dataset_format();
  {
    auto state = server_.Lock();
    state->leases.clear();
    state->leases.push_back(lease);
  }
  EXPECT_THAT(FailureBeforeRunning(), HasSubstr("no format for dataset 'synth'"));
}

// An operator dataset on a shared volume is read where it is; a worker without the volume fails
// the job for good, naming the path.
TEST_F(WorkerLoopTest, ADatasetOnAVolumeIsReadInPlaceOrFailsForGood) {
  const std::string volume = (dir_ / "volume/pets").string();
  fs::create_directories(volume);
  for (const std::string& path : {volume, (dir_ / "not-mounted").string()}) {
    v1::AcquireLeaseResponse lease = QueueLease();
    lease.clear_dataset_files();
    lease.set_dataset_format("imagefolder");
    lease.set_dataset_path(path);
    {
      auto state = server_.Lock();
      state->leases.clear();
      state->leases.push_back(lease);
      state->fails.clear();
    }
    std::string seen;
    auto loop = MakeLoop([&](const engine::JobRun& c, const engine::JobCallbacks& cb) {
      seen = c.context.dataset_dir;
      return SucceedingRunner(c, cb);
    });
    const LeaseOutcome outcome = *loop->RunOnce();
    if (path == volume) {
      EXPECT_EQ(outcome, LeaseOutcome::kCompleted);
      EXPECT_EQ(seen, volume);
      continue;
    }
    EXPECT_EQ(outcome, LeaseOutcome::kFailed);
    EXPECT_EQ(seen, "");
    auto state = server_.Lock();
    ASSERT_EQ(state->fails.size(), 1u);
    EXPECT_FALSE(state->fails[0].retryable());
    EXPECT_NE(state->fails[0].error().find(path + " is not visible on worker w-test"),
              std::string::npos)
        << state->fails[0].error();
  }
}

TEST_F(WorkerLoopTest, StopDuringAJobFailsItRetryableAndRunReturns) {
  QueueLease();
  auto loop = MakeLoop(StoppableRunner);
  absl::Status run_status;
  std::thread runner([&] { run_status = loop->Run(); });
  ASSERT_TRUE(server_.WaitFor([](const FakeStateRef s) { return !s.heartbeats.empty(); }));
  loop->Stop();
  runner.join();
  EXPECT_TRUE(run_status.ok()) << run_status;
  auto state = server_.Lock();
  ASSERT_EQ(state->fails.size(), 1u);
  EXPECT_TRUE(state->fails[0].retryable());
  EXPECT_FALSE(state->fails[0].cancelled());
}

TEST_F(WorkerLoopTest, OnceReturnsAfterOneJob) {
  QueueLease();
  QueueLease();
  options_.once = true;
  auto loop = MakeLoop(SucceedingRunner);
  EXPECT_TRUE(loop->Run().ok());
  EXPECT_EQ(server_.Lock()->completes.size(), 1u);
}

TEST_F(WorkerLoopTest, AnUnreachableServerIsRetriedUntilStop) {
  auto loop = std::make_unique<WorkerLoop>(
      grpc::CreateChannel("127.0.0.1:1", grpc::InsecureChannelCredentials()), "127.0.0.1:1",
      options_, SucceedingRunner);
  absl::Status run_status = absl::UnknownError("not returned");
  std::thread runner([&] { run_status = loop->Run(); });
  std::this_thread::sleep_for(300ms);
  loop->Stop();
  runner.join();
  EXPECT_TRUE(run_status.ok()) << run_status;
}

TEST_F(WorkerLoopTest, AnEngineIgnoringStopIsAbandonedAfterTheGrace) {
  QueueLease();
  options_.stop_grace = 100ms;
  auto release = std::make_shared<std::atomic<bool>>(false);
  auto started = std::make_shared<std::atomic<bool>>(false);
  auto finished = std::make_shared<std::atomic<bool>>(false);
  auto loop =
      MakeLoop([release, started, finished](const engine::JobRun&, const engine::JobCallbacks&) {
        started->store(true);
        while (!release->load()) std::this_thread::sleep_for(5ms);
        finished->store(true);
        return absl::StatusOr<engine::JobResult>(absl::CancelledError("late"));
      });
  absl::Status run_status;
  std::thread runner([&] { run_status = loop->Run(); });
  for (int i = 0; i < 1000 && !started->load(); ++i) std::this_thread::sleep_for(5ms);
  ASSERT_TRUE(started->load());
  loop->Stop();
  runner.join();
  EXPECT_EQ(run_status.code(), absl::StatusCode::kAborted);
  EXPECT_EQ(server_.Lock()->fails.size(), 1u);
  release->store(true);  // the detached engine thread finishes before the test ends
  for (int i = 0; i < 1000 && !finished->load(); ++i) std::this_thread::sleep_for(5ms);
  EXPECT_TRUE(finished->load());
}

// --- pieces ---

// The sandbox under the lease loop (the test child's fake engine; sandbox_test.cc has the rest):
// a crashing model fails its job for good with the signal, and the worker serves the next job.
TEST_F(WorkerLoopTest, ASandboxedCrashFailsItsJobForGoodAndTheNextJobCompletes) {
  SandboxOptions sandbox_options;
  sandbox_options.executable = QNET_SANDBOX_TEST_CHILD;
  std::unique_ptr<Sandbox> sandbox = Sandbox::Create(sandbox_options);
  auto loop = MakeLoop([&](const engine::JobRun& run, const engine::JobCallbacks& callbacks) {
    return sandbox->Run(run, callbacks);
  });
  QueueLease("zoo:test-segfault");
  EXPECT_EQ(*loop->RunOnce(), LeaseOutcome::kFailed);
  QueueLease("zoo:test-succeed");
  EXPECT_EQ(*loop->RunOnce(), LeaseOutcome::kCompleted);
  auto state = server_.Lock();
  ASSERT_EQ(state->fails.size(), 1u);
  EXPECT_FALSE(state->fails[0].retryable());
  EXPECT_THAT(state->fails[0].error(), HasSubstr("killed by SIGSEGV"));
  ASSERT_EQ(state->completes.size(), 1u);
  EXPECT_DOUBLE_EQ(state->completes[0].metrics().quantized_top1(), 0.75);
  ASSERT_EQ(state->completes[0].artifacts_size(), 1);
  EXPECT_EQ(state->blobs.at(state->completes[0].artifacts(0).digest()), "quantized model");
}

TEST(BlobCacheTest, FetchesOnceAndAssemblesDatasets) {
  const fs::path root = fs::temp_directory_path() / ("qnet_blob_cache_" + std::to_string(getpid()));
  fs::remove_all(root);
  int fetches = 0;
  std::map<std::string, std::string> blobs = {{DigestOf("a"), "a"}, {DigestOf("b"), "b"}};
  BlobCache cache(root.string(), [&](const std::string& digest, const std::string& path) {
    ++fetches;
    WriteFile(path, blobs.at(digest));
    return absl::OkStatus();
  });
  absl::StatusOr<std::string> a = cache.Blob(DigestOf("a"));
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(ReadFile(*a), "a");
  ASSERT_TRUE(cache.Blob(DigestOf("a")).ok());
  EXPECT_EQ(fetches, 1);

  google::protobuf::RepeatedPtrField<v1::DatasetFile> files;
  files.Add()->set_name("x.bin");
  files[0].set_digest(DigestOf("a"));
  files.Add()->set_name("y.bin");
  files[1].set_digest(DigestOf("b"));
  absl::StatusOr<std::string> dir = cache.Dataset("mnist", files);
  ASSERT_TRUE(dir.ok()) << dir.status();
  EXPECT_EQ(ReadFile(*dir + "/x.bin"), "a");
  EXPECT_EQ(ReadFile(*dir + "/y.bin"), "b");
  EXPECT_EQ(fetches, 2);
  EXPECT_EQ(*cache.Dataset("mnist", files), *dir);

  files[0].set_name("../escape");
  EXPECT_EQ(cache.Dataset("mnist", files).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(cache.Dataset("../x", files).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(cache.Blob("sha256:zz").status().code(), absl::StatusCode::kInvalidArgument);
  fs::remove_all(root);
}

TEST(WorkerCheckpointTest, EnvelopeRoundTripKeepsTheName) {
  const fs::path dir = fs::temp_directory_path() / ("qnet_ckpt_" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir / "a");
  WriteFile((dir / "a" / "ckpt-12.pt").string(), std::string("bin\0ary\nstate", 13));
  ASSERT_TRUE(PackCheckpoint((dir / "a" / "ckpt-12.pt").string(), (dir / "env").string()).ok());
  absl::StatusOr<std::string> path = UnpackCheckpoint((dir / "env").string(), (dir / "b").string());
  ASSERT_TRUE(path.ok()) << path.status();
  EXPECT_EQ(*path, (dir / "b" / "ckpt-12.pt").string());
  EXPECT_EQ(ReadFile(*path), std::string("bin\0ary\nstate", 13));

  WriteFile((dir / "raw").string(), "not an envelope");
  EXPECT_EQ(UnpackCheckpoint((dir / "raw").string(), (dir / "c").string()).status().code(),
            absl::StatusCode::kInvalidArgument);
  WriteFile((dir / "evil").string(), "qnet-checkpoint/1\n../../x\ndata");
  EXPECT_EQ(UnpackCheckpoint((dir / "evil").string(), (dir / "c").string()).status().code(),
            absl::StatusCode::kInvalidArgument);
  fs::remove_all(dir);
}

TEST(WorkerConvertTest, MetricsAndProgressBecomeTheApiMessages) {
  engine::JobMetrics metrics;
  metrics.input_mean = {0.1, 0.2, 0.3};
  metrics.input_std = {0.4, 0.5, 0.6};
  const v1::Metrics proto = MetricsToProto(metrics);
  const v1::InputNormalization& norm = proto.input_normalization();
  EXPECT_EQ(std::vector<double>(norm.mean().begin(), norm.mean().end()), metrics.input_mean);
  EXPECT_EQ(std::vector<double>(norm.std().begin(), norm.std().end()), metrics.input_std);
  metrics.effective_spec.mutable_training()->set_seed(7);
  EXPECT_EQ(MetricsToProto(metrics).effective_spec().training().seed(), 7u);

  engine::ProgressEvent event;
  event.accuracy = -1;
  event.epoch = 3;
  EXPECT_EQ(ProgressToProto(event).accuracy(), 0);
  EXPECT_EQ(ProgressToProto(event).epoch(), 3);
  EXPECT_EQ(ProgressToProto(event).device_memory_bytes(), 0);  // CPU: not reported
  event.device_memory_bytes = int64_t{3} << 30;
  EXPECT_EQ(ProgressToProto(event).device_memory_bytes(), int64_t{3} << 30);
}

// What crosses the sandbox's pipe as API messages comes back as it was reported.
TEST(WorkerConvertTest, ProtoRoundTripsKeepWhatTheWorkerReports) {
  engine::JobMetrics metrics;
  metrics.quantized_top1 = 0.7;
  metrics.torchscript_top1 = 0.69;
  metrics.input_mean = {0.5};
  metrics.class_names = {"cat", "dog"};
  metrics.epochs.push_back({.epoch = 2, .phase = "joint", .train_loss = 0.3, .hard_top1 = 0.6});
  metrics.effective_spec.set_weight_bits(4);
  const v1::Metrics proto = MetricsToProto(metrics);
  EXPECT_EQ(MetricsToProto(MetricsFromProto(proto)).SerializeAsString(), proto.SerializeAsString());
  EXPECT_FALSE(MetricsFromProto(proto).onnx_top1.has_value());

  engine::ProgressEvent event;
  event.phase = "joint";
  event.step = 12;
  event.accuracy = 0.4;
  const v1::Progress progress = ProgressToProto(event);
  EXPECT_EQ(ProgressToProto(ProgressFromProto(progress)).SerializeAsString(),
            progress.SerializeAsString());
}

}  // namespace
}  // namespace qnet::worker
