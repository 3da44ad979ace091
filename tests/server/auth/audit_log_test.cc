// The audit log: every method of the method table is classified; a line is one JSON object with
// the identity, method, job and outcome and no token; a failing write is counted in /metrics and
// does not fail the call; and through an in-process qnetd with a tokens file, the calls that
// change state (and only those) leave their lines, refused ones too. Calls refused before any
// handler (no identity, wrong role) are logged on every method, once per key and window, with
// their repeats in one summary line, so a flood of refusals adds a bounded number of lines.
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "qnet/v1/job.grpc.pb.h"
#include "qnet/v1/worker.grpc.pb.h"
#include "server/app/qnet_server_impl.h"
#include "server/auth/audit_log.h"
#include "server/auth/method_table.h"
#include "server/auth/token_table.h"
#include "tests/server/test_server.h"
#include "tests/server/test_util.h"

namespace qnet::server {
namespace {

using ::testing::HasSubstr;

std::vector<nlohmann::json> Lines(const std::string& path) {
  std::vector<nlohmann::json> lines;
  for (absl::string_view line : absl::StrSplit(testing::ReadFile(path), '\n', absl::SkipEmpty())) {
    lines.push_back(nlohmann::json::parse(line));
  }
  return lines;
}

TEST(AuditTableTest, ClassifiesEveryMethodOfTheMethodTable) {
  for (const auto& [method, roles] : MethodTable()) {
    bool listed = false;
    for (const auto& [name, when] : AuditTable()) listed = listed || name == method;
    EXPECT_TRUE(listed) << method << " changes state or not: say so in AuditTable()";
  }
  EXPECT_EQ(AuditTable().size(), MethodTable().size());
  EXPECT_EQ(AuditWhenOf("/qnet.v1.JobService/SubmitJob"), AuditWhen::kAlways);
  EXPECT_EQ(AuditWhenOf("/qnet.v1.JobService/GetJob"), AuditWhen::kNever);
}

TEST(AuditLineTest, OneJsonObjectPerLine) {
  AuditEntry entry{absl::FromUnixMillis(1800000000123), Identity{"alice", Role::kClient},
                   "/qnet.v1.JobService/CancelJob", "j-1",
                   absl::NotFoundError("job j-1 not found\nsecond line")};
  const std::string line = AuditLine(entry);
  ASSERT_EQ(line.back(), '\n');
  EXPECT_EQ(line.find('\n'), line.size() - 1);  // the message's newline is escaped
  const nlohmann::json j = nlohmann::json::parse(line);
  EXPECT_EQ(j["time"], "2027-01-15T08:00:00.123Z");
  EXPECT_EQ(j["identity"], "alice");
  EXPECT_EQ(j["role"], "client");
  EXPECT_EQ(j["method"], "/qnet.v1.JobService/CancelJob");
  EXPECT_EQ(j["job_id"], "j-1");
  EXPECT_EQ(j["code"], "NOT_FOUND");
  EXPECT_EQ(j["message"], "job j-1 not found\nsecond line");

  entry.who.reset();
  entry.job_id.clear();
  const nlohmann::json anonymous = nlohmann::json::parse(AuditLine(entry));
  EXPECT_TRUE(anonymous["identity"].is_null());
  EXPECT_TRUE(anonymous["job_id"].is_null());
}

TEST(AuditLogTest, AFailingWriteIsCountedAndLogged) {
  MetricsRegistry metrics("9.9.9");
  // Every write to /dev/full fails with ENOSPC.
  absl::StatusOr<std::unique_ptr<AuditLog>> audit = AuditLog::Open("/dev/full", &metrics);
  ASSERT_TRUE(audit.ok()) << audit.status();
  AuditEntry entry{absl::Now(), std::nullopt, "/qnet.v1.JobService/SubmitJob", "",
                   absl::OkStatus()};
  (*audit)->Write(entry);
  (*audit)->Write(entry);
  EXPECT_EQ((*audit)->write_failures(), 2);
  EXPECT_THAT(metrics.Serialize(), HasSubstr("qnet_audit_write_failures_total 2"));
}

TEST(AuditLogTest, OpenNamesTheFileItCannotOpen) {
  absl::StatusOr<std::unique_ptr<AuditLog>> audit =
      AuditLog::Open("/nonexistent-dir/audit.log", nullptr);
  ASSERT_FALSE(audit.ok());
  EXPECT_THAT(audit.status().message(), HasSubstr("--audit-log"));
  EXPECT_THAT(audit.status().message(), HasSubstr("/nonexistent-dir/audit.log"));
}

TEST(AuditLogTest, ANewCheckpointIsNewsOnce) {
  absl::StatusOr<std::unique_ptr<AuditLog>> audit = AuditLog::Open("/dev/null", nullptr);
  ASSERT_TRUE(audit.ok());
  EXPECT_TRUE((*audit)->NewCheckpoint("j-1", "sha256:a"));
  EXPECT_FALSE((*audit)->NewCheckpoint("j-1", "sha256:a"));
  EXPECT_TRUE((*audit)->NewCheckpoint("j-1", "sha256:b"));
  (*audit)->ForgetJob("j-1");
  EXPECT_TRUE((*audit)->NewCheckpoint("j-1", "sha256:b"));
}

AuditEntry Refusal(absl::Time time, std::optional<Identity> who, std::string method,
                   absl::Status outcome) {
  return AuditEntry{time, std::move(who), std::move(method), "", std::move(outcome)};
}

TEST(AuditLogTest, RefusalsGetALineEachOncePerWindowAndRepeatsASummary) {
  testing::TempDir dir;
  const std::string path = dir / "audit.log";
  absl::StatusOr<std::unique_ptr<AuditLog>> audit = AuditLog::Open(path, nullptr);
  ASSERT_TRUE(audit.ok()) << audit.status();
  const absl::Time t0 = absl::Now();
  const absl::Status unknown = absl::UnauthenticatedError("unknown token");
  for (int i = 0; i < 5; ++i) {
    // Only the first has a line of its own (and one in the server log).
    EXPECT_EQ((*audit)->Refused(Refusal(t0 + absl::Seconds(i), std::nullopt,
                                        "/qnet.v1.JobService/SubmitJob", unknown)),
              i == 0);
  }
  (*audit)->Refused(Refusal(t0, Identity{"w1", Role::kWorker}, "/qnet.v1.JobService/GetJob",
                            absl::PermissionDeniedError("w1 (worker) may not call GetJob")));
  ASSERT_EQ(Lines(path).size(), 2u);
  (*audit)->FlushRefusals(t0 + absl::Seconds(59));  // the window is still open
  ASSERT_EQ(Lines(path).size(), 2u);

  (*audit)->FlushRefusals(t0 + AuditLog::kRefusalWindow);
  std::vector<nlohmann::json> lines = Lines(path);
  ASSERT_EQ(lines.size(), 3u) << testing::ReadFile(path);
  EXPECT_TRUE(lines[0]["identity"].is_null());
  EXPECT_EQ(lines[0]["method"], "/qnet.v1.JobService/SubmitJob");
  EXPECT_EQ(lines[0]["code"], "UNAUTHENTICATED");
  EXPECT_FALSE(lines[0].contains("repeats"));
  EXPECT_EQ(lines[1]["identity"], "w1");
  EXPECT_EQ(lines[1]["code"], "PERMISSION_DENIED");
  // Only the key with repeats has a summary.
  EXPECT_TRUE(lines[2]["identity"].is_null());
  EXPECT_EQ(lines[2]["method"], "/qnet.v1.JobService/SubmitJob");
  EXPECT_EQ(lines[2]["code"], "UNAUTHENTICATED");
  EXPECT_EQ(lines[2]["repeats"], 4);
  EXPECT_THAT(lines[2]["message"].get<std::string>(),
              HasSubstr("4 more call(s) refused like this since"));

  // A new window: the next refusal has its own line again.
  (*audit)->Refused(
      Refusal(t0 + absl::Seconds(70), std::nullopt, "/qnet.v1.JobService/SubmitJob", unknown));
  EXPECT_EQ(Lines(path).size(), 4u);
}

TEST(AuditLogTest, AFloodOfRefusalsAddsABoundedNumberOfLines) {
  testing::TempDir dir;
  const std::string path = dir / "audit.log";
  MetricsRegistry metrics("9.9.9");
  absl::StatusOr<std::unique_ptr<AuditLog>> audit = AuditLog::Open(path, &metrics);
  ASSERT_TRUE(audit.ok()) << audit.status();
  const absl::Time t0 = absl::Now();
  constexpr int kCalls = 1000;
  for (int i = 0; i < kCalls; ++i) {
    // A different made-up method each time: every one a new key.
    (*audit)->Refused(Refusal(t0, std::nullopt, absl::StrCat("/x.Y/Z", i),
                              absl::PermissionDeniedError("not in qnetd's method table")));
  }
  // The first kRefusalKeysPerWindow, and the first of the rest (counted under "*").
  ASSERT_EQ(Lines(path).size(), AuditLog::kRefusalKeysPerWindow + 1);
  audit->reset();  // shutting down writes what is pending
  const std::vector<nlohmann::json> lines = Lines(path);
  ASSERT_EQ(lines.size(), AuditLog::kRefusalKeysPerWindow + 2);
  const nlohmann::json& summary = lines.back();
  EXPECT_EQ(summary["method"], "*");
  EXPECT_EQ(summary["code"], "PERMISSION_DENIED");
  EXPECT_EQ(summary["repeats"], kCalls - AuditLog::kRefusalKeysPerWindow - 1);
  EXPECT_THAT(summary["message"].get<std::string>(), HasSubstr("beyond the first 64"));
  EXPECT_THAT(metrics.Serialize(), HasSubstr("qnet_audit_refusals_total 1000"));
}

class AuditedServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tokens_ = testing::WriteTokensFile(
        dir_ / "tokens", {{"alice", Role::kClient}, {"bob", Role::kClient}, {"w1", Role::kWorker}});
    QnetServerOptions options = testing::LoopbackServerOptions(dir_, /*http=*/true);
    options.auth_tokens_path = dir_ / "tokens";
    options.audit_log_path = dir_ / "audit.log";
    auto server = QnetServerImpl::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    auto channel = grpc::CreateChannel(server_->grpc_address(), grpc::InsecureChannelCredentials());
    jobs_ = v1::JobService::NewStub(channel);
    workers_ = v1::WorkerService::NewStub(channel);
  }

