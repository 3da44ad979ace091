// qnetd in-process with a tokens file: every RPC of the method table called by every role (and
// by nobody) gets through or is refused with the right code before any handler runs; qnetd
// refuses to serve a network address without authentication; a reload changes who gets in.
#include <cstdlib>

#include <grpcpp/create_channel.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/security/credentials.h>

#include "absl/strings/match.h"
#include "absl/strings/str_replace.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "qnet/v1/blob.grpc.pb.h"
#include "qnet/v1/job.grpc.pb.h"
#include "qnet/v1/worker.grpc.pb.h"
#include "server/app/qnet_server_impl.h"
#include "server/auth/method_table.h"
#include "server/auth/token_table.h"
#include "tests/server/test_util.h"

namespace qnet::server {
namespace {

using ::testing::HasSubstr;

// Calls `method` with one empty request message, whatever its streaming shape; only the status
// matters.
grpc::Status CallRaw(const std::shared_ptr<grpc::Channel>& channel, const std::string& method,
                     const std::string& token) {
  grpc::GenericStub stub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(1));
  if (!token.empty()) context.AddMetadata("authorization", "Bearer " + token);
  grpc::CompletionQueue cq;
  std::unique_ptr<grpc::GenericClientAsyncReaderWriter> call =
      stub.PrepareCall(&context, method, &cq);
  void* tag = nullptr;
  bool ok = false;
  call->StartCall(reinterpret_cast<void*>(1));
  cq.Next(&tag, &ok);
  grpc::ByteBuffer empty;
  grpc::Slice nothing("");
  empty = grpc::ByteBuffer(&nothing, 1);
  call->Write(empty, reinterpret_cast<void*>(2));
  cq.Next(&tag, &ok);
  call->WritesDone(reinterpret_cast<void*>(3));
  cq.Next(&tag, &ok);
  // The status comes only after every reply message is read.
  grpc::ByteBuffer reply;
  do {
    call->Read(&reply, reinterpret_cast<void*>(5));
  } while (cq.Next(&tag, &ok) && ok);
  grpc::Status status;
  call->Finish(&status, reinterpret_cast<void*>(4));
  while (cq.Next(&tag, &ok) && tag != reinterpret_cast<void*>(4)) {
  }
  return status;
}

class GrpcAuthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::MakeFakeIdxDataset(dir_ / "fmnist");
    for (const auto& [name, role] :
         std::vector<std::pair<std::string, Role>>{{"alice", Role::kClient},
                                                   {"w1", Role::kWorker},
                                                   {"root", Role::kAdmin},
                                                   {"prom", Role::kMetrics}}) {
      tokens_[role] = NewToken();
      lines_ += name + " " + std::string(RoleName(role)) + " " + TokenHash(tokens_[role]) + "\n";
    }
    // A second client and a second worker, for the attacks.
    bob_ = NewToken();
    w2_ = NewToken();
    lines_ += "bob client " + TokenHash(bob_) + "\nw2 worker " + TokenHash(w2_) + "\n";
    testing::WriteFile(dir_ / "tokens", lines_);
    QnetServerOptions options = Options();
    options.auth_tokens_path = dir_ / "tokens";
    absl::StatusOr<std::unique_ptr<QnetServerImpl>> server = QnetServerImpl::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    channel_ = grpc::CreateChannel(server_->grpc_address(), grpc::InsecureChannelCredentials());
  }

  QnetServerOptions Options() {
    QnetServerOptions options;
    options.listen = "127.0.0.1:0";
    options.http_listen = "127.0.0.1:0";
    options.data_dir = dir_ / "data";
    options.default_dataset_dir = dir_ / "fmnist";
    return options;
  }

  testing::TempDir dir_;
  std::map<Role, std::string> tokens_;
  std::string bob_, w2_;
  std::string lines_;
  std::unique_ptr<QnetServerImpl> server_;
  std::shared_ptr<grpc::Channel> channel_;
};

