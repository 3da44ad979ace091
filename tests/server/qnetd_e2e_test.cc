// The real qnetd binary on loopback: it prints its listening line, keeps every accepted job
// across kill -9 (none lost, none duplicated, request_ids still idempotent), runs and stops local
// workers, and exits 0 on SIGTERM. Authentication: `qnetd token`, no network address without
// auth, the replaced --worker-token-file, and SIGHUP re-reading the tokens file.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <optional>
#include <set>

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "qnet/v1/job.grpc.pb.h"
#include "server/auth/token_table.h"
#include "tests/server/test_util.h"

#ifndef QNETD_PATH
#error "QNETD_PATH must name the qnetd binary"
#endif

namespace qnet::server {
namespace {

using ::testing::HasSubstr;
using testing::TempDir;

// One qnetd child process; killed (SIGKILL) if still running at scope end. Its stderr goes to
// `stderr_path` when given; `nofile` sets its descriptor limit.
class Qnetd {
 public:
  explicit Qnetd(const std::vector<std::string>& extra_args, const std::string& stderr_path = "",
                 std::optional<rlimit> nofile = std::nullopt) {
    int out[2];
    EXPECT_EQ(::pipe2(out, O_CLOEXEC), 0);
    std::vector<std::string> args = {QNETD_PATH, "--listen", "127.0.0.1:0", "--http-listen",
                                     "127.0.0.1:0"};
    args.insert(args.end(), extra_args.begin(), extra_args.end());
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(out[1], STDOUT_FILENO);
      if (!stderr_path.empty()) {
        const int err = ::open(stderr_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (err >= 0) ::dup2(err, STDERR_FILENO);
      }
      if (nofile.has_value() && ::setrlimit(RLIMIT_NOFILE, &*nofile) != 0) ::_exit(126);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    ::close(out[1]);
    stdout_ = out[0];
  }

  ~Qnetd() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (stdout_ >= 0) ::close(stdout_);
  }

