// The sandbox tests' stand-in for `qnet-worker sandbox-child`: the real child side
// (RunSandboxChild: seccomp, protocol) with a fake engine that does what the job's model name
// says, so crashes, runaway memory, hangs and escape attempts are real and need no LibTorch.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "workers/worker/sandbox_child.h"

extern char** environ;

namespace {

namespace fs = std::filesystem;
using qnet::engine::JobResult;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// "Seccomp:\t2" when a filter is on, from /proc/self/status.
std::string SeccompLine() {
  const std::string status = ReadFile("/proc/self/status");
  const size_t at = status.find("Seccomp:");
  return at == std::string::npos ? "Seccomp: unknown"
                                 : status.substr(at, status.find('\n', at) - at);
}

absl::StatusOr<JobResult> Succeed(const qnet::engine::JobRun& run,
                                  const qnet::engine::JobCallbacks& callbacks) {
  qnet::engine::ProgressEvent event;
  event.phase = "weights";
  event.epoch = 1;
  event.total_epochs = 1;
  event.loss = 0.25;
  callbacks.on_progress(event);
  const std::string checkpoint = run.context.checkpoint_dir + "/epoch-1.ckpt";
  std::ofstream(checkpoint) << "weights of epoch 1";
  callbacks.on_checkpoint(checkpoint);
  JobResult result;
  result.metrics.quantized_top1 = 0.75;
  result.metrics.device = "cpu";
  const std::string model = run.context.out_dir + "/model.pt";
  std::ofstream(model) << "quantized model";
  result.artifacts.push_back({"torchscript", model});
  return result;
}

// The environment and open descriptors the child got, as an artifact.
absl::StatusOr<JobResult> ReportEnvironment(const qnet::engine::JobRun& run) {
  std::ostringstream out;  // the report file is opened after the listing, so it is not listed
  for (char** var = environ; *var != nullptr; ++var) out << "env " << *var << "\n";
  for (const auto& entry : fs::directory_iterator("/proc/self/fd")) {
    std::error_code ec;
    out << "fd " << entry.path().filename().string() << " " << fs::read_symlink(entry, ec).string()
        << "\n";
  }
  out << "cwd " << fs::current_path().string() << "\n";
  const std::string path = run.context.out_dir + "/environment.txt";
  std::ofstream(path) << out.str();
  JobResult result;
  result.artifacts.push_back({"environment", path});
  return result;
}

// Tries a TCP connection to 127.0.0.1:PORT, PORT being the job's dataset name.
absl::StatusOr<JobResult> Connect(const qnet::engine::JobRun& run) {
  int port = 0;
  if (!absl::SimpleAtoi(run.spec.dataset(), &port)) return absl::InvalidArgumentError("no port");
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return absl::FailedPreconditionError(absl::StrCat("socket: ", std::strerror(errno)));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    return absl::FailedPreconditionError(absl::StrCat("connect: ", std::strerror(errno)));
  }
  return absl::FailedPreconditionError(absl::StrCat("connected; ", SeccompLine()));
}

// Tries to read each file of the job's dataset name (';'-separated): "PATH: ok" or the error.
absl::StatusOr<JobResult> ReadFiles(const qnet::engine::JobRun& run) {
  std::string report;
  for (absl::string_view path : absl::StrSplit(run.spec.dataset(), ';')) {
    const int fd = open(std::string(path).c_str(), O_RDONLY | O_CLOEXEC);
    absl::StrAppend(&report, path, ": ", fd >= 0 ? "ok" : std::strerror(errno), "\n");
    if (fd >= 0) close(fd);
  }
  return absl::FailedPreconditionError(report);
}

absl::StatusOr<JobResult> FakeEngine(const qnet::engine::JobRun& run,
                                     const qnet::engine::JobCallbacks& callbacks) {
  const std::string& model = run.spec.model();
  if (model == "zoo:test-succeed") return Succeed(run, callbacks);
  if (model == "zoo:test-environment") return ReportEnvironment(run);
  if (model == "zoo:test-connect") return Connect(run);
  if (model == "zoo:test-read") return ReadFiles(run);
  if (model == "zoo:test-segfault") raise(SIGSEGV);
  if (model == "zoo:test-allocate") {
    std::vector<std::unique_ptr<char[]>> blocks;
    while (true) {
      blocks.emplace_back(new char[16 << 20]);
      std::memset(blocks.back().get(), 1, 16 << 20);  // resident, not just reserved
    }
  }
  if (model == "zoo:test-spin") {
    volatile uint64_t turns = 0;
    while (true) turns = turns + 1;
  }
  if (model == "zoo:test-hang") {
    qnet::engine::ProgressEvent event;
    event.step = getpid();  // so the test can check the process is gone
    callbacks.on_progress(event);
    while (true) pause();
  }
  if (model == "zoo:test-escape") {
    callbacks.on_checkpoint("/etc/passwd");
    return Succeed(run, callbacks);
  }
  if (model == "zoo:test-fork") {
    const pid_t pid = fork();
    if (pid == 0) _exit(0);
    return absl::FailedPreconditionError(pid < 0 ? absl::StrCat("fork: ", std::strerror(errno))
                                                 : "forked");
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown test model ", model));
}

}  // namespace

int main() { return qnet::worker::RunSandboxChild(qnet::worker::kSandboxChildFd, FakeEngine); }