// Who may call what, written out independently of server/auth/method_table.cc: "*" is anyone,
// even without an identity; otherwise the roles allowed.
const std::map<std::string, std::string>& ExpectedAccess() {
  static const auto* const access = new std::map<std::string, std::string>{
      {"/qnet.v1.JobService/SubmitJob", "client admin"},
      {"/qnet.v1.JobService/GetJob", "client admin"},
      {"/qnet.v1.JobService/ListJobs", "client admin"},
      {"/qnet.v1.JobService/WatchJob", "client admin"},
      {"/qnet.v1.JobService/CancelJob", "client admin"},
      {"/qnet.v1.JobService/DeleteJob", "client admin"},
      {"/qnet.v1.JobService/ListDatasets", "client admin"},
      {"/qnet.v1.JobService/CreateDataset", "client admin"},
      {"/qnet.v1.JobService/ListModels", "client admin"},
      {"/qnet.v1.JobService/GetCapabilities", "client worker admin"},
      {"/qnet.v1.BlobService/Upload", "client worker admin"},
      {"/qnet.v1.BlobService/Download", "client worker admin"},
      {"/qnet.v1.BlobService/StatBlob", "client worker admin"},
      {"/qnet.v1.BlobService/GetUploadOffset", "client worker admin"},
      {"/qnet.v1.WorkerService/AcquireLease", "worker admin"},
      {"/qnet.v1.WorkerService/Heartbeat", "worker admin"},
      {"/qnet.v1.WorkerService/CompleteLease", "worker admin"},
      {"/qnet.v1.WorkerService/FailLease", "worker admin"},
      {"/grpc.health.v1.Health/Check", "*"},
      {"/grpc.health.v1.Health/Watch", "*"},
      {"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", "client worker admin"},
  };
  return *access;
}

TEST_F(GrpcAuthTest, EveryMethodTimesEveryRole) {
  ASSERT_EQ(MethodTable().size(), ExpectedAccess().size());
  for (const auto& [method, access] : ExpectedAccess()) {
    const bool open = access == "*";
    const grpc::Status anonymous = CallRaw(channel_, method, "");
    if (open) {
      EXPECT_NE(anonymous.error_code(), grpc::StatusCode::UNAUTHENTICATED) << method;
    } else {
      EXPECT_EQ(anonymous.error_code(), grpc::StatusCode::UNAUTHENTICATED) << method;
      EXPECT_THAT(anonymous.error_message(), HasSubstr("QNET_TOKEN")) << method;
      EXPECT_EQ(CallRaw(channel_, method, NewToken()).error_code(),
                grpc::StatusCode::UNAUTHENTICATED)
          << method;
    }
    for (const auto& [role, token] : tokens_) {  // one identity of each role
      const grpc::Status s = CallRaw(channel_, method, token);
      if (open || absl::StrContains(access, RoleName(role))) {
        EXPECT_NE(s.error_code(), grpc::StatusCode::UNAUTHENTICATED) << method << " " << token;
        EXPECT_NE(s.error_code(), grpc::StatusCode::PERMISSION_DENIED)
            << method << " as " << RoleName(role) << ": " << s.error_message();
      } else {
        EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED)
            << method << " as " << RoleName(role);
        EXPECT_THAT(s.error_message(), HasSubstr("may not call " + method));
      }
    }
  }
  // A method outside the table is refused even to admins.
  EXPECT_EQ(CallRaw(channel_, "/qnet.v1.JobService/Nope", tokens_[Role::kAdmin]).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
}

TEST_F(GrpcAuthTest, ReloadChangesWhoGetsIn) {
  auto jobs = qnet::v1::JobService::NewStub(channel_);
  auto list = [&](const std::string& token) {
    grpc::ClientContext context;
    context.AddMetadata("authorization", "Bearer " + token);
    qnet::v1::ListJobsResponse response;
    return jobs->ListJobs(&context, {}, &response).error_code();
  };
  const std::string carol = NewToken();
  EXPECT_EQ(list(carol), grpc::StatusCode::UNAUTHENTICATED);
  testing::WriteFile(dir_ / "tokens", "carol client " + TokenHash(carol) + "\n");
  ASSERT_TRUE(server_->ReloadAuthTokens().ok());
  EXPECT_EQ(list(carol), grpc::StatusCode::OK);
  EXPECT_EQ(list(tokens_[Role::kClient]), grpc::StatusCode::UNAUTHENTICATED);  // alice is gone
  testing::WriteFile(dir_ / "tokens", "carol client sha256:nothex\n");
  EXPECT_FALSE(server_->ReloadAuthTokens().ok());
  EXPECT_EQ(list(carol), grpc::StatusCode::OK);  // a bad file changes nothing
}