  // Reads the "listening grpc=... http=..." line; "" after `timeout`.
  std::string ReadListeningLine(absl::Duration timeout = absl::Seconds(60)) {
    std::string line;
    const absl::Time deadline = absl::Now() + timeout;
    while (absl::Now() < deadline) {
      pollfd p{stdout_, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      char c;
      if (::read(stdout_, &c, 1) != 1) return "";
      if (c == '\n') return line;
      line += c;
    }
    return "";
  }

  bool Start() {
    const std::string line = ReadListeningLine();
    const size_t g = line.find("grpc="), h = line.find(" http=");
    if (line.rfind("listening grpc=", 0) != 0 || h == std::string::npos) {
      ADD_FAILURE() << "unexpected first line: \"" << line << "\"";
      return false;
    }
    grpc_ = line.substr(g + 5, h - g - 5);
    http_ = line.substr(h + 6);
    return true;
  }

  // Sends `sig` and returns the exit status (-1 if it did not exit within `timeout`).
  int SignalAndWait(int sig, absl::Duration timeout = absl::Seconds(20)) {
    ::kill(pid_, sig);
    int status = 0;
    if (!testing::WaitFor([&] { return ::waitpid(pid_, &status, WNOHANG) == pid_; }, timeout)) {
      return -1;
    }
    pid_ = 0;
    return status;
  }

  std::unique_ptr<qnet::v1::JobService::Stub> Stub() const {
    return qnet::v1::JobService::NewStub(
        grpc::CreateChannel(grpc_, grpc::InsecureChannelCredentials()));
  }

  const std::string& grpc() const { return grpc_; }
  const std::string& http() const { return http_; }
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = 0;
  int stdout_ = -1;
  std::string grpc_, http_;
};

std::unique_ptr<grpc::ClientContext> Ctx() {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
  return ctx;
}

qnet::v1::SubmitJobRequest Request(int i) {
  qnet::v1::SubmitJobRequest req;
  req.set_request_id(absl::StrCat("e2e-", i));
  req.mutable_spec()->set_model(i % 2 == 0 ? "zoo:lenet5" : "zoo:resnet20");
  req.mutable_spec()->set_dataset("fake");
  req.mutable_spec()->set_weight_bits(1 + i % 8);
  req.mutable_spec()->set_priority(i % 3);
  return req;
}

class QnetdE2eTest : public ::testing::Test {
 protected:
  void SetUp() override { testing::MakeFakeIdxDataset(dir_ / "fake"); }
  std::vector<std::string> Args(std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"--data-dir", dir_ / "data", "--dataset",
                                     "fake=idx:" + dir_ / "fake"};
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  }
  TempDir dir_;
};

TEST_F(QnetdE2eTest, JobsSurviveKill9WithoutDuplicates) {
  std::map<std::string, std::string> ids;  // request_id -> job id
  {
    Qnetd qnetd(Args());
    ASSERT_TRUE(qnetd.Start());
    EXPECT_THAT(qnetd.grpc(), ::testing::StartsWith("127.0.0.1:"));
    EXPECT_THAT(qnetd.http(), ::testing::StartsWith("127.0.0.1:"));
    EXPECT_NE(qnetd.grpc(), "127.0.0.1:0");
    EXPECT_EQ(testing::HttpGet(qnetd.http(), "/healthz").status, 200);
    auto stub = qnetd.Stub();
    for (int i = 0; i < 30; ++i) {
      qnet::v1::Job job;
      grpc::Status s = stub->SubmitJob(Ctx().get(), Request(i), &job);
      ASSERT_TRUE(s.ok()) << s.error_message();
      ids[job.request_id()] = job.id();
    }
    ASSERT_EQ(ids.size(), 30u);
    // Without --store, jobs go where they always went.
    EXPECT_TRUE(std::filesystem::exists(dir_ / "data/jobs.db"));
    const int status = qnetd.SignalAndWait(SIGKILL);
    ASSERT_TRUE(WIFSIGNALED(status));
  }
  Qnetd qnetd(Args());
  ASSERT_TRUE(qnetd.Start());
  auto stub = qnetd.Stub();
  qnet::v1::ListJobsRequest list;
  list.set_page_size(100);
  qnet::v1::ListJobsResponse resp;
  ASSERT_TRUE(stub->ListJobs(Ctx().get(), list, &resp).ok());
  ASSERT_EQ(resp.jobs_size(), 30);
  std::set<std::string> listed;
  for (const qnet::v1::Job& job : resp.jobs()) {
    EXPECT_EQ(job.state(), qnet::v1::QUEUED);
    EXPECT_EQ(ids[job.request_id()], job.id());
    listed.insert(job.id());
  }
  EXPECT_EQ(listed.size(), 30u);
  qnet::v1::Job again;
  ASSERT_TRUE(stub->SubmitJob(Ctx().get(), Request(7), &again).ok());
  EXPECT_EQ(again.id(), ids["e2e-7"]);
  ASSERT_TRUE(stub->ListJobs(Ctx().get(), list, &resp).ok());
  EXPECT_EQ(resp.jobs_size(), 30);
  // Close our connection: an idle gRPC client notices the server's GOAWAY only when its backup
  // poller runs (every 5 s), and the server's drain waits for connections to close.
  stub.reset();
  const int status = qnetd.SignalAndWait(SIGTERM);
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST_F(QnetdE2eTest, RunsLocalWorkersAndStopsThemOnSigterm) {
  const std::string script = dir_ / "fake-worker.sh";
  testing::WriteFile(script, absl::StrCat("#!/bin/sh\necho $$ \"$@\" >> ", dir_ / "workers.txt",
                                          "\nexec sleep 60\n"));
  ::chmod(script.c_str(), 0755);
  Qnetd qnetd(Args({"--local-workers", "2", "--worker-binary", script}));
  ASSERT_TRUE(qnetd.Start());
  std::string started;
  // Both workers' lines: they start concurrently, so either may be written first.
  EXPECT_TRUE(testing::WaitFor([&] {
    started = testing::ReadFile(dir_ / "workers.txt");
    return started.find("worker-cache-0") != std::string::npos &&
           started.find("worker-cache-1") != std::string::npos;
  }));
  EXPECT_THAT(started, HasSubstr("serve --server " + qnetd.grpc() + " --cache-dir " +
                                 dir_ / "data/worker-cache-0"));
  EXPECT_THAT(started, HasSubstr("--cache-dir " + dir_ / "data/worker-cache-1"));
  std::vector<pid_t> pids;
  for (absl::string_view line : absl::StrSplit(started, '\n', absl::SkipEmpty())) {
    pids.push_back(std::stoi(std::string(line.substr(0, line.find(' ')))));
  }
  ASSERT_EQ(pids.size(), 2u);
  const int status = qnetd.SignalAndWait(SIGTERM);
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0);
  for (pid_t pid : pids) EXPECT_NE(::kill(pid, 0), 0) << "worker " << pid << " still running";
}

TEST_F(QnetdE2eTest, RefusesASecondServerOnTheSameDataDirAndBadFlags) {
  Qnetd first(Args());
  ASSERT_TRUE(first.Start());
  Qnetd second(Args());
  EXPECT_EQ(second.ReadListeningLine(absl::Seconds(30)), "");
  const int status = second.SignalAndWait(0, absl::Seconds(10));  // signal 0: just wait
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 1);

