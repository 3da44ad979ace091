// The whole server in-process (QnetServer on 127.0.0.1:0) driven through real gRPC stubs:
// submit/get/list/watch/cancel, blobs, the worker protocol, health, reflection and metrics.
#include <thread>

#include <grpcpp/completion_queue.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/security/credentials.h>

#include "common/digest.h"
#include "common/handoff.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "qnet/v1/blob.grpc.pb.h"
#include "qnet/v1/job.grpc.pb.h"
#include "qnet/v1/worker.grpc.pb.h"
#include "server/app/qnet_server_impl.h"
#include "server/store/sqlite_job_store.h"
#include "tests/server/store/fault_injecting_job_store.h"
#include "tests/server/test_server.h"
#include "tests/server/test_util.h"

namespace qnet::server {
namespace {

using ::testing::HasSubstr;
using testing::TempDir;

class GrpcServiceTest : public ::testing::Test {
 protected:
  void SetUp() override { StartServer(); }

  // `store` null: the default SQLite store in the data folder.
  void StartServer(JobStore* store = nullptr) {
    if (server_ != nullptr) server_->Shutdown(absl::Seconds(2));
    server_.reset();
    QnetServerOptions options = testing::LoopbackServerOptions(dir_, /*http=*/true);
    options.store = store;
    options.max_blob_bytes = 4 << 20;
    options.lease_seconds = 30;
    auto server = QnetServerImpl::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    channel_ = grpc::CreateChannel(server_->grpc_address(), grpc::InsecureChannelCredentials());
    jobs_ = qnet::v1::JobService::NewStub(channel_);
    blobs_ = qnet::v1::BlobService::NewStub(channel_);
    workers_ = qnet::v1::WorkerService::NewStub(channel_);
  }

  void TearDown() override {
    if (server_ != nullptr) server_->Shutdown(absl::Seconds(2));
  }

  static std::unique_ptr<grpc::ClientContext> Ctx(absl::Duration timeout = absl::Seconds(10)) {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
    return ctx;
  }

  static qnet::v1::JobSpec Spec() {
    qnet::v1::JobSpec spec;
    spec.set_model("zoo:lenet5");
    spec.set_dataset("fashion-mnist");
    spec.set_weight_bits(2);
    spec.set_activation_bits(2);
    return spec;
  }

  grpc::Status Submit(const qnet::v1::JobSpec& spec, qnet::v1::Job* job,
                      const std::string& request_id = "") {
    qnet::v1::SubmitJobRequest req;
    *req.mutable_spec() = spec;
    req.set_request_id(request_id);
    return jobs_->SubmitJob(Ctx().get(), req, job);
  }

  grpc::Status Upload(const std::string& data, qnet::v1::UploadResponse* response,
                      const std::string& digest = "", int64_t declared = -2) {
    auto ctx = Ctx();
    auto writer = blobs_->Upload(ctx.get(), response);
    qnet::v1::UploadRequest header;
    header.mutable_header()->set_size_bytes(declared == -2 ? static_cast<int64_t>(data.size())
                                                           : declared);
    header.mutable_header()->set_digest(digest);
    header.mutable_header()->set_kind("model");
    writer->Write(header);
    for (size_t i = 0; i < data.size(); i += 1000) {
      qnet::v1::UploadRequest chunk;
      chunk.set_chunk(data.substr(i, 1000));
      if (!writer->Write(chunk)) break;
    }
    writer->WritesDone();
    return writer->Finish();
  }

