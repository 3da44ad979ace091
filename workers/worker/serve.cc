#include "workers/worker/serve.h"

#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <torch/cuda.h>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "client/connection_flags.h"
#include "workers/engine/job_runner.h"
#include "workers/worker/sandbox.h"
#include "workers/worker/sandbox_child.h"
#include "workers/worker/worker_log.h"
#include "workers/worker/worker_loop.h"

namespace qnet::worker {
namespace {

namespace fs = std::filesystem;

struct ServeFlags {
  std::string server = "127.0.0.1:50051";
  std::string cache_dir;
  std::string worker_id;
  std::string device = "auto";
  double heartbeat_seconds = 2;
  int lease_wait_seconds = 15;
  bool once = false;
  client::ConnectionFlags connection;
  bool no_sandbox = false;
  SandboxLimits sandbox;
};

std::string DefaultCacheDir() {
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg != nullptr && *xdg != '\0') {
    return (fs::path(xdg) / "qnet-worker").string();
  }
  if (const char* home = std::getenv("HOME"); home != nullptr && *home != '\0') {
    return (fs::path(home) / ".cache" / "qnet-worker").string();
  }
  return absl::StrCat("/tmp/qnet-worker-", getuid());
}

std::string DefaultWorkerId() {
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) != 0 || host[0] == '\0') std::snprintf(host, 8, "worker");
  return absl::StrCat(host, "-", getpid());
}

// The NVIDIA driver's name for GPU `index` ("NVIDIA H100 80GB HBM3"), read from /proc so the worker
// needs no CUDA headers; "" when unknown.
std::string GpuName(int index) {
  std::vector<fs::path> gpus;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/proc/driver/nvidia/gpus", ec)) {
    gpus.push_back(entry.path());
  }
  std::sort(gpus.begin(), gpus.end());  // PCI bus order, which is CUDA's default order
  if (index < 0 || static_cast<size_t>(index) >= gpus.size()) return "";
  std::ifstream in(gpus[index] / "information");
  std::string line;
  while (std::getline(in, line)) {
    if (absl::StartsWith(line, "Model:")) {
      std::string name = line.substr(6);
      name.erase(0, name.find_first_not_of(" \t"));
      return name;
    }
  }
  return "";
}

// What AcquireLease reports: "cpu" or "cuda:N (name)". The engine resolves `device` the same way.
absl::StatusOr<std::string> DeviceLabel(const std::string& device) {
  if (device == "cpu") return std::string("cpu");
  const bool cuda = torch::cuda::is_available();
  if (device == "auto" && !cuda) return std::string("cpu");
  int index = 0;
  if (absl::StartsWith(device, "cuda:") && !absl::SimpleAtoi(device.substr(5), &index)) {
    return absl::InvalidArgumentError(absl::StrCat("--device ", device, ": bad CUDA index"));
  }
  if (!cuda) {
    return absl::FailedPreconditionError(
        absl::StrCat("--device ", device, ": no CUDA device is visible (use --device cpu)"));
  }
  if (index >= static_cast<int>(torch::cuda::device_count())) {
    return absl::InvalidArgumentError(
        absl::StrCat("--device ", device, ": only ", torch::cuda::device_count(), " CUDA devices"));
  }
  const std::string name = GpuName(index);
  return name.empty() ? absl::StrCat("cuda:", index)
                      : absl::StrCat("cuda:", index, " (", name, ")");
}

// This program's file, for the sandbox's fork+exec (argv[0] may be relative or a PATH name).
absl::StatusOr<std::string> SelfExecutable() {
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (ec) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot find this program for the sandbox (/proc/self/exe: ", ec.message(),
                     "); mount /proc or pass --no-sandbox"));
  }
  return exe.string();
}

