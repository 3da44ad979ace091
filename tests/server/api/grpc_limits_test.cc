// The whole server in-process (QnetServer on 127.0.0.1:0) under misuse: made-up method names do
// not grow /metrics, a worker's long error is cut on a character boundary and the job stays
// readable, a stalled upload is cancelled and leaves no temp file, one connection carries only
// so many calls at once, /healthz follows the gRPC health service.
#include <thread>

#include <grpcpp/create_channel.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/security/credentials.h>

#include "absl/strings/str_cat.h"
#include "common/handoff.h"
#include "common/utf8.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "qnet/v1/blob.grpc.pb.h"
#include "qnet/v1/job.grpc.pb.h"
#include "qnet/v1/worker.grpc.pb.h"
#include "server/app/grpc_health_probe.h"
#include "server/app/qnet_server_impl.h"
#include "tests/server/test_server.h"
#include "tests/server/test_util.h"

namespace qnet::server {
namespace {

using ::testing::HasSubstr;

class GrpcLimitsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    QnetServerOptions options = testing::LoopbackServerOptions(dir_, /*http=*/true);
    options.upload_idle_seconds = 1;
    options.grpc_max_streams_per_connection = 1;
    auto server = QnetServerImpl::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    channel_ = grpc::CreateChannel(server_->grpc_address(), grpc::InsecureChannelCredentials());
    jobs_ = qnet::v1::JobService::NewStub(channel_);
    workers_ = qnet::v1::WorkerService::NewStub(channel_);
  }

  static std::unique_ptr<grpc::ClientContext> Ctx(absl::Duration timeout = absl::Seconds(10)) {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
    return ctx;
  }

  // A unary call with `bytes` as the serialized request, whatever they hold.
  grpc::Status RawCall(const std::string& method, const std::string& bytes) {
    grpc::GenericStub generic(channel_);
    grpc::Slice slice(bytes);
    grpc::ByteBuffer request(&slice, 1);
    grpc::ByteBuffer response;
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    Handoff<grpc::Status> done;
    generic.UnaryCall(&ctx, method, grpc::StubOptions(), &request, &response,
                      [&](grpc::Status s) { done.Set(std::move(s)); });
    return done.Wait();
  }

  // A submitted job leased to worker "w": {job id, lease token}.
  std::pair<std::string, std::string> LeasedJob() {
    qnet::v1::SubmitJobRequest submit;
    submit.mutable_spec()->set_model("zoo:lenet5");
    submit.mutable_spec()->set_dataset("fashion-mnist");
    submit.mutable_spec()->set_weight_bits(2);
    qnet::v1::Job job;
    EXPECT_TRUE(jobs_->SubmitJob(Ctx().get(), submit, &job).ok());
    qnet::v1::AcquireLeaseRequest acquire;
    acquire.set_worker_id("w");
    qnet::v1::AcquireLeaseResponse lease;
    EXPECT_TRUE(workers_->AcquireLease(Ctx().get(), acquire, &lease).ok());
    EXPECT_EQ(lease.job().id(), job.id());
    return {job.id(), lease.lease_token()};
  }

  testing::TempDir dir_;
  std::unique_ptr<QnetServerImpl> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<qnet::v1::JobService::Stub> jobs_;
  std::unique_ptr<qnet::v1::WorkerService::Stub> workers_;
};

TEST_F(GrpcLimitsTest, MadeUpMethodsShareOneMetricsLabel) {
  for (int i = 0; i < 50; ++i) {
    EXPECT_EQ(RawCall(absl::StrCat("/qnet.v1.JobService/MadeUp", i), "").error_code(),
              grpc::StatusCode::UNIMPLEMENTED);
  }
  qnet::v1::GetJobRequest get;
  get.set_id("j-none");
  qnet::v1::Job job;
  EXPECT_EQ(jobs_->GetJob(Ctx().get(), get, &job).error_code(), grpc::StatusCode::NOT_FOUND);

  const std::string metrics = testing::HttpGet(server_->http_address(), "/metrics").body;
  EXPECT_THAT(metrics, ::testing::Not(HasSubstr("MadeUp")));
  EXPECT_THAT(metrics,
              HasSubstr("qnet_grpc_requests_total{code=\"UNIMPLEMENTED\",method=\"unknown\"} 50"));
  EXPECT_THAT(metrics, HasSubstr("method=\"qnet.v1.JobService/GetJob\""));  // real ones stay
}

