// WorkerSupervisor: runs `--local-workers N` qnet-worker child processes next to qnetd so one
// command runs everything on one machine. Each child is started as
//   qnet-worker serve --server <qnetd's gRPC address> --cache-dir DATA_DIR/worker-cache-<i>
// with its stdout sent to qnetd's stderr (qnetd's stdout carries only the "listening" line). A
// child that dies is restarted with exponential backoff (1 s doubling to 30 s; reset after a
// minute of running). Children get SIGTERM if qnetd dies (PR_SET_PDEATHSIG), and Stop() sends
// SIGTERM, waits, then SIGKILLs what is left.
//
//   auto binary = WorkerSupervisor::FindWorkerBinary(flag_value);  // "" = next to qnetd
//   WorkerSupervisor workers({.binary = *binary, .server_address = "127.0.0.1:50051",
//                             .data_dir = dir, .count = 2});
//   workers.Start();
//   ...
//   workers.Stop(absl::Seconds(10));
#ifndef QNET_SERVER_APP_WORKER_SUPERVISOR_H_
#define QNET_SERVER_APP_WORKER_SUPERVISOR_H_

#include <sys/types.h>

#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace qnet::server {

struct WorkerSupervisorOptions {
  std::string binary;
  std::string server_address;
  std::string data_dir;
  // Child i's token (its own worker identity), passed in its environment as QNET_TOKEN, never
  // in argv; empty: none.
  std::vector<std::string> worker_tokens;
  int count = 0;
  absl::Duration min_backoff = absl::Seconds(1);
  absl::Duration max_backoff = absl::Seconds(30);
};

class WorkerSupervisor {
 public:
  // `flag` non-empty: that file. Else qnet-worker in qnetd's folder (/proc/self/exe), else
  // ../workers/worker/qnet-worker relative to it (a build tree). NOT_FOUND with what was tried.
  static absl::StatusOr<std::string> FindWorkerBinary(const std::string& flag);

  explicit WorkerSupervisor(WorkerSupervisorOptions options);
  ~WorkerSupervisor();  // Stop()
  WorkerSupervisor(const WorkerSupervisor&) = delete;
  WorkerSupervisor& operator=(const WorkerSupervisor&) = delete;

  void Start();
  // SIGTERM to every child, wait up to `grace`, SIGKILL the rest. Idempotent.
  void Stop(absl::Duration grace = absl::Seconds(10));

  // Pids of the children running now (0 for a slot waiting to restart).
  std::vector<pid_t> pids();
  int restarts();

 private:
  struct Slot {
    pid_t pid = 0;
    absl::Time started;
    absl::Time next_start;
    absl::Duration backoff;
  };
  void Run();
  pid_t Spawn(int index);

  const WorkerSupervisorOptions options_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  absl::Duration grace_ = absl::Seconds(10);
  std::vector<Slot> slots_;
  int restarts_ = 0;
  std::thread thread_;
};

}  // namespace qnet::server

#endif  // QNET_SERVER_APP_WORKER_SUPERVISOR_H_
