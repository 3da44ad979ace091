// The job sandbox (workers/worker/sandbox.h) with a real child process: the test child
// (sandbox_test_child.cc) runs the real child side with a fake engine that succeeds, crashes,
// allocates without bound, hangs, spins, reports its environment or tries the network.
#include "workers/worker/sandbox.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "workers/engine/job_runner.h"
#include "workers/worker/sandbox_protocol.h"

namespace qnet::worker {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class SandboxTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("qnet_sandbox_test_" + std::to_string(getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "out");
    fs::create_directories(dir_ / "checkpoints");
    options_.executable = QNET_SANDBOX_TEST_CHILD;
    options_.poll_interval = std::chrono::milliseconds(10);
  }
  void TearDown() override { fs::remove_all(dir_); }

  absl::StatusOr<engine::JobResult> Run(const std::string& model,
                                        const engine::JobCallbacks& callbacks = {},
                                        const std::string& dataset = "synth") {
    engine::JobRun run;
    run.spec.set_model(model);
    run.spec.set_dataset(dataset);
    run.context.out_dir = (dir_ / "out").string();
    run.context.checkpoint_dir = (dir_ / "checkpoints").string();
    return Sandbox::Create(options_)->Run(run, callbacks);
  }

  fs::path dir_;
  SandboxOptions options_;
};

TEST_F(SandboxTest, AJobReportsProgressCheckpointsAndItsResult) {
  std::vector<engine::ProgressEvent> progress;
  std::string checkpoint_content;
  engine::JobCallbacks callbacks;
  callbacks.on_progress = [&](const engine::ProgressEvent& e) { progress.push_back(e); };
  callbacks.on_checkpoint = [&](const std::string& path) { checkpoint_content = ReadFile(path); };
  absl::StatusOr<engine::JobResult> result = Run("zoo:test-succeed", callbacks);
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_EQ(progress.size(), 1u);
  EXPECT_EQ(progress[0].phase, "weights");
  EXPECT_DOUBLE_EQ(progress[0].loss, 0.25);
  EXPECT_EQ(checkpoint_content, "weights of epoch 1");
  EXPECT_DOUBLE_EQ(result->metrics.quantized_top1, 0.75);
  ASSERT_EQ(result->artifacts.size(), 1u);
  EXPECT_EQ(result->artifacts[0].kind, "torchscript");
  EXPECT_EQ(ReadFile(result->artifacts[0].path), "quantized model");
}

// Crashes and limits fail the job for good, with the reason: another attempt would meet them too.
TEST_F(SandboxTest, ACrashFailsTheJobWithTheSignalAndIsNotRetried) {
  absl::StatusOr<engine::JobResult> result = Run("zoo:test-segfault");
  ASSERT_FALSE(result.ok());
  EXPECT_THAT(result.status().message(), HasSubstr("killed by SIGSEGV (Segmentation fault)"));
  EXPECT_FALSE(engine::IsRetryableFailure(result.status()));
}

TEST_F(SandboxTest, RunawayMemoryIsKilledAtTheCap) {
  options_.limits.memory_mib = 128;
  absl::StatusOr<engine::JobResult> result = Run("zoo:test-allocate");
  ASSERT_FALSE(result.ok());
  EXPECT_THAT(result.status().message(), HasSubstr("exceeded memory limit 128 MiB"));
  EXPECT_FALSE(engine::IsRetryableFailure(result.status()));
}

TEST_F(SandboxTest, AHangingJobIsKilledAtTheTimeLimit) {
  options_.limits.wall_seconds = 1;
  absl::StatusOr<engine::JobResult> result = Run("zoo:test-hang");
  ASSERT_FALSE(result.ok());
  EXPECT_THAT(result.status().message(), HasSubstr("time limit of 1 s"));
  EXPECT_FALSE(engine::IsRetryableFailure(result.status()));
}

TEST_F(SandboxTest, ASpinningJobIsKilledAtTheCpuLimit) {
  options_.limits.cpu_seconds = 1;
  absl::StatusOr<engine::JobResult> result = Run("zoo:test-spin");
  ASSERT_FALSE(result.ok());
  EXPECT_THAT(result.status().message(), HasSubstr("CPU time limit of 1 s"));
  EXPECT_FALSE(engine::IsRetryableFailure(result.status()));
}

TEST_F(SandboxTest, StoppingKillsTheChild) {
  pid_t child = 0;
  engine::JobCallbacks callbacks;
  callbacks.on_progress = [&](const engine::ProgressEvent& e) {
    child = static_cast<pid_t>(e.step);
  };
  callbacks.should_stop = [&] { return child != 0; };
  absl::StatusOr<engine::JobResult> result = Run("zoo:test-hang", callbacks);
  EXPECT_EQ(result.status().code(), absl::StatusCode::kCancelled);
  ASSERT_GT(child, 0);
  EXPECT_EQ(kill(child, 0), -1);  // reaped: no such process
}