  Qnetd bad(Args({"--dataset", "x=png:/tmp"}));
  EXPECT_EQ(bad.ReadListeningLine(absl::Seconds(30)), "");
  EXPECT_EQ(first.SignalAndWait(SIGINT), 0);
}

TEST_F(QnetdE2eTest, StoreFlagChoosesTheJobStore) {
  const std::string store = absl::StrCat("sqlite://", dir_ / "elsewhere.db");
  std::string id;
  {
    Qnetd qnetd(Args({"--store", store}));
    ASSERT_TRUE(qnetd.Start());
    qnet::v1::Job job;
    auto stub = qnetd.Stub();
    ASSERT_TRUE(stub->SubmitJob(Ctx().get(), Request(1), &job).ok());
    id = job.id();
    stub.reset();
    EXPECT_EQ(qnetd.SignalAndWait(SIGTERM), 0);
  }
  EXPECT_TRUE(std::filesystem::exists(dir_ / "elsewhere.db"));
  EXPECT_FALSE(std::filesystem::exists(dir_ / "data/jobs.db"));
  {
    Qnetd again(Args({"--store", store}));
    ASSERT_TRUE(again.Start());
    qnet::v1::GetJobRequest get;
    get.set_id(id);
    qnet::v1::Job job;
    EXPECT_TRUE(again.Stub()->GetJob(Ctx().get(), get, &job).ok());
    EXPECT_EQ(job.request_id(), "e2e-1");
  }

  // An unknown scheme stops qnetd at once, naming the schemes it knows.
  Qnetd unknown(Args({"--store", "postgres://db/qnet"}), dir_ / "unknown.log");
  EXPECT_EQ(unknown.ReadListeningLine(absl::Seconds(30)), "");
  const int status = unknown.SignalAndWait(0, absl::Seconds(10));  // signal 0: just wait
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 1);
  EXPECT_THAT(testing::ReadFile(dir_ / "unknown.log"),
              ::testing::AllOf(HasSubstr("--store: unknown job store scheme \"postgres\""),
                               HasSubstr("sqlite:///")));
}

// The "Max open files" soft and hard limits of process `pid`.
std::pair<std::string, std::string> OpenFileLimits(pid_t pid) {
  for (absl::string_view line :
       absl::StrSplit(testing::ReadFile(absl::StrCat("/proc/", pid, "/limits")), '\n')) {
    if (!absl::StartsWith(line, "Max open files")) continue;
    std::vector<std::string> f = absl::StrSplit(line, ' ', absl::SkipEmpty());
    if (f.size() >= 5) return {f[3], f[4]};
  }
  return {};
}

