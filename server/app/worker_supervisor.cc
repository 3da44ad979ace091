#include "server/app/worker_supervisor.h"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>
#include <system_error>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "spdlog/spdlog.h"

namespace qnet::server {
namespace {

namespace fs = std::filesystem;

bool IsExecutable(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec) && ::access(p.c_str(), X_OK) == 0;
}

}  // namespace

absl::StatusOr<std::string> WorkerSupervisor::FindWorkerBinary(const std::string& flag) {
  if (!flag.empty()) {
    if (IsExecutable(flag)) return flag;
    return absl::NotFoundError(
        absl::StrCat("--worker-binary ", flag, " is not an executable file"));
  }
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  std::vector<std::string> tried;
  if (!ec) {
    for (const fs::path& candidate :
         {self.parent_path() / "qnet-worker",
          self.parent_path() / ".." / "workers" / "worker" / "qnet-worker"}) {
      if (IsExecutable(candidate)) return fs::weakly_canonical(candidate, ec).string();
      tried.push_back(candidate.string());
    }
  }
  return absl::NotFoundError(absl::StrCat("qnet-worker not found (tried ",
                                          absl::StrJoin(tried, ", "),
                                          "); build it or pass --worker-binary PATH"));
}

WorkerSupervisor::WorkerSupervisor(WorkerSupervisorOptions options)
    : options_(std::move(options)) {}

WorkerSupervisor::~WorkerSupervisor() { Stop(); }

void WorkerSupervisor::Start() {
  std::lock_guard<std::mutex> lock(mu_);
  if (thread_.joinable() || options_.count <= 0) return;
  slots_.assign(options_.count,
                Slot{0, absl::InfinitePast(), absl::InfinitePast(), options_.min_backoff});
  // Children are forked from this thread and it lives until they are gone: PR_SET_PDEATHSIG
  // fires when the forking *thread* exits.
  thread_ = std::thread([this] { Run(); });
}

void WorkerSupervisor::Stop(absl::Duration grace) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    grace_ = grace;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::vector<pid_t> WorkerSupervisor::pids() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<pid_t> out;
  for (const Slot& s : slots_) out.push_back(s.pid);
  return out;
}

int WorkerSupervisor::restarts() {
  std::lock_guard<std::mutex> lock(mu_);
  return restarts_;
}

pid_t WorkerSupervisor::Spawn(int index) {
  const std::string cache_dir = absl::StrCat(options_.data_dir, "/worker-cache-", index);
  std::error_code ec;
  fs::create_directories(cache_dir, ec);
  std::vector<std::string> args = {options_.binary,         "serve",       "--server",
                                   options_.server_address, "--cache-dir", cache_dir};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  // The environment is built before fork: the child may only make async-signal-safe calls.
  // Credentials meant for qnetd's clients are not the child's: it has its own token and talks
  // to a loopback port without TLS.
  constexpr absl::string_view kNotInherited[] = {
      "QNET_TOKEN=", "QNET_WORKER_TOKEN=", "QNET_CA_CERT=", "QNET_CERT=", "QNET_KEY="};
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) {
    if (std::none_of(std::begin(kNotInherited), std::end(kNotInherited),
                     [e](absl::string_view v) { return absl::StartsWith(*e, v); })) {
      env_strings.emplace_back(*e);
    }
  }
  if (static_cast<size_t>(index) < options_.worker_tokens.size() &&
      !options_.worker_tokens[index].empty()) {
    env_strings.push_back(absl::StrCat("QNET_TOKEN=", options_.worker_tokens[index]));
  }
  std::vector<char*> envp;
  for (std::string& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid == 0) {
    // Child: only async-signal-safe calls until exec.
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(127);  // qnetd died before prctl took effect
    ::dup2(STDERR_FILENO, STDOUT_FILENO);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);  // qnetd blocks SIGTERM for its signal thread
    ::execve(argv[0], argv.data(), envp.data());
    ::_exit(127);
  }
  if (pid < 0) {
    spdlog::error("local worker {}: fork failed: {}", index, std::strerror(errno));
    return 0;
  }
  spdlog::info("local worker {} started (pid {}): {}", index, pid, absl::StrJoin(args, " "));
  return pid;
}

void WorkerSupervisor::Run() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    const absl::Time now = absl::Now();
    for (size_t i = 0; i < slots_.size(); ++i) {
      Slot& s = slots_[i];
      if (s.pid > 0) {
        int status = 0;
        const pid_t r = ::waitpid(s.pid, &status, WNOHANG);
        if (r == s.pid || (r < 0 && errno == ECHILD)) {
          const std::string how = r < 0 ? "vanished"
                                  : WIFEXITED(status)
                                      ? absl::StrCat("exited with status ", WEXITSTATUS(status))
                                      : absl::StrCat("was killed by signal ", WTERMSIG(status));
          if (now - s.started > absl::Minutes(1)) s.backoff = options_.min_backoff;
          spdlog::warn("local worker {} (pid {}) {}; restarting in {}", i, s.pid, how,
                       absl::FormatDuration(s.backoff));
          s.pid = 0;
          s.next_start = now + s.backoff;
          s.backoff = std::min(s.backoff * 2, options_.max_backoff);
          ++restarts_;
        }
      }
      if (s.pid == 0 && now >= s.next_start) {
        s.pid = Spawn(static_cast<int>(i));
        s.started = now;
        if (s.pid == 0) s.next_start = now + s.backoff;
      }
    }
    cv_.wait_for(lock, std::chrono::milliseconds(200));
  }

  // Stopping: SIGTERM everyone, wait for the grace period, then SIGKILL.
  for (Slot& s : slots_) {
    if (s.pid > 0) ::kill(s.pid, SIGTERM);
  }
  const absl::Time deadline = absl::Now() + grace_;
  while (true) {
    bool alive = false;
    for (Slot& s : slots_) {
      if (s.pid <= 0) continue;
      const pid_t r = ::waitpid(s.pid, nullptr, WNOHANG);
      if (r == s.pid || (r < 0 && errno == ECHILD)) {
        s.pid = 0;
      } else {
        alive = true;
      }
    }
    if (!alive) break;
    if (absl::Now() >= deadline) {
      for (Slot& s : slots_) {
        if (s.pid > 0) {
          spdlog::warn("local worker pid {} ignored SIGTERM; killing it", s.pid);
          ::kill(s.pid, SIGKILL);
          ::waitpid(s.pid, nullptr, 0);
          s.pid = 0;
        }
      }
      break;
    }
    lock.unlock();
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    lock.lock();
  }
  spdlog::info("local workers stopped");
}

}  // namespace qnet::server