TEST_F(GrpcAuthTest, NetworkAddressesNeedAuthentication) {
  server_->Shutdown(absl::ZeroDuration());
  QnetServerOptions options = Options();
  options.listen = "0.0.0.0:0";
  absl::StatusOr<std::unique_ptr<QnetServerImpl>> refused = QnetServerImpl::Start(options);
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(refused.status().message(), HasSubstr("refusing to listen on 0.0.0.0:0"));
  EXPECT_THAT(refused.status().message(), HasSubstr("--auth-tokens"));
  options.listen = "127.0.0.1:0";
  options.http_listen = "0.0.0.0:0";
  EXPECT_FALSE(QnetServerImpl::Start(options).ok());
  // Tokens in clear text over a network: refused too.
  options.http_listen = "127.0.0.1:0";
  options.listen = "0.0.0.0:0";
  options.auth_tokens_path = dir_ / "tokens";
  refused = QnetServerImpl::Start(options);
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(refused.status().message(), HasSubstr("--tls-cert"));
  // Explicitly open: serves, everyone is admin.
  options.auth_tokens_path.clear();
  options.insecure_no_auth = true;
  absl::StatusOr<std::unique_ptr<QnetServerImpl>> open = QnetServerImpl::Start(options);
  ASSERT_TRUE(open.ok()) << open.status();
  (*open)->Shutdown(absl::ZeroDuration());
}

std::unique_ptr<grpc::ClientContext> As(const std::string& token) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  if (!token.empty()) context->AddMetadata("authorization", "Bearer " + token);
  return context;
}

class OwnershipTest : public GrpcAuthTest {
 protected:
  void SetUp() override {
    GrpcAuthTest::SetUp();
    jobs_ = qnet::v1::JobService::NewStub(channel_);
    blobs_ = qnet::v1::BlobService::NewStub(channel_);
    workers_ = qnet::v1::WorkerService::NewStub(channel_);
    alice_ = tokens_[Role::kClient];
    w1_ = tokens_[Role::kWorker];
  }

  grpc::Status Upload(const std::string& token, const std::string& data, std::string* digest,
                      const std::string& job_id = "") {
    qnet::v1::UploadResponse response;
    auto context = As(token);
    auto writer = blobs_->Upload(context.get(), &response);
    qnet::v1::UploadRequest header;
    header.mutable_header()->set_size_bytes(static_cast<int64_t>(data.size()));
    header.mutable_header()->set_kind("artifact");
    header.mutable_header()->set_job_id(job_id);
    writer->Write(header);
    qnet::v1::UploadRequest chunk;
    chunk.set_chunk(data);
    writer->Write(chunk);
    writer->WritesDone();
    grpc::Status status = writer->Finish();
    *digest = response.digest();
    return status;
  }

  grpc::StatusCode Download(const std::string& token, const std::string& digest) {
    qnet::v1::DownloadRequest request;
    request.set_digest(digest);
    auto context = As(token);
    auto reader = blobs_->Download(context.get(), request);
    qnet::v1::DownloadChunk chunk;
    while (reader->Read(&chunk)) {
    }
    return reader->Finish().error_code();
  }

  grpc::StatusCode Stat(const std::string& token, const std::string& digest) {
    qnet::v1::StatBlobRequest request;
    request.set_digest(digest);
    qnet::v1::StatBlobResponse response;
    return blobs_->StatBlob(As(token).get(), request, &response).error_code();
  }