TEST_F(QnetdE2eTest, RaisesItsDescriptorSoftLimitToTheHardLimit) {
  rlimit mine{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &mine), 0);
  if (mine.rlim_max <= 256) GTEST_SKIP() << "the hard descriptor limit is too low to raise";
  Qnetd qnetd(Args(), "", rlimit{256, mine.rlim_max});
  ASSERT_TRUE(qnetd.Start());
  const auto [soft, hard] = OpenFileLimits(qnetd.pid());
  EXPECT_EQ(soft, hard);
  EXPECT_NE(soft, "256");
}

TEST_F(QnetdE2eTest, IdleHttpConnectionsDoNotStarveGrpc) {
  // 300 idle HTTP connections against a 256-descriptor limit used to leave gRPC unable to
  // accept; HTTP now holds at most a quarter of the limit and refuses the rest.
  const std::string log = dir_ / "qnetd.log";
  Qnetd qnetd(Args(), log, rlimit{256, 256});
  ASSERT_TRUE(qnetd.Start());
  std::vector<int> idle;
  for (int i = 0; i < 300; ++i) {
    const int fd = testing::ConnectTcp(qnetd.http(), "127.0.0.2");
    if (fd >= 0) idle.push_back(fd);
  }
  EXPECT_GT(idle.size(), 250u);
  // Fresh channels (a new connection each) still work, and /healthz (from another client
  // address) agrees.
  for (int i = 0; i < 5; ++i) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    auto stub = qnet::v1::JobService::NewStub(
        grpc::CreateCustomChannel(qnetd.grpc(), grpc::InsecureChannelCredentials(), args));
    qnet::v1::ListJobsResponse list;
    const grpc::Status s = stub->ListJobs(Ctx().get(), {}, &list);
    EXPECT_TRUE(s.ok()) << i << ": " << s.error_message();
  }
  EXPECT_EQ(testing::HttpGet(qnetd.http(), "/healthz").status, 200);
  for (int fd : idle) ::close(fd);
  EXPECT_EQ(qnetd.SignalAndWait(SIGTERM), 0);
  EXPECT_THAT(testing::ReadFile(log), HasSubstr("HTTP connections capped at 64"));
}

struct ProcessRun {
  int exit_code = -1;
  std::string output;  // stdout and stderr
};

// qnetd with `args`, to its exit.
ProcessRun RunQnetd(const std::string& args) {
  ProcessRun run;
  FILE* p = ::popen((std::string(QNETD_PATH) + " " + args + " 2>&1").c_str(), "r");
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) run.output.append(buf, n);
  const int status = ::pclose(p);
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return run;
}

using ::testing::Not;

TEST_F(QnetdE2eTest, TokenSubcommandPrintsTokenAndItsLine) {
  const ProcessRun run = RunQnetd("token --name alice --role client");
  ASSERT_EQ(run.exit_code, 0) << run.output;
  const size_t at = run.output.find("qnet_");
  ASSERT_NE(at, std::string::npos) << run.output;
  const std::string token = run.output.substr(at, run.output.find('\n', at) - at);
  EXPECT_THAT(run.output, HasSubstr("\nalice client " + TokenHash(token) + "\n"));
  EXPECT_THAT(RunQnetd("token --name alice --role client").output, Not(HasSubstr(token)));
  const ProcessRun bad = RunQnetd("token --name alice --role owner");
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_THAT(bad.output, HasSubstr("unknown role \"owner\""));
}

TEST_F(QnetdE2eTest, RefusesNetworkAddressesWithoutAuthAndTheOldWorkerToken) {
  const ProcessRun open =
      RunQnetd("--listen 0.0.0.0:0 --http-listen 127.0.0.1:0 --data-dir " + dir_ / "data");
  EXPECT_EQ(open.exit_code, 1);
  EXPECT_THAT(open.output, HasSubstr("refusing to listen on 0.0.0.0:0 without authentication"));
  testing::WriteFile(dir_ / "worker-token", "s3cret\n");
  const ProcessRun old =
      RunQnetd("--data-dir " + dir_ / "data" + " --worker-token-file " + dir_ / "worker-token");
  EXPECT_EQ(old.exit_code, 2);
  EXPECT_THAT(old.output, HasSubstr("replaced by --auth-tokens"));
  EXPECT_THAT(old.output, HasSubstr("worker worker " + TokenHash("s3cret")));
}