TEST_F(GrpcLimitsTest, LongWorkerErrorIsCutOnACharacterBoundaryAndTheJobStaysReadable) {
  const auto [job_id, token] = LeasedJob();

  // 8191 ASCII bytes, then 3-byte characters: byte 8192 falls inside one.
  std::string error(8191, 'e');
  for (int i = 0; i < 100; ++i) error += "\xE2\x82\xAC";
  qnet::v1::FailLeaseRequest fail;
  fail.set_job_id(job_id);
  fail.set_lease_token(token);
  fail.set_error(error);
  qnet::v1::FailLeaseResponse fail_resp;
  ASSERT_TRUE(workers_->FailLease(Ctx().get(), fail, &fail_resp).ok());

  qnet::v1::GetJobRequest get;
  get.set_id(job_id);
  qnet::v1::Job got;
  grpc::Status s = jobs_->GetJob(Ctx().get(), get, &got);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(got.state(), qnet::v1::FAILED);
  EXPECT_TRUE(IsValidUtf8(got.error()));
  EXPECT_LE(got.error().size(), 8192u);
  EXPECT_THAT(got.error(), ::testing::StartsWith(std::string(8191, 'e')));
  qnet::v1::ListJobsResponse list;
  ASSERT_TRUE(jobs_->ListJobs(Ctx().get(), {}, &list).ok());
  ASSERT_EQ(list.jobs_size(), 1);
  EXPECT_EQ(list.jobs(0).id(), job_id);
}

TEST_F(GrpcLimitsTest, InvalidUtf8FromAWorkerNeverReachesTheStore) {
  const auto [job_id, token] = LeasedJob();
  // What a worker in another language could send: the error field is not UTF-8.
  qnet::v1::FailLeaseRequest fail;
  fail.set_job_id(job_id);
  fail.set_lease_token(token);
  fail.set_error("PLACEHOLDER");
  std::string bytes = fail.SerializeAsString();
  bytes.replace(bytes.find("PLACEHOLDER"), 11, "bad\xC3\x28\xFF\xFEtext");
  EXPECT_FALSE(RawCall("/qnet.v1.WorkerService/FailLease", bytes).ok());
  qnet::v1::GetJobRequest get;
  get.set_id(job_id);
  qnet::v1::Job got;
  ASSERT_TRUE(jobs_->GetJob(Ctx().get(), get, &got).ok());
  EXPECT_EQ(got.state(), qnet::v1::RUNNING);  // refused whole, nothing stored
}

// A field this server does not know, of `bytes` bytes, as a newer or hostile client could send.
void AddUnknownField(google::protobuf::Message* message, size_t bytes) {
  message->GetReflection()->MutableUnknownFields(message)->AddLengthDelimited(
      999, std::string(bytes, 'u'));
}

