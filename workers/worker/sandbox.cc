#include "workers/worker/sandbox.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"
#include "workers/worker/sandbox_child.h"
#include "workers/worker/sandbox_protocol.h"
#include "workers/worker/worker_convert.h"

namespace qnet::worker {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// Exit statuses of the forked child before its program runs.
constexpr int kSetupFailedExit = 126;
constexpr int kExecFailedExit = 127;
// The CPU limit's SIGXCPU comes first; the hard limit this much later kills a child ignoring it.
constexpr rlim_t kCpuHardLimitSlack = 10;

// Which unshare() flags work here, tried in a throwaway child: CLONE_NEWNET alone needs
// CAP_SYS_ADMIN; with CLONE_NEWUSER an unprivileged process may, unless the kernel or a
// container's seccomp profile forbids user namespaces.
int ProbeUnshareFlags() {
  const pid_t pid = fork();
  if (pid < 0) return 0;
  if (pid == 0) {
    if (unshare(CLONE_NEWNET) == 0) _exit(1);
    if (unshare(CLONE_NEWUSER | CLONE_NEWNET) == 0) _exit(2);
    _exit(0);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status)) return 0;
  if (WEXITSTATUS(status) == 1) return CLONE_NEWNET;
  if (WEXITSTATUS(status) == 2) return CLONE_NEWUSER | CLONE_NEWNET;
  return 0;
}