TEST_F(QnetdE2eTest, SighupRereadsTheTokensFile) {
  const std::string alice = NewToken(), bob = NewToken();
  testing::WriteFile(dir_ / "tokens", "alice client " + TokenHash(alice) + "\n");
  Qnetd qnetd(Args({"--auth-tokens", dir_ / "tokens"}));
  ASSERT_TRUE(qnetd.Start());
  auto stub = qnetd.Stub();
  const auto list = [&](const std::string& token) {
    auto ctx = Ctx();
    ctx->AddMetadata("authorization", "Bearer " + token);
    qnet::v1::ListJobsResponse resp;
    return stub->ListJobs(ctx.get(), {}, &resp).error_code();
  };
  EXPECT_EQ(list(alice), grpc::StatusCode::OK);
  EXPECT_EQ(list(bob), grpc::StatusCode::UNAUTHENTICATED);
  testing::WriteFile(dir_ / "tokens", "bob client " + TokenHash(bob) + "\n");
  ::kill(qnetd.pid(), SIGHUP);
  EXPECT_TRUE(testing::WaitFor([&] { return list(bob) == grpc::StatusCode::OK; }));
  EXPECT_EQ(list(alice), grpc::StatusCode::UNAUTHENTICATED);
  stub.reset();
  const int status = qnetd.SignalAndWait(SIGTERM);
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST_F(QnetdE2eTest, LocalWorkersGetTheirOwnIdentityOnALoopbackPortWithTls) {
  ASSERT_EQ(std::system((std::string(QNET_MAKE_CERTS) + " " + dir_.path()).c_str()), 0);
  testing::WriteFile(dir_ / "tokens", "alice client " + TokenHash(NewToken()) + "\n");
  const std::string script = dir_ / "fake-worker.sh";
  testing::WriteFile(script, absl::StrCat("#!/bin/sh\necho \"$QNET_TOKEN\" \"$@\" >> ",
                                          dir_ / "workers.txt", "\nexec sleep 60\n"));
  ::chmod(script.c_str(), 0755);
  Qnetd qnetd(
      Args({"--auth-tokens", dir_ / "tokens", "--tls-cert", dir_ / "server.pem", "--tls-key",
            dir_ / "server.key", "--local-workers", "1", "--worker-binary", script}));
  ASSERT_TRUE(qnetd.Start());
  std::string started;
  ASSERT_TRUE(testing::WaitFor([&] {
    started = testing::ReadFile(dir_ / "workers.txt");
    return started.find('\n') != std::string::npos;
  }));
  // "TOKEN serve --server 127.0.0.1:PORT ...": the token came in the environment.
  const std::vector<std::string> words = absl::StrSplit(started, absl::ByAnyChar(" \n"));
  ASSERT_GE(words.size(), 4u) << started;
  const std::string token = words[0], address = words[3];
  EXPECT_EQ(token.rfind("qnet_", 0), 0u) << started;
  EXPECT_NE(address, qnetd.grpc());
  const auto capabilities = [](const std::string& at, const std::string& bearer) {
    auto stub =
        qnet::v1::JobService::NewStub(grpc::CreateChannel(at, grpc::InsecureChannelCredentials()));
    auto ctx = Ctx();
    if (!bearer.empty()) ctx->AddMetadata("authorization", "Bearer " + bearer);
    qnet::v1::Capabilities reply;
    return stub->GetCapabilities(ctx.get(), {}, &reply).error_code();
  };
  EXPECT_EQ(capabilities(address, token), grpc::StatusCode::OK);  // a worker identity
  EXPECT_EQ(capabilities(address, ""), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(capabilities(qnetd.grpc(), token), grpc::StatusCode::UNAVAILABLE);  // TLS only
}

}  // namespace
}  // namespace qnet::server
