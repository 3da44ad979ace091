// The job sandbox of `qnet-worker serve` (docs/ARCHITECTURE.md, "Sandbox"): users' TorchScript
// models run in a child process, never in the worker that holds the server's token. Run() starts
// the child by fork+exec of `options.executable` (qnet-worker itself, with the hidden
// `sandbox-child` subcommand) with
//   - a minimal environment (PATH, HOME and TMPDIR in its own folder, the CUDA/OpenMP/locale
//     variables of kPassedEnvironment): no token, no credential variable;
//   - stdin on /dev/null, stdout and stderr shared for logs, the socketpair on descriptor 3 and no
//     other descriptor;
//   - its own session (so killing it kills all it started) and working folder;
//   - RLIMIT_CPU, RLIMIT_NOFILE, RLIMIT_CORE = 0, and a resident-memory cap the parent enforces;
//   - where the kernel lets an unprivileged process create one, an empty network namespace;
//   - a seccomp filter and, where the kernel has Landlock, no read access to the worker's
//   credential
//     files, both of which it puts on itself before running the job (sandbox_child.h).
// The parent keeps the lease: it feeds the engine's progress and checkpoints through the
// callbacks, kills the child on should_stop(), and turns a crash, the memory cap or the time
// limit into a FAILED_PRECONDITION error naming the reason, which the lease loop reports as not
// retryable (engine::IsRetryableFailure).
//
//   auto sandbox = Sandbox::Create({.executable = "/proc/self/exe", .arguments =
//   {"sandbox-child"}}); WorkerLoop loop(channel, address, options,
//                   [&](const auto& run, const auto& cb) { return sandbox->Run(run, cb); });
#ifndef QNET_WORKERS_WORKER_SANDBOX_H_
#define QNET_WORKERS_WORKER_SANDBOX_H_

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "workers/engine/job_run.h"
#include "workers/worker/sandbox.pb.h"

namespace qnet::worker {

// The defaults are `qnet-worker serve`'s (--sandbox-* flags); 0 turns a limit off.
struct SandboxLimits {
  int64_t memory_mib = 16384;           // resident memory of the child
  int64_t cpu_seconds = 7 * 24 * 3600;  // CPU time summed over the child's threads
  int64_t wall_seconds = 24 * 3600;     // from start to result
  int64_t open_files = 4096;
};

struct SandboxOptions {
  std::string executable;              // the child program
  std::vector<std::string> arguments;  // after argv[0]
  SandboxLimits limits;
  // Files the job's process may not read: the worker's credentials (--token-file). It runs under
  // the worker's uid, so only Landlock keeps them from it (and from a job's artifacts).
  std::vector<std::string> hidden_files;
  // How often the parent checks the child's memory, the clock and should_stop().
  std::chrono::milliseconds poll_interval{50};
};

// Environment variables the child inherits when set: device selection, threading, locale.
inline constexpr const char* kPassedEnvironment[] = {"LD_LIBRARY_PATH",
                                                     "CUDA_VISIBLE_DEVICES",
                                                     "CUDA_DEVICE_ORDER",
                                                     "NVIDIA_VISIBLE_DEVICES",
                                                     "NVIDIA_DRIVER_CAPABILITIES",
                                                     "OMP_NUM_THREADS",
                                                     "MKL_NUM_THREADS",
                                                     "LANG",
                                                     "LC_ALL",
                                                     "TZ"};

class Sandbox {
 public:
  // Probes once which namespaces the kernel lets this process create and logs the isolation
  // jobs will get (a note when the network cannot be cut off).
  static std::unique_ptr<Sandbox> Create(SandboxOptions options);

  absl::StatusOr<engine::JobResult> Run(const engine::JobRun& run,
                                        const engine::JobCallbacks& callbacks);

  // Whether children start in their own, empty network namespace.
  bool network_isolated() const { return unshare_flags_ != 0; }

 private:
  Sandbox(SandboxOptions options, int unshare_flags)
      : options_(std::move(options)), unshare_flags_(unshare_flags) {}
  // What confinement the child reports, with a warning for each one missing.
  void LogStarted(pid_t pid, const sandbox::Started& started) const;
  // Why a child that ended without a result failed, from its wait status.
  absl::Status ExitFailure(int status) const;

  SandboxOptions options_;
  int unshare_flags_;  // passed to unshare() in the child before exec; 0 = none work here
};

}  // namespace qnet::worker

#endif  // QNET_WORKERS_WORKER_SANDBOX_H_