std::vector<char*> Pointers(std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (std::string& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

struct Limit {
  int resource;
  rlimit value;
};

// `soft` and `hard`, lowered to the worker's own hard limit: raising it would fail the setup.
Limit Capped(int resource, rlim_t soft, rlim_t hard) {
  rlimit current{};
  if (getrlimit(static_cast<__rlimit_resource>(resource), &current) == 0 &&
      current.rlim_max != RLIM_INFINITY) {
    soft = std::min(soft, current.rlim_max);
    hard = std::min(hard, current.rlim_max);
  }
  return {resource, {soft, hard}};
}

// Everything the forked child needs, prepared before fork(): between fork and exec a child of a
// multithreaded process may only make system calls.
struct Launch {
  pid_t parent;
  int channel;
  int devnull;
  const char* home;
  std::vector<Limit> limits;
  int unshare_flags;
  char** argv;
  char** envp;
};

[[noreturn]] void ExecChild(const Launch& launch) {
  // Dies with the thread that started it, even on the worker's kill -9: its own session would
  // otherwise outlive the worker. The getppid() check closes the race with a parent already gone.
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != launch.parent) _exit(kSetupFailedExit);
  setsid();
  // Lift both descriptors clear of 0..3 before placing them, so neither overwrites the other.
  int channel = launch.channel < 10 ? fcntl(launch.channel, F_DUPFD, 10) : launch.channel;
  int devnull = launch.devnull < 10 ? fcntl(launch.devnull, F_DUPFD, 10) : launch.devnull;
  if (channel < 0 || devnull < 0 || dup2(devnull, STDIN_FILENO) < 0 ||
      dup2(channel, kSandboxChildFd) < 0 || close_range(kSandboxChildFd + 1, ~0U, 0) != 0 ||
      chdir(launch.home) != 0) {
    _exit(kSetupFailedExit);
  }
  for (const Limit& limit : launch.limits) {
    if (setrlimit(static_cast<__rlimit_resource>(limit.resource), &limit.value) != 0) {
      _exit(kSetupFailedExit);
    }
  }
  if (launch.unshare_flags != 0 && unshare(launch.unshare_flags) != 0) _exit(kSetupFailedExit);
  execve(launch.argv[0], launch.argv, launch.envp);
  _exit(kExecFailedExit);
}

// The started child: killed with everything in its session and reaped when it goes out of scope.
class Child {
 public:
  Child(pid_t pid, int fd) : pid_(pid), fd_(fd) {}
  ~Child() {
    Kill();
    close(fd_);
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  pid_t pid() const { return pid_; }
  int fd() const { return fd_; }

  void Kill() {
    if (exit_status_) return;
    kill(-pid_, SIGKILL);
    kill(pid_, SIGKILL);  // in case setsid() had not run yet
    int status = 0;
    while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    exit_status_ = status;
  }

  // The wait status once the child has ended, without blocking.
  std::optional<int> Exited() {
    if (exit_status_) return exit_status_;
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      exit_status_ = status;
      kill(-pid_, SIGKILL);  // whatever it left in its session
    }
    return exit_status_;
  }

 private:
  const pid_t pid_;
  const int fd_;
  std::optional<int> exit_status_;
};

// Resident memory of `pid`, from /proc/PID/statm (in pages); 0 when unreadable.
int64_t ResidentBytes(pid_t pid) {
  std::ifstream statm(absl::StrCat("/proc/", pid, "/statm"));
  int64_t size = 0, resident = 0;
  if (!(statm >> size >> resident)) return 0;
  return resident * sysconf(_SC_PAGESIZE);
}

// Reads what the child has sent so far; false at the end of the stream.
bool Drain(int fd, FrameBuffer& buffer) {
  char chunk[64 * 1024];
  while (true) {
    const ssize_t n = recv(fd, chunk, sizeof chunk, MSG_DONTWAIT);
    if (n > 0) {
      buffer.Append(chunk, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
  }
}

absl::Status ProtocolError(const std::string& what) {
  return absl::FailedPreconditionError(
      absl::StrCat("the job's process broke the sandbox protocol: ", what));
}

// `path` when it names a plain file inside `dir`; the child must not point the parent's uploads
// elsewhere.
absl::StatusOr<std::string> FileInside(const std::string& path, const std::string& dir,
                                       const char* what) {
  const fs::path file = fs::path(path).lexically_normal();
  const fs::path relative = file.lexically_relative(fs::path(dir).lexically_normal());
  std::error_code ec;
  if (file.is_relative() || relative.empty() || *relative.begin() == ".." ||
      !fs::is_regular_file(fs::symlink_status(file, ec))) {
    return ProtocolError(absl::StrCat(what, " ", path, " is not a plain file inside ", dir));
  }
  return file.string();
}

absl::StatusOr<engine::JobResult> ResultFromProto(const sandbox::Result& result,
                                                  const engine::RunContext& ctx) {
  if (result.code() != 0) {
    const bool known =
        result.code() > 0 && result.code() <= static_cast<int>(absl::StatusCode::kUnauthenticated);
    return absl::Status(
        known ? static_cast<absl::StatusCode>(result.code()) : absl::StatusCode::kUnknown,
        result.message());
  }
  engine::JobResult out;
  out.metrics = MetricsFromProto(result.metrics());
  for (const sandbox::ArtifactFile& file : result.artifacts()) {
    absl::StatusOr<std::string> path = FileInside(file.path(), ctx.out_dir, "artifact");
    if (!path.ok()) return path.status();
    out.artifacts.push_back({file.kind(), *path});
  }
  return out;
}

std::string SignalName(int sig) {
  const char* abbrev = sigabbrev_np(sig);
  const char* description = sigdescr_np(sig);
  return absl::StrCat(
      abbrev != nullptr ? absl::StrCat("SIG", abbrev) : absl::StrCat("signal ", sig),
      description != nullptr ? absl::StrCat(" (", description, ")") : "");
}

}  // namespace

std::unique_ptr<Sandbox> Sandbox::Create(SandboxOptions options) {
  const int flags = ProbeUnshareFlags();
  if (flags == 0) {
    spdlog::warn(
        "sandbox: this kernel or container lets the worker create no network namespace (neither "
        "CLONE_NEWNET nor an unprivileged CLONE_NEWUSER); jobs keep the host network and rely on "
        "seccomp to refuse sockets");
  } else {
    spdlog::info("sandbox: jobs run without network ({} namespace)",
                 (flags & CLONE_NEWUSER) != 0 ? "user+network" : "network");
  }
  return std::unique_ptr<Sandbox>(new Sandbox(std::move(options), flags));
}

absl::StatusOr<engine::JobResult> Sandbox::Run(const engine::JobRun& run,
                                               const engine::JobCallbacks& callbacks) {
  const engine::RunContext& ctx = run.context;
  const SandboxLimits& limits = options_.limits;
  // The child's own folder, beside the job's out/ and checkpoints/.
  std::string home = (fs::path(ctx.out_dir).parent_path() / "sandbox").string();
  std::error_code ec;
  fs::create_directories(home, ec);
  if (ec) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot create the sandbox folder ", home, ": ", ec.message()));
  }

  std::vector<std::string> argv = {options_.executable};
  argv.insert(argv.end(), options_.arguments.begin(), options_.arguments.end());
  std::vector<std::string> env = {"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + home,
                                  "TMPDIR=" + home};
  for (const char* name : kPassedEnvironment) {
    if (const char* value = std::getenv(name); value != nullptr) {
      env.push_back(absl::StrCat(name, "=", value));
    }
  }
  std::vector<char*> argv_pointers = Pointers(argv);
  std::vector<char*> env_pointers = Pointers(env);

  Launch launch{.parent = getpid(),
                .channel = -1,
                .devnull = -1,
                .home = home.c_str(),
                .limits = {{RLIMIT_CORE, {0, 0}}},
                .unshare_flags = unshare_flags_,
                .argv = argv_pointers.data(),
                .envp = env_pointers.data()};
  if (limits.cpu_seconds > 0) {
    const auto cpu = static_cast<rlim_t>(limits.cpu_seconds);
    launch.limits.push_back(Capped(RLIMIT_CPU, cpu, cpu + kCpuHardLimitSlack));
  }
  if (limits.open_files > 0) {
    const auto files = static_cast<rlim_t>(limits.open_files);
    launch.limits.push_back(Capped(RLIMIT_NOFILE, files, files));
  }

  int sockets[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sockets) != 0) {
    return absl::InternalError(absl::StrCat("sandbox socketpair: ", std::strerror(errno)));
  }
  launch.channel = sockets[1];
  launch.devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
  const pid_t pid = launch.devnull < 0 ? -1 : fork();
  if (pid == 0) ExecChild(launch);
  const int fork_errno = errno;
  close(sockets[1]);
  if (launch.devnull >= 0) close(launch.devnull);
  if (pid < 0) {
    close(sockets[0]);
    return absl::InternalError(
        absl::StrCat("cannot start the sandbox: ", std::strerror(fork_errno)));
  }
  Child child(pid, sockets[0]);
  // Non-blocking: a child that stops reading must not stall the parent's watch over it.
  fcntl(child.fd(), F_SETFL, fcntl(child.fd(), F_GETFL) | O_NONBLOCK);

  sandbox::ToChild job;
  *job.mutable_job() = JobToProto(run);
  for (const std::string& file : options_.hidden_files) {
    std::error_code absolute_ec;
    job.mutable_job()->add_hidden_files(fs::absolute(file, absolute_ec).string());
  }
  // A child that died during its setup is classified by its exit status below.
  (void)WriteFrame(child.fd(), job);

  FrameBuffer buffer;
  std::optional<sandbox::Result> result;
  // Handles the frames received so far.
  auto handle_frames = [&]() -> absl::Status {
    while (!result) {
      absl::StatusOr<std::optional<std::string>> frame = buffer.Next();
      if (!frame.ok()) return ProtocolError(std::string(frame.status().message()));
      if (!frame->has_value()) return absl::OkStatus();
      sandbox::FromChild message;
      if (!message.ParseFromString(**frame)) return ProtocolError("malformed frame");
      switch (message.message_case()) {
        case sandbox::FromChild::kStarted:
          LogStarted(pid, message.started());
          break;
        case sandbox::FromChild::kProgress:
          if (callbacks.on_progress) callbacks.on_progress(ProgressFromProto(message.progress()));
          break;
        case sandbox::FromChild::kCheckpointPath: {
          absl::StatusOr<std::string> path =
              FileInside(message.checkpoint_path(), ctx.checkpoint_dir, "checkpoint");
          if (!path.ok()) return path.status();
          if (callbacks.on_checkpoint) callbacks.on_checkpoint(*path);
          sandbox::ToChild uploaded;
          uploaded.mutable_checkpoint_uploaded();
          if (!WriteFrame(child.fd(), uploaded).ok()) return ProtocolError("it stopped reading");
          break;
        }
        case sandbox::FromChild::kResult:
          result = message.result();
          break;
        case sandbox::FromChild::MESSAGE_NOT_SET:
          return ProtocolError("empty frame");
      }
    }
    return absl::OkStatus();
  };

  const Clock::time_point started = Clock::now();
  bool open = true;
  while (true) {
    pollfd readable{child.fd(), POLLIN, 0};
    poll(&readable, open ? 1 : 0, static_cast<int>(options_.poll_interval.count()));
    if (open) open = Drain(child.fd(), buffer);
    if (absl::Status s = handle_frames(); !s.ok()) return s;
    if (!result) {
      if (std::optional<int> status = child.Exited()) {
        Drain(child.fd(), buffer);  // what it sent before it ended
        if (absl::Status s = handle_frames(); !s.ok()) return s;
        if (!result) return ExitFailure(*status);
      }
    }
    if (result) {
      child.Kill();  // it has nothing left to do
      return ResultFromProto(*result, ctx);
    }
    if (callbacks.should_stop && callbacks.should_stop()) {
      child.Kill();
      return absl::CancelledError("the job was stopped");
    }
    if (limits.memory_mib > 0 && ResidentBytes(pid) > (limits.memory_mib << 20)) {
      child.Kill();
      return absl::FailedPreconditionError(
          absl::StrCat("the job's process exceeded memory limit ", limits.memory_mib, " MiB"));
    }
    if (limits.wall_seconds > 0 &&
        Clock::now() - started > std::chrono::seconds(limits.wall_seconds)) {
      child.Kill();
      return absl::FailedPreconditionError(
          absl::StrCat("the job exceeded its time limit of ", limits.wall_seconds, " s"));
    }
  }
}