void AddSandboxFlags(CLI::App& serve, ServeFlags& flags) {
  SandboxLimits& limits = flags.sandbox;
  serve.add_flag("--no-sandbox", flags.no_sandbox,
                 "run models inside the worker process (trusted models only; logged)");
  serve
      .add_option("--sandbox-memory-mib", limits.memory_mib,
                  "resident memory cap of a job (0: none)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  serve
      .add_option("--sandbox-cpu-seconds", limits.cpu_seconds,
                  "CPU time of a job over all its threads (0: none)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  serve.add_option("--sandbox-wall-seconds", limits.wall_seconds, "run time of a job (0: none)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  serve
      .add_option("--sandbox-open-files", limits.open_files,
                  "open file limit of a job (0: inherit)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
}

[[noreturn]] void ExitNow(int code) {
  ShutdownLogging();
  std::fflush(nullptr);
  std::_Exit(code);  // an engine thread may still run; no destructors under its feet
}

int RunServe(const ServeFlags& flags) {
  // Block the stop signals before any thread exists: every thread inherits the mask, and only the
  // watcher below takes them (sigtimedwait), so no thread is interrupted mid-call.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  LogToStderr();

  absl::StatusOr<std::string> label = DeviceLabel(flags.device);
  if (!label.ok()) {
    std::fprintf(stderr, "qnet-worker serve: %s\n", std::string(label.status().message()).c_str());
    return 2;
  }
  const std::string cache_dir = flags.cache_dir.empty() ? DefaultCacheDir() : flags.cache_dir;
  std::error_code ec;
  fs::create_directories(cache_dir, ec);
  if (ec || access(cache_dir.c_str(), W_OK) != 0) {
    std::fprintf(stderr, "qnet-worker serve: cache directory %s is not writable%s%s\n",
                 cache_dir.c_str(), ec ? ": " : "", ec ? ec.message().c_str() : "");
    return 2;
  }

  ServeOptions options;
  options.worker_id = flags.worker_id.empty() ? DefaultWorkerId() : flags.worker_id;
  options.device = flags.device;
  options.device_label = *label;
  options.cache_dir = cache_dir;
  options.heartbeat_interval = std::chrono::milliseconds(
      std::max<int64_t>(50, static_cast<int64_t>(flags.heartbeat_seconds * 1000)));
  options.lease_wait_seconds = flags.lease_wait_seconds;
  options.once = flags.once;
  // The identity's token and TLS files: from the flags, else QNET_TOKEN, QNET_CA_CERT, ...
  absl::StatusOr<client::ConnectionOptions> connection =
      client::ResolveConnection(flags.server, flags.connection);
  if (!connection.ok()) {
    LogError(std::string(connection.status().message()));
    return 2;
  }

  std::unique_ptr<Sandbox> sandbox;
  JobRunner runner = &engine::RunJob;
  if (flags.no_sandbox) {
    LogWarning(
        "--no-sandbox: models run inside the worker process, next to its token and with its "
        "network; use it only for models you trust");
  } else {
    absl::StatusOr<std::string> exe = SelfExecutable();
    if (!exe.ok()) {
      LogError(std::string(exe.status().message()));
      return 2;
    }
    // Keeps a job's process (same uid) from reading this one's memory or environment in /proc.
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    SandboxOptions sandbox_options;
    sandbox_options.executable = *exe;
    sandbox_options.arguments = {"sandbox-child"};
    sandbox_options.limits = flags.sandbox;
    // The identity's secrets stay with the parent (the certificate is public).
    for (const std::string& secret : {flags.connection.token_file, flags.connection.key}) {
      if (!secret.empty()) sandbox_options.hidden_files.push_back(secret);
    }
    sandbox = Sandbox::Create(std::move(sandbox_options));
    runner = [&sandbox](const engine::JobRun& run, const engine::JobCallbacks& callbacks) {
      return sandbox->Run(run, callbacks);
    };
  }

  auto channel = client::MakeChannel(*connection);
  WorkerLoop loop(channel, flags.server, options, runner);
  LogInfo(absl::StrCat("worker ", options.worker_id, " on ", options.device_label, " serving ",
                       flags.server, " (cache ", cache_dir, ")"));

  std::atomic<bool> finished{false};
  std::thread watcher([&] {
    const timespec tick{0, 200 * 1000 * 1000};
    while (!finished) {
      const int sig = sigtimedwait(&stop_signals, nullptr, &tick);
      if (sig <= 0) continue;
      if (loop.stopping()) {
        LogWarning(absl::StrCat("second signal ", sig, ": exiting now"));
        ExitNow(1);
      }
      LogInfo(absl::StrCat("signal ", sig, ": stopping (the current job's lease is handed back)"));
      loop.Stop();
    }
  });
  absl::Status status = loop.Run();
  finished = true;
  watcher.join();
  if (!status.ok()) {
    LogError(std::string(status.message()));
    ExitNow(1);
  }
  LogInfo(absl::StrCat("worker ", options.worker_id, " stopped"));
  return 0;
}

}  // namespace

void RegisterServeCommand(CLI::App& app) {
  auto flags = std::make_shared<ServeFlags>();
  CLI::App* serve = app.add_subcommand("serve", "Lease jobs from a qnetd server and run them");
  serve->add_option("--server", flags->server, "qnetd gRPC address host:port")
      ->envname("QNET_SERVER")
      ->capture_default_str();
  serve->add_option("--cache-dir", flags->cache_dir,
                    "blob cache and work folder (default $XDG_CACHE_HOME/qnet-worker)");
  serve->add_option("--worker-id", flags->worker_id,
                    "name reported to the server (default "
                    "HOSTNAME-PID)");
  serve->add_option("--device", flags->device, "auto, cpu, cuda or cuda:N")
      ->capture_default_str()
      ->check([](const std::string& d) -> std::string {
        if (d == "auto" || d == "cpu" || d == "cuda" || absl::StartsWith(d, "cuda:")) return "";
        return "device must be auto, cpu, cuda or cuda:N";
      });
  serve->add_option("--heartbeat-seconds", flags->heartbeat_seconds, "progress report interval")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  serve
      ->add_option("--lease-wait-seconds", flags->lease_wait_seconds,
                   "long-poll length of each lease request")
      ->capture_default_str()
      ->check(CLI::Range(1, 120));
  serve->add_flag("--once", flags->once, "exit after one job");
  AddSandboxFlags(*serve, *flags);
  client::BindConnectionFlags(*serve, flags->connection);
  serve->callback([flags] {
    const int code = RunServe(*flags);
    if (code != 0) throw CLI::RuntimeError(code);
  });
}

void RegisterSandboxChildCommand(CLI::App& app) {
  // Hidden (no group): started only by `serve` with the job's socket on kSandboxChildFd.
  CLI::App* child = app.add_subcommand("sandbox-child", "")->group("");
  child->callback([] {
    LogToStderr();
    // _Exit: the engine's threads may still run; the parent has the result already.
    ExitNow(RunSandboxChild(kSandboxChildFd, &engine::RunJob));
  });
}

}  // namespace qnet::worker
