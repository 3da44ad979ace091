// `qnet-worker serve`: the worker process around WorkerLoop (worker_loop.h). It parses the flags,
// works out the device to report, runs the lease loop with the real engine (engine::RunJob), and
// turns SIGTERM / SIGINT into a quick, clean stop: the running job is stopped at its next step and
// its lease failed as retryable, so another worker resumes it from its last checkpoint. A second
// signal exits at once. The server being unreachable is never fatal: the loop retries.
//
//   qnet-worker serve --server 127.0.0.1:50051 [--cache-dir DIR] [--worker-id ID]
//                     [--device auto|cpu|cuda|cuda:N] [--heartbeat-seconds S] [--once]
//                     [--sandbox-memory-mib N] [--sandbox-cpu-seconds S] [--sandbox-wall-seconds S]
//                     [--sandbox-open-files N] [--no-sandbox]
//
// Each job runs in a sandboxed child process (sandbox.h) unless --no-sandbox says otherwise.
//
//   CLI::App app;
//   qnet::worker::RegisterServeCommand(app);  // main.cc
//   qnet::worker::RegisterSandboxChildCommand(app);
#ifndef QNET_WORKERS_WORKER_SERVE_H_
#define QNET_WORKERS_WORKER_SERVE_H_

#include <CLI/CLI.hpp>

namespace qnet::worker {

// Adds the `serve` subcommand. Its callback reports a non-zero exit by throwing
// CLI::RuntimeError(code) after printing its message (2: bad flags or cache directory).
void RegisterServeCommand(CLI::App& app);

// Adds the hidden `sandbox-child` subcommand: the process `serve` runs each job in
// (docs/ARCHITECTURE.md, "Sandbox").
void RegisterSandboxChildCommand(CLI::App& app);

}  // namespace qnet::worker

#endif  // QNET_WORKERS_WORKER_SERVE_H_