  qnet::v1::AcquireLeaseResponse Acquire(int wait_seconds = 0) {
    qnet::v1::AcquireLeaseRequest req;
    req.set_worker_id("test-worker");
    req.set_device("cpu");
    req.set_wait_seconds(wait_seconds);
    qnet::v1::AcquireLeaseResponse resp;
    grpc::Status s = workers_->AcquireLease(Ctx().get(), req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp;
  }

  TempDir dir_;
  std::unique_ptr<testing::FaultInjectingJobStore> faulty_store_;  // outlives server_
  std::unique_ptr<QnetServerImpl> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<qnet::v1::JobService::Stub> jobs_;
  std::unique_ptr<qnet::v1::BlobService::Stub> blobs_;
  std::unique_ptr<qnet::v1::WorkerService::Stub> workers_;
};

TEST_F(GrpcServiceTest, ListsModelsAndDatasets) {
  qnet::v1::ListModelsResponse models;
  ASSERT_TRUE(jobs_->ListModels(Ctx().get(), {}, &models).ok());
  ASSERT_EQ(models.models_size(), 2);
  EXPECT_EQ(models.models(0).name(), "zoo:lenet5");
  EXPECT_EQ(models.models(0).input_shape(), "1x28x28");
  EXPECT_EQ(models.models(1).name(), "zoo:resnet20");
  EXPECT_EQ(models.models(1).input_shape(), "3x32x32");
  qnet::v1::ListDatasetsResponse datasets;
  ASSERT_TRUE(jobs_->ListDatasets(Ctx().get(), {}, &datasets).ok());
  ASSERT_EQ(datasets.datasets_size(), 1);
  EXPECT_EQ(datasets.datasets(0).name(), "fashion-mnist");
  EXPECT_EQ(datasets.datasets(0).format(), "idx");
  EXPECT_EQ(datasets.datasets(0).height(), 28);
}

TEST_F(GrpcServiceTest, SubmitValidatesAndIsIdempotent) {
  qnet::v1::Job job;
  qnet::v1::JobSpec bad = Spec();
  bad.set_weight_bits(33);
  bad.set_dataset("../../etc/passwd");
  grpc::Status refused = Submit(bad, &job);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(refused.error_message(), HasSubstr("weight_bits"));
  EXPECT_THAT(refused.error_message(), HasSubstr("fashion-mnist"));

  ASSERT_TRUE(Submit(Spec(), &job, "req-42").ok());
  EXPECT_EQ(job.state(), qnet::v1::QUEUED);
  qnet::v1::Job again;
  ASSERT_TRUE(Submit(Spec(), &again, "req-42").ok());
  EXPECT_EQ(again.id(), job.id());

  qnet::v1::GetJobRequest get;
  get.set_id(job.id());
  qnet::v1::Job got;
  ASSERT_TRUE(jobs_->GetJob(Ctx().get(), get, &got).ok());
  EXPECT_EQ(got.id(), job.id());
  get.set_id("j-doesnotexist");
  EXPECT_EQ(jobs_->GetJob(Ctx().get(), get, &got).error_code(), grpc::StatusCode::NOT_FOUND);
  get.set_id("");
  EXPECT_EQ(jobs_->GetJob(Ctx().get(), get, &got).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(GrpcServiceTest, ListJobsPagesAndFilters) {
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) {
    qnet::v1::Job job;
    ASSERT_TRUE(Submit(Spec(), &job).ok());
    ids.push_back(job.id());
  }
  qnet::v1::CancelJobRequest cancel;
  cancel.set_id(ids[0]);
  qnet::v1::Job cancelled;
  ASSERT_TRUE(jobs_->CancelJob(Ctx().get(), cancel, &cancelled).ok());
  EXPECT_EQ(cancelled.state(), qnet::v1::CANCELLED);

  std::vector<std::string> listed;
  qnet::v1::ListJobsRequest req;
  req.set_page_size(2);
  int pages = 0;
  do {
    qnet::v1::ListJobsResponse resp;
    ASSERT_TRUE(jobs_->ListJobs(Ctx().get(), req, &resp).ok());
    for (const auto& j : resp.jobs()) listed.push_back(j.id());
    req.set_page_token(resp.next_page_token());
    ++pages;
  } while (!req.page_token().empty() && pages < 10);
  EXPECT_EQ(pages, 3);
  EXPECT_EQ(listed, (std::vector<std::string>{ids[4], ids[3], ids[2], ids[1], ids[0]}));

  qnet::v1::ListJobsRequest queued;
  queued.set_state(qnet::v1::QUEUED);
  qnet::v1::ListJobsResponse resp;
  ASSERT_TRUE(jobs_->ListJobs(Ctx().get(), queued, &resp).ok());
  EXPECT_EQ(resp.jobs_size(), 4);
  queued.set_page_token("bm90LWEtdG9rZW4");
  EXPECT_EQ(jobs_->ListJobs(Ctx().get(), queued, &resp).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(GrpcServiceTest, WorkerProtocolWithWatch) {
  // A model and an artifact go through the blob service.
  qnet::v1::UploadResponse model;
  const std::string model_bytes = testing::MakeTorchScriptZip();
  ASSERT_TRUE(Upload(model_bytes, &model, DigestOf(model_bytes)).ok());
  qnet::v1::JobSpec spec = Spec();
  spec.set_model(model.digest());
  qnet::v1::Job job;
  ASSERT_TRUE(Submit(spec, &job).ok());

  std::vector<qnet::v1::Job> seen;
  Handoff<bool> watching;
  std::thread watcher([&] {
    qnet::v1::WatchJobRequest req;
    req.set_id(job.id());
    auto ctx = Ctx(absl::Seconds(20));
    auto reader = jobs_->WatchJob(ctx.get(), req);
    qnet::v1::Job snapshot;
    while (reader->Read(&snapshot)) {
      seen.push_back(snapshot);
      if (seen.size() == 1) watching.Set(true);
    }
    if (seen.empty()) watching.Set(false);
    EXPECT_TRUE(reader->Finish().ok());
  });
  watching.Wait();  // the first snapshot shows the job still queued

  qnet::v1::AcquireLeaseResponse lease = Acquire(5);
  ASSERT_TRUE(lease.has_job());
  EXPECT_EQ(lease.job().id(), job.id());
  EXPECT_EQ(lease.job().attempt(), 1);
  EXPECT_FALSE(lease.lease_token().empty());
  EXPECT_TRUE(lease.has_expire_time());
  EXPECT_EQ(lease.dataset_format(), "idx");
  ASSERT_EQ(lease.dataset_files_size(), 4);
  for (const auto& f : lease.dataset_files()) {
    qnet::v1::StatBlobRequest stat;
    stat.set_digest(f.digest());
    qnet::v1::StatBlobResponse size;
    ASSERT_TRUE(blobs_->StatBlob(Ctx().get(), stat, &size).ok()) << f.name();
    EXPECT_EQ(size.size_bytes(), f.size_bytes());
  }

  qnet::v1::HeartbeatRequest hb;
  hb.set_job_id(job.id());
  hb.set_lease_token(lease.lease_token());
  hb.mutable_progress()->set_epoch(1);
  hb.mutable_progress()->set_total_epochs(2);
  hb.mutable_progress()->set_images_per_second(900);
  qnet::v1::HeartbeatResponse hb_resp;
  ASSERT_TRUE(workers_->Heartbeat(Ctx().get(), hb, &hb_resp).ok());
  EXPECT_FALSE(hb_resp.cancel_requested());
  hb.set_checkpoint_digest(DigestOf("never uploaded"));
  EXPECT_EQ(workers_->Heartbeat(Ctx().get(), hb, &hb_resp).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  hb.clear_checkpoint_digest();
  hb.set_lease_token("stale");
  EXPECT_EQ(workers_->Heartbeat(Ctx().get(), hb, &hb_resp).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);

  qnet::v1::UploadResponse artifact;
  ASSERT_TRUE(Upload("onnx bytes", &artifact).ok());
  qnet::v1::CompleteLeaseRequest done;
  done.set_job_id(job.id());
  done.set_lease_token(lease.lease_token());
  done.mutable_metrics()->set_quantized_top1(0.88);
  qnet::v1::Artifact* a = done.add_artifacts();
  a->set_kind("onnx");
  a->set_digest(artifact.digest());
  a->set_size_bytes(artifact.size_bytes());
  qnet::v1::CompleteLeaseResponse done_resp;
  ASSERT_TRUE(workers_->CompleteLease(Ctx().get(), done, &done_resp).ok());
  EXPECT_EQ(workers_->CompleteLease(Ctx().get(), done, &done_resp).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);

  watcher.join();
  ASSERT_GE(seen.size(), 2u);
  EXPECT_EQ(seen.front().state(), qnet::v1::QUEUED);
  EXPECT_EQ(seen.back().state(), qnet::v1::SUCCEEDED);
  EXPECT_DOUBLE_EQ(seen.back().metrics().quantized_top1(), 0.88);
  ASSERT_EQ(seen.back().artifacts_size(), 1);

  // The artifact downloads from an offset.
  qnet::v1::DownloadRequest dl;
  dl.set_digest(artifact.digest());
  dl.set_offset(5);
  auto ctx = Ctx();
  auto reader = blobs_->Download(ctx.get(), dl);
  std::string data;
  qnet::v1::DownloadChunk chunk;
  while (reader->Read(&chunk)) {
    EXPECT_EQ(chunk.total_size(), 10);
    data += chunk.data();
  }
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_EQ(data, "bytes");
}

TEST_F(GrpcServiceTest, CancelRunningJobAndEmptyLongPoll) {
  qnet::v1::AcquireLeaseResponse none = Acquire(0);
  EXPECT_FALSE(none.has_job());
  qnet::v1::Job job;
  ASSERT_TRUE(Submit(Spec(), &job).ok());
  qnet::v1::AcquireLeaseResponse lease = Acquire(0);
  ASSERT_TRUE(lease.has_job());
  qnet::v1::CancelJobRequest cancel;
  cancel.set_id(job.id());
  qnet::v1::Job requested;
  ASSERT_TRUE(jobs_->CancelJob(Ctx().get(), cancel, &requested).ok());
  EXPECT_TRUE(requested.cancel_requested());
  EXPECT_EQ(requested.state(), qnet::v1::RUNNING);
  qnet::v1::HeartbeatRequest hb;
  hb.set_job_id(job.id());
  hb.set_lease_token(lease.lease_token());
  qnet::v1::HeartbeatResponse hb_resp;
  ASSERT_TRUE(workers_->Heartbeat(Ctx().get(), hb, &hb_resp).ok());
  EXPECT_TRUE(hb_resp.cancel_requested());
  qnet::v1::FailLeaseRequest fail;
  fail.set_job_id(job.id());
  fail.set_lease_token(lease.lease_token());
  fail.set_cancelled(true);
  qnet::v1::FailLeaseResponse fail_resp;
  ASSERT_TRUE(workers_->FailLease(Ctx().get(), fail, &fail_resp).ok());
  qnet::v1::GetJobRequest get;
  get.set_id(job.id());
  qnet::v1::Job got;
  ASSERT_TRUE(jobs_->GetJob(Ctx().get(), get, &got).ok());
  EXPECT_EQ(got.state(), qnet::v1::CANCELLED);
  EXPECT_EQ(jobs_->CancelJob(Ctx().get(), cancel, &requested).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
}

TEST_F(GrpcServiceTest, BlobErrors) {
  qnet::v1::UploadResponse resp;
  grpc::Status mismatch = Upload("abc", &resp, DigestOf("xyz"));
  EXPECT_EQ(mismatch.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(mismatch.error_message(), HasSubstr("digest mismatch"));
  EXPECT_EQ(Upload(std::string(10, 'x'), &resp, "", 5 << 20).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(Upload(std::string(4100 * 1024, 'x'), &resp, "", 0).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  // Garbage uploaded as a model is refused at submit.
  ASSERT_TRUE(Upload("not a zip", &resp).ok());
  qnet::v1::JobSpec spec = Spec();
  spec.set_model(resp.digest());
  qnet::v1::Job job;
  grpc::Status refused = Submit(spec, &job);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(refused.error_message(), HasSubstr("not a TorchScript archive"));
  qnet::v1::StatBlobRequest stat;
  stat.set_digest(DigestOf("missing"));
  qnet::v1::StatBlobResponse size;
  EXPECT_EQ(blobs_->StatBlob(Ctx().get(), stat, &size).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(server_->blobs().root(), dir_ / "data/blobs");
  EXPECT_EQ(testing::CountFiles(dir_ / "data/blobs/tmp"), 0);
}

TEST_F(GrpcServiceTest, HealthReflectionAndMetrics) {
  grpc::GenericStub generic(channel_);
  auto call = [&](const std::string& method) {
    grpc::Slice empty("", 0);  // an empty HealthCheckRequest
    grpc::ByteBuffer request(&empty, 1);
    grpc::ByteBuffer response;
    grpc::ClientContext ctx;
    Handoff<grpc::Status> done;
    generic.UnaryCall(&ctx, method, grpc::StubOptions(), &request, &response,
                      [&](grpc::Status s) { done.Set(s); });
    grpc::Status s = done.Wait();
    std::vector<grpc::Slice> slices;
    std::string bytes;
    if (s.ok() && response.Dump(&slices).ok()) {
      for (const auto& slice : slices)
        bytes.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
    }
    return std::make_pair(s, bytes);
  };
  auto [status, bytes] = call("/grpc.health.v1.Health/Check");
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(bytes, std::string("\x08\x01", 2));  // status: SERVING

  // Server reflection lists our services (a raw ServerReflectionRequest{list_services: ""}).
  {
    grpc::CompletionQueue cq;
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    auto stream = generic.PrepareCall(
        &ctx, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", &cq);
    void* tag;
    bool ok;
    auto step = [&](intptr_t want) {
      EXPECT_TRUE(cq.Next(&tag, &ok));
      EXPECT_EQ(reinterpret_cast<intptr_t>(tag), want);
      return ok;
    };
    stream->StartCall(reinterpret_cast<void*>(1));
    ASSERT_TRUE(step(1));
    grpc::Slice list_services("\x3a\x00", 2);
    grpc::ByteBuffer request(&list_services, 1);
    stream->Write(request, reinterpret_cast<void*>(2));
    ASSERT_TRUE(step(2));
    grpc::ByteBuffer response;
    stream->Read(&response, reinterpret_cast<void*>(3));
    ASSERT_TRUE(step(3));
    stream->WritesDone(reinterpret_cast<void*>(4));
    step(4);
    grpc::Status finish;
    stream->Finish(&finish, reinterpret_cast<void*>(5));
    step(5);
    std::vector<grpc::Slice> slices;
    std::string reply;
    ASSERT_TRUE(response.Dump(&slices).ok());
    for (const auto& slice : slices) {
      reply.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
    }
    for (const char* service :
         {"qnet.v1.JobService", "qnet.v1.BlobService", "qnet.v1.WorkerService"}) {
      EXPECT_THAT(reply, HasSubstr(service));
    }
    cq.Shutdown();
    while (cq.Next(&tag, &ok)) {
    }
  }

  qnet::v1::Job job;
  ASSERT_TRUE(Submit(Spec(), &job).ok());
  const std::string metrics = testing::HttpGet(server_->http_address(), "/metrics").body;
  EXPECT_THAT(
      metrics,
      HasSubstr("qnet_grpc_requests_total{code=\"OK\",method=\"qnet.v1.JobService/SubmitJob\"} 1"));
  EXPECT_THAT(metrics, HasSubstr("qnet_jobs_submitted_total 1"));
  EXPECT_EQ(testing::HttpGet(server_->http_address(), "/healthz").status, 200);

  server_->Shutdown(absl::Seconds(1));
  EXPECT_FALSE(server_->serving());
}

TEST_F(GrpcServiceTest, DrainingRefusesNewWorkButLetsLeasesReport) {
  qnet::v1::Job job;
  ASSERT_TRUE(Submit(Spec(), &job).ok());
  qnet::v1::AcquireLeaseResponse lease = Acquire(0);
  ASSERT_TRUE(lease.has_job());
  // A long-poll in flight when draining starts ends promptly.
  std::thread poller([&] {
    qnet::v1::AcquireLeaseRequest req;
    req.set_worker_id("late");
    req.set_wait_seconds(30);
    qnet::v1::AcquireLeaseResponse resp;
    const absl::Time start = absl::Now();
    grpc::Status s = workers_->AcquireLease(Ctx(absl::Seconds(40)).get(), req, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE);
    EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  });
  // The poller is inside AcquireLease (seen, idle) before draining starts.
  EXPECT_TRUE(testing::WaitFor([&] { return server_->scheduler().Stats().workers_idle == 1; }));
  server_->scheduler().Shutdown();
  poller.join();
  EXPECT_EQ(Submit(Spec(), &job).error_code(), grpc::StatusCode::UNAVAILABLE);
  qnet::v1::FailLeaseRequest fail;
  fail.set_job_id(lease.job().id());
  fail.set_lease_token(lease.lease_token());
  fail.set_retryable(true);
  fail.set_error("worker shutting down");
  qnet::v1::FailLeaseResponse fail_resp;
  EXPECT_TRUE(workers_->FailLease(Ctx().get(), fail, &fail_resp).ok());
}

TEST_F(GrpcServiceTest, StoreFailuresAreUnavailableAndChangeNothing) {
  auto sqlite = SqliteJobStore::Open(dir_ / "faulty-jobs.db");
  ASSERT_TRUE(sqlite.ok()) << sqlite.status();
  faulty_store_ = std::make_unique<testing::FaultInjectingJobStore>(*std::move(sqlite));
  StartServer(faulty_store_.get());
  qnet::v1::Job job;
  faulty_store_->FailWrites(1);
  grpc::Status refused = Submit(Spec(), &job, "req-1");
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(refused.error_message(), HasSubstr("not created"));
  ASSERT_TRUE(Submit(Spec(), &job, "req-1").ok());
  qnet::v1::AcquireLeaseResponse lease = Acquire(0);
  ASSERT_TRUE(lease.has_job());

  qnet::v1::CompleteLeaseRequest complete;
  complete.set_job_id(job.id());
  complete.set_lease_token(lease.lease_token());
  qnet::v1::CompleteLeaseResponse complete_resp;
  faulty_store_->FailWrites(1);
  grpc::Status not_stored = workers_->CompleteLease(Ctx().get(), complete, &complete_resp);
  EXPECT_EQ(not_stored.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(not_stored.error_message(),
              ::testing::AllOf(HasSubstr("could not store the completion"),
                               HasSubstr("nothing changed, the job is still RUNNING")));
  qnet::v1::GetJobRequest get;
  get.set_id(job.id());
  ASSERT_TRUE(jobs_->GetJob(Ctx().get(), get, &job).ok());
  EXPECT_EQ(job.state(), qnet::v1::RUNNING);
  // The worker's retry of the same report succeeds once the store is back.
  ASSERT_TRUE(workers_->CompleteLease(Ctx().get(), complete, &complete_resp).ok());
  ASSERT_TRUE(jobs_->GetJob(Ctx().get(), get, &job).ok());
  EXPECT_EQ(job.state(), qnet::v1::SUCCEEDED);
}

}  // namespace
}  // namespace qnet::server