  qnet::v1::Job Submit(const std::string& token, const std::string& request_id,
                       grpc::StatusCode expected = grpc::StatusCode::OK) {
    qnet::v1::SubmitJobRequest request;
    request.mutable_spec()->set_model("zoo:lenet5");
    request.mutable_spec()->set_dataset("fashion-mnist");
    request.set_request_id(request_id);
    qnet::v1::Job job;
    EXPECT_EQ(jobs_->SubmitJob(As(token).get(), request, &job).error_code(), expected);
    return job;
  }

  std::vector<std::string> ListedIds(const std::string& token) {
    qnet::v1::ListJobsRequest request;
    request.set_page_size(1);  // pages over other owners' jobs
    std::vector<std::string> ids;
    do {
      qnet::v1::ListJobsResponse response;
      EXPECT_TRUE(jobs_->ListJobs(As(token).get(), request, &response).ok());
      for (const qnet::v1::Job& job : response.jobs()) ids.push_back(job.id());
      request.set_page_token(response.next_page_token());
    } while (!request.page_token().empty());
    return ids;
  }

  std::unique_ptr<qnet::v1::JobService::Stub> jobs_;
  std::unique_ptr<qnet::v1::BlobService::Stub> blobs_;
  std::unique_ptr<qnet::v1::WorkerService::Stub> workers_;
  std::string alice_, w1_;
};

