// The child half of the job sandbox (sandbox.h): what `qnet-worker sandbox-child` runs after
// Sandbox::Run started it with no credentials, a minimal environment, resource limits and, where
// the kernel allows, no network. It reads the job, hides the worker's credential files from
// itself with Landlock, confines its system calls with seccomp, reports both, runs the job through
// `runner` and sends progress, checkpoints and the result back over `fd`. Separate from the
// parent's code so a test child can pair it with a fake engine.
//
//   return RunSandboxChild(kSandboxChildFd, &engine::RunJob);  // exit status of the child
#ifndef QNET_WORKERS_WORKER_SANDBOX_CHILD_H_
#define QNET_WORKERS_WORKER_SANDBOX_CHILD_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "workers/worker/worker_loop.h"

namespace qnet::worker {

// The descriptor the parent hands the child its end of the socketpair on.
inline constexpr int kSandboxChildFd = 3;

// Installs the seccomp filter on the calling process (and its future threads). Denied: sockets
// other than AF_UNIX, io_uring (which would bypass the socket rule), new processes and programs
// (fork, vfork, execve; threads stay allowed), signals and rlimits aimed at other processes,
// tracing and reading other processes' memory, namespaces, mounts, kernel modules, kexec, bpf,
// perf events, keyrings, clock and host settings. Everything else LibTorch uses stays allowed.
absl::Status ConfineSystemCalls();

// Makes `files` unreadable to the calling process with Landlock, leaving everything else as
// readable as it was: every other entry of each folder on the way to a hidden file is granted read
// access (symbolic links are not: what they point to is granted or not where it lies). Files
// created later directly in those folders are not readable. UNIMPLEMENTED where the kernel has no
// Landlock.
absl::Status HideFiles(const std::vector<std::string>& files);

// 0 when a result was sent, 1 when the parent went away first.
int RunSandboxChild(int fd, const JobRunner& runner);

}  // namespace qnet::worker

#endif  // QNET_WORKERS_WORKER_SANDBOX_CHILD_H_