  std::unique_ptr<grpc::ClientContext> As(const std::string& name) {
    auto context = std::make_unique<grpc::ClientContext>();
    testing::Authorize(*context, tokens_[name]);
    return context;
  }

  v1::Job Submit(const std::string& name) {
    v1::SubmitJobRequest request;
    request.mutable_spec()->set_model("zoo:lenet5");
    request.mutable_spec()->set_dataset("fashion-mnist");
    request.mutable_spec()->set_weight_bits(2);
    v1::Job job;
    grpc::Status s = jobs_->SubmitJob(As(name).get(), request, &job);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return job;
  }

  testing::TempDir dir_;
  std::map<std::string, std::string> tokens_;
  std::unique_ptr<QnetServerImpl> server_;
  std::unique_ptr<v1::JobService::Stub> jobs_;
  std::unique_ptr<v1::WorkerService::Stub> workers_;
};

TEST_F(AuditedServerTest, StateChangingCallsLeaveOneLineEachReadsNone) {
  const v1::Job first = Submit("alice");
  v1::Job got;
  v1::GetJobRequest get;
  get.set_id(first.id());
  ASSERT_TRUE(jobs_->GetJob(As("alice").get(), get, &got).ok());  // a read: no line
  v1::CancelJobRequest cancel;
  cancel.set_id(first.id());
  v1::Job cancelled;
  EXPECT_EQ(jobs_->CancelJob(As("bob").get(), cancel, &cancelled).error_code(),
            grpc::StatusCode::NOT_FOUND);
  ASSERT_TRUE(jobs_->CancelJob(As("alice").get(), cancel, &cancelled).ok());

  // A long-poll that finds nothing changes nothing; one that hands out a job does.
  v1::AcquireLeaseRequest acquire;
  acquire.set_worker_id("w1");
  acquire.set_wait_seconds(0);
  v1::AcquireLeaseResponse empty;
  ASSERT_TRUE(workers_->AcquireLease(As("w1").get(), acquire, &empty).ok());
  ASSERT_FALSE(empty.has_job());
  const v1::Job second = Submit("alice");
  v1::AcquireLeaseResponse lease;
  ASSERT_TRUE(workers_->AcquireLease(As("w1").get(), acquire, &lease).ok());
  ASSERT_EQ(lease.job().id(), second.id());
  v1::FailLeaseRequest fail;
  fail.set_job_id(second.id());
  fail.set_lease_token(lease.lease_token());
  fail.set_error("out of memory");
  v1::FailLeaseResponse failed;
  ASSERT_TRUE(workers_->FailLease(As("w1").get(), fail, &failed).ok());

  const std::string path = dir_ / "audit.log";
  ASSERT_TRUE(testing::WaitFor([&] { return Lines(path).size() >= 6; }));
  const std::vector<nlohmann::json> lines = Lines(path);
  ASSERT_EQ(lines.size(), 6u) << testing::ReadFile(path);
  struct Expected {
    const char* identity;
    const char* role;
    const char* method;
    std::string job;
    const char* code;
  };
  const std::vector<Expected> expected = {
      {"alice", "client", "/qnet.v1.JobService/SubmitJob", first.id(), "OK"},
      {"bob", "client", "/qnet.v1.JobService/CancelJob", first.id(), "NOT_FOUND"},
      {"alice", "client", "/qnet.v1.JobService/CancelJob", first.id(), "OK"},
      {"alice", "client", "/qnet.v1.JobService/SubmitJob", second.id(), "OK"},
      {"w1", "worker", "/qnet.v1.WorkerService/AcquireLease", second.id(), "OK"},
      {"w1", "worker", "/qnet.v1.WorkerService/FailLease", second.id(), "OK"},
  };
  for (size_t i = 0; i < expected.size(); ++i) {
    SCOPED_TRACE(lines[i].dump());
    EXPECT_EQ(lines[i]["identity"], expected[i].identity);
    EXPECT_EQ(lines[i]["role"], expected[i].role);
    EXPECT_EQ(lines[i]["method"], expected[i].method);
    EXPECT_EQ(lines[i]["job_id"], expected[i].job);
    EXPECT_EQ(lines[i]["code"], expected[i].code);
    EXPECT_TRUE(lines[i]["time"].is_string());
  }
  EXPECT_THAT(lines[1]["message"], HasSubstr("not found"));
  const std::string text = testing::ReadFile(path);
  for (const auto& [name, token] : tokens_) EXPECT_THAT(text, ::testing::Not(HasSubstr(token)));
  EXPECT_THAT(text, ::testing::Not(HasSubstr(lease.lease_token())));
}