TEST_F(OwnershipTest, ClientsSeeOnlyTheirOwnJobs) {
  const qnet::v1::Job job = Submit(alice_, "alice-1");
  EXPECT_EQ(job.owner(), "alice");
  const qnet::v1::Job bobs = Submit(bob_, "bob-1");
  Submit(bob_, "alice-1", grpc::StatusCode::ALREADY_EXISTS);  // another owner's request id

  qnet::v1::GetJobRequest get;
  get.set_id(job.id());
  qnet::v1::Job seen;
  const grpc::Status hidden = jobs_->GetJob(As(bob_).get(), get, &seen);
  EXPECT_EQ(hidden.error_code(), grpc::StatusCode::NOT_FOUND);
  get.set_id("j-0000000000000000");
  // The same answer as for a job that does not exist: ids do not leak.
  EXPECT_EQ(jobs_->GetJob(As(bob_).get(), get, &seen).error_message(),
            absl::StrReplaceAll(hidden.error_message(), {{job.id(), "j-0000000000000000"}}));
  qnet::v1::CancelJobRequest cancel;
  cancel.set_id(job.id());
  EXPECT_EQ(jobs_->CancelJob(As(bob_).get(), cancel, &seen).error_code(),
            grpc::StatusCode::NOT_FOUND);
  qnet::v1::WatchJobRequest watch;
  watch.set_id(job.id());
  auto context = As(bob_);
  auto reader = jobs_->WatchJob(context.get(), watch);
  EXPECT_FALSE(reader->Read(&seen));
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::NOT_FOUND);

  EXPECT_EQ(ListedIds(alice_), std::vector<std::string>{job.id()});
  EXPECT_EQ(ListedIds(bob_), std::vector<std::string>{bobs.id()});
  EXPECT_EQ(ListedIds(tokens_[Role::kAdmin]), (std::vector<std::string>{bobs.id(), job.id()}));
  get.set_id(job.id());
  EXPECT_TRUE(jobs_->GetJob(As(tokens_[Role::kAdmin]).get(), get, &seen).ok());
  EXPECT_TRUE(jobs_->CancelJob(As(alice_).get(), cancel, &seen).ok());
  EXPECT_EQ(seen.state(), qnet::v1::CANCELLED);

  // Blobs: another client's upload is invisible and cannot be submitted as a model.
  std::string alices_blob;
  ASSERT_TRUE(Upload(alice_, "alice's bytes", &alices_blob).ok());
  EXPECT_EQ(Stat(alice_, alices_blob), grpc::StatusCode::OK);
  EXPECT_EQ(Stat(bob_, alices_blob), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(Download(bob_, alices_blob), grpc::StatusCode::NOT_FOUND);
  qnet::v1::SubmitJobRequest theirs;
  theirs.mutable_spec()->set_model(alices_blob);
  theirs.mutable_spec()->set_dataset("fashion-mnist");
  EXPECT_EQ(jobs_->SubmitJob(As(bob_).get(), theirs, &seen).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

TEST_F(OwnershipTest, LeasesAreBoundToTheirWorker) {
  const qnet::v1::Job job = Submit(alice_, "");
  qnet::v1::AcquireLeaseRequest acquire;
  acquire.set_worker_id("node-1");
  qnet::v1::AcquireLeaseResponse lease;
  EXPECT_EQ(workers_->AcquireLease(As("").get(), acquire, &lease).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(workers_->AcquireLease(As(alice_).get(), acquire, &lease).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  ASSERT_TRUE(workers_->AcquireLease(As(w1_).get(), acquire, &lease).ok());
  ASSERT_EQ(lease.job().id(), job.id());
  EXPECT_EQ(lease.job().lease_holder(), "w1");

  // Another worker identity, even with the lease token, cannot report on the lease.
  qnet::v1::HeartbeatRequest hb;
  hb.set_job_id(job.id());
  hb.set_lease_token(lease.lease_token());
  qnet::v1::HeartbeatResponse hb_reply;
  EXPECT_EQ(workers_->Heartbeat(As(w2_).get(), hb, &hb_reply).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  qnet::v1::FailLeaseRequest fail;
  fail.set_job_id(job.id());
  fail.set_lease_token(lease.lease_token());
  qnet::v1::FailLeaseResponse fail_reply;
  EXPECT_EQ(workers_->FailLease(As(w2_).get(), fail, &fail_reply).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  qnet::v1::CompleteLeaseRequest complete;
  complete.set_job_id(job.id());
  complete.set_lease_token(lease.lease_token());
  qnet::v1::CompleteLeaseResponse complete_reply;
  EXPECT_EQ(workers_->CompleteLease(As(w2_).get(), complete, &complete_reply).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);

  // Checkpoints and artifacts must be the holder's own uploads for this job.
  std::string others, alices, w1s_checkpoint, w1s_artifact;
  ASSERT_TRUE(Upload(w2_, "w2's bytes", &others).ok());
  ASSERT_TRUE(Upload(alice_, "alice's bytes", &alices).ok());
  EXPECT_EQ(Upload(w2_, "x", &w1s_artifact, job.id()).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);  // w2 does not hold the job
  for (const std::string& digest : {others, alices}) {
    hb.set_checkpoint_digest(digest);
    const grpc::Status s = workers_->Heartbeat(As(w1_).get(), hb, &hb_reply);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
    EXPECT_THAT(s.error_message(), HasSubstr("was not uploaded by w1 for job " + job.id()));
    complete.clear_artifacts();
    qnet::v1::Artifact* a = complete.add_artifacts();
    a->set_kind("torchscript");
    a->set_digest(digest);
    EXPECT_EQ(workers_->CompleteLease(As(w1_).get(), complete, &complete_reply).error_code(),
              grpc::StatusCode::PERMISSION_DENIED);
  }
  ASSERT_TRUE(Upload(w1_, "checkpoint", &w1s_checkpoint, job.id()).ok());
  ASSERT_TRUE(Upload(w1_, "artifact", &w1s_artifact).ok());  // for every job w1 holds
  hb.set_checkpoint_digest(w1s_checkpoint);
  ASSERT_TRUE(workers_->Heartbeat(As(w1_).get(), hb, &hb_reply).ok());
  qnet::v1::GetJobRequest get;
  get.set_id(job.id());
  qnet::v1::Job seen;
  ASSERT_TRUE(jobs_->GetJob(As(alice_).get(), get, &seen).ok());
  EXPECT_EQ(seen.checkpoint_digest(), w1s_checkpoint);
  EXPECT_EQ(seen.checkpoint_attempt(), 1);

  // The holder reads its job's inputs; other workers and clients do not see its blobs.
  EXPECT_EQ(Download(w1_, w1s_checkpoint), grpc::StatusCode::OK);
  EXPECT_EQ(Download(w2_, w1s_checkpoint), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(Download(alice_, w1s_artifact), grpc::StatusCode::NOT_FOUND);

  complete.clear_artifacts();
  qnet::v1::Artifact* a = complete.add_artifacts();
  a->set_kind("torchscript");
  a->set_digest(w1s_artifact);
  ASSERT_TRUE(workers_->CompleteLease(As(w1_).get(), complete, &complete_reply).ok());
  // The owner downloads its job's artifact; nobody else does.
  EXPECT_EQ(Download(alice_, w1s_artifact), grpc::StatusCode::OK);
  EXPECT_EQ(Download(bob_, w1s_artifact), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(Stat(bob_, w1s_artifact), grpc::StatusCode::NOT_FOUND);
}

TEST_F(OwnershipTest, OnlyTheUploaderReplacesListsAndUsesADataset) {
  // Two small .npz datasets of different content.
  const std::string script =
      "import numpy as np, sys\n"
      "for i, path in enumerate(sys.argv[1:]):\n"
      "    x = np.full((8, 8, 8), i, np.uint8); y = np.arange(8) % 2\n"
      "    np.savez(path, x_train=x, y_train=y, x_test=x, y_test=y)\n";
  testing::WriteFile(dir_ / "make.py", script);
  ASSERT_EQ(
      std::system(
          ("python3 " + dir_ / "make.py" + " " + dir_ / "a.npz" + " " + dir_ / "b.npz").c_str()),
      0);
  std::string a, b_by_bob, b_by_alice;
  ASSERT_TRUE(Upload(alice_, testing::ReadFile(dir_ / "a.npz"), &a).ok());
  ASSERT_TRUE(Upload(bob_, testing::ReadFile(dir_ / "b.npz"), &b_by_bob).ok());
  const auto create = [&](const std::string& token, const std::string& digest) {
    qnet::v1::CreateDatasetRequest request;
    request.set_name("pets");
    request.set_digest(digest);
    request.set_replace(true);
    qnet::v1::Dataset dataset;
    auto context = As(token);
    context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    return jobs_->CreateDataset(context.get(), request, &dataset);
  };
  ASSERT_TRUE(create(alice_, a).ok()) << create(alice_, a).error_message();
  EXPECT_EQ(create(bob_, a).error_code(), grpc::StatusCode::NOT_FOUND);  // not bob's upload
  const grpc::Status taken = create(bob_, b_by_bob);
  EXPECT_EQ(taken.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_THAT(taken.error_message(), HasSubstr("taken by another identity"));
  ASSERT_TRUE(Upload(alice_, testing::ReadFile(dir_ / "b.npz"), &b_by_alice).ok());
  EXPECT_TRUE(create(alice_, b_by_alice).ok());

  // Alice's dataset is hers: bob neither lists it nor names it in a job.
  const auto listed = [&](const std::string& token) {
    qnet::v1::ListDatasetsResponse response;
    EXPECT_TRUE(jobs_->ListDatasets(As(token).get(), {}, &response).ok());
    std::vector<std::string> names;
    for (const qnet::v1::Dataset& d : response.datasets()) names.push_back(d.name());
    return names;
  };
  EXPECT_THAT(listed(alice_), ::testing::Contains("pets"));
  EXPECT_THAT(listed(bob_), ::testing::Not(::testing::Contains("pets")));
  qnet::v1::SubmitJobRequest submit;
  submit.mutable_spec()->set_model("zoo:lenet5");
  submit.mutable_spec()->set_dataset("pets");
  submit.mutable_spec()->set_weight_bits(2);
  qnet::v1::Job job;
  const grpc::Status refused = jobs_->SubmitJob(As(bob_).get(), submit, &job);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(refused.error_message(), HasSubstr("unknown dataset \"pets\""));
  const std::string& message = refused.error_message();
  ASSERT_NE(message.find("known datasets:"), std::string::npos) << message;
  EXPECT_THAT(message.substr(message.find("known datasets:")), ::testing::Not(HasSubstr("pets")));
}

}  // namespace
}  // namespace qnet::server