TEST_F(GrpcLimitsTest, UnknownFieldsAreNeverStored) {
  qnet::v1::SubmitJobRequest submit;
  submit.mutable_spec()->set_model("zoo:lenet5");
  submit.mutable_spec()->set_dataset("fashion-mnist");
  AddUnknownField(submit.mutable_spec(), 4 << 20);
  AddUnknownField(submit.mutable_spec()->mutable_training(), 1 << 20);
  qnet::v1::Job job;
  grpc::Status s = jobs_->SubmitJob(Ctx().get(), submit, &job);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_LT(job.ByteSizeLong(), 1024u);
  qnet::v1::ListJobsResponse list;
  ASSERT_TRUE(jobs_->ListJobs(Ctx().get(), {}, &list).ok());
  EXPECT_LT(list.ByteSizeLong(), 1024u);

  // What a worker reports is stored without them too.
  qnet::v1::AcquireLeaseRequest acquire;
  acquire.set_worker_id("w");
  qnet::v1::AcquireLeaseResponse lease;
  ASSERT_TRUE(workers_->AcquireLease(Ctx().get(), acquire, &lease).ok());
  qnet::v1::HeartbeatRequest beat;
  beat.set_job_id(job.id());
  beat.set_lease_token(lease.lease_token());
  AddUnknownField(beat.mutable_progress(), 1 << 20);
  qnet::v1::HeartbeatResponse beat_resp;
  s = workers_->Heartbeat(Ctx().get(), beat, &beat_resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  qnet::v1::CompleteLeaseRequest complete;
  complete.set_job_id(job.id());
  complete.set_lease_token(lease.lease_token());
  complete.mutable_metrics()->set_quantized_top1(0.5);
  AddUnknownField(complete.mutable_metrics(), 1 << 20);
  AddUnknownField(complete.mutable_metrics()->mutable_effective_spec(), 1 << 20);
  qnet::v1::CompleteLeaseResponse complete_resp;
  s = workers_->CompleteLease(Ctx().get(), complete, &complete_resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  qnet::v1::GetJobRequest get;
  get.set_id(job.id());
  ASSERT_TRUE(jobs_->GetJob(Ctx().get(), get, &job).ok());
  EXPECT_EQ(job.state(), qnet::v1::SUCCEEDED);
  EXPECT_DOUBLE_EQ(job.metrics().quantized_top1(), 0.5);
  EXPECT_LT(job.ByteSizeLong(), 1024u);
}

TEST_F(GrpcLimitsTest, WorkerReportsAreBoundedBeforeTheyAreStored) {
  const auto [job_id, token] = LeasedJob();
  qnet::v1::HeartbeatRequest beat;
  beat.set_job_id(job_id);
  beat.set_lease_token(token);
  beat.mutable_progress()->set_phase(std::string(10000, 'p'));
  qnet::v1::HeartbeatResponse beat_resp;
  grpc::Status s = workers_->Heartbeat(Ctx().get(), beat, &beat_resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("progress is 10003 bytes; at most 4096"));

  qnet::v1::CompleteLeaseRequest complete;
  complete.set_job_id(job_id);
  complete.set_lease_token(token);
  for (int i = 0; i < 1000; ++i)
    complete.mutable_metrics()->add_class_names(std::string(1000, 'c'));
  qnet::v1::CompleteLeaseResponse complete_resp;
  s = workers_->CompleteLease(Ctx().get(), complete, &complete_resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("bytes; at most 524288 bytes are accepted"));

  complete.clear_metrics();
  for (int i = 0; i < 17; ++i) complete.add_artifacts()->set_kind("onnx");
  s = workers_->CompleteLease(Ctx().get(), complete, &complete_resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("17 artifacts; at most 16"));

  qnet::v1::GetJobRequest get;
  get.set_id(job_id);
  qnet::v1::Job job;
  ASSERT_TRUE(jobs_->GetJob(Ctx().get(), get, &job).ok());
  EXPECT_EQ(job.state(), qnet::v1::RUNNING);  // nothing of it was stored
  EXPECT_TRUE(job.progress().phase().empty());
}

TEST_F(GrpcLimitsTest, StalledUploadIsCancelledAndLeavesNoTempFile) {
  auto blobs = qnet::v1::BlobService::NewStub(channel_);
  auto ctx = Ctx(absl::Seconds(30));
  qnet::v1::UploadResponse response;
  auto writer = blobs->Upload(ctx.get(), &response);
  qnet::v1::UploadRequest header;
  header.mutable_header()->set_size_bytes(1000);
  header.mutable_header()->set_kind("model");
  ASSERT_TRUE(writer->Write(header));
  qnet::v1::UploadRequest chunk;
  chunk.set_chunk(std::string(100, 'x'));
  ASSERT_TRUE(writer->Write(chunk));
  ASSERT_TRUE(testing::WaitFor([&] { return testing::CountFiles(dir_ / "data/blobs/tmp") == 1; }));
  // Then nothing: the server gives up after --upload-idle-seconds (1 s here), not the client's
  // 30 s deadline.
  const absl::Time start = absl::Now();
  const grpc::Status status = writer->Finish();
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  EXPECT_FALSE(status.ok());
  EXPECT_TRUE(testing::WaitFor([&] { return testing::CountFiles(dir_ / "data/blobs/tmp") == 0; }));
}

TEST_F(GrpcLimitsTest, StreamsPerConnectionAreCapped) {
  // A long-poll holds the connection's only stream; a second call on it waits its turn.
  std::thread poll([&] {
    qnet::v1::AcquireLeaseRequest acquire;
    acquire.set_worker_id("w");
    acquire.set_wait_seconds(3);
    qnet::v1::AcquireLeaseResponse lease;
    EXPECT_TRUE(workers_->AcquireLease(Ctx().get(), acquire, &lease).ok());
  });
  ASSERT_TRUE(testing::WaitFor([&] { return server_->scheduler().Stats().workers_idle == 1; }));
  qnet::v1::GetJobRequest get;
  get.set_id("j-none");
  qnet::v1::Job job;
  EXPECT_EQ(jobs_->GetJob(Ctx(absl::Milliseconds(500)).get(), get, &job).error_code(),
            grpc::StatusCode::DEADLINE_EXCEEDED);
  poll.join();
  EXPECT_EQ(jobs_->GetJob(Ctx().get(), get, &job).error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(GrpcLimitsTest, HealthzFollowsTheGrpcHealthService) {
  EXPECT_TRUE(GrpcHealthProbe(server_->grpc_address()).Check().ok());
  EXPECT_EQ(testing::HttpGet(server_->http_address(), "/healthz").status, 200);
  // Nothing listens there: the probe reports it rather than hanging.
  const absl::Status dead = GrpcHealthProbe("127.0.0.1:1", absl::Milliseconds(500)).Check();
  EXPECT_EQ(dead.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(dead.message(), HasSubstr("127.0.0.1:1"));
  server_->Shutdown(absl::Seconds(1));
  EXPECT_EQ(GrpcHealthProbe(server_->grpc_address(), absl::Milliseconds(500)).Check().code(),
            absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace qnet::server