void Sandbox::LogStarted(pid_t pid, const sandbox::Started& started) const {
  spdlog::info("sandbox: job process {} started (seccomp {}, network {}, credential files {})", pid,
               started.seccomp() ? "on" : "OFF", network_isolated() ? "off" : "on",
               options_.hidden_files.empty() ? "none"
               : started.files_hidden()      ? "hidden"
                                             : "READABLE");
  if (!started.seccomp()) spdlog::warn("sandbox: no seccomp: {}", started.seccomp_error());
  if (!options_.hidden_files.empty() && !started.files_hidden()) {
    spdlog::warn("sandbox: the job's process can read the worker's credential files: {}",
                 started.files_error());
  }
}

absl::Status Sandbox::ExitFailure(int status) const {
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    if (sig == SIGXCPU) {
      return absl::FailedPreconditionError(absl::StrCat(
          "the job's process exceeded its CPU time limit of ", options_.limits.cpu_seconds, " s"));
    }
    return absl::FailedPreconditionError(
        absl::StrCat("the job's process was killed by ", SignalName(sig)));
  }
  const int code = WEXITSTATUS(status);
  if (code == kSetupFailedExit) {
    return absl::InternalError(
        "the sandbox could not be set up (descriptors, working folder, limits or namespaces)");
  }
  if (code == kExecFailedExit) {
    return absl::InternalError(
        absl::StrCat("cannot run ", options_.executable, " for the sandbox"));
  }
  return absl::InternalError(
      absl::StrCat("the job's process exited with status ", code, " before sending a result"));
}

}  // namespace qnet::worker