TEST_F(SandboxTest, TheChildGetsNoCredentialsAndNoOtherDescriptors) {
  setenv("QNET_TOKEN", "secret-token", 1);
  setenv("QNET_WORKER_TOKEN", "secret-worker-token", 1);
  setenv("AWS_SECRET_ACCESS_KEY", "secret-key", 1);
  setenv("OMP_NUM_THREADS", "3", 1);
  const int leaked = open("/dev/null", O_RDONLY);  // no O_CLOEXEC: fork would pass it on
  ASSERT_GE(leaked, 0);
  absl::StatusOr<engine::JobResult> result = Run("zoo:test-environment");
  close(leaked);
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_EQ(result->artifacts.size(), 1u);
  const std::string report = ReadFile(result->artifacts[0].path);
  EXPECT_THAT(report, Not(HasSubstr("secret")));
  EXPECT_THAT(report, Not(HasSubstr("TOKEN")));
  EXPECT_THAT(report, HasSubstr("env OMP_NUM_THREADS=3\n"));
  EXPECT_THAT(report, HasSubstr("env HOME=" + (dir_ / "sandbox").string() + "\n"));
  EXPECT_THAT(report, HasSubstr("cwd " + (dir_ / "sandbox").string() + "\n"));
  EXPECT_THAT(report, HasSubstr("fd 0 /dev/null\n"));
  EXPECT_THAT(report, HasSubstr("fd 3 socket:"));
  EXPECT_THAT(report, Not(HasSubstr("fd " + std::to_string(leaked) + " /dev/null")));
  // 0-3, plus the one the listing itself has open on /proc/PID/fd.
  std::vector<std::string> descriptors;
  std::istringstream lines(report);
  for (std::string line; std::getline(lines, line);) {
    if (absl::StartsWith(line, "fd ")) descriptors.push_back(line.substr(3, line.find(' ', 3) - 3));
  }
  EXPECT_THAT(descriptors, ::testing::IsSupersetOf({"0", "1", "2", "3"}));
  EXPECT_EQ(descriptors.size(), 5u) << report;
}

TEST_F(SandboxTest, TheChildCannotOpenATcpConnection) {
  const int listener = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof address;
  ASSERT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  ASSERT_EQ(listen(listener, 1), 0);
  ASSERT_EQ(getsockname(listener, reinterpret_cast<sockaddr*>(&address), &length), 0);
  const bool network_isolated = Sandbox::Create(options_)->network_isolated();
  absl::StatusOr<engine::JobResult> result =
      Run("zoo:test-connect", {}, std::to_string(ntohs(address.sin_port)));
  close(listener);
  ASSERT_FALSE(result.ok());
  const std::string message(result.status().message());
  if (!network_isolated && absl::StrContains(message, "Seccomp:\t0")) {
    GTEST_SKIP() << "this kernel offers neither seccomp nor network namespaces";
  }
  EXPECT_THAT(message, Not(HasSubstr("connected")));
}

// The child runs under the worker's uid: only Landlock keeps the token file from it.
TEST_F(SandboxTest, TheChildCannotReadTheCredentialFiles) {
  fs::create_directories(dir_ / "secrets");
  std::ofstream(dir_ / "secrets" / "token") << "worker-token";
  std::ofstream(dir_ / "secrets" / "ca.crt") << "certificate";
  fs::create_symlink(dir_ / "secrets" / "token", dir_ / "token-link");
  options_.hidden_files = {(dir_ / "secrets" / "token").string()};
  const std::string token = (dir_ / "secrets" / "token").string();
  const std::string link = (dir_ / "token-link").string();
  const std::string certificate = (dir_ / "secrets" / "ca.crt").string();
  absl::StatusOr<engine::JobResult> result =
      Run("zoo:test-read", {}, absl::StrCat(token, ";", link, ";", certificate, ";/etc/hostname"));
  const std::string report(result.status().message());
  if (absl::StrContains(report, token + ": ok")) {
    GTEST_SKIP() << "this kernel offers no Landlock: " << report;
  }
  EXPECT_THAT(report, HasSubstr(token + ": Permission denied\n"));
  EXPECT_THAT(report, HasSubstr(link + ": Permission denied\n"));
  EXPECT_THAT(report, HasSubstr(certificate + ": ok\n"));
  EXPECT_THAT(report, HasSubstr("/etc/hostname: ok\n"));
}

TEST_F(SandboxTest, TheChildCannotStartProcesses) {
  absl::StatusOr<engine::JobResult> result = Run("zoo:test-fork");
  EXPECT_THAT(result.status().message(), HasSubstr("fork: Operation not permitted"));
}

TEST_F(SandboxTest, AChildNamingAFileOutsideItsFoldersFailsTheJob) {
  bool uploaded = false;
  engine::JobCallbacks callbacks;
  callbacks.on_checkpoint = [&](const std::string&) { uploaded = true; };
  absl::StatusOr<engine::JobResult> result = Run("zoo:test-escape", callbacks);
  ASSERT_FALSE(result.ok());
  EXPECT_THAT(result.status().message(), HasSubstr("/etc/passwd is not a plain file inside"));
  EXPECT_FALSE(uploaded);
}

TEST(SandboxProtocolTest, FramesSurviveSplitReadsAndOversizedOnesAreRefused) {
  int sockets[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sockets), 0);
  sandbox::FromChild message;
  message.set_checkpoint_path("/work/checkpoints/epoch-3.ckpt");
  ASSERT_TRUE(WriteFrame(sockets[0], message).ok());
  char bytes[256];
  const ssize_t n = read(sockets[1], bytes, sizeof bytes);
  ASSERT_GT(n, 4);
  FrameBuffer buffer;
  buffer.Append(bytes, 3);
  EXPECT_FALSE(buffer.Next()->has_value());
  buffer.Append(bytes + 3, static_cast<size_t>(n) - 3);
  absl::StatusOr<std::optional<std::string>> frame = buffer.Next();
  ASSERT_TRUE(frame.ok() && frame->has_value());
  sandbox::FromChild parsed;
  ASSERT_TRUE(parsed.ParseFromString(**frame));
  EXPECT_EQ(parsed.checkpoint_path(), message.checkpoint_path());

  const char oversized[4] = {0, 0, 0, 0x7f};
  buffer.Append(oversized, sizeof oversized);
  EXPECT_FALSE(buffer.Next().ok());
  close(sockets[0]);
  close(sockets[1]);
}

}  // namespace
}  // namespace qnet::worker