TEST_F(AuditedServerTest, CallsRefusedBeforeAnyHandlerAreLoggedWithTheirRepeats) {
  const std::string stranger = NewToken();
  tokens_["stranger"] = stranger;  // As("stranger") presents a token the file does not list
  v1::SubmitJobRequest submit;
  v1::Job job;
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(jobs_->SubmitJob(As("stranger").get(), submit, &job).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
  }
  v1::GetJobRequest get;
  get.set_id("j-1");
  EXPECT_EQ(jobs_->GetJob(As("stranger").get(), get, &job).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(jobs_->SubmitJob(As("w1").get(), submit, &job).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);

  const std::string path = dir_ / "audit.log";
  ASSERT_TRUE(testing::WaitFor([&] { return Lines(path).size() >= 3; }));
  server_.reset();  // ends the refusal window: its summary is written
  const std::vector<nlohmann::json> lines = Lines(path);
  ASSERT_EQ(lines.size(), 4u) << testing::ReadFile(path);
  EXPECT_TRUE(lines[0]["identity"].is_null());
  EXPECT_EQ(lines[0]["method"], "/qnet.v1.JobService/SubmitJob");
  EXPECT_EQ(lines[0]["code"], "UNAUTHENTICATED");
  EXPECT_TRUE(lines[1]["identity"].is_null());
  EXPECT_EQ(lines[1]["method"], "/qnet.v1.JobService/GetJob");  // reads too
  EXPECT_EQ(lines[2]["identity"], "w1");
  EXPECT_EQ(lines[2]["role"], "worker");
  EXPECT_EQ(lines[2]["method"], "/qnet.v1.JobService/SubmitJob");
  EXPECT_EQ(lines[2]["code"], "PERMISSION_DENIED");
  EXPECT_TRUE(lines[3]["identity"].is_null());
  EXPECT_EQ(lines[3]["method"], "/qnet.v1.JobService/SubmitJob");
  EXPECT_EQ(lines[3]["repeats"], 2);
  EXPECT_THAT(testing::ReadFile(path), ::testing::Not(HasSubstr(stranger)));
}

}  // namespace
}  // namespace qnet::server
